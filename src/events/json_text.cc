// JSON text helpers; see json_text.h.
#include "events/json_text.h"

#include <array>
#include <charconv>
#include <system_error>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace analytics::events {
namespace {

constexpr std::array<bool, 256> MakeEscapeTable() {
  std::array<bool, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = true;
  table['"'] = true;
  table['\\'] = true;
  return table;
}
constexpr std::array<bool, 256> kNeedsEscape = MakeEscapeTable();

// Writes the escape sequence of `c` at `out`; returns the end.
char* WriteEscape(char* out, unsigned char c) {
  *out++ = '\\';
  switch (c) {
    case '"': *out++ = '"'; break;
    case '\\': *out++ = '\\'; break;
    case '\b': *out++ = 'b'; break;
    case '\f': *out++ = 'f'; break;
    case '\n': *out++ = 'n'; break;
    case '\r': *out++ = 'r'; break;
    case '\t': *out++ = 't'; break;
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      *out++ = 'u';
      *out++ = '0';
      *out++ = '0';
      *out++ = kHex[c >> 4];
      *out++ = kHex[c & 0xF];
    }
  }
  return out;
}

// Copies `value` escaped to `out` (room for 6 bytes per input byte); returns the end.
char* CopyEscaped(char* out, std::string_view value) {
  const auto* in = reinterpret_cast<const unsigned char*>(value.data());
  size_t pos = 0;
#if defined(__SSE2__)
  // Long strings: find bytes needing an escape 16 at a time, copy clean runs with memcpy.
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1F);
  while (pos + 16 <= value.size()) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + pos));
    const __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
                                      _mm_cmpeq_epi8(_mm_min_epu8(chunk, control_max), chunk));  // chunk <= 0x1F
    const int mask = _mm_movemask_epi8(hits);
    if (mask == 0) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), chunk);
      out += 16;
      pos += 16;
      continue;
    }
    const auto clean = static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    std::memcpy(out, in + pos, clean);
    out = WriteEscape(out + clean, in[pos + clean]);
    pos += clean + 1;
  }
#endif
  // Then 8 bytes at a time in a register (SWAR): the typical key or value is 5-20 bytes, and a clean word
  // is one load and one store instead of eight table lookups.
  while (pos + 8 <= value.size()) {
    uint64_t word;
    std::memcpy(&word, in + pos, 8);
    if (JsonEscapeMask(word) != 0) break;
    std::memcpy(out, in + pos, 8);
    out += 8;
    pos += 8;
  }
  // The last 1-7 bytes: one more word, the one ending with the string (it overlaps bytes already copied, which
  // it rewrites with the same values: a clean word has no escape among them). Strings of 4-7 bytes take two
  // overlapping 4-byte words. The byte loop below was a third of the time of a typical key.
  if (pos < value.size() && value.size() - pos < 8) {
    const size_t size = value.size();
    if (size >= 8) {
      uint64_t word;
      std::memcpy(&word, in + size - 8, 8);
      if (JsonEscapeMask(word) == 0) {
        std::memcpy(out - (pos - (size - 8)), &word, 8);
        return out + (size - pos);
      }
    } else if (size >= 4) {  // then pos == 0
      uint32_t head;
      uint32_t tail;
      std::memcpy(&head, in, 4);
      std::memcpy(&tail, in + size - 4, 4);
      if (JsonEscapeMask(head) == 0 && JsonEscapeMask(tail) == 0) {
        std::memcpy(out, &head, 4);
        std::memcpy(out + size - 4, &tail, 4);
        return out + size;
      }
    }
  }
  // Strings under 4 bytes and words with something to escape: a byte loop.
  for (; pos < value.size(); ++pos) {
    const unsigned char c = in[pos];
    if (kNeedsEscape[c]) {
      out = WriteEscape(out, c);
    } else {
      *out++ = static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

void JsonBuffer::Grow(size_t extra) {
  size_t capacity = storage_.empty() ? 1024 : storage_.size();
  while (capacity < size_ + extra) capacity *= 2;
  storage_.resize(capacity);
  data_ = storage_.data();
}

void JsonBuffer::AppendStringGeneral(std::string_view value) {
  Reserve(value.size() * 6 + 2);
  char* out = data_ + size_;
  *out++ = '"';
  out = CopyEscaped(out, value);
  *out++ = '"';
  size_ = static_cast<size_t>(out - data_);
}

void JsonBuffer::AppendInt(int64_t value) {
  Reserve(24);
  auto [end, ec] = std::to_chars(data_ + size_, data_ + size_ + 24, value);
  size_ = static_cast<size_t>(end - data_);
}

void JsonBuffer::AppendUint(uint64_t value) {
  Reserve(24);
  auto [end, ec] = std::to_chars(data_ + size_, data_ + size_ + 24, value);
  size_ = static_cast<size_t>(end - data_);
}

void JsonBuffer::AppendDouble(double value) {
  Reserve(32);
  auto [end, ec] = std::to_chars(data_ + size_, data_ + size_ + 32, value);
  size_ = static_cast<size_t>(end - data_);
}

size_t CodePointCount(std::string_view utf8) {
  size_t count = 0;
  for (char c : utf8) count += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return count;
}

std::string_view TruncateCodePoints(std::string_view utf8, size_t max_code_points) {
  size_t seen = 0;
  for (size_t byte_idx = 0; byte_idx < utf8.size(); ++byte_idx) {
    if ((static_cast<unsigned char>(utf8[byte_idx]) & 0xC0) == 0x80) continue;  // continuation byte
    if (seen == max_code_points) return utf8.substr(0, byte_idx);
    ++seen;
  }
  return utf8;
}

}  // namespace analytics::events
