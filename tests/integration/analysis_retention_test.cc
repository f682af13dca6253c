// POST .../analysis/retention (analysis/retention.h) over a real embedded store in a temp dir: the documents are
// compared with a reference computed here from the raw events appended (plain loops over StoredEvents with civil
// dates from the zone database), plus request validation, a developer viewer with k-anonymity, erased users,
// a `segment` (the reference reads only its members' events) and DATA_NOT_YET_AVAILABLE.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/retention.h"
#include "common/time_util.h"
#include "query/time_grid.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using events::StoredEvent;
using json = nlohmann::json;
using query::TimeZone;

constexpr int64_t kDay = 86400000;
const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kPurchase = "com.platform.payments.purchase_completed.v1";
const std::string kRegistered = "com.platform.accounts.account_registered.v1";

int64_t Ms(const std::string& text) { return common::ParseRfc3339Millis(text).value(); }

absl::CivilDay LocalDate(int64_t unix_ms, const TimeZone& zone) {
  return absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone.zone());
}
int64_t StartOf(absl::CivilDay day, const TimeZone& zone) { return zone.StartOfDay(day.year(), day.month(), day.day()); }

absl::CivilDay BucketStart(absl::CivilDay day, const std::string& granularity) {
  if (granularity == "week") {
    while (absl::GetWeekday(day) != absl::Weekday::monday) day -= 1;
    return day;
  }
  if (granularity == "month") return absl::CivilDay(day.year(), day.month(), 1);
  return day;
}
absl::CivilDay BucketLast(absl::CivilDay start, const std::string& granularity) {
  if (granularity == "week") return start + 6;
  if (granularity == "month") return absl::CivilDay(absl::CivilMonth(start) + 1) - 1;
  return start;
}

using Pred = std::function<bool(const StoredEvent&)>;

// What the reference needs to know about a request (mirrors its JSON).
struct RefRequest {
  TimeZone zone = TimeZone::Utc();
  int64_t start = 0, end = 0, now = INT64_MAX;
  std::string granularity = "week";
  std::vector<int> periods;  // empty: triangle
  bool on_day = true;
  bool first_time = true;
  Pred common = [](const StoredEvent&) { return true; };
  Pred start_event;
  Pred return_event = [](const StoredEvent&) { return true; };
  std::string property;  // cohorts by this data property
  int k = 0;             // k-anonymity: 0 = off
};

