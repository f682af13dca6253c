// Retention cohorts (docs/analysis.md, "Retention"): which users come back N calendar days after the day of their
// cohort event, per cohort of a day, an ISO week or a calendar month, in the request's time zone.
//
// Rationale: a retention question is a small calendar (local days, cohort buckets, the periods asked) over two
// sets of users per day: the users whose cohort day (d0) it is, and the users with a return event that day. The
// plan (RetentionPlan) fixes the calendar once with the zone database, so the engine only handles day indexes:
// - cohort days come from the per-user timeline of the start events (query/timeline.h): a linear pass over each
//   user's rows (the first row is the first start event; with `recurring`, the first row of each bucket);
// - return days are per-day user bitmaps (an AggregateQuery with collect_users over the plan's return_bounds(),
//   which the embedded store caches per segment);
// - on_day, period N: per cohort day d, |cohort(d) ∩ returns(d + N)| (roaring and_cardinality); on_or_after: each
//   user's last return day, once, then per cohort a histogram of (last return day - d0).
// Day arithmetic is on civil dates ("d0 + N" is N calendar days later, whether a day had 23, 24 or 25 hours);
// instants are compared only with the plan's day bounds (the first instant at or after each local midnight).
// Thread-safety: plain values; the functions are reentrant (they may use up to `threads` threads; results do
// not depend on the thread count).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <absl/time/civil_time.h>
#include <roaring/roaring.hh>

#include "common/status.h"
#include "query/time_grid.h"
#include "query/timeline.h"

namespace analytics::query {

inline constexpr int kMaxRetentionPeriod = 3650;    // days after d0
inline constexpr size_t kMaxRetentionDays = 4000;   // local days of a plan (cohort buckets' first days to the end)

enum class RetentionMode { kOnDay, kOnOrAfter };
enum class CohortType { kFirstTime, kRecurring };

struct RetentionSpec {
  TimeZone zone = TimeZone::Utc();
  Granularity cohort_granularity = Granularity::kWeek;  // kDay, kWeek (ISO, Monday) or kMonth
  std::vector<int> periods;  // days after d0: ascending, unique, 0..kMaxRetentionPeriod; ignored with `triangle`
  bool triangle = false;     // periods 0..the last one measurable for the first cohort
  RetentionMode mode = RetentionMode::kOnDay;
  CohortType cohort_type = CohortType::kFirstTime;
  int64_t start_ms = 0, end_ms = 0;  // the period [start_ms, end_ms)
  int64_t horizon_ms = 0;            // H = min(end_ms, now): return events are read in [start_ms, H)
};

// The calendar of one retention question.
class RetentionPlan {
 public:
  // One cohort bucket: its local days are plan days [first_day, end_day); those in the period are
  // [period_first_day, period_last_day] (a bucket may begin before period_start and end after period_end).
  struct Cohort {
    size_t first_day = 0, end_day = 0;
    size_t period_first_day = 0, period_last_day = 0;
    absl::CivilDay start;  // the bucket's first local date (cohort_start)
    absl::CivilDay last;   // the bucket's last local date (may lie after the period)
    // The largest period measurable for this cohort (the local day period_last_day + N has ended by H); -1: none.
    int64_t last_measurable = -1;
  };

  // InvalidArgument: a granularity other than day/week/month (field "cohort_granularity"), an empty period or
  // one of more than kMaxRetentionDays local days ("period_end"), periods out of range ("periods").
  static common::Result<RetentionPlan> Make(const RetentionSpec& spec);

  const RetentionSpec& spec() const { return spec_; }
  // Plan day i is the local day [day_bounds()[i], day_bounds()[i + 1]), from the first day of the first cohort
  // bucket to the day holding end_ms - 1.
  size_t days() const { return day_bounds_.size() - 1; }
  const std::vector<int64_t>& day_bounds() const { return day_bounds_; }
  absl::CivilDay Date(size_t day) const { return first_date_ + static_cast<int64_t>(day); }
  // The plan day holding `unix_ms`, -1 outside the plan.
  int64_t DayOf(int64_t unix_ms) const;
  const std::vector<Cohort>& cohorts() const { return cohorts_; }
  // Which cohort a plan day belongs to.
  size_t CohortOfDay(size_t day) const { return day_cohort_[day]; }
  // The periods measured (the spec's, or the triangle's 0..n).
  const std::vector<int>& periods() const { return periods_; }
  bool Measurable(size_t cohort, int period) const { return period <= cohorts_[cohort].last_measurable; }
  // The bounds of an AggregateQuery of return events: [start_ms, the local midnights in between, H]; its bucket j
  // is plan day return_first_day() + j. Empty when H <= start_ms (nothing observable).
  const std::vector<int64_t>& return_bounds() const { return return_bounds_; }
  size_t return_first_day() const { return return_first_day_; }

 private:
  RetentionSpec spec_;
  absl::CivilDay first_date_;
  std::vector<int64_t> day_bounds_;
  std::vector<size_t> day_cohort_;
  std::vector<Cohort> cohorts_;
  std::vector<int> periods_;
  std::vector<int64_t> return_bounds_;
  size_t return_first_day_ = 0;
};

// Per plan day, the users whose cohort day (d0) it is, from `starts` (a joined Timeline of the start events; row
// order within a user is time order):
// - kFirstTime: a user's first row is their cohort event; they count when it lies in [start_ms, end_ms)
//   (`starts` should hold every start event before end_ms, from the beginning of the store);
// - kRecurring: for each cohort bucket, the user's first row in the period and in that bucket.
// A user is in at most one day of each bucket, so the days of a bucket are disjoint sets.
std::vector<Roaring> CohortDaysFromStarts(const RetentionPlan& plan, const Timeline& starts, size_t threads);

// Cohorts by a date property: a user's cohort time is the value of keys[key_idx] on their first row carrying it
// (not kMissingKey), a date YYYY-MM-DD (the zone's start of that day) or an RFC 3339 time; they count when it lies
// in [start_ms, end_ms). A first value that is neither is counted in `unparsed_users` and the user is left out.
std::vector<Roaring> CohortDaysFromProperty(const RetentionPlan& plan, const Timeline& rows, size_t key_idx,
                                            size_t threads, uint64_t& unparsed_users);

struct RetentionCell {
  bool measurable = false;
  uint64_t users = 0;  // retained users; 0 when not measurable
};

struct RetentionRow {
  uint64_t users = 0;               // the cohort's users (Σ over its days: the days of a bucket are disjoint)
  std::vector<RetentionCell> cells;  // one per plan.periods()
};

// One row per plan cohort. `cohort_days` and `return_days` have one set per plan day (return days: the users
// with a return event that day, within [start_ms, H)).
std::vector<RetentionRow> ComputeRetention(const RetentionPlan& plan, std::span<const Roaring> cohort_days,
                                           std::span<const Roaring> return_days, size_t threads);

}  // namespace analytics::query
