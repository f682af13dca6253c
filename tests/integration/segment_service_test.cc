// SegmentService (segments/segment_service.h) and PipelineRunner (jobs/pipeline_runner.h) wired as src/app/application.cc
// wires them (RegisterJobs, Start, runner.Start; runner.Stop before service.Stop), over real embedded event stores
// and real metadata stores: SQLite (a file in a temp dir) and PostgreSQL (a fresh schema per test, dropped at
// teardown, in the database of ANALYTICS_TEST_POSTGRES_DSN, started by scripts/run-tests; a missing DSN fails the
// PostgreSQL cases). Expected members come from references computed here from the raw events with plain loops
// (UTC calendar days), never from the rule evaluator.
// Covered: refresh runs (members, contains, member pages, run documents, failures with their error, runs a stopped
// process left unfinished), the runner alone (coalescing, recovery by kind, stop, cancel, progress, pending
// counts), static segments (user ids, uploads,
// sources), persistence across a restart (member indexes reused), incremental updates (also while the first refresh
// runs), erasure, schedules, ScopeOf, in_segment references, and readers racing refreshes and uploads.
// The live (incremental) cases assume the test does not run across a UTC midnight (a new day queues a full refresh).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "bus/local/local_event_bus.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/time_util.h"
#include "events/pseudonymizer.h"
#include "jobs/pipeline_runner.h"
#include "metadata/metadata_store.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "query/user_scope.h"
#include "segments/member_index.h"
#include "segments/segment_service.h"
#include "store/embedded/embedded_event_store.h"
#include "store/event_store.h"
#include "support/gate.h"
#include "support/metadata_backends.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using common::Result;
using common::Status;
using common::StatusCode;
using json = nlohmann::json;
using metadata::MetadataStore;
using metadata::PipelineRun;
using query::Roaring;
using segments::SegmentService;
using segments::SegmentServiceOptions;

constexpr int64_t kDay = 86400000;
constexpr char kKey = 'v';  // the pseudonymizer secret: 32 times this (the generated store uses the same)
constexpr char kAdmin[] = "test-admin";
const std::string kPageView = "com.platform.store.page.viewed.v1";
const std::string kSession = "com.platform.library.session.started.v1";
// Types of the hand-made stores.
const std::string kBuy = "com.platform.test.item.bought.v1";
const std::string kRefund = "com.platform.test.item.refunded.v1";
const std::string kView = "com.platform.test.page.viewed.v1";

int64_t Ms(const std::string& text) { return common::ParseRfc3339Millis(text).value(); }
std::string Text(int64_t unix_ms) { return common::FormatRfc3339Millis(unix_ms); }
int64_t DayStartUtc(int64_t unix_ms) { return unix_ms - ((unix_ms % kDay) + kDay) % kDay; }


inline constexpr char kInjected[] = "injected: the timeline could not be read";

// Fault injection: an EventStore that forwards to another, except that ReadTimeline waits at a gate and fails with
// kInjected while FailReads(true).
class FaultyStore final : public store::EventStore {
 public:
  explicit FaultyStore(store::EventStore& base) : base_(base) {}
  Gate& gate() { return gate_; }
  void FailReads(bool fail) { fail_.store(fail); }

  using store::EventStore::Append;
  Result<store::AppendResult> Append(events::EventRows batch) override { return base_.Append(std::move(batch)); }
  Result<store::ScanResult> Scan(const store::ScanQuery& query) override { return base_.Scan(query); }
  Result<std::shared_ptr<const query::AggregateResult>> Aggregate(const query::AggregateQuery& query) override {
    return base_.Aggregate(query);
  }
  Result<query::PairedSessions> Sessions(const query::SessionQuery& query) override { return base_.Sessions(query); }
  Result<std::shared_ptr<const query::Timeline>> ReadTimeline(const query::TimelineQuery& query) override {
    gate_.Pass();
    if (fail_.load()) return Status::IOError(kInjected);
    return base_.ReadTimeline(query);
  }
  Result<std::vector<uint32_t>> UserIds(const std::vector<std::string>& users) override { return base_.UserIds(users); }
  Result<std::vector<std::string>> UserNames(const std::vector<uint32_t>& ids) override { return base_.UserNames(ids); }
  int64_t NewestEventMs() override { return base_.NewestEventMs(); }
  Result<uint64_t> EraseUser(const std::string& user, bool count_events) override {
    return base_.EraseUser(user, count_events);
  }
  Status AllowUser(const std::string& user) override { return base_.AllowUser(user); }
  Status Ping() override { return base_.Ping(); }
  json Stats() override { return base_.Stats(); }

 private:
  store::EventStore& base_;
  Gate gate_;
  std::atomic<bool> fail_{false};
};

// Services wired as application.cc wires them; stopped as it stops them (runner first: running refreshes finish,
// queued ones stay queued).
class SegmentStack {
 public:
  SegmentStack(MetadataStore& metadata, store::EventStore& store, const events::Pseudonymizer& pseudonymizer,
               SegmentServiceOptions options, segments::SourceEvaluator source = nullptr)
      : runner_(metadata), service_(metadata, store, pseudonymizer, bus_, runner_, options) {
    if (source) service_.SetSourceEvaluator(std::move(source));
  }
  ~SegmentStack() {
    runner_.Stop();
    service_.Stop();
  }
  Status Start() {
    service_.RegisterJobs();
    ANALYTICS_RETURN_IF_ERROR(service_.Start());
    return runner_.Start();
  }
  SegmentService& service() { return service_; }
  bus::LocalEventBus& bus() { return bus_; }
  jobs::PipelineRunner& runner() { return runner_; }

  // The newest sequence published so far (0 when none).
  int64_t LastSequence() {
    const auto recent = bus_.Recent(0, 100000, "").value();
    return recent.empty() ? 0 : recent.back().sequence;
  }
  // segment.updated events after `after` about `segment_id`.
  std::vector<json> UpdatesOf(const std::string& segment_id, int64_t after) {
    std::vector<json> out;
    const auto recent = bus_.Recent(after, 100000, segments::kUpdatedType).value();
    for (const auto& produced : recent) {
      if (produced.key == segment_id) out.push_back(produced.event);
    }
    return out;
  }

 private:
  bus::LocalEventBus bus_;
  jobs::PipelineRunner runner_;
  SegmentService service_;
};

SegmentServiceOptions FastOptions() {
  SegmentServiceOptions options;
  options.query_threads = 2;
  options.incremental_interval_ms = 20;
  options.schedule_check_ms = 20;
  return options;
}

// Polls the run until it is completed or failed (Internal after 30 s).
Result<PipelineRun> WaitForRun(MetadataStore& metadata, const std::string& run_id) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::string status;
  while (std::chrono::steady_clock::now() < deadline) {
    ANALYTICS_ASSIGN_OR_RETURN(PipelineRun run, metadata.GetPipelineRun(run_id));
    if (run.status == "completed" || run.status == "failed" || run.status == "cancelled") return run;
    status = run.status;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::Internal("run " + run_id + " still " + status + " after 30 s");
}

// Checks the API document of a finished run.
void ExpectRunDocument(const PipelineRun& run, const std::string& kind, const std::string& target,
                       const json& parameters, const std::string& requested_by, const std::string& status) {
  const json doc = jobs::RunToJson(run);
  EXPECT_EQ(doc["run_id"], run.id);
  EXPECT_EQ(doc["kind"], kind);
  EXPECT_EQ(doc["target"], target);
  EXPECT_EQ(doc["status"], status) << doc.dump();
  EXPECT_EQ(doc["parameters"], parameters);
  EXPECT_EQ(doc["requested_by"], requested_by);
  for (const char* field : {"created_at", "started_at", "finished_at"}) {
    ASSERT_TRUE(doc[field].is_string()) << field << " " << doc.dump();
    EXPECT_TRUE(common::ParseRfc3339Millis(doc[field].get<std::string>()).ok()) << doc[field];
  }
  EXPECT_EQ(doc["created_at"], Text(run.created_at_ms));
  EXPECT_EQ(doc["started_at"], Text(run.started_at_ms));
  EXPECT_EQ(doc["finished_at"], Text(run.finished_at_ms));
  EXPECT_LE(run.created_at_ms, run.started_at_ms);
  EXPECT_LE(run.started_at_ms, run.finished_at_ms);
  EXPECT_EQ(doc["duration_ms"], run.finished_at_ms - run.started_at_ms);
  EXPECT_EQ(doc["progress"], run.progress);
  if (status == "completed") {
    EXPECT_EQ(run.progress, 1.0);
    EXPECT_TRUE(doc["error"].is_null()) << doc.dump();
  } else {
    EXPECT_TRUE(doc["error"].is_string()) << doc.dump();
    EXPECT_TRUE(doc["result"].is_null()) << doc.dump();
  }
}

// Every member (original user ids) through Members pages of `limit`; checks the pages' shape.
std::vector<std::string> AllMembers(SegmentService& service, const std::string& id, int64_t limit = 37) {
  std::vector<std::string> users;
  std::string cursor;
  for (int page = 0; page < 100000; ++page) {
    auto doc = service.Members(id, cursor, limit, kAdmin);
    EXPECT_TRUE(doc.ok()) << doc.status().ToString();
    if (!doc.ok()) break;
    EXPECT_EQ((*doc)["segment_id"], id);
    EXPECT_LE((*doc)["users"].size(), static_cast<size_t>(limit));
    for (const auto& user : (*doc)["users"]) users.push_back(user.get<std::string>());
    if ((*doc)["next_cursor"].is_null()) break;
    EXPECT_EQ((*doc)["users"].size(), static_cast<size_t>(limit)) << "a page before the last one is full";
    cursor = (*doc)["next_cursor"].get<std::string>();
  }
  return users;
}

std::set<std::string> MemberSet(SegmentService& service, const std::string& id) {
  const std::vector<std::string> users = AllMembers(service, id);
  const std::set<std::string> set(users.begin(), users.end());
  EXPECT_EQ(set.size(), users.size()) << "a member is listed twice";
  return set;
}

int64_t UsersCountOf(SegmentService& service, const std::string& id) {
  auto doc = service.UsersCount(id);
  EXPECT_TRUE(doc.ok()) << doc.status().ToString();
  return doc.ok() ? (*doc)["users_count"].get<int64_t>() : -1;
}

bool ContainsOf(SegmentService& service, const std::string& id, const std::string& user) {
  auto doc = service.Contains(id, user);
  EXPECT_TRUE(doc.ok()) << doc.status().ToString();
  return doc.ok() && (*doc)["contains"].get<bool>();
}

std::set<std::string> Minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

json Dynamic(const std::string& name, const json& rule, std::optional<std::string> as_of = std::nullopt) {
  json body = {{"name", name}, {"type", "dynamic"}, {"rule", rule}};
  if (as_of) body["as_of"] = *as_of;
  return body;
}

json Static(const std::string& name, const std::vector<std::string>& users) {
  return {{"name", name}, {"type", "static"}, {"user_ids", users}};
}

// The generated data's rule and its reference: users with at least `min_views` store page views up to as_of and,
// when quiet_days > 0, no session start in the last `quiet_days` UTC calendar days up to as_of.
json BrowsersRule(int min_views, int quiet_days) {
  json performed = {{"performed", {{"event_type", kPageView}, {"count", {{"gte", min_views}}}}}};
  if (quiet_days == 0) return performed;
  const json quiet = {{"not_performed", {{"event_type", kSession}, {"within_days", quiet_days}}}};
  return {{"and", {performed, quiet}}};
}

struct RefEvent {
  std::string user;  // pseudonym
  std::string type;
  int64_t time_ms = 0;
};

std::set<std::string> BrowsersReference(const std::vector<RefEvent>& raw, int64_t as_of, int min_views,
                                        int quiet_days) {
  const int64_t window_from = quiet_days > 0 ? DayStartUtc(as_of) - int64_t{quiet_days - 1} * kDay : 0;
  std::map<std::string, int> views;
  std::set<std::string> recent_session;
  for (const RefEvent& event : raw) {
    if (event.user.empty() || event.time_ms > as_of) continue;
    if (event.type == kPageView) ++views[event.user];
    if (quiet_days > 0 && event.type == kSession && event.time_ms >= window_from) recent_session.insert(event.user);
  }
  std::set<std::string> out;
  for (const auto& [user, count] : views) {
    if (count >= min_views && !recent_session.count(user)) out.insert(user);
  }
  return out;
}

