// Routes of /api/v1/analytics/metrics/definitions (spec 3.1.1): list with filters, get, create, and our
// additions update (PUT with If-Match) and delete.
#pragma once

#include "api/router.h"
#include "metrics/metric_catalog.h"

namespace analytics::api {

void AddMetricDefinitionRoutes(Router& router, metrics::MetricCatalog& catalog);

}  // namespace analytics::api
