#include "reports/report_service.h"

#include <absl/time/civil_time.h>
#include <absl/time/time.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <utility>

#include "common/ids.h"
#include "common/time_util.h"
#include "obs/logging.h"
#include "reports/formats/writer.h"

namespace analytics::reports {

namespace {

using common::Result;
using common::Status;
using common::StatusCode;
using nlohmann::json;

constexpr int64_t kDayMs = 86400000;
constexpr char kApiPrefix[] = "/api/v1/analytics";
constexpr uint64_t kRowsPerCancelCheck = 4096;

json Time(int64_t ms) { return ms > 0 ? json(common::FormatRfc3339Millis(ms)) : json(); }

Status DefinitionNotFound(const std::string& id) {
  return Status::NotFound("report definition '" + id + "' does not exist");
}

Status InstanceNotFound(const std::string& id) { return Status::NotFound("report instance '" + id + "' does not exist"); }

bool Finished(const std::string& status) { return status == "completed" || status == "failed" || status == "cancelled"; }

// The definition's API document: its normalized document with the record's fields.
json DefinitionToJson(const metadata::ReportDefinitionRecord& record, const ReportDefinition* parsed, int64_t now_ms) {
  json out = {{"id", record.id}};
  for (const auto& [key, value] : record.definition.items()) out[key] = value;
  out["version"] = record.version;
  out["builtin"] = record.builtin;
  out["created_at"] = Time(record.created_at_ms);
  out["updated_at"] = Time(record.updated_at_ms);
  out["created_by"] = record.created_by;
  json next = nullptr;
  if (parsed && parsed->schedule && parsed->schedule->enabled) {
    if (auto at = parsed->schedule->cron.NextAfter(now_ms, parsed->schedule->zone)) next = Time(*at);
  }
  out["next_run_at"] = next;
  return out;
}

std::string ObjectKey(const std::string& id, int64_t created_ms, OutputFormat format) {
  const absl::CivilDay day = absl::ToCivilDay(absl::FromUnixMillis(created_ms), absl::UTCTimeZone());
  char date[16];
  std::snprintf(date, sizeof(date), "%04d/%02d/%02d", static_cast<int>(day.year()), day.month(), day.day());
  return std::string("reports/") + date + "/" + id + "." + FileExtension(format);
}

// A scheduled instance's id: one per (definition, fire time), so that it is created at most once.
std::string ScheduledRunId(const std::string& definition_id, int64_t scheduled_for_ms) {
  return common::NameUuid("report-schedule|" + definition_id + "|" + std::to_string(scheduled_for_ms));
}

// "<definition name>_<period or date>.<ext>": what a person sees in their downloads folder.
std::string FileName(const std::string& name, const json& parameters, int64_t created_ms, OutputFormat format) {
  std::string base = name;
  auto text = [&](const char* key) {
    return parameters.contains(key) && parameters[key].is_string() ? parameters[key].get<std::string>() : "";
  };
  const std::string start = text("period_start"), end = text("period_end");
  if (!start.empty() && !end.empty()) {
    base += "_" + start + "_" + end;
  } else {
    base += "_" + common::FormatRfc3339Millis(created_ms).substr(0, 10);
  }
  for (char& c : base) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '-' || c == '.';
    if (!safe) c = '_';
  }
  return base + "." + FileExtension(format);
}

}  // namespace

