// Unit tests of EventRows (events/event_rows.h): the row format a batch is built in by the normalizer, written
// to the WAL and kept by the memtable. Its bytes must be exactly docs/formats/events-row.md (WAL files written
// before it existed must replay), its views must survive the batch being moved and its buffer being held
// elsewhere, and damaged records must be refused, never half-read.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "events/event.h"
#include "events/event_rows.h"

namespace analytics::events {
namespace {

StoredEvent MakeEvent(int n) {
  StoredEvent event;
  event.id = "id-" + std::to_string(n) + std::string(40, 'x');  // past the short-string buffer
  event.source = "/services/store";
  event.type = "com.platform.store.page.viewed.v1";
  event.time_ms = 1704067200000 + n * 1000;
  event.received_ms = event.time_ms + (n % 2 == 0 ? 5 : -7);  // received before the event time is allowed
  event.time_defaulted = n % 3 == 0;
  event.user = n % 4 == 0 ? "" : "u_pseudonym-" + std::to_string(n);
  event.game_id = n % 5 == 0 ? "" : "game_" + std::to_string(1000 + n);
  event.session_id = "s-" + std::to_string(n / 2);
  if (n % 2 == 1) event.amount = 199.5 + n;
  event.currency = event.amount ? "RUB" : "";
  event.country = "RU";
  event.platform = "windows";
  event.data = n % 6 == 0 ? "" : R"({"page_type":"game","n":)" + std::to_string(n) + "}";
  event.extensions = n % 7 == 0 ? R"({"traceparent":"00-ab-cd-01"})" : "";
  event.user_in_subject = n % 2 == 0;
  return event;
}

// Field by field, as EXPECT_EQ reports them.
void ExpectSame(const EventView& view, const StoredEvent& event) {
  EXPECT_EQ(view.id, event.id);
  EXPECT_EQ(view.source, event.source);
  EXPECT_EQ(view.type, event.type);
  EXPECT_EQ(view.time_ms, event.time_ms);
  EXPECT_EQ(view.received_ms, event.received_ms);
  EXPECT_EQ(view.time_defaulted, event.time_defaulted);
  EXPECT_EQ(view.user, event.user);
  EXPECT_EQ(view.game_id, event.game_id);
  EXPECT_EQ(view.session_id, event.session_id);
  EXPECT_EQ(view.amount, event.amount);
  EXPECT_EQ(view.currency, event.currency);
  EXPECT_EQ(view.country, event.country);
  EXPECT_EQ(view.platform, event.platform);
  EXPECT_EQ(view.data, event.data);
  EXPECT_EQ(view.extensions, event.extensions);
  EXPECT_EQ(view.user_in_subject, event.user_in_subject);
}

std::vector<StoredEvent> MakeEvents(int count) {
  std::vector<StoredEvent> events;
  for (int n = 0; n < count; ++n) events.push_back(MakeEvent(n));
  return events;
}

TEST(EventRowsTest, AddedEventsReadBackFieldByFieldAndThroughTheRecord) {
  const std::vector<StoredEvent> events = MakeEvents(300);  // a count that takes a two-byte varint
  EventRows rows;
  for (const StoredEvent& event : events) rows.Add(event);  // no Reserve: the buffer moves as it grows
  rows.Seal();
  ASSERT_EQ(rows.size(), events.size());
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) ExpectSame(rows[event_idx], events[event_idx]);

  auto decoded = EventRows::Decode(rows.record());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_EQ(decoded->size(), events.size());
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) {
    ExpectSame((*decoded)[event_idx], events[event_idx]);
  }
  EXPECT_EQ(decoded->record(), rows.record());
}

