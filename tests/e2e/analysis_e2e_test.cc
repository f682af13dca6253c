// Behaviour analysis end to end: the real binary, generated events over HTTP (part flushed to segments by a
// restart, part still in memory), funnels, retention and experiments compared with references computed here
// from the raw events (plain loops, no engine code), plus roles, developer scope and every error code.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include <gtest/gtest.h>

#include "common/time_util.h"
#include "gen/generator.h"
#include "support/http_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

namespace analytics::testing {
namespace {

using nlohmann::json;

constexpr int64_t kDayMs = 86400000;
constexpr char kAnalysis[] = "/api/v1/analytics/analysis/";
const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kCart = "com.platform.cart.item.added.v1";
const std::string kBuy = "com.platform.payments.purchase.completed.v1";
const std::string kRegistered = "com.platform.account.user.registered.v1";
const std::string kExposure = "com.platform.experiments.exposure.recorded.v1";

struct RawEvent {
  std::string type;
  std::string user;
  int64_t time_ms = 0;
  json data;
  std::string Text(const char* name) const {
    auto it = data.find(name);
    return it != data.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
};

std::string Day(int64_t ms) { return common::FormatRfc3339Millis(ms).substr(0, 10); }

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

class AnalysisE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    keys_ = new TempDir();
    gen::GeneratorOptions options;
    options.users = 500;
    options.days = 21;
    options.seed = 23;
    std::vector<std::string> lines;
    gen::Generate(options, [&](std::string_view line) { lines.emplace_back(line); });
    events_ = new std::vector<RawEvent>();
    for (const auto& line : lines) {
      json event = json::parse(line);
      RawEvent raw;
      raw.type = event["type"].get<std::string>();
      raw.time_ms = common::ParseRfc3339Millis(event["time"].get<std::string>()).value();
      raw.data = event.value("data", json::object());
      if (event.contains("subject")) raw.user = event["subject"].get<std::string>();
      else if (raw.data.contains("user_id")) raw.user = raw.data["user_id"].get<std::string>();
      events_->push_back(std::move(raw));
    }
    const size_t split = lines.size() * 2 / 3;
    Start();
    Post(lines, 0, split);
    service_->Stop(SIGTERM);
    Start();
    Post(lines, split, lines.size());
  }
  static void TearDownTestSuite() {
    delete client_;
    delete service_;
    delete events_;
    delete data_;
    delete keys_;
  }
  static void Start() {
    delete client_;
    delete service_;
    service_ = new ServiceProcess(data_->path().string(),
                                  {{"ANALYTICS_PSEUDONYM_KEY_FILE", (keys_->path() / "pseudonym.key").string()}});
    ASSERT_GT(service_->port(), 0) << service_->output();
    client_ = new HttpClient(service_->port());
    admin_ = service_->Token({"platform_admin"}, "admin");
  }
  static void Post(const std::vector<std::string>& lines, size_t from, size_t to) {
    PostEventLines(*client_, service_->Token({"service"}, "producer"), lines, from, to);
  }
  static json Ask(const std::string& what, const json& body, const std::string& token = {}, int expected = 200) {
    auto response = client_->PostJson(kAnalysis + what, body, token.empty() ? admin_ : token);
    EXPECT_EQ(response.status, expected) << what << " " << body.dump() << " → " << response.body;
    return response.Json();
  }
  // The first and last day of the data, as the period every question asks.
  static std::pair<std::string, std::string> Period() {
    int64_t first = INT64_MAX, last = INT64_MIN;
    for (const auto& event : *events_) {
      first = std::min(first, event.time_ms);
      last = std::max(last, event.time_ms);
    }
    return {Day(first), Day(last)};
  }