// ---- The fixture ------------------------------------------------------------------------------------------------------

template <typename Backend>
class SegmentServiceTest : public ::testing::Test {
 protected:
  static constexpr char kAsOf1[] = "2024-03-14T12:00:00.000Z";
  static constexpr char kAsOf2[] = "2024-03-27T18:30:00.000Z";

  static void TearDownTestSuite() {
    delete generated_;
    delete raw_;
    generated_ = nullptr;
    raw_ = nullptr;
  }

  void SetUp() override {
    auto pseudonymizer = events::Pseudonymizer::Create(std::string(32, kKey));
    ASSERT_TRUE(pseudonymizer.ok()) << pseudonymizer.status().ToString();
    pseudonymizer_ = std::move(pseudonymizer).value();
    ASSERT_OK_AND_ASSIGN(metadata_, backend_.Open());
  }

  // The generator's events (loaded once per process, shared by the tests): 300 users over 28 days from 2024-03-01,
  // most in day segments, the rest in the memtable.
  store::EmbeddedEventStore& Generated() {
    if (generated_ == nullptr) {
      GeneratedStoreOptions options;
      options.generator.users = 300;
      options.generator.days = 28;
      options.generator.seed = 11;
      options.generator.start_date = "2024-03-01";
      options.pseudonymizer_key = kKey;
      options.flush_every_batches = 8;
      options.flush_while_fewer_than = 20000;
      raw_ = new std::vector<RefEvent>();
      generated_ = GeneratedStore::Create(options, [](const events::EventView& event) {
                     raw_->push_back({std::string(event.user), std::string(event.type), event.time_ms});
                   }).release();
      if (generated_ == nullptr) {
        ADD_FAILURE() << "the generated store could not be created";
        std::abort();
      }
    }
    return generated_->store();
  }
  const std::vector<RefEvent>& Raw() { return *raw_; }

  // An empty store of this test.
  store::EmbeddedEventStore& Fresh() {
    if (!fresh_) {
      auto opened = store::EmbeddedEventStore::Open(UnsyncedTestStoreOptions(fresh_dir_));
      EXPECT_TRUE(opened.ok()) << opened.status().ToString();
      fresh_ = std::move(opened).value();
    }
    return *fresh_;
  }

  // A started stack over the test's metadata.
  std::unique_ptr<SegmentStack> StartStack(store::EventStore& store, SegmentServiceOptions options = FastOptions(),
                                           segments::SourceEvaluator source = nullptr) {
    auto stack = std::make_unique<SegmentStack>(*metadata_, store, *pseudonymizer_, options, std::move(source));
    Status started = stack->Start();
    EXPECT_TRUE(started.ok()) << started.ToString();
    return stack;
  }

  // Closes the metadata store and opens the same database again.
  void ReopenMetadata() {
    metadata_.reset();
    ASSERT_OK_AND_ASSIGN(metadata_, backend_.Open());
  }

  // Creates a segment; for a dynamic one, waits for its first refresh, which must complete.
  json CreateAndRefresh(SegmentService& service, const json& body) {
    auto created = service.Create(body, kAdmin);
    EXPECT_TRUE(created.ok()) << created.status().ToString() << " " << body.dump();
    if (!created.ok()) return json();
    if (created->contains("refresh_run_id")) {
      auto run = WaitForRun(*metadata_, (*created)["refresh_run_id"].get<std::string>());
      EXPECT_TRUE(run.ok()) << run.status().ToString();
      if (run.ok()) {
        EXPECT_EQ(run->status, "completed") << run->error;
      }
    }
    return *created;
  }

  // CreateAndRefresh's segment id ("" when the create failed).
  std::string CreateId(SegmentService& service, const json& body) {
    const json doc = CreateAndRefresh(service, body);
    return doc.is_object() ? doc["id"].get<std::string>() : std::string();
  }

  // Queues a refresh and waits for it.
  PipelineRun Refresh(SegmentService& service, const std::string& id, const json& body = json()) {
    auto queued = service.RequestRefresh(id, body, kAdmin);
    EXPECT_TRUE(queued.ok()) << queued.status().ToString();
    if (!queued.ok()) return {};
    EXPECT_EQ(queued->status, "queued");
    auto run = WaitForRun(*metadata_, queued->id);
    EXPECT_TRUE(run.ok()) << run.status().ToString();
    return run.ok() ? *run : PipelineRun{};
  }

  // Original ids of pseudonyms.
  std::set<std::string> Originals(const std::set<std::string>& pseudonyms) {
    std::set<std::string> out;
    for (const auto& pseudonym : pseudonyms) {
      auto revealed = pseudonymizer_->Reveal(pseudonym);
      EXPECT_TRUE(revealed.ok()) << pseudonym;
      if (revealed.ok()) out.insert(*revealed);
    }
    return out;
  }

  std::string P(const std::string& original) { return pseudonymizer_->Pseudonymize(original); }

  // Store ids of pseudonyms, as a bitmap.
  Roaring StoreIds(store::EventStore& store, const std::set<std::string>& pseudonyms) {
    auto ids = store.UserIds({pseudonyms.begin(), pseudonyms.end()});
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    Roaring bitmap;
    if (ids.ok()) {
      for (uint32_t id : *ids) bitmap.add(id);
    }
    return bitmap;
  }

  std::vector<PipelineRun> RunsOf(const std::string& target) {
    metadata::PipelineRunFilter filter;
    filter.target = target;
    filter.limit = 1000;
    auto runs = metadata_->ListPipelineRuns(filter);
    EXPECT_TRUE(runs.ok()) << runs.status().ToString();
    return runs.ok() ? *runs : std::vector<PipelineRun>();
  }

  // Appends hand-made events (ids unique per test) and returns their users, one per event.
  std::vector<std::string> Append(store::EventStore& store,
                                  const std::vector<std::tuple<std::string, std::string, int64_t>>& events) {
    std::vector<events::StoredEvent> batch;
    std::vector<std::string> users;
    for (const auto& [original, type, time] : events) {
      events::StoredEvent event;
      event.id = "e" + std::to_string(++event_counter_);
      event.source = "/test";
      event.type = type;
      event.time_ms = time;
      event.received_ms = time;
      event.user = P(original);
      event.user_in_subject = true;
      hand_made_.push_back({event.user, type, time});
      users.push_back(event.user);
      batch.push_back(std::move(event));
    }
    auto stored = store.Append(batch);
    EXPECT_TRUE(stored.ok()) << stored.status().ToString();
    if (stored.ok()) {
      EXPECT_EQ(stored->stored, batch.size());
    }
    return users;
  }

  static inline GeneratedStore* generated_ = nullptr;
  static inline std::vector<RefEvent>* raw_ = nullptr;

  Backend backend_;
  std::unique_ptr<MetadataStore> metadata_;
  std::unique_ptr<events::Pseudonymizer> pseudonymizer_;
  TempDir fresh_dir_;
  std::unique_ptr<store::EmbeddedEventStore> fresh_;
  std::vector<RefEvent> hand_made_;  // what Append stored
  uint64_t event_counter_ = 0;
};

TYPED_TEST_SUITE(SegmentServiceTest, MetadataBackends, MetadataBackendNames);

