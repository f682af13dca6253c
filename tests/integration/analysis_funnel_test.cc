// Funnel requests (analysis/funnels.h) over a real embedded store, against a reference computed from the raw events
// appended: per user and held value, the events read in the documented order, every attempt found by plain loops,
// exclusions, the best attempt, the user's attempt per step, and medians computed here. Plus hand-made events:
// window and period boundaries, equal timestamps, DST, late events, day partitions, erasure, the developer view
// (game scope, k-anonymity), request errors and DATA_NOT_YET_AVAILABLE. A `segment` restricts the funnel to its
// members (the reference reads only their events); FunnelUsers gives the users behind each step's count.
#include <algorithm>
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

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/funnels.h"
#include "store/embedded/embedded_event_store.h"
#include "support/analysis_run.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using analysis::AnalysisOptions;
using analysis::FunnelUsers;
using analysis::RunFunnels;
using analysis::Viewer;
using events::StoredEvent;
using json = nlohmann::json;
using store::EmbeddedEventStore;

constexpr const char* kPageViewed = "com.platform.store.page.viewed.v1";
constexpr const char* kCartAdded = "com.platform.cart.item.added.v1";
constexpr const char* kCartRemoved = "com.platform.cart.item.removed.v1";
constexpr const char* kCheckout = "com.platform.cart.checkout.started.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr int64_t kHour = 3600000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kMar1 = 1709251200000;  // 2024-03-01T00:00:00Z

// One appended event as the reference sees it.
struct Raw {
  std::string user;
  int64_t time_ms = 0;
  std::string type;
  std::string game_id, country, platform, page_type;  // "" when absent
};
using Predicate = std::function<bool(const Raw&)>;

std::optional<std::string> Prop(const Raw& event, const std::string& name) {
  const std::string* value = name == "game_id"     ? &event.game_id
                             : name == "country"   ? &event.country
                             : name == "platform"  ? &event.platform
                             : name == "page_type" ? &event.page_type
                                                   : nullptr;
  if (value == nullptr || value->empty()) return std::nullopt;
  return *value;
}

Predicate OfType(std::string type, Predicate also = nullptr) {
  return [type = std::move(type), also = std::move(also)](const Raw& event) {
    return event.type == type && (!also || also(event));
  };
}

// --- The reference -------------------------------------------------------------------------------------------

// A funnel question as the reference reads it (the same meaning as the request body it is sent with).
struct Question {
  std::vector<Predicate> steps;
  struct Exclusion {
    Predicate match;
    size_t from = 0, to = 0;
  };
  std::vector<Exclusion> exclusions;
  Predicate filter = [](const Raw&) { return true; };  // request filters and the viewer's scope
  int64_t from_ms = 0, to_ms = 0;
  int64_t window_ms = kDay;
  std::string order = "ordered", entry = "first_touch";
  std::vector<std::string> hold;
  std::optional<std::string> breakdown;
  bool last_step = false;
};

struct RefStep {
  uint64_t users = 0;
  std::vector<int64_t> from_previous, from_first;
  std::set<std::string> user_names;  // the users counted (pseudonyms)
};
struct Expected {
  std::vector<RefStep> total;
  std::map<std::optional<std::string>, std::vector<RefStep>> groups;
};

class Reference {
 public:
  explicit Reference(const Question& question) : q_(question), steps_(question.steps.size()) {}

  Expected Run(const std::vector<Raw>& raw) const {
    std::vector<std::string> keys = q_.hold;
    if (q_.breakdown) keys.push_back(*q_.breakdown);
    std::map<std::string, std::vector<const Raw*>> by_user;
    for (const Raw& event : raw) {
      if (event.user.empty() || event.time_ms < q_.from_ms || event.time_ms >= q_.to_ms || !q_.filter(event)) continue;
      if (Bits(event) == 0) continue;
      by_user[event.user].push_back(&event);
    }
    Expected expected;
    expected.total.resize(steps_);
    for (auto& [user, events] : by_user) {
      // The documented row order: time, type name, key texts (missing last), matched selectors.
      std::sort(events.begin(), events.end(), [&](const Raw* a, const Raw* b) {
        if (a->time_ms != b->time_ms) return a->time_ms < b->time_ms;
        if (a->type != b->type) return a->type < b->type;
        for (const auto& key : keys) {
          auto x = Prop(*a, key), y = Prop(*b, key);
          if (x != y) return x && (!y || *x < *y);
        }
        return Bits(*a) < Bits(*b);
      });
      std::map<std::vector<std::string>, std::vector<const Raw*>> pairs;
      for (const Raw* event : events) {
        std::vector<std::string> held;
        bool missing = false;
        for (const auto& key : q_.hold) {
          auto value = Prop(*event, key);
          missing |= !value;
          held.push_back(value.value_or(""));
        }
        if (!missing) pairs[held].push_back(event);
      }
      std::vector<Outcome> outcomes;
      for (const auto& [held, pair_events] : pairs) {
        Outcome outcome;
        if (Best(pair_events, outcome)) outcomes.push_back(outcome);
      }
      Add(expected.total, outcomes, false, std::nullopt, user);
      std::set<std::optional<std::string>> values;
      for (const auto& outcome : outcomes) values.insert(outcome.value);
      for (const auto& value : values) {
        auto& group = expected.groups[value];
        group.resize(steps_);
        Add(group, outcomes, true, value, user);
      }
    }
    for (auto& step : expected.total) Sort(step);
    for (auto& [value, steps] : expected.groups) {
      for (auto& step : steps) Sort(step);
    }
    return expected;
  }

 private:
  struct Attempt {
    int reached = -1;
    std::vector<int64_t> t;
    std::vector<size_t> event;
  };
  struct Outcome {
    int reached = -1;
    std::vector<int64_t> t;
    std::optional<std::string> value;
  };

  static void Sort(RefStep& step) {
    std::sort(step.from_previous.begin(), step.from_previous.end());
    std::sort(step.from_first.begin(), step.from_first.end());
  }

