// query::UserScope over the embedded store: Aggregate, ReadTimeline and Sessions restricted to a set of users, and
// the store's dense user ids (UserIds / UserNames). Generated data (src/gen) through the intake's normalizer, in
// segments with parts (format 4) and in the memtable.
// Every scoped answer is compared with an answer computed another way: the same query without a scope and with
// the condition `user_id in [the scope's pseudonyms]` (the engine's own filter, which reads the user column, so
// neither the part skipping nor the fast path), the unscoped timeline with the other users' rows dropped here, and
// for counts and sessions a plain reference over the raw events appended.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "query/aggregate.h"
#include "query/sessions.h"
#include "query/timeline.h"
#include "query/user_scope.h"
#include "store/embedded/embedded_event_store.h"
#include "store/embedded/segment.h"
#include "store/embedded/segment_reader.h"
#include "support/session_reference.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using json = nlohmann::json;
using query::kNoUser;
using query::Roaring;
using store::EmbeddedEventStore;

constexpr int64_t kDay = 86400000;
constexpr int64_t kHour = 3600000;
constexpr const char* kPageViewed = "com.platform.store.page.viewed.v1";
constexpr const char* kCartItemAdded = "com.platform.cart.item.added.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr const char* kRefund = "com.platform.payments.refund.completed.v1";
constexpr const char* kSessionStarted = "com.platform.library.session.started.v1";
constexpr const char* kSessionEnded = "com.platform.library.session.ended.v1";

// One appended event as the references read it.
struct Raw {
  std::string user;
  int64_t time_ms = 0;
  std::string type;
  std::string game_id;
  std::string session_id;
};

Raw RawOf(const events::EventView& event) {
  return {std::string(event.user), event.time_ms, std::string(event.type), std::string(event.game_id),
          std::string(event.session_id)};
}

int64_t StartOf(const std::string& date) {
  auto time = common::ParseRfc3339Millis(date + "T00:00:00Z");
  EXPECT_TRUE(time.ok()) << date;
  return time.ok() ? *time : 0;
}

// --- Scopes ----------------------------------------------------------------------------------------------------

// A named scope: its users as pseudonyms (for the reference's filter) and as the store's ids.
struct NamedScope {
  std::string name;
  std::vector<std::string> users;  // pseudonyms, sorted
  query::UserScope scope;
};

NamedScope MakeScope(store::EventStore& store, const std::string& name, std::vector<std::string> users,
                     bool with_no_user = false) {
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  auto ids = store.UserIds(users);
  EXPECT_TRUE(ids.ok()) << ids.status().ToString();
  auto bitmap = std::make_shared<Roaring>();
  if (ids.ok()) {
    for (uint32_t id : *ids) {
      EXPECT_NE(id, kNoUser);
      bitmap->add(id);
    }
  }
  if (with_no_user) bitmap->add(kNoUser);  // never matches an event without a user
  return {name, std::move(users), query::UserScope{"test:" + name, std::move(bitmap)}};
}

// Every user of `raw` (events without a user left out), sorted.
std::vector<std::string> UsersOf(const std::vector<Raw>& raw) {
  std::set<std::string> users;
  for (const Raw& event : raw) {
    if (!event.user.empty()) users.insert(event.user);
  }
  return {users.begin(), users.end()};
}

// The scopes every comparison runs over: empty, the busiest user, a random tenth, everyone (also with kNoUser in
// the bitmap), and users the store knows but who have no event.
std::vector<NamedScope> StandardScopes(store::EventStore& store, const std::vector<Raw>& raw, uint32_t seed) {
  const std::vector<std::string> everyone = UsersOf(raw);
  std::map<std::string, size_t> events_of;
  for (const Raw& event : raw) {
    if (!event.user.empty()) ++events_of[event.user];
  }
  std::string busiest;
  size_t most = 0;
  for (const auto& [user, count] : events_of) {
    if (count > most) {
      most = count;
      busiest = user;
    }
  }
  std::mt19937 random(seed);
  std::vector<std::string> tenth;
  for (const std::string& user : everyone) {
    if (random() % 10 == 0) tenth.push_back(user);
  }
  std::vector<NamedScope> scopes;
  scopes.push_back(MakeScope(store, "empty", {}));
  scopes.push_back(MakeScope(store, "one", {busiest}));
  scopes.push_back(MakeScope(store, "tenth", tenth));
  scopes.push_back(MakeScope(store, "everyone", everyone));
  scopes.push_back(MakeScope(store, "everyone+none", everyone, /*with_no_user=*/true));
  scopes.push_back(MakeScope(store, "no_events", {"u_scope_test_nobody_1", "u_scope_test_nobody_2"}));
  EXPECT_FALSE(tenth.empty());
  return scopes;
}

// `filter` and `user_id in users`: the reference's way to read only the scope's users.
query::FilterExpr WithUsers(const query::FilterExpr& filter, const std::vector<std::string>& users) {
  query::PropertyFilter in_scope{"user_id", query::FilterOp::kIn, json(users)};
  return query::FilterExpr::And({filter, query::FilterExpr::Condition(in_scope)});
}

