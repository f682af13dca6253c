// Compaction policy of the embedded store: which segments of a day partition to merge.
//
// Rationale: every flush writes one segment per day partition it touches, so a busy day collects dozens of
// small segments, and late events add small segments to old days. Queries pay per segment (open, footer,
// one block per column), and small segments compress worse. Merging is a rewrite, so the policy merges only
// segments that are small (under half of `max_rows`), never produces a segment over `max_rows` (which also
// bounds the memory a merge needs), and waits until a partition has `min_segments` small segments, or the
// day is closed (no more regular writes), before merging them.
// The store applies a plan (reads, filters erased users and expired days, writes, swaps in the MANIFEST);
// this file only decides. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace analytics::store::embedded {

struct CompactionOptions {
  size_t min_segments = 4;       // small segments a partition collects before they are merged
  uint64_t max_rows = 1000000;   // rows of a merged segment at most
};

// `rows[i]` is the row count of the partition's i-th segment. Returns the indexes of one group of segments
// to merge (at least two, their rows summing to at most max_rows), or nothing.
std::vector<size_t> PlanCompaction(const std::vector<uint64_t>& rows, bool partition_closed,
                                   const CompactionOptions& options);

}  // namespace analytics::store::embedded
