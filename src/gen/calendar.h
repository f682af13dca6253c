// Civil-date helpers for the generator (proleptic Gregorian, UTC), independent of the C library's time zone
// and locale. Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace analytics::gen {

struct CivilDate {
  int year = 1970;
  int month = 1;
  int day = 1;
};

// Days since 1970-01-01 (Howard Hinnant's algorithm).
inline int64_t DaysFromCivil(int64_t year, int month, int day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t yoe = year - era * 400;
  const int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

inline CivilDate CivilFromDays(int64_t days) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  return CivilDate{static_cast<int>(yoe + era * 400 + (month <= 2)), static_cast<int>(month), static_cast<int>(day)};
}

// 0 = Sunday ... 6 = Saturday.
inline int WeekdayFromDays(int64_t days) { return static_cast<int>(((days % 7) + 11) % 7); }

// Strict "YYYY-MM-DD" with a real calendar date, years 1970..9999. Returns days since the epoch.
inline std::optional<int64_t> ParseIsoDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  int parts[3] = {0, 0, 0};
  const int starts[3] = {0, 5, 8};
  const int lengths[3] = {4, 2, 2};
  for (int part = 0; part < 3; ++part) {
    for (int i = 0; i < lengths[part]; ++i) {
      const char c = text[static_cast<size_t>(starts[part] + i)];
      if (c < '0' || c > '9') return std::nullopt;
      parts[part] = parts[part] * 10 + (c - '0');
    }
  }
  const int year = parts[0];
  const int month = parts[1];
  const int day = parts[2];
  if (year < 1970 || month < 1 || month > 12 || day < 1) return std::nullopt;
  static constexpr int kDaysIn[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int max_day = month == 2 && leap ? 29 : kDaysIn[month - 1];
  if (day > max_day) return std::nullopt;
  return DaysFromCivil(year, month, day);
}

}  // namespace analytics::gen
