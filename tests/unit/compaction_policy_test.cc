// Compaction policy: which segments of a day partition are merged.
#include "store/embedded/compaction.h"

#include <gtest/gtest.h>

namespace analytics::store::embedded {
namespace {

TEST(CompactionPolicyTest, AnOpenDayWaitsForMinSegmentsSmallOnes) {
  CompactionOptions options{.min_segments = 4, .max_rows = 1000};
  EXPECT_TRUE(PlanCompaction({100, 200, 300}, false, options).empty());
  EXPECT_EQ(PlanCompaction({100, 200, 300, 50}, false, options), (std::vector<size_t>{0, 1, 2, 3}));
}

TEST(CompactionPolicyTest, AClosedDayMergesAnyTwoSmallSegments) {
  CompactionOptions options{.min_segments = 4, .max_rows = 1000};
  EXPECT_EQ(PlanCompaction({100, 200}, true, options), (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(PlanCompaction({100}, true, options).empty());
}

TEST(CompactionPolicyTest, LargeSegmentsStayAndMergesStayUnderMaxRows) {
  CompactionOptions options{.min_segments = 2, .max_rows = 1000};
  // 600 and 900 are not small (at least half of max_rows); the smallest go first up to 1000 rows.
  EXPECT_EQ(PlanCompaction({600, 400, 300, 900, 450}, false, options), (std::vector<size_t>{1, 2}));
  EXPECT_TRUE(PlanCompaction({600, 900, 499}, true, options).empty());
}

TEST(CompactionPolicyTest, AnOpenDayMergesOneSizeTierNotEveryNewSegmentIntoItsLargest) {
  CompactionOptions options{.min_segments = 4, .max_rows = 1000000};
  // A backfill keeps adding ~10k-row segments to a day that already holds a merged 300k-row one: the new ones
  // wait for their tier to fill, then merge among themselves; the 300k segment is not rewritten each time.
  EXPECT_TRUE(PlanCompaction({300000, 10000, 11000, 9000}, false, options).empty());
  EXPECT_EQ(PlanCompaction({300000, 10000, 11000, 9000, 10500}, false, options), (std::vector<size_t>{1, 2, 3, 4}));
  // Tiers are tried from the smallest up.
  EXPECT_EQ(PlanCompaction({40000, 5, 40000, 6, 40000, 40000}, false, options), (std::vector<size_t>{0, 2, 4, 5}));
  // Once the partition has min_segments small ones, segments that reach max_rows together merge even when
  // fewer than min_segments.
  options.max_rows = 1000;
  EXPECT_TRUE(PlanCompaction({400, 450, 480}, false, options).empty());
  EXPECT_EQ(PlanCompaction({400, 450, 480, 490}, false, options), (std::vector<size_t>{0, 1}));
}

TEST(CompactionPolicyTest, AClosedDayMergesAcrossTiers) {
  CompactionOptions options{.min_segments = 4, .max_rows = 1000000};
  EXPECT_EQ(PlanCompaction({300000, 10000, 11000}, true, options), (std::vector<size_t>{0, 1, 2}));
}

}  // namespace
}  // namespace analytics::store::embedded