// ---- Refreshes --------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, RefreshedMembersMatchTheReference) {
  store::EmbeddedEventStore& store = this->Generated();
  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  const int64_t as_of1 = Ms(this->kAsOf1), as_of2 = Ms(this->kAsOf2);
  const std::set<std::string> ref1 = BrowsersReference(this->Raw(), as_of1, 5, 7);
  const std::set<std::string> ref2 = BrowsersReference(this->Raw(), as_of2, 5, 7);
  ASSERT_GT(ref1.size(), 5u);
  ASSERT_GT(ref2.size(), 5u);
  ASSERT_NE(ref1, ref2) << "the two evaluation times must give different members";

  const int64_t sequence = stack->LastSequence();
  ASSERT_OK_AND_ASSIGN(json created, service.Create(Dynamic("quiet_browsers", BrowsersRule(5, 7), this->kAsOf1), kAdmin));
  const std::string id = created["id"];
  EXPECT_EQ(created["version"], 1);
  EXPECT_EQ(created["type"], "dynamic");
  EXPECT_EQ(created["created_by"], kAdmin);
  EXPECT_EQ(created["incremental_active"], false) << "a fixed as_of is never incremental";
  ASSERT_TRUE(created["refresh_run_id"].is_string()) << created.dump();

  // The first refresh: a run with trigger "create".
  ASSERT_OK_AND_ASSIGN(PipelineRun first, WaitForRun(*this->metadata_, created["refresh_run_id"].get<std::string>()));
  ASSERT_EQ(first.status, "completed") << first.error;
  ExpectRunDocument(first, segments::kRefreshKind, id, {{"trigger", "create"}}, kAdmin, "completed");
  EXPECT_EQ(first.result["users_count"], ref1.size());
  EXPECT_EQ(first.result["added"], ref1.size());
  EXPECT_EQ(first.result["removed"], 0);
  EXPECT_EQ(first.result["as_of"], this->kAsOf1);
  EXPECT_EQ(first.result["segment_id"], id);

  // Members (pages of 37 and of 1), contains, users-count.
  const std::set<std::string> originals1 = this->Originals(ref1);
  EXPECT_EQ(MemberSet(service, id), originals1);
  EXPECT_EQ(AllMembers(service, id, 1).size(), ref1.size());
  ASSERT_OK_AND_ASSIGN(json count, service.UsersCount(id));
  EXPECT_EQ(count["segment_id"], id);
  EXPECT_EQ(count["users_count"], ref1.size());
  EXPECT_EQ(count["as_of"], this->kAsOf1);
  EXPECT_EQ(count["stale"], false);
  EXPECT_TRUE(count["refreshed_at"].is_string());
  std::set<std::string> everyone;
  for (const RefEvent& event : this->Raw()) {
    if (!event.user.empty()) everyone.insert(event.user);
  }
  size_t contained = 0;
  for (const std::string& original : this->Originals(everyone)) {
    const bool expected = originals1.count(original) > 0;
    ASSERT_OK_AND_ASSIGN(json answer, service.Contains(id, original));
    EXPECT_EQ(answer["contains"], expected) << original;
    EXPECT_EQ(answer["user_id"], original);
    EXPECT_EQ(answer["as_of"], this->kAsOf1);
    contained += expected ? 1 : 0;
  }
  EXPECT_EQ(contained, ref1.size());
  // A pseudonym names the same user; an unknown id is no member.
  EXPECT_TRUE(ContainsOf(service, id, *ref1.begin()));
  EXPECT_FALSE(ContainsOf(service, id, "nobody-at-all"));

  // segment.updated of the first refresh.
  auto updates = stack->UpdatesOf(id, sequence);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0]["type"], segments::kUpdatedType);
  EXPECT_EQ(updates[0]["data"]["segment_id"], id);
  EXPECT_EQ(updates[0]["data"]["name"], "quiet_browsers");
  EXPECT_EQ(updates[0]["data"]["users_count"], ref1.size());
  EXPECT_EQ(updates[0]["data"]["added"], ref1.size());
  EXPECT_EQ(updates[0]["data"]["removed"], 0);
  EXPECT_EQ(updates[0]["data"]["as_of"], this->kAsOf1);
  EXPECT_EQ(updates[0]["data"]["run_id"], first.id);
  EXPECT_EQ(updates[0]["data"]["trigger"], "create");

  // A refresh at another time: added and removed are the differences.
  const int64_t after_first = stack->LastSequence();
  const PipelineRun second = this->Refresh(service, id, {{"as_of", "2024-03-27T20:30:00+02:00"}});
  ASSERT_EQ(second.status, "completed") << second.error;
  ExpectRunDocument(second, segments::kRefreshKind, id, {{"trigger", "manual"}, {"as_of", this->kAsOf2}}, kAdmin,
                    "completed");
  EXPECT_EQ(second.result["users_count"], ref2.size());
  EXPECT_EQ(second.result["added"], Minus(ref2, ref1).size());
  EXPECT_EQ(second.result["removed"], Minus(ref1, ref2).size());
  EXPECT_EQ(second.result["as_of"], this->kAsOf2);
  EXPECT_EQ(MemberSet(service, id), this->Originals(ref2));
  for (const std::string& user : Minus(ref1, ref2)) EXPECT_FALSE(ContainsOf(service, id, user));
  for (const std::string& user : ref2) EXPECT_TRUE(ContainsOf(service, id, user));
  ASSERT_OK_AND_ASSIGN(json doc, service.Get(id));
  EXPECT_EQ(doc["materialization"]["users_count"], ref2.size());
  EXPECT_EQ(doc["materialization"]["as_of"], this->kAsOf2);
  EXPECT_EQ(doc["materialization"]["run_id"], second.id);
  EXPECT_EQ(doc["materialization"]["trigger"], "manual");
  EXPECT_EQ(doc["materialization"]["added"], Minus(ref2, ref1).size());
  EXPECT_EQ(doc["materialization"]["removed"], Minus(ref1, ref2).size());
  updates = stack->UpdatesOf(id, after_first);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0]["data"]["added"], Minus(ref2, ref1).size());
  EXPECT_EQ(updates[0]["data"]["removed"], Minus(ref1, ref2).size());
  EXPECT_EQ(updates[0]["data"]["trigger"], "manual");

  // Without a body: the definition's as_of again.
  const PipelineRun third = this->Refresh(service, id);
  ASSERT_EQ(third.status, "completed") << third.error;
  EXPECT_EQ(third.parameters, json({{"trigger", "manual"}}));
  EXPECT_EQ(third.result["as_of"], this->kAsOf1);
  EXPECT_EQ(MemberSet(service, id), originals1);

  // A second segment over the same data: a plain count condition.
  const std::set<std::string> heavy = BrowsersReference(this->Raw(), as_of2, 20, 0);
  ASSERT_GT(heavy.size(), 5u);
  const json heavy_doc = this->CreateAndRefresh(service, Dynamic("heavy_browsers", BrowsersRule(20, 0), this->kAsOf2));
  EXPECT_EQ(MemberSet(service, heavy_doc["id"]), this->Originals(heavy));

  // Bad requests.
  EXPECT_EQ(service.RequestRefresh("no-such-segment", json(), kAdmin).status().code(), StatusCode::kNotFound);
  auto bad = service.RequestRefresh(id, {{"as_of", "yesterday"}}, kAdmin);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().field(), "as_of");
  EXPECT_EQ(service.RequestRefresh(id, {{"at", 1}}, kAdmin).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service.UsersCount("no-such-segment").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service.Members(id, "", 0, kAdmin).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service.Members(id, "x1", 10, kAdmin).status().code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(SegmentServiceTest, UpdateRefreshesWithTheNewRule) {
  store::EmbeddedEventStore& store = this->Generated();
  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  const json created = this->CreateAndRefresh(service, Dynamic("buyers", BrowsersRule(5, 7), this->kAsOf2));
  const std::string id = created["id"];
  ASSERT_OK_AND_ASSIGN(json updated, service.Update(id, Dynamic("buyers", BrowsersRule(3, 0), this->kAsOf2), 1, kAdmin));
  EXPECT_EQ(updated["version"], 2);
  ASSERT_TRUE(updated["refresh_run_id"].is_string()) << updated.dump();
  ASSERT_OK_AND_ASSIGN(PipelineRun run, WaitForRun(*this->metadata_, updated["refresh_run_id"].get<std::string>()));
  EXPECT_EQ(run.status, "completed") << run.error;
  EXPECT_EQ(run.parameters, json({{"trigger", "definition_changed"}}));
  const std::set<std::string> expected = BrowsersReference(this->Raw(), Ms(this->kAsOf2), 3, 0);
  EXPECT_EQ(MemberSet(service, id), this->Originals(expected));
  ASSERT_OK_AND_ASSIGN(json doc, service.Get(id));
  EXPECT_EQ(doc["materialization"]["definition_version"], 2);
  EXPECT_EQ(doc["materialization"]["stale"], false);
  // A stale version: FailedPrecondition, nothing changes.
  EXPECT_EQ(service.Update(id, Dynamic("buyers", BrowsersRule(1, 0)), 1, kAdmin).status().code(),
            StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(json again, service.Get(id));
  EXPECT_EQ(again["version"], 2);
}

TYPED_TEST(SegmentServiceTest, FailedRefreshesEndFailedWithTheirError) {
  FaultyStore faulty(this->Generated());
  auto stack = this->StartStack(faulty);
  OpenOnExit open_on_exit(faulty.gate());
  SegmentService& service = stack->service();

  // The first refresh of "blocked" waits in the store; "doomed" queues behind it (one worker) and is deleted.
  faulty.gate().Close();
  ASSERT_OK_AND_ASSIGN(json blocked, service.Create(Dynamic("blocked", BrowsersRule(2, 0), this->kAsOf2), kAdmin));
  const std::string blocked_id = blocked["id"];
  ASSERT_TRUE(faulty.gate().WaitForWaiters(1));
  // Before the first materialization: DATA_NOT_YET_AVAILABLE everywhere.
  EXPECT_EQ(service.UsersCount(blocked_id).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(service.Contains(blocked_id, "someone").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(service.Members(blocked_id, "", 10, kAdmin).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(service.ScopeOf(blocked_id).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(json pending_doc, service.Get(blocked_id));
  EXPECT_TRUE(pending_doc["materialization"].is_null());
  ASSERT_OK_AND_ASSIGN(json doomed, service.Create(Dynamic("doomed", BrowsersRule(1, 0), this->kAsOf2), kAdmin));
  const std::string doomed_id = doomed["id"];
  ASSERT_OK(service.Delete(doomed_id, kAdmin));
  faulty.FailReads(true);
  faulty.gate().Open();

  ASSERT_OK_AND_ASSIGN(PipelineRun failed, WaitForRun(*this->metadata_, blocked["refresh_run_id"].get<std::string>()));
  ExpectRunDocument(failed, segments::kRefreshKind, blocked_id, {{"trigger", "create"}}, kAdmin, "failed");
  EXPECT_EQ(failed.error, kInjected);
  ASSERT_OK_AND_ASSIGN(PipelineRun gone, WaitForRun(*this->metadata_, doomed["refresh_run_id"].get<std::string>()));
  ExpectRunDocument(gone, segments::kRefreshKind, doomed_id, {{"trigger", "create"}}, kAdmin, "failed");
  EXPECT_EQ(gone.error, "segment '" + doomed_id + "' no longer exists");
  EXPECT_EQ(service.UsersCount(blocked_id).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(service.RequestRefresh(doomed_id, json(), kAdmin).status().code(), StatusCode::kNotFound);

  // A rule reading a segment that was never materialized fails with that segment's error.
  faulty.FailReads(false);
  ASSERT_OK_AND_ASSIGN(json dependent, service.Create(Dynamic("dependent", {{"in_segment", blocked_id}}), kAdmin));
  ASSERT_OK_AND_ASSIGN(PipelineRun dep_run, WaitForRun(*this->metadata_, dependent["refresh_run_id"].get<std::string>()));
  EXPECT_EQ(dep_run.status, "failed");
  EXPECT_NE(dep_run.error.find("segment '" + blocked_id + "' has not been refreshed yet"), std::string::npos)
      << dep_run.error;

  // Once the store answers, both refresh.
  const PipelineRun retried = this->Refresh(service, blocked_id);
  ASSERT_EQ(retried.status, "completed") << retried.error;
  const std::set<std::string> expected = this->Originals(BrowsersReference(this->Raw(), Ms(this->kAsOf2), 2, 0));
  EXPECT_EQ(MemberSet(service, blocked_id), expected);
  const PipelineRun dep_retried = this->Refresh(service, dependent["id"]);
  ASSERT_EQ(dep_retried.status, "completed") << dep_retried.error;
  EXPECT_EQ(MemberSet(service, dependent["id"]), expected);

  // A failed refresh keeps the previous members.
  faulty.FailReads(true);
  const PipelineRun failed_again = this->Refresh(service, blocked_id);
  EXPECT_EQ(failed_again.status, "failed");
  EXPECT_EQ(failed_again.error, kInjected);
  EXPECT_EQ(MemberSet(service, blocked_id), expected);
  faulty.FailReads(false);
}

// ---- Static segments -------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, StaticSegmentsTakeUserIdsUploadsAndSources) {
  store::EmbeddedEventStore& store = this->Generated();
  // The source: users with at least `min_views` page views over all the data, as store ids.
  std::atomic<int> min_views{10};
  std::atomic<int> source_calls{0};
  const json funnel = {{"steps", {{{"event_type", kPageView}}}}};
  std::vector<RefEvent> raw = this->Raw();
  auto source = [&, raw](const json& given) -> Result<Roaring> {
    ++source_calls;
    EXPECT_EQ(given, json({{"funnel", funnel}, {"step", 1}, {"users", "dropped"}}));
    const std::set<std::string> users = BrowsersReference(raw, INT64_MAX - 1, min_views.load(), 0);
    ANALYTICS_ASSIGN_OR_RETURN(auto ids, store.UserIds({users.begin(), users.end()}));
    Roaring bitmap;
    for (uint32_t id : ids) bitmap.add(id);
    return bitmap;
  };
  auto stack = this->StartStack(store, FastOptions(), source);
  SegmentService& service = stack->service();

  // user_ids: original ids or pseudonyms, duplicates once, users without events too.
  const int64_t sequence = stack->LastSequence();
  ASSERT_OK_AND_ASSIGN(json created,
                       service.Create(Static("vips", {"alice", "bob", this->P("carol"), "alice"}), kAdmin));
  const std::string id = created["id"];
  EXPECT_FALSE(created.contains("refresh_run_id"));
  ASSERT_TRUE(created["materialization"].is_object()) << created.dump();
  EXPECT_EQ(created["materialization"]["users_count"], 3);
  EXPECT_EQ(created["materialization"]["trigger"], "create");
  EXPECT_FALSE(created.contains("user_ids") && !created["user_ids"].is_null()) << "user_ids are not stored";
  EXPECT_EQ(MemberSet(service, id), (std::set<std::string>{"alice", "bob", "carol"}));
  EXPECT_TRUE(ContainsOf(service, id, "carol"));
  EXPECT_TRUE(ContainsOf(service, id, this->P("alice")));
  EXPECT_FALSE(ContainsOf(service, id, "dave"));
  auto updates = stack->UpdatesOf(id, sequence);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0]["data"]["trigger"], "create");
  EXPECT_EQ(updates[0]["data"]["added"], 3);

  // Uploads: replace, add, remove (unknown ids are ignored by remove).
  struct Step {
    std::string mode;
    std::vector<std::string> users;
    std::set<std::string> members;
    int added, removed;
  };
  const std::vector<Step> steps = {
      {"replace", {"x", "y", "bob"}, {"x", "y", "bob"}, 2, 2},
      {"add", {"y", "z", this->P("w")}, {"x", "y", "z", "w", "bob"}, 2, 0},
      {"remove", {"x", "nobody", this->P("bob")}, {"y", "z", "w"}, 0, 2},
      {"add", {}, {"y", "z", "w"}, 0, 0},
      {"replace", {}, {}, 0, 3},
      {"add", {"alice"}, {"alice"}, 1, 0},
  };
  for (const Step& step : steps) {
    const int64_t before = stack->LastSequence();
    ASSERT_OK_AND_ASSIGN(json result, service.Upload(id, step.users, step.mode, kAdmin));
    EXPECT_EQ(result["users_count"], step.members.size()) << step.mode;
    EXPECT_EQ(result["added"], step.added) << step.mode;
    EXPECT_EQ(result["removed"], step.removed) << step.mode;
    EXPECT_EQ(result["mode"], step.mode);
    EXPECT_EQ(MemberSet(service, id), step.members) << step.mode;
    EXPECT_EQ(UsersCountOf(service, id), static_cast<int64_t>(step.members.size()));
    updates = stack->UpdatesOf(id, before);
    ASSERT_EQ(updates.size(), 1u) << step.mode;
    EXPECT_EQ(updates[0]["data"]["trigger"], "upload");
    EXPECT_EQ(updates[0]["data"]["added"], step.added);
    EXPECT_EQ(updates[0]["data"]["removed"], step.removed);
    EXPECT_EQ(updates[0]["data"]["users_count"], step.members.size());
  }
  auto bad_mode = service.Upload(id, {"a"}, "merge", kAdmin);
  EXPECT_EQ(bad_mode.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_mode.status().field(), "mode");
  EXPECT_EQ(service.Upload("no-such-segment", {"a"}, "add", kAdmin).status().code(), StatusCode::kNotFound);
  const json dynamic = this->CreateAndRefresh(service, Dynamic("dyn", BrowsersRule(5, 0), this->kAsOf2));
  EXPECT_EQ(service.Upload(dynamic["id"], {"a"}, "add", kAdmin).status().code(), StatusCode::kInvalidArgument);
  // A static list refreshed: the same members, re-stamped.
  const PipelineRun restamp = this->Refresh(service, id);
  ASSERT_EQ(restamp.status, "completed") << restamp.error;
  EXPECT_EQ(restamp.result["users_count"], 1);
  EXPECT_EQ(MemberSet(service, id), std::set<std::string>{"alice"});

  // A source: evaluated on create and on each refresh.
  const std::set<std::string> ten = BrowsersReference(this->Raw(), INT64_MAX - 1, 10, 0);
  const std::set<std::string> twenty = BrowsersReference(this->Raw(), INT64_MAX - 1, 20, 0);
  ASSERT_NE(ten, twenty);
  ASSERT_GT(twenty.size(), 5u);
  ASSERT_OK_AND_ASSIGN(json sourced,
                       service.Create({{"name", "funnel_dropouts"},
                                       {"type", "static"},
                                       {"source", {{"funnel", funnel}, {"step", 1}, {"users", "dropped"}}}},
                                      kAdmin));
  const std::string sourced_id = sourced["id"];
  EXPECT_EQ(source_calls.load(), 1);
  EXPECT_EQ(sourced["materialization"]["users_count"], ten.size());
  EXPECT_EQ(MemberSet(service, sourced_id), this->Originals(ten));
  min_views = 20;
  const PipelineRun resourced = this->Refresh(service, sourced_id);
  ASSERT_EQ(resourced.status, "completed") << resourced.error;
  EXPECT_EQ(source_calls.load(), 2);
  EXPECT_EQ(resourced.result["users_count"], twenty.size());
  EXPECT_EQ(resourced.result["removed"], Minus(ten, twenty).size());
  EXPECT_EQ(resourced.result["added"], Minus(twenty, ten).size());
  EXPECT_EQ(MemberSet(service, sourced_id), this->Originals(twenty));
  EXPECT_EQ(service.Upload(sourced_id, {"a"}, "add", kAdmin).ok(), true) << "a sourced static segment is still static";
}

// ---- Persistence ------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, MaterializationsSurviveARestartWithTheSameMemberIndexes) {
  store::EmbeddedEventStore& store = this->Generated();
  const std::set<std::string> ref = BrowsersReference(this->Raw(), Ms(this->kAsOf2), 5, 7);
  ASSERT_GT(ref.size(), 5u);
  std::string dynamic_id, static_id;
  json dynamic_count, static_count, dynamic_doc, static_doc;
  std::vector<std::string> dynamic_members, static_members;
  std::map<std::string, uint32_t> indexes;  // member pseudonym -> member index
  std::vector<std::string> probes;
  std::vector<bool> dynamic_contains, static_contains;
  size_t index_entries = 0;
  {
    auto stack = this->StartStack(store);
    SegmentService& service = stack->service();
    dynamic_id = this->CreateId(service, Dynamic("kept_dynamic", BrowsersRule(5, 7), this->kAsOf2));
    static_id = this->CreateId(service, Static("kept_static", {"ghost-1", "ghost-2"}));
    ASSERT_OK(service.Upload(static_id, {"ghost-3", *this->Originals(ref).begin()}, "add", kAdmin));
    ASSERT_OK_AND_ASSIGN(dynamic_count, service.UsersCount(dynamic_id));
    ASSERT_OK_AND_ASSIGN(static_count, service.UsersCount(static_id));
    ASSERT_OK_AND_ASSIGN(dynamic_doc, service.Get(dynamic_id));
    ASSERT_OK_AND_ASSIGN(static_doc, service.Get(static_id));
    dynamic_members = AllMembers(service, dynamic_id);
    static_members = AllMembers(service, static_id);
    EXPECT_EQ(std::set<std::string>(dynamic_members.begin(), dynamic_members.end()), this->Originals(ref));
    EXPECT_EQ(static_members.size(), 4u);
    for (const std::string& original : this->Originals(ref)) probes.push_back(original);
    for (const RefEvent& event : this->Raw()) {
      if (probes.size() > ref.size() + 40) break;
      if (!event.user.empty() && !ref.count(event.user)) probes.push_back(*this->pseudonymizer_->Reveal(event.user));
    }
    probes.insert(probes.end(), {"ghost-1", "ghost-3", "ghost-4"});
    for (const std::string& probe : probes) {
      dynamic_contains.push_back(ContainsOf(service, dynamic_id, probe));
      static_contains.push_back(ContainsOf(service, static_id, probe));
    }
    segments::MemberIndex index(*this->metadata_);
    ASSERT_OK(index.Load());
    index_entries = index.size();
    for (const std::string& user : ref) {
      const auto found = index.Find(user);
      ASSERT_TRUE(found.has_value()) << user;
      indexes[user] = *found;
    }
    for (const char* ghost : {"ghost-1", "ghost-2", "ghost-3"}) {
      const auto found = index.Find(this->P(ghost));
      ASSERT_TRUE(found.has_value()) << ghost;
      indexes[this->P(ghost)] = *found;
    }
  }
  const size_t runs_before = this->RunsOf(dynamic_id).size();
  this->ReopenMetadata();

  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  // The same answers, without a refresh.
  ASSERT_OK_AND_ASSIGN(json count_after, service.UsersCount(dynamic_id));
  EXPECT_EQ(count_after, dynamic_count);
  ASSERT_OK_AND_ASSIGN(json static_after, service.UsersCount(static_id));
  EXPECT_EQ(static_after, static_count);
  ASSERT_OK_AND_ASSIGN(json doc_after, service.Get(dynamic_id));
  EXPECT_EQ(doc_after, dynamic_doc);
  ASSERT_OK_AND_ASSIGN(json static_doc_after, service.Get(static_id));
  EXPECT_EQ(static_doc_after, static_doc);
  EXPECT_EQ(AllMembers(service, dynamic_id), dynamic_members) << "the same members in the same order";
  EXPECT_EQ(AllMembers(service, static_id), static_members);
  for (size_t probe_idx = 0; probe_idx < probes.size(); ++probe_idx) {
    EXPECT_EQ(ContainsOf(service, dynamic_id, probes[probe_idx]), dynamic_contains[probe_idx]) << probes[probe_idx];
    EXPECT_EQ(ContainsOf(service, static_id, probes[probe_idx]), static_contains[probe_idx]) << probes[probe_idx];
  }
  EXPECT_EQ(this->RunsOf(dynamic_id).size(), runs_before) << "a restart queues no refresh";

  // The member indexes read back the same; a refresh reuses them (no new entry) and changes nothing.
  {
    segments::MemberIndex index(*this->metadata_);
    ASSERT_OK(index.Load());
    EXPECT_EQ(index.size(), index_entries);
    for (const auto& [user, at] : indexes) {
      EXPECT_EQ(index.Find(user), std::optional<uint32_t>(at)) << user;
      ASSERT_OK_AND_ASSIGN(std::string name, index.NameOf(at));
      EXPECT_EQ(name, user);
    }
  }
  const PipelineRun run = this->Refresh(service, dynamic_id);
  ASSERT_EQ(run.status, "completed") << run.error;
  EXPECT_EQ(run.result["added"], 0);
  EXPECT_EQ(run.result["removed"], 0);
  EXPECT_EQ(run.result["users_count"], ref.size());
  segments::MemberIndex index(*this->metadata_);
  ASSERT_OK(index.Load());
  EXPECT_EQ(index.size(), index_entries) << "a refresh after the restart added member index entries";
  ASSERT_OK_AND_ASSIGN(query::UserScope scope, service.ScopeOf(dynamic_id));
  EXPECT_TRUE(*scope.users == this->StoreIds(store, ref));
}

// ---- ScopeOf ----------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, ScopeOfGivesTheMembersStoreIdsCachedPerMaterialization) {
  store::EmbeddedEventStore& store = this->Generated();
  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  const std::set<std::string> ref1 = BrowsersReference(this->Raw(), Ms(this->kAsOf1), 5, 7);
  const std::set<std::string> ref2 = BrowsersReference(this->Raw(), Ms(this->kAsOf2), 5, 7);
  ASSERT_FALSE(ref1.empty());
  ASSERT_NE(ref1, ref2);
  const std::string id = this->CreateId(service, Dynamic("scoped", BrowsersRule(5, 7), this->kAsOf1));
  ASSERT_OK_AND_ASSIGN(query::UserScope first, service.ScopeOf(id));
  ASSERT_NE(first.users, nullptr);
  EXPECT_TRUE(*first.users == this->StoreIds(store, ref1));
  EXPECT_FALSE(first.fingerprint.empty());
  EXPECT_TRUE(first.cache);
  ASSERT_OK_AND_ASSIGN(query::UserScope again, service.ScopeOf(id));
  EXPECT_EQ(again.fingerprint, first.fingerprint);
  EXPECT_EQ(again.users, first.users) << "the cached scope is handed out again";

  const PipelineRun run = this->Refresh(service, id, {{"as_of", this->kAsOf2}});
  ASSERT_EQ(run.status, "completed") << run.error;
  ASSERT_OK_AND_ASSIGN(query::UserScope second, service.ScopeOf(id));
  EXPECT_NE(second.fingerprint, first.fingerprint);
  EXPECT_TRUE(*second.users == this->StoreIds(store, ref2));
  EXPECT_TRUE(*first.users == this->StoreIds(store, ref1)) << "a scope handed out never changes";

  // A static segment: members without events get store ids too (they match no event).
  const std::string some_member = *this->Originals(ref1).begin();
  const std::string static_id = this->CreateId(service, Static("static_scope", {"ghost-a", some_member}));
  ASSERT_OK_AND_ASSIGN(query::UserScope static_scope, service.ScopeOf(static_id));
  EXPECT_TRUE(*static_scope.users == this->StoreIds(store, {this->P("ghost-a"), this->P(some_member)}))
      << static_scope.users->toString();
  EXPECT_NE(static_scope.fingerprint, second.fingerprint);
  ASSERT_OK(service.Upload(static_id, {"ghost-b"}, "add", kAdmin));
  ASSERT_OK_AND_ASSIGN(query::UserScope static_after, service.ScopeOf(static_id));
  EXPECT_NE(static_after.fingerprint, static_scope.fingerprint);
  EXPECT_TRUE(*static_after.users ==
              this->StoreIds(store, {this->P("ghost-a"), this->P("ghost-b"), this->P(some_member)}));
  EXPECT_EQ(service.ScopeOf("no-such-segment").status().code(), StatusCode::kNotFound);
}

// ---- in_segment references ---------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, InSegmentReferencesAreCheckedOnCreateUpdateAndDelete) {
  auto stack = this->StartStack(this->Fresh());
  SegmentService& service = stack->service();
  const json buy = {{"performed", {{"event_type", kBuy}}}};

  auto unknown = service.Create(Dynamic("unknown_ref", {{"in_segment", "no-such-segment"}}), kAdmin);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.status().field(), "rule");
  EXPECT_NE(unknown.status().message().find("no-such-segment"), std::string::npos) << unknown.status().message();

  const std::string a = this->CreateId(service, Static("a", {"alice"}));
  const json b_doc = this->CreateAndRefresh(service, Dynamic("b", {{"or", {{{"in_segment", a}}, buy}}}));
  const std::string b = b_doc["id"];
  EXPECT_EQ(b_doc["incremental_active"], false) << "in_segment rules are never incremental";
  const std::string c = this->CreateId(service, Dynamic("c", {{"in_segment", b}}));
  EXPECT_EQ(MemberSet(service, b), std::set<std::string>{"alice"});
  EXPECT_EQ(MemberSet(service, c), std::set<std::string>{"alice"});

  // Cycles: b -> c -> b, and b -> b.
  auto cycle = service.Update(b, Dynamic("b", {{"in_segment", c}}), std::nullopt, kAdmin);
  ASSERT_FALSE(cycle.ok());
  EXPECT_EQ(cycle.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cycle.status().field(), "rule");
  auto self = service.Update(b, Dynamic("b", {{"and", {buy, {{"in_segment", b}}}}}), std::nullopt, kAdmin);
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(self.status().field(), "rule");
  ASSERT_OK_AND_ASSIGN(json b_now, service.Get(b));
  EXPECT_EQ(b_now["version"], 1) << "a refused update changes nothing";

  // Delete: refused while referenced.
  Status deleted = service.Delete(a, kAdmin);
  EXPECT_EQ(deleted.code(), StatusCode::kFailedPrecondition) << deleted.ToString();
  EXPECT_NE(deleted.message().find(b), std::string::npos) << deleted.message();
  EXPECT_EQ(service.Delete(b, kAdmin).code(), StatusCode::kFailedPrecondition);
  ASSERT_OK(service.Get(a));
  ASSERT_OK(service.Delete(c, kAdmin));
  ASSERT_OK(service.Delete(b, kAdmin));
  ASSERT_OK(service.Delete(a, kAdmin));
  EXPECT_EQ(service.Get(a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service.Delete(a, kAdmin).code(), StatusCode::kNotFound);
  EXPECT_EQ(this->metadata_->GetSegment(a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->metadata_->GetMaterialization(a).status().code(), StatusCode::kNotFound);

  // Names are unique; refresh_every is at least a minute.
  ASSERT_OK(service.Create(Static("unique", {}), kAdmin));
  EXPECT_EQ(service.Create(Static("unique", {}), kAdmin).status().code(), StatusCode::kAlreadyExists);
  json fast = Dynamic("fast", buy);
  fast["refresh_every"] = "30s";
  auto too_fast = service.Create(fast, kAdmin);
  EXPECT_EQ(too_fast.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(too_fast.status().field(), "refresh_every");
  fast["refresh_every"] = "1m";
  ASSERT_OK(service.Create(fast, kAdmin));
}

// ---- Schedules --------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, ScheduledRefreshRunsWhenTheLastRefreshIsOlderThanRefreshEvery) {
  store::EmbeddedEventStore& store = this->Fresh();
  const int64_t now = common::NowMillis();
  this->Append(store, {{"s1", kBuy, now - 3600000}, {"s2", kView, now - 3600000}});
  json body = Dynamic("every_minute", {{"performed", {{"event_type", kBuy}}}}, Text(now));
  body["refresh_every"] = "1m";
  std::string id, plain_id;
  {
    auto stack = this->StartStack(store);
    id = this->CreateId(stack->service(), body);
    plain_id =
        this->CreateId(stack->service(), Dynamic("never_scheduled", {{"performed", {{"event_type", kBuy}}}}, Text(now)));
    // Refreshed just now: no scheduled run (the schedule is checked every 20 ms).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(this->RunsOf(id).size(), 1u);
  }
  // Backdate the last refresh by two minutes, then start again.
  for (const std::string& target : {id, plain_id}) {
    ASSERT_OK_AND_ASSIGN(metadata::SegmentMaterialization row, this->metadata_->GetMaterialization(target));
    row.refreshed_at_ms -= 120000;
    ASSERT_OK(this->metadata_->PutMaterialization(row));
  }
  auto stack = this->StartStack(store);
  std::optional<PipelineRun> scheduled;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!scheduled && std::chrono::steady_clock::now() < deadline) {
    for (const PipelineRun& run : this->RunsOf(id)) {
      if (run.parameters.is_object() && run.parameters.value("trigger", "") == "schedule") scheduled = run;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(scheduled.has_value()) << "no scheduled run within 15 s";
  ASSERT_OK_AND_ASSIGN(PipelineRun finished, WaitForRun(*this->metadata_, scheduled->id));
  ExpectRunDocument(finished, segments::kRefreshKind, id, {{"trigger", "schedule"}}, "system", "completed");
  EXPECT_EQ(finished.result["users_count"], 1);
  ASSERT_OK_AND_ASSIGN(json doc, stack->service().Get(id));
  EXPECT_EQ(doc["materialization"]["trigger"], "schedule");
  EXPECT_EQ(doc["materialization"]["run_id"], finished.id);
  // Once refreshed, not again within the minute; the segment without refresh_every never.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  size_t schedule_runs = 0;
  for (const PipelineRun& run : this->RunsOf(id)) {
    schedule_runs += run.parameters.is_object() && run.parameters.value("trigger", "") == "schedule" ? 1 : 0;
  }
  EXPECT_EQ(schedule_runs, 1u);
  EXPECT_EQ(this->RunsOf(plain_id).size(), 1u);
}

// ---- Concurrency ------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, ReadersSeeConsistentStatesWhileRefreshesAndUploadsRun) {
  store::EmbeddedEventStore& store = this->Generated();
  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  const std::set<std::string> ref1 = this->Originals(BrowsersReference(this->Raw(), Ms(this->kAsOf1), 5, 7));
  const std::set<std::string> ref2 = this->Originals(BrowsersReference(this->Raw(), Ms(this->kAsOf2), 5, 7));
  ASSERT_FALSE(ref1.empty());
  ASSERT_NE(ref1.size(), ref2.size());
  const std::string dynamic_id = this->CreateId(service, Dynamic("racing", BrowsersRule(5, 7), this->kAsOf1));
  const std::vector<std::string> list1 = {"r1", "r2", "r3"};
  const std::vector<std::string> list2 = {"r3", "r4", "r5", "r6", "r7"};
  const std::string static_id = this->CreateId(service, Static("racing_static", list1));
  // Probes: members of one state only, of both, of neither.
  std::vector<std::string> probes;
  for (const auto& user : Minus(ref1, ref2)) probes.push_back(user);
  for (const auto& user : Minus(ref2, ref1)) probes.push_back(user);
  for (const auto& user : ref1) {
    if (ref2.count(user)) probes.push_back(user);
  }
  probes.push_back("nobody");
  const std::map<std::string, const std::set<std::string>*> by_as_of = {{this->kAsOf1, &ref1}, {this->kAsOf2, &ref2}};

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto fail = [&](std::string what) {
    std::lock_guard lock(errors_mu);
    if (errors.size() < 20) errors.push_back(std::move(what));
  };
  std::vector<std::thread> readers;
  for (int reader = 0; reader < 4; ++reader) {
    readers.emplace_back([&, reader] {
      size_t probe_idx = static_cast<size_t>(reader);
      while (!stop.load()) {
        auto count = service.UsersCount(dynamic_id);
        if (!count.ok()) {
          fail("UsersCount: " + count.status().ToString());
        } else {
          const auto state = by_as_of.find((*count)["as_of"].get<std::string>());
          if (state == by_as_of.end() || (*count)["users_count"] != state->second->size()) {
            fail("UsersCount inconsistent: " + count->dump());
          }
        }
        const std::string& probe = probes[probe_idx++ % probes.size()];
        auto contains = service.Contains(dynamic_id, probe);
        if (!contains.ok()) {
          fail("Contains: " + contains.status().ToString());
        } else {
          const auto state = by_as_of.find((*contains)["as_of"].get<std::string>());
          if (state == by_as_of.end() || (*contains)["contains"] != (state->second->count(probe) > 0)) {
            fail("Contains inconsistent: " + contains->dump());
          }
        }
        auto static_count = service.UsersCount(static_id);
        if (!static_count.ok() ||
            ((*static_count)["users_count"] != list1.size() && (*static_count)["users_count"] != list2.size())) {
          fail("static UsersCount: " + (static_count.ok() ? static_count->dump() : static_count.status().ToString()));
        }
        auto in_static = service.Contains(static_id, "r3");
        if (!in_static.ok() || (*in_static)["contains"] != true) fail("r3 is in both lists");
        auto scope = service.ScopeOf(dynamic_id);
        if (!scope.ok() || (scope->users->cardinality() != ref1.size() && scope->users->cardinality() != ref2.size())) {
          fail("ScopeOf: " + (scope.ok() ? std::to_string(scope->users->cardinality()) : scope.status().ToString()));
        }
        ++reads;
      }
    });
  }
  std::thread uploader([&] {
    for (int upload = 0; upload < 30 && !stop.load(); ++upload) {
      auto uploaded = service.Upload(static_id, upload % 2 ? list1 : list2, "replace", kAdmin);
      if (!uploaded.ok()) fail("Upload: " + uploaded.status().ToString());
    }
  });
  for (int refresh = 0; refresh < 6; ++refresh) {
    const PipelineRun run = this->Refresh(service, dynamic_id, {{"as_of", refresh % 2 ? this->kAsOf1 : this->kAsOf2}});
    EXPECT_EQ(run.status, "completed") << run.error;
  }
  uploader.join();
  stop = true;
  for (auto& reader : readers) reader.join();
  EXPECT_TRUE(errors.empty()) << errors.size() << " errors, first: " << (errors.empty() ? "" : errors[0]);
  EXPECT_GT(reads.load(), 20u);
  // The last writes win.
  EXPECT_EQ(MemberSet(service, dynamic_id), ref1);
  EXPECT_EQ(UsersCountOf(service, static_id), static_cast<int64_t>(list1.size()));
}

// ---- Incremental updates -----------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, IncrementalSegmentsFollowStoredEvents) {
  store::EmbeddedEventStore& store = this->Fresh();
  const int64_t start = common::NowMillis() - 60000;
  // Rule: at least two buys and no refund, over all time up to now.
  const json rule = {{"and", {{{"performed", {{"event_type", kBuy}, {"count", {{"gte", 2}}}}}},
                              {{"not_performed", {{"event_type", kRefund}}}}}}};
  this->Append(store, {{"u0", kBuy, start},      {"u0", kBuy, start + 1},    {"u1", kBuy, start},
                       {"u1", kBuy, start + 2},  {"u2", kBuy, start},        {"u3", kBuy, start},
                       {"u3", kBuy, start + 5},  {"u3", kBuy, start + 9},    {"u4", kBuy, start},
                       {"u4", kBuy, start + 1},  {"u4", kRefund, start + 2}, {"u5", kView, start},
                       {"u6", kBuy, start + 3},  {"u6", kBuy, start + 4}});
  auto reference = [&] {
    std::map<std::string, int> buys;
    std::set<std::string> refunded;
    for (const RefEvent& event : this->hand_made_) {
      if (event.type == kBuy) ++buys[event.user];
      if (event.type == kRefund) refunded.insert(event.user);
    }
    std::set<std::string> out;
    for (const auto& [user, count] : buys) {
      if (count >= 2 && !refunded.count(user)) out.insert(user);
    }
    return this->Originals(out);
  };
  ASSERT_EQ(reference(), (std::set<std::string>{"u0", "u1", "u3", "u6"}));

  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  EXPECT_FALSE(service.WantsStoredUsers());
  const std::string empty_id = this->CreateId(service, Static("nobody", {}));
  const json live = this->CreateAndRefresh(service, Dynamic("live", rule));
  const std::string live_id = live["id"];
  EXPECT_EQ(live["incremental_active"], true);
  EXPECT_TRUE(service.WantsStoredUsers());
  json off_body = Dynamic("live_not_incremental", rule);
  off_body["incremental"] = false;
  const json off = this->CreateAndRefresh(service, off_body);
  EXPECT_EQ(off["incremental_active"], false);
  const json fixed = this->CreateAndRefresh(service, Dynamic("fixed", rule, Text(common::NowMillis())));
  EXPECT_EQ(fixed["incremental_active"], false);
  const json referencing =
      this->CreateAndRefresh(service, Dynamic("referencing", {{"or", {{{"in_segment", empty_id}}, rule}}}));
  EXPECT_EQ(referencing["incremental_active"], false);
  const std::set<std::string> before = reference();
  for (const json* doc : {&live, &off, &fixed, &referencing}) {
    EXPECT_EQ(MemberSet(service, (*doc)["id"]), before) << (*doc)["name"];
  }

  // u1 is refunded (leaves), u2 buys again (joins), u4 buys twice (refunded: stays out), u5 and u6 view (no change),
  // u7 is new with two buys (joins); u0 and u3 are not touched (stay).
  const int64_t sequence = stack->LastSequence();
  const int64_t now = common::NowMillis() - 10;
  service.OnEventsStored(this->Append(store, {{"u1", kRefund, now},
                                              {"u2", kBuy, now},
                                              {"u4", kBuy, now},
                                              {"u4", kBuy, now},
                                              {"u5", kView, now},
                                              {"u6", kView, now},
                                              {"u7", kBuy, now - 1},
                                              {"u7", kBuy, now}}));
  service.FlushIncrementalForTest();
  const std::set<std::string> after = reference();
  ASSERT_EQ(after, (std::set<std::string>{"u0", "u2", "u3", "u6", "u7"}));
  EXPECT_EQ(MemberSet(service, live_id), after);
  EXPECT_EQ(UsersCountOf(service, live_id), 5);
  EXPECT_FALSE(ContainsOf(service, live_id, "u1"));
  EXPECT_TRUE(ContainsOf(service, live_id, "u7"));
  EXPECT_TRUE(ContainsOf(service, live_id, "u3"));
  auto updates = stack->UpdatesOf(live_id, sequence);
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0]["data"]["trigger"], "incremental");
  EXPECT_EQ(updates[0]["data"]["added"], 2);
  EXPECT_EQ(updates[0]["data"]["removed"], 1);
  EXPECT_EQ(updates[0]["data"]["users_count"], 5);
  ASSERT_OK_AND_ASSIGN(metadata::SegmentMaterialization row, this->metadata_->GetMaterialization(live_id));
  EXPECT_EQ(row.users_count, 5);
  EXPECT_EQ(row.trigger, "incremental");
  // The others wait for a refresh.
  for (const json* doc : {&off, &fixed, &referencing}) {
    EXPECT_EQ(MemberSet(service, (*doc)["id"]), before) << (*doc)["name"];
    EXPECT_TRUE(stack->UpdatesOf((*doc)["id"], sequence).empty()) << (*doc)["name"];
  }

  // A full evaluation agrees: a refresh changes nothing.
  const PipelineRun full = this->Refresh(service, live_id);
  ASSERT_EQ(full.status, "completed") << full.error;
  EXPECT_EQ(full.result["added"], 0);
  EXPECT_EQ(full.result["removed"], 0);
  EXPECT_EQ(MemberSet(service, live_id), after);
  const PipelineRun referencing_run = this->Refresh(service, referencing["id"]);
  ASSERT_EQ(referencing_run.status, "completed") << referencing_run.error;
  EXPECT_EQ(MemberSet(service, referencing["id"]), after);

  // Events that change no membership publish nothing.
  const int64_t quiet = stack->LastSequence();
  const int64_t later = common::NowMillis() - 5;
  service.OnEventsStored(this->Append(store, {{"u0", kView, later}, {"u8", kBuy, later}}));
  service.FlushIncrementalForTest();
  EXPECT_TRUE(stack->UpdatesOf(live_id, quiet).empty());
  EXPECT_EQ(MemberSet(service, live_id), reference());

  // Deleting the only incremental segment: the intake may stop collecting users.
  ASSERT_OK(service.Delete(live_id, kAdmin));
  EXPECT_FALSE(service.WantsStoredUsers());
}

