// Rule parsing with JSON-path errors, canonical JSON, and the questions the segment service asks about a rule.
#include "segments/rule.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <span>

#include "analysis/request.h"
#include "common/time_util.h"

namespace analytics::segments {

namespace {

using analysis::Index;
using analysis::Member;
using common::Result;
using common::Status;
using json = nlohmann::json;

struct NamedKind {
  RuleKind kind;
  std::string_view name;
};
constexpr NamedKind kKinds[] = {
    {RuleKind::kAnd, "and"},
    {RuleKind::kOr, "or"},
    {RuleKind::kNot, "not"},
    {RuleKind::kPerformed, "performed"},
    {RuleKind::kNotPerformed, "not_performed"},
    {RuleKind::kFirstPerformed, "first_performed"},
    {RuleKind::kLastPerformed, "last_performed"},
    {RuleKind::kAggregate, "aggregate"},
    {RuleKind::kUserProperty, "user_property"},
    {RuleKind::kInSegment, "in_segment"},
};
constexpr std::string_view kKindList =
    "and, or, not, performed, not_performed, first_performed, last_performed, aggregate, user_property, in_segment";

constexpr std::string_view kComparisons[] = {"gte", "gt", "lte", "lt", "eq"};  // Comparison order
constexpr std::string_view kComparisonList = "gte, gt, lte, lt, eq";
constexpr std::string_view kFunctions[] = {"sum", "avg", "min", "max", "count"};  // AggregateFunction order

std::string ListOf(std::span<const std::string_view> names) {
  std::string list;
  for (std::string_view name : names) list += (list.empty() ? "" : ", ") + std::string(name);
  return list;
}

// A member that is present and not null (null counts as absent, as everywhere in the API).
const json* Find(const json& object, std::string_view name) {
  auto it = object.find(std::string(name));
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// InvalidArgument naming the first member of `object` (an object) not in `known`.
Status CheckMembers(const json& object, std::initializer_list<std::string_view> known, const std::string& path,
                    std::string_view what) {
  for (const auto& [name, value] : object.items()) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    return Status::InvalidArgument(
        "is not a field of " + std::string(what) + " (allowed: " + ListOf({known.begin(), known.size()}) + ")",
                                   Member(path, name));
  }
  return Status::Ok();
}

Status MustBeObject(const json& value, const std::string& path, std::string_view what) {
  if (value.is_object()) return Status::Ok();
  return Status::InvalidArgument("must be an object with " + std::string(what), path);
}

Result<int64_t> Timestamp(const json& value, const std::string& path) {
  const std::string expected = "must be an RFC 3339 date-time with a zone offset (e.g. 2024-03-01T00:00:00Z)";
  if (!value.is_string()) return Status::InvalidArgument(expected, path);
  auto parsed = common::ParseRfc3339Millis(value.get_ref<const std::string&>());
  if (!parsed.ok()) return Status::InvalidArgument(expected, path);
  return *parsed;
}

Status ParseBetween(const json& value, const std::string& path, TimeRange& out) {
  ANALYTICS_RETURN_IF_ERROR(MustBeObject(value, path, "from and to (RFC 3339 date-times)"));
  ANALYTICS_RETURN_IF_ERROR(CheckMembers(value, {"from", "to"}, path, "between"));
  const json* from = Find(value, "from");
  const json* to = Find(value, "to");
  if (from == nullptr) return Status::InvalidArgument("is required (an RFC 3339 date-time)", Member(path, "from"));
  if (to == nullptr) return Status::InvalidArgument("is required (an RFC 3339 date-time)", Member(path, "to"));
  ANALYTICS_ASSIGN_OR_RETURN(out.from_ms, Timestamp(*from, Member(path, "from")));
  ANALYTICS_ASSIGN_OR_RETURN(out.to_ms, Timestamp(*to, Member(path, "to")));
  if (out.to_ms <= out.from_ms) {
    return Status::InvalidArgument("must be after between.from (the range is from <= time < to)", Member(path, "to"));
  }
  out.kind = TimeRange::Kind::kBetween;
  return Status::Ok();
}

// The window of performed / not_performed / aggregate (at most one of within_days, between) or, with `is_range`,
// the range of first/last_performed (exactly one of before, after, within_days, between).
Status ParseTimeRange(const json& object, const std::string& path, bool is_range, TimeRange& out) {
  static constexpr std::string_view kRangeMembers[] = {"before", "after", "within_days", "between"};
  static constexpr std::string_view kWindowMembers[] = {"within_days", "between"};
  const std::span<const std::string_view> names =
      is_range ? std::span<const std::string_view>(kRangeMembers) : std::span<const std::string_view>(kWindowMembers);
  const std::string list = ListOf(names);
  std::string_view given;
  for (std::string_view name : names) {
    if (Find(object, name) == nullptr) continue;
    if (!given.empty()) {
      return Status::InvalidArgument("must not be given with " + std::string(given) + ": " +
                                         (is_range ? "a range is exactly one of " : "a window is at most one of ") +
                                         list,
                                     Member(path, name));
    }
    given = name;
  }
  out = TimeRange();
  if (given.empty()) {
    if (is_range) return Status::InvalidArgument("needs exactly one of " + list, path);
    return Status::Ok();  // all time
  }
  const json& value = *Find(object, given);
  const std::string where = Member(path, given);
  if (given == "within_days") {
    ANALYTICS_ASSIGN_OR_RETURN(const int64_t days, analysis::IntegerIn(object, "within_days", path, 1, kMaxWithinDays,
                                                                       std::nullopt));
    out.kind = TimeRange::Kind::kWithinDays;
    out.within_days = static_cast<int>(days);
  } else if (given == "between") {
    ANALYTICS_RETURN_IF_ERROR(ParseBetween(value, where, out));
  } else if (given == "before") {
    ANALYTICS_ASSIGN_OR_RETURN(out.to_ms, Timestamp(value, where));
    out.kind = TimeRange::Kind::kBefore;
  } else {
    ANALYTICS_ASSIGN_OR_RETURN(out.from_ms, Timestamp(value, where));
    out.kind = TimeRange::Kind::kAfter;
  }
  return Status::Ok();
}

// Exactly one of gte, gt, lte, lt, eq among the members of `object`; returns which, its value in `value`.
Result<Comparison> ParseComparison(const json& object, const std::string& path, std::string_view what,
                                   const json*& value) {
  std::string_view given;
  Comparison comparison = Comparison::kGte;
  value = nullptr;
  for (size_t op_idx = 0; op_idx < std::size(kComparisons); ++op_idx) {
    const json* found = Find(object, kComparisons[op_idx]);
    if (found == nullptr) continue;
    if (!given.empty()) {
      return Status::InvalidArgument("must not be given with " + std::string(given) + ": " + std::string(what) +
                                         " takes exactly one of " + std::string(kComparisonList),
                                     Member(path, kComparisons[op_idx]));
    }
    given = kComparisons[op_idx];
    comparison = static_cast<Comparison>(op_idx);
    value = found;
  }
  if (given.empty()) {
    return Status::InvalidArgument("needs exactly one of " + std::string(kComparisonList), path);
  }
  return comparison;
}

Status ParseCount(const json& object, const std::string& path, Rule& out) {
  const json* count = Find(object, "count");
  out.comparison = Comparison::kGte;
  out.count = 1;
  if (count == nullptr) return Status::Ok();
  const std::string where = Member(path, "count");
  ANALYTICS_RETURN_IF_ERROR(
      MustBeObject(*count, where, "exactly one of " + std::string(kComparisonList) + " (an integer)"));
  ANALYTICS_RETURN_IF_ERROR(CheckMembers(*count, {"gte", "gt", "lte", "lt", "eq"}, where, "count"));
  const json* value = nullptr;
  ANALYTICS_ASSIGN_OR_RETURN(out.comparison, ParseComparison(*count, where, "count", value));
  ANALYTICS_ASSIGN_OR_RETURN(out.count, analysis::IntegerIn(*count, ComparisonName(out.comparison), where, 0,
                                                            kMaxRuleCount, std::nullopt));
  return Status::Ok();
}

// event_type (optional) and filters, shared by every event condition.
Status ParseEventMatch(const json& object, const std::string& path, Rule& out) {
  if (const json* type = Find(object, "event_type")) {
    if (!type->is_string() || type->get_ref<const std::string&>().empty() ||
        type->get_ref<const std::string&>().size() > 256) {
      return Status::InvalidArgument("must be an event type (a string of 1 to 256 characters), or null for any type",
                                     Member(path, "event_type"));
    }
    out.event_type = type->get<std::string>();
  }
  ANALYTICS_ASSIGN_OR_RETURN(out.filter, analysis::Filters(object, "filters", path));
  return Status::Ok();
}

bool IsSegmentId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
  });
}

