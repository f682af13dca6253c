// The embedded event store: durability, dedup, erasure, recovery, read-back. Real files in a temp dir.
#include <atomic>
#include <cmath>
#include <map>
#include <tuple>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "store/embedded/embedded_event_store.h"
#include "store/embedded/segment.h"
#include "query/aggregate.h"
#include "query/timeline.h"
#include "common/time_util.h"
#include "support/session_reference.h"
#include "support/test_env.h"
#include "support/test_store.h"

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
  EmbeddedEventStoreOptions Options() { return TestStoreOptions(dir_); }
  std::unique_ptr<EmbeddedEventStore> Open() { return Open(Options()); }
  std::unique_ptr<EmbeddedEventStore> Open(const EmbeddedEventStoreOptions& options) {
    auto store = EmbeddedEventStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  // The users of every event in the segment files on disk (what a purge must have rewritten).
  std::multiset<std::string> SegmentFileUsers() {
    std::multiset<std::string> users;
    for (const auto& entry : fs::recursive_directory_iterator(dir_.path() / "segments")) {
      if (entry.path().extension() != ".col") continue;
      std::vector<StoredEvent> events;
      EXPECT_TRUE(store::embedded::ReadSegmentEvents(entry.path().string(), events).ok()) << entry.path();
      for (const auto& event : events) users.insert(event.user);
    }
    return users;
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
  // The erasure survives a restart, and once maintenance purged the segments nothing of the user is left in
  // any segment file.
  store.reset();
  store = Open();
  for (const auto& event : ScanAll(*store)) EXPECT_NE(event.user, "u_gone");
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(store->Stats()["purge_pending_users"], 0);
  EXPECT_EQ(SegmentFileUsers().count("u_gone"), 0u);
  EXPECT_GT(SegmentFileUsers().count("u_stay"), 0u);  // the files were read
  EXPECT_EQ(store->Append({MakeEvent("x5", "u_gone", kJan1 + 3)})->outcomes[0], AppendOutcome::kUserErased);
  // Registering again lifts the refusal.
  auto registered = store->Append({MakeEvent("x6", "u_gone", kJan1 + 4, "com.platform.account.user.registered.v1")});
  ASSERT_OK(registered);
  EXPECT_EQ(registered->outcomes[0], AppendOutcome::kStored);
  EXPECT_EQ(store->Append({MakeEvent("x7", "u_gone", kJan1 + 5)})->outcomes[0], AppendOutcome::kStored);
}

// Events over all days, by an aggregation (the segment read path queries use).
double CountAll(EmbeddedEventStore& store) {
  query::AggregateQuery query;
  query.bounds = {kJan1 - kDay, kJan1 + 30 * kDay};
  auto result = store.Aggregate(query);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok() || (*result)->groups.empty()) return 0;
  return (*result)->groups.begin()->second[0].weighted_count;
}

TEST_F(EmbeddedEventStoreTest, ErasureCountsAtOnceQueriesLeaveTheUserOutAndMaintenancePurgesEverySegment) {
  auto store = Open();
  // Three day partitions, two segments each, the user in four of the six.
  size_t others = 0;
  for (int day = 0; day < 3; ++day) {
    for (int part = 0; part < 2; ++part) {
      std::vector<StoredEvent> batch;
      for (int event_idx = 0; event_idx < 40; ++event_idx) {
        const std::string user = "u_" + std::to_string(event_idx % 8);
        batch.push_back(MakeEvent("d" + std::to_string(day) + "p" + std::to_string(part) + "e" +
                                      std::to_string(event_idx),
                                  user, kJan1 + day * kDay + part * 1000 + event_idx));
        others += user != "u_3";
      }
      if (day == 2 && part == 1) {
        std::erase_if(batch, [](const StoredEvent& event) { return event.user == "u_3"; });
      }
      ASSERT_OK(store->Append(batch));
      ASSERT_OK(store->Flush());
    }
  }
  ASSERT_OK(store->Append({MakeEvent("mem-1", "u_3", kJan1 + 5), MakeEvent("mem-2", "u_4", kJan1 + 6)}));
  ++others;
  EXPECT_EQ(CountAll(*store), others + 5 * 5 + 1);  // u_3: 5 events in each of 5 segments, 1 in memory
  auto erased = store->EraseUser("u_3");
  ASSERT_OK(erased);
  EXPECT_EQ(*erased, 26u);
  // Whether or not the background purge has run yet, queries never count the user again.
  EXPECT_EQ(CountAll(*store), static_cast<double>(others));
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(store->Stats()["purge_pending_users"], 0);
  EXPECT_EQ(CountAll(*store), static_cast<double>(others));
  EXPECT_EQ(SegmentFileUsers().count("u_3"), 0u);
  EXPECT_EQ(ScanAll(*store).size(), others);
}

TEST_F(EmbeddedEventStoreTest, AReRegisteredUsersOldEventsArePurgedBeforeTheNewOnesArrive) {
  auto store = Open();
  ASSERT_OK(store->Append({MakeEvent("old-1", "u_back", kJan1), MakeEvent("old-2", "u_back", kJan1 + kDay),
                           MakeEvent("keep-1", "u_other", kJan1)}));
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->EraseUser("u_back"));
  // Registering again right away: the old events leave the segments first (purge on the append's path).
  ASSERT_OK(store->Append({MakeEvent("new-1", "u_back", kJan1 + 2 * kDay, "com.platform.account.user.registered.v1"),
                           MakeEvent("new-2", "u_back", kJan1 + 2 * kDay + 1)}));
  EXPECT_EQ(store->Stats()["purge_pending_users"], 0);
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->RunMaintenance());
  std::set<std::string> ids;
  for (const auto& event : ScanAll(*store)) ids.insert(event.id);
  EXPECT_EQ(ids, (std::set<std::string>{"keep-1", "new-1", "new-2"}));
  store.reset();
  std::set<std::string> reopened;
  for (const auto& event : ScanAll(*Open())) reopened.insert(event.id);
  EXPECT_EQ(reopened, ids);
}

