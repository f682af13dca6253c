// OutboxEventBus (bus/outbox/) over the real metadata stores, SQLite (a file, reopened as a restart would) and
// PostgreSQL (a fresh schema per test): a published event is in the outbox before anyone hears of it and survives
// a reopen; subscribers and the appended listener run after the append, and not at all when it fails; Recent
// pages the outbox and shows the relay state; Purge follows the retention and keeps undelivered records when
// asked. A store that fails is a real one whose outbox table is gone.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bus/event_bus.h"
#include "bus/outbox/outbox_event_bus.h"
#include "common/status.h"
#include "common/time_util.h"
#include "metadata/metadata_store.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "support/metadata_backends.h"
#include "support/test_env.h"

namespace analytics::bus {
namespace {

using common::Status;
using common::StatusCode;
using nlohmann::json;

constexpr char kUpdated[] = "com.platform.analytics.segment.updated.v1";
constexpr char kGenerated[] = "com.platform.analytics.report.generated.v1";

// Runs SQL on the store's own connection (to break or damage it).
Status Execute(metadata::MetadataStore& store, std::string_view sql) {
  if (auto* sqlite = dynamic_cast<metadata::SqliteMetadataStore*>(&store)) return sqlite->ExecuteForTest(sql);
  return dynamic_cast<metadata::PostgresMetadataStore&>(store).ExecuteForTest(sql);
}

std::vector<int64_t> Sequences(const std::vector<ProducedEvent>& events) {
  std::vector<int64_t> sequences;
  for (const auto& produced : events) sequences.push_back(produced.sequence);
  return sequences;
}

template <typename Backend>
class OutboxEventBusTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(store_, backend_.Open()); }

  // A restart: the bus and the store go, the same database opens again.
  void Reopen() {
    store_.reset();
    ASSERT_OK_AND_ASSIGN(store_, backend_.Open());
  }

  metadata::MetadataStore& store() { return *store_; }

  Backend backend_;  // declared first: outlives the store (PostgreSQL drops the schema)
  std::unique_ptr<metadata::MetadataStore> store_;
};

TYPED_TEST_SUITE(OutboxEventBusTest, testing::MetadataBackends, testing::MetadataBackendNames);

TYPED_TEST(OutboxEventBusTest, PublishedEventsAreStoredBeforePublishReturnsAndSurviveAReopen) {
  std::vector<std::pair<std::string, json>> published;
  {
    OutboxEventBus bus(this->store());
    for (int event_idx = 0; event_idx < 3; ++event_idx) {
      const std::string key = "seg-" + std::to_string(event_idx);
      json event = MakeCloudEvent(kUpdated, key, {{"segment_id", key}, {"name", "«тихие» \"buyers\""},
                                                  {"users_count", event_idx}});
      ASSERT_OK(bus.Publish(key, event));
      published.emplace_back(key, std::move(event));
    }
    // In the store at once, as compact JSON, keyed and typed.
    ASSERT_OK_AND_ASSIGN(auto records, this->store().ListOutbox(0, 100, ""));
    ASSERT_EQ(records.size(), 3u);
    for (size_t event_idx = 0; event_idx < records.size(); ++event_idx) {
      EXPECT_EQ(records[event_idx].key, published[event_idx].first);
      EXPECT_EQ(records[event_idx].type, kUpdated);
      EXPECT_EQ(records[event_idx].event_json, published[event_idx].second.dump());
      EXPECT_FALSE(records[event_idx].relayed_at_ms.has_value());
    }
  }
  this->Reopen();
  OutboxEventBus bus(this->store());
  ASSERT_OK_AND_ASSIGN(auto recent, bus.Recent(0, 100, ""));
  ASSERT_EQ(recent.size(), 3u);
  for (size_t event_idx = 0; event_idx < recent.size(); ++event_idx) {
    SCOPED_TRACE(event_idx);
    EXPECT_EQ(recent[event_idx].key, published[event_idx].first);
    EXPECT_EQ(recent[event_idx].event, published[event_idx].second);
    EXPECT_FALSE(recent[event_idx].relayed_at_ms.has_value());
    if (event_idx > 0) {
      EXPECT_GT(recent[event_idx].sequence, recent[event_idx - 1].sequence);
    }
  }
  // Sequences go on from where they were.
  int64_t after_restart = 0;
  bus.Subscribe([&](const ProducedEvent& produced) { after_restart = produced.sequence; });
  ASSERT_OK(bus.Publish("rep-1", MakeCloudEvent(kGenerated, "rep-1", {{"instance_id", "rep-1"}})));
  EXPECT_GT(after_restart, recent.back().sequence);
}

