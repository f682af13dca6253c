// Report writers (reports/formats/writer.h): every format is written into an in-memory ObjectWriter and read back
// independently: CSV with the small RFC 4180 parser below, JSON with nlohmann, XLSX with Python's openpyxl (the
// Debian package python3-openpyxl; strings unescaped from _xHHHH_ the way Excel reads them). Each cell read back
// is compared with what the format's rules in writer.h say the written cell becomes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "blob/object_store.h"
#include "reports/formats/writer.h"
#include "reports/table.h"
#include "support/test_env.h"

#ifndef ANALYTICS_PYTHON3
#define ANALYTICS_PYTHON3 "/usr/bin/python3"
#endif

namespace analytics::reports {
namespace {

using common::Status;
using common::StatusCode;
using nlohmann::json;
using testing::TempDir;

constexpr int64_t kTwo53 = int64_t{1} << 53;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// An ObjectWriter keeping the bytes in memory, counting the writes; it can fail from a given write on.
class MemoryObjectWriter : public blob::ObjectWriter {
 public:
  Status Write(std::string_view bytes) override {
    ++writes_;
    if (fail_from_write_ > 0 && writes_ >= fail_from_write_) return Status::Unavailable("disk full (test)");
    max_write_ = std::max(max_write_, bytes.size());
    data_.append(bytes);
    return Status::Ok();
  }
  uint64_t size() const override { return data_.size(); }
  Status Commit() override {
    committed_ = true;
    return Status::Ok();
  }

  void FailFromWriteForTest(int write) { fail_from_write_ = write; }
  const std::string& data() const { return data_; }
  int writes() const { return writes_; }
  size_t max_write() const { return max_write_; }

