// POST /analysis/experiments (analysis::RunExperiments) over a real embedded store: the answer against a reference
// computed with plain loops from the raw events appended (random and generated data, flushed and in memory, late
// events, an erased user), the period in a DST-changing zone, request errors, a developer's scope with
// k-anonymity, a `segment` (the reference reads only its members' events), and DATA_NOT_YET_AVAILABLE.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <boost/math/distributions/students_t.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/experiments.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "gen/generator.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using events::StoredEvent;
using json = nlohmann::json;
using store::EmbeddedEventStore;

constexpr int64_t kDay = 86400000;
constexpr int64_t kJan1 = 1704067200000;  // 2024-01-01T00:00:00Z
constexpr const char* kExposure = "com.platform.experiments.exposure.recorded.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr const char* kPageView = "com.platform.store.page.viewed.v1";

// --- Events ------------------------------------------------------------------------------------------------

int next_id = 0;

// "u<n>" (appended, not "u" + text: GCC 12 -O3 warns falsely about operator+ with a one-letter literal).
std::string UserName(uint64_t n) {
  std::string name = "u";
  name += std::to_string(n);
  return name;
}

StoredEvent Event(const std::string& user, int64_t time_ms, const std::string& type, json data,
                  const std::string& game_id = "") {
  StoredEvent event;
  event.id = "ev-" + std::to_string(next_id++);
  event.source = "/services/test";
  event.type = type;
  event.time_ms = time_ms;
  event.received_ms = time_ms + 1000;
  event.user = user;
  event.user_in_subject = true;
  event.game_id = game_id;
  if (!game_id.empty()) data["game_id"] = game_id;
  if (data.contains("amount") && data["amount"].is_number()) event.amount = data["amount"].get<double>();
  event.data = data.dump();
  return event;
}

StoredEvent Exposure(const std::string& user, int64_t time_ms, std::optional<std::string> variant,
                     const std::string& experiment = "checkout_v2", const std::string& game_id = "") {
  json data = {{"experiment", experiment}};
  if (variant) data["variant"] = *variant;
  return Event(user, time_ms, kExposure, data, game_id);
}

StoredEvent Purchase(const std::string& user, int64_t time_ms, std::optional<double> amount,
                     const std::string& game_id = "") {
  json data = json::object();
  if (amount) data["amount"] = *amount;
  return Event(user, time_ms, kPurchase, data, game_id);
}

// --- The reference: plain loops over the raw events --------------------------------------------------------

struct RefGoal {
  std::string type;
  std::function<bool(const json& data)> filter;  // the goal's filters
  bool mean = false;                              // sums data.amount
  std::optional<int64_t> window_ms;
};

struct RefVariant {
  uint64_t exposed = 0, multiple = 0;
  std::vector<uint64_t> converters;
  std::vector<std::vector<double>> values;
};

std::map<std::string, RefVariant> Reference(const std::vector<StoredEvent>& events, const std::string& experiment,
                                            int64_t start_ms, int64_t end_ms, const std::vector<RefGoal>& goals,
                                            const std::set<std::string>& erased = {}) {
  std::map<std::string, std::vector<const StoredEvent*>> by_user;
  for (const StoredEvent& event : events) {
    if (!event.user.empty() && !erased.contains(event.user)) by_user[event.user].push_back(&event);
  }
  std::map<std::string, RefVariant> out;
  for (const auto& [user, list] : by_user) {
    std::optional<std::pair<int64_t, std::string>> first;
    std::set<std::string> seen;
    for (const StoredEvent* event : list) {
      if (event->type != kExposure || event->time_ms < start_ms || event->time_ms >= end_ms) continue;
      const json data = json::parse(event->data);
      if (data.value("experiment", json()) != experiment) continue;
      if (!data.contains("variant") || !data["variant"].is_string() || data["variant"].get<std::string>().empty()) {
        continue;
      }
      const std::pair<int64_t, std::string> exposure(event->time_ms, data["variant"].get<std::string>());
      seen.insert(exposure.second);
      if (!first || exposure < *first) first = exposure;
    }
    if (!first) continue;
    RefVariant& variant = out[first->second];
    variant.converters.resize(goals.size());
    variant.values.resize(goals.size());
    ++variant.exposed;
    if (seen.size() > 1) ++variant.multiple;
    for (size_t goal_idx = 0; goal_idx < goals.size(); ++goal_idx) {
      const RefGoal& goal = goals[goal_idx];
      bool converted = false;
      double sum = 0;
      for (const StoredEvent* event : list) {
        if (event->type != goal.type || event->time_ms <= first->first || event->time_ms >= end_ms) continue;
        if (goal.window_ms && event->time_ms - first->first > *goal.window_ms) continue;
        const json data = json::parse(event->data);
        if (goal.filter && !goal.filter(data)) continue;
        converted = true;
        if (data.contains("amount") && data["amount"].is_number()) sum += data["amount"].get<double>();
      }
      variant.converters[goal_idx] += converted ? 1 : 0;
      variant.values[goal_idx].push_back(sum);
    }
  }
  return out;
}

