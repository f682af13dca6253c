// Kafka end to end (docs/kafka.md): the real binary as a consumer-group member and producer against the broker
// scripts/run-tests starts, driven by the test client (support/kafka_test_client.h) and checked over HTTP.
// Structured and binary mode events on listed and regex-matched topics (one created after the start) stored as
// sent; poison messages dead-lettered once each with their original bytes and the intake's code and field while
// the partition keeps flowing; a kill -9 mid-stream with nothing lost or stored twice; a rebalance between two
// instances with no loss and no event in both stores; produced events relayed from the durable outbox, also
// after the broker was unreachable. Every test has its own data dirs, consumer group and topics: the tests run in
// parallel against one broker. Waits poll with deadlines; no sleep is an assertion.
// ANALYTICS_KAFKA_E2E_KILL_EVENTS overrides the number of events of the kill -9 test (default 200,000).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/time_util.h"
#include "support/http_client.h"
#include "support/kafka_test_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;
using namespace std::chrono_literals;

const std::string kApi = "/api/v1/analytics";
const std::string kEvents = kApi + "/events";
const std::string kDeadLetters = kApi + "/ingest/dead-letters";
const std::string kOutbox = kApi + "/outbox";
const std::string kSegmentDefinitions = kApi + "/segments/definitions";
const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kBuy = "com.platform.payments.purchase.completed.v1";
const std::string kSession = "com.platform.library.session.started.v1";
const std::string kUpdatedType = "com.platform.analytics.segment.updated.v1";
const std::vector<std::string> kDlqHeaders = {"analytics_dlq_code",          "analytics_dlq_field",
                                              "analytics_dlq_reason",        "analytics_dlq_source_topic",
                                              "analytics_dlq_source_partition", "analytics_dlq_source_offset",
                                              "analytics_dlq_event_id",      "analytics_dlq_time"};
// 2024-03-01T00:00:00Z: every event of these tests lies in 2024-03-01 .. 2024-03-03 (UTC).
constexpr int64_t kMarch1Ms = 1709251200000;

// Polls `condition` until it holds or `timeout` passed; true when it held.
template <typename Condition>
bool Eventually(Condition&& condition, std::chrono::milliseconds timeout, std::chrono::milliseconds interval = 100ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }


std::string Tail(const std::string& text, size_t bytes = 4000) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// The value of the first sample of `name` in Prometheus text whose labels include `labels`.
std::optional<double> Sample(const std::string& text, const std::string& name,
                             const std::map<std::string, std::string>& labels = {}) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end != name.size() || line.compare(0, name_end, name) != 0) continue;
    std::string label_text;
    if (line[name_end] == '{') {
      const size_t close = line.find('}', name_end);
      if (close == std::string::npos) continue;
      label_text = "," + line.substr(name_end + 1, close - name_end - 1) + ",";
    }
    bool matches = true;
    for (const auto& [label, value] : labels) {
      if (label_text.find("," + label + "=\"" + value + "\",") == std::string::npos) matches = false;
    }
    if (matches) return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return std::nullopt;
}

// A TCP port of 127.0.0.1 nothing listens on (bound, then closed).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    if (fd >= 0) ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

const std::string* FindHeader(const Headers& headers, const std::string& name) {
  const std::string* found = nullptr;
  for (const auto& [header, value] : headers) {
    if (header == name) found = &value;
  }
  return found;
}

size_t CountHeader(const Headers& headers, const std::string& name) {
  return static_cast<size_t>(
      std::count_if(headers.begin(), headers.end(), [&](const auto& header) { return header.first == name; }));
}

std::string Text(const json& value) { return value.is_string() ? value.get<std::string>() : std::string(); }

// A thread that is told to stop and joined when the test leaves its scope (also by a failed ASSERT or an exception).
class ScopedThread {
 public:
  ScopedThread(std::atomic<bool>& stop, std::function<void()> body) : stop_(stop), thread_(std::move(body)) {}
  ~ScopedThread() { Join(); }
  void Join() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool>& stop_;
  std::thread thread_;
};

std::string HeadersText(const Headers& headers) {
  std::string text;
  for (const auto& [name, value] : headers) text += name + "=" + value.substr(0, 80) + "; ";
  return text;
}

// ------------------------------------------------------------------------------------------------ events sent

// One event as the test sends it, in structured or binary mode.
struct SentEvent {
  std::string id, type, source, time, user;  // user: the raw (platform) user id
  bool user_in_data = false;                 // the user as data.user_id instead of subject
  bool binary = false;
  bool content_type = true;                  // binary: with a content-type header (application/json)
  bool pretty = false;                       // structured: indented JSON over several lines
  json data = json::object();                // as sent (with the raw user_id when user_in_data)
  json extensions = json::object();          // extension attribute → string value
  std::string Game() const { return data.value("game_id", ""); }
};

json StructuredJson(const SentEvent& event) {
  json out = {{"specversion", "1.0"}, {"id", event.id}, {"source", event.source}, {"type", event.type},
              {"time", event.time}};
  if (!event.user_in_data) out["subject"] = event.user;
  out["data"] = event.data;
  for (const auto& [name, value] : event.extensions.items()) out[name] = value;
  return out;
}

KafkaTestMessage ToMessage(const SentEvent& event, int32_t partition) {
  KafkaTestMessage message;
  message.partition = partition;
  message.key = event.id;
  if (!event.binary) {
    message.value = event.pretty ? StructuredJson(event).dump(2) : StructuredJson(event).dump();
    message.headers = {{"content-type", "application/cloudevents+json"}};
    return message;
  }
  message.headers = {{"ce_specversion", "1.0"}, {"ce_id", event.id}, {"ce_source", event.source},
                     {"ce_type", event.type}, {"ce_time", event.time}};
  if (!event.user_in_data) message.headers.emplace_back("ce_subject", event.user);
  for (const auto& [name, value] : event.extensions.items()) message.headers.emplace_back("ce_" + name, value.get<std::string>());
  if (event.content_type) message.headers.emplace_back("content-type", "application/json");
  message.value = event.data.dump();
  return message;
}

// What GET /events answers for `event` once its user is the pseudonym `pseudonym`.
json Expected(const SentEvent& event, const std::string& pseudonym) {
  json out = StructuredJson(event);
  if (event.user_in_data) {
    out["data"]["user_id"] = pseudonym;
  } else {
    out["subject"] = pseudonym;
  }
  if (event.binary && event.content_type) out["datacontenttype"] = "application/json";
  return out;
}

// A varied event: page views, purchases and session starts over three games, six users, structured (compact or
// indented) and binary mode (with or without content-type), the user in subject or data.user_id, an extension.
SentEvent VariedEvent(const std::string& id_prefix, int n, const std::vector<std::string>& users) {
  SentEvent event;
  event.id = id_prefix + std::to_string(n);
  event.user = users[static_cast<size_t>(n) % users.size()];
  event.time = common::FormatRfc3339Millis(kMarch1Ms + (n % 3) * 86400000LL + n * 1237LL);
  const std::string game = "game_" + std::to_string(1 + n % 3);
  switch ((n / 3) % 3) {
    case 0:
      event.type = kView;
      event.source = "/services/store";
      event.data = {{"page_type", "game"}, {"game_id", game}, {"country", "RU"}, {"platform", "windows"}};
      break;
    case 1:
      event.type = kBuy;
      event.source = "/services/payments";
      event.data = {{"order_id", "ord_" + std::to_string(n)}, {"game_id", game}, {"amount", 100 + n + (n % 2) * 0.5},
                    {"currency", "RUB"}, {"payment_method", "card"}, {"country", "KZ"}};
      break;
    default:
      event.type = kSession;
      event.source = "/services/library";
      event.data = {{"game_id", game}, {"session_id", "sess_" + std::to_string(n)}, {"platform", "linux"}};
      break;
  }
  event.binary = n % 2 == 0;
  event.content_type = n % 4 != 2;
  event.pretty = n % 4 == 1;
  if (n % 5 == 3) {
    event.user_in_data = true;
    event.data["user_id"] = event.user;
  }
  if (n % 7 == 0) event.extensions["region"] = "eu-" + std::to_string(n % 3);
  return event;
}

