// Embedded event store: write path, flush, recovery, erasure, read-back.
#include "store/embedded/embedded_event_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "common/parallel.h"
#include "common/time_util.h"
#include "store/embedded/codec.h"
#include "store/embedded/file_util.h"
#include "query/aggregator.h"
#include "store/embedded/segment_reader.h"
#include "store/embedded/wal/wal.h"

namespace analytics::store {

namespace fs = std::filesystem;
using common::Result;
using common::Status;
using events::StoredEvent;

namespace {

constexpr char kRegisteredType[] = "com.platform.account.user.registered.v1";
constexpr int64_t kDayMs = 86400000;

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t DayOf(int64_t unix_ms) { return unix_ms >= 0 ? unix_ms / kDayMs : (unix_ms - kDayMs + 1) / kDayMs; }

std::string DayName(int64_t day) {
  return common::FormatRfc3339Millis(day * kDayMs).substr(0, 10);  // YYYY-MM-DD
}

// Memory of a memtable batch besides its rows and views (EventRows::MemoryBytes): the allocations' overhead.
constexpr uint64_t kBatchOverheadBytes = 128;


// Cursor "<time_ms>:<id>" — opaque to clients.
std::string EncodeCursor(const StoredEvent& event) { return std::to_string(event.time_ms) + ":" + event.id; }

bool DecodeCursor(const std::string& cursor, int64_t& time_ms, std::string& id) {
  size_t colon = cursor.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  try {
    size_t used = 0;
    time_ms = std::stoll(cursor.substr(0, colon), &used);
    if (used != colon) return false;
  } catch (...) {
    return false;
  }
  id = cursor.substr(colon + 1);
  return true;
}

bool EventOrder(const StoredEvent& a, const StoredEvent& b) {
  if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
  if (a.id != b.id) return a.id < b.id;
  return a.source < b.source;
}

}  // namespace

EmbeddedEventStore::MemBatch::MemBatch(uint64_t batch_sequence, events::EventRows rows)
    : sequence(batch_sequence), memory_bytes(kBatchOverheadBytes + rows.MemoryBytes()) {
  auto released = std::move(rows).Release();
  bytes = std::move(released.bytes);
  events = std::move(released.views);
}

EmbeddedEventStore::EmbeddedEventStore(EmbeddedEventStoreOptions options)
    : options_(std::move(options)), dedup_(options_.dedup_max_bytes), partial_cache_(options_.query_cache_bytes) {}

EmbeddedEventStore::LiveSegment::~LiveSegment() {
  if (obsolete) {
    std::error_code ec;
    fs::remove(info.path, ec);
  }
}

void EmbeddedEventStore::ExpireDedupLocked(int64_t now_ms) { dedup_.ExpireBefore(DayOf(now_ms - options_.dedup_window_ms)); }

int64_t EmbeddedEventStore::FirstRetainedDay() const {
  if (options_.retention_days <= 0) return INT64_MIN;
  return DayOf(common::NowMillis()) - options_.retention_days + 1;
}

std::string EmbeddedEventStore::NextSegmentPath(int64_t day) {
  const fs::path dir = fs::path(options_.dir) / "segments" / DayName(day);
  std::error_code ec;
  fs::create_directories(dir, ec);
  char name[48];
  std::snprintf(name, sizeof(name), "seg-%020llu.col", static_cast<unsigned long long>(++segment_counter_));
  return (dir / name).string();
}

std::vector<EmbeddedEventStore::SegmentRef> EmbeddedEventStore::SegmentsSnapshot() {
  std::lock_guard lock(segments_mu_);
  return segments_;
}

Result<std::unique_ptr<EmbeddedEventStore>> EmbeddedEventStore::Open(const EmbeddedEventStoreOptions& options) {
  std::unique_ptr<EmbeddedEventStore> store(new EmbeddedEventStore(options));
  std::error_code ec;
  fs::create_directories(fs::path(options.dir) / "segments", ec);
  if (ec) return Status::IOError("cannot create " + options.dir + ": " + ec.message());
  ANALYTICS_RETURN_IF_ERROR(store->Recover());
  wal::WalOptions wal_options;
  wal_options.dir = (fs::path(options.dir) / "wal").string();
  wal_options.max_file_bytes = options.wal_max_file_bytes;
  wal_options.sync = options.sync;
  const uint64_t next = std::max<uint64_t>(store->recovery_report_.value("last_sequence", uint64_t{0}),
                                           store->flushed_sequence_.load()) + 1;
  ANALYTICS_ASSIGN_OR_RETURN(store->wal_, wal::WalWriter::Open(wal_options, next));
  // Replayed WAL files may hold events of erased users (filtered on replay, still on disk).
  if (!store->erased_users_.empty()) store->erasure_wal_sequence_ = next - 1;
  store->flusher_ = std::thread([raw = store.get()] { raw->FlushLoop(); });
  store->maintenance_due_ = store->purge_pending_count_ > 0;  // a purge a restart interrupted goes on at once
  store->purge_pending_since_ms_ = common::NowMillis() - store->options_.purge_delay_ms;
  store->maintainer_ = std::thread([raw = store.get()] { raw->MaintenanceLoop(); });
  return store;
}

EmbeddedEventStore::~EmbeddedEventStore() {
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (maintainer_.joinable()) maintainer_.join();
  if (wal_ && !failed_) {
    // A clean shutdown leaves no WAL to replay: everything is flushed, and the WAL is rolled to an empty file
    // so that the covered files can go (a failure only leaves records that replay skips).
    Status status = Flush();
    if (status.ok()) status = wal_->Roll();
    if (status.ok()) {
      std::lock_guard flush_lock(flush_mu_);
      status = wal_->Truncate(flushed_sequence_);
    }
    (void)status;
  }
}

Status EmbeddedEventStore::Recover() {
  const auto started = std::chrono::steady_clock::now();
  const fs::path root(options_.dir);
  const fs::path manifest_path = root / "MANIFEST";
  std::set<std::string> listed;
  uint64_t erasure_log_generation = 0;  // a store that never wrote a MANIFEST logs its erasures in generation 0
  if (fs::exists(manifest_path)) {
    std::ifstream file(manifest_path);
    std::stringstream buffer;
    buffer << file.rdbuf();
    auto manifest = nlohmann::json::parse(buffer.str(), nullptr, false);
    if (manifest.is_discarded() || !manifest.is_object()) {
      return Status::Corruption("event store manifest " + manifest_path.string() + " is not valid JSON");
    }
    flushed_sequence_ = manifest.value("flushed_sequence", uint64_t{0});
    segment_counter_ = manifest.value("segment_counter", uint64_t{0});
    for (const auto& segment : manifest.value("segments", nlohmann::json::array())) {
      listed.insert(segment.get<std::string>());
    }
    for (const auto& user : manifest.value("erased_users", nlohmann::json::array())) {
      erased_users_.insert(user.get<std::string>());
    }
    for (const auto& user : manifest.value("purge_pending", nlohmann::json::array())) {
      purge_pending_.insert(user.get<std::string>());
    }
    erasure_log_generation = manifest.value("erasure_log", uint64_t{0});
  }
  // Erasures made after that MANIFEST was written. A log that exists is taken into a new MANIFEST at the end
  // (a torn last line must not be followed by new lines).
  ANALYTICS_ASSIGN_OR_RETURN(const std::optional<std::vector<std::string>> erasure_log,
                             embedded::ErasureLog::Read(options_.dir, erasure_log_generation));
  const std::vector<std::string> logged_erasures = erasure_log.value_or(std::vector<std::string>{});
  for (const auto& user : logged_erasures) {
    erased_users_.insert(user);
    purge_pending_.insert(user);
  }
  purge_pending_count_ = purge_pending_.size();
  embedded::ErasureLog::RemoveOthers(options_.dir, erasure_log_generation);
  erasure_log_ = std::make_unique<embedded::ErasureLog>(options_.dir, erasure_log_generation);
  // Segment files: keep the listed ones; remove leftovers of an interrupted flush; quarantine damaged ones.
  uint64_t removed_leftovers = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root / "segments", ec); !ec && it != fs::end(it); ++it) {
    if (!it->is_regular_file()) continue;
    const fs::path path = it->path();
    const std::string relative = fs::relative(path, root / "segments").string();
    if (path.extension() == ".col" && listed.count(relative)) continue;
    if (path.extension() == ".corrupt") {
      corrupt_segments_.push_back(path.string());
      continue;
    }
    fs::remove(path, ec);
    ++removed_leftovers;
  }
  const int64_t now_ms = common::NowMillis();
  const int64_t window_start_ms = now_ms - options_.dedup_window_ms;
  for (const auto& relative : listed) {
    const std::string path = (root / "segments" / relative).string();
    auto info = embedded::ReadSegmentInfo(path);
    if (!info.ok()) {
      corrupt_segments_.push_back(path + ": " + info.status().message());
      fs::rename(path, path + ".corrupt", ec);
      continue;
    }
    auto live = std::make_shared<LiveSegment>();
    live->day = DayOf(info->min_time_ms);
    live->info = std::move(info).value();
    newest_event_ms_ = std::max(newest_event_ms_.load(), live->info.max_time_ms);
    segments_.push_back(std::move(live));
  }
  ANALYTICS_RETURN_IF_ERROR(RecoverDedupWindow(window_start_ms));
  // WAL after the flushed sequence.
  uint64_t replayed_events = 0;
  auto replay = wal::ReplayWal(
      (root / "wal").string(), flushed_sequence_, [&](uint64_t sequence, std::string_view payload) -> Status {
        ANALYTICS_ASSIGN_OR_RETURN(events::EventRows batch, events::EventRows::Decode(payload));
        std::vector<bool> keep(batch.size(), true);
        size_t kept = 0;
        for (size_t event_idx = 0; event_idx < batch.size(); ++event_idx) {
          const events::EventView& event = batch[event_idx];
          if (erased_users_.count(event.user)) {
            keep[event_idx] = false;
            continue;
          }
          dedup_.Insert(embedded::DedupIndex::KeyOf(event.source, event.id), DayOf(event.received_ms));
          newest_event_ms_ = std::max(newest_event_ms_.load(), event.time_ms);
          ++kept;
        }
        if (kept == 0) return Status::Ok();
        if (kept < batch.size()) batch = batch.Subset(keep);
        replayed_events += kept;
        auto mem = std::make_shared<MemBatch>(sequence, std::move(batch));
        memtable_bytes_ += mem->memory_bytes;
        memtable_events_ += kept;
        memtable_.push_back(std::move(mem));
        return Status::Ok();
      });
  if (!replay.ok()) return replay.status();
  memtable_oldest_ms_ = SteadyMillis();
  recovery_report_ = {
      {"flushed_sequence", flushed_sequence_.load()},
      {"last_sequence", std::max(replay->last_sequence, flushed_sequence_.load())},
      {"segments", segments_.size()},
      {"removed_unlisted_files", removed_leftovers},
      {"corrupt_segments", corrupt_segments_},
      {"wal_records_replayed", replay->records},
      {"wal_bytes_replayed", replay->bytes},
      {"wal_dropped_tail_bytes", replay->dropped_tail_bytes},
      {"wal_notes", replay->notes},
      {"events_replayed", replayed_events},
      {"erasures_replayed", logged_erasures.size()},
      {"dedup_keys", dedup_.size()},
      {"recovery_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count()}};
  if (erasure_log) ANALYTICS_RETURN_IF_ERROR(WriteManifest());
  return Status::Ok();
}

Status EmbeddedEventStore::RecoverDedupWindow(int64_t window_start_ms) {
  // The segments received within the window, newest first: when they hold more keys than the index keeps,
  // the newest are the ones worth keeping (retries repeat recent events), and the rest is not decoded at all.
  std::vector<SegmentRef> sources;
  for (const auto& segment : segments_) {
    if (segment->info.max_received_ms >= window_start_ms) sources.push_back(segment);
  }
  std::stable_sort(sources.begin(), sources.end(), [](const SegmentRef& a, const SegmentRef& b) {
    return a->info.max_received_ms > b->info.max_received_ms;
  });
  // Only the three columns the dedup window needs are decoded, and hashed, by several threads (a segment
  // each); the keys are inserted by this thread in the same order, so the result does not depend on timing.
  // At 100M events in the window this is most of the start-up time (65 s single-threaded, every id decoded).
  struct Decoded {
    common::Status status;
    std::vector<embedded::DedupKey> keys;
    std::vector<int64_t> days;
  };
  const size_t threads = common::QueryThreads(options_.query_threads);
  const size_t capacity = dedup_.settled_capacity();
  uint64_t window_rows = 0;
  for (const auto& segment : sources) window_rows += segment->info.rows;
  dedup_.Reserve(std::min<uint64_t>(window_rows, capacity));
  std::vector<SegmentRef> damaged;
  for (size_t wave_start = 0; wave_start < sources.size() && dedup_.size() < capacity; wave_start += threads) {
    const size_t wave_end = std::min(sources.size(), wave_start + threads);
    std::vector<Decoded> decoded(wave_end - wave_start);
    auto decode = [&](size_t source_idx) {
      Decoded& out = decoded[source_idx - wave_start];
      embedded::SegmentColumnRequest request;
      request.source = request.id = request.received = true;
      auto columns = embedded::ReadSegmentColumns(sources[source_idx]->info.path, request);
      if (!columns.ok()) {
        out.status = columns.status();
        return;
      }
      // The source is hashed once per dictionary entry, not per row.
      std::vector<uint64_t> source_seeds;
      source_seeds.reserve(columns->source.dictionary.size());
      for (const auto& source : columns->source.dictionary) {
        source_seeds.push_back(embedded::DedupIndex::SourceSeed(source));
      }
      out.keys.reserve(columns->rows);
      out.days.reserve(columns->rows);
      for (size_t row = 0; row < columns->rows; ++row) {
        const int64_t received_ms = columns->received_ms[row];
        if (received_ms < window_start_ms) continue;
        out.keys.push_back(embedded::DedupIndex::KeyOf(source_seeds[columns->source.codes[row]], columns->id[row]));
        out.days.push_back(DayOf(received_ms));
      }
    };
    common::ParallelFor(wave_end - wave_start, threads, [&](size_t idx) { decode(wave_start + idx); });
    for (size_t source_idx = wave_start; source_idx < wave_end; ++source_idx) {
      Decoded& out = decoded[source_idx - wave_start];
      if (!out.status.ok()) {
        corrupt_segments_.push_back(sources[source_idx]->info.path + ": " + out.status.message());
        damaged.push_back(sources[source_idx]);
        continue;
      }
      // Keys are random over the table: the slots of the next ones are prefetched so the misses overlap.
      constexpr size_t kPrefetchAhead = 16;
      for (size_t key_idx = 0; key_idx < std::min(kPrefetchAhead, out.keys.size()); ++key_idx) {
        dedup_.Prefetch(out.keys[key_idx]);
      }
      for (size_t key_idx = 0; key_idx < out.keys.size() && dedup_.size() < capacity; ++key_idx) {
        if (key_idx + kPrefetchAhead < out.keys.size()) dedup_.Prefetch(out.keys[key_idx + kPrefetchAhead]);
        dedup_.Insert(out.keys[key_idx], out.days[key_idx]);
      }
    }
  }
  for (const auto& segment : damaged) {
    std::error_code ec;
    fs::rename(segment->info.path, segment->info.path + ".corrupt", ec);
    std::erase(segments_, segment);
  }
  return Status::Ok();
}

Status EmbeddedEventStore::WriteManifest() {
  std::lock_guard manifest_lock(manifest_mu_);
  // The new MANIFEST's erased users include every line of the current log; later erasures go to the next one.
  const uint64_t next_generation = erasure_log_->generation() + 1;
  nlohmann::json manifest = {{"format", 1},
                             {"flushed_sequence", flushed_sequence_.load()},
                             {"segment_counter", segment_counter_.load()},
                             {"erasure_log", next_generation}};
  nlohmann::json segments = nlohmann::json::array();
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& segment : segments_) {
      segments.push_back(fs::relative(segment->info.path, fs::path(options_.dir) / "segments").string());
    }
  }
  manifest["segments"] = std::move(segments);
  {
    std::lock_guard lock(dedup_mu_);
    manifest["erased_users"] = erased_users_.sorted();
    manifest["purge_pending"] = purge_pending_;
  }
  Status status = embedded::WriteFileAtomically((fs::path(options_.dir) / "MANIFEST").string(), manifest.dump(1));
  if (!status.ok()) {
    erasure_log_->Stop(Status::IOError("erasures are refused after a failed MANIFEST write: " + status.message()));
    return status;
  }
  erasure_log_->Remove();
  erasure_log_ = std::make_unique<embedded::ErasureLog>(options_.dir, next_generation);
  return Status::Ok();
}

