// common::RadixSort against std::sort: sizes around its thresholds, narrow and full key ranges, duplicates,
// one thread and several.
#include "common/radix_sort.h"

#include <random>

#include <gtest/gtest.h>

namespace analytics::common {
namespace {

TEST(RadixSortTest, SortsLikeStdSort) {
  std::mt19937_64 random(5);
  for (const size_t size : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{5000}, (size_t{1} << 20) + 7}) {
    for (const uint64_t mask : {uint64_t{0}, uint64_t{63}, (uint64_t{1} << 33) - 1, ~uint64_t{0}}) {
      std::vector<uint64_t> keys(size);
      for (auto& key : keys) key = random() & mask;
      std::vector<uint64_t> expected = keys;
      std::sort(expected.begin(), expected.end());
      for (const size_t threads : {size_t{1}, size_t{3}}) {
        std::vector<uint64_t> sorted = keys;
        RadixSort(sorted, threads);
        ASSERT_EQ(sorted, expected) << size << " keys, mask " << mask << ", " << threads << " threads";
      }
    }
  }
}

}  // namespace
}  // namespace analytics::common
