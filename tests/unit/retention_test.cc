// Retention cohorts (query/retention.h) against a plain reference written here: loops over raw events with civil
// dates from the zone database, no engine code. Random data with fixed seeds in zones with DST, plus hand-made
// cases (local midnights, DST days of 23 and 25 hours, equal timestamps, young cohorts, buckets that begin
// before the period).
#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>
#include <gtest/gtest.h>

#include "common/time_util.h"
#include "query/retention.h"
#include "query/time_grid.h"
#include "query/timeline.h"

namespace analytics::query {
namespace {

int64_t Ms(const std::string& text) { return common::ParseRfc3339Millis(text).value(); }

struct RawEvent {
  uint32_t user = 0;
  int64_t time_ms = 0;
  bool start = false;   // matches the start selector
  bool ret = false;     // matches the return selector
  std::string key;      // property cohorts: the property's text ("" = missing)
};

absl::CivilDay LocalDate(int64_t unix_ms, const TimeZone& zone) {
  return absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone.zone());
}

int64_t StartOf(absl::CivilDay day, const TimeZone& zone) { return zone.StartOfDay(day.year(), day.month(), day.day()); }

absl::CivilDay BucketStart(absl::CivilDay day, Granularity granularity) {
  switch (granularity) {
    case Granularity::kWeek:
      while (absl::GetWeekday(day) != absl::Weekday::monday) day -= 1;
      return day;
    case Granularity::kMonth:
      return absl::CivilDay(day.year(), day.month(), 1);
    default:
      return day;
  }
}

absl::CivilDay BucketLast(absl::CivilDay start, Granularity granularity) {
  switch (granularity) {
    case Granularity::kWeek: return start + 6;
    case Granularity::kMonth: return absl::CivilDay(absl::CivilMonth(start) + 1) - 1;
    default: return start;
  }
}

// A joined Timeline of the selected events (sorted by user, then time), with the property as key 0 when asked.
Timeline MakeTimeline(std::vector<RawEvent> events, uint32_t user_count, bool with_key) {
  std::stable_sort(events.begin(), events.end(), [](const RawEvent& a, const RawEvent& b) {
    return a.user != b.user ? a.user < b.user : a.time_ms < b.time_ms;
  });
  Timeline timeline;
  timeline.type_names = {"start"};
  std::map<std::string, uint32_t> values;
  if (with_key) {
    for (const auto& event : events) {
      if (!event.key.empty()) values.emplace(event.key, 0);
    }
    timeline.keys.resize(1);
    timeline.key_values.resize(1);
    for (auto& [text, code] : values) {
      code = static_cast<uint32_t>(timeline.key_values[0].size());
      timeline.key_values[0].push_back(text);
    }
  }
  // As MergeTimelines joins them: an entry in user_begin per user that has rows, ascending by id.
  for (const auto& event : events) {
    if (timeline.users.empty() || timeline.users.back() != event.user) {
      timeline.user_begin.push_back(static_cast<uint32_t>(timeline.users.size()));
    }
    timeline.users.push_back(event.user);
    timeline.time_ms.push_back(event.time_ms);
    timeline.matches.push_back(1);
    timeline.types.push_back(0);
    if (with_key) timeline.keys[0].push_back(event.key.empty() ? kMissingKey : values.at(event.key));
  }
  timeline.user_begin.push_back(static_cast<uint32_t>(timeline.users.size()));
  EXPECT_LE(timeline.user_count(), user_count);
  return timeline;
}

struct RefCohort {
  uint64_t users = 0;
  std::map<int, std::optional<uint64_t>> retained;  // nullopt: not measurable
};

// The reference: cohorts keyed by the bucket's first date, every bucket of the period listed.
std::map<absl::CivilDay, RefCohort> Reference(const RetentionSpec& spec, const std::vector<int>& periods,
                                              const std::vector<RawEvent>& events, bool by_property = false) {
  const TimeZone& zone = spec.zone;
  const int64_t horizon = std::min(spec.horizon_ms, spec.end_ms);
  // (user, bucket start) -> d0
  std::map<std::pair<uint32_t, absl::CivilDay>, absl::CivilDay> members;
  if (by_property) {
    std::map<uint32_t, const RawEvent*> first;
    for (const auto& event : events) {
      if (event.key.empty() || event.time_ms >= spec.end_ms) continue;
      auto [it, added] = first.emplace(event.user, &event);
      if (!added && event.time_ms < it->second->time_ms) it->second = &event;
    }
    for (const auto& [user, event] : first) {
      int64_t cohort_ms = 0;
      absl::CivilDay date;
      if (absl::ParseCivilTime(event->key, &date) && event->key.size() == 10) {
        cohort_ms = StartOf(date, zone);
      } else if (auto parsed = common::ParseRfc3339Millis(event->key); parsed.ok()) {
        cohort_ms = *parsed;
      } else {
        continue;
      }
      if (cohort_ms < spec.start_ms || cohort_ms >= spec.end_ms) continue;
      const absl::CivilDay d0 = LocalDate(cohort_ms, zone);
      members[{user, BucketStart(d0, spec.cohort_granularity)}] = d0;
    }
  } else if (spec.cohort_type == CohortType::kFirstTime) {
    std::map<uint32_t, int64_t> first;
    for (const auto& event : events) {
      if (!event.start || event.time_ms >= spec.end_ms) continue;
      auto [it, added] = first.emplace(event.user, event.time_ms);
      if (!added) it->second = std::min(it->second, event.time_ms);
    }
    for (const auto& [user, time] : first) {
      if (time < spec.start_ms) continue;
      const absl::CivilDay d0 = LocalDate(time, zone);
      members[{user, BucketStart(d0, spec.cohort_granularity)}] = d0;
    }
  } else {
    for (const auto& event : events) {
      if (!event.start || event.time_ms < spec.start_ms || event.time_ms >= spec.end_ms) continue;
      const absl::CivilDay d0 = LocalDate(event.time_ms, zone);
      auto [it, added] = members.emplace(std::make_pair(event.user, BucketStart(d0, spec.cohort_granularity)), d0);
      if (!added) it->second = std::min(it->second, d0);
    }
  }
  std::map<absl::CivilDay, RefCohort> out;
  const absl::CivilDay first_date = LocalDate(spec.start_ms, zone);
  const absl::CivilDay last_date = LocalDate(spec.end_ms - 1, zone);
  for (absl::CivilDay day = first_date; day <= last_date; day += 1) {
    const absl::CivilDay bucket = BucketStart(day, spec.cohort_granularity);
    if (out.count(bucket)) continue;
    RefCohort& cohort = out[bucket];
    const absl::CivilDay last_in_period = std::min(BucketLast(bucket, spec.cohort_granularity), last_date);
    for (int period : periods) {
      // Every date of the bucket in the period: its day + N ended at or before H.
      bool measurable = true;
      for (absl::CivilDay date = std::max(bucket, first_date); date <= last_in_period; date += 1) {
        if (StartOf(date + period + 1, zone) > horizon) measurable = false;
      }
      if (measurable) cohort.retained[period] = 0;
      else cohort.retained[period] = std::nullopt;
    }
  }
  std::map<uint32_t, std::vector<const RawEvent*>> by_user;
  for (const auto& event : events) by_user[event.user].push_back(&event);
  for (const auto& [member, d0] : members) {
    RefCohort& cohort = out.at(member.second);
    ++cohort.users;
    for (auto& [period, retained] : cohort.retained) {
      if (!retained) continue;
      bool hit = false;
      for (const RawEvent* event : by_user[member.first]) {
        if (!event->ret || event->time_ms < spec.start_ms || event->time_ms >= horizon) continue;
        const absl::CivilDay date = LocalDate(event->time_ms, zone);
        if (spec.mode == RetentionMode::kOnDay ? date == d0 + period : date >= d0 + period) hit = true;
      }
      if (hit) ++*retained;
    }
  }
  return out;
}

// The engine over the same events: the start timeline as the request layer reads it, return days as the store's
// per-day aggregate would give them (return events in [start, H), by local date).
std::vector<RetentionRow> RunEngine(const RetentionPlan& plan, const std::vector<RawEvent>& events, size_t threads,
                                    bool by_property = false, uint64_t* unparsed = nullptr) {
  const RetentionSpec& spec = plan.spec();
  uint32_t user_count = 0;
  std::vector<RawEvent> starts;
  for (const auto& event : events) {
    user_count = std::max(user_count, event.user + 1);
    if (by_property) {
      if (!event.key.empty() && event.time_ms < spec.end_ms) starts.push_back(event);
    } else if (event.start && event.time_ms < spec.end_ms &&
               (spec.cohort_type == CohortType::kFirstTime || event.time_ms >= spec.start_ms)) {
      starts.push_back(event);
    }
  }
  const Timeline timeline = MakeTimeline(starts, user_count, by_property);
  std::vector<Roaring> cohort_days;
  if (by_property) {
    uint64_t unparsed_users = 0;
    cohort_days = CohortDaysFromProperty(plan, timeline, 0, threads, unparsed_users);
    if (unparsed) *unparsed = unparsed_users;
  } else {
    cohort_days = CohortDaysFromStarts(plan, timeline, threads);
  }
  std::vector<Roaring> return_days(plan.days());
  const int64_t horizon = std::min(spec.horizon_ms, spec.end_ms);
  for (const auto& event : events) {
    if (!event.ret || event.time_ms < spec.start_ms || event.time_ms >= horizon) continue;
    const int64_t index = LocalDate(event.time_ms, spec.zone) - plan.Date(0);
    EXPECT_GE(index, 0);
    EXPECT_LT(index, static_cast<int64_t>(plan.days()));
    if (index >= 0 && index < static_cast<int64_t>(plan.days())) return_days[static_cast<size_t>(index)].add(event.user);
  }
  EXPECT_EQ(cohort_days.size(), plan.days());
  return ComputeRetention(plan, cohort_days, return_days, threads);
}

void ExpectMatches(const RetentionPlan& plan, const std::vector<RetentionRow>& rows,
                   const std::map<absl::CivilDay, RefCohort>& expected, const std::string& label) {
  ASSERT_EQ(rows.size(), expected.size()) << label;
  ASSERT_EQ(plan.cohorts().size(), rows.size()) << label;
  auto it = expected.begin();
  for (size_t cohort_idx = 0; cohort_idx < rows.size(); ++cohort_idx, ++it) {
    const std::string where = label + " cohort " + absl::FormatCivilTime(it->first);
    EXPECT_EQ(plan.cohorts()[cohort_idx].start, it->first) << where;
    EXPECT_EQ(rows[cohort_idx].users, it->second.users) << where;
    ASSERT_EQ(rows[cohort_idx].cells.size(), plan.periods().size()) << where;
    for (size_t period_idx = 0; period_idx < plan.periods().size(); ++period_idx) {
      const int period = plan.periods()[period_idx];
      const auto& want = it->second.retained.at(period);
      const RetentionCell& cell = rows[cohort_idx].cells[period_idx];
      EXPECT_EQ(cell.measurable, want.has_value()) << where << " period " << period;
      if (want) EXPECT_EQ(cell.users, *want) << where << " period " << period;
      else EXPECT_EQ(cell.users, 0u) << where << " period " << period;
    }
  }
}

// Random events around a period: times uniform, near local midnights (±1 ms), and repeated exactly.
std::vector<RawEvent> RandomEvents(uint64_t seed, const TimeZone& zone, int64_t from_ms, int64_t to_ms, uint32_t users,
                                   size_t count) {
  std::mt19937_64 rng(seed);
  std::vector<RawEvent> events;
  std::vector<int64_t> used;
  for (size_t event_idx = 0; event_idx < count; ++event_idx) {
    RawEvent event;
    event.user = static_cast<uint32_t>(rng() % users) * 3 + 1;  // sparse ids: the timeline skips the gaps
    const uint64_t kind = rng() % 10;
    if (kind < 6 || used.empty()) {
      event.time_ms = from_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(to_ms - from_ms));
    } else if (kind < 9) {
      const absl::CivilDay day = LocalDate(from_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(to_ms - from_ms)), zone);
      event.time_ms = StartOf(day, zone) + static_cast<int64_t>(rng() % 3) - 1;
    } else {
      event.time_ms = used[rng() % used.size()];  // an equal timestamp
    }
    used.push_back(event.time_ms);
    event.start = rng() % 3 == 0;
    event.ret = rng() % 2 == 0;
    if (rng() % 4 == 0) {
      event.start = true;
      event.ret = true;  // one event that is both
    }
    events.push_back(event);
  }
  return events;
}

