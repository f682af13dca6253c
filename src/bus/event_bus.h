// EventBus: the port through which the service publishes the events it produces (report.generated,
// segment.updated, alert.triggered; spec section 5.1) as CloudEvents for the platform's other services.
//
// Adapters: outbox/ (the service's bus: each event is first written durably to the metadata store's outbox,
// readable at GET /api/v1/analytics/outbox, and relayed to Kafka topic com.platform.analytics.events.v1 by
// kafka/ when KAFKA_BROKERS is set) and local/ (in memory only: subscribers in this process and a bounded list of
// the recent events; for tests). Application code depends only on this interface; src/app picks one.
// Thread-safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
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
  std::optional<int64_t> relayed_at_ms;  // when it was delivered to Kafka (Unix millis); nullopt while it is not
};

// A CloudEvent of `type` about `subject` (the entity id), with a new id and the current time.
nlohmann::json MakeCloudEvent(const std::string& type, const std::string& subject, nlohmann::json data);

class EventBus {
 public:
  virtual ~EventBus() = default;
  // Publishes `event` (a CloudEvent from MakeCloudEvent) keyed by `key`. Delivery to subscribers happens before
  // it returns; a subscriber's failure never fails the publisher. An error (the event could not be stored, or
  // is not a JSON object with a string "type") means the event is not published: no subscriber saw it.
  virtual common::Status Publish(const std::string& key, nlohmann::json event) = 0;
  // Calls `subscriber` for every event published from now on (on the publisher's thread; keep it short).
  virtual void Subscribe(std::function<void(const ProducedEvent&)> subscriber) = 0;
  // The published events the bus still holds with sequence > after_sequence, oldest first, at most `limit`, of
  // `type` when it is not empty. An error when they cannot be read (e.g. Unavailable: the store is down).
  virtual common::Result<std::vector<ProducedEvent>> Recent(int64_t after_sequence, size_t limit,
                                                            const std::string& type) = 0;
  // The Kafka topic the events are for (kafka.produced_topic; kTopic unless configured otherwise).
  virtual std::string Topic() const = 0;
};

}  // namespace analytics::bus