TEST_F(EmbeddedEventStoreTest, AReRegistrationRightAfterAnErasureLeavesNoOldEventInTheWalForACrashToReplay) {
  // The erasure itself does not flush: the user's unflushed events stay in older WAL files (recovery filters
  // them) until the next flush. A re-registration lifts that filter, so it must flush first.
  TempDir crashed;
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("old-1", "u_back", kJan1), MakeEvent("keep-1", "u_other", kJan1)}));
    ASSERT_OK(store->Flush());
    ASSERT_OK(store->Append({MakeEvent("old-2", "u_back", kJan1 + 1), MakeEvent("keep-2", "u_other", kJan1 + 2)}));
    auto erased = store->EraseUser("u_back");
    ASSERT_OK(erased);
    EXPECT_EQ(*erased, 2u);
    EXPECT_EQ(store->Stats()["purge_pending_users"], 1);
    ASSERT_OK(store->Append({MakeEvent("new-1", "u_back", kJan1 + kDay, "com.platform.account.user.registered.v1")}));
    EXPECT_EQ(store->Stats()["purge_pending_users"], 0);
    fs::copy(dir_.path(), crashed.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
  EmbeddedEventStoreOptions options = Options();
  options.dir = crashed.path().string();
  auto recovered = Open(options);
  ASSERT_NE(recovered, nullptr);
  std::set<std::string> ids;
  for (const auto& event : ScanAll(*recovered)) ids.insert(event.id);
  EXPECT_EQ(ids, (std::set<std::string>{"keep-1", "keep-2", "new-1"}));
}

std::string FileBytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// The erasure log files in a data dir.
std::vector<fs::path> ErasureLogs(const fs::path& dir) {
  std::vector<fs::path> logs;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().starts_with("erasures-")) logs.push_back(entry.path());
  }
  return logs;
}

TEST_F(EmbeddedEventStoreTest, AnIntakeErasureIsALogLineNotAManifestRewriteAndACrashRightAfterKeepsIt) {
  TempDir crashed;
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("x1", "u_gone", kJan1), MakeEvent("x2", "u_stay", kJan1)}));
    ASSERT_OK(store->Flush());
    ASSERT_OK(store->Append({MakeEvent("x3", "u_gone", kJan1 + 1), MakeEvent("x4", "u_stay", kJan1 + 2)}));
    const std::string manifest = FileBytes(dir_.path() / "MANIFEST");
    ASSERT_OK(store->EraseUser("u_gone", /*count_events=*/false));
    EXPECT_EQ(FileBytes(dir_.path() / "MANIFEST"), manifest);  // ~750 KB at 100M events: not rewritten
    ASSERT_EQ(ErasureLogs(dir_.path()).size(), 1u);
    EXPECT_NE(FileBytes(ErasureLogs(dir_.path())[0]).find("u_gone"), std::string::npos);
    fs::copy(dir_.path(), crashed.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  }
  EmbeddedEventStoreOptions options = Options();
  options.dir = crashed.path().string();
  auto recovered = Open(options);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(recovered->recovery_report()["erasures_replayed"], 1);
  std::set<std::string> ids;
  for (const auto& event : ScanAll(*recovered)) ids.insert(event.id);
  EXPECT_EQ(ids, (std::set<std::string>{"x2", "x4"}));
  EXPECT_EQ(CountAll(*recovered), 2.0);
  EXPECT_EQ(recovered->Append({MakeEvent("x5", "u_gone", kJan1 + 3)})->outcomes[0], AppendOutcome::kUserErased);
  // Recovery took the log into a new MANIFEST: the next restart needs no log.
  EXPECT_NE(FileBytes(crashed.path() / "MANIFEST").find("u_gone"), std::string::npos);
  EXPECT_TRUE(ErasureLogs(crashed.path()).empty());
  recovered.reset();
  recovered = Open(options);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(recovered->recovery_report()["erasures_replayed"], 0);
  EXPECT_EQ(recovered->Append({MakeEvent("x6", "u_gone", kJan1 + 4)})->outcomes[0], AppendOutcome::kUserErased);
}

TEST_F(EmbeddedEventStoreTest, AnOldErasureLogLeftByACrashIsNotReplayedOverALaterManifest) {
  // A crash between a MANIFEST write and the removal of the log it replaced leaves that log behind. Its user
  // registered again meanwhile: replaying it would refuse them and drop their acknowledged events.
  std::string old_log_name, old_log;
  {
    auto store = Open();
    ASSERT_OK(store->Append({MakeEvent("x1", "u_back", kJan1)}));
    ASSERT_OK(store->EraseUser("u_back", /*count_events=*/false));
    ASSERT_EQ(ErasureLogs(dir_.path()).size(), 1u);
    old_log_name = ErasureLogs(dir_.path())[0].filename().string();
    old_log = FileBytes(ErasureLogs(dir_.path())[0]);
    ASSERT_OK(store->Append({MakeEvent("x2", "u_back", kJan1 + kDay, "com.platform.account.user.registered.v1")}));
    EXPECT_TRUE(ErasureLogs(dir_.path()).empty());
  }
  std::ofstream(dir_.path() / old_log_name, std::ios::binary) << old_log;
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->recovery_report()["erasures_replayed"], 0);
  EXPECT_TRUE(ErasureLogs(dir_.path()).empty());
  std::set<std::string> ids;
  for (const auto& event : ScanAll(*store)) ids.insert(event.id);
  EXPECT_EQ(ids, (std::set<std::string>{"x2"}));
  EXPECT_EQ(store->Append({MakeEvent("x3", "u_back", kJan1 + kDay + 1)})->outcomes[0], AppendOutcome::kStored);
}

