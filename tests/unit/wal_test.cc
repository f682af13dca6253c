// Unit tests for the embedded store's write-ahead log (store/embedded/wal): round trips across file rolls,
// group commit under concurrency, torn and damaged tails, corruption in the middle, truncation, reopening,
// and IO failures injected through a WalFileSystem wrapper.
#include "store/embedded/wal/wal.h"

#include <xxhash.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "store/embedded/wal/wal_file.h"
#include "store/embedded/wal/wal_format.h"
#include "support/test_env.h"

namespace analytics::store::wal {
namespace {

namespace fs = std::filesystem;
using common::Result;
using common::Status;
using common::StatusCode;

// --- Helpers ----------------------------------------------------------------------------------------------

// Deterministic bytes that differ per tag, prefixed with the tag so mix-ups are readable in failures.
std::string MakePayload(uint64_t tag, size_t size) {
  std::string payload = "#" + std::to_string(tag) + ":";
  payload.resize(std::max(size, payload.size()));
  uint64_t state = tag * 6364136223846793005ULL + 1442695040888963407ULL;
  for (size_t byte_idx = 0; byte_idx < payload.size(); ++byte_idx) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    if (byte_idx > std::to_string(tag).size() + 1) payload[byte_idx] = static_cast<char>(state >> 56);
  }
  payload.resize(size);
  return payload;
}

struct Replayed {
  ReplayStats stats;
  std::vector<std::pair<uint64_t, std::string>> records;
};

Result<Replayed> Replay(const fs::path& dir, uint64_t after_sequence = 0) {
  Replayed out;
  auto stats = ReplayWal(dir.string(), after_sequence, [&](uint64_t sequence, std::string_view payload) {
    out.records.emplace_back(sequence, std::string(payload));
    return Status::Ok();
  });
  if (!stats.ok()) return stats.status();
  out.stats = std::move(stats).value();
  return out;
}

// WAL files of `dir`, oldest first.
std::vector<fs::path> WalFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (ParseWalFileName(entry.path().filename().string())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void FlipByte(const fs::path& path, uint64_t offset) {
  std::string bytes = ReadFile(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  WriteFile(path, bytes);
}

// The format, encoded here independently of the library, straight from docs/formats/wal.md.
std::string Le32(uint32_t value) {
  std::string out(4, '\0');
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) out[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  return out;
}
std::string Le64(uint64_t value) {
  std::string out(8, '\0');
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) out[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  return out;
}
// Files of format 1 (zlib crc32), written by older builds: replay must keep reading them. The hand-made
// files of the damage tests below use it.
std::string DocFileHeader(uint64_t first_sequence) { return "AWAL" + Le32(1) + Le64(first_sequence); }
std::string DocRecord(uint64_t sequence, std::string_view payload) {
  std::string covered = Le64(sequence) + std::string(payload);
  auto crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(covered.data()),
                                         static_cast<uInt>(covered.size())));
  return Le32(static_cast<uint32_t>(payload.size())) + Le32(crc) + covered;
}
// Format 2 (what the writer writes): the low 32 bits of XXH3-64 of the payload, seeded with the sequence.
std::string DocFileHeaderV2(uint64_t first_sequence) { return "AWAL" + Le32(2) + Le64(first_sequence); }
std::string DocRecordV2(uint64_t sequence, std::string_view payload) {
  auto checksum = static_cast<uint32_t>(XXH3_64bits_withSeed(payload.data(), payload.size(), sequence));
  return Le32(static_cast<uint32_t>(payload.size())) + Le32(checksum) + Le64(sequence) + std::string(payload);
}

WalOptions Options(const fs::path& dir, uint64_t max_file_bytes = 64 << 20, bool sync = false,
                   WalFileSystem* file_system = nullptr) {
  WalOptions options;
  options.dir = dir.string();
  options.max_file_bytes = max_file_bytes;
  options.sync = sync;
  options.file_system = file_system;
  return options;
}

// Injects faults into the POSIX file system: a torn write (a prefix of one Append reaches the file, then
// IOError), a failed fdatasync, or slow syncs. Counts appends and syncs.
class FaultInjectingFileSystem final : public WalFileSystem {
 public:
  // The `nth` next WalFile::Append (1 = the very next) writes only its first `bytes_before_failure` bytes and
  // fails with IOError.
  void FailAppendForTest(int nth, size_t bytes_before_failure) {
    std::lock_guard lock(mu_);
    appends_until_failure_ = nth;
    bytes_before_failure_ = bytes_before_failure;
  }
  void FailNextSyncForTest() { fail_next_sync_ = true; }
  void SetSyncDelayForTest(std::chrono::microseconds delay) { sync_delay_ = delay; }
  int appends() const { return appends_; }
  int syncs() const { return syncs_; }