// The volume tests spread their events over this many days from 2024-03-01 and read them back a day at a time:
// GET /events materializes every match after its cursor for each page, so one window over 200k events would
// cost quadratic time.
constexpr int kVolumeDays = 100;

// A small page view (the volume tests): structured, about 230 bytes, on day n % kVolumeDays.
std::string SmallEvent(const std::string& id, int n) {
  const int64_t time_ms = kMarch1Ms + (n % kVolumeDays) * 86400000LL + (n / kVolumeDays) * 10LL;
  return R"({"specversion":"1.0","id":")" + id +
         R"(","source":"/services/store","type":"com.platform.store.page.viewed.v1","time":")" +
         common::FormatRfc3339Millis(time_ms) + R"(","subject":"vol-user-)" + std::to_string(n % 5000) +
         R"(","data":{"page_type":"home","platform":"windows"}})";
}

// ---------------------------------------------------------------------------------------------------- fixture

// The names one service configuration uses: its group and topics (unique per test).
struct KafkaNames {
  std::string group, topics, regex, produced, dlq;
};

// One running service with its client and tokens.
struct Instance {
  std::unique_ptr<ServiceProcess> process;
  std::unique_ptr<HttpClient> client;
  std::string admin, producer;

  json Get(const std::string& target, int expected = 200) {
    auto response = client->Get(target, admin);
    EXPECT_EQ(response.status, expected) << target << " → " << response.body.substr(0, 2000);
    return response.Json();
  }
  std::string Metrics() { return client->Get("/metrics").body; }
  double Messages(const std::string& outcome) {
    return Sample(Metrics(), "analytics_kafka_messages_total", {{"outcome", outcome}}).value_or(-1);
  }
  // /readyz: (status, kafka_consumer component).
  std::pair<int, json> Consumer() {
    auto response = client->Get("/readyz");
    json body = response.Json();
    return {response.status, body.is_object() ? body["components"]["kafka_consumer"] : json()};
  }
  ClientResponse Send(const std::string& method, const std::string& target, const json& body) {
    return client->Request(method, target, body.dump(),
                           {{"Authorization", "Bearer " + admin}, {"Content-Type", "application/json"}});
  }
};

class KafkaE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { kafka_ = std::make_unique<KafkaTestClient>(); }

  // Unique names for one test; the produced and dead-letter topics are created (one partition each).
  KafkaNames NewNames(const std::string& label) {
    KafkaNames names;
    names.group = UniqueTopic("e2e-group-" + label);
    names.produced = UniqueTopic("e2e.produced." + label);
    names.dlq = UniqueTopic("e2e.dlq." + label);
    kafka_->CreateTopic(names.produced, 1);
    kafka_->CreateTopic(names.dlq, 1);
    return names;
  }

  std::map<std::string, std::string> Env(const KafkaNames& names, const std::string& brokers,
                                         std::map<std::string, std::string> extra = {}) {
    std::map<std::string, std::string> env = {
        {"ANALYTICS_PSEUDONYM_KEY_FILE", (keys_.path() / "pseudonym.key").string()},
        {"KAFKA_BROKERS", brokers},
        {"KAFKA_GROUP_ID", names.group},
        {"KAFKA_TOPICS", names.topics},
        {"KAFKA_TOPICS_REGEX", names.regex},
        {"KAFKA_PRODUCED_TOPIC", names.produced},
        {"KAFKA_DLQ_TOPIC", names.dlq},
        {"KAFKA_SESSION_TIMEOUT_MS", "6000"},  // the broker's minimum: a killed member is dropped soon
    };
    for (auto& [name, value] : extra) env[name] = std::move(value);
    return env;
  }

  // Starts the binary on `data_dir` with `env` and makes its tokens. The start and each token fork this process:
  // never while a producer thread of the test allocates (the volume tests pause or join theirs first).
  static void Start(Instance& instance, const TempDir& data_dir, const std::map<std::string, std::string>& env) {
    instance.client.reset();
    instance.process = std::make_unique<ServiceProcess>(data_dir.path().string(), env);
    ASSERT_GT(instance.process->port(), 0) << Tail(instance.process->output());
    instance.client = std::make_unique<HttpClient>(instance.process->port());
    instance.admin = instance.process->Token({"platform_admin"}, "admin");
    instance.producer = instance.process->Token({"service"}, "kafka-e2e");
  }

  // Every stored event (GET /events, pages of 1000) through `visit`; bodies are also checked for `forbidden`
  // substrings (raw user ids). Returns the number of events.
  template <typename Visit>
  static size_t ForEachStored(Instance& instance, Visit&& visit, const std::vector<std::string>& forbidden = {},
                              const std::string& filter = "") {
    size_t count = 0;
    std::string cursor;
    for (int page = 0; page < 100000; ++page) {
      auto response = instance.client->Get(
          kEvents + "?limit=1000" + filter + (cursor.empty() ? "" : "&cursor=" + UrlEncode(cursor)), instance.admin);
      EXPECT_EQ(response.status, 200) << response.body.substr(0, 2000);
      if (response.status != 200) return count;
      for (const auto& raw : forbidden) {
        EXPECT_EQ(response.body.find(raw), std::string::npos) << "raw user id " << raw << " in GET /events";
      }
      json body = response.Json();
      for (const auto& item : body["items"]) {
        visit(item);
        ++count;
      }
      if (!body["next_cursor"].is_string()) return count;
      cursor = body["next_cursor"].get<std::string>();
    }
    ADD_FAILURE() << "GET /events never ended";
    return count;
  }

  // The ids of the volume tests' events (kVolumeDays days), with how often each is stored.
  static std::map<std::string, int> StoredIds(Instance& instance) {
    std::map<std::string, int> ids;
    for (int day = 0; day < kVolumeDays; ++day) {
      const std::string date = common::FormatRfc3339Millis(kMarch1Ms + day * 86400000LL).substr(0, 10);
      ForEachStored(instance, [&](const json& item) { ++ids[item["id"].get<std::string>()]; }, {},
                    "&from=" + date + "&to=" + date);
    }
    return ids;
  }

  // True once the group committed `ends[p]` on every partition p of `topic`.
  bool CommittedToEnd(const std::string& group, const std::string& topic, const std::vector<int64_t>& ends) {
    for (size_t partition = 0; partition < ends.size(); ++partition) {
      if (kafka_->CommittedOffset(group, topic, static_cast<int32_t>(partition)) != ends[partition]) return false;
    }
    return true;
  }
  std::string CommittedText(const std::string& group, const std::string& topic, const std::vector<int64_t>& ends) {
    std::string text;
    for (size_t partition = 0; partition < ends.size(); ++partition) {
      text += std::to_string(partition) + ": " +
              std::to_string(kafka_->CommittedOffset(group, topic, static_cast<int32_t>(partition))) + "/" +
              std::to_string(ends[partition]) + "  ";
    }
    return text;
  }

  TempDir keys_;
  std::unique_ptr<KafkaTestClient> kafka_;
};

