// Lifecycle and stickiness counts: roaring set algebra per bucket.
#include "query/lifecycle.h"

#include <algorithm>

namespace analytics::query {

std::vector<LifecycleCounts> ComputeLifecycle(const Roaring& earlier, std::span<const Roaring> buckets) {
  std::vector<LifecycleCounts> out;
  if (buckets.size() < 2) return out;
  out.reserve(buckets.size() - 1);
  // `seen`: everyone active before the current bucket. The previous bucket is a subset of it, so
  // |active ∩ seen| = returning + resurrecting.
  Roaring seen = earlier;
  seen |= buckets[0];
  for (size_t bucket_idx = 1; bucket_idx < buckets.size(); ++bucket_idx) {
    const Roaring& active = buckets[bucket_idx];
    const Roaring& previous = buckets[bucket_idx - 1];
    LifecycleCounts counts;
    counts.active = active.cardinality();
    counts.returning = active.and_cardinality(previous);
    const uint64_t seen_before = active.and_cardinality(seen);
    counts.new_users = counts.active - seen_before;
    counts.resurrecting = seen_before - counts.returning;
    counts.dormant = previous.cardinality() - counts.returning;
    out.push_back(counts);
    if (bucket_idx + 1 < buckets.size()) seen |= active;
  }
  return out;
}

std::vector<uint64_t> SlidingUnionCardinality(std::span<const Roaring> days, size_t window, size_t first) {
  std::vector<uint64_t> out;
  if (window == 0 || first >= days.size()) return out;
  out.reserve(days.size() - first);
  // Blocks [b * window, (b + 1) * window). The window ending on day d starts at lo = d + 1 - window (clipped at 0):
  // either in d's block, then it is the block's start (the window is the prefix of d's block up to d), or in the
  // block before, then it is that block's suffix from lo united with the prefix of d's block.
  Roaring prefix;
  size_t prefix_block = SIZE_MAX;
  std::vector<Roaring> suffix(window);  // suffix[j]: union of days[b*window + j .. (b+1)*window - 1]
  size_t suffix_block = SIZE_MAX;
  for (size_t day = first; day < days.size(); ++day) {
    const size_t block = day / window;
    if (block != prefix_block) {
      prefix = Roaring();
      for (size_t idx = block * window; idx <= day; ++idx) prefix |= days[idx];
      prefix_block = block;
    } else {
      prefix |= days[day];
    }
    const size_t lo = day + 1 >= window ? day + 1 - window : 0;
    const size_t lo_block = lo / window;
    if (lo_block == block) {
      out.push_back(prefix.cardinality());
      continue;
    }
    if (suffix_block != lo_block) {
      const size_t base = lo_block * window;
      suffix[window - 1] = days[base + window - 1];
      for (size_t offset = window - 1; offset-- > 0;) {
        suffix[offset] = suffix[offset + 1];
        suffix[offset] |= days[base + offset];
      }
      suffix_block = lo_block;
    }
    out.push_back(suffix[lo - lo_block * window].or_cardinality(prefix));
  }
  return out;
}

std::vector<StickinessDay> ComputeStickiness(std::span<const Roaring> days, size_t first) {
  std::vector<StickinessDay> out;
  if (first >= days.size()) return out;
  const std::vector<uint64_t> wau = SlidingUnionCardinality(days, kWauDays, first);
  const std::vector<uint64_t> mau = SlidingUnionCardinality(days, kMauDays, first);
  out.resize(days.size() - first);
  for (size_t day = first; day < days.size(); ++day) {
    StickinessDay& entry = out[day - first];
    entry.dau = days[day].cardinality();
    entry.wau = wau[day - first];
    entry.mau = mau[day - first];
  }
  return out;
}

std::vector<uint64_t> ActiveDaysDistribution(std::span<const Roaring> days) {
  const size_t n = days.size();
  // at_least[k]: the users active on at least k of the days read so far (k = 1..n).
  std::vector<Roaring> at_least(n + 2);
  for (size_t day_idx = 0; day_idx < n; ++day_idx) {
    const Roaring& day = days[day_idx];
    // Downwards, so that at_least[k - 1] is still the set before this day when at_least[k] reads it.
    for (size_t k = day_idx + 1; k >= 2; --k) at_least[k] |= at_least[k - 1] & day;
    at_least[1] |= day;
  }
  std::vector<uint64_t> counts(n + 1, 0);
  for (size_t k = 1; k <= n; ++k) counts[k] = at_least[k].cardinality() - at_least[k + 1].cardinality();
  return counts;
}

}  // namespace analytics::query
