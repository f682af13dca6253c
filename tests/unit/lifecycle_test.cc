// Lifecycle and stickiness engines (query/lifecycle.h) against plain references: per-user sets of civil buckets
// (Abseil civil time, no TimeGrid), plain loops. Activity bitmaps are made the way the store makes them: the
// aggregator (query/aggregator.h) over an EventBatch with TimeGrid bounds and collect_users.
#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>

#include <absl/time/civil_time.h>
#include <gtest/gtest.h>

#include "query/aggregator.h"
#include "query/lifecycle.h"
#include "query/time_grid.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using query::ComputeLifecycle;
using query::ComputeStickiness;
using query::Granularity;
using query::LifecycleCounts;
using query::StickinessDay;
using query::TimeGrid;
using query::TimeZone;

constexpr int64_t kEarliest = std::numeric_limits<int64_t>::min() / 2;

Roaring Bits(std::initializer_list<uint32_t> users) {
  Roaring bits;
  for (uint32_t user : users) bits.add(user);
  return bits;
}

struct RawEvent {
  uint32_t user = 0;
  int64_t time_ms = 0;
};

// The users active per bucket [bounds[i], bounds[i+1]), through the aggregator as the store runs it.
std::vector<Roaring> ActivityBitmaps(const std::vector<RawEvent>& events, const std::vector<int64_t>& bounds) {
  query::EventBatch batch;
  batch.rows = events.size();
  batch.types = {"t"};
  for (const RawEvent& event : events) {
    batch.time_ms.push_back(event.time_ms);
    batch.type_codes.push_back(0);
    batch.users.push_back(event.user);
    batch.min_time_ms = std::min(batch.min_time_ms, event.time_ms);
    batch.max_time_ms = std::max(batch.max_time_ms, event.time_ms);
  }
  query::AggregateQuery query;
  query.bounds = bounds;
  query.collect_users = true;
  query::AggregateResult result;
  query::Aggregate(query, batch, result);
  std::vector<Roaring> out(bounds.size() - 1);
  if (!result.groups.empty()) {
    const auto& cells = result.groups.begin()->second;
    for (size_t bucket_idx = 0; bucket_idx < out.size(); ++bucket_idx) out[bucket_idx] = cells[bucket_idx].users.ToRoaring();
  }
  return out;
}

// --- Hand-made cases ---------------------------------------------------------------------------------------

TEST(LifecycleTest, StatusesOfAHandMadeSequence) {
  // Buckets: prev = {1,2}, then {1,3}, {3}, {1,2,4}; earlier = {2, 5}.
  const Roaring earlier = Bits({2, 5});
  const std::vector<Roaring> buckets = {Bits({1, 2}), Bits({1, 3}), Bits({3}), Bits({1, 2, 4})};
  const auto counts = ComputeLifecycle(earlier, buckets);
  ASSERT_EQ(counts.size(), 3u);
  // {1,3}: 1 returning, 3 new; 2 dormant.
  EXPECT_EQ(counts[0], (LifecycleCounts{.active = 2, .new_users = 1, .returning = 1, .resurrecting = 0, .dormant = 1}));
  // {3}: 3 returning; 1 dormant.
  EXPECT_EQ(counts[1], (LifecycleCounts{.active = 1, .new_users = 0, .returning = 1, .resurrecting = 0, .dormant = 1}));
  // {1,2,4}: 1 and 2 resurrecting (seen before), 4 new; 3 dormant.
  EXPECT_EQ(counts[2], (LifecycleCounts{.active = 3, .new_users = 1, .returning = 0, .resurrecting = 2, .dormant = 1}));
}

TEST(LifecycleTest, EarlierHistoryMakesResurrectingNotNew) {
  const auto counts = ComputeLifecycle(Bits({7}), std::vector<Roaring>{Roaring(), Bits({7, 8})});
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].resurrecting, 1u);
  EXPECT_EQ(counts[0].new_users, 1u);
  EXPECT_EQ(counts[0].dormant, 0u);
}

TEST(LifecycleTest, FewerThanTwoBucketsGiveNothing) {
  EXPECT_TRUE(ComputeLifecycle(Roaring(), std::vector<Roaring>{}).empty());
  EXPECT_TRUE(ComputeLifecycle(Roaring(), std::vector<Roaring>{Bits({1})}).empty());
}

