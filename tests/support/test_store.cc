#include "support/test_store.h"

#include <string_view>

#include <gtest/gtest.h>

#include "common/time_util.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"

namespace analytics::testing {

store::EmbeddedEventStoreOptions TestStoreOptions(const TempDir& dir) {
  store::EmbeddedEventStoreOptions options;
  options.dir = dir.path().string();
  options.flush_interval_ms = 3600000;  // flushes only when a test asks
  options.dedup_window_ms = 3650LL * 86400000;
  options.maintenance_interval_ms = 3600000;  // compaction and retention run only when a test asks
  return options;
}

store::EmbeddedEventStoreOptions UnsyncedTestStoreOptions(const TempDir& dir) {
  store::EmbeddedEventStoreOptions options = TestStoreOptions(dir);
  options.sync = false;
  return options;
}

events::StoredEvent UserEventAt(const std::string& id, const std::string& user, const std::string& utc_time,
                                const std::string& type) {
  events::StoredEvent event;
  event.id = id;
  event.source = "/test";
  event.type = type;
  auto time = common::ParseRfc3339Millis(utc_time);
  EXPECT_TRUE(time.ok()) << utc_time;
  event.time_ms = time.ok() ? *time : 0;
  event.received_ms = event.time_ms;
  event.user = user;
  event.user_in_subject = true;
  return event;
}

std::unique_ptr<GeneratedStore> GeneratedStore::Create(const GeneratedStoreOptions& options,
                                                       const std::function<void(const events::EventView&)>& record) {
  std::unique_ptr<GeneratedStore> generated(new GeneratedStore());
  auto opened = store::EmbeddedEventStore::Open(UnsyncedTestStoreOptions(generated->dir_));
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  if (!opened.ok()) return nullptr;
  generated->store_ = std::move(opened).value();
  generated->Fill(options, record);
  return generated;
}

void GeneratedStore::Fill(const GeneratedStoreOptions& options,
                          const std::function<void(const events::EventView&)>& record) {
  auto pseudonymizer = events::Pseudonymizer::Create(std::string(32, options.pseudonymizer_key));
  ASSERT_TRUE(pseudonymizer.ok());
  events::Normalizer normalizer({}, **pseudonymizer);
  std::string body;
  size_t in_body = 0;
  uint64_t batches = 0;
  size_t appended = 0;
  auto append = [&] {
    auto result = normalizer.Process(body, events::BodyFormat::kNdjson, common::NowMillis());
    ASSERT_TRUE(result.rejections.empty()) << result.rejections.size() << " rejected";
    for (const events::EventView& event : result.events) {
      record(event);
      ++appended;
    }
    auto stored = store_->Append(std::move(result.events));
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    body.clear();
    in_body = 0;
    if (++batches % options.flush_every_batches == 0 && appended < options.flush_while_fewer_than) {
      ASSERT_TRUE(store_->Flush().ok());
    }
  };
  gen::Generate(options.generator, [&](std::string_view line) {
    body.append(line);
    body.push_back('\n');
    if (++in_body == 1000) append();
  });
  if (!body.empty()) append();
}

query::UserScopeResolver TestSegments(store::EventStore& store, const std::set<std::string>& members) {
  auto ids = store.UserIds(std::vector<std::string>(members.begin(), members.end()));
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  auto users = std::make_shared<query::Roaring>();
  if (ids.ok()) {
    for (uint32_t id : *ids) users->add(id);
  }
  const query::UserScope scope{"test-members", std::move(users)};
  return [scope](const std::string& id) -> common::Result<query::UserScope> {
    if (id == "members") return scope;
    if (id == "pending") return common::Status::FailedPrecondition("segment 'pending' has not been refreshed yet");
    return common::Status::NotFound("segment '" + id + "' does not exist");
  };
}

}  // namespace analytics::testing
