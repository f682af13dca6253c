// Body splitting and body-level errors: SplitBody, FindJsonSyntaxError, content types, and how the
// Normalizer turns framing problems into body errors (JSON bodies) or per-event rejections (NDJSON).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "events/event_parser.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "support/test_env.h"

namespace analytics::events {
namespace {

constexpr int64_t kNow = 1742600000000;  // 2025-03-21T23:33:20Z

std::string Event(const std::string& id, const std::string& extra_data = "") {
  std::string event = R"({"specversion":"1.0","id":")";
  event.append(id).append(R"(","source":"/services/store","type":"com.platform.store.wishlist_item.added.v1",)");
  event.append(R"("time":"2025-03-20T17:31:10Z","subject":"user-1","data":{"game_id":"game_1042")");
  return event.append(extra_data).append("}}");
}

TEST(SplitBodyTest, SingleObjectIsOneEvent) {
  const std::string body = "  \n" + Event("a") + " \r\n";
  BodySplit split = SplitBody(body, BodyFormat::kSingle);
  ASSERT_FALSE(split.error.has_value());
  ASSERT_EQ(split.events.size(), 1u);
  EXPECT_EQ(split.events[0].index, 0u);
  EXPECT_EQ(split.events[0].byte_offset, 3u);
  EXPECT_EQ(split.events[0].text, Event("a"));
}

TEST(SplitBodyTest, SingleFormatAcceptsAnArray) {
  const std::string body = std::string("[") + Event("a") + "," + Event("b") + "]";
  BodySplit split = SplitBody(body, BodyFormat::kSingle);
  ASSERT_FALSE(split.error.has_value());
  ASSERT_EQ(split.events.size(), 2u);
  EXPECT_EQ(split.events[1].text, Event("b"));
}

TEST(SplitBodyTest, BatchKeepsIndexesAndOffsets) {
  const std::string first = Event("a");
  const std::string second = Event("b");
  const std::string body = "[ " + first + " ,\n\t" + second + "\n]\n";
  BodySplit split = SplitBody(body, BodyFormat::kBatch);
  ASSERT_FALSE(split.error.has_value());
  ASSERT_EQ(split.events.size(), 2u);
  EXPECT_EQ(split.events[0].index, 0u);
  EXPECT_EQ(split.events[0].byte_offset, 2u);
  EXPECT_EQ(split.events[0].text, first);
  EXPECT_EQ(split.events[1].index, 1u);
  EXPECT_EQ(split.events[1].byte_offset, 2 + first.size() + 4);
  EXPECT_EQ(split.events[1].text, second);
}

TEST(SplitBodyTest, BracketsAndEscapedQuotesInsideStringsDoNotEndAnElement) {
  // Long enough that the vectorized scan and the scalar tail both see tricky characters.
  const std::string tricky =
      R"({"a":"}]{[ \" \\","b":["x\\\"]"],"c":{"d":"\\\\"},"e":"0123456789abcdef0123456789}]]]"})";
  const std::string body = "[" + tricky + "," + tricky + "]";
  BodySplit split = SplitBody(body, BodyFormat::kBatch);
  ASSERT_FALSE(split.error.has_value()) << split.error->message;
  ASSERT_EQ(split.events.size(), 2u);
  EXPECT_EQ(split.events[0].text, tricky);
  EXPECT_EQ(split.events[1].text, tricky);
}

TEST(SplitBodyTest, EmptyArrayHasNoEventsAndNoError) {
  BodySplit split = SplitBody(" [ ] ", BodyFormat::kBatch);
  EXPECT_FALSE(split.error.has_value());
  EXPECT_TRUE(split.events.empty());
}

TEST(SplitBodyTest, ByteOrderMarkIsIgnored) {
  const std::string body = "\xEF\xBB\xBF[" + Event("a") + "]";
  BodySplit split = SplitBody(body, BodyFormat::kBatch);
  ASSERT_FALSE(split.error.has_value());
  ASSERT_EQ(split.events.size(), 1u);
  EXPECT_EQ(split.events[0].byte_offset, 4u);
}

