// The two cache levels behind Pseudonymizer's results (pseudonyms, hashes): string key -> string value.
//
// StringCache is the shared level: bounded, 4-way set-associative, one cache line of (hash, entry) slots per
// set, an entry holding key and value in one allocation, pseudo-random replacement in a full set (an LRU list
// + hash map took ~5 cache misses per hit and was once the top item of the intake profile).
// ThreadStringCache is a small per-thread level in front of it: direct-mapped, key and value stored inline in
// a 128-byte slot, no lock.
//
// Rationale: a shared-cache hit costs a striped mutex (a write to a line that all handler threads share) and
// three or four cache misses (set line, entry lines). Producers send a user's events in bursts (a session, a
// page-view run), so a few hundred recently seen ids cover most lookups: on the 30-day generated data a
// 1024-slot direct-mapped table answers ~80% of pseudonym lookups from memory the thread already has in its
// own caches, without touching the shared lines.
// Concurrency: StringCache is thread-safe (64 striped mutexes). ThreadStringCache is not: each thread owns its
// own (thread_local); entries carry the id of the owner (one Pseudonymizer) they belong to, so one thread can
// serve several owners without mixing their results.
// Limitations: values are cached as computed and returned as stored: callers must only cache deterministic
// results (a key always has the same value for one owner). ThreadStringCache skips pairs that do not fit a
// slot (key + value > 114 bytes); they are served by the shared level.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace analytics::events {

// Hash of a cache key, computed once per lookup and shared by both levels.
uint64_t StringCacheHash(std::string_view key);

class StringCache {
 public:
  // `capacity` entries, rounded up to a multiple of the 4 ways times a power of two; 0 disables the cache
  // (Get always misses, Put does nothing).
  explicit StringCache(size_t capacity);
  ~StringCache();
  StringCache(const StringCache&) = delete;
  StringCache& operator=(const StringCache&) = delete;

  bool enabled() const { return !sets_.empty(); }

  // True and `value` assigned when `key` is cached. `hash` is StringCacheHash(key).
  bool Get(std::string_view key, uint64_t hash, std::string& value) const;
  // Caches key -> value, replacing another entry of the set when it is full. A key already cached is kept.
  void Put(std::string_view key, uint64_t hash, std::string_view value);
  // Starts fetching the set a lookup of `hash` reads.
  void Prefetch(uint64_t hash) const {
    if (enabled()) __builtin_prefetch(&sets_[hash & set_mask_]);
  }
  // Entries held (takes every lock; tests only).
  size_t Size() const;

 private:
  static constexpr size_t kWays = 4;
  static constexpr size_t kLocks = 64;
  struct Slot {
    uint64_t hash = 0;
    char* entry = nullptr;  // [uint32 key size][uint32 value size][key][value], owned
  };
  struct alignas(64) Set {
    std::array<Slot, kWays> slots;
  };
  struct alignas(64) Lock {
    std::mutex mu;
  };

  std::mutex& LockFor(size_t set_idx) const { return locks_[set_idx % kLocks].mu; }

  std::vector<Set> sets_;  // GUARDED_BY(locks_[set index % kLocks])
  size_t set_mask_ = 0;
  mutable std::array<Lock, kLocks> locks_;
};

class ThreadStringCache {
 public:
  // `slots`: a power of two.
  explicit ThreadStringCache(size_t slots);

  // True and `value` assigned when `owner` cached `key` here and it was not overwritten since.
  bool Get(uint64_t owner, std::string_view key, uint64_t hash, std::string& value) const;
  // Caches key -> value for `owner` in the key's slot (replacing what was there); does nothing when the pair
  // does not fit a slot. `owner` must not be 0 (the mark of an empty slot).
  void Put(uint64_t owner, std::string_view key, uint64_t hash, std::string_view value);
  // Starts fetching the slot a lookup of `hash` reads (both of its lines).
  void Prefetch(uint64_t hash) const {
    const char* slot = reinterpret_cast<const char*>(&slots_[hash & mask_]);
    __builtin_prefetch(slot);
    __builtin_prefetch(slot + 64);
  }

  static constexpr size_t kMaxPairBytes = 114;  // key + value bytes that fit one slot

 private:
  // Two cache lines: the tag, sizes and most short pairs (a UUID and its 73-character pseudonym: 109 bytes)
  // are read from adjacent lines.
  struct alignas(128) Slot {
    uint64_t owner = 0;  // 0: empty
    uint32_t tag = 0;    // high half of the key's hash (the low bits chose the slot)
    uint8_t key_size = 0;
    uint8_t value_size = 0;
    char bytes[kMaxPairBytes];  // key, then value
  };
  static_assert(sizeof(Slot) == 128);

  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// A process-unique owner id for ThreadStringCache (never 0, never reused).
uint64_t NewStringCacheOwner();

}  // namespace analytics::events
