// Lifecycle and stickiness requests (analysis/lifecycle.h) over a real embedded store, against references
// computed from the raw events appended: per user, the set of local calendar days / weeks / months (Abseil civil
// time) in which they had an event of the set; then the definitions of docs/analysis.md, literally. A `segment`
// restricts both to its members: the reference reads only their events.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <absl/time/civil_time.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/lifecycle.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using analysis::AnalysisOptions;
using analysis::RunLifecycle;
using analysis::RunStickiness;
using analysis::Viewer;
using events::StoredEvent;
using json = nlohmann::json;
using store::EmbeddedEventStore;

constexpr const char* kSessionStarted = "com.platform.library.session.started.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr const char* kPageViewed = "com.platform.store.page.viewed.v1";
constexpr const char* kCartItemAdded = "com.platform.cart.item.added.v1";

// One appended event as the reference sees it.
struct Raw {
  std::string user;
  int64_t time_ms = 0;
  std::string type;
  std::string game_id;
};
using Predicate = std::function<bool(const Raw&)>;

// --- The reference -------------------------------------------------------------------------------------------

enum class Unit { kDay, kWeek, kMonth };

absl::CivilDay Monday(absl::CivilDay day) {
  return day - (static_cast<int>(absl::GetWeekday(day)) - static_cast<int>(absl::Weekday::monday) + 7) % 7;
}

absl::CivilDay KeyOf(absl::CivilDay day, Unit unit) {
  if (unit == Unit::kWeek) return Monday(day);
  if (unit == Unit::kMonth) return absl::CivilDay(absl::CivilMonth(day));
  return day;
}

absl::CivilDay Next(absl::CivilDay key, Unit unit, int n = 1) {
  if (unit == Unit::kWeek) return key + 7 * n;
  if (unit == Unit::kMonth) return absl::CivilDay(absl::CivilMonth(key) + n);
  return key + n;
}

absl::CivilDay ParseDay(const std::string& text) {
  absl::CivilDay day;
  EXPECT_TRUE(absl::ParseCivilTime(text, &day)) << text;
  return day;
}

// Per user: the local days with an event of the set.
std::map<std::string, std::set<absl::CivilDay>> ActiveDays(const std::vector<Raw>& raw, const Predicate& selected,
                                                            const absl::TimeZone& zone) {
  std::map<std::string, std::set<absl::CivilDay>> out;
  for (const Raw& event : raw) {
    if (selected(event)) out[event.user].insert(absl::ToCivilDay(absl::FromUnixMillis(event.time_ms), zone));
  }
  return out;
}

int64_t NewestOf(const std::vector<Raw>& raw) {
  int64_t newest = INT64_MIN;
  for (const Raw& event : raw) newest = std::max(newest, event.time_ms);
  return newest;
}

// Counts as the documentation says they are reported (k = 0: no k-anonymity).
struct Privacy {
  int k = 0;
  uint64_t suppressed = 0;
  bool Hidden(uint64_t n) const { return k > 0 && n > 0 && n < static_cast<uint64_t>(k); }
  json Count(uint64_t n) {
    if (!Hidden(n)) return n;
    ++suppressed;
    return nullptr;
  }
  json Ratio(uint64_t a, uint64_t b) const {
    if (b == 0 || Hidden(a) || Hidden(b)) return nullptr;
    return static_cast<double>(a) / static_cast<double>(b);
  }
};

