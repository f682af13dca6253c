// Metric values end to end: the real binary, generated events over HTTP (part flushed to segments by a
// restart, part still in memory), answers compared with a reference computed here from the same raw
// events (plain loops over the NDJSON, no code of the engine).
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

constexpr int64_t kHourMs = 3600000;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr char kValues[] = "/api/v1/analytics/metrics/values/";

// The 19 "active" types of docs/metrics.md section 4 (dau/wau/mau), spelled out independently.
const std::set<std::string> kActive = {
    "account.user.registered", "account.user.logged_in", "account.user.logged_out", "account.profile.updated",
    "store.page.viewed", "store.search.performed", "store.wishlist_item.added", "store.wishlist_item.removed",
    "cart.item.added", "cart.item.removed", "cart.checkout.started", "payments.purchase.completed",
    "payments.purchase.failed", "library.game.installed", "library.session.started", "library.session.ended",
    "achievements.achievement.unlocked", "reviews.review.posted", "social.friend.added"};

struct RawEvent {
  std::string type;  // without com.platform. and .v1
  std::string user;
  int64_t time_ms = 0;
  json data;
};

std::string Short(const std::string& type) { return type.substr(13, type.size() - 16); }

std::string Day(int64_t ms) { return common::FormatRfc3339Millis(ms).substr(0, 10); }


class MetricValuesE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir();
    keys_ = new TempDir();
    gen::GeneratorOptions options;
    options.users = 400;
    options.days = 12;
    options.seed = 11;
    std::vector<std::string> lines;
    gen::Generate(options, [&](std::string_view line) { lines.emplace_back(line); });
    events_ = new std::vector<RawEvent>();
    for (const auto& line : lines) {
      json event = json::parse(line);
      RawEvent raw;
      raw.type = Short(event["type"].get<std::string>());
      raw.time_ms = common::ParseRfc3339Millis(event["time"].get<std::string>()).value();
      raw.data = event.value("data", json::object());
      if (event.contains("subject")) raw.user = event["subject"].get<std::string>();
      else if (raw.data.contains("user_id")) raw.user = raw.data["user_id"].get<std::string>();
      events_->push_back(std::move(raw));
    }
    // The first two thirds go to segments (a clean restart flushes), the rest stays in memory.
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
  static json Values(const std::string& metric, const std::string& query, const std::string& token = {},
                     int expected_status = 200) {
    auto response = client_->Get(kValues + metric + "?" + query, token.empty() ? admin_ : token);
    EXPECT_EQ(response.status, expected_status) << metric << "?" << query << " → " << response.body;
    return response.Json();
  }
  // The values of the series whose dimensions equal `dimensions`, as (label, value) pairs.
  static std::map<std::string, json> Points(const json& document, const json& dimensions = json::object()) {
    std::map<std::string, json> points;
    for (const auto& series : document["series"]) {
      if (series["dimensions"] != dimensions) continue;
      for (const auto& point : series["points"]) points[point[0].get<std::string>()] = point[1];
    }
    return points;
  }

  static TempDir* data_;
  static TempDir* keys_;
  static std::vector<RawEvent>* events_;
  static ServiceProcess* service_;
  static HttpClient* client_;
  static std::string admin_;
};

TempDir* MetricValuesE2eTest::data_ = nullptr;
TempDir* MetricValuesE2eTest::keys_ = nullptr;
std::vector<RawEvent>* MetricValuesE2eTest::events_ = nullptr;
ServiceProcess* MetricValuesE2eTest::service_ = nullptr;
HttpClient* MetricValuesE2eTest::client_ = nullptr;
std::string MetricValuesE2eTest::admin_;

TEST_F(MetricValuesE2eTest, DailyActiveUsersMatchTheReferenceWithExplicitZeroDays) {
  std::map<std::string, std::set<std::string>> active;
  for (const auto& event : *events_) {
    if (kActive.count(event.type) && !event.user.empty()) active[Day(event.time_ms)].insert(event.user);
  }
  // Two days before the data: explicit zeros.
  json document = Values("dau", "period_start=2023-12-30&period_end=2024-01-12");
  EXPECT_EQ(document["metric"], "dau");
  EXPECT_EQ(document["granularity"], "day");
  EXPECT_EQ(document["timezone"], "UTC");
  auto points = Points(document);
  ASSERT_EQ(points.size(), 14u);
  EXPECT_EQ(points["2023-12-30T00:00:00Z"], 0.0);
  EXPECT_EQ(points["2023-12-31T00:00:00Z"], 0.0);
  for (const auto& [day, users] : active) {
    EXPECT_EQ(points[day + "T00:00:00Z"], static_cast<double>(users.size())) << day;
  }
  EXPECT_FALSE(document["freshness"].is_null());
}

