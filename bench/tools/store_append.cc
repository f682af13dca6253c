// store_append: events/s of direct appends to the embedded event store (no HTTP, no JSON parsing on the
// timed path). Normalizes an NDJSON file of CloudEvents into batches first, then appends them from T threads
// with the WAL's fdatasync on. Prints one JSON object.
// Usage: store_append --file F --dir D [--batch 1000] [--threads 4] [--sync true]
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "store/embedded/embedded_event_store.h"

int main(int argc, char** argv) {
  std::string file, dir;
  size_t batch_size = 1000;
  int threads_count = 4;
  bool sync = true;
  int zstd_level = 3;
  for (int arg_idx = 1; arg_idx + 1 < argc; arg_idx += 2) {
    std::string flag = argv[arg_idx], value = argv[arg_idx + 1];
    if (flag == "--file") file = value;
    else if (flag == "--dir") dir = value;
    else if (flag == "--batch") batch_size = std::stoul(value);
    else if (flag == "--threads") threads_count = std::stoi(value);
    else if (flag == "--sync") sync = value == "true";
    else if (flag == "--zstd") zstd_level = std::stoi(value);
  }
  std::ifstream input(file);
  if (!input || dir.empty()) {
    std::cerr << "usage: store_append --file F --dir D [--batch 1000] [--threads 4] [--sync true]\n";
    return 2;
  }
  auto pseudonymizer = analytics::events::Pseudonymizer::Create(std::string(32, 'k'));
  if (!pseudonymizer.ok()) return 1;
  analytics::events::Normalizer normalizer({}, **pseudonymizer);
  std::vector<analytics::events::EventRows> batches;
  std::string line, body;
  size_t in_batch = 0, total = 0;
  auto cut = [&] {
    auto result = normalizer.Process(body, analytics::events::BodyFormat::kNdjson, analytics::common::NowMillis());
    total += result.events.size();
    batches.push_back(std::move(result.events));
    body.clear();
    in_batch = 0;
  };
  while (std::getline(input, line)) {
    body += line + "\n";
    if (++in_batch == batch_size) cut();
  }
  if (!body.empty()) cut();

  analytics::store::EmbeddedEventStoreOptions options;
  options.dir = dir;
  options.sync = sync;
  options.zstd_level = zstd_level;
  auto store = analytics::store::EmbeddedEventStore::Open(options);
  if (!store.ok()) {
    std::cerr << store.status().ToString() << "\n";
    return 1;
  }
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> stored{0};
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < threads_count; ++thread_idx) {
    threads.emplace_back([&] {
      for (size_t batch_idx = next++; batch_idx < batches.size(); batch_idx = next++) {
        auto result = (*store)->Append(std::move(batches[batch_idx]));
        if (result.ok()) stored += result->stored;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << nlohmann::json({{"events", total}, {"stored", stored.load()}, {"threads", threads_count},
                               {"sync", sync}, {"seconds", seconds}, {"events_per_second", total / seconds}})
                   .dump()
            << std::endl;
  return 0;
}
