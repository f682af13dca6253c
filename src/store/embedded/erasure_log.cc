// The erasure log (see erasure_log.h).
#include "store/embedded/erasure_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "store/embedded/file_util.h"

namespace analytics::store::embedded {

namespace fs = std::filesystem;
using common::Result;
using common::Status;

namespace {

constexpr std::string_view kPrefix = "erasures-";
constexpr std::string_view kSuffix = ".log";

}  // namespace

std::string ErasureLog::FileName(uint64_t generation) {
  char name[48];
  std::snprintf(name, sizeof(name), "erasures-%020llu.log", static_cast<unsigned long long>(generation));
  return name;
}

Result<std::optional<std::vector<std::string>>> ErasureLog::Read(const std::string& dir, uint64_t generation) {
  std::vector<std::string> users;
  const fs::path path = fs::path(dir) / FileName(generation);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::vector<std::string>>();
  std::ifstream file(path);
  if (!file) return Status::IOError("cannot read " + path.string());
  std::string line;
  while (std::getline(file, line)) {
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("erase") || !record["erase"].is_string()) break;  // a torn tail
    users.push_back(record["erase"].get<std::string>());
  }
  return std::optional<std::vector<std::string>>(std::move(users));
}

void ErasureLog::RemoveOthers(const std::string& dir, uint64_t generation) {
  std::error_code ec;
  const std::string keep = FileName(generation);
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(kPrefix) && name.ends_with(kSuffix) && name != keep) {
      std::error_code remove_ec;
      fs::remove(it->path(), remove_ec);
    }
  }
}

ErasureLog::ErasureLog(std::string dir, uint64_t generation)
    : dir_(std::move(dir)), generation_(generation), path_((fs::path(dir_) / FileName(generation)).string()) {}

ErasureLog::~ErasureLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status ErasureLog::Append(const std::string& user) {
  if (!failure_.ok()) return failure_;
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return Status::IOError("cannot open " + path_ + ": " + std::strerror(errno));
    // The new file's name must be durable too, or a crash could lose the file with its synced lines.
    if (Status status = FsyncDir(dir_); !status.ok()) {
      failure_ = status;
      return status;
    }
  }
  const std::string line = nlohmann::json{{"erase", user}}.dump() + "\n";
  Status status = WriteAll(fd_, line, path_);
  if (status.ok() && ::fdatasync(fd_) != 0) status = Status::IOError("cannot sync " + path_ + ": " + std::strerror(errno));
  if (!status.ok()) failure_ = status;
  return status;
}

void ErasureLog::Remove() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  fs::remove(path_, ec);
}

}  // namespace analytics::store::embedded