// The first refresh of a live segment evaluates at its start: events stored while it runs are later than its as_of,
// so the incremental update must still apply them once the members exist (not drop them for lack of members).
TYPED_TEST(SegmentServiceTest, EventsStoredWhileTheFirstRefreshRunsAreNotLost) {
  store::EmbeddedEventStore& base = this->Fresh();
  FaultyStore store(base);
  const int64_t start = common::NowMillis() - 60000;
  this->Append(store, {{"a", kBuy, start}, {"a", kBuy, start + 1}});
  auto stack = this->StartStack(store);
  OpenOnExit open_on_exit(store.gate());
  SegmentService& service = stack->service();
  store.gate().Close();
  const json rule = {{"performed", {{"event_type", kBuy}, {"count", {{"gte", 2}}}}}};
  ASSERT_OK_AND_ASSIGN(json live, service.Create(Dynamic("live_first", rule), kAdmin));
  ASSERT_TRUE(store.gate().WaitForWaiters(1));  // the refresh has begun: its as_of is taken
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const int64_t now = common::NowMillis();
  service.OnEventsStored(this->Append(store, {{"b", kBuy, now}, {"b", kBuy, now}}));
  // Incremental passes (every 20 ms) take the users while the segment has no members yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  store.gate().Open();
  ASSERT_OK_AND_ASSIGN(PipelineRun run, WaitForRun(*this->metadata_, live["refresh_run_id"].get<std::string>()));
  ASSERT_EQ(run.status, "completed") << run.error;
  EXPECT_LT(Ms(run.result["as_of"].get<std::string>()), now) << "the refresh evaluated before b's events";
  EXPECT_EQ(run.result["users_count"], 1) << run.result.dump();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  service.FlushIncrementalForTest();
  EXPECT_EQ(MemberSet(service, live["id"]), (std::set<std::string>{"a", "b"}))
      << "b's events were stored (and reported) after the first refresh's as_of, before its members existed";
}

