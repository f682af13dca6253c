// Experiments: CountExperiment against a plain reference over raw events (random data with fixed seeds and
// hand-made edge cases), AnalyzeExperiment and query/stats.h against closed forms, published values and
// independent numeric integration.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "query/experiment.h"
#include "query/stats.h"

namespace analytics::query {
namespace {

// --- Raw events and Timelines built from them ------------------------------------------------------------

struct Raw {
  uint32_t user = 0;
  int64_t time_ms = 0;
  std::string type;
  std::optional<std::string> experiment;
  std::optional<std::string> variant;
  double number = std::nan("");  // NaN: the property is not a number
  bool big = false;              // a property a goal filters on
};

using Predicate = std::function<bool(const Raw&)>;

// A joined Timeline of the events matching one of `selectors` (bit i = selectors[i]). user_begin has a slot per
// dense id in [0, user_space) (`compact` false) or only per user with rows (`compact` true): the engine must
// read both. Rows of one user at one time are in random order (the engine must not depend on how ties are
// ordered).
Timeline BuildTimeline(const std::vector<Raw>& raws, const std::vector<Predicate>& selectors, bool variant_key,
                       size_t user_space, std::mt19937_64& rng, bool compact = false) {
  std::vector<std::pair<const Raw*, uint32_t>> rows;
  for (const Raw& raw : raws) {
    uint32_t matches = 0;
    for (size_t selector_idx = 0; selector_idx < selectors.size(); ++selector_idx) {
      if (selectors[selector_idx](raw)) matches |= uint32_t{1} << selector_idx;
    }
    if (matches != 0) rows.emplace_back(&raw, matches);
  }
  std::shuffle(rows.begin(), rows.end(), rng);
  std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::pair(a.first->user, a.first->time_ms) < std::pair(b.first->user, b.first->time_ms);
  });
  Timeline timeline;
  std::set<std::string> types, variants;
  for (const auto& [raw, matches] : rows) {
    types.insert(raw->type);
    if (raw->variant) variants.insert(*raw->variant);
  }
  timeline.type_names.assign(types.begin(), types.end());
  if (variant_key) {
    timeline.key_values.emplace_back(variants.begin(), variants.end());
    timeline.keys.emplace_back();
  }
  timeline.user_begin.assign(user_space + 1, 0);
  for (const auto& [raw, matches] : rows) {
    EXPECT_LT(raw->user, user_space);
    timeline.users.push_back(raw->user);
    timeline.time_ms.push_back(raw->time_ms);
    timeline.matches.push_back(matches);
    timeline.types.push_back(static_cast<uint32_t>(
        std::lower_bound(timeline.type_names.begin(), timeline.type_names.end(), raw->type) -
        timeline.type_names.begin()));
    if (variant_key) {
      const auto& values = timeline.key_values[0];
      timeline.keys[0].push_back(raw->variant ? static_cast<uint32_t>(std::lower_bound(values.begin(), values.end(),
                                                                                      *raw->variant) -
                                                                     values.begin())
                                              : kMissingKey);
    }
    timeline.numbers.push_back(raw->number);
    ++timeline.user_begin[raw->user + 1];
  }
  for (size_t user = 0; user < user_space; ++user) timeline.user_begin[user + 1] += timeline.user_begin[user];
  if (compact) {
    std::vector<uint32_t> slots = {0};
    for (size_t user = 0; user < user_space; ++user) {
      if (timeline.user_begin[user + 1] != timeline.user_begin[user]) slots.push_back(timeline.user_begin[user + 1]);
    }
    timeline.user_begin = std::move(slots);
  }
  return timeline;
}

// --- The reference: plain loops over raw events ----------------------------------------------------------

struct RefGoal {
  GoalKind kind;
  Predicate event;
  std::optional<int64_t> window_ms;
};

struct RefVariant {
  uint64_t exposed = 0, multiple = 0;
  std::vector<uint64_t> converters;
  std::vector<std::vector<long double>> values;  // per goal, per exposed user
};

