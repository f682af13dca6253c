// The composition root: reads the configuration, opens the adapters it names (SQLite or PostgreSQL metadata,
// ...), wires application services, routes and the HTTP server. Nothing else in the tree names a concrete
// adapter or reads config.
// Thread-safety: Start/Stop from one thread; the running server is multi-threaded.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/config.h"

namespace analytics::app {

inline constexpr char kVersion[] = "0.1.0";

// Reads a secret file, or creates it with 32 random bytes (hex, mode 0600) when missing.
common::Result<std::string> LoadOrCreateSecretFile(const std::string& path);

// The HS256 secret: the configured one, else <data_dir>/jwt-secret (created with 32 random bytes, mode 0600).
common::Result<std::string> ResolveJwtSecret(const config::Config& config);

class Application {
 public:
  explicit Application(config::Config config);
  ~Application();

  // Opens stores, applies migrations, seeds built-ins, starts listening. Errors are start-up failures.
  common::Status Start();
  int port() const;
  // Every routed (method, path template), after Start (the OpenAPI coverage test checks them all).
  std::vector<std::pair<std::string, std::string>> Routes() const;
  // Graceful stop (in-flight requests finish).
  void Stop();

 private:
  common::Status StartKafka();
  struct State;
  config::Config config_;
  std::unique_ptr<State> state_;
};

}  // namespace analytics::app
