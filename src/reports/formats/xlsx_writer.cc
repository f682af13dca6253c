// The XLSX report writer: libxlsxwriter in constant-memory mode (each sheet's rows go to an unlinked temporary
// file as they come), the workbook assembled into a temporary file in temp_dir at Finish and copied into the
// ObjectWriter; the rules in writer.h.
// Thread-safety: one writer per thread.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <xlsxwriter.h>

#include "common/time_util.h"
#include "reports/formats/writer_base.h"

namespace analytics::reports::format_internal {
namespace {

using common::Status;

// Excel's limits: characters in a cell, rows and columns in a sheet, characters in a sheet name.
constexpr size_t kMaxCellChars = 32767;
constexpr uint64_t kMaxRows = LXW_ROW_MAX;
constexpr size_t kMaxColumns = LXW_COL_MAX;
constexpr size_t kMaxSheetNameChars = LXW_SHEETNAME_MAX;
// Integers beyond this magnitude do not fit a double exactly: they are written as text.
constexpr int64_t kMaxExactInteger = int64_t{1} << 53;
// The largest double whose 16-significant-digit form (what libxlsxwriter writes) does not overflow.
constexpr double kMaxWritableNumber = 1.797693134862315e308;

// The number of bytes of the UTF-8 sequence starting with `lead` (the text is already repaired).
size_t SequenceBytes(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// `text` as an OOXML string value: UTF-8 repaired; characters XML cannot hold (and CR, which XML readers turn into
// LF) escaped as _xHHHH_, and a literal "_xHHHH_" protected as "_x005F_xHHHH_", which is how Excel reads both back;
// cut at Excel's cell limit.
void AppendCellText(std::string_view text, std::string& repaired, std::string& out) {
  repaired.clear();
  AppendUtf8(text, repaired);
  out.clear();
  size_t chars = 0;
  for (size_t pos = 0; pos < repaired.size();) {
    const auto lead = static_cast<unsigned char>(repaired[pos]);
    const size_t bytes = SequenceBytes(lead);
    char escaped[8] = {};
    size_t units = 1;  // characters this one takes in the cell
    if ((lead < 0x20 && lead != '\t' && lead != '\n') ||
        (bytes == 3 && repaired.compare(pos, 2, "\xEF\xBF") == 0 &&
         (static_cast<unsigned char>(repaired[pos + 2]) & 0xFE) == 0xBE)) {  // U+FFFE, U+FFFF
      const unsigned code = bytes == 1 ? lead : 0xFFFE + (static_cast<unsigned char>(repaired[pos + 2]) & 1);
      std::snprintf(escaped, sizeof(escaped), "_x%04X_", code);
      units = 7;
    } else if (lead == '_' && pos + 7 <= repaired.size() && (repaired[pos + 1] == 'x' || repaired[pos + 1] == 'X') &&
               IsHex(repaired[pos + 2]) && IsHex(repaired[pos + 3]) && IsHex(repaired[pos + 4]) &&
               IsHex(repaired[pos + 5]) && repaired[pos + 6] == '_') {
      std::memcpy(escaped, "_x005F_", 7);
      units = 7;
    }
    if (chars + units > kMaxCellChars) break;
    chars += units;
    if (units == 7) {
      out.append(escaped, 7);  // for a literal "_xHHHH_", its "xHHHH_" follows as plain text
    } else {
      out.append(repaired, pos, bytes);
    }
    pos += bytes;
  }
}

std::string AsciiLower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  return lower;
}

// The first `max_chars` characters of UTF-8 `text`.
std::string_view CutChars(std::string_view text, size_t max_chars) {
  size_t pos = 0;
  for (size_t chars = 0; pos < text.size() && chars < max_chars; ++chars) {
    pos += SequenceBytes(static_cast<unsigned char>(text[pos]));
  }
  return text.substr(0, std::min(pos, text.size()));
}

class XlsxWriter final : public ReportWriterBase {
 public:
  XlsxWriter(blob::ObjectWriter& out, std::string temp_dir) : out_(out), temp_dir_(std::move(temp_dir)) {}
  ~XlsxWriter() override { Discard(); }
  XlsxWriter(const XlsxWriter&) = delete;
  XlsxWriter& operator=(const XlsxWriter&) = delete;

