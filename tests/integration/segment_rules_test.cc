// Segment rules (segments/rule.h, segments/rule_eval.h): parse errors with their JSON paths and messages, limits, the
// canonical JSON round trip, and evaluation over real embedded stores against a reference computed here from the raw
// events: plain loops over each user's events interpreting the rule's JSON directly (no Timeline, no rule.cc), civil
// dates from the zone database. Random rules from a seeded generator cover every condition kind, windows (within_days
// across DST in Europe/Berlin and America/Santiago, between, before/after, all time), as_of at day edges +-1 ms and on
// event times, equal timestamps, negations at the top, in_segment through the callback, scopes, events in segments
// and in the memtable, an erased user, and 1 vs 4 threads.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "query/aggregator.h"
#include "query/time_grid.h"
#include "segments/rule.h"
#include "segments/rule_eval.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using events::StoredEvent;
using json = nlohmann::json;
using query::Roaring;
using query::TimeZone;
using segments::EvalContext;
using segments::EvalStats;
using segments::EvaluateRule;
using segments::ParseRule;
using segments::Rule;
using segments::RuleToJson;

const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kPurchase = "com.platform.payments.purchase.completed.v1";
const std::string kSession = "com.platform.library.session.started.v1";
const std::string kRegistered = "com.platform.account.user.registered.v1";

int64_t Ms(const std::string& text) { return common::ParseRfc3339Millis(text).value(); }
std::string Text(int64_t unix_ms) { return common::FormatRfc3339Millis(unix_ms); }
json Performed(json body) { return {{"performed", std::move(body)}}; }

// ---- Parsing ----------------------------------------------------------------------------------------------------

struct BadRule {
  json rule;
  std::string field;
  std::string message;  // a part of the message
};

TEST(SegmentRuleParseTest, ErrorsNameTheJsonPathAndSayWhatIsAllowed) {
  const json leaf = Performed({{"event_type", kPurchase}});
  const json nest = json::array({leaf});
  auto nested_nots = [&](int count) {
    json node = leaf;
    for (int idx = 0; idx < count; ++idx) node = {{"not", node}};
    return node;
  };
  const std::vector<BadRule> cases = {
      {5, "rule", "must be an object with exactly one of and, or, not, performed, not_performed, first_performed, "
                  "last_performed, aggregate, user_property, in_segment"},
      {json::object(), "rule", "must be an object with exactly one of"},
      {{{"performd", json::object()}}, "rule.performd", "is not a rule node (one of and, or, not, performed"},
      {{{"performed", json::object()}, {"not", leaf}}, "rule.performed", "must not be given with not"},
      {{{"and", json::array()}}, "rule.and", "must be an array of 1 to 32 rule nodes"},
      {{{"or", leaf}}, "rule.or", "must be an array of 1 to 32 rule nodes"},
      {{{"and", std::vector<json>(33, leaf)}}, "rule.and", "must be an array of 1 to 32 rule nodes"},
      {{{"not", 3}}, "rule.not", "must be an object with exactly one of"},
      {{{"and", {leaf, {{"or", {leaf, 7}}}}}}, "rule.and[1].or[1]", "must be an object with exactly one of"},
      {{{"and", {leaf, Performed({{"count", {{"gte", -1}}}})}}}, "rule.and[1].performed.count.gte",
       "must be an integer from 0 to 1000000000"},
      {Performed({{"count", {{"gte", 1.5}}}}), "rule.performed.count.gte", "must be an integer from 0 to 1000000000"},
      {Performed({{"count", {{"eq", 1000000001}}}}), "rule.performed.count.eq", "must be an integer"},
      {Performed({{"count", json::object()}}), "rule.performed.count", "needs exactly one of gte, gt, lte, lt, eq"},
      {Performed({{"count", {{"gte", 1}, {"lt", 3}}}}), "rule.performed.count.lt",
       "must not be given with gte: count takes exactly one of gte, gt, lte, lt, eq"},
      {Performed({{"count", {{"ge", 1}}}}), "rule.performed.count.ge",
       "is not a field of count (allowed: gte, gt, lte, lt, eq)"},
      {Performed({{"count", 3}}), "rule.performed.count", "must be an object with exactly one of gte, gt, lte, lt, eq"},
      {Performed({{"window", 7}}), "rule.performed.window",
       "is not a field of performed (allowed: event_type, filters, count, within_days, between)"},
      {{{"performed", nullptr}}, "rule.performed", "must be an object with event_type, filters, count"},
      {Performed({{"event_type", 5}}), "rule.performed.event_type", "must be an event type"},
      {Performed({{"event_type", ""}}), "rule.performed.event_type", "must be an event type"},
      {Performed({{"filters", {{"property", "game_id"}, {"op", "like"}, {"value", "g"}}}}), "rule.performed.filters.op",
       "is not one of eq, ne, in, nin"},
      {Performed({{"filters", {{"and", {{{"property", "game_id"}, {"op", "eq"}}}}}}}),
       "rule.performed.filters.and[0].value", "is required"},
      {Performed({{"within_days", 0}}), "rule.performed.within_days", "must be an integer from 1 to 3660"},
      {Performed({{"within_days", 3661}}), "rule.performed.within_days", "must be an integer from 1 to 3660"},
      {Performed({{"within_days", "7"}}), "rule.performed.within_days", "must be an integer from 1 to 3660"},
      {Performed({{"within_days", 7}, {"between", {{"from", "2024-01-01T00:00:00Z"}, {"to", "2024-02-01T00:00:00Z"}}}}),
       "rule.performed.between", "must not be given with within_days: a window is at most one of within_days, between"},
      {Performed({{"between", {{"from", "2024-01-01T00:00:00Z"}}}}), "rule.performed.between.to", "is required"},
      {Performed({{"between", {{"from", "2024-01-01T00:00:00Z"}, {"to", "2024-01-01T00:00:00Z"}}}}),
       "rule.performed.between.to", "must be after between.from"},
      {Performed({{"between", {{"from", "yesterday"}, {"to", "2024-01-01T00:00:00Z"}}}}), "rule.performed.between.from",
       "must be an RFC 3339 date-time"},
      {Performed({{"between", {{"from", "2024-01-01T00:00:00Z"}, {"to", "2024-02-01T00:00:00Z"}, {"at", 1}}}}),
       "rule.performed.between.at", "is not a field of between (allowed: from, to)"},
      {Performed({{"between", "2024"}}), "rule.performed.between", "must be an object with from and to"},
      {{{"not_performed", {{"event_type", kSession}, {"count", {{"gte", 1}}}}}}, "rule.not_performed.count",
       "is not a field of not_performed (allowed: event_type, filters, within_days, between)"},
      {{{"first_performed", {{"event_type", kPurchase}}}}, "rule.first_performed",
       "needs exactly one of before, after, within_days, between"},
      {{{"last_performed", {{"before", "2024-01-01T00:00:00Z"}, {"after", "2023-01-01T00:00:00Z"}}}},
       "rule.last_performed.after", "must not be given with before: a range is exactly one of before, after"},
      {{{"first_performed", {{"before", 1704067200000}}}}, "rule.first_performed.before", "must be an RFC 3339"},
      {{{"last_performed", {{"within_days", 7}, {"count", {{"gte", 1}}}}}}, "rule.last_performed.count",
       "is not a field of last_performed"},
      {{{"aggregate", {{"function", "sum"}, {"gte", 1}}}}, "rule.aggregate.property", "is required"},
      {{{"aggregate", {{"property", "a..b"}, {"function", "sum"}, {"gte", 1}}}}, "rule.aggregate.property",
       "must be a property path"},
      {{{"aggregate", {{"property", "amount"}, {"gte", 1}}}}, "rule.aggregate.function",
       "is required (one of sum, avg, min, max, count)"},
      {{{"aggregate", {{"property", "amount"}, {"function", "median"}, {"gte", 1}}}}, "rule.aggregate.function",
       "must be one of sum, avg, min, max, count"},
      {{{"aggregate", {{"property", "amount"}, {"function", "sum"}}}}, "rule.aggregate",
       "needs exactly one of gte, gt, lte, lt, eq"},
      {{{"aggregate", {{"property", "amount"}, {"function", "sum"}, {"gte", "5"}}}}, "rule.aggregate.gte",
       "must be a number"},
      {{{"aggregate", {{"property", "amount"}, {"function", "sum"}, {"gte", 5}, {"eq", 6}}}}, "rule.aggregate.eq",
       "must not be given with gte"},
      {{{"aggregate", {{"property", "amount"}, {"function", "sum"}, {"gte", 5}, {"count", {{"gte", 1}}}}}},
       "rule.aggregate.count", "is not a field of aggregate"},
      {{{"user_property", {{"property", "country"}, {"op", "like"}, {"value", "R"}}}}, "rule.user_property.op",
       "is not one of eq, ne, in, nin, gt, gte, lt, lte, contains, exists"},
      {{{"user_property", {{"op", "eq"}, {"value", "RU"}}}}, "rule.user_property.property", "is required"},
      {{{"user_property", {{"property", "country"}, {"op", "eq"}, {"value", "RU"}, {"x", 1}}}}, "rule.user_property.x",
       "unknown field"},
      {{{"user_property", {{"property", "country"}, {"op", "exists"}, {"value", false}}}}, "rule.user_property.value",
       "must be true"},
      {{{"user_property", "country"}}, "rule.user_property", "must be an object with property, op and value"},
      {{{"in_segment", 5}}, "rule.in_segment", "must be a segment id"},
      {{{"in_segment", ""}}, "rule.in_segment", "must be a segment id"},
      {{{"in_segment", "a b"}}, "rule.in_segment", "must be a segment id"},
      {nested_nots(8), "rule.not.not.not.not.not.not.not.not", "is nested deeper than 8 levels"},
      {{{"and", {{{"and", std::vector<json>(32, leaf)}}, {{"and", std::vector<json>(32, leaf)}}, {{"and", nest}}}}},
       "rule.and[2].and[0]", "exceeds the limit of 64 conditions"},
  };
  for (const BadRule& bad : cases) {
    auto parsed = ParseRule(bad.rule);
    ASSERT_FALSE(parsed.ok()) << bad.rule.dump();
    EXPECT_EQ(parsed.status().code(), common::StatusCode::kInvalidArgument) << bad.rule.dump();
    EXPECT_EQ(parsed.status().field(), bad.field) << bad.rule.dump() << ": " << parsed.status().ToString();
    EXPECT_NE(parsed.status().message().find(bad.message), std::string::npos)
        << bad.rule.dump() << ": " << parsed.status().message();
  }
  // Just inside the limits: depth 8 (seven nots over a leaf), 64 conditions, 32 children.
  EXPECT_OK(ParseRule(nested_nots(7)));
  EXPECT_OK(ParseRule({{"and", {{{"and", std::vector<json>(32, leaf)}}, {{"and", std::vector<json>(32, leaf)}}}}}));
  // The path prefix is the caller's.
  auto prefixed = ParseRule(Performed({{"count", {{"gte", -1}}}}), "definition.rule");
  ASSERT_FALSE(prefixed.ok());
  EXPECT_EQ(prefixed.status().field(), "definition.rule.performed.count.gte");
}

