// ObjectStore: the contract every adapter keeps (a typed suite: the S3 adapter joins it with its own factory),
// then what is particular to LocalObjectStore (staging folder, crash leftovers, symbolic links, folders).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "blob/local/local_object_store.h"
#include "blob/object_store.h"
#include "common/time_util.h"
#include "support/test_env.h"

namespace analytics::blob {
namespace {

namespace fs = std::filesystem;
using common::StatusCode;
using testing::TempDir;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string out(size, '\0');
  for (size_t byte_idx = 0; byte_idx < size; ++byte_idx) out[byte_idx] = static_cast<char>(random() & 0xff);
  return out;
}

// Writes `bytes` in pieces of growing, uneven sizes (1 byte up to a few hundred KiB).
common::Status WriteInPieces(ObjectWriter& writer, const std::string& bytes) {
  size_t offset = 0;
  size_t piece = 1;
  while (offset < bytes.size()) {
    const size_t take = std::min(piece, bytes.size() - offset);
    ANALYTICS_RETURN_IF_ERROR(writer.Write(std::string_view(bytes).substr(offset, take)));
    offset += take;
    piece = piece * 3 + 7;
    if (piece > 300 * 1024) piece = 1;
  }
  return common::Status::Ok();
}

common::Status Put(ObjectStore& store, const std::string& key, const std::string& bytes) {
  ANALYTICS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> writer, store.Create(key));
  ANALYTICS_RETURN_IF_ERROR(WriteInPieces(*writer, bytes));
  return writer->Commit();
}

common::Result<std::string> ReadRest(ObjectReader& reader, size_t chunk = 64 * 1024) {
  std::string out;
  std::string buffer(chunk, '\0');
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(size_t got, reader.Read(buffer.data(), buffer.size()));
    if (got == 0) return out;
    out.append(buffer.data(), got);
  }
}

common::Result<std::string> Get(ObjectStore& store, const std::string& key) {
  ANALYTICS_ASSIGN_OR_RETURN(std::unique_ptr<ObjectReader> reader, store.Open(key));
  return ReadRest(*reader);
}

std::vector<std::string> Keys(const std::vector<ObjectInfo>& objects) {
  std::vector<std::string> keys;
  for (const ObjectInfo& object : objects) keys.push_back(object.key);
  return keys;
}

// ------------------------------------------------------------------------------------------------ contract

struct LocalFactory {
  TempDir dir;
  common::Result<std::unique_ptr<ObjectStore>> Make() {
    ANALYTICS_ASSIGN_OR_RETURN(auto store, LocalObjectStore::OpenRoot({.root = (dir.path() / "objects").string()}));
    return std::unique_ptr<ObjectStore>(std::move(store));
  }
};

template <typename Factory>
class ObjectStoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = factory_.Make();
    ASSERT_OK(store);
    store_ = std::move(store).value();
  }

  Factory factory_;
  std::unique_ptr<ObjectStore> store_;
};

using Factories = ::testing::Types<LocalFactory>;
TYPED_TEST_SUITE(ObjectStoreContractTest, Factories);

TYPED_TEST(ObjectStoreContractTest, LargeObjectWrittenInPiecesReadsBackExactly) {
  const std::string bytes = RandomBytes(7 * 1024 * 1024 + 123, 1);
  ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("reports/2026/11/27/big.bin"));
  ASSERT_OK(WriteInPieces(*writer, bytes));
  EXPECT_EQ(writer->size(), bytes.size());
  ASSERT_OK(writer->Commit());

  ASSERT_OK_AND_ASSIGN(auto reader, this->store_->Open("reports/2026/11/27/big.bin"));
  EXPECT_EQ(reader->size(), bytes.size());
  // Odd-sized reads, so chunk boundaries never line up with the writes.
  ASSERT_OK_AND_ASSIGN(std::string back, ReadRest(*reader, 50'001));
  EXPECT_TRUE(back == bytes) << "read " << back.size() << " bytes of " << bytes.size();
  ASSERT_OK_AND_ASSIGN(size_t after_end, reader->Read(back.data(), 10));
  EXPECT_EQ(after_end, 0u);
}

TYPED_TEST(ObjectStoreContractTest, EmptyObjectIsAnObject) {
  ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("empty"));
  ASSERT_OK(writer->Commit());
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, this->store_->Stat("empty"));
  EXPECT_EQ(info.size, 0u);
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, "empty"));
  EXPECT_EQ(back, "");
}