json ReferenceLifecycleBuckets(const std::vector<Raw>& raw, const Predicate& selected, const std::string& zone_name,
                               Unit unit, const std::string& period_start, const std::string& period_end,
                               Privacy& privacy) {
  absl::TimeZone zone;
  EXPECT_TRUE(absl::LoadTimeZone(zone_name, &zone));
  std::map<std::string, std::set<absl::CivilDay>> keys;  // per user, bucket keys
  for (const auto& [user, days] : ActiveDays(raw, selected, zone)) {
    for (absl::CivilDay day : days) keys[user].insert(KeyOf(day, unit));
  }
  const int64_t newest = NewestOf(raw);
  json buckets = json::array();
  for (absl::CivilDay key = KeyOf(ParseDay(period_start), unit); key <= KeyOf(ParseDay(period_end), unit);
       key = Next(key, unit)) {
    const absl::CivilDay previous = Next(key, unit, -1);
    uint64_t active = 0, fresh = 0, returning = 0, resurrecting = 0, dormant = 0;
    for (const auto& [user, user_keys] : keys) {
      const bool now = user_keys.count(key) > 0;
      const bool before = user_keys.count(previous) > 0;
      const bool earlier = *user_keys.begin() < key;
      active += now;
      fresh += now && !earlier;
      returning += now && before;
      resurrecting += now && !before && earlier;
      dormant += !now && before;
    }
    const int64_t end_ms = absl::ToUnixMillis(zone.At(absl::CivilSecond(Next(key, unit))).pre);
    json entry = {{"start", absl::FormatCivilTime(key)}, {"end", absl::FormatCivilTime(Next(key, unit))},
                  {"in_progress", newest < end_ms}};
    entry["active"] = privacy.Count(active);
    entry["new"] = privacy.Count(fresh);
    entry["returning"] = privacy.Count(returning);
    entry["resurrecting"] = privacy.Count(resurrecting);
    entry["dormant"] = privacy.Count(dormant);
    entry["quick_ratio"] = privacy.Hidden(fresh) || privacy.Hidden(resurrecting)
                               ? json(nullptr)
                               : privacy.Ratio(fresh + resurrecting, dormant);
    buckets.push_back(entry);
  }
  return buckets;
}

// {"days": [...], "weeks": [...]} of a stickiness answer.
json ReferenceStickiness(const std::vector<Raw>& raw, const Predicate& selected, const std::string& zone_name,
                         const std::string& period_start, const std::string& period_end, Privacy& privacy) {
  absl::TimeZone zone;
  EXPECT_TRUE(absl::LoadTimeZone(zone_name, &zone));
  const auto active = ActiveDays(raw, selected, zone);
  const int64_t newest = NewestOf(raw);
  const absl::CivilDay first = ParseDay(period_start), last = ParseDay(period_end);
  json days = json::array();
  for (absl::CivilDay day = first; day <= last; ++day) {
    uint64_t dau = 0, wau = 0, mau = 0;
    for (const auto& [user, user_days] : active) {
      bool in_week = false, in_month = false;
      for (absl::CivilDay other : user_days) {
        in_week |= other <= day && other > day - 7;
        in_month |= other <= day && other > day - 30;
      }
      dau += user_days.count(day);
      wau += in_week;
      mau += in_month;
    }
    json entry = {{"date", absl::FormatCivilTime(day)},
                  {"in_progress", newest < absl::ToUnixMillis(zone.At(absl::CivilSecond(day + 1)).pre)}};
    entry["dau"] = privacy.Count(dau);
    entry["wau"] = privacy.Count(wau);
    entry["mau"] = privacy.Count(mau);
    entry["dau_wau"] = privacy.Ratio(dau, wau);
    entry["dau_mau"] = privacy.Ratio(dau, mau);
    days.push_back(entry);
  }
  json weeks = json::array();
  for (absl::CivilDay monday = Monday(first); monday <= last; monday += 7) {
    const absl::CivilDay from = std::max(monday, first), to = std::min(monday + 6, last);
    const int in_period = static_cast<int>(to - from) + 1;
    std::vector<uint64_t> by_days(8, 0);
    uint64_t users = 0;
    for (const auto& [user, user_days] : active) {
      int count = 0;
      for (absl::CivilDay day = from; day <= to; ++day) count += static_cast<int>(user_days.count(day));
      if (count > 0) {
        ++by_days[count];
        ++users;
      }
    }
    json distribution = json::array();
    for (int n = 1; n <= in_period; ++n) distribution.push_back({{"days", n}, {"users", privacy.Count(by_days[n])}});
    json entry = {{"week_start", absl::FormatCivilTime(monday)}, {"complete", in_period == 7},
                  {"days_in_period", in_period}};
    entry["users"] = privacy.Count(users);
    entry["active_days"] = distribution;
    weeks.push_back(entry);
  }
  return {{"days", days}, {"weeks", weeks}};
}

Predicate AnyEvent() {
  return [](const Raw&) { return true; };
}
Predicate TypeIn(std::set<std::string> types) {
  return [types](const Raw& event) { return types.count(event.type) > 0; };
}

// --- Segments ------------------------------------------------------------------------------------------------------



// --- Generated data, shared by the tests of the suite ------------------------------------------------------------

