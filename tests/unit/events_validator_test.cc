// Validation against docs/events.md through the public entry point (Normalizer::Process): envelope,
// user, well-known fields, value formats, every catalogued type, batches with mixed events, the StoredEvent
// fields and the read-back CloudEvent. Expectations come from docs/events.md, not from the implementation:
// every JSON example of the doc must be accepted.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "events/event_catalog.h"
#include "events/event_json.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "events/value_formats.h"
#include "support/test_env.h"

namespace analytics::events {
namespace {

using nlohmann::json;

// After every example of docs/events.md (the latest is 2025-04-14), so none of them is "in the future".
constexpr int64_t kNow = 1748736000000;  // 2025-06-01T00:00:00.000Z
constexpr std::string_view kUser = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

json Envelope(const std::string& type, json data, std::optional<std::string> subject = std::string(kUser)) {
  json event = {{"specversion", "1.0"},
                {"id", "evt-1"},
                {"source", "/services/test"},
                {"type", type},
                {"time", "2025-03-21T19:00:00Z"}};
  if (subject) event["subject"] = *subject;
  if (!data.is_null()) event["data"] = std::move(data);
  return event;
}

class EventsValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = Pseudonymizer::Create(std::string(32, 'k'));
    ASSERT_OK(created);
    pseudonymizer_ = std::move(created).value();
    normalizer_ = std::make_unique<Normalizer>(NormalizerOptions{}, *pseudonymizer_);
  }

  BatchResult Process(const json& event, const NormalizerOptions* options = nullptr) const {
    if (options != nullptr) return Normalizer(*options, *pseudonymizer_).Process(event.dump(), BodyFormat::kSingle, kNow);
    return normalizer_->Process(event.dump(), BodyFormat::kSingle, kNow);
  }

  // The one accepted event; fails the test when it was rejected.
  StoredEvent Accept(const json& event) const {
    BatchResult result = Process(event);
    EXPECT_FALSE(result.body_error.has_value());
    if (!result.rejections.empty()) {
      ADD_FAILURE() << "rejected: " << RejectionCodeName(result.rejections[0].code) << " "
                    << result.rejections[0].field << ": " << result.rejections[0].message << "\n"
                    << event.dump();
      return {};
    }
    EXPECT_EQ(result.events.size(), 1u);
    return result.events.empty() ? StoredEvent{} : result.events[0].ToStored();
  }

  // The one rejection; fails the test when the event was accepted.
  Rejection Reject(const json& event, const NormalizerOptions* options = nullptr) const {
    BatchResult result = Process(event, options);
    EXPECT_FALSE(result.body_error.has_value());
    if (result.rejections.empty()) {
      ADD_FAILURE() << "accepted, expected a rejection: " << event.dump();
      return {};
    }
    EXPECT_TRUE(result.events.empty());
    return result.rejections[0];
  }

  void ExpectRejected(const json& event, RejectionCode code, const std::string& field) const {
    Rejection rejection = Reject(event);
    EXPECT_EQ(RejectionCodeName(rejection.code), RejectionCodeName(code))
        << rejection.field << ": " << rejection.message << "\n" << event.dump();
    EXPECT_EQ(rejection.field, field) << rejection.message << "\n" << event.dump();
    EXPECT_FALSE(rejection.message.empty());
  }

  std::unique_ptr<Pseudonymizer> pseudonymizer_;
  std::unique_ptr<Normalizer> normalizer_;
};

// ---- The catalog document itself ----

std::vector<json> DocExamples() {
  std::ifstream file(std::string(ANALYTICS_DOCS_DIR) + "/events.md");
  std::stringstream text;
  text << file.rdbuf();
  const std::string doc = text.str();
  std::vector<json> examples;
  size_t pos = 0;
  while ((pos = doc.find("```json\n", pos)) != std::string::npos) {
    pos += 8;
    const size_t end = doc.find("```", pos);
    examples.push_back(json::parse(doc.substr(pos, end - pos)));
    pos = end + 3;
  }
  return examples;
}

TEST_F(EventsValidatorTest, EveryExampleOfTheCatalogIsAcceptedAndEveryTypeHasOne) {
  std::vector<json> examples = DocExamples();
  ASSERT_EQ(examples.size(), 24u);
  std::set<std::string> example_types;
  for (const json& example : examples) {
    SCOPED_TRACE(example["type"].get<std::string>());
    example_types.insert(example["type"].get<std::string>());
    StoredEvent event = Accept(example);
    EXPECT_EQ(event.type, example["type"]);
    EXPECT_EQ(event.id, example["id"]);
    EXPECT_EQ(event.time_ms, *common::ParseRfc3339Millis(example["time"].get<std::string>()));
    EXPECT_FALSE(event.time_defaulted);
    ASSERT_NE(FindTypeSchema(event.type), nullptr);
    if (example.contains("subject")) {
      EXPECT_EQ(event.user, pseudonymizer_->Pseudonymize(example["subject"].get<std::string>()));
    } else {
      EXPECT_EQ(event.user, "");
    }
  }
  std::set<std::string> catalog_types;
  for (const TypeSchema& schema : AllTypeSchemas()) catalog_types.insert(std::string(schema.type));
  EXPECT_EQ(example_types, catalog_types);
}

TEST_F(EventsValidatorTest, ReviewExampleStoresTextLengthInsteadOfText) {
  for (const json& example : DocExamples()) {
    if (example["type"] != "com.platform.reviews.review.posted.v1") continue;
    json data = json::parse(Accept(example).data);
    EXPECT_FALSE(data.contains("text"));
    EXPECT_EQ(data["text_length"], 41);  // stated by docs/events.md under the example
  }
}

TEST_F(EventsValidatorTest, RegisteredExampleTruncatesTheIp) {
  for (const json& example : DocExamples()) {
    if (example["type"] != "com.platform.account.user.registered.v1") continue;
    StoredEvent event = Accept(example);
    EXPECT_EQ(json::parse(event.data)["ip"], "203.0.113.0");
    EXPECT_EQ(json::parse(event.extensions), json({{"datacontenttype", "application/json"}}));
    EXPECT_EQ(event.country, "RU");
    EXPECT_EQ(event.platform, "windows");
  }
}

TEST_F(EventsValidatorTest, PurchaseExampleFillsTheTypedColumns) {
  for (const json& example : DocExamples()) {
    if (example["type"] != "com.platform.payments.purchase.completed.v1") continue;
    StoredEvent event = Accept(example);
    EXPECT_EQ(event.game_id, "game_1042");
    ASSERT_TRUE(event.amount.has_value());
    EXPECT_DOUBLE_EQ(*event.amount, 1049.3);
    EXPECT_EQ(event.currency, "RUB");
    EXPECT_EQ(event.country, "RU");
    EXPECT_EQ(event.platform, "windows");
    EXPECT_EQ(event.session_id, "");
    EXPECT_EQ(event.time_ms, *common::ParseRfc3339Millis("2025-03-21T19:01:31.004Z"));
    EXPECT_EQ(event.received_ms, kNow);
    EXPECT_TRUE(event.user_in_subject);
    EXPECT_EQ(event.extensions, "");
  }
}

// ---- Envelope (section 2) ----

json Wishlist() { return Envelope("com.platform.store.wishlist_item.added.v1", {{"game_id", "game_1"}}); }

