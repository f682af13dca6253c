#include "jobs/cron.h"

#include <array>
#include <cctype>
#include <charconv>
#include <vector>

#include <absl/time/civil_time.h>

namespace analytics::jobs {
namespace {

using common::Status;

struct FieldSpec {
  const char* name;
  int min, max;
  const char* const* names;  // three-letter names of min, min + 1, ... (nullptr: numbers only)
  int name_count;
  const char* expected;  // what a value must be, for errors
};

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

constexpr FieldSpec kFields[] = {
    {"minute", 0, 59, nullptr, 0, "a number"},
    {"hour", 0, 23, nullptr, 0, "a number"},
    {"day-of-month", 1, 31, nullptr, 0, "a number"},
    {"month", 1, 12, kMonthNames, 12, "a month (1-12 or JAN-DEC)"},
    {"day-of-week", 0, 7, kDayNames, 7, "a day of the week (0-7 or SUN-SAT)"},
};

constexpr std::array<std::pair<const char*, const char*>, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::string Range(int min, int max) { return std::to_string(min) + "-" + std::to_string(max); }

Status FieldError(const FieldSpec& spec, const std::string& reason) {
  return Status::InvalidArgument(std::string(spec.name) + ": " + reason);
}

bool AllDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// One value of a field: a number in the field's range or a name.
Status ParseValue(std::string_view token, const FieldSpec& spec, int* value) {
  if (AllDigits(token)) {
    int number = 0;
    const auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), number);
    if (error != std::errc() || end != token.data() + token.size() || number < spec.min || number > spec.max) {
      return FieldError(spec, std::string(token) + " is out of range " + Range(spec.min, spec.max));
    }
    *value = number;
    return Status::Ok();
  }
  if (token.size() == 3) {
    for (int name_idx = 0; name_idx < spec.name_count; ++name_idx) {
      const char* name = spec.names[name_idx];
      bool equal = true;
      for (size_t char_idx = 0; char_idx < 3; ++char_idx) {
        equal = equal && std::toupper(static_cast<unsigned char>(token[char_idx])) == name[char_idx];
      }
      if (equal) {
        *value = spec.min + name_idx;
        return Status::Ok();
      }
    }
  }
  return FieldError(spec, "\"" + std::string(token) + "\" is not " + spec.expected);
}

// A field: a comma-separated list of "*", values and ranges, each with an optional step. Sets the matching bits.
Status ParseField(std::string_view text, const FieldSpec& spec, uint64_t* bits) {
  *bits = 0;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view element = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (element.empty()) return FieldError(spec, "empty list element in \"" + std::string(text) + "\"");
    const size_t slash = element.find('/');
    const std::string_view base = element.substr(0, slash);
    int low = spec.min, high = spec.max, step = 1;
    if (slash != std::string_view::npos) {
      const std::string_view step_text = element.substr(slash + 1);
      const int max_step = spec.max - spec.min;
      if (!AllDigits(step_text)) {
        return FieldError(spec, "step \"" + std::string(step_text) + "\" is not a number");
      }
      const auto [end, error] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
      if (error != std::errc() || end != step_text.data() + step_text.size() || step < 1 || step > max_step) {
        return FieldError(spec, "step " + std::string(step_text) + " is out of range " + Range(1, max_step));
      }
    }
    if (base != "*") {
      const size_t dash = base.find('-');
      if (dash == std::string_view::npos) {
        ANALYTICS_RETURN_IF_ERROR(ParseValue(base, spec, &low));
        // "5/10" is 5-max/10; a plain value is itself.
        high = slash == std::string_view::npos ? low : spec.max;
      } else {
        ANALYTICS_RETURN_IF_ERROR(ParseValue(base.substr(0, dash), spec, &low));
        ANALYTICS_RETURN_IF_ERROR(ParseValue(base.substr(dash + 1), spec, &high));
        if (high < low) return FieldError(spec, "range \"" + std::string(base) + "\" ends before it starts");
      }
    }
    for (int value = low; value <= high; value += step) *bits |= uint64_t{1} << value;
    if (comma == std::string_view::npos) return Status::Ok();
    start = comma + 1;
  }
}

template <size_t N>
std::bitset<N> ToBitset(uint64_t bits) {
  std::bitset<N> set;
  for (size_t idx = 0; idx < N; ++idx) set[idx] = ((bits >> idx) & 1) != 0;
  return set;
}

// The first set bit at or after `from`, or -1.
template <size_t N>
int NextBit(const std::bitset<N>& bits, int from) {
  for (int idx = from; idx < static_cast<int>(N); ++idx) {
    if (bits[idx]) return idx;
  }
  return -1;
}

int DaysInMonth(int64_t year, int month) {
  return static_cast<int>(absl::CivilDay(absl::CivilMonth(year, month) + 1) - absl::CivilDay(year, month, 1));
}

}  // namespace