TYPED_TEST(ObjectStoreContractTest, NothingIsVisibleBeforeCommit) {
  ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("a/pending"));
  ASSERT_OK(writer->Write(RandomBytes(200'000, 2)));
  EXPECT_EQ(this->store_->Stat("a/pending").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Open("a/pending").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_TRUE(listed.empty());
  ASSERT_OK(writer->Commit());
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, this->store_->Stat("a/pending"));
  EXPECT_EQ(info.size, 200'000u);
}

TYPED_TEST(ObjectStoreContractTest, DroppedWriterLeavesNothing) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("a/b/dropped"));
    ASSERT_OK(writer->Write(RandomBytes(300'000, 3)));
  }
  EXPECT_EQ(this->store_->Stat("a/b/dropped").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_TRUE(listed.empty());
}

TYPED_TEST(ObjectStoreContractTest, CommitReplacesTheObject) {
  ASSERT_OK(Put(*this->store_, "k", RandomBytes(1'000'000, 4)));
  const std::string second = RandomBytes(1234, 5);
  ASSERT_OK(Put(*this->store_, "k", second));
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, "k"));
  EXPECT_TRUE(back == second);
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, this->store_->Stat("k"));
  EXPECT_EQ(info.size, second.size());
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_THAT(Keys(listed), ::testing::ElementsAre("k"));
}

TYPED_TEST(ObjectStoreContractTest, DeleteRemovesTheObject) {
  ASSERT_OK(Put(*this->store_, "x/y/z.csv", "a,b\n1,2\n"));
  ASSERT_OK(this->store_->Delete("x/y/z.csv"));
  EXPECT_EQ(this->store_->Stat("x/y/z.csv").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Open("x/y/z.csv").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Delete("x/y/z.csv").code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Delete("never/was").code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_TRUE(listed.empty());
  // The key can be used again.
  ASSERT_OK(Put(*this->store_, "x/y/z.csv", "again"));
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, "x/y/z.csv"));
  EXPECT_EQ(back, "again");
}

TYPED_TEST(ObjectStoreContractTest, StatGivesSizeAndCommitTime) {
  ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("timed"));
  ASSERT_OK(writer->Write(std::string(4321, 'x')));
  // The time is the commit's, not the first write's.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const int64_t before = common::NowMillis();
  ASSERT_OK(writer->Commit());
  const int64_t after = common::NowMillis();
  ASSERT_OK_AND_ASSIGN(ObjectInfo info, this->store_->Stat("timed"));
  EXPECT_EQ(info.key, "timed");
  EXPECT_EQ(info.size, 4321u);
  // Filesystem timestamps may be a clock tick coarser than the system clock.
  EXPECT_GE(info.modified_at_ms, before - 20);
  EXPECT_LE(info.modified_at_ms, after + 20);
  EXPECT_EQ(this->store_->Stat("missing").status().code(), StatusCode::kNotFound);
  // A folder of objects is not an object.
  ASSERT_OK(Put(*this->store_, "folder/inside", "1"));
  EXPECT_EQ(this->store_->Stat("folder").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Open("folder").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store_->Delete("folder").code(), StatusCode::kNotFound);
}

