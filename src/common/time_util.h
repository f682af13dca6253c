// Time helpers shared by every component: RFC 3339 formatting/parsing and durations like "1h".
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace analytics::common {

using SysMillis = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;

// Milliseconds since the Unix epoch, now.
int64_t NowMillis();

// "2024-01-01T00:00:00.000Z" (UTC, always with milliseconds).
std::string FormatRfc3339Millis(int64_t unix_millis);

// Parses RFC 3339 date-times ("2024-01-01T10:00:00Z", "...+03:00", fractional seconds up to nanoseconds,
// lower-case 't'/'z' accepted). Returns milliseconds since the epoch (sub-millisecond digits truncated).
Result<int64_t> ParseRfc3339Millis(std::string_view text);

// Parses durations "90s", "15m", "1h", "7d", or a bare number of seconds. Returns seconds (> 0).
Result<int64_t> ParseDurationSeconds(std::string_view text);

}  // namespace analytics::common
