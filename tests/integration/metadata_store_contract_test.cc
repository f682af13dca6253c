// Contract tests of the MetadataStore port, run against every adapter: SQLite (a file in a fresh temp dir)
// and PostgreSQL (a fresh schema per test, dropped at teardown, in the database named by
// ANALYTICS_TEST_POSTGRES_DSN, which scripts/servers/postgres starts). A missing DSN fails the PostgreSQL
// tests; they are never skipped. Adapter-specific behaviour (unreachable server, lost connections, bad files)
// follows the typed suite.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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
  ASSERT_OK(TypeParam::Execute(this->store(),
                               "DROP TABLE dead_letters; DELETE FROM schema_migrations WHERE version = 3"));
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
