// MetricCatalog: the application service that owns metric definitions (create, read, update, delete, seed
// the built-in KPIs) on top of the MetadataStore port. Validation of a single body lives in
// query/metric_definition.h; rules that need other definitions (ratio operands exist, no cycles, no delete
// of a definition another one uses) live here.
// Reads are served from an immutable in-memory snapshot of every definition, with its JSON rendered once:
// definitions change rarely and are read on every metric query. The snapshot is dropped on every write made
// through this catalog and reloaded after `cache_ttl_ms`, which bounds staleness for writes made by other
// replicas sharing a PostgreSQL metadata store.
// Thread-safety: thread-safe (the store is; cross-definition checks are best-effort under concurrent edits).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "metadata/metadata_store.h"
#include "query/metric_definition.h"

namespace analytics::metrics {

struct MetricCatalogOptions {
  int64_t cache_ttl_ms = 1000;  // 0: every read goes to the store
};

// Every definition at one moment, sorted by name, each with its JSON (MetricDefinitionToJson) rendered.
struct MetricSnapshot {
  struct Entry {
    query::MetricDefinition definition;
    std::string json;
  };
  std::vector<Entry> entries;
  std::map<std::string, size_t, std::less<>> by_name;
  int64_t loaded_at_ms = 0;

  const Entry* Find(std::string_view name) const;
  static bool Matches(const query::MetricDefinition& definition, const metadata::MetricDefinitionFilter& filter);
};

class MetricCatalog {
 public:
  explicit MetricCatalog(metadata::MetadataStore& store, MetricCatalogOptions options = {})
      : store_(store), options_(options) {}

  // The current snapshot (reloaded from the store when older than the TTL or after a write).
  common::Result<std::shared_ptr<const MetricSnapshot>> Snapshot();

  // Creates the built-in KPI definitions that are missing (existing ones, possibly edited, are kept).
  // Returns how many were created.
  common::Result<int> SeedBuiltins(int64_t now_ms);

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
  void Invalidate();

  metadata::MetadataStore& store_;
  const MetricCatalogOptions options_;
  std::mutex reload_mu_;  // one reload at a time; held while loading
  std::mutex mu_;
  std::shared_ptr<const MetricSnapshot> snapshot_;  // guarded by mu_
  uint64_t generation_ = 0;                          // guarded by mu_; bumped by every write
};

}  // namespace analytics::metrics
