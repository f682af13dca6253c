// A minimal append-only JSON writer for the generator's hot path: no DOM, one reusable growable buffer,
// locale-free number formatting. Strings are escaped per RFC 8259 (quote, backslash and control characters;
// valid UTF-8 passes through unchanged).
// Thread-safety: plain value; one writer per thread.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace analytics::gen {

class JsonWriter {
 public:
  JsonWriter() : buf_(4096) {}

  // Starts a new document (keeps the buffer).
  void Clear() {
    pos_ = 0;
    first_ = true;
  }
  std::string_view view() const { return {buf_.data(), pos_}; }

  // Appends text verbatim (already valid JSON, or a fragment of it).
  void Raw(std::string_view text) {
    Reserve(text.size());
    std::memcpy(buf_.data() + pos_, text.data(), text.size());
    pos_ += text.size();
  }
  void Char(char c) {
    Reserve(1);
    buf_[pos_++] = c;
  }

  // A JSON string with escaping.
  void String(std::string_view text) {
    Char('"');
    StringBody(text);
    Char('"');
  }

  // Escaped string contents without the quotes.
  void StringBody(std::string_view text) {
    size_t run_start = 0;
    for (size_t pos = 0; pos < text.size(); ++pos) {
      const unsigned char c = static_cast<unsigned char>(text[pos]);
      if (c >= 0x20 && c != '"' && c != '\\') continue;
      Raw(text.substr(run_start, pos - run_start));
      run_start = pos + 1;
      switch (c) {
        case '"': Raw("\\\""); break;
        case '\\': Raw("\\\\"); break;
        case '\n': Raw("\\n"); break;
        case '\r': Raw("\\r"); break;
        case '\t': Raw("\\t"); break;
        case '\b': Raw("\\b"); break;
        case '\f': Raw("\\f"); break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
          Raw(std::string_view(escaped, 6));
        }
      }
    }
    Raw(text.substr(run_start));
  }

  void Int(int64_t value) {
    Reserve(24);
    auto result = std::to_chars(buf_.data() + pos_, buf_.data() + pos_ + 24, value);
    pos_ = static_cast<size_t>(result.ptr - buf_.data());
  }

  // A decimal number from hundredths (money in minor units): 104930 -> 1049.3, 49900 -> 499, 5 -> 0.05.
  void Hundredths(int64_t value) {
    if (value < 0) {
      Char('-');
      value = -value;
    }
    Int(value / 100);
    const int64_t frac = value % 100;
    if (frac == 0) return;
    Char('.');
    Char(static_cast<char>('0' + frac / 10));
    if (frac % 10 != 0) Char(static_cast<char>('0' + frac % 10));
  }

  // A decimal number from tenths: 614 -> 61.4, 100 -> 10.
  void Tenths(int64_t value) {
    Int(value / 10);
    if (value % 10 != 0) {
      Char('.');
      Char(static_cast<char>('0' + value % 10));
    }
  }

  void Bool(bool value) { Raw(value ? std::string_view("true") : std::string_view("false")); }

  // `digits` (1..16) lower-case hex digits of the low bits of value, most significant first.
  void HexDigits(uint64_t value, int digits) {
    static constexpr char kHex[] = "0123456789abcdef";
    Reserve(16);
    char* out = buf_.data() + pos_;
    for (int i = digits - 1; i >= 0; --i) {
      out[i] = kHex[value & 15];
      value >>= 4;
    }
    pos_ += static_cast<size_t>(digits);
  }

  // A JSON array of the names[i] whose bit i is set in `mask` (names are plain identifiers, not escaped).
  template <size_t N>
  void NameArray(const std::string_view (&names)[N], uint32_t mask) {
    Char('[');
    bool first = true;
    for (size_t name_idx = 0; name_idx < N; ++name_idx) {
      if (!(mask & (1u << name_idx))) continue;
      if (!first) Char(',');
      first = false;
      Char('"');
      Raw(names[name_idx]);
      Char('"');
    }
    Char(']');
  }

  // Object members: Key() writes the separating comma when needed and `"name":`.
  void BeginObject() {
    Char('{');
    first_ = true;
  }
  void EndObject() {
    Char('}');
    first_ = false;
  }
  void Key(std::string_view name) {
    Reserve(name.size() + 4);
    char* out = buf_.data() + pos_;
    if (!first_) *out++ = ',';
    first_ = false;
    *out++ = '"';
    std::memcpy(out, name.data(), name.size());
    out += name.size();
    *out++ = '"';
    *out++ = ':';
    pos_ = static_cast<size_t>(out - buf_.data());
  }

 private:
  void Reserve(size_t n) {
    if (pos_ + n > buf_.size()) [[unlikely]] buf_.resize(std::max(buf_.size() * 2, pos_ + n));
  }

  std::vector<char> buf_;
  size_t pos_ = 0;
  bool first_ = true;
};

}  // namespace analytics::gen
