// Body splitting and syntax-error location; see event_parser.h.
#include "events/event_parser.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <nlohmann/json.hpp>

namespace analytics::events {
namespace {

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";
// Typical events are 200-1000 bytes: reserving for 256-byte events avoids regrowing the events vector.
constexpr size_t kTypicalEventBytes = 256;

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t SkipSpace(std::string_view body, size_t pos) {
  while (pos < body.size() && IsJsonSpace(body[pos])) ++pos;
  return pos;
}

// `pos` is just after an opening quote; returns the position after the closing quote, or npos.
size_t SkipString(std::string_view body, size_t pos) {
  const size_t string_start = pos;
  while (pos < body.size()) {
    const void* quote = std::memchr(body.data() + pos, '"', body.size() - pos);
    if (quote == nullptr) return std::string_view::npos;
    const size_t quote_pos = static_cast<const char*>(quote) - body.data();
    size_t backslashes = 0;
    while (quote_pos - backslashes > string_start && body[quote_pos - backslashes - 1] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return quote_pos + 1;
    pos = quote_pos + 1;
  }
  return std::string_view::npos;
}

// Framing state of a container scan: bracket depth, inside a string or not, and the position of a character
// escaped by a backslash (skipped).
struct FrameScanner {
  size_t depth = 0;
  bool in_string = false;
  size_t escaped_at = std::string_view::npos;

  // Feeds one of  " \\ { } [ ]  at `at`; true when the outermost container closes there.
  bool Feed(char c, size_t at) {
    if (at == escaped_at) return false;
    if (in_string) {
      if (c == '\\') {
        escaped_at = at + 1;
      } else if (c == '"') {
        in_string = false;
      }
      return false;
    }
    switch (c) {
      case '"': in_string = true; return false;
      case '{':
      case '[': ++depth; return false;
      case '}':
      case ']': return --depth == 0;
      default: return false;
    }
  }
};

bool IsFramingChar(char c) { return c == '"' || c == '\\' || c == '{' || c == '}' || c == '[' || c == ']'; }

// `pos` is at '{' or '['; returns the position after the matching bracket, or npos when the body ends first.
// Framing only: whatever is between is checked by the event's parser. SSE2 finds the few framing characters
// 16 bytes at a time; splitting must stay cheap next to parsing.
size_t ScanContainer(std::string_view body, size_t pos) {
  const char* data = body.data();
  FrameScanner scanner;
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i open_brace = _mm_set1_epi8('{');
  const __m128i close_brace = _mm_set1_epi8('}');
  const __m128i open_bracket = _mm_set1_epi8('[');
  const __m128i close_bracket = _mm_set1_epi8(']');
  for (; pos + 16 <= body.size(); pos += 16) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + pos));
    const __m128i strings = _mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash));
    const __m128i braces = _mm_or_si128(_mm_cmpeq_epi8(chunk, open_brace), _mm_cmpeq_epi8(chunk, close_brace));
    const __m128i brackets = _mm_or_si128(_mm_cmpeq_epi8(chunk, open_bracket), _mm_cmpeq_epi8(chunk, close_bracket));
    auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(strings, _mm_or_si128(braces, brackets))));
    while (mask != 0) {
      const size_t at = pos + static_cast<size_t>(__builtin_ctz(mask));
      mask &= mask - 1;
      if (scanner.Feed(data[at], at)) return at + 1;
    }
  }
#endif
  for (; pos < body.size(); ++pos) {
    if (IsFramingChar(data[pos]) && scanner.Feed(data[pos], pos)) return pos + 1;
  }
  return std::string_view::npos;
}

// Returns the end of the JSON value starting at `pos` (framing only: brackets balanced, strings closed), or
// npos when the body ends first. Scalars run to the next structural character or whitespace.
size_t ScanValue(std::string_view body, size_t pos) {
  const char first = body[pos];
  if (first == '"') return SkipString(body, pos + 1);
  if (first == '{' || first == '[') return ScanContainer(body, pos);
  while (pos < body.size()) {
    const char c = body[pos];
    if (IsJsonSpace(c) || c == ',' || c == ']' || c == '}' || c == '[' || c == '{' || c == '"' || c == ':') break;
    ++pos;
  }
  return pos;
}

std::string_view TrimRight(std::string_view text) {
  while (!text.empty() && IsJsonSpace(text.back())) text.remove_suffix(1);
  return text;
}

BodySplit Fail(std::string_view body, size_t offset, std::string message) {
  BodySplit split;
  // Prefer the first real syntax error in document order when there is one: the framing scan stops at the
  // first thing it cannot frame, which may come after an earlier broken element.
  if (auto syntax = FindJsonSyntaxError(body)) {
    split.error = std::move(syntax);
  } else {
    split.error = BodyError{offset, std::move(message)};
  }
  return split;
}