Status EmbeddedEventStore::WriteErasure(const std::string& user) {
  std::lock_guard manifest_lock(manifest_mu_);
  return erasure_log_->Append(user);
}

Status EmbeddedEventStore::WaitForMemtableRoom() {
  std::unique_lock lock(mem_mu_);
  auto full = [&] {
    return memtable_events_ + flushing_events_ >= 2 * options_.memtable_max_events ||
           memtable_bytes_ + flushing_bytes_ >= 2 * options_.memtable_max_bytes;
  };
  if (!full()) return Status::Ok();
  ++backpressure_waits_;
  loop_cv_.notify_all();
  if (!mem_cv_.wait_for(lock, std::chrono::milliseconds(options_.append_wait_ms), [&] { return !full() || failed_; })) {
    return Status::Unavailable("the event store is overloaded: flushing to segments cannot keep up; retry later");
  }
  return Status::Ok();
}

Result<AppendResult> EmbeddedEventStore::Append(events::EventRows batch) {
  if (failed_) return Status::Unavailable("event store failed earlier: " + failure_);
  batch.Seal();
  if (purge_pending_count_ > 0 || erasure_wal_sequence_ > flushed_sequence_) {
    // A user registering again gets new events; their old ones must be out of the segments first, or a later
    // purge could not tell the two apart, and out of the WAL, or a recovery would bring them back.
    bool purge_first = false;
    {
      std::lock_guard lock(dedup_mu_);
      for (const auto& event : batch) {
        purge_first |= event.type == kRegisteredType && erased_users_.count(event.user) > 0;
      }
    }
    if (purge_first) ANALYTICS_RETURN_IF_ERROR(PurgeErasedUsers());
  }
  ANALYTICS_RETURN_IF_ERROR(WaitForMemtableRoom());
  AppendResult result;
  result.outcomes.resize(batch.size(), AppendOutcome::kStored);
  std::shared_lock gate(flush_gate_);
  size_t accepted = 0;
  std::vector<bool> keep;  // filled only when an event is refused (the batch is then copied without it)
  std::vector<embedded::DedupKey> claimed;
  claimed.reserve(batch.size());
  std::vector<std::string> allowed_again;
  // Keys are hashed outside the lock; under it, every slot is prefetched before the first lookup.
  std::vector<embedded::DedupKey> keys(batch.size());
  for (size_t event_idx = 0; event_idx < batch.size(); ++event_idx) {
    keys[event_idx] = embedded::DedupIndex::KeyOf(batch[event_idx].source, batch[event_idx].id);
  }
  {
    std::lock_guard lock(dedup_mu_);
    for (const auto& key : keys) dedup_.Prefetch(key);
    auto refuse = [&](size_t event_idx, AppendOutcome outcome) {
      if (keep.empty()) keep.assign(batch.size(), true);
      keep[event_idx] = false;
      result.outcomes[event_idx] = outcome;
    };
    for (size_t event_idx = 0; event_idx < batch.size(); ++event_idx) {
      const events::EventView& event = batch[event_idx];
      if (!event.user.empty() && erased_users_.count(event.user)) {
        if (event.type != kRegisteredType) {
          refuse(event_idx, AppendOutcome::kUserErased);
          result.erased_ids.emplace_back(event.id);
          ++result.erased;
          continue;
        }
        erased_users_.erase(event.user);  // the user registered again
        allowed_again.emplace_back(event.user);
      }
      const embedded::DedupKey& key = keys[event_idx];
      if (!dedup_.Insert(key, DayOf(event.received_ms))) {
        refuse(event_idx, AppendOutcome::kDuplicate);
        ++result.duplicates;
        continue;
      }
      claimed.push_back(key);
      ++accepted;
    }
  }
  if (accepted > 0) {
    // The batch's rows are the WAL record and, with their views, the memtable batch.
    if (!keep.empty()) batch = batch.Subset(keep);
    auto sequence = wal_->Append(batch.record());
    if (!sequence.ok()) {
      std::lock_guard lock(dedup_mu_);
      for (const auto& key : claimed) dedup_.Erase(key);
      if (!failed_.exchange(true)) failure_ = sequence.status().message();
      mem_cv_.notify_all();
      return Status::IOError("events were not stored: " + sequence.status().message());
    }
    int64_t newest = INT64_MIN;
    for (const auto& event : batch) newest = std::max(newest, event.time_ms);
    for (int64_t seen = newest_event_ms_.load(); newest > seen && !newest_event_ms_.compare_exchange_weak(seen, newest);) {
    }
    result.stored = batch.size();
    auto mem = std::make_shared<MemBatch>(*sequence, std::move(batch));
    const uint64_t bytes = mem->memory_bytes;
    std::lock_guard lock(mem_mu_);
    if (memtable_.empty()) memtable_oldest_ms_ = SteadyMillis();
    memtable_events_ += mem->events.size();
    memtable_.push_back(std::move(mem));
    memtable_bytes_ += bytes;
  }
  gate.unlock();
  if (!allowed_again.empty()) {
    std::lock_guard flush_lock(flush_mu_);
    Status status = WriteManifest();
    if (!status.ok()) return status;
  }
  appended_events_ += result.stored;
  duplicate_events_ += result.duplicates;
  bool flush_now;
  {
    std::lock_guard lock(mem_mu_);
    flush_now = memtable_events_ >= options_.memtable_max_events || memtable_bytes_ >= options_.memtable_max_bytes;
  }
  if (flush_now) loop_cv_.notify_all();
  return result;
}

