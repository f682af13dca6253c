// Reports end to end (src/reports/README.md): the real binary, generated events over HTTP, report definitions and
// instances through the API. Each format is generated, downloaded and read back independently (CSV with the small
// RFC 4180 parser below, JSON with nlohmann, XLSX with Python's openpyxl) and its numbers are compared with the
// API's answers to the same questions (metric values, funnels, retention, segment sizes) and, for dau, revenue_rub
// and purchases_count, with references computed here from the raw events (plain loops, no engine code). Also:
// a kill -9 right after requests, concurrent requests of several users, roles and ownership, cancellation of
// queued and running instances behind a single busy worker, request errors, report.generated events and the
// definitions' CRUD contract.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/time_util.h"
#include "gen/generator.h"
#include "support/http_client.h"
#include "support/service_process.h"
#include "support/test_env.h"

#ifndef ANALYTICS_PYTHON3
#define ANALYTICS_PYTHON3 "/usr/bin/python3"
#endif

namespace analytics::testing {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr int64_t kDayMs = 86400000;
// The generated data covers 2024-01-01 .. 2024-01-14; the period starts a day earlier (a day of zeros).
constexpr char kPeriodStart[] = "2023-12-31";
constexpr char kPeriodEnd[] = "2024-01-14";
const std::string kApi = "/api/v1/analytics";
const std::string kDefinitions = kApi + "/reports/definitions";
const std::string kInstances = kApi + "/reports/instances";
const std::string kValues = kApi + "/metrics/values/";
const std::string kMetricDefinitions = kApi + "/metrics/definitions/";
const std::string kSegmentDefinitions = kApi + "/segments/definitions";
const std::string kSegments = kApi + "/segments/";
const std::string kOutbox = kApi + "/outbox";
const std::string kGeneratedType = "com.platform.analytics.report.generated.v1";
const std::string kView = "com.platform.store.page.viewed.v1";
const std::string kCart = "com.platform.cart.item.added.v1";
const std::string kBuy = "com.platform.payments.purchase.completed.v1";
const std::string kRefund = "com.platform.payments.refund.completed.v1";
const std::string kRegistered = "com.platform.account.user.registered.v1";
const std::string kLogin = "com.platform.account.user.logged_in.v1";
const std::vector<std::string> kKpiMetrics = {"dau",           "new_users",       "sessions",
                                              "revenue_rub",   "purchases_count", "paying_users",
                                              "arpu",          "payer_conversion"};
const std::map<std::string, std::string> kContentTypes = {
    {"csv", "text/csv; charset=utf-8"},
    {"json", "application/json"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}};

// The 19 "active" types of docs/metrics.md section 4 (dau), spelled out independently.
const std::set<std::string> kActive = {
    "account.user.registered", "account.user.logged_in", "account.user.logged_out", "account.profile.updated",
    "store.page.viewed", "store.search.performed", "store.wishlist_item.added", "store.wishlist_item.removed",
    "cart.item.added", "cart.item.removed", "cart.checkout.started", "payments.purchase.completed",
    "payments.purchase.failed", "library.game.installed", "library.session.started", "library.session.ended",
    "achievements.achievement.unlocked", "reviews.review.posted", "social.friend.added"};

struct RawEvent {
  std::string type;  // full type
  std::string user;
  int64_t time_ms = 0;
  json data;
  std::string Text(const char* name) const {
    auto it = data.find(name);
    return it != data.end() && it->is_string() ? it->get<std::string>() : std::string();
  }
};

std::string Short(const std::string& type) { return type.substr(13, type.size() - 16); }
std::string Day(int64_t ms) { return common::FormatRfc3339Millis(ms).substr(0, 10); }
int64_t DayMs(const std::string& day) { return common::ParseRfc3339Millis(day + "T00:00:00Z").value(); }
int64_t Ms(const json& text) { return common::ParseRfc3339Millis(text.get<std::string>()).value(); }

bool IsRfc3339Millis(const json& value) {
  static const std::regex pattern(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");
  return value.is_string() && std::regex_match(value.get<std::string>(), pattern);
}

// The days from `first` to `last`, included.
std::vector<std::string> Days(const std::string& first, const std::string& last) {
  std::vector<std::string> days;
  for (int64_t ms = DayMs(first); ms <= DayMs(last); ms += kDayMs) days.push_back(Day(ms));
  return days;
}


// ---------------------------------------------------------------------------------------- report files read back

// One section as a format holds it. Cells: null, string, number or boolean (an XLSX date cell as "YYYY-MM-DD").
struct Table {
  std::string name, title, type;           // title and type: "" in CSV (it has neither)
  std::vector<std::string> columns;        // names; empty for XLSX (its sheets hold the titles only)
  std::vector<std::string> column_titles;  // JSON and XLSX
  std::vector<std::string> column_types;   // JSON
  std::vector<std::vector<json>> rows;
};

struct ReportFile {
  std::string format;
  json header;      // JSON "report" / the XLSX "Report" sheet's fields; null for CSV
  json parameters;  // JSON; the XLSX parameter rows as read; null for CSV
  std::vector<Table> tables;
  double tolerance = 0;  // relative: XLSX numbers keep 16 significant digits, CSV and JSON are exact
};

struct CsvField {
  std::string text;
  bool quoted = false;
};

// RFC 4180 with CRLF record ends (the last record's too, as writer.h says). False with `error` on bad input.
bool ParseCsv(const std::string& text, std::vector<std::vector<CsvField>>& records, std::string& error) {
  size_t pos = 0;
  while (pos < text.size()) {
    std::vector<CsvField> record;
    while (true) {
      CsvField field;
      if (pos < text.size() && text[pos] == '"') {
        field.quoted = true;
        ++pos;
        while (true) {
          if (pos >= text.size()) {
            error = "unterminated quoted field";
            return false;
          }
          if (text[pos] == '"') {
            if (pos + 1 < text.size() && text[pos + 1] == '"') {
              field.text.push_back('"');
              pos += 2;
              continue;
            }
            ++pos;
            break;
          }
          field.text.push_back(text[pos++]);
        }
      } else {
        while (pos < text.size() && text[pos] != ',' && text[pos] != '\r' && text[pos] != '\n') {
          if (text[pos] == '"') {
            error = "a quote inside an unquoted field at byte " + std::to_string(pos);
            return false;
          }
          field.text.push_back(text[pos++]);
        }
      }
      record.push_back(std::move(field));
      if (pos < text.size() && text[pos] == ',') {
        ++pos;
        continue;
      }
      if (text.compare(pos, 2, "\r\n") == 0) {
        pos += 2;
        break;
      }
      error = "a record does not end with CRLF at byte " + std::to_string(pos);
      return false;
    }
    records.push_back(std::move(record));
  }
  return true;
}

// A CSV field as a cell: an empty unquoted field is null, numbers and booleans are never quoted.
json CsvCell(const CsvField& field) {
  static const std::regex number(R"(^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$)");
  if (field.quoted) return field.text;
  if (field.text.empty()) return nullptr;
  if (field.text == "true") return true;
  if (field.text == "false") return false;
  if (std::regex_match(field.text, number)) return json::parse(field.text);
  return field.text;
}

ReportFile ReadCsv(const std::string& body) {
  ReportFile report;
  report.format = "csv";
  EXPECT_NE(body.rfind("\xEF\xBB\xBF", 0), 0u) << "a BOM";
  std::vector<std::vector<CsvField>> records;
  std::string error;
  EXPECT_TRUE(ParseCsv(body, records, error)) << error;
  bool header_next = true;
  for (const auto& record : records) {
    if (record.size() == 1 && !record[0].quoted && record[0].text.empty()) {
      EXPECT_FALSE(report.tables.empty() || header_next) << "an empty line that separates nothing";
      header_next = true;
      continue;
    }
    if (header_next) {
      EXPECT_EQ(record[0].text, "section") << "a section's header row";
      Table table;
      for (size_t field_idx = 1; field_idx < record.size(); ++field_idx) table.columns.push_back(record[field_idx].text);
      report.tables.push_back(std::move(table));
      header_next = false;
      continue;
    }
    Table& table = report.tables.back();
    if (table.name.empty()) table.name = record[0].text;
    EXPECT_EQ(record[0].text, table.name) << "every row starts with its section's name";
    EXPECT_EQ(record.size(), table.columns.size() + 1) << table.name;
    std::vector<json> row;
    for (size_t field_idx = 1; field_idx < record.size(); ++field_idx) row.push_back(CsvCell(record[field_idx]));
    table.rows.push_back(std::move(row));
  }
  return report;
}

std::vector<std::string> Keys(const ordered_json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

ReportFile ReadJson(const std::string& body) {
  ReportFile report;
  report.format = "json";
  const ordered_json doc = ordered_json::parse(body, nullptr, false);
  EXPECT_TRUE(doc.is_object()) << body.substr(0, 200);
  if (!doc.is_object()) return report;
  EXPECT_EQ(Keys(doc), (std::vector<std::string>{"report", "parameters", "sections"}));
  EXPECT_EQ(Keys(doc["report"]), (std::vector<std::string>{"instance_id", "definition_id", "definition_name", "title",
                                                           "definition_version", "generated_at", "timezone"}));
  report.header = json::parse(doc["report"].dump());
  report.parameters = json::parse(doc["parameters"].dump());
  for (const auto& section : doc["sections"]) {
    EXPECT_EQ(Keys(section), (std::vector<std::string>{"name", "title", "type", "columns", "rows", "row_count"}));
    Table table;
    table.name = section["name"].get<std::string>();
    table.title = section["title"].get<std::string>();
    table.type = section["type"].get<std::string>();
    for (const auto& column : section["columns"]) {
      EXPECT_EQ(Keys(column), (std::vector<std::string>{"name", "title", "type"}));
      table.columns.push_back(column["name"].get<std::string>());
      table.column_titles.push_back(column["title"].get<std::string>());
      table.column_types.push_back(column["type"].get<std::string>());
    }
    for (const auto& row : section["rows"]) {
      EXPECT_EQ(Keys(row), table.columns) << "a row's members are the columns, in their order";
      std::vector<json> cells;
      for (const auto& column : table.columns) cells.push_back(json::parse(row[column].dump()));
      table.rows.push_back(std::move(cells));
    }
    EXPECT_EQ(section["row_count"], table.rows.size()) << table.name;
    report.tables.push_back(std::move(table));
  }
  return report;
}

// Prints a workbook as JSON: sheets in order with name, frozen panes, the first row's boldness and every cell as
// null, {"s": text} (unescaped from _xHHHH_ as Excel does), {"n": number}, {"b": bool} or {"d": "YYYY-MM-DD", "f":
// number format} (as tests/unit/report_formats_test.cc reads them).
constexpr char kReadXlsxScript[] = R"PY(
import datetime, json, re, sys
import openpyxl

path, out_path = sys.argv[1], sys.argv[2]
workbook = openpyxl.load_workbook(path)
escape = re.compile(r"_x([0-9A-Fa-f]{4})_")

def cell(c):
    v = c.value
    if v is None:
        return None
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, datetime.datetime):
        return {"d": v.date().isoformat(), "f": c.number_format, "time": v.time().isoformat()}
    if isinstance(v, (int, float)):
        return {"n": v}
    if isinstance(v, str):
        return {"s": escape.sub(lambda match: chr(int(match.group(1), 16)), v)}
    return {"other": repr(v)}

sheets = []
for sheet in workbook.worksheets:
    rows = [[cell(c) for c in row] for row in sheet.iter_rows()]
    bold = [bool(c.font is not None and c.font.b) for c in sheet[1]] if sheet.max_row >= 1 else []
    sheets.append({"name": sheet.title, "freeze": sheet.freeze_panes, "bold": bold, "rows": rows})
with open(out_path, "w") as out:
    json.dump({"sheets": sheets}, out, allow_nan=False)
)PY";

json XlsxCell(const json& cell) {
  if (cell.is_null()) return nullptr;
  if (cell.contains("s")) return cell["s"];
  if (cell.contains("n")) return cell["n"];
  if (cell.contains("b")) return cell["b"];
  if (cell.contains("d")) {
    EXPECT_EQ(cell["f"], "yyyy-mm-dd");
    EXPECT_EQ(cell["time"], "00:00:00");
    return cell["d"];
  }
  ADD_FAILURE() << "unexpected XLSX cell " << cell.dump();
  return cell;
}

std::string CellText(const json& row, size_t column_idx) {
  const json cell = column_idx < row.size() ? XlsxCell(row[column_idx]) : json();
  return cell.is_string() ? cell.get<std::string>() : std::string();
}

ReportFile ReadXlsx(const std::string& body, const std::filesystem::path& dir) {
  ReportFile report;
  report.format = "xlsx";
  report.tolerance = 1e-15;
  const std::filesystem::path xlsx = dir / "report.xlsx", script = dir / "read_xlsx.py", out = dir / "report.json";
  std::ofstream(xlsx, std::ios::binary) << body;
  std::ofstream(script) << kReadXlsxScript;
  const std::string command =
      std::string(ANALYTICS_PYTHON3) + " '" + script.string() + "' '" + xlsx.string() + "' '" + out.string() + "'";
  const int exit_code = std::system(command.c_str());
  EXPECT_EQ(exit_code, 0) << command << " (needs python3-openpyxl: scripts/install-deps)";
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  json workbook = json::parse(text.str(), nullptr, false);
  std::filesystem::remove(xlsx);
  std::filesystem::remove(out);
  EXPECT_TRUE(workbook.is_object() && workbook.contains("sheets")) << text.str().substr(0, 200);
  if (!workbook.is_object() || !workbook.contains("sheets") || workbook["sheets"].empty()) return report;
  const json& sheets = workbook["sheets"];
  const json& summary = sheets[0];
  EXPECT_EQ(summary["name"], "Report");
  const json& rows = summary["rows"];
  // "report", then name/value rows; "parameters", then one row per parameter; then the sections' table.
  EXPECT_EQ(CellText(rows[0], 0), "report");
  report.header = json::object();
  report.parameters = json::object();
  size_t row_idx = 1;
  for (; row_idx < rows.size() && !CellText(rows[row_idx], 0).empty(); ++row_idx) {
    report.header[CellText(rows[row_idx], 0)] = XlsxCell(rows[row_idx].size() > 1 ? rows[row_idx][1] : json());
  }
  while (row_idx < rows.size() && CellText(rows[row_idx], 0) != "parameters") ++row_idx;
  for (++row_idx; row_idx < rows.size() && !CellText(rows[row_idx], 0).empty(); ++row_idx) {
    report.parameters[CellText(rows[row_idx], 0)] = XlsxCell(rows[row_idx].size() > 1 ? rows[row_idx][1] : json());
  }
  while (row_idx < rows.size() && CellText(rows[row_idx], 0) != "name") ++row_idx;
  EXPECT_LT(row_idx, rows.size()) << "no sections table in the Report sheet";
  if (row_idx < rows.size()) {
    for (size_t column_idx = 0; column_idx < 5; ++column_idx) {
      EXPECT_EQ(CellText(rows[row_idx], column_idx),
                std::vector<std::string>({"name", "title", "type", "row_count", "sheet"})[column_idx]);
    }
  }
  for (++row_idx; row_idx < rows.size() && !CellText(rows[row_idx], 0).empty(); ++row_idx) {
    const json& entry = rows[row_idx];
    Table table;
    table.name = CellText(entry, 0);
    table.title = CellText(entry, 1);
    table.type = CellText(entry, 2);
    const std::string sheet_name = CellText(entry, 4);
    const json* sheet = nullptr;
    for (const auto& candidate : sheets) {
      if (candidate["name"] == sheet_name) sheet = &candidate;
    }
    EXPECT_NE(sheet, nullptr) << "no sheet " << sheet_name;
    if (sheet == nullptr) continue;
    EXPECT_EQ((*sheet)["freeze"], "A2") << sheet_name;
    for (const auto& bold : (*sheet)["bold"]) EXPECT_EQ(bold, true) << sheet_name;
    const json& cells = (*sheet)["rows"];
    for (const auto& title : cells[0]) table.column_titles.push_back(XlsxCell(title).get<std::string>());
    for (size_t cell_row = 1; cell_row < cells.size(); ++cell_row) {
      std::vector<json> row;
      for (const auto& cell : cells[cell_row]) row.push_back(XlsxCell(cell));
      row.resize(table.column_titles.size());
      table.rows.push_back(std::move(row));
    }
    EXPECT_EQ(XlsxCell(entry[3]), table.rows.size()) << "row_count of " << table.name;
    report.tables.push_back(std::move(table));
  }
  EXPECT_EQ(sheets.size(), report.tables.size() + 1) << "one sheet per section besides Report";
  return report;
}

// A cell against the expected value: numbers within the format's relative tolerance, everything else equal.
void ExpectCell(const json& got, const json& want, double tolerance, const std::string& what) {
  if (got.is_number() && want.is_number()) {
    const double g = got.get<double>(), w = want.get<double>();
    EXPECT_LE(std::fabs(g - w), tolerance * std::fabs(w)) << what << ": " << got << " != " << want;
  } else {
    EXPECT_EQ(got, want) << what;
  }
}

// The column positions of `names` after checking that the table has exactly these columns (by name; an XLSX
// sheet, which holds titles only, by count).
std::map<std::string, size_t> Columns(const Table& table, const std::vector<std::string>& names) {
  if (!table.columns.empty() || table.column_titles.empty()) {
    EXPECT_EQ(table.columns, names) << table.name;
  } else {
    EXPECT_EQ(table.column_titles.size(), names.size()) << table.name;
  }
  std::map<std::string, size_t> positions;
  for (size_t column_idx = 0; column_idx < names.size(); ++column_idx) positions[names[column_idx]] = column_idx;
  return positions;
}

// The API's answers are computed again after the report's: a sum of decimal amounts (revenue_rub) may then be added
// up in another order (the store's layout changes when its memtable is flushed or replayed after a restart), which
// moves its last bits. That much is allowed besides the format's own precision (exactness of the formats' numbers is
// tests/unit/report_formats_test.cc's subject).
constexpr double kRecomputed = 1e-12;

// Whole rows against expected ones (the table's columns are `names`).
void ExpectRows(const Table& table, const std::vector<std::string>& names, const std::vector<std::vector<json>>& want,
                double tolerance) {
  Columns(table, names);
  ASSERT_EQ(table.rows.size(), want.size()) << table.name;
  for (size_t row_idx = 0; row_idx < want.size(); ++row_idx) {
    ASSERT_EQ(table.rows[row_idx].size(), names.size()) << table.name << " row " << row_idx;
    for (size_t column_idx = 0; column_idx < names.size(); ++column_idx) {
      ExpectCell(table.rows[row_idx][column_idx], want[row_idx][column_idx], tolerance + kRecomputed,
                 table.name + " row " + std::to_string(row_idx) + " " + names[column_idx]);
    }
  }
}

const Table* FindTable(const ReportFile& report, const std::string& name) {
  for (const auto& table : report.tables) {
    if (table.name == name) return &table;
  }
  ADD_FAILURE() << "no section " << name << " in the " << report.format << " file";
  return nullptr;
}

// ---------------------------------------------------------------------------------------------------- the suite

// ctest runs each test in a process of its own (gtest_discover_tests), so every test gets this suite's set-up: a
// fresh service with the generated events, two segments and the custom definition; keep it cheap.
class ReportsE2eTest : public ::testing::Test {
 protected:
  // A requested instance followed to its end.
  struct Generated {
    std::string id;
    json requested;  // the 202 body
    json done;       // the final document
    ClientResponse download;
    ReportFile report;
  };