TEST_F(EmbeddedEventStoreTest, ATornLastErasureLineIsDroppedAndLaterErasuresStayReadable) {
  // Each copy of the data dir is taken while the store is open, as a kill -9 would leave it. The background purge
  // waits (it would rewrite files while they are copied, and drop the erasure log this test tears).
  TempDir crashed, crashed_again;
  EmbeddedEventStoreOptions quiet = Options();
  quiet.purge_delay_ms = 3600000;
  auto store = Open(quiet);
  ASSERT_OK(store->Append({MakeEvent("x1", "u_b", kJan1), MakeEvent("x2", "u_c", kJan1), MakeEvent("x3", "u_d", kJan1)}));
  ASSERT_OK(store->EraseUser("u_b", /*count_events=*/false));
  fs::copy(dir_.path(), crashed.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  store.reset();
  ASSERT_EQ(ErasureLogs(crashed.path()).size(), 1u);
  std::ofstream(ErasureLogs(crashed.path())[0], std::ios::binary | std::ios::app) << R"({"erase":"u_)";

  EmbeddedEventStoreOptions options = quiet;
  options.dir = crashed.path().string();
  auto recovered = Open(options);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(recovered->recovery_report()["erasures_replayed"], 1);
  // Recovery makes u_b's pending purge due at once: run it now, so that the maintenance thread does not rewrite
  // files (and retire the erasure log) while the directory is copied below (that made this test flaky).
  ASSERT_OK(recovered->RunMaintenance());
  // Had it appended behind the torn line, a later read would stop before this erasure.
  ASSERT_OK(recovered->EraseUser("u_c", /*count_events=*/false));
  fs::copy(crashed.path(), crashed_again.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  recovered.reset();

  options.dir = crashed_again.path().string();
  auto again = Open(options);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->recovery_report()["erasures_replayed"], 1);
  std::set<std::string> users;
  for (const auto& event : ScanAll(*again)) users.insert(event.user);
  EXPECT_EQ(users, (std::set<std::string>{"u_d"}));
  for (const char* user : {"u_b", "u_c"}) {
    EXPECT_EQ(again->Append({MakeEvent(std::string("y-") + user, user, kJan1 + 5)})->outcomes[0],
              AppendOutcome::kUserErased) << user;
  }
}