TEST_F(EventsValidatorTest, RequiredAttributesMissing) {
  for (const char* name : {"specversion", "id", "source", "type"}) {
    json event = Wishlist();
    event.erase(name);
    ExpectRejected(event, RejectionCode::kMissingAttribute, name);
    event[name] = nullptr;  // null counts as absent
    ExpectRejected(event, RejectionCode::kMissingAttribute, name);
  }
}

TEST_F(EventsValidatorTest, SpecversionMustBeTheString10) {
  for (json value : {json("0.3"), json(1.0), json("1")}) {
    json event = Wishlist();
    event["specversion"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "specversion");
  }
}

TEST_F(EventsValidatorTest, IdRules) {
  json event = Wishlist();
  event["id"] = std::string(256, 'a');
  Accept(event);
  event["id"] = std::string(128, 'x') + std::string(64, 'y') + "\u00e9\u00e9";  // characters, not bytes
  Accept(event);
  for (json value : {json(""), json(std::string(257, 'a')), json(42)}) {
    event["id"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "id");
  }
}

TEST_F(EventsValidatorTest, SourceRules) {
  json event = Wishlist();
  for (const char* good : {"/services/payments", "https://example.com/a?b=c#d", "urn:x:y", "/a%20b"}) {
    event["source"] = good;
    EXPECT_EQ(Accept(event).source, good);
  }
  for (json value : {json(""), json("/has space"), json("/bad%2"), json(std::string(513, 'a')), json(7),
                     json("/\u00e9")}) {
    event["source"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "source");
  }
}

TEST_F(EventsValidatorTest, TypePattern) {
  for (const char* good : {"com.platform.foo.bar_baz.did_it.v12", "com.platform.a.b.c.v1", "com.platform.a1.b2_.c3.v9"}) {
    EXPECT_TRUE(IsEventType(good)) << good;
  }
  for (const char* bad : {"com.platform.a.b.v1", "com.platform.A.b.c.v1", "com.platform.a.b.c.v0",
                          "com.platform.a.b.c.V1", "org.platform.a.b.c.v1", "com.platform.a.b.c.v1.x",
                          "com.platform.a.b.c.v01", "com.platform.1a.b.c.v1", "com.platform._a.b.c.v1",
                          "com.platform.a.b-c.d.v1", "com.platform.a..c.v1", "com.platform.a.b.c.v", ""}) {
    EXPECT_FALSE(IsEventType(bad)) << bad;
    json event = Envelope(bad, json::object());
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "type");
  }
}

TEST_F(EventsValidatorTest, UncataloguedTypeIsAGenericEventUnlessStrict) {
  json event = Envelope("com.platform.guilds.guild.joined.v1", {{"guild_id", "g1"}, {"game_id", "game_7"}});
  StoredEvent stored = Accept(event);
  EXPECT_EQ(stored.game_id, "game_7");
  EXPECT_EQ(json::parse(stored.data)["guild_id"], "g1");

  NormalizerOptions strict;
  strict.strict_types = true;
  Rejection rejection = Reject(event, &strict);
  EXPECT_EQ(rejection.code, RejectionCode::kUnknownEventType);
  EXPECT_EQ(rejection.field, "type");
  // A catalogued type is still fine in strict mode.
  EXPECT_TRUE(Process(Wishlist(), &strict).rejections.empty());
}

TEST_F(EventsValidatorTest, TimeAbsentUsesTheReceiveTimeAndIsFlagged) {
  json event = Wishlist();
  event.erase("time");
  StoredEvent stored = Accept(event);
  EXPECT_TRUE(stored.time_defaulted);
  EXPECT_EQ(stored.time_ms, kNow);
  EXPECT_EQ(stored.received_ms, kNow);
  event["time"] = nullptr;
  EXPECT_TRUE(Accept(event).time_defaulted);
}

TEST_F(EventsValidatorTest, TimeWithOffsetAndFraction) {
  json event = Wishlist();
  event["time"] = "2025-03-14T18:01:44.907+03:00";
  EXPECT_EQ(Accept(event).time_ms, *common::ParseRfc3339Millis("2025-03-14T15:01:44.907Z"));
  event["time"] = "2025-03-14T18:01:44.123456789Z";
  EXPECT_EQ(Accept(event).time_ms % 1000, 123);
}

TEST_F(EventsValidatorTest, TimeFormatErrors) {
  for (json value : {json("2025-03-14T18:01:44"), json("2025-02-30T00:00:00Z"), json("yesterday"),
                     json(1742600000000), json("2025-03-14 18:01:44Z")}) {
    json event = Wishlist();
    event["time"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "time");
  }
}

TEST_F(EventsValidatorTest, FutureAndLateEvents) {
  json event = Wishlist();
  event["time"] = common::FormatRfc3339Millis(kNow + 3600000);  // exactly one hour ahead: allowed
  Accept(event);
  event["time"] = common::FormatRfc3339Millis(kNow + 3600001);
  ExpectRejected(event, RejectionCode::kEventInFuture, "time");
  event["time"] = "2001-01-01T00:00:00Z";  // old and late events are accepted
  EXPECT_EQ(Accept(event).time_ms, 978307200000);

  NormalizerOptions tight;
  tight.max_future_ms = 0;
  event["time"] = common::FormatRfc3339Millis(kNow + 1);
  EXPECT_EQ(Reject(event, &tight).code, RejectionCode::kEventInFuture);
}

TEST_F(EventsValidatorTest, DataContentTypeAndSchemaAreCheckedAndKept) {
  json event = Wishlist();
  event["datacontenttype"] = "application/json; charset=utf-8";
  event["dataschema"] = "https://schemas.example.com/wishlist.json";
  StoredEvent stored = Accept(event);
  EXPECT_EQ(json::parse(stored.extensions),
            json({{"datacontenttype", "application/json; charset=utf-8"},
                  {"dataschema", "https://schemas.example.com/wishlist.json"}}));

  json bad_type = Wishlist();
  bad_type["datacontenttype"] = "text/plain";
  ExpectRejected(bad_type, RejectionCode::kInvalidAttribute, "datacontenttype");
  json bad_schema = Wishlist();
  bad_schema["dataschema"] = "not a uri";
  ExpectRejected(bad_schema, RejectionCode::kInvalidAttribute, "dataschema");
  bad_schema["dataschema"] = "/relative/only";
  ExpectRejected(bad_schema, RejectionCode::kInvalidAttribute, "dataschema");
}