std::optional<std::string> DataString(const StoredEvent& event, const std::string& name) {
  if (event.data.empty()) return std::nullopt;
  const json data = json::parse(event.data);
  auto it = data.find(name);
  if (it == data.end() || it->is_null()) return std::nullopt;
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// The expected "periods", "cohorts", "total" and suppressed count.
struct Expected {
  json periods, cohorts, total;
  uint64_t suppressed = 0;
};

Expected Reference(const std::vector<StoredEvent>& events, const RefRequest& request) {
  const TimeZone& zone = request.zone;
  const int64_t horizon = std::min(request.end, request.now);
  std::map<std::pair<std::string, absl::CivilDay>, absl::CivilDay> members;  // (user, bucket) -> d0
  if (!request.property.empty()) {
    std::map<std::string, const StoredEvent*> first;
    for (const auto& event : events) {
      if (event.time_ms >= request.end || !request.common(event) || !request.start_event(event)) continue;
      if (!DataString(event, request.property)) continue;
      // At equal timestamps the timeline's order decides: type name, then the property's text.
      auto [it, added] = first.emplace(event.user, &event);
      const StoredEvent& held = *it->second;
      if (!added && std::make_tuple(event.time_ms, event.type, *DataString(event, request.property)) <
                        std::make_tuple(held.time_ms, held.type, *DataString(held, request.property))) {
        it->second = &event;
      }
    }
    for (const auto& [user, event] : first) {
      const std::string text = *DataString(*event, request.property);
      absl::CivilDay date;
      int64_t cohort_ms = 0;
      if (text.size() == 10 && absl::ParseCivilTime(text, &date)) cohort_ms = StartOf(date, zone);
      else if (auto parsed = common::ParseRfc3339Millis(text); parsed.ok()) cohort_ms = *parsed;
      else continue;
      if (cohort_ms < request.start || cohort_ms >= request.end) continue;
      const absl::CivilDay d0 = LocalDate(cohort_ms, zone);
      members[{user, BucketStart(d0, request.granularity)}] = d0;
    }
  } else {
    std::map<std::string, int64_t> first;
    for (const auto& event : events) {
      if (event.time_ms >= request.end || !request.common(event) || !request.start_event(event)) continue;
      if (request.first_time) {
        auto [it, added] = first.emplace(event.user, event.time_ms);
        if (!added) it->second = std::min(it->second, event.time_ms);
      } else if (event.time_ms >= request.start) {
        const absl::CivilDay d0 = LocalDate(event.time_ms, zone);
        auto [it, added] = members.emplace(std::make_pair(event.user, BucketStart(d0, request.granularity)), d0);
        if (!added) it->second = std::min(it->second, d0);
      }
    }
    for (const auto& [user, time] : first) {
      if (time < request.start) continue;
      const absl::CivilDay d0 = LocalDate(time, zone);
      members[{user, BucketStart(d0, request.granularity)}] = d0;
    }
  }
  std::map<std::string, std::set<absl::CivilDay>> return_dates;
  for (const auto& event : events) {
    if (event.time_ms < request.start || event.time_ms >= horizon) continue;
    if (!request.common(event) || !request.return_event(event)) continue;
    return_dates[event.user].insert(LocalDate(event.time_ms, zone));
  }
  const absl::CivilDay first_date = LocalDate(request.start, zone);
  const absl::CivilDay last_date = LocalDate(request.end - 1, zone);
  std::vector<absl::CivilDay> buckets;
  for (absl::CivilDay day = first_date; day <= last_date; day += 1) {
    const absl::CivilDay bucket = BucketStart(day, request.granularity);
    if (buckets.empty() || buckets.back() != bucket) buckets.push_back(bucket);
  }
  auto measurable = [&](absl::CivilDay bucket, int period) {
    for (absl::CivilDay date = std::max(bucket, first_date);
         date <= std::min(BucketLast(bucket, request.granularity), last_date); date += 1) {
      if (StartOf(date + period + 1, zone) > horizon) return false;
    }
    return true;
  };
  std::vector<int> periods = request.periods;
  if (periods.empty()) {  // triangle
    int top = 0;
    while (top < 3650 && measurable(buckets.front(), top + 1)) ++top;
    for (int period = 0; period <= top; ++period) periods.push_back(period);
  }
  Expected out;
  out.periods = periods;
  std::vector<uint64_t> cohorts(periods.size()), cohort_users(periods.size()), retained_users(periods.size());
  out.cohorts = json::array();
  for (const absl::CivilDay bucket : buckets) {
    uint64_t users = 0;
    std::vector<uint64_t> retained(periods.size(), 0);
    for (const auto& [member, d0] : members) {
      if (member.second != bucket) continue;
      ++users;
      const auto& dates = return_dates[member.first];
      for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
        const absl::CivilDay target = d0 + periods[period_idx];
        const bool hit = request.on_day ? dates.count(target) > 0 : dates.lower_bound(target) != dates.end();
        if (hit) ++retained[period_idx];
      }
    }
    if (request.k > 0 && users > 0 && users < static_cast<uint64_t>(request.k)) {
      ++out.suppressed;
      continue;
    }
    json cells = json::array();
    for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
      if (!measurable(bucket, periods[period_idx])) {
        cells.push_back({{"period", periods[period_idx]}, {"users", nullptr}, {"share", nullptr}, {"measurable", false}});
        continue;
      }
      cells.push_back({{"period", periods[period_idx]},
                       {"users", retained[period_idx]},
                       {"share", users == 0 ? json(nullptr) : json(double(retained[period_idx]) / double(users))},
                       {"measurable", true}});
      if (users > 0) {
        ++cohorts[period_idx];
        cohort_users[period_idx] += users;
        retained_users[period_idx] += retained[period_idx];
      }
    }
    out.cohorts.push_back({{"cohort_start", absl::FormatCivilTime(bucket)},
                           {"cohort_end", absl::FormatCivilTime(BucketLast(bucket, request.granularity))},
                           {"users", users},
                           {"retained", std::move(cells)}});
  }
  out.total = json::array();
  for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
    out.total.push_back({{"period", periods[period_idx]},
                         {"cohorts", cohorts[period_idx]},
                         {"cohort_users", cohort_users[period_idx]},
                         {"users", retained_users[period_idx]},
                         {"share", cohort_users[period_idx] == 0
                                       ? json(nullptr)
                                       : json(double(retained_users[period_idx]) / double(cohort_users[period_idx]))}});
  }
  return out;
}


class AnalysisRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::EmbeddedEventStore::Open(TestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
  }

  StoredEvent Event(const std::string& user, int64_t time_ms, const std::string& type, const std::string& game,
                    const std::string& platform, const std::string& registered_at = "") {
    StoredEvent event;
    event.id = "e" + std::to_string(next_id_++);
    event.source = "/services/test";
    event.type = type;
    event.time_ms = time_ms;
    event.received_ms = time_ms + 1000;
    event.user = user;
    event.game_id = game;
    event.platform = platform;
    event.country = "DE";
    json data = {{"game_id", game}};
    if (!registered_at.empty()) data["registered_at"] = registered_at;
    event.data = data.dump();
    event.user_in_subject = true;
    return event;
  }

  // Random events over [from, to): uniform times, local midnights ±1 ms, repeated timestamps; appended in two
  // batches with a flush between (segments of several day partitions and the memtable).
  void AppendRandom(uint64_t seed, const TimeZone& zone, int64_t from, int64_t to, int users, size_t count) {
    std::mt19937_64 rng(seed);
    std::vector<StoredEvent> batch;
    std::vector<int64_t> used;
    const std::string types[] = {kView, kView, kPurchase, kRegistered};
    const std::string platforms[] = {"windows", "linux", "steamdeck"};
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      int64_t time = 0;
      const uint64_t kind = rng() % 10;
      if (kind < 6 || used.empty()) {
        time = from + static_cast<int64_t>(rng() % static_cast<uint64_t>(to - from));
      } else if (kind < 9) {
        const absl::CivilDay day = LocalDate(from + static_cast<int64_t>(rng() % static_cast<uint64_t>(to - from)), zone);
        time = StartOf(day, zone) + static_cast<int64_t>(rng() % 3) - 1;
      } else {
        time = used[rng() % used.size()];
      }
      used.push_back(time);
      std::string registered;
      if (rng() % 3 == 0) {
        registered = rng() % 2 ? absl::FormatCivilTime(LocalDate(time - static_cast<int64_t>(rng() % 4) * kDay, zone))
                               : common::FormatRfc3339Millis(time - static_cast<int64_t>(rng() % (3 * kDay)));
        if (rng() % 10 == 0) registered = "soon";
      }
      batch.push_back(Event("user" + std::to_string(rng() % static_cast<uint64_t>(users)), time, types[rng() % 4],
                            "g" + std::to_string(rng() % 3), platforms[rng() % 3], registered));
      if (event_idx == count / 2) {
        Append(batch);
        batch.clear();
        ASSERT_OK(store_->Flush());
      }
    }
    Append(batch);
  }

  void Append(const std::vector<StoredEvent>& batch) {
    auto result = store_->Append(batch);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->stored, batch.size());
    events_.insert(events_.end(), batch.begin(), batch.end());
  }

  common::Result<json> Run(const json& body, const analysis::Viewer& viewer = {}, int64_t now = INT64_MAX,
                           int k = 5) {
    analysis::AnalysisOptions options;
    options.k_anonymity = k;
    options.query_threads = 2;
    options.segment_scope = segments_;
    return analysis::RunRetentionForTest(*store_, body, viewer, options, now);
  }

  void ExpectDocument(const json& body, const RefRequest& reference, const analysis::Viewer& viewer = {}) {
    auto document = Run(body, viewer, reference.now);
    ASSERT_TRUE(document.ok()) << document.status().ToString() << " " << body.dump();
    const Expected expected = Reference(events_, reference);
    EXPECT_EQ((*document)["periods"], expected.periods) << body.dump();
    ASSERT_EQ((*document)["cohorts"].size(), expected.cohorts.size()) << body.dump();
    for (size_t cohort_idx = 0; cohort_idx < expected.cohorts.size(); ++cohort_idx) {
      EXPECT_EQ((*document)["cohorts"][cohort_idx], expected.cohorts[cohort_idx]) << body.dump();
    }
    EXPECT_EQ((*document)["total"]["retained"], expected.total) << body.dump();
    EXPECT_EQ((*document)["period_start"], body["period_start"]);
    if (reference.k > 0) {
      EXPECT_EQ((*document)["k_anonymity"]["suppressed_groups"], expected.suppressed) << body.dump();
    } else {
      EXPECT_FALSE(document->contains("k_anonymity"));
    }
    ++documents_checked_;
  }

  TempDir dir_;
  std::unique_ptr<store::EmbeddedEventStore> store_;
  analysis::SegmentScopeResolver segments_;  // unset: every segment is unknown
  std::vector<StoredEvent> events_;
  uint64_t next_id_ = 0;
  int documents_checked_ = 0;
};