std::map<std::string, RefVariant> Reference(const std::vector<Raw>& raws, const Predicate& is_exposure,
                                            const std::vector<RefGoal>& goals, int64_t start_ms, int64_t end_ms) {
  std::map<uint32_t, std::vector<const Raw*>> by_user;
  for (const Raw& raw : raws) by_user[raw.user].push_back(&raw);
  std::map<std::string, RefVariant> out;
  for (const auto& [user, events] : by_user) {
    const Raw* first = nullptr;
    std::set<std::string> seen;
    for (const Raw* raw : events) {
      if (!is_exposure(*raw) || !raw->variant || raw->variant->empty() || raw->time_ms < start_ms ||
          raw->time_ms >= end_ms) {
        continue;
      }
      seen.insert(*raw->variant);
      if (first == nullptr || raw->time_ms < first->time_ms ||
          (raw->time_ms == first->time_ms && *raw->variant < *first->variant)) {
        first = raw;
      }
    }
    if (first == nullptr) continue;
    RefVariant& variant = out[*first->variant];
    variant.converters.resize(goals.size());
    variant.values.resize(goals.size());
    ++variant.exposed;
    if (seen.size() > 1) ++variant.multiple;
    for (size_t goal_idx = 0; goal_idx < goals.size(); ++goal_idx) {
      bool converted = false;
      long double sum = 0;
      for (const Raw* raw : events) {
        if (!goals[goal_idx].event(*raw) || raw->time_ms <= first->time_ms || raw->time_ms >= end_ms) continue;
        if (goals[goal_idx].window_ms && raw->time_ms - first->time_ms > *goals[goal_idx].window_ms) continue;
        converted = true;
        if (!std::isnan(raw->number)) sum += raw->number;
      }
      variant.converters[goal_idx] += converted ? 1 : 0;
      variant.values[goal_idx].push_back(sum);
    }
  }
  return out;
}

void ExpectMatchesReference(const std::vector<VariantCounts>& counts, const std::map<std::string, RefVariant>& ref,
                            const std::vector<RefGoal>& goals) {
  ASSERT_EQ(counts.size(), ref.size());
  auto it = ref.begin();
  for (const VariantCounts& variant : counts) {
    SCOPED_TRACE("variant '" + variant.variant + "'");
    ASSERT_EQ(variant.variant, it->first);
    const RefVariant& expected = it->second;
    EXPECT_EQ(variant.exposed_users, expected.exposed);
    EXPECT_EQ(variant.users_with_multiple_variants, expected.multiple);
    ASSERT_EQ(variant.goals.size(), goals.size());
    for (size_t goal_idx = 0; goal_idx < goals.size(); ++goal_idx) {
      SCOPED_TRACE("goal " + std::to_string(goal_idx));
      EXPECT_EQ(variant.goals[goal_idx].converters, expected.converters[goal_idx]);
      if (goals[goal_idx].kind != GoalKind::kMean) continue;
      const auto& values = expected.values[goal_idx];
      long double sum = 0;
      for (long double value : values) sum += value;
      const long double mean = sum / values.size();
      long double m2 = 0;
      for (long double value : values) m2 += (value - mean) * (value - mean);
      const Moments& moments = variant.goals[goal_idx].values;
      EXPECT_EQ(moments.n, values.size());
      EXPECT_NEAR(moments.mean, static_cast<double>(mean), 1e-9 * (1 + std::fabs(static_cast<double>(mean))));
      EXPECT_NEAR(moments.m2, static_cast<double>(m2), 1e-9 * (1 + static_cast<double>(m2)));
    }
    ++it;
  }
}

void ExpectSameCounts(const std::vector<VariantCounts>& a, const std::vector<VariantCounts>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t variant_idx = 0; variant_idx < a.size(); ++variant_idx) {
    EXPECT_EQ(a[variant_idx].variant, b[variant_idx].variant);
    EXPECT_EQ(a[variant_idx].exposed_users, b[variant_idx].exposed_users);
    EXPECT_EQ(a[variant_idx].users_with_multiple_variants, b[variant_idx].users_with_multiple_variants);
    ASSERT_EQ(a[variant_idx].goals.size(), b[variant_idx].goals.size());
    for (size_t goal_idx = 0; goal_idx < a[variant_idx].goals.size(); ++goal_idx) {
      const GoalCounts& x = a[variant_idx].goals[goal_idx];
      const GoalCounts& y = b[variant_idx].goals[goal_idx];
      EXPECT_EQ(x.converters, y.converters);
      EXPECT_EQ(x.values.n, y.values.n);
      EXPECT_EQ(x.values.mean, y.values.mean);  // bit for bit: the thread count must not change the sums
      EXPECT_EQ(x.values.m2, y.values.m2);
    }
  }
}

// --- CountExperiment on random data ----------------------------------------------------------------------

bool IsExposure(const Raw& raw) { return raw.type == "exp" && raw.experiment == std::string("e1"); }
bool IsBuy(const Raw& raw) { return raw.type == "buy"; }
bool IsBigBuy(const Raw& raw) { return raw.type == "buy" && raw.big; }
bool IsView(const Raw& raw) { return raw.type == "view"; }
bool IsAnyExposure(const Raw& raw) { return raw.type == "exp"; }

