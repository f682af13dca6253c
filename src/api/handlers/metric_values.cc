// Metric values endpoint: parameters in, values document out; developers are scoped to their games.
#include "api/handlers/metric_values.h"

#include "api/errors.h"
#include "api/handlers/viewer.h"

namespace analytics::api {
namespace {

using auth::Role;

const ErrorCodes kCodes{error_code::kMetricDefinitionNotFound, error_code::kAlreadyExists,
                        error_code::kInvalidQueryParameters, error_code::kDataNotYetAvailable};

HttpResponse Values(metrics::MetricValues& values, HttpRequest& request) {
  const std::string& name = request.path_params["metric_name"];
  metrics::MetricValuesRequest parameters;
  parameters.period_start = request.QueryParam("period_start");
  parameters.period_end = request.QueryParam("period_end");
  parameters.granularity = request.QueryParam("granularity");
  parameters.dimensions = request.QueryParam("dimensions");
  parameters.filters = request.QueryParam("filters");
  parameters.timezone = request.QueryParam("timezone");
  parameters.limit = request.QueryParam("limit");
  parameters.segment = request.QueryParam("segment");
  auto document = values.Compute(name, parameters, ViewerOf(request));
  if (!document.ok()) {
    if (document.status().code() == common::StatusCode::kNotFound) {
      // Compute names the field of a segment's NotFound; the metric's own has none.
      if (document.status().field() == "segment") {
        return ErrorResponse(404, error_code::kSegmentNotFound, document.status().message(),
                             {{"segment", parameters.segment.value_or("")}});
      }
      return ErrorResponse(404, error_code::kMetricDefinitionNotFound, document.status().message(),
                           {{"metric_name", name}});
    }
    return StatusResponse(document.status(), kCodes);
  }
  return HttpResponse::Json(200, *document);
}

}  // namespace

void AddMetricValuesRoutes(Router& router, metrics::MetricValues& values) {
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kDeveloper, Role::kMarketingManager};
  router.Add({"GET", "/api/v1/analytics/metrics/values/{metric_name}", true, readers, "Compute a metric's values",
              [&values](HttpRequest& request) { return Values(values, request); }});
}

}  // namespace analytics::api