void ExpectNear(const json& actual, double expected, double tolerance, const std::string& what) {
  ASSERT_TRUE(actual.is_number()) << what << ": " << actual.dump();
  EXPECT_NEAR(actual.get<double>(), expected, tolerance * std::max(1.0, std::fabs(expected))) << what;
}

// Checks `document` against the reference: counts exactly, statistics by their textbook formulas (1e-9).
void ExpectDocumentMatches(const json& document, const std::map<std::string, RefVariant>& ref,
                           const std::vector<RefGoal>& goals, const std::string& control) {
  const json& variants = document.at("variants");
  ASSERT_EQ(variants.size(), ref.size() + (ref.contains(control) ? 0 : 1)) << document.dump(1);
  EXPECT_EQ(variants[0]["variant"], control);
  EXPECT_EQ(variants[0]["control"], true);
  std::map<std::string, json> by_name;
  for (const json& variant : variants) by_name[variant["variant"].get<std::string>()] = variant;
  const double z95 = 1.959963984540054;
  const RefVariant empty{0, 0, std::vector<uint64_t>(goals.size()), std::vector<std::vector<double>>(goals.size())};
  const RefVariant& base = ref.contains(control) ? ref.at(control) : empty;
  uint64_t total = 0, multiple = 0;
  for (const auto& [name, expected] : ref) {
    total += expected.exposed;
    multiple += expected.multiple;
  }
  EXPECT_EQ(document["users_with_multiple_variants"], multiple);
  for (const auto& [name, variant] : by_name) {
    SCOPED_TRACE("variant " + name);
    const RefVariant& expected = ref.contains(name) ? ref.at(name) : empty;
    EXPECT_EQ(variant["exposed_users"], expected.exposed);
    EXPECT_EQ(variant["users_with_multiple_variants"], expected.multiple);
    ASSERT_EQ(variant["goals"].size(), goals.size());
    const bool compare = name != control && expected.exposed > 0 && base.exposed > 0;
    for (size_t goal_idx = 0; goal_idx < goals.size(); ++goal_idx) {
      SCOPED_TRACE("goal " + std::to_string(goal_idx));
      const json& goal = variant["goals"][goal_idx];
      const double n = static_cast<double>(expected.exposed);
      const double n0 = static_cast<double>(base.exposed);
      EXPECT_EQ(goal["converters"], expected.converters[goal_idx]);
      if (!goals[goal_idx].mean) {
        EXPECT_EQ(goal["kind"], "conversion");
        if (expected.exposed == 0) {
          EXPECT_TRUE(goal["rate"].is_null());
          continue;
        }
        const double x = static_cast<double>(expected.converters[goal_idx]);
        const double p = x / n;
        ExpectNear(goal["rate"], p, 1e-12, "rate");
        const double center = (p + z95 * z95 / (2 * n)) / (1 + z95 * z95 / n);
        const double half = z95 / (1 + z95 * z95 / n) * std::sqrt(p * (1 - p) / n + z95 * z95 / (4 * n * n));
        ExpectNear(goal["ci95"][0], center - half, 1e-9, "ci95 lo");
        ExpectNear(goal["ci95"][1], center + half, 1e-9, "ci95 hi");
        if (!compare) {
          EXPECT_TRUE(goal["p_value"].is_null() && goal["uplift"].is_null());
          continue;
        }
        const double x0 = static_cast<double>(base.converters[goal_idx]);
        const double p0 = x0 / n0;
        const double pooled = (x + x0) / (n + n0);
        const double se = std::sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0));
        ExpectNear(goal["p_value"], se == 0 ? 1.0 : std::erfc(std::fabs((p - p0) / se) / std::sqrt(2.0)), 1e-9,
                   "p_value");
        ExpectNear(goal["difference"], p - p0, 1e-12, "difference");
        if (x0 > 0) ExpectNear(goal["uplift"], p / p0 - 1, 1e-9, "uplift");
        if (x > 0 && x0 > 0) {
          const double se_log = std::sqrt(1 / x - 1 / n + 1 / x0 - 1 / n0);
          ExpectNear(goal["uplift_ci95"][0], p / p0 * std::exp(-z95 * se_log) - 1, 1e-9, "uplift_ci95 lo");
          ExpectNear(goal["uplift_ci95"][1], p / p0 * std::exp(z95 * se_log) - 1, 1e-9, "uplift_ci95 hi");
        }
      } else {
        EXPECT_EQ(goal["kind"], "mean");
        if (expected.exposed == 0) continue;
        auto moments = [](const std::vector<double>& values) {
          double sum = 0;
          for (double value : values) sum += value;
          const double mean = sum / static_cast<double>(values.size());
          double m2 = 0;
          for (double value : values) m2 += (value - mean) * (value - mean);
          return std::pair(mean, values.size() > 1 ? m2 / static_cast<double>(values.size() - 1) : NAN);
        };
        const auto [mean, variance] = moments(expected.values[goal_idx]);
        ExpectNear(goal["mean"], mean, 1e-9, "mean");
        if (expected.exposed > 1) {
          ExpectNear(goal["std_dev"], std::sqrt(variance), 1e-9, "std_dev");
          const boost::math::students_t_distribution<double> t_dist(n - 1);
          const double half = boost::math::quantile(t_dist, 0.975) * std::sqrt(variance / n);
          ExpectNear(goal["ci95"][0], mean - half, 1e-9, "ci95 lo");
          ExpectNear(goal["ci95"][1], mean + half, 1e-9, "ci95 hi");
        }
        if (!compare || base.exposed < 2 || expected.exposed < 2) continue;
        const auto [mean0, variance0] = moments(base.values[goal_idx]);
        const double a = variance / n, b = variance0 / n0;
        if (a + b == 0) continue;
        const double t = (mean - mean0) / std::sqrt(a + b);
        const double df = (a + b) * (a + b) / (a * a / (n - 1) + b * b / (n0 - 1));
        const boost::math::students_t_distribution<double> welch(df);
        ExpectNear(goal["t"], t, 1e-9, "t");
        ExpectNear(goal["df"], df, 1e-9, "df");
        ExpectNear(goal["p_value"], 2 * boost::math::cdf(boost::math::complement(welch, std::fabs(t))), 1e-9,
                   "p_value");
        ExpectNear(goal["difference"], mean - mean0, 1e-9, "difference");
        if (mean0 != 0) ExpectNear(goal["uplift"], mean / mean0 - 1, 1e-9, "uplift");
      }
    }
  }
  // SRM against an equal split of the variants with exposed users.
  const json& srm = document["srm"];
  size_t seen = 0;
  for (const auto& [name, expected] : ref) seen += expected.exposed > 0 ? 1 : 0;
  if (seen < 2) {
    EXPECT_TRUE(srm["p_value"].is_null());
    return;
  }
  double chi_square = 0;
  for (const auto& [name, expected] : ref) {
    const double e = static_cast<double>(total) / static_cast<double>(seen);
    chi_square += (static_cast<double>(expected.exposed) - e) * (static_cast<double>(expected.exposed) - e) / e;
    EXPECT_EQ(srm["observed"][name], expected.exposed);
    ExpectNear(srm["expected"][name], e, 1e-12, "expected");
  }
  ExpectNear(srm["chi_square"], chi_square, 1e-9, "chi_square");
  EXPECT_EQ(srm["df"], seen - 1);
  if (seen == 2) ExpectNear(srm["p_value"], std::erfc(std::sqrt(chi_square / 2)), 1e-9, "srm p_value");
  if (seen == 3) ExpectNear(srm["p_value"], std::exp(-chi_square / 2), 1e-9, "srm p_value");
  EXPECT_EQ(srm["ok"], srm["p_value"].get<double>() >= 0.001);
}

