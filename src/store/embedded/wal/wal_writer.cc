// WalWriter: group commit over an append-only file. See wal.h for the contract and the rationale.
//
// The protocol (LevelDB's DBImpl::Write writers queue): every Append queues a PendingAppend on its own stack
// and waits until it is done or at the front of the queue. The front is the leader: under mu_ it takes a
// batch of queued records, assigns their sequences and decides whether the file must roll; without mu_ it
// writes the batch with one writev and syncs once; under mu_ again it marks the batch done, wakes the
// batch's callers and hands leadership to the new front. Callers that queue meanwhile form the next batch.
#include "store/embedded/wal/wal.h"

#include <algorithm>
#include <condition_variable>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/embedded/wal/wal_format.h"
#include "store/embedded/wal/wal_reader.h"

namespace analytics::store::wal {

using common::Result;
using common::Status;

namespace {

// A batch stops growing past this many bytes, so that one leader does not hold its followers' latency
// hostage to an unbounded write. Larger single records still go alone.
constexpr uint64_t kMaxBatchBytes = 32u << 20;

}  // namespace

struct WalWriter::PendingAppend {
  std::string_view payload;
  uint64_t sequence = 0;  // assigned by the leader that takes it
  bool roll_only = false;  // a Roll() request: no record, starts a new file when it reaches the front
  Status status;
  bool done = false;  // GUARDED_BY(mu_)
  std::condition_variable cv;
};

WalWriter::WalWriter(WalOptions options, WalFileSystem* file_system, uint64_t next_sequence)
    : options_(std::move(options)),
      file_system_(file_system),
      next_sequence_(next_sequence),
      active_first_sequence_(next_sequence),
      last_sequence_(next_sequence - 1) {}

WalWriter::~WalWriter() {
  if (active_file_) (void)active_file_->Close();  // every acknowledged record is already synced
}

Result<std::unique_ptr<WalWriter>> WalWriter::Open(const WalOptions& options, uint64_t next_sequence) {
  if (options.dir.empty()) return Status::InvalidArgument("WAL directory is empty", "dir");
  if (options.max_file_bytes == 0) return Status::InvalidArgument("must be positive", "max_file_bytes");
  if (next_sequence == 0) return Status::InvalidArgument("WAL sequences start at 1", "next_sequence");
  WalFileSystem* file_system = options.file_system != nullptr ? options.file_system : DefaultWalFileSystem();
  ANALYTICS_RETURN_IF_ERROR(file_system->CreateDirIfMissing(options.dir));

  // The new file must sort after every existing one and hold only new sequences. Check the newest file:
  // a file named after next_sequence can only be left by a crash right after it was created, before any
  // record reached it; replace it then.
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<std::string> names, file_system->ListDir(options.dir));
  std::optional<uint64_t> newest;
  for (const std::string& name : names) {
    std::optional<uint64_t> first_sequence = ParseWalFileName(name);
    if (first_sequence && (!newest || *first_sequence > *newest)) newest = first_sequence;
  }
  if (newest) {
    std::string path = options.dir + "/" + WalFileName(*newest);
    if (*newest > next_sequence) {
      return Status::FailedPrecondition(path + " holds sequences from " + std::to_string(*newest) +
                                        ", at or after next_sequence " + std::to_string(next_sequence) +
                                        ": replay the WAL and open after its last sequence");
    }
    ANALYTICS_ASSIGN_OR_RETURN(internal::FileScan scan,
                               internal::ScanWalFile(path, *newest, UINT64_MAX, nullptr, nullptr));
    if (scan.next_sequence > next_sequence) {
      return Status::FailedPrecondition(path + " holds sequences up to " + std::to_string(scan.next_sequence - 1) +
                                        ", at or after next_sequence " + std::to_string(next_sequence) +
                                        ": replay the WAL and open after its last sequence");
    }
    if (*newest == next_sequence) {  // then scan.valid_records == 0
      ANALYTICS_RETURN_IF_ERROR(file_system->RemoveFile(path));
    }
  }

