// Operational routes: /healthz (liveness), /readyz (each component's readiness), /metrics (Prometheus text),
// and the OpenAPI document at /api/v1/analytics/openapi.yaml.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "common/status.h"
#include "obs/metrics.h"

namespace analytics::api {

// One component's readiness probe: OK when ready; `details` are reported either way.
struct ReadinessCheck {
  std::string component;
  std::function<common::Status(nlohmann::json& details)> probe;
};

void AddSystemRoutes(Router& router, std::vector<ReadinessCheck> checks, obs::MetricsRegistry& metrics,
                     std::string version);

// The compiled-in api/openapi.yaml.
std::string_view OpenApiYaml();

}  // namespace analytics::api