// ------------------------------------------------------------------------------------------------------ tests

TEST_F(KafkaE2eTest, StructuredAndBinaryEventsFromListedAndRegexTopicsAreStoredAsSent) {
  KafkaNames names = NewNames("modes");
  const std::string listed = UniqueTopic("e2e.listed");
  const std::string family = UniqueTopic("e2e");  // e2e-<uuid>: the regex matches e2e-<uuid>.<anything>
  const std::string early = family + ".early";
  const std::string late = family + ".late";
  names.topics = listed;
  names.regex = "^" + family + "\\..*";
  kafka_->CreateTopic(listed, 2);
  kafka_->CreateTopic(early, 2);

  const std::string user_prefix = "kraw-" + common::NewUuid() + "-";
  std::vector<std::string> users;
  for (int user_idx = 0; user_idx < 6; ++user_idx) users.push_back(user_prefix + std::to_string(user_idx));
  std::vector<SentEvent> sent;
  std::vector<KafkaTestMessage> to_listed, to_early, to_late;
  for (int n = 0; n < 240; ++n) {
    sent.push_back(VariedEvent("modes-", n, users));
    (n % 2 == 0 ? to_listed : to_early).push_back(ToMessage(sent.back(), (n / 2) % 2));
  }
  for (int n = 240; n < 280; ++n) {
    sent.push_back(VariedEvent("modes-", n, users));
    to_late.push_back(ToMessage(sent.back(), 0));
  }

  TempDir data;
  Instance service;
  ASSERT_NO_FATAL_FAILURE(Start(service, data, Env(names, kafka_->brokers())));
  kafka_->ProduceMany(listed, to_listed);
  kafka_->ProduceMany(early, to_early);

  auto stored_count = [&] { return ForEachStored(service, [](const json&) {}); };
  const auto consume_start = Clock::now();
  ASSERT_TRUE(Eventually([&] { return stored_count() >= 240; }, 60s))
      << "stored " << stored_count() << " of 240\n" << Tail(service.process->output());
  RecordProperty("first_240_seconds", std::to_string(SecondsSince(consume_start)));

  // The late topic, created after the start and matched by the regex, is picked up (metadata refresh: 10 s).
  kafka_->CreateTopic(late, 1);
  kafka_->ProduceMany(late, to_late);
  const auto late_start = Clock::now();
  ASSERT_TRUE(Eventually([&] { return stored_count() >= sent.size(); }, 30s, 250ms))
      << "the topic created after the start was not consumed within 30 s: stored " << stored_count() << " of "
      << sent.size() << "\n" << Tail(service.process->output());
  RecordProperty("late_topic_seconds", std::to_string(SecondsSince(late_start)));
  {
    auto [status, consumer] = service.Consumer();
    EXPECT_EQ(status, 200) << consumer.dump();
    std::set<std::string> assigned;
    for (const auto& partition : consumer["partitions"]) assigned.insert(partition["topic"].get<std::string>());
    EXPECT_EQ(assigned, (std::set<std::string>{listed, early, late})) << consumer.dump();
    EXPECT_EQ(consumer["group_id"], names.group);
  }

  // Each user's pseudonym, from the read-back filtered by the raw id (pseudonymized by the server); the raw id
  // never appears in an answer.
  std::map<std::string, std::string> pseudonyms;
  std::map<std::string, size_t> sent_per_user;
  for (const auto& event : sent) ++sent_per_user[event.user];
  for (const auto& user : users) {
    auto response = service.client->Get(kEvents + "?limit=1000&user_id=" + UrlEncode(user), service.admin);
    ASSERT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(response.body.find(user), std::string::npos) << "raw user id in the answer";
    json items = response.Json()["items"];
    EXPECT_EQ(items.size(), sent_per_user[user]) << user;
    std::set<std::string> seen;
    for (const auto& item : items) {
      seen.insert(item.contains("subject") ? item["subject"].get<std::string>()
                                           : item["data"].value("user_id", std::string("(none)")));
    }
    ASSERT_EQ(seen.size(), 1u) << "one user, one pseudonym: " << json(seen).dump();
    pseudonyms[user] = *seen.begin();
    EXPECT_EQ(pseudonyms[user].rfind("u_", 0), 0u) << pseudonyms[user];
  }
  std::set<std::string> distinct_pseudonyms;
  for (const auto& [user, pseudonym] : pseudonyms) distinct_pseudonyms.insert(pseudonym);
  EXPECT_EQ(distinct_pseudonyms.size(), users.size()) << "distinct users share a pseudonym";

  // Every stored event equals what was sent (its user as the pseudonym); nothing else is stored.
  std::map<std::string, const SentEvent*> by_id;
  for (const auto& event : sent) by_id[event.id] = &event;
  std::map<std::string, int> stored_ids;
  std::map<std::pair<std::string, std::string>, int> stored_per_type_game, sent_per_type_game;
  ForEachStored(
      service,
      [&](const json& item) {
        const std::string id = item["id"].get<std::string>();
        ++stored_ids[id];
        stored_per_type_game[{item["type"].get<std::string>(), item["data"].value("game_id", "")}]++;
        auto it = by_id.find(id);
        if (it == by_id.end()) {
          ADD_FAILURE() << "stored but never sent: " << item.dump();
          return;
        }
        EXPECT_EQ(item, Expected(*it->second, pseudonyms[it->second->user]))
            << (it->second->binary ? "binary" : "structured") << " mode event " << id;
      },
      users);
  for (const auto& event : sent) {
    EXPECT_EQ(stored_ids[event.id], 1) << event.id;
    sent_per_type_game[{event.type, event.Game()}]++;
  }
  EXPECT_EQ(stored_per_type_game, sent_per_type_game);

  // The analytics answer the same counts: purchases and sessions per game, counted here from what was sent.
  for (const auto& [metric, type] : std::vector<std::pair<std::string, std::string>>{{"purchases_count", kBuy},
                                                                                      {"sessions", kSession}}) {
    auto response = service.client->Get(kApi + "/metrics/values/" + metric +
                                            "?period_start=2024-03-01&period_end=2024-03-03&limit=10&dimensions=" +
                                            UrlEncode(R"(["game_id"])"),
                                        service.admin);
    ASSERT_EQ(response.status, 200) << response.body;
    std::map<std::string, double> per_game;
    const json document = response.Json();
    for (const auto& series : document["series"]) {
      for (const auto& point : series["points"]) {
        per_game[series["dimensions"]["game_id"].get<std::string>()] += point[1].get<double>();
      }
    }
    std::map<std::string, double> expected;
    for (const auto& event : sent) {
      if (event.type == type) expected[event.Game()] += 1;
    }
    EXPECT_EQ(per_game, expected) << metric << ": " << response.body;
  }
  const std::string metrics = service.Metrics();
  EXPECT_EQ(Sample(metrics, "analytics_kafka_messages_total", {{"outcome", "accepted"}}), double(sent.size()));
  EXPECT_EQ(Sample(metrics, "analytics_kafka_messages_total", {{"outcome", "dead_lettered"}}), 0.0);
  EXPECT_EQ(service.Get(kDeadLetters)["total"], 0);

  // A replay of everything: the same data dir under a new group reads every topic from the start again; every
  // event is a duplicate and the store is unchanged.
  ASSERT_EQ(service.process->Stop(SIGTERM).exit_code, 0);
  names.group = UniqueTopic("e2e-group-modes-replay");
  ASSERT_NO_FATAL_FAILURE(Start(service, data, Env(names, kafka_->brokers())));
  std::map<std::string, std::vector<int64_t>> ends = {{listed, {0, 0}}, {early, {0, 0}}, {late, {0}}};
  for (const auto& [topic, messages] : {std::pair{listed, &to_listed}, {early, &to_early}, {late, &to_late}}) {
    for (const auto& message : *messages) ++ends[topic][message.partition];
  }
  const bool replayed = Eventually(
      [&] {
        for (const auto& [topic, topic_ends] : ends) {
          if (!CommittedToEnd(names.group, topic, topic_ends)) return false;
        }
        return true;
      },
      60s, 250ms);
  ASSERT_TRUE(replayed) << "the new group did not read everything: " << CommittedText(names.group, listed, ends[listed])
                        << CommittedText(names.group, early, ends[early]) << CommittedText(names.group, late, ends[late]);
  EXPECT_EQ(service.Messages("duplicate"), double(sent.size()));
  EXPECT_EQ(service.Messages("accepted"), 0.0);
  std::map<std::string, int> replayed_ids;
  ForEachStored(service, [&](const json& item) { ++replayed_ids[item["id"].get<std::string>()]; });
  EXPECT_EQ(replayed_ids, stored_ids);
}

