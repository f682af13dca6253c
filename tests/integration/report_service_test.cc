// ReportService (reports/report_service.h) wired as src/app/application.cc wires it: its own PipelineRunner for the
// "report" kind, a LocalObjectStore in a temp dir, a LocalEventBus, MetricValues over a MetricCatalog seeded with the
// built-in KPIs, and a SegmentLookup built from a real segments::SegmentService (the same callbacks application.cc
// sets, with a test hook in front of `size` that can hold a section). The metadata store is SQLite (a file in a temp
// dir) or PostgreSQL (a fresh schema per test, dropped at teardown, in the database of ANALYTICS_TEST_POSTGRES_DSN,
// started by scripts/run-tests; a missing DSN fails the PostgreSQL cases). The event store is a real embedded store
// holding a small set of hand-made events (pseudonymized users, some in segments, the rest in the memtable).
// Report files are read back (CSV with a small RFC 4180 parser, JSON with nlohmann) and their numbers compared with
// KPIs computed here from the raw events with plain loops, never with MetricValues.
// Covered: built-in seeding, definition CRUD and validation, generation (custom and built-in definitions, time
// zones, game and segment restrictions, relative dates), request errors, ownership and listing, cancellation
// (queued and running), failing sections, restart recovery, schedules (once per fire time across calls, replicas
// and restarts; catch-up; last update; disabled), report.generated events, retention, and concurrent use.
// Schedules are driven through RunSchedulesForTest with fire times in 2024 (where the events are): the definitions'
// `updated_at` is moved back there through the metadata store, as if they had been edited then.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "blob/local/local_object_store.h"
#include "bus/local/local_event_bus.h"
#include "common/ids.h"
#include "common/status.h"
#include "common/time_util.h"
#include "events/event.h"
#include "events/pseudonymizer.h"
#include "jobs/pipeline_runner.h"
#include "metadata/metadata_store.h"
#include "metadata/postgres/postgres_metadata_store.h"
#include "metadata/sqlite/sqlite_metadata_store.h"
#include "metrics/metric_catalog.h"
#include "metrics/metric_values.h"
#include "reports/report_service.h"
#include "segments/segment_service.h"
#include "store/embedded/embedded_event_store.h"
#include "support/gate.h"
#include "support/metadata_backends.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using common::Result;
using common::Status;
using common::StatusCode;
using json = nlohmann::json;
using metadata::MetadataStore;
using reports::Caller;
using reports::ReportService;

constexpr int64_t kDay = 86400000;
constexpr int64_t kHour = 3600000;
constexpr char kRegistered[] = "com.platform.account.user.registered.v1";
constexpr char kLogin[] = "com.platform.account.user.logged_in.v1";
constexpr char kSession[] = "com.platform.library.session.started.v1";
constexpr char kPurchase[] = "com.platform.payments.purchase.completed.v1";
constexpr char kRefund[] = "com.platform.payments.refund.completed.v1";
constexpr char kBlockKind[] = "test_block";  // a job kind whose runs wait at a gate (keeps a worker busy)
constexpr char kDownloadPrefix[] = "/api/v1/analytics/reports/instances/";
const std::vector<std::string> kKpis = {"dau",          "new_users", "sessions", "revenue_rub", "purchases_count",
                                        "paying_users", "arpu",      "payer_conversion"};

const Caller kAlice{"alice", false};
const Caller kBob{"bob", false};
const Caller kRoot{"root", true};

int64_t Ms(const std::string& text) {
  auto ms = common::ParseRfc3339Millis(text);
  EXPECT_TRUE(ms.ok()) << text;
  return ms.ok() ? *ms : 0;
}
std::string Text(int64_t unix_ms) { return common::FormatRfc3339Millis(unix_ms); }
std::string DayOf(int64_t unix_ms) { return Text(unix_ms).substr(0, 10); }
// The days from `first` to `last` (YYYY-MM-DD, both included).
std::vector<std::string> Days(const std::string& first, const std::string& last) {
  std::vector<std::string> days;
  for (int64_t at = Ms(first + "T00:00:00Z"); at <= Ms(last + "T00:00:00Z"); at += kDay) days.push_back(DayOf(at));
  return days;
}


// ---- The raw events and their KPIs ------------------------------------------------------------------------------

struct RawEvent {
  std::string user;  // original id (the store holds its pseudonym)
  std::string type;
  int64_t time_ms = 0;
  std::string game, country;
  std::optional<double> amount;
  std::string currency;
};

// 2024-03-04 .. 03-06 (UTC): nine users; registrations, logins, game sessions, purchases (RUB; u9 pays in KZT; some
// free claims), refunds; times anywhere in the day, so that Moscow days (UTC+3) differ from UTC days.
std::vector<RawEvent> MakeRawEvents() {
  std::vector<RawEvent> out;
  std::mt19937_64 rng(20240304);
  const int64_t first_day = Ms("2024-03-04T00:00:00Z");
  const std::vector<std::string> games = {"g1", "g2", "g3"};
  const std::vector<double> amounts = {0, 99.5, 250, 1000};
  for (int day = 0; day < 3; ++day) {
    for (int user_idx = 1; user_idx <= 9; ++user_idx) {
      const std::string user = "u" + std::to_string(user_idx);
      const std::string country = user_idx % 2 ? "RU" : "KZ";
      auto at = [&] { return first_day + day * kDay + static_cast<int64_t>(rng() % kDay); };
      if (day == (user_idx - 1) / 3) out.push_back({user, kRegistered, at(), "", country, std::nullopt, ""});
      if ((user_idx + day) % 3 != 0) out.push_back({user, kLogin, at(), "", country, std::nullopt, ""});
      if (rng() % 2 == 0) out.push_back({user, kSession, at(), games[rng() % 3], country, std::nullopt, ""});
      for (int purchase = 0; purchase < 2; ++purchase) {
        if (rng() % 3 != 0) continue;
        const int64_t time = at();
        const std::string game = games[rng() % 3];
        const double amount = amounts[rng() % 4];
        out.push_back({user, kPurchase, time, game, country, amount, user_idx == 9 ? "KZT" : "RUB"});
      }
    }
  }
  out.push_back({"u1", kRefund, Ms("2024-03-06T12:00:00Z"), "g1", "RU", 99.5, "RUB"});
  out.push_back({"u9", kRefund, Ms("2024-03-05T12:00:00Z"), "g2", "RU", 500, "KZT"});
  out.push_back({"u2", kPurchase, Ms("2024-03-06T22:10:00Z"), "g2", "KZ", 300, "RUB"});  // 03-07 in Moscow
  out.push_back({"u3", kLogin, Ms("2024-03-03T22:30:00Z"), "", "RU", std::nullopt, ""});  // 03-04 in Moscow
  return out;
}

// What a KPI report is restricted to: local days at a fixed UTC offset (Moscow is +3 all year since 2014), games
// (empty: all; events without a game are then left out), segment members.
struct Scope {
  int offset_hours = 0;
  std::set<std::string> games;
  std::optional<std::set<std::string>> members;
};

struct DayKpis {
  std::set<std::string> active, payers;
  int64_t new_users = 0, sessions = 0, purchases = 0;
  double revenue = 0;
};

// The built-in KPIs (docs/metrics.md section 4) per local day with plain loops. Active: registered, logged in, game
// session, purchase (refunds are not user-initiated); revenue: RUB purchases minus RUB refunds; paying: a purchase
// with an amount > 0 in any currency.
std::map<std::string, DayKpis> KpisPerDay(const std::vector<RawEvent>& events, const Scope& scope) {
  std::map<std::string, DayKpis> days;
  for (const RawEvent& event : events) {
    if (!scope.games.empty() && !scope.games.contains(event.game)) continue;
    if (scope.members && !scope.members->contains(event.user)) continue;
    DayKpis& day = days[DayOf(event.time_ms + scope.offset_hours * kHour)];
    const std::string& type = event.type;
    if (type == kRegistered || type == kLogin || type == kSession || type == kPurchase) day.active.insert(event.user);
    if (type == kRegistered) ++day.new_users;
    if (type == kSession) ++day.sessions;
    if (type == kPurchase) ++day.purchases;
    if (type == kPurchase && event.amount.value_or(0) > 0) day.payers.insert(event.user);
    if ((type == kPurchase || type == kRefund) && event.currency == "RUB") {
      day.revenue += (type == kRefund ? -1 : 1) * event.amount.value_or(0);
    }
  }
  return days;
}

// One metric of a day (null for a ratio over zero active users).
json KpiValue(const DayKpis& day, const std::string& metric) {
  const double dau = static_cast<double>(day.active.size());
  if (metric == "dau") return day.active.size();
  if (metric == "new_users") return day.new_users;
  if (metric == "sessions") return day.sessions;
  if (metric == "revenue_rub") return day.revenue;
  if (metric == "purchases_count") return day.purchases;
  if (metric == "paying_users") return day.payers.size();
  if (metric == "arpu") return dau > 0 ? json(day.revenue / dau) : json();
  if (metric == "payer_conversion") return dau > 0 ? json(static_cast<double>(day.payers.size()) / dau) : json();
  ADD_FAILURE() << "no reference for " << metric;
  return json();
}

// Compares a section's rows (objects keyed by column; numbers as JSON numbers, null as null) with the reference:
// one row per day of [first, last] in order, every metric of `metrics`.
void ExpectKpiRows(const std::vector<json>& rows, const std::map<std::string, DayKpis>& reference,
                   const std::string& first, const std::string& last, const std::vector<std::string>& metrics) {
  const std::vector<std::string> days = Days(first, last);
  ASSERT_EQ(rows.size(), days.size());
  for (size_t day_idx = 0; day_idx < days.size(); ++day_idx) {
    const json& row = rows[day_idx];
    EXPECT_EQ(row["date"], days[day_idx]);
    const auto found = reference.find(days[day_idx]);
    const DayKpis day = found == reference.end() ? DayKpis{} : found->second;
    for (const std::string& metric : metrics) {
      const json expected = KpiValue(day, metric);
      ASSERT_TRUE(row.contains(metric)) << metric << " " << row.dump();
      if (expected.is_null()) {
        EXPECT_TRUE(row[metric].is_null()) << days[day_idx] << " " << metric << " " << row.dump();
        continue;
      }
      ASSERT_TRUE(row[metric].is_number()) << days[day_idx] << " " << metric << " " << row.dump();
      const double want = expected.get<double>(), got = row[metric].get<double>();
      EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::abs(want))) << days[day_idx] << " " << metric;
    }
  }
}

// ---- Files -------------------------------------------------------------------------------------------------------

struct CsvField {
  std::string text;
  bool quoted = false;
};
using CsvRecord = std::vector<CsvField>;

// RFC 4180 with CRLF record ends (the last record's too); a malformed file fails the test.
std::vector<CsvRecord> ParseCsv(const std::string& text) {
  std::vector<CsvRecord> records;
  CsvRecord record;
  size_t pos = 0;
  while (pos < text.size()) {
    CsvField field;
    if (text[pos] == '"') {
      field.quoted = true;
      ++pos;
      while (true) {
        if (pos >= text.size()) {
          ADD_FAILURE() << "unterminated quoted field";
          return records;
        }
        if (text[pos] == '"') {
          if (pos + 1 < text.size() && text[pos + 1] == '"') {
            field.text += '"';
            pos += 2;
            continue;
          }
          ++pos;
          break;
        }
        field.text += text[pos++];
      }
    } else {
      while (pos < text.size() && text[pos] != ',' && text[pos] != '\r' && text[pos] != '\n' && text[pos] != '"') {
        field.text += text[pos++];
      }
    }
    record.push_back(std::move(field));
    if (pos < text.size() && text[pos] == ',') {
      ++pos;
      continue;
    }
    if (text.compare(pos, 2, "\r\n") != 0) {
      ADD_FAILURE() << "expected CRLF at byte " << pos;
      return records;
    }
    pos += 2;
    records.push_back(std::move(record));
    record.clear();
  }
  EXPECT_TRUE(record.empty()) << "the last record has no CRLF";
  return records;
}