TEST_F(EventsValidatorTest, ExtensionAttributesAreKeptOthersAreInvalid) {
  json event = Wishlist();
  event["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  event["partitionkey"] = 7;
  event["sampled"] = true;
  event["nothing"] = nullptr;  // null: absent
  StoredEvent stored = Accept(event);
  EXPECT_EQ(json::parse(stored.extensions),
            json({{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                  {"partitionkey", 7},
                  {"sampled", true}}));

  for (const char* bad_name : {"traceParent", "trace_parent", "abcdefghijklmnopqrstu", "x-y"}) {
    json bad = Wishlist();
    bad[bad_name] = "v";
    ExpectRejected(bad, RejectionCode::kInvalidAttribute, bad_name);
  }
  json object_value = Wishlist();
  object_value["myext"] = {{"a", 1}};
  ExpectRejected(object_value, RejectionCode::kInvalidAttribute, "myext");
  json binary = Wishlist();
  binary["data_base64"] = "AAEC";
  ExpectRejected(binary, RejectionCode::kInvalidAttribute, "data_base64");
}

TEST_F(EventsValidatorTest, DuplicateAttributeIsInvalid) {
  const std::string body =
      R"({"specversion":"1.0","id":"a","id":"b","source":"/s","type":"com.platform.x.y.z.v1"})";
  BatchResult result = normalizer_->Process(body, BodyFormat::kSingle, kNow);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kInvalidAttribute);
  EXPECT_EQ(result.rejections[0].field, "id");
}

TEST_F(EventsValidatorTest, DataMustBeAnObject) {
  for (json value : {json("text"), json::array({1}), json(3)}) {
    json event = Wishlist();
    event["data"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "data");
  }
}

TEST_F(EventsValidatorTest, DataMayBeAbsentOnlyWithoutRequiredFields) {
  json logout = Envelope("com.platform.account.user.logged_out.v1", nullptr);
  EXPECT_EQ(Accept(logout).data, "");
  json deleted = Envelope("com.platform.account.user.deleted.v1", nullptr);
  Accept(deleted);
  json wishlist = Envelope("com.platform.store.wishlist_item.added.v1", nullptr);
  ExpectRejected(wishlist, RejectionCode::kMissingAttribute, "data");
}

// ---- The user (section 3) ----

TEST_F(EventsValidatorTest, UserFromSubject) {
  StoredEvent stored = Accept(Wishlist());
  EXPECT_EQ(stored.user, pseudonymizer_->Pseudonymize(kUser));
  EXPECT_TRUE(stored.user_in_subject);
  EXPECT_FALSE(json::parse(stored.data).contains("user_id"));
}

TEST_F(EventsValidatorTest, UserFromDataUserId) {
  json event = Envelope("com.platform.store.wishlist_item.added.v1",
                        {{"game_id", "game_1"}, {"user_id", std::string(kUser)}}, std::nullopt);
  StoredEvent stored = Accept(event);
  EXPECT_EQ(stored.user, pseudonymizer_->Pseudonymize(kUser));
  EXPECT_FALSE(stored.user_in_subject);
  EXPECT_EQ(json::parse(stored.data)["user_id"], stored.user);
}

TEST_F(EventsValidatorTest, SubjectAndUserIdMustAgree) {
  json same = Envelope("com.platform.store.wishlist_item.added.v1",
                       {{"game_id", "game_1"}, {"user_id", std::string(kUser)}});
  StoredEvent stored = Accept(same);
  EXPECT_TRUE(stored.user_in_subject);
  EXPECT_EQ(json::parse(stored.data)["user_id"], stored.user);

  json different = Envelope("com.platform.store.wishlist_item.added.v1",
                            {{"game_id", "game_1"}, {"user_id", "someone-else"}});
  ExpectRejected(different, RejectionCode::kInvalidField, "data.user_id");
}

TEST_F(EventsValidatorTest, RequiredUserMissing) {
  json event = Envelope("com.platform.store.wishlist_item.added.v1", {{"game_id", "game_1"}}, std::nullopt);
  ExpectRejected(event, RejectionCode::kMissingAttribute, "subject");
}

TEST_F(EventsValidatorTest, OptionalUserMayBeAbsent) {
  json event = Envelope("com.platform.store.page.viewed.v1", {{"page_type", "home"}, {"anonymous_id", "anon-1"}},
                        std::nullopt);
  StoredEvent stored = Accept(event);
  EXPECT_EQ(stored.user, "");
  EXPECT_FALSE(stored.user_in_subject);
}

TEST_F(EventsValidatorTest, TypesWithoutUserRejectOne) {
  json data = {{"game_id", "game_1"}, {"developer_id", "dev_org_1"}};
  ExpectRejected(Envelope("com.platform.catalog.game.published.v1", data), RejectionCode::kInvalidAttribute,
                 "subject");
  data["user_id"] = "u-1";
  ExpectRejected(Envelope("com.platform.catalog.game.published.v1", data, std::nullopt),
                 RejectionCode::kInvalidField, "data.user_id");
  data["user_id"] = nullptr;  // null: absent
  Accept(Envelope("com.platform.catalog.game.published.v1", data, std::nullopt));
}

TEST_F(EventsValidatorTest, UserIdFormat) {
  json event = Wishlist();
  event["subject"] = std::string(128, 'u');
  Accept(event);
  for (json value : {json(std::string(129, 'u')), json("has space"), json("a/b"), json(12345), json("")}) {
    event["subject"] = value;
    ExpectRejected(event, RejectionCode::kInvalidAttribute, "subject");
  }
  json in_data = Envelope("com.platform.store.wishlist_item.added.v1", {{"game_id", "g"}, {"user_id", 12345}},
                          std::nullopt);
  ExpectRejected(in_data, RejectionCode::kInvalidField, "data.user_id");
}

// ---- Well-known fields and value formats (sections 4, 5, 7) on a generic type ----

json Generic(json data) { return Envelope("com.platform.misc.thing.happened.v1", std::move(data)); }

TEST_F(EventsValidatorTest, WellKnownFieldsAreExtracted) {
  StoredEvent stored = Accept(Generic({{"game_id", "game:42"},
                                       {"session_id", "s-1.a_b"},
                                       {"amount", 499},
                                       {"currency", "USD"},
                                       {"country", "KZ"},
                                       {"platform", "steamdeck"},
                                       {"custom", {{"nested", 1}}}}));
  EXPECT_EQ(stored.game_id, "game:42");
  EXPECT_EQ(stored.session_id, "s-1.a_b");
  ASSERT_TRUE(stored.amount.has_value());
  EXPECT_EQ(*stored.amount, 499.0);
  EXPECT_EQ(stored.currency, "USD");
  EXPECT_EQ(stored.country, "KZ");
  EXPECT_EQ(stored.platform, "steamdeck");
  EXPECT_EQ(json::parse(stored.data)["custom"]["nested"], 1);
}

TEST_F(EventsValidatorTest, DataIsCompactJsonInBodyOrder) {
  const std::string body = R"({"specversion":"1.0","id":"e","source":"/s","type":"com.platform.a.b.c.v1",
    "data": { "z" : 1 , "a" : [ true , null , 2.5 , "x\"y\n" ], "game_id": "g1", "amount": 10.0, "currency":"RUB" }})";
  BatchResult result = normalizer_->Process(body, BodyFormat::kSingle, kNow);
  ASSERT_EQ(result.events.size(), 1u);
  // Key order as sent; 10.0 is the number 10; strings re-escaped.
  EXPECT_EQ(result.events[0].data,
            R"({"z":1,"a":[true,null,2.5,"x\"y\n"],"game_id":"g1","amount":10,"currency":"RUB"})");
}

TEST_F(EventsValidatorTest, NullWellKnownFieldIsAbsent) {
  StoredEvent stored = Accept(Generic({{"game_id", nullptr}, {"amount", nullptr}}));
  EXPECT_EQ(stored.game_id, "");
  EXPECT_FALSE(stored.amount.has_value());
}

TEST_F(EventsValidatorTest, AmountNeedsCurrencyOnEveryType) {
  ExpectRejected(Generic({{"amount", 10}}), RejectionCode::kMissingField, "data.currency");
  Accept(Generic({{"currency", "RUB"}}));  // currency alone is fine
}

