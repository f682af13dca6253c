// Report sections (reports/sections.h) over real embedded stores. Hand-made events: every section type's table
// against expectations computed from the raw events with plain loops (metrics joined on day and group, a funnel
// with a breakdown, retention cohorts, an A/B readout with its p-value), the viewer's restrictions, the errors'
// paths and the segment callbacks. Generated events: each built-in definition binds with sample parameters and
// every section runs; a section's cells equal the API function's own answer to the same question.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/experiments.h"
#include "analysis/funnels.h"
#include "analysis/retention.h"
#include "common/time_util.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "metrics/metric_catalog.h"
#include "metrics/metric_values.h"
#include "reports/definition.h"
#include "reports/sections.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using common::StatusCode;
using events::StoredEvent;
using json = nlohmann::json;
using reports::Cell;
using reports::ColumnType;
using reports::RunSection;
using reports::SectionContext;
using reports::SectionTable;

constexpr const char* kRegistered = "com.platform.account.user.registered.v1";
constexpr const char* kLogin = "com.platform.account.user.logged_in.v1";
constexpr const char* kCartAdded = "com.platform.cart.item.added.v1";
constexpr const char* kCheckout = "com.platform.cart.checkout.started.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr const char* kRefund = "com.platform.payments.refund.completed.v1";
constexpr const char* kExposure = "com.platform.experiments.exposure.recorded.v1";

int64_t At(const std::string& rfc3339) {
  auto ms = common::ParseRfc3339Millis(rfc3339);
  EXPECT_TRUE(ms.ok()) << rfc3339;
  return ms.ok() ? *ms : 0;
}

// A cell as JSON, to compare rows with expected JSON arrays.
json CellJson(const Cell& cell) {
  if (std::holds_alternative<std::string>(cell)) return std::get<std::string>(cell);
  if (std::holds_alternative<int64_t>(cell)) return std::get<int64_t>(cell);
  if (std::holds_alternative<double>(cell)) return std::get<double>(cell);
  if (std::holds_alternative<bool>(cell)) return std::get<bool>(cell);
  return nullptr;
}

json RowJson(const reports::Row& row) {
  json out = json::array();
  for (const Cell& cell : row) out.push_back(CellJson(cell));
  return out;
}

std::vector<std::string> ColumnNames(const SectionTable& table) {
  std::vector<std::string> names;
  for (const auto& column : table.header.columns) names.push_back(column.name);
  return names;
}

// Every table's shape: names [a-z0-9_]+ and unique, each row one cell per column, cells fitting their column.
void ExpectWellFormed(const SectionTable& table) {
  std::set<std::string> names;
  for (const auto& column : table.header.columns) {
    EXPECT_FALSE(column.name.empty());
    EXPECT_TRUE(std::all_of(column.name.begin(), column.name.end(),
                            [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }))
        << column.name;
    EXPECT_TRUE(names.insert(column.name).second) << column.name;
  }
  for (const auto& row : table.rows) {
    ASSERT_EQ(row.size(), table.header.columns.size());
    for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
      const Cell& cell = row[column_idx];
      if (std::holds_alternative<std::monostate>(cell)) continue;
      switch (table.header.columns[column_idx].type) {
        case ColumnType::kString:
        case ColumnType::kDate:
        case ColumnType::kDateTime:
          EXPECT_TRUE(std::holds_alternative<std::string>(cell)) << table.header.columns[column_idx].name;
          break;
        case ColumnType::kInteger:
          EXPECT_TRUE(std::holds_alternative<int64_t>(cell)) << table.header.columns[column_idx].name;
          break;
        case ColumnType::kNumber:
          EXPECT_TRUE(std::holds_alternative<double>(cell)) << table.header.columns[column_idx].name;
          break;
        case ColumnType::kBoolean:
          EXPECT_TRUE(std::holds_alternative<bool>(cell)) << table.header.columns[column_idx].name;
          break;
      }
    }
  }
}

// The built-in KPIs in an in-memory catalog.
struct Catalog {
  Catalog() {
    auto opened = metadata::OpenSqliteMetadataStore({.path = ":memory:"});
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (!opened.ok()) return;
    metadata = std::move(opened).value();
    catalog = std::make_unique<metrics::MetricCatalog>(*metadata);
    auto seeded = catalog->SeedBuiltins(common::NowMillis());
    EXPECT_TRUE(seeded.ok()) << seeded.status().ToString();
  }
  std::unique_ptr<metadata::MetadataStore> metadata;
  std::unique_ptr<metrics::MetricCatalog> catalog;
};

// ---- Hand-made events -------------------------------------------------------------------------------------------

class ReportSectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::EmbeddedEventStore::Open(UnsyncedTestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
    ASSERT_NE(catalog_->catalog, nullptr);
    metric_values_ = std::make_unique<metrics::MetricValues>(*catalog_->catalog, *store_);
    AddEvents();
    // Most events in segments, the last ones in the memtable: sections read both.
    std::vector<StoredEvent> flushed(events_.begin(), events_.end() - 5), memory(events_.end() - 5, events_.end());
    ASSERT_OK(store_->Append(flushed));
    ASSERT_OK(store_->Flush());
    ASSERT_OK(store_->Append(memory));
  }

  void Add(const std::string& user, const std::string& time, const std::string& type, const std::string& game = "",
           const std::string& country = "", std::optional<double> amount = std::nullopt,
           const std::string& currency = "", json data = json::object()) {
    StoredEvent event;
    event.id = "ev-" + std::to_string(events_.size());
    event.source = "/services/test";
    event.type = type;
    event.time_ms = At(time);
    event.received_ms = event.time_ms + 1000;
    event.user = user;
    event.user_in_subject = true;
    event.game_id = game;
    event.country = country;
    event.amount = amount;
    event.currency = currency;
    if (!game.empty()) data["game_id"] = game;
    if (!country.empty()) data["country"] = country;
    if (amount) data["amount"] = *amount;
    if (!currency.empty()) data["currency"] = currency;
    event.data = data.dump();
    events_.push_back(std::move(event));
  }

  void AddEvents() {
    // Metrics, 2024-03-04 .. 03-06: logins (no game), purchases in two games and countries, RUB and KZT, a free
    // claim, a refund.
    Add("u1", "2024-03-04T10:00:00Z", kLogin);
    Add("u1", "2024-03-04T10:05:00Z", kPurchase, "g1", "RU", 100, "RUB");
    Add("u2", "2024-03-04T11:00:00Z", kLogin);
    Add("u2", "2024-03-04T11:05:00Z", kPurchase, "g1", "RU", 50, "RUB");
    Add("u2", "2024-03-04T11:06:00Z", kPurchase, "g2", "RU", 30, "RUB");
    Add("u3", "2024-03-04T12:00:00Z", kPurchase, "g2", "KZ", 1000, "KZT");
    Add("u1", "2024-03-05T09:00:00Z", kRefund, "g1", "RU", 100, "RUB");
    Add("u4", "2024-03-05T13:00:00Z", kLogin);
    Add("u4", "2024-03-05T13:10:00Z", kPurchase, "g1", "KZ", 0, "RUB");
    Add("u5", "2024-03-06T20:30:00Z", kPurchase, "g1", "RU", 70, "RUB");
    Add("u6", "2024-03-06T23:30:00Z", kLogin);
    // Retention, 2024-03-04 .. 03-07: registrations, then logins on later days.
    Add("r1", "2024-03-04T08:00:00Z", kRegistered);
    Add("r2", "2024-03-04T09:00:00Z", kRegistered);
    Add("r3", "2024-03-04T10:00:00Z", kRegistered);
    Add("r4", "2024-03-05T10:00:00Z", kRegistered);
    Add("r1", "2024-03-05T08:00:00Z", kLogin);
    Add("r2", "2024-03-06T08:00:00Z", kLogin);
    Add("r4", "2024-03-06T12:00:00Z", kLogin);
    // Funnel, 2024-03-10 .. 03-12: cart, checkout, purchase by six users in two countries.
    Add("f1", "2024-03-10T10:00:00Z", kCartAdded, "g1", "RU");
    Add("f1", "2024-03-10T10:01:00Z", kCheckout, "g1", "RU");
    Add("f1", "2024-03-10T10:03:00Z", kPurchase, "g1", "RU", 10, "RUB");
    Add("f2", "2024-03-10T10:00:00Z", kCartAdded, "g1", "RU");
    Add("f2", "2024-03-10T10:02:00Z", kCheckout, "g1", "RU");
    Add("f3", "2024-03-10T10:00:00Z", kCartAdded, "g2", "KZ");
    Add("f4", "2024-03-10T10:00:00Z", kCartAdded, "g2", "KZ");
    Add("f4", "2024-03-10T10:00:30Z", kCheckout, "g2", "KZ");
    Add("f4", "2024-03-10T10:01:30Z", kPurchase, "g2", "KZ", 10, "RUB");
    Add("f5", "2024-03-10T10:00:00Z", kCheckout, "g1", "RU");
    Add("f5", "2024-03-10T10:01:00Z", kPurchase, "g1", "RU", 10, "RUB");
    Add("f6", "2024-03-10T10:00:00Z", kCartAdded, "g1", "RU");
    Add("f6", "2024-03-10T10:05:00Z", kCheckout, "g1", "RU");
    Add("f6", "2024-03-12T10:00:00Z", kPurchase, "g1", "RU", 10, "RUB");  // after the 24 h window
    // Experiment, 2024-03-14: checkout_v2 A (e1..e5) and B (e6..e10); e2 bought before the exposure.
    for (int user = 1; user <= 10; ++user) {
      Add("e" + std::to_string(user), "2024-03-14T10:00:00Z", kExposure, "", "", std::nullopt, "",
          {{"experiment", "checkout_v2"}, {"variant", user <= 5 ? "A" : "B"}});
    }
    Add("e2", "2024-03-14T09:00:00Z", kPurchase, "g1", "RU", 10, "RUB");
    for (const char* user : {"e1", "e6", "e7", "e8"}) Add(user, "2024-03-14T11:00:00Z", kPurchase, "g1", "RU", 10, "RUB");
  }

  SectionContext Context(const query::Viewer& viewer = {}) {
    return SectionContext{*store_, *metric_values_, analysis_, viewer, segment_size_, segment_ids_};
  }

  common::Result<SectionTable> Run(const json& section, const query::Viewer& viewer = {}) {
    SectionContext context = Context(viewer);
    return RunSection(section, context);
  }

  SectionTable MustRun(const json& section, const query::Viewer& viewer = {}) {
    auto table = Run(section, viewer);
    EXPECT_TRUE(table.ok()) << table.status().ToString() << " for " << section.dump();
    if (!table.ok()) return {};
    ExpectWellFormed(*table);
    return std::move(table).value();
  }

  static void SetUpTestSuite() { catalog_ = new Catalog(); }
  static void TearDownTestSuite() { delete catalog_; }

  static inline Catalog* catalog_ = nullptr;
  TempDir dir_;
  std::unique_ptr<store::EmbeddedEventStore> store_;
  std::unique_ptr<metrics::MetricValues> metric_values_;
  analysis::AnalysisOptions analysis_;
  std::function<common::Result<json>(const std::string&)> segment_size_;
  std::function<common::Result<std::vector<std::string>>()> segment_ids_;
  std::vector<StoredEvent> events_;
};