// A parsed file as {"sections": [{"name", "columns": [names], "rows": [{column: value}]}]}: the JSON file's own
// document, or the CSV file's sections (numbers parsed, an empty unquoted field null; "section" and "date"
// columns stay text).
json CsvDocument(const std::string& text) {
  json sections = json::array();
  const std::vector<CsvRecord> records = ParseCsv(text);
  size_t record_idx = 0;
  while (record_idx < records.size()) {
    const CsvRecord& header = records[record_idx++];
    EXPECT_FALSE(header.empty());
    if (header.empty()) break;
    EXPECT_EQ(header[0].text, "section");
    json section = {{"columns", json::array()}, {"rows", json::array()}};
    for (size_t column_idx = 1; column_idx < header.size(); ++column_idx) {
      section["columns"].push_back(header[column_idx].text);
    }
    while (record_idx < records.size() && !(records[record_idx].size() == 1 && records[record_idx][0].text.empty() &&
                                            !records[record_idx][0].quoted)) {
      const CsvRecord& record = records[record_idx++];
      EXPECT_EQ(record.size(), header.size());
      if (record.size() != header.size()) continue;
      section["name"] = record[0].text;
      json row = json::object();
      for (size_t column_idx = 1; column_idx < record.size(); ++column_idx) {
        const std::string& column = header[column_idx].text;
        const CsvField& field = record[column_idx];
        if (field.text.empty() && !field.quoted) {
          row[column] = nullptr;
        } else if (column == "date" || column == "game_id" || field.quoted) {
          row[column] = field.text;
        } else {
          size_t used = 0;
          const double number = std::stod(field.text, &used);
          EXPECT_EQ(used, field.text.size()) << field.text;
          row[column] = number;
        }
      }
      section["rows"].push_back(std::move(row));
    }
    if (record_idx < records.size()) ++record_idx;  // the empty line between sections
    sections.push_back(std::move(section));
  }
  return {{"sections", sections}};
}

std::vector<json> Rows(const json& section) { return section["rows"].get<std::vector<json>>(); }

// ---- The stack ---------------------------------------------------------------------------------------------------

// A report service and its runner, started as application.cc starts them (RegisterJobs, Start, runner.Start) and
// stopped as it stops them (service, then runner: running instances finish, queued ones stay queued). The runner
// also runs kBlockKind, whose runs wait at blocker().
class ReportStack {
 public:
  ReportStack(MetadataStore& metadata, store::EventStore& store, metrics::MetricValues& values,
              const analysis::AnalysisOptions& analysis, blob::ObjectStore& objects, reports::SegmentLookup lookup,
              reports::ReportServiceOptions options, int workers)
      : runner_(metadata, {.workers = workers}),
        service_(metadata, store, values, analysis, objects, bus_, runner_, std::move(lookup), std::move(options)) {}
  ~ReportStack() {
    blocker_.Open();
    service_.Stop();
    runner_.Stop();
  }

  Status Start(bool start_runner = true) {
    service_.RegisterJobs();
    runner_.Register(kBlockKind, [this](const metadata::PipelineRun&, jobs::RunContext&) -> Result<json> {
      blocker_.Pass();
      return json::object();
    });
    ANALYTICS_RETURN_IF_ERROR(service_.Start());
    return start_runner ? runner_.Start() : Status::Ok();
  }
  Status StartRunner() { return runner_.Start(); }

  // Keeps one worker busy until blocker().Open().
  Status Block() {
    blocker_.Close();
    ANALYTICS_ASSIGN_OR_RETURN(auto run, runner_.Submit(kBlockKind, "t", json{{"n", ++blocks_}}, "test"));
    (void)run;
    return Status::Ok();
  }

  ReportService& service() { return service_; }
  jobs::PipelineRunner& runner() { return runner_; }
  bus::LocalEventBus& bus() { return bus_; }
  Gate& blocker() { return blocker_; }

  // The report.generated events published so far. An instance reads completed a moment before its event is
  // published (on the worker, right after the store write): wait until the runner has nothing left (at most 5 s;
  // a blocked job keeps it busy) so that callers who saw their instances finish see their events.
  std::vector<bus::ProducedEvent> Generated() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (runner_.Pending() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return bus_.Recent(0, 100000, reports::kGeneratedType).value();  // LocalEventBus: never an error
  }

 private:
  Gate blocker_;
  int blocks_ = 0;
  bus::LocalEventBus bus_;
  jobs::PipelineRunner runner_;
  ReportService service_;
};

// Polls the instance until it is completed, failed or cancelled (Internal after 60 s).
Result<json> WaitFinished(ReportService& service, const std::string& id, const Caller& caller = kRoot) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string status;
  while (std::chrono::steady_clock::now() < deadline) {
    ANALYTICS_ASSIGN_OR_RETURN(json doc, service.GetInstance(id, caller));
    status = doc["status"].get<std::string>();
    if (status == "completed" || status == "failed" || status == "cancelled") return doc;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::Internal("instance " + id + " still " + status + " after 60 s");
}

// The instance's file through OpenDownload.
Result<std::string> Download(ReportService& service, const std::string& id, const Caller& caller = kRoot) {
  ANALYTICS_ASSIGN_OR_RETURN(ReportService::Download download, service.OpenDownload(id, caller));
  std::string bytes;
  char buffer[4096];
  while (true) {
    ANALYTICS_ASSIGN_OR_RETURN(size_t got, download.reader->Read(buffer, sizeof(buffer)));
    if (got == 0) break;
    bytes.append(buffer, got);
  }
  if (bytes.size() != download.reader->size()) return Status::Internal("short read");
  return bytes;
}

json Parameter(const std::string& name, const std::string& type, json extra = json::object()) {
  extra["name"] = name;
  extra["type"] = type;
  return extra;
}

// ---- The fixture -----------------------------------------------------------------------------------------------

template <typename Backend>
class ReportServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pseudonymizer = events::Pseudonymizer::Create(std::string(32, 'r'));
    ASSERT_TRUE(pseudonymizer.ok()) << pseudonymizer.status().ToString();
    pseudonymizer_ = std::move(pseudonymizer).value();
    ASSERT_OK_AND_ASSIGN(metadata_, backend_.Open());

    // The events: most in a segment, the last ten in the memtable, so reports read both.
    raw_ = MakeRawEvents();
    std::vector<events::StoredEvent> stored;
    for (const RawEvent& raw : raw_) {
      events::StoredEvent event;
      event.id = "ev-" + std::to_string(stored.size());
      event.source = "/services/test";
      event.type = raw.type;
      event.time_ms = raw.time_ms;
      event.received_ms = raw.time_ms + 1000;
      event.user = pseudonymizer_->Pseudonymize(raw.user);
      event.user_in_subject = true;
      event.game_id = raw.game;
      event.country = raw.country;
      event.amount = raw.amount;
      event.currency = raw.currency;
      json data = json::object();
      if (!raw.game.empty()) data["game_id"] = raw.game;
      if (!raw.country.empty()) data["country"] = raw.country;
      if (raw.amount) data["amount"] = *raw.amount;
      if (!raw.currency.empty()) data["currency"] = raw.currency;
      event.data = data.dump();
      stored.push_back(std::move(event));
    }
    ASSERT_OK_AND_ASSIGN(store_, store::EmbeddedEventStore::Open(UnsyncedTestStoreOptions(store_dir_)));
    ASSERT_OK(store_->Append(std::vector<events::StoredEvent>(stored.begin(), stored.end() - 10)));
    ASSERT_OK(store_->Flush());
    ASSERT_OK(store_->Append(std::vector<events::StoredEvent>(stored.end() - 10, stored.end())));

    catalog_ = std::make_unique<metrics::MetricCatalog>(*metadata_);
    ASSERT_OK(catalog_->SeedBuiltins(common::NowMillis()));
    segment_runner_ = std::make_unique<jobs::PipelineRunner>(*metadata_);
    segments::SegmentServiceOptions segment_options;
    segment_options.query_threads = 2;
    segments_ = std::make_unique<segments::SegmentService>(*metadata_, *store_, *pseudonymizer_, segment_bus_,
                                                           *segment_runner_, segment_options);
    segments_->RegisterJobs();
    ASSERT_OK(segments_->Start());
    ASSERT_OK(segment_runner_->Start());
    segments::SegmentService* segments = segments_.get();
    analysis_.segment_scope = [segments](const std::string& id) { return segments->ScopeOf(id); };
    metrics::MetricValuesOptions values_options;
    values_options.segment_scope = analysis_.segment_scope;
    metric_values_ = std::make_unique<metrics::MetricValues>(*catalog_, *store_, values_options);
    ASSERT_OK_AND_ASSIGN(objects_, blob::LocalObjectStore::OpenRoot({.root = ObjectRoot().string()}));
  }

  void TearDown() override {
    if (segment_runner_) segment_runner_->Stop();
    if (segments_) segments_->Stop();
  }

  std::filesystem::path ObjectRoot() const { return objects_dir_.path() / "reports-bucket"; }

  // The callbacks application.cc builds over the segment service, with the test hook in front of `size`.
  reports::SegmentLookup Lookup() {
    reports::SegmentLookup lookup;
    segments::SegmentService* segment_service = segments_.get();
    lookup.size = [this, segment_service](const std::string& id) -> Result<json> {
      std::function<void(const std::string&)> hook;
      {
        std::lock_guard lock(hook_mu_);
        ++size_calls_[id];
        hook = size_hook_;
      }
      if (hook) hook(id);
      ANALYTICS_ASSIGN_OR_RETURN(json segment, segment_service->Get(id));
      json out = {{"segment_id", id},       {"name", segment.value("name", "")}, {"type", segment.value("type", "")},
                  {"users_count", nullptr}, {"as_of", nullptr},                  {"refreshed_at", nullptr}};
      auto count = segment_service->UsersCount(id);
      if (count.ok()) {
        for (const char* key : {"users_count", "as_of", "refreshed_at"}) out[key] = (*count)[key];
      } else if (count.status().code() != StatusCode::kFailedPrecondition) {
        return count.status();
      }
      return out;
    };
    lookup.ids = [segment_service]() -> Result<std::vector<std::string>> {
      ANALYTICS_ASSIGN_OR_RETURN(json list, segment_service->List(std::nullopt));
      std::vector<std::string> ids;
      for (const auto& item : list["items"]) ids.push_back(item["id"].get<std::string>());
      return ids;
    };
    return lookup;
  }

  void SetSizeHook(std::function<void(const std::string&)> hook) {
    std::lock_guard lock(hook_mu_);
    size_hook_ = std::move(hook);
  }
  int SizeCalls(const std::string& id) {
    std::lock_guard lock(hook_mu_);
    return size_calls_[id];
  }

  reports::ReportServiceOptions Options() const {
    reports::ReportServiceOptions options;
    options.schedule_check_ms = kHour;                  // the background loop stays out of the way
    options.cleanup_interval_ms = 24 * kHour;
    options.schedule_catch_up_ms = int64_t{3650} * kDay;  // back to 2024, where the events are
    options.temp_dir = (objects_dir_.path() / "tmp").string();
    return options;
  }

  std::unique_ptr<ReportStack> MakeStack(int workers = 1, std::optional<reports::ReportServiceOptions> options = {}) {
    return std::make_unique<ReportStack>(*metadata_, *store_, *metric_values_, analysis_, *objects_, Lookup(),
                                         options ? *options : Options(), workers);
  }

  // A started stack (nullptr and a test failure when it does not start).
  std::unique_ptr<ReportStack> StartStack(int workers = 1, bool start_runner = true,
                                          std::optional<reports::ReportServiceOptions> options = {}) {
    auto stack = MakeStack(workers, std::move(options));
    Status started = stack->Start(start_runner);
    EXPECT_TRUE(started.ok()) << started.ToString();
    return started.ok() ? std::move(stack) : nullptr;
  }

  // The keys of the report files in the object store.
  std::vector<std::string> ObjectKeys() {
    auto listed = objects_->List("");
    EXPECT_TRUE(listed.ok()) << listed.status().ToString();
    std::vector<std::string> keys;
    if (listed.ok()) {
      for (const auto& info : *listed) keys.push_back(info.key);
    }
    return keys;
  }
  // The key of an instance's file ("" when there is none).
  std::string KeyOf(const std::string& instance_id) {
    for (const std::string& key : ObjectKeys()) {
      const size_t slash = key.rfind('/');
      if (key.compare(slash + 1, instance_id.size() + 1, instance_id + ".") == 0) return key;
    }
    return "";
  }
  // Files still being written (the local store's staging folder).
  size_t StagingFiles() {
    size_t count = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(ObjectRoot() / blob::kLocalStagingFolder, ec);
         !ec && it != std::filesystem::directory_iterator(); ++it) {
      ++count;
    }
    return count;
  }

  // Moves a definition's timestamps back to `at_ms`, as if it had been created or last edited then.
  void Backdate(const std::string& id, int64_t at_ms) {
    ASSERT_OK_AND_ASSIGN(metadata::ReportDefinitionRecord record, metadata_->GetReportDefinition(id));
    const int64_t version = record.version;
    record.version = version + 1;
    record.created_at_ms = record.updated_at_ms = at_ms;
    ASSERT_OK(metadata_->UpdateReportDefinition(record, version));
  }

  // A static segment of `users` (original ids); its id.
  std::string CreateSegment(const std::string& name, const std::vector<std::string>& users) {
    auto created = segments_->Create({{"name", name}, {"type", "static"}, {"user_ids", users}}, "root");
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? (*created)["id"].get<std::string>() : "";
  }

  static std::string KpiSummaryId() { return common::NameUuid("builtin-report-definition|daily_kpi_summary"); }

  Backend backend_;
  TempDir store_dir_, objects_dir_;
  std::unique_ptr<events::Pseudonymizer> pseudonymizer_;
  std::unique_ptr<MetadataStore> metadata_;
  std::unique_ptr<store::EmbeddedEventStore> store_;
  std::vector<RawEvent> raw_;
  std::unique_ptr<metrics::MetricCatalog> catalog_;
  bus::LocalEventBus segment_bus_;
  std::unique_ptr<jobs::PipelineRunner> segment_runner_;
  std::unique_ptr<segments::SegmentService> segments_;
  analysis::AnalysisOptions analysis_;
  std::unique_ptr<metrics::MetricValues> metric_values_;
  std::unique_ptr<blob::LocalObjectStore> objects_;
  std::mutex hook_mu_;
  std::function<void(const std::string&)> size_hook_;  // guarded by hook_mu_
  std::map<std::string, int> size_calls_;              // guarded by hook_mu_
};

