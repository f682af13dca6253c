// Funnels (query/funnel.h): hand-made edge cases, and the engine against a naive reference written here (plain loops
// over raw events, per pair and per attempt, no engine code) on random data with fixed seeds.
#include "query/funnel.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

namespace analytics::query {
namespace {

// --- Raw events and the Timeline a store would build from them ---------------------------------------------

struct RawEvent {
  uint32_t user = 0;
  int64_t time = 0;
  std::string type;
  int v = 0;                                  // what step filters test
  std::map<std::string, std::string> props;   // absent: missing
};

// Picks events of `type` whose v is at least v_min.
struct Selector {
  std::string type;
  int v_min = 0;
  bool Matches(const RawEvent& event) const { return event.type == type && event.v >= v_min; }
};

std::optional<std::string> Prop(const RawEvent& event, const std::string& key) {
  auto it = event.props.find(key);
  if (it == event.props.end()) return std::nullopt;
  return it->second;
}

// The documented row order within a user: time, type name, key texts (missing last), matched selectors.
struct RowOrder {
  const std::vector<std::string>& keys;
  const std::vector<Selector>& selectors;
  uint32_t Bits(const RawEvent& event) const {
    uint32_t bits = 0;
    for (size_t idx = 0; idx < selectors.size(); ++idx) bits |= selectors[idx].Matches(event) ? 1u << idx : 0u;
    return bits;
  }
  bool operator()(const RawEvent& a, const RawEvent& b) const {
    if (a.user != b.user) return a.user < b.user;
    if (a.time != b.time) return a.time < b.time;
    if (a.type != b.type) return a.type < b.type;
    for (const auto& key : keys) {
      auto x = Prop(a, key), y = Prop(b, key);
      if (x != y) {
        if (!x) return false;
        if (!y) return true;
        return *x < *y;
      }
    }
    return Bits(a) < Bits(b);
  }
};

// The events that match a selector, sorted in row order.
std::vector<RawEvent> Selected(std::vector<RawEvent> events, const std::vector<Selector>& selectors,
                               const std::vector<std::string>& keys) {
  RowOrder order{keys, selectors};
  std::vector<RawEvent> out;
  for (auto& event : events) {
    if (order.Bits(event) != 0) out.push_back(std::move(event));
  }
  std::stable_sort(out.begin(), out.end(), order);
  return out;
}

Timeline BuildTimeline(const std::vector<RawEvent>& raw, const std::vector<Selector>& selectors,
                       const std::vector<std::string>& keys) {
  const std::vector<RawEvent> events = Selected(raw, selectors, keys);
  RowOrder order{keys, selectors};
  Timeline timeline;
  std::set<std::string> types;
  std::vector<std::set<std::string>> values(keys.size());
  for (const auto& event : events) {
    types.insert(event.type);
    for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
      if (auto value = Prop(event, keys[key_idx])) values[key_idx].insert(*value);
    }
  }
  timeline.type_names.assign(types.begin(), types.end());
  timeline.keys.resize(keys.size());
  for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
    timeline.key_values.emplace_back(values[key_idx].begin(), values[key_idx].end());
  }
  for (size_t row = 0; row < events.size(); ++row) {
    const RawEvent& event = events[row];
    if (row == 0 || event.user != events[row - 1].user) timeline.user_begin.push_back(static_cast<uint32_t>(row));
    timeline.users.push_back(event.user);
    timeline.time_ms.push_back(event.time);
    timeline.matches.push_back(order.Bits(event));
    timeline.types.push_back(static_cast<uint32_t>(
        std::lower_bound(timeline.type_names.begin(), timeline.type_names.end(), event.type) -
        timeline.type_names.begin()));
    for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
      auto value = Prop(event, keys[key_idx]);
      const auto& dictionary = timeline.key_values[key_idx];
      timeline.keys[key_idx].push_back(
          value ? static_cast<uint32_t>(std::lower_bound(dictionary.begin(), dictionary.end(), *value) -
                                        dictionary.begin())
                : kMissingKey);
    }
    timeline.newest_event_ms = std::max(timeline.newest_event_ms, event.time);
  }
  timeline.user_begin.push_back(static_cast<uint32_t>(events.size()));
  return timeline;
}

// --- The reference: a literal reading of the semantics ----------------------------------------------------

struct RefConfig {
  std::vector<Selector> steps;
  struct Exclusion {
    Selector selector;
    size_t from = 0, to = 0;
  };
  std::vector<Exclusion> exclusions;
  int64_t window = 0;
  FunnelOrder order = FunnelOrder::kOrdered;
  FunnelEntry entry = FunnelEntry::kFirstTouch;
  std::vector<std::string> hold;
  std::optional<std::string> breakdown;
  FunnelAttribution attribution = FunnelAttribution::kFirstStep;
};

