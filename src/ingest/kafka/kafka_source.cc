// The Kafka channel of intake; see kafka_source.h.
#include "ingest/kafka/kafka_source.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <optional>
#include <set>
#include <span>

#include "common/parallel.h"
#include "common/time_util.h"
#include "events/json_text.h"
#include "obs/logging.h"

namespace analytics::ingest {

using common::Result;
using common::Status;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kBinaryModeHeader = "ce_specversion";

bool IsJsonContentType(const std::string* content_type) {
  if (content_type == nullptr || content_type->empty()) return true;
  std::string type = content_type->substr(0, content_type->find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::tolower(c); });
  return type == "application/json" || type == "text/json" ||
         (type.size() > 5 && type.compare(type.size() - 5, 5, "+json") == 0);
}

using PartitionKey = std::pair<std::string, int32_t>;

}  // namespace

void AppendBinaryModeEvent(const kafka::Headers& headers, std::string_view value, std::string& out) {
  thread_local events::JsonBuffer json;
  json.Clear();
  json.Put('{');
  bool first = true;
  auto member = [&](std::string_view name) {
    if (!first) json.Put(',');
    first = false;
    json.AppendString(name);
    json.Put(':');
  };
  const std::string* content_type = nullptr;
  for (const auto& [name, header_value] : headers) {
    if (name == "content-type" || name == "Content-Type") content_type = &header_value;
    if (name.size() <= 3 || name.compare(0, 3, "ce_") != 0) continue;
    member(std::string_view(name).substr(3));
    json.AppendString(header_value);
  }
  if (content_type != nullptr) {
    member("datacontenttype");
    json.AppendString(*content_type);
  }
  if (!value.empty()) {
    member("data");
    if (IsJsonContentType(content_type)) {
      json.Append(value);
    } else {
      json.AppendString(value);
    }
  }
  json.Put('}');
  out.append(json.view());
}

// ---------------------------------------------------------------------------------------------------------------

struct KafkaSource::Impl {
  KafkaSourceOptions options;
  Intake& intake;
  kafka::Producer& dlq;
  std::set<std::string> excluded;
  // Our topics by handle (the polling thread's only): see IsExcluded.
  std::map<const rd_kafka_topic_t*, std::pair<std::string, bool>> excluded_by_handle;

  kafka::HandlePtr consumer;
  rd_kafka_queue_t* consumer_queue = nullptr;  // for its length (the prefetched messages)
  std::thread thread;   // polls: fills batches, serves rebalances, lag
  std::vector<std::thread> workers;  // store and dead-letter the handed batches; the first to finish retires them
  std::atomic<bool> stopping{false};
  // Set while partitions are being revoked: the worker finishes (or drops) what it has without retrying.
  std::atomic<bool> revoking{false};
  // When stopping or revoking started: a dead-letter topic that does not answer gets 5 s from then.
  std::atomic<Clock::time_point> urgent_since{Clock::time_point::max()};
  std::atomic<bool> paused{false};

  // A batch: consumed, not yet committed.
  struct Batch {
    enum class State { kQueued, kRunning, kStored, kDropped };
    std::vector<kafka::MessagePtr> messages;
    std::vector<bool> ours;   // per message: from our own produced or dead-letter topic (skipped, committed)
    size_t bytes = 0;
    Clock::time_point first_at;
    State state = State::kQueued;                   // guarded by work_mu once handed over
    bool ingested = false;                          // stage 1 done: durable in the store
    std::vector<kafka::OutgoingMessage> dead;       // stage 2: refused messages not yet acknowledged by the DLQ
    bool empty() const { return messages.empty(); }
  };
  // The batch being filled, and a filled one waiting for room: the polling thread's only (the rebalance
  // callback runs there too).
  Batch filling;
  std::unique_ptr<Batch> waiting;
  // Batches handed to the workers and not yet retired, in hand-over (= offset) order. Workers store them
  // concurrently; they are committed in this order only (Retire).
  std::mutex work_mu;
  std::condition_variable work_cv;
  std::deque<std::unique_ptr<Batch>> in_flight;  // guarded by work_mu
  bool worker_exit = false;                      // guarded by work_mu
  size_t max_in_flight = 0;
  // Commits one at a time, in order. Once a batch was dropped (stopping, revoking), no later batch may be
  // committed (that would skip the dropped one) until the partitions are assigned again.
  std::mutex commit_mu;
  bool poisoned = false;  // guarded by commit_mu
  std::mutex pause_mu;
  int failing = 0;        // batches being retried; guarded by pause_mu