// --- Aggregate -------------------------------------------------------------------------------------------------

void ExpectSameCells(const query::AggregateResult& got, const query::AggregateResult& want) {
  ASSERT_EQ(got.groups.size(), want.groups.size());
  for (auto got_it = got.groups.begin(), want_it = want.groups.begin(); got_it != got.groups.end();
       ++got_it, ++want_it) {
    ASSERT_EQ(got_it->first, want_it->first);
    ASSERT_EQ(got_it->second.size(), want_it->second.size());
    for (size_t bucket = 0; bucket < got_it->second.size(); ++bucket) {
      SCOPED_TRACE("bucket " + std::to_string(bucket));
      const query::AggregateCell& a = got_it->second[bucket];
      const query::AggregateCell& b = want_it->second[bucket];
      EXPECT_DOUBLE_EQ(a.weighted_count, b.weighted_count);
      EXPECT_DOUBLE_EQ(a.weighted_sum, b.weighted_sum);
      EXPECT_EQ(a.value_count, b.value_count);
      EXPECT_DOUBLE_EQ(a.value_sum, b.value_sum);
      EXPECT_EQ(a.min, b.min);
      EXPECT_EQ(a.max, b.max);
      EXPECT_TRUE(a.users.ToRoaring() == b.users.ToRoaring())
          << a.users.cardinality() << " users, want " << b.users.cardinality();
      std::vector<double> got_values = a.values, want_values = b.values;
      std::sort(got_values.begin(), got_values.end());
      std::sort(want_values.begin(), want_values.end());
      EXPECT_EQ(got_values, want_values);
    }
  }
  EXPECT_EQ(got.rows_read, want.rows_read);
  if (got.rows_read > 0) {
    EXPECT_EQ(got.newest_event_ms, want.newest_event_ms);
  }
}

std::shared_ptr<const query::AggregateResult> AggregateOf(store::EventStore& store, const query::AggregateQuery& query) {
  auto result = store.Aggregate(query);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? *result : std::make_shared<const query::AggregateResult>();
}

// The queries the comparisons ask, over the generated period starting at `start_ms` (`days` days).
std::vector<std::pair<std::string, query::AggregateQuery>> AggregateQueries(int64_t start_ms, int days) {
  std::vector<std::pair<std::string, query::AggregateQuery>> queries;
  // Counts and distinct users per day, every type (each part in one bucket: the fast path when all its users are
  // in scope).
  query::AggregateQuery counts;
  counts.weights = {{kPurchase, 3.0}};
  for (int day = 0; day <= days; ++day) counts.bounds.push_back(start_ms + day * kDay);
  counts.collect_users = true;
  queries.emplace_back("counts", counts);
  // The same without users: counts only.
  query::AggregateQuery rows_only = counts;
  rows_only.collect_users = false;
  queries.emplace_back("rows", rows_only);
  // Revenue per game, with a cut first day: sums, min/max, values and users per week.
  query::AggregateQuery revenue;
  revenue.event_types = {kPurchase, kRefund};
  revenue.value_property = "amount";
  revenue.group_by = {"game_id"};
  revenue.collect_users = true;
  revenue.collect_values = true;
  revenue.bounds = {start_ms + kDay + 5 * kHour, start_ms + 8 * kDay, start_ms + 15 * kDay, start_ms + days * kDay};
  queries.emplace_back("revenue", revenue);
  // A filtered, grouped count in six-hour buckets over a few days.
  query::AggregateQuery sessions;
  sessions.event_types = {kSessionStarted};
  sessions.filter = query::FilterExpr::Condition({"platform", query::FilterOp::kNe, "windows"});
  sessions.group_by = {"country"};
  for (int64_t time = start_ms + 10 * kDay; time <= start_ms + 13 * kDay; time += 6 * kHour) {
    sessions.bounds.push_back(time);
  }
  queries.emplace_back("sessions", sessions);
  return queries;
}

// Per day: events (purchases weigh 3) and distinct users of `raw` whose user is in `users`.
std::map<int64_t, std::pair<double, std::set<std::string>>> ReferenceCounts(const std::vector<Raw>& raw,
                                                                            const std::set<std::string>& users,
                                                                            int64_t start_ms, int days) {
  std::map<int64_t, std::pair<double, std::set<std::string>>> out;
  for (const Raw& event : raw) {
    if (event.user.empty() || users.count(event.user) == 0) continue;
    if (event.time_ms < start_ms || event.time_ms >= start_ms + days * kDay) continue;
    auto& [count, day_users] = out[(event.time_ms - start_ms) / kDay];
    count += event.type == kPurchase ? 3.0 : 1.0;
    day_users.insert(event.user);
  }
  return out;
}