  uint32_t Bits(const Raw& event) const {
    uint32_t bits = 0;
    for (size_t idx = 0; idx < steps_; ++idx) bits |= q_.steps[idx](event) ? 1u << idx : 0u;
    for (size_t idx = 0; idx < q_.exclusions.size(); ++idx) {
      bits |= q_.exclusions[idx].match(event) ? 1u << (steps_ + idx) : 0u;
    }
    return bits;
  }
  bool AnyStep(const Raw& event) const {
    return std::any_of(q_.steps.begin(), q_.steps.end(), [&](const Predicate& step) { return step(event); });
  }

  Attempt Sequential(const std::vector<const Raw*>& events, size_t start) const {
    Attempt attempt{0, {events[start]->time_ms}, {start}};
    const int64_t deadline = events[start]->time_ms + q_.window_ms;
    for (size_t step = 1; step < steps_; ++step) {
      std::optional<size_t> found;
      for (size_t idx = 0; idx < events.size(); ++idx) {
        const Raw& event = *events[idx];
        if (!q_.steps[step](event) || event.time_ms <= attempt.t.back() || event.time_ms > deadline) continue;
        if (!found || event.time_ms < events[*found]->time_ms) found = idx;
      }
      if (!found) break;
      if (q_.order == "strict") {
        bool interrupted = false;
        for (const Raw* event : events) {
          interrupted |= event->time_ms > attempt.t.back() && event->time_ms < events[*found]->time_ms &&
                         AnyStep(*event) && !q_.steps[step](*event);
        }
        if (interrupted) break;
      }
      attempt.reached = static_cast<int>(step);
      attempt.t.push_back(events[*found]->time_ms);
      attempt.event.push_back(*found);
    }
    return attempt;
  }

  Attempt AnyOrder(const std::vector<const Raw*>& events, int64_t t0) const {
    std::vector<size_t> firsts;  // per step, its first event in [t0, t0 + window]
    for (size_t step = 0; step < steps_; ++step) {
      for (size_t idx = 0; idx < events.size(); ++idx) {
        const Raw& event = *events[idx];
        if (event.time_ms >= t0 && event.time_ms <= t0 + q_.window_ms && q_.steps[step](event)) {
          firsts.push_back(idx);
          break;
        }
      }
    }
    std::sort(firsts.begin(), firsts.end());
    Attempt attempt;
    attempt.reached = static_cast<int>(firsts.size()) - 1;
    for (size_t idx : firsts) {
      attempt.t.push_back(events[idx]->time_ms);
      attempt.event.push_back(idx);
    }
    return attempt;
  }

  void Exclude(const std::vector<const Raw*>& events, Attempt& attempt) const {
    int final_step = attempt.reached;
    for (const auto& exclusion : q_.exclusions) {
      const int from = static_cast<int>(exclusion.from), to = static_cast<int>(exclusion.to);
      if (from > attempt.reached) continue;
      for (const Raw* event : events) {
        if (!exclusion.match(*event) || event->time_ms <= attempt.t[from]) continue;
        if (to <= attempt.reached ? event->time_ms < attempt.t[to] : event->time_ms <= attempt.t[0] + q_.window_ms) {
          final_step = std::min(final_step, from);
        }
      }
    }
    attempt.reached = final_step;
  }

  bool Best(const std::vector<const Raw*>& events, Outcome& out) const {
    Attempt best;
    for (size_t idx = 0; idx < events.size(); ++idx) {
      const bool any_order = q_.order == "any_order";
      if (!(any_order ? AnyStep(*events[idx]) : q_.steps[0](*events[idx]))) continue;
      Attempt attempt = any_order ? AnyOrder(events, events[idx]->time_ms) : Sequential(events, idx);
      Exclude(events, attempt);
      if (attempt.reached > best.reached) best = attempt;
      if (q_.entry == "first_touch") break;
    }
    if (best.reached < 0) return false;
    out.reached = best.reached;
    out.t = best.t;
    if (q_.breakdown) out.value = Prop(*events[best.event[q_.last_step ? best.reached : 0]], *q_.breakdown);
    return true;
  }

  void Add(std::vector<RefStep>& steps, const std::vector<Outcome>& outcomes, bool by_value,
           const std::optional<std::string>& value, const std::string& user) const {
    for (size_t step = 0; step < steps_; ++step) {
      const Outcome* chosen = nullptr;
      for (const auto& outcome : outcomes) {
        if ((by_value && outcome.value != value) || outcome.reached < static_cast<int>(step)) continue;
        if (chosen == nullptr || outcome.t[0] < chosen->t[0]) chosen = &outcome;
      }
      if (chosen == nullptr) continue;
      ++steps[step].users;
      steps[step].user_names.insert(user);
      if (step > 0) {
        steps[step].from_previous.push_back(chosen->t[step] - chosen->t[step - 1]);
        steps[step].from_first.push_back(chosen->t[step] - chosen->t[0]);
      }
    }
  }

  const Question& q_;
  const size_t steps_;
};

json RefMedian(const std::vector<int64_t>& sorted_ms) {
  if (sorted_ms.empty()) return nullptr;
  const size_t n = sorted_ms.size();
  return n % 2 ? sorted_ms[n / 2] / 1000.0 : (sorted_ms[n / 2 - 1] / 1000.0 + sorted_ms[n / 2] / 1000.0) / 2;
}

void ExpectNumber(const json& got, const json& want, const std::string& what) {
  if (want.is_null()) {
    EXPECT_TRUE(got.is_null()) << what << ": " << got;
  } else {
    ASSERT_TRUE(got.is_number()) << what << ": " << got;
    EXPECT_NEAR(got.get<double>(), want.get<double>(), 1e-9) << what;
  }
}

json Rate(uint64_t numerator, uint64_t denominator) {
  return denominator == 0 ? json(nullptr) : json(static_cast<double>(numerator) / static_cast<double>(denominator));
}

