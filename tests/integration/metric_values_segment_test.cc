// Metric values (metrics/metric_values.h) restricted to a segment, over real embedded stores: the generator's
// events in one store, and in a second store only the events of the segment's members. Every built-in KPI (counts,
// distinct users, rolling windows, sums, averages, ratios, peak concurrency) asked with `segment` of the first
// store must answer exactly what the second store answers without one; daily active members are also counted here
// with plain loops. Plus the segment's errors: unknown (NotFound naming "segment", told apart from an unknown
// metric), not materialized (FailedPrecondition), no segment service.
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "metrics/metric_catalog.h"
#include "metrics/metric_values.h"
#include "store/embedded/embedded_event_store.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using events::StoredEvent;
using json = nlohmann::json;
using metrics::MetricValues;
using metrics::MetricValuesRequest;


class MetricValuesSegmentTest : public GeneratedStoreSuite<StoredEvent> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 600;
    options.generator.days = 21;
    options.generator.seed = 17;
    options.generator.start_date = "2024-03-04";
    options.pseudonymizer_key = 'm';
    options.flush_every_batches = 20;
    options.flush_while_fewer_than = 60000;
    Load(options, [](const events::EventView& event) { return event.ToStored(); });
    if (store_ == nullptr) return;

    // About a third of the users are the segment's members; the second store holds their events only (events
    // without a user belong to no member).
    std::set<std::string> users;
    for (const StoredEvent& event : *raw_) {
      if (!event.user.empty()) users.insert(event.user);
    }
    members_ = new std::set<std::string>();
    std::mt19937_64 rng(17);
    for (const std::string& user : users) {
      if (rng() % 3 == 0) members_->insert(user);
    }
    members_dir_ = new TempDir();
    auto opened = store::EmbeddedEventStore::Open(UnsyncedTestStoreOptions(*members_dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    members_store_ = std::move(opened).value().release();
    std::vector<StoredEvent> batch;
    for (const StoredEvent& event : *raw_) {
      if (members_->count(event.user) == 0) continue;
      batch.push_back(event);
      if (batch.size() == 5000) {
        ASSERT_OK(members_store_->Append(batch));
        batch.clear();
        if (members_store_->NewestEventMs() < common::ParseRfc3339Millis("2024-03-18T00:00:00Z").value()) {
          ASSERT_OK(members_store_->Flush());
        }
      }
    }
    ASSERT_OK(members_store_->Append(batch));

    auto metadata = metadata::OpenSqliteMetadataStore({.path = ":memory:"});
    ASSERT_TRUE(metadata.ok()) << metadata.status().ToString();
    metadata_ = std::move(metadata).value().release();
    catalog_ = new metrics::MetricCatalog(*metadata_);
    auto seeded = catalog_->SeedBuiltins(common::NowMillis());
    ASSERT_TRUE(seeded.ok()) << seeded.status().ToString();
  }
  static void TearDownTestSuite() {
    delete catalog_;
    delete metadata_;
    delete members_store_;
    delete members_dir_;
    delete members_;
    GeneratedStoreSuite<StoredEvent>::TearDownTestSuite();
  }

  // The metric over the generated store restricted to the members, and over the members' store unrestricted.
  static void ExpectSameAsMembersStore(const std::string& metric, MetricValuesRequest request,
                                       const query::Viewer& viewer = {}) {
    metrics::MetricValuesOptions options;
    options.segment_scope = TestSegments(*store_, *members_);
    MetricValues restricted(*catalog_, *store_, options);
    MetricValues members_only(*catalog_, *members_store_);
    auto expected = members_only.Compute(metric, request, viewer);
    ASSERT_TRUE(expected.ok()) << metric << ": " << expected.status().ToString();
    request.segment = "members";
    auto got = restricted.Compute(metric, request, viewer);
    ASSERT_TRUE(got.ok()) << metric << ": " << got.status().ToString();
    EXPECT_EQ((*got)["segment"], "members") << metric;
    got->erase("segment");
    EXPECT_EQ(*got, *expected) << metric << "\n" << got->dump() << "\n" << expected->dump();
  }

  static inline std::set<std::string>* members_ = nullptr;
  static inline TempDir* members_dir_ = nullptr;
  static inline store::EmbeddedEventStore* members_store_ = nullptr;
  static inline metadata::MetadataStore* metadata_ = nullptr;
  static inline metrics::MetricCatalog* catalog_ = nullptr;
};

MetricValuesRequest Period(const std::string& start, const std::string& end, const std::string& granularity = "day") {
  MetricValuesRequest request;
  request.period_start = start;
  request.period_end = end;
  request.granularity = granularity;
  return request;
}

