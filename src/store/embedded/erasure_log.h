// ErasureLog: the users erased since the MANIFEST was last written, one JSON line each (`{"erase":"u_…"}`),
// appended and synced before the erasure is acknowledged (docs/formats/embedded-store.md, Erasure).
//
// Rationale: the MANIFEST lists every user ever erased (they stay refused until they register again): ~9,400
// users and ~750 KB after 100M generated events. Rewriting it for each account-deleted event (one per ~10,000
// events) cost every erasure a 750 KB write and sync, growing with the store's history; a log line costs ~100
// bytes. The MANIFEST names the generation of the log that continues it; every full MANIFEST write starts a
// new generation (its erased users include the old log's) and deletes the old file, so recovery reads the
// MANIFEST, then the log of its generation, and a stale log is never replayed over a later MANIFEST (a user who
// registered again stays allowed).
// Thread-safety: none; the store calls it under its manifest mutex.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace analytics::store::embedded {

class ErasureLog {
 public:
  // The log file of `generation`: erasures-<20 digits>.log.
  static std::string FileName(uint64_t generation);
  // The users the log of `generation` in `dir` records, in order; nullopt when the file does not exist. A line
  // that does not parse ends the read: only the last line can be torn (an append that failed stops the log).
  static common::Result<std::optional<std::vector<std::string>>> Read(const std::string& dir, uint64_t generation);
  // Removes every log file in `dir` but the one of `generation` (left by a crash between a MANIFEST write and
  // the removal of the log it replaced).
  static void RemoveOthers(const std::string& dir, uint64_t generation);

  // Appends to the log of `generation` in `dir` (the file is created by the first Append).
  ErasureLog(std::string dir, uint64_t generation);
  ~ErasureLog();
  ErasureLog(const ErasureLog&) = delete;
  ErasureLog& operator=(const ErasureLog&) = delete;

  // Appends `user`'s line and syncs it (and, for a new file, the directory). After a failure every Append
  // fails: a torn line must stay the last one.
  common::Status Append(const std::string& user);
  // Makes every later Append fail with `why` (a MANIFEST write failed: whether the new MANIFEST, which names the
  // next generation, is on disk is unknown, so no erasure may be acknowledged in this one).
  void Stop(common::Status why) { failure_ = std::move(why); }
  // Closes the file and removes it (its erasures are in a MANIFEST now).
  void Remove();
  uint64_t generation() const { return generation_; }

 private:
  std::string dir_;
  uint64_t generation_;
  std::string path_;
  int fd_ = -1;
  common::Status failure_;
};

}  // namespace analytics::store::embedded
