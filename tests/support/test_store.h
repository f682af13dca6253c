// Embedded event stores for tests: the options of a store a test drives by hand, and a store loaded with the
// generator's events (src/gen) through the intake's normalizer, which the tests of a suite share.
// Thread-safety: GeneratedStore is filled on the calling thread; afterwards its store is as thread-safe as
// EmbeddedEventStore.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "events/event.h"
#include "events/event_rows.h"
#include "gen/generator.h"
#include "query/user_scope.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"

namespace analytics::testing {

// The segment service of the tests: segment "members" is `members` (pseudonyms, as the store's ids), "pending" is
// not materialized yet, any other id names no segment.
query::UserScopeResolver TestSegments(store::EventStore& store, const std::set<std::string>& members);

// About a third of the users of `events` (anything with a `user` member), drawn with `seed`: a segment's members.
template <typename Event>
std::set<std::string> SomeUsers(const std::vector<Event>& events, uint64_t seed) {
  std::set<std::string> users;
  for (const Event& event : events) {
    if (!event.user.empty()) users.insert(event.user);
  }
  std::mt19937_64 rng(seed);
  std::set<std::string> members;
  for (const std::string& user : users) {
    if (rng() % 3 == 0) members.insert(user);
  }
  return members;
}

// Options for an embedded store in `dir` that a test drives by hand: it flushes, compacts and applies retention
// only when the test asks, and its dedup window (ten years) spans every event time the tests use. WAL sync keeps
// the store's default (on).
store::EmbeddedEventStoreOptions TestStoreOptions(const TempDir& dir);

// TestStoreOptions with WAL sync off.
store::EmbeddedEventStoreOptions UnsyncedTestStoreOptions(const TempDir& dir);

// A hand-made event `id` of `user` at `utc_time` (RFC 3339; a malformed time fails the test and gives 0): source
// "/test", received at its time, the user named in the subject, no other properties.
events::StoredEvent UserEventAt(const std::string& id, const std::string& user, const std::string& utc_time,
                                const std::string& type);

// What GeneratedStore generates and when it flushes.
struct GeneratedStoreOptions {
  gen::GeneratorOptions generator;
  char pseudonymizer_key = 'k';        // the pseudonymizer's secret is 32 times this character
  uint64_t flush_every_batches = 25;   // flush after every this many appended batches (of 1000 lines) ...
  size_t flush_while_fewer_than = 0;   // ... while fewer events than this have been appended
};

// An embedded store in its own temp dir (UnsyncedTestStoreOptions) holding the generator's events: the NDJSON
// lines go through events::Normalizer (with a Pseudonymizer) in batches of 1000, each batch appended as the
// intake appends it. The flushes put most of the data in day-partitioned segments (users and days across several
// segments) and leave the rest in the memtable, so queries read both.
class GeneratedStore {
 public:
  // Opens and fills the store; `record` sees every accepted event before it is appended (the rows a test's
  // reference reads). A refused line, a failed append or flush is a test failure. nullptr (and a test failure)
  // when the store cannot be opened.
  static std::unique_ptr<GeneratedStore> Create(const GeneratedStoreOptions& options,
                                                const std::function<void(const events::EventView&)>& record);

  store::EmbeddedEventStore& store() { return *store_; }

 private:
  GeneratedStore() = default;
  void Fill(const GeneratedStoreOptions& options, const std::function<void(const events::EventView&)>& record);

  TempDir dir_;  // declared first: removed after the store is closed
  std::unique_ptr<store::EmbeddedEventStore> store_;
};

// A fixture whose tests share one GeneratedStore and the rows (`Row`) their reference reads: the suite's
// SetUpTestSuite calls Load; TearDownTestSuite closes and removes the store.
template <typename Row>
class GeneratedStoreSuite : public ::testing::Test {
 protected:
  // Fills the store; raw_ receives to_row(event) for every accepted event, in append order.
  static void Load(const GeneratedStoreOptions& options,
                   const std::function<Row(const events::EventView&)>& to_row) {
    raw_ = new std::vector<Row>();
    data_ = GeneratedStore::Create(options, [&](const events::EventView& event) {
      raw_->push_back(to_row(event));
    }).release();
    ASSERT_NE(data_, nullptr);
    store_ = &data_->store();
  }
  static void TearDownTestSuite() {
    delete data_;
    delete raw_;
  }

  static inline GeneratedStore* data_ = nullptr;
  static inline store::EmbeddedEventStore* store_ = nullptr;  // data_'s store
  static inline std::vector<Row>* raw_ = nullptr;
};

// The game ids of `rows` (anything with a `game_id` string) by number of rows, most first (equal counts: the
// greater id first); rows without a game are not counted.
template <typename Row>
std::vector<std::string> GamesByEvents(const std::vector<Row>& rows) {
  std::map<std::string, size_t> counts;
  for (const Row& row : rows) {
    if (!row.game_id.empty()) ++counts[row.game_id];
  }
  std::vector<std::pair<size_t, std::string>> order;
  for (const auto& [game, count] : counts) order.emplace_back(count, game);
  std::sort(order.rbegin(), order.rend());
  std::vector<std::string> games;
  for (const auto& entry : order) games.push_back(entry.second);
  return games;
}

}  // namespace analytics::testing