TYPED_TEST(ObjectStoreContractTest, ListFiltersByPrefixInKeyOrder) {
  for (const char* key : {"b", "a/b/d", "ab", "a/bc", "a/b/c", "a/b/e/f", "a-b"}) {
    ASSERT_OK(Put(*this->store_, key, key));
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store_->List(""));
  EXPECT_THAT(Keys(all), ::testing::ElementsAre("a-b", "a/b/c", "a/b/d", "a/b/e/f", "a/bc", "ab", "b"));
  ASSERT_OK_AND_ASSIGN(auto a_b, this->store_->List("a/b"));
  EXPECT_THAT(Keys(a_b), ::testing::ElementsAre("a/b/c", "a/b/d", "a/b/e/f", "a/bc"));
  ASSERT_OK_AND_ASSIGN(auto a_b_folder, this->store_->List("a/b/"));
  EXPECT_THAT(Keys(a_b_folder), ::testing::ElementsAre("a/b/c", "a/b/d", "a/b/e/f"));
  ASSERT_OK_AND_ASSIGN(auto a, this->store_->List("a"));
  EXPECT_THAT(Keys(a), ::testing::ElementsAre("a-b", "a/b/c", "a/b/d", "a/b/e/f", "a/bc", "ab"));
  ASSERT_OK_AND_ASSIGN(auto exact, this->store_->List("a/b/e/f"));
  EXPECT_THAT(Keys(exact), ::testing::ElementsAre("a/b/e/f"));
  for (const char* none : {"c", "a/b/c/", "zz/", "../", "/a", "a//b", "a/./b/", "\x01"}) {
    ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(none));
    EXPECT_TRUE(listed.empty()) << none;
  }
  ASSERT_OK_AND_ASSIGN(auto sized, this->store_->List("a/b/e/"));
  ASSERT_EQ(sized.size(), 1u);
  EXPECT_EQ(sized[0].size, 7u);
  EXPECT_GT(sized[0].modified_at_ms, 0);
}

TYPED_TEST(ObjectStoreContractTest, BadKeysAreRejected) {
  const std::vector<std::string> bad = {"",     "../x", "/abs",     "a//b", "a/",       "a/./b", "a/..", ".",
                                        "..",   "a b",  "caf\xc3\xa9", "a\\b", "a\nb",  std::string("a\0b", 3),
                                        "x?y",  std::string(1025, 'k')};
  for (const std::string& key : bad) {
    SCOPED_TRACE("key: " + key);
    for (const common::Status& status :
         {this->store_->Create(key).status(), this->store_->Open(key).status(), this->store_->Stat(key).status(),
          this->store_->Delete(key)}) {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
      EXPECT_EQ(status.field(), "key");
    }
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_TRUE(listed.empty());
}

TYPED_TEST(ObjectStoreContractTest, UnusualValidKeysWork) {
  std::string long_key;
  while (long_key.size() < 1024) long_key += std::string(200, 'n') + "/";
  long_key.resize(1024);
  for (const std::string& key : {std::string("A-Z_a.z0-9"), std::string(".hidden/..x/...")/* dots, not . or .. */,
                                 std::string("x/.staging/y"), long_key}) {
    SCOPED_TRACE(key);
    ASSERT_OK(Put(*this->store_, key, key));
    ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, key));
    EXPECT_EQ(back, key);
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store_->List(""));
  EXPECT_EQ(listed.size(), 4u);
}

TYPED_TEST(ObjectStoreContractTest, ReaderSurvivesDeleteAndReplace) {
  const std::string first = RandomBytes(3 * 1024 * 1024, 6);
  ASSERT_OK(Put(*this->store_, "r/obj", first));
  ASSERT_OK_AND_ASSIGN(auto deleted_reader, this->store_->Open("r/obj"));
  std::string head(1024 * 1024, '\0');
  ASSERT_OK_AND_ASSIGN(size_t got, deleted_reader->Read(head.data(), head.size()));
  head.resize(got);
  ASSERT_OK(this->store_->Delete("r/obj"));
  ASSERT_OK_AND_ASSIGN(std::string rest, ReadRest(*deleted_reader));
  EXPECT_TRUE(head + rest == first);

  ASSERT_OK(Put(*this->store_, "r/obj", first));
  ASSERT_OK_AND_ASSIGN(auto replaced_reader, this->store_->Open("r/obj"));
  ASSERT_OK(Put(*this->store_, "r/obj", "new"));
  ASSERT_OK_AND_ASSIGN(std::string old_bytes, ReadRest(*replaced_reader));
  EXPECT_EQ(replaced_reader->size(), first.size());
  EXPECT_TRUE(old_bytes == first);
  ASSERT_OK_AND_ASSIGN(std::string now, Get(*this->store_, "r/obj"));
  EXPECT_EQ(now, "new");
}