// The layout of docs/formats/events-row.md, byte for byte, for one small event.
TEST(EventRowsTest, RecordBytesAreTheDocumentedRowFormat) {
  StoredEvent event;
  event.id = "e1";
  event.source = "s";
  event.type = "t";
  event.time_ms = 1000;
  event.received_ms = 999;
  event.user = "u";
  event.amount = 1.0;
  event.data = "{}";
  event.user_in_subject = true;
  const EventRows rows(std::vector<StoredEvent>{event});
  std::string expected;
  expected += '\x01';                       // version
  expected += '\x01';                       // count
  expected += '\x06';                       // flags: user_in_subject | has amount
  expected += std::string("\x02" "e1", 3);  // id
  expected += std::string("\x01" "s", 2);   // source
  expected += std::string("\x01" "t", 2);   // type
  expected += std::string("\xd0\x0f", 2);   // zigzag(1000) = 2000
  expected += '\x01';                       // zigzag(-1)
  expected += std::string("\x01" "u", 2);   // user
  expected += '\0';                         // game_id
  expected += '\0';                         // session_id
  expected += std::string("\0\0\0\0\0\0\xf0\x3f", 8);  // 1.0, little-endian IEEE-754
  expected += std::string(3, '\0');                    // currency, country, platform
  expected += std::string("\x02{}", 3);                // data
  expected += '\0';                                    // extensions
  EXPECT_EQ(rows.record(), expected);
}

TEST(EventRowsTest, ViewsStayValidWhenTheBatchMovesAndWhileItsBytesAreHeld) {
  const std::vector<StoredEvent> events = MakeEvents(20);
  std::shared_ptr<const std::string> bytes;
  std::vector<EventView> views;
  {
    EventRows rows(events);
    EventRows moved = std::move(rows);
    auto released = std::move(moved).Release();
    bytes = std::move(released.bytes);
    views = std::move(released.views);
    EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move): Release leaves the batch empty
  }  // the batch is gone; its buffer is not
  ASSERT_EQ(views.size(), events.size());
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) ExpectSame(views[event_idx], events[event_idx]);
}

TEST(EventRowsTest, ReplaceAndSubsetRebuildTheRecord) {
  const std::vector<StoredEvent> events = MakeEvents(10);
  EventRows rows(events);
  StoredEvent changed = events[4];
  changed.user.clear();
  changed.user_in_subject = false;
  changed.data = R"({"reason":"user_request"})";
  StoredEvent last = events[9];
  last.user = "u_other";
  rows.Replace({{4, EventView::Of(changed)}, {9, EventView::Of(last)}});
  ASSERT_EQ(rows.size(), events.size());
  for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) {
    ExpectSame(rows[event_idx], event_idx == 4 ? changed : event_idx == 9 ? last : events[event_idx]);
  }
  std::vector<bool> keep(events.size(), false);
  keep[1] = keep[4] = keep[9] = true;
  const EventRows subset = rows.Subset(keep);
  ASSERT_EQ(subset.size(), 3u);
  ExpectSame(subset[0], events[1]);
  ExpectSame(subset[1], changed);
  ExpectSame(subset[2], last);
  // Each is a record of its own events only.
  auto decoded = EventRows::Decode(subset.record());
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->size(), 3u);
  ExpectSame((*decoded)[2], last);
}

TEST(EventRowsTest, AnEmptyBatchIsARecordOfNoEvents) {
  EventRows rows;
  rows.Seal();
  EXPECT_TRUE(rows.empty());
  EXPECT_EQ(rows.record(), std::string("\x01\x00", 2));
  auto decoded = EventRows::Decode(rows.record());
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(EventRowsTest, DamagedRecordsAreCorruptionAndLeaveNoViews) {
  const EventRows rows(MakeEvents(3));
  const std::string record(rows.record());
  std::vector<std::string> damaged = {
      "",                                        // nothing
      std::string("\x02") + record.substr(1),    // unknown version
      record.substr(0, record.size() - 1),       // truncated last field
      record + "x",                              // trailing bytes
      std::string("\x01\x7f", 2),                // more events announced than bytes
  };
  for (size_t cut = 3; cut < record.size(); cut += 17) damaged.push_back(record.substr(0, cut));
  for (const std::string& bytes : damaged) {
    auto decoded = EventRows::Decode(bytes);
    ASSERT_FALSE(decoded.ok()) << bytes.size();
    EXPECT_EQ(decoded.status().code(), common::StatusCode::kCorruption);
    std::vector<EventView> views(2);  // what was there stays
    EXPECT_FALSE(EventRows::DecodeViews(bytes, views).ok());
    EXPECT_EQ(views.size(), 2u);
  }
}

}  // namespace
}  // namespace analytics::events
