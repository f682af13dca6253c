// Retention cohorts: the plan's calendar, cohort days from start-event timelines, retained users per cell.
#include "query/retention.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include <absl/time/time.h>

#include "common/parallel.h"
#include "common/time_util.h"

namespace analytics::query {

namespace {

using common::Result;
using common::Status;

constexpr size_t kUsersPerChunk = 1 << 16;  // users per parallel work item (cohort days)
constexpr uint32_t kIdsPerChunk = 1 << 18;  // user ids per parallel work item (last return day)

absl::CivilDay LocalDate(int64_t unix_ms, const TimeZone& zone) {
  return absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone.zone());
}

// (day, user) pairs of each chunk of users, in user order, joined into one sorted user list per day.
std::vector<Roaring> JoinDays(size_t days, const std::vector<std::vector<std::pair<uint32_t, uint32_t>>>& chunks,
                              size_t threads) {
  std::vector<size_t> begin(days + 1, 0);
  for (const auto& chunk : chunks) {
    for (const auto& [day, user] : chunk) ++begin[day + 1];
  }
  for (size_t day = 0; day < days; ++day) begin[day + 1] += begin[day];
  std::vector<uint32_t> users(begin[days]);
  std::vector<size_t> next(begin.begin(), begin.end() - 1);
  for (const auto& chunk : chunks) {  // chunks in user order, each in user order: every day's list stays sorted
    for (const auto& [day, user] : chunk) users[next[day]++] = user;
  }
  std::vector<Roaring> out(days);
  common::ParallelFor(days, threads, [&](size_t day) {
    if (begin[day + 1] > begin[day]) {
      out[day].addMany(begin[day + 1] - begin[day], users.data() + begin[day]);
      out[day].runOptimize();
    }
  });
  return out;
}

// Runs `per_user(chunk, begin, end, emit)` for the rows [begin, end) of every user of `timeline`, in chunks of
// users; emit(day) adds the user to a day.
template <typename PerUser>
std::vector<Roaring> CollectDays(const RetentionPlan& plan, const Timeline& timeline, size_t threads,
                                 PerUser&& per_user) {
  const size_t users = timeline.user_count();
  const size_t chunk_count = (users + kUsersPerChunk - 1) / kUsersPerChunk;
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> chunks(chunk_count);
  common::ParallelFor(chunk_count, threads, [&](size_t chunk_idx) {
    auto& out = chunks[chunk_idx];
    const size_t end = std::min(users, (chunk_idx + 1) * kUsersPerChunk);
    // At most a pair per row, and per user one per cohort: reserved once (growing re-copies and faults pages).
    const size_t rows = timeline.user_begin[end] - timeline.user_begin[chunk_idx * kUsersPerChunk];
    out.reserve(std::min(rows, (end - chunk_idx * kUsersPerChunk) * plan.cohorts().size()));
    // A joined timeline lists the users that have rows, ascending by dense id: per day, ids stay sorted.
    for (size_t user_idx = chunk_idx * kUsersPerChunk; user_idx < end; ++user_idx) {
      const uint32_t begin = timeline.user_begin[user_idx], stop = timeline.user_begin[user_idx + 1];
      if (begin == stop) continue;
      const uint32_t user = timeline.users[begin];
      per_user(chunk_idx, begin, stop, [&](size_t day) { out.emplace_back(static_cast<uint32_t>(day), user); });
    }
  });
  return JoinDays(plan.days(), chunks, threads);
}

// A date YYYY-MM-DD (the zone's first instant of that day) or an RFC 3339 time.
bool ParseCohortTime(const std::string& text, const TimeZone& zone, int64_t& unix_ms) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(text, &day)) return false;
    unix_ms = zone.StartOfDay(day.year(), day.month(), day.day());
    return true;
  }
  auto parsed = common::ParseRfc3339Millis(text);
  if (!parsed.ok()) return false;
  unix_ms = *parsed;
  return true;
}