// --- Segments ------------------------------------------------------------------------------------------------


// --- Fixture -------------------------------------------------------------------------------------------------

class AnalysisExperimentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = EmbeddedEventStore::Open(TestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }
  void Append(const std::vector<StoredEvent>& batch) {
    auto result = store_->Append(batch);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->stored, batch.size());
    appended_.insert(appended_.end(), batch.begin(), batch.end());
  }
  common::Result<json> Run(const json& body, const analysis::Viewer& viewer = {}, int k = 5) {
    analysis::AnalysisOptions options;
    options.k_anonymity = k;
    options.query_threads = 2;
    options.segment_scope = segments_;
    return analysis::RunExperiments(*store_, body, viewer, options);
  }
  static json Body(json goals) {
    return {{"experiment", "checkout_v2"},
            {"exposure_event", kExposure},
            {"experiment_property", "experiment"},
            {"variant_property", "variant"},
            {"control", "A"},
            {"goals", std::move(goals)},
            {"period_start", "2024-01-02"},
            {"period_end", "2024-01-08"}};
  }

  TempDir dir_;
  std::unique_ptr<EmbeddedEventStore> store_;
  analysis::SegmentScopeResolver segments_;  // unset: every segment is unknown
  std::vector<StoredEvent> appended_;
};

// Random users over 10 days: exposures of two experiments (three variants, some without one, some users in
// several), purchases with and without amounts, page views; half flushed to segments, then late events of early
// days into the memtable, and one exposed user erased.
TEST_F(AnalysisExperimentTest, RandomEventsMatchTheReference) {
  std::mt19937_64 rng(20240101);
  const std::vector<std::optional<std::string>> variants = {"A", "A", "A", "B", "B", "B", "C", std::nullopt};
  auto random_batch = [&](size_t count, int64_t from_ms, int64_t days) {
    std::vector<StoredEvent> batch;
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      const std::string user = UserName(rng() % 600);
      const int64_t time = from_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(days * 86400)) * 1000;
      const uint64_t kind = rng() % 10;
      if (kind < 3) {
        batch.push_back(Exposure(user, time, variants[rng() % variants.size()],
                                 rng() % 5 == 0 ? "store_home_hero_v2" : "checkout_v2"));
      } else if (kind < 6) {
        const uint64_t amount = rng() % 4;
        batch.push_back(Purchase(user, time, amount == 0 ? std::nullopt : std::optional<double>(amount * 149.5)));
      } else {
        batch.push_back(Event(user, time, kPageView, {{"page_type", rng() % 2 ? "game" : "home"}}));
      }
    }
    return batch;
  };
  Append(random_batch(6000, kJan1, 10));
  ASSERT_OK(store_->Flush());
  Append(random_batch(1500, kJan1, 3));  // late events of the first days, in memory
  // One exposed user erased: none of their events may count.
  std::string erased;
  for (const auto& event : appended_) {
    if (event.type == kExposure && event.time_ms >= kJan1 + kDay) {
      erased = event.user;
      break;
    }
  }
  ASSERT_OK(store_->EraseUser(erased));

  const json goals = {
      {{"kind", "conversion"}, {"event_type", kPurchase}},
      {{"kind", "conversion"}, {"event_type", kPurchase}, {"window_seconds", 6 * 3600}},
      {{"kind", "mean"}, {"event_type", kPurchase}, {"property", "amount"}},
      {{"kind", "mean"},
       {"event_type", kPurchase},
       {"property", "amount"},
       {"window_seconds", 86400},
       {"filters", {{{"property", "amount"}, {"op", "gt"}, {"value", 200}}}}},
      {{"event_type", kPageView}, {"filters", {{"property", "page_type"}, {"op", "eq"}, {"value", "game"}}}},
  };
  const std::vector<RefGoal> ref_goals = {
      {kPurchase, nullptr, false, std::nullopt},
      {kPurchase, nullptr, false, 6 * 3600 * 1000LL},
      {kPurchase, nullptr, true, std::nullopt},
      {kPurchase, [](const json& data) { return data.contains("amount") && data["amount"].get<double>() > 200; }, true,
       86400000LL},
      {kPageView, [](const json& data) { return data["page_type"] == "game"; }, false, std::nullopt},
  };
  ASSERT_OK_AND_ASSIGN(json document, Run(Body(goals)));
  const auto ref = Reference(appended_, "checkout_v2", kJan1 + kDay, kJan1 + 8 * kDay, ref_goals, {erased});
  ASSERT_EQ(ref.size(), 3u);
  ExpectDocumentMatches(document, ref, ref_goals, "A");
  EXPECT_EQ(document["period_start"], "2024-01-02");
  EXPECT_EQ(document["timezone"], "UTC");
  EXPECT_EQ(document["goals"][1]["window_seconds"], 6 * 3600);
  EXPECT_FALSE(document.contains("k_anonymity"));
  EXPECT_GT(document["users_with_multiple_variants"].get<uint64_t>(), 0u);
  // The same question again (cached parts) and with the store's parts compacted: the same answer.
  ASSERT_OK_AND_ASSIGN(json again, Run(Body(goals)));
  EXPECT_EQ(again, document);
  ASSERT_OK(store_->Flush());
  ASSERT_OK(store_->RunMaintenance());
  ASSERT_OK_AND_ASSIGN(json compacted, Run(Body(goals)));
  EXPECT_EQ(compacted, document);
}

