// CronSchedule: when a scheduled job (a report now; alerts later) fires: a five-field cron expression evaluated
// in a time zone.
//
// Syntax: "minute hour day-of-month month day-of-week", fields separated by spaces or tabs:
//   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 or SUN-SAT (0 and 7 are
//   Sunday); names are case-insensitive. Each field is "*", a value, a range "a-b", any of those with a step
//   "/n" ("*/15", "1-31/2", "5/10" = 5-max/10), or a comma-separated list of them.
//   A step is 1 up to the field's span (minute 1-59, hour 1-23, day-of-month 1-30, month 1-11, day-of-week 1-7);
//   a range must not end before it starts (no wrap-around: "FRI-MON" is an error, write "FRI-SAT,0-1").
//   Macros (case-insensitive, alone): @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly.
//   When both day-of-month and day-of-week are restricted (neither starts with "*"), a day matches when either
//   does (as in Vixie cron); otherwise both must.
// Time zone: fields are local wall-clock times of the zone. A local time skipped by a DST change (spring
//   forward) fires at the first instant after the gap; a repeated one (fall back) fires once, at its first
//   occurrence.
// Errors: InvalidArgument whose message names the field and the reason, with no Status field (callers add theirs
//   with WithFieldPrefix):
//   "expected 5 fields (minute hour day-of-month month day-of-week), got 4", "unknown macro \"@often\" (expected
//   ...)", "hour: 24 is out of range 0-23", "minute: \"x\" is not a number", "month: \"FOO\" is not a month (1-12
//   or JAN-DEC)", "day-of-week: \"XYZ\" is not a day of the week (0-7 or SUN-SAT)", "minute: step 0 is out of range
//   1-59", "minute: step \"x\" is not a number", "hour: range \"5-3\" ends before it starts", "minute: empty list
//   element in \"1,,2\"".
// Cost: NextAfter jumps over non-matching months, days and hours (at most one step per day of the horizon), and
//   asks the zone database only about matching minutes.
// Thread-safety: immutable after Parse.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <absl/time/civil_time.h>

#include "common/status.h"
#include "query/time_grid.h"

namespace analytics::jobs {

class CronSchedule {
 public:
  static common::Result<CronSchedule> Parse(std::string_view text);

  // The first fire time strictly after `after_ms` (Unix millis; fire times are whole local minutes), or nullopt
  // when there is none in the next 8 years (e.g. "0 0 30 2 *").
  std::optional<int64_t> NextAfter(int64_t after_ms, const query::TimeZone& zone) const;

  // The expression as given (trimmed).
  const std::string& text() const { return text_; }

 private:
  static constexpr int kHorizonYears = 8;

  // Whether the civil day matches the day-of-month and day-of-week fields (with the OR rule above).
  bool DayMatches(int64_t year, int month, int day) const;
  // The first local minute at or after `from` that matches every field, or nullopt when it would be after `limit`.
  std::optional<absl::CivilMinute> NextMatch(absl::CivilMinute from, absl::CivilMinute limit) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0..6, Sunday = 0
  bool day_of_month_restricted_ = false, day_of_week_restricted_ = false;
};

}  // namespace analytics::jobs
