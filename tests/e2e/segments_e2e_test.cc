// Audience segments end to end (issue 6): the real binary, generated events over HTTP (part flushed to segments by
// a restart, part still in memory) plus a few crafted ones, dynamic segments whose users are compared with
// references computed here from the raw events (plain loops, no engine code), static segments (lists, uploads,
// a funnel's drop-offs), the `segment` parameter of funnels and metrics, incremental updates and segment.updated
// events, erasure, restarts, and the CRUD contract with its roles and errors.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>
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
const std::string kDefinitions = "/api/v1/analytics/segments/definitions";
const std::string kSegments = "/api/v1/analytics/segments/";
const std::string kRuns = "/api/v1/analytics/pipelines/runs/";
const std::string kFunnels = "/api/v1/analytics/analysis/funnels";
const std::string kValues = "/api/v1/analytics/metrics/values/";
const std::string kUpdatedType = "com.platform.analytics.segment.updated.v1";
const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kCart = "com.platform.cart.item.added.v1";
const std::string kBuy = "com.platform.payments.purchase.completed.v1";
const std::string kSession = "com.platform.library.session.started.v1";
const std::string kRegistered = "com.platform.account.user.registered.v1";
// Users that only the crafted events of this test know.
const std::string kLateBuyer = "5e65e9e0-0000-4000-8000-000000000001";  // 3 purchases, no sessions; erased later
const std::string kNewBuyer = "5e65e9e0-0000-4000-8000-000000000002";   // appears with the incremental test
const std::string kNewViewer = "5e65e9e0-0000-4000-8000-000000000003";  // appears with the incremental test
const std::string kNobody = "5e65e9e0-0000-4000-8000-000000000099";     // never sends anything

// The 19 "active" types of docs/metrics.md section 4 (dau), spelled out independently.
const std::set<std::string> kActive = {
    "account.user.registered", "account.user.logged_in", "account.user.logged_out", "account.profile.updated",
    "store.page.viewed", "store.search.performed", "store.wishlist_item.added", "store.wishlist_item.removed",
    "cart.item.added", "cart.item.removed", "cart.checkout.started", "payments.purchase.completed",
    "payments.purchase.failed", "library.game.installed", "library.session.started", "library.session.ended",
    "achievements.achievement.unlocked", "reviews.review.posted", "social.friend.added"};