void EmbeddedEventStore::FlushLoop() {
  std::unique_lock lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(50, options_.flush_interval_ms / 10)));
    if (stopping_) break;
    bool due;
    {
      std::lock_guard mem_lock(mem_mu_);
      due = !memtable_.empty() && (memtable_events_ >= options_.memtable_max_events ||
                                   memtable_bytes_ >= options_.memtable_max_bytes ||
                                   SteadyMillis() - memtable_oldest_ms_ >= options_.flush_interval_ms);
    }
    {
      std::lock_guard dedup_lock(dedup_mu_);
      ExpireDedupLocked(common::NowMillis());
    }
    if (!due || failed_) continue;
    lock.unlock();
    Status status = Flush();
    (void)status;  // a failed flush leaves the data in the WAL and memtable; the next attempt retries
    lock.lock();
    if (status.ok()) {
      maintenance_due_ = true;
      loop_cv_.notify_all();  // the maintenance thread waits on the same variable (else it waits out its interval)
    }
  }
}

void EmbeddedEventStore::MaintenanceLoop() {
  std::unique_lock lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(50, options_.maintenance_interval_ms)),
                      [&] { return stopping_ || maintenance_due_; });
    if (stopping_) break;
    maintenance_due_ = false;
    if (failed_) continue;
    lock.unlock();
    Status status = MaintenanceRound(/*now=*/false);
    if (!status.ok()) {
      std::lock_guard segments_lock(segments_mu_);
      last_maintenance_error_ = status.ToString();
    }
    lock.lock();
  }
}

Status EmbeddedEventStore::Flush() {
  std::unique_lock flush_lock(flush_mu_);
  return FlushLocked(flush_lock);
}

Status EmbeddedEventStore::FlushLocked(std::unique_lock<std::mutex>&) {
  std::vector<MemBatchRef> swapped;
  uint64_t swapped_events = 0, swapped_bytes = 0;
  {
    std::unique_lock gate(flush_gate_);  // waits for in-flight appends: everything in the WAL is in memtable_
    std::lock_guard lock(mem_mu_);
    if (memtable_.empty()) return Status::Ok();
    swapped = std::move(memtable_);
    memtable_.clear();
    flushing_ = swapped;
    swapped_events = flushing_events_ = memtable_events_;
    swapped_bytes = flushing_bytes_ = memtable_bytes_;
    memtable_events_ = 0;
    memtable_bytes_ = 0;
  }
  const auto flush_start = std::chrono::steady_clock::now();
  uint64_t max_sequence = 0;
  uint64_t expired = 0;
  uint64_t written_events = 0;
  const int64_t first_day = FirstRetainedDay();
  // The batches stay alive in `swapped` while their events are written: segments are built from pointers.
  std::map<int64_t, std::vector<const events::EventView*>> by_day;
  {
    std::lock_guard lock(dedup_mu_);
    for (const auto& batch : swapped) {
      max_sequence = std::max(max_sequence, batch->sequence);
      for (const events::EventView& event : batch->events) {
        if (!erased_users_.empty() && erased_users_.count(event.user)) continue;
        const int64_t day = DayOf(event.time_ms);
        if (day < first_day) {
          ++expired;
          continue;
        }
        by_day[day].push_back(&event);
        ++written_events;
      }
    }
  }
  std::vector<SegmentRef> written;
  for (auto& [day, events] : by_day) {
    auto info = embedded::WriteSegment(NextSegmentPath(day), std::move(events), options_.zstd_level);
    if (!info.ok()) {
      // Put the events back: nothing is lost, the WAL still has them; a later flush retries.
      for (const auto& segment : written) segment->obsolete = true;
      std::lock_guard lock(mem_mu_);
      memtable_.insert(memtable_.begin(), swapped.begin(), swapped.end());
      memtable_events_ += swapped_events;
      memtable_bytes_ += swapped_bytes;
      flushing_.clear();
      flushing_events_ = 0;
      flushing_bytes_ = 0;
      return info.status();
    }
    auto live = std::make_shared<LiveSegment>();
    live->day = day;
    live->info = std::move(info).value();
    live->flushed_ms = SteadyMillis();
    written.push_back(std::move(live));
  }
  {
    // One step for readers: the events leave `flushing_` as their segments appear (no double counting).
    std::lock_guard mem_lock(mem_mu_);
    std::lock_guard lock(segments_mu_);
    segments_.insert(segments_.end(), written.begin(), written.end());
    flushing_.clear();
    flushing_events_ = 0;
    flushing_bytes_ = 0;
  }
  mem_cv_.notify_all();
  if (before_flush_manifest_for_test_) before_flush_manifest_for_test_();
  flushed_sequence_ = std::max(flushed_sequence_.load(), max_sequence);
  // On failure the new segments are unlisted: a restart removes them and replays the WAL.
  ANALYTICS_RETURN_IF_ERROR(WriteManifest());
  expired_events_ += expired;
  ANALYTICS_RETURN_IF_ERROR(wal_->Truncate(flushed_sequence_));
  ++flushes_;
  flushed_events_ += written_events;
  flush_micros_ += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now() - flush_start).count());
  return Status::Ok();
}

