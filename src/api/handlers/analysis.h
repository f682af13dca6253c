// POST /api/v1/analytics/analysis/{funnels,retention,paths,experiments,lifecycle,stickiness} (docs/analysis.md):
// behaviour analysis over the event store. Readers: platform_admin, marketing_manager, and developers scoped to
// their own games with k-anonymity.
#pragma once

#include "analysis/request.h"
#include "api/router.h"
#include "store/event_store.h"

namespace analytics::api {

void AddAnalysisRoutes(Router& router, store::EventStore& store, const analysis::AnalysisOptions& options);

}  // namespace analytics::api