RetentionPlan MustPlan(const RetentionSpec& spec) {
  auto plan = RetentionPlan::Make(spec);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  return std::move(plan).value();
}

TEST(RetentionTest, RandomDataMatchesTheReferenceInZonesWithDst) {
  struct Case {
    const char* zone;
    const char* start;
    const char* end;
    const char* horizon;  // "" = end
  };
  const Case cases[] = {
      {"Europe/Berlin", "2024-03-20T00:00:00+01:00", "2024-04-12T00:00:00+02:00", ""},
      {"America/New_York", "2024-10-21T09:30:00-04:00", "2024-11-20T00:00:00-05:00", "2024-11-14T15:00:00-05:00"},
      {"UTC", "2024-01-03T00:00:00Z", "2024-03-05T00:00:00Z", ""},
      {"Europe/Berlin", "2024-10-01T00:00:00+02:00", "2024-12-15T17:00:00+01:00", "2024-12-01T00:00:00+01:00"},
  };
  uint64_t seed = 11;
  size_t checks = 0;
  for (const Case& test_case : cases) {
    const TimeZone zone = TimeZone::Load(test_case.zone).value();
    const int64_t start = Ms(test_case.start), end = Ms(test_case.end);
    const int64_t horizon = *test_case.horizon ? Ms(test_case.horizon) : end;
    const auto events = RandomEvents(seed++, zone, start - 20 * 86400000LL, end + 5 * 86400000LL, 150, 3000);
    for (Granularity granularity : {Granularity::kDay, Granularity::kWeek, Granularity::kMonth}) {
      for (RetentionMode mode : {RetentionMode::kOnDay, RetentionMode::kOnOrAfter}) {
        for (CohortType type : {CohortType::kFirstTime, CohortType::kRecurring}) {
          for (bool triangle : {false, true}) {
            RetentionSpec spec;
            spec.zone = zone;
            spec.cohort_granularity = granularity;
            spec.periods = {0, 1, 2, 7, 13, 30};
            spec.triangle = triangle;
            spec.mode = mode;
            spec.cohort_type = type;
            spec.start_ms = start;
            spec.end_ms = end;
            spec.horizon_ms = horizon;
            const RetentionPlan plan = MustPlan(spec);
            const std::string label = std::string(test_case.zone) + " " + std::string(GranularityName(granularity)) +
                                      (mode == RetentionMode::kOnDay ? " on_day" : " on_or_after") +
                                      (type == CohortType::kFirstTime ? " first_time" : " recurring") +
                                      (triangle ? " triangle" : "");
            const auto expected = Reference(spec, plan.periods(), events);
            const auto rows = RunEngine(plan, events, 1);
            ExpectMatches(plan, rows, expected, label);
            // The thread count does not change the answer.
            const auto parallel = RunEngine(plan, events, 4);
            ASSERT_EQ(parallel.size(), rows.size());
            for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
              EXPECT_EQ(parallel[row_idx].users, rows[row_idx].users) << label;
              for (size_t cell_idx = 0; cell_idx < rows[row_idx].cells.size(); ++cell_idx) {
                EXPECT_EQ(parallel[row_idx].cells[cell_idx].users, rows[row_idx].cells[cell_idx].users) << label;
              }
            }
            ++checks;
          }
        }
      }
    }
  }
  EXPECT_EQ(checks, 4u * 3 * 2 * 2 * 2);
}

