// JSON text helpers of the segment format; see column_json.h.
#include "store/embedded/column_json.h"

#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <system_error>

namespace analytics::store::embedded {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The index of the first '"' or '\\' at or after `idx` (at least text.size() when there is none). The segment
// writer splits every stored `data` object, whose strings are mostly plain text: eight bytes are tested at once
// (a byte equal to c is a zero byte of word ^ c; the lowest flagged byte is exact, higher ones may be false).
size_t FindQuoteOrBackslash(std::string_view text, size_t idx) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighBits = 0x8080808080808080ULL;
  if constexpr (std::endian::native == std::endian::little) {
    for (; idx + 8 <= text.size(); idx += 8) {
      uint64_t word;
      std::memcpy(&word, text.data() + idx, sizeof(word));
      const uint64_t quotes = word ^ (kOnes * '"');
      const uint64_t backslashes = word ^ (kOnes * '\\');
      const uint64_t found = (((quotes - kOnes) & ~quotes) | ((backslashes - kOnes) & ~backslashes)) & kHighBits;
      if (found != 0) return idx + static_cast<size_t>(std::countr_zero(found)) / 8;
    }
  }
  while (idx < text.size() && text[idx] != '"' && text[idx] != '\\') ++idx;
  return idx;
}

// `pos` is at the opening quote; on success `end` is just past the closing quote.
bool ScanString(std::string_view text, size_t pos, size_t& end) {
  size_t idx = pos + 1;
  while (true) {
    idx = FindQuoteOrBackslash(text, idx);
    if (idx >= text.size()) return false;
    if (text[idx] == '"') {
      end = idx + 1;
      return true;
    }
    idx += 2;  // an escape: the next byte is never the end
  }
}

// Moves `pos` past one value (see SplitJsonObject for how values are delimited).
bool ScanValue(std::string_view text, size_t& pos) {
  if (pos >= text.size()) return false;
  const char first = text[pos];
  if (first == '"') return ScanString(text, pos, pos);
  if (first == '{' || first == '[') {
    size_t depth = 0;
    size_t idx = pos;
    while (idx < text.size()) {
      const char c = text[idx];
      if (c == '"') {
        if (!ScanString(text, idx, idx)) return false;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) {
          pos = idx + 1;
          return true;
        }
      }
      ++idx;
    }
    return false;
  }
  size_t idx = pos;
  while (idx < text.size() && text[idx] != ',' && text[idx] != '}' && text[idx] != ']' && !IsSpace(text[idx])) {
    ++idx;
  }
  if (idx == pos) return false;
  pos = idx;
  return true;
}

constexpr std::array<bool, 256> MakeEscapeTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = true;
  table['"'] = true;
  table['\\'] = true;
  return table;
}
constexpr std::array<bool, 256> kNeedsEscape = MakeEscapeTable();

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ReadHex4(std::string_view text, size_t pos, uint32_t& value) {
  if (pos + 4 > text.size()) return false;
  value = 0;
  for (size_t idx = pos; idx < pos + 4; ++idx) {
    const int digit = HexValue(text[idx]);
    if (digit < 0) return false;
    value = value * 16 + static_cast<uint32_t>(digit);
  }
  return true;
}

void AppendUtf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

constexpr double kPow10[kMaxDecimalExponent + 1] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
constexpr uint64_t kMaxExactMantissa = uint64_t{1} << 53;

}  // namespace

bool SplitJsonObject(std::string_view text, bool allow_whitespace, std::vector<JsonMember>& members) {
  members.clear();
  size_t pos = 0;
  auto skip = [&] {
    if (allow_whitespace) {
      while (pos < text.size() && IsSpace(text[pos])) ++pos;
    }
  };
  skip();
  if (pos >= text.size() || text[pos] != '{') return false;
  ++pos;
  skip();
  if (pos < text.size() && text[pos] == '}') {
    ++pos;
    skip();
    return pos == text.size();
  }
  while (true) {
    if (pos >= text.size() || text[pos] != '"') return false;
    size_t key_end = 0;
    if (!ScanString(text, pos, key_end)) return false;
    const std::string_view key = text.substr(pos + 1, key_end - pos - 2);
    pos = key_end;
    skip();
    if (pos >= text.size() || text[pos] != ':') return false;
    ++pos;
    skip();
    const size_t value_start = pos;
    if (!ScanValue(text, pos)) return false;
    members.push_back(JsonMember{key, text.substr(value_start, pos - value_start)});
    skip();
    if (pos >= text.size()) return false;
    if (text[pos] == ',') {
      ++pos;
      skip();
      continue;
    }
    if (text[pos] != '}') return false;
    ++pos;
    skip();
    return pos == text.size();
  }
}

void AppendJsonEscaped(std::string& out, std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t clean_start = 0;
  for (size_t idx = 0; idx < value.size(); ++idx) {
    const auto c = static_cast<unsigned char>(value[idx]);
    if (!kNeedsEscape[c]) continue;
    out.append(value.data() + clean_start, idx - clean_start);
    clean_start = idx + 1;
    out.push_back('\\');
    switch (c) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '\b': out.push_back('b'); break;
      case '\f': out.push_back('f'); break;
      case '\n': out.push_back('n'); break;
      case '\r': out.push_back('r'); break;
      case '\t': out.push_back('t'); break;
      default:
        out.append("u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xF]);
    }
  }
  out.append(value.data() + clean_start, value.size() - clean_start);
}