TEST_F(EmbeddedEventStoreTest, TheBackgroundPurgeWaitsForItsDelaySoErasuresShareOneRewrite) {
  EmbeddedEventStoreOptions options = Options();
  options.maintenance_interval_ms = 50;
  options.purge_delay_ms = 3600000;
  auto store = Open(options);
  std::vector<StoredEvent> batch;
  for (int event_idx = 0; event_idx < 60; ++event_idx) {
    batch.push_back(MakeEvent("p" + std::to_string(event_idx), "u_" + std::to_string(event_idx % 6), kJan1 + event_idx));
  }
  ASSERT_OK(store->Append(batch));
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->EraseUser("u_1"));
  ASSERT_OK(store->EraseUser("u_2"));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // several maintenance rounds
  EXPECT_EQ(store->Stats()["purge_pending_users"], 2);
  EXPECT_EQ(store->Stats()["purges"], 0);
  EXPECT_EQ(CountAll(*store), 40.0);  // hidden from queries meanwhile
  store.reset();

  options.purge_delay_ms = 0;  // reopened with no delay: the maintenance thread purges both in one pass
  store = Open(options);
  // `purges` counts a pass once it is complete (after the MANIFEST write that ends it).
  for (int attempt = 0; attempt < 200 && store->Stats()["purges"] == 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(store->Stats()["purges"], 1);
  EXPECT_EQ(store->Stats()["purge_pending_users"], 0);
  EXPECT_EQ(CountAll(*store), 40.0);
  EXPECT_EQ(SegmentFileUsers().count("u_1"), 0u);
  EXPECT_EQ(SegmentFileUsers().count("u_2"), 0u);
  EXPECT_GT(SegmentFileUsers().count("u_0"), 0u);  // the files were read
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

TEST_F(EmbeddedEventStoreTest, SessionsStayRightOverCachedDaysLateEventsAndFlushes) {
  // Session starts and ends of a few users over four days (many sessions cross midnight), read from the memtable,
  // then from segments (days and their links cached), then with late events in the memtable for days already
  // cached, then with those flushed too: every time the same as the reference.
  auto store = Open();
  const std::string kStart = "com.platform.library.session.started.v1", kEnd = "com.platform.library.session.ended.v1";
  std::mt19937 random(11);
  std::set<int64_t> used_times;  // distinct times: the reference's read order never decides
  std::vector<StoredEvent> all;
  int next_id = 0;
  auto events = [&](size_t count) {
    std::vector<StoredEvent> batch;
    while (batch.size() < count) {
      const int64_t time_ms = kJan1 + static_cast<int64_t>(random() % (4 * kDay));
      if (!used_times.insert(time_ms).second) continue;
      StoredEvent event = MakeEvent("s" + std::to_string(next_id++), "u_" + std::to_string(random() % 30), time_ms,
                                    random() % 2 == 0 ? kStart : kEnd);
      event.session_id = "k" + std::to_string(random() % 3);
      batch.push_back(event);
    }
    all.insert(all.end(), batch.begin(), batch.end());
    return batch;
  };
  query::SessionQuery query;
  query.start_type = kStart;
  query.end_type = kEnd;
  query.key_property = "session_id";
  query.group_by = {"game_id"};
  query.max_session_ms = 8 * 3600000;
  query.from_ms = kJan1 + 3600000;  // the first day is cut
  query.to_ms = kJan1 + 4 * kDay;
  query.collect_users = true;
  auto check = [&](const std::string& phase) {
    SCOPED_TRACE(phase);
    std::vector<analytics::testing::SessionEvent> read;
    std::map<std::string, uint32_t> user_ids;
    for (const StoredEvent& event : all) {
      if (event.time_ms < query.from_ms || event.time_ms >= query.to_ms) continue;
      const uint32_t user = user_ids.try_emplace(event.user, static_cast<uint32_t>(user_ids.size())).first->second;
      read.push_back({event.time_ms, event.type == kStart, user, event.session_id, {event.game_id}});
    }
    const auto expected = analytics::testing::ReferenceSessions(read, query.max_session_ms);
    auto paired = store->Sessions(query);
    ASSERT_TRUE(paired.ok()) << paired.status().ToString();
    EXPECT_EQ(analytics::testing::NetChanges(*paired), analytics::testing::NetChanges(expected));
    std::map<query::GroupKey, std::pair<uint64_t, uint64_t>> got, want;  // sessions, distinct users
    for (size_t group = 0; group < paired->groups.size(); ++group) {
      if (paired->session_counts[group] > 0) {
        got[paired->groups[group]] = {paired->session_counts[group], paired->users[group].cardinality()};
      }
    }
    for (const auto& [group, sessions] : expected) {
      std::set<uint32_t> users;
      for (const auto& session : sessions) users.insert(std::get<2>(session));
      want[group] = {sessions.size(), users.size()};
    }
    EXPECT_EQ(got, want);
  };
  ASSERT_OK(store->Append(events(400)));
  check("memtable");
  ASSERT_OK(store->Flush());
  check("segments, first read");
  check("segments, cached");
  ASSERT_OK(store->Append(events(120)));
  check("late events in the memtable");
  ASSERT_OK(store->Flush());
  check("late events flushed");
  check("late events flushed, cached");
}

TEST_F(EmbeddedEventStoreTest, TimelinesHoldEachUsersMatchingEventsInOrderFromMemoryAndSegments) {
  // Page views, cart adds and purchases of 40 users over five days, read as a timeline from the memtable, then
  // from segments (parts and the join cached), with late events in the memtable, and after an erasure: every time
  // each user's rows equal a reference built here from the raw events (filter, selectors, range, order).
  auto store = Open();
  const std::string kView = "com.platform.store.page.viewed.v1", kCart = "com.platform.cart.item.added.v1",
                    kBuy = "com.platform.payments.purchase.completed.v1";
  const std::vector<std::string> kTypes = {kView, kCart, kBuy, "com.platform.social.friend.added.v1"};
  std::mt19937 random(5);
  std::vector<StoredEvent> all;
  int next_id = 0;
  auto events = [&](size_t count) {
    std::vector<StoredEvent> batch;
    for (size_t idx = 0; idx < count; ++idx) {
      // Coarse times (whole minutes): many equal timestamps, so the tie order is exercised.
      const int64_t time_ms = kJan1 + static_cast<int64_t>(random() % (5 * 24 * 60)) * 60000;
      StoredEvent event = MakeEvent("t" + std::to_string(next_id++), "u_" + std::to_string(random() % 40), time_ms,
                                    kTypes[random() % kTypes.size()]);
      event.country = random() % 3 == 0 ? "DE" : "RU";
      if (random() % 5 == 0) event.game_id.clear();
      batch.push_back(event);
    }
    all.insert(all.end(), batch.begin(), batch.end());
    return batch;
  };
  query::TimelineQuery query;
  query.selectors.resize(3);
  query.selectors[0].event_types = {kView};
  query.selectors[1].event_types = {kCart, kBuy};
  query.selectors[2].event_types = {kBuy};
  query::PropertyFilter germany{"country", query::FilterOp::kEq, "DE"};
  query.selectors[2].filter = query::FilterExpr::Condition(germany);
  query::PropertyFilter not_g3{"game_id", query::FilterOp::kNe, "g3"};
  query.filter = query::FilterExpr::Condition(not_g3);
  query.keys = {"game_id"};
  query.number_property = "amount";
  query.from_ms = kJan1 + 7 * 3600000;
  query.to_ms = kJan1 + 4 * kDay + 5 * 3600000;
  std::set<std::string> erased;
  using Row = std::tuple<int64_t, std::string, std::string, uint32_t, double>;  // time, type, game, matches, amount
  auto check = [&](const std::string& phase) {
    SCOPED_TRACE(phase);
    std::map<std::string, std::vector<Row>> want_by_user;
    for (const StoredEvent& event : all) {
      if (event.time_ms < query.from_ms || event.time_ms >= query.to_ms || erased.count(event.user) > 0) continue;
      if (event.game_id == "g3") continue;
      uint32_t matches = 0;
      if (event.type == kView) matches |= 1;
      if (event.type == kCart || event.type == kBuy) matches |= 2;
      if (event.type == kBuy && event.country == "DE") matches |= 4;
      if (matches == 0) continue;
      want_by_user[event.user].emplace_back(event.time_ms, event.type, event.game_id.empty() ? "~" : event.game_id,
                                            matches, event.amount ? *event.amount : -1.0);
    }
    std::multiset<std::vector<Row>> want;
    for (auto& [user, rows] : want_by_user) {
      std::sort(rows.begin(), rows.end());
      want.insert(rows);
    }
    auto timeline = store->ReadTimeline(query);
    ASSERT_TRUE(timeline.ok()) << timeline.status().ToString();
    const query::Timeline& got_timeline = **timeline;
    std::multiset<std::vector<Row>> got;
    for (size_t user_idx = 0; user_idx < got_timeline.user_count(); ++user_idx) {
      std::vector<Row> rows;
      for (uint32_t row = got_timeline.user_begin[user_idx]; row < got_timeline.user_begin[user_idx + 1]; ++row) {
        EXPECT_EQ(got_timeline.users[row], got_timeline.users[got_timeline.user_begin[user_idx]]);
        const uint32_t game = got_timeline.keys[0][row];
        const double amount = got_timeline.numbers[row];
        rows.emplace_back(got_timeline.time_ms[row], got_timeline.type_names[got_timeline.types[row]],
                          game == query::kMissingKey ? "~" : got_timeline.key_values[0][game],
                          got_timeline.matches[row], std::isnan(amount) ? -1.0 : amount);
      }
      // The engine's order is (time, type name, game text, ...); "~" sorts after every game id as missing does.
      EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end())) << "user " << user_idx;
      got.insert(rows);
    }
    EXPECT_EQ(got.size(), want.size());
    EXPECT_EQ(got, want);
  };
  ASSERT_OK(store->Append(events(600)));
  check("memtable");
  ASSERT_OK(store->Flush());
  check("segments, first read");
  check("segments, cached");
  ASSERT_OK(store->Append(events(150)));
  check("late events in the memtable");
  ASSERT_OK(store->Flush());
  check("late events flushed");
  auto removed = store->EraseUser("u_7");
  ASSERT_TRUE(removed.ok());
  erased.insert("u_7");
  check("after an erasure");
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

