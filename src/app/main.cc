// analytics-service: command-line entry point.
//   serve  [--config PATH]                 run the service
//   token  --role ROLE [--role ROLE]... [--sub ID] [--game GAME_ID]... [--ttl 1h] [--config PATH]
//   --help, --version
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/application.h"
#include "auth/jwt_verifier.h"
#include "common/time_util.h"
#include "config/config.h"
#include "gen/generator.h"
#include "obs/logging.h"

// jemalloc's options (src/app/CMakeLists.txt links it; without it the symbol is unused): large allocations
// (over 8 MB: memtable batches' growth, segment blocks, a query's session lists) are kept for reuse like the
// rest instead of going to an arena that returns them to the kernel at once, whose fresh pages then cost
// page faults on every flush and query (intake ~6% of its CPU). $MALLOC_CONF still overrides.
extern "C" {
const char* malloc_conf = "oversize_threshold:0";
}

namespace {

using analytics::app::kVersion;

constexpr char kUsage[] = R"(analytics-service: event analytics for the game store platform

Usage:
  analytics-service serve [--config PATH]
      Run the HTTP API. Configuration: the built-in defaults (configs/config.yaml) overlaid with PATH
      (or $ANALYTICS_CONFIG), with ${VAR:"default"} environment expansion.
  analytics-service token --role ROLE [--role ROLE]... [--sub ID] [--game GAME_ID]... [--ttl DURATION]
                          [--config PATH]
      Print an HS256 JWT signed with the configured secret (auth.jwt_secret, or <data_dir>/jwt-secret).
      ROLE: platform_admin, developer, marketing_manager, service. DURATION: 90s, 15m, 1h (default), 7d.
  analytics-service generate --users N --days D --seed S [--start YYYY-MM-DD] [--out FILE]
      Write a realistic, deterministic platform event stream as NDJSON CloudEvents (docs/generator.md).
  analytics-service --help | --version

Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
)";

int UsageError(const std::string& message) {
  std::cerr << "analytics-service: " << message << "\nRun 'analytics-service --help' for usage.\n";
  return 2;
}

int ConfigError(const analytics::common::Status& status) {
  std::cerr << "analytics-service: configuration error";
  if (!status.field().empty()) std::cerr << " in " << status.field();
  std::cerr << ": " << status.message() << "\n";
  return 2;
}

std::optional<std::string> ConfigPath(const std::optional<std::string>& flag) {
  if (flag) return flag;
  if (const char* env = std::getenv("ANALYTICS_CONFIG"); env != nullptr && *env != '\0') return std::string(env);
  return std::nullopt;
}

int Serve(const std::optional<std::string>& config_flag) {
  // Block the stop signals in every thread; this thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto config = analytics::config::LoadConfig(ConfigPath(config_flag), analytics::config::ProcessEnv());
  if (!config.ok()) return ConfigError(config.status());
  analytics::obs::InitLogging(analytics::obs::LogLevelFromName(config->logging.level));

  analytics::app::Application application(std::move(config).value());
  analytics::common::Status status = application.Start();
  if (!status.ok()) {
    if (status.code() == analytics::common::StatusCode::kInvalidArgument) return ConfigError(status);
    analytics::obs::LogError("start-up failed", {{"error", status.ToString()}});
    std::cerr << "analytics-service: start-up failed: " << status.ToString() << "\n";
    return 1;
  }
  int received = 0;
  sigwait(&signals, &received);
  analytics::obs::LogInfo("signal received", {{"signal", received == SIGTERM ? "SIGTERM" : "SIGINT"}});
  application.Stop();
  return 0;
}

int Token(const std::vector<std::string>& args) {
  analytics::auth::TokenRequest request;
  request.subject = "local-user";
  std::optional<std::string> config_flag;
  for (size_t arg_idx = 0; arg_idx < args.size(); ++arg_idx) {
    const std::string& arg = args[arg_idx];
    auto value = [&]() -> std::optional<std::string> {
      if (arg_idx + 1 >= args.size()) return std::nullopt;
      return args[++arg_idx];
    };
    std::optional<std::string> v;
    if (arg == "--role") {
      if (!(v = value())) return UsageError("--role needs a value");
      if (!analytics::auth::RoleFromName(*v)) {
        return UsageError("unknown role '" + *v + "' (platform_admin, developer, marketing_manager, service)");
      }
      request.roles.push_back(*v);
    } else if (arg == "--sub") {
      if (!(v = value()) || v->empty()) return UsageError("--sub needs a value");
      request.subject = *v;
    } else if (arg == "--game") {
      if (!(v = value()) || v->empty()) return UsageError("--game needs a value");
      request.game_ids.push_back(*v);
    } else if (arg == "--ttl") {
      if (!(v = value())) return UsageError("--ttl needs a value");
      auto ttl = analytics::common::ParseDurationSeconds(*v);
      if (!ttl.ok()) return UsageError("--ttl: " + ttl.status().message());
      request.ttl_seconds = *ttl;
    } else if (arg == "--config") {
      if (!(v = value())) return UsageError("--config needs a value");
      config_flag = *v;
    } else {
      return UsageError("unknown option '" + arg + "' for token");
    }
  }
  if (request.roles.empty()) return UsageError("token needs at least one --role");
  auto config = analytics::config::LoadConfig(ConfigPath(config_flag), analytics::config::ProcessEnv());
  if (!config.ok()) return ConfigError(config.status());
  request.issuer = config->auth.issuer;
  request.audience = config->auth.audience;
  auto secret = analytics::app::ResolveJwtSecret(*config);
  if (!secret.ok()) {
    std::cerr << "analytics-service: " << secret.status().ToString() << "\n";
    return 1;
  }
  auto token = analytics::auth::IssueHs256Token(request, *secret, analytics::common::NowMillis() / 1000);
  if (!token.ok()) {
    std::cerr << "analytics-service: " << token.status().ToString() << "\n";
    return 1;
  }
  std::cout << *token << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return UsageError("a command is required");
  const std::string command = args.front();
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "--version" || command == "version") {
    std::cout << "analytics-service " << kVersion << "\n";
    return 0;
  }
  if (command == "serve") {
    std::optional<std::string> config_flag;
    for (size_t arg_idx = 0; arg_idx < rest.size(); ++arg_idx) {
      if (rest[arg_idx] == "--config" && arg_idx + 1 < rest.size()) {
        config_flag = rest[++arg_idx];
      } else if (rest[arg_idx] == "--help") {
        std::cout << kUsage;
        return 0;
      } else {
        return UsageError("unknown option '" + rest[arg_idx] + "' for serve");
      }
    }
    return Serve(config_flag);
  }
  if (command == "token") return Token(rest);
  if (command == "generate") return analytics::gen::RunGenerateCommand(rest);
  return UsageError("unknown command '" + command + "'");
}
