// Timeline: the events of a question as per-user, time-ordered rows: what funnels, paths, experiments and
// retention cohorts read (docs/analysis.md).
//
// Rationale: behaviour analysis walks each user's events in time order. An EventStore adapter answers a
// TimelineQuery with the matching events of every user, sorted by (user, time); the analysis engines
// (query/funnel.h, ...) are then plain passes over one user's rows at a time, independent of the backend.
// A row says which of the query's selectors the event matches (a bit each), its type, the text of a few
// properties (hold_constant, breakdown, experiment and variant) as dictionary codes, and one number.
// Rows are built per source (a segment, the memtable) by TimelineBuilder, in read order, and joined by
// MergeTimelines: the embedded store caches the parts of immutable segments.
// Thread-safety: plain values; the functions are reentrant.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "query/aggregate.h"
#include "query/filter_expr.h"

namespace analytics::query {

inline constexpr uint32_t kMissingKey = std::numeric_limits<uint32_t>::max();
inline constexpr size_t kMaxTimelineSelectors = 32;

// Which events a selector picks: one of `event_types` (empty: any type) where `filter` holds.
struct TimelineSelector {
  std::vector<std::string> event_types;
  FilterExpr filter;
};

struct TimelineQuery {
  std::vector<TimelineSelector> selectors;  // 1 .. kMaxTimelineSelectors; an event is read when one matches
  FilterExpr filter;                        // must hold for every event read (request filters, viewer scope)
  std::vector<std::string> keys;            // property paths whose value each row carries as text
  std::string number_property;              // a property each row carries as a number ("": none)
  int64_t from_ms = std::numeric_limits<int64_t>::min();  // inclusive
  int64_t to_ms = std::numeric_limits<int64_t>::max();    // exclusive
  std::optional<UserScope> scope;  // only these users' events (a segment); unset: every user
  // Canonical text of everything but the time range (cache keys).
  std::string Fingerprint() const;
  // Every property path the query reads (filters, keys, number).
  std::vector<std::string> Paths() const;
  // The union of the selectors' types; empty when one selector takes any type.
  std::vector<std::string> EventTypes() const;
};

// The events a TimelineQuery reads. Events without a user are never read.
// Joined (MergeTimelines): rows sorted by user id, then time, then type name, then the key texts in key order
// (so equal timestamps have one documented order); `user_begin` delimits each user's rows.
// A part (TimelineBuilder::Finish): rows in read order, `user_begin` empty.
struct Timeline {
  std::vector<uint32_t> users;        // dense user ids (the store's; comparable with AggregateCell users)
  std::vector<int64_t> time_ms;
  std::vector<uint32_t> matches;      // bit i set: selector i holds for the event
  std::vector<uint32_t> types;        // index into type_names
  std::vector<std::string> type_names;  // joined: sorted, so comparing indexes compares names
  // keys[k][row]: index into key_values[k], kMissingKey when the property is missing or null. Texts follow
  // GroupKey's rules (query/aggregate.h): strings as they are, numbers as FormatNumber, true/false, arrays and
  // objects as compact JSON. Joined: key_values[k] sorted.
  std::vector<std::vector<uint32_t>> keys;
  std::vector<std::vector<std::string>> key_values;
  std::vector<double> numbers;        // with number_property: the value, NaN when it is not a number
  // Joined: the rows of the i-th user that has rows (ascending ids) are [user_begin[i], user_begin[i + 1]); its id
  // is users[user_begin[i]]. Size: such users + 1.
  std::vector<uint32_t> user_begin;
  int64_t newest_event_ms = std::numeric_limits<int64_t>::min();  // among the rows

  size_t rows() const { return time_ms.size(); }
  size_t user_count() const { return user_begin.empty() ? 0 : user_begin.size() - 1; }
  uint64_t MemoryBytes() const;
};

// Builds the part of one source from its batches, in read order.
class TimelineBuilder {
 public:
  explicit TimelineBuilder(const TimelineQuery& query);
  // Adds the rows of `batch` (holding the query's Paths()) that match a selector and the filter, whatever their time.
  void Add(const EventBatch& batch);
  // The part; the builder is spent.
  Timeline Finish();

 private:
  const TimelineQuery& query_;
  Timeline out_;
  std::map<std::string, uint32_t, std::less<>> type_index_;
  std::vector<std::map<std::string, uint32_t, std::less<>>> key_index_;
};

// Joins `parts` (TimelineBuilder's or joins, for the same query) into one Timeline of their rows in [from_ms,
// to_ms). Pass at least one part (an empty TimelineBuilder's) so that the result has the query's key columns.
// `threads`: sorting may use up to that many; the result does not depend on it.
Timeline MergeTimelines(const std::vector<const Timeline*>& parts, int64_t from_ms, int64_t to_ms,
                        size_t threads = 1);

}  // namespace analytics::query