TEST(StickinessTest, WindowsOfAHandMadeSequence) {
  // 40 days: user 1 on day 0 only, user 2 every day, user 3 on day 35.
  std::vector<Roaring> days(40);
  days[0].add(1);
  for (auto& day : days) day.add(2);
  days[35].add(3);
  const auto result = ComputeStickiness(days, 29);
  ASSERT_EQ(result.size(), 11u);
  EXPECT_EQ(result[0], (StickinessDay{.dau = 1, .wau = 1, .mau = 2}));  // day 29: window 0..29 holds user 1
  EXPECT_EQ(result[1], (StickinessDay{.dau = 1, .wau = 1, .mau = 1}));  // day 30: window 1..30
  EXPECT_EQ(result[6], (StickinessDay{.dau = 2, .wau = 2, .mau = 2}));  // day 35
  EXPECT_EQ(result[10], (StickinessDay{.dau = 1, .wau = 2, .mau = 2}));  // day 39: 33..39 holds 35
}

TEST(StickinessTest, ActiveDaysOfAHandMadeWeek) {
  std::vector<Roaring> week = {Bits({1, 2}), Bits({1}), Bits({1, 3}), Bits({}), Bits({1}), Bits({3}), Bits({1})};
  const auto counts = query::ActiveDaysDistribution(week);
  EXPECT_EQ(counts, (std::vector<uint64_t>{0, 1, 1, 0, 0, 1, 0, 0}));  // 2: one day, 3: two, 1: five
}

// --- Random data against naive references ------------------------------------------------------------------

TEST(StickinessTest, SlidingUnionsMatchNaiveUnionsOnRandomDays) {
  std::mt19937_64 rng(20261127);
  for (int round = 0; round < 40; ++round) {
    const size_t count = 1 + rng() % 80;
    const uint32_t users = 1 + static_cast<uint32_t>(rng() % 300);
    std::vector<Roaring> days(count);
    std::vector<std::set<uint32_t>> plain(count);
    for (size_t day = 0; day < count; ++day) {
      const size_t active = rng() % (users / 3 + 2);
      for (size_t idx = 0; idx < active; ++idx) {
        // Some ids far apart, so that several roaring containers take part.
        const uint32_t user = static_cast<uint32_t>(rng() % users) * (round % 2 ? 70001u : 1u);
        days[day].add(user);
        plain[day].insert(user);
      }
    }
    const size_t first = rng() % count;
    for (size_t window : {size_t{1}, size_t{2}, size_t{7}, size_t{30}, size_t{31}, size_t{100}}) {
      const auto sliding = query::SlidingUnionCardinality(days, window, first);
      ASSERT_EQ(sliding.size(), count - first);
      for (size_t day = first; day < count; ++day) {
        std::set<uint32_t> all;
        for (size_t idx = day + 1 >= window ? day + 1 - window : 0; idx <= day; ++idx) {
          all.insert(plain[idx].begin(), plain[idx].end());
        }
        ASSERT_EQ(sliding[day - first], all.size()) << "round " << round << " window " << window << " day " << day;
      }
    }
  }
}

TEST(StickinessTest, ActiveDaysDistributionMatchesPerUserCounts) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    const size_t count = 1 + rng() % 9;
    std::vector<Roaring> days(count);
    std::map<uint32_t, uint64_t> per_user;
    for (size_t day = 0; day < count; ++day) {
      std::set<uint32_t> active;
      for (size_t idx = rng() % 60; idx-- > 0;) active.insert(static_cast<uint32_t>(rng() % 50) * 40000u);
      for (uint32_t user : active) {
        days[day].add(user);
        ++per_user[user];
      }
    }
    std::vector<uint64_t> expected(count + 1, 0);
    for (const auto& [user, active_days] : per_user) ++expected[active_days];
    EXPECT_EQ(query::ActiveDaysDistribution(days), expected) << "round " << round;
  }
}

// Lifecycle bucket keys in the zone, computed with civil time only: a day, the Monday of an ISO week, or the
// first day of a month.
absl::CivilDay BucketOf(int64_t time_ms, Granularity granularity, const absl::TimeZone& zone) {
  const absl::CivilDay day = absl::ToCivilDay(absl::FromUnixMillis(time_ms), zone);
  switch (granularity) {
    case Granularity::kWeek:
      return day - (static_cast<int>(absl::GetWeekday(day)) - static_cast<int>(absl::Weekday::monday) + 7) % 7;
    case Granularity::kMonth:
      return absl::CivilDay(absl::CivilMonth(day));
    default:
      return day;
  }
}

absl::CivilDay Step(absl::CivilDay key, Granularity granularity, int n) {
  switch (granularity) {
    case Granularity::kWeek:
      return key + 7 * n;
    case Granularity::kMonth:
      return absl::CivilDay(absl::CivilMonth(key) + n);
    default:
      return key + n;
  }
}

