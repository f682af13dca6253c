// POST /api/v1/analytics/analysis/funnels (docs/analysis.md, "Funnels"): request parsing, the one Timeline read a
// funnel needs (selector i = step i, then one per exclusion; keys = hold_constant properties, then the breakdown
// property), the engine (query/funnel.h) and the document.
// Thread-safety: reentrant.
#pragma once

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
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

}  // namespace analytics::analysis
