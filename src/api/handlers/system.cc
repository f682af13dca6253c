// Health, readiness, metrics and OpenAPI routes.
#include "api/handlers/system.h"

#include <chrono>
#include <memory>

#include "common/time_util.h"

namespace analytics::api {

void AddSystemRoutes(Router& router, std::vector<ReadinessCheck> checks, obs::MetricsRegistry& metrics,
                     std::string version) {
  const int64_t started_at_ms = common::NowMillis();
  router.Add({"GET", "/healthz", false, {}, "Liveness", [version, started_at_ms](HttpRequest&) {
                return HttpResponse::Json(200, {{"status", "ok"},
                                                {"version", version},
                                                {"started_at", common::FormatRfc3339Millis(started_at_ms)}});
              }});
  auto shared_checks = std::make_shared<std::vector<ReadinessCheck>>(std::move(checks));
  router.Add({"GET", "/readyz", false, {}, "Readiness of each component", [shared_checks](HttpRequest&) {
                bool ready = true;
                nlohmann::json components = nlohmann::json::object();
                for (const auto& check : *shared_checks) {
                  nlohmann::json details = nlohmann::json::object();
                  auto start = std::chrono::steady_clock::now();
                  common::Status status = check.probe(details);
                  details["latency_ms"] =
                      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
                  details["status"] = status.ok() ? "ok" : "unavailable";
                  if (!status.ok()) {
                    details["error"] = status.message();
                    ready = false;
                  }
                  components[check.component] = std::move(details);
                }
                return HttpResponse::Json(ready ? 200 : 503,
                                          {{"status", ready ? "ready" : "not_ready"}, {"components", components}});
              }});
  router.Add({"GET", "/metrics", false, {}, "Prometheus metrics", [&metrics](HttpRequest&) {
                return HttpResponse::Text(200, "text/plain; version=0.0.4; charset=utf-8", metrics.RenderText());
              }});
  router.Add({"GET", "/api/v1/analytics/openapi.yaml", true, {}, "This API's OpenAPI document", [](HttpRequest&) {
                return HttpResponse::Text(200, "application/yaml", std::string(OpenApiYaml()));
              }});
}

}  // namespace analytics::api