  // The funnel of docs/analysis.md section 2 (ordered, first_touch, hold_constant game_id), from the raw events:
  // users per step and the median seconds from the previous step, for the events `keep` accepts.
  template <typename Keep>
  static std::pair<std::vector<size_t>, std::vector<double>> ReferenceFunnel(int64_t window_ms, Keep keep) {
    const std::vector<std::string> steps = {kView, kCart, kBuy};
    // (user, game) → events per step, in time order (the generated times are the only order needed: strict <).
    std::map<std::pair<std::string, std::string>, std::vector<std::vector<int64_t>>> pairs;
    for (const auto& event : *events_) {
      const std::string game = event.Text("game_id");
      if (event.user.empty() || game.empty() || !keep(event)) continue;
      for (size_t step = 0; step < steps.size(); ++step) {
        if (event.type == steps[step]) {
          auto& times = pairs[{event.user, game}];
          times.resize(steps.size());
          times[step].push_back(event.time_ms);
        }
      }
    }
    // Per user and step: the reached attempt with the earliest t0 (ties: smallest game), its step times.
    std::map<std::string, std::map<size_t, std::tuple<int64_t, std::string, int64_t, int64_t>>> best;
    for (auto& [pair, times] : pairs) {
      if (times[0].empty()) continue;
      for (auto& list : times) std::sort(list.begin(), list.end());
      const int64_t t0 = times[0].front();
      int64_t previous = t0;
      for (size_t step = 0; step < steps.size(); ++step) {
        int64_t at = -1;
        if (step == 0) {
          at = t0;
        } else {
          for (int64_t t : times[step]) {
            if (t > previous && t <= t0 + window_ms) {
              at = t;
              break;
            }
          }
        }
        if (at < 0) break;
        auto candidate = std::make_tuple(t0, pair.second, previous, at);
        auto [it, inserted] = best[pair.first].try_emplace(step, candidate);
        if (!inserted && std::tie(t0, pair.second) < std::tie(std::get<0>(it->second), std::get<1>(it->second))) {
          it->second = candidate;
        }
        previous = at;
      }
    }
    std::vector<size_t> users(steps.size(), 0);
    std::vector<std::vector<double>> seconds(steps.size());
    for (const auto& [user, by_step] : best) {
      for (const auto& [step, attempt] : by_step) {
        ++users[step];
        if (step > 0) seconds[step].push_back(static_cast<double>(std::get<3>(attempt) - std::get<2>(attempt)) / 1000.0);
      }
    }
    std::vector<double> medians(steps.size(), std::nan(""));
    for (size_t step = 1; step < steps.size(); ++step) {
      if (!seconds[step].empty()) medians[step] = Median(seconds[step]);
    }
    return {users, medians};
  }