// The reference: per user the set of bucket keys they were active in; then the definitions, literally.
std::vector<LifecycleCounts> ReferenceLifecycle(const std::vector<RawEvent>& events, int64_t start_ms, int64_t end_ms,
                                                Granularity granularity, const absl::TimeZone& zone) {
  std::map<uint32_t, std::set<absl::CivilDay>> active;
  for (const RawEvent& event : events) active[event.user].insert(BucketOf(event.time_ms, granularity, zone));
  const absl::CivilDay first = BucketOf(start_ms, granularity, zone);
  const absl::CivilDay last = BucketOf(end_ms - 1, granularity, zone);
  std::vector<LifecycleCounts> out;
  for (absl::CivilDay key = first; key <= last; key = Step(key, granularity, 1)) {
    const absl::CivilDay previous = Step(key, granularity, -1);
    LifecycleCounts counts;
    for (const auto& [user, keys] : active) {
      const bool now = keys.count(key) > 0;
      const bool before = keys.count(previous) > 0;
      const bool ever_before = !keys.empty() && *keys.begin() < key;
      if (now) ++counts.active;
      if (now && !ever_before) ++counts.new_users;
      if (now && before) ++counts.returning;
      if (now && !before && ever_before) ++counts.resurrecting;
      if (!now && before) ++counts.dormant;
    }
    out.push_back(counts);
  }
  return out;
}

// Times of interest in the zone: local midnights and the instants next to them, DST transitions.
std::vector<int64_t> Landmarks(const absl::TimeZone& zone, absl::CivilDay from, int days) {
  std::vector<int64_t> out;
  for (int day = 0; day <= days; ++day) {
    const int64_t midnight = absl::ToUnixMillis(zone.At(absl::CivilSecond(from + day)).pre);
    for (int64_t delta : {-1, 0, 1}) out.push_back(midnight + delta);
  }
  return out;
}

std::vector<RawEvent> RandomEvents(std::mt19937_64& rng, int64_t from_ms, int64_t to_ms, size_t count, uint32_t users,
                                   const std::vector<int64_t>& landmarks) {
  std::vector<RawEvent> events;
  for (size_t idx = 0; idx < count; ++idx) {
    RawEvent event;
    event.user = static_cast<uint32_t>(rng() % users);
    if (rng() % 4 == 0) {
      event.time_ms = landmarks[rng() % landmarks.size()];
    } else {
      event.time_ms = from_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(to_ms - from_ms));
    }
    events.push_back(event);
    if (rng() % 10 == 0) events.push_back(event);  // equal timestamps: the same user twice at one instant
  }
  return events;
}

struct ZoneCase {
  const char* zone;
  Granularity granularity;
};

class LifecycleRandomTest : public ::testing::TestWithParam<ZoneCase> {};