// Calls fn(id) for every id of `set` in [lo, hi), in ascending order.
template <typename Fn>
void ForEachInRange(const Roaring& set, uint32_t lo, uint64_t hi, Fn&& fn) {
  roaring_uint32_iterator_t it;
  roaring_init_iterator(&set.roaring, &it);
  if (!roaring_move_uint32_iterator_equalorlarger(&it, lo)) return;
  std::array<uint32_t, 256> buffer;
  while (true) {
    const uint32_t count = roaring_read_uint32_iterator(&it, buffer.data(), buffer.size());
    for (uint32_t idx = 0; idx < count; ++idx) {
      if (buffer[idx] >= hi) return;
      fn(buffer[idx]);
    }
    if (count < buffer.size()) return;
  }
}

}  // namespace

Result<RetentionPlan> RetentionPlan::Make(const RetentionSpec& spec) {
  if (spec.cohort_granularity != Granularity::kDay && spec.cohort_granularity != Granularity::kWeek &&
      spec.cohort_granularity != Granularity::kMonth) {
    return Status::InvalidArgument("must be one of day, week, month", "cohort_granularity");
  }
  if (spec.end_ms <= spec.start_ms) return Status::InvalidArgument("must be after period_start", "period_end");
  RetentionPlan plan;
  plan.spec_ = spec;
  plan.spec_.horizon_ms = std::min(spec.horizon_ms, spec.end_ms);
  const std::string too_long = "the period spans more than " + std::to_string(kMaxRetentionDays) + " local days";
  auto buckets = TimeGrid::Make(spec.start_ms, spec.end_ms, spec.cohort_granularity, spec.zone, kMaxRetentionDays);
  if (!buckets.ok()) return Status::InvalidArgument(too_long, "period_end");
  const std::vector<int64_t>& bucket_bounds = buckets->bounds();
  auto days = TimeGrid::Make(bucket_bounds.front(), spec.end_ms, Granularity::kDay, spec.zone, kMaxRetentionDays);
  if (!days.ok()) return Status::InvalidArgument(too_long, "period_end");
  plan.day_bounds_ = days->bounds();
  plan.first_date_ = LocalDate(plan.day_bounds_.front(), spec.zone);

  const size_t day_count = plan.days();
  const size_t period_first = static_cast<size_t>(plan.DayOf(spec.start_ms));
  const size_t period_last = static_cast<size_t>(plan.DayOf(spec.end_ms - 1));
  const absl::CivilDay horizon_date = LocalDate(plan.spec_.horizon_ms, spec.zone);
  plan.day_cohort_.assign(day_count, 0);
  for (size_t bucket_idx = 0; bucket_idx + 1 < bucket_bounds.size(); ++bucket_idx) {
    Cohort cohort;
    // Bucket bounds are local midnights, hence plan day bounds.
    cohort.first_day = static_cast<size_t>(
        std::lower_bound(plan.day_bounds_.begin(), plan.day_bounds_.end(), bucket_bounds[bucket_idx]) -
        plan.day_bounds_.begin());
    cohort.end_day = std::min(
        day_count, static_cast<size_t>(std::lower_bound(plan.day_bounds_.begin(), plan.day_bounds_.end(),
                                                        bucket_bounds[bucket_idx + 1]) -
                                       plan.day_bounds_.begin()));
    if (cohort.first_day >= cohort.end_day) continue;
    cohort.period_first_day = std::max(cohort.first_day, period_first);
    cohort.period_last_day = std::min(cohort.end_day - 1, period_last);
    cohort.start = plan.Date(cohort.first_day);
    cohort.last = LocalDate(bucket_bounds[bucket_idx + 1], spec.zone) - 1;
    // Day L + N has ended by H when the day after it starts at or before H: L + N + 1 <= the local date of H.
    cohort.last_measurable = (horizon_date - plan.Date(cohort.period_last_day)) - 1;
    for (size_t day = cohort.first_day; day < cohort.end_day; ++day) plan.day_cohort_[day] = plan.cohorts_.size();
    plan.cohorts_.push_back(cohort);
  }

  if (spec.triangle) {
    const int64_t last = plan.cohorts_.front().last_measurable;
    const int top = static_cast<int>(std::clamp<int64_t>(last, 0, kMaxRetentionPeriod));
    for (int period = 0; period <= top; ++period) plan.periods_.push_back(period);
  } else {
    if (spec.periods.empty()) return Status::InvalidArgument("must list at least one period", "periods");
    for (size_t period_idx = 0; period_idx < spec.periods.size(); ++period_idx) {
      const int period = spec.periods[period_idx];
      if (period < 0 || period > kMaxRetentionPeriod ||
          (period_idx > 0 && period <= spec.periods[period_idx - 1])) {
        return Status::InvalidArgument("must be ascending unique integers from 0 to " +
                                           std::to_string(kMaxRetentionPeriod),
                                       "periods");
      }
    }
    plan.periods_ = spec.periods;
  }

  if (plan.spec_.horizon_ms > spec.start_ms) {
    const size_t horizon_last = static_cast<size_t>(plan.DayOf(plan.spec_.horizon_ms - 1));
    plan.return_first_day_ = period_first;
    plan.return_bounds_.push_back(spec.start_ms);
    for (size_t day = period_first + 1; day <= horizon_last; ++day) plan.return_bounds_.push_back(plan.day_bounds_[day]);
    plan.return_bounds_.push_back(plan.spec_.horizon_ms);
  }
  return plan;
}