std::vector<Raw> RandomEvents(uint64_t seed, size_t active_users, uint32_t user_space, size_t events) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> users(active_users);
  for (auto& user : users) user = static_cast<uint32_t>(rng() % user_space);
  static const std::vector<std::optional<std::string>> kVariants = {"A", "B", "A", "B", "C", "", "a", "\xC3\xA9",
                                                                    std::nullopt};
  static const std::vector<std::optional<std::string>> kExperiments = {"e1", "e1", "e1", "e2", std::nullopt};
  static const double kNumbers[] = {0, 1.5, 100, 1e6 + 0.25, -3, 499.99};
  std::vector<Raw> raws;
  for (size_t event_idx = 0; event_idx < events; ++event_idx) {
    Raw raw;
    raw.user = users[rng() % users.size()];
    raw.time_ms = static_cast<int64_t>(rng() % 600) * 10;  // [0, 6000) on a 10 ms grid: many equal times
    const uint64_t kind = rng() % 10;
    raw.type = kind < 3 ? "exp" : kind < 6 ? "buy" : kind < 9 ? "view" : "other";
    if (raw.type == "exp") {
      raw.experiment = kExperiments[rng() % kExperiments.size()];
      raw.variant = kVariants[rng() % kVariants.size()];
    }
    if (rng() % 10 < 7) raw.number = kNumbers[rng() % std::size(kNumbers)];
    raw.big = rng() % 2 == 0;
    raws.push_back(std::move(raw));
  }
  return raws;
}

class ExperimentCountTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ExperimentCountTest, MatchesReferenceOnRandomEventsWhateverTheThreadCount) {
  const uint64_t seed = GetParam();
  // Seed 6: more exposed users than one range of the pass holds, in timelines of users with rows only.
  const uint32_t kUserSpace = seed == 6 ? 400000 : 70000;  // over several ranges of the pass when every id is listed
  const std::vector<Raw> raws =
      seed == 6 ? RandomEvents(seed, 60000, kUserSpace, 700000) : RandomEvents(seed, 3000, kUserSpace, 40000);
  std::mt19937_64 rng(seed * 31 + 7);
  // Timeline 0: the exposures, buys and any exposure (goal); timeline 1: big buys and views, a smaller user space.
  // Seeds 1 and 3: both timelines list every id; 2, 4 and 6: only users with rows; 5: one of each.
  const bool compact_main = seed % 2 == 0, compact_side = seed % 2 == 0 || seed == 5;
  const Timeline main = BuildTimeline(raws, {IsExposure, IsBuy, IsAnyExposure}, true, kUserSpace, rng, compact_main);
  uint32_t max_user = 0;
  for (const Raw& raw : raws) {
    if (IsBigBuy(raw) || IsView(raw)) max_user = std::max(max_user, raw.user);
  }
  const Timeline side = BuildTimeline(raws, {IsBigBuy, IsView}, false, max_user + 1, rng, compact_side);

  const int64_t start_ms = 1000, end_ms = 5000;
  const std::vector<RefGoal> ref_goals = {
      {GoalKind::kConversion, IsBuy, std::nullopt}, {GoalKind::kConversion, IsBuy, 50},
      {GoalKind::kMean, IsBuy, std::nullopt},       {GoalKind::kMean, IsBigBuy, 200},
      {GoalKind::kConversion, IsView, 0},           {GoalKind::kConversion, IsAnyExposure, std::nullopt},
      {GoalKind::kMean, IsView, 1000},
  };
  ExperimentInput input;
  input.timelines = {&main, &side};
  input.exposure_selector = 0;
  input.variant_key = 0;
  input.start_ms = start_ms;
  input.end_ms = end_ms;
  input.goals = {
      {GoalKind::kConversion, 0, 1, std::nullopt}, {GoalKind::kConversion, 0, 1, 50},
      {GoalKind::kMean, 0, 1, std::nullopt},       {GoalKind::kMean, 1, 0, 200},
      {GoalKind::kConversion, 1, 1, 0},            {GoalKind::kConversion, 0, 2, std::nullopt},
      {GoalKind::kMean, 1, 1, 1000},
  };
  const auto one = CountExperiment(input, 1);
  ExpectMatchesReference(one, Reference(raws, IsExposure, ref_goals, start_ms, end_ms), ref_goals);
  ExpectSameCounts(one, CountExperiment(input, 3));
  uint64_t exposed = 0;
  for (const auto& variant : one) exposed += variant.exposed_users;
  EXPECT_GT(exposed, seed == 6 ? 32768u : 1000u);  // the data exercises the pass (seed 6: over two ranges)
}

INSTANTIATE_TEST_SUITE_P(Seeds, ExperimentCountTest, ::testing::Values(1, 2, 3, 4, 5, 6));

// --- CountExperiment: hand-made edge cases -----------------------------------------------------------------

