// Contract tests of the MetadataStore port, run against every adapter: SQLite (a file in a fresh temp dir)
// and PostgreSQL (a fresh schema per test, dropped at teardown, in the database named by
// ANALYTICS_TEST_POSTGRES_DSN, which scripts/servers/postgres starts). A missing DSN fails the PostgreSQL
// tests; they are never skipped. Adapter-specific behaviour (unreachable server, lost connections, bad files)
// follows the typed suite.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <latch>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/status.h"
#include "common/time_util.h"
#include "metadata/metadata_store.h"
#include "metadata/migrations/migrations.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "query/metric_definition.h"
#include "support/test_env.h"

namespace analytics::metadata {
namespace {

using common::Result;
using common::Status;
using common::StatusCode;
using query::Aggregation;
using query::FilterOp;
using query::MetricDefinition;
using query::PropertyFilter;
using nlohmann::json;

constexpr int64_t kCreatedAt = 1700000000123;  // 2023-11-14T22:13:20.123Z
constexpr const char* kPurchase = "com.platform.store.purchase_completed.v1";
constexpr const char* kRefund = "com.platform.payments.refund_issued.v1";

int LatestSchemaVersion() { return SqliteMigrations().back().version; }

// "t_" + 32 hex digits: a PostgreSQL schema name no other test uses.
std::string FreshSchemaName() {
  std::string name = "t_";
  for (char c : common::NewUuid()) {
    if (c != '-') name += c;
  }
  return name;
}

// ---------------------------------------------------------------------------------------------------------
// Backends: how each adapter under test is opened and cleaned up.

class SqliteBackend {
 public:
  static constexpr const char* kTestName = "Sqlite";
  static constexpr std::string_view kBackendName = "sqlite";

  Result<std::unique_ptr<MetadataStore>> Open() { return OpenSibling("metadata"); }

  // Another database of the same kind, distinct from Open's (fresh unless opened before).
  Result<std::unique_ptr<MetadataStore>> OpenSibling(const std::string& id) {
    return OpenSqliteMetadataStore({.path = (dir_.path() / "data" / (id + ".db")).string()});
  }

  static Status Execute(MetadataStore& store, std::string_view sql) {
    return dynamic_cast<SqliteMetadataStore&>(store).ExecuteForTest(sql);
  }

 private:
  testing::TempDir dir_;
};

class PostgresBackend {
 public:
  static constexpr const char* kTestName = "Postgres";
  static constexpr std::string_view kBackendName = "postgres";

  PostgresBackend() : dsn_(testing::RequiredEnv("ANALYTICS_TEST_POSTGRES_DSN")), schema_(FreshSchemaName()) {}

  ~PostgresBackend() {
    if (dsn_.empty()) return;
    for (const std::string& schema : schemas_) {
      Status dropped = DropPostgresSchemaForTest(dsn_, schema);
      EXPECT_TRUE(dropped.ok()) << dropped.ToString();
    }
  }

  Result<std::unique_ptr<MetadataStore>> Open() { return OpenSchema(schema_); }

  Result<std::unique_ptr<MetadataStore>> OpenSibling(const std::string& id) { return OpenSchema(schema_ + "_" + id); }

  // Opens the test's schema with another pool size and/or DSN.
  Result<std::unique_ptr<MetadataStore>> OpenWith(int pool_size, const std::string& dsn) {
    Remember(schema_);
    return OpenPostgresMetadataStore({.dsn = dsn, .schema = schema_, .pool_size = pool_size});
  }

  static Status Execute(MetadataStore& store, std::string_view sql) {
    return dynamic_cast<PostgresMetadataStore&>(store).ExecuteForTest(sql);
  }

  const std::string& dsn() const { return dsn_; }
  const std::string& schema() const { return schema_; }

 private:
  Result<std::unique_ptr<MetadataStore>> OpenSchema(const std::string& schema) {
    if (dsn_.empty()) return Status::FailedPrecondition("ANALYTICS_TEST_POSTGRES_DSN is not set");
    Remember(schema);
    return OpenPostgresMetadataStore({.dsn = dsn_, .schema = schema});
  }
  void Remember(const std::string& schema) {
    std::lock_guard lock(mu_);
    for (const auto& known : schemas_) {
      if (known == schema) return;
    }
    schemas_.push_back(schema);
  }

  const std::string dsn_;
  const std::string schema_;
  std::mutex mu_;
  std::vector<std::string> schemas_;  // GUARDED_BY(mu_); dropped at teardown
};

template <typename Backend>
class MetadataStoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(store_, backend_.Open()); }

  MetadataStore& store() { return *store_; }

  Backend backend_;                       // declared first: outlives every store (PostgreSQL drops schemas)
  std::unique_ptr<MetadataStore> store_;  // the test's store, on a fresh database
};

class BackendNames {
 public:
  template <typename Backend>
  static std::string GetName(int) {
    return Backend::kTestName;
  }
};

using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(MetadataStoreContractTest, Backends, BackendNames);

// ---------------------------------------------------------------------------------------------------------
// Definitions used by the tests. Every one is valid (stores read definitions back through validation).

MetricDefinition CountMetric(const std::string& name, std::vector<std::string> tags = {},
                             const std::string& owner_service = "analytics", bool is_realtime = false) {
  MetricDefinition def;
  def.name = name;
  def.title = "Metric " + name;
  def.aggregation = Aggregation::kCount;
  def.event_types = {kPurchase};
  def.tags = std::move(tags);
  def.owner_service = owner_service;
  def.is_realtime = is_realtime;
  def.version = 1;
  def.created_at_ms = kCreatedAt;
  def.updated_at_ms = kCreatedAt;
  def.created_by = "user-1";
  return def;
}

// Definitions that together set every field of MetricDefinition, every aggregation and every filter op.
std::vector<MetricDefinition> EveryFieldDefinitions() {
  std::vector<MetricDefinition> defs;

  MetricDefinition revenue;
  revenue.name = "net_revenue";
  revenue.title = "Net revenue — «чистая выручка»";
  revenue.description = "Purchases minus refunds.\nQuotes \" and backslashes \\ survive; so does 'SQL'; -- too.";
  revenue.event_types = {kPurchase, kRefund};
  revenue.event_weights = {{kPurchase, 1.0}, {kRefund, -1.0}};
  revenue.aggregation = Aggregation::kSum;
  revenue.property = "amount.value";
  revenue.filters = {
      PropertyFilter{"currency", FilterOp::kIn, json::array({"RUB", "USD", "EUR"})},
      PropertyFilter{"platform", FilterOp::kNe, "web"},
      PropertyFilter{"amount.value", FilterOp::kGt, 0.5},
      PropertyFilter{"amount.value", FilterOp::kLte, 100000},
      PropertyFilter{"country", FilterOp::kExists, true},
      PropertyFilter{"promo", FilterOp::kExists, false},
      PropertyFilter{"title", FilterOp::kContains, "ü'\"%_"},
  };
  revenue.dimensions = {"country", "platform"};
  revenue.unit = "RUB";
  revenue.tags = {"revenue", "finance-core"};
  revenue.owner_service = "payments";
  revenue.is_realtime = true;
  revenue.builtin = true;
  revenue.version = 7;
  revenue.created_at_ms = kCreatedAt;
  revenue.updated_at_ms = kCreatedAt + 86400000 + 1;
  revenue.created_by = "user-42";
  defs.push_back(revenue);

  MetricDefinition p95;
  p95.name = "p95_session_seconds";
  p95.title = "p95 session length";
  p95.event_types = {"com.platform.library.session_ended.v1"};
  p95.aggregation = Aggregation::kPercentile;
  p95.property = "duration_seconds";
  p95.percentile = 95.5;
  p95.filters = {
      PropertyFilter{"game_id", FilterOp::kNin, json::array({1, 2.5, true, "x"})},
      PropertyFilter{"level", FilterOp::kGte, 3},
      PropertyFilter{"version", FilterOp::kLt, "2.0"},
      PropertyFilter{"is_bot", FilterOp::kEq, false},
  };
  p95.unit = "s";
  p95.created_at_ms = kCreatedAt;
  p95.updated_at_ms = kCreatedAt;
  defs.push_back(p95);

  MetricDefinition wau;
  wau.name = "wau";
  wau.title = "Weekly active users";
  wau.aggregation = Aggregation::kUniqueUsers;
  wau.window_days = 7;
  wau.tags = {"engagement"};
  wau.created_at_ms = kCreatedAt;
  wau.updated_at_ms = kCreatedAt;
  defs.push_back(wau);

  MetricDefinition arppu;
  arppu.name = "arppu";
  arppu.title = "Average revenue per paying user";
  arppu.aggregation = Aggregation::kRatio;
  arppu.numerator = "net_revenue";
  arppu.denominator = "payers";
  arppu.created_at_ms = kCreatedAt;
  arppu.updated_at_ms = kCreatedAt;
  defs.push_back(arppu);

  MetricDefinition ccu;
  ccu.name = "peak_ccu";
  ccu.title = "Peak concurrent players";
  ccu.aggregation = Aggregation::kPeakConcurrent;
  ccu.concurrency = query::ConcurrencySpec{.start_event_type = "com.platform.library.session_started.v1",
                                           .end_event_type = "com.platform.library.session_ended.v1",
                                           .key_property = "session.key",
                                           .max_session_seconds = 7200};
  ccu.created_at_ms = kCreatedAt;
  ccu.updated_at_ms = kCreatedAt;
  defs.push_back(ccu);

  MetricDefinition minimal;  // every optional field left unset, every list empty
  minimal.name = "all_events";
  minimal.title = "All events";
  defs.push_back(minimal);

  return defs;
}

// Field-by-field, so a field the serializer forgets fails here.
void ExpectSameDefinition(const MetricDefinition& actual, const MetricDefinition& expected) {
  SCOPED_TRACE("definition " + expected.name);
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.title, expected.title);
  EXPECT_EQ(actual.description, expected.description);
  EXPECT_EQ(actual.event_types, expected.event_types);
  EXPECT_EQ(actual.event_weights, expected.event_weights);
  EXPECT_EQ(actual.aggregation, expected.aggregation);
  EXPECT_EQ(actual.property, expected.property);
  EXPECT_EQ(actual.percentile, expected.percentile);
  EXPECT_EQ(actual.numerator, expected.numerator);
  EXPECT_EQ(actual.denominator, expected.denominator);
  EXPECT_EQ(actual.window_days, expected.window_days);
  ASSERT_EQ(actual.concurrency.has_value(), expected.concurrency.has_value());
  if (expected.concurrency) {
    EXPECT_EQ(actual.concurrency->start_event_type, expected.concurrency->start_event_type);
    EXPECT_EQ(actual.concurrency->end_event_type, expected.concurrency->end_event_type);
    EXPECT_EQ(actual.concurrency->key_property, expected.concurrency->key_property);
    EXPECT_EQ(actual.concurrency->max_session_seconds, expected.concurrency->max_session_seconds);
  }
  ASSERT_EQ(actual.filters.size(), expected.filters.size());
  for (size_t filter_idx = 0; filter_idx < expected.filters.size(); ++filter_idx) {
    SCOPED_TRACE("filters[" + std::to_string(filter_idx) + "]");
    EXPECT_EQ(actual.filters[filter_idx].property, expected.filters[filter_idx].property);
    EXPECT_EQ(actual.filters[filter_idx].op, expected.filters[filter_idx].op);
    EXPECT_EQ(actual.filters[filter_idx].value, expected.filters[filter_idx].value);
    // Same text too: 3 must not come back as 3.0 (nlohmann may read 3 as unsigned; that is the same JSON).
    EXPECT_EQ(actual.filters[filter_idx].value.dump(), expected.filters[filter_idx].value.dump());
  }
  EXPECT_EQ(actual.dimensions, expected.dimensions);
  EXPECT_EQ(actual.unit, expected.unit);
  EXPECT_EQ(actual.tags, expected.tags);
  EXPECT_EQ(actual.owner_service, expected.owner_service);
  EXPECT_EQ(actual.is_realtime, expected.is_realtime);
  EXPECT_EQ(actual.builtin, expected.builtin);
  EXPECT_EQ(actual.version, expected.version);
  EXPECT_EQ(actual.created_at_ms, expected.created_at_ms);
  EXPECT_EQ(actual.updated_at_ms, expected.updated_at_ms);
  EXPECT_EQ(actual.created_by, expected.created_by);
}

std::vector<std::string> Names(const std::vector<MetricDefinition>& defs) {
  std::vector<std::string> names;
  for (const auto& def : defs) names.push_back(def.name);
  return names;
}

// ---------------------------------------------------------------------------------------------------------
// Basics

TYPED_TEST(MetadataStoreContractTest, ReportsBackendNameAndAnswersPing) {
  EXPECT_EQ(this->store().BackendName(), TypeParam::kBackendName);
  ASSERT_OK(this->store().Ping());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
}

TYPED_TEST(MetadataStoreContractTest, CreatedDefinitionReadsBack) {
  const MetricDefinition def = CountMetric("purchases", {"revenue"});
  ASSERT_OK(this->store().CreateMetricDefinition(def));
  ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition("purchases"));
  ExpectSameDefinition(stored, def);
}

TYPED_TEST(MetadataStoreContractTest, UnknownNameIsNotFound) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases")));
  EXPECT_EQ(this->store().GetMetricDefinition("nope").status().code(), StatusCode::kNotFound);
  // Values are parameters, never SQL.
  EXPECT_EQ(this->store().GetMetricDefinition("x'; DROP TABLE metric_definitions; --").status().code(),
            StatusCode::kNotFound);
  ASSERT_OK(this->store().GetMetricDefinition("purchases"));
}

TYPED_TEST(MetadataStoreContractTest, DuplicateNameIsAlreadyExistsAndKeepsTheFirst) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"first"})));
  MetricDefinition second = CountMetric("purchases", {"second"});
  second.title = "Second";
  EXPECT_EQ(this->store().CreateMetricDefinition(second).code(), StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition("purchases"));
  EXPECT_EQ(stored.title, "Metric purchases");
  ASSERT_OK_AND_ASSIGN(auto tagged_second, this->store().ListMetricDefinitions({.tag = "second"}));
  EXPECT_TRUE(tagged_second.empty());
}

TYPED_TEST(MetadataStoreContractTest, EmptyNameIsInvalidArgument) {
  EXPECT_EQ(this->store().CreateMetricDefinition(CountMetric("")).code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(MetadataStoreContractTest, EveryFieldRoundTrips) {
  const std::vector<MetricDefinition> defs = EveryFieldDefinitions();
  for (const auto& def : defs) ASSERT_OK(this->store().CreateMetricDefinition(def));
  for (const auto& def : defs) {
    ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition(def.name));
    ExpectSameDefinition(stored, def);
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListMetricDefinitions({}));
  ASSERT_EQ(listed.size(), defs.size());
  for (const auto& stored : listed) {
    for (const auto& def : defs) {
      if (def.name == stored.name) ExpectSameDefinition(stored, def);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Listing and filters

TYPED_TEST(MetadataStoreContractTest, ListIsSortedByNameInByteOrder) {
  for (const char* name : {"b", "ab", "a_b", "a", "a0"}) {
    ASSERT_OK(this->store().CreateMetricDefinition(CountMetric(name)));
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListMetricDefinitions({}));
  EXPECT_EQ(Names(listed), (std::vector<std::string>{"a", "a0", "a_b", "ab", "b"}));
}

TYPED_TEST(MetadataStoreContractTest, EmptyStoreListsNothing) {
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListMetricDefinitions({}));
  EXPECT_TRUE(listed.empty());
}

class Catalog {
 public:
  // d1: tags a,b; payments; realtime        d2: tag a; analytics; batch
  // d3: tag b; payments; batch              d4: no tags; analytics; realtime
  static Status Fill(MetadataStore& store) {
    ANALYTICS_RETURN_IF_ERROR(store.CreateMetricDefinition(CountMetric("d1", {"a", "b"}, "payments", true)));
    ANALYTICS_RETURN_IF_ERROR(store.CreateMetricDefinition(CountMetric("d2", {"a"}, "analytics", false)));
    ANALYTICS_RETURN_IF_ERROR(store.CreateMetricDefinition(CountMetric("d3", {"b"}, "payments", false)));
    return store.CreateMetricDefinition(CountMetric("d4", {}, "analytics", true));
  }
};

TYPED_TEST(MetadataStoreContractTest, FilterByTag) {
  ASSERT_OK(Catalog::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto with_a, this->store().ListMetricDefinitions({.tag = "a"}));
  EXPECT_EQ(Names(with_a), (std::vector<std::string>{"d1", "d2"}));
  ASSERT_OK_AND_ASSIGN(auto with_b, this->store().ListMetricDefinitions({.tag = "b"}));
  EXPECT_EQ(Names(with_b), (std::vector<std::string>{"d1", "d3"}));
  ASSERT_OK_AND_ASSIGN(auto with_c, this->store().ListMetricDefinitions({.tag = "c"}));
  EXPECT_TRUE(with_c.empty());
}

TYPED_TEST(MetadataStoreContractTest, FilterByOwnerService) {
  ASSERT_OK(Catalog::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto payments, this->store().ListMetricDefinitions({.owner_service = "payments"}));
  EXPECT_EQ(Names(payments), (std::vector<std::string>{"d1", "d3"}));
  ASSERT_OK_AND_ASSIGN(auto nobody, this->store().ListMetricDefinitions({.owner_service = "pay"}));
  EXPECT_TRUE(nobody.empty());
}

TYPED_TEST(MetadataStoreContractTest, FilterByIsRealtime) {
  ASSERT_OK(Catalog::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto realtime, this->store().ListMetricDefinitions({.is_realtime = true}));
  EXPECT_EQ(Names(realtime), (std::vector<std::string>{"d1", "d4"}));
  ASSERT_OK_AND_ASSIGN(auto batch, this->store().ListMetricDefinitions({.is_realtime = false}));
  EXPECT_EQ(Names(batch), (std::vector<std::string>{"d2", "d3"}));
}

TYPED_TEST(MetadataStoreContractTest, FiltersCombineWithAnd) {
  ASSERT_OK(Catalog::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto b_payments, this->store().ListMetricDefinitions({.tag = "b", .owner_service = "payments"}));
  EXPECT_EQ(Names(b_payments), (std::vector<std::string>{"d1", "d3"}));
  ASSERT_OK_AND_ASSIGN(auto b_payments_batch, this->store().ListMetricDefinitions(
                                                  {.tag = "b", .owner_service = "payments", .is_realtime = false}));
  EXPECT_EQ(Names(b_payments_batch), (std::vector<std::string>{"d3"}));
  ASSERT_OK_AND_ASSIGN(auto a_realtime, this->store().ListMetricDefinitions({.tag = "a", .is_realtime = true}));
  EXPECT_EQ(Names(a_realtime), (std::vector<std::string>{"d1"}));
  ASSERT_OK_AND_ASSIGN(auto analytics_realtime, this->store().ListMetricDefinitions(
                                                    {.owner_service = "analytics", .is_realtime = true}));
  EXPECT_EQ(Names(analytics_realtime), (std::vector<std::string>{"d4"}));
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListMetricDefinitions({.tag = "a", .owner_service = "nobody"}));
  EXPECT_TRUE(none.empty());
}

// ---------------------------------------------------------------------------------------------------------
// Update and delete

TYPED_TEST(MetadataStoreContractTest, UpdateWithExpectedVersionReplacesDefinitionAndTags) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"old"}, "analytics", false)));
  MetricDefinition next = CountMetric("purchases", {"new", "newer"}, "payments", true);
  next.title = "Purchases v2";
  next.version = 2;
  next.updated_at_ms = kCreatedAt + 5000;
  ASSERT_OK(this->store().UpdateMetricDefinition(next, 1));

  ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition("purchases"));
  ExpectSameDefinition(stored, next);
  ASSERT_OK_AND_ASSIGN(auto old_tag, this->store().ListMetricDefinitions({.tag = "old"}));
  EXPECT_TRUE(old_tag.empty());
  ASSERT_OK_AND_ASSIGN(auto new_tag, this->store().ListMetricDefinitions({.tag = "newer"}));
  EXPECT_EQ(Names(new_tag), std::vector<std::string>{"purchases"});
  ASSERT_OK_AND_ASSIGN(auto realtime_payments,
                       this->store().ListMetricDefinitions({.owner_service = "payments", .is_realtime = true}));
  EXPECT_EQ(Names(realtime_payments), std::vector<std::string>{"purchases"});
}