TEST(SplitBodyTest, NdjsonSkipsBlankLinesAndHandlesCrlf) {
  const std::string body = "\r\n" + Event("a") + "\r\n   \r\n\n" + Event("b") + "\n\t\n" + Event("c");
  BodySplit split = SplitBody(body, BodyFormat::kNdjson);
  ASSERT_FALSE(split.error.has_value());
  ASSERT_EQ(split.events.size(), 3u);
  EXPECT_EQ(split.events[0].text, Event("a"));
  EXPECT_EQ(split.events[0].byte_offset, 2u);
  EXPECT_EQ(split.events[1].text, Event("b"));
  EXPECT_EQ(split.events[1].index, 1u);
  EXPECT_EQ(body.substr(split.events[1].byte_offset, split.events[1].text.size()), Event("b"));
  EXPECT_EQ(split.events[2].text, Event("c"));
  EXPECT_EQ(split.events[2].index, 2u);
}

TEST(SplitBodyTest, EmptyNdjsonBodyIsFine) {
  BodySplit split = SplitBody("\n\r\n  \n", BodyFormat::kNdjson);
  EXPECT_FALSE(split.error.has_value());
  EXPECT_TRUE(split.events.empty());
}

struct BodyErrorCase {
  std::string name;
  std::string body;
  BodyFormat format;
  size_t byte_offset;
};

void PrintTo(const BodyErrorCase& test_case, std::ostream* os) { *os << test_case.name; }

class SplitBodyErrorTest : public ::testing::TestWithParam<BodyErrorCase> {};

TEST_P(SplitBodyErrorTest, ReportsTheOffset) {
  const BodyErrorCase& test_case = GetParam();
  BodySplit split = SplitBody(test_case.body, test_case.format);
  ASSERT_TRUE(split.error.has_value());
  EXPECT_TRUE(split.events.empty());
  EXPECT_EQ(split.error->byte_offset, test_case.byte_offset) << split.error->message;
  EXPECT_FALSE(split.error->message.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, SplitBodyErrorTest,
    ::testing::Values(BodyErrorCase{"Empty", "", BodyFormat::kBatch, 0},
                      BodyErrorCase{"OnlySpaces", "   ", BodyFormat::kSingle, 3},
                      BodyErrorCase{"NotJson", "hello", BodyFormat::kSingle, 0},
                      BodyErrorCase{"BatchOfAnObject", R"({"a":1})", BodyFormat::kBatch, 0},
                      BodyErrorCase{"SingleScalar", R"(  "text")", BodyFormat::kSingle, 2},
                      BodyErrorCase{"TrailingComma", R"([{"a":1},])", BodyFormat::kBatch, 9},
                      BodyErrorCase{"MissingComma", R"([{"a":1} {"b":2}])", BodyFormat::kBatch, 9},
                      BodyErrorCase{"Unterminated", R"([{"a":1},{"b":)", BodyFormat::kBatch, 14},
                      BodyErrorCase{"DataAfterArray", R"([{"a":1}] x)", BodyFormat::kBatch, 10},
                      BodyErrorCase{"BrokenFirstElementWins", R"([{"a":tru},{"b":2}}])", BodyFormat::kBatch, 9}),
    [](const ::testing::TestParamInfo<BodyErrorCase>& info) { return info.param.name; });

TEST(FindJsonSyntaxErrorTest, WellFormedJsonHasNoError) {
  EXPECT_FALSE(FindJsonSyntaxError(R"({"a":[1,2,{"b":null}],"c":"\u00e9"})").has_value());
  EXPECT_FALSE(FindJsonSyntaxError(" 12 ").has_value());
}

TEST(FindJsonSyntaxErrorTest, MessageNeverQuotesTheInput) {
  const std::string body = R"({"email":"secret.person@example.com", oops})";
  std::optional<BodyError> error = FindJsonSyntaxError(body);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->byte_offset, body.find("oops"));
  EXPECT_EQ(error->message.find("secret"), std::string::npos) << error->message;
  EXPECT_EQ(error->message.find("oops"), std::string::npos) << error->message;
  EXPECT_NE(error->message.find("malformed JSON"), std::string::npos);
}

