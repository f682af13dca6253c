// Value format checks; see value_formats.h.
#include "events/value_formats.h"

#include <algorithm>
#include <array>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/time_util.h"

namespace analytics::events {
namespace {

constexpr bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
constexpr bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }
constexpr bool IsAlpha(char c) { return IsLower(c) || IsUpper(c); }
constexpr bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

constexpr std::array<bool, 256> MakeIdTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    table[c] = IsAlpha(ch) || IsDigit(ch) || ch == '.' || ch == '_' || ch == ':' || ch == '-';
  }
  return table;
}
constexpr std::array<bool, 256> kIdChar = MakeIdTable();

// RFC 3986 unreserved / gen-delims / sub-delims; '%' is handled separately.
constexpr std::array<bool, 256> MakeUriTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    table[c] = IsAlpha(ch) || IsDigit(ch) || std::string_view("-._~:/?#[]@!$&'()*+,;=").find(ch) !=
                                                 std::string_view::npos;
  }
  return table;
}
constexpr std::array<bool, 256> kUriChar = MakeUriTable();

// [a-z][a-z0-9_]* starting at `pos`, ending at the next '.'; advances `pos` past the dot.
bool ConsumeSegment(std::string_view value, size_t& pos) {
  if (pos >= value.size() || !IsLower(value[pos])) return false;
  ++pos;
  while (pos < value.size() && (IsLower(value[pos]) || IsDigit(value[pos]) || value[pos] == '_')) ++pos;
  if (pos >= value.size() || value[pos] != '.') return false;
  ++pos;
  return true;
}

#if defined(__SSE2__)
// True when the 16 bytes at `data` are all from [A-Za-z0-9._:-]. A byte c is in [lo, hi] when c - lo, read as
// unsigned, is at most hi - lo; adding 0x80 - lo turns that into one signed comparison.
bool AllIdChars(const char* data) {
  const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data));
  auto in_range = [&chunk](char lo, char hi) {
    const __m128i shifted = _mm_add_epi8(chunk, _mm_set1_epi8(static_cast<char>(0x80 - lo)));
    return _mm_cmplt_epi8(shifted, _mm_set1_epi8(static_cast<char>(hi - lo - 127)));
  };
  const __m128i letters = _mm_or_si128(in_range('a', 'z'), in_range('A', 'Z'));
  const __m128i digits_colon_dash_dot = _mm_or_si128(in_range('0', ':'), in_range('-', '.'));
  const __m128i underscore = _mm_cmpeq_epi8(chunk, _mm_set1_epi8('_'));
  const __m128i ok = _mm_or_si128(_mm_or_si128(letters, digits_colon_dash_dot), underscore);
  return _mm_movemask_epi8(ok) == 0xFFFF;
}
#endif

bool IsLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

char AsciiLower(char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

bool IsIdString(std::string_view value, size_t max_chars) {
  if (value.empty() || value.size() > max_chars) return false;
#if defined(__SSE2__)
  // Most ids checked per event are 16-40 bytes (UUID subjects, session ids): 16 at a time, the last chunk
  // overlapping the one before, instead of a branch per byte.
  if (value.size() >= 16) {
    for (size_t pos = 0; pos < value.size(); pos += 16) {
      if (!AllIdChars(value.data() + std::min(pos, value.size() - 16))) return false;
    }
    return true;
  }
#endif
  bool all = true;  // no early exit: short ids are nearly always valid
  for (char c : value) all &= kIdChar[static_cast<unsigned char>(c)];
  return all;
}

bool IsEventType(std::string_view value) {
  constexpr std::string_view kPrefix = "com.platform.";
  if (value.substr(0, kPrefix.size()) != kPrefix) return false;
  size_t pos = kPrefix.size();
  for (int segment_idx = 0; segment_idx < 3; ++segment_idx) {  // <service>.<entity>.<action>.
    if (!ConsumeSegment(value, pos)) return false;
  }
  if (pos >= value.size() || value[pos] != 'v') return false;
  ++pos;
  if (pos >= value.size() || value[pos] < '1' || value[pos] > '9') return false;
  for (++pos; pos < value.size(); ++pos) {
    if (!IsDigit(value[pos])) return false;
  }
  return true;
}

bool IsExtensionName(std::string_view name) {
  if (name.empty() || name.size() > 20) return false;
  for (char c : name) {
    if (!IsLower(c) && !IsDigit(c)) return false;
  }
  return true;
}

bool IsCurrencyCode(std::string_view value) {
  return value.size() == 3 && IsUpper(value[0]) && IsUpper(value[1]) && IsUpper(value[2]);
}

bool IsCountryCode(std::string_view value) {
  return value.size() == 2 && IsUpper(value[0]) && IsUpper(value[1]);
}

bool IsPlatform(std::string_view value) {
  return value == "windows" || value == "macos" || value == "linux" || value == "steamdeck" ||
         value == "android" || value == "ios";
}

bool IsDate(std::string_view value) {
  if (value.size() != 10 || value[4] != '-' || value[7] != '-') return false;
  for (size_t char_idx : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!IsDigit(value[char_idx])) return false;
  }
  const int year = (value[0] - '0') * 1000 + (value[1] - '0') * 100 + (value[2] - '0') * 10 + (value[3] - '0');
  const int month = (value[5] - '0') * 10 + (value[6] - '0');
  const int day = (value[8] - '0') * 10 + (value[9] - '0');
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  const int days_in_month = month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
  return day <= days_in_month;
}