TYPED_TEST(MetadataStoreContractTest, UpdateWithStaleVersionIsFailedPreconditionAndChangesNothing) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"kept"})));
  MetricDefinition v2 = CountMetric("purchases", {"kept"});
  v2.title = "v2";
  v2.version = 2;
  ASSERT_OK(this->store().UpdateMetricDefinition(v2, 1));

  MetricDefinition stale = CountMetric("purchases", {"lost"});
  stale.title = "stale";
  stale.version = 2;
  Status status = this->store().UpdateMetricDefinition(stale, 1);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();

  ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition("purchases"));
  EXPECT_EQ(stored.title, "v2");
  EXPECT_EQ(stored.version, 2);
  ASSERT_OK_AND_ASSIGN(auto lost, this->store().ListMetricDefinitions({.tag = "lost"}));
  EXPECT_TRUE(lost.empty());
}

TYPED_TEST(MetadataStoreContractTest, UpdateOfUnknownNameIsNotFound) {
  MetricDefinition def = CountMetric("ghost");
  def.version = 2;
  EXPECT_EQ(this->store().UpdateMetricDefinition(def, 1).code(), StatusCode::kNotFound);
}

TYPED_TEST(MetadataStoreContractTest, DeleteRemovesDefinitionAndItsTags) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"old"})));
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("other", {"old"})));
  ASSERT_OK(this->store().DeleteMetricDefinition("purchases"));
  EXPECT_EQ(this->store().GetMetricDefinition("purchases").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto old_tag, this->store().ListMetricDefinitions({.tag = "old"}));
  EXPECT_EQ(Names(old_tag), std::vector<std::string>{"other"});

  // The name is free again, and no tag of the deleted definition clings to the new one.
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"new"})));
  ASSERT_OK_AND_ASSIGN(auto old_again, this->store().ListMetricDefinitions({.tag = "old"}));
  EXPECT_EQ(Names(old_again), std::vector<std::string>{"other"});
}

TYPED_TEST(MetadataStoreContractTest, DeleteOfUnknownNameIsNotFound) {
  EXPECT_EQ(this->store().DeleteMetricDefinition("ghost").code(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------------------
// Audit log

AuditRecord Audit(int64_t at_ms, const std::string& action, json details = nullptr) {
  return AuditRecord{.at_ms = at_ms,
                     .actor = "user-1",
                     .action = action,
                     .resource = "metrics/purchases",
                     .details = std::move(details)};
}

TYPED_TEST(MetadataStoreContractTest, AuditIsListedNewestFirst) {
  ASSERT_OK(this->store().AppendAudit(Audit(1000, "first")));
  ASSERT_OK(this->store().AppendAudit(Audit(3000, "third_a")));
  ASSERT_OK(this->store().AppendAudit(Audit(2000, "second")));  // appended late, but older
  ASSERT_OK(this->store().AppendAudit(Audit(3000, "third_b")));  // same time: append order decides
  ASSERT_OK(this->store().AppendAudit(Audit(4000, "fourth")));

  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListAudit(10));
  std::vector<std::string> actions;
  for (const auto& record : all) actions.push_back(record.action);
  EXPECT_EQ(actions, (std::vector<std::string>{"fourth", "third_b", "third_a", "second", "first"}));
  ASSERT_EQ(all.size(), 5u);
  EXPECT_GT(all[1].id, all[2].id);  // ids grow in append order
  for (const auto& record : all) {
    EXPECT_GT(record.id, 0);
    EXPECT_EQ(record.actor, "user-1");
    EXPECT_EQ(record.resource, "metrics/purchases");
  }

  ASSERT_OK_AND_ASSIGN(auto newest, this->store().ListAudit(2));
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0].action, "fourth");
  EXPECT_EQ(newest[1].action, "third_b");
}

TYPED_TEST(MetadataStoreContractTest, AuditDetailsRoundTripAndZeroTimeMeansNow) {
  const json details = {{"before", {{"version", 1}, {"tags", {"a", "b"}}}},
                        {"after", nullptr},
                        {"ratio", 0.25},
                        {"note", "ünïcode \"quoted\" \\ \n"}};
  const int64_t before_ms = common::NowMillis();
  ASSERT_OK(this->store().AppendAudit(Audit(0, "metric.update", details)));
  ASSERT_OK(this->store().AppendAudit(Audit(0, "metric.delete")));  // null details
  const int64_t after_ms = common::NowMillis();

  ASSERT_OK_AND_ASSIGN(auto records, this->store().ListAudit(10));
  ASSERT_EQ(records.size(), 2u);
  for (const auto& record : records) {
    EXPECT_GE(record.at_ms, before_ms);
    EXPECT_LE(record.at_ms, after_ms);
    if (record.action == "metric.update") {
      EXPECT_EQ(record.details, details);
    } else {
      EXPECT_TRUE(record.details.is_null()) << record.action;
    }
  }
}

TYPED_TEST(MetadataStoreContractTest, AuditLimitMustBePositive) {
  EXPECT_EQ(this->store().ListAudit(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(this->store().ListAudit(-1).status().code(), StatusCode::kInvalidArgument);
}

// What undoes migration N: the state of a database written before it existed.
// Undoes migration 6 (the outbox).
constexpr std::string_view kDropVersion6 = "DROP TABLE outbox; DELETE FROM schema_migrations WHERE version = 6;";
// Undoes migrations 6 and 5 (report definitions; pipeline_runs is dropped right after by kDropVersion4).
const std::string kDropVersion5 = std::string(kDropVersion6) +
                                  "DROP TABLE report_definitions; DELETE FROM schema_migrations WHERE version = 5;";
// Undoes migrations 6, 5 and 4.
const std::string kDropVersion4 = kDropVersion5 +
                                  "DROP TABLE segment_materializations; DROP TABLE segments;"
                                  " DROP TABLE segment_member_index;"
                                  " DROP TABLE pipeline_runs; DELETE FROM schema_migrations WHERE version = 4;";

// ---------------------------------------------------------------------------------------------------------
// Dead letters

constexpr int64_t kReceivedAt = 1700000000000;  // 2023-11-14T22:13:20Z

DeadLetter Letter(int64_t received_at_ms, const std::string& code, const std::string& event_type,
                  const std::string& event_id = "evt-1") {
  return DeadLetter{.received_at_ms = received_at_ms,
                    .source = "//store/checkout",
                    .event_id = event_id,
                    .event_type = event_type,
                    .code = code,
                    .field = "data.amount",
                    .message = code + " at data.amount",
                    .payload = R"({"specversion":"1.0","id":")" + event_id + R"(","data":{"amount":"x"}})",
                    .payload_bytes = 512,
                    .channel = "http"};
}

// Field-by-field, so a column the adapter forgets fails here.
void ExpectSameDeadLetter(const DeadLetter& actual, const DeadLetter& expected) {
  SCOPED_TRACE("dead letter " + std::to_string(expected.id));
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.received_at_ms, expected.received_at_ms);
  EXPECT_EQ(actual.source, expected.source);
  EXPECT_EQ(actual.event_id, expected.event_id);
  EXPECT_EQ(actual.event_type, expected.event_type);
  EXPECT_EQ(actual.code, expected.code);
  EXPECT_EQ(actual.field, expected.field);
  EXPECT_EQ(actual.message, expected.message);
  EXPECT_EQ(actual.payload.size(), expected.payload.size());
  EXPECT_TRUE(actual.payload == expected.payload);  // not EXPECT_EQ: a 100 KB diff helps nobody
  EXPECT_EQ(actual.payload_bytes, expected.payload_bytes);
  EXPECT_EQ(actual.channel, expected.channel);
  EXPECT_EQ(actual.replay_count, expected.replay_count);
}

std::vector<int64_t> Ids(const std::vector<DeadLetter>& letters) {
  std::vector<int64_t> ids;
  for (const auto& letter : letters) ids.push_back(letter.id);
  return ids;
}

// The ids of every dead letter matching `filter`, read page by page (filter.limit per page).
Result<std::vector<int64_t>> PageThrough(MetadataStore& store, DeadLetterFilter filter) {
  std::vector<int64_t> ids;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(std::vector<DeadLetter> page, store.ListDeadLetters(filter));
    if (page.empty()) return ids;
    if (page.size() > static_cast<size_t>(filter.limit)) return Status::Internal("page larger than the limit");
    for (const auto& letter : page) ids.push_back(letter.id);
    filter.after_id = page.back().id;
  }
}

TYPED_TEST(MetadataStoreContractTest, AppendedDeadLettersGetIncreasingIdsAndReadBack) {
  std::vector<DeadLetter> first = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase, "a"),
                                   Letter(kReceivedAt - 5, "MISSING_FIELD", kRefund, "b"),
                                   Letter(kReceivedAt + 5, "INVALID_FIELD", kPurchase, "c")};
  first[1].source = "";  // not readable from the event
  first[1].event_id = "";
  first[1].payload = "";  // did not parse
  first[1].channel = "kafka";
  first[2].replay_count = 2;
  ASSERT_OK(this->store().AppendDeadLetters(first));
  EXPECT_GT(first[0].id, 0);
  EXPECT_GT(first[1].id, first[0].id);
  EXPECT_GT(first[2].id, first[1].id);

  std::vector<DeadLetter> second = {Letter(kReceivedAt - 100, "TOO_LARGE", kPurchase, "d")};
  ASSERT_OK(this->store().AppendDeadLetters(second));
  EXPECT_GT(second[0].id, first[2].id);  // later appends get larger ids, whatever their time

  std::vector<DeadLetter> none;
  ASSERT_OK(this->store().AppendDeadLetters(none));

  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({}));
  ASSERT_EQ(listed.size(), 4u);
  ExpectSameDeadLetter(listed[0], first[0]);
  ExpectSameDeadLetter(listed[1], first[1]);
  ExpectSameDeadLetter(listed[2], first[2]);
  ExpectSameDeadLetter(listed[3], second[0]);
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterWithZeroTimeIsReceivedNow) {
  std::vector<DeadLetter> letters = {Letter(0, "INVALID_FIELD", kPurchase)};
  const int64_t before_ms = common::NowMillis();
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  const int64_t after_ms = common::NowMillis();
  EXPECT_GE(letters[0].received_at_ms, before_ms);
  EXPECT_LE(letters[0].received_at_ms, after_ms);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({}));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].received_at_ms, letters[0].received_at_ms);
}

// l0: INVALID_FIELD purchase t+0     l1: INVALID_FIELD refund  t+10    l2: MISSING_FIELD purchase t+20
// l3: MISSING_FIELD refund  t+30     l4: INVALID_FIELD purchase t+40   l5: TOO_LARGE     ""       t+50
class Rejections {
 public:
  static Result<std::vector<DeadLetter>> Fill(MetadataStore& store) {
    std::vector<DeadLetter> letters = {
        Letter(kReceivedAt + 0, "INVALID_FIELD", kPurchase, "l0"),
        Letter(kReceivedAt + 10, "INVALID_FIELD", kRefund, "l1"),
        Letter(kReceivedAt + 20, "MISSING_FIELD", kPurchase, "l2"),
        Letter(kReceivedAt + 30, "MISSING_FIELD", kRefund, "l3"),
        Letter(kReceivedAt + 40, "INVALID_FIELD", kPurchase, "l4"),
        Letter(kReceivedAt + 50, "TOO_LARGE", "", "l5"),
    };
    ANALYTICS_RETURN_IF_ERROR(store.AppendDeadLetters(letters));
    return letters;
  }

  // The event ids of `letters`, which Fill names l0..l5.
  static std::vector<std::string> Names(const std::vector<DeadLetter>& letters) {
    std::vector<std::string> names;
    for (const auto& letter : letters) names.push_back(letter.event_id);
    return names;
  }
};

TYPED_TEST(MetadataStoreContractTest, DeadLetterFilterByCode) {
  ASSERT_OK(Rejections::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto invalid, this->store().ListDeadLetters({.code = "INVALID_FIELD"}));
  EXPECT_EQ(Rejections::Names(invalid), (std::vector<std::string>{"l0", "l1", "l4"}));
  ASSERT_OK_AND_ASSIGN(auto missing, this->store().ListDeadLetters({.code = "MISSING_FIELD"}));
  EXPECT_EQ(Rejections::Names(missing), (std::vector<std::string>{"l2", "l3"}));
  ASSERT_OK_AND_ASSIGN(auto prefix, this->store().ListDeadLetters({.code = "INVALID"}));
  EXPECT_TRUE(prefix.empty());
  ASSERT_OK_AND_ASSIGN(auto lower, this->store().ListDeadLetters({.code = "invalid_field"}));
  EXPECT_TRUE(lower.empty());
  // Values are parameters, never SQL.
  ASSERT_OK_AND_ASSIGN(auto injected, this->store().ListDeadLetters({.code = "x' OR '1'='1"}));
  EXPECT_TRUE(injected.empty());
  ASSERT_OK_AND_ASSIGN(int64_t injected_count,
                       this->store().CountDeadLetters({.code = "x'; DELETE FROM dead_letters; --"}));
  EXPECT_EQ(injected_count, 0);
  ASSERT_OK_AND_ASSIGN(int64_t all, this->store().CountDeadLetters({}));
  EXPECT_EQ(all, 6);
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterFilterByEventType) {
  ASSERT_OK(Rejections::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto purchases, this->store().ListDeadLetters({.event_type = kPurchase}));
  EXPECT_EQ(Rejections::Names(purchases), (std::vector<std::string>{"l0", "l2", "l4"}));
  ASSERT_OK_AND_ASSIGN(auto refunds, this->store().ListDeadLetters({.event_type = kRefund}));
  EXPECT_EQ(Rejections::Names(refunds), (std::vector<std::string>{"l1", "l3"}));
  ASSERT_OK_AND_ASSIGN(auto unreadable, this->store().ListDeadLetters({.event_type = ""}));  // "" is a value
  EXPECT_EQ(Rejections::Names(unreadable), (std::vector<std::string>{"l5"}));
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterFilterByTimeRangeIsHalfOpen) {
  ASSERT_OK(Rejections::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto from, this->store().ListDeadLetters({.from_ms = kReceivedAt + 30}));
  EXPECT_EQ(Rejections::Names(from), (std::vector<std::string>{"l3", "l4", "l5"}));
  ASSERT_OK_AND_ASSIGN(auto to, this->store().ListDeadLetters({.to_ms = kReceivedAt + 30}));
  EXPECT_EQ(Rejections::Names(to), (std::vector<std::string>{"l0", "l1", "l2"}));
  ASSERT_OK_AND_ASSIGN(auto between,
                       this->store().ListDeadLetters({.from_ms = kReceivedAt + 10, .to_ms = kReceivedAt + 40}));
  EXPECT_EQ(Rejections::Names(between), (std::vector<std::string>{"l1", "l2", "l3"}));
  ASSERT_OK_AND_ASSIGN(auto empty_range,
                       this->store().ListDeadLetters({.from_ms = kReceivedAt + 20, .to_ms = kReceivedAt + 20}));
  EXPECT_TRUE(empty_range.empty());
  ASSERT_OK_AND_ASSIGN(int64_t between_count,
                       this->store().CountDeadLetters({.from_ms = kReceivedAt + 10, .to_ms = kReceivedAt + 40}));
  EXPECT_EQ(between_count, 3);
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterFiltersCombineWithAnd) {
  ASSERT_OK(Rejections::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(auto invalid_purchases,
                       this->store().ListDeadLetters({.code = "INVALID_FIELD", .event_type = kPurchase}));
  EXPECT_EQ(Rejections::Names(invalid_purchases), (std::vector<std::string>{"l0", "l4"}));
  ASSERT_OK_AND_ASSIGN(auto recent_invalid_purchases,
                       this->store().ListDeadLetters(
                           {.code = "INVALID_FIELD", .event_type = kPurchase, .from_ms = kReceivedAt + 1}));
  EXPECT_EQ(Rejections::Names(recent_invalid_purchases), std::vector<std::string>{"l4"});
  ASSERT_OK_AND_ASSIGN(auto missing_refunds_early,
                       this->store().ListDeadLetters({.code = "MISSING_FIELD",
                                                      .event_type = kRefund,
                                                      .from_ms = kReceivedAt,
                                                      .to_ms = kReceivedAt + 30}));
  EXPECT_TRUE(missing_refunds_early.empty());
  ASSERT_OK_AND_ASSIGN(auto missing_refunds,
                       this->store().ListDeadLetters({.code = "MISSING_FIELD",
                                                      .event_type = kRefund,
                                                      .from_ms = kReceivedAt,
                                                      .to_ms = kReceivedAt + 31}));
  EXPECT_EQ(Rejections::Names(missing_refunds), std::vector<std::string>{"l3"});
  ASSERT_OK_AND_ASSIGN(int64_t invalid_purchase_count,
                       this->store().CountDeadLetters({.code = "INVALID_FIELD", .event_type = kPurchase}));
  EXPECT_EQ(invalid_purchase_count, 2);
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListDeadLetters({.code = "TOO_LARGE", .event_type = kPurchase}));
  EXPECT_TRUE(none.empty());
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterPagesCoverEveryRowExactlyOnce) {
  std::vector<DeadLetter> letters;
  for (int letter_idx = 0; letter_idx < 250; ++letter_idx) {
    letters.push_back(Letter(kReceivedAt + letter_idx % 17, letter_idx % 3 == 0 ? "INVALID_FIELD" : "MISSING_FIELD",
                             kPurchase, "e" + std::to_string(letter_idx)));
  }
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  std::vector<int64_t> all_ids = Ids(letters);
  std::vector<int64_t> invalid_ids;
  for (const auto& letter : letters) {
    if (letter.code == "INVALID_FIELD") invalid_ids.push_back(letter.id);
  }

  ASSERT_OK_AND_ASSIGN(auto paged_all, PageThrough(this->store(), {.limit = 7}));
  EXPECT_EQ(paged_all, all_ids);  // ascending, each once
  ASSERT_OK_AND_ASSIGN(auto paged_one_by_one, PageThrough(this->store(), {.limit = 1}));
  EXPECT_EQ(paged_one_by_one, all_ids);
  ASSERT_OK_AND_ASSIGN(auto paged_invalid, PageThrough(this->store(), {.code = "INVALID_FIELD", .limit = 5}));
  EXPECT_EQ(paged_invalid, invalid_ids);

  ASSERT_OK_AND_ASSIGN(auto first_page, this->store().ListDeadLetters({.limit = 100}));
  EXPECT_EQ(first_page.size(), 100u);
  ASSERT_OK_AND_ASSIGN(auto default_page, this->store().ListDeadLetters({}));
  EXPECT_EQ(default_page.size(), 100u);  // the default limit
  ASSERT_OK_AND_ASSIGN(auto whole, this->store().ListDeadLetters({.limit = 1000}));
  EXPECT_EQ(Ids(whole), all_ids);
  ASSERT_OK_AND_ASSIGN(auto after_last, this->store().ListDeadLetters({.after_id = all_ids.back()}));
  EXPECT_TRUE(after_last.empty());
  ASSERT_OK_AND_ASSIGN(auto after_middle, this->store().ListDeadLetters({.after_id = all_ids[99], .limit = 1000}));
  EXPECT_EQ(Ids(after_middle), std::vector<int64_t>(all_ids.begin() + 100, all_ids.end()));

  // Counting ignores paging.
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({.after_id = all_ids[99], .limit = 1}));
  EXPECT_EQ(count, 250);
  ASSERT_OK_AND_ASSIGN(int64_t invalid_count, this->store().CountDeadLetters({.code = "INVALID_FIELD"}));
  EXPECT_EQ(invalid_count, static_cast<int64_t>(invalid_ids.size()));
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterLimitOutside1To1000IsInvalidArgument) {
  for (int limit : {0, -1, 1001}) {
    auto listed = this->store().ListDeadLetters({.limit = limit});
    EXPECT_EQ(listed.status().code(), StatusCode::kInvalidArgument) << limit;
    EXPECT_EQ(listed.status().field(), "limit") << limit;
  }
  ASSERT_OK(this->store().ListDeadLetters({.limit = 1}));
  ASSERT_OK(this->store().ListDeadLetters({.limit = 1000}));
}

