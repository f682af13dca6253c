// Internals shared by the report writers (writer.h), not part of the component's interface: the call-order state
// machine with the checks every format applies to a row, the output buffer, UTF-8 repair and number formatting.
// Thread-safety: one writer per thread; the free functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "blob/object_store.h"
#include "common/status.h"
#include "reports/formats/writer.h"
#include "reports/table.h"

namespace analytics::reports::format_internal {

// How many bytes a writer gathers before it hands them to the ObjectWriter.
inline constexpr size_t kOutputBufferBytes = 64 * 1024;

// A cell checked against its column, as the formats write it: null (also non-finite numbers), text (string, date
// and datetime columns; not yet UTF-8-repaired), integer (integer columns; integers in number columns too, to
// keep every digit), number or boolean.
using Value = std::variant<std::monostate, std::string_view, int64_t, double, bool>;

// Gathers bytes for an ObjectWriter and hands them over in pieces of about kOutputBufferBytes.
class OutputBuffer {
 public:
  explicit OutputBuffer(blob::ObjectWriter& out);
  // Append here, then call MaybeFlush.
  std::string& bytes() { return buffer_; }
  // Writes the buffer out once it holds kOutputBufferBytes or more.
  common::Status MaybeFlush();
  // Writes out whatever is buffered.
  common::Status Flush();

 private:
  blob::ObjectWriter& out_;
  std::string buffer_;
};

// Appends `text`, each byte that is not part of a well-formed UTF-8 sequence replaced by U+FFFD.
void AppendUtf8(std::string_view text, std::string& out);
// The shortest decimal that reads back as `value` (finite), e.g. "0.1", "1e+300", "-0".
void AppendDouble(double value, std::string& out);
void AppendInteger(int64_t value, std::string& out);
// Whether `text` is a calendar date "YYYY-MM-DD"; its parts when it is.
bool ParseDate(std::string_view text, int* year, int* month, int* day);
// Whether `text` is an RFC 3339 date-time ("2024-01-01T10:00:00.000Z", "...+03:00").
bool IsDateTime(std::string_view text);

// Implements the ReportWriter call order and checks; formats implement the Do* steps, which run only in order and
// with checked rows. The first error makes the writer unusable: later calls answer FailedPrecondition.
class ReportWriterBase : public ReportWriter {
 public:
  common::Status Begin(const ReportHeader& header) final;
  common::Status BeginSection(const SectionHeader& section) final;
  common::Status Row(const reports::Row& row) final;
  common::Status EndSection() final;
  common::Status Finish() final;
  uint64_t rows() const final { return rows_; }

 protected:
  virtual common::Status DoBegin(const ReportHeader& header) = 0;
  virtual common::Status DoBeginSection(const SectionHeader& section) = 0;
  // One value per column of section().
  virtual common::Status DoRow(const std::vector<Value>& values) = 0;
  virtual common::Status DoEndSection(uint64_t section_rows) = 0;
  virtual common::Status DoFinish() = 0;

  // The current section (valid between BeginSection and EndSection).
  const SectionHeader& section() const { return section_; }
  // Data rows of the current section written so far.
  uint64_t section_rows() const { return section_rows_; }

 private:
  enum class State { kNew, kReport, kSection, kFinished, kFailed };
  // Checks the state; on a mismatch fails the writer.
  common::Status Expect(State state, const char* call);
  // Makes the writer unusable when `status` is an error; returns it.
  common::Status Track(common::Status status);
  common::Status CheckRow(const reports::Row& row);

  State state_ = State::kNew;
  std::string failure_;  // the first error's text, once failed
  SectionHeader section_;
  uint64_t rows_ = 0;
  uint64_t section_rows_ = 0;
  std::vector<Value> values_;  // the checked row, reused
};

std::unique_ptr<ReportWriter> MakeCsvWriter(blob::ObjectWriter& out);
std::unique_ptr<ReportWriter> MakeJsonWriter(blob::ObjectWriter& out);
std::unique_ptr<ReportWriter> MakeXlsxWriter(blob::ObjectWriter& out, const std::string& temp_dir);

}  // namespace analytics::reports::format_internal
