// Gate: lets a test hold background work (a job handler, a hook) at a known point and release it.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace analytics::testing {

// A closed gate blocks every Pass() until Open().
class Gate {
 public:
  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  // True once `count` callers wait at the closed gate (false after 30 s).
  bool WaitForWaiters(int count) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return waiting_ >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;  // guarded by mu_
  int waiting_ = 0;   // guarded by mu_
};

// Opens the gate when it goes out of scope: declared after what waits at the gate (a runner, a stack), so that a
// failed assertion never leaves that waiting forever in its destructor.
class OpenOnExit {
 public:
  explicit OpenOnExit(Gate& gate) : gate_(gate) {}
  ~OpenOnExit() { gate_.Open(); }

 private:
  Gate& gate_;
};

}  // namespace analytics::testing