TEST(RetentionTest, TriangleRunsToTheLastPeriodMeasurableForTheFirstCohort) {
  RetentionSpec spec;
  spec.zone = TimeZone::Load("Europe/Berlin").value();
  spec.cohort_granularity = Granularity::kWeek;
  spec.triangle = true;
  spec.start_ms = spec.zone.StartOfDay(2024, 3, 4);  // a Monday
  spec.end_ms = spec.zone.StartOfDay(2024, 4, 1);
  spec.horizon_ms = spec.end_ms;
  const RetentionPlan plan = MustPlan(spec);
  // First cohort: March 4-10; March 10 + N must end by April 1 00:00: N <= 21.
  ASSERT_EQ(plan.periods().size(), 22u);
  EXPECT_EQ(plan.periods().back(), 21);
  EXPECT_TRUE(plan.Measurable(0, 21));
  EXPECT_FALSE(plan.Measurable(1, 21));
  EXPECT_TRUE(plan.Measurable(1, 14));
  // A period shorter than the first cohort's span: only period 0, not measurable.
  spec.end_ms = spec.zone.StartOfDay(2024, 3, 6);
  spec.start_ms = spec.zone.StartOfDay(2024, 3, 5);
  spec.horizon_ms = spec.zone.StartOfDay(2024, 3, 5) + 3600000;
  const RetentionPlan young = MustPlan(spec);
  ASSERT_EQ(young.periods(), std::vector<int>{0});
  EXPECT_FALSE(young.Measurable(0, 0));
}