Status ParseLeaf(RuleKind kind, const json& value, const std::string& path, Rule& out) {
  const std::string what(RuleKindName(kind));
  switch (kind) {
    case RuleKind::kPerformed:
      ANALYTICS_RETURN_IF_ERROR(MustBeObject(value, path, "event_type, filters, count, within_days or between"));
      ANALYTICS_RETURN_IF_ERROR(
          CheckMembers(value, {"event_type", "filters", "count", "within_days", "between"}, path, what));
      ANALYTICS_RETURN_IF_ERROR(ParseEventMatch(value, path, out));
      ANALYTICS_RETURN_IF_ERROR(ParseCount(value, path, out));
      return ParseTimeRange(value, path, false, out.range);
    case RuleKind::kNotPerformed:
      ANALYTICS_RETURN_IF_ERROR(MustBeObject(value, path, "event_type, filters, within_days or between"));
      ANALYTICS_RETURN_IF_ERROR(CheckMembers(value, {"event_type", "filters", "within_days", "between"}, path, what));
      ANALYTICS_RETURN_IF_ERROR(ParseEventMatch(value, path, out));
      return ParseTimeRange(value, path, false, out.range);
    case RuleKind::kFirstPerformed:
    case RuleKind::kLastPerformed:
      ANALYTICS_RETURN_IF_ERROR(
          MustBeObject(value, path, "event_type, filters and one of before, after, within_days, between"));
      ANALYTICS_RETURN_IF_ERROR(CheckMembers(
          value, {"event_type", "filters", "before", "after", "within_days", "between"}, path, what));
      ANALYTICS_RETURN_IF_ERROR(ParseEventMatch(value, path, out));
      return ParseTimeRange(value, path, true, out.range);
    case RuleKind::kAggregate: {
      ANALYTICS_RETURN_IF_ERROR(MustBeObject(
          value, path, "event_type, filters, property, function, one of gte, gt, lte, lt, eq, within_days or between"));
      ANALYTICS_RETURN_IF_ERROR(CheckMembers(value,
                                             {"event_type", "filters", "property", "function", "gte", "gt", "lte",
                                              "lt", "eq", "within_days", "between"},
                                             path, what));
      ANALYTICS_RETURN_IF_ERROR(ParseEventMatch(value, path, out));
      const json* property = Find(value, "property");
      if (property == nullptr) {
        return Status::InvalidArgument("is required (the number property to aggregate, e.g. amount)",
                                       Member(path, "property"));
      }
      if (!property->is_string() || !query::IsValidPropertyPath(property->get_ref<const std::string&>())) {
        return Status::InvalidArgument("must be a property path (identifiers joined by dots, e.g. amount)",
                                       Member(path, "property"));
      }
      out.property = property->get<std::string>();
      if (Find(value, "function") == nullptr) {
        return Status::InvalidArgument("is required (one of sum, avg, min, max, count)", Member(path, "function"));
      }
      ANALYTICS_ASSIGN_OR_RETURN(const std::string function,
                                 analysis::Choice(value, "function", path, {"sum", "avg", "min", "max", "count"}, ""));
      out.function = static_cast<AggregateFunction>(std::find(std::begin(kFunctions), std::end(kFunctions), function) -
                                                    std::begin(kFunctions));
      const json* threshold = nullptr;
      ANALYTICS_ASSIGN_OR_RETURN(out.comparison, ParseComparison(value, path, "aggregate", threshold));
      if (!threshold->is_number()) {
        return Status::InvalidArgument("must be a number", Member(path, ComparisonName(out.comparison)));
      }
      out.threshold = threshold->get<double>();
      return ParseTimeRange(value, path, false, out.range);
    }
    case RuleKind::kUserProperty:
      ANALYTICS_RETURN_IF_ERROR(MustBeObject(value, path, "property, op and value (as a filter condition)"));
      ANALYTICS_RETURN_IF_ERROR(query::ParsePropertyFilter(value, path, out.condition));
      if (out.condition.op == query::FilterOp::kExists && !out.condition.value.get<bool>()) {
        return Status::InvalidArgument(
            "must be true: user_property only matches users who have a value (for users without one, wrap "
            "{\"user_property\": {..., \"op\": \"exists\"}} in \"not\")",
            Member(path, "value"));
      }
      return Status::Ok();
    case RuleKind::kInSegment:
      if (!value.is_string() || !IsSegmentId(value.get_ref<const std::string&>())) {
        return Status::InvalidArgument("must be a segment id (a string of 1 to 128 characters of A-Z, a-z, 0-9, "
                                       "'.', '_', ':', '-')",
                                       path);
      }
      out.segment_id = value.get<std::string>();
      return Status::Ok();
    default:
      return Status::Internal("not a leaf");
  }
}