struct RefGroup {
  std::vector<uint64_t> users;
  std::vector<std::vector<int64_t>> from_previous, from_first;
  std::vector<std::vector<uint32_t>> user_ids;  // per step, ascending
};

struct RefResult {
  RefGroup total;
  std::map<std::optional<std::string>, RefGroup> groups;
};

class Reference {
 public:
  explicit Reference(const RefConfig& config) : config_(config), steps_(config.steps.size()) {}

  RefResult Run(const std::vector<RawEvent>& raw) {
    // The events the funnel reads (steps and exclusions), in the documented row order.
    std::vector<Selector> selectors = config_.steps;
    for (const auto& exclusion : config_.exclusions) selectors.push_back(exclusion.selector);
    std::vector<std::string> keys = config_.hold;
    if (config_.breakdown) keys.push_back(*config_.breakdown);
    const std::vector<RawEvent> events = Selected(raw, selectors, keys);
    RefResult result;
    result.total = Empty();
    std::map<uint32_t, std::vector<RawEvent>> by_user;
    for (const auto& event : events) by_user[event.user].push_back(event);
    for (const auto& [user, user_events] : by_user) {
      // Pairs in the held values' text order.
      std::map<std::vector<std::string>, std::vector<RawEvent>> pairs;
      for (const auto& event : user_events) {
        std::vector<std::string> held;
        bool missing = false;
        for (const auto& key : config_.hold) {
          auto value = Prop(event, key);
          if (!value) missing = true;
          held.push_back(value.value_or(""));
        }
        if (!missing) pairs[held].push_back(event);
      }
      std::vector<Outcome> outcomes;
      for (const auto& [held, pair_events] : pairs) {
        Outcome outcome;
        if (Best(pair_events, outcome)) outcomes.push_back(outcome);
      }
      Add(result.total, outcomes, false, std::nullopt, user);
      std::set<std::optional<std::string>> values;
      for (const auto& outcome : outcomes) values.insert(outcome.value);
      for (const auto& value : values) {
        auto [it, fresh] = result.groups.try_emplace(value, Empty());
        Add(it->second, outcomes, true, value, user);
      }
    }
    return result;
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

  RefGroup Empty() const {
    RefGroup group;
    group.users.assign(steps_, 0);
    group.from_previous.resize(steps_);
    group.from_first.resize(steps_);
    group.user_ids.resize(steps_);
    return group;
  }

  bool AnyStep(const RawEvent& event) const {
    for (const auto& step : config_.steps) {
      if (step.Matches(event)) return true;
    }
    return false;
  }

  Attempt Sequential(const std::vector<RawEvent>& events, size_t start) const {
    Attempt attempt;
    const int64_t t0 = events[start].time, deadline = t0 + config_.window;
    attempt.reached = 0;
    attempt.t = {t0};
    attempt.event = {start};
    for (size_t step = 1; step < steps_; ++step) {
      std::optional<size_t> found;
      for (size_t idx = 0; idx < events.size(); ++idx) {
        const RawEvent& event = events[idx];
        if (!config_.steps[step].Matches(event) || event.time <= attempt.t.back() || event.time > deadline) continue;
        if (!found || event.time < events[*found].time) found = idx;
      }
      if (!found) break;
      if (config_.order == FunnelOrder::kStrict) {
        bool interrupted = false;
        for (const auto& event : events) {
          if (event.time > attempt.t.back() && event.time < events[*found].time && AnyStep(event) &&
              !config_.steps[step].Matches(event)) {
            interrupted = true;
          }
        }
        if (interrupted) break;
      }
      attempt.reached = static_cast<int>(step);
      attempt.t.push_back(events[*found].time);
      attempt.event.push_back(*found);
    }
    return attempt;
  }

  Attempt AnyOrder(const std::vector<RawEvent>& events, int64_t t0) const {
    std::vector<std::pair<size_t, size_t>> firsts;  // (event, step)
    for (size_t step = 0; step < steps_; ++step) {
      for (size_t idx = 0; idx < events.size(); ++idx) {
        if (events[idx].time >= t0 && events[idx].time <= t0 + config_.window && config_.steps[step].Matches(events[idx])) {
          firsts.emplace_back(idx, step);
          break;
        }
      }
    }
    std::sort(firsts.begin(), firsts.end());
    Attempt attempt;
    attempt.reached = static_cast<int>(firsts.size()) - 1;
    for (const auto& [idx, step] : firsts) {
      attempt.t.push_back(events[idx].time);
      attempt.event.push_back(idx);
    }
    return attempt;
  }

  void Exclude(const std::vector<RawEvent>& events, Attempt& attempt) const {
    int final_step = attempt.reached;
    for (const auto& exclusion : config_.exclusions) {
      const int from = static_cast<int>(exclusion.from), to = static_cast<int>(exclusion.to);
      if (from > attempt.reached) continue;
      for (const auto& event : events) {
        if (!exclusion.selector.Matches(event) || event.time <= attempt.t[from]) continue;
        const bool inside = to <= attempt.reached ? event.time < attempt.t[to]
                                                  : event.time <= attempt.t[0] + config_.window;
        if (inside) final_step = std::min(final_step, from);
      }
    }
    attempt.reached = final_step;
  }

  bool Best(const std::vector<RawEvent>& events, Outcome& out) const {
    Attempt best;
    for (size_t idx = 0; idx < events.size(); ++idx) {
      const bool entry = config_.order == FunnelOrder::kAnyOrder ? AnyStep(events[idx])
                                                                   : config_.steps[0].Matches(events[idx]);
      if (!entry) continue;
      Attempt attempt = config_.order == FunnelOrder::kAnyOrder ? AnyOrder(events, events[idx].time)
                                                                : Sequential(events, idx);
      Exclude(events, attempt);
      if (attempt.reached > best.reached) best = attempt;
      if (config_.entry == FunnelEntry::kFirstTouch) break;
    }
    if (best.reached < 0) return false;
    out.reached = best.reached;
    out.t = best.t;
    const size_t event = best.event[config_.attribution == FunnelAttribution::kFirstStep ? 0 : best.reached];
    if (config_.breakdown) out.value = Prop(events[event], *config_.breakdown);
    return true;
  }

  void Add(RefGroup& group, const std::vector<Outcome>& outcomes, bool by_value,
           const std::optional<std::string>& value, uint32_t user) const {
    for (size_t step = 0; step < steps_; ++step) {
      const Outcome* chosen = nullptr;
      for (const auto& outcome : outcomes) {
        if (by_value && outcome.value != value) continue;
        if (outcome.reached < static_cast<int>(step)) continue;
        if (chosen == nullptr || outcome.t[0] < chosen->t[0]) chosen = &outcome;
      }
      if (chosen == nullptr) continue;
      ++group.users[step];
      group.user_ids[step].push_back(user);  // users come in ascending order
      if (step > 0) {
        group.from_previous[step].push_back(chosen->t[step] - chosen->t[step - 1]);
        group.from_first[step].push_back(chosen->t[step] - chosen->t[0]);
      }
    }
    for (auto& values : group.from_previous) std::sort(values.begin(), values.end());
    for (auto& values : group.from_first) std::sort(values.begin(), values.end());
  }

  const RefConfig& config_;
  const size_t steps_;
};

// --- Running the engine the way the request layer does ----------------------------------------------------

FunnelResult RunEngine(const std::vector<RawEvent>& raw, const RefConfig& config, size_t threads = 1,
                       bool collect_users = false) {
  std::vector<Selector> selectors = config.steps;
  for (const auto& exclusion : config.exclusions) selectors.push_back(exclusion.selector);
  std::vector<std::string> keys = config.hold;
  if (config.breakdown) keys.push_back(*config.breakdown);
  const Timeline timeline = BuildTimeline(raw, selectors, keys);
  FunnelSpec spec;
  spec.steps = config.steps.size();
  for (size_t idx = 0; idx < config.exclusions.size(); ++idx) {
    spec.exclusions.push_back({config.steps.size() + idx, config.exclusions[idx].from, config.exclusions[idx].to});
  }
  spec.window_ms = config.window;
  spec.order = config.order;
  spec.entry = config.entry;
  spec.hold_keys = config.hold.size();
  if (config.breakdown) spec.breakdown_key = config.hold.size();
  spec.attribution = config.attribution;
  spec.threads = threads;
  spec.collect_users = collect_users;
  return RunFunnel(timeline, spec);
}

std::vector<uint32_t> Ids(const Roaring& bitmap) {
  std::vector<uint32_t> ids(bitmap.cardinality());
  bitmap.toUint32Array(ids.data());
  return ids;
}

// The engine's group against the reference's; with `users`, each step's user set too (else it must be empty: not
// collected).
void ExpectSameGroup(const FunnelGroup& engine, const RefGroup& reference, const std::string& what,
                     bool users = false) {
  ASSERT_EQ(engine.steps.size(), reference.users.size()) << what;
  for (size_t step = 0; step < engine.steps.size(); ++step) {
    EXPECT_EQ(engine.steps[step].users, reference.users[step]) << what << " step " << step;
    EXPECT_EQ(engine.steps[step].ms_from_previous, reference.from_previous[step]) << what << " step " << step;
    EXPECT_EQ(engine.steps[step].ms_from_first, reference.from_first[step]) << what << " step " << step;
    if (users) {
      EXPECT_EQ(engine.steps[step].user_ids.cardinality(), engine.steps[step].users) << what << " step " << step;
      EXPECT_EQ(Ids(engine.steps[step].user_ids), reference.user_ids[step]) << what << " step " << step;
    } else {
      EXPECT_TRUE(engine.steps[step].user_ids.isEmpty()) << what << " step " << step;
    }
  }
}

void ExpectMatchesReference(const std::vector<RawEvent>& raw, const RefConfig& config, const std::string& what,
                            size_t threads = 1, bool users = false) {
  const FunnelResult engine = RunEngine(raw, config, threads, users);
  const RefResult reference = Reference(config).Run(raw);
  ExpectSameGroup(engine.total, reference.total, what + " total", users);
  if (!config.breakdown) {
    EXPECT_TRUE(engine.breakdown.empty()) << what;
    return;
  }
  ASSERT_EQ(engine.breakdown.size(), reference.groups.size()) << what;
  for (const auto& group : engine.breakdown) {
    auto it = reference.groups.find(group.value);
    ASSERT_NE(it, reference.groups.end()) << what << " group " << group.value.value_or("(null)");
    ExpectSameGroup(group, it->second, what + " group " + group.value.value_or("(null)"), users);
  }
  // Engine order: value text order, the null group last.
  for (size_t idx = 1; idx < engine.breakdown.size(); ++idx) {
    const auto& a = engine.breakdown[idx - 1].value;
    const auto& b = engine.breakdown[idx].value;
    EXPECT_TRUE(a && (!b || *a < *b)) << what;
  }
}

// --- Hand-made cases ---------------------------------------------------------------------------------------

RawEvent E(uint32_t user, int64_t time, std::string type, std::map<std::string, std::string> props = {}, int v = 0) {
  RawEvent event;
  event.user = user;
  event.time = time;
  event.type = std::move(type);
  event.v = v;
  event.props = std::move(props);
  return event;
}

RefConfig Steps(std::vector<std::string> types, int64_t window = 1000) {
  RefConfig config;
  for (auto& type : types) config.steps.push_back({std::move(type), 0});
  config.window = window;
  return config;
}

std::vector<uint64_t> Users(const FunnelGroup& group) {
  std::vector<uint64_t> users;
  for (const auto& step : group.steps) users.push_back(step.users);
  return users;
}

class FunnelTest : public ::testing::Test {};

TEST_F(FunnelTest, WindowIsInclusiveOfItsEnd) {
  const std::vector<RawEvent> events = {E(1, 0, "a"), E(1, 1000, "b"), E(2, 0, "a"), E(2, 1001, "b")};
  const auto result = RunEngine(events, Steps({"a", "b"}, 1000));
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(result.total.steps[1].ms_from_previous, (std::vector<int64_t>{1000}));
  ExpectMatchesReference(events, Steps({"a", "b"}, 1000), "window");
}

TEST_F(FunnelTest, EqualTimestampsNeverAdvance) {
  // User 1: a and b at the same millisecond: b does not count. User 2: a, b at the same time, then b later.
  const std::vector<RawEvent> events = {E(1, 10, "a"), E(1, 10, "b"), E(2, 10, "a"), E(2, 10, "b"), E(2, 20, "b")};
  const auto result = RunEngine(events, Steps({"a", "b"}));
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(result.total.steps[1].ms_from_previous, (std::vector<int64_t>{10}));
}

TEST_F(FunnelTest, OneEventNeverServesTwoStepsOfTheSameType) {
  const std::vector<RawEvent> events = {E(1, 10, "a"), E(2, 10, "a"), E(2, 11, "a")};
  const auto result = RunEngine(events, Steps({"a", "a"}));
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{2, 1}));
}

