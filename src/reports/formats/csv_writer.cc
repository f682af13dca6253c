// The CSV report writer: RFC 4180 records with CRLF line ends, the rules in writer.h.
// Thread-safety: one writer per thread.
#include <string>
#include <string_view>

#include "reports/formats/writer_base.h"

namespace analytics::reports::format_internal {
namespace {

using common::Status;

class CsvWriter final : public ReportWriterBase {
 public:
  explicit CsvWriter(blob::ObjectWriter& out) : out_(out) {}

 private:
  Status DoBegin(const ReportHeader&) override { return Status::Ok(); }

  Status DoBeginSection(const SectionHeader& section) override {
    std::string& bytes = out_.bytes();
    if (sections_++ > 0) bytes.append("\r\n");
    AppendText("section");
    for (const Column& column : section.columns) {
      bytes.push_back(',');
      AppendText(column.name);
    }
    bytes.append("\r\n");
    return out_.MaybeFlush();
  }

  Status DoRow(const std::vector<Value>& values) override {
    std::string& bytes = out_.bytes();
    AppendText(section().name);
    for (const Value& value : values) {
      bytes.push_back(',');
      if (const auto* text = std::get_if<std::string_view>(&value)) {
        AppendText(*text);
      } else if (const auto* integer = std::get_if<int64_t>(&value)) {
        AppendInteger(*integer, bytes);
      } else if (const auto* number = std::get_if<double>(&value)) {
        AppendDouble(*number, bytes);
      } else if (const auto* boolean = std::get_if<bool>(&value)) {
        bytes.append(*boolean ? "true" : "false");
      }  // null: an empty field
    }
    bytes.append("\r\n");
    return out_.MaybeFlush();
  }

  Status DoEndSection(uint64_t) override { return out_.MaybeFlush(); }

  Status DoFinish() override { return out_.Flush(); }

  // A text field: UTF-8 repaired, prefixed with ' when a spreadsheet would read it as a formula, quoted when it
  // holds a separator, a quote or a line break, and when empty (so that "" stays apart from null).
  void AppendText(std::string_view text) {
    field_.clear();
    if (!text.empty() && std::string_view("=+-@\t\r").find(text[0]) != std::string_view::npos) {
      field_.push_back('\'');
    }
    AppendUtf8(text, field_);
    std::string& bytes = out_.bytes();
    if (!field_.empty() && field_.find_first_of(",\"\r\n") == std::string::npos) {
      bytes.append(field_);
      return;
    }
    bytes.push_back('"');
    for (char c : field_) {
      if (c == '"') bytes.push_back('"');
      bytes.push_back(c);
    }
    bytes.push_back('"');
  }

  OutputBuffer out_;
  std::string field_;  // scratch
  int sections_ = 0;
};

}  // namespace

std::unique_ptr<ReportWriter> MakeCsvWriter(blob::ObjectWriter& out) { return std::make_unique<CsvWriter>(out); }

}  // namespace analytics::reports::format_internal
