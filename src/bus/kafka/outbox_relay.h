// OutboxRelay: delivers the durable outbox (metadata store) to Kafka. Every event the service produces is
// first committed to the outbox (bus::OutboxEventBus); the relay reads the records not yet relayed in sequence
// order, produces them as structured-mode CloudEvents keyed by their entity id on the produced topic
// (com.platform.analytics.events.v1) through the idempotent producer (acks=all), and marks them relayed once
// the broker acknowledged them. While the broker is down the records wait in the outbox: nothing produced is
// lost, and delivery resumes by itself.
// Delivery is at least once (a crash between the broker's ack and the mark sends a record again; so can two
// replicas sharing a PostgreSQL outbox): consumers dedup by the CloudEvent id, which never changes.
// Thread-safety: Notify from any thread; Start/Stop from one thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "kafka/producer.h"
#include "metadata/metadata_store.h"
#include "obs/metrics.h"

namespace analytics::bus {

struct OutboxRelayOptions {
  std::string topic = "com.platform.analytics.events.v1";
  size_t batch_size = 500;        // records read and produced per round
  int idle_check_ms = 1000;       // how often the outbox is read without a Notify (other replicas' records)
  int retry_max_backoff_ms = 5000;
};

class OutboxRelay {
 public:
  OutboxRelay(metadata::MetadataStore& metadata, kafka::Producer& producer, OutboxRelayOptions options,
              obs::MetricsRegistry& metrics);
  ~OutboxRelay();

  void Start();
  void Stop();
  // A record was appended: relay soon.
  void Notify();

  // /readyz details: {"topic", "relayed", "last_error"}; never unavailable (the outbox keeps what waits).
  common::Status Readiness(nlohmann::json& details) const;

 private:
  void Run();
  // One round: returns how many records were relayed, or the first error.
  common::Result<size_t> RelayOnce();

  metadata::MetadataStore& metadata_;
  kafka::Producer& producer_;
  const OutboxRelayOptions options_;
  prometheus::Counter& relayed_;
  prometheus::Counter& errors_;
  prometheus::Histogram& delay_;

  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool notified_ = false;        // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::string last_error_;       // guarded by mu_
};

}  // namespace analytics::bus
