// MetricCatalog: the application service that owns metric definitions (create, read, update, delete, seed
// the built-in KPIs) on top of the MetadataStore port. Validation of a single body lives in
// query/metric_definition.h; rules that need other definitions (ratio operands exist, no cycles, no delete
// of a definition another one uses) live here.
// Thread-safety: thread-safe (the store is; cross-definition checks are best-effort under concurrent edits).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "metadata/metadata_store.h"
#include "query/metric_definition.h"

namespace analytics::metrics {

class MetricCatalog {
 public:
  explicit MetricCatalog(metadata::MetadataStore& store) : store_(store) {}

  // Creates the built-in KPI definitions that are missing (existing ones, possibly edited, are kept).
  // Returns how many were created.
  common::Result<int> SeedBuiltins(int64_t now_ms);

  common::Result<std::vector<query::MetricDefinition>> List(const metadata::MetricDefinitionFilter& filter);
  // NotFound.
  common::Result<query::MetricDefinition> Get(const std::string& name);
  // Sets version 1, timestamps and created_by. InvalidArgument (field numerator/denominator) when a ratio
  // operand does not exist; AlreadyExists.
  common::Result<query::MetricDefinition> Create(query::MetricDefinition definition, const std::string& actor,
                                                 int64_t now_ms);
  // Replaces `name` with `definition` (whose name must equal `name`), version + 1. `expected_version`, when
  // given, must equal the stored version (FailedPrecondition otherwise). NotFound; InvalidArgument for
  // missing operands or a ratio cycle.
  common::Result<query::MetricDefinition> Update(const std::string& name, query::MetricDefinition definition,
                                                 std::optional<int64_t> expected_version, const std::string& actor,
                                                 int64_t now_ms);
  // NotFound; FailedPrecondition when a ratio metric uses it.
  common::Status Delete(const std::string& name, const std::string& actor, int64_t now_ms);

 private:
  common::Status CheckOperands(const query::MetricDefinition& definition);
  void Audit(const std::string& actor, const std::string& action, const std::string& name, int64_t now_ms);

  metadata::MetadataStore& store_;
};

}  // namespace analytics::metrics