TEST_F(MetricValuesSegmentTest, EveryBuiltinMetricEqualsTheMembersOnlyStore) {
  ASSERT_GT(members_->size(), 100u);
  auto snapshot = catalog_->Snapshot();
  ASSERT_OK(snapshot);
  ASSERT_GE((*snapshot)->entries.size(), 10u);
  for (const auto& entry : (*snapshot)->entries) {
    SCOPED_TRACE(entry.definition.name);
    ExpectSameAsMembersStore(entry.definition.name, Period("2024-03-06", "2024-03-22"));
    // Grouped by the first dimension, top 3 and "other"; weekly in Berlin.
    if (!entry.definition.dimensions.empty()) {
      MetricValuesRequest grouped = Period("2024-03-06", "2024-03-24", "week");
      grouped.timezone = "Europe/Berlin";
      grouped.dimensions = json::array({entry.definition.dimensions.front()}).dump();
      grouped.limit = "3";
      ExpectSameAsMembersStore(entry.definition.name, grouped);
    }
  }
}

TEST_F(MetricValuesSegmentTest, DeveloperAnswersAreRestrictedToo) {
  const std::vector<std::string> games = GamesByEvents(*raw_);
  ASSERT_GE(games.size(), 3u);
  query::Viewer developer;
  developer.all_games = false;
  developer.game_ids = {games[0], games[2]};
  MetricValuesRequest request = Period("2024-03-06", "2024-03-20");
  request.dimensions = R"(["game_id"])";
  for (const char* metric : {"dau", "revenue_rub", "peak_concurrent_players", "arppu"}) {
    SCOPED_TRACE(metric);
    ExpectSameAsMembersStore(metric, request, developer);
  }
}

TEST_F(MetricValuesSegmentTest, DailyActiveMembersMatchPlainLoops) {
  auto snapshot = catalog_->Snapshot();
  ASSERT_OK(snapshot);
  const auto* dau = (*snapshot)->Find("dau");
  ASSERT_NE(dau, nullptr);
  ASSERT_TRUE(dau->definition.filters.empty());
  const std::set<std::string> types(dau->definition.event_types.begin(), dau->definition.event_types.end());
  std::map<std::string, std::set<std::string>> active;  // UTC day -> members
  for (const StoredEvent& event : *raw_) {
    if (members_->count(event.user) == 0 || (!types.empty() && types.count(event.type) == 0)) continue;
    active[common::FormatRfc3339Millis(event.time_ms).substr(0, 10)].insert(event.user);
  }
  metrics::MetricValuesOptions options;
  options.segment_scope = TestSegments(*store_, *members_);
  MetricValues values(*catalog_, *store_, options);
  MetricValuesRequest request = Period("2024-03-05", "2024-03-21");
  request.segment = "members";
  auto document = values.Compute("dau", request, {});
  ASSERT_OK(document);
  const json& points = (*document)["series"][0]["points"];
  ASSERT_EQ(points.size(), 17u);
  uint64_t total = 0;
  for (const json& point : points) {
    const std::string day = point[0].get<std::string>().substr(0, 10);
    EXPECT_EQ(point[1].get<double>(), static_cast<double>(active[day].size())) << day;
    total += active[day].size();
  }
  EXPECT_GT(total, 100u);
  // Fewer than without the segment.
  request.segment.reset();
  auto everyone = values.Compute("dau", request, {});
  ASSERT_OK(everyone);
  EXPECT_LT(points[5][1].get<double>(), (*everyone)["series"][0]["points"][5][1].get<double>());
  EXPECT_FALSE(everyone->contains("segment"));
}

TEST_F(MetricValuesSegmentTest, SegmentErrors) {
  metrics::MetricValuesOptions options;
  options.segment_scope = TestSegments(*store_, *members_);
  MetricValues values(*catalog_, *store_, options);
  MetricValuesRequest request = Period("2024-03-06", "2024-03-10");
  request.segment = "whales";
  auto unknown = values.Compute("dau", request, {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), common::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().field(), "segment");
  // An unknown metric is the metric's NotFound (no field), whatever the segment.
  auto no_metric = values.Compute("no_such_metric", request, {});
  ASSERT_FALSE(no_metric.ok());
  EXPECT_EQ(no_metric.status().code(), common::StatusCode::kNotFound);
  EXPECT_EQ(no_metric.status().field(), "");
  // Parameters are checked before the segment is looked up.
  MetricValuesRequest bad = request;
  bad.granularity = "fortnight";
  EXPECT_EQ(values.Compute("dau", bad, {}).status().field(), "granularity");
  request.segment = "pending";
  EXPECT_EQ(values.Compute("dau", request, {}).status().code(), common::StatusCode::kFailedPrecondition);
  // An empty value is no segment.
  request.segment = "";
  auto empty = values.Compute("dau", request, {});
  ASSERT_OK(empty);
  EXPECT_FALSE(empty->contains("segment"));
  // Without a segment service every segment is unknown.
  MetricValues without(*catalog_, *store_);
  request.segment = "members";
  auto no_service = without.Compute("dau", request, {});
  EXPECT_EQ(no_service.status().code(), common::StatusCode::kNotFound);
  EXPECT_EQ(no_service.status().field(), "segment");
}

}  // namespace
}  // namespace analytics::testing