TEST_F(AnalysisExperimentTest, SegmentRestrictsTheExperimentToItsMembers) {
  std::mt19937_64 rng(20240102);
  const std::vector<std::optional<std::string>> variants = {"A", "A", "B", "B", "C", std::nullopt};
  std::vector<StoredEvent> batch;
  for (size_t event_idx = 0; event_idx < 6000; ++event_idx) {
    const std::string user = UserName(rng() % 500);
    const int64_t time = kJan1 + static_cast<int64_t>(rng() % (9 * 86400)) * 1000;
    const uint64_t kind = rng() % 10;
    if (kind < 3) {
      batch.push_back(Exposure(user, time, variants[rng() % variants.size()]));
    } else if (kind < 7) {
      const uint64_t amount = rng() % 4;
      batch.push_back(Purchase(user, time, amount == 0 ? std::nullopt : std::optional<double>(amount * 149.5)));
    } else {
      batch.push_back(Event(user, time, kPageView, {{"page_type", "game"}}));
    }
    if (event_idx == 3000) {
      Append(batch);
      batch.clear();
      ASSERT_OK(store_->Flush());
    }
  }
  Append(batch);
  // About a third of the users are members; the reference leaves the others out as if erased.
  std::set<std::string> users, members, others;
  for (const auto& event : appended_) users.insert(event.user);
  for (const std::string& user : users) (rng() % 3 == 0 ? members : others).insert(user);
  segments_ = TestSegments(*store_, members);
  const json goals = {{{"kind", "conversion"}, {"event_type", kPurchase}},
                      {{"kind", "mean"}, {"event_type", kPurchase}, {"property", "amount"}, {"window_seconds", 86400}}};
  const std::vector<RefGoal> ref_goals = {{kPurchase, nullptr, false, std::nullopt},
                                          {kPurchase, nullptr, true, 86400000LL}};
  json body = Body(goals);
  body["segment"] = "members";
  ASSERT_OK_AND_ASSIGN(json document, Run(body));
  const auto ref = Reference(appended_, "checkout_v2", kJan1 + kDay, kJan1 + 8 * kDay, ref_goals, others);
  ASSERT_EQ(ref.size(), 3u);
  ExpectDocumentMatches(document, ref, ref_goals, "A");
  EXPECT_EQ(document["segment"], "members");
  // Not vacuous: fewer exposed users than without the segment.
  const auto everyone = Reference(appended_, "checkout_v2", kJan1 + kDay, kJan1 + 8 * kDay, ref_goals);
  EXPECT_GT(ref.at("A").exposed, 20u);
  EXPECT_LT(ref.at("A").exposed, everyone.at("A").exposed);
  body["segment"] = "whales";
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kNotFound);
  body["segment"] = "pending";
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);
}

