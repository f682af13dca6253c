// Runs the real analytics-service binary as a child process for end-to-end tests.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace analytics::testing {

struct ProcessResult {
  int exit_code = -1;    // -1 when killed by a signal
  int signal = 0;
  std::string output;    // stdout + stderr
};

// The binary under test: $ANALYTICS_BINARY (set by scripts/run-tests), else ./analytics-service.
std::string ServiceBinary();

// Runs the binary to completion with extra environment variables (others inherited); bounded by timeout.
ProcessResult RunBinary(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                        int timeout_seconds = 60);

class ServiceProcess {
 public:
  // Starts `serve` with ANALYTICS_API_PORT=0, ANALYTICS_DATA_DIR=data_dir and `env`, and waits (up to 30 s) for
  // the "started" log line to learn the port. port() is 0 when start-up failed (see output()).
  ServiceProcess(const std::string& data_dir, std::map<std::string, std::string> env = {},
                 std::vector<std::string> extra_args = {});
  ~ServiceProcess();
  ServiceProcess(const ServiceProcess&) = delete;
  ServiceProcess& operator=(const ServiceProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string output() const;
  // Sends `signal` and waits (up to timeout) for the exit; returns the result.
  ProcessResult Stop(int signal, int timeout_seconds = 30);
  // A token signed with this instance's secret.
  std::string Token(const std::vector<std::string>& roles, const std::string& subject = "test-user",
                    const std::vector<std::string>& game_ids = {}) const;

 private:
  std::string data_dir_;
  std::map<std::string, std::string> env_;
  std::string log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace analytics::testing