 private:
  std::string data_;
  int writes_ = 0;
  int fail_from_write_ = 0;
  size_t max_write_ = 0;
  bool committed_ = false;
};

struct TestSection {
  SectionHeader header;
  std::vector<Row> rows;
};

struct TestReport {
  ReportHeader header;
  std::vector<TestSection> sections;
};

Status WriteReport(ReportWriter& writer, const TestReport& report) {
  ANALYTICS_RETURN_IF_ERROR(writer.Begin(report.header));
  for (const TestSection& section : report.sections) {
    ANALYTICS_RETURN_IF_ERROR(writer.BeginSection(section.header));
    for (const Row& row : section.rows) ANALYTICS_RETURN_IF_ERROR(writer.Row(row));
    ANALYTICS_RETURN_IF_ERROR(writer.EndSection());
  }
  return writer.Finish();
}

ReportHeader TestHeader() {
  ReportHeader header;
  header.instance_id = "inst-1";
  header.definition_id = "def-1";
  header.definition_name = "Weekly KPIs — Ünïcode";
  header.title = "KPIs \"weekly\", all games";
  header.definition_version = 3;
  header.parameters = {{"period_start", "2024-01-01"}, {"games", {"g1", "g2"}}, {"limit", 10},
                       {"ratio", 0.5},                 {"flag", true},          {"none", nullptr}};
  header.generated_at_ms = 1700000000123;
  header.timezone = "Europe/Berlin";
  return header;
}

// Four sections: every column type with nulls, extreme numbers, unicode, separators, line breaks, formula-looking
// and escape-looking text; one named like the XLSX "Report" sheet; one without rows.
TestReport MixedReport() {
  TestReport report;
  report.header = TestHeader();
  TestSection metrics;
  metrics.header = {"metrics", "Daily metrics", "metrics",
                    {{"date", "Date", ColumnType::kDate},
                     {"hour", "Hour", ColumnType::kDateTime},
                     {"country", "Country", ColumnType::kString},
                     {"dau", "DAU", ColumnType::kInteger},
                     {"revenue", "Revenue", ColumnType::kNumber},
                     {"paying", "Paying", ColumnType::kBoolean}}};
  const double max = std::numeric_limits<double>::max();
  const double min_subnormal = std::numeric_limits<double>::denorm_min();
  metrics.rows = {
      {"2024-01-01", "2024-01-01T00:00:00.000Z", "DE", int64_t{1}, 0.1, true},
      {"2024-02-29", "2024-02-29T23:59:59.999+03:00", "Zürich, \"CH\"", std::numeric_limits<int64_t>::max(), 1.0 / 3,
       false},
      {std::monostate{}, std::monostate{}, std::monostate{}, std::monostate{}, std::monostate{}, std::monostate{}},
      {"1899-12-31", "1899-12-31T23:00:00Z", "line1\nline2\r\nline3", std::numeric_limits<int64_t>::min(), -0.0, true},
      {"1900-01-01", "2024-06-30T12:00:00.5-07:00", "=SUM(A1:A2)", kTwo53, max, false},
      {"1900-02-28", "2024-06-30T12:00:00Z", "+49 30 1234", kTwo53 + 1, min_subnormal, true},
      {"1900-03-01", "2024-06-30T12:00:00Z", "-5", -(kTwo53 + 1), kNaN, std::monostate{}},
      {"9999-12-31", "2024-06-30T12:00:00Z", "@cmd", 3.0, kInf, true},
      {"0001-01-01", "2024-06-30T12:00:00Z", "\tTab", kNaN, -kInf, false},
      {"2024-12-31", "2024-06-30T12:00:00Z", "\rCR", -kInf, int64_t{42}, true},
      {"2024-12-31", "2024-06-30T12:00:00Z", "", int64_t{-1}, 0.30000000000000004, false},
      {"2024-12-31", "2024-06-30T12:00:00Z", "日本語 😀 ünïcödé", int64_t{0}, 123456789.123456789, true},
      {"2024-12-31", "2024-06-30T12:00:00Z", "  spaces  ", -1e18, 1e-7, true},
      {"2024-12-31", "2024-06-30T12:00:00Z", std::string("_x0041_ and _x005F_ \x01 ctl \x7f del \0 nul", 37),
       int64_t{7}, 100.0, false},
      {"2024-12-31", "2024-06-30T12:00:00Z", "'quoted' a,b;c\"d\"", int64_t{8}, 1e300, true},
      {"2024-12-31", "2024-06-30T12:00:00Z", "\xEF\xBF\xBE noncharacter", int64_t{9}, -2.5e-300, false},
      {"2024-12-31", "2024-06-30T12:00:00Z", "x", kTwo53 + 2, static_cast<double>(kTwo53 + 2), true},
  };
  report.sections.push_back(metrics);

  TestSection funnel;
  funnel.header = {"report", "A section named like the Report sheet", "funnel",
                   {{"step", "Step", ColumnType::kInteger},
                    {"event_type", "Event type", ColumnType::kString},
                    {"users", "Users", ColumnType::kInteger},
                    {"conversion", "Conversion", ColumnType::kNumber}}};
  funnel.rows = {{int64_t{1}, "app.open", int64_t{1000}, 1.0},
                 {int64_t{2}, "store.view", int64_t{420}, 0.42},
                 {int64_t{3}, "purchase", int64_t{0}, std::monostate{}}};
  report.sections.push_back(funnel);

  TestSection empty;
  empty.header = {"empty", "No rows", "retention",
                  {{"cohort", "Cohort", ColumnType::kDate}, {"cohort_users", "Users", ColumnType::kInteger}}};
  report.sections.push_back(empty);

  TestSection flags;
  flags.header = {"flags", "Flags", "experiment", {{"significant", "Significant", ColumnType::kBoolean}}};
  flags.rows = {{true}, {false}, {std::monostate{}}};
  report.sections.push_back(flags);
  return report;
}

// --- What a cell becomes, per format (writer.h) ---

// The 16 significant digits libxlsxwriter writes (after the clamp that keeps them finite).
double XlsxNumber(double value) {
  value = std::clamp(value, -1.797693134862315e308, 1.797693134862315e308);
  char text[40];
  std::snprintf(text, sizeof(text), "%.16G", value);
  return std::strtod(text, nullptr);
}

// Text as Excel shows it: XML cannot hold NUL, and the XLSX writer escapes control characters, which Excel (and the
// reader script) unescape; only the cut at 32767 characters changes it.
json ExpectedCell(OutputFormat format, const Column& column, const Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return nullptr;
  const bool xlsx = format == OutputFormat::kXlsx;
  switch (column.type) {
    case ColumnType::kString: {
      std::string text = std::get<std::string>(cell);
      if (format == OutputFormat::kCsv && !text.empty() && std::string("=+-@\t\r").find(text[0]) != std::string::npos) {
        text = "'" + text;
      }
      if (xlsx && text.empty()) return nullptr;
      return text;
    }
    case ColumnType::kDate: {
      const std::string& text = std::get<std::string>(cell);
      if (xlsx && text >= "1900-01-01") return json{{"date", text}};
      return text;
    }
    case ColumnType::kDateTime:
      return std::get<std::string>(cell);
    case ColumnType::kInteger: {
      int64_t value = 0;
      if (const auto* number = std::get_if<double>(&cell)) {
        if (!std::isfinite(*number)) return nullptr;
        value = static_cast<int64_t>(*number);
      } else {
        value = std::get<int64_t>(cell);
      }
      if (xlsx && (value > kTwo53 || value < -kTwo53)) return std::to_string(value);
      return value;
    }
    case ColumnType::kNumber: {
      if (const auto* integer = std::get_if<int64_t>(&cell)) {
        if (xlsx && (*integer > kTwo53 || *integer < -kTwo53)) return std::to_string(*integer);
        return static_cast<double>(*integer);
      }
      const double number = std::get<double>(cell);
      if (!std::isfinite(number)) return nullptr;
      return xlsx ? XlsxNumber(number) : number;
    }
    case ColumnType::kBoolean:
      return std::get<bool>(cell);
  }
  return nullptr;
}

// --- Reading back ---

// A section as read back: its name, the header (column names; XLSX: titles), rows of cells in the canonical form
// of ExpectedCell.
struct ReadSection {
  std::string name;
  std::vector<std::string> header;
  std::vector<std::vector<json>> rows;
};

struct CsvField {
  std::string text;
  bool quoted = false;
};

// RFC 4180, strictly: CRLF record ends (the last one included), quotes only around whole fields, "" inside them.
std::optional<std::vector<std::vector<CsvField>>> ParseCsv(const std::string& data, std::string* error) {
  std::vector<std::vector<CsvField>> records;
  std::vector<CsvField> record;
  size_t pos = 0;
  while (pos < data.size()) {
    CsvField field;
    if (data[pos] == '"') {
      field.quoted = true;
      ++pos;
      while (true) {
        if (pos >= data.size()) {
          *error = "unterminated quoted field";
          return std::nullopt;
        }
        if (data[pos] == '"') {
          if (pos + 1 < data.size() && data[pos + 1] == '"') {
            field.text.push_back('"');
            pos += 2;
            continue;
          }
          ++pos;
          break;
        }
        field.text.push_back(data[pos++]);
      }
    } else {
      while (pos < data.size() && data[pos] != ',' && data[pos] != '\r' && data[pos] != '\n') {
        if (data[pos] == '"') {
          *error = "quote inside an unquoted field at byte " + std::to_string(pos);
          return std::nullopt;
        }
        field.text.push_back(data[pos++]);
      }
    }
    record.push_back(std::move(field));
    if (pos < data.size() && data[pos] == ',') {
      ++pos;
      continue;
    }
    if (data.compare(pos, 2, "\r\n") != 0) {
      *error = "a record does not end with CRLF at byte " + std::to_string(pos);
      return std::nullopt;
    }
    pos += 2;
    records.push_back(std::move(record));
    record.clear();
  }
  if (!data.empty() && data.size() >= 2 && data.compare(data.size() - 2, 2, "\r\n") != 0) {
    *error = "the file does not end with CRLF";
    return std::nullopt;
  }
  return records;
}

json CsvCell(const Column& column, const CsvField& field) {
  if (field.text.empty()) return field.quoted ? json("") : json(nullptr);
  switch (column.type) {
    case ColumnType::kInteger: {
      size_t used = 0;
      const long long value = std::stoll(field.text, &used);
      EXPECT_EQ(used, field.text.size()) << "integer " << field.text;
      return static_cast<int64_t>(value);
    }
    case ColumnType::kNumber: {
      char* end = nullptr;
      const double value = std::strtod(field.text.c_str(), &end);
      EXPECT_EQ(end, field.text.c_str() + field.text.size()) << "number " << field.text;
      return value;
    }
    case ColumnType::kBoolean:
      EXPECT_TRUE(field.text == "true" || field.text == "false") << field.text;
      return field.text == "true";
    default:
      return field.text;
  }
}

std::vector<ReadSection> ReadCsv(const std::string& data, const std::vector<TestSection>& sections) {
  std::string error;
  auto records = ParseCsv(data, &error);
  EXPECT_TRUE(records.has_value()) << error;
  if (!records) return {};
  std::vector<ReadSection> out;
  size_t record_idx = 0;
  for (size_t section_idx = 0; section_idx < sections.size(); ++section_idx) {
    const SectionHeader& header = sections[section_idx].header;
    if (section_idx > 0) {
      EXPECT_LT(record_idx, records->size());
      if (record_idx >= records->size()) return out;
      const auto& blank = (*records)[record_idx++];
      EXPECT_TRUE(blank.size() == 1 && blank[0].text.empty() && !blank[0].quoted) << "no empty line between sections";
    }
    EXPECT_LT(record_idx, records->size());
    if (record_idx >= records->size()) return out;
    ReadSection section;
    const auto& header_record = (*records)[record_idx++];
    EXPECT_EQ(header_record.at(0).text, "section");
    for (size_t idx = 1; idx < header_record.size(); ++idx) section.header.push_back(header_record[idx].text);
    section.name = header.name;
    while (record_idx < records->size() && !(*records)[record_idx][0].text.empty()) {
      const auto& record = (*records)[record_idx++];
      EXPECT_EQ(record[0].text, header.name);
      EXPECT_EQ(record.size(), header.columns.size() + 1);
      std::vector<json> row;
      for (size_t column_idx = 0; column_idx < header.columns.size() && column_idx + 1 < record.size(); ++column_idx) {
        row.push_back(CsvCell(header.columns[column_idx], record[column_idx + 1]));
      }
      section.rows.push_back(std::move(row));
    }
    out.push_back(std::move(section));
  }
  EXPECT_EQ(record_idx, records->size()) << "records after the last section";
  return out;
}

json JsonCell(const Column& column, const nlohmann::ordered_json& value) {
  if (value.is_null()) return nullptr;
  switch (column.type) {
    case ColumnType::kInteger:
      EXPECT_TRUE(value.is_number_integer()) << value.dump();
      return value.get<int64_t>();
    case ColumnType::kNumber:
      EXPECT_TRUE(value.is_number()) << value.dump();
      return value.get<double>();
    case ColumnType::kBoolean:
      EXPECT_TRUE(value.is_boolean()) << value.dump();
      return value.get<bool>();
    default:
      EXPECT_TRUE(value.is_string()) << value.dump();
      return value.get<std::string>();
  }
}

std::vector<ReadSection> ReadJson(const std::string& data, const std::vector<TestSection>& sections,
                                  nlohmann::ordered_json* document) {
  *document = nlohmann::ordered_json::parse(data, nullptr, false);
  EXPECT_FALSE(document->is_discarded()) << "not JSON";
  if (document->is_discarded()) return {};
  const auto& read_sections = (*document)["sections"];
  EXPECT_EQ(read_sections.size(), sections.size());
  std::vector<ReadSection> out;
  for (size_t section_idx = 0; section_idx < sections.size() && section_idx < read_sections.size(); ++section_idx) {
    const SectionHeader& header = sections[section_idx].header;
    const auto& read = read_sections[section_idx];
    ReadSection section;
    section.name = read["name"].get<std::string>();
    EXPECT_EQ(read["title"], header.title);
    EXPECT_EQ(read["type"], header.type);
    EXPECT_EQ(read["columns"].size(), header.columns.size());
    for (size_t column_idx = 0; column_idx < read["columns"].size(); ++column_idx) {
      const auto& column = read["columns"][column_idx];
      section.header.push_back(column["name"].get<std::string>());
      EXPECT_EQ(column["title"], header.columns[column_idx].title);
      EXPECT_EQ(column["type"], ColumnTypeName(header.columns[column_idx].type));
    }
    EXPECT_EQ(read["row_count"], read["rows"].size());
    for (const auto& read_row : read["rows"]) {
      std::vector<json> row;
      EXPECT_EQ(read_row.size(), header.columns.size());
      size_t column_idx = 0;
      for (const auto& [key, value] : read_row.items()) {  // in column order
        if (column_idx >= header.columns.size()) break;
        EXPECT_EQ(key, header.columns[column_idx].name);
        row.push_back(JsonCell(header.columns[column_idx], value));
        ++column_idx;
      }
      section.rows.push_back(std::move(row));
    }
    out.push_back(std::move(section));
  }
  return out;
}

// Prints a workbook as JSON: sheets in order with name, frozen panes, the header row's boldness, and every cell as
// null, {"s": text} (unescaped from _xHHHH_ as Excel does), {"n": number}, {"b": bool} or {"d": "YYYY-MM-DD",
// "f": number format} for dates. "stream" reads with read_only=True (large files; no panes nor fonts).
constexpr char kReadXlsxScript[] = R"PY(
import datetime, json, re, sys
import openpyxl

path, out_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
stream = mode == "stream"
workbook = openpyxl.load_workbook(path, read_only=stream)
escape = re.compile(r"_x([0-9A-Fa-f]{4})_")

def unescape(text):
    return escape.sub(lambda match: chr(int(match.group(1), 16)), text)

def cell(c):
    v = c.value
    if v is None:
        return None
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, datetime.datetime):
        return {"d": v.date().isoformat(), "f": c.number_format, "time": v.time().isoformat()}
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)):
        return {"other": repr(v)}
    if isinstance(v, (int, float)):
        return {"n": v}
    if isinstance(v, str):
        return {"s": unescape(v)}
    return {"other": repr(v)}