TYPED_TEST(ObjectStoreContractTest, ConcurrentWritersOfDifferentKeys) {
  constexpr int kThreads = 8;
  constexpr int kObjectsPerThread = 12;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int object_idx = 0; object_idx < kObjectsPerThread; ++object_idx) {
        // Shared folders (created concurrently) and a folder per thread.
        const std::string shared = "shared/" + std::to_string(object_idx % 3) + "/t" + std::to_string(thread_idx) +
                                   "-" + std::to_string(object_idx);
        const std::string own = "own/t" + std::to_string(thread_idx) + "/" + std::to_string(object_idx);
        const uint64_t seed = static_cast<uint64_t>(thread_idx * 1000 + object_idx);
        if (!Put(*this->store_, shared, RandomBytes(100'000 + object_idx, seed)).ok()) ++failures;
        if (!Put(*this->store_, own, RandomBytes(50'000, seed + 1)).ok()) ++failures;
        // A short-lived object in a folder other threads commit into: its deletion may empty the folder while
        // another thread commits there.
        const std::string churn = "churn/x/t" + std::to_string(thread_idx);
        if (!Put(*this->store_, churn, "c").ok()) ++failures;
        if (!this->store_->Delete(churn).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(auto shared, this->store_->List("shared/"));
  EXPECT_EQ(shared.size(), static_cast<size_t>(kThreads * kObjectsPerThread));
  ASSERT_OK_AND_ASSIGN(auto own, this->store_->List("own/"));
  EXPECT_EQ(own.size(), static_cast<size_t>(kThreads * kObjectsPerThread));
  ASSERT_OK_AND_ASSIGN(auto churn, this->store_->List("churn/"));
  EXPECT_TRUE(churn.empty());
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    for (int object_idx = 0; object_idx < kObjectsPerThread; ++object_idx) {
      const std::string key = "own/t" + std::to_string(thread_idx) + "/" + std::to_string(object_idx);
      ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, key));
      EXPECT_TRUE(back == RandomBytes(50'000, static_cast<uint64_t>(thread_idx * 1000 + object_idx) + 1)) << key;
    }
  }
}

TYPED_TEST(ObjectStoreContractTest, WriterIsUnusableAfterCommit) {
  ASSERT_OK_AND_ASSIGN(auto writer, this->store_->Create("once"));
  ASSERT_OK(writer->Write("1"));
  ASSERT_OK(writer->Commit());
  EXPECT_FALSE(writer->Write("2").ok());
  EXPECT_FALSE(writer->Commit().ok());
  writer.reset();
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*this->store_, "once"));
  EXPECT_EQ(back, "1");
}

// ------------------------------------------------------------------------------------------------ local only

class LocalObjectStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "data" / "objects";
    Reopen();
  }
  void Reopen() {
    store_.reset();
    auto store = LocalObjectStore::OpenRoot({.root = root_.string()});
    ASSERT_OK(store);
    store_ = std::move(store).value();
  }
  std::vector<std::string> StagingFiles() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(root_ / kLocalStagingFolder)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }
  static void WriteFile(const fs::path& path, const std::string& bytes) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
  }

  TempDir dir_;
  fs::path root_;
  std::unique_ptr<LocalObjectStore> store_;
};

TEST_F(LocalObjectStoreTest, OpenRootCreatesMissingFolders) {
  EXPECT_TRUE(fs::is_directory(root_));
  EXPECT_TRUE(fs::is_directory(root_ / kLocalStagingFolder));
  EXPECT_EQ(store_->BackendName(), "local");
  EXPECT_EQ(LocalObjectStore::OpenRoot({.root = ""}).status().code(), StatusCode::kInvalidArgument);
  // A file where the root should be.
  WriteFile(dir_.path() / "plain", "x");
  EXPECT_FALSE(LocalObjectStore::OpenRoot({.root = (dir_.path() / "plain").string()}).ok());
}

TEST_F(LocalObjectStoreTest, ObjectsAreFilesUnderTheRoot) {
  ASSERT_OK(Put(*store_, "reports/2026/x.csv", "a,b\n"));
  std::ifstream in(root_ / "reports" / "2026" / "x.csv");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "a,b\n");
  EXPECT_TRUE(StagingFiles().empty());
}