  Result<std::unique_ptr<WalFile>> CreateFile(const std::string& path) override {
    auto base = DefaultWalFileSystem()->CreateFile(path);
    if (!base.ok()) return base.status();
    return std::unique_ptr<WalFile>(std::make_unique<File>(*this, std::move(base).value()));
  }
  Status CreateDirIfMissing(const std::string& dir) override {
    return DefaultWalFileSystem()->CreateDirIfMissing(dir);
  }
  Status SyncDir(const std::string& dir) override { return DefaultWalFileSystem()->SyncDir(dir); }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    return DefaultWalFileSystem()->ListDir(dir);
  }
  Status RemoveFile(const std::string& path) override { return DefaultWalFileSystem()->RemoveFile(path); }

 private:
  class File final : public WalFile {
   public:
    File(FaultInjectingFileSystem& owner, std::unique_ptr<WalFile> base) : owner_(owner), base_(std::move(base)) {}

    Status Append(std::span<const std::string_view> slices) override {
      ++owner_.appends_;
      size_t keep = 0;
      {
        std::lock_guard lock(owner_.mu_);
        if (owner_.appends_until_failure_ == 0 || --owner_.appends_until_failure_ > 0) return base_->Append(slices);
        keep = owner_.bytes_before_failure_;
      }
      std::vector<std::string_view> prefix;
      for (std::string_view slice : slices) {
        if (keep == 0) break;
        prefix.push_back(slice.substr(0, std::min(keep, slice.size())));
        keep -= prefix.back().size();
      }
      ANALYTICS_RETURN_IF_ERROR(base_->Append(prefix));
      return Status::IOError("injected write failure (No space left on device)");
    }
    Status Sync() override {
      ++owner_.syncs_;
      std::this_thread::sleep_for(owner_.sync_delay_.load());
      if (owner_.fail_next_sync_.exchange(false)) return Status::IOError("injected fdatasync failure");
      return base_->Sync();
    }
    Status Close() override { return base_->Close(); }

   private:
    FaultInjectingFileSystem& owner_;
    std::unique_ptr<WalFile> base_;
  };

  std::mutex mu_;
  int appends_until_failure_ = 0;  // GUARDED_BY(mu_); 0: no failure planned
  size_t bytes_before_failure_ = 0;  // GUARDED_BY(mu_)
  std::atomic<bool> fail_next_sync_{false};
  std::atomic<std::chrono::microseconds> sync_delay_{std::chrono::microseconds(0)};
  std::atomic<int> appends_{0};
  std::atomic<int> syncs_{0};
};

class WalTest : public ::testing::Test {
 protected:
  fs::path WalDir() const { return temp_.path() / "wal"; }
  // A fresh directory next to the WAL one, for copies.
  fs::path ScratchDir(const std::string& name) const {
    fs::path dir = temp_.path() / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
  }

  // Appends `payloads` one by one (sequences from the writer's next) and returns the record offsets in the
  // file, assuming no roll.
  static std::vector<uint64_t> AppendAll(WalWriter& writer, const std::vector<std::string>& payloads) {
    std::vector<uint64_t> offsets;
    uint64_t offset = kFileHeaderSize;
    for (const std::string& payload : payloads) {
      auto sequence = writer.Append(payload);
      EXPECT_OK(sequence);
      offsets.push_back(offset);
      offset += kRecordHeaderSize + payload.size();
    }
    return offsets;
  }

  analytics::testing::TempDir temp_;
};

std::vector<std::string> Payloads(size_t count, size_t size_seed = 100) {
  std::vector<std::string> payloads;
  for (size_t record_idx = 0; record_idx < count; ++record_idx) {
    payloads.push_back(MakePayload(record_idx + 1, size_seed + (record_idx * 37) % 200));
  }
  return payloads;
}

// --- Format -----------------------------------------------------------------------------------------------

TEST(WalFormatTest, FileNamesSortLikeSequences) {
  EXPECT_EQ(WalFileName(42), "wal-00000000000000000042.log");
  EXPECT_EQ(WalFileName(UINT64_MAX), "wal-18446744073709551615.log");
  EXPECT_EQ(ParseWalFileName("wal-00000000000000000042.log"), 42u);
  EXPECT_EQ(ParseWalFileName("wal-18446744073709551615.log"), UINT64_MAX);
  EXPECT_FALSE(ParseWalFileName("wal-18446744073709551616.log"));  // overflows
  EXPECT_FALSE(ParseWalFileName("wal-42.log"));
  EXPECT_FALSE(ParseWalFileName("wal-0000000000000000004x.log"));
  EXPECT_FALSE(ParseWalFileName("wal-00000000000000000042.log.tmp"));
}

TEST_F(WalTest, FileBytesMatchTheDocumentedLayout) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    ASSERT_OK_AND_ASSIGN(uint64_t first, writer->Append("hello"));
    ASSERT_OK_AND_ASSIGN(uint64_t second, writer->Append(""));
    EXPECT_EQ(first, 1u);
    EXPECT_EQ(second, 2u);
    EXPECT_EQ(writer->bytes_written(), 16u + 21u + 16u);
  }
  std::vector<fs::path> files = WalFiles(WalDir());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename(), "wal-00000000000000000001.log");
  std::string bytes = ReadFile(files[0]);
  EXPECT_EQ(bytes, DocFileHeaderV2(1) + DocRecordV2(1, "hello") + DocRecordV2(2, ""));
  // The worked example of docs/formats/wal.md, byte for byte.
  const unsigned char golden[] = {
      'A',  'W',  'A',  'L',  0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // header
      0x05, 0x00, 0x00, 0x00, 0x92, 0x9e, 0xa8, 0x97, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // rec 1
      'h',  'e',  'l',  'l',  'o',                                                                     //
      0x00, 0x00, 0x00, 0x00, 0xa0, 0xfd, 0xfc, 0xd1, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // rec 2
  };
  EXPECT_EQ(bytes, std::string(reinterpret_cast<const char*>(golden), sizeof(golden)));
}