EmbeddedEventStore::PendingPurgeView EmbeddedEventStore::PendingPurge(std::string fingerprint) {
  PendingPurgeView view;
  view.fingerprint = std::move(fingerprint);
  if (purge_pending_count_ == 0) return view;
  std::lock_guard lock(dedup_mu_);
  view.unpurged = purge_pending_;
  if (!view.unpurged.empty()) view.fingerprint += "|purge" + std::to_string(purge_epoch_);
  return view;
}

Status EmbeddedEventStore::PurgeErasedUsers() {
  std::unique_lock flush_lock(flush_mu_);
  return PurgeLocked(flush_lock);
}

Status EmbeddedEventStore::PurgeLocked(std::unique_lock<std::mutex>& flush_lock) {
  // A user allowed back after this must not find old events of theirs in the WAL at the next recovery.
  if (flushed_sequence_ < erasure_wal_sequence_) ANALYTICS_RETURN_IF_ERROR(FlushLocked(flush_lock));
  std::set<std::string, std::less<>> users;
  {
    std::lock_guard lock(dedup_mu_);
    users = purge_pending_;
  }
  if (users.empty()) return Status::Ok();
  std::vector<std::pair<SegmentRef, SegmentRef>> replacements;  // old → new (null: nothing left)
  auto undo = [&] {
    for (auto& [old_segment, new_segment] : replacements) {
      if (new_segment) new_segment->obsolete = true;
    }
  };
  embedded::SegmentColumnRequest user_only;
  user_only.user = true;
  for (const auto& segment : SegmentsSnapshot()) {
    // The user column alone says whether the segment holds any of them (most segments do not).
    auto columns = embedded::ReadSegmentColumns(segment->info.path, user_only);
    if (!columns.ok()) {
      undo();
      return columns.status();
    }
    if (std::none_of(columns->users.begin(), columns->users.end(),
                     [&](const std::string& user) { return users.count(user) > 0; })) {
      continue;
    }
    std::vector<StoredEvent> events;
    Status read = embedded::ReadSegmentEvents(segment->info.path, events);
    if (!read.ok()) {
      undo();
      return read;
    }
    std::erase_if(events, [&](const StoredEvent& event) { return users.count(event.user) > 0; });
    if (events.empty()) {
      replacements.emplace_back(segment, nullptr);
      continue;
    }
    auto info = embedded::WriteSegment(NextSegmentPath(segment->day), events, options_.zstd_level);
    if (!info.ok()) {
      undo();
      return info.status();
    }
    auto live = std::make_shared<LiveSegment>();
    live->day = segment->day;
    live->info = std::move(info).value();
    replacements.emplace_back(segment, std::move(live));
  }
  {
    std::lock_guard lock(segments_mu_);
    for (auto& [old_segment, new_segment] : replacements) {
      std::erase(segments_, old_segment);
      if (new_segment) segments_.push_back(new_segment);
    }
  }
  // Only after the purged segments are in place: until then queries keep leaving the users' rows out.
  {
    std::lock_guard lock(dedup_mu_);
    for (const auto& user : users) purge_pending_.erase(user);
    purge_pending_count_ = purge_pending_.size();
    ++purge_epoch_;
  }
  // On failure the old segments stay listed in the MANIFEST (and the users pending): a restart purges again.
  ANALYTICS_RETURN_IF_ERROR(WriteManifest());
  for (auto& [old_segment, new_segment] : replacements) old_segment->obsolete = true;
  ++purges_;
  purged_segments_ += replacements.size();
  return Status::Ok();
}

Result<uint64_t> EmbeddedEventStore::EraseUser(const std::string& user, bool count_events) {
  if (user.empty()) return Status::InvalidArgument("empty user", "user_id");
  // Counting needs no flush between reading the memtable and listing its segments. Intake's erasures (account
  // deleted events) do not count and do not wait for a flush in progress: a flush of a full memtable takes
  // ~0.5 s, and waiting for it cost the HTTP intake ~15% of its rate on generated data.
  std::unique_lock flush_lock(flush_mu_, std::defer_lock);
  if (count_events) flush_lock.lock();
  {
    std::lock_guard lock(dedup_mu_);
    if (purge_pending_.empty()) purge_pending_since_ms_ = common::NowMillis();
    erased_users_.insert(user);
    purge_pending_.insert(user);
    purge_pending_count_ = purge_pending_.size();
    ++purge_epoch_;
    ++erasure_generation_;
  }
  // Durable first: from here on recovery filters the user out of the WAL, and appends refuse them. A flush
  // running meanwhile may still write the user's events into segments: they are purge-pending (queries leave
  // them out) and the purge rewrites those segments as any others.
  ANALYTICS_RETURN_IF_ERROR(WriteErasure(user));
  uint64_t removed = 0;
  {
    std::unique_lock gate(flush_gate_);
    if (count_events) {
      // Only to count (and free) them: every read of the memtable (QueryView, Scan) leaves erased users out,
      // and the flush drops their events. Copying each batch that holds the user costs ~10 ms per erasure
      // with a full memtable, which intake (an account-deleted event per ~10,000 events) should not pay.
      std::lock_guard lock(mem_mu_);
      for (auto& batch : memtable_) {
        auto of_user = [&](const events::EventView& event) { return event.user == user; };
        if (std::none_of(batch->events.begin(), batch->events.end(), of_user)) continue;
        auto filtered = std::make_shared<MemBatch>(*batch);  // readers may still hold the old batch
        const size_t gone = std::erase_if(filtered->events, of_user);
        removed += gone;
        memtable_events_ -= gone;
        batch = std::move(filtered);
      }
    }
    // No append is running (the gate): every WAL record holding the user's events is in the files before
    // the new one. The next regular flush (within flush_interval_ms) covers them and its truncation deletes
    // those files; until then recovery filters the user out of them.
    ANALYTICS_RETURN_IF_ERROR(wal_->Roll());
    erasure_wal_sequence_ = wal_->last_sequence();
  }
  // The user's events in segments are counted from the user column; the maintenance thread removes them.
  embedded::SegmentColumnRequest user_only;
  user_only.user = true;
  for (const auto& segment : count_events ? SegmentsSnapshot() : std::vector<SegmentRef>{}) {
    ANALYTICS_ASSIGN_OR_RETURN(auto columns, embedded::ReadSegmentColumns(segment->info.path, user_only));
    auto it = std::lower_bound(columns.users.begin(), columns.users.end(), user);
    if (it != columns.users.end() && *it == user) removed += columns.user_runs[it - columns.users.begin()];
  }
  {
    std::lock_guard lock(loop_mu_);
    maintenance_due_ = true;
  }
  loop_cv_.notify_all();
  return removed;
}

Status EmbeddedEventStore::ApplyRetention() {
  const int64_t first_day = FirstRetainedDay();
  if (first_day == INT64_MIN) return Status::Ok();
  std::lock_guard flush_lock(flush_mu_);
  std::vector<SegmentRef> expired;
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& segment : segments_) {
      if (segment->day < first_day) expired.push_back(segment);
    }
    if (expired.empty()) return Status::Ok();
    std::erase_if(segments_, [&](const SegmentRef& segment) { return segment->day < first_day; });
  }
  Status status = WriteManifest();
  if (!status.ok()) {
    std::lock_guard lock(segments_mu_);
    segments_.insert(segments_.end(), expired.begin(), expired.end());
    return status;
  }
  uint64_t rows = 0;
  std::set<std::string> dirs;
  for (const auto& segment : expired) {
    rows += segment->info.rows;
    segment->obsolete = true;
    dirs.insert(fs::path(segment->info.path).parent_path().string());
  }
  expired_events_ += rows;
  expired.clear();  // deletes the files no reader holds
  std::error_code ec;
  for (const auto& dir : dirs) fs::remove(dir, ec);  // only when empty
  return Status::Ok();
}

