// End-to-end: the real binary, started as a process, driven over HTTP.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using nlohmann::json;

constexpr char kDefinitions[] = "/api/v1/analytics/metrics/definitions";

// `base` with `key` set to `value`.
json With(json base, const std::string& key, json value) {
  base[key] = std::move(value);
  return base;
}

json ExampleDefinition(const std::string& name) {
  return With(json::parse(R"({"title": "Revenue", "description": "Net revenue in roubles",
    "event_types": ["com.platform.payments.purchase_completed.v1"], "aggregation": "sum", "property": "amount",
    "filters": [{"property": "currency", "op": "eq", "value": "RUB"}], "dimensions": ["game_id", "country"],
    "unit": "RUB", "tags": ["kpi", "e2e"], "owner_service": "payments", "is_realtime": true})"),
              "name", name);
}

class ServiceE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    service_ = std::make_unique<ServiceProcess>(data_dir_.path().string());
    ASSERT_GT(service_->port(), 0) << service_->output();
    client_ = std::make_unique<HttpClient>(service_->port());
    admin_ = service_->Token({"platform_admin"}, "admin-1");
    marketing_ = service_->Token({"marketing_manager"}, "marketer-1");
  }

  TempDir data_dir_;
  std::unique_ptr<ServiceProcess> service_;
  std::unique_ptr<HttpClient> client_;
  std::string admin_;
  std::string marketing_;
};

TEST_F(ServiceE2eTest, HealthAndReadinessReportEachComponent) {
  auto health = client_->Get("/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.Json()["status"], "ok");
  auto ready = client_->Get("/readyz");
  ASSERT_EQ(ready.status, 200) << ready.body;
  auto body = ready.Json();
  EXPECT_EQ(body["status"], "ready");
  EXPECT_EQ(body["components"]["metadata"]["status"], "ok");
  EXPECT_EQ(body["components"]["metadata"]["backend"], "sqlite");
  EXPECT_EQ(body["components"]["data_dir"]["status"], "ok");
}

TEST_F(ServiceE2eTest, MarketingManagerListsBuiltinKpisButCannotCreate) {
  auto list = client_->Get(kDefinitions, marketing_);
  ASSERT_EQ(list.status, 200) << list.body;
  std::set<std::string> names;
  const json listed = list.Json();
  for (const auto& item : listed["items"]) names.insert(item["name"].get<std::string>());
  for (const char* kpi : {"dau", "wau", "mau", "new_users", "sessions", "avg_session_length_seconds", "revenue_rub",
                          "paying_users", "arpu", "arppu", "payer_conversion", "refund_rate",
                          "peak_concurrent_players"}) {
    EXPECT_TRUE(names.count(kpi)) << "missing built-in KPI " << kpi;
  }
  EXPECT_EQ(list.Json()["total"].get<size_t>(), names.size());

  auto create = client_->PostJson(kDefinitions, ExampleDefinition("revenue_e2e"), marketing_);
  EXPECT_EQ(create.status, 403) << create.body;
  EXPECT_EQ(create.Json()["error"]["code"], "ACCESS_DENIED_TO_RESOURCE");
  // Nothing was created.
  EXPECT_EQ(client_->Get(std::string(kDefinitions) + "/revenue_e2e", marketing_).status, 404);
}

TEST_F(ServiceE2eTest, RolesFollowSpecSection31) {
  const std::string developer = service_->Token({"developer"}, "dev-1", {"17"});
  const std::string service = service_->Token({"service"}, "svc-1");
  EXPECT_EQ(client_->Get(kDefinitions, developer).status, 200);
  EXPECT_EQ(client_->Get(kDefinitions, admin_).status, 200);
  EXPECT_EQ(client_->Get(kDefinitions, service).status, 403);
  EXPECT_EQ(client_->Get(std::string(kDefinitions) + "/dau", service).status, 403);
  EXPECT_EQ(client_->PostJson(kDefinitions, ExampleDefinition("x_dev"), developer).status, 403);
  EXPECT_EQ(client_->PostJson(kDefinitions, ExampleDefinition("x_svc"), service).status, 403);
  EXPECT_EQ(client_->PostJson(kDefinitions, ExampleDefinition("x_admin"), admin_).status, 201);
  // A token with no known role is authenticated but has no access.
  const std::string nobody = service_->Token({"service"}, "svc-2");
  EXPECT_EQ(client_->Request("DELETE", std::string(kDefinitions) + "/x_admin", "",
                             {{"Authorization", "Bearer " + nobody}}).status, 403);
}

TEST_F(ServiceE2eTest, MissingOrBadTokensAre401WithEnvelope) {
  auto missing = client_->Get(kDefinitions);
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.Json()["error"]["code"], "UNAUTHENTICATED");
  EXPECT_EQ(missing.Header("www-authenticate"), "Bearer");
  EXPECT_FALSE(missing.Json()["error"]["request_id"].get<std::string>().empty());
  EXPECT_EQ(missing.Json()["error"]["request_id"], missing.Header("x-request-id"));

  std::string tampered = admin_;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(client_->Get(kDefinitions, tampered).status, 401);
  EXPECT_EQ(client_->Get(kDefinitions, "not-a-token").status, 401);
  EXPECT_EQ(client_->Request("GET", kDefinitions, "", {{"Authorization", "Basic abc"}}).status, 401);
  // The OpenAPI document lives under the authenticated prefix too.
  EXPECT_EQ(client_->Get("/api/v1/analytics/openapi.yaml").status, 401);
  auto openapi = client_->Get("/api/v1/analytics/openapi.yaml", marketing_);
  EXPECT_EQ(openapi.status, 200);
  EXPECT_NE(openapi.body.find("/api/v1/analytics/metrics/definitions"), std::string::npos);
}

