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

}  // namespace
}  // namespace analytics::store::embedded
