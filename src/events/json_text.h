// Small JSON text helpers shared by the intake writers: a JSON output buffer (string escaping, numbers),
// and UTF-8 code point counting and truncation. Output is compact JSON (no spaces), the form StoredEvent
// keeps.
// Thread-safety: JsonBuffer is a plain value (one per thread or call); the functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace analytics::events {

// Nonzero when a byte of `word` (8 or 4 bytes of text) may need an escape in a JSON string: it is < 0x20, or
// zero after an xor (equal to '"' or '\\'). Bytes >= 0x80 (UTF-8) never are flagged; a borrow can flag a
// clean byte next to a flagged one, which only sends the text to a slower exact path.
template <typename Word>
constexpr Word JsonEscapeMask(Word word) {
  constexpr Word kOnes = static_cast<Word>(0x0101010101010101ULL);
  constexpr Word kHighs = static_cast<Word>(0x8080808080808080ULL);
  const Word quotes = word ^ static_cast<Word>(kOnes * '"');
  const Word backslashes = word ^ static_cast<Word>(kOnes * '\\');
  return ((word - kOnes * 0x20) | (quotes - kOnes) | (backslashes - kOnes)) & ~word & kHighs;
}

// Append-only text buffer for building JSON. It keeps its memory between uses (Clear keeps the capacity),
// so one buffer per thread writes every event without allocating; the result is copied out once.
// Rationale: writing an event's data through std::string::push_back/append cost ~4 times more
// instructions (a capacity check and an out-of-line call per piece).
class JsonBuffer {
 public:
  JsonBuffer() { Grow(1024); }
  JsonBuffer(const JsonBuffer&) = delete;  // data_ points into storage_
  JsonBuffer& operator=(const JsonBuffer&) = delete;

  void Clear() { size_ = 0; }
  std::string_view view() const { return {data_, size_}; }
  size_t size() const { return size_; }

  void Put(char c) {
    Reserve(1);
    data_[size_++] = c;
  }
  void Append(std::string_view text) {
    Reserve(text.size());
    std::memcpy(data_ + size_, text.data(), text.size());
    size_ += text.size();
  }
  // `value` as a JSON string literal (with quotes). `value` must be valid UTF-8 (simdjson validated it):
  // only '"', '\\' and control characters are escaped; everything else is copied as is.
  // Inline for 4-16 bytes with nothing to escape (most member names and short values: "platform",
  // "game_1001"): two overlapping words cover the string, and the call and the general path's setup cost as
  // much as the copy. Everything else takes the general path.
  void AppendString(std::string_view value) {
    const size_t length = value.size();
    if (length >= 8 && length <= 16) {
      if (AppendShortClean<uint64_t>(value)) return;
    } else if (length >= 4 && length < 8) {
      if (AppendShortClean<uint32_t>(value)) return;
    }
    AppendStringGeneral(value);
  }
  void AppendInt(int64_t value);
  void AppendUint(uint64_t value);
  // Shortest text that reads back as the same double ("1049.3", "499", "1e+21").
  void AppendDouble(double value);

 private:
  void Reserve(size_t extra) {
    if (size_ + extra > storage_.size()) Grow(extra);
  }
  void Grow(size_t extra);
  void AppendStringGeneral(std::string_view value);

  // `value` holds sizeof(Word) to 2 * sizeof(Word) bytes: appended quoted when none needs an escape (a head
  // and a tail word, overlapping), else nothing is written and false returned.
  template <typename Word>
  bool AppendShortClean(std::string_view value) {
    const size_t length = value.size();
    Word head;
    Word tail;
    std::memcpy(&head, value.data(), sizeof(Word));
    std::memcpy(&tail, value.data() + length - sizeof(Word), sizeof(Word));
    if ((JsonEscapeMask(head) | JsonEscapeMask(tail)) != 0) return false;
    Reserve(length + 2);
    char* out = data_ + size_;
    out[0] = '"';
    std::memcpy(out + 1, &head, sizeof(Word));
    std::memcpy(out + 1 + length - sizeof(Word), &tail, sizeof(Word));
    out[length + 1] = '"';
    size_ += length + 2;
    return true;
  }

  std::string storage_;  // its size() is the capacity; bytes [0, size_) hold the text
  char* data_ = nullptr;
  size_t size_ = 0;
};

// Number of Unicode code points in valid UTF-8 text (the unit of every "at most N characters" rule).
size_t CodePointCount(std::string_view utf8);

// The longest prefix of `utf8` with at most `max_code_points` code points (never splits a code point).
std::string_view TruncateCodePoints(std::string_view utf8, size_t max_code_points);

}  // namespace analytics::events