Status ParseNode(const json& value, const std::string& path, int depth, size_t& conditions, Rule& out) {
  const std::string expected = "must be an object with exactly one of " + std::string(kKindList);
  if (!value.is_object()) return Status::InvalidArgument(expected, path);
  const NamedKind* found = nullptr;
  for (const auto& [name, unused] : value.items()) {
    const NamedKind* named = nullptr;
    for (const NamedKind& entry : kKinds) {
      if (entry.name == name) named = &entry;
    }
    if (named == nullptr) {
      return Status::InvalidArgument("is not a rule node (one of " + std::string(kKindList) + ")", Member(path, name));
    }
    if (found != nullptr) {
      return Status::InvalidArgument("must not be given with " + std::string(found->name) +
                                         ": a node is exactly one of " + std::string(kKindList),
                                     Member(path, name));
    }
    found = named;
  }
  if (found == nullptr) return Status::InvalidArgument(expected, path);
  if (depth > kMaxRuleDepth) {
    return Status::InvalidArgument("is nested deeper than " + std::to_string(kMaxRuleDepth) +
                                       " levels (and, or, not count as one level each)",
                                   path);
  }
  out = Rule();
  out.kind = found->kind;
  const std::string where = Member(path, found->name);
  const json& body = value.at(std::string(found->name));
  switch (found->kind) {
    case RuleKind::kAnd:
    case RuleKind::kOr: {
      if (!body.is_array() || body.empty() || body.size() > kMaxRuleChildren) {
        return Status::InvalidArgument("must be an array of 1 to " + std::to_string(kMaxRuleChildren) + " rule nodes",
                                       where);
      }
      out.children.resize(body.size());
      for (size_t child_idx = 0; child_idx < body.size(); ++child_idx) {
        ANALYTICS_RETURN_IF_ERROR(
            ParseNode(body[child_idx], Index(where, child_idx), depth + 1, conditions, out.children[child_idx]));
      }
      return Status::Ok();
    }
    case RuleKind::kNot:
      out.children.resize(1);
      return ParseNode(body, where, depth + 1, conditions, out.children.front());
    default:
      if (++conditions > kMaxRuleConditions) {
        return Status::InvalidArgument("exceeds the limit of " + std::to_string(kMaxRuleConditions) +
                                           " conditions (leaves) in a rule",
                                       path);
      }
      return ParseLeaf(found->kind, body, where, out);
  }
}