// One message of the poison test: what is produced and, for a refused one, the rejection expected (docs/intake.md)
// and the same event as an NDJSON line for the HTTP intake (empty: none).
struct PoisonCase {
  std::string label;
  KafkaTestMessage message;
  enum class Outcome { kStored, kDeadLettered, kDropped } outcome = Outcome::kStored;
  std::string code, field, event_id;
  std::string http_line;
};

TEST_F(KafkaE2eTest, PoisonMessagesGoToTheDeadLetterTopicOnceWhileThePartitionKeepsFlowing) {
  // One regex over the source topic and the service's own produced and dead-letter topics: those two are
  // assigned like any match but their messages are skipped, so the dead-lettered copies are not consumed again.
  const std::string family = UniqueTopic("e2e-poison");
  const std::string topic = family + ".source";
  KafkaNames names;
  names.group = UniqueTopic("e2e-group-poison");
  names.regex = "^" + family + "\\..*";
  names.produced = family + ".produced";
  names.dlq = family + ".dlq";
  for (const auto& name : {topic, names.produced, names.dlq}) kafka_->CreateTopic(name, 1);
  const std::string raw_user = "praw-" + common::NewUuid();
  const std::string erased_user = "perased-" + common::NewUuid();
  const std::string time = "2024-03-02T12:00:00.000Z";

  std::vector<PoisonCase> cases;
  int good_idx = 0;
  auto good = [&](bool binary) {
    SentEvent event;
    event.id = "good-" + std::to_string(good_idx++);
    event.type = kView;
    event.source = "/services/store";
    event.time = time;
    event.user = raw_user;
    event.binary = binary;
    event.pretty = good_idx % 2 == 0;
    event.data = {{"page_type", "home"}, {"platform", "windows"}};
    PoisonCase item{"good " + event.id, ToMessage(event, 0)};
    item.message.key = "key-" + event.id;
    item.event_id = event.id;
    cases.push_back(std::move(item));
  };
  auto purchase = [&](const std::string& id) {
    return json{{"specversion", "1.0"}, {"id", id}, {"source", "/services/payments"}, {"type", kBuy},
                {"time", time}, {"subject", raw_user},
                {"data", {{"order_id", "ord_1"}, {"game_id", "game_1"}, {"amount", 499}, {"currency", "RUB"}}}};
  };
  // A poison message with these headers (binary mode: `http_line` is the structured event its headers and value
  // make).
  auto binary = [&](const std::string& label, Headers headers, const std::string& value, const std::string& code,
                    const std::string& field, const std::string& event_id, const std::string& http_line) {
    PoisonCase item{label};
    item.message.partition = 0;
    item.message.key = "key-" + label;
    item.message.value = value;
    item.message.headers = std::move(headers);
    item.outcome = PoisonCase::Outcome::kDeadLettered;
    item.code = code;
    item.field = field;
    item.event_id = event_id;
    item.http_line = http_line;
    cases.push_back(std::move(item));
  };
  // A structured-mode poison message: `value` as sent; `http_line` the same event for the HTTP intake.
  auto structured = [&](const std::string& label, const std::string& value, const std::string& code,
                        const std::string& field, const std::string& event_id, const std::string& http_line) {
    binary(label, {{"content-type", "application/cloudevents+json"}, {"x-trace", "t-" + label}}, value, code, field,
           event_id, http_line);
  };
  const std::string binary_data = R"({"page_type":"home","platform":"windows"})";
  auto ce = [&](const std::string& id) {
    return Headers{{"ce_specversion", "1.0"}, {"ce_id", id}, {"ce_source", "/services/store"}, {"ce_type", kView},
                   {"ce_time", time}, {"ce_subject", raw_user}};
  };
  auto attributes = [&](const std::string& id) {  // the structured text of ce(id), as the service builds it
    return R"({"specversion":"1.0","id":")" + id + R"(","source":"/services/store","type":")" + kView +
           R"(","time":")" + time + R"(","subject":")" + raw_user + R"(")";
  };

  good(false);
  structured("not-json", "this is not JSON at all {", "MALFORMED_EVENT", "", "", "this is not JSON at all {");
  good(true);
  {
    json event = purchase("bad-amount");
    event["data"]["amount"] = "ten-rubles-q7";
    structured("wrong-schema", event.dump(), "INVALID_FIELD", "data.amount", "bad-amount", event.dump());
  }
  good(false);
  {
    json event = purchase("no-source");
    event.erase("source");
    structured("missing-source", event.dump(2), "MISSING_ATTRIBUTE", "source", "no-source", event.dump());
  }
  {
    Headers headers = ce("no-type");
    headers.erase(headers.begin() + 3);  // ce_type
    headers.emplace_back("content-type", "application/json");
    const std::string line = R"({"specversion":"1.0","id":"no-type","source":"/services/store","time":")" + time +
                             R"(","subject":")" + raw_user + R"(","datacontenttype":"application/json","data":)" +
                             binary_data + "}";
    binary("binary-missing-type", headers, binary_data, "MISSING_ATTRIBUTE", "type", "no-type", line);
  }
  good(true);
  {
    Headers headers = ce("bad-time");
    headers[4].second = "yesterday";
    json line = json::parse(attributes("bad-time") + ",\"data\":" + binary_data + "}");
    line["time"] = "yesterday";
    binary("binary-bad-time", headers, binary_data, "INVALID_ATTRIBUTE", "time", "bad-time", line.dump());
  }
  {
    Headers headers = ce("twice");
    headers.emplace_back("ce_id", "twice");
    const std::string line = attributes("twice") + R"(,"id":"twice","data":)" + binary_data + "}";
    binary("binary-repeated-id", headers, binary_data, "INVALID_ATTRIBUTE", "id", "twice", line);
  }
  {
    Headers headers = ce("broken-data");
    headers.emplace_back("content-type", "application/json");
    binary("binary-data-not-json", headers, "{\"page_type\": ", "MALFORMED_EVENT", "", "",
           attributes("broken-data") + R"(,"datacontenttype":"application/json","data":{"page_type": })");
  }
  {
    Headers headers = ce("text-data");
    headers.emplace_back("content-type", "text/plain");
    binary("binary-text-data", headers, "hello-q7", "INVALID_ATTRIBUTE", "datacontenttype", "text-data",
           attributes("text-data") + R"(,"datacontenttype":"text/plain","data":"hello-q7"})");
  }
  good(false);
  {
    json event = purchase("too-large");
    event["data"]["note"] = std::string(300000, 'x');
    structured("too-large", event.dump(), "EVENT_TOO_LARGE", "", "", event.dump());
  }
  {
    PoisonCase item{"empty-value"};
    item.message.partition = 0;
    item.message.key = "key-empty-value";
    item.outcome = PoisonCase::Outcome::kDeadLettered;
    item.code = "MALFORMED_EVENT";
    cases.push_back(std::move(item));
  }
  {
    json array = json::array({purchase("in-array")});
    structured("json-array", array.dump(), "MALFORMED_EVENT", "", "", array.dump());
  }
  {
    json event = purchase("no-currency");
    event["data"].erase("currency");
    structured("missing-field", event.dump(), "MISSING_FIELD", "data.currency", "no-currency", event.dump());
  }
  {
    SentEvent event;
    event.id = "erased-0";
    event.type = kView;
    event.source = "/services/store";
    event.time = time;
    event.user = erased_user;
    event.data = {{"page_type", "home"}};
    PoisonCase item{"erased-user", ToMessage(event, 0)};
    item.outcome = PoisonCase::Outcome::kDropped;
    item.event_id = event.id;
    cases.push_back(std::move(item));
  }
  good(false);
  good(true);

  TempDir data;
  Instance service;
  ASSERT_NO_FATAL_FAILURE(Start(service, data, Env(names, kafka_->brokers())));
  // The erased user's events are refused (USER_ERASED) and dropped: neither stored nor dead-lettered.
  auto erased = service.client->Request("DELETE", kApi + "/users/" + erased_user + "/events", "",
                                        {{"Authorization", "Bearer " + service.admin}});
  ASSERT_EQ(erased.status, 200) << erased.body;

  std::vector<KafkaTestMessage> messages;
  for (const auto& item : cases) messages.push_back(item.message);
  kafka_->ProduceMany(topic, messages);
  const std::vector<int64_t> end = {static_cast<int64_t>(cases.size())};
  ASSERT_TRUE(Eventually([&] { return CommittedToEnd(names.group, topic, end); }, 60s, 200ms))
      << "committed " << CommittedText(names.group, topic, end) << "\n" << Tail(service.process->output());

  // Where each message landed (by key: unique), then the dead-letter topic. Offsets are committed only after the
  // dead-letter topic acknowledged the batch's refused messages, so every copy is there by now; asking for one
  // more than expected shows there is none besides.
  std::map<int64_t, const PoisonCase*> by_offset;
  {
    auto read = kafka_->ReadAll(topic, cases.size(), 30s);
    ASSERT_EQ(read.size(), cases.size());
    for (const auto& message : read) {
      for (const auto& item : cases) {
        if (item.message.key == message.key) by_offset[message.offset] = &item;
      }
    }
    ASSERT_EQ(by_offset.size(), cases.size());
  }
  size_t expected_dead = 0;
  for (const auto& item : cases) expected_dead += item.outcome == PoisonCase::Outcome::kDeadLettered;
  // The copies in the dead-letter topic are read by the group and skipped, not dead-lettered again.
  EXPECT_TRUE(Eventually([&] { return service.Messages("skipped") == double(expected_dead); }, 30s))
      << "skipped " << service.Messages("skipped");
  EXPECT_TRUE(Eventually([&] { return kafka_->CommittedOffset(names.group, names.dlq, 0) == int64_t(expected_dead); },
                         30s))
      << "committed on the dead-letter topic: " << kafka_->CommittedOffset(names.group, names.dlq, 0);
  auto dead = kafka_->ReadAll(names.dlq, expected_dead + 1, 3s);
  EXPECT_EQ(dead.size(), expected_dead);
  std::map<std::string, int> dead_per_label;
  for (const auto& message : dead) {
    const std::string* offset_text = FindHeader(message.headers, "analytics_dlq_source_offset");
    ASSERT_NE(offset_text, nullptr) << HeadersText(message.headers);
    auto it = by_offset.find(std::stoll(*offset_text));
    ASSERT_NE(it, by_offset.end()) << HeadersText(message.headers);
    const PoisonCase& item = *it->second;
    SCOPED_TRACE(item.label);
    ++dead_per_label[item.label];
    EXPECT_TRUE(item.outcome == PoisonCase::Outcome::kDeadLettered) << "dead-lettered but not poison";
    // The original key, value and headers, byte for byte, then the reason headers, each once.
    EXPECT_EQ(message.key, item.message.key);
    EXPECT_TRUE(message.value == item.message.value) << "value differs (" << message.value.size() << " vs "
                                                     << item.message.value.size() << " bytes)";
    ASSERT_GE(message.headers.size(), item.message.headers.size());
    EXPECT_EQ(Headers(message.headers.begin(), message.headers.begin() + item.message.headers.size()),
              item.message.headers);
    for (const auto& name : kDlqHeaders) EXPECT_EQ(CountHeader(message.headers, name), 1u) << name;
    EXPECT_EQ(message.headers.size(), item.message.headers.size() + kDlqHeaders.size()) << HeadersText(message.headers);
    auto header = [&](const std::string& name) {
      const std::string* value = FindHeader(message.headers, name);
      return value ? *value : std::string("(absent)");
    };
    EXPECT_EQ(header("analytics_dlq_code"), item.code);
    EXPECT_EQ(header("analytics_dlq_field"), item.field);
    EXPECT_EQ(header("analytics_dlq_event_id"), item.event_id);
    EXPECT_EQ(header("analytics_dlq_source_topic"), topic);
    EXPECT_EQ(header("analytics_dlq_source_partition"), "0");
    EXPECT_FALSE(header("analytics_dlq_reason").empty());
    for (const std::string& value : {std::string("yesterday"), std::string("ten-rubles-q7"), std::string("hello-q7"), raw_user}) {
      EXPECT_EQ(header("analytics_dlq_reason").find(value), std::string::npos)
          << "the reason quotes a value: " << header("analytics_dlq_reason");
    }
    EXPECT_TRUE(common::ParseRfc3339Millis(header("analytics_dlq_time")).ok()) << header("analytics_dlq_time");
  }
  for (const auto& item : cases) {
    if (item.outcome == PoisonCase::Outcome::kDeadLettered) {
      EXPECT_EQ(dead_per_label[item.label], 1) << item.label;
    }
  }

  // The good ones are stored, including those after every poison message; nothing else is.
  std::set<std::string> expected_ids;
  for (const auto& item : cases) {
    if (item.outcome == PoisonCase::Outcome::kStored) expected_ids.insert(item.event_id);
  }
  std::set<std::string> stored;
  ForEachStored(service, [&](const json& item) { stored.insert(item["id"].get<std::string>()); }, {raw_user});
  EXPECT_EQ(stored, expected_ids);

  // The dead-letter API lists each refused message once (channel kafka), with the intake's code and field and the
  // event after personal-data treatment.
  json letters = service.Get(kDeadLetters + "?limit=1000");
  std::map<std::string, int> letters_per_key;
  size_t kafka_letters = 0;
  for (const auto& letter : letters["items"]) {
    EXPECT_EQ(letter["channel"], "kafka") << letter.dump().substr(0, 500);
    ++kafka_letters;
    bool matched = false;
    for (const auto& item : cases) {
      if (item.outcome != PoisonCase::Outcome::kDeadLettered || item.code != Text(letter["code"]) ||
          item.field != Text(letter["field"]) || item.event_id != Text(letter["event_id"])) {
        continue;
      }
      matched = true;
      ++letters_per_key[item.code + "|" + item.field + "|" + item.event_id];
      break;
    }
    EXPECT_TRUE(matched) << "unexpected dead letter " << letter.dump().substr(0, 500);
    EXPECT_EQ(letter.dump().find(raw_user), std::string::npos) << "raw user id in a dead letter";
  }
  EXPECT_EQ(kafka_letters, expected_dead) << letters.dump().substr(0, 3000);
  for (const auto& item : cases) {
    if (item.outcome != PoisonCase::Outcome::kDeadLettered) continue;
    // The MALFORMED_EVENT messages (no readable id) share a key: so many letters as messages.
    const std::string key = item.code + "|" + item.field + "|" + item.event_id;
    const auto same = std::count_if(cases.begin(), cases.end(), [&](const PoisonCase& other) {
      return other.outcome == PoisonCase::Outcome::kDeadLettered &&
             other.code + "|" + other.field + "|" + other.event_id == key;
    });
    EXPECT_EQ(letters_per_key[key], same) << item.label;
  }

  const std::string metrics = service.Metrics();
  EXPECT_EQ(Sample(metrics, "analytics_kafka_messages_total", {{"outcome", "accepted"}}), double(expected_ids.size()));
  EXPECT_EQ(Sample(metrics, "analytics_kafka_messages_total", {{"outcome", "dead_lettered"}}), double(expected_dead));

  // The HTTP intake gives the same code and field for the same events (NDJSON: one event per line, like one per
  // message; the empty message has no NDJSON equivalent).
  std::string ndjson;
  std::vector<const PoisonCase*> lines;
  for (const auto& item : cases) {
    if (item.http_line.empty()) continue;
    ndjson += item.http_line + "\n";
    lines.push_back(&item);
  }
  auto response = service.client->Request(
      "POST", kEvents, ndjson,
      {{"Authorization", "Bearer " + service.producer}, {"Content-Type", "application/x-ndjson"}});
  ASSERT_EQ(response.status, 202) << response.body.substr(0, 2000);
  json rejected = response.Json()["rejected"];
  ASSERT_EQ(rejected.size(), lines.size()) << rejected.dump();
  for (const auto& rejection : rejected) {
    const PoisonCase& item = *lines.at(rejection["index"].get<size_t>());
    EXPECT_EQ(rejection["code"], item.code) << item.label << " over HTTP";
    EXPECT_EQ(rejection["field"], item.field) << item.label << " over HTTP";
  }
}

