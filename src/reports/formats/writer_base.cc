#include "reports/formats/writer_base.h"

#include <charconv>
#include <cmath>
#include <set>
#include <system_error>

namespace analytics::reports::format_internal {

using common::Status;

OutputBuffer::OutputBuffer(blob::ObjectWriter& out) : out_(out) { buffer_.reserve(kOutputBufferBytes + 4096); }

Status OutputBuffer::MaybeFlush() {
  if (buffer_.size() < kOutputBufferBytes) return Status::Ok();
  return Flush();
}

Status OutputBuffer::Flush() {
  if (buffer_.empty()) return Status::Ok();
  Status status = out_.Write(buffer_);
  buffer_.clear();
  return status;
}

namespace {

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// The length of the well-formed UTF-8 sequence at the start of `text`, or 0 when there is none.
size_t SequenceLength(std::string_view text) {
  const auto byte = static_cast<unsigned char>(text[0]);
  if (byte < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the bounds of the second byte
  if (byte >= 0xC2 && byte <= 0xDF) {
    length = 2;
  } else if (byte >= 0xE0 && byte <= 0xEF) {
    length = 3;
    if (byte == 0xE0) low = 0xA0;   // overlong
    if (byte == 0xED) high = 0x9F;  // surrogates
  } else if (byte >= 0xF0 && byte <= 0xF4) {
    length = 4;
    if (byte == 0xF0) low = 0x90;   // overlong
    if (byte == 0xF4) high = 0x8F;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  const auto second = static_cast<unsigned char>(text[1]);
  if (second < low || second > high) return 0;
  for (size_t idx = 2; idx < length; ++idx) {
    if (!IsContinuation(static_cast<unsigned char>(text[idx]))) return 0;
  }
  return length;
}

bool Digits(std::string_view text, size_t pos, size_t count, int* value) {
  int result = 0;
  for (size_t idx = pos; idx < pos + count; ++idx) {
    if (idx >= text.size() || text[idx] < '0' || text[idx] > '9') return false;
    result = result * 10 + (text[idx] - '0');
  }
  *value = result;
  return true;
}

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

const char* Article(ColumnType type) { return type == ColumnType::kInteger ? "an" : "a"; }

}  // namespace

void AppendUtf8(std::string_view text, std::string& out) {
  size_t run_start = 0, pos = 0;
  while (pos < text.size()) {
    const size_t length = SequenceLength(text.substr(pos));
    if (length > 0) {
      pos += length;
      continue;
    }
    out.append(text.substr(run_start, pos - run_start));
    out.append("\xEF\xBF\xBD");  // U+FFFD
    ++pos;
    run_start = pos;
  }
  out.append(text.substr(run_start));
}

void AppendDouble(double value, std::string& out) {
  char digits[40];
  // Without a format, to_chars writes the shortest form that reads back exactly.
  const auto result = std::to_chars(digits, digits + sizeof(digits), value);
  out.append(digits, result.ptr);
}

void AppendInteger(int64_t value, std::string& out) {
  char digits[24];
  const auto result = std::to_chars(digits, digits + sizeof(digits), value);
  out.append(digits, result.ptr);
}

bool ParseDate(std::string_view text, int* year, int* month, int* day) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  if (!Digits(text, 0, 4, year) || !Digits(text, 5, 2, month) || !Digits(text, 8, 2, day)) return false;
  return *month >= 1 && *month <= 12 && *day >= 1 && *day <= DaysInMonth(*year, *month);
}

bool IsDateTime(std::string_view text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || !ParseDate(text.substr(0, 10), &year, &month, &day)) return false;
  if ((text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') return false;
  if (!Digits(text, 11, 2, &hour) || !Digits(text, 14, 2, &minute) || !Digits(text, 17, 2, &second)) return false;
  if (hour > 23 || minute > 59 || second > 60) return false;
  size_t pos = 19;
  if (text[pos] == '.') {
    const size_t digits_start = ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
    if (pos == digits_start) return false;
  }
  if (pos == text.size()) return false;
  if (text[pos] == 'Z' || text[pos] == 'z') return pos + 1 == text.size();
  if (text[pos] != '+' && text[pos] != '-') return false;
  int offset_hours = 0, offset_minutes = 0;
  return text.size() == pos + 6 && text[pos + 3] == ':' && Digits(text, pos + 1, 2, &offset_hours) &&
         Digits(text, pos + 4, 2, &offset_minutes) && offset_hours <= 23 && offset_minutes <= 59;
}

Status ReportWriterBase::Track(Status status) {
  if (!status.ok() && state_ != State::kFailed) {
    state_ = State::kFailed;
    failure_ = status.ToString();
  }
  return status;
}

Status ReportWriterBase::Expect(State state, const char* call) {
  if (state_ == state) return Status::Ok();
  if (state_ == State::kFailed) {
    return Status::FailedPrecondition("the report writer failed earlier (" + failure_ + ")");
  }
  static constexpr const char* kStateNames[] = {"before Begin", "outside a section", "inside a section",
                                                "after Finish", "failed"};
  return Track(Status::FailedPrecondition(std::string("ReportWriter::") + call + " called " +
                                          kStateNames[static_cast<int>(state_)]));
}

Status ReportWriterBase::Begin(const ReportHeader& header) {
  ANALYTICS_RETURN_IF_ERROR(Expect(State::kNew, "Begin"));
  ANALYTICS_RETURN_IF_ERROR(Track(DoBegin(header)));
  state_ = State::kReport;
  return Status::Ok();
}

Status ReportWriterBase::BeginSection(const SectionHeader& section) {
  ANALYTICS_RETURN_IF_ERROR(Expect(State::kReport, "BeginSection"));
  std::set<std::string_view> names;
  for (const Column& column : section.columns) {
    if (!names.insert(column.name).second) {
      return Track(Status::InvalidArgument("section \"" + section.name + "\": column \"" + column.name +
                                           "\" appears twice"));
    }
  }
  section_ = section;
  section_rows_ = 0;
  ANALYTICS_RETURN_IF_ERROR(Track(DoBeginSection(section_)));
  state_ = State::kSection;
  return Status::Ok();
}

Status ReportWriterBase::CheckRow(const reports::Row& row) {
  const std::string where = "section \"" + section_.name + "\", row " + std::to_string(section_rows_ + 1);
  if (row.size() != section_.columns.size()) {
    return Status::InvalidArgument(where + ": " + std::to_string(row.size()) + " cells for " +
                                   std::to_string(section_.columns.size()) + " columns");
  }
  values_.clear();
  for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
    const Column& column = section_.columns[column_idx];
    const Cell& cell = row[column_idx];
    auto invalid = [&](const std::string& what) {
      return Status::InvalidArgument(where + ", column \"" + column.name + "\": " + what);
    };
    auto misfit = [&]() {
      static constexpr const char* kCellKinds[] = {"null", "text", "an integer", "a number", "a boolean"};
      return invalid(std::string(kCellKinds[cell.index()]) + " does not fit " + Article(column.type) + " " +
                     ColumnTypeName(column.type) + " column");
    };
    if (std::holds_alternative<std::monostate>(cell)) {
      values_.emplace_back(std::monostate{});
      continue;
    }
    const auto* text = std::get_if<std::string>(&cell);
    const auto* integer = std::get_if<int64_t>(&cell);
    const auto* number = std::get_if<double>(&cell);
    switch (column.type) {
      case ColumnType::kString:
        if (text == nullptr) return misfit();
        values_.emplace_back(std::string_view(*text));
        break;
      case ColumnType::kDate: {
        if (text == nullptr) return misfit();
        int year = 0, month = 0, day = 0;
        if (!ParseDate(*text, &year, &month, &day)) return invalid("\"" + *text + "\" is not a date YYYY-MM-DD");
        values_.emplace_back(std::string_view(*text));
        break;
      }
      case ColumnType::kDateTime:
        if (text == nullptr) return misfit();
        if (!IsDateTime(*text)) return invalid("\"" + *text + "\" is not an RFC 3339 date-time");
        values_.emplace_back(std::string_view(*text));
        break;
      case ColumnType::kInteger:
        if (integer != nullptr) {
          values_.emplace_back(*integer);
        } else if (number != nullptr) {
          if (!std::isfinite(*number)) {
            values_.emplace_back(std::monostate{});
          } else if (*number >= -0x1p63 && *number < 0x1p63 && std::trunc(*number) == *number) {
            values_.emplace_back(static_cast<int64_t>(*number));
          } else {
            std::string shown;
            AppendDouble(*number, shown);
            return invalid(shown + " is not an integer in the int64 range");
          }
        } else {
          return misfit();
        }
        break;
      case ColumnType::kNumber:
        if (integer != nullptr) {
          values_.emplace_back(*integer);
        } else if (number != nullptr) {
          if (std::isfinite(*number)) {
            values_.emplace_back(*number);
          } else {
            values_.emplace_back(std::monostate{});
          }
        } else {
          return misfit();
        }
        break;
      case ColumnType::kBoolean:
        if (!std::holds_alternative<bool>(cell)) return misfit();
        values_.emplace_back(std::get<bool>(cell));
        break;
    }
  }
  return Status::Ok();
}

Status ReportWriterBase::Row(const reports::Row& row) {
  ANALYTICS_RETURN_IF_ERROR(Expect(State::kSection, "Row"));
  ANALYTICS_RETURN_IF_ERROR(Track(CheckRow(row)));
  ANALYTICS_RETURN_IF_ERROR(Track(DoRow(values_)));
  ++rows_;
  ++section_rows_;
  return Status::Ok();
}

Status ReportWriterBase::EndSection() {
  ANALYTICS_RETURN_IF_ERROR(Expect(State::kSection, "EndSection"));
  ANALYTICS_RETURN_IF_ERROR(Track(DoEndSection(section_rows_)));
  state_ = State::kReport;
  return Status::Ok();
}

Status ReportWriterBase::Finish() {
  ANALYTICS_RETURN_IF_ERROR(Expect(State::kReport, "Finish"));
  ANALYTICS_RETURN_IF_ERROR(Track(DoFinish()));
  state_ = State::kFinished;
  return Status::Ok();
}

}  // namespace analytics::reports::format_internal
