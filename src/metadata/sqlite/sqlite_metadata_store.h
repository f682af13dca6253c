// SqliteMetadataStore: the MetadataStore adapter for the embedded mode (one SQLite file in the data dir).
//
// Rationale: metadata is small and written rarely, so one connection behind one mutex is simple and fast
// enough; SQLite's WAL mode keeps readers of other processes (a second service instance, the sqlite3 CLI)
// from blocking, and BEGIN IMMEDIATE plus busy_timeout serializes writers across processes. The one bulk
// call, MemberIndexes, runs each of its phases as one transaction re-binding one prepared statement.
// Concurrency: thread-safe; every call holds mu_ for its whole duration, so calls run one at a time.
// Limitations: no parallelism between calls (a MemberIndexes call of a million users holds the others up
// for its duration); a writer in another process holding the lock longer than busy_timeout_ms makes calls
// return Unavailable.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "metadata/metadata_store.h"

struct sqlite3;

namespace analytics::metadata {

struct SqliteMetadataOptions {
  // Database file. Its parent directory is created when missing. ":memory:" gives a private in-memory
  // database (for tests; nothing is kept).
  std::string path;
  // How long a call waits for a lock held by another connection before it returns Unavailable.
  int busy_timeout_ms = 5000;
};

// Opens (creating when missing) the database at options.path, switches it to WAL mode and applies pending
// migrations. InvalidArgument for an empty path or negative timeout; IOError when the file or its directory
// cannot be created or opened; Corruption when the file is not a SQLite database; FailedPrecondition when the
// schema is newer than this build knows.
common::Result<std::unique_ptr<MetadataStore>> OpenSqliteMetadataStore(const SqliteMetadataOptions& options);

class SqliteMetadataStore final : public MetadataStore {
 public:
  // Takes ownership of an open, migrated connection. Use OpenSqliteMetadataStore.
  explicit SqliteMetadataStore(sqlite3* db);
  ~SqliteMetadataStore() override;
  SqliteMetadataStore(const SqliteMetadataStore&) = delete;
  SqliteMetadataStore& operator=(const SqliteMetadataStore&) = delete;

  std::string_view BackendName() const override { return "sqlite"; }
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

  // Runs `sql` (one or more statements, results discarded) on the store's connection. Tests use it to
  // damage rows or fake a newer schema.
  common::Status ExecuteForTest(std::string_view sql);

 private:
  std::mutex mu_;
  sqlite3* db_;  // GUARDED_BY(mu_); owned
};

}  // namespace analytics::metadata
