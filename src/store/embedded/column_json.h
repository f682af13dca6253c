// JSON text helpers of the segment format (docs/formats/segment.md, format 3): splitting a `data` object
// into its top-level members, telling which members can be stored as typed values and still be rebuilt
// byte-identically, and rendering typed values back to the exact text the intake writer produces
// (src/events/json_text.cc: strings escape only '"', '\\' and control characters; numbers are the shortest
// std::to_chars form).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace analytics::store::embedded {

// One top-level member of a JSON object, as views into the object's text.
struct JsonMember {
  std::string_view key;    // the bytes between the key's quotes (still escaped)
  std::string_view value;  // the value's whole text (a string value keeps its quotes)
};

// Splits `text`, a JSON object, into its members in order. Strict (`allow_whitespace` false): no whitespace
// between the object's own tokens, and nothing after its closing brace. Lenient: whitespace between them is
// skipped. Values are delimited, not validated: a nested array or object ends at the bracket that balances it
// (outside strings; it may contain anything), a scalar at the next ',', '}', ']' or whitespace. Returns false
// when the text is not of that form; `members` is then unspecified.
bool SplitJsonObject(std::string_view text, bool allow_whitespace, std::vector<JsonMember>& members);

// Appends `value` escaped exactly as the intake writer does (no quotes added).
void AppendJsonEscaped(std::string& out, std::string_view value);

// True when `escaped` (string-literal bytes without the quotes) has no escape sequence and no byte that
// AppendJsonEscaped would escape: the literal equals its value.
bool IsPlainJsonString(std::string_view escaped);

// Decodes the escape sequences of a string literal's bytes (without quotes) into UTF-8. False for a bad
// escape, a lone surrogate or an unescaped control character.
bool UnescapeJsonString(std::string_view escaped, std::string& out);

// The shortest std::to_chars text of a number (the intake writer's form).
void AppendInt64Text(std::string& out, int64_t value);
void AppendDoubleText(std::string& out, double value);

// A JSON number literal that AppendInt64Text / AppendDoubleText reproduce exactly.
struct CanonicalNumber {
  bool is_int = false;     // text == AppendInt64Text(int_value)
  bool is_double = false;  // text == AppendDoubleText(double_value)
  int64_t int_value = 0;
  double double_value = 0;
};
CanonicalNumber ClassifyNumber(std::string_view text);

// A double as mantissa * 10^exponent with |mantissa| <= 2^53 and |exponent| <= 22, so that
// DecimalToDouble gives back exactly `value` (both operands exact, one IEEE rounding). False when `value` has
// no such form (too many digits, far exponent, -0, inf, nan). `text` is AppendDoubleText(value).
bool DoubleToDecimal(double value, std::string_view text, int64_t& mantissa, int& exponent);
double DecimalToDouble(int64_t mantissa, int exponent);
inline constexpr int kMaxDecimalExponent = 22;

}  // namespace analytics::store::embedded