TEST(RetentionTest, DayNIsTheCalendarDayAcrossDstChanges) {
  const TimeZone zone = TimeZone::Load("Europe/Berlin").value();
  RetentionSpec spec;
  spec.zone = zone;
  spec.cohort_granularity = Granularity::kDay;
  spec.periods = {1, 2};
  spec.start_ms = Ms("2024-03-30T00:00:00+01:00");
  spec.end_ms = Ms("2024-04-05T00:00:00+02:00");
  spec.horizon_ms = spec.end_ms;
  const RetentionPlan plan = MustPlan(spec);
  // March 31 has 23 hours.
  EXPECT_EQ(plan.day_bounds()[2] - plan.day_bounds()[1], 23 * 3600000LL);
  std::vector<RawEvent> events = {
      // User 0 starts 23:30 on March 30 and comes back 23:30 on March 31 (23 hours later): day 1.
      {0, Ms("2024-03-30T23:30:00+01:00"), true, false, ""},
      {0, Ms("2024-03-31T23:30:00+02:00"), false, true, ""},
      // User 1 starts at the same instant and comes back 24 hours later: already April 1 locally, day 2.
      {1, Ms("2024-03-30T23:30:00+01:00"), true, false, ""},
      {1, Ms("2024-04-01T00:30:00+02:00"), false, true, ""},
      // User 2: a return 1 ms before the local midnight ending March 31, day 1.
      {2, Ms("2024-03-30T00:00:00+01:00"), true, false, ""},
      {2, Ms("2024-04-01T00:00:00+02:00") - 1, false, true, ""},
  };
  const auto rows = RunEngine(plan, events, 1);
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].users, 3u);
  EXPECT_EQ(rows[0].cells[0].users, 2u);  // users 0 and 2 on March 31
  EXPECT_EQ(rows[0].cells[1].users, 1u);  // user 1 on April 1
  ExpectMatches(plan, rows, Reference(spec, plan.periods(), events), "dst");
}