json InstanceToJson(const metadata::PipelineRun& run) {
  const json run_doc = jobs::RunToJson(run);
  const json& p = run.parameters.is_object() ? run.parameters : json::object();
  const json& r = run.result.is_object() ? run.result : json::object();
  auto get = [](const json& object, const char* key) { return object.contains(key) ? object[key] : json(); };
  json out = {{"instance_id", run.id},
              {"report_definition_id", get(p, "report_definition_id")},
              {"report_name", get(p, "report_name")},
              {"definition_version", get(p, "definition_version")},
              {"status", run.status},
              {"progress", run_doc["progress"]},
              {"parameters", get(p, "parameters")},
              {"output_format", get(p, "output_format")},
              {"requested_by", run.requested_by},
              {"trigger", get(p, "trigger")},
              {"scheduled_for", get(p, "scheduled_for")},
              {"recipients", p.contains("recipients") ? p["recipients"] : json::array()},
              {"created_at", run_doc["created_at"]},
              {"started_at", run_doc["started_at"]},
              {"finished_at", run_doc["finished_at"]},
              {"duration_ms", run_doc["duration_ms"]},
              {"file", nullptr},
              {"row_count", get(r, "row_count")},
              {"sections", r.contains("sections") ? r["sections"] : json()},
              {"error", nullptr}};
  if (run.status == "completed" && r.contains("object_key")) {
    out["file"] = {{"size_bytes", get(r, "size_bytes")},
                   {"content_type", get(r, "content_type")},
                   {"file_name", get(r, "file_name")},
                   {"download_path", std::string(kApiPrefix) + "/reports/instances/" + run.id + "/download"},
                   {"expires_at", get(r, "expires_at")}};
  }
  if (run.status == "failed") {
    out["error"] = {{"code", "REPORT_GENERATION_FAILED"}, {"message", run.error}};
  } else if (run.status == "cancelled") {
    out["error"] = {{"code", "REPORT_GENERATION_FAILED"}, {"message", run.error}};  // "cancelled by <who>"
  }
  return out;
}

ReportService::ReportService(metadata::MetadataStore& metadata, store::EventStore& store,
                             metrics::MetricValues& metric_values, analysis::AnalysisOptions analysis,
                             blob::ObjectStore& objects, bus::EventBus& bus, jobs::PipelineRunner& runner,
                             SegmentLookup segments, ReportServiceOptions options)
    : metadata_(metadata),
      store_(store),
      metric_values_(metric_values),
      analysis_(std::move(analysis)),
      objects_(objects),
      bus_(bus),
      runner_(runner),
      segments_(std::move(segments)),
      options_(std::move(options)) {}

ReportService::~ReportService() { Stop(); }

void ReportService::RegisterJobs() {
  runner_.Register(kReportKind, [this](const metadata::PipelineRun& run, jobs::RunContext& context) {
    return Generate(run, context);
  });
}

Status ReportService::Start() {
  if (!options_.temp_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.temp_dir, ec);
    if (ec) return Status::IOError("cannot create " + options_.temp_dir + ": " + ec.message());
  }
  const int64_t now = common::NowMillis();
  ANALYTICS_ASSIGN_OR_RETURN(auto existing, metadata_.ListReportDefinitions());
  int seeded = 0;
  for (const json& body : BuiltinDefinitions()) {
    ANALYTICS_ASSIGN_OR_RETURN(ReportDefinition parsed, ParseReportDefinition(body));
    const bool present = std::any_of(existing.begin(), existing.end(),
                                     [&](const auto& record) { return record.name == parsed.name; });
    if (present) continue;
    metadata::ReportDefinitionRecord record;
    record.id = common::NameUuid("builtin-report-definition|" + parsed.name);
    record.name = parsed.name;
    record.definition = ToDocument(parsed);
    record.version = 1;
    record.builtin = true;
    record.created_at_ms = record.updated_at_ms = now;
    record.created_by = "system";
    Status created = metadata_.CreateReportDefinition(record);
    if (!created.ok() && created.code() != StatusCode::kAlreadyExists) return created;
    seeded += created.ok() ? 1 : 0;
  }
  if (seeded > 0) obs::LogInfo("built-in report definitions seeded", {{"count", seeded}});
  {
    std::lock_guard lock(mu_);
    if (loop_.joinable()) return Status::Ok();
    stopping_ = false;
    schedules_checked_ms_ = now - options_.schedule_catch_up_ms;
  }
  loop_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ReportService::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

