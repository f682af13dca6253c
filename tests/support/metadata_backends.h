// The two MetadataStore adapters as typed-test parameters, for suites that run over both (the segment and report
// services): each test gets a fresh SQLite file or a fresh PostgreSQL schema (dropped afterwards), and Open()
// reopens the same one (a restart). The adapters' own contract suite has richer backends of its own.
// Usage: TYPED_TEST_SUITE(MySuite, MetadataBackends, MetadataBackendNames); TypeParam backend; backend.Open().
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/status.h"
#include "metadata/metadata_store.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "support/test_env.h"

namespace analytics::testing {

// "t_" + 32 hex digits: a PostgreSQL schema name no other test uses.
inline std::string FreshSchemaName() {
  std::string name = "t_";
  for (char c : common::NewUuid()) {
    if (c != '-') name += c;
  }
  return name;
}

class SqliteBackend {
 public:
  static constexpr const char* kTestName = "Sqlite";
  // The same database file every time.
  common::Result<std::unique_ptr<metadata::MetadataStore>> Open() {
    return metadata::OpenSqliteMetadataStore({.path = (dir_.path() / "metadata.db").string()});
  }

 private:
  TempDir dir_;
};

class PostgresBackend {
 public:
  static constexpr const char* kTestName = "Postgres";
  PostgresBackend() : dsn_(RequiredEnv("ANALYTICS_TEST_POSTGRES_DSN")), schema_(FreshSchemaName()) {}
  ~PostgresBackend() {
    if (dsn_.empty() || !opened_) return;
    common::Status dropped = metadata::DropPostgresSchemaForTest(dsn_, schema_);
    EXPECT_TRUE(dropped.ok()) << dropped.ToString();
  }
  PostgresBackend(const PostgresBackend&) = delete;
  PostgresBackend& operator=(const PostgresBackend&) = delete;
  // The same schema every time.
  common::Result<std::unique_ptr<metadata::MetadataStore>> Open() {
    if (dsn_.empty()) return common::Status::FailedPrecondition("ANALYTICS_TEST_POSTGRES_DSN is not set");
    opened_ = true;
    return metadata::OpenPostgresMetadataStore({.dsn = dsn_, .schema = schema_});
  }

 private:
  const std::string dsn_;
  const std::string schema_;
  bool opened_ = false;
};

class MetadataBackendNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return T::kTestName;
  }
};
using MetadataBackends = ::testing::Types<SqliteBackend, PostgresBackend>;

}  // namespace analytics::testing
