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

#include "common/time_util.h"
#include "store/embedded/codec.h"
#include "store/embedded/file_util.h"
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

uint64_t Fnv1a(std::string_view data, uint64_t seed) {
  uint64_t hash = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

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

EmbeddedEventStore::EmbeddedEventStore(EmbeddedEventStoreOptions options) : options_(std::move(options)) {}

EmbeddedEventStore::DedupKey EmbeddedEventStore::KeyOf(const StoredEvent& event) {
  uint64_t source_hash = Fnv1a(event.source, 0x51);
  return {Mix(Fnv1a(event.id, source_hash)), Mix(Fnv1a(event.id, source_hash ^ 0x9E3779B97F4A7C15ULL) + 1)};
}

void EmbeddedEventStore::RememberKeyLocked(const DedupKey& key, int64_t received_ms) {
  if (dedup_.insert(key).second) dedup_by_day_[DayOf(received_ms)].push_back(key);
}

void EmbeddedEventStore::ExpireDedupLocked(int64_t now_ms) {
  const int64_t oldest_day = DayOf(now_ms - options_.dedup_window_ms);
  while (!dedup_by_day_.empty() && dedup_by_day_.begin()->first < oldest_day) {
    for (const auto& key : dedup_by_day_.begin()->second) dedup_.erase(key);
    dedup_by_day_.erase(dedup_by_day_.begin());
  }
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
                                           store->flushed_sequence_) + 1;
  ANALYTICS_ASSIGN_OR_RETURN(store->wal_, wal::WalWriter::Open(wal_options, next));
  store->flusher_ = std::thread([raw = store.get()] { raw->FlushLoop(); });
  return store;
}

EmbeddedEventStore::~EmbeddedEventStore() {
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (wal_ && !failed_) {
    // A clean shutdown leaves no WAL to replay.
    Status status = Flush();
    (void)status;
  }
}

Status EmbeddedEventStore::Recover() {
  const auto started = std::chrono::steady_clock::now();
  const fs::path root(options_.dir);
  const fs::path manifest_path = root / "MANIFEST";
  std::set<std::string> listed;
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
  }
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
  for (const auto& relative : listed) {
    const std::string path = (root / "segments" / relative).string();
    auto info = embedded::ReadSegmentInfo(path);
    if (!info.ok()) {
      corrupt_segments_.push_back(path + ": " + info.status().message());
      fs::rename(path, path + ".corrupt", ec);
      continue;
    }
    if (info->max_received_ms >= now_ms - options_.dedup_window_ms) {
      std::vector<StoredEvent> events;
      Status status = embedded::ReadSegmentEvents(path, events);
      if (!status.ok()) {
        corrupt_segments_.push_back(path + ": " + status.message());
        fs::rename(path, path + ".corrupt", ec);
        continue;
      }
      for (const auto& event : events) {
        if (event.received_ms >= now_ms - options_.dedup_window_ms) RememberKeyLocked(KeyOf(event), event.received_ms);
      }
    }
    segments_.push_back(std::move(info).value());
  }
  // WAL after the flushed sequence.
  uint64_t replayed_events = 0;
  auto replay = wal::ReplayWal(
      (root / "wal").string(), flushed_sequence_, [&](uint64_t sequence, std::string_view payload) -> Status {
        std::vector<StoredEvent> batch;
        ANALYTICS_RETURN_IF_ERROR(embedded::DecodeEventBatch(payload, batch));
        for (auto& event : batch) {
          if (erased_users_.count(event.user)) continue;
          RememberKeyLocked(KeyOf(event), event.received_ms);
          memtable_.push_back({sequence, std::move(event)});
          ++replayed_events;
        }
        return Status::Ok();
      });
  if (!replay.ok()) return replay.status();
  memtable_oldest_ms_ = SteadyMillis();
  recovery_report_ = {
      {"flushed_sequence", flushed_sequence_},
      {"last_sequence", std::max(replay->last_sequence, flushed_sequence_)},
      {"segments", segments_.size()},
      {"removed_unlisted_files", removed_leftovers},
      {"corrupt_segments", corrupt_segments_},
      {"wal_records_replayed", replay->records},
      {"wal_bytes_replayed", replay->bytes},
      {"wal_dropped_tail_bytes", replay->dropped_tail_bytes},
      {"wal_notes", replay->notes},
      {"events_replayed", replayed_events},
      {"dedup_keys", dedup_.size()},
      {"recovery_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count()}};
  return Status::Ok();
}

Status EmbeddedEventStore::WriteManifest() {
  nlohmann::json manifest = {{"format", 1}, {"flushed_sequence", flushed_sequence_}, {"segment_counter", segment_counter_}};
  nlohmann::json segments = nlohmann::json::array();
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& segment : segments_) {
      segments.push_back(fs::relative(segment.path, fs::path(options_.dir) / "segments").string());
    }
  }
  manifest["segments"] = std::move(segments);
  {
    std::lock_guard lock(dedup_mu_);
    manifest["erased_users"] = erased_users_;
  }
  return embedded::WriteFileAtomically((fs::path(options_.dir) / "MANIFEST").string(), manifest.dump(1));
}