TYPED_TEST_SUITE(ReportServiceTest, MetadataBackends, MetadataBackendNames);

// ---- Definitions -----------------------------------------------------------------------------------------------

std::vector<std::string> Names(const json& list) {
  std::vector<std::string> names;
  for (const json& item : list["items"]) names.push_back(item["name"]);
  return names;
}

TYPED_TEST(ReportServiceTest, BuiltinsAreSeededOnceWithStableIdsAndRecreatedWhenDeleted) {
  const std::vector<std::string> builtins = {"daily_kpi_summary", "experiment_readout", "game_sales_by_country",
                                             "weekly_retention"};
  json first;
  {
    auto stack = this->StartStack(1, false);
    ASSERT_NE(stack, nullptr);
    ASSERT_OK_AND_ASSIGN(first, stack->service().ListDefinitions());
    EXPECT_EQ(Names(first), builtins);
    EXPECT_EQ(first["total"], 4);
    for (const json& item : first["items"]) {
      EXPECT_EQ(item["id"], common::NameUuid("builtin-report-definition|" + item["name"].get<std::string>()));
      EXPECT_EQ(item["builtin"], true);
      EXPECT_EQ(item["version"], 1);
      EXPECT_EQ(item["created_by"], "system");
      EXPECT_TRUE(item["next_run_at"].is_null());
      EXPECT_TRUE(item["schedule"].is_null());
    }
    // A second Start of the same service seeds nothing more.
    stack->service().Stop();
    ASSERT_OK(stack->service().Start());
    ASSERT_OK_AND_ASSIGN(json again, stack->service().ListDefinitions());
    EXPECT_EQ(again, first);
  }
  // A new process: the same four, untouched (an edited built-in keeps its edit).
  {
    auto stack = this->StartStack(1, false);
    ASSERT_NE(stack, nullptr);
    ASSERT_OK_AND_ASSIGN(json list, stack->service().ListDefinitions());
    EXPECT_EQ(list, first);
    ASSERT_OK_AND_ASSIGN(json kpis, stack->service().GetDefinition(this->KpiSummaryId()));
    json body = kpis;
    for (const char* field : {"id", "version", "builtin", "created_at", "updated_at", "created_by", "next_run_at"}) {
      body.erase(field);
    }
    body["title"] = "KPIs (edited)";
    ASSERT_OK_AND_ASSIGN(json edited, stack->service().UpdateDefinition(this->KpiSummaryId(), body, 1, "root"));
    EXPECT_EQ(edited["version"], 2);
    ASSERT_OK(stack->service().DeleteDefinition(common::NameUuid("builtin-report-definition|weekly_retention"), "root"));
  }
  // The next start re-creates the deleted one under the same id and keeps the edit.
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ASSERT_OK_AND_ASSIGN(json list, stack->service().ListDefinitions());
  EXPECT_EQ(Names(list), builtins);
  ASSERT_OK_AND_ASSIGN(json kpis, stack->service().GetDefinition(this->KpiSummaryId()));
  EXPECT_EQ(kpis["title"], "KPIs (edited)");
  EXPECT_EQ(kpis["version"], 2);
  ASSERT_OK_AND_ASSIGN(json retention,
                       stack->service().GetDefinition(common::NameUuid("builtin-report-definition|weekly_retention")));
  EXPECT_EQ(retention["builtin"], true);
  EXPECT_EQ(retention["version"], 1);
  EXPECT_EQ(retention["sections"], first["items"][3]["sections"]);
}

json RevenueDefinition(const std::string& name = "revenue_by_game") {
  return {{"name", name},
          {"title", "Revenue by game"},
          {"parameters",
           {Parameter("period_start", "date", {{"required", true}}),
            Parameter("period_end", "date", {{"default", "2024-03-06"}}),
            Parameter("timezone", "timezone", {{"default", "UTC"}}), Parameter("note", "string")}},
          {"sections",
           {{{"name", "activity"}, {"title", "Active users"}, {"type", "metrics"}, {"metrics", {"dau", "paying_users"}}},
            {{"name", "by_game"},
             {"type", "metrics"},
             {"metrics", {"revenue_rub", "purchases_count"}},
             {"dimensions", {"game_id"}}}}}};
}

TYPED_TEST(ReportServiceTest, DefinitionsCanBeCreatedReadListedUpdatedAndDeleted) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  const int64_t before = common::NowMillis();
  ASSERT_OK_AND_ASSIGN(json created, service.CreateDefinition(RevenueDefinition(), "alice"));
  const std::string id = created["id"];
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(created["name"], "revenue_by_game");
  EXPECT_EQ(created["title"], "Revenue by game");
  EXPECT_EQ(created["version"], 1);
  EXPECT_EQ(created["builtin"], false);
  EXPECT_EQ(created["created_by"], "alice");
  EXPECT_TRUE(created["next_run_at"].is_null());
  EXPECT_TRUE(created["schedule"].is_null());
  EXPECT_EQ(created["sections"], RevenueDefinition()["sections"]);
  // Normalized parameters: every member explicit.
  EXPECT_EQ(created["parameters"][0],
            json({{"name", "period_start"}, {"type", "date"}, {"required", true}, {"default", nullptr},
                  {"description", ""}}));
  EXPECT_EQ(created["parameters"][3]["default"], nullptr);
  ASSERT_TRUE(created["created_at"].is_string());
  EXPECT_GE(Ms(created["created_at"]), before);
  EXPECT_EQ(created["updated_at"], created["created_at"]);

  EXPECT_EQ(service.CreateDefinition(RevenueDefinition(), "bob").status().code(), StatusCode::kAlreadyExists);
  ASSERT_OK_AND_ASSIGN(json got, service.GetDefinition(id));
  EXPECT_EQ(got, created);
  EXPECT_EQ(service.GetDefinition("no-such-definition").status().code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(json list, service.ListDefinitions());
  EXPECT_EQ(Names(list), (std::vector<std::string>{"daily_kpi_summary", "experiment_readout", "game_sales_by_country",
                                                   "revenue_by_game", "weekly_retention"}));
  EXPECT_EQ(list["items"][3], created);

  // Update: If-Match checked, the version counts, the name may change but not to a taken one.
  json body = RevenueDefinition("revenue_per_game");
  body["title"] = "Revenue per game";
  ASSERT_OK_AND_ASSIGN(json updated, service.UpdateDefinition(id, body, 1, "bob"));
  EXPECT_EQ(updated["id"], id);
  EXPECT_EQ(updated["name"], "revenue_per_game");
  EXPECT_EQ(updated["version"], 2);
  EXPECT_EQ(updated["created_by"], "alice");
  EXPECT_EQ(updated["created_at"], created["created_at"]);
  EXPECT_GE(Ms(updated["updated_at"]), Ms(created["updated_at"]));
  EXPECT_EQ(service.UpdateDefinition(id, body, 1, "bob").status().code(), StatusCode::kFailedPrecondition);
  body["name"] = "daily_kpi_summary";
  EXPECT_EQ(service.UpdateDefinition(id, body, 2, "bob").status().code(), StatusCode::kAlreadyExists);
  body["name"] = "revenue_per_game";
  body["title"] = "Last writer wins";
  ASSERT_OK_AND_ASSIGN(updated, service.UpdateDefinition(id, body, std::nullopt, "bob"));
  EXPECT_EQ(updated["version"], 3);
  EXPECT_EQ(service.UpdateDefinition("no-such-definition", body, std::nullopt, "bob").status().code(),
            StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(got, service.GetDefinition(id));
  EXPECT_EQ(got["title"], "Last writer wins");

  // Delete.
  ASSERT_OK(service.DeleteDefinition(id, "bob"));
  EXPECT_EQ(service.GetDefinition(id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service.DeleteDefinition(id, "bob").code(), StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(list, service.ListDefinitions());
  EXPECT_EQ(list["total"], 4);
}

TYPED_TEST(ReportServiceTest, DefinitionValidationErrorsKeepTheirJsonPath) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  ASSERT_OK_AND_ASSIGN(json created, service.CreateDefinition(RevenueDefinition(), "alice"));
  const std::string id = created["id"];

  struct Case {
    std::function<void(json&)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](json& d) { d["sections"][1]["metrics"][1] = 7; }, "sections[1].metrics[1]"},
      {[](json& d) { d["parameters"][1]["default"] = "2024-13-01"; }, "parameters[1].default"},
      {[](json& d) { d["parameters"][2]["type"] = "string"; }, "parameters[2].type"},
      {[](json& d) { d["sections"][0]["metrics"] = {"dau", "${nope}"}; }, "sections[0].metrics[1]"},
      {[](json& d) { d["schedule"] = {{"cron", "61 * * * *"}}; }, "schedule.cron"},
      {[](json& d) { d["schedule"] = {{"cron", "0 6 * * *"}}; }, "schedule.parameters.period_start"},
      {[](json& d) { d["colour"] = "red"; }, "colour"},
  };
  for (const Case& test_case : cases) {
    json body = RevenueDefinition("another_name");
    test_case.change(body);
    auto result = service.CreateDefinition(body, "alice");
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << test_case.field << " " << body.dump();
    EXPECT_EQ(result.status().field(), test_case.field) << result.status().ToString();
    auto update = service.UpdateDefinition(id, body, std::nullopt, "alice");
    EXPECT_EQ(update.status().code(), StatusCode::kInvalidArgument) << test_case.field;
    EXPECT_EQ(update.status().field(), test_case.field) << update.status().ToString();
  }
  // Nothing changed.
  ASSERT_OK_AND_ASSIGN(json got, service.GetDefinition(id));
  EXPECT_EQ(got, created);
  ASSERT_OK_AND_ASSIGN(json list, service.ListDefinitions());
  EXPECT_EQ(list["total"], 5);
}