  static TempDir* data_;
  static TempDir* keys_;
  static std::vector<RawEvent>* events_;
  static ServiceProcess* service_;
  static HttpClient* client_;
  static std::string admin_;
};

TempDir* AnalysisE2eTest::data_ = nullptr;
TempDir* AnalysisE2eTest::keys_ = nullptr;
std::vector<RawEvent>* AnalysisE2eTest::events_ = nullptr;
ServiceProcess* AnalysisE2eTest::service_ = nullptr;
HttpClient* AnalysisE2eTest::client_ = nullptr;
std::string AnalysisE2eTest::admin_;

json FunnelBody(const std::string& first_day, const std::string& last_day) {
  return {{"steps", {{{"event_type", kView}}, {{"event_type", kCart}}, {{"event_type", kBuy}}}},
          {"window_seconds", 86400},
          {"order", "ordered"},
          {"entry", "first_touch"},
          {"hold_constant", {"game_id"}},
          {"period_start", first_day},
          {"period_end", last_day},
          {"timezone", "UTC"}};
}

void ExpectFunnel(const json& document, const std::vector<size_t>& users, const std::vector<double>& medians) {
  ASSERT_EQ(document["steps"].size(), users.size()) << document.dump();
  for (size_t step = 0; step < users.size(); ++step) {
    const json& got = document["steps"][step];
    EXPECT_EQ(got["users"], users[step]) << "step " << step;
    if (step == 0) {
      EXPECT_TRUE(got["median_seconds_to_convert"].is_null());
      continue;
    }
    if (std::isnan(medians[step])) {
      EXPECT_TRUE(got["median_seconds_to_convert"].is_null()) << "step " << step;
    } else {
      EXPECT_NEAR(got["median_seconds_to_convert"].get<double>(), medians[step], 1e-6) << "step " << step;
    }
    if (users[step - 1] > 0) {
      EXPECT_NEAR(got["conversion_from_previous"].get<double>(),
                  static_cast<double>(users[step]) / static_cast<double>(users[step - 1]), 1e-12);
      EXPECT_NEAR(got["conversion_from_first"].get<double>(),
                  static_cast<double>(users[step]) / static_cast<double>(users[0]), 1e-12);
    }
  }
}

TEST_F(AnalysisE2eTest, FunnelHeldOnGameMatchesTheReference) {
  const auto [first_day, last_day] = Period();
  const auto [users, medians] = ReferenceFunnel(kDayMs, [](const RawEvent&) { return true; });
  ASSERT_GT(users[2], 10u) << "the generated data should hold complete funnels";
  json document = Ask("funnels", FunnelBody(first_day, last_day));
  ExpectFunnel(document, users, medians);
  EXPECT_EQ(document["period_start"], first_day);
  EXPECT_EQ(document["timezone"], "UTC");
  // A shorter window converts fewer users: 10 minutes.
  json short_window = FunnelBody(first_day, last_day);
  short_window["window_seconds"] = 600;
  const auto [short_users, short_medians] = ReferenceFunnel(600000, [](const RawEvent&) { return true; });
  ExpectFunnel(Ask("funnels", short_window), short_users, short_medians);
  EXPECT_LT(short_users[2], users[2]);
}

TEST_F(AnalysisE2eTest, DevelopersSeeOnlyTheirGamesInFunnels) {
  // The two games with the most purchases: a developer token for both sees the funnel of their events only.
  std::map<std::string, int> purchases;
  for (const auto& event : *events_) {
    if (event.type == kBuy) ++purchases[event.Text("game_id")];
  }
  std::vector<std::pair<int, std::string>> ranked;
  for (const auto& [game, count] : purchases) ranked.emplace_back(-count, game);
  std::sort(ranked.begin(), ranked.end());
  ASSERT_GE(ranked.size(), 2u);
  const std::set<std::string> games = {ranked[0].second, ranked[1].second};
  const auto [first_day, last_day] = Period();
  const auto [users, medians] =
      ReferenceFunnel(kDayMs, [&](const RawEvent& event) { return games.count(event.Text("game_id")) > 0; });
  const std::string developer = service_->Token({"developer"}, "dev", {ranked[0].second, ranked[1].second});
  json document = Ask("funnels", FunnelBody(first_day, last_day), developer);
  ASSERT_GE(users[0], 5u);
  ExpectFunnel(document, users, medians);
  EXPECT_EQ(document["k_anonymity"]["k"], 5);
}

TEST_F(AnalysisE2eTest, WeeklyRetentionMatchesTheReferenceAndYoungCohortsAreNotMeasurable) {
  const auto [first_day, last_day] = Period();
  const int64_t start_ms = common::ParseRfc3339Millis(first_day + "T00:00:00Z").value();
  const int64_t end_ms = common::ParseRfc3339Millis(last_day + "T00:00:00Z").value() + kDayMs;
  std::map<std::string, int64_t> first_registration;  // user → day start (UTC)
  std::map<std::string, std::set<int64_t>> active_days;
  for (const auto& event : *events_) {
    if (event.user.empty()) continue;
    const int64_t day = event.time_ms / kDayMs * kDayMs;
    active_days[event.user].insert(day);
    if (event.type == kRegistered) {
      auto [it, inserted] = first_registration.try_emplace(event.user, day);
      if (!inserted) it->second = std::min(it->second, day);
    }
  }
  auto monday = [](int64_t day) {  // 1970-01-01 was a Thursday
    const int64_t weekday = (day / kDayMs + 3) % 7;  // 0 = Monday
    return day - weekday * kDayMs;
  };
  const std::vector<int> periods = {1, 7, 14};
  struct Cohort {
    size_t users = 0;
    std::map<int, size_t> retained;
  };
  std::map<int64_t, Cohort> cohorts;
  for (const auto& [user, d0] : first_registration) {
    Cohort& cohort = cohorts[monday(d0)];
    ++cohort.users;
    for (int period : periods) cohort.retained[period] += active_days[user].count(d0 + period * kDayMs);
  }
  ASSERT_GE(cohorts.size(), 3u);
  json body = {{"start_event", {{"event_type", kRegistered}}},
               {"return_event", nullptr},
               {"cohort_granularity", "week"},
               {"periods", periods},
               {"mode", "on_day"},
               {"period_start", first_day},
               {"period_end", last_day},
               {"timezone", "UTC"}};
  json document = Ask("retention", body);
  ASSERT_EQ(document["cohorts"].size(), cohorts.size()) << document.dump();
  size_t index = 0;
  size_t measurable_cells = 0, unmeasurable_cells = 0;
  for (const auto& [week, cohort] : cohorts) {
    const json& got = document["cohorts"][index++];
    EXPECT_EQ(got["cohort_start"], Day(week));
    EXPECT_EQ(got["users"], cohort.users) << Day(week);
    ASSERT_EQ(got["retained"].size(), periods.size());
    for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
      const int period = periods[period_idx];
      const json& cell = got["retained"][period_idx];
      EXPECT_EQ(cell["period"], period);
      // Measurable when every day of the week inside the period, plus N days, ends by the period's end.
      bool measurable = true;
      for (int64_t day = week; day < week + 7 * kDayMs; day += kDayMs) {
        if (day >= start_ms && day < end_ms && day + (period + 1) * kDayMs > end_ms) measurable = false;
      }
      EXPECT_EQ(cell["measurable"], measurable) << Day(week) << " D" << period;
      if (measurable) {
        ++measurable_cells;
        EXPECT_EQ(cell["users"], cohort.retained.at(period)) << Day(week) << " D" << period;
        EXPECT_NEAR(cell["share"].get<double>(),
                    static_cast<double>(cohort.retained.at(period)) / static_cast<double>(cohort.users), 1e-12);
      } else {
        ++unmeasurable_cells;
        EXPECT_TRUE(cell["users"].is_null()) << Day(week) << " D" << period;
        EXPECT_TRUE(cell["share"].is_null());
      }
    }
  }
  EXPECT_GT(measurable_cells, 0u);
  EXPECT_GT(unmeasurable_cells, 0u);
}