// The generator's checkout_v2 through the real intake normalizer (docs/generator.md 3.5: B converts better).
TEST_F(AnalysisExperimentTest, GeneratedCheckoutExperimentMatchesTheReference) {
  gen::GeneratorOptions options;
  options.users = 1500;
  options.days = 8;
  options.seed = 11;
  std::vector<std::string> lines;
  gen::Generate(options, [&](std::string_view line) { lines.emplace_back(line); });
  auto pseudonymizer = events::Pseudonymizer::Create(std::string(32, 'k'));
  ASSERT_TRUE(pseudonymizer.ok());
  events::Normalizer normalizer({}, **pseudonymizer);
  for (size_t start = 0; start < lines.size(); start += 2000) {
    std::string body;
    for (size_t line_idx = start; line_idx < std::min(lines.size(), start + 2000); ++line_idx) {
      body += lines[line_idx] + "\n";
    }
    auto result = normalizer.Process(body, events::BodyFormat::kNdjson, 1764000000000);
    ASSERT_TRUE(result.rejections.empty());
    std::vector<StoredEvent> batch;
    for (const auto& event : result.events) batch.push_back(event.ToStored());
    Append(batch);
    if (start == lines.size() / 4000 * 2000) ASSERT_OK(store_->Flush());  // about half in segments
  }
  json body = Body({{{"kind", "conversion"}, {"event_type", kPurchase}},
                    {{"kind", "mean"}, {"event_type", kPurchase}, {"property", "amount"}}});
  body["period_start"] = "2024-01-01";
  body["period_end"] = "2024-01-08";
  ASSERT_OK_AND_ASSIGN(json document, Run(body));
  const std::vector<RefGoal> ref_goals = {{kPurchase, nullptr, false, std::nullopt},
                                          {kPurchase, nullptr, true, std::nullopt}};
  const auto ref = Reference(appended_, "checkout_v2", kJan1, kJan1 + 8 * kDay, ref_goals);
  ASSERT_EQ(ref.size(), 2u);
  EXPECT_GT(ref.at("A").exposed, 50u);
  ExpectDocumentMatches(document, ref, ref_goals, "A");
  EXPECT_GT(document["variants"][1]["goals"][0]["rate"].get<double>(),
            document["variants"][0]["goals"][0]["rate"].get<double>());
}