TEST_F(MetricValuesE2eTest, DaysFollowTheRequestedTimeZone) {
  // Asia/Tokyo is UTC+9 all year: a local day is [D-1 15:00Z, D 15:00Z).
  std::map<std::string, std::set<std::string>> active;
  for (const auto& event : *events_) {
    if (kActive.count(event.type) && !event.user.empty()) active[Day(event.time_ms + 9 * kHourMs)].insert(event.user);
  }
  json document = Values("dau", "period_start=2024-01-02&period_end=2024-01-10&timezone=Asia/Tokyo");
  auto points = Points(document);
  ASSERT_EQ(points.size(), 9u);
  for (const auto& [label, value] : points) {
    ASSERT_EQ(label.substr(10), "T00:00:00+09:00");
    EXPECT_EQ(value, static_cast<double>(active[label.substr(0, 10)].size())) << label;
  }
}

TEST_F(MetricValuesE2eTest, RefundAwareRevenueTopGamesAndOtherAddUpExactly) {
  std::map<std::string, double> total;                          // game → revenue over the period
  std::map<std::string, std::map<std::string, double>> by_day;  // game → day → revenue
  for (const auto& event : *events_) {
    const bool purchase = event.type == "payments.purchase.completed";
    const bool refund = event.type == "payments.refund.completed";
    if (!purchase && !refund) continue;
    if (event.data.value("currency", "") != "RUB" || !event.data["amount"].is_number()) continue;
    const std::string game = event.data.value("game_id", "");
    const double amount = event.data["amount"].get<double>() * (refund ? -1 : 1);
    total[game] += amount;
    by_day[game][Day(event.time_ms)] += amount;
  }
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [game, value] : total) ranked.emplace_back(-value, game);
  std::sort(ranked.begin(), ranked.end());
  ASSERT_GT(ranked.size(), 4u);
  json document = Values("revenue_rub", "period_start=2024-01-01&period_end=2024-01-12&dimensions=" +
                                            UrlEncode("[\"game_id\"]") + "&limit=3");
  ASSERT_EQ(document["series"].size(), 4u) << document.dump();
  for (size_t rank = 0; rank < 3; ++rank) {
    const std::string game = ranked[rank].second;
    EXPECT_EQ(document["series"][rank]["dimensions"]["game_id"], game);
    auto points = Points(document, {{"game_id", game}});
    for (const auto& [label, value] : points) {
      EXPECT_NEAR(value.get<double>(), by_day[game][label.substr(0, 10)], 1e-6) << game << " " << label;
    }
  }
  const json& other = document["series"][3];
  EXPECT_EQ(other["dimensions"]["game_id"], "other");
  EXPECT_EQ(other["other"], true);
  EXPECT_EQ(other["groups"], ranked.size() - 3);
  for (const auto& point : other["points"]) {
    double expected = 0;
    for (size_t rank = 3; rank < ranked.size(); ++rank) {
      auto& days = by_day[ranked[rank].second];
      auto it = days.find(point[0].get<std::string>().substr(0, 10));
      if (it != days.end()) expected += it->second;
    }
    EXPECT_NEAR(point[1].get<double>(), expected, 1e-6) << point[0];
  }
}

