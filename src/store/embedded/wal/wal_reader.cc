// Replay: ScanWalFile checks one file, ReplayWal chains the files and decides which damaged tails are torn
// writes (dropped) and which are lost acknowledged data (Corruption). The rules are in wal.h and
// docs/formats/wal.md.
#include "store/embedded/wal/wal_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "store/embedded/wal/wal_file.h"
#include "store/embedded/wal/wal_format.h"

namespace analytics::store::wal {
namespace internal {
namespace {

using common::Result;
using common::Status;

constexpr size_t kReadChunk = 1 << 20;

std::string ErrnoMessage(std::string_view what, const std::string& path, int error) {
  return std::string(what) + " " + path + ": " + std::generic_category().message(error);
}

// Sequential-ish reads of one file through a buffer that grows to the largest record.
class FileReader {
 public:
  FileReader(int fd, uint64_t size, const std::string& path) : fd_(fd), size_(size), path_(path) {}

  uint64_t size() const { return size_; }

  // Bytes [offset, offset + n) of the file; valid until the next Read. Precondition: offset + n <= size().
  Result<std::string_view> Read(uint64_t offset, size_t n) {
    if (offset >= buffer_offset_ && offset + n <= buffer_offset_ + buffer_len_) {
      return std::string_view(buffer_.get() + (offset - buffer_offset_), n);
    }
    size_t want = static_cast<size_t>(std::min<uint64_t>(std::max(n, kReadChunk), size_ - offset));
    if (want > capacity_) {
      buffer_ = std::make_unique_for_overwrite<char[]>(want);
      capacity_ = want;
    }
    buffer_len_ = 0;
    size_t done = 0;
    while (done < want) {
      ssize_t got = ::pread(fd_, buffer_.get() + done, want - done, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return Status::IOError(ErrnoMessage("read", path_, errno));
      }
      if (got == 0) return Status::IOError(path_ + " shrank while being read");
      done += static_cast<size_t>(got);
    }
    buffer_offset_ = offset;
    buffer_len_ = want;
    return std::string_view(buffer_.get(), n);
  }

 private:
  const int fd_;
  const uint64_t size_;
  const std::string& path_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  uint64_t buffer_offset_ = 0;
  size_t buffer_len_ = 0;
};

// Closes a descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

struct RecordView {
  uint64_t sequence = 0;
  std::string_view payload;
  uint64_t size = 0;  // header + payload
};

// The record at `offset` if it is whole and its checksum matches; otherwise why not.
Result<std::variant<RecordView, std::string>> ReadRecord(FileReader& reader, uint64_t offset, uint32_t version) {
  using Outcome = std::variant<RecordView, std::string>;
  uint64_t available = reader.size() - offset;
  if (available < kRecordHeaderSize) return Outcome(std::string("partial record header"));
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view header, reader.Read(offset, kRecordHeaderSize));
  uint32_t length = DecodeFixed32(header.data());
  uint32_t stored_crc = DecodeFixed32(header.data() + 4);
  if (length > kMaxPayloadBytes) {
    return Outcome("record length " + std::to_string(length) + " above the maximum");
  }
  if (available - kRecordHeaderSize < length) return Outcome(std::string("partial record payload"));
  // The checksum covers the sequence and the payload, which are contiguous on disk.
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view covered, reader.Read(offset + 8, 8 + size_t{length}));
  if (RecordChecksumOf(version, covered) != stored_crc) return Outcome(std::string("checksum mismatch"));
  return Outcome(RecordView{DecodeFixed64(covered.data()), covered.substr(8), kRecordHeaderSize + length});
}

struct FoundRecord {
  uint64_t offset;
  uint64_t sequence;
};

// Looks for a valid record starting anywhere in (`from`, end of file) whose sequence could follow the
// damage: in [expected, expected + records that still fit]. Damage may have hit a length field, so record
// boundaries after it are unknown and every byte offset is a candidate; the sequence and length bounds
// reject almost all of them before the checksum is computed.
Result<std::optional<FoundRecord>> FindValidRecordAfter(FileReader& scanner, FileReader& verifier, uint64_t from,
                                                        uint64_t expected, uint32_t version) {
  const uint64_t size = scanner.size();
  uint64_t chunk_start = from + 1;
  while (chunk_start + kRecordHeaderSize <= size) {
    size_t chunk_len = static_cast<size_t>(std::min<uint64_t>(kReadChunk, size - chunk_start));
    ANALYTICS_ASSIGN_OR_RETURN(std::string_view chunk, scanner.Read(chunk_start, chunk_len));
    for (size_t pos = 0; pos + kRecordHeaderSize <= chunk.size(); ++pos) {
      uint64_t offset = chunk_start + pos;
      uint64_t sequence = DecodeFixed64(chunk.data() + pos + 8);
      if (sequence < expected || sequence - expected > (size - offset) / kRecordHeaderSize) continue;
      uint32_t length = DecodeFixed32(chunk.data() + pos);
      if (length > kMaxPayloadBytes || size - offset - kRecordHeaderSize < length) continue;
      ANALYTICS_ASSIGN_OR_RETURN(auto outcome, ReadRecord(verifier, offset, version));
      if (std::holds_alternative<RecordView>(outcome)) {
        return std::optional<FoundRecord>(FoundRecord{offset, std::get<RecordView>(outcome).sequence});
      }
    }
    // Consecutive chunks overlap by a header's worth so that no offset is skipped.
    if (chunk_start + chunk_len >= size) break;
    chunk_start += chunk_len - (kRecordHeaderSize - 1);
  }
  return std::optional<FoundRecord>();
}

}  // namespace