  static void SetUpTestSuite() {
    data_ = new TempDir();
    keys_ = new TempDir();
    scratch_ = new TempDir();
    gen::GeneratorOptions options;
    options.users = 300;
    options.days = 14;
    options.seed = 71;
    options.start_date = "2024-01-01";
    lines_ = new std::vector<std::string>();
    gen::Generate(options, [](std::string_view line) { lines_->emplace_back(line); });
    events_ = new std::vector<RawEvent>();
    for (const auto& line : *lines_) {
      const json event = json::parse(line);
      RawEvent raw;
      raw.type = event["type"].get<std::string>();
      raw.time_ms = Ms(event["time"]);
      raw.data = event.value("data", json::object());
      if (event.contains("subject")) raw.user = event["subject"].get<std::string>();
      else if (raw.data.contains("user_id")) raw.user = raw.data["user_id"].get<std::string>();
      events_->push_back(std::move(raw));
    }
    Start();
    PostEventLines(*client_, producer_, *lines_, 0, lines_->size());

    // The built-ins, by name.
    json list = Get(kDefinitions, 200, owner_);
    for (const auto& item : list["items"]) builtin_ids_[item["name"].get<std::string>()] = item["id"].get<std::string>();
    ASSERT_TRUE(builtin_ids_.count("daily_kpi_summary")) << list.dump();

    // Segments for the segment_sizes section: a static list of three users, and the buyers up to a fixed time.
    std::set<std::string> some_users;
    for (const auto& event : *events_) {
      if (!event.user.empty() && some_users.size() < 3) some_users.insert(event.user);
    }
    auto created = Send("POST", kSegmentDefinitions,
                        {{"name", "report_static_list"},
                         {"type", "static"},
                         {"user_ids", json(std::vector<std::string>(some_users.begin(), some_users.end()))}},
                        admin_);
    ASSERT_EQ(created.status, 201) << created.body;
    static_segment_ = created.Json()["id"].get<std::string>();
    created = Send("POST", kSegmentDefinitions,
                   {{"name", "report_buyers"},
                    {"type", "dynamic"},
                    {"as_of", "2024-01-15T00:00:00.000Z"},
                    {"rule", {{"performed", {{"event_type", kBuy}}}}}},
                   admin_);
    ASSERT_EQ(created.status, 201) << created.body;
    buyers_segment_ = created.Json()["id"].get<std::string>();
    segment_run_ = created.Json().value("refresh_run_id", "");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (client_->Get(kSegments + buyers_segment_ + "/users-count", admin_).status != 200 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    created = Send("POST", kDefinitions, CustomDefinition(), admin_);
    ASSERT_EQ(created.status, 201) << created.body;
    custom_id_ = created.Json()["id"].get<std::string>();
  }

  static void TearDownTestSuite() {
    delete client_;
    delete service_;
    delete events_;
    delete lines_;
    delete scratch_;
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
    // Tokens are made one at a time: each is a fork of this process, and the sanitizers' allocator is not
    // fork-safe while other threads allocate.
    admin_ = service_->Token({"platform_admin"}, "admin");
    owner_ = service_->Token({"marketing_manager"}, "mm-owner");
    producer_ = service_->Token({"service"}, "producer");
  }

  // The custom definition: metrics (plain and top-N per game), a funnel, retention and segment sizes, with
  // placeholders in a title, a limit and the segment list.
  static json FunnelRequest() {
    return {{"steps", {{{"event_type", kView}}, {{"event_type", kCart}}, {{"event_type", kBuy}}}},
            {"window_seconds", 86400},
            {"order", "ordered"}};
  }
  static json RetentionRequest() {
    return {{"start_event", {{"event_type", kRegistered}}},
            {"return_event", {{"event_type", kLogin}}},
            {"cohort_granularity", "week"},
            {"periods", {1, 7}}};
  }
  static json CustomDefinition() {
    return {{"name", "e2e_marketing_pack"},
            {"title", "Marketing pack"},
            {"parameters",
             {{{"name", "period_start"}, {"type", "date"}, {"required", true}},
              {{"name", "period_end"}, {"type", "date"}, {"required", true}},
              {{"name", "timezone"}, {"type", "timezone"}, {"default", "UTC"}},
              {{"name", "segments"}, {"type", "string_list"}, {"required", true}},
              {{"name", "top"}, {"type", "integer"}, {"default", 3}, {"min", 1}, {"max", 10}}}},
            {"sections",
             {{{"name", "daily"},
               {"title", "Daily numbers"},
               {"type", "metrics"},
               {"metrics", {"dau", "revenue_rub", "purchases_count"}}},
              {{"name", "top_games"},
               {"title", "Top ${top} games"},
               {"type", "metrics"},
               {"metrics", {"revenue_rub", "purchases_count"}},
               {"dimensions", {"game_id"}},
               {"limit", "${top}"}},
              {{"name", "funnel"}, {"title", "View, cart, buy"}, {"type", "funnel"}, {"request", FunnelRequest()}},
              {{"name", "retention"}, {"type", "retention"}, {"request", RetentionRequest()}},
              {{"name", "segments"}, {"title", "Audiences"}, {"type", "segment_sizes"}, {"segments", "${segments}"}}}}};
  }

  // A report that keeps a worker busy for a while: `sections` sections of the eight KPIs per hour over 9,984
  // hours (the most buckets a series may have is 10,000), each a few seconds under the sanitizers.
  static json SlowDefinition(const std::string& name, int sections) {
    json list = json::array();
    for (int section_idx = 0; section_idx < sections; ++section_idx) {
      list.push_back({{"name", "hours_" + std::to_string(section_idx)},
                      {"type", "metrics"},
                      {"metrics", kKpiMetrics},
                      {"granularity", "hour"}});
    }
    return {{"name", name},
            {"parameters",
             {{{"name", "period_start"}, {"type", "date"}, {"required", true}},
              {{"name", "period_end"}, {"type", "date"}, {"required", true}}}},
            {"sections", list}};
  }
  static json SlowParameters() { return {{"period_start", "2023-01-01"}, {"period_end", "2024-02-20"}}; }
  static constexpr size_t kSlowHours = 416 * 24;

  // Every report.generated item in the outbox of the service `client` talks to, oldest first, page by page (the
  // outbox is durable: it keeps the events of every earlier test and start of the suite's service).
  static json GeneratedItems(HttpClient& client, const std::string& admin) {
    json items = json::array();
    int64_t after = 0;
    for (int page = 0; page < 1000; ++page) {
      auto response = client.Get(kOutbox + "?limit=1000&after=" + std::to_string(after) + "&type=" +
                                     UrlEncode(kGeneratedType), admin);
      EXPECT_EQ(response.status, 200) << response.body;
      json read = response.Json();
      if (!read["items"].is_array() || read["items"].empty()) break;
      for (auto& item : read["items"]) items.push_back(std::move(item));
      after = items.back().value("sequence", int64_t{0});
    }
    return items;
  }

  // The report.generated events in the outbox of the service `client` talks to, by instance id. An instance reads
  // completed a moment before its event is published: the outbox is read until two reads 100 ms apart agree.
  static std::map<std::string, std::vector<json>> GeneratedEvents(HttpClient& client, const std::string& admin) {
    json outbox;
    for (int attempt = 0; attempt < 50; ++attempt) {
      json read = GeneratedItems(client, admin);
      if (attempt > 0 && read == outbox) break;
      outbox = std::move(read);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::map<std::string, std::vector<json>> events;
    for (auto& item : outbox) {
      EXPECT_EQ(item["event"]["type"], kGeneratedType) << item.dump();
      // Without Kafka nothing relays: relayed_at stays null.
      EXPECT_TRUE(item.contains("relayed_at") && item["relayed_at"].is_null()) << item.dump();
      events[item.value("key", "")].push_back(item["event"]);
    }
    return events;
  }

  // Every instance id the caller lists, following next_cursor with pages of `limit`.
  static std::vector<std::string> ListedIds(const std::string& query, const std::string& token, int limit) {
    std::vector<std::string> ids;
    std::string cursor;
    for (int page = 0; page < 1000; ++page) {
      std::string target = kInstances + "?limit=" + std::to_string(limit) + query;
      if (!cursor.empty()) target += "&cursor=" + UrlEncode(cursor);
      json answer = Get(target, 200, token);
      EXPECT_LE(answer["items"].size(), static_cast<size_t>(limit));
      for (auto& item : answer["items"]) ids.push_back(item.value("instance_id", ""));
      if (!answer["next_cursor"].is_string()) return ids;
      cursor = answer["next_cursor"].get<std::string>();
    }
    ADD_FAILURE() << "the instance list never ended";
    return ids;
  }

  static json KpiParameters(const std::string& start = kPeriodStart, const std::string& end = kPeriodEnd) {
    return {{"period_start", start}, {"period_end", end}};
  }
  // What the service binds them to (every declared parameter, defaults filled in).
  static json KpiBound(const std::string& start = kPeriodStart, const std::string& end = kPeriodEnd) {
    return {{"period_start", start}, {"period_end", end}, {"timezone", "UTC"}, {"game_ids", json::array()},
            {"segment", nullptr}};
  }
  static json CustomParameters() {
    return {{"period_start", kPeriodStart}, {"period_end", kPeriodEnd}, {"segments", {static_segment_, buyers_segment_}}};
  }
  static json CustomBound() {
    json bound = CustomParameters();
    bound["timezone"] = "UTC";
    bound["top"] = 3;
    return bound;
  }

  static ClientResponse Send(const std::string& method, const std::string& target, const json& body,
                             const std::string& token, std::map<std::string, std::string> headers = {},
                             HttpClient* client = nullptr) {
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    std::string text;
    if (!body.is_null()) {
      headers.emplace("Content-Type", "application/json");
      text = body.dump();
    }
    return (client != nullptr ? client : client_)->Request(method, target, text, headers);
  }
  static json Get(const std::string& target, int expected = 200, const std::string& token = {}) {
    auto response = client_->Get(target, token.empty() ? admin_ : token);
    EXPECT_EQ(response.status, expected) << "GET " << target << " → " << response.body;
    return response.Json();
  }
  // The "items" of a list (a value: a range-for over Get(...)["items"] would outlive its document).
  static json Items(const std::string& target, const std::string& token = {}) { return Get(target, 200, token)["items"]; }
  static json ExpectError(const ClientResponse& response, int status, const std::string& code,
                          const std::string& what) {
    EXPECT_EQ(response.status, status) << what << " → " << response.body;
    json body = response.Json();
    EXPECT_EQ(body["error"]["code"], code) << what << " → " << response.body;
    return body["error"];
  }

  static ClientResponse Request(const std::string& definition_id, const json& parameters, const std::string& format,
                                const std::string& token, HttpClient* client = nullptr) {
    return Send("POST", kInstances,
                {{"report_definition_id", definition_id}, {"parameters", parameters}, {"output_format", format}}, token,
                {}, client);
  }

  // Polls GET /reports/instances/{id} until the instance has finished (60 s at most), checking that the status
  // only moves forward (queued → running → finished), progress stays in [0, 1] without going back, and a running
  // instance has started_at and no finished_at.
  static json Wait(const std::string& id, const std::string& token, HttpClient* client = nullptr,
                   std::vector<std::string>* seen = nullptr) {
    static const std::map<std::string, int> kRank = {
        {"queued", 0}, {"running", 1}, {"completed", 2}, {"failed", 2}, {"cancelled", 2}};
    HttpClient& http = client != nullptr ? *client : *client_;
    json doc;
    int rank = 0;
    double progress = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      auto response = http.Get(kInstances + "/" + id, token);
      EXPECT_EQ(response.status, 200) << response.body;
      if (response.status != 200) break;
      doc = response.Json();
      const std::string status = doc.value("status", "");
      EXPECT_TRUE(kRank.count(status)) << doc.dump();
      if (!kRank.count(status)) break;
      if (seen != nullptr && (seen->empty() || seen->back() != status)) seen->push_back(status);
      EXPECT_GE(kRank.at(status), rank) << "the status went back: " << doc.dump();
      rank = kRank.at(status);
      EXPECT_TRUE(doc["progress"].is_number()) << doc.dump();
      if (doc["progress"].is_number()) {
        const double now = doc["progress"].get<double>();
        EXPECT_GE(now, progress) << doc.dump();
        EXPECT_LE(now, 1.0) << doc.dump();
        progress = now;
      }
      if (status == "running") {
        EXPECT_TRUE(IsRfc3339Millis(doc["started_at"])) << doc.dump();
        EXPECT_TRUE(doc["finished_at"].is_null()) << doc.dump();
        EXPECT_TRUE(doc["file"].is_null()) << doc.dump();
      }
      if (rank == 2) return doc;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "instance " << id << " did not finish: " << doc.dump();
    return doc;
  }

  // The 202 document of a new instance.
  static void ExpectQueued(json doc, const std::string& definition_id, const json& bound,
                           const std::string& format, const std::string& subject) {
    EXPECT_TRUE(doc["instance_id"].is_string()) << doc.dump();
    EXPECT_EQ(doc["report_definition_id"], definition_id);
    EXPECT_EQ(doc["status"], "queued") << doc.dump();
    EXPECT_EQ(doc["progress"], 0.0) << doc.dump();
    EXPECT_EQ(doc["parameters"], bound) << doc.dump();
    EXPECT_EQ(doc["output_format"], format);
    EXPECT_EQ(doc["requested_by"], subject);
    EXPECT_EQ(doc["trigger"], "manual");
    EXPECT_TRUE(doc["scheduled_for"].is_null()) << doc.dump();
    EXPECT_EQ(doc["recipients"], json::array());
    EXPECT_TRUE(IsRfc3339Millis(doc["created_at"])) << doc.dump();
    for (const char* name : {"started_at", "finished_at", "duration_ms", "file", "row_count", "error"}) {
      EXPECT_TRUE(doc[name].is_null()) << name << " " << doc.dump();
    }
  }

  // Downloads a completed instance and checks the response's headers against its document.
  static ClientResponse Download(const std::string& id, json doc, const std::string& token,
                                 HttpClient* client = nullptr) {
    auto response = Send("GET", kInstances + "/" + id + "/download", json(), token, {}, client);
    EXPECT_EQ(response.status, 200) << response.body.substr(0, 300);
    const std::string format = doc.value("output_format", "");
    EXPECT_EQ(response.Header("content-type"), kContentTypes.at(format));
    EXPECT_EQ(response.Header("content-disposition"),
              "attachment; filename=\"" + doc["file"].value("file_name", std::string("?")) + "\"");
    EXPECT_EQ(response.Header("content-length"), std::to_string(response.body.size()));
    EXPECT_EQ(doc["file"]["size_bytes"], response.body.size()) << doc.dump();
    EXPECT_EQ(response.Header("cache-control"), "private, no-store");
    return response;
  }

  static ReportFile Read(const std::string& format, const std::string& body) {
    if (format == "csv") return ReadCsv(body);
    if (format == "json") return ReadJson(body);
    return ReadXlsx(body, scratch_->path());
  }

  // The completed document against its request and its file.
  static void ExpectCompleted(json doc, const std::string& definition_id, const std::string& definition_name,
                              const json& bound, const std::string& format, const std::string& subject,
                              const std::string& file_name, const ClientResponse& download, const ReportFile& report) {
    const std::string id = doc.value("instance_id", "");
    EXPECT_EQ(doc["status"], "completed") << doc.dump();
    EXPECT_TRUE(doc["error"].is_null()) << doc.dump();
    EXPECT_EQ(doc["progress"], 1.0) << doc.dump();
    EXPECT_EQ(doc["report_definition_id"], definition_id);
    EXPECT_EQ(doc["report_name"], definition_name);
    EXPECT_TRUE(doc["definition_version"].is_number_integer()) << doc.dump();
    EXPECT_EQ(doc["parameters"], bound) << doc.dump();
    EXPECT_EQ(doc["output_format"], format);
    EXPECT_EQ(doc["requested_by"], subject);
    EXPECT_EQ(doc["trigger"], "manual");
    for (const char* name : {"created_at", "started_at", "finished_at"}) {
      EXPECT_TRUE(IsRfc3339Millis(doc[name])) << name << " " << doc.dump();
    }
    if (IsRfc3339Millis(doc["created_at"]) && IsRfc3339Millis(doc["started_at"]) &&
        IsRfc3339Millis(doc["finished_at"])) {
      EXPECT_LE(Ms(doc["created_at"]), Ms(doc["started_at"]));
      EXPECT_LE(Ms(doc["started_at"]), Ms(doc["finished_at"]));
      EXPECT_EQ(doc["duration_ms"], Ms(doc["finished_at"]) - Ms(doc["started_at"])) << doc.dump();
    }
    const json& file = doc["file"];
    ASSERT_TRUE(file.is_object()) << doc.dump();
    EXPECT_EQ(file["content_type"], kContentTypes.at(format));
    EXPECT_EQ(file["file_name"], file_name);
    EXPECT_EQ(file["download_path"], kInstances + "/" + id + "/download");
    EXPECT_TRUE(IsRfc3339Millis(file["expires_at"])) << doc.dump();
    if (IsRfc3339Millis(file["expires_at"]) && IsRfc3339Millis(doc["finished_at"])) {
      // retention_days defaults to 30 (configs/config.yaml).
      EXPECT_NEAR(static_cast<double>(Ms(file["expires_at"]) - Ms(doc["finished_at"])), 30.0 * kDayMs, 5000.0);
    }
    EXPECT_EQ(file["size_bytes"], download.body.size());
    // Sections and rows as the file holds them.
    size_t rows = 0;
    ASSERT_TRUE(doc["sections"].is_array()) << doc.dump();
    ASSERT_EQ(doc["sections"].size(), report.tables.size()) << doc.dump();
    for (size_t section_idx = 0; section_idx < report.tables.size(); ++section_idx) {
      const Table& table = report.tables[section_idx];
      const json& section = doc["sections"][section_idx];
      EXPECT_EQ(section["name"], table.name) << doc.dump();
      EXPECT_EQ(section["rows"], table.rows.size()) << table.name;
      if (format != "csv") {
        EXPECT_EQ(section["title"], table.title) << table.name;
        EXPECT_EQ(section["type"], table.type) << table.name;
      }
      rows += table.rows.size();
    }
    EXPECT_EQ(doc["row_count"], rows) << doc.dump();
    if (format == "csv") return;
    // The file's header.
    json header = report.header;
    EXPECT_EQ(header["instance_id"], id);
    EXPECT_EQ(header["definition_id"], definition_id);
    EXPECT_EQ(header["definition_name"], definition_name);
    EXPECT_EQ(header["definition_version"], doc["definition_version"]);
    EXPECT_EQ(header["timezone"], bound.value("timezone", "UTC"));
    EXPECT_TRUE(IsRfc3339Millis(header["generated_at"])) << report.header.dump();
    if (IsRfc3339Millis(header["generated_at"]) && IsRfc3339Millis(doc["started_at"])) {
      EXPECT_GE(Ms(header["generated_at"]), Ms(doc["started_at"]));
      EXPECT_LE(Ms(header["generated_at"]), Ms(doc["finished_at"]));
    }
    if (format == "json") {
      EXPECT_EQ(report.parameters, bound);
    } else {
      // XLSX: scalars typed, arrays as JSON text, null as no cell.
      ASSERT_EQ(report.parameters.size(), bound.size()) << report.parameters.dump();
      for (const auto& [name, value] : bound.items()) {
        const json want = value.is_array() || value.is_object() ? json(value.dump()) : value;
        ExpectCell((report.parameters.contains(name) ? report.parameters.at(name) : json("<missing>")), want, report.tolerance, "parameter " + name);
      }
    }
  }

  // Requests an instance, follows it to completion, downloads and reads its file, checking everything the API says
  // about it.
  static Generated Generate(const std::string& definition_id, const std::string& definition_name,
                            const json& parameters, const json& bound, const std::string& format,
                            const std::string& token, const std::string& subject, const std::string& file_name,
                            std::vector<std::string>* seen = nullptr) {
    Generated out;
    auto response = Request(definition_id, parameters, format, token);
    EXPECT_EQ(response.status, 202) << response.body;
    out.requested = response.Json();
    out.id = out.requested.value("instance_id", "");
    EXPECT_EQ(response.Header("location"), kInstances + "/" + out.id);
    ExpectQueued(out.requested, definition_id, bound, format, subject);
    if (out.id.empty()) return out;
    out.done = Wait(out.id, token, nullptr, seen);
    if (out.done["status"] != "completed") {
      ADD_FAILURE() << out.done.dump();
      return out;
    }
    out.download = Download(out.id, out.done, token);
    out.report = Read(format, out.download.body);
    ExpectCompleted(out.done, definition_id, definition_name, bound, format, subject, file_name, out.download,
                    out.report);
    return out;
  }

  // ------------------------------------------------------------------------------------------ the API's answers

  // GET /metrics/values/{metric} per day of the period: day → value.
  static std::map<std::string, json> DailyValues(const std::string& metric, const std::string& start,
                                                 const std::string& end) {
    const std::string key = metric + "|" + start + "|" + end;
    auto cached = daily_values_.find(key);
    if (cached != daily_values_.end()) return cached->second;
    json document = Get(kValues + metric + "?period_start=" + start + "&period_end=" + end +
                        "&timezone=UTC&granularity=day");
    std::map<std::string, json> values;
    EXPECT_EQ(document["series"].size(), 1u) << document.dump();
    for (const auto& series : document["series"]) {
      for (const auto& point : series["points"]) values[point[0].get<std::string>().substr(0, 10)] = point[1];
    }
    daily_values_[key] = values;
    return values;
  }

  static std::string MetricTitle(const std::string& metric) {
    json definition = Get(kMetricDefinitions + metric);
    const std::string unit = definition.value("unit", "");
    return unit.empty() ? metric : metric + " (" + unit + ")";
  }

  // Raw references per UTC day: distinct active users, net RUB revenue (refunds count on their own day),
  // purchases (any currency).
  static std::map<std::string, double> RawDau() {
    std::map<std::string, std::set<std::string>> users;
    for (const auto& event : *events_) {
      if (!event.user.empty() && kActive.count(Short(event.type))) users[Day(event.time_ms)].insert(event.user);
    }
    std::map<std::string, double> out;
    for (const auto& [day, set] : users) out[day] = static_cast<double>(set.size());
    return out;
  }
  static std::map<std::string, double> RawRevenue() {
    std::map<std::string, double> out;
    for (const auto& event : *events_) {
      const bool refund = event.type == kRefund;
      if ((event.type != kBuy && !refund) || event.Text("currency") != "RUB") continue;
      if (!event.data.contains("amount") || !event.data["amount"].is_number()) continue;
      out[Day(event.time_ms)] += event.data["amount"].get<double>() * (refund ? -1 : 1);
    }
    return out;
  }
  static std::map<std::string, double> RawPurchases() {
    std::map<std::string, double> out;
    for (const auto& event : *events_) {
      if (event.type == kBuy) out[Day(event.time_ms)] += 1;
    }
    return out;
  }

  // A table of metrics per day (columns date + `metrics`) against GET /metrics/values and, for dau, revenue_rub
  // and purchases_count, the raw events.
  static void ExpectDailyMetrics(const Table& table, const std::vector<std::string>& metrics, const ReportFile& report,
                                 const std::string& start, const std::string& end) {
    std::vector<std::string> names = {"date"};
    names.insert(names.end(), metrics.begin(), metrics.end());
    const std::vector<std::string> days = Days(start, end);
    std::vector<std::vector<json>> want;
    for (const auto& day : days) want.push_back({day});
    for (const auto& metric : metrics) {
      auto values = DailyValues(metric, start, end);
      EXPECT_EQ(values.size(), days.size()) << metric;
      for (size_t day_idx = 0; day_idx < days.size(); ++day_idx) want[day_idx].push_back(values[days[day_idx]]);
    }
    ExpectRows(table, names, want, report.tolerance);
    // The raw references, independently of the API.
    const std::map<std::string, std::map<std::string, double>> raw = {
        {"dau", RawDau()}, {"revenue_rub", RawRevenue()}, {"purchases_count", RawPurchases()}};
    double purchases = 0;
    for (size_t column_idx = 1; column_idx < names.size(); ++column_idx) {
      auto reference = raw.find(names[column_idx]);
      if (reference == raw.end()) continue;
      for (size_t day_idx = 0; day_idx < days.size() && day_idx < table.rows.size(); ++day_idx) {
        auto it = reference->second.find(days[day_idx]);
        const double expected = it == reference->second.end() ? 0.0 : it->second;
        const json& cell = table.rows[day_idx][column_idx];
        ASSERT_TRUE(cell.is_number()) << names[column_idx] << " " << days[day_idx] << " " << cell;
        EXPECT_NEAR(cell.get<double>(), expected, 1e-6 + std::fabs(expected) * report.tolerance)
            << names[column_idx] << " " << days[day_idx] << " (" << report.format << ")";
        if (names[column_idx] == "purchases_count") purchases += cell.get<double>();
      }
    }
    if (std::count(names.begin(), names.end(), "purchases_count") > 0) {
      EXPECT_GT(purchases, 10);
    }
    // Titles: the metric with its unit; JSON column types.
    if (!table.column_titles.empty() && table.column_titles.size() == names.size()) {
      EXPECT_EQ(table.column_titles[0], "Date");
      for (size_t column_idx = 1; column_idx < names.size(); ++column_idx) {
        EXPECT_EQ(table.column_titles[column_idx], MetricTitle(names[column_idx])) << report.format;
      }
    }
    if (!table.column_types.empty()) {
      static const std::map<std::string, std::string> kTypes = {
          {"date", "date"},          {"dau", "integer"},          {"new_users", "integer"},
          {"sessions", "integer"},   {"revenue_rub", "number"},   {"purchases_count", "integer"},
          {"paying_users", "integer"}, {"arpu", "number"},       {"payer_conversion", "number"}};
      for (size_t column_idx = 0; column_idx < names.size(); ++column_idx) {
        EXPECT_EQ(table.column_types[column_idx], kTypes.at(names[column_idx])) << names[column_idx];
      }
    }
  }

  static void ExpectKpiReport(const ReportFile& report, const std::string& start = kPeriodStart,
                              const std::string& end = kPeriodEnd) {
    ASSERT_EQ(report.tables.size(), 1u) << report.format;
    const Table& table = report.tables[0];
    EXPECT_EQ(table.name, "kpis");
    if (report.format != "csv") {
      EXPECT_EQ(table.title, "KPIs per day");
      EXPECT_EQ(table.type, "metrics");
    }
    ExpectDailyMetrics(table, kKpiMetrics, report, start, end);
  }

  // The top-N section: per day, the groups of the first metric's answer in its order, then those only the second
  // has; each metric's value from its own answer (null where it has no such group).
  static void ExpectTopGames(const Table& table, const ReportFile& report) {
    const std::vector<std::string> metrics = {"revenue_rub", "purchases_count"};
    std::vector<json> answers;
    for (const auto& metric : metrics) {
      answers.push_back(Get(kValues + metric + "?period_start=" + kPeriodStart + "&period_end=" + kPeriodEnd +
                            "&timezone=UTC&granularity=day&limit=3&dimensions=" + UrlEncode(R"(["game_id"])")));
    }
    std::vector<json> groups;  // {"dimensions", "other"}
    for (const auto& answer : answers) {
      for (const auto& series : answer["series"]) {
        const json group = {{"dimensions", series["dimensions"]}, {"other", series.value("other", false)}};
        if (std::find(groups.begin(), groups.end(), group) == groups.end()) groups.push_back(group);
      }
    }
    EXPECT_GE(groups.size(), 4u) << "three games and other";
    std::vector<std::vector<json>> want;
    for (const auto& day : Days(kPeriodStart, kPeriodEnd)) {
      for (const auto& group : groups) {
        std::vector<json> row = {day, group["dimensions"]["game_id"]};
        for (const auto& answer : answers) {
          json value;
          for (const auto& series : answer["series"]) {
            if (series["dimensions"] != group["dimensions"] || series.value("other", false) != group["other"]) continue;
            for (const auto& point : series["points"]) {
              if (point[0].get<std::string>().substr(0, 10) == day) value = point[1];
            }
          }
          row.push_back(value);
        }
        want.push_back(std::move(row));
      }
    }
    ExpectRows(table, {"date", "game_id", "revenue_rub", "purchases_count"}, want, report.tolerance);
  }

  static void ExpectFunnel(const Table& table, const ReportFile& report) {
    json body = FunnelRequest();
    body["period_start"] = kPeriodStart;
    body["period_end"] = kPeriodEnd;
    body["timezone"] = "UTC";
    auto response = Send("POST", kApi + "/analysis/funnels", body, admin_);
    ASSERT_EQ(response.status, 200) << response.body;
    json answer = response.Json();
    std::vector<std::vector<json>> want;
    for (size_t step_idx = 0; step_idx < answer["steps"].size(); ++step_idx) {
      const json& step = answer["steps"][step_idx];
      want.push_back({static_cast<int64_t>(step_idx + 1), step["event_type"], step["users"], step["dropped_off"],
                      step["conversion_from_previous"], step["conversion_from_first"],
                      step["median_seconds_to_convert"], step["median_seconds_from_first"]});
    }
    ASSERT_EQ(want.size(), 3u) << answer.dump();
    EXPECT_GT(want[2][2].get<double>(), 0) << "somebody bought: " << answer.dump();
    ExpectRows(table,
               {"step", "event_type", "users", "dropped_off", "conversion_from_previous", "conversion_from_first",
                "median_seconds_to_convert", "median_seconds_from_first"},
               want, report.tolerance);
  }

  static void ExpectRetention(const Table& table, const ReportFile& report) {
    json body = RetentionRequest();
    body["period_start"] = kPeriodStart;
    body["period_end"] = kPeriodEnd;
    body["timezone"] = "UTC";
    auto response = Send("POST", kApi + "/analysis/retention", body, admin_);
    ASSERT_EQ(response.status, 200) << response.body;
    json answer = response.Json();
    EXPECT_EQ(answer["periods"], json({1, 7}));
    std::vector<std::vector<json>> want;
    bool some_null = false, some_retained = false;
    for (const auto& cohort : answer["cohorts"]) {
      std::vector<json> row = {cohort["cohort_start"], cohort["cohort_end"], cohort["users"]};
      for (const auto& cell : cohort["retained"]) {
        row.push_back(cell["users"]);
        row.push_back(cell["share"]);
        some_null = some_null || cell["users"].is_null();
        some_retained = some_retained || (cell["users"].is_number() && cell["users"].get<double>() > 0);
      }
      want.push_back(std::move(row));
    }
    EXPECT_TRUE(some_null) << "the last cohorts cannot be measured on day 7 yet: " << answer.dump();
    EXPECT_TRUE(some_retained) << answer.dump();
    ExpectRows(table, {"cohort_start", "cohort_end", "cohort_users", "retained_1", "share_1", "retained_7", "share_7"},
               want, report.tolerance);
  }

  static void ExpectSegmentSizes(const Table& table, const ReportFile& report) {
    std::vector<std::vector<json>> want;
    for (const auto& id : {static_segment_, buyers_segment_}) {
      json count = Get(kSegments + id + "/users-count");
      json definition = Get(kSegmentDefinitions + "/" + id);
      want.push_back(
          {id, definition["name"], definition["type"], count["users_count"], count["as_of"], count["refreshed_at"]});
    }
    // Independently: the list's three users, and the users with a purchase before as_of.
    std::set<std::string> buyers;
    for (const auto& event : *events_) {
      if (event.type == kBuy && !event.user.empty()) buyers.insert(event.user);
    }
    EXPECT_EQ(want[0][3], 3);
    EXPECT_EQ(want[1][3], buyers.size());
    EXPECT_EQ(want[0][1], "report_static_list");
    EXPECT_EQ(want[1][2], "dynamic");
    ExpectRows(table, {"segment_id", "name", "type", "users_count", "as_of", "refreshed_at"}, want, report.tolerance);
  }

  static void ExpectCustomReport(const ReportFile& report) {
    ASSERT_EQ(report.tables.size(), 5u) << report.format;
    const std::vector<std::vector<std::string>> sections = {{"daily", "Daily numbers", "metrics"},
                                                            {"top_games", "Top 3 games", "metrics"},
                                                            {"funnel", "View, cart, buy", "funnel"},
                                                            {"retention", "retention", "retention"},
                                                            {"segments", "Audiences", "segment_sizes"}};
    for (size_t section_idx = 0; section_idx < sections.size(); ++section_idx) {
      const Table& table = report.tables[section_idx];
      EXPECT_EQ(table.name, sections[section_idx][0]);
      if (report.format == "csv") continue;
      EXPECT_EQ(table.title, sections[section_idx][1]) << table.name;
      EXPECT_EQ(table.type, sections[section_idx][2]) << table.name;
    }
    if (const Table* table = FindTable(report, "daily")) {
      ExpectDailyMetrics(*table, {"dau", "revenue_rub", "purchases_count"}, report, kPeriodStart, kPeriodEnd);
    }
    if (const Table* table = FindTable(report, "top_games")) ExpectTopGames(*table, report);
    if (const Table* table = FindTable(report, "funnel")) ExpectFunnel(*table, report);
    if (const Table* table = FindTable(report, "retention")) ExpectRetention(*table, report);
    if (const Table* table = FindTable(report, "segments")) ExpectSegmentSizes(*table, report);
  }

  // Both reports in one format, each checked against the API and the raw events.
  static void GenerateBoth(const std::string& format) {
    std::vector<std::string> seen;
    Generated kpi = Generate(builtin_ids_["daily_kpi_summary"], "daily_kpi_summary", KpiParameters(), KpiBound(),
                             format, owner_, "mm-owner",
                             "daily_kpi_summary_" + std::string(kPeriodStart) + "_" + kPeriodEnd + "." + format, &seen);
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back(), "completed");
    EXPECT_EQ(kpi.done["definition_version"], 1);
    EXPECT_EQ(kpi.done["sections"],
              json::parse(R"([{"name":"kpis","title":"KPIs per day","type":"metrics","rows":15}])"));
    ExpectKpiReport(kpi.report);
    Generated custom = Generate(custom_id_, "e2e_marketing_pack", CustomParameters(), CustomBound(), format, owner_,
                                "mm-owner",
                                "e2e_marketing_pack_" + std::string(kPeriodStart) + "_" + kPeriodEnd + "." + format);
    ExpectCustomReport(custom.report);
    if (format != "csv") {
      EXPECT_EQ(custom.report.header["title"], "Marketing pack");
    }
  }

  static TempDir* data_;
  static TempDir* keys_;
  static TempDir* scratch_;
  static std::vector<std::string>* lines_;
  static std::vector<RawEvent>* events_;
  static ServiceProcess* service_;
  static HttpClient* client_;
  static std::string admin_, owner_, producer_;
  static std::map<std::string, std::string> builtin_ids_;
  static std::string custom_id_, static_segment_, buyers_segment_, segment_run_;
  static std::map<std::string, std::map<std::string, json>> daily_values_;
};

TempDir* ReportsE2eTest::data_ = nullptr;
TempDir* ReportsE2eTest::keys_ = nullptr;
TempDir* ReportsE2eTest::scratch_ = nullptr;
std::vector<std::string>* ReportsE2eTest::lines_ = nullptr;
std::vector<RawEvent>* ReportsE2eTest::events_ = nullptr;
ServiceProcess* ReportsE2eTest::service_ = nullptr;
HttpClient* ReportsE2eTest::client_ = nullptr;
std::string ReportsE2eTest::admin_, ReportsE2eTest::owner_, ReportsE2eTest::producer_;
std::map<std::string, std::string> ReportsE2eTest::builtin_ids_;
std::string ReportsE2eTest::custom_id_, ReportsE2eTest::static_segment_, ReportsE2eTest::buyers_segment_,
    ReportsE2eTest::segment_run_;
std::map<std::string, std::map<std::string, json>> ReportsE2eTest::daily_values_;

TEST_F(ReportsE2eTest, CsvFilesHoldTheApisNumbersAndTheRawEventsOnes) { GenerateBoth("csv"); }

TEST_F(ReportsE2eTest, JsonFilesHoldTheApisNumbersAndTheRawEventsOnes) { GenerateBoth("json"); }

TEST_F(ReportsE2eTest, XlsxFilesHoldTheApisNumbersAndTheRawEventsOnes) { GenerateBoth("xlsx"); }

TEST_F(ReportsE2eTest, InstancesInterruptedByAKill9CompleteOnceAfterTheRestart) {
  auto created = Send("POST", kDefinitions, SlowDefinition("e2e_slow", 1), admin_);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string slow = created.Json()["id"].get<std::string>();
  const std::string kpi = builtin_ids_["daily_kpi_summary"];
  struct Asked {
    std::string id, kind, format, start, end;
  };
  std::vector<Asked> asked;
  {
    const std::string token = service_->Token({"marketing_manager"}, "mm-restart");
    auto ask = [&](const std::string& definition, const json& parameters, const std::string& format,
                   const std::string& kind) {
      auto response = Request(definition, parameters, format, token);
      ASSERT_EQ(response.status, 202) << response.body;
      asked.push_back({response.Json()["instance_id"].get<std::string>(), kind, format,
                       parameters.value("period_start", ""), parameters.value("period_end", "")});
    };
    ask(slow, SlowParameters(), "csv", "slow");
    ask(kpi, KpiParameters(), "csv", "kpi");
    ask(kpi, KpiParameters("2024-01-02", "2024-01-13"), "json", "kpi");
    ask(kpi, KpiParameters("2024-01-03", "2024-01-12"), "xlsx", "kpi");
    ask(custom_id_, CustomParameters(), "json", "custom");
    ask(custom_id_, CustomParameters(), "xlsx", "custom");
    ASSERT_EQ(asked.size(), 6u);
    // The slow one is being generated (one worker; the other takes the rest in turn) when the process dies.
    json slow_doc;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      slow_doc = Get(kInstances + "/" + asked[0].id, 200, token);
      if (slow_doc["status"] != "queued") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(slow_doc["status"], "running") << slow_doc.dump();
  }
  // A deleted built-in is seeded again at the next start, with its id.
  const std::string retention = kDefinitions + "/" + builtin_ids_["weekly_retention"];
  ASSERT_EQ(Send("DELETE", retention, json(), admin_).status, 204);
  // What the outbox held when the process died (it is durable: all of it must be there after the restart).
  const json outbox_before_kill = GeneratedItems(*client_, admin_);
  service_->Stop(SIGKILL);
  const int64_t killed_ms = common::NowMillis();
  Start();
  const std::string token = service_->Token({"marketing_manager"}, "mm-restart");

  int rerun = 0;
  for (const auto& instance : asked) {
    SCOPED_TRACE(instance.kind + " " + instance.format + " " + instance.id);
    json done = Wait(instance.id, token);
    ASSERT_EQ(done["status"], "completed") << done.dump();
    EXPECT_EQ(done["requested_by"], "mm-restart");
    const bool after_restart = Ms(done["started_at"]) >= killed_ms;
    rerun += after_restart ? 1 : 0;
    ClientResponse download = Download(instance.id, done, token);
    ReportFile report = Read(instance.format, download.body);
    if (instance.kind == "kpi") {
      ExpectKpiReport(report, instance.start, instance.end);
    } else if (instance.kind == "custom") {
      ExpectCustomReport(report);
    } else {
      // It ran again from the start: its section whole, every purchase counted once in some hour.
      EXPECT_TRUE(after_restart) << "the run the kill interrupted starts again: " << done.dump();
      ASSERT_EQ(report.tables.size(), 1u);
      double purchases = 0;
      for (const auto& table : report.tables) {
        std::vector<std::string> names = {"hour"};
        names.insert(names.end(), kKpiMetrics.begin(), kKpiMetrics.end());
        auto columns = Columns(table, names);
        EXPECT_EQ(table.rows.size(), kSlowHours) << table.name;
        for (const auto& row : table.rows) {
          if (row[columns["purchases_count"]].is_number()) purchases += row[columns["purchases_count"]].get<double>();
        }
      }
      double raw = 0;
      for (const auto& [day, count] : RawPurchases()) raw += count;
      EXPECT_EQ(purchases, raw);
    }
  }
  EXPECT_GE(rerun, 1);
  json reseeded = Get(retention);
  EXPECT_EQ(reseeded["name"], "weekly_retention");
  EXPECT_EQ(reseeded["builtin"], true);
  // On disk (docs/reports.md section 5): one file per instance under reports/<yyyy>/<mm>/<dd>/<id>.<ext> of the
  // reports folder, with the downloaded bytes (the interrupted run wrote no second one).
  std::map<std::string, std::string> on_disk;  // path under the reports folder → bytes
  const std::filesystem::path objects = data_->path() / "objects";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(objects)) {
    if (!entry.is_regular_file()) continue;
    const std::string path = entry.path().lexically_relative(objects).string();
    const size_t at = path.find("/reports/");
    if (at == std::string::npos) continue;
    std::ifstream file(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    on_disk[path.substr(at + 1)] = bytes.str();
  }
  for (const auto& instance : asked) {
    const auto copies = std::count_if(on_disk.begin(), on_disk.end(), [&](const auto& file) {
      return std::filesystem::path(file.first).stem() == instance.id;
    });
    EXPECT_EQ(copies, 1) << instance.id;
    json done = Get(kInstances + "/" + instance.id, 200, token);
    const std::string day = done.value("created_at", std::string("0000-00-00")).substr(0, 10);
    const std::string key = "reports/" + day.substr(0, 4) + "/" + day.substr(5, 2) + "/" + day.substr(8, 2) + "/" +
                            instance.id + "." + instance.format;
    auto downloaded = client_->Get(kInstances + "/" + instance.id + "/download", token);
    EXPECT_TRUE(on_disk.count(key)) << key;
    EXPECT_TRUE(on_disk[key] == downloaded.body) << key;
  }
  // report.generated: exactly one for each instance completed after the restart; at most one for those completed
  // before the kill (the event is published right after the instance reads completed: the kill may fall between).
  auto events = GeneratedEvents(*client_, admin_);
  for (const auto& instance : asked) {
    json done = Get(kInstances + "/" + instance.id, 200, token);
    if (Ms(done["finished_at"]) >= killed_ms) {
      EXPECT_EQ(events[instance.id].size(), 1u) << instance.id;
    } else {
      EXPECT_LE(events[instance.id].size(), 1u) << instance.id;
    }
  }
  // The outbox survived the kill -9: every item read before it is still there, unchanged, with its sequence, and
  // the events published since come after it.
  const json outbox_after = GeneratedItems(*client_, admin_);
  ASSERT_GE(outbox_after.size(), outbox_before_kill.size());
  for (size_t item_idx = 0; item_idx < outbox_before_kill.size(); ++item_idx) {
    EXPECT_EQ(outbox_after[item_idx], outbox_before_kill[item_idx]) << item_idx;
  }
  // Listed once each, none lost, none added: by the owner in pages of two, and by an admin.
  std::set<std::string> expected_ids;
  for (const auto& instance : asked) expected_ids.insert(instance.id);
  for (const auto& [query, lister, limit] :
       {std::tuple<std::string, std::string, int>{"", token, 2}, {"&requested_by=mm-restart", admin_, 100}}) {
    std::vector<std::string> listed = ListedIds(query, lister, limit);
    EXPECT_EQ(listed.size(), asked.size()) << query;
    EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), expected_ids) << query;
  }
}