TEST(RetentionTest, YoungCohortsAreNotMeasurableAndTheBucketMayBeginBeforeThePeriod) {
  const TimeZone zone = TimeZone::Utc();
  RetentionSpec spec;
  spec.zone = zone;
  spec.cohort_granularity = Granularity::kWeek;
  spec.periods = {0, 1, 7};
  spec.start_ms = Ms("2024-01-03T00:00:00Z");  // a Wednesday: the first week starts on Monday January 1
  spec.end_ms = Ms("2024-01-15T00:00:00Z");    // the period ends with Sunday January 14
  spec.horizon_ms = Ms("2024-01-12T12:00:00Z");  // "now" in the middle of Friday January 12
  const RetentionPlan plan = MustPlan(spec);
  ASSERT_EQ(plan.cohorts().size(), 2u);
  EXPECT_EQ(plan.cohorts()[0].start, absl::CivilDay(2024, 1, 1));
  EXPECT_EQ(plan.cohorts()[1].start, absl::CivilDay(2024, 1, 8));
  // First week: its days in the period are January 3-7; 7 + 1 = 8 ended by the 12th; 7 + 7 = 14 has not.
  EXPECT_TRUE(plan.Measurable(0, 1));
  EXPECT_FALSE(plan.Measurable(0, 7));
  // Second week: its last day (14th) has not ended.
  EXPECT_FALSE(plan.Measurable(1, 0));
  std::vector<RawEvent> events = {
      {0, Ms("2024-01-02T10:00:00Z"), true, true, ""},   // first start before the period: in no first_time cohort
      {0, Ms("2024-01-04T10:00:00Z"), true, true, ""},
      {1, Ms("2024-01-07T23:59:59.999Z"), true, true, ""},
      {1, Ms("2024-01-08T00:00:00Z"), false, true, ""},
      {2, Ms("2024-01-09T00:00:00Z"), true, true, ""},
  };
  const auto rows = RunEngine(plan, events, 1);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].users, 1u);
  EXPECT_EQ(rows[0].cells[0].users, 1u);
  EXPECT_EQ(rows[0].cells[1].users, 1u);
  EXPECT_FALSE(rows[0].cells[2].measurable);
  EXPECT_EQ(rows[1].users, 1u);
  for (const auto& cell : rows[1].cells) EXPECT_FALSE(cell.measurable);
  ExpectMatches(plan, rows, Reference(spec, plan.periods(), events), "young");
  // The return bounds run from period_start through the local midnights to H.
  const std::vector<int64_t> want = {spec.start_ms,          Ms("2024-01-04T00:00:00Z"), Ms("2024-01-05T00:00:00Z"),
                                     Ms("2024-01-06T00:00:00Z"), Ms("2024-01-07T00:00:00Z"), Ms("2024-01-08T00:00:00Z"),
                                     Ms("2024-01-09T00:00:00Z"), Ms("2024-01-10T00:00:00Z"), Ms("2024-01-11T00:00:00Z"),
                                     Ms("2024-01-12T00:00:00Z"), spec.horizon_ms};
  EXPECT_EQ(plan.return_bounds(), want);
  EXPECT_EQ(plan.Date(plan.return_first_day()), absl::CivilDay(2024, 1, 3));
}

