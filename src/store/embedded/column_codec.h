// Value encodings of segment format 3 (docs/formats/segment.md): string dictionaries with back-reference
// codes, and the typed value columns that `data` properties are shredded into. Writers build the
// uncompressed bytes of one column block; readers decode them with bounds checks and return false on any
// malformed input (the caller turns that into Corruption naming the file and the column). Decoded strings are
// views into the block or into a storage string next to them, which must outlive them.
// Thread-safety: plain values, one per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/embedded/codec.h"
#include "store/embedded/column_json.h"

namespace analytics::store::embedded {


// The length of the longest common prefix of `a` and `b` (compared eight bytes at a time).
size_t CommonPrefixSize(std::string_view a, std::string_view b);

// A list of strings, front-coded: varint n; n varints, each the length of the prefix shared with the previous
// string; n varints, each (stored bytes of the rest << 1 | hex); then the rests' bytes. Sorted or similar
// strings ("u_...", "s-...", "ord_1000..") do not repeat their common start; a rest that is lower-case hex of
// even length (hashes, "s-<hex>" session ids) is stored as its bytes (hex flag 1). The decoded size is capped
// at kMaxFrontCodingExpansion times the encoded size plus kFrontCodingSlack (the writer falls back to no
// sharing past that), so a hostile prefix length cannot blow up memory.
inline constexpr uint64_t kMaxFrontCodingExpansion = 16;
inline constexpr uint64_t kFrontCodingSlack = 65536;
void PutStringList(std::string& out, const std::vector<std::string_view>& values);
// At most `max_count` strings; they are decoded into `storage` (reallocated) and `values` points into it.
bool ReadStringList(Reader& reader, uint64_t max_count, std::string& storage,
                    std::vector<std::string_view>& values);

// The user column of a segment part after the first (format 4): varint n; per user (ascending) a varint: k >= 1
// = the user at index (previous reference + k) of the first part's users (`base`, ascending; the first
// reference counts from -1), 0 = a user the first part does not have; then a string list of those users. A
// rare event's user nearly always has other events in the segment, so a part pays a byte or two per user
// instead of the 73-byte pseudonym.
inline constexpr uint32_t kExtraUser = UINT32_MAX;
void PutUserRefs(std::string& out, const std::vector<std::string_view>& users,
                 const std::vector<std::string_view>& base);
struct UserRefs {
  std::vector<uint32_t> codes;             // per user: its index in `base`, or kExtraUser
  std::vector<std::string_view> extras;    // the others, in order (views into the storage string)
};
// Exactly `count` users, references below `base_count`.
bool ReadUserRefs(Reader& reader, uint64_t count, uint64_t base_count, std::string& storage, UserRefs& out);

// Distinct strings numbered 0, 1, ... in first-seen order: the writer's dictionaries, property names, users and
// types. Writing a segment looks up several strings per row, so this is an open-addressing table (linear
// probing, at most half full) whose slots hold a 32-bit hash tag next to where the string is: a lookup hashes
// the string once (XXH3) and compares bytes only on a tag match. The strings are copied into one buffer, each
// after a header with its length and id, so the caller need not keep them alive, and a hit touches two places
// (its slot, then the header and bytes together): large dictionaries miss the cache on every lookup, and a
// third access (the id's entry) cost as much as the two others.
class StringIndex {
 public:
  // The id of `value`, and whether it was new (it then gets id size()).
  std::pair<uint32_t, bool> Insert(std::string_view value);
  // The id of `value`, or kNotFound.
  static constexpr uint32_t kNotFound = UINT32_MAX;
  uint32_t Find(std::string_view value) const;
  size_t size() const { return entries_.size(); }
  std::string_view value(uint32_t id) const {
    return {bytes_.data() + entries_[id].offset + kHeaderBytes, entries_[id].length};
  }
  // Every string by id (views valid until the next Insert).
  std::vector<std::string_view> Values() const;

 private:
  struct Header {  // in bytes_ before each string
    uint64_t length;
    uint32_t id;
    uint32_t unused = 0;  // no padding: the header is copied into bytes_ as it is
  };
  static constexpr size_t kHeaderBytes = sizeof(Header);
  struct Entry {
    uint64_t hash;
    size_t offset;  // of the header in bytes_
    size_t length;
  };
  struct Slot {
    uint64_t offset_plus_one = 0;  // of the header in bytes_; 0: empty
    uint32_t tag = 0;              // the hash's high half
  };
  // The slot holding `text`, or the empty slot where it would go.
  size_t Probe(std::string_view text, uint64_t hash) const;
  void Grow();

  std::vector<Slot> slots_;
  std::vector<Entry> entries_;
  std::string bytes_;
};

// A dictionary of distinct strings in first-seen order plus one code per value. The code of a value seen
// before is (number of distinct values so far) - (its index), a new value is 0: new ids cost nothing, and a
// value repeated soon after (a session id in the same user run) gets a small code.
class StringDictWriter {
 public:
  void Add(std::string_view value);
  size_t values() const { return values_; }
  // Appends the distinct strings (PutStringList), then one varint code per added value.
  void Finish(std::string& out) const;