class AnalysisLifecycleTest : public GeneratedStoreSuite<Raw> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 900;
    options.generator.days = 70;
    options.generator.seed = 11;
    options.generator.start_date = "2024-02-05";
    options.pseudonymizer_key = 'k';
    // The first ~5/6 into segments, the rest stays in the memtable.
    options.flush_every_batches = 25;
    options.flush_while_fewer_than = 90000;
    Load(options, [](const events::EventView& event) -> Raw {
      return {std::string(event.user), event.time_ms, std::string(event.type), std::string(event.game_id)};
    });
    // Events without a user are never read: the reference leaves them out too.
    std::erase_if(*raw_, [](const Raw& event) { return event.user.empty(); });
  }

  static json Lifecycle(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    auto result = RunLifecycle(*store_, body, viewer, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << body.dump();
    return result.ok() ? *result : json();
  }
  static json Stickiness(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    auto result = RunStickiness(*store_, body, viewer, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << body.dump();
    return result.ok() ? *result : json();
  }
};

TEST_F(AnalysisLifecycleTest, GeneratedDataIsLoaded) {
  EXPECT_GT(raw_->size(), 50000u);
  EXPECT_EQ(store_->NewestEventMs(), NewestOf(*raw_));
}

TEST_F(AnalysisLifecycleTest, WeeklyLifecycleInBerlinMatchesTheReference) {
  const json body = {{"period_start", "2024-02-21"}, {"period_end", "2024-04-14"}, {"timezone", "Europe/Berlin"},
                     {"granularity", "week"}};
  const json document = Lifecycle(body);
  Privacy privacy;
  const json expected =
      ReferenceLifecycleBuckets(*raw_, AnyEvent(), "Europe/Berlin", Unit::kWeek, "2024-02-21", "2024-04-14", privacy);
  EXPECT_EQ(document["buckets"], expected) << document["buckets"].dump() << "\n" << expected.dump();
  EXPECT_EQ(document["period_start"], "2024-02-21");
  EXPECT_EQ(document["timezone"], "Europe/Berlin");
  EXPECT_EQ(document["granularity"], "week");
  EXPECT_FALSE(document.contains("k_anonymity"));
  // Not vacuous: every status occurs.
  uint64_t totals[4] = {0, 0, 0, 0};
  for (const json& bucket : expected) {
    totals[0] += bucket["new"].get<uint64_t>();
    totals[1] += bucket["returning"].get<uint64_t>();
    totals[2] += bucket["resurrecting"].get<uint64_t>();
    totals[3] += bucket["dormant"].get<uint64_t>();
  }
  for (uint64_t total : totals) EXPECT_GT(total, 0u);
  // The same again (cached partials) gives the same document.
  EXPECT_EQ(Lifecycle(body), document);
}

TEST_F(AnalysisLifecycleTest, DailyLifecycleOfAnEventSetInNewYorkMatchesTheReference) {
  // US DST starts on 2024-03-10.
  const json body = {{"period_start", "2024-03-01"}, {"period_end", "2024-03-20"}, {"timezone", "America/New_York"},
                     {"granularity", "day"}, {"event_types", json::array({kSessionStarted, kPurchase})}};
  Privacy privacy;
  const json expected = ReferenceLifecycleBuckets(*raw_, TypeIn({kSessionStarted, kPurchase}), "America/New_York",
                                                  Unit::kDay, "2024-03-01", "2024-03-20", privacy);
  EXPECT_EQ(Lifecycle(body)["buckets"], expected);
  EXPECT_EQ(expected.size(), 20u);
}

TEST_F(AnalysisLifecycleTest, MonthlyLifecycleWithFilteredEventsMatchesTheReference) {
  const std::string game = GamesByEvents(*raw_).at(0);
  const json body = {
      {"period_start", "2024-02-01"},
      {"period_end", "2024-05-31"},  // after the newest event: the last buckets are in progress
      {"granularity", "month"},
      {"events", json::array({json{{"event_type", kPageViewed},
                                   {"filters", json{{"property", "game_id"}, {"op", "eq"}, {"value", game}}}},
                              json{{"event_type", kPurchase}},
                              json{{"event_type", kCartItemAdded},
                                   {"filters", json{{"property", "game_id"}, {"op", "eq"}, {"value", game}}}}})}};
  Privacy privacy;
  const json expected = ReferenceLifecycleBuckets(
      *raw_,
      [&](const Raw& event) {
        return ((event.type == kPageViewed || event.type == kCartItemAdded) && event.game_id == game) ||
               event.type == kPurchase;
      },
      "UTC", Unit::kMonth, "2024-02-01", "2024-05-31", privacy);
  const json document = Lifecycle(body);
  EXPECT_EQ(document["buckets"], expected) << document["buckets"].dump() << "\n" << expected.dump();
  ASSERT_EQ(expected.size(), 4u);
  EXPECT_TRUE(expected[3]["in_progress"].get<bool>());
  EXPECT_FALSE(expected[0]["in_progress"].get<bool>());
}

TEST_F(AnalysisLifecycleTest, StickinessInBerlinMatchesTheReference) {
  // Starts on a Wednesday (a partial first week), crosses the DST change of 2024-03-31; MAU of the first days
  // reads the 29 days before the period.
  const json body = {{"period_start", "2024-03-06"}, {"period_end", "2024-04-12"}, {"timezone", "Europe/Berlin"}};
  const json document = Stickiness(body);
  Privacy privacy;
  const json expected = ReferenceStickiness(*raw_, AnyEvent(), "Europe/Berlin", "2024-03-06", "2024-04-12", privacy);
  EXPECT_EQ(document["days"], expected["days"]) << document["days"].dump() << "\n" << expected["days"].dump();
  EXPECT_EQ(document["weeks"], expected["weeks"]) << document["weeks"].dump() << "\n" << expected["weeks"].dump();
  ASSERT_EQ(document["weeks"].size(), 6u);
  EXPECT_FALSE(document["weeks"][0]["complete"].get<bool>());
  EXPECT_TRUE(document["weeks"][1]["complete"].get<bool>());
}

TEST_F(AnalysisLifecycleTest, StickinessOfAnEventSetInUtcMatchesTheReference) {
  const json body = {{"period_start", "2024-02-05"}, {"period_end", "2024-02-25"},
                     {"event_types", json::array({kSessionStarted})}};
  Privacy privacy;
  const json expected = ReferenceStickiness(*raw_, TypeIn({kSessionStarted}), "UTC", "2024-02-05", "2024-02-25", privacy);
  const json document = Stickiness(body);
  EXPECT_EQ(document["days"], expected["days"]);
  EXPECT_EQ(document["weeks"], expected["weeks"]);
}

TEST_F(AnalysisLifecycleTest, SegmentRestrictsLifecycleAndStickinessToItsMembers) {
  // "new" is a member's first activity, whoever else was active before: only the members' events are read.
  const std::set<std::string> members = SomeUsers(*raw_, 9);
  AnalysisOptions options;
  options.segment_scope = TestSegments(*store_, members);
  const Predicate member = [&](const Raw& event) { return members.count(event.user) > 0; };
  const json body = {{"period_start", "2024-02-21"}, {"period_end", "2024-04-14"}, {"timezone", "Europe/Berlin"},
                     {"granularity", "week"}, {"segment", "members"}};
  Privacy privacy;
  const json expected =
      ReferenceLifecycleBuckets(*raw_, member, "Europe/Berlin", Unit::kWeek, "2024-02-21", "2024-04-14", privacy);
  const json document = Lifecycle(body, {}, options);
  EXPECT_EQ(document["buckets"], expected) << document["buckets"].dump() << "\n" << expected.dump();
  EXPECT_EQ(document["segment"], "members");
  Privacy everyone_privacy;
  const json everyone = ReferenceLifecycleBuckets(*raw_, AnyEvent(), "Europe/Berlin", Unit::kWeek, "2024-02-21",
                                                  "2024-04-14", everyone_privacy);
  EXPECT_GT(expected[2]["active"].get<uint64_t>(), 20u);
  EXPECT_LT(expected[2]["active"].get<uint64_t>(), everyone[2]["active"].get<uint64_t>());

  const json stickiness_body = {{"period_start", "2024-03-06"}, {"period_end", "2024-04-12"},
                                {"event_types", json::array({kSessionStarted, kPurchase})}, {"segment", "members"}};
  Privacy stickiness_privacy;
  const json expected_stickiness = ReferenceStickiness(
      *raw_, [&](const Raw& event) { return member(event) && (event.type == kSessionStarted || event.type == kPurchase); },
      "UTC", "2024-03-06", "2024-04-12", stickiness_privacy);
  const json stickiness = Stickiness(stickiness_body, {}, options);
  EXPECT_EQ(stickiness["days"], expected_stickiness["days"]);
  EXPECT_EQ(stickiness["weeks"], expected_stickiness["weeks"]);
  EXPECT_EQ(stickiness["segment"], "members");

  json unknown = body;
  unknown["segment"] = "whales";
  EXPECT_EQ(RunLifecycle(*store_, unknown, {}, options).status().code(), common::StatusCode::kNotFound);
  unknown["segment"] = "pending";
  EXPECT_EQ(RunLifecycle(*store_, unknown, {}, options).status().code(), common::StatusCode::kFailedPrecondition);
  json pending = stickiness_body;
  pending["segment"] = "pending";
  EXPECT_EQ(RunStickiness(*store_, pending, {}, options).status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(AnalysisLifecycleTest, DeveloperSeesOwnGamesWithSmallCountsSuppressed) {
  // Two games of the long tail: weekly counts of a few users, some under k.
  const auto games = GamesByEvents(*raw_);
  ASSERT_GT(games.size(), 12u);
  const std::set<std::string> own = {games[games.size() - 2], games[games.size() - 5]};
  Viewer viewer;
  viewer.all_games = false;
  viewer.game_ids = own;
  AnalysisOptions options;
  options.k_anonymity = 5;
  const Predicate in_scope = [&](const Raw& event) { return own.count(event.game_id) > 0; };

  const json body = {{"period_start", "2024-02-12"}, {"period_end", "2024-04-14"}, {"granularity", "week"}};
  Privacy privacy{.k = 5};
  const json expected = ReferenceLifecycleBuckets(*raw_, in_scope, "UTC", Unit::kWeek, "2024-02-12", "2024-04-14", privacy);
  const json document = Lifecycle(body, viewer, options);
  EXPECT_EQ(document["buckets"], expected) << document["buckets"].dump() << "\n" << expected.dump();
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 5}, {"suppressed_groups", privacy.suppressed}}));
  EXPECT_GT(privacy.suppressed, 0u);  // the case is exercised

  const json stickiness_body = {{"period_start", "2024-03-04"}, {"period_end", "2024-03-24"}};
  Privacy stickiness_privacy{.k = 5};
  const json expected_stickiness =
      ReferenceStickiness(*raw_, in_scope, "UTC", "2024-03-04", "2024-03-24", stickiness_privacy);
  const json stickiness = Stickiness(stickiness_body, viewer, options);
  EXPECT_EQ(stickiness["days"], expected_stickiness["days"]);
  EXPECT_EQ(stickiness["weeks"], expected_stickiness["weeks"]);
  EXPECT_EQ(stickiness["k_anonymity"], (json{{"k", 5}, {"suppressed_groups", stickiness_privacy.suppressed}}));
  EXPECT_GT(stickiness_privacy.suppressed, 0u);
}

