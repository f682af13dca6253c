// StoredEvent: a platform event after intake: validated against the catalog (docs/events.md), personal data
// treated (docs/events.md section 6), well-known fields extracted into typed columns. This is what the event
// store persists and what read-back returns. Raw personal data never appears in a StoredEvent.
// Thread-safety: plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace analytics::events {

struct StoredEvent {
  // Envelope.
  std::string id;           // CloudEvents id
  std::string source;       // CloudEvents source
  std::string type;         // CloudEvents type
  int64_t time_ms = 0;      // event time, Unix millis (UTC); the receive time when `time` was absent
  int64_t received_ms = 0;  // when intake accepted it
  bool time_defaulted = false;  // true when `time` was absent (flagged, spec of issue 3)

  // Typed columns (docs/events.md section 4). Empty string / nullopt = absent.
  std::string user;         // keyed pseudonym of the user (subject or data.user_id); empty: no user
  std::string game_id;
  std::string session_id;
  std::optional<double> amount;
  std::string currency;
  std::string country;
  std::string platform;

  // The whole `data` object after personal-data treatment, as compact JSON text ("" when the event had no
  // data). It still contains the well-known fields (with data.user_id replaced by the pseudonym), so every
  // property stays queryable by its path.
  std::string data;
  // Other envelope attributes kept for read-back (datacontenttype, dataschema, extension attributes) as a
  // compact JSON object, "" when none. `subject` is not kept here: it is `user`.
  std::string extensions;
  // Where the user came from, so read-back can rebuild the envelope: subject, data.user_id, or both.
  bool user_in_subject = false;
};

}  // namespace analytics::events