// Europe/Berlin on 2024-03-31 (23 hours: clocks jump 02:00 -> 03:00): the period is
// [2024-03-30T23:00Z, 2024-03-31T22:00Z).
TEST_F(AnalysisExperimentTest, PeriodBoundsFollowTheZoneAcrossTheDstChange) {
  const int64_t start = 1711839600000;  // 2024-03-30T23:00:00Z
  const int64_t end = 1711922400000;    // 2024-03-31T22:00:00Z
  Append({Exposure("u1", start - 1, "B"), Exposure("u1", start, "A"),  // the earlier one lies before the period
          Exposure("u2", end - 1, "B"), Purchase("u2", end - 1, 10),   // the same ms: not after
          Exposure("u3", start + 3600000, "B"), Purchase("u3", end - 1, 20), Purchase("u3", end, 30),
          Exposure("u4", end, "A"),  // at the end: outside
          Exposure("u5", start + 7200000, "A"), Purchase("u5", start + 7200000 + 3600000, 5)});
  json body = Body({{{"kind", "conversion"}, {"event_type", kPurchase}, {"window_seconds", 3600}},
                    {{"kind", "mean"}, {"event_type", kPurchase}, {"property", "amount"}}});
  body["timezone"] = "Europe/Berlin";
  body["period_start"] = "2024-03-31";
  body["period_end"] = "2024-03-31";
  ASSERT_OK_AND_ASSIGN(json document, Run(body));
  EXPECT_EQ(document["timezone"], "Europe/Berlin");
  const std::vector<RefGoal> ref_goals = {{kPurchase, nullptr, false, 3600000LL},
                                          {kPurchase, nullptr, true, std::nullopt}};
  const auto ref = Reference(appended_, "checkout_v2", start, end, ref_goals);
  ExpectDocumentMatches(document, ref, ref_goals, "A");
  const json& a = document["variants"][0];
  EXPECT_EQ(a["exposed_users"], 2);  // u1 (its B was before the period: not "multiple"), u5
  EXPECT_EQ(a["users_with_multiple_variants"], 0);
  EXPECT_EQ(a["goals"][0]["converters"], 1);  // u5, exactly one hour later
  const json& b = document["variants"][1];
  EXPECT_EQ(b["exposed_users"], 2);           // u2, u3
  EXPECT_EQ(b["goals"][0]["converters"], 0);  // u3's purchase is 21 h later, out of the window
  EXPECT_EQ(b["goals"][1]["converters"], 1);  // u3; u2's is at its exposure's ms, u3's 30 at period end
  EXPECT_DOUBLE_EQ(b["goals"][1]["mean"].get<double>(), 10);
}

TEST_F(AnalysisExperimentTest, EqualTimeExposuresTakeTheSmallestVariant) {
  Append({Exposure("u1", kJan1 + kDay, "B"), Exposure("u1", kJan1 + kDay, "A"), Exposure("u2", kJan1 + kDay, "B"),
          Exposure("u2", kJan1 + kDay + 1, "A")});
  ASSERT_OK_AND_ASSIGN(json document, Run(Body({{{"event_type", kPurchase}}})));
  EXPECT_EQ(document["variants"][0]["variant"], "A");
  EXPECT_EQ(document["variants"][0]["exposed_users"], 1);
  EXPECT_EQ(document["variants"][0]["users_with_multiple_variants"], 1);
  EXPECT_EQ(document["variants"][1]["exposed_users"], 1);
  EXPECT_EQ(document["users_with_multiple_variants"], 2);
}

TEST_F(AnalysisExperimentTest, SplitDecidesTheSrmAndReportsUnseenVariants) {
  std::vector<StoredEvent> batch;
  for (int user = 0; user < 300; ++user) {
    batch.push_back(Exposure(UserName(user), kJan1 + kDay + user * 1000, user < 100 ? "A" : "B"));
  }
  Append(batch);
  json body = Body({{{"event_type", kPurchase}}});
  body["split"] = {{"A", 1}, {"B", 2}, {"C", 1}};
  ASSERT_OK_AND_ASSIGN(json document, Run(body));
  ASSERT_EQ(document["variants"].size(), 3u);
  EXPECT_EQ(document["variants"][2]["variant"], "C");
  EXPECT_EQ(document["variants"][2]["exposed_users"], 0);
  EXPECT_TRUE(document["variants"][2]["goals"][0]["rate"].is_null());
  const json& srm = document["srm"];
  EXPECT_EQ(srm["df"], 2);
  ExpectNear(srm["expected"]["B"], 150, 1e-12, "expected B");
  const double chi_square = 25.0 * 25 / 75 + 50.0 * 50 / 150 + 75.0 * 75 / 75;  // 100/200/0 against 75/150/75
  ExpectNear(srm["chi_square"], chi_square, 1e-12, "chi_square");
  ExpectNear(srm["p_value"], std::exp(-chi_square / 2), 1e-12, "p_value");
  EXPECT_EQ(srm["ok"], false);
  body["split"] = {{"A", 1}, {"B", 2}};
  ASSERT_OK_AND_ASSIGN(document, Run(body));
  EXPECT_EQ(document["srm"]["chi_square"], 0);
  EXPECT_EQ(document["srm"]["ok"], true);
  // A variant seen without a share is an error; so is a split without the control.
  body["split"] = {{"A", 1}, {"C", 1}};
  auto missing = Run(body);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().field(), "split");
  EXPECT_NE(missing.status().message().find("'B'"), std::string::npos);
}