// `pos` is at '['.
BodySplit SplitArray(std::string_view body, size_t pos) {
  BodySplit split;
  split.events.reserve(body.size() / kTypicalEventBytes + 1);
  pos = SkipSpace(body, pos + 1);
  if (pos < body.size() && body[pos] == ']') {
    pos = SkipSpace(body, pos + 1);
    if (pos != body.size()) return Fail(body, pos, "unexpected data after the array");
    return split;
  }
  while (true) {
    if (pos >= body.size()) return Fail(body, pos, "unexpected end of body: expected an array element");
    const char c = body[pos];
    if (c == ',' || c == ']' || c == '}' || c == ':') return Fail(body, pos, "expected an array element");
    const size_t end = ScanValue(body, pos);
    if (end == std::string_view::npos) return Fail(body, body.size(), "unexpected end of body inside an element");
    split.events.push_back(
        RawEvent{static_cast<uint32_t>(split.events.size()), pos, body.substr(pos, end - pos)});
    pos = SkipSpace(body, end);
    if (pos >= body.size()) return Fail(body, pos, "unexpected end of body: expected ',' or ']'");
    if (body[pos] == ',') {
      pos = SkipSpace(body, pos + 1);
      continue;
    }
    if (body[pos] != ']') return Fail(body, pos, "expected ',' or ']' after an array element");
    pos = SkipSpace(body, pos + 1);
    if (pos != body.size()) return Fail(body, pos, "unexpected data after the array");
    return split;
  }
}

BodySplit SplitNdjson(std::string_view body, size_t pos) {
  BodySplit split;
  split.events.reserve(body.size() / kTypicalEventBytes + 1);
  while (pos < body.size()) {
    const void* newline = std::memchr(body.data() + pos, '\n', body.size() - pos);
    const size_t line_end = newline ? static_cast<size_t>(static_cast<const char*>(newline) - body.data())
                                    : body.size();
    const size_t start = SkipSpace(body.substr(0, line_end), pos);  // also drops a lone '\r'
    const std::string_view text = TrimRight(body.substr(start, line_end - start));
    if (!text.empty()) {
      split.events.push_back(RawEvent{static_cast<uint32_t>(split.events.size()), start, text});
    }
    pos = line_end + 1;
  }
  return split;
}

// Records the first error and stops; accepts everything else.
class ErrorLocator : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    error_ = BodyError{position > 0 ? position - 1 : 0, Describe(ex)};
    return false;
  }

  std::optional<BodyError>& error() { return error_; }

 private:
  // nlohmann's text quotes the input ("last read: '...'"); keep only its fixed description.
  static std::string Describe(const nlohmann::detail::exception& ex) {
    if (ex.id == 406) return "malformed JSON: number out of range";
    std::string_view what = ex.what();
    const size_t dash = what.find(" - ");
    if (dash == std::string_view::npos) return "malformed JSON";
    std::string_view detail = what.substr(dash + 3);
    detail = detail.substr(0, detail.find("; "));
    return "malformed JSON: " + std::string(detail);
  }

  std::optional<BodyError> error_;
};

}  // namespace

std::optional<BodyFormat> BodyFormatFromContentType(std::string_view content_type) {
  std::string media;
  for (char c : content_type.substr(0, content_type.find(';'))) {
    if (c == ' ' || c == '\t') continue;
    media.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  if (media == "application/cloudevents+json" || media == "application/json") return BodyFormat::kSingle;
  if (media == "application/cloudevents-batch+json") return BodyFormat::kBatch;
  if (media == "application/x-ndjson") return BodyFormat::kNdjson;
  return std::nullopt;
}

std::string_view BodyFormatName(BodyFormat format) {
  switch (format) {
    case BodyFormat::kSingle: return "single";
    case BodyFormat::kBatch: return "batch";
    case BodyFormat::kNdjson: return "ndjson";
  }
  return "unknown";
}

common::Status BodyError::ToStatus() const {
  return common::Status::InvalidArgument("malformed request body at byte " + std::to_string(byte_offset) + ": " +
                                         message);
}

BodySplit SplitBody(std::string_view body, BodyFormat format) {
  size_t pos = body.substr(0, kUtf8Bom.size()) == kUtf8Bom ? kUtf8Bom.size() : 0;
  if (format == BodyFormat::kNdjson) return SplitNdjson(body, pos);

  pos = SkipSpace(body, pos);
  if (pos == body.size()) return Fail(body, pos, "empty body: expected JSON");
  if (body[pos] == '[') return SplitArray(body, pos);
  if (format == BodyFormat::kSingle && body[pos] == '{') {
    BodySplit split;
    split.events.push_back(RawEvent{0, pos, TrimRight(body.substr(pos))});
    return split;
  }
  return Fail(body, pos,
              format == BodyFormat::kBatch ? "expected a JSON array of events"
                                           : "expected a JSON object (one event) or an array of events");
}

std::optional<BodyError> FindJsonSyntaxError(std::string_view text) {
  ErrorLocator locator;
  // The BOM is skipped by nlohmann as well; offsets stay relative to `text`.
  nlohmann::json::sax_parse(text.begin(), text.end(), &locator, nlohmann::json::input_format_t::json,
                            /*strict=*/true);
  return std::move(locator.error());
}

}  // namespace analytics::events