TEST_F(EventsValidatorTest, MoneyRange) {
  Accept(Generic({{"amount", 0}, {"currency", "RUB"}}));
  Accept(Generic({{"amount", 1000000000}, {"currency", "RUB"}}));
  Accept(Generic({{"amount", 0.01}, {"currency", "RUB"}}));
  for (json value : {json(-0.01), json(1000000000.5), json("399"), json(true)}) {
    ExpectRejected(Generic({{"amount", value}, {"currency", "RUB"}}), RejectionCode::kInvalidField, "data.amount");
  }
}

struct FormatCase {
  const char* field;
  json value;
};

TEST_F(EventsValidatorTest, WellKnownAndCommonFieldFormats) {
  const FormatCase kInvalid[] = {
      {"game_id", 1042},                         // a number is not an id string
      {"game_id", "game/1042"},
      {"game_id", ""},
      {"game_id", std::string(129, 'g')},
      {"session_id", "s 1"},
      {"currency", "rub"},
      {"currency", "RUBL"},
      {"country", "RUS"},
      {"country", "ru"},
      {"platform", "win"},
      {"platform", "Windows"},
      {"device_id", "dev id"},
      {"app_version", std::string(33, '1')},
      {"locale", std::string(36, 'a')},
  };
  for (const FormatCase& test_case : kInvalid) {
    json data = {{test_case.field, test_case.value}};
    if (std::string(test_case.field) != "currency") data["currency"] = "RUB";
    ExpectRejected(Generic(data), RejectionCode::kInvalidField, std::string("data.") + test_case.field);
  }
  Accept(Generic({{"game_id", std::string(128, 'g')},
                  {"app_version", std::string(32, '1')},
                  {"locale", "ru-RU"},
                  {"device_id", "dev-4f1c9a"}}));
}

TEST_F(EventsValidatorTest, DuplicateCatalogFieldIsInvalid) {
  const std::string body =
      R"({"specversion":"1.0","id":"a","source":"/s","type":"com.platform.x.y.z.v1","data":{"game_id":"a","game_id":"b"}})";
  BatchResult result = normalizer_->Process(body, BodyFormat::kSingle, kNow);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kInvalidField);
  EXPECT_EQ(result.rejections[0].field, "data.game_id");
}

// ---- Per-type schemas (section 9) ----

struct TypeCase {
  std::string name;
  std::string type;
  json data;                     // data of the event
  RejectionCode code;
  std::string field;
  bool with_subject = true;
};

// gtest prints parameters in test listings; the name is enough.
void PrintTo(const TypeCase& test_case, std::ostream* os) { *os << test_case.name; }

// Valid data for each type, mutated by the cases below.
json ValidData(const std::string& type) {
  static const std::map<std::string, json> kValid = {
      {"com.platform.account.user.registered.v1", {{"auth_provider", "vk"}}},
      {"com.platform.account.user.logged_in.v1", {{"auth_method", "password"}, {"two_factor", true}}},
      {"com.platform.account.profile.updated.v1", {{"changed_fields", {"display_name", "country"}}}},
      {"com.platform.account.user.deleted.v1", {{"reason", "user_request"}}},
      {"com.platform.catalog.game.published.v1", {{"game_id", "game_1"}, {"developer_id", "dev_org_1"}}},
      {"com.platform.catalog.price.changed.v1",
       {{"game_id", "game_1"}, {"currency", "RUB"}, {"old_price", 1499}, {"new_price", 1049.3}}},
      {"com.platform.store.page.viewed.v1", {{"page_type", "game"}, {"game_id", "game_1"}}},
      {"com.platform.store.search.performed.v1", {{"query", "northern lights"}, {"results_count", 3}}},
      {"com.platform.store.wishlist_item.added.v1", {{"game_id", "game_1"}}},
      {"com.platform.store.wishlist_item.removed.v1", {{"game_id", "game_1"}, {"reason", "purchased"}}},
      {"com.platform.cart.item.added.v1",
       {{"cart_id", "c1"}, {"game_id", "game_1"}, {"amount", 399}, {"currency", "RUB"}}},
      {"com.platform.cart.item.removed.v1", {{"cart_id", "c1"}, {"game_id", "game_1"}}},
      {"com.platform.cart.checkout.started.v1",
       {{"cart_id", "c1"}, {"amount", 399}, {"currency", "RUB"}, {"items_count", 1}}},
      {"com.platform.payments.purchase.completed.v1",
       {{"order_id", "o1"}, {"game_id", "game_1"}, {"amount", 399}, {"currency", "RUB"}}},
      {"com.platform.payments.purchase.failed.v1",
       {{"order_id", "o1"}, {"amount", 399}, {"currency", "RUB"}, {"failure_reason", "declined"}}},
      {"com.platform.payments.refund.completed.v1",
       {{"order_id", "o1"}, {"game_id", "game_1"}, {"amount", 399}, {"currency", "RUB"}}},
      {"com.platform.library.game.installed.v1", {{"game_id", "game_1"}}},
      {"com.platform.library.session.started.v1", {{"game_id", "game_1"}, {"session_id", "s1"}}},
      {"com.platform.library.session.ended.v1",
       {{"game_id", "game_1"}, {"session_id", "s1"}, {"duration_seconds", 60}}},
      {"com.platform.achievements.achievement.unlocked.v1", {{"game_id", "game_1"}, {"achievement_id", "a1"}}},
      {"com.platform.reviews.review.posted.v1", {{"game_id", "game_1"}, {"review_id", "r1"}, {"rating", 5}}},
      {"com.platform.social.friend.added.v1", {{"friend_user_id", "2b1e4a7c-9d3f-4e8a-b6c5-1f0e9d8c7b6a"}}},
      {"com.platform.experiments.exposure.recorded.v1", {{"experiment", "exp_1"}, {"variant", "b"}}},
  };
  return kValid.at(type);
}

TEST_F(EventsValidatorTest, MinimalValidDataOfEveryType) {
  for (const TypeSchema& schema : AllTypeSchemas()) {
    const std::string type(schema.type);
    if (type == "com.platform.account.user.logged_out.v1") continue;  // no data at all: covered elsewhere
    SCOPED_TRACE(type);
    const bool has_user = schema.user != UserRule::kNone;
    Accept(Envelope(type, ValidData(type), has_user ? std::optional<std::string>(std::string(kUser)) : std::nullopt));
  }
}

json With(json data, const std::string& field, json value) {
  if (value.is_discarded()) {
    data.erase(field);
  } else {
    data[field] = std::move(value);
  }
  return data;
}
json Without(json data, const std::string& field) { return With(std::move(data), field, json(json::value_t::discarded)); }