Result<FileScan> ScanWalFile(const std::string& path, uint64_t first_sequence, uint64_t after_sequence,
                             const std::function<Status(uint64_t, std::string_view)>* fn, ReplayStats* stats) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(ErrnoMessage("open", path, errno));
  FdCloser closer(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::IOError(ErrnoMessage("stat", path, errno));
  FileReader reader(fd, static_cast<uint64_t>(st.st_size), path);
  FileReader verifier(fd, static_cast<uint64_t>(st.st_size), path);
  const uint64_t size = reader.size();

  FileScan scan;
  scan.next_sequence = first_sequence;
  scan.size = size;
  uint32_t version = kFormatVersion;  // the file header's, once read
  // Ends the scan at a damaged record at `offset` unless a valid record follows it.
  auto damaged_at = [&](uint64_t offset, std::string reason) -> Result<FileScan> {
    ANALYTICS_ASSIGN_OR_RETURN(std::optional<FoundRecord> found,
                               FindValidRecordAfter(reader, verifier, offset, scan.next_sequence, version));
    if (found) {
      return Status::Corruption(path + ": damaged record at offset " + std::to_string(offset) + " (" + reason +
                                ", expected sequence " + std::to_string(scan.next_sequence) +
                                ") but a valid record (sequence " + std::to_string(found->sequence) +
                                ") follows at offset " + std::to_string(found->offset));
    }
    scan.tail = DamagedTail{offset, size - offset, std::move(reason)};
    return scan;
  };

  if (size == 0) return scan;  // created, then a crash before the header reached the disk: nothing to drop
  if (size < kFileHeaderSize) return damaged_at(0, "partial file header");
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view header, reader.Read(0, kFileHeaderSize));
  if (header.substr(0, kFileMagic.size()) != kFileMagic) return damaged_at(0, "bad file magic");
  version = DecodeFixed32(header.data() + 4);
  if (version < kOldestReadableVersion || version > kFormatVersion) {
    return Status::FailedPrecondition(path + ": unsupported WAL format version " + std::to_string(version) +
                                      " at offset 4 (this build reads versions " +
                                      std::to_string(kOldestReadableVersion) + " to " +
                                      std::to_string(kFormatVersion) + ")");
  }
  uint64_t header_sequence = DecodeFixed64(header.data() + 8);
  if (header_sequence != first_sequence) {
    return Status::Corruption(path + ": file header at offset 8 says first sequence " +
                              std::to_string(header_sequence) + ", the file name says " +
                              std::to_string(first_sequence));
  }

  uint64_t offset = kFileHeaderSize;
  while (offset < size) {
    ANALYTICS_ASSIGN_OR_RETURN(auto outcome, ReadRecord(reader, offset, version));
    if (std::holds_alternative<std::string>(outcome)) {
      return damaged_at(offset, std::move(std::get<std::string>(outcome)));
    }
    const RecordView& record = std::get<RecordView>(outcome);
    if (record.sequence > scan.next_sequence) {
      return Status::Corruption(path + ": sequence gap at offset " + std::to_string(offset) + ": expected " +
                                std::to_string(scan.next_sequence) + ", found " +
                                std::to_string(record.sequence));
    }
    if (record.sequence < scan.next_sequence) {
      // A checksummed record from the past: stale bytes (e.g. blocks of a deleted file after a crash).
      return damaged_at(offset, "stale record with sequence " + std::to_string(record.sequence));
    }
    if (record.sequence > after_sequence) {
      if (fn != nullptr) ANALYTICS_RETURN_IF_ERROR((*fn)(record.sequence, record.payload));
      if (stats != nullptr) {
        ++stats->records;
        stats->bytes += record.payload.size();
      }
    } else if (stats != nullptr) {
      ++stats->skipped_records;
    }
    ++scan.valid_records;
    ++scan.next_sequence;
    offset += record.size;
  }
  return scan;
}

}  // namespace internal

