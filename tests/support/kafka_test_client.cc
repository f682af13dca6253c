#include "support/kafka_test_client.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using Clock = std::chrono::steady_clock;

// How long one admin request, delivery or metadata wait may take before the client gives up.
constexpr std::chrono::milliseconds kOperationTimeout{30000};
constexpr int kMetadataTimeoutMs = 5000;

[[noreturn]] void Fail(const std::string& message) { throw std::runtime_error("KafkaTestClient: " + message); }

int RemainingMs(Clock::time_point deadline) {
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<int64_t>(0, remaining));
}

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* event) const { rd_kafka_event_destroy(event); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* options) const { rd_kafka_AdminOptions_destroy(options); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* metadata) const { rd_kafka_metadata_destroy(metadata); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;
using AdminOptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter>;
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

// A consumer handle, closed (leaving no group: it never joins one) and destroyed with its owner.
struct ConsumerDeleter {
  void operator()(rd_kafka_t* consumer) const {
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
  }
};
using ConsumerPtr = std::unique_ptr<rd_kafka_t, ConsumerDeleter>;

void Set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    Fail(std::string("config ") + name + "=" + value + ": " + errstr);
  }
}

// Settings every handle shares: the broker, quick reconnects, and no log line for idle disconnects.
ConfPtr BaseConf(const std::string& brokers) {
  ConfPtr conf(rd_kafka_conf_new());
  Set(conf.get(), "bootstrap.servers", brokers);
  Set(conf.get(), "client.id", "analytics-test-client");
  Set(conf.get(), "reconnect.backoff.max.ms", "1000");
  Set(conf.get(), "log.connection.close", "false");
  return conf;
}

// A consumer of `group` that never subscribes: it reads by assign and asks for committed offsets.
// librdkafka needs a group id for rd_kafka_assign and rd_kafka_consumer_poll even without joining a group.
ConsumerPtr NewConsumer(const std::string& brokers, const std::string& group) {
  ConfPtr conf = BaseConf(brokers);
  Set(conf.get(), "group.id", group);
  Set(conf.get(), "enable.auto.commit", "false");
  Set(conf.get(), "enable.auto.offset.store", "false");
  Set(conf.get(), "auto.offset.reset", "earliest");
  Set(conf.get(), "enable.partition.eof", "false");
  Set(conf.get(), "fetch.wait.max.ms", "100");
  char errstr[512];
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), errstr, sizeof errstr);
  if (consumer == nullptr) Fail(std::string("cannot create a consumer: ") + errstr);
  conf.release();  // owned by the handle now
  return ConsumerPtr(consumer);
}

// Every topic the broker knows (all_topics: asking for one topic by name could auto-create it).
MetadataPtr AllTopicsMetadata(rd_kafka_t* handle) {
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(handle, 1, nullptr, &metadata, kMetadataTimeoutMs);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Fail(std::string("metadata request failed: ") + rd_kafka_err2str(err));
  return MetadataPtr(metadata);
}

const rd_kafka_metadata_topic_t* FindTopic(const rd_kafka_metadata_t& metadata, const std::string& topic) {
  for (int topic_idx = 0; topic_idx < metadata.topic_cnt; ++topic_idx) {
    const rd_kafka_metadata_topic_t& entry = metadata.topics[topic_idx];
    if (topic == entry.topic && entry.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) return &entry;
  }
  return nullptr;
}

// True when `topic` exists and every one of its partitions has a leader.
bool TopicReady(const rd_kafka_metadata_t& metadata, const std::string& topic) {
  const rd_kafka_metadata_topic_t* entry = FindTopic(metadata, topic);
  if (entry == nullptr || entry->err != RD_KAFKA_RESP_ERR_NO_ERROR || entry->partition_cnt == 0) return false;
  for (int partition_idx = 0; partition_idx < entry->partition_cnt; ++partition_idx) {
    const rd_kafka_metadata_partition_t& partition = entry->partitions[partition_idx];
    if (partition.err != RD_KAFKA_RESP_ERR_NO_ERROR || partition.leader < 0) return false;
  }
  return true;
}

