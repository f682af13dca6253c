#include "support/test_env.h"

#include <cstdio>
#include <cstdlib>

#include "common/ids.h"

namespace analytics::testing {

TempDir::TempDir() {
  path_ = std::filesystem::temp_directory_path() / ("analytics-test-" + common::NewUuid());
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  if (std::getenv("ANALYTICS_KEEP_TEST_DIRS") != nullptr) {
    std::fprintf(stderr, "kept test dir %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string RequiredEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    ADD_FAILURE() << "environment variable " << name
                  << " is not set: run the tests through `make test` (scripts/run-tests), which starts the "
                     "servers they need";
    return {};
  }
  return value;
}

}  // namespace analytics::testing
