// Compaction policy of the embedded store: which segments of a day partition to merge.
//
// Rationale: every flush writes one segment per day partition it touches, so a busy day collects dozens of
// small segments, and late events add small segments to old days. Queries pay per segment (open, footer,
// one block per column), and small segments compress worse. Merging is a rewrite, so the policy merges only
// segments that are small (under half of `max_rows`) and never produces a segment over `max_rows` (which also
// bounds the memory a merge needs).
// A partition still being written (today's, or an old day a backfill keeps sending: the store decides, see
// `settle_ms`) is merged in tiers: `min_segments` small segments of similar size (the largest at most
// kTierRatio times the smallest) are merged, so a segment is rewritten about log(rows) times, not once per
// flush: merging every new small segment into the day's growing one made a 30-day backfill in random time
// order rewrite each day once per flush. A closed partition (the day is over and no longer receives
// segments) merges all its small segments, any two of them.
// The store applies a plan (reads, filters erased users and expired days, writes, swaps in the MANIFEST);
// this file only decides. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace analytics::store::embedded {

struct CompactionOptions {
  size_t min_segments = 4;       // small segments of one size tier an open partition collects before a merge
  uint64_t max_rows = 1000000;   // rows of a merged segment at most
  // An old day (over by more than a day) counts as closed once no flush wrote a segment to it for this long;
  // until then (a backfill) it is merged in tiers like an open day. The store's explicit RunMaintenance
  // ignores it.
  int64_t settle_ms = 60000;
};

// Segments of one tier differ in rows by at most this factor.
inline constexpr uint64_t kTierRatio = 8;

// `rows[i]` is the row count of the partition's i-th segment. Returns the indexes of one group of segments
// to merge (at least two, their rows summing to at most max_rows), or nothing.
std::vector<size_t> PlanCompaction(const std::vector<uint64_t>& rows, bool partition_closed,
                                   const CompactionOptions& options);

}  // namespace analytics::store::embedded
