// The embedded event store: durability, dedup, erasure, recovery, read-back. Real files in a temp dir.
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "store/embedded/embedded_event_store.h"
#include "store/embedded/segment.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

namespace fs = std::filesystem;
using events::StoredEvent;
using store::AppendOutcome;
using store::EmbeddedEventStore;
using store::EmbeddedEventStoreOptions;

constexpr int64_t kDay = 86400000;
constexpr int64_t kJan1 = 1704067200000;  // 2024-01-01T00:00:00Z

StoredEvent MakeEvent(const std::string& id, const std::string& user, int64_t time_ms,
                      const std::string& type = "com.platform.store.page.viewed.v1") {
  StoredEvent event;
  event.id = id;
  event.source = "/services/store";
  event.type = type;
  event.time_ms = time_ms;
  event.received_ms = time_ms + 1000;
  event.user = user;
  event.game_id = "g" + std::to_string(time_ms % 7);
  event.country = "RU";
  event.platform = "windows";
  if (time_ms % 3 == 0) {
    event.amount = 499.5;
    event.currency = "RUB";
  }
  event.data = R"({"page_type":"game","game_id":")" + event.game_id + R"("})";
  event.user_in_subject = true;
  return event;
}

class EmbeddedEventStoreTest : public ::testing::Test {
 protected:
  EmbeddedEventStoreOptions Options() {
    EmbeddedEventStoreOptions options;
    options.dir = dir_.path().string();
    options.flush_interval_ms = 3600000;  // flushes only when a test asks
    options.dedup_window_ms = 3650LL * kDay;
    return options;
  }
  std::unique_ptr<EmbeddedEventStore> Open() {
    auto store = EmbeddedEventStore::Open(Options());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::vector<StoredEvent> ScanAll(EmbeddedEventStore& store, store::ScanQuery query = {}, size_t page = 500) {
    std::vector<StoredEvent> all;
    query.limit = page;
    while (true) {
      auto page = store.Scan(query);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) break;
      all.insert(all.end(), page->events.begin(), page->events.end());
      if (page->next_cursor.empty()) break;
      query.cursor = page->next_cursor;
    }
    return all;
  }

  TempDir dir_;
};

bool SameEvent(const StoredEvent& a, const StoredEvent& b) {
  return a.id == b.id && a.source == b.source && a.type == b.type && a.time_ms == b.time_ms &&
         a.received_ms == b.received_ms && a.user == b.user && a.game_id == b.game_id && a.amount == b.amount &&
         a.currency == b.currency && a.country == b.country && a.platform == b.platform && a.data == b.data &&
         a.user_in_subject == b.user_in_subject && a.time_defaulted == b.time_defaulted;
}

TEST_F(EmbeddedEventStoreTest, AppendedEventsAreReadableAtOnceInTimeOrder) {
  auto store = Open();
  std::vector<StoredEvent> batch;
  for (int event_idx = 0; event_idx < 50; ++event_idx) {
    batch.push_back(MakeEvent("e" + std::to_string(event_idx), "u_" + std::to_string(event_idx % 5),
                              kJan1 + (49 - event_idx) * 60000));
  }
  auto expected = batch;
  auto result = store->Append(batch);
  ASSERT_OK(result);
  EXPECT_EQ(result->stored, 50u);
  auto all = ScanAll(*store, {}, 7);  // small pages exercise the cursor
  ASSERT_EQ(all.size(), 50u);
  for (size_t event_idx = 1; event_idx < all.size(); ++event_idx) {
    EXPECT_LE(all[event_idx - 1].time_ms, all[event_idx].time_ms);
  }
  std::sort(expected.begin(), expected.end(), [](auto& a, auto& b) { return a.time_ms < b.time_ms; });
  for (size_t event_idx = 0; event_idx < all.size(); ++event_idx) {
    EXPECT_TRUE(SameEvent(all[event_idx], expected[event_idx])) << event_idx;
  }
}