void ReportService::Loop() {
  int64_t next_cleanup = common::NowMillis() + std::min<int64_t>(options_.cleanup_interval_ms, 60000);
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(options_.schedule_check_ms));
    if (stopping_) break;
    lock.unlock();
    const int64_t now = common::NowMillis();
    auto fired = FireSchedules(now);
    if (!fired.ok()) obs::LogWarn("report schedules not checked", {{"error", fired.status().ToString()}});
    if (now >= next_cleanup) {
      next_cleanup = now + options_.cleanup_interval_ms;
      auto removed = Retain(now);
      if (!removed.ok()) obs::LogWarn("report retention failed", {{"error", removed.status().ToString()}});
    }
    lock.lock();
  }
}

// ---------------------------------------------------------------------------------------------- definitions

Result<json> ReportService::CreateDefinition(const json& body, const std::string& actor) {
  ANALYTICS_ASSIGN_OR_RETURN(ReportDefinition parsed, ParseReportDefinition(body));
  const int64_t now = common::NowMillis();
  metadata::ReportDefinitionRecord record;
  record.id = common::NewUuid();
  record.name = parsed.name;
  record.definition = ToDocument(parsed);
  record.version = 1;
  record.created_at_ms = record.updated_at_ms = now;
  record.created_by = actor;
  Status created = metadata_.CreateReportDefinition(record);
  if (created.code() == StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(created);
  Audit(actor, "report_definition.create", record.id, {{"name", record.name}});
  return DefinitionToJson(record, &parsed, now);
}

Result<json> ReportService::GetDefinition(const std::string& id) {
  auto record = metadata_.GetReportDefinition(id);
  if (record.status().code() == StatusCode::kNotFound) return DefinitionNotFound(id);
  ANALYTICS_RETURN_IF_ERROR(record.status());
  return DefinitionToJson(*record, Parsed(*record).get(), common::NowMillis());
}

Result<json> ReportService::ListDefinitions() {
  ANALYTICS_ASSIGN_OR_RETURN(auto records, metadata_.ListReportDefinitions());
  const int64_t now = common::NowMillis();
  json items = json::array();
  for (const auto& record : records) {
    items.push_back(DefinitionToJson(record, Parsed(record).get(), now));
  }
  return json{{"items", std::move(items)}, {"total", records.size()}};
}

Result<json> ReportService::UpdateDefinition(const std::string& id, const json& body,
                                             std::optional<int64_t> expected_version, const std::string& actor) {
  ANALYTICS_ASSIGN_OR_RETURN(ReportDefinition parsed, ParseReportDefinition(body));
  auto stored = metadata_.GetReportDefinition(id);
  if (stored.status().code() == StatusCode::kNotFound) return DefinitionNotFound(id);
  ANALYTICS_RETURN_IF_ERROR(stored.status());
  if (expected_version && *expected_version != stored->version) {
    return Status::FailedPrecondition("report definition '" + id + "' is at version " +
                                      std::to_string(stored->version) + ", not " + std::to_string(*expected_version));
  }
  const int64_t now = common::NowMillis();
  metadata::ReportDefinitionRecord record = *stored;
  record.name = parsed.name;
  record.definition = ToDocument(parsed);
  record.version = stored->version + 1;
  record.updated_at_ms = now;
  Status updated = metadata_.UpdateReportDefinition(record, stored->version);
  if (updated.code() == StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("a report definition named '" + record.name + "' already exists");
  }
  if (updated.code() == StatusCode::kFailedPrecondition) {
    return Status::FailedPrecondition("report definition '" + id + "' was changed concurrently; retry");
  }
  if (updated.code() == StatusCode::kNotFound) return DefinitionNotFound(id);
  ANALYTICS_RETURN_IF_ERROR(updated);
  Audit(actor, "report_definition.update", id, {{"name", record.name}, {"version", record.version}});
  return DefinitionToJson(record, &parsed, now);
}

Status ReportService::DeleteDefinition(const std::string& id, const std::string& actor) {
  Status deleted = metadata_.DeleteReportDefinition(id);
  if (deleted.code() == StatusCode::kNotFound) return DefinitionNotFound(id);
  ANALYTICS_RETURN_IF_ERROR(deleted);
  Audit(actor, "report_definition.delete", id, json::object());
  return Status::Ok();
}

void ReportService::Audit(const std::string& actor, const std::string& action, const std::string& id,
                          json details) {
  metadata::AuditRecord audit{0, common::NowMillis(), actor, action, "report_definitions/" + id, std::move(details)};
  Status audited = metadata_.AppendAudit(audit);
  if (!audited.ok()) obs::LogWarn("audit record not written", {{"error", audited.ToString()}});
}

std::shared_ptr<const ReportDefinition> ReportService::Parsed(const metadata::ReportDefinitionRecord& record) {
  {
    std::lock_guard lock(mu_);
    auto it = parsed_.find(record.id);
    if (it != parsed_.end() && it->second.first == record.version) return it->second.second;
  }
  auto definition = ParseReportDefinition(record.definition);
  auto parsed = definition.ok() ? std::make_shared<const ReportDefinition>(std::move(definition).value()) : nullptr;
  std::lock_guard lock(mu_);
  parsed_[record.id] = {record.version, parsed};
  return parsed;
}

// ------------------------------------------------------------------------------------------------ instances

Status ReportService::CheckSegments(const ReportDefinition& definition, const json& bound) {
  for (const ParameterSpec& parameter : definition.parameters) {
    if (parameter.type != ParameterType::kSegment) continue;
    const json& value = bound[parameter.name];
    if (!value.is_string()) continue;
    const std::string id = value.get<std::string>();
    Status known = segments_.size ? segments_.size(id).status() : Status::NotFound("no segments");
    if (known.code() == StatusCode::kNotFound) {
      return Status::InvalidArgument("no segment has id '" + id + "'", "parameters." + parameter.name);
    }
    ANALYTICS_RETURN_IF_ERROR(known);
  }
  return Status::Ok();
}

Result<metadata::PipelineRun> ReportService::Submit(const metadata::ReportDefinitionRecord& record,
                                                    const ReportDefinition& definition, json bound,
                                                    OutputFormat format, const std::string& owner,
                                                    const std::string& trigger, int64_t scheduled_for_ms,
                                                    const std::vector<std::string>& recipients) {
  json parameters = {{"report_definition_id", record.id},
                     {"report_name", definition.name},
                     {"definition_version", record.version},
                     {"definition", record.definition},
                     {"parameters", std::move(bound)},
                     {"output_format", OutputFormatName(format)},
                     {"trigger", trigger},
                     {"scheduled_for", Time(scheduled_for_ms)},
                     {"recipients", recipients},
                     // Identical requests of one owner share a queued instance; two owners never do.
                     {"owner", owner}};
  std::string id;
  if (trigger == "schedule") id = ScheduledRunId(record.id, scheduled_for_ms);
  return runner_.Submit(kReportKind, record.id, std::move(parameters), owner, id);
}

Result<json> ReportService::RequestInstance(const json& body, const Caller& caller) {
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(body, {"report_definition_id", "parameters", "output_format"}, ""));
  if (!body.contains("report_definition_id")) {
    return Status::InvalidArgument("is required", "report_definition_id");
  }
  if (!body["report_definition_id"].is_string() || body["report_definition_id"].get<std::string>().empty()) {
    return Status::InvalidArgument("must be a non-empty string (a report definition id)", "report_definition_id");
  }
  OutputFormat format = OutputFormat::kCsv;
  if (body.contains("output_format")) {
    if (!body["output_format"].is_string()) {
      return Status::InvalidArgument("must be one of csv, json, xlsx", "output_format");
    }
    ANALYTICS_ASSIGN_OR_RETURN(format, ParseOutputFormat(body["output_format"].get<std::string>()));
  }
  const json parameters = body.contains("parameters") ? body["parameters"] : json::object();
  const std::string id = body["report_definition_id"].get<std::string>();
  auto record = metadata_.GetReportDefinition(id);
  if (record.status().code() == StatusCode::kNotFound) return DefinitionNotFound(id);
  ANALYTICS_RETURN_IF_ERROR(record.status());
  auto definition = ParseReportDefinition(record->definition);
  if (!definition.ok()) {
    return Status::Corruption("report definition '" + id + "' does not read back: " + definition.status().ToString());
  }
  ANALYTICS_ASSIGN_OR_RETURN(json bound, BindParameters(*definition, parameters, common::NowMillis()));
  ANALYTICS_RETURN_IF_ERROR(CheckSegments(*definition, bound));
  ANALYTICS_ASSIGN_OR_RETURN(metadata::PipelineRun run,
                             Submit(*record, *definition, std::move(bound), format, caller.subject, "manual", 0, {}));
  return InstanceToJson(run);
}