// --- Hand-made events ------------------------------------------------------------------------------------------

StoredEvent Event(const std::string& id, const std::string& user, const std::string& utc_time,
                  const std::string& type = "com.platform.account.user.logged_in.v1") {
  return UserEventAt(id, user, utc_time, type);
}

class LifecycleHandMadeTest : public ::testing::Test {
 protected:
  // Europe/Berlin; 2024-03-31 is 23 hours long (02:00 CET → 03:00 CEST), from 2024-03-30T23:00Z to
  // 2024-03-31T22:00Z.
  void SetUp() override {
    auto opened = EmbeddedEventStore::Open(UnsyncedTestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{
        Event("c1", "C", "2024-03-01T23:30:00.000Z"),  // local 2024-03-02 00:30
        Event("d1", "D", "2024-03-29T12:00:00.000Z"),
        Event("e0", "E", "2024-02-01T12:00:00.000Z"),
        Event("a1", "A", "2024-03-30T22:59:59.999Z"),  // local 03-30 23:59:59.999
        Event("a2", "A", "2024-03-30T23:00:00.000Z"),  // local 03-31 00:00
        Event("f1", "F", "2024-03-30T00:00:00.000Z"),  // local 03-30 01:00
    }));
    ASSERT_OK(store_->Flush());
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{
        Event("b1", "B", "2024-03-31T21:59:59.999Z"),  // local 03-31 23:59:59.999 (CEST)
        Event("b2", "B", "2024-03-31T22:00:00.000Z"),  // local 04-01 00:00
        Event("f2", "F", "2024-03-31T10:00:00.000Z"),
        Event("f3", "F", "2024-04-01T10:00:00.000Z"),
        Event("c2", "C", "2024-04-01T10:00:00.000Z"),
        Event("c3", "C", "2024-04-01T10:00:00.000Z"),  // the same instant twice
        Event("x1", "", "2024-04-01T10:00:00.000Z"),   // no user: never read
    }));
    ASSERT_OK(store_->Flush());
    // A late event: stored after the days it belongs to were flushed.
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{Event("e1", "E", "2024-03-30T12:00:00.000Z")}));
  }

  TempDir dir_;
  std::unique_ptr<EmbeddedEventStore> store_;
};

