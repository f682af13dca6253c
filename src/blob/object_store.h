// ObjectStore: the port through which the service keeps files (report outputs now; the raw-event lake and model
// artifacts later). Keys are relative paths such as "reports/2026/11/27/<instance>.csv".
//
// Rationale: files are written and read as streams, so a report of any size never sits whole in memory. A
// writer makes the object visible only at Commit (all or nothing: a reader never sees half a file, and a
// writer dropped without Commit leaves nothing). Adapters: local/ (a folder, the embedded default); S3 with
// the S3 work.
// Keys: 1..1024 bytes of [A-Za-z0-9._-/], no leading '/', no empty, "." or ".." segment (InvalidArgument
// naming "key" otherwise).
// Thread-safety: every method may be called concurrently; one writer or reader object is used by one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace analytics::blob {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  int64_t modified_at_ms = 0;  // Unix millis of the commit
};

// A new object being written. Nothing is visible until Commit; destroying an uncommitted writer discards it.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // Appends bytes. Errors (disk full, ...) are Unavailable or Internal; after an error only destruction is valid.
  virtual common::Status Write(std::string_view bytes) = 0;
  // Bytes written so far.
  virtual uint64_t size() const = 0;
  // Makes the object visible under its key, replacing any object of that key, durably (fsync for local).
  virtual common::Status Commit() = 0;
};

// An object being read from the start.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // Fills up to `capacity` bytes of `out`; returns how many, 0 at the end.
  virtual common::Result<size_t> Read(char* out, size_t capacity) = 0;
  // The object's size (as of opening).
  virtual uint64_t size() const = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // "local" or "s3" (logs, readiness).
  virtual std::string_view BackendName() const = 0;
  // Starts writing the object `key`.
  virtual common::Result<std::unique_ptr<ObjectWriter>> Create(const std::string& key) = 0;
  // Opens the object `key`. NotFound when there is none.
  virtual common::Result<std::unique_ptr<ObjectReader>> Open(const std::string& key) = 0;
  // Size and time of `key`. NotFound when there is none.
  virtual common::Result<ObjectInfo> Stat(const std::string& key) = 0;
  // Removes `key`. NotFound when there is none.
  virtual common::Status Delete(const std::string& key) = 0;
  // Objects whose key starts with `prefix` (any text; "" lists everything), sorted by key.
  virtual common::Result<std::vector<ObjectInfo>> List(const std::string& prefix) = 0;
};

// Checks a key against the rules above (adapters call it first).
common::Status CheckKey(std::string_view key);

}  // namespace analytics::blob