class ExperimentEdgeTest : public ::testing::Test {
 protected:
  void Add(uint32_t user, int64_t time_ms, std::string type, std::optional<std::string> variant = std::nullopt,
           double number = std::nan("")) {
    Raw raw;
    raw.user = user;
    raw.time_ms = time_ms;
    raw.type = std::move(type);
    if (raw.type == "exp") raw.experiment = "e1";
    raw.variant = std::move(variant);
    raw.number = number;
    raws_.push_back(raw);
  }
  std::vector<VariantCounts> Count(std::optional<int64_t> window_ms, GoalKind kind = GoalKind::kConversion) {
    timeline_ = BuildTimeline(raws_, {IsExposure, IsBuy}, true, 10, rng_);
    ExperimentInput input;
    input.timelines = {&timeline_};
    input.start_ms = 1000;
    input.end_ms = 2000;
    input.goals = {{kind, 0, 1, window_ms}};
    return CountExperiment(input, 1);
  }
  const VariantCounts* Find(const std::vector<VariantCounts>& counts, const std::string& variant) {
    for (const auto& item : counts) {
      if (item.variant == variant) return &item;
    }
    return nullptr;
  }

  std::vector<Raw> raws_;
  Timeline timeline_;
  std::mt19937_64 rng_{42};
};

TEST_F(ExperimentEdgeTest, EqualTimeExposuresTakeTheSmallestVariantTextAndCountAsMultiple) {
  Add(1, 1500, "exp", "B");
  Add(1, 1500, "exp", "A");
  Add(1, 1600, "exp", "A");
  Add(2, 1500, "exp", "B");
  Add(2, 1700, "exp", "B");  // repeats of one variant are not "multiple"
  const auto counts = Count(std::nullopt);
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0].variant, "A");
  EXPECT_EQ(counts[0].exposed_users, 1u);
  EXPECT_EQ(counts[0].users_with_multiple_variants, 1u);
  EXPECT_EQ(counts[1].variant, "B");
  EXPECT_EQ(counts[1].exposed_users, 1u);
  EXPECT_EQ(counts[1].users_with_multiple_variants, 0u);
}

TEST_F(ExperimentEdgeTest, AnEmptyVariantIsNoVariant) {
  Add(1, 1100, "exp", "");
  Add(1, 1200, "exp", "B");
  Add(2, 1100, "exp", "");
  const auto counts = Count(std::nullopt);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].variant, "B");
  EXPECT_EQ(counts[0].exposed_users, 1u);
  EXPECT_EQ(counts[0].users_with_multiple_variants, 0u);
}

TEST_F(ExperimentEdgeTest, EarlierExposureWinsOverSmallerText) {
  Add(1, 1200, "exp", "B");
  Add(1, 1300, "exp", "A");
  const auto counts = Count(std::nullopt);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].variant, "B");
  EXPECT_EQ(counts[0].users_with_multiple_variants, 1u);
}

TEST_F(ExperimentEdgeTest, ExposuresOutsideThePeriodOrWithoutVariantAreNotExposures) {
  Add(1, 999, "exp", "A");   // before the period
  Add(1, 1100, "exp", "B");  // the first in the period
  Add(2, 2000, "exp", "A");  // at period end: excluded
  Add(3, 1200, "exp");       // no variant
  Add(3, 1300, "exp", "B");
  const auto counts = Count(std::nullopt);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].variant, "B");
  EXPECT_EQ(counts[0].exposed_users, 2u);
  EXPECT_EQ(counts[0].users_with_multiple_variants, 0u);  // user 1's A lies outside the period
}

TEST_F(ExperimentEdgeTest, GoalsCountStrictlyAfterExposureWithinAnInclusiveWindow) {
  Add(1, 1500, "exp", "A");
  Add(1, 1500, "buy");  // same millisecond: not after
  Add(1, 1400, "buy");  // before
  Add(2, 1500, "exp", "A");
  Add(2, 1600, "buy");  // exactly at the window's end: counts
  Add(3, 1500, "exp", "A");
  Add(3, 1601, "buy");  // 1 ms past the window
  Add(4, 1500, "exp", "A");
  Add(4, 1501, "buy");  // 1 ms after
  Add(5, 1950, "exp", "A");
  Add(5, 2000, "buy");  // at period end: excluded
  const auto windowed = Count(100);
  ASSERT_EQ(windowed.size(), 1u);
  EXPECT_EQ(windowed[0].exposed_users, 5u);
  EXPECT_EQ(windowed[0].goals[0].converters, 2u);  // users 2 and 4
  const auto unbounded = Count(std::nullopt);
  EXPECT_EQ(unbounded[0].goals[0].converters, 3u);  // users 2, 3 and 4
}