TEST(SegmentRuleParseTest, CanonicalJsonMakesDefaultsExplicitAndRoundTrips) {
  auto parsed = ParseRule(Performed({{"event_type", kPurchase}}));
  ASSERT_OK(parsed);
  EXPECT_EQ(RuleToJson(*parsed),
            json({{"performed", {{"event_type", kPurchase}, {"filters", json::array()}, {"count", {{"gte", 1}}}}}}));
  parsed = ParseRule({{"not_performed", {{"event_type", nullptr},
                                         {"between", {{"from", "2024-03-31T02:30:00+02:00"},
                                                      {"to", "2024-04-01T00:00:00.5Z"}}}}}});
  ASSERT_OK(parsed);
  EXPECT_EQ(RuleToJson(*parsed),
            json({{"not_performed", {{"event_type", nullptr}, {"filters", json::array()},
                                     {"between", {{"from", "2024-03-31T00:30:00.000Z"},
                                                  {"to", "2024-04-01T00:00:00.500Z"}}}}}}));
  parsed = ParseRule({{"aggregate", {{"property", "amount"}, {"function", "avg"}, {"lt", 2.5}, {"within_days", 30},
                                     {"filters", {{{"property", "currency"}, {"op", "eq"}, {"value", "RUB"}}}}}}});
  ASSERT_OK(parsed);
  EXPECT_EQ(RuleToJson(*parsed),
            json({{"aggregate", {{"event_type", nullptr},
                                 {"filters", {{"property", "currency"}, {"op", "eq"}, {"value", "RUB"}}},
                                 {"property", "amount"}, {"function", "avg"}, {"lt", 2.5}, {"within_days", 30}}}}));
  parsed = ParseRule({{"user_property", {{"property", "country"}, {"op", "exists"}}}});
  ASSERT_OK(parsed);
  EXPECT_EQ(RuleToJson(*parsed),
            json({{"user_property", {{"property", "country"}, {"op", "exists"}, {"value", true}}}}));

  const json rule = {
      {"or",
       {{{"and",
          {Performed({{"event_type", kPurchase},
                      {"count", {{"gte", 2}}},
                      {"within_days", 30},
                      {"filters", {{"or", {{{"property", "game_id"}, {"op", "in"}, {"value", {"g1", "g2"}}},
                                           {{"property", "amount"}, {"op", "gt"}, {"value", 10}}}}}}}),
           {{"not", {{"not_performed", {{"event_type", kSession}, {"within_days", 7}}}}}},
           {{"first_performed", {{"event_type", kRegistered}, {"after", "2024-03-01T00:00:00Z"}}}},
           {{"last_performed", {{"event_type", kView}, {"before", "2024-03-01T00:00:00Z"}}}}}}},
        {{"aggregate", {{"event_type", kPurchase}, {"property", "amount"}, {"function", "sum"}, {"gte", 1000}}}},
        {{"user_property", {{"property", "tier"}, {"op", "in"}, {"value", {"gold", 1, true}}}}},
        {{"in_segment", "seg-42"}},
        {{"in_segment", "seg-07"}},
        {{"in_segment", "seg-42"}}}}};
  ASSERT_OK_AND_ASSIGN(const Rule parsed_rule, ParseRule(rule));
  const json canonical = RuleToJson(parsed_rule);
  ASSERT_OK_AND_ASSIGN(const Rule again, ParseRule(canonical));
  EXPECT_TRUE(again == parsed_rule) << canonical.dump();
  EXPECT_EQ(RuleToJson(again), canonical);
  EXPECT_EQ(segments::ReferencedSegments(parsed_rule), (std::vector<std::string>{"seg-07", "seg-42"}));
  EXPECT_FALSE(segments::DependsOnlyOnOwnEvents(parsed_rule));
  EXPECT_TRUE(segments::DependsOnlyOnOwnEvents(parsed_rule.children.front()));
  EXPECT_TRUE(segments::ReferencedSegments(parsed_rule.children.front()).empty());
  // Changing anything breaks equality.
  Rule changed = again;
  changed.children.front().children.front().count = 3;
  EXPECT_FALSE(changed == parsed_rule);
}

// ---- The reference ----------------------------------------------------------------------------------------------

// One stored event as the reference reads it.
struct RefEvent {
  std::string user;
  std::string type;
  int64_t time = 0;
  json data = json::object();
};

RefEvent ToRef(const events::EventView& event) {
  RefEvent out{std::string(event.user), std::string(event.type), event.time_ms, json::object()};
  if (!event.data.empty()) out.data = json::parse(event.data);
  return out;
}

// The value at a dotted path of `data`; nullptr when missing or null.
const json* Lookup(const json& data, const std::string& path) {
  const json* at = &data;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!at->is_object()) return nullptr;
    auto it = at->find(name);
    if (it == at->end() || it->is_null()) return nullptr;
    at = &*it;
    if (dot == std::string::npos) return at;
    start = dot + 1;
  }
}