// --- Round trips ------------------------------------------------------------------------------------------

TEST_F(WalTest, EmptyDirectoryReplaysNothing) {
  fs::create_directories(WalDir());
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir(), 7));
  EXPECT_TRUE(replayed.records.empty());
  EXPECT_EQ(replayed.stats.records, 0u);
  EXPECT_EQ(replayed.stats.last_sequence, 7u);
  EXPECT_EQ(replayed.stats.dropped_tail_bytes, 0u);
}

TEST_F(WalTest, MissingDirectoryReplaysNothing) {
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir() / "absent"));
  EXPECT_TRUE(replayed.records.empty());
  EXPECT_EQ(replayed.stats.notes.size(), 1u);
}

TEST_F(WalTest, RoundTripsManyRecordsAcrossFileRolls) {
  constexpr uint64_t kMaxFileBytes = 4096;
  std::vector<std::string> payloads;
  for (size_t record_idx = 0; record_idx < 2000; ++record_idx) {
    // Mostly small, some empty, some larger than a whole file (those get a file of their own).
    size_t size = record_idx % 250 == 7 ? 3 * kMaxFileBytes : (record_idx * 53) % 700;
    if (record_idx % 100 == 3) size = 0;
    payloads.push_back(MakePayload(record_idx + 1, size));
  }
  uint64_t total_payload = 0;
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), kMaxFileBytes), 1));
    for (size_t record_idx = 0; record_idx < payloads.size(); ++record_idx) {
      ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append(payloads[record_idx]));
      ASSERT_EQ(sequence, record_idx + 1);
      total_payload += payloads[record_idx].size();
    }
    EXPECT_EQ(writer->last_sequence(), payloads.size());
    uint64_t on_disk = 0;
    for (const fs::path& file : WalFiles(WalDir())) on_disk += fs::file_size(file);
    EXPECT_EQ(writer->bytes_written(), on_disk);
  }
  std::vector<fs::path> files = WalFiles(WalDir());
  EXPECT_GT(files.size(), 100u);
  for (const fs::path& file : files) {
    std::string bytes = ReadFile(file);
    // A file passes the limit only when its single record alone does.
    uint32_t first_length = bytes.size() > kFileHeaderSize ? DecodeFixed32(bytes.data() + kFileHeaderSize) : 0;
    if (kFileHeaderSize + kRecordHeaderSize + first_length <= kMaxFileBytes) {
      EXPECT_LE(bytes.size(), kMaxFileBytes) << file;
    } else {
      EXPECT_EQ(bytes.size(), kFileHeaderSize + kRecordHeaderSize + first_length) << file;
    }
  }

  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), payloads.size());
  for (size_t record_idx = 0; record_idx < payloads.size(); ++record_idx) {
    EXPECT_EQ(replayed.records[record_idx].first, record_idx + 1);
    EXPECT_EQ(replayed.records[record_idx].second, payloads[record_idx]) << "record " << record_idx + 1;
  }
  EXPECT_EQ(replayed.stats.records, payloads.size());
  EXPECT_EQ(replayed.stats.bytes, total_payload);
  EXPECT_EQ(replayed.stats.last_sequence, payloads.size());
  EXPECT_EQ(replayed.stats.dropped_tail_bytes, 0u);
  EXPECT_TRUE(replayed.stats.notes.empty());
}

TEST_F(WalTest, LargeRecordRoundTripsAndOversizedRecordIsRejected) {
  const std::string large = MakePayload(1, 8 << 20);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 1 << 20, /*sync=*/true), 1));
    ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append(large));
    EXPECT_EQ(sequence, 1u);
    std::string oversized(size_t{kMaxPayloadBytes} + 1, 'x');
    auto rejected = writer->Append(oversized);
    ASSERT_FALSE(rejected.ok());
    EXPECT_EQ(rejected.status().code(), StatusCode::kInvalidArgument);
    // A rejected record takes no sequence and does not break the writer.
    ASSERT_OK_AND_ASSIGN(sequence, writer->Append("after"));
    EXPECT_EQ(sequence, 2u);
  }
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), 2u);
  EXPECT_EQ(replayed.records[0].second, large);
  EXPECT_EQ(replayed.records[1].second, "after");
}

