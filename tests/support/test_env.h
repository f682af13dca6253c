// Helpers shared by the test suites: assertions on Status/Result, temporary directories, required env vars.
#pragma once

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/status.h"

#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const auto& assert_ok_status_ = (expr);                    \
    ASSERT_TRUE(assert_ok_status_.ok()) << assert_ok_status_.status().ToString(); \
  } while (false)

#define EXPECT_OK(expr)                                        \
  do {                                                         \
    const auto& expect_ok_status_ = (expr);                    \
    EXPECT_TRUE(expect_ok_status_.ok()) << expect_ok_status_.status().ToString(); \
  } while (false)

#define ANALYTICS_TEST_CONCAT_INNER(a, b) a##b
#define ANALYTICS_TEST_CONCAT(a, b) ANALYTICS_TEST_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(ANALYTICS_TEST_CONCAT(assert_result_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)          \
  auto tmp = (expr);                                       \
  ASSERT_TRUE(tmp.ok()) << tmp.status().ToString();        \
  lhs = std::move(tmp).value()

namespace analytics::testing {

// Lets ASSERT_OK accept both Status and Result<T>.
inline const common::Status& StatusOf(const common::Status& status) { return status; }

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The value of an environment variable the test run must provide (set by scripts/run-tests). A missing
// variable fails the calling test: servers are never skipped silently.
std::string RequiredEnv(const char* name);

}  // namespace analytics::testing
