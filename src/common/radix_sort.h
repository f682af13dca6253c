// RadixSort: sorts 64-bit keys (LSD radix, 11 bits a pass, only as many passes as the largest key needs), on
// several threads for large inputs. Used for the open/close lists of peak concurrency (millions of keys a month),
// where std::sort was the hot spot.
// Thread-safety: reentrant; `keys` is the caller's.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "common/parallel.h"

namespace analytics::common {

// Sorts [data, data + count) using `scratch` of the same size, in as many passes as `largest` (the OR of the keys)
// needs; the result ends up in `data`.
inline void RadixSortRange(uint64_t* data, uint64_t* scratch, size_t count, uint64_t largest) {
  if (count < 256) {
    std::sort(data, data + count);
    return;
  }
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  uint64_t* from = data;
  uint64_t* to = scratch;
  std::vector<size_t> offsets(kBuckets + 1);
  for (int shift = 0; shift < 64 && (largest >> shift) != 0; shift += kBits) {
    std::fill(offsets.begin(), offsets.end(), 0);
    for (size_t idx = 0; idx < count; ++idx) ++offsets[((from[idx] >> shift) & (kBuckets - 1)) + 1];
    for (size_t bucket = 1; bucket <= kBuckets; ++bucket) offsets[bucket] += offsets[bucket - 1];
    for (size_t idx = 0; idx < count; ++idx) to[offsets[(from[idx] >> shift) & (kBuckets - 1)]++] = from[idx];
    std::swap(from, to);
  }
  if (from != data) std::copy(from, from + count, data);
}

// Sorts `keys` ascending. With several threads, a list of a million keys or more is first split by its top bits
// into 64 ranges (one pass), which the threads then sort each on its own.
inline void RadixSort(std::vector<uint64_t>& keys, size_t threads = 1) {
  uint64_t largest = 0;
  for (uint64_t key : keys) largest |= key;
  std::vector<uint64_t> scratch(keys.size());
  if (threads <= 1 || keys.size() < (size_t{1} << 20)) {
    RadixSortRange(keys.data(), scratch.data(), keys.size(), largest);
    return;
  }
  constexpr int kRangeBits = 6;
  const int shift = std::max(0, static_cast<int>(std::bit_width(largest)) - kRangeBits);
  std::vector<size_t> starts((size_t{1} << kRangeBits) + 1, 0);
  for (uint64_t key : keys) ++starts[(key >> shift) + 1];
  for (size_t range = 1; range < starts.size(); ++range) starts[range] += starts[range - 1];
  std::vector<size_t> next(starts.begin(), starts.end() - 1);
  for (uint64_t key : keys) scratch[next[key >> shift]++] = key;
  ParallelFor(starts.size() - 1, threads, [&](size_t range) {
    const size_t begin = starts[range], count = starts[range + 1] - begin;
    uint64_t range_largest = 0;
    for (size_t idx = begin; idx < begin + count; ++idx) range_largest |= scratch[idx];
    RadixSortRange(scratch.data() + begin, keys.data() + begin, count, range_largest);
  });
  keys.swap(scratch);
}

}  // namespace analytics::common
