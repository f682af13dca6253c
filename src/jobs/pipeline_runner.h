// PipelineRunner: runs background jobs (segment refreshes now; reports, model training later) as the spec's
// DataPipelineRun: every run is a row of the MetadataStore (queued → running → completed | failed, with
// timings, parameters, result and error), readable at GET /api/v1/analytics/pipelines/runs.
//
// Rationale: a run is persisted before it is acknowledged (POST answers 202 with its id), so a restart loses
// none: Start() puts the runs a previous process left queued or running back in the queue (a job kind must
// therefore be safe to run again: a refresh is). A bounded pool of workers takes runs in submit order. A run
// submitted while an identical one (kind, target, parameters) is still queued joins it instead of queueing the
// same work twice (a burst of refresh requests costs one refresh).
// Thread-safety: thread-safe. Handlers run on the workers, one run at a time per worker.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "metadata/metadata_store.h"

namespace analytics::jobs {

// Does the work of one run; its value is stored as the run's `result`, an error as its `error` (failed).
using RunHandler = std::function<common::Result<nlohmann::json>(const metadata::PipelineRun& run)>;

struct PipelineRunnerOptions {
  int workers = 1;
};

class PipelineRunner {
 public:
  PipelineRunner(metadata::MetadataStore& metadata, PipelineRunnerOptions options = {});
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner&) = delete;
  PipelineRunner& operator=(const PipelineRunner&) = delete;

  // Registers the handler of `kind` (before Start).
  void Register(const std::string& kind, RunHandler handler);
  // Requeues the runs left unfinished by a previous process, then starts the workers.
  common::Status Start();
  // Stops taking runs and waits for the running ones; queued runs stay queued in the store for the next start.
  void Stop();

  // Persists a queued run of `kind` on `target` and schedules it (or returns the identical queued run).
  // InvalidArgument for a kind nobody registered; Unavailable after Stop.
  common::Result<metadata::PipelineRun> Submit(const std::string& kind, const std::string& target,
                                               nlohmann::json parameters, const std::string& requested_by);

  // Runs queued or running in this process now.
  size_t Pending() const;

 private:
  void Work();
  void Finish(metadata::PipelineRun run, common::Result<nlohmann::json> outcome);

  metadata::MetadataStore& metadata_;
  const PipelineRunnerOptions options_;
  std::map<std::string, RunHandler> handlers_;  // written before Start only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<metadata::PipelineRun> queue_;  // guarded by mu_
  size_t running_ = 0;                        // guarded by mu_
  bool started_ = false, stopping_ = false;   // guarded by mu_
  std::vector<std::thread> workers_;
};

// The API document of a run: {"run_id", "kind", "target", "status", "parameters", "result", "error",
// "requested_by", "created_at", "started_at", "finished_at", "duration_ms"} (times RFC 3339 with milliseconds or
// null; duration_ms from start to finish, null until finished).
nlohmann::json RunToJson(const metadata::PipelineRun& run);

}  // namespace analytics::jobs
