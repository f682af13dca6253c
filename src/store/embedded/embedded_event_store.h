// EmbeddedEventStore: the default EventStore: an LSM of immutable columnar segments in the data dir.
//
// Rationale: one machine, nothing else to install, events durable before they are acknowledged and readable
// at once. Layout under `dir` (docs/formats/embedded-store.md):
//   wal/                      write-ahead log (wal/wal.h); a record = one appended batch (events/event_rows.h)
//   segments/<YYYY-MM-DD>/    immutable columnar segments (segment.h), one day partition per folder
//   MANIFEST                  JSON: flushed WAL sequence, live segments, erased users (atomic replace)
//   erasures-<generation>.log the users erased since the MANIFEST was written (erasure_log.h)
// Write path: dedup + erasure check → WAL append (group commit, fdatasync) → memtable (queryable at once).
// A background thread flushes the memtable to segments (one per day partition) when it is large or old,
// then records the flushed sequence in the MANIFEST and deletes covered WAL files. Recovery reads the
// MANIFEST, drops segment files it does not list (an interrupted flush), replays the WAL after the flushed
// sequence, and rebuilds the dedup window from recent segments and the replayed events.
// Background work (one maintenance thread): compaction merges the small segments of a day partition
// (compaction.h); retention drops day partitions older than `retention_days`; the purge of erased users.
// Erasure is two steps: at once (EraseUser) the user is recorded as erased (durably); reads leave their
// events out of the memtable (the next flush drops them, and its WAL truncation the WAL records, recovery
// filtering them until then) and out of segments; after `purge_delay_ms` the maintenance thread rewrites the
// segments holding them (one pass for every user erased meanwhile), so an erasure costs the intake request a
// line in the erasure log (erasure_log.h) and a WAL roll, not a MANIFEST write (it lists every user ever
// erased), a flush or a rewrite of the store; nor does it wait for a flush in progress.
// Segment files are reference-counted: a replaced segment is deleted when the last reader lets go of it.
// Memory is bounded by options: the memtable by events and bytes (appends wait for the flush when twice the
// limit is buffered: backpressure), the dedup index by `dedup_max_bytes` (dedup_index.h), a merge by
// `compaction.max_rows`.
// Concurrency: appenders hold `flush_gate_` shared from dedup claim to memtable insert; the flusher takes it
// exclusively only to swap the memtable, so every WAL record up to the swap is in the swapped memtable.
// Lock order: flush_mu_ → manifest_mu_ → flush_gate_ → dedup_mu_ → mem_mu_ → segments_mu_.
// Limitations: Scan decodes whole segments (it is a debugging read-back, not an analytics path).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/embedded/compaction.h"
#include "store/embedded/dedup_index.h"
#include "store/embedded/erasure_log.h"
#include "store/embedded/query_exec.h"
#include "store/embedded/segment.h"
#include "store/embedded/user_set.h"
#include "store/event_store.h"

namespace analytics::store {
namespace wal {
class WalWriter;
}

struct EmbeddedEventStoreOptions {
  std::string dir;                          // created if missing
  bool sync = true;                         // fdatasync the WAL before acknowledging (off only in benchmarks)
  uint64_t wal_max_file_bytes = 64 << 20;
  uint64_t memtable_max_events = 1000000;   // flush when the memtable holds this many events
  uint64_t memtable_max_bytes = 256 << 20;  // ... or this many bytes (estimated); appends wait at twice
  int64_t flush_interval_ms = 10000;        // ... or when its oldest event is this old
  int64_t append_wait_ms = 30000;           // an append waiting for the flush gives up (Unavailable) after this
  int64_t dedup_window_ms = 7LL * 86400000; // (source, id) repeats within this window are duplicates
  uint64_t dedup_max_bytes = 512 << 20;     // memory of the dedup index; the window shrinks beyond it
  int64_t retention_days = 0;               // keep events of the last N days (by event time); 0 = forever
  embedded::CompactionOptions compaction;
  int64_t maintenance_interval_ms = 30000;  // compaction and retention run this often (and after flushes)
  // Erased users' events, hidden from queries at once, stay in segment files at most about this long (plus one
  // maintenance interval) before maintenance rewrites them out: erasures arriving meanwhile share one rewrite.
  int64_t purge_delay_ms = 300000;
  uint64_t query_cache_bytes = 256 << 20;   // partial aggregates of segments kept for repeated queries
  int query_threads = 0;                    // segments decoded in parallel; 0 = hardware threads
  int zstd_level = 3;
};

class EmbeddedEventStore final : public EventStore {
 public:
  // Recovers the store in options.dir. Corruption (naming the file and offset) when the WAL is damaged in the
  // middle; a torn WAL tail is dropped and logged; a damaged segment is quarantined (renamed *.corrupt) and
  // reported by Ping/Stats.
  static common::Result<std::unique_ptr<EmbeddedEventStore>> Open(const EmbeddedEventStoreOptions& options);
  ~EmbeddedEventStore() override;