sheets = []
for sheet in workbook.worksheets:
    rows = [[cell(c) for c in row] for row in sheet.iter_rows()]
    info = {"name": sheet.title, "rows": rows}
    if not stream:
        info["freeze"] = sheet.freeze_panes
        info["bold"] = [bool(c.font is not None and c.font.b) for c in sheet[1]] if sheet.max_row >= 1 else []
    sheets.append(info)
with open(out_path, "w") as out:
    json.dump({"sheets": sheets}, out, allow_nan=False)
)PY";

json ReadXlsxWorkbook(const std::string& data, const std::filesystem::path& dir, bool stream) {
  const std::filesystem::path xlsx = dir / "read.xlsx", script = dir / "read_xlsx.py", out = dir / "read.json";
  std::ofstream(xlsx, std::ios::binary) << data;
  std::ofstream(script) << kReadXlsxScript;
  const std::string command = std::string(ANALYTICS_PYTHON3) + " '" + script.string() + "' '" + xlsx.string() +
                              "' '" + out.string() + "' " + (stream ? "stream" : "full");
  const int exit_code = std::system(command.c_str());
  EXPECT_EQ(exit_code, 0) << command << " (needs python3-openpyxl: scripts/install-deps)";
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  json workbook = json::parse(text.str(), nullptr, false);
  EXPECT_FALSE(workbook.is_discarded());
  std::filesystem::remove(xlsx);
  std::filesystem::remove(out);
  return workbook;
}

