// Running analysis requests (src/analysis) in tests over a store.
// Thread-safety: reentrant.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "store/event_store.h"

namespace analytics::testing {

// Runs an analysis request (`run` is analysis::RunFunnels, RunPaths, ...) with `options`, then again on one query
// thread: the thread count must not change the answer. A failure is a test failure and answers null.
template <typename Run>
nlohmann::json RunOnAnyThreadCount(Run run, store::EventStore& store, const nlohmann::json& body,
                                   const analysis::Viewer& viewer, analysis::AnalysisOptions options) {
  auto result = run(store, body, viewer, options);
  EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << body.dump();
  if (!result.ok()) return nlohmann::json();
  options.query_threads = 1;
  auto single = run(store, body, viewer, options);
  EXPECT_TRUE(single.ok());
  if (single.ok()) {
    EXPECT_EQ(*single, *result);
  }
  return *result;
}

}  // namespace analytics::testing
