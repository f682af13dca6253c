// The outbox relay; see outbox_relay.h.
#include "bus/kafka/outbox_relay.h"

#include <algorithm>
#include <chrono>

#include "common/time_util.h"
#include "obs/logging.h"

namespace analytics::bus {

using common::Result;
using common::Status;

OutboxRelay::OutboxRelay(metadata::MetadataStore& metadata, kafka::Producer& producer, OutboxRelayOptions options,
                         obs::MetricsRegistry& metrics)
    : metadata_(metadata),
      producer_(producer),
      options_(std::move(options)),
      relayed_(prometheus::BuildCounter()
                   .Name("analytics_outbox_relayed_total")
                   .Help("Outbox records delivered to the Kafka topic")
                   .Register(metrics.registry())
                   .Add({})),
      errors_(prometheus::BuildCounter()
                  .Name("analytics_outbox_relay_errors_total")
                  .Help("Relay rounds that failed (broker or metadata store unavailable)")
                  .Register(metrics.registry())
                  .Add({})),
      delay_(prometheus::BuildHistogram()
                 .Name("analytics_outbox_relay_delay_seconds")
                 .Help("Time from an outbox record's creation to its delivery to Kafka")
                 .Register(metrics.registry())
                 .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300})) {}

OutboxRelay::~OutboxRelay() { Stop(); }

void OutboxRelay::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void OutboxRelay::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OutboxRelay::Notify() {
  {
    std::lock_guard lock(mu_);
    notified_ = true;
  }
  wake_.notify_all();
}

void OutboxRelay::Run() {
  int backoff_ms = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      const int wait_ms = backoff_ms > 0 ? backoff_ms : options_.idle_check_ms;
      wake_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stopping_ || (notified_ && backoff_ms == 0); });
      if (stopping_) return;
      notified_ = false;
    }
    // Relay until the outbox is drained (or a round fails).
    for (;;) {
      Result<size_t> relayed = RelayOnce();
      if (!relayed.ok()) {
        errors_.Increment();
        {
          std::lock_guard lock(mu_);
          last_error_ = relayed.status().ToString();
        }
        obs::LogWarn("outbox relay failed; retrying", {{"error", relayed.status().ToString()}});
        backoff_ms = std::clamp(backoff_ms * 2, 100, options_.retry_max_backoff_ms);
        break;
      }
      backoff_ms = 0;
      if (*relayed < options_.batch_size) break;
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
  }
}

Result<size_t> OutboxRelay::RelayOnce() {
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<metadata::OutboxRecord> records,
                             metadata_.ListUnrelayedOutbox(options_.batch_size));
  if (records.empty()) return size_t{0};
  std::vector<kafka::OutgoingMessage> messages;
  messages.reserve(records.size());
  for (const auto& record : records) {
    kafka::OutgoingMessage& message = messages.emplace_back();
    message.topic = options_.topic;
    message.key = record.key;
    message.value = record.event_json;
    message.headers = {{"content-type", "application/cloudevents+json; charset=utf-8"}};
  }
  // Stopping: unacknowledged records stay unrelayed and go out after the restart.
  std::vector<Status> statuses = producer_.ProduceAndWait(messages, [this] {
    std::lock_guard lock(mu_);
    return stopping_;
  });
  std::vector<int64_t> done;
  Status first_error;
  const int64_t now_ms = common::NowMillis();
  for (size_t i = 0; i < records.size(); ++i) {
    if (statuses[i].ok()) {
      done.push_back(records[i].sequence);
      delay_.Observe(static_cast<double>(std::max<int64_t>(0, now_ms - records[i].created_at_ms)) / 1000.0);
    } else if (first_error.ok()) {
      first_error = statuses[i];
    }
  }
  if (!done.empty()) {
    ANALYTICS_RETURN_IF_ERROR(metadata_.MarkOutboxRelayed(done, now_ms));
    relayed_.Increment(static_cast<double>(done.size()));
  }
  ANALYTICS_RETURN_IF_ERROR(first_error);
  {
    std::lock_guard lock(mu_);
    last_error_.clear();
  }
  return records.size();
}

Status OutboxRelay::Readiness(nlohmann::json& details) const {
  std::lock_guard lock(mu_);
  details["topic"] = options_.topic;
  details["relayed"] = relayed_.Value();
  if (!last_error_.empty()) details["last_error"] = last_error_;
  return Status::Ok();
}

}  // namespace analytics::bus
