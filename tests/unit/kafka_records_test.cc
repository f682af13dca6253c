// The Kafka channel's record handling without a broker: Normalizer::ProcessRecords (each Kafka message one
// event, whatever its bytes) against processing every message alone, and the binary-mode (ce_* headers)
// translation against the structured event it stands for.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "ingest/kafka/kafka_source.h"

namespace analytics::ingest {
namespace {

using events::BatchResult;
using events::BodyFormat;
using events::RawEvent;
using nlohmann::json;

constexpr int64_t kNow = 1748736000000;  // 2025-06-01T00:00:00Z

std::unique_ptr<events::Pseudonymizer> MakePseudonymizer() {
  auto created = events::Pseudonymizer::Create(std::string(32, 'k'), {});
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  return std::move(created).value();
}

std::string Event(int event_idx, const std::string& data) {
  return R"({"specversion":"1.0","id":"e-)" + std::to_string(event_idx) +
         R"(","source":"/services/store","type":"com.platform.store.page.viewed.v1","subject":"user-)" +
         std::to_string(event_idx % 7) + R"(","time":"2025-05-01T00:00:00Z","data":)" + data + "}";
}

// The records laid out the way KafkaSource lays them out: one after another, '\n' between.
struct Laid {
  std::string buffer;
  std::vector<RawEvent> records;
};
Laid Lay(const std::vector<std::string>& messages) {
  Laid laid;
  std::vector<std::pair<size_t, size_t>> spans;
  for (const std::string& message : messages) {
    spans.emplace_back(laid.buffer.size(), message.size());
    laid.buffer += message;
    laid.buffer += '\n';
  }
  for (size_t i = 0; i < spans.size(); ++i) {
    laid.records.push_back(
        {static_cast<uint32_t>(i), spans[i].first, std::string_view(laid.buffer).substr(spans[i].first, spans[i].second)});
  }
  return laid;
}

// What one message alone gives: a whole-body error of a single JSON body is one MALFORMED_EVENT here.
struct Expected {
  bool accepted = false;
  std::string id;
  std::string user;
  std::string data;
  std::string code;
  std::string field;
};
Expected Alone(const events::Normalizer& normalizer, const std::string& message) {
  Expected expected;
  // A JSON array is a batch to HTTP; a Kafka message is one event, so an array is not an event object.
  if (message.find_first_not_of(" \t\r\n") != std::string::npos && message[message.find_first_not_of(" \t\r\n")] == '[') {
    expected.code = "MALFORMED_EVENT";
    return expected;
  }
  const BatchResult alone = normalizer.Process(message, BodyFormat::kSingle, kNow);
  if (alone.body_error) {
    expected.code = "MALFORMED_EVENT";
    return expected;
  }
  if (alone.events.size() == 1 && alone.rejections.empty()) {
    expected.accepted = true;
    expected.id = std::string(alone.events[0].id);
    expected.user = std::string(alone.events[0].user);
    expected.data = std::string(alone.events[0].data);
    return expected;
  }
  EXPECT_EQ(alone.rejections.size(), 1u) << message;  // an array body would give several: not generated
  if (alone.rejections.size() != 1) return expected;
  expected.code = std::string(events::RejectionCodeName(alone.rejections[0].code));
  expected.field = alone.rejections[0].field;
  return expected;
}

TEST(KafkaRecordsTest, EveryMessageGivesWhatItGivesAlone) {
  auto pseudonymizer = MakePseudonymizer();
  events::NormalizerOptions options;
  options.max_event_bytes = 2048;
  events::Normalizer normalizer(options, *pseudonymizer);
  std::mt19937 random(7);
  const std::vector<std::string> kinds = {
      Event(0, R"({"page_type":"home","page_path":"/"})"),
      // Pretty-printed over several lines: one event (NDJSON would have split it).
      "{\n  \"specversion\": \"1.0\",\n  \"id\": \"p-1\",\n  \"source\": \"/services/store\",\n"
      "  \"type\": \"com.platform.store.page.viewed.v1\",\n  \"subject\": \"user-1\",\n"
      "  \"data\": {\"page_type\": \"game\", \"page_path\": \"/g/1\"}\n}",
      // A raw newline inside a string: not JSON (NDJSON splitting would have made two broken lines).
      Event(2, "{\"page_type\":\"home\",\"page_path\":\"/a\nb\"}"),
      Event(3, R"({"page_type":"home"})"),  // page_path missing
      "",                                    // empty message
      "   ",                                 // whitespace only
      "[" + Event(4, R"({"page_type":"home","page_path":"/"})") + "]",  // an array is not one event here
      "not json at all",
      Event(5, R"({"page_type":"home","page_path":")" + std::string(3000, 'x') + "\"}"),  // too large
      "\xEF\xBB\xBF" + Event(6, R"({"page_type":"home","page_path":"/"})"),  // BOM
      Event(7, R"({"page_type":"home","page_path":"/\u00e9","nested":{"ip":"1.2.3.4"}})"),
      "{\"specversion\":\"1.0\",\"id\":\"bad-utf8-\xC3\x28\",\"source\":\"/s\",\"type\":\"com.platform.store.page.viewed.v1\"}",
  };
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> messages;
    const size_t count = 1 + random() % 60;
    for (size_t i = 0; i < count; ++i) {
      std::string message = kinds[random() % kinds.size()];
      // Unique ids so every message stands alone.
      const auto id_at = message.find("\"id\":\"");
      if (id_at != std::string::npos) message.insert(id_at + 6, std::to_string(round) + "-" + std::to_string(i) + "-");
      messages.push_back(std::move(message));
    }
    const Laid laid = Lay(messages);
    const BatchResult together = normalizer.ProcessRecords(laid.buffer, laid.records, kNow);
    ASSERT_FALSE(together.body_error.has_value());
    ASSERT_EQ(together.events.size() + together.rejections.size(), messages.size());
    size_t event_at = 0;
    size_t rejection_at = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
      const Expected expected = Alone(normalizer, messages[i]);
      SCOPED_TRACE("round " + std::to_string(round) + " message " + std::to_string(i) + ": " + messages[i].substr(0, 80));
      if (expected.accepted) {
        ASSERT_LT(event_at, together.events.size());
        EXPECT_EQ(together.event_indexes[event_at], i);
        EXPECT_EQ(together.events[event_at].id, expected.id);
        EXPECT_EQ(together.events[event_at].user, expected.user);
        EXPECT_EQ(together.events[event_at].data, expected.data);
        ++event_at;
      } else {
        ASSERT_LT(rejection_at, together.rejections.size());
        const events::Rejection& rejection = together.rejections[rejection_at++];
        EXPECT_EQ(rejection.index, i);
        EXPECT_EQ(events::RejectionCodeName(rejection.code), expected.code);
        if (expected.code != "MALFORMED_EVENT") {
          EXPECT_EQ(rejection.field, expected.field);
        }
        if (expected.code == "MALFORMED_EVENT" && rejection.message.find("byte") != std::string::npos) {
          EXPECT_NE(rejection.message.find("of the message"), std::string::npos) << rejection.message;
        }
      }
    }
  }
}