namespace analytics::testing {
namespace {

std::set<std::string> Ids(const std::vector<StoredEvent>& events) {
  std::set<std::string> ids;
  for (const auto& event : events) ids.insert(event.id);
  return ids;
}

std::vector<fs::path> SegmentFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir / "segments")) {
    if (entry.path().extension() == ".col") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<StoredEvent> Batch(const std::string& prefix, int count, int64_t start_ms, int users = 17) {
  std::vector<StoredEvent> batch;
  for (int event_idx = 0; event_idx < count; ++event_idx) {
    batch.push_back(MakeEvent(prefix + std::to_string(event_idx), "u_" + std::to_string(event_idx % users),
                              start_ms + event_idx * 997));
  }
  return batch;
}

TEST_F(EmbeddedEventStoreTest, CompactionMergesTheSmallSegmentsOfADayAndKeepsEveryEvent) {
  auto store = Open();
  for (int flush_idx = 0; flush_idx < 6; ++flush_idx) {
    ASSERT_OK(store->Append(Batch("k" + std::to_string(flush_idx) + "-", 200, kJan1 + flush_idx * 3600000)));
    ASSERT_OK(store->Flush());
  }
  ASSERT_EQ(SegmentFiles(dir_.path()).size(), 6u);
  const std::vector<StoredEvent> before = ScanAll(*store);
  ASSERT_EQ(before.size(), 1200u);
  const std::vector<fs::path> old_files = SegmentFiles(dir_.path());

  ASSERT_OK(store->RunMaintenance());
  const std::vector<fs::path> files = SegmentFiles(dir_.path());
  ASSERT_EQ(files.size(), 1u);
  for (const auto& old_file : old_files) EXPECT_FALSE(fs::exists(old_file)) << old_file;
  auto stats = store->Stats();
  EXPECT_EQ(stats["compactions"], 1);
  EXPECT_EQ(stats["compacted_segments"], 6);
  EXPECT_EQ(stats["segment_events"], 1200);
  const std::vector<StoredEvent> after = ScanAll(*store);
  ASSERT_EQ(after.size(), before.size());
  for (size_t event_idx = 0; event_idx < after.size(); ++event_idx) {
    EXPECT_TRUE(SameEvent(after[event_idx], before[event_idx])) << event_idx;
  }
  // The merged segment is sorted by (user, time) like any other.
  std::vector<StoredEvent> rows;
  ASSERT_OK(store::embedded::ReadSegmentEvents(files[0].string(), rows));
  for (size_t row_idx = 1; row_idx < rows.size(); ++row_idx) {
    const auto& a = rows[row_idx - 1];
    const auto& b = rows[row_idx];
    EXPECT_TRUE(a.user < b.user || (a.user == b.user && a.time_ms <= b.time_ms)) << row_idx;
  }
  // A restart sees the merged segment only, and dedup still knows every id.
  store.reset();
  store = Open();
  EXPECT_EQ(ScanAll(*store).size(), 1200u);
  EXPECT_EQ(store->Append(Batch("k0-", 200, kJan1))->duplicates, 200u);
}

TEST_F(EmbeddedEventStoreTest, CompactionNeverWritesASegmentOverMaxRowsAndWaitsForEnoughSegments) {
  EmbeddedEventStoreOptions options = Options();
  options.compaction.max_rows = 1000;
  options.compaction.min_segments = 3;
  auto store = Open(options);
  const int64_t today = common::NowMillis() / kDay * kDay;  // an open day: merged only at min_segments
  for (int flush_idx = 0; flush_idx < 2; ++flush_idx) {
    auto batch = Batch("m" + std::to_string(flush_idx) + "-", 300, today + flush_idx * 1000);
    for (auto& event : batch) event.received_ms = common::NowMillis();
    ASSERT_OK(store->Append(batch));
    ASSERT_OK(store->Flush());
  }
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 2u);  // two small segments of an open day: not yet
  for (int flush_idx = 2; flush_idx < 7; ++flush_idx) {
    auto batch = Batch("m" + std::to_string(flush_idx) + "-", 300, today + flush_idx * 1000);
    for (auto& event : batch) event.received_ms = common::NowMillis();
    ASSERT_OK(store->Append(batch));
    ASSERT_OK(store->Flush());
  }
  ASSERT_OK(store->RunMaintenance());
  uint64_t total = 0;
  for (const auto& file : SegmentFiles(dir_.path())) {
    auto info = store::embedded::ReadSegmentInfo(file.string());
    ASSERT_OK(info);
    EXPECT_LE(info->rows, 1000u) << file;
    total += info->rows;
  }
  EXPECT_EQ(total, 2100u);
  EXPECT_LT(SegmentFiles(dir_.path()).size(), 7u);
  EXPECT_EQ(ScanAll(*store).size(), 2100u);
}