TEST_F(AnalysisExperimentTest, AnUnseenControlIsReportedEmptyAndNothingIsCompared) {
  Append({Exposure("u1", kJan1 + kDay, "B"), Purchase("u1", kJan1 + kDay + 5, 1),
          Exposure("u2", kJan1 + kDay, "C")});
  ASSERT_OK_AND_ASSIGN(json document, Run(Body({{{"event_type", kPurchase}}})));
  ASSERT_EQ(document["variants"].size(), 3u);
  EXPECT_EQ(document["variants"][0]["variant"], "A");
  EXPECT_EQ(document["variants"][0]["exposed_users"], 0);
  EXPECT_TRUE(document["variants"][1]["goals"][0]["p_value"].is_null());
  EXPECT_DOUBLE_EQ(document["variants"][1]["goals"][0]["rate"].get<double>(), 1);
  EXPECT_FALSE(document["srm"]["observed"].contains("A"));  // the default split covers the variants seen
  EXPECT_EQ(document["srm"]["df"], 1);
}

TEST_F(AnalysisExperimentTest, DeveloperSeesOwnGamesWithSmallVariantsSuppressed) {
  std::vector<StoredEvent> batch;
  auto add_users = [&](const std::string& variant, int count, const std::string& game) {
    for (int user_idx = 0; user_idx < count; ++user_idx) {
      const std::string user = variant + game + "-" + std::to_string(user_idx);
      batch.push_back(Exposure(user, kJan1 + kDay + user_idx, variant, "checkout_v2", game));
      if (user_idx % 2 == 0) batch.push_back(Purchase(user, kJan1 + 2 * kDay, 100, user_idx % 4 == 0 ? game : "g2"));
    }
  };
  add_users("A", 6, "g1");
  add_users("B", 5, "g1");
  add_users("C", 2, "g1");  // fewer than k = 3: left out
  add_users("D", 7, "g2");  // another developer's game: invisible
  Append(batch);
  analysis::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {"g1"};
  ASSERT_OK_AND_ASSIGN(json document, Run(Body({{{"event_type", kPurchase}}}), developer, 3));
  ASSERT_EQ(document["variants"].size(), 2u);
  EXPECT_EQ(document["variants"][0]["exposed_users"], 6);
  EXPECT_EQ(document["variants"][1]["variant"], "B");
  EXPECT_EQ(document["variants"][1]["exposed_users"], 5);
  // Only g1 purchases count: users 0 and 4 of each variant (2 of them have g2 purchases).
  EXPECT_EQ(document["variants"][0]["goals"][0]["converters"], 2);
  EXPECT_EQ(document["variants"][1]["goals"][0]["converters"], 2);
  EXPECT_EQ(document["k_anonymity"]["k"], 3);
  EXPECT_EQ(document["k_anonymity"]["suppressed_groups"], 1);
  EXPECT_EQ(document["srm"]["observed"].size(), 2u);
  ExpectNear(document["srm"]["expected"]["A"], 5.5, 1e-12, "expected A");
  // The whole platform sees all four.
  ASSERT_OK_AND_ASSIGN(json admin, Run(Body({{{"event_type", kPurchase}}})));
  EXPECT_EQ(admin["variants"].size(), 4u);
  EXPECT_FALSE(admin.contains("k_anonymity"));
}

