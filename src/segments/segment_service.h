// SegmentService: audience segments (docs/segments.md): definitions, refreshes as pipeline runs, materialized
// members, membership checks for services, the restriction of metric and analysis queries, and
// segment.updated events.
//
// Rationale:
// - Members are a CRoaring bitmap over member indexes (member_index.h), persisted with every change (the
//   MetadataStore's materialization row: bitmap, users_count, as_of, refreshed_at, duration, added/removed)
//   and held in memory, so users-count and contains answer from memory in microseconds.
// - A dynamic segment's rule (rule.h) is evaluated by the store's timelines (rule_eval.h) into the store's
//   dense ids; two maps (store id ↔ member index, grown on demand) convert between the two id spaces, so a
//   repeated refresh converts with array lookups only.
// - Refreshes run on the PipelineRunner (kind "segment_refresh"): on demand (POST .../refresh), on a schedule
//   (`refresh_every`), when the definition changes, and at the first event after midnight for incremental
//   segments. Incremental segments (a live `as_of`, rules that only read the user's own events) are also updated
//   as events arrive: about once a second the users whose events were stored are evaluated again (the rule's
//   windows cannot move for anyone else within a calendar day), without a pipeline run.
// - Restricting a query: ScopeOf gives the members as store ids (query::UserScope), cached per materialization.
// Thread-safety: thread-safe. Changes of one segment's members are serialized by a per-segment lock.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "bus/event_bus.h"
#include "common/status.h"
#include "events/pseudonymizer.h"
#include "jobs/pipeline_runner.h"
#include "metadata/metadata_store.h"
#include "query/user_scope.h"
#include "segments/definition.h"
#include "segments/member_index.h"
#include "store/event_store.h"

namespace analytics::segments {

inline constexpr char kRefreshKind[] = "segment_refresh";
inline constexpr char kUpdatedType[] = "com.platform.analytics.segment.updated.v1";

// Computes a static segment's source (a saved analysis result) as store ids: set by the composition root
// (analysis::FunnelUsers for {"funnel", "step", "users"}).
using SourceEvaluator = std::function<common::Result<query::Roaring>(const nlohmann::json& source)>;

struct SegmentServiceOptions {
  size_t query_threads = 0;             // rule evaluation (0: the machine's cores)
  int64_t incremental_interval_ms = 1000;  // how often stored events' users are evaluated again
  size_t max_pending_users = 200000;    // beyond this many waiting users, a full refresh is queued instead
  int64_t schedule_check_ms = 1000;     // how often schedules are checked
  int64_t max_members_page = 10000;     // GET members: limit at most
};

class SegmentService {
 public:
  SegmentService(metadata::MetadataStore& metadata, store::EventStore& store,
                 const events::Pseudonymizer& pseudonymizer, bus::EventBus& bus, jobs::PipelineRunner& runner,
                 SegmentServiceOptions options = {});
  ~SegmentService();

  // Registers the refresh job kind with the runner (call before runner.Start()).
  void RegisterJobs();
  // Loads the member index, the definitions and the materializations; starts the schedule and incremental
  // threads.
  common::Status Start();
  void Stop();
  void SetSourceEvaluator(SourceEvaluator evaluator) { source_evaluator_ = std::move(evaluator); }

  // The API documents (docs/segments.md). Errors: NotFound (SEGMENT_NOT_FOUND), InvalidArgument with the field,
  // AlreadyExists (name taken), FailedPrecondition (version conflict on update; in use on delete: the message
  // says which).
  common::Result<nlohmann::json> Create(const nlohmann::json& body, const std::string& actor);
  common::Result<nlohmann::json> Get(const std::string& id);
  common::Result<nlohmann::json> List(const std::optional<std::string>& type);
  // `expected_version`: If-Match (nullopt: last writer wins).
  common::Result<nlohmann::json> Update(const std::string& id, const nlohmann::json& body,
                                        std::optional<int64_t> expected_version, const std::string& actor);
  common::Status Delete(const std::string& id, const std::string& actor);
  // Queues a refresh; `body` may hold {"as_of": ts}. The queued run.
  common::Result<metadata::PipelineRun> RequestRefresh(const std::string& id, const nlohmann::json& body,
                                                       const std::string& actor);
  // Static segments: replace / add / remove members (original ids or pseudonyms).
  common::Result<nlohmann::json> Upload(const std::string& id, const std::vector<std::string>& user_ids,
                                        const std::string& mode, const std::string& actor);
  // FailedPrecondition (DATA_NOT_YET_AVAILABLE) before the first materialization.
  common::Result<nlohmann::json> UsersCount(const std::string& id);
  common::Result<nlohmann::json> Contains(const std::string& id, const std::string& user_id);
  // Original user ids (the one place pseudonyms are reversed; audited), in member-index order after `cursor`.
  common::Result<nlohmann::json> Members(const std::string& id, const std::string& cursor, int64_t limit,
                                         const std::string& actor);
  // The members as a query restriction. NotFound / FailedPrecondition as UsersCount.
  common::Result<query::UserScope> ScopeOf(const std::string& id);