  using EventStore::Append;
  common::Result<AppendResult> Append(events::EventRows batch) override;
  common::Result<ScanResult> Scan(const ScanQuery& query) override;
  common::Result<std::shared_ptr<const query::AggregateResult>> Aggregate(const query::AggregateQuery& query) override;
  int64_t NewestEventMs() override;
  // Session marks are built per segment whatever the period and cached (partial cache, "sessions|" keys).
  common::Result<query::PairedSessions> Sessions(const query::SessionQuery& query) override;
  common::Result<std::shared_ptr<const query::Timeline>> ReadTimeline(const query::TimelineQuery& query) override;
  // The user directory's ids (embedded::UserDirectory): one lock round for all of them (two when some are new).
  common::Result<std::vector<uint32_t>> UserIds(const std::vector<std::string>& users) override;
  common::Result<std::vector<std::string>> UserNames(const std::vector<uint32_t>& ids) override;
  common::Result<uint64_t> EraseUser(const std::string& user, bool count_events = true) override;
  common::Status AllowUser(const std::string& user) override;
  common::Status Ping() override;
  nlohmann::json Stats() override;

  // Writes the memtable to segments now (also used at shutdown).
  common::Status Flush();
  // One round of background work now: the purge of erased users (whatever purge_delay_ms says), retention,
  // then compaction of every partition that needs it (an old day counts as closed whatever
  // compaction.settle_ms says).
  common::Status RunMaintenance();
  // What recovery found at Open (for logs and the crash-safety tests).
  const nlohmann::json& recovery_report() const { return recovery_report_; }
  // Called by a merge after it wrote its output, before it swaps it in (to erase users meanwhile in tests).
  // Set before the merge runs.
  void SetBeforeCompactionSwapForTest(std::function<void()> hook) {
    before_compaction_swap_for_test_ = std::move(hook);
  }
  // Called by a flush after its segments are written and visible to reads, before the MANIFEST lists them (to
  // erase users or copy the files meanwhile in tests). Set before the flush runs.
  void SetBeforeFlushManifestForTest(std::function<void()> hook) { before_flush_manifest_for_test_ = std::move(hook); }

 private:
  // One appended batch (one WAL record) in memory: the record's row-format bytes and a view of each event in
  // them. Immutable once published, so a flush or a query reads it without the lock and an append adds a whole
  // batch with one pointer (no per-event move); an erasure replaces a batch holding the user with a filtered
  // copy (sharing the bytes).
  // Rationale: a batch of events as owned strings took ~900 bytes and ~7 allocations per event, allocated by
  // the handler threads and freed by the flusher; the bytes the WAL needs anyway, plus the views, take ~60% of
  // that in two allocations, and the handler frees its StoredEvents itself, right after the append.
  struct MemBatch {
    // Takes the rows' buffer and views; `memory_bytes` counts them and the allocations' overhead.
    MemBatch(uint64_t batch_sequence, events::EventRows rows);

    uint64_t sequence = 0;
    std::shared_ptr<const std::string> bytes;  // row format (events/event_rows.h); `events` point into it
    std::vector<events::EventView> events;
    uint64_t memory_bytes = 0;
  };
  using MemBatchRef = std::shared_ptr<const MemBatch>;
  // The memtable rows a query reads: pointers into batches the view keeps alive.
  struct MemoryView {
    std::vector<MemBatchRef> batches;
    std::vector<const events::EventView*> rows;
    bool scoped_out = false;  // the query's scope left out every row it would have read
  };
  // A live segment file; deleted from disk when it is obsolete (replaced or expired) and the last reader
  // holding it lets go.
  struct LiveSegment {
    embedded::SegmentInfo info;
    int64_t day = 0;
    int64_t flushed_ms = 0;  // steady clock when a flush wrote it; 0 for merged, purged and recovered segments
    std::atomic<bool> obsolete{false};
    ~LiveSegment();
  };
  using SegmentRef = std::shared_ptr<LiveSegment>;