void ExpectSteps(const json& steps, const std::vector<RefStep>& want, const std::string& what) {
  ASSERT_TRUE(steps.is_array()) << what;
  ASSERT_EQ(steps.size(), want.size()) << what;
  for (size_t step = 0; step < want.size(); ++step) {
    const json& got = steps[step];
    const std::string where = what + " step " + std::to_string(step);
    EXPECT_EQ(got["users"], want[step].users) << where;
    EXPECT_EQ(got["dropped_off"], step == 0 ? json(nullptr) : json(want[step - 1].users - want[step].users)) << where;
    ExpectNumber(got["conversion_from_previous"], Rate(want[step].users, want[step == 0 ? 0 : step - 1].users),
                 where + " conversion_from_previous");
    ExpectNumber(got["conversion_from_first"], Rate(want[step].users, want[0].users), where + " conversion_from_first");
    ExpectNumber(got["median_seconds_to_convert"], RefMedian(want[step].from_previous), where + " median to convert");
    ExpectNumber(got["median_seconds_from_first"], RefMedian(want[step].from_first), where + " median from first");
  }
}

// The whole document against the reference: the funnel, the time-to-convert summary and every breakdown group.
void ExpectDocument(const json& document, const Expected& expected, const std::string& what) {
  ExpectSteps(document["steps"], expected.total, what);
  const json& time_to_convert = document["time_to_convert"];
  const auto& last = expected.total.back().from_first;
  EXPECT_EQ(time_to_convert["users"], last.size()) << what;
  ExpectNumber(time_to_convert["median_seconds"], RefMedian(last), what + " time_to_convert median");
  uint64_t binned = 0;
  for (const json& bin : time_to_convert["histogram"]) {
    const int64_t from = bin["from_seconds"].get<int64_t>() * 1000, to = bin["to_seconds"].get<int64_t>() * 1000;
    const bool final_bin = &bin == &time_to_convert["histogram"].back();
    const auto count = std::count_if(last.begin(), last.end(), [&](int64_t ms) {
      return ms >= from && (ms < to || (final_bin && ms == to));
    });
    EXPECT_EQ(bin["users"], count) << what << " bin " << bin.dump();
    binned += bin["users"].get<uint64_t>();
  }
  EXPECT_EQ(binned, last.size()) << what;
  if (!document.contains("breakdown")) {
    EXPECT_TRUE(expected.groups.empty() || expected.groups.size() == 1) << what;
    return;
  }
  ASSERT_EQ(document["breakdown"].size(), expected.groups.size()) << what;
  uint64_t previous_users = UINT64_MAX;
  for (const json& group : document["breakdown"]) {
    const std::optional<std::string> value =
        group["value"].is_null() ? std::nullopt : std::optional<std::string>(group["value"].get<std::string>());
    auto it = expected.groups.find(value);
    ASSERT_NE(it, expected.groups.end()) << what << " group " << group["value"];
    ExpectSteps(group["steps"], it->second, what + " group " + value.value_or("null"));
    const uint64_t users = group["steps"][0]["users"].get<uint64_t>();
    EXPECT_LE(users, previous_users) << what << ": groups by users at step 0, most first";
    previous_users = users;
  }
}

// --- Segments ------------------------------------------------------------------------------------------------------



// The pseudonyms of store ids.
std::set<std::string> Names(store::EventStore& store, const query::Roaring& ids) {
  std::vector<uint32_t> list(ids.cardinality());
  ids.toUint32Array(list.data());
  auto names = store.UserNames(list);
  EXPECT_TRUE(names.ok()) << names.status().ToString();
  if (!names.ok()) return {};
  return std::set<std::string>(names->begin(), names->end());
}

// --- Generated data, shared by the tests of the suite ------------------------------------------------------------

class AnalysisFunnelTest : public GeneratedStoreSuite<Raw> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 900;
    options.generator.days = 40;
    options.generator.seed = 31;
    options.generator.start_date = "2024-02-20";
    options.pseudonymizer_key = 'f';
    options.flush_every_batches = 25;
    options.flush_while_fewer_than = 90000;
    Load(options, [](const events::EventView& event) {
      Raw raw{std::string(event.user),    event.time_ms,          std::string(event.type),
              std::string(event.game_id), std::string(event.country), std::string(event.platform), ""};
      if (!event.data.empty()) {
        const json data = json::parse(event.data);
        if (data.contains("page_type") && data["page_type"].is_string()) raw.page_type = data["page_type"];
      }
      return raw;
    });
  }

  static json Funnel(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    return RunOnAnyThreadCount(RunFunnels, *store_, body, viewer, options);
  }
};

constexpr int64_t kFeb25 = 1708819200000;  // 2024-02-25T00:00:00Z

TEST_F(AnalysisFunnelTest, ThreeStepFunnelHeldOnGameMatchesTheReference) {
  // The benchmark's question: page view → cart add → purchase within 24 h, held constant on game_id.
  const json body = {{"period_start", "2024-02-25"},
                     {"period_end", "2024-03-20"},
                     {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}, {{"event_type", kPurchase}}}},
                     {"window_seconds", 86400},
                     {"hold_constant", {"game_id"}}};
  Question question;
  question.steps = {OfType(kPageViewed), OfType(kCartAdded), OfType(kPurchase)};
  question.from_ms = kFeb25;
  question.to_ms = kFeb25 + 25 * kDay;  // through 2024-03-20
  question.hold = {"game_id"};
  const Expected expected = Reference(question).Run(*raw_);
  const json document = Funnel(body);
  ExpectDocument(document, expected, "held");
  EXPECT_EQ(document["period_start"], "2024-02-25");
  EXPECT_EQ(document["timezone"], "UTC");
  EXPECT_EQ(document["order"], "ordered");
  EXPECT_EQ(document["entry"], "first_touch");
  EXPECT_EQ(document["window_seconds"], 86400);
  EXPECT_EQ(document["hold_constant"], json::array({"game_id"}));
  EXPECT_FALSE(document.contains("k_anonymity"));
  EXPECT_FALSE(document.contains("breakdown"));
  // Not vacuous: many users, and some reach the last step.
  EXPECT_GT(expected.total[0].users, 300u);
  EXPECT_GT(expected.total[2].users, 10u);
  EXPECT_LT(expected.total[2].users, expected.total[1].users);
}

