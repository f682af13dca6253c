#include "support/service_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/ids.h"

namespace analytics::testing {
namespace {

std::string ReadFileText(const std::string& path) {
  std::ifstream file(path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

pid_t Spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& log_path) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
  }
  for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
  std::vector<char*> argv;
  std::string binary = ServiceBinary();
  argv.push_back(binary.data());
  std::vector<std::string> copy = args;
  for (auto& arg : copy) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(binary.c_str(), argv.data());
  _exit(127);
}

ProcessResult WaitFor(pid_t pid, int timeout_seconds) {
  ProcessResult result;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
      return result;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      result.signal = SIGKILL;
      result.output = "(timed out)";
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string ServiceBinary() {
  const char* env = std::getenv("ANALYTICS_BINARY");
  return env != nullptr && *env != '\0' ? env : "./analytics-service";
}

ProcessResult RunBinary(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                        int timeout_seconds) {
  std::string log_path = "/tmp/analytics-run-" + common::NewUuid() + ".log";
  pid_t pid = Spawn(args, env, log_path);
  ProcessResult result = WaitFor(pid, timeout_seconds);
  result.output = ReadFileText(log_path) + result.output;
  std::remove(log_path.c_str());
  return result;
}

ServiceProcess::ServiceProcess(const std::string& data_dir, std::map<std::string, std::string> env,
                               std::vector<std::string> extra_args)
    : data_dir_(data_dir), env_(std::move(env)) {
  env_["ANALYTICS_DATA_DIR"] = data_dir_;
  if (!env_.count("ANALYTICS_API_PORT")) env_["ANALYTICS_API_PORT"] = "0";
  if (!env_.count("ANALYTICS_API_HOST")) env_["ANALYTICS_API_HOST"] = "127.0.0.1";
  log_path_ = data_dir_ + "/../service-" + common::NewUuid() + ".log";
  std::vector<std::string> args = {"serve"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = Spawn(args, env_, log_path_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::istringstream lines(ReadFileText(log_path_));
    std::string line;
    while (std::getline(lines, line)) {
      auto json = nlohmann::json::parse(line, nullptr, false);
      if (json.is_object() && json.value("msg", "") == "started" && json.contains("port")) {
        port_ = json["port"].get<int>();
        return;
      }
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

ServiceProcess::~ServiceProcess() {
  if (pid_ > 0) Stop(SIGKILL, 10);
  std::remove(log_path_.c_str());
}

std::string ServiceProcess::output() const { return ReadFileText(log_path_); }

ProcessResult ServiceProcess::Stop(int signal, int timeout_seconds) {
  ProcessResult result;
  if (pid_ <= 0) return result;
  kill(pid_, signal);
  result = WaitFor(pid_, timeout_seconds);
  pid_ = -1;
  result.output = output();
  return result;
}

std::string ServiceProcess::Token(const std::vector<std::string>& roles, const std::string& subject,
                                  const std::vector<std::string>& game_ids) const {
  std::vector<std::string> args = {"token", "--sub", subject};
  for (const auto& role : roles) {
    args.push_back("--role");
    args.push_back(role);
  }
  for (const auto& game : game_ids) {
    args.push_back("--game");
    args.push_back(game);
  }
  auto env = env_;
  ProcessResult result = RunBinary(args, env);
  if (result.exit_code != 0) throw std::runtime_error("token command failed: " + result.output);
  std::string token = result.output;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

}  // namespace analytics::testing