TYPED_TEST(MetadataStoreContractTest, DeleteDeadLettersRemovesListedIdsAndIgnoresUnknownOnes) {
  ASSERT_OK_AND_ASSIGN(auto letters, Rejections::Fill(this->store()));
  ASSERT_OK(this->store().DeleteDeadLetters({letters[1].id, letters[5].id, letters[1].id, letters[5].id + 1000}));
  ASSERT_OK_AND_ASSIGN(auto left, this->store().ListDeadLetters({}));
  EXPECT_EQ(Rejections::Names(left), (std::vector<std::string>{"l0", "l2", "l3", "l4"}));
  ASSERT_OK(this->store().DeleteDeadLetters({}));
  ASSERT_OK(this->store().DeleteDeadLetters({letters[1].id}));  // already gone
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({}));
  EXPECT_EQ(count, 4);

  // The id of a deleted letter (even the newest) is never given out again.
  std::vector<DeadLetter> next = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase, "next")};
  ASSERT_OK(this->store().AppendDeadLetters(next));
  EXPECT_GT(next[0].id, letters[5].id);
}

TYPED_TEST(MetadataStoreContractTest, MarkDeadLettersReplayedCountsEachListedRowOnce) {
  ASSERT_OK_AND_ASSIGN(auto letters, Rejections::Fill(this->store()));
  ASSERT_OK(this->store().MarkDeadLettersReplayed({letters[0].id, letters[2].id, letters[2].id, -7}));
  ASSERT_OK(this->store().MarkDeadLettersReplayed({letters[2].id}));
  ASSERT_OK(this->store().MarkDeadLettersReplayed({}));
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({}));
  ASSERT_EQ(listed.size(), letters.size());
  const std::vector<int> expected = {1, 0, 2, 0, 0, 0};
  for (size_t letter_idx = 0; letter_idx < listed.size(); ++letter_idx) {
    EXPECT_EQ(listed[letter_idx].replay_count, expected[letter_idx]) << listed[letter_idx].event_id;
    letters[letter_idx].replay_count = expected[letter_idx];
    ExpectSameDeadLetter(listed[letter_idx], letters[letter_idx]);  // nothing else changed
  }
}

TYPED_TEST(MetadataStoreContractTest, PurgeRemovesDeadLettersReceivedBeforeTheCutoff) {
  ASSERT_OK(Rejections::Fill(this->store()));
  ASSERT_OK_AND_ASSIGN(int64_t nothing, this->store().PurgeDeadLettersBefore(kReceivedAt));
  EXPECT_EQ(nothing, 0);
  ASSERT_OK_AND_ASSIGN(int64_t purged, this->store().PurgeDeadLettersBefore(kReceivedAt + 20));  // l0, l1
  EXPECT_EQ(purged, 2);
  ASSERT_OK_AND_ASSIGN(auto left, this->store().ListDeadLetters({}));
  EXPECT_EQ(Rejections::Names(left), (std::vector<std::string>{"l2", "l3", "l4", "l5"}));
  ASSERT_OK_AND_ASSIGN(int64_t again, this->store().PurgeDeadLettersBefore(kReceivedAt + 20));
  EXPECT_EQ(again, 0);
  ASSERT_OK_AND_ASSIGN(int64_t rest, this->store().PurgeDeadLettersBefore(kReceivedAt + 1000));
  EXPECT_EQ(rest, 4);
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({}));
  EXPECT_EQ(count, 0);
}

TYPED_TEST(MetadataStoreContractTest, DeadLetterTextRoundTripsByteForByte) {
  // 100 KB of JSON mixing 1-, 2-, 3- and 4-byte characters, escapes and SQL-looking text.
  std::string large = R"({"data":{"items":[)";
  for (int item_idx = 0; large.size() < 100 * 1024; ++item_idx) {
    if (item_idx != 0) large += ',';
    large += R"({"n":)" + std::to_string(item_idx) +
             R"(,"title":"Ведьмак 3 — 🎮 ゲーム ü\"q\" \\ '; DROP TABLE dead_letters; --","e":"\u0000"})";
  }
  large += "]}}";
  ASSERT_GE(large.size(), 100u * 1024);

  DeadLetter unicode = Letter(kReceivedAt, "INVALID_FIELD", "com.platform.store.покупка.v1", "ид-😀");
  unicode.source = "//магазин/checkout";
  unicode.field = "data.сумма";
  unicode.message = "значение «abc» is not a number 👎\nsecond line\ttab";
  unicode.payload = R"({"data":{"сумма":"abc","emoji":"🎉","cjk":"漢字","combining":"é"}})";
  DeadLetter big = Letter(kReceivedAt, "TOO_LARGE", kPurchase, "big");
  big.payload = large;
  big.payload_bytes = static_cast<int64_t>(large.size()) + 7;
  std::vector<DeadLetter> letters = {unicode, big};
  ASSERT_OK(this->store().AppendDeadLetters(letters));

  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({}));
  ASSERT_EQ(listed.size(), 2u);
  ExpectSameDeadLetter(listed[0], letters[0]);
  ExpectSameDeadLetter(listed[1], letters[1]);
  ASSERT_OK_AND_ASSIGN(auto by_type,
                       this->store().ListDeadLetters({.event_type = "com.platform.store.покупка.v1"}));
  ASSERT_EQ(by_type.size(), 1u);
  EXPECT_EQ(by_type[0].id, letters[0].id);
}

TYPED_TEST(MetadataStoreContractTest, ABatchOfAThousandDeadLettersIsOneAppend) {
  std::vector<DeadLetter> letters;
  const std::string payload(2048, 'p');
  for (int letter_idx = 0; letter_idx < 1000; ++letter_idx) {
    DeadLetter letter = Letter(kReceivedAt + letter_idx, "INVALID_FIELD", kPurchase, "b" + std::to_string(letter_idx));
    letter.payload = payload;
    letters.push_back(std::move(letter));
  }
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  for (size_t letter_idx = 1; letter_idx < letters.size(); ++letter_idx) {
    ASSERT_GT(letters[letter_idx].id, letters[letter_idx - 1].id) << letter_idx;
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({.limit = 1000}));
  ASSERT_EQ(listed.size(), letters.size());
  for (size_t letter_idx = 0; letter_idx < letters.size(); ++letter_idx) {
    ASSERT_EQ(listed[letter_idx].id, letters[letter_idx].id);
    ASSERT_EQ(listed[letter_idx].event_id, letters[letter_idx].event_id);  // ids were assigned in vector order
    ASSERT_EQ(listed[letter_idx].received_at_ms, letters[letter_idx].received_at_ms);
  }
}

TYPED_TEST(MetadataStoreContractTest, UnstorableDeadLetterIsInvalidArgumentAndNothingIsStored) {
  struct Case {
    const char* name;
    void (*damage)(DeadLetter&);
    const char* field;
  };
  const Case cases[] = {
      {"invalid UTF-8", [](DeadLetter& l) { l.payload = "{\"x\":\"\xff\xfe\"}"; }, "letters[1].payload"},
      {"truncated UTF-8", [](DeadLetter& l) { l.message = "caf\xc3"; }, "letters[1].message"},
      {"surrogate", [](DeadLetter& l) { l.source = "\xed\xa0\x80"; }, "letters[1].source"},
      {"NUL byte", [](DeadLetter& l) { l.event_type = std::string("a\0b", 3); }, "letters[1].event_type"},
      {"negative size", [](DeadLetter& l) { l.payload_bytes = -1; }, "letters[1].payload_bytes"},
      {"negative replays", [](DeadLetter& l) { l.replay_count = -1; }, "letters[1].replay_count"},
      {"negative time", [](DeadLetter& l) { l.received_at_ms = -1; }, "letters[1].received_at_ms"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    std::vector<DeadLetter> letters = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase, "ok"),
                                       Letter(kReceivedAt, "INVALID_FIELD", kPurchase, "bad")};
    test_case.damage(letters[1]);
    Status status = this->store().AppendDeadLetters(letters);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
    EXPECT_EQ(letters[0].id, 0);  // the vector is untouched
  }
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({}));
  EXPECT_EQ(count, 0);
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentDeadLetterAppendsKeepEveryRow) {
  constexpr int kThreads = 8;
  constexpr int kBatches = 10;
  constexpr int kBatchSize = 15;
  std::latch start(kThreads);
  std::mutex mu;
  std::vector<int64_t> ids;         // GUARDED_BY(mu)
  std::vector<std::string> errors;  // GUARDED_BY(mu)
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      start.arrive_and_wait();
      for (int batch_idx = 0; batch_idx < kBatches; ++batch_idx) {
        std::vector<DeadLetter> batch;
        for (int letter_idx = 0; letter_idx < kBatchSize; ++letter_idx) {
          batch.push_back(Letter(kReceivedAt + thread_idx, "C" + std::to_string(thread_idx), kPurchase,
                                 std::to_string(thread_idx) + "/" + std::to_string(batch_idx) + "/" +
                                     std::to_string(letter_idx)));
        }
        Status status = this->store().AppendDeadLetters(batch);
        std::lock_guard lock(mu);
        if (!status.ok()) {
          errors.push_back(status.ToString());
          continue;
        }
        for (size_t letter_idx = 1; letter_idx < batch.size(); ++letter_idx) {
          if (batch[letter_idx].id <= batch[letter_idx - 1].id) errors.push_back("ids out of order in a batch");
        }
        for (const auto& letter : batch) ids.push_back(letter.id);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(errors.empty()) << errors.front();

  constexpr int64_t kTotal = int64_t{kThreads} * kBatches * kBatchSize;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "an id was given out twice";
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({}));
  EXPECT_EQ(count, kTotal);
  ASSERT_OK_AND_ASSIGN(auto paged, PageThrough(this->store(), {.limit = 1000}));
  EXPECT_EQ(paged, ids);
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    ASSERT_OK_AND_ASSIGN(int64_t per_thread,
                         this->store().CountDeadLetters({.code = "C" + std::to_string(thread_idx)}));
    EXPECT_EQ(per_thread, int64_t{kBatches} * kBatchSize) << thread_idx;
  }
}

TYPED_TEST(MetadataStoreContractTest, DatabaseAtVersion2GainsDeadLettersAndKeepsItsData) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases")));
  // What a database written before dead letters existed looks like.
  ASSERT_OK(TypeParam::Execute(this->store(), kDropVersion4 +
                                                  "DROP TABLE dead_letters; DELETE FROM schema_migrations"
                                                  " WHERE version = 3"));
  ASSERT_OK_AND_ASSIGN(int old_version, this->store().SchemaVersion());
  EXPECT_EQ(old_version, 2);

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  ASSERT_OK(this->store().GetMetricDefinition("purchases"));
  std::vector<DeadLetter> letters = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase)};
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListDeadLetters({}));
  ASSERT_EQ(listed.size(), 1u);
  ExpectSameDeadLetter(listed[0], letters[0]);
}

// ---------------------------------------------------------------------------------------------------------
// Segments

SegmentRecord Segment(const std::string& id, const std::string& name, const std::string& type = "dynamic") {
  return SegmentRecord{
      .id = id,
      .name = name,
      .type = type,
      .definition = {{"name", name},
                     {"type", type},
                     {"rule", {{"performed", {{"event_type", kPurchase}, {"count", {{"gte", 2}}}}}}},
                     {"timezone", "Europe/Berlin"}},
      .version = 1,
      .created_at_ms = kCreatedAt,
      .updated_at_ms = kCreatedAt,
      .created_by = "user-1",
  };
}

void ExpectSameSegment(const SegmentRecord& actual, const SegmentRecord& expected) {
  SCOPED_TRACE("segment " + expected.id);
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.type, expected.type);
  EXPECT_EQ(actual.definition, expected.definition);
  EXPECT_EQ(actual.definition.dump(), expected.definition.dump());  // same text: 2 stays 2, keys keep their form
  EXPECT_EQ(actual.version, expected.version);
  EXPECT_EQ(actual.created_at_ms, expected.created_at_ms);
  EXPECT_EQ(actual.updated_at_ms, expected.updated_at_ms);
  EXPECT_EQ(actual.created_by, expected.created_by);
}

std::vector<std::string> SegmentNames(const std::vector<SegmentRecord>& segments) {
  std::vector<std::string> names;
  for (const auto& segment : segments) names.push_back(segment.name);
  return names;
}

// Every byte value, NUL and 0xFF first, then a CRoaring-like header: the bitmap is opaque bytes.
std::string AwkwardBytes() {
  std::string bytes = std::string("\0\xff\0\0\xff", 5);
  for (int value = 0; value < 256; ++value) bytes += static_cast<char>(value);
  bytes += std::string("\x3a\x30\x00\x00\x01\x00\x00\x00", 8);
  bytes += std::string(3, '\0');
  return bytes;
}

SegmentMaterialization Materialization(const std::string& segment_id, std::string bitmap) {
  return SegmentMaterialization{.segment_id = segment_id,
                                .definition_version = 1,
                                .as_of_ms = kCreatedAt + 1,
                                .refreshed_at_ms = kCreatedAt + 2,
                                .duration_ms = 345,
                                .users_count = 12345,
                                .added = 12345,
                                .removed = 0,
                                .run_id = "run-1",
                                .trigger = "create",
                                .bitmap = std::move(bitmap)};
}

void ExpectSameMaterialization(const SegmentMaterialization& actual, const SegmentMaterialization& expected) {
  SCOPED_TRACE("materialization of " + expected.segment_id);
  EXPECT_EQ(actual.segment_id, expected.segment_id);
  EXPECT_EQ(actual.definition_version, expected.definition_version);
  EXPECT_EQ(actual.as_of_ms, expected.as_of_ms);
  EXPECT_EQ(actual.refreshed_at_ms, expected.refreshed_at_ms);
  EXPECT_EQ(actual.duration_ms, expected.duration_ms);
  EXPECT_EQ(actual.users_count, expected.users_count);
  EXPECT_EQ(actual.added, expected.added);
  EXPECT_EQ(actual.removed, expected.removed);
  EXPECT_EQ(actual.run_id, expected.run_id);
  EXPECT_EQ(actual.trigger, expected.trigger);
  EXPECT_EQ(actual.bitmap.size(), expected.bitmap.size());
  EXPECT_TRUE(actual.bitmap == expected.bitmap);  // not EXPECT_EQ: a megabyte diff helps nobody
}

TYPED_TEST(MetadataStoreContractTest, SegmentReadsBackAndListsByNameInByteOrder) {
  SegmentRecord rich = Segment("0b5c8a9e-1f7e-4c1e-9a43-5d2b7a1c0001", "quiet_buyers");
  rich.definition["description"] = "Ведьмак 3 — 🎮 \"quoted\" \\ '; DROP TABLE segments; --";
  rich.definition["ratio"] = 0.25;
  rich.definition["nested"] = {{"list", {1, -2, 3.5, true, nullptr, "x"}}, {"empty", json::object()}};
  rich.definition["nul"] = std::string("a\0b", 3);  // JSON text escapes it as \u0000
  rich.version = 7;
  rich.updated_at_ms = kCreatedAt + 86400000;
  rich.created_by = "пользователь-1";
  SegmentRecord upload = Segment("0b5c8a9e-1f7e-4c1e-9a43-5d2b7a1c0002", "B uploaded", "static");
  upload.definition = {{"name", "B uploaded"}, {"type", "static"}};
  SegmentRecord accented = Segment("0b5c8a9e-1f7e-4c1e-9a43-5d2b7a1c0003", "é_after_z");
  SegmentRecord lower = Segment("0b5c8a9e-1f7e-4c1e-9a43-5d2b7a1c0004", "a_first", "static");
  for (const auto* record : {&rich, &upload, &accented, &lower}) ASSERT_OK(this->store().CreateSegment(*record));

  ASSERT_OK_AND_ASSIGN(SegmentRecord stored, this->store().GetSegment(rich.id));
  ExpectSameSegment(stored, rich);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListSegments({}));
  EXPECT_EQ(SegmentNames(all), (std::vector<std::string>{"B uploaded", "a_first", "quiet_buyers", "é_after_z"}));
  for (const auto& listed : all) {
    if (listed.id == rich.id) ExpectSameSegment(listed, rich);
  }
  ASSERT_OK_AND_ASSIGN(auto statics, this->store().ListSegments({.type = "static"}));
  EXPECT_EQ(SegmentNames(statics), (std::vector<std::string>{"B uploaded", "a_first"}));
  ASSERT_OK_AND_ASSIGN(auto dynamics, this->store().ListSegments({.type = "dynamic"}));
  EXPECT_EQ(SegmentNames(dynamics), (std::vector<std::string>{"quiet_buyers", "é_after_z"}));
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListSegments({.type = "Static"}));
  EXPECT_TRUE(none.empty());
}

TYPED_TEST(MetadataStoreContractTest, SegmentIdOrNameTakenIsAlreadyExistsAndKeepsTheFirst) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  SegmentRecord same_id = Segment("seg-1", "other_name");
  Status status = this->store().CreateSegment(same_id);
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();
  SegmentRecord same_name = Segment("seg-2", "buyers", "static");
  status = this->store().CreateSegment(same_name);
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();
  EXPECT_NE(status.message().find("buyers"), std::string::npos) << status.ToString();
  // Names are byte-exact: another case is another name.
  ASSERT_OK(this->store().CreateSegment(Segment("seg-3", "Buyers")));

  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListSegments({}));
  EXPECT_EQ(SegmentNames(all), (std::vector<std::string>{"Buyers", "buyers"}));
  ASSERT_OK_AND_ASSIGN(SegmentRecord stored, this->store().GetSegment("seg-1"));
  ExpectSameSegment(stored, Segment("seg-1", "buyers"));
  EXPECT_EQ(this->store().GetSegment("seg-2").status().code(), StatusCode::kNotFound);
}

