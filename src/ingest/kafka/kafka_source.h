// KafkaSource: the Kafka channel of intake. One consumer-group member (librdkafka) subscribed to the configured
// topics (names and/or a regex), taking CloudEvents in structured mode (the value is the event's JSON) and in
// binary mode (`ce_*` headers, the value is `data`) through the same Intake as HTTP bodies.
//
// Delivery: at least once into the store, exactly once after dedup. A batch of messages is made durable
// (Intake::IngestRecords returns only after the store's fsync), its refused messages are acknowledged by the
// dead-letter topic, and only then are the offsets committed. A crash replays from the last commit and the
// store drops the replayed events as duplicates. When partitions are revoked the batch in hand is finished and
// committed first, so a rebalance neither loses nor repeats events.
// Pipelining: a polling thread fills batches while worker threads store and dead-letter earlier ones
// concurrently (as HTTP handler threads do; their appends share the WAL's fsyncs); finished batches are
// committed strictly in hand-over order, and never past a batch that was dropped.
// Backpressure: at most workers + 2 batches in hand (being filled, waiting, being stored; each bounded by
// messages and bytes) plus librdkafka's bounded prefetch; while the store or the dead-letter topic fails, the partitions
// are paused and the batch retried with backoff. librdkafka 2.0 (Debian 12) leaves a partition whose prefetch
// queue filled up unfetched for up to a second; the polling thread wakes its fetcher when the queue has drained
// (see WakeStalledFetchers).
// Thread-safety: Start/Stop from one thread; Readiness from any thread. Consumption runs on its own threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "ingest/intake.h"
#include "kafka/client.h"
#include "kafka/producer.h"
#include "obs/metrics.h"

namespace analytics::ingest {

struct KafkaSourceOptions {
  kafka::ClientOptions client;
  std::string group_id = "analytics-service";
  std::string group_instance_id;              // static membership: a restarted member keeps its partitions
  std::vector<std::string> topics;            // exact topic names
  std::string topics_regex;                   // e.g. ^com\.platform\..*\.events\.v1$ (librdkafka regex)
  std::vector<std::string> excluded_topics;   // matched by the regex but never ingested (our own topics)
  std::string dlq_topic = "com.platform.analytics.dlq.v1";
  size_t max_batch_messages = 5000;
  size_t max_batch_bytes = size_t{32} << 20;
  int max_batch_wait_ms = 50;                 // a batch is handed to intake at most this long after its first message
  int session_timeout_ms = 10000;
  int queued_max_kbytes = 32768;              // librdkafka's prefetch bound (queued.max.messages.kbytes)
  std::string auto_offset_reset = "earliest"; // where a group without a committed offset starts
  size_t workers = 0;                         // batches stored concurrently (committed in order); 0 = 2 x cores
  int retry_max_backoff_ms = 5000;
};

class KafkaSource {
 public:
  // Creates the consumer, subscribes and starts the consumption thread. `dlq` publishes refused messages.
  static common::Result<std::unique_ptr<KafkaSource>> Start(KafkaSourceOptions options, Intake& intake,
                                                            kafka::Producer& dlq, obs::MetricsRegistry& metrics);
  ~KafkaSource();
  // Finishes and commits the batch in hand (when the store takes it), leaves the group, joins the thread.
  void Stop();

  // /readyz: Unavailable when no broker is reachable or the consumer failed fatally; details carry the group,
  // the assigned partitions with their lag, whether consumption is paused, the last error.
  common::Status Readiness(nlohmann::json& details) const;

  struct Impl;

 private:
  explicit KafkaSource(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The headers a dead-lettered message carries besides its own (docs/kafka.md).
inline constexpr char kDlqHeaderCode[] = "analytics_dlq_code";
inline constexpr char kDlqHeaderField[] = "analytics_dlq_field";
inline constexpr char kDlqHeaderMessage[] = "analytics_dlq_reason";
inline constexpr char kDlqHeaderTopic[] = "analytics_dlq_source_topic";
inline constexpr char kDlqHeaderPartition[] = "analytics_dlq_source_partition";
inline constexpr char kDlqHeaderOffset[] = "analytics_dlq_source_offset";
inline constexpr char kDlqHeaderEventId[] = "analytics_dlq_event_id";
inline constexpr char kDlqHeaderTime[] = "analytics_dlq_time";

// Builds the structured-mode JSON of a binary-mode message (ce_* headers + value) into `out` (appended).
// Exposed for tests. `content_type` is the message's content-type header (nullptr when absent): JSON types
// (application/json, */*+json, none) put the value in `data` as JSON text; other types as a JSON string.
void AppendBinaryModeEvent(const kafka::Headers& headers, std::string_view value, std::string& out);

}  // namespace analytics::ingest
