// EventBus: the port through which the service publishes the events it produces (report.generated,
// segment.updated, alert.triggered; spec section 5.1) as CloudEvents for the platform's other services.
//
// Adapters: local/ (in-process: subscribers in this process and a bounded list of the recent events, readable
// at GET /api/v1/analytics/outbox) and, with the Kafka work, kafka/ (topic com.platform.analytics.events.v1
// through a durable outbox). Application code depends only on this interface; src/app picks one.
// Thread-safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace analytics::bus {

inline constexpr char kSource[] = "/analytics-service";
inline constexpr char kTopic[] = "com.platform.analytics.events.v1";

// One produced event: a CloudEvents 1.0 document (structured mode) and the key it is partitioned by.
struct ProducedEvent {
  int64_t sequence = 0;    // assigned by the bus, increasing in publish order
  std::string key;         // the entity id (segment id, report instance id, ...)
  nlohmann::json event;    // {"specversion": "1.0", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
};

// A CloudEvent of `type` about `subject` (the entity id), with a new id and the current time.
nlohmann::json MakeCloudEvent(const std::string& type, const std::string& subject, nlohmann::json data);

class EventBus {
 public:
  virtual ~EventBus() = default;
  // Publishes `event` (a CloudEvent from MakeCloudEvent) keyed by `key`. Delivery to subscribers happens before
  // it returns; a subscriber's failure never fails the publisher.
  virtual common::Status Publish(const std::string& key, nlohmann::json event) = 0;
  // Calls `subscriber` for every event published from now on (on the publisher's thread; keep it short).
  virtual void Subscribe(std::function<void(const ProducedEvent&)> subscriber) = 0;
  // The most recent published events with sequence > after_sequence, oldest first, at most `limit`, of `type`
  // when it is not empty.
  virtual std::vector<ProducedEvent> Recent(int64_t after_sequence, size_t limit, const std::string& type) = 0;
};

}  // namespace analytics::bus