// Distinct users per game, top 3 by the users of the whole period (ties by game, no game first) and the rest
// as "other": per day (dau) and over rolling 7 days (wau, reaching before the period), from the raw events.
TEST_F(MetricValuesE2eTest, DistinctUsersTopGamesAndOtherMatchTheReference) {
  using Game = std::optional<std::string>;
  std::map<Game, std::map<std::string, std::set<std::string>>> active;  // game → day → users
  for (const auto& event : *events_) {
    if (!kActive.count(event.type) || event.user.empty()) continue;
    const Game game = event.data.contains("game_id") && event.data["game_id"].is_string()
                          ? Game(event.data["game_id"].get<std::string>())
                          : std::nullopt;
    active[game][Day(event.time_ms)].insert(event.user);
  }
  for (const auto& [metric, first_day, window] :
       {std::tuple<std::string, std::string, int>{"dau", "2024-01-01", 1}, {"wau", "2024-01-05", 7}}) {
    const int64_t first_ms = common::ParseRfc3339Millis(first_day + "T00:00:00Z").value();
    const int64_t last_ms = common::ParseRfc3339Millis("2024-01-12T00:00:00Z").value();
    auto users_of = [&](const std::vector<Game>& games, int64_t from_ms, int64_t to_ms) {  // days [from, to]
      std::set<std::string> users;
      for (const auto& game : games) {
        for (int64_t day = from_ms; day <= to_ms; day += kDayMs) {
          auto& day_users = active[game][Day(day)];
          users.insert(day_users.begin(), day_users.end());
        }
      }
      return users;
    };
    std::vector<std::pair<int64_t, Game>> ranked;
    for (const auto& [game, days] : active) {
      ranked.emplace_back(-static_cast<int64_t>(users_of({game}, first_ms, last_ms).size()), game);
    }
    std::sort(ranked.begin(), ranked.end());
    ASSERT_GT(ranked.size(), 6u);
    json document = Values(metric, "period_start=" + first_day + "&period_end=2024-01-12&dimensions=" +
                                       UrlEncode("[\"game_id\"]") + "&limit=3");
    ASSERT_EQ(document["series"].size(), 4u) << document.dump();
    auto check = [&](const json& series, const std::vector<Game>& games) {
      for (const auto& point : series["points"]) {
        const int64_t day_ms = common::ParseRfc3339Millis(point[0].get<std::string>()).value();
        EXPECT_EQ(point[1].get<double>(),
                  static_cast<double>(users_of(games, day_ms - (window - 1) * kDayMs, day_ms).size()))
            << metric << " " << series["dimensions"].dump() << " " << point[0];
      }
    };
    for (size_t rank = 0; rank < 3; ++rank) {
      const Game& game = ranked[rank].second;
      const json& series = document["series"][rank];
      EXPECT_EQ(series["dimensions"]["game_id"], game ? json(*game) : json(nullptr)) << metric << " " << rank;
      check(series, {game});
    }
    std::vector<Game> others;
    for (size_t rank = 3; rank < ranked.size(); ++rank) others.push_back(ranked[rank].second);
    const json& other = document["series"][3];
    EXPECT_EQ(other["dimensions"]["game_id"], "other");
    EXPECT_EQ(other["groups"], others.size());
    check(other, others);
  }
}

TEST_F(MetricValuesE2eTest, FiltersCombineWithAndOr) {
  // purchases_count: purchase.completed events; filter: (country RU or KZ) and platform != windows.
  std::map<std::string, double> expected;
  for (const auto& event : *events_) {
    if (event.type != "payments.purchase.completed") continue;
    const std::string country = event.data.value("country", "");
    const bool platform_windows = event.data.value("platform", "") == "windows";
    if ((country == "RU" || country == "KZ") && !platform_windows) expected[Day(event.time_ms)] += 1;
  }
  const std::string filters = R"({"and":[{"or":[{"property":"country","op":"eq","value":"RU"},)"
                              R"({"property":"country","op":"eq","value":"KZ"}]},)"
                              R"({"property":"platform","op":"ne","value":"windows"}]})";
  json document = Values("purchases_count", "period_start=2024-01-01&period_end=2024-01-12&filters=" + UrlEncode(filters));
  double sum = 0;
  for (const auto& [label, value] : Points(document)) {
    EXPECT_EQ(value.get<double>(), expected[label.substr(0, 10)]) << label;
    sum += value.get<double>();
  }
  EXPECT_GT(sum, 0);
}

TEST_F(MetricValuesE2eTest, RollingWeeklyActiveUsersReachBeforeThePeriod) {
  std::map<std::string, std::set<std::string>> active;
  for (const auto& event : *events_) {
    if (kActive.count(event.type) && !event.user.empty()) active[Day(event.time_ms)].insert(event.user);
  }
  json document = Values("wau", "period_start=2024-01-05&period_end=2024-01-12");
  auto points = Points(document);
  ASSERT_EQ(points.size(), 8u);
  for (const auto& [label, value] : points) {
    const int64_t day_ms = common::ParseRfc3339Millis(label).value();
    std::set<std::string> users;
    for (int back = 0; back < 7; ++back) {
      auto& day_users = active[Day(day_ms - back * kDayMs)];
      users.insert(day_users.begin(), day_users.end());
    }
    EXPECT_EQ(value, static_cast<double>(users.size())) << label;
  }
}

