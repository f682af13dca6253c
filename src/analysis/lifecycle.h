// Lifecycle and stickiness requests (docs/analysis.md, "Lifecycle" and "Stickiness"): POST
// /api/v1/analytics/analysis/lifecycle and /analysis/stickiness.
//
// Both read which users were active in which calendar bucket of the request's time zone, for a chosen event set
// (`event_types`, or `events` with filters each; default every event), through EventStore::Aggregate with
// collect_users (per-bucket user bitmaps, cached per segment by the embedded store), then count with
// query/lifecycle.h. Lifecycle also reads everything before the period (one bucket from the beginning of the
// stored history), stickiness the 29 days before it (the first days' MAU).
// Errors: InvalidArgument naming the JSON path (400 INVALID_QUERY_PARAMETERS), NotFound for an unknown segment,
// FailedPrecondition when the period starts after the newest stored event (409 DATA_NOT_YET_AVAILABLE).
// Thread-safety: reentrant; the store is used through its thread-safe interface.
#pragma once

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "store/event_store.h"

namespace analytics::analysis {

// {"granularity": "day"|"week"|"month" (default "week"), "event_types" | "events", common fields} →
// {period_start, period_end, timezone, granularity, "buckets": [{"start", "end", "in_progress", "active", "new",
// "returning", "resurrecting", "dormant", "quick_ratio"}], k_anonymity}.
common::Result<nlohmann::json> RunLifecycle(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                            const AnalysisOptions& options);

// {"event_types" | "events", common fields} → {period_start, period_end, timezone, "days": [{"date",
// "in_progress", "dau", "wau", "mau", "dau_wau", "dau_mau"}], "weeks": [{"week_start", "complete",
// "days_in_period", "users", "active_days": [{"days", "users"}]}], k_anonymity}.
common::Result<nlohmann::json> RunStickiness(store::EventStore& store, const nlohmann::json& body,
                                             const Viewer& viewer, const AnalysisOptions& options);

}  // namespace analytics::analysis
