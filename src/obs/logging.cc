// JSON log lines through spdlog.
#include "obs/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "common/time_util.h"

namespace analytics::obs {
namespace {

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kCritical: return spdlog::level::critical;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kCritical: return "critical";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

std::shared_ptr<spdlog::logger> Logger() {
  static std::once_flag once;
  static std::shared_ptr<spdlog::logger> logger;
  std::call_once(once, [] {
    logger = std::make_shared<spdlog::logger>("analytics", std::make_shared<spdlog::sinks::stdout_sink_mt>());
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::info);
    logger->flush_on(spdlog::level::trace);
  });
  return logger;
}

}  // namespace

LogLevel LogLevelFromName(std::string_view name) {
  for (LogLevel level : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError,
                         LogLevel::kCritical, LogLevel::kOff}) {
    if (LevelName(level) == name) return level;
  }
  return LogLevel::kInfo;
}

void InitLogging(LogLevel level) { Logger()->set_level(ToSpdlog(level)); }

bool LogEnabled(LogLevel level) { return Logger()->should_log(ToSpdlog(level)); }

void Log(LogLevel level, std::string_view msg, const nlohmann::json& fields) {
  auto logger = Logger();
  if (!logger->should_log(ToSpdlog(level))) return;
  nlohmann::json line = nlohmann::json::object();
  line["ts"] = common::FormatRfc3339Millis(common::NowMillis());
  line["level"] = LevelName(level);
  line["msg"] = msg;
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) line[key] = value;
  } else if (!fields.is_null()) {
    line["data"] = fields;
  }
  logger->log(ToSpdlog(level), "{}", line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace analytics::obs