TEST_F(MetricValuesE2eTest, AveragesPercentilesAndRatiosMatchTheReference) {
  // A custom p90 of session durations, created through the API.
  json definition = {{"name", "session_p90"}, {"title", "p90 session"}, {"event_types", {"com.platform.library.session.ended.v1"}},
                     {"aggregation", "percentile"}, {"property", "duration_seconds"}, {"percentile", 90},
                     {"dimensions", {"game_id"}}, {"unit", "seconds"}};
  auto created = client_->PostJson("/api/v1/analytics/metrics/definitions", definition, admin_);
  ASSERT_TRUE(created.status == 201 || created.status == 409) << created.body;
  std::map<std::string, std::vector<double>> durations;
  std::map<std::string, double> revenue;
  std::map<std::string, std::set<std::string>> active;
  for (const auto& event : *events_) {
    const std::string day = Day(event.time_ms);
    if (event.type == "library.session.ended" && event.data["duration_seconds"].is_number()) {
      durations[day].push_back(event.data["duration_seconds"].get<double>());
    }
    if ((event.type == "payments.purchase.completed" || event.type == "payments.refund.completed") &&
        event.data.value("currency", "") == "RUB" && event.data["amount"].is_number()) {
      revenue[day] += event.data["amount"].get<double>() * (event.type == "payments.refund.completed" ? -1 : 1);
    }
    if (kActive.count(event.type) && !event.user.empty()) active[day].insert(event.user);
  }
  auto p90 = Points(Values("session_p90", "period_start=2024-01-01&period_end=2024-01-12"));
  auto avg = Points(Values("avg_session_length_seconds", "period_start=2024-01-01&period_end=2024-01-12"));
  auto arpu = Points(Values("arpu", "period_start=2024-01-01&period_end=2024-01-12"));
  for (const auto& [day, values] : durations) {
    std::vector<double> sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const double h = (sorted.size() - 1) * 0.9;
    const size_t lower = static_cast<size_t>(std::floor(h));
    const double expected = lower + 1 < sorted.size() ? sorted[lower] + (h - lower) * (sorted[lower + 1] - sorted[lower])
                                                      : sorted.back();
    EXPECT_NEAR(p90[day + "T00:00:00Z"].get<double>(), expected, 1e-9) << day;
    double sum = 0;
    for (double value : values) sum += value;
    EXPECT_NEAR(avg[day + "T00:00:00Z"].get<double>(), sum / values.size(), 1e-9) << day;
  }
  for (const auto& [day, users] : active) {
    EXPECT_NEAR(arpu[day + "T00:00:00Z"].get<double>(), revenue[day] / users.size(), 1e-9) << day;
  }
}

TEST_F(MetricValuesE2eTest, DevelopersSeeOnlyTheirGamesAndOnlyGroupsOfAtLeastFiveUsers) {
  // Pick two games with purchases; the developer owns them.
  std::map<std::string, std::map<std::string, std::set<std::string>>> buyers;  // game → country → users
  for (const auto& event : *events_) {
    if (event.type == "payments.purchase.completed" && !event.user.empty()) {
      buyers[event.data.value("game_id", "")][event.data.value("country", "")].insert(event.user);
    }
  }
  ASSERT_GE(buyers.size(), 2u);
  auto game = buyers.begin();
  const std::string first = game->first;
  const std::string second = (++game)->first;
  const std::string developer = service_->Token({"developer"}, "dev-1", {first, second});
  json document = Values("paying_users", "period_start=2024-01-01&period_end=2024-01-12&dimensions=" +
                                             UrlEncode("[\"game_id\",\"country\"]"),
                         developer);
  std::set<std::pair<std::string, std::string>> expected, seen;
  for (const auto& owned : {first, second}) {
    for (const auto& [country, users] : buyers[owned]) {
      if (users.size() >= 5) expected.insert({owned, country});
    }
  }
  for (const auto& series : document["series"]) {
    seen.insert({series["dimensions"]["game_id"], series["dimensions"]["country"]});
  }
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(document["k_anonymity"]["k"], 5);
  // A filter cannot widen the scope.
  json other_game = Values("purchases_count", "period_start=2024-01-01&period_end=2024-01-12&filters=" +
                                                  UrlEncode(R"({"property":"game_id","op":"eq","value":"not-mine"})"),
                           developer);
  for (const auto& series : other_game["series"]) {
    for (const auto& point : series["points"]) EXPECT_EQ(point[1], 0.0);
  }
}