TEST_F(EmbeddedEventStoreTest, DuplicatesWithinAndAcrossBatchesAreNotStoredTwice) {
  auto store = Open();
  auto first = store->Append({MakeEvent("a", "u_1", kJan1), MakeEvent("a", "u_1", kJan1), MakeEvent("b", "u_1", kJan1)});
  ASSERT_OK(first);
  EXPECT_EQ(first->stored, 2u);
  EXPECT_EQ(first->duplicates, 1u);
  EXPECT_EQ(first->outcomes[1], AppendOutcome::kDuplicate);
  // Same id from another source is a different event.
  StoredEvent other = MakeEvent("a", "u_1", kJan1);
  other.source = "/services/payments";
  auto second = store->Append({MakeEvent("b", "u_2", kJan1 + 5), other});
  ASSERT_OK(second);
  EXPECT_EQ(second->outcomes[0], AppendOutcome::kDuplicate);
  EXPECT_EQ(second->outcomes[1], AppendOutcome::kStored);
  EXPECT_EQ(ScanAll(*store).size(), 3u);
}

TEST_F(EmbeddedEventStoreTest, EventsAndDedupSurviveRestartFromWalAndFromSegments) {
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("w1", "u_1", kJan1), MakeEvent("w2", "u_2", kJan1 + kDay)}));
    ASSERT_OK(store->Flush());
    ASSERT_OK(store->Append({MakeEvent("w3", "u_3", kJan1 + 2 * kDay)}));
    // Destroyed without a flush of w3 only if the process dies; simulate by copying the files before close.
  }
  auto store = Open();
  auto all = ScanAll(*store);
  ASSERT_EQ(all.size(), 3u);
  auto again = store->Append({MakeEvent("w1", "u_1", kJan1), MakeEvent("w3", "u_3", kJan1), MakeEvent("w4", "u_4", kJan1)});
  ASSERT_OK(again);
  EXPECT_EQ(again->duplicates, 2u);
  EXPECT_EQ(again->stored, 1u);
}