void CheckAggregates(store::EventStore& store, const std::vector<Raw>& raw, const std::vector<NamedScope>& scopes,
                     int64_t start_ms, int days) {
  for (const auto& [query_name, unscoped] : AggregateQueries(start_ms, days)) {
    for (const NamedScope& named : scopes) {
      SCOPED_TRACE(query_name + " / " + named.name);
      query::AggregateQuery scoped = unscoped;
      scoped.scope = named.scope;
      query::AggregateQuery filtered = unscoped;
      filtered.filter = WithUsers(unscoped.filter, named.users);
      const auto got = AggregateOf(store, scoped);
      ExpectSameCells(*got, *AggregateOf(store, filtered));
      for (const auto& [group, cells] : got->groups) {
        for (const query::AggregateCell& cell : cells) {
          EXPECT_TRUE(cell.users.ToRoaring().isSubset(*named.scope.users));
        }
      }
      if (query_name != "counts") continue;
      // And against the raw events.
      const std::set<std::string> users(named.users.begin(), named.users.end());
      const auto expected = ReferenceCounts(raw, users, start_ms, days);
      auto ids = store.UserIds(std::vector<std::string>(users.begin(), users.end()));
      ASSERT_TRUE(ids.ok());
      std::map<std::string, uint32_t> id_of;
      for (size_t user_idx = 0; user_idx < users.size(); ++user_idx) {
        id_of[*std::next(users.begin(), static_cast<ptrdiff_t>(user_idx))] = (*ids)[user_idx];
      }
      auto ungrouped = got->groups.find(query::GroupKey{});
      for (int day = 0; day < days; ++day) {
        auto want = expected.find(day);
        const double want_count = want == expected.end() ? 0.0 : want->second.first;
        Roaring want_users;
        if (want != expected.end()) {
          for (const std::string& user : want->second.second) want_users.add(id_of.at(user));
        }
        if (ungrouped == got->groups.end()) {
          EXPECT_EQ(want_count, 0.0) << "day " << day;
          continue;
        }
        EXPECT_DOUBLE_EQ(ungrouped->second[static_cast<size_t>(day)].weighted_count, want_count) << "day " << day;
        EXPECT_TRUE(ungrouped->second[static_cast<size_t>(day)].users.ToRoaring() == want_users) << "day " << day;
      }
    }
  }
}

// --- Timeline --------------------------------------------------------------------------------------------------

query::TimelineQuery TimelineQueryOf(int64_t start_ms) {
  query::TimelineQuery query;
  query.selectors.resize(3);
  query.selectors[0].event_types = {kPageViewed};
  query.selectors[1].event_types = {kCartItemAdded, kPurchase};
  query.selectors[2].event_types = {kPurchase};
  query.selectors[2].filter = query::FilterExpr::Condition({"platform", query::FilterOp::kEq, "windows"});
  query.keys = {"game_id"};
  query.number_property = "amount";
  query.from_ms = start_ms + 3 * kDay + 7 * kHour;
  query.to_ms = start_ms + 15 * kDay;
  return query;
}

using TimelineRow = std::tuple<int64_t, std::string, std::string, uint32_t, double>;  // time, type, game, matches, amount

// Each user's rows of `timeline` (only those of users in `only`, when given), as texts.
std::map<uint32_t, std::vector<TimelineRow>> RowsByUser(const query::Timeline& timeline, const Roaring* only) {
  std::map<uint32_t, std::vector<TimelineRow>> out;
  for (size_t user_idx = 0; user_idx < timeline.user_count(); ++user_idx) {
    const uint32_t user = timeline.users[timeline.user_begin[user_idx]];
    if (only != nullptr && !only->contains(user)) continue;
    std::vector<TimelineRow>& rows = out[user];
    for (uint32_t row = timeline.user_begin[user_idx]; row < timeline.user_begin[user_idx + 1]; ++row) {
      const uint32_t game = timeline.keys[0][row];
      const double amount = timeline.numbers[row];
      rows.emplace_back(timeline.time_ms[row], timeline.type_names[timeline.types[row]],
                        game == query::kMissingKey ? "~" : timeline.key_values[0][game], timeline.matches[row],
                        std::isnan(amount) ? -1.0 : amount);
    }
  }
  return out;
}

std::shared_ptr<const query::Timeline> TimelineOf(store::EventStore& store, const query::TimelineQuery& query) {
  auto result = store.ReadTimeline(query);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? *result : std::make_shared<const query::Timeline>();
}

void CheckTimelines(store::EventStore& store, const std::vector<NamedScope>& scopes, int64_t start_ms) {
  const query::TimelineQuery unscoped = TimelineQueryOf(start_ms);
  const auto everyone = TimelineOf(store, unscoped);
  ASSERT_GT(everyone->rows(), 1000u);
  for (const NamedScope& named : scopes) {
    SCOPED_TRACE(named.name);
    query::TimelineQuery scoped = unscoped;
    scoped.scope = named.scope;
    const auto got = TimelineOf(store, scoped);
    const auto want = RowsByUser(*everyone, named.scope.users.get());
    EXPECT_EQ(RowsByUser(*got, nullptr), want);
    EXPECT_EQ(got->keys.size(), 1u);  // the key columns even without rows
    if (named.name == "tenth") {
      EXPECT_GT(want.size(), 5u);  // not vacuous
    }
  }
}

// --- Sessions --------------------------------------------------------------------------------------------------

