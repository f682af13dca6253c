// MetadataStore: the port through which the service keeps its definitions, audit log, dead letters, segments
// (definitions, materialized members, the member index), report definitions, pipeline runs (segment
// refreshes, report instances) and the outbox of the events it produces.
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
#include <utility>
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

// A segment definition (src/segments validates `definition`; the store keeps it as given).
// Every string is stored byte for byte and must be UTF-8 without NUL bytes.
struct SegmentRecord {
  std::string id;              // UUID text, assigned by the caller (1..64 bytes)
  std::string name;            // unique (byte-exact), 1..128 characters (code points)
  std::string type;            // "static" or "dynamic"
  nlohmann::json definition;   // the whole normalized definition document (a JSON object), stored and returned as is
  int64_t version = 1;         // >= 1
  int64_t created_at_ms = 0, updated_at_ms = 0;  // Unix millis, >= 0
  std::string created_by;
};

// Which segments ListSegments returns. Unset fields do not filter.
struct SegmentFilter {
  std::optional<std::string> type;  // exact match
};

// The current members of a segment: a CRoaring bitmap (portable serialization, opaque bytes here) over member
// indexes (see MemberIndexes).
struct SegmentMaterialization {
  std::string segment_id;
  int64_t definition_version = 0;  // the segment version it was computed from (>= 0)
  int64_t as_of_ms = 0, refreshed_at_ms = 0, duration_ms = 0;  // >= 0
  int64_t users_count = 0, added = 0, removed = 0;             // >= 0
  std::string run_id;          // "" for none
  std::string trigger;         // "manual", "schedule", "incremental", "upload", "create", "definition_changed",
                               // "new_day", "incremental_overflow", "erasure"
  std::string bitmap;          // bytes (may contain NUL): BLOB / BYTEA, returned byte for byte
};

// A report definition (src/reports validates `definition`; the store keeps it as given). Strings as for
// SegmentRecord.
struct ReportDefinitionRecord {
  std::string id;              // UUID text, assigned by the caller (1..64 bytes)
  std::string name;            // unique (byte-exact), 1..128 characters (code points)
  nlohmann::json definition;   // the whole normalized definition document (a JSON object), stored and returned as is
  int64_t version = 1;         // >= 1
  bool builtin = false;        // seeded by the service
  int64_t created_at_ms = 0, updated_at_ms = 0;  // Unix millis, >= 0
  std::string created_by;
};

// One pipeline run (the spec's DataPipelineRun). Strings must be UTF-8 without NUL bytes.
struct PipelineRun {
  std::string id;              // UUID text, caller-assigned (1..64 bytes)
  std::string kind;            // e.g. "segment_refresh", "report" (not empty)
  std::string target;          // e.g. the segment id, the report definition id
  std::string status;          // "queued", "running", "completed", "failed", "cancelled"
  double progress = 0;         // 0..1 (the handler's estimate while running; 1 when completed)
  nlohmann::json parameters;   // null when none; stored and returned as is
  nlohmann::json result;       // null when none; stored and returned as is
  std::string error;           // "" when none
  std::string requested_by;
  int64_t created_at_ms = 0, started_at_ms = 0, finished_at_ms = 0;  // Unix millis; 0 = not yet; >= 0
};

// Which runs ListPipelineRuns returns. Unset fields do not filter; set fields are ANDed.
struct PipelineRunFilter {
  std::optional<std::string> kind, status, target, requested_by;  // exact matches
  std::optional<int64_t> created_from_ms, created_to_ms;  // [from, to) on created_at_ms
  std::optional<std::string> before_id;  // paging cursor: runs strictly after this one in the order below
  int limit = 100;                        // 1..1000
};  // order: created_at_ms descending, then id descending (byte order)

// One event the service produced, kept in the outbox until it is purged (see AppendOutbox). Strings are stored and
// returned byte for byte.
struct OutboxRecord {
  int64_t sequence = 0;      // assigned by the store: increasing in append (= commit) order, never reused
  std::string key;           // the entity id the Kafka message is keyed by
  std::string type;          // the CloudEvent type (for filtering)
  std::string event_json;    // the CloudEvent, compact JSON (stored as given; the store does not parse it)
  int64_t created_at_ms = 0;
  std::optional<int64_t> relayed_at_ms;  // set once delivered to Kafka (MarkOutboxRelayed)
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

  // ------------------------------------------------------------------------------------------------------
  // Segments. Validation errors are InvalidArgument naming the field ("name", "definition", ...); nothing is
  // stored then. A stored document that does not read back is Corruption naming the segment or run.

