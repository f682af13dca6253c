// JSON body parsing.
#include "api/handlers/json_body.h"

#include "api/errors.h"

namespace analytics::api {

std::optional<nlohmann::json> ParseJsonBody(const HttpRequest& request, HttpResponse& error) {
  std::string content_type = request.Header("content-type");
  for (auto& c : content_type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string media_type = content_type.substr(0, content_type.find(';'));
  while (!media_type.empty() && media_type.back() == ' ') media_type.pop_back();
  if (!media_type.empty() && media_type != "application/json") {
    error = ErrorResponse(415, error_code::kUnsupportedMediaType,
                          "expected Content-Type application/json, got '" + media_type + "'");
    return std::nullopt;
  }
  if (request.body.empty()) {
    error = ErrorResponse(400, error_code::kInvalidRequestBody, "the request body is empty; expected a JSON object");
    return std::nullopt;
  }
  try {
    return nlohmann::json::parse(request.body);
  } catch (const nlohmann::json::parse_error& e) {
    error = ErrorResponse(400, error_code::kInvalidRequestBody,
                          "the body is not valid JSON (at byte " + std::to_string(e.byte) + ")",
                          {{"byte_offset", e.byte}});
    return std::nullopt;
  }
}

}  // namespace analytics::api