TEST(RetentionTest, RecurringCohortsTakeTheFirstStartInEachBucket) {
  RetentionSpec spec;
  spec.zone = TimeZone::Load("America/New_York").value();
  spec.cohort_granularity = Granularity::kWeek;
  spec.cohort_type = CohortType::kRecurring;
  spec.periods = {1};
  spec.start_ms = Ms("2024-03-04T00:00:00-05:00");
  spec.end_ms = Ms("2024-03-25T00:00:00-04:00");
  spec.horizon_ms = spec.end_ms;
  const RetentionPlan plan = MustPlan(spec);
  std::vector<RawEvent> events = {
      {0, Ms("2024-03-05T12:00:00-05:00"), true, false, ""},
      {0, Ms("2024-03-06T12:00:00-05:00"), true, false, ""},  // not d0: the week's first is the 5th
      {0, Ms("2024-03-07T12:00:00-05:00"), false, true, ""},  // day 2 from the 5th: not retained at 1
      {0, Ms("2024-03-11T01:00:00-04:00"), true, false, ""},  // next week, d0 = Monday 11th
      {0, Ms("2024-03-12T23:00:00-04:00"), false, true, ""},  // day 1
  };
  const auto rows = RunEngine(plan, events, 1);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].users, 1u);
  EXPECT_EQ(rows[0].cells[0].users, 0u);
  EXPECT_EQ(rows[1].users, 1u);
  EXPECT_EQ(rows[1].cells[0].users, 1u);
  ExpectMatches(plan, rows, Reference(spec, plan.periods(), events), "recurring");
}