TYPED_TEST(MetadataStoreContractTest, UnknownSegmentIsNotFound) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  for (const std::string& id : {std::string("seg-2"), std::string("x'; DROP TABLE segments; --"),
                               std::string("a\0b", 3), std::string("\xff\xfe")}) {
    EXPECT_EQ(this->store().GetSegment(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(this->store().DeleteSegment(id).code(), StatusCode::kNotFound);
    EXPECT_EQ(this->store().GetMaterialization(id).status().code(), StatusCode::kNotFound);
  }
  SegmentRecord ghost = Segment("seg-2", "ghost");
  ghost.version = 2;
  EXPECT_EQ(this->store().UpdateSegment(ghost, 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().PutMaterialization(Materialization("seg-2", "x")).code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto materializations, this->store().ListMaterializations());
  EXPECT_TRUE(materializations.empty());
  ASSERT_OK(this->store().GetSegment("seg-1"));
}

TYPED_TEST(MetadataStoreContractTest, InvalidSegmentIsInvalidArgumentAndNothingIsStored) {
  struct Case {
    const char* name;
    void (*damage)(SegmentRecord&);
    const char* field;
  };
  const Case cases[] = {
      {"empty id", [](SegmentRecord& r) { r.id = ""; }, "id"},
      {"long id", [](SegmentRecord& r) { r.id = std::string(65, 'a'); }, "id"},
      {"NUL in id", [](SegmentRecord& r) { r.id = std::string("a\0b", 3); }, "id"},
      {"empty name", [](SegmentRecord& r) { r.name = ""; }, "name"},
      {"129 characters", [](SegmentRecord& r) { r.name = std::string(129, 'n'); }, "name"},
      {"129 two-byte characters",
       [](SegmentRecord& r) {
         r.name.clear();
         for (int char_idx = 0; char_idx < 129; ++char_idx) r.name += "ж";
       },
       "name"},
      {"invalid UTF-8 name", [](SegmentRecord& r) { r.name = "caf\xc3"; }, "name"},
      {"unknown type", [](SegmentRecord& r) { r.type = "Dynamic"; }, "type"},
      {"array definition", [](SegmentRecord& r) { r.definition = json::array({1}); }, "definition"},
      {"null definition", [](SegmentRecord& r) { r.definition = nullptr; }, "definition"},
      {"invalid UTF-8 in definition", [](SegmentRecord& r) { r.definition["x"] = "\xff\xfe"; }, "definition"},
      {"version 0", [](SegmentRecord& r) { r.version = 0; }, "version"},
      {"negative created_at", [](SegmentRecord& r) { r.created_at_ms = -1; }, "created_at_ms"},
      {"negative updated_at", [](SegmentRecord& r) { r.updated_at_ms = -1; }, "updated_at_ms"},
      {"NUL in created_by", [](SegmentRecord& r) { r.created_by = std::string("u\0", 2); }, "created_by"},
  };
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    SegmentRecord created = Segment("seg-2", "fresh");
    test_case.damage(created);
    Status status = this->store().CreateSegment(created);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();

    SegmentRecord updated = Segment("seg-1", "buyers");
    updated.version = 2;
    test_case.damage(updated);
    status = this->store().UpdateSegment(updated, 1);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListSegments({}));
  ASSERT_EQ(all.size(), 1u);
  ExpectSameSegment(all[0], Segment("seg-1", "buyers"));

  // The limits themselves are fine: 128 characters (256 bytes), a 64-byte id.
  SegmentRecord longest = Segment(std::string(64, 'i'), "");
  for (int char_idx = 0; char_idx < 128; ++char_idx) longest.name += "ж";
  ASSERT_OK(this->store().CreateSegment(longest));
  ASSERT_OK_AND_ASSIGN(SegmentRecord stored, this->store().GetSegment(longest.id));
  ExpectSameSegment(stored, longest);
}

TYPED_TEST(MetadataStoreContractTest, SegmentUpdateIsOptimisticAndRenamesOnlyOntoFreeNames) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-2", "churners")));

  SegmentRecord v2 = Segment("seg-1", "big_buyers", "static");
  v2.definition = {{"name", "big_buyers"}, {"type", "static"}, {"description", "v2"}};
  v2.version = 2;
  v2.updated_at_ms = kCreatedAt + 5000;
  ASSERT_OK(this->store().UpdateSegment(v2, 1));
  ASSERT_OK_AND_ASSIGN(SegmentRecord stored, this->store().GetSegment("seg-1"));
  ExpectSameSegment(stored, v2);
  // The old name is free again.
  ASSERT_OK(this->store().CreateSegment(Segment("seg-3", "buyers")));

  SegmentRecord stale = v2;
  stale.definition["description"] = "stale";
  Status status = this->store().UpdateSegment(stale, 1);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  SegmentRecord ahead = v2;
  ahead.version = 4;
  status = this->store().UpdateSegment(ahead, 3);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();

  SegmentRecord onto_taken = v2;
  onto_taken.name = "churners";
  onto_taken.version = 3;
  status = this->store().UpdateSegment(onto_taken, 2);
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();

  ASSERT_OK_AND_ASSIGN(stored, this->store().GetSegment("seg-1"));
  ExpectSameSegment(stored, v2);  // none of the refused updates changed anything
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListSegments({}));
  EXPECT_EQ(SegmentNames(all), (std::vector<std::string>{"big_buyers", "buyers", "churners"}));

  SegmentRecord v3 = v2;  // keeping its own name is no conflict
  v3.version = 3;
  ASSERT_OK(this->store().UpdateSegment(v3, 2));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetSegment("seg-1"));
  EXPECT_EQ(stored.version, 3);
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentSegmentUpdatesOfOneVersionHaveExactlyOneWinner) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "contested")));
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> wins = 0;
  std::atomic<int> conflicts = 0;
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      SegmentRecord record = Segment("seg-1", "contested");
      record.definition["description"] = "by thread " + std::to_string(thread_idx);
      record.version = 2;
      start.arrive_and_wait();
      Status status = this->store().UpdateSegment(record, 1);
      if (status.ok()) ++wins;
      if (status.code() == StatusCode::kFailedPrecondition) ++conflicts;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), kThreads - 1);
  ASSERT_OK_AND_ASSIGN(SegmentRecord stored, this->store().GetSegment("seg-1"));
  EXPECT_EQ(stored.version, 2);
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentSegmentCreatesOfOneNameHaveExactlyOneWinner) {
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> wins = 0;
  std::atomic<int> taken = 0;
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      SegmentRecord record = Segment("seg-" + std::to_string(thread_idx), "race");
      start.arrive_and_wait();
      Status status = this->store().CreateSegment(record);
      if (status.ok()) ++wins;
      if (status.code() == StatusCode::kAlreadyExists) ++taken;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(taken.load(), kThreads - 1);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListSegments({}));
  EXPECT_EQ(all.size(), 1u);
}

TYPED_TEST(MetadataStoreContractTest, MaterializationRoundTripsBinaryBytesAndIsReplaced) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-b", "b")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-a", "a")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-c", "c")));
  EXPECT_EQ(this->store().GetMaterialization("seg-a").status().code(), StatusCode::kNotFound);

  SegmentMaterialization awkward = Materialization("seg-a", AwkwardBytes());
  std::mt19937 random(42);
  std::string large(1 << 20, '\0');  // 1 MiB of noise
  for (char& byte : large) byte = static_cast<char>(random() & 0xff);
  SegmentMaterialization big = Materialization("seg-b", large);
  big.trigger = "schedule";
  big.run_id = "";
  SegmentMaterialization empty = Materialization("seg-c", "");
  empty.users_count = 0;
  empty.added = 0;
  empty.removed = 3;
  empty.trigger = "incremental";
  for (const auto* m : {&awkward, &big, &empty}) ASSERT_OK(this->store().PutMaterialization(*m));

  ASSERT_OK_AND_ASSIGN(SegmentMaterialization stored, this->store().GetMaterialization("seg-a"));
  ExpectSameMaterialization(stored, awkward);
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetMaterialization("seg-b"));
  ExpectSameMaterialization(stored, big);
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetMaterialization("seg-c"));
  ExpectSameMaterialization(stored, empty);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListMaterializations());
  ASSERT_EQ(all.size(), 3u);
  ExpectSameMaterialization(all[0], awkward);  // by segment_id
  ExpectSameMaterialization(all[1], big);
  ExpectSameMaterialization(all[2], empty);

  // An upsert replaces every field.
  SegmentMaterialization next = Materialization("seg-a", std::string("\xff\x00\xff", 3));
  next.definition_version = 2;
  next.as_of_ms = kCreatedAt + 100;
  next.refreshed_at_ms = kCreatedAt + 200;
  next.duration_ms = 0;
  next.users_count = 2;
  next.added = 1;
  next.removed = 12344;
  next.run_id = "run-2";
  next.trigger = "manual";
  ASSERT_OK(this->store().PutMaterialization(next));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetMaterialization("seg-a"));
  ExpectSameMaterialization(stored, next);
  ASSERT_OK_AND_ASSIGN(all, this->store().ListMaterializations());
  EXPECT_EQ(all.size(), 3u);

  // Updating the segment keeps its materialization (it records the version it was computed from).
  SegmentRecord v2 = Segment("seg-a", "a");
  v2.version = 2;
  ASSERT_OK(this->store().UpdateSegment(v2, 1));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetMaterialization("seg-a"));
  ExpectSameMaterialization(stored, next);
}

TYPED_TEST(MetadataStoreContractTest, InvalidMaterializationIsInvalidArgument) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  struct Case {
    const char* name;
    void (*damage)(SegmentMaterialization&);
    const char* field;
  };
  const Case cases[] = {
      {"unknown trigger", [](SegmentMaterialization& m) { m.trigger = "cron"; }, "trigger"},
      {"empty trigger", [](SegmentMaterialization& m) { m.trigger = ""; }, "trigger"},
      {"negative users", [](SegmentMaterialization& m) { m.users_count = -1; }, "users_count"},
      {"negative added", [](SegmentMaterialization& m) { m.added = -1; }, "added"},
      {"negative removed", [](SegmentMaterialization& m) { m.removed = -1; }, "removed"},
      {"negative duration", [](SegmentMaterialization& m) { m.duration_ms = -1; }, "duration_ms"},
      {"negative as_of", [](SegmentMaterialization& m) { m.as_of_ms = -1; }, "as_of_ms"},
      {"negative version", [](SegmentMaterialization& m) { m.definition_version = -1; }, "definition_version"},
      {"NUL in run id", [](SegmentMaterialization& m) { m.run_id = std::string("r\0", 2); }, "run_id"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    SegmentMaterialization m = Materialization("seg-1", "bits");
    test_case.damage(m);
    Status status = this->store().PutMaterialization(m);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
  }
  EXPECT_EQ(this->store().GetMaterialization("seg-1").status().code(), StatusCode::kNotFound);
}

TYPED_TEST(MetadataStoreContractTest, DeletingASegmentDeletesItsMaterialization) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-2", "churners")));
  ASSERT_OK(this->store().PutMaterialization(Materialization("seg-1", AwkwardBytes())));
  ASSERT_OK(this->store().PutMaterialization(Materialization("seg-2", "kept")));

  ASSERT_OK(this->store().DeleteSegment("seg-1"));
  EXPECT_EQ(this->store().GetSegment("seg-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetMaterialization("seg-1").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListMaterializations());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].segment_id, "seg-2");
  EXPECT_EQ(this->store().DeleteSegment("seg-1").code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().PutMaterialization(Materialization("seg-1", "late")).code(), StatusCode::kNotFound);

  // The id and name are free again, and nothing of the deleted segment clings to the new one.
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  EXPECT_EQ(this->store().GetMaterialization("seg-1").status().code(), StatusCode::kNotFound);
}

TYPED_TEST(MetadataStoreContractTest, UnreadableStoredSegmentOrRunIsCorruptionNamingIt) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-broken", "broken")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-array", "array")));
  PipelineRun run{.id = "run-broken", .kind = "segment_refresh", .status = "queued", .created_at_ms = kCreatedAt};
  ASSERT_OK(this->store().CreatePipelineRun(run));
  ASSERT_OK(TypeParam::Execute(this->store(),
                               "UPDATE segments SET definition = '{\"name\": ' WHERE id = 'seg-broken';"
                               "UPDATE segments SET definition = '[1, 2]' WHERE id = 'seg-array';"
                               "UPDATE pipeline_runs SET result = 'nope' WHERE id = 'run-broken'"));
  for (const char* id : {"seg-broken", "seg-array"}) {
    auto got = this->store().GetSegment(id);
    EXPECT_EQ(got.status().code(), StatusCode::kCorruption) << id;
    EXPECT_NE(got.status().message().find(id), std::string::npos) << got.status().ToString();
  }
  EXPECT_EQ(this->store().ListSegments({}).status().code(), StatusCode::kCorruption);
  auto got_run = this->store().GetPipelineRun("run-broken");
  EXPECT_EQ(got_run.status().code(), StatusCode::kCorruption);
  EXPECT_NE(got_run.status().message().find("run-broken"), std::string::npos) << got_run.status().ToString();
  EXPECT_EQ(this->store().ListUnfinishedPipelineRuns().status().code(), StatusCode::kCorruption);
}

// ---------------------------------------------------------------------------------------------------------
// Member index

// Every entry of the member index, read page by page.
Result<std::vector<std::pair<uint32_t, std::string>>> WholeMemberIndex(MetadataStore& store, int page_size) {
  std::vector<std::pair<uint32_t, std::string>> entries;
  int64_t after = -1;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(auto page, store.ListMemberIndex(after, page_size));
    if (page.empty()) return entries;
    if (page.size() > static_cast<size_t>(page_size)) return Status::Internal("page larger than the limit");
    after = page.back().first;
    entries.insert(entries.end(), page.begin(), page.end());
  }
}

// "u_" + a zero-padded number: pseudonym-like and all the same length.
std::string User(int number) {
  std::string digits = std::to_string(number);
  return "u_" + std::string(digits.size() < 10 ? 10 - digits.size() : 0, '0') + digits;
}

TYPED_TEST(MetadataStoreContractTest, MemberIndexesAreDenseStableAndIdempotent) {
  ASSERT_OK_AND_ASSIGN(auto none, this->store().MemberIndexes({}));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto first, this->store().MemberIndexes({"u_a", "u_b", "u_c"}));
  EXPECT_EQ(first, (std::vector<uint32_t>{0, 1, 2}));
  ASSERT_OK_AND_ASSIGN(auto again, this->store().MemberIndexes({"u_c", "u_a", "u_b"}));
  EXPECT_EQ(again, (std::vector<uint32_t>{2, 0, 1}));
  // New users are numbered on in the order of their first occurrence; known ones keep theirs.
  ASSERT_OK_AND_ASSIGN(auto mixed, this->store().MemberIndexes({"u_e", "u_b", "u_d", "ü 'quoted' \"x\" \\ {,}"}));
  EXPECT_EQ(mixed, (std::vector<uint32_t>{3, 1, 4, 5}));

  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 2));
  const std::vector<std::pair<uint32_t, std::string>> expected = {
      {0, "u_a"}, {1, "u_b"}, {2, "u_c"}, {3, "u_e"}, {4, "u_d"}, {5, "ü 'quoted' \"x\" \\ {,}"}};
  EXPECT_EQ(entries, expected);
  ASSERT_OK_AND_ASSIGN(auto tail, this->store().ListMemberIndex(3, 100000));
  EXPECT_EQ(tail, (std::vector<std::pair<uint32_t, std::string>>(expected.begin() + 4, expected.end())));
  ASSERT_OK_AND_ASSIGN(auto past_end, this->store().ListMemberIndex(5, 10));
  EXPECT_TRUE(past_end.empty());

  // Another store on the same database sees the same index.
  ASSERT_OK_AND_ASSIGN(auto second, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(auto from_second, second->MemberIndexes({"u_d", "u_f"}));
  EXPECT_EQ(from_second, (std::vector<uint32_t>{4, 6}));
}

TYPED_TEST(MetadataStoreContractTest, DuplicateUsersInOneCallGetOneIndex) {
  ASSERT_OK_AND_ASSIGN(auto indexes, this->store().MemberIndexes({"u_x", "u_y", "u_x", "u_x", "u_z", "u_y"}));
  EXPECT_EQ(indexes, (std::vector<uint32_t>{0, 1, 0, 0, 2, 1}));
  ASSERT_OK_AND_ASSIGN(auto known_twice, this->store().MemberIndexes({"u_z", "u_w", "u_z", "u_w"}));
  EXPECT_EQ(known_twice, (std::vector<uint32_t>{2, 3, 2, 3}));
  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 100));
  EXPECT_EQ(entries.size(), 4u);
}

TYPED_TEST(MetadataStoreContractTest, InvalidMemberIsInvalidArgumentAndNothingIsStored) {
  struct Case {
    const char* name;
    std::string user;
  };
  const Case cases[] = {
      {"empty", ""},
      {"1025 bytes", std::string(1025, 'u')},
      {"NUL byte", std::string("u_\0x", 4)},
      {"invalid UTF-8", "u_\xff"},
      {"truncated UTF-8", "u_caf\xc3"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    auto indexes = this->store().MemberIndexes({"u_ok", "u_fine", test_case.user, "u_later"});
    EXPECT_EQ(indexes.status().code(), StatusCode::kInvalidArgument) << indexes.status().ToString();
    EXPECT_EQ(indexes.status().field(), "users[2]") << indexes.status().ToString();
    auto forgotten = this->store().ForgetMember(test_case.user);
    EXPECT_EQ(forgotten.status().code(), StatusCode::kInvalidArgument) << forgotten.status().ToString();
    EXPECT_EQ(forgotten.status().field(), "user") << forgotten.status().ToString();
  }
  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 100));
  EXPECT_TRUE(entries.empty());

  const std::string longest(1024, 'u');  // the limit itself is fine
  ASSERT_OK_AND_ASSIGN(auto indexes, this->store().MemberIndexes({longest}));
  EXPECT_EQ(indexes, std::vector<uint32_t>{0});
  ASSERT_OK_AND_ASSIGN(entries, WholeMemberIndex(this->store(), 100));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].second, longest);
}

TYPED_TEST(MetadataStoreContractTest, MemberIndexPageLimitOutside1To100000IsInvalidArgument) {
  for (int limit : {0, -1, 100001}) {
    auto listed = this->store().ListMemberIndex(-1, limit);
    EXPECT_EQ(listed.status().code(), StatusCode::kInvalidArgument) << limit;
    EXPECT_EQ(listed.status().field(), "limit") << limit;
  }
  ASSERT_OK(this->store().ListMemberIndex(-1, 1));
  ASSERT_OK(this->store().ListMemberIndex(-1, 100000));
}

TYPED_TEST(MetadataStoreContractTest, ForgottenMemberLosesItsPseudonymAndItsIndexIsNeverReused) {
  ASSERT_OK_AND_ASSIGN(auto indexes, this->store().MemberIndexes({"u_a", "u_b", "u_c"}));
  ASSERT_EQ(indexes, (std::vector<uint32_t>{0, 1, 2}));

  ASSERT_OK_AND_ASSIGN(uint32_t forgotten_b, this->store().ForgetMember("u_b"));
  EXPECT_EQ(forgotten_b, 1u);
  ASSERT_OK_AND_ASSIGN(uint32_t forgotten_c, this->store().ForgetMember("u_c"));  // the highest index
  EXPECT_EQ(forgotten_c, 2u);
  EXPECT_EQ(this->store().ForgetMember("u_b").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().ForgetMember("u_never").status().code(), StatusCode::kNotFound);

  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 100));
  EXPECT_EQ(entries, (std::vector<std::pair<uint32_t, std::string>>{{0, "u_a"}}));

  // Seen again, a forgotten user is a new member; new users never get a forgotten index.
  ASSERT_OK_AND_ASSIGN(auto after, this->store().MemberIndexes({"u_d", "u_b", "u_a"}));
  EXPECT_EQ(after, (std::vector<uint32_t>{3, 4, 0}));
  ASSERT_OK_AND_ASSIGN(entries, WholeMemberIndex(this->store(), 100));
  EXPECT_EQ(entries, (std::vector<std::pair<uint32_t, std::string>>{{0, "u_a"}, {3, "u_d"}, {4, "u_b"}}));
  ASSERT_OK_AND_ASSIGN(uint32_t forgotten_again, this->store().ForgetMember("u_b"));
  EXPECT_EQ(forgotten_again, 4u);

  // Reopened, the store still never reuses them.
  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(auto reopened, this->store().MemberIndexes({"u_e"}));
  EXPECT_EQ(reopened, std::vector<uint32_t>{5});
}