// ---- Generation ------------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, CustomReportFileEqualsTheRawEvents) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  ASSERT_OK_AND_ASSIGN(json definition, service.CreateDefinition(RevenueDefinition(), "bob"));
  const std::string definition_id = definition["id"];

  const int64_t requested = common::NowMillis();
  ASSERT_OK_AND_ASSIGN(json queued, service.RequestInstance({{"report_definition_id", definition_id},
                                                             {"parameters", {{"period_start", "2024-03-04"}}},
                                                             {"output_format", "json"}},
                                                            kAlice));
  const std::string id = queued["instance_id"];
  const json bound = {{"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}, {"timezone", "UTC"}, {"note", nullptr}};
  EXPECT_EQ(queued["status"], "queued");
  EXPECT_EQ(queued["progress"], 0);
  EXPECT_EQ(queued["parameters"], bound);
  EXPECT_TRUE(queued["file"].is_null());
  EXPECT_TRUE(queued["row_count"].is_null());
  EXPECT_TRUE(queued["sections"].is_null());
  EXPECT_TRUE(queued["started_at"].is_null());
  // Not ready yet.
  EXPECT_EQ(service.OpenDownload(id, kAlice).status().code(), StatusCode::kFailedPrecondition);

  // The definition changes before the instance runs: the instance generates what was asked (its snapshot).
  json changed = RevenueDefinition();
  changed["sections"].erase(1);
  ASSERT_OK(service.UpdateDefinition(definition_id, changed, 1, "bob"));
  ASSERT_OK(stack->StartRunner());
  ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, id, kAlice));

  // The file.
  ASSERT_OK_AND_ASSIGN(std::string bytes, Download(service, id, kAlice));
  const json file = json::parse(bytes, nullptr, false);
  ASSERT_FALSE(file.is_discarded()) << bytes.substr(0, 200);
  EXPECT_EQ(file["report"]["instance_id"], id);
  EXPECT_EQ(file["report"]["definition_id"], definition_id);
  EXPECT_EQ(file["report"]["definition_name"], "revenue_by_game");
  EXPECT_EQ(file["report"]["title"], "Revenue by game");
  EXPECT_EQ(file["report"]["definition_version"], 1);
  EXPECT_EQ(file["report"]["timezone"], "UTC");
  EXPECT_EQ(file["parameters"], bound);
  ASSERT_EQ(file["sections"].size(), 2u);
  const json& activity = file["sections"][0];
  EXPECT_EQ(activity["name"], "activity");
  EXPECT_EQ(activity["title"], "Active users");
  const auto reference = KpisPerDay(this->raw_, {});
  ExpectKpiRows(Rows(activity), reference, "2024-03-04", "2024-03-06", {"dau", "paying_users"});
  EXPECT_EQ(activity["row_count"], 3);

  // by_game: per day and game, revenue (RUB purchases minus RUB refunds) and purchases (any currency); a game one
  // metric never read is null there, a day without its events 0.
  std::map<std::string, std::map<std::string, double>> revenue, purchases;  // game -> day -> value
  for (const RawEvent& event : this->raw_) {
    const std::string day = DayOf(event.time_ms);
    if (day < "2024-03-04" || day > "2024-03-06") continue;
    if ((event.type == kPurchase || event.type == kRefund) && event.currency == "RUB") {
      revenue[event.game][day] += (event.type == kRefund ? -1 : 1) * event.amount.value_or(0);
    }
    if (event.type == kPurchase) purchases[event.game][day] += 1;
  }
  std::set<std::string> games;
  for (const auto& [game, days] : revenue) games.insert(game);
  for (const auto& [game, days] : purchases) games.insert(game);
  std::map<std::pair<std::string, std::string>, json> expected;
  for (const std::string& day : Days("2024-03-04", "2024-03-06")) {
    for (const std::string& game : games) {
      auto value = [&](const std::map<std::string, std::map<std::string, double>>& metric) -> json {
        const auto group = metric.find(game);
        if (group == metric.end()) return nullptr;
        const auto cell = group->second.find(day);
        return cell == group->second.end() ? 0.0 : cell->second;
      };
      expected[{day, game}] = {{"revenue_rub", value(revenue)}, {"purchases_count", value(purchases)}};
    }
  }
  const json& by_game = file["sections"][1];
  EXPECT_EQ(by_game["name"], "by_game");
  ASSERT_EQ(by_game["rows"].size(), expected.size());
  std::string previous_day;
  for (const json& row : by_game["rows"]) {
    const std::string day = row["date"];
    EXPECT_GE(day, previous_day) << "rows by bucket";
    previous_day = day;
    const auto want = expected.find({day, row["game_id"].get<std::string>()});
    ASSERT_NE(want, expected.end()) << row.dump();
    for (const char* metric : {"revenue_rub", "purchases_count"}) {
      if (want->second[metric].is_null()) {
        EXPECT_TRUE(row[metric].is_null()) << row.dump();
      } else {
        EXPECT_DOUBLE_EQ(row[metric].get<double>(), want->second[metric].get<double>()) << row.dump();
      }
    }
    expected.erase(want);
  }
  EXPECT_TRUE(expected.empty());

  // The instance document.
  const int64_t rows = 3 + static_cast<int64_t>(by_game["rows"].size());
  EXPECT_EQ(doc["status"], "completed") << doc.dump();
  EXPECT_EQ(doc["instance_id"], id);
  EXPECT_EQ(doc["report_definition_id"], definition_id);
  EXPECT_EQ(doc["report_name"], "revenue_by_game");
  EXPECT_EQ(doc["definition_version"], 1);
  EXPECT_EQ(doc["progress"], 1);
  EXPECT_EQ(doc["parameters"], bound);
  EXPECT_EQ(doc["output_format"], "json");
  EXPECT_EQ(doc["requested_by"], "alice");
  EXPECT_EQ(doc["trigger"], "manual");
  EXPECT_TRUE(doc["scheduled_for"].is_null());
  EXPECT_EQ(doc["recipients"], json::array());
  EXPECT_TRUE(doc["error"].is_null());
  EXPECT_EQ(doc["row_count"], rows);
  EXPECT_EQ(doc["sections"], json({{{"name", "activity"}, {"title", "Active users"}, {"type", "metrics"}, {"rows", 3}},
                                   {{"name", "by_game"}, {"title", "by_game"}, {"type", "metrics"},
                                    {"rows", by_game["rows"].size()}}}));
  EXPECT_GE(Ms(doc["created_at"]), requested);
  EXPECT_LE(Ms(doc["created_at"]), Ms(doc["started_at"]));
  EXPECT_LE(Ms(doc["started_at"]), Ms(doc["finished_at"]));
  EXPECT_EQ(doc["duration_ms"], Ms(doc["finished_at"]) - Ms(doc["started_at"]));
  ASSERT_TRUE(doc["file"].is_object()) << doc.dump();
  const std::string key = this->KeyOf(id);
  ASSERT_FALSE(key.empty());
  EXPECT_EQ(key, "reports/" + DayOf(Ms(doc["created_at"])).replace(4, 1, "/").replace(7, 1, "/") + "/" + id + ".json");
  ASSERT_OK_AND_ASSIGN(blob::ObjectInfo info, this->objects_->Stat(key));
  EXPECT_EQ(doc["file"]["size_bytes"], info.size);
  EXPECT_EQ(info.size, bytes.size());
  EXPECT_EQ(doc["file"]["content_type"], "application/json");
  EXPECT_EQ(doc["file"]["file_name"], "revenue_by_game_2024-03-04_2024-03-06.json");
  EXPECT_EQ(doc["file"]["download_path"], kDownloadPrefix + id + "/download");
  const int64_t to_expiry = Ms(doc["file"]["expires_at"]) - Ms(doc["finished_at"]);
  EXPECT_LE(to_expiry, 30 * kDay);
  EXPECT_GT(to_expiry, 30 * kDay - 10000);
  ASSERT_OK_AND_ASSIGN(ReportService::Download download, service.OpenDownload(id, kAlice));
  EXPECT_EQ(download.content_type, "application/json");
  EXPECT_EQ(download.file_name, "revenue_by_game_2024-03-04_2024-03-06.json");

  // report.generated, once.
  const auto generated = stack->Generated();
  ASSERT_EQ(generated.size(), 1u);
  EXPECT_EQ(generated[0].key, id);
  const json& event = generated[0].event;
  EXPECT_EQ(event["type"], reports::kGeneratedType);
  EXPECT_EQ(event["subject"], id);
  EXPECT_EQ(event["data"]["instance_id"], id);
  EXPECT_EQ(event["data"]["report_definition_id"], definition_id);
  EXPECT_EQ(event["data"]["owner"], "alice");
  EXPECT_EQ(event["data"]["trigger"], "manual");
  EXPECT_EQ(event["data"]["size_bytes"], bytes.size());
  EXPECT_EQ(event["data"]["row_count"], rows);
  EXPECT_EQ(event["data"]["output_format"], "json");
  EXPECT_EQ(event["data"]["download_path"], kDownloadPrefix + id + "/download");
  EXPECT_EQ(event["data"]["recipients"], json::array());
  EXPECT_EQ(this->StagingFiles(), 0u);
}

