// Composition root.
#include "app/application.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "api/api_pipeline.h"
#include "api/handlers/analysis.h"
#include "api/handlers/events.h"
#include "api/handlers/metric_definitions.h"
#include "api/handlers/metric_values.h"
#include "api/handlers/reports.h"
#include "api/handlers/segments.h"
#include "api/handlers/system.h"
#include "api/http_server.h"
#include "api/router.h"
#include "auth/jwt_verifier.h"
#include "analysis/funnels.h"
#include "blob/local/local_object_store.h"
#include "bus/kafka/outbox_relay.h"
#include "bus/outbox/outbox_event_bus.h"
#include "jobs/pipeline_runner.h"
#include "reports/report_service.h"
#include "segments/segment_service.h"
#include "common/time_util.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "ingest/intake.h"
#include "ingest/kafka/kafka_source.h"
#include "kafka/producer.h"
#include "store/embedded/embedded_event_store.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "metrics/metric_catalog.h"
#include "metrics/metric_values.h"
#include "gen/generator.h"
#include "obs/logging.h"
#include "obs/metrics.h"

namespace analytics::app {

using common::Result;
using common::Status;

namespace {

// `configured`, or the number of cores times `per_core` when it is 0.
int ThreadsOr(int configured, int per_core = 1) {
  if (configured > 0) return configured;
  return per_core * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::IOError("cannot read '" + path + "'");
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// Demo data (`storage.demo_events`, set by `make run`): generated platform events ending today, ingested once
// through intake (validation, pseudonymization) into an empty store, with a progress line per tenth.
Status LoadDemoData(const config::Config& config, store::EventStore& store, ingest::Intake& intake) {
  const int64_t wanted = config.storage.demo_events;
  const std::filesystem::path marker = std::filesystem::path(config.storage.data_dir) / "demo-loaded";
  if (wanted <= 0 || std::filesystem::exists(marker) || store.NewestEventMs() != INT64_MIN) return Status::Ok();
  const auto started = std::chrono::steady_clock::now();
  gen::GeneratorOptions options;
  options.days = 28;
  options.users = std::max<int64_t>(100, wanted / 56);  // about 2 events per user and day
  options.seed = 42;
  const int64_t now_ms = common::NowMillis();
  options.start_date = common::FormatRfc3339Millis(now_ms - int64_t{options.days - 1} * 86400000).substr(0, 10);
  obs::LogInfo("loading demo data", {{"events_wanted", wanted}, {"users", options.users}, {"days", options.days},
                                     {"start_date", options.start_date}});
  std::string body;
  uint64_t lines = 0, accepted = 0, next_report = static_cast<uint64_t>(wanted) / 10;
  Status failure;
  auto flush = [&] {
    if (body.empty() || !failure.ok()) return;
    auto report = intake.Ingest(body, events::BodyFormat::kNdjson, "demo", common::NowMillis());
    if (!report.ok()) {
      failure = report.status();
    } else {
      accepted += report->accepted;
    }
    body.clear();
  };
  gen::Generate(options, [&](std::string_view line) {
    // Events timed after now (the rest of today) would be refused as future events: skip them.
    if (const size_t at = line.find("\"time\":\""); at != std::string_view::npos) {
      const size_t begin = at + 8;
      const size_t end = line.find('"', begin);
      auto time = common::ParseRfc3339Millis(line.substr(begin, end == std::string_view::npos ? 0 : end - begin));
      if (time.ok() && *time > now_ms) return;
    }
    body.append(line);
    body.push_back('\n');
    if (++lines % 5000 == 0) flush();
    if (lines >= next_report) {
      obs::LogInfo("demo data progress", {{"events", lines}});
      next_report += static_cast<uint64_t>(wanted) / 10;
    }
  });
  flush();
  ANALYTICS_RETURN_IF_ERROR(failure);
  std::ofstream(marker) << "generated demo events loaded: " << accepted << "\n";
  obs::LogInfo("demo data loaded",
               {{"events", accepted}, {"generated", lines},
                {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()}});
  return Status::Ok();
}

}  // namespace

Result<std::string> LoadOrCreateSecretFile(const std::string& path) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return Status::IOError("cannot create '" + parent.string() + "': " + ec.message());
  if (std::filesystem::exists(path)) {
    ANALYTICS_ASSIGN_OR_RETURN(std::string secret, ReadFile(path));
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.size() < 32) return Status::Corruption("'" + path + "' holds a secret shorter than 32 bytes");
    return secret;
  }
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return Status::Internal("no randomness for a secret");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string secret;
  for (unsigned char byte : bytes) {
    secret.push_back(kHex[byte >> 4]);
    secret.push_back(kHex[byte & 15]);
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) return Status::IOError("cannot write '" + tmp + "'");
    file << secret << "\n";
  }
  ::chmod(tmp.c_str(), 0600);
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot create '" + path + "': " + ec.message());
  return secret;
}