TEST_F(MetricValuesE2eTest, PeakConcurrentPlayersPerGameMatchTheReference) {
  // Reference: pair each session_id's start with its first later end (12 h cap), per game of the start;
  // the peak of a day is the most intervals [start, end) covering one instant of it, found by checking
  // every instant where the count can rise (each start, and the day's first millisecond).
  struct Interval {
    int64_t start, end;
  };
  std::map<std::string, std::vector<Interval>> by_game;
  std::map<std::pair<std::string, std::string>, std::pair<int64_t, std::string>> open;  // (user, session) → start, game
  std::vector<const RawEvent*> ordered;
  for (const auto& event : *events_) {
    if (event.type == "library.session.started" || event.type == "library.session.ended") ordered.push_back(&event);
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](const RawEvent* a, const RawEvent* b) {
    if (a->time_ms != b->time_ms) return a->time_ms < b->time_ms;
    return a->type == "library.session.ended" && b->type != "library.session.ended";
  });
  const int64_t cap = 43200 * 1000LL;
  for (const RawEvent* event : ordered) {
    const std::string session = event->data.value("session_id", "");
    if (session.empty()) continue;
    const auto key = std::make_pair(event->user, session);
    auto it = open.find(key);
    if (it != open.end() && event->time_ms >= it->second.first + cap) {
      by_game[it->second.second].push_back({it->second.first, it->second.first + cap});
      open.erase(it);
      it = open.end();
    }
    if (event->type == "library.session.started") {
      if (it == open.end()) open[key] = {event->time_ms, event->data.value("game_id", "")};
    } else if (it != open.end()) {
      by_game[it->second.second].push_back({it->second.first, event->time_ms});
      open.erase(it);
    }
  }
  for (const auto& [key, start] : open) by_game[start.second].push_back({start.first, start.first + cap});
  auto peak = [](const std::vector<Interval>& intervals, int64_t from, int64_t to) {
    std::vector<int64_t> instants = {from};
    for (const auto& interval : intervals) {
      if (interval.start > from && interval.start < to) instants.push_back(interval.start);
    }
    int64_t best = 0;
    for (int64_t instant : instants) {
      int64_t count = 0;
      for (const auto& interval : intervals) count += interval.start <= instant && instant < interval.end;
      best = std::max(best, count);
    }
    return static_cast<double>(best);
  };
  json document = Values("peak_concurrent_players", "period_start=2024-01-02&period_end=2024-01-08&dimensions=" +
                                                        UrlEncode("[\"game_id\"]"));
  size_t checked = 0;
  for (const auto& series : document["series"]) {
    const std::string game = series["dimensions"]["game_id"].is_null() ? "" : series["dimensions"]["game_id"].get<std::string>();
    for (const auto& point : series["points"]) {
      const int64_t from = common::ParseRfc3339Millis(point[0].get<std::string>()).value();
      EXPECT_EQ(point[1].get<double>(), peak(by_game[game], from, from + kDayMs)) << game << " " << point[0];
      ++checked;
    }
  }
  EXPECT_GT(checked, 20u);
  double best = 0;
  for (const auto& series : document["series"]) {
    for (const auto& point : series["points"]) best = std::max(best, point[1].get<double>());
  }
  EXPECT_GT(best, 1.0);  // the data really has overlapping sessions
}

TEST_F(MetricValuesE2eTest, EveryBadParameterIsNamed) {
  const std::string period = "period_start=2024-01-01&period_end=2024-01-05";
  auto expect_parameter = [&](const std::string& query, const std::string& parameter) {
    json error = Values("dau", query, {}, 400);
    EXPECT_EQ(error["error"]["code"], "INVALID_QUERY_PARAMETERS") << query;
    EXPECT_EQ(error["error"]["details"]["parameter"], parameter) << query << " " << error.dump();
  };
  expect_parameter("period_end=2024-01-05", "period_start");
  expect_parameter("period_start=2024-01-05", "period_end");
  expect_parameter("period_start=2024-13-01&period_end=2024-01-05", "period_start");
  expect_parameter("period_start=2024-01-05&period_end=2024-01-01", "period_end");
  expect_parameter(period + "&granularity=fortnight", "granularity");
  expect_parameter(period + "&timezone=Mars/Olympus", "timezone");
  expect_parameter(period + "&timezone=" + UrlEncode("../../etc/passwd"), "timezone");
  expect_parameter(period + "&dimensions=" + UrlEncode("[\"email\"]"), "dimensions");
  expect_parameter(period + "&dimensions=game_id", "dimensions");
  expect_parameter(period + "&filters=" + UrlEncode("{\"property\":\"country\",\"op\":\"like\",\"value\":\"R\"}"), "filters");
  expect_parameter(period + "&filters=" + UrlEncode("{\"or\":[]}"), "filters");
  expect_parameter(period + "&dimensions=" + UrlEncode("[\"game_id\"]") + "&limit=0", "limit");
  expect_parameter("period_start=2024-01-01&period_end=2030-01-01&granularity=minute", "granularity");
  json missing = Values("no_such_metric", period, {}, 404);
  EXPECT_EQ(missing["error"]["code"], "METRIC_DEFINITION_NOT_FOUND");
  json future = Values("dau", "period_start=2031-01-01&period_end=2031-01-02", {}, 409);
  EXPECT_EQ(future["error"]["code"], "DATA_NOT_YET_AVAILABLE");
  EXPECT_EQ(client_->Get(std::string(kValues) + "dau?" + period).status, 401);
  EXPECT_EQ(client_->Get(std::string(kValues) + "dau?" + period, service_->Token({"service"})).status, 403);
}