int64_t RetentionPlan::DayOf(int64_t unix_ms) const {
  if (unix_ms < day_bounds_.front() || unix_ms >= day_bounds_.back()) return -1;
  return std::upper_bound(day_bounds_.begin(), day_bounds_.end(), unix_ms) - day_bounds_.begin() - 1;
}

std::vector<Roaring> CohortDaysFromStarts(const RetentionPlan& plan, const Timeline& starts, size_t threads) {
  const RetentionSpec& spec = plan.spec();
  const int64_t* time = starts.time_ms.data();
  if (spec.cohort_type == CohortType::kFirstTime) {
    return CollectDays(plan, starts, threads, [&](size_t, uint32_t begin, uint32_t, auto&& emit) {
      const int64_t first = time[begin];
      if (first >= spec.start_ms && first < spec.end_ms) emit(static_cast<size_t>(plan.DayOf(first)));
    });
  }
  // One forward pass over each user's rows (binary searches per bucket were branch-bound: a user has a few rows per
  // bucket), the day found by walking the bounds forward from the previous one (galloping for long gaps).
  const std::vector<int64_t>& bounds = plan.day_bounds();
  const size_t days = plan.days();
  return CollectDays(plan, starts, threads, [&](size_t, uint32_t begin, uint32_t stop, auto&& emit) {
    int64_t bucket_end = std::numeric_limits<int64_t>::min();  // rows before it are in the last bucket emitted
    size_t day = 0;
    bool first = true;
    for (uint32_t row = begin; row < stop; ++row) {
      const int64_t t = time[row];
      if (t < bucket_end || t < spec.start_ms) continue;
      if (t >= spec.end_ms) break;
      if (first || (day + 8 < days && t >= bounds[day + 8])) {
        day = static_cast<size_t>(plan.DayOf(t));
        first = false;
      } else {
        while (t >= bounds[day + 1]) ++day;
      }
      emit(day);
      const size_t end_day = plan.cohorts()[plan.CohortOfDay(day)].end_day;
      if (end_day >= days) break;
      bucket_end = bounds[end_day];
    }
  });
}

