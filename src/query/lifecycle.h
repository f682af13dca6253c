// Lifecycle and stickiness: user counts over per-bucket activity bitmaps (docs/analysis.md, "Lifecycle" and
// "Stickiness").
//
// Rationale: both questions only need to know which users were active in which calendar bucket (day, ISO week,
// month in the request's zone), which is exactly what EventStore::Aggregate with collect_users gives per bucket
// (cached per segment and day partition by the embedded store). The engines here are a handful of roaring
// operations per bucket (intersection cardinalities, in-place unions), never a pass over events or a per-user
// array: their cost does not depend on how large the store's user id space is.
// Inputs are bitmaps of dense user ids (the store's); the functions do not care which ids they are.
// Thread-safety: pure, reentrant functions over caller-owned values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <roaring/roaring.hh>

namespace analytics::query {

// One bucket's users by lifecycle status. new + returning + resurrecting = active; dormant users are not active
// in the bucket (they were in the previous one).
struct LifecycleCounts {
  uint64_t active = 0;        // active in the bucket
  uint64_t new_users = 0;     // active in it and never before it
  uint64_t returning = 0;     // active in it and in the previous bucket
  uint64_t resurrecting = 0;  // active in it, not in the previous bucket, in some bucket before that
  uint64_t dormant = 0;       // active in the previous bucket, not in this one (a positive count)
  bool operator==(const LifecycleCounts&) const = default;
};

// `earlier`: the users active at any time before buckets[0]; `buckets[i]`: the users active in bucket i, in time
// order. buckets[0] is the bucket before the first one reported: the result has buckets.size() - 1 entries, for
// buckets[1..]. Empty when buckets.size() < 2.
std::vector<LifecycleCounts> ComputeLifecycle(const Roaring& earlier, std::span<const Roaring> buckets);

// Distinct users active in a window of days ending on a day (that day included).
inline constexpr size_t kWauDays = 7;
inline constexpr size_t kMauDays = 30;

struct StickinessDay {
  uint64_t dau = 0;  // active on the day
  uint64_t wau = 0;  // active on one of the kWauDays days ending on it
  uint64_t mau = 0;  // active on one of the kMauDays days ending on it
  bool operator==(const StickinessDay&) const = default;
};

// For each day d in [first, days.size()): DAU, WAU and MAU, where `days[j]` are the users active on day j
// (consecutive days). A window reaches back to days[0] at most: pass kMauDays - 1 days before `first` for
// whole windows. Each window's union is counted, never built per day: blocks of the window's length keep their
// suffix unions and a running prefix union, and a window is one suffix and one prefix (or_cardinality), so a
// day costs two unions whatever the window's length (van Herk / Gil-Werman).
std::vector<StickinessDay> ComputeStickiness(std::span<const Roaring> days, size_t first);

// The distinct users active on one of `days` within any window of `window` consecutive days ending at each
// d in [first, days.size()) (the building block of ComputeStickiness; window >= 1).
std::vector<uint64_t> SlidingUnionCardinality(std::span<const Roaring> days, size_t window, size_t first);

// counts[k]: the users active on exactly k of `days` (any days, e.g. a week's); counts.size() = days.size() + 1
// and counts[0] = 0 (users active on none of them are not known here).
std::vector<uint64_t> ActiveDaysDistribution(std::span<const Roaring> days);

}  // namespace analytics::query
