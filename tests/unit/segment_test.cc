// Segment files (store/embedded/segment.h, docs/formats/segment.md): exact round trips of generated, hostile
// and randomized events (format 3 shreds `data` into typed columns, so every byte of the text must come back),
// column-selective reads that agree with the full read (checked against an independent JSON parser), rare
// types stored in parts of their own (format 4) and read back in the segment's order, format 3 and format 2
// files still readable (format 2: golden bytes written by the format 2 writer), and damage of every kind
// reported as Corruption, never a crash: byte flips and truncations of a whole file, and flips inside
// decompressed columns, parts and the footer with the checksums recomputed, so the decoders' own bounds checks
// are exercised. Last, the query execution over segments (store/embedded/query_exec.h): per-part reads and the
// footer-only fast path give the aggregates of all the segment's rows.
#include "store/embedded/segment.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "events/json_text.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "gen/generator.h"
#include "query/aggregator.h"
#include "store/embedded/embedded_event_store.h"
#include "store/embedded/column_codec.h"
#include "store/embedded/column_json.h"
#include "store/embedded/query_exec.h"
#include "store/embedded/segment_format.h"
#include "store/embedded/segment_reader.h"
#include "support/test_env.h"

namespace analytics::store::embedded {
namespace {

namespace fs = std::filesystem;
using common::StatusCode;
using events::StoredEvent;
using testing::TempDir;

// --- Helpers ----------------------------------------------------------------------------------------------

std::vector<StoredEvent> SortedLikeSegment(std::vector<StoredEvent> events) {
  std::sort(events.begin(), events.end(), [](const StoredEvent& a, const StoredEvent& b) {
    if (a.user != b.user) return a.user < b.user;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.id < b.id;
  });
  return events;
}

bool SameAmount(const std::optional<double>& a, const std::optional<double>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || std::memcmp(&*a, &*b, sizeof(double)) == 0;  // bit for bit: -0 and NaN too
}

// Field by field, byte for byte.
void ExpectSameEvents(const std::vector<StoredEvent>& expected, const std::vector<StoredEvent>& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t row_idx = 0; row_idx < expected.size(); ++row_idx) {
    const StoredEvent& want = expected[row_idx];
    const StoredEvent& got = actual[row_idx];
    SCOPED_TRACE("row " + std::to_string(row_idx) + " id " + want.id + " data " + want.data);
    EXPECT_EQ(got.id, want.id);
    EXPECT_EQ(got.source, want.source);
    EXPECT_EQ(got.type, want.type);
    EXPECT_EQ(got.time_ms, want.time_ms);
    EXPECT_EQ(got.received_ms, want.received_ms);
    EXPECT_EQ(got.time_defaulted, want.time_defaulted);
    EXPECT_EQ(got.user, want.user);
    EXPECT_EQ(got.game_id, want.game_id);
    EXPECT_EQ(got.session_id, want.session_id);
    EXPECT_TRUE(SameAmount(got.amount, want.amount))
        << (want.amount ? std::to_string(*want.amount) : "none") << " vs "
        << (got.amount ? std::to_string(*got.amount) : "none");
    EXPECT_EQ(got.currency, want.currency);
    EXPECT_EQ(got.country, want.country);
    EXPECT_EQ(got.platform, want.platform);
    EXPECT_EQ(got.data, want.data);
    EXPECT_EQ(got.extensions, want.extensions);
    EXPECT_EQ(got.user_in_subject, want.user_in_subject);
    if (::testing::Test::HasFailure()) return;  // one broken row is enough to read
  }
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFileBytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Every top-level member name of the events' `data` objects (by an independent parser), plus one never used.
std::vector<std::string> PropertyNames(const std::vector<StoredEvent>& events) {
  std::set<std::string> names;
  for (const auto& event : events) {
    const auto data = nlohmann::json::parse(event.data, nullptr, false);
    if (data.is_object()) {
      for (const auto& [key, value] : data.items()) names.insert(key);
    }
  }
  names.insert("no_such_property");
  return {names.begin(), names.end()};
}

// nlohmann keeps the last of repeated names; the segment reader (like simdjson's at_key) the first.
bool HasRepeatedMembers(const std::string& text) {
  size_t top_level_keys = 0;
  auto counter = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1) ++top_level_keys;
    return true;
  };
  const auto data = nlohmann::json::parse(text, counter, false);
  return data.is_object() && data.size() != top_level_keys;
}

SegmentColumnRequest FullRequest(std::vector<std::string> properties) {
  SegmentColumnRequest request;
  request.user = request.time = request.received = request.type = request.source = request.id = true;
  request.game_id = request.session_id = request.currency = request.country = request.platform = true;
  request.amount = request.flags = true;
  request.properties = std::move(properties);
  return request;
}

std::string StringAt(const StringColumn& column, size_t row_idx) {
  return column.dictionary.at(column.codes.at(row_idx));
}

void ExpectColumnsEqualEvents(const SegmentColumns& columns, const std::vector<std::string>& names,
                              const std::vector<StoredEvent>& events);

// ReadSegmentColumns must agree with the full read: envelope and typed fields exactly, properties with what an
// independent JSON parser finds in each row's `data`.
void ExpectColumnsMatchEvents(const std::string& path, const std::vector<StoredEvent>& events) {
  std::vector<std::string> names = PropertyNames(events);
  if (names.size() > 300) {  // thousands of names: a spread sample keeps the check fast
    std::vector<std::string> sample;
    for (size_t name_idx = 0; name_idx < names.size(); name_idx += names.size() / 150) {
      sample.push_back(names[name_idx]);
    }
    names = std::move(sample);
  }
  ASSERT_OK_AND_ASSIGN(SegmentColumns columns, ReadSegmentColumns(path, FullRequest(names)));
  ExpectColumnsEqualEvents(columns, names, events);
}

void ExpectColumnsEqualEvents(const SegmentColumns& columns, const std::vector<std::string>& names,
                              const std::vector<StoredEvent>& events) {
  ASSERT_EQ(columns.rows, events.size());
  ASSERT_EQ(columns.user_codes.size(), events.size());
  uint64_t run_total = 0;
  for (uint32_t run : columns.user_runs) run_total += run;
  EXPECT_EQ(run_total, events.size());
  EXPECT_EQ(columns.users.size(), columns.user_runs.size());
  for (size_t row_idx = 0; row_idx < events.size(); ++row_idx) {
    const StoredEvent& event = events[row_idx];
    SCOPED_TRACE("row " + std::to_string(row_idx) + " data " + event.data);
    EXPECT_EQ(columns.users.at(columns.user_codes[row_idx]), event.user);
    EXPECT_EQ(columns.time_ms.at(row_idx), event.time_ms);
    EXPECT_EQ(columns.received_ms.at(row_idx), event.received_ms);
    EXPECT_EQ(StringAt(columns.type, row_idx), event.type);
    EXPECT_EQ(StringAt(columns.source, row_idx), event.source);
    EXPECT_EQ(columns.id.at(row_idx), event.id);
    EXPECT_EQ(StringAt(columns.game_id, row_idx), event.game_id);
    EXPECT_EQ(StringAt(columns.session_id, row_idx), event.session_id);
    EXPECT_EQ(StringAt(columns.currency, row_idx), event.currency);
    EXPECT_EQ(StringAt(columns.country, row_idx), event.country);
    EXPECT_EQ(StringAt(columns.platform, row_idx), event.platform);
    EXPECT_TRUE(SameAmount(columns.amount.at(row_idx), event.amount));
    EXPECT_EQ(columns.time_defaulted.at(row_idx) != 0, event.time_defaulted);
    EXPECT_EQ(columns.user_in_subject.at(row_idx) != 0, event.user_in_subject);
    const auto data = nlohmann::json::parse(event.data, nullptr, false);
    const bool comparable = !data.is_discarded() && !HasRepeatedMembers(event.data);
    for (size_t property_idx = 0; property_idx < names.size(); ++property_idx) {
      const PropertyColumn& column = columns.properties.at(property_idx);
      ASSERT_EQ(column.name, names[property_idx]);
      ASSERT_EQ(column.kinds.size(), events.size());
      if (!comparable) continue;  // text no JSON parser accepts: the reader's view is checked elsewhere
      SCOPED_TRACE("property " + column.name);
      const ValueKind kind = column.kinds[row_idx];
      if (!data.is_object() || !data.contains(column.name)) {
        EXPECT_EQ(kind, ValueKind::kAbsent);
        continue;
      }
      const nlohmann::json& value = data[column.name];
      if (value.is_null()) {
        EXPECT_EQ(kind, ValueKind::kNull);
      } else if (value.is_boolean()) {
        EXPECT_EQ(kind, ValueKind::kBool);
        EXPECT_EQ(column.ints[row_idx], value.get<bool>() ? 1 : 0);
      } else if (value.is_number()) {
        const double expected = value.get<double>();
        if (!std::isfinite(expected)) {
          EXPECT_EQ(kind, ValueKind::kJson);
          continue;
        }
        EXPECT_TRUE(kind == ValueKind::kInt || kind == ValueKind::kDouble);
        EXPECT_EQ(column.doubles[row_idx], expected);
        if (kind == ValueKind::kInt && value.is_number_integer()) {
          EXPECT_EQ(column.ints[row_idx], value.get<int64_t>());
        }
      } else if (value.is_string()) {
        EXPECT_EQ(kind, ValueKind::kString);
        EXPECT_EQ(column.strings.at(column.ints[row_idx]), value.get<std::string>());
      } else {
        EXPECT_EQ(kind, ValueKind::kJson);
        EXPECT_EQ(nlohmann::json::parse(column.strings.at(column.ints[row_idx])), value);
      }
    }
    if (::testing::Test::HasFailure()) return;
  }
}

// JSON string literal as the intake writer makes it.
std::string Quoted(std::string_view value) {
  events::JsonBuffer buffer;
  buffer.AppendString(value);
  return std::string(buffer.view());
}

StoredEvent BaseEvent(std::string id, std::string user, int64_t time_ms) {
  StoredEvent event;
  event.id = std::move(id);
  event.source = "/services/store";
  event.type = "com.platform.store.page.viewed.v1";
  event.time_ms = time_ms;
  event.received_ms = time_ms + 250;
  event.user = std::move(user);
  event.user_in_subject = !event.user.empty();
  return event;
}

constexpr int64_t kJan1 = 1704067200000;  // 2024-01-01T00:00:00Z

class SegmentTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) { return (dir_.path() / name).string(); }

  // Writes, reads back, and checks both the full and the column-selective read.
  void ExpectRoundTrip(const std::vector<StoredEvent>& events, const std::string& name = "seg.col") {
    const std::string path = Path(name);
    ASSERT_OK_AND_ASSIGN(SegmentInfo info, WriteSegment(path, events));
    EXPECT_EQ(info.rows, events.size());
    std::vector<StoredEvent> back;
    ASSERT_OK(ReadSegmentEvents(path, back));
    const std::vector<StoredEvent> expected = SortedLikeSegment(events);
    ExpectSameEvents(expected, back);
    ExpectColumnsMatchEvents(path, expected);
    ASSERT_OK_AND_ASSIGN(SegmentInfo read_info, ReadSegmentInfo(path));
    EXPECT_EQ(read_info.rows, info.rows);
    EXPECT_EQ(read_info.min_time_ms, info.min_time_ms);
    EXPECT_EQ(read_info.max_time_ms, info.max_time_ms);
    EXPECT_EQ(read_info.max_received_ms, info.max_received_ms);
    EXPECT_EQ(read_info.type_counts, info.type_counts);
    EXPECT_EQ(read_info.file_bytes, fs::file_size(path));
  }

  TempDir dir_;
};

