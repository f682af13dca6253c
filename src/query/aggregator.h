// Aggregator: runs an AggregateQuery over EventBatches (the embedded store's engine).
//
// Per batch it compiles the filter once against the batch's dictionaries (a string condition is decided
// once per distinct string, not per row), then makes one pass over the rows: type mask and weight, filter,
// bucket (binary search in the bounds, skipped when the batch lies in one bucket), group (interned per
// batch; by dictionary code when grouping by one string property), and the cell updates, a chunk of rows at a
// time with the next rows' cells prefetched (a batch's rows hit cells all over the result). Distinct users go
// into roaring bitmaps; consecutive rows of the same user (segments are sorted by user) add the user once.
// Semantics are docs/metrics.md sections 2 and 3 to the letter (no type coercion, missing/null rules).
// Sessions (peak_concurrent): SessionMarksBuilder turns a source's batches into marks, which query/sessions.h
// pairs.
// Thread-safety: Aggregate is reentrant; batches and results are not shared.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "query/aggregate.h"

namespace analytics::query {

// What Aggregate remembers between the batches it adds to one result: grouping by one string property, the
// cells of each value (a batch's dictionary then maps to them without building and searching group keys). An
// open-addressing table of the values (views of the result's own group keys, which stay put).
class GroupIndex {
 public:
  std::vector<AggregateCell>* Find(std::string_view value) const { return Find(value, Hash(value)); }
  std::vector<AggregateCell>* Find(std::string_view value, uint64_t hash) const {
    if (slots_.empty()) return nullptr;
    for (size_t slot = hash & (slots_.size() - 1);; slot = (slot + 1) & (slots_.size() - 1)) {
      const Slot& entry = slots_[slot];
      if (entry.cells == nullptr) return nullptr;
      if (entry.hash == hash && entry.value == value) return entry.cells;
    }
  }
  // `value` must outlive the index (a view of the result's group key).
  void Insert(std::string_view value, std::vector<AggregateCell>* cells) {
    if ((used_ + 1) * 2 > slots_.size()) {
      std::vector<Slot> old = std::move(slots_);
      slots_.assign(std::max<size_t>(64, old.size() * 2), Slot());
      used_ = 0;
      for (const Slot& entry : old) {
        if (entry.cells != nullptr) Place(entry);
      }
    }
    Place({Hash(value), value, cells});
  }

  // Group values are mostly short ids ("game_1042", "RU"): two 64x64->128-bit multiplications, not a pass per
  // byte. The folded product makes every bit of the result depend on every input bit: ids that differ only in
  // their last bytes (the high bytes of a little-endian word) must still differ in the low bits the table uses
  // (a plain multiply keeps those low bits equal, and probe chains grew to dozens of slots).
  static uint64_t Hash(std::string_view text) {
    if (text.size() > kShortText) return std::hash<std::string_view>()(text);
    uint64_t words[2];
    ShortTextWords(text, words);
    return HashWords(words, text.size());
  }
  // A text of up to kShortText bytes as two words that, with its size, name it: loaded whole (overlapping when
  // shorter than 16 bytes), since a copy of n bytes into zeroed words stalls the loads that read them back.
  static constexpr size_t kShortText = 16;
  static void ShortTextWords(std::string_view text, uint64_t (&words)[2]) {
    const char* data = text.data();
    const size_t size = text.size();
    auto load = [](const char* at, auto word) {
      std::memcpy(&word, at, sizeof(word));
      return static_cast<uint64_t>(word);
    };
    words[0] = words[1] = 0;
    if (size >= 8) {
      words[0] = load(data, uint64_t{});
      words[1] = load(data + size - 8, uint64_t{});
    } else if (size >= 4) {
      words[0] = load(data, uint32_t{}) | load(data + size - 4, uint32_t{}) << 32;
    } else {
      for (size_t byte = 0; byte < size; ++byte) words[0] |= uint64_t{static_cast<uint8_t>(data[byte])} << (8 * byte);
    }
  }
  static uint64_t HashWords(const uint64_t (&words)[2], size_t size) {
    return Fold(words[0] ^ Fold(words[1] ^ size, 0xC2B2AE3D27D4EB4FULL), 0x9E3779B97F4A7C15ULL);
  }