TEST_P(LifecycleRandomTest, MatchesTheCivilTimeReference) {
  ASSERT_OK_AND_ASSIGN(TimeZone zone, TimeZone::Load(GetParam().zone));
  const Granularity granularity = GetParam().granularity;
  const absl::TimeZone& tz = zone.zone();
  // History from 2023-11-01; periods inside 2024-01 .. 2024-11 (DST changes in March and October/November).
  const absl::CivilDay history(2023, 11, 1);
  const int64_t history_ms = absl::ToUnixMillis(tz.At(absl::CivilSecond(history)).pre);
  const int64_t history_end = absl::ToUnixMillis(tz.At(absl::CivilSecond(absl::CivilDay(2024, 12, 31))).pre);
  const auto landmarks = Landmarks(tz, history, 425);
  std::mt19937_64 rng(static_cast<uint64_t>(granularity) * 1000 + std::string(GetParam().zone).size());
  for (int round = 0; round < 12; ++round) {
    const uint32_t users = 5 + static_cast<uint32_t>(rng() % 200);
    const auto events = RandomEvents(rng, history_ms, history_end, 200 + rng() % 3000, users, landmarks);
    // The period: from a random day (sometimes a mid-day instant) for 1..200 days.
    const absl::CivilDay start_day = absl::CivilDay(2024, 1, 1) + static_cast<int>(rng() % 280);
    int64_t start_ms = absl::ToUnixMillis(tz.At(absl::CivilSecond(start_day)).pre);
    if (round % 3 == 1) start_ms += static_cast<int64_t>(rng() % 86400000);
    const int64_t end_ms =
        absl::ToUnixMillis(tz.At(absl::CivilSecond(start_day + 1 + static_cast<int>(rng() % 60))).pre) +
        (round % 4 == 2 ? static_cast<int64_t>(rng() % 3600000) : 0);
    // The plan the request layer makes: the bucket before the first, everything before that.
    ASSERT_OK_AND_ASSIGN(TimeGrid grid, TimeGrid::Make(start_ms, end_ms, granularity, zone));
    ASSERT_OK_AND_ASSIGN(TimeGrid with_previous, TimeGrid::Make(grid.bounds().front() - 1, end_ms, granularity, zone));
    std::vector<int64_t> bounds = {kEarliest};
    bounds.insert(bounds.end(), with_previous.bounds().begin(), with_previous.bounds().end());
    const auto bitmaps = ActivityBitmaps(events, bounds);
    const auto counts =
        ComputeLifecycle(bitmaps[0], std::span<const Roaring>(bitmaps).subspan(1));
    const auto expected = ReferenceLifecycle(events, start_ms, end_ms, granularity, tz);
    ASSERT_EQ(counts.size(), grid.size());
    ASSERT_EQ(counts.size(), expected.size()) << "round " << round;
    for (size_t bucket_idx = 0; bucket_idx < counts.size(); ++bucket_idx) {
      const LifecycleCounts& a = counts[bucket_idx];
      const LifecycleCounts& b = expected[bucket_idx];
      EXPECT_EQ(a, b) << "round " << round << " bucket " << bucket_idx << ": active " << a.active << "/" << b.active
                      << " new " << a.new_users << "/" << b.new_users << " returning " << a.returning << "/"
                      << b.returning << " resurrecting " << a.resurrecting << "/" << b.resurrecting << " dormant "
                      << a.dormant << "/" << b.dormant;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zones, LifecycleRandomTest,
                         ::testing::Values(ZoneCase{"UTC", Granularity::kDay}, ZoneCase{"UTC", Granularity::kWeek},
                                           ZoneCase{"Europe/Berlin", Granularity::kDay},
                                           ZoneCase{"Europe/Berlin", Granularity::kWeek},
                                           ZoneCase{"Europe/Berlin", Granularity::kMonth},
                                           ZoneCase{"America/New_York", Granularity::kWeek},
                                           ZoneCase{"America/New_York", Granularity::kMonth},
                                           // Midnight is skipped (2024-09-08) and repeated (2024-04-06).
                                           ZoneCase{"America/Santiago", Granularity::kDay},
                                           ZoneCase{"America/Santiago", Granularity::kWeek}),
                         [](const ::testing::TestParamInfo<ZoneCase>& info) {
                           std::string name = std::string(info.param.zone) + "_" +
                                              std::string(query::GranularityName(info.param.granularity));
                           for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

TEST(StickinessTest, DailyWindowsAcrossDstMatchTheCivilTimeReference) {
  ASSERT_OK_AND_ASSIGN(TimeZone zone, TimeZone::Load("Europe/Berlin"));
  const absl::TimeZone& tz = zone.zone();
  std::mt19937_64 rng(99);
  const absl::CivilDay history(2024, 2, 1);
  const int64_t history_ms = absl::ToUnixMillis(tz.At(absl::CivilSecond(history)).pre);
  const int64_t history_end = absl::ToUnixMillis(tz.At(absl::CivilSecond(absl::CivilDay(2024, 5, 1))).pre);
  const auto events = RandomEvents(rng, history_ms, history_end, 4000, 150, Landmarks(tz, history, 90));
  // Period 2024-03-20 .. 2024-04-10 (spring forward on 2024-03-31); days from 29 days before it.
  const absl::CivilDay first(2024, 3, 20), last(2024, 4, 10);
  const absl::CivilDay lookback = first - 29;
  ASSERT_OK_AND_ASSIGN(TimeGrid grid, TimeGrid::Make(zone.StartOfDay(lookback.year(), lookback.month(), lookback.day()),
                                                     zone.StartOfDay(last.year(), last.month(), last.day() + 1),
                                                     Granularity::kDay, zone));
  ASSERT_EQ(grid.size(), static_cast<size_t>(last - lookback + 1));
  const auto days = ActivityBitmaps(events, grid.bounds());
  const auto result = ComputeStickiness(days, 29);
  ASSERT_EQ(result.size(), static_cast<size_t>(last - first + 1));
  std::map<uint32_t, std::set<absl::CivilDay>> active;
  for (const RawEvent& event : events) {
    active[event.user].insert(absl::ToCivilDay(absl::FromUnixMillis(event.time_ms), tz));
  }
  for (absl::CivilDay day = first; day <= last; ++day) {
    StickinessDay expected;
    for (const auto& [user, user_days] : active) {
      expected.dau += user_days.count(day);
      expected.wau += user_days.lower_bound(day - 6) != user_days.upper_bound(day);
      expected.mau += user_days.lower_bound(day - 29) != user_days.upper_bound(day);
    }
    EXPECT_EQ(result[static_cast<size_t>(day - first)], expected) << absl::FormatCivilTime(day);
  }
}

}  // namespace
}  // namespace analytics::testing
