// The local-folder ObjectStore adapter (see local_object_store.h for layout, durability and concurrency).
#include "blob/local/local_object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <utility>

#include "common/ids.h"
#include "obs/logging.h"

namespace analytics::blob {

using common::Result;
using common::Status;

namespace {

constexpr size_t kWriteBufferBytes = 64 * 1024;
constexpr int kMaxStagingAttempts = 8;

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// Failures of the environment (possibly transient, or fixed by an operator) are Unavailable; the rest Internal.
Status ErrnoStatus(const std::string& what, int err) {
  std::string message = what + ": " + ErrnoText(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case EROFS:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EAGAIN:
      return Status::Unavailable(std::move(message));
    default:
      return Status::Internal(std::move(message));
  }
}

Status SymlinkStatus(std::string_view key) {
  return Status::InvalidArgument("the key '" + std::string(key) + "' passes through a symbolic link", "key");
}

Status NotFoundStatus(std::string_view key) { return Status::NotFound("no object '" + std::string(key) + "'"); }

// CheckKey plus the filesystem's limit on one name.
Status CheckLocalKey(std::string_view key) {
  ANALYTICS_RETURN_IF_ERROR(CheckKey(key));
  size_t start = 0;
  while (start < key.size()) {
    size_t slash = std::min(key.find('/', start), key.size());
    if (slash - start > NAME_MAX) {
      return Status::InvalidArgument("a path segment of the key is longer than " + std::to_string(NAME_MAX) +
                                         " bytes (the local store's limit)",
                                     "key");
    }
    start = slash + 1;
  }
  return Status::Ok();
}

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership (e.g. to fdopendir).
  int Release() { return std::exchange(fd_, -1); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

int OpenAt(int dir_fd, const std::string& name, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::openat(dir_fd, name.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

int OpenFolderAt(int dir_fd, const std::string& name) {
  return OpenAt(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

// The segments of a checked key.
std::vector<std::string> Segments(std::string_view key) {
  std::vector<std::string> segments;
  size_t start = 0;
  while (start <= key.size()) {
    size_t slash = key.find('/', start);
    if (slash == std::string_view::npos) slash = key.size();
    segments.emplace_back(key.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

// The folders leading to a key's file, opened one segment at a time below the root without following links.
struct FolderChain {
  int root_fd = -1;
  std::vector<Fd> folders;    // the opened folders below the root, outermost first
  std::vector<bool> created;  // created[i]: folders[i] was made by this walk (its parent got a new entry)

  int parent() const { return folders.empty() ? root_fd : folders.back().get(); }
  int parent_of(size_t folder_idx) const { return folder_idx == 0 ? root_fd : folders[folder_idx - 1].get(); }
};

// Opens the folders segments[0 .. count) of `key`. Without `create`, a missing folder, or a file where a folder
// should be, is NotFound; with `create`, missing folders are made and a file in the way is InvalidArgument.
Result<FolderChain> OpenFolders(int root_fd, const std::vector<std::string>& segments, size_t count,
                                std::string_view key, bool create) {
  FolderChain chain;
  chain.root_fd = root_fd;
  for (size_t segment_idx = 0; segment_idx < count; ++segment_idx) {
    const std::string& name = segments[segment_idx];
    const int parent = chain.parent();
    bool created = false;
    int fd = OpenFolderAt(parent, name);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(parent, name.c_str(), 0755) == 0) {
        created = true;
      } else if (errno != EEXIST) {
        return ErrnoStatus("cannot create a folder for '" + std::string(key) + "'", errno);
      }
      fd = OpenFolderAt(parent, name);
    }
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT) return NotFoundStatus(key);
      if (err == ELOOP || err == ENOTDIR) {
        struct stat st {};
        if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
          return SymlinkStatus(key);
        }
        if (!create) return NotFoundStatus(key);
        return Status::InvalidArgument(
            "the key '" + std::string(key) + "' goes through an existing object (a key cannot be both an object and "
            "a folder of others)",
            "key");
      }
      return ErrnoStatus("cannot open a folder of '" + std::string(key) + "'", err);
    }
    chain.folders.emplace_back(fd);
    chain.created.push_back(created);
  }
  return chain;
}

Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t written = ::write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write a staging file", errno);
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return Status::Ok();
}

Status Fsync(int fd, const std::string& what) {
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  // Folders on some filesystems refuse fsync (EINVAL): nothing more can be done for them.
  if (rc != 0 && errno != EINVAL) return ErrnoStatus("cannot fsync " + what, errno);
  return Status::Ok();
}

int64_t MtimeMillis(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

// Removes staging files no live writer holds (crash leftovers). Returns how many.
int RemoveLeftovers(int staging_fd) {
  Fd listing(OpenFolderAt(staging_fd, "."));
  if (!listing.valid()) return 0;
  DIR* dir = ::fdopendir(listing.get());
  if (dir == nullptr) return 0;
  listing.Release();  // closedir owns the descriptor now
  int removed = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    Fd file(OpenAt(staging_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
    if (!file.valid()) {
      // A symbolic link has no business here: remove it.
      if (errno == ELOOP && ::unlinkat(staging_fd, name.c_str(), 0) == 0) ++removed;
      continue;
    }
    struct stat st {};
    if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    // Unlinking while holding the lock: a writer that locks its new file after us sees it unlinked and retries.
    if (::flock(file.get(), LOCK_EX | LOCK_NB) != 0) continue;
    if (::unlinkat(staging_fd, name.c_str(), 0) == 0) ++removed;
  }
  ::closedir(dir);
  return removed;
}

}  // namespace

struct LocalObjectStore::Folder {
  std::string root;
  bool sync = true;
  Fd root_fd;
  Fd staging_fd;
  // Shared: folder creation + rename of a Commit. Exclusive: removal of emptied folders after a Delete.
  std::shared_mutex tree_mu;
};

namespace {

class LocalObjectWriter final : public ObjectWriter {
 public:
  LocalObjectWriter(std::shared_ptr<LocalObjectStore::Folder> folder, std::string key, std::string staging_name,
                    Fd fd)
      : folder_(std::move(folder)), key_(std::move(key)), staging_name_(std::move(staging_name)), fd_(std::move(fd)) {}

  ~LocalObjectWriter() override {
    if (committed_) return;
    fd_.Reset();
    ::unlinkat(folder_->staging_fd.get(), staging_name_.c_str(), 0);
  }

  Status Write(std::string_view bytes) override {
    ANALYTICS_RETURN_IF_ERROR(CheckUsable());
    size_ += bytes.size();
    if (buffer_.size() + bytes.size() <= kWriteBufferBytes) {
      if (buffer_.capacity() < kWriteBufferBytes) buffer_.reserve(kWriteBufferBytes);
      buffer_.append(bytes);
      return Status::Ok();
    }
    ANALYTICS_RETURN_IF_ERROR(Flush());
    if (bytes.size() >= kWriteBufferBytes) return Remember(WriteAll(fd_.get(), bytes.data(), bytes.size()));
    buffer_.append(bytes);
    return Status::Ok();
  }

  uint64_t size() const override { return size_; }

  Status Commit() override {
    ANALYTICS_RETURN_IF_ERROR(CheckUsable());
    ANALYTICS_RETURN_IF_ERROR(Flush());
    // The object's time is its commit, not its first byte.
    if (::futimens(fd_.get(), nullptr) != 0) return Remember(ErrnoStatus("cannot set the time of '" + key_ + "'", errno));
    if (folder_->sync) ANALYTICS_RETURN_IF_ERROR(Remember(Fsync(fd_.get(), "'" + key_ + "'")));
    ANALYTICS_RETURN_IF_ERROR(Remember(Publish()));
    committed_ = true;
    fd_.Reset();  // after the rename: the staging file stays locked as long as it exists
    return Status::Ok();
  }

 private:
  Status CheckUsable() const {
    if (committed_) return Status::Internal("the writer of '" + key_ + "' was already committed");
    return error_;
  }

  Status Remember(Status status) {
    if (!status.ok()) error_ = status;
    return status;
  }

  Status Flush() {
    if (buffer_.empty()) return Status::Ok();
    Status status = WriteAll(fd_.get(), buffer_.data(), buffer_.size());
    buffer_.clear();
    return Remember(std::move(status));
  }

  // Renames the staging file to its key, then makes the new entries durable.
  Status Publish() {
    const std::vector<std::string> segments = Segments(key_);
    Result<FolderChain> chain = Status::Internal("unset");
    {
      std::shared_lock lock(folder_->tree_mu);
      chain = OpenFolders(folder_->root_fd.get(), segments, segments.size() - 1, key_, /*create=*/true);
      if (!chain.ok()) return chain.status();
      if (::renameat(folder_->staging_fd.get(), staging_name_.c_str(), chain->parent(), segments.back().c_str()) !=
          0) {
        const int err = errno;
        if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) {
          return Status::InvalidArgument("the key '" + key_ + "' is a folder of other objects", "key");
        }
        return ErrnoStatus("cannot move '" + key_ + "' into place", err);
      }
    }
    if (!folder_->sync) return Status::Ok();
    ANALYTICS_RETURN_IF_ERROR(Fsync(chain->parent(), "the folder of '" + key_ + "'"));
    for (size_t folder_idx = 0; folder_idx < chain->folders.size(); ++folder_idx) {
      if (chain->created[folder_idx]) {
        ANALYTICS_RETURN_IF_ERROR(Fsync(chain->parent_of(folder_idx), "a folder of '" + key_ + "'"));
      }
    }
    return Status::Ok();
  }

  std::shared_ptr<LocalObjectStore::Folder> folder_;
  std::string key_;
  std::string staging_name_;
  Fd fd_;
  std::string buffer_;
  uint64_t size_ = 0;
  Status error_;  // the first failure; every later call returns it
  bool committed_ = false;
};

class LocalObjectReader final : public ObjectReader {
 public:
  LocalObjectReader(Fd fd, uint64_t size) : fd_(std::move(fd)), size_(size) {}

  Result<size_t> Read(char* out, size_t capacity) override {
    while (true) {
      ssize_t got = ::read(fd_.get(), out, capacity);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return ErrnoStatus("cannot read an object", errno);
    }
  }

  uint64_t size() const override { return size_; }

 private:
  Fd fd_;
  uint64_t size_;
};

// Adds the objects below the open folder `dir_fd` (whose keys start with `path`) that start with `prefix`.
Status ListFolder(int dir_fd, std::string& path, const std::string& prefix, bool at_root,
                  std::vector<ObjectInfo>& out) {
  // A fresh descriptor: readdir moves the offset of its open file description, which must not be shared.
  Fd listing(OpenFolderAt(dir_fd, "."));
  if (!listing.valid()) {
    if (errno == ENOENT) return Status::Ok();  // removed meanwhile by a Delete
    return ErrnoStatus("cannot list '" + path + "'", errno);
  }
  DIR* dir = ::fdopendir(listing.get());
  if (dir == nullptr) return ErrnoStatus("cannot list '" + path + "'", errno);
  listing.Release();
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, &::closedir);
  const int fd = ::dirfd(dir);
  while (true) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      if (errno != 0) return ErrnoStatus("cannot list '" + path + "'", errno);
      break;
    }
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (at_root && name == kLocalStagingFolder) continue;
    if (!CheckKey(name).ok()) continue;  // not made by the store
    struct stat st {};
    if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus("cannot list '" + path + name + "'", errno);
    }
    const size_t path_size = path.size();
    path += name;
    if (S_ISREG(st.st_mode)) {
      if (path.starts_with(prefix)) {
        out.push_back(ObjectInfo{path, static_cast<uint64_t>(st.st_size), MtimeMillis(st)});
      }
    } else if (S_ISDIR(st.st_mode)) {
      path += '/';
      if (path.starts_with(prefix) || prefix.starts_with(path)) {
        Fd child(OpenFolderAt(fd, name));
        if (child.valid()) {
          ANALYTICS_RETURN_IF_ERROR(ListFolder(child.get(), path, prefix, false, out));
        } else if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) {
          return ErrnoStatus("cannot list '" + path + "'", errno);
        }
      }
    }
    path.resize(path_size);
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<LocalObjectStore>> LocalObjectStore::OpenRoot(const LocalObjectStoreOptions& options) {
  if (options.root.empty()) return Status::InvalidArgument("the object store's root folder is empty", "root");
  auto folder = std::make_shared<Folder>();
  folder->root = options.root;
  folder->sync = options.sync;
  std::error_code ec;
  std::filesystem::create_directories(options.root, ec);
  if (ec) return ErrnoStatus("cannot create the object folder " + options.root, ec.value());
  folder->root_fd = Fd(OpenAt(AT_FDCWD, options.root, O_RDONLY | O_DIRECTORY));
  if (!folder->root_fd.valid()) return ErrnoStatus("cannot open the object folder " + options.root, errno);
  const std::string staging(kLocalStagingFolder);
  if (::mkdirat(folder->root_fd.get(), staging.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("cannot create " + options.root + "/" + staging, errno);
  }
  folder->staging_fd = Fd(OpenFolderAt(folder->root_fd.get(), staging));
  if (!folder->staging_fd.valid()) return ErrnoStatus("cannot open " + options.root + "/" + staging, errno);
  std::unique_ptr<LocalObjectStore> store(new LocalObjectStore(folder));
  store->removed_leftovers_ = RemoveLeftovers(folder->staging_fd.get());
  if (store->removed_leftovers_ > 0) {
    obs::LogInfo("object store: removed unfinished writes",
                 {{"root", options.root}, {"files", store->removed_leftovers_}});
  }
  return store;
}

LocalObjectStore::~LocalObjectStore() = default;

Result<std::unique_ptr<ObjectWriter>> LocalObjectStore::Create(const std::string& key) {
  ANALYTICS_RETURN_IF_ERROR(CheckLocalKey(key));
  const int staging_fd = folder_->staging_fd.get();
  for (int attempt = 0; attempt < kMaxStagingAttempts; ++attempt) {
    std::string name = common::NewUuid() + ".tmp";
    Fd fd(OpenAt(staging_fd, name, O_WRONLY | O_CREAT | O_EXCL, 0644));
    if (!fd.valid()) {
      if (errno == EEXIST) continue;
      return ErrnoStatus("cannot create a staging file for '" + key + "'", errno);
    }
    // The lock tells another process's OpenRoot that this file is in use (see RemoveLeftovers).
    int rc;
    do {
      rc = ::flock(fd.get(), LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("cannot stat a staging file for '" + key + "'", errno);
    if (st.st_nlink == 0) continue;  // removed as a leftover between our create and lock
    return std::unique_ptr<ObjectWriter>(std::make_unique<LocalObjectWriter>(folder_, key, std::move(name),
                                                                             std::move(fd)));
  }
  return Status::Internal("cannot create a staging file for '" + key + "': too many attempts");
}

Result<std::unique_ptr<ObjectReader>> LocalObjectStore::Open(const std::string& key) {
  ANALYTICS_RETURN_IF_ERROR(CheckLocalKey(key));
  const std::vector<std::string> segments = Segments(key);
  ANALYTICS_ASSIGN_OR_RETURN(FolderChain chain, OpenFolders(folder_->root_fd.get(), segments, segments.size() - 1,
                                                            key, /*create=*/false));
  // O_NONBLOCK: a FIFO planted in the tree must not block the open (it is refused below).
  Fd fd(OpenAt(chain.parent(), segments.back(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT) return NotFoundStatus(key);
    if (errno == ELOOP) return SymlinkStatus(key);
    return ErrnoStatus("cannot open '" + key + "'", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("cannot stat '" + key + "'", errno);
  if (!S_ISREG(st.st_mode)) return NotFoundStatus(key);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return std::unique_ptr<ObjectReader>(
      std::make_unique<LocalObjectReader>(std::move(fd), static_cast<uint64_t>(st.st_size)));
}

namespace {

// The object file `name` in folder `parent`: NotFound when missing or not a regular file, refused when a symlink.
Result<struct stat> StatObject(int parent, const std::string& name, const std::string& key) {
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return NotFoundStatus(key);
    return ErrnoStatus("cannot stat '" + key + "'", errno);
  }
  if (S_ISLNK(st.st_mode)) return SymlinkStatus(key);
  if (!S_ISREG(st.st_mode)) return NotFoundStatus(key);
  return st;
}

}  // namespace

Result<ObjectInfo> LocalObjectStore::Stat(const std::string& key) {
  ANALYTICS_RETURN_IF_ERROR(CheckLocalKey(key));
  const std::vector<std::string> segments = Segments(key);
  ANALYTICS_ASSIGN_OR_RETURN(FolderChain chain, OpenFolders(folder_->root_fd.get(), segments, segments.size() - 1,
                                                            key, /*create=*/false));
  ANALYTICS_ASSIGN_OR_RETURN(struct stat st, StatObject(chain.parent(), segments.back(), key));
  return ObjectInfo{key, static_cast<uint64_t>(st.st_size), MtimeMillis(st)};
}

Status LocalObjectStore::Delete(const std::string& key) {
  ANALYTICS_RETURN_IF_ERROR(CheckLocalKey(key));
  const std::vector<std::string> segments = Segments(key);
  ANALYTICS_ASSIGN_OR_RETURN(FolderChain chain, OpenFolders(folder_->root_fd.get(), segments, segments.size() - 1,
                                                            key, /*create=*/false));
  ANALYTICS_RETURN_IF_ERROR(StatObject(chain.parent(), segments.back(), key).status());
  if (::unlinkat(chain.parent(), segments.back().c_str(), 0) != 0) {
    if (errno == ENOENT) return NotFoundStatus(key);
    return ErrnoStatus("cannot delete '" + key + "'", errno);
  }
  if (folder_->sync) ANALYTICS_RETURN_IF_ERROR(Fsync(chain.parent(), "the folder of '" + key + "'"));
  // Remove the folders this left empty, innermost first; the first one still holding something stops it.
  std::unique_lock lock(folder_->tree_mu);
  for (size_t folder_idx = chain.folders.size(); folder_idx-- > 0;) {
    if (::unlinkat(chain.parent_of(folder_idx), segments[folder_idx].c_str(), AT_REMOVEDIR) != 0) break;
  }
  return Status::Ok();
}

Result<std::vector<ObjectInfo>> LocalObjectStore::List(const std::string& prefix) {
  std::vector<ObjectInfo> out;
  // Start in the deepest folder the prefix names in full ("reports/2026/1" starts in reports/2026/).
  const size_t slash = prefix.rfind('/');
  std::string path;
  if (slash == std::string::npos) {
    ANALYTICS_RETURN_IF_ERROR(ListFolder(folder_->root_fd.get(), path, prefix, /*at_root=*/true, out));
  } else {
    const std::string folder_key = prefix.substr(0, slash);
    if (!CheckKey(folder_key).ok()) return out;  // no valid key starts with it
    const std::vector<std::string> segments = Segments(folder_key);
    Result<FolderChain> chain =
        OpenFolders(folder_->root_fd.get(), segments, segments.size(), folder_key, /*create=*/false);
    if (!chain.ok()) {
      // A missing folder, a file or a symbolic link where the folder would be: nothing to list.
      if (chain.status().code() == common::StatusCode::kNotFound ||
          chain.status().code() == common::StatusCode::kInvalidArgument) {
        return out;
      }
      return chain.status();
    }
    path = folder_key + "/";
    ANALYTICS_RETURN_IF_ERROR(ListFolder(chain->parent(), path, prefix, /*at_root=*/false, out));
  }
  std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return out;
}

}  // namespace analytics::blob