TEST_F(AnalysisRetentionTest, RandomDataMatchesTheReferenceForEveryMode) {
  const TimeZone berlin = TimeZone::Load("Europe/Berlin").value();
  AppendRandom(42, berlin, Ms("2024-03-10T00:00:00Z"), Ms("2024-04-25T00:00:00Z"), 120, 4000);
  // A user erased: never read again.
  ASSERT_OK(store_->EraseUser("user7"));
  std::erase_if(events_, [](const StoredEvent& event) { return event.user == "user7"; });

  for (const std::string granularity : {"day", "week", "month"}) {
    for (const bool on_day : {true, false}) {
      for (const bool first_time : {true, false}) {
        for (int variant = 0; variant < 3; ++variant) {
          json body = {{"start_event", {{"event_type", kPurchase}}},
                       {"cohort_granularity", granularity},
                       {"mode", on_day ? "on_day" : "on_or_after"},
                       {"cohort_type", first_time ? "first_time" : "recurring"},
                       {"period_start", "2024-03-18"},
                       {"period_end", "2024-04-14"},
                       {"timezone", "Europe/Berlin"}};
          RefRequest reference;
          reference.zone = berlin;
          reference.start = berlin.StartOfDay(2024, 3, 18);
          reference.end = berlin.StartOfDay(2024, 4, 15);
          reference.granularity = granularity;
          reference.on_day = on_day;
          reference.first_time = first_time;
          reference.start_event = [](const StoredEvent& event) { return event.type == kPurchase; };
          reference.periods = {0, 1, 6, 7, 13};
          body["periods"] = {13, 0, 7, 1, 6};  // any order: answered ascending
          if (variant == 1) {
            // A return event with filters, request filters, the horizon in the middle of a day ("now").
            body["return_event"] = {{"event_type", kView}, {"filters", {{"property", "game_id"}, {"op", "in"}, {"value", {"g0", "g1"}}}}};
            body["filters"] = {{"property", "platform"}, {"op", "ne"}, {"value", "linux"}};
            reference.return_event = [](const StoredEvent& event) {
              return event.type == kView && (event.game_id == "g0" || event.game_id == "g1");
            };
            reference.common = [](const StoredEvent& event) { return event.platform != "linux"; };
            reference.now = Ms("2024-04-09T13:00:00+02:00");
          } else if (variant == 2) {
            // A list of return events, a period given as RFC 3339 times, the triangle.
            body["return_event"] = json::array({{{"event_type", kRegistered}},
                                                {{"event_type", kPurchase}, {"filters", {{"property", "game_id"}, {"op", "eq"}, {"value", "g2"}}}}});
            body["period_start"] = "2024-03-20T06:00:00+01:00";
            body["period_end"] = "2024-04-12T20:00:00+02:00";
            body["periods"] = "triangle";
            reference.start = Ms("2024-03-20T06:00:00+01:00");
            reference.end = Ms("2024-04-12T20:00:00+02:00") + 1;
            reference.periods.clear();
            reference.return_event = [](const StoredEvent& event) {
              return event.type == kRegistered || (event.type == kPurchase && event.game_id == "g2");
            };
          }
          ExpectDocument(body, reference);
        }
      }
    }
  }
  EXPECT_EQ(documents_checked_, 36);
}