Result<metadata::PipelineRun> ReportService::OwnedRun(const std::string& id, const Caller& caller) {
  auto run = metadata_.GetPipelineRun(id);
  if (run.status().code() == StatusCode::kNotFound || (run.ok() && run->kind != kReportKind)) {
    return InstanceNotFound(id);
  }
  ANALYTICS_RETURN_IF_ERROR(run.status());
  if (!caller.admin && run->requested_by != caller.subject) {
    return Status::PermissionDenied("report instance '" + id + "' belongs to another user");
  }
  return std::move(run).value();
}

Result<json> ReportService::GetInstance(const std::string& id, const Caller& caller) {
  ANALYTICS_ASSIGN_OR_RETURN(metadata::PipelineRun run, OwnedRun(id, caller));
  return InstanceToJson(run);
}

Result<json> ReportService::ListInstances(const InstanceFilter& filter, const Caller& caller) {
  if (filter.limit < 1 || filter.limit > options_.max_list_limit) {
    return Status::InvalidArgument("must be an integer from 1 to " + std::to_string(options_.max_list_limit), "limit");
  }
  metadata::PipelineRunFilter runs;
  runs.kind = kReportKind;
  runs.target = filter.definition_id;
  runs.status = filter.status;
  runs.requested_by = caller.admin ? filter.requested_by : std::optional<std::string>(caller.subject);
  if (!caller.admin && filter.requested_by && *filter.requested_by != caller.subject) {
    return Status::PermissionDenied("only a platform_admin may list other users' report instances");
  }
  runs.before_id = filter.cursor;
  // One more tells whether there is a next page; at the store's cap of 1000 a full page has one.
  runs.limit = static_cast<int>(std::min<int64_t>(filter.limit + 1, 1000));
  auto listed = metadata_.ListPipelineRuns(runs);
  if (!listed.ok() && listed.status().field() == "before_id") {
    return Status::InvalidArgument("names no report instance", "cursor");
  }
  ANALYTICS_RETURN_IF_ERROR(listed.status());
  json items = json::array();
  json next = nullptr;
  for (size_t i = 0; i < listed->size() && static_cast<int64_t>(i) < filter.limit; ++i) {
    items.push_back(InstanceToJson((*listed)[i]));
  }
  const bool more = static_cast<int64_t>(listed->size()) > filter.limit ||
                    (runs.limit == filter.limit && static_cast<int64_t>(listed->size()) == filter.limit);
  if (more) next = items.back()["instance_id"];
  return json{{"items", std::move(items)}, {"next_cursor", next}};
}

