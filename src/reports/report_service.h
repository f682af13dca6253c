// ReportService: report definitions, report instances generated in the background, their files, schedules,
// retention and report.generated events (docs/reports.md).
//
// Rationale:
// - An instance is a pipeline run of kind "report" (jobs/pipeline_runner.h) on its own runner: persisted before
//   the 202, recovered after a restart, cancellable, with progress. The run's parameters hold a snapshot of the
//   definition and the bound parameters, so an instance generates what was asked even if the definition changes
//   or is deleted meanwhile; its result holds the file's key, size and row counts.
// - Sections run one at a time and are written as they come (reports/formats/writer.h), so the file is never
//   held whole in memory; only one section's table is. Files go to the ObjectStore under
//   reports/<yyyy>/<mm>/<dd>/<instance id>.<ext> and are made visible only when complete.
// - Schedules fire at most once per (definition, fire time) across restarts and replicas: a scheduled instance's
//   id is derived from both, and creating a run whose id exists fails. After downtime the latest missed fire time
//   of the last `schedule_catch_up_ms` still fires (once).
// - Retention: files and instances older than `retention_days` are deleted (hourly).
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "blob/object_store.h"
#include "bus/event_bus.h"
#include "common/status.h"
#include "jobs/pipeline_runner.h"
#include "metadata/metadata_store.h"
#include "metrics/metric_values.h"
#include "reports/definition.h"
#include "reports/sections.h"
#include "store/event_store.h"

namespace analytics::reports {

inline constexpr char kReportKind[] = "report";
inline constexpr char kGeneratedType[] = "com.platform.analytics.report.generated.v1";

struct ReportServiceOptions {
  int64_t retention_days = 30;               // files and instances older than this are deleted
  int64_t schedule_check_ms = 1000;          // how often schedules are checked
  int64_t schedule_catch_up_ms = 86400000;   // a fire time missed while stopped still fires if this recent
  int64_t cleanup_interval_ms = 3600000;     // how often retention runs
  std::string temp_dir;                      // XLSX temporary files (created if missing)
  int64_t max_list_limit = 1000;
};

// Segment facts the sections need (the segment service supplies them; unset: every segment is unknown).
struct SegmentLookup {
  std::function<common::Result<nlohmann::json>(const std::string& segment_id)> size;  // SectionContext::segment_size
  std::function<common::Result<std::vector<std::string>>()> ids;                      // SectionContext::segment_ids
};

// Who calls: the token's subject and whether it is a platform_admin (sees and manages every instance).
struct Caller {
  std::string subject;
  bool admin = false;
};

struct InstanceFilter {
  std::optional<std::string> definition_id, status, requested_by;
  std::optional<std::string> cursor;  // the last instance id of the previous page
  int64_t limit = 100;
};

class ReportService {
 public:
  ReportService(metadata::MetadataStore& metadata, store::EventStore& store, metrics::MetricValues& metric_values,
                analysis::AnalysisOptions analysis, blob::ObjectStore& objects, bus::EventBus& bus,
                jobs::PipelineRunner& runner, SegmentLookup segments, ReportServiceOptions options = {});
  ~ReportService();
  ReportService(const ReportService&) = delete;
  ReportService& operator=(const ReportService&) = delete;

  // Registers the "report" job kind with the runner (before runner.Start()).
  void RegisterJobs();
  // Seeds the built-in definitions that are missing (by name), loads the schedules, starts the schedule and
  // retention threads.
  common::Status Start();
  void Stop();

  // Definitions (docs/reports.md "Definitions"). Errors: NotFound (REPORT_DEFINITION_NOT_FOUND), InvalidArgument
  // with the field, AlreadyExists (name taken), FailedPrecondition (If-Match version conflict).
  common::Result<nlohmann::json> CreateDefinition(const nlohmann::json& body, const std::string& actor);
  common::Result<nlohmann::json> GetDefinition(const std::string& id);
  common::Result<nlohmann::json> ListDefinitions();
  common::Result<nlohmann::json> UpdateDefinition(const std::string& id, const nlohmann::json& body,
                                                  std::optional<int64_t> expected_version, const std::string& actor);
  common::Status DeleteDefinition(const std::string& id, const std::string& actor);

