// Splitting an intake request body into events (docs/events.md section 1): one CloudEvent, a JSON array of
// CloudEvents, or NDJSON. Splitting checks the body's framing only (the array's brackets and commas, NDJSON
// lines); each event's own JSON is parsed later, one event at a time, by the Normalizer with simdjson.
//
// Body-level failures (the request cannot be read as events at all) become a BodyError with the byte
// offset of the problem; per-event failures never do:
//  - kSingle / kBatch: the body must be well-formed JSON. A syntax error anywhere, including inside one
//    element of the array, fails the whole body (nothing is accepted).
//  - kNdjson: every non-blank line is one event. A line that is not JSON is rejected on its own
//    (MALFORMED_EVENT) and the other lines are processed; NDJSON bodies never fail as a whole.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace analytics::events {

enum class BodyFormat {
  kSingle,  // application/cloudevents+json or application/json: one object (an array is accepted too)
  kBatch,   // application/cloudevents-batch+json: a JSON array of objects
  kNdjson,  // application/x-ndjson: one object per non-blank line; "\r\n" line ends accepted
};

// Maps a Content-Type header value (parameters and case ignored) to a format; nullopt when unsupported.
std::optional<BodyFormat> BodyFormatFromContentType(std::string_view content_type);

std::string_view BodyFormatName(BodyFormat format);

// A body that cannot be split into events.
struct BodyError {
  size_t byte_offset = 0;  // 0-based offset in the body where the problem was found
  std::string message;     // never quotes body content
  // InvalidArgument("malformed request body at byte <offset>: <message>").
  common::Status ToStatus() const;
};

// One event's text inside the body.
struct RawEvent {
  uint32_t index = 0;      // position in the batch: array element index, or NDJSON non-blank line number
  size_t byte_offset = 0;  // where `text` starts in the body
  std::string_view text;   // a view into the body, surrounding whitespace removed
};

struct BodySplit {
  std::vector<RawEvent> events;
  std::optional<BodyError> error;  // set: `events` is empty and the body is rejected as a whole
};

// Splits `body`. A leading UTF-8 byte order mark is ignored. An empty array and an NDJSON body without a
// non-blank line give no events and no error; an empty kSingle/kBatch body is an error.
BodySplit SplitBody(std::string_view body, BodyFormat format);

// Finds the first JSON syntax error in `text` (one JSON value, whitespace around it allowed) with its byte
// offset, or nullopt when `text` is well-formed JSON. Slow path (nlohmann SAX): call it after a fast parser
// failed, to explain where.
std::optional<BodyError> FindJsonSyntaxError(std::string_view text);

}  // namespace analytics::events