Result<std::string> ResolveJwtSecret(const config::Config& config) {
  if (!config.auth.jwt_secret.empty()) return config.auth.jwt_secret;
  return LoadOrCreateSecretFile((std::filesystem::path(config.storage.data_dir) / "jwt-secret").string());
}

struct Application::State {
  obs::MetricsRegistry metrics;
  std::unique_ptr<obs::HttpMetrics> http_metrics;
  std::unique_ptr<metadata::MetadataStore> metadata;
  std::unique_ptr<metrics::MetricCatalog> catalog;
  std::unique_ptr<metrics::MetricValues> metric_values;
  std::unique_ptr<events::Pseudonymizer> pseudonymizer;
  std::unique_ptr<events::Normalizer> normalizer;
  std::unique_ptr<store::EventStore> event_store;
  std::unique_ptr<ingest::Intake> intake;
  std::unique_ptr<bus::OutboxEventBus> bus;
  prometheus::Gauge* outbox_pending = nullptr;  // analytics_outbox_pending, counted at every scrape
  std::unique_ptr<jobs::PipelineRunner> runner;
  std::unique_ptr<segments::SegmentService> segments;
  std::unique_ptr<blob::ObjectStore> report_files;
  std::unique_ptr<jobs::PipelineRunner> report_runner;  // reports never wait behind refreshes, nor the reverse
  std::unique_ptr<reports::ReportService> reports;
  // Kafka (when kafka.brokers is set): one producer for the outbox relay and the dead-letter topic.
  std::unique_ptr<kafka::Producer> kafka_producer;
  std::unique_ptr<bus::OutboxRelay> outbox_relay;
  std::unique_ptr<ingest::KafkaSource> kafka_source;
  std::thread housekeeping;
  std::mutex housekeeping_mu;
  std::condition_variable housekeeping_cv;
  bool stopping = false;
  std::unique_ptr<auth::JwtVerifier> verifier;
  api::Router router;
  std::unique_ptr<api::ApiPipeline> pipeline;
  std::unique_ptr<api::HttpServer> server;
};

Application::Application(config::Config config) : config_(std::move(config)), state_(std::make_unique<State>()) {}

Application::~Application() { Stop(); }

