// PostgresMetadataStore: the MetadataStore adapter for the scaled mode (PostgreSQL shared by replicas).
//
// Rationale: replicas of the service share one database, so every check-then-write is a single statement
// or a transaction (ON CONFLICT DO NOTHING for creates, UPDATE ... WHERE version = expected for optimistic
// updates), and migrations run under a transaction-scoped advisory lock.
// Concurrency: thread-safe. Calls run in parallel on a pool of up to pool_size connections; a caller that
// finds every connection busy waits for one.
// New member indexes are assigned under a table lock (SHARE ROW EXCLUSIVE on segment_member_index), so
// they stay dense and replicas agree; lookups of known users take no lock. Outbox appends wait for each other
// (a transaction-scoped advisory lock per schema, across replicas), so sequences commit in order.
// Limitations: a call that loses its connection fails with Unavailable and is not retried (the caller may
// retry; the connection is re-established on its next use). A hung server makes callers wait (no statement
// timeout yet). Callers adding member indexes wait for each other, across replicas.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "metadata/metadata_store.h"

namespace analytics::metadata {

struct PostgresMetadataOptions {
  // libpq connection string, URI ("postgresql://user@host:5432/db") or key=value ("host=... dbname=...").
  std::string dsn;
  // Empty: tables live in the DSN's default search_path. Otherwise the schema (1-63 chars of a-z, 0-9 and _,
  // not starting with a digit) is created when missing and is the only schema on search_path; tests use it
  // to isolate themselves.
  std::string schema;
  // Connections kept open at most; opened on demand (Open opens the first).
  int pool_size = 4;
  // Per connection attempt; overrides any connect_timeout in the DSN (libpq treats 1 as 2; 0 waits forever).
  int connect_timeout_seconds = 5;
};

// OK when libpq can parse `dsn`; InvalidArgument with libpq's message otherwise (syntax errors, unknown
// options). Does not connect. An empty DSN is valid: libpq then uses its defaults (PGHOST etc.).
// The config loader calls it so a typo fails at start-up with a clear message.
common::Status ValidatePostgresDsn(std::string_view dsn);

// Connects, creates options.schema when set, and applies pending migrations. InvalidArgument for bad options
// (DSN, schema name, pool size); Unavailable when PostgreSQL cannot be reached (promptly when the port is
// closed; after connect_timeout_seconds when nothing answers); FailedPrecondition when the schema is newer
// than this build knows.
common::Result<std::unique_ptr<MetadataStore>> OpenPostgresMetadataStore(const PostgresMetadataOptions& options);

// Drops `schema` and everything in it (if it exists). For test teardown.
common::Status DropPostgresSchemaForTest(std::string_view dsn, std::string_view schema);

class PgConnectionPool;

class PostgresMetadataStore final : public MetadataStore {
 public:
  // Takes a pool whose database is migrated. Use OpenPostgresMetadataStore.
  explicit PostgresMetadataStore(std::unique_ptr<PgConnectionPool> pool);
  ~PostgresMetadataStore() override;
  PostgresMetadataStore(const PostgresMetadataStore&) = delete;
  PostgresMetadataStore& operator=(const PostgresMetadataStore&) = delete;

  std::string_view BackendName() const override { return "postgres"; }
  common::Status Ping() override;
  common::Result<int> SchemaVersion() override;
  common::Status CreateMetricDefinition(const query::MetricDefinition& def) override;
  common::Result<query::MetricDefinition> GetMetricDefinition(std::string_view name) override;
  common::Result<std::vector<query::MetricDefinition>> ListMetricDefinitions(
      const MetricDefinitionFilter& filter) override;
  common::Status UpdateMetricDefinition(const query::MetricDefinition& def, int64_t expected_version) override;
  common::Status DeleteMetricDefinition(std::string_view name) override;
  common::Status AppendAudit(const AuditRecord& record) override;
  common::Result<std::vector<AuditRecord>> ListAudit(int limit) override;
  common::Status AppendDeadLetters(std::vector<DeadLetter>& letters) override;
  common::Result<std::vector<DeadLetter>> ListDeadLetters(const DeadLetterFilter& filter) override;
  common::Result<int64_t> CountDeadLetters(const DeadLetterFilter& filter) override;
  common::Status DeleteDeadLetters(const std::vector<int64_t>& ids) override;
  common::Status MarkDeadLettersReplayed(const std::vector<int64_t>& ids) override;
  common::Result<int64_t> PurgeDeadLettersBefore(int64_t received_before_ms) override;
  common::Status CreateSegment(const SegmentRecord& record) override;
  common::Result<SegmentRecord> GetSegment(std::string_view id) override;
  common::Result<std::vector<SegmentRecord>> ListSegments(const SegmentFilter& filter) override;
  common::Status UpdateSegment(const SegmentRecord& record, int64_t expected_version) override;
  common::Status DeleteSegment(std::string_view id) override;
  common::Status PutMaterialization(const SegmentMaterialization& m) override;
  common::Result<SegmentMaterialization> GetMaterialization(std::string_view segment_id) override;
  common::Result<std::vector<SegmentMaterialization>> ListMaterializations() override;
  common::Result<std::vector<uint32_t>> MemberIndexes(const std::vector<std::string>& users) override;
  common::Result<std::vector<std::pair<uint32_t, std::string>>> ListMemberIndex(int64_t after, int limit) override;
  common::Result<uint32_t> ForgetMember(std::string_view user) override;
  common::Status CreateReportDefinition(const ReportDefinitionRecord& record) override;
  common::Result<ReportDefinitionRecord> GetReportDefinition(std::string_view id) override;
  common::Result<std::vector<ReportDefinitionRecord>> ListReportDefinitions() override;
  common::Status UpdateReportDefinition(const ReportDefinitionRecord& record, int64_t expected_version) override;
  common::Status DeleteReportDefinition(std::string_view id) override;
  common::Status CreatePipelineRun(const PipelineRun& run) override;
  common::Status UpdatePipelineRun(const PipelineRun& run) override;
  common::Result<PipelineRun> GetPipelineRun(std::string_view id) override;
  common::Result<std::vector<PipelineRun>> ListPipelineRuns(const PipelineRunFilter& filter) override;
  common::Result<std::vector<PipelineRun>> ListUnfinishedPipelineRuns() override;
  common::Result<int64_t> PurgePipelineRunsBefore(int64_t before_ms, std::string_view kind) override;
  common::Result<int64_t> AppendOutbox(const std::string& key, const std::string& type, const std::string& event_json,
                                       int64_t now_ms) override;
  common::Result<std::vector<OutboxRecord>> ListOutbox(int64_t after_sequence, size_t limit,
                                                       const std::string& type) override;
  common::Result<std::vector<OutboxRecord>> ListUnrelayedOutbox(size_t limit) override;
  common::Status MarkOutboxRelayed(const std::vector<int64_t>& sequences, int64_t now_ms) override;
  common::Result<int64_t> CountUnrelayedOutbox() override;
  common::Result<int64_t> PurgeOutbox(int64_t before_ms, bool only_relayed) override;

  // Runs `sql` (one or more statements, results discarded) on one pooled connection. Tests use it to damage
  // rows, fake a newer schema or kill connections.
  common::Status ExecuteForTest(std::string_view sql);

 private:
  std::unique_ptr<PgConnectionPool> pool_;  // thread-safe
};

}  // namespace analytics::metadata