json XlsxCell(const Column& column, const json& cell) {
  if (cell.is_null()) return nullptr;
  if (cell.contains("s")) return cell["s"];
  if (cell.contains("b")) return cell["b"];
  if (cell.contains("d")) {
    EXPECT_EQ(cell["f"], "yyyy-mm-dd");
    EXPECT_EQ(cell["time"], "00:00:00");
    return json{{"date", cell["d"]}};
  }
  if (cell.contains("n")) {
    if (column.type == ColumnType::kInteger) {
      const double value = cell["n"].get<double>();
      EXPECT_EQ(value, std::trunc(value));
      return static_cast<int64_t>(value);
    }
    return cell["n"].get<double>();
  }
  ADD_FAILURE() << "unexpected cell " << cell.dump();
  return nullptr;
}

std::vector<ReadSection> ReadXlsx(const json& workbook, const std::vector<TestSection>& sections) {
  const json& sheets = workbook["sheets"];
  EXPECT_EQ(sheets.size(), sections.size() + 1);
  std::vector<ReadSection> out;
  for (size_t section_idx = 0; section_idx < sections.size() && section_idx + 1 < sheets.size(); ++section_idx) {
    const SectionHeader& header = sections[section_idx].header;
    const json& sheet = sheets[section_idx + 1];
    ReadSection section;
    section.name = sheet["name"].get<std::string>();
    const json& rows = sheet["rows"];
    EXPECT_GE(rows.size(), 1u);
    if (rows.empty()) return out;
    for (size_t column_idx = 0; column_idx < header.columns.size(); ++column_idx) {
      const json cell = column_idx < rows[0].size() ? rows[0][column_idx] : json();
      section.header.push_back(cell.is_object() ? cell.value("s", "") : "");
    }
    if (sheet.contains("freeze")) {
      EXPECT_EQ(sheet["freeze"], "A2");
      for (const json& bold : sheet["bold"]) EXPECT_TRUE(bold.get<bool>());
    }
    for (size_t row_idx = 1; row_idx < rows.size(); ++row_idx) {
      std::vector<json> row;
      for (size_t column_idx = 0; column_idx < header.columns.size(); ++column_idx) {
        const json cell = column_idx < rows[row_idx].size() ? rows[row_idx][column_idx] : json();
        row.push_back(XlsxCell(header.columns[column_idx], cell));
      }
      section.rows.push_back(std::move(row));
    }
    out.push_back(std::move(section));
  }
  return out;
}

// Compares what was read with what was written, cell by cell.
void ExpectSections(OutputFormat format, const std::vector<ReadSection>& read, const std::vector<TestSection>& sections) {
  ASSERT_EQ(read.size(), sections.size());
  for (size_t section_idx = 0; section_idx < sections.size(); ++section_idx) {
    const SectionHeader& header = sections[section_idx].header;
    const ReadSection& section = read[section_idx];
    SCOPED_TRACE("section " + header.name);
    if (format != OutputFormat::kXlsx) {
      EXPECT_EQ(section.name, header.name);
    }
    ASSERT_EQ(section.header.size(), header.columns.size());
    for (size_t column_idx = 0; column_idx < header.columns.size(); ++column_idx) {
      const Column& column = header.columns[column_idx];
      EXPECT_EQ(section.header[column_idx], format == OutputFormat::kXlsx ? column.title : column.name);
    }
    ASSERT_EQ(section.rows.size(), sections[section_idx].rows.size());
    for (size_t row_idx = 0; row_idx < section.rows.size(); ++row_idx) {
      const Row& written = sections[section_idx].rows[row_idx];
      ASSERT_EQ(section.rows[row_idx].size(), written.size()) << "row " << row_idx;
      for (size_t column_idx = 0; column_idx < written.size(); ++column_idx) {
        const json expected = ExpectedCell(format, header.columns[column_idx], written[column_idx]);
        const json& got = section.rows[row_idx][column_idx];
        if (expected.is_number_float() && got.is_number_float()) {
          EXPECT_EQ(expected.get<double>(), got.get<double>())
              << "row " << row_idx << " column " << header.columns[column_idx].name;
        } else {
          EXPECT_EQ(expected, got) << "row " << row_idx << " column " << header.columns[column_idx].name;
        }
      }
    }
  }
}

// --- Tests ---

