// StoredEvent: a platform event after intake: validated against the catalog (docs/events.md), personal data
// treated (docs/events.md section 6), well-known fields extracted into typed columns. This is what the event
// store persists and what read-back returns. Raw personal data never appears in a StoredEvent.
// Thread-safety: plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// The same fields, not owned: a StoredEvent seen in place, e.g. in a memtable batch's row-format bytes
// (events/event_rows.h), which hold the events the store has not flushed yet. Valid while what it
// points into is; `ToStored` copies it out.
struct EventView {
  std::string_view id;
  std::string_view source;
  std::string_view type;
  int64_t time_ms = 0;
  int64_t received_ms = 0;
  bool time_defaulted = false;
  std::string_view user;
  std::string_view game_id;
  std::string_view session_id;
  std::optional<double> amount;
  std::string_view currency;
  std::string_view country;
  std::string_view platform;
  std::string_view data;
  std::string_view extensions;
  bool user_in_subject = false;

  static EventView Of(const StoredEvent& event) {
    return {event.id,         event.source,  event.type,     event.time_ms,  event.received_ms,
            event.time_defaulted, event.user, event.game_id, event.session_id, event.amount,
            event.currency,   event.country, event.platform, event.data,     event.extensions,
            event.user_in_subject};
  }
  StoredEvent ToStored() const {
    return {std::string(id),       std::string(source),   std::string(type),    time_ms,
            received_ms,           time_defaulted,        std::string(user),    std::string(game_id),
            std::string(session_id), amount,              std::string(currency), std::string(country),
            std::string(platform), std::string(data),     std::string(extensions), user_in_subject};
  }
};

// Views of owned events and pointers to the views, for code that reads rows as `const EventView*` (the segment
// writer, the columns of decoded events). Valid while `events` is; neither copied nor moved (the pointers
// point into `views`).
struct EventViews {
  explicit EventViews(const std::vector<StoredEvent>& events) {
    views.reserve(events.size());
    for (const StoredEvent& event : events) views.push_back(EventView::Of(event));
    pointers.reserve(views.size());
    for (const EventView& view : views) pointers.push_back(&view);
  }
  EventViews(const EventViews&) = delete;
  EventViews& operator=(const EventViews&) = delete;

  std::vector<EventView> views;
  std::vector<const EventView*> pointers;
};

}  // namespace analytics::events
