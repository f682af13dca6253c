// End-to-end intake: the real binary over HTTP: formats, encodings, validation, dedup, privacy, erasure,
// dead letters, read-back.
#include <signal.h>
#include <zlib.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kEvents[] = "/api/v1/analytics/events";

json PageView(const std::string& id, const std::string& user, const std::string& time = "2024-03-01T10:00:00Z") {
  return {{"specversion", "1.0"}, {"id", id}, {"source", "/services/store"},
          {"type", "com.platform.store.page.viewed.v1"}, {"time", time}, {"subject", user},
          {"data", {{"page_type", "game"}, {"game_id", "game_17"}, {"country", "RU"}, {"platform", "windows"}}}};
}

std::string Gzip(const std::string& input) {
  z_stream stream{};
  deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&stream, input.size()) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  stream.avail_in = static_cast<uInt>(input.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

std::string Zstd(const std::string& input) {
  std::string out(ZSTD_compressBound(input.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), input.data(), input.size(), 3));
  return out;
}

class IntakeE2eTest : public ::testing::Test {
 protected:
  void Start(std::map<std::string, std::string> env = {}) {
    env["ANALYTICS_PSEUDONYM_KEY_FILE"] = (keys_.path() / "pseudonym.key").string();
    service_.reset();
    service_ = std::make_unique<ServiceProcess>(data_.path().string(), env);
    ASSERT_GT(service_->port(), 0) << service_->output();
    client_ = std::make_unique<HttpClient>(service_->port());
    producer_ = service_->Token({"service"}, "payments-service");
    admin_ = service_->Token({"platform_admin"}, "admin");
  }
  ClientResponse Post(const std::string& body, const std::string& content_type,
                      std::map<std::string, std::string> headers = {}) {
    headers["Authorization"] = "Bearer " + producer_;
    headers["Content-Type"] = content_type;
    return client_->Request("POST", kEvents, body, headers);
  }
  json ReadBack(const std::string& query) {
    auto response = client_->Get(std::string(kEvents) + query, admin_);
    EXPECT_EQ(response.status, 200) << response.body;
    return response.Json();
  }
  std::vector<json> ReadAll(std::string query = "?limit=50") {
    std::vector<json> all;
    while (true) {
      json page = ReadBack(query);
      for (const auto& item : page["items"]) all.push_back(item);
      if (page["next_cursor"].is_null()) break;
      query = "?limit=50&cursor=" + page["next_cursor"].get<std::string>();
    }
    return all;
  }

  TempDir data_;
  TempDir keys_;
  std::unique_ptr<ServiceProcess> service_;
  std::unique_ptr<HttpClient> client_;
  std::string producer_;
  std::string admin_;
};

