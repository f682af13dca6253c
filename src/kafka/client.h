// Kafka client basics shared by the consumer (src/ingest/kafka/) and the producer users (outbox relay, dead-letter
// topic): librdkafka configuration from our options, owning handles, message headers.
// Thread-safety: plain functions and values; librdkafka handles are thread-safe where librdkafka says so.
#pragma once

#include <librdkafka/rdkafka.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace analytics::kafka {

// Message headers in order; names may repeat (Kafka allows it).
using Headers = std::vector<std::pair<std::string, std::string>>;

struct ClientOptions {
  std::string brokers;                           // bootstrap.servers, "host:port,host:port"
  std::string client_id = "analytics-service";   // client.id
  // Further librdkafka properties (security.protocol, sasl.*, ...). They override the component's defaults.
  std::map<std::string, std::string> properties;
};

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* handle) const { rd_kafka_destroy(handle); }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

// A configuration with bootstrap.servers, client.id, then `defaults`, then options.properties (so a deployment
// can override any default). InvalidArgument names the property librdkafka refused.
common::Result<ConfPtr> MakeConf(const ClientOptions& options, const std::map<std::string, std::string>& defaults);

// The headers of a consumed message (empty values for null header values).
Headers ReadHeaders(const rd_kafka_message_t* message);
// The value of the last header called `name`, or nullptr.
const std::string* FindHeader(const Headers& headers, std::string_view name);

// A librdkafka header list (the caller owns it until rd_kafka_producev takes it).
rd_kafka_headers_t* MakeHeaders(const Headers& headers);

// "librdkafka: <name>: <description>".
std::string ErrorText(rd_kafka_resp_err_t error);

}  // namespace analytics::kafka
