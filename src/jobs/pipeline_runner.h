// PipelineRunner: runs background jobs (segment refreshes, report instances; model training later) as the spec's
// DataPipelineRun: every run is a row of the MetadataStore (queued → running → completed | failed | cancelled,
// with timings, progress, parameters, result and error), readable at GET /api/v1/analytics/pipelines/runs.
// Several runners may share one store, each with its own kinds and workers (a long report never delays a
// segment refresh).
//
// Rationale: a run is persisted before it is acknowledged (POST answers 202 with its id), so a restart loses
// none: Start() puts the runs a previous process left queued or running back in the queue (a job kind must
// therefore be safe to run again: a refresh is). A bounded pool of workers takes runs in submit order. A run
// submitted while an identical one (kind, target, parameters) is still queued joins it instead of queueing the
// same work twice (a burst of refresh requests costs one refresh).
// Cancellation is cooperative: a running handler is only asked to stop (RunContext::cancelled); nothing is
// interrupted.
// Thread-safety: thread-safe. Handlers run on the workers, one run at a time per worker.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "metadata/metadata_store.h"

namespace analytics::jobs {

// What a handler may ask about and report on its run while it works.
class RunContext {
 public:
  virtual ~RunContext() = default;
  // Cancel was called for the run: the handler should stop soon (check between steps) and leave nothing behind;
  // whatever it returns, the run is stored as cancelled.
  virtual bool cancelled() const = 0;
  // The handler's estimate of the work done, 0..1 (clamped), stored with the run (throttled: at most about
  // every 200 ms; the last value before the run finishes may be skipped, completion stores 1).
  virtual void Progress(double fraction) = 0;
  // Calls `action` once the run is stored as completed (on the worker, after the store write; never when the run
  // fails or is cancelled): what must not be seen before the run reads completed (an announcement of its file).
  virtual void OnCompleted(std::function<void()> action) = 0;
};

// Does the work of one run; its value is stored as the run's `result`, an error as its `error` (failed).
using RunHandler = std::function<common::Result<nlohmann::json>(const metadata::PipelineRun& run, RunContext& context)>;

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
  // Requeues the runs of its registered kinds left unfinished by a previous process (other kinds belong to
  // other runners over the same store), then starts the workers.
  common::Status Start();
  // Stops taking runs and waits for the running ones; queued runs stay queued in the store for the next start.
  void Stop();

  // Persists a queued run of `kind` on `target` and schedules it (or returns the identical queued run).
  // `run_id`: the new run's id (a caller that must create a run at most once derives it from what identifies the
  // work); empty: a random one. InvalidArgument for a kind nobody registered; Unavailable after Stop;
  // AlreadyExists when a run with `run_id` exists (nothing is queued).
  common::Result<metadata::PipelineRun> Submit(const std::string& kind, const std::string& target,
                                               nlohmann::json parameters, const std::string& requested_by,
                                               const std::string& run_id = {});

  // Cancels a run of this runner. A queued run leaves the queue and is stored as cancelled at once (error
  // "cancelled by <actor>"); a running one is asked to stop (RunContext::cancelled) and is stored as cancelled
  // when its handler returns. Returns the run as stored after the call (status "cancelled", or still "running"
  // until the handler returns). NotFound when no run of this id is queued or running here (unknown, finished,
  // or another process's); a second Cancel of a running run answers it again.
  common::Result<metadata::PipelineRun> Cancel(const std::string& run_id, const std::string& actor);

  // Runs queued or running in this process now.
  size_t Pending() const;

 private:
  struct ActiveRun;
  class WorkerContext;

  void Work();
  // Stores the finished run: completed, failed or (when `cancelled_by` is set) cancelled. True when it stored it
  // as completed.
  bool Finish(metadata::PipelineRun run, common::Result<nlohmann::json> outcome,
              const std::optional<std::string>& cancelled_by);

  metadata::MetadataStore& metadata_;
  const PipelineRunnerOptions options_;
  std::map<std::string, RunHandler> handlers_;  // written before Start only
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<metadata::PipelineRun> queue_;  // guarded by mu_
  // The runs the workers are running, by id (running_ of them); removed before their final state is stored.
  std::map<std::string, std::shared_ptr<ActiveRun>> active_;  // guarded by mu_
  size_t running_ = 0;                        // guarded by mu_
  bool started_ = false, stopping_ = false;   // guarded by mu_
  std::vector<std::thread> workers_;
};

// The API document of a run: {"run_id", "kind", "target", "status", "progress", "parameters", "result", "error",
// "requested_by", "created_at", "started_at", "finished_at", "duration_ms"} (times RFC 3339 with milliseconds or
// null; duration_ms from start to finish, null until finished).
nlohmann::json RunToJson(const metadata::PipelineRun& run);

}  // namespace analytics::jobs