// docs/metrics.md "Filters": no type coercion; missing, null or another type makes every op false but ne, nin and
// exists false.
bool ScalarEquals(const json* value, const json& operand) {
  if (value == nullptr) return false;
  if (operand.is_number()) return value->is_number() && value->get<double>() == operand.get<double>();
  if (operand.is_string()) return value->is_string() && value->get<std::string>() == operand.get<std::string>();
  if (operand.is_boolean()) return value->is_boolean() && value->get<bool>() == operand.get<bool>();
  return false;
}

bool ConditionHolds(const std::string& property, const std::string& op, const json& operand, const json& data) {
  const json* value = Lookup(data, property);
  if (op == "exists") return (value != nullptr) == (operand.is_null() || operand.get<bool>());
  if (op == "eq") return ScalarEquals(value, operand);
  if (op == "ne") return !ScalarEquals(value, operand);
  if (op == "in" || op == "nin") {
    bool any = false;
    for (const json& item : operand) any = any || ScalarEquals(value, item);
    return op == "in" ? any : !any;
  }
  if (op == "contains") {
    if (value == nullptr) return false;
    if (value->is_string()) return value->get<std::string>().find(operand.get<std::string>()) != std::string::npos;
    if (value->is_array()) return std::find(value->begin(), value->end(), operand) != value->end();
    return false;
  }
  if (value == nullptr) return false;
  auto compare = [&](auto a, auto b) {
    return op == "gt" ? a > b : op == "gte" ? a >= b : op == "lt" ? a < b : a <= b;
  };
  if (operand.is_number()) return value->is_number() && compare(value->get<double>(), operand.get<double>());
  return value->is_string() && compare(value->get<std::string>(), operand.get<std::string>());
}

bool FilterHolds(const json& filter, const json& data) {
  if (filter.is_array()) {
    return std::all_of(filter.begin(), filter.end(), [&](const json& item) { return FilterHolds(item, data); });
  }
  auto holds = [&](const json& item) { return FilterHolds(item, data); };
  if (filter.contains("and")) return std::all_of(filter["and"].begin(), filter["and"].end(), holds);
  if (filter.contains("or")) return std::any_of(filter["or"].begin(), filter["or"].end(), holds);
  return ConditionHolds(filter["property"], filter["op"], filter.value("value", json(true)), data);
}

// The text the store keys a value by (query/aggregate.h GroupKey): strings as they are, numbers as FormatNumber.
std::string ValueText(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number()) return query::FormatNumber(value.get<double>());
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  return value.dump();
}

bool Compare(double value, const std::string& op, double bound) {
  if (op == "gte") return value >= bound;
  if (op == "gt") return value > bound;
  if (op == "lte") return value <= bound;
  if (op == "lt") return value < bound;
  return value == bound;
}

// The comparison member of an object ("gte": x ...).
std::pair<std::string, json> ComparisonOf(const json& object) {
  for (const char* op : {"gte", "gt", "lte", "lt", "eq"}) {
    if (object.contains(op)) return {op, object[op]};
  }
  ADD_FAILURE() << "no comparison in " << object.dump();
  return {"gte", 0};
}

void CollectSegments(const json& node, std::set<std::string>& out) {
  if (node.contains("in_segment")) out.insert(node["in_segment"].get<std::string>());
  for (const char* key : {"and", "or"}) {
    if (node.contains(key)) {
      for (const json& child : node[key]) CollectSegments(child, out);
    }
  }
  if (node.contains("not")) CollectSegments(node["not"], out);
}

// Evaluates rule JSON per user with plain loops over the user's events at or before as_of.
class Reference {
 public:
  Reference(const std::vector<RefEvent>& events, const std::map<std::string, std::set<std::string>>& segments,
            const TimeZone& zone, int64_t as_of)
      : segments_(segments), zone_(zone), as_of_(as_of) {
    for (const RefEvent& event : events) {
      if (event.time <= as_of && !event.user.empty()) by_user_[event.user].push_back(&event);  // no user: never read
    }
    as_of_day_ = Day(as_of);
  }

  std::set<std::string> Users(const json& rule) const {
    std::set<std::string> universe;
    for (const auto& [user, events] : by_user_) universe.insert(user);
    std::set<std::string> named;
    CollectSegments(rule, named);
    for (const std::string& id : named) universe.insert(segments_.at(id).begin(), segments_.at(id).end());
    std::set<std::string> out;
    static const std::vector<const RefEvent*> kNone;
    for (const std::string& user : universe) {
      auto it = by_user_.find(user);
      if (Holds(rule, user, it == by_user_.end() ? kNone : it->second)) out.insert(user);
    }
    return out;
  }

 private:
  absl::CivilDay Day(int64_t unix_ms) const { return absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone_.zone()); }

  static bool Matches(const json& body, const RefEvent& event) {
    if (body.contains("event_type") && !body["event_type"].is_null() && body["event_type"] != event.type) return false;
    return !body.contains("filters") || FilterHolds(body["filters"], event.data);
  }
  // The window or range members of `body` (none: all time), for an event at or before as_of.
  bool InRange(const json& body, int64_t time) const {
    if (body.contains("within_days")) return Day(time) >= as_of_day_ - (body["within_days"].get<int>() - 1);
    if (body.contains("between")) {
      return time >= Ms(body["between"]["from"]) && time < Ms(body["between"]["to"]);
    }
    if (body.contains("before")) return time < Ms(body["before"]);
    if (body.contains("after")) return time >= Ms(body["after"]);
    return true;
  }

  bool Holds(const json& node, const std::string& user, const std::vector<const RefEvent*>& events) const {
    if (node.contains("and")) {
      return std::all_of(node["and"].begin(), node["and"].end(),
                         [&](const json& child) { return Holds(child, user, events); });
    }
    if (node.contains("or")) {
      return std::any_of(node["or"].begin(), node["or"].end(),
                         [&](const json& child) { return Holds(child, user, events); });
    }
    if (node.contains("not")) return !Holds(node["not"], user, events);
    if (node.contains("in_segment")) return segments_.at(node["in_segment"]).count(user) > 0;
    if (node.contains("performed") || node.contains("not_performed")) {
      const json& body = node.contains("performed") ? node["performed"] : node["not_performed"];
      int64_t count = 0;
      for (const RefEvent* event : events) count += Matches(body, *event) && InRange(body, event->time);
      if (node.contains("not_performed")) return count == 0;
      const auto [op, bound] = body.contains("count") ? ComparisonOf(body["count"]) : std::make_pair("gte", json(1));
      return Compare(static_cast<double>(count), op, bound.get<double>());
    }
    if (node.contains("first_performed") || node.contains("last_performed")) {
      const bool first = node.contains("first_performed");
      const json& body = first ? node["first_performed"] : node["last_performed"];
      std::optional<int64_t> found;
      for (const RefEvent* event : events) {
        if (!Matches(body, *event)) continue;
        if (!found || (first ? event->time < *found : event->time > *found)) found = event->time;
      }
      return found && InRange(body, *found);
    }
    if (node.contains("aggregate")) {
      const json& body = node["aggregate"];
      std::vector<const RefEvent*> sorted = events;
      std::stable_sort(sorted.begin(), sorted.end(),
                       [](const RefEvent* a, const RefEvent* b) { return a->time < b->time; });
      std::vector<double> values;
      for (const RefEvent* event : sorted) {
        if (!Matches(body, *event) || !InRange(body, event->time)) continue;
        const json* value = Lookup(event->data, body["property"]);
        if (value != nullptr && value->is_number()) values.push_back(value->get<double>());
      }
      if (values.empty()) return false;
      double sum = 0;
      for (double value : values) sum += value;
      const std::string function = body["function"];
      const double result = function == "sum"   ? sum
                            : function == "avg" ? sum / static_cast<double>(values.size())
                            : function == "min" ? *std::min_element(values.begin(), values.end())
                            : function == "max" ? *std::max_element(values.begin(), values.end())
                                                : static_cast<double>(values.size());
      const auto [op, bound] = ComparisonOf(body);
      return Compare(result, op, bound.get<double>());
    }
    if (node.contains("user_property")) {
      const json& body = node["user_property"];
      const std::string property = body["property"];
      // The latest value: the greatest (time, type, value text); ties on all three hold when one of them does.
      std::optional<std::tuple<int64_t, std::string, std::string>> latest;
      bool holds = false;
      for (const RefEvent* event : events) {
        const json* value = Lookup(event->data, property);
        if (value == nullptr) continue;
        auto key = std::make_tuple(event->time, event->type, ValueText(*value));
        const bool here = ConditionHolds(property, body["op"], body.value("value", json(true)), event->data);
        if (!latest || key > *latest) {
          latest = key;
          holds = here;
        } else if (key == *latest) {
          holds = holds || here;
        }
      }
      return latest && holds;
    }
    ADD_FAILURE() << "unknown node " << node.dump();
    return false;
  }

  const std::map<std::string, std::set<std::string>>& segments_;
  const TimeZone& zone_;
  int64_t as_of_;
  absl::CivilDay as_of_day_;
  std::map<std::string, std::vector<const RefEvent*>> by_user_;
};

