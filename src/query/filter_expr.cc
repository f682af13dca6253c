// FilterExpr parsing and canonical text.
#include "query/filter_expr.h"

#include <algorithm>

namespace analytics::query {

using common::Result;
using common::Status;
using json = nlohmann::json;

namespace {

constexpr int kMaxDepth = 8;
constexpr size_t kMaxConditions = 200;

Status Parse(const json& value, const std::string& field, int depth, size_t& conditions, FilterExpr& out) {
  if (depth > kMaxDepth) return Status::InvalidArgument("is nested deeper than 8 levels", field);
  if (value.is_array()) {
    std::vector<FilterExpr> children;
    for (size_t item_idx = 0; item_idx < value.size(); ++item_idx) {
      FilterExpr child;
      ANALYTICS_RETURN_IF_ERROR(
          Parse(value[item_idx], field + "[" + std::to_string(item_idx) + "]", depth + 1, conditions, child));
      children.push_back(std::move(child));
    }
    out = FilterExpr::And(std::move(children));
    return Status::Ok();
  }
  if (!value.is_object()) {
    return Status::InvalidArgument("must be a condition object, an array, or {\"and\"|\"or\": [...]}", field);
  }
  const bool is_and = value.contains("and");
  const bool is_or = value.contains("or");
  if (is_and || is_or) {
    if (value.size() != 1) {
      return Status::InvalidArgument("an and/or object must have exactly one key", field);
    }
    const std::string key = is_and ? "and" : "or";
    const json& items = value.at(key);
    if (!items.is_array() || items.empty()) {
      return Status::InvalidArgument("must be a non-empty array", field + "." + key);
    }
    FilterExpr node;
    node.kind = is_and ? FilterExpr::Kind::kAnd : FilterExpr::Kind::kOr;
    for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
      FilterExpr child;
      ANALYTICS_RETURN_IF_ERROR(Parse(items[item_idx], field + "." + key + "[" + std::to_string(item_idx) + "]",
                                      depth + 1, conditions, child));
      node.children.push_back(std::move(child));
    }
    out = std::move(node);
    return Status::Ok();
  }
  if (++conditions > kMaxConditions) return Status::InvalidArgument("has more than 200 conditions", field);
  PropertyFilter filter;
  ANALYTICS_RETURN_IF_ERROR(ParsePropertyFilter(value, field, filter));
  out = FilterExpr::Condition(std::move(filter));
  return Status::Ok();
}

}  // namespace

FilterExpr FilterExpr::Condition(PropertyFilter filter) {
  FilterExpr expr;
  expr.kind = Kind::kCondition;
  expr.condition = std::move(filter);
  return expr;
}

FilterExpr FilterExpr::And(std::vector<FilterExpr> children) {
  FilterExpr expr;
  expr.kind = Kind::kAnd;
  for (auto& child : children) {
    if (child.kind == Kind::kTrue) continue;
    if (child.kind == Kind::kAnd) {
      for (auto& grandchild : child.children) expr.children.push_back(std::move(grandchild));
    } else {
      expr.children.push_back(std::move(child));
    }
  }
  if (expr.children.empty()) return FilterExpr{};
  if (expr.children.size() == 1) return std::move(expr.children.front());
  return expr;
}

FilterExpr GameScope(const std::set<std::string>& game_ids) {
  PropertyFilter scope;
  scope.property = "game_id";
  scope.op = FilterOp::kIn;
  scope.value = json::array();
  for (const auto& game : game_ids) scope.value.push_back(game);
  return FilterExpr::Condition(std::move(scope));
}

void FilterExpr::CollectProperties(std::vector<std::string>& out) const {
  if (kind == Kind::kCondition) {
    if (std::find(out.begin(), out.end(), condition.property) == out.end()) out.push_back(condition.property);
  }
  for (const auto& child : children) child.CollectProperties(out);
}

std::string FilterExpr::ToString() const {
  switch (kind) {
    case Kind::kTrue:
      return "true";
    case Kind::kCondition:
      return json{{"property", condition.property}, {"op", FilterOpName(condition.op)}, {"value", condition.value}}
          .dump();
    case Kind::kAnd:
    case Kind::kOr: {
      std::string text = kind == Kind::kAnd ? "and(" : "or(";
      for (size_t child_idx = 0; child_idx < children.size(); ++child_idx) {
        if (child_idx > 0) text += ",";
        text += children[child_idx].ToString();
      }
      return text + ")";
    }
  }
  return "true";
}

Result<FilterExpr> ParseFilterExpr(const json& value, const std::string& field) {
  size_t conditions = 0;
  FilterExpr expr;
  ANALYTICS_RETURN_IF_ERROR(Parse(value, field, 0, conditions, expr));
  return expr;
}

}  // namespace analytics::query
