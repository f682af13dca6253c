// A Kafka client for integration and e2e tests, on librdkafka's C API: topics created and deleted through the
// admin API, messages produced with acks=all and waited for, topics read from the beginning without a consumer
// group, committed offsets of a group. The broker is the one scripts/run-tests starts (scripts/servers/kafka)
// and names in ANALYTICS_TEST_KAFKA_BROKERS; a missing variable fails the test, it never skips.
//
// Errors (an unreachable broker, a failed delivery, an admin request the broker refused) throw
// std::runtime_error with the broker's message, so GoogleTest reports them as failures of the running test.
//
// Thread-safety: a KafkaTestClient is used by one thread at a time. Several clients may run in parallel.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct rd_kafka_s;

namespace analytics::testing {

// The test broker's bootstrap address (ANALYTICS_TEST_KAFKA_BROKERS, "127.0.0.1:PORT"). When the variable is
// not set the calling test fails and this throws: the tests must run through scripts/run-tests.
std::string KafkaBrokers();

// A topic name no other test uses: `prefix` (letters, digits, '.', '_', '-'), a dash and a UUID.
std::string UniqueTopic(std::string_view prefix);

struct KafkaTestMessage {
  std::string topic;
  // Producing: the partition, or -1 to choose by key (murmur2, as the Java client does). Read: where it was.
  int32_t partition = -1;
  int64_t offset = 0;  // read only
  std::string key;    // empty = no key (null): produced without one, and a null key reads back as ""
  std::string value;  // a null value (tombstone) reads back as ""
  std::vector<std::pair<std::string, std::string>> headers;  // in order; names may repeat
  // Producing: the record's timestamp, 0 for "now" (the producer's clock). Read: the record's timestamp.
  int64_t timestamp_ms = 0;
};

class KafkaTestClient {
 public:
  // Connects lazily: the constructor only configures the producer (acks=all). Throws on a bad configuration.
  explicit KafkaTestClient(std::string brokers = KafkaBrokers());
  ~KafkaTestClient();
  KafkaTestClient(const KafkaTestClient&) = delete;
  KafkaTestClient& operator=(const KafkaTestClient&) = delete;

  const std::string& brokers() const { return brokers_; }

  // Creates `topic` with `partitions` partitions (replication factor 1) and returns once the broker's
  // metadata shows every partition with a leader. An existing topic is fine (its partition count is not
  // checked or changed).
  void CreateTopic(const std::string& topic, int partitions);

  // Deletes `topic` and returns once the broker's metadata no longer lists it. A missing topic is fine.
  void DeleteTopic(const std::string& topic);

  // Produces one message and waits until the broker acknowledged it (acks=all). `partition` -1 = by key.
  void Produce(const std::string& topic, const std::string& key, const std::string& value,
               const std::vector<std::pair<std::string, std::string>>& headers = {}, int32_t partition = -1);

  // Produces every message to `topic` (their own `topic` is ignored) in one batch, then waits for all
  // acknowledgements; throws if any failed.
  void ProduceMany(const std::string& topic, const std::vector<KafkaTestMessage>& messages);

  // Reads `topic` from the beginning of every partition until `at_least` messages were read or `timeout`
  // passed, and returns what it read, ordered by partition and offset. The reader assigns itself the
  // partitions under a throwaway group id: it joins no group and commits nothing. A topic that does not exist
  // yet is waited for within the same timeout (an empty result if it never appears). With `at_least` 0 it
  // reads for the whole timeout (to check that nothing more arrives).
  std::vector<KafkaTestMessage> ReadAll(const std::string& topic, size_t at_least, std::chrono::milliseconds timeout);

  // The offset `group` committed for topic/partition (the next offset it will read), -1 when it committed none.
  int64_t CommittedOffset(const std::string& group, const std::string& topic, int32_t partition);

  // The number of partitions of `topic` in the broker's metadata, 0 when the topic does not exist.
  int32_t PartitionCount(const std::string& topic);

 private:
  struct Delivery;

  void ProduceOne(const std::string& topic, const KafkaTestMessage& message);
  void FlushAndCheck(size_t expected);

  std::string brokers_;
  rd_kafka_s* producer_ = nullptr;  // also the handle of the admin requests and the metadata queries
  std::unique_ptr<Delivery> delivery_;  // delivery reports of the current Produce/ProduceMany
};

}  // namespace analytics::testing