class ReportFormatsTest : public ::testing::TestWithParam<OutputFormat> {
 protected:
  // Writes `report` in the test's format; the bytes land in out_.
  Status Write(const TestReport& report) {
    auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
    return WriteReport(*writer, report);
  }

  std::vector<ReadSection> ReadBack(const std::vector<TestSection>& sections, bool stream = false) {
    switch (GetParam()) {
      case OutputFormat::kCsv:
        return ReadCsv(out_.data(), sections);
      case OutputFormat::kJson:
        return ReadJson(out_.data(), sections, &json_document_);
      case OutputFormat::kXlsx:
        workbook_ = ReadXlsxWorkbook(out_.data(), read_dir_.path(), stream);
        return ReadXlsx(workbook_, sections);
    }
    return {};
  }

  bool TempDirIsEmpty() const { return std::filesystem::is_empty(temp_.path()); }

  TempDir temp_;
  TempDir read_dir_;
  MemoryObjectWriter out_;
  nlohmann::ordered_json json_document_;
  json workbook_;
};

INSTANTIATE_TEST_SUITE_P(AllFormats, ReportFormatsTest,
                         ::testing::Values(OutputFormat::kCsv, OutputFormat::kJson, OutputFormat::kXlsx),
                         [](const auto& info) { return std::string(OutputFormatName(info.param)); });

TEST_P(ReportFormatsTest, EveryCellReadsBackAsTheFormatRulesSay) {
  const TestReport report = MixedReport();
  auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
  ASSERT_OK(WriteReport(*writer, report));
  EXPECT_EQ(writer->rows(), 23u);
  ExpectSections(GetParam(), ReadBack(report.sections), report.sections);
  EXPECT_TRUE(TempDirIsEmpty());
}

TEST_P(ReportFormatsTest, InvalidUtf8IsRepairedWithReplacementCharacters) {
  TestReport report;
  report.header = TestHeader();
  report.header.title = "bad \xC3 title";
  TestSection section;
  section.header = {"texts", "Texts", "metrics", {{"text", "Text", ColumnType::kString}}};
  section.rows = {{"a\xFF" "b"}, {"\xC0\xAF overlong"}, {"\xED\xA0\x80 surrogate"}, {"cut \xE2\x82"}};
  report.sections.push_back(section);
  ASSERT_OK(Write(report));
  TestSection expected = section;
  expected.rows = {{"a\uFFFDb"}, {"\uFFFD\uFFFD overlong"}, {"\uFFFD\uFFFD\uFFFD surrogate"}, {"cut \uFFFD\uFFFD"}};
  ExpectSections(GetParam(), ReadBack(report.sections), {expected});
  if (GetParam() == OutputFormat::kJson) {
    EXPECT_EQ(json_document_["report"]["title"], "bad \uFFFD title");
  }
}

TEST_P(ReportFormatsTest, LargeReportStreamsRowByRow) {
  constexpr int kRows = 200000;
  TestReport report;
  report.header = TestHeader();
  TestSection section;
  section.header = {"big", "Big", "metrics",
                    {{"id", "ID", ColumnType::kInteger},
                     {"value", "Value", ColumnType::kNumber},
                     {"label", "Label", ColumnType::kString}}};
  for (int row_idx = 0; row_idx < kRows; ++row_idx) {
    section.rows.push_back({int64_t{row_idx} * 7919, row_idx / 7.0, "label, \"" + std::to_string(row_idx % 977) + "\""});
  }
  report.sections.push_back(section);

  auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
  ASSERT_OK(writer->Begin(report.header));
  ASSERT_OK(writer->BeginSection(section.header));
  for (int row_idx = 0; row_idx < kRows; ++row_idx) {
    ASSERT_OK(writer->Row(section.rows[row_idx]));
    if (row_idx == kRows / 2 && GetParam() != OutputFormat::kXlsx) {
      // Half-way, most of what was written has reached the object already.
      EXPECT_GT(out_.size(), 1000000u);
    }
  }
  ASSERT_OK(writer->EndSection());
  if (GetParam() == OutputFormat::kXlsx) {
    EXPECT_EQ(out_.size(), 0u);  // the workbook is copied in at Finish
  }
  ASSERT_OK(writer->Finish());
  EXPECT_EQ(writer->rows(), static_cast<uint64_t>(kRows));
  // Many writes of at most the buffer (plus one row), never one at the end.
  EXPECT_GT(out_.writes(), 20);
  EXPECT_LE(out_.max_write(), 64u * 1024 + 1024);
  EXPECT_TRUE(TempDirIsEmpty());
  ExpectSections(GetParam(), ReadBack(report.sections, /*stream=*/true), report.sections);
}

TEST_P(ReportFormatsTest, RowsThatDoNotFitTheirColumnsAreRejected) {
  const SectionHeader header = MixedReport().sections[0].header;
  const Row good = MixedReport().sections[0].rows[0];
  struct Case {
    Row row;
    std::string message;
  };
  auto with = [&](size_t column_idx, Cell cell) {
    Row row = good;
    row[column_idx] = std::move(cell);
    return row;
  };
  const std::string where = "section \"metrics\", row 2";
  const std::vector<Case> cases = {
      {Row{"2024-01-01", std::monostate{}}, where + ": 2 cells for 6 columns"},
      {with(3, "12"), where + ", column \"dau\": text does not fit an integer column"},
      {with(3, 1.5), where + ", column \"dau\": 1.5 is not an integer in the int64 range"},
      {with(3, 1e19), where + ", column \"dau\": 1e+19 is not an integer in the int64 range"},
      {with(0, "2024-02-30"), where + ", column \"date\": \"2024-02-30\" is not a date YYYY-MM-DD"},
      {with(0, int64_t{20240101}), where + ", column \"date\": an integer does not fit a date column"},
      {with(1, "2024-01-01 10:00"), where + ", column \"hour\": \"2024-01-01 10:00\" is not an RFC 3339 date-time"},
      {with(1, "2024-01-01T10:00:00"), where + ", column \"hour\": \"2024-01-01T10:00:00\" is not an RFC 3339 date-time"},
      {with(4, true), where + ", column \"revenue\": a boolean does not fit a number column"},
      {with(4, "1.5"), where + ", column \"revenue\": text does not fit a number column"},
      {with(5, int64_t{1}), where + ", column \"paying\": an integer does not fit a boolean column"},
      {with(2, 2.5), where + ", column \"country\": a number does not fit a string column"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.message);
    MemoryObjectWriter out;
    auto writer = MakeReportWriter(GetParam(), out, temp_.path().string());
    ASSERT_OK(writer->Begin(TestHeader()));
    ASSERT_OK(writer->BeginSection(header));
    ASSERT_OK(writer->Row(good));
    const Status status = writer->Row(test_case.row);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), test_case.message);
    EXPECT_EQ(writer->rows(), 1u);
    // The writer is unusable after an error.
    const Status after = writer->Row(good);
    EXPECT_EQ(after.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(after.message().find(test_case.message), std::string::npos) << after.message();
    EXPECT_EQ(writer->Finish().code(), StatusCode::kFailedPrecondition);
  }
  EXPECT_TRUE(TempDirIsEmpty());
}