// Refresh runs a stopped process left queued or running are run by the next one (through the service's handler).
TYPED_TEST(SegmentServiceTest, RefreshRunsLeftUnfinishedRunAfterARestart) {
  store::EmbeddedEventStore& store = this->Fresh();
  this->Append(store, {{"early", kBuy, Ms("2024-05-01T10:00:00Z")}, {"late", kBuy, Ms("2024-05-03T10:00:00Z")}});
  std::string id;
  {
    auto stack = this->StartStack(store);
    id = this->CreateId(stack->service(),
                        Dynamic("recovered", {{"performed", {{"event_type", kBuy}}}}, "2024-06-01T00:00:00Z"));
    EXPECT_EQ(MemberSet(stack->service(), id), (std::set<std::string>{"early", "late"}));
  }
  const int64_t base = common::NowMillis() - 1000;
  PipelineRun running;
  running.id = common::NewUuid();
  running.kind = segments::kRefreshKind;
  running.target = id;
  running.status = "running";
  running.parameters = {{"trigger", "manual"}, {"as_of", "2024-05-02T00:00:00.000Z"}};
  running.requested_by = kAdmin;
  running.created_at_ms = base;
  running.started_at_ms = base + 1;
  PipelineRun queued = running;
  queued.id = common::NewUuid();
  queued.status = "queued";
  queued.started_at_ms = 0;
  queued.created_at_ms = base + 2;
  queued.parameters = {{"trigger", "manual"}, {"as_of", "2024-05-04T00:00:00.000Z"}};
  ASSERT_OK(this->metadata_->CreatePipelineRun(running));
  ASSERT_OK(this->metadata_->CreatePipelineRun(queued));
  this->ReopenMetadata();
  auto stack = this->StartStack(store);
  ASSERT_OK_AND_ASSIGN(PipelineRun first, WaitForRun(*this->metadata_, running.id));
  EXPECT_EQ(first.status, "completed") << first.error;
  EXPECT_EQ(first.result["users_count"], 1);
  ASSERT_OK_AND_ASSIGN(PipelineRun second, WaitForRun(*this->metadata_, queued.id));
  EXPECT_EQ(second.status, "completed") << second.error;
  EXPECT_EQ(second.result["users_count"], 2);
  EXPECT_EQ(second.result["added"], 1);
  EXPECT_EQ(MemberSet(stack->service(), id), (std::set<std::string>{"early", "late"}));
  ASSERT_OK_AND_ASSIGN(json doc, stack->service().Get(id));
  EXPECT_EQ(doc["materialization"]["run_id"], queued.id);
  EXPECT_EQ(doc["materialization"]["as_of"], "2024-05-04T00:00:00.000Z");
}

