// Internal to the WAL: validation of one WAL file, shared by ReplayWal and WalWriter::Open (which checks the
// newest file before starting the next one). Not part of the component's API; include wal.h instead.
// Thread-safety: pure functions over files nobody is appending to.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "store/embedded/wal/wal.h"

namespace analytics::store::wal::internal {

// A damaged end of a file: everything from `offset` on is unreadable and no valid record follows it.
struct DamagedTail {
  uint64_t offset = 0;
  uint64_t bytes = 0;  // file size - offset
  std::string reason;  // "partial record header", "bad checksum", ...
};

struct FileScan {
  uint64_t next_sequence = 0;  // the sequence the next record would have had: first lost one if `tail`
  uint64_t valid_records = 0;
  uint64_t size = 0;  // bytes in the file
  std::optional<DamagedTail> tail;
};

// Reads the file `path`, named after `first_sequence`, and checks every record. Valid records with sequence
// > after_sequence go to `fn` (when set) and are counted in `stats` (when set). A damaged record followed by
// no valid record ends the scan as `tail`: whether that is acceptable depends on the file's place in the
// WAL, which the caller knows. Corruption (path and offset in the message) for a damaged record followed
// by a valid one, an out-of-order sequence or a header that contradicts the name; FailedPrecondition for
// an unknown format version; IOError when reading fails; the Status of `fn` when it fails.
common::Result<FileScan> ScanWalFile(const std::string& path, uint64_t first_sequence, uint64_t after_sequence,
                                     const std::function<common::Status(uint64_t, std::string_view)>* fn,
                                     ReplayStats* stats);

}  // namespace analytics::store::wal::internal
