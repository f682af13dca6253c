// The intake's fast paths give the same answers as the plain ones: JSON string escaping done a word at a
// time, id strings checked 16 bytes at a time, source URIs checked by table first, event times read with a
// remembered date, events parsed in place
// inside the request body, and the catalog's per-schema field lookup and type index.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "events/event_catalog.h"
#include "events/json_text.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "events/value_formats.h"
#include "support/test_env.h"

namespace analytics::events {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1748736000000;  // 2025-06-01T00:00:00Z

std::unique_ptr<Pseudonymizer> Make(char key_fill, PseudonymizerOptions options = {}) {
  auto created = Pseudonymizer::Create(std::string(32, key_fill), options);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  return created.ok() ? std::move(created).value() : nullptr;
}

// ---- JSON string escaping ----

// Escaping written the obvious way, independently of JsonBuffer.
std::string ReferenceJsonString(std::string_view value) {
  std::string out = "\"";
  for (unsigned char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

TEST(JsonBufferTest, StringsOfEveryLengthEscapeLikeTheReference) {
  std::mt19937 random(7);
  // Mostly plain text with, now and then, a byte that needs escaping, and UTF-8 (bytes >= 0x80) in between.
  const std::string alphabet = "abcXYZ019 _-./:\xC3\xA9\xE2\x82\xAC\x7F\x20\x21\x23\x5B\x5D";
  const std::string specials = std::string("\"\\\n\r\t\b\f\x01\x1F", 9) + std::string(1, '\0');
  for (size_t length = 0; length <= 70; ++length) {
    for (int sample = 0; sample < 40; ++sample) {
      std::string value;
      for (size_t char_idx = 0; char_idx < length; ++char_idx) {
        const bool special = random() % 9 == 0;
        value += special ? specials[random() % specials.size()] : alphabet[random() % alphabet.size()];
      }
      JsonBuffer buffer;
      buffer.Append("x");
      buffer.AppendString(value);
      std::string expected = "x";  // built by append: GCC 12 -O3 warns (-Wrestrict) on "x" + string
      expected += ReferenceJsonString(value);
      ASSERT_EQ(buffer.view(), expected) << "length " << length;
    }
  }
}

TEST(JsonBufferTest, OneEscapeAtEveryPositionOfShortStrings) {
  // The last bytes of a string are checked as one word overlapping the bytes before (4-7 byte strings as two
  // half-words): an escape at any position, alone or with a second one, must still come out escaped.
  const std::string specials = std::string("\"\\\n\x01\x1F", 5) + std::string(1, '\0');
  for (size_t length = 1; length <= 40; ++length) {
    for (size_t position = 0; position < length; ++position) {
      for (char special : specials) {
        std::string value(length, 'a');
        for (size_t char_idx = 0; char_idx < length; ++char_idx) value[char_idx] = "ab\xC3\xA9" "cd"[char_idx % 6];
        value[position] = special;
        JsonBuffer buffer;
        buffer.AppendString(value);
        ASSERT_EQ(buffer.view(), ReferenceJsonString(value)) << "length " << length << " position " << position;
        value[length - 1 - (position * 7) % length] = '"';
        JsonBuffer twice;
        twice.AppendString(value);
        ASSERT_EQ(twice.view(), ReferenceJsonString(value)) << "length " << length << " position " << position;
      }
    }
  }
}

TEST(JsonBufferTest, ShortStringsKeepTheirPlaceAcrossGrowth) {
  // Short clean strings are written inline: a buffer that grows many times over must hold them all in order.
  JsonBuffer buffer;
  std::string expected;
  for (int item_idx = 0; item_idx < 3000; ++item_idx) {
    const std::string value = std::string(static_cast<size_t>(4 + item_idx % 13), 'k') + std::to_string(item_idx);
    buffer.AppendString(value);
    buffer.Put(',');
    expected += ReferenceJsonString(value) + ",";
  }
  EXPECT_EQ(buffer.view(), expected);
}

// ---- Value formats ----

bool ReferenceIdString(std::string_view value, size_t max_chars) {
  if (value.empty() || value.size() > max_chars) return false;
  for (char c : value) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

TEST(ValueFormatsTest, IdStringChecksEveryByteOfEveryLength) {
  for (size_t length : {1u, 2u, 3u, 4u, 7u, 8u, 9u, 15u, 16u, 17u, 31u, 32u, 33u, 36u, 47u, 100u, 128u, 129u}) {
    std::string value(length, 'A');
    for (size_t char_idx = 0; char_idx < length; ++char_idx) {
      value[char_idx] = "az09AZ._:-Mx"[char_idx % 12];
    }
    ASSERT_EQ(IsIdString(value), ReferenceIdString(value, kMaxIdStringChars)) << length;
    for (size_t position = 0; position < length; ++position) {
      for (int byte = 0; byte < 256; ++byte) {
        std::string changed = value;
        changed[position] = static_cast<char>(byte);
        ASSERT_EQ(IsIdString(changed), ReferenceIdString(changed, kMaxIdStringChars))
            << "length " << length << " position " << position << " byte " << byte;
        ASSERT_EQ(IsIdString(changed, 32), ReferenceIdString(changed, 32));
      }
    }
  }
}

// RFC 3986 URI-reference characters and %HH escapes, written out independently of the table.
bool ReferenceUriReference(std::string_view value) {
  const std::string_view allowed =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=";
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  for (size_t char_idx = 0; char_idx < value.size(); ++char_idx) {
    if (value[char_idx] == '%') {
      if (char_idx + 2 >= value.size() || !is_hex(value[char_idx + 1]) || !is_hex(value[char_idx + 2])) return false;
      char_idx += 2;
    } else if (allowed.find(value[char_idx]) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

TEST(ValueFormatsTest, TimestampsParseLikeTheCommonParser) {
  // The common layout is read by the fast path (a remembered date), everything else by the common parser;
  // both must give what common::ParseRfc3339Millis gives, valid or not, in any order of dates.
  const std::vector<std::string> texts = {
      "2024-01-30T16:55:28.482Z", "2024-01-30T16:55:28.483z", "2024-01-30t00:00:00.000Z",
      "2024-01-31T23:59:59.999Z", "2024-01-30T16:55:28.482Z", "2024-02-29T12:00:00.000Z",
      "2023-02-29T12:00:00.000Z", "2024-02-29T12:00:00.000Z", "2024-13-01T00:00:00.000Z",
      "2024-04-31T00:00:00.000Z", "2024-00-10T00:00:00.000Z", "2024-01-00T00:00:00.000Z",
      "2024-01-30T24:00:00.000Z", "2024-01-30T23:60:00.000Z", "2024-01-30T23:59:60.000Z",
      "2024-01-30T23:59:61.000Z", "2024-01-30T2a:00:00.000Z", "2024-01-30T20:00:00.0a0Z",
      "2024-01-30T20:00:00.000+", "2024-01-30T20:00:00.000 ", "2024-01-30 20:00:00.000Z",
      "2024/01/30T20:00:00.000Z", "2024-1-30T20:00:00.0000Z", "0000-01-01T00:00:00.000Z",
      "1969-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z", "2024-01-30T20:00:00Z",
      "2024-01-30T20:00:00.5Z", "2024-01-30T20:00:00.123456789Z", "2024-01-30T20:00:00.000+03:00",
      "2024-01-30T20:00:00.000-11:30", "2024-01-30T20:00:00.1234567890Z", "", "2024-01-30",
      "2024-01-30T16:55:28.482Z", "2024-01-3xT16:55:28.482Z", "2024-01-30T16:55:28.482Z"};
  for (const std::string& text : texts) {
    const common::Result<int64_t> expected = common::ParseRfc3339Millis(text);
    const std::optional<int64_t> parsed = ParseTimestampMillis(text);
    ASSERT_EQ(parsed.has_value(), expected.ok()) << text;
    if (parsed) {
      EXPECT_EQ(*parsed, *expected) << text;
    }
    EXPECT_EQ(IsTimestamp(text), expected.ok()) << text;
  }
}

TEST(ValueFormatsTest, UriReferenceAgreesWithTheRule) {
  std::mt19937 random(11);
  const std::string alphabet = "/services/store%41zZ9~ \"<>{}|^`\x7F\xC3\xA9";
  for (int sample = 0; sample < 20000; ++sample) {
    std::string value;
    const size_t length = random() % 24;
    for (size_t char_idx = 0; char_idx < length; ++char_idx) value += alphabet[random() % alphabet.size()];
    ASSERT_EQ(IsUriReference(value), ReferenceUriReference(value)) << value;
  }
  EXPECT_TRUE(IsUriReference("/services/store"));
  EXPECT_TRUE(IsUriReference("/a%2Fb"));
  EXPECT_FALSE(IsUriReference("/a%2"));
  EXPECT_FALSE(IsUriReference("/a b"));
}

// ---- Events parsed in place inside the body ----

std::string EventLine(int event_idx, const std::string& data) {
  return R"({"specversion":"1.0","id":"e-)" + std::to_string(event_idx) +
         R"(","source":"/services/store","type":"com.platform.store.page.viewed.v1","subject":"user-)" +
         std::to_string(event_idx % 5) + R"(","time":"2025-05-01T00:00:00Z","data":)" + data + "}";
}

void ExpectSameEvents(const BatchResult& together, const std::vector<BatchResult>& one_by_one) {
  std::vector<const EventView*> events;
  std::vector<const Rejection*> rejections;
  for (const BatchResult& single : one_by_one) {
    for (const EventView& event : single.events) events.push_back(&event);
    for (const Rejection& rejection : single.rejections) rejections.push_back(&rejection);
  }
  ASSERT_EQ(together.events.size(), events.size());
  ASSERT_EQ(together.rejections.size(), rejections.size());
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) {
    EXPECT_EQ(together.events[event_idx].id, events[event_idx]->id);
    EXPECT_EQ(together.events[event_idx].user, events[event_idx]->user);
    EXPECT_EQ(together.events[event_idx].data, events[event_idx]->data);
    EXPECT_EQ(together.events[event_idx].session_id, events[event_idx]->session_id);
  }
  for (size_t rejection_idx = 0; rejection_idx < rejections.size(); ++rejection_idx) {
    EXPECT_EQ(together.rejections[rejection_idx].code, rejections[rejection_idx]->code);
    EXPECT_EQ(together.rejections[rejection_idx].field, rejections[rejection_idx]->field);
  }
}

TEST(NormalizerInPlaceTest, NdjsonEventsGiveWhatTheyGiveAlone) {
  auto pseudonymizer = Make('f');
  Normalizer normalizer({}, *pseudonymizer);
  const std::vector<std::string> lines = {
      EventLine(0, R"({"page_type":"home","page_path":"/?q=1","platform":"windows","session_id":"s-1"})"),
      EventLine(1, R"({"page_type":"game","page_path":"/g/1","game_id":"game_1","amount":10.50})"),  // no currency
      R"({"specversion":"1.0","id":"e-2","source":"/services/store","type":"com.platform.store.page.viewed.v1",)"
      R"("data":{"page_type":"home","page_path":"/)",  // cut short: not JSON
      EventLine(3, R"({"page_type":"home","page_path":"/","count":12345678901234567890123})"),  // number too big
      EventLine(4, R"({"page_type":"home","page_path":"/","nested":{"friend_user_id":"user-9","ip":"1.2.3.4"}})"),
      "123",
      EventLine(6, R"({"page_type":"home","page_path":"/a\"b\\c"})"),
  };
  std::string body;
  for (const std::string& line : lines) body += line + "\n";
  const BatchResult together = normalizer.Process(body, BodyFormat::kNdjson, kNow);
  std::vector<BatchResult> one_by_one;
  for (const std::string& line : lines) {
    // Each line alone in a string of its own size: parsed through simdjson's padded copy.
    one_by_one.push_back(normalizer.Process(std::string(line), BodyFormat::kNdjson, kNow));
  }
  ExpectSameEvents(together, one_by_one);
  EXPECT_EQ(together.events.size(), 3u);
  EXPECT_EQ(together.rejections.size(), 4u);
}

TEST(NormalizerInPlaceTest, JsonArrayBodiesAreStillCheckedWhole) {
  auto pseudonymizer = Make('g');
  Normalizer normalizer({}, *pseudonymizer);
  const std::string good = EventLine(0, R"({"page_type":"home","page_path":"/"})");
  const BatchResult ok = normalizer.Process("[" + good + ",\n " + good + "]", BodyFormat::kBatch, kNow);
  EXPECT_FALSE(ok.body_error.has_value());
  EXPECT_EQ(ok.events.size() + ok.rejections.size(), 2u);
  // A broken element fails the body with the same offset whether or not padding follows it.
  const std::string broken = R"({"specversion":"1.0","id":)";
  const std::string body = "[" + good + "," + broken + "}," + good + "]";
  const BatchResult failed = normalizer.Process(body, BodyFormat::kBatch, kNow);
  ASSERT_TRUE(failed.body_error.has_value());
  const std::optional<BodyError> expected = FindJsonSyntaxError(body);
  ASSERT_TRUE(expected.has_value());
  EXPECT_EQ(failed.body_error->byte_offset, expected->byte_offset);
}

// ---- Catalog lookups ----

TEST(CatalogLookupTest, FieldLookupAgreesWithTheFreeFunctions) {
  std::vector<const TypeSchema*> schemas = {nullptr};
  for (const TypeSchema& schema : AllTypeSchemas()) schemas.push_back(&schema);
  for (const TypeSchema* schema : schemas) {
    const FieldLookup& lookup = FieldLookupOf(schema);
    ASSERT_EQ(lookup.size(), FieldCount(schema));
    for (size_t field_idx = 0; field_idx < lookup.size(); ++field_idx) {
      const FieldSpec& spec = FieldAt(schema, static_cast<int>(field_idx));
      EXPECT_EQ(&lookup.At(static_cast<int>(field_idx)), &spec);
      EXPECT_EQ(lookup.Find(spec.name), FindFieldIndex(schema, spec.name));
      EXPECT_EQ(lookup.Column(static_cast<int>(field_idx)), ColumnOf(schema, static_cast<int>(field_idx)));
    }
    EXPECT_EQ(lookup.Find(""), -1);
    EXPECT_EQ(lookup.Find("no_such_field"), -1);
    EXPECT_EQ(lookup.Find("user_idx"), -1);
  }
}

TEST(CatalogLookupTest, FieldLookupFindsWhatALinearScanFinds) {
  std::vector<const TypeSchema*> schemas = {nullptr};
  for (const TypeSchema& schema : AllTypeSchemas()) schemas.push_back(&schema);
  for (const TypeSchema* schema : schemas) {
    const FieldLookup& lookup = FieldLookupOf(schema);
    for (size_t field_idx = 0; field_idx < lookup.size(); ++field_idx) {
      const std::string name(FieldAt(schema, static_cast<int>(field_idx)).name);
      // The name itself, then every one-byte change of it and its neighbours in length.
      std::vector<std::string> probes = {name, name + "x", name.substr(0, name.size() - 1)};
      for (size_t char_idx = 0; char_idx < name.size(); ++char_idx) {
        std::string changed = name;
        changed[char_idx] = changed[char_idx] == 'z' ? 'y' : 'z';
        probes.push_back(changed);
      }
      for (const std::string& probe : probes) {
        const int found = lookup.Find(probe);
        EXPECT_EQ(found >= 0 ? &lookup.At(found) : nullptr, FindFieldSpec(schema, probe)) << probe;
      }
    }
  }
}

TEST(CatalogLookupTest, EveryCatalogTypeMatchesTheTypePattern) {
  // The validator skips the pattern check for types it finds in the catalog.
  for (const TypeSchema& schema : AllTypeSchemas()) EXPECT_TRUE(IsEventType(schema.type)) << schema.type;
}

TEST(CatalogLookupTest, TypeIndexFindsExactlyTheCatalogTypes) {
  for (const TypeSchema& schema : AllTypeSchemas()) {
    EXPECT_EQ(FindTypeSchema(schema.type), &schema);
    EXPECT_EQ(FindTypeSchema(std::string(schema.type) + "x"), nullptr);
    EXPECT_EQ(FindTypeSchema(schema.type.substr(0, schema.type.size() - 1)), nullptr);
  }
  EXPECT_EQ(FindTypeSchema(""), nullptr);
  EXPECT_EQ(FindTypeSchema("com.platform.store.page.viewed.v2"), nullptr);
  EXPECT_EQ(FindTypeSchema("x"), nullptr);
}

}  // namespace
}  // namespace analytics::events