Result<json> ReportService::CancelInstance(const std::string& id, const Caller& caller) {
  ANALYTICS_ASSIGN_OR_RETURN(metadata::PipelineRun run, OwnedRun(id, caller));
  if (Finished(run.status)) {
    return Status::FailedPrecondition("report instance '" + id + "' is " + run.status + " already", run.status);
  }
  auto cancelled = runner_.Cancel(id, caller.subject);
  if (cancelled.status().code() == StatusCode::kNotFound) {
    // Finished meanwhile, or queued on another replica.
    ANALYTICS_ASSIGN_OR_RETURN(run, OwnedRun(id, caller));
    if (Finished(run.status)) {
      return Status::FailedPrecondition("report instance '" + id + "' is " + run.status + " already", run.status);
    }
    return Status::Unavailable("report instance '" + id + "' is " + run.status + " in another process; retry there");
  }
  ANALYTICS_RETURN_IF_ERROR(cancelled.status());
  run = *cancelled;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (run.status == "running" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ANALYTICS_ASSIGN_OR_RETURN(run, metadata_.GetPipelineRun(id));
  }
  return InstanceToJson(run);
}

Result<ReportService::Download> ReportService::OpenDownload(const std::string& id, const Caller& caller) {
  ANALYTICS_ASSIGN_OR_RETURN(metadata::PipelineRun run, OwnedRun(id, caller));
  if (run.status != "completed") {
    std::string why = run.status == "queued" || run.status == "running"
                          ? "is " + run.status + "; download it when its status is completed"
                          : "is " + run.status + (run.error.empty() ? "" : ": " + run.error);
    return Status::FailedPrecondition("report instance '" + id + "' " + why, run.status);
  }
  const json& result = run.result;
  if (!result.is_object() || !result.contains("object_key")) {
    return Status::Corruption("report instance '" + id + "' has no file in its result");
  }
  auto reader = objects_.Open(result["object_key"].get<std::string>());
  if (reader.status().code() == StatusCode::kNotFound) {
    return Status::FailedPrecondition("the file of report instance '" + id + "' is gone (retention removed it)",
                                      "expired");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.status());
  Download download;
  download.reader = std::move(reader).value();
  download.content_type = result.value("content_type", std::string("application/octet-stream"));
  download.file_name = result.value("file_name", id);
  return download;
}

