// Report definition and instance endpoints.
#include "api/handlers/reports.h"

#include <memory>
#include <set>
#include <string>

#include "api/errors.h"
#include "api/handlers/etag.h"
#include "api/handlers/json_body.h"
#include "api/handlers/query_params.h"

namespace analytics::api {
namespace {

using auth::Role;
using common::Status;
using common::StatusCode;
using nlohmann::json;

constexpr char kDefinitions[] = "/api/v1/analytics/reports/definitions";
constexpr char kInstances[] = "/api/v1/analytics/reports/instances";
constexpr std::string_view kInstanceNotFound = error_code::kReportInstanceNotFound;
const ErrorCodes kDefinitionCodes{error_code::kReportDefinitionNotFound, error_code::kAlreadyExists,
                                  error_code::kInvalidRequestBody, error_code::kVersionConflict};
const ErrorCodes kInstanceCodes{kInstanceNotFound, error_code::kAlreadyExists, error_code::kInvalidQueryParameters,
                                error_code::kDataNotYetAvailable};

reports::Caller CallerOf(const HttpRequest& request) {
  reports::Caller caller;
  caller.subject = request.principal->subject;
  caller.admin = request.principal->Has(Role::kPlatformAdmin);
  return caller;
}

HttpResponse DefinitionError(const Status& status, const std::string& id, const json& body = json()) {
  if (status.code() == StatusCode::kNotFound) {
    return ErrorResponse(404, error_code::kReportDefinitionNotFound, status.message(), {{"report_definition_id", id}});
  }
  if (status.code() == StatusCode::kAlreadyExists) {
    return ErrorResponse(409, error_code::kAlreadyExists, status.message(),
                         {{"name", body.is_object() ? body.value("name", "") : ""}});
  }
  if (status.code() == StatusCode::kFailedPrecondition) {
    return ErrorResponse(412, error_code::kVersionConflict, status.message(), {{"report_definition_id", id}});
  }
  return StatusResponse(status, kDefinitionCodes);
}

HttpResponse InstanceError(const Status& status, const std::string& id) {
  if (status.code() == StatusCode::kNotFound) {
    return ErrorResponse(404, kInstanceNotFound, status.message(), {{"instance_id", id}});
  }
  if (status.code() == StatusCode::kPermissionDenied) {
    return ErrorResponse(403, error_code::kAccessDenied, status.message(), {{"instance_id", id}});
  }
  return StatusResponse(status, kInstanceCodes);
}

HttpResponse CreateDefinition(reports::ReportService& reports, HttpRequest& request) {
  HttpResponse error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto doc = reports.CreateDefinition(*body, request.principal->subject);
  if (!doc.ok()) return DefinitionError(doc.status(), "", *body);
  HttpResponse response = VersionedDocument(201, *doc);
  response.headers.emplace_back("Location", std::string(kDefinitions) + "/" + (*doc)["id"].get<std::string>());
  return response;
}

HttpResponse UpdateDefinition(reports::ReportService& reports, HttpRequest& request) {
  const std::string& id = request.path_params["report_definition_id"];
  std::optional<int64_t> expected;
  HttpResponse error;
  if (!IfMatchVersion(request, expected, error)) return error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto doc = reports.UpdateDefinition(id, *body, expected, request.principal->subject);
  if (!doc.ok()) return DefinitionError(doc.status(), id, *body);
  return VersionedDocument(200, *doc);
}

HttpResponse RequestInstance(reports::ReportService& reports, HttpRequest& request) {
  HttpResponse error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto doc = reports.RequestInstance(*body, CallerOf(request));
  if (!doc.ok()) {
    const Status& status = doc.status();
    if (status.code() == StatusCode::kNotFound) {
      return ErrorResponse(404, error_code::kReportDefinitionNotFound, status.message(),
                           {{"report_definition_id", body->value("report_definition_id", json()).is_string()
                                                         ? (*body)["report_definition_id"]
                                                         : json()}});
    }
    // Body members (report_definition_id, output_format, parameters.<name>) are request parameters here.
    return StatusResponse(status, kInstanceCodes);
  }
  HttpResponse response = HttpResponse::Json(202, *doc);
  response.headers.emplace_back("Location", std::string(kInstances) + "/" + (*doc)["instance_id"].get<std::string>());
  return response;
}

HttpResponse ListInstances(reports::ReportService& reports, HttpRequest& request) {
  reports::InstanceFilter filter;
  auto limit = ParseLimit(request, 100, 1000);
  if (!limit.ok()) return StatusResponse(limit.status(), kInstanceCodes);
  filter.limit = *limit;
  filter.definition_id = request.QueryParam("report_definition_id");
  filter.requested_by = request.QueryParam("requested_by");
  if (auto cursor = request.QueryParam("cursor"); cursor && !cursor->empty()) filter.cursor = *cursor;
  if (auto status = request.QueryParam("status")) {
    static const std::set<std::string> kStatuses = {"queued", "running", "completed", "failed", "cancelled"};
    if (!kStatuses.count(*status)) {
      return StatusResponse(
          Status::InvalidArgument("must be one of queued, running, completed, failed, cancelled", "status"),
          kInstanceCodes);
    }
    filter.status = *status;
  }
  auto list = reports.ListInstances(filter, CallerOf(request));
  if (!list.ok()) return StatusResponse(list.status(), kInstanceCodes);
  return HttpResponse::Json(200, *list);
}

HttpResponse CancelInstance(reports::ReportService& reports, HttpRequest& request) {
  const std::string& id = request.path_params["instance_id"];
  auto doc = reports.CancelInstance(id, CallerOf(request));
  if (!doc.ok()) {
    if (doc.status().code() == StatusCode::kFailedPrecondition) {
      return ErrorResponse(409, error_code::kReportInstanceFinished, doc.status().message(),
                           {{"instance_id", id}, {"status", doc.status().field()}});
    }
    return InstanceError(doc.status(), id);
  }
  return HttpResponse::Json(200, *doc);
}

// An object being read, as a response body.
class ObjectBody final : public BodyStream {
 public:
  explicit ObjectBody(std::unique_ptr<blob::ObjectReader> reader) : reader_(std::move(reader)) {}
  common::Result<size_t> Read(char* out, size_t capacity) override { return reader_->Read(out, capacity); }
  uint64_t size() const override { return reader_->size(); }

