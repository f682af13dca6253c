// The JSON report writer: one document, written as it goes (each row on a line of its own), the layout in writer.h.
// Thread-safety: one writer per thread.
#include <exception>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "reports/formats/writer_base.h"

namespace analytics::reports::format_internal {
namespace {

using common::Status;

class JsonWriter final : public ReportWriterBase {
 public:
  explicit JsonWriter(blob::ObjectWriter& out) : out_(out) {}

 private:
  Status DoBegin(const ReportHeader& header) override {
    std::string parameters;
    try {
      parameters = header.parameters.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (const std::exception& error) {
      return Status::Internal(std::string("cannot write the report parameters: ") + error.what());
    }
    std::string& bytes = out_.bytes();
    bytes.append("{\"report\":{\"instance_id\":");
    AppendString(header.instance_id);
    bytes.append(",\"definition_id\":");
    AppendString(header.definition_id);
    bytes.append(",\"definition_name\":");
    AppendString(header.definition_name);
    bytes.append(",\"title\":");
    AppendString(header.title);
    bytes.append(",\"definition_version\":");
    AppendInteger(header.definition_version, bytes);
    bytes.append(",\"generated_at\":");
    AppendString(common::FormatRfc3339Millis(header.generated_at_ms));
    bytes.append(",\"timezone\":");
    AppendString(header.timezone);
    bytes.append("},\"parameters\":");
    bytes.append(parameters);
    bytes.append(",\"sections\":[");
    return out_.MaybeFlush();
  }

  Status DoBeginSection(const SectionHeader& section) override {
    std::string& bytes = out_.bytes();
    bytes.append(sections_++ > 0 ? ",\n{\"name\":" : "\n{\"name\":");
    AppendString(section.name);
    bytes.append(",\"title\":");
    AppendString(section.title);
    bytes.append(",\"type\":");
    AppendString(section.type);
    bytes.append(",\"columns\":[");
    for (size_t column_idx = 0; column_idx < section.columns.size(); ++column_idx) {
      const Column& column = section.columns[column_idx];
      bytes.append(column_idx > 0 ? ",{\"name\":" : "{\"name\":");
      AppendString(column.name);
      bytes.append(",\"title\":");
      AppendString(column.title);
      bytes.append(",\"type\":\"");
      bytes.append(ColumnTypeName(column.type));
      bytes.append("\"}");
    }
    bytes.append("],\"rows\":[");
    return out_.MaybeFlush();
  }

  Status DoRow(const std::vector<Value>& values) override {
    std::string& bytes = out_.bytes();
    bytes.append(section_rows() > 0 ? ",\n{" : "\n{");
    const std::vector<Column>& columns = section().columns;
    for (size_t column_idx = 0; column_idx < values.size(); ++column_idx) {
      if (column_idx > 0) bytes.push_back(',');
      AppendString(columns[column_idx].name);
      bytes.push_back(':');
      const Value& value = values[column_idx];
      if (const auto* text = std::get_if<std::string_view>(&value)) {
        AppendString(*text);
      } else if (const auto* integer = std::get_if<int64_t>(&value)) {
        AppendInteger(*integer, bytes);
      } else if (const auto* number = std::get_if<double>(&value)) {
        AppendDouble(*number, bytes);
      } else if (const auto* boolean = std::get_if<bool>(&value)) {
        bytes.append(*boolean ? "true" : "false");
      } else {
        bytes.append("null");
      }
    }
    bytes.push_back('}');
    return out_.MaybeFlush();
  }

  Status DoEndSection(uint64_t section_rows) override {
    std::string& bytes = out_.bytes();
    bytes.append(section_rows > 0 ? "\n],\"row_count\":" : "],\"row_count\":");
    bytes.append(std::to_string(section_rows));
    bytes.push_back('}');
    return out_.MaybeFlush();
  }

  Status DoFinish() override {
    out_.bytes().append(sections_ > 0 ? "\n]}\n" : "]}\n");
    return out_.Flush();
  }

  // A JSON string: UTF-8 repaired, quotes, backslashes and control characters escaped, the rest as is.
  void AppendString(std::string_view text) {
    scratch_.clear();
    AppendUtf8(text, scratch_);
    std::string& bytes = out_.bytes();
    bytes.push_back('"');
    for (char c : scratch_) {
      switch (c) {
        case '"':
          bytes.append("\\\"");
          break;
        case '\\':
          bytes.append("\\\\");
          break;
        case '\n':
          bytes.append("\\n");
          break;
        case '\r':
          bytes.append("\\r");
          break;
        case '\t':
          bytes.append("\\t");
          break;
        case '\b':
          bytes.append("\\b");
          break;
        case '\f':
          bytes.append("\\f");
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            static constexpr char kHex[] = "0123456789abcdef";
            bytes.append("\\u00");
            bytes.push_back(kHex[(c >> 4) & 0xF]);
            bytes.push_back(kHex[c & 0xF]);
          } else {
            bytes.push_back(c);
          }
      }
    }
    bytes.push_back('"');
  }

  OutputBuffer out_;
  std::string scratch_;
  int sections_ = 0;
};

}  // namespace

std::unique_ptr<ReportWriter> MakeJsonWriter(blob::ObjectWriter& out) { return std::make_unique<JsonWriter>(out); }

}  // namespace analytics::reports::format_internal
