// DedupIndex: open addressing with linear probing, backward-shift deletion and in-place day expiry.
#include "store/embedded/dedup_index.h"

#include <algorithm>

#include <xxhash.h>

namespace analytics::store::embedded {

namespace {

constexpr size_t kMinSlots = 4096;  // 64 KiB
constexpr uint64_t kDayTagMask = 0xFFFF;

}  // namespace

DedupIndex::DedupIndex(size_t max_bytes) {
  size_t max_slots = kMinSlots;
  while (max_slots * 2 * sizeof(DedupKey) <= max_bytes) max_slots *= 2;
  max_slots_ = max_slots;
  slots_.assign(kMinSlots, DedupKey{});
}

uint64_t DedupIndex::SourceSeed(std::string_view source) {
  return XXH3_64bits_withSeed(source.data(), source.size(), 0x51 + source.size());
}

DedupKey DedupIndex::KeyOf(uint64_t source_seed, std::string_view id) {
  // XXH3 (128 bits) of the id, seeded with a hash of the source and its length, so that ("ab", "c") and
  // ("a", "bc") differ. The keys live in memory only (rebuilt at start-up), so the function may change.
  const XXH128_hash_t hash = XXH3_128bits_withSeed(id.data(), id.size(), source_seed);
  DedupKey key{hash.low64, hash.high64 & kHashMask};
  if (key.a == 0) key.a = 1;  // zero marks an empty slot
  return key;
}

int64_t DedupIndex::DayOfSlot(const DedupKey& slot) const {
  const uint64_t tag = slot.b >> kTagShift;
  const uint64_t age = (static_cast<uint64_t>(newest_day_) - tag) & kDayTagMask;
  return newest_day_ - static_cast<int64_t>(age);
}

bool DedupIndex::Contains(DedupKey key) const {
  const size_t mask = slots_.size() - 1;
  for (size_t idx = Home(key);; idx = (idx + 1) & mask) {
    const DedupKey& slot = slots_[idx];
    if (Empty(slot)) return false;
    if (SameHash(slot, key)) return true;
  }
}

void DedupIndex::InsertSlot(const DedupKey& slot) {
  const size_t mask = slots_.size() - 1;
  size_t idx = Home(slot);
  while (!Empty(slots_[idx])) idx = (idx + 1) & mask;
  slots_[idx] = slot;
}

bool DedupIndex::Insert(DedupKey key, int64_t day) {
  if ((size_ + 1) * 4 > slots_.size() * 3) {
    if (slots_.size() < max_slots_) {
      Grow();
    } else {
      // Full at the budget: give up the oldest receive days until the table is at most half full.
      while (!day_counts_.empty() && (size_ + 1) * 2 > slots_.size()) {
        RemoveDaysBefore(day_counts_.begin()->first + 1);
        ++evicted_days_;
      }
    }
  }
  // One probe: the key's run ends at an empty slot, where it goes unless the run already holds it.
  const size_t mask = slots_.size() - 1;
  size_t idx = Home(key);
  for (; !Empty(slots_[idx]); idx = (idx + 1) & mask) {
    if (SameHash(slots_[idx], key)) return false;
  }
  if (day > newest_day_) newest_day_ = day;
  key.b = (key.b & kHashMask) | ((static_cast<uint64_t>(day) & kDayTagMask) << kTagShift);
  slots_[idx] = key;
  ++size_;
  // Keys of a batch share their receive day: the count of the last day is at hand.
  if (last_day_count_ == nullptr || last_day_ != day) {
    last_day_count_ = &day_counts_[day];
    last_day_ = day;
  }
  ++*last_day_count_;
  return true;
}

void DedupIndex::Erase(DedupKey key) {
  const size_t mask = slots_.size() - 1;
  size_t hole = Home(key);
  while (true) {
    if (Empty(slots_[hole])) return;  // not present
    if (SameHash(slots_[hole], key)) break;
    hole = (hole + 1) & mask;
  }
  const int64_t day = DayOfSlot(slots_[hole]);
  if (auto it = day_counts_.find(day); it != day_counts_.end() && --it->second == 0) {
    day_counts_.erase(it);
    last_day_count_ = nullptr;
  }
  --size_;
  // Backward-shift deletion: move later members of the probe run into the hole when their home allows it.
  slots_[hole] = DedupKey{};
  for (size_t next = (hole + 1) & mask; !Empty(slots_[next]); next = (next + 1) & mask) {
    const size_t home = Home(slots_[next]);
    // `next` may move to `hole` unless its home lies cyclically in (hole, next].
    const bool home_after_hole = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next);
    if (home_after_hole) continue;
    slots_[hole] = slots_[next];
    slots_[next] = DedupKey{};
    hole = next;
  }
}

void DedupIndex::Reserve(size_t keys) {
  size_t slots = slots_.size();
  while (slots < max_slots_ && (keys + 1) * 4 > slots * 3) slots *= 2;
  if (slots == slots_.size()) return;
  std::vector<DedupKey> old(slots, DedupKey{});
  old.swap(slots_);
  for (const DedupKey& slot : old) {
    if (!Empty(slot)) InsertSlot(slot);
  }
}

void DedupIndex::Grow() {
  std::vector<DedupKey> old(slots_.size() * 2, DedupKey{});
  old.swap(slots_);
  for (const DedupKey& slot : old) {
    if (!Empty(slot)) InsertSlot(slot);
  }
}

void DedupIndex::ExpireBefore(int64_t oldest_day) {
  if (!day_counts_.empty() && day_counts_.begin()->first < oldest_day) RemoveDaysBefore(oldest_day);
}

void DedupIndex::RemoveDaysBefore(int64_t oldest_day) {
  const size_t mask = slots_.size() - 1;
  // A slot that was empty before the removal: no probe run crosses it, so re-placing in scan order from
  // there moves every remaining key only towards its home.
  size_t start = 0;
  while (!Empty(slots_[start])) ++start;
  for (auto& slot : slots_) {
    if (!Empty(slot) && DayOfSlot(slot) < oldest_day) slot = DedupKey{};
  }
  for (size_t step = 1; step <= slots_.size(); ++step) {
    const size_t idx = (start + step) & mask;
    if (Empty(slots_[idx])) continue;
    const DedupKey slot = slots_[idx];
    slots_[idx] = DedupKey{};
    InsertSlot(slot);
  }
  size_ = 0;
  last_day_count_ = nullptr;
  for (auto it = day_counts_.begin(); it != day_counts_.end();) {
    if (it->first < oldest_day) {
      it = day_counts_.erase(it);
    } else {
      size_ += it->second;
      ++it;
    }
  }
}

}  // namespace analytics::store::embedded