  std::unique_ptr<WalWriter> writer(new WalWriter(options, file_system, next_sequence));
  ANALYTICS_RETURN_IF_ERROR(writer->StartFile(next_sequence));
  std::lock_guard lock(writer->mu_);
  writer->active_bytes_ = kFileHeaderSize;
  return writer;
}

Status WalWriter::StartFile(uint64_t first_sequence) {
  if (active_file_) {
    Status closed = active_file_->Close();
    active_file_.reset();
    ANALYTICS_RETURN_IF_ERROR(closed);
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::unique_ptr<WalFile> file,
                             file_system_->CreateFile(options_.dir + "/" + WalFileName(first_sequence)));
  char header[kFileHeaderSize];
  EncodeFileHeader(header, first_sequence);
  const std::string_view slices[] = {std::string_view(header, sizeof(header))};
  ANALYTICS_RETURN_IF_ERROR(file->Append(slices));
  bytes_written_.fetch_add(kFileHeaderSize, std::memory_order_relaxed);
  // The directory entry must be durable before any record in the file is acknowledged; the header itself
  // becomes durable with the first batch's fdatasync (a crash before that leaves a file replay drops).
  if (options_.sync) ANALYTICS_RETURN_IF_ERROR(file_system_->SyncDir(options_.dir));
  active_file_ = std::move(file);
  return Status::Ok();
}

