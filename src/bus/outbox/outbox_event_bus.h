// OutboxEventBus: the service's EventBus adapter. Publish first appends the event to the metadata store's outbox
// (committed durably before anything else happens), then calls the in-process subscribers, then the appended
// listener, which wakes the Kafka relay (bus/kafka/) when KAFKA_BROKERS is set. Recent reads the outbox back
// (GET /api/v1/analytics/outbox), so the produced events survive restarts and are the same on every replica that
// shares a PostgreSQL metadata store.
//
// Rationale: the transactional-outbox pattern. An event a producer was told is published is never lost, whether
// Kafka is up, down or not configured; delivery is the relay's job, at least once, in sequence order.
// Concurrency: thread-safe. Publish runs on the publisher's thread; subscribers and the listener run on it too,
// after the append (keep them short): subscribers outside any lock, the listener under its own (see
// SetAppendedListener).
// Limitations: a subscriber sees an event once, in this process only (the subscribers of other replicas do not).
// Publish costs one synced metadata commit (an fsync on SQLite), which is fine for the rate of produced events
// (segment refreshes, reports, alerts), not for a stream of them.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "bus/event_bus.h"
#include "common/status.h"
#include "metadata/metadata_store.h"

namespace analytics::bus {

struct OutboxEventBusOptions {
  // The Kafka topic the events are for (what GET /outbox shows; the relay is configured with the same).
  std::string topic = kTopic;
  // Purge deletes records created more than this long ago (default 7 days).
  int64_t retention_ms = int64_t{7} * 86400000;
  // When true, Purge keeps records not yet relayed to Kafka whatever their age (set it when a relay runs, i.e.
  // KAFKA_BROKERS is set); when false (embedded mode: nothing relays) age alone decides.
  bool only_relayed = false;
  // Called after every successful append, after the subscribers (the relay's wake-up); may be empty. Exceptions
  // are logged and swallowed.
  std::function<void()> on_appended;
};

class OutboxEventBus final : public EventBus {
 public:
  // `store` must outlive the bus.
  explicit OutboxEventBus(metadata::MetadataStore& store, OutboxEventBusOptions options = {});
  OutboxEventBus(const OutboxEventBus&) = delete;
  OutboxEventBus& operator=(const OutboxEventBus&) = delete;

  // Appends the event (compact JSON) keyed by `key`; ProducedEvent::sequence is the outbox sequence. On an error
  // nothing is published and nobody is called: InvalidArgument when `event` is not a JSON object with a non-empty
  // string "type" or cannot be serialized (a string that is not UTF-8), else the store's error (e.g. Unavailable).
  common::Status Publish(const std::string& key, nlohmann::json event) override;
  void Subscribe(std::function<void(const ProducedEvent&)> subscriber) override;
  // The outbox's records (every retained one, relayed or not; relayed_at_ms says which). Corruption naming the
  // sequence when a stored event is not JSON.
  common::Result<std::vector<ProducedEvent>> Recent(int64_t after_sequence, size_t limit,
                                                    const std::string& type) override;
  std::string Topic() const override { return topic_; }

  // Replaces the appended listener (see OutboxEventBusOptions::on_appended); an empty function removes it. Returns
  // once no call of the previous listener is running, and it is never called again: what it points to may go
  // right after (the relay, at shutdown). A listener must not call back into the bus.
  void SetAppendedListener(std::function<void()> listener);

  // Retention: deletes the records created before now_ms - retention_ms (only relayed ones when only_relayed);
  // returns how many. Run it periodically.
  common::Result<int64_t> Purge(int64_t now_ms);

  // How many records are not relayed yet (every retained one when nothing relays).
  common::Result<int64_t> Pending();

 private:
  metadata::MetadataStore& store_;
  const std::string topic_;
  const int64_t retention_ms_;
  const bool only_relayed_;
  std::mutex mu_;
  std::vector<std::function<void(const ProducedEvent&)>> subscribers_;  // GUARDED_BY(mu_)
  // Held while the listener runs and while it is replaced (publishers' wake-ups are short and run one at a time).
  std::mutex listener_mu_;
  std::function<void()> on_appended_;  // GUARDED_BY(listener_mu_)
};

}  // namespace analytics::bus