TEST_P(ReportFormatsTest, DuplicateColumnNamesAreRejected) {
  auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
  ASSERT_OK(writer->Begin(TestHeader()));
  const Status status = writer->BeginSection(
      {"s", "S", "metrics", {{"a", "A", ColumnType::kString}, {"a", "A again", ColumnType::kInteger}}});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "section \"s\": column \"a\" appears twice");
}

TEST_P(ReportFormatsTest, CallsOutOfOrderFail) {
  const SectionHeader header = {"s", "S", "metrics", {{"a", "A", ColumnType::kString}}};
  {
    auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
    const Status status = writer->BeginSection(header);
    EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(status.message(), "ReportWriter::BeginSection called before Begin");
  }
  {
    auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
    ASSERT_OK(writer->Begin(TestHeader()));
    EXPECT_EQ(writer->Row({"x"}).message(), "ReportWriter::Row called outside a section");
  }
  {
    auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
    ASSERT_OK(writer->Begin(TestHeader()));
    ASSERT_OK(writer->BeginSection(header));
    EXPECT_EQ(writer->Finish().message(), "ReportWriter::Finish called inside a section");
  }
  {
    auto writer = MakeReportWriter(GetParam(), out_, temp_.path().string());
    ASSERT_OK(writer->Begin(TestHeader()));
    ASSERT_OK(writer->Finish());
    EXPECT_EQ(writer->Begin(TestHeader()).message(), "ReportWriter::Begin called after Finish");
  }
  EXPECT_TRUE(TempDirIsEmpty());
}

TEST_P(ReportFormatsTest, ObjectWriterErrorsReachTheCaller) {
  TestReport report;
  report.header = TestHeader();
  TestSection section;
  section.header = {"s", "S", "metrics", {{"text", "Text", ColumnType::kString}}};
  uint64_t seed = 42;  // text that does not compress away, so that the XLSX file also takes many writes
  for (int row_idx = 0; row_idx < 20000; ++row_idx) {
    std::string text;
    while (text.size() < 100) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      text += std::to_string(seed >> 20);
    }
    section.rows.push_back({text});
  }
  report.sections.push_back(section);
  out_.FailFromWriteForTest(3);
  const Status status = Write(report);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_TRUE(TempDirIsEmpty());
}

TEST_P(ReportFormatsTest, EmptyReportIsValid) {
  TestReport report;
  report.header = TestHeader();
  ASSERT_OK(Write(report));
  switch (GetParam()) {
    case OutputFormat::kCsv:
      EXPECT_EQ(out_.data(), "");
      break;
    case OutputFormat::kJson: {
      const json document = json::parse(out_.data());
      EXPECT_EQ(document["sections"], json::array());
      break;
    }
    case OutputFormat::kXlsx:
      ReadBack({});
      EXPECT_EQ(workbook_["sheets"].size(), 1u);
      break;
  }
}

TEST(ReportCsvTest, BytesFollowRfc4180AndTheFormulaRule) {
  TestReport report;
  report.header = TestHeader();
  TestSection first;
  first.header = {"s", "S", "metrics",
                  {{"name", "Name", ColumnType::kString},
                   {"n", "N", ColumnType::kInteger},
                   {"x", "X", ColumnType::kNumber},
                   {"b", "B", ColumnType::kBoolean}}};
  first.rows = {
      {"=1+1", int64_t{1}, 0.5, true},
      {"a,b", int64_t{-2}, -0.0, false},
      {"say \"hi\"", std::numeric_limits<int64_t>::max(), 1e21, true},
      {"", std::monostate{}, kNaN, std::monostate{}},
      {std::monostate{}, 4.0, kTwo53 + 1, false},
      {"line\nbreak", std::monostate{}, 0.1, std::monostate{}},
      {"-5", std::monostate{}, -kInf, std::monostate{}},
      {"\tx", std::monostate{}, 1e-7, std::monostate{}},
      {"\rx", std::monostate{}, 123.456, std::monostate{}},
      {"@x", std::monostate{}, 5e-324, std::monostate{}},
      {"+x", std::monostate{}, std::monostate{}, std::monostate{}},
      {"ünï 😀", std::monostate{}, std::monostate{}, std::monostate{}},
  };
  TestSection second;
  second.header = {"t", "T", "funnel", {{"c", "C", ColumnType::kDate}}};
  second.rows = {{"2024-01-01"}};
  TestSection third;
  third.header = {"u", "U", "funnel", {}};
  report.sections = {first, second, third};
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kCsv, out, "/nonexistent");
  ASSERT_OK(WriteReport(*writer, report));
  EXPECT_EQ(out.data(),
            "section,name,n,x,b\r\n"
            "s,'=1+1,1,0.5,true\r\n"
            "s,\"a,b\",-2,-0,false\r\n"
            "s,\"say \"\"hi\"\"\",9223372036854775807,1e+21,true\r\n"
            "s,\"\",,,\r\n"
            "s,,4,9007199254740993,false\r\n"
            "s,\"line\nbreak\",,0.1,\r\n"
            "s,'-5,,,\r\n"
            "s,'\tx,,1e-07,\r\n"
            "s,\"'\rx\",,123.456,\r\n"
            "s,'@x,,5e-324,\r\n"
            "s,'+x,,,\r\n"
            "s,ünï 😀,,,\r\n"
            "\r\n"
            "section,c\r\n"
            "t,2024-01-01\r\n"
            "\r\n"
            "section\r\n");
  EXPECT_TRUE(out.data().find('\xEF') != 0);  // no BOM
}

