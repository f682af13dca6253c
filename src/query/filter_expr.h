// FilterExpr: the filter language of queries: property conditions combined with and / or.
//
// JSON forms (the `filters` parameter of metric values and analysis requests):
//   {"property": "country", "op": "eq", "value": "RU"}             one condition (docs/metrics.md "Filters")
//   [cond, cond, ...]                                               all must hold
//   {"and": [expr, ...]}  {"or": [expr, ...]}                       nested to any depth up to 8
// A metric definition's own filters are an implicit "and" of conditions. Errors name the path inside the
// parameter, e.g. filters.and[1].op.
// Thread-safety: plain values.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "query/metric_definition.h"

namespace analytics::query {

struct FilterExpr {
  enum class Kind { kTrue, kCondition, kAnd, kOr };
  Kind kind = Kind::kTrue;
  PropertyFilter condition;        // kCondition
  std::vector<FilterExpr> children;  // kAnd, kOr

  static FilterExpr Condition(PropertyFilter filter);
  static FilterExpr And(std::vector<FilterExpr> children);  // flattens, drops kTrue
  bool IsTrue() const { return kind == Kind::kTrue; }
  // Every property path the expression reads.
  void CollectProperties(std::vector<std::string>& out) const;
  // Canonical text (for cache keys and logs).
  std::string ToString() const;
};

// Who asks a metric or analysis question: developers (all_games false) read only events of their games (GameScope)
// and see only groups of at least k users.
struct Viewer {
  bool all_games = true;
  std::set<std::string> game_ids;
};

// `game_id in [game_ids...]`: a developer's scope (the games they own) as a condition.
FilterExpr GameScope(const std::set<std::string>& game_ids);

// `field` is the parameter name used in error messages ("filters").
common::Result<FilterExpr> ParseFilterExpr(const nlohmann::json& value, const std::string& field);

}  // namespace analytics::query