query::SessionQuery SessionQueryOf(int64_t start_ms) {
  query::SessionQuery query;
  query.start_type = kSessionStarted;
  query.end_type = kSessionEnded;
  query.key_property = "session_id";
  query.group_by = {"game_id"};
  query.max_session_ms = 6 * kHour;
  query.from_ms = start_ms + kDay + 3 * kHour;
  query.to_ms = start_ms + 19 * kDay;
  query.collect_users = true;
  return query;
}

// What a query's sessions come to: the net changes of open sessions, and per group its sessions and users.
struct SessionSummary {
  NetChangeMap net;
  std::map<query::GroupKey, std::pair<uint64_t, Roaring>> groups;
  bool operator==(const SessionSummary& other) const { return net == other.net && groups == other.groups; }
};

SessionSummary Summary(const query::PairedSessions& paired) {
  SessionSummary out;
  out.net = NetChanges(paired);
  for (size_t group = 0; group < paired.groups.size(); ++group) {
    if (paired.session_counts[group] > 0) out.groups[paired.groups[group]] = {paired.session_counts[group], paired.users[group]};
  }
  return out;
}

SessionSummary Summary(const SessionsByGroup& sessions) {
  SessionSummary out;
  out.net = NetChanges(sessions);
  for (const auto& [group, list] : sessions) {
    Roaring users;
    for (const auto& session : list) users.add(std::get<2>(session));
    out.groups[group] = {list.size(), users};
  }
  return out;
}

SessionSummary SessionsOf(store::EventStore& store, const query::SessionQuery& query) {
  auto paired = store.Sessions(query);
  EXPECT_TRUE(paired.ok()) << paired.status().ToString();
  return paired.ok() ? Summary(*paired) : SessionSummary();
}

void CheckSessions(store::EventStore& store, const std::vector<Raw>& raw, const std::vector<NamedScope>& scopes,
                   int64_t start_ms) {
  const query::SessionQuery unscoped = SessionQueryOf(start_ms);
  for (const NamedScope& named : scopes) {
    SCOPED_TRACE(named.name);
    query::SessionQuery scoped = unscoped;
    scoped.scope = named.scope;
    const SessionSummary got = SessionsOf(store, scoped);
    // Ends only close sessions of their own user: keeping the starts of the scope's users keeps exactly their
    // sessions.
    query::SessionQuery filtered = unscoped;
    filtered.filter = WithUsers(unscoped.filter, named.users);
    EXPECT_TRUE(got == SessionsOf(store, filtered));
    // And the plain pairing of the raw events.
    const std::set<std::string> users(named.users.begin(), named.users.end());
    std::vector<SessionEvent> read;
    std::vector<std::string> names;
    for (const Raw& event : raw) {
      if (event.time_ms < unscoped.from_ms || event.time_ms >= unscoped.to_ms || event.session_id.empty()) continue;
      if (event.type != kSessionStarted && event.type != kSessionEnded) continue;
      if (users.count(event.user) == 0) continue;
      read.push_back({event.time_ms, event.type == kSessionStarted, 0, event.session_id, {event.game_id}});
      names.push_back(event.user);
    }
    auto ids = store.UserIds(names);
    ASSERT_TRUE(ids.ok());
    for (size_t idx = 0; idx < read.size(); ++idx) read[idx].user = (*ids)[idx];
    const SessionSummary want = Summary(ReferenceSessions(read, unscoped.max_session_ms));
    EXPECT_EQ(got.net, want.net);
    EXPECT_TRUE(got.groups == want.groups) << got.groups.size() << " groups, want " << want.groups.size();
    if (named.name == "tenth") {
      EXPECT_GT(want.groups.size(), 3u);  // not vacuous
    }
  }
}

void CheckEverything(store::EventStore& store, const std::vector<Raw>& raw, const std::vector<NamedScope>& scopes,
                     int64_t start_ms, int days) {
  {
    SCOPED_TRACE("aggregate");
    CheckAggregates(store, raw, scopes, start_ms, days);
  }
  {
    SCOPED_TRACE("timeline");
    CheckTimelines(store, scopes, start_ms);
  }
  {
    SCOPED_TRACE("sessions");
    CheckSessions(store, raw, scopes, start_ms);
  }
}

// --- Generated data, shared by the read-only tests of the suite ----------------------------------------------------

constexpr const char* kStartDate = "2024-03-04";
constexpr int kDays = 21;

GeneratedStoreOptions DataOptions(int64_t users, uint64_t seed, size_t in_segments) {
  GeneratedStoreOptions options;
  options.generator.users = users;
  options.generator.days = kDays;
  options.generator.seed = seed;
  options.generator.start_date = kStartDate;
  options.flush_every_batches = 10;
  options.flush_while_fewer_than = in_segments;
  return options;
}

