// POST /api/v1/analytics/analysis/funnels (docs/analysis.md, "Funnels"): request parsing, the one Timeline read a
// funnel needs (selector i = step i, then one per exclusion; keys = hold_constant properties, then the breakdown
// property), the engine (query/funnel.h) and the document.
// Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "query/user_scope.h"
#include "store/event_store.h"

namespace analytics::analysis {

// The funnel of `body`. Errors: InvalidArgument whose field() is the JSON path of the offending value
// ("steps[2].event_type", "exclusions[0].between"); NotFound for an unknown segment; FailedPrecondition when the
// period starts after the newest stored event; a store read's error as it is.
// k-anonymity (developers): a group is the users at step 0 of the whole funnel or of one breakdown value; a
// group of fewer than k users (and more than none) is suppressed and counted in k_anonymity.suppressed_groups:
// a breakdown group is left out, the whole funnel keeps its steps with every number null.
common::Result<nlohmann::json> RunFunnels(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                          const AnalysisOptions& options);

// The store ids of the users of a funnel request (same body and validation as RunFunnels) who reached step
// `step` (0-based) — `which` "reached" — or reached it but not step + 1 — `which` "dropped" (step < last) — or reached
// the last step — "converted" (`step` must still be a valid index; it is not used). Whole funnel (a breakdown in
// the body is ignored); a `segment` restricts it as in RunFunnels. The sets are those whose sizes RunFunnels
// reports: |reached k| = steps[k].users, |dropped k| = steps[k + 1].dropped_off, |converted| = the last step's users.
// Errors: those of RunFunnels; InvalidArgument naming "which" or "step" for a bad one; PermissionDenied for a
// k-anonymous viewer (a developer: a list of users is no group of k).
common::Result<query::Roaring> FunnelUsers(store::EventStore& store, const nlohmann::json& body, const Viewer& viewer,
                                           const AnalysisOptions& options, int64_t step, const std::string& which);

}  // namespace analytics::analysis
