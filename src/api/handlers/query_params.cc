#include "api/handlers/query_params.h"

#include <charconv>
#include <string>

namespace analytics::api {

common::Result<int64_t> ParseLimit(const HttpRequest& request, int64_t fallback, int64_t max) {
  auto text = request.QueryParam("limit");
  if (!text) return fallback;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size() || value < 1 || value > max) {
    return common::Status::InvalidArgument("must be an integer from 1 to " + std::to_string(max), "limit");
  }
  return value;
}

}  // namespace analytics::api
