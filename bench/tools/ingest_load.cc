// ingest_load: a load generator for POST /api/v1/analytics/events. Reads an NDJSON file of CloudEvents,
// cuts it into batches, and posts them over N keep-alive connections as fast as the server acknowledges,
// measuring events/s and the acknowledgement latency of each batch. Prints one JSON object.
// Usage: ingest_load --port P --token T --file F [--batch 1000] [--connections 4] [--gzip]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/http_client.h"

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
  std::vector<std::string> bodies;
  std::string line, body;
  size_t in_batch = 0, total_events = 0;
  while (std::getline(input, line)) {
    if (line.empty()) continue;
    body += line;
    body += '\n';
    ++total_events;
    if (++in_batch == batch_size) {
      bodies.push_back(std::move(body));
      body.clear();
      in_batch = 0;
    }
  }
  if (!body.empty()) bodies.push_back(std::move(body));

  std::atomic<size_t> next{0};
  std::atomic<uint64_t> accepted{0}, duplicates{0}, rejected{0}, failures{0};
  std::mutex mu;
  std::vector<double> latencies_ms;
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int connection_idx = 0; connection_idx < connections; ++connection_idx) {
    threads.emplace_back([&] {
      analytics::testing::HttpClient client(port);
      std::vector<double> local;
      for (size_t body_idx = next++; body_idx < bodies.size(); body_idx = next++) {
        auto sent = std::chrono::steady_clock::now();
        try {
          auto response = client.Request("POST", "/api/v1/analytics/events", bodies[body_idx],
                                         {{"Authorization", "Bearer " + token},
                                          {"Content-Type", "application/x-ndjson"}});
          local.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count());
          if (response.status != 202) {
            ++failures;
            continue;
          }
          auto json = response.Json();
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
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto percentile = [&](double p) {
    return latencies_ms.empty() ? 0.0 : latencies_ms[std::min(latencies_ms.size() - 1,
                                                              static_cast<size_t>(p * latencies_ms.size()))];
  };
  nlohmann::json out = {{"events", total_events},     {"batches", bodies.size()},
                        {"connections", connections}, {"seconds", seconds},
                        {"events_per_second", total_events / seconds},
                        {"accepted", accepted.load()}, {"duplicates", duplicates.load()},
                        {"rejected", rejected.load()}, {"failed_batches", failures.load()},
                        {"ack_latency_ms_p50", percentile(0.5)}, {"ack_latency_ms_p99", percentile(0.99)}};
  std::cout << out.dump() << std::endl;
  return failures.load() == 0 ? 0 : 1;
}