TYPED_TEST(ReportServiceTest, DailyKpiSummaryCsvEqualsTheRawEvents) {
  auto stack = this->StartStack(2);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  const std::string members_segment = this->CreateSegment("buyers", {"u1", "u2", "u3", "u9"});
  struct Case {
    json parameters;
    Scope scope;
    std::string first, last;
  };
  const std::vector<Case> cases = {
      {{{"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}}, {}, "2024-03-04", "2024-03-06"},
      // Moscow days: 03-07 holds the late purchase of 03-06 UTC, 03-04 the login of 03-03 22:30 UTC.
      {{{"period_start", "2024-03-04"}, {"period_end", "2024-03-07"}, {"timezone", "Europe/Moscow"}},
       {.offset_hours = 3},
       "2024-03-04",
       "2024-03-07"},
      // Only g1 and g2: logins and registrations carry no game.
      {{{"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}, {"game_ids", {"g1", "g2"}}},
       {.games = {"g1", "g2"}},
       "2024-03-04",
       "2024-03-06"},
      // Only the segment's members.
      {{{"period_start", "2024-03-03"}, {"period_end", "2024-03-06"}, {"segment", members_segment}},
       {.members = std::set<std::string>{"u1", "u2", "u3", "u9"}},
       "2024-03-03",
       "2024-03-06"},
  };
  std::vector<std::string> ids;
  for (const Case& test_case : cases) {
    ASSERT_OK_AND_ASSIGN(json queued,
                         service.RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                                  {"parameters", test_case.parameters}},
                                                 kAlice));
    EXPECT_EQ(queued["output_format"], "csv");
    ids.push_back(queued["instance_id"]);
  }
  for (size_t case_idx = 0; case_idx < cases.size(); ++case_idx) {
    SCOPED_TRACE(cases[case_idx].parameters.dump());
    ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, ids[case_idx]));
    ASSERT_EQ(doc["status"], "completed") << doc.dump();
    ASSERT_OK_AND_ASSIGN(std::string bytes, Download(service, ids[case_idx], kAlice));
    const json file = CsvDocument(bytes);
    ASSERT_EQ(file["sections"].size(), 1u) << bytes;
    const json& section = file["sections"][0];
    EXPECT_EQ(section["name"], "kpis");
    json columns = {"date"};
    for (const std::string& metric : kKpis) columns.push_back(metric);
    EXPECT_EQ(section["columns"], columns);
    const auto reference = KpisPerDay(this->raw_, cases[case_idx].scope);
    ExpectKpiRows(Rows(section), reference, cases[case_idx].first, cases[case_idx].last, kKpis);
    const size_t days = Days(cases[case_idx].first, cases[case_idx].last).size();
    EXPECT_EQ(doc["row_count"], days);
    EXPECT_EQ(doc["sections"], json({{{"name", "kpis"}, {"title", "KPIs per day"}, {"type", "metrics"}, {"rows", days}}}));
    EXPECT_EQ(doc["file"]["size_bytes"], bytes.size());
    EXPECT_EQ(doc["file"]["content_type"], "text/csv; charset=utf-8");
    json bound = {{"timezone", "UTC"}, {"game_ids", json::array()}, {"segment", nullptr}};
    bound.update(cases[case_idx].parameters);
    EXPECT_EQ(doc["parameters"], bound);
  }
  // The segment case differs from the unrestricted one (the test would not notice a segment that is ignored).
  EXPECT_NE(KpisPerDay(this->raw_, cases[3].scope).at("2024-03-05").active.size(),
            KpisPerDay(this->raw_, {}).at("2024-03-05").active.size());

  // Relative dates bind to the request day (UTC, the default time zone).
  const std::string today_before = DayOf(common::NowMillis());
  ASSERT_OK_AND_ASSIGN(json relative,
                       service.RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                                {"parameters", {{"period_start", "2024-03-05"}, {"period_end", "today"}}}},
                                               kAlice));
  const std::string today_after = DayOf(common::NowMillis());
  const std::string bound_end = relative["parameters"]["period_end"];
  EXPECT_TRUE(bound_end == today_before || bound_end == today_after) << bound_end;
  ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, relative["instance_id"]));
  ASSERT_EQ(doc["status"], "completed") << doc.dump();
  EXPECT_EQ(doc["row_count"], Days("2024-03-05", bound_end).size());
  ASSERT_OK_AND_ASSIGN(std::string bytes, Download(service, relative["instance_id"], kAlice));
  const json file = CsvDocument(bytes);
  std::vector<json> rows = Rows(file["sections"][0]);
  rows.resize(std::min<size_t>(rows.size(), 4));  // 03-05, 03-06 with events; 03-07, 03-08 none
  ExpectKpiRows(rows, KpisPerDay(this->raw_, {}), "2024-03-05", "2024-03-08", kKpis);
}

// ---- Request errors ---------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, RequestErrorsNameTheParameter) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  const std::string segment = this->CreateSegment("some", {"u1"});
  const json good = {{"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}};
  auto request = [&](json parameters, json extra = json::object()) {
    json body = {{"report_definition_id", this->KpiSummaryId()}, {"parameters", std::move(parameters)}};
    body.update(extra);
    return service.RequestInstance(body, kAlice);
  };
  auto with = [&](const char* name, json value) {
    json parameters = good;
    parameters[name] = std::move(value);
    return parameters;
  };
  struct Case {
    Result<json> result;
    StatusCode code;
    std::string field;
  };
  json missing = good;
  missing.erase("period_start");
  const std::vector<Case> cases = {
      {service.RequestInstance({{"report_definition_id", "no-such-definition"}, {"parameters", good}}, kAlice),
       StatusCode::kNotFound, ""},
      {request(with("colour", "red")), StatusCode::kInvalidArgument, "parameters.colour"},
      {request(missing), StatusCode::kInvalidArgument, "parameters.period_start"},
      {request(with("period_start", "2024-02-30")), StatusCode::kInvalidArgument, "parameters.period_start"},
      {request(with("period_start", "last tuesday")), StatusCode::kInvalidArgument, "parameters.period_start"},
      {request(with("period_end", "2024-03-03")), StatusCode::kInvalidArgument, "parameters.period_end"},
      {request(with("timezone", "Mars/Olympus")), StatusCode::kInvalidArgument, "parameters.timezone"},
      {request(with("game_ids", {"g1", 2})), StatusCode::kInvalidArgument, "parameters.game_ids[1]"},
      {request(with("segment", "no-such-segment")), StatusCode::kInvalidArgument, "parameters.segment"},
      {request(json::array()), StatusCode::kInvalidArgument, "parameters"},
      {request(good, {{"output_format", "pdf"}}), StatusCode::kInvalidArgument, "output_format"},
      {request(good, {{"output_format", 1}}), StatusCode::kInvalidArgument, "output_format"},
      {request(good, {{"priority", "high"}}), StatusCode::kInvalidArgument, "priority"},
      {service.RequestInstance({{"parameters", good}}, kAlice), StatusCode::kInvalidArgument, "report_definition_id"},
  };
  for (size_t case_idx = 0; case_idx < cases.size(); ++case_idx) {
    const Status& status = cases[case_idx].result.status();
    EXPECT_EQ(status.code(), cases[case_idx].code) << case_idx << " " << status.ToString();
    EXPECT_EQ(status.field(), cases[case_idx].field) << case_idx << " " << status.ToString();
  }
  // Nothing was queued; a good request with a known segment is.
  ASSERT_OK_AND_ASSIGN(json list, service.ListInstances({}, kRoot));
  EXPECT_TRUE(list["items"].empty());
  ASSERT_OK_AND_ASSIGN(json queued, request(with("segment", segment), {{"output_format", "xlsx"}}));
  EXPECT_EQ(queued["parameters"]["segment"], segment);
  EXPECT_EQ(queued["output_format"], "xlsx");
}

// ---- Ownership and listing --------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, InstancesBelongToTheirRequesterAndListsFilterAndPage) {
  auto stack = this->StartStack(2);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  ASSERT_OK_AND_ASSIGN(json definition, service.CreateDefinition(RevenueDefinition(), "root"));
  std::vector<std::string> alice_kpis, alice_revenue, bob_ids;
  auto request = [&](const std::string& definition_id, const std::string& end, const Caller& caller) {
    auto doc = service.RequestInstance({{"report_definition_id", definition_id},
                                        {"parameters", {{"period_start", "2024-03-04"}, {"period_end", end}}}},
                                       caller);
    EXPECT_TRUE(doc.ok()) << doc.status().ToString();
    return doc.ok() ? (*doc)["instance_id"].get<std::string>() : "";
  };
  for (const std::string end : {"2024-03-04", "2024-03-05", "2024-03-06"}) {
    alice_kpis.push_back(request(this->KpiSummaryId(), end, kAlice));
  }
  for (const std::string end : {"2024-03-05", "2024-03-06"}) alice_revenue.push_back(request(definition["id"], end, kAlice));
  bob_ids.push_back(request(this->KpiSummaryId(), "2024-03-06", kBob));
  for (const auto* ids : {&alice_kpis, &alice_revenue, &bob_ids}) {
    for (const std::string& id : *ids) ASSERT_OK(WaitFinished(service, id));
  }

  // Another non-admin: PermissionDenied; the owner and an admin: allowed; unknown: NotFound.
  const std::string& bobs = bob_ids[0];
  EXPECT_EQ(service.GetInstance(bobs, kAlice).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(service.CancelInstance(bobs, kAlice).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(service.OpenDownload(bobs, kAlice).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(service.GetInstance(alice_kpis[0], kBob).status().code(), StatusCode::kPermissionDenied);
  ASSERT_OK_AND_ASSIGN(json bob_doc, service.GetInstance(bobs, kBob));
  EXPECT_EQ(bob_doc["requested_by"], "bob");
  ASSERT_OK(service.GetInstance(bobs, kRoot));
  ASSERT_OK_AND_ASSIGN(std::string bob_file, Download(service, bobs, kBob));
  ASSERT_OK_AND_ASSIGN(std::string root_file, Download(service, bobs, kRoot));
  EXPECT_EQ(bob_file, root_file);
  EXPECT_EQ(service.GetInstance("no-such-instance", kRoot).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service.OpenDownload("no-such-instance", kBob).status().code(), StatusCode::kNotFound);
  // A run of another kind is no report instance.
  ASSERT_OK_AND_ASSIGN(auto other, stack->runner().Submit(kBlockKind, "t", json::object(), "bob"));
  EXPECT_EQ(service.GetInstance(other.id, kRoot).status().code(), StatusCode::kNotFound);

  auto ids_of = [](const json& list) {
    std::set<std::string> ids;
    for (const json& item : list["items"]) ids.insert(item["instance_id"].get<std::string>());
    return ids;
  };
  auto set_of = [](std::initializer_list<const std::vector<std::string>*> lists) {
    std::set<std::string> ids;
    for (const auto* list : lists) ids.insert(list->begin(), list->end());
    return ids;
  };
  // Non-admins see their own only, also when they ask for nothing else; an admin sees all or filters by owner.
  ASSERT_OK_AND_ASSIGN(json list, service.ListInstances({}, kAlice));
  EXPECT_EQ(ids_of(list), set_of({&alice_kpis, &alice_revenue}));
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances({}, kBob));
  EXPECT_EQ(ids_of(list), set_of({&bob_ids}));
  reports::InstanceFilter filter;
  filter.requested_by = "bob";
  EXPECT_EQ(service.ListInstances(filter, kAlice).status().code(), StatusCode::kPermissionDenied);
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances(filter, kRoot));
  EXPECT_EQ(ids_of(list), set_of({&bob_ids}));
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances({}, kRoot));
  EXPECT_EQ(ids_of(list), set_of({&alice_kpis, &alice_revenue, &bob_ids}));
  // By definition and status.
  filter = {};
  filter.definition_id = definition["id"];
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances(filter, kRoot));
  EXPECT_EQ(ids_of(list), set_of({&alice_revenue}));
  filter = {};
  filter.status = "completed";
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances(filter, kAlice));
  EXPECT_EQ(ids_of(list), set_of({&alice_kpis, &alice_revenue}));
  filter.status = "queued";
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances(filter, kAlice));
  EXPECT_TRUE(list["items"].empty());
  filter = {};
  filter.limit = 0;
  EXPECT_EQ(service.ListInstances(filter, kAlice).status().field(), "limit");

  // Pages of two: newest first, each instance once, no cursor after the last page.
  filter = {};
  filter.limit = 2;
  std::vector<std::string> paged;
  std::vector<int64_t> created;
  for (int page = 0; page < 10; ++page) {
    ASSERT_OK_AND_ASSIGN(list, service.ListInstances(filter, kAlice));
    EXPECT_LE(list["items"].size(), 2u);
    for (const json& item : list["items"]) {
      paged.push_back(item["instance_id"]);
      created.push_back(Ms(item["created_at"]));
    }
    if (list["next_cursor"].is_null()) break;
    EXPECT_EQ(list["next_cursor"], paged.back());
    filter.cursor = list["next_cursor"].get<std::string>();
  }
  EXPECT_EQ(paged.size(), 5u);
  EXPECT_EQ(std::set<std::string>(paged.begin(), paged.end()), set_of({&alice_kpis, &alice_revenue}));
  EXPECT_TRUE(std::is_sorted(created.rbegin(), created.rend()));
  filter.cursor = "no-such-instance";
  EXPECT_EQ(service.ListInstances(filter, kAlice).status().field(), "cursor");
}

