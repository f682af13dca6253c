// Query parameters shared by the list endpoints.
#pragma once

#include <cstdint>

#include "api/http_types.h"
#include "common/status.h"

namespace analytics::api {

// The `limit` query parameter: `fallback` when absent, else an integer in 1..max (InvalidArgument naming "limit").
common::Result<int64_t> ParseLimit(const HttpRequest& request, int64_t fallback, int64_t max);

}  // namespace analytics::api