// The reference of four built-in KPIs (docs/metrics.md section 4) with plain loops: per group of the dimensions
// (the typed columns; empty = null), per UTC day, over the events the metric reads. A group exists when the
// metric read at least one of its events in the period; its days without events are 0.
using GroupKey = std::vector<std::optional<std::string>>;
struct Reference {
  std::map<GroupKey, std::map<std::string, double>> values;
  std::map<GroupKey, std::map<std::string, std::set<std::string>>> users;
};

Reference ComputeReference(const std::string& metric, const std::vector<StoredEvent>& events,
                           const std::vector<std::string>& dimensions, int64_t start_ms, int64_t end_ms,
                           const std::set<std::string>& games = {}) {
  Reference reference;
  for (const StoredEvent& event : events) {
    if (event.time_ms < start_ms || event.time_ms >= end_ms) continue;
    if (!games.empty() && !games.contains(event.game_id)) continue;
    double value = 1;
    bool distinct = false;
    if (metric == "revenue_rub") {
      if ((event.type != kPurchase && event.type != kRefund) || event.currency != "RUB") continue;
      value = event.amount.value_or(0) * (event.type == kRefund ? -1 : 1);
    } else if (metric == "purchases_count") {
      if (event.type != kPurchase) continue;
    } else if (metric == "paying_users") {
      if (event.type != kPurchase || !(event.amount.value_or(0) > 0)) continue;
      distinct = true;
    } else if (metric == "dau") {
      if (event.type == kRefund || event.type == kExposure || event.user.empty()) continue;
      distinct = true;
    } else {
      ADD_FAILURE() << "no reference for " << metric;
      continue;
    }
    GroupKey key;
    for (const auto& dimension : dimensions) {
      const std::string& text = dimension == "game_id" ? event.game_id : event.country;
      key.push_back(text.empty() ? std::nullopt : std::optional<std::string>(text));
    }
    const std::string day = common::FormatRfc3339Millis(event.time_ms).substr(0, 10);
    if (distinct) {
      reference.users[key][day].insert(event.user);
      reference.values[key][day] = static_cast<double>(reference.users[key][day].size());
    } else {
      reference.values[key][day] += value;
    }
  }
  return reference;
}

TEST_F(ReportSectionsTest, MetricsJoinOnDayAndGroupAsTheReferenceCounts) {
  const std::vector<std::string> metrics = {"revenue_rub", "purchases_count", "paying_users", "dau"};
  const std::vector<std::string> dimensions = {"game_id", "country"};
  const json section = {{"name", "sales"},       {"type", "metrics"},
                        {"metrics", metrics},    {"dimensions", dimensions},
                        {"granularity", "day"},  {"period_start", "2024-03-04"},
                        {"period_end", "2024-03-06"}, {"timezone", "UTC"}};
  const SectionTable table = MustRun(section);
  EXPECT_EQ(table.header.name, "sales");
  EXPECT_EQ(table.header.title, "sales");  // no title: the name
  EXPECT_EQ(table.header.type, "metrics");
  EXPECT_EQ(ColumnNames(table), (std::vector<std::string>{"date", "game_id", "country", "revenue_rub",
                                                          "purchases_count", "paying_users", "dau"}));
  std::vector<ColumnType> types;
  for (const auto& column : table.header.columns) types.push_back(column.type);
  EXPECT_EQ(types, (std::vector<ColumnType>{ColumnType::kDate, ColumnType::kString, ColumnType::kString,
                                            ColumnType::kNumber, ColumnType::kInteger, ColumnType::kInteger,
                                            ColumnType::kInteger}));

  // Expected rows: per day, the first metric's groups (sorted, null first), then the groups only later metrics
  // have, in their order; a group a metric never read is null there, a day without its events 0.
  const int64_t start = At("2024-03-04T00:00:00Z"), end = At("2024-03-07T00:00:00Z");
  std::vector<Reference> references;
  std::vector<GroupKey> groups;
  for (const auto& metric : metrics) {
    references.push_back(ComputeReference(metric, events_, dimensions, start, end));
    for (const auto& [key, days] : references.back().values) {
      if (std::find(groups.begin(), groups.end(), key) == groups.end()) groups.push_back(key);
    }
  }
  json expected = json::array();
  for (const std::string day : {"2024-03-04", "2024-03-05", "2024-03-06"}) {
    for (const GroupKey& key : groups) {
      json row = {day};
      for (const auto& value : key) row.push_back(value ? json(*value) : json(nullptr));
      for (size_t metric_idx = 0; metric_idx < metrics.size(); ++metric_idx) {
        auto group = references[metric_idx].values.find(key);
        if (group == references[metric_idx].values.end()) {
          row.push_back(nullptr);
          continue;
        }
        auto value = group->second.find(day);
        const double number = value == group->second.end() ? 0.0 : value->second;
        row.push_back(metric_idx == 0 ? json(number) : json(static_cast<int64_t>(number)));
      }
      expected.push_back(row);
    }
  }
  json got = json::array();
  for (const auto& row : table.rows) got.push_back(RowJson(row));
  EXPECT_EQ(got, expected);
  // A few cells by hand: g1/RU on 03-04 (100 + 50 RUB, two payers), the refund on 03-05, logins' null group.
  const auto find = [&](const std::string& day, const json& game, const json& country) {
    for (const json& row : got) {
      if (row[0] == day && row[1] == game && row[2] == country) return row;
    }
    return json();
  };
  EXPECT_EQ(find("2024-03-04", nullptr, nullptr), json({"2024-03-04", nullptr, nullptr, nullptr, nullptr, nullptr, 5}));
  EXPECT_EQ(find("2024-03-04", "g1", "RU"), json({"2024-03-04", "g1", "RU", 150.0, 2, 2, 2}));
  EXPECT_EQ(find("2024-03-05", "g1", "RU"), json({"2024-03-05", "g1", "RU", -100.0, 0, 0, 0}));
  EXPECT_EQ(find("2024-03-05", "g1", "KZ"), json({"2024-03-05", "g1", "KZ", 0.0, 1, nullptr, 1}));  // a free claim
  EXPECT_EQ(find("2024-03-04", "g2", "KZ"), json({"2024-03-04", "g2", "KZ", nullptr, 1, 1, 1}));   // KZT only
}