// --------------------------------------------------------------------------------------------- generation

Result<json> ReportService::Generate(const metadata::PipelineRun& run, jobs::RunContext& context) {
  const json& p = run.parameters;
  if (!p.is_object() || !p.contains("definition") || !p.contains("parameters")) {
    return Status::InvalidArgument("the run has no report definition snapshot");
  }
  ANALYTICS_ASSIGN_OR_RETURN(ReportDefinition definition, ParseReportDefinition(p["definition"]));
  const json& bound = p["parameters"];
  ANALYTICS_ASSIGN_OR_RETURN(OutputFormat format, ParseOutputFormat(p.value("output_format", std::string("csv"))));
  const int64_t created = run.created_at_ms > 0 ? run.created_at_ms : common::NowMillis();
  const std::string key = ObjectKey(run.id, created, format);

  ReportHeader header;
  header.instance_id = run.id;
  header.definition_id = p.value("report_definition_id", std::string());
  header.definition_name = definition.name;
  header.title = definition.title.empty() ? definition.name : definition.title;
  header.definition_version = p.value("definition_version", int64_t{0});
  header.parameters = bound;
  header.generated_at_ms = common::NowMillis();
  header.timezone = bound.contains("timezone") && bound["timezone"].is_string() ? bound["timezone"].get<std::string>()
                                                                                 : std::string("UTC");

  ANALYTICS_ASSIGN_OR_RETURN(std::unique_ptr<blob::ObjectWriter> object, objects_.Create(key));
  std::unique_ptr<ReportWriter> writer = MakeReportWriter(format, *object, options_.temp_dir);
  ANALYTICS_RETURN_IF_ERROR(writer->Begin(header));
  SectionContext sections{store_, metric_values_, analysis_, query::Viewer{}, segments_.size, segments_.ids};
  json section_counts = json::array();
  const size_t total = definition.sections.size();
  for (size_t index = 0; index < total; ++index) {
    if (context.cancelled()) return Status::FailedPrecondition("cancelled");
    const SectionSpec& section = definition.sections[index];
    const json resolved = ResolveSection(definition, section, bound);
    auto table = RunSection(resolved, sections);
    if (!table.ok()) {
      // The run keeps the message only: it names the section and says what its question got wrong.
      const Status& failed = table.status();
      return Status::Internal("section '" + section.name + "': " +
                              (failed.field().empty() ? "" : failed.field() + ": ") + failed.message());
    }
    ANALYTICS_RETURN_IF_ERROR(writer->BeginSection(table->header));
    uint64_t written = 0;
    for (const Row& row : table->rows) {
      ANALYTICS_RETURN_IF_ERROR(writer->Row(row));
      if (++written % kRowsPerCancelCheck == 0 && context.cancelled()) return Status::FailedPrecondition("cancelled");
    }
    ANALYTICS_RETURN_IF_ERROR(writer->EndSection());
    section_counts.push_back({{"name", table->header.name},
                              {"title", table->header.title},
                              {"type", table->header.type},
                              {"rows", table->rows.size()}});
    context.Progress(static_cast<double>(index + 1) / static_cast<double>(total + 1));
  }
  ANALYTICS_RETURN_IF_ERROR(writer->Finish());
  if (context.cancelled()) return Status::FailedPrecondition("cancelled");  // the object is dropped, never visible
  ANALYTICS_RETURN_IF_ERROR(object->Commit());

  const int64_t finished = common::NowMillis();
  const int64_t expires = finished + options_.retention_days * kDayMs;
  const std::string file_name = FileName(definition.name, bound, created, format);
  json result = {{"object_key", key},
                 {"size_bytes", object->size()},
                 {"row_count", writer->rows()},
                 {"sections", std::move(section_counts)},
                 {"content_type", ContentType(format)},
                 {"file_name", file_name},
                 {"expires_at", Time(expires)}};
  json data = {{"instance_id", run.id},
               {"report_definition_id", header.definition_id},
               {"report_name", definition.name},
               {"definition_version", header.definition_version},
               {"owner", run.requested_by},
               {"trigger", p.value("trigger", std::string("manual"))},
               {"scheduled_for", p.contains("scheduled_for") ? p["scheduled_for"] : json()},
               {"recipients", p.contains("recipients") ? p["recipients"] : json::array()},
               {"output_format", OutputFormatName(format)},
               {"content_type", ContentType(format)},
               {"size_bytes", object->size()},
               {"row_count", writer->rows()},
               {"file_name", file_name},
               {"download_path", std::string(kApiPrefix) + "/reports/instances/" + run.id + "/download"},
               {"generated_at", Time(finished)},
               {"expires_at", Time(expires)}};
  // Announced once the instance reads completed, so that a consumer downloading at once finds the file.
  context.OnCompleted([this, id = run.id, data = std::move(data)]() mutable {
    Status published = bus_.Publish(id, bus::MakeCloudEvent(kGeneratedType, id, std::move(data)));
    if (!published.ok()) {
      obs::LogWarn("report.generated not published", {{"instance_id", id}, {"error", published.ToString()}});
    }
  });
  return result;
}

