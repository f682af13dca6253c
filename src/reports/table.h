// The content of a generated report: a header (what was asked) and sections, each a table of typed cells.
// Writers (writer.h) turn it into CSV, JSON or XLSX, section by section and row by row.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace analytics::reports {

enum class ColumnType {
  kString,
  kInteger,   // int64
  kNumber,    // double (NaN and infinities are written as empty / null)
  kDate,      // text "YYYY-MM-DD" (a calendar day of the report's time zone)
  kDateTime,  // text RFC 3339 with milliseconds
  kBoolean,
};
const char* ColumnTypeName(ColumnType type);  // "string", "integer", "number", "date", "datetime", "boolean"

struct Column {
  std::string name;   // machine name: [a-z0-9_]+, unique in its section ("date", "game_id", "dau", "step_2_users")
  std::string title;  // for people ("Date", "Game", "DAU"); the writers' header rows use it in XLSX, names elsewhere
  ColumnType type = ColumnType::kString;
};

// A cell: null, text (kString, kDate, kDateTime), integer, number or boolean; writers convert between integer and
// number as the column's type asks.
using Cell = std::variant<std::monostate, std::string, int64_t, double, bool>;
using Row = std::vector<Cell>;  // one cell per column, in column order

struct SectionHeader {
  std::string name;   // unique in the report, [a-z0-9_]+, at most 31 characters (XLSX sheet names)
  std::string title;
  std::string type;   // the section type of the definition: "metrics", "funnel", "retention", ...
  std::vector<Column> columns;
};

struct ReportHeader {
  std::string instance_id;
  std::string definition_id;
  std::string definition_name;
  std::string title;
  int64_t definition_version = 0;
  nlohmann::json parameters = nlohmann::json::object();  // the bound parameters, as the instance reports them
  int64_t generated_at_ms = 0;
  std::string timezone = "UTC";
};

}  // namespace analytics::reports