TEST_F(AnalysisFunnelTest, EveryOrderAndEntryModeMatchesTheReference) {
  for (const char* order : {"ordered", "strict", "any_order"}) {
    for (const char* entry : {"first_touch", "any_touch"}) {
      const json body = {{"period_start", "2024-03-01"},
                         {"period_end", "2024-03-14"},
                         {"steps",
                          {{{"event_type", kPageViewed},
                            {"filters", {{{"property", "page_type"}, {"op", "eq"}, {"value", "game"}}}}},
                           {{"event_type", kCartAdded}},
                           {{"event_type", kCheckout}},
                           {{"event_type", kPurchase}}}},
                         {"window_seconds", 7200},
                         {"order", order},
                         {"entry", entry}};
      Question question;
      question.steps = {OfType(kPageViewed, [](const Raw& event) { return event.page_type == "game"; }),
                        OfType(kCartAdded), OfType(kCheckout), OfType(kPurchase)};
      question.from_ms = kMar1;
      question.to_ms = kMar1 + 14 * kDay;
      question.window_ms = 7200 * 1000;
      question.order = order;
      question.entry = entry;
      const Expected expected = Reference(question).Run(*raw_);
      const json document = Funnel(body);
      ExpectDocument(document, expected, std::string(order) + " " + entry);
      EXPECT_GT(expected.total[1].users, 10u) << order << " " << entry;
    }
  }
}

TEST_F(AnalysisFunnelTest, ExclusionsBreakdownAndFiltersInBerlinMatchTheReference) {
  // Europe/Berlin: the period crosses the DST change of 2024-03-31; request filters restrict to one platform.
  for (const char* attribution : {"first_step", "last_step"}) {
    const json body = {{"period_start", "2024-03-20"},
                       {"period_end", "2024-03-31"},
                       {"timezone", "Europe/Berlin"},
                       {"filters", {{{"property", "platform"}, {"op", "ne"}, {"value", "linux"}}}},
                       {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}, {{"event_type", kPurchase}}}},
                       {"window_seconds", 3 * 86400},
                       {"entry", "any_touch"},
                       {"hold_constant", {"game_id"}},
                       {"exclusions", {{{"event_type", kCartRemoved}, {"between", {1, 2}}}}},
                       {"breakdown", {{"property", "country"}, {"attribution", attribution}, {"limit", 1000}}}};
    Question question;
    question.steps = {OfType(kPageViewed), OfType(kCartAdded), OfType(kPurchase)};
    question.exclusions = {{OfType(kCartRemoved), 1, 2}};
    question.filter = [](const Raw& event) { return event.platform != "linux"; };
    question.from_ms = kMar1 + 19 * kDay - kHour;  // 2024-03-20T00:00+01:00
    question.to_ms = kMar1 + 30 * kDay + 22 * kHour;  // 2024-04-01T00:00+02:00
    question.window_ms = 3 * kDay;
    question.entry = "any_touch";
    question.hold = {"game_id"};
    question.breakdown = "country";
    question.last_step = std::string(attribution) == "last_step";
    const Expected expected = Reference(question).Run(*raw_);
    const json document = Funnel(body);
    ExpectDocument(document, expected, attribution);
    EXPECT_EQ(document["breakdown_by"],
              (json{{"property", "country"}, {"attribution", attribution}, {"limit", 1000}, {"omitted_groups", 0}}));
    EXPECT_GT(expected.groups.size(), 3u);
  }
}

TEST_F(AnalysisFunnelTest, BreakdownLimitKeepsTheLargestGroupsAndCountsTheRest) {
  const json body = {{"period_start", "2024-03-01"},
                     {"period_end", "2024-03-10"},
                     {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}}},
                     {"breakdown", {{"property", "game_id"}, {"limit", 3}}}};
  Question question;
  question.steps = {OfType(kPageViewed), OfType(kCartAdded)};
  question.from_ms = kMar1;
  question.to_ms = kMar1 + 10 * kDay;
  question.breakdown = "game_id";
  const Expected expected = Reference(question).Run(*raw_);
  const json document = Funnel(body);
  ASSERT_EQ(document["breakdown"].size(), 3u);
  EXPECT_EQ(document["breakdown_by"]["omitted_groups"], expected.groups.size() - 3);
  std::vector<uint64_t> sizes;
  for (const auto& [value, steps] : expected.groups) sizes.push_back(steps[0].users);
  std::sort(sizes.rbegin(), sizes.rend());
  for (size_t idx = 0; idx < 3; ++idx) {
    const json& group = document["breakdown"][idx];
    EXPECT_EQ(group["steps"][0]["users"], sizes[idx]);
    const std::optional<std::string> value =
        group["value"].is_null() ? std::nullopt : std::optional<std::string>(group["value"].get<std::string>());
    ExpectSteps(group["steps"], expected.groups.at(value), "top group");
  }
}

TEST_F(AnalysisFunnelTest, DeveloperSeesOwnGamesWithSmallGroupsSuppressed) {
  // The two games with the most page views: only their events are read; k-anonymity drops small countries.
  std::map<std::string, size_t> views;
  for (const Raw& event : *raw_) {
    if (event.type == kPageViewed && !event.game_id.empty()) ++views[event.game_id];
  }
  std::vector<std::pair<size_t, std::string>> ranked;
  for (const auto& [game, count] : views) ranked.emplace_back(count, game);
  std::sort(ranked.rbegin(), ranked.rend());
  ASSERT_GE(ranked.size(), 2u);
  Viewer viewer;
  viewer.all_games = false;
  viewer.game_ids = {ranked[0].second, ranked[1].second};
  AnalysisOptions options;
  options.k_anonymity = 5;
  const json body = {{"period_start", "2024-02-20"},
                     {"period_end", "2024-03-30"},
                     {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}}},
                     {"window_seconds", 2 * 86400},
                     {"breakdown", {{"property", "country"}}}};
  Question question;
  question.steps = {OfType(kPageViewed), OfType(kCartAdded)};
  question.filter = [&](const Raw& event) { return viewer.game_ids.count(event.game_id) > 0; };
  question.from_ms = kFeb25 - 5 * kDay;
  question.to_ms = kMar1 + 30 * kDay;
  question.window_ms = 2 * kDay;
  question.breakdown = "country";
  Expected expected = Reference(question).Run(*raw_);
  uint64_t suppressed = 0;
  for (auto it = expected.groups.begin(); it != expected.groups.end();) {
    if (it->second[0].users < 5) {
      ++suppressed;
      it = expected.groups.erase(it);
    } else {
      ++it;
    }
  }
  ASSERT_GT(suppressed, 0u) << "the data should have small groups";
  ASSERT_GE(expected.total[0].users, 5u);
  const json document = Funnel(body, viewer, options);
  ExpectDocument(document, expected, "developer");
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 5}, {"suppressed_groups", suppressed}}));
}

