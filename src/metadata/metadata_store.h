// MetadataStore: the port through which the service keeps its definitions, audit log and dead letters.
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

// An event that intake rejected (not a valid CloudEvent), kept for a retention period so admins can see why
// and replay it after a fix. Strings are stored and returned byte for byte; they must be UTF-8 without NUL
// bytes (the caller has already applied the personal-data treatment to the payload).
struct DeadLetter {
  int64_t id = 0;              // assigned by the store (increasing in append order); ignored by AppendDeadLetters
  int64_t received_at_ms = 0;  // Unix millis when intake rejected it; AppendDeadLetters stores "now" when 0
  std::string source;          // CloudEvents source if readable, else ""
  std::string event_id;        // CloudEvents id if readable, else ""
  std::string event_type;      // CloudEvents type if readable, else ""
  std::string code;            // rejection code, e.g. INVALID_FIELD
  std::string field;           // e.g. data.amount
  std::string message;         // human-readable reason
  std::string payload;         // the event JSON after personal-data treatment ("" when it did not parse)
  int64_t payload_bytes = 0;   // size of the original event (>= 0)
  std::string channel;         // "http" or "kafka"
  int replay_count = 0;        // times it was replayed and rejected again (>= 0)
};

// Which dead letters ListDeadLetters and CountDeadLetters see. Unset fields do not filter; set fields are
// ANDed.
struct DeadLetterFilter {
  std::optional<std::string> code;        // exact match
  std::optional<std::string> event_type;  // exact match
  std::optional<int64_t> from_ms;         // received_at_ms >= from_ms
  std::optional<int64_t> to_ms;           // received_at_ms < to_ms
  std::optional<int64_t> after_id;        // paging: id > after_id (results ordered by id ascending)
  int limit = 100;                        // page size, 1..1000 (ListDeadLetters only)
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

  // Dead letters. Ids are assigned by the database, grow in append order and are never reused; to page, pass
  // the last id of a page as the next filter's after_id. On PostgreSQL an id is taken before its append
  // commits, so a batch committing while someone pages may land below an id they have already passed.

  // Appends `letters` in one transaction (all or none) and, once committed, writes their ids (increasing in
  // vector order) and received_at_ms (when it was 0) into the vector; on failure the vector is unchanged.
  // Each letter's replay_count is stored as given. An empty vector is OK and does nothing. InvalidArgument
  // (field "letters[i].x"; nothing stored) when a string is not UTF-8 or contains a NUL byte, or
  // received_at_ms, payload_bytes or replay_count is negative.
  virtual common::Status AppendDeadLetters(std::vector<DeadLetter>& letters) = 0;

  // At most filter.limit dead letters matching every set field of `filter`, by id ascending. The filtering is
  // done by the database. InvalidArgument when limit is outside 1..1000.
  virtual common::Result<std::vector<DeadLetter>> ListDeadLetters(const DeadLetterFilter& filter) = 0;

  // How many dead letters match `filter` (after_id and limit are ignored).
  virtual common::Result<int64_t> CountDeadLetters(const DeadLetterFilter& filter) = 0;

  // Removes the dead letters with these ids (after a successful replay), in one transaction. Unknown ids and
  // duplicates are ignored; an empty list does nothing.
  virtual common::Status DeleteDeadLetters(const std::vector<int64_t>& ids) = 0;

  // Adds 1 to replay_count of the dead letters with these ids (replayed, but rejected again), in one
  // transaction. Each listed row counts once however often its id is listed; unknown ids are ignored.
  virtual common::Status MarkDeadLettersReplayed(const std::vector<int64_t>& ids) = 0;

  // Retention: removes every dead letter with received_at_ms < received_before_ms; returns how many.
  virtual common::Result<int64_t> PurgeDeadLettersBefore(int64_t received_before_ms) = 0;
};

}  // namespace analytics::metadata