TEST(ReportJsonTest, DocumentHasTheDocumentedLayout) {
  TestReport report;
  report.header = TestHeader();
  TestSection section;
  section.header = {"s", "S \"quoted\"", "metrics",
                    {{"day", "Day", ColumnType::kDate},
                     {"n", "N", ColumnType::kInteger},
                     {"x", "X", ColumnType::kNumber},
                     {"t", "T", ColumnType::kString}}};
  section.rows = {{"2024-01-01", kTwo53 + 1, 0.1, "a\"b\\c\n\x01"}, {std::monostate{}, 2.0, kNaN, "é"}};
  TestSection empty;
  empty.header = {"e", "E", "retention", {{"a", "A", ColumnType::kBoolean}}};
  report.sections = {section, empty};
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kJson, out, "/nonexistent");
  ASSERT_OK(WriteReport(*writer, report));
  EXPECT_EQ(out.data(),
            "{\"report\":{\"instance_id\":\"inst-1\",\"definition_id\":\"def-1\",\"definition_name\":\"Weekly KPIs — "
            "Ünïcode\",\"title\":\"KPIs \\\"weekly\\\", all games\",\"definition_version\":3,\"generated_at\":"
            "\"2023-11-14T22:13:20.123Z\",\"timezone\":\"Europe/Berlin\"},\"parameters\":{\"flag\":true,\"games\":["
            "\"g1\",\"g2\"],\"limit\":10,\"none\":null,\"period_start\":\"2024-01-01\",\"ratio\":0.5},\"sections\":[\n"
            "{\"name\":\"s\",\"title\":\"S \\\"quoted\\\"\",\"type\":\"metrics\",\"columns\":[{\"name\":\"day\","
            "\"title\":\"Day\",\"type\":\"date\"},{\"name\":\"n\",\"title\":\"N\",\"type\":\"integer\"},{\"name\":"
            "\"x\",\"title\":\"X\",\"type\":\"number\"},{\"name\":\"t\",\"title\":\"T\",\"type\":\"string\"}],"
            "\"rows\":[\n"
            "{\"day\":\"2024-01-01\",\"n\":9007199254740993,\"x\":0.1,\"t\":\"a\\\"b\\\\c\\n\\u0001\"},\n"
            "{\"day\":null,\"n\":2,\"x\":null,\"t\":\"é\"}\n"
            "],\"row_count\":2},\n"
            "{\"name\":\"e\",\"title\":\"E\",\"type\":\"retention\",\"columns\":[{\"name\":\"a\",\"title\":\"A\","
            "\"type\":\"boolean\"}],\"rows\":[],\"row_count\":0}\n"
            "]}\n");
  const json document = json::parse(out.data());
  EXPECT_EQ(document["sections"][0]["rows"][0]["n"].get<int64_t>(), kTwo53 + 1);
}

class ReportXlsxTest : public ::testing::Test {
 protected:
  TempDir temp_;
  TempDir read_dir_;
};

TEST_F(ReportXlsxTest, ReportSheetHoldsTheHeaderParametersAndSections) {
  const TestReport report = MixedReport();
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kXlsx, out, temp_.path().string());
  ASSERT_OK(WriteReport(*writer, report));
  const json workbook = ReadXlsxWorkbook(out.data(), read_dir_.path(), false);
  const json& sheets = workbook["sheets"];
  ASSERT_EQ(sheets.size(), 5u);
  EXPECT_EQ(sheets[0]["name"], "Report");
  // "report" is taken by "Report" (sheet names ignore case).
  EXPECT_EQ(sheets[1]["name"], "metrics");
  EXPECT_EQ(sheets[2]["name"], "report_2");
  EXPECT_EQ(sheets[3]["name"], "empty");
  EXPECT_EQ(sheets[4]["name"], "flags");
  auto s = [](const std::string& text) { return json{{"s", text}}; };
  auto n = [](double number) { return json{{"n", number}}; };
  const json expected = json::array({
      {s("report"), nullptr, nullptr, nullptr, nullptr},
      {s("instance_id"), s("inst-1"), nullptr, nullptr, nullptr},
      {s("definition_id"), s("def-1"), nullptr, nullptr, nullptr},
      {s("definition_name"), s("Weekly KPIs — Ünïcode"), nullptr, nullptr, nullptr},
      {s("title"), s("KPIs \"weekly\", all games"), nullptr, nullptr, nullptr},
      {s("definition_version"), n(3), nullptr, nullptr, nullptr},
      {s("generated_at"), s("2023-11-14T22:13:20.123Z"), nullptr, nullptr, nullptr},
      {s("timezone"), s("Europe/Berlin"), nullptr, nullptr, nullptr},
      {nullptr, nullptr, nullptr, nullptr, nullptr},
      {s("parameters"), nullptr, nullptr, nullptr, nullptr},
      {s("flag"), json{{"b", true}}, nullptr, nullptr, nullptr},
      {s("games"), s("[\"g1\",\"g2\"]"), nullptr, nullptr, nullptr},
      {s("limit"), n(10), nullptr, nullptr, nullptr},
      {s("none"), nullptr, nullptr, nullptr, nullptr},
      {s("period_start"), s("2024-01-01"), nullptr, nullptr, nullptr},
      {s("ratio"), n(0.5), nullptr, nullptr, nullptr},
      {nullptr, nullptr, nullptr, nullptr, nullptr},
      {s("name"), s("title"), s("type"), s("row_count"), s("sheet")},
      {s("metrics"), s("Daily metrics"), s("metrics"), n(17), s("metrics")},
      {s("report"), s("A section named like the Report sheet"), s("funnel"), n(3), s("report_2")},
      {s("empty"), s("No rows"), s("retention"), n(0), s("empty")},
      {s("flags"), s("Flags"), s("experiment"), n(3), s("flags")},
  });
  EXPECT_EQ(sheets[0]["rows"], expected) << sheets[0]["rows"].dump();
  EXPECT_TRUE(std::filesystem::is_empty(temp_.path()));
}