TEST(RetentionTest, EqualTimestampsAndOnOrAfter) {
  RetentionSpec spec;
  spec.zone = TimeZone::Utc();
  spec.cohort_granularity = Granularity::kDay;
  spec.mode = RetentionMode::kOnOrAfter;
  spec.periods = {0, 1, 3, 5};
  spec.start_ms = Ms("2024-05-01T00:00:00Z");
  spec.end_ms = Ms("2024-05-10T00:00:00Z");
  spec.horizon_ms = spec.end_ms;
  const RetentionPlan plan = MustPlan(spec);
  const int64_t t = Ms("2024-05-01T08:00:00Z");
  std::vector<RawEvent> events = {
      {0, t, true, false, ""}, {0, t, false, true, ""},                // a return at the start's instant: day 0
      {1, t, true, false, ""}, {1, Ms("2024-05-05T00:00:00Z"), false, true, ""},  // last return on day 4
      {2, t, true, false, ""}, {2, Ms("2024-05-12T00:00:00Z"), false, true, ""},  // after H: never read
  };
  const auto rows = RunEngine(plan, events, 1);
  EXPECT_EQ(rows[0].users, 3u);
  EXPECT_EQ(rows[0].cells[0].users, 2u);  // 0 and 1
  EXPECT_EQ(rows[0].cells[1].users, 1u);  // 1 (day 4 >= 1)
  EXPECT_EQ(rows[0].cells[2].users, 1u);
  EXPECT_EQ(rows[0].cells[3].users, 0u);
  ExpectMatches(plan, rows, Reference(spec, plan.periods(), events), "equal");
}

TEST(RetentionTest, PropertyCohortsUseTheFirstValueCarried) {
  RetentionSpec spec;
  spec.zone = TimeZone::Load("Europe/Berlin").value();
  spec.cohort_granularity = Granularity::kDay;
  spec.periods = {0, 1, 2};
  spec.start_ms = Ms("2024-06-01T00:00:00+02:00");
  spec.end_ms = Ms("2024-06-08T00:00:00+02:00");
  spec.horizon_ms = spec.end_ms;
  const RetentionPlan plan = MustPlan(spec);
  std::vector<RawEvent> events = {
      {0, Ms("2024-06-03T10:00:00+02:00"), false, true, "2024-06-02"},  // a date: d0 June 2
      {0, Ms("2024-06-04T10:00:00+02:00"), false, true, "2024-06-04"},  // not the first value
      {1, Ms("2024-05-20T10:00:00+02:00"), false, false, "2024-06-01T22:30:00Z"},  // June 2 00:30 local
      {1, Ms("2024-06-03T10:00:00+02:00"), false, true, ""},
      {2, Ms("2024-06-02T10:00:00+02:00"), false, true, "yesterday"},  // unparsed
      {2, Ms("2024-06-03T10:00:00+02:00"), false, true, "2024-06-02"},
      {3, Ms("2024-06-02T10:00:00+02:00"), false, true, "2024-05-30"},  // before the period
  };
  uint64_t unparsed = 0;
  const auto rows = RunEngine(plan, events, 1, true, &unparsed);
  EXPECT_EQ(unparsed, 1u);
  EXPECT_EQ(rows[1].users, 2u);           // June 2: users 0 and 1
  EXPECT_EQ(rows[1].cells[0].users, 0u);  // nobody returned on June 2 itself
  EXPECT_EQ(rows[1].cells[1].users, 2u);  // both on June 3
  ExpectMatches(plan, rows, Reference(spec, plan.periods(), events, true), "property");
  const auto random = RandomEvents(77, spec.zone, spec.start_ms - 5 * 86400000LL, spec.end_ms, 60, 800);
  std::vector<RawEvent> keyed = random;
  std::mt19937_64 rng(5);
  for (auto& event : keyed) {
    const uint64_t kind = rng() % 4;
    if (kind == 0) event.key = absl::FormatCivilTime(LocalDate(event.time_ms - static_cast<int64_t>(rng() % 3) * 86400000LL, spec.zone));
    if (kind == 1) event.key = common::FormatRfc3339Millis(event.time_ms - static_cast<int64_t>(rng() % 100000000));
  }
  ExpectMatches(plan, RunEngine(plan, keyed, 3, true), Reference(spec, plan.periods(), keyed, true), "property random");
}

