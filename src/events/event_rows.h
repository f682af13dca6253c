// EventRows: a batch of events in the row format (docs/formats/events-row.md), the form intake hands events to
// the event store in: one buffer holding the batch header and every event's fields, and a view of each event
// in it. The buffer is a WAL record's payload as it stands, and the embedded store's memtable keeps it (shared)
// with the views, so an accepted event is written into memory once, by the normalizer.
//
// Rationale: as StoredEvents a batch cost ~7 allocations per event in the normalizer, a copy into the WAL
// record and the frees; here it is one buffer per request body.
// Building: Add events (views into anything; their bytes are copied), then Seal, which writes the header. A
// sealed batch is read with size/operator[]/begin/end/record; Replace and Subset give sealed batches too.
// (While building, the views of earlier rows follow the buffer when it grows.)
// Thread-safety: a plain value; a sealed batch may be read from several threads. The views point into the
// shared buffer: they stay valid as long as the EventRows or any holder of bytes() lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "events/event.h"

namespace analytics::events {

class EventRows {
 public:
  EventRows();
  EventRows(EventRows&&) = default;
  EventRows& operator=(EventRows&&) = default;
  // Copies would share the buffer an Add writes into: a copy is Subset of every event.
  EventRows(const EventRows&) = delete;
  EventRows& operator=(const EventRows&) = delete;
  // The events encoded and sealed.
  explicit EventRows(const std::vector<StoredEvent>& events);

  // Room for about `bytes` of rows and `events` events without moving the buffers.
  void Reserve(size_t bytes, size_t events);
  // Appends an event's row (its fields are copied; they must not point into this batch). Unseals the batch.
  void Add(const EventView& event);
  void Add(const StoredEvent& event) { Add(EventView::Of(event)); }
  // Writes the header and makes the views. Idempotent.
  void Seal();

  // ---- Sealed batches ----
  size_t size() const { return views_.size(); }
  bool empty() const { return views_.empty(); }
  const EventView& operator[](size_t index) const { return views_[index]; }
  std::vector<EventView>::const_iterator begin() const { return views_.begin(); }
  std::vector<EventView>::const_iterator end() const { return views_.end(); }
  const std::vector<EventView>& views() const { return views_; }
  // The header and every row: a WAL record's payload.
  std::string_view record() const;
  // The buffer and the views into it, moved out for a holder that outlives this object (the memtable); the
  // views stay valid while the buffer is held. The batch is left empty.
  struct Released {
    std::shared_ptr<const std::string> bytes;
    std::vector<EventView> views;
  };
  Released Release() &&;
  // Memory held: the buffer's capacity and the views'.
  size_t MemoryBytes() const;

  // Events replaced: each (index, event) pair, indexes ascending (the batch is rebuilt once; for the rare
  // events intake rewrites).
  void Replace(const std::vector<std::pair<size_t, EventView>>& replacements);
  // The events whose `keep` entry is true, in order (their rows copied).
  EventRows Subset(const std::vector<bool>& keep) const;

  // A copy of `record` (a WAL record's payload), sealed. Corruption when it does not decode exactly.
  static common::Result<EventRows> Decode(std::string_view record);
  // Views of the events of `record`, appended to `out`; they point into `record`. Corruption when it does not
  // decode exactly; `out` is then unchanged.
  static common::Status DecodeViews(std::string_view record, std::vector<EventView>& out);

 private:
  std::shared_ptr<std::string> bytes_;  // [the header, right-aligned in its room][rows]
  size_t header_start_ = 0;             // where the header starts in bytes_ (once sealed)
  size_t count_ = 0;                    // rows in bytes_
  bool sealed_ = false;
  std::vector<EventView> views_;        // one per row, into bytes_
  uintptr_t views_base_ = 0;            // bytes_->data() when views_ were last made to point into it

  // Moves the views to the buffer's current place (after it grew or shrank).
  void Rebase();
};

}  // namespace analytics::events
