// CronSchedule (jobs/cron.h): parse errors with their messages, NextAfter on spelled-out cases (DST gaps and
// repeats in Berlin, New York, Lord Howe and Apia, leap days, the day-of-month/day-of-week OR rule), and NextAfter
// against a brute-force reference that walks every local minute of a window for random expressions.
#include <gtest/gtest.h>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jobs/cron.h"
#include "query/time_grid.h"
#include "support/test_env.h"

namespace analytics::jobs {
namespace {

using common::StatusCode;

int64_t Ms(const std::string& rfc3339) {
  absl::Time time;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &time, &error)) << rfc3339 << ": " << error;
  return absl::ToUnixMillis(time);
}

std::string Show(std::optional<int64_t> ms) {
  if (!ms) return "none";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", absl::FromUnixMillis(*ms), absl::UTCTimeZone());
}

query::TimeZone Zone(const std::string& name) {
  auto zone = query::TimeZone::Load(name);
  EXPECT_TRUE(zone.ok()) << name << ": " << zone.status().ToString();
  return zone.ok() ? *zone : query::TimeZone::Utc();
}

CronSchedule MustParse(const std::string& text) {
  auto schedule = CronSchedule::Parse(text);
  EXPECT_TRUE(schedule.ok()) << text << ": " << schedule.status().ToString();
  return schedule.ok() ? *schedule : *CronSchedule::Parse("* * * * *");
}

// The fire times after `after` (RFC 3339), one after the other.
std::vector<std::string> Fires(const std::string& expression, const std::string& zone_name, const std::string& after,
                               int count) {
  const CronSchedule schedule = MustParse(expression);
  const query::TimeZone zone = Zone(zone_name);
  std::vector<std::string> fires;
  std::optional<int64_t> at = Ms(after);
  for (int fire_idx = 0; fire_idx < count && at; ++fire_idx) {
    at = schedule.NextAfter(*at, zone);
    fires.push_back(Show(at));
  }
  return fires;
}

using Strings = std::vector<std::string>;