TYPED_TEST(OutboxEventBusTest, SubscribersAndThenTheListenerRunAfterTheAppendWithItsSequence) {
  std::vector<std::string> calls;
  OutboxEventBus bus(this->store(), {.on_appended = [&] { calls.push_back("listener"); }});
  metadata::MetadataStore& store = this->store();
  bus.Subscribe([&](const ProducedEvent& produced) {
    calls.push_back("first:" + produced.key);
    // Durable before anyone hears of it: the store already holds it under this sequence.
    auto stored = store.ListOutbox(produced.sequence - 1, 1, "");
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    ASSERT_EQ(stored->size(), 1u);
    EXPECT_EQ((*stored)[0].sequence, produced.sequence);
    EXPECT_EQ((*stored)[0].key, produced.key);
    EXPECT_EQ(json::parse((*stored)[0].event_json), produced.event);
    throw std::runtime_error("a subscriber's failure never fails the publisher");
  });
  bus.Subscribe([&](const ProducedEvent& produced) { calls.push_back("second:" + produced.key); });
  ASSERT_OK(bus.Publish("seg-1", MakeCloudEvent(kUpdated, "seg-1", json::object())));
  EXPECT_EQ(calls, (std::vector<std::string>{"first:seg-1", "second:seg-1", "listener"}));

  // The listener can be replaced (the relay sets it once it exists) and removed; a throwing one is logged.
  calls.clear();
  int relay_wakeups = 0;
  bus.SetAppendedListener([&] {
    ++relay_wakeups;
    throw std::runtime_error("nor does the listener's");
  });
  ASSERT_OK(bus.Publish("seg-2", MakeCloudEvent(kUpdated, "seg-2", json::object())));
  EXPECT_EQ(relay_wakeups, 1);
  bus.SetAppendedListener(nullptr);
  ASSERT_OK(bus.Publish("seg-3", MakeCloudEvent(kUpdated, "seg-3", json::object())));
  EXPECT_EQ(relay_wakeups, 1);
  EXPECT_EQ(calls, (std::vector<std::string>{"first:seg-2", "second:seg-2", "first:seg-3", "second:seg-3"}));
}

