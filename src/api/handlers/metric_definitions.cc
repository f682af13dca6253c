// Metric definition endpoints.
#include "api/handlers/metric_definitions.h"


#include "api/errors.h"
#include "api/handlers/etag.h"
#include "api/handlers/json_body.h"
#include "common/time_util.h"

namespace analytics::api {
namespace {

using auth::Role;

constexpr char kBase[] = "/api/v1/analytics/metrics/definitions";
const ErrorCodes kCodes{error_code::kMetricDefinitionNotFound, error_code::kMetricDefinitionExists,
                        error_code::kInvalidRequestBody};

HttpResponse DefinitionResponse(int status, const query::MetricDefinition& definition) {
  HttpResponse response = HttpResponse::Json(status, query::MetricDefinitionToJson(definition));
  response.headers.emplace_back("ETag", VersionTag(definition.version));
  return response;
}

HttpResponse List(metrics::MetricCatalog& catalog, HttpRequest& request) {
  metadata::MetricDefinitionFilter filter;
  if (auto tag = request.QueryParam("tag")) filter.tag = *tag;
  if (auto owner = request.QueryParam("owner_service")) filter.owner_service = *owner;
  if (auto realtime = request.QueryParam("is_realtime")) {
    if (*realtime == "true") {
      filter.is_realtime = true;
    } else if (*realtime == "false") {
      filter.is_realtime = false;
    } else {
      return StatusResponse(common::Status::InvalidArgument("must be true or false", "is_realtime"),
                            {.invalid = error_code::kInvalidQueryParameters});
    }
  }
  auto snapshot = catalog.Snapshot();
  if (!snapshot.ok()) return StatusResponse(snapshot.status(), kCodes);
  // The definitions' JSON is rendered once per snapshot; the list only concatenates it.
  std::string body = "{\"items\":[";
  size_t total = 0;
  for (const auto& entry : (*snapshot)->entries) {
    if (!metrics::MetricSnapshot::Matches(entry.definition, filter)) continue;
    if (total++ > 0) body += ',';
    body += entry.json;
  }
  body += "],\"total\":" + std::to_string(total) + "}";
  return HttpResponse::Text(200, "application/json", std::move(body));
}

HttpResponse Get(metrics::MetricCatalog& catalog, HttpRequest& request) {
  const std::string& name = request.path_params["metric_name"];
  auto snapshot = catalog.Snapshot();
  if (!snapshot.ok()) return StatusResponse(snapshot.status(), kCodes);
  const auto* entry = (*snapshot)->Find(name);
  if (entry == nullptr) {
    return ErrorResponse(404, error_code::kMetricDefinitionNotFound, "metric definition '" + name + "' not found",
                         {{"metric_name", name}});
  }
  HttpResponse response = HttpResponse::Text(200, "application/json", entry->json);
  response.headers.emplace_back("ETag", VersionTag(entry->definition.version));
  return response;
}

HttpResponse Create(metrics::MetricCatalog& catalog, HttpRequest& request) {
  HttpResponse error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto definition = query::ParseMetricDefinition(*body);
  if (!definition.ok()) return StatusResponse(definition.status(), kCodes);
  auto created = catalog.Create(std::move(definition).value(), request.principal->subject, common::NowMillis());
  if (!created.ok()) return StatusResponse(created.status(), kCodes);
  HttpResponse response = DefinitionResponse(201, *created);
  response.headers.emplace_back("Location", std::string(kBase) + "/" + created->name);
  return response;
}

HttpResponse Update(metrics::MetricCatalog& catalog, HttpRequest& request) {
  const std::string& name = request.path_params["metric_name"];
  std::optional<int64_t> expected_version;
  HttpResponse error;
  if (!IfMatchVersion(request, expected_version, error)) return error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto definition = query::ParseMetricDefinition(*body);
  if (!definition.ok()) return StatusResponse(definition.status(), kCodes);
  auto updated = catalog.Update(name, std::move(definition).value(), expected_version, request.principal->subject,
                                common::NowMillis());
  if (!updated.ok()) {
    if (updated.status().code() == common::StatusCode::kFailedPrecondition) {
      return ErrorResponse(412, error_code::kVersionConflict, updated.status().message());
    }
    return StatusResponse(updated.status(), kCodes);
  }
  return DefinitionResponse(200, *updated);
}

HttpResponse Delete(metrics::MetricCatalog& catalog, HttpRequest& request) {
  const std::string& name = request.path_params["metric_name"];
  common::Status status = catalog.Delete(name, request.principal->subject, common::NowMillis());
  if (status.code() == common::StatusCode::kFailedPrecondition) {
    return ErrorResponse(409, error_code::kResourceInUse, status.message(), {{"metric_name", name}});
  }
  if (!status.ok()) return StatusResponse(status, kCodes);
  return HttpResponse::Text(204, "application/json", "");
}

}  // namespace

void AddMetricDefinitionRoutes(Router& router, metrics::MetricCatalog& catalog) {
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kDeveloper, Role::kMarketingManager};
  const std::vector<Role> admins = {Role::kPlatformAdmin};
  const std::string item = std::string(kBase) + "/{metric_name}";
  router.Add({"GET", kBase, true, readers, "List metric definitions",
              [&catalog](HttpRequest& request) { return List(catalog, request); }});
  router.Add({"POST", kBase, true, admins, "Create a metric definition",
              [&catalog](HttpRequest& request) { return Create(catalog, request); }});
  router.Add({"GET", item, true, readers, "Get a metric definition",
              [&catalog](HttpRequest& request) { return Get(catalog, request); }});
  router.Add({"PUT", item, true, admins, "Replace a metric definition",
              [&catalog](HttpRequest& request) { return Update(catalog, request); }});
  router.Add({"DELETE", item, true, admins, "Delete a metric definition",
              [&catalog](HttpRequest& request) { return Delete(catalog, request); }});
}

}  // namespace analytics::api
