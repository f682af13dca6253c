// The built-in game-store KPIs (DAU/WAU/MAU, revenue, ARPU, conversion, sessions, peak concurrency, ...).
//
// They are plain MetricDefinition bodies over the event types of docs/events.md; the service installs them
// in the metadata store with builtin = true, and docs/metrics.md lists them. Ratio metrics name only metrics
// of this same list, so the set is self-contained.
// Thread-safety: pure function.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

namespace analytics::query {

// JSON bodies of the built-in game-store KPI definitions, each accepted by ParseMetricDefinition. The order is
// stable (operands of ratio metrics come before the ratios) and names are unique.
std::vector<nlohmann::json> BuiltinMetricDefinitionBodies();

}  // namespace analytics::query