// --- Generated events ---------------------------------------------------------------------------------------

// Generated CloudEvents through the real intake normalizer, as 500-event batches received 5 ms apart.
std::vector<StoredEvent> NormalizedGeneratedEvents(int64_t users, int days) {
  gen::GeneratorOptions options;
  options.users = users;
  options.days = days;
  options.seed = 7;
  std::vector<std::string> lines;
  gen::Generate(options, [&](std::string_view line) { lines.emplace_back(line); });
  auto pseudonymizer = events::Pseudonymizer::Create(std::string(32, 'k'));
  EXPECT_TRUE(pseudonymizer.ok());
  events::Normalizer normalizer({}, **pseudonymizer);
  std::vector<StoredEvent> out;
  for (size_t start = 0; start < lines.size(); start += 500) {
    std::string body;
    for (size_t line_idx = start; line_idx < std::min(lines.size(), start + 500); ++line_idx) {
      body += lines[line_idx] + "\n";
    }
    auto result = normalizer.Process(body, events::BodyFormat::kNdjson,
                                     1764000000000 + static_cast<int64_t>(start / 500) * 5);
    EXPECT_TRUE(result.rejections.empty());
    for (const auto& event : result.events) out.push_back(event.ToStored());
  }
  return out;
}

TEST_F(SegmentTest, GeneratedEventsRoundTripExactlyOneSegmentPerDay) {
  const std::vector<StoredEvent> events = NormalizedGeneratedEvents(400, 3);
  ASSERT_GT(events.size(), 2000u);
  std::map<int64_t, std::vector<StoredEvent>> days;
  for (const auto& event : events) days[event.time_ms / 86400000].push_back(event);
  uint64_t bytes = 0, id_bytes = 0;
  for (const auto& [day, day_events] : days) {
    const std::string name = "day-" + std::to_string(day) + ".col";
    ExpectRoundTrip(day_events, name);
    ASSERT_OK_AND_ASSIGN(auto stats, ReadSegmentColumnStats(Path(name)));
    std::set<std::string> columns;
    for (const auto& column : stats) {
      columns.insert(column.name);
      if (column.name == "id") id_bytes += column.compressed_bytes;
    }
    // `data` is shredded: no text column, a typed column per property.
    EXPECT_FALSE(columns.count("data"));
    EXPECT_TRUE(columns.count("data.page_type"));
    EXPECT_TRUE(columns.count("data.duration_seconds"));
    bytes += fs::file_size(Path(name));
  }
  // A loose guard against regressions of the encoding (about 15 bytes/event without ids at bench scale; this
  // small sample pays more per column and per user).
  EXPECT_LT(static_cast<double>(bytes - id_bytes) / static_cast<double>(events.size()), 25.0);
}

TEST_F(SegmentTest, ExcludeUsersLeavesExactlyTheOtherUsersRows) {
  const std::vector<StoredEvent> events = NormalizedGeneratedEvents(60, 2);
  const std::string path = Path("exclude.col");
  ASSERT_OK(WriteSegment(path, events));
  std::vector<StoredEvent> stored;
  ASSERT_OK(ReadSegmentEvents(path, stored));
  // Users to leave out: the first, one in the middle, the last, and one the segment does not hold.
  std::set<std::string> users_in_order;
  for (const auto& event : stored) users_in_order.insert(event.user);
  ASSERT_GT(users_in_order.size(), 10u);
  const std::vector<std::string> users(users_in_order.begin(), users_in_order.end());
  const std::set<std::string, std::less<>> excluded = {users.front(), users[users.size() / 2], users.back(),
                                                       "u_not_here"};
  std::vector<StoredEvent> expected;
  for (const auto& event : stored) {
    if (!excluded.count(event.user)) expected.push_back(event);
  }
  ASSERT_LT(expected.size(), stored.size());
  const std::vector<std::string> names = {"page_type", "duration_seconds", "price", "no_such_property"};
  ASSERT_OK_AND_ASSIGN(SegmentColumns columns, ReadSegmentColumns(path, FullRequest(names)));
  ExcludeUsers(columns, excluded);
  ExpectColumnsEqualEvents(columns, names, expected);
  // Nothing to leave out: the columns stay as they were.
  ASSERT_OK_AND_ASSIGN(SegmentColumns untouched, ReadSegmentColumns(path, FullRequest(names)));
  ExcludeUsers(untouched, {"u_not_here"});
  ExpectColumnsEqualEvents(untouched, names, stored);
}

// --- Hand-written edge cases --------------------------------------------------------------------------------

TEST_F(SegmentTest, HostileDataRoundTripsByteForByte) {
  const std::vector<std::string> datas = {
      "",
      "{}",
      "[]",
      "[1,2,3]",
      "5",
      "null",
      "\"just a string\"",
      "not json at all",
      "{",
      "}",
      "{\"a\"}",
      "{\"a\":}",
      "{\"a\":1,}",
      "{\"a\":1}x",
      "{\"a\":[1,2}",
      "{\"a\":\"unterminated}",
      " {\"a\":1}",
      "{\"a\":1} ",
      "{\"a\" : 1, \"b\" : [ 1 , 2 ]}",
      "{\n  \"pretty\": true\n}",
      "{\"a\":1,\"a\":2}",
      "{\"a\":1,\"b\":{\"a\":2},\"a\":\"x\"}",
      "{\"nested\":{\"x\":[1,2,{\"y\":\"z\"}],\"e\":{}},\"arr\":[],\"deep\":[[[[[[[[[[1]]]]]]]]]]}",
      "{\"s\":\"\\u00e9\"}",
      "{\"s\":\"é and 😀\"}",
      "{\"s\":\"quote \\\" backslash \\\\ newline \\n tab \\t control \\u0001 del \x7f\"}",
      "{\"s\":\"\\/slash\"}",
      "{\"s\":\"\\ud83d\\ude00\"}",
      "{\"s\":\"\\ud800 lone\"}",
      "{\"s\":\"bad \\x escape\"}",
      "{\"s\":\"\\u00\"}",
      "{\"\\u00e9\":1}",
      "{\"k\\\"q\":1,\"\":2,\"a/b\":3}",
      "{\"é\":\"raw utf-8 name\"}",
      "{\"n\":1.50}",
      "{\"n\":1e300}",
      "{\"n\":1e+300}",
      "{\"n\":1E5}",
      "{\"n\":-0}",
      "{\"n\":-0.0}",
      "{\"n\":0}",
      "{\"n\":18446744073709551616}",
      "{\"n\":18446744073709551615}",
      "{\"n\":9223372036854775807}",
      "{\"n\":-9223372036854775808}",
      "{\"n\":9223372036854775808}",
      "{\"n\":9007199254740993}",
      "{\"n\":123456789012345680000}",
      "{\"n\":1000000000000000}",
      "{\"n\":1e+15}",
      "{\"n\":0.1}",
      "{\"n\":79.2}",
      "{\"n\":5e-324}",
      "{\"n\":1.7976931348623157e+308}",
      "{\"n\":1e400}",
      "{\"n\":01}",
      "{\"n\":+1}",
      "{\"n\":-}",
      "{\"n\":1.}",
      "{\"n\":.5}",
      "{\"n\":-inf}",
      "{\"n\":nan}",
      "{\"b\":true,\"f\":false,\"z\":null}",
      "{\"b\":tru}",
      "{\"b\":nulll}",
      "{\"v\":1}",
      "{\"v\":\"x\"}",
      "{\"v\":1.5}",
      "{\"v\":true}",
      "{\"v\":null}",
      "{\"v\":[1]}",
      "{\"v\":{\"a\":1}}",
      std::string("{\"nul\":\"a\0b\"}", 14),
      "{\"amount\":499,\"currency\":\"RUB\"}",
  };
  std::vector<StoredEvent> events;
  for (size_t data_idx = 0; data_idx < datas.size(); ++data_idx) {
    StoredEvent event = BaseEvent("e" + std::to_string(data_idx), "u_" + std::to_string(data_idx % 7),
                                  kJan1 + static_cast<int64_t>(data_idx) * 1000);
    event.data = datas[data_idx];
    events.push_back(std::move(event));
  }
  ExpectRoundTrip(events);
}

TEST_F(SegmentTest, TypedFieldsAreKeptWhetherOrNotTheyMatchData) {
  std::vector<StoredEvent> events;
  auto add = [&](std::string data, auto&& set) {
    StoredEvent event = BaseEvent("t" + std::to_string(events.size()), "u_typed", kJan1 + 10 * events.size());
    event.data = std::move(data);
    set(event);
    events.push_back(std::move(event));
  };
  // Equal to data (stored once) and differing from it (stored explicitly), every field.
  add(R"({"game_id":"g1","session_id":"s-1","amount":499,"currency":"RUB","country":"RU","platform":"linux"})",
      [](StoredEvent& e) {
        e.game_id = "g1", e.session_id = "s-1", e.amount = 499, e.currency = "RUB", e.country = "RU",
        e.platform = "linux";
      });
  add(R"({"game_id":"g1","session_id":"s-1","amount":499,"currency":"RUB","country":"RU","platform":"linux"})",
      [](StoredEvent& e) {
        e.game_id = "g2", e.session_id = "s-2", e.amount = 500, e.currency = "USD", e.country = "KZ",
        e.platform = "ios";
      });
  add(R"({"amount":79.2,"currency":"RUB"})", [](StoredEvent& e) { e.amount = 79.2, e.currency = "RUB"; });
  add(R"({"amount":-0})", [](StoredEvent& e) { e.amount = -0.0; });
  add(R"({"amount":0})", [](StoredEvent& e) { e.amount = -0.0; });
  add(R"({"amount":1.50})", [](StoredEvent& e) { e.amount = 1.5; });  // not canonical text: kept apart
  add(R"({"amount":"499"})", [](StoredEvent& e) { e.amount = 499; });
  add(R"({"amount":null})", [](StoredEvent& e) { e.amount = 1; });
  add(R"({"page":1})", [](StoredEvent& e) { e.amount = 12.5; });  // amount without data.amount
  add(R"({"page":1})", [](StoredEvent& e) { e.amount = std::nan(""); });
  add(R"({"page":1})", [](StoredEvent& e) { e.amount = -std::numeric_limits<double>::infinity(); });
  add("", [](StoredEvent& e) { e.amount = 3, e.game_id = "g-no-data"; });
  add("not json", [](StoredEvent& e) { e.game_id = "g3", e.country = "RU"; });
  add(R"({"game_id":5})", [](StoredEvent& e) { e.game_id = "5"; });
  add(R"({"game_id":"\u0067\u0031"})", [](StoredEvent& e) { e.game_id = "g1"; });  // non-canonical escapes
  add(R"({"game_id":"quote\"d"})", [](StoredEvent& e) { e.game_id = "quote\"d"; });
  add(R"({"game_id":""})", [](StoredEvent& e) { e.game_id = ""; });
  add(R"({"game_id":"g1","game_id":"g1"})", [](StoredEvent& e) { e.game_id = "g1"; });  // repeated name
  add(R"({"game_id":"g1"})", [](StoredEvent& e) { e.game_id = "", e.session_id = "only-typed"; });
  // data.user_id: the row's user, another user of the segment, someone else.
  add(R"({"user_id":"u_typed"})", [](StoredEvent& e) { e.user_in_subject = false; });
  add(R"({"user_id":"u_other"})", [](StoredEvent&) {});
  add(R"({"user_id":"u_stranger","friend_user_id":"u_typed"})", [](StoredEvent&) {});
  events.push_back(BaseEvent("o1", "u_other", kJan1));
  // Users that need escaping, or none.
  add(R"({"user_id":"odd\"user"})", [](StoredEvent& e) { e.user = "odd\"user"; });
  add(R"({"user_id":"odd\"user"})", [](StoredEvent& e) { e.user = ""; });
  add(R"({"user_id":""})", [](StoredEvent& e) { e.user = "", e.user_in_subject = false; });
  // Envelope corners: ids of every form, flags, far times.
  add("{}", [](StoredEvent& e) { e.id = "6694F546-4893-47A5-BA96-4B75BE30AA26"; });
  add("{}", [](StoredEvent& e) { e.id = "6694f546-4893-47a5-ba96-4b75be30aa26"; });
  add("{}", [](StoredEvent& e) { e.id = "6694f546-4893-47a5-ba96-4b75be30aa2"; });
  add("{}", [](StoredEvent& e) { e.id = "{6694f546-4893-47a5-ba96-4b75be30aa26}"; });
  add("{}", [](StoredEvent& e) { e.id = ""; });
  add("{}", [](StoredEvent& e) { e.time_defaulted = true, e.received_ms = e.time_ms; });
  add("{}", [](StoredEvent& e) { e.time_ms = INT64_MIN, e.received_ms = INT64_MAX; });
  add("{}", [](StoredEvent& e) { e.time_ms = INT64_MAX, e.received_ms = INT64_MIN; });
  add("{}", [](StoredEvent& e) { e.extensions = R"({"datacontenttype":"application/json"})"; });
  add("{}", [](StoredEvent& e) { e.type = "", e.source = ""; });
  ExpectRoundTrip(events);
}