// The relay goes away at shutdown: once SetAppendedListener returns, the old listener is neither running nor ever
// called again.
TYPED_TEST(OutboxEventBusTest, ReplacingTheListenerWaitsForItsRunningCall) {
  std::promise<void> entered, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> old_calls{0};
  OutboxEventBus bus(this->store(), {.on_appended = [&, released] {
                                       if (old_calls.fetch_add(1) == 0) {
                                         entered.set_value();
                                         released.wait();
                                       }
                                     }});
  std::thread publisher([&] { EXPECT_OK(bus.Publish("seg-1", MakeCloudEvent(kUpdated, "seg-1", json::object()))); });
  entered.get_future().wait();  // the publisher is inside the old listener
  std::atomic<bool> replaced{false};
  std::thread replacer([&] {
    bus.SetAppendedListener(nullptr);
    replaced = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(replaced.load()) << "SetAppendedListener returned while the old listener ran";
  release.set_value();
  replacer.join();
  publisher.join();
  EXPECT_TRUE(replaced.load());
  ASSERT_OK(bus.Publish("seg-2", MakeCloudEvent(kUpdated, "seg-2", json::object())));
  EXPECT_EQ(old_calls.load(), 1);
}

TYPED_TEST(OutboxEventBusTest, AFailedAppendIsReturnedAndNobodyIsCalled) {
  int subscriber_calls = 0, listener_calls = 0;
  OutboxEventBus bus(this->store(), {.on_appended = [&] { ++listener_calls; }});
  bus.Subscribe([&](const ProducedEvent&) { ++subscriber_calls; });

  // Events the bus refuses before the store sees them.
  const json refused[] = {json::array({1, 2}), json{{"specversion", "1.0"}}, json{{"type", 7}}, json{{"type", ""}},
                          MakeCloudEvent(kUpdated, "seg-1", {{"name", std::string("not UTF-8: \xff")}})};
  for (const json& event : refused) {
    Status status = bus.Publish("seg-1", event);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument)
        << event.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  ASSERT_OK_AND_ASSIGN(auto none, bus.Recent(0, 100, ""));
  EXPECT_TRUE(none.empty());

  // The store fails.
  ASSERT_OK(Execute(this->store(), "DROP TABLE outbox"));
  Status failed = bus.Publish("seg-1", MakeCloudEvent(kUpdated, "seg-1", json::object()));
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(subscriber_calls, 0);
  EXPECT_EQ(listener_calls, 0);
  auto recent = bus.Recent(0, 100, "");
  EXPECT_FALSE(recent.ok());
  auto purged = bus.Purge(common::NowMillis());
  EXPECT_FALSE(purged.ok());
}

TYPED_TEST(OutboxEventBusTest, RecentPagesByTypeAndShowsWhatWasRelayed) {
  OutboxEventBus bus(this->store());
  std::vector<int64_t> all, updated;
  bus.Subscribe([&](const ProducedEvent& produced) {
    all.push_back(produced.sequence);
    if (produced.event["type"] == kUpdated) updated.push_back(produced.sequence);
  });
  for (int event_idx = 0; event_idx < 7; ++event_idx) {
    const std::string key = "entity-" + std::to_string(event_idx);
    const char* type = event_idx % 2 == 0 ? kUpdated : kGenerated;
    ASSERT_OK(bus.Publish(key, MakeCloudEvent(type, key, {{"n", event_idx}})));
  }
  ASSERT_EQ(all.size(), 7u);
  // Pages of 3 by `after`.
  std::vector<int64_t> paged;
  int64_t after = 0;
  for (int page_idx = 0; page_idx < 10; ++page_idx) {
    ASSERT_OK_AND_ASSIGN(auto page, bus.Recent(after, 3, ""));
    if (page.empty()) break;
    EXPECT_LE(page.size(), 3u);
    for (const auto& produced : page) paged.push_back(produced.sequence);
    after = page.back().sequence;
  }
  EXPECT_EQ(paged, all);
  ASSERT_OK_AND_ASSIGN(auto of_type, bus.Recent(0, 100, kUpdated));
  EXPECT_EQ(Sequences(of_type), updated);
  for (const auto& produced : of_type) EXPECT_EQ(produced.event["type"], kUpdated);
  ASSERT_OK_AND_ASSIGN(auto of_type_after, bus.Recent(updated[1], 1, kUpdated));
  EXPECT_EQ(Sequences(of_type_after), std::vector<int64_t>{updated[2]});

  // What the relay marks delivered shows up with its time; the rest stays pending.
  ASSERT_OK(this->store().MarkOutboxRelayed({all[0], all[3]}, 1700000000123));
  ASSERT_OK_AND_ASSIGN(auto recent, bus.Recent(0, 100, ""));
  ASSERT_EQ(recent.size(), 7u);
  for (size_t event_idx = 0; event_idx < recent.size(); ++event_idx) {
    const bool relayed = event_idx == 0 || event_idx == 3;
    EXPECT_EQ(recent[event_idx].relayed_at_ms, relayed ? std::optional<int64_t>(1700000000123) : std::nullopt)
        << event_idx;
    EXPECT_EQ(recent[event_idx].event["data"]["n"], event_idx);
  }
  ASSERT_OK_AND_ASSIGN(int64_t pending, bus.Pending());
  EXPECT_EQ(pending, 5);
}

TYPED_TEST(OutboxEventBusTest, PurgeFollowsTheRetentionAndKeepsUndeliveredRecordsWhenARelayRuns) {
  OutboxEventBus with_relay(this->store(), {.retention_ms = 60000, .only_relayed = true});
  OutboxEventBus embedded(this->store(), {.retention_ms = 60000, .only_relayed = false});
  std::vector<int64_t> sequences;
  with_relay.Subscribe([&](const ProducedEvent& produced) { sequences.push_back(produced.sequence); });
  for (const char* key : {"rep-1", "rep-2", "rep-3"}) {
    ASSERT_OK(with_relay.Publish(key, MakeCloudEvent(kGenerated, key, json::object())));
  }
  ASSERT_EQ(sequences.size(), 3u);
  ASSERT_OK(this->store().MarkOutboxRelayed({sequences[0]}, common::NowMillis()));
  const int64_t now_ms = common::NowMillis();

  // Younger than the retention: nothing goes.
  ASSERT_OK_AND_ASSIGN(int64_t purged, with_relay.Purge(now_ms));
  EXPECT_EQ(purged, 0);
  ASSERT_OK_AND_ASSIGN(purged, embedded.Purge(now_ms));
  EXPECT_EQ(purged, 0);
  // Older: with a relay only the delivered one goes; without, every one.
  ASSERT_OK_AND_ASSIGN(purged, with_relay.Purge(now_ms + 120000));
  EXPECT_EQ(purged, 1);
  ASSERT_OK_AND_ASSIGN(auto left, with_relay.Recent(0, 100, ""));
  EXPECT_EQ(Sequences(left), (std::vector<int64_t>{sequences[1], sequences[2]}));
  ASSERT_OK_AND_ASSIGN(int64_t pending, with_relay.Pending());
  EXPECT_EQ(pending, 2);
  ASSERT_OK_AND_ASSIGN(purged, embedded.Purge(now_ms + 120000));
  EXPECT_EQ(purged, 2);
  ASSERT_OK_AND_ASSIGN(left, embedded.Recent(0, 100, ""));
  EXPECT_TRUE(left.empty());
}

TYPED_TEST(OutboxEventBusTest, TheTopicIsTheConfiguredOne) {
  EXPECT_EQ(OutboxEventBus(this->store()).Topic(), "com.platform.analytics.events.v1");
  EXPECT_EQ(OutboxEventBus(this->store(), {.topic = "e2e.produced"}).Topic(), "e2e.produced");
}

TYPED_TEST(OutboxEventBusTest, AStoredEventThatIsNotJsonIsCorruptionNamingItsSequence) {
  OutboxEventBus bus(this->store());
  ASSERT_OK(bus.Publish("seg-1", MakeCloudEvent(kUpdated, "seg-1", json::object())));
  ASSERT_OK_AND_ASSIGN(int64_t sequence, this->store().AppendOutbox("seg-2", kUpdated, "{not json", 0));
  ASSERT_OK_AND_ASSIGN(auto first, bus.Recent(0, 1, ""));  // the page before it still reads
  EXPECT_EQ(first.size(), 1u);
  auto recent = bus.Recent(0, 100, "");
  ASSERT_FALSE(recent.ok());
  EXPECT_EQ(recent.status().code(), StatusCode::kCorruption);
  EXPECT_NE(recent.status().message().find(std::to_string(sequence)), std::string::npos) << recent.status().ToString();
}

}  // namespace
}  // namespace analytics::bus