// ---- Random rules ------------------------------------------------------------------------------------------------

class RuleGenerator {
 public:
  RuleGenerator(uint64_t seed, std::vector<int64_t> times) : rng_(seed), times_(std::move(times)) {}

  json Node(int depth) {
    const uint64_t pick = rng_() % 100;
    if (depth < 4 && pick < 28) {
      json children = json::array();
      const uint64_t count = 1 + rng_() % 3;
      for (uint64_t child = 0; child < count; ++child) children.push_back(Node(depth + 1));
      return {{pick < 14 ? "and" : "or", children}};
    }
    if (depth < 4 && pick < 38) return {{"not", Node(depth + 1)}};
    return Leaf();
  }

  json Leaf() {
    switch (rng_() % 9) {
      case 0:
      case 1: {
        json body = Match();
        if (rng_() % 4 != 0) {
          static const char* kOps[] = {"gte", "gt", "lte", "lt", "eq"};
          body["count"] = {{kOps[rng_() % 5], static_cast<int>(rng_() % 5)}};
        }
        Window(body);
        return {{"performed", body}};
      }
      case 2: {
        json body = Match();
        Window(body);
        return {{"not_performed", body}};
      }
      case 3:
      case 4: {
        json body = Match();
        Range(body);
        return {{rng_() % 2 ? "first_performed" : "last_performed", body}};
      }
      case 5:
      case 6: {
        json body = Match();
        static const char* kFunctions[] = {"sum", "avg", "min", "max", "count"};
        static const char* kOps[] = {"gte", "gt", "lte", "lt", "eq"};
        const std::string function = kFunctions[rng_() % 5];
        const bool amount = rng_() % 2 == 0;
        body["property"] = amount ? "amount" : "level";
        body["function"] = function;
        static const double kAmounts[] = {0, 10, 50.5, 100, 149.75, 250.25, 600};
        static const double kLevels[] = {1, 5, 7, 10, 20, 30.5, 40};
        static const double kCounts[] = {1, 2, 3, 5};
        const double bound =
            function == "count" ? kCounts[rng_() % 4] : amount ? kAmounts[rng_() % 7] : kLevels[rng_() % 7];
        body[kOps[rng_() % 5]] = bound;
        Window(body);
        return {{"aggregate", body}};
      }
      case 7: {
        static const json kConditions[] = {
            {{"property", "tier"}, {"op", "eq"}, {"value", "gold"}},
            {{"property", "tier"}, {"op", "eq"}, {"value", 1}},
            {{"property", "tier"}, {"op", "eq"}, {"value", "1"}},
            {{"property", "tier"}, {"op", "eq"}, {"value", true}},
            {{"property", "tier"}, {"op", "in"}, {"value", {"gold", "silver"}}},
            {{"property", "tier"}, {"op", "ne"}, {"value", "gold"}},
            {{"property", "tier"}, {"op", "nin"}, {"value", {"gold", 1}}},
            {{"property", "tier"}, {"op", "gt"}, {"value", "c"}},
            {{"property", "tier"}, {"op", "exists"}},
            {{"property", "tier"}, {"op", "contains"}, {"value", "ol"}},
            {{"property", "level"}, {"op", "gte"}, {"value", 20}},
            {{"property", "level"}, {"op", "lt"}, {"value", 5}},
            {{"property", "level"}, {"op", "eq"}, {"value", "7"}},
            {{"property", "platform"}, {"op", "eq"}, {"value", "ios"}},
            {{"property", "game_id"}, {"op", "in"}, {"value", {"g0", "g1"}}},
            {{"property", "amount"}, {"op", "gt"}, {"value", 100}},
            {{"property", "profile.plan"}, {"op", "eq"}, {"value", "pro"}},
        };
        return {{"user_property", kConditions[rng_() % std::size(kConditions)]}};
      }
      default:
        return {{"in_segment", rng_() % 2 ? "vip" : "churned"}};
    }
  }

  int64_t Time() { return times_[rng_() % times_.size()]; }

 private:
  json Match() {
    json body = json::object();
    static const std::string* kTypes[] = {&kView, &kPurchase, &kSession, &kRegistered};
    const uint64_t type = rng_() % 12;
    if (type < 10) body["event_type"] = *kTypes[type % 4];
    else if (type == 10) body["event_type"] = nullptr;
    if (rng_() % 2 == 0) {
      static const json kFilters[] = {
          {{"property", "game_id"}, {"op", "eq"}, {"value", "g1"}},
          {{"property", "game_id"}, {"op", "in"}, {"value", {"g0", "g2"}}},
          {{"property", "platform"}, {"op", "ne"}, {"value", "linux"}},
          {{"property", "amount"}, {"op", "gt"}, {"value", 50}},
          {{"property", "level"}, {"op", "gte"}, {"value", 10}},
          {{"property", "tags"}, {"op", "contains"}, {"value", "a"}},
          {{"property", "tier"}, {"op", "exists"}, {"value", false}},
          json::array({{{"property", "game_id"}, {"op", "nin"}, {"value", {"g3"}}},
                       {{"property", "level"}, {"op", "lt"}, {"value", 30}}}),
          {{"or", {{{"property", "platform"}, {"op", "eq"}, {"value", "ios"}},
                   {{"property", "amount"}, {"op", "lte"}, {"value", 20}}}}},
      };
      body["filters"] = kFilters[rng_() % std::size(kFilters)];
    }
    return body;
  }

  void Window(json& body) {
    const uint64_t pick = rng_() % 10;
    if (pick < 3) return;
    if (pick < 7) {
      static const int kDays[] = {1, 2, 3, 7, 10, 30, 400};
      body["within_days"] = kDays[rng_() % 7];
      return;
    }
    body["between"] = Between();
  }
  void Range(json& body) {
    switch (rng_() % 4) {
      case 0: body["before"] = Text(Time()); break;
      case 1: body["after"] = Text(Time()); break;
      case 2: {
        static const int kDays[] = {1, 2, 7, 30, 400};
        body["within_days"] = kDays[rng_() % 5];
        break;
      }
      default: body["between"] = Between();
    }
  }
  json Between() {
    int64_t from = Time(), to = Time();
    if (from > to) std::swap(from, to);
    if (from == to) ++to;
    return {{"from", Text(from)}, {"to", Text(to)}};
  }

  std::mt19937_64 rng_;
  std::vector<int64_t> times_;
};

// ---- Evaluation over a hand-made random store -------------------------------------------------------------------

StoredEvent MakeEvent(uint64_t id, const std::string& user, int64_t time, const std::string& type, const json& data) {
  StoredEvent event;
  event.id = std::to_string(id);
  event.id.insert(0, 1, 'e');
  event.source = "/test";
  event.type = type;
  event.time_ms = time;
  event.received_ms = time;
  event.user = user;
  event.user_in_subject = true;
  // The well-known fields are typed columns too (docs/events.md section 4).
  if (data.contains("game_id")) event.game_id = data["game_id"];
  if (data.contains("platform")) event.platform = data["platform"];
  if (data.contains("amount")) {
    event.amount = data["amount"].get<double>();
    event.currency = data["currency"];
  }
  event.data = data.dump();
  return event;
}

