// Producer: one idempotent librdkafka producer (acks=all, retries inside message.timeout.ms) shared by the outbox
// relay and the dead-letter topic writer. ProduceAndWait returns only when the broker acknowledged or refused
// every message, so callers can mark work done (outbox rows relayed, source offsets committed) afterwards.
// Thread-safety: thread-safe; a background thread serves librdkafka's delivery reports.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "kafka/client.h"

namespace analytics::kafka {

struct OutgoingMessage {
  std::string topic;
  std::string key;      // empty: no key
  std::string value;
  Headers headers;
};

struct ProducerOptions {
  ClientOptions client;
  // How long librdkafka keeps retrying one message before reporting it failed (message.timeout.ms).
  int message_timeout_ms = 30000;
  int linger_ms = 5;
};

class Producer {
 public:
  static common::Result<std::unique_ptr<Producer>> Create(ProducerOptions options);
  ~Producer();  // waits up to 2 s for messages in flight, then drops them

  // Produces `messages` and waits for every delivery report: one Status per message, in order (Ok = written
  // with acks=all). Unavailable when the broker did not take a message within message_timeout_ms, or when
  // `give_up` (checked every 100 ms) says to stop waiting: then the messages not yet acknowledged are reported
  // Unavailable although librdkafka may still deliver them (callers treat them as not sent; at least once).
  std::vector<common::Status> ProduceAndWait(const std::vector<OutgoingMessage>& messages,
                                             const std::function<bool()>& give_up = {});

  // {"messages_in_flight", "delivered", "failed"} for /readyz.
  nlohmann::json Stats() const;

 private:
  explicit Producer(HandlePtr handle);
  void ServeReports();

  HandlePtr handle_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> failed_{0};
  std::thread reporter_;
};

}  // namespace analytics::kafka