common::Result<ReplayStats> ReplayWal(const std::string& dir, uint64_t after_sequence,
                                      const std::function<common::Status(uint64_t, std::string_view)>& fn) {
  using common::Status;
  ReplayStats stats;
  stats.last_sequence = after_sequence;
  auto names = DefaultWalFileSystem()->ListDir(dir);
  if (!names.ok()) {
    if (names.status().code() != common::StatusCode::kNotFound) return names.status();
    stats.notes.push_back("WAL directory " + dir + " does not exist: nothing to replay");
    return stats;
  }
  struct WalFileEntry {
    uint64_t first_sequence;
    std::string path;
  };
  std::vector<WalFileEntry> files;
  for (const std::string& name : *names) {
    std::optional<uint64_t> first_sequence = ParseWalFileName(name);
    if (!first_sequence) {
      stats.notes.push_back("ignored " + dir + "/" + name + ": not a WAL file name");
      continue;
    }
    if (*first_sequence == 0) return Status::Corruption(dir + "/" + name + ": sequence 0 is never written");
    files.push_back({*first_sequence, dir + "/" + name});
  }
  std::sort(files.begin(), files.end(),
            [](const WalFileEntry& a, const WalFileEntry& b) { return a.first_sequence < b.first_sequence; });
  if (files.empty()) return stats;

  // Sequences below the first file's were truncated, which is only allowed once they are in segments.
  if (files.front().first_sequence > after_sequence + 1) {
    return Status::Corruption(files.front().path + ": the WAL starts at sequence " +
                              std::to_string(files.front().first_sequence) + " (offset 0) but replay needs " +
                              std::to_string(after_sequence + 1) + " on: earlier files are missing");
  }
  for (size_t file_idx = 0; file_idx < files.size(); ++file_idx) {
    const WalFileEntry& file = files[file_idx];
    ANALYTICS_ASSIGN_OR_RETURN(internal::FileScan scan,
                               internal::ScanWalFile(file.path, file.first_sequence, after_sequence, &fn, &stats));
    if (scan.valid_records > 0) stats.last_sequence = std::max(stats.last_sequence, scan.next_sequence - 1);
    const bool is_last = file_idx + 1 == files.size();
    if (is_last) {
      if (scan.tail) {
        stats.dropped_tail_bytes += scan.tail->bytes;
        stats.notes.push_back("dropped " + std::to_string(scan.tail->bytes) + " bytes at the end of " + file.path +
                              " from offset " + std::to_string(scan.tail->offset) + " (" + scan.tail->reason +
                              "): a write torn by a crash");
      }
      break;
    }
    // The next file must continue exactly where this one stopped, unless the missing sequences are all
    // already in segments. A damaged tail is a torn write when the writer was reopened right where it
    // starts (an earlier replay dropped it and reported last_sequence before it).
    const WalFileEntry& next = files[file_idx + 1];
    if (next.first_sequence < scan.next_sequence) {
      return Status::Corruption(next.path + ": starts at sequence " + std::to_string(next.first_sequence) +
                                " (offset 0) but " + file.path + " already holds sequences up to " +
                                std::to_string(scan.next_sequence - 1));
    }
    if (next.first_sequence > scan.next_sequence && next.first_sequence > after_sequence + 1) {
      if (scan.tail) {
        return Status::Corruption(file.path + ": damaged record at offset " + std::to_string(scan.tail->offset) +
                                  " (" + scan.tail->reason + ") loses sequences from " +
                                  std::to_string(scan.next_sequence) + ", but the next file " + next.path +
                                  " starts at " + std::to_string(next.first_sequence));
      }
      return Status::Corruption("sequence gap: " + file.path + " ends at offset " + std::to_string(scan.size) +
                                " before sequence " + std::to_string(scan.next_sequence) + ", the next file " +
                                next.path + " starts at sequence " + std::to_string(next.first_sequence) +
                                ": a WAL file is missing");
    }
    if (scan.tail) {
      stats.dropped_tail_bytes += scan.tail->bytes;
      stats.notes.push_back("dropped " + std::to_string(scan.tail->bytes) + " bytes at the end of " + file.path +
                            " from offset " + std::to_string(scan.tail->offset) + " (" + scan.tail->reason +
                            "): a write torn by an earlier crash, the next file continues at sequence " +
                            std::to_string(next.first_sequence));
    }
  }
  return stats;
}

}  // namespace analytics::store::wal