TEST(KafkaRecordsTest, BinaryModeBecomesTheStructuredEvent) {
  const kafka::Headers headers = {
      {"ce_specversion", "1.0"},
      {"ce_id", "b-1"},
      {"ce_source", "/services/store"},
      {"ce_type", "com.platform.store.page.viewed.v1"},
      {"ce_subject", "user-\"quoted\"\n"},
      {"ce_time", "2025-05-01T00:00:00Z"},
      {"content-type", "application/json; charset=utf-8"},
      {"traceparent", "00-abc-def-01"},  // not a ce_ header: not an attribute
  };
  std::string out = "prefix:";
  AppendBinaryModeEvent(headers, R"({"page_type":"home","page_path":"/"})", out);
  ASSERT_EQ(out.rfind("prefix:", 0), 0u);
  const json event = json::parse(out.substr(7));
  EXPECT_EQ(event, json::parse(R"({"specversion":"1.0","id":"b-1","source":"/services/store",
      "type":"com.platform.store.page.viewed.v1","subject":"user-\"quoted\"\n","time":"2025-05-01T00:00:00Z",
      "datacontenttype":"application/json; charset=utf-8","data":{"page_type":"home","page_path":"/"}})"));

  // A JSON-suffixed type is JSON too; a text type carries the value as a string; no value: no data.
  std::string vendor;
  AppendBinaryModeEvent({{"ce_id", "x"}, {"content-type", "application/vnd.game+json"}}, "[1,2]", vendor);
  EXPECT_EQ(json::parse(vendor)["data"], json::parse("[1,2]"));
  std::string text;
  AppendBinaryModeEvent({{"ce_id", "x"}, {"content-type", "text/plain"}}, "hello \"world\"", text);
  EXPECT_EQ(json::parse(text)["data"], "hello \"world\"");
  std::string empty;
  AppendBinaryModeEvent({{"ce_id", "x"}}, "", empty);
  EXPECT_FALSE(json::parse(empty).contains("data"));

  // Through the normalizer it is the same event as its structured twin.
  auto pseudonymizer = MakePseudonymizer();
  events::Normalizer normalizer({}, *pseudonymizer);
  std::string binary;
  AppendBinaryModeEvent({{"ce_specversion", "1.0"},
                         {"ce_id", "b-2"},
                         {"ce_source", "/services/store"},
                         {"ce_type", "com.platform.store.page.viewed.v1"},
                         {"ce_subject", "user-3"},
                         {"ce_time", "2025-05-01T00:00:00Z"}},
                        R"({"page_type":"home","page_path":"/x"})", binary);
  const Laid laid = Lay({binary});
  const BatchResult from_binary = normalizer.ProcessRecords(laid.buffer, laid.records, kNow);
  const BatchResult structured = normalizer.Process(
      R"({"specversion":"1.0","id":"b-2","source":"/services/store","type":"com.platform.store.page.viewed.v1",)"
      R"("subject":"user-3","time":"2025-05-01T00:00:00Z","data":{"page_type":"home","page_path":"/x"}})",
      BodyFormat::kSingle, kNow);
  ASSERT_EQ(from_binary.events.size(), 1u);
  ASSERT_EQ(structured.events.size(), 1u);
  EXPECT_EQ(from_binary.events[0].user, structured.events[0].user);
  EXPECT_EQ(from_binary.events[0].data, structured.events[0].data);
  EXPECT_EQ(from_binary.events[0].time_ms, structured.events[0].time_ms);

  // A duplicated ce_ header is a duplicate member: refused with the attribute named.
  std::string twice;
  AppendBinaryModeEvent({{"ce_specversion", "1.0"},
                         {"ce_id", "b-3"},
                         {"ce_id", "b-4"},
                         {"ce_source", "/services/store"},
                         {"ce_type", "com.platform.store.page.viewed.v1"},
                         {"ce_subject", "user-3"}},
                        R"({"page_type":"home","page_path":"/x"})", twice);
  const Laid laid_twice = Lay({twice});
  const BatchResult refused = normalizer.ProcessRecords(laid_twice.buffer, laid_twice.records, kNow);
  ASSERT_EQ(refused.rejections.size(), 1u);
  EXPECT_EQ(refused.rejections[0].field, "id");
}

}  // namespace
}  // namespace analytics::ingest