TEST(RetentionTest, ManyUsersSpreadOverTheIdRangeAreCountedInEveryChunk) {
  // More users than one work item holds (65,536 per chunk of users, 262,144 ids per chunk of the last-return
  // pass), ids spread to about 720,000.
  const TimeZone zone = TimeZone::Load("America/New_York").value();
  std::mt19937_64 rng(99);
  std::vector<RawEvent> events;
  const int64_t from = Ms("2024-03-01T00:00:00-05:00");
  for (uint32_t user_idx = 0; user_idx < 80000; ++user_idx) {
    const uint32_t user = user_idx * 9 + static_cast<uint32_t>(rng() % 9);
    const int64_t start = from + static_cast<int64_t>(rng() % (20 * 86400000ULL));
    events.push_back({user, start, true, true, ""});
    for (int return_idx = static_cast<int>(rng() % 3); return_idx > 0; --return_idx) {
      events.push_back({user, start + static_cast<int64_t>(rng() % (15 * 86400000ULL)), false, true, ""});
    }
  }
  for (RetentionMode mode : {RetentionMode::kOnDay, RetentionMode::kOnOrAfter}) {
    for (CohortType type : {CohortType::kFirstTime, CohortType::kRecurring}) {
      RetentionSpec spec;
      spec.zone = zone;
      spec.cohort_granularity = Granularity::kWeek;
      spec.periods = {0, 1, 3, 7};
      spec.mode = mode;
      spec.cohort_type = type;
      spec.start_ms = Ms("2024-03-04T00:00:00-05:00");
      spec.end_ms = Ms("2024-03-25T00:00:00-04:00");
      spec.horizon_ms = spec.end_ms;
      const RetentionPlan plan = MustPlan(spec);
      ExpectMatches(plan, RunEngine(plan, events, 3), Reference(spec, plan.periods(), events), "many users");
    }
  }
}

TEST(RetentionTest, PlanRejectsBadSpecs) {
  RetentionSpec spec;
  spec.start_ms = Ms("2024-01-01T00:00:00Z");
  spec.end_ms = Ms("2024-02-01T00:00:00Z");
  spec.horizon_ms = spec.end_ms;
  spec.periods = {7, 1};
  auto plan = RetentionPlan::Make(spec);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().field(), "periods");
  spec.periods = {1, 3651};
  EXPECT_FALSE(RetentionPlan::Make(spec).ok());
  spec.periods = {1};
  spec.cohort_granularity = Granularity::kHour;
  EXPECT_EQ(RetentionPlan::Make(spec).status().field(), "cohort_granularity");
  spec.cohort_granularity = Granularity::kDay;
  spec.end_ms = spec.start_ms + 4001 * 86400000LL;
  EXPECT_EQ(RetentionPlan::Make(spec).status().field(), "period_end");
}

}  // namespace
}  // namespace analytics::query
