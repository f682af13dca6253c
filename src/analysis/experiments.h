// POST /api/v1/analytics/analysis/experiments: an A/B test's variants, their goals against the control and the
// sample-ratio-mismatch check (docs/analysis.md, experiments).
//
// Rationale: the request becomes a TimelineQuery of the exposures (the same for every question about the
// experiment, so its cached rows serve them all) and one of the goals as selectors (another per further number
// property of mean goals); query::CountExperiment walks the users once and query::AnalyzeExperiment turns the
// per-variant totals into the statistics.
// Thread-safety: reentrant; the store is called concurrently-safe as its contract allows.
#pragma once

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "store/event_store.h"

namespace analytics::analysis {

// The experiment report for `body` as `viewer` sees it. Errors: InvalidArgument naming the JSON path of the
// offending field (400), NotFound for an unknown segment, FailedPrecondition when the period starts after the
// newest stored event (409 DATA_NOT_YET_AVAILABLE), the store's errors as they are.
common::Result<nlohmann::json> RunExperiments(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                              const AnalysisOptions& options);

}  // namespace analytics::analysis
