// Contract tests of the MetadataStore port, run against every adapter: SQLite (a file in a fresh temp dir)
// and PostgreSQL (a fresh schema per test, dropped at teardown, in the database named by
// ANALYTICS_TEST_POSTGRES_DSN, which scripts/servers/postgres starts). A missing DSN fails the PostgreSQL
// tests; they are never skipped. Adapter-specific behaviour (unreachable server, lost connections, bad files)
// follows the typed suite.
#include <atomic>
#include <chrono>
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
