// LocalObjectStore: the ObjectStore adapter that keeps objects as files under a root folder (the embedded default;
// the data dir's objects/ folder).
//
// Layout: the object "reports/2026/11/27/x.csv" is the file <root>/reports/2026/11/27/x.csv. Writers stage their
// bytes in <root>/.staging~/<uuid>.tmp (same filesystem, so publishing is a rename); the staging folder's name
// holds '~', which no key may, so it never collides with an object and List never reports it.
// Rationale:
// - Commit = write out + fsync the file, rename it into place (creating missing parent folders), fsync the
//   folders that got a new entry: after a crash an object is either whole under its key or absent.
// - A reader is an open file descriptor: it keeps reading the object it opened even when the object is deleted
//   or replaced meanwhile (POSIX semantics), and objects are never modified in place.
// - Crash leftovers: every live writer holds an exclusive flock(2) on its staging file, and OpenRoot removes every
//   staging file nobody holds, whatever its age. The kernel drops the lock when the writing process dies, so a
//   writer of another process sharing the root (a CLI command next to the server) is never mistaken for one. (On
//   a filesystem without flock, writers go on unlocked and OpenRoot leaves every staging file alone.)
// - Keys never leave the root: CheckKey rules out "..", absolute and empty segments, and every path is resolved
//   one segment at a time with O_NOFOLLOW from the root's descriptor. Symbolic links are never followed: the
//   store makes none, so one found on a key's path is refused (InvalidArgument, field "key") whether it points
//   inside the root or not. List skips them, and skips names that are not valid keys.
// - Folders emptied by Delete are removed, so dated folders do not pile up.
// Errors: NotFound; InvalidArgument (field "key") for bad keys, symbolic links and a key that is a folder of other
// objects; Unavailable for environment failures (disk full, quota, I/O error, read-only, out of descriptors);
// Internal for the rest; messages carry the errno text.
// Concurrency: every method is thread-safe. Creating folders plus the rename of a Commit hold `tree_mu` shared,
// the removal of emptied folders holds it exclusively, so a commit never lands in a folder being removed. That
// guard is per process: two processes writing the same root may race there (one Commit fails with Internal).
// Limitations: a key cannot be both an object and a folder of others ("a" and "a/b"): the second one's Commit
// is refused with InvalidArgument. A key segment is at most NAME_MAX (255) bytes (InvalidArgument beyond).
// Object times are the file's mtime, set at Commit.
#pragma once

#include <memory>
#include <string>

#include "blob/object_store.h"

namespace analytics::blob {

struct LocalObjectStoreOptions {
  std::string root;  // created (with its parents) if missing
  bool sync = true;  // fsync files and folders at Commit and Delete (off only in benchmarks)
};

class LocalObjectStore final : public ObjectStore {
 public:
  // Creates the root and the staging folder if missing and removes crash leftovers from the staging folder.
  // InvalidArgument when `root` is empty; Unavailable or Internal when the folders cannot be made or opened.
  static common::Result<std::unique_ptr<LocalObjectStore>> OpenRoot(const LocalObjectStoreOptions& options);
  ~LocalObjectStore() override;

  std::string_view BackendName() const override { return "local"; }
  // The writer stays valid after the store is destroyed (it shares the folder descriptors).
  common::Result<std::unique_ptr<ObjectWriter>> Create(const std::string& key) override;
  common::Result<std::unique_ptr<ObjectReader>> Open(const std::string& key) override;
  common::Result<ObjectInfo> Stat(const std::string& key) override;
  common::Status Delete(const std::string& key) override;
  common::Result<std::vector<ObjectInfo>> List(const std::string& prefix) override;

  // Staging files removed by OpenRoot (crash leftovers).
  int removed_leftovers() const { return removed_leftovers_; }

  // The root and its staging folder, shared with writers; defined in the .cc file.
  struct Folder;

 private:
  explicit LocalObjectStore(std::shared_ptr<Folder> folder) : folder_(std::move(folder)) {}

  std::shared_ptr<Folder> folder_;
  int removed_leftovers_ = 0;
};

// The name of the staging folder under the root (tests plant crash leftovers there).
inline constexpr std::string_view kLocalStagingFolder = ".staging~";

}  // namespace analytics::blob
