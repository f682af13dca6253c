// Status helpers.
#include "common/status.h"

namespace analytics::common {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kPermissionDenied: return "PermissionDenied";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIOError: return "IOError";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

Status Status::WithFieldPrefix(std::string_view prefix) const {
  if (ok()) return *this;
  Status copy = *this;
  if (copy.field_.empty()) {
    copy.field_ = std::string(prefix);
  } else if (copy.field_.front() == '[') {
    copy.field_ = std::string(prefix) + copy.field_;
  } else {
    copy.field_ = std::string(prefix) + "." + copy.field_;
  }
  return copy;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  if (!field_.empty()) {
    out += " (field: ";
    out += field_;
    out += ")";
  }
  return out;
}

}  // namespace analytics::common