  // Stores a new segment exactly as given. AlreadyExists when record.id or record.name is taken (the stored
  // one is left unchanged; under concurrent creates of one name exactly one caller gets OK). InvalidArgument
  // when a field is out of range (empty or over-long id/name, type other than static/dynamic, definition not
  // a JSON object, version < 1, negative time) or a string is not storable (invalid UTF-8, NUL byte).
  virtual common::Status CreateSegment(const SegmentRecord& record) = 0;

  // The segment with this id. NotFound when there is none.
  virtual common::Result<SegmentRecord> GetSegment(std::string_view id) = 0;

  // The segments matching `filter`, sorted by name (byte order). The filtering is done by the database.
  virtual common::Result<std::vector<SegmentRecord>> ListSegments(const SegmentFilter& filter) = 0;

  // Replaces every field of the segment record.id with `record`, atomically, if its stored version is
  // `expected_version` (the caller sets record.version = expected_version + 1 and updated_at_ms). NotFound
  // when there is no such segment; FailedPrecondition when the stored version differs (nothing changes);
  // AlreadyExists when record.name is the name of another segment (nothing changes); InvalidArgument as for
  // CreateSegment. The materialization is kept (it records the definition_version it was computed from).
  virtual common::Status UpdateSegment(const SegmentRecord& record, int64_t expected_version) = 0;

  // Removes the segment and its materialization, atomically. NotFound when there is none.
  virtual common::Status DeleteSegment(std::string_view id) = 0;

  // Inserts or replaces the materialization of m.segment_id, atomically. NotFound when the segment does not
  // exist (also when it is deleted concurrently). InvalidArgument (field named) for a negative number, a
  // trigger outside the list above or an unstorable string; the bitmap may hold
  // any bytes.
  virtual common::Status PutMaterialization(const SegmentMaterialization& m) = 0;

  // The materialization of the segment. NotFound when the segment has none (never materialized, or deleted).
  virtual common::Result<SegmentMaterialization> GetMaterialization(std::string_view segment_id) = 0;

  // Every materialization (startup load), sorted by segment_id (byte order).
  virtual common::Result<std::vector<SegmentMaterialization>> ListMaterializations() = 0;

  // Member index: a persistent dense index of user pseudonyms (0, 1, 2, ...; never reused, also not after
  // ForgetMember). Returns the index of each of `users` (same order), inserting the unknown ones in the order
  // of their first occurrence; duplicates in the input get one index. Concurrent callers (also two replicas on
  // PostgreSQL) agree on the index of a user. An empty input returns an empty vector. InvalidArgument (field
  // "users[i]"; nothing stored) for an empty string, one over 1024 bytes or one that is not UTF-8 without NUL
  // bytes; ResourceExhausted when the index would pass UINT32_MAX. All new entries of a call are committed
  // together. Handles 1,000,000 users in one call (batched statements).
  virtual common::Result<std::vector<uint32_t>> MemberIndexes(const std::vector<std::string>& users) = 0;

  // Entries with index > after, ascending, at most `limit`, for loading the index at startup; page by passing
  // the last index returned as the next `after` (start with -1). Forgotten entries are left out.
  // InvalidArgument (field "limit") when limit is outside 1..100000.
  virtual common::Result<std::vector<std::pair<uint32_t, std::string>>> ListMemberIndex(int64_t after,
                                                                                         int limit) = 0;

  // Erasure: the user's entry loses its pseudonym (the index is never reused; the user gets a new index if
  // seen again). Returns its index; NotFound when the user has no entry. InvalidArgument (field "user") as
  // for MemberIndexes.
  virtual common::Result<uint32_t> ForgetMember(std::string_view user) = 0;

  // ------------------------------------------------------------------------------------------------------
  // Report definitions: the same contract as the segment methods above (validation errors InvalidArgument
  // naming the field; Corruption for a stored document that does not read back).

  // AlreadyExists when record.id or record.name is taken (under concurrent creates of one name exactly one
  // caller gets OK). InvalidArgument for an empty or over-long id/name, a definition that is not a JSON object,
  // version < 1, a negative time or an unstorable string.
  virtual common::Status CreateReportDefinition(const ReportDefinitionRecord& record) = 0;
  // NotFound when there is none.
  virtual common::Result<ReportDefinitionRecord> GetReportDefinition(std::string_view id) = 0;
  // Every definition, sorted by name (byte order).
  virtual common::Result<std::vector<ReportDefinitionRecord>> ListReportDefinitions() = 0;
  // Replaces every field of record.id if its stored version is `expected_version` (the caller sets
  // record.version = expected_version + 1 and updated_at_ms). NotFound, FailedPrecondition (version differs,
  // nothing changes), AlreadyExists (name of another definition), InvalidArgument as for create.
  virtual common::Status UpdateReportDefinition(const ReportDefinitionRecord& record, int64_t expected_version) = 0;
  // NotFound when there is none. Runs that name it as their target are kept.
  virtual common::Status DeleteReportDefinition(std::string_view id) = 0;