class StoreUserScopeTest : public GeneratedStoreSuite<Raw> {
 protected:
  static void SetUpTestSuite() {
    // Small segments still get parts of their own for rare types (purchases, refunds): parts are skipped, cut
    // and read whole by the scope.
    store::embedded::SetMinRowsForPartsForTest(256);
    // About four fifths into segments (several per day), the rest in the memtable.
    Load(DataOptions(1500, 7, 40000), RawOf);
    scopes_ = new std::vector<NamedScope>(StandardScopes(*store_, *raw_, 3));
  }
  static void TearDownTestSuite() {
    delete scopes_;
    GeneratedStoreSuite<Raw>::TearDownTestSuite();
  }

  static inline std::vector<NamedScope>* scopes_ = nullptr;
  const int64_t start_ms_ = StartOf(kStartDate);
};

TEST_F(StoreUserScopeTest, GeneratedDataIsInSegmentsAndInMemory) {
  const json stats = store_->Stats();
  EXPECT_GT(stats["segment_events"].get<uint64_t>(), 20000u) << stats.dump();
  EXPECT_GT(stats["memtable_events"].get<uint64_t>(), 2000u) << stats.dump();
  EXPECT_TRUE(std::any_of(raw_->begin(), raw_->end(), [](const Raw& event) { return event.user.empty(); }))
      << "events without a user (never in a scope)";
}

TEST_F(StoreUserScopeTest, ScopedAggregatesEqualTheUnscopedQueryFilteredToTheScopesUsers) {
  CheckAggregates(*store_, *raw_, *scopes_, start_ms_, kDays);
}

TEST_F(StoreUserScopeTest, ScopedTimelinesHoldExactlyTheScopesUsersRows) { CheckTimelines(*store_, *scopes_, start_ms_); }

TEST_F(StoreUserScopeTest, ScopedSessionsAreTheSessionsOfTheScopesUsers) {
  CheckSessions(*store_, *raw_, *scopes_, start_ms_);
}

TEST_F(StoreUserScopeTest, ScopeOfEveryoneIsTheUnscopedAnswerLessEventsWithoutAUser) {
  const NamedScope& everyone = (*scopes_)[3];
  ASSERT_EQ(everyone.name, "everyone");
  for (const auto& [query_name, unscoped] : AggregateQueries(start_ms_, kDays)) {
    if (query_name != "revenue") continue;  // purchases always have a user
    SCOPED_TRACE(query_name);
    query::AggregateQuery scoped = unscoped;
    scoped.scope = everyone.scope;
    ExpectSameCells(*AggregateOf(*store_, scoped), *AggregateOf(*store_, unscoped));
  }
  const query::TimelineQuery unscoped_timeline = TimelineQueryOf(start_ms_);
  query::TimelineQuery scoped_timeline = unscoped_timeline;
  scoped_timeline.scope = everyone.scope;
  EXPECT_EQ(RowsByUser(*TimelineOf(*store_, scoped_timeline), nullptr),
            RowsByUser(*TimelineOf(*store_, unscoped_timeline), nullptr));
}

TEST_F(StoreUserScopeTest, CachedAnswersAreKeptPerScope) {
  std::vector<std::string> first_half, second_half;
  const std::vector<std::string> everyone = UsersOf(*raw_);
  for (size_t user_idx = 0; user_idx < everyone.size(); ++user_idx) {
    (user_idx % 2 == 0 ? first_half : second_half).push_back(everyone[user_idx]);
  }
  const NamedScope even = MakeScope(*store_, "cache-even", first_half);
  const NamedScope odd = MakeScope(*store_, "cache-odd", second_half);
  const query::AggregateQuery unscoped = AggregateQueries(start_ms_, kDays)[0].second;
  auto hits = [&] { return store_->Stats()["query_cache_hits"].get<uint64_t>(); };

  // Aggregate: asked twice (the second from the cache), then with another scope, then without one.
  const auto before = AggregateOf(*store_, unscoped);
  query::AggregateQuery scoped = unscoped;
  scoped.scope = even.scope;
  const auto first = AggregateOf(*store_, scoped);
  const uint64_t hits_before = hits();
  const auto second = AggregateOf(*store_, scoped);
  EXPECT_GT(hits(), hits_before);
  ExpectSameCells(*second, *first);
  scoped.scope = odd.scope;
  const auto other = AggregateOf(*store_, scoped);
  query::AggregateQuery filtered = unscoped;
  filtered.filter = WithUsers(unscoped.filter, odd.users);
  ExpectSameCells(*other, *AggregateOf(*store_, filtered));
  const auto& even_day = first->groups.at(query::GroupKey{})[2];
  const auto& odd_day = other->groups.at(query::GroupKey{})[2];
  EXPECT_NE(even_day.weighted_count, odd_day.weighted_count);
  EXPECT_FALSE(even_day.users.ToRoaring().intersect(odd_day.users.ToRoaring()));
  ExpectSameCells(*AggregateOf(*store_, unscoped), *before);

  // Timeline: the same.
  const query::TimelineQuery unscoped_timeline = TimelineQueryOf(start_ms_);
  query::TimelineQuery timeline = unscoped_timeline;
  timeline.scope = even.scope;
  const auto even_rows = RowsByUser(*TimelineOf(*store_, timeline), nullptr);
  const uint64_t timeline_hits = hits();
  EXPECT_EQ(RowsByUser(*TimelineOf(*store_, timeline), nullptr), even_rows);
  EXPECT_GT(hits(), timeline_hits);
  timeline.scope = odd.scope;
  const auto everyone_timeline = TimelineOf(*store_, unscoped_timeline);
  EXPECT_EQ(RowsByUser(*TimelineOf(*store_, timeline), nullptr), RowsByUser(*everyone_timeline, odd.scope.users.get()));
  EXPECT_EQ(even_rows, RowsByUser(*everyone_timeline, even.scope.users.get()));

  // Sessions: the same.
  const query::SessionQuery unscoped_sessions = SessionQueryOf(start_ms_);
  query::SessionQuery sessions = unscoped_sessions;
  sessions.scope = even.scope;
  const SessionSummary even_sessions = SessionsOf(*store_, sessions);
  const uint64_t session_hits = hits();
  EXPECT_TRUE(SessionsOf(*store_, sessions) == even_sessions);
  EXPECT_GT(hits(), session_hits);
  sessions.scope = odd.scope;
  const SessionSummary odd_sessions = SessionsOf(*store_, sessions);
  query::SessionQuery filtered_sessions = unscoped_sessions;
  filtered_sessions.filter = WithUsers(unscoped_sessions.filter, odd.users);
  EXPECT_TRUE(odd_sessions == SessionsOf(*store_, filtered_sessions));
  EXPECT_FALSE(odd_sessions == even_sessions);
}

