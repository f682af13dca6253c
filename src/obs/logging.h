// Structured JSON logging: one JSON object per line on stdout, e.g.
//   {"ts":"2024-01-01T00:00:00.000Z","level":"info","msg":"request","method":"GET",...}
// Built on spdlog (the sink serializes writes). Thread-safety: all functions are thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace analytics::obs {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Level names as in config (trace, debug, info, warn, error, critical, off); unknown names mean info.
LogLevel LogLevelFromName(std::string_view name);

// Sets up the process-wide JSON logger. Safe to call more than once (the last level wins).
void InitLogging(LogLevel level);

bool LogEnabled(LogLevel level);

// Writes one line with `msg` and the members of `fields` (an object; other values are put under "data").
void Log(LogLevel level, std::string_view msg, const nlohmann::json& fields = nlohmann::json::object());

inline void LogInfo(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object()) {
  Log(LogLevel::kInfo, msg, fields);
}
inline void LogWarn(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object()) {
  Log(LogLevel::kWarn, msg, fields);
}
inline void LogError(std::string_view msg, const nlohmann::json& fields = nlohmann::json::object()) {
  Log(LogLevel::kError, msg, fields);
}

}  // namespace analytics::obs
