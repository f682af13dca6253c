// EvaluateRule: the users satisfying a segment rule (segments/rule.h) at an evaluation time, from the event store.
//
// Rationale: every condition on a user's events is a property of the user's time-ordered rows, so the evaluator
// reads few Timelines (query/timeline.h): one per distinct start of the conditions' windows (so that a 7-day
// condition does not walk the rows of a 30-day one) and, among those, per distinct number property of the aggregate
// conditions (a timeline carries one number); each event condition is a selector of one of them (at most 32 a
// timeline, more timelines when there are more), user_property conditions ride along as keys. Each timeline is
// walked once, user by user and row by row, in parallel chunks of users, updating a small fixed state per
// condition; a condition's users come out in id order and become a bitmap of store ids.
// Conditions that hold for users without any matching event (count lte/lt/eq with 0 allowed, not_performed, not)
// are computed as complements: a node evaluates to (bitmap, negated) and and/or combine with De Morgan, so only a
// negated answer at the top needs the universe.
//
// Semantics (beyond rule.h):
// - The universe: the users with an event at or before as_of, plus the members of every segment the rule names.
//   A negated answer is the universe minus the bitmap; so "not in_segment X" is every other user with events.
// - Every condition sees only events with time <= as_of, in the store's retention, not of erased users.
// - performed: users with no matching event count 0. aggregate: the function over the matching events whose
//   property is a number (sum, avg = sum / count, min, max, count of such events); users without one have no value
//   and never match. first/last_performed: users without a matching event never match.
// - user_property: the latest non-null value of the property among the user's events up to as_of (any type): the
//   greatest (time, type name, value text); when events tie on all three (e.g. "1" and 1), the condition holds when
//   it holds for one of them. Users without a value never match.
// - Windows: within_days N is [the zone's local midnight starting date(as_of) - (N - 1), as_of] (the first instant
//   at or after it when DST skips midnight); between [from, to); before t < ts; after t >= ts.
// Thread-safety: EvaluateRule is reentrant; it may use up to ctx.threads threads; its answer does not depend on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "query/time_grid.h"
#include "query/user_scope.h"
#include "segments/rule.h"
#include "store/event_store.h"

namespace analytics::segments {

struct EvalContext {
  int64_t as_of_ms = 0;                            // evaluation time, inclusive: events with time <= as_of_ms only
  query::TimeZone zone = query::TimeZone::Utc();   // within_days calendar days
  // Members of another segment as store ids (in_segment). Its errors (NotFound for an unknown id) propagate as
  // they are. Called once per distinct id.
  std::function<common::Result<std::shared_ptr<const query::Roaring>>(const std::string& segment_id)> segment_members;
  std::optional<query::UserScope> scope;  // when set, evaluate only these users; the result is a subset
  size_t threads = 0;                     // 0: hardware concurrency (store reads and walks)
  // Parallel walks: users per work item, and the users (walks by runs) or rows (row by row) that make another
  // thread worth starting. 0: the defaults (16384, 262144). Tests set small values to run the parallel path on
  // small data.
  size_t users_per_chunk = 0;
  size_t work_per_thread = 0;
};

struct EvalStats {
  size_t timelines = 0;      // timelines read
  size_t rows = 0;           // their rows
  size_t users_scanned = 0;  // their users (a user counts once per timeline)
  size_t counted_by_runs = 0;  // timelines whose conditions were counted from each user's run of rows, not row by row
  double read_ms = 0;        // reading the timelines (the store's cache makes a repeat cheap)
  double walk_ms = 0;        // walking them
  double combine_ms = 0;     // and/or/not on the conditions' bitmaps (with the universe when the top is negated)
};

// The store ids of the users satisfying `rule` at ctx.as_of_ms. Errors: the store's, segment_members' (as they
// are), FailedPrecondition when the rule uses in_segment and ctx.segment_members is unset, InvalidArgument for a
// hand-built Rule of the wrong shape (a not without its child, an empty and/or; ParseRule never makes one).
common::Result<query::Roaring> EvaluateRule(const Rule& rule, store::EventStore& store, const EvalContext& ctx,
                                            EvalStats* stats = nullptr);

}  // namespace analytics::segments
