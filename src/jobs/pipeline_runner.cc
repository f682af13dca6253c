#include "jobs/pipeline_runner.h"

#include <algorithm>
#include <exception>

#include "common/ids.h"
#include "common/time_util.h"
#include "obs/logging.h"

namespace analytics::jobs {

using common::Result;
using common::Status;

PipelineRunner::PipelineRunner(metadata::MetadataStore& metadata, PipelineRunnerOptions options)
    : metadata_(metadata), options_(options) {}

PipelineRunner::~PipelineRunner() { Stop(); }

void PipelineRunner::Register(const std::string& kind, RunHandler handler) { handlers_[kind] = std::move(handler); }

Status PipelineRunner::Start() {
  ANALYTICS_ASSIGN_OR_RETURN(auto unfinished, metadata_.ListUnfinishedPipelineRuns());
  std::lock_guard lock(mu_);
  if (started_) return Status::Ok();
  for (auto& run : unfinished) {
    // Submitted in this process before Start: queued already.
    if (std::any_of(queue_.begin(), queue_.end(), [&run](const auto& queued) { return queued.id == run.id; })) continue;
    if (run.status == "running") {
      // The process that ran it stopped mid-run: it runs again from the start.
      run.status = "queued";
      run.started_at_ms = 0;
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
                                                     nlohmann::json parameters, const std::string& requested_by) {
  if (!handlers_.count(kind)) return Status::InvalidArgument("unknown pipeline kind '" + kind + "'", "kind");
  std::lock_guard lock(mu_);
  if (stopping_) return Status::Unavailable("the service is stopping");
  for (const auto& queued : queue_) {
    if (queued.kind == kind && queued.target == target && queued.parameters == parameters) return queued;
  }
  metadata::PipelineRun run;
  run.id = common::NewUuid();
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

size_t PipelineRunner::Pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void PipelineRunner::Work() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || (started_ && !queue_.empty()); });
    if (stopping_) return;
    metadata::PipelineRun run = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    run.status = "running";
    run.started_at_ms = common::NowMillis();
    Status marked = metadata_.UpdatePipelineRun(run);
    Result<nlohmann::json> outcome = Status::Internal("not run");
    if (!marked.ok()) {
      outcome = marked;
    } else {
      const auto handler = handlers_.find(run.kind);
      if (handler == handlers_.end()) {
        outcome = Status::InvalidArgument("unknown pipeline kind '" + run.kind + "'");
      } else {
        try {
          outcome = handler->second(run);
        } catch (const std::exception& e) {
          outcome = Status::Internal(std::string("pipeline run failed: ") + e.what());
        }
      }
    }
    Finish(std::move(run), std::move(outcome));
    lock.lock();
    --running_;
  }
}

void PipelineRunner::Finish(metadata::PipelineRun run, Result<nlohmann::json> outcome) {
  run.finished_at_ms = common::NowMillis();
  if (outcome.ok()) {
    run.status = "completed";
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
  if (run.status == "completed" && stored.ok()) {
    obs::LogInfo("pipeline run finished", fields);
  } else {
    obs::LogWarn("pipeline run finished", fields);
  }
}

nlohmann::json RunToJson(const metadata::PipelineRun& run) {
  auto time = [](int64_t ms) { return ms > 0 ? nlohmann::json(common::FormatRfc3339Millis(ms)) : nlohmann::json(); };
  nlohmann::json out = {{"run_id", run.id},
                        {"kind", run.kind},
                        {"target", run.target},
                        {"status", run.status},
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
