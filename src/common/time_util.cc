// RFC 3339 and duration helpers.
#include "common/time_util.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace analytics::common {
namespace {

bool ParseFixed(std::string_view text, size_t pos, size_t len, int& out) {
  if (pos + len > text.size()) return false;
  int value = 0;
  for (size_t char_idx = pos; char_idx < pos + len; ++char_idx) {
    char c = text[char_idx];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  out = value;
  return true;
}

bool IsLeap(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeap(year) ? 29 : kDays[month - 1];
}

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t year, unsigned month, unsigned day) {
  year -= month <= 2;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(year - era * 400);
  const unsigned doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatRfc3339Millis(int64_t unix_millis) {
  int64_t seconds = unix_millis / 1000;
  int64_t millis = unix_millis % 1000;
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buf;
}

Result<int64_t> ParseRfc3339Millis(std::string_view text) {
  auto bad = [&]() { return Status::InvalidArgument("not an RFC 3339 date-time: '" + std::string(text) + "'"); };
  int year, month, day, hour, minute, second;
  if (text.size() < 20 || !ParseFixed(text, 0, 4, year) || text[4] != '-' || !ParseFixed(text, 5, 2, month) ||
      text[7] != '-' || !ParseFixed(text, 8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
      !ParseFixed(text, 11, 2, hour) || text[13] != ':' || !ParseFixed(text, 14, 2, minute) || text[16] != ':' ||
      !ParseFixed(text, 17, 2, second)) {
    return bad();
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 || minute > 59 ||
      second > 60) {
    return bad();
  }
  size_t pos = 19;
  int64_t millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 3) millis = millis * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0 || digits > 9) return bad();
    for (size_t pad = digits; pad < 3; ++pad) millis *= 10;
  }
  int64_t offset_seconds = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int off_h, off_m;
    if (!ParseFixed(text, pos + 1, 2, off_h) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !ParseFixed(text, pos + 4, 2, off_m) || off_h > 23 || off_m > 59) {
      return bad();
    }
    offset_seconds = (off_h * 3600 + off_m * 60) * (text[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();
  if (second == 60) second = 59;  // leap second: clamp, as most systems do
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  return seconds * 1000 + millis;
}

Result<int64_t> ParseDurationSeconds(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("empty duration");
  int64_t multiplier = 1;
  std::string_view digits = text;
  switch (text.back()) {
    case 's': multiplier = 1; digits.remove_suffix(1); break;
    case 'm': multiplier = 60; digits.remove_suffix(1); break;
    case 'h': multiplier = 3600; digits.remove_suffix(1); break;
    case 'd': multiplier = 86400; digits.remove_suffix(1); break;
    default: break;
  }
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || value <= 0 ||
      value > (int64_t{1} << 40) / multiplier) {
    return Status::InvalidArgument("not a duration (e.g. 90s, 15m, 1h, 7d): '" + std::string(text) + "'");
  }
  return value * multiplier;
}

}  // namespace analytics::common
