// The Kafka test client (tests/support/kafka_test_client.h) against the real broker scripts/run-tests starts
// (scripts/servers/kafka): topics, keyed messages with headers read back unchanged, partition counts and
// committed offsets. Without ANALYTICS_TEST_KAFKA_BROKERS every test fails; none is skipped.
#include "support/kafka_test_client.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace analytics::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(KafkaTestClientTest, KeyedMessagesWithHeadersReadBackUnchanged) {
  KafkaTestClient client;
  const std::string topic = UniqueTopic("kafka-test-client");
  client.CreateTopic(topic, 3);
  EXPECT_EQ(client.PartitionCount(topic), 3);

  constexpr int kMessages = 1000;
  std::vector<KafkaTestMessage> sent;
  for (int message_idx = 0; message_idx < kMessages; ++message_idx) {
    KafkaTestMessage message;
    message.key = "user-" + std::to_string(message_idx % 37);
    message.value = R"({"seq":)" + std::to_string(message_idx) + "}";
    message.headers = {{"ce_type", "com.platform.test.v1"},
                       {"ce_id", "id-" + std::to_string(message_idx)},
                       {"ce_type", "repeated names stay in order"}};
    sent.push_back(std::move(message));
  }
  client.ProduceMany(topic, sent);

  std::vector<KafkaTestMessage> read = client.ReadAll(topic, kMessages, seconds(60));
  ASSERT_EQ(read.size(), sent.size());

  std::map<std::string, const KafkaTestMessage*> sent_by_value;
  for (const KafkaTestMessage& message : sent) sent_by_value[message.value] = &message;
  std::map<std::string, int32_t> partition_of_key;
  std::set<int32_t> partitions_used;
  std::map<int32_t, int64_t> last_offset;
  for (const KafkaTestMessage& message : read) {
    auto it = sent_by_value.find(message.value);
    ASSERT_NE(it, sent_by_value.end()) << "unexpected value " << message.value;
    const KafkaTestMessage& original = *it->second;
    EXPECT_EQ(message.topic, topic);
    EXPECT_EQ(message.key, original.key);
    EXPECT_EQ(message.headers, original.headers);
    EXPECT_GT(message.timestamp_ms, 0);
    // A key always lands on one partition; the result is ordered by partition and offset.
    auto key_it = partition_of_key.emplace(message.key, message.partition).first;
    EXPECT_EQ(key_it->second, message.partition) << message.key;
    if (last_offset.count(message.partition) != 0) {
      EXPECT_GT(message.offset, last_offset[message.partition]);
    }
    last_offset[message.partition] = message.offset;
    partitions_used.insert(message.partition);
    sent_by_value.erase(it);  // each value once
  }
  EXPECT_TRUE(sent_by_value.empty());
  EXPECT_EQ(partitions_used, (std::set<int32_t>{0, 1, 2}));

  client.DeleteTopic(topic);
  EXPECT_EQ(client.PartitionCount(topic), 0);
}

TEST(KafkaTestClientTest, ProduceToAPartitionAndReadWithTimestamp) {
  KafkaTestClient client;
  const std::string topic = UniqueTopic("kafka-test-client");
  client.CreateTopic(topic, 2);
  client.CreateTopic(topic, 2);  // already there: fine

  client.Produce(topic, "k", "to partition one", {{"h", "v"}}, 1);
  KafkaTestMessage dated;
  dated.partition = 0;
  dated.value = "dated, no key";
  dated.timestamp_ms = 1700000000123;
  client.ProduceMany(topic, {dated});

  std::vector<KafkaTestMessage> read = client.ReadAll(topic, 2, seconds(30));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].partition, 0);
  EXPECT_EQ(read[0].offset, 0);
  EXPECT_EQ(read[0].key, "");
  EXPECT_EQ(read[0].value, "dated, no key");
  EXPECT_EQ(read[0].timestamp_ms, 1700000000123);
  EXPECT_TRUE(read[0].headers.empty());
  EXPECT_EQ(read[1].partition, 1);
  EXPECT_EQ(read[1].key, "k");
  EXPECT_EQ(read[1].value, "to partition one");
  EXPECT_EQ(read[1].headers, (std::vector<std::pair<std::string, std::string>>{{"h", "v"}}));

  // Nothing more arrives: reading with at_least 0 waits out the timeout and returns the same two.
  EXPECT_EQ(client.ReadAll(topic, 0, seconds(3)).size(), 2u);
  client.DeleteTopic(topic);
}

TEST(KafkaTestClientTest, UnknownGroupHasNoCommittedOffset) {
  KafkaTestClient client;
  const std::string topic = UniqueTopic("kafka-test-client");
  client.CreateTopic(topic, 1);
  EXPECT_EQ(client.CommittedOffset(UniqueTopic("unknown-group"), topic, 0), -1);
  client.DeleteTopic(topic);
}

TEST(KafkaTestClientTest, CommittedOffsetOfAGroupIsWhatItCommitted) {
  KafkaTestClient client;
  const std::string topic = UniqueTopic("kafka-test-client");
  const std::string group = UniqueTopic("committing-group");
  client.CreateTopic(topic, 2);

  // A plain librdkafka consumer of the group commits offset 42 on partition 1 (no subscription needed).
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", client.brokers().c_str(), errstr, sizeof errstr),
            RD_KAFKA_CONF_OK);
  ASSERT_EQ(rd_kafka_conf_set(conf, "group.id", group.c_str(), errstr, sizeof errstr), RD_KAFKA_CONF_OK);
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  ASSERT_NE(consumer, nullptr) << errstr;
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(offsets, topic.c_str(), 1)->offset = 42;
  rd_kafka_resp_err_t err = rd_kafka_commit(consumer, offsets, /*async=*/0);
  rd_kafka_topic_partition_list_destroy(offsets);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);

  EXPECT_EQ(client.CommittedOffset(group, topic, 1), 42);
  EXPECT_EQ(client.CommittedOffset(group, topic, 0), -1);
  client.DeleteTopic(topic);
}

TEST(KafkaTestClientTest, MissingTopicIsEmpty) {
  KafkaTestClient client;
  const std::string topic = UniqueTopic("kafka-test-client-missing");
  EXPECT_EQ(client.PartitionCount(topic), 0);
  EXPECT_TRUE(client.ReadAll(topic, 1, milliseconds(300)).empty());
  client.DeleteTopic(topic);  // a missing topic is fine
}

TEST(KafkaTestClientTest, UniqueTopicNamesAreLegalAndDistinct) {
  std::string first = UniqueTopic("orders v1/raw");
  std::string second = UniqueTopic("orders v1/raw");
  EXPECT_NE(first, second);
  EXPECT_EQ(first.rfind("orders_v1_raw-", 0), 0u) << first;
  EXPECT_TRUE(std::all_of(first.begin(), first.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  })) << first;
}

}  // namespace
}  // namespace analytics::testing
