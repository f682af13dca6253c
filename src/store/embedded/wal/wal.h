// The write-ahead log of the embedded event store: the intake appends each batch of encoded events as one
// record and acknowledges the batch only once the record is durable; after a crash ReplayWal hands back
// every record the store has not yet flushed to segments.
//
// The format (file names, file header, record layout, checksum) is described byte by byte in
// docs/formats/wal.md; constants live in wal_format.h.
//
// Rationale: one record per intake batch (~1,000 events, 100-300 KB), appended by several intake threads at
// once. fdatasync costs far more than writing a few hundred KB, so concurrent appends are committed as a
// group: the first waiting caller becomes the leader, writes every queued record with one writev and makes
// them durable with one fdatasync; the others wait. The payload checksum is computed by each caller before
// it queues, so the leader's critical path is only the syscalls.
//
// Concurrency: WalWriter is thread-safe. ReplayWal runs before the writer is opened (it must not run on a
// directory a writer is appending to).
//
// Limitations:
// - A WalWriter that saw a write or sync failure refuses every later Append (IOError): after a failed
//   fdatasync the kernel may have dropped the dirty pages, so neither retrying nor going on is safe. The
//   owner reopens the store (replay + a new writer).
// - A record whose Append returned IOError may or may not be replayed (it may have reached the disk before
//   the failure): the WAL is at-least-once for failed appends, exactly-once for acknowledged ones.
// - A damaged record at the very end of the last file is indistinguishable from a torn write and is dropped
//   (reported in ReplayStats); damage anywhere else is Corruption. A crash that persists the pages of an
//   unacknowledged write out of order (power loss, not kill -9) can leave a valid record after a torn one;
//   replay then reports Corruption rather than guess, and the operator decides.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "store/embedded/wal/wal_file.h"

namespace analytics::store::wal {

struct WalOptions {
  std::string dir;                          // created if missing
  uint64_t max_file_bytes = 64 << 20;       // roll to a new file once the next record would pass this; a
                                            // record larger than this gets a file of its own
  bool sync = true;                         // fdatasync before acknowledging (false only for benchmarks/tests)
  WalFileSystem* file_system = nullptr;     // not owned, must outlive the writer; nullptr: POSIX
};

class WalWriter {
 public:
  // Opens `options.dir` for appending after recovery: records get sequence numbers from `next_sequence`
  // on (>= 1; normally ReplayStats::last_sequence + 1). Always starts a NEW file, named after
  // `next_sequence`, and syncs the directory; it never appends to a file that may end in a torn write.
  // InvalidArgument for an empty dir, a zero max_file_bytes or next_sequence 0. FailedPrecondition when a
  // file in the directory already holds sequences at or after `next_sequence` (replay first; a leftover
  // file named after `next_sequence` without a single valid record, left by a crash right after it was
  // created, is replaced). IOError when the directory or file cannot be created or synced.
  static common::Result<std::unique_ptr<WalWriter>> Open(const WalOptions& options, uint64_t next_sequence);

  // Closes the active file. Precondition: no Append is running.
  ~WalWriter();
  WalWriter(const WalWriter&) = delete;
  WalWriter& operator=(const WalWriter&) = delete;

  // Appends one record and returns its sequence number once it is durable (written and, when
  // options.sync, fdatasync'ed). Concurrent callers share one write and one sync (group commit); sequence
  // numbers follow the order records reach the file. `payload` only has to stay valid during the call.
  // InvalidArgument when payload is larger than kMaxPayloadBytes (64 MiB). IOError when the write or sync
  // fails; from then on every Append returns IOError (see Limitations).
  common::Result<uint64_t> Append(std::string_view payload);

  // Closes the active file and starts a new one (named after the next sequence) unless the active file holds
  // no record yet, so that a following Truncate can delete every flushed record (erasure uses it: no byte of
  // an erased user's events may stay in the WAL). Waits for the appends queued before it. IOError as Append.
  common::Status Roll();
  // Deletes the WAL files whose records all have sequence <= `sequence` (call it once the store has
  // flushed those records to segments durably). Never deletes the active file, nor the last file in the
  // directory. Ok when there is nothing to delete; IOError when listing, removing or syncing fails.
  // Thread-safe, also against Append.
  common::Status Truncate(uint64_t sequence);