TYPED_TEST(MetadataStoreContractTest, HundredThousandNewUsersInOneCall) {
  constexpr int kUsers = 100000;
  std::vector<std::string> users;
  users.reserve(kUsers);
  for (int user_idx = 0; user_idx < kUsers; ++user_idx) users.push_back(User(user_idx));
  ASSERT_OK(this->store().MemberIndexes({User(kUsers - 1)}));  // one known user among the new ones

  const auto started = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(auto indexes, this->store().MemberIndexes(users));
  const auto inserted = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(auto again, this->store().MemberIndexes(users));
  const auto looked_up = std::chrono::steady_clock::now();
  const auto ms = [](auto duration) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
  };
  std::printf("[   TIME   ] %s: MemberIndexes of %d new users: %lld ms; again, all known: %lld ms\n",
              TypeParam::kTestName, kUsers - 1, static_cast<long long>(ms(inserted - started)),
              static_cast<long long>(ms(looked_up - inserted)));
  this->RecordProperty("new_users_ms", std::to_string(ms(inserted - started)));
  this->RecordProperty("known_users_ms", std::to_string(ms(looked_up - inserted)));

  ASSERT_EQ(indexes.size(), users.size());
  EXPECT_EQ(indexes.back(), 0u);
  for (int user_idx = 0; user_idx + 1 < kUsers; ++user_idx) {
    ASSERT_EQ(indexes[user_idx], static_cast<uint32_t>(user_idx + 1)) << user_idx;
  }
  EXPECT_EQ(again, indexes);

  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 30000));
  ASSERT_EQ(entries.size(), users.size());
  for (size_t entry_idx = 0; entry_idx < entries.size(); ++entry_idx) {
    ASSERT_EQ(entries[entry_idx].first, entry_idx);
    ASSERT_EQ(entries[entry_idx].second, entry_idx == 0 ? User(kUsers - 1) : User(static_cast<int>(entry_idx) - 1));
  }
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentMemberIndexCallsAgree) {
  // Four threads on two stores (two service instances of one database), each with 3,000 users of a pool of
  // 6,000 in its own order, in batches, so their new users overlap and race.
  constexpr int kThreads = 4;
  constexpr int kPool = 6000;
  constexpr int kPerThread = 3000;
  constexpr int kBatch = 500;
  ASSERT_OK_AND_ASSIGN(auto second, this->backend_.Open());
  std::latch start(kThreads);
  std::mutex mu;
  std::map<std::string, uint32_t> seen;  // GUARDED_BY(mu)
  std::vector<std::string> errors;       // GUARDED_BY(mu)
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      MetadataStore& store = thread_idx % 2 == 0 ? this->store() : *second;
      std::vector<std::string> mine;
      for (int user_idx = 0; user_idx < kPerThread; ++user_idx) {
        mine.push_back(User((user_idx + thread_idx * kPerThread / 2) % kPool));
      }
      std::shuffle(mine.begin(), mine.end(), std::mt19937(thread_idx));
      start.arrive_and_wait();
      for (size_t first = 0; first < mine.size(); first += kBatch) {
        std::vector<std::string> batch(mine.begin() + first, mine.begin() + first + kBatch);
        batch.push_back(batch.front());  // a duplicate in every call
        auto indexes = store.MemberIndexes(batch);
        std::lock_guard lock(mu);
        if (!indexes.ok()) {
          errors.push_back(indexes.status().ToString());
          continue;
        }
        for (size_t user_idx = 0; user_idx < batch.size(); ++user_idx) {
          auto [it, inserted] = seen.emplace(batch[user_idx], (*indexes)[user_idx]);
          if (!inserted && it->second != (*indexes)[user_idx]) {
            errors.push_back(batch[user_idx] + " got " + std::to_string(it->second) + " and " +
                             std::to_string((*indexes)[user_idx]));
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(errors.empty()) << errors.front();

  ASSERT_EQ(seen.size(), static_cast<size_t>(kPool));
  std::vector<uint32_t> all_indexes;
  for (const auto& [user, index] : seen) all_indexes.push_back(index);
  std::sort(all_indexes.begin(), all_indexes.end());
  for (size_t index_idx = 0; index_idx < all_indexes.size(); ++index_idx) {
    ASSERT_EQ(all_indexes[index_idx], index_idx) << "the index is not dense, or one index went to two users";
  }
  ASSERT_OK_AND_ASSIGN(auto entries, WholeMemberIndex(this->store(), 100000));
  ASSERT_EQ(entries.size(), seen.size());
  for (const auto& [index, user] : entries) EXPECT_EQ(seen[user], index) << user;
}

// ---------------------------------------------------------------------------------------------------------
// Report definitions

ReportDefinitionRecord ReportDefinition(const std::string& id, const std::string& name, bool builtin = false) {
  return ReportDefinitionRecord{
      .id = id,
      .name = name,
      .definition = {{"name", name},
                     {"metrics", json::array({"dau", "net_revenue"})},
                     {"period", {{"last_days", 7}}},
                     {"format", "csv"}},
      .version = 1,
      .builtin = builtin,
      .created_at_ms = kCreatedAt,
      .updated_at_ms = kCreatedAt,
      .created_by = "user-1",
  };
}

void ExpectSameReportDefinition(const ReportDefinitionRecord& actual, const ReportDefinitionRecord& expected) {
  SCOPED_TRACE("report definition " + expected.id);
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.name, expected.name);
  EXPECT_EQ(actual.definition, expected.definition);
  EXPECT_EQ(actual.definition.dump(), expected.definition.dump());  // same text: 7 stays 7
  EXPECT_EQ(actual.version, expected.version);
  EXPECT_EQ(actual.builtin, expected.builtin);
  EXPECT_EQ(actual.created_at_ms, expected.created_at_ms);
  EXPECT_EQ(actual.updated_at_ms, expected.updated_at_ms);
  EXPECT_EQ(actual.created_by, expected.created_by);
}

std::vector<std::string> ReportNames(const std::vector<ReportDefinitionRecord>& records) {
  std::vector<std::string> names;
  for (const auto& record : records) names.push_back(record.name);
  return names;
}

TYPED_TEST(MetadataStoreContractTest, ReportDefinitionReadsBackAndListsByNameInByteOrder) {
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListReportDefinitions());
  EXPECT_TRUE(none.empty());
  ReportDefinitionRecord rich = ReportDefinition("5f0c1d2e-0000-4000-8000-000000000001", "weekly_revenue", true);
  rich.definition["description"] = "Ведьмак 3 — 🎮 \"quoted\" \\ '; DROP TABLE report_definitions; --";
  rich.definition["ratio"] = 0.25;
  rich.definition["nul"] = std::string("a\0b", 3);  // JSON text escapes it as \u0000
  rich.version = 4;
  rich.updated_at_ms = kCreatedAt + 86400000;
  rich.created_by = "пользователь-1";
  ReportDefinitionRecord upper = ReportDefinition("5f0c1d2e-0000-4000-8000-000000000002", "B daily");
  ReportDefinitionRecord accented = ReportDefinition("5f0c1d2e-0000-4000-8000-000000000003", "é_after_z");
  ReportDefinitionRecord lower = ReportDefinition("5f0c1d2e-0000-4000-8000-000000000004", "a_first", true);
  for (const auto* record : {&rich, &upper, &accented, &lower}) {
    ASSERT_OK(this->store().CreateReportDefinition(*record));
  }

  ASSERT_OK_AND_ASSIGN(ReportDefinitionRecord stored, this->store().GetReportDefinition(rich.id));
  ExpectSameReportDefinition(stored, rich);
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetReportDefinition(upper.id));
  ExpectSameReportDefinition(stored, upper);  // builtin false round trips too
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(ReportNames(all), (std::vector<std::string>{"B daily", "a_first", "weekly_revenue", "é_after_z"}));
  for (const auto& listed : all) {
    for (const auto* record : {&rich, &upper, &accented, &lower}) {
      if (listed.id == record->id) ExpectSameReportDefinition(listed, *record);
    }
  }
}

TYPED_TEST(MetadataStoreContractTest, ReportDefinitionIdOrNameTakenIsAlreadyExistsAndKeepsTheFirst) {
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  Status status = this->store().CreateReportDefinition(ReportDefinition("rep-1", "other_name"));
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();
  EXPECT_NE(status.message().find("rep-1"), std::string::npos) << status.ToString();
  status = this->store().CreateReportDefinition(ReportDefinition("rep-2", "weekly", true));
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();
  EXPECT_NE(status.message().find("weekly"), std::string::npos) << status.ToString();
  // Names are byte-exact: another case is another name. A segment of the same name is no conflict.
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-3", "Weekly")));
  ASSERT_OK(this->store().CreateSegment(Segment("rep-1", "weekly")));

  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(ReportNames(all), (std::vector<std::string>{"Weekly", "weekly"}));
  ASSERT_OK_AND_ASSIGN(ReportDefinitionRecord stored, this->store().GetReportDefinition("rep-1"));
  ExpectSameReportDefinition(stored, ReportDefinition("rep-1", "weekly"));
  EXPECT_EQ(this->store().GetReportDefinition("rep-2").status().code(), StatusCode::kNotFound);
}

TYPED_TEST(MetadataStoreContractTest, UnknownReportDefinitionIsNotFound) {
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  for (const std::string& id : {std::string("rep-2"), std::string("x'; DROP TABLE report_definitions; --"),
                               std::string("a\0b", 3), std::string("\xff\xfe")}) {
    EXPECT_EQ(this->store().GetReportDefinition(id).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(this->store().DeleteReportDefinition(id).code(), StatusCode::kNotFound);
  }
  ReportDefinitionRecord ghost = ReportDefinition("rep-2", "ghost");
  ghost.version = 2;
  EXPECT_EQ(this->store().UpdateReportDefinition(ghost, 1).code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(ReportNames(all), std::vector<std::string>{"weekly"});
}

TYPED_TEST(MetadataStoreContractTest, InvalidReportDefinitionIsInvalidArgumentAndNothingIsStored) {
  struct Case {
    const char* name;
    void (*damage)(ReportDefinitionRecord&);
    const char* field;
  };
  const Case cases[] = {
      {"empty id", [](ReportDefinitionRecord& r) { r.id = ""; }, "id"},
      {"long id", [](ReportDefinitionRecord& r) { r.id = std::string(65, 'a'); }, "id"},
      {"NUL in id", [](ReportDefinitionRecord& r) { r.id = std::string("a\0b", 3); }, "id"},
      {"empty name", [](ReportDefinitionRecord& r) { r.name = ""; }, "name"},
      {"129 characters", [](ReportDefinitionRecord& r) { r.name = std::string(129, 'n'); }, "name"},
      {"129 two-byte characters",
       [](ReportDefinitionRecord& r) {
         r.name.clear();
         for (int char_idx = 0; char_idx < 129; ++char_idx) r.name += "ж";
       },
       "name"},
      {"invalid UTF-8 name", [](ReportDefinitionRecord& r) { r.name = "caf\xc3"; }, "name"},
      {"array definition", [](ReportDefinitionRecord& r) { r.definition = json::array({1}); }, "definition"},
      {"null definition", [](ReportDefinitionRecord& r) { r.definition = nullptr; }, "definition"},
      {"invalid UTF-8 in definition", [](ReportDefinitionRecord& r) { r.definition["x"] = "\xff\xfe"; },
       "definition"},
      {"version 0", [](ReportDefinitionRecord& r) { r.version = 0; }, "version"},
      {"negative created_at", [](ReportDefinitionRecord& r) { r.created_at_ms = -1; }, "created_at_ms"},
      {"negative updated_at", [](ReportDefinitionRecord& r) { r.updated_at_ms = -1; }, "updated_at_ms"},
      {"NUL in created_by", [](ReportDefinitionRecord& r) { r.created_by = std::string("u\0", 2); }, "created_by"},
  };
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    ReportDefinitionRecord created = ReportDefinition("rep-2", "fresh");
    test_case.damage(created);
    Status status = this->store().CreateReportDefinition(created);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();

    ReportDefinitionRecord updated = ReportDefinition("rep-1", "weekly");
    updated.version = 2;
    test_case.damage(updated);
    status = this->store().UpdateReportDefinition(updated, 1);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  ASSERT_EQ(all.size(), 1u);
  ExpectSameReportDefinition(all[0], ReportDefinition("rep-1", "weekly"));

  // The limits themselves are fine: 128 characters (256 bytes), a 64-byte id.
  ReportDefinitionRecord longest = ReportDefinition(std::string(64, 'i'), "");
  for (int char_idx = 0; char_idx < 128; ++char_idx) longest.name += "ж";
  ASSERT_OK(this->store().CreateReportDefinition(longest));
  ASSERT_OK_AND_ASSIGN(ReportDefinitionRecord stored, this->store().GetReportDefinition(longest.id));
  ExpectSameReportDefinition(stored, longest);
}

TYPED_TEST(MetadataStoreContractTest, ReportDefinitionUpdateIsOptimisticAndRenamesOnlyOntoFreeNames) {
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly", true)));
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-2", "monthly")));

  ReportDefinitionRecord v2 = ReportDefinition("rep-1", "weekly_v2");
  v2.definition["format"] = "xlsx";
  v2.builtin = false;  // every field is replaced, the flag too
  v2.version = 2;
  v2.updated_at_ms = kCreatedAt + 5000;
  ASSERT_OK(this->store().UpdateReportDefinition(v2, 1));
  ASSERT_OK_AND_ASSIGN(ReportDefinitionRecord stored, this->store().GetReportDefinition("rep-1"));
  ExpectSameReportDefinition(stored, v2);
  // The old name is free again.
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-3", "weekly")));

  ReportDefinitionRecord stale = v2;
  stale.definition["format"] = "stale";
  Status status = this->store().UpdateReportDefinition(stale, 1);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
  ReportDefinitionRecord ahead = v2;
  ahead.version = 4;
  status = this->store().UpdateReportDefinition(ahead, 3);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();

  ReportDefinitionRecord onto_taken = v2;
  onto_taken.name = "monthly";
  onto_taken.version = 3;
  status = this->store().UpdateReportDefinition(onto_taken, 2);
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();

  ASSERT_OK_AND_ASSIGN(stored, this->store().GetReportDefinition("rep-1"));
  ExpectSameReportDefinition(stored, v2);  // none of the refused updates changed anything
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(ReportNames(all), (std::vector<std::string>{"monthly", "weekly", "weekly_v2"}));

  ReportDefinitionRecord v3 = v2;  // keeping its own name is no conflict
  v3.version = 3;
  v3.builtin = true;
  ASSERT_OK(this->store().UpdateReportDefinition(v3, 2));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetReportDefinition("rep-1"));
  ExpectSameReportDefinition(stored, v3);
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentReportDefinitionCreatesOfOneNameHaveExactlyOneWinner) {
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> wins = 0;
  std::atomic<int> taken = 0;
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      const ReportDefinitionRecord record = ReportDefinition("rep-" + std::to_string(thread_idx), "race");
      start.arrive_and_wait();
      Status status = this->store().CreateReportDefinition(record);
      if (status.ok()) ++wins;
      if (status.code() == StatusCode::kAlreadyExists) ++taken;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(taken.load(), kThreads - 1);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(all.size(), 1u);
}

TYPED_TEST(MetadataStoreContractTest, DeletedReportDefinitionFreesItsIdAndNameAndKeepsItsRuns) {
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-2", "monthly")));
  PipelineRun run{.id = "run-1", .kind = "report", .target = "rep-1", .status = "queued", .created_at_ms = kCreatedAt};
  ASSERT_OK(this->store().CreatePipelineRun(run));

  ASSERT_OK(this->store().DeleteReportDefinition("rep-1"));
  EXPECT_EQ(this->store().GetReportDefinition("rep-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().DeleteReportDefinition("rep-1").code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListReportDefinitions());
  EXPECT_EQ(ReportNames(all), std::vector<std::string>{"monthly"});
  ASSERT_OK_AND_ASSIGN(PipelineRun kept, this->store().GetPipelineRun("run-1"));
  EXPECT_EQ(kept.target, "rep-1");
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly", true)));
  ASSERT_OK_AND_ASSIGN(ReportDefinitionRecord stored, this->store().GetReportDefinition("rep-1"));
  ExpectSameReportDefinition(stored, ReportDefinition("rep-1", "weekly", true));
}

TYPED_TEST(MetadataStoreContractTest, UnreadableStoredReportDefinitionIsCorruptionNamingIt) {
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-broken", "broken")));
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-array", "array")));
  ASSERT_OK(TypeParam::Execute(this->store(),
                               "UPDATE report_definitions SET definition = '{\"name\": ' WHERE id = 'rep-broken';"
                               "UPDATE report_definitions SET definition = '[1, 2]' WHERE id = 'rep-array'"));
  for (const char* id : {"rep-broken", "rep-array"}) {
    auto got = this->store().GetReportDefinition(id);
    EXPECT_EQ(got.status().code(), StatusCode::kCorruption) << id;
    EXPECT_NE(got.status().message().find(id), std::string::npos) << got.status().ToString();
  }
  EXPECT_EQ(this->store().ListReportDefinitions().status().code(), StatusCode::kCorruption);
}

// ---------------------------------------------------------------------------------------------------------
// Pipeline runs

PipelineRun Run(const std::string& id, int64_t created_at_ms, const std::string& status = "queued",
                const std::string& kind = "segment_refresh", const std::string& target = "seg-1") {
  PipelineRun run{.id = id,
                  .kind = kind,
                  .target = target,
                  .status = status,
                  .parameters = {{"as_of", "2024-03-30T23:59:59Z"}},
                  .result = nullptr,
                  .error = "",
                  .requested_by = "user-1",
                  .created_at_ms = created_at_ms};
  if (status != "queued") run.started_at_ms = created_at_ms + 10;
  if (status == "completed" || status == "failed" || status == "cancelled") run.finished_at_ms = created_at_ms + 100;
  if (status == "running") run.progress = 0.25;
  if (status == "completed") {
    run.result = {{"users_count", 3}, {"added", 3}, {"removed", 0}};
    run.progress = 1;
  }
  if (status == "failed") run.error = "the rule references an unknown segment";
  if (status == "cancelled") run.error = "cancelled by user-2";
  return run;
}

void ExpectSameRun(const PipelineRun& actual, const PipelineRun& expected) {
  SCOPED_TRACE("run " + expected.id);
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.kind, expected.kind);
  EXPECT_EQ(actual.target, expected.target);
  EXPECT_EQ(actual.status, expected.status);
  EXPECT_EQ(actual.progress, expected.progress);  // exactly: a double reads back bit for bit
  EXPECT_EQ(actual.parameters, expected.parameters);
  EXPECT_EQ(actual.parameters.dump(), expected.parameters.dump());
  EXPECT_EQ(actual.result, expected.result);
  EXPECT_EQ(actual.result.dump(), expected.result.dump());
  EXPECT_EQ(actual.error, expected.error);
  EXPECT_EQ(actual.requested_by, expected.requested_by);
  EXPECT_EQ(actual.created_at_ms, expected.created_at_ms);
  EXPECT_EQ(actual.started_at_ms, expected.started_at_ms);
  EXPECT_EQ(actual.finished_at_ms, expected.finished_at_ms);
}

std::vector<std::string> RunIds(const std::vector<PipelineRun>& runs) {
  std::vector<std::string> ids;
  for (const auto& run : runs) ids.push_back(run.id);
  return ids;
}

// The ids of every run matching `filter`, read page by page (filter.limit per page).
Result<std::vector<std::string>> PageThroughRuns(MetadataStore& store, PipelineRunFilter filter) {
  std::vector<std::string> ids;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(std::vector<PipelineRun> page, store.ListPipelineRuns(filter));
    if (page.empty()) return ids;
    if (page.size() > static_cast<size_t>(filter.limit)) return Status::Internal("page larger than the limit");
    for (const auto& run : page) ids.push_back(run.id);
    filter.before_id = page.back().id;
  }
}

TYPED_TEST(MetadataStoreContractTest, PipelineRunReadsBackAndIsReplacedByUpdate) {
  PipelineRun run = Run("7d1e2f30-0000-4000-8000-000000000001", kCreatedAt);
  run.parameters = {{"as_of", "2024-03-30T23:59:59Z"}, {"note", "ü \"q\" \\ '; --"}, {"ratio", 0.5}};
  run.requested_by = "пользователь";
  ASSERT_OK(this->store().CreatePipelineRun(run));
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun(run.id));
  ExpectSameRun(stored, run);

  PipelineRun running = run;
  running.status = "running";
  running.started_at_ms = kCreatedAt + 5;
  ASSERT_OK(this->store().UpdatePipelineRun(running));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetPipelineRun(run.id));
  ExpectSameRun(stored, running);

  PipelineRun failed = running;
  failed.status = "failed";
  failed.finished_at_ms = kCreatedAt + 50;
  failed.error = "значение\nsecond line";
  failed.result = {{"partial", json::array({1, 2})}};
  failed.parameters = nullptr;
  ASSERT_OK(this->store().UpdatePipelineRun(failed));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetPipelineRun(run.id));
  ExpectSameRun(stored, failed);
}