TEST_F(FunnelTest, FirstTouchHasOneAttemptAnyTouchTakesTheBest) {
  // The first a's window misses b; the second a's reaches it.
  const std::vector<RawEvent> events = {E(1, 0, "a"), E(1, 5000, "a"), E(1, 5500, "b")};
  auto config = Steps({"a", "b"}, 1000);
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{1, 0}));
  config.entry = FunnelEntry::kAnyTouch;
  const auto result = RunEngine(events, config);
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{1, 1}));
  EXPECT_EQ(result.total.steps[1].ms_from_first, (std::vector<int64_t>{500}));
}

TEST_F(FunnelTest, AnyTouchTiesGoToTheEarliestStart) {
  // Both attempts reach b; the first (t0 = 0) decides the durations: 900, not 100.
  const std::vector<RawEvent> events = {E(1, 0, "a"), E(1, 800, "a"), E(1, 900, "b")};
  auto config = Steps({"a", "b"}, 1000);
  config.entry = FunnelEntry::kAnyTouch;
  const auto result = RunEngine(events, config);
  EXPECT_EQ(result.total.steps[1].ms_from_first, (std::vector<int64_t>{900}));
}

TEST_F(FunnelTest, OrderedTakesTheEarliestQualifyingEventPerStep) {
  // a b b c: step 1 at the first b (100), step 2 at c.
  const std::vector<RawEvent> events = {E(1, 0, "a"), E(1, 100, "b"), E(1, 300, "b"), E(1, 400, "c")};
  const auto result = RunEngine(events, Steps({"a", "b", "c"}));
  EXPECT_EQ(result.total.steps[1].ms_from_previous, (std::vector<int64_t>{100}));
  EXPECT_EQ(result.total.steps[2].ms_from_previous, (std::vector<int64_t>{300}));
  EXPECT_EQ(result.total.steps[2].ms_from_first, (std::vector<int64_t>{400}));
}

