// Compaction policy: smallest segments first, up to max_rows; in size tiers while a partition is written.
#include "store/embedded/compaction.h"

#include <algorithm>
#include <numeric>

namespace analytics::store::embedded {

std::vector<size_t> PlanCompaction(const std::vector<uint64_t>& rows, bool partition_closed,
                                   const CompactionOptions& options) {
  std::vector<size_t> small;
  for (size_t segment_idx = 0; segment_idx < rows.size(); ++segment_idx) {
    if (rows[segment_idx] * 2 < options.max_rows) small.push_back(segment_idx);
  }
  if (small.size() < 2) return {};
  const size_t min_segments = std::max<size_t>(options.min_segments, 2);
  if (!partition_closed && small.size() < min_segments) return {};
  std::stable_sort(small.begin(), small.end(), [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  // The smallest first, up to max_rows; an open partition only within one tier, from the smallest tier up.
  for (size_t first = 0; first < small.size(); ++first) {
    const uint64_t tier_limit = std::max<uint64_t>(rows[small[first]], 1) * kTierRatio;
    std::vector<size_t> group;
    uint64_t total = 0;
    bool full = false;  // the group reached max_rows: its merge is no small segment any more
    for (size_t small_idx = first; small_idx < small.size(); ++small_idx) {
      const size_t segment_idx = small[small_idx];
      if (total + rows[segment_idx] > options.max_rows) {
        full = true;
        break;
      }
      if (!partition_closed && rows[segment_idx] > tier_limit) break;
      total += rows[segment_idx];
      group.push_back(segment_idx);
    }
    if (group.size() >= (partition_closed || full ? 2 : min_segments)) {
      std::sort(group.begin(), group.end());
      return group;
    }
    if (partition_closed) break;  // the smallest ones did not fit together: no larger ones will
  }
  return {};
}

}  // namespace analytics::store::embedded