TEST_F(StoreUserScopeTest, AOneOffScopeIsAnsweredButLeavesNothingInTheCache) {
  NamedScope once = MakeScope(*store_, "once", (*scopes_)[2].users);
  once.scope.cache = false;
  const std::vector<NamedScope> scopes = {once};
  auto cache_bytes = [&] { return store_->Stats()["query_cache_bytes"].get<uint64_t>(); };
  const uint64_t before = cache_bytes();
  CheckAggregates(*store_, *raw_, scopes, start_ms_, kDays);
  // (The references, unscoped, may be cached: the scoped answers alone are asked again below.)
  const uint64_t after_references = cache_bytes();
  EXPECT_GE(after_references, before);
  for (int round = 0; round < 2; ++round) {
    for (const auto& [query_name, unscoped] : AggregateQueries(start_ms_, kDays)) {
      query::AggregateQuery scoped = unscoped;
      scoped.scope = once.scope;
      EXPECT_OK(store_->Aggregate(scoped));
    }
    query::TimelineQuery timeline = TimelineQueryOf(start_ms_);
    timeline.scope = once.scope;
    EXPECT_OK(store_->ReadTimeline(timeline));
    query::SessionQuery sessions = SessionQueryOf(start_ms_);
    sessions.scope = once.scope;
    EXPECT_OK(store_->Sessions(sessions));
    EXPECT_EQ(cache_bytes(), after_references);
  }
  CheckTimelines(*store_, scopes, start_ms_);
  CheckSessions(*store_, *raw_, scopes, start_ms_);
}

TEST_F(StoreUserScopeTest, UnscopedFingerprintsAreUnchangedAndAScopeIsAppended) {
  query::AggregateQuery aggregate;
  aggregate.event_types = {"t"};
  aggregate.weights = {{"t", 2.0}};
  aggregate.group_by = {"game_id"};
  aggregate.value_property = "amount";
  aggregate.collect_users = true;
  EXPECT_EQ(aggregate.Fingerprint(),
            R"({"filter":"true","group_by":["game_id"],"types":["t"],"users":true,"value":"amount",)"
            R"("values":false,"weights":{"t":2.0}})");
  query::TimelineQuery timeline;
  timeline.selectors.resize(1);
  timeline.selectors[0].event_types = {"t"};
  timeline.keys = {"game_id"};
  EXPECT_EQ(timeline.Fingerprint(),
            R"({"filter":"true","keys":["game_id"],"number":"","selectors":[{"filter":"true","types":["t"]}]})");
  query::SessionQuery sessions;
  sessions.start_type = "s";
  sessions.end_type = "e";
  sessions.key_property = "session_id";
  EXPECT_EQ(sessions.Fingerprint(), R"({"end":"e","filter":"true","group_by":[],"key":"session_id","start":"s"})");

  const query::UserScope scope{"segment:42|v3", std::make_shared<Roaring>()};
  const std::string suffix = "|scope=13:segment:42|v3";
  const std::string plain_aggregate = aggregate.Fingerprint(), plain_timeline = timeline.Fingerprint(),
                    plain_sessions = sessions.Fingerprint();
  aggregate.scope = timeline.scope = sessions.scope = scope;
  EXPECT_EQ(aggregate.Fingerprint(), plain_aggregate + suffix);
  EXPECT_EQ(timeline.Fingerprint(), plain_timeline + suffix);
  EXPECT_EQ(sessions.Fingerprint(), plain_sessions + suffix);
}