Status EmbeddedEventStore::Compact(const std::vector<SegmentRef>& inputs) {
  uint64_t generation;
  std::set<std::string, std::less<>> erased;
  {
    std::lock_guard lock(dedup_mu_);
    generation = erasure_generation_;
    erased = erased_users_.sorted();
  }
  std::vector<StoredEvent> events;
  for (const auto& input : inputs) {
    std::vector<StoredEvent> part;
    ANALYTICS_RETURN_IF_ERROR(embedded::ReadSegmentEvents(input->info.path, part));
    events.insert(events.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  std::erase_if(events, [&](const StoredEvent& event) { return erased.count(event.user) > 0; });
  // The users of the merged rows, to tell at the swap whether an erasure made meanwhile touches the output
  // (each input is sorted by user, so its users come in runs).
  std::vector<std::string> users;
  for (const StoredEvent& event : events) {
    if (users.empty() || users.back() != event.user) users.push_back(event.user);
  }
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  SegmentRef output;
  if (!events.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(auto info,
                               embedded::WriteSegment(NextSegmentPath(inputs.front()->day), std::move(events),
                                                      options_.zstd_level));
    output = std::make_shared<LiveSegment>();
    output->day = inputs.front()->day;
    output->info = std::move(info);
  }
  if (before_compaction_swap_for_test_) before_compaction_swap_for_test_();
  std::lock_guard flush_lock(flush_mu_);
  bool current = true;
  {
    // Only an erasure of a user the output holds makes it stale (it would bring their events back once their
    // purge is done). Erasures of other users are let through: during a backfill an account deletion arrives
    // every ~10,000 events, and discarding every merge that overlapped one made the maintenance thread merge
    // the same day over and over (it plans again at once), 16% of the server's CPU on a 30-day load.
    std::lock_guard lock(dedup_mu_);
    if (generation != erasure_generation_) {
      for (const auto& user : erased_users_) {
        if (!erased.count(user) && std::binary_search(users.begin(), users.end(), user)) {
          current = false;
          break;
        }
      }
    }
  }
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& input : inputs) {
      if (std::find(segments_.begin(), segments_.end(), input) == segments_.end()) current = false;
    }
    if (current) {
      for (const auto& input : inputs) std::erase(segments_, input);
      if (output) segments_.push_back(output);
    }
  }
  if (!current) {  // an erasure, a purge or retention got there first; the next round plans again
    ++compaction_conflicts_;
    if (output) output->obsolete = true;
    return Status::Ok();
  }
  Status status = WriteManifest();
  if (!status.ok()) {
    std::lock_guard lock(segments_mu_);
    if (output) std::erase(segments_, output);
    segments_.insert(segments_.end(), inputs.begin(), inputs.end());
    if (output) output->obsolete = true;
    return status;
  }
  for (const auto& input : inputs) input->obsolete = true;
  ++compactions_;
  compacted_segments_ += inputs.size();
  for (const auto& input : inputs) compacted_rows_ += input->info.rows;
  return Status::Ok();
}

Status EmbeddedEventStore::RunMaintenance() { return MaintenanceRound(/*now=*/true); }

Status EmbeddedEventStore::MaintenanceRound(bool now) {
  if (purge_pending_count_ > 0 &&
      (now || common::NowMillis() - purge_pending_since_ms_ >= options_.purge_delay_ms)) {
    ANALYTICS_RETURN_IF_ERROR(PurgeErasedUsers());
  }
  ANALYTICS_RETURN_IF_ERROR(ApplyRetention());
  const int64_t today = DayOf(common::NowMillis());
  for (int round = 0; round < 64; ++round) {
    std::map<int64_t, std::vector<SegmentRef>> by_day;
    for (auto& segment : SegmentsSnapshot()) by_day[segment->day].push_back(std::move(segment));
    bool merged = false;
    for (const auto& [day, segments] : by_day) {
      {
        std::lock_guard lock(loop_mu_);
        if (stopping_) return Status::Ok();
      }
      std::vector<uint64_t> rows;
      int64_t last_flushed_ms = 0;
      for (const auto& segment : segments) {
        rows.push_back(segment->info.rows);
        last_flushed_ms = std::max(last_flushed_ms, segment->flushed_ms);
      }
      // A day is closed once it is over by more than a day (late events still trickle in before that) and,
      // unless the round is RunMaintenance, no flush wrote to it lately (a backfill still sends it events: it
      // is merged in tiers until then, compaction.h).
      const bool settled = now || last_flushed_ms == 0 ||
                           SteadyMillis() - last_flushed_ms >= options_.compaction.settle_ms;
      const std::vector<size_t> group =
          embedded::PlanCompaction(rows, day < today - 1 && settled, options_.compaction);
      if (group.empty()) continue;
      std::vector<SegmentRef> inputs;
      for (size_t segment_idx : group) inputs.push_back(segments[segment_idx]);
      ANALYTICS_RETURN_IF_ERROR(Compact(inputs));
      merged = true;
    }
    if (!merged) break;
  }
  return Status::Ok();
}

Status EmbeddedEventStore::AllowUser(const std::string& user) {
  std::unique_lock flush_lock(flush_mu_);
  ANALYTICS_RETURN_IF_ERROR(PurgeLocked(flush_lock));  // the user's old events go before new ones may come
  {
    std::lock_guard lock(dedup_mu_);
    if (erased_users_.erase(user) == 0) return Status::Ok();
  }
  return WriteManifest();
}

Result<ScanResult> EmbeddedEventStore::Scan(const ScanQuery& query) {
  int64_t cursor_time = INT64_MIN;
  std::string cursor_id;
  if (!query.cursor.empty() && !DecodeCursor(query.cursor, cursor_time, cursor_id)) {
    return Status::InvalidArgument("malformed cursor", "cursor");
  }
  const int64_t first_day = FirstRetainedDay();
  auto matches = [&](const auto& event) {
    if (event.time_ms < query.from_ms || event.time_ms >= query.to_ms) return false;
    if (first_day != INT64_MIN && DayOf(event.time_ms) < first_day) return false;
    if (query.type && event.type != *query.type) return false;
    if (query.user && event.user != *query.user) return false;
    if (!query.cursor.empty() &&
        (event.time_ms < cursor_time || (event.time_ms == cursor_time && event.id <= cursor_id))) {
      return false;
    }
    return true;
  };
  // Memory first, then segments: a flush moves events from memory to segments, never back, so reading in
  // this order sees every event at least once (repeats are removed below).
  std::vector<StoredEvent> found;
  {
    std::vector<MemBatchRef> batches;
    {
      std::lock_guard lock(mem_mu_);
      batches = memtable_;
      batches.insert(batches.end(), flushing_.begin(), flushing_.end());
    }
    for (const auto& batch : batches) {
      for (const events::EventView& event : batch->events) {
        if (matches(event)) found.push_back(event.ToStored());
      }
    }
  }
  // The snapshot holds its segments' files: a concurrent compaction or erasure deletes them only after.
  for (const auto& live : SegmentsSnapshot()) {
    const embedded::SegmentInfo& segment = live->info;
    if (segment.max_time_ms < query.from_ms || segment.min_time_ms >= query.to_ms) continue;
    if (segment.max_time_ms < cursor_time) continue;
    if (live->day < first_day) continue;
    if (query.type && !segment.type_counts.count(*query.type)) continue;
    std::vector<StoredEvent> events;
    ANALYTICS_RETURN_IF_ERROR(embedded::ReadSegmentEvents(segment.path, events));
    for (auto& event : events) {
      if (matches(event)) found.push_back(std::move(event));
    }
  }
  {
    std::lock_guard lock(dedup_mu_);
    std::erase_if(found, [&](const StoredEvent& event) { return erased_users_.count(event.user) > 0; });
  }
  std::sort(found.begin(), found.end(), EventOrder);
  // An event being flushed can be both in a new segment and in flushing_: drop exact repeats.
  found.erase(std::unique(found.begin(), found.end(),
                          [](const StoredEvent& a, const StoredEvent& b) { return a.id == b.id && a.source == b.source; }),
              found.end());
  ScanResult result;
  if (found.size() > query.limit) {
    found.resize(query.limit);
    result.next_cursor = EncodeCursor(found.back());
  }
  result.events = std::move(found);
  return result;
}

namespace {

std::vector<std::string> PathsOf(const query::AggregateQuery& query, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> paths = query.group_by;
  query.filter.CollectProperties(paths);
  if (!query.value_property.empty()) paths.push_back(query.value_property);
  paths.insert(paths.end(), extra.begin(), extra.end());
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return paths;
}

}  // namespace