std::vector<TypeCase> InvalidTypeCases() {
  const std::string kRegistered = "com.platform.account.user.registered.v1";
  const std::string kLoggedIn = "com.platform.account.user.logged_in.v1";
  const std::string kLoggedOut = "com.platform.account.user.logged_out.v1";
  const std::string kProfile = "com.platform.account.profile.updated.v1";
  const std::string kDeleted = "com.platform.account.user.deleted.v1";
  const std::string kPublished = "com.platform.catalog.game.published.v1";
  const std::string kPrice = "com.platform.catalog.price.changed.v1";
  const std::string kPage = "com.platform.store.page.viewed.v1";
  const std::string kSearch = "com.platform.store.search.performed.v1";
  const std::string kWishAdd = "com.platform.store.wishlist_item.added.v1";
  const std::string kWishRemove = "com.platform.store.wishlist_item.removed.v1";
  const std::string kCartAdd = "com.platform.cart.item.added.v1";
  const std::string kCartRemove = "com.platform.cart.item.removed.v1";
  const std::string kCheckout = "com.platform.cart.checkout.started.v1";
  const std::string kPurchase = "com.platform.payments.purchase.completed.v1";
  const std::string kFailed = "com.platform.payments.purchase.failed.v1";
  const std::string kRefund = "com.platform.payments.refund.completed.v1";
  const std::string kInstalled = "com.platform.library.game.installed.v1";
  const std::string kStarted = "com.platform.library.session.started.v1";
  const std::string kEnded = "com.platform.library.session.ended.v1";
  const std::string kAchievement = "com.platform.achievements.achievement.unlocked.v1";
  const std::string kReview = "com.platform.reviews.review.posted.v1";
  const std::string kFriend = "com.platform.social.friend.added.v1";
  const std::string kExposure = "com.platform.experiments.exposure.recorded.v1";
  const auto kInvalid = RejectionCode::kInvalidField;
  const auto kMissing = RejectionCode::kMissingField;
  std::vector<std::string> genres_17;
  for (int genre_idx = 0; genre_idx < 17; ++genre_idx) genres_17.push_back(std::string("g").append(std::to_string(genre_idx)));
  std::vector<std::string> fields_33;
  for (int field_idx = 0; field_idx < 33; ++field_idx) fields_33.push_back(std::string("f").append(std::to_string(field_idx)));
  return {
      // 9.1 Account
      {"RegisteredBadProvider", kRegistered, With(ValidData(kRegistered), "auth_provider", "facebook"), kInvalid, "data.auth_provider"},
      {"RegisteredLongUtm", kRegistered, With(ValidData(kRegistered), "utm_source", std::string(129, 'u')), kInvalid, "data.utm_source"},
      {"RegisteredBadReferrer", kRegistered, With(ValidData(kRegistered), "referrer_user_id", "bad id!"), kInvalid, "data.referrer_user_id"},
      {"RegisteredConsentNotBool", kRegistered, With(ValidData(kRegistered), "marketing_consent", "yes"), kInvalid, "data.marketing_consent"},
      {"RegisteredWithoutUser", kRegistered, ValidData(kRegistered), RejectionCode::kMissingAttribute, "subject", false},
      {"LoggedInBadMethod", kLoggedIn, With(ValidData(kLoggedIn), "auth_method", "PASSWORD"), kInvalid, "data.auth_method"},
      {"LoggedInTwoFactorNotBool", kLoggedIn, With(ValidData(kLoggedIn), "two_factor", 1), kInvalid, "data.two_factor"},
      {"LoggedOutBadReason", kLoggedOut, {{"reason", "bored"}}, kInvalid, "data.reason"},
      {"ProfileNoChangedFields", kProfile, json::object(), kMissing, "data.changed_fields"},
      {"ProfileEmptyChangedFields", kProfile, {{"changed_fields", json::array()}}, kInvalid, "data.changed_fields"},
      {"ProfileDuplicateNames", kProfile, {{"changed_fields", {"avatar", "avatar"}}}, kInvalid, "data.changed_fields"},
      {"ProfileBadName", kProfile, {{"changed_fields", {"Display"}}}, kInvalid, "data.changed_fields"},
      {"ProfileTooManyNames", kProfile, {{"changed_fields", fields_33}}, kInvalid, "data.changed_fields"},
      {"ProfileBadCountry", kProfile, With(ValidData(kProfile), "country", "kz"), kInvalid, "data.country"},
      {"DeletedBadRequestedAt", kDeleted, {{"requested_at", "2025-03-15"}}, kInvalid, "data.requested_at"},
      {"DeletedBadReason", kDeleted, {{"reason", "user"}}, kInvalid, "data.reason"},
      // 9.2 Catalog
      {"PublishedNoDeveloper", kPublished, Without(ValidData(kPublished), "developer_id"), kMissing, "data.developer_id", false},
      {"PublishedNoGame", kPublished, Without(ValidData(kPublished), "game_id"), kMissing, "data.game_id", false},
      {"PublishedPriceWithoutCurrency", kPublished, With(ValidData(kPublished), "price", 1499), kMissing, "data.currency", false},
      {"PublishedNegativePrice", kPublished, With(With(ValidData(kPublished), "price", -1), "currency", "RUB"), kInvalid, "data.price", false},
      {"PublishedTooManyGenres", kPublished, With(ValidData(kPublished), "genres", genres_17), kInvalid, "data.genres", false},
      {"PublishedDuplicateGenres", kPublished, With(ValidData(kPublished), "genres", {"rpg", "rpg"}), kInvalid, "data.genres", false},
      {"PublishedEmptyGenre", kPublished, With(ValidData(kPublished), "genres", {""}), kInvalid, "data.genres", false},
      {"PublishedBadReleaseDate", kPublished, With(ValidData(kPublished), "release_date", "2025-13-01"), kInvalid, "data.release_date", false},
      {"PublishedDuplicatePlatforms", kPublished, With(ValidData(kPublished), "platforms", {"windows", "windows"}), kInvalid, "data.platforms", false},
      {"PublishedUnknownPlatform", kPublished, With(ValidData(kPublished), "platforms", {"dos"}), kInvalid, "data.platforms", false},
      {"PublishedTitleTooLong", kPublished, With(ValidData(kPublished), "title", std::string(257, 't')), kInvalid, "data.title", false},
      {"PriceNoNewPrice", kPrice, Without(ValidData(kPrice), "new_price"), kMissing, "data.new_price", false},
      {"PriceNoCurrency", kPrice, Without(ValidData(kPrice), "currency"), kMissing, "data.currency", false},
      {"PriceDiscountAbove100", kPrice, With(ValidData(kPrice), "discount_percent", 101), kInvalid, "data.discount_percent", false},
      {"PriceDiscountFraction", kPrice, With(ValidData(kPrice), "discount_percent", 30.5), kInvalid, "data.discount_percent", false},
      {"PriceBadValidUntil", kPrice, With(ValidData(kPrice), "valid_until", "soon"), kInvalid, "data.valid_until", false},
      // 9.3 Store
      {"PageGameWithoutGameId", kPage, Without(ValidData(kPage), "game_id"), kMissing, "data.game_id"},
      {"PageBadType", kPage, With(ValidData(kPage), "page_type", "landing"), kInvalid, "data.page_type"},
      {"PageNoType", kPage, Without(ValidData(kPage), "page_type"), kMissing, "data.page_type"},
      {"PagePathTooLong", kPage, With(ValidData(kPage), "page_path", std::string("/").append(512, 'p')), kInvalid, "data.page_path"},
      {"PageBadAnonymousId", kPage, With(ValidData(kPage), "anonymous_id", "has space"), kInvalid, "data.anonymous_id"},
      {"SearchNoQuery", kSearch, Without(ValidData(kSearch), "query"), kMissing, "data.query"},
      {"SearchEmptyQuery", kSearch, With(ValidData(kSearch), "query", ""), kInvalid, "data.query"},
      {"SearchQueryTooLong", kSearch, With(ValidData(kSearch), "query", std::string(1025, 'q')), kInvalid, "data.query"},
      {"SearchNegativeResults", kSearch, With(ValidData(kSearch), "results_count", -1), kInvalid, "data.results_count"},
      {"SearchPageZero", kSearch, With(ValidData(kSearch), "page", 0), kInvalid, "data.page"},
      {"SearchFiltersNotObject", kSearch, With(ValidData(kSearch), "applied_filters", "rpg"), kInvalid, "data.applied_filters"},
      {"WishlistAddBadSourcePage", kWishAdd, With(ValidData(kWishAdd), "source_page", "nowhere"), kInvalid, "data.source_page"},
      {"WishlistAddNoGame", kWishAdd, json::object(), kMissing, "data.game_id"},
      {"WishlistRemoveBadReason", kWishRemove, With(ValidData(kWishRemove), "reason", "bought"), kInvalid, "data.reason"},
      // 9.4 Cart
      {"CartAddNoAmount", kCartAdd, Without(ValidData(kCartAdd), "amount"), kMissing, "data.amount"},
      {"CartAddAmountString", kCartAdd, With(ValidData(kCartAdd), "amount", "399"), kInvalid, "data.amount"},
      {"CartAddBadItemType", kCartAdd, With(ValidData(kCartAdd), "item_type", "skin"), kInvalid, "data.item_type"},
      {"CartAddNoCart", kCartAdd, Without(ValidData(kCartAdd), "cart_id"), kMissing, "data.cart_id"},
      {"CartRemoveAmountWithoutCurrency", kCartRemove, With(ValidData(kCartRemove), "amount", 399), kMissing, "data.currency"},
      {"CartRemoveBadReason", kCartRemove, With(ValidData(kCartRemove), "reason", "gone"), kInvalid, "data.reason"},
      {"CheckoutZeroItems", kCheckout, With(ValidData(kCheckout), "items_count", 0), kInvalid, "data.items_count"},
      {"CheckoutDuplicateGames", kCheckout, With(ValidData(kCheckout), "game_ids", {"g1", "g1"}), kInvalid, "data.game_ids"},
      {"CheckoutNumericGameIds", kCheckout, With(ValidData(kCheckout), "game_ids", {1, 2}), kInvalid, "data.game_ids"},
      {"CheckoutBadPaymentMethod", kCheckout, With(ValidData(kCheckout), "payment_method", "cash"), kInvalid, "data.payment_method"},
      // 9.5 Payments
      {"PurchaseGiftWithoutRecipient", kPurchase, With(ValidData(kPurchase), "is_gift", true), kMissing, "data.recipient_user_id"},
      {"PurchaseBadRecipient", kPurchase, With(ValidData(kPurchase), "recipient_user_id", "x y"), kInvalid, "data.recipient_user_id"},
      {"PurchaseNoOrder", kPurchase, Without(ValidData(kPurchase), "order_id"), kMissing, "data.order_id"},
      {"PurchaseNoCurrency", kPurchase, Without(ValidData(kPurchase), "currency"), kMissing, "data.currency"},
      {"PurchaseNegativeAmount", kPurchase, With(ValidData(kPurchase), "amount", -399), kInvalid, "data.amount"},
      {"PurchaseFirstNotBool", kPurchase, With(ValidData(kPurchase), "is_first_purchase", "true"), kInvalid, "data.is_first_purchase"},
      {"FailedNoReason", kFailed, Without(ValidData(kFailed), "failure_reason"), kMissing, "data.failure_reason"},
      {"FailedAttemptZero", kFailed, With(ValidData(kFailed), "attempt", 0), kInvalid, "data.attempt"},
      {"FailedBadReason", kFailed, With(ValidData(kFailed), "failure_reason", "broke"), kInvalid, "data.failure_reason"},
      {"RefundNegativePlaytime", kRefund, With(ValidData(kRefund), "playtime_seconds", -5), kInvalid, "data.playtime_seconds"},
      {"RefundBadReason", kRefund, With(ValidData(kRefund), "reason", "meh"), kInvalid, "data.reason"},
      {"RefundNoGame", kRefund, Without(ValidData(kRefund), "game_id"), kMissing, "data.game_id"},
      // 9.6 Library
      {"InstalledNegativeSize", kInstalled, With(ValidData(kInstalled), "install_size_bytes", -1), kInvalid, "data.install_size_bytes"},
      {"InstalledSizeBeyondInt64", kInstalled, With(ValidData(kInstalled), "install_size_bytes", 9.3e18), kInvalid, "data.install_size_bytes"},
      {"InstalledLongVersion", kInstalled, With(ValidData(kInstalled), "game_version", std::string(65, 'v')), kInvalid, "data.game_version"},
      {"StartedNoSession", kStarted, Without(ValidData(kStarted), "session_id"), kMissing, "data.session_id"},
      {"StartedBadLaunchSource", kStarted, With(ValidData(kStarted), "launch_source", "cli"), kInvalid, "data.launch_source"},
      {"EndedTooLong", kEnded, With(ValidData(kEnded), "duration_seconds", 604801), kInvalid, "data.duration_seconds"},
      {"EndedNoDuration", kEnded, Without(ValidData(kEnded), "duration_seconds"), kMissing, "data.duration_seconds"},
      {"EndedFractionalDuration", kEnded, With(ValidData(kEnded), "duration_seconds", 60.5), kInvalid, "data.duration_seconds"},
      // 9.7 Achievements
      {"AchievementPercentAbove100", kAchievement, With(ValidData(kAchievement), "global_unlock_percent", 100.5), kInvalid, "data.global_unlock_percent"},
      {"AchievementFractionalPoints", kAchievement, With(ValidData(kAchievement), "points", 1.5), kInvalid, "data.points"},
      {"AchievementNoId", kAchievement, Without(ValidData(kAchievement), "achievement_id"), kMissing, "data.achievement_id"},
      // 9.8 Reviews
      {"ReviewNeitherRatingNorRecommended", kReview, Without(ValidData(kReview), "rating"), kMissing, "data.rating"},
      {"ReviewRatingSix", kReview, With(ValidData(kReview), "rating", 6), kInvalid, "data.rating"},
      {"ReviewRatingZero", kReview, With(ValidData(kReview), "rating", 0), kInvalid, "data.rating"},
      {"ReviewLongLanguage", kReview, With(ValidData(kReview), "language", std::string(36, 'l')), kInvalid, "data.language"},
      {"ReviewTextNotString", kReview, With(ValidData(kReview), "text", 5), kInvalid, "data.text"},
      // 9.9 Social
      {"FriendIsSelf", kFriend, {{"friend_user_id", std::string(kUser)}}, kInvalid, "data.friend_user_id"},
      {"FriendMissing", kFriend, json::object(), kMissing, "data.friend_user_id"},
      {"FriendBadMethod", kFriend, With(ValidData(kFriend), "method", "telepathy"), kInvalid, "data.method"},
      // 9.10 Experiments
      {"ExposureLongVariant", kExposure, With(ValidData(kExposure), "variant", std::string(65, 'v')), kInvalid, "data.variant"},
      {"ExposureLongSurface", kExposure, With(ValidData(kExposure), "surface", std::string(65, 's')), kInvalid, "data.surface"},
      {"ExposureNoExperiment", kExposure, Without(ValidData(kExposure), "experiment"), kMissing, "data.experiment"},
  };
}