struct RawEvent {
  std::string type;
  std::string user;
  int64_t time_ms = 0;
  json data;
  std::string Text(const char* name) const {
    auto it = data.find(name);
    return it != data.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
  std::optional<double> Number(const char* name) const {
    auto it = data.find(name);
    if (it == data.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  }
};

// One user's events up to an evaluation time, in time order.
using Events = std::vector<const RawEvent*>;
using UserSet = std::set<std::string>;

std::string Day(int64_t ms) { return common::FormatRfc3339Millis(ms).substr(0, 10); }
std::string Time(int64_t ms) { return common::FormatRfc3339Millis(ms); }
int64_t Ms(const json& text) { return common::ParseRfc3339Millis(text.get<std::string>()).value(); }
std::string Short(const std::string& type) { return type.substr(13, type.size() - 16); }

bool IsRfc3339Millis(const json& value) {
  static const std::regex pattern(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");
  return value.is_string() && std::regex_match(value.get<std::string>(), pattern);
}

// Start of the calendar day holding `as_of` in a zone `offset_ms` east of UTC (no DST), minus days - 1 days: the
// first instant of a "within_days" window.
int64_t WindowStart(int64_t as_of, int days, int64_t offset_ms = 0) {
  const int64_t local = as_of + offset_ms;
  return local / kDayMs * kDayMs - offset_ms - int64_t{days - 1} * kDayMs;
}

size_t CountOf(const Events& events, const std::string& type, int64_t from = INT64_MIN) {
  size_t count = 0;
  for (const RawEvent* event : events) count += event->type == type && event->time_ms >= from;
  return count;
}

// The latest non-null country: the greatest (time, type, value) among the user's events.
std::string LatestCountry(const Events& events) {
  std::optional<std::tuple<int64_t, std::string, std::string>> latest;
  for (const RawEvent* event : events) {
    const std::string country = event->Text("country");
    if (country.empty()) continue;
    auto candidate = std::make_tuple(event->time_ms, event->type, country);
    if (!latest || candidate > *latest) latest = candidate;
  }
  return latest ? std::get<2>(*latest) : std::string();
}

UserSet Minus(const UserSet& a, const UserSet& b) {
  UserSet out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}


class SegmentsE2eTest : public ::testing::Test {
 protected:
  struct Made {
    std::string id;
    json created;  // the 201 body
    json run;      // the completed refresh run
    json count;    // GET users-count
  };

  static void SetUpTestSuite() {
    data_ = new TempDir();
    keys_ = new TempDir();
    erased_ = new UserSet();
    // Three weeks of a fixed past (the same data on every run); live segments (as_of = now) see all of it, and
    // events of "now" come after it.
    gen::GeneratorOptions options;
    options.users = 500;
    options.days = 21;
    options.seed = 61;
    options.start_date = "2024-01-01";
    first_day_ms_ = common::ParseRfc3339Millis("2024-01-01T00:00:00Z").value();
    last_day_ms_ = first_day_ms_ + 20 * kDayMs;
    std::vector<std::string> lines;
    gen::Generate(options, [&](std::string_view line) { lines.emplace_back(line); });
    const size_t generated = lines.size();
    std::vector<json> parsed;
    parsed.reserve(generated);
    events_ = new std::vector<RawEvent>();
    events_->reserve(generated + 64);
    for (const auto& line : lines) {
      parsed.push_back(json::parse(line));
      events_->push_back(Parse(parsed.back()));
    }
    for (auto& event : Craft(parsed)) {
      lines.push_back(event.dump());
      events_->push_back(Parse(event));
    }
    // The first two thirds go to segments (a clean restart flushes), the rest, with the crafted events, stays in
    // memory.
    const size_t split = generated * 2 / 3;
    Start();
    Post(lines, 0, split);
    ASSERT_EQ(service_->Stop(SIGTERM).exit_code, 0);
    Start();
    Post(lines, split, lines.size());
  }
  static void TearDownTestSuite() {
    delete client_;
    delete service_;
    delete events_;
    delete erased_;
    delete data_;
    delete keys_;
  }
  static void Start() {
    delete client_;
    delete service_;
    client_ = nullptr;
    service_ = new ServiceProcess(data_->path().string(),
                                  {{"ANALYTICS_PSEUDONYM_KEY_FILE", (keys_->path() / "pseudonym.key").string()}});
    ASSERT_GT(service_->port(), 0) << service_->output();
    client_ = new HttpClient(service_->port());
    admin_ = service_->Token({"platform_admin"}, "admin");
    marketing_ = service_->Token({"marketing_manager"}, "mm");
    producer_ = service_->Token({"service"}, "producer");
  }
  static void Post(const std::vector<std::string>& lines, size_t from, size_t to) {
    PostEventLines(*client_, producer_, lines, from, to);
  }

  static RawEvent Parse(const json& event) {
    RawEvent raw;
    raw.type = event["type"].get<std::string>();
    raw.time_ms = Ms(event["time"]);
    raw.data = event.value("data", json::object());
    if (event.contains("subject")) raw.user = event["subject"].get<std::string>();
    else if (raw.data.contains("user_id")) raw.user = raw.data["user_id"].get<std::string>();
    return raw;
  }

  // A purchase copied from `model` (a generated one) for `user` at `time_ms`, with a new id, order and amount.
  static json Purchase(const json& model, const std::string& user, int64_t time_ms, int amount) {
    json event = model;
    const std::string n = std::to_string(++crafted_);
    event["id"] = "e2e5e900-0000-4000-8000-" + std::string(12 - n.size(), '0') + n;
    event["subject"] = user;
    event["time"] = Time(time_ms);
    event.erase("traceparent");
    event["data"]["order_id"] = "ord_e2e_" + n;
    event["data"]["cart_id"] = "cart_e2e_" + n;
    event["data"]["amount"] = amount;
    event["data"]["currency"] = "RUB";
    event["data"]["is_first_purchase"] = false;
    event["data"]["is_gift"] = false;
    event["data"].erase("recipient_user_id");
    return event;
  }

  // Crafted events to add to the generated ones (`generated`, parsed; events_ holds them as RawEvents): a second
  // purchase for every other buyer (so purchase rules have members), a user who only buys (kLateBuyer, three
  // purchases five days before the end), and three users whose latest country changes to KZ late in the period
  // (user_property reads the latest value).
  static std::vector<json> Craft(const std::vector<json>& generated) {
    std::vector<json> out;
    std::map<std::string, json> first_purchase;
    std::map<std::string, json> last_view;  // before the evaluation time of most rules
    std::map<std::string, std::vector<std::pair<int64_t, std::string>>> countries;
    for (size_t event_idx = 0; event_idx < generated.size(); ++event_idx) {
      const json& event = generated[event_idx];
      const RawEvent& raw = (*events_)[event_idx];
      if (raw.user.empty()) continue;
      if (raw.type == kBuy && raw.Text("currency") == "RUB" && !first_purchase.count(raw.user)) {
        first_purchase[raw.user] = event;
      }
      if (raw.type == kView && raw.time_ms < AsOf() - kDayMs) last_view[raw.user] = event;
      if (!raw.Text("country").empty()) countries[raw.user].emplace_back(raw.time_ms, raw.Text("country"));
    }
    if (first_purchase.empty()) {
      ADD_FAILURE() << "no purchase in the generated data";
      return out;
    }
    const json model = first_purchase.begin()->second;
    size_t buyer_idx = 0;
    for (const auto& [user, purchase] : first_purchase) {
      if (buyer_idx++ % 2 != 0) continue;
      int64_t at = Ms(purchase["time"]) + int64_t((buyer_idx / 2) % 5 + 1) * kDayMs - 3 * kHourMs;
      if (at >= last_day_ms_ + kDayMs) at = Ms(purchase["time"]) + kHourMs;
      if (at >= last_day_ms_ + kDayMs) continue;
      out.push_back(Purchase(purchase, user, at, 100 * static_cast<int>(buyer_idx % 7 + 1) + 99));
    }
    for (int purchase_idx = 0; purchase_idx < 3; ++purchase_idx) {
      const int64_t at = last_day_ms_ - 5 * kDayMs + (10 + purchase_idx) * kHourMs;
      out.push_back(Purchase(model, kLateBuyer, at, 499 + 500 * purchase_idx));
    }
    int moved = 0;
    for (const auto& [user, view] : last_view) {
      if (moved == 3) break;
      auto& seen = countries[user];
      std::sort(seen.begin(), seen.end());
      if (seen.empty() || seen.back().second != "RU") continue;
      json event = view;
      const std::string n = std::to_string(++crafted_);
      event["id"] = "e2e5e900-0000-4000-8000-" + std::string(12 - n.size(), '0') + n;
      event["time"] = Time(Ms(view["time"]) + 60000);
      event["data"]["country"] = "KZ";
      out.push_back(std::move(event));
      ++moved;
    }
    return out;
  }

  // The fixed evaluation time of most dynamic segments: noon of the last day (events after it exist).
  static int64_t AsOf() { return last_day_ms_ + 12 * kHourMs; }
  // A backdated evaluation time, in the middle of the data.
  static int64_t Backdated() { return first_day_ms_ + 15 * kDayMs + 18 * kHourMs + 30 * 60000; }

  // The users (original ids) with an event at or before `as_of` for whom `holds` is true of their events up to
  // as_of. Erased users have no events.
  static UserSet Reference(int64_t as_of, const std::function<bool(const Events&)>& holds) {
    std::map<std::string, Events> users;
    for (const auto& event : *events_) {
      if (event.user.empty() || event.time_ms > as_of || erased_->count(event.user)) continue;
      users[event.user].push_back(&event);
    }
    UserSet out;
    for (auto& [user, events] : users) {
      std::stable_sort(events.begin(), events.end(),
                       [](const RawEvent* a, const RawEvent* b) { return a->time_ms < b->time_ms; });
      if (holds(events)) out.insert(user);
    }
    return out;
  }
  static UserSet Universe(int64_t as_of) {
    return Reference(as_of, [](const Events&) { return true; });
  }

  static ClientResponse Send(const std::string& method, const std::string& target, const json& body,
                             const std::string& token, std::map<std::string, std::string> headers = {}) {
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    std::string text;
    if (!body.is_null()) {
      headers.emplace("Content-Type", "application/json");
      text = body.dump();
    }
    return client_->Request(method, target, text, headers);
  }
  static json Get(const std::string& target, int expected = 200, const std::string& token = {}) {
    auto response = client_->Get(target, token.empty() ? admin_ : token);
    EXPECT_EQ(response.status, expected) << "GET " << target << " → " << response.body;
    return response.Json();
  }

  // Polls the run until it is completed or failed (30 s at most) and checks the run document.
  static json WaitRun(const std::string& run_id, const std::string& segment_id) {
    json run;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      run = Get(kRuns + run_id);
      const std::string status = run.value("status", "");
      if (status == "completed" || status == "failed") break;
      EXPECT_TRUE(status == "queued" || status == "running") << run.dump();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(run["status"], "completed") << run.dump();
    EXPECT_EQ(run["run_id"], run_id);
    EXPECT_EQ(run["kind"], "segment_refresh");
    EXPECT_EQ(run["target"], segment_id);
    EXPECT_TRUE(run["parameters"].is_object()) << run.dump();
    EXPECT_TRUE(run["error"].is_null()) << run.dump();
    EXPECT_TRUE(run["requested_by"].is_string()) << run.dump();
    for (const char* name : {"created_at", "started_at", "finished_at"}) {
      EXPECT_TRUE(IsRfc3339Millis(run[name])) << name << " " << run.dump();
    }
    if (IsRfc3339Millis(run["started_at"]) && IsRfc3339Millis(run["finished_at"]) &&
        IsRfc3339Millis(run["created_at"])) {
      EXPECT_LE(Ms(run["created_at"]), Ms(run["started_at"]));
      EXPECT_LE(Ms(run["started_at"]), Ms(run["finished_at"]));
      EXPECT_EQ(run["duration_ms"], Ms(run["finished_at"]) - Ms(run["started_at"])) << run.dump();
    }
    const json& result = run["result"];
    EXPECT_TRUE(result.is_object()) << run.dump();
    if (result.is_object()) {
      EXPECT_TRUE(result["users_count"].is_number_integer()) << run.dump();
      EXPECT_TRUE(result["added"].is_number_integer()) << run.dump();
      EXPECT_TRUE(result["removed"].is_number_integer()) << run.dump();
      EXPECT_TRUE(IsRfc3339Millis(result["as_of"])) << run.dump();
    }
    return run;
  }

  // GET users-count, checking its shape.
  static json UsersCount(const std::string& id, const std::string& token = {}) {
    json count = Get(kSegments + id + "/users-count", 200, token);
    EXPECT_EQ(count["segment_id"], id) << count.dump();
    EXPECT_TRUE(count["users_count"].is_number_integer()) << count.dump();
    EXPECT_TRUE(IsRfc3339Millis(count["as_of"])) << count.dump();
    EXPECT_TRUE(IsRfc3339Millis(count["refreshed_at"])) << count.dump();
    return count;
  }
  static int64_t CountOfSegment(const std::string& id) { return UsersCount(id)["users_count"].get<int64_t>(); }

  // POST a definition: 201 with Location, ETag "1" and the document.
  static json Create(const json& body, std::string& id) {
    auto response = Send("POST", kDefinitions, body, admin_);
    EXPECT_EQ(response.status, 201) << body.dump() << " → " << response.body;
    json doc = response.Json();
    id = doc.value("id", "");
    EXPECT_FALSE(id.empty()) << response.body;
    EXPECT_EQ(response.Header("location"), kDefinitions + "/" + id);
    EXPECT_EQ(response.Header("etag"), "\"1\"");
    EXPECT_EQ(doc["version"], 1);
    EXPECT_EQ(doc["name"], body["name"]);
    EXPECT_EQ(doc["type"], body["type"]);
    EXPECT_EQ(doc["created_by"], "admin");
    EXPECT_TRUE(IsRfc3339Millis(doc["created_at"])) << doc.dump();
    EXPECT_TRUE(IsRfc3339Millis(doc["updated_at"])) << doc.dump();
    return doc;
  }

  // Creates a dynamic segment, waits for its first refresh and checks run, users-count and the definition.
  static Made MakeDynamic(const std::string& name, const json& rule, const json& extra = json::object()) {
    Made made;
    json body = {{"name", name}, {"type", "dynamic"}, {"rule", rule}};
    body.update(extra);
    made.created = Create(body, made.id);
    EXPECT_TRUE(made.created["refresh_run_id"].is_string()) << made.created.dump();
    if (made.id.empty() || !made.created["refresh_run_id"].is_string()) return made;
    const std::string run_id = made.created["refresh_run_id"].get<std::string>();
    made.run = WaitRun(run_id, made.id);
    EXPECT_EQ(made.run["requested_by"], "admin");
    made.count = UsersCount(made.id);
    EXPECT_EQ(made.count["users_count"], made.run["result"]["users_count"]) << made.run.dump();
    EXPECT_EQ(made.count["as_of"], made.run["result"]["as_of"]) << made.run.dump();
    if (body.contains("as_of")) {
      EXPECT_EQ(made.count["as_of"], Time(Ms(body["as_of"])));
    }
    json doc = Get(kDefinitions + "/" + made.id);
    EXPECT_EQ(doc["materialization"]["users_count"], made.count["users_count"]) << doc.dump();
    EXPECT_EQ(doc["materialization"]["run_id"], run_id) << doc.dump();
    return made;
  }
  static int64_t AsOfOf(const Made& made) { return Ms(made.count["as_of"]); }

  static bool Contains(const std::string& id, const std::string& user, const std::string& token = {}) {
    json answer = Get(kSegments + id + "/contains/" + UrlEncode(user), 200, token);
    EXPECT_EQ(answer["segment_id"], id);
    EXPECT_EQ(answer["user_id"], user);
    EXPECT_TRUE(IsRfc3339Millis(answer["as_of"])) << answer.dump();
    EXPECT_TRUE(IsRfc3339Millis(answer["refreshed_at"])) << answer.dump();
    return answer.value("contains", false);
  }

  // All pages of GET members (original ids); a repeated id fails the test.
  static UserSet Members(const std::string& id, int limit, const std::string& token = {}) {
    UserSet users;
    std::string cursor;
    for (int page = 0; page < 10000; ++page) {
      std::string target = kSegments + id + "/members?limit=" + std::to_string(limit);
      if (!cursor.empty()) target += "&cursor=" + UrlEncode(cursor);
      json answer = Get(target, 200, token);
      EXPECT_EQ(answer["segment_id"], id);
      EXPECT_LE(answer["users"].size(), static_cast<size_t>(limit));
      for (const auto& user : answer["users"]) {
        EXPECT_TRUE(users.insert(user.get<std::string>()).second) << "repeated " << user;
      }
      if (answer["next_cursor"].is_null()) return users;
      cursor = answer["next_cursor"].get<std::string>();
    }
    ADD_FAILURE() << "members of " << id << " never ended";
    return users;
  }

  // The segment holds exactly `expected`: users-count, and contains for a few members and non-members.
  static void ExpectUsers(const Made& made, const UserSet& expected, const std::string& what) {
    EXPECT_EQ(made.count["users_count"], expected.size()) << what;
    size_t checked = 0;
    for (const auto& user : expected) {
      if (checked++ == 3) break;
      EXPECT_TRUE(Contains(made.id, user)) << what << " " << user;
    }
    const UserSet outside = Minus(Universe(AsOf()), expected);
    checked = 0;
    for (const auto& user : outside) {
      if (checked++ == 3) break;
      EXPECT_FALSE(Contains(made.id, user)) << what << " " << user;
    }
    EXPECT_FALSE(Contains(made.id, kNobody)) << what << ": a user nobody has seen";
  }

  static json Funnel(const json& body, int expected = 200) {
    auto response = Send("POST", kFunnels, body, admin_);
    EXPECT_EQ(response.status, expected) << body.dump() << " → " << response.body;
    return response.Json();
  }

  // Per user, the steps of FunnelBody() (ordered, first_touch, held on game_id, 1-day window) their best attempt
  // reached, from the raw events of the period that `keep` accepts.
  template <typename Keep>
  static std::map<std::string, size_t> ReachedSteps(Keep keep) {
    const std::vector<std::string> steps = {kView, kCart, kBuy};
    const int64_t end = last_day_ms_ + kDayMs;
    std::map<std::pair<std::string, std::string>, std::vector<std::vector<int64_t>>> pairs;
    for (const auto& event : *events_) {
      const std::string game = event.Text("game_id");
      if (event.user.empty() || game.empty() || event.time_ms >= end || erased_->count(event.user) || !keep(event)) {
        continue;
      }
      for (size_t step = 0; step < steps.size(); ++step) {
        if (event.type != steps[step]) continue;
        auto& times = pairs[{event.user, game}];
        times.resize(steps.size());
        times[step].push_back(event.time_ms);
      }
    }
    std::map<std::string, size_t> reached;  // user → steps reached by their best attempt
    for (auto& [pair, times] : pairs) {
      if (times[0].empty()) continue;
      for (auto& list : times) std::sort(list.begin(), list.end());
      const int64_t t0 = times[0].front();
      int64_t previous = t0;
      size_t steps_reached = 1;
      for (size_t step = 1; step < steps.size(); ++step) {
        int64_t at = -1;
        for (int64_t t : times[step]) {
          if (t > previous && t <= t0 + kDayMs) {
            at = t;
            break;
          }
        }
        if (at < 0) break;
        previous = at;
        ++steps_reached;
      }
      reached[pair.first] = std::max(reached[pair.first], steps_reached);
    }
    return reached;
  }
  // Users per step of FunnelBody().
  template <typename Keep>
  static std::vector<size_t> ReferenceFunnel(Keep keep) {
    std::vector<size_t> users(3, 0);
    for (const auto& [user, count] : ReachedSteps(keep)) {
      for (size_t step = 0; step < count; ++step) ++users[step];
    }
    return users;
  }
  static json FunnelBody() {
    return {{"steps", {{{"event_type", kView}}, {{"event_type", kCart}}, {{"event_type", kBuy}}}},
            {"window_seconds", 86400},
            {"order", "ordered"},
            {"entry", "first_touch"},
            {"hold_constant", {"game_id"}},
            {"period_start", Day(first_day_ms_)},
            {"period_end", Day(last_day_ms_)},
            {"timezone", "UTC"}};
  }

  static void ExpectError(const ClientResponse& response, int status, const std::string& code,
                          const std::string& what) {
    EXPECT_EQ(response.status, status) << what << " → " << response.body;
    EXPECT_EQ(response.Json()["error"]["code"], code) << what << " → " << response.body;
  }

  static TempDir* data_;
  static TempDir* keys_;
  static std::vector<RawEvent>* events_;
  static UserSet* erased_;
  static ServiceProcess* service_;
  static HttpClient* client_;
  static std::string admin_, marketing_, producer_;
  static int64_t first_day_ms_, last_day_ms_;
  static int crafted_;
};

TempDir* SegmentsE2eTest::data_ = nullptr;
TempDir* SegmentsE2eTest::keys_ = nullptr;
std::vector<RawEvent>* SegmentsE2eTest::events_ = nullptr;
UserSet* SegmentsE2eTest::erased_ = nullptr;
ServiceProcess* SegmentsE2eTest::service_ = nullptr;
HttpClient* SegmentsE2eTest::client_ = nullptr;
std::string SegmentsE2eTest::admin_, SegmentsE2eTest::marketing_, SegmentsE2eTest::producer_;
int64_t SegmentsE2eTest::first_day_ms_ = 0, SegmentsE2eTest::last_day_ms_ = 0;
int SegmentsE2eTest::crafted_ = 0;

// The issue's example: at least two purchases in the last 30 days and no game session in the last 7.
json QuietBuyersRule() {
  return {{"and",
           {{{"performed", {{"event_type", kBuy}, {"count", {{"gte", 2}}}, {"within_days", 30}}}},
            {{"not", {{"performed", {{"event_type", kSession}, {"within_days", 7}}}}}}}}};
}
bool QuietBuyer(const Events& events, int64_t as_of) {
  return CountOf(events, kBuy, WindowStart(as_of, 30)) >= 2 && CountOf(events, kSession, WindowStart(as_of, 7)) == 0;
}

TEST_F(SegmentsE2eTest, TheIssueExampleMatchesTheReferenceAtAFixedAndABackdatedTime) {
  const int64_t as_of = AsOf();
  Made made = MakeDynamic("quiet_buyers", QuietBuyersRule(), {{"as_of", Time(as_of)}});
  EXPECT_EQ(made.run["parameters"]["trigger"], "create") << made.run.dump();
  EXPECT_EQ(made.run["result"]["added"], made.count["users_count"]);
  EXPECT_EQ(made.run["result"]["removed"], 0);
  EXPECT_EQ(made.created["as_of"], Time(as_of));
  const UserSet expected = Reference(as_of, [&](const Events& events) { return QuietBuyer(events, as_of); });
  ASSERT_GE(expected.size(), 5u) << "the data should have quiet buyers";
  EXPECT_TRUE(expected.count(kLateBuyer) || erased_->count(kLateBuyer)) << "the crafted quiet buyer";
  ExpectUsers(made, expected, "quiet buyers");
  EXPECT_LE(Ms(made.count["refreshed_at"]), common::NowMillis());
  EXPECT_TRUE(made.count["refresh_duration_ms"].is_number_integer()) << made.count.dump();

  // Every member, page by page (service role), equals the reference in original ids.
  EXPECT_EQ(Members(made.id, 1, producer_), expected);

  // A refresh with an as_of in the body: the counts of that time, with its own windows.
  const int64_t backdated = Backdated();
  auto response = Send("POST", kSegments + made.id + "/refresh", {{"as_of", Time(backdated)}}, admin_);
  ASSERT_EQ(response.status, 202) << response.body;
  json accepted = response.Json();
  EXPECT_EQ(accepted["segment_id"], made.id);
  EXPECT_EQ(accepted["status"], "queued");
  json run = WaitRun(accepted["run_id"].get<std::string>(), made.id);
  EXPECT_EQ(run["parameters"]["as_of"], Time(backdated)) << run.dump();
  const UserSet then = Reference(backdated, [&](const Events& events) { return QuietBuyer(events, backdated); });
  EXPECT_NE(then, expected) << "the backdated time should change the answer";
  json count = UsersCount(made.id);
  EXPECT_EQ(count["users_count"], then.size());
  EXPECT_EQ(count["as_of"], Time(backdated));
  EXPECT_EQ(run["result"]["users_count"], then.size());
  EXPECT_EQ(run["result"]["added"], Minus(then, expected).size());
  EXPECT_EQ(run["result"]["removed"], Minus(expected, then).size());
  EXPECT_EQ(Members(made.id, 1000), then);
}

TEST_F(SegmentsE2eTest, AggregatePropertyAndFirstPerformedRulesMatchTheReference) {
  const int64_t as_of = AsOf();
  // The sum of RUB purchase amounts reaches 1000.
  Made spenders = MakeDynamic("big_spenders",
                              {{"aggregate",
                                {{"event_type", kBuy},
                                 {"filters", {{{"property", "currency"}, {"op", "eq"}, {"value", "RUB"}}}},
                                 {"property", "amount"},
                                 {"function", "sum"},
                                 {"gte", 1000}}}},
                              {{"as_of", Time(as_of)}});
  const UserSet spent = Reference(as_of, [](const Events& events) {
    double sum = 0;
    size_t count = 0;
    for (const RawEvent* event : events) {
      auto amount = event->Number("amount");
      if (event->type != kBuy || event->Text("currency") != "RUB" || !amount) continue;
      sum += *amount;
      ++count;
    }
    return count > 0 && sum >= 1000;
  });
  ASSERT_GE(spent.size(), 3u);
  ExpectUsers(spenders, spent, "big spenders");

  // The latest country is KZ (three users moved there late; others travelled).
  Made kazakh = MakeDynamic("latest_kz", {{"user_property", {{"property", "country"}, {"op", "eq"}, {"value", "KZ"}}}},
                            {{"as_of", Time(as_of)}});
  const UserSet latest_kz = Reference(as_of, [](const Events& events) { return LatestCountry(events) == "KZ"; });
  const UserSet ever_kz = Reference(as_of, [](const Events& events) {
    return std::any_of(events.begin(), events.end(), [](const RawEvent* e) { return e->Text("country") == "KZ"; });
  });
  ASSERT_GE(latest_kz.size(), 5u);
  EXPECT_NE(latest_kz, ever_kz) << "the data should hold users whose country changed";
  ExpectUsers(kazakh, latest_kz, "latest country KZ");

  // Registered (first registration) after the first week.
  const int64_t week = first_day_ms_ + 7 * kDayMs;
  Made newcomers = MakeDynamic("late_registrations",
                               {{"first_performed", {{"event_type", kRegistered}, {"after", Time(week)}}}},
                               {{"as_of", Time(as_of)}});
  const UserSet registered = Reference(as_of, [&](const Events& events) {
    for (const RawEvent* event : events) {
      if (event->type == kRegistered) return event->time_ms >= week;
    }
    return false;
  });
  ASSERT_GE(registered.size(), 10u);
  ExpectUsers(newcomers, registered, "registered after the first week");
}

TEST_F(SegmentsE2eTest, OrNotAndInSegmentCombinationsMatchTheReference) {
  const int64_t as_of = AsOf();
  const json fixed = {{"as_of", Time(as_of)}};
  // Never played, or two carts in the last 14 days: a negated answer (needs every user with events).
  Made idle = MakeDynamic(
      "no_play_or_carts",
      {{"or",
        {{{"not_performed", {{"event_type", kSession}}}},
         {{"performed", {{"event_type", kCart}, {"count", {{"gte", 2}}}, {"within_days", 14}}}}}}},
      fixed);
  const UserSet idle_expected = Reference(as_of, [&](const Events& events) {
    return CountOf(events, kSession) == 0 || CountOf(events, kCart, WindowStart(as_of, 14)) >= 2;
  });
  ASSERT_GE(idle_expected.size(), 10u);
  ExpectUsers(idle, idle_expected, "no play or carts");

  // Neither latest country RU nor fewer than 3 page views: De Morgan over a count that holds at zero.
  const json latest_ru = {{"user_property", {{"property", "country"}, {"op", "eq"}, {"value", "RU"}}}};
  const json few_views = {{"performed", {{"event_type", kView}, {"count", {{"lt", 3}}}}}};
  Made abroad = MakeDynamic("abroad_browsers", {{"not", {{"or", json::array({latest_ru, few_views})}}}}, fixed);
  const UserSet abroad_expected = Reference(
      as_of, [](const Events& events) { return LatestCountry(events) != "RU" && CountOf(events, kView) >= 3; });
  ASSERT_GE(abroad_expected.size(), 5u);
  ExpectUsers(abroad, abroad_expected, "abroad browsers");

  // Latest country RU, and of those the ones with three sessions or more.
  Made russia =
      MakeDynamic("latest_ru", {{"user_property", {{"property", "country"}, {"op", "eq"}, {"value", "RU"}}}}, fixed);
  const UserSet ru = Reference(as_of, [](const Events& events) { return LatestCountry(events) == "RU"; });
  ExpectUsers(russia, ru, "latest RU");
  Made players = MakeDynamic(
      "ru_players",
      {{"and", {{{"in_segment", russia.id}}, {{"performed", {{"event_type", kSession}, {"count", {{"gte", 3}}}}}}}}},
      fixed);
  const UserSet ru_players =
      Reference(as_of, [&](const Events& events) {
        return ru.count(events.front()->user) > 0 && CountOf(events, kSession) >= 3;
      });
  ASSERT_GE(ru_players.size(), 5u);
  ExpectUsers(players, ru_players, "RU players");
  // Everyone with events who is not in latest_ru.
  Made others = MakeDynamic("not_ru", {{"not", {{"in_segment", russia.id}}}}, fixed);
  const UserSet not_ru = Minus(Universe(as_of), ru);
  ExpectUsers(others, not_ru, "not RU");
  EXPECT_EQ(Members(others.id, 37), not_ru);
}

TEST_F(SegmentsE2eTest, WithinDaysCountsCalendarDaysOfTheSegmentsTimeZone) {
  // 20:30 UTC is 05:30 the next day in Tokyo: "the last 2 days" starts 15:00 UTC the day before in Tokyo.
  const int64_t as_of = last_day_ms_ - 3 * kDayMs + 20 * kHourMs + 30 * 60000;
  const json rule = {{"performed", {{"event_type", kView}, {"count", {{"gte", 2}}}, {"within_days", 2}}}};
  Made tokyo = MakeDynamic("viewers_tokyo", rule, {{"as_of", Time(as_of)}, {"timezone", "Asia/Tokyo"}});
  Made utc = MakeDynamic("viewers_utc", rule, {{"as_of", Time(as_of)}});
  EXPECT_EQ(tokyo.created["timezone"], "Asia/Tokyo");
  const int64_t tokyo_start = WindowStart(as_of, 2, 9 * kHourMs);
  EXPECT_EQ(tokyo_start, last_day_ms_ - 4 * kDayMs + 15 * kHourMs);
  const UserSet in_tokyo =
      Reference(as_of, [&](const Events& events) { return CountOf(events, kView, tokyo_start) >= 2; });
  const UserSet in_utc =
      Reference(as_of, [&](const Events& events) { return CountOf(events, kView, WindowStart(as_of, 2)) >= 2; });
  ASSERT_NE(in_tokyo, in_utc) << "the zone should matter for this data";
  EXPECT_EQ(tokyo.count["users_count"], in_tokyo.size());
  EXPECT_EQ(Members(tokyo.id, 1000), in_tokyo);
  EXPECT_EQ(utc.count["users_count"], in_utc.size());
  EXPECT_EQ(Members(utc.id, 1000), in_utc);
}

TEST_F(SegmentsE2eTest, StaticSegmentsTakeListsJsonAndCsvUploads) {
  // Seven users with events, in a fixed order.
  std::vector<std::string> users;
  for (const auto& user : Universe(AsOf())) {
    if (users.size() < 7) users.push_back(user);
  }
  ASSERT_EQ(users.size(), 7u);
  std::string id;
  json doc = Create({{"name", "vip_list"}, {"type", "static"}, {"user_ids", {users[0], users[1], users[2], users[0]}}},
                    id);
  EXPECT_FALSE(doc.contains("refresh_run_id") && doc["refresh_run_id"].is_string()) << doc.dump();
  EXPECT_FALSE(doc.contains("user_ids") && !doc["user_ids"].is_null()) << "the list is not part of the document";
  EXPECT_EQ(CountOfSegment(id), 3);
  EXPECT_TRUE(Contains(id, users[0]));
  EXPECT_FALSE(Contains(id, users[3]));
  EXPECT_FALSE(Contains(id, kNobody));

  auto upload = [&](const json& body) {
    auto response = Send("POST", kSegments + id + "/users", body, admin_);
    EXPECT_EQ(response.status, 200) << body.dump() << " → " << response.body;
    return response.Json();
  };
  // add: a known user and one who never sent an event (a list is a list).
  json added = upload({{"user_ids", {users[3], kNobody}}, {"mode", "add"}});
  EXPECT_EQ(added["users_count"], 5) << added.dump();
  EXPECT_EQ(added["added"], 2) << added.dump();
  EXPECT_TRUE(Contains(id, kNobody));
  json removed = upload({{"user_ids", {users[0], users[6]}}, {"mode", "remove"}});
  EXPECT_EQ(removed["users_count"], 4) << removed.dump();
  EXPECT_EQ(removed["removed"], 1) << removed.dump();
  EXPECT_FALSE(Contains(id, users[0]));
  EXPECT_EQ(Members(id, 2), UserSet({users[1], users[2], users[3], kNobody}));
  json replaced = upload({{"user_ids", {users[2], users[3], users[5]}}, {"mode", "replace"}});
  EXPECT_EQ(replaced["users_count"], 3) << replaced.dump();
  EXPECT_EQ(replaced["added"], 1) << replaced.dump();
  EXPECT_EQ(replaced["removed"], 2) << replaced.dump();
  EXPECT_FALSE(Contains(id, users[1]));
  EXPECT_FALSE(Contains(id, kNobody));
  EXPECT_TRUE(Contains(id, users[5]));

  // CSV with a header and quoted ids: replace (the default mode), then add.
  auto csv = client_->Request("POST", kSegments + id + "/users",
                              "user_id\r\n\"" + users[4] + "\"\r\n" + users[5] + "\r\n\r\n",
                              {{"Authorization", "Bearer " + admin_}, {"Content-Type", "text/csv; charset=utf-8"}});
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(csv.Json()["users_count"], 2);
  EXPECT_EQ(CountOfSegment(id), 2);
  EXPECT_FALSE(Contains(id, users[2]));
  EXPECT_TRUE(Contains(id, users[4]));
  csv = client_->Request("POST", kSegments + id + "/users?mode=add", "\"" + users[6] + "\"\n",
                         {{"Authorization", "Bearer " + admin_}, {"Content-Type", "text/csv"}});
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(Members(id, 1000), UserSet({users[4], users[5], users[6]}));
  json count = UsersCount(id);
  EXPECT_EQ(count["users_count"], 3);

  // Bad uploads.
  ExpectError(Send("POST", kSegments + id + "/users", {{"user_ids", "not-a-list"}}, admin_), 400,
              "INVALID_REQUEST_BODY", "user_ids a string");
  auto bad = Send("POST", kSegments + id + "/users", {{"user_ids", {users[0], 7}}}, admin_);
  ExpectError(bad, 400, "INVALID_REQUEST_BODY", "a number in user_ids");
  EXPECT_EQ(bad.Json()["error"]["details"]["field"], "user_ids[1]") << bad.body;
  bad = Send("POST", kSegments + id + "/users", {{"user_ids", {users[0]}}, {"mode", "merge"}}, admin_);
  ExpectError(bad, 400, "INVALID_REQUEST_BODY", "mode merge");
  EXPECT_EQ(bad.Json()["error"]["details"]["field"], "mode") << bad.body;
  bad = client_->Request("POST", kSegments + id + "/users", "user_id\n\"unterminated\n",
                         {{"Authorization", "Bearer " + admin_}, {"Content-Type", "text/csv"}});
  ExpectError(bad, 400, "INVALID_REQUEST_BODY", "malformed CSV");
  EXPECT_EQ(CountOfSegment(id), 3) << "a rejected upload changes nothing";
  ExpectError(Send("POST", kSegments + std::string("no-such-segment/users"), {{"user_ids", {users[0]}}}, admin_), 404,
              "SEGMENT_NOT_FOUND", "upload to an unknown segment");
  // Dynamic segments take no uploads.
  std::string dynamic_id;
  Create({{"name", "registered_no_upload"},
          {"type", "dynamic"},
          {"rule", {{"performed", {{"event_type", kRegistered}}}}}},
         dynamic_id);
  ExpectError(Send("POST", kSegments + dynamic_id + "/users", {{"user_ids", {users[0]}}}, admin_), 400,
              "INVALID_REQUEST_BODY", "upload to a dynamic segment");
}

TEST_F(SegmentsE2eTest, AStaticSegmentFromAFunnelHoldsItsDropOffs) {
  json funnel = Funnel(FunnelBody());
  ASSERT_EQ(funnel["steps"].size(), 3u) << funnel.dump();
  const int64_t dropped = funnel["steps"][0]["users"].get<int64_t>() - funnel["steps"][1]["users"].get<int64_t>();
  ASSERT_GT(dropped, 10);
  std::string id;
  json doc = Create(
      {{"name", "viewed_not_carted"},
       {"type", "static"},
       {"source", {{"funnel", FunnelBody()}, {"step", 0}, {"users", "dropped"}}}},
      id);
  EXPECT_EQ(doc["source"]["step"], 0) << doc.dump();
  EXPECT_EQ(doc["source"]["users"], "dropped") << doc.dump();
  EXPECT_EQ(CountOfSegment(id), dropped);
  // Independently: the users who viewed a game in the period but never put it in a cart within a day.
  UserSet expected;
  for (const auto& [user, steps] : ReachedSteps([](const RawEvent&) { return true; })) {
    if (steps == 1) expected.insert(user);
  }
  EXPECT_EQ(static_cast<int64_t>(expected.size()), dropped);
  EXPECT_EQ(Members(id, 1000), expected);
  std::string converted_id;
  Create({{"name", "funnel_converted"},
          {"type", "static"},
          {"source", {{"funnel", FunnelBody()}, {"step", 2}, {"users", "converted"}}}},
         converted_id);
  EXPECT_EQ(CountOfSegment(converted_id), funnel["steps"][2]["users"].get<int64_t>());
  UserSet converted;
  for (const auto& [user, steps] : ReachedSteps([](const RawEvent&) { return true; })) {
    if (steps == 3) converted.insert(user);
  }
  EXPECT_EQ(Members(converted_id, 1000), converted);
  json bad = {{"name", "bad_source"},
              {"type", "static"},
              {"source", {{"funnel", FunnelBody()}, {"step", 2}, {"users", "dropped"}}}};
  auto response = Send("POST", kDefinitions, bad, admin_);
  ExpectError(response, 400, "INVALID_REQUEST_BODY", "dropped after the last step");
  EXPECT_EQ(response.Json()["error"]["details"]["field"], "source.step") << response.body;
}

TEST_F(SegmentsE2eTest, FunnelsAndMetricsRestrictedToASegmentMatchTheReference) {
  const int64_t as_of = AsOf();
  Made russia = MakeDynamic("ru_for_queries",
                            {{"user_property", {{"property", "country"}, {"op", "eq"}, {"value", "RU"}}}},
                            {{"as_of", Time(as_of)}});
  const UserSet ru = Reference(as_of, [](const Events& events) { return LatestCountry(events) == "RU"; });
  ASSERT_EQ(russia.count["users_count"], ru.size());

  // Funnel.
  json body = FunnelBody();
  body["segment"] = russia.id;
  json restricted = Funnel(body);
  EXPECT_EQ(restricted["segment"], russia.id) << restricted.dump();
  const auto expected = ReferenceFunnel([&](const RawEvent& event) { return ru.count(event.user) > 0; });
  const auto everyone = ReferenceFunnel([](const RawEvent&) { return true; });
  ASSERT_EQ(restricted["steps"].size(), expected.size()) << restricted.dump();
  for (size_t step = 0; step < expected.size(); ++step) {
    EXPECT_EQ(restricted["steps"][step]["users"], expected[step]) << "step " << step;
  }
  EXPECT_LT(expected[0], everyone[0]);
  json unrestricted = Funnel(FunnelBody());
  EXPECT_EQ(unrestricted["steps"][0]["users"], everyone[0]);

  // Metrics: daily active users and game sessions of the members.
  std::map<std::string, std::set<std::string>> active;
  std::map<std::string, size_t> sessions;
  for (const auto& event : *events_) {
    if (!ru.count(event.user) || event.time_ms >= last_day_ms_ + kDayMs) continue;
    if (kActive.count(Short(event.type))) active[Day(event.time_ms)].insert(event.user);
    if (event.type == kSession) ++sessions[Day(event.time_ms)];
  }
  const std::string period =
      "period_start=" + Day(first_day_ms_) + "&period_end=" + Day(last_day_ms_) + "&segment=" + UrlEncode(russia.id);
  json dau = Get(kValues + "dau?" + period);
  EXPECT_EQ(dau["segment"], russia.id) << dau.dump();
  json played = Get(kValues + "sessions?" + period);
  std::map<std::string, double> dau_points, session_points;
  ASSERT_EQ(dau["series"].size(), 1u) << dau.dump();
  for (const auto& point : dau["series"][0]["points"]) {
    dau_points[point[0].get<std::string>().substr(0, 10)] = point[1].get<double>();
  }
  ASSERT_EQ(played["series"].size(), 1u) << played.dump();
  for (const auto& point : played["series"][0]["points"]) {
    session_points[point[0].get<std::string>().substr(0, 10)] = point[1].get<double>();
  }
  ASSERT_EQ(dau_points.size(), 21u);
  size_t days_differing_from_all = 0;
  for (int64_t day = first_day_ms_; day <= last_day_ms_; day += kDayMs) {
    EXPECT_EQ(dau_points[Day(day)], static_cast<double>(active[Day(day)].size())) << Day(day);
    EXPECT_EQ(session_points[Day(day)], static_cast<double>(sessions[Day(day)])) << Day(day);
  }
  json all = Get(kValues + "dau?period_start=" + Day(first_day_ms_) + "&period_end=" + Day(last_day_ms_));
  for (const auto& point : all["series"][0]["points"]) {
    days_differing_from_all += point[1].get<double>() != dau_points[point[0].get<std::string>().substr(0, 10)];
  }
  EXPECT_GT(days_differing_from_all, 0u);

  // An unknown segment: 404 on both.
  body["segment"] = "no-such-segment";
  json error = Funnel(body, 404);
  EXPECT_EQ(error["error"]["code"], "SEGMENT_NOT_FOUND") << error.dump();
  error = Get(kValues + "dau?period_start=" + Day(first_day_ms_) + "&period_end=" + Day(last_day_ms_) +
                  "&segment=no-such-segment",
              404);
  EXPECT_EQ(error["error"]["code"], "SEGMENT_NOT_FOUND") << error.dump();
  EXPECT_EQ(error["error"]["details"]["segment"], "no-such-segment") << error.dump();
}

TEST_F(SegmentsE2eTest, DefinitionsCanBeListedReplacedAndDeleted) {
  const int64_t as_of = AsOf();
  Made buyers = MakeDynamic("buyers_crud", {{"performed", {{"event_type", kBuy}, {"count", {{"gte", 1}}}}}},
                            {{"as_of", Time(as_of)}, {"description", "bought once"}});
  const UserSet universe = Universe(as_of);
  std::vector<std::string> some(universe.begin(), std::next(universe.begin(), 2));
  some.push_back(kNobody);
  std::string list_id;
  Create({{"name", "list_crud"}, {"type", "static"}, {"user_ids", some}}, list_id);

  // GET one, with its ETag.
  auto got = client_->Get(kDefinitions + "/" + buyers.id, admin_);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.Header("etag"), "\"1\"");
  json doc = got.Json();
  EXPECT_EQ(doc["description"], "bought once");
  EXPECT_EQ(doc["rule"]["performed"]["event_type"], kBuy) << doc.dump();
  EXPECT_EQ(doc["rule"]["performed"]["count"], json({{"gte", 1}})) << doc.dump();

  // The list, whole and by type.
  auto ids_of = [](const json& list) {
    std::set<std::string> ids;
    for (const auto& item : list["items"]) ids.insert(item["id"].get<std::string>());
    return ids;
  };
  json list = Get(kDefinitions);
  EXPECT_TRUE(ids_of(list).count(buyers.id) && ids_of(list).count(list_id)) << list.dump();
  json statics = Get(kDefinitions + "?type=static");
  for (const auto& item : statics["items"]) EXPECT_EQ(item["type"], "static");
  EXPECT_TRUE(ids_of(statics).count(list_id));
  EXPECT_FALSE(ids_of(statics).count(buyers.id));
  json dynamics = Get(kDefinitions + "?type=dynamic");
  for (const auto& item : dynamics["items"]) EXPECT_EQ(item["type"], "dynamic");
  EXPECT_TRUE(ids_of(dynamics).count(buyers.id));
  json error = Get(kDefinitions + "?type=sometimes", 400);
  EXPECT_EQ(error["error"]["code"], "INVALID_QUERY_PARAMETERS") << error.dump();
  EXPECT_EQ(error["error"]["details"]["parameter"], "type") << error.dump();

  // PUT with the current version: a new rule, refreshed.
  json replaced = {{"name", "buyers_crud"},
                   {"type", "dynamic"},
                   {"as_of", Time(as_of)},
                   {"rule", {{"performed", {{"event_type", kBuy}, {"count", {{"gte", 2}}}}}}}};
  auto put = Send("PUT", kDefinitions + "/" + buyers.id, replaced, admin_, {{"If-Match", "\"1\""}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.Header("etag"), "\"2\"");
  json updated = put.Json();
  EXPECT_EQ(updated["version"], 2);
  EXPECT_EQ(updated["description"], "") << "PUT replaces the whole definition";
  ASSERT_TRUE(updated["refresh_run_id"].is_string()) << updated.dump();
  json run = WaitRun(updated["refresh_run_id"].get<std::string>(), buyers.id);
  EXPECT_EQ(run["parameters"]["trigger"], "definition_changed") << run.dump();
  const UserSet twice = Reference(as_of, [](const Events& events) { return CountOf(events, kBuy) >= 2; });
  EXPECT_EQ(CountOfSegment(buyers.id), static_cast<int64_t>(twice.size()));
  EXPECT_EQ(Get(kDefinitions + "/" + buyers.id)["materialization"]["stale"], false);

  // A stale version: 412, nothing changes.
  replaced["description"] = "lost update";
  auto stale = Send("PUT", kDefinitions + "/" + buyers.id, replaced, admin_, {{"If-Match", "\"1\""}});
  ExpectError(stale, 412, "VERSION_CONFLICT", "stale If-Match");
  EXPECT_EQ(Get(kDefinitions + "/" + buyers.id)["version"], 2);
  // The type cannot change.
  auto retype = Send("PUT", kDefinitions + "/" + list_id, replaced, admin_);
  ExpectError(retype, 400, "INVALID_REQUEST_BODY", "dynamic → static");
  EXPECT_EQ(retype.Json()["error"]["details"]["field"], "type") << retype.body;
  ExpectError(Send("PUT", kDefinitions + "/no-such-segment", replaced, admin_), 404, "SEGMENT_NOT_FOUND",
              "PUT unknown");
  // A name that another segment has.
  json taken = replaced;
  taken["name"] = "list_crud";
  ExpectError(Send("PUT", kDefinitions + "/" + buyers.id, taken, admin_), 409, "ALREADY_EXISTS", "PUT taken name");
  auto duplicate = Send("POST", kDefinitions, {{"name", "list_crud"}, {"type", "static"}}, admin_);
  ExpectError(duplicate, 409, "ALREADY_EXISTS", "duplicate name");
  EXPECT_EQ(duplicate.Json()["error"]["details"]["name"], "list_crud") << duplicate.body;

  // A segment named by another one's in_segment cannot be deleted until that one is gone.
  Made dependent = MakeDynamic("in_list_crud", {{"in_segment", list_id}}, {{"as_of", Time(as_of)}});
  EXPECT_EQ(dependent.count["users_count"], 3) << "the members of a named segment belong, events or not";
  EXPECT_TRUE(Contains(dependent.id, kNobody));
  ExpectError(Send("DELETE", kDefinitions + "/" + list_id, json(), admin_), 409, "RESOURCE_IN_USE",
              "delete a referenced segment");
  EXPECT_EQ(CountOfSegment(list_id), 3);
  auto deleted = Send("DELETE", kDefinitions + "/" + dependent.id, json(), admin_);
  EXPECT_EQ(deleted.status, 204) << deleted.body;
  ExpectError(client_->Get(kDefinitions + "/" + dependent.id, admin_), 404, "SEGMENT_NOT_FOUND", "GET deleted");
  ExpectError(client_->Get(kSegments + dependent.id + "/users-count", admin_), 404, "SEGMENT_NOT_FOUND",
              "count of deleted");
  ExpectError(client_->Get(kSegments + dependent.id + "/contains/" + kNobody, admin_), 404, "SEGMENT_NOT_FOUND",
              "contains of deleted");
  ExpectError(Send("DELETE", kDefinitions + "/" + dependent.id, json(), admin_), 404, "SEGMENT_NOT_FOUND",
              "delete twice");
  EXPECT_EQ(Send("DELETE", kDefinitions + "/" + list_id, json(), admin_).status, 204);
  EXPECT_FALSE(ids_of(Get(kDefinitions)).count(list_id));
  // The name is free again.
  std::string again;
  Create({{"name", "list_crud"}, {"type", "static"}}, again);
  EXPECT_EQ(CountOfSegment(again), 0);

  // Runs: by target, and an unknown run.
  json runs = Get("/api/v1/analytics/pipelines/runs?kind=segment_refresh&target=" + buyers.id);
  ASSERT_EQ(runs["items"].size(), 2u) << runs.dump();
  for (const auto& item : runs["items"]) EXPECT_EQ(item["target"], buyers.id);
  ExpectError(client_->Get(kRuns + "no-such-run", admin_), 404, "NOT_FOUND", "unknown run");
  ExpectError(Send("POST", kSegments + std::string("no-such-segment/refresh"), json(), admin_), 404,
              "SEGMENT_NOT_FOUND", "refresh unknown");
}

TEST_F(SegmentsE2eTest, InvalidRulesAndDefinitionsNameTheOffendingField) {
  auto expect_field = [&](const json& body, const std::string& field) {
    auto response = Send("POST", kDefinitions, body, admin_);
    ExpectError(response, 400, "INVALID_REQUEST_BODY", body.dump());
    EXPECT_EQ(response.Json()["error"]["details"]["field"], field) << body.dump() << " → " << response.body;
  };
  auto dynamic = [](const json& rule) { return json{{"name", "invalid"}, {"type", "dynamic"}, {"rule", rule}}; };
  const json buy = {{"event_type", kBuy}};
  auto performed = [&](const json& extra) {
    json body = buy;
    if (extra.is_object()) body.update(extra);
    return json{{"performed", body}};
  };
  expect_field(dynamic({{"and", {performed({{"count", "two"}})}}}), "rule.and[0].performed.count");
  expect_field(dynamic({{"and", {performed({}), performed({{"count", {{"gte", 1}, {"lt", 3}}}})}}}),
               "rule.and[1].performed.count.lt");
  expect_field(dynamic(performed({{"count", {{"gte", -1}}}})), "rule.performed.count.gte");
  expect_field(dynamic(performed({{"count", {{"gte", 1.5}}}})), "rule.performed.count.gte");
  expect_field(dynamic(performed({{"within_days", 0}})), "rule.performed.within_days");
  const json january = {{"from", "2024-01-01T00:00:00Z"}, {"to", "2024-02-01T00:00:00Z"}};
  const json backwards = {{"from", "2024-02-01T00:00:00Z"}, {"to", "2024-01-01T00:00:00Z"}};
  expect_field(dynamic(performed({{"within_days", 3}, {"between", january}})), "rule.performed.between");
  expect_field(dynamic(performed({{"between", backwards}})), "rule.performed.between.to");
  expect_field(dynamic(performed({{"times", 2}})), "rule.performed.times");
  expect_field(dynamic({{"performed_twice", buy}}), "rule.performed_twice");
  expect_field(dynamic({{"or", json::array()}}), "rule.or");
  expect_field(dynamic({{"not", {{"first_performed", buy}}}}), "rule.not.first_performed");
  auto aggregate = [&](const json& extra) {
    json body = {{"event_type", kBuy}, {"property", "amount"}, {"function", "sum"}, {"gte", 1}};
    for (const auto& [key, value] : extra.items()) {
      if (value.is_null()) body.erase(key);
      else body[key] = value;
    }
    return json{{"aggregate", body}};
  };
  expect_field(dynamic(aggregate({{"property", nullptr}})), "rule.aggregate.property");
  expect_field(dynamic(aggregate({{"function", "median"}})), "rule.aggregate.function");
  expect_field(dynamic(aggregate({{"gte", "1"}})), "rule.aggregate.gte");
  expect_field(dynamic(aggregate({{"lt", 5}})), "rule.aggregate.lt");
  expect_field(dynamic({{"user_property", {{"property", "country"}, {"op", "exists"}, {"value", false}}}}),
               "rule.user_property.value");
  expect_field(dynamic({{"in_segment", 42}}), "rule.in_segment");
  expect_field(dynamic({{"in_segment", "no-such-segment"}}), "rule");
  const json two_kinds = {{"performed", buy}, {"not", performed({})}};
  expect_field(dynamic({{"and", {performed({}), two_kinds}}}), "rule.and[1].performed");
  json deep = performed({});
  for (int level = 0; level < 8; ++level) deep = {{"not", deep}};
  expect_field(dynamic(deep), "rule.not.not.not.not.not.not.not.not");
  // The definition's own fields.
  expect_field({{"type", "dynamic"}, {"rule", performed({})}}, "name");
  expect_field({{"name", "x"}, {"type", "semi"}}, "type");
  expect_field({{"name", "x"}, {"type", "dynamic"}}, "rule");
  expect_field({{"name", "x"}, {"type", "static"}, {"rule", performed({})}}, "rule");
  expect_field({{"name", "x"}, {"type", "static"}, {"as_of", "2024-01-01T00:00:00Z"}}, "as_of");
  expect_field({{"name", "x"}, {"type", "dynamic"}, {"rule", performed({})}, {"timezone", "Mars/Olympus"}}, "timezone");
  expect_field({{"name", "x"}, {"type", "dynamic"}, {"rule", performed({})}, {"as_of", "yesterday"}}, "as_of");
  expect_field({{"name", "x"}, {"type", "dynamic"}, {"rule", performed({})}, {"refresh_every", "10s"}},
               "refresh_every");
  expect_field({{"name", "x"}, {"type", "static"}, {"user_ids", {"ok", 7}}}, "user_ids[1]");
  expect_field({{"name", std::string(129, 'n')}, {"type", "static"}}, "name");
  json unknown = {{"name", "x"}, {"type", "static"}, {"colour", "red"}};
  auto response = Send("POST", kDefinitions, unknown, admin_);
  ExpectError(response, 400, "INVALID_REQUEST_BODY", "unknown field");
  EXPECT_NE(response.Json()["error"]["details"]["field"].get<std::string>().find("colour"), std::string::npos)
      << response.body;
  auto not_json = client_->Request("POST", kDefinitions, "{\"name\": ",
                                   {{"Authorization", "Bearer " + admin_}, {"Content-Type", "application/json"}});
  ExpectError(not_json, 400, "INVALID_REQUEST_BODY", "not JSON");
  EXPECT_FALSE(Get(kDefinitions)["items"].dump().find("\"invalid\"") != std::string::npos) << "nothing was created";

  // Refresh and members parameters.
  std::string id;
  Create({{"name", "params"}, {"type", "static"}, {"user_ids", {kNobody}}}, id);
  response = Send("POST", kSegments + id + "/refresh", {{"as_of", "yesterday"}}, admin_);
  ExpectError(response, 400, "INVALID_REQUEST_BODY", "refresh as_of");
  EXPECT_EQ(response.Json()["error"]["details"]["field"], "as_of") << response.body;
  json error = Get(kSegments + id + "/members?limit=0", 400);
  EXPECT_EQ(error["error"]["code"], "INVALID_QUERY_PARAMETERS");
  EXPECT_EQ(error["error"]["details"]["parameter"], "limit") << error.dump();
  error = Get(kSegments + id + "/members?cursor=abc", 400);
  EXPECT_EQ(error["error"]["details"]["parameter"], "cursor") << error.dump();
}

TEST_F(SegmentsE2eTest, RolesDecideWhoReadsAndWhoWrites) {
  std::string id;
  Create({{"name", "roles"}, {"type", "static"}, {"user_ids", {kNobody}}}, id);
  const std::string developer = service_->Token({"developer"}, "dev", {"game_1000"});
  const json body = {{"name", "by_marketing"}, {"type", "static"}};
  const std::string item = kDefinitions + "/" + id;
  struct Case {
    std::string method, target;
    json body;
  };
  const std::vector<Case> reads = {{"GET", kDefinitions, json()}, {"GET", item, json()},
                                   {"GET", kSegments + id + "/users-count", json()}};
  const std::vector<Case> writes = {{"POST", kDefinitions, body},
                                    {"PUT", item, body},
                                    {"DELETE", item, json()},
                                    {"POST", kSegments + id + "/refresh", json()},
                                    {"POST", kSegments + id + "/users", {{"user_ids", {kNobody}}}}};
  const std::string contains = kSegments + id + "/contains/" + kNobody;
  const std::string members = kSegments + id + "/members";
  for (const auto& read : reads) {
    EXPECT_EQ(Send(read.method, read.target, read.body, marketing_).status, 200) << read.target;
    ExpectError(Send(read.method, read.target, read.body, developer), 403, "ACCESS_DENIED_TO_RESOURCE", read.target);
    ExpectError(Send(read.method, read.target, read.body, producer_), 403, "ACCESS_DENIED_TO_RESOURCE", read.target);
    EXPECT_EQ(Send(read.method, read.target, read.body, "").status, 401) << read.target;
  }
  for (const auto& write : writes) {
    ExpectError(Send(write.method, write.target, write.body, marketing_), 403, "ACCESS_DENIED_TO_RESOURCE",
                write.method + " " + write.target);
    ExpectError(Send(write.method, write.target, write.body, developer), 403, "ACCESS_DENIED_TO_RESOURCE",
                write.method + " " + write.target);
    EXPECT_EQ(Send(write.method, write.target, write.body, "").status, 401) << write.target;
  }
  // contains: services, admins and marketing; members: services and admins only.
  EXPECT_TRUE(Contains(id, kNobody, producer_));
  EXPECT_TRUE(Contains(id, kNobody, marketing_));
  ExpectError(client_->Get(contains, developer), 403, "ACCESS_DENIED_TO_RESOURCE", "developer contains");
  EXPECT_EQ(client_->Get(contains).status, 401);
  EXPECT_EQ(Members(id, 10, producer_), UserSet({kNobody}));
  ExpectError(client_->Get(members, marketing_), 403, "ACCESS_DENIED_TO_RESOURCE", "marketing members");
  ExpectError(client_->Get(members, developer), 403, "ACCESS_DENIED_TO_RESOURCE", "developer members");
  EXPECT_EQ(client_->Get(members).status, 401);
  // Nothing a denied call asked for happened.
  EXPECT_EQ(Get(item)["version"], 1);
  EXPECT_EQ(CountOfSegment(id), 1);
}

TEST_F(SegmentsE2eTest, LiveSegmentsFollowArrivingEventsAndSayWhy) {
  Made repeat = MakeDynamic("repeat_buyers_live", {{"performed", {{"event_type", kBuy}, {"count", {{"gte", 3}}}}}});
  Made never = MakeDynamic("never_bought_live", {{"not_performed", {{"event_type", kBuy}}}});
  EXPECT_EQ(repeat.created["incremental_active"], true) << repeat.created.dump();
  EXPECT_EQ(never.created["incremental_active"], true) << never.created.dump();
  const int64_t as_of = AsOfOf(repeat);
  EXPECT_GE(as_of, last_day_ms_ + kDayMs) << "a live segment is evaluated now";
  auto repeat_buyer = [](const Events& events) { return CountOf(events, kBuy) >= 3; };
  auto never_bought = [](const Events& events) { return CountOf(events, kBuy) == 0; };
  const UserSet repeat_before = Reference(as_of, repeat_buyer);
  const UserSet never_before = Reference(AsOfOf(never), never_bought);
  ASSERT_EQ(repeat.count["users_count"], repeat_before.size());
  ASSERT_EQ(never.count["users_count"], never_before.size());
  ASSERT_GT(never_before.size(), 100u);
  // A user with exactly two purchases, and one who never bought.
  std::string second;
  for (const auto& user : Reference(as_of, [](const Events& events) { return CountOf(events, kBuy) == 2; })) {
    if (second.empty()) second = user;
  }
  ASSERT_FALSE(second.empty());
  const std::string first_time = *never_before.begin();
  EXPECT_FALSE(Contains(repeat.id, second));
  EXPECT_FALSE(Contains(repeat.id, kNewBuyer));
  EXPECT_TRUE(Contains(never.id, first_time));
  EXPECT_FALSE(Contains(never.id, kNewViewer));

  // Events of a second ago, in one request: `second` buys a third time, kNewBuyer (unknown so far) three times,
  // `first_time` buys, kNewViewer (unknown so far) views a page. Models: generated events.
  auto model_of = [](const std::string& type, const std::string& source) {
    for (const auto& event : *events_) {
      if (event.type == type && !event.user.empty() && event.Text("currency") != "USD") {
        return json{{"specversion", "1.0"}, {"source", source}, {"type", type}, {"time", Time(event.time_ms)},
                    {"subject", event.user}, {"data", event.data}};
      }
    }
    return json();
  };
  const json purchase = model_of(kBuy, "/services/payments");
  json view = model_of(kView, "/services/store");
  ASSERT_FALSE(purchase.is_null() || view.is_null());
  const int64_t now = common::NowMillis() - 1000;
  std::vector<std::string> lines;
  lines.push_back(Purchase(purchase, second, now, 299).dump());
  for (int purchase_idx = 0; purchase_idx < 3; ++purchase_idx) {
    lines.push_back(Purchase(purchase, kNewBuyer, now - 100 + purchase_idx, 199).dump());
  }
  lines.push_back(Purchase(purchase, first_time, now - 50, 99).dump());
  view["id"] = "e2e5e900-0000-4000-8000-" + std::to_string(900000000000 + ++crafted_);
  view["subject"] = kNewViewer;
  view["time"] = Time(now - 20);
  lines.push_back(view.dump());
  for (const auto& line : lines) events_->push_back(Parse(json::parse(line)));
  Post(lines, 0, lines.size());

  // Within a few seconds, without a refresh: two more repeat buyers; one buyer fewer and one new user in
  // never_bought.
  UserSet repeat_after = repeat_before;
  repeat_after.insert({second, kNewBuyer});
  UserSet never_after = never_before;
  never_after.erase(first_time);
  never_after.insert(kNewViewer);
  const int64_t now_after = common::NowMillis();
  EXPECT_EQ(repeat_after, Reference(now_after, repeat_buyer));
  EXPECT_EQ(never_after, Reference(now_after, never_bought));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Members(repeat.id, 1000) == repeat_after && Members(never.id, 1000) == never_after) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Members(repeat.id, 1000), repeat_after);
  EXPECT_EQ(Members(never.id, 1000), never_after);
  EXPECT_EQ(CountOfSegment(repeat.id), static_cast<int64_t>(repeat_after.size()));
  EXPECT_EQ(CountOfSegment(never.id), static_cast<int64_t>(never_after.size()));
  EXPECT_TRUE(Contains(repeat.id, second));
  EXPECT_TRUE(Contains(repeat.id, kNewBuyer));
  EXPECT_FALSE(Contains(never.id, first_time));
  EXPECT_TRUE(Contains(never.id, kNewViewer));
  for (const auto& id : {repeat.id, never.id}) {
    json runs = Get("/api/v1/analytics/pipelines/runs?target=" + id);
    EXPECT_EQ(runs["items"].size(), 1u) << "no refresh ran: " << runs.dump();
  }

  // segment.updated: the first refresh, then the incremental changes.
  json outbox = Get("/api/v1/analytics/outbox?limit=1000&type=" + UrlEncode(kUpdatedType));
  auto updates_of = [&](const Made& made) {
    std::vector<json> updates;
    for (const auto& item : outbox["items"]) {
      EXPECT_EQ(item["event"]["type"], kUpdatedType) << item.dump();
      EXPECT_EQ(item["topic"], "com.platform.analytics.events.v1") << item.dump();
      EXPECT_TRUE(item.contains("relayed_at") && item["relayed_at"].is_null()) << "no Kafka, no relay: " << item.dump();
      if (item["key"] == made.id) updates.push_back(item["event"]);
    }
    return updates;
  };
  for (const auto& [made, before, after] :
       {std::tie(repeat, repeat_before, repeat_after), std::tie(never, never_before, never_after)}) {
    const std::vector<json> updates = updates_of(made);
    ASSERT_GE(updates.size(), 2u) << outbox.dump();
    const json& first = updates.front();
    EXPECT_EQ(first["specversion"], "1.0");
    EXPECT_EQ(first["source"], "/analytics-service");
    EXPECT_EQ(first["subject"], made.id);
    EXPECT_TRUE(first["id"].is_string());
    EXPECT_TRUE(IsRfc3339Millis(first["time"])) << first.dump();
    EXPECT_EQ(first["data"]["segment_id"], made.id);
    EXPECT_EQ(first["data"]["name"], made.created["name"]);
    EXPECT_EQ(first["data"]["users_count"], before.size());
    EXPECT_EQ(first["data"]["added"], before.size());
    EXPECT_EQ(first["data"]["removed"], 0);
    EXPECT_EQ(first["data"]["run_id"], made.created["refresh_run_id"]);
    EXPECT_EQ(first["data"]["trigger"], "create");
    EXPECT_EQ(first["data"]["as_of"], made.count["as_of"]) << first.dump();
    EXPECT_TRUE(IsRfc3339Millis(first["data"]["refreshed_at"])) << first.dump();
    int64_t added = 0, removed = 0;
    for (size_t update_idx = 1; update_idx < updates.size(); ++update_idx) {
      const json& data = updates[update_idx]["data"];
      EXPECT_EQ(data["trigger"], "incremental") << data.dump();
      EXPECT_TRUE(data["run_id"].is_null()) << data.dump();
      added += data["added"].get<int64_t>();
      removed += data["removed"].get<int64_t>();
    }
    EXPECT_EQ(added, static_cast<int64_t>(Minus(after, before).size())) << made.created["name"];
    EXPECT_EQ(removed, static_cast<int64_t>(Minus(before, after).size())) << made.created["name"];
    EXPECT_EQ(updates.back()["data"]["users_count"], after.size());
  }
  ExpectError(client_->Get("/api/v1/analytics/outbox", marketing_), 403, "ACCESS_DENIED_TO_RESOURCE",
              "outbox for marketing");
}

TEST_F(SegmentsE2eTest, ABackdatedRefreshOfALiveSegmentStaysUntilSomethingChanges) {
  Made live = MakeDynamic("viewers_backdated", {{"performed", {{"event_type", kView}, {"count", {{"gte", 5}}}}}});
  const int64_t backdated = Backdated();
  auto response = Send("POST", kSegments + live.id + "/refresh", {{"as_of", Time(backdated)}}, admin_);
  ASSERT_EQ(response.status, 202) << response.body;
  json run = WaitRun(response.Json()["run_id"].get<std::string>(), live.id);
  const UserSet then = Reference(backdated, [](const Events& events) { return CountOf(events, kView) >= 5; });
  EXPECT_EQ(run["result"]["users_count"], then.size());
  // No event arrives, no schedule is due and the calendar day does not change: the answer asked for stays.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  json count = UsersCount(live.id);
  EXPECT_EQ(count["as_of"], Time(backdated)) << count.dump();
  EXPECT_EQ(count["users_count"], then.size()) << count.dump();
  json runs = Get("/api/v1/analytics/pipelines/runs?target=" + live.id);
  EXPECT_EQ(runs["items"].size(), 2u) << "only the create and the manual refresh: " << runs.dump();
}

TEST_F(SegmentsE2eTest, ErasingAUserRemovesThemFromTheirSegments) {
  const int64_t as_of = AsOf();
  Made buyers = MakeDynamic("buyers_erasure", {{"performed", {{"event_type", kBuy}, {"count", {{"gte", 2}}}}}},
                            {{"as_of", Time(as_of)}});
  std::string list;
  Create({{"name", "list_erasure"}, {"type", "static"}, {"user_ids", {kLateBuyer, kNobody}}}, list);
  const UserSet expected = Reference(as_of, [](const Events& events) { return CountOf(events, kBuy) >= 2; });
  ASSERT_TRUE(expected.count(kLateBuyer));
  ASSERT_EQ(buyers.count["users_count"], expected.size());
  ASSERT_TRUE(Contains(buyers.id, kLateBuyer));

  auto erased = Send("DELETE", "/api/v1/analytics/users/" + kLateBuyer + "/events", json(), admin_);
  ASSERT_EQ(erased.status, 200) << erased.body;
  EXPECT_EQ(erased.Json()["erased_events"], 3) << erased.body;
  erased_->insert(kLateBuyer);
  EXPECT_EQ(CountOfSegment(buyers.id), static_cast<int64_t>(expected.size()) - 1);
  EXPECT_FALSE(Contains(buyers.id, kLateBuyer));
  EXPECT_EQ(Members(buyers.id, 1000), Minus(expected, {kLateBuyer}));
  EXPECT_EQ(CountOfSegment(list), 1);
  EXPECT_FALSE(Contains(list, kLateBuyer));
  EXPECT_TRUE(Contains(list, kNobody));
  // A refresh does not bring them back.
  auto refresh = Send("POST", kSegments + buyers.id + "/refresh", json(), admin_);
  ASSERT_EQ(refresh.status, 202) << refresh.body;
  WaitRun(refresh.Json()["run_id"].get<std::string>(), buyers.id);
  EXPECT_EQ(CountOfSegment(buyers.id), static_cast<int64_t>(expected.size()) - 1);
  EXPECT_FALSE(Contains(buyers.id, kLateBuyer));
}

TEST_F(SegmentsE2eTest, DefinitionsAndMembersSurviveRestarts) {
  const int64_t as_of = AsOf();
  Made spenders = MakeDynamic("spenders_restart",
                              {{"aggregate",
                                {{"event_type", kBuy}, {"property", "amount"}, {"function", "max"}, {"gte", 500}}}},
                              {{"as_of", Time(as_of)}});
  Made live = MakeDynamic("viewers_restart", {{"performed", {{"event_type", kView}, {"count", {{"gte", 5}}}}}});
  std::string list;
  Create({{"name", "list_restart"}, {"type", "static"}, {"user_ids", {kNobody}}}, list);
  const UserSet expected = Reference(as_of, [](const Events& events) {
    double max = -1;
    for (const RawEvent* event : events) {
      if (event->type == kBuy && event->Number("amount")) max = std::max(max, *event->Number("amount"));
    }
    return max >= 500;
  });
  ASSERT_EQ(spenders.count["users_count"], expected.size());
  ASSERT_GE(expected.size(), 3u);
  // Before the restart: a deleted segment, and an erased member.
  std::string doomed;
  Create({{"name", "doomed_restart"}, {"type", "static"}, {"user_ids", {kNobody}}}, doomed);
  ASSERT_EQ(Send("DELETE", kDefinitions + "/" + doomed, json(), admin_).status, 204);
  const std::string victim = *std::next(expected.begin());
  auto erased = Send("DELETE", "/api/v1/analytics/users/" + victim + "/events", json(), admin_);
  ASSERT_EQ(erased.status, 200) << erased.body;
  erased_->insert(victim);
  const UserSet remaining = Minus(expected, {victim});
  ASSERT_EQ(CountOfSegment(spenders.id), static_cast<int64_t>(remaining.size()));
  const json list_before = Get(kDefinitions);
  std::map<std::string, json> counts_before;
  for (const auto& id : {spenders.id, live.id, list}) counts_before[id] = UsersCount(id);
  const std::string member = *remaining.begin();
  const std::string outsider = *Minus(Universe(as_of), expected).begin();

  const json outbox_before = Get("/api/v1/analytics/outbox?limit=1000")["items"];
  ASSERT_FALSE(outbox_before.empty());

  // A graceful restart.
  ASSERT_EQ(service_->Stop(SIGTERM).exit_code, 0);
  Start();
  // The produced events are durable: the outbox reads as before, sequences and all.
  const json outbox_after = Get("/api/v1/analytics/outbox?limit=1000")["items"];
  ASSERT_GE(outbox_after.size(), outbox_before.size());
  for (size_t item_idx = 0; item_idx < outbox_before.size(); ++item_idx) {
    EXPECT_EQ(outbox_after[item_idx], outbox_before[item_idx]) << item_idx;
  }
  json list_after = Get(kDefinitions);
  ASSERT_EQ(list_after["items"].size(), list_before["items"].size());
  for (size_t item_idx = 0; item_idx < list_before["items"].size(); ++item_idx) {
    const json& was = list_before["items"][item_idx];
    const json& is = list_after["items"][item_idx];
    for (const char* name : {"id", "name", "type", "version", "rule", "as_of", "timezone", "created_at"}) {
      EXPECT_EQ(is[name], was[name]) << name << " of " << was["name"];
    }
  }
  for (const auto& [id, count] : counts_before) {
    json now = UsersCount(id);
    EXPECT_EQ(now["users_count"], count["users_count"]) << id;
    EXPECT_EQ(now["as_of"], count["as_of"]) << id;
    EXPECT_EQ(now["refreshed_at"], count["refreshed_at"]) << id;
  }
  EXPECT_TRUE(Contains(spenders.id, member));
  EXPECT_FALSE(Contains(spenders.id, outsider));
  EXPECT_FALSE(Contains(spenders.id, victim));
  EXPECT_TRUE(Contains(list, kNobody));
  EXPECT_EQ(Members(spenders.id, 1000), remaining);
  ExpectError(client_->Get(kDefinitions + "/" + doomed, admin_), 404, "SEGMENT_NOT_FOUND", "deleted before restart");
  EXPECT_EQ(Get(kRuns + spenders.created["refresh_run_id"].get<std::string>())["status"], "completed");
  // And it refreshes as before.
  auto refresh = Send("POST", kSegments + spenders.id + "/refresh", json(), admin_);
  ASSERT_EQ(refresh.status, 202) << refresh.body;
  WaitRun(refresh.Json()["run_id"].get<std::string>(), spenders.id);
  EXPECT_EQ(Members(spenders.id, 1000), remaining);

  // A kill -9 right after a create: the queued (or running) refresh still completes after the restart.
  std::string killed_id;
  json killed = Create({{"name", "registered_killed"},
                        {"type", "dynamic"},
                        {"as_of", Time(as_of)},
                        {"rule", {{"performed", {{"event_type", kRegistered}}}}}},
                       killed_id);
  ASSERT_TRUE(killed["refresh_run_id"].is_string()) << killed.dump();
  service_->Stop(SIGKILL);
  Start();
  WaitRun(killed["refresh_run_id"].get<std::string>(), killed_id);
  const UserSet registered = Reference(as_of, [](const Events& events) { return CountOf(events, kRegistered) >= 1; });
  EXPECT_EQ(CountOfSegment(killed_id), static_cast<int64_t>(registered.size()));
  EXPECT_EQ(Members(killed_id, 1000), registered);
}

}  // namespace
}  // namespace analytics::testing
