// Configuration loading: YAML parse, environment expansion, overlay, typed validation.
#include "config/config.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace analytics::config {
namespace {

using common::Result;
using common::Status;

bool IsEnvNameChar(char c, bool first) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || (!first && c >= '0' && c <= '9');
}

// Flattens a two-level YAML document (section: {key: scalar}) into "section.key" -> scalar text.
// Top-level scalars are allowed too ("key" -> scalar).
Status Flatten(const YAML::Node& root, std::string_view origin, std::map<std::string, std::string>& out) {
  if (!root || root.IsNull()) return Status::Ok();
  if (!root.IsMap()) return Status::InvalidArgument(std::string(origin) + ": the top level must be a mapping", "");
  for (const auto& section : root) {
    const std::string section_name = section.first.as<std::string>();
    const YAML::Node& value = section.second;
    if (value.IsMap()) {
      for (const auto& entry : value) {
        const std::string key = section_name + "." + entry.first.as<std::string>();
        if (!entry.second.IsScalar() && !entry.second.IsNull()) {
          return Status::InvalidArgument("expected a scalar value", key);
        }
        out[key] = entry.second.IsNull() ? "" : entry.second.Scalar();
      }
    } else if (value.IsNull()) {
      // A section whose keys are all commented out: an empty mapping. Recorded with a trailing dot so the
      // overlay can tell a known section (some default key starts with "name.") from an unknown one.
      out[section_name + "."] = "";
    } else if (value.IsScalar()) {
      out[section_name] = value.Scalar();
    } else {
      return Status::InvalidArgument("expected a mapping", section_name);
    }
  }
  return Status::Ok();
}

Result<YAML::Node> ParseYaml(std::string_view text, std::string_view origin) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(std::string(origin) + " is not valid YAML: " + e.what(), "");
  }
}

// "auto" query cache: an eighth of the machine's memory, from 64 MB to 8 GB.
uint64_t AutoQueryCacheMb() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 256;
  const uint64_t mb = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 8 >> 20;
  return std::clamp<uint64_t>(mb, 64, 8192);
}

class Reader {
 public:
  explicit Reader(const std::map<std::string, std::string>& values) : values_(values) {}

  Status String(const std::string& key, std::string& out) {
    auto it = values_.find(key);
    if (it == values_.end()) return Status::Internal("config key missing from defaults: " + key);
    out = it->second;
    return Status::Ok();
  }

  template <typename Int>
  Status Integer(const std::string& key, Int& out, int64_t min, int64_t max) {
    std::string text;
    ANALYTICS_RETURN_IF_ERROR(String(key, text));
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value < min || value > max) {
      return Status::InvalidArgument("expected an integer from " + std::to_string(min) + " to " +
                                         std::to_string(max) + ", got '" + text + "'",
                                     key);
    }
    out = static_cast<Int>(value);
    return Status::Ok();
  }

  Status Bool(const std::string& key, bool& out) {
    std::string text;
    ANALYTICS_RETURN_IF_ERROR(String(key, text));
    if (text == "true") {
      out = true;
    } else if (text == "false") {
      out = false;
    } else {
      return Status::InvalidArgument("expected true or false, got '" + text + "'", key);
    }
    return Status::Ok();
  }

 private:
  const std::map<std::string, std::string>& values_;
};

Status CheckPostgresDsn(const std::string& dsn, const std::string& key) {
  if (dsn.empty()) return Status::Ok();
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "unparseable connection string";
    if (error != nullptr) PQfreemem(error);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    return Status::InvalidArgument("not a PostgreSQL DSN: " + message, key);
  }
  PQconninfoFree(options);
  return Status::Ok();
}

bool HasScheme(const std::string& url, std::initializer_list<std::string_view> schemes) {
  for (auto scheme : schemes) {
    if (url.rfind(scheme, 0) == 0 && url.size() > scheme.size()) return true;
  }
  return false;
}

Status CheckUrl(const std::string& value, const std::string& key, std::initializer_list<std::string_view> schemes,
                std::string_view example) {
  if (value.empty() || HasScheme(value, schemes)) return Status::Ok();
  return Status::InvalidArgument("not a valid URL (e.g. " + std::string(example) + "): '" + value + "'", key);
}

Status CheckBrokers(const std::string& brokers, const std::string& key) {
  if (brokers.empty()) return Status::Ok();
  std::stringstream stream(brokers);
  std::string broker;
  while (std::getline(stream, broker, ',')) {
    auto colon = broker.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        std::from_chars(broker.data() + colon + 1, broker.data() + broker.size(), port).ptr !=
            broker.data() + broker.size() ||
        port < 1 || port > 65535) {
      return Status::InvalidArgument("expected a comma-separated list of host:port, got '" + brokers + "'", key);
    }
  }
  return Status::Ok();
}