// ---- Cancellation ----------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, QueuedInstanceIsCancelledAtOnce) {
  auto stack = this->StartStack(1);
  ASSERT_NE(stack, nullptr);
  OpenOnExit open(stack->blocker());
  ReportService& service = stack->service();
  ASSERT_OK(stack->Block());
  ASSERT_TRUE(stack->blocker().WaitForWaiters(1));
  const json body = {{"report_definition_id", this->KpiSummaryId()},
                     {"parameters", {{"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}}}};
  ASSERT_OK_AND_ASSIGN(json queued, service.RequestInstance(body, kAlice));
  const std::string id = queued["instance_id"];
  // The same request of the same owner joins the queued instance; another owner's does not.
  ASSERT_OK_AND_ASSIGN(json again, service.RequestInstance(body, kAlice));
  EXPECT_EQ(again["instance_id"], id);
  ASSERT_OK_AND_ASSIGN(json bobs, service.RequestInstance(body, kBob));
  EXPECT_NE(bobs["instance_id"], id);

  ASSERT_OK_AND_ASSIGN(json cancelled, service.CancelInstance(id, kAlice));
  EXPECT_EQ(cancelled["status"], "cancelled");
  EXPECT_EQ(cancelled["error"], json({{"code", "REPORT_GENERATION_FAILED"}, {"message", "cancelled by alice"}}));
  EXPECT_TRUE(cancelled["file"].is_null());
  ASSERT_OK_AND_ASSIGN(json stored, service.GetInstance(id, kAlice));
  EXPECT_EQ(stored["status"], "cancelled");
  EXPECT_EQ(service.OpenDownload(id, kAlice).status().code(), StatusCode::kFailedPrecondition);
  auto twice = service.CancelInstance(id, kAlice);
  EXPECT_EQ(twice.status().code(), StatusCode::kFailedPrecondition);

  // The worker is freed: Bob's instance completes, Alice's never runs.
  stack->blocker().Open();
  ASSERT_OK_AND_ASSIGN(json done, WaitFinished(service, bobs["instance_id"]));
  EXPECT_EQ(done["status"], "completed");
  ASSERT_OK_AND_ASSIGN(stored, service.GetInstance(id, kAlice));
  EXPECT_EQ(stored["status"], "cancelled");
  EXPECT_TRUE(stored["started_at"].is_null());
  EXPECT_EQ(this->KeyOf(id), "");
  EXPECT_EQ(this->ObjectKeys().size(), 1u);
  // Cancelling a finished instance.
  auto finished = service.CancelInstance(bobs["instance_id"], kBob);
  EXPECT_EQ(finished.status().code(), StatusCode::kFailedPrecondition) << finished.status().ToString();
  ASSERT_EQ(stack->Generated().size(), 1u);
  EXPECT_EQ(stack->Generated()[0].key, bobs["instance_id"]);
}

TYPED_TEST(ReportServiceTest, RunningInstanceStopsBetweenSectionsAndLeavesNoFile) {
  const std::string first = this->CreateSegment("first", {"u1", "u2"});
  const std::string second = this->CreateSegment("second", {"u3"});
  Gate gate;
  gate.Close();
  this->SetSizeHook([&](const std::string& id) {
    if (id == first) gate.Pass();
  });
  auto stack = this->StartStack(1);
  ASSERT_NE(stack, nullptr);
  OpenOnExit open(gate);
  ReportService& service = stack->service();
  const json definition = {{"name", "two_sizes"},
                           {"parameters", json::array()},
                           {"sections",
                            {{{"name", "first"}, {"type", "segment_sizes"}, {"segments", {first}}},
                             {{"name", "second"}, {"type", "segment_sizes"}, {"segments", {second}}},
                             {{"name", "kpis"}, {"type", "metrics"}, {"metrics", {"dau"}},
                              {"period_start", "2024-03-04"}, {"period_end", "2024-03-06"}}}}};
  ASSERT_OK_AND_ASSIGN(json created, service.CreateDefinition(definition, "alice"));
  ASSERT_OK_AND_ASSIGN(json queued, service.RequestInstance({{"report_definition_id", created["id"]}}, kAlice));
  const std::string id = queued["instance_id"];
  ASSERT_TRUE(gate.WaitForWaiters(1));  // the first section is running
  ASSERT_OK_AND_ASSIGN(json running, service.GetInstance(id, kAlice));
  EXPECT_EQ(running["status"], "running");

  // Cancel asks the handler to stop and waits up to two seconds: the section still runs, so it answers "running".
  ASSERT_OK_AND_ASSIGN(json answered, service.CancelInstance(id, kAlice));
  EXPECT_EQ(answered["status"], "running");
  gate.Open();
  ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, id));
  EXPECT_EQ(doc["status"], "cancelled");
  EXPECT_EQ(doc["error"]["code"], "REPORT_GENERATION_FAILED");
  EXPECT_EQ(doc["error"]["message"], "cancelled by alice");
  EXPECT_TRUE(doc["file"].is_null());
  EXPECT_EQ(this->SizeCalls(second), 0) << "the next section ran";
  EXPECT_TRUE(this->ObjectKeys().empty());
  EXPECT_EQ(this->StagingFiles(), 0u);
  EXPECT_TRUE(stack->Generated().empty());
  EXPECT_EQ(service.CancelInstance(id, kAlice).status().code(), StatusCode::kFailedPrecondition);

  // The same report not cancelled: every section, sizes as the segment service counts them.
  this->SetSizeHook(nullptr);
  ASSERT_OK_AND_ASSIGN(queued, service.RequestInstance({{"report_definition_id", created["id"]},
                                                        {"output_format", "json"}},
                                                       kAlice));
  ASSERT_OK_AND_ASSIGN(doc, WaitFinished(service, queued["instance_id"]));
  ASSERT_EQ(doc["status"], "completed") << doc.dump();
  ASSERT_OK_AND_ASSIGN(std::string bytes, Download(service, queued["instance_id"], kAlice));
  const json file = json::parse(bytes);
  ASSERT_EQ(file["sections"].size(), 3u);
  EXPECT_EQ(file["sections"][0]["rows"][0]["segment_id"], first);
  EXPECT_EQ(file["sections"][0]["rows"][0]["users_count"], 2);
  EXPECT_EQ(file["sections"][1]["rows"][0]["name"], "second");
  EXPECT_EQ(file["sections"][1]["rows"][0]["users_count"], 1);
  ExpectKpiRows(Rows(file["sections"][2]), KpisPerDay(this->raw_, {}), "2024-03-04", "2024-03-06", {"dau"});
}

// ---- Failures --------------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, FailingSectionFailsTheInstanceNamesItAndLeavesNoFile) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  // A metric deleted after the definition was made (the second section: the first one's rows were written).
  const json metrics_definition = {
      {"name", "sessions_report"},
      {"parameters", json::array()},
      {"sections",
       {{{"name", "active"}, {"type", "metrics"}, {"metrics", {"dau"}}, {"period_start", "2024-03-04"},
         {"period_end", "2024-03-06"}},
        {{"name", "games"}, {"type", "metrics"}, {"metrics", {"dau", "sessions"}}, {"period_start", "2024-03-04"},
         {"period_end", "2024-03-06"}}}}};
  // A funnel whose request is invalid once bound (an empty event type).
  const json funnel_definition = {
      {"name", "checkout_funnel"},
      {"parameters", {Parameter("second_step", "string", {{"default", ""}})}},
      {"sections",
       {{{"name", "funnel"},
         {"type", "funnel"},
         {"request",
          {{"steps", {{{"event_type", kLogin}}, {{"event_type", "${second_step}"}}}},
           {"period_start", "2024-03-04"},
           {"period_end", "2024-03-06"}}}}}}};
  ASSERT_OK_AND_ASSIGN(json metrics_created, service.CreateDefinition(metrics_definition, "alice"));
  ASSERT_OK_AND_ASSIGN(json funnel_created, service.CreateDefinition(funnel_definition, "alice"));
  ASSERT_OK(this->catalog_->Delete("sessions", "root", common::NowMillis()));
  ASSERT_OK_AND_ASSIGN(json metrics_queued, service.RequestInstance({{"report_definition_id", metrics_created["id"]}}, kAlice));
  ASSERT_OK_AND_ASSIGN(json funnel_queued, service.RequestInstance({{"report_definition_id", funnel_created["id"]}}, kAlice));
  // The control: the same funnel with a real second step completes.
  ASSERT_OK_AND_ASSIGN(json funnel_good,
                       service.RequestInstance({{"report_definition_id", funnel_created["id"]},
                                                {"parameters", {{"second_step", kPurchase}}}},
                                               kAlice));
  ASSERT_OK(stack->StartRunner());

  ASSERT_OK_AND_ASSIGN(json failed, WaitFinished(service, metrics_queued["instance_id"]));
  EXPECT_EQ(failed["status"], "failed");
  ASSERT_TRUE(failed["error"].is_object()) << failed.dump();
  EXPECT_EQ(failed["error"]["code"], "REPORT_GENERATION_FAILED");
  const std::string metrics_message = failed["error"]["message"];
  EXPECT_EQ(metrics_message.rfind("section 'games': metrics[1]: ", 0), 0u) << metrics_message;
  EXPECT_NE(metrics_message.find("sessions"), std::string::npos) << metrics_message;
  EXPECT_TRUE(failed["file"].is_null());

  ASSERT_OK_AND_ASSIGN(failed, WaitFinished(service, funnel_queued["instance_id"]));
  EXPECT_EQ(failed["status"], "failed");
  EXPECT_EQ(failed["error"]["code"], "REPORT_GENERATION_FAILED");
  const std::string funnel_message = failed["error"]["message"];
  EXPECT_EQ(funnel_message.rfind("section 'funnel': request.steps[1].event_type: ", 0), 0u) << funnel_message;
  auto download = service.OpenDownload(funnel_queued["instance_id"], kAlice);
  EXPECT_EQ(download.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(download.status().message().find("failed"), std::string::npos) << download.status().ToString();

  ASSERT_OK_AND_ASSIGN(json good, WaitFinished(service, funnel_good["instance_id"]));
  EXPECT_EQ(good["status"], "completed") << good.dump();
  // Only the good one left a file; nothing half-written stays behind; no event for the failures.
  EXPECT_EQ(this->ObjectKeys(), std::vector<std::string>{this->KeyOf(funnel_good["instance_id"])});
  EXPECT_EQ(this->StagingFiles(), 0u);
  ASSERT_EQ(stack->Generated().size(), 1u);
  EXPECT_EQ(stack->Generated()[0].key, funnel_good["instance_id"]);
}

// ---- Restart ---------------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, UnfinishedInstancesCompleteOnceAfterARestart) {
  std::vector<std::string> ids;
  std::vector<json> bound;
  {
    // A process that queues instances and stops before running them.
    auto stack = this->StartStack(1, false);
    ASSERT_NE(stack, nullptr);
    for (const std::string start : {"2024-03-04", "2024-03-05", "2024-03-06"}) {
      ASSERT_OK_AND_ASSIGN(json queued,
                           stack->service().RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                                             {"parameters", {{"period_start", start},
                                                                             {"period_end", "2024-03-06"}}},
                                                             {"output_format", "json"}},
                                                            kAlice));
      ids.push_back(queued["instance_id"]);
      bound.push_back(queued["parameters"]);
    }
  }
  // One of them was running when its process died.
  ASSERT_OK_AND_ASSIGN(metadata::PipelineRun run, this->metadata_->GetPipelineRun(ids[1]));
  run.status = "running";
  run.started_at_ms = common::NowMillis();
  run.progress = 0.5;
  ASSERT_OK(this->metadata_->UpdatePipelineRun(run));

  auto stack = this->StartStack(2);
  ASSERT_NE(stack, nullptr);
  for (size_t instance_idx = 0; instance_idx < ids.size(); ++instance_idx) {
    ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(stack->service(), ids[instance_idx], kAlice));
    ASSERT_EQ(doc["status"], "completed") << doc.dump();
    EXPECT_EQ(doc["parameters"], bound[instance_idx]);
    ASSERT_OK_AND_ASSIGN(std::string bytes, Download(stack->service(), ids[instance_idx], kAlice));
    const json file = json::parse(bytes);
    ExpectKpiRows(Rows(file["sections"][0]), KpisPerDay(this->raw_, {}), bound[instance_idx]["period_start"],
                  "2024-03-06", kKpis);
  }
  // Exactly once: one file and one event each, and nothing left to run.
  std::vector<std::string> keys = this->ObjectKeys();
  std::vector<std::string> expected_keys;
  for (const std::string& id : ids) expected_keys.push_back(this->KeyOf(id));
  std::sort(expected_keys.begin(), expected_keys.end());
  EXPECT_EQ(keys, expected_keys);
  std::multiset<std::string> events;
  for (const auto& produced : stack->Generated()) events.insert(produced.key);
  EXPECT_EQ(events, std::multiset<std::string>(ids.begin(), ids.end()));
  EXPECT_EQ(stack->runner().Pending(), 0u);
  ASSERT_OK_AND_ASSIGN(auto unfinished, this->metadata_->ListUnfinishedPipelineRuns());
  EXPECT_TRUE(unfinished.empty());
}