  explicit EmbeddedEventStore(EmbeddedEventStoreOptions options);
  common::Status Recover();
  // Rebuilds the dedup window from the segments received since `window_start_ms` (newest first, up to what
  // the index keeps after giving up days); quarantines a segment whose columns do not decode.
  common::Status RecoverDedupWindow(int64_t window_start_ms);
  // Writes the MANIFEST from the current state and starts a new erasure log. Callers hold flush_mu_:
  // segments and the flushed sequence change only under it, so the pair written is consistent.
  common::Status WriteManifest();
  // Makes the erasure of `user` durable: a line in the erasure log. Needs no flush_mu_, and writes no segment
  // change that its owner (a flush, purge, compaction) has not written.
  common::Status WriteErasure(const std::string& user);
  void ExpireDedupLocked(int64_t now_ms);
  void FlushLoop();
  void MaintenanceLoop();
  // RunMaintenance when `now`; else the background round: the purge only once its delay is over, and an old
  // day counts as closed for compaction only once it settled (compaction.settle_ms).
  common::Status MaintenanceRound(bool now);
  common::Status FlushLocked(std::unique_lock<std::mutex>& flush_lock);
  // Rewrites every segment holding events of a user whose purge is pending, without them (erasure's second,
  // physical step; maintenance runs it, and so does a re-registration of such a user before its first event).
  // Both first flush when the WAL may still hold events of erased users (see erasure_wal_sequence_).
  common::Status PurgeErasedUsers();
  common::Status PurgeLocked(std::unique_lock<std::mutex>& flush_lock);
  // The erased users whose events may still be in segments (queries leave their rows out), and a query's
  // cache-key fingerprint extended with the epoch that names this set (unchanged when the set is empty).
  struct PendingPurgeView {
    std::set<std::string, std::less<>> unpurged;
    std::string fingerprint;
  };
  PendingPurgeView PendingPurge(std::string fingerprint);
  // Waits until the memtable has room (backpressure); Unavailable after append_wait_ms.
  common::Status WaitForMemtableRoom();
  // The first day (days since the epoch) retention keeps; INT64_MIN when retention is off.
  int64_t FirstRetainedDay() const;
  std::string NextSegmentPath(int64_t day);
  common::Status ApplyRetention();
  // Merges one group of segments; Ok without change when an erasure or another rewrite got there first.
  common::Status Compact(const std::vector<SegmentRef>& inputs);
  std::vector<SegmentRef> SegmentsSnapshot();
  // What a query reads: the matching memtable rows and the segments that may hold matching rows, as one
  // consistent view (a flush cannot make an event appear in both or neither). With query.scope, only the rows of
  // its users (segments are restricted as they are read, query_exec.h).
  void QueryView(const query::AggregateQuery& query, MemoryView& memory, std::vector<SegmentRef>& segments);

  const EmbeddedEventStoreOptions options_;
  std::unique_ptr<wal::WalWriter> wal_;
  nlohmann::json recovery_report_;

  // Appenders share it from dedup claim to memtable insert; the flusher takes it exclusively to swap.
  std::shared_mutex flush_gate_;
  std::mutex flush_mu_;  // one flush, erasure rewrite or segment-changing manifest write at a time
  // One MANIFEST write or erasure log append at a time. An erasure appends to the log while a flush may still
  // be busy writing segments (intake must not wait ~0.5 s for that); a MANIFEST write, whose erased users
  // include the log's, starts the next log generation (erasure_log.h).
  std::mutex manifest_mu_;
  std::unique_ptr<embedded::ErasureLog> erasure_log_;  // guarded by manifest_mu_

