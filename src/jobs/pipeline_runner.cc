#include "jobs/pipeline_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>

#include "common/ids.h"
#include "common/time_util.h"
#include "obs/logging.h"

namespace analytics::jobs {

using common::Result;
using common::Status;

namespace {

// Progress is stored at most this often per run (each store is a write of the whole run row).
constexpr std::chrono::milliseconds kProgressInterval(200);

std::string CancelledError(const std::string& actor) { return "cancelled by " + actor; }

}  // namespace

// A run a worker is running. Shared by the worker (and its RunContext) and Cancel.
struct PipelineRunner::ActiveRun {
  metadata::PipelineRun run;               // as marked running; immutable while active
  std::atomic<bool> cancelled{false};      // read by the handler without the lock
  std::optional<std::string> cancelled_by;  // guarded by the runner's mu_; set with `cancelled`
};

// The RunContext of one run: the cancel flag, and progress stored at most every kProgressInterval.
class PipelineRunner::WorkerContext final : public RunContext {
 public:
  WorkerContext(metadata::MetadataStore& metadata, const ActiveRun& active) : metadata_(metadata), active_(active) {}

  bool cancelled() const override { return active_.cancelled.load(std::memory_order_relaxed); }

  void Progress(double fraction) override {
    if (std::isnan(fraction)) return;
    fraction = std::clamp(fraction, 0.0, 1.0);
    // Handlers may report from helper threads: one report at a time, in order.
    std::lock_guard lock(mu_);
    latest_ = fraction;
    const auto now = std::chrono::steady_clock::now();
    if (fraction == stored_ || (last_store_ && now - *last_store_ < kProgressInterval)) return;
    metadata::PipelineRun run = active_.run;
    run.progress = fraction;
    Status status = metadata_.UpdatePipelineRun(run);
    last_store_ = now;  // also after a failure: a struggling store is not hammered
    if (!status.ok()) {
      obs::LogWarn("pipeline run progress not stored", {{"run_id", run.id}, {"kind", run.kind},
                                                         {"store_error", status.ToString()}});
      return;
    }
    stored_ = fraction;
  }

  void OnCompleted(std::function<void()> action) override {
    std::lock_guard lock(mu_);
    on_completed_.push_back(std::move(action));
  }

  // The last fraction reported (stored or not).
  double latest() const {
    std::lock_guard lock(mu_);
    return latest_;
  }

  std::vector<std::function<void()>> TakeOnCompleted() {
    std::lock_guard lock(mu_);
    return std::move(on_completed_);
  }