TEST_F(FunnelTest, StrictStopsAtAnotherStepsEventInBetween) {
  // User 1: a a b (the second a interrupts), user 2: a c b c (c interrupts before b), user 3: a x b (x is no step).
  const std::vector<RawEvent> events = {E(1, 0, "a"),   E(1, 10, "a"), E(1, 20, "b"), E(2, 0, "a"),
                                        E(2, 10, "c"),  E(2, 20, "b"), E(2, 30, "c"), E(3, 0, "a"),
                                        E(3, 10, "x"),  E(3, 20, "b"), E(3, 30, "c")};
  auto config = Steps({"a", "b", "c"});
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{3, 3, 2}));
  config.order = FunnelOrder::kStrict;
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{3, 1, 1}));
  config.entry = FunnelEntry::kAnyTouch;  // user 1's second a starts an attempt that reaches b
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{3, 2, 1}));
}

TEST_F(FunnelTest, StrictIgnoresOtherStepsAtTheSameTimestamp) {
  // c at the same time as a (t0) and at the same time as b: neither is "between".
  const std::vector<RawEvent> events = {E(1, 0, "a"), E(1, 0, "c"), E(1, 10, "c"), E(1, 10, "b"), E(1, 20, "c")};
  auto config = Steps({"a", "b", "c"});
  config.order = FunnelOrder::kStrict;
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{1, 1, 1}));
  ExpectMatchesReference(events, config, "strict same time");
}