  // Instances. RequestInstance: body {"report_definition_id", "parameters", "output_format"}; parameter errors
  // are InvalidArgument with field "parameters.<name>"; NotFound (REPORT_DEFINITION_NOT_FOUND) for an unknown
  // definition, InvalidArgument with field "parameters.<name>" for an unknown segment. The queued instance's document.
  common::Result<nlohmann::json> RequestInstance(const nlohmann::json& body, const Caller& caller);
  // PermissionDenied when the caller is neither its owner nor an admin; NotFound for an unknown id.
  common::Result<nlohmann::json> GetInstance(const std::string& id, const Caller& caller);
  common::Result<nlohmann::json> ListInstances(const InstanceFilter& filter, const Caller& caller);
  // Cancels a queued or running instance (the document after cancelling; a running one is given up to two
  // seconds to stop). FailedPrecondition when it has finished already.
  common::Result<nlohmann::json> CancelInstance(const std::string& id, const Caller& caller);

  // A completed instance's file, ready to stream.
  struct Download {
    std::unique_ptr<blob::ObjectReader> reader;
    std::string content_type, file_name;
  };
  // FailedPrecondition for an instance that is not completed, its field() the instance's status (queued/running:
  // DATA_NOT_YET_AVAILABLE; failed/cancelled: REPORT_GENERATION_FAILED), or "expired" when its file is gone
  // (REPORT_EXPIRED).
  common::Result<Download> OpenDownload(const std::string& id, const Caller& caller);

  // Runs the schedules as if the clock read `now_ms` (tests); returns the instances created.
  common::Result<std::vector<std::string>> RunSchedulesForTest(int64_t now_ms);
  // Runs retention as if the clock read `now_ms` (tests); returns the instances removed.
  common::Result<int64_t> RunRetentionForTest(int64_t now_ms);

 private:
  common::Result<nlohmann::json> Generate(const metadata::PipelineRun& run, jobs::RunContext& context);
  common::Result<metadata::PipelineRun> OwnedRun(const std::string& id, const Caller& caller);
  common::Result<metadata::PipelineRun> Submit(const metadata::ReportDefinitionRecord& record,
                                               const ReportDefinition& definition, nlohmann::json bound,
                                               OutputFormat format, const std::string& owner,
                                               const std::string& trigger, int64_t scheduled_for_ms,
                                               const std::vector<std::string>& recipients);
  common::Status CheckSegments(const ReportDefinition& definition, const nlohmann::json& bound);
  common::Result<std::vector<std::string>> FireSchedules(int64_t now_ms);
  common::Result<int64_t> Retain(int64_t now_ms);
  void Loop();
  // The stored definition parsed, cached by id and version (the schedule check reads every definition each
  // second); null when it does not read back.
  std::shared_ptr<const ReportDefinition> Parsed(const metadata::ReportDefinitionRecord& record);
  // Writes an audit record of a definition change (a failure is logged, not returned).
  void Audit(const std::string& actor, const std::string& action, const std::string& id, nlohmann::json details);

  metadata::MetadataStore& metadata_;
  store::EventStore& store_;
  metrics::MetricValues& metric_values_;
  const analysis::AnalysisOptions analysis_;
  blob::ObjectStore& objects_;
  bus::EventBus& bus_;
  jobs::PipelineRunner& runner_;
  const SegmentLookup segments_;
  const ReportServiceOptions options_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                 // guarded by mu_
  int64_t schedules_checked_ms_ = 0;      // guarded by mu_: fire times up to this were handled
  // guarded by mu_: by definition id, its version and its parse (null: unreadable)
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const ReportDefinition>>> parsed_;
  std::thread loop_;
};

// The API document of an instance (docs/reports.md "Instances") from its run.
nlohmann::json InstanceToJson(const metadata::PipelineRun& run);

}  // namespace analytics::reports