TEST_F(ReportXlsxTest, SheetNamesAreMadeValidAndUnique) {
  TestReport report;
  report.header = TestHeader();
  const std::vector<std::string> names = {"a/b:c*?[x]\\y", std::string(40, 'n'), std::string(31, 'n'), "history",
                                          "'quoted'", "", "REPORT_2", "report", "report_2"};
  for (const std::string& name : names) {
    TestSection section;
    section.header = {name, "T", "metrics", {{"a", "A", ColumnType::kInteger}}};
    section.rows = {{int64_t{1}}};
    report.sections.push_back(section);
  }
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kXlsx, out, temp_.path().string());
  ASSERT_OK(WriteReport(*writer, report));
  const json workbook = ReadXlsxWorkbook(out.data(), read_dir_.path(), true);
  std::vector<std::string> sheet_names;
  for (const json& sheet : workbook["sheets"]) sheet_names.push_back(sheet["name"].get<std::string>());
  const std::vector<std::string> expected = {"Report",
                                             "a_b_c___x__y",
                                             std::string(31, 'n'),
                                             std::string(29, 'n') + "_2",
                                             "history_2",
                                             "_quoted_",
                                             "section",
                                             "REPORT_2",
                                             "report_3",
                                             "report_2_2"};
  EXPECT_EQ(sheet_names, expected);
}

TEST_F(ReportXlsxTest, LongTextIsCutAtTheCellLimit) {
  TestReport report;
  report.header = TestHeader();
  TestSection section;
  section.header = {"s", "S", "metrics", {{"t", "T", ColumnType::kString}}};
  const std::string long_text = std::string(40000, 'x');
  std::string escapes;
  for (int idx = 0; idx < 5000; ++idx) escapes += "\x01" "é";  // 7 + 1 characters in the cell each
  section.rows = {{long_text}, {escapes}};
  report.sections.push_back(section);
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kXlsx, out, temp_.path().string());
  ASSERT_OK(WriteReport(*writer, report));
  const json workbook = ReadXlsxWorkbook(out.data(), read_dir_.path(), true);
  const json& rows = workbook["sheets"][1]["rows"];
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1][0]["s"], std::string(32767, 'x'));
  std::string cut;
  for (int idx = 0; idx < 32767 / 8; ++idx) cut += "\x01" "é";
  cut += "\x01";  // 4095 * 8 + 7 = 32767
  EXPECT_EQ(rows[2][0]["s"], cut);
}

TEST_F(ReportXlsxTest, MoreRowsThanASheetHoldsIsResourceExhausted) {
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kXlsx, out, temp_.path().string());
  ASSERT_OK(writer->Begin(TestHeader()));
  ASSERT_OK(writer->BeginSection({"s", "S", "metrics", {{"b", "B", ColumnType::kBoolean}}}));
  const Row row = {true};
  for (int row_idx = 0; row_idx < 1048575; ++row_idx) ASSERT_OK(writer->Row(row));
  const Status status = writer->Row(row);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "section \"s\" has more than 1048575 rows, the most an XLSX sheet holds; use csv or json");
  writer.reset();
  EXPECT_TRUE(std::filesystem::is_empty(temp_.path()));
  EXPECT_EQ(out.size(), 0u);
}

TEST_F(ReportXlsxTest, TemporaryFileIsRemovedWhenTheWriterIsDropped) {
  MemoryObjectWriter out;
  {
    auto writer = MakeReportWriter(OutputFormat::kXlsx, out, temp_.path().string());
    ASSERT_OK(writer->Begin(TestHeader()));
    ASSERT_OK(writer->BeginSection({"s", "S", "metrics", {{"b", "B", ColumnType::kBoolean}}}));
    ASSERT_OK(writer->Row({true}));
    EXPECT_FALSE(std::filesystem::is_empty(temp_.path()));
  }
  EXPECT_TRUE(std::filesystem::is_empty(temp_.path()));
  EXPECT_EQ(out.size(), 0u);
}

TEST_F(ReportXlsxTest, MissingTempDirIsAnIOError) {
  MemoryObjectWriter out;
  auto writer = MakeReportWriter(OutputFormat::kXlsx, out, (temp_.path() / "missing").string());
  const Status status = writer->Begin(TestHeader());
  EXPECT_EQ(status.code(), StatusCode::kIOError) << status.ToString();
}

TEST(ReportFormatNamesTest, NamesContentTypesAndExtensions) {
  for (OutputFormat format : {OutputFormat::kCsv, OutputFormat::kJson, OutputFormat::kXlsx}) {
    ASSERT_OK_AND_ASSIGN(const OutputFormat parsed, ParseOutputFormat(OutputFormatName(format)));
    EXPECT_EQ(parsed, format);
    EXPECT_STREQ(FileExtension(format), OutputFormatName(format));
  }
  EXPECT_STREQ(ContentType(OutputFormat::kCsv), "text/csv; charset=utf-8");
  EXPECT_STREQ(ContentType(OutputFormat::kJson), "application/json");
  EXPECT_STREQ(ContentType(OutputFormat::kXlsx), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
  const auto bad = ParseOutputFormat("CSV");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().field(), "output_format");
  EXPECT_STREQ(ColumnTypeName(ColumnType::kDateTime), "datetime");
}

}  // namespace
}  // namespace analytics::reports