 private:
  Status DoBegin(const ReportHeader& header) override {
    std::string path = temp_dir_ + "/report-XXXXXX.xlsx";
    const int fd = mkstemps(path.data(), 5);
    if (fd < 0) {
      return Status::IOError("cannot create a temporary file in \"" + temp_dir_ + "\": " + std::strerror(errno));
    }
    ::close(fd);
    path_ = path;
    lxw_workbook_options options = {};
    options.constant_memory = LXW_TRUE;
    options.tmpdir = temp_dir_.data();
    options.use_zip64 = LXW_FALSE;
    workbook_ = workbook_new_opt(path_.c_str(), &options);
    if (workbook_ == nullptr) return Status::IOError("cannot start the XLSX workbook in \"" + temp_dir_ + "\"");
    bold_ = workbook_add_format(workbook_);
    date_ = workbook_add_format(workbook_);
    blank_ = workbook_add_format(workbook_);
    if (bold_ == nullptr || date_ == nullptr || blank_ == nullptr) {
      return Status::Internal("cannot add XLSX cell formats");
    }
    format_set_bold(bold_);
    format_set_num_format(date_, "yyyy-mm-dd");

    report_sheet_ = AddSheet("Report");
    if (report_sheet_ == nullptr) return Status::Internal("cannot add the XLSX sheet \"Report\"");
    worksheet_set_column(report_sheet_, 0, 0, 24, nullptr);
    worksheet_set_column(report_sheet_, 1, 4, 36, nullptr);
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, 0, 0, "report", bold_));
    const std::pair<const char*, std::string> fields[] = {
        {"instance_id", header.instance_id},
        {"definition_id", header.definition_id},
        {"definition_name", header.definition_name},
        {"title", header.title},
        {"definition_version", {}},
        {"generated_at", common::FormatRfc3339Millis(header.generated_at_ms)},
        {"timezone", header.timezone},
    };
    for (const auto& [name, value] : fields) {
      ++report_row_;
      ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 0, name, nullptr));
      if (std::string_view(name) == "definition_version") {
        ANALYTICS_RETURN_IF_ERROR(Integer(report_sheet_, report_row_, 1, header.definition_version));
      } else {
        ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 1, value, nullptr));
      }
    }
    report_row_ += 2;
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 0, "parameters", bold_));
    if (header.parameters.is_object()) {
      for (const auto& [name, value] : header.parameters.items()) {
        ++report_row_;
        ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 0, name, nullptr));
        ANALYTICS_RETURN_IF_ERROR(Parameter(report_row_, value));
      }
    } else if (!header.parameters.is_null()) {
      ++report_row_;
      ANALYTICS_RETURN_IF_ERROR(Parameter(report_row_, header.parameters));
    }
    report_row_ += 2;
    static constexpr const char* kSectionColumns[] = {"name", "title", "type", "row_count", "sheet"};
    for (lxw_col_t column_idx = 0; column_idx < std::size(kSectionColumns); ++column_idx) {
      ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, column_idx, kSectionColumns[column_idx], bold_));
    }
    return Status::Ok();
  }

  Status DoBeginSection(const SectionHeader& section) override {
    if (section.columns.size() > kMaxColumns) {
      return Status::ResourceExhausted("section \"" + section.name + "\" has " +
                                       std::to_string(section.columns.size()) +
                                       " columns, more than an XLSX sheet holds (16384)");
    }
    sheet_name_ = SheetName(section.name);
    sheet_ = AddSheet(sheet_name_);
    if (sheet_ == nullptr) return Status::Internal("cannot add the XLSX sheet \"" + sheet_name_ + "\"");
    for (size_t column_idx = 0; column_idx < section.columns.size(); ++column_idx) {
      const Column& column = section.columns[column_idx];
      const auto col = static_cast<lxw_col_t>(column_idx);
      double width = static_cast<double>(std::min<size_t>(std::max<size_t>(column.title.size() + 2, 10), 60));
      if (column.type == ColumnType::kDate) width = std::max(width, 12.0);
      if (column.type == ColumnType::kDateTime) width = std::max(width, 26.0);
      worksheet_set_column(sheet_, col, col, width, nullptr);
      ANALYTICS_RETURN_IF_ERROR(Text(sheet_, 0, col, column.title, bold_));
    }
    worksheet_freeze_panes(sheet_, 1, 0);
    return Status::Ok();
  }

  Status DoRow(const std::vector<Value>& values) override {
    const uint64_t row_number = section_rows() + 1;  // after the header row
    if (row_number >= kMaxRows) {
      return Status::ResourceExhausted("section \"" + section().name + "\" has more than " +
                                       std::to_string(kMaxRows - 1) +
                                       " rows, the most an XLSX sheet holds; use csv or json");
    }
    const auto row = static_cast<lxw_row_t>(row_number);
    const std::vector<Column>& columns = section().columns;
    bool any_cell = false;
    for (size_t column_idx = 0; column_idx < values.size(); ++column_idx) {
      const auto col = static_cast<lxw_col_t>(column_idx);
      const Value& value = values[column_idx];
      any_cell = any_cell || !std::holds_alternative<std::monostate>(value);
      if (const auto* text = std::get_if<std::string_view>(&value)) {
        int year = 0, month = 0, day = 0;
        if (columns[column_idx].type == ColumnType::kDate && ParseDate(*text, &year, &month, &day) &&
            year >= 1900) {
          lxw_datetime date = {year, month, day, 0, 0, 0.0};
          ANALYTICS_RETURN_IF_ERROR(Check(worksheet_write_datetime(sheet_, row, col, &date, date_)));
        } else {
          ANALYTICS_RETURN_IF_ERROR(Text(sheet_, row, col, *text, nullptr));
        }
      } else if (const auto* integer = std::get_if<int64_t>(&value)) {
        ANALYTICS_RETURN_IF_ERROR(Integer(sheet_, row, col, *integer));
      } else if (const auto* number = std::get_if<double>(&value)) {
        ANALYTICS_RETURN_IF_ERROR(Number(sheet_, row, col, *number));
      } else if (const auto* boolean = std::get_if<bool>(&value)) {
        ANALYTICS_RETURN_IF_ERROR(Check(worksheet_write_boolean(sheet_, row, col, *boolean ? 1 : 0, nullptr)));
      }  // null: no cell
    }
    if (!any_cell && !values.empty()) {
      // An empty cell keeps a row of nulls in the sheet (a trailing one would be lost otherwise).
      ANALYTICS_RETURN_IF_ERROR(Check(worksheet_write_blank(sheet_, row, 0, blank_)));
    }
    return Status::Ok();
  }

  Status DoEndSection(uint64_t section_rows) override {
    const SectionHeader& section = this->section();
    ++report_row_;
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 0, section.name, nullptr));
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 1, section.title, nullptr));
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 2, section.type, nullptr));
    ANALYTICS_RETURN_IF_ERROR(Integer(report_sheet_, report_row_, 3, static_cast<int64_t>(section_rows)));
    ANALYTICS_RETURN_IF_ERROR(Text(report_sheet_, report_row_, 4, sheet_name_, nullptr));
    sheet_ = nullptr;
    return Status::Ok();
  }

  Status DoFinish() override {
    const lxw_error closed = workbook_close(workbook_);  // frees the workbook, also on errors
    workbook_ = nullptr;
    if (closed != LXW_NO_ERROR) {
      return Status::IOError(std::string("cannot write the XLSX file: ") + lxw_strerror(closed));
    }
    std::FILE* file = std::fopen(path_.c_str(), "rb");
    if (file == nullptr) return Status::IOError("cannot read the XLSX file back: " + std::string(std::strerror(errno)));
    std::vector<char> chunk(kOutputBufferBytes);
    Status status;
    while (status.ok()) {
      const size_t read = std::fread(chunk.data(), 1, chunk.size(), file);
      if (read > 0) status = out_.Write(std::string_view(chunk.data(), read));
      if (read < chunk.size()) {
        if (std::ferror(file)) status = Status::IOError("cannot read the XLSX file back");
        break;
      }
    }
    std::fclose(file);
    Discard();
    return status;
  }

  // Frees the workbook (when not closed) and removes the temporary file.
  void Discard() {
    if (workbook_ != nullptr) {
      lxw_workbook_free(workbook_);
      workbook_ = nullptr;
    }
    if (!path_.empty()) {
      ::unlink(path_.c_str());
      path_.clear();
    }
  }

  lxw_worksheet* AddSheet(const std::string& name) {
    used_sheet_names_.insert(AsciiLower(name));
    return workbook_add_worksheet(workbook_, name.c_str());
  }

  // A sheet name Excel accepts for section `name`: []:*?/\ and control characters become _, no ' at either end,
  // at most 31 characters, unique ignoring case (then _2, _3, ... is appended), never Excel's reserved "History".
  std::string SheetName(std::string_view name) {
    std::string repaired, clean;
    AppendUtf8(name, repaired);
    for (char c : repaired) {
      const bool forbidden = std::string_view("[]:*?/\\").find(c) != std::string_view::npos ||
                             static_cast<unsigned char>(c) < 0x20;
      clean.push_back(forbidden ? '_' : c);
    }
    if (clean.empty()) clean = "section";
    if (clean.front() == '\'') clean.front() = '_';
    clean = std::string(CutChars(clean, kMaxSheetNameChars));
    if (clean.back() == '\'') clean.back() = '_';
    std::string candidate = clean;
    for (int suffix = 2; used_sheet_names_.count(AsciiLower(candidate)) > 0 || AsciiLower(candidate) == "history";
         ++suffix) {
      const std::string tail = "_" + std::to_string(suffix);
      candidate = std::string(CutChars(clean, kMaxSheetNameChars - tail.size())) + tail;
    }
    return candidate;
  }

  Status Check(lxw_error error) {
    if (error == LXW_NO_ERROR) return Status::Ok();
    return Status::Internal(std::string("cannot write an XLSX cell: ") + lxw_strerror(error));
  }

  // Empty text is no cell: an XLSX string cell cannot be empty.
  Status Text(lxw_worksheet* sheet, lxw_row_t row, lxw_col_t col, std::string_view text, lxw_format* format) {
    AppendCellText(text, repaired_, cell_);
    if (cell_.empty()) return Status::Ok();
    return Check(worksheet_write_string(sheet, row, col, cell_.c_str(), format));
  }

  Status Integer(lxw_worksheet* sheet, lxw_row_t row, lxw_col_t col, int64_t value) {
    if (value < -kMaxExactInteger || value > kMaxExactInteger) {
      return Text(sheet, row, col, std::to_string(value), nullptr);
    }
    return Check(worksheet_write_number(sheet, row, col, static_cast<double>(value), nullptr));
  }

  Status Number(lxw_worksheet* sheet, lxw_row_t row, lxw_col_t col, double value) {
    return Check(worksheet_write_number(sheet, row, col, std::clamp(value, -kMaxWritableNumber, kMaxWritableNumber),
                                        nullptr));
  }

  // A parameter value in column B of the Report sheet: scalars typed, arrays and objects as JSON text.
  Status Parameter(lxw_row_t row, const nlohmann::json& value) {
    if (value.is_string()) return Text(report_sheet_, row, 1, value.get_ref<const std::string&>(), nullptr);
    if (value.is_boolean()) return Check(worksheet_write_boolean(report_sheet_, row, 1, value.get<bool>(), nullptr));
    if (value.is_number_integer() && !value.is_number_unsigned()) {
      return Integer(report_sheet_, row, 1, value.get<int64_t>());
    }
    if (value.is_number_unsigned()) {
      const uint64_t unsigned_value = value.get<uint64_t>();
      if (unsigned_value <= static_cast<uint64_t>(kMaxExactInteger)) {
        return Integer(report_sheet_, row, 1, static_cast<int64_t>(unsigned_value));
      }
      return Text(report_sheet_, row, 1, std::to_string(unsigned_value), nullptr);
    }
    if (value.is_number_float()) {
      const double number = value.get<double>();
      return std::isfinite(number) ? Number(report_sheet_, row, 1, number) : Status::Ok();
    }
    if (value.is_null()) return Status::Ok();
    return Text(report_sheet_, row, 1, value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                nullptr);
  }

  blob::ObjectWriter& out_;
  std::string temp_dir_;  // libxlsxwriter keeps a pointer to it (as char*)
  std::string path_;            // the workbook's temporary file, while it exists
  lxw_workbook* workbook_ = nullptr;
  lxw_format* bold_ = nullptr;
  lxw_format* date_ = nullptr;
  lxw_format* blank_ = nullptr;  // no properties: lets a cell without a value exist
  lxw_worksheet* report_sheet_ = nullptr;
  lxw_row_t report_row_ = 0;  // the Report sheet's last written row
  lxw_worksheet* sheet_ = nullptr;
  std::string sheet_name_;
  std::set<std::string> used_sheet_names_;  // lower case
  std::string repaired_, cell_;             // scratch
};

}  // namespace

std::unique_ptr<ReportWriter> MakeXlsxWriter(blob::ObjectWriter& out, const std::string& temp_dir) {
  return std::make_unique<XlsxWriter>(out, temp_dir);
}

}  // namespace analytics::reports::format_internal
