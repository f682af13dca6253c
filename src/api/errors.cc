// Error envelope and Status mapping.
#include "api/errors.h"

namespace analytics::api {

using common::StatusCode;

HttpResponse ErrorResponse(int http_status, std::string_view code, std::string_view message,
                           const nlohmann::json& details, std::string_view request_id) {
  nlohmann::json error = {{"code", code},
                          {"message", message},
                          {"details", details.is_object() ? details : nlohmann::json::object()},
                          {"request_id", request_id}};
  return HttpResponse::Json(http_status, {{"error", std::move(error)}});
}

HttpResponse StatusResponse(const common::Status& status, const ErrorCodes& codes) {
  const std::string_view not_found_code = codes.not_found;
  const std::string_view invalid_code = codes.invalid;
  nlohmann::json details = nlohmann::json::object();
  if (!status.field().empty()) {
    details[invalid_code == error_code::kInvalidQueryParameters ? "parameter" : "field"] = status.field();
  }
  switch (status.code()) {
    case StatusCode::kOk:
      return ErrorResponse(500, error_code::kInternalError, "an OK status was reported as an error");
    case StatusCode::kNotFound:
      return ErrorResponse(404, not_found_code, status.message(), details);
    case StatusCode::kInvalidArgument:
      if (!status.field().empty()) details["reason"] = status.message();
      return ErrorResponse(400, invalid_code,
                           status.field().empty() ? status.message() : status.field() + ": " + status.message(),
                           details);
    case StatusCode::kAlreadyExists:
      return ErrorResponse(409, codes.already_exists, status.message(), details);
    case StatusCode::kFailedPrecondition:
      return ErrorResponse(409, codes.failed_precondition, status.message(), details);
    case StatusCode::kPermissionDenied:
      return ErrorResponse(403, error_code::kAccessDenied, status.message(), details);
    case StatusCode::kUnauthenticated:
      return ErrorResponse(401, error_code::kUnauthenticated, status.message(), details);
    case StatusCode::kResourceExhausted:
      return ErrorResponse(429, error_code::kResourceExhausted, status.message(), details);
    case StatusCode::kUnavailable:
      return ErrorResponse(503, error_code::kServiceUnavailable, status.message(), details);
    case StatusCode::kCorruption:
    case StatusCode::kIOError:
    case StatusCode::kInternal:
      return ErrorResponse(500, error_code::kInternalError, status.message(), details);
  }
  return ErrorResponse(500, error_code::kInternalError, status.message(), details);
}

void StampRequestId(HttpResponse& response, std::string_view request_id) {
  if (response.content_type != "application/json" || response.status < 400) return;
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("error") || !body["error"].is_object()) return;
  body["error"]["request_id"] = request_id;
  response.body = body.dump();
}

}  // namespace analytics::api