TEST_F(ExperimentEdgeTest, GoalEventsOfALaterVariantStillCountForTheFirst) {
  Add(1, 1100, "exp", "A");
  Add(1, 1200, "exp", "B");
  Add(1, 1300, "buy", std::nullopt, 10);
  const auto counts = Count(std::nullopt, GoalKind::kMean);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].variant, "A");
  EXPECT_EQ(counts[0].goals[0].converters, 1u);
  EXPECT_DOUBLE_EQ(counts[0].goals[0].values.mean, 10);
}

TEST_F(ExperimentEdgeTest, MeanGoalsSumNumbersOnlyAndCountUsersWithoutGoalsAsZero) {
  Add(1, 1100, "exp", "A");
  Add(1, 1200, "buy", std::nullopt, 10);
  Add(1, 1300, "buy", std::nullopt, 5.5);
  Add(1, 1400, "buy");  // not a number: a converter, adds nothing
  Add(2, 1100, "exp", "A");
  Add(2, 1400, "buy");  // only a non-number
  Add(3, 1100, "exp", "A");
  const auto counts = Count(std::nullopt, GoalKind::kMean);
  ASSERT_EQ(counts.size(), 1u);
  const GoalCounts& goal = counts[0].goals[0];
  EXPECT_EQ(goal.converters, 2u);
  EXPECT_EQ(goal.values.n, 3u);
  EXPECT_DOUBLE_EQ(goal.values.mean, 15.5 / 3);
  const double mean = 15.5 / 3;
  EXPECT_DOUBLE_EQ(goal.values.m2, (15.5 - mean) * (15.5 - mean) + 2 * mean * mean);
}

TEST_F(ExperimentEdgeTest, NoExposuresGiveNoVariants) {
  Add(1, 1100, "buy");
  EXPECT_TRUE(Count(std::nullopt).empty());
}

// --- Distribution functions ----------------------------------------------------------------------------------

// P(|T| >= t) by Simpson's rule over the density (independent of Boost).
double TTailByIntegration(double t, double df) {
  const double c = std::exp(std::lgamma((df + 1) / 2) - std::lgamma(df / 2)) / std::sqrt(df * std::numbers::pi);
  auto density = [&](double x) { return c * std::pow(1 + x * x / df, -(df + 1) / 2); };
  const int steps = 200000;
  const double h = std::fabs(t) / steps;
  double sum = density(0) + density(std::fabs(t));
  for (int step = 1; step < steps; ++step) sum += density(step * h) * (step % 2 == 1 ? 4 : 2);
  return 1 - 2 * sum * h / 3;
}

TEST(StatsTest, NormalFunctionsMatchKnownValues) {
  EXPECT_NEAR(Z95(), 1.959963984540054, 1e-14);
  EXPECT_NEAR(NormalCdf(1.96), 0.9750021048517795, 1e-15);
  EXPECT_NEAR(NormalCdf(-1), 0.15865525393145707, 1e-15);
  EXPECT_NEAR(NormalTwoSidedP(-2.5), std::erfc(2.5 / std::sqrt(2.0)), 1e-16);
  EXPECT_NEAR(NormalTwoSidedP(9), 2.2571768119076845e-19, 1e-30);  // the tail keeps its digits
  EXPECT_NEAR(NormalQuantile(0.1), -1.2815515655446004, 1e-13);
}

TEST(StatsTest, StudentTMatchesClosedFormsAndIntegration) {
  for (double t : {0.3, 1.0, 2.5, 7.0}) {
    EXPECT_NEAR(StudentTTwoSidedP(t, 1), 1 - 2 / std::numbers::pi * std::atan(t), 1e-14) << t;
    EXPECT_NEAR(StudentTTwoSidedP(-t, 2), 1 - t / std::sqrt(t * t + 2), 1e-14) << t;
    for (double df : {3.7, 12.25, 150.5}) {
      EXPECT_NEAR(StudentTTwoSidedP(t, df), TTailByIntegration(t, df), 1e-10) << t << " " << df;
    }
  }
  // Quantiles to 40 digits with mpmath (the root of the regularized incomplete beta), rounded to double.
  EXPECT_NEAR(StudentTQuantile(0.975, 9), 2.2621571627982055, 1e-12);
  EXPECT_NEAR(StudentTQuantile(0.975, 30), 2.0422724563012373, 1e-12);
  EXPECT_NEAR(TTailByIntegration(StudentTQuantile(0.975, 17.3), 17.3), 0.05, 1e-10);
  EXPECT_TRUE(std::isnan(StudentTTwoSidedP(1, 0)));
}

