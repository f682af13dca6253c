// DedupIndex: checked against std::set on random operations, day expiry and the memory budget.
#include "store/embedded/dedup_index.h"

#include <map>
#include <random>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace analytics::store::embedded {
namespace {

DedupKey Key(uint64_t n) { return DedupIndex::KeyOf("/services/test", "id-" + std::to_string(n)); }

TEST(DedupIndexTest, KeysDependOnSourceAndIdAndAreNeverEmpty) {
  EXPECT_EQ(DedupIndex::KeyOf("s", "1"), DedupIndex::KeyOf("s", "1"));
  EXPECT_FALSE(DedupIndex::KeyOf("s", "1") == DedupIndex::KeyOf("t", "1"));
  EXPECT_FALSE(DedupIndex::KeyOf("ab", "c") == DedupIndex::KeyOf("a", "bc"));
  const DedupKey empty = DedupIndex::KeyOf("", "");
  EXPECT_FALSE(empty.a == 0 && empty.b == 0);
  // Recovery hashes a segment's source once and its ids with that seed: the same keys.
  EXPECT_EQ(DedupIndex::KeyOf(DedupIndex::SourceSeed("/services/store"), "id-7"),
            DedupIndex::KeyOf("/services/store", "id-7"));
}

TEST(DedupIndexTest, TheSettledCapacityIsHalfTheLargestTable) {
  DedupIndex index(64 << 10);  // the smallest table: 4096 slots
  EXPECT_EQ(index.settled_capacity(), 2048u);
  for (uint64_t n = 0; n < 2048; ++n) ASSERT_TRUE(index.Insert(Key(n), 19000));
  EXPECT_EQ(index.evicted_days(), 0u);  // recovery fills it this far without giving up a day
}

TEST(DedupIndexTest, RandomInsertsErasesAndExpiriesMatchAReferenceSet) {
  DedupIndex index(64 << 20);
  std::map<uint64_t, int64_t> reference;  // key number → day
  std::mt19937_64 random(42);
  int64_t day = 19000;
  for (int step = 0; step < 200000; ++step) {
    const uint64_t n = random() % 50000;
    const int action = static_cast<int>(random() % 100);
    if (action < 70) {
      const bool inserted = index.Insert(Key(n), day);
      EXPECT_EQ(inserted, reference.count(n) == 0) << step;
      if (inserted) reference[n] = day;
    } else if (action < 90) {
      EXPECT_EQ(index.Contains(Key(n)), reference.count(n) > 0) << step;
    } else if (action < 99) {
      index.Erase(Key(n));
      reference.erase(n);
    } else {
      if (random() % 4 == 0) ++day;
      const int64_t oldest = day - 2;
      index.ExpireBefore(oldest);
      std::erase_if(reference, [&](const auto& entry) { return entry.second < oldest; });
    }
    ASSERT_EQ(index.size(), reference.size()) << step;
  }
  for (uint64_t n = 0; n < 50000; ++n) ASSERT_EQ(index.Contains(Key(n)), reference.count(n) > 0) << n;
  EXPECT_EQ(index.evicted_days(), 0u);
}

TEST(DedupIndexTest, ExpiryDropsWholeDaysAndKeepsTheRest) {
  DedupIndex index(64 << 20);
  for (uint64_t n = 0; n < 30000; ++n) ASSERT_TRUE(index.Insert(Key(n), 20000 + static_cast<int64_t>(n / 10000)));
  EXPECT_EQ(index.oldest_day(), 20000);
  index.ExpireBefore(20001);
  EXPECT_EQ(index.size(), 20000u);
  EXPECT_EQ(index.oldest_day(), 20001);
  for (uint64_t n = 0; n < 30000; ++n) ASSERT_EQ(index.Contains(Key(n)), n >= 10000) << n;
  index.ExpireBefore(30000);
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(index.oldest_day(), INT64_MAX);
}

TEST(DedupIndexTest, TheBudgetBoundsMemoryByGivingUpTheOldestDays) {
  const size_t budget = 1 << 20;  // 65,536 slots of 16 bytes
  DedupIndex index(budget);
  for (uint64_t n = 0; n < 200000; ++n) {
    ASSERT_TRUE(index.Insert(Key(n), 20000 + static_cast<int64_t>(n / 20000)));
    ASSERT_LE(index.memory_bytes(), budget);
  }
  EXPECT_GT(index.evicted_days(), 0u);
  // The newest day is always complete; evicted days are gone as a whole.
  for (uint64_t n = 180000; n < 200000; ++n) ASSERT_TRUE(index.Contains(Key(n))) << n;
  const int64_t oldest = index.oldest_day();
  for (uint64_t n = 0; n < 200000; ++n) {
    const int64_t day = 20000 + static_cast<int64_t>(n / 20000);
    ASSERT_EQ(index.Contains(Key(n)), day >= oldest) << n;
  }
}

TEST(DedupIndexTest, DayTagsSurviveTheirSixteenBitWrap) {
  DedupIndex index(64 << 20);
  ASSERT_TRUE(index.Insert(Key(1), 65535));
  ASSERT_TRUE(index.Insert(Key(2), 65536));
  ASSERT_TRUE(index.Insert(Key(3), 65537));
  index.ExpireBefore(65536);
  EXPECT_FALSE(index.Contains(Key(1)));
  EXPECT_TRUE(index.Contains(Key(2)));
  EXPECT_TRUE(index.Contains(Key(3)));
}

}  // namespace
}  // namespace analytics::store::embedded