// Runs one admin request whose result event carries per-topic results, and returns the event. Throws when
// the request itself failed or timed out.
EventPtr AwaitAdminResult(rd_kafka_queue_t* queue, rd_kafka_event_type_t expected, const char* what) {
  EventPtr event(rd_kafka_queue_poll(queue, static_cast<int>(kOperationTimeout.count()) + 5000));
  if (!event) Fail(std::string(what) + ": no answer from the broker");
  if (rd_kafka_event_type(event.get()) != expected) {
    Fail(std::string(what) + ": unexpected event " + rd_kafka_event_name(event.get()));
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Fail(std::string(what) + ": " + rd_kafka_event_error_string(event.get()));
  }
  return event;
}

AdminOptionsPtr AdminOptions(rd_kafka_t* handle, rd_kafka_admin_op_t op) {
  AdminOptionsPtr options(rd_kafka_AdminOptions_new(handle, op));
  char errstr[512];
  // The operation timeout makes the controller answer only once the change is done (or failed).
  if (rd_kafka_AdminOptions_set_operation_timeout(options.get(), static_cast<int>(kOperationTimeout.count()),
                                                  errstr, sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_AdminOptions_set_request_timeout(options.get(), static_cast<int>(kOperationTimeout.count()) + 2000,
                                                errstr, sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Fail(std::string("admin options: ") + errstr);
  }
  return options;
}

void CheckTopicResult(const rd_kafka_topic_result_t* result, rd_kafka_resp_err_t tolerated, const char* what) {
  rd_kafka_resp_err_t err = rd_kafka_topic_result_error(result);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == tolerated) return;
  const char* message = rd_kafka_topic_result_error_string(result);
  Fail(std::string(what) + " " + rd_kafka_topic_result_name(result) + ": " + rd_kafka_err2name(err) + " (" +
       (message != nullptr ? message : rd_kafka_err2str(err)) + ")");
}

KafkaTestMessage ToTestMessage(const rd_kafka_message_t& message) {
  KafkaTestMessage out;
  out.topic = rd_kafka_topic_name(message.rkt);
  out.partition = message.partition;
  out.offset = message.offset;
  if (message.key != nullptr) out.key.assign(static_cast<const char*>(message.key), message.key_len);
  if (message.payload != nullptr) out.value.assign(static_cast<const char*>(message.payload), message.len);
  rd_kafka_timestamp_type_t timestamp_type;
  out.timestamp_ms = rd_kafka_message_timestamp(&message, &timestamp_type);
  rd_kafka_headers_t* headers = nullptr;  // owned by the message
  if (rd_kafka_message_headers(&message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t header_idx = 0; rd_kafka_header_get_all(headers, header_idx, &name, &value, &size) ==
                                RD_KAFKA_RESP_ERR_NO_ERROR;
         ++header_idx) {
      out.headers.emplace_back(name, value != nullptr ? std::string(static_cast<const char*>(value), size)
                                                      : std::string());
    }
  }
  return out;
}

}  // namespace

std::string KafkaBrokers() {
  std::string brokers = RequiredEnv("ANALYTICS_TEST_KAFKA_BROKERS");  // fails the test when unset
  if (brokers.empty()) {
    Fail("ANALYTICS_TEST_KAFKA_BROKERS is not set: run the tests through scripts/run-tests, which starts Kafka");
  }
  return brokers;
}

std::string UniqueTopic(std::string_view prefix) {
  std::string topic;
  for (char c : prefix) {
    bool legal = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    topic.push_back(legal ? c : '_');
  }
  if (!topic.empty()) topic.push_back('-');
  return topic + common::NewUuid();
}

// Delivery reports of the messages in flight, written by the delivery callback, which librdkafka calls from
// rd_kafka_poll/rd_kafka_flush on the producing thread.
struct KafkaTestClient::Delivery {
  size_t acknowledged = 0;
  size_t failed = 0;
  std::string first_error;

  static void OnDelivery(rd_kafka_t* /*producer*/, const rd_kafka_message_t* message, void* opaque) {
    auto* delivery = static_cast<Delivery*>(opaque);
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++delivery->acknowledged;
      return;
    }
    if (delivery->failed++ == 0) {
      delivery->first_error = std::string(rd_kafka_topic_name(message->rkt)) + ": " + rd_kafka_err2name(message->err) +
                              " (" + rd_kafka_err2str(message->err) + ")";
    }
  }
};