TEST_F(FunnelTest, AnyOrderCountsDistinctStepsInTheWindow) {
  // User 1: c b a within the window: 3 steps; user 2: b then a after the window: 1 step; user 3: a only.
  const std::vector<RawEvent> events = {E(1, 0, "c"), E(1, 10, "b"), E(1, 1000, "a"), E(2, 0, "b"),
                                        E(2, 1001, "a"), E(3, 5, "a")};
  auto config = Steps({"a", "b", "c"}, 1000);
  config.order = FunnelOrder::kAnyOrder;
  const auto result = RunEngine(events, config);
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{3, 1, 1}));
  EXPECT_EQ(result.total.steps[2].ms_from_first, (std::vector<int64_t>{1000}));
  EXPECT_EQ(result.total.steps[1].ms_from_previous, (std::vector<int64_t>{10}));
  config.entry = FunnelEntry::kAnyTouch;  // user 2's a starts its own attempt: still one step
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{3, 1, 1}));
}

TEST_F(FunnelTest, ExclusionStrictlyBetweenStepsTruncatesTheAttempt) {
  // User 1: x between a and b; user 2: x at the same time as a (not between); user 3: x after b, c never comes,
  // inside the window (exclusion between 1 and 2); user 4: x after the window.
  const std::vector<RawEvent> events = {E(1, 0, "a"),   E(1, 5, "x"),   E(1, 10, "b"), E(1, 20, "c"),
                                        E(2, 0, "a"),   E(2, 0, "x"),   E(2, 10, "b"), E(2, 20, "c"),
                                        E(3, 0, "a"),   E(3, 10, "b"),  E(3, 500, "x"),
                                        E(4, 0, "a"),   E(4, 10, "b"),  E(4, 1001, "x")};
  auto config = Steps({"a", "b", "c"});
  config.exclusions.push_back({{"x", 0}, 0, 1});
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{4, 3, 1}));
  ExpectMatchesReference(events, config, "exclusion 0-1");
  config.exclusions = {{{"x", 0}, 1, 2}};
  // User 1: x at 5 is before b: fine; user 3: x in (t(b), t0 + window]: counted up to b (step 1) anyway.
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{4, 4, 2}));
  config.exclusions = {{{"x", 0}, 0, 2}};
  // User 3: x after b within the window, c not reached: back to step 0.
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{4, 2, 1}));
  ExpectMatchesReference(events, config, "exclusion 0-2");
}

