// Funnels over a Timeline: how many users go through a sequence of steps within a conversion window, and how
// long they take (docs/analysis.md, funnels).
//
// Rationale: a funnel is a pass over each user's time-ordered rows (query/timeline.h). The rows of one user are
// split into "pairs" (the user and one tuple of held property values, `hold_constant`); each pair makes
// attempts (one from its first entry event, or one from every entry event) and keeps its best; a user counts at
// step k when any of their pairs' best attempts reaches step k. Users are independent: they are handed out to
// threads in chunks, and what a chunk adds (counts, durations that are sorted at the end, with collect_users the
// users as bitmaps that are united) does not depend on how the users were split, so the result does not depend on
// the thread count.
// Cost: linear in the rows for first_touch: ordered first_touch without exclusions (the common question) advances
// every pair's attempt as the user's rows stream by, without branches on the data; the other modes gather each
// pair's rows (a counting sort) and evaluate attempts on them. any_touch adds per entry event O(steps) (ordered,
// with per-pair "next event of step k" tables), the skipped non-step rows (strict) or, for any_order, a sliding
// window that skips attempts which cannot beat the pair's best so far. Measured on the generator's 10M events (the
// benchmark's 3-step funnel held on game_id: 3.3M rows, 1.1M pairs): about 10 ns a row on one core. No allocation
// per row: per-thread buffers are reused.
// Thread-safety: RunFunnel is reentrant; it reads the Timeline only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "query/timeline.h"

namespace analytics::query {

inline constexpr size_t kMaxFunnelSteps = 20;

enum class FunnelOrder : uint8_t {
  kOrdered,   // step k strictly after step k-1; other events may interleave
  kStrict,    // as kOrdered, and no event of another funnel step in between
  kAnyOrder,  // distinct steps in any order within [t0, t0 + window]
};
enum class FunnelEntry : uint8_t {
  kFirstTouch,  // the pair's first entry event starts its only attempt
  kAnyTouch,    // every entry event starts an attempt; the best counts
};
enum class FunnelAttribution : uint8_t { kFirstStep, kLastStep };

// An exclusion: selector `selector` of the Timeline; an attempt with such an event strictly between its steps
// `from_step` and `to_step` counts only up to `from_step`.
struct FunnelExclusion {
  size_t selector = 0;
  size_t from_step = 0;
  size_t to_step = 0;
};

// How to read the Timeline. Step k is selector k (k < steps); held properties are keys [0, hold_keys); the
// breakdown property (optional) is key `breakdown_key`.
struct FunnelSpec {
  size_t steps = 2;  // 2 .. kMaxFunnelSteps
  std::vector<FunnelExclusion> exclusions;
  int64_t window_ms = 86400000;  // > 0; inclusive: t <= t0 + window_ms
  FunnelOrder order = FunnelOrder::kOrdered;
  FunnelEntry entry = FunnelEntry::kFirstTouch;
  size_t hold_keys = 0;                    // 0 .. 3
  std::optional<size_t> breakdown_key;     // key index in the Timeline
  FunnelAttribution attribution = FunnelAttribution::kFirstStep;
  size_t threads = 1;
  bool collect_users = false;  // fill FunnelStepOutcome::user_ids (costs a bitmap add per user and step reached)
};

// One step of one group of users.
struct FunnelStepOutcome {
  uint64_t users = 0;  // users whose chosen attempt reaches this step
  Roaring user_ids;    // with spec.collect_users: those users (Timeline::users ids), else empty
  // Per user at this step (step > 0), ascending: t(k) - t(k-1) and t(k) - t0 of the user's attempt for this
  // step (the one with the earliest t0 among their pairs' best attempts that reach it, ties in pair order).
  std::vector<int64_t> ms_from_previous;
  std::vector<int64_t> ms_from_first;
};

struct FunnelGroup {
  std::optional<std::string> value;     // breakdown value (nullopt: missing or null; or the whole funnel)
  std::vector<FunnelStepOutcome> steps;  // spec.steps entries
};

struct FunnelResult {
  FunnelGroup total;
  // With a breakdown: the groups that reach step 0, by value (text order, the null group last). A user may be in
  // several groups (their pairs' attempts carry different values).
  std::vector<FunnelGroup> breakdown;
  uint64_t pairs = 0;  // (user, held values) pairs with an attempt
};

// InvalidArgument-free: the spec must be valid (steps within limits, selectors and keys present in `timeline`,
// exclusions with from_step < to_step < steps); violations are asserts.
FunnelResult RunFunnel(const Timeline& timeline, const FunnelSpec& spec);

}  // namespace analytics::query