TEST_F(StoreUserScopeTest, UserIdsAndNamesRoundTrip) {
  const std::vector<std::string> everyone = UsersOf(*raw_);
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> ids, store_->UserIds(everyone));
  ASSERT_EQ(ids.size(), everyone.size());
  EXPECT_EQ(std::set<uint32_t>(ids.begin(), ids.end()).size(), ids.size());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kNoUser), 0);
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> names, store_->UserNames(ids));
  EXPECT_EQ(names, everyone);
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> again, store_->UserIds(everyone));
  EXPECT_EQ(again, ids);  // stable

  // The ids are the ones queries hand out: a timeline's users are named by them.
  const auto timeline = TimelineOf(*store_, TimelineQueryOf(start_ms_));
  std::vector<uint32_t> timeline_users;
  for (size_t user_idx = 0; user_idx < timeline->user_count(); ++user_idx) {
    timeline_users.push_back(timeline->users[timeline->user_begin[user_idx]]);
  }
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> timeline_names, store_->UserNames(timeline_users));
  for (const std::string& name : timeline_names) EXPECT_TRUE(std::binary_search(everyone.begin(), everyone.end(), name)) << name;

  // Unknown pseudonyms are registered (new, distinct ids); "" is kNoUser; ids never given out have no name.
  const std::vector<std::string> fresh = {"u_round_trip_a", "", "u_round_trip_b", "u_round_trip_a"};
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> fresh_ids, store_->UserIds(fresh));
  ASSERT_EQ(fresh_ids.size(), 4u);
  EXPECT_EQ(fresh_ids[1], kNoUser);
  EXPECT_EQ(fresh_ids[0], fresh_ids[3]);
  EXPECT_NE(fresh_ids[0], fresh_ids[2]);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), fresh_ids[0]), 0);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), fresh_ids[2]), 0);
  const std::vector<uint32_t> asked = {fresh_ids[0], fresh_ids[2], kNoUser, 1u << 30, fresh_ids[2] + 1000000};
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> fresh_names, store_->UserNames(asked));
  EXPECT_EQ(fresh_names, (std::vector<std::string>{"u_round_trip_a", "u_round_trip_b", "", "", ""}));
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> none, store_->UserNames({}));
  EXPECT_TRUE(none.empty());

  // Many at once (the directory grows while registering them).
  std::vector<std::string> many;
  for (int user_idx = 0; user_idx < 100000; ++user_idx) many.push_back("u_many_" + std::to_string(user_idx));
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> many_ids, store_->UserIds(many));
  EXPECT_EQ(std::set<uint32_t>(many_ids.begin(), many_ids.end()).size(), many.size());
  ASSERT_OK_AND_ASSIGN(const std::vector<std::string> many_names, store_->UserNames(many_ids));
  EXPECT_EQ(many_names, many);
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> many_again, store_->UserIds(many));
  EXPECT_EQ(many_again, many_ids);
}

// --- Dropping user runs from decoded columns ----------------------------------------------------------------------

// Ten rows in four user runs ("" 2, a 3, b 1, c 4), each per-row column holding the row's index.
store::embedded::SegmentColumns TenRows() {
  store::embedded::SegmentColumns columns;
  columns.rows = 10;
  columns.users = {"", "u_a", "u_b", "u_c"};
  columns.user_runs = {2, 3, 1, 4};
  columns.user_codes = {0, 0, 1, 1, 1, 2, 3, 3, 3, 3};
  columns.type.dictionary = {"t"};
  store::embedded::PropertyColumn property;
  property.name = "p";
  for (int64_t row = 0; row < 10; ++row) {
    columns.time_ms.push_back(row);
    columns.type.codes.push_back(0);
    columns.game_id.codes.push_back(static_cast<uint32_t>(row));
    columns.amount.push_back(static_cast<double>(row));
    property.kinds.push_back(store::embedded::ValueKind::kInt);
    property.ints.push_back(row);
    property.doubles.push_back(static_cast<double>(row));
  }
  columns.properties.push_back(property);
  return columns;
}

void ExpectRows(const store::embedded::SegmentColumns& columns, const std::vector<int64_t>& rows) {
  EXPECT_EQ(columns.rows, rows.size());
  EXPECT_EQ(columns.time_ms, rows);
  EXPECT_EQ(columns.properties[0].ints, rows);
  ASSERT_EQ(columns.amount.size(), rows.size());
  ASSERT_EQ(columns.game_id.codes.size(), rows.size());
  for (size_t idx = 0; idx < rows.size(); ++idx) {
    EXPECT_EQ(columns.amount[idx], static_cast<double>(rows[idx]));
    EXPECT_EQ(columns.game_id.codes[idx], static_cast<uint32_t>(rows[idx]));
  }
  EXPECT_EQ(columns.type.codes.size(), rows.size());
  EXPECT_EQ(columns.user_codes.size(), rows.size());
}