TEST(FindJsonSyntaxErrorTest, InvalidUtf8IsAnError) {
  const std::string body = "{\"a\":\"\xff\"}";
  std::optional<BodyError> error = FindJsonSyntaxError(body);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->byte_offset, 6u);
}

TEST(BodyErrorTest, StatusCarriesTheOffset) {
  common::Status status = BodyError{42, "malformed JSON: unexpected ']'"}.ToStatus();
  EXPECT_EQ(status.code(), common::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("byte 42"), std::string::npos) << status.message();
}

TEST(BodyFormatTest, ContentTypes) {
  EXPECT_EQ(BodyFormatFromContentType("application/cloudevents+json"), BodyFormat::kSingle);
  EXPECT_EQ(BodyFormatFromContentType("application/json; charset=utf-8"), BodyFormat::kSingle);
  EXPECT_EQ(BodyFormatFromContentType("Application/CloudEvents-Batch+JSON"), BodyFormat::kBatch);
  EXPECT_EQ(BodyFormatFromContentType("application/x-ndjson"), BodyFormat::kNdjson);
  EXPECT_EQ(BodyFormatFromContentType("text/plain"), std::nullopt);
  EXPECT_EQ(BodyFormatFromContentType(""), std::nullopt);
}

// ---- Through the Normalizer ----

class NormalizerBodyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = Pseudonymizer::Create(std::string(32, '\x07'));
    ASSERT_OK(created);
    pseudonymizer_ = std::move(created).value();
    normalizer_ = std::make_unique<Normalizer>(NormalizerOptions{}, *pseudonymizer_);
  }

  BatchResult Process(const std::string& body, BodyFormat format) const {
    return normalizer_->Process(body, format, kNow);
  }

  std::unique_ptr<Pseudonymizer> pseudonymizer_;
  std::unique_ptr<Normalizer> normalizer_;
};

TEST_F(NormalizerBodyTest, SyntaxErrorInsideOneBatchElementFailsTheWholeBody) {
  const std::string good = Event("a");
  const std::string bad = R"({"specversion":"1.0","id":"b","source":"/s", "type": nope})";
  const std::string body = "[" + good + "," + bad + "," + good + "]";
  BatchResult result = Process(body, BodyFormat::kBatch);
  ASSERT_TRUE(result.body_error.has_value());
  EXPECT_EQ(result.body_error->byte_offset, body.find("nope") + 1) << result.body_error->message;  // after 'n'
  EXPECT_TRUE(result.events.empty());
  EXPECT_TRUE(result.rejections.empty());
}

TEST_F(NormalizerBodyTest, TrailingGarbageAfterSingleObjectFailsTheBody) {
  const std::string body = Event("a") + " }";
  BatchResult result = Process(body, BodyFormat::kSingle);
  ASSERT_TRUE(result.body_error.has_value());
  EXPECT_EQ(result.body_error->byte_offset, body.size() - 1);
}