TEST_F(KafkaE2eTest, Kill9MidStreamThenRestartStoresEveryEventExactlyOnce) {
  const char* override_count = std::getenv("ANALYTICS_KAFKA_E2E_KILL_EVENTS");
  const int total = override_count ? std::atoi(override_count) : 200000;
  constexpr int kPartitions = 4;
  constexpr int kChunk = 10000;
  KafkaNames names = NewNames("kill");
  const std::string topic = UniqueTopic("e2e.kill");
  names.topics = topic;
  kafka_->CreateTopic(topic, kPartitions);
  TempDir data;
  const auto env = Env(names, kafka_->brokers(), {{"KAFKA_MAX_BATCH_EVENTS", "5000"}});
  Instance service;
  ASSERT_NO_FATAL_FAILURE(Start(service, data, env));

  // Events kill-0 .. kill-<total-1> over the partitions round robin, in chunks, while the service consumes; at the
  // end kill-0 once more on purpose (another partition, another offset).
  std::vector<int64_t> ends(kPartitions, 0);
  std::atomic<int> produced{0};
  std::atomic<bool> producer_done{false}, stop{false};
  std::string producer_error;
  const auto start = Clock::now();
  ScopedThread producer(stop, [&] {
    try {
      KafkaTestClient client(kafka_->brokers());
      for (int first = 0; first < total && !stop; first += kChunk) {
        std::vector<KafkaTestMessage> chunk;
        for (int n = first; n < std::min(total, first + kChunk); ++n) {
          KafkaTestMessage message;
          message.partition = n % kPartitions;
          message.value = SmallEvent("kill-" + std::to_string(n), n);
          chunk.push_back(std::move(message));
          ++ends[n % kPartitions];
        }
        client.ProduceMany(topic, chunk);
        produced += static_cast<int>(chunk.size());
      }
      KafkaTestMessage again;
      again.partition = kPartitions - 1;
      again.value = SmallEvent("kill-0", 0);
      client.ProduceMany(topic, {again});
      ++ends[kPartitions - 1];
    } catch (const std::exception& e) {
      producer_error = e.what();
    }
    producer_done = true;
  });

  // The kill: once a fifth is stored (several batches committed) while messages are still waiting.
  double accepted_at_kill = 0;
  json consumer_at_kill;
  const bool reached = Eventually(
      [&] {
        accepted_at_kill = service.Messages("accepted");
        return accepted_at_kill >= total / 5 || producer_done;
      },
      120s, 50ms);
  // A random moment within the next batches, so that kills land at every stage of a batch over the runs (the
  // killed batch is then replayed: stored again as duplicates, or for the first time).
  const int jitter_ms = static_cast<int>(std::random_device()() % 300);
  std::this_thread::sleep_for(std::chrono::milliseconds(jitter_ms));
  consumer_at_kill = service.Consumer().second;
  const double seconds_to_kill = SecondsSince(start);
  auto killed = service.process->Stop(SIGKILL);
  EXPECT_EQ(killed.signal, SIGKILL);
  // The producer finishes its events (the killed service no longer reads them).
  while (!producer_done) std::this_thread::sleep_for(10ms);
  producer.Join();
  ASSERT_TRUE(producer_error.empty()) << producer_error;
  ASSERT_TRUE(reached) << "a fifth was not stored in 120 s\n" << Tail(killed.output);

  int64_t committed_at_kill = 0;
  int64_t messages = 0;
  for (int partition = 0; partition < kPartitions; ++partition) {
    committed_at_kill += std::max<int64_t>(0, kafka_->CommittedOffset(names.group, topic, partition));
    messages += ends[partition];
  }
  RecordProperty("produced_messages", std::to_string(messages));
  RecordProperty("accepted_at_kill", std::to_string(accepted_at_kill));
  RecordProperty("committed_at_kill", std::to_string(committed_at_kill));
  RecordProperty("seconds_to_kill", std::to_string(seconds_to_kill));
  RecordProperty("kill_jitter_ms", jitter_ms);
  ASSERT_LT(committed_at_kill, messages) << "the kill did not land mid-stream; lag then: " << consumer_at_kill.dump();

  // Restart on the same data dir and group: consumption resumes from the last commit (the killed member leaves the
  // group after its session timeout, 6 s) and the replayed events are dropped as duplicates.
  const auto restart = Clock::now();
  ASSERT_NO_FATAL_FAILURE(Start(service, data, env));
  ASSERT_TRUE(Eventually([&] { return CommittedToEnd(names.group, topic, ends); }, 120s, 500ms))
      << "committed " << CommittedText(names.group, topic, ends) << "\n" << Tail(service.process->output());
  RecordProperty("seconds_after_restart", std::to_string(SecondsSince(restart)));
  EXPECT_EQ(service.Consumer().second["lag"], 0);
  RecordProperty("duplicates_after_restart", std::to_string(service.Messages("duplicate")));

  const auto read_start = Clock::now();
  std::map<std::string, int> stored = StoredIds(service);
  RecordProperty("read_back_seconds", std::to_string(SecondsSince(read_start)));
  size_t missing = 0, repeated = 0;
  std::string examples;
  for (int n = 0; n < total; ++n) {
    auto it = stored.find("kill-" + std::to_string(n));
    if (it == stored.end()) {
      if (++missing <= 20) examples += " missing kill-" + std::to_string(n);
    } else if (it->second != 1) {
      if (++repeated <= 20) examples += " kill-" + std::to_string(n) + " x" + std::to_string(it->second);
    }
  }
  EXPECT_EQ(missing, 0u) << examples;
  EXPECT_EQ(repeated, 0u) << examples;
  EXPECT_EQ(stored.size(), static_cast<size_t>(total)) << "events stored that were never sent";
}