TEST_F(ReportSectionsTest, MetricsBucketsFollowGranularityAndZone) {
  json section = {{"name", "hourly"},          {"title", "Revenue per hour"}, {"type", "metrics"},
                  {"metrics", {"revenue_rub"}}, {"granularity", "hour"},       {"period_start", "2024-03-04T10:00:00Z"},
                  {"period_end", "2024-03-04T11:59:59Z"}};
  SectionTable table = MustRun(section);
  EXPECT_EQ(table.header.title, "Revenue per hour");
  EXPECT_EQ(ColumnNames(table), (std::vector<std::string>{"hour", "revenue_rub"}));
  EXPECT_EQ(table.header.columns[0].type, ColumnType::kDateTime);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(RowJson(table.rows[0]), json({"2024-03-04T10:00:00.000Z", 100.0}));
  EXPECT_EQ(RowJson(table.rows[1]), json({"2024-03-04T11:00:00.000Z", 80.0}));
  // In Moscow the same hours are 13:00 and 14:00 local; the days of 03-06 20:30Z (u5's purchase) is 03-06 in UTC
  // but 03-06 23:30 in Moscow, and u6's login at 23:30Z is 03-07 there.
  section["timezone"] = "Europe/Moscow";
  section["period_start"] = "2024-03-04T13:00:00+03:00";
  section["period_end"] = "2024-03-04T14:59:59+03:00";
  table = MustRun(section);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(RowJson(table.rows[0]), json({"2024-03-04T13:00:00.000+03:00", 100.0}));
  const json daily = {{"name", "daily"},       {"type", "metrics"},        {"metrics", {"dau"}},
                      {"timezone", "Europe/Moscow"}, {"period_start", "2024-03-06"}, {"period_end", "2024-03-07"}};
  table = MustRun(daily);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(RowJson(table.rows[0]), json({"2024-03-06", 3}));  // r2's and r4's logins, u5's purchase at 23:30 local
  EXPECT_EQ(RowJson(table.rows[1]), json({"2024-03-07", 1}));  // u6 at 02:30 local
  const json weekly = {{"name", "weekly"},         {"type", "metrics"},           {"metrics", {"purchases_count"}},
                       {"granularity", "week"},     {"period_start", "2024-03-04"}, {"period_end", "2024-03-17"}};
  table = MustRun(weekly);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(RowJson(table.rows[0]), json({"2024-03-04", 9}));   // six of 03-04..06, f1, f4, f5 on Sunday 03-10
  EXPECT_EQ(RowJson(table.rows[1]), json({"2024-03-11", 6}));   // f6 on 03-12, the experiment's five on 03-14
}

