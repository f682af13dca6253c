// Compaction policy: smallest segments first, up to max_rows.
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
  if (!partition_closed && small.size() < std::max<size_t>(options.min_segments, 2)) return {};
  std::stable_sort(small.begin(), small.end(), [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  std::vector<size_t> group;
  uint64_t total = 0;
  for (size_t segment_idx : small) {
    if (total + rows[segment_idx] > options.max_rows) break;
    total += rows[segment_idx];
    group.push_back(segment_idx);
  }
  if (group.size() < 2) return {};
  std::sort(group.begin(), group.end());
  return group;
}

}  // namespace analytics::store::embedded
