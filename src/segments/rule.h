// The rule language of dynamic segments: which users belong to a segment at an evaluation time `as_of`
// (issue 6, "Rule language"). Evaluation: segments/rule_eval.h.
//
// A rule is a tree. Inner nodes combine: {"and": [...]}, {"or": [...]} (1..32 children) and {"not": node}.
// Leaves are conditions on a user's own events, or membership of another segment:
//   {"performed":       {"event_type", "filters", "count": {"gte"|"gt"|"lte"|"lt"|"eq": N}, window}}
//   {"not_performed":   {"event_type", "filters", window}}                    (performed with count eq 0)
//   {"first_performed": {"event_type", "filters", range}}   the first matching event ever lies in range
//   {"last_performed":  {"event_type", "filters", range}}   the last matching event up to as_of lies in range
//   {"aggregate":       {"event_type", "filters", "property", "function": sum|avg|min|max|count,
//                        "gte"|"gt"|"lte"|"lt"|"eq": number, window}}
//   {"user_property":   {"property", "op", "value"}}   the latest non-null value of the property satisfies op
//   {"in_segment":      "segment-id"}
// `event_type` is optional (absent or null: any type); `filters` is the filter language of query/filter_expr.h.
// window (performed, not_performed, aggregate): at most one of "within_days": N (1..3660) or
// "between": {"from", "to"} (RFC 3339); none: all time. range (first/last_performed): exactly one of
// "before": ts (t < ts), "after": ts (t >= ts), "within_days": N, "between": {"from", "to"} (from <= t < to).
// "within_days": N means the N calendar days (in the definition's time zone) ending on the date of as_of, that
// day included: [local midnight of date(as_of) - (N - 1), as_of]. No condition sees an event after as_of.
//
// Errors are InvalidArgument whose field() is the JSON path of the offending value ("rule.and[1].performed.count.gte").
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "query/filter_expr.h"
#include "query/metric_definition.h"

namespace analytics::segments {

inline constexpr int kMaxRuleDepth = 8;             // a leaf at the top is depth 1
inline constexpr size_t kMaxRuleChildren = 32;      // per and / or
inline constexpr size_t kMaxRuleConditions = 64;    // leaves in the whole rule
inline constexpr int64_t kMaxRuleCount = 1000000000;  // performed count N
inline constexpr int kMaxWithinDays = 3660;

enum class RuleKind {
  kAnd,
  kOr,
  kNot,
  kPerformed,
  kNotPerformed,
  kFirstPerformed,
  kLastPerformed,
  kAggregate,
  kUserProperty,
  kInSegment,
};

// The JSON member naming the node ("and", "performed", ...).
std::string_view RuleKindName(RuleKind kind);

enum class Comparison { kGte, kGt, kLte, kLt, kEq };
std::string_view ComparisonName(Comparison comparison);

enum class AggregateFunction { kSum, kAvg, kMin, kMax, kCount };
std::string_view AggregateFunctionName(AggregateFunction function);

// The time range of an event condition. Windows (performed, not_performed, aggregate) are kAllTime, kWithinDays or
// kBetween; ranges of first/last_performed are kWithinDays, kBetween, kBefore or kAfter.
struct TimeRange {
  enum class Kind { kAllTime, kWithinDays, kBetween, kBefore, kAfter };
  Kind kind = Kind::kAllTime;
  int within_days = 0;  // kWithinDays: 1..kMaxWithinDays
  int64_t from_ms = 0;  // kBetween, kAfter: inclusive (Unix ms)
  int64_t to_ms = 0;    // kBetween, kBefore: exclusive (Unix ms)
  bool operator==(const TimeRange&) const = default;
};

// One node. Which members matter depends on `kind` (the others keep their defaults).
struct Rule {
  RuleKind kind = RuleKind::kAnd;
  std::vector<Rule> children;  // kAnd, kOr: 1..kMaxRuleChildren; kNot: exactly one

  // Event conditions (kPerformed, kNotPerformed, kFirstPerformed, kLastPerformed, kAggregate).
  std::optional<std::string> event_type;  // nullopt: any type
  query::FilterExpr filter;               // kTrue: no filters
  TimeRange range;

  // kPerformed: count `comparison` `count`. kAggregate: value `comparison` `threshold`.
  Comparison comparison = Comparison::kGte;
  int64_t count = 1;
  std::string property;  // kAggregate: the number property
  AggregateFunction function = AggregateFunction::kSum;
  double threshold = 0;

  query::PropertyFilter condition;  // kUserProperty (op exists takes value true only)
  std::string segment_id;           // kInSegment

  bool IsLeaf() const { return kind != RuleKind::kAnd && kind != RuleKind::kOr && kind != RuleKind::kNot; }
};

// Structural equality (filters compare by their canonical text).
bool operator==(const Rule& a, const Rule& b);

// Parses and validates a rule; every error is InvalidArgument whose field() is the JSON path starting with `path`
// ("rule.and[1].performed.count.gte"). Unknown members are errors. Limits: depth <= kMaxRuleDepth, <=
// kMaxRuleChildren children per and/or, <= kMaxRuleConditions conditions in all.
common::Result<Rule> ParseRule(const nlohmann::json& rule, const std::string& path = "rule");

// Canonical JSON: every default explicit ("event_type": null for any type, "filters": [] for none, "count": {"gte": 1},
// times as RFC 3339 UTC with milliseconds). ParseRule(RuleToJson(r)) == r.
nlohmann::json RuleToJson(const Rule& rule);

// The ids named by in_segment, sorted and unique.
std::vector<std::string> ReferencedSegments(const Rule& rule);

// False when the rule uses in_segment: membership then also changes when another segment changes, so a refresh
// may not be limited to the users who sent events.
bool DependsOnlyOnOwnEvents(const Rule& rule);

// The filter language's JSON for `filter` ([] for kTrue); ParseFilterExpr reads it back to an equal expression.
nlohmann::json FilterExprToJson(const query::FilterExpr& filter);

}  // namespace analytics::segments
