// EmbeddedEventStore: the default EventStore: an LSM of immutable columnar segments in the data dir.
//
// Rationale: one machine, nothing else to install, events durable before they are acknowledged and readable
// at once. Layout under `dir` (docs/formats/embedded-store.md):
//   wal/                      write-ahead log (wal/wal.h); a record = one appended batch (codec.h row format)
//   segments/<YYYY-MM-DD>/    immutable columnar segments (segment.h), one day partition per folder
//   MANIFEST                  JSON: flushed WAL sequence, live segments, erased users (atomic replace)
// Write path: dedup + erasure check → WAL append (group commit, fdatasync) → memtable (queryable at once).
// A background thread flushes the memtable to segments (one per day partition) when it is large or old,
// then records the flushed sequence in the MANIFEST and deletes covered WAL files. Recovery reads the
// MANIFEST, drops segment files it does not list (an interrupted flush), replays the WAL after the flushed
// sequence, and rebuilds the dedup window from recent segments and the replayed events.
// Concurrency: appenders hold `flush_gate_` shared from dedup claim to memtable insert; the flusher takes it
// exclusively only to swap the memtable, so every WAL record up to the swap is in the swapped memtable.
// Limitations: the dedup index keeps every (source, id) of the window in memory (about 60 bytes each);
// Scan decodes whole segments (it is a debugging read-back, not an analytics path).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "store/embedded/segment.h"
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
  int64_t flush_interval_ms = 10000;        // ... or when its oldest event is this old
  int64_t dedup_window_ms = 7LL * 86400000; // (source, id) repeats within this window are duplicates
  int zstd_level = 3;
};

class EmbeddedEventStore final : public EventStore {
 public:
  // Recovers the store in options.dir. Corruption (naming the file and offset) when the WAL is damaged in the
  // middle; a torn WAL tail is dropped and logged; a damaged segment is quarantined (renamed *.corrupt) and
  // reported by Ping/Stats.
  static common::Result<std::unique_ptr<EmbeddedEventStore>> Open(const EmbeddedEventStoreOptions& options);
  ~EmbeddedEventStore() override;

  common::Result<AppendResult> Append(std::vector<events::StoredEvent> batch) override;
  common::Result<ScanResult> Scan(const ScanQuery& query) override;
  common::Result<uint64_t> EraseUser(const std::string& user) override;
  common::Status AllowUser(const std::string& user) override;
  common::Status Ping() override;
  nlohmann::json Stats() override;

  // Writes the memtable to segments now (also used at shutdown).
  common::Status Flush();
  // What recovery found at Open (for logs and the crash-safety tests).
  const nlohmann::json& recovery_report() const { return recovery_report_; }

 private:
  struct DedupKey {
    uint64_t a, b;
    bool operator==(const DedupKey& other) const { return a == other.a && b == other.b; }
  };
  struct DedupKeyHash {
    size_t operator()(const DedupKey& key) const { return key.a ^ (key.b * 0x9E3779B97F4A7C15ULL); }
  };
  struct MemtableEntry {
    uint64_t sequence;
    events::StoredEvent event;
  };

  explicit EmbeddedEventStore(EmbeddedEventStoreOptions options);
  common::Status Recover();
  common::Status WriteManifest();
  static DedupKey KeyOf(const events::StoredEvent& event);
  void RememberKeyLocked(const DedupKey& key, int64_t received_ms);
  void ExpireDedupLocked(int64_t now_ms);
  void FlushLoop();
  common::Status FlushLocked(std::unique_lock<std::mutex>& flush_lock);
  common::Status RewriteSegmentsWithout(const std::string& user, uint64_t& removed);

  const EmbeddedEventStoreOptions options_;
  std::unique_ptr<wal::WalWriter> wal_;
  nlohmann::json recovery_report_;

  // Appenders share it from dedup claim to memtable insert; the flusher takes it exclusively to swap.
  std::shared_mutex flush_gate_;
  std::mutex flush_mu_;  // one flush, erasure rewrite or manifest write at a time

  std::mutex dedup_mu_;
  std::unordered_set<DedupKey, DedupKeyHash> dedup_;                  // guarded by dedup_mu_
  std::map<int64_t, std::vector<DedupKey>> dedup_by_day_;             // guarded by dedup_mu_; day → keys
  std::set<std::string, std::less<>> erased_users_;                   // guarded by dedup_mu_

  mutable std::mutex mem_mu_;
  std::vector<MemtableEntry> memtable_;                               // guarded by mem_mu_
  std::shared_ptr<const std::vector<MemtableEntry>> flushing_;        // guarded by mem_mu_; being written
  int64_t memtable_oldest_ms_ = 0;                                    // guarded by mem_mu_ (steady clock)

  std::mutex segments_mu_;
  std::vector<embedded::SegmentInfo> segments_;                       // guarded by segments_mu_
  std::vector<std::string> corrupt_segments_;                         // guarded by segments_mu_
  uint64_t flushed_sequence_ = 0;                                     // guarded by flush_mu_
  uint64_t segment_counter_ = 0;                                      // guarded by flush_mu_

  std::atomic<bool> failed_{false};
  std::string failure_;  // set once before failed_ becomes true
  std::atomic<uint64_t> appended_events_{0};
  std::atomic<uint64_t> duplicate_events_{0};

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool stopping_ = false;  // guarded by loop_mu_
  std::thread flusher_;
};

}  // namespace analytics::store
