// The file-system seam of the WAL writer: the few operations it needs to create, append to, sync and delete
// WAL files. DefaultWalFileSystem() is POSIX (writev, fdatasync, fsync of the directory); tests wrap it to
// inject torn writes and failed syncs (see tests/unit/wal_test.cc), as LevelDB's Env and RocksDB's
// FileSystemWrapper do. Replay reads files directly with POSIX calls: corrupting the bytes on disk is how
// the tests exercise it.
// Thread-safety: a WalFileSystem is thread-safe; a WalFile is used by one thread at a time (the WAL's
// group-commit leader).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace analytics::store::wal {

// An open file that is only ever appended to.
class WalFile {
 public:
  virtual ~WalFile() = default;

  // Appends every slice, in order, retrying short writes. IOError when the kernel refuses; the file then
  // ends with an unknown prefix of the slices (a torn write).
  virtual common::Status Append(std::span<const std::string_view> slices) = 0;
  // fdatasync: the appended bytes (and the file size) are durable when it returns Ok. IOError otherwise;
  // a failed sync is never retried by the caller because the kernel may have dropped the dirty pages.
  virtual common::Status Sync() = 0;
  // Releases the descriptor. Idempotent.
  virtual common::Status Close() = 0;
};

class WalFileSystem {
 public:
  virtual ~WalFileSystem() = default;

  // Creates `path`, which must not exist (AlreadyExists otherwise), opened for appending.
  virtual common::Result<std::unique_ptr<WalFile>> CreateFile(const std::string& path) = 0;
  // Creates `dir` and missing parents; when it creates anything it syncs the parent so the new directory
  // survives a crash. Ok when `dir` already exists.
  virtual common::Status CreateDirIfMissing(const std::string& dir) = 0;
  // fsync of the directory itself: makes created and removed entries durable.
  virtual common::Status SyncDir(const std::string& dir) = 0;
  // Names (not paths) of the entries of `dir`, in no particular order. NotFound when `dir` does not exist.
  virtual common::Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // NotFound when `path` does not exist.
  virtual common::Status RemoveFile(const std::string& path) = 0;
};

// The POSIX file system. Never null; lives for the whole process.
WalFileSystem* DefaultWalFileSystem();

}  // namespace analytics::store::wal