  std::mutex dedup_mu_;
  embedded::DedupIndex dedup_;                                        // guarded by dedup_mu_
  embedded::UserSet erased_users_;                                      // guarded by dedup_mu_
  uint64_t erasure_generation_ = 0;                                   // guarded by dedup_mu_; +1 per erasure
  // Erased users whose events may still be in segments (queries leave their rows out until the purge).
  std::set<std::string, std::less<>> purge_pending_;                  // guarded by dedup_mu_
  uint64_t purge_epoch_ = 0;                                          // guarded by dedup_mu_; +1 per change
  std::atomic<size_t> purge_pending_count_{0};                        // purge_pending_.size(), lock-free
  // The WAL's last sequence when the latest erasure rolled it: until a flush covers it, older WAL files may
  // hold erased users' events (recovery filters them), so a re-registration flushes first.
  std::atomic<uint64_t> erasure_wal_sequence_{0};
  std::atomic<int64_t> purge_pending_since_ms_{0};  // wall time the oldest pending erasure was made (or recovered)

  mutable std::mutex mem_mu_;
  std::vector<MemBatchRef> memtable_;                                 // guarded by mem_mu_
  uint64_t memtable_events_ = 0;                                      // guarded by mem_mu_
  std::vector<MemBatchRef> flushing_;                                 // guarded by mem_mu_; being written
  uint64_t flushing_events_ = 0;                                      // guarded by mem_mu_
  int64_t memtable_oldest_ms_ = 0;                                    // guarded by mem_mu_ (steady clock)
  uint64_t memtable_bytes_ = 0;                                       // guarded by mem_mu_ (estimate)
  uint64_t flushing_bytes_ = 0;                                       // guarded by mem_mu_
  std::condition_variable mem_cv_;                                    // room in the memtable (with mem_mu_)

  std::mutex segments_mu_;
  std::vector<SegmentRef> segments_;                                  // guarded by segments_mu_
  std::vector<std::string> corrupt_segments_;                         // guarded by segments_mu_
  std::string last_maintenance_error_;                                // guarded by segments_mu_
  std::atomic<uint64_t> flushed_sequence_{0};  // written under flush_mu_; Append reads it without the lock
  std::atomic<uint64_t> segment_counter_{0};                          // names new segment files

  std::atomic<bool> failed_{false};
  std::string failure_;  // set once before failed_ becomes true
  std::atomic<uint64_t> appended_events_{0};
  std::atomic<uint64_t> duplicate_events_{0};
  std::atomic<int64_t> newest_event_ms_{INT64_MIN};  // event time of the newest appended or recovered event
  std::atomic<uint64_t> expired_events_{0};       // dropped by retention (at flush or with their partition)
  std::atomic<uint64_t> compactions_{0};
  std::atomic<uint64_t> compacted_segments_{0};   // inputs merged away
  std::atomic<uint64_t> compacted_rows_{0};       // rows they held (each rewritten once more)
  std::atomic<uint64_t> compaction_conflicts_{0}; // merges discarded at the swap (inputs or their users changed)
  std::atomic<uint64_t> flushes_{0};              // flushes that wrote segments
  std::atomic<uint64_t> flushed_events_{0};       // events they wrote
  std::atomic<uint64_t> flush_micros_{0};         // wall time they took, summed
  std::atomic<uint64_t> purges_{0};               // purge passes that rewrote segments for erased users
  std::atomic<uint64_t> purged_segments_{0};      // segments rewritten (or dropped) by them
  std::atomic<uint64_t> backpressure_waits_{0};   // appends that waited for the flush

  embedded::UserDirectory user_directory_;
  embedded::PartialCache partial_cache_;
  // ReadTimeline: per segment join, the memtable state (batch sequences, purge epoch) its last request merged on
  // top. A merged answer is cached once a second request finds the memtable unchanged (a quiet store), never
  // under live intake, where each answer would be a dead copy of the join in the cache.
  std::mutex merged_mu_;
  std::unordered_map<std::string, std::string> last_memory_key_;  // guarded by merged_mu_

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;  // guarded by loop_mu_
  bool maintenance_due_ = false;  // guarded by loop_mu_; a flush wrote segments
  std::thread flusher_;
  std::thread maintainer_;
  std::function<void()> before_compaction_swap_for_test_;
  std::function<void()> before_flush_manifest_for_test_;

  // What queries keep of each segment (footers, the dense ids of its users: query_exec.h), in a budget of its
  // own: kept whatever query_cache_bytes says, like the user directory.
  static constexpr uint64_t kSegmentStateBytes = 256ULL << 20;
  embedded::SegmentCache segment_cache_{kSegmentStateBytes};
};

}  // namespace analytics::store
