// Unit tests of the writer-side helpers of column_codec.h that the segment writer's speed work added:
// CommonPrefixSize, and StringDictWriter's shortcut for a value equal to the previous one (its codes must be
// those of a plain dictionary lookup, so ReadStringDict decodes them).
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "store/embedded/codec.h"
#include "store/embedded/column_codec.h"

namespace analytics::store::embedded {
namespace {

TEST(ColumnCodecHelpersTest, CommonPrefixSizeComparesWholeWordsAndTails) {
  EXPECT_EQ(CommonPrefixSize("", ""), 0u);
  EXPECT_EQ(CommonPrefixSize("abc", ""), 0u);
  EXPECT_EQ(CommonPrefixSize("abc", "abd"), 2u);
  EXPECT_EQ(CommonPrefixSize("abc", "abc"), 3u);
  EXPECT_EQ(CommonPrefixSize("abc", "abcdef"), 3u);
  // Differences inside and after the first eight-byte word, and at each byte of a word.
  const std::string base = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (size_t diff_idx = 0; diff_idx < base.size(); ++diff_idx) {
    std::string other = base;
    other[diff_idx] = static_cast<char>(other[diff_idx] ^ 0x80);
    EXPECT_EQ(CommonPrefixSize(base, other), diff_idx) << diff_idx;
    EXPECT_EQ(CommonPrefixSize(other, base), diff_idx) << diff_idx;
  }
  EXPECT_EQ(CommonPrefixSize(base, base.substr(0, 17)), 17u);
}

// Runs of equal values (a user's session id) take the shortcut; the codes still decode to the same values.
TEST(ColumnCodecHelpersTest, StringDictWriterRepeatedValuesRoundTrip) {
  const std::vector<std::string> added = {"s-1", "s-1", "s-1", "s-2", "s-2", "s-1", "", "", "s-3", "s-2", "s-2"};
  StringDictWriter writer;
  std::string buffer;  // the writer keeps its own copies: the caller's buffer is reused
  for (const std::string& value : added) {
    buffer = value;
    writer.Add(buffer);
    buffer.assign(8, 'x');
  }
  EXPECT_EQ(writer.values(), added.size());
  std::string block;
  writer.Finish(block);
  Reader reader(block);
  std::string storage;
  std::vector<std::string_view> dictionary;
  std::vector<uint32_t> codes;
  ASSERT_TRUE(ReadStringDict(reader, added.size(), storage, dictionary, codes));
  EXPECT_TRUE(reader.done());
  ASSERT_EQ(dictionary.size(), 4u);
  ASSERT_EQ(codes.size(), added.size());
  for (size_t value_idx = 0; value_idx < added.size(); ++value_idx) {
    EXPECT_EQ(dictionary[codes[value_idx]], added[value_idx]) << value_idx;
  }
}

// PutStringList checks the hex rests through a precomputed hex suffix: odd-length hex, hex that starts inside
// the shared prefix, and upper-case hex must come back exactly.
TEST(ColumnCodecHelpersTest, StringListWithHexRestsRoundTrips) {
  const std::vector<std::string> texts = {"s-0a1b2c3d", "s-0a1b2c3e", "s-0a1b2c3", "s-0A1B", "u_ff", "u_fff0",
                                          "u_fff0aa",   "ab",          "",          "beef", "beefcafe"};
  const std::vector<std::string_view> values(texts.begin(), texts.end());
  std::string block;
  PutStringList(block, values);
  Reader reader(block);
  std::string storage;
  std::vector<std::string_view> decoded;
  ASSERT_TRUE(ReadStringList(reader, values.size(), storage, decoded));
  EXPECT_TRUE(reader.done());
  EXPECT_EQ(decoded, values);
}

}  // namespace
}  // namespace analytics::store::embedded