class TypeSchemaRejectionTest : public EventsValidatorTest, public ::testing::WithParamInterface<TypeCase> {};

TEST_P(TypeSchemaRejectionTest, IsRejected) {
  const TypeCase& test_case = GetParam();
  const std::optional<std::string> subject =
      test_case.with_subject ? std::optional<std::string>(std::string(kUser)) : std::nullopt;
  ExpectRejected(Envelope(test_case.type, test_case.data, subject), test_case.code, test_case.field);
}

INSTANTIATE_TEST_SUITE_P(Catalog, TypeSchemaRejectionTest, ::testing::ValuesIn(InvalidTypeCases()),
                         [](const ::testing::TestParamInfo<TypeCase>& info) { return info.param.name; });

TEST_F(EventsValidatorTest, BoundaryValuesAreAccepted) {
  const std::string ended = "com.platform.library.session.ended.v1";
  Accept(Envelope(ended, With(ValidData(ended), "duration_seconds", 604800)));
  Accept(Envelope(ended, With(ValidData(ended), "duration_seconds", 0)));
  Accept(Envelope(ended, With(ValidData(ended), "duration_seconds", 60.0)));  // integral double is an integer
  const std::string price = "com.platform.catalog.price.changed.v1";
  Accept(Envelope(price, With(ValidData(price), "discount_percent", 30.0), std::nullopt));
  Accept(Envelope(price, With(ValidData(price), "discount_percent", 0), std::nullopt));
  const std::string exposure = "com.platform.experiments.exposure.recorded.v1";
  Accept(Envelope(exposure, With(ValidData(exposure), "variant", std::string(64, 'v'))));
  const std::string achievement = "com.platform.achievements.achievement.unlocked.v1";
  Accept(Envelope(achievement, With(ValidData(achievement), "global_unlock_percent", 100)));
  const std::string review = "com.platform.reviews.review.posted.v1";
  Accept(Envelope(review, With(Without(ValidData(review), "rating"), "recommended", false)));
  const std::string page = "com.platform.store.page.viewed.v1";
  Accept(Envelope(page, {{"page_type", "home"}}));  // game_id only required on game pages
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  Accept(Envelope(purchase, With(ValidData(purchase), "is_gift", false)));
  const std::string installed = "com.platform.library.game.installed.v1";
  Accept(Envelope(installed, With(ValidData(installed), "install_size_bytes", 42949672960)));
}