Result<Config> BuildConfig(const std::map<std::string, std::string>& values) {
  Config config;
  Reader reader(values);
  auto& api = config.api_server;
  ANALYTICS_RETURN_IF_ERROR(reader.String("api_server.host", api.host));
  if (api.host.empty()) return Status::InvalidArgument("must not be empty", "api_server.host");
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.port", api.port, 0, 65535));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.io_threads", api.io_threads, 0, 256));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.handler_threads", api.handler_threads, 0, 1024));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.max_body_bytes", api.max_body_bytes, 1024, int64_t{1} << 32));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.max_header_bytes", api.max_header_bytes, 1024, 1 << 20));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.request_timeout_seconds", api.request_timeout_seconds, 1, 3600));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("api_server.keep_alive_timeout_seconds", api.keep_alive_timeout_seconds, 1, 3600));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("api_server.shutdown_grace_seconds", api.shutdown_grace_seconds, 0, 3600));

  ANALYTICS_RETURN_IF_ERROR(reader.String("storage.data_dir", config.storage.data_dir));
  if (config.storage.data_dir.empty()) return Status::InvalidArgument("must not be empty", "storage.data_dir");
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("storage.demo_events", config.storage.demo_events, 0, 100000000));

  auto& ingest = config.ingest;
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("ingest.max_future_seconds", ingest.max_future_seconds, 0, 366 * 86400));
  ANALYTICS_RETURN_IF_ERROR(reader.Bool("ingest.strict_types", ingest.strict_types));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("ingest.max_event_bytes", ingest.max_event_bytes, 1024, 64 << 20));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("ingest.max_decompressed_bytes", ingest.max_decompressed_bytes, 1024, int64_t{1} << 34));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("ingest.dedup_window_days", ingest.dedup_window_days, 0, 366));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("ingest.dead_letter_retention_days", ingest.dead_letter_retention_days, 1, 3650));
  auto& event_store = config.event_store;
  ANALYTICS_RETURN_IF_ERROR(reader.Bool("event_store.sync", event_store.sync));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("event_store.memtable_max_events", event_store.memtable_max_events, 1000, 100000000));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("event_store.flush_interval_seconds", event_store.flush_interval_seconds, 1, 86400));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.zstd_level", event_store.zstd_level, 1, 19));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.memtable_max_mb", event_store.memtable_max_mb, 1, 1 << 20));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("event_store.append_wait_seconds", event_store.append_wait_seconds, 1, 3600));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.retention_days", event_store.retention_days, 0, 36500));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.dedup_max_mb", event_store.dedup_max_mb, 1, 1 << 20));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("event_store.compaction_min_segments", event_store.compaction_min_segments, 2, 1000));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("event_store.compaction_max_rows", event_store.compaction_max_rows, 1000, 1000000000));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.maintenance_interval_seconds",
                                           event_store.maintenance_interval_seconds, 1, 86400));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("event_store.erasure_purge_delay_seconds",
                                           event_store.erasure_purge_delay_seconds, 0, 30 * 86400));
  ANALYTICS_RETURN_IF_ERROR(reader.String("privacy.pseudonym_key_file", config.privacy.pseudonym_key_file));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("privacy.k_anonymity", config.privacy.k_anonymity, 1, 1000));
  {
    std::string text;
    ANALYTICS_RETURN_IF_ERROR(reader.String("event_store.query_cache_mb", text));
    if (text == "auto") {
      config.event_store.query_cache_mb = AutoQueryCacheMb();
    } else {
      ANALYTICS_RETURN_IF_ERROR(
          reader.Integer("event_store.query_cache_mb", config.event_store.query_cache_mb, 0, 1 << 20));
    }
  }
  if (config.privacy.pseudonym_key_file.empty()) {
    return Status::InvalidArgument("must not be empty", "privacy.pseudonym_key_file");
  }

  auto& auth = config.auth;
  ANALYTICS_RETURN_IF_ERROR(reader.String("auth.jwt_secret", auth.jwt_secret));
  if (!auth.jwt_secret.empty() && auth.jwt_secret.size() < 32) {
    return Status::InvalidArgument("an HS256 secret must be at least 32 bytes", "auth.jwt_secret");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.String("auth.jwks_file", auth.jwks_file));
  ANALYTICS_RETURN_IF_ERROR(reader.String("auth.issuer", auth.issuer));
  ANALYTICS_RETURN_IF_ERROR(reader.String("auth.audience", auth.audience));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("auth.leeway_seconds", auth.leeway_seconds, 0, 3600));

  ANALYTICS_RETURN_IF_ERROR(reader.String("postgres_metadata.dsn", config.postgres_metadata.dsn));
  ANALYTICS_RETURN_IF_ERROR(CheckPostgresDsn(config.postgres_metadata.dsn, "postgres_metadata.dsn"));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("postgres_metadata.pool_size", config.postgres_metadata.pool_size, 1, 256));

  ANALYTICS_RETURN_IF_ERROR(reader.String("clickhouse_dwh.dsn", config.clickhouse.dsn));
  ANALYTICS_RETURN_IF_ERROR(CheckUrl(config.clickhouse.dsn, "clickhouse_dwh.dsn",
                                     {"clickhouse://", "http://", "https://", "tcp://"},
                                     "http://user:password@127.0.0.1:8123/analytics"));

  auto& s3 = config.s3;
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("reports.workers", config.reports.workers, 1, 64));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("reports.retention_days", config.reports.retention_days, 1, 3650));
  ANALYTICS_RETURN_IF_ERROR(
      reader.Integer("reports.schedule_catch_up_hours", config.reports.schedule_catch_up_hours, 0, 24 * 31));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.endpoint", s3.endpoint));
  ANALYTICS_RETURN_IF_ERROR(CheckUrl(s3.endpoint, "s3_config.endpoint", {"http://", "https://"}, "http://127.0.0.1:9000"));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.access_key", s3.access_key));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.secret_key", s3.secret_key));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.bucket_lake", s3.bucket_lake));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.bucket_reports", s3.bucket_reports));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.bucket_mlflow", s3.bucket_mlflow));
  ANALYTICS_RETURN_IF_ERROR(reader.String("s3_config.region", s3.region));
  if (!s3.endpoint.empty() && (s3.access_key.empty() || s3.secret_key.empty())) {
    return Status::InvalidArgument("is required when s3_config.endpoint is set",
                                   s3.access_key.empty() ? "s3_config.access_key" : "s3_config.secret_key");
  }

  auto& kafka = config.kafka;
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.brokers", kafka.brokers));
  ANALYTICS_RETURN_IF_ERROR(CheckBrokers(kafka.brokers, "kafka.brokers"));
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.group_id", kafka.group_id));
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.group_instance_id", kafka.group_instance_id));
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.topics", kafka.topics));
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.topics_regex", kafka.topics_regex));
  if (kafka.topics.empty() && kafka.topics_regex.empty()) kafka.topics_regex = R"(^com\.platform\..*\.events\.v1$)";
  if (!kafka.topics_regex.empty() && kafka.topics_regex.front() != '^') {
    return Status::InvalidArgument("a topic regex must start with '^'", "kafka.topics_regex");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.produced_topic", kafka.produced_topic));
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.dlq_topic", kafka.dlq_topic));
  if (!kafka.brokers.empty()) {
    if (kafka.group_id.empty()) return Status::InvalidArgument("is required with kafka.brokers", "kafka.group_id");
    if (kafka.produced_topic.empty()) {
      return Status::InvalidArgument("is required with kafka.brokers", "kafka.produced_topic");
    }
    if (kafka.dlq_topic.empty()) return Status::InvalidArgument("is required with kafka.brokers", "kafka.dlq_topic");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.String("kafka.auto_offset_reset", kafka.auto_offset_reset));
  if (kafka.auto_offset_reset != "earliest" && kafka.auto_offset_reset != "latest") {
    return Status::InvalidArgument("expected earliest or latest, got '" + kafka.auto_offset_reset + "'",
                                   "kafka.auto_offset_reset");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("kafka.session_timeout_ms", kafka.session_timeout_ms, 1000, 3600000));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("kafka.max_batch_events", kafka.max_batch_events, 1, 1000000));
  ANALYTICS_RETURN_IF_ERROR(reader.Integer("kafka.max_batch_wait_ms", kafka.max_batch_wait_ms, 0, 60000));

  ANALYTICS_RETURN_IF_ERROR(reader.String("spark.master_url", config.spark_master_url));
  ANALYTICS_RETURN_IF_ERROR(reader.String("flink.master_url", config.flink_master_url));
  ANALYTICS_RETURN_IF_ERROR(reader.String("mlflow.tracking_uri", config.mlflow_tracking_uri));
  ANALYTICS_RETURN_IF_ERROR(CheckUrl(config.mlflow_tracking_uri, "mlflow.tracking_uri", {"http://", "https://", "file:"},
                                     "http://127.0.0.1:5000"));

  ANALYTICS_RETURN_IF_ERROR(reader.String("logging.level", config.logging.level));
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!kLevels.count(config.logging.level)) {
    return Status::InvalidArgument(
        "expected one of trace, debug, info, warn, error, critical, off, got '" + config.logging.level + "'",
        "logging.level");
  }
  ANALYTICS_RETURN_IF_ERROR(reader.String("tracing.jaeger_endpoint", config.tracing.jaeger_endpoint));
  ANALYTICS_RETURN_IF_ERROR(CheckUrl(config.tracing.jaeger_endpoint, "tracing.jaeger_endpoint", {"http://", "https://"},
                                     "http://127.0.0.1:14268/api/traces"));
  ANALYTICS_RETURN_IF_ERROR(reader.String("tracing.service_name", config.tracing.service_name));
  return config;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