KafkaTestClient::KafkaTestClient(std::string brokers)
    : brokers_(std::move(brokers)), delivery_(std::make_unique<Delivery>()) {
  if (brokers_.empty()) Fail("no broker address (ANALYTICS_TEST_KAFKA_BROKERS is empty)");
  ConfPtr conf = BaseConf(brokers_);
  Set(conf.get(), "acks", "all");
  Set(conf.get(), "linger.ms", "5");
  Set(conf.get(), "message.timeout.ms", std::to_string(kOperationTimeout.count()));
  // The Java client's partitioner, so keyed messages land where a Java producer would put them
  // (librdkafka's own default, consistent_random, hashes with CRC32).
  Set(conf.get(), "partitioner", "murmur2_random");
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &Delivery::OnDelivery);
  rd_kafka_conf_set_opaque(conf.get(), delivery_.get());
  char errstr[512];
  producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr, sizeof errstr);
  if (producer_ == nullptr) Fail(std::string("cannot create a producer: ") + errstr);
  conf.release();  // owned by the handle now
}

KafkaTestClient::~KafkaTestClient() {
  if (producer_ == nullptr) return;
  if (rd_kafka_flush(producer_, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::fprintf(stderr, "KafkaTestClient: %d message(s) still undelivered at destruction\n",
                 rd_kafka_outq_len(producer_));
  }
  rd_kafka_destroy(producer_);
}

void KafkaTestClient::CreateTopic(const std::string& topic, int partitions) {
  char errstr[512];
  rd_kafka_NewTopic_t* new_topic = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, errstr, sizeof errstr);
  if (new_topic == nullptr) Fail("create topic " + topic + ": " + errstr);
  QueuePtr queue(rd_kafka_queue_new(producer_));
  AdminOptionsPtr options = AdminOptions(producer_, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_CreateTopics(producer_, &new_topic, 1, options.get(), queue.get());
  rd_kafka_NewTopic_destroy(new_topic);
  EventPtr event = AwaitAdminResult(queue.get(), RD_KAFKA_EVENT_CREATETOPICS_RESULT, "create topic");
  size_t result_count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &result_count);
  for (size_t result_idx = 0; result_idx < result_count; ++result_idx) {
    CheckTopicResult(results[result_idx], RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, "create topic");
  }

  // The controller has the topic; wait until the broker serves every partition.
  auto deadline = Clock::now() + kOperationTimeout;
  while (!TopicReady(*AllTopicsMetadata(producer_), topic)) {
    if (Clock::now() >= deadline) Fail("topic " + topic + " has no leader for every partition after creation");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void KafkaTestClient::DeleteTopic(const std::string& topic) {
  rd_kafka_DeleteTopic_t* delete_topic = rd_kafka_DeleteTopic_new(topic.c_str());
  QueuePtr queue(rd_kafka_queue_new(producer_));
  AdminOptionsPtr options = AdminOptions(producer_, RD_KAFKA_ADMIN_OP_DELETETOPICS);
  rd_kafka_DeleteTopics(producer_, &delete_topic, 1, options.get(), queue.get());
  rd_kafka_DeleteTopic_destroy(delete_topic);
  EventPtr event = AwaitAdminResult(queue.get(), RD_KAFKA_EVENT_DELETETOPICS_RESULT, "delete topic");
  size_t result_count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event.get()), &result_count);
  for (size_t result_idx = 0; result_idx < result_count; ++result_idx) {
    CheckTopicResult(results[result_idx], RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "delete topic");
  }

  auto deadline = Clock::now() + kOperationTimeout;
  while (FindTopic(*AllTopicsMetadata(producer_), topic) != nullptr) {
    if (Clock::now() >= deadline) Fail("topic " + topic + " is still listed after deletion");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void KafkaTestClient::Produce(const std::string& topic, const std::string& key, const std::string& value,
                              const std::vector<std::pair<std::string, std::string>>& headers, int32_t partition) {
  KafkaTestMessage message;
  message.partition = partition;
  message.key = key;
  message.value = value;
  message.headers = headers;
  *delivery_ = Delivery{};
  ProduceOne(topic, message);
  FlushAndCheck(1);
}

void KafkaTestClient::ProduceMany(const std::string& topic, const std::vector<KafkaTestMessage>& messages) {
  *delivery_ = Delivery{};
  for (const KafkaTestMessage& message : messages) ProduceOne(topic, message);
  FlushAndCheck(messages.size());
}

void KafkaTestClient::ProduceOne(const std::string& topic, const KafkaTestMessage& message) {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(message.headers.size());
  for (const auto& [name, value] : message.headers) {
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  auto deadline = Clock::now() + kOperationTimeout;
  while (true) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(message.partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(message.key.empty() ? nullptr : message.key.data(), message.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(message.value.data()), message.value.size()),
        RD_KAFKA_V_TIMESTAMP(message.timestamp_ms), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // the headers belong to the message now
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && Clock::now() < deadline) {
      rd_kafka_poll(producer_, 50);  // serve delivery reports to make room
      continue;
    }
    rd_kafka_headers_destroy(headers);
    Fail("produce to " + topic + ": " + rd_kafka_err2name(err) + " (" + rd_kafka_err2str(err) + ")");
  }
}

void KafkaTestClient::FlushAndCheck(size_t expected) {
  rd_kafka_resp_err_t err = rd_kafka_flush(producer_, static_cast<int>(kOperationTimeout.count()) + 5000);
  if (delivery_->failed > 0) {
    Fail(std::to_string(delivery_->failed) + " of " + std::to_string(expected) +
         " message(s) were not delivered; first: " + delivery_->first_error);
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || delivery_->acknowledged != expected) {
    Fail(std::to_string(expected - delivery_->acknowledged) + " of " + std::to_string(expected) +
         " message(s) not acknowledged in time (" + rd_kafka_err2str(err) + ")");
  }
}

std::vector<KafkaTestMessage> KafkaTestClient::ReadAll(const std::string& topic, size_t at_least,
                                                       std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::vector<KafkaTestMessage> messages;
  int32_t partitions = 0;
  while ((partitions = PartitionCount(topic)) == 0) {
    if (Clock::now() >= deadline) return messages;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  ConsumerPtr consumer = NewConsumer(brokers_, "analytics-test-reader-" + common::NewUuid());
  PartitionListPtr assignment(rd_kafka_topic_partition_list_new(partitions));
  for (int32_t partition = 0; partition < partitions; ++partition) {
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(consumer.get(), assignment.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Fail("assign " + topic + ": " + rd_kafka_err2str(err));

  std::string last_error;
  while ((at_least == 0 || messages.size() < at_least) && Clock::now() < deadline) {
    MessagePtr message(rd_kafka_consumer_poll(consumer.get(), std::min(RemainingMs(deadline), 200)));
    if (!message) continue;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Transient (a leader moving, a topic still being created): librdkafka retries on its own. Remembered
      // for the report below when the read comes up short.
      last_error = rd_kafka_message_errstr(message.get());
      continue;
    }
    messages.push_back(ToTestMessage(*message));
  }
  if (messages.size() < at_least && !last_error.empty()) {
    std::fprintf(stderr, "KafkaTestClient: read %zu of %zu message(s) from %s; last consumer error: %s\n",
                 messages.size(), at_least, topic.c_str(), last_error.c_str());
  }
  std::stable_sort(messages.begin(), messages.end(), [](const KafkaTestMessage& a, const KafkaTestMessage& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return messages;
}

int64_t KafkaTestClient::CommittedOffset(const std::string& group, const std::string& topic, int32_t partition) {
  ConsumerPtr consumer = NewConsumer(brokers_, group);
  PartitionListPtr partitions(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(partitions.get(), topic.c_str(), partition);
  rd_kafka_resp_err_t err =
      rd_kafka_committed(consumer.get(), partitions.get(), static_cast<int>(kOperationTimeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Fail("committed offset of group " + group + ": " + rd_kafka_err2name(err) + " (" + rd_kafka_err2str(err) + ")");
  }
  const rd_kafka_topic_partition_t& entry = partitions->elems[0];
  if (entry.err != RD_KAFKA_RESP_ERR_NO_ERROR && entry.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    Fail("committed offset of group " + group + " on " + topic + "/" + std::to_string(partition) + ": " +
         rd_kafka_err2name(entry.err));
  }
  return entry.offset >= 0 ? entry.offset : -1;  // RD_KAFKA_OFFSET_INVALID: nothing committed
}

int32_t KafkaTestClient::PartitionCount(const std::string& topic) {
  MetadataPtr metadata = AllTopicsMetadata(producer_);
  const rd_kafka_metadata_topic_t* entry = FindTopic(*metadata, topic);
  return entry == nullptr ? 0 : entry->partition_cnt;
}

}  // namespace analytics::testing