TEST_F(FunnelTest, HoldConstantRunsPerPairAndCountsUsersOnce) {
  // User 1: a on g1, b on g2: no conversion. User 2: converts on g1 and g2 (counted once; durations of the pair
  // with the earliest t0, g2). User 3: a without game (no pair), then a, b on g3.
  const std::vector<RawEvent> events = {
      E(1, 0, "a", {{"g", "g1"}}),  E(1, 10, "b", {{"g", "g2"}}), E(2, 5, "a", {{"g", "g1"}}),
      E(2, 50, "b", {{"g", "g1"}}), E(2, 0, "a", {{"g", "g2"}}),  E(2, 100, "b", {{"g", "g2"}}),
      E(3, 0, "a"),                 E(3, 20, "a", {{"g", "g3"}}), E(3, 30, "b", {{"g", "g3"}})};
  auto config = Steps({"a", "b"});
  config.hold = {"g"};
  const auto result = RunEngine(events, config);
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(result.pairs, 4u);
  EXPECT_EQ(result.total.steps[1].ms_from_previous, (std::vector<int64_t>{10, 100}));
  ExpectMatchesReference(events, config, "hold");
  config.hold.clear();
  EXPECT_EQ(Users(RunEngine(events, config).total), (std::vector<uint64_t>{3, 3}));
}

TEST_F(FunnelTest, BreakdownAttributesFirstOrLastStepAndUsersMayBeInSeveralGroups) {
  const std::vector<RawEvent> events = {
      E(1, 0, "a", {{"g", "g1"}, {"c", "RU"}}), E(1, 10, "b", {{"g", "g1"}, {"c", "US"}}),
      E(1, 0, "a", {{"g", "g2"}, {"c", "DE"}}), E(2, 0, "a", {{"g", "g1"}}), E(2, 5, "b", {{"g", "g1"}, {"c", "RU"}})};
  auto config = Steps({"a", "b"});
  config.hold = {"g"};
  config.breakdown = "c";
  auto result = RunEngine(events, config);
  ASSERT_EQ(result.breakdown.size(), 3u);  // DE, RU, null
  EXPECT_EQ(result.breakdown[0].value, "DE");
  EXPECT_EQ(Users(result.breakdown[0]), (std::vector<uint64_t>{1, 0}));
  EXPECT_EQ(result.breakdown[1].value, "RU");
  EXPECT_EQ(Users(result.breakdown[1]), (std::vector<uint64_t>{1, 1}));
  EXPECT_EQ(result.breakdown[2].value, std::nullopt);
  EXPECT_EQ(Users(result.breakdown[2]), (std::vector<uint64_t>{1, 1}));
  ExpectMatchesReference(events, config, "first_step");
  config.attribution = FunnelAttribution::kLastStep;
  result = RunEngine(events, config);
  ASSERT_EQ(result.breakdown.size(), 3u);  // DE (user 1's g2 pair), RU (user 2), US (user 1's g1 pair)
  EXPECT_EQ(result.breakdown[2].value, "US");
  EXPECT_EQ(Users(result.breakdown[2]), (std::vector<uint64_t>{1, 1}));
  ExpectMatchesReference(events, config, "last_step");
}

TEST_F(FunnelTest, EmptyTimelineGivesZeroes) {
  const auto result = RunEngine({}, Steps({"a", "b", "c"}), 4);
  EXPECT_EQ(Users(result.total), (std::vector<uint64_t>{0, 0, 0}));
  EXPECT_EQ(result.pairs, 0u);
}

// --- Random data against the reference ---------------------------------------------------------------------

std::vector<RawEvent> RandomEvents(std::mt19937_64& rng, size_t users, size_t max_events, int64_t time_slots,
                                   int64_t slot_ms, size_t game_count = 3, size_t platform_count = 2) {
  const std::vector<std::string> types = {"a", "b", "c", "x"};
  std::vector<std::string> games, platforms;
  for (size_t idx = 0; idx < game_count; ++idx) games.push_back("g" + std::to_string(idx + 1));
  for (size_t idx = 0; idx < platform_count; ++idx) platforms.push_back("p" + std::to_string(idx + 1));
  const std::vector<std::string> countries = {"DE", "RU", "US"};
  std::vector<RawEvent> events;
  for (uint32_t user = 0; user < users; ++user) {
    const size_t count = std::uniform_int_distribution<size_t>(0, max_events)(rng);
    for (size_t idx = 0; idx < count; ++idx) {
      RawEvent event;
      event.user = user * 7 + 3;
      event.time = 1'700'000'000'000 + std::uniform_int_distribution<int64_t>(0, time_slots)(rng) * slot_ms;
      event.type = types[std::uniform_int_distribution<size_t>(0, types.size() - 1)(rng)];
      event.v = std::uniform_int_distribution<int>(0, 2)(rng);
      if (rng() % 6 != 0) event.props["g"] = games[rng() % games.size()];
      if (rng() % 3 != 0) event.props["p"] = platforms[rng() % platforms.size()];
      if (rng() % 4 != 0) event.props["c"] = countries[rng() % countries.size()];
      events.push_back(std::move(event));
    }
  }
  std::shuffle(events.begin(), events.end(), rng);
  return events;
}