TEST_F(KafkaE2eTest, RebalanceBetweenTwoInstancesLosesNothingAndStoresNothingTwice) {
  constexpr int kPartitions = 6;
  constexpr int kChunk = 300;
  KafkaNames names = NewNames("rebalance");
  const std::string topic = UniqueTopic("e2e.rebalance");
  names.topics = topic;
  kafka_->CreateTopic(topic, kPartitions);
  const auto env = Env(names, kafka_->brokers(), {{"KAFKA_MAX_BATCH_EVENTS", "2000"}});
  TempDir data_a, data_b;
  Instance a, b;
  ASSERT_NO_FATAL_FAILURE(Start(a, data_a, env));

  // A steady stream: a chunk every 100 ms until told to stop. It pauses while a process is started (a fork while
  // this process's threads allocate is what the test support avoids).
  std::vector<int64_t> ends(kPartitions, 0);
  std::atomic<int> produced{0};
  std::atomic<bool> stop{false}, pause{false}, paused{false};
  std::string producer_error;
  ScopedThread producer(stop, [&] {
    try {
      KafkaTestClient client(kafka_->brokers());
      int next = 0;
      while (!stop) {
        if (pause) {
          paused = true;
          while (pause && !stop) std::this_thread::sleep_for(5ms);
          paused = false;
          continue;
        }
        std::vector<KafkaTestMessage> chunk;
        for (int n = next; n < next + kChunk; ++n) {
          KafkaTestMessage message;
          message.partition = n % kPartitions;
          message.value = SmallEvent("rb-" + std::to_string(n), n);
          chunk.push_back(std::move(message));
        }
        client.ProduceMany(topic, chunk);
        for (int n = next; n < next + kChunk; ++n) ++ends[n % kPartitions];
        next += kChunk;
        produced = next;
        std::this_thread::sleep_for(100ms);
      }
    } catch (const std::exception& e) {
      producer_error = e.what();
    }
    paused = true;
  });

  // The first instance has all six partitions and consumes; then the second joins the group.
  if (!Eventually([&] { return a.Messages("accepted") >= 2 * kChunk; }, 60s)) {
    FAIL() << "the first instance consumed nothing\n" << Tail(a.process->output());
  }
  pause = true;
  Eventually([&] { return paused.load(); }, 30s, 5ms);
  Start(b, data_b, env);
  pause = false;
  if (HasFatalFailure()) return;

  // Both get partitions (a rebalance: the first commits its batch and gives some up).
  std::set<int> partitions_a, partitions_b;
  auto assigned = [&](Instance& instance) {
    std::set<int> partitions;
    auto [status, consumer] = instance.Consumer();
    for (const auto& partition : consumer["partitions"]) {
      if (partition["topic"] == topic) partitions.insert(partition["partition"].get<int>());
    }
    return partitions;
  };
  const auto join_start = Clock::now();
  const bool shared = Eventually(
      [&] {
        partitions_a = assigned(a);
        partitions_b = assigned(b);
        return !partitions_a.empty() && !partitions_b.empty() && partitions_a.size() + partitions_b.size() == 6;
      },
      30s, 200ms);
  if (!shared) {
    FAIL() << "both instances never held partitions: " << json(partitions_a).dump() << " / "
           << json(partitions_b).dump();
  }
  RecordProperty("join_rebalance_seconds", std::to_string(SecondsSince(join_start)));
  for (int partition : partitions_a) EXPECT_EQ(partitions_b.count(partition), 0u) << "partition " << partition << " twice";
  // Both consume their share for a while.
  const double b_before = b.Messages("accepted");
  const double a_before = a.Messages("accepted");
  const bool both_consume = Eventually(
      [&] { return b.Messages("accepted") >= b_before + kChunk && a.Messages("accepted") >= a_before + kChunk; }, 30s);
  EXPECT_TRUE(both_consume) << "a " << a.Messages("accepted") << " b " << b.Messages("accepted");

  // The first stops gracefully while the stream goes on: its partitions move to the second.
  auto stopped = a.process->Stop(SIGTERM, 60);
  EXPECT_EQ(stopped.exit_code, 0) << Tail(stopped.output);
  a.client.reset();
  const bool moved = Eventually([&] { return assigned(b).size() == 6; }, 30s, 200ms);
  EXPECT_TRUE(moved) << "the second never got all partitions: " << json(assigned(b)).dump();
  const int produced_at_stop = produced;
  Eventually([&] { return produced >= produced_at_stop + 5 * kChunk; }, 30s);
  producer.Join();
  ASSERT_TRUE(producer_error.empty()) << producer_error;
  RecordProperty("produced", std::to_string(produced.load()));

  ASSERT_TRUE(Eventually([&] { return CommittedToEnd(names.group, topic, ends); }, 90s, 500ms))
      << "committed " << CommittedText(names.group, topic, ends) << "\n" << Tail(b.process->output());
  std::map<std::string, int> stored_b = StoredIds(b);
  ASSERT_EQ(b.process->Stop(SIGTERM).exit_code, 0);

  // The first instance's store, read by the binary without Kafka (it must not join the group again).
  auto without_kafka = env;
  without_kafka["KAFKA_BROKERS"] = "";
  Instance a_reader;
  ASSERT_NO_FATAL_FAILURE(Start(a_reader, data_a, without_kafka));
  std::map<std::string, int> stored_a = StoredIds(a_reader);
  RecordProperty("stored_a", std::to_string(stored_a.size()));
  RecordProperty("stored_b", std::to_string(stored_b.size()));
  EXPECT_GT(stored_a.size(), 0u);
  EXPECT_GT(stored_b.size(), 0u);

  size_t missing = 0, in_both = 0, repeated = 0;
  std::string examples;
  for (int n = 0; n < produced; ++n) {
    const std::string id = "rb-" + std::to_string(n);
    const int count_a = stored_a.count(id) ? stored_a[id] : 0;
    const int count_b = stored_b.count(id) ? stored_b[id] : 0;
    if (count_a + count_b == 0 && ++missing <= 20) examples += " missing " + id;
    if (count_a > 0 && count_b > 0 && ++in_both <= 20) examples += " in-both " + id;
    if ((count_a > 1 || count_b > 1) && ++repeated <= 20) examples += " repeated " + id;
  }
  EXPECT_EQ(missing, 0u) << examples;
  EXPECT_EQ(in_both, 0u) << "events stored by both instances (a rebalance repeated them):" << examples;
  EXPECT_EQ(repeated, 0u) << examples;
  EXPECT_EQ(stored_a.size() + stored_b.size(), static_cast<size_t>(produced.load()));
}