TEST_F(SegmentTest, EmptySegmentRoundTrips) {
  ExpectRoundTrip({});
  ASSERT_OK_AND_ASSIGN(SegmentInfo info, ReadSegmentInfo(Path("seg.col")));
  EXPECT_EQ(info.rows, 0u);
  EXPECT_EQ(info.min_time_ms, 0);
}

TEST_F(SegmentTest, ThousandsOfDistinctNamesRoundTrip) {
  std::vector<StoredEvent> events;
  std::string wide = "{";
  for (int key_idx = 0; key_idx < 3000; ++key_idx) {
    if (key_idx > 0) wide += ',';
    wide += "\"w" + std::to_string(key_idx) + "\":" + std::to_string(key_idx);
  }
  wide += '}';
  for (int row_idx = 0; row_idx < 3; ++row_idx) {
    StoredEvent event = BaseEvent("wide" + std::to_string(row_idx), "u_w", kJan1 + row_idx);
    event.data = wide;
    events.push_back(std::move(event));
  }
  for (int row_idx = 0; row_idx < 2500; ++row_idx) {
    StoredEvent event = BaseEvent("r" + std::to_string(row_idx), "u_" + std::to_string(row_idx % 50), kJan1 + row_idx);
    event.data = "{\"common\":" + std::to_string(row_idx) + ",\"only_" + std::to_string(row_idx) + "\":true}";
    events.push_back(std::move(event));
  }
  ExpectRoundTrip(events);
  ASSERT_OK_AND_ASSIGN(auto stats, ReadSegmentColumnStats(Path("seg.col")));
  EXPECT_LE(stats.size(), v3::kCoreColumnCount + v3::kMaxPropertyColumns);
}

TEST_F(SegmentTest, ColumnsPresentValuesAsTyped) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1.50", "double 1.5"},   {"-0", "double -0"},       {"18446744073709551616", "double"},
      {"499", "int 499"},       {"79.2", "double 79.2"},   {"1e+21", "double"},
      {"[1,2]", "json"},        {"{\"a\":1}", "json"},    {"\"\\u00e9\"", "string é"},
      {"\"plain\"", "string"},  {"null", "null"},          {"true", "bool 1"},
      {"1e400", "json"},        {"-9223372036854775808", "int"},
  };
  std::vector<StoredEvent> events;
  for (size_t case_idx = 0; case_idx < cases.size(); ++case_idx) {
    StoredEvent event = BaseEvent("c" + std::to_string(case_idx), "u_c", kJan1 + static_cast<int64_t>(case_idx));
    event.data = "{\"v\":" + cases[case_idx].first + "}";
    events.push_back(std::move(event));
  }
  events.push_back(BaseEvent("none", "u_c", kJan1 + 1000));
  events.back().data = "{\"w\":1}";
  const std::string path = Path("typed.col");
  ASSERT_OK(WriteSegment(path, events));
  SegmentColumnRequest request;
  request.properties = {"v"};
  ASSERT_OK_AND_ASSIGN(SegmentColumns columns, ReadSegmentColumns(path, request));
  const PropertyColumn& v = columns.properties.at(0);
  auto string_at = [&](size_t row_idx) { return v.strings.at(v.ints[row_idx]); };
  EXPECT_EQ(v.kinds[0], ValueKind::kDouble);
  EXPECT_EQ(v.doubles[0], 1.5);
  EXPECT_EQ(v.kinds[1], ValueKind::kDouble);
  EXPECT_TRUE(std::signbit(v.doubles[1]));
  EXPECT_EQ(v.kinds[2], ValueKind::kDouble);
  EXPECT_EQ(v.doubles[2], 18446744073709551616.0);
  EXPECT_EQ(v.kinds[3], ValueKind::kInt);  // an int literal, even in a column that also holds doubles
  EXPECT_EQ(v.ints[3], 499);
  EXPECT_EQ(v.doubles[3], 499.0);
  EXPECT_EQ(v.kinds[4], ValueKind::kDouble);
  EXPECT_EQ(v.doubles[4], 79.2);
  EXPECT_EQ(v.kinds[5], ValueKind::kDouble);
  EXPECT_EQ(v.doubles[5], 1e21);
  EXPECT_EQ(v.kinds[6], ValueKind::kJson);
  EXPECT_EQ(string_at(6), "[1,2]");
  EXPECT_EQ(v.kinds[7], ValueKind::kJson);
  EXPECT_EQ(string_at(7), "{\"a\":1}");
  EXPECT_EQ(v.kinds[8], ValueKind::kString);
  EXPECT_EQ(string_at(8), "é");
  EXPECT_EQ(v.kinds[9], ValueKind::kString);
  EXPECT_EQ(string_at(9), "plain");
  EXPECT_EQ(v.kinds[10], ValueKind::kNull);
  EXPECT_EQ(v.kinds[11], ValueKind::kBool);
  EXPECT_EQ(v.ints[11], 1);
  EXPECT_EQ(v.kinds[12], ValueKind::kJson);
  EXPECT_EQ(string_at(12), "1e400");
  EXPECT_EQ(v.kinds[13], ValueKind::kInt);
  EXPECT_EQ(v.ints[13], INT64_MIN);
  EXPECT_EQ(v.kinds[14], ValueKind::kAbsent);
  // Nothing else was asked for.
  EXPECT_TRUE(columns.time_ms.empty());
  EXPECT_TRUE(columns.users.empty());
  EXPECT_TRUE(columns.type.codes.empty());
}

TEST_F(SegmentTest, ColumnReadDecodesOnlyTheColumnsItNeeds) {
  std::vector<StoredEvent> events;
  for (int row_idx = 0; row_idx < 50; ++row_idx) {
    StoredEvent event = BaseEvent("s" + std::to_string(row_idx), "u_" + std::to_string(row_idx % 5), kJan1 + row_idx);
    event.data = "{\"page\":" + std::to_string(row_idx) + ",\"name\":\"n" + std::to_string(row_idx % 3) + "\"}";
    events.push_back(std::move(event));
  }
  const std::string path = Path("selective.col");
  ASSERT_OK(WriteSegment(path, events));
  // Damage the id column and the data.name column: a read of type, time and data.page does not touch them.
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(path));
  std::string bytes = ReadFileBytes(path);
  for (const auto& column : file->footer().parts[0].columns) {
    if (column.name == "id" || column.name == "data.name") bytes[column.offset + column.size / 2] ^= 0x55;
  }
  file.reset();
  WriteFileBytes(path, bytes);
  SegmentColumnRequest request;
  request.type = request.time = true;
  request.properties = {"page"};
  ASSERT_OK_AND_ASSIGN(SegmentColumns columns, ReadSegmentColumns(path, request));
  const std::vector<StoredEvent> sorted = SortedLikeSegment(events);
  for (size_t row_idx = 0; row_idx < sorted.size(); ++row_idx) {
    EXPECT_EQ(columns.time_ms[row_idx], sorted[row_idx].time_ms);
    EXPECT_EQ(columns.properties[0].ints[row_idx], std::stoi(sorted[row_idx].id.substr(1)));
  }
  request.properties = {"name"};
  auto damaged = ReadSegmentColumns(path, request);
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.status().code(), StatusCode::kCorruption);
  EXPECT_NE(damaged.status().message().find("data.name"), std::string::npos) << damaged.status().message();
  std::vector<StoredEvent> out;
  const auto status = ReadSegmentEvents(path, out);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find(path), std::string::npos);
  EXPECT_NE(status.message().find("column id"), std::string::npos) << status.message();
  EXPECT_TRUE(out.empty());
}

// --- Randomized round trips ------------------------------------------------------------------------------

// Random events whose `data` mixes every form: canonical and non-canonical literals, escapes, nesting,
// whitespace, repeated names, text that is not JSON; typed fields sometimes equal to data, sometimes not.
class RandomEvents {
 public:
  explicit RandomEvents(uint64_t seed) : rng_(seed) {}

  std::vector<StoredEvent> Make(size_t count) {
    std::vector<StoredEvent> events;
    for (size_t event_idx = 0; event_idx < count; ++event_idx) events.push_back(MakeOne(event_idx));
    return events;
  }

 private:
  struct Member {
    std::string key;                 // literal text between the quotes
    std::string text;                // value literal
    std::optional<std::string> str;  // the unescaped value of a string literal
    std::optional<double> number;    // the value of a number literal
  };

  size_t Pick(size_t count) { return std::uniform_int_distribution<size_t>(0, count - 1)(rng_); }
  bool Chance(double probability) { return std::bernoulli_distribution(probability)(rng_); }
  template <typename T>
  const T& OneOf(const std::vector<T>& values) { return values[Pick(values.size())]; }