TEST(KeepRunsTest, KeepsWholeRunsOfEveryColumnAndRenumbersTheUsers) {
  auto columns = TenRows();
  ASSERT_TRUE(store::embedded::KeepRuns(columns, {1, 0, 1, 1}));
  ExpectRows(columns, {0, 1, 5, 6, 7, 8, 9});
  EXPECT_EQ(columns.users, (std::vector<std::string>{"", "u_b", "u_c"}));
  EXPECT_EQ(columns.user_runs, (std::vector<uint32_t>{2, 1, 4}));
  EXPECT_EQ(columns.user_codes, (std::vector<uint32_t>{0, 0, 1, 2, 2, 2, 2}));

  columns = TenRows();
  ASSERT_TRUE(store::embedded::KeepRuns(columns, {0, 1, 0, 1}));
  ExpectRows(columns, {2, 3, 4, 6, 7, 8, 9});
  EXPECT_EQ(columns.users, (std::vector<std::string>{"u_a", "u_c"}));
  EXPECT_EQ(columns.user_codes, (std::vector<uint32_t>{0, 0, 0, 1, 1, 1, 1}));

  columns = TenRows();
  ASSERT_TRUE(store::embedded::KeepRuns(columns, {1, 1, 1, 1}));
  ExpectRows(columns, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(columns.users, TenRows().users);

  columns = TenRows();
  ASSERT_TRUE(store::embedded::KeepRuns(columns, {0, 0, 0, 0}));
  ExpectRows(columns, {});
  EXPECT_TRUE(columns.users.empty());
  EXPECT_TRUE(columns.user_runs.empty());

  columns = TenRows();
  columns.user_runs = {2, 3, 1, 3};  // one row short
  EXPECT_FALSE(store::embedded::KeepRuns(columns, {1, 0, 1, 1}));
  EXPECT_EQ(columns.rows, 10u);
  EXPECT_FALSE(store::embedded::KeepRuns(columns, {1, 0}));
}

TEST(KeepRunsTest, ExcludedUsersLoseTheirRunsAndTheOthersKeepTheirNames) {
  auto columns = TenRows();
  store::embedded::ExcludeUsers(columns, {"u_a"});
  ExpectRows(columns, {0, 1, 5, 6, 7, 8, 9});
  EXPECT_EQ(columns.users, (std::vector<std::string>{"", "u_b", "u_c"}));
  columns = TenRows();
  store::embedded::ExcludeUsers(columns, {"u_c", "u_b"});
  ExpectRows(columns, {0, 1, 2, 3, 4});
  EXPECT_EQ(columns.users, (std::vector<std::string>{"", "u_a"}));
}

// --- A store of its own: flushes, compaction, erasure -----------------------------------------------------------

TEST(StoreUserScopeLifecycleTest, ScopesStayRightAfterFlushCompactionErasureAndPurge) {
  store::embedded::SetMinRowsForPartsForTest(256);
  std::vector<Raw> raw;
  auto data = GeneratedStore::Create(DataOptions(600, 19, 15000), [&](const events::EventView& event) {
    raw.push_back(RawOf(event));
  });
  ASSERT_NE(data, nullptr);
  EmbeddedEventStore& store = data->store();
  const int64_t start_ms = StartOf(kStartDate);
  std::vector<NamedScope> scopes = StandardScopes(store, raw, 5);
  {
    SCOPED_TRACE("memtable and segments");
    CheckEverything(store, raw, scopes, start_ms, kDays);
  }
  ASSERT_OK(store.Flush());
  {
    SCOPED_TRACE("all in segments");
    CheckEverything(store, raw, scopes, start_ms, kDays);
  }
  ASSERT_OK(store.RunMaintenance());
  EXPECT_GT(store.Stats()["compactions"].get<uint64_t>(), 0u);
  {
    SCOPED_TRACE("after compaction");
    CheckEverything(store, raw, scopes, start_ms, kDays);
  }
  // A user of the scope is erased: their rows leave every answer at once (pending purge), and after the purge.
  const NamedScope& tenth = scopes[2];
  ASSERT_EQ(tenth.name, "tenth");
  ASSERT_FALSE(tenth.users.empty());
  const std::string erased = tenth.users.front();
  ASSERT_OK(store.EraseUser(erased));
  std::erase_if(raw, [&](const Raw& event) { return event.user == erased; });
  ASSERT_OK_AND_ASSIGN(const std::vector<uint32_t> erased_id, store.UserIds({erased}));
  {
    SCOPED_TRACE("erased, purge pending");
    // The scopes still name the erased user: the reference filter does too, so both must leave them out.
    CheckEverything(store, raw, scopes, start_ms, kDays);
    query::AggregateQuery counts = AggregateQueries(start_ms, kDays)[0].second;
    counts.scope = tenth.scope;
    for (const auto& [group, cells] : AggregateOf(store, counts)->groups) {
      for (const auto& cell : cells) EXPECT_FALSE(cell.users.ToRoaring().contains(erased_id[0]));
    }
  }
  ASSERT_OK(store.RunMaintenance());
  EXPECT_EQ(store.Stats()["purge_pending_users"].get<uint64_t>(), 0u);
  {
    SCOPED_TRACE("erased and purged");
    CheckEverything(store, raw, scopes, start_ms, kDays);
  }
}

}  // namespace
}  // namespace analytics::testing
