// GET /api/v1/analytics/metrics/values/{metric_name} (spec 3.1.1): computed metric values.
#pragma once

#include "api/router.h"
#include "metrics/metric_values.h"

namespace analytics::api {

void AddMetricValuesRoutes(Router& router, metrics::MetricValues& values);

}  // namespace analytics::api