  std::string RandomText() {
    static const std::vector<std::string> pieces = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01",
                                                    "\x1f", "\x7f", "é", "😀", "RUB", "u_", "game_", "-"};
    std::string text;
    const size_t length = Pick(6);
    for (size_t piece_idx = 0; piece_idx < length; ++piece_idx) text += OneOf(pieces);
    return text;
  }

  // Every non-ASCII or special character as \u escapes (valid JSON, not the writer's form).
  static std::string UnicodeEscaped(std::string_view utf8) {
    std::string out = "\"";
    char buffer[16];
    for (size_t pos = 0; pos < utf8.size();) {
      const auto byte = static_cast<unsigned char>(utf8[pos]);
      uint32_t code_point = byte;
      size_t length = 1;
      if (byte >= 0xF0) {
        code_point = byte & 0x07, length = 4;
      } else if (byte >= 0xE0) {
        code_point = byte & 0x0F, length = 3;
      } else if (byte >= 0xC0) {
        code_point = byte & 0x1F, length = 2;
      }
      for (size_t extra = 1; extra < length; ++extra) code_point = code_point << 6 | (utf8[pos + extra] & 0x3F);
      pos += length;
      if (code_point >= 0x80 || code_point < 0x20 || code_point == '"' || code_point == '\\' || code_point == '/') {
        if (code_point >= 0x10000) {
          const uint32_t reduced = code_point - 0x10000;
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", 0xD800 + (reduced >> 10));
          out += buffer;
          std::snprintf(buffer, sizeof(buffer), "\\u%04X", 0xDC00 + (reduced & 0x3FF));
          out += buffer;
        } else {
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", code_point);
          out += buffer;
        }
      } else {
        out.push_back(static_cast<char>(code_point));
      }
    }
    return out + "\"";
  }

  Member StringMember(std::string value) {
    Member member;
    member.text = Chance(0.8) ? Quoted(value) : UnicodeEscaped(value);
    member.str = std::move(value);
    return member;
  }

  Member NumberMember() {
    static const std::vector<std::string> odd = {"1.50", "1e3", "1E3", "-0", "0.0", "1.0", "18446744073709551616",
                                                 "18446744073709551615", "1e400", "123456789012345678901234567890",
                                                 "0.1", "5e-324", "-9223372036854775808", "01", "1.", "-1e-400"};
    Member member;
    char buffer[64];
    if (Chance(0.4)) {
      const int64_t value = static_cast<int64_t>(rng_()) >> Pick(64);
      member.text = std::to_string(value);
    } else if (Chance(0.6)) {
      double value = std::ldexp(std::uniform_real_distribution<double>(-1, 1)(rng_), static_cast<int>(Pick(80)) - 40);
      if (Chance(0.3)) value = std::round(value * 100) / 100;  // money-like
      const auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
      member.text.assign(buffer, end);
    } else {
      member.text = OneOf(odd);
    }
    member.number = std::strtod(member.text.c_str(), nullptr);
    return member;
  }

  std::string NestedText(int depth) {
    if (depth > 2 || Chance(0.4)) return Chance(0.5) ? Quoted(RandomText()) : std::to_string(Pick(1000));
    std::string text = Chance(0.5) ? "[" : "{";
    const bool object = text == "{";
    const size_t count = Pick(4);
    for (size_t item_idx = 0; item_idx < count; ++item_idx) {
      if (item_idx > 0) text += Chance(0.8) ? "," : " , ";
      if (object) text += Quoted("k" + std::to_string(Pick(3))) + ":";
      text += NestedText(depth + 1);
    }
    return text + (object ? "}" : "]");
  }

  Member ValueFor(const std::string& key, const std::string& user) {
    static const std::vector<std::string> users = {"u_abc", "u_abd", "odd\"user", "", "u_other"};
    if ((key == "user_id" || key == "friend_user_id") && Chance(0.7)) {
      return StringMember(Chance(0.5) ? user : OneOf(users));
    }
    const size_t kind = Pick(8);
    Member member;
    switch (kind) {
      case 0: member.text = "null"; break;
      case 1: member.text = Chance(0.5) ? "true" : "false"; break;
      case 2: case 3: member = NumberMember(); break;
      case 4: case 5: member = StringMember(Chance(0.3) ? RandomText() : "v" + std::to_string(Pick(5))); break;
      default: member.text = NestedText(0);
    }
    return member;
  }

  std::string MakeData(const std::string& user, std::vector<Member>& members) {
    static const std::vector<std::string> hostile = {"[]", "5", "null", "\"s\"", "{", "}", "{\"a\"}", "{\"a\":}",
                                                     "{\"a\":1,}", "not json", " {\"a\":1}", "{\"a\":1} ",
                                                     "{\"a\" :1}", "{\"a\":1}x", "{\"a\":[1,2}", "{\"a\":\"open}"};
    static const std::vector<std::string> keys = {"game_id", "session_id", "amount", "currency", "country",
                                                  "platform", "user_id", "friend_user_id", "k", "n", "s", "é",
                                                  "\\u00e9", "k\\\"q", "", "a/b"};
    if (Chance(0.08)) return "";
    if (Chance(0.05)) return OneOf(hostile);
    const size_t count = Pick(8);
    std::set<std::string> used;
    for (size_t member_idx = 0; member_idx < count; ++member_idx) {
      std::string key = OneOf(keys);
      if (used.count(key) && !Chance(0.1)) continue;  // repeated names now and then
      used.insert(key);
      std::string name = key == "\\u00e9" ? "é" : key == "k\\\"q" ? "k\"q" : key;
      Member member = ValueFor(name, user);
      member.key = key;
      members.push_back(std::move(member));
    }
    const bool spaced = Chance(0.05);
    std::string text = "{";
    for (size_t member_idx = 0; member_idx < members.size(); ++member_idx) {
      if (member_idx > 0) text += spaced ? ", " : ",";
      text += "\"" + members[member_idx].key + (spaced ? "\": " : "\":") + members[member_idx].text;
    }
    return text + "}";
  }

  StoredEvent MakeOne(size_t event_idx) {
    static const std::vector<std::string> users = {"u_abc", "u_abd", "odd\"user", "", "u_other",
                                                   "u_" + std::string(70, 'x')};
    static const std::vector<std::string> types = {"com.platform.store.page.viewed.v1", "com.platform.x.y.z.v1",
                                                   "t3", ""};
    static const std::vector<std::string> extensions = {"", "", R"({"datacontenttype":"application/json"})",
                                                        R"({"traceparent":"00-ab-cd-01"})", "not json"};
    StoredEvent event;
    event.user = OneOf(users);
    event.type = OneOf(types);
    event.source = event.type.empty() ? "" : "/services/" + event.type.substr(0, 3);
    if (Chance(0.5)) {
      char uuid[40];
      std::snprintf(uuid, sizeof(uuid), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(rng_()),
                    static_cast<unsigned>(Pick(65536)), static_cast<unsigned>(Pick(4096)),
                    static_cast<unsigned>(0x8000 + Pick(16384)), static_cast<unsigned long long>(rng_() >> 16));
      event.id = uuid;
    } else {
      event.id = "id-" + std::to_string(event_idx) + (Chance(0.1) ? "\"é" : "");
    }
    event.time_ms = Chance(0.02) ? (Chance(0.5) ? INT64_MIN : INT64_MAX)
                                 : kJan1 + static_cast<int64_t>(Pick(Chance(0.2) ? 10 : 86400000));
    event.received_ms = Chance(0.5) ? static_cast<int64_t>(static_cast<uint64_t>(event.time_ms) + Pick(5000))  // wraps
                                    : 1764000000000 + 5 * static_cast<int64_t>(Pick(20));
    event.time_defaulted = Chance(0.1);
    event.user_in_subject = Chance(0.7);
    event.extensions = OneOf(extensions);
    std::vector<Member> members;
    event.data = MakeData(event.user, members);
    auto member_named = [&](const std::string& key) -> const Member* {
      for (const Member& member : members) {
        if (member.key == key) return &member;
      }
      return nullptr;
    };
    std::string* string_fields[] = {&event.game_id, &event.session_id, &event.currency, &event.country,
                                    &event.platform};
    const char* string_names[] = {"game_id", "session_id", "currency", "country", "platform"};
    for (size_t field_idx = 0; field_idx < 5; ++field_idx) {
      const Member* member = member_named(string_names[field_idx]);
      if (member != nullptr && member->str && Chance(0.7)) {
        *string_fields[field_idx] = *member->str;
      } else if (Chance(0.2)) {
        *string_fields[field_idx] = RandomText();
      }
    }
    const Member* amount = member_named("amount");
    if (amount != nullptr && amount->number && Chance(0.7)) {
      event.amount = amount->number;
    } else if (Chance(0.2)) {
      event.amount = OneOf(std::vector<double>{0.0, -0.0, 1.5, 1e308, std::nan("")});
    }
    return event;
  }

  std::mt19937_64 rng_;
};

TEST_F(SegmentTest, RandomizedEventsRoundTripExactly) {
  RandomEvents random(20240101);
  for (int segment_idx = 0; segment_idx < 40; ++segment_idx) {
    SCOPED_TRACE("segment " + std::to_string(segment_idx));
    ExpectRoundTrip(random.Make(1 + segment_idx * 7), "random-" + std::to_string(segment_idx) + ".col");
    if (HasFailure()) return;
  }
}

// --- Format 2 --------------------------------------------------------------------------------------------

// Written by the format 2 writer (the commit before format 3) from the three events of FormatTwoEvents.
constexpr const char* kFormatTwoSegmentHex =
    "415345477630303228b52ffd2014a10000030007755f616c70686106755f6265746100010228b52ffd200d690000e8d7"
    "8fa59863bc984adcc58b0228b52ffd201189000003e8d78fa5986398c8afc4be030600010228b52ffd2078c5020092c5"
    "1218a0276dc0e8cbfa96b6b8d6c4a68caa42438dcfff55b3bf05014051928def4f1e9a8fea303da4d126bf4465017124"
    "f9a6d2575c3428c9c64d5287f98668dae0a92df3291ab64efad008820300e084a2ae8a74283d28b52ffd20397d010054"
    "0203112f73657276696365732f636174616c6f670f73746f7265127061796d656e74730001020200337751db640228b5"
    "2ffd2028410100d32de3004df6421785d593be6660ca096694f546489347a5ba964b75be30aa26076f726465722d3728"
    "b52ffd2019b5000080030967616d655f31303031003000010201002e4a1228b52ffd200319000000000028b52ffd2008"
    "41000000000000004c944028b52ffd200949000002035255420000010028b52ffd2008410000020002525500010028b5"
    "2ffd200b5900000200056c696e757800010028b52ffd2003190000090a0628b52ffd20dbed040052ca201f6049d51804"
    "a0fa5dcf734f0dbfaa25edc68a112871fad7c11671802108960b93424c2a7853d6a2a0f52d8038ba1b21df711c0cbcc9"
    "ef4225cb5693654b06d30b91b398f16699d2922920184f6c7322867c038c235a3eb7360c31ae4fa2295df2591a98104e"
    "f8ce0f7068c9f61d0c4700aec8da4729a8f36d148581274b6993cbd21108005f4c8d22808bf90a98cd15cc8c4205d136"
    "c7ee50e828b52ffd204c350200c28410169017b801b7edb5274c65c6c6429b1009fa97f8ee1ab407bbc71defca0960d3"
    "e98ac356f58f069d401e449e5cd0dc592de4df1db6096c1156656151aa6586811001007b22636f6c756d6e73223a5b7b"
    "22637263223a343134343035323833382c226e616d65223a2275736572222c226f6666736574223a382c227261775f73"
    "697a65223a32302c2273697a65223a32397d2c7b22637263223a313934343031343136382c226e616d65223a2274696d"
    "65222c226f6666736574223a33372c227261775f73697a65223a31332c2273697a65223a32327d2c7b22637263223a31"
    "3636323237353138342c226e616d65223a227265636569766564222c226f6666736574223a35392c227261775f73697a"
    "65223a31372c2273697a65223a32367d2c7b22637263223a34373933353238382c226e616d65223a2274797065222c22"
    "6f6666736574223a38352c227261775f73697a65223a3132302c2273697a65223a39377d2c7b22637263223a32343033"
    "3833393035362c226e616d65223a22736f75726365222c226f6666736574223a3138322c227261775f73697a65223a35"
    "372c2273697a65223a35367d2c7b22637263223a3536363037313439392c226e616d65223a226964222c226f66667365"
    "74223a3233382c227261775f73697a65223a34302c2273697a65223a34397d2c7b22637263223a383732313134353438"
    "2c226e616d65223a2267616d655f6964222c226f6666736574223a3238372c227261775f73697a65223a32352c227369"
    "7a65223a33317d2c7b22637263223a323132343231333932302c226e616d65223a2273657373696f6e5f6964222c226f"
    "6666736574223a3331382c227261775f73697a65223a332c2273697a65223a31327d2c7b22637263223a313832313238"
    "383734352c226e616d65223a22616d6f756e74222c226f6666736574223a3333302c227261775f73697a65223a382c22"
    "73697a65223a31377d2c7b22637263223a333832303938343930342c226e616d65223a2263757272656e6379222c226f"
    "6666736574223a3334372c227261775f73697a65223a392c2273697a65223a31387d2c7b22637263223a333732353134"
    "313737352c226e616d65223a22636f756e747279222c226f6666736574223a3336352c227261775f73697a65223a382c"
    "2273697a65223a31377d2c7b22637263223a32313733373132342c226e616d65223a22706c6174666f726d222c226f66"
    "66736574223a3338322c227261775f73697a65223a31312c2273697a65223a32307d2c7b22637263223a313635363835"
    "343637322c226e616d65223a22666c616773222c226f6666736574223a3430322c227261775f73697a65223a332c2273"
    "697a65223a31327d2c7b22637263223a313830373638323231392c226e616d65223a2264617461222c226f6666736574"
    "223a3431342c227261775f73697a65223a3231392c2273697a65223a3136367d2c7b22637263223a3233383235333836"
    "38372c226e616d65223a22657874656e73696f6e73222c226f6666736574223a3538302c227261775f73697a65223a37"
    "362c2273697a65223a37397d5d2c22666f726d6174223a312c226d61785f72656365697665645f6d73223a3137363430"
    "30303030303030332c226d61785f74696d655f6d73223a313730343037303030303030302c226d696e5f74696d655f6d"
    "73223a313730343036373230303530302c22726f7773223a332c22747970655f636f756e7473223a7b22636f6d2e706c"
    "6174666f726d2e636174616c6f672e70726963652e6368616e6765642e7631223a312c22636f6d2e706c6174666f726d"
    "2e7061796d656e74732e70757263686173652e636f6d706c657465642e7631223a312c22636f6d2e706c6174666f726d"
    "2e73746f72652e706167652e7669657765642e7631223a317d7d370500006c36527d41534547454e4431"
    ;