TEST_F(AnalysisFunnelTest, SegmentRestrictsTheFunnelToItsMembers) {
  const std::set<std::string> members = SomeUsers(*raw_, 6);
  AnalysisOptions options;
  options.segment_scope = TestSegments(*store_, members);
  json body = {{"period_start", "2024-02-25"},
               {"period_end", "2024-03-20"},
               {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}, {{"event_type", kPurchase}}}},
               {"hold_constant", {"game_id"}},
               {"exclusions", {{{"event_type", kCartRemoved}, {"between", {1, 2}}}}},
               {"breakdown", {{"property", "country"}, {"limit", 1000}}},
               {"segment", "members"}};
  Question question;
  question.steps = {OfType(kPageViewed), OfType(kCartAdded), OfType(kPurchase)};
  question.exclusions = {{OfType(kCartRemoved), 1, 2}};
  question.filter = [&](const Raw& event) { return members.count(event.user) > 0; };
  question.from_ms = kFeb25;
  question.to_ms = kFeb25 + 25 * kDay;
  question.hold = {"game_id"};
  question.breakdown = "country";
  const Expected expected = Reference(question).Run(*raw_);
  const json document = Funnel(body, {}, options);
  ExpectDocument(document, expected, "segment");
  EXPECT_EQ(document["segment"], "members");
  // Not vacuous: fewer users than the whole funnel, and still some at the last step.
  question.filter = [](const Raw&) { return true; };
  const Expected everyone = Reference(question).Run(*raw_);
  EXPECT_GT(expected.total[0].users, 50u);
  EXPECT_LT(expected.total[0].users, everyone.total[0].users);
  EXPECT_GT(expected.total[2].users, 0u);
  // Without a segment, no "segment" member.
  body.erase("segment");
  EXPECT_FALSE(Funnel(body, {}, options).contains("segment"));
}

TEST_F(AnalysisFunnelTest, SegmentErrors) {
  AnalysisOptions options;
  options.segment_scope = TestSegments(*store_, SomeUsers(*raw_, 7));
  json body = {{"period_start", "2024-03-01"},
               {"period_end", "2024-03-10"},
               {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}}},
               {"segment", "whales"}};
  EXPECT_EQ(RunFunnels(*store_, body, {}, options).status().code(), common::StatusCode::kNotFound);
  body["segment"] = "pending";
  EXPECT_EQ(RunFunnels(*store_, body, {}, options).status().code(), common::StatusCode::kFailedPrecondition);
  body["segment"] = 5;
  auto not_text = RunFunnels(*store_, body, {}, options);
  EXPECT_EQ(not_text.status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_EQ(not_text.status().field(), "segment");
  body["segment"] = "";
  EXPECT_EQ(RunFunnels(*store_, body, {}, options).status().field(), "segment");
  // No segment service: every id is unknown.
  body["segment"] = "members";
  EXPECT_EQ(RunFunnels(*store_, body, {}, {}).status().code(), common::StatusCode::kNotFound);
}

TEST_F(AnalysisFunnelTest, FunnelUsersAreTheUsersBehindEachStepsCount) {
  // Whole funnel (the breakdown of the body is ignored), with and without a segment, on any thread count.
  const std::set<std::string> members = SomeUsers(*raw_, 8);
  for (const bool segment : {false, true}) {
    AnalysisOptions options;
    options.segment_scope = TestSegments(*store_, members);
    json body = {{"period_start", "2024-02-25"},
                 {"period_end", "2024-03-20"},
                 {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}, {{"event_type", kPurchase}}}},
                 {"entry", "any_touch"},
                 {"hold_constant", {"game_id"}},
                 {"breakdown", {{"property", "country"}}}};
    Question question;
    question.steps = {OfType(kPageViewed), OfType(kCartAdded), OfType(kPurchase)};
    question.from_ms = kFeb25;
    question.to_ms = kFeb25 + 25 * kDay;
    question.entry = "any_touch";
    question.hold = {"game_id"};
    if (segment) {
      body["segment"] = "members";
      question.filter = [&](const Raw& event) { return members.count(event.user) > 0; };
    }
    const Expected expected = Reference(question).Run(*raw_);
    const json document = Funnel(body, {}, options);
    const auto& steps = expected.total;
    const std::string what = segment ? "segment" : "everyone";
    for (const size_t threads : {size_t{1}, size_t{4}}) {
      options.query_threads = threads;
      auto users = [&](int64_t step, const std::string& which) {
        auto result = FunnelUsers(*store_, body, {}, options, step, which);
        EXPECT_TRUE(result.ok()) << result.status().ToString();
        return result.ok() ? *result : query::Roaring();
      };
      for (size_t step = 0; step < steps.size(); ++step) {
        const query::Roaring reached = users(static_cast<int64_t>(step), "reached");
        EXPECT_EQ(reached.cardinality(), document["steps"][step]["users"].get<uint64_t>()) << what << " " << step;
        EXPECT_EQ(Names(*store_, reached), steps[step].user_names) << what << " reached " << step;
        if (step + 1 < steps.size()) {
          std::set<std::string> dropped;
          std::set_difference(steps[step].user_names.begin(), steps[step].user_names.end(),
                              steps[step + 1].user_names.begin(), steps[step + 1].user_names.end(),
                              std::inserter(dropped, dropped.end()));
          const query::Roaring got = users(static_cast<int64_t>(step), "dropped");
          EXPECT_EQ(got.cardinality(), document["steps"][step + 1]["dropped_off"].get<uint64_t>()) << what << " " << step;
          EXPECT_EQ(Names(*store_, got), dropped) << what << " dropped " << step;
        }
      }
      EXPECT_EQ(Names(*store_, users(0, "converted")), steps.back().user_names) << what;
    }
    EXPECT_GT(steps.back().users, 0u) << what;
  }
}

