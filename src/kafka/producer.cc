// The shared idempotent producer; see producer.h.
#include "kafka/producer.h"

#include <condition_variable>
#include <mutex>

#include "obs/logging.h"

namespace analytics::kafka {

using common::Result;
using common::Status;

namespace {

// One ProduceAndWait call: the delivery reports fill `statuses` and count `remaining` down.
struct Pending {
  std::mutex mu;
  std::condition_variable done;
  size_t remaining = 0;           // guarded by mu
  std::vector<Status> statuses;   // guarded by mu
  std::vector<bool> reported;     // guarded by mu
};

// The message's opaque: which call and which message. Owned by librdkafka until its delivery report.
struct Slot {
  std::shared_ptr<Pending> pending;
  size_t index = 0;
};

void OnDelivery(rd_kafka_t* /*handle*/, const rd_kafka_message_t* message, void* /*opaque*/) {
  std::unique_ptr<Slot> slot(static_cast<Slot*>(message->_private));
  if (!slot) return;
  Status status = message->err == RD_KAFKA_RESP_ERR_NO_ERROR
                      ? Status::Ok()
                      : Status::Unavailable("kafka delivery to '" + std::string(rd_kafka_topic_name(message->rkt)) +
                                            "' failed: " + ErrorText(message->err));
  std::lock_guard lock(slot->pending->mu);
  slot->pending->statuses[slot->index] = std::move(status);
  slot->pending->reported[slot->index] = true;
  if (--slot->pending->remaining == 0) slot->pending->done.notify_all();
}

}  // namespace

Result<std::unique_ptr<Producer>> Producer::Create(ProducerOptions options) {
  ANALYTICS_ASSIGN_OR_RETURN(ConfPtr conf,
                             MakeConf(options.client, {{"enable.idempotence", "true"},
                                                       {"acks", "all"},
                                                       {"linger.ms", std::to_string(options.linger_ms)},
                                                       {"message.timeout.ms", std::to_string(options.message_timeout_ms)},
                                                       {"compression.type", "lz4"},
                                                       // the Java clients' partitioner: same key, same partition
                                                       {"partitioner", "murmur2_random"}}));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), OnDelivery);
  char error[512];
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), error, sizeof(error));
  if (handle == nullptr) return Status::InvalidArgument(std::string("kafka producer: ") + error, "kafka.brokers");
  conf.release();  // rd_kafka_new took it
  return std::unique_ptr<Producer>(new Producer(HandlePtr(handle)));
}

Producer::Producer(HandlePtr handle) : handle_(std::move(handle)) {
  reporter_ = std::thread([this] { ServeReports(); });
}

Producer::~Producer() {
  rd_kafka_flush(handle_.get(), 2000);
  rd_kafka_purge(handle_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_flush(handle_.get(), 1000);  // serves the purged messages' reports (their slots are freed)
  stopping_ = true;
  reporter_.join();
  rd_kafka_poll(handle_.get(), 0);
}

void Producer::ServeReports() {
  while (!stopping_) rd_kafka_poll(handle_.get(), 100);
}

std::vector<Status> Producer::ProduceAndWait(const std::vector<OutgoingMessage>& messages,
                                             const std::function<bool()>& give_up) {
  auto pending = std::make_shared<Pending>();
  pending->statuses.assign(messages.size(), Status::Ok());
  pending->reported.assign(messages.size(), false);
  pending->remaining = messages.size();
  for (size_t i = 0; i < messages.size(); ++i) {
    const OutgoingMessage& message = messages[i];
    auto slot = std::make_unique<Slot>(Slot{pending, i});
    rd_kafka_headers_t* headers = MakeHeaders(message.headers);
    rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (;;) {
      error = rd_kafka_producev(
          handle_.get(), RD_KAFKA_V_TOPIC(message.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(message.key.empty() ? nullptr : message.key.data(), message.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(message.value.data()), message.value.size()),
          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(slot.get()), RD_KAFKA_V_END);
      if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the reporter thread drains the queue
    }
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_headers_destroy(headers);  // not taken on failure
      std::lock_guard lock(pending->mu);
      pending->statuses[i] = Status::Unavailable("kafka produce to '" + message.topic + "' failed: " + ErrorText(error));
      pending->reported[i] = true;
      --pending->remaining;
      continue;
    }
    slot.release();  // OnDelivery frees it
  }
  std::unique_lock lock(pending->mu);
  while (!pending->done.wait_for(lock, std::chrono::milliseconds(100), [&] { return pending->remaining == 0; })) {
    if (!give_up) continue;
    lock.unlock();
    const bool giving_up = give_up();
    lock.lock();
    if (!giving_up || pending->remaining == 0) continue;
    // The reports still to come land in `pending` (kept alive by their slots) and are ignored.
    std::vector<Status> statuses = pending->statuses;
    for (size_t i = 0; i < statuses.size(); ++i) {
      if (!pending->reported[i]) statuses[i] = Status::Unavailable("kafka delivery not confirmed: stopped waiting");
      (statuses[i].ok() ? delivered_ : failed_)++;
    }
    return statuses;
  }
  for (const Status& status : pending->statuses) (status.ok() ? delivered_ : failed_)++;
  return pending->statuses;
}

nlohmann::json Producer::Stats() const {
  return {{"messages_in_flight", rd_kafka_outq_len(handle_.get())},
          {"delivered", delivered_.load()},
          {"failed", failed_.load()}};
}

}  // namespace analytics::kafka