std::vector<StoredEvent> FormatTwoEvents() {
  StoredEvent a;
  a.id = "6694f546-4893-47a5-ba96-4b75be30aa26";
  a.source = "/services/store";
  a.type = "com.platform.store.page.viewed.v1";
  a.time_ms = 1704067808274;
  a.received_ms = 1764000000000;
  a.user = "u_alpha";
  a.user_in_subject = true;
  a.country = "RU";
  a.platform = "linux";
  a.data = R"({"page_type":"home","page_path":"/","country":"RU","platform":"linux"})";
  StoredEvent b;
  b.id = "order-7";
  b.source = "/services/payments";
  b.type = "com.platform.payments.purchase.completed.v1";
  b.time_ms = 1704070000000;
  b.received_ms = 1764000000003;
  b.user = "u_beta";
  b.user_in_subject = true;
  b.game_id = "game_1000";
  b.amount = 1299;
  b.currency = "RUB";
  b.data = R"({"order_id":"ord_1","game_id":"game_1000","amount":1299,"currency":"RUB","is_gift":false})";
  b.extensions = R"({"traceparent":"00-ee1156be948760f15c9a39c87110bb00-7b1f0ae251644714-01"})";
  StoredEvent c;
  c.id = "d32de300-4df6-4217-85d5-93be6660ca09";
  c.source = "/services/catalog";
  c.type = "com.platform.catalog.price.changed.v1";
  c.time_ms = 1704067200500;
  c.received_ms = 1704067200500;
  c.time_defaulted = true;
  c.game_id = "game_1001";
  c.currency = "RUB";
  c.data = R"({"game_id":"game_1001","new_price":79.2,"tags":["a","b"]})";
  return {a, b, c};
}

TEST_F(SegmentTest, FormatTwoFilesAreStillRead) {
  std::string bytes;
  const std::string hex = kFormatTwoSegmentHex;
  for (size_t pos = 0; pos + 1 < hex.size(); pos += 2) {
    bytes.push_back(static_cast<char>(std::stoi(hex.substr(pos, 2), nullptr, 16)));
  }
  const std::string path = Path("format2.col");
  WriteFileBytes(path, bytes);
  const std::vector<StoredEvent> expected = SortedLikeSegment(FormatTwoEvents());
  std::vector<StoredEvent> events;
  ASSERT_OK(ReadSegmentEvents(path, events));
  ExpectSameEvents(expected, events);
  ExpectColumnsMatchEvents(path, expected);
  ASSERT_OK_AND_ASSIGN(SegmentInfo info, ReadSegmentInfo(path));
  EXPECT_EQ(info.rows, 3u);
  EXPECT_EQ(info.min_time_ms, 1704067200500);
  EXPECT_EQ(info.type_counts.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto stats, ReadSegmentColumnStats(path));
  EXPECT_EQ(stats.size(), 15u);
  // Rewriting it gives format 4 with the same events.
  ExpectRoundTrip(events, "rewritten.col");
  EXPECT_EQ(ReadFileBytes(Path("rewritten.col")).substr(0, 8), "ASEGv004");
}

// --- Damage ----------------------------------------------------------------------------------------------

// A small segment that uses every kind of column and value.
std::vector<StoredEvent> SmallVariedEvents() {
  std::vector<StoredEvent> events;
  auto add = [&](std::string user, std::string data) {
    const std::string number = std::to_string(events.size());
    StoredEvent event = BaseEvent(events.size() % 2 ? "6694f546-4893-47a5-ba96-4b75be30aa2" + number : "id-" + number,
                                  std::move(user), kJan1 + 1000 * static_cast<int64_t>(events.size()));
    event.data = std::move(data);
    events.push_back(std::move(event));
  };
  add("u_a", R"({"user_id":"u_a","friend_user_id":"u_b","game_id":"g1","amount":499,"currency":"RUB","n":null})");
  add("u_a", R"({"game_id":"g2","amount":79.2,"currency":"RUB","flag":true,"list":[1,"x"],"s":"\u00e9"})");
  add("u_b", R"({"flag":false,"n":-0,"big":18446744073709551616,"s":"quote\"d"})");
  add("u_b", "not json");
  add("", "");
  add("u_c", R"({"session_id":"s-0123456789abcdef","device_id":"0123456789abcdef0123456789abcdef"})");
  events[0].game_id = "g1";
  events[0].amount = 499;
  events[0].currency = "RUB";
  events[1].game_id = "other";
  events[1].amount = 79.2;
  events[2].amount = 5;
  events[3].country = "RU";
  events[5].session_id = "s-0123456789abcdef";
  events[5].extensions = R"({"datacontenttype":"application/json"})";
  events[5].time_defaulted = true;
  return events;
}

// Reads `path` every way; each must give the original events or Corruption naming the file, never a crash.
void ExpectIntactOrCorruption(const std::string& path, const std::vector<StoredEvent>& expected,
                              bool must_be_corrupt) {
  std::vector<StoredEvent> events;
  const common::Status status = ReadSegmentEvents(path, events);
  if (status.ok()) {
    EXPECT_FALSE(must_be_corrupt);
    ExpectSameEvents(expected, events);
  } else {
    EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
    EXPECT_TRUE(events.empty());
  }
  auto info = ReadSegmentInfo(path);
  if (!info.ok()) {
    EXPECT_EQ(info.status().code(), StatusCode::kCorruption) << info.status().ToString();
  }
  auto columns = ReadSegmentColumns(path, FullRequest({"user_id", "friend_user_id", "s", "n", "list", "absent"}));
  if (!columns.ok()) {
    EXPECT_EQ(columns.status().code(), StatusCode::kCorruption) << columns.status().ToString();
  }
}

TEST_F(SegmentTest, EveryByteFlipAndTruncationIsCorruptionNeverACrash) {
  const std::vector<StoredEvent> events = SmallVariedEvents();
  const std::string original_path = Path("original.col");
  ASSERT_OK(WriteSegment(original_path, events));
  const std::string bytes = ReadFileBytes(original_path);
  const std::vector<StoredEvent> expected = SortedLikeSegment(events);
  const std::string path = Path("damaged.col");
  for (size_t pos = 0; pos < bytes.size(); ++pos) {
    for (uint8_t flip : {0x01, 0x80, 0xFF}) {
      std::string damaged = bytes;
      damaged[pos] = static_cast<char>(damaged[pos] ^ flip);
      WriteFileBytes(path, damaged);
      SCOPED_TRACE("flip at byte " + std::to_string(pos));
      // Every byte is covered by a magic number, a checksum or the trailer.
      ExpectIntactOrCorruption(path, expected, /*must_be_corrupt=*/true);
    }
    if (HasFailure()) return;
  }
  for (size_t length = 0; length < bytes.size(); ++length) {
    WriteFileBytes(path, std::string_view(bytes).substr(0, length));
    SCOPED_TRACE("truncated to " + std::to_string(length));
    ExpectIntactOrCorruption(path, expected, /*must_be_corrupt=*/true);
    if (HasFailure()) return;
  }
}

// The decoded blocks of a format 3/4 file, part by part, and its footer.
struct RawParts {
  v3::Footer footer;
  std::vector<std::string> positions;             // per part; empty for the first
  std::vector<std::vector<std::string>> columns;  // per part
};

RawParts ReadRawParts(const v3::SegmentFile& file) {
  RawParts raw;
  raw.footer = file.footer();
  for (size_t part_idx = 0; part_idx < file.part_count(); ++part_idx) {
    raw.positions.emplace_back(part_idx > 0 ? file.Positions(part_idx).value() : std::string());
    auto& columns = raw.columns.emplace_back();
    for (size_t column_idx = 0; column_idx < file.part(part_idx).columns.size(); ++column_idx) {
      columns.push_back(file.PartColumn(part_idx, column_idx).value());
    }
  }
  return raw;
}

// Rebuilds a file from (possibly altered) decoded blocks and footer, with valid checksums, so the damage
// reaches the decoders instead of stopping at a checksum. Format 3 or 4 as the footer says.
std::string BuildParts(RawParts raw) {
  const bool format3 = raw.footer.format == 3;
  std::string file(format3 ? v3::kMagicV3 : v3::kMagic, sizeof(v3::kMagic));
  auto append = [&](const std::string& block, v3::ColumnEntry& entry) {
    std::string compressed(ZSTD_compressBound(block.size()), '\0');
    compressed.resize(ZSTD_compress(compressed.data(), compressed.size(), block.data(), block.size(), 1));
    entry.offset = file.size();
    entry.size = compressed.size();
    entry.raw_size = block.size();
    entry.crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(compressed.data()),
                                            static_cast<uInt>(compressed.size())));
    file += compressed;
  };
  for (size_t part_idx = 0; part_idx < raw.columns.size(); ++part_idx) {
    v3::Part& part = raw.footer.parts[part_idx];
    if (part_idx > 0) append(raw.positions[part_idx], part.positions);
    for (size_t column_idx = 0; column_idx < raw.columns[part_idx].size(); ++column_idx) {
      append(raw.columns[part_idx][column_idx], part.columns[column_idx]);
    }
  }
  const std::string footer_bytes = v3::EncodeFooter(raw.footer);
  file += footer_bytes;
  v3::PutFixed32(file, static_cast<uint32_t>(footer_bytes.size()));
  v3::PutFixed32(file, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(footer_bytes.data()),
                                                   static_cast<uInt>(footer_bytes.size()))));
  file.append(format3 ? v3::kEndMagicV3 : v3::kEndMagic, sizeof(v3::kEndMagic));
  return file;
}

