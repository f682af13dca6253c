// Rejection: why one event of a batch was refused, with the event after personal-data treatment for the
// dead-letter queue. The codes are stable (documented in docs/intake.md); producers and the dead-letter API
// branch on them.
// Thread-safety: plain values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace analytics::events {

enum class RejectionCode {
  kMalformedEvent,     // not JSON (an NDJSON line), JSON that is not an object, or unsupported JSON (huge ints)
  kEventTooLarge,      // the event's JSON text is longer than NormalizerOptions::max_event_bytes
  kMissingAttribute,   // a required envelope attribute is absent (or null); also a required user
  kInvalidAttribute,   // an envelope attribute breaks its rule; unknown or duplicate top-level member
  kMissingField,       // a required `data` field is absent (or null), including conditional requirements
  kInvalidField,       // a `data` field has the wrong JSON type, format, enum value or range
  kUnknownEventType,   // the type matches the pattern but is not catalogued, and strict_types is set
  kEventInFuture,      // `time` is more than max_future_ms ahead of the intake clock
};

// "MALFORMED_EVENT", "EVENT_TOO_LARGE", ...
std::string_view RejectionCodeName(RejectionCode code);
std::optional<RejectionCode> RejectionCodeFromName(std::string_view name);

struct Rejection {
  uint32_t index = 0;        // position of the event in the batch (NDJSON: among non-blank lines)
  size_t byte_offset = 0;    // where the event's text starts in the body
  size_t event_bytes = 0;    // size of the event's JSON text
  std::string id;            // CloudEvents id when readable as a string ("" otherwise), cut to 256 bytes
  std::string type;          // likewise, cut to 256 bytes
  std::string source;        // likewise, cut to 512 bytes
  RejectionCode code = RejectionCode::kMalformedEvent;
  std::string field;         // JSON path of the offending member: "time", "data.amount", "data.items[2].x"
  std::string message;       // for humans; never contains field values
  // The event as compact JSON after personal-data treatment (docs/events.md section 6), for dead letters.
  // Empty when the event is not a JSON object or is too large (then only event_bytes is kept).
  std::string payload;
};

}  // namespace analytics::events