TEST_F(WalTest, ConcurrentAppendsReplayExactlyOnce) {
  constexpr int kThreads = 8;
  constexpr int kAppendsPerThread = 300;
  std::vector<std::vector<std::pair<uint64_t, std::string>>> acknowledged(kThreads);
  {
    // Small files so that rolls happen while callers queue.
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 10, /*sync=*/true), 1));
    std::vector<std::thread> threads;
    for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
      threads.emplace_back([&, thread_idx] {
        for (int append_idx = 0; append_idx < kAppendsPerThread; ++append_idx) {
          uint64_t tag = static_cast<uint64_t>(thread_idx) * 1'000'000 + static_cast<uint64_t>(append_idx);
          std::string payload = MakePayload(tag, 50 + static_cast<size_t>(append_idx * 31 % 900));
          auto sequence = writer->Append(payload);
          if (!sequence.ok()) {
            ADD_FAILURE() << sequence.status().ToString();
            return;
          }
          acknowledged[thread_idx].emplace_back(*sequence, std::move(payload));
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(writer->last_sequence(), uint64_t{kThreads * kAppendsPerThread});
  }
  std::map<uint64_t, std::string> expected;
  for (const auto& per_thread : acknowledged) {
    ASSERT_EQ(per_thread.size(), size_t{kAppendsPerThread});
    for (size_t append_idx = 1; append_idx < per_thread.size(); ++append_idx) {
      EXPECT_LT(per_thread[append_idx - 1].first, per_thread[append_idx].first);  // per caller, in order
    }
    for (const auto& [sequence, payload] : per_thread) {
      EXPECT_TRUE(expected.emplace(sequence, payload).second) << "sequence " << sequence << " acknowledged twice";
    }
  }
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), expected.size());
  uint64_t next = 1;
  for (const auto& [sequence, payload] : replayed.records) {
    ASSERT_EQ(sequence, next++);
    auto it = expected.find(sequence);
    ASSERT_NE(it, expected.end());
    EXPECT_EQ(payload, it->second) << "sequence " << sequence;
  }
  EXPECT_GT(WalFiles(WalDir()).size(), 10u);
}

TEST_F(WalTest, ConcurrentAppendsShareSyncs) {
  FaultInjectingFileSystem file_system;
  file_system.SetSyncDelayForTest(std::chrono::milliseconds(2));  // a slow disk, so callers pile up
  constexpr int kThreads = 8;
  constexpr int kAppendsPerThread = 40;
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 20, true, &file_system), 1));
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&] {
      for (int append_idx = 0; append_idx < kAppendsPerThread; ++append_idx) EXPECT_OK(writer->Append("event batch"));
    });
  }
  for (auto& thread : threads) thread.join();
  constexpr int kAppends = kThreads * kAppendsPerThread;
  EXPECT_EQ(writer->last_sequence(), uint64_t{kAppends});
  EXPECT_EQ(file_system.appends(), file_system.syncs() + 1);  // + the file header, synced with the first batch
  EXPECT_LT(file_system.syncs(), kAppends / 2) << "group commit should share syncs between waiting callers";
}

// --- Torn and damaged tails -------------------------------------------------------------------------------

TEST_F(WalTest, TruncatedTrailingRecordIsIgnored) {
  const std::vector<std::string> payloads = Payloads(20);
  std::vector<uint64_t> offsets;
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    offsets = AppendAll(*writer, payloads);
  }
  const fs::path original = WalFiles(WalDir()).at(0);
  const uint64_t file_size = fs::file_size(original);
  const uint64_t last_record = offsets.back();
  ASSERT_EQ(file_size, last_record + kRecordHeaderSize + payloads.back().size());

  // Every cut inside the last record: header, checksum, sequence, payload.
  for (uint64_t cut = last_record; cut < file_size; ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    const fs::path dir = ScratchDir("cut");
    fs::copy_file(original, dir / original.filename());
    fs::resize_file(dir / original.filename(), cut);
    ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(dir));
    ASSERT_EQ(replayed.records.size(), payloads.size() - 1);
    EXPECT_EQ(replayed.records.back().second, payloads[payloads.size() - 2]);
    EXPECT_EQ(replayed.stats.last_sequence, payloads.size() - 1);
    EXPECT_EQ(replayed.stats.dropped_tail_bytes, cut - last_record);
    EXPECT_EQ(replayed.stats.notes.size(), cut == last_record ? 0u : 1u);

    // The writer continues after the dropped record, in a new file; the torn file is then no longer the
    // last one, and replay still accepts its tail because the next file starts at the lost sequence.
    {
      ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(dir), replayed.stats.last_sequence + 1));
      ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("after the crash"));
      EXPECT_EQ(sequence, payloads.size());
    }
    ASSERT_OK_AND_ASSIGN(Replayed again, Replay(dir));
    ASSERT_EQ(again.records.size(), payloads.size());
    EXPECT_EQ(again.records.back(), std::make_pair(uint64_t{payloads.size()}, std::string("after the crash")));
    EXPECT_EQ(again.stats.dropped_tail_bytes, cut - last_record);
  }
}