// "" when equal, else the users only in `got` and only in `expected` (a few of each).
std::string Difference(const std::set<std::string>& got, const std::set<std::string>& expected) {
  std::string out;
  auto list = [&](const std::set<std::string>& a, const std::set<std::string>& b, const char* label) {
    std::vector<std::string> only;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only));
    if (only.empty()) return;
    out += std::string(label) + " (" + std::to_string(only.size()) + "):";
    for (size_t idx = 0; idx < std::min<size_t>(only.size(), 5); ++idx) out += " " + only[idx];
    out += "\n";
  };
  list(got, expected, "unexpected");
  list(expected, got, "missing");
  return out;
}

std::vector<std::string> Names(store::EventStore& store, const Roaring& ids) {
  std::vector<uint32_t> list(ids.cardinality());
  ids.toUint32Array(list.data());
  auto names = store.UserNames(list);
  EXPECT_TRUE(names.ok()) << names.status().ToString();
  return names.ok() ? *names : std::vector<std::string>();
}

std::shared_ptr<const Roaring> IdsOf(store::EventStore& store, const std::set<std::string>& names) {
  auto ids = store.UserIds({names.begin(), names.end()});
  EXPECT_TRUE(ids.ok());
  auto bitmap = std::make_shared<Roaring>();
  for (uint32_t id : *ids) bitmap->add(id);
  return bitmap;
}

class SegmentRulesEvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto opened = store::EmbeddedEventStore::Open(TestStoreOptions(*dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = opened->release();
    raw_ = new std::vector<RefEvent>();
    times_ = new std::vector<int64_t>();
    segments_ = new std::map<std::string, std::set<std::string>>();
    Fill();
  }
  static void TearDownTestSuite() {
    delete store_;
    delete dir_;
    delete raw_;
    delete times_;
    delete segments_;
  }

  // Local midnights of the DST days of both zones (and their neighbours) and of a few plain days.
  static std::vector<int64_t> Midnights() {
    std::vector<int64_t> out;
    const TimeZone berlin = TimeZone::Load("Europe/Berlin").value();
    const TimeZone santiago = TimeZone::Load("America/Santiago").value();
    for (const TimeZone* zone : {&berlin, &santiago}) {
      for (const auto& [month, day] : std::vector<std::pair<int, int>>{
               {3, 24}, {3, 30}, {3, 31}, {4, 1}, {4, 5}, {4, 6}, {4, 7}, {4, 8}, {9, 6}, {9, 7}, {9, 8}, {9, 9}}) {
        out.push_back(zone->StartOfDay(2024, month, day));
      }
    }
    out.push_back(Ms("2024-04-01T00:00:00Z"));
    out.push_back(Ms("2024-09-08T00:00:00Z"));
    return out;
  }

  // ~6000 events of 120 users: most in 2024-03-20..04-12 (Berlin's and Santiago's spring DST changes), some in
  // 2024-09-03..09-12 (Santiago's September change skips midnight) and in 2023-11; a third at local midnights +-1 ms,
  // some repeating an earlier timestamp (often the same user and type, with another value of `tier`). Appended in
  // three parts with two flushes between: segments of several days, then the memtable.
  static void Fill() {
    std::mt19937_64 rng(20240331);
    const std::vector<int64_t> midnights = Midnights();
    const std::pair<int64_t, int64_t> ranges[] = {{Ms("2024-03-20T00:00:00Z"), Ms("2024-04-12T00:00:00Z")},
                                                  {Ms("2024-09-03T00:00:00Z"), Ms("2024-09-12T00:00:00Z")},
                                                  {Ms("2023-11-01T00:00:00Z"), Ms("2023-12-01T00:00:00Z")}};
    const std::string* types[] = {&kView, &kView, &kPurchase, &kSession, &kSession, &kRegistered};
    const json tiers[] = {"gold", "silver", "bronze", "1", 1, true, "true", nullptr};
    const char* platforms[] = {"windows", "linux", "ios"};
    std::vector<StoredEvent> events;
    const size_t total = 6000;
    for (size_t event_idx = 0; event_idx < total; ++event_idx) {
      const uint64_t kind = rng() % 100;
      // A few heavy users, many light ones.
      std::string user = "user" + std::to_string(rng() % 4 == 0 ? rng() % 12 : rng() % 120);
      std::string type = *types[rng() % std::size(types)];
      int64_t time = 0;
      if (kind < 55 || events.empty()) {
        const uint64_t which = rng() % 10;
        const auto& [from, to] = ranges[which < 7 ? 0 : which < 9 ? 1 : 2];
        time = from + static_cast<int64_t>(rng() % static_cast<uint64_t>(to - from));
      } else if (kind < 85) {
        time = midnights[rng() % midnights.size()] + static_cast<int64_t>(rng() % 3) - 1;
      } else {
        const StoredEvent& earlier = events[rng() % events.size()];
        time = earlier.time_ms;
        if (rng() % 2 == 0) {
          user = earlier.user;
          type = earlier.type;
        }
      }
      json data = json::object();
      if (rng() % 10 != 0) data["game_id"] = "g" + std::to_string(rng() % 4);
      if (rng() % 5 != 0) data["platform"] = platforms[rng() % 3];
      if (type == kPurchase && rng() % 10 != 0) {
        data["amount"] = static_cast<double>(rng() % 1200) * 0.25;  // exact binary fractions: sums in any order agree
        data["currency"] = "RUB";
      }
      const uint64_t level = rng() % 20;
      if (level < 12) data["level"] = 1 + static_cast<int>(rng() % 40);
      else if (level < 14) data["level"] = "7";
      else if (level < 15) data["level"] = nullptr;
      if (rng() % 3 == 0) data["tier"] = tiers[rng() % std::size(tiers)];
      if (rng() % 10 == 0) data["tags"] = rng() % 2 ? json({"a", "b"}) : json({"c"});
      if (rng() % 15 == 0) data["profile"] = {{"plan", rng() % 2 ? "pro" : "free"}};
      events.push_back(MakeEvent(event_idx, user, time, type, data));
      times_->push_back(time);
    }
    const size_t parts[] = {0, total * 2 / 5, total * 7 / 10, total};
    for (size_t part = 0; part < 3; ++part) {
      std::vector<StoredEvent> batch(events.begin() + static_cast<std::ptrdiff_t>(parts[part]),
                                     events.begin() + static_cast<std::ptrdiff_t>(parts[part + 1]));
      auto stored = store_->Append(batch);
      ASSERT_TRUE(stored.ok()) << stored.status().ToString();
      ASSERT_EQ(stored->stored, batch.size());
      if (part < 2) ASSERT_OK(store_->Flush());
    }
    // An erased user: never read again.
    ASSERT_OK(store_->EraseUser("user7"));
    for (const StoredEvent& event : events) {
      if (event.user != "user7") raw_->push_back(ToRef(events::EventView::Of(event)));
    }
    // Segments for in_segment: random users, plus the erased one and one without events ("ghost").
    for (const char* id : {"vip", "churned"}) {
      std::set<std::string>& members = (*segments_)[id];
      for (int member = 0; member < 30; ++member) members.insert("user" + std::to_string(rng() % 130));
    }
    (*segments_)["vip"].insert("user7");
    (*segments_)["vip"].insert("ghost");
  }

  static std::vector<int64_t> AsOfCandidates() {
    std::vector<int64_t> out;
    for (int64_t midnight : Midnights()) {
      for (int64_t delta : {-1, 0, 1}) out.push_back(midnight + delta);
    }
    return out;
  }

  EvalContext Context(const TimeZone& zone, int64_t as_of, size_t threads) const {
    EvalContext ctx;
    ctx.as_of_ms = as_of;
    ctx.zone = zone;
    ctx.threads = threads;
    if (threads > 1) {  // work items of 7 users and a thread per 8 users or rows: the parallel walk on small data
      ctx.users_per_chunk = 7;
      ctx.work_per_thread = 8;
    }
    ctx.segment_members = [](const std::string& id) -> common::Result<std::shared_ptr<const Roaring>> {
      auto it = segments_->find(id);
      if (it == segments_->end()) return common::Status::NotFound("segment '" + id + "' does not exist");
      return IdsOf(*store_, it->second);
    };
    return ctx;
  }

  // Evaluates `rule` with 1 and 4 threads and compares both with the reference (restricted to `scope` when given).
  void Check(const json& rule, const TimeZone& zone, int64_t as_of, const std::set<std::string>* scope,
             EvalStats* stats = nullptr) {
    auto parsed = ParseRule(rule);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << " " << rule.dump();
    std::set<std::string> expected = Reference(*raw_, *segments_, zone, as_of).Users(rule);
    std::optional<query::UserScope> user_scope;
    if (scope) {
      std::set<std::string> kept;
      std::set_intersection(expected.begin(), expected.end(), scope->begin(), scope->end(),
                            std::inserter(kept, kept.end()));
      expected = std::move(kept);
      user_scope = query::UserScope{"test-scope-" + std::to_string(checked_), IdsOf(*store_, *scope)};
    }
    // 120 users have events: an answer of 1..99 users is neither nothing nor (about) everyone.
    partial_answers_ += !expected.empty() && expected.size() < 100;
    std::optional<Roaring> first;
    for (size_t threads : {1, 4}) {
      EvalContext ctx = Context(zone, as_of, threads);
      ctx.scope = user_scope;
      EvalStats counted;
      auto users = EvaluateRule(*parsed, *store_, ctx, &counted);
      ASSERT_TRUE(users.ok()) << users.status().ToString() << " " << rule.dump();
      if (stats != nullptr) *stats = counted;
      timelines_by_runs_ += counted.counted_by_runs;
      timelines_by_rows_ += counted.timelines - counted.counted_by_runs;
      const std::vector<std::string> names = Names(*store_, *users);
      const std::set<std::string> got(names.begin(), names.end());
      EXPECT_EQ(Difference(got, expected), "") << rule.dump() << "\nzone " << zone.name() << " as_of "
                                               << Text(as_of) << " threads " << threads << (scope ? " scoped" : "");
      if (first) {
        EXPECT_TRUE(*first == *users) << "differs by thread count: " << rule.dump();
      }
      first = *users;
    }
    ++checked_;
  }

  static inline TempDir* dir_ = nullptr;
  static inline store::EmbeddedEventStore* store_ = nullptr;
  static inline std::vector<RefEvent>* raw_ = nullptr;
  static inline std::vector<int64_t>* times_ = nullptr;
  static inline std::map<std::string, std::set<std::string>>* segments_ = nullptr;
  int checked_ = 0;
  int partial_answers_ = 0;
  size_t timelines_by_runs_ = 0;  // timelines whose counts came from the users' runs of rows
  size_t timelines_by_rows_ = 0;  // walked row by row
};