TEST_F(EmbeddedEventStoreTest, ReadersDuringCompactionAndErasureSeeEveryEventExactlyOnce) {
  auto store = Open();
  size_t others_expected = 0;
  for (int flush_idx = 0; flush_idx < 8; ++flush_idx) {
    auto batch = Batch("r" + std::to_string(flush_idx) + "-", 250, kJan1 + flush_idx * 60000);
    for (const auto& event : batch) others_expected += event.user != "u_16";
    ASSERT_OK(store->Append(batch));
    ASSERT_OK(store->Flush());
  }
  std::atomic<bool> done{false};
  std::atomic<int> scans{0};
  std::thread reader([&] {
    while (!done) {
      auto all = ScanAll(*store, {}, 700);
      // u_16's events may vanish (erasure below) but nobody else's; never a repeat.
      size_t others = 0;
      for (const auto& event : all) others += event.user != "u_16";
      EXPECT_GE(others, others_expected);
      EXPECT_LE(others, others_expected + 300);
      EXPECT_EQ(Ids(all).size(), all.size());
      ++scans;
    }
  });
  ASSERT_OK(store->RunMaintenance());
  ASSERT_OK(store->EraseUser("u_16"));
  ASSERT_OK(store->Append(Batch("late-", 300, kJan1 + 5000, 16)));
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->RunMaintenance());
  while (scans < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  done = true;
  reader.join();
  EXPECT_EQ(ScanAll(*store).size(), others_expected + 300u);
}

TEST_F(EmbeddedEventStoreTest, AnIntakeErasureDuringAFlushNeitherWaitsForItNorPublishesItsUnlistedSegments) {
  // The flush is held after writing its segments, before its MANIFEST write. An intake erasure (no counting)
  // must finish meanwhile, and a crash right after it (the data dir copied then) must recover every other
  // event exactly once: nothing the erasure writes may list the flush's segments while the flushed WAL
  // sequence is still the old one.
  auto store = Open();
  ASSERT_OK(store->Append(Batch("a-", 100, kJan1)));
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->Append(Batch("b-", 100, kJan1 + kDay)));
  TempDir crashed;
  std::future<common::Result<uint64_t>> erasure;
  bool erased_during_flush = false;
  store->SetBeforeFlushManifestForTest([&] {
    erasure = std::async(std::launch::async, [&] { return store->EraseUser("u_3", /*count_events=*/false); });
    erased_during_flush = erasure.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
    if (erased_during_flush) {
      fs::copy(dir_.path(), crashed.path(), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    }
  });
  ASSERT_OK(store->Flush());
  ASSERT_OK(erasure.get());  // had it waited for the flush, it is done now
  ASSERT_TRUE(erased_during_flush) << "the erasure waited for the flush";
  std::multiset<std::string> expected;
  for (const auto& prefix : {"a-", "b-"}) {
    for (const auto& event : Batch(prefix, 100, kJan1)) {
      if (event.user != "u_3") expected.insert(event.id);
    }
  }
  auto ids_of = [&](EmbeddedEventStore& any) {
    std::multiset<std::string> ids;
    for (const auto& event : ScanAll(any)) ids.insert(event.id);
    return ids;
  };
  EXPECT_EQ(ids_of(*store), expected);
  EXPECT_EQ(CountAll(*store), static_cast<double>(expected.size()));
  // The flush wrote u_3's day-two events before the erasure: purge-pending, then purged from the files.
  EXPECT_GT(SegmentFileUsers().count("u_3"), 0u);
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(SegmentFileUsers().count("u_3"), 0u);
  EXPECT_EQ(ids_of(*store), expected);
  EXPECT_EQ(store->Append({MakeEvent("c-1", "u_3", kJan1 + 2 * kDay)})->outcomes[0], AppendOutcome::kUserErased);
  store.reset();

  EmbeddedEventStoreOptions options = Options();
  options.dir = crashed.path().string();
  auto recovered = Open(options);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(ids_of(*recovered), expected);
  EXPECT_EQ(CountAll(*recovered), static_cast<double>(expected.size()));
  EXPECT_EQ(recovered->Append({MakeEvent("c-2", "u_3", kJan1 + 2 * kDay)})->outcomes[0], AppendOutcome::kUserErased);
}