TEST_F(AnalysisRetentionTest, PropertyCohortsMatchTheReference) {
  const TimeZone york = TimeZone::Load("America/New_York").value();
  AppendRandom(7, york, Ms("2024-10-20T00:00:00Z"), Ms("2024-11-20T00:00:00Z"), 80, 2500);
  json body = {{"start_event", {{"property", "registered_at"}}},
               {"cohort_granularity", "day"},
               {"periods", {0, 1, 2, 7}},
               {"period_start", "2024-10-28"},
               {"period_end", "2024-11-10"},
               {"timezone", "America/New_York"}};
  RefRequest reference;
  reference.zone = york;
  reference.start = york.StartOfDay(2024, 10, 28);
  reference.end = york.StartOfDay(2024, 11, 11);
  reference.granularity = "day";
  reference.periods = {0, 1, 2, 7};
  reference.start_event = [](const StoredEvent&) { return true; };
  reference.property = "registered_at";
  ExpectDocument(body, reference);
  // With an event type: only that type's events carry the cohort time.
  body["start_event"]["event_type"] = kRegistered;
  body["mode"] = "on_or_after";
  reference.start_event = [](const StoredEvent& event) { return event.type == kRegistered; };
  reference.on_day = false;
  ExpectDocument(body, reference);
  auto document = Run(body);
  ASSERT_OK(document);
  EXPECT_TRUE(document->contains("unparsed_users"));
}

TEST_F(AnalysisRetentionTest, DeveloperSeesOwnGamesAndNoSmallCohorts) {
  const TimeZone utc = TimeZone::Utc();
  AppendRandom(9, utc, Ms("2024-01-01T00:00:00Z"), Ms("2024-02-15T00:00:00Z"), 60, 2500);
  analysis::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {"g1"};
  json body = {{"start_event", {{"event_type", kView}}},
               {"cohort_granularity", "day"},
               {"periods", {1, 3}},
               {"period_start", "2024-01-08"},
               {"period_end", "2024-02-04"}};
  RefRequest reference;
  reference.start = Ms("2024-01-08T00:00:00Z");
  reference.end = Ms("2024-02-05T00:00:00Z");
  reference.granularity = "day";
  reference.periods = {1, 3};
  reference.common = [](const StoredEvent& event) { return event.game_id == "g1"; };
  reference.start_event = [](const StoredEvent& event) { return event.type == kView; };
  reference.k = 5;
  ExpectDocument(body, reference, developer);
  const Expected expected = Reference(events_, reference);
  EXPECT_GT(expected.suppressed, 0u);  // the case is exercised
  // The same request by an admin sees every game and every cohort.
  reference.common = [](const StoredEvent&) { return true; };
  reference.k = 0;
  ExpectDocument(body, reference);
}

