// Analysis endpoints: JSON body in, analysis document out; errors name the JSON path of the offending value.
#include "api/handlers/analysis.h"

#include <functional>

#include "analysis/experiments.h"
#include "analysis/funnels.h"
#include "analysis/lifecycle.h"
#include "analysis/paths.h"
#include "analysis/retention.h"
#include "api/errors.h"
#include "api/handlers/json_body.h"
#include "api/handlers/viewer.h"

namespace analytics::api {
namespace {

using auth::Role;
using Runner = std::function<common::Result<nlohmann::json>(store::EventStore&, const nlohmann::json&,
                                                            const analysis::Viewer&, const analysis::AnalysisOptions&)>;

const ErrorCodes kCodes{error_code::kSegmentNotFound, error_code::kAlreadyExists,
                        error_code::kInvalidQueryParameters, error_code::kDataNotYetAvailable};

HttpResponse Analyze(const Runner& run, store::EventStore& store, const analysis::AnalysisOptions& options,
                     HttpRequest& request) {
  HttpResponse error;
  auto body = ParseJsonBody(request, error);
  if (!body) return error;
  auto document = run(store, *body, ViewerOf(request), options);
  if (!document.ok()) {
    if (document.status().code() == common::StatusCode::kNotFound) {
      const auto segment = body->is_object() ? body->find("segment") : body->end();
      return ErrorResponse(404, error_code::kSegmentNotFound, document.status().message(),
                           {{"segment", segment != body->end() ? *segment : nlohmann::json(nullptr)}});
    }
    return StatusResponse(document.status(), kCodes);
  }
  return HttpResponse::Json(200, *document);
}

}  // namespace

void AddAnalysisRoutes(Router& router, store::EventStore& store, const analysis::AnalysisOptions& options) {
  const std::vector<Role> readers = {Role::kPlatformAdmin, Role::kDeveloper, Role::kMarketingManager};
  const struct {
    const char* path;
    const char* summary;
    Runner run;
  } routes[] = {
      {"/api/v1/analytics/analysis/funnels", "Funnel conversion", analysis::RunFunnels},
      {"/api/v1/analytics/analysis/retention", "Retention by cohort", analysis::RunRetention},
      {"/api/v1/analytics/analysis/paths", "Paths from or to an event", analysis::RunPaths},
      {"/api/v1/analytics/analysis/experiments", "A/B experiment results", analysis::RunExperiments},
      {"/api/v1/analytics/analysis/lifecycle", "User lifecycle per bucket", analysis::RunLifecycle},
      {"/api/v1/analytics/analysis/stickiness", "Stickiness (DAU/MAU, active days)", analysis::RunStickiness},
  };
  for (const auto& route : routes) {
    router.Add({"POST", route.path, true, readers, route.summary,
                [&store, options, run = route.run](HttpRequest& request) {
                  return Analyze(run, store, options, request);
                }});
  }
}

}  // namespace analytics::api