TEST_F(KafkaE2eTest, ProducedEventsAreRelayedFromTheOutboxAlsoAfterTheBrokerWasUnreachable) {
  // Connected: a segment's segment.updated events (creation, then a refresh) reach the produced topic.
  KafkaNames names = NewNames("outbox");
  const std::string input = UniqueTopic("e2e.outbox.input");
  names.topics = input;
  kafka_->CreateTopic(input, 1);
  TempDir data;
  Instance service;
  ASSERT_NO_FATAL_FAILURE(Start(service, data, Env(names, kafka_->brokers())));

  ASSERT_TRUE(Eventually(
      [&] {
        auto [status, consumer] = service.Consumer();
        return status == 200 && consumer["status"] == "ok" && consumer["partitions"].size() == 1;
      },
      30s))
      << service.client->Get("/readyz").body;
  EXPECT_EQ(service.Consumer().second["partitions"][0]["topic"], input);
  EXPECT_TRUE(Eventually(
      [&] { return Sample(service.Metrics(), "analytics_kafka_consumer_lag", {{"topic", input}, {"partition", "0"}}).has_value(); },
      10s))
      << service.Metrics();

  auto created = service.Send("POST", kSegmentDefinitions,
                              {{"name", "kafka_e2e_list"}, {"type", "static"}, {"user_ids", {"seg-u1", "seg-u2", "seg-u3"}}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string segment = created.Json()["id"].get<std::string>();
  auto refreshed = service.Send("POST", kApi + "/segments/" + segment + "/refresh", json::object());
  ASSERT_LT(refreshed.status, 300) << refreshed.body;

  auto outbox_items = [&](Instance& instance) {
    json items = json::array();
    const json outbox = instance.Get(kOutbox + "?limit=1000&type=" + UrlEncode(kUpdatedType));
    for (const auto& item : outbox["items"]) {
      if (item["key"] == segment) items.push_back(item);
    }
    return items;
  };
  json items;
  ASSERT_TRUE(Eventually(
      [&] {
        items = outbox_items(service);
        return items.size() == 2 && !items[0]["relayed_at"].is_null() && !items[1]["relayed_at"].is_null();
      },
      30s))
      << items.dump();
  auto produced = kafka_->ReadAll(names.produced, 3, 3s);
  ASSERT_EQ(produced.size(), 2u);
  for (size_t item_idx = 0; item_idx < 2; ++item_idx) {
    const json& item = items[item_idx];
    const KafkaTestMessage& message = produced[item_idx];  // one partition, relayed in sequence order
    SCOPED_TRACE(item.dump());
    EXPECT_EQ(message.key, segment);
    const std::string* content_type = FindHeader(message.headers, "content-type");
    ASSERT_NE(content_type, nullptr) << HeadersText(message.headers);
    EXPECT_EQ(content_type->rfind("application/cloudevents+json", 0), 0u) << *content_type;
    const json value = json::parse(message.value, nullptr, false);
    EXPECT_EQ(value, item["event"]) << message.value;
    EXPECT_EQ(value["type"], kUpdatedType);
    EXPECT_EQ(value["specversion"], "1.0");
    EXPECT_EQ(value["data"]["segment_id"], segment);
    EXPECT_TRUE(common::ParseRfc3339Millis(item["relayed_at"].get<std::string>()).ok());
    EXPECT_EQ(item["topic"], names.produced) << "the outbox names another topic than the one it relays to";
  }
  EXPECT_NE(produced[0].value, produced[1].value);
  EXPECT_GE(Sample(service.Metrics(), "analytics_outbox_relayed_total").value_or(0), 2.0);
  ASSERT_EQ(service.process->Stop(SIGTERM).exit_code, 0);

  // Unreachable broker: the consumer is unavailable, produced events wait in the outbox, a restart with the broker
  // back relays them.
  KafkaNames offline = NewNames("offline");
  offline.topics = UniqueTopic("e2e.offline.input");
  kafka_->CreateTopic(offline.topics, 1);
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  TempDir offline_data;
  Instance down;
  ASSERT_NO_FATAL_FAILURE(Start(down, offline_data, Env(offline, "127.0.0.1:" + std::to_string(port))));
  json readiness;
  EXPECT_TRUE(Eventually(
      [&] {
        auto response = down.client->Get("/readyz");
        readiness = response.Json();
        return response.status == 503 && readiness["components"]["kafka_consumer"]["status"] == "unavailable";
      },
      30s))
      << readiness.dump();
  created = down.Send("POST", kSegmentDefinitions, {{"name", "kafka_e2e_offline"}, {"type", "static"}, {"user_ids", {"off-u1"}}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string offline_segment = created.Json()["id"].get<std::string>();
  json waiting;
  const json outbox_down = down.Get(kOutbox + "?limit=1000");
  for (const auto& item : outbox_down["items"]) {
    if (item["key"] == offline_segment) waiting = item;
  }
  ASSERT_TRUE(waiting.is_object()) << "segment.updated not in the outbox";
  EXPECT_TRUE(waiting["relayed_at"].is_null()) << waiting.dump();
  const auto stop_start = Clock::now();
  auto stopped = down.process->Stop(SIGTERM, 90);
  const double stop_seconds = SecondsSince(stop_start);
  RecordProperty("stop_with_broker_down_seconds", std::to_string(stop_seconds));
  EXPECT_EQ(stopped.exit_code, 0) << Tail(stopped.output);
  EXPECT_LT(stop_seconds, 15) << "a graceful stop with the broker down took " << stop_seconds << " s";

  Instance back;
  ASSERT_NO_FATAL_FAILURE(Start(back, offline_data, Env(offline, kafka_->brokers())));
  auto relayed = kafka_->ReadAll(offline.produced, 1, 30s);
  ASSERT_EQ(relayed.size(), 1u) << "the waiting record was not relayed after the restart";
  EXPECT_EQ(relayed[0].key, offline_segment);
  EXPECT_EQ(json::parse(relayed[0].value, nullptr, false), waiting["event"]);
  json after;
  EXPECT_TRUE(Eventually(
      [&] {
        const json outbox_back = back.Get(kOutbox + "?limit=1000");
        for (const auto& item : outbox_back["items"]) {
          if (item["key"] == offline_segment) after = item;
        }
        return after.is_object() && !after["relayed_at"].is_null();
      },
      30s))
      << after.dump();
  EXPECT_EQ(after["sequence"], waiting["sequence"]);
  EXPECT_TRUE(Eventually([&] { return back.client->Get("/readyz").status == 200; }, 30s))
      << back.client->Get("/readyz").body;
}

}  // namespace
}  // namespace analytics::testing