TEST_F(AnalysisE2eTest, ExperimentConversionMatchesTheReference) {
  const auto [first_day, last_day] = Period();
  std::map<std::string, std::pair<int64_t, std::string>> exposure;  // user → first exposure (time, variant)
  for (const auto& event : *events_) {
    if (event.type != kExposure || event.user.empty() || event.Text("experiment") != "checkout_v2") continue;
    const std::string variant = event.Text("variant");
    if (variant.empty()) continue;
    auto [it, inserted] = exposure.try_emplace(event.user, event.time_ms, variant);
    if (!inserted && std::make_pair(event.time_ms, variant) < it->second) it->second = {event.time_ms, variant};
  }
  std::map<std::string, std::set<std::string>> exposed, converted;
  for (const auto& [user, first] : exposure) exposed[first.second].insert(user);
  for (const auto& event : *events_) {
    if (event.type != kBuy) continue;
    auto it = exposure.find(event.user);
    if (it != exposure.end() && event.time_ms > it->second.first) converted[it->second.second].insert(event.user);
  }
  ASSERT_EQ(exposed.size(), 2u);
  json body = {{"experiment", "checkout_v2"},
               {"exposure_event", kExposure},
               {"experiment_property", "experiment"},
               {"variant_property", "variant"},
               {"control", "A"},
               {"goals", {{{"kind", "conversion"}, {"event_type", kBuy}}}},
               {"period_start", first_day},
               {"period_end", last_day}};
  json document = Ask("experiments", body);
  ASSERT_EQ(document["variants"].size(), 2u) << document.dump();
  std::map<std::string, json> variants;
  for (const auto& variant : document["variants"]) variants[variant["variant"].get<std::string>()] = variant;
  for (const auto& [variant, users] : exposed) {
    ASSERT_TRUE(variants.count(variant)) << variant;
    EXPECT_EQ(variants[variant]["exposed_users"], users.size()) << variant;
    EXPECT_EQ(variants[variant]["goals"][0]["converters"], converted[variant].size()) << variant;
  }
  // Two-proportion z-test, pooled, two-sided, computed here.
  const double n_a = static_cast<double>(exposed["A"].size()), n_b = static_cast<double>(exposed["B"].size());
  const double x_a = static_cast<double>(converted["A"].size()), x_b = static_cast<double>(converted["B"].size());
  const double pooled = (x_a + x_b) / (n_a + n_b);
  const double z = (x_b / n_b - x_a / n_a) / std::sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b));
  const double p_value = std::erfc(std::fabs(z) / std::sqrt(2.0));
  EXPECT_NEAR(variants["B"]["goals"][0]["p_value"].get<double>(), p_value, 1e-9);
  EXPECT_NEAR(variants["B"]["goals"][0]["rate"].get<double>(), x_b / n_b, 1e-12);
  EXPECT_TRUE(variants["A"]["goals"][0]["p_value"].is_null());
  EXPECT_TRUE(document["srm"].contains("p_value"));
  EXPECT_TRUE(document["srm"].contains("ok"));
}