json Counts(uint64_t active, uint64_t fresh, uint64_t returning, uint64_t resurrecting, uint64_t dormant) {
  return {{"active", active}, {"new", fresh}, {"returning", returning}, {"resurrecting", resurrecting},
          {"dormant", dormant}};
}

TEST_F(LifecycleHandMadeTest, DailyStatusesAtLocalMidnightsAcrossDst) {
  const json body = {{"period_start", "2024-03-30"}, {"period_end", "2024-04-01"}, {"timezone", "Europe/Berlin"},
                     {"granularity", "day"}};
  auto result = RunLifecycle(*store_, body, {}, {});
  ASSERT_OK(result);
  const json& buckets = (*result)["buckets"];
  ASSERT_EQ(buckets.size(), 3u);
  const json expected[] = {
      Counts(3, 2, 0, 1, 1),  // 03-30: A, F new; E resurrecting (late event); D dormant
      Counts(3, 1, 2, 0, 1),  // 03-31: B new; A, F returning; E dormant
      Counts(3, 0, 2, 1, 1),  // 04-01: B, F returning; C resurrecting; A dormant
  };
  const char* dates[] = {"2024-03-30", "2024-03-31", "2024-04-01"};
  for (size_t idx = 0; idx < 3; ++idx) {
    for (const auto& [name, value] : expected[idx].items()) EXPECT_EQ(buckets[idx][name], value) << dates[idx] << " " << name;
    EXPECT_EQ(buckets[idx]["start"], dates[idx]);
  }
  EXPECT_EQ(buckets[0]["quick_ratio"], 3.0);
  EXPECT_EQ(buckets[2]["end"], "2024-04-02");
  EXPECT_TRUE(buckets[2]["in_progress"].get<bool>());   // nothing stored on or after 04-02
  EXPECT_FALSE(buckets[1]["in_progress"].get<bool>());
}