TEST_F(EmbeddedEventStoreTest, AnErasureOfAnotherUserDuringAMergeDoesNotDiscardIt) {
  auto store = Open();
  for (int flush_idx = 0; flush_idx < 3; ++flush_idx) {
    ASSERT_OK(store->Append(Batch("e" + std::to_string(flush_idx) + "-", 100, kJan1 + flush_idx * 60000)));
    ASSERT_OK(store->Flush());
  }
  ASSERT_OK(store->Append({MakeEvent("other", "u_elsewhere", kJan1 + 5 * kDay)}));
  ASSERT_OK(store->Flush());
  std::atomic<bool> erased{false};
  store->SetBeforeCompactionSwapForTest([&] {
    if (!erased.exchange(true)) ASSERT_OK(store->EraseUser("u_elsewhere"));
  });
  ASSERT_OK(store->RunMaintenance());
  auto stats = store->Stats();
  EXPECT_EQ(stats["compactions"], 1);
  EXPECT_EQ(stats["compaction_conflicts"], 0);
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 2u);  // the merged day, and u_elsewhere's day until its purge
  EXPECT_EQ(ScanAll(*store).size(), 300u);
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 1u);
  EXPECT_EQ(ScanAll(*store).size(), 300u);
}

TEST_F(EmbeddedEventStoreTest, AnErasureOfAMergedUserDuringAMergeMakesItPlanAgain) {
  auto store = Open();
  for (int flush_idx = 0; flush_idx < 3; ++flush_idx) {
    ASSERT_OK(store->Append(Batch("e" + std::to_string(flush_idx) + "-", 100, kJan1 + flush_idx * 60000)));
    ASSERT_OK(store->Flush());
  }
  std::atomic<bool> erased{false};
  store->SetBeforeCompactionSwapForTest([&] {
    if (!erased.exchange(true)) ASSERT_OK(store->EraseUser("u_3"));
  });
  // The purge runs first (nothing pending yet), then the merge meets the erasure and is planned again without
  // u_3; the next round purges u_3 from whatever still holds them.
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(store->Stats()["compaction_conflicts"], 1);
  EXPECT_EQ(store->Stats()["compactions"], 1);
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(SegmentFileUsers().count("u_3"), 0u);
  EXPECT_GT(SegmentFileUsers().count("u_4"), 0u);
  for (const auto& event : ScanAll(*store)) EXPECT_NE(event.user, "u_3");
}

TEST_F(EmbeddedEventStoreTest, AnOldDayStillReceivingFlushesIsMergedOnlyOnceItSettles) {
  EmbeddedEventStoreOptions options = Options();
  options.maintenance_interval_ms = 20;
  options.compaction.settle_ms = 3600000;
  auto store = Open(options);
  for (int flush_idx = 0; flush_idx < 3; ++flush_idx) {
    ASSERT_OK(store->Append(Batch("b" + std::to_string(flush_idx) + "-", 100, kJan1 + flush_idx * 60000)));
    ASSERT_OK(store->Flush());
  }
  // Three similar segments of a backfilled day: below min_segments of a tier, so the background rounds wait.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 3u);
  EXPECT_EQ(store->Stats()["compactions"], 0);
  // RunMaintenance takes the day as closed at once.
  ASSERT_OK(store->RunMaintenance());
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 1u);
  EXPECT_EQ(ScanAll(*store).size(), 300u);

  // Once settled, a background round merges it.
  store.reset();
  options.compaction.settle_ms = 0;
  store = Open(options);
  ASSERT_OK(store->Append(Batch("late-", 50, kJan1 + 7200000)));
  ASSERT_OK(store->Flush());
  for (int wait_idx = 0; wait_idx < 500 && SegmentFiles(dir_.path()).size() > 1; ++wait_idx) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(SegmentFiles(dir_.path()).size(), 1u);
  EXPECT_EQ(ScanAll(*store).size(), 350u);
}

TEST_F(EmbeddedEventStoreTest, RecoveryKeepsTheNewestDedupKeysWhenTheWindowHoldsMoreThanTheIndexKeeps) {
  EmbeddedEventStoreOptions options = Options();
  options.dedup_max_bytes = 64 << 10;  // 4096 slots: 2048 keys after a start
  auto store = Open(options);
  for (int day_idx = 0; day_idx < 3; ++day_idx) {
    ASSERT_OK(store->Append(Batch("d" + std::to_string(day_idx) + "-", 1000, kJan1 + day_idx * kDay)));
    ASSERT_OK(store->Flush());
  }
  store.reset();
  store = Open(options);
  EXPECT_EQ(store->Stats()["dedup_keys"], 2048);
  EXPECT_EQ(store->Stats()["dedup_evicted_days"], 0);
  // The two newest receive days are known whole; of the oldest only what fitted.
  EXPECT_EQ(store->Append(Batch("d2-", 1000, kJan1 + 2 * kDay))->duplicates, 1000u);
  EXPECT_EQ(store->Append(Batch("d1-", 1000, kJan1 + kDay))->duplicates, 1000u);
  EXPECT_EQ(store->Append(Batch("d0-", 1000, kJan1))->duplicates, 48u);
}