Result<uint64_t> WalWriter::Append(std::string_view payload) {
  if (payload.size() > kMaxPayloadBytes) {
    return Status::InvalidArgument("WAL record of " + std::to_string(payload.size()) + " bytes exceeds " +
                                   std::to_string(kMaxPayloadBytes), "payload");
  }
  PendingAppend self;
  self.payload = payload;

  std::unique_lock lock(mu_);
  if (!failure_.ok()) return Status::IOError("WAL refuses appends after an earlier failure: " + failure_.message());
  queue_.push_back(&self);
  while (!self.done && queue_.front() != &self) self.cv.wait(lock);
  if (self.done) {
    if (!self.status.ok()) return self.status;
    return self.sequence;
  }

  // Leader: take a batch that fits the batch limit and, unless it rolls, the active file.
  std::vector<PendingAppend*> batch;
  bool roll = false;
  uint64_t batch_bytes = 0;
  for (PendingAppend* pending : queue_) {
    if (pending->roll_only) break;  // a Roll() request leads on its own once it is the front
    uint64_t record_bytes = kRecordHeaderSize + pending->payload.size();
    if (batch.empty()) {
      roll = active_bytes_ > kFileHeaderSize && active_bytes_ + record_bytes > options_.max_file_bytes;
    } else {
      uint64_t file_bytes = (roll ? kFileHeaderSize : active_bytes_) + batch_bytes;
      if (batch_bytes + record_bytes > kMaxBatchBytes || file_bytes + record_bytes > options_.max_file_bytes) break;
    }
    pending->sequence = next_sequence_++;
    batch.push_back(pending);
    batch_bytes += record_bytes;
  }
  if (roll) {
    active_first_sequence_ = batch.front()->sequence;
    active_bytes_ = kFileHeaderSize;
  }
  active_bytes_ += batch_bytes;
  lock.unlock();

  Status status = WriteBatch(batch, roll);

  lock.lock();
  if (status.ok()) {
    last_sequence_.store(batch.back()->sequence, std::memory_order_release);
  } else {
    failure_ = status;
  }
  for (PendingAppend* pending : batch) {
    queue_.pop_front();  // the batch is the front of the queue, in order
    pending->status = status;
    pending->done = true;
    // Notified under mu_: a woken caller cannot return (and destroy its cv) before we let go of mu_.
    if (pending != &self) pending->cv.notify_one();
  }
  if (!status.ok()) {
    // Nobody may write after a failed write or sync: fail the queued callers too.
    for (PendingAppend* pending : queue_) {
      pending->status = Status::IOError("WAL refuses appends after an earlier failure: " + status.message());
      pending->done = true;
      pending->cv.notify_one();
    }
    queue_.clear();
    return status;
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return self.sequence;
}

Status WalWriter::WriteBatch(const std::vector<PendingAppend*>& batch, bool roll) {
  if (roll) ANALYTICS_RETURN_IF_ERROR(StartFile(batch.front()->sequence));
  headers_.resize(batch.size() * kRecordHeaderSize);
  slices_.clear();
  uint64_t bytes = 0;
  for (size_t record_idx = 0; record_idx < batch.size(); ++record_idx) {
    const PendingAppend& pending = *batch[record_idx];
    auto size = static_cast<uint32_t>(pending.payload.size());
    char* header = headers_.data() + record_idx * kRecordHeaderSize;
    EncodeRecordHeader(header, pending.sequence, size, RecordChecksum(pending.sequence, pending.payload));
    slices_.emplace_back(header, kRecordHeaderSize);
    slices_.push_back(pending.payload);
    bytes += kRecordHeaderSize + size;
  }
  ANALYTICS_RETURN_IF_ERROR(active_file_->Append(slices_));
  bytes_written_.fetch_add(bytes, std::memory_order_relaxed);
  if (options_.sync) ANALYTICS_RETURN_IF_ERROR(active_file_->Sync());
  return Status::Ok();
}

Status WalWriter::Roll() {
  PendingAppend self;
  self.roll_only = true;
  std::unique_lock lock(mu_);
  if (!failure_.ok()) return Status::IOError("WAL refuses appends after an earlier failure: " + failure_.message());
  queue_.push_back(&self);
  // Batches never take a roll request: it leads unless a failure ends it first.
  while (!self.done && queue_.front() != &self) self.cv.wait(lock);
  if (self.done) return self.status;
  Status status;
  if (active_bytes_ > kFileHeaderSize) {
    const uint64_t first_sequence = next_sequence_;
    active_first_sequence_ = first_sequence;
    active_bytes_ = kFileHeaderSize;
    lock.unlock();
    status = StartFile(first_sequence);
    lock.lock();
    if (!status.ok()) failure_ = status;
  }
  queue_.pop_front();
  if (!status.ok()) {
    for (PendingAppend* pending : queue_) {
      pending->status = Status::IOError("WAL refuses appends after an earlier failure: " + status.message());
      pending->done = true;
      pending->cv.notify_one();
    }
    queue_.clear();
    return status;
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return Status::Ok();
}

Status WalWriter::Truncate(uint64_t sequence) {
  std::lock_guard truncate_lock(truncate_mu_);
  uint64_t active_first_sequence;
  {
    std::lock_guard lock(mu_);
    active_first_sequence = active_first_sequence_;
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<std::string> names, file_system_->ListDir(options_.dir));
  std::vector<uint64_t> first_sequences;
  for (const std::string& name : names) {
    if (std::optional<uint64_t> first_sequence = ParseWalFileName(name)) first_sequences.push_back(*first_sequence);
  }
  std::sort(first_sequences.begin(), first_sequences.end());
  // File i holds sequences [first_sequences[i], first_sequences[i + 1]): deletable once the next file starts
  // at or below sequence + 1. The newest file has no such bound and is never deleted.
  bool removed = false;
  for (size_t file_idx = 0; file_idx + 1 < first_sequences.size(); ++file_idx) {
    if (first_sequences[file_idx] >= active_first_sequence) break;
    if (first_sequences[file_idx + 1] - 1 > sequence) break;
    Status status = file_system_->RemoveFile(options_.dir + "/" + WalFileName(first_sequences[file_idx]));
    if (!status.ok() && status.code() != common::StatusCode::kNotFound) return status;
    removed = true;
  }
  // Not strictly needed for safety (replay skips what segments hold), but keeps a crash from resurrecting
  // many old files.
  if (removed && options_.sync) ANALYTICS_RETURN_IF_ERROR(file_system_->SyncDir(options_.dir));
  return Status::Ok();
}

}  // namespace analytics::store::wal