TEST_F(IntakeE2eTest, AcceptsSingleBatchAndNdjsonAndReadsThemBack) {
  Start();
  auto single = Post(PageView("s-1", "user-1").dump(), "application/cloudevents+json");
  ASSERT_EQ(single.status, 202) << single.body;
  EXPECT_EQ(single.Json()["accepted"], 1);
  json batch = json::array({PageView("b-1", "user-1"), PageView("b-2", "user-2")});
  auto batch_response = Post(batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(batch_response.status, 202) << batch_response.body;
  EXPECT_EQ(batch_response.Json()["accepted"], 2);
  std::string ndjson = PageView("n-1", "user-3").dump() + "\n\n" + PageView("n-2", "user-3").dump() + "\r\n";
  auto nd = Post(ndjson, "application/x-ndjson");
  ASSERT_EQ(nd.status, 202) << nd.body;
  EXPECT_EQ(nd.Json()["accepted"], 2);

  auto all = ReadAll();
  std::set<std::string> ids;
  for (const auto& item : all) ids.insert(item["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{"s-1", "b-1", "b-2", "n-1", "n-2"}));
  for (const auto& item : all) {
    EXPECT_EQ(item["type"], "com.platform.store.page.viewed.v1");
    EXPECT_EQ(item["data"]["page_type"], "game");
    // The subject is a pseudonym, never the raw user id.
    EXPECT_EQ(item["subject"].get<std::string>().find("user-"), std::string::npos) << item.dump();
  }
  // Filter by the platform's original user id (pseudonymized by the server) and by type.
  auto by_user = ReadBack("?user_id=user-3");
  EXPECT_EQ(by_user["items"].size(), 2u);
  auto by_type = ReadBack("?type=com.platform.payments.purchase.completed.v1");
  EXPECT_EQ(by_type["items"].size(), 0u);
}

TEST_F(IntakeE2eTest, GzipAndZstdBodies) {
  Start();
  json batch = json::array({PageView("g-1", "u1"), PageView("g-2", "u2")});
  auto gz = Post(Gzip(batch.dump()), "application/cloudevents-batch+json", {{"Content-Encoding", "gzip"}});
  ASSERT_EQ(gz.status, 202) << gz.body;
  EXPECT_EQ(gz.Json()["accepted"], 2);
  json other = json::array({PageView("z-1", "u1")});
  auto zs = Post(Zstd(other.dump()), "application/cloudevents-batch+json", {{"Content-Encoding", "zstd"}});
  ASSERT_EQ(zs.status, 202) << zs.body;
  EXPECT_EQ(zs.Json()["accepted"], 1);
  auto broken = Post("not gzip at all", "application/cloudevents-batch+json", {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(broken.status, 400);
  auto unknown = Post(batch.dump(), "application/cloudevents-batch+json", {{"Content-Encoding", "br"}});
  EXPECT_EQ(unknown.status, 415);
}

TEST_F(IntakeE2eTest, OneBadEventNeverRejectsItsNeighbours) {
  Start();
  json bad_time = PageView("bad-1", "u1");
  bad_time["time"] = "yesterday";
  json missing_id = PageView("x", "u1");
  missing_id.erase("id");
  json future = PageView("bad-3", "u1", "2999-01-01T00:00:00Z");
  json batch = json::array({PageView("ok-1", "u1"), bad_time, missing_id, PageView("ok-2", "u2"), future});
  auto response = Post(batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(response.status, 202) << response.body;
  auto body = response.Json();
  EXPECT_EQ(body["accepted"], 2);
  ASSERT_EQ(body["rejected"].size(), 3u) << body.dump();
  EXPECT_EQ(body["rejected"][0]["index"], 1);
  EXPECT_EQ(body["rejected"][0]["id"], "bad-1");
  EXPECT_EQ(body["rejected"][0]["field"], "time");
  EXPECT_EQ(body["rejected"][1]["index"], 2);
  EXPECT_EQ(body["rejected"][1]["field"], "id");
  EXPECT_EQ(body["rejected"][2]["index"], 4);
  for (const auto& rejected : body["rejected"]) EXPECT_FALSE(rejected["code"].get<std::string>().empty());
  // Dead letters keep them with the reason.
  auto letters = client_->Get("/api/v1/analytics/ingest/dead-letters", admin_);
  ASSERT_EQ(letters.status, 200) << letters.body;
  EXPECT_EQ(letters.Json()["total"], 3);
  EXPECT_EQ(letters.Json()["items"][0]["event_id"], "bad-1");
  // Paging: pages of one cover all three; the largest page size is accepted.
  std::vector<std::string> paged;
  std::string cursor;
  while (true) {
    auto page = client_->Get("/api/v1/analytics/ingest/dead-letters?limit=1" + (cursor.empty() ? "" : "&cursor=" + cursor),
                             admin_).Json();
    for (const auto& item : page["items"]) paged.push_back(item["event_id"].is_string() ? item["event_id"].get<std::string>() : "");
    if (page["next_cursor"].is_null()) break;
    cursor = page["next_cursor"].get<std::string>();
  }
  EXPECT_EQ(paged.size(), 3u);
  EXPECT_EQ(client_->Get("/api/v1/analytics/ingest/dead-letters?limit=1000", admin_).status, 200);
  EXPECT_EQ(client_->Get("/api/v1/analytics/ingest/dead-letters?limit=1001", admin_).status, 400);
}

TEST_F(IntakeE2eTest, UnparseableBodyIs400WithByteOffset) {
  Start();
  auto response = Post("[{\"specversion\": \"1.0\"},, ]", "application/cloudevents-batch+json");
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.Json()["error"]["code"], "INVALID_REQUEST_BODY");
  EXPECT_TRUE(response.Json()["error"]["details"]["byte_offset"].is_number()) << response.body;
  auto wrong_type = Post("{}", "text/csv");
  EXPECT_EQ(wrong_type.status, 415);
}

TEST_F(IntakeE2eTest, DuplicatesAreAcknowledgedButStoredOnceAcrossRestarts) {
  Start();
  json batch = json::array({PageView("d-1", "u1"), PageView("d-2", "u1")});
  EXPECT_EQ(Post(batch.dump(), "application/cloudevents-batch+json").Json()["accepted"], 2);
  auto again = Post(batch.dump(), "application/cloudevents-batch+json").Json();
  EXPECT_EQ(again["accepted"], 0);
  EXPECT_EQ(again["duplicates"], 2);
  ASSERT_EQ(service_->Stop(SIGTERM).exit_code, 0);
  Start();
  auto after_restart = Post(batch.dump(), "application/cloudevents-batch+json").Json();
  EXPECT_EQ(after_restart["duplicates"], 2);
  EXPECT_EQ(ReadAll().size(), 2u);
}

TEST_F(IntakeE2eTest, RolesForIntakeAndReadBack) {
  Start();
  const std::string marketing = service_->Token({"marketing_manager"});
  auto denied = client_->Request("POST", kEvents, PageView("r-1", "u").dump(),
                                 {{"Authorization", "Bearer " + marketing}, {"Content-Type", "application/json"}});
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(client_->Get(kEvents, producer_).status, 403);
  EXPECT_EQ(client_->Get(kEvents, admin_).status, 200);
}

TEST_F(IntakeE2eTest, NoRawPersonalDataAnywhereInTheDataDir) {
  Start();
  const std::vector<std::string> raw = {"ivan.petrov@example.ru", "+7 916 123-45-67", "79161234567",
                                        "Ivan Petrovich", "198.51.100.77", "b6a1f2c3-user-raw-id",
                                        "friend-raw-id-42", "device-raw-xyz"};
  json registered = {{"specversion", "1.0"}, {"id", "pii-1"}, {"source", "/services/account"},
                     {"type", "com.platform.account.user.registered.v1"}, {"time", "2024-03-01T10:00:00Z"},
                     {"subject", raw[5]},
                     {"data", {{"email", raw[0]}, {"phone", raw[1]}, {"display_name", raw[3]}, {"ip", raw[4]},
                               {"device_id", raw[7]}, {"country", "RU"}}}};
  json nested = PageView("pii-2", raw[5]);
  nested["data"]["extra"] = {{"contact", {{"email", raw[0]}, {"phone", raw[2]}}},
                             {"people", json::array({{{"friend_user_id", raw[6]}, {"full_name", raw[3]}}})}};
  json invalid = registered;  // rejected (bad time) but dead-lettered: its payload must be treated too
  invalid["id"] = "pii-3";
  invalid["time"] = "not a time";
  json batch = json::array({registered, nested, invalid});
  auto response = Post(batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(response.Json()["accepted"], 2);
  // Stop cleanly so the memtable is written to segments too, then scan every file.
  ASSERT_EQ(service_->Stop(SIGTERM).exit_code, 0);
  size_t files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(data_.path())) {
    if (!entry.is_regular_file()) continue;
    ++files;
    std::ifstream file(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(file)), {});
    for (const auto& value : raw) {
      EXPECT_EQ(bytes.find(value), std::string::npos) << value << " found in " << entry.path();
    }
  }
  EXPECT_GE(files, 3u);
}

TEST_F(IntakeE2eTest, ErasureRemovesEverythingAndRefusesNewEventsUntilRegistration) {
  Start();
  json batch = json::array({PageView("e-1", "erase-me"), PageView("e-2", "erase-me"), PageView("e-3", "keep-me")});
  ASSERT_EQ(Post(batch.dump(), "application/cloudevents-batch+json").Json()["accepted"], 3);
  auto erased = client_->Request("DELETE", "/api/v1/analytics/users/erase-me/events", "",
                                 {{"Authorization", "Bearer " + admin_}});
  ASSERT_EQ(erased.status, 200) << erased.body;
  EXPECT_EQ(erased.Json()["erased_events"], 2);
  EXPECT_EQ(ReadBack("?user_id=erase-me")["items"].size(), 0u);
  EXPECT_EQ(ReadBack("?user_id=keep-me")["items"].size(), 1u);
  auto refused = Post(PageView("e-4", "erase-me").dump(), "application/cloudevents+json").Json();
  EXPECT_EQ(refused["accepted"], 0);
  ASSERT_EQ(refused["rejected"].size(), 1u);
  EXPECT_EQ(refused["rejected"][0]["code"], "USER_ERASED");
  json registered = {{"specversion", "1.0"}, {"id", "e-5"}, {"source", "/services/account"},
                     {"type", "com.platform.account.user.registered.v1"}, {"time", "2024-03-02T10:00:00Z"},
                     {"subject", "erase-me"}, {"data", {{"country", "RU"}}}};
  EXPECT_EQ(Post(registered.dump(), "application/cloudevents+json").Json()["accepted"], 1);
  EXPECT_EQ(Post(PageView("e-6", "erase-me").dump(), "application/cloudevents+json").Json()["accepted"], 1);
}

TEST_F(IntakeE2eTest, AccountDeletedEventErasesTheUserButStaysCountable) {
  Start();
  json batch = json::array({PageView("a-1", "leaver"), PageView("a-2", "leaver")});
  ASSERT_EQ(Post(batch.dump(), "application/cloudevents-batch+json").Json()["accepted"], 2);
  json deleted = {{"specversion", "1.0"}, {"id", "a-3"}, {"source", "/services/account"},
                  {"type", "com.platform.account.user.deleted.v1"}, {"time", "2024-03-03T10:00:00Z"},
                  {"subject", "leaver"}, {"data", json::object()}};
  auto response = Post(deleted.dump(), "application/cloudevents+json");
  ASSERT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(response.Json()["accepted"], 1) << response.body;
  EXPECT_EQ(ReadBack("?user_id=leaver")["items"].size(), 0u);
  auto deletions = ReadBack("?type=com.platform.account.user.deleted.v1");
  ASSERT_EQ(deletions["items"].size(), 1u);
  EXPECT_FALSE(deletions["items"][0].contains("subject")) << deletions.dump();
}

// Several deletions in one batch, between other users' events: each is rewritten without its user (subject and
// data.user_id) and the events around them are stored as sent.
TEST_F(IntakeE2eTest, DeletionsInsideABatchAreEachRewrittenAndTheirNeighboursKept) {
  Start();
  ASSERT_EQ(Post(json::array({PageView("b-1", "go-1"), PageView("b-2", "go-2")}).dump(),
                 "application/cloudevents-batch+json")
                .Json()["accepted"],
            2);
  auto deletion = [](const std::string& id, const std::string& user) {
    return json{{"specversion", "1.0"}, {"id", id}, {"source", "/services/account"},
                {"type", "com.platform.account.user.deleted.v1"}, {"time", "2024-03-03T10:00:00Z"},
                {"subject", user}, {"data", {{"user_id", user}, {"reason", "user_request"}}}};
  };
  json batch = json::array({PageView("b-3", "stay-1"), deletion("b-4", "go-1"), PageView("b-5", "stay-2"),
                            deletion("b-6", "go-2"), PageView("b-7", "stay-1")});
  auto response = Post(batch.dump(), "application/cloudevents-batch+json");
  ASSERT_EQ(response.status, 202) << response.body;
  EXPECT_EQ(response.Json()["accepted"], 5) << response.body;
  EXPECT_EQ(ReadBack("?user_id=go-1")["items"].size(), 0u);
  EXPECT_EQ(ReadBack("?user_id=go-2")["items"].size(), 0u);
  EXPECT_EQ(ReadBack("?user_id=stay-1")["items"].size(), 2u);
  EXPECT_EQ(ReadBack("?user_id=stay-2")["items"].size(), 1u);
  auto deletions = ReadBack("?type=com.platform.account.user.deleted.v1")["items"];
  ASSERT_EQ(deletions.size(), 2u);
  for (const auto& item : deletions) {
    EXPECT_FALSE(item.contains("subject")) << item.dump();
    EXPECT_FALSE(item["data"].contains("user_id")) << item.dump();
    EXPECT_EQ(item["data"]["reason"], "user_request") << item.dump();
  }
}

TEST_F(IntakeE2eTest, DeadLettersReplayAfterAFix) {
  // Strict mode rejects types missing from the catalog; after the fix (strict off) a replay stores them.
  Start({{"ANALYTICS_STRICT_EVENT_TYPES", "true"}});
  json unknown = PageView("dl-1", "u1");
  unknown["type"] = "com.platform.store.banner.clicked.v1";
  auto response = Post(unknown.dump(), "application/cloudevents+json").Json();
  ASSERT_EQ(response["rejected"].size(), 1u) << response.dump();
  EXPECT_EQ(response["rejected"][0]["code"], "UNKNOWN_EVENT_TYPE");
  ASSERT_EQ(service_->Stop(SIGTERM).exit_code, 0);
  Start();
  auto listed = client_->Get("/api/v1/analytics/ingest/dead-letters?code=UNKNOWN_EVENT_TYPE", admin_).Json();
  ASSERT_EQ(listed["total"], 1);
  auto replay = client_->Request("POST", "/api/v1/analytics/ingest/dead-letters/replay",
                                 json({{"code", "UNKNOWN_EVENT_TYPE"}}).dump(),
                                 {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"}});
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(replay.Json()["accepted"], 1);
  EXPECT_EQ(client_->Get("/api/v1/analytics/ingest/dead-letters", admin_).Json()["total"], 0);
  auto stored = ReadBack("?type=com.platform.store.banner.clicked.v1");
  ASSERT_EQ(stored["items"].size(), 1u);
  EXPECT_EQ(stored["items"][0]["id"], "dl-1");
}

TEST_F(IntakeE2eTest, ReadBackPagesCoverEverythingOnceAndFilterByTime) {
  Start();
  json batch = json::array();
  for (int event_idx = 0; event_idx < 120; ++event_idx) {
    char time[32];
    std::snprintf(time, sizeof(time), "2024-03-%02dT10:00:%02dZ", 1 + event_idx % 5, event_idx % 60);
    batch.push_back(PageView("p-" + std::to_string(event_idx), "u" + std::to_string(event_idx % 7), time));
  }
  ASSERT_EQ(Post(batch.dump(), "application/cloudevents-batch+json").Json()["accepted"], 120);
  auto all = ReadAll();
  std::set<std::string> ids;
  for (const auto& item : all) ids.insert(item["id"].get<std::string>());
  EXPECT_EQ(all.size(), 120u);
  EXPECT_EQ(ids.size(), 120u);
  auto day = ReadBack("?from=2024-03-02&to=2024-03-02&limit=1000");
  EXPECT_EQ(day["items"].size(), 24u);
  auto bad = client_->Get(std::string(kEvents) + "?from=yesterday", admin_);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.Json()["error"]["details"]["parameter"], "from");
}

}  // namespace
}  // namespace analytics::testing
