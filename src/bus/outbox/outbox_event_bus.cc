// OutboxEventBus: append, then subscribers, then the appended listener.
#include "bus/outbox/outbox_event_bus.h"

#include <exception>
#include <utility>

#include "common/time_util.h"
#include "obs/logging.h"

namespace analytics::bus {

using common::Result;
using common::Status;

namespace {

// Runs a subscriber or listener; what it throws is logged, never passed to the publisher.
template <typename Call>
void Guarded(const char* what, const std::string& type, Call&& call) {
  try {
    call();
  } catch (const std::exception& e) {
    obs::LogWarn(what, {{"type", type}, {"error", e.what()}});
  } catch (...) {
    obs::LogWarn(what, {{"type", type}, {"error", "unknown exception"}});
  }
}

}  // namespace

OutboxEventBus::OutboxEventBus(metadata::MetadataStore& store, OutboxEventBusOptions options)
    : store_(store),
      topic_(std::move(options.topic)),
      retention_ms_(options.retention_ms),
      only_relayed_(options.only_relayed),
      on_appended_(std::move(options.on_appended)) {}

Status OutboxEventBus::Publish(const std::string& key, nlohmann::json event) {
  const auto type_member = event.is_object() ? event.find("type") : event.end();
  if (!event.is_object() || type_member == event.end() || !type_member->is_string() ||
      type_member->get_ref<const std::string&>().empty()) {
    return Status::InvalidArgument("a produced event must be a JSON object with a non-empty string type", "event");
  }
  const std::string type = type_member->get<std::string>();
  std::string event_json;
  try {
    event_json = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(std::string("cannot serialize the event: ") + e.what(), "event");
  }
  ProducedEvent produced;
  ANALYTICS_ASSIGN_OR_RETURN(produced.sequence, store_.AppendOutbox(key, type, event_json, common::NowMillis()));
  produced.key = key;
  produced.event = std::move(event);
  std::vector<std::function<void(const ProducedEvent&)>> subscribers;
  {
    std::lock_guard lock(mu_);
    subscribers = subscribers_;
  }
  for (const auto& subscriber : subscribers) {
    Guarded("event bus subscriber failed", type, [&] { subscriber(produced); });
  }
  std::lock_guard listener_lock(listener_mu_);
  if (on_appended_) Guarded("outbox appended listener failed", type, on_appended_);
  return Status::Ok();
}

void OutboxEventBus::Subscribe(std::function<void(const ProducedEvent&)> subscriber) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(std::move(subscriber));
}

Result<std::vector<ProducedEvent>> OutboxEventBus::Recent(int64_t after_sequence, size_t limit,
                                                          const std::string& type) {
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<metadata::OutboxRecord> records,
                             store_.ListOutbox(after_sequence, limit, type));
  std::vector<ProducedEvent> out;
  out.reserve(records.size());
  for (auto& record : records) {
    ProducedEvent produced;
    produced.sequence = record.sequence;
    produced.key = std::move(record.key);
    produced.event = nlohmann::json::parse(record.event_json, nullptr, /*allow_exceptions=*/false);
    if (produced.event.is_discarded()) {
      return Status::Corruption("outbox record " + std::to_string(record.sequence) + " does not hold JSON");
    }
    produced.relayed_at_ms = record.relayed_at_ms;
    out.push_back(std::move(produced));
  }
  return out;
}

void OutboxEventBus::SetAppendedListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mu_);  // waits for a running call of the previous listener
  on_appended_ = std::move(listener);
}

Result<int64_t> OutboxEventBus::Purge(int64_t now_ms) {
  return store_.PurgeOutbox(now_ms - retention_ms_, only_relayed_);
}

Result<int64_t> OutboxEventBus::Pending() { return store_.CountUnrelayedOutbox(); }

}  // namespace analytics::bus