TEST_F(WalTest, CorruptTrailingRecordIsIgnored) {
  const std::vector<std::string> payloads = Payloads(20);
  std::vector<uint64_t> offsets;
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    offsets = AppendAll(*writer, payloads);
  }
  const fs::path original = WalFiles(WalDir()).at(0);
  const uint64_t file_size = fs::file_size(original);
  // Every byte of the last record, in turn.
  for (uint64_t offset = offsets.back(); offset < file_size; ++offset) {
    SCOPED_TRACE("flipped byte at " + std::to_string(offset));
    const fs::path dir = ScratchDir("flip");
    fs::copy_file(original, dir / original.filename());
    FlipByte(dir / original.filename(), offset);
    ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(dir));
    ASSERT_EQ(replayed.records.size(), payloads.size() - 1);
    EXPECT_EQ(replayed.stats.dropped_tail_bytes, file_size - offsets.back());
    EXPECT_EQ(replayed.stats.notes.size(), 1u);
  }
}

TEST_F(WalTest, CorruptMiddleRecordIsCorruptionWithPathAndOffset) {
  const std::vector<std::string> payloads = Payloads(20);
  std::vector<uint64_t> offsets;
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    offsets = AppendAll(*writer, payloads);
  }
  const fs::path original = WalFiles(WalDir()).at(0);
  const uint64_t damaged = offsets[9];
  // Every byte of record 10, length field included: the reader cannot trust record boundaries after it and
  // must still notice the valid records that follow.
  for (uint64_t offset = damaged; offset < offsets[10]; ++offset) {
    SCOPED_TRACE("flipped byte at " + std::to_string(offset));
    const fs::path dir = ScratchDir("flip");
    fs::copy_file(original, dir / original.filename());
    FlipByte(dir / original.filename(), offset);
    auto replayed = Replay(dir);
    ASSERT_FALSE(replayed.ok());
    EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption);
    EXPECT_NE(replayed.status().message().find((dir / original.filename()).string()), std::string::npos)
        << replayed.status().ToString();
    EXPECT_NE(replayed.status().message().find("offset " + std::to_string(damaged) + " "), std::string::npos)
        << replayed.status().ToString();
  }
}

TEST_F(WalTest, CorruptRecordInEarlierFileIsCorruption) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 2048), 1));
    (void)AppendAll(*writer, Payloads(100));
  }
  std::vector<fs::path> files = WalFiles(WalDir());
  ASSERT_GE(files.size(), 3u);
  const uint64_t first_file_size = fs::file_size(files[0]);
  for (uint64_t offset : {kFileHeaderSize + 3, first_file_size - 1}) {  // a middle record, the last record
    SCOPED_TRACE("flipped byte at " + std::to_string(offset));
    FlipByte(files[0], offset);
    auto replayed = Replay(WalDir());
    ASSERT_FALSE(replayed.ok());
    EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption);
    EXPECT_NE(replayed.status().message().find(files[0].string()), std::string::npos) << replayed.status().ToString();
    EXPECT_NE(replayed.status().message().find("offset "), std::string::npos) << replayed.status().ToString();
    FlipByte(files[0], offset);  // repair
    ASSERT_OK(Replay(WalDir()));
  }
}

TEST_F(WalTest, StaleRecordAtTheEndIsIgnored) {
  // Blocks of a deleted file showing through after a crash: a checksummed record from the past.
  fs::create_directories(WalDir());
  WriteFile(WalDir() / WalFileName(1),
            DocFileHeader(1) + DocRecord(1, "one") + DocRecord(2, "two") + DocRecord(1, "old one"));
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  EXPECT_EQ(replayed.records.size(), 2u);
  EXPECT_EQ(replayed.stats.dropped_tail_bytes, kRecordHeaderSize + 7);
}

TEST_F(WalTest, TornFileHeaderIsIgnoredAndTheFileReplaced) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    (void)AppendAll(*writer, Payloads(5));
  }
  // A crash right after the next run created its file.
  { ASSERT_OK(WalWriter::Open(Options(WalDir()), 6)); }
  const fs::path leftover = WalDir() / WalFileName(6);
  ASSERT_TRUE(fs::exists(leftover));
  for (uint64_t size = 0; size <= kFileHeaderSize; ++size) {
    SCOPED_TRACE("header cut at " + std::to_string(size));
    fs::resize_file(leftover, size);
    ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
    EXPECT_EQ(replayed.records.size(), 5u);
    EXPECT_EQ(replayed.stats.last_sequence, 5u);
    EXPECT_EQ(replayed.stats.dropped_tail_bytes, size == kFileHeaderSize ? 0u : size);
    EXPECT_EQ(replayed.stats.notes.size(), size == 0 || size == kFileHeaderSize ? 0u : 1u);
    // Opening at the same sequence replaces the empty leftover.
    {
      ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 6));
    }
    EXPECT_EQ(fs::file_size(leftover), kFileHeaderSize);
  }
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 6));
  ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("six"));
  EXPECT_EQ(sequence, 6u);
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  EXPECT_EQ(replayed.records.size(), 6u);
}

// --- Corruption across files ------------------------------------------------------------------------------