TEST_F(EmbeddedEventStoreTest, UnflushedEventsReplayFromTheWalAfterACrash) {
  // Copy the data dir while the store is open (as a crash would leave it): the copy must recover everything.
  TempDir crashed;
  {
    auto store = Open();
    std::vector<StoredEvent> batch;
    for (int event_idx = 0; event_idx < 100; ++event_idx) {
      batch.push_back(MakeEvent("c" + std::to_string(event_idx), "u_" + std::to_string(event_idx % 9), kJan1 + event_idx));
    }
    ASSERT_OK(store->Append(batch));
    fs::copy(dir_.path(), crashed.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
  EmbeddedEventStoreOptions options = Options();
  options.dir = crashed.path().string();
  auto recovered = EmbeddedEventStore::Open(options);
  ASSERT_OK(recovered);
  EXPECT_EQ((*recovered)->recovery_report()["events_replayed"], 100);
  EXPECT_EQ(ScanAll(**recovered).size(), 100u);
}

TEST_F(EmbeddedEventStoreTest, SegmentsArePartitionedByDayAndCompact) {
  auto store = Open();
  std::vector<StoredEvent> batch;
  for (int event_idx = 0; event_idx < 3000; ++event_idx) {
    batch.push_back(MakeEvent("s" + std::to_string(event_idx), "u_" + std::to_string(event_idx % 100),
                              kJan1 + (event_idx % 3) * kDay + event_idx * 1000));
  }
  ASSERT_OK(store->Append(batch));
  ASSERT_OK(store->Flush());
  std::set<std::string> days;
  for (const auto& entry : fs::directory_iterator(dir_.path() / "segments")) days.insert(entry.path().filename());
  EXPECT_EQ(days, (std::set<std::string>{"2024-01-01", "2024-01-02", "2024-01-03"}));
  auto stats = store->Stats();
  EXPECT_EQ(stats["segment_events"], 3000);
  EXPECT_EQ(stats["memtable_events"], 0);
  EXPECT_EQ(ScanAll(*store).size(), 3000u);
  store::ScanQuery by_type;
  by_type.type = "com.platform.store.page.viewed.v1";
  by_type.from_ms = kJan1 + kDay;
  by_type.to_ms = kJan1 + 2 * kDay;
  auto day_two = ScanAll(*store, by_type);
  EXPECT_FALSE(day_two.empty());
  for (const auto& event : day_two) {
    EXPECT_GE(event.time_ms, kJan1 + kDay);
    EXPECT_LT(event.time_ms, kJan1 + 2 * kDay);
  }
}

TEST_F(EmbeddedEventStoreTest, ErasedUserDisappearsEverywhereAndIsRefusedUntilRegisteredAgain) {
  auto store = Open();
  ASSERT_OK(store->Append({MakeEvent("x1", "u_gone", kJan1), MakeEvent("x2", "u_stay", kJan1)}));
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->Append({MakeEvent("x3", "u_gone", kJan1 + 1)}));
  auto erased = store->EraseUser("u_gone");
  ASSERT_OK(erased);
  EXPECT_EQ(*erased, 2u);
  for (const auto& event : ScanAll(*store)) EXPECT_NE(event.user, "u_gone");
  auto refused = store->Append({MakeEvent("x4", "u_gone", kJan1 + 2)});
  ASSERT_OK(refused);
  EXPECT_EQ(refused->outcomes[0], AppendOutcome::kUserErased);
  // The erasure survives a restart, and nothing of the user is left in any segment file.
  store.reset();
  store = Open();
  for (const auto& event : ScanAll(*store)) EXPECT_NE(event.user, "u_gone");
  for (const auto& entry : fs::recursive_directory_iterator(dir_.path() / "segments")) {
    if (entry.path().extension() != ".col") continue;
    std::vector<StoredEvent> events;
    ASSERT_OK(store::embedded::ReadSegmentEvents(entry.path().string(), events));
    for (const auto& event : events) EXPECT_NE(event.user, "u_gone") << entry.path();
  }
  EXPECT_EQ(store->Append({MakeEvent("x5", "u_gone", kJan1 + 3)})->outcomes[0], AppendOutcome::kUserErased);
  // Registering again lifts the refusal.
  auto registered = store->Append({MakeEvent("x6", "u_gone", kJan1 + 4, "com.platform.account.user.registered.v1")});
  ASSERT_OK(registered);
  EXPECT_EQ(registered->outcomes[0], AppendOutcome::kStored);
  EXPECT_EQ(store->Append({MakeEvent("x7", "u_gone", kJan1 + 5)})->outcomes[0], AppendOutcome::kStored);
}

TEST_F(EmbeddedEventStoreTest, CorruptSegmentIsReportedWithItsPathNotACrash) {
  std::string segment_path;
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("k1", "u_1", kJan1), MakeEvent("k2", "u_2", kJan1 + 10)}));
    ASSERT_OK(store->Flush());
  }
  for (const auto& entry : fs::recursive_directory_iterator(dir_.path() / "segments")) {
    if (entry.path().extension() == ".col") segment_path = entry.path().string();
  }
  ASSERT_FALSE(segment_path.empty());
  {
    std::fstream file(segment_path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(12);
    file.put('\x7f');
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto ping = store->Ping();
  EXPECT_FALSE(ping.ok());
  EXPECT_NE(ping.message().find(segment_path), std::string::npos) << ping.message();
  EXPECT_TRUE(fs::exists(segment_path + ".corrupt"));
}

TEST_F(EmbeddedEventStoreTest, CorruptSegmentReadIsCorruptionNamingTheFile) {
  auto path = (dir_.path() / "x.col").string();
  ASSERT_OK(store::embedded::WriteSegment(path, {MakeEvent("a", "u", kJan1)}));
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (size_t cut : {size_t{0}, size_t{5}, bytes.size() / 2, bytes.size() - 1}) {
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(cut));
    }
    std::vector<StoredEvent> events;
    auto status = store::embedded::ReadSegmentEvents(path, events);
    EXPECT_EQ(status.code(), common::StatusCode::kCorruption) << cut;
    EXPECT_NE(status.message().find(path), std::string::npos);
  }
}