TEST_F(SegmentRulesEvalTest, RandomRulesMatchTheReference) {
  const TimeZone zones[] = {TimeZone::Load("Europe/Berlin").value(), TimeZone::Load("America/Santiago").value(),
                            TimeZone::Utc()};
  std::vector<int64_t> rule_times = *times_;
  for (int64_t edge : AsOfCandidates()) rule_times.push_back(edge);
  RuleGenerator generator(7, rule_times);
  const std::vector<int64_t> edges = AsOfCandidates();
  std::mt19937_64 rng(99);
  std::vector<std::string> users;
  for (int user = 0; user < 125; ++user) users.push_back("user" + std::to_string(user));
  size_t negated_tops = 0;
  for (int case_idx = 0; case_idx < 240; ++case_idx) {
    const TimeZone& zone = zones[case_idx % 3];
    int64_t as_of = 0;
    switch (rng() % 5) {
      case 0:
      case 1: as_of = edges[rng() % edges.size()]; break;
      case 2: as_of = (*times_)[rng() % times_->size()] + static_cast<int64_t>(rng() % 3) - 1; break;  // equal times
      case 3: as_of = Ms("2024-04-12T00:00:00Z") + static_cast<int64_t>(rng() % (200LL * 86400000)); break;
      default: as_of = rng() % 4 == 0 ? Ms("2025-06-01T00:00:00Z") : Ms("2024-03-27T15:00:00Z"); break;
    }
    json rule = generator.Node(1);
    if (case_idx % 6 == 0) rule = {{"not", rule}};
    if (case_idx % 7 == 0) {  // the performance example's shape
      rule = {{"and", {Performed({{"event_type", kPurchase}, {"count", {{"gte", 2}}}, {"within_days", 30}}),
                       {{"not_performed", {{"event_type", kSession}, {"within_days", 7}}}}}}};
    }
    negated_tops += rule.contains("not") ? 1 : 0;
    std::optional<std::set<std::string>> scope;
    if (case_idx % 5 == 0) {
      scope.emplace();
      for (const std::string& user : users) {
        if (rng() % 2 == 0) scope->insert(user);
      }
      scope->insert("ghost");
    }
    Check(rule, zone, as_of, scope ? &*scope : nullptr);
    if (HasFatalFailure() || HasFailure()) return;
  }
  EXPECT_EQ(checked_, 240);
  EXPECT_GT(negated_tops, 30u);
  EXPECT_GT(partial_answers_, 120) << "the random rules should mostly select some users, not none or all";
  // Both ways of evaluating a timeline are compared with the reference many times.
  EXPECT_GT(timelines_by_runs_, 150u);
  EXPECT_GT(timelines_by_rows_, 150u);
}

TEST_F(SegmentRulesEvalTest, WithinDaysStartsAtTheZonesLocalMidnight) {
  const TimeZone berlin = TimeZone::Load("Europe/Berlin").value();
  const TimeZone santiago = TimeZone::Load("America/Santiago").value();
  // Berlin, 2024-03-31 (23 hours): the day starts at 2024-03-30T23:00Z; Santiago, 2024-09-08: midnight is skipped,
  // the day starts at 01:00 -03 (04:00Z); 2024-04-07 (25 hours) starts at 00:00 -04 (04:00Z).
  EXPECT_EQ(berlin.StartOfDay(2024, 3, 31), Ms("2024-03-30T23:00:00Z"));
  EXPECT_EQ(santiago.StartOfDay(2024, 9, 8), Ms("2024-09-08T04:00:00Z"));
  EXPECT_EQ(santiago.StartOfDay(2024, 4, 7), Ms("2024-04-07T04:00:00Z"));
  for (const auto& [zone, day_start] :
       std::vector<std::pair<const TimeZone*, int64_t>>{{&berlin, Ms("2024-03-30T23:00:00Z")},
                                                        {&santiago, Ms("2024-09-08T04:00:00Z")},
                                                        {&santiago, Ms("2024-04-07T04:00:00Z")}}) {
    for (int days : {1, 2, 8}) {
      for (const std::string* type : {&kView, &kSession, &kPurchase}) {
        const json rule = Performed({{"event_type", *type}, {"within_days", days}});
        for (int64_t as_of : {day_start - 1, day_start, day_start + 1, day_start + 86400000 - 1}) {
          Check(rule, *zone, as_of, nullptr);
          Check({{"not", rule}}, *zone, as_of, nullptr);
        }
      }
    }
  }
}

