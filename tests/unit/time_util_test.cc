// Unit tests for common::time_util (RFC 3339, durations) and common::Status / Result.
#include "common/time_util.h"

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "common/status.h"
#include "support/test_env.h"

namespace analytics::common {
namespace {

// Independent reference: timegm() from the C library.
int64_t TimegmMillis(int year, int month, int day, int hour, int minute, int second) {
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

// --- ParseRfc3339Millis -----------------------------------------------------------------------------------

TEST(ParseRfc3339Test, UtcWithZ) {
  ASSERT_OK_AND_ASSIGN(int64_t epoch, ParseRfc3339Millis("1970-01-01T00:00:00Z"));
  EXPECT_EQ(epoch, 0);
  ASSERT_OK_AND_ASSIGN(int64_t millis, ParseRfc3339Millis("2024-01-01T10:00:00Z"));
  EXPECT_EQ(millis, 1704103200000);
  EXPECT_EQ(millis, TimegmMillis(2024, 1, 1, 10, 0, 0));
  ASSERT_OK_AND_ASSIGN(int64_t lower, ParseRfc3339Millis("2024-01-01t10:00:00z"));
  EXPECT_EQ(lower, millis);
}

TEST(ParseRfc3339Test, OffsetsAreAppliedBothWays) {
  ASSERT_OK_AND_ASSIGN(int64_t utc, ParseRfc3339Millis("2024-06-15T12:00:00Z"));
  ASSERT_OK_AND_ASSIGN(int64_t moscow, ParseRfc3339Millis("2024-06-15T15:00:00+03:00"));
  ASSERT_OK_AND_ASSIGN(int64_t newfoundland, ParseRfc3339Millis("2024-06-15T08:30:00-03:30"));
  ASSERT_OK_AND_ASSIGN(int64_t zero, ParseRfc3339Millis("2024-06-15T12:00:00-00:00"));
  EXPECT_EQ(moscow, utc);
  EXPECT_EQ(newfoundland, utc);
  EXPECT_EQ(zero, utc);
  // An offset crossing midnight and the year boundary.
  ASSERT_OK_AND_ASSIGN(int64_t crossing, ParseRfc3339Millis("2024-01-01T01:00:00+05:00"));
  EXPECT_EQ(crossing, TimegmMillis(2023, 12, 31, 20, 0, 0));
}

TEST(ParseRfc3339Test, FractionalSecondsAreTruncatedToMillis) {
  const int64_t base = TimegmMillis(2024, 3, 1, 0, 0, 0);
  struct Case {
    const char* text;
    int64_t millis;
  };
  for (const Case& c : {Case{"2024-03-01T00:00:00.5Z", 500}, Case{"2024-03-01T00:00:00.05Z", 50},
                        Case{"2024-03-01T00:00:00.123Z", 123}, Case{"2024-03-01T00:00:00.1239Z", 123},
                        Case{"2024-03-01T00:00:00.999999999Z", 999}, Case{"2024-03-01T00:00:00.000Z", 0},
                        Case{"2024-03-01T03:00:00.250+03:00", 250}}) {
    ASSERT_OK_AND_ASSIGN(int64_t parsed, ParseRfc3339Millis(c.text));
    EXPECT_EQ(parsed, base + c.millis) << c.text;
  }
}

TEST(ParseRfc3339Test, LeapYears) {
  ASSERT_OK_AND_ASSIGN(int64_t leap, ParseRfc3339Millis("2024-02-29T00:00:00Z"));
  EXPECT_EQ(leap, TimegmMillis(2024, 2, 29, 0, 0, 0));
  ASSERT_OK_AND_ASSIGN(int64_t y2000, ParseRfc3339Millis("2000-02-29T23:59:59Z"));
  EXPECT_EQ(y2000, TimegmMillis(2000, 2, 29, 23, 59, 59));
  ASSERT_OK_AND_ASSIGN(int64_t end_of_year, ParseRfc3339Millis("2023-12-31T23:59:59Z"));
  EXPECT_EQ(end_of_year, TimegmMillis(2023, 12, 31, 23, 59, 59));
  ASSERT_OK_AND_ASSIGN(int64_t before_epoch, ParseRfc3339Millis("1969-12-31T23:59:59.500Z"));
  EXPECT_EQ(before_epoch, -500);
}

TEST(ParseRfc3339Test, LeapSecondIsClampedTo59) {
  ASSERT_OK_AND_ASSIGN(int64_t leap, ParseRfc3339Millis("2016-12-31T23:59:60Z"));
  EXPECT_EQ(leap, TimegmMillis(2016, 12, 31, 23, 59, 59));
}

TEST(ParseRfc3339Test, InvalidDatesAndFormatsAreRejected) {
  for (const char* bad : {
           "",
           "2023-02-29T00:00:00Z",           // not a leap year
           "1900-02-29T00:00:00Z",           // centuries are not leap years...
           "2024-04-31T00:00:00Z",           // April has 30 days
           "2024-13-01T00:00:00Z",           // month 13
           "2024-00-10T00:00:00Z",           // month 0
           "2024-01-00T00:00:00Z",           // day 0
           "2024-01-32T00:00:00Z",           // day 32
           "2024-01-01T24:00:00Z",           // hour 24
           "2024-01-01T00:60:00Z",           // minute 60
           "2024-01-01T00:00:61Z",           // second 61
           "2024-01-01T00:00:00",            // no zone
           "2024-01-01",                     // date only
           "2024-01-01 00:00:00Z",           // space instead of T
           "2024/01/01T00:00:00Z",           // wrong separators
           "24-01-01T00:00:00Z",             // two-digit year
           "2024-1-01T00:00:00Z",            // one-digit month
           "2024-01-01T00:00:00.Z",          // empty fraction
           "2024-01-01T00:00:00.1234567890Z",  // more than nanoseconds
           "2024-01-01T00:00:00+03",         // offset without minutes
           "2024-01-01T00:00:00+0300",       // offset without colon
           "2024-01-01T00:00:00+24:00",      // offset hour 24
           "2024-01-01T00:00:00+03:60",      // offset minute 60
           "2024-01-01T00:00:00ZZ",          // trailing text
           "2024-01-01T00:00:00Z ",          // trailing space
           " 2024-01-01T00:00:00Z",          // leading space
           "2024-01-01T00:00:00UTC",         // zone name
           "+2024-01-01T00:00:00Z",          // sign
           "2024-01-01T0a:00:00Z",           // letter in the hour
       }) {
    auto result = ParseRfc3339Millis(bad);
    EXPECT_FALSE(result.ok()) << "'" << bad << "' parsed as " << (result.ok() ? *result : 0);
    if (!result.ok()) {
      EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

// --- FormatRfc3339Millis --------------------------------------------------------------------------------

TEST(FormatRfc3339Test, FormatsUtcWithMillis) {
  EXPECT_EQ(FormatRfc3339Millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Millis(1704103200000), "2024-01-01T10:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Millis(1709164800007), "2024-02-29T00:00:00.007Z");
  EXPECT_EQ(FormatRfc3339Millis(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339Millis(-1000), "1969-12-31T23:59:59.000Z");
}

TEST(FormatRfc3339Test, RoundTripsThroughParse) {
  for (int64_t millis : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{1704103200123}, int64_t{951782400000},
                         int64_t{-86400001}, int64_t{4102444799999}, int64_t{1700000000000}}) {
    const std::string text = FormatRfc3339Millis(millis);
    ASSERT_OK_AND_ASSIGN(int64_t parsed, ParseRfc3339Millis(text));
    EXPECT_EQ(parsed, millis) << text;
  }
  // And text -> millis -> text for canonical strings.
  for (const char* text : {"2000-02-29T12:34:56.789Z", "2099-12-31T23:59:59.999Z", "1999-01-01T00:00:00.001Z"}) {
    ASSERT_OK_AND_ASSIGN(int64_t parsed, ParseRfc3339Millis(text));
    EXPECT_EQ(FormatRfc3339Millis(parsed), text);
  }
}

TEST(NowMillisTest, IsCloseToTheSystemClock) {
  const int64_t before = static_cast<int64_t>(std::time(nullptr)) * 1000;
  const int64_t now = NowMillis();
  const int64_t after = (static_cast<int64_t>(std::time(nullptr)) + 1) * 1000;
  EXPECT_GE(now, before);
  EXPECT_LE(now, after);
}

// --- ParseDurationSeconds -------------------------------------------------------------------------------

TEST(ParseDurationTest, UnitsAndBareSeconds) {
  struct Case {
    const char* text;
    int64_t seconds;
  };
  for (const Case& c : {Case{"90s", 90}, Case{"15m", 900}, Case{"1h", 3600}, Case{"7d", 604800}, Case{"45", 45},
                        Case{"1s", 1}, Case{"24h", 86400}}) {
    ASSERT_OK_AND_ASSIGN(int64_t seconds, ParseDurationSeconds(c.text));
    EXPECT_EQ(seconds, c.seconds) << c.text;
  }
}

TEST(ParseDurationTest, InvalidDurationsAreRejected) {
  for (const char* bad : {"", "s", "0", "0s", "-5s", "+5s", "1.5h", "1w", "h1", "1 h", " 1h", "1hh", "1H",
                          "99999999999999999999", "12725830d", "abc"}) {
    auto result = ParseDurationSeconds(bad);
    EXPECT_FALSE(result.ok()) << "'" << bad << "' parsed as " << (result.ok() ? *result : 0);
    if (!result.ok()) {
      EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseDurationTest, LargestAcceptedValues) {
  ASSERT_OK_AND_ASSIGN(int64_t days, ParseDurationSeconds("12725829d"));  // floor(2^40 / 86400)
  EXPECT_EQ(days, int64_t{12725829} * 86400);
  ASSERT_OK_AND_ASSIGN(int64_t seconds, ParseDurationSeconds("1099511627776"));  // 2^40
  EXPECT_EQ(seconds, int64_t{1} << 40);
  EXPECT_FALSE(ParseDurationSeconds("1099511627777").ok());
}

// --- Status ---------------------------------------------------------------------------------------------

TEST(StatusTest, OkAndErrorBasics) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), StatusCode::kOk);
  EXPECT_EQ(ok.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());

  Status error = Status::InvalidArgument("must be positive", "limit");
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error.message(), "must be positive");
  EXPECT_EQ(error.field(), "limit");
  EXPECT_EQ(error.ToString(), "InvalidArgument: must be positive (field: limit)");
  EXPECT_EQ(Status::NotFound("no such metric").ToString(), "NotFound: no such metric");
  EXPECT_EQ(&error.status(), &error);
}

TEST(StatusTest, FactoriesSetTheirCodes) {
  EXPECT_EQ(Status::NotFound("x").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::AlreadyExists("x").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Status::PermissionDenied("x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::Unauthenticated("x").code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(Status::ResourceExhausted("x").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Status::Unavailable("x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::Corruption("x").code(), StatusCode::kCorruption);
  EXPECT_EQ(Status::IOError("x").code(), StatusCode::kIOError);
  EXPECT_EQ(Status::FailedPrecondition("x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Status::Internal("x").code(), StatusCode::kInternal);
  EXPECT_EQ(StatusCodeName(StatusCode::kCorruption), "Corruption");
  EXPECT_EQ(StatusCodeName(StatusCode::kFailedPrecondition), "FailedPrecondition");
  EXPECT_EQ(Status::Internal("x").field(), "");
}

TEST(StatusTest, WithFieldPrefix) {
  // No field: the prefix becomes the field.
  EXPECT_EQ(Status::InvalidArgument("bad").WithFieldPrefix("concurrency").field(), "concurrency");
  // A named field is joined with a dot.
  EXPECT_EQ(Status::InvalidArgument("bad", "op").WithFieldPrefix("filters[1]").field(), "filters[1].op");
  // An index is appended without a dot.
  EXPECT_EQ(Status::InvalidArgument("bad", "[2]").WithFieldPrefix("tags").field(), "tags[2]");
  // Nested prefixes compose from the inside out.
  Status nested = Status::InvalidArgument("bad", "value").WithFieldPrefix("filters[0]").WithFieldPrefix("spec");
  EXPECT_EQ(nested.field(), "spec.filters[0].value");
  // Code and message are kept; the original is unchanged.
  Status original = Status::InvalidArgument("must be a string", "name");
  Status prefixed = original.WithFieldPrefix("metric");
  EXPECT_EQ(prefixed.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(prefixed.message(), "must be a string");
  EXPECT_EQ(original.field(), "name");
  // OK stays OK with no field.
  Status ok = Status::Ok().WithFieldPrefix("anything");
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.field(), "");
}

// --- Result ---------------------------------------------------------------------------------------------

Result<int> Half(int value) {
  if (value % 2 != 0) return Status::InvalidArgument("odd", "value");
  return value / 2;
}

Result<int> Quarter(int value) {
  ANALYTICS_ASSIGN_OR_RETURN(int half, Half(value));
  ANALYTICS_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int value) {
  ANALYTICS_RETURN_IF_ERROR(Half(value).status());
  return Status::Ok();
}

TEST(ResultTest, HoldsAValueOrAnError) {
  Result<int> value = Half(10);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 5);
  EXPECT_EQ(value.value(), 5);
  EXPECT_TRUE(value.status().ok());

  Result<int> error = Half(3);
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error.status().field(), "value");
}

TEST(ResultTest, MacrosPropagateErrors) {
  ASSERT_OK_AND_ASSIGN(int quarter, Quarter(12));
  EXPECT_EQ(quarter, 3);
  EXPECT_FALSE(Quarter(6).ok());  // 6 -> 3 is odd
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_OK(CheckEven(4));
  EXPECT_EQ(CheckEven(5).code(), StatusCode::kInvalidArgument);
}

TEST(ResultTest, MoveOnlyValuesAndArrow) {
  Result<std::unique_ptr<std::string>> result = std::make_unique<std::string>("payload");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ((*result)->size(), 7u);
  std::unique_ptr<std::string> taken = std::move(result).value();
  EXPECT_EQ(*taken, "payload");

  Result<std::string> text = std::string("abc");
  EXPECT_EQ(text->size(), 3u);
  text->append("d");
  EXPECT_EQ(*text, "abcd");
}

}  // namespace
}  // namespace analytics::common