TEST(StatsTest, ChiSquareSurvivalMatchesClosedForms) {
  for (double x : {0.01, 0.5, 3.84, 10.0, 60.0}) {
    EXPECT_NEAR(ChiSquareSurvival(x, 1), std::erfc(std::sqrt(x / 2)), 1e-15) << x;
    EXPECT_NEAR(ChiSquareSurvival(x, 2), std::exp(-x / 2), 1e-15) << x;
    EXPECT_NEAR(ChiSquareSurvival(x, 3),
                std::erfc(std::sqrt(x / 2)) + std::sqrt(2 * x / std::numbers::pi) * std::exp(-x / 2), 1e-15)
        << x;
    EXPECT_NEAR(ChiSquareSurvival(x, 4), std::exp(-x / 2) * (1 + x / 2), 1e-15) << x;
  }
  EXPECT_EQ(ChiSquareSurvival(0, 3), 1);
}

TEST(StatsTest, IntervalsMatchNewcombesPublishedExamples) {
  // R. G. Newcombe, Statistics in Medicine 17 (1998): Wilson score interval of 81/263 (paper 1, table I) and the
  // hybrid score interval (method 10) of 56/70 - 48/80 (paper 2, table II).
  const auto wilson = WilsonInterval(81, 263, Z95());
  ASSERT_TRUE(wilson);
  EXPECT_NEAR(wilson->lo, 0.2553, 5e-5);
  EXPECT_NEAR(wilson->hi, 0.3662, 5e-5);
  const auto difference = NewcombeDifferenceInterval(56, 70, 48, 80, Z95());
  ASSERT_TRUE(difference);
  EXPECT_NEAR(difference->lo, 0.0524, 5e-5);
  EXPECT_NEAR(difference->hi, 0.3339, 5e-5);
  // Wilson at the extremes stays inside [0, 1] and is not degenerate.
  const auto none = WilsonInterval(0, 10, Z95());
  EXPECT_NEAR(none->lo, 0, 1e-15);
  EXPECT_NEAR(none->hi, 1.959963984540054 * 1.959963984540054 / (10 + 1.959963984540054 * 1.959963984540054), 1e-12);
  EXPECT_FALSE(WilsonInterval(0, 0, Z95()));
}

TEST(StatsTest, WelchTestMatchesItsDefinition) {
  Moments control{10, 5.0, 9 * 4.0};     // s² = 4
  Moments treatment{25, 6.5, 24 * 9.0};  // s² = 9
  const auto test = WelchTTest(treatment, control);
  ASSERT_TRUE(test);
  const double a = 9.0 / 25, b = 4.0 / 10;
  EXPECT_NEAR(test->statistic, 1.5 / std::sqrt(a + b), 1e-14);
  EXPECT_NEAR(test->df, (a + b) * (a + b) / (a * a / 24 + b * b / 9), 1e-12);
  EXPECT_NEAR(test->p_value, TTailByIntegration(test->statistic, test->df), 1e-10);
  EXPECT_FALSE(WelchTTest(treatment, Moments{1, 5, 0}));   // one value: no variance
  EXPECT_FALSE(WelchTTest(Moments{5, 1, 0}, Moments{5, 2, 0}));  // two different constants: undefined
  const auto same = WelchTTest(Moments{5, 1, 0}, Moments{7, 1, 0});  // the same constant: no difference
  ASSERT_TRUE(same);
  EXPECT_EQ(same->p_value, 1);
  EXPECT_FALSE(WelchDifferenceInterval(Moments{5, 1, 0}, Moments{7, 1, 0}));
  const auto mean_ci = MeanInterval(control);
  ASSERT_TRUE(mean_ci);
  EXPECT_NEAR(mean_ci->lo, 5 - 2.2621571627982055 * 2 / std::sqrt(10.0), 1e-12);
  EXPECT_NEAR(mean_ci->hi, 5 + 2.2621571627982055 * 2 / std::sqrt(10.0), 1e-12);
  // The difference interval ends where the test's p-value is 0.05.
  const auto difference = WelchDifferenceInterval(treatment, control);
  ASSERT_TRUE(difference);
  const double half = (difference->hi - difference->lo) / 2;
  EXPECT_NEAR((difference->hi + difference->lo) / 2, 1.5, 1e-12);
  EXPECT_NEAR(TTailByIntegration(half / std::sqrt(a + b), test->df), 0.05, 1e-9);
}

// --- AnalyzeExperiment -----------------------------------------------------------------------------------------

VariantCounts Conversion(std::string name, uint64_t exposed, uint64_t converters) {
  VariantCounts counts;
  counts.variant = std::move(name);
  counts.exposed_users = exposed;
  counts.goals.push_back(GoalCounts{converters, {}});
  return counts;
}