TEST_F(AnalysisExperimentTest, ASuppressedControlIsNeitherReportedNorCompared) {
  std::vector<StoredEvent> batch;
  for (int user_idx = 0; user_idx < 7; ++user_idx) {
    const std::string variant = user_idx < 2 ? "A" : "B";  // A: 2 users, B: 5
    const std::string user = "v" + variant + std::to_string(user_idx);
    batch.push_back(Exposure(user, kJan1 + kDay + user_idx, variant, "checkout_v2", "g1"));
    batch.push_back(Purchase(user, kJan1 + 2 * kDay, 10, "g1"));
  }
  Append(batch);
  analysis::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {"g1"};
  json body = Body({{{"event_type", kPurchase}}});
  body["split"] = {{"A", 1}, {"B", 1}};
  ASSERT_OK_AND_ASSIGN(json document, Run(body, developer, 3));
  ASSERT_EQ(document["variants"].size(), 1u) << document.dump();
  EXPECT_EQ(document["variants"][0]["variant"], "B");
  EXPECT_EQ(document["variants"][0]["control"], false);
  EXPECT_DOUBLE_EQ(document["variants"][0]["goals"][0]["rate"].get<double>(), 1);
  EXPECT_TRUE(document["variants"][0]["goals"][0]["p_value"].is_null());
  EXPECT_EQ(document["k_anonymity"]["suppressed_groups"], 1);
  EXPECT_TRUE(document["srm"]["p_value"].is_null());  // one variant left to check
  EXPECT_FALSE(document["srm"]["observed"].contains("A"));
}

TEST_F(AnalysisExperimentTest, RequestErrorsNameTheField) {
  Append({Exposure("u1", kJan1 + kDay, "A")});
  const json good = Body({{{"kind", "conversion"}, {"event_type", kPurchase}}});
  ASSERT_OK(Run(good));
  struct Case {
    std::function<void(json&)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](json& b) { b["goalz"] = 1; }, "goalz"},
      {[](json& b) { b.erase("experiment"); }, "experiment"},
      {[](json& b) { b["experiment"] = ""; }, "experiment"},
      {[](json& b) { b.erase("control"); }, "control"},
      {[](json& b) { b["control"] = 7; }, "control"},
      {[](json& b) { b["exposure_event"] = ""; }, "exposure_event"},
      {[](json& b) { b["variant_property"] = "a..b"; }, "variant_property"},
      {[](json& b) { b["experiment_property"] = 3; }, "experiment_property"},
      {[](json& b) { b.erase("goals"); }, "goals"},
      {[](json& b) { b["goals"] = json::array(); }, "goals"},
      {[](json& b) { b["goals"] = json::array({json::object()}); }, "goals[0].event_type"},
      {[](json& b) { b["goals"][0]["kind"] = "median"; }, "goals[0].kind"},
      {[](json& b) { b["goals"][0]["window_seconds"] = 0; }, "goals[0].window_seconds"},
      {[](json& b) { b["goals"][0]["window_seconds"] = 1.5; }, "goals[0].window_seconds"},
      {[](json& b) { b["goals"][0]["property"] = "amount"; }, "goals[0].property"},
      {[](json& b) { b["goals"][0]["extra"] = true; }, "goals[0].extra"},
      {[](json& b) { b["goals"].push_back({{"kind", "mean"}, {"event_type", kPurchase}}); }, "goals[1].property"},
      {[](json& b) {
         b["goals"].push_back({{"event_type", kPurchase},
                               {"filters", {{"and", {{{"property", "amount"}, {"op", "bad"}, {"value", 1}}}}}}});
       },
       "goals[1].filters.and[0].op"},
      {[](json& b) { b["split"] = {{"A", 1}, {"B", -1}}; }, "split.B"},
      {[](json& b) { b["split"] = {{"B", 1}}; }, "split"},
      {[](json& b) { b["split"] = json::array(); }, "split"},
      {[](json& b) { b["period_end"] = "2024-01-01"; }, "period_end"},
      {[](json& b) { b["timezone"] = "Mars/Olympus"; }, "timezone"},
      {[](json& b) { b["filters"] = {{"property", "country"}, {"op", "eq"}}; }, "filters.value"},
  };
  for (const Case& item : cases) {
    json body = good;
    item.change(body);
    auto result = Run(body);
    ASSERT_FALSE(result.ok()) << body.dump();
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(result.status().field(), item.field) << body.dump() << " " << result.status().ToString();
  }
  json too_many = good;
  for (int goal_idx = 0; goal_idx < 20; ++goal_idx) too_many["goals"].push_back({{"event_type", kPurchase}});
  auto result = Run(too_many);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().field(), "goals");
  json segment = good;
  segment["segment"] = "whales";
  EXPECT_EQ(Run(segment).status().code(), common::StatusCode::kNotFound);
}

TEST_F(AnalysisExperimentTest, APeriodAfterTheNewestEventIsNotYetAvailable) {
  json body = Body({{{"event_type", kPurchase}}});
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);  // nothing stored
  Append({Exposure("u1", kJan1 + 3600000, "A")});
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);  // newest before 2024-01-02
  body["period_start"] = "2024-01-01";
  ASSERT_OK_AND_ASSIGN(json document, Run(body));
  EXPECT_EQ(document["variants"][0]["exposed_users"], 1);
}

}  // namespace
}  // namespace analytics::testing

