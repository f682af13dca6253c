// EventStore: the port through which the service stores events and reads them back.
//
// Adapters: embedded/ (the default: WAL + in-memory part + immutable columnar segments in the data dir) and,
// in a later release, clickhouse/. Application code depends only on this interface; src/app picks one.
// Contract shared by every adapter (one contract suite runs against each):
//  - Append is atomic per event and durable on return: an event it reports as accepted survives kill -9.
//  - Deduplication on (source, id) over the configured window, surviving restarts: a repeat is reported as a
//    duplicate and not stored again.
//  - Events of an erased user are never returned again; new events of an erased user are refused until
//    AllowUser (the user registered again).
// Thread-safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "events/event.h"
#include "events/event_rows.h"
#include "query/aggregate.h"
#include "query/sessions.h"
#include "query/timeline.h"

namespace analytics::store {

enum class AppendOutcome : uint8_t { kStored, kDuplicate, kUserErased };

struct AppendResult {
  std::vector<AppendOutcome> outcomes;  // one per input event, in order
  std::vector<std::string> erased_ids;  // the ids of the kUserErased events, in order
  uint64_t stored = 0;
  uint64_t duplicates = 0;
  uint64_t erased = 0;
};

// Raw read-back (debugging and tests). Results are ordered by (time, id); the cursor continues after the last
// returned event.
struct ScanQuery {
  std::optional<std::string> type;
  std::optional<std::string> user;   // pseudonym
  int64_t from_ms = INT64_MIN;       // inclusive
  int64_t to_ms = INT64_MAX;         // exclusive
  size_t limit = 100;
  std::string cursor;                // opaque; empty = from the start
};

struct ScanResult {
  std::vector<events::StoredEvent> events;
  std::string next_cursor;  // empty when there is nothing more
};

class EventStore {
 public:
  virtual ~EventStore() = default;

  // Stores `batch` (sealed) durably (see the contract above). IOError when the data cannot be made durable;
  // then no event of the batch was acknowledged and the store refuses further appends until restarted.
  virtual common::Result<AppendResult> Append(events::EventRows batch) = 0;
  // The same for owned events (encoded first).
  common::Result<AppendResult> Append(const std::vector<events::StoredEvent>& batch) {
    return Append(events::EventRows(batch));
  }

  // InvalidArgument for a malformed cursor.
  virtual common::Result<ScanResult> Scan(const ScanQuery& query) = 0;

  // The cells of `query` over every stored event, memory and disk (query/aggregate.h, docs/metrics.md).
  // Events past retention and erased users' events are never read.
  // Shared and immutable: an adapter may hand out a result it keeps (a cached answer).
  virtual common::Result<std::shared_ptr<const query::AggregateResult>> Aggregate(const query::AggregateQuery& query) = 0;
  // The sessions `query` reads, paired (query::SessionQuery, docs/metrics.md section 3 peak_concurrent), grouped
  // by their start event, as query::PairDays joins them. Events past retention and erased users' events are
  // never read.
  virtual common::Result<query::PairedSessions> Sessions(const query::SessionQuery& query) = 0;
  // The events `query` reads as per-user, time-ordered rows (query/timeline.h): what funnels, paths, experiments
  // and retention cohorts walk. Events past retention and erased users' events are never read. Shared and
  // immutable (an adapter may hand out a result it keeps).
  virtual common::Result<std::shared_ptr<const query::Timeline>> ReadTimeline(const query::TimelineQuery& query) = 0;
  // Scopes: a query with `scope` set (query::UserScope) reads only the events of the users in scope->users;
  // events without a user never match a scope. Cached answers are keyed by the scope's fingerprint, never shared
  // between scopes or with the unscoped query.
  //
  // Dense user ids (the ids of Timeline::users and AggregateCell users; query::UserScope takes them), stable for
  // the life of the store object. UserIds gives the ids of `users` (pseudonyms), registering unknown ones ("" →
  // query::kNoUser); UserNames the pseudonyms of `ids` ("" for an id the store never gave out).
  virtual common::Result<std::vector<uint32_t>> UserIds(const std::vector<std::string>& users) = 0;
  virtual common::Result<std::vector<std::string>> UserNames(const std::vector<uint32_t>& ids) = 0;
  // The event time of the newest stored event (Unix ms), INT64_MIN when there is none.
  virtual int64_t NewestEventMs() = 0;

  // Removes every event of `user` (pseudonym) from every part of the store and refuses new ones until
  // AllowUser. Returns how many events were removed; with `count_events` false (the intake of an
  // account-deleted event, where nobody reads the number) it may skip counting and return 0.
  virtual common::Result<uint64_t> EraseUser(const std::string& user, bool count_events = true) = 0;
  // Lifts the refusal of EraseUser (the user registered again).
  virtual common::Status AllowUser(const std::string& user) = 0;

  // Component readiness and numbers for /readyz and /metrics.
  virtual common::Status Ping() = 0;
  virtual nlohmann::json Stats() = 0;
};

}  // namespace analytics::store