TEST_F(LocalObjectStoreTest, WritersStageInTheStagingFolderAndCleanUp) {
  ASSERT_OK_AND_ASSIGN(auto kept, store_->Create("kept"));
  ASSERT_OK_AND_ASSIGN(auto dropped, store_->Create("dropped"));
  ASSERT_OK(kept->Write(RandomBytes(100'000, 7)));
  ASSERT_OK(dropped->Write(RandomBytes(100'000, 8)));
  EXPECT_EQ(StagingFiles().size(), 2u);
  dropped.reset();
  EXPECT_EQ(StagingFiles().size(), 1u);
  ASSERT_OK(kept->Commit());
  EXPECT_TRUE(StagingFiles().empty());
}

TEST_F(LocalObjectStoreTest, CrashLeftoversAreRemovedOnOpen) {
  // What a crashed writer leaves behind: staging files nobody holds, of any age.
  WriteFile(root_ / kLocalStagingFolder / "0f0e0d0c-dead.tmp", RandomBytes(10'000, 9));
  WriteFile(root_ / kLocalStagingFolder / "fresh.tmp", "x");
  WriteFile(dir_.path() / "target", "t");
  fs::create_symlink(dir_.path() / "target", root_ / kLocalStagingFolder / "link.tmp");
  // A live writer of another store on the same root (another process, as far as the files can tell).
  ASSERT_OK_AND_ASSIGN(auto live, store_->Create("live"));
  ASSERT_OK(live->Write("still writing"));
  EXPECT_EQ(StagingFiles().size(), 4u);

  ASSERT_OK_AND_ASSIGN(auto second, LocalObjectStore::OpenRoot({.root = root_.string()}));
  EXPECT_EQ(second->removed_leftovers(), 3);
  EXPECT_EQ(StagingFiles().size(), 1u);
  EXPECT_TRUE(fs::exists(dir_.path() / "target"));  // the link went, not its target
  ASSERT_OK(live->Commit());
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*second, "live"));
  EXPECT_EQ(back, "still writing");
  EXPECT_TRUE(StagingFiles().empty());
}

TEST_F(LocalObjectStoreTest, WriterOutlivesTheStore) {
  ASSERT_OK_AND_ASSIGN(auto writer, store_->Create("late"));
  store_.reset();
  ASSERT_OK(writer->Write("bytes"));
  ASSERT_OK(writer->Commit());
  Reopen();
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*store_, "late"));
  EXPECT_EQ(back, "bytes");
}

TEST_F(LocalObjectStoreTest, SymbolicLinksAreNeverFollowed) {
  const fs::path outside = dir_.path() / "outside";
  WriteFile(outside / "secret", "top secret");
  fs::create_directory_symlink(outside, root_ / "escape");
  fs::create_symlink(outside / "secret", root_ / "leaf");
  // A link that stays inside the root is refused too: the store makes no links, so any link is foreign.
  ASSERT_OK(Put(*store_, "real/file", "inside"));
  fs::create_directory_symlink(root_ / "real", root_ / "alias");

  for (const std::string key : {"escape/secret", "leaf", "alias/file"}) {
    SCOPED_TRACE(key);
    EXPECT_EQ(store_->Open(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Open(key).status().field(), "key");
    EXPECT_EQ(store_->Stat(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete(key).code(), StatusCode::kInvalidArgument);
  }
  ASSERT_OK_AND_ASSIGN(auto writer, store_->Create("escape/planted"));
  ASSERT_OK(writer->Write("x"));
  EXPECT_EQ(writer->Commit().code(), StatusCode::kInvalidArgument);
  writer.reset();
  EXPECT_FALSE(fs::exists(outside / "planted"));
  EXPECT_TRUE(fs::exists(outside / "secret"));
  EXPECT_TRUE(StagingFiles().empty());

  ASSERT_OK_AND_ASSIGN(auto all, store_->List(""));
  EXPECT_THAT(Keys(all), ::testing::ElementsAre("real/file"));
  ASSERT_OK_AND_ASSIGN(auto via_link, store_->List("escape/"));
  EXPECT_TRUE(via_link.empty());

  // Committing over a leaf link replaces the link itself, never the file it points to.
  ASSERT_OK(Put(*store_, "leaf", "mine"));
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*store_, "leaf"));
  EXPECT_EQ(back, "mine");
  std::ifstream in(outside / "secret");
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(secret, "top secret");
}

TEST_F(LocalObjectStoreTest, KeyCannotBeBothObjectAndFolder) {
  ASSERT_OK(Put(*store_, "a/b", "1"));
  common::Status as_folder_of_object = Put(*store_, "a/b/c", "2");
  EXPECT_EQ(as_folder_of_object.code(), StatusCode::kInvalidArgument) << as_folder_of_object.ToString();
  common::Status as_object_over_folder = Put(*store_, "a", "3");
  EXPECT_EQ(as_object_over_folder.code(), StatusCode::kInvalidArgument) << as_object_over_folder.ToString();
  EXPECT_EQ(as_object_over_folder.field(), "key");
  EXPECT_TRUE(StagingFiles().empty());
  ASSERT_OK_AND_ASSIGN(auto all, store_->List(""));
  EXPECT_THAT(Keys(all), ::testing::ElementsAre("a/b"));
}

TEST_F(LocalObjectStoreTest, DeleteRemovesEmptiedFolders) {
  ASSERT_OK(Put(*store_, "r/2026/11/27/a.csv", "1"));
  ASSERT_OK(Put(*store_, "r/2026/11/28/b.csv", "2"));
  ASSERT_OK(store_->Delete("r/2026/11/27/a.csv"));
  EXPECT_FALSE(fs::exists(root_ / "r" / "2026" / "11" / "27"));
  EXPECT_TRUE(fs::exists(root_ / "r" / "2026" / "11" / "28"));
  ASSERT_OK(store_->Delete("r/2026/11/28/b.csv"));
  EXPECT_FALSE(fs::exists(root_ / "r"));
  EXPECT_TRUE(fs::is_directory(root_));
  EXPECT_TRUE(fs::is_directory(root_ / kLocalStagingFolder));
}

TEST_F(LocalObjectStoreTest, ForeignFilesAreNotObjects) {
  ASSERT_OK(Put(*store_, "ok", "1"));
  WriteFile(root_ / "has space", "x");
  WriteFile(root_ / "dir with space" / "f", "x");
  ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0644), 0);
  ASSERT_OK_AND_ASSIGN(auto all, store_->List(""));
  EXPECT_THAT(Keys(all), ::testing::ElementsAre("ok"));
  // A FIFO is not opened for reading (that would block): it is no object.
  EXPECT_EQ(store_->Open("fifo").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Stat("fifo").status().code(), StatusCode::kNotFound);
}

TEST_F(LocalObjectStoreTest, OverlongSegmentIsInvalid) {
  const std::string key = "a/" + std::string(256, 's');
  EXPECT_EQ(store_->Create(key).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Stat(key).status().field(), "key");
  ASSERT_OK(Put(*store_, "a/" + std::string(255, 's'), "ok"));
}

TEST_F(LocalObjectStoreTest, WorksWithoutSync) {
  ASSERT_OK_AND_ASSIGN(auto unsynced, LocalObjectStore::OpenRoot({.root = root_.string(), .sync = false}));
  ASSERT_OK(Put(*unsynced, "n/s", "fast"));
  ASSERT_OK_AND_ASSIGN(std::string back, Get(*store_, "n/s"));
  EXPECT_EQ(back, "fast");
  ASSERT_OK(unsynced->Delete("n/s"));
}

TEST(CheckKeyTest, AcceptsRelativePathsOfTheKeyAlphabet) {
  EXPECT_OK(CheckKey("reports/2026/11/27/0b5e.csv"));
  EXPECT_OK(CheckKey("a"));
  EXPECT_OK(CheckKey("..a/b.."));
  EXPECT_OK(CheckKey(std::string(1024, 'k')));
  EXPECT_EQ(CheckKey(std::string(1025, 'k')).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKey("a/../b").field(), "key");
  EXPECT_FALSE(CheckKey("a/").ok());
  EXPECT_FALSE(CheckKey("~").ok());
}

}  // namespace
}  // namespace analytics::blob