TEST_F(WalTest, MissingMiddleFileIsCorruption) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 2048), 1));
    (void)AppendAll(*writer, Payloads(100));
  }
  std::vector<fs::path> files = WalFiles(WalDir());
  ASSERT_GE(files.size(), 3u);
  fs::remove(files[1]);
  auto replayed = Replay(WalDir());
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption);
  EXPECT_NE(replayed.status().message().find(files[0].string()), std::string::npos) << replayed.status().ToString();
  EXPECT_NE(replayed.status().message().find(files[2].string()), std::string::npos) << replayed.status().ToString();
  EXPECT_NE(replayed.status().message().find("offset " + std::to_string(fs::file_size(files[0]))),
            std::string::npos)
      << replayed.status().ToString();
}

TEST_F(WalTest, SequenceGapInsideFileIsCorruption) {
  fs::create_directories(WalDir());
  const std::string head = DocFileHeader(1) + DocRecord(1, "one");
  WriteFile(WalDir() / WalFileName(1), head + DocRecord(3, "three") + DocRecord(4, "four"));
  auto replayed = Replay(WalDir());
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption);
  EXPECT_NE(replayed.status().message().find("offset " + std::to_string(head.size())), std::string::npos)
      << replayed.status().ToString();
}

TEST_F(WalTest, OverlappingFilesAreCorruption) {
  fs::create_directories(WalDir());
  WriteFile(WalDir() / WalFileName(1), DocFileHeader(1) + DocRecord(1, "one") + DocRecord(2, "two"));
  WriteFile(WalDir() / WalFileName(2), DocFileHeader(2) + DocRecord(2, "two again"));
  auto replayed = Replay(WalDir());
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption) << replayed.status().ToString();
}

TEST_F(WalTest, FileHeaderContradictingTheNameIsCorruption) {
  fs::create_directories(WalDir());
  WriteFile(WalDir() / WalFileName(1), DocFileHeader(5) + DocRecord(1, "one"));
  auto replayed = Replay(WalDir());
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption) << replayed.status().ToString();
}

TEST_F(WalTest, FormatOneFilesLeftByAnOlderBuildStillReplay) {
  fs::create_directories(WalDir());
  // A damaged format 1 record at the tail is detected with the format 1 checksum.
  std::string damaged = DocRecord(3, "three");
  damaged.back() ^= 0x01;
  WriteFile(WalDir() / WalFileName(1), DocFileHeader(1) + DocRecord(1, "one") + DocRecord(2, "two") + damaged);
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), 2u);
  EXPECT_EQ(replayed.records[1].second, "two");
  // A new writer continues in a format 2 file after them (the damaged tail gone, as a restart leaves it).
  WriteFile(WalDir() / WalFileName(1), DocFileHeader(1) + DocRecord(1, "one") + DocRecord(2, "two"));
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 3));
    ASSERT_OK(writer->Append("three again"));
  }
  ASSERT_OK_AND_ASSIGN(Replayed again, Replay(WalDir()));
  ASSERT_EQ(again.records.size(), 3u);
  EXPECT_EQ(again.records[2].second, "three again");
}

TEST_F(WalTest, UnknownFormatVersionIsFailedPrecondition) {
  fs::create_directories(WalDir());
  std::string header = DocFileHeader(1);
  header[4] = 3;  // versions 1 and 2 are read
  WriteFile(WalDir() / WalFileName(1), header + DocRecord(1, "one"));
  auto replayed = Replay(WalDir());
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kFailedPrecondition) << replayed.status().ToString();
}

TEST_F(WalTest, WalStartingAfterTheNeededSequenceIsCorruption) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 101));
    ASSERT_OK(writer->Append("101"));
  }
  auto replayed = Replay(WalDir(), 0);  // records 1..100 should be here but are not
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.status().code(), StatusCode::kCorruption);
  ASSERT_OK_AND_ASSIGN(Replayed after_flush, Replay(WalDir(), 100));
  EXPECT_EQ(after_flush.records.size(), 1u);
}

// --- Replay options ---------------------------------------------------------------------------------------

TEST_F(WalTest, ReplaySkipsRecordsAtOrBelowAfterSequence) {
  const std::vector<std::string> payloads = Payloads(10);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    (void)AppendAll(*writer, payloads);
  }
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir(), 4));
  ASSERT_EQ(replayed.records.size(), 6u);
  EXPECT_EQ(replayed.records.front(), std::make_pair(uint64_t{5}, payloads[4]));
  EXPECT_EQ(replayed.stats.skipped_records, 4u);
  EXPECT_EQ(replayed.stats.last_sequence, 10u);

  ASSERT_OK_AND_ASSIGN(Replayed nothing_left, Replay(WalDir(), 20));
  EXPECT_TRUE(nothing_left.records.empty());
  EXPECT_EQ(nothing_left.stats.last_sequence, 20u);
}

TEST_F(WalTest, CallbackErrorStopsReplay) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    (void)AppendAll(*writer, Payloads(10));
  }
  int calls = 0;
  auto stats = ReplayWal(WalDir().string(), 0, [&](uint64_t sequence, std::string_view) {
    ++calls;
    return sequence == 3 ? Status::Internal("cannot decode") : Status::Ok();
  });
  ASSERT_FALSE(stats.ok());
  EXPECT_EQ(stats.status().code(), StatusCode::kInternal);
  EXPECT_EQ(calls, 3);
}