// Producers send `time` as "YYYY-MM-DDTHH:MM:SS.mmmZ" nearly always, and the events of a stream share their
// date. That form is read here, with the last date's midnight remembered per thread; the midnight itself comes
// from common::ParseRfc3339Millis("<date>T00:00:00Z"), so the calendar rules (month lengths, leap years) stay
// in one place: it fails exactly when the full text's date fails there. Any other form, or a time of day out
// of range, goes to common::ParseRfc3339Millis whole. The general parser was ~3% of intake instructions.
std::optional<int64_t> ParseTimestampMillis(std::string_view value) {
  constexpr size_t kDateChars = 10;  // YYYY-MM-DD
  auto two_digits = [&](size_t pos, int max, int& out) {
    if (!IsDigit(value[pos]) || !IsDigit(value[pos + 1])) return false;
    out = (value[pos] - '0') * 10 + (value[pos + 1] - '0');
    return out <= max;
  };
  int hour = 0;
  int minute = 0;
  int second = 0;
  if (value.size() == 24 && (value[10] == 'T' || value[10] == 't') && value[13] == ':' && value[16] == ':' &&
      value[19] == '.' && (value[23] == 'Z' || value[23] == 'z') && two_digits(11, 23, hour) &&
      two_digits(14, 59, minute) && two_digits(17, 60, second) && IsDigit(value[20]) && IsDigit(value[21]) &&
      IsDigit(value[22])) {
    struct LastDate {
      char date[kDateChars] = {};
      int64_t midnight_ms = 0;
      bool set = false;
    };
    thread_local LastDate last;
    const std::string_view date = value.substr(0, kDateChars);
    if (!last.set || date != std::string_view(last.date, kDateChars)) {
      std::string midnight(date);
      midnight += "T00:00:00Z";
      const common::Result<int64_t> parsed = common::ParseRfc3339Millis(midnight);
      if (!parsed.ok()) return std::nullopt;
      date.copy(last.date, kDateChars);
      last.midnight_ms = *parsed;
      last.set = true;
    }
    if (second == 60) second = 59;  // leap second: clamped, as common::ParseRfc3339Millis does
    const int millis = (value[20] - '0') * 100 + (value[21] - '0') * 10 + (value[22] - '0');
    return last.midnight_ms + (int64_t{hour} * 3600 + minute * 60 + second) * 1000 + millis;
  }
  common::Result<int64_t> parsed = common::ParseRfc3339Millis(value);
  if (!parsed.ok()) return std::nullopt;
  return *parsed;
}

bool IsTimestamp(std::string_view value) { return ParseTimestampMillis(value).has_value(); }

bool IsUriReference(std::string_view value) {
  // Fast path for the usual source ("/services/store"): every byte a plain URI character, no escape. '%' is
  // not in the table, so a value with escapes (or anything invalid) takes the exact loop below.
  bool all_plain = true;
  for (char c : value) all_plain &= kUriChar[static_cast<unsigned char>(c)];
  if (all_plain) return true;
  for (size_t char_idx = 0; char_idx < value.size(); ++char_idx) {
    const char c = value[char_idx];
    if (c == '%') {
      if (char_idx + 2 >= value.size() || !IsHex(value[char_idx + 1]) || !IsHex(value[char_idx + 2])) {
        return false;
      }
      char_idx += 2;
      continue;
    }
    if (!kUriChar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool IsAbsoluteUri(std::string_view value) {
  if (value.empty() || !IsAlpha(value[0])) return false;
  size_t pos = 1;
  while (pos < value.size() &&
         (IsAlpha(value[pos]) || IsDigit(value[pos]) || value[pos] == '+' || value[pos] == '.' || value[pos] == '-')) {
    ++pos;
  }
  if (pos >= value.size() || value[pos] != ':') return false;
  return IsUriReference(value.substr(pos + 1));
}

bool IsJsonMediaType(std::string_view value) {
  constexpr std::string_view kJson = "application/json";
  if (value.size() < kJson.size()) return false;
  for (size_t char_idx = 0; char_idx < kJson.size(); ++char_idx) {
    if (AsciiLower(value[char_idx]) != kJson[char_idx]) return false;
  }
  std::string_view rest = value.substr(kJson.size());
  while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
  return rest.empty() || rest.front() == ';';
}

bool IsFieldName(std::string_view value) {
  if (value.empty() || value.size() > 64 || !IsLower(value[0])) return false;
  for (char c : value.substr(1)) {
    if (!IsLower(c) && !IsDigit(c) && c != '_') return false;
  }
  return true;
}

bool IsPlainName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!IsAlpha(c) && !IsDigit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace analytics::events