TYPED_TEST(MetadataStoreContractTest, PipelineRunErrorsAreAlreadyExistsAndNotFound) {
  const PipelineRun run = Run("run-1", kCreatedAt);
  ASSERT_OK(this->store().CreatePipelineRun(run));
  PipelineRun again = Run("run-1", kCreatedAt + 1, "running");
  EXPECT_EQ(this->store().CreatePipelineRun(again).code(), StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun("run-1"));
  ExpectSameRun(stored, run);

  EXPECT_EQ(this->store().UpdatePipelineRun(Run("run-2", kCreatedAt)).code(), StatusCode::kNotFound);
  for (const std::string& id : {std::string("run-2"), std::string("r\0", 2), std::string("\xc3")}) {
    EXPECT_EQ(this->store().GetPipelineRun(id).status().code(), StatusCode::kNotFound);
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListPipelineRuns({}));
  EXPECT_EQ(RunIds(all), std::vector<std::string>{"run-1"});
}

TYPED_TEST(MetadataStoreContractTest, InvalidPipelineRunIsInvalidArgumentAndNothingIsStored) {
  struct Case {
    const char* name;
    void (*damage)(PipelineRun&);
    const char* field;
  };
  const Case cases[] = {
      {"empty id", [](PipelineRun& r) { r.id = ""; }, "id"},
      {"long id", [](PipelineRun& r) { r.id = std::string(65, 'r'); }, "id"},
      {"empty kind", [](PipelineRun& r) { r.kind = ""; }, "kind"},
      {"unknown status", [](PipelineRun& r) { r.status = "done"; }, "status"},
      {"NUL in target", [](PipelineRun& r) { r.target = std::string("s\0", 2); }, "target"},
      {"invalid UTF-8 error", [](PipelineRun& r) { r.error = "\xed\xa0\x80"; }, "error"},
      {"invalid UTF-8 requester", [](PipelineRun& r) { r.requested_by = "\xff"; }, "requested_by"},
      {"invalid UTF-8 parameters", [](PipelineRun& r) { r.parameters["x"] = "\xff"; }, "parameters"},
      {"invalid UTF-8 result", [](PipelineRun& r) { r.result = json::array({"\xc3"}); }, "result"},
      {"negative created_at", [](PipelineRun& r) { r.created_at_ms = -1; }, "created_at_ms"},
      {"negative started_at", [](PipelineRun& r) { r.started_at_ms = -1; }, "started_at_ms"},
      {"negative finished_at", [](PipelineRun& r) { r.finished_at_ms = -1; }, "finished_at_ms"},
      {"negative progress", [](PipelineRun& r) { r.progress = -0.001; }, "progress"},
      {"progress above 1", [](PipelineRun& r) { r.progress = 1.5; }, "progress"},
      {"NaN progress", [](PipelineRun& r) { r.progress = std::nan(""); }, "progress"},
      {"infinite progress", [](PipelineRun& r) { r.progress = std::numeric_limits<double>::infinity(); },
       "progress"},
      {"cancelled in another case", [](PipelineRun& r) { r.status = "Cancelled"; }, "status"},
  };
  ASSERT_OK(this->store().CreatePipelineRun(Run("run-1", kCreatedAt)));
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    PipelineRun created = Run("run-2", kCreatedAt);
    test_case.damage(created);
    Status status = this->store().CreatePipelineRun(created);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
    PipelineRun updated = Run("run-1", kCreatedAt, "running");
    test_case.damage(updated);
    status = this->store().UpdatePipelineRun(updated);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.field(), test_case.field) << status.ToString();
  }
  ASSERT_OK_AND_ASSIGN(auto all, this->store().ListPipelineRuns({}));
  ASSERT_EQ(all.size(), 1u);
  ExpectSameRun(all[0], Run("run-1", kCreatedAt));
}

TYPED_TEST(MetadataStoreContractTest, PipelineRunsPageNewestFirstUnderEveryFilter) {
  // 130 runs: 13 distinct creation times (so many ties, broken by id descending), random ids, kinds, statuses
  // and targets in different cycles.
  const std::string statuses[] = {"queued", "running", "completed", "failed", "cancelled"};
  std::vector<PipelineRun> runs;
  for (int run_idx = 0; run_idx < 130; ++run_idx) {
    runs.push_back(Run(common::NewUuid(), kCreatedAt + (run_idx * 7 % 13) * 1000, statuses[run_idx % 5],
                       run_idx % 3 == 0 ? "segment_refresh" : "export", "seg-" + std::to_string(run_idx % 4)));
    runs.back().requested_by = "user-" + std::to_string(run_idx % 7);
  }
  for (const auto& run : runs) ASSERT_OK(this->store().CreatePipelineRun(run));
  std::vector<PipelineRun> newest_first = runs;
  std::sort(newest_first.begin(), newest_first.end(), [](const PipelineRun& a, const PipelineRun& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms > b.created_at_ms : a.id > b.id;
  });
  const auto expected = [&](auto keep) {
    std::vector<std::string> ids;
    for (const auto& run : newest_first) {
      if (keep(run)) ids.push_back(run.id);
    }
    return ids;
  };

  struct Case {
    const char* name;
    PipelineRunFilter filter;
    bool (*keep)(const PipelineRun&);
  };
  const Case cases[] = {
      {"all", {}, [](const PipelineRun&) { return true; }},
      {"kind", {.kind = "segment_refresh"}, [](const PipelineRun& r) { return r.kind == "segment_refresh"; }},
      {"status", {.status = "failed"}, [](const PipelineRun& r) { return r.status == "failed"; }},
      {"target", {.target = "seg-3"}, [](const PipelineRun& r) { return r.target == "seg-3"; }},
      {"cancelled", {.status = "cancelled"}, [](const PipelineRun& r) { return r.status == "cancelled"; }},
      {"requested_by", {.requested_by = "user-4"}, [](const PipelineRun& r) { return r.requested_by == "user-4"; }},
      {"requested_by and kind",
       {.kind = "export", .requested_by = "user-2"},
       [](const PipelineRun& r) { return r.kind == "export" && r.requested_by == "user-2"; }},
      {"kind and status",
       {.kind = "export", .status = "completed"},
       [](const PipelineRun& r) { return r.kind == "export" && r.status == "completed"; }},
      {"time range",
       {.created_from_ms = kCreatedAt + 3000, .created_to_ms = kCreatedAt + 9000},
       [](const PipelineRun& r) {
         return r.created_at_ms >= kCreatedAt + 3000 && r.created_at_ms < kCreatedAt + 9000;
       }},
      {"from only",
       {.created_from_ms = kCreatedAt + 12000},
       [](const PipelineRun& r) { return r.created_at_ms >= kCreatedAt + 12000; }},
      {"everything",
       {.kind = "export", .status = "queued", .target = "seg-1", .requested_by = "user-4",
        .created_from_ms = kCreatedAt + 1000, .created_to_ms = kCreatedAt + 12000},
       [](const PipelineRun& r) {
         return r.kind == "export" && r.status == "queued" && r.target == "seg-1" && r.requested_by == "user-4" &&
                r.created_at_ms >= kCreatedAt + 1000 && r.created_at_ms < kCreatedAt + 12000;
       }},
      {"nothing", {.kind = "x' OR '1'='1"}, [](const PipelineRun&) { return false; }},
      {"unstorable", {.target = std::string("a\0", 2)}, [](const PipelineRun&) { return false; }},
      {"unstorable requester", {.requested_by = "\xff"}, [](const PipelineRun&) { return false; }},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    const std::vector<std::string> want = expected(test_case.keep);
    for (int limit : {1, 7, 1000}) {
      PipelineRunFilter filter = test_case.filter;
      filter.limit = limit;
      ASSERT_OK_AND_ASSIGN(auto paged, PageThroughRuns(this->store(), filter));
      EXPECT_EQ(paged, want) << "limit " << limit;
    }
  }

  ASSERT_OK_AND_ASSIGN(auto default_page, this->store().ListPipelineRuns({}));
  EXPECT_EQ(default_page.size(), 100u);  // the default limit
  for (size_t run_idx = 0; run_idx < default_page.size(); ++run_idx) {
    ExpectSameRun(default_page[run_idx], newest_first[run_idx]);
  }
  ASSERT_OK_AND_ASSIGN(auto after_last, this->store().ListPipelineRuns({.before_id = newest_first.back().id}));
  EXPECT_TRUE(after_last.empty());
  // A cursor from one filter continues another: paging is by position in the global order.
  ASSERT_OK_AND_ASSIGN(auto after_middle,
                       this->store().ListPipelineRuns({.status = "queued", .before_id = newest_first[64].id}));
  std::vector<std::string> want_after_middle;
  for (size_t run_idx = 65; run_idx < newest_first.size(); ++run_idx) {
    if (newest_first[run_idx].status == "queued") want_after_middle.push_back(newest_first[run_idx].id);
  }
  EXPECT_EQ(RunIds(after_middle), want_after_middle);
}

TYPED_TEST(MetadataStoreContractTest, PipelineRunPageErrorsAreInvalidArgument) {
  for (int limit : {0, -1, 1001}) {
    auto listed = this->store().ListPipelineRuns({.limit = limit});
    EXPECT_EQ(listed.status().code(), StatusCode::kInvalidArgument) << limit;
    EXPECT_EQ(listed.status().field(), "limit") << limit;
  }
  ASSERT_OK(this->store().ListPipelineRuns({.limit = 1}));
  ASSERT_OK(this->store().ListPipelineRuns({.limit = 1000}));
  for (const std::string& cursor : {std::string("no-such-run"), std::string("r\0", 2)}) {
    auto listed = this->store().ListPipelineRuns({.before_id = cursor});
    EXPECT_EQ(listed.status().code(), StatusCode::kInvalidArgument) << listed.status().ToString();
    EXPECT_EQ(listed.status().field(), "before_id") << listed.status().ToString();
  }
}

TYPED_TEST(MetadataStoreContractTest, UnfinishedRunsAreListedOldestFirst) {
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListUnfinishedPipelineRuns());
  EXPECT_TRUE(none.empty());
  const std::vector<PipelineRun> runs = {
      Run("r-a", kCreatedAt + 3000, "queued"),    Run("r-b", kCreatedAt + 1000, "running"),
      Run("r-c", kCreatedAt + 2000, "completed"), Run("r-d", kCreatedAt + 1000, "queued"),
      Run("r-e", kCreatedAt + 500, "failed"),     Run("r-f", kCreatedAt + 4000, "running"),
      Run("r-g", kCreatedAt + 100, "cancelled"),
  };
  for (const auto& run : runs) ASSERT_OK(this->store().CreatePipelineRun(run));
  ASSERT_OK_AND_ASSIGN(auto unfinished, this->store().ListUnfinishedPipelineRuns());
  EXPECT_EQ(RunIds(unfinished), (std::vector<std::string>{"r-b", "r-d", "r-a", "r-f"}));
  ExpectSameRun(unfinished[0], runs[1]);

  PipelineRun done = runs[1];
  done.status = "completed";
  done.finished_at_ms = kCreatedAt + 9000;
  ASSERT_OK(this->store().UpdatePipelineRun(done));
  ASSERT_OK_AND_ASSIGN(unfinished, this->store().ListUnfinishedPipelineRuns());
  EXPECT_EQ(RunIds(unfinished), (std::vector<std::string>{"r-d", "r-a", "r-f"}));
}

TYPED_TEST(MetadataStoreContractTest, PurgeDeletesOnlyFinishedRunsBeforeTheCutoff) {
  std::vector<PipelineRun> runs = {
      Run("done-early", kCreatedAt, "completed"),  // finished at +100
      Run("failed-early", kCreatedAt + 50, "failed"),  // finished at +150
      Run("done-late", kCreatedAt + 1000, "completed"),  // finished at +1100
      Run("queued-old", kCreatedAt, "queued"),
      Run("running-old", kCreatedAt, "running"),
      Run("cancelled-early", kCreatedAt + 20, "cancelled", "report"),  // finished at +120
  };
  runs[4].finished_at_ms = 1;  // a stray finish time does not make a running run finished
  for (const auto& run : runs) ASSERT_OK(this->store().CreatePipelineRun(run));

  ASSERT_OK_AND_ASSIGN(int64_t nothing, this->store().PurgePipelineRunsBefore(kCreatedAt + 100, ""));
  EXPECT_EQ(nothing, 0);  // strictly before
  ASSERT_OK_AND_ASSIGN(int64_t purged, this->store().PurgePipelineRunsBefore(kCreatedAt + 1000, ""));
  EXPECT_EQ(purged, 3);  // an empty kind is every kind
  EXPECT_EQ(this->store().GetPipelineRun("done-early").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetPipelineRun("failed-early").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetPipelineRun("cancelled-early").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(int64_t rest, this->store().PurgePipelineRunsBefore(kCreatedAt + 1000000, ""));
  EXPECT_EQ(rest, 1);
  ASSERT_OK_AND_ASSIGN(auto left, this->store().ListPipelineRuns({}));
  std::vector<std::string> left_ids = RunIds(left);
  std::sort(left_ids.begin(), left_ids.end());
  EXPECT_EQ(left_ids, (std::vector<std::string>{"queued-old", "running-old"}));
  ASSERT_OK_AND_ASSIGN(int64_t again, this->store().PurgePipelineRunsBefore(kCreatedAt + 1000000, ""));
  EXPECT_EQ(again, 0);
}

TYPED_TEST(MetadataStoreContractTest, PurgeByKindDeletesOnlyThatKindsFinishedRuns) {
  const std::vector<PipelineRun> runs = {
      Run("seg-done", kCreatedAt, "completed", "segment_refresh"),
      Run("seg-cancelled", kCreatedAt, "cancelled", "segment_refresh"),
      Run("seg-queued", kCreatedAt, "queued", "segment_refresh"),
      Run("report-done", kCreatedAt, "completed", "report"),
      Run("report-failed", kCreatedAt, "failed", "report"),
      Run("report-cancelled", kCreatedAt, "cancelled", "report"),
      Run("report-running", kCreatedAt, "running", "report"),
  };
  for (const auto& run : runs) ASSERT_OK(this->store().CreatePipelineRun(run));
  const int64_t after_all = kCreatedAt + 1000000;

  ASSERT_OK_AND_ASSIGN(int64_t reports, this->store().PurgePipelineRunsBefore(after_all, "report"));
  EXPECT_EQ(reports, 3);
  ASSERT_OK_AND_ASSIGN(auto left, this->store().ListPipelineRuns({}));
  std::vector<std::string> left_ids = RunIds(left);
  std::sort(left_ids.begin(), left_ids.end());
  EXPECT_EQ(left_ids, (std::vector<std::string>{"report-running", "seg-cancelled", "seg-done", "seg-queued"}));
  for (const std::string& kind : {std::string("Report"), std::string("x' OR '1'='1"), std::string("r\0", 2),
                                  std::string("\xff")}) {
    ASSERT_OK_AND_ASSIGN(int64_t none, this->store().PurgePipelineRunsBefore(after_all, kind));
    EXPECT_EQ(none, 0) << kind;
  }
  ASSERT_OK_AND_ASSIGN(int64_t segments, this->store().PurgePipelineRunsBefore(after_all, "segment_refresh"));
  EXPECT_EQ(segments, 2);
  ASSERT_OK_AND_ASSIGN(left, this->store().ListPipelineRuns({}));
  left_ids = RunIds(left);
  std::sort(left_ids.begin(), left_ids.end());
  EXPECT_EQ(left_ids, (std::vector<std::string>{"report-running", "seg-queued"}));
}

TYPED_TEST(MetadataStoreContractTest, ProgressAndCancelledStatusRoundTrip) {
  PipelineRun run = Run("run-1", kCreatedAt, "running", "report", "rep-1");
  // Not exactly representable in binary or decimal: the stored double must still read back bit for bit.
  for (double progress : {0.0, 0.1, 1.0 / 3.0, 0.7000000000000001, 5e-324, 1.0}) {
    SCOPED_TRACE(progress);
    run.progress = progress;
    if (progress == 0.0) {
      ASSERT_OK(this->store().CreatePipelineRun(run));
    } else {
      ASSERT_OK(this->store().UpdatePipelineRun(run));
    }
    ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun(run.id));
    ExpectSameRun(stored, run);
  }

  PipelineRun cancelled = run;
  cancelled.status = "cancelled";
  cancelled.progress = 0.4;
  cancelled.error = "cancelled by admin-1";
  cancelled.finished_at_ms = kCreatedAt + 700;
  ASSERT_OK(this->store().UpdatePipelineRun(cancelled));
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun(run.id));
  ExpectSameRun(stored, cancelled);
  // Created cancelled (a queued run cancelled before it ran) reads back too.
  const PipelineRun never_ran = Run("run-2", kCreatedAt + 1, "cancelled");
  ASSERT_OK(this->store().CreatePipelineRun(never_ran));
  ASSERT_OK_AND_ASSIGN(stored, this->store().GetPipelineRun(never_ran.id));
  ExpectSameRun(stored, never_ran);

  // Cancelled runs are finished: no restart picks them up.
  ASSERT_OK_AND_ASSIGN(auto unfinished, this->store().ListUnfinishedPipelineRuns());
  EXPECT_TRUE(unfinished.empty());
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListPipelineRuns({.status = "cancelled"}));
  EXPECT_EQ(RunIds(listed), (std::vector<std::string>{"run-2", "run-1"}));
  ExpectSameRun(listed[1], cancelled);
}

// The pipeline_runs table exactly as migration 4 created it (with its indexes), taken from the migration list.
std::string Version4PipelineRunsTable(MetadataStore& store) {
  const auto migrations = store.BackendName() == "sqlite" ? SqliteMigrations() : PostgresMigrations();
  const std::string_view sql = migrations[3].sql;
  EXPECT_EQ(migrations[3].version, 4);
  const size_t start = sql.find("CREATE TABLE pipeline_runs");
  EXPECT_NE(start, std::string_view::npos);
  return std::string(sql.substr(start));
}