TEST_F(SegmentRulesEvalTest, InSegmentUsesTheCallbackAndPropagatesItsErrors) {
  const TimeZone utc = TimeZone::Utc();
  const int64_t as_of = Ms("2024-04-10T00:00:00Z");
  // Members without events (ghost) and erased users (user7) are members; "not" keeps users with events only.
  Check({{"in_segment", "vip"}}, utc, as_of, nullptr);
  Check({{"not", {{"in_segment", "vip"}}}}, utc, as_of, nullptr);
  Check({{"or", {{{"in_segment", "vip"}}, {{"not_performed", {{"event_type", kPurchase}}}}}}}, utc, as_of, nullptr);
  const std::set<std::string> scope = {"ghost", "user1", "user2", "user7"};
  Check({{"and", {{{"in_segment", "vip"}}, {{"not", {{"in_segment", "churned"}}}}}}}, utc, as_of, &scope);
  auto unknown = ParseRule({{"and", {Performed({{"event_type", kView}}), {{"in_segment", "nope"}}}}});
  ASSERT_OK(unknown);
  auto answer = EvaluateRule(*unknown, *store_, Context(utc, as_of, 2));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), common::StatusCode::kNotFound);
  EXPECT_EQ(answer.status().message(), "segment 'nope' does not exist");
  EvalContext without = Context(utc, as_of, 2);
  without.segment_members = nullptr;
  answer = EvaluateRule(*unknown, *store_, without);
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(SegmentRulesEvalTest, ReadsOneTimelinePerNumberPropertyAndSplitsSelectors) {
  const TimeZone utc = TimeZone::Utc();
  const int64_t as_of = Ms("2024-04-10T12:00:00Z");
  EvalStats stats;
  // Conditions share a timeline when they start reading at the same time: the 30-day purchases, the 7-day
  // sessions, and the all-time first registration with the user property.
  Check({{"and",
          {Performed({{"event_type", kPurchase}, {"count", {{"gte", 2}}}, {"within_days", 30}}),
           {{"not_performed", {{"event_type", kSession}, {"within_days", 7}}}},
           {{"or", {{{"first_performed", {{"event_type", kRegistered}, {"before", "2024-04-01T00:00:00Z"}}}},
                    {{"user_property", {{"property", "tier"}, {"op", "ne"}, {"value", "gold"}}}}}}}}}},
        utc, as_of, nullptr, &stats);
  EXPECT_EQ(stats.timelines, 3u);
  EXPECT_GT(stats.rows, 0u);
  EXPECT_GT(stats.users_scanned, 0u);
  // Two number properties: two timelines, the all-time count riding on the all-time sum's.
  Check({{"or",
          {{{"aggregate", {{"event_type", kPurchase}, {"property", "amount"}, {"function", "sum"}, {"gte", 300}}}},
           {{"aggregate", {{"property", "level"}, {"function", "max"}, {"gt", 35}, {"within_days", 10}}}},
           Performed({{"event_type", kView}, {"count", {{"lt", 3}}}})}}},
        utc, as_of, nullptr, &stats);
  EXPECT_EQ(stats.timelines, 2u);
  // 40 distinct selectors: more than one timeline holds.
  json many = json::array();
  for (int level = 1; level <= 40; ++level) {
    many.push_back(Performed({{"filters", {{"property", "level"}, {"op", "eq"}, {"value", level}}},
                              {"count", {{level % 2 ? "gte" : "lte", 1 + level % 3}}}}));
  }
  Check({{"or", json::array({{{"and", json(std::vector<json>(many.begin(), many.begin() + 20))}},
                             {{"and", json(std::vector<json>(many.begin() + 20, many.end()))}}})}},
        utc, as_of, nullptr, &stats);
  EXPECT_EQ(stats.timelines, 2u);
  // Only in_segment: no timeline at all.
  Check({{"in_segment", "churned"}}, utc, as_of, nullptr, &stats);
  EXPECT_EQ(stats.timelines, 0u);
}

// ---- Hand-made events: the documented edge cases one by one ------------------------------------------------------

class SegmentRulesHandMadeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::EmbeddedEventStore::Open(TestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  void Add(const std::string& user, const std::string& time, const std::string& type, const json& data) {
    events_.push_back(MakeEvent(next_id_++, user, Ms(time), type, data));
  }
  void Store(bool flush) {
    auto stored = store_->Append(events_);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    ASSERT_EQ(stored->stored, events_.size());
    events_.clear();
    if (flush) ASSERT_OK(store_->Flush());
  }

  std::set<std::string> Members(const json& rule, const std::string& as_of, const TimeZone& zone = TimeZone::Utc()) {
    auto parsed = ParseRule(rule);
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    if (!parsed.ok()) return {};
    EvalContext ctx;
    ctx.as_of_ms = Ms(as_of);
    ctx.zone = zone;
    auto users = EvaluateRule(*parsed, *store_, ctx);
    EXPECT_TRUE(users.ok()) << users.status().ToString();
    if (!users.ok()) return {};
    const std::vector<std::string> names = Names(*store_, *users);
    return {names.begin(), names.end()};
  }

  TempDir dir_;
  std::unique_ptr<store::EmbeddedEventStore> store_;
  std::vector<StoredEvent> events_;  // not appended yet
  uint64_t next_id_ = 0;
};

using Users = std::set<std::string>;  // expected members

TEST_F(SegmentRulesHandMadeTest, AsOfIsInclusiveToTheMillisecond) {
  Add("a", "2024-05-01T10:00:00.000Z", kPurchase, json::object());
  Add("b", "2024-05-01T10:00:00.001Z", kPurchase, json::object());
  Store(true);
  const json bought = Performed({{"event_type", kPurchase}});
  EXPECT_EQ(Members(bought, "2024-05-01T09:59:59.999Z"), Users());
  EXPECT_EQ(Members(bought, "2024-05-01T10:00:00.000Z"), Users({"a"}));
  EXPECT_EQ(Members(bought, "2024-05-01T10:00:00.001Z"), Users({"a", "b"}));
  // The universe of a negated answer is cut at as_of too: b has no event yet.
  EXPECT_EQ(Members({{"not", Performed({{"event_type", kView}})}}, "2024-05-01T10:00:00.000Z"), Users({"a"}));
}

TEST_F(SegmentRulesHandMadeTest, CountsWithZeroAllowedIncludeUsersWithoutMatchingEvents) {
  Add("a", "2024-05-01T10:00:00Z", kPurchase, json::object());
  Add("a", "2024-05-02T10:00:00Z", kPurchase, json::object());
  Add("b", "2024-05-02T10:00:00Z", kPurchase, json::object());
  Add("c", "2024-05-02T10:00:00Z", kView, json::object());
  Store(false);  // the memtable only
  const std::string as_of = "2024-05-03T00:00:00Z";
  EXPECT_EQ(Members(Performed({{"event_type", kPurchase}, {"count", {{"lte", 1}}}}), as_of), Users({"b", "c"}));
  EXPECT_EQ(Members(Performed({{"event_type", kPurchase}, {"count", {{"eq", 0}}}}), as_of), Users({"c"}));
  EXPECT_EQ(Members(Performed({{"event_type", kPurchase}, {"count", {{"gte", 0}}}}), as_of), Users({"a", "b", "c"}));
  EXPECT_EQ(Members(Performed({{"event_type", kPurchase}, {"count", {{"gt", 1}}}}), as_of), Users({"a"}));
  EXPECT_EQ(Members({{"not_performed", {{"event_type", kPurchase}, {"within_days", 1}}}}, "2024-05-01T23:00:00Z"),
            Users({}));  // b and c have no event yet, a bought that day
  EXPECT_EQ(Members({{"not_performed", {{"event_type", kPurchase}, {"within_days", 1}}}}, as_of),
            Users({"a", "b", "c"}));
}

TEST_F(SegmentRulesHandMadeTest, UserPropertyTakesTheLatestValueAndTiesHoldWhenOneHolds) {
  Add("a", "2024-05-01T10:00:00Z", kView, {{"tier", "gold"}});
  Add("a", "2024-05-02T10:00:00Z", kView, {{"tier", "silver"}});
  Add("a", "2024-05-03T10:00:00Z", kView, {{"tier", nullptr}});  // null: not a value
  Add("b", "2024-05-01T10:00:00Z", kView, {{"tier", "1"}});
  Add("b", "2024-05-01T10:00:00Z", kView, {{"tier", 1}});  // the same time, type and text "1"
  // The same time, two types: the greater type name is the later row (store.page.viewed > payments...).
  Add("c", "2024-05-01T10:00:00Z", kView, {{"tier", "bronze"}});
  Add("c", "2024-05-01T10:00:00Z", kPurchase, {{"tier", "gold"}});
  Add("d", "2024-05-01T10:00:00Z", kView, {{"level", 3}});
  Store(true);
  Add("a", "2024-05-04T10:00:00Z", kSession, {{"level", 9}});
  Store(false);
  const std::string as_of = "2024-06-01T00:00:00Z";
  auto tier = [](const std::string& op, const json& value) {
    return json{{"user_property", {{"property", "tier"}, {"op", op}, {"value", value}}}};
  };
  EXPECT_EQ(Members(tier("eq", "silver"), as_of), Users({"a"}));
  EXPECT_EQ(Members(tier("eq", "gold"), as_of), Users());
  EXPECT_EQ(Members(tier("eq", "gold"), "2024-05-01T12:00:00Z"), Users({"a"}));
  EXPECT_EQ(Members(tier("eq", 1), as_of), Users({"b"}));
  EXPECT_EQ(Members(tier("eq", "1"), as_of), Users({"b"}));
  // Both at once: whichever of b's two rows the timeline puts last, each condition holds on one of them.
  EXPECT_EQ(Members({{"and", {tier("eq", 1), tier("eq", "1")}}}, as_of), Users({"b"}));
  EXPECT_EQ(Members({{"and", {tier("eq", "1"), tier("eq", 1)}}}, as_of), Users({"b"}));
  EXPECT_EQ(Members(tier("eq", "bronze"), as_of), Users({"c"}));
  EXPECT_EQ(Members(tier("ne", "silver"), as_of), Users({"b", "c"}));  // d has no tier: false
  EXPECT_EQ(Members({{"user_property", {{"property", "tier"}, {"op", "exists"}}}}, as_of), Users({"a", "b", "c"}));
  EXPECT_EQ(Members({{"not", {{"user_property", {{"property", "tier"}, {"op", "exists"}}}}}}, as_of), Users({"d"}));
  EXPECT_EQ(Members({{"user_property", {{"property", "level"}, {"op", "gt"}, {"value", 5}}}}, as_of), Users({"a"}));
}