TEST_F(AnalysisFunnelTest, FunnelUsersRejectsABadStepOrWhichAndDevelopers) {
  const json body = {{"period_start", "2024-03-01"},
                     {"period_end", "2024-03-10"},
                     {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}, {{"event_type", kPurchase}}}}};
  const struct {
    int64_t step;
    std::string which, field;
  } cases[] = {{-1, "reached", "step"}, {3, "reached", "step"}, {2, "dropped", "step"},
               {3, "converted", "step"}, {0, "left", "which"}, {0, "", "which"}};
  for (const auto& test : cases) {
    auto result = FunnelUsers(*store_, body, {}, {}, test.step, test.which);
    ASSERT_FALSE(result.ok()) << test.step << " " << test.which;
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << test.step << " " << test.which;
    EXPECT_EQ(result.status().field(), test.field) << test.step << " " << test.which;
  }
  // The body's own errors come first, as in RunFunnels.
  json bad = body;
  bad["window_seconds"] = 0;
  EXPECT_EQ(FunnelUsers(*store_, bad, {}, {}, 0, "reached").status().field(), "window_seconds");
  Viewer developer;
  developer.all_games = false;
  developer.game_ids = {GamesByEvents(*raw_).at(0)};
  EXPECT_EQ(FunnelUsers(*store_, body, developer, {}, 0, "reached").status().code(),
            common::StatusCode::kPermissionDenied);
  ASSERT_OK(FunnelUsers(*store_, body, {}, {}, 1, "dropped"));
}

// --- Hand-made events, a fresh store per test ----------------------------------------------------------------------

StoredEvent MakeEvent(const std::string& id, const std::string& user, int64_t time_ms, const std::string& type,
                      const std::string& game = "g1", const std::string& country = "RU") {
  StoredEvent event;
  event.id = id;
  event.source = "/services/store";
  event.type = type;
  event.time_ms = time_ms;
  event.received_ms = time_ms + 1000;
  event.user = user;
  event.game_id = game;
  event.country = country;
  event.platform = "windows";
  event.data = game.empty() ? R"({"page_type":"home"})" : R"({"page_type":"game","game_id":")" + game + R"("})";
  event.user_in_subject = true;
  return event;
}

class FunnelHandMadeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = EmbeddedEventStore::Open(UnsyncedTestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }
  void Add(const std::string& user, int64_t time_ms, const std::string& type, const std::string& game = "g1",
           const std::string& country = "RU") {
    pending_.push_back(MakeEvent("e" + std::to_string(next_id_++), user, time_ms, type, game, country));
  }
  void Append() {
    ASSERT_OK(store_->Append(pending_));
    pending_.clear();
  }
  common::Result<json> Try(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    return RunFunnels(*store_, body, viewer, options);
  }
  json Run(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    auto result = Try(body, viewer, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << body.dump();
    return result.ok() ? *result : json();
  }
  static std::vector<json> Users(const json& document) {
    std::vector<json> users;
    for (const json& step : document["steps"]) users.push_back(step["users"]);
    return users;
  }
  static json TwoSteps(const std::string& start, const std::string& end, int64_t window_seconds = 3600) {
    return {{"period_start", start},
            {"period_end", end},
            {"steps", {{{"event_type", kPageViewed}}, {{"event_type", kCartAdded}}}},
            {"window_seconds", window_seconds}};
  }

  TempDir dir_;
  std::unique_ptr<EmbeddedEventStore> store_;
  std::vector<StoredEvent> pending_;
  int next_id_ = 0;
};

