// MetricDefinition: what a metric is (which events, which aggregation, which filters and dimensions).
//
// The definition is backend-free: the event store adapters compute values from it (a later issue), the
// metadata store persists it, the API validates and serializes it. The JSON shape is documented in
// api/openapi.yaml (MetricDefinition) and docs/metrics.md.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace analytics::query {

enum class Aggregation {
  kCount,          // number of matching events (weighted by event_weights)
  kUniqueUsers,    // exact number of distinct users; with window_days, rolling N-day distinct users
  kSum,            // sum of `property` (weighted by event_weights, e.g. -1 for refunds)
  kAvg,            // mean of `property`
  kMin,            // minimum of `property`
  kMax,            // maximum of `property`
  kPercentile,     // `percentile`-th percentile of `property`
  kRatio,          // metric `numerator` divided by metric `denominator`, per bucket and group
  kPeakConcurrent  // peak number of simultaneously open sessions (see ConcurrencySpec)
};

std::string_view AggregationName(Aggregation aggregation);
std::optional<Aggregation> AggregationFromName(std::string_view name);

enum class FilterOp { kEq, kNe, kIn, kNin, kGt, kGte, kLt, kLte, kContains, kExists };

std::string_view FilterOpName(FilterOp op);
std::optional<FilterOp> FilterOpFromName(std::string_view name);

// A condition on a property of the event's `data` (dotted path for nested fields).
struct PropertyFilter {
  std::string property;
  FilterOp op = FilterOp::kEq;
  nlohmann::json value;  // scalar for eq/ne/gt/gte/lt/lte/contains, array for in/nin, bool for exists
};

// Sessions for kPeakConcurrent: an event of start_event_type opens the session named by key_property,
// an event of end_event_type closes it; sessions with no end close after max_session_seconds.
struct ConcurrencySpec {
  std::string start_event_type;
  std::string end_event_type;
  std::string key_property = "session_id";
  int64_t max_session_seconds = 86400;
};

struct MetricDefinition {
  std::string name;         // ^[a-z][a-z0-9_]{0,63}$, unique
  std::string title;
  std::string description;
  std::vector<std::string> event_types;          // empty: all events
  std::map<std::string, double> event_weights;   // per event type, default 1 (count and sum only)
  Aggregation aggregation = Aggregation::kCount;
  std::string property;                          // sum/avg/min/max/percentile
  std::optional<double> percentile;              // kPercentile: in (0, 100)
  std::string numerator;                         // kRatio
  std::string denominator;                       // kRatio
  std::optional<int> window_days;                // kUniqueUsers: rolling window (7 = WAU, 30 = MAU)
  std::optional<ConcurrencySpec> concurrency;    // kPeakConcurrent
  std::vector<PropertyFilter> filters;           // all must hold
  std::vector<std::string> dimensions;           // allowed group-by properties
  std::string unit;
  std::vector<std::string> tags;
  std::string owner_service = "analytics";
  bool is_realtime = false;
  // Set by the server.
  bool builtin = false;
  int64_t version = 1;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  std::string created_by;
};

// Validates a client-supplied definition body (POST/PUT). Every problem is an InvalidArgument whose field()
// names the offending field (e.g. "filters[0].op"). Server-set fields (version, timestamps, builtin,
// created_by) are rejected. Does not check that ratio operands exist (that needs the store).
common::Result<MetricDefinition> ParseMetricDefinition(const nlohmann::json& body);

// Full JSON form, including server-set fields; the inverse of MetricDefinitionFromStored.
nlohmann::json MetricDefinitionToJson(const MetricDefinition& definition);

// Reads the JSON produced by MetricDefinitionToJson (as persisted by metadata stores). Corruption when the
// stored document does not parse.
common::Result<MetricDefinition> MetricDefinitionFromStored(const nlohmann::json& stored);

// Parses one filter object {"property", "op", "value"} (docs/metrics.md "Filters"); InvalidArgument naming
// `field` + ".op" etc.
common::Status ParsePropertyFilter(const nlohmann::json& item, const std::string& field, PropertyFilter& out);

// True when `path` is a valid property path: identifiers joined by dots.
bool IsValidPropertyPath(std::string_view path);

// True when `type` looks like a CloudEvents type of the platform, e.g. com.platform.payments.purchase_completed.v1.
bool IsValidEventType(std::string_view type);

}  // namespace analytics::query