Result<std::string> ExpandEnv(std::string_view text, const EnvLookup& env) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = text.find("${", pos);
    if (start == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, start - pos));
    size_t cursor = start + 2;
    size_t name_start = cursor;
    while (cursor < text.size() && IsEnvNameChar(text[cursor], cursor == name_start)) ++cursor;
    std::string name(text.substr(name_start, cursor - name_start));
    if (name.empty()) return Status::InvalidArgument("bad environment reference in '" + std::string(text) + "'", "");
    std::optional<std::string> fallback;
    if (cursor < text.size() && text[cursor] == ':') {
      ++cursor;
      if (cursor >= text.size() || text[cursor] != '"') {
        return Status::InvalidArgument("a default must be double-quoted: ${" + name + ":\"value\"}", "");
      }
      ++cursor;
      std::string value;
      bool closed = false;
      while (cursor < text.size()) {
        char c = text[cursor++];
        if (c == '\\' && cursor < text.size()) {
          value.push_back(text[cursor++]);
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value.push_back(c);
        }
      }
      if (!closed) return Status::InvalidArgument("unterminated default for ${" + name + "}", "");
      fallback = std::move(value);
    }
    if (cursor >= text.size() || text[cursor] != '}') {
      return Status::InvalidArgument("unterminated environment reference ${" + name, "");
    }
    ++cursor;
    std::optional<std::string> value = env(name);
    if (value && !value->empty()) {
      out.append(*value);
    } else if (fallback) {
      out.append(*fallback);
    }
    pos = cursor;
  }
  return out;
}