TEST_F(FunnelHandMadeTest, WindowEndAndEqualTimestampsAcrossMemoryAndSegments) {
  const int64_t t0 = kMar1 + 10 * kHour;
  Add("u_in", t0, kPageViewed);
  Add("u_in", t0 + kHour, kCartAdded);  // exactly at the window's end: counts
  Add("u_out", t0, kPageViewed);
  Add("u_out", t0 + kHour + 1, kCartAdded);  // one ms late
  Add("u_same", t0, kPageViewed);
  Add("u_same", t0, kCartAdded);  // same millisecond: never advances
  Append();
  ASSERT_OK(store_->Flush());
  // A late event (older time, arriving after the flush) stays in the memtable and joins the segment's rows.
  Add("u_late", t0 + 30 * 60000, kCartAdded);
  Add("u_late", t0 + 20 * 60000, kPageViewed);
  Append();
  const json document = Run(TwoSteps("2024-03-01", "2024-03-01"));
  EXPECT_EQ(Users(document), (std::vector<json>{4, 2}));
  EXPECT_EQ(document["steps"][1]["dropped_off"], 2);
  EXPECT_DOUBLE_EQ(document["steps"][1]["conversion_from_previous"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(document["steps"][0]["conversion_from_previous"].get<double>(), 1.0);
  EXPECT_TRUE(document["steps"][0]["dropped_off"].is_null());
  EXPECT_TRUE(document["steps"][0]["median_seconds_to_convert"].is_null());
  EXPECT_DOUBLE_EQ(document["steps"][1]["median_seconds_to_convert"].get<double>(), (600.0 + 3600.0) / 2);
  const json& time_to_convert = document["time_to_convert"];
  EXPECT_EQ(time_to_convert["users"], 2);
  EXPECT_DOUBLE_EQ(time_to_convert["mean_seconds"].get<double>(), 2100.0);
  EXPECT_DOUBLE_EQ(time_to_convert["percentiles"]["p50"].get<double>(), 2100.0);
  EXPECT_DOUBLE_EQ(time_to_convert["percentiles"]["p90"].get<double>(), 600.0 + 0.9 * 3000.0);
  // Bins up to the window (3600 s); the last one holds the conversion at exactly 3600 s.
  const json& histogram = time_to_convert["histogram"];
  ASSERT_FALSE(histogram.empty());
  EXPECT_EQ(histogram.back()["to_seconds"], 3600);
  EXPECT_EQ(histogram.back()["from_seconds"], 1800);
  EXPECT_EQ(histogram.back()["users"], 1);
  EXPECT_EQ(histogram[histogram.size() - 2]["from_seconds"], 600);
  EXPECT_EQ(histogram[histogram.size() - 2]["users"], 1);
}

TEST_F(FunnelHandMadeTest, WindowCrossesDayPartitionsAndThePeriodEndCutsSteps) {
  // page view at 23:50, cart add at 00:10 the next day (another day partition, flushed apart).
  Add("u1", kMar1 + 23 * kHour + 50 * 60000, kPageViewed);
  Append();
  ASSERT_OK(store_->Flush());
  Add("u1", kMar1 + kDay + 10 * 60000, kCartAdded);
  Append();
  ASSERT_OK(store_->Flush());
  EXPECT_EQ(Users(Run(TwoSteps("2024-03-01", "2024-03-02"))), (std::vector<json>{1, 1}));
  // Only events in the period are read: the cart add of March 2 is outside a March 1 period.
  EXPECT_EQ(Users(Run(TwoSteps("2024-03-01", "2024-03-01"))), (std::vector<json>{1, 0}));
}

TEST_F(FunnelHandMadeTest, PeriodBoundsFollowTheTimeZoneAcrossDst) {
  // 2024-03-31 in Europe/Berlin is [2024-03-30T23:00Z, 2024-03-31T22:00Z): 23 hours.
  const int64_t day_start = kMar1 + 29 * kDay + 23 * kHour;
  const int64_t day_end = kMar1 + 30 * kDay + 22 * kHour;
  Add("u_first", day_start, kPageViewed);  // local 00:00, the first instant of the day
  Add("u_first", day_start + 2 * kHour, kCartAdded);  // 01:00 UTC = 03:00 CEST, after the change
  Add("u_last", day_end - 1, kPageViewed);  // local 23:59:59.999
  Add("u_last", day_end, kCartAdded);       // the next local day
  Add("u_before", day_start - 1, kPageViewed);  // still March 30 locally
  Append();
  json body = TwoSteps("2024-03-31", "2024-03-31", 86400);
  body["timezone"] = "Europe/Berlin";
  const json document = Run(body);
  EXPECT_EQ(Users(document), (std::vector<json>{2, 1}));
  EXPECT_DOUBLE_EQ(document["steps"][1]["median_seconds_to_convert"].get<double>(), 7200.0);
  EXPECT_EQ(document["timezone"], "Europe/Berlin");
  // March 31 in UTC starts an hour later: u_first's view (23:00Z on March 30) is out, so u_first has no entry;
  // u_last converts (its cart add at 22:00Z is still March 31 in UTC).
  body["timezone"] = "UTC";
  EXPECT_EQ(Users(Run(body)), (std::vector<json>{1, 1}));
  body["period_start"] = "2024-03-30";  // March 30 and 31 in UTC: all three views
  EXPECT_EQ(Users(Run(body)), (std::vector<json>{3, 2}));
}

TEST_F(FunnelHandMadeTest, ErasedUsersAreNotCounted) {
  Add("u1", kMar1, kPageViewed);
  Add("u1", kMar1 + 60000, kCartAdded);
  Add("u2", kMar1, kPageViewed);
  Add("u2", kMar1 + 60000, kCartAdded);
  Append();
  ASSERT_OK(store_->Flush());
  EXPECT_EQ(Users(Run(TwoSteps("2024-03-01", "2024-03-01"))), (std::vector<json>{2, 2}));
  ASSERT_OK(store_->EraseUser("u2"));
  EXPECT_EQ(Users(Run(TwoSteps("2024-03-01", "2024-03-01"))), (std::vector<json>{1, 1}));
}

TEST_F(FunnelHandMadeTest, HoldConstantAndBreakdownByHeldProperty) {
  // u1 views g1 and adds g2 to the cart: no conversion when held on game_id. u2 converts on g1 and on g2.
  Add("u1", kMar1, kPageViewed, "g1");
  Add("u1", kMar1 + 60000, kCartAdded, "g2");
  Add("u2", kMar1, kPageViewed, "g1");
  Add("u2", kMar1 + 120000, kCartAdded, "g1");
  Add("u2", kMar1 + 1000, kPageViewed, "g2");
  Add("u2", kMar1 + 61000, kCartAdded, "g2");
  Add("u3", kMar1, kPageViewed, "");  // no game: in no pair
  Append();
  json body = TwoSteps("2024-03-01", "2024-03-01");
  EXPECT_EQ(Users(Run(body)), (std::vector<json>{3, 2}));
  body["hold_constant"] = {"game_id"};
  json document = Run(body);
  EXPECT_EQ(Users(document), (std::vector<json>{2, 1}));
  // u2's attempt for step 1 is the pair with the earliest t0 (g1 at kMar1): 120 s, not 60 s.
  EXPECT_DOUBLE_EQ(document["steps"][1]["median_seconds_to_convert"].get<double>(), 120.0);
  body["breakdown"] = {{"property", "game_id"}};
  document = Run(body);
  ASSERT_EQ(document["breakdown"].size(), 2u);  // u2 is in both groups
  EXPECT_EQ(document["breakdown"][0]["value"], "g1");
  EXPECT_EQ(document["breakdown"][0]["steps"][0]["users"], 2);
  EXPECT_EQ(document["breakdown"][0]["steps"][1]["users"], 1);
  EXPECT_EQ(document["breakdown"][1]["value"], "g2");
  EXPECT_EQ(document["breakdown"][1]["steps"][1]["users"], 1);
  EXPECT_DOUBLE_EQ(document["breakdown"][1]["steps"][1]["median_seconds_to_convert"].get<double>(), 60.0);
}

TEST_F(FunnelHandMadeTest, WholeFunnelOfFewerThanKUsersIsSuppressedForDevelopers) {
  Add("u1", kMar1, kPageViewed, "g1");
  Add("u1", kMar1 + 60000, kCartAdded, "g1");
  Add("u2", kMar1, kPageViewed, "g1");
  Add("u3", kMar1, kPageViewed, "g2");  // another developer's game: not read
  Add("u4", kMar1, kPageViewed, "g2");
  Append();
  Viewer viewer;
  viewer.all_games = false;
  viewer.game_ids = {"g1"};
  AnalysisOptions options;
  options.k_anonymity = 3;
  json body = TwoSteps("2024-03-01", "2024-03-01");
  json document = Run(body, viewer, options);
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 3}, {"suppressed_groups", 1}}));
  for (const json& step : document["steps"]) {
    EXPECT_TRUE(step["event_type"].is_string());
    EXPECT_TRUE(step["users"].is_null());
    EXPECT_TRUE(step["conversion_from_first"].is_null());
    EXPECT_TRUE(step["median_seconds_to_convert"].is_null());
  }
  EXPECT_TRUE(document["time_to_convert"].is_null());
  // With k = 2 the funnel (2 users of g1) is shown.
  options.k_anonymity = 2;
  document = Run(body, viewer, options);
  EXPECT_EQ(Users(document), (std::vector<json>{2, 1}));
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 2}, {"suppressed_groups", 0}}));
  // An administrator sees all four users, without a k_anonymity member.
  document = Run(body);
  EXPECT_EQ(Users(document), (std::vector<json>{4, 1}));
  EXPECT_FALSE(document.contains("k_anonymity"));
}

