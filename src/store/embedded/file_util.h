// Durable file writes for the embedded store: write to `<path>.tmp`, fdatasync, rename over `path`, fsync the
// directory — so a reader sees the old file or the whole new one, even after a crash.
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace analytics::store::embedded {

common::Status FsyncDir(const std::string& dir);
// Writes all of `bytes` to `fd` (retrying short writes and EINTR); `path` names the file in the error.
common::Status WriteAll(int fd, std::string_view bytes, const std::string& path);
common::Status WriteFileAtomically(const std::string& path, const std::string& bytes);

}  // namespace analytics::store::embedded