// --- Truncate and reopen ----------------------------------------------------------------------------------

TEST_F(WalTest, TruncateDeletesOnlyFullyFlushedInactiveFiles) {
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 2048), 1));
  (void)AppendAll(*writer, Payloads(100));
  std::vector<uint64_t> firsts;
  for (const fs::path& file : WalFiles(WalDir())) firsts.push_back(*ParseWalFileName(file.filename().string()));
  ASSERT_GE(firsts.size(), 4u);
  auto remaining = [&] { return WalFiles(WalDir()).size(); };

  ASSERT_OK(writer->Truncate(firsts[1] - 2));  // the first file still holds firsts[1] - 1
  EXPECT_EQ(remaining(), firsts.size());
  ASSERT_OK(writer->Truncate(firsts[1] - 1));
  EXPECT_EQ(remaining(), firsts.size() - 1);
  EXPECT_FALSE(fs::exists(WalDir() / WalFileName(firsts[0])));
  ASSERT_OK(writer->Truncate(firsts[2] - 2));  // nothing more
  EXPECT_EQ(remaining(), firsts.size() - 1);

  ASSERT_OK(writer->Truncate(UINT64_MAX));  // everything flushed: all but the active file
  ASSERT_EQ(remaining(), 1u);
  EXPECT_TRUE(fs::exists(WalDir() / WalFileName(firsts.back())));

  // Still appending to the active file; replay from the flushed point sees the rest.
  ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("after truncate"));
  EXPECT_EQ(sequence, 101u);
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir(), 100));
  ASSERT_EQ(replayed.records.size(), 1u);
  EXPECT_EQ(replayed.records[0].second, "after truncate");
}

TEST_F(WalTest, TruncateKeepsTheActiveFileOfANewWriter) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    (void)AppendAll(*writer, Payloads(10));
  }
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 11));
  ASSERT_OK(writer->Truncate(9));  // the old file still holds 10
  EXPECT_EQ(WalFiles(WalDir()).size(), 2u);
  ASSERT_OK(writer->Truncate(10));  // the old file is fully flushed; the new one is active
  std::vector<fs::path> files = WalFiles(WalDir());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename(), WalFileName(11));
  ASSERT_OK(writer->Truncate(UINT64_MAX));
  EXPECT_EQ(WalFiles(WalDir()).size(), 1u);
}

TEST_F(WalTest, RollLetsTruncateDeleteEveryFlushedRecord) {
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
  (void)AppendAll(*writer, Payloads(10));
  ASSERT_OK(writer->Truncate(10));
  ASSERT_EQ(WalFiles(WalDir()).size(), 1u);  // the active file keeps the flushed records
  ASSERT_OK(writer->Roll());
  ASSERT_OK(writer->Roll());  // the new file holds no record yet: no second roll
  ASSERT_EQ(WalFiles(WalDir()).size(), 2u);
  ASSERT_OK(writer->Truncate(10));
  std::vector<fs::path> files = WalFiles(WalDir());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].filename(), WalFileName(11));
  // Appends go on in the new file; replay and reopen see them.
  ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("after roll"));
  EXPECT_EQ(sequence, 11u);
  writer.reset();
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir(), 10));
  ASSERT_EQ(replayed.records.size(), 1u);
  EXPECT_EQ(replayed.records[0], std::make_pair(uint64_t{11}, std::string("after roll")));
}

TEST_F(WalTest, RollBetweenConcurrentAppendsKeepsEveryRecord) {
  ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < 4; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int record_idx = 0; record_idx < 50; ++record_idx) {
        EXPECT_OK(writer->Append(MakePayload(static_cast<uint64_t>(thread_idx * 1000 + record_idx), 64)));
        if (record_idx % 10 == 0) EXPECT_OK(writer->Roll());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  writer.reset();
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), 200u);
  for (size_t record_idx = 0; record_idx < replayed.records.size(); ++record_idx) {
    EXPECT_EQ(replayed.records[record_idx].first, record_idx + 1);
  }
}

TEST_F(WalTest, ReopenAfterReplayContinuesSequences) {
  const std::vector<std::string> payloads = Payloads(10);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 20, true), 1));
    (void)AppendAll(*writer, payloads);
  }
  ASSERT_OK_AND_ASSIGN(Replayed first, Replay(WalDir()));
  EXPECT_EQ(first.stats.last_sequence, 10u);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 20, true), first.stats.last_sequence + 1));
    EXPECT_EQ(writer->last_sequence(), 10u);
    ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("eleven"));
    EXPECT_EQ(sequence, 11u);
  }
  EXPECT_EQ(WalFiles(WalDir()).size(), 2u);  // a new file, never an append to the old one
  ASSERT_OK_AND_ASSIGN(Replayed second, Replay(WalDir()));
  ASSERT_EQ(second.records.size(), 11u);
  EXPECT_EQ(second.records.back(), std::make_pair(uint64_t{11}, std::string("eleven")));
}

