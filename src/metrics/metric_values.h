// MetricValues: GET /metrics/values/{metric_name}: a metric definition evaluated over a period, bucketed
// in a time zone, grouped by dimensions, filtered, top-N with an explicit "other" series, and restricted
// for developers (own games only, k-anonymity). Semantics: docs/metrics.md section 3.
//
// The event store answers AggregateQuery cells (query/aggregate.h); this class turns them into values:
// ratios from two operands, rolling distinct users (WAU/MAU) as unions of finer cells, peak concurrency
// from session rows, exact percentiles from collected values. Everything it returns is computed from the
// same cells, so "other" is exact for every aggregation (cells of the remaining groups merged), never a
// difference of rounded totals.
// Thread-safety: Compute may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "metrics/metric_catalog.h"
#include "query/filter_expr.h"
#include "query/user_scope.h"
#include "store/event_store.h"

namespace analytics::metrics {

// The raw query parameters (absent = nullopt).
struct MetricValuesRequest {
  std::optional<std::string> period_start, period_end, granularity, dimensions, filters, timezone, limit;
  std::optional<std::string> segment;  // a segment id: only its current members' events count
};

using Viewer = query::Viewer;  // who asks (developers: own games, k-anonymity)

// The current members of a segment as a scope of store ids (the segment service supplies it). NotFound: no
// segment has that id; FailedPrecondition: the segment has not been materialized yet; other errors as they are.
using SegmentScopeResolver = query::UserScopeResolver;

struct MetricValuesOptions {
  int k_anonymity = 5;
  size_t max_buckets = 10000;   // per series
  size_t max_groups = 10000;    // series before top-N
  SegmentScopeResolver segment_scope;  // resolves `segment`; unset: every segment id is NotFound
};

class MetricValues {
 public:
  MetricValues(MetricCatalog& catalog, store::EventStore& store, MetricValuesOptions options = {})
      : catalog_(catalog), store_(store), options_(options) {}

  // NotFound (METRIC_DEFINITION_NOT_FOUND) for an unknown metric; InvalidArgument naming the parameter;
  // NotFound whose field() is "segment" (SEGMENT_NOT_FOUND) for an unknown segment; FailedPrecondition
  // (DATA_NOT_YET_AVAILABLE) when the segment is not materialized yet or the period starts after the newest
  // stored event. With a segment, every store query of the metric (ratio operands, windows, sessions) reads only
  // its members' events.
  common::Result<nlohmann::json> Compute(const std::string& metric_name, const MetricValuesRequest& request,
                                         const Viewer& viewer);

 private:
  MetricCatalog& catalog_;
  store::EventStore& store_;
  const MetricValuesOptions options_;
};

}  // namespace analytics::metrics
