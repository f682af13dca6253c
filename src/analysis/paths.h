// Paths requests (docs/analysis.md, "Paths"): POST /api/v1/analytics/analysis/paths.
//
// From a start event (or to an end event), the top paths of the next (previous) N step events, counted in users,
// with repeats optionally collapsed, and the same paths as Sankey nodes and links. One Timeline read (two
// selectors: the anchor event with its filters, and the step types), then query/paths.h.
// Errors: InvalidArgument naming the JSON path (400 INVALID_QUERY_PARAMETERS), NotFound for an unknown segment,
// FailedPrecondition when the period starts after the newest stored event (409 DATA_NOT_YET_AVAILABLE).
// Thread-safety: reentrant; the store is used through its thread-safe interface.
#pragma once

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "store/event_store.h"

namespace analytics::analysis {

// {"start_event" | "end_event": {"event_type", "filters", "occurrence": "first"|"last"}, "steps": 5,
// "collapse_repeats": false, "event_types": [...], "exclude_event_types": [...], "max_paths": 20,
// "window_seconds", common fields} →
// {period_start, period_end, timezone, "direction", "anchor", "steps", "collapse_repeats", "window_seconds",
// "users", "paths": [{"steps": [...], "users", "share"}], "other_paths", "other_paths_users",
// "nodes": [{"id", "step", "kind", "event_type", "label", "users"}], "links": [{"source", "target", "users"}],
// k_anonymity}.
common::Result<nlohmann::json> RunPaths(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                        const AnalysisOptions& options);

}  // namespace analytics::analysis