TEST_F(SegmentRulesHandMadeTest, FirstAndLastPerformedLookAtTheWholeHistory) {
  Add("a", "2024-01-10T10:00:00Z", kPurchase, json::object());
  Add("a", "2024-05-10T10:00:00Z", kPurchase, json::object());
  Add("b", "2024-05-09T10:00:00Z", kPurchase, json::object());
  Add("c", "2024-05-20T10:00:00Z", kPurchase, json::object());  // after as_of
  Store(true);
  const std::string as_of = "2024-05-15T00:00:00Z";
  EXPECT_EQ(Members({{"first_performed", {{"event_type", kPurchase}, {"within_days", 30}}}}, as_of), Users({"b"}));
  EXPECT_EQ(Members({{"last_performed", {{"event_type", kPurchase}, {"within_days", 30}}}}, as_of), Users({"a", "b"}));
  EXPECT_EQ(Members({{"last_performed", {{"event_type", kPurchase}, {"before", "2024-05-10T00:00:00Z"}}}}, as_of),
            Users({"b"}));
  EXPECT_EQ(Members({{"first_performed", {{"event_type", kPurchase}, {"after", "2024-05-09T10:00:00Z"}}}}, as_of),
            Users({"b"}));
  EXPECT_EQ(Members({{"first_performed",
                    {{"event_type", kPurchase},
                     {"between", {{"from", "2024-01-10T10:00:00Z"}, {"to", "2024-05-09T10:00:00Z"}}}}}},
                  as_of),
            Users({"a"}));  // to is exclusive
}

TEST_F(SegmentRulesHandMadeTest, AggregatesSkipNonNumbersAndUsersWithoutValues) {
  Add("a", "2024-05-01T10:00:00Z", kPurchase, {{"amount", 100.0}, {"currency", "RUB"}});
  Add("a", "2024-05-02T10:00:00Z", kPurchase, {{"amount", 50.0}, {"currency", "RUB"}});
  Add("b", "2024-05-02T10:00:00Z", kPurchase, {{"level", "7"}});
  Add("b", "2024-05-03T10:00:00Z", kPurchase, {{"level", 7}});
  Add("c", "2024-05-03T10:00:00Z", kPurchase, json::object());
  Store(true);
  const std::string as_of = "2024-05-10T00:00:00Z";
  auto aggregate = [](const std::string& property, const std::string& function, const std::string& op, double bound) {
    return json{{"aggregate", {{"property", property}, {"function", function}, {op, bound}}}};
  };
  EXPECT_EQ(Members(aggregate("amount", "sum", "eq", 150), as_of), Users({"a"}));
  EXPECT_EQ(Members(aggregate("amount", "avg", "eq", 75), as_of), Users({"a"}));
  EXPECT_EQ(Members(aggregate("amount", "min", "lt", 60), as_of), Users({"a"}));
  EXPECT_EQ(Members(aggregate("amount", "max", "lte", 100), as_of), Users({"a"}));
  EXPECT_EQ(Members(aggregate("amount", "sum", "lt", 1), as_of), Users());  // b, c: no value, not 0
  EXPECT_EQ(Members(aggregate("level", "count", "eq", 1), as_of), Users({"b"}));  // the string "7" is no number
  EXPECT_EQ(Members({{"aggregate", {{"property", "amount"}, {"function", "sum"}, {"gte", 100}, {"within_days", 8}}}},
                  as_of),
            Users());  // 2024-05-03 .. 05-10: none of a's purchases
}

// ---- Evaluation over the generator's events ---------------------------------------------------------------------

class SegmentRulesGeneratedTest : public GeneratedStoreSuite<RefEvent> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 700;
    options.generator.days = 35;
    options.generator.seed = 6;
    options.generator.start_date = "2024-03-10";
    options.pseudonymizer_key = 's';
    options.flush_every_batches = 20;
    options.flush_while_fewer_than = 60000;
    Load(options, ToRef);
  }
};

TEST_F(SegmentRulesGeneratedTest, PurchaseAndSessionRulesMatchTheReference) {
  const TimeZone berlin = TimeZone::Load("Europe/Berlin").value();
  const std::map<std::string, std::set<std::string>> no_segments;
  const std::vector<json> rules = {
      {{"and", {Performed({{"event_type", kPurchase}, {"count", {{"gte", 2}}}, {"within_days", 30}}),
                {{"not_performed", {{"event_type", kSession}, {"within_days", 7}}}}}}},
      {{"not", Performed({{"event_type", kPurchase}, {"within_days", 14}})}},
      {{"aggregate", {{"event_type", kPurchase}, {"property", "amount"}, {"function", "sum"}, {"gte", 1000.5},
                      {"within_days", 30}}}},
      {{"aggregate", {{"event_type", kPurchase}, {"property", "amount"}, {"function", "max"}, {"lt", 500}}}},
      {{"and", {{{"user_property", {{"property", "country"}, {"op", "in"}, {"value", {"KZ", "BY"}}}}},
                {{"first_performed", {{"event_type", kRegistered}, {"within_days", 10}}}}}}},
      {{"or", {{{"user_property", {{"property", "platform"}, {"op", "eq"}, {"value", "steamdeck"}}}},
               {{"last_performed", {{"event_type", kSession}, {"before", "2024-04-01T00:00:00+02:00"}}}}}}},
      {{"performed", {{"event_type", "com.platform.store.page.viewed.v1"},
                      {"filters", {{"property", "page_type"}, {"op", "eq"}, {"value", "sale"}}},
                      {"count", {{"lte", 2}}},
                      {"between", {{"from", "2024-03-25T00:00:00+01:00"}, {"to", "2024-04-02T00:00:00+02:00"}}}}}},
  };
  // as_of: local midnights around Berlin's DST change +-1 ms, and the end of the data.
  const std::vector<int64_t> as_ofs = {berlin.StartOfDay(2024, 3, 31) - 1, berlin.StartOfDay(2024, 4, 1),
                                       berlin.StartOfDay(2024, 4, 8) + 1, Ms("2024-04-14T23:59:59.999Z")};
  size_t checked = 0;
  for (const json& rule : rules) {
    ASSERT_OK_AND_ASSIGN(const Rule parsed, ParseRule(rule));
    for (int64_t as_of : as_ofs) {
      const std::set<std::string> expected = Reference(*raw_, no_segments, berlin, as_of).Users(rule);
      for (size_t threads : {1, 4}) {
        EvalContext ctx;
        ctx.as_of_ms = as_of;
        ctx.zone = berlin;
        ctx.threads = threads;
        EvalStats stats;
        ASSERT_OK_AND_ASSIGN(const Roaring users, EvaluateRule(parsed, *store_, ctx, &stats));
        const std::vector<std::string> names = Names(*store_, users);
        EXPECT_EQ(Difference(std::set<std::string>(names.begin(), names.end()), expected), "")
            << rule.dump() << " " << Text(as_of);
        EXPECT_GE(stats.timelines, 1u);  // one per distinct start of the conditions' windows
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, rules.size() * as_ofs.size() * 2);
}

}  // namespace
}  // namespace analytics::testing