  // ------------------------------------------------------------------------------------------------------
  // Pipeline runs. InvalidArgument (field named) when a run has an empty id or kind, a status outside
  // queued/running/completed/failed/cancelled, progress outside 0..1 (or NaN), a negative time, an unstorable
  // string, or parameters/result that cannot be serialized.

  // Stores a new run. AlreadyExists when run.id is taken (the stored run is unchanged).
  virtual common::Status CreatePipelineRun(const PipelineRun& run) = 0;

  // Replaces every field of the run run.id with `run`. NotFound when there is none.
  virtual common::Status UpdatePipelineRun(const PipelineRun& run) = 0;

  // The run with this id. NotFound when there is none.
  virtual common::Result<PipelineRun> GetPipelineRun(std::string_view id) = 0;

  // At most filter.limit runs matching every set field of `filter`, newest first (created_at_ms descending,
  // then id descending). Filtering and paging are done by the database. To page, pass the last id of a page as
  // the next filter's before_id (with the same other fields). InvalidArgument when limit is outside 1..1000
  // (field "limit") or before_id names no run (field "before_id"; e.g. it was purged).
  virtual common::Result<std::vector<PipelineRun>> ListPipelineRuns(const PipelineRunFilter& filter) = 0;

  // Runs left queued or running (a restart recovers them), oldest first (created_at_ms, then id ascending).
  // (Cancelled runs are finished.)
  virtual common::Result<std::vector<PipelineRun>> ListUnfinishedPipelineRuns() = 0;

  // Retention: deletes the finished runs (completed, failed or cancelled) with finished_at_ms < before_ms of
  // the given kind (every kind when `kind` is empty); returns how many. Queued and running runs are never purged.
  virtual common::Result<int64_t> PurgePipelineRunsBefore(int64_t before_ms, std::string_view kind) = 0;

  // ------------------------------------------------------------------------------------------------------
  // Outbox: the events the service produces (src/bus/outbox/), written before anyone is told about them and
  // relayed to Kafka later. Sequences are assigned at append, in commit order: when a reader sees sequence N,
  // every record with a smaller sequence is visible too (appends are serialized: SQLite's write lock,
  // PostgreSQL a transaction-scoped advisory lock, also across replicas), so paging by sequence skips nothing.

  // Appends one record and commits it durably before returning (SQLite syncs this commit to disk even though
  // the store otherwise runs with synchronous=NORMAL; PostgreSQL commits with synchronous_commit). Returns its
  // sequence. InvalidArgument (field "key", "type", "event_json" or "created_at_ms"; nothing stored) for an
  // empty type or event_json, a string that is not UTF-8 without NUL bytes, or a negative now_ms.
  virtual common::Result<int64_t> AppendOutbox(const std::string& key, const std::string& type,
                                               const std::string& event_json, int64_t now_ms) = 0;

  // Records with sequence > after_sequence, oldest first (sequence ascending), at most `limit` (0 gives none),
  // of exactly `type` when it is not empty, relayed or not.
  virtual common::Result<std::vector<OutboxRecord>> ListOutbox(int64_t after_sequence, size_t limit,
                                                               const std::string& type) = 0;

  // Records not yet relayed, oldest first (sequence ascending), at most `limit` (0 gives none). Served by a
  // partial index, so it stays cheap however many relayed records are kept.
  virtual common::Result<std::vector<OutboxRecord>> ListUnrelayedOutbox(size_t limit) = 0;

  // Sets relayed_at_ms = now_ms on the listed records that are not relayed yet, in one statement/transaction.
  // A record already relayed keeps its first time (a relay that delivers twice does not move it); unknown
  // sequences and duplicates are ignored; an empty list does nothing. InvalidArgument for a negative now_ms.
  virtual common::Status MarkOutboxRelayed(const std::vector<int64_t>& sequences, int64_t now_ms) = 0;

  // How many records are not relayed yet.
  virtual common::Result<int64_t> CountUnrelayedOutbox() = 0;

  // Retention: deletes the records with created_at_ms < before_ms; when `only_relayed`, records not yet relayed
  // are kept whatever their age. Returns how many were deleted.
  virtual common::Result<int64_t> PurgeOutbox(int64_t before_ms, bool only_relayed) = 0;
};

}  // namespace analytics::metadata