 private:
  StringIndex index_;
  std::string codes_;
  size_t values_ = 0;
  // The previous value (a view into index_, valid until its next Insert) and its id: values come in runs (a
  // user's session id, platform, country), and a repeat then costs one comparison instead of a lookup.
  std::string_view last_value_;
  uint32_t last_id_ = 0;
};

// Reads what StringDictWriter::Finish wrote, with `count` values: `dictionary` (pointing into `storage`)
// and per value its index.
bool ReadStringDict(Reader& reader, uint64_t count, std::string& storage,
                    std::vector<std::string_view>& dictionary, std::vector<uint32_t>& codes);

// Per-value type tags of a property column.
enum ValueTag : uint8_t {
  kTagNull = 0,
  kTagFalse = 1,
  kTagTrue = 2,
  kTagInt = 3,      // canonical int64 literal
  kTagDouble = 4,   // canonical double literal (shortest to_chars form)
  kTagString = 5,   // string whose literal is the canonical escaping of its value
  kTagRaw = 6,      // anything else, kept as its exact JSON text (arrays, objects, "1.50", "\u00e9", ...)
  kTagUser = 7,     // the string equal to the row's user (data.user_id)
  kTagUserRef = 8,  // a string equal to another user of the segment (friend_user_id): its user list index
  kTagCount = 9,
};

// How many bytes `raw` takes once compressed (lets writers pick the encoding that compresses best).
using CompressedSize = std::function<size_t(std::string_view raw)>;

// Collects the values of one property (rows where it is present, in row order) and encodes the column.
class PropertyColumnWriter {
 public:
  void AddNull() { tags_.push_back(kTagNull); }
  void AddBool(bool value) { tags_.push_back(value ? kTagTrue : kTagFalse); }
  // `number` must be canonical as int or as double; `text` is its literal (kept until Finish).
  void AddNumber(const CanonicalNumber& number, std::string_view text);
  void AddString(std::string_view value);  // unescaped value
  void AddRaw(std::string_view text);      // exact JSON text
  void AddUser() { tags_.push_back(kTagUser); }
  void AddUserRef(uint32_t user_idx) {
    tags_.push_back(kTagUserRef);
    user_refs_.push_back(user_idx);
  }
  size_t values() const { return tags_.size(); }
  // Appends the column's bytes (layout in docs/formats/segment.md).
  void Finish(std::string& out, const CompressedSize& compressed_size);

 private:
  static constexpr uint8_t kTagNumber = kTagCount;  // decided in Finish: int or double for the whole column
  struct Number {
    CanonicalNumber value;
    std::string_view text;
  };
  std::vector<uint8_t> tags_;
  std::vector<Number> numbers_;
  // Dictionary-coded as they come: the value is in cache now, and would be a cache miss again in Finish.
  StringDictWriter strings_;
  StringDictWriter raws_;
  std::vector<int64_t> user_refs_;
};

// A decoded property column: per value its tag and a slot (index into `ints` / `doubles` / `user_refs`, or
// the dictionary index into `strings` / `raws`). User indexes are not checked against the user list here.
struct PropertyValues {
  std::vector<uint8_t> tags;
  std::vector<uint32_t> slots;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::vector<int64_t> user_refs;
  std::vector<std::string_view> strings;  // unescaped values
  std::vector<std::string_view> raws;     // exact JSON texts
  std::string string_storage, raw_storage;  // what `strings` and `raws` point into
};

// Decodes a property column of `count` values; false on malformed or trailing bytes. `out` must not be moved
// afterwards (its views point into its own storage).
bool DecodePropertyValues(std::string_view block, uint64_t count, PropertyValues& out);

// Unsigned integers as one byte per value (its bit width) followed by the values' bits below their top bit,
// packed LSB first: the widths compress well (zstd entropy-codes them) and the low bits, which are noise, cost
// exactly their number.
void PutBitPacked(std::string& out, const std::vector<uint64_t>& values);
bool ReadBitPacked(Reader& reader, uint64_t count, std::vector<uint64_t>& values);

// Unsigned values as varints, or bit-packed.
void PutUintValues(std::string& out, const std::vector<uint64_t>& values, bool bit_packed);
bool ReadUintValues(Reader& reader, uint64_t count, bool bit_packed, std::vector<uint64_t>& values);

// Integers: a mode byte (bit 1: each value minus the previous one; bit 2: bit-packed instead of varints), then
// the zigzag-coded values. The writer tries the four modes and keeps the one `compressed_size` finds smallest
// (the raw size when it is empty).
void PutIntStream(std::string& out, const std::vector<int64_t>& values, const CompressedSize& compressed_size);
bool ReadIntStream(Reader& reader, uint64_t count, std::vector<int64_t>& values);

}  // namespace analytics::store::embedded