 private:
  metadata::MetadataStore& metadata_;
  const ActiveRun& active_;
  mutable std::mutex mu_;
  double latest_ = 0;                                                 // guarded by mu_
  double stored_ = 0;                                                 // guarded by mu_
  std::optional<std::chrono::steady_clock::time_point> last_store_;  // guarded by mu_
  std::vector<std::function<void()>> on_completed_;                   // guarded by mu_
};

PipelineRunner::PipelineRunner(metadata::MetadataStore& metadata, PipelineRunnerOptions options)
    : metadata_(metadata), options_(options) {}

PipelineRunner::~PipelineRunner() { Stop(); }

void PipelineRunner::Register(const std::string& kind, RunHandler handler) { handlers_[kind] = std::move(handler); }

Status PipelineRunner::Start() {
  ANALYTICS_ASSIGN_OR_RETURN(auto unfinished, metadata_.ListUnfinishedPipelineRuns());
  std::lock_guard lock(mu_);
  if (started_) return Status::Ok();
  for (auto& run : unfinished) {
    // Another runner over the same store (another kind) recovers it.
    if (!handlers_.count(run.kind)) continue;
    // Submitted in this process before Start: queued already.
    if (std::any_of(queue_.begin(), queue_.end(), [&run](const auto& queued) { return queued.id == run.id; })) continue;
    if (run.status == "running") {
      // The process that ran it stopped mid-run: it runs again from the start.
      run.status = "queued";
      run.started_at_ms = 0;
      run.progress = 0;
      ANALYTICS_RETURN_IF_ERROR(metadata_.UpdatePipelineRun(run));
    }
    obs::LogInfo("pipeline run recovered", {{"run_id", run.id}, {"kind", run.kind}, {"target", run.target}});
    queue_.push_back(std::move(run));
  }
  started_ = true;
  const int workers = std::max(1, options_.workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
  cv_.notify_all();
  return Status::Ok();
}

void PipelineRunner::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

Result<metadata::PipelineRun> PipelineRunner::Submit(const std::string& kind, const std::string& target,
                                                     nlohmann::json parameters, const std::string& requested_by,
                                                     const std::string& run_id) {
  if (!handlers_.count(kind)) return Status::InvalidArgument("unknown pipeline kind '" + kind + "'", "kind");
  std::lock_guard lock(mu_);
  if (stopping_) return Status::Unavailable("the service is stopping");
  for (const auto& queued : queue_) {
    if (queued.kind == kind && queued.target == target && queued.parameters == parameters) return queued;
  }
  metadata::PipelineRun run;
  run.id = run_id.empty() ? common::NewUuid() : run_id;
  run.kind = kind;
  run.target = target;
  run.status = "queued";
  run.parameters = std::move(parameters);
  run.requested_by = requested_by;
  run.created_at_ms = common::NowMillis();
  // Persisted under the lock, so the queue's order is the store's and a worker never sees an unwritten run.
  ANALYTICS_RETURN_IF_ERROR(metadata_.CreatePipelineRun(run));
  queue_.push_back(run);
  cv_.notify_one();
  return run;
}

Result<metadata::PipelineRun> PipelineRunner::Cancel(const std::string& run_id, const std::string& actor) {
  std::lock_guard lock(mu_);
  const auto queued = std::find_if(queue_.begin(), queue_.end(), [&](const auto& run) { return run.id == run_id; });
  if (queued != queue_.end()) {
    metadata::PipelineRun run = *queued;
    run.status = "cancelled";
    run.error = CancelledError(actor);
    run.finished_at_ms = common::NowMillis();
    // Stored before it leaves the queue (under the lock, so no worker takes it meanwhile): when the store
    // fails, the run stays queued here and in the store.
    ANALYTICS_RETURN_IF_ERROR(metadata_.UpdatePipelineRun(run));
    queue_.erase(queued);
    obs::LogInfo("pipeline run cancelled",
                 {{"run_id", run.id}, {"kind", run.kind}, {"target", run.target}, {"status", "queued"},
                  {"actor", actor}});
    return run;
  }
  const auto active = active_.find(run_id);
  if (active == active_.end()) {
    return Status::NotFound("pipeline run '" + run_id + "' is not queued or running here");
  }
  ActiveRun& running = *active->second;
  if (!running.cancelled_by) {  // the first actor is the one recorded
    running.cancelled_by = actor;
    running.cancelled.store(true, std::memory_order_relaxed);
    obs::LogInfo("pipeline run cancelled",
                 {{"run_id", run_id}, {"kind", running.run.kind}, {"target", running.run.target},
                  {"status", "running"}, {"actor", actor}});
  }
  return running.run;
}

size_t PipelineRunner::Pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void PipelineRunner::Work() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || (started_ && !queue_.empty()); });
    if (stopping_) return;
    auto active = std::make_shared<ActiveRun>();
    active->run = std::move(queue_.front());
    queue_.pop_front();
    active->run.status = "running";
    active->run.started_at_ms = common::NowMillis();
    active->run.progress = 0;
    active_.emplace(active->run.id, active);
    ++running_;
    lock.unlock();
    Status marked = metadata_.UpdatePipelineRun(active->run);
    WorkerContext context(metadata_, *active);
    Result<nlohmann::json> outcome = Status::Internal("not run");
    if (!marked.ok()) {
      outcome = marked;
    } else {
      const auto handler = handlers_.find(active->run.kind);
      if (handler == handlers_.end()) {
        outcome = Status::InvalidArgument("unknown pipeline kind '" + active->run.kind + "'");
      } else {
        try {
          outcome = handler->second(active->run, context);
        } catch (const std::exception& e) {
          outcome = Status::Internal(std::string("pipeline run failed: ") + e.what());
        }
      }
    }
    // From here on Cancel answers NotFound: the run is finishing.
    lock.lock();
    active_.erase(active->run.id);
    const std::optional<std::string> cancelled_by = active->cancelled_by;
    lock.unlock();
    metadata::PipelineRun run = active->run;
    run.progress = context.latest();
    const bool completed = Finish(std::move(run), std::move(outcome), cancelled_by);
    for (auto& action : context.TakeOnCompleted()) {
      if (!completed) break;
      try {
        action();
      } catch (const std::exception& e) {
        obs::LogWarn("pipeline run completion action failed", {{"run_id", active->run.id}, {"error", e.what()}});
      }
    }
    lock.lock();
    --running_;
  }
}

bool PipelineRunner::Finish(metadata::PipelineRun run, Result<nlohmann::json> outcome,
                            const std::optional<std::string>& cancelled_by) {
  run.finished_at_ms = common::NowMillis();
  if (cancelled_by) {
    // Whatever the handler returned: the caller asked for the run not to happen.
    run.status = "cancelled";
    run.result = nullptr;
    run.error = CancelledError(*cancelled_by);
  } else if (outcome.ok()) {
    run.status = "completed";
    run.progress = 1;
    run.result = std::move(outcome).value();
    run.error.clear();
  } else {
    run.status = "failed";
    run.error = outcome.status().message();
  }
  Status stored = metadata_.UpdatePipelineRun(run);
  nlohmann::json fields = {{"run_id", run.id},          {"kind", run.kind},
                           {"target", run.target},      {"status", run.status},
                           {"duration_ms", run.finished_at_ms - run.started_at_ms}};
  if (!run.error.empty()) fields["error"] = run.error;
  if (!stored.ok()) fields["store_error"] = stored.ToString();
  if (run.status != "failed" && stored.ok()) {
    obs::LogInfo("pipeline run finished", fields);
  } else {
    obs::LogWarn("pipeline run finished", fields);
  }
  return run.status == "completed" && stored.ok();
}

nlohmann::json RunToJson(const metadata::PipelineRun& run) {
  auto time = [](int64_t ms) { return ms > 0 ? nlohmann::json(common::FormatRfc3339Millis(ms)) : nlohmann::json(); };
  nlohmann::json out = {{"run_id", run.id},
                        {"kind", run.kind},
                        {"target", run.target},
                        {"status", run.status},
                        {"progress", run.progress},
                        {"parameters", run.parameters.is_null() ? nlohmann::json::object() : run.parameters},
                        {"result", run.result},
                        {"error", run.error.empty() ? nlohmann::json() : nlohmann::json(run.error)},
                        {"requested_by", run.requested_by},
                        {"created_at", time(run.created_at_ms)},
                        {"started_at", time(run.started_at_ms)},
                        {"finished_at", time(run.finished_at_ms)},
                        {"duration_ms", run.finished_at_ms > 0 && run.started_at_ms > 0
                                            ? nlohmann::json(run.finished_at_ms - run.started_at_ms)
                                            : nlohmann::json()}};
  return out;
}

}  // namespace analytics::jobs