// A one-part file from its columns.
std::string BuildFile(const std::vector<std::string>& raw_columns, v3::Footer footer) {
  return BuildParts(RawParts{std::move(footer), {std::string()}, {raw_columns}});
}

// `good`, a segment file that ends in `footer_bytes` and the trailer, with footer byte `pos` xor `flip` and the
// footer's size and checksum recomputed: a footer that passes its checksum but decodes to absurd values.
std::string WithFooterByteFlipped(const std::string& good, const std::string& footer_bytes, size_t pos, uint8_t flip) {
  std::string footer = footer_bytes;
  footer[pos] = static_cast<char>(footer[pos] ^ flip);
  std::string damaged = good.substr(0, good.size() - v3::kTrailerBytes - footer_bytes.size()) + footer;
  v3::PutFixed32(damaged, static_cast<uint32_t>(footer.size()));
  v3::PutFixed32(damaged, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(footer.data()),
                                                      static_cast<uInt>(footer.size()))));
  damaged.append(v3::kEndMagic, sizeof(v3::kEndMagic));
  return damaged;
}

TEST_F(SegmentTest, DamageInsideColumnsWithValidChecksumsIsCorruptionNeverACrash) {
  const std::vector<StoredEvent> events = SmallVariedEvents();
  const std::string original_path = Path("original.col");
  ASSERT_OK(WriteSegment(original_path, events));
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(original_path));
  const v3::Footer footer = file->footer();
  std::vector<std::string> raw_columns;
  for (size_t column_idx = 0; column_idx < footer.parts[0].columns.size(); ++column_idx) {
    ASSERT_OK_AND_ASSIGN(std::string raw, file->Column(column_idx));
    raw_columns.push_back(std::move(raw));
  }
  const std::vector<StoredEvent> expected = SortedLikeSegment(events);
  const std::string path = Path("damaged.col");
  // Rebuilding unchanged gives the same events (the harness itself is right).
  WriteFileBytes(path, BuildFile(raw_columns, footer));
  ExpectIntactOrCorruption(path, expected, /*must_be_corrupt=*/false);
  std::vector<StoredEvent> intact;
  ASSERT_OK(ReadSegmentEvents(path, intact));

  auto try_columns = [&](const std::vector<std::string>& columns, const v3::Footer& altered_footer) {
    WriteFileBytes(path, BuildFile(columns, altered_footer));
    std::vector<StoredEvent> out;
    const common::Status status = ReadSegmentEvents(path, out);  // any result but a crash or another code
    if (!status.ok()) {
      EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    }
    auto read = ReadSegmentColumns(path, FullRequest({"user_id", "friend_user_id", "s", "n", "list", "absent"}));
    if (!read.ok()) {
      EXPECT_EQ(read.status().code(), StatusCode::kCorruption) << read.status().ToString();
    }
  };
  const std::string absurd_varint = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
  for (size_t column_idx = 0; column_idx < raw_columns.size(); ++column_idx) {
    SCOPED_TRACE("column " + footer.parts[0].columns[column_idx].name);
    const std::string& raw = raw_columns[column_idx];
    for (size_t pos = 0; pos < raw.size(); ++pos) {
      for (uint8_t flip : {0x01, 0x02, 0x80, 0xFF}) {
        std::vector<std::string> columns = raw_columns;
        columns[column_idx][pos] = static_cast<char>(columns[column_idx][pos] ^ flip);
        try_columns(columns, footer);
      }
      std::vector<std::string> columns = raw_columns;
      columns[column_idx].insert(pos, absurd_varint);
      try_columns(columns, footer);
      columns = raw_columns;
      columns[column_idx].resize(pos);  // cut short
      try_columns(columns, footer);
    }
    std::vector<std::string> columns = raw_columns;
    columns[column_idx] += '\0';  // trailing byte
    try_columns(columns, footer);
    if (HasFailure()) return;
  }
  // The footer: every byte flipped, the checksum recomputed (absurd counts, offsets, sizes, names).
  const std::string footer_bytes = v3::EncodeFooter(footer);
  const std::string good = BuildFile(raw_columns, footer);
  for (size_t pos = 0; pos < footer_bytes.size(); ++pos) {
    for (uint8_t flip : {0x01, 0x40, 0x80, 0xFF}) {
      WriteFileBytes(path, WithFooterByteFlipped(good, footer_bytes, pos, flip));
      SCOPED_TRACE("footer byte " + std::to_string(pos));
      std::vector<StoredEvent> out;
      const common::Status status = ReadSegmentEvents(path, out);
      if (!status.ok()) {
        EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
      }
      auto info = ReadSegmentInfo(path);
      if (!info.ok()) {
        EXPECT_EQ(info.status().code(), StatusCode::kCorruption) << info.status().ToString();
      }
    }
    if (HasFailure()) return;
  }
}


// --- Parts (format 4) -----------------------------------------------------------------------------------

// The events of the busiest day of a generated data set: enough rows for rare types to get parts of their own.
std::vector<StoredEvent> OneGeneratedDay(int64_t users) {
  std::map<int64_t, std::vector<StoredEvent>> days;
  for (auto& event : NormalizedGeneratedEvents(users, 2)) days[event.time_ms / 86400000].push_back(std::move(event));
  std::vector<StoredEvent> busiest;
  for (auto& [day, events] : days) {
    if (events.size() > busiest.size()) busiest = std::move(events);
  }
  return busiest;
}

TEST_F(SegmentTest, RareTypesAreStoredInPartsAndReadBackInSegmentOrder) {
  const std::vector<StoredEvent> events = OneGeneratedDay(2500);
  ASSERT_GT(events.size(), 4096u);
  ExpectRoundTrip(events, "parts.col");
  const std::string path = Path("parts.col");
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(path));
  ASSERT_GT(file->part_count(), 2u);
  EXPECT_EQ(ReadFileBytes(path).substr(0, 8), "ASEGv004");
  const std::vector<StoredEvent> sorted = SortedLikeSegment(events);
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> part_of_row, v3::PartOfRows(*file));
  ASSERT_EQ(part_of_row.size(), sorted.size());
  const std::vector<std::string> names = {"game_id", "amount", "user_id", "friend_user_id", "page_type", "absent"};
  std::set<std::string> seen_types;
  for (size_t part_idx = 0; part_idx < file->part_count(); ++part_idx) {
    SCOPED_TRACE("part " + std::to_string(part_idx));
    const v3::Part& part = file->part(part_idx);
    // A part holds exactly the rows of its types, in the segment's order; rare ones are at most 1/64.
    std::vector<StoredEvent> expected;
    for (size_t row_idx = 0; row_idx < sorted.size(); ++row_idx) {
      if (part_of_row[row_idx] == part_idx) expected.push_back(sorted[row_idx]);
    }
    ASSERT_EQ(expected.size(), part.rows);
    for (const auto& event : expected) {
      EXPECT_TRUE(std::find(part.types.begin(), part.types.end(), event.type) != part.types.end()) << event.type;
      EXPECT_GE(event.time_ms, part.min_time_ms);
      EXPECT_LE(event.time_ms, part.max_time_ms);
    }
    for (const auto& type : part.types) {
      EXPECT_TRUE(seen_types.insert(type).second) << type << " in two parts";
      if (part_idx > 0) {
        EXPECT_LE(file->footer().type_counts.at(type) * 64, sorted.size()) << type;
      }
    }
    ASSERT_OK_AND_ASSIGN(SegmentColumns columns, v3::ReadPartColumns(*file, part_idx, FullRequest(names)));
    ExpectColumnsEqualEvents(columns, names, expected);
    if (part_idx > 0) {
      ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> positions, v3::ReadPositions(*file, part_idx));
      EXPECT_EQ(positions.size(), part.rows);
      EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
    }
  }
  EXPECT_EQ(seen_types.size(), file->footer().type_counts.size());
  // Later parts refer to the first part's users instead of storing them again.
  ASSERT_OK_AND_ASSIGN(auto stats, ReadSegmentColumnStats(path));
  uint64_t later_user_bytes = 0, later_rows = 0;
  for (const auto& column : stats) {
    if (column.part > 0 && column.name == "user") later_user_bytes += column.compressed_bytes;
  }
  for (size_t part_idx = 1; part_idx < file->part_count(); ++part_idx) later_rows += file->part(part_idx).rows;
  EXPECT_LT(later_user_bytes, later_rows * 4 + 64 * file->part_count());
  // Leaving users out of a parted read keeps exactly the other users' rows.
  std::set<std::string, std::less<>> excluded;
  for (size_t row_idx = 0; row_idx < sorted.size(); row_idx += sorted.size() / 7) excluded.insert(sorted[row_idx].user);
  for (size_t row_idx = 0; row_idx < sorted.size(); ++row_idx) {
    if (part_of_row[row_idx] > 0) {
      excluded.insert(sorted[row_idx].user);  // one with rare events too
      break;
    }
  }
  std::vector<StoredEvent> kept;
  for (const auto& event : sorted) {
    if (!excluded.count(event.user)) kept.push_back(event);
  }
  ASSERT_OK_AND_ASSIGN(SegmentColumns columns, ReadSegmentColumns(path, FullRequest(names)));
  ExcludeUsers(columns, excluded);
  ExpectColumnsEqualEvents(columns, names, kept);
}

TEST_F(SegmentTest, SmallSegmentsAreOnePart) {
  const std::vector<StoredEvent> events = NormalizedGeneratedEvents(60, 1);
  ASSERT_LT(events.size(), 4096u);
  ASSERT_OK(WriteSegment(Path("small.col"), events));
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(Path("small.col")));
  EXPECT_EQ(file->part_count(), 1u);
}

TEST_F(SegmentTest, FormatThreeFilesAreStillRead) {
  // A format 3 file is a format 4 file of one part with the format 3 footer and magic numbers.
  const std::vector<StoredEvent> events = SmallVariedEvents();
  ASSERT_OK(WriteSegment(Path("v4.col"), events));
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(Path("v4.col")));
  ASSERT_EQ(file->part_count(), 1u);
  RawParts raw = ReadRawParts(*file);
  raw.footer.format = 3;
  const std::string path = Path("v3.col");
  WriteFileBytes(path, BuildParts(raw));
  EXPECT_EQ(ReadFileBytes(path).substr(0, 8), "ASEGv003");
  const std::vector<StoredEvent> expected = SortedLikeSegment(events);
  std::vector<StoredEvent> back;
  ASSERT_OK(ReadSegmentEvents(path, back));
  ExpectSameEvents(expected, back);
  ExpectColumnsMatchEvents(path, expected);
  ASSERT_OK_AND_ASSIGN(SegmentInfo info, ReadSegmentInfo(path));
  EXPECT_EQ(info.rows, events.size());
  EXPECT_EQ(info.type_counts, file->footer().type_counts);
  // A format 3 footer behind format 4 magic numbers (or the reverse) is not a segment.
  std::string mixed = ReadFileBytes(path);
  std::memcpy(mixed.data(), v3::kMagic, sizeof(v3::kMagic));
  WriteFileBytes(Path("mixed.col"), mixed);
  std::vector<StoredEvent> none;
  EXPECT_EQ(ReadSegmentEvents(Path("mixed.col"), none).code(), StatusCode::kCorruption);
}