  // The highest sequence acknowledged by Append (next_sequence - 1 before the first one).
  uint64_t last_sequence() const { return last_sequence_.load(std::memory_order_acquire); }
  // Bytes this writer put into files (headers included), counting only writes that succeeded.
  uint64_t bytes_written() const { return bytes_written_.load(std::memory_order_relaxed); }

 private:
  struct PendingAppend;

  WalWriter(WalOptions options, WalFileSystem* file_system, uint64_t next_sequence);

  // Creates the file for records starting at `first_sequence`, writes its header and syncs the directory.
  // Called by Open and by the leader (without mu_).
  common::Status StartFile(uint64_t first_sequence);
  // The leader's work: writes `batch` (sequences assigned) to the active file, rolling first when
  // `roll` says so, and syncs. Runs without mu_.
  common::Status WriteBatch(const std::vector<PendingAppend*>& batch, bool roll);

  const WalOptions options_;
  WalFileSystem* const file_system_;

  std::mutex mu_;
  std::deque<PendingAppend*> queue_;     // GUARDED_BY(mu_); the front is the leader (or next to lead)
  uint64_t next_sequence_;               // GUARDED_BY(mu_)
  uint64_t active_bytes_ = 0;            // GUARDED_BY(mu_); size of the active file once queued
                                         // batches are written (decides rolls)
  uint64_t active_first_sequence_;       // GUARDED_BY(mu_); name of the active file
  common::Status failure_;               // GUARDED_BY(mu_); sticky first write/sync failure

  // Owned by the group-commit leader (only the front of queue_ touches it, without mu_), and by Open.
  std::unique_ptr<WalFile> active_file_;
  std::vector<std::string_view> slices_;  // leader scratch: header and payload of each record
  std::vector<char> headers_;              // leader scratch: encoded record headers

  std::mutex truncate_mu_;  // one Truncate at a time

  std::atomic<uint64_t> last_sequence_;
  std::atomic<uint64_t> bytes_written_{0};
};

struct ReplayStats {
  uint64_t records = 0;             // records passed to `fn` (sequence > after_sequence)
  uint64_t skipped_records = 0;     // valid records at or below after_sequence
  uint64_t last_sequence = 0;       // max(after_sequence, highest valid sequence): open the writer after it
  uint64_t bytes = 0;               // payload bytes passed to `fn`
  uint64_t dropped_tail_bytes = 0;  // bytes of torn or damaged file tails that were dropped
  std::vector<std::string> notes;   // one line per dropped tail or ignored file, for the log
};

// Reads every record of the WAL in `dir`, in sequence order across files, and calls `fn(sequence,
// payload)` for each record with sequence > `after_sequence` (the records at or below it are already in
// segments). `payload` is valid only during the call. Stops at the first non-OK Status from `fn` and
// returns it.
//
// A torn or damaged TAIL of a file (partial header, partial payload, bad checksum, with no valid record
// after it) is dropped and reported in the stats, not an error, when it is the last file, or when the next
// file starts at the first lost sequence (the writer was reopened there after an earlier replay dropped the
// same tail) or the lost sequences are all at or below after_sequence. Everything else is Corruption naming the file path and byte offset: a bad record followed
// by a valid one, a gap or overlap in sequences inside or across files (a missing file), a file header
// that contradicts the file name, or a first file that starts after `after_sequence + 1` (only gaps fully
// at or below after_sequence are allowed: Truncate makes those). FailedPrecondition for an unknown format
// version. A missing directory or one without WAL files gives zero records. IOError when reading fails.
// On any error `fn` may already have seen some records: the caller discards what it built.
common::Result<ReplayStats> ReplayWal(const std::string& dir, uint64_t after_sequence,
                                      const std::function<common::Status(uint64_t, std::string_view)>& fn);

}  // namespace analytics::store::wal