// A run row as version 4 stored it (no progress column).
std::string Version4RunInsert(const std::string& id, const std::string& status, int64_t created_at_ms) {
  const bool finished = status == "completed" || status == "failed";
  return "INSERT INTO pipeline_runs (id, kind, target, status, parameters, result, error, requested_by,"
         " created_at_ms, started_at_ms, finished_at_ms) VALUES ('" +
         id + "', 'segment_refresh', 'seg-1', '" + status + "', '{\"as_of\":\"2024-03-30T23:59:59Z\"}', '" +
         (status == "completed" ? "{\"users_count\":3}" : "null") + "', '" +
         (status == "failed" ? "boom" : "") + "', 'user-1', " + std::to_string(created_at_ms) + ", " +
         std::to_string(status == "queued" ? 0 : created_at_ms + 10) + ", " +
         std::to_string(finished ? created_at_ms + 100 : 0) + ");";
}

TYPED_TEST(MetadataStoreContractTest, DatabaseAtVersion4GainsReportDefinitionsAndKeepsItsPipelineRuns) {
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  std::string downgrade = std::string(kDropVersion5) + "DROP TABLE pipeline_runs;" +
                          Version4PipelineRunsTable(this->store());
  const std::vector<std::pair<std::string, std::string>> old_runs = {
      {"old-queued", "queued"}, {"old-running", "running"}, {"old-completed", "completed"}, {"old-failed", "failed"}};
  for (size_t run_idx = 0; run_idx < old_runs.size(); ++run_idx) {
    downgrade += Version4RunInsert(old_runs[run_idx].first, old_runs[run_idx].second,
                                   kCreatedAt + static_cast<int64_t>(run_idx));
  }
  ASSERT_OK(TypeParam::Execute(this->store(), downgrade));
  ASSERT_OK_AND_ASSIGN(int old_version, this->store().SchemaVersion());
  EXPECT_EQ(old_version, 4);

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  // Every old run keeps every field; completed ones read as done (progress 1), the others as not started.
  for (size_t run_idx = 0; run_idx < old_runs.size(); ++run_idx) {
    const auto& [id, status] = old_runs[run_idx];
    PipelineRun expected = Run(id, kCreatedAt + static_cast<int64_t>(run_idx), status);
    expected.progress = status == "completed" ? 1 : 0;
    if (status == "completed") expected.result = {{"users_count", 3}};
    if (status == "failed") expected.error = "boom";
    ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun(id));
    ExpectSameRun(stored, expected);
  }
  ASSERT_OK_AND_ASSIGN(auto unfinished, this->store().ListUnfinishedPipelineRuns());
  EXPECT_EQ(RunIds(unfinished), (std::vector<std::string>{"old-queued", "old-running"}));
  ASSERT_OK_AND_ASSIGN(auto by_kind, this->store().ListPipelineRuns({.kind = "segment_refresh", .limit = 2}));
  EXPECT_EQ(RunIds(by_kind), (std::vector<std::string>{"old-failed", "old-completed"}));
  ASSERT_OK(this->store().GetSegment("seg-1"));

  // The new schema works: the cancelled status, progress, report definitions, purge.
  PipelineRun cancelled = Run("old-running", kCreatedAt + 1, "cancelled");
  cancelled.progress = 0.5;
  ASSERT_OK(this->store().UpdatePipelineRun(cancelled));
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  ASSERT_OK_AND_ASSIGN(int64_t purged, this->store().PurgePipelineRunsBefore(kCreatedAt + 1000000, ""));
  EXPECT_EQ(purged, 3);
  // The database still refuses what the old table refused.
  EXPECT_FALSE(TypeParam::Execute(this->store(), "UPDATE pipeline_runs SET status = 'done'").ok());
  EXPECT_FALSE(TypeParam::Execute(this->store(), "UPDATE pipeline_runs SET progress = 2").ok());
  EXPECT_FALSE(TypeParam::Execute(this->store(), Version4RunInsert("old-queued", "queued", kCreatedAt)).ok());
  // Every index is there (DROP INDEX fails for a missing one).
  for (const char* index : {"pipeline_runs_by_time", "pipeline_runs_by_kind", "pipeline_runs_by_status",
                            "pipeline_runs_by_target", "pipeline_runs_by_requested_by", "pipeline_runs_unfinished",
                            "pipeline_runs_finished"}) {
    Status dropped = TypeParam::Execute(this->store(), std::string("DROP INDEX ") + index);
    EXPECT_TRUE(dropped.ok()) << index << ": " << dropped.ToString();
  }
}

TYPED_TEST(MetadataStoreContractTest, DatabaseAtVersion3GainsSegmentsAndKeepsItsData) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases")));
  std::vector<DeadLetter> letters = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase)};
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  ASSERT_OK(TypeParam::Execute(this->store(), kDropVersion4));
  ASSERT_OK_AND_ASSIGN(int old_version, this->store().SchemaVersion());
  EXPECT_EQ(old_version, 3);

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  ASSERT_OK(this->store().GetMetricDefinition("purchases"));
  ASSERT_OK_AND_ASSIGN(int64_t count, this->store().CountDeadLetters({}));
  EXPECT_EQ(count, 1);
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  ASSERT_OK(this->store().PutMaterialization(Materialization("seg-1", AwkwardBytes())));
  ASSERT_OK_AND_ASSIGN(auto indexes, this->store().MemberIndexes({"u_a"}));
  EXPECT_EQ(indexes, std::vector<uint32_t>{0});
  ASSERT_OK(this->store().CreatePipelineRun(Run("run-1", kCreatedAt)));
}

// ---------------------------------------------------------------------------------------------------------
// Outbox

constexpr const char* kSegmentUpdated = "com.platform.analytics.segment.updated.v1";
constexpr const char* kReportGenerated = "com.platform.analytics.report.generated.v1";

// A CloudEvent as OutboxEventBus stores it, with text that must come back byte for byte.
std::string OutboxEvent(const std::string& type, const std::string& subject) {
  return json{{"specversion", "1.0"},
              {"id", "evt-" + subject},
              {"source", "/analytics-service"},
              {"type", type},
              {"subject", subject},
              {"data", {{"name", "«тихие» покупатели \"quoted\" \\ 'sql' --"}, {"users_count", 2}}}}
      .dump();
}

std::vector<int64_t> Sequences(const std::vector<OutboxRecord>& records) {
  std::vector<int64_t> sequences;
  for (const auto& record : records) sequences.push_back(record.sequence);
  return sequences;
}

// Every record after `after` of `type`, read page by page.
Result<std::vector<int64_t>> PageThroughOutbox(MetadataStore& store, size_t limit, const std::string& type) {
  std::vector<int64_t> sequences;
  int64_t after = 0;
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(std::vector<OutboxRecord> page, store.ListOutbox(after, limit, type));
    if (page.empty()) return sequences;
    if (page.size() > limit) return Status::Internal("page larger than the limit");
    for (const auto& record : page) sequences.push_back(record.sequence);
    after = page.back().sequence;
  }
}

TYPED_TEST(MetadataStoreContractTest, OutboxRecordsReadBackInSequenceOrder) {
  ASSERT_OK_AND_ASSIGN(auto empty, this->store().ListOutbox(0, 100, ""));
  EXPECT_TRUE(empty.empty());
  struct Appended {
    std::string key, type, event_json;
    int64_t created_at_ms;
    int64_t sequence = 0;
  };
  std::vector<Appended> appended = {{"seg-1", kSegmentUpdated, OutboxEvent(kSegmentUpdated, "seg-1"), kCreatedAt},
                                    {"rep-1", kReportGenerated, OutboxEvent(kReportGenerated, "rep-1"), kCreatedAt + 5},
                                    // Time need not grow with the sequence (replicas' clocks differ).
                                    {"seg-1", kSegmentUpdated, OutboxEvent(kSegmentUpdated, "seg-1"), kCreatedAt - 7},
                                    {"", kSegmentUpdated, "{}", 0}};
  for (auto& record : appended) {
    ASSERT_OK_AND_ASSIGN(record.sequence, this->store().AppendOutbox(record.key, record.type, record.event_json,
                                                                     record.created_at_ms));
  }
  for (size_t record_idx = 1; record_idx < appended.size(); ++record_idx) {
    EXPECT_GT(appended[record_idx].sequence, appended[record_idx - 1].sequence);
  }
  EXPECT_GT(appended[0].sequence, 0);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 100, ""));
  ASSERT_EQ(listed.size(), appended.size());
  for (size_t record_idx = 0; record_idx < appended.size(); ++record_idx) {
    SCOPED_TRACE(record_idx);
    EXPECT_EQ(listed[record_idx].sequence, appended[record_idx].sequence);
    EXPECT_EQ(listed[record_idx].key, appended[record_idx].key);
    EXPECT_EQ(listed[record_idx].type, appended[record_idx].type);
    EXPECT_EQ(listed[record_idx].event_json, appended[record_idx].event_json);
    EXPECT_EQ(listed[record_idx].created_at_ms, appended[record_idx].created_at_ms);
    EXPECT_FALSE(listed[record_idx].relayed_at_ms.has_value());
  }
  ASSERT_OK_AND_ASSIGN(int64_t pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 4);
}

TYPED_TEST(MetadataStoreContractTest, OutboxPagesCoverEveryRecordExactlyOnceUnderTheTypeFilter) {
  std::vector<int64_t> all, updated, generated;
  for (int record_idx = 0; record_idx < 11; ++record_idx) {
    const char* type = record_idx % 3 == 0 ? kReportGenerated : kSegmentUpdated;
    const std::string key = "entity-" + std::to_string(record_idx);
    ASSERT_OK_AND_ASSIGN(int64_t sequence,
                         this->store().AppendOutbox(key, type, OutboxEvent(type, key), kCreatedAt + record_idx));
    all.push_back(sequence);
    (std::string_view(type) == kSegmentUpdated ? updated : generated).push_back(sequence);
  }
  for (size_t limit : {size_t{1}, size_t{3}, size_t{11}, size_t{1000}}) {
    SCOPED_TRACE(limit);
    ASSERT_OK_AND_ASSIGN(auto every, PageThroughOutbox(this->store(), limit, ""));
    EXPECT_EQ(every, all);
    ASSERT_OK_AND_ASSIGN(auto of_updated, PageThroughOutbox(this->store(), limit, kSegmentUpdated));
    EXPECT_EQ(of_updated, updated);
    ASSERT_OK_AND_ASSIGN(auto of_generated, PageThroughOutbox(this->store(), limit, kReportGenerated));
    EXPECT_EQ(of_generated, generated);
  }
  ASSERT_OK_AND_ASSIGN(auto middle, this->store().ListOutbox(all[4], 3, ""));
  EXPECT_EQ(Sequences(middle), (std::vector<int64_t>{all[5], all[6], all[7]}));
  ASSERT_OK_AND_ASSIGN(auto filtered, this->store().ListOutbox(all[4], 2, kReportGenerated));
  for (const auto& record : filtered) EXPECT_EQ(record.type, kReportGenerated);
  EXPECT_EQ(Sequences(filtered), (std::vector<int64_t>{all[6], all[9]}));
  ASSERT_OK_AND_ASSIGN(auto past_the_end, this->store().ListOutbox(all.back(), 100, ""));
  EXPECT_TRUE(past_the_end.empty());
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListOutbox(0, 0, ""));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(auto unknown_type, this->store().ListOutbox(0, 100, "com.platform.analytics.unknown.v1"));
  EXPECT_TRUE(unknown_type.empty());
  // The type is matched exactly (no prefix, no case folding).
  ASSERT_OK_AND_ASSIGN(auto prefix, this->store().ListOutbox(0, 100, "com.platform.analytics.segment"));
  EXPECT_TRUE(prefix.empty());
  ASSERT_OK_AND_ASSIGN(auto upper, this->store().ListOutbox(0, 100, "COM.PLATFORM.ANALYTICS.SEGMENT.UPDATED.V1"));
  EXPECT_TRUE(upper.empty());
  // A huge limit is no error.
  ASSERT_OK_AND_ASSIGN(auto huge, this->store().ListOutbox(0, std::numeric_limits<size_t>::max(), ""));
  EXPECT_EQ(Sequences(huge), all);
}

TYPED_TEST(MetadataStoreContractTest, UnrelayedOutboxIsScannedOldestFirstAndMarkedOnce) {
  std::vector<int64_t> sequences;
  for (int record_idx = 0; record_idx < 5; ++record_idx) {
    const std::string key = "seg-" + std::to_string(record_idx);
    ASSERT_OK_AND_ASSIGN(int64_t sequence, this->store().AppendOutbox(key, kSegmentUpdated,
                                                                      OutboxEvent(kSegmentUpdated, key), kCreatedAt));
    sequences.push_back(sequence);
  }
  ASSERT_OK_AND_ASSIGN(auto unrelayed, this->store().ListUnrelayedOutbox(100));
  EXPECT_EQ(Sequences(unrelayed), sequences);
  ASSERT_OK(this->store().MarkOutboxRelayed({sequences[1], sequences[3], sequences[3]}, kCreatedAt + 100));
  ASSERT_OK_AND_ASSIGN(unrelayed, this->store().ListUnrelayedOutbox(100));
  EXPECT_EQ(Sequences(unrelayed), (std::vector<int64_t>{sequences[0], sequences[2], sequences[4]}));
  EXPECT_EQ(unrelayed[1].key, "seg-2");
  EXPECT_EQ(unrelayed[1].event_json, OutboxEvent(kSegmentUpdated, "seg-2"));
  ASSERT_OK_AND_ASSIGN(unrelayed, this->store().ListUnrelayedOutbox(2));
  EXPECT_EQ(Sequences(unrelayed), (std::vector<int64_t>{sequences[0], sequences[2]}));
  ASSERT_OK_AND_ASSIGN(auto none, this->store().ListUnrelayedOutbox(0));
  EXPECT_TRUE(none.empty());
  ASSERT_OK_AND_ASSIGN(int64_t pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 3);

  // Marked again (a relay that delivered twice), with unknown sequences: the first time stays.
  ASSERT_OK(this->store().MarkOutboxRelayed({sequences[1], sequences[4], sequences.back() + 1000}, kCreatedAt + 200));
  ASSERT_OK(this->store().MarkOutboxRelayed({}, kCreatedAt + 300));
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 100, ""));
  ASSERT_EQ(listed.size(), 5u);
  const std::vector<std::optional<int64_t>> expected = {std::nullopt, kCreatedAt + 100, std::nullopt,
                                                        kCreatedAt + 100, kCreatedAt + 200};
  for (size_t record_idx = 0; record_idx < listed.size(); ++record_idx) {
    EXPECT_EQ(listed[record_idx].relayed_at_ms, expected[record_idx]) << record_idx;
  }
  ASSERT_OK_AND_ASSIGN(pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 2);
  Status negative = this->store().MarkOutboxRelayed({sequences[0]}, -1);
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument) << negative.ToString();
  ASSERT_OK_AND_ASSIGN(pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 2);
}

TYPED_TEST(MetadataStoreContractTest, OutboxPurgeKeepsUnrelayedRecordsOnlyWhenAsked) {
  // created at kCreatedAt + 0, 10, 20, 30; the first and the third relayed.
  std::vector<int64_t> sequences;
  for (int record_idx = 0; record_idx < 4; ++record_idx) {
    const std::string key = "rep-" + std::to_string(record_idx);
    ASSERT_OK_AND_ASSIGN(int64_t sequence,
                         this->store().AppendOutbox(key, kReportGenerated, OutboxEvent(kReportGenerated, key),
                                                    kCreatedAt + 10 * record_idx));
    sequences.push_back(sequence);
  }
  ASSERT_OK(this->store().MarkOutboxRelayed({sequences[0], sequences[2]}, kCreatedAt + 1000));

  // Relayed only: the old unrelayed record stays whatever its age; the cutoff is exclusive.
  ASSERT_OK_AND_ASSIGN(int64_t purged, this->store().PurgeOutbox(kCreatedAt + 20, true));
  EXPECT_EQ(purged, 1);
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 100, ""));
  EXPECT_EQ(Sequences(listed), (std::vector<int64_t>{sequences[1], sequences[2], sequences[3]}));
  ASSERT_OK_AND_ASSIGN(purged, this->store().PurgeOutbox(kCreatedAt + 1000000, true));
  EXPECT_EQ(purged, 1);
  ASSERT_OK_AND_ASSIGN(listed, this->store().ListOutbox(0, 100, ""));
  EXPECT_EQ(Sequences(listed), (std::vector<int64_t>{sequences[1], sequences[3]}));

  // By age alone (nothing relays).
  ASSERT_OK_AND_ASSIGN(purged, this->store().PurgeOutbox(kCreatedAt + 30, false));
  EXPECT_EQ(purged, 1);
  ASSERT_OK_AND_ASSIGN(listed, this->store().ListOutbox(0, 100, ""));
  EXPECT_EQ(Sequences(listed), (std::vector<int64_t>{sequences[3]}));
  ASSERT_OK_AND_ASSIGN(int64_t pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 1);
  ASSERT_OK_AND_ASSIGN(purged, this->store().PurgeOutbox(kCreatedAt + 31, false));
  EXPECT_EQ(purged, 1);
  ASSERT_OK_AND_ASSIGN(purged, this->store().PurgeOutbox(kCreatedAt + 31, false));
  EXPECT_EQ(purged, 0);

  // A sequence is never reused, not even once the newest records are gone (readers page by it).
  ASSERT_OK_AND_ASSIGN(int64_t next, this->store().AppendOutbox("rep-9", kReportGenerated, "{}", kCreatedAt));
  EXPECT_GT(next, sequences.back());
}

TYPED_TEST(MetadataStoreContractTest, InvalidOutboxAppendIsInvalidArgumentAndNothingIsStored) {
  const std::string event = OutboxEvent(kSegmentUpdated, "seg-1");
  struct Case {
    std::string key, type, event_json;
    int64_t now_ms;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"seg-1", "", event, kCreatedAt, "type"},
      {"seg-1", kSegmentUpdated, "", kCreatedAt, "event_json"},
      {"seg-\xff", kSegmentUpdated, event, kCreatedAt, "key"},
      {"seg-1", std::string(kSegmentUpdated) + "\xc3", event, kCreatedAt, "type"},
      {"seg-1", kSegmentUpdated, std::string("{\"a\":\"\0\"}", 9), kCreatedAt, "event_json"},
      {"seg-1", kSegmentUpdated, event, -1, "created_at_ms"},
  };
  for (size_t case_idx = 0; case_idx < cases.size(); ++case_idx) {
    const Case& c = cases[case_idx];
    auto appended = this->store().AppendOutbox(c.key, c.type, c.event_json, c.now_ms);
    ASSERT_FALSE(appended.ok()) << case_idx;
    EXPECT_EQ(appended.status().code(), StatusCode::kInvalidArgument)
        << case_idx << ": " << appended.status().ToString();
    EXPECT_EQ(appended.status().field(), c.field) << case_idx << ": " << appended.status().ToString();
  }
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 100, ""));
  EXPECT_TRUE(listed.empty());
  ASSERT_OK_AND_ASSIGN(int64_t pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, 0);
  // The store still works.
  ASSERT_OK(this->store().AppendOutbox("seg-1", kSegmentUpdated, event, kCreatedAt));
}