// SmallVariedEvents plus enough common rows that two rare types (a purchase, a refund) go to a part of their
// own once parts start at 64 rows.
std::vector<StoredEvent> SmallPartedEvents() {
  std::vector<StoredEvent> events = SmallVariedEvents();
  for (int row_idx = 0; row_idx < 120; ++row_idx) {
    StoredEvent event = BaseEvent("p" + std::to_string(row_idx), "u_" + std::to_string(row_idx % 9),
                                  kJan1 + 5000 + 7 * row_idx);
    event.data = "{\"page\":" + std::to_string(row_idx % 4) + "}";
    events.push_back(std::move(event));
  }
  auto rare = [&](std::string user, std::string type, std::string data) {
    const auto row = static_cast<int64_t>(events.size());
    StoredEvent event = BaseEvent("r" + std::to_string(row), std::move(user), kJan1 + 900 + 3 * row);
    event.type = std::move(type);
    event.data = std::move(data);
    event.game_id = "g1";
    event.amount = 4.5;
    events.push_back(std::move(event));
  };
  rare("u_3", "com.platform.payments.purchase.completed.v1", R"({"game_id":"g1","amount":4.5,"friend":"u_5"})");
  rare("u_new", "com.platform.payments.refund.completed.v1", R"({"game_id":"g1","amount":4.5})");
  return events;
}

class PartsForTest {
 public:
  explicit PartsForTest(size_t rows) { SetMinRowsForPartsForTest(rows); }
  ~PartsForTest() { SetMinRowsForPartsForTest(0); }
};

TEST_F(SegmentTest, DamageInsidePartsIsCorruptionNeverACrash) {
  PartsForTest parts(64);
  const std::vector<StoredEvent> events = SmallPartedEvents();
  const std::string original_path = Path("original.col");
  ASSERT_OK(WriteSegment(original_path, events));
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(original_path));
  ASSERT_EQ(file->part_count(), 2u);
  const RawParts raw = ReadRawParts(*file);
  const std::vector<StoredEvent> expected = SortedLikeSegment(events);
  const std::string path = Path("damaged.col");
  WriteFileBytes(path, BuildParts(raw));
  ExpectIntactOrCorruption(path, expected, /*must_be_corrupt=*/false);
  std::vector<StoredEvent> intact;
  ASSERT_OK(ReadSegmentEvents(path, intact));

  query::AggregateQuery count_users;
  count_users.bounds = {kJan1, kJan1 + 86400000};
  count_users.collect_users = true;
  query::AggregateQuery rare_sums = count_users;
  rare_sums.event_types = {"com.platform.payments.purchase.completed.v1"};
  rare_sums.group_by = {"game_id"};
  rare_sums.value_property = "amount";
  auto expect_corruption_or_ok = [&](const common::Status& status) {
    if (!status.ok()) {
      EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
    }
  };
  auto try_file = [&](const RawParts& altered) {
    WriteFileBytes(path, BuildParts(altered));
    std::vector<StoredEvent> out;
    expect_corruption_or_ok(ReadSegmentEvents(path, out));
    auto read = ReadSegmentColumns(path, FullRequest({"user_id", "friend", "s", "n", "list", "absent"}));
    expect_corruption_or_ok(read.status());
    // The query path, with nothing cached.
    UserDirectory users;
    SegmentCache segments(1 << 20);
    SegmentReadContext context{users, segments};
    for (const auto* query : {&count_users, &rare_sums}) {
      query::AggregateResult result;
      expect_corruption_or_ok(AggregateSegment(path, *query, {"amount", "game_id"}, {"u_3"}, context, result));
    }
    query::SessionQuery sessions;  // the rare part's type starts sessions, the common part's ends them
    sessions.start_type = "com.platform.payments.purchase.completed.v1";
    sessions.end_type = "com.platform.store.page.viewed.v1";
    sessions.key_property = "game_id";
    sessions.group_by = {"game_id"};
    query::SessionMarks marks;
    expect_corruption_or_ok(ReadSegmentSessionMarks(path, sessions, {"game_id"}, {}, context, marks));
  };
  const std::string absurd_varint = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
  // Every block of the second part, and the first part's users, which the second part refers to.
  std::vector<std::pair<size_t, size_t>> blocks = {{1, SIZE_MAX}, {0, v3::kUser}, {0, v3::kUserRuns}};
  for (size_t column_idx = 0; column_idx < raw.columns[1].size(); ++column_idx) blocks.emplace_back(1, column_idx);
  for (const auto& [part_idx, column_idx] : blocks) {
    SCOPED_TRACE("part " + std::to_string(part_idx) + " column " +
                 (column_idx == SIZE_MAX ? "position" : raw.footer.parts[part_idx].columns[column_idx].name));
    auto block_of = [&, part = part_idx, column = column_idx](RawParts& altered) -> std::string& {
      return column == SIZE_MAX ? altered.positions[part] : altered.columns[part][column];
    };
    RawParts altered = raw;
    const std::string original = block_of(altered);
    for (size_t pos = 0; pos < original.size(); ++pos) {
      for (uint8_t flip : {0x01, 0x80, 0xFF}) {
        block_of(altered) = original;
        block_of(altered)[pos] = static_cast<char>(original[pos] ^ flip);
        try_file(altered);
      }
      block_of(altered) = original;
      block_of(altered).insert(pos, absurd_varint);
      try_file(altered);
      block_of(altered) = original.substr(0, pos);
      try_file(altered);
    }
    block_of(altered) = original + '\0';
    try_file(altered);
    if (HasFailure()) return;
  }
  // The footer's parts: every byte of the encoded footer flipped, the checksum recomputed.
  const std::string good = BuildParts(raw);
  ASSERT_OK_AND_ASSIGN(auto rebuilt, v3::SegmentFile::Open((WriteFileBytes(path, good), path)));
  const std::string footer_bytes = v3::EncodeFooter(rebuilt->footer());
  for (size_t pos = 0; pos < footer_bytes.size(); ++pos) {
    for (uint8_t flip : {0x01, 0x40, 0x80, 0xFF}) {
      WriteFileBytes(path, WithFooterByteFlipped(good, footer_bytes, pos, flip));
      SCOPED_TRACE("footer byte " + std::to_string(pos));
      std::vector<StoredEvent> out;
      expect_corruption_or_ok(ReadSegmentEvents(path, out));
      expect_corruption_or_ok(ReadSegmentColumns(path, FullRequest({"page"})).status());
      UserDirectory users;
      SegmentCache segments(1 << 20);
      SegmentReadContext context{users, segments};
      query::AggregateResult result;
      expect_corruption_or_ok(AggregateSegment(path, count_users, {}, {}, context, result));
    }
    if (HasFailure()) return;
  }
}

// --- Query execution over segments (query_exec.h) ---------------------------------------------------------

// The aggregate of every row of the segment at `path` (one batch of the whole segment, as before parts).
query::AggregateResult AggregateOfAllRows(const std::string& path, const query::AggregateQuery& query,
                                          const std::vector<std::string>& paths,
                                          const std::set<std::string, std::less<>>& excluded, UserDirectory& users) {
  query::AggregateResult result;
  auto columns = ReadSegmentColumns(path, ColumnsFor(paths));
  EXPECT_TRUE(columns.ok()) << columns.status().ToString();
  if (!columns.ok()) return result;
  ExcludeUsers(*columns, excluded);
  query::Aggregate(query, BatchFromColumns(*columns, paths, users), result);
  return result;
}