std::vector<Roaring> CohortDaysFromProperty(const RetentionPlan& plan, const Timeline& rows, size_t key_idx,
                                            size_t threads, uint64_t& unparsed_users) {
  const RetentionSpec& spec = plan.spec();
  const size_t users = rows.user_count();
  std::vector<uint64_t> unparsed((users + kUsersPerChunk - 1) / kUsersPerChunk, 0);
  const std::vector<uint32_t>& keys = rows.keys[key_idx];
  auto days = CollectDays(plan, rows, threads, [&](size_t chunk_idx, uint32_t begin, uint32_t stop, auto&& emit) {
    for (uint32_t row = begin; row < stop; ++row) {
      if (keys[row] == kMissingKey) continue;
      int64_t cohort_ms = 0;
      if (!ParseCohortTime(rows.key_values[key_idx][keys[row]], spec.zone, cohort_ms)) {
        ++unparsed[chunk_idx];
      } else if (cohort_ms >= spec.start_ms && cohort_ms < spec.end_ms) {
        emit(static_cast<size_t>(plan.DayOf(cohort_ms)));
      }
      return;
    }
  });
  unparsed_users = 0;
  for (uint64_t count : unparsed) unparsed_users += count;
  return days;
}

std::vector<RetentionRow> ComputeRetention(const RetentionPlan& plan, std::span<const Roaring> cohort_days,
                                           std::span<const Roaring> return_days, size_t threads) {
  const size_t days = plan.days();
  const std::vector<int>& periods = plan.periods();
  std::vector<RetentionRow> rows(plan.cohorts().size());

  // on_or_after: each user's last return day (-1: none), read once; a user is retained at N when it is >= d0 + N.
  std::vector<int32_t> last_return;
  if (plan.spec().mode == RetentionMode::kOnOrAfter) {
    uint64_t id_end = 0;
    for (const Roaring& day_users : return_days) {
      if (!day_users.isEmpty()) id_end = std::max<uint64_t>(id_end, uint64_t{day_users.maximum()} + 1);
    }
    last_return.assign(id_end, -1);
    const size_t chunk_count = (id_end + kIdsPerChunk - 1) / kIdsPerChunk;
    common::ParallelFor(chunk_count, threads, [&](size_t chunk_idx) {
      const uint32_t lo = static_cast<uint32_t>(chunk_idx * kIdsPerChunk);
      const uint64_t hi = std::min<uint64_t>(id_end, uint64_t{lo} + kIdsPerChunk);
      for (size_t day = 0; day < return_days.size(); ++day) {
        ForEachInRange(return_days[day], lo, hi, [&](uint32_t user) { last_return[user] = static_cast<int32_t>(day); });
      }
    });
  }

  common::ParallelFor(rows.size(), threads, [&](size_t cohort_idx) {
    const RetentionPlan::Cohort& cohort = plan.cohorts()[cohort_idx];
    RetentionRow& row = rows[cohort_idx];
    for (size_t day = cohort.period_first_day; day <= cohort.period_last_day; ++day) {
      row.users += cohort_days[day].cardinality();
    }
    row.cells.resize(periods.size());
    std::vector<uint64_t> at_least;  // on_or_after: at_least[n] = cohort users whose last return is >= d0 + n
    if (plan.spec().mode == RetentionMode::kOnOrAfter) {
      at_least.assign(days - cohort.period_first_day + 1, 0);  // last - d0 < days - period_first_day
      for (size_t day = cohort.period_first_day; day <= cohort.period_last_day; ++day) {
        ForEachInRange(cohort_days[day], 0, last_return.size(), [&](uint32_t user) {
          const int32_t last = last_return[user];
          if (last >= static_cast<int32_t>(day)) ++at_least[static_cast<size_t>(last) - day];
        });
      }
      for (size_t delta = at_least.size() - 1; delta-- > 0;) at_least[delta] += at_least[delta + 1];
    }
    for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
      const int period = periods[period_idx];
      RetentionCell& cell = row.cells[period_idx];
      cell.measurable = plan.Measurable(cohort_idx, period);
      if (!cell.measurable) continue;
      if (plan.spec().mode == RetentionMode::kOnOrAfter) {
        cell.users = static_cast<size_t>(period) < at_least.size() ? at_least[static_cast<size_t>(period)] : 0;
        continue;
      }
      for (size_t day = cohort.period_first_day; day <= cohort.period_last_day; ++day) {
        const size_t target = day + static_cast<size_t>(period);
        if (target < return_days.size()) cell.users += cohort_days[day].and_cardinality(return_days[target]);
      }
    }
  });
  return rows;
}

}  // namespace analytics::query
