// LocalEventBus: an in-memory EventBus adapter. Subscribers are called synchronously; the last `capacity` events
// are kept in memory for Recent (they do not survive a restart). The service uses the durable OutboxEventBus
// (bus/outbox/); this one serves tests that need a bus but not its storage.
// Thread-safety: thread-safe; subscribers run outside the lock, in publish order per publisher thread.
#pragma once

#include <deque>
#include <mutex>

#include "bus/event_bus.h"

namespace analytics::bus {

class LocalEventBus final : public EventBus {
 public:
  explicit LocalEventBus(size_t capacity = 10000) : capacity_(capacity) {}
  common::Status Publish(const std::string& key, nlohmann::json event) override;
  void Subscribe(std::function<void(const ProducedEvent&)> subscriber) override;
  common::Result<std::vector<ProducedEvent>> Recent(int64_t after_sequence, size_t limit,
                                                    const std::string& type) override;
  std::string Topic() const override { return kTopic; }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::deque<ProducedEvent> recent_;                                 // guarded by mu_
  std::vector<std::function<void(const ProducedEvent&)>> subscribers_;  // guarded by mu_
  int64_t next_sequence_ = 1;                                        // guarded by mu_
};

}  // namespace analytics::bus
