#include "reports/formats/writer.h"

#include "reports/formats/writer_base.h"

namespace analytics::reports {

// table.h has no source file of its own; its one function lives with the writers, its first users.
const char* ColumnTypeName(ColumnType type) {
  switch (type) {
    case ColumnType::kString:
      return "string";
    case ColumnType::kInteger:
      return "integer";
    case ColumnType::kNumber:
      return "number";
    case ColumnType::kDate:
      return "date";
    case ColumnType::kDateTime:
      return "datetime";
    case ColumnType::kBoolean:
      return "boolean";
  }
  return "string";
}

common::Result<OutputFormat> ParseOutputFormat(std::string_view text) {
  if (text == "csv") return OutputFormat::kCsv;
  if (text == "json") return OutputFormat::kJson;
  if (text == "xlsx") return OutputFormat::kXlsx;
  return common::Status::InvalidArgument("output_format must be one of csv, json, xlsx; got \"" +
                                             std::string(text) + "\"",
                                         "output_format");
}

const char* OutputFormatName(OutputFormat format) {
  switch (format) {
    case OutputFormat::kCsv:
      return "csv";
    case OutputFormat::kJson:
      return "json";
    case OutputFormat::kXlsx:
      return "xlsx";
  }
  return "csv";
}

const char* ContentType(OutputFormat format) {
  switch (format) {
    case OutputFormat::kCsv:
      return "text/csv; charset=utf-8";
    case OutputFormat::kJson:
      return "application/json";
    case OutputFormat::kXlsx:
      return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  }
  return "application/octet-stream";
}

const char* FileExtension(OutputFormat format) { return OutputFormatName(format); }

std::unique_ptr<ReportWriter> MakeReportWriter(OutputFormat format, blob::ObjectWriter& out,
                                               const std::string& temp_dir) {
  switch (format) {
    case OutputFormat::kCsv:
      return format_internal::MakeCsvWriter(out);
    case OutputFormat::kJson:
      return format_internal::MakeJsonWriter(out);
    case OutputFormat::kXlsx:
      return format_internal::MakeXlsxWriter(out, temp_dir);
  }
  return nullptr;
}

}  // namespace analytics::reports