  // Hooks: users (pseudonyms) whose events were just stored; a user whose data was erased.
  void OnEventsStored(std::vector<std::string> users);
  void OnUserErased(const std::string& user);
  // True when some segment is updated as events arrive (the intake may skip collecting users otherwise).
  bool WantsStoredUsers() const { return incremental_segments_.load(std::memory_order_relaxed) > 0; }

  // Waits until no incremental update is pending (tests).
  void FlushIncrementalForTest();

 private:
  struct Materialized {
    metadata::SegmentMaterialization row;     // bitmap bytes cleared after loading
    std::shared_ptr<const query::Roaring> members;  // member indexes
    uint64_t generation = 0;                  // distinct per materialization in this process
  };
  struct Entry {
    metadata::SegmentRecord record;
    SegmentDefinition definition;
    std::shared_ptr<const Materialized> current;  // null before the first materialization
    std::shared_ptr<std::mutex> write_mu = std::make_shared<std::mutex>();
    std::optional<query::UserScope> scope;        // cached ScopeOf for `current`
    uint64_t scope_generation = 0;
    int64_t last_scheduled_ms = 0;                // guarded by mu_; when the schedule last queued a refresh
  };

  common::Result<nlohmann::json> Refresh(const metadata::PipelineRun& run);
  common::Result<nlohmann::json> Commit(const std::string& id, query::Roaring members, int64_t as_of_ms,
                                        const std::string& trigger, const std::string& run_id, int64_t started_ms,
                                        int64_t definition_version);
  // Converts between store ids and member indexes through the two maps; `resolve` gives the other side's id
  // (kNoUser: none) of the ids the maps do not know yet.
  using Resolver = std::function<common::Result<std::vector<uint32_t>>(const std::vector<uint32_t>& ids)>;
  common::Result<query::Roaring> Translate(const query::Roaring& from, bool to_members, const Resolver& resolve);
  common::Result<query::Roaring> ToMemberIndexes(const query::Roaring& store_ids);
  common::Result<query::Roaring> ToStoreIds(const query::Roaring& member_indexes);
  common::Result<query::Roaring> MembersFromUserIds(const std::vector<std::string>& user_ids);
  common::Result<std::shared_ptr<const query::Roaring>> StoreMembersOf(const std::string& id);
  common::Status CheckReferences(const std::string& id, const SegmentDefinition& definition);
  nlohmann::json Document(const Entry& entry) const;
  std::shared_ptr<Entry> Find(const std::string& id) const;
  void ScheduleLoop();
  void IncrementalPass();
  void CountIncremental();

  metadata::MetadataStore& metadata_;
  store::EventStore& store_;
  const events::Pseudonymizer& pseudonymizer_;
  bus::EventBus& bus_;
  jobs::PipelineRunner& runner_;
  const SegmentServiceOptions options_;
  SourceEvaluator source_evaluator_;
  MemberIndex index_;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // guarded by mu_; by segment id
  uint64_t next_generation_ = 1;                           // guarded by mu_
  std::atomic<int> incremental_segments_{0};

  std::mutex ids_mu_;
  std::vector<uint32_t> store_to_member_;  // guarded by ids_mu_; kNoUser when not known yet
  std::vector<uint32_t> member_to_store_;  // guarded by ids_mu_

  std::mutex pending_mu_;
  std::condition_variable pending_cv_;
  std::unordered_set<std::string> pending_users_;  // guarded by pending_mu_
  bool pending_overflow_ = false;                   // guarded by pending_mu_
  bool incremental_busy_ = false;                   // guarded by pending_mu_

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;  // guarded by loop_mu_
  std::thread loop_;
};

}  // namespace analytics::segments