bool IsPlainJsonString(std::string_view escaped) {
  for (char c : escaped) {
    if (kNeedsEscape[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool UnescapeJsonString(std::string_view escaped, std::string& out) {
  out.clear();
  out.reserve(escaped.size());
  for (size_t idx = 0; idx < escaped.size();) {
    const char c = escaped[idx];
    if (static_cast<unsigned char>(c) < 0x20) return false;
    if (c != '\\') {
      out.push_back(c);
      ++idx;
      continue;
    }
    if (idx + 1 >= escaped.size()) return false;
    const char kind = escaped[idx + 1];
    idx += 2;
    switch (kind) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '/': out.push_back('/'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'u': {
        uint32_t unit = 0;
        if (!ReadHex4(escaped, idx, unit)) return false;
        idx += 4;
        if (unit >= 0xDC00 && unit <= 0xDFFF) return false;  // a low surrogate first
        if (unit >= 0xD800 && unit <= 0xDBFF) {
          uint32_t low = 0;
          if (idx + 6 > escaped.size() || escaped[idx] != '\\' || escaped[idx + 1] != 'u' ||
              !ReadHex4(escaped, idx + 2, low) || low < 0xDC00 || low > 0xDFFF) {
            return false;
          }
          idx += 6;
          unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        }
        AppendUtf8(out, unit);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

void AppendInt64Text(std::string& out, int64_t value) {
  char buffer[24];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, static_cast<size_t>(end - buffer));
}

void AppendDoubleText(std::string& out, double value) {
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, static_cast<size_t>(end - buffer));
}

CanonicalNumber ClassifyNumber(std::string_view text) {
  CanonicalNumber number;
  if (text.empty() || text.size() > 40) return number;
  const char* begin = text.data();
  const char* end = begin + text.size();
  char buffer[32];
  {
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec == std::errc() && ptr == end) {
      const auto [out_end, out_ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
      if (std::string_view(buffer, static_cast<size_t>(out_end - buffer)) == text) {
        number.is_int = true;
        number.int_value = value;
      }
    }
  }
  double value = 0;
  if (number.is_int && number.int_value >= -static_cast<int64_t>(kMaxExactMantissa) &&
      number.int_value <= static_cast<int64_t>(kMaxExactMantissa)) {
    value = static_cast<double>(number.int_value);  // exact: no parse needed
  } else {
    const auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc() || ptr != end) return number;
  }
  const auto [out_end, out_ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  if (std::string_view(buffer, static_cast<size_t>(out_end - buffer)) == text) {
    number.is_double = true;
    number.double_value = value;
  }
  return number;
}

bool DoubleToDecimal(double value, std::string_view text, int64_t& mantissa, int& exponent) {
  size_t pos = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) ++pos;
  uint64_t digits = 0;
  int fraction_digits = 0;
  bool seen_point = false, seen_digit = false;
  for (; pos < text.size() && text[pos] != 'e'; ++pos) {
    const char c = text[pos];
    if (c == '.') {
      if (seen_point) return false;
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9') return false;
    seen_digit = true;
    digits = digits * 10 + static_cast<uint64_t>(c - '0');
    if (digits > kMaxExactMantissa) return false;
    if (seen_point) ++fraction_digits;
  }
  if (!seen_digit) return false;
  int exponent10 = 0;
  if (pos < text.size()) {  // 'e', sign, digits
    ++pos;
    bool negative_exponent = false;
    if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) negative_exponent = text[pos++] == '-';
    if (pos == text.size() || text.size() - pos > 4) return false;
    for (; pos < text.size(); ++pos) {
      if (text[pos] < '0' || text[pos] > '9') return false;
      exponent10 = exponent10 * 10 + (text[pos] - '0');
    }
    if (negative_exponent) exponent10 = -exponent10;
  }
  exponent10 -= fraction_digits;
  if (exponent10 < -kMaxDecimalExponent || exponent10 > kMaxDecimalExponent) return false;
  mantissa = negative ? -static_cast<int64_t>(digits) : static_cast<int64_t>(digits);
  exponent = exponent10;
  const double back = DecimalToDouble(mantissa, exponent);
  uint64_t back_bits, value_bits;
  std::memcpy(&back_bits, &back, 8);
  std::memcpy(&value_bits, &value, 8);
  return back_bits == value_bits;  // also refuses -0 (rebuilt as +0)
}

double DecimalToDouble(int64_t mantissa, int exponent) {
  const auto base = static_cast<double>(mantissa);
  if (exponent >= 0) return base * kPow10[exponent > kMaxDecimalExponent ? kMaxDecimalExponent : exponent];
  return base / kPow10[-exponent > kMaxDecimalExponent ? kMaxDecimalExponent : -exponent];
}

}  // namespace analytics::store::embedded