RefConfig RandomConfig(std::mt19937_64& rng) {
  RefConfig config;
  const std::vector<std::string> step_types = {"a", "b", "c"};
  const size_t steps = std::uniform_int_distribution<size_t>(2, 4)(rng);
  for (size_t idx = 0; idx < steps; ++idx) {
    config.steps.push_back({step_types[rng() % step_types.size()], static_cast<int>(rng() % 3 == 0)});
  }
  const size_t exclusions = rng() % 3;
  for (size_t idx = 0; idx < exclusions; ++idx) {
    RefConfig::Exclusion exclusion;
    exclusion.selector = {rng() % 2 ? "x" : "c", static_cast<int>(rng() % 2)};
    exclusion.from = rng() % (steps - 1);
    exclusion.to = exclusion.from + 1 + rng() % (steps - 1 - exclusion.from);
    config.exclusions.push_back(exclusion);
  }
  const int64_t windows[] = {1000, 5000, 15000, 60000};
  config.window = windows[rng() % 4];
  config.order = static_cast<FunnelOrder>(rng() % 3);
  config.entry = static_cast<FunnelEntry>(rng() % 2);
  switch (rng() % 4) {
    case 0: break;
    case 1: config.hold = {"g"}; break;
    case 2: config.hold = {"g", "p"}; break;
    default: config.hold = {"p"}; break;
  }
  switch (rng() % 4) {
    case 0: break;
    case 1: config.breakdown = "c"; break;
    case 2: config.breakdown = "g"; break;
    default: config.breakdown = "p"; break;
  }
  config.attribution = static_cast<FunnelAttribution>(rng() % 2);
  return config;
}

std::string Describe(const RefConfig& config, uint64_t seed) {
  std::string text = "seed " + std::to_string(seed) + " steps";
  for (const auto& step : config.steps) text += " " + step.type + (step.v_min ? "+" : "");
  text += " order " + std::to_string(static_cast<int>(config.order)) + " entry " +
          std::to_string(static_cast<int>(config.entry)) + " window " + std::to_string(config.window) + " hold " +
          std::to_string(config.hold.size()) + " exclusions " + std::to_string(config.exclusions.size()) +
          " breakdown " + config.breakdown.value_or("-") + " attribution " +
          std::to_string(static_cast<int>(config.attribution));
  return text;
}

TEST_F(FunnelTest, MatchesReferenceOnRandomData) {
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    std::mt19937_64 rng(seed);
    const RefConfig config = RandomConfig(rng);
    // Dense times (many equal timestamps, windows that cut), then sparse.
    const auto events = seed % 2 ? RandomEvents(rng, 40, 30, 40, 1000) : RandomEvents(rng, 40, 15, 400, 250);
    ExpectMatchesReference(events, config, Describe(config, seed));
    if (HasFailure()) return;
  }
}

TEST_F(FunnelTest, EveryModeMatchesReference) {
  // Each order and entry mode with and without exclusions, hold_constant and both attributions.
  uint64_t seed = 1000;
  for (int order = 0; order < 3; ++order) {
    for (int entry = 0; entry < 2; ++entry) {
      for (int variant = 0; variant < 8; ++variant) {
        std::mt19937_64 rng(++seed);
        RefConfig config = Steps({"a", "b", "c"}, variant % 2 ? 5000 : 20000);
        config.order = static_cast<FunnelOrder>(order);
        config.entry = static_cast<FunnelEntry>(entry);
        if (variant & 2) config.exclusions.push_back({{"x", 0}, 0, 2});
        if (variant & 4) config.hold = {"g"};
        config.breakdown = "c";
        config.attribution = static_cast<FunnelAttribution>(variant % 2);
        const auto events = RandomEvents(rng, 60, 40, 60, 1000);
        ExpectMatchesReference(events, config, Describe(config, seed));
        if (HasFailure()) return;
      }
    }
  }
}

TEST_F(FunnelTest, HeavyUsersMatchReference) {
  // Few users with many events: long any_touch scans, the ordered tables, the any_order sliding window.
  for (uint64_t seed = 2000; seed < 2030; ++seed) {
    std::mt19937_64 rng(seed);
    RefConfig config = RandomConfig(rng);
    config.entry = FunnelEntry::kAnyTouch;
    const auto events = RandomEvents(rng, 3, 300, 3000, 100);
    ExpectMatchesReference(events, config, Describe(config, seed));
    if (HasFailure()) return;
  }
}