// ---- Erasure ----------------------------------------------------------------------------------------------------------

TYPED_TEST(SegmentServiceTest, ErasedUsersLeaveEverySegmentDurably) {
  store::EmbeddedEventStore& store = this->Fresh();
  const int64_t start = Ms("2024-05-01T10:00:00Z");
  for (int user = 0; user < 6; ++user) {
    this->Append(store, {{"e" + std::to_string(user), kBuy, start + user}});
  }
  const json rule = {{"performed", {{"event_type", kBuy}}}};
  std::string dynamic_id, static_id, other_id;
  const std::string erased = this->P("e1");
  {
    auto stack = this->StartStack(store);
    SegmentService& service = stack->service();
    dynamic_id = this->CreateId(service, Dynamic("buyers", rule, "2024-06-01T00:00:00Z"));
    static_id = this->CreateId(service, Static("chosen", {"e1", "e2", "ghost"}));
    other_id = this->CreateId(service, Static("others", {"e3"}));
    EXPECT_EQ(UsersCountOf(service, dynamic_id), 6);
    const int64_t sequence = stack->LastSequence();

    // As the intake does it: the store erases, then the hook.
    ASSERT_OK(store.EraseUser(erased));
    service.OnUserErased(erased);
    EXPECT_EQ(UsersCountOf(service, dynamic_id), 5);
    EXPECT_EQ(UsersCountOf(service, static_id), 2);
    EXPECT_EQ(UsersCountOf(service, other_id), 1);
    EXPECT_FALSE(ContainsOf(service, dynamic_id, "e1"));
    EXPECT_FALSE(ContainsOf(service, static_id, "e1"));
    EXPECT_EQ(MemberSet(service, dynamic_id), (std::set<std::string>{"e0", "e2", "e3", "e4", "e5"}));
    EXPECT_EQ(MemberSet(service, static_id), (std::set<std::string>{"e2", "ghost"}));
    for (const std::string& id : {dynamic_id, static_id}) {
      auto updates = stack->UpdatesOf(id, sequence);
      ASSERT_EQ(updates.size(), 1u) << id;
      EXPECT_EQ(updates[0]["data"]["removed"], 1);
      EXPECT_EQ(updates[0]["data"]["added"], 0);
      EXPECT_EQ(updates[0]["data"]["trigger"], "erasure");
    }
    EXPECT_TRUE(stack->UpdatesOf(other_id, sequence).empty());
    // A user in no segment: nothing is published.
    const int64_t quiet = stack->LastSequence();
    service.OnUserErased(this->P("stranger"));
    EXPECT_EQ(stack->LastSequence(), quiet);
  }
  for (const auto& [id, count] : std::vector<std::pair<std::string, int64_t>>{{dynamic_id, 5}, {static_id, 2}}) {
    ASSERT_OK_AND_ASSIGN(metadata::SegmentMaterialization row, this->metadata_->GetMaterialization(id));
    EXPECT_EQ(row.users_count, count) << "the erasure is persisted";
  }
  this->ReopenMetadata();
  auto stack = this->StartStack(store);
  SegmentService& service = stack->service();
  EXPECT_EQ(UsersCountOf(service, dynamic_id), 5);
  EXPECT_EQ(UsersCountOf(service, static_id), 2);
  EXPECT_FALSE(ContainsOf(service, dynamic_id, "e1"));
  EXPECT_EQ(MemberSet(service, static_id), (std::set<std::string>{"e2", "ghost"}));
  // A refresh does not bring the user back (the store erased them too).
  const PipelineRun run = this->Refresh(service, dynamic_id);
  ASSERT_EQ(run.status, "completed") << run.error;
  EXPECT_EQ(run.result["users_count"], 5);
  EXPECT_EQ(run.result["added"], 0);
  EXPECT_EQ(run.result["removed"], 0);
}

// ---- The pipeline runner alone ---------------------------------------------------------------------------------------

template <typename Backend>
class PipelineRunnerTest : public ::testing::Test {
 protected:
  static constexpr char kKind[] = "test_job";

  void SetUp() override { ASSERT_OK_AND_ASSIGN(metadata_, backend_.Open()); }

