// MetadataStore: the port through which the service keeps its definitions and audit log.
//
// Application code depends only on this interface; the composition root (src/app/) picks an adapter:
// sqlite/ (embedded default, one file in the data dir) or postgres/ (scaled mode, shared by replicas). Both
// pass the same contract suite, tests/integration/metadata_store_contract_test.cc. The schema is versioned
// (migrations/migrations.h): an adapter applies pending migrations when it opens and refuses a database
// written by newer code.
// Thread-safety: every MetadataStore method may be called concurrently from many threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "query/metric_definition.h"

namespace analytics::metadata {

// Which metric definitions ListMetricDefinitions returns. Unset fields do not filter; set fields are ANDed.
struct MetricDefinitionFilter {
  std::optional<std::string> tag;            // the definition lists this tag
  std::optional<std::string> owner_service;  // exact match
  std::optional<bool> is_realtime;
};

// One entry of the append-only audit log.
struct AuditRecord {
  int64_t id = 0;      // assigned by the store (increasing in append order); ignored by AppendAudit
  int64_t at_ms = 0;   // Unix millis; AppendAudit stores "now" when 0
  std::string actor;   // who: user id, service name or "system"
  std::string action;  // what, e.g. "metric.create"
  std::string resource;  // on what, e.g. "metrics/dau"
  nlohmann::json details;  // free-form; stored and returned as is (null when empty)
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // "sqlite" or "postgres" (for logs and the readiness endpoint).
  virtual std::string_view BackendName() const = 0;

  // Cheap readiness probe (one SELECT 1). OK when the database answers; Unavailable when it cannot be reached.
  virtual common::Status Ping() = 0;

  // The highest migration version applied to the database (see migrations/migrations.h).
  virtual common::Result<int> SchemaVersion() = 0;

  // Stores a new definition exactly as given (version, timestamps and builtin are the caller's).
  // AlreadyExists when a definition with def.name exists (the stored one is left unchanged). Under concurrent
  // creates of one name exactly one caller gets OK. InvalidArgument when def.name is empty or a string cannot
  // be serialized (invalid UTF-8).
  virtual common::Status CreateMetricDefinition(const query::MetricDefinition& def) = 0;

  // The definition called `name`. NotFound when there is none; Corruption (naming the definition) when the
  // stored document does not read back as a valid definition.
  virtual common::Result<query::MetricDefinition> GetMetricDefinition(std::string_view name) = 0;

  // The definitions matching every set field of `filter`, sorted by name (byte order). The filtering is done
  // by the database. Corruption when any matching stored document is unreadable.
  virtual common::Result<std::vector<query::MetricDefinition>> ListMetricDefinitions(
      const MetricDefinitionFilter& filter) = 0;

  // Replaces the stored definition called def.name with `def`, atomically, if its stored version is
  // `expected_version` (optimistic concurrency). The caller sets def.version = expected_version + 1 and
  // def.updated_at_ms. NotFound when there is no such definition; FailedPrecondition when the stored version
  // differs from expected_version (someone else updated it first; nothing is changed).
  virtual common::Status UpdateMetricDefinition(const query::MetricDefinition& def, int64_t expected_version) = 0;

  // Removes the definition called `name` and its tags. NotFound when there is none.
  virtual common::Status DeleteMetricDefinition(std::string_view name) = 0;

  // Appends `record` to the audit log; the store assigns record.id (and at_ms when it is 0).
  // InvalidArgument when details cannot be serialized (invalid UTF-8).
  virtual common::Status AppendAudit(const AuditRecord& record) = 0;

  // The newest `limit` audit records, newest first (by at_ms, then by append order).
  // InvalidArgument when limit <= 0.
  virtual common::Result<std::vector<AuditRecord>> ListAudit(int limit) = 0;
};

}  // namespace analytics::metadata
