// normalize_bench: CPU time per event of events::Normalizer::Process alone (no HTTP, no store). Reads an NDJSON
// file of CloudEvents, cuts it into bodies of --batch lines, then runs Process over every body, single-threaded,
// --passes times, and reports the median pass as thread CPU nanoseconds per event (the machine is shared:
// wall time would measure the neighbours). Destroying each BatchResult is inside the timed loop: freeing what
// Process allocated is part of its cost to the intake. The pseudonymizer's cache is shared by all passes, as
// in a running server (the first pass fills it).
// --dump F writes every output of the first pass (StoredEvent fields, rejections, body errors) as text, so
// two builds can be compared byte for byte.
// --threads N runs each pass on N threads sharing the Normalizer (thread t takes every N-th body), as HTTP
// handler threads do; the figure is then the CPU of all threads over all events, so sharing costs (the
// pseudonymizer's locks and cache lines) show up in it.
// Usage: normalize_bench --file F [--batch 1000] [--passes 5] [--now MILLIS] [--dump F] [--treated true]
//        [--threads N]
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "events/rejection.h"

namespace {

using analytics::events::BatchResult;
using analytics::events::BodyFormat;

int64_t ThreadCpuNanos() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// One line per output, fields separated by '|', strings quoted by their length so any byte is unambiguous.
void AppendField(std::string& out, std::string_view value) {
  out += std::to_string(value.size());
  out += ':';
  out += value;
  out += '|';
}

void DumpResult(const BatchResult& result, size_t body_idx, std::string& out) {
  out += "body " + std::to_string(body_idx) + "\n";
  if (result.body_error) {
    out += "body_error " + std::to_string(result.body_error->byte_offset) + " ";
    AppendField(out, result.body_error->message);
    out += '\n';
  }
  for (size_t event_idx = 0; event_idx < result.events.size(); ++event_idx) {
    const auto& event = result.events[event_idx];
    out += "event " + std::to_string(result.event_indexes[event_idx]) + " ";
    for (std::string_view field : {std::string_view(event.id), std::string_view(event.source),
                                   std::string_view(event.type), std::string_view(event.user),
                                   std::string_view(event.game_id), std::string_view(event.session_id),
                                   std::string_view(event.currency), std::string_view(event.country),
                                   std::string_view(event.platform), std::string_view(event.data),
                                   std::string_view(event.extensions)}) {
      AppendField(out, field);
    }
    char amount[64] = "-";
    if (event.amount) std::snprintf(amount, sizeof(amount), "%.17g", *event.amount);
    out += std::to_string(event.time_ms) + "|" + std::to_string(event.received_ms) + "|" +
           std::to_string(event.time_defaulted) + "|" + amount + "|" + std::to_string(event.user_in_subject) + "\n";
  }
  for (const auto& rejection : result.rejections) {
    out += "rejection " + std::to_string(rejection.index) + " " + std::to_string(rejection.byte_offset) + " " +
           std::to_string(rejection.event_bytes) + " ";
    AppendField(out, analytics::events::RejectionCodeName(rejection.code));
    for (std::string_view field : {std::string_view(rejection.id), std::string_view(rejection.type),
                                   std::string_view(rejection.source), std::string_view(rejection.field),
                                   std::string_view(rejection.message), std::string_view(rejection.payload)}) {
      AppendField(out, field);
    }
    out += '\n';
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  std::string dump_path;
  size_t batch_size = 1000;
  int passes = 5;
  int64_t now_ms = 1767225600000;  // 2026-01-01: fixed, so dumps of two runs compare
  bool treated = false;
  size_t threads = 1;
  for (int arg_idx = 1; arg_idx + 1 < argc; arg_idx += 2) {
    const std::string flag = argv[arg_idx];
    const std::string value = argv[arg_idx + 1];
    if (flag == "--file") file = value;
    else if (flag == "--batch") batch_size = std::stoul(value);
    else if (flag == "--passes") passes = std::stoi(value);
    else if (flag == "--now") now_ms = std::stoll(value);
    else if (flag == "--dump") dump_path = value;
    else if (flag == "--treated") treated = value == "true";
    else if (flag == "--threads") threads = std::stoul(value);
  }
  std::ifstream input(file, std::ios::binary);
  if (!input || batch_size == 0 || passes < 1 || threads == 0) {
    std::cerr << "usage: normalize_bench --file F [--batch 1000] [--passes 5] [--now MILLIS] [--dump F]"
                 " [--treated true] [--threads N]\n";
    return 2;
  }
  // --treated: every line is replayed alone through ProcessTreated (the dead-letter path), for --dump checks.
  std::vector<std::string> bodies;
  std::string line;
  std::string body;
  size_t in_batch = 0;
  while (std::getline(input, line)) {
    if (treated) {
      bodies.push_back(line);
      continue;
    }
    body += line;
    body += '\n';
    if (++in_batch == batch_size) {
      bodies.push_back(std::move(body));
      body.clear();
      in_batch = 0;
    }
  }
  if (!body.empty()) bodies.push_back(std::move(body));

  auto pseudonymizer = analytics::events::Pseudonymizer::Create(std::string(32, 'k'));
  if (!pseudonymizer.ok()) {
    std::cerr << pseudonymizer.status().ToString() << "\n";
    return 1;
  }
  const analytics::events::Normalizer normalizer({}, **pseudonymizer);

  std::vector<double> ns_per_event;
  size_t accepted = 0;
  size_t rejected = 0;
  for (int pass_idx = 0; pass_idx < passes; ++pass_idx) {
    std::string dump;
    const bool dumping = pass_idx == 0 && !dump_path.empty();
    const size_t pass_threads = dumping ? 1 : threads;  // the dump keeps body order
    std::vector<size_t> thread_accepted(pass_threads, 0);
    std::vector<size_t> thread_rejected(pass_threads, 0);
    std::vector<int64_t> thread_cpu(pass_threads, 0);
    auto run = [&](size_t thread_idx) {
      const int64_t started = ThreadCpuNanos();
      for (size_t body_idx = thread_idx; body_idx < bodies.size(); body_idx += pass_threads) {
        const BatchResult result = treated ? normalizer.ProcessTreated(bodies[body_idx], now_ms)
                                           : normalizer.Process(bodies[body_idx], BodyFormat::kNdjson, now_ms);
        thread_accepted[thread_idx] += result.events.size();
        thread_rejected[thread_idx] += result.rejections.size();
        if (dumping) DumpResult(result, body_idx, dump);
      }
      thread_cpu[thread_idx] = ThreadCpuNanos() - started;
    };
    if (pass_threads == 1) {
      run(0);
    } else {
      std::vector<std::thread> workers;
      for (size_t thread_idx = 0; thread_idx < pass_threads; ++thread_idx) workers.emplace_back(run, thread_idx);
      for (std::thread& worker : workers) worker.join();
    }
    accepted = 0;
    rejected = 0;
    int64_t elapsed = 0;
    for (size_t thread_idx = 0; thread_idx < pass_threads; ++thread_idx) {
      accepted += thread_accepted[thread_idx];
      rejected += thread_rejected[thread_idx];
      elapsed += thread_cpu[thread_idx];
    }
    if (dumping) {
      std::ofstream(dump_path, std::ios::binary) << dump;
      continue;  // the dump's cost is in this pass: not a sample
    }
    const size_t events = std::max<size_t>(accepted + rejected, 1);
    ns_per_event.push_back(static_cast<double>(elapsed) / static_cast<double>(events));
  }
  if (ns_per_event.empty()) {
    std::printf("{\"events\":%zu,\"accepted\":%zu,\"rejected\":%zu}\n", accepted + rejected, accepted, rejected);
    return 0;
  }
  std::vector<double> sorted = ns_per_event;
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"events\":%zu,\"accepted\":%zu,\"rejected\":%zu,\"bodies\":%zu,\"median_ns_per_event\":%.1f,"
              "\"passes_ns_per_event\":[",
              accepted + rejected, accepted, rejected, bodies.size(), sorted[sorted.size() / 2]);
  for (size_t pass_idx = 0; pass_idx < ns_per_event.size(); ++pass_idx) {
    std::printf("%s%.1f", pass_idx > 0 ? "," : "", ns_per_event[pass_idx]);
  }
  std::printf("]}\n");
  return 0;
}
