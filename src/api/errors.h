// The one error envelope of the API and the one place where Status codes become HTTP statuses and error codes:
//   {"error": {"code": "INVALID_QUERY_PARAMETERS", "message": "...", "details": {...}, "request_id": "..."}}
// Codes: the spec's (section 8.2) plus ours, listed in docs/errors.md and api/openapi.yaml.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "api/http_types.h"
#include "common/status.h"

namespace analytics::api {

namespace error_code {
// Spec 8.2.
inline constexpr std::string_view kMetricDefinitionNotFound = "METRIC_DEFINITION_NOT_FOUND";
inline constexpr std::string_view kReportDefinitionNotFound = "REPORT_DEFINITION_NOT_FOUND";
inline constexpr std::string_view kReportGenerationFailed = "REPORT_GENERATION_FAILED";
inline constexpr std::string_view kMlModelNotFound = "ML_MODEL_NOT_FOUND";
inline constexpr std::string_view kInvalidQueryParameters = "INVALID_QUERY_PARAMETERS";
inline constexpr std::string_view kDataNotYetAvailable = "DATA_NOT_YET_AVAILABLE";
inline constexpr std::string_view kAccessDenied = "ACCESS_DENIED_TO_RESOURCE";
// Ours.
inline constexpr std::string_view kUnauthenticated = "UNAUTHENTICATED";
inline constexpr std::string_view kInvalidRequestBody = "INVALID_REQUEST_BODY";
inline constexpr std::string_view kMetricDefinitionExists = "METRIC_DEFINITION_ALREADY_EXISTS";
inline constexpr std::string_view kAlreadyExists = "ALREADY_EXISTS";
inline constexpr std::string_view kResourceExhausted = "RESOURCE_EXHAUSTED";
inline constexpr std::string_view kVersionConflict = "VERSION_CONFLICT";
inline constexpr std::string_view kResourceInUse = "RESOURCE_IN_USE";
inline constexpr std::string_view kNotFound = "NOT_FOUND";
inline constexpr std::string_view kSegmentNotFound = "SEGMENT_NOT_FOUND";
inline constexpr std::string_view kReportInstanceNotFound = "REPORT_INSTANCE_NOT_FOUND";
inline constexpr std::string_view kReportInstanceFinished = "REPORT_INSTANCE_FINISHED";
inline constexpr std::string_view kReportExpired = "REPORT_EXPIRED";
inline constexpr std::string_view kMethodNotAllowed = "METHOD_NOT_ALLOWED";
inline constexpr std::string_view kPayloadTooLarge = "PAYLOAD_TOO_LARGE";
inline constexpr std::string_view kHeadersTooLarge = "HEADERS_TOO_LARGE";
inline constexpr std::string_view kUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE";
inline constexpr std::string_view kBadRequest = "BAD_REQUEST";
inline constexpr std::string_view kServiceUnavailable = "SERVICE_UNAVAILABLE";
inline constexpr std::string_view kInternalError = "INTERNAL_ERROR";
}  // namespace error_code

// An error response in the envelope. `details` must be an object (may be empty).
HttpResponse ErrorResponse(int http_status, std::string_view code, std::string_view message,
                           const nlohmann::json& details = nlohmann::json::object(),
                           std::string_view request_id = {});

// The resource-specific codes a handler wants for NotFound, AlreadyExists and InvalidArgument.
struct ErrorCodes {
  std::string_view not_found = error_code::kNotFound;
  std::string_view already_exists = error_code::kAlreadyExists;
  std::string_view invalid = error_code::kInvalidRequestBody;  // or kInvalidQueryParameters
  std::string_view failed_precondition = error_code::kVersionConflict;  // 409
};

// Maps a Status to an error response with the given codes. A Status field becomes details.field (or
// details.parameter for query errors) and details.reason.
HttpResponse StatusResponse(const common::Status& status, const ErrorCodes& codes = {});

// Sets error.request_id in an error response produced before the id was known (no-op for other bodies).
void StampRequestId(HttpResponse& response, std::string_view request_id);

}  // namespace analytics::api