TEST_F(NormalizerBodyTest, NdjsonBadLineIsRejectedAloneWithItsIndex) {
  const std::string body = Event("a") + "\r\n\r\n{\"not json\n" + Event("c") + "\n[1,2]\n";
  BatchResult result = Process(body, BodyFormat::kNdjson);
  ASSERT_FALSE(result.body_error.has_value());
  ASSERT_EQ(result.events.size(), 2u);
  EXPECT_EQ(result.event_indexes, (std::vector<uint32_t>{0, 2}));
  EXPECT_EQ(result.events[1].id, "c");
  ASSERT_EQ(result.rejections.size(), 2u);
  EXPECT_EQ(result.rejections[0].index, 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kMalformedEvent);
  EXPECT_EQ(result.rejections[0].byte_offset, body.find("{\"not json"));
  EXPECT_NE(result.rejections[0].message.find("byte"), std::string::npos) << result.rejections[0].message;
  EXPECT_TRUE(result.rejections[0].payload.empty());
  EXPECT_EQ(result.rejections[1].index, 3u);
  EXPECT_EQ(result.rejections[1].code, RejectionCode::kMalformedEvent);  // an array is not an event
}

TEST_F(NormalizerBodyTest, NonObjectBatchElementIsRejectedNotTheBody) {
  const std::string body = "[1, " + Event("b") + ", \"x\", null]";
  BatchResult result = Process(body, BodyFormat::kBatch);
  ASSERT_FALSE(result.body_error.has_value());
  ASSERT_EQ(result.events.size(), 1u);
  EXPECT_EQ(result.event_indexes[0], 1u);
  ASSERT_EQ(result.rejections.size(), 3u);
  for (const Rejection& rejection : result.rejections) {
    EXPECT_EQ(rejection.code, RejectionCode::kMalformedEvent);
    EXPECT_TRUE(rejection.payload.empty());
  }
  EXPECT_EQ(result.rejections[0].index, 0u);
  EXPECT_EQ(result.rejections[1].index, 2u);
  EXPECT_EQ(result.rejections[2].index, 3u);
}

TEST_F(NormalizerBodyTest, IntegerBeyond64BitsIsARejectionNotABodyError) {
  const std::string big = Event("b", R"(,"points_total":123456789012345678901234567890)");
  const std::string body = std::string("[") + Event("a") + "," + big + "]";
  BatchResult result = Process(body, BodyFormat::kBatch);
  ASSERT_FALSE(result.body_error.has_value());
  ASSERT_EQ(result.events.size(), 1u);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].index, 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kMalformedEvent);
}

TEST_F(NormalizerBodyTest, OversizedEventIsRejectedWithoutPayload) {
  NormalizerOptions options;
  options.max_event_bytes = 400;
  Normalizer small(options, *pseudonymizer_);
  const std::string large = Event("big", R"(,"note":")" + std::string(500, 'x') + "\"");
  const std::string body = std::string("[") + Event("a") + "," + large + "]";
  BatchResult result = small.Process(body, BodyFormat::kBatch, kNow);
  ASSERT_FALSE(result.body_error.has_value());
  ASSERT_EQ(result.events.size(), 1u);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kEventTooLarge);
  EXPECT_EQ(result.rejections[0].event_bytes, large.size());
  EXPECT_TRUE(result.rejections[0].payload.empty());
  EXPECT_EQ(result.rejections[0].index, 1u);
}

TEST_F(NormalizerBodyTest, OversizedButMalformedElementStillFailsAJsonBody) {
  NormalizerOptions options;
  options.max_event_bytes = 100;
  Normalizer small(options, *pseudonymizer_);
  const std::string body = R"([{"a":")" + std::string(200, 'x') + R"(", "b": nope}])";
  BatchResult result = small.Process(body, BodyFormat::kBatch, kNow);
  ASSERT_TRUE(result.body_error.has_value());
  EXPECT_EQ(result.body_error->byte_offset, body.find("nope") + 1);
}

TEST_F(NormalizerBodyTest, BodyErrorIsReportedForAnUnparsableBody) {
  BatchResult result = Process("{\"specversion\": ", BodyFormat::kSingle);
  ASSERT_TRUE(result.body_error.has_value());
  EXPECT_EQ(result.body_error->byte_offset, 16u);
  EXPECT_EQ(result.body_error->ToStatus().code(), common::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace analytics::events
