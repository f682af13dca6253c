// Status and Result<T>: the error model of every component.
//
// A Status is OK or carries a code, a human-readable message and optionally the name of the input field
// the error is about (e.g. "aggregation" or "filters[1].op"), so the API layer can answer with a precise
// error. Exceptions never cross a component's public header; adapters turn library errors into a Status.
// Thread-safety: plain values; safe to copy between threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace analytics::common {

enum class StatusCode {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kAlreadyExists,
  kPermissionDenied,
  kUnauthenticated,
  kResourceExhausted,
  kUnavailable,
  kCorruption,
  kIOError,
  kFailedPrecondition,
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;

  static Status Ok() { return Status(); }
  static Status NotFound(std::string message) { return Status(StatusCode::kNotFound, std::move(message)); }
  static Status InvalidArgument(std::string message, std::string field = {}) {
    return Status(StatusCode::kInvalidArgument, std::move(message), std::move(field));
  }
  static Status AlreadyExists(std::string message) {
    return Status(StatusCode::kAlreadyExists, std::move(message));
  }
  static Status PermissionDenied(std::string message) {
    return Status(StatusCode::kPermissionDenied, std::move(message));
  }
  static Status Unauthenticated(std::string message) {
    return Status(StatusCode::kUnauthenticated, std::move(message));
  }
  static Status ResourceExhausted(std::string message) {
    return Status(StatusCode::kResourceExhausted, std::move(message));
  }
  static Status Unavailable(std::string message) { return Status(StatusCode::kUnavailable, std::move(message)); }
  static Status Corruption(std::string message) { return Status(StatusCode::kCorruption, std::move(message)); }
  static Status IOError(std::string message) { return Status(StatusCode::kIOError, std::move(message)); }
  static Status FailedPrecondition(std::string message, std::string field = {}) {
    return Status(StatusCode::kFailedPrecondition, std::move(message), std::move(field));
  }
  static Status Internal(std::string message) { return Status(StatusCode::kInternal, std::move(message)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  // Lets generic code (test assertions, macros) treat Status and Result<T> alike.
  const Status& status() const { return *this; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The input field the error is about; empty when it is not about one field.
  const std::string& field() const { return field_; }

  // Returns a copy whose field is `prefix` + "." + field (or `prefix` when there was none), for errors
  // reported by nested validators.
  Status WithFieldPrefix(std::string_view prefix) const;

  // "InvalidArgument: message (field: x)".
  std::string ToString() const;

 private:
  Status(StatusCode code, std::string message, std::string field = {})
      : code_(code), message_(std::move(message)), field_(std::move(field)) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string field_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace analytics::common

// Propagates a non-OK Status from an expression returning Status.
#define ANALYTICS_RETURN_IF_ERROR(expr)                 \
  do {                                                  \
    ::analytics::common::Status status_macro_ = (expr); \
    if (!status_macro_.ok()) return status_macro_;      \
  } while (false)

#define ANALYTICS_CONCAT_INNER(a, b) a##b
#define ANALYTICS_CONCAT(a, b) ANALYTICS_CONCAT_INNER(a, b)
// Evaluates a Result<T> expression; returns its Status on error, else moves the value into `lhs`.
#define ANALYTICS_ASSIGN_OR_RETURN(lhs, expr) \
  ANALYTICS_ASSIGN_OR_RETURN_IMPL(ANALYTICS_CONCAT(result_macro_, __LINE__), lhs, expr)
#define ANALYTICS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()