TEST_F(MetricValuesE2eTest, DaylightSavingDaysAndHoursAreCivil) {
  // Europe/Berlin: 2024-03-31 has 23 hours (02:00 → 03:00), 2024-10-27 has 25 (03:00 → 02:00).
  const std::string producer = service_->Token({"service"}, "producer");
  auto event = [](const std::string& id, const std::string& user, const std::string& time) {
    return json{{"specversion", "1.0"}, {"id", id}, {"source", "/services/account"},
                {"type", "com.platform.account.user.logged_in.v1"}, {"time", time}, {"subject", user},
                {"data", {{"auth_method", "password"}}}}.dump() + "\n";
  };
  std::string body = event("dst-1", "dst-user-1", "2024-03-30T23:30:00Z") +  // 00:30 CET, Mar 31
                     event("dst-2", "dst-user-2", "2024-03-31T21:30:00Z") +  // 23:30 CEST, Mar 31
                     event("dst-3", "dst-user-3", "2024-03-31T22:30:00Z") +  // 00:30 CEST, Apr 1
                     event("dst-4", "dst-user-4", "2024-10-27T00:30:00Z") +  // 02:30 CEST (first)
                     event("dst-5", "dst-user-5", "2024-10-27T01:30:00Z");   // 02:30 CET (second)
  auto posted = client_->Request("POST", "/api/v1/analytics/events", body,
                                 {{"Authorization", "Bearer " + producer}, {"Content-Type", "application/x-ndjson"}});
  ASSERT_EQ(posted.status, 202) << posted.body;
  auto days = Points(Values("dau", "period_start=2024-03-30&period_end=2024-04-01&timezone=Europe/Berlin"));
  EXPECT_EQ(days["2024-03-31T00:00:00+01:00"], 2.0);
  EXPECT_EQ(days["2024-04-01T00:00:00+02:00"], 1.0);
  auto hours = Values("dau", "period_start=2024-10-27&period_end=2024-10-27&timezone=Europe/Berlin&granularity=hour");
  auto points = Points(hours);
  EXPECT_EQ(points.size(), 25u);  // the repeated hour is two buckets
  EXPECT_EQ(points["2024-10-27T02:00:00+02:00"], 1.0);
  EXPECT_EQ(points["2024-10-27T02:00:00+01:00"], 1.0);
}

TEST_F(MetricValuesE2eTest, LateEventsCountInTheirOwnDay) {
  // Day 3 is in segments already; a late event of a new user for that day raises its DAU by one.
  const std::string day = "2024-01-03";
  const double before = Points(Values("dau", "period_start=" + day + "&period_end=" + day))[day + "T00:00:00Z"].get<double>();
  const std::string producer = service_->Token({"service"}, "producer");
  json late = {{"specversion", "1.0"}, {"id", "late-1"}, {"source", "/services/store"},
               {"type", "com.platform.store.page.viewed.v1"}, {"time", day + "T12:00:00Z"}, {"subject", "late-user"},
               {"data", {{"page_type", "home"}}}};
  auto posted = client_->PostJson("/api/v1/analytics/events", late, producer);
  ASSERT_EQ(posted.status, 202) << posted.body;
  const double after = Points(Values("dau", "period_start=" + day + "&period_end=" + day))[day + "T00:00:00Z"].get<double>();
  EXPECT_EQ(after, before + 1);
}

}  // namespace
}  // namespace analytics::testing
