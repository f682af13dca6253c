// ingest_load: a load generator for POST /api/v1/analytics/events. Reads an NDJSON file of CloudEvents,
// cuts it into batches, and posts them over N keep-alive connections as fast as the server acknowledges,
// measuring events/s and the acknowledgement latency of each batch. Prints one JSON object.
// Usage: ingest_load --port P --token T --file F [--batch 1000] [--connections 4]
//
// The load process shares the machine with the server (2 cores on the reference machine), so it stays
// cheap on the timed path: every request (head and body) is serialized once before the clock starts and
// written with plain send(); the answer is read with a minimal HTTP/1.1 reader (Content-Length bodies, which
// is what the service sends). `load_cpu_seconds` is the CPU the load process itself used while timing.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/http_client.h"

namespace {

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string SerializeRequest(const std::string& body, const std::string& token) {
  std::string request = "POST /api/v1/analytics/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                        token + "\r\nContent-Type: application/x-ndjson\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n";
  request += body;
  return request;
}

struct Response {
  int status = 0;
  bool close = false;
  std::string body;
};

// One keep-alive connection; reconnects when the server closed it.
class Connection {
 public:
  explicit Connection(int port) : port_(port) {}
  ~Connection() { Close(); }

  Response Post(const std::string& request) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = fd_ >= 0;
      if (!reused) {
        fd_ = analytics::testing::ConnectRaw(port_);
        if (fd_ < 0) throw std::runtime_error("connect failed");
        buffer_.clear();
      }
      Response response;
      if (analytics::testing::SendAll(fd_, request) && Read(response)) {
        if (response.close) Close();
        return response;
      }
      Close();
      if (!reused) break;  // a fresh connection failed: give up; a reused one may have been closed while idle
    }
    throw std::runtime_error("request failed");
  }

 private:
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Fill() {
    char chunk[16384];
    const ssize_t received = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (received <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(received));
    return true;
  }

  static std::string Lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }

  bool Read(Response& response) {
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    const std::string head = Lower(std::string_view(buffer_).substr(0, head_end));
    if (head.size() < 12 || head.compare(0, 5, "http/") != 0) return false;
    response.status = std::atoi(head.c_str() + 9);
    size_t content_length = 0;
    if (const size_t at = head.find("\r\ncontent-length:"); at != std::string::npos) {
      content_length = std::strtoull(head.c_str() + at + 17, nullptr, 10);
    }
    response.close = head.find("\r\nconnection: close") != std::string::npos;
    const size_t body_start = head_end + 4;
    while (buffer_.size() < body_start + content_length) {
      if (!Fill()) return false;
    }
    response.body = buffer_.substr(body_start, content_length);
    buffer_.erase(0, body_start + content_length);
    return true;
  }

  int port_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, connections = 4;
  size_t batch_size = 1000;
  std::string token, file;
  for (int arg_idx = 1; arg_idx + 1 < argc; arg_idx += 2) {
    std::string flag = argv[arg_idx], value = argv[arg_idx + 1];
    if (flag == "--port") port = std::stoi(value);
    else if (flag == "--token") token = value;
    else if (flag == "--file") file = value;
    else if (flag == "--batch") batch_size = std::stoul(value);
    else if (flag == "--connections") connections = std::stoi(value);
  }
  std::ifstream input(file);
  if (!input || port == 0) {
    std::cerr << "usage: ingest_load --port P --token T --file F [--batch 1000] [--connections 4]\n";
    return 2;
  }
  std::vector<std::string> requests;
  std::string line, body;
  size_t in_batch = 0, total_events = 0;
  while (std::getline(input, line)) {
    if (line.empty()) continue;
    body += line;
    body += '\n';
    ++total_events;
    if (++in_batch == batch_size) {
      requests.push_back(SerializeRequest(body, token));
      body.clear();
      in_batch = 0;
    }
  }
  if (!body.empty()) requests.push_back(SerializeRequest(body, token));

  std::atomic<size_t> next{0};
  std::atomic<uint64_t> accepted{0}, duplicates{0}, rejected{0}, failures{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  const double cpu_started = ProcessCpuSeconds();
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int connection_idx = 0; connection_idx < connections; ++connection_idx) {
    threads.emplace_back([&] {
      Connection connection(port);
      std::vector<double> local;
      for (size_t request_idx = next++; request_idx < requests.size(); request_idx = next++) {
        auto sent = std::chrono::steady_clock::now();
        try {
          const Response response = connection.Post(requests[request_idx]);
          local.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count());
          if (response.status != 202) {
            ++failures;
            continue;
          }
          auto json = nlohmann::json::parse(response.body, nullptr, false);
          if (!json.is_object()) {
            ++failures;
            continue;
          }
          accepted += json["accepted"].get<uint64_t>();
          duplicates += json["duplicates"].get<uint64_t>();
          rejected += json["rejected"].size();
        } catch (const std::exception&) {
          ++failures;
        }
      }
      std::lock_guard lock(mu);
      latencies_ms.insert(latencies_ms.end(), local.begin(), local.end());
    });
  }
  for (auto& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const double load_cpu_seconds = ProcessCpuSeconds() - cpu_started;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto percentile = [&](double p) {
    return latencies_ms.empty() ? 0.0 : latencies_ms[std::min(latencies_ms.size() - 1,
                                                              static_cast<size_t>(p * latencies_ms.size()))];
  };
  nlohmann::json out = {{"events", total_events},     {"batches", requests.size()},
                        {"connections", connections}, {"seconds", seconds},
                        {"events_per_second", total_events / seconds},
                        {"accepted", accepted.load()}, {"duplicates", duplicates.load()},
                        {"rejected", rejected.load()}, {"failed_batches", failures.load()},
                        {"ack_latency_ms_p50", percentile(0.5)}, {"ack_latency_ms_p99", percentile(0.99)},
                        {"load_cpu_seconds", load_cpu_seconds}};
  std::cout << out.dump() << std::endl;
  return failures.load() == 0 ? 0 : 1;
}
