// POST /api/v1/analytics/analysis/retention (docs/analysis.md, "Retention"): request parsing, the store reads a
// retention question needs (the start events' timeline, per-day users of the return events), and the document.
// Thread-safety: reentrant.
#pragma once

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "store/event_store.h"

namespace analytics::analysis {

// Retention cohorts of `body`. Errors: InvalidArgument whose field() is the JSON path of the offending value;
// NotFound for an unknown segment; FailedPrecondition when the period starts after the newest stored event;
// a store read's error as it is.
// k-anonymity: a cohort of fewer than k users (and more than none) is left out and counted as suppressed; the
// totals leave it out too.
common::Result<nlohmann::json> RunRetention(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                            const AnalysisOptions& options);

// The same with "now" given (Unix ms): the horizon is min(period_end, now_ms). For tests.
common::Result<nlohmann::json> RunRetentionForTest(store::EventStore& store, const nlohmann::json& body,
                                                   const Viewer& viewer, const AnalysisOptions& options,
                                                   int64_t now_ms);

}  // namespace analytics::analysis