  // Shared with Readiness (HTTP threads).
  mutable std::mutex mu;
  struct PartitionState {
    int64_t next_offset = -1;     // first offset not yet committed by us (-1: unknown)
    int64_t high_watermark = -1;
    prometheus::Gauge* lag_gauge = nullptr;
    std::optional<int64_t> Lag() const {
      if (high_watermark < 0 || next_offset < 0) return std::nullopt;
      return std::max<int64_t>(0, high_watermark - next_offset);
    }
  };
  std::map<PartitionKey, PartitionState> partitions;  // assigned; guarded by mu
  std::string last_error;                              // guarded by mu
  bool brokers_down = false;                           // guarded by mu
  bool fatal = false;                                  // guarded by mu

  // Metrics.
  prometheus::Family<prometheus::Gauge>& lag_family;
  prometheus::Family<prometheus::Counter>& messages_family;
  prometheus::Counter& accepted;
  prometheus::Counter& duplicates;
  prometheus::Counter& rejected;
  prometheus::Counter& skipped;
  prometheus::Counter& batches;
  prometheus::Counter& retries;
  prometheus::Counter& commit_errors;
  prometheus::Counter& rebalances;
  prometheus::Gauge& paused_gauge;
  prometheus::Histogram& batch_seconds;

  Impl(KafkaSourceOptions opts, Intake& in, kafka::Producer& producer, obs::MetricsRegistry& metrics)
      : options(std::move(opts)),
        intake(in),
        dlq(producer),
        excluded(options.excluded_topics.begin(), options.excluded_topics.end()),
        lag_family(prometheus::BuildGauge()
                       .Name("analytics_kafka_consumer_lag")
                       .Help("Messages in a partition after the last committed offset")
                       .Register(metrics.registry())),
        messages_family(prometheus::BuildCounter()
                            .Name("analytics_kafka_messages_total")
                            .Help("Kafka messages consumed, by outcome")
                            .Register(metrics.registry())),
        accepted(messages_family.Add({{"outcome", "accepted"}})),
        duplicates(messages_family.Add({{"outcome", "duplicate"}})),
        rejected(messages_family.Add({{"outcome", "dead_lettered"}})),
        skipped(messages_family.Add({{"outcome", "skipped"}})),
        batches(prometheus::BuildCounter()
                    .Name("analytics_kafka_batches_total")
                    .Help("Batches of Kafka messages made durable and committed")
                    .Register(metrics.registry())
                    .Add({})),
        retries(prometheus::BuildCounter()
                    .Name("analytics_kafka_batch_retries_total")
                    .Help("Attempts to store a batch that failed and were retried (consumption paused meanwhile)")
                    .Register(metrics.registry())
                    .Add({})),
        commit_errors(prometheus::BuildCounter()
                          .Name("analytics_kafka_commit_errors_total")
                          .Help("Offset commits the group coordinator refused")
                          .Register(metrics.registry())
                          .Add({})),
        rebalances(prometheus::BuildCounter()
                       .Name("analytics_kafka_rebalances_total")
                       .Help("Partition assignments and revocations")
                       .Register(metrics.registry())
                       .Add({})),
        paused_gauge(prometheus::BuildGauge()
                         .Name("analytics_kafka_consumer_paused")
                         .Help("1 while consumption is paused because the store or the dead-letter topic fails")
                         .Register(metrics.registry())
                         .Add({})),
        batch_seconds(prometheus::BuildHistogram()
                          .Name("analytics_kafka_batch_seconds")
                          .Help("Time from a batch's first message to its commit")
                          .Register(metrics.registry())
                          .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                            0.5, 1, 2.5, 5, 10})) {}

  void SetError(std::string error, bool all_brokers_down, bool is_fatal) {
    std::lock_guard lock(mu);
    last_error = std::move(error);
    if (all_brokers_down) brokers_down = true;
    if (is_fatal) fatal = true;
  }
  void BrokersReachable() {
    std::lock_guard lock(mu);
    brokers_down = false;
  }

  // --- polling thread -----------------------------------------------------------------------------------------

  void Run() {
    auto last_lag_update = Clock::now() - std::chrono::seconds(10);
    auto last_wake = Clock::now();
    while (!stopping) {
      FillBatch();
      if (!filling.empty() && (BatchFull() || Clock::now() - filling.first_at >=
                                                    std::chrono::milliseconds(options.max_batch_wait_ms))) {
        HandOver();
      }
      const auto now = Clock::now();
      if (now - last_wake >= std::chrono::milliseconds(50)) {
        WakeStalledFetchers();
        last_wake = now;
      }
      if (now - last_lag_update >= std::chrono::seconds(1)) {
        UpdateLag();
        last_lag_update = Clock::now();
      }
    }
    if (!filling.empty()) HandOver();
    WaitAllRetired();
    // Leaves the group: the revoke callback runs (nothing is in hand by now) and the coordinator reassigns at once.
    rd_kafka_consumer_close(consumer.get());
  }

  bool BatchFull() const {
    return filling.messages.size() >= options.max_batch_messages || filling.bytes >= options.max_batch_bytes;
  }

  // Polls until the batch is full or its wait is over (or, with nothing in hand, for up to 100 ms).
  void FillBatch() {
    bool flowing = false;  // the last poll returned a message: more are probably queued
    size_t polls = 0;
    while (!stopping && !BatchFull()) {
      int timeout_ms = 100;
      if (!filling.empty()) {
        // While messages flow, poll without waiting and read the clock every 64 messages only (a clock read per
        // message showed in profiles); otherwise wait for what is left of the batch's time.
        if (flowing && ++polls % 64 != 0) {
          timeout_ms = 0;
        } else {
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
              filling.first_at + std::chrono::milliseconds(options.max_batch_wait_ms) - Clock::now());
          if (left.count() <= 0) return;
          timeout_ms = static_cast<int>(left.count());
        }
      }
      kafka::MessagePtr message(rd_kafka_consumer_poll(consumer.get(), timeout_ms));
      flowing = message != nullptr;
      if (!message) {
        if (filling.empty()) return;  // idle: let the caller update the lag and check for stop
        continue;
      }
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          std::string text = kafka::ErrorText(message->err);
          if (message->rkt) text += " (topic " + std::string(rd_kafka_topic_name(message->rkt)) + ")";
          obs::LogWarn("kafka consumer error", {{"error", text}});
          SetError(text, false, false);
        }
        continue;
      }
      BrokersReachable();
      if (filling.empty()) filling.first_at = Clock::now();
      filling.bytes += message->len + message->key_len;
      filling.ours.push_back(IsExcluded(message->rkt));
      filling.messages.push_back(std::move(message));
    }
  }

  // Gives the filled batch to the workers once fewer than max_in_flight are in hand. While they retry a failed
  // batch (partitions paused) this keeps polling, so the group sees a live member and rebalances are served.
  void HandOver() {
    waiting = std::make_unique<Batch>(std::move(filling));
    filling = Batch();
    for (;;) {
      {
        std::unique_lock lock(work_mu);
        if (work_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return in_flight.size() < max_in_flight; })) {
          in_flight.push_back(std::move(waiting));
          work_cv.notify_all();
          return;
        }
      }
      if (stopping) continue;  // the workers drop what fails once stopping; room comes soon
      // Paused partitions deliver no messages; one from a partition assigned meanwhile is read again later.
      kafka::MessagePtr message(rd_kafka_consumer_poll(consumer.get(), 0));
      if (message && message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_seek(message->rkt, message->partition, message->offset, 1000);
      }
      if (!waiting) return;  // a revoke inside the poll finished it
    }
  }

  // Until every handed batch is retired (committed or dropped).
  void WaitAllRetired() {
    std::unique_lock lock(work_mu);
    work_cv.wait(lock, [&] { return in_flight.empty(); });
  }

  // librdkafka before 2.3 stops fetching a partition whose prefetch queue reached queued.min.messages or
  // queued.max.messages.kbytes and looks again only when its broker thread wakes up: after up to a second, or
  // when a request for that broker is queued (librdkafka issue #2879; 2.3 added fetch.queue.backoff.ms). When
  // the queue has drained while the partitions still have messages to fetch, one watermark query per such
  // partition wakes its broker's thread, which then resumes fetching at once; the answer also refreshes the lag.
  void WakeStalledFetchers() {
    if (consumer_queue == nullptr) return;
    const size_t queued = rd_kafka_queue_length(consumer_queue);
    if (queued > options.max_batch_messages) return;  // plenty prefetched: the fetchers are busy or will be
    std::vector<PartitionKey> behind;
    {
      std::lock_guard lock(mu);
      for (const auto& [key, state] : partitions) behind.push_back(key);
    }
    if (behind.empty()) return;
    kafka::PartitionListPtr positions(rd_kafka_topic_partition_list_new(static_cast<int>(behind.size())));
    for (const auto& key : behind) rd_kafka_topic_partition_list_add(positions.get(), key.first.c_str(), key.second);
    if (rd_kafka_position(consumer.get(), positions.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    for (int i = 0; i < positions->cnt && i < 16; ++i) {
      const auto& element = positions->elems[i];
      int64_t high = -1;
      int64_t low = -1;
      if (rd_kafka_get_watermark_offsets(consumer.get(), element.topic, element.partition, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          element.offset < 0 || high <= element.offset) {
        continue;  // nothing left to fetch (as far as the last fetch knew), or no position yet
      }
      if (rd_kafka_query_watermark_offsets(consumer.get(), element.topic, element.partition, &low, &high, 200) ==
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::lock_guard lock(mu);
        auto it = partitions.find({element.topic, element.partition});
        if (it != partitions.end()) it->second.high_watermark = high;
      }
    }
  }

  // --- worker thread ------------------------------------------------------------------------------------------

  void Work() {
    for (;;) {
      Batch* batch = nullptr;
      {
        std::unique_lock lock(work_mu);
        auto next_queued = [&] {
          for (auto& handed : in_flight) {
            if (handed->state == Batch::State::kQueued) return handed.get();
          }
          return static_cast<Batch*>(nullptr);
        };
        work_cv.wait(lock, [&] { return next_queued() != nullptr || worker_exit; });
        batch = next_queued();
        if (batch == nullptr) return;
        batch->state = Batch::State::kRunning;
      }
      const bool stored = ProcessBatch(*batch, /*allow_retry=*/true);
      Retire(*batch, stored);
    }
  }

  // Marks `batch` finished and commits the finished batches at the head of the line (in order; nothing after a
  // dropped one).
  void Retire(Batch& batch, bool stored) {
    {
      std::lock_guard lock(work_mu);
      batch.state = stored ? Batch::State::kStored : Batch::State::kDropped;
    }
    std::lock_guard commit_lock(commit_mu);
    std::vector<std::unique_ptr<Batch>> retired;
    {
      std::lock_guard lock(work_mu);
      while (!in_flight.empty() && (in_flight.front()->state == Batch::State::kStored ||
                                    in_flight.front()->state == Batch::State::kDropped)) {
        retired.push_back(std::move(in_flight.front()));
        in_flight.pop_front();
      }
    }
    std::vector<const Batch*> committed;
    for (const auto& done : retired) {
      if (done->state == Batch::State::kDropped) poisoned = true;
      if (!poisoned) committed.push_back(done.get());
    }
    CommitAndCount(committed);
    retired.clear();  // frees the messages before the polling thread adds more
    work_cv.notify_all();
  }

  // Commits `done` (stored batches, in order) and counts them. Call with commit_mu held.
  void CommitAndCount(const std::vector<const Batch*>& done) {
    if (done.empty()) return;
    Commit(done);
    const auto now = Clock::now();
    for (const Batch* batch : done) {
      batches.Increment();
      batch_seconds.Observe(std::chrono::duration<double>(now - batch->first_at).count());
    }
  }

  // Stages of a batch: ingest (durable) → dead letters acknowledged by the DLQ topic; true when both are done.
  // A failed stage is retried with backoff while the partitions are paused; finished stages are not repeated.
  // Without retries (stopping, revoking) a failed stage drops the batch uncommitted: whoever owns the
  // partitions next reads it again from the last commit.
  bool ProcessBatch(Batch& batch, bool allow_retry) {
    int backoff_ms = 100;
    bool counted_failing = false;
    bool stored = false;
    for (;;) {
      Status status = TryStages(batch);
      if (status.ok()) {
        stored = true;
        break;
      }
      retries.Increment();
      SetError(status.ToString(), false, false);
      obs::LogWarn("kafka batch not stored; retrying",
                   {{"error", status.ToString()}, {"messages", batch.messages.size()}, {"backoff_ms", backoff_ms}});
      if (!allow_retry || stopping || revoking) {
        obs::LogWarn("kafka batch dropped uncommitted; it is read again from the last commit",
                     {{"messages", batch.messages.size()}});
        break;
      }
      if (!counted_failing) {
        counted_failing = true;
        std::lock_guard lock(pause_mu);
        if (failing++ == 0) Pause(true);
      }
      {
        std::unique_lock lock(work_mu);
        work_cv.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping || revoking; });
      }
      backoff_ms = std::min(backoff_ms * 2, options.retry_max_backoff_ms);
    }
    if (counted_failing) {
      std::lock_guard lock(pause_mu);
      if (--failing == 0) Pause(false);
    }
    return stored;
  }

  Status TryStages(Batch& batch) {
    if (!batch.ingested) {
      ANALYTICS_RETURN_IF_ERROR(Ingest(batch));
      batch.ingested = true;
    }
    if (!batch.dead.empty()) {
      std::vector<Status> statuses = dlq.ProduceAndWait(batch.dead, [this] {
        return (stopping || revoking) && Clock::now() - urgent_since.load() > std::chrono::seconds(5);
      });
      std::vector<kafka::OutgoingMessage> left;
      Status first_error;
      for (size_t i = 0; i < statuses.size(); ++i) {
        if (statuses[i].ok()) continue;
        if (first_error.ok()) first_error = statuses[i];
        left.push_back(std::move(batch.dead[i]));
      }
      rejected.Increment(static_cast<double>(batch.dead.size() - left.size()));
      batch.dead = std::move(left);
      ANALYTICS_RETURN_IF_ERROR(first_error);
    }
    return Status::Ok();
  }

  // Whether the topic is one of ours (never ingested), remembered per topic handle: a set lookup per message
  // showed in profiles. The name is kept and compared too: a freed handle's address may come back for another
  // topic. Polling thread only (the workers read Batch::ours).
  bool IsExcluded(rd_kafka_topic_t* topic) {
    if (excluded.empty()) return false;
    const char* name = rd_kafka_topic_name(topic);
    auto it = excluded_by_handle.find(topic);
    if (it == excluded_by_handle.end() || it->second.first != name) {
      it = excluded_by_handle.insert_or_assign(topic, std::pair(std::string(name), excluded.count(name) != 0)).first;
    }
    return it->second.second;
  }

  // Stage 1: every message of the batch through intake, in one durable append.
  Status Ingest(Batch& batch) {
    std::string buffer;
    size_t total = 0;
    for (const auto& message : batch.messages) total += message->len + 1;
    buffer.reserve(total + total / 4 + 64);
    struct Span {
      uint32_t index;
      size_t offset;
      size_t size;
    };
    std::vector<Span> spans;
    spans.reserve(batch.messages.size());
    for (size_t i = 0; i < batch.messages.size(); ++i) {
      const rd_kafka_message_t* message = batch.messages[i].get();
      if (batch.ours[i]) {
        skipped.Increment();
        continue;
      }
      std::string_view value(static_cast<const char*>(message->payload), message->payload ? message->len : 0);
      const size_t offset = buffer.size();
      rd_kafka_headers_t* raw_headers = nullptr;
      const bool has_headers = rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(message), &raw_headers) ==
                               RD_KAFKA_RESP_ERR_NO_ERROR;
      const void* ignored = nullptr;
      size_t ignored_size = 0;
      if (has_headers && rd_kafka_header_get_last(raw_headers, kBinaryModeHeader.data(), &ignored, &ignored_size) ==
                             RD_KAFKA_RESP_ERR_NO_ERROR) {
        AppendBinaryModeEvent(kafka::ReadHeaders(message), value, buffer);
      } else {
        buffer.append(value);
      }
      spans.push_back({static_cast<uint32_t>(i), offset, buffer.size() - offset});
      buffer.push_back('\n');
    }
    std::vector<events::RawEvent> records;
    records.reserve(spans.size());
    for (const Span& span : spans) {
      records.push_back({span.index, span.offset, std::string_view(buffer).substr(span.offset, span.size)});
    }
    ANALYTICS_ASSIGN_OR_RETURN(IntakeReport report,
                               intake.IngestRecords(buffer, records, "kafka", common::NowMillis()));
    accepted.Increment(static_cast<double>(report.accepted));
    duplicates.Increment(static_cast<double>(report.duplicates));
    for (const RejectedEvent& refused : report.rejected) {
      if (refused.code == "USER_ERASED") continue;  // refused for privacy, not invalid: nothing to replay
      batch.dead.push_back(DeadLetterMessage(*batch.messages[refused.index], refused));
    }
    return Status::Ok();
  }

  kafka::OutgoingMessage DeadLetterMessage(const rd_kafka_message_t& message, const RejectedEvent& refused) const {
    kafka::OutgoingMessage out;
    out.topic = options.dlq_topic;
    if (message.key) out.key.assign(static_cast<const char*>(message.key), message.key_len);
    if (message.payload) out.value.assign(static_cast<const char*>(message.payload), message.len);
    out.headers = kafka::ReadHeaders(&message);
    out.headers.emplace_back(kDlqHeaderCode, refused.code);
    out.headers.emplace_back(kDlqHeaderField, refused.field);
    out.headers.emplace_back(kDlqHeaderMessage, refused.message);
    out.headers.emplace_back(kDlqHeaderTopic, rd_kafka_topic_name(message.rkt));
    out.headers.emplace_back(kDlqHeaderPartition, std::to_string(message.partition));
    out.headers.emplace_back(kDlqHeaderOffset, std::to_string(message.offset));
    out.headers.emplace_back(kDlqHeaderEventId, refused.id);
    out.headers.emplace_back(kDlqHeaderTime, common::FormatRfc3339Millis(common::NowMillis()));
    return out;
  }

  // The next offset of every partition in the batches, committed synchronously. A refused commit (the
  // partitions moved on) is not retried: the new owner reads those messages again and the store drops them
  // as duplicates.
  void Commit(const std::vector<const Batch*>& done) {
    std::map<PartitionKey, int64_t> next;
    for (const Batch* batch : done) {
      for (const auto& message : batch->messages) {
        int64_t& offset = next[{rd_kafka_topic_name(message->rkt), message->partition}];
        offset = std::max(offset, message->offset + 1);
      }
    }
    if (next.empty()) return;
    kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
    for (const auto& [key, offset] : next) {
      rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second)->offset = offset;
    }
    rd_kafka_resp_err_t error = rd_kafka_commit(consumer.get(), list.get(), /*async=*/0);
    if (error != RD_KAFKA_RESP_ERR_NO_ERROR) {
      commit_errors.Increment();
      obs::LogWarn("kafka offset commit refused", {{"error", kafka::ErrorText(error)}});
      SetError("commit: " + kafka::ErrorText(error), false, false);
      return;
    }
    std::lock_guard lock(mu);
    for (const auto& [key, offset] : next) {
      auto it = partitions.find(key);
      if (it != partitions.end()) it->second.next_offset = offset;
    }
  }

  void Pause(bool pause) {
    if (pause == paused) return;
    kafka::PartitionListPtr assignment;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(consumer.get(), &raw) == RD_KAFKA_RESP_ERR_NO_ERROR) assignment.reset(raw);
    if (assignment) {
      if (pause) {
        rd_kafka_pause_partitions(consumer.get(), assignment.get());
      } else {
        rd_kafka_resume_partitions(consumer.get(), assignment.get());
      }
    }
    paused = pause;
    paused_gauge.Set(pause ? 1 : 0);
  }

  // --- rebalances (on the polling thread, inside rd_kafka_consumer_poll) ------------------------------------

  void OnRebalance(rd_kafka_resp_err_t error, rd_kafka_topic_partition_list_t* list) {
    rebalances.Increment();
    if (error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      rd_kafka_assign(consumer.get(), list);
      {
        std::lock_guard lock(mu);
        for (int i = 0; i < list->cnt; ++i) {
          PartitionState& state = partitions[{list->elems[i].topic, list->elems[i].partition}];
          state.lag_gauge = &lag_family.Add(
              {{"topic", list->elems[i].topic}, {"partition", std::to_string(list->elems[i].partition)}});
        }
      }
      if (paused) rd_kafka_pause_partitions(consumer.get(), list);
      obs::LogInfo("kafka partitions assigned", {{"partitions", list->cnt}});
      return;
    }
    // Revoked (or lost): finish what is in hand while the offsets can still be committed. The worker finishes
    // (or, failing, drops) its batches without retrying; then the batch being filled goes the same way here.
    urgent_since = Clock::now();
    revoking = true;
    work_cv.notify_all();
    WaitAllRetired();
    {
      std::lock_guard commit_lock(commit_mu);
      for (Batch* left : {waiting.get(), &filling}) {
        if (left == nullptr || left->empty()) continue;
        const bool stored = ProcessBatch(*left, /*allow_retry=*/false);
        if (!stored) poisoned = true;
        if (!poisoned) CommitAndCount({left});
      }
      poisoned = false;  // the next owner starts from the committed offsets
    }
    waiting.reset();
    filling = Batch();
    revoking = false;
    if (!stopping) urgent_since = Clock::time_point::max();
    {
      std::lock_guard lock(mu);
      for (auto& [key, state] : partitions) {
        if (state.lag_gauge) lag_family.Remove(state.lag_gauge);
      }
      partitions.clear();
    }
    rd_kafka_assign(consumer.get(), nullptr);
    obs::LogInfo("kafka partitions revoked", {{"partitions", list->cnt}, {"reason", rd_kafka_err2name(error)}});
  }

  // Lag = the partition's high watermark (as last fetched) minus our next offset.
  void UpdateLag() {
    std::vector<PartitionKey> unknown;
    {
      std::lock_guard lock(mu);
      for (auto& [key, state] : partitions) {
        int64_t low = -1;
        int64_t high = -1;
        if (rd_kafka_get_watermark_offsets(consumer.get(), key.first.c_str(), key.second, &low, &high) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            high >= 0) {
          state.high_watermark = high;
        }
        if (state.next_offset < 0) unknown.push_back(key);
      }
    }
    if (!unknown.empty()) {
      // Before our first commit: the group's committed offset (one request for all such partitions).
      kafka::PartitionListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(unknown.size())));
      for (const auto& key : unknown) rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second);
      if (rd_kafka_committed(consumer.get(), list.get(), 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        BrokersReachable();
        std::lock_guard lock(mu);
        for (int i = 0; i < list->cnt; ++i) {
          auto it = partitions.find({list->elems[i].topic, list->elems[i].partition});
          if (it == partitions.end()) continue;
          int64_t offset = list->elems[i].offset;
          if (offset < 0) {  // nothing committed yet: everything from the low watermark is lag
            int64_t low = -1;
            int64_t high = -1;
            if (rd_kafka_get_watermark_offsets(consumer.get(), list->elems[i].topic, list->elems[i].partition, &low,
                                               &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                low >= 0) {
              offset = low;
            }
          }
          if (offset >= 0) it->second.next_offset = offset;
        }
      }
    }
    bool check_brokers = false;
    {
      std::lock_guard lock(mu);
      for (auto& [key, state] : partitions) {
        if (state.lag_gauge && state.Lag()) {
          state.lag_gauge->Set(static_cast<double>(*state.Lag()));
        }
      }
      check_brokers = brokers_down;
    }
    if (check_brokers) {
      const rd_kafka_metadata_t* metadata = nullptr;
      if (rd_kafka_metadata(consumer.get(), 0, nullptr, &metadata, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(metadata);
        BrokersReachable();
      }
    }
  }
};