// ---- Schedules -------------------------------------------------------------------------------------------------

// Daily at 01:30 in Moscow (22:30 UTC the day before): the two Moscow days before the fire day.
json ScheduledDefinition() {
  json definition = RevenueDefinition("moscow_daily");
  definition["parameters"][1] = Parameter("period_end", "date", {{"required", true}});
  definition["sections"] = {{{"name", "kpis"}, {"type", "metrics"}, {"metrics", {"dau", "revenue_rub", "arpu"}}}};
  definition["schedule"] = {{"cron", "30 1 * * *"},
                            {"timezone", "Europe/Moscow"},
                            {"output_format", "json"},
                            {"parameters",
                             {{"period_start", "today-2d"}, {"period_end", "yesterday"}, {"timezone", "Europe/Moscow"}}},
                            {"recipients", {"growth@example.com", "cfo@example.com"}}};
  return definition;
}

TYPED_TEST(ReportServiceTest, SchedulesFireOncePerFireTimeAcrossCallsReplicasAndRestarts) {
  std::string definition_id, instance_id;
  const int64_t fire = Ms("2024-03-06T22:30:00Z");  // 2024-03-07 01:30 in Moscow
  {
    auto stack = this->StartStack(1, false);
    ASSERT_NE(stack, nullptr);
    ReportService& service = stack->service();
    ASSERT_OK_AND_ASSIGN(json created, service.CreateDefinition(ScheduledDefinition(), "planner"));
    definition_id = created["id"];
    ASSERT_TRUE(created["next_run_at"].is_string()) << created.dump();
    EXPECT_GT(Ms(created["next_run_at"]), Ms(created["updated_at"]));
    EXPECT_EQ(Text(Ms(created["next_run_at"])).substr(11), "22:30:00.000Z");
    this->Backdate(definition_id, Ms("2024-03-01T00:00:00Z"));
    // A run that will keep the next process's worker busy, queued before the scheduled instance (runs are
    // recovered oldest first).
    ASSERT_OK(stack->Block());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Before the first fire time: nothing.
    ASSERT_OK_AND_ASSIGN(auto fired, service.RunSchedulesForTest(Ms("2024-03-01T22:29:59Z")));
    EXPECT_TRUE(fired.empty());
    // Five fire times missed (03-01 .. 03-06 22:30 UTC): only the latest fires.
    ASSERT_OK_AND_ASSIGN(fired, service.RunSchedulesForTest(Ms("2024-03-07T00:00:00Z")));
    ASSERT_EQ(fired.size(), 1u);
    instance_id = fired[0];
    ASSERT_OK_AND_ASSIGN(fired, service.RunSchedulesForTest(Ms("2024-03-07T00:00:00Z")));
    EXPECT_TRUE(fired.empty());
    ASSERT_OK_AND_ASSIGN(fired, service.RunSchedulesForTest(Ms("2024-03-07T12:00:00Z")));
    EXPECT_TRUE(fired.empty());
    // A replica over the same store: the same fire time is taken.
    auto replica = this->StartStack(1, false);
    ASSERT_NE(replica, nullptr);
    ASSERT_OK_AND_ASSIGN(fired, replica->service().RunSchedulesForTest(Ms("2024-03-07T00:00:00Z")));
    EXPECT_TRUE(fired.empty());
  }  // The process stops with the instance queued.
  // A restart: the blocker run comes back first and holds the worker, the scheduled instance waits in the queue;
  // the schedules, checked again, find that fire time taken.
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  OpenOnExit open(stack->blocker());
  stack->blocker().Close();
  ASSERT_OK(stack->StartRunner());
  ASSERT_TRUE(stack->blocker().WaitForWaiters(1));
  ReportService& service = stack->service();
  ASSERT_OK_AND_ASSIGN(auto fired, service.RunSchedulesForTest(Ms("2024-03-07T00:00:00Z")));
  EXPECT_TRUE(fired.empty()) << "reported as created again: " << fired[0];
  reports::InstanceFilter filter;
  filter.definition_id = definition_id;
  ASSERT_OK_AND_ASSIGN(json list, service.ListInstances(filter, kRoot));
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["instance_id"], instance_id);
  EXPECT_EQ(list["items"][0]["status"], "queued");
  stack->blocker().Open();

  ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, instance_id));
  ASSERT_EQ(doc["status"], "completed") << doc.dump();
  EXPECT_EQ(doc["trigger"], "schedule");
  EXPECT_EQ(doc["scheduled_for"], Text(fire));
  EXPECT_EQ(doc["requested_by"], "planner");
  EXPECT_EQ(doc["output_format"], "json");
  EXPECT_EQ(doc["recipients"], json({"growth@example.com", "cfo@example.com"}));
  // Relative to the fire time in Moscow (03-07): yesterday 03-06, today-2d 03-05 (in UTC it would be 03-05, 03-04).
  EXPECT_EQ(doc["parameters"], json({{"period_start", "2024-03-05"},
                                     {"period_end", "2024-03-06"},
                                     {"timezone", "Europe/Moscow"},
                                     {"note", nullptr}}));
  // The planner owns it.
  ASSERT_OK(service.GetInstance(instance_id, Caller{"planner", false}));
  EXPECT_EQ(service.GetInstance(instance_id, kAlice).status().code(), StatusCode::kPermissionDenied);
  ASSERT_OK_AND_ASSIGN(std::string bytes, Download(service, instance_id, Caller{"planner", false}));
  const json file = json::parse(bytes);
  ExpectKpiRows(Rows(file["sections"][0]), KpisPerDay(this->raw_, {.offset_hours = 3}), "2024-03-05", "2024-03-06",
                {"dau", "revenue_rub", "arpu"});

  // report.generated with what the recipients' mailer needs.
  const auto generated = stack->Generated();
  ASSERT_EQ(generated.size(), 1u);
  EXPECT_EQ(generated[0].key, instance_id);
  const json& event = generated[0].event;
  EXPECT_EQ(event["specversion"], "1.0");
  EXPECT_EQ(event["type"], "com.platform.analytics.report.generated.v1");
  EXPECT_EQ(event["source"], "/analytics-service");
  EXPECT_EQ(event["subject"], instance_id);
  const json& data = event["data"];
  EXPECT_EQ(data["instance_id"], instance_id);
  EXPECT_EQ(data["report_definition_id"], definition_id);
  EXPECT_EQ(data["report_name"], "moscow_daily");
  EXPECT_EQ(data["definition_version"], 2);
  EXPECT_EQ(data["owner"], "planner");
  EXPECT_EQ(data["trigger"], "schedule");
  EXPECT_EQ(data["scheduled_for"], Text(fire));
  EXPECT_EQ(data["recipients"], json({"growth@example.com", "cfo@example.com"}));
  EXPECT_EQ(data["output_format"], "json");
  EXPECT_EQ(data["content_type"], "application/json");
  EXPECT_EQ(data["size_bytes"], bytes.size());
  EXPECT_EQ(data["size_bytes"], doc["file"]["size_bytes"]);
  EXPECT_EQ(data["row_count"], 2);
  EXPECT_EQ(data["file_name"], "moscow_daily_2024-03-05_2024-03-06.json");
  EXPECT_EQ(data["download_path"], kDownloadPrefix + instance_id + "/download");
  EXPECT_EQ(data["expires_at"], doc["file"]["expires_at"]);
  EXPECT_TRUE(data["generated_at"].is_string());
}