TEST_F(FunnelTest, ManyPairsOfSeveralHeldKeysMatchReference) {
  // Users with dozens of (game, platform) pairs: beyond the linear search of held tuples, rows sorted by them.
  for (uint64_t seed = 3000; seed < 3024; ++seed) {
    std::mt19937_64 rng(seed);
    RefConfig config = RandomConfig(rng);
    config.hold = {"g", "p"};
    if (seed % 3 == 0) config.hold.push_back("c");
    config.order = static_cast<FunnelOrder>(seed % 3);
    config.entry = static_cast<FunnelEntry>((seed / 3) % 2);
    const auto events = RandomEvents(rng, 5, 400, 300, 1000, 12, 6);
    ExpectMatchesReference(events, config, Describe(config, seed));
    if (HasFailure()) return;
  }
}

TEST_F(FunnelTest, ResultDoesNotDependOnTheThreadCount) {
  std::mt19937_64 rng(77);
  RefConfig config = Steps({"a", "b", "c"}, 20000);
  config.hold = {"g"};
  config.breakdown = "c";
  config.entry = FunnelEntry::kAnyTouch;
  const auto events = RandomEvents(rng, 3000, 20, 100, 1000);
  const FunnelResult one = RunEngine(events, config, 1);
  for (size_t threads : {2, 3, 8}) {
    const FunnelResult many = RunEngine(events, config, threads);
    EXPECT_EQ(many.pairs, one.pairs);
    ASSERT_EQ(many.breakdown.size(), one.breakdown.size());
    for (size_t step = 0; step < 3; ++step) {
      EXPECT_EQ(many.total.steps[step].users, one.total.steps[step].users);
      EXPECT_EQ(many.total.steps[step].ms_from_first, one.total.steps[step].ms_from_first);
      for (size_t group = 0; group < one.breakdown.size(); ++group) {
        EXPECT_EQ(many.breakdown[group].steps[step].users, one.breakdown[group].steps[step].users);
        EXPECT_EQ(many.breakdown[group].steps[step].ms_from_previous, one.breakdown[group].steps[step].ms_from_previous);
      }
    }
  }
  ExpectMatchesReference(events, config, "3000 users, 4 threads", 4);
}

TEST_F(FunnelTest, StepUsersAreTheUsersCountedAtEachStep) {
  // The users of every step of the whole funnel and of every breakdown group, each mode, one and several threads.
  for (uint64_t seed = 4000; seed < 4120; ++seed) {
    std::mt19937_64 rng(seed);
    const RefConfig config = RandomConfig(rng);
    const auto events = seed % 2 ? RandomEvents(rng, 60, 30, 40, 1000) : RandomEvents(rng, 60, 15, 400, 250);
    ExpectMatchesReference(events, config, Describe(config, seed) + " users", seed % 3 == 0 ? 4 : 1, true);
    if (HasFailure()) return;
  }
}

TEST_F(FunnelTest, StepUsersShrinkStepByStepAndDoNotDependOnTheThreadCount) {
  std::mt19937_64 rng(78);
  RefConfig config = Steps({"a", "b", "c"}, 20000);
  config.hold = {"g"};
  config.entry = FunnelEntry::kAnyTouch;
  const auto events = RandomEvents(rng, 3000, 20, 100, 1000);
  const FunnelResult one = RunEngine(events, config, 1, true);
  for (size_t step = 1; step < 3; ++step) {
    EXPECT_TRUE(one.total.steps[step].user_ids.isSubset(one.total.steps[step - 1].user_ids)) << step;
  }
  EXPECT_GT(one.total.steps[2].users, 0u);
  for (size_t threads : {2, 3, 8}) {
    const FunnelResult many = RunEngine(events, config, threads, true);
    for (size_t step = 0; step < 3; ++step) {
      EXPECT_EQ(many.total.steps[step].user_ids, one.total.steps[step].user_ids) << threads << " threads, step " << step;
    }
  }
}

TEST_F(FunnelTest, StepUsersAreLeftEmptyUnlessAsked) {
  std::mt19937_64 rng(79);
  RefConfig config = Steps({"a", "b"}, 20000);
  config.breakdown = "c";
  const auto events = RandomEvents(rng, 200, 20, 100, 1000);
  const FunnelResult result = RunEngine(events, config, 4, false);
  ASSERT_GT(result.total.steps[0].users, 0u);
  for (const FunnelGroup* group : {&result.total, &result.breakdown.front()}) {
    for (const auto& step : group->steps) EXPECT_TRUE(step.user_ids.isEmpty());
  }
}

}  // namespace
}  // namespace analytics::query
