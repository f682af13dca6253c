// TimeGrid: bucket boundaries through Abseil's civil time and zone database.
#include "query/time_grid.h"

#include <algorithm>
#include <cctype>

#include <absl/time/civil_time.h>

#include "common/time_util.h"

namespace analytics::query {

using common::Result;
using common::Status;

namespace {

int64_t ToMs(absl::Time time) { return absl::ToUnixMillis(time); }

// The first instant at or after the civil time `civil` in `zone`.
int64_t FirstInstantAtOrAfter(const absl::TimeZone& zone, absl::CivilSecond civil) {
  const absl::TimeZone::TimeInfo info = zone.At(civil);
  switch (info.kind) {
    case absl::TimeZone::TimeInfo::SKIPPED:
      return ToMs(info.trans);
    case absl::TimeZone::TimeInfo::REPEATED:
    case absl::TimeZone::TimeInfo::UNIQUE:
      break;
  }
  return ToMs(info.pre);
}

int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

std::string_view GranularityName(Granularity granularity) {
  switch (granularity) {
    case Granularity::kMinute: return "minute";
    case Granularity::kHour: return "hour";
    case Granularity::kDay: return "day";
    case Granularity::kWeek: return "week";
    case Granularity::kMonth: return "month";
  }
  return "day";
}

std::optional<Granularity> GranularityFromName(std::string_view name) {
  for (Granularity granularity : {Granularity::kMinute, Granularity::kHour, Granularity::kDay, Granularity::kWeek,
                                  Granularity::kMonth}) {
    if (GranularityName(granularity) == name) return granularity;
  }
  return std::nullopt;
}

Result<TimeZone> TimeZone::Load(const std::string& name) {
  TimeZone zone;
  zone.name_ = name;
  if (name == "UTC" || name == "Etc/UTC") {
    zone.zone_ = absl::UTCTimeZone();
    return zone;
  }
  // Abseil also accepts fixed offsets and paths; only plain IANA names are allowed here.
  const bool plain = !name.empty() && name.size() < 64 && name.find("..") == std::string::npos &&
                     name.front() != '/' &&
                     std::all_of(name.begin(), name.end(), [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '_' || c == '-' ||
                              c == '+';
                     });
  if (!plain || !absl::LoadTimeZone(name, &zone.zone_)) {
    return Status::InvalidArgument("unknown time zone '" + name + "' (expected an IANA name such as Europe/Moscow)",
                                   "timezone");
  }
  return zone;
}

TimeZone TimeZone::Utc() {
  TimeZone zone;
  zone.name_ = "UTC";
  zone.zone_ = absl::UTCTimeZone();
  return zone;
}

int64_t TimeZone::StartOfDay(int64_t year, int month, int day) const {
  return FirstInstantAtOrAfter(zone_, absl::CivilSecond(year, month, day, 0, 0, 0));
}

std::string TimeZone::Format(int64_t unix_ms) const {
  std::string text = absl::FormatTime("%Y-%m-%dT%H:%M:%S%Ez", absl::FromUnixMillis(unix_ms), zone_);
  if (zone_ == absl::UTCTimeZone() && text.size() > 6 && text.compare(text.size() - 6, 6, "+00:00") == 0) {
    text.replace(text.size() - 6, 6, "Z");
  }
  return text;
}

Result<TimeGrid> TimeGrid::Make(int64_t start_ms, int64_t end_ms, Granularity granularity, const TimeZone& zone,
                                size_t max_buckets) {
  if (end_ms <= start_ms) return Status::InvalidArgument("period_end must be after period_start", "period_end");
  TimeGrid grid;
  const absl::TimeZone& tz = zone.zone();
  const absl::CivilSecond local = absl::ToCivilSecond(absl::FromUnixMillis(start_ms), tz);
  auto too_many = [&] {
    return Status::InvalidArgument("the period has more than " + std::to_string(max_buckets) + " " +
                                       std::string(GranularityName(granularity)) + " buckets",
                                   "granularity");
  };
  if (granularity == Granularity::kMinute || granularity == Granularity::kHour) {
    const int64_t step = granularity == Granularity::kMinute ? 60000 : 3600000;
    // Align to the local minute/hour: the offset from UTC is a whole number of minutes in every zone in
    // use, and of hours except a few (+05:30, +05:45...), which is why the offset is applied.
    const int64_t offset_ms = int64_t{tz.At(absl::FromUnixMillis(start_ms)).offset} * 1000;
    int64_t bound = FloorDiv(start_ms + offset_ms, step) * step - offset_ms;
    if (static_cast<uint64_t>((end_ms - bound) / step) > max_buckets) return too_many();
    for (; bound < end_ms; bound += step) grid.bounds_.push_back(bound);
    grid.bounds_.push_back(bound);
    return grid;
  }
  auto civil_start = [&](int64_t n) -> int64_t {
    switch (granularity) {
      case Granularity::kDay: {
        const absl::CivilDay day = absl::CivilDay(local) + n;
        return FirstInstantAtOrAfter(tz, absl::CivilSecond(day));
      }
      case Granularity::kWeek: {
        absl::CivilDay day(local);
        day -= (static_cast<int>(absl::GetWeekday(day)) - static_cast<int>(absl::Weekday::monday) + 7) % 7;
        return FirstInstantAtOrAfter(tz, absl::CivilSecond(day + 7 * n));
      }
      default: {
        const absl::CivilMonth month = absl::CivilMonth(local) + n;
        return FirstInstantAtOrAfter(tz, absl::CivilSecond(month));
      }
    }
  };
  for (int64_t n = 0;; ++n) {
    const int64_t bound = civil_start(n);
    grid.bounds_.push_back(bound);
    if (bound >= end_ms) break;
    if (grid.bounds_.size() > max_buckets) return too_many();
  }
  return grid;
}

int64_t TimeGrid::Find(int64_t unix_ms) const {
  if (unix_ms < bounds_.front() || unix_ms >= bounds_.back()) return -1;
  return std::upper_bound(bounds_.begin(), bounds_.end(), unix_ms) - bounds_.begin() - 1;
}

common::Result<int64_t> ParsePeriodBound(const std::string& text, bool is_end, const TimeZone& zone,
                                         const char* parameter) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(text, &day)) {
      return common::Status::InvalidArgument("not a date (YYYY-MM-DD) or RFC 3339 time: '" + text + "'", parameter);
    }
    if (is_end) day += 1;
    return zone.StartOfDay(day.year(), day.month(), day.day());
  }
  auto time = common::ParseRfc3339Millis(text);
  if (!time.ok()) {
    return common::Status::InvalidArgument("not a date (YYYY-MM-DD) or RFC 3339 time: '" + text + "'", parameter);
  }
  return is_end ? *time + 1 : *time;  // both ends included
}

}  // namespace analytics::query
