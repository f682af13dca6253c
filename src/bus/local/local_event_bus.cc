#include "bus/local/local_event_bus.h"

#include <exception>

#include "obs/logging.h"

namespace analytics::bus {

common::Status LocalEventBus::Publish(const std::string& key, nlohmann::json event) {
  ProducedEvent produced;
  std::vector<std::function<void(const ProducedEvent&)>> subscribers;
  {
    std::lock_guard lock(mu_);
    produced.sequence = next_sequence_++;
    produced.key = key;
    produced.event = std::move(event);
    recent_.push_back(produced);
    while (recent_.size() > capacity_) recent_.pop_front();
    subscribers = subscribers_;
  }
  for (const auto& subscriber : subscribers) {
    try {
      subscriber(produced);
    } catch (const std::exception& e) {
      obs::LogWarn("event bus subscriber failed", {{"type", produced.event.value("type", "")}, {"error", e.what()}});
    }
  }
  return common::Status::Ok();
}

void LocalEventBus::Subscribe(std::function<void(const ProducedEvent&)> subscriber) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(std::move(subscriber));
}

common::Result<std::vector<ProducedEvent>> LocalEventBus::Recent(int64_t after_sequence, size_t limit,
                                                                 const std::string& type) {
  std::vector<ProducedEvent> out;
  std::lock_guard lock(mu_);
  for (const auto& produced : recent_) {
    if (out.size() >= limit) break;
    if (produced.sequence <= after_sequence) continue;
    if (!type.empty() && produced.event.value("type", "") != type) continue;
    out.push_back(produced);
  }
  return out;
}

}  // namespace analytics::bus