TYPED_TEST(ReportServiceTest, SchedulesCatchUpOnlyTheLatestFireTimeWithinTheWindow) {
  // A schedule whose fire time of today was two hours ago (UTC minutes), set ten days ago.
  const int64_t now = common::NowMillis();
  const std::string two_hours_ago = Text(now - 2 * kHour);
  const std::string cron =
      std::to_string(std::stoi(two_hours_ago.substr(14, 2))) + " " + std::to_string(std::stoi(two_hours_ago.substr(11, 2))) + " * * *";
  const int64_t fire = Ms(two_hours_ago.substr(0, 17) + "00Z");
  json definition = {{"name", "sizes_daily"},
                     {"parameters", json::array()},
                     {"sections", {{{"name", "sizes"}, {"type", "segment_sizes"}}}},
                     {"schedule", {{"cron", cron}}}};
  std::string definition_id;
  {
    auto stack = this->StartStack(1, false);
    ASSERT_NE(stack, nullptr);
    ASSERT_OK_AND_ASSIGN(json created, stack->service().CreateDefinition(definition, "planner"));
    definition_id = created["id"];
  }
  this->Backdate(definition_id, now - 10 * kDay);
  // Down for ten days with a one-hour catch-up: that fire time is too old.
  reports::ReportServiceOptions options = this->Options();
  options.schedule_catch_up_ms = kHour;
  {
    auto stack = this->StartStack(1, false, options);
    ASSERT_NE(stack, nullptr);
    ASSERT_OK_AND_ASSIGN(auto fired, stack->service().RunSchedulesForTest(common::NowMillis()));
    EXPECT_TRUE(fired.empty());
  }
  // With three hours it fires, once, for today's fire time (not for the nine days before).
  options.schedule_catch_up_ms = 3 * kHour;
  auto stack = this->StartStack(1, false, options);
  ASSERT_NE(stack, nullptr);
  ASSERT_OK_AND_ASSIGN(auto fired, stack->service().RunSchedulesForTest(common::NowMillis()));
  ASSERT_EQ(fired.size(), 1u);
  ASSERT_OK_AND_ASSIGN(json doc, stack->service().GetInstance(fired[0], kRoot));
  EXPECT_EQ(doc["scheduled_for"], Text(fire));
  EXPECT_EQ(doc["trigger"], "schedule");
  EXPECT_EQ(doc["requested_by"], "planner");
  EXPECT_EQ(doc["output_format"], "csv");
  EXPECT_EQ(doc["parameters"], json::object());
  ASSERT_OK_AND_ASSIGN(fired, stack->service().RunSchedulesForTest(common::NowMillis()));
  EXPECT_TRUE(fired.empty());
  ASSERT_OK_AND_ASSIGN(json list, stack->service().ListInstances({}, kRoot));
  EXPECT_EQ(list["items"].size(), 1u);
}

TYPED_TEST(ReportServiceTest, SchedulesSkipFireTimesBeforeTheLastUpdateAndDisabledSchedules) {
  auto stack = this->StartStack(1, false);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  auto create = [&](const std::string& name, bool enabled, const std::string& updated) {
    json definition = {{"name", name},
                       {"parameters", json::array()},
                       {"sections", {{{"name", "sizes"}, {"type", "segment_sizes"}}}},
                       {"schedule", {{"cron", "0 6 * * *"}, {"enabled", enabled}}}};
    auto created = service.CreateDefinition(definition, "planner");
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (!created.ok()) return std::string();
    if (enabled) {
      EXPECT_TRUE((*created)["next_run_at"].is_string());
    } else {
      EXPECT_TRUE((*created)["next_run_at"].is_null());
    }
    const std::string id = (*created)["id"];
    this->Backdate(id, Ms(updated));
    return id;
  };
  const std::string control = create("set_long_ago", true, "2024-03-01T00:00:00Z");
  const std::string edited = create("edited_at_noon", true, "2024-03-05T12:00:00Z");
  const std::string disabled = create("disabled", false, "2024-03-01T00:00:00Z");
  auto definition_of = [&](const std::string& instance_id) {
    auto doc = service.GetInstance(instance_id, kRoot);
    EXPECT_TRUE(doc.ok()) << doc.status().ToString();
    return doc.ok() ? (*doc)["report_definition_id"].get<std::string>() + " " + (*doc)["scheduled_for"].get<std::string>()
                    : std::string();
  };
  // 03-05 06:00 UTC fires for the control only: the other one was edited after it.
  ASSERT_OK_AND_ASSIGN(auto fired, service.RunSchedulesForTest(Ms("2024-03-05T20:00:00Z")));
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(definition_of(fired[0]), control + " 2024-03-05T06:00:00.000Z");
  // 03-06 06:00 fires for both; the disabled one never.
  ASSERT_OK_AND_ASSIGN(fired, service.RunSchedulesForTest(Ms("2024-03-06T07:00:00Z")));
  std::set<std::string> got;
  for (const std::string& id : fired) got.insert(definition_of(id));
  EXPECT_EQ(got, (std::set<std::string>{control + " 2024-03-06T06:00:00.000Z", edited + " 2024-03-06T06:00:00.000Z"}));
  reports::InstanceFilter filter;
  filter.definition_id = disabled;
  ASSERT_OK_AND_ASSIGN(json list, service.ListInstances(filter, kRoot));
  EXPECT_TRUE(list["items"].empty());
  ASSERT_OK_AND_ASSIGN(list, service.ListInstances({}, kRoot));
  EXPECT_EQ(list["items"].size(), 3u);
}

// ---- Retention -------------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, RetentionRemovesOldFilesAndInstancesAndKeepsRecentOnes) {
  auto stack = this->StartStack(1);
  ASSERT_NE(stack, nullptr);
  OpenOnExit open(stack->blocker());
  ReportService& service = stack->service();
  std::vector<std::string> ids;
  for (const std::string end : {"2024-03-04", "2024-03-05", "2024-03-06"}) {
    ASSERT_OK_AND_ASSIGN(json queued, service.RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                                               {"parameters", {{"period_start", "2024-03-04"},
                                                                               {"period_end", end}}}},
                                                              kAlice));
    ids.push_back(queued["instance_id"]);
  }
  for (const std::string& id : ids) {
    ASSERT_OK_AND_ASSIGN(json doc, WaitFinished(service, id));
    ASSERT_EQ(doc["status"], "completed");
  }
  // The first one finished 31 days ago (its run and its file).
  const int64_t now = common::NowMillis();
  const std::string old_key = this->KeyOf(ids[0]);
  ASSERT_FALSE(old_key.empty());
  ASSERT_OK_AND_ASSIGN(metadata::PipelineRun old_run, this->metadata_->GetPipelineRun(ids[0]));
  old_run.created_at_ms -= 31 * kDay;
  old_run.started_at_ms -= 31 * kDay;
  old_run.finished_at_ms -= 31 * kDay;
  ASSERT_OK(this->metadata_->UpdatePipelineRun(old_run));
  std::filesystem::last_write_time(
      this->ObjectRoot() / old_key,
      std::chrono::file_clock::from_sys(std::chrono::system_clock::now() - std::chrono::hours(24 * 31)));
  // A queued one (behind a busy worker) is never removed.
  ASSERT_OK(stack->Block());
  ASSERT_TRUE(stack->blocker().WaitForWaiters(1));
  ASSERT_OK_AND_ASSIGN(json queued, service.RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                                             {"parameters", {{"period_start", "2024-03-05"},
                                                                             {"period_end", "2024-03-05"}}}},
                                                            kAlice));

  // A day short of 30 days: nothing else goes; now: the old one goes.
  ASSERT_OK_AND_ASSIGN(int64_t removed, service.RunRetentionForTest(now));
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(service.GetInstance(ids[0], kAlice).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(this->KeyOf(ids[0]), "");
  for (size_t kept = 1; kept < ids.size(); ++kept) {
    ASSERT_OK(Download(service, ids[kept], kAlice));
  }
  ASSERT_OK_AND_ASSIGN(removed, service.RunRetentionForTest(now + 29 * kDay));
  EXPECT_EQ(removed, 0);
  EXPECT_EQ(this->ObjectKeys().size(), 2u);
  // 30 days and a day later: the other two go, with their files; the queued one stays.
  ASSERT_OK_AND_ASSIGN(removed, service.RunRetentionForTest(now + 31 * kDay));
  EXPECT_EQ(removed, 2);
  EXPECT_TRUE(this->ObjectKeys().empty());
  for (size_t gone = 1; gone < ids.size(); ++gone) {
    EXPECT_EQ(service.GetInstance(ids[gone], kAlice).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(service.OpenDownload(ids[gone], kAlice).status().code(), StatusCode::kNotFound);
  }
  ASSERT_OK_AND_ASSIGN(json still, service.GetInstance(queued["instance_id"], kAlice));
  EXPECT_EQ(still["status"], "queued");
  stack->blocker().Open();
  ASSERT_OK_AND_ASSIGN(json done, WaitFinished(service, queued["instance_id"]));
  EXPECT_EQ(done["status"], "completed");
  ASSERT_OK(Download(service, queued["instance_id"], kAlice));
}

// ---- Concurrency -----------------------------------------------------------------------------------------------

TYPED_TEST(ReportServiceTest, ConcurrentRequestsAllCompleteWithDistinctCorrectFiles) {
  auto stack = this->StartStack(2);
  ASSERT_NE(stack, nullptr);
  ReportService& service = stack->service();
  constexpr int kThreads = 4, kPerThread = 3;
  const auto reference = KpisPerDay(this->raw_, {});
  std::mutex ids_mu;
  std::vector<std::string> all_ids;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      const Caller caller{"user-" + std::to_string(thread_idx), false};
      std::vector<std::pair<std::string, std::string>> mine;  // id, period_start
      for (int request_idx = 0; request_idx < kPerThread; ++request_idx) {
        const std::string start = "2024-03-0" + std::to_string(4 + request_idx);
        const std::string format = (thread_idx + request_idx) % 2 ? "json" : "csv";
        auto queued = service.RequestInstance({{"report_definition_id", this->KpiSummaryId()},
                                               {"parameters", {{"period_start", start}, {"period_end", "2024-03-06"}}},
                                               {"output_format", format}},
                                              caller);
        EXPECT_TRUE(queued.ok()) << queued.status().ToString();
        if (!queued.ok()) continue;
        mine.emplace_back((*queued)["instance_id"], start);
        std::lock_guard lock(ids_mu);
        all_ids.push_back((*queued)["instance_id"]);
      }
      for (const auto& [id, start] : mine) {
        auto doc = WaitFinished(service, id, caller);
        EXPECT_TRUE(doc.ok()) << doc.status().ToString();
        if (!doc.ok()) continue;
        EXPECT_EQ((*doc)["status"], "completed") << doc->dump();
        auto bytes = Download(service, id, caller);
        EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
        if (!bytes.ok()) continue;
        const json file = (*doc)["output_format"] == "json" ? json::parse(*bytes) : CsvDocument(*bytes);
        ExpectKpiRows(Rows(file["sections"][0]), reference, start, "2024-03-06", kKpis);
        if ((*doc)["output_format"] == "json") {
          EXPECT_EQ(file["report"]["instance_id"], id);
        }
      }
    });
  }
  // Readers meanwhile: lists of every instance (admin) and of one user.
  std::thread reader([&] {
    while (!done.load()) {
      auto all = service.ListInstances({}, kRoot);
      EXPECT_TRUE(all.ok()) << all.status().ToString();
      auto own = service.ListInstances({}, Caller{"user-0", false});
      EXPECT_TRUE(own.ok()) << own.status().ToString();
      if (own.ok()) {
        for (const json& item : (*own)["items"]) EXPECT_EQ(item["requested_by"], "user-0");
      }
    }
  });
  for (auto& thread : threads) thread.join();
  done = true;
  reader.join();

  ASSERT_EQ(all_ids.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(std::set<std::string>(all_ids.begin(), all_ids.end()).size(), all_ids.size());
  std::set<std::string> keys;
  for (const std::string& id : all_ids) keys.insert(this->KeyOf(id));
  keys.erase("");
  EXPECT_EQ(keys.size(), all_ids.size());
  EXPECT_EQ(this->ObjectKeys().size(), all_ids.size());
  EXPECT_EQ(stack->Generated().size(), all_ids.size());
  EXPECT_EQ(stack->runner().Pending(), 0u);
}

}  // namespace
}  // namespace analytics::testing