// Regression (a bug this suite found): the largest page the handler accepts, limit=1000, was answered 400
// INVALID_QUERY_PARAMETERS "limit: must be 1..1000" because ReportService::ListInstances asked the metadata store
// for limit + 1 = 1001 runs (to tell whether a next page exists), which the store refuses.
TEST_F(ReportsE2eTest, TheLargestPageOfInstancesCanBeListed) {
  const std::string token = service_->Token({"marketing_manager"}, "mm-largest-page");
  auto response = Request(builtin_ids_["daily_kpi_summary"], KpiParameters(), "csv", token);
  ASSERT_EQ(response.status, 202) << response.body;
  const json id = response.Json()["instance_id"];
  for (const char* limit : {"999", "1000"}) {
    auto listed = client_->Get(kInstances + "?limit=" + limit, token);
    EXPECT_EQ(listed.status, 200) << "BUG: GET /reports/instances?limit=" << limit << " → " << listed.body;
    json items = listed.Json()["items"];
    ASSERT_TRUE(items.is_array()) << listed.body;
    ASSERT_EQ(items.size(), 1u) << listed.body;
    EXPECT_EQ(items[0]["instance_id"], id);
  }
}

TEST_F(ReportsE2eTest, ConcurrentRequestsOfDifferentUsersEachGetTheirOwnInstance) {
  constexpr int kUsers = 8;
  const std::vector<std::string> formats = {"csv", "json", "xlsx"};
  std::vector<std::string> subjects, tokens;
  for (int user_idx = 0; user_idx < kUsers; ++user_idx) {
    subjects.push_back("mm-concurrent-" + std::to_string(user_idx));
    tokens.push_back(service_->Token({"marketing_manager"}, subjects.back()));
  }
  struct Outcome {
    int status = 0;
    json requested, done;
    ClientResponse download;
    std::string error;
  };
  std::vector<Outcome> outcomes(kUsers);
  std::latch start(kUsers);
  std::vector<std::thread> threads;
  const std::string kpi = builtin_ids_["daily_kpi_summary"];
  const int port = service_->port();
  for (int user_idx = 0; user_idx < kUsers; ++user_idx) {
    threads.emplace_back([&, user_idx] {
      Outcome& outcome = outcomes[user_idx];
      try {
        HttpClient client(port);
        start.arrive_and_wait();
        // The same request for everybody: instances of different owners are never shared.
        auto response = Request(kpi, KpiParameters(), formats[user_idx % 3], tokens[user_idx], &client);
        outcome.status = response.status;
        outcome.requested = response.Json();
        if (response.status != 202) return;
        const std::string id = outcome.requested["instance_id"].get<std::string>();
        outcome.done = Wait(id, tokens[user_idx], &client);
        outcome.download = Send("GET", kInstances + "/" + id + "/download", json(), tokens[user_idx], {}, &client);
      } catch (const std::exception& e) {
        outcome.error = e.what();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> ids;
  for (int user_idx = 0; user_idx < kUsers; ++user_idx) {
    SCOPED_TRACE(subjects[user_idx]);
    Outcome& outcome = outcomes[user_idx];
    ASSERT_TRUE(outcome.error.empty()) << outcome.error;
    ASSERT_EQ(outcome.status, 202) << outcome.requested.dump();
    const std::string format = formats[user_idx % 3];
    ExpectQueued(outcome.requested, kpi, KpiBound(), format, subjects[user_idx]);
    ids.insert(outcome.requested["instance_id"].get<std::string>());
    ASSERT_EQ(outcome.done["status"], "completed") << outcome.done.dump();
    ASSERT_EQ(outcome.download.status, 200) << outcome.download.body.substr(0, 300);
    ReportFile report = Read(format, outcome.download.body);
    ExpectCompleted(outcome.done, kpi, "daily_kpi_summary", KpiBound(), format, subjects[user_idx],
                    "daily_kpi_summary_" + std::string(kPeriodStart) + "_" + kPeriodEnd + "." + format,
                    outcome.download, report);
    ExpectKpiReport(report);
    // Each sees their own instance only.
    json mine = Get(kInstances, 200, tokens[user_idx]);
    ASSERT_EQ(mine["items"].size(), 1u) << mine.dump();
    EXPECT_EQ(mine["items"][0]["instance_id"], outcome.requested["instance_id"]);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kUsers));
}

TEST_F(ReportsE2eTest, RolesAndOwnershipDecideWhoMayDoWhat) {
  const std::string kpi = builtin_ids_["daily_kpi_summary"];
  const std::string other = service_->Token({"marketing_manager"}, "mm-other");
  auto response = Request(kpi, KpiParameters(), "csv", owner_);
  ASSERT_EQ(response.status, 202) << response.body;
  const std::string id = response.Json()["instance_id"].get<std::string>();
  const json done = Wait(id, owner_);
  ASSERT_EQ(done["status"], "completed") << done.dump();
  const std::string instance = kInstances + "/" + id;
  const std::string custom = kDefinitions + "/" + custom_id_;
  json renamed = CustomDefinition();
  renamed["name"] = "e2e_not_allowed";
  const json request = {{"report_definition_id", kpi}, {"parameters", KpiParameters()}};

  // developer and service: no reports at all.
  const std::string developer = service_->Token({"developer"}, "dev", {"game_x"});
  const std::string producer = service_->Token({"service"}, "svc");
  for (const auto& [token, who] : {std::pair{developer, "developer"}, std::pair{producer, "service"}}) {
    SCOPED_TRACE(who);
    ExpectError(Send("POST", kInstances, request, token), 403, "ACCESS_DENIED_TO_RESOURCE", "POST instances");
    ExpectError(Send("POST", kDefinitions, renamed, token), 403, "ACCESS_DENIED_TO_RESOURCE", "POST definitions");
    ExpectError(Send("PUT", custom, renamed, token), 403, "ACCESS_DENIED_TO_RESOURCE", "PUT definition");
    ExpectError(Send("DELETE", custom, json(), token), 403, "ACCESS_DENIED_TO_RESOURCE", "DELETE definition");
    ExpectError(client_->Get(kDefinitions, token), 403, "ACCESS_DENIED_TO_RESOURCE", "GET definitions");
    ExpectError(client_->Get(instance, token), 403, "ACCESS_DENIED_TO_RESOURCE", "GET instance");
    ExpectError(client_->Get(instance + "/download", token), 403, "ACCESS_DENIED_TO_RESOURCE", "download");
    ExpectError(Send("DELETE", instance, json(), token), 403, "ACCESS_DENIED_TO_RESOURCE", "DELETE instance");
  }
  // marketing_manager: reads definitions, never writes them.
  ExpectError(Send("POST", kDefinitions, renamed, owner_), 403, "ACCESS_DENIED_TO_RESOURCE", "POST by marketing");
  ExpectError(Send("PUT", custom, renamed, owner_), 403, "ACCESS_DENIED_TO_RESOURCE", "PUT by marketing");
  ExpectError(Send("DELETE", custom, json(), owner_), 403, "ACCESS_DENIED_TO_RESOURCE", "DELETE by marketing");
  json unchanged = Get(custom, 200, owner_);
  EXPECT_EQ(unchanged["name"], "e2e_marketing_pack");
  EXPECT_EQ(unchanged["version"], 1);
  for (const auto& item : Items(kDefinitions, owner_)) EXPECT_NE(item["name"], "e2e_not_allowed");

  // Another marketing manager: not even with the exact id.
  for (const auto& [method, target] : {std::pair<std::string, std::string>{"GET", instance},
                                       {"GET", instance + "/download"},
                                       {"DELETE", instance}}) {
    json error = ExpectError(Send(method, target, json(), other), 403, "ACCESS_DENIED_TO_RESOURCE",
                             method + " " + target + " by another marketing manager");
    EXPECT_EQ(error["details"]["instance_id"], id) << error.dump();
    EXPECT_EQ(error["message"].get<std::string>().find("mm-"), std::string::npos) << "names nobody: " << error.dump();
  }
  for (const auto& item : Items(kInstances, other)) EXPECT_NE(item["instance_id"], id);
  // The instance is a pipeline run of kind report: there too only its owner and admins see it.
  const std::string run = kApi + "/pipelines/runs/" + id;
  ExpectError(client_->Get(run, other), 403, "ACCESS_DENIED_TO_RESOURCE", "the run of another user's instance");
  EXPECT_EQ(Get(run, 200, owner_)["kind"], "report");
  EXPECT_EQ(Get(run, 200, admin_)["requested_by"], "mm-owner");
  for (const auto& item : Items(kApi + "/pipelines/runs?kind=report", other)) EXPECT_NE(item["run_id"], id);
  ExpectError(client_->Get(kInstances + "?requested_by=mm-owner", other), 403, "ACCESS_DENIED_TO_RESOURCE",
              "listing another user's instances");
  EXPECT_EQ(Get(instance, 200, owner_)["status"], "completed") << "the refused DELETE changed nothing";

  // platform_admin: every instance.
  ClientResponse mine = Download(id, done, owner_);
  EXPECT_EQ(Get(instance)["instance_id"], id);
  ClientResponse admins = Download(id, done, admin_);
  EXPECT_EQ(admins.body, mine.body);
  std::vector<std::string> listed = ListedIds("&requested_by=mm-owner", admin_, 100);
  EXPECT_EQ(std::count(listed.begin(), listed.end(), id), 1);

  // Unknown ids; a pipeline run that is not a report (the segment's refresh) is no instance either.
  const std::string unknown = "00000000-0000-4000-8000-00000000e2e0";
  for (const auto& token : {owner_, admin_}) {
    for (const auto& [method, target] : {std::pair<std::string, std::string>{"GET", kInstances + "/" + unknown},
                                         {"GET", kInstances + "/" + unknown + "/download"},
                                         {"DELETE", kInstances + "/" + unknown}}) {
      json error = ExpectError(Send(method, target, json(), token), 404, "REPORT_INSTANCE_NOT_FOUND", method + target);
      EXPECT_EQ(error["details"]["instance_id"], unknown);
    }
  }
  ASSERT_FALSE(segment_run_.empty());
  ExpectError(client_->Get(kInstances + "/" + segment_run_, admin_), 404, "REPORT_INSTANCE_NOT_FOUND",
              "a segment refresh run");
  const std::string missing = kDefinitions + "/" + unknown;
  for (const auto& [method, body] : {std::pair<std::string, json>{"GET", json()}, {"PUT", renamed}, {"DELETE", json()}}) {
    json error = ExpectError(Send(method, missing, body, admin_), 404, "REPORT_DEFINITION_NOT_FOUND", method);
    EXPECT_EQ(error["details"]["report_definition_id"], unknown);
  }
  json error = ExpectError(Send("POST", kInstances, {{"report_definition_id", unknown}, {"parameters", KpiParameters()}},
                                owner_),
                           404, "REPORT_DEFINITION_NOT_FOUND", "POST instance of an unknown definition");
  EXPECT_EQ(error["details"]["report_definition_id"], unknown);

  // No token.
  for (const auto& [method, target, body] :
       {std::tuple<std::string, std::string, json>{"GET", kDefinitions, json()},
        {"GET", custom, json()},
        {"POST", kDefinitions, renamed},
        {"POST", kInstances, request},
        {"GET", kInstances, json()},
        {"GET", instance, json()},
        {"GET", instance + "/download", json()},
        {"DELETE", instance, json()}}) {
    EXPECT_EQ(Send(method, target, body, "").status, 401) << method << " " << target;
  }
}

TEST_F(ReportsE2eTest, QueuedAndRunningInstancesAreCancelledBehindASingleBusyWorker) {
  TempDir data, keys;
  const std::string config = (keys.path() / "one_worker.yaml").string();
  std::ofstream(config) << "reports:\n  workers: 1\n";
  ServiceProcess service(data.path().string(),
                         {{"ANALYTICS_PSEUDONYM_KEY_FILE", (keys.path() / "pseudonym.key").string()}},
                         {"--config", config});
  ASSERT_GT(service.port(), 0) << service.output();
  HttpClient client(service.port());
  const std::string admin = service.Token({"platform_admin"}, "admin");
  const std::string owner = service.Token({"marketing_manager"}, "mm-cancel");
  PostEventLines(client, service.Token({"service"}, "producer"), *lines_, 0, lines_->size());
  auto send = [&](const std::string& method, const std::string& target, const std::string& token) {
    return Send(method, target, json(), token, {}, &client);
  };
  auto get = [&](const std::string& id) {
    auto response = send("GET", kInstances + "/" + id, owner);
    EXPECT_EQ(response.status, 200) << response.body;
    return response.Json();
  };
  auto created = Send("POST", kDefinitions, SlowDefinition("e2e_blocker", 20), admin, {}, &client);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string blocker_definition = created.Json()["id"].get<std::string>();
  std::string kpi;
  for (auto& item : Items(kDefinitions, admin_)) {
    if (item["name"] == "daily_kpi_summary") kpi = item["id"].get<std::string>();
  }
  ASSERT_FALSE(kpi.empty());  // built-in ids are the same in every deployment

  // The blocker takes the only worker; three reports queue behind it.
  std::vector<std::string> ids;
  auto ask = [&](const std::string& definition, const json& parameters, const std::string& format) {
    auto response = Request(definition, parameters, format, owner, &client);
    ASSERT_EQ(response.status, 202) << response.body;
    ids.push_back(response.Json()["instance_id"].get<std::string>());
  };
  ask(blocker_definition, SlowParameters(), "xlsx");
  ask(kpi, KpiParameters(), "csv");
  ask(kpi, KpiParameters(), "json");
  ask(kpi, KpiParameters(), "xlsx");
  ASSERT_EQ(ids.size(), 4u);
  const std::string blocker = ids[0], first = ids[1], second = ids[2], third = ids[3];
  // Running, with a section written: 0 < progress < 1.
  json running;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    running = get(blocker);
    if (running["progress"].is_number() && running["progress"].get<double>() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(running["status"], "running") << running.dump();
  EXPECT_GT(running["progress"].get<double>(), 0.0);
  EXPECT_LT(running["progress"].get<double>(), 1.0);
  EXPECT_TRUE(IsRfc3339Millis(running["started_at"])) << running.dump();

  // The same request of the same owner while it is queued gets that instance; an admin's is an instance of their
  // own, which the owner may not cancel and an admin may.
  auto same = Request(kpi, KpiParameters(), "csv", owner, &client);
  ASSERT_EQ(same.status, 202) << same.body;
  EXPECT_EQ(same.Json()["instance_id"], first);
  auto admins = Request(kpi, KpiParameters(), "csv", admin, &client);
  ASSERT_EQ(admins.status, 202) << admins.body;
  const std::string admins_id = admins.Json()["instance_id"].get<std::string>();
  EXPECT_NE(admins_id, first);
  EXPECT_EQ(admins.Json()["requested_by"], "admin");
  ExpectError(send("DELETE", kInstances + "/" + admins_id, owner), 403, "ACCESS_DENIED_TO_RESOURCE",
              "cancelling an admin's instance");
  auto by_admin = send("DELETE", kInstances + "/" + admins_id, admin);
  EXPECT_EQ(by_admin.status, 200) << by_admin.body;
  EXPECT_EQ(by_admin.Json()["error"],
            json({{"code", "REPORT_GENERATION_FAILED"}, {"message", "cancelled by admin"}}));

  // A queued instance has nothing to download yet.
  json error = ExpectError(send("GET", kInstances + "/" + first + "/download", owner), 409, "DATA_NOT_YET_AVAILABLE",
                           "download of a queued instance");
  EXPECT_EQ(error["details"]["status"], "queued") << error.dump();
  EXPECT_EQ(error["details"]["instance_id"], first);
  // Cancelling a queued instance: at once, it never starts.
  auto cancelled = send("DELETE", kInstances + "/" + second, owner);
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  json doc = cancelled.Json();
  EXPECT_EQ(doc["status"], "cancelled") << doc.dump();
  EXPECT_TRUE(doc["started_at"].is_null()) << doc.dump();
  EXPECT_TRUE(IsRfc3339Millis(doc["finished_at"])) << doc.dump();
  EXPECT_TRUE(doc["file"].is_null()) << doc.dump();
  EXPECT_EQ(doc["error"], json({{"code", "REPORT_GENERATION_FAILED"}, {"message", "cancelled by mm-cancel"}}));
  EXPECT_EQ(get(second)["status"], "cancelled");
  error = ExpectError(send("GET", kInstances + "/" + second + "/download", owner), 409, "REPORT_GENERATION_FAILED",
                      "download of a cancelled instance");
  EXPECT_EQ(error["details"]["status"], "cancelled") << error.dump();
  error = ExpectError(send("DELETE", kInstances + "/" + second, owner), 409, "REPORT_INSTANCE_FINISHED",
                      "cancelling twice");
  EXPECT_EQ(error["details"]["status"], "cancelled") << error.dump();
  // All of this happened behind the busy worker.
  EXPECT_EQ(get(blocker)["status"], "running") << "the blocker finished too soon for this test";
  EXPECT_EQ(get(first)["status"], "queued");

  // Cancelling the running blocker: it stops between sections or rows.
  cancelled = send("DELETE", kInstances + "/" + blocker, owner);
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  doc = cancelled.Json();
  EXPECT_TRUE(doc["status"] == "cancelled" || doc["status"] == "running") << doc.dump();
  doc = Wait(blocker, owner, &client);
  EXPECT_EQ(doc["status"], "cancelled") << doc.dump();
  EXPECT_EQ(doc["error"], json({{"code", "REPORT_GENERATION_FAILED"}, {"message", "cancelled by mm-cancel"}}));
  EXPECT_TRUE(doc["file"].is_null()) << doc.dump();
  EXPECT_LT(doc["progress"].get<double>(), 1.0) << doc.dump();
  error = ExpectError(send("GET", kInstances + "/" + blocker + "/download", owner), 409, "REPORT_GENERATION_FAILED",
                      "download of a cancelled running instance");
  EXPECT_EQ(error["details"]["status"], "cancelled") << error.dump();

  // The worker moves on: the others complete; cancelling a completed one is refused.
  for (const auto& id : {first, third}) {
    json done = Wait(id, owner, &client);
    EXPECT_EQ(done["status"], "completed") << done.dump();
    EXPECT_EQ(done["row_count"], 15) << done.dump();
  }
  error = ExpectError(send("DELETE", kInstances + "/" + first, owner), 409, "REPORT_INSTANCE_FINISHED",
                      "cancelling a completed instance");
  EXPECT_EQ(error["details"]["status"], "completed") << error.dump();
  EXPECT_EQ(get(first)["status"], "completed");
  json never = get(second);
  EXPECT_EQ(never["status"], "cancelled");
  EXPECT_TRUE(never["started_at"].is_null()) << never.dump();
  // Only the completed ones announce a file.
  auto events = GeneratedEvents(client, admin);
  EXPECT_EQ(events[first].size(), 1u);
  EXPECT_EQ(events[third].size(), 1u);
  EXPECT_EQ(events[second].size(), 0u);
  EXPECT_EQ(events[blocker].size(), 0u);
  EXPECT_EQ(service.Stop(SIGTERM).exit_code, 0);
}

TEST_F(ReportsE2eTest, RequestErrorsNameTheParameterAndDefinitionErrorsTheField) {
  const std::string token = service_->Token({"marketing_manager"}, "mm-errors");
  const std::string kpi = builtin_ids_["daily_kpi_summary"];
  auto expect_parameter = [&](const json& body, const std::string& parameter) {
    json error = ExpectError(Send("POST", kInstances, body, token), 400, "INVALID_QUERY_PARAMETERS", body.dump());
    EXPECT_EQ(error["details"]["parameter"], parameter) << body.dump() << " → " << error.dump();
  };
  auto kpi_with = [&](const json& changes) {
    json parameters = KpiParameters();
    parameters.update(changes);
    for (auto it = changes.begin(); it != changes.end(); ++it) {
      if (it->is_null()) parameters.erase(it.key());
    }
    return json{{"report_definition_id", kpi}, {"parameters", parameters}, {"output_format", "csv"}};
  };
  expect_parameter(kpi_with({{"period_start", "2024-02-30"}}), "parameters.period_start");
  expect_parameter(kpi_with({{"period_start", "2024/01/01"}}), "parameters.period_start");
  expect_parameter(kpi_with({{"period_start", 20240101}}), "parameters.period_start");
  expect_parameter(kpi_with({{"period_start", "today-9999d"}}), "parameters.period_start");
  expect_parameter(kpi_with({{"nope", 1}}), "parameters.nope");
  expect_parameter(kpi_with({{"period_end", nullptr}}), "parameters.period_end");
  expect_parameter(kpi_with({{"period_start", "2024-01-10"}, {"period_end", "2024-01-01"}}), "parameters.period_end");
  expect_parameter(kpi_with({{"timezone", "Mars/Olympus"}}), "parameters.timezone");
  expect_parameter(kpi_with({{"game_ids", {"g1", 5}}}), "parameters.game_ids[1]");
  expect_parameter(kpi_with({{"segment", "no-such-segment"}}), "parameters.segment");
  expect_parameter({{"report_definition_id", kpi}, {"parameters", {1, 2}}}, "parameters");
  json body = kpi_with(json::object());
  body["output_format"] = "pdf";
  expect_parameter(body, "output_format");
  body["output_format"] = 7;
  expect_parameter(body, "output_format");
  body = kpi_with(json::object());
  body["format"] = "csv";
  expect_parameter(body, "format");
  body = kpi_with(json::object());
  body.erase("report_definition_id");
  expect_parameter(body, "report_definition_id");
  body["report_definition_id"] = 42;
  expect_parameter(body, "report_definition_id");
  // The custom definition's own parameters: a required list, an integer with bounds.
  json custom = {{"report_definition_id", custom_id_}, {"parameters", CustomParameters()}};
  custom["parameters"]["top"] = 11;
  expect_parameter(custom, "parameters.top");
  custom["parameters"]["top"] = "3";
  expect_parameter(custom, "parameters.top");
  custom["parameters"].erase("top");
  custom["parameters"].erase("segments");
  expect_parameter(custom, "parameters.segments");
  // Not JSON at all.
  auto broken = client_->Request("POST", kInstances, "{\"report_definition_id\":",
                                 {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}});
  ExpectError(broken, 400, "INVALID_REQUEST_BODY", "a truncated body");
  // None of them queued anything.
  EXPECT_EQ(Get(kInstances, 200, token)["items"], json::array());

  // Definitions: 400 INVALID_REQUEST_BODY naming the JSON path.
  auto expect_field = [&](const json& definition, const std::string& field) {
    json error = ExpectError(Send("POST", kDefinitions, definition, admin_), 400, "INVALID_REQUEST_BODY",
                             definition.dump());
    EXPECT_EQ(error["details"]["field"], field) << error.dump();
  };
  json base = CustomDefinition();
  base["name"] = "e2e_invalid";
  json bad = base;
  bad["sections"][1]["metrics"][0] = "Not A Metric";
  expect_field(bad, "sections[1].metrics[0]");
  bad = base;
  bad["sections"][0]["type"] = "pie";
  expect_field(bad, "sections[0].type");
  bad = base;
  bad["sections"][0]["granularity"] = "${nope}";
  expect_field(bad, "sections[0].granularity");
  bad = base;
  bad["sections"] = json::array();
  expect_field(bad, "sections");
  bad = base;
  bad["parameters"][2]["default"] = "Mars/Olympus";
  expect_field(bad, "parameters[2].default");
  bad = base;
  bad["parameters"][1]["name"] = "period_start";
  expect_field(bad, "parameters[1].name");
  bad = base;
  bad["parameters"][4]["type"] = "float";
  expect_field(bad, "parameters[4].type");
  bad = base;
  bad["schedule"] = {{"cron", "61 * * * *"}};
  expect_field(bad, "schedule.cron");
  bad = base;
  bad["schedule"] = {{"cron", "0 6 * * 1"},
                     {"parameters", {{"period_start", "someday"}, {"period_end", "yesterday"}, {"segments", {"x"}}}}};
  expect_field(bad, "schedule.parameters.period_start");
  bad = base;
  bad["nope"] = 1;
  expect_field(bad, "nope");
  bad = base;
  bad["name"] = "Bad Name!";
  expect_field(bad, "name");
  for (const auto& item : Items(kDefinitions)) EXPECT_NE(item["name"], "e2e_invalid");
}

TEST_F(ReportsE2eTest, ReportGeneratedEventsDescribeTheFileAndItsDownloadPath) {
  const std::string kpi = builtin_ids_["daily_kpi_summary"];
  // A consumer of the event (the Notification Service) downloads as soon as it sees it: the file is there.
  auto requested = Request(kpi, KpiParameters(), "json", owner_);
  ASSERT_EQ(requested.status, 202) << requested.body;
  const std::string id = requested.Json()["instance_id"].get<std::string>();
  std::map<std::string, std::vector<json>> events;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (events[id].empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    events = GeneratedEvents(*client_, admin_);
  }
  ASSERT_EQ(events[id].size(), 1u);
  json event = events[id][0];
  auto right_away = client_->Get(event["data"].value("download_path", std::string("?")), owner_);
  EXPECT_EQ(right_away.status, 200) << "a download right after the event: " << right_away.body.substr(0, 300);

  Generated generated;
  generated.id = id;
  generated.done = Wait(id, owner_);
  ASSERT_EQ(generated.done["status"], "completed");
  generated.download = Download(id, generated.done, owner_);
  EXPECT_EQ(right_away.body, generated.download.body);
  EXPECT_EQ(GeneratedEvents(*client_, admin_)[id].size(), 1u) << "published once";
  json& file = generated.done["file"];
  EXPECT_EQ(event["specversion"], "1.0");
  EXPECT_EQ(event["type"], kGeneratedType);
  EXPECT_EQ(event["source"], "/analytics-service");
  EXPECT_EQ(event["subject"], generated.id);
  EXPECT_TRUE(event["id"].is_string() && !event["id"].get<std::string>().empty()) << event.dump();
  EXPECT_TRUE(IsRfc3339Millis(event["time"])) << event.dump();
  json& data = event["data"];
  EXPECT_EQ(data["instance_id"], generated.id);
  EXPECT_EQ(data["report_definition_id"], kpi);
  EXPECT_EQ(data["report_name"], "daily_kpi_summary");
  EXPECT_EQ(data["definition_version"], 1);
  EXPECT_EQ(data["owner"], "mm-owner");
  EXPECT_EQ(data["trigger"], "manual");
  EXPECT_TRUE(data["scheduled_for"].is_null()) << data.dump();
  EXPECT_EQ(data["recipients"], json::array());
  EXPECT_EQ(data["output_format"], "json");
  EXPECT_EQ(data["content_type"], "application/json");
  EXPECT_EQ(data["size_bytes"], generated.download.body.size());
  EXPECT_EQ(data["size_bytes"], file["size_bytes"]);
  EXPECT_EQ(data["row_count"], 15);
  EXPECT_EQ(data["file_name"], file["file_name"]);
  EXPECT_EQ(data["download_path"], file["download_path"]);
  EXPECT_EQ(data["expires_at"], file["expires_at"]);
  ASSERT_TRUE(IsRfc3339Millis(data["generated_at"])) << data.dump();
  EXPECT_GE(Ms(data["generated_at"]), Ms(generated.done["started_at"]));
  EXPECT_LE(Ms(data["generated_at"]), Ms(generated.done["finished_at"]));
  // The path downloads the same file, for its owner.
  auto again = client_->Get(data.value("download_path", std::string("?")), owner_);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, generated.download.body);
  ExpectError(client_->Get(kOutbox, owner_), 403, "ACCESS_DENIED_TO_RESOURCE", "the outbox is for admins");
}

TEST_F(ReportsE2eTest, DefinitionsAreListedCreatedReadReplacedAndDeleted) {
  json list = Get(kDefinitions, 200, owner_);
  EXPECT_EQ(list["total"], list["items"].size());
  std::set<std::string> builtins;
  for (auto& item : list["items"]) {
    if (item["builtin"] != true) continue;
    builtins.insert(item["name"].get<std::string>());
    EXPECT_EQ(item["created_by"], "system");
    EXPECT_EQ(item["version"], 1);
    EXPECT_TRUE(item["schedule"].is_null()) << item.dump();
    EXPECT_TRUE(item["next_run_at"].is_null()) << item.dump();
  }
  EXPECT_EQ(builtins, (std::set<std::string>{"daily_kpi_summary", "game_sales_by_country", "weekly_retention",
                                             "experiment_readout"}));

  // Create.
  const json body = {{"name", "e2e_crud"},
                     {"title", "CRUD"},
                     {"description", "made by the e2e test"},
                     {"parameters",
                      {{{"name", "period_start"}, {"type", "date"}, {"default", "2024-01-08"}},
                       {{"name", "period_end"}, {"type", "date"}, {"default", "yesterday"}}}},
                     {"sections", {{{"name", "kpis"}, {"type", "metrics"}, {"metrics", {"dau"}}}}}};
  auto created = Send("POST", kDefinitions, body, admin_);
  ASSERT_EQ(created.status, 201) << created.body;
  json doc = created.Json();
  const std::string id = doc["id"].get<std::string>();
  const std::string item = kDefinitions + "/" + id;
  EXPECT_EQ(created.Header("location"), item);
  EXPECT_EQ(created.Header("etag"), "\"1\"");
  EXPECT_EQ(doc["name"], "e2e_crud");
  EXPECT_EQ(doc["title"], "CRUD");
  EXPECT_EQ(doc["description"], "made by the e2e test");
  EXPECT_EQ(doc["version"], 1);
  EXPECT_EQ(doc["builtin"], false);
  EXPECT_EQ(doc["created_by"], "admin");
  EXPECT_TRUE(IsRfc3339Millis(doc["created_at"])) << doc.dump();
  EXPECT_TRUE(IsRfc3339Millis(doc["updated_at"])) << doc.dump();
  EXPECT_TRUE(doc["schedule"].is_null()) << doc.dump();
  EXPECT_EQ(doc["sections"], body["sections"]);
  EXPECT_EQ(doc["parameters"],
            json::parse(R"([{"name":"period_start","type":"date","required":false,"default":"2024-01-08","description":""},
                            {"name":"period_end","type":"date","required":false,"default":"yesterday","description":""}])"));
  // Read.
  auto read = client_->Get(item, owner_);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.Header("etag"), "\"1\"");
  EXPECT_EQ(read.Json(), doc);

  // Replace, with If-Match; a stale version is refused.
  json changed = body;
  changed["title"] = "CRUD v2";
  changed["schedule"] = {{"cron", "0 6 * * 1"}, {"timezone", "Europe/Moscow"}, {"output_format", "xlsx"}};
  auto replaced = Send("PUT", item, changed, admin_, {{"If-Match", "\"1\""}});
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  EXPECT_EQ(replaced.Header("etag"), "\"2\"");
  json v2 = replaced.Json();
  EXPECT_EQ(v2["version"], 2);
  EXPECT_EQ(v2["title"], "CRUD v2");
  EXPECT_EQ(v2["created_at"], doc["created_at"]);
  EXPECT_EQ(v2["schedule"]["enabled"], true) << v2.dump();
  EXPECT_EQ(v2["schedule"]["output_format"], "xlsx") << v2.dump();
  // Mondays 06:00 in Moscow (UTC+3 all year) are 03:00Z.
  ASSERT_TRUE(IsRfc3339Millis(v2["next_run_at"])) << v2.dump();
  EXPECT_EQ(v2["next_run_at"].get<std::string>().substr(10), "T03:00:00.000Z");
  EXPECT_GT(Ms(v2["next_run_at"]), common::NowMillis());
  json stale = ExpectError(Send("PUT", item, changed, admin_, {{"If-Match", "\"1\""}}), 412, "VERSION_CONFLICT",
                           "a stale If-Match");
  EXPECT_EQ(stale["details"]["report_definition_id"], id);
  EXPECT_EQ(Send("PUT", item, changed, admin_, {{"If-Match", "\"abc\""}}).status, 400);
  EXPECT_EQ(Get(item)["version"], 2);
  EXPECT_EQ(Get(item)["title"], "CRUD v2");

  // Names are unique.
  json conflict = ExpectError(Send("POST", kDefinitions, body, admin_), 409, "ALREADY_EXISTS", "the same name");
  EXPECT_EQ(conflict["details"]["name"], "e2e_crud");
  json builtin_name = changed;
  builtin_name["name"] = "daily_kpi_summary";
  ExpectError(Send("PUT", item, builtin_name, admin_, {{"If-Match", "\"2\""}}), 409, "ALREADY_EXISTS",
              "renamed to a built-in's name");

  // An instance requested before the deletion still generates version 2 (a relative default is bound at request
  // time; a period starting after the newest stored event could not be generated, hence the absolute start).
  auto requested = Request(id, json::object(), "json", owner_);
  ASSERT_EQ(requested.status, 202) << requested.body;
  json instance = requested.Json();
  const int64_t asked_ms = Ms(instance["created_at"]);
  EXPECT_EQ(instance["parameters"],
            json({{"period_start", "2024-01-08"}, {"period_end", Day(asked_ms - kDayMs)}}));
  EXPECT_EQ(instance["definition_version"], 2);

  // Delete.
  auto deleted = Send("DELETE", item, json(), admin_);
  EXPECT_EQ(deleted.status, 204) << deleted.body;
  EXPECT_TRUE(deleted.body.empty()) << deleted.body;
  ExpectError(client_->Get(item, admin_), 404, "REPORT_DEFINITION_NOT_FOUND", "GET after DELETE");
  ExpectError(Send("DELETE", item, json(), admin_), 404, "REPORT_DEFINITION_NOT_FOUND", "DELETE twice");
  ExpectError(Send("PUT", item, changed, admin_), 404, "REPORT_DEFINITION_NOT_FOUND", "PUT after DELETE");
  ExpectError(Request(id, json::object(), "csv", owner_), 404, "REPORT_DEFINITION_NOT_FOUND",
              "a report of a deleted definition");
  for (auto& entry : Items(kDefinitions)) EXPECT_NE(entry["id"], id);

  const std::string instance_id = instance["instance_id"].get<std::string>();
  json done = Wait(instance_id, owner_);
  ASSERT_EQ(done["status"], "completed") << done.dump();
  ClientResponse download = Download(instance_id, done, owner_);
  ReportFile report = ReadJson(download.body);
  EXPECT_EQ(report.header["definition_name"], "e2e_crud");
  EXPECT_EQ(report.header["title"], "CRUD v2");
  EXPECT_EQ(report.header["definition_version"], 2);
  ASSERT_EQ(report.tables.size(), 1u);
  EXPECT_EQ(report.tables[0].rows.size(), Days("2024-01-08", Day(asked_ms - kDayMs)).size());
}

}  // namespace
}  // namespace analytics::testing