TEST(AnalyzeExperimentTest, ConversionStatisticsAgainstTheControl) {
  const std::vector<VariantCounts> variants = {Conversion("A", 1000, 100), Conversion("B", 1000, 130),
                                               Conversion("C", 500, 0)};
  const auto report = AnalyzeExperiment(variants, 0, {1, 1, 1}, {GoalKind::kConversion});
  ASSERT_EQ(report.variants.size(), 3u);
  const GoalStats& a = report.variants[0].goals[0];
  EXPECT_TRUE(report.variants[0].control);
  EXPECT_DOUBLE_EQ(*a.rate, 0.1);
  EXPECT_FALSE(a.uplift || a.uplift_ci95 || a.difference || a.difference_ci95 || a.p_value);
  const GoalStats& b = report.variants[1].goals[0];
  EXPECT_DOUBLE_EQ(*b.rate, 0.13);
  EXPECT_NEAR(*b.uplift, 0.3, 1e-12);
  EXPECT_NEAR(*b.difference, 0.03, 1e-15);
  const double pooled = 230.0 / 2000;
  const double z = 0.03 / std::sqrt(pooled * (1 - pooled) * (2.0 / 1000));
  EXPECT_NEAR(*b.statistic, z, 1e-12);
  EXPECT_NEAR(*b.p_value, std::erfc(z / std::sqrt(2.0)), 1e-15);
  const double se_log = std::sqrt(1.0 / 130 - 1.0 / 1000 + 1.0 / 100 - 1.0 / 1000);
  EXPECT_NEAR(b.uplift_ci95->lo, 1.3 * std::exp(-1.959963984540054 * se_log) - 1, 1e-12);
  EXPECT_NEAR(b.uplift_ci95->hi, 1.3 * std::exp(1.959963984540054 * se_log) - 1, 1e-12);
  ASSERT_TRUE(b.ci95 && b.difference_ci95);
  EXPECT_LT(b.difference_ci95->lo, 0.03);
  EXPECT_GT(b.difference_ci95->hi, 0.03);
  // No converter: uplift -100% with no interval, but a test.
  const GoalStats& c = report.variants[2].goals[0];
  EXPECT_DOUBLE_EQ(*c.rate, 0);
  EXPECT_DOUBLE_EQ(*c.uplift, -1);
  EXPECT_FALSE(c.uplift_ci95);
  ASSERT_TRUE(c.p_value);
  // SRM: 1000 / 1000 / 500 against an equal split, df 2.
  const double expected = 2500.0 / 3;
  const double chi = (2 * (1000 - expected) * (1000 - expected) + (500 - expected) * (500 - expected)) / expected;
  EXPECT_EQ(report.srm.df, 2u);
  EXPECT_NEAR(*report.srm.chi_square, chi, 1e-9);
  EXPECT_NEAR(*report.srm.p_value, std::exp(-chi / 2), 1e-15);
  EXPECT_FALSE(*report.srm.ok);
  EXPECT_NEAR(report.srm.expected[2], expected, 1e-9);
}

TEST(AnalyzeExperimentTest, EqualDegenerateRatesHavePValueOne) {
  const auto report = AnalyzeExperiment({Conversion("A", 100, 0), Conversion("B", 80, 0), Conversion("C", 5, 5)}, 0,
                                        {1, 1, 1}, {GoalKind::kConversion});
  const GoalStats& b = report.variants[1].goals[0];
  EXPECT_EQ(*b.p_value, 1);
  EXPECT_EQ(*b.statistic, 0);
  EXPECT_FALSE(b.uplift);  // control rate 0
  EXPECT_DOUBLE_EQ(*b.difference, 0);
  const GoalStats& c = report.variants[2].goals[0];
  EXPECT_LT(*c.p_value, 1e-10);  // 0/100 vs 5/5
}

TEST(AnalyzeExperimentTest, SrmUsesTheNormalizedSplit) {
  const std::vector<VariantCounts> variants = {Conversion("A", 2450, 10), Conversion("B", 7550, 10)};
  const auto report = AnalyzeExperiment(variants, 0, {0.5, 1.5}, {GoalKind::kConversion});  // 25% / 75%
  const double chi = 50.0 * 50 / 2500 + 50.0 * 50 / 7500;
  EXPECT_NEAR(*report.srm.chi_square, chi, 1e-12);
  EXPECT_NEAR(*report.srm.p_value, std::erfc(std::sqrt(chi / 2)), 1e-15);
  EXPECT_TRUE(*report.srm.ok);
  EXPECT_DOUBLE_EQ(report.srm.expected[0], 2500);
  EXPECT_EQ(report.srm.observed[1], 7550u);
}