TEST_F(EventsValidatorTest, OptionalFieldNullCountsAsAbsent) {
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  Accept(Envelope(purchase, With(With(ValidData(purchase), "payment_method", nullptr), "is_gift", nullptr)));
  // A required field sent as null is missing.
  ExpectRejected(Envelope(purchase, With(ValidData(purchase), "order_id", nullptr)), RejectionCode::kMissingField,
                 "data.order_id");
}

TEST_F(EventsValidatorTest, GiftRecipientIsPseudonymized) {
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  json data = With(With(ValidData(purchase), "is_gift", true), "recipient_user_id", "friend-77");
  json stored = json::parse(Accept(Envelope(purchase, data)).data);
  EXPECT_EQ(stored["recipient_user_id"], pseudonymizer_->Pseudonymize("friend-77"));
}

// ---- Batches ----

TEST_F(EventsValidatorTest, MixedBatchKeepsIndexesAndNeighbours) {
  json good = Wishlist();
  json missing_id = Wishlist();
  missing_id.erase("id");
  json bad_type = Wishlist();
  bad_type["type"] = "com.platform.Bad";
  bad_type["id"] = "evt-bad";
  json future = Wishlist();
  future["id"] = "evt-future";
  future["time"] = "2030-01-01T00:00:00Z";
  json batch = json::array();
  for (int event_idx = 0; event_idx < 7; ++event_idx) {
    json event = event_idx == 1 ? missing_id : event_idx == 3 ? bad_type : event_idx == 5 ? future : good;
    if (event_idx % 2 == 0) event["id"] = "evt-" + std::to_string(event_idx);
    batch.push_back(event);
  }
  BatchResult result = normalizer_->Process(batch.dump(), BodyFormat::kBatch, kNow);
  ASSERT_FALSE(result.body_error.has_value());
  EXPECT_EQ(result.event_indexes, (std::vector<uint32_t>{0, 2, 4, 6}));
  ASSERT_EQ(result.events.size(), 4u);
  for (size_t event_idx = 0; event_idx < result.events.size(); ++event_idx) {
    EXPECT_EQ(result.events[event_idx].id, "evt-" + std::to_string(result.event_indexes[event_idx]));
  }
  ASSERT_EQ(result.rejections.size(), 3u);
  EXPECT_EQ(result.rejections[0].index, 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kMissingAttribute);
  EXPECT_EQ(result.rejections[0].id, "");
  EXPECT_EQ(result.rejections[0].type, "com.platform.store.wishlist_item.added.v1");
  EXPECT_EQ(result.rejections[0].source, "/services/test");
  EXPECT_EQ(result.rejections[1].index, 3u);
  EXPECT_EQ(result.rejections[1].code, RejectionCode::kInvalidAttribute);
  EXPECT_EQ(result.rejections[1].id, "evt-bad");
  EXPECT_EQ(result.rejections[1].type, "com.platform.Bad");
  EXPECT_EQ(result.rejections[2].index, 5u);
  EXPECT_EQ(result.rejections[2].code, RejectionCode::kEventInFuture);
  EXPECT_EQ(result.rejections[2].id, "evt-future");
  for (const Rejection& rejection : result.rejections) EXPECT_FALSE(rejection.payload.empty());
}

TEST_F(EventsValidatorTest, RejectionPayloadIsTheTreatedEvent) {
  json event = Envelope("com.platform.store.search.performed.v1",
                        {{"query", "call +7 912 345 67 89 now"},
                         {"email", "a@b.c"},
                         {"ip", "198.51.100.23"},
                         {"results_count", 1}});
  event["time"] = "2030-01-01T00:00:00Z";  // rejected for its time
  Rejection rejection = Reject(event);
  ASSERT_EQ(rejection.code, RejectionCode::kEventInFuture);
  EXPECT_EQ(rejection.id, "evt-1");
  json payload = json::parse(rejection.payload);
  EXPECT_EQ(payload["subject"], pseudonymizer_->Pseudonymize(kUser));
  EXPECT_EQ(payload["time"], "2030-01-01T00:00:00Z");
  EXPECT_EQ(payload["data"],
            json({{"query", "call *** now"}, {"ip", "198.51.100.0"}, {"results_count", 1}}));
}