namespace {

void OnRebalanceCallback(rd_kafka_t* /*handle*/, rd_kafka_resp_err_t error, rd_kafka_topic_partition_list_t* list,
                         void* opaque) {
  static_cast<KafkaSource::Impl*>(opaque)->OnRebalance(error, list);
}

void OnErrorCallback(rd_kafka_t* handle, int error, const char* reason, void* opaque) {
  auto* impl = static_cast<KafkaSource::Impl*>(opaque);
  auto code = static_cast<rd_kafka_resp_err_t>(error);
  bool fatal = false;
  std::string text = kafka::ErrorText(code) + ": " + reason;
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char fatal_reason[512];
    code = rd_kafka_fatal_error(handle, fatal_reason, sizeof(fatal_reason));
    text = "fatal: " + kafka::ErrorText(code) + ": " + fatal_reason;
    fatal = true;
  }
  obs::LogWarn("kafka client error", {{"error", text}});
  impl->SetError(text, code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, fatal);
}

}  // namespace

Result<std::unique_ptr<KafkaSource>> KafkaSource::Start(KafkaSourceOptions options, Intake& intake,
                                                        kafka::Producer& dlq, obs::MetricsRegistry& metrics) {
  if (options.topics.empty() && options.topics_regex.empty()) {
    return Status::InvalidArgument("no topic to consume: set kafka.topics or kafka.topics_regex", "kafka.topics");
  }
  if (!options.topics_regex.empty() && options.topics_regex.front() != '^') {
    return Status::InvalidArgument("a topic regex must start with '^' (librdkafka's rule)", "kafka.topics_regex");
  }
  auto impl = std::make_unique<Impl>(std::move(options), intake, dlq, metrics);
  const KafkaSourceOptions& o = impl->options;
  std::map<std::string, std::string> defaults = {
      {"group.id", o.group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", o.auto_offset_reset},
      {"session.timeout.ms", std::to_string(o.session_timeout_ms)},
      {"heartbeat.interval.ms", std::to_string(std::max(100, o.session_timeout_ms / 4))},
      {"queued.max.messages.kbytes", std::to_string(o.queued_max_kbytes)},
      {"enable.partition.eof", "false"},
      {"topic.metadata.refresh.interval.ms", "10000"},  // new topics matching the regex are picked up within 10 s
  };
  if (!o.group_instance_id.empty()) defaults["group.instance.id"] = o.group_instance_id;
  ANALYTICS_ASSIGN_OR_RETURN(kafka::ConfPtr conf, kafka::MakeConf(o.client, defaults));
  rd_kafka_conf_set_opaque(conf.get(), impl.get());
  rd_kafka_conf_set_rebalance_cb(conf.get(), OnRebalanceCallback);
  rd_kafka_conf_set_error_cb(conf.get(), OnErrorCallback);
  char error[512];
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), error, sizeof(error));
  if (handle == nullptr) return Status::InvalidArgument(std::string("kafka consumer: ") + error, "kafka.brokers");
  conf.release();
  impl->consumer.reset(handle);
  rd_kafka_poll_set_consumer(handle);

  std::vector<std::string> subscription = o.topics;
  if (!o.topics_regex.empty()) subscription.push_back(o.topics_regex);
  kafka::PartitionListPtr topics(rd_kafka_topic_partition_list_new(static_cast<int>(subscription.size())));
  for (const auto& topic : subscription) {
    rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (rd_kafka_resp_err_t err = rd_kafka_subscribe(handle, topics.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::InvalidArgument("kafka subscribe failed: " + kafka::ErrorText(err), "kafka.topics");
  }
  Impl* raw = impl.get();
  raw->consumer_queue = rd_kafka_queue_get_consumer(handle);
  const size_t workers = o.workers > 0 ? o.workers : 2 * common::QueryThreads(0);
  raw->max_in_flight = workers + 1;
  for (size_t i = 0; i < workers; ++i) raw->workers.emplace_back([raw] { raw->Work(); });
  raw->thread = std::thread([raw] { raw->Run(); });
  obs::LogInfo("kafka consumer started",
               {{"group_id", o.group_id}, {"topics", nlohmann::json(subscription)}, {"dlq_topic", o.dlq_topic}});
  return std::unique_ptr<KafkaSource>(new KafkaSource(std::move(impl)));
}

KafkaSource::KafkaSource(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaSource::~KafkaSource() { Stop(); }

void KafkaSource::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->urgent_since = Clock::now();
  impl_->stopping = true;
  impl_->work_cv.notify_all();
  impl_->thread.join();  // hands over the last batch, waits for the worker, leaves the group
  {
    std::lock_guard lock(impl_->work_mu);
    impl_->worker_exit = true;
  }
  impl_->work_cv.notify_all();
  for (auto& worker : impl_->workers) worker.join();
  if (impl_->consumer_queue) rd_kafka_queue_destroy(impl_->consumer_queue);
  impl_->consumer_queue = nullptr;
}

Status KafkaSource::Readiness(nlohmann::json& details) const {
  std::lock_guard lock(impl_->mu);
  details["group_id"] = impl_->options.group_id;
  details["paused"] = impl_->paused.load();
  nlohmann::json partitions = nlohmann::json::array();
  int64_t total_lag = 0;
  for (const auto& [key, state] : impl_->partitions) {
    nlohmann::json item = {{"topic", key.first}, {"partition", key.second}};
    const std::optional<int64_t> lag = state.Lag();
    item["lag"] = lag ? nlohmann::json(*lag) : nlohmann::json(nullptr);
    total_lag += lag.value_or(0);
    partitions.push_back(std::move(item));
  }
  details["partitions"] = std::move(partitions);
  details["lag"] = total_lag;
  if (!impl_->last_error.empty()) details["last_error"] = impl_->last_error;
  if (impl_->fatal) return Status::Unavailable("kafka consumer failed: " + impl_->last_error);
  if (impl_->brokers_down) return Status::Unavailable("no kafka broker reachable");
  return Status::Ok();
}

}  // namespace analytics::ingest