TEST_F(WalTest, OpenRefusesSequencesTheWalAlreadyHolds) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), 1));
    (void)AppendAll(*writer, Payloads(10));
  }
  for (uint64_t next : {1, 5, 10}) {
    auto writer = WalWriter::Open(Options(WalDir()), next);
    ASSERT_FALSE(writer.ok()) << next;
    EXPECT_EQ(writer.status().code(), StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(WalFiles(WalDir()).size(), 1u);
  ASSERT_OK(WalWriter::Open(Options(WalDir()), 11));
}

TEST_F(WalTest, InvalidOptionsAreRejected) {
  EXPECT_EQ(WalWriter::Open(Options(""), 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WalWriter::Open(Options(WalDir(), 0), 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WalWriter::Open(Options(WalDir()), 0).status().code(), StatusCode::kInvalidArgument);
}

// --- IO failures ------------------------------------------------------------------------------------------

TEST_F(WalTest, FailedWriteIsIOErrorAndLosesNoAcknowledgedRecord) {
  FaultInjectingFileSystem file_system;
  const std::vector<std::string> payloads = Payloads(10);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 20, true, &file_system), 1));
    (void)AppendAll(*writer, payloads);
    file_system.FailAppendForTest(1, 20);  // the disk fills up 20 bytes into the next record
    auto failed = writer->Append("does not fit");
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.status().code(), StatusCode::kIOError);
    auto refused = writer->Append("after the failure");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kIOError);
    EXPECT_EQ(writer->last_sequence(), 10u);
  }
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), payloads.size());
  for (size_t record_idx = 0; record_idx < payloads.size(); ++record_idx) {
    EXPECT_EQ(replayed.records[record_idx].second, payloads[record_idx]);
  }
  EXPECT_EQ(replayed.stats.dropped_tail_bytes, 20u);

  // A new writer (the store reopened) goes on from the last acknowledged record.
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir()), replayed.stats.last_sequence + 1));
    ASSERT_OK_AND_ASSIGN(uint64_t sequence, writer->Append("eleven"));
    EXPECT_EQ(sequence, 11u);
  }
  ASSERT_OK_AND_ASSIGN(Replayed after, Replay(WalDir()));
  EXPECT_EQ(after.records.size(), 11u);
}

TEST_F(WalTest, FailedSyncIsIOErrorAndRefusesFurtherAppends) {
  FaultInjectingFileSystem file_system;
  const std::vector<std::string> payloads = Payloads(10);
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 64 << 20, true, &file_system), 1));
    (void)AppendAll(*writer, payloads);
    file_system.FailNextSyncForTest();
    auto failed = writer->Append("not durable");
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.status().code(), StatusCode::kIOError);
    EXPECT_FALSE(writer->Append("after the failure").ok());
    EXPECT_EQ(writer->last_sequence(), 10u);
  }
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  // The unacknowledged record reached the page cache and may replay (at-least-once for failed appends);
  // every acknowledged one must.
  ASSERT_GE(replayed.records.size(), payloads.size());
  ASSERT_LE(replayed.records.size(), payloads.size() + 1);
  for (size_t record_idx = 0; record_idx < payloads.size(); ++record_idx) {
    EXPECT_EQ(replayed.records[record_idx].second, payloads[record_idx]);
  }
}

TEST_F(WalTest, ConcurrentAppendsAroundAFailureLoseNoAcknowledgedRecord) {
  FaultInjectingFileSystem file_system;
  constexpr int kThreads = 8;
  std::mutex mu;
  std::map<uint64_t, std::string> acknowledged;  // GUARDED_BY(mu)
  std::atomic<int> failures{0};
  {
    ASSERT_OK_AND_ASSIGN(auto writer, WalWriter::Open(Options(WalDir(), 16 << 10, true, &file_system), 1));
    file_system.FailAppendForTest(60, 100);  // a torn write in the middle of the run
    std::vector<std::thread> threads;
    for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
      threads.emplace_back([&, thread_idx] {
        for (uint64_t append_idx = 0;; ++append_idx) {
          std::string payload = MakePayload(static_cast<uint64_t>(thread_idx) * 1'000'000 + append_idx, 300);
          auto sequence = writer->Append(payload);
          if (!sequence.ok()) {
            EXPECT_EQ(sequence.status().code(), StatusCode::kIOError);
            // Once failed, always failed.
            EXPECT_EQ(writer->Append("again").status().code(), StatusCode::kIOError);
            ++failures;
            return;
          }
          std::lock_guard lock(mu);
          acknowledged.emplace(*sequence, std::move(payload));
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(writer->last_sequence(), acknowledged.size());
  }
  EXPECT_EQ(failures.load(), kThreads);
  ASSERT_FALSE(acknowledged.empty());
  ASSERT_OK_AND_ASSIGN(Replayed replayed, Replay(WalDir()));
  ASSERT_EQ(replayed.records.size(), acknowledged.size());  // the torn batch is dropped; nothing acknowledged lost
  for (const auto& [sequence, payload] : replayed.records) {
    auto it = acknowledged.find(sequence);
    ASSERT_NE(it, acknowledged.end()) << sequence;
    EXPECT_EQ(payload, it->second);
  }
}

}  // namespace
}  // namespace analytics::store::wal