TEST_F(FunnelHandMadeTest, PeriodAfterTheNewestEventIsNotYetAvailable) {
  Add("u1", kMar1, kPageViewed);
  Append();
  auto result = Try(TwoSteps("2024-03-05", "2024-03-06"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), common::StatusCode::kFailedPrecondition);
  // An empty store: nothing is available either.
  TempDir empty_dir;
  auto empty = EmbeddedEventStore::Open(UnsyncedTestStoreOptions(empty_dir));
  ASSERT_OK(empty);
  auto none = RunFunnels(**empty, TwoSteps("2024-03-01", "2024-03-01"), {}, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(FunnelHandMadeTest, UnknownSegmentIsNotFound) {
  Add("u1", kMar1, kPageViewed);
  Append();
  json body = TwoSteps("2024-03-01", "2024-03-01");
  body["segment"] = "whales";
  auto result = Try(body);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), common::StatusCode::kNotFound);
}

TEST_F(FunnelHandMadeTest, InvalidRequestsNameTheField) {
  Add("u1", kMar1, kPageViewed);
  Append();
  const json base = TwoSteps("2024-03-01", "2024-03-01");
  struct Case {
    std::function<void(json&)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](json& body) { body["bogus"] = 1; }, "bogus"},
      {[](json& body) { body.erase("steps"); }, "steps"},
      {[](json& body) { body["steps"] = json::array({{{"event_type", kPageViewed}}}); }, "steps"},
      {[](json& body) { body["steps"] = json::array(); for (int i = 0; i < 21; ++i) body["steps"].push_back({{"event_type", kPageViewed}}); }, "steps"},
      {[](json& body) { body["steps"][1].erase("event_type"); }, "steps[1].event_type"},
      {[](json& body) { body["steps"][1]["event_type"] = 5; }, "steps[1].event_type"},
      {[](json& body) { body["steps"][0]["color"] = "red"; }, "steps[0].color"},
      {[](json& body) { body["steps"][1] = "cart"; }, "steps[1]"},
      {[](json& body) { body["steps"][0]["filters"] = {{{"property", "country"}, {"op", "like"}, {"value", "R"}}}; },
       "steps[0].filters[0].op"},
      {[](json& body) { body["window_seconds"] = 0; }, "window_seconds"},
      {[](json& body) { body["window_seconds"] = 366LL * 86400 + 1; }, "window_seconds"},
      {[](json& body) { body["window_seconds"] = 1.5; }, "window_seconds"},
      {[](json& body) { body["order"] = "sorted"; }, "order"},
      {[](json& body) { body["entry"] = "last_touch"; }, "entry"},
      {[](json& body) { body["hold_constant"] = "game_id"; }, "hold_constant"},
      {[](json& body) { body["hold_constant"] = {"a", "b", "c", "d"}; }, "hold_constant"},
      {[](json& body) { body["hold_constant"] = {"game_id", "game_id"}; }, "hold_constant[1]"},
      {[](json& body) { body["hold_constant"] = {"game_id", ""}; }, "hold_constant[1]"},
      {[](json& body) { body["exclusions"] = {{{"event_type", kCartRemoved}, {"between", {1, 1}}}}; },
       "exclusions[0].between"},
      {[](json& body) { body["exclusions"] = {{{"event_type", kCartRemoved}, {"between", {0, 2}}}}; },
       "exclusions[0].between"},
      {[](json& body) { body["exclusions"] = {{{"event_type", kCartRemoved}, {"between", {0}}}}; },
       "exclusions[0].between"},
      {[](json& body) { body["exclusions"] = {{{"between", {0, 1}}}}; }, "exclusions[0].event_type"},
      {[](json& body) { body["exclusions"] = {{{"event_type", kCartRemoved}, {"when", 1}}}; }, "exclusions[0].when"},
      {[](json& body) { body["breakdown"] = {{"attribution", "first_step"}}; }, "breakdown.property"},
      {[](json& body) { body["breakdown"] = {{"property", "country"}, {"attribution", "middle"}}; },
       "breakdown.attribution"},
      {[](json& body) { body["breakdown"] = {{"property", "country"}, {"limit", 0}}; }, "breakdown.limit"},
      {[](json& body) { body["breakdown"] = "country"; }, "breakdown"},
      {[](json& body) { body.erase("period_start"); }, "period_start"},
      {[](json& body) { body["period_end"] = "2024-02-01"; }, "period_end"},
      {[](json& body) { body["timezone"] = "Mars/Olympus"; }, "timezone"},
  };
  for (const auto& test : cases) {
    json body = base;
    test.change(body);
    auto result = Try(body);
    ASSERT_FALSE(result.ok()) << body.dump();
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(result.status().field(), test.field) << body.dump() << ": " << result.status().ToString();
  }
  auto not_object = Try(json::array());
  ASSERT_FALSE(not_object.ok());
  EXPECT_EQ(not_object.status().field(), "body");
}

}  // namespace
}  // namespace analytics::testing
