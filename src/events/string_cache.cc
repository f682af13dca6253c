// Shared and per-thread string caches; see string_cache.h.
#include "events/string_cache.h"

#include <atomic>
#include <cstring>
#include <functional>

namespace analytics::events {
namespace {

char* MakeEntry(std::string_view key, std::string_view value) {
  const auto key_size = static_cast<uint32_t>(key.size());
  const auto value_size = static_cast<uint32_t>(value.size());
  char* entry = new char[8 + key.size() + value.size()];
  std::memcpy(entry, &key_size, 4);
  std::memcpy(entry + 4, &value_size, 4);
  std::memcpy(entry + 8, key.data(), key.size());
  std::memcpy(entry + 8 + key.size(), value.data(), value.size());
  return entry;
}

std::string_view KeyOf(const char* entry) {
  uint32_t key_size = 0;
  std::memcpy(&key_size, entry, 4);
  return {entry + 8, key_size};
}

std::string_view ValueOf(const char* entry) {
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  std::memcpy(&key_size, entry, 4);
  std::memcpy(&value_size, entry + 4, 4);
  return {entry + 8 + key_size, value_size};
}

}  // namespace

uint64_t StringCacheHash(std::string_view key) { return std::hash<std::string_view>{}(key); }

uint64_t NewStringCacheOwner() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// ---- StringCache ----

StringCache::StringCache(size_t capacity) {
  if (capacity == 0) return;
  size_t sets = 1;
  while (sets * kWays < capacity) sets *= 2;
  sets_ = std::vector<Set>(sets);
  set_mask_ = sets - 1;
}

StringCache::~StringCache() {
  for (Set& set : sets_) {
    for (Slot& slot : set.slots) delete[] slot.entry;
  }
}

bool StringCache::Get(std::string_view key, uint64_t hash, std::string& value) const {
  if (!enabled()) return false;
  const size_t set_idx = hash & set_mask_;
  std::lock_guard lock(LockFor(set_idx));
  for (const Slot& slot : sets_[set_idx].slots) {
    if (slot.hash == hash && slot.entry != nullptr && KeyOf(slot.entry) == key) {
      value.assign(ValueOf(slot.entry));
      return true;
    }
  }
  return false;
}

void StringCache::Put(std::string_view key, uint64_t hash, std::string_view value) {
  if (!enabled()) return;
  const size_t set_idx = hash & set_mask_;
  char* entry = MakeEntry(key, value);
  std::lock_guard lock(LockFor(set_idx));
  Set& set = sets_[set_idx];
  Slot* target = &set.slots[(hash >> 40) % kWays];
  for (Slot& slot : set.slots) {
    if (slot.entry != nullptr && slot.hash == hash && KeyOf(slot.entry) == key) {
      delete[] entry;  // a concurrent Put won
      return;
    }
    if (slot.entry == nullptr) target = &slot;
  }
  delete[] target->entry;
  target->hash = hash;
  target->entry = entry;
}

size_t StringCache::Size() const {
  size_t total = 0;
  for (size_t set_idx = 0; set_idx < sets_.size(); ++set_idx) {
    std::lock_guard lock(LockFor(set_idx));
    for (const Slot& slot : sets_[set_idx].slots) total += slot.entry != nullptr;
  }
  return total;
}

// ---- ThreadStringCache ----

ThreadStringCache::ThreadStringCache(size_t slots) : slots_(slots), mask_(slots - 1) {}

bool ThreadStringCache::Get(uint64_t owner, std::string_view key, uint64_t hash, std::string& value) const {
  const Slot& slot = slots_[hash & mask_];
  if (slot.owner != owner || slot.tag != static_cast<uint32_t>(hash >> 32) ||
      std::string_view(slot.bytes, slot.key_size) != key) {
    return false;
  }
  value.assign(slot.bytes + slot.key_size, slot.value_size);
  return true;
}

void ThreadStringCache::Put(uint64_t owner, std::string_view key, uint64_t hash, std::string_view value) {
  if (key.size() + value.size() > kMaxPairBytes) return;
  Slot& slot = slots_[hash & mask_];
  slot.owner = owner;
  slot.tag = static_cast<uint32_t>(hash >> 32);
  slot.key_size = static_cast<uint8_t>(key.size());
  slot.value_size = static_cast<uint8_t>(value.size());
  key.copy(slot.bytes, key.size());
  value.copy(slot.bytes + key.size(), value.size());
}

}  // namespace analytics::events