void EmbeddedEventStore::QueryView(const query::AggregateQuery& query, MemoryView& memory,
                                   std::vector<SegmentRef>& segments) {
  const std::vector<int64_t>& bounds = query.bounds;
  const int64_t first_day = FirstRetainedDay();
  auto type_read = [&](std::string_view type) {
    return query.event_types.empty() ||
           std::find(query.event_types.begin(), query.event_types.end(), type) != query.event_types.end();
  };
  auto row_read = [&](const events::EventView& event) {
    return event.time_ms >= bounds.front() && event.time_ms < bounds.back() && type_read(event.type) &&
           (first_day == INT64_MIN || DayOf(event.time_ms) >= first_day);
  };
  std::vector<SegmentRef> all;
  {
    // A flush moves events from flushing_ to segments_ under both locks.
    std::lock_guard mem_lock(mem_mu_);
    std::lock_guard lock(segments_mu_);
    memory.batches = memtable_;
    memory.batches.insert(memory.batches.end(), flushing_.begin(), flushing_.end());
    all = segments_;
  }
  for (const auto& batch : memory.batches) {
    for (const events::EventView& event : batch->events) {
      if (row_read(event)) memory.rows.push_back(&event);
    }
  }
  {
    std::lock_guard lock(dedup_mu_);
    if (!erased_users_.empty()) {
      std::erase_if(memory.rows, [&](const events::EventView* event) { return erased_users_.count(event->user) > 0; });
    }
  }
  if (const Roaring* scope = embedded::ScopeUsers(query.scope); scope != nullptr && !memory.rows.empty()) {
    // Before any column is built: the users of the rows (a lookup per run of one user's rows, no registration:
    // a user the directory does not know is in no scope), then the rows of users in scope.
    std::vector<uint32_t> ids;
    if (!scope->isEmpty()) {
      std::vector<std::string_view> names;
      for (size_t row_idx = 0; row_idx < memory.rows.size(); ++row_idx) {
        if (row_idx == 0 || memory.rows[row_idx]->user != memory.rows[row_idx - 1]->user) {
          names.push_back(memory.rows[row_idx]->user);
        }
      }
      user_directory_.IdsOf(names, ids, /*add_missing=*/false);
    }
    size_t kept = 0;
    if (!ids.empty()) {
      size_t run_idx = 0;
      bool in_scope = false;
      for (size_t row_idx = 0; row_idx < memory.rows.size(); ++row_idx) {
        if (row_idx == 0 || memory.rows[row_idx]->user != memory.rows[row_idx - 1]->user) {
          const uint32_t id = ids[run_idx++];
          in_scope = id != query::kNoUser && scope->contains(id);
        }
        if (in_scope) memory.rows[kept++] = memory.rows[row_idx];
      }
    }
    memory.scoped_out = kept == 0;
    memory.rows.resize(kept);
  }
  for (auto& segment : all) {
    const embedded::SegmentInfo& info = segment->info;
    if (segment->day < first_day) continue;
    if (info.max_time_ms < bounds.front() || info.min_time_ms >= bounds.back()) continue;
    if (!query.event_types.empty() &&
        std::none_of(query.event_types.begin(), query.event_types.end(),
                     [&](const std::string& type) { return info.type_counts.count(type) > 0; })) {
      continue;
    }
    segments.push_back(std::move(segment));
  }
}

Result<query::PairedSessions> EmbeddedEventStore::Sessions(const query::SessionQuery& query) {
  if (query.to_ms <= query.from_ms) return query::PairDays(query, {});
  query::AggregateQuery view;  // what QueryView and PathsOf read
  view.event_types = {query.start_type, query.end_type};
  view.filter = query.filter;
  view.group_by = query.group_by;
  view.bounds = {query.from_ms, query.to_ms};
  view.scope = query.scope;
  const std::vector<std::string> paths = PathsOf(view, {query.key_property});
  MemoryView memory;
  std::vector<SegmentRef> segments;
  QueryView(view, memory, segments);
  const auto [unpurged, fingerprint] = PendingPurge(query.Fingerprint());
  // A one-off scope (UserScope::cache false) leaves nothing in the cache.
  const bool cache = partial_cache_.enabled() && (!query.scope || query.scope->cache);
  // The memtable's marks are read on every query (it changes with every append).
  query::SessionMarks memory_marks;
  if (!memory.rows.empty()) {
    embedded::SegmentColumns columns = embedded::ColumnsFromEvents(memory.rows, embedded::ColumnsFor(paths));
    query::SessionMarksBuilder builder(query);
    builder.Add(embedded::BatchFromColumns(columns, paths, user_directory_));
    memory_marks = builder.Finish();
  }
  // Days: the day partitions the query reads, each paired on its own (query/sessions.h) and kept in the cache
  // under the paths of all its segments (a flush or compaction into the day changes the key) and the part of the
  // day the query reads. A day the memtable also holds events of is paired on every query, from its segments'
  // cached marks and the memtable's.
  struct Day {
    int64_t start_ms = 0, end_ms = 0;
    std::vector<SegmentRef> segments;
    bool with_memory = false;
    std::string key;
    std::shared_ptr<const query::SessionDay> sessions;
    Status status;
  };
  std::map<int64_t, Day> by_day;
  for (auto& segment : segments) by_day[segment->day].segments.push_back(std::move(segment));
  for (const auto& mark : memory_marks.marks) {
    if (mark.time_ms >= query.from_ms && mark.time_ms < query.to_ms) {
      by_day[DayOf(mark.time_ms)].with_memory = true;
    }
  }
  std::vector<Day> days;
  for (auto& [day_index, day] : by_day) {
    day.start_ms = std::max(query.from_ms, day_index * kDayMs);
    day.end_ms = std::min(query.to_ms, (day_index + 1) * kDayMs);
    if (day.start_ms >= day.end_ms) continue;
    if (cache && !day.with_memory) {
      day.key = "sessionday|" + fingerprint + "|" + std::to_string(day.start_ms) + "|" + std::to_string(day.end_ms);
      for (const auto& segment : day.segments) day.key += "|" + segment->info.path;
      day.sessions = partial_cache_.Get<query::SessionDay>(day.key);
    }
    days.push_back(std::move(day));
  }
  embedded::SegmentReadContext context{user_directory_, segment_cache_};
  size_t pending = 0;
  for (const Day& day : days) pending += day.sessions == nullptr;
  const size_t max_threads = common::QueryThreads(options_.query_threads);
  common::ParallelFor(days.size(), std::min(pending, max_threads), [&](size_t day_idx) {
    Day& day = days[day_idx];
    if (day.sessions) return;
    std::vector<std::shared_ptr<const query::SessionMarks>> marks;
    for (const auto& segment : day.segments) {
      const std::string key = "sessions|" + segment->info.path + "|" + fingerprint;
      std::shared_ptr<const query::SessionMarks> read;
      if (day.with_memory && cache) read = partial_cache_.Get<query::SessionMarks>(key);
      if (!read) {
        auto fresh = std::make_shared<query::SessionMarks>();
        day.status = embedded::ReadSegmentSessionMarks(segment->info.path, query, paths, unpurged, context, *fresh);
        if (!day.status.ok()) return;
        if (day.with_memory && cache) partial_cache_.Put<query::SessionMarks>(key, fresh);
        read = std::move(fresh);
      }
      marks.push_back(std::move(read));
    }
    std::vector<const query::SessionMarks*> sources;
    for (const auto& source : marks) sources.push_back(source.get());
    if (day.with_memory) sources.push_back(&memory_marks);
    auto built = query::BuildSessionDay(query, day.start_ms, day.end_ms, sources);
    if (!built.ok()) {
      day.status = built.status();
      return;
    }
    day.sessions = std::make_shared<const query::SessionDay>(std::move(built).value());
    if (!day.key.empty()) partial_cache_.Put(day.key, day.sessions);
  });
  std::vector<std::shared_ptr<const query::SessionDay>> paired;
  for (Day& day : days) {
    ANALYTICS_RETURN_IF_ERROR(day.status);
    paired.push_back(std::move(day.sessions));
  }
  // The links of consecutive cached days are cached too (under both days' keys): joining closed days then reads
  // no marks at all.
  std::vector<std::shared_ptr<const query::SessionLink>> links(days.size());
  std::vector<std::pair<size_t, std::string>> missing;  // links of cached days that the join will make
  for (size_t day_idx = 1; day_idx < days.size(); ++day_idx) {
    if (days[day_idx - 1].key.empty() || days[day_idx].key.empty()) continue;
    std::string key = "sessionlink|" + days[day_idx - 1].key + "|" + days[day_idx].key;
    links[day_idx] = partial_cache_.Get<query::SessionLink>(key);
    if (!links[day_idx]) missing.emplace_back(day_idx, std::move(key));
  }
  query::PairedSessions result = query::PairDays(query, std::move(paired), &links);
  for (const auto& [day_idx, key] : missing) partial_cache_.Put(key, links[day_idx]);
  return result;
}