  // A handler that passes `gate`, records the run and answers {"target": target}, or fails for target "fail"
  // and throws for target "throw".
  jobs::RunHandler Recording(Gate& gate) {
    return [this, &gate](const PipelineRun& run, jobs::RunContext& /*context*/) -> Result<json> {
      gate.Pass();
      {
        std::lock_guard lock(mu_);
        ran_.push_back(run.id);
      }
      if (run.target == "fail") return Status::Unavailable("the job could not run");
      if (run.target == "throw") throw std::runtime_error("boom");
      return json{{"target", run.target}};
    };
  }
  std::vector<std::string> Ran() {
    std::lock_guard lock(mu_);
    return ran_;
  }

  Backend backend_;
  std::unique_ptr<MetadataStore> metadata_;
  std::mutex mu_;
  std::vector<std::string> ran_;  // guarded by mu_
};

TYPED_TEST_SUITE(PipelineRunnerTest, MetadataBackends, MetadataBackendNames);

TYPED_TEST(PipelineRunnerTest, IdenticalQueuedRunsAreCoalesced) {
  Gate gate;
  gate.Close();
  jobs::PipelineRunner runner(*this->metadata_);
  OpenOnExit open_on_exit(gate);
  runner.Register(this->kKind, this->Recording(gate));
  ASSERT_OK(runner.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun running, runner.Submit(this->kKind, "a", {{"n", 1}}, "tester"));
  ASSERT_TRUE(gate.WaitForWaiters(1));
  ASSERT_OK_AND_ASSIGN(PipelineRun queued, runner.Submit(this->kKind, "b", {{"n", 1}}, "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun joined, runner.Submit(this->kKind, "b", {{"n", 1}}, "someone-else"));
  EXPECT_EQ(joined.id, queued.id);
  EXPECT_EQ(joined.requested_by, "tester");
  ASSERT_OK_AND_ASSIGN(PipelineRun other_parameters, runner.Submit(this->kKind, "b", {{"n", 2}}, "tester"));
  EXPECT_NE(other_parameters.id, queued.id);
  ASSERT_OK_AND_ASSIGN(PipelineRun other_target, runner.Submit(this->kKind, "c", {{"n", 1}}, "tester"));
  EXPECT_NE(other_target.id, queued.id);
  // Identical to the running one: a new run (the running one may have read its input already).
  ASSERT_OK_AND_ASSIGN(PipelineRun after_running, runner.Submit(this->kKind, "a", {{"n", 1}}, "tester"));
  EXPECT_NE(after_running.id, running.id);
  EXPECT_EQ(runner.Pending(), 5u);
  auto unknown = runner.Submit("no_such_kind", "a", json(), "tester");
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);

  metadata::PipelineRunFilter filter;
  filter.kind = this->kKind;
  ASSERT_OK_AND_ASSIGN(auto stored, this->metadata_->ListPipelineRuns(filter));
  EXPECT_EQ(stored.size(), 5u) << "a joined run is not stored twice";
  ASSERT_OK_AND_ASSIGN(PipelineRun queued_row, this->metadata_->GetPipelineRun(queued.id));
  EXPECT_EQ(queued_row.status, "queued");
  ASSERT_OK_AND_ASSIGN(PipelineRun running_row, this->metadata_->GetPipelineRun(running.id));
  EXPECT_EQ(running_row.status, "running");
  EXPECT_GT(running_row.started_at_ms, 0);

  gate.Open();
  const std::vector<std::string> order = {running.id, queued.id, other_parameters.id, other_target.id, after_running.id};
  for (const std::string& id : order) {
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, id));
    EXPECT_EQ(done.status, "completed") << done.error;
    ExpectRunDocument(done, this->kKind, done.target, done.parameters, "tester", "completed");
    EXPECT_EQ(done.result, json({{"target", done.target}}));
  }
  EXPECT_EQ(this->Ran(), order) << "each run once, in submit order";
  // A run's stored document reads completed a moment before its worker leaves the running count.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (runner.Pending() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(runner.Pending(), 0u);

  // Failures are recorded with their message.
  ASSERT_OK_AND_ASSIGN(PipelineRun failing, runner.Submit(this->kKind, "fail", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun throwing, runner.Submit(this->kKind, "throw", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun failed, WaitForRun(*this->metadata_, failing.id));
  ExpectRunDocument(failed, this->kKind, "fail", json::object(), "tester", "failed");
  EXPECT_EQ(failed.error, "the job could not run");
  ASSERT_OK_AND_ASSIGN(PipelineRun thrown, WaitForRun(*this->metadata_, throwing.id));
  EXPECT_EQ(thrown.status, "failed");
  EXPECT_EQ(thrown.error, "pipeline run failed: boom");
}

TYPED_TEST(PipelineRunnerTest, StartRecoversRunsLeftQueuedOrRunning) {
  auto make = [](const std::string& id, const std::string& status, int64_t created, const std::string& kind) {
    PipelineRun run;
    run.id = id;
    run.kind = kind;
    run.target = "t-" + id;
    run.status = status;
    run.parameters = {{"trigger", "manual"}};
    run.requested_by = "previous-process";
    run.created_at_ms = created;
    if (status != "queued") run.started_at_ms = created + 10;
    if (status == "completed" || status == "failed") {
      run.finished_at_ms = created + 20;
      if (status == "completed") run.result = {{"done", true}};
      if (status == "failed") run.error = "earlier failure";
    }
    return run;
  };
  const int64_t base = common::NowMillis() - 600000;
  const std::vector<PipelineRun> runs = {make("run-queued", "queued", base + 1000, "test_job"),
                                         make("run-running", "running", base + 2000, "test_job"),
                                         make("run-completed", "completed", base + 500, "test_job"),
                                         make("run-failed", "failed", base + 600, "test_job"),
                                         make("run-unknown-kind", "queued", base + 3000, "retired_job")};
  for (const PipelineRun& run : runs) ASSERT_OK(this->metadata_->CreatePipelineRun(run));

  Gate gate;
  jobs::PipelineRunner runner(*this->metadata_);
  runner.Register(this->kKind, this->Recording(gate));
  ASSERT_OK(runner.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun queued, WaitForRun(*this->metadata_, "run-queued"));
  EXPECT_EQ(queued.status, "completed") << queued.error;
  EXPECT_EQ(queued.result, json({{"target", "t-run-queued"}}));
  EXPECT_EQ(queued.requested_by, "previous-process");
  ASSERT_OK_AND_ASSIGN(PipelineRun running, WaitForRun(*this->metadata_, "run-running"));
  EXPECT_EQ(running.status, "completed") << running.error;
  EXPECT_GT(running.started_at_ms, base + 2010) << "it ran again from the start";
  EXPECT_EQ(this->Ran(), (std::vector<std::string>{"run-queued", "run-running"})) << "oldest first; finished runs never";
  // Another kind belongs to another runner over the same store: left alone.
  ASSERT_OK_AND_ASSIGN(PipelineRun other_kind, this->metadata_->GetPipelineRun("run-unknown-kind"));
  EXPECT_EQ(other_kind.status, "queued");
  EXPECT_EQ(other_kind.started_at_ms, 0);
  for (const PipelineRun& finished : {runs[2], runs[3]}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun row, this->metadata_->GetPipelineRun(finished.id));
    EXPECT_EQ(row.status, finished.status);
    EXPECT_EQ(row.finished_at_ms, finished.finished_at_ms);
    EXPECT_EQ(row.result, finished.result);
    EXPECT_EQ(row.error, finished.error);
  }
  ASSERT_OK_AND_ASSIGN(auto unfinished, this->metadata_->ListUnfinishedPipelineRuns());
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].id, "run-unknown-kind");
}

TYPED_TEST(PipelineRunnerTest, StopFinishesTheRunningRunAndLeavesQueuedRunsQueued) {
  Gate gate;
  gate.Close();
  std::string queued_id, running_id;
  {
    jobs::PipelineRunner runner(*this->metadata_);
    OpenOnExit open_on_exit(gate);
    runner.Register(this->kKind, this->Recording(gate));
    ASSERT_OK(runner.Start());
    ASSERT_OK_AND_ASSIGN(PipelineRun running, runner.Submit(this->kKind, "a", json(), "tester"));
    running_id = running.id;
    ASSERT_TRUE(gate.WaitForWaiters(1));
    ASSERT_OK_AND_ASSIGN(PipelineRun queued, runner.Submit(this->kKind, "b", json(), "tester"));
    queued_id = queued.id;
    std::thread stopper([&] { runner.Stop(); });
    // Until Stop has begun, the same submission joins the queued run; then it is refused.
    Status refused;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto again = runner.Submit(this->kKind, "b", json(), "tester");
      if (!again.ok()) {
        refused = again.status();
        break;
      }
      EXPECT_EQ(again->id, queued_id);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();
    gate.Open();
    stopper.join();
    ASSERT_OK_AND_ASSIGN(PipelineRun finished, this->metadata_->GetPipelineRun(running_id));
    EXPECT_EQ(finished.status, "completed") << "Stop waits for the running run";
    ASSERT_OK_AND_ASSIGN(PipelineRun left, this->metadata_->GetPipelineRun(queued_id));
    EXPECT_EQ(left.status, "queued");
    EXPECT_EQ(left.started_at_ms, 0);
    EXPECT_EQ(runner.Submit(this->kKind, "c", json(), "tester").status().code(), StatusCode::kUnavailable);
  }
  EXPECT_EQ(this->Ran(), std::vector<std::string>{running_id});
  // The next process runs it.
  jobs::PipelineRunner next(*this->metadata_);
  next.Register(this->kKind, this->Recording(gate));
  ASSERT_OK(next.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, queued_id));
  EXPECT_EQ(done.status, "completed") << done.error;
  EXPECT_EQ(this->Ran(), (std::vector<std::string>{running_id, queued_id}));
}

// Polls until runner.Pending() is `count` (a run's stored document is final a moment before its worker leaves the
// running count); false after 20 s.
bool WaitForPending(const jobs::PipelineRunner& runner, size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (runner.Pending() != count) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TYPED_TEST(PipelineRunnerTest, CancelOfAQueuedRunStoresItCancelledAndItNeverRuns) {
  Gate gate;
  gate.Close();
  jobs::PipelineRunner runner(*this->metadata_);
  OpenOnExit open_on_exit(gate);
  runner.Register(this->kKind, this->Recording(gate));
  ASSERT_OK(runner.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun running, runner.Submit(this->kKind, "a", json(), "tester"));
  ASSERT_TRUE(gate.WaitForWaiters(1));
  ASSERT_OK_AND_ASSIGN(PipelineRun queued, runner.Submit(this->kKind, "b", {{"n", 1}}, "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun later, runner.Submit(this->kKind, "c", json(), "tester"));
  EXPECT_EQ(runner.Pending(), 3u);

  const int64_t before_cancel = common::NowMillis();
  ASSERT_OK_AND_ASSIGN(PipelineRun cancelled, runner.Cancel(queued.id, "admin-1"));
  EXPECT_EQ(cancelled.status, "cancelled");
  EXPECT_EQ(cancelled.error, "cancelled by admin-1");
  EXPECT_GE(cancelled.finished_at_ms, before_cancel);
  EXPECT_EQ(cancelled.started_at_ms, 0);
  EXPECT_EQ(runner.Pending(), 2u) << "it left the queue at once";
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->metadata_->GetPipelineRun(queued.id));
  EXPECT_EQ(stored.status, "cancelled");
  EXPECT_EQ(stored.error, "cancelled by admin-1");
  EXPECT_EQ(stored.finished_at_ms, cancelled.finished_at_ms);
  EXPECT_EQ(stored.parameters, json({{"n", 1}}));
  EXPECT_EQ(stored.requested_by, "tester");
  EXPECT_TRUE(stored.result.is_null());
  EXPECT_EQ(jobs::RunToJson(stored)["status"], "cancelled");
  EXPECT_TRUE(jobs::RunToJson(stored)["duration_ms"].is_null()) << "it never started";
  // A cancelled run is finished: cancelling it again finds nothing, and the same work queues anew.
  EXPECT_EQ(runner.Cancel(queued.id, "admin-2").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(PipelineRun again, runner.Submit(this->kKind, "b", {{"n", 1}}, "tester"));
  EXPECT_NE(again.id, queued.id);

  gate.Open();
  for (const std::string& id : {running.id, later.id, again.id}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, id));
    EXPECT_EQ(done.status, "completed") << done.error;
  }
  EXPECT_EQ(this->Ran(), (std::vector<std::string>{running.id, later.id, again.id}));
  ASSERT_OK_AND_ASSIGN(stored, this->metadata_->GetPipelineRun(queued.id));
  EXPECT_EQ(stored.status, "cancelled") << "never run";
  EXPECT_TRUE(WaitForPending(runner, 0));
}

TYPED_TEST(PipelineRunnerTest, CancelOfARunningRunIsSeenByItsHandlerAndStoredCancelled) {
  // The handler works in steps until it sees the cancel; target "fail" then answers an error, others success:
  // either way the run ends cancelled.
  Gate started;
  started.Close();
  std::atomic<int> stopped_early = 0;
  jobs::PipelineRunner runner(*this->metadata_);
  OpenOnExit open_on_exit(started);
  runner.Register(this->kKind, [&](const PipelineRun& run, jobs::RunContext& context) -> Result<json> {
    context.Progress(0.25);
    started.Pass();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!context.cancelled()) {
      if (std::chrono::steady_clock::now() > deadline) return json{{"finished", "without a cancel"}};
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ++stopped_early;
    if (run.target == "fail") return Status::Unavailable("stopped half-way");
    return json{{"partial", true}};
  });
  ASSERT_OK(runner.Start());

  for (const std::string target : {"ok", "fail"}) {
    SCOPED_TRACE(target);
    started.Close();
    ASSERT_OK_AND_ASSIGN(PipelineRun submitted, runner.Submit(this->kKind, target, json(), "tester"));
    ASSERT_TRUE(started.WaitForWaiters(1));
    started.Open();
    ASSERT_OK_AND_ASSIGN(PipelineRun answered, runner.Cancel(submitted.id, "admin-1"));
    EXPECT_EQ(answered.id, submitted.id);
    EXPECT_EQ(answered.status, "running") << "until its handler returns";
    // A second cancel while it runs answers it again; the first actor is the one recorded.
    auto second = runner.Cancel(submitted.id, "admin-2");
    if (second.ok()) {
      EXPECT_EQ(second->id, submitted.id);
    } else {
      EXPECT_EQ(second.status().code(), StatusCode::kNotFound) << "only once it has finished";
    }
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, submitted.id));
    ExpectRunDocument(done, this->kKind, target, json::object(), "tester", "cancelled");
    EXPECT_EQ(done.error, "cancelled by admin-1");
    EXPECT_TRUE(done.result.is_null()) << done.result.dump();
    EXPECT_EQ(done.progress, 0.25) << "the last progress reported is kept";
    EXPECT_TRUE(WaitForPending(runner, 0));
    EXPECT_EQ(runner.Cancel(submitted.id, "admin-1").status().code(), StatusCode::kNotFound);
  }
  EXPECT_EQ(stopped_early.load(), 2);
}