Result<Config> LoadConfigFromText(std::string_view defaults_yaml, const std::optional<std::string>& user_yaml,
                                  const EnvLookup& env) {
  std::map<std::string, std::string> raw_defaults;
  ANALYTICS_ASSIGN_OR_RETURN(YAML::Node defaults, ParseYaml(defaults_yaml, "built-in defaults"));
  ANALYTICS_RETURN_IF_ERROR(Flatten(defaults, "built-in defaults", raw_defaults));
  std::map<std::string, std::string> values = raw_defaults;
  if (user_yaml) {
    std::map<std::string, std::string> overrides;
    ANALYTICS_ASSIGN_OR_RETURN(YAML::Node user, ParseYaml(*user_yaml, "the config file"));
    ANALYTICS_RETURN_IF_ERROR(Flatten(user, "the config file", overrides));
    for (auto& [key, value] : overrides) {
      if (!key.empty() && key.back() == '.') {
        auto known = raw_defaults.lower_bound(key);
        if (known == raw_defaults.end() || known->first.rfind(key, 0) != 0) {
          return Status::InvalidArgument("unknown config section", key.substr(0, key.size() - 1));
        }
        continue;
      }
      if (!raw_defaults.count(key)) return Status::InvalidArgument("unknown config key", key);
      values[key] = std::move(value);
    }
  }
  for (auto& [key, value] : values) {
    auto expanded = ExpandEnv(value, env);
    if (!expanded.ok()) return Status::InvalidArgument(expanded.status().message(), key);
    value = std::move(expanded).value();
  }
  return BuildConfig(values);
}

Result<Config> LoadConfig(const std::optional<std::string>& path, const EnvLookup& env) {
  std::optional<std::string> user_yaml;
  if (path) {
    std::ifstream file(*path, std::ios::binary);
    if (!file) return Status::InvalidArgument("cannot read config file '" + *path + "'", "--config");
    std::stringstream buffer;
    buffer << file.rdbuf();
    user_yaml = buffer.str();
  }
  ANALYTICS_ASSIGN_OR_RETURN(Config config, LoadConfigFromText(DefaultConfigYaml(), user_yaml, env));
  config.source = path ? *path : "built-in defaults (configs/config.yaml)";
  return config;
}

}  // namespace analytics::config