// -------------------------------------------------------------------------------------- schedules, retention

Result<std::vector<std::string>> ReportService::FireSchedules(int64_t now_ms) {
  int64_t from;
  {
    std::lock_guard lock(mu_);
    from = schedules_checked_ms_;
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto records, metadata_.ListReportDefinitions());
  std::vector<std::string> created;
  bool retry = false;
  {
    // Deleted definitions leave the cache.
    std::lock_guard lock(mu_);
    std::erase_if(parsed_, [&records](const auto& entry) {
      return std::none_of(records.begin(), records.end(), [&](const auto& record) { return record.id == entry.first; });
    });
  }
  for (const auto& record : records) {
    const std::shared_ptr<const ReportDefinition> definition = Parsed(record);
    if (!definition || !definition->schedule || !definition->schedule->enabled) continue;
    const ScheduleSpec& schedule = *definition->schedule;
    // The latest fire time in (from, now]; a schedule fires only for times after it was set.
    std::optional<int64_t> latest;
    for (auto at = schedule.cron.NextAfter(std::max(from, record.updated_at_ms), schedule.zone);
         at && *at <= now_ms; at = schedule.cron.NextAfter(*at, schedule.zone)) {
      latest = at;
    }
    if (!latest) continue;
    // Fired already (here, by a replica, or before a restart). Checked first because the runner answers a submit
    // identical to a run still in its queue (one recovered after a restart) with that run, not AlreadyExists.
    auto existing = metadata_.GetPipelineRun(ScheduledRunId(record.id, *latest));
    if (existing.ok()) continue;
    if (existing.status().code() != StatusCode::kNotFound) {
      obs::LogWarn("scheduled report not created",
                   {{"report_definition_id", record.id}, {"error", existing.status().ToString()}});
      retry = true;
      continue;
    }
    // Relative dates mean the schedule's days: a report that takes a time zone and is not given one runs in the
    // schedule's ("yesterday" at 06:00 Moscow time is Moscow's yesterday).
    json given = schedule.parameters;
    const bool takes_zone = std::any_of(definition->parameters.begin(), definition->parameters.end(),
                                        [](const ParameterSpec& p) { return p.name == "timezone"; });
    if (takes_zone && (!given.contains("timezone") || given["timezone"].is_null())) {
      given["timezone"] = schedule.zone.name();
    }
    auto bound = BindParameters(*definition, given, *latest);
    Status checked = bound.ok() ? CheckSegments(*definition, *bound) : bound.status();
    if (!checked.ok()) {
      obs::LogWarn("scheduled report not created",
                   {{"report_definition_id", record.id}, {"scheduled_for", common::FormatRfc3339Millis(*latest)},
                    {"error", checked.ToString()}});
      continue;
    }
    auto run = Submit(record, *definition, std::move(bound).value(), schedule.output_format, record.created_by,
                      "schedule", *latest, schedule.recipients);
    if (run.status().code() == StatusCode::kAlreadyExists) continue;  // fired already (here or by a replica)
    if (!run.ok()) {
      obs::LogWarn("scheduled report not created", {{"report_definition_id", record.id}, {"error", run.status().ToString()}});
      retry = true;
      continue;
    }
    obs::LogInfo("scheduled report queued", {{"report_definition_id", record.id}, {"instance_id", run->id}});
    created.push_back(run->id);
  }
  // A fire time that could not be submitted (the store failed) is tried again at the next check: the window stays
  // open until every one went in (each at most once: its id is derived from it).
  std::lock_guard lock(mu_);
  if (!retry) schedules_checked_ms_ = std::max(schedules_checked_ms_, now_ms);
  return created;
}

Result<int64_t> ReportService::Retain(int64_t now_ms) {
  const int64_t cutoff = now_ms - options_.retention_days * kDayMs;
  ANALYTICS_ASSIGN_OR_RETURN(auto objects, objects_.List("reports/"));
  int64_t files = 0;
  for (const blob::ObjectInfo& object : objects) {
    if (object.modified_at_ms >= cutoff) continue;
    Status deleted = objects_.Delete(object.key);
    if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
    ++files;
  }
  ANALYTICS_ASSIGN_OR_RETURN(int64_t instances, metadata_.PurgePipelineRunsBefore(cutoff, kReportKind));
  if (files > 0 || instances > 0) {
    obs::LogInfo("report retention", {{"files_deleted", files}, {"instances_deleted", instances}});
  }
  return instances;
}

Result<std::vector<std::string>> ReportService::RunSchedulesForTest(int64_t now_ms) { return FireSchedules(now_ms); }

Result<int64_t> ReportService::RunRetentionForTest(int64_t now_ms) { return Retain(now_ms); }

}  // namespace analytics::reports