TYPED_TEST(PipelineRunnerTest, CancelOfAnUnknownFinishedOrForeignRunIsNotFound) {
  Gate gate;
  jobs::PipelineRunner runner(*this->metadata_);
  runner.Register(this->kKind, this->Recording(gate));
  ASSERT_OK(runner.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun submitted, runner.Submit(this->kKind, "a", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, submitted.id));
  ASSERT_EQ(done.status, "completed");
  // Queued in the store by another runner (another kind, or another process): not this runner's to cancel.
  PipelineRun foreign{.id = "foreign-run", .kind = "other_job", .target = "x", .status = "queued",
                      .created_at_ms = common::NowMillis()};
  ASSERT_OK(this->metadata_->CreatePipelineRun(foreign));
  for (const std::string& id : {submitted.id, std::string("no-such-run"), std::string("foreign-run")}) {
    auto cancelled = runner.Cancel(id, "admin-1");
    EXPECT_EQ(cancelled.status().code(), StatusCode::kNotFound) << id;
  }
  ASSERT_OK_AND_ASSIGN(PipelineRun still, this->metadata_->GetPipelineRun(submitted.id));
  EXPECT_EQ(still.status, "completed");
  ASSERT_OK_AND_ASSIGN(PipelineRun untouched, this->metadata_->GetPipelineRun("foreign-run"));
  EXPECT_EQ(untouched.status, "queued");
}

TYPED_TEST(PipelineRunnerTest, ProgressIsStoredThrottledAndClampedAndCompletionStoresOne) {
  Gate first_step, second_step;
  first_step.Close();
  second_step.Close();
  std::atomic<bool> surely_throttled = false;
  jobs::PipelineRunner runner(*this->metadata_);
  OpenOnExit open_first(first_step);
  OpenOnExit open_second(second_step);
  runner.Register(this->kKind, [&](const PipelineRun& run, jobs::RunContext& context) -> Result<json> {
    if (run.target == "fail") {
      context.Progress(0.3);
      context.Progress(std::nan(""));  // ignored
      return Status::Unavailable("the job could not finish");
    }
    if (run.target == "clamp") {
      context.Progress(1.7);
      return Status::Unavailable("the job could not finish");
    }
    const auto before_first = std::chrono::steady_clock::now();
    context.Progress(0.1);  // the first report is stored at once
    context.Progress(0.2);  // within 200 ms of it: not stored
    surely_throttled = std::chrono::steady_clock::now() - before_first < std::chrono::milliseconds(150);
    first_step.Pass();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    context.Progress(0.6);
    second_step.Pass();
    context.Progress(-1);  // clamped to 0; completion stores 1 anyway
    return json{{"done", true}};
  });
  ASSERT_OK(runner.Start());

  ASSERT_OK_AND_ASSIGN(PipelineRun submitted, runner.Submit(this->kKind, "steps", json(), "tester"));
  ASSERT_TRUE(first_step.WaitForWaiters(1));
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->metadata_->GetPipelineRun(submitted.id));
  EXPECT_EQ(stored.status, "running");
  if (surely_throttled) {
    EXPECT_EQ(stored.progress, 0.1);
  } else {  // the machine was too slow to tell: the second report may have been stored
    EXPECT_TRUE(stored.progress == 0.1 || stored.progress == 0.2) << stored.progress;
  }
  EXPECT_EQ(jobs::RunToJson(stored)["progress"], stored.progress);
  first_step.Open();
  ASSERT_TRUE(second_step.WaitForWaiters(1));
  ASSERT_OK_AND_ASSIGN(stored, this->metadata_->GetPipelineRun(submitted.id));
  EXPECT_EQ(stored.progress, 0.6) << "250 ms after the last store";
  second_step.Open();
  ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, submitted.id));
  ExpectRunDocument(done, this->kKind, "steps", json::object(), "tester", "completed");
  EXPECT_EQ(done.progress, 1.0);

  // Runs that do not complete keep the last fraction reported (clamped), stored or not.
  ASSERT_OK_AND_ASSIGN(PipelineRun failing, runner.Submit(this->kKind, "fail", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun failed, WaitForRun(*this->metadata_, failing.id));
  EXPECT_EQ(failed.status, "failed");
  EXPECT_EQ(failed.progress, 0.3);
  ASSERT_OK_AND_ASSIGN(PipelineRun clamping, runner.Submit(this->kKind, "clamp", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun clamped, WaitForRun(*this->metadata_, clamping.id));
  EXPECT_EQ(clamped.status, "failed");
  EXPECT_EQ(clamped.progress, 1.0);
}

TYPED_TEST(PipelineRunnerTest, RunnersOfDifferentKindsOnOneStoreRecoverOnlyTheirOwnRuns) {
  const int64_t base = common::NowMillis() - 600000;
  auto make = [&](const std::string& id, const std::string& kind, const std::string& status, int64_t offset) {
    PipelineRun run{.id = id, .kind = kind, .target = "t-" + id, .status = status, .requested_by = "previous-process",
                    .created_at_ms = base + offset};
    if (status == "running") run.started_at_ms = base + offset + 10;
    return run;
  };
  const std::vector<PipelineRun> runs = {make("a-queued", "job_a", "queued", 1), make("b-queued", "job_b", "queued", 2),
                                         make("a-running", "job_a", "running", 3),
                                         make("b-running", "job_b", "running", 4)};
  for (const PipelineRun& run : runs) ASSERT_OK(this->metadata_->CreatePipelineRun(run));

  std::mutex mu;
  std::map<std::string, std::vector<std::string>> ran;  // kind -> run ids; guarded by mu
  auto recorder = [&](const std::string& kind) {
    return [&, kind](const PipelineRun& run, jobs::RunContext&) -> Result<json> {
      std::lock_guard lock(mu);
      ran[kind].push_back(run.id);
      return json{{"kind", kind}};
    };
  };
  jobs::PipelineRunner runner_a(*this->metadata_);
  runner_a.Register("job_a", recorder("job_a"));
  ASSERT_OK(runner_a.Start());
  for (const char* id : {"a-queued", "a-running"}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, id));
    EXPECT_EQ(done.status, "completed") << done.error;
  }
  // job_b's runs wait for their own runner, exactly as they were left.
  for (const PipelineRun& run : {runs[1], runs[3]}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun row, this->metadata_->GetPipelineRun(run.id));
    EXPECT_EQ(row.status, run.status);
    EXPECT_EQ(row.started_at_ms, run.started_at_ms);
  }
  EXPECT_EQ(runner_a.Cancel("b-queued", "admin-1").status().code(), StatusCode::kNotFound);

  jobs::PipelineRunner runner_b(*this->metadata_, {.workers = 2});
  runner_b.Register("job_b", recorder("job_b"));
  ASSERT_OK(runner_b.Start());
  for (const char* id : {"b-queued", "b-running"}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, id));
    EXPECT_EQ(done.status, "completed") << done.error;
    EXPECT_EQ(done.result, json({{"kind", "job_b"}}));
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(ran["job_a"], (std::vector<std::string>{"a-queued", "a-running"}));
  std::vector<std::string> ran_b = ran["job_b"];
  std::sort(ran_b.begin(), ran_b.end());  // two workers: either order
  EXPECT_EQ(ran_b, (std::vector<std::string>{"b-queued", "b-running"}));
}

TYPED_TEST(PipelineRunnerTest, PendingCountsQueuedAndRunningRuns) {
  Gate gate;
  gate.Close();
  jobs::PipelineRunner runner(*this->metadata_, {.workers = 2});
  OpenOnExit open_on_exit(gate);
  runner.Register(this->kKind, this->Recording(gate));
  EXPECT_EQ(runner.Pending(), 0u);
  // Before Start, submitted runs wait in the queue.
  ASSERT_OK_AND_ASSIGN(PipelineRun first, runner.Submit(this->kKind, "a", json(), "tester"));
  EXPECT_EQ(runner.Pending(), 1u);
  ASSERT_OK(runner.Start());
  ASSERT_OK_AND_ASSIGN(PipelineRun second, runner.Submit(this->kKind, "b", json(), "tester"));
  ASSERT_TRUE(gate.WaitForWaiters(2));  // both workers busy
  ASSERT_OK_AND_ASSIGN(PipelineRun third, runner.Submit(this->kKind, "c", json(), "tester"));
  ASSERT_OK_AND_ASSIGN(PipelineRun joined, runner.Submit(this->kKind, "c", json(), "tester"));
  EXPECT_EQ(joined.id, third.id);
  ASSERT_OK_AND_ASSIGN(PipelineRun fourth, runner.Submit(this->kKind, "d", json(), "tester"));
  EXPECT_EQ(runner.Pending(), 4u) << "2 running + 2 queued; a joined submission is not counted twice";
  ASSERT_OK(runner.Cancel(fourth.id, "admin-1"));
  EXPECT_EQ(runner.Pending(), 3u);
  // A cancelled running run counts until its handler returns.
  ASSERT_OK(runner.Cancel(first.id, "admin-1"));
  EXPECT_EQ(runner.Pending(), 3u);
  gate.Open();
  ASSERT_OK_AND_ASSIGN(PipelineRun cancelled, WaitForRun(*this->metadata_, first.id));
  EXPECT_EQ(cancelled.status, "cancelled");
  for (const std::string& id : {second.id, third.id}) {
    ASSERT_OK_AND_ASSIGN(PipelineRun done, WaitForRun(*this->metadata_, id));
    EXPECT_EQ(done.status, "completed") << done.error;
  }
  EXPECT_TRUE(WaitForPending(runner, 0));
}

}  // namespace
}  // namespace analytics::testing