TEST_F(EmbeddedEventStoreTest, RetentionDropsOldDayPartitionsAndExpiredEventsEverywhere) {
  EmbeddedEventStoreOptions options = Options();
  options.retention_days = 3;  // today and the two days before
  auto store = Open(options);
  const int64_t today = common::NowMillis() / kDay * kDay;
  ASSERT_OK(store->Append(Batch("old-", 50, today - 5 * kDay)));
  ASSERT_OK(store->Append(Batch("edge-", 50, today - 2 * kDay)));
  ASSERT_OK(store->Append(Batch("new-", 50, today)));
  // Not yet flushed: queries already leave the expired day out.
  EXPECT_EQ(ScanAll(*store).size(), 100u);
  ASSERT_OK(store->Flush());  // expired memtable events are not written
  EXPECT_EQ(store->Stats()["expired_events"], 50);
  EXPECT_FALSE(fs::exists(dir_.path() / "segments" / common::FormatRfc3339Millis(today - 5 * kDay).substr(0, 10)));
  store.reset();

  // Segments written while retention was longer expire with their whole partition.
  options.retention_days = 0;
  store = Open(options);
  ASSERT_OK(store->Append(Batch("old2-", 40, today - 4 * kDay)));
  ASSERT_OK(store->Flush());
  EXPECT_EQ(ScanAll(*store).size(), 140u);
  store.reset();
  options.retention_days = 3;
  store = Open(options);
  EXPECT_EQ(ScanAll(*store).size(), 100u);
  ASSERT_OK(store->RunMaintenance());
  const fs::path old_dir = dir_.path() / "segments" / common::FormatRfc3339Millis(today - 4 * kDay).substr(0, 10);
  EXPECT_FALSE(fs::exists(old_dir));
  EXPECT_EQ(store->Stats()["expired_events"], 40);
  store.reset();
  options.retention_days = 0;  // nothing comes back when retention is lifted
  EXPECT_EQ(ScanAll(*Open(options)).size(), 100u);
}

TEST_F(EmbeddedEventStoreTest, ErasureLeavesNoByteOfTheUserInTheWalOrSegmentsAfterTheNextFlush) {
  EmbeddedEventStoreOptions options = Options();
  options.flush_interval_ms = 200;  // the regular flush, not one the test asks for
  auto store = Open(options);
  ASSERT_OK(store->Append({MakeEvent("e1", "u_erase_me_7f3a", kJan1), MakeEvent("e2", "u_keep", kJan1)}));
  ASSERT_OK(store->EraseUser("u_erase_me_7f3a"));
  ASSERT_OK(store->Append({MakeEvent("e3", "u_keep", kJan1 + 1)}));
  // The erasure rolled the WAL; the file holding e1 goes with the next flush's truncation.
  auto wal_bytes = [&] {
    std::string all;
    for (const auto& entry : fs::recursive_directory_iterator(dir_.path() / "wal")) {
      if (!entry.is_regular_file()) continue;
      std::ifstream file(entry.path(), std::ios::binary);
      all.append((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    }
    return all;
  };
  EXPECT_NE(wal_bytes().find("u_erase_me_7f3a"), std::string::npos);  // until that flush (recovery filters it)
  for (int attempt = 0; attempt < 400 && wal_bytes().find("u_erase_me_7f3a") != std::string::npos; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(wal_bytes().find("u_erase_me_7f3a"), std::string::npos);
  EXPECT_EQ(wal_bytes().find("e1"), std::string::npos);
  EXPECT_GT(store->Stats()["segments"], 0);
  EXPECT_EQ(SegmentFileUsers().count("u_erase_me_7f3a"), 0u);
  EXPECT_GT(SegmentFileUsers().count("u_keep"), 0u);  // the files were read
  store.reset();
  auto all = ScanAll(*Open());
  EXPECT_EQ(Ids(all), (std::set<std::string>{"e2", "e3"}));
}

TEST_F(EmbeddedEventStoreTest, AppendsWaitForTheFlushAndFailCleanlyWhenItCannotCatchUp) {
  EmbeddedEventStoreOptions options = Options();
  options.memtable_max_events = 1000;
  options.append_wait_ms = 300;
  auto store = Open(options);
  // Segments cannot be written (their folder is a file): the flush fails, the memtable fills up.
  fs::remove_all(dir_.path() / "segments");
  { std::ofstream blocker(dir_.path() / "segments"); }
  ASSERT_OK(store->Append(Batch("b0-", 1000, kJan1)));
  ASSERT_OK(store->Append(Batch("b1-", 1000, kJan1)));
  auto refused = store->Append(Batch("b2-", 10, kJan1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), common::StatusCode::kUnavailable) << refused.status().ToString();
  EXPECT_GE(store->Stats()["backpressure_waits"], 1);
  // Once segments can be written again, the flush frees the memtable and appends go on.
  fs::remove(dir_.path() / "segments");
  fs::create_directories(dir_.path() / "segments");
  ASSERT_OK(store->Flush());
  ASSERT_OK(store->Append(Batch("b2-", 10, kJan1)));
  EXPECT_EQ(ScanAll(*store).size(), 2010u);
  EXPECT_LE(store->Stats()["memtable_bytes"].get<uint64_t>(), 4u << 20);
}

TEST_F(EmbeddedEventStoreTest, ACleanShutdownLeavesNoWalRecords) {
  auto store = Open();
  for (int batch_idx = 0; batch_idx < 5; ++batch_idx) {
    ASSERT_OK(store->Append(Batch("w" + std::to_string(batch_idx) + "-", 100, kJan1 + batch_idx * kDay)));
  }
  store.reset();
  uint64_t wal_bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir_.path() / "wal")) wal_bytes += fs::file_size(entry.path());
  EXPECT_LE(wal_bytes, 16u) << "only the header of the new, empty WAL file may be left";
  store = Open();
  EXPECT_EQ(store->recovery_report()["wal_records_replayed"], 0);
  EXPECT_EQ(ScanAll(*store).size(), 500u);
}

}  // namespace
}  // namespace analytics::testing
