// Reading JSON request bodies with precise errors (content type, byte offset of a syntax error).
#pragma once

#include <optional>

#include <nlohmann/json.hpp>

#include "api/http_types.h"

namespace analytics::api {

// Parses the request body as JSON. On failure returns nullopt and sets `error` to a 400/415 response.
std::optional<nlohmann::json> ParseJsonBody(const HttpRequest& request, HttpResponse& error);

}  // namespace analytics::api