TEST_F(EmbeddedEventStoreTest, LeftoverSegmentOfAnInterruptedFlushIsRemoved) {
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("l1", "u_1", kJan1)}));
  }
  // A segment written but never listed in the MANIFEST (crash between the two) must not double the events.
  fs::create_directories(dir_.path() / "segments" / "2024-01-01");
  const auto stray = (dir_.path() / "segments" / "2024-01-01" / "seg-99999999999999999999.col").string();
  ASSERT_OK(store::embedded::WriteSegment(stray, {MakeEvent("l1", "u_1", kJan1)}));
  auto store = Open();
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_EQ(ScanAll(*store).size(), 1u);
}

TEST_F(EmbeddedEventStoreTest, ConcurrentAppendsAndFlushesLoseNothing) {
  auto store = Open();
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < 4; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int batch_idx = 0; batch_idx < 25; ++batch_idx) {
        std::vector<StoredEvent> batch;
        for (int event_idx = 0; event_idx < 40; ++event_idx) {
          std::string id = std::to_string(thread_idx) + "-" + std::to_string(batch_idx) + "-" + std::to_string(event_idx);
          batch.push_back(MakeEvent(id, "u_" + std::to_string(event_idx), kJan1 + batch_idx * 1000 + event_idx));
        }
        auto result = store->Append(batch);
        EXPECT_TRUE(result.ok());
        if (batch_idx % 10 == 0) EXPECT_OK(store->Flush());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ScanAll(*store).size(), 4000u);
  store.reset();
  EXPECT_EQ(ScanAll(*Open()).size(), 4000u);
}

TEST_F(EmbeddedEventStoreTest, SegmentRoundTripKeepsEveryFieldForUuidAndOtherIds) {
  // Canonical UUIDs are packed to 16 bytes; anything else (upper case, braces, short) stays text.
  std::vector<StoredEvent> events = {
      MakeEvent("0f8e2f4e-6a6b-4c5e-9a57-3b1f1c2d7e01", "u_1", kJan1),
      MakeEvent("0F8E2F4E-6A6B-4C5E-9A57-3B1F1C2D7E01", "u_1", kJan1 + 1),
      MakeEvent("{0f8e2f4e-6a6b-4c5e-9a57-3b1f1c2d7e01}", "u_2", kJan1 + 2),
      MakeEvent("0f8e2f4e-6a6b-4c5e-9a57-3b1f1c2d7e0g", "u_2", kJan1 + 3),
      MakeEvent("", "", kJan1 + 4),
      MakeEvent("plain-id", "u_3", kJan1 + 5)};
  events[2].time_defaulted = true;
  events[3].received_ms = kJan1 + 40 * kDay;  // a late event: received long after its time
  events[4].user_in_subject = false;
  events[5].extensions = R"({"traceparent":"00-abc-def-01"})";
  const auto path = (dir_.path() / "round.col").string();
  ASSERT_OK(store::embedded::WriteSegment(path, events));
  std::vector<StoredEvent> read;
  ASSERT_OK(store::embedded::ReadSegmentEvents(path, read));
  ASSERT_EQ(read.size(), events.size());
  for (const auto& expected : events) {
    auto it = std::find_if(read.begin(), read.end(), [&](const StoredEvent& e) { return e.time_ms == expected.time_ms; });
    ASSERT_NE(it, read.end());
    EXPECT_TRUE(SameEvent(*it, expected)) << expected.id;
    EXPECT_EQ(it->extensions, expected.extensions);
  }
}

TEST_F(EmbeddedEventStoreTest, MalformedCursorIsInvalidArgument) {
  auto store = Open();
  store::ScanQuery query;
  query.cursor = "garbage";
  EXPECT_EQ(store->Scan(query).status().code(), common::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace analytics::testing