json TimestampJson(int64_t unix_ms) { return common::FormatRfc3339Millis(unix_ms); }

void AddRange(const TimeRange& range, json& out) {
  switch (range.kind) {
    case TimeRange::Kind::kAllTime:
      break;
    case TimeRange::Kind::kWithinDays:
      out["within_days"] = range.within_days;
      break;
    case TimeRange::Kind::kBetween:
      out["between"] = {{"from", TimestampJson(range.from_ms)}, {"to", TimestampJson(range.to_ms)}};
      break;
    case TimeRange::Kind::kBefore:
      out["before"] = TimestampJson(range.to_ms);
      break;
    case TimeRange::Kind::kAfter:
      out["after"] = TimestampJson(range.from_ms);
      break;
  }
}

json EventMatchJson(const Rule& rule) {
  json out = json::object();
  out["event_type"] = rule.event_type ? json(*rule.event_type) : json(nullptr);
  out["filters"] = FilterExprToJson(rule.filter);
  return out;
}

// Integral values as JSON integers (as a client wrote them), others as doubles.
json NumberJson(double value) {
  if (std::trunc(value) == value && std::fabs(value) <= 9007199254740992.0) return static_cast<int64_t>(value);
  return value;
}

void CollectSegments(const Rule& rule, std::vector<std::string>& out) {
  if (rule.kind == RuleKind::kInSegment) out.push_back(rule.segment_id);
  for (const Rule& child : rule.children) CollectSegments(child, out);
}

}  // namespace

