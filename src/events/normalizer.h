// Normalizer: the intake's front half. Takes a request body, splits it into CloudEvents, validates each one
// against docs/events.md, treats personal data and returns the accepted events in the row format (EventRows,
// ready for dedup and the event store)
// plus one Rejection per refused event (ready for dead letters).
//
// Rationale: parsing, validation and treatment run in one pass per event over one simdjson DOM, so an event
// is read once; the budget is about 1 us per typical 300-byte event on one core. Events are parsed where they
// lie in the body (the bytes that follow an event serve as simdjson's padding); only the last event of a
// body is copied into the parser's padded buffer.
// Concurrency: Process is const and thread-safe (HTTP handler threads share one Normalizer); each thread
// keeps its own simdjson parser. The Pseudonymizer must outlive the Normalizer.
// Limitations: deduplication by (source, id) and the erasure of deleted users happen later in the intake
// pipeline (src/ingest), not here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "events/event.h"
#include "events/event_rows.h"
#include "events/event_parser.h"
#include "events/pseudonymizer.h"
#include "events/rejection.h"

namespace analytics::events {

struct NormalizerOptions {
  // An event whose `time` is further ahead of the intake clock than this is rejected (EVENT_IN_FUTURE).
  // Default: 1 hour (docs/events.md section 2). Late events are always accepted.
  int64_t max_future_ms = 3600000;
  // Reject types that match the naming pattern but are not in the catalog (UNKNOWN_EVENT_TYPE). Default:
  // off, such types are stored as generic events.
  bool strict_types = false;
  // Largest accepted event, in bytes of its JSON text in the body (EVENT_TOO_LARGE). Default: 256 KiB.
  size_t max_event_bytes = 262144;
};

struct BatchResult {
  EventRows events;                      // accepted events, in batch order (sealed)
  std::vector<uint32_t> event_indexes;   // parallel to `events`: each event's index in the batch
  std::vector<Rejection> rejections;     // refused events, in batch order
  std::optional<BodyError> body_error;   // set: the body was refused as a whole; events/rejections empty
};

class Normalizer {
 public:
  Normalizer(NormalizerOptions options, const Pseudonymizer& pseudonymizer);

  // Processes one request body received at `now_ms` (Unix millis: received_ms of every event, the time of
  // events without `time`, the reference for EVENT_IN_FUTURE). Every event ends up in exactly one of
  // `events` and `rejections` unless the body fails as a whole (see event_parser.h for which failures do).
  // One bad event never affects its neighbours. Raw personal data appears in no output.
  BatchResult Process(std::string_view body, BodyFormat format, int64_t now_ms) const;

  // Replays a dead letter: `payload` is a Rejection::payload this Normalizer (same key) wrote, i.e. an event
  // already treated. Same as Process(payload, kSingle, now_ms) except that values under hashed names
  // (device_id, anonymous_id) are kept instead of being hashed twice; pseudonyms pass through in both. The
  // resulting StoredEvent equals the one the original event would have given. Never call it with producer
  // input: hashed fields would be stored as sent.
  BatchResult ProcessTreated(std::string_view payload, int64_t now_ms) const;

  // Processes events the caller has already separated (Kafka messages): each record is one event, treated
  // like an NDJSON line (a record that is not JSON is rejected on its own, nothing fails as a whole), with
  // Rejection/`event_indexes` index = the record's `index`. The records' texts must lie inside `buffer` (its
  // bytes after a record serve as simdjson padding); rejection messages give byte offsets within the record.
  BatchResult ProcessRecords(std::string_view buffer, std::span<const RawEvent> records, int64_t now_ms) const;

  const NormalizerOptions& options() const { return options_; }

 private:
  BatchResult ProcessBody(std::string_view body, BodyFormat format, int64_t now_ms, bool already_treated) const;
  BatchResult ProcessEvents(std::string_view body, std::span<const RawEvent> raw_events, bool body_must_be_json,
                            bool separate_records, int64_t now_ms, bool already_treated) const;

  NormalizerOptions options_;
  const Pseudonymizer& pseudonymizer_;
};

}  // namespace analytics::events
