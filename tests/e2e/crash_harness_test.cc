// Crash safety: a loader keeps ingesting while the server is killed with SIGKILL at random moments; after
// each restart the unacknowledged batch is retried. At the end every acknowledged event is stored exactly
// once and the store opens cleanly every time.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using nlohmann::json;

json Event(const std::string& id, int n) {
  char time[32];
  std::snprintf(time, sizeof(time), "2024-0%d-%02dT%02d:00:00Z", 1 + n % 3, 1 + n % 28, n % 24);
  return {{"specversion", "1.0"}, {"id", id}, {"source", "/services/store"},
          {"type", "com.platform.store.page.viewed.v1"}, {"time", time},
          {"subject", "user-" + std::to_string(n % 97)},
          {"data", {{"page_type", "game"}, {"game_id", "game_" + std::to_string(n % 13)}}}};
}

TEST(CrashHarnessTest, EveryAcknowledgedEventSurvivesRepeatedKill9ExactlyOnce) {
  const int kills = std::getenv("ANALYTICS_CRASH_KILLS") ? std::atoi(std::getenv("ANALYTICS_CRASH_KILLS")) : 20;
  TempDir data;
  TempDir keys;
  const std::string config_path = (keys.path() / "crash.yaml").string();
  {
    // Small memtable and fast flushes, so kills also land during flushes and WAL truncation.
    std::ofstream config(config_path);
    config << "event_store:\n  memtable_max_events: 1000\n  flush_interval_seconds: 1\n";
  }
  const std::map<std::string, std::string> env = {{"ANALYTICS_PSEUDONYM_KEY_FILE", (keys.path() / "k").string()}};
  std::mt19937 random(12345);
  std::set<std::string> acknowledged;
  std::vector<std::string> pending;  // the batch in flight when the server died: retried after restart
  int next_event = 0;
  int duplicates_seen = 0;

  for (int cycle = 0; cycle <= kills; ++cycle) {
    ServiceProcess service(data.path().string(), env, {"--config", config_path});
    ASSERT_GT(service.port(), 0) << "restart " << cycle << " failed:\n" << service.output();
    HttpClient probe(service.port());
    auto ready = probe.Get("/readyz");
    ASSERT_EQ(ready.status, 200) << "store did not open cleanly after kill " << cycle << ": " << ready.body;
    const std::string token = service.Token({"service"});
    std::atomic<bool> stop{false};
    std::thread loader([&] {
      HttpClient client(service.port());
      while (!stop) {
        if (pending.empty()) {
          for (int event_idx = 0; event_idx < 200; ++event_idx) pending.push_back("e" + std::to_string(next_event++));
        }
        json batch = json::array();
        for (const auto& id : pending) batch.push_back(Event(id, std::stoi(id.substr(1))));
        try {
          auto response = client.Request("POST", "/api/v1/analytics/events", batch.dump(),
                                         {{"Authorization", "Bearer " + token},
                                          {"Content-Type", "application/cloudevents-batch+json"}});
          if (response.status != 202) return;  // e.g. shutting down: retry after restart
          auto body = response.Json();
          if (body["rejected"].size() != 0u) {
            ADD_FAILURE() << "unexpected rejection: " << body.dump();
            return;
          }
          duplicates_seen += body["duplicates"].get<int>();
          acknowledged.insert(pending.begin(), pending.end());
          pending.clear();
        } catch (const std::exception&) {
          return;  // the server died mid-request: this batch is not acknowledged
        }
      }
    });
    if (cycle < kills) {
      std::this_thread::sleep_for(std::chrono::milliseconds(150 + random() % 600));
      service.Stop(SIGKILL, 10);
      stop = true;
      loader.join();
    } else {
      // Last round: let the loader finish the pending batch, then check everything.
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      stop = true;
      loader.join();
      ASSERT_TRUE(pending.empty()) << "the last batch was not acknowledged";
      const std::string admin = service.Token({"platform_admin"});
      std::map<std::string, int> seen;
      std::string cursor;
      while (true) {
        auto page = probe.Get("/api/v1/analytics/events?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor), admin);
        ASSERT_EQ(page.status, 200) << page.body;
        auto body = page.Json();
        for (const auto& item : body["items"]) ++seen[item["id"].get<std::string>()];
        if (body["next_cursor"].is_null()) break;
        cursor = body["next_cursor"].get<std::string>();
      }
      size_t missing = 0, repeated = 0;
      std::string missing_ids;
      for (const auto& id : acknowledged) {
        if (seen.count(id)) continue;
        if (++missing <= 40) missing_ids += id + " ";
      }
      if (missing > 0) ADD_FAILURE() << "missing: " << missing_ids;
      for (const auto& [id, count] : seen) repeated += count > 1 ? 1 : 0;
      EXPECT_EQ(missing, 0u) << "acknowledged events lost";
      EXPECT_EQ(repeated, 0u) << "events stored more than once";
      EXPECT_EQ(seen.size(), acknowledged.size()) << "events stored that were never sent";
      EXPECT_GT(acknowledged.size(), static_cast<size_t>(kills) * 200) << "the loader barely ran";
      RecordProperty("acknowledged", static_cast<int>(acknowledged.size()));
      RecordProperty("duplicates_on_retry", duplicates_seen);
    }
  }
}

}  // namespace
}  // namespace analytics::testing