std::string_view RuleKindName(RuleKind kind) {
  for (const NamedKind& entry : kKinds) {
    if (entry.kind == kind) return entry.name;
  }
  return "unknown";
}

std::string_view ComparisonName(Comparison comparison) { return kComparisons[static_cast<size_t>(comparison)]; }

std::string_view AggregateFunctionName(AggregateFunction function) { return kFunctions[static_cast<size_t>(function)]; }

bool operator==(const Rule& a, const Rule& b) {
  return a.kind == b.kind && a.children == b.children && a.event_type == b.event_type &&
         a.filter.ToString() == b.filter.ToString() && a.range == b.range && a.comparison == b.comparison &&
         a.count == b.count && a.property == b.property && a.function == b.function && a.threshold == b.threshold &&
         a.condition.property == b.condition.property && a.condition.op == b.condition.op &&
         a.condition.value == b.condition.value && a.segment_id == b.segment_id;
}

Result<Rule> ParseRule(const json& rule, const std::string& path) {
  Rule out;
  size_t conditions = 0;
  ANALYTICS_RETURN_IF_ERROR(ParseNode(rule, path, 1, conditions, out));
  return out;
}

json FilterExprToJson(const query::FilterExpr& filter) {
  switch (filter.kind) {
    case query::FilterExpr::Kind::kTrue:
      return json::array();
    case query::FilterExpr::Kind::kCondition:
      return {{"property", filter.condition.property},
              {"op", query::FilterOpName(filter.condition.op)},
              {"value", filter.condition.value}};
    case query::FilterExpr::Kind::kAnd:
    case query::FilterExpr::Kind::kOr: {
      json children = json::array();
      for (const query::FilterExpr& child : filter.children) children.push_back(FilterExprToJson(child));
      return {{filter.kind == query::FilterExpr::Kind::kAnd ? "and" : "or", std::move(children)}};
    }
  }
  return json::array();
}

json RuleToJson(const Rule& rule) {
  const std::string name(RuleKindName(rule.kind));
  json body;
  switch (rule.kind) {
    case RuleKind::kAnd:
    case RuleKind::kOr:
      body = json::array();
      for (const Rule& child : rule.children) body.push_back(RuleToJson(child));
      break;
    case RuleKind::kNot:
      body = rule.children.empty() ? json(nullptr) : RuleToJson(rule.children.front());
      break;
    case RuleKind::kPerformed:
      body = EventMatchJson(rule);
      body["count"] = {{std::string(ComparisonName(rule.comparison)), rule.count}};
      AddRange(rule.range, body);
      break;
    case RuleKind::kNotPerformed:
    case RuleKind::kFirstPerformed:
    case RuleKind::kLastPerformed:
      body = EventMatchJson(rule);
      AddRange(rule.range, body);
      break;
    case RuleKind::kAggregate:
      body = EventMatchJson(rule);
      body["property"] = rule.property;
      body["function"] = AggregateFunctionName(rule.function);
      body[std::string(ComparisonName(rule.comparison))] = NumberJson(rule.threshold);
      AddRange(rule.range, body);
      break;
    case RuleKind::kUserProperty:
      body = {{"property", rule.condition.property},
              {"op", query::FilterOpName(rule.condition.op)},
              {"value", rule.condition.value}};
      break;
    case RuleKind::kInSegment:
      body = rule.segment_id;
      break;
  }
  return {{name, std::move(body)}};
}

std::vector<std::string> ReferencedSegments(const Rule& rule) {
  std::vector<std::string> ids;
  CollectSegments(rule, ids);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

bool DependsOnlyOnOwnEvents(const Rule& rule) {
  if (rule.kind == RuleKind::kInSegment) return false;
  return std::all_of(rule.children.begin(), rule.children.end(),
                     [](const Rule& child) { return DependsOnlyOnOwnEvents(child); });
}

}  // namespace analytics::segments
