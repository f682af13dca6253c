#include "store/embedded/wal/wal_file.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>

namespace analytics::store::wal {
namespace {

using common::Result;
using common::Status;

std::string ErrnoMessage(std::string_view what, const std::string& path, int error) {
  return std::string(what) + " " + path + ": " + std::generic_category().message(error);
}

class PosixWalFile final : public WalFile {
 public:
  PosixWalFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWalFile() override { (void)Close(); }

  Status Append(std::span<const std::string_view> slices) override {
    // writev takes at most IOV_MAX slices and may write less than asked: advance through the slices until
    // every byte is in.
    std::vector<iovec> iov;
    iov.reserve(std::min<size_t>(slices.size(), IOV_MAX));
    size_t slice_idx = 0;
    size_t slice_offset = 0;  // bytes of slices[slice_idx] already written
    while (slice_idx < slices.size()) {
      iov.clear();
      for (size_t idx = slice_idx; idx < slices.size() && iov.size() < IOV_MAX; ++idx) {
        size_t skip = idx == slice_idx ? slice_offset : 0;
        if (slices[idx].size() == skip) continue;
        iov.push_back({const_cast<char*>(slices[idx].data()) + skip, slices[idx].size() - skip});
      }
      if (iov.empty()) break;
      ssize_t written = ::writev(fd_, iov.data(), static_cast<int>(iov.size()));
      if (written < 0) {
        if (errno == EINTR) continue;
        return Status::IOError(ErrnoMessage("write", path_, errno));
      }
      auto remaining = static_cast<size_t>(written);
      while (slice_idx < slices.size() && remaining >= slices[slice_idx].size() - slice_offset) {
        remaining -= slices[slice_idx].size() - slice_offset;
        ++slice_idx;
        slice_offset = 0;
      }
      slice_offset += remaining;
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::IOError(ErrnoMessage("fdatasync", path_, errno));
    return Status::Ok();
  }

  Status Close() override {
    if (fd_ < 0) return Status::Ok();
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return Status::IOError(ErrnoMessage("close", path_, errno));
    return Status::Ok();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixWalFileSystem final : public WalFileSystem {
 public:
  Result<std::unique_ptr<WalFile>> CreateFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno == EEXIST) return Status::AlreadyExists(path + " already exists");
      return Status::IOError(ErrnoMessage("create", path, errno));
    }
    return std::unique_ptr<WalFile>(std::make_unique<PosixWalFile>(path, fd));
  }

  Status CreateDirIfMissing(const std::string& dir) override {
    std::error_code ec;
    bool created = std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IOError("create directory " + dir + ": " + ec.message());
    if (!created) return Status::Ok();
    // The entry of the new `dir` lives in its parent. (Parents create_directories also made are not synced:
    // the store's data directory is expected to exist.)
    std::filesystem::path path = std::filesystem::absolute(dir, ec).lexically_normal();
    if (ec) return Status::IOError("resolve directory " + dir + ": " + ec.message());
    if (!path.has_filename()) path = path.parent_path();  // "a/b/" -> "a/b"
    return SyncDir(path.parent_path().string());
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::IOError(ErrnoMessage("open directory", dir, errno));
    int rc = ::fsync(fd);
    int error = errno;
    ::close(fd);
    if (rc != 0) return Status::IOError(ErrnoMessage("fsync directory", dir, error));
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) return Status::NotFound(dir + " does not exist");
      return Status::IOError("list " + dir + ": " + ec.message());
    }
    std::vector<std::string> names;
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
      names.push_back(it->path().filename().string());
    }
    if (ec) return Status::IOError("list " + dir + ": " + ec.message());
    return names;
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) return Status::NotFound(path + " does not exist");
      return Status::IOError(ErrnoMessage("remove", path, errno));
    }
    return Status::Ok();
  }
};

}  // namespace

WalFileSystem* DefaultWalFileSystem() {
  static PosixWalFileSystem* file_system = new PosixWalFileSystem();  // never destroyed: usable at exit
  return file_system;
}

}  // namespace analytics::store::wal
