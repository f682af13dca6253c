#include "api/handlers/etag.h"

#include <charconv>

#include "api/errors.h"

namespace analytics::api {

std::string VersionTag(int64_t version) { return "\"" + std::to_string(version) + "\""; }

HttpResponse VersionedDocument(int status, const nlohmann::json& doc) {
  HttpResponse response = HttpResponse::Json(status, doc);
  if (doc.contains("version") && doc["version"].is_number_integer()) {
    response.headers.emplace_back("ETag", VersionTag(doc["version"].get<int64_t>()));
  }
  return response;
}

bool IfMatchVersion(const HttpRequest& request, std::optional<int64_t>& version, HttpResponse& error) {
  version.reset();
  std::string if_match = request.Header("if-match");
  if (if_match.empty() || if_match == "*") return true;
  if (if_match.size() >= 2 && if_match.front() == '"' && if_match.back() == '"') {
    if_match = if_match.substr(1, if_match.size() - 2);
  }
  int64_t parsed = 0;
  auto [ptr, ec] = std::from_chars(if_match.data(), if_match.data() + if_match.size(), parsed);
  if (ec != std::errc() || ptr != if_match.data() + if_match.size()) {
    error = ErrorResponse(400, error_code::kBadRequest, "If-Match must be a version ETag such as \"3\"");
    return false;
  }
  version = parsed;
  return true;
}

}  // namespace analytics::api