TEST(ServiceAuthE2eTest, ExpiredTokenIsRejected) {
  TempDir dir;
  ServiceProcess service(dir.path().string(), {{"ANALYTICS_JWT_LEEWAY_SECONDS", "0"}});
  ASSERT_GT(service.port(), 0) << service.output();
  ProcessResult result = RunBinary({"token", "--role", "platform_admin", "--ttl", "1s"},
                                   {{"ANALYTICS_DATA_DIR", dir.path().string()}});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::string token = result.output.substr(0, result.output.find('\n'));
  HttpClient client(service.port());
  EXPECT_EQ(client.Get(kDefinitions, token).status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  auto expired = client.Get(kDefinitions, token);
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.Json()["error"]["message"].get<std::string>().find("expired"), std::string::npos);
}

TEST_F(ServiceE2eTest, CreateGetUpdateDeleteDefinition) {
  auto created = client_->PostJson(kDefinitions, ExampleDefinition("revenue_e2e"), admin_);
  ASSERT_EQ(created.status, 201) << created.body;
  auto body = created.Json();
  EXPECT_EQ(body["version"], 1);
  EXPECT_EQ(body["created_by"], "admin-1");
  EXPECT_EQ(body["builtin"], false);
  EXPECT_EQ(body["filters"][0]["value"], "RUB");
  EXPECT_EQ(created.Header("location"), std::string(kDefinitions) + "/revenue_e2e");
  EXPECT_EQ(created.Header("etag"), "\"1\"");

  auto duplicate = client_->PostJson(kDefinitions, ExampleDefinition("revenue_e2e"), admin_);
  EXPECT_EQ(duplicate.status, 409);
  EXPECT_EQ(duplicate.Json()["error"]["code"], "METRIC_DEFINITION_ALREADY_EXISTS");

  auto fetched = client_->Get(std::string(kDefinitions) + "/revenue_e2e", marketing_);
  ASSERT_EQ(fetched.status, 200);
  EXPECT_EQ(fetched.Json(), body);

  // Filters on the list.
  auto by_tag = client_->Get(std::string(kDefinitions) + "?tag=e2e", marketing_).Json();
  ASSERT_EQ(by_tag["items"].size(), 1u);
  EXPECT_EQ(by_tag["items"][0]["name"], "revenue_e2e");
  auto by_owner = client_->Get(std::string(kDefinitions) + "?owner_service=payments&is_realtime=true", marketing_).Json();
  bool found = false;
  for (const auto& item : by_owner["items"]) {
    EXPECT_EQ(item["owner_service"], "payments");
    EXPECT_EQ(item["is_realtime"], true);
    found = found || item["name"] == "revenue_e2e";
  }
  EXPECT_TRUE(found);
  auto bad_flag = client_->Get(std::string(kDefinitions) + "?is_realtime=yes", marketing_);
  EXPECT_EQ(bad_flag.status, 400);
  EXPECT_EQ(bad_flag.Json()["error"]["code"], "INVALID_QUERY_PARAMETERS");
  EXPECT_EQ(bad_flag.Json()["error"]["details"]["parameter"], "is_realtime");

  // Update with optimistic concurrency.
  auto changed = ExampleDefinition("revenue_e2e");
  changed["title"] = "Revenue (RUB)";
  auto updated = client_->Request("PUT", std::string(kDefinitions) + "/revenue_e2e", changed.dump(),
                                  {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"},
                                   {"If-Match", "\"1\""}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  EXPECT_EQ(updated.Json()["version"], 2);
  EXPECT_EQ(updated.Json()["title"], "Revenue (RUB)");
  auto stale = client_->Request("PUT", std::string(kDefinitions) + "/revenue_e2e", changed.dump(),
                                {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"},
                                 {"If-Match", "\"1\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.Json()["error"]["code"], "VERSION_CONFLICT");

  // A ratio using it blocks its deletion.
  json ratio = {{"name", "revenue_per_user_e2e"}, {"title", "Revenue per user"}, {"aggregation", "ratio"},
                {"numerator", "revenue_e2e"}, {"denominator", "dau"}};
  ASSERT_EQ(client_->PostJson(kDefinitions, ratio, admin_).status, 201);
  auto in_use = client_->Request("DELETE", std::string(kDefinitions) + "/revenue_e2e", "",
                                 {{"Authorization", "Bearer " + admin_}});
  EXPECT_EQ(in_use.status, 409);
  EXPECT_EQ(in_use.Json()["error"]["code"], "RESOURCE_IN_USE");
  EXPECT_EQ(client_->Request("DELETE", std::string(kDefinitions) + "/revenue_per_user_e2e", "",
                             {{"Authorization", "Bearer " + admin_}}).status, 204);
  EXPECT_EQ(client_->Request("DELETE", std::string(kDefinitions) + "/revenue_e2e", "",
                             {{"Authorization", "Bearer " + admin_}}).status, 204);
  auto gone = client_->Get(std::string(kDefinitions) + "/revenue_e2e", marketing_);
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.Json()["error"]["code"], "METRIC_DEFINITION_NOT_FOUND");
}

TEST_F(ServiceE2eTest, InvalidBodiesNameTheField) {
  struct Case {
    json body;
    std::string field;
  };
  std::vector<Case> cases = {
      {ExampleDefinition("Bad-Name"), "name"},
      {With(ExampleDefinition("ok_name"), "aggregation", "median"), "aggregation"},
      {With(ExampleDefinition("ok_name"), "title", 42), "title"},
      {With(ExampleDefinition("ok_name"), "color", "red"), "color"},
      {With(ExampleDefinition("ok_name"), "version", 3), "version"},
      {With(ExampleDefinition("ok_name"), "filters", json::parse(R"([{"property":"x","op":"between","value":1}])")),
       "filters[0].op"},
      {With(ExampleDefinition("ok_name"), "dimensions", json::array({"game_id", "game_id"})),
       "dimensions[1]"},
      {json({{"name", "ratio_missing"}, {"title", "r"}, {"aggregation", "ratio"}, {"numerator", "nope"},
             {"denominator", "dau"}}),
       "numerator"},
  };
  for (const auto& test_case : cases) {
    auto response = client_->PostJson(kDefinitions, test_case.body, admin_);
    EXPECT_EQ(response.status, 400) << test_case.body.dump();
    auto error = response.Json()["error"];
    EXPECT_EQ(error["code"], "INVALID_REQUEST_BODY") << response.body;
    EXPECT_EQ(error["details"]["field"], test_case.field) << response.body;
  }
  auto malformed = client_->Request("POST", kDefinitions, "{\"name\": \"x\",,}",
                                    {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"}});
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.Json()["error"]["details"]["byte_offset"], 14);
  auto wrong_type = client_->Request("POST", kDefinitions, "name=x",
                                     {{"Authorization", "Bearer " + admin_}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(wrong_type.status, 415);
}

TEST_F(ServiceE2eTest, RequestIdsAreEchoedOrGeneratedAndRoutesAreCounted) {
  auto echoed = client_->Request("GET", "/healthz", "", {{"X-Request-Id", "trace-abc.123"}});
  EXPECT_EQ(echoed.Header("x-request-id"), "trace-abc.123");
  auto unsafe = client_->Request("GET", "/healthz", "", {{"X-Request-Id", "bad id with spaces"}});
  EXPECT_NE(unsafe.Header("x-request-id"), "bad id with spaces");
  EXPECT_EQ(unsafe.Header("x-request-id").size(), 36u);

  auto not_found = client_->Get("/api/v1/analytics/nope", admin_);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.Json()["error"]["code"], "NOT_FOUND");
  auto wrong_method = client_->Request("PATCH", kDefinitions, "", {{"Authorization", "Bearer " + admin_}});
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_NE(wrong_method.Header("allow").find("GET"), std::string::npos);

  ASSERT_EQ(client_->Get(kDefinitions, marketing_).status, 200);
  auto metrics = client_->Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("analytics_http_requests_total{method=\"GET\",route=\"/api/v1/analytics/metrics/"
                              "definitions\",status=\"200\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("analytics_http_request_duration_seconds_bucket"), std::string::npos);
  // The event store's memory and work are visible to Prometheus.
  for (const char* gauge : {"analytics_event_store_memtable_bytes ", "analytics_event_store_dedup_bytes ",
                            "analytics_event_store_segment_events ", "analytics_event_store_compactions "}) {
    EXPECT_NE(metrics.body.find(gauge), std::string::npos) << gauge;
  }

  // One JSON log line per request, with method, route, status, latency, request id and subject.
  bool logged = false;
  std::istringstream lines(service_->output());
  std::string line;
  while (std::getline(lines, line)) {
    auto entry = json::parse(line, nullptr, false);
    if (entry.is_object() && entry.value("msg", "") == "request" && entry.value("request_id", "") == "trace-abc.123") {
      EXPECT_EQ(entry["method"], "GET");
      EXPECT_EQ(entry["route"], "/healthz");
      EXPECT_EQ(entry["status"], 200);
      EXPECT_TRUE(entry["latency_ms"].is_number());
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << service_->output();
}

TEST_F(ServiceE2eTest, KeepAliveReusesOneConnection) {
  for (int request_idx = 0; request_idx < 20; ++request_idx) ASSERT_EQ(client_->Get("/healthz").status, 200);
  EXPECT_EQ(client_->connections_opened(), 1);
}

TEST_F(ServiceE2eTest, MalformedHttpGets400AndServerKeepsServing) {
  int fd = ConnectRaw(service_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GARBAGE\x01\x02 / HTTP/9.9\r\n\r\n"));
  std::string reply = ReadAll(fd, 2000);
  close(fd);
  EXPECT_NE(reply.find("400"), std::string::npos) << reply;
  EXPECT_EQ(client_->Get("/healthz").status, 200);
}

TEST_F(ServiceE2eTest, SigtermLetsInFlightRequestFinish) {
  // Send the head and half the body of a POST, then SIGTERM, then the rest: the request is answered.
  const std::string body = ExampleDefinition("graceful_e2e").dump();
  std::string head = "POST " + std::string(kDefinitions) + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin_ +
                     "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  int fd = ConnectRaw(service_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, head + body.substr(0, body.size() / 2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(service_->pid(), SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(SendAll(fd, body.substr(body.size() / 2)));
  std::string reply = ReadAll(fd, 10000);
  close(fd);
  EXPECT_EQ(reply.rfind("HTTP/1.1 201", 0), 0u) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  ProcessResult result = service_->Stop(SIGTERM, 30);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // And the definition is durable: a restart sees it.
  ServiceProcess restarted(data_dir_.path().string());
  ASSERT_GT(restarted.port(), 0) << restarted.output();
  HttpClient client(restarted.port());
  EXPECT_EQ(client.Get(std::string(kDefinitions) + "/graceful_e2e", restarted.Token({"platform_admin"})).status, 200);
}

TEST(ServiceLimitsE2eTest, OversizedBodyGets413) {
  TempDir dir;
  ServiceProcess service(dir.path().string(), {{"ANALYTICS_MAX_BODY_BYTES", "2048"}});
  ASSERT_GT(service.port(), 0) << service.output();
  HttpClient client(service.port());
  auto response = client.Request("POST", kDefinitions, std::string(4096, 'x'),
                                 {{"Authorization", "Bearer " + service.Token({"platform_admin"})},
                                  {"Content-Type", "application/json"}});
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(response.Json()["error"]["code"], "PAYLOAD_TOO_LARGE");
  HttpClient fresh(service.port());
  EXPECT_EQ(fresh.Get("/healthz").status, 200);
}

TEST(ServicePostgresE2eTest, MetadataInPostgresSurvivesRestart) {
  const std::string dsn = RequiredEnv("ANALYTICS_TEST_POSTGRES_DSN");
  ASSERT_FALSE(dsn.empty());
  TempDir dir;
  const std::string name = "pg_e2e_" + std::to_string(getpid());
  {
    ServiceProcess service(dir.path().string(), {{"POSTGRES_DSN_METADATA", dsn}});
    ASSERT_GT(service.port(), 0) << service.output();
    HttpClient client(service.port());
    auto ready = client.Get("/readyz").Json();
    EXPECT_EQ(ready["components"]["metadata"]["backend"], "postgres");
    EXPECT_EQ(ready["components"]["metadata"]["status"], "ok");
    ASSERT_EQ(client.PostJson(kDefinitions, ExampleDefinition(name), service.Token({"platform_admin"})).status, 201);
    EXPECT_EQ(service.Stop(SIGTERM).exit_code, 0);
  }
  ServiceProcess again(dir.path().string(), {{"POSTGRES_DSN_METADATA", dsn}});
  ASSERT_GT(again.port(), 0) << again.output();
  HttpClient client(again.port());
  auto fetched = client.Get(std::string(kDefinitions) + "/" + name, again.Token({"marketing_manager"}));
  EXPECT_EQ(fetched.status, 200);
  EXPECT_EQ(fetched.Json()["title"], "Revenue");
  auto kpis = client.Get(std::string(kDefinitions) + "?tag=kpi", again.Token({"marketing_manager"})).Json();
  EXPECT_GE(kpis["items"].size(), 13u);
}

TEST(ServiceConfigE2eTest, WrongConfigStopsStartupWithExitCode2NamingTheKey) {
  TempDir dir;
  const std::string config_path = (dir.path() / "bad.yaml").string();
  {
    std::ofstream file(config_path);
    file << "api_server:\n  port: 8081\n  colour: blue\n";
  }
  auto unknown = RunBinary({"serve", "--config", config_path}, {{"ANALYTICS_DATA_DIR", dir.path().string()}});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("api_server.colour"), std::string::npos) << unknown.output;

  auto bad_port = RunBinary({"serve"}, {{"ANALYTICS_DATA_DIR", dir.path().string()}, {"ANALYTICS_API_PORT", "eighty"}});
  EXPECT_EQ(bad_port.exit_code, 2);
  EXPECT_NE(bad_port.output.find("api_server.port"), std::string::npos) << bad_port.output;

  auto bad_dsn = RunBinary({"serve"}, {{"ANALYTICS_DATA_DIR", dir.path().string()},
                                       {"POSTGRES_DSN_METADATA", "host='unterminated"}});
  EXPECT_EQ(bad_dsn.exit_code, 2);
  EXPECT_NE(bad_dsn.output.find("postgres_metadata.dsn"), std::string::npos) << bad_dsn.output;

  auto missing = RunBinary({"serve", "--config", (dir.path() / "nope.yaml").string()},
                           {{"ANALYTICS_DATA_DIR", dir.path().string()}});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("nope.yaml"), std::string::npos) << missing.output;

  auto bad_jwks = RunBinary({"serve"}, {{"ANALYTICS_DATA_DIR", dir.path().string()},
                                        {"ANALYTICS_JWKS_FILE", (dir.path() / "none.json").string()}});
  EXPECT_EQ(bad_jwks.exit_code, 2);
  EXPECT_NE(bad_jwks.output.find("auth.jwks_file"), std::string::npos) << bad_jwks.output;
}

TEST(ServiceCliE2eTest, HelpVersionAndTokenUsage) {
  auto help = RunBinary({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("analytics-service serve"), std::string::npos);
  auto version = RunBinary({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.output.rfind("analytics-service ", 0), 0u);
  EXPECT_EQ(RunBinary({"frobnicate"}).exit_code, 2);
  TempDir dir;
  EXPECT_EQ(RunBinary({"token", "--role", "emperor"}, {{"ANALYTICS_DATA_DIR", dir.path().string()}}).exit_code, 2);
  EXPECT_EQ(RunBinary({"token"}, {{"ANALYTICS_DATA_DIR", dir.path().string()}}).exit_code, 2);
  EXPECT_EQ(RunBinary({"token", "--role", "service", "--ttl", "soon"}, {{"ANALYTICS_DATA_DIR", dir.path().string()}})
                .exit_code,
            2);
}

}  // namespace
}  // namespace analytics::testing