// Writers append from several threads while a reader pages by sequence: every appended record gets a unique
// sequence, increasing per writer, and the reader, who only ever asks for sequences after the last one it saw,
// misses none (sequence order is commit order).
TYPED_TEST(MetadataStoreContractTest, ConcurrentOutboxAppendsGetUniqueIncreasingSequencesAndPagingMissesNone) {
  constexpr int kWriters = 6;
  constexpr int kAppends = 30;
  std::latch start(kWriters + 1);
  std::atomic<int> writers_left{kWriters};
  std::mutex mu;
  std::vector<int64_t> appended;    // GUARDED_BY(mu)
  std::vector<std::string> errors;  // GUARDED_BY(mu)
  std::vector<std::thread> threads;
  for (int writer_idx = 0; writer_idx < kWriters; ++writer_idx) {
    threads.emplace_back([&, writer_idx] {
      start.arrive_and_wait();
      int64_t previous = 0;
      for (int append_idx = 0; append_idx < kAppends; ++append_idx) {
        const std::string key = "w" + std::to_string(writer_idx) + "-" + std::to_string(append_idx);
        auto sequence = this->store().AppendOutbox(key, kSegmentUpdated, OutboxEvent(kSegmentUpdated, key),
                                                   kCreatedAt + append_idx);
        std::lock_guard lock(mu);
        if (!sequence.ok()) {
          errors.push_back(sequence.status().ToString());
          continue;
        }
        if (*sequence <= previous) errors.push_back("sequences of one writer out of order");
        previous = *sequence;
        appended.push_back(*sequence);
      }
      writers_left.fetch_sub(1);
    });
  }
  std::vector<int64_t> paged;
  std::string reader_error;
  std::thread reader([&] {
    start.arrive_and_wait();
    int64_t after = 0;
    while (true) {
      const bool writers_done = writers_left.load() == 0;  // read before the page: a last page follows the writers
      auto page = this->store().ListOutbox(after, 7, "");
      if (!page.ok()) {
        reader_error = page.status().ToString();
        return;
      }
      for (const auto& record : *page) paged.push_back(record.sequence);
      if (!page->empty()) {
        after = page->back().sequence;
      } else if (writers_done) {
        return;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  });
  for (auto& thread : threads) thread.join();
  reader.join();
  ASSERT_TRUE(errors.empty()) << errors.front();
  ASSERT_TRUE(reader_error.empty()) << reader_error;

  ASSERT_EQ(appended.size(), size_t{kWriters} * kAppends);
  std::sort(appended.begin(), appended.end());
  EXPECT_EQ(std::adjacent_find(appended.begin(), appended.end()), appended.end()) << "a sequence was given twice";
  EXPECT_EQ(paged, appended) << "the reader paging by sequence missed or repeated a record";
  ASSERT_OK_AND_ASSIGN(auto unrelayed, this->store().ListUnrelayedOutbox(100000));
  EXPECT_EQ(Sequences(unrelayed), appended);
  ASSERT_OK_AND_ASSIGN(int64_t pending, this->store().CountUnrelayedOutbox());
  EXPECT_EQ(pending, kWriters * kAppends);
}

TYPED_TEST(MetadataStoreContractTest, OutboxSurvivesReopening) {
  ASSERT_OK_AND_ASSIGN(int64_t first,
                       this->store().AppendOutbox("seg-1", kSegmentUpdated, OutboxEvent(kSegmentUpdated, "seg-1"),
                                                  kCreatedAt));
  ASSERT_OK_AND_ASSIGN(int64_t second,
                       this->store().AppendOutbox("rep-1", kReportGenerated, OutboxEvent(kReportGenerated, "rep-1"),
                                                  kCreatedAt + 1));
  ASSERT_OK(this->store().MarkOutboxRelayed({first}, kCreatedAt + 50));

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 100, ""));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].sequence, first);
  EXPECT_EQ(listed[0].event_json, OutboxEvent(kSegmentUpdated, "seg-1"));
  EXPECT_EQ(listed[0].relayed_at_ms, kCreatedAt + 50);
  EXPECT_EQ(listed[1].sequence, second);
  EXPECT_EQ(listed[1].key, "rep-1");
  EXPECT_EQ(listed[1].type, kReportGenerated);
  EXPECT_EQ(listed[1].created_at_ms, kCreatedAt + 1);
  EXPECT_FALSE(listed[1].relayed_at_ms.has_value());
  ASSERT_OK_AND_ASSIGN(auto unrelayed, this->store().ListUnrelayedOutbox(10));
  EXPECT_EQ(Sequences(unrelayed), std::vector<int64_t>{second});
  ASSERT_OK_AND_ASSIGN(int64_t third, this->store().AppendOutbox("seg-1", kSegmentUpdated, "{}", kCreatedAt + 2));
  EXPECT_GT(third, second);
}

TYPED_TEST(MetadataStoreContractTest, DatabaseAtVersion5GainsTheOutboxAndKeepsItsData) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases")));
  ASSERT_OK(this->store().CreateSegment(Segment("seg-1", "buyers")));
  ASSERT_OK(this->store().CreateReportDefinition(ReportDefinition("rep-1", "weekly")));
  PipelineRun run = Run("run-1", kCreatedAt, "running", "report", "rep-1");
  ASSERT_OK(this->store().CreatePipelineRun(run));
  std::vector<DeadLetter> letters = {Letter(kReceivedAt, "INVALID_FIELD", kPurchase)};
  ASSERT_OK(this->store().AppendDeadLetters(letters));
  ASSERT_OK(TypeParam::Execute(this->store(), kDropVersion6));
  ASSERT_OK_AND_ASSIGN(int old_version, this->store().SchemaVersion());
  EXPECT_EQ(old_version, 5);

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  ASSERT_OK(this->store().GetMetricDefinition("purchases"));
  ASSERT_OK(this->store().GetSegment("seg-1"));
  ASSERT_OK(this->store().GetReportDefinition("rep-1"));
  ASSERT_OK_AND_ASSIGN(PipelineRun stored, this->store().GetPipelineRun("run-1"));
  ExpectSameRun(stored, run);
  ASSERT_OK_AND_ASSIGN(int64_t dead_letters, this->store().CountDeadLetters({}));
  EXPECT_EQ(dead_letters, 1);

  // The outbox works, and the database refuses what the table refuses.
  ASSERT_OK_AND_ASSIGN(int64_t sequence,
                       this->store().AppendOutbox("seg-1", kSegmentUpdated, OutboxEvent(kSegmentUpdated, "seg-1"),
                                                  kCreatedAt));
  ASSERT_OK(this->store().MarkOutboxRelayed({sequence}, kCreatedAt + 1));
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListOutbox(0, 10, kSegmentUpdated));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].relayed_at_ms, kCreatedAt + 1);
  EXPECT_FALSE(TypeParam::Execute(this->store(), "UPDATE outbox SET created_at_ms = -1").ok());
  EXPECT_FALSE(TypeParam::Execute(this->store(), "UPDATE outbox SET event_json = NULL").ok());
  // Every index is there (DROP INDEX fails for a missing one).
  for (const char* index : {"outbox_unrelayed", "outbox_by_type", "outbox_by_time"}) {
    Status dropped = TypeParam::Execute(this->store(), std::string("DROP INDEX ") + index);
    EXPECT_TRUE(dropped.ok()) << index << ": " << dropped.ToString();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Migrations and stored data

TYPED_TEST(MetadataStoreContractTest, ReopeningKeepsDataAndSchemaVersion) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("purchases", {"kept"})));
  ASSERT_OK(this->store().AppendAudit(Audit(1000, "metric.create")));

  // A second store on the same database while the first is open (two service instances).
  ASSERT_OK_AND_ASSIGN(auto second, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int second_version, second->SchemaVersion());
  EXPECT_EQ(second_version, LatestSchemaVersion());
  ASSERT_OK(second->GetMetricDefinition("purchases"));
  ASSERT_OK(second->CreateMetricDefinition(CountMetric("from_second")));
  ASSERT_OK(this->store().GetMetricDefinition("from_second"));
  second.reset();

  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(this->store_, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(int version, this->store().SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  ASSERT_OK_AND_ASSIGN(auto tagged, this->store().ListMetricDefinitions({.tag = "kept"}));
  EXPECT_EQ(Names(tagged), std::vector<std::string>{"purchases"});
  ASSERT_OK_AND_ASSIGN(auto audit, this->store().ListAudit(10));
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].action, "metric.create");
}

TYPED_TEST(MetadataStoreContractTest, InstancesOpeningAFreshDatabaseTogetherAllSucceed) {
  constexpr int kInstances = 4;
  std::latch start(kInstances);
  std::vector<Status> results(kInstances);
  std::vector<std::thread> threads;
  for (int instance_idx = 0; instance_idx < kInstances; ++instance_idx) {
    threads.emplace_back([&, instance_idx] {
      start.arrive_and_wait();
      auto opened = this->backend_.OpenSibling("together");
      if (!opened.ok()) {
        results[instance_idx] = opened.status();
        return;
      }
      auto version = (*opened)->SchemaVersion();
      if (!version.ok()) {
        results[instance_idx] = version.status();
      } else if (*version != LatestSchemaVersion()) {
        results[instance_idx] = Status::Internal("schema version " + std::to_string(*version));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_TRUE(result.ok()) << result.ToString();
}

TYPED_TEST(MetadataStoreContractTest, SchemaNewerThanTheCodeIsFailedPrecondition) {
  ASSERT_OK(TypeParam::Execute(this->store(),
                               "INSERT INTO schema_migrations (version, name, applied_at)"
                               " VALUES (9999, 'from_the_future', '2099-01-01T00:00:00Z')"));
  auto reopened = this->backend_.Open();
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(reopened.status().message().find("9999"), std::string::npos) << reopened.status().ToString();
}

TYPED_TEST(MetadataStoreContractTest, UnreadableStoredDocumentIsCorruptionNamingTheDefinition) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("not_json", {"t"})));
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("not_valid", {"t"})));
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("renamed", {"t"})));
  ASSERT_OK(TypeParam::Execute(this->store(),
                               "UPDATE metric_definitions SET document = '{\"name\": ' WHERE name = 'not_json';"
                               "UPDATE metric_definitions SET document = '{\"name\": \"not_valid\"}'"
                               " WHERE name = 'not_valid';"
                               "UPDATE metric_definitions SET document = REPLACE(document, '\"renamed\"',"
                               " '\"other_name\"') WHERE name = 'renamed'"));
  for (const char* name : {"not_json", "not_valid", "renamed"}) {
    auto got = this->store().GetMetricDefinition(name);
    EXPECT_EQ(got.status().code(), StatusCode::kCorruption) << name;
    EXPECT_NE(got.status().message().find(name), std::string::npos) << got.status().ToString();
  }
  auto listed = this->store().ListMetricDefinitions({.tag = "t"});
  EXPECT_EQ(listed.status().code(), StatusCode::kCorruption);
}

// ---------------------------------------------------------------------------------------------------------
// Concurrency

TYPED_TEST(MetadataStoreContractTest, ConcurrentCreatesHaveExactlyOneWinnerPerName) {
  constexpr int kThreads = 8;
  constexpr int kNames = 12;
  std::latch start(kThreads);
  std::vector<std::atomic<int>> wins(kNames);
  std::mutex errors_mu;
  std::vector<std::string> errors;  // GUARDED_BY(errors_mu)
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      start.arrive_and_wait();
      for (int name_idx = 0; name_idx < kNames; ++name_idx) {
        MetricDefinition def = CountMetric("race_" + std::to_string(name_idx), {"race"});
        def.created_by = "thread-" + std::to_string(thread_idx);
        Status status = this->store().CreateMetricDefinition(def);
        if (status.ok()) {
          ++wins[name_idx];
        } else if (status.code() != StatusCode::kAlreadyExists) {
          std::lock_guard lock(errors_mu);
          errors.push_back(status.ToString());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  for (int name_idx = 0; name_idx < kNames; ++name_idx) EXPECT_EQ(wins[name_idx].load(), 1) << name_idx;
  ASSERT_OK_AND_ASSIGN(auto listed, this->store().ListMetricDefinitions({.tag = "race"}));
  EXPECT_EQ(listed.size(), static_cast<size_t>(kNames));
}

TYPED_TEST(MetadataStoreContractTest, ConcurrentUpdatesOfOneVersionHaveExactlyOneWinner) {
  ASSERT_OK(this->store().CreateMetricDefinition(CountMetric("contested")));
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::atomic<int> wins = 0;
  std::atomic<int> conflicts = 0;
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      MetricDefinition def = CountMetric("contested");
      def.title = "by thread " + std::to_string(thread_idx);
      def.version = 2;
      start.arrive_and_wait();
      Status status = this->store().UpdateMetricDefinition(def, 1);
      if (status.ok()) ++wins;
      if (status.code() == StatusCode::kFailedPrecondition) ++conflicts;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), kThreads - 1);
  ASSERT_OK_AND_ASSIGN(MetricDefinition stored, this->store().GetMetricDefinition("contested"));
  EXPECT_EQ(stored.version, 2);
}

// ---------------------------------------------------------------------------------------------------------
// Migrations lists (no database)

TEST(MetadataMigrationsTest, DialectsHaveTheSameVersionsAndNames) {
  const auto sqlite = SqliteMigrations();
  const auto postgres = PostgresMigrations();
  ASSERT_EQ(sqlite.size(), postgres.size());
  for (size_t migration_idx = 0; migration_idx < sqlite.size(); ++migration_idx) {
    EXPECT_EQ(sqlite[migration_idx].version, static_cast<int>(migration_idx) + 1);
    EXPECT_EQ(postgres[migration_idx].version, sqlite[migration_idx].version);
    EXPECT_EQ(postgres[migration_idx].name, sqlite[migration_idx].name);
  }
}

TEST(MetadataMigrationsTest, PendingMigrationsFollowTheAppliedVersion) {
  const auto all = SqliteMigrations();
  ASSERT_OK_AND_ASSIGN(auto from_scratch, PendingMigrations(all, 0, "sqlite"));
  EXPECT_EQ(from_scratch.size(), all.size());
  ASSERT_OK_AND_ASSIGN(auto after_first, PendingMigrations(all, 1, "sqlite"));
  EXPECT_EQ(after_first.size(), all.size() - 1);
  ASSERT_OK_AND_ASSIGN(auto up_to_date, PendingMigrations(all, all.back().version, "sqlite"));
  EXPECT_TRUE(up_to_date.empty());
  auto newer = PendingMigrations(all, all.back().version + 1, "sqlite");
  EXPECT_EQ(newer.status().code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------------------------
// SQLite specifics

TEST(SqliteMetadataStoreTest, CreatesMissingParentDirectories) {
  testing::TempDir dir;
  const auto path = dir.path() / "a" / "b" / "metadata.db";
  ASSERT_OK_AND_ASSIGN(auto store, OpenSqliteMetadataStore({.path = path.string()}));
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(SqliteMetadataStoreTest, UncreatableDirectoryIsIOError) {
  testing::TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  auto store = OpenSqliteMetadataStore({.path = (dir.path() / "file" / "sub" / "metadata.db").string()});
  EXPECT_EQ(store.status().code(), StatusCode::kIOError) << store.status().ToString();
}

TEST(SqliteMetadataStoreTest, FileThatIsNotADatabaseIsCorruption) {
  testing::TempDir dir;
  const auto path = dir.path() / "metadata.db";
  std::ofstream(path) << std::string(4096, 'z');
  auto store = OpenSqliteMetadataStore({.path = path.string()});
  EXPECT_EQ(store.status().code(), StatusCode::kCorruption) << store.status().ToString();
}

TEST(SqliteMetadataStoreTest, EmptyPathIsInvalidArgument) {
  EXPECT_EQ(OpenSqliteMetadataStore({.path = ""}).status().code(), StatusCode::kInvalidArgument);
}

// An outbox append syncs its own commit (synchronous = FULL) and leaves the connection as it was (NORMAL, 1): the
// mode is read back through the outbox itself, on the store's own connection.
TEST(SqliteMetadataStoreTest, AnOutboxAppendLeavesTheConnectionAtSynchronousNormal) {
  testing::TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, OpenSqliteMetadataStore({.path = (dir.path() / "metadata.db").string()}));
  auto& sqlite = dynamic_cast<SqliteMetadataStore&>(*store);
  ASSERT_OK(store->AppendOutbox("seg-1", "com.platform.analytics.segment.updated.v1", "{}", kCreatedAt));
  ASSERT_OK(sqlite.ExecuteForTest(
      "INSERT INTO outbox (message_key, event_type, event_json, created_at_ms)"
      " SELECT 'probe', 'probe', synchronous, 0 FROM pragma_synchronous"));
  ASSERT_OK_AND_ASSIGN(auto probe, store->ListOutbox(0, 10, "probe"));
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].event_json, "1") << "0 OFF, 1 NORMAL, 2 FULL";
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL specifics

// The DSN with an application_name, so one store's connections can be found in pg_stat_activity.
std::string WithApplicationName(const std::string& dsn, const std::string& name) {
  if (dsn.find("://") == std::string::npos) return dsn + " application_name=" + name;
  return dsn + (dsn.find('?') == std::string::npos ? "?" : "&") + "application_name=" + name;
}

TEST(PostgresMetadataStoreTest, UnreachableServerIsUnavailableQuickly) {
  const auto started = std::chrono::steady_clock::now();
  auto store = OpenPostgresMetadataStore(
      {.dsn = "postgresql://analytics@127.0.0.1:1/analytics_test", .connect_timeout_seconds = 2});
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(PostgresMetadataStoreTest, MalformedDsnIsInvalidArgument) {
  Status status = ValidatePostgresDsn("host=127.0.0.1 port");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(status.message().empty());
  EXPECT_EQ(ValidatePostgresDsn("postgresql://a@b:5432/c?no_such_option=1").code(), StatusCode::kInvalidArgument);
  EXPECT_OK(ValidatePostgresDsn("postgresql://analytics@127.0.0.1:5432/analytics_test"));
  EXPECT_OK(ValidatePostgresDsn("host=127.0.0.1 port=5432 dbname=analytics_test"));
  EXPECT_EQ(OpenPostgresMetadataStore({.dsn = "host=127.0.0.1 port"}).status().code(), StatusCode::kInvalidArgument);
}

TEST(PostgresMetadataStoreTest, BadOptionsAreInvalidArgument) {
  const std::string dsn = "postgresql://analytics@127.0.0.1:1/analytics_test";
  EXPECT_EQ(OpenPostgresMetadataStore({.dsn = dsn, .schema = "Bad-Name"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenPostgresMetadataStore({.dsn = dsn, .schema = "x\"; DROP SCHEMA public; --"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenPostgresMetadataStore({.dsn = dsn, .pool_size = 0}).status().code(), StatusCode::kInvalidArgument);
}

TEST(PostgresMetadataStoreTest, LostConnectionIsUnavailableOnceThenReconnects) {
  PostgresBackend backend;
  ASSERT_FALSE(backend.dsn().empty());
  const std::string app = backend.schema();  // unique: names this test's victim connection
  ASSERT_OK_AND_ASSIGN(auto victim, backend.OpenWith(/*pool_size=*/1, WithApplicationName(backend.dsn(), app)));
  ASSERT_OK(victim->CreateMetricDefinition(CountMetric("survivor")));

  ASSERT_OK_AND_ASSIGN(auto killer, backend.OpenWith(/*pool_size=*/1, backend.dsn()));
  ASSERT_OK(PostgresBackend::Execute(*killer,
                                     "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                                     " WHERE application_name = '" + app + "'"));

  Status lost = victim->Ping();
  EXPECT_EQ(lost.code(), StatusCode::kUnavailable) << lost.ToString();
  // The next call re-establishes the connection, with its search_path.
  ASSERT_OK(victim->Ping());
  ASSERT_OK_AND_ASSIGN(MetricDefinition def, victim->GetMetricDefinition("survivor"));
  EXPECT_EQ(def.name, "survivor");
}

TEST(PostgresMetadataStoreTest, StoresInDifferentSchemasAreIsolated) {
  PostgresBackend backend;
  ASSERT_OK_AND_ASSIGN(auto first, backend.Open());
  ASSERT_OK_AND_ASSIGN(auto second, backend.OpenSibling("other"));
  ASSERT_OK(first->CreateMetricDefinition(CountMetric("only_in_first")));
  EXPECT_EQ(second->GetMetricDefinition("only_in_first").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace analytics::metadata
