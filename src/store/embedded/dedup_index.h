// DedupIndex: the (source, id) keys of the deduplication window, in a memory budget.
//
// Rationale: the store must recognise a repeated event for days (the dedup window, 7 by default) at intake
// rates of hundreds of thousands of events per second. A node-based hash set costs about 60 bytes per key;
// this is one open-addressing table (linear probing) of 16-byte slots: a 112-bit hash of (source, id) and
// the 16-bit receive day the key expires with. That is 16 bytes per slot, 20-32 bytes per key at the load
// factors used, one cache miss per lookup, and expiry of a whole day is one pass over the table.
// Memory budget: the table never grows past `max_bytes`. When it is full, the oldest receive days are
// dropped before the window ends (the effective window shrinks; `evicted_days` counts it, the store exports
// it), so memory stays bounded whatever the intake rate.
// A false "duplicate" needs two different (source, id) pairs with the same 112-bit hash: at a billion keys
// in the window the chance is about 1e-16.
// Thread-safety: none; the store guards it with its dedup mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

namespace analytics::store::embedded {

struct DedupKey {
  uint64_t a = 0;  // never both zero (zero marks an empty slot); the top 16 bits of b are the day tag
  uint64_t b = 0;
  bool operator==(const DedupKey& other) const { return a == other.a && b == other.b; }
};

class DedupIndex {
 public:
  // `max_bytes` bounds the table (at least 64 KiB is used).
  explicit DedupIndex(size_t max_bytes);

  // The key of (source, id): 112 bits of hash, day tag bits zero.
  static DedupKey KeyOf(std::string_view source, std::string_view id) { return KeyOf(SourceSeed(source), id); }
  // The same in two steps, for many ids of one source: KeyOf(SourceSeed(source), id) == KeyOf(source, id).
  static uint64_t SourceSeed(std::string_view source);
  static DedupKey KeyOf(uint64_t source_seed, std::string_view id);

  // Adds `key` for receive day `day` (days since the Unix epoch). False when the key is already present
  // (from any day): a duplicate.
  bool Insert(DedupKey key, int64_t day);
  bool Contains(DedupKey key) const;
  // Starts loading the cache line `key` would be looked up in: a batch prefetches all its keys before
  // inserting them, so the table's cache misses overlap instead of adding up.
  void Prefetch(const DedupKey& key) const { __builtin_prefetch(&slots_[Home(key)]); }
  // Sizes the table for `keys` keys (within the budget) at once, so that loading them does not grow it step by
  // step (each step re-places every key; recovery knows its count up front).
  void Reserve(size_t keys);
  // Removes a key added by Insert (a batch whose WAL write failed gives its keys back).
  void Erase(DedupKey key);
  // Drops every key received before `oldest_day` (the window moved on).
  void ExpireBefore(int64_t oldest_day);

  size_t size() const { return size_; }
  // Keys the table holds at its budget right after it gave up days (half its largest size): recovery fills it
  // up to this, newest receive days first, so the first appends after a start do not evict at once.
  size_t settled_capacity() const { return max_slots_ / 2; }
  size_t memory_bytes() const { return slots_.size() * sizeof(DedupKey); }
  // How many receive days were dropped early to stay within max_bytes, since construction.
  uint64_t evicted_days() const { return evicted_days_; }
  // The oldest receive day still held (INT64_MAX when empty).
  int64_t oldest_day() const { return day_counts_.empty() ? INT64_MAX : day_counts_.begin()->first; }

 private:
  static constexpr uint64_t kTagShift = 48;
  static constexpr uint64_t kHashMask = (uint64_t{1} << kTagShift) - 1;

  size_t Home(const DedupKey& key) const { return static_cast<size_t>(key.a) & (slots_.size() - 1); }
  static bool Empty(const DedupKey& slot) { return slot.a == 0 && slot.b == 0; }
  static bool SameHash(const DedupKey& slot, const DedupKey& key) {
    return slot.a == key.a && (slot.b & kHashMask) == (key.b & kHashMask);
  }
  int64_t DayOfSlot(const DedupKey& slot) const;
  void InsertSlot(const DedupKey& slot);
  void Grow();
  // Removes the slots whose day is before `oldest_day`, then re-places the rest in one pass.
  void RemoveDaysBefore(int64_t oldest_day);

  size_t max_slots_;
  std::vector<DedupKey> slots_;  // power-of-two size
  size_t size_ = 0;
  int64_t newest_day_ = INT64_MIN;       // anchors the 16-bit day tags
  std::map<int64_t, size_t> day_counts_;  // receive day → keys held
  size_t* last_day_count_ = nullptr;      // day_counts_[last_day_] (map nodes are stable); null after erasures
  int64_t last_day_ = 0;
  uint64_t evicted_days_ = 0;
};

}  // namespace analytics::store::embedded