common::Result<CronSchedule> CronSchedule::Parse(std::string_view text) {
  while (!text.empty() && IsBlank(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsBlank(text.back())) text.remove_suffix(1);
  CronSchedule schedule;
  schedule.text_ = std::string(text);
  std::string_view fields_text = text;
  if (!text.empty() && text.front() == '@') {
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    fields_text = {};
    for (const auto& [macro, expansion] : kMacros) {
      if (lower == macro) fields_text = expansion;
    }
    if (fields_text.empty()) {
      return Status::InvalidArgument("unknown macro \"" + std::string(text) +
                                     "\" (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or "
                                     "@hourly)");
    }
  }
  std::vector<std::string_view> fields;
  for (size_t pos = 0; pos < fields_text.size();) {
    if (IsBlank(fields_text[pos])) {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < fields_text.size() && !IsBlank(fields_text[end])) ++end;
    fields.push_back(fields_text.substr(pos, end - pos));
    pos = end;
  }
  if (fields.size() != 5) {
    return Status::InvalidArgument("expected 5 fields (minute hour day-of-month month day-of-week), got " +
                                   std::to_string(fields.size()));
  }
  uint64_t bits[5] = {};
  for (size_t field_idx = 0; field_idx < 5; ++field_idx) {
    ANALYTICS_RETURN_IF_ERROR(ParseField(fields[field_idx], kFields[field_idx], &bits[field_idx]));
  }
  if ((bits[4] >> 7) & 1) bits[4] = (bits[4] | 1) & 0x7F;  // 7 is Sunday, as 0
  schedule.minutes_ = ToBitset<60>(bits[0]);
  schedule.hours_ = ToBitset<24>(bits[1]);
  schedule.days_of_month_ = ToBitset<32>(bits[2]);
  schedule.months_ = ToBitset<13>(bits[3]);
  schedule.days_of_week_ = ToBitset<7>(bits[4]);
  schedule.day_of_month_restricted_ = fields[2].front() != '*';
  schedule.day_of_week_restricted_ = fields[4].front() != '*';
  return schedule;
}

bool CronSchedule::DayMatches(int64_t year, int month, int day) const {
  const bool day_of_month = days_of_month_[day];
  // absl counts Monday as 0; cron counts Sunday as 0.
  const int weekday = (static_cast<int>(absl::GetWeekday(absl::CivilDay(year, month, day))) + 1) % 7;
  const bool day_of_week = days_of_week_[weekday];
  if (day_of_month_restricted_ && day_of_week_restricted_) return day_of_month || day_of_week;
  return day_of_month && day_of_week;
}

std::optional<absl::CivilMinute> CronSchedule::NextMatch(absl::CivilMinute from, absl::CivilMinute limit) const {
  int64_t year = from.year();
  int month = from.month(), day = from.day(), hour = from.hour(), minute = from.minute();
  // Each step moves to the first candidate that the failing field allows, resetting the smaller fields, so the
  // walk visits at most every day of the horizon, and only the hours and minutes of matching days.
  auto next_day = [&]() {
    hour = 0;
    minute = 0;
    if (++day > DaysInMonth(year, month)) {
      day = 1;
      if (++month > 12) {
        month = 1;
        ++year;
      }
    }
  };
  while (absl::CivilMinute(year, month, day, hour, minute) <= limit) {
    if (!months_[month]) {
      const int next = NextBit(months_, month + 1);
      if (next < 0) {
        ++year;
        month = NextBit(months_, 1);
      } else {
        month = next;
      }
      day = 1;
      hour = 0;
      minute = 0;
      continue;
    }
    if (!DayMatches(year, month, day)) {
      next_day();
      continue;
    }
    if (!hours_[hour]) {
      const int next = NextBit(hours_, hour + 1);
      if (next < 0) {
        next_day();
      } else {
        hour = next;
        minute = 0;
      }
      continue;
    }
    if (!minutes_[minute]) {
      const int next = NextBit(minutes_, minute + 1);
      if (next < 0) {
        minute = 0;
        if (++hour > 23) next_day();
        continue;
      }
      minute = next;
    }
    const absl::CivilMinute match(year, month, day, hour, minute);
    if (match > limit) break;
    return match;
  }
  return std::nullopt;
}

std::optional<int64_t> CronSchedule::NextAfter(int64_t after_ms, const query::TimeZone& zone) const {
  const absl::TimeZone& tz = zone.zone();
  const absl::Time after = absl::FromUnixMillis(after_ms);
  absl::CivilMinute from = absl::ToCivilMinute(after, tz) + 1;
  const absl::CivilMinute limit(from.year() + kHorizonYears, from.month(), from.day(), from.hour(), from.minute());
  // The fire time of a local minute never decreases as the minute grows (a skipped minute fires at the end of
  // its gap, a repeated one at its first occurrence), so the first matching minute that fires after `after` is
  // the answer. Only minutes repeated by a DST change whose first occurrence is already past are passed over.
  while (std::optional<absl::CivilMinute> match = NextMatch(from, limit)) {
    const absl::TimeZone::TimeInfo info = tz.At(*match);
    const absl::Time fire = info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre;
    if (fire > after) return absl::ToUnixMillis(fire);
    from = *match + 1;
  }
  return std::nullopt;
}

}  // namespace analytics::jobs