TEST_F(LifecycleHandMadeTest, UtcDaysDifferFromBerlinDays) {
  // In UTC, A's two events fall on 03-30 and B's on 03-31: A is not active on 03-31.
  const json body = {{"period_start", "2024-03-31"}, {"period_end", "2024-03-31"}, {"granularity", "day"}};
  auto result = RunLifecycle(*store_, body, {}, {});
  ASSERT_OK(result);
  EXPECT_EQ((*result)["buckets"][0]["active"], 2);  // B, F
  EXPECT_EQ((*result)["buckets"][0]["dormant"], 2);  // A, E
}

TEST_F(LifecycleHandMadeTest, StickinessWindowsEndOnTheLocalDay) {
  const json body = {{"period_start", "2024-03-30"}, {"period_end", "2024-04-01"}, {"timezone", "Europe/Berlin"}};
  auto result = RunStickiness(*store_, body, {}, {});
  ASSERT_OK(result);
  const json& days = (*result)["days"];
  ASSERT_EQ(days.size(), 3u);
  // MAU of 03-30: 03-01..03-30 holds C (local 03-02), D, A, E, F; of 03-31: 03-02..03-31 adds B, still C.
  const uint64_t dau[] = {3, 3, 3}, wau[] = {4, 5, 6}, mau[] = {5, 6, 6};
  for (size_t idx = 0; idx < 3; ++idx) {
    EXPECT_EQ(days[idx]["dau"], dau[idx]) << idx;
    EXPECT_EQ(days[idx]["wau"], wau[idx]) << idx;
    EXPECT_EQ(days[idx]["mau"], mau[idx]) << idx;
    EXPECT_EQ(days[idx]["dau_mau"], static_cast<double>(dau[idx]) / static_cast<double>(mau[idx]));
  }
  EXPECT_EQ(days[0]["date"], "2024-03-30");
  const json expected_weeks = json::parse(R"([
    {"week_start": "2024-03-25", "complete": false, "days_in_period": 2, "users": 4,
     "active_days": [{"days": 1, "users": 2}, {"days": 2, "users": 2}]},
    {"week_start": "2024-04-01", "complete": false, "days_in_period": 1, "users": 3,
     "active_days": [{"days": 1, "users": 3}]}])");
  EXPECT_EQ((*result)["weeks"], expected_weeks) << (*result)["weeks"].dump();
}

