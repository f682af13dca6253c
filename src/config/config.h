// Typed configuration of the service, loaded from configs/config.yaml (compiled in as the defaults) plus an
// optional config file, with ${VAR:"default"} environment expansion.
//
// The compiled-in configs/config.yaml is also the schema: a key it does not have is unknown. Every value is
// checked for its type and range here, so a wrong config stops start-up with one message naming the key.
// Only src/app reads this; components receive plain option structs built from it.
// Thread-safety: plain values; the loader is a pure function of its inputs and the environment.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace analytics::config {

struct ApiServerConfig {
  std::string host = "0.0.0.0";
  int port = 8081;
  int io_threads = 0;               // 0: number of cores
  int handler_threads = 0;          // 0: twice the number of cores (handlers wait for WAL syncs)
  uint64_t max_body_bytes = 10 << 20;
  uint64_t max_header_bytes = 16384;
  int request_timeout_seconds = 30;
  int keep_alive_timeout_seconds = 75;
  int shutdown_grace_seconds = 20;
};

struct StorageConfig {
  std::string data_dir = "./data";
  int64_t demo_events = 0;  // generated events loaded once into an empty store (make run)
};

struct IngestConfig {
  int64_t max_future_seconds = 3600;
  bool strict_types = false;
  uint64_t max_event_bytes = 262144;
  uint64_t max_decompressed_bytes = 100 << 20;
  int dedup_window_days = 7;
  int dead_letter_retention_days = 7;
};

struct EventStoreConfig {
  bool sync = true;
  uint64_t memtable_max_events = 1000000;
  uint64_t memtable_max_mb = 256;
  int flush_interval_seconds = 10;
  int append_wait_seconds = 30;
  int zstd_level = 3;
  int retention_days = 0;  // 0: keep forever
  uint64_t dedup_max_mb = 512;
  uint64_t compaction_min_segments = 4;
  uint64_t compaction_max_rows = 1000000;
  int maintenance_interval_seconds = 30;
  int erasure_purge_delay_seconds = 300;
  uint64_t query_cache_mb = 256;
};

struct PrivacyConfig {
  std::string pseudonym_key_file;
  int k_anonymity = 5;  // developers see only groups of at least k users
};

struct AuthConfig {
  std::string jwt_secret;   // HS256; empty: generated into <data_dir>/jwt-secret
  std::string jwks_file;    // RS256/ES256 public keys
  std::string issuer;       // checked when set
  std::string audience;     // checked when set
  int leeway_seconds = 30;
};

struct PostgresMetadataConfig {
  std::string dsn;  // empty: SQLite in the data dir
  int pool_size = 4;
};

struct ClickhouseConfig {
  std::string dsn;
};

struct S3Config {
  std::string endpoint;
  std::string access_key;
  std::string secret_key;
  std::string bucket_lake;
  std::string bucket_reports;
  std::string bucket_mlflow;
  std::string region;
};

struct KafkaConfig {
  std::string brokers;             // empty: no Kafka (no consumer, the outbox is not relayed)
  std::string group_id;
  std::string group_instance_id;   // static group membership: a restarted replica keeps its partitions
  std::string topics;              // comma-separated exact topic names, consumed besides topics_regex
  std::string topics_regex;        // librdkafka regex (starts with '^'); empty: only `topics`
  std::string produced_topic;
  std::string dlq_topic;
  std::string auto_offset_reset = "earliest";  // where a group without a committed offset starts
  int session_timeout_ms = 10000;  // a dead member's partitions move after this
  int max_batch_events = 5000;     // messages per durable append (batches are stored concurrently)
  int max_batch_wait_ms = 50;      // a batch waits at most this long to fill
};

struct ReportsConfig {
  int workers = 2;                  // reports generated at the same time
  int retention_days = 30;          // files and instances older than this are deleted
  int schedule_catch_up_hours = 24; // a scheduled run missed while stopped still runs if this recent
};

struct LoggingConfig {
  std::string level = "info";
};

struct TracingConfig {
  std::string jaeger_endpoint;
  std::string service_name;
};

struct Config {
  ApiServerConfig api_server;
  StorageConfig storage;
  IngestConfig ingest;
  EventStoreConfig event_store;
  PrivacyConfig privacy;
  AuthConfig auth;
  PostgresMetadataConfig postgres_metadata;
  ClickhouseConfig clickhouse;
  S3Config s3;
  KafkaConfig kafka;
  ReportsConfig reports;
  std::string spark_master_url;
  std::string flink_master_url;
  std::string mlflow_tracking_uri;
  LoggingConfig logging;
  TracingConfig tracing;
  std::string source;  // where the config came from, for the start-up log
};

// Reads an environment variable; returns nullopt when unset. Injected so tests control the environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup ProcessEnv();

// Expands ${VAR} and ${VAR:"default"} in `text`. Inside the default, \" and \\ are escapes. InvalidArgument
// on malformed references (unterminated ${, bad variable name).
common::Result<std::string> ExpandEnv(std::string_view text, const EnvLookup& env);

// Loads the configuration: the compiled-in defaults, overlaid with the file at `path` when given (a missing
// or unreadable file is an error). InvalidArgument whose field() is the dotted key (e.g. "api_server.port").
common::Result<Config> LoadConfig(const std::optional<std::string>& path, const EnvLookup& env);

// Same, with explicit default YAML text (tests).
common::Result<Config> LoadConfigFromText(std::string_view defaults_yaml, const std::optional<std::string>& user_yaml,
                                          const EnvLookup& env);

// The compiled-in configs/config.yaml.
std::string_view DefaultConfigYaml();

}  // namespace analytics::config