TEST_F(AnalysisRetentionTest, SegmentRestrictsCohortsAndReturnsToItsMembers) {
  const TimeZone berlin = TimeZone::Load("Europe/Berlin").value();
  AppendRandom(43, berlin, Ms("2024-03-10T00:00:00Z"), Ms("2024-04-25T00:00:00Z"), 120, 4000);
  const std::set<std::string> members = SomeUsers(events_, 43);
  segments_ = TestSegments(*store_, members);
  for (const bool first_time : {true, false}) {
    for (const bool property : {false, true}) {
      if (property && !first_time) continue;
      json body = {{"start_event", {{"event_type", kPurchase}}},
                   {"return_event", {{"event_type", kView}}},
                   {"cohort_granularity", "day"},
                   {"cohort_type", first_time ? "first_time" : "recurring"},
                   {"periods", {0, 1, 3, 7}},
                   {"period_start", "2024-03-18"},
                   {"period_end", "2024-04-14"},
                   {"timezone", "Europe/Berlin"},
                   {"segment", "members"}};
      RefRequest reference;
      reference.zone = berlin;
      reference.start = berlin.StartOfDay(2024, 3, 18);
      reference.end = berlin.StartOfDay(2024, 4, 15);
      reference.granularity = "day";
      reference.first_time = first_time;
      reference.periods = {0, 1, 3, 7};
      reference.common = [&](const StoredEvent& event) { return members.count(event.user) > 0; };
      reference.start_event = [](const StoredEvent& event) { return event.type == kPurchase; };
      reference.return_event = [](const StoredEvent& event) { return event.type == kView; };
      if (property) {
        body["start_event"] = {{"property", "registered_at"}};
        reference.start_event = [](const StoredEvent&) { return true; };
        reference.property = "registered_at";
      }
      ExpectDocument(body, reference);
      auto document = Run(body);
      ASSERT_OK(document);
      EXPECT_EQ((*document)["segment"], "members");
      // Not vacuous: the members are fewer than everyone, and some of them return.
      const Expected restricted = Reference(events_, reference);
      reference.common = [](const StoredEvent&) { return true; };
      const Expected everyone = Reference(events_, reference);
      uint64_t returned = 0;
      for (const json& period : restricted.total) returned += period["users"].get<uint64_t>();
      EXPECT_GT(returned, 0u) << body.dump();
      EXPECT_GT(restricted.total[0]["cohort_users"].get<uint64_t>(), 0u) << body.dump();
      EXPECT_LT(restricted.total[0]["cohort_users"].get<uint64_t>(), everyone.total[0]["cohort_users"].get<uint64_t>())
          << body.dump();
    }
  }
  EXPECT_EQ(documents_checked_, 3);
  json body = {{"start_event", {{"event_type", kPurchase}}}, {"period_start", "2024-03-18"},
               {"period_end", "2024-04-14"}, {"segment", "whales"}};
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kNotFound);
  body["segment"] = "pending";
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(AnalysisRetentionTest, YoungCohortsAreNullNotZero) {
  Append({Event("a", Ms("2024-05-06T10:00:00Z"), kPurchase, "g0", "windows"),
          Event("a", Ms("2024-05-07T10:00:00Z"), kView, "g0", "windows"),
          Event("b", Ms("2024-05-13T10:00:00Z"), kPurchase, "g0", "windows")});
  json body = {{"start_event", {{"event_type", kPurchase}}},
               {"periods", {1, 7}},
               {"period_start", "2024-05-06"},
               {"period_end", "2024-05-19"}};
  auto document = Run(body, {}, Ms("2024-05-14T12:00:00Z"));
  ASSERT_OK(document);
  const json& cohorts = (*document)["cohorts"];
  ASSERT_EQ(cohorts.size(), 2u);
  EXPECT_EQ(cohorts[0]["cohort_start"], "2024-05-06");
  EXPECT_EQ(cohorts[0]["users"], 1);
  EXPECT_EQ(cohorts[0]["retained"][0], json({{"period", 1}, {"users", 1}, {"share", 1.0}, {"measurable", true}}));
  EXPECT_EQ(cohorts[0]["retained"][1], json({{"period", 7}, {"users", nullptr}, {"share", nullptr}, {"measurable", false}}));
  EXPECT_EQ(cohorts[1]["retained"][0]["measurable"], false);
  EXPECT_EQ(cohorts[1]["retained"][0]["users"], nullptr);
  EXPECT_EQ((*document)["horizon"], "2024-05-14T12:00:00.000Z");
  EXPECT_EQ((*document)["total"]["retained"][0],
            json({{"period", 1}, {"cohorts", 1}, {"cohort_users", 1}, {"users", 1}, {"share", 1.0}}));
}