TEST_F(AnalysisE2eTest, EveryEndpointAnswersAndOnlyReadersMayAsk) {
  const auto [first_day, last_day] = Period();
  const json period = {{"period_start", first_day}, {"period_end", last_day}};
  json paths = period;
  paths["start_event"] = {{"event_type", kView}};
  json lifecycle = period;
  lifecycle["granularity"] = "week";
  json stickiness = period;
  json retention = period;
  retention["start_event"] = {{"event_type", kRegistered}};
  json experiments = period;
  experiments.update({{"experiment", "checkout_v2"},
                      {"exposure_event", kExposure},
                      {"experiment_property", "experiment"},
                      {"variant_property", "variant"},
                      {"control", "A"},
                      {"goals", {{{"kind", "conversion"}, {"event_type", kBuy}}}}});
  const std::vector<std::pair<std::string, json>> questions = {
      {"funnels", FunnelBody(first_day, last_day)}, {"retention", retention}, {"paths", paths},
      {"experiments", experiments}, {"lifecycle", lifecycle}, {"stickiness", stickiness}};
  const std::string marketing = service_->Token({"marketing_manager"}, "mm");
  const std::string producer = service_->Token({"service"}, "producer");
  for (const auto& [what, body] : questions) {
    Ask(what, body, marketing, 200);
    json denied = Ask(what, body, producer, 403);
    EXPECT_EQ(denied["error"]["code"], "ACCESS_DENIED_TO_RESOURCE") << what;
    auto anonymous = client_->Request("POST", std::string(kAnalysis) + what, body.dump(), {{"Content-Type", "application/json"}});
    EXPECT_EQ(anonymous.status, 401) << what;
  }
}

TEST_F(AnalysisE2eTest, EveryBadRequestIsNamed) {
  const auto [first_day, last_day] = Period();
  auto expect_parameter = [&](const std::string& what, const json& body, const std::string& parameter) {
    json error = Ask(what, body, admin_, 400);
    EXPECT_EQ(error["error"]["code"], "INVALID_QUERY_PARAMETERS") << body.dump();
    EXPECT_EQ(error["error"]["details"]["parameter"], parameter) << error.dump();
  };
  json funnel = FunnelBody(first_day, last_day);
  json bad = funnel;
  bad["steps"][1]["event_type"] = 7;
  expect_parameter("funnels", bad, "steps[1].event_type");
  bad = funnel;
  bad["window_secs"] = 10;
  expect_parameter("funnels", bad, "window_secs");
  bad = funnel;
  bad["order"] = "sideways";
  expect_parameter("funnels", bad, "order");
  bad = funnel;
  bad.erase("period_start");
  expect_parameter("funnels", bad, "period_start");
  bad = funnel;
  bad["timezone"] = "Mars/Olympus";
  expect_parameter("funnels", bad, "timezone");
  bad = funnel;
  bad["filters"] = {{"property", "country"}, {"op", "like"}, {"value", "RU"}};
  json error = Ask("funnels", bad, admin_, 400);
  EXPECT_EQ(error["error"]["code"], "INVALID_QUERY_PARAMETERS");
  EXPECT_EQ(error["error"]["details"]["parameter"].get<std::string>().substr(0, 7), "filters") << error.dump();
  bad = funnel;
  bad["segment"] = "no_such_segment";
  error = Ask("funnels", bad, admin_, 404);
  EXPECT_EQ(error["error"]["code"], "SEGMENT_NOT_FOUND");
  bad = funnel;
  bad["period_start"] = "2031-01-01";
  bad["period_end"] = "2031-01-02";
  error = Ask("funnels", bad, admin_, 409);
  EXPECT_EQ(error["error"]["code"], "DATA_NOT_YET_AVAILABLE");
  auto not_json = client_->Request("POST", std::string(kAnalysis) + "funnels", "{\"steps\": [",
                                   {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"}});
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(not_json.Json()["error"]["code"], "INVALID_REQUEST_BODY");
}

}  // namespace
}  // namespace analytics::testing
