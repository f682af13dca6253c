// ReportWriter: writes a report (reports/table.h) as CSV, JSON or XLSX into an ObjectWriter, as it is produced: one
// section at a time, one row at a time, so that the file is never held whole in memory.
//
// Formats (docs/reports.md "Files"). In all of them text that is not valid UTF-8 has each bad byte replaced by
// U+FFFD, NaN and infinities are null, and an integral number in an integer column is an integer.
// - csv (text/csv; charset=utf-8): RFC 4180, CRLF line ends (the last record's too), UTF-8 without BOM; the report
//   header is not in the file. Each section is a header row of column names whose first cell is "section", then its
//   rows whose first cell is the section name; sections are separated by one empty line. Integers exact (all 64
//   bits, no exponent), numbers in the shortest form that reads back exactly (std::to_chars: "0.1", "1e+21", "-0"),
//   booleans true/false, null an empty field, empty text "" (quoted, so that the two stay apart). Fields holding
//   , " CR or LF are quoted, " doubled. Text cells starting with = + - @ tab or CR are prefixed with ' so that
//   spreadsheets do not run them as formulas (CSV injection); numbers are never prefixed.
// - json (application/json): {"report": {"instance_id", "definition_id", "definition_name", "title",
//   "definition_version", "generated_at" (RFC 3339 UTC with milliseconds), "timezone"}, "parameters": {...},
//   "sections": [{"name", "title", "type", "columns": [{"name", "title", "type"}], "rows": [{"<column>": value,
//   ...}], "row_count"}]}: members in this order, a row's members in column order, each row on a line of its own.
//   Integers exact (all 64 bits; readers that parse JSON numbers as doubles lose digits beyond 2^53), numbers in
//   the shortest form that reads back exactly, null for null and non-finite numbers.
// - xlsx (application/vnd.openxmlformats-officedocument.spreadsheetml.sheet): a sheet "Report": "report" then the
//   header as name/value rows named as the JSON's report members, "parameters" then one row per parameter (scalars
//   typed, arrays and objects as JSON text), then a table of the sections (name, title, type, row_count, sheet)
//   filled in as they end. Then one sheet per section named by its name: a bold, frozen header row of column
//   titles, typed cells (numbers as numbers, dates as date cells with yyyy-mm-dd format, datetimes as text,
//   booleans as booleans, null as no cell; a row of nulls keeps one empty cell so that the row stays). Limits of
//   the format and of libxlsxwriter:
//   - numbers keep 16 significant digits (libxlsxwriter writes "%.16G"; Excel computes with 15), magnitudes above
//     1.797693134862315e308 are clamped to it so that they stay finite; integers beyond +-2^53 (which a double
//     cannot hold exactly) are text cells of their digits;
//   - dates before 1900-01-01 (Excel's first day) are text cells;
//   - empty text is no cell; text is cut at 32,767 characters (Excel's cell limit, escapes counted); control
//     characters and CR are written as _xHHHH_ and a literal "_xHHHH_" as "_x005F_xHHHH_", which Excel reads back
//     as the original text;
//   - sheet names: []:*?/\ and control characters become _, no ' at either end, at most 31 characters, unique
//     ignoring case (else "_2", "_3", ... is appended: a section "report" becomes the sheet "report_2"), never
//     Excel's reserved "History";
//   - a sheet holds 1,048,575 data rows and 16,384 columns: more is ResourceExhausted.
//   Written with libxlsxwriter in constant-memory mode: rows stream to unlinked temporary files in temp_dir; at
//   Finish the workbook is assembled into a temporary file there, copied into the ObjectWriter in 64 KiB pieces and
//   removed (also on errors, and when the writer is dropped unfinished).
// Streaming: CSV and JSON hand the ObjectWriter about 64 KiB at a time as rows come; XLSX hands it the file at
// Finish.
// Usage: Begin, then for each section BeginSection, Row..., EndSection, then Finish; the caller commits the
// ObjectWriter after Finish. Any error leaves the writer unusable (the caller drops the object): calls out of order
// and every call after an error answer FailedPrecondition. The ObjectWriter's errors come back as they are; the
// XLSX writer answers IOError when temp_dir cannot hold its files.
// Thread-safety: one writer per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "blob/object_store.h"
#include "common/status.h"
#include "reports/table.h"

namespace analytics::reports {

enum class OutputFormat { kCsv, kJson, kXlsx };

// "csv", "json", "xlsx" ↔ OutputFormat. ParseOutputFormat: InvalidArgument (field "output_format") otherwise.
common::Result<OutputFormat> ParseOutputFormat(std::string_view text);
const char* OutputFormatName(OutputFormat format);
const char* ContentType(OutputFormat format);  // as above
const char* FileExtension(OutputFormat format);  // "csv", "json", "xlsx"

class ReportWriter {
 public:
  virtual ~ReportWriter() = default;
  virtual common::Status Begin(const ReportHeader& header) = 0;
  // InvalidArgument when two columns share a name.
  virtual common::Status BeginSection(const SectionHeader& section) = 0;
  // InvalidArgument when the row's size differs from the section's columns or a cell does not fit its column;
  // nothing is written then. Cells that fit: null anywhere; string: text; date: text "YYYY-MM-DD" naming a
  // calendar day; datetime: RFC 3339 text with a zone ("...Z", "...+03:00"); integer: int64, or a double that is
  // integral and in the int64 range (or non-finite: null); number: double or int64; boolean: bool. The message
  // names the section, the 1-based row and the column ("section \"s\", row 3, column \"dau\": text does not fit an
  // integer column").
  virtual common::Status Row(const reports::Row& row) = 0;
  virtual common::Status EndSection() = 0;
  virtual common::Status Finish() = 0;
  // Data rows written so far (header rows not counted).
  virtual uint64_t rows() const = 0;
};

// `temp_dir`: where the XLSX writer keeps its temporary files (must exist); unused by the others.
std::unique_ptr<ReportWriter> MakeReportWriter(OutputFormat format, blob::ObjectWriter& out,
                                               const std::string& temp_dir);

}  // namespace analytics::reports