TEST(AnalyzeExperimentTest, ControlWithoutUsersLeavesComparisonsNull) {
  const std::vector<VariantCounts> variants = {Conversion("A", 0, 0), Conversion("B", 40, 4)};
  const auto report = AnalyzeExperiment(variants, 0, {1, 1}, {GoalKind::kConversion});
  const GoalStats& a = report.variants[0].goals[0];
  EXPECT_FALSE(a.rate || a.ci95);
  const GoalStats& b = report.variants[1].goals[0];
  EXPECT_DOUBLE_EQ(*b.rate, 0.1);
  EXPECT_FALSE(b.uplift || b.p_value || b.difference);
  EXPECT_NEAR(*report.srm.p_value, std::erfc(std::sqrt(40.0 / 2)), 1e-15);  // chi² = 2 × 20² / 20 = 40
}

TEST(AnalyzeExperimentTest, SrmNeedsTwoVariantsAndUsers) {
  const auto one = AnalyzeExperiment({Conversion("A", 10, 1)}, 0, {1}, {GoalKind::kConversion});
  EXPECT_FALSE(one.srm.p_value || one.srm.ok || one.srm.chi_square);
  const auto empty =
      AnalyzeExperiment({Conversion("A", 0, 0), Conversion("B", 0, 0)}, 0, {1, 1}, {GoalKind::kConversion});
  EXPECT_FALSE(empty.srm.p_value);
}

TEST(AnalyzeExperimentTest, SrmCoversOnlyVariantsWithAShare) {
  const std::vector<VariantCounts> variants = {Conversion("A", 0, 0), Conversion("B", 480, 4),
                                               Conversion("C", 520, 4)};
  const auto report = AnalyzeExperiment(variants, 0, {0, 1, 1}, {GoalKind::kConversion});
  ASSERT_EQ(report.srm.variants, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(report.srm.df, 1u);
  EXPECT_DOUBLE_EQ(report.srm.shares[0], 0.5);
  EXPECT_NEAR(*report.srm.chi_square, 2 * 20.0 * 20 / 500, 1e-12);
  EXPECT_NEAR(*report.srm.p_value, std::erfc(std::sqrt(1.6 / 2)), 1e-15);
}

TEST(AnalyzeExperimentTest, WithoutAControlNothingIsCompared) {
  const std::vector<VariantCounts> variants = {Conversion("B", 400, 40), Conversion("C", 500, 60)};
  const auto report = AnalyzeExperiment(variants, std::nullopt, {1, 1}, {GoalKind::kConversion});
  for (const auto& variant : report.variants) {
    EXPECT_FALSE(variant.control);
    EXPECT_TRUE(variant.goals[0].rate);
    EXPECT_FALSE(variant.goals[0].uplift || variant.goals[0].p_value || variant.goals[0].difference);
  }
  EXPECT_TRUE(report.srm.p_value);
}

TEST(AnalyzeExperimentTest, MeanStatisticsUseWelch) {
  VariantCounts a, b;
  a.variant = "A";
  a.exposed_users = 10;
  a.goals.push_back(GoalCounts{4, Moments{10, 5.0, 36.0}});
  b.variant = "B";
  b.exposed_users = 25;
  b.goals.push_back(GoalCounts{9, Moments{25, 6.5, 216.0}});
  const auto report = AnalyzeExperiment({a, b}, 0, {1, 1}, {GoalKind::kMean});
  const GoalStats& control = report.variants[0].goals[0];
  EXPECT_DOUBLE_EQ(*control.mean, 5);
  EXPECT_DOUBLE_EQ(*control.std_dev, 2);
  EXPECT_EQ(control.converters, 4u);
  EXPECT_FALSE(control.rate);
  const GoalStats& treatment = report.variants[1].goals[0];
  EXPECT_DOUBLE_EQ(*treatment.std_dev, 3);
  EXPECT_NEAR(*treatment.uplift, 0.3, 1e-15);
  EXPECT_NEAR(*treatment.difference, 1.5, 1e-15);
  const double a_var = 4.0 / 10, b_var = 9.0 / 25;
  const double t = 1.5 / std::sqrt(a_var + b_var);
  EXPECT_NEAR(*treatment.statistic, t, 1e-14);
  EXPECT_NEAR(*treatment.p_value, TTailByIntegration(t, *treatment.df), 1e-10);
  const double se_log = std::sqrt(9.0 / (25 * 6.5 * 6.5) + 4.0 / (10 * 25.0));
  EXPECT_NEAR(treatment.uplift_ci95->lo, 1.3 * std::exp(-1.959963984540054 * se_log) - 1, 1e-12);
  EXPECT_NEAR(treatment.uplift_ci95->hi, 1.3 * std::exp(1.959963984540054 * se_log) - 1, 1e-12);
}

}  // namespace
}  // namespace analytics::query