TEST_F(ReportSectionsTest, MetricsEqualTheApiForADeveloperViewer) {
  query::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {"g1"};
  const json section = {{"name", "g1"},       {"type", "metrics"},          {"metrics", {"revenue_rub", "purchases_count"}},
                        {"dimensions", {"country"}}, {"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}};
  // Every group of g1 has fewer than 5 users: a developer sees no group (k-anonymity), as in the API.
  metrics::MetricValuesRequest request;
  request.period_start = "2024-03-04";
  request.period_end = "2024-03-06";
  request.dimensions = R"(["country"])";
  auto api = metric_values_->Compute("revenue_rub", request, developer);
  ASSERT_OK(api);
  EXPECT_TRUE((*api)["series"].empty());
  EXPECT_GT((*api)["k_anonymity"]["suppressed_groups"].get<int>(), 0);
  EXPECT_TRUE(MustRun(section, developer).rows.empty());
  // The ungrouped series of the developer is left out too: its rows are there, every number null.
  json ungrouped = section;
  ungrouped.erase("dimensions");
  const SectionTable table = MustRun(ungrouped, developer);
  ASSERT_EQ(table.rows.size(), 3u);
  for (const auto& row : table.rows) EXPECT_EQ(RowJson(row)[1], nullptr);
  // An admin sees everything.
  EXPECT_EQ(RowJson(MustRun(ungrouped).rows[0]), json({"2024-03-04", 180.0, 4}));
}

TEST_F(ReportSectionsTest, FunnelStepsPerBreakdownGroup) {
  const json request = {{"steps", {{{"event_type", kCartAdded}}, {{"event_type", kCheckout}}, {{"event_type", kPurchase}}}},
                        {"period_start", "2024-03-10"},
                        {"period_end", "2024-03-12"}};
  const json section = {{"name", "checkout"}, {"type", "funnel"}, {"request", request}};
  SectionTable table = MustRun(section);
  EXPECT_EQ(ColumnNames(table),
            (std::vector<std::string>{"step", "event_type", "users", "dropped_off", "conversion_from_previous",
                                      "conversion_from_first", "median_seconds_to_convert", "median_seconds_from_first"}));
  // Users f1..f6: f5 has no cart step; f6's purchase is past the 24 h window. Seconds between steps: checkout
  // 60 (f1), 120 (f2), 30 (f4), 300 (f6); purchase 120 (f1), 60 (f4), from the cart 180 and 90.
  json got = json::array();
  for (const auto& row : table.rows) got.push_back(RowJson(row));
  EXPECT_EQ(got, json::parse(R"([
    [1, "com.platform.cart.item.added.v1", 5, null, 1.0, 1.0, null, null],
    [2, "com.platform.cart.checkout.started.v1", 4, 1, 0.8, 0.8, 90.0, 90.0],
    [3, "com.platform.payments.purchase.completed.v1", 2, 2, 0.5, 0.4, 90.0, 135.0]])"));
  // The same numbers as the API's document.
  auto api = analysis::RunFunnels(*store_, request, {}, analysis_);
  ASSERT_OK(api);
  for (size_t step_idx = 0; step_idx < 3; ++step_idx) {
    const json& step = (*api)["steps"][step_idx];
    EXPECT_EQ(got[step_idx][2], step["users"]);
    EXPECT_EQ(got[step_idx][3], step["dropped_off"]);
    EXPECT_EQ(got[step_idx][4], step["conversion_from_previous"]);
    EXPECT_EQ(got[step_idx][5], step["conversion_from_first"]);
    EXPECT_EQ(got[step_idx][6], step["median_seconds_to_convert"]);
    EXPECT_EQ(got[step_idx][7], step["median_seconds_from_first"]);
  }

  // By country: groups by users at the first step (RU: f1, f2, f6; KZ: f3, f4).
  json grouped = section;
  grouped["request"]["breakdown"] = {{"property", "country"}};
  table = MustRun(grouped);
  EXPECT_EQ(ColumnNames(table)[0], "country");
  std::vector<json> users;
  for (const auto& row : table.rows) users.push_back({CellJson(row[0]), CellJson(row[1]), CellJson(row[3])});
  EXPECT_EQ(users, (std::vector<json>{{"RU", 1, 3}, {"RU", 2, 3}, {"RU", 3, 1}, {"KZ", 1, 2}, {"KZ", 2, 1}, {"KZ", 3, 1}}));

  // A developer sees only events of their games: the whole funnel of g1 (3 users) is suppressed.
  query::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {"g1"};
  table = MustRun(section, developer);
  ASSERT_EQ(table.rows.size(), 3u);
  for (const auto& row : table.rows) EXPECT_EQ(RowJson(row)[2], nullptr);
}

TEST_F(ReportSectionsTest, RetentionCohortsPerDay) {
  const json section = {{"name", "retention"},
                        {"type", "retention"},
                        {"request",
                         {{"start_event", {{"event_type", kRegistered}}},
                          {"return_event", {{"event_type", kLogin}}},
                          {"cohort_granularity", "day"},
                          {"periods", {2, 1}},
                          {"period_start", "2024-03-04"},
                          {"period_end", "2024-03-07"}}}};
  const SectionTable table = MustRun(section);
  EXPECT_EQ(ColumnNames(table), (std::vector<std::string>{"cohort_start", "cohort_end", "cohort_users", "retained_1",
                                                          "share_1", "retained_2", "share_2"}));
  json got = json::array();
  for (const auto& row : table.rows) got.push_back(RowJson(row));
  // 03-04: r1 (back on day 1), r2 (day 2), r3 (never); 03-05: r4 (day 1); day 1 of 03-07 is 03-08, after the period.
  EXPECT_EQ(got, json::parse(R"([
    ["2024-03-04", "2024-03-04", 3, 1, 0.3333333333333333, 1, 0.3333333333333333],
    ["2024-03-05", "2024-03-05", 1, 1, 1.0, 0, 0.0],
    ["2024-03-06", "2024-03-06", 0, 0, null, null, null],
    ["2024-03-07", "2024-03-07", 0, null, null, null, null]])"));
}

TEST_F(ReportSectionsTest, ExperimentReadoutPerVariantAndGoal) {
  const json request = {{"experiment", "checkout_v2"},
                        {"control", "A"},
                        {"goals", {{{"event_type", kPurchase}},
                                   {{"kind", "mean"}, {"event_type", kPurchase}, {"property", "amount"}}}},
                        {"period_start", "2024-03-14"},
                        {"period_end", "2024-03-14"}};
  const SectionTable table = MustRun({{"name", "readout"}, {"type", "experiment"}, {"request", request}});
  const std::vector<std::string> names = ColumnNames(table);
  auto cell = [&](size_t row, const std::string& column) {
    const size_t column_idx = static_cast<size_t>(std::find(names.begin(), names.end(), column) - names.begin());
    EXPECT_LT(column_idx, names.size()) << column;
    return column_idx < names.size() ? CellJson(table.rows[row][column_idx]) : json();
  };
  ASSERT_EQ(table.rows.size(), 4u);  // A and B, two goals each
  // A: 5 exposed, e1 converts (e2 bought before its exposure); B: 5 exposed, e6..e8 convert.
  EXPECT_EQ(cell(0, "variant"), "A");
  EXPECT_EQ(cell(0, "control"), true);
  EXPECT_EQ(cell(0, "experiment"), "checkout_v2");
  EXPECT_EQ(cell(0, "exposed_users"), 5);
  EXPECT_EQ(cell(0, "goal"), 1);
  EXPECT_EQ(cell(0, "goal_kind"), "conversion");
  EXPECT_EQ(cell(0, "goal_event_type"), kPurchase);
  EXPECT_EQ(cell(0, "converters"), 1);
  EXPECT_EQ(cell(0, "rate"), 0.2);
  EXPECT_EQ(cell(0, "mean"), nullptr);
  EXPECT_EQ(cell(0, "uplift"), nullptr);
  EXPECT_EQ(cell(0, "p_value"), nullptr);
  EXPECT_EQ(cell(0, "significant"), nullptr);
  EXPECT_EQ(cell(1, "goal_kind"), "mean");
  EXPECT_EQ(cell(1, "mean"), 2.0);  // 10 RUB over 5 users
  EXPECT_EQ(cell(1, "rate"), nullptr);
  EXPECT_EQ(cell(2, "variant"), "B");
  EXPECT_EQ(cell(2, "control"), false);
  EXPECT_EQ(cell(2, "converters"), 3);
  EXPECT_EQ(cell(2, "rate"), 0.6);
  EXPECT_DOUBLE_EQ(cell(2, "uplift").get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(cell(2, "difference").get<double>(), 0.4);
  // The pooled two-proportion z-test: P = 0.4, z = 0.4 / sqrt(P (1 - P) (1/5 + 1/5)).
  const double z = 0.4 / std::sqrt(0.4 * 0.6 * 0.4);
  EXPECT_NEAR(cell(2, "p_value").get<double>(), std::erfc(z / std::sqrt(2.0)), 1e-12);
  EXPECT_EQ(cell(2, "significant"), false);
  EXPECT_EQ(cell(3, "mean"), 6.0);
  EXPECT_EQ(cell(2, "srm_ok"), true);
  EXPECT_DOUBLE_EQ(cell(2, "srm_p_value").get<double>(), 1.0);
  // Every number as the API reports it.
  auto api = analysis::RunExperiments(*store_, request, {}, analysis_);
  ASSERT_OK(api);
  for (size_t row = 0; row < 4; ++row) {
    const json& variant = (*api)["variants"][row / 2];
    const json& goal = variant["goals"][row % 2];
    EXPECT_EQ(cell(row, "variant"), variant["variant"]);
    EXPECT_EQ(cell(row, "converters"), goal["converters"]);
    EXPECT_EQ(cell(row, "p_value"), goal["p_value"]);
    EXPECT_EQ(cell(row, "uplift"), goal["uplift"]);
    EXPECT_EQ(cell(row, "ci95_low"), goal["ci95"].is_null() ? json() : goal["ci95"][0]);
    EXPECT_EQ(cell(row, "ci95_high"), goal["ci95"].is_null() ? json() : goal["ci95"][1]);
    EXPECT_EQ(cell(row, "difference_ci95_high"), goal["difference_ci95"].is_null() ? json() : goal["difference_ci95"][1]);
  }
}

TEST_F(ReportSectionsTest, SegmentSizesFromTheCallbacks) {
  segment_ids_ = [] { return common::Result<std::vector<std::string>>(std::vector<std::string>{"s_payers", "s_new"}); };
  segment_size_ = [](const std::string& id) -> common::Result<json> {
    if (id == "s_payers") {
      return json{{"segment_id", id}, {"name", "Payers"}, {"type", "dynamic"}, {"users_count", 12},
                  {"as_of", "2024-03-01T00:00:00.000Z"}, {"refreshed_at", "2024-03-01T00:00:05.000Z"}};
    }
    if (id == "s_new") {
      return json{{"segment_id", id}, {"name", "New"}, {"type", "static"}, {"users_count", nullptr},
                  {"as_of", nullptr}, {"refreshed_at", nullptr}};
    }
    return common::Status::NotFound("segment '" + id + "' does not exist");
  };
  SectionTable table = MustRun({{"name", "segments"}, {"type", "segment_sizes"}});
  EXPECT_EQ(ColumnNames(table),
            (std::vector<std::string>{"segment_id", "name", "type", "users_count", "as_of", "refreshed_at"}));
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(RowJson(table.rows[0]), json({"s_payers", "Payers", "dynamic", 12, "2024-03-01T00:00:00.000Z",
                                          "2024-03-01T00:00:05.000Z"}));
  EXPECT_EQ(RowJson(table.rows[1]), json({"s_new", "New", "static", nullptr, nullptr, nullptr}));
  table = MustRun({{"name", "segments"}, {"type", "segment_sizes"}, {"segments", {"s_new"}}});
  ASSERT_EQ(table.rows.size(), 1u);
  auto unknown = Run({{"name", "segments"}, {"type", "segment_sizes"}, {"segments", {"s_new", "s_gone"}}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().field(), "segments[1]");
  query::Viewer developer;
  developer.all_games = false;
  EXPECT_EQ(Run({{"name", "segments"}, {"type", "segment_sizes"}}, developer).status().code(),
            StatusCode::kPermissionDenied);
  // Without a segment service there are no segments.
  segment_ids_ = nullptr;
  EXPECT_TRUE(MustRun({{"name", "segments"}, {"type", "segment_sizes"}}).rows.empty());
}

TEST_F(ReportSectionsTest, ErrorsNameThePathInsideTheSection) {
  auto error = [&](const json& section) {
    auto table = Run(section);
    EXPECT_FALSE(table.ok()) << section.dump();
    return table.ok() ? common::Status::Ok() : table.status();
  };
  const json metrics = {{"name", "m"}, {"type", "metrics"}, {"metrics", {"dau", "no_such_metric"}},
                        {"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}};
  common::Status status = error(metrics);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_EQ(status.field(), "metrics[1]");
  json bad = metrics;
  bad["metrics"] = {"dau"};
  bad["dimensions"] = {"auth_provider"};  // not a dimension of dau
  EXPECT_EQ(error(bad).field(), "dimensions");
  bad = metrics;
  bad["metrics"] = "dau";  // a placeholder resolved to text, not a list
  EXPECT_EQ(error(bad).field(), "metrics");
  bad = metrics;
  bad.erase("period_start");
  EXPECT_EQ(error(bad).field(), "period_start");
  const json funnel = {{"name", "f"},
                       {"type", "funnel"},
                       {"request",
                        {{"steps", {{{"event_type", kCartAdded}}, {{"event_type", ""}}}},
                         {"period_start", "2024-03-10"},
                         {"period_end", "2024-03-12"}}}};
  status = error(funnel);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.field(), "request.steps[1].event_type");
  json late = funnel;
  late["request"]["steps"][1]["event_type"] = kCheckout;
  late["request"]["period_start"] = "2030-01-01";
  late["request"]["period_end"] = "2030-01-02";
  EXPECT_EQ(error(late).code(), StatusCode::kFailedPrecondition);
  json segment = late;
  segment["request"]["period_start"] = "2024-03-10";
  segment["request"]["period_end"] = "2024-03-12";
  segment["request"]["segment"] = "no_such_segment";
  EXPECT_EQ(error(segment).code(), StatusCode::kNotFound);
}

// ---- Generated events: the built-ins, and sections against the API's own answers ----------------------------------

class ReportBuiltinsTest : public GeneratedStoreSuite<StoredEvent> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 400;
    options.generator.days = 21;
    options.generator.seed = 23;
    options.generator.start_date = "2024-03-04";
    options.pseudonymizer_key = 'r';
    options.flush_every_batches = 10;
    options.flush_while_fewer_than = 40000;
    Load(options, [](const events::EventView& event) { return event.ToStored(); });
    catalog_ = new Catalog();
  }
  static void TearDownTestSuite() {
    delete catalog_;
    GeneratedStoreSuite<StoredEvent>::TearDownTestSuite();
  }
  void SetUp() override {
    ASSERT_NE(store_, nullptr);
    ASSERT_NE(catalog_->catalog, nullptr);
    metric_values_ = std::make_unique<metrics::MetricValues>(*catalog_->catalog, *store_);
  }
  SectionContext Context() { return SectionContext{*store_, *metric_values_, analysis_, {}, nullptr, nullptr}; }

  // The resolved sections of the built-in `name` bound with `given` (at the generated data's end).
  std::vector<json> Resolved(const std::string& name, const json& given) {
    std::vector<json> out;
    for (const json& body : reports::BuiltinDefinitions()) {
      if (body["name"] != name) continue;
      auto definition = reports::ParseReportDefinition(body);
      EXPECT_TRUE(definition.ok()) << definition.status().ToString();
      if (!definition.ok()) return out;
      auto bound = reports::BindParameters(*definition, given, At("2024-03-25T06:00:00Z"));
      EXPECT_TRUE(bound.ok()) << bound.status().ToString();
      if (!bound.ok()) return out;
      for (const auto& section : definition->sections) out.push_back(ResolveSection(*definition, section, *bound));
    }
    EXPECT_FALSE(out.empty()) << name;
    return out;
  }

  SectionTable MustRun(const json& section) {
    SectionContext context = Context();
    auto table = RunSection(section, context);
    EXPECT_TRUE(table.ok()) << table.status().ToString() << " for " << section.dump();
    if (!table.ok()) return {};
    ExpectWellFormed(*table);
    return std::move(table).value();
  }

  static inline Catalog* catalog_ = nullptr;
  std::unique_ptr<metrics::MetricValues> metric_values_;
  analysis::AnalysisOptions analysis_;
};

TEST_F(ReportBuiltinsTest, EveryBuiltinRunsWithSampleParameters) {
  const json period = {{"period_start", "today-21d"}, {"period_end", "yesterday"}, {"timezone", "Europe/Moscow"}};
  for (const json& body : reports::BuiltinDefinitions()) {
    const std::string name = body["name"];
    SCOPED_TRACE(name);
    json given = period;
    if (name == "experiment_readout") given["experiment_key"] = "checkout_v2";
    for (const json& section : Resolved(name, given)) {
      EXPECT_EQ(section.dump().find("${"), std::string::npos);
      const SectionTable table = MustRun(section);
      EXPECT_FALSE(table.rows.empty()) << section.dump();
    }
  }
  // daily_kpi_summary: one row per day of the period, every KPI filled.
  const SectionTable kpis = MustRun(Resolved("daily_kpi_summary", period).front());
  EXPECT_EQ(ColumnNames(kpis), (std::vector<std::string>{"date", "dau", "new_users", "sessions", "revenue_rub",
                                                         "purchases_count", "paying_users", "arpu",
                                                         "payer_conversion"}));
  ASSERT_EQ(kpis.rows.size(), 21u);
  EXPECT_EQ(CellJson(kpis.rows.front()[0]), "2024-03-04");
  EXPECT_EQ(CellJson(kpis.rows.back()[0]), "2024-03-24");
  for (const auto& row : kpis.rows) {
    for (const Cell& cell : row) EXPECT_FALSE(std::holds_alternative<std::monostate>(cell));
  }
}

TEST_F(ReportBuiltinsTest, GameSalesEqualTheMetricValuesOfTheApi) {
  // The two games with the most purchases (free games have none).
  std::vector<StoredEvent> purchase_events;
  for (const StoredEvent& event : *raw_) {
    if (event.type == kPurchase) purchase_events.push_back(event);
  }
  const std::vector<std::string> games = GamesByEvents(purchase_events);
  ASSERT_GE(games.size(), 3u);
  const json given = {{"period_start", "2024-03-04"}, {"period_end", "2024-03-24"}, {"timezone", "Europe/Moscow"},
                      {"granularity", "week"}, {"game_ids", {games[0], games[1]}}};
  const json section = Resolved("game_sales_by_country", given).front();
  EXPECT_EQ(section["title"], "Sales per week, game and country");
  const SectionTable table = MustRun(section);
  EXPECT_EQ(ColumnNames(table), (std::vector<std::string>{"date", "game_id", "country", "revenue_rub",
                                                          "purchases_count", "paying_users"}));
  ASSERT_FALSE(table.rows.empty());
  // The API's answer to the same question, metric by metric: (bucket date, game, country) → value.
  metrics::MetricValuesRequest request;
  request.period_start = "2024-03-04";
  request.period_end = "2024-03-24";
  request.timezone = "Europe/Moscow";
  request.granularity = "week";
  request.dimensions = R"(["game_id", "country"])";
  request.filters = json::array({{{"property", "game_id"}, {"op", "in"}, {"value", {games[0], games[1]}}}}).dump();
  std::set<std::string> seen_games;
  size_t cells = 0;
  for (size_t metric_idx = 0; metric_idx < 3; ++metric_idx) {
    const std::string metric = table.header.columns[3 + metric_idx].name;
    auto api = metric_values_->Compute(metric, request, {});
    ASSERT_OK(api);
    std::map<json, json> values;
    for (const json& series : (*api)["series"]) {
      for (const json& point : series["points"]) {
        values[json::array({point[0].get<std::string>().substr(0, 10), series["dimensions"]["game_id"],
                            series["dimensions"]["country"]})] = point[1];
      }
    }
    for (const auto& row : table.rows) {
      const json key = json::array({CellJson(row[0]), CellJson(row[1]), CellJson(row[2])});
      seen_games.insert(CellJson(row[1]).get<std::string>());
      auto it = values.find(key);
      const json cell = CellJson(row[3 + metric_idx]);
      if (it == values.end()) {
        EXPECT_TRUE(cell.is_null()) << metric << " " << key.dump();
        continue;
      }
      EXPECT_EQ(cell, it->second) << metric << " " << key.dump();
      ++cells;
    }
  }
  EXPECT_GT(cells, table.rows.size());
  EXPECT_EQ(seen_games, (std::set<std::string>{games[0], games[1]}));

  // Independently: the weekly purchases of each (game, country) from the raw events.
  std::map<json, int64_t> purchases;
  const auto moscow = query::TimeZone::Load("Europe/Moscow");
  ASSERT_OK(moscow);
  const int64_t start = At("2024-03-03T21:00:00Z"), end = At("2024-03-24T21:00:00Z");
  for (const StoredEvent& event : *raw_) {
    if (event.type != kPurchase || event.time_ms < start || event.time_ms >= end) continue;
    if (event.game_id != games[0] && event.game_id != games[1]) continue;
    const int64_t week = (event.time_ms - start) / (7 * 86400000LL);  // Monday 2024-03-04 00:00 Moscow, no DST
    const std::string monday = week == 0 ? "2024-03-04" : week == 1 ? "2024-03-11" : "2024-03-18";
    ++purchases[json::array({monday, event.game_id, event.country.empty() ? json() : json(event.country)})];
  }
  size_t checked = 0;
  for (const auto& row : table.rows) {
    const json key = json::array({CellJson(row[0]), CellJson(row[1]), CellJson(row[2])});
    const json cell = CellJson(row[4]);
    if (cell.is_null()) continue;
    EXPECT_EQ(cell.get<int64_t>(), purchases[key]) << key.dump();
    ++checked;
  }
  EXPECT_GT(checked, 0u);
}

TEST_F(ReportBuiltinsTest, RetentionAndExperimentEqualTheApi) {
  const json period = {{"period_start", "2024-03-04"}, {"period_end", "2024-03-24"}};
  const json retention = Resolved("weekly_retention", period).front();
  SectionTable table = MustRun(retention);
  auto cohorts = analysis::RunRetention(*store_, retention["request"], {}, analysis_);
  ASSERT_OK(cohorts);
  ASSERT_EQ(table.rows.size(), (*cohorts)["cohorts"].size());
  EXPECT_EQ(ColumnNames(table), (std::vector<std::string>{"cohort_start", "cohort_end", "cohort_users", "retained_1",
                                                          "share_1", "retained_7", "share_7", "retained_14",
                                                          "share_14", "retained_30", "share_30"}));
  for (size_t cohort_idx = 0; cohort_idx < table.rows.size(); ++cohort_idx) {
    const json& cohort = (*cohorts)["cohorts"][cohort_idx];
    json expected = {cohort["cohort_start"], cohort["cohort_end"], cohort["users"]};
    for (const json& cell : cohort["retained"]) {
      expected.push_back(cell["users"]);
      expected.push_back(cell["share"]);
    }
    EXPECT_EQ(RowJson(table.rows[cohort_idx]), expected);
  }
  EXPECT_GT(CellJson(table.rows.front()[2]).get<int64_t>(), 0);

  json given = period;
  given["experiment_key"] = "checkout_v2";
  const json readout = Resolved("experiment_readout", given).front();
  EXPECT_EQ(readout["title"], "checkout_v2: variants against A");
  table = MustRun(readout);
  auto api = analysis::RunExperiments(*store_, readout["request"], {}, analysis_);
  ASSERT_OK(api);
  ASSERT_EQ(table.rows.size(), 4u);  // A and B, a conversion and a mean goal each
  for (size_t row = 0; row < 4; ++row) {
    const json& variant = (*api)["variants"][row / 2];
    const json& goal = variant["goals"][row % 2];
    const json cells = RowJson(table.rows[row]);
    EXPECT_EQ(cells[1], variant["variant"]);
    EXPECT_EQ(cells[3], variant["exposed_users"]);
    EXPECT_EQ(cells[8], goal["converters"]);
    EXPECT_EQ(cells[9], goal.value("rate", json()));
    EXPECT_EQ(cells[10], goal.value("mean", json()));
    EXPECT_EQ(cells[19], goal["p_value"]);
    EXPECT_EQ(cells[22], (*api)["srm"]["ok"]);
  }
  EXPECT_GT(CellJson(table.rows[0][3]).get<int64_t>(), 0);
}

}  // namespace
}  // namespace analytics::testing