TEST_F(EventsValidatorTest, ConcurrentProcessingGivesTheSameResults) {
  json batch = json::array();
  for (const json& example : DocExamples()) batch.push_back(example);
  const std::string body = batch.dump();
  const BatchResult expected = normalizer_->Process(body, BodyFormat::kBatch, kNow);
  ASSERT_EQ(expected.events.size(), 24u);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int thread_idx = 0; thread_idx < 4; ++thread_idx) {
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        BatchResult result = normalizer_->Process(body, BodyFormat::kBatch, kNow);
        for (size_t event_idx = 0; event_idx < result.events.size(); ++event_idx) {
          if (result.events[event_idx].data != expected.events[event_idx].data ||
              result.events[event_idx].user != expected.events[event_idx].user) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- Read-back ----

TEST_F(EventsValidatorTest, ToCloudEventRebuildsTheEnvelope) {
  json event = Envelope("com.platform.library.session.started.v1",
                        {{"game_id", "game_1042"}, {"session_id", "s-1"}, {"platform", "windows"}});
  event["time"] = "2025-03-21T19:25:00.5+01:00";
  event["traceparent"] = "00-abc-01";
  StoredEvent stored = Accept(event);
  json cloud_event = ToCloudEvent(stored);
  EXPECT_EQ(cloud_event["specversion"], "1.0");
  EXPECT_EQ(cloud_event["id"], "evt-1");
  EXPECT_EQ(cloud_event["source"], "/services/test");
  EXPECT_EQ(cloud_event["type"], "com.platform.library.session.started.v1");
  EXPECT_EQ(cloud_event["time"], "2025-03-21T18:25:00.500Z");
  EXPECT_EQ(cloud_event["subject"], pseudonymizer_->Pseudonymize(kUser));
  EXPECT_EQ(cloud_event["data"], json({{"game_id", "game_1042"}, {"session_id", "s-1"}, {"platform", "windows"}}));
  EXPECT_EQ(cloud_event["traceparent"], "00-abc-01");
  EXPECT_FALSE(cloud_event.contains("analyticstimedefaulted"));
  EXPECT_EQ(cloud_event.size(), 8u);
}

TEST_F(EventsValidatorTest, ToCloudEventFlagsDefaultedTimeAndKeepsUserInData) {
  json event = Envelope("com.platform.store.wishlist_item.added.v1",
                        {{"game_id", "game_1"}, {"user_id", "user-9"}}, std::nullopt);
  event.erase("time");
  json cloud_event = ToCloudEvent(Accept(event));
  EXPECT_EQ(cloud_event["analyticstimedefaulted"], true);
  EXPECT_EQ(cloud_event["time"], common::FormatRfc3339Millis(kNow));
  EXPECT_FALSE(cloud_event.contains("subject"));
  EXPECT_EQ(cloud_event["data"]["user_id"], pseudonymizer_->Pseudonymize("user-9"));
}

TEST_F(EventsValidatorTest, ToCloudEventWithoutData) {
  json cloud_event = ToCloudEvent(Accept(Envelope("com.platform.account.user.logged_out.v1", nullptr)));
  EXPECT_FALSE(cloud_event.contains("data"));
}

// ---- Catalog tables and codes ----

TEST(EventCatalogTest, LookupsAgree) {
  EXPECT_EQ(AllTypeSchemas().size(), 24u);
  for (const TypeSchema& schema : AllTypeSchemas()) {
    EXPECT_TRUE(IsEventType(schema.type)) << schema.type;
    EXPECT_EQ(FindTypeSchema(schema.type), &schema);
    EXPECT_LE(FieldCount(&schema), 64u);
    for (const FieldSpec& field : schema.fields) {
      const int field_idx = FindFieldIndex(&schema, field.name);
      ASSERT_GE(field_idx, 0) << field.name;
      EXPECT_EQ(&FieldAt(&schema, field_idx), &field);
      EXPECT_EQ(FindFieldSpec(&schema, field.name), &field);
    }
    for (const FieldSpec& field : CommonFields()) EXPECT_NE(FindFieldSpec(&schema, field.name), nullptr);
    EXPECT_EQ(FindFieldIndex(&schema, "no_such_field"), -1);
    EXPECT_EQ(FindFieldIndex(&schema, ""), -1);
  }
  EXPECT_EQ(FindTypeSchema("com.platform.guilds.guild.joined.v1"), nullptr);
  EXPECT_EQ(FindFieldSpec(nullptr, "amount")->kind, FieldKind::kMoney);
  EXPECT_EQ(FindFieldSpec(nullptr, "cart_id"), nullptr);
  EXPECT_EQ(ColumnOf(nullptr, FindFieldIndex(nullptr, "platform")), WellKnownColumn::kPlatform);
  const TypeSchema* purchase = FindTypeSchema("com.platform.payments.purchase.completed.v1");
  EXPECT_EQ(ColumnOf(purchase, FindFieldIndex(purchase, "game_id")), WellKnownColumn::kGameId);
  EXPECT_EQ(ColumnOf(purchase, FindFieldIndex(purchase, "order_id")), WellKnownColumn::kNone);
}

TEST(RejectionCodeTest, NamesRoundTrip) {
  const std::set<std::string> expected = {"MALFORMED_EVENT", "EVENT_TOO_LARGE", "MISSING_ATTRIBUTE",
                                          "INVALID_ATTRIBUTE", "MISSING_FIELD", "INVALID_FIELD",
                                          "UNKNOWN_EVENT_TYPE", "EVENT_IN_FUTURE"};
  std::set<std::string> seen;
  for (const std::string& name : expected) {
    std::optional<RejectionCode> code = RejectionCodeFromName(name);
    ASSERT_TRUE(code.has_value()) << name;
    seen.insert(std::string(RejectionCodeName(*code)));
  }
  EXPECT_EQ(seen, expected);
  EXPECT_FALSE(RejectionCodeFromName("BOGUS").has_value());
}

// ---- Value formats ----

TEST(ValueFormatsTest, IdStrings) {
  EXPECT_TRUE(IsIdString("7c9e6679-7425-40de-944b-e07fc1f90ae7"));
  EXPECT_TRUE(IsIdString("prefix:123"));
  EXPECT_TRUE(IsIdString("a.b_c-d"));
  EXPECT_FALSE(IsIdString(""));
  EXPECT_FALSE(IsIdString("a b"));
  EXPECT_FALSE(IsIdString("a/b"));
  EXPECT_FALSE(IsIdString("\u00e9"));
  EXPECT_TRUE(IsIdString(std::string(128, 'a')));
  EXPECT_FALSE(IsIdString(std::string(129, 'a')));
  EXPECT_FALSE(IsIdString("abcdef", 5));
}

TEST(ValueFormatsTest, DatesAndCodes) {
  EXPECT_TRUE(IsDate("2024-02-29"));
  EXPECT_FALSE(IsDate("2023-02-29"));
  EXPECT_FALSE(IsDate("2025-04-31"));
  EXPECT_FALSE(IsDate("2025-4-01"));
  EXPECT_FALSE(IsDate("2025-03-01T00:00:00Z"));
  EXPECT_TRUE(IsCurrencyCode("RUB"));
  EXPECT_FALSE(IsCurrencyCode("RU"));
  EXPECT_TRUE(IsCountryCode("KZ"));
  EXPECT_FALSE(IsCountryCode("Kz"));
  EXPECT_TRUE(IsJsonMediaType("application/json"));
  EXPECT_TRUE(IsJsonMediaType("Application/JSON ; charset=utf-8"));
  EXPECT_FALSE(IsJsonMediaType("application/jsonp"));
  EXPECT_TRUE(IsExtensionName("traceparent"));
  EXPECT_TRUE(IsExtensionName("a1"));
  EXPECT_FALSE(IsExtensionName("a_1"));
  EXPECT_FALSE(IsExtensionName(std::string(21, 'a')));
}

}  // namespace
}  // namespace analytics::events