 private:
  __extension__ using Wide = unsigned __int128;  // GCC/Clang; __extension__ keeps -Wpedantic quiet
  static uint64_t Fold(uint64_t value, uint64_t key) {
    const Wide product = static_cast<Wide>(value) * key;
    return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
  }
  struct Slot {
    uint64_t hash = 0;
    std::string_view value;
    std::vector<AggregateCell>* cells = nullptr;
  };
  void Place(const Slot& entry) {
    size_t slot = entry.hash & (slots_.size() - 1);
    while (slots_[slot].cells != nullptr) slot = (slot + 1) & (slots_.size() - 1);
    slots_[slot] = entry;
    ++used_;
  }
  std::vector<Slot> slots_;  // a power of two, at most half full
  size_t used_ = 0;
};

// Adds the rows of `batch` that the query reads into `out` (which must have been made for the same
// query: out.groups cells sized bounds.size() - 1). `index`, when given, must be used with `out` only.
void Aggregate(const AggregateQuery& query, const EventBatch& batch, AggregateResult& out, GroupIndex* index = nullptr);

// A partial result laid out to be merged fast, many times (the embedded store caches these, one per segment and
// query): grouped by one string property, its keys and all cells lie in a few arrays, so merging
// it walks memory in order instead of a tree of scattered nodes. Other results are kept as they are.
struct PackedResult {
  bool packed = false;
  AggregateResult generic;           // when not packed
  size_t width = 0;                  // cells per group
  std::string keys;                  // the groups' values, back to back
  std::vector<uint32_t> key_ends;    // per group: the end of its value in `keys`
  std::vector<AggregateCell> cells;  // group after group, `width` each
  int64_t newest_event_ms = std::numeric_limits<int64_t>::min();
  uint64_t rows_read = 0;
  uint64_t MemoryBytes() const;
};
PackedResult Pack(AggregateResult result);

// A partial result and where its cells go in the whole: buckets [offset, offset + width) (offset 0 and the same
// width: the same bounds).
struct PartialRef {
  const PackedResult* partial = nullptr;
  size_t offset = 0;
};
// Merges `partials` into the empty `out` of `buckets` buckets. Every cell of `out` is AggregateCell::MergeAll of
// its cells in the partials, in the partials' order: the same numbers as merging the partials one by one
// (AggregateResult::Merge), but the users of a cell are one multi-way union instead of a chain of pairwise unions, each
// of which copies the growing bitmap again (a user-counting query over a month of segments merges hundreds of
// thousands of cells). `threads` merge disjoint groups; the result does not depend on it.
void MergeResults(AggregateResult& out, const std::vector<PartialRef>& partials, size_t buckets, size_t threads = 1);

// Builds the SessionMarks of one source (a segment, the memtable) from its batches, added in read order.
class SessionMarksBuilder {
 public:
  explicit SessionMarksBuilder(const SessionQuery& query) : query_(query) {}
  // Adds the start events of `batch` that meet the query's filter and its end events, those with a key.
  void Add(const EventBatch& batch);
  // The marks, in the order they were added; the builder is spent.
  SessionMarks Finish();

 private:
  const SessionQuery& query_;
  SessionMarks out_;
  std::map<GroupKey, uint32_t> group_index_;  // group → index in out_.groups
};

// The text form of a group value for numbers: integers without a fraction ("17"), others shortest
// round-trip ("0.5").
std::string FormatNumber(double value);

// Exact percentile (Hyndman-Fan type 7) of `values` (reordered); nullopt when empty.
std::optional<double> Percentile(std::vector<double>& values, double p);

}  // namespace analytics::query