TEST(CronScheduleTest, ParseErrorsNameTheFieldAndTheReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
      {"   ", "expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
      {"* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
      {"* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"},
      {"@often",
       "unknown macro \"@often\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"},
      {"@daily 5", "unknown macro \"@daily 5\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or "
                   "@hourly)"},
      {"60 * * * *", "minute: 60 is out of range 0-59"},
      {"99999999999 * * * *", "minute: 99999999999 is out of range 0-59"},
      {"* 24 * * *", "hour: 24 is out of range 0-23"},
      {"* * 0 * *", "day-of-month: 0 is out of range 1-31"},
      {"* * 32 * *", "day-of-month: 32 is out of range 1-31"},
      {"* * * 0 *", "month: 0 is out of range 1-12"},
      {"* * * 13 *", "month: 13 is out of range 1-12"},
      {"* * * * 8", "day-of-week: 8 is out of range 0-7"},
      {"x * * * *", "minute: \"x\" is not a number"},
      {"JAN * * * *", "minute: \"JAN\" is not a number"},
      {"-1 * * * *", "minute: \"\" is not a number"},
      {"1-2-3 * * * *", "minute: \"2-3\" is not a number"},
      {"* * * FOO *", "month: \"FOO\" is not a month (1-12 or JAN-DEC)"},
      {"* * * JANUARY *", "month: \"JANUARY\" is not a month (1-12 or JAN-DEC)"},
      {"* * * * XYZ", "day-of-week: \"XYZ\" is not a day of the week (0-7 or SUN-SAT)"},
      {"* * * * MONDAY", "day-of-week: \"MONDAY\" is not a day of the week (0-7 or SUN-SAT)"},
      {"*/0 * * * *", "minute: step 0 is out of range 1-59"},
      {"*/60 * * * *", "minute: step 60 is out of range 1-59"},
      {"* */24 * * *", "hour: step 24 is out of range 1-23"},
      {"* * * * */8", "day-of-week: step 8 is out of range 1-7"},
      {"*/x * * * *", "minute: step \"x\" is not a number"},
      {"*/ * * * *", "minute: step \"\" is not a number"},
      {"*/5/2 * * * *", "minute: step \"5/2\" is not a number"},
      {"* 5-3 * * *", "hour: range \"5-3\" ends before it starts"},
      {"* * * * FRI-MON", "day-of-week: range \"FRI-MON\" ends before it starts"},
      {"1,,2 * * * *", "minute: empty list element in \"1,,2\""},
      {"1, * * * *", "minute: empty list element in \"1,\""},
      {"* * * * ,", "day-of-week: empty list element in \",\""},
  };
  for (const auto& [text, message] : cases) {
    const auto schedule = CronSchedule::Parse(text);
    ASSERT_FALSE(schedule.ok()) << text;
    EXPECT_EQ(schedule.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_EQ(schedule.status().message(), message) << text;
    EXPECT_EQ(schedule.status().field(), "") << text;
  }
}

TEST(CronScheduleTest, TextIsTrimmedAndTabsSeparateFields) {
  const CronSchedule schedule = MustParse(" \t0\t9  * *\tMON-fri \t");
  EXPECT_EQ(schedule.text(), "0\t9  * *\tMON-fri");
  EXPECT_EQ(Fires(schedule.text(), "UTC", "2024-01-06T00:00:00Z", 2),
            (Strings{"2024-01-08T09:00:00Z", "2024-01-09T09:00:00Z"}));
}

TEST(CronScheduleTest, MacrosNamesStepsAndLists) {
  EXPECT_EQ(Fires("@yearly", "UTC", "2024-05-05T00:00:00Z", 2), (Strings{"2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"}));
  EXPECT_EQ(Fires("@ANNUALLY", "UTC", "2024-12-31T23:59:59.999Z", 1), (Strings{"2025-01-01T00:00:00Z"}));
  EXPECT_EQ(Fires("@monthly", "UTC", "2024-01-01T00:00:00Z", 2), (Strings{"2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"}));
  EXPECT_EQ(Fires("@weekly", "UTC", "2024-01-01T00:00:00Z", 2), (Strings{"2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"}));
  EXPECT_EQ(Fires("@daily", "UTC", "2024-01-01T00:00:00Z", 1), (Strings{"2024-01-02T00:00:00Z"}));
  EXPECT_EQ(Fires("@midnight", "UTC", "2024-01-01T10:00:00Z", 1), (Strings{"2024-01-02T00:00:00Z"}));
  EXPECT_EQ(Fires("@hourly", "UTC", "2024-01-01T10:00:00Z", 2), (Strings{"2024-01-01T11:00:00Z", "2024-01-01T12:00:00Z"}));
  // 7 and 0 are Sunday.
  EXPECT_EQ(Fires("0 0 * * 7", "UTC", "2024-01-01T00:00:00Z", 1), (Strings{"2024-01-07T00:00:00Z"}));
  EXPECT_EQ(Fires("0 0 * * sun", "UTC", "2024-01-01T00:00:00Z", 1), (Strings{"2024-01-07T00:00:00Z"}));
  // "5/20" is 5-59/20; lists mix forms.
  EXPECT_EQ(Fires("5/20 10 * * *", "UTC", "2024-01-01T00:00:00Z", 4),
            (Strings{"2024-01-01T10:05:00Z", "2024-01-01T10:25:00Z", "2024-01-01T10:45:00Z", "2024-01-02T10:05:00Z"}));
  EXPECT_EQ(Fires("0 1,3-4,20-23/2 * * *", "UTC", "2024-01-01T00:30:00Z", 6),
            (Strings{"2024-01-01T01:00:00Z", "2024-01-01T03:00:00Z", "2024-01-01T04:00:00Z", "2024-01-01T20:00:00Z",
                     "2024-01-01T22:00:00Z", "2024-01-02T01:00:00Z"}));
  EXPECT_EQ(Fires("0 0 1 jan-MAR/2,Dec *", "UTC", "2024-01-01T00:00:00Z", 3),
            (Strings{"2024-03-01T00:00:00Z", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"}));
  // Strictly after, even inside the firing millisecond.
  EXPECT_EQ(Fires("* * * * *", "UTC", "2024-01-01T00:00:00.001Z", 1), (Strings{"2024-01-01T00:01:00Z"}));
  EXPECT_EQ(Fires("* * * * *", "UTC", "2023-12-31T23:59:59.999Z", 1), (Strings{"2024-01-01T00:00:00Z"}));
}

TEST(CronScheduleTest, LeapDaysAndShortMonths) {
  EXPECT_EQ(Fires("0 0 29 2 *", "UTC", "2024-03-01T00:00:00Z", 2),
            (Strings{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}));
  // 2100 is not a leap year; 2104-02-29 is still within 8 years of 2096-03-01.
  EXPECT_EQ(Fires("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", 1), (Strings{"2104-02-29T00:00:00Z"}));
  EXPECT_EQ(Fires("0 0 31 * *", "UTC", "2024-01-31T00:00:00Z", 4),
            (Strings{"2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z", "2024-08-31T00:00:00Z"}));
  EXPECT_EQ(Fires("0 0 30 2 *", "UTC", "2024-01-01T00:00:00Z", 1), (Strings{"none"}));
  EXPECT_EQ(Fires("0 0 31 4,6,9,11 *", "Europe/Berlin", "2024-01-01T00:00:00Z", 1), (Strings{"none"}));
}

TEST(CronScheduleTest, DayOfMonthOrDayOfWeekWhenBothAreRestricted) {
  // The 13th or any Friday.
  EXPECT_EQ(Fires("0 0 13 * 5", "UTC", "2024-01-01T00:00:00Z", 4),
            (Strings{"2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z", "2024-01-19T00:00:00Z"}));
  // "*/10" starts with "*": both must match (days 1, 11, 21, 31 that are Fridays).
  EXPECT_EQ(Fires("0 0 */10 * 5", "UTC", "2024-01-01T00:00:00Z", 2),
            (Strings{"2024-03-01T00:00:00Z", "2024-05-31T00:00:00Z"}));
  // "*" day-of-week: only the day of month.
  EXPECT_EQ(Fires("0 0 1-2 * *", "UTC", "2024-01-01T00:00:00Z", 2),
            (Strings{"2024-01-02T00:00:00Z", "2024-02-01T00:00:00Z"}));
  // Vixie's quirk: 1-7 and Monday is "the first week or any Monday".
  EXPECT_EQ(Fires("0 0 1-7 * 1", "UTC", "2024-01-07T00:00:00Z", 3),
            (Strings{"2024-01-08T00:00:00Z", "2024-01-15T00:00:00Z", "2024-01-22T00:00:00Z"}));
}

TEST(CronScheduleTest, SkippedLocalTimesFireAtTheEndOfTheGap) {
  // Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST (01:00Z).
  EXPECT_EQ(Fires("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z", 2),
            (Strings{"2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"}));
  // Several skipped minutes fire once.
  EXPECT_EQ(Fires("*/15 * * * *", "Europe/Berlin", "2024-03-31T00:50:00Z", 3),
            (Strings{"2024-03-31T01:00:00Z", "2024-03-31T01:15:00Z", "2024-03-31T01:30:00Z"}));
  // New York, 2024-03-10: 02:00 EST becomes 03:00 EDT (07:00Z).
  EXPECT_EQ(Fires("0 2 * * *", "America/New_York", "2024-03-09T12:00:00Z", 2),
            (Strings{"2024-03-10T07:00:00Z", "2024-03-11T06:00:00Z"}));
  EXPECT_EQ(Fires("30 2 10 3 *", "America/New_York", "2024-01-01T00:00:00Z", 1), (Strings{"2024-03-10T07:00:00Z"}));
  // Lord Howe, 2024-10-06: 02:00 +10:30 becomes 02:30 +11:00 (15:30Z the day before).
  EXPECT_EQ(Fires("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T00:00:00Z", 2),
            (Strings{"2024-10-05T15:30:00Z", "2024-10-06T15:15:00Z"}));
  EXPECT_EQ(Fires("*/10 * * * *", "Australia/Lord_Howe", "2024-10-05T15:25:00Z", 2),
            (Strings{"2024-10-05T15:30:00Z", "2024-10-05T15:40:00Z"}));
  // Apia skipped all of 2011-12-30 (from -10:00 to +14:00).
  EXPECT_EQ(Fires("0 12 * * *", "Pacific/Apia", "2011-12-29T12:00:00-10:00", 2),
            (Strings{"2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z"}));
}

TEST(CronScheduleTest, RepeatedLocalTimesFireOnceAtTheFirstOccurrence) {
  // Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET (01:00Z); 02:xx happens at 00:xxZ and 01:xxZ.
  EXPECT_EQ(Fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z", 2),
            (Strings{"2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"}));
  EXPECT_EQ(Fires("*/30 * * * *", "Europe/Berlin", "2024-10-27T00:00:00Z", 3),
            (Strings{"2024-10-27T00:30:00Z", "2024-10-27T02:00:00Z", "2024-10-27T02:30:00Z"}));
  // From inside the second 02:xx, the next fire is 03:00 CET.
  EXPECT_EQ(Fires("*/30 * * * *", "Europe/Berlin", "2024-10-27T01:10:00Z", 1), (Strings{"2024-10-27T02:00:00Z"}));
  // New York, 2024-11-03: 02:00 EDT becomes 01:00 EST (06:00Z).
  EXPECT_EQ(Fires("30 1 * * *", "America/New_York", "2024-11-02T12:00:00Z", 2),
            (Strings{"2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"}));
  // Lord Howe, 2024-04-07: 02:00 +11:00 becomes 01:30 +10:30 (15:00Z the day before): half an hour repeats.
  EXPECT_EQ(Fires("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T00:00:00Z", 2),
            (Strings{"2024-04-06T14:45:00Z", "2024-04-07T15:15:00Z"}));
  EXPECT_EQ(Fires("*/10 * * * *", "Australia/Lord_Howe", "2024-04-06T14:45:00Z", 3),
            (Strings{"2024-04-06T14:50:00Z", "2024-04-06T15:30:00Z", "2024-04-06T15:40:00Z"}));
}

TEST(CronScheduleTest, ImpossibleScheduleAnswersQuickly) {
  // The walk jumps over months and days: 8 years of "February 30th" are a few hundred steps, not 4 million minutes.
  const CronSchedule schedule = MustParse("0 0 30 2 *");
  const query::TimeZone zone = Zone("Europe/Berlin");
  const auto start = std::chrono::steady_clock::now();
  for (int call_idx = 0; call_idx < 200; ++call_idx) {
    EXPECT_FALSE(schedule.NextAfter(Ms("2024-01-01T00:00:00Z") + call_idx * 86400000LL, zone).has_value());
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

// --- Brute force ---

struct FieldRange {
  int min, max;
  const std::array<const char*, 12>* names;  // nullptr: numbers only
};

constexpr std::array<const char*, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                     "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 12> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

constexpr FieldRange kRanges[] = {{0, 59, nullptr}, {0, 23, nullptr}, {1, 31, nullptr}, {1, 12, &kMonthNames},
                                  {0, 7, &kDayNames}};

// A random expression and what each field matches, computed here from the pieces the text is made of.
struct RandomExpression {
  std::string text;
  std::array<std::set<int>, 5> values;
  bool day_of_month_restricted = false, day_of_week_restricted = false;
};

std::string Token(int field_idx, int value, std::mt19937_64& rng) {
  const FieldRange& range = kRanges[field_idx];
  const int name_count = field_idx == 3 ? 12 : 7;
  if (range.names != nullptr && value - range.min < name_count && rng() % 3 == 0) {
    std::string name = (*range.names)[value - range.min];
    for (char& c : name) {
      if (rng() % 2 == 0) c = static_cast<char>(c - 'a' + 'A');
    }
    return name;
  }
  return std::to_string(value);
}

RandomExpression MakeRandomExpression(std::mt19937_64& rng) {
  RandomExpression expression;
  for (int field_idx = 0; field_idx < 5; ++field_idx) {
    const FieldRange& range = kRanges[field_idx];
    auto uniform = [&](int low, int high) { return low + static_cast<int>(rng() % (high - low + 1)); };
    std::string text;
    std::set<int>& values = expression.values[field_idx];
    const int elements = rng() % 4 == 0 ? uniform(2, 3) : 1;
    for (int element_idx = 0; element_idx < elements; ++element_idx) {
      if (element_idx > 0) text += ",";
      // Minutes rarely "*": every minute of a window makes the reference slow, not the test better.
      const int kind = uniform(field_idx == 0 ? 1 : 0, 6);
      int low = range.min, high = range.max, step = 1;
      switch (kind) {
        case 0:
          text += "*";
          break;
        case 1:
          step = uniform(1, range.max - range.min);
          text += "*/" + std::to_string(step);
          break;
        case 2:
        case 3:
          low = high = uniform(range.min, range.max);
          text += Token(field_idx, low, rng);
          break;
        case 4:
          low = uniform(range.min, range.max);
          high = uniform(low, range.max);
          text += Token(field_idx, low, rng) + "-" + Token(field_idx, high, rng);
          break;
        case 5:
          low = uniform(range.min, range.max);
          high = uniform(low, range.max);
          step = uniform(1, range.max - range.min);
          text += Token(field_idx, low, rng) + "-" + Token(field_idx, high, rng) + "/" + std::to_string(step);
          break;
        case 6:
          low = uniform(range.min, range.max);
          step = uniform(1, range.max - range.min);
          text += Token(field_idx, low, rng) + "/" + std::to_string(step);
          break;
      }
      for (int value = low; value <= high; value += step) values.insert(field_idx == 4 && value == 7 ? 0 : value);
    }
    if (field_idx == 2) expression.day_of_month_restricted = text[0] != '*';
    if (field_idx == 4) expression.day_of_week_restricted = text[0] != '*';
    expression.text += (field_idx > 0 ? (rng() % 5 == 0 ? " \t" : " ") : "") + text;
  }
  return expression;
}

bool Matches(const RandomExpression& expression, const absl::CivilMinute& minute) {
  const int weekday_from_monday = static_cast<int>(absl::GetWeekday(absl::CivilDay(minute)));
  const int weekday = weekday_from_monday == 6 ? 0 : weekday_from_monday + 1;
  const bool day_of_month = expression.values[2].count(minute.day()) > 0;
  const bool day_of_week = expression.values[4].count(weekday) > 0;
  const bool day = expression.day_of_month_restricted && expression.day_of_week_restricted
                       ? day_of_month || day_of_week
                       : day_of_month && day_of_week;
  return day && expression.values[0].count(minute.minute()) > 0 && expression.values[1].count(minute.hour()) > 0 &&
         expression.values[3].count(minute.month()) > 0;
}

// The rule of cron.h for one local minute: a skipped minute fires when its gap ends, a repeated one at its first
// occurrence.
int64_t FireTime(const absl::TimeZone& zone, const absl::CivilMinute& minute) {
  const absl::TimeZone::TimeInfo info = zone.At(minute);
  switch (info.kind) {
    case absl::TimeZone::TimeInfo::UNIQUE:
      return absl::ToUnixMillis(info.pre);
    case absl::TimeZone::TimeInfo::SKIPPED:
      return absl::ToUnixMillis(info.trans);
    case absl::TimeZone::TimeInfo::REPEATED:
      return absl::ToUnixMillis(std::min(info.pre, info.post));
  }
  return 0;
}

TEST(CronScheduleTest, NextAfterAgreesWithAMinuteByMinuteWalk) {
  const std::vector<std::string> zone_names = {"UTC",           "Europe/Berlin",   "America/New_York",
                                               "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham",
                                               "Asia/Kolkata",  "America/St_Johns", "Pacific/Apia"};
  std::vector<query::TimeZone> zones;
  for (const std::string& name : zone_names) zones.push_back(Zone(name));
  std::mt19937_64 rng(20240331);
  constexpr int kExpressions = 100;
  int fires_checked = 0;
  for (int expression_idx = 0; expression_idx < kExpressions; ++expression_idx) {
    const RandomExpression expression = MakeRandomExpression(rng);
    const query::TimeZone& zone = zones[expression_idx % zones.size()];
    const absl::TimeZone& tz = zone.zone();
    SCOPED_TRACE(expression.text + " in " + zone.name());
    auto parsed = CronSchedule::Parse(expression.text);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    const CronSchedule& schedule = *parsed;

    // A window of 100 days (every tenth: 3 years) starting at a random millisecond of 2010-2030.
    const int64_t start_ms = Ms("2010-01-01T00:00:00Z") + static_cast<int64_t>(rng() % (20LL * 365 * 86400000));
    const int days = expression_idx % 10 == 0 ? 3 * 366 : 100;
    const absl::CivilMinute first = absl::ToCivilMinute(absl::FromUnixMillis(start_ms), tz) - 24 * 60;
    const absl::CivilMinute last = first + (days + 1) * 24 * 60;
    // Minutes after `last` may fire before end_ms only if an offset changed by more than a day.
    const int64_t end_ms = absl::ToUnixMillis(absl::FromCivil(last, tz)) - 2 * 86400000LL;
    std::vector<int64_t> fires;
    for (absl::CivilMinute minute = first; minute <= last; ++minute) {
      if (Matches(expression, minute)) fires.push_back(FireTime(tz, minute));
    }
    std::sort(fires.begin(), fires.end());
    fires.erase(std::unique(fires.begin(), fires.end()), fires.end());
    auto expected_after = [&](int64_t after) -> std::optional<int64_t> {
      auto it = std::upper_bound(fires.begin(), fires.end(), after);
      if (it == fires.end() || *it >= end_ms) return std::nullopt;
      return *it;
    };
    auto check = [&](int64_t after) {
      const std::optional<int64_t> expected = expected_after(after);
      const std::optional<int64_t> got = schedule.NextAfter(after, zone);
      if (expected) {
        EXPECT_EQ(Show(got), Show(expected)) << "after " << Show(after);
        ++fires_checked;
      } else {
        // Nothing in the window: the answer, if any, lies beyond it.
        EXPECT_TRUE(!got || *got >= end_ms) << "after " << Show(after) << " got " << Show(got);
      }
      return got;
    };
    // Every fire of the window in turn, up to 2000, then random instants.
    std::optional<int64_t> at = start_ms;
    for (int fire_idx = 0; fire_idx < 2000 && at && *at < end_ms; ++fire_idx) at = check(*at);
    for (int probe_idx = 0; probe_idx < 50; ++probe_idx) {
      check(start_ms + static_cast<int64_t>(rng() % static_cast<uint64_t>(end_ms - start_ms)));
    }
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(fires_checked, 10000);
}

}  // namespace
}  // namespace analytics::jobs