TEST_F(AnalysisRetentionTest, InvalidRequestsNameTheField) {
  Append({Event("a", Ms("2024-05-06T10:00:00Z"), kPurchase, "g0", "windows")});
  const json valid = {{"start_event", {{"event_type", kPurchase}}}, {"period_start", "2024-05-01"},
                      {"period_end", "2024-05-31"}};
  ASSERT_OK(Run(valid));
  struct Case {
    std::function<void(json&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](json& body) { body["colour"] = 1; }, "colour"},
      {[](json& body) { body.erase("start_event"); }, "start_event"},
      {[](json& body) { body["start_event"] = "x"; }, "start_event"},
      {[](json& body) { body["start_event"] = json::object(); }, "start_event.event_type"},
      {[](json& body) { body["start_event"]["typo"] = 1; }, "start_event.typo"},
      {[](json& body) { body["start_event"]["event_type"] = ""; }, "start_event.event_type"},
      {[](json& body) { body["start_event"]["filters"] = {{"property", "x"}, {"op", "bad"}, {"value", 1}}; },
       "start_event.filters.op"},
      {[](json& body) { body["start_event"] = {{"property", 5}}; }, "start_event.property"},
      {[](json& body) {
         body["start_event"] = {{"property", "registered_at"}};
         body["cohort_type"] = "recurring";
       },
       "cohort_type"},
      {[](json& body) { body["return_event"] = 3; }, "return_event"},
      {[](json& body) { body["return_event"] = json::array(); }, "return_event"},
      {[](json& body) { body["return_event"] = {{"event_type", kView}, {"x", 1}}; }, "return_event.x"},
      {[](json& body) { body["return_event"] = json::array({{{"event_type", kView}}, {{"event_type", 5}}}); },
       "return_event[1].event_type"},
      {[](json& body) { body["cohort_granularity"] = "hour"; }, "cohort_granularity"},
      {[](json& body) { body["mode"] = "sometimes"; }, "mode"},
      {[](json& body) { body["cohort_type"] = "all"; }, "cohort_type"},
      {[](json& body) { body["periods"] = "square"; }, "periods"},
      {[](json& body) { body["periods"] = json::array(); }, "periods"},
      {[](json& body) { body["periods"] = {1, -1}; }, "periods[1]"},
      {[](json& body) { body["periods"] = {1, 3651}; }, "periods[1]"},
      {[](json& body) { body["periods"] = {1, 2.5}; }, "periods[1]"},
      {[](json& body) { body["periods"] = {7, 1, 7}; }, "periods[2]"},
      {[](json& body) {
         body["periods"] = json::array();
         for (int period = 0; period < 101; ++period) body["periods"].push_back(period);
       },
       "periods"},
      {[](json& body) { body["period_end"] = "2024-04-01"; }, "period_end"},
      {[](json& body) { body.erase("period_start"); }, "period_start"},
      {[](json& body) { body["timezone"] = "Mars/Olympus"; }, "timezone"},
      {[](json& body) { body["period_end"] = "2040-01-01"; }, "period_end"},  // more than 4000 days
      {[](json& body) {
         body["cohort_granularity"] = "day";
         body["period_end"] = "2027-01-01";
         body["periods"] = "triangle";
       },
       "periods"},  // more than 200,000 cells
  };
  for (const Case& test_case : cases) {
    json body = valid;
    test_case.edit(body);
    auto result = Run(body);
    ASSERT_FALSE(result.ok()) << body.dump();
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(result.status().field(), test_case.field) << body.dump() << " " << result.status().ToString();
  }
  json segment = valid;
  segment["segment"] = "whales";
  EXPECT_EQ(Run(segment).status().code(), common::StatusCode::kNotFound);
}

TEST_F(AnalysisRetentionTest, PeriodAfterTheNewestEventIsNotYetAvailable) {
  json body = {{"start_event", {{"event_type", kPurchase}}}, {"period_start", "2024-05-01"},
               {"period_end", "2024-05-31"}};
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);  // nothing stored
  Append({Event("a", Ms("2024-04-06T10:00:00Z"), kPurchase, "g0", "windows")});
  EXPECT_EQ(Run(body).status().code(), common::StatusCode::kFailedPrecondition);
  Append({Event("a", Ms("2024-05-06T10:00:00Z"), kPurchase, "g0", "windows")});
  auto document = Run(body);
  ASSERT_OK(document);
  // User a's first purchase was in April: not new in May.
  for (const auto& cohort : (*document)["cohorts"]) EXPECT_EQ(cohort["users"], 0);
  body["cohort_type"] = "recurring";
  document = Run(body);
  ASSERT_OK(document);
  EXPECT_EQ((*document)["cohorts"][0]["cohort_start"], "2024-04-29");
  EXPECT_EQ((*document)["cohorts"][1]["users"], 1);  // week of May 6
}

}  // namespace
}  // namespace analytics::testing
