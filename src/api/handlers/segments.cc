// Segment, pipeline run and outbox endpoints.
#include "api/handlers/segments.h"

#include <algorithm>
#include <charconv>

#include "api/errors.h"
#include "analysis/request.h"
#include "api/handlers/etag.h"
#include "api/handlers/json_body.h"
#include "api/handlers/query_params.h"
#include "common/time_util.h"
#include "jobs/pipeline_runner.h"
#include "reports/report_service.h"

namespace analytics::api {
namespace {

using auth::Role;
using common::Status;
using common::StatusCode;
using nlohmann::json;

constexpr char kDefinitions[] = "/api/v1/analytics/segments/definitions";
constexpr char kSegment[] = "/api/v1/analytics/segments/{segment_id}";
const ErrorCodes kCodes{error_code::kSegmentNotFound, error_code::kAlreadyExists, error_code::kInvalidRequestBody,
                        error_code::kDataNotYetAvailable};
const ErrorCodes kQueryCodes{error_code::kSegmentNotFound, error_code::kAlreadyExists,
                             error_code::kInvalidQueryParameters, error_code::kDataNotYetAvailable};

// Errors of a segment call: 404 names the segment.
HttpResponse SegmentError(const Status& status, const std::string& id, const ErrorCodes& codes = kCodes) {
  if (status.code() == StatusCode::kNotFound) {
    return ErrorResponse(404, error_code::kSegmentNotFound, status.message(), {{"segment_id", id}});
  }
  return StatusResponse(status, codes);
}

// The media type of the request without parameters, lower case.
std::string MediaType(const HttpRequest& request) {
  std::string type = request.Header("content-type");
  type = type.substr(0, type.find(';'));
  for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  return type;
}

std::optional<int64_t> ParseInt(const std::string& text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

HttpResponse Create(segments::SegmentService& segments, HttpRequest& request) {
  HttpResponse error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto doc = segments.Create(*body, request.principal->subject);
  if (!doc.ok()) {
    if (doc.status().code() == StatusCode::kAlreadyExists) {
      return ErrorResponse(409, error_code::kAlreadyExists, doc.status().message(),
                           {{"name", body->value("name", "")}});
    }
    return StatusResponse(doc.status(), kCodes);
  }
  HttpResponse response = VersionedDocument(201, *doc);
  response.headers.emplace_back("Location", std::string(kDefinitions) + "/" + (*doc)["id"].get<std::string>());
  return response;
}

HttpResponse Update(segments::SegmentService& segments, HttpRequest& request) {
  const std::string& id = request.path_params["segment_id"];
  std::optional<int64_t> expected;
  HttpResponse error;
  if (!IfMatchVersion(request, expected, error)) return error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto doc = segments.Update(id, *body, expected, request.principal->subject);
  if (!doc.ok()) {
    if (doc.status().code() == StatusCode::kFailedPrecondition && doc.status().field() == "version") {
      return ErrorResponse(412, error_code::kVersionConflict, doc.status().message(), {{"segment_id", id}});
    }
    if (doc.status().code() == StatusCode::kAlreadyExists) {
      return ErrorResponse(409, error_code::kAlreadyExists, doc.status().message(), {{"name", body->value("name", "")}});
    }
    return SegmentError(doc.status(), id);
  }
  return VersionedDocument(200, *doc);
}

HttpResponse Delete(segments::SegmentService& segments, HttpRequest& request) {
  const std::string& id = request.path_params["segment_id"];
  Status status = segments.Delete(id, request.principal->subject);
  if (status.code() == StatusCode::kFailedPrecondition) {
    return ErrorResponse(409, error_code::kResourceInUse, status.message(), {{"segment_id", id}});
  }
  if (!status.ok()) return SegmentError(status, id);
  return HttpResponse::Text(204, "application/json", "");
}

HttpResponse Refresh(segments::SegmentService& segments, HttpRequest& request) {
  const std::string& id = request.path_params["segment_id"];
  json body;
  if (!request.body.empty()) {
    HttpResponse error;
    auto parsed = ParseJsonBody(request, error);
    if (!parsed) return error;
    body = std::move(*parsed);
  }
  auto run = segments.RequestRefresh(id, body, request.principal->subject);
  if (!run.ok()) return SegmentError(run.status(), id);
  HttpResponse response = HttpResponse::Json(202, {{"run_id", run->id}, {"segment_id", id}, {"status", run->status}});
  response.headers.emplace_back("Location", "/api/v1/analytics/pipelines/runs/" + run->id);
  return response;
}

HttpResponse Upload(segments::SegmentService& segments, HttpRequest& request) {
  const std::string& id = request.path_params["segment_id"];
  std::string mode = request.QueryParam("mode").value_or("replace");
  common::Result<std::vector<std::string>> ids = std::vector<std::string>();
  const std::string media_type = MediaType(request);
  if (media_type == "text/csv" || media_type == "text/plain") {
    ids = segments::ParseUserIdsCsv(request.body);
  } else {
    HttpResponse error;
    auto body = ParseJsonBody(request, error);
    if (!body) return error;
    if (Status fields = analysis::CheckFields(*body, {"user_ids", "mode"}, ""); !fields.ok()) {
      return StatusResponse(fields, kCodes);
    }
    if (body->contains("mode")) {
      if (!(*body)["mode"].is_string()) return StatusResponse(Status::InvalidArgument("must be a string", "mode"), kCodes);
      mode = (*body)["mode"].get<std::string>();
    }
    if (!body->contains("user_ids")) return StatusResponse(Status::InvalidArgument("is required", "user_ids"), kCodes);
    ids = segments::ParseUserIds((*body)["user_ids"], "user_ids");
  }
  if (!ids.ok()) return StatusResponse(ids.status(), kCodes);
  auto result = segments.Upload(id, *ids, mode, request.principal->subject);
  if (!result.ok()) return SegmentError(result.status(), id);
  return HttpResponse::Json(200, *result);
}

HttpResponse Members(segments::SegmentService& segments, HttpRequest& request) {
  const std::string& id = request.path_params["segment_id"];
  int64_t limit = 1000;
  if (auto text = request.QueryParam("limit")) {
    auto parsed = ParseInt(*text);
    if (!parsed) return StatusResponse(Status::InvalidArgument("must be an integer", "limit"), kQueryCodes);
    limit = *parsed;
  }
  auto result = segments.Members(id, request.QueryParam("cursor").value_or(""), limit, request.principal->subject);
  if (!result.ok()) return SegmentError(result.status(), id, kQueryCodes);
  return HttpResponse::Json(200, *result);
}

// Report instances are runs too; only their owner and platform_admins may see one (docs/reports.md).
bool MaySee(const HttpRequest& request, const metadata::PipelineRun& run) {
  return run.kind != reports::kReportKind || request.principal->Has(Role::kPlatformAdmin) ||
         run.requested_by == request.principal->subject;
}

HttpResponse ListRuns(metadata::MetadataStore& metadata, HttpRequest& request) {
  metadata::PipelineRunFilter filter;
  if (auto kind = request.QueryParam("kind")) filter.kind = *kind;
  if (auto status = request.QueryParam("status")) {
    if (*status != "queued" && *status != "running" && *status != "completed" && *status != "failed" &&
        *status != "cancelled") {
      return StatusResponse(
          Status::InvalidArgument("must be queued, running, completed, failed or cancelled", "status"), kQueryCodes);
    }
    filter.status = *status;
  }
  if (auto target = request.QueryParam("target")) filter.target = *target;
  if (auto requested_by = request.QueryParam("requested_by")) filter.requested_by = *requested_by;
  for (const auto& [name, field] : {std::pair{"created_from", &filter.created_from_ms},
                                    std::pair{"created_to", &filter.created_to_ms}}) {
    if (auto text = request.QueryParam(name)) {
      auto ms = common::ParseRfc3339Millis(*text);
      if (!ms.ok()) return StatusResponse(Status::InvalidArgument("must be an RFC 3339 date-time", name), kQueryCodes);
      *field = *ms;
    }
  }
  auto page = ParseLimit(request, filter.limit, 1000);
  if (!page.ok()) return StatusResponse(page.status(), kQueryCodes);
  filter.limit = static_cast<int>(*page);
  if (auto cursor = request.QueryParam("cursor"); cursor && !cursor->empty()) filter.before_id = *cursor;
  const int limit = filter.limit;
  filter.limit = std::min(limit + 1, 1000);  // one more tells whether there is a next page (at the cap: a full page)
  auto runs = metadata.ListPipelineRuns(filter);
  if (!runs.ok()) {
    if (runs.status().field() == "before_id") {
      return StatusResponse(Status::InvalidArgument("not a cursor of this list (or its run was purged)", "cursor"),
                            kQueryCodes);
    }
    return StatusResponse(runs.status(), kQueryCodes);
  }
  json items = json::array();
  const bool more = runs->size() > static_cast<size_t>(limit) ||
                    (filter.limit == limit && runs->size() == static_cast<size_t>(limit));
  // Other users' report runs are left out for non-admins, so a page may hold fewer than `limit` items; the
  // cursor is still the last run read.
  const size_t read = std::min(runs->size(), static_cast<size_t>(limit));
  for (size_t i = 0; i < read; ++i) {
    if (MaySee(request, (*runs)[i])) items.push_back(jobs::RunToJson((*runs)[i]));
  }
  json out = {{"items", items}, {"next_cursor", more ? json((*runs)[read - 1].id) : json()}};
  return HttpResponse::Json(200, out);
}

HttpResponse GetRun(metadata::MetadataStore& metadata, HttpRequest& request) {
  const std::string& id = request.path_params["run_id"];
  auto run = metadata.GetPipelineRun(id);
  if (!run.ok()) {
    if (run.status().code() == StatusCode::kNotFound) {
      return ErrorResponse(404, error_code::kNotFound, "pipeline run '" + id + "' not found", {{"run_id", id}});
    }
    return StatusResponse(run.status());
  }
  if (!MaySee(request, *run)) {
    return ErrorResponse(403, error_code::kAccessDenied, "pipeline run '" + id + "' is another user's report instance",
                         {{"run_id", id}});
  }
  return HttpResponse::Json(200, jobs::RunToJson(*run));
}

HttpResponse Outbox(bus::EventBus& bus, HttpRequest& request) {
  int64_t after = 0;
  size_t limit = 100;
  if (auto text = request.QueryParam("after")) {
    auto parsed = ParseInt(*text);
    if (!parsed || *parsed < 0) {
      return StatusResponse(Status::InvalidArgument("must be a sequence number (>= 0)", "after"), kQueryCodes);
    }
    after = *parsed;
  }
  auto page = ParseLimit(request, static_cast<int64_t>(limit), 1000);
  if (!page.ok()) return StatusResponse(page.status(), kQueryCodes);
  limit = static_cast<size_t>(*page);
  auto recent = bus.Recent(after, limit, request.QueryParam("type").value_or(""));
  if (!recent.ok()) return StatusResponse(recent.status(), kQueryCodes);
  json items = json::array();
  for (auto& produced : *recent) {
    items.push_back({{"sequence", produced.sequence},
                     {"key", std::move(produced.key)},
                     {"topic", bus.Topic()},
                     {"event", std::move(produced.event)},
                     {"relayed_at", produced.relayed_at_ms ? json(common::FormatRfc3339Millis(*produced.relayed_at_ms))
                                                           : json()}});
  }
  return HttpResponse::Json(200, {{"items", std::move(items)}});
}

}  // namespace

void AddSegmentRoutes(Router& router, segments::SegmentService& segments) {
  const std::vector<Role> admins = {Role::kPlatformAdmin};
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kMarketingManager};
  const std::vector<Role> services = {Role::kService, Role::kPlatformAdmin};
  const std::vector<Role> checkers = {Role::kService, Role::kPlatformAdmin, Role::kMarketingManager};
  const std::string item = std::string(kDefinitions) + "/{segment_id}";
  const std::string segment = kSegment;
  auto& s = segments;
  router.Add({"GET", kDefinitions, true, readers, "List segment definitions", [&s](HttpRequest& request) {
                auto list = s.List(request.QueryParam("type"));
                if (!list.ok()) return StatusResponse(list.status(), kQueryCodes);
                return HttpResponse::Json(200, *list);
              }});
  router.Add({"POST", kDefinitions, true, admins, "Create a segment",
              [&s](HttpRequest& request) { return Create(s, request); }});
  router.Add({"GET", item, true, readers, "Get a segment definition", [&s](HttpRequest& request) {
                const std::string& id = request.path_params["segment_id"];
                auto doc = s.Get(id);
                if (!doc.ok()) return SegmentError(doc.status(), id);
                return VersionedDocument(200, *doc);
              }});
  router.Add({"PUT", item, true, admins, "Replace a segment definition",
              [&s](HttpRequest& request) { return Update(s, request); }});
  router.Add({"DELETE", item, true, admins, "Delete a segment", [&s](HttpRequest& request) { return Delete(s, request); }});
  router.Add({"GET", segment + "/users-count", true, readers, "Number of users in a segment",
              [&s](HttpRequest& request) {
                const std::string& id = request.path_params["segment_id"];
                auto count = s.UsersCount(id);
                if (!count.ok()) return SegmentError(count.status(), id);
                return HttpResponse::Json(200, *count);
              }});
  router.Add({"POST", segment + "/refresh", true, admins, "Refresh a segment (asynchronous)",
              [&s](HttpRequest& request) { return Refresh(s, request); }});
  router.Add({"POST", segment + "/users", true, admins, "Upload the members of a static segment",
              [&s](HttpRequest& request) { return Upload(s, request); }});
  router.Add({"GET", segment + "/members", true, services, "Members of a segment (original user ids)",
              [&s](HttpRequest& request) { return Members(s, request); }});
  router.Add({"GET", segment + "/contains/{user_id}", true, checkers, "Is a user in a segment?",
              [&s](HttpRequest& request) {
                const std::string& id = request.path_params["segment_id"];
                auto result = s.Contains(id, request.path_params["user_id"]);
                if (!result.ok()) return SegmentError(result.status(), id);
                return HttpResponse::Json(200, *result);
              }});
}

void AddPipelineRunRoutes(Router& router, metadata::MetadataStore& metadata) {
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kMarketingManager};
  router.Add({"GET", "/api/v1/analytics/pipelines/runs", true, readers, "List pipeline runs",
              [&metadata](HttpRequest& request) { return ListRuns(metadata, request); }});
  router.Add({"GET", "/api/v1/analytics/pipelines/runs/{run_id}", true, readers, "Get a pipeline run",
              [&metadata](HttpRequest& request) { return GetRun(metadata, request); }});
}

void AddOutboxRoutes(Router& router, bus::EventBus& bus) {
  router.Add({"GET", "/api/v1/analytics/outbox", true, {Role::kPlatformAdmin}, "Events produced by the service",
              [&bus](HttpRequest& request) { return Outbox(bus, request); }});
}

}  // namespace analytics::api