Result<std::shared_ptr<const query::Timeline>> EmbeddedEventStore::ReadTimeline(const query::TimelineQuery& query) {
  if (query.selectors.empty() || query.selectors.size() > query::kMaxTimelineSelectors) {
    return Status::InvalidArgument("a timeline query has 1 to " + std::to_string(query::kMaxTimelineSelectors) +
                                   " selectors");
  }
  // An empty part of the query: every join gets it, so that an answer without rows still has the key columns.
  const query::Timeline empty = query::TimelineBuilder(query).Finish();
  if (query.to_ms <= query.from_ms) return std::make_shared<const query::Timeline>(query::MergeTimelines({&empty}, 0, 0));
  query::AggregateQuery view;  // what QueryView reads
  view.event_types = query.EventTypes();
  view.filter = query.filter;
  view.bounds = {query.from_ms, query.to_ms};
  view.scope = query.scope;
  const std::vector<std::string> paths = query.Paths();
  MemoryView memory;
  std::vector<SegmentRef> segments;
  QueryView(view, memory, segments);
  const auto [unpurged, fingerprint] = PendingPurge(query.Fingerprint());
  // A one-off scope (UserScope::cache false) leaves nothing in the cache.
  const bool cache = partial_cache_.enabled() && (!query.scope || query.scope->cache);
  // Segments in time order (day partitions, then creation), so that most users' rows arrive sorted.
  std::stable_sort(segments.begin(), segments.end(),
                   [](const SegmentRef& a, const SegmentRef& b) { return a->day < b->day; });
  // The join of the segments' rows is kept whole, keyed by the segments it read: a repeated question reads no
  // segment and sorts nothing, whether or not events in memory are read too. Those are merged on top of it on
  // every request (a copy of rows already in order, plus a sort of the few users with rows in memory).
  std::string join_key;
  std::shared_ptr<const query::Timeline> segment_join;
  const size_t threads = common::QueryThreads(options_.query_threads);
  if (cache) {
    join_key = "timelinejoin|" + fingerprint + "|" + std::to_string(query.from_ms) + "|" + std::to_string(query.to_ms);
    for (const auto& segment : segments) join_key += "|" + segment->info.path;
    segment_join = partial_cache_.Get<query::Timeline>(join_key);
  }
  if (!segment_join) {
    std::vector<std::shared_ptr<const query::Timeline>> parts(segments.size());
    std::vector<Status> statuses(segments.size());
    embedded::SegmentReadContext context{user_directory_, segment_cache_};
    common::ParallelFor(segments.size(), threads, [&](size_t segment_idx) {
      const std::string& path = segments[segment_idx]->info.path;
      const std::string key = "timeline|" + path + "|" + fingerprint;
      if (cache) parts[segment_idx] = partial_cache_.Get<query::Timeline>(key);
      if (parts[segment_idx]) return;
      auto fresh = std::make_shared<query::Timeline>();
      statuses[segment_idx] = embedded::ReadSegmentTimeline(path, query, paths, unpurged, context, *fresh);
      if (!statuses[segment_idx].ok()) return;
      if (cache) partial_cache_.Put<query::Timeline>(key, fresh);
      parts[segment_idx] = std::move(fresh);
    });
    for (const Status& status : statuses) ANALYTICS_RETURN_IF_ERROR(status);
    std::vector<const query::Timeline*> sources = {&empty};
    for (const auto& part : parts) sources.push_back(part.get());
    segment_join = std::make_shared<const query::Timeline>(
        query::MergeTimelines(sources, query.from_ms, query.to_ms, threads));
    if (!join_key.empty()) partial_cache_.Put<query::Timeline>(join_key, segment_join);
  }
  if (memory.rows.empty()) return segment_join;
  // The memtable's state: its batches (sequence numbers are never reused) and the erasures applied to its rows.
  std::string memory_key;
  bool keep_merged = false;
  if (!join_key.empty()) {
    uint64_t mix = 0x9e3779b97f4a7c15ULL;
    for (const auto& batch : memory.batches) mix = (mix ^ batch->sequence) * 0x100000001b3ULL;
    uint64_t epoch;
    {
      std::lock_guard lock(dedup_mu_);
      epoch = purge_epoch_;
    }
    memory_key = join_key + "|memory=" + std::to_string(memory.batches.size()) + ":" + std::to_string(mix) + ":" +
                 std::to_string(memory.rows.size()) + "|epoch=" + std::to_string(epoch);
    if (auto merged = partial_cache_.Get<query::Timeline>(memory_key)) return merged;
    std::lock_guard lock(merged_mu_);
    if (last_memory_key_.size() > 4096) last_memory_key_.clear();
    std::string& last = last_memory_key_[join_key];
    keep_merged = last == memory_key;
    last = memory_key;
  }
  embedded::SegmentColumns columns = embedded::ColumnsFromEvents(memory.rows, embedded::ColumnsFor(paths));
  query::TimelineBuilder builder(query);
  builder.Add(embedded::BatchFromColumns(columns, paths, user_directory_));
  const query::Timeline memory_part = builder.Finish();
  if (memory_part.rows() == 0) return segment_join;
  auto merged = std::make_shared<const query::Timeline>(
      query::MergeTimelines({segment_join.get(), &memory_part}, query.from_ms, query.to_ms, threads));
  if (keep_merged) partial_cache_.Put<query::Timeline>(memory_key, merged);
  return merged;
}

