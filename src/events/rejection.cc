// Rejection code names; see rejection.h.
#include "events/rejection.h"

namespace analytics::events {
namespace {

constexpr std::pair<RejectionCode, std::string_view> kNames[] = {
    {RejectionCode::kMalformedEvent, "MALFORMED_EVENT"},
    {RejectionCode::kEventTooLarge, "EVENT_TOO_LARGE"},
    {RejectionCode::kMissingAttribute, "MISSING_ATTRIBUTE"},
    {RejectionCode::kInvalidAttribute, "INVALID_ATTRIBUTE"},
    {RejectionCode::kMissingField, "MISSING_FIELD"},
    {RejectionCode::kInvalidField, "INVALID_FIELD"},
    {RejectionCode::kUnknownEventType, "UNKNOWN_EVENT_TYPE"},
    {RejectionCode::kEventInFuture, "EVENT_IN_FUTURE"},
};

}  // namespace

std::string_view RejectionCodeName(RejectionCode code) {
  for (const auto& [value, name] : kNames) {
    if (value == code) return name;
  }
  return "UNKNOWN";
}

std::optional<RejectionCode> RejectionCodeFromName(std::string_view name) {
  for (const auto& [value, code_name] : kNames) {
    if (code_name == name) return value;
  }
  return std::nullopt;
}

}  // namespace analytics::events