 private:
  std::unique_ptr<blob::ObjectReader> reader_;
};

HttpResponse Download(reports::ReportService& reports, HttpRequest& request) {
  const std::string& id = request.path_params["instance_id"];
  auto download = reports.OpenDownload(id, CallerOf(request));
  if (!download.ok()) {
    const Status& status = download.status();
    if (status.code() == StatusCode::kFailedPrecondition && status.field() == "expired") {
      return ErrorResponse(410, error_code::kReportExpired, status.message(), {{"instance_id", id}});
    }
    if (status.code() == StatusCode::kFailedPrecondition) {
      const bool pending = status.field() == "queued" || status.field() == "running";
      return ErrorResponse(409, pending ? error_code::kDataNotYetAvailable : error_code::kReportGenerationFailed,
                           status.message(), {{"instance_id", id}, {"status", status.field()}});
    }
    return InstanceError(status, id);
  }
  HttpResponse response;
  response.status = 200;
  response.content_type = download->content_type;
  response.stream = std::make_shared<ObjectBody>(std::move(download->reader));
  response.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + download->file_name + "\"");
  response.headers.emplace_back("Cache-Control", "private, no-store");
  return response;
}

}  // namespace

void AddReportRoutes(Router& router, reports::ReportService& reports) {
  const std::vector<Role> admins = {Role::kPlatformAdmin};
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kMarketingManager};
  const std::string definition = std::string(kDefinitions) + "/{report_definition_id}";
  const std::string instance = std::string(kInstances) + "/{instance_id}";
  auto& r = reports;
  router.Add({"GET", kDefinitions, true, readers, "List report definitions", [&r](HttpRequest&) {
                auto list = r.ListDefinitions();
                if (!list.ok()) return StatusResponse(list.status(), kDefinitionCodes);
                return HttpResponse::Json(200, *list);
              }});
  router.Add({"POST", kDefinitions, true, admins, "Create a report definition",
              [&r](HttpRequest& request) { return CreateDefinition(r, request); }});
  router.Add({"GET", definition, true, readers, "Get a report definition", [&r](HttpRequest& request) {
                const std::string& id = request.path_params["report_definition_id"];
                auto doc = r.GetDefinition(id);
                if (!doc.ok()) return DefinitionError(doc.status(), id);
                return VersionedDocument(200, *doc);
              }});
  router.Add({"PUT", definition, true, admins, "Replace a report definition",
              [&r](HttpRequest& request) { return UpdateDefinition(r, request); }});
  router.Add({"DELETE", definition, true, admins, "Delete a report definition", [&r](HttpRequest& request) {
                const std::string& id = request.path_params["report_definition_id"];
                Status status = r.DeleteDefinition(id, request.principal->subject);
                if (!status.ok()) return DefinitionError(status, id);
                return HttpResponse::Text(204, "application/json", "");
              }});
  router.Add({"POST", kInstances, true, readers, "Request a report (asynchronous)",
              [&r](HttpRequest& request) { return RequestInstance(r, request); }});
  router.Add({"GET", kInstances, true, readers, "List report instances",
              [&r](HttpRequest& request) { return ListInstances(r, request); }});
  router.Add({"GET", instance, true, readers, "Get a report instance", [&r](HttpRequest& request) {
                const std::string& id = request.path_params["instance_id"];
                auto doc = r.GetInstance(id, CallerOf(request));
                if (!doc.ok()) return InstanceError(doc.status(), id);
                return HttpResponse::Json(200, *doc);
              }});
  router.Add({"DELETE", instance, true, readers, "Cancel a queued or running report instance",
              [&r](HttpRequest& request) { return CancelInstance(r, request); }});
  router.Add({"GET", instance + "/download", true, readers, "Download a completed report",
              [&r](HttpRequest& request) { return Download(r, request); }});
}

}  // namespace analytics::api
