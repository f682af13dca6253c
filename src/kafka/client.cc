// Kafka client basics; see client.h.
#include "kafka/client.h"

namespace analytics::kafka {

using common::Result;
using common::Status;

Result<ConfPtr> MakeConf(const ClientOptions& options, const std::map<std::string, std::string>& defaults) {
  ConfPtr conf(rd_kafka_conf_new());
  char error[512];
  auto set = [&](const std::string& name, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), error, sizeof(error)) != RD_KAFKA_CONF_OK) {
      return Status::InvalidArgument(std::string("librdkafka refused the property: ") + error, "kafka." + name);
    }
    return Status::Ok();
  };
  ANALYTICS_RETURN_IF_ERROR(set("bootstrap.servers", options.brokers));
  ANALYTICS_RETURN_IF_ERROR(set("client.id", options.client_id));
  for (const auto& [name, value] : defaults) {
    if (options.properties.count(name) == 0) ANALYTICS_RETURN_IF_ERROR(set(name, value));
  }
  for (const auto& [name, value] : options.properties) ANALYTICS_RETURN_IF_ERROR(set(name, value));
  return conf;
}

Headers ReadHeaders(const rd_kafka_message_t* message) {
  Headers out;
  rd_kafka_headers_t* headers = nullptr;
  // rd_kafka_message_headers takes a non-const message but does not change what the caller sees.
  if (rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(message), &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      headers == nullptr) {
    return out;
  }
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    out.emplace_back(name, value ? std::string(static_cast<const char*>(value), size) : std::string());
  }
  return out;
}

const std::string* FindHeader(const Headers& headers, std::string_view name) {
  const std::string* found = nullptr;
  for (const auto& [header, value] : headers) {
    if (header == name) found = &value;
  }
  return found;
}

rd_kafka_headers_t* MakeHeaders(const Headers& headers) {
  rd_kafka_headers_t* out = rd_kafka_headers_new(headers.size());
  for (const auto& [name, value] : headers) {
    rd_kafka_header_add(out, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  return out;
}

std::string ErrorText(rd_kafka_resp_err_t error) {
  return std::string("librdkafka: ") + rd_kafka_err2name(error) + ": " + rd_kafka_err2str(error);
}

}  // namespace analytics::kafka