Status Application::Start() {
  State& s = *state_;
  std::error_code ec;
  std::filesystem::create_directories(config_.storage.data_dir, ec);
  if (ec) return Status::IOError("cannot create data dir '" + config_.storage.data_dir + "': " + ec.message());

  // Metadata: PostgreSQL when configured, else SQLite in the data dir.
  if (!config_.postgres_metadata.dsn.empty()) {
    metadata::PostgresMetadataOptions options;
    options.dsn = config_.postgres_metadata.dsn;
    options.pool_size = config_.postgres_metadata.pool_size;
    ANALYTICS_ASSIGN_OR_RETURN(s.metadata, metadata::OpenPostgresMetadataStore(options));
  } else {
    metadata::SqliteMetadataOptions options;
    options.path = (std::filesystem::path(config_.storage.data_dir) / "metadata.db").string();
    ANALYTICS_ASSIGN_OR_RETURN(s.metadata, metadata::OpenSqliteMetadataStore(options));
  }
  s.catalog = std::make_unique<metrics::MetricCatalog>(*s.metadata);
  ANALYTICS_ASSIGN_OR_RETURN(int seeded, s.catalog->SeedBuiltins(common::NowMillis()));

  // Privacy: the pseudonym key is held apart from the data dir.
  {
    ANALYTICS_ASSIGN_OR_RETURN(std::string key_text, LoadOrCreateSecretFile(config_.privacy.pseudonym_key_file));
    auto key = events::DecodeSecretKey(key_text);
    if (!key.ok()) return Status::InvalidArgument(key.status().message(), "privacy.pseudonym_key_file");
    ANALYTICS_ASSIGN_OR_RETURN(s.pseudonymizer, events::Pseudonymizer::Create(*key));
  }
  events::NormalizerOptions normalizer_options;
  normalizer_options.max_future_ms = config_.ingest.max_future_seconds * 1000;
  normalizer_options.strict_types = config_.ingest.strict_types;
  normalizer_options.max_event_bytes = config_.ingest.max_event_bytes;
  s.normalizer = std::make_unique<events::Normalizer>(normalizer_options, *s.pseudonymizer);

  // Events: the embedded store in the data dir.
  {
    store::EmbeddedEventStoreOptions options;
    options.dir = (std::filesystem::path(config_.storage.data_dir) / "events").string();
    options.sync = config_.event_store.sync;
    options.memtable_max_events = config_.event_store.memtable_max_events;
    options.flush_interval_ms = int64_t{config_.event_store.flush_interval_seconds} * 1000;
    options.dedup_window_ms = int64_t{config_.ingest.dedup_window_days} * 86400000;
    options.zstd_level = config_.event_store.zstd_level;
    options.memtable_max_bytes = config_.event_store.memtable_max_mb << 20;
    options.append_wait_ms = int64_t{config_.event_store.append_wait_seconds} * 1000;
    options.retention_days = config_.event_store.retention_days;
    options.dedup_max_bytes = config_.event_store.dedup_max_mb << 20;
    options.compaction.min_segments = config_.event_store.compaction_min_segments;
    options.compaction.max_rows = config_.event_store.compaction_max_rows;
    options.maintenance_interval_ms = int64_t{config_.event_store.maintenance_interval_seconds} * 1000;
    options.purge_delay_ms = int64_t{config_.event_store.erasure_purge_delay_seconds} * 1000;
    options.query_cache_bytes = config_.event_store.query_cache_mb << 20;
    ANALYTICS_ASSIGN_OR_RETURN(auto embedded, store::EmbeddedEventStore::Open(options));
    obs::LogInfo("event store recovered", embedded->recovery_report());
    s.event_store = std::move(embedded);
  }
  // Produced events (segment.updated, report.generated, ...) go to the durable outbox in the metadata store (GET
  // /outbox); with Kafka configured a relay delivers them, and the purge keeps what it has not delivered yet.
  bus::OutboxEventBusOptions outbox_options;
  outbox_options.retention_ms = int64_t{7} * 86400000;
  outbox_options.only_relayed = !config_.kafka.brokers.empty();
  if (!config_.kafka.produced_topic.empty()) outbox_options.topic = config_.kafka.produced_topic;
  s.bus = std::make_unique<bus::OutboxEventBus>(*s.metadata, std::move(outbox_options));
  s.outbox_pending = &prometheus::BuildGauge()
                          .Name("analytics_outbox_pending")
                          .Help("Outbox records not yet relayed to Kafka (without Kafka: every retained record)")
                          .Register(s.metrics.registry())
                          .Add({});
  // One indexed count per scrape (the partial index of unrelayed records).
  s.metrics.AddCollectHook([bus = s.bus.get(), gauge = s.outbox_pending] {
    auto pending = bus->Pending();
    if (pending.ok()) gauge->Set(static_cast<double>(*pending));
  });
  // Segments: refreshes run as pipeline runs; segment.updated goes to the bus.
  s.runner = std::make_unique<jobs::PipelineRunner>(*s.metadata);
  s.segments = std::make_unique<segments::SegmentService>(*s.metadata, *s.event_store, *s.pseudonymizer, *s.bus,
                                                          *s.runner);
  segments::SegmentService* segment_service = s.segments.get();
  ingest::IntakeOptions intake_options;
  intake_options.dead_letter_retention_ms = int64_t{config_.ingest.dead_letter_retention_days} * 86400000;
  intake_options.wants_stored_users = [segment_service] { return segment_service->WantsStoredUsers(); };
  intake_options.on_stored_users = [segment_service](std::vector<std::string> users) {
    segment_service->OnEventsStored(std::move(users));
  };
  intake_options.on_user_erased = [segment_service](const std::string& user) { segment_service->OnUserErased(user); };
  s.intake = std::make_unique<ingest::Intake>(*s.normalizer, *s.event_store, *s.metadata, intake_options);
  ANALYTICS_RETURN_IF_ERROR(LoadDemoData(config_, *s.event_store, *s.intake));
  analysis::AnalysisOptions analysis_options;
  analysis_options.k_anonymity = config_.privacy.k_anonymity;
  analysis_options.segment_scope = [segment_service](const std::string& id) { return segment_service->ScopeOf(id); };
  s.segments->SetSourceEvaluator([store = s.event_store.get(), analysis_options](const nlohmann::json& source)
                                     -> Result<query::Roaring> {
    auto users = analysis::FunnelUsers(*store, source["funnel"], analysis::Viewer{}, analysis_options,
                                       source["step"].get<int64_t>(), source["users"].get<std::string>());
    if (!users.ok() && users.status().code() == common::StatusCode::kInvalidArgument) {
      const std::string field = users.status().field();
      // The source's own members keep their names; the funnel request's fields are under source.funnel.
      const std::string path = field == "step"    ? "source.step"
                               : field == "which" ? "source.users"
                               : field.empty()    ? "source.funnel"
                                                  : "source.funnel." + field;
      return Status::InvalidArgument(users.status().message(), path);
    }
    return users;
  });
  s.segments->RegisterJobs();
  ANALYTICS_RETURN_IF_ERROR(s.segments->Start());
  ANALYTICS_RETURN_IF_ERROR(s.runner->Start());

  // Reports: instances are pipeline runs of their own runner; files go to <data_dir>/objects/<reports bucket>
  // (the S3 bucket of the same name once S3 is configured).
  blob::LocalObjectStoreOptions files_options;
  const std::filesystem::path data_path(config_.storage.data_dir);
  files_options.root = (data_path / "objects" / config_.s3.bucket_reports).string();
  ANALYTICS_ASSIGN_OR_RETURN(s.report_files, blob::LocalObjectStore::OpenRoot(files_options));
  jobs::PipelineRunnerOptions report_runner_options;
  report_runner_options.workers = config_.reports.workers;
  s.report_runner = std::make_unique<jobs::PipelineRunner>(*s.metadata, report_runner_options);
  metrics::MetricValuesOptions values_options;
  values_options.k_anonymity = config_.privacy.k_anonymity;
  values_options.segment_scope = analysis_options.segment_scope;
  s.metric_values = std::make_unique<metrics::MetricValues>(*s.catalog, *s.event_store, values_options);
  reports::SegmentLookup segment_lookup;
  segment_lookup.size = [segment_service](const std::string& id) -> Result<nlohmann::json> {
    ANALYTICS_ASSIGN_OR_RETURN(nlohmann::json segment, segment_service->Get(id));
    nlohmann::json out = {{"segment_id", id}, {"name", segment.value("name", "")}, {"type", segment.value("type", "")},
                          {"users_count", nullptr}, {"as_of", nullptr}, {"refreshed_at", nullptr}};
    auto count = segment_service->UsersCount(id);
    if (count.ok()) {
      for (const char* key : {"users_count", "as_of", "refreshed_at"}) out[key] = (*count)[key];
    } else if (count.status().code() != common::StatusCode::kFailedPrecondition) {
      return count.status();  // not materialized yet: null counts
    }
    return out;
  };
  segment_lookup.ids = [segment_service]() -> Result<std::vector<std::string>> {
    ANALYTICS_ASSIGN_OR_RETURN(nlohmann::json list, segment_service->List(std::nullopt));
    std::vector<std::string> ids;
    for (const auto& item : list["items"]) ids.push_back(item["id"].get<std::string>());
    return ids;
  };
  reports::ReportServiceOptions report_options;
  report_options.retention_days = config_.reports.retention_days;
  report_options.schedule_catch_up_ms = int64_t{config_.reports.schedule_catch_up_hours} * 3600000;
  report_options.temp_dir = (data_path / "tmp" / "reports").string();
  s.reports = std::make_unique<reports::ReportService>(*s.metadata, *s.event_store, *s.metric_values,
                                                       analysis_options, *s.report_files, *s.bus, *s.report_runner,
                                                       std::move(segment_lookup), report_options);
  s.reports->RegisterJobs();
  ANALYTICS_RETURN_IF_ERROR(s.reports->Start());
  ANALYTICS_RETURN_IF_ERROR(s.report_runner->Start());
  s.housekeeping = std::thread([&s] {
    std::unique_lock lock(s.housekeeping_mu);
    while (!s.stopping) {
      auto purged = s.intake->PurgeExpiredDeadLetters(common::NowMillis());
      if (!purged.ok()) obs::LogWarn("dead letter purge failed", {{"error", purged.status().ToString()}});
      // Segment refresh runs are kept 30 days (the report service purges its own runs).
      auto runs = s.metadata->PurgePipelineRunsBefore(common::NowMillis() - 30LL * 86400000, segments::kRefreshKind);
      if (!runs.ok()) obs::LogWarn("pipeline run purge failed", {{"error", runs.status().ToString()}});
      auto outbox = s.bus->Purge(common::NowMillis());
      if (!outbox.ok()) obs::LogWarn("outbox purge failed", {{"error", outbox.status().ToString()}});
      s.housekeeping_cv.wait_for(lock, std::chrono::minutes(10));
    }
  });

  ANALYTICS_RETURN_IF_ERROR(StartKafka());

  // Auth.
  auth::JwtVerifierOptions auth_options;
  ANALYTICS_ASSIGN_OR_RETURN(auth_options.hs256_secret, ResolveJwtSecret(config_));
  if (!config_.auth.jwks_file.empty()) {
    auto jwks = ReadFile(config_.auth.jwks_file);
    if (!jwks.ok()) return Status::InvalidArgument(jwks.status().message(), "auth.jwks_file");
    auth_options.jwks_json = std::move(jwks).value();
  }
  auth_options.issuer = config_.auth.issuer;
  auth_options.audience = config_.auth.audience;
  auth_options.leeway_seconds = config_.auth.leeway_seconds;
  auto verifier = auth::JwtVerifier::Create(auth_options);
  if (!verifier.ok()) return Status::InvalidArgument(verifier.status().message(), "auth.jwks_file");
  s.verifier = std::move(verifier).value();

  // Routes.
  std::vector<api::ReadinessCheck> checks;
  metadata::MetadataStore* metadata_store = s.metadata.get();
  checks.push_back({"metadata", [metadata_store](nlohmann::json& details) {
                      details["backend"] = metadata_store->BackendName();
                      auto version = metadata_store->SchemaVersion();
                      if (version.ok()) details["schema_version"] = *version;
                      return metadata_store->Ping();
                    }});
  const std::string data_dir = config_.storage.data_dir;
  checks.push_back({"data_dir", [data_dir](nlohmann::json& details) {
                      details["path"] = data_dir;
                      std::error_code space_ec;
                      auto space = std::filesystem::space(data_dir, space_ec);
                      if (space_ec) return Status::Unavailable("data dir not accessible: " + space_ec.message());
                      details["free_bytes"] = space.available;
                      if (::access(data_dir.c_str(), W_OK) != 0) return Status::Unavailable("data dir not writable");
                      return Status::Ok();
                    }});
  store::EventStore* event_store = s.event_store.get();
  checks.push_back({"event_store", [event_store](nlohmann::json& details) {
                      details["backend"] = "embedded";
                      details["stats"] = event_store->Stats();
                      return event_store->Ping();
                    }});
  if (s.kafka_source) {
    ingest::KafkaSource* source = s.kafka_source.get();
    checks.push_back({"kafka_consumer", [source](nlohmann::json& details) { return source->Readiness(details); }});
    bus::OutboxRelay* relay = s.outbox_relay.get();
    kafka::Producer* producer = s.kafka_producer.get();
    checks.push_back({"outbox_relay", [relay, producer](nlohmann::json& details) {
                        details["producer"] = producer->Stats();
                        return relay->Readiness(details);
                      }});
  }
  api::AddSystemRoutes(s.router, std::move(checks), s.metrics, kVersion);
  api::AddMetricDefinitionRoutes(s.router, *s.catalog);
  api::AddMetricValuesRoutes(s.router, *s.metric_values);
  api::AddAnalysisRoutes(s.router, *s.event_store, analysis_options);
  api::AddSegmentRoutes(s.router, *s.segments);
  api::AddReportRoutes(s.router, *s.reports);
  api::AddPipelineRunRoutes(s.router, *s.metadata);
  api::AddOutboxRoutes(s.router, *s.bus);
  api::EventRoutesOptions event_options;
  event_options.max_decompressed_bytes = config_.ingest.max_decompressed_bytes;
  event_options.on_user_erased = intake_options.on_user_erased;
  api::AddEventRoutes(s.router, *s.intake, *s.event_store, *s.metadata, *s.pseudonymizer, event_options);

  s.http_metrics = std::make_unique<obs::HttpMetrics>(s.metrics);
  obs::ExportStatsAsGauges(s.metrics, "analytics_event_store", "Embedded event store",
                           [store = s.event_store.get()] { return store->Stats(); });
  s.pipeline = std::make_unique<api::ApiPipeline>(s.router, *s.verifier, *s.http_metrics);

  api::HttpServerOptions server_options;
  server_options.host = config_.api_server.host;
  server_options.port = config_.api_server.port;
  server_options.io_threads = ThreadsOr(config_.api_server.io_threads);
  // Twice the cores: an intake request waits for the WAL's fdatasync, and another handler uses the core meanwhile.
  server_options.handler_threads = ThreadsOr(config_.api_server.handler_threads, /*per_core=*/2);
  server_options.max_body_bytes = config_.api_server.max_body_bytes;
  server_options.max_header_bytes = config_.api_server.max_header_bytes;
  server_options.request_timeout_seconds = config_.api_server.request_timeout_seconds;
  server_options.keep_alive_timeout_seconds = config_.api_server.keep_alive_timeout_seconds;
  server_options.shutdown_grace_seconds = config_.api_server.shutdown_grace_seconds;
  api::ApiPipeline* pipeline = s.pipeline.get();
  s.server = std::make_unique<api::HttpServer>(
      server_options, [pipeline](api::HttpRequest& request) { return pipeline->Handle(request); },
      [pipeline](const api::HttpRequest& request, const api::HttpResponse& response) {
        pipeline->Record(request, response);
      });
  ANALYTICS_RETURN_IF_ERROR(s.server->Start());

  obs::LogInfo("started", {{"version", kVersion},
                           {"config", config_.source},
                           {"port", s.server->port()},
                           {"data_dir", config_.storage.data_dir},
                           {"metadata", s.metadata->BackendName()},
                           {"builtin_metrics_created", seeded},
                           {"jwks_keys", s.verifier->jwks_key_count()}});
  return Status::Ok();
}

