// Unit tests of UserSet (store/embedded/user_set.h): the erased users the store asks about for every event.
// Lookups are by view (the memtable's events are views), hashed; the order of the MANIFEST's list is kept.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "store/embedded/user_set.h"

namespace analytics::store::embedded {
namespace {

TEST(UserSetTest, AnswersByViewAfterInsertsAndErasures) {
  UserSet users;
  EXPECT_TRUE(users.empty());
  EXPECT_EQ(users.count("u_a"), 0u);
  EXPECT_TRUE(users.insert("u_b"));
  EXPECT_TRUE(users.insert("u_a"));
  EXPECT_FALSE(users.insert("u_a"));  // already there
  const std::string buffer = "xx u_a yy";
  EXPECT_EQ(users.count(std::string_view(buffer).substr(3, 3)), 1u);
  EXPECT_EQ(users.count("u_c"), 0u);
  EXPECT_EQ(users.count(""), 0u);
  EXPECT_EQ(users.size(), 2u);
  EXPECT_EQ(users.sorted(), (UserSet::Sorted{"u_a", "u_b"}));
  EXPECT_EQ(users.erase("u_a"), 1u);
  EXPECT_EQ(users.erase("u_a"), 0u);
  EXPECT_EQ(users.count("u_a"), 0u);
  EXPECT_EQ(users.count("u_b"), 1u);
  EXPECT_TRUE(users.insert("u_a"));  // erased, then erased again (the user registered and was deleted again)
  EXPECT_EQ(users.count("u_a"), 1u);
}

// Many users: every inserted one is found, none of the others, and the order is the strings' order.
TEST(UserSetTest, ManyUsers) {
  UserSet users;
  for (int n = 0; n < 5000; n += 2) users.insert("u_" + std::to_string(n) + std::string(60, 'p'));
  for (int n = 0; n < 5000; ++n) {
    EXPECT_EQ(users.count("u_" + std::to_string(n) + std::string(60, 'p')), n % 2 == 0 ? 1u : 0u) << n;
  }
  std::vector<std::string> listed(users.begin(), users.end());
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end()));
  EXPECT_EQ(listed.size(), 2500u);
}

}  // namespace
}  // namespace analytics::store::embedded