Result<std::shared_ptr<const query::AggregateResult>> EmbeddedEventStore::Aggregate(const query::AggregateQuery& query) {
  query::AggregateResult result;
  if (query.bounds.size() < 2) return std::make_shared<const query::AggregateResult>();
  const std::vector<int64_t>& bounds = query.bounds;
  const size_t buckets = bounds.size() - 1;
  const std::vector<std::string> paths = PathsOf(query);
  MemoryView memory;
  std::vector<SegmentRef> segments;
  QueryView(query, memory, segments);

  // Segments: each contributes the partial aggregate of the bucket slice it overlaps, cached.
  struct Task {
    SegmentRef segment;
    size_t offset = 0;
    query::AggregateQuery slice;
    std::string key;
    std::shared_ptr<const query::PackedResult> partial;
    Status status;
  };
  std::vector<Task> tasks;
  // Erased users not yet purged from segments: their rows are left out, and partials computed meanwhile are
  // cached under the purge epoch (a segment's plain key stays valid: the purge gives it a new file).
  const auto [unpurged, fingerprint] = PendingPurge(query.Fingerprint());
  // A one-off scope (UserScope::cache false) leaves nothing in the cache.
  const bool cache = partial_cache_.enabled() && (!query.scope || query.scope->cache);
  // Segments by day partition (stable: the same order on every run), so that a day's partials are merged once
  // and kept: a repeated query over closed days then merges one partial per day instead of one per segment.
  std::stable_sort(segments.begin(), segments.end(),
                   [](const SegmentRef& a, const SegmentRef& b) { return a->day < b->day; });
  auto slice_key = [](const std::vector<int64_t>& slice_bounds) {
    std::string key;
    for (int64_t bound : slice_bounds) key += std::to_string(bound) + ",";
    return key;
  };
  for (auto& segment : segments) {
    const embedded::SegmentInfo& info = segment->info;
    const auto first = std::upper_bound(bounds.begin(), bounds.end(), std::max(info.min_time_ms, bounds.front())) - 1;
    const auto last = std::upper_bound(bounds.begin(), bounds.end(), std::min(info.max_time_ms, bounds.back() - 1));
    Task task;
    task.segment = segment;
    task.offset = static_cast<size_t>(first - bounds.begin());
    task.slice = query;
    task.slice.bounds.assign(first, last + 1);
    if (cache) task.key = info.path + "|" + fingerprint + "|" + slice_key(task.slice.bounds);
    tasks.push_back(std::move(task));
  }
  // The merge of all the segments' partials is cached too, under every segment path: a repeated query over
  // segments no flush or compaction changed copies it and only adds the memtable.
  std::string merged_key;
  if (cache && tasks.size() > 1) {
    merged_key = "merged|" + fingerprint + "|" + slice_key(bounds);
    for (const Task& task : tasks) merged_key += "|" + task.segment->info.path;
    if (auto merged = partial_cache_.Get<query::PackedResult>(merged_key)) {
      // Nothing in the memtable for this query: the cached answer itself, shared.
      if (memory.rows.empty() && (!memory.scoped_out || !query.group_by.empty() ||
                                  merged->generic.groups.count(query::GroupKey{}) > 0)) {
        return std::shared_ptr<const query::AggregateResult>(merged, &merged->generic);
      }
      result = merged->generic;
      tasks.clear();
    }
  }
  // Days: runs of tasks of one day partition. A day of several segments has its merged partial cached under
  // the paths of all of them (a flush or compaction that changes the day changes the key).
  struct Day {
    size_t first_task = 0, last_task = 0;  // [first, last)
    size_t offset = 0, width = 0;          // its bucket slice
    std::string key;
    std::shared_ptr<const query::PackedResult> partial;
  };
  std::vector<Day> days;
  for (size_t task_idx = 0; task_idx < tasks.size();) {
    Day day;
    day.first_task = task_idx;
    day.offset = tasks[task_idx].offset;
    size_t end = tasks[task_idx].offset + tasks[task_idx].slice.bounds.size() - 1;
    for (++task_idx; task_idx < tasks.size() && tasks[task_idx].segment->day == tasks[day.first_task].segment->day;
         ++task_idx) {
      day.offset = std::min(day.offset, tasks[task_idx].offset);
      end = std::max(end, tasks[task_idx].offset + tasks[task_idx].slice.bounds.size() - 1);
    }
    day.last_task = task_idx;
    day.width = end - day.offset;
    if (cache && day.last_task - day.first_task > 1) {
      day.key = "day|" + fingerprint + "|" +
                slice_key(std::vector<int64_t>(bounds.begin() + static_cast<ptrdiff_t>(day.offset),
                                               bounds.begin() + static_cast<ptrdiff_t>(end + 1)));
      for (size_t idx = day.first_task; idx < day.last_task; ++idx) day.key += "|" + tasks[idx].segment->info.path;
      day.partial = partial_cache_.Get<query::PackedResult>(day.key);
    }
    if (!day.partial && cache) {
      for (size_t idx = day.first_task; idx < day.last_task; ++idx) {
        tasks[idx].partial = partial_cache_.Get<query::PackedResult>(tasks[idx].key);
      }
    }
    days.push_back(std::move(day));
  }
  // Segments not in the cache (of days not in it) are read (the expensive part: only the parts and columns the
  // slice needs, query_exec.h) and aggregated into their partials by several threads; then each uncached day's
  // partials are merged in order, and all days' partials, cell by cell (query::MergeResults), so the sums are
  // added in the same order on every run, cached or not.
  std::vector<uint8_t> needed(tasks.size(), 0);
  for (const Day& day : days) {
    if (day.partial) continue;
    for (size_t idx = day.first_task; idx < day.last_task; ++idx) needed[idx] = tasks[idx].partial == nullptr;
  }
  embedded::SegmentReadContext context{user_directory_, segment_cache_};
  size_t pending = 0;
  for (uint8_t need : needed) pending += need;
  const size_t threads = common::QueryThreads(options_.query_threads);
  common::ParallelFor(tasks.size(), std::min(pending, threads), [&](size_t task_idx) {
    Task& task = tasks[task_idx];
    if (!needed[task_idx]) return;
    embedded::SegmentRows rows;
    task.status = embedded::ReadSegmentRows(task.segment->info.path, task.slice, paths, unpurged, context, rows);
    if (!task.status.ok()) return;
    query::AggregateResult partial;
    embedded::AddSegmentRows(task.slice, rows, partial);
    task.partial = std::make_shared<const query::PackedResult>(query::Pack(std::move(partial)));
    if (cache) partial_cache_.Put(task.key, task.partial);
  });
  for (const auto& task : tasks) ANALYTICS_RETURN_IF_ERROR(task.status);
  std::vector<query::PartialRef> partials;
  partials.reserve(days.size());
  for (Day& day : days) {
    if (day.last_task - day.first_task == 1) {
      partials.push_back({tasks[day.first_task].partial.get(), tasks[day.first_task].offset});
      continue;
    }
    if (!day.partial) {
      std::vector<query::PartialRef> parts;
      for (size_t idx = day.first_task; idx < day.last_task; ++idx) {
        parts.push_back({tasks[idx].partial.get(), tasks[idx].offset - day.offset});
      }
      query::AggregateResult merged;
      query::MergeResults(merged, parts, day.width, threads);
      day.partial = std::make_shared<const query::PackedResult>(query::Pack(std::move(merged)));
      if (cache) partial_cache_.Put(day.key, day.partial);
    }
    partials.push_back({day.partial.get(), day.offset});
  }
  if (!partials.empty()) {
    query::MergeResults(result, partials, buckets, threads);
    if (!merged_key.empty()) {
      auto merged = std::make_shared<query::PackedResult>();
      merged->generic = result;
      partial_cache_.Put<query::PackedResult>(merged_key, merged);
    }
  }

  if (!memory.rows.empty()) {
    embedded::SegmentColumns columns =
        embedded::ColumnsFromEvents(memory.rows, embedded::ColumnsFor(paths, query.collect_users));
    query::EventBatch batch = embedded::BatchFromColumns(columns, paths, user_directory_);
    query::AggregateResult memory;
    query::Aggregate(query, batch, memory);
    result.Merge(memory, 0, buckets);
  } else if (memory.scoped_out && query.group_by.empty()) {
    // As the memtable's rows would have without the scope (a segment's parts do the same): an ungrouped answer
    // has its cells, empty, whatever the scope leaves of the rows.
    auto [group, inserted] = result.groups.try_emplace(query::GroupKey{});
    if (inserted) group->second.resize(buckets);
  }
  return std::make_shared<const query::AggregateResult>(std::move(result));
}

int64_t EmbeddedEventStore::NewestEventMs() { return newest_event_ms_.load(); }

Result<std::vector<uint32_t>> EmbeddedEventStore::UserIds(const std::vector<std::string>& users) {
  std::vector<uint32_t> ids;
  user_directory_.IdsOf(std::vector<std::string_view>(users.begin(), users.end()), ids);
  return ids;
}

Result<std::vector<std::string>> EmbeddedEventStore::UserNames(const std::vector<uint32_t>& ids) {
  std::vector<std::string> names;
  user_directory_.NamesOf(ids, names);
  return names;
}

Status EmbeddedEventStore::Ping() {
  if (failed_) return Status::Unavailable("event store failed: " + failure_);
  std::lock_guard lock(segments_mu_);
  if (!corrupt_segments_.empty()) return Status::Unavailable("corrupt segment: " + corrupt_segments_.front());
  return Status::Ok();
}

nlohmann::json EmbeddedEventStore::Stats() {
  nlohmann::json stats = nlohmann::json::object();
  {
    std::lock_guard lock(mem_mu_);
    stats["memtable_events"] = memtable_events_ + flushing_events_;
  }
  uint64_t rows = 0, bytes = 0;
  std::set<int64_t> days;
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& segment : segments_) {
      rows += segment->info.rows;
      bytes += segment->info.file_bytes;
      days.insert(segment->day);
    }
    stats["segments"] = segments_.size();
    stats["corrupt_segments"] = corrupt_segments_;
    if (!last_maintenance_error_.empty()) stats["last_maintenance_error"] = last_maintenance_error_;
  }
  stats["partitions"] = days.size();
  stats["segment_events"] = rows;
  stats["segment_bytes"] = bytes;
  {
    std::lock_guard lock(mem_mu_);
    stats["memtable_bytes"] = memtable_bytes_ + flushing_bytes_;
  }
  {
    std::lock_guard lock(dedup_mu_);
    stats["dedup_keys"] = dedup_.size();
    stats["dedup_bytes"] = dedup_.memory_bytes();
    stats["dedup_evicted_days"] = dedup_.evicted_days();
    stats["erased_users"] = erased_users_.size();
  }
  stats["appended_events"] = appended_events_.load();
  stats["duplicate_events"] = duplicate_events_.load();
  stats["expired_events"] = expired_events_.load();
  stats["compactions"] = compactions_.load();
  stats["compacted_segments"] = compacted_segments_.load();
  stats["compaction_conflicts"] = compaction_conflicts_.load();
  stats["compacted_rows"] = compacted_rows_.load();
  stats["flushes"] = flushes_.load();
  stats["flushed_events"] = flushed_events_.load();
  stats["flush_seconds"] = static_cast<double>(flush_micros_.load()) / 1e6;
  stats["purges"] = purges_.load();
  stats["purged_segments"] = purged_segments_.load();
  stats["purge_pending_users"] = purge_pending_count_.load();
  stats["purge_pending_age_seconds"] =
      purge_pending_count_ > 0 ? std::max<int64_t>(0, common::NowMillis() - purge_pending_since_ms_) / 1000 : 0;
  stats["backpressure_waits"] = backpressure_waits_.load();
  stats["query_cache_bytes"] = partial_cache_.bytes();
  stats["query_cache_hits"] = partial_cache_.hits();
  stats["query_cache_misses"] = partial_cache_.misses();
  stats["query_users"] = user_directory_.size();
  if (wal_) stats["wal_bytes_written"] = wal_->bytes_written();
  return stats;
}

}  // namespace analytics::store
