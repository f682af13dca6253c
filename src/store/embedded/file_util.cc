// Durable file writes.
#include "store/embedded/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace analytics::store::embedded {

using common::Status;

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open dir " + dir + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("cannot fsync dir " + dir + ": " + std::strerror(errno));
  return Status::Ok();
}

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError("cannot write " + path + ": " + std::strerror(errno));
    written += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("cannot create " + tmp + ": " + std::strerror(errno));
  if (Status status = WriteAll(fd, bytes, tmp); !status.ok()) {
    ::close(fd);
    return status;
  }
  if (::fdatasync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return Status::IOError("cannot sync " + tmp + ": " + std::strerror(err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IOError("cannot rename " + tmp + ": " + std::strerror(errno));
  }
  const auto parent = std::filesystem::path(path).parent_path();
  return FsyncDir(parent.empty() ? "." : parent.string());
}

}  // namespace analytics::store::embedded