bool Near(double a, double b) { return a == b || std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

// `users_by_count`: results of two user directories (ids differ): distinct users compared by number.
void ExpectSameResult(const query::AggregateResult& expected, const query::AggregateResult& actual,
                      bool users_by_count = false) {
  EXPECT_EQ(actual.rows_read, expected.rows_read);
  EXPECT_EQ(actual.newest_event_ms, expected.newest_event_ms);
  ASSERT_EQ(actual.groups.size(), expected.groups.size());
  for (const auto& [key, cells] : expected.groups) {
    auto it = actual.groups.find(key);
    ASSERT_NE(it, actual.groups.end());
    ASSERT_EQ(it->second.size(), cells.size());
    for (size_t bucket = 0; bucket < cells.size(); ++bucket) {
      SCOPED_TRACE("bucket " + std::to_string(bucket));
      const query::AggregateCell& want = cells[bucket];
      const query::AggregateCell& got = it->second[bucket];
      EXPECT_TRUE(Near(got.weighted_count, want.weighted_count)) << got.weighted_count << " vs " << want.weighted_count;
      EXPECT_TRUE(Near(got.weighted_sum, want.weighted_sum)) << got.weighted_sum << " vs " << want.weighted_sum;
      EXPECT_EQ(got.value_count, want.value_count);
      EXPECT_TRUE(Near(got.value_sum, want.value_sum));
      EXPECT_EQ(got.min, want.min);
      EXPECT_EQ(got.max, want.max);
      if (users_by_count) {
        EXPECT_EQ(got.users.cardinality(), want.users.cardinality());
      } else {
        EXPECT_TRUE(got.users == want.users) << got.users.cardinality() << " vs " << want.users.cardinality();
      }
      std::vector<double> got_values = got.values, want_values = want.values;
      std::sort(got_values.begin(), got_values.end());
      std::sort(want_values.begin(), want_values.end());
      EXPECT_EQ(got_values, want_values);
    }
  }
}

TEST_F(SegmentTest, QueriesOverPartsGiveTheAggregatesOfAllRows) {
  const std::vector<StoredEvent> events = OneGeneratedDay(2500);
  const std::string path = Path("query.col");
  ASSERT_OK(WriteSegment(path, events));
  ASSERT_OK_AND_ASSIGN(auto file, v3::SegmentFile::Open(path));
  ASSERT_GT(file->part_count(), 2u);
  const int64_t day = events.front().time_ms / 86400000 * 86400000;
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  std::vector<query::AggregateQuery> queries;
  query::AggregateQuery users_per_day;  // every part inside one bucket: footer counts and cached users
  users_per_day.bounds = {day - 86400000, day, day + 86400000, day + 2 * 86400000};
  users_per_day.collect_users = true;
  queries.push_back(users_per_day);
  query::AggregateQuery users_per_hour = users_per_day;  // parts across buckets: rows read
  users_per_hour.bounds.clear();
  for (int hour = 0; hour <= 24; ++hour) users_per_hour.bounds.push_back(day + hour * 3600000LL);
  queries.push_back(users_per_hour);
  query::AggregateQuery revenue = users_per_day;  // one rare part
  revenue.event_types = {purchase};
  revenue.group_by = {"game_id"};
  revenue.value_property = "amount";
  revenue.collect_users = false;
  queries.push_back(revenue);
  query::AggregateQuery mixed = users_per_hour;  // common and rare types, weights, a filter, nested values
  mixed.event_types = {purchase, "com.platform.store.page.viewed.v1", "com.platform.cart.item.added.v1"};
  mixed.weights = {{purchase, 2.5}, {"com.platform.cart.item.added.v1", 3}};
  mixed.filter = query::FilterExpr::Condition({"platform", query::FilterOp::kNe, "ios"});
  mixed.group_by = {"country"};
  mixed.value_property = "amount";
  mixed.collect_values = true;
  queries.push_back(mixed);
  query::AggregateQuery weighted = users_per_day;  // fractional weights: no footer shortcut
  weighted.weights = {{"com.platform.store.page.viewed.v1", 0.1}};
  queries.push_back(weighted);
  query::AggregateQuery clipped = users_per_day;  // the period ends inside the day
  clipped.bounds = {day, day + 3600000, day + 7200001};
  queries.push_back(clipped);
  query::AggregateQuery none = users_per_day;  // a type the segment does not have
  none.event_types = {"no.such.type"};
  queries.push_back(none);

  // Users to leave out (erased, not yet purged): one with rare events, and a few others.
  const std::vector<StoredEvent> sorted = SortedLikeSegment(events);
  std::set<std::string, std::less<>> excluded;
  for (const auto& event : sorted) {
    if (event.type == purchase) {
      excluded.insert(event.user);
      break;
    }
  }
  for (size_t row_idx = 0; row_idx < sorted.size(); row_idx += sorted.size() / 5) excluded.insert(sorted[row_idx].user);

  UserDirectory users;
  SegmentCache segments(64 << 20);
  SegmentReadContext context{users, segments};
  for (size_t query_idx = 0; query_idx < queries.size(); ++query_idx) {
    const query::AggregateQuery& query = queries[query_idx];
    std::vector<std::string> paths = query.group_by;
    query.filter.CollectProperties(paths);
    if (!query.value_property.empty()) paths.push_back(query.value_property);
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    const std::set<std::string, std::less<>> none_excluded;
    for (const bool leave_out : {true, false}) {
      const auto& exclude = leave_out ? excluded : none_excluded;
      SCOPED_TRACE("query " + std::to_string(query_idx) + (leave_out ? " leaving users out" : ""));
      const query::AggregateResult expected = AggregateOfAllRows(path, query, paths, exclude, users);
      for (int round = 0; round < 2; ++round) {  // cold, then with the segment's state cached
        query::AggregateResult actual;
        ASSERT_OK(AggregateSegment(path, query, paths, exclude, context, actual));
        ExpectSameResult(expected, actual);
      }
      if (HasFailure()) return;
    }
  }
}

TEST_F(SegmentTest, StoreAggregatesEqualOneBatchOfAllEventsWithOrWithoutTheCache) {
  // Two busy days (parts), flushed to several segments per day read by two threads (days merged, and cached,
  // on their own), plus rows still in the memtable. And purchases of one game on both days whose amounts round
  // when added (0.1, 0.2, ...): their sum depends on the order of the additions.
  std::vector<StoredEvent> events = NormalizedGeneratedEvents(2500, 2);
  const int64_t day = events.front().time_ms / 86400000 * 86400000;
  std::vector<StoredEvent> sums;
  for (int row_idx = 0; row_idx < 600; ++row_idx) {
    StoredEvent event = BaseEvent("sum-" + std::to_string(row_idx), "u_sum_" + std::to_string(row_idx % 37),
                                  day + (row_idx % 2) * 86400000 + row_idx);
    event.type = "com.platform.payments.purchase.completed.v1";
    event.game_id = "game_sums";
    event.amount = 0.1 * (row_idx % 9 + 1);
    event.data = R"({"game_id":"game_sums"})";
    sums.push_back(std::move(event));
  }
  events.insert(events.begin(), sums.begin(), sums.end());  // flushed (the last events stay in the memtable)
  const size_t in_memory = events.size() / 20, late = events.size() / 20;
  // The last `late` events are flushed after the first queries: they go to days whose merged partials are cached.
  std::vector<StoredEvent> late_events(events.end() - static_cast<std::ptrdiff_t>(late), events.end());
  events.resize(events.size() - late);
  std::vector<StoredEvent> flushed(events.begin(), events.end() - static_cast<std::ptrdiff_t>(in_memory));
  std::vector<StoredEvent> unflushed(events.end() - static_cast<std::ptrdiff_t>(in_memory), events.end());
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  std::vector<query::AggregateQuery> queries;
  query::AggregateQuery users_per_day;
  for (int day_idx = -1; day_idx <= 3; ++day_idx) users_per_day.bounds.push_back(day + day_idx * 86400000LL);
  users_per_day.collect_users = true;
  queries.push_back(users_per_day);
  query::AggregateQuery revenue = users_per_day;
  revenue.event_types = {purchase};
  revenue.group_by = {"game_id"};
  revenue.value_property = "amount";
  revenue.collect_users = false;
  queries.push_back(revenue);
  query::AggregateQuery revenue_overall = revenue;  // one bucket: every cell sums rows of several segments
  revenue_overall.bounds = {day - 86400000, day + 3 * 86400000LL};
  revenue_overall.event_types.push_back("com.platform.payments.refund.completed.v1");
  queries.push_back(revenue_overall);
  query::AggregateQuery filtered = users_per_day;
  filtered.bounds.clear();
  for (int hour = 0; hour <= 48; hour += 5) filtered.bounds.push_back(day + hour * 3600000LL);
  filtered.filter = query::FilterExpr::Condition({"platform", query::FilterOp::kEq, "windows"});
  filtered.group_by = {"country"};
  filtered.weights = {{purchase, 0.5}};
  queries.push_back(filtered);

  std::vector<query::AggregateResult> uncached[2];  // per phase (before, after the late flush) and query: no cache
  for (const uint64_t cache_bytes : {uint64_t{0}, uint64_t{64} << 20}) {
    SCOPED_TRACE(cache_bytes == 0 ? "no partial cache" : "partial cache");
    TempDir dir;
    EmbeddedEventStoreOptions options;
    options.dir = dir.path().string();
    options.sync = false;
    options.flush_interval_ms = 3600000;
    options.maintenance_interval_ms = 3600000;
    options.dedup_window_ms = 3650LL * 86400000;
    options.query_cache_bytes = cache_bytes;
    options.query_threads = 2;
    ASSERT_OK_AND_ASSIGN(auto store, EmbeddedEventStore::Open(options));
    for (size_t start = 0; start < flushed.size(); start += 5000) {
      const size_t end = std::min(flushed.size(), start + 5000);
      std::vector<StoredEvent> batch(flushed.begin() + static_cast<std::ptrdiff_t>(start),
                                     flushed.begin() + static_cast<std::ptrdiff_t>(end));
      ASSERT_OK(store->Append(std::move(batch)));
      if (start % 15000 == 10000) ASSERT_OK(store->Flush());  // several segments per day
    }
    ASSERT_OK(store->Flush());
    ASSERT_OK(store->Append(unflushed));
    int phase = 0;
    auto check = [&](size_t query_idx) {
      SCOPED_TRACE("query " + std::to_string(query_idx));
      const query::AggregateQuery& query = queries[query_idx];
      std::vector<std::string> paths = query.group_by;
      query.filter.CollectProperties(paths);
      if (!query.value_property.empty()) paths.push_back(query.value_property);
      UserDirectory users;
      SegmentColumns columns = ColumnsFromEvents(events, ColumnsFor(paths));
      query::AggregateResult expected;
      query::Aggregate(query, BatchFromColumns(columns, paths, users), expected);
      for (int round = 0; round < 2; ++round) {  // with the cache: filled, then read
        ASSERT_OK_AND_ASSIGN(auto shared, store->Aggregate(query));
        const query::AggregateResult& actual = *shared;
        ExpectSameResult(expected, actual, /*users_by_count=*/true);
        if (cache_bytes == 0 && round == 0) {
          uncached[phase].push_back(actual);
          continue;
        }
        // The cache changes no answer, not even a sum's last bit: segments and days are summed in the same order.
        const query::AggregateResult& without = uncached[phase].at(query_idx);
        ASSERT_EQ(actual.groups.size(), without.groups.size());
        for (const auto& [key, cells] : without.groups) {
          ASSERT_TRUE(actual.groups.count(key));
          for (size_t bucket = 0; bucket < cells.size(); ++bucket) {
            const query::AggregateCell& got = actual.groups.at(key)[bucket];
            EXPECT_EQ(std::memcmp(&got.weighted_sum, &cells[bucket].weighted_sum, sizeof(double)), 0);
            EXPECT_EQ(std::memcmp(&got.value_sum, &cells[bucket].value_sum, sizeof(double)), 0);
            EXPECT_EQ(got.weighted_count, cells[bucket].weighted_count);
          }
        }
      }
    };
    for (size_t query_idx = 0; query_idx < queries.size() && !HasFailure(); ++query_idx) check(query_idx);
    if (HasFailure()) return;
    // A flush adds a segment to days already merged and cached: the answers include it at once.
    phase = 1;
    ASSERT_OK(store->Append(late_events));
    ASSERT_OK(store->Flush());
    events.insert(events.end(), late_events.begin(), late_events.end());
    for (size_t query_idx = 0; query_idx < queries.size() && !HasFailure(); ++query_idx) check(query_idx);
    if (HasFailure()) return;
    events.resize(events.size() - late_events.size());
  }
}

// --- The writer's building blocks ----------------------------------------------------------------------------

// StringIndex (column_codec.h) numbers strings in first-seen order, through many growths of its table, and
// keeps its own copies (the caller's buffer is reused here).
TEST(StringIndexTest, NumbersDistinctStringsInFirstSeenOrder) {
  StringIndex index;
  std::string buffer;
  for (int round = 0; round < 2; ++round) {
    for (uint32_t value_idx = 0; value_idx < 5000; ++value_idx) {
      buffer = "value-" + std::to_string(value_idx * 7919 % 5000);
      const auto [id, inserted] = index.Insert(buffer);
      EXPECT_EQ(inserted, round == 0);
      EXPECT_EQ(id, value_idx);
    }
  }
  EXPECT_EQ(index.Insert("").first, 5000u);  // the empty string is a value like any other
  ASSERT_EQ(index.size(), 5001u);
  EXPECT_EQ(index.value(3), "value-" + std::to_string(3 * 7919 % 5000));
  EXPECT_EQ(index.Find("value-" + std::to_string(42 * 7919 % 5000)), 42u);
  EXPECT_EQ(index.Find("value-5000"), StringIndex::kNotFound);
  EXPECT_EQ(StringIndex().Find("anything"), StringIndex::kNotFound);
  const std::vector<std::string_view> values = index.Values();
  ASSERT_EQ(values.size(), 5001u);
  EXPECT_EQ(values[4999], "value-" + std::to_string(4999 * 7919 % 5000));
}

// SplitJsonObject finds the end of a string eight bytes at a time: a quote or an escape at any offset from the
// string's start, across word boundaries, splits the object exactly as written.
TEST(SplitJsonObjectTest, QuotesAndEscapesAtEveryOffsetSplitExactly) {
  for (size_t offset = 0; offset < 24; ++offset) {
    for (const std::string escape : {"\\\"", "\\\\", "\\u00e9"}) {
      const std::string key = std::string(offset, 'k') + escape + "z";
      const std::string value = "\"" + std::string(offset, 'v') + escape + std::string(offset % 9, 'w') + "\"";
      const std::string text = "{\"" + key + "\":" + value + ",\"" + std::string(offset, 'n') + "\":[\"]\"]}";
      std::vector<JsonMember> members;
      ASSERT_TRUE(SplitJsonObject(text, /*allow_whitespace=*/false, members)) << text;
      ASSERT_EQ(members.size(), 2u) << text;
      EXPECT_EQ(members[0].key, key);
      EXPECT_EQ(members[0].value, value);
      EXPECT_EQ(members[1].key, std::string(offset, 'n'));
      EXPECT_EQ(members[1].value, "[\"]\"]");
      // Cut just before the key's closing quote, the key has no end.
      EXPECT_FALSE(SplitJsonObject(text.substr(0, 2 + key.size()), /*allow_whitespace=*/false, members));
    }
  }
}

}  // namespace
}  // namespace analytics::store::embedded