Result<AppendResult> EmbeddedEventStore::Append(std::vector<StoredEvent> batch) {
  if (failed_) return Status::Unavailable("event store failed earlier: " + failure_);
  AppendResult result;
  result.outcomes.resize(batch.size(), AppendOutcome::kStored);
  std::shared_lock gate(flush_gate_);
  std::vector<StoredEvent> accepted;
  std::vector<DedupKey> claimed;
  accepted.reserve(batch.size());
  claimed.reserve(batch.size());
  std::vector<std::string> allowed_again;
  {
    std::lock_guard lock(dedup_mu_);
    for (size_t event_idx = 0; event_idx < batch.size(); ++event_idx) {
      StoredEvent& event = batch[event_idx];
      if (!event.user.empty() && erased_users_.count(event.user)) {
        if (event.type != kRegisteredType) {
          result.outcomes[event_idx] = AppendOutcome::kUserErased;
          result.erased_ids.push_back(std::move(event.id));
          ++result.erased;
          continue;
        }
        erased_users_.erase(event.user);  // the user registered again
        allowed_again.push_back(event.user);
      }
      DedupKey key = KeyOf(event);
      if (!dedup_.insert(key).second) {
        result.outcomes[event_idx] = AppendOutcome::kDuplicate;
        ++result.duplicates;
        continue;
      }
      claimed.push_back(key);
      accepted.push_back(std::move(event));
    }
  }
  if (!accepted.empty()) {
    auto sequence = wal_->Append(embedded::EncodeEventBatch(accepted));
    if (!sequence.ok()) {
      std::lock_guard lock(dedup_mu_);
      for (const auto& key : claimed) dedup_.erase(key);
      if (!failed_.exchange(true)) failure_ = sequence.status().message();
      return Status::IOError("events were not stored: " + sequence.status().message());
    }
    {
      std::lock_guard lock(dedup_mu_);
      for (size_t event_idx = 0; event_idx < accepted.size(); ++event_idx) {
        dedup_by_day_[DayOf(accepted[event_idx].received_ms)].push_back(claimed[event_idx]);
      }
    }
    std::lock_guard lock(mem_mu_);
    if (memtable_.empty()) memtable_oldest_ms_ = SteadyMillis();
    for (auto& event : accepted) memtable_.push_back({*sequence, std::move(event)});
    result.stored = accepted.size();
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
    flush_now = memtable_.size() >= options_.memtable_max_events;
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
      due = !memtable_.empty() && (memtable_.size() >= options_.memtable_max_events ||
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
  }
}

Status EmbeddedEventStore::Flush() {
  std::unique_lock flush_lock(flush_mu_);
  return FlushLocked(flush_lock);
}

Status EmbeddedEventStore::FlushLocked(std::unique_lock<std::mutex>&) {
  std::shared_ptr<const std::vector<MemtableEntry>> swapped;
  {
    std::unique_lock gate(flush_gate_);  // waits for in-flight appends: everything in the WAL is in memtable_
    std::lock_guard lock(mem_mu_);
    if (memtable_.empty()) return Status::Ok();
    swapped = std::make_shared<const std::vector<MemtableEntry>>(std::move(memtable_));
    memtable_.clear();
    flushing_ = swapped;
  }
  uint64_t max_sequence = 0;
  std::map<int64_t, std::vector<StoredEvent>> by_day;
  {
    std::lock_guard lock(dedup_mu_);
    for (const auto& entry : *swapped) {
      max_sequence = std::max(max_sequence, entry.sequence);
      if (erased_users_.count(entry.event.user)) continue;
      by_day[DayOf(entry.event.time_ms)].push_back(entry.event);
    }
  }
  std::vector<embedded::SegmentInfo> written;
  for (auto& [day, events] : by_day) {
    const fs::path dir = fs::path(options_.dir) / "segments" / DayName(day);
    std::error_code ec;
    fs::create_directories(dir, ec);
    char name[48];
    std::snprintf(name, sizeof(name), "seg-%020llu.col", static_cast<unsigned long long>(++segment_counter_));
    auto info = embedded::WriteSegment((dir / name).string(), std::move(events), options_.zstd_level);
    Status status = info.status();
    if (!status.ok()) {
      // Put the events back: nothing is lost, the WAL still has them; a later flush retries.
      std::lock_guard lock(mem_mu_);
      memtable_.insert(memtable_.begin(), swapped->begin(), swapped->end());
      flushing_.reset();
      for (const auto& segment : written) fs::remove(segment.path, ec);
      return status;
    }
    written.push_back(std::move(info).value());
  }
  {
    std::lock_guard lock(segments_mu_);
    segments_.insert(segments_.end(), written.begin(), written.end());
  }
  flushed_sequence_ = std::max(flushed_sequence_, max_sequence);
  Status status = WriteManifest();
  if (!status.ok()) return status;  // the new segments are unlisted; recovery removes them and replays the WAL
  {
    std::lock_guard lock(mem_mu_);
    flushing_.reset();
  }
  return wal_->Truncate(flushed_sequence_);
}

Status EmbeddedEventStore::RewriteSegmentsWithout(const std::string& user, uint64_t& removed) {
  std::vector<embedded::SegmentInfo> segments;
  {
    std::lock_guard lock(segments_mu_);
    segments = segments_;
  }
  std::vector<std::pair<std::string, std::optional<embedded::SegmentInfo>>> replacements;
  for (const auto& segment : segments) {
    std::vector<StoredEvent> events;
    ANALYTICS_RETURN_IF_ERROR(embedded::ReadSegmentEvents(segment.path, events));
    const size_t before = events.size();
    std::erase_if(events, [&](const StoredEvent& event) { return event.user == user; });
    if (events.size() == before) continue;
    removed += before - events.size();
    if (events.empty()) {
      replacements.emplace_back(segment.path, std::nullopt);
      continue;
    }
    char name[48];
    std::snprintf(name, sizeof(name), "seg-%020llu.col", static_cast<unsigned long long>(++segment_counter_));
    const fs::path path = fs::path(segment.path).parent_path() / name;
    ANALYTICS_ASSIGN_OR_RETURN(auto info, embedded::WriteSegment(path.string(), std::move(events), options_.zstd_level));
    replacements.emplace_back(segment.path, std::move(info));
  }
  if (replacements.empty()) return Status::Ok();
  {
    std::lock_guard lock(segments_mu_);
    for (auto& [old_path, info] : replacements) {
      std::erase_if(segments_, [&](const embedded::SegmentInfo& s) { return s.path == old_path; });
      if (info) segments_.push_back(*info);
    }
  }
  ANALYTICS_RETURN_IF_ERROR(WriteManifest());
  std::error_code ec;
  for (auto& [old_path, info] : replacements) fs::remove(old_path, ec);
  return Status::Ok();
}

Result<uint64_t> EmbeddedEventStore::EraseUser(const std::string& user) {
  if (user.empty()) return Status::InvalidArgument("empty user", "user_id");
  std::unique_lock flush_lock(flush_mu_);
  {
    std::lock_guard lock(dedup_mu_);
    erased_users_.insert(user);
  }
  // Durable first: from here on recovery filters the user out of the WAL, and appends refuse them.
  ANALYTICS_RETURN_IF_ERROR(WriteManifest());
  uint64_t removed = 0;
  {
    std::unique_lock gate(flush_gate_);
    std::lock_guard lock(mem_mu_);
    const size_t before = memtable_.size();
    std::erase_if(memtable_, [&](const MemtableEntry& entry) { return entry.event.user == user; });
    removed += before - memtable_.size();
  }
  ANALYTICS_RETURN_IF_ERROR(RewriteSegmentsWithout(user, removed));
  // Flush what remains so the WAL files that held the user's events can be deleted.
  ANALYTICS_RETURN_IF_ERROR(FlushLocked(flush_lock));
  return removed;
}

Status EmbeddedEventStore::AllowUser(const std::string& user) {
  std::lock_guard flush_lock(flush_mu_);
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
  auto matches = [&](const StoredEvent& event) {
    if (event.time_ms < query.from_ms || event.time_ms >= query.to_ms) return false;
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
    std::lock_guard lock(mem_mu_);
    for (const auto& entry : memtable_) {
      if (matches(entry.event)) found.push_back(entry.event);
    }
    if (flushing_) {
      for (const auto& entry : *flushing_) {
        if (matches(entry.event)) found.push_back(entry.event);
      }
    }
  }
  std::vector<embedded::SegmentInfo> segments;
  {
    std::lock_guard lock(segments_mu_);
    segments = segments_;
  }
  for (const auto& segment : segments) {
    if (segment.max_time_ms < query.from_ms || segment.min_time_ms >= query.to_ms) continue;
    if (segment.max_time_ms < cursor_time) continue;
    if (query.type && !segment.type_counts.count(*query.type)) continue;
    std::vector<StoredEvent> events;
    Status status = embedded::ReadSegmentEvents(segment.path, events);
    if (!status.ok()) {
      if (!fs::exists(segment.path)) continue;  // replaced by an erasure rewrite meanwhile
      return status;
    }
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
    stats["memtable_events"] = memtable_.size() + (flushing_ ? flushing_->size() : 0);
  }
  uint64_t rows = 0, bytes = 0;
  {
    std::lock_guard lock(segments_mu_);
    for (const auto& segment : segments_) {
      rows += segment.rows;
      bytes += segment.file_bytes;
    }
    stats["segments"] = segments_.size();
    stats["corrupt_segments"] = corrupt_segments_;
  }
  stats["segment_events"] = rows;
  stats["segment_bytes"] = bytes;
  {
    std::lock_guard lock(dedup_mu_);
    stats["dedup_keys"] = dedup_.size();
    stats["erased_users"] = erased_users_.size();
  }
  stats["appended_events"] = appended_events_.load();
  stats["duplicate_events"] = duplicate_events_.load();
  if (wal_) stats["wal_bytes_written"] = wal_->bytes_written();
  return stats;
}

}  // namespace analytics::store