TEST_F(LifecycleHandMadeTest, PeriodAfterTheNewestEventIsNotYetAvailable) {
  const json body = {{"period_start", "2024-04-03"}, {"period_end", "2024-04-10"}};
  auto lifecycle = RunLifecycle(*store_, body, {}, {});
  ASSERT_FALSE(lifecycle.ok());
  EXPECT_EQ(lifecycle.status().code(), common::StatusCode::kFailedPrecondition);
  auto stickiness = RunStickiness(*store_, body, {}, {});
  ASSERT_FALSE(stickiness.ok());
  EXPECT_EQ(stickiness.status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(LifecycleHandMadeTest, UnknownSegmentIsNotFound) {
  const json body = {{"period_start", "2024-03-30"}, {"period_end", "2024-04-01"}, {"segment", "whales"}};
  auto result = RunLifecycle(*store_, body, {}, {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), common::StatusCode::kNotFound);
}

TEST_F(LifecycleHandMadeTest, InvalidRequestsNameTheField) {
  const json base = {{"period_start", "2024-03-30"}, {"period_end", "2024-04-01"}};
  auto with = [&](const json& patch) {
    json body = base;
    body.merge_patch(patch);
    return body;
  };
  struct Case {
    json body;
    std::string field;
    bool stickiness = false;
  };
  const std::vector<Case> cases = {
      {with(R"({"granularty": "day"})"_json), "granularty"},
      {with(R"({"granularity": "year"})"_json), "granularity"},
      {with(R"({"granularity": "day"})"_json), "granularity", true},  // stickiness has no granularity
      {with(R"({"event_types": []})"_json), "event_types"},
      {with(R"({"event_types": "t"})"_json), "event_types"},
      {with(R"({"event_types": ["a", 5]})"_json), "event_types[1]"},
      {with(R"({"event_types": ["a"], "events": [{"event_type": "a"}]})"_json), "events"},
      {with(R"({"events": [{"event_type": "a"}, {"type": "b"}]})"_json), "events[1].type"},
      {with(R"({"events": [{"filters": []}]})"_json), "events[0].event_type"},
      {with(R"({"events": [{"event_type": "a", "filters": {"property": "x", "op": "like", "value": 1}}]})"_json),
       "events[0].filters.op"},
      {with(R"({"events": "a"})"_json), "events", true},
      {with(R"({"filters": {"property": "x", "op": "eq"}})"_json), "filters.value"},
      {with(R"({"timezone": "Mars/Olympus"})"_json), "timezone"},
      {with(R"({"period_end": "2024-03-01"})"_json), "period_end"},
      {R"({"period_end": "2024-04-01"})"_json, "period_start"},
      {with(R"({"period_start": "2020-01-01", "period_end": "2024-04-01"})"_json), "period_end", true},  // > 1000 days
      {with(R"({"period_start": "2000-01-01", "period_end": "2024-04-01", "granularity": "day"})"_json),
       "granularity"},
  };
  for (const Case& test : cases) {
    auto result = test.stickiness ? RunStickiness(*store_, test.body, {}, {}) : RunLifecycle(*store_, test.body, {}, {});
    ASSERT_FALSE(result.ok()) << test.body.dump();
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << test.body.dump();
    EXPECT_EQ(result.status().field(), test.field) << test.body.dump() << ": " << result.status().ToString();
  }
}

}  // namespace
}  // namespace analytics::testing