// Kafka: the outbox relay to the produced topic and the consumer group over the platform's topics, sharing one
// idempotent producer (relay + dead-letter topic). Nothing when kafka.brokers is empty.
Status Application::StartKafka() {
  State& s = *state_;
  const config::KafkaConfig& k = config_.kafka;
  if (k.brokers.empty()) return Status::Ok();
  kafka::ProducerOptions producer_options;
  producer_options.client.brokers = k.brokers;
  ANALYTICS_ASSIGN_OR_RETURN(s.kafka_producer, kafka::Producer::Create(producer_options));

  bus::OutboxRelayOptions relay_options;
  relay_options.topic = k.produced_topic;
  s.outbox_relay = std::make_unique<bus::OutboxRelay>(*s.metadata, *s.kafka_producer, relay_options, s.metrics);
  bus::OutboxRelay* relay = s.outbox_relay.get();
  s.bus->SetAppendedListener([relay] { relay->Notify(); });
  s.outbox_relay->Start();

  ingest::KafkaSourceOptions source_options;
  source_options.client.brokers = k.brokers;
  source_options.group_id = k.group_id;
  source_options.group_instance_id = k.group_instance_id;
  std::stringstream topics(k.topics);
  for (std::string topic; std::getline(topics, topic, ',');) {
    topic.erase(0, topic.find_first_not_of(' '));
    topic.erase(topic.find_last_not_of(' ') + 1);
    if (!topic.empty()) source_options.topics.push_back(topic);
  }
  source_options.topics_regex = k.topics_regex;
  source_options.excluded_topics = {k.produced_topic, k.dlq_topic};
  source_options.dlq_topic = k.dlq_topic;
  source_options.auto_offset_reset = k.auto_offset_reset;
  source_options.session_timeout_ms = k.session_timeout_ms;
  source_options.max_batch_messages = static_cast<size_t>(k.max_batch_events);
  source_options.max_batch_wait_ms = k.max_batch_wait_ms;
  ANALYTICS_ASSIGN_OR_RETURN(s.kafka_source,
                             ingest::KafkaSource::Start(source_options, *s.intake, *s.kafka_producer, s.metrics));
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> Application::Routes() const {
  std::vector<std::pair<std::string, std::string>> routes;
  for (const auto& route : state_->router.routes()) routes.emplace_back(route.method, route.path);
  return routes;
}

int Application::port() const { return state_->server ? state_->server->port() : 0; }

void Application::Stop() {
  if (!state_) return;
  State& s = *state_;
  if (s.server) {
    obs::LogInfo("stopping", {{"in_flight", s.server->in_flight()}});
    s.server->Shutdown();
    s.server.reset();
  }
  if (s.housekeeping.joinable()) {
    {
      std::lock_guard lock(s.housekeeping_mu);
      s.stopping = true;
    }
    s.housekeeping_cv.notify_all();
    s.housekeeping.join();
  }
  // Kafka first: the consumer finishes and commits its batch while intake and the store still run.
  if (s.kafka_source) s.kafka_source->Stop();
  if (s.outbox_relay) {
    s.bus->SetAppendedListener({});  // returns once no publisher is inside Notify
    s.outbox_relay->Stop();
    s.outbox_relay.reset();
  }
  // Background work before the stores it uses: running refreshes finish, queued ones stay queued.
  if (s.reports) s.reports->Stop();
  if (s.report_runner) s.report_runner->Stop();
  if (s.runner) s.runner->Stop();
  if (s.segments) s.segments->Stop();
  if (s.event_store) {
    s.event_store.reset();  // flushes the memtable to segments
    obs::LogInfo("stopped");
  }
}

}  // namespace analytics::app
