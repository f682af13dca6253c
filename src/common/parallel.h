// ParallelFor: runs fn(index) for every index in [0, count) on up to `threads` threads (the caller's included),
// indexes handed out one at a time, so uneven items (segments of different sizes) balance themselves.
// Thread-safety: fn runs concurrently for different indexes; it must only touch what belongs to its index or
// is itself thread-safe. Returns when every call has returned.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace analytics::common {

// The threads a query may use: `configured` when positive, else the machine's cores (counted once: glibc's
// hardware_concurrency opens and reads a /sys file on every call, a cost per query).
inline size_t QueryThreads(int configured) {
  static const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  return configured > 0 ? static_cast<size_t>(configured) : cores;
}

template <typename Fn>
void ParallelFor(size_t count, size_t threads, Fn&& fn) {
  if (threads <= 1 || count <= 1) {  // a job for one thread runs on the caller's, without the shared counter
    for (size_t index = 0; index < count; ++index) fn(index);
    return;
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t index = next++; index < count; index = next++) fn(index);
  };
  std::vector<std::thread> workers;
  for (size_t thread_idx = 1; thread_idx < std::min(threads, count); ++thread_idx) workers.emplace_back(work);
  work();
  for (auto& worker : workers) worker.join();
}

}  // namespace analytics::common
