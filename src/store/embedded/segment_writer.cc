// Segment format 4 writer: WriteSegment (docs/formats/segment.md).
//
// The sorted rows are first split into parts (PlanParts): the rows of rare event types are stored apart, so
// that a query on such a type (purchases, refunds: well under 1% of the events) reads a few small blocks
// instead of whole columns. Each part is encoded like a whole format 3 segment by SegmentEncoder, which makes
// three passes over the part's rows: (1) number the property names of the rows' `data` members (split by
// SortRows), (2) keep the kMaxPropertyColumns most used names, (3) encode: per row one layout code (type, source,
// shape, flags), per present property one typed value, the envelope columns. Every typed value is checked to
// render back to its exact text; what would not goes to the exact-text forms (a raw value, or the whole `data`
// in data_raw), so the round trip is exact by construction.
// Speed: the flush thread runs this for every stored event, so the per-row work avoids what dominated it.
// SortRows is the one pass over the events, in the order they were appended (close to their order in memory):
// it numbers users, types and sources, so later passes compare integers, splits `data` once (DataMembers), and
// copies what pass 3 reads of each event into one compact place (RowCopies). The passes in segment order,
// which is random in memory, read those copies and prefetch them ahead. The rows are ordered by a counting
// sort on the users' ranks; the dictionaries are StringIndex tables, filled while the value is in cache; the
// encodings chosen by trial compression keep the winner's compressed bytes for the file.
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "store/embedded/codec.h"
#include "store/embedded/column_codec.h"
#include "store/embedded/column_json.h"
#include "store/embedded/file_util.h"
#include "store/embedded/segment.h"
#include "store/embedded/segment_format.h"

namespace analytics::store::embedded {
namespace {

using common::Result;
using common::Status;
using events::EventView;
using events::StoredEvent;
using namespace v3;  // NOLINT: the format's constants

constexpr uint32_t kDropped = UINT32_MAX;


// A member value sorted into what the property column can hold.
struct Classified {
  enum Kind : uint8_t { kNull, kFalse, kTrue, kNumber, kString, kRaw } kind = kRaw;
  CanonicalNumber number;
  std::string_view text;  // kString: the unescaped value; kNumber, kRaw: the literal
};

// `arena` keeps unescaped strings alive until the columns are encoded. Fills `out` (a fresh Classified) in
// place: a returned one was copied into the row's vector with wide loads right after its narrow stores.
void Classify(std::string_view value, std::deque<std::string>& arena, std::string& scratch, Classified& out) {
  out.text = value;
  if (value == "null") {
    out.kind = Classified::kNull;
  } else if (value == "true") {
    out.kind = Classified::kTrue;
  } else if (value == "false") {
    out.kind = Classified::kFalse;
  } else if (value.front() == '"') {
    const std::string_view content = value.substr(1, value.size() - 2);
    if (IsPlainJsonString(content)) {
      out.kind = Classified::kString;
      out.text = content;
    } else if (UnescapeJsonString(content, scratch)) {
      std::string escaped;
      AppendJsonEscaped(escaped, scratch);
      if (escaped == content) {  // the canonical escaping: rebuilt exactly from the value
        arena.push_back(scratch);
        out.kind = Classified::kString;
        out.text = arena.back();
      }
    }
  } else if (value.front() == '-' || (value.front() >= '0' && value.front() <= '9')) {
    out.number = ClassifyNumber(value);
    if (out.number.is_int || out.number.is_double) out.kind = Classified::kNumber;
  }
}

double NumberAsDouble(const CanonicalNumber& number) {
  return number.is_double ? number.double_value : static_cast<double>(number.int_value);
}

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

struct LayoutKey {
  uint32_t type, source, shape, flags;
  bool operator==(const LayoutKey&) const = default;
};
struct LayoutKeyHash {
  size_t operator()(const LayoutKey& key) const {
    const uint64_t high = (uint64_t{key.type} << 32) | key.source;
    const uint64_t low = (uint64_t{key.shape} << 32) | key.flags;
    return std::hash<uint64_t>()(high * 0x9E3779B97F4A7C15ULL ^ low);
  }
};

// The passes over the rows in segment order read each row at a random place in memory (a segment's events
// outgrow the caches): without prefetching, every row costs several cache misses in every pass. Before row
// `row_idx` is visited, what it reads is fetched kPrefetchRows rows ahead, or in two steps (an address, then
// what it points to, half as far ahead), see PrefetchAhead, RowCopies and SegmentEncoder::PrefetchMembersAhead.
// The prefetching helpers must be inlined: GCC finds a function that only prefetches free of side effects and
// drops its calls.
constexpr size_t kPrefetchRows = 16;

[[gnu::always_inline]] inline void PrefetchBytes(const void* address, size_t size) {
  const char* bytes = static_cast<const char*>(address);
  for (size_t offset = 0; offset < size; offset += 64) __builtin_prefetch(bytes + offset);
}

// What pass 3 reads of each event (id, data, the typed fields, extensions, flags), copied by SortRows into
// one buffer, a row's bytes together, in the order the events were appended (close to their order in memory).
// Pass 3 visits the rows in segment order, where the event, its data, its id and its session id were each one
// or more cache misses (nine to thirteen lines per row, and the core tracks about ten misses at a time); a copy
// is a few adjacent lines, fetched ahead at once. The copies cost about as much memory as the events' text
// while the segment is written.
class RowCopies {
 public:
  // A row's fields, as views into the copy.
  struct Row {
    std::string_view id, data, extensions;
    std::string_view strings[kWellKnownCount];  // the typed string fields (empty at kFieldAmount)
    std::optional<double> amount;
    bool time_defaulted = false;
    bool user_in_subject = false;
  };

  // Copies the next input row (rows must come in input order); returns the copy's data.
  std::string_view Add(const EventView& event) {
    Header header;
    header.flags = static_cast<uint8_t>((event.time_defaulted ? kTimeDefaulted : 0) |
                                        (event.user_in_subject ? kUserInSubject : 0) |
                                        (event.amount ? kHasAmount : 0));
    header.amount = event.amount.value_or(0);
    size_t size = sizeof(Header);
    for (int field_idx = 0; field_idx < kFieldCount; ++field_idx) {
      const std::string_view text = event.*kFields[field_idx];
      // Event sizes are capped by the intake far below 4 GiB.
      header.lengths[field_idx] = static_cast<uint32_t>(text.size());
      size += text.size();
    }
    char* const start = Allocate(size);
    std::memcpy(start, &header, sizeof(Header));
    char* cursor = start + sizeof(Header);
    for (int field_idx = 0; field_idx < kFieldCount; ++field_idx) {
      const std::string_view text = event.*kFields[field_idx];
      if (!text.empty()) std::memcpy(cursor, text.data(), text.size());
      cursor += text.size();
    }
    rows_.push_back(Extent{start, size});
    return std::string_view(start + sizeof(Header), header.lengths[kData]);
  }

  Row Get(uint32_t input_idx) const {
    const char* cursor = rows_[input_idx].start;
    Header header;
    std::memcpy(&header, cursor, sizeof(Header));
    cursor += sizeof(Header);
    std::string_view fields[kFieldCount];
    for (int field_idx = 0; field_idx < kFieldCount; ++field_idx) {
      fields[field_idx] = std::string_view(cursor, header.lengths[field_idx]);
      cursor += header.lengths[field_idx];
    }
    Row row;
    row.data = fields[kData];
    row.id = fields[kId];
    row.extensions = fields[kExtensions];
    for (int field = 0; field < kWellKnownCount; ++field) {
      if (field != kFieldAmount) row.strings[field] = fields[kTypedFields[field]];
    }
    if (header.flags & kHasAmount) row.amount = header.amount;
    row.time_defaulted = header.flags & kTimeDefaulted;
    row.user_in_subject = header.flags & kUserInSubject;
    return row;
  }

  // Fetches the extent of input row `input_idx` (a pass fetches it some rows ahead, and its copy half as far).
  [[gnu::always_inline]] void PrefetchExtent(uint32_t input_idx) const { __builtin_prefetch(&rows_[input_idx]); }
  [[gnu::always_inline]] void PrefetchCopy(uint32_t input_idx) const {
    PrefetchBytes(rows_[input_idx].start, rows_[input_idx].size);
  }

 private:
  // The copied fields in their order in a copy.
  enum Field { kData, kId, kExtensions, kGameId, kSessionId, kCurrency, kCountry, kPlatform, kFieldCount };
  static constexpr std::string_view EventView::*kFields[kFieldCount] = {
      &EventView::data,       &EventView::id,       &EventView::extensions, &EventView::game_id,
      &EventView::session_id, &EventView::currency, &EventView::country,    &EventView::platform};
  // By WellKnownField: its copied field (amount is in the header).
  static constexpr int kTypedFields[kWellKnownCount] = {kGameId, kSessionId, -1, kCurrency, kCountry, kPlatform};
  static constexpr uint8_t kTimeDefaulted = 1, kUserInSubject = 2, kHasAmount = 4;
  struct Header {
    double amount = 0;
    uint32_t lengths[kFieldCount] = {};
    uint8_t flags = 0;
  };
  struct Extent {
    const char* start;
    size_t size;
  };
  static constexpr size_t kChunkBytes = size_t{1} << 20;

  // `size` bytes that stay put (chunks are never reallocated, so the views handed out stay valid).
  char* Allocate(size_t size) {
    if (chunks_.empty() || chunk_used_ + size > chunk_size_) {
      chunk_size_ = std::max(kChunkBytes, size);
      chunks_.push_back(std::make_unique_for_overwrite<char[]>(chunk_size_));
      chunk_used_ = 0;
    }
    char* const out = chunks_.back().get() + chunk_used_;
    chunk_used_ += size;
    return out;
  }

  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_used_ = 0, chunk_size_ = 0;
  std::vector<Extent> rows_;  // by input row
};

// Every row's `data` split into its members once, by SortRows in the order the events were appended (close to
// their order in memory): the encoder's passes run in segment order, where every event is a cache miss, and
// so read these compact arrays instead of each event's text. Names are interned segment-wide here; each part
// numbers them again in its own first-seen order (SegmentEncoder::ScanNames).
struct DataMembers {
  enum Kind : uint8_t { kNoData, kRaw, kObject };  // kRaw: not splittable, a name not written back, or twice
  StringIndex keys;                               // escaped key text -> key id
  std::vector<std::string> names;                 // by key id: unescaped
  std::vector<uint8_t> writable;                  // by key id: the name is written back exactly
  std::vector<uint64_t> last_row;                 // by key id: input row + 1 of its last use
  std::vector<std::vector<uint32_t>> type_keys;   // by type id: the key ids of the last kObject row of the type
  std::vector<Kind> kind;                         // by input row
  // By input row and one past: its first member. A kObject row has all its members, a kRaw row those up to
  // the first that makes it raw, inclusive (they count as seen), a row that did not split none.
  std::vector<uint64_t> start;
  struct Member {
    std::string_view value;  // its text
    uint32_t key;            // key id
  };
  std::vector<Member> members;

  // Splits the next input row's `data` (rows must come in input order).
  void Add(std::string_view text, uint32_t type, std::vector<JsonMember>& scratch_members, std::string& scratch);
  // The id of an escaped key (new keys numbered in first-seen order).
  uint32_t KeyId(std::string_view key, std::string& scratch);
};

uint32_t DataMembers::KeyId(std::string_view key, std::string& scratch) {
  const auto [key_id, inserted] = keys.Insert(key);
  if (inserted) {
    std::string name;
    bool name_writable = true;
    if (IsPlainJsonString(key)) {
      name = key;
    } else {
      std::string escaped;
      name_writable = UnescapeJsonString(key, scratch) && (AppendJsonEscaped(escaped, scratch), escaped == key);
      name = scratch;
    }
    names.push_back(std::move(name));
    writable.push_back(name_writable);
    last_row.push_back(0);
  }
  return key_id;
}

void DataMembers::Add(std::string_view text, uint32_t type, std::vector<JsonMember>& scratch_members,
                      std::string& scratch) {
  const uint64_t row = kind.size() + 1;  // as in last_row
  start.push_back(members.size());
  if (text.empty()) {
    kind.push_back(kNoData);
    return;
  }
  if (!SplitJsonObject(text, /*allow_whitespace=*/false, scratch_members)) {
    kind.push_back(kRaw);
    return;
  }
  if (type >= type_keys.size()) type_keys.resize(type + 1);
  // Events of one type mostly list the same names in the same order: the previous row of the type's names
  // are checked first, a comparison instead of a lookup.
  std::vector<uint32_t>& expected = type_keys[type];
  const size_t first_member = members.size();
  for (size_t member_idx = 0; member_idx < scratch_members.size(); ++member_idx) {
    const std::string_view key = scratch_members[member_idx].key;
    const uint32_t key_id = member_idx < expected.size() && keys.value(expected[member_idx]) == key
                                ? expected[member_idx]
                                : KeyId(key, scratch);
    members.push_back(Member{scratch_members[member_idx].value, key_id});
    // A name we could not write back exactly, or a repeated name (a column holds one value per row).
    if (!writable[key_id] || last_row[key_id] == row) {
      kind.push_back(kRaw);
      return;
    }
    last_row[key_id] = row;
  }
  kind.push_back(kObject);
  expected.clear();
  for (size_t member_idx = first_member; member_idx < members.size(); ++member_idx) {
    expected.push_back(members[member_idx].key);
  }
}

// The distinct users, types and sources of a segment, which RowSet's ids refer to, the rows' copies and their
// split `data`.
struct SegmentStrings {
  StringIndex users, types, sources;
  std::vector<std::string_view> users_by_rank;  // ascending, views into user_text
  // The users' text in rank order: the encoder reads them in that order (the user list, and each row's user),
  // which is random in `users`.
  std::string user_text;
  RowCopies copies;
  DataMembers data;  // views into `copies`
};

// Rows in segment order, with their envelope as integers, so that the encoder compares and hashes no strings
// of these columns and reads less of each event: SortRows gathers them in the order the events were appended
// (close to their order in memory), while the segment's order is random in memory, a cache miss per access.
struct RowSet {
  std::vector<const EventView*> rows;
  std::vector<uint32_t> inputs;   // per row: its index in WriteSegment's input (DataMembers' rows)
  std::vector<uint32_t> users;    // per row: its user's rank in SegmentStrings::users_by_rank
  std::vector<uint32_t> types;    // per row: its type's id in SegmentStrings::types
  std::vector<uint32_t> sources;  // per row: its source's id in SegmentStrings::sources
  std::vector<int64_t> times;     // per row: time_ms
  std::vector<int64_t> received;  // per row: received_ms

  void Reserve(size_t count) {
    rows.reserve(count);
    inputs.reserve(count);
    users.reserve(count);
    types.reserve(count);
    sources.reserve(count);
    times.reserve(count);
    received.reserve(count);
  }
  void Resize(size_t count) {
    rows.resize(count);
    inputs.resize(count);
    users.resize(count);
    types.resize(count);
    sources.resize(count);
    times.resize(count);
    received.resize(count);
  }
  // Row `row_idx` (of a Resize'd set) becomes row `from_idx` of `from`.
  void Set(size_t row_idx, const RowSet& from, size_t from_idx) {
    rows[row_idx] = from.rows[from_idx];
    inputs[row_idx] = from.inputs[from_idx];
    users[row_idx] = from.users[from_idx];
    types[row_idx] = from.types[from_idx];
    sources[row_idx] = from.sources[from_idx];
    times[row_idx] = from.times[from_idx];
    received[row_idx] = from.received[from_idx];
  }
  void Append(const RowSet& from, size_t row_idx) {
    rows.push_back(from.rows[row_idx]);
    inputs.push_back(from.inputs[row_idx]);
    users.push_back(from.users[row_idx]);
    types.push_back(from.types[row_idx]);
    sources.push_back(from.sources[row_idx]);
    times.push_back(from.times[row_idx]);
    received.push_back(from.received[row_idx]);
  }
};

// Before row `row_idx` is visited, the event kPrefetchRows rows ahead is fetched, and the `strings` of the one
// half as far ahead (their addresses are in that event, which has arrived by then).
template <typename... Strings>
[[gnu::always_inline]] inline void PrefetchAhead(const std::vector<const EventView*>& rows, size_t row_idx,
                                                 Strings... strings) {
  if (row_idx + kPrefetchRows < rows.size()) PrefetchBytes(rows[row_idx + kPrefetchRows], sizeof(EventView));
  if (row_idx + kPrefetchRows / 2 < rows.size()) {
    const EventView& row = *rows[row_idx + kPrefetchRows / 2];
    (PrefetchBytes((row.*strings).data(), (row.*strings).size()), ...);
  }
}

// Segment-wide string ids renumbered in first-seen order, as a part's layout column lists its own values.
class LocalIds {
 public:
  explicit LocalIds(const StringIndex& segment_values)
      : segment_values_(segment_values), local_(segment_values.size(), kDropped) {}
  uint32_t Of(uint32_t segment_id) {
    uint32_t& local = local_[segment_id];
    if (local == kDropped) {
      local = static_cast<uint32_t>(values_.size());
      values_.push_back(segment_values_.value(segment_id));
    }
    return local;
  }
  const std::vector<std::string_view>& values() const { return values_; }

 private:
  const StringIndex& segment_values_;
  std::vector<uint32_t> local_;  // by segment id: the local id or kDropped
  std::vector<std::string_view> values_;
};

uint64_t Wrapping(int64_t value, int64_t base) { return static_cast<uint64_t>(value) - static_cast<uint64_t>(base); }

// What two of the receive time modes share: the distinct receive times, ascending, and each row's index in them.
struct ReceivedIndex {
  std::vector<int64_t> distinct;
  std::vector<uint32_t> value_of_row;
};

// Receive times take few distinct values (one per intake batch): each row's value is looked up in a hash table
// (linear probing, at most half full), and only the distinct values are sorted.
ReceivedIndex IndexReceived(const std::vector<int64_t>& received) {
  std::vector<int64_t> values;                 // by id, in first-seen order
  std::vector<uint32_t> id_of_row(received.size());
  std::vector<uint32_t> slots(16, kDropped);   // ids; the size a power of two
  int slot_bits = 4;
  const auto slot_of = [&](int64_t value) {
    size_t slot_idx = (static_cast<uint64_t>(value) * 0x9E3779B97F4A7C15ULL) >> (64 - slot_bits);
    while (slots[slot_idx] != kDropped && values[slots[slot_idx]] != value) {
      slot_idx = (slot_idx + 1) & (slots.size() - 1);
    }
    return slot_idx;
  };
  for (size_t row_idx = 0; row_idx < received.size(); ++row_idx) {
    size_t slot_idx = slot_of(received[row_idx]);
    if (slots[slot_idx] == kDropped) {
      if (2 * (values.size() + 1) > slots.size()) {
        ++slot_bits;
        slots.assign(slots.size() * 2, kDropped);
        for (uint32_t id = 0; id < values.size(); ++id) slots[slot_of(values[id])] = id;
        slot_idx = slot_of(received[row_idx]);
      }
      slots[slot_idx] = static_cast<uint32_t>(values.size());
      values.push_back(received[row_idx]);
    }
    id_of_row[row_idx] = slots[slot_idx];
  }
  std::vector<uint32_t> order(values.size());
  for (uint32_t id = 0; id < order.size(); ++id) order[id] = id;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return values[a] < values[b]; });
  ReceivedIndex index;
  std::vector<uint32_t> rank(values.size());
  for (uint32_t position = 0; position < order.size(); ++position) {
    rank[order[position]] = position;
    index.distinct.push_back(values[order[position]]);
  }
  index.value_of_row.resize(received.size());
  for (size_t row_idx = 0; row_idx < received.size(); ++row_idx) {
    index.value_of_row[row_idx] = rank[id_of_row[row_idx]];
  }
  return index;
}

// Receive times, in one of three modes (the writer keeps the one that compresses best):
// 0: the distinct values (ascending, delta-coded), then per row the value's index: at a user run's start as
//    is, else as the zigzag difference from the previous row's index.
// 1: per row zigzag(received - time): live traffic, a small lag.
// 2: the distinct values ordered by the earliest event time among their rows, with those times; per row the
//    zigzag difference between the value's index and the index predicted from the row's time (the last value
//    whose earliest time is <= it): bulk loads, where each intake batch covers its own stretch of time.
std::string EncodeReceived(const RowSet& rows, const ReceivedIndex& index, const std::vector<uint8_t>& run_start,
                           int mode) {
  std::string out(1, static_cast<char>(mode));
  const size_t row_count = rows.received.size();
  if (mode == 1) {
    for (size_t row_idx = 0; row_idx < row_count; ++row_idx) {
      PutZigzag(out, static_cast<int64_t>(Wrapping(rows.received[row_idx], rows.times[row_idx])));
    }
    return out;
  }
  if (mode == 2) {
    std::vector<int64_t> earliest(index.distinct.size(), INT64_MAX);
    for (size_t row_idx = 0; row_idx < row_count; ++row_idx) {
      int64_t& time = earliest[index.value_of_row[row_idx]];
      time = std::min(time, rows.times[row_idx]);
    }
    struct Entry {
      int64_t time, received;
      uint32_t value_idx;
    };
    std::vector<Entry> entries;
    entries.reserve(index.distinct.size());
    for (uint32_t value_idx = 0; value_idx < index.distinct.size(); ++value_idx) {
      entries.push_back(Entry{earliest[value_idx], index.distinct[value_idx], value_idx});
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return a.time != b.time ? a.time < b.time : a.received < b.received;
    });
    PutVarint(out, entries.size());
    std::vector<int64_t> entry_times(entries.size());
    std::vector<int64_t> entry_of_value(entries.size());
    for (size_t entry_idx = 0; entry_idx < entries.size(); ++entry_idx) {
      const Entry& entry = entries[entry_idx];
      if (entry_idx == 0) {
        PutZigzag(out, entry.received);
        PutZigzag(out, entry.time);
      } else {
        PutZigzag(out, static_cast<int64_t>(Wrapping(entry.received, entries[entry_idx - 1].received)));
        PutVarint(out, Wrapping(entry.time, entries[entry_idx - 1].time));
      }
      entry_times[entry_idx] = entry.time;
      entry_of_value[entry.value_idx] = static_cast<int64_t>(entry_idx);
    }
    for (size_t row_idx = 0; row_idx < row_count; ++row_idx) {
      const auto after = std::upper_bound(entry_times.begin(), entry_times.end(), rows.times[row_idx]);
      const int64_t predicted = std::max<int64_t>(0, (after - entry_times.begin()) - 1);
      PutZigzag(out, entry_of_value[index.value_of_row[row_idx]] - predicted);
    }
    return out;
  }
  PutVarint(out, index.distinct.size());
  for (size_t value_idx = 0; value_idx < index.distinct.size(); ++value_idx) {
    if (value_idx == 0) {
      PutZigzag(out, index.distinct[0]);
    } else {
      PutVarint(out, Wrapping(index.distinct[value_idx], index.distinct[value_idx - 1]));
    }
  }
  int64_t previous_code = 0;
  for (size_t row_idx = 0; row_idx < row_count; ++row_idx) {
    const int64_t code = index.value_of_row[row_idx];
    if (run_start[row_idx]) {
      PutVarint(out, static_cast<uint64_t>(code));
    } else {
      PutZigzag(out, code - previous_code);
    }
    previous_code = code;
  }
  return out;
}

class Compressor {
 public:
  explicit Compressor(int level) : context_(ZSTD_createCCtx(), ZSTD_freeCCtx), level_(level) {}
  // The compressed bytes, valid until the next call: one buffer serves every block and the many trial
  // compressions that choose encodings, which need only the size.
  Result<std::string_view> Compress(std::string_view raw) {
    const size_t bound = ZSTD_compressBound(raw.size());
    if (buffer_.size() < bound) buffer_.resize(bound);
    const size_t size = ZSTD_compressCCtx(context_.get(), buffer_.data(), bound, raw.data(), raw.size(), level_);
    if (ZSTD_isError(size)) return Status::Internal(std::string("zstd: ") + ZSTD_getErrorName(size));
    return std::string_view(buffer_.data(), size);
  }

 private:
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> context_;
  int level_;
  std::string buffer_;
};


// Encodes one segment (the rows sorted by WriteSegment). One instance per segment; single-threaded.
class SegmentEncoder {
 public:
  // `base_users`: for a part after the first, the first part's users, which its user column refers to.
  SegmentEncoder(const RowSet& rows, const SegmentStrings& strings, Compressor& compressor,
                 const std::vector<std::string_view>* base_users = nullptr)
      : rows_(rows.rows), row_set_(rows), strings_(strings), compressor_(compressor), base_users_(base_users),
        compressed_size_([this](std::string_view raw) -> size_t {
          auto compressed = compressor_.Compress(raw);
          return compressed.ok() ? compressed->size() : raw.size();
        }),
        types_(strings.types), sources_(strings.sources) {}

  // The users of the rows (ascending, one per run), after Encode.
  const std::vector<std::string_view>& users() const { return users_; }

  // The uncompressed column blocks (name, bytes) of the rows, in file order.
  Result<std::vector<std::pair<std::string, std::string>>> Encode() {
    ScanNames();
    ChooseColumns();
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) EncodeRow(row_idx);
    std::vector<std::pair<std::string, std::string>> blocks = Blocks();
    ANALYTICS_RETURN_IF_ERROR(ChooseTime(blocks[kTime].second));
    ANALYTICS_RETURN_IF_ERROR(ChooseReceived(blocks[kReceived].second));
    return blocks;
  }

  // The compressed bytes of block `block_idx` of Encode's result when choosing its encoding already compressed
  // it (the same compressor, so the same bytes), else empty.
  std::string_view CompressedBlock(size_t block_idx) const {
    return block_idx < kCoreColumnCount ? std::string_view(compressed_[block_idx]) : std::string_view();
  }

 private:
  // Pass 1: which rows are shreddable objects (compact, names escaped canonically, no name twice), and the
  // names they use, numbered in first-seen order and counted. SortRows split the rows (DataMembers); the
  // members' names and values are copied in segment order for pass 3.
  void ScanNames() {
    const DataMembers& data = strings_.data;
    row_kind_.assign(rows_.size(), kShapeObject);
    member_start_.assign(rows_.size() + 1, 0);
    name_of_key_.assign(data.names.size(), kDropped);
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
      PrefetchMembersAhead(row_idx);
      member_start_[row_idx] = member_names_.size();
      const uint32_t input_idx = row_set_.inputs[row_idx];
      const DataMembers::Kind kind = data.kind[input_idx];
      if (kind == DataMembers::kNoData) {
        row_kind_[row_idx] = kShapeNoData;
        continue;
      }
      // The names a scan of the row meets before it finds the row cannot be shredded count as seen, as they
      // did when each part split its rows (the order of the property columns depends on it).
      const uint64_t first_member = data.start[input_idx];
      const uint64_t end_member = data.start[input_idx + 1];
      for (uint64_t member_idx = first_member; member_idx < end_member; ++member_idx) {
        NameOf(data.members[member_idx].key);
      }
      if (kind == DataMembers::kRaw) {
        row_kind_[row_idx] = kShapeRaw;
        continue;
      }
      for (uint64_t member_idx = first_member; member_idx < end_member; ++member_idx) {
        const uint32_t name_id = name_of_key_[data.members[member_idx].key];
        ++name_rows_[name_id];
        member_names_.push_back(name_id);
        member_values_.push_back(data.members[member_idx].value);
      }
    }
    member_start_[rows_.size()] = member_names_.size();
  }

  // The rows' entries in DataMembers are at random places too (it is in input order): the row's kind and start
  // are fetched kPrefetchRows rows ahead, its members half as far ahead.
  [[gnu::always_inline]] void PrefetchMembersAhead(size_t row_idx) {
    const DataMembers& data = strings_.data;
    if (row_idx + kPrefetchRows < rows_.size()) {
      const uint32_t input_idx = row_set_.inputs[row_idx + kPrefetchRows];
      __builtin_prefetch(&data.kind[input_idx]);
      __builtin_prefetch(&data.start[input_idx]);
      __builtin_prefetch(&data.start[input_idx + 1]);
    }
    if (row_idx + kPrefetchRows / 2 < rows_.size()) {
      const uint32_t input_idx = row_set_.inputs[row_idx + kPrefetchRows / 2];
      const uint64_t first_member = data.start[input_idx];
      PrefetchBytes(data.members.data() + first_member,
                    (data.start[input_idx + 1] - first_member) * sizeof(DataMembers::Member));
    }
  }

  // The part's name id of a segment key id (new names numbered in first-seen order).
  uint32_t NameOf(uint32_t key_id) {
    uint32_t& name_id = name_of_key_[key_id];
    if (name_id == kDropped) {
      name_id = static_cast<uint32_t>(names_.size());
      names_.push_back(strings_.data.names[key_id]);
      name_rows_.push_back(0);
    }
    return name_id;
  }

  // Pass 2: the property columns (the most used names, at most kMaxPropertyColumns, in first-seen order),
  // the typed fields' members, and the users (for references).
  void ChooseColumns() {
    for (uint32_t name_id = 0; name_id < names_.size(); ++name_id) {
      if (name_rows_[name_id] > 0) kept_.push_back(name_id);
    }
    if (kept_.size() > kMaxPropertyColumns) {
      std::stable_sort(kept_.begin(), kept_.end(),
                       [&](uint32_t a, uint32_t b) { return name_rows_[a] > name_rows_[b]; });
      kept_.resize(kMaxPropertyColumns);
      std::sort(kept_.begin(), kept_.end());
    }
    property_of_name_.assign(names_.size(), kDropped);
    std::unordered_map<std::string_view, uint32_t> property_by_name;
    for (uint32_t property_idx = 0; property_idx < kept_.size(); ++property_idx) {
      property_of_name_[kept_[property_idx]] = property_idx;
      property_by_name.emplace(names_[kept_[property_idx]], property_idx);
    }
    field_of_property_.assign(kept_.size(), -1);
    for (int field = 0; field < kWellKnownCount; ++field) {
      auto it = property_by_name.find(kWellKnownNames[field]);
      field_property_[field] = it == property_by_name.end() ? kDropped : it->second;
      if (it != property_by_name.end()) field_of_property_[it->second] = field;
    }
    properties_.resize(kept_.size());
    run_start_.assign(rows_.size(), 0);
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
      if (row_idx > 0 && row_set_.users[row_idx] == row_set_.users[row_idx - 1]) continue;  // users come in runs
      run_start_[row_idx] = 1;
      const std::string_view user = strings_.users_by_rank[row_set_.users[row_idx]];
      user_index_.Insert(user);
      user_length_[std::min<size_t>(user.size(), user_length_.size() - 1)] = 1;
    }
    row_layout_.resize(rows_.size());
    time_deltas_.reserve(rows_.size());
    if (!rows_.empty()) min_time_ = *std::min_element(row_set_.times.begin(), row_set_.times.end());
  }

  // Pass 3, one row: its run and time, its data (shape and values), typed fields, id, extensions, layout.
  void EncodeRow(size_t row_idx) {
    if (row_idx + kPrefetchRows < rows_.size()) strings_.copies.PrefetchExtent(row_set_.inputs[row_idx + kPrefetchRows]);
    if (row_idx + kPrefetchRows / 2 < rows_.size()) {
      strings_.copies.PrefetchCopy(row_set_.inputs[row_idx + kPrefetchRows / 2]);
    }
    const RowCopies::Row row = strings_.copies.Get(row_set_.inputs[row_idx]);
    const int64_t time_ms = row_set_.times[row_idx];
    if (run_start_[row_idx]) {
      users_.push_back(strings_.users_by_rank[row_set_.users[row_idx]]);
      user_runs_.push_back(0);
      time_deltas_.push_back(Wrapping(time_ms, min_time_));
    } else {
      time_deltas_.push_back(Wrapping(time_ms, row_set_.times[row_idx - 1]));
    }
    ++user_runs_.back();

    const Classified* field_value[kWellKnownCount] = {};
    const uint64_t kind = EncodeData(row_idx, row.data, field_value);
    uint32_t flags = (row.time_defaulted ? kFlagTimeDefaulted : 0) | (row.user_in_subject ? kFlagUserInSubject : 0);
    for (int field = 0; field < kWellKnownCount; ++field) {
      flags |= EncodeField(row, field, field_value[field]) << (kModeShift + 2 * field);
    }
    char uuid[16];
    if (PackUuid(row.id, uuid)) {
      flags |= kFlagUuidId;
      id_bytes_.append(uuid, 16);
    } else {
      PutBytes(id_bytes_, row.id);
    }
    extensions_.Add(row.extensions);

    if (kind != kShapeObject) {
      shape_key_.clear();
      PutVarint(shape_key_, kind);
    }
    const auto [shape_id, new_shape] = shape_ids_.Insert(shape_key_);
    if (new_shape) shapes_bytes_ += shape_key_;
    const LayoutKey key{types_.Of(row_set_.types[row_idx]), sources_.Of(row_set_.sources[row_idx]), shape_id, flags};
    auto layout_it = layout_ids_.find(key);
    if (layout_it == layout_ids_.end()) {
      layout_it = layout_ids_.emplace(key, static_cast<uint32_t>(layouts_.size())).first;
      layouts_.push_back(key);
      layout_rows_.push_back(0);
    }
    ++layout_rows_[layout_it->second];
    row_layout_[row_idx] = layout_it->second;
  }

  // The row's data: a shredded object (its shape key in shape_key_, one value per member into the property
  // columns, and the typed fields' members in `field_value`), or no data, or raw text. Returns the kind.
  uint64_t EncodeData(size_t row_idx, std::string_view data, const Classified* field_value[kWellKnownCount]) {
    if (row_kind_[row_idx] != kShapeObject) {
      if (row_kind_[row_idx] == kShapeRaw) PutBytes(data_raw_, data);
      return row_kind_[row_idx];
    }
    const size_t first_member = member_start_[row_idx];
    const size_t member_count = member_start_[row_idx + 1] - first_member;
    row_properties_.clear();
    for (size_t member_idx = 0; member_idx < member_count; ++member_idx) {
      const uint32_t property_idx = property_of_name_[member_names_[first_member + member_idx]];
      if (property_idx == kDropped) {  // a rare name without a column: the row stays text
        PutBytes(data_raw_, data);
        return kShapeRaw;
      }
      row_properties_.push_back(property_idx);
    }
    shape_key_.clear();
    PutVarint(shape_key_, kShapeObject + row_properties_.size());
    row_values_.clear();
    row_values_.reserve(member_count);  // field_value points into it
    for (size_t member_idx = 0; member_idx < member_count; ++member_idx) {
      const uint32_t property_idx = row_properties_[member_idx];
      PutVarint(shape_key_, property_idx);
      Classified& value = row_values_.emplace_back();
      Classify(member_values_[first_member + member_idx], arena_, scratch_, value);
      AddValue(strings_.users_by_rank[row_set_.users[row_idx]], property_idx, value);
      if (field_of_property_[property_idx] >= 0) field_value[field_of_property_[property_idx]] = &value;
    }
    return kShapeObject;
  }

  // `user`: the row's user.
  void AddValue(std::string_view user, uint32_t property_idx, const Classified& value) {
    PropertyColumnWriter& column = properties_[property_idx];
    switch (value.kind) {
      case Classified::kNull: column.AddNull(); return;
      case Classified::kFalse: column.AddBool(false); return;
      case Classified::kTrue: column.AddBool(true); return;
      case Classified::kNumber: column.AddNumber(value.number, value.text); return;
      case Classified::kRaw: column.AddRaw(value.text); return;
      case Classified::kString: break;
    }
    // Users in other properties: the row's own (data.user_id), or another user of the segment
    // (friend_user_id): a reference instead of the 73-byte pseudonym. Not in the typed fields' columns,
    // which stay plain strings for the fields to refer to.
    if (field_of_property_[property_idx] < 0) {
      if (value.text == user) return column.AddUser();
      if (user_length_[std::min<size_t>(value.text.size(), user_length_.size() - 1)]) {
        const uint32_t user_idx = user_index_.Find(value.text);
        if (user_idx != StringIndex::kNotFound) return column.AddUserRef(user_idx);
      }
    }
    column.AddString(value.text);
  }

  // A typed field's mode: empty, equal to its data member (as intake extracted it), or explicit (stored).
  uint32_t EncodeField(const RowCopies::Row& row, int field, const Classified* value) {
    if (field == kFieldAmount) {
      if (!row.amount) return kModeEmpty;
      if (value != nullptr && value->kind == Classified::kNumber &&
          SameBits(NumberAsDouble(value->number), *row.amount)) {
        return kModeFromData;
      }
      uint64_t bits;
      std::memcpy(&bits, &*row.amount, sizeof(bits));
      PutFixed64(explicit_amounts_, bits);
      return kModeExplicit;
    }
    const std::string_view text = row.strings[field];
    if (text.empty()) return kModeEmpty;
    if (value != nullptr && value->kind == Classified::kString && value->text == text) return kModeFromData;
    explicit_strings_[field].Add(text);
    return kModeExplicit;
  }

  // The uncompressed column blocks (name, bytes) in file order; `time` and `received` are left to ChooseTime and
  // ChooseReceived.
  std::vector<std::pair<std::string, std::string>> Blocks() {
    std::vector<std::pair<std::string, std::string>> blocks(kCoreColumnCount);
    for (int column = 0; column < kCoreColumnCount; ++column) blocks[column].first = kCoreColumnNames[column];
    {
      // Layout codes by descending use: common layouts get one-byte codes.
      std::vector<uint32_t> order(layouts_.size());
      for (uint32_t layout_idx = 0; layout_idx < order.size(); ++layout_idx) order[layout_idx] = layout_idx;
      std::stable_sort(order.begin(), order.end(),
                       [&](uint32_t a, uint32_t b) { return layout_rows_[a] > layout_rows_[b]; });
      std::vector<uint32_t> code_of(layouts_.size());
      for (uint32_t code = 0; code < order.size(); ++code) code_of[order[code]] = code;
      std::string& out = blocks[kLayout].second;
      PutVarint(out, types_.values().size());
      for (std::string_view type : types_.values()) PutBytes(out, type);
      PutVarint(out, sources_.values().size());
      for (std::string_view source : sources_.values()) PutBytes(out, source);
      PutVarint(out, shape_ids_.size());
      out += shapes_bytes_;
      PutVarint(out, layouts_.size());
      for (uint32_t layout_idx : order) {
        PutVarint(out, layouts_[layout_idx].type);
        PutVarint(out, layouts_[layout_idx].source);
        PutVarint(out, layouts_[layout_idx].shape);
        PutVarint(out, layouts_[layout_idx].flags);
      }
      for (uint32_t layout_idx : row_layout_) PutVarint(out, code_of[layout_idx]);
    }
    if (base_users_ == nullptr) {
      PutStringList(blocks[kUser].second, users_);
    } else {
      PutUserRefs(blocks[kUser].second, users_, *base_users_);
    }
    for (uint64_t run : user_runs_) PutVarint(blocks[kUserRuns].second, run);
    blocks[kId].second = std::move(id_bytes_);
    for (int field = 0; field < kWellKnownCount; ++field) {
      if (field != kFieldAmount) explicit_strings_[field].Finish(blocks[kWellKnownColumns[field]].second);
    }
    blocks[kAmount].second = std::move(explicit_amounts_);
    extensions_.Finish(blocks[kExtensions].second);
    blocks[kDataRaw].second = std::move(data_raw_);
    for (uint32_t property_idx = 0; property_idx < kept_.size(); ++property_idx) {
      std::string bytes;
      properties_[property_idx].Finish(bytes, compressed_size_);
      blocks.emplace_back(std::string(kPropertyPrefix).append(names_[kept_[property_idx]]), std::move(bytes));
    }
    return blocks;
  }

  // Times: varints, or bit-packed (random milliseconds), whichever compresses smaller (varints on a tie).
  Status ChooseTime(std::string& out) {
    std::string candidates[2] = {std::string(1, '\0'), std::string(1, '\2')};
    PutUintValues(candidates[0], time_deltas_, false);
    PutUintValues(candidates[1], time_deltas_, true);
    return KeepSmallest(candidates, kTime, out);
  }

  // Receive times: whichever of the three modes compresses smallest (the lowest mode on a tie).
  Status ChooseReceived(std::string& out) {
    const ReceivedIndex received_index = IndexReceived(row_set_.received);
    std::string candidates[3];
    for (int mode = 0; mode <= 2; ++mode) candidates[mode] = EncodeReceived(row_set_, received_index, run_start_, mode);
    return KeepSmallest(candidates, kReceived, out);
  }

  // Moves the first of the candidates that compresses smallest into `out`, and keeps its compressed bytes for
  // the file (CompressedBlock).
  template <size_t kCount>
  Status KeepSmallest(std::string (&candidates)[kCount], CoreColumn column, std::string& out) {
    size_t best_size = SIZE_MAX;
    for (std::string& candidate : candidates) {
      ANALYTICS_ASSIGN_OR_RETURN(std::string_view compressed, compressor_.Compress(candidate));
      if (compressed.size() < best_size) {
        best_size = compressed.size();
        compressed_[column].assign(compressed);
        out = std::move(candidate);
      }
    }
    return Status::Ok();
  }

  const std::vector<const EventView*>& rows_;  // sorted by (user, time, id)
  const RowSet& row_set_;                        // rows_ and what is known of them
  const SegmentStrings& strings_;
  Compressor& compressor_;
  const std::vector<std::string_view>* base_users_;
  const CompressedSize compressed_size_;
  std::string scratch_;

  // Names (pass 1) and columns (pass 2).
  std::vector<uint32_t> name_of_key_;                       // segment key id -> name id or kDropped
  std::vector<std::string_view> names_;                     // unescaped, by name id
  std::vector<uint64_t> name_rows_;                         // rows using each name
  std::vector<uint64_t> row_kind_;                          // kShapeNoData / kShapeRaw / kShapeObject
  std::vector<uint32_t> member_names_;                      // name ids of shreddable rows' members, in order
  std::vector<std::string_view> member_values_;             // their values' texts, likewise
  std::vector<uint64_t> member_start_;                      // per row and one past: first entry in member_names_
  std::vector<uint32_t> kept_;                              // name ids with a column, by property index
  std::vector<uint32_t> property_of_name_;                  // name id -> property index or kDropped
  uint32_t field_property_[kWellKnownCount] = {};           // typed field -> property index or kDropped
  std::vector<int> field_of_property_;                      // property index -> typed field or -1
  StringIndex user_index_;                  // the segment's users, in order
  std::array<uint8_t, 256> user_length_{};  // user lengths: a filter before hashing a value

  // Pass 3 output.
  std::vector<PropertyColumnWriter> properties_;
  std::deque<std::string> arena_;  // unescaped strings the property columns point to
  std::vector<uint32_t> row_properties_;
  std::vector<Classified> row_values_;
  std::string shape_key_;
  LocalIds types_, sources_;
  StringIndex shape_ids_;
  std::string shapes_bytes_;
  std::unordered_map<LayoutKey, uint32_t, LayoutKeyHash> layout_ids_;
  std::vector<LayoutKey> layouts_;
  std::vector<uint64_t> layout_rows_;
  std::vector<uint32_t> row_layout_;
  StringDictWriter explicit_strings_[kWellKnownCount];
  std::string explicit_amounts_;
  StringDictWriter extensions_;
  std::string data_raw_, id_bytes_;
  std::string compressed_[kCoreColumnCount];  // see CompressedBlock
  std::vector<uint64_t> time_deltas_;
  std::vector<uint8_t> run_start_;
  std::vector<std::string_view> users_;
  std::vector<uint64_t> user_runs_;
  int64_t min_time_ = INT64_MAX;  // the base of the time column
};

// The ids of `users` in the order of their text. Pseudonyms are 73 bytes and may share a prefix: the sort
// compares the eight bytes after the prefix all users share, as one integer, and the whole strings only when
// those are equal.
std::vector<uint32_t> SortedUsers(const StringIndex& users) {
  const std::vector<std::string_view> values = users.Values();
  size_t shared = values.empty() ? 0 : values[0].size();
  for (std::string_view value : values) shared = std::min(shared, CommonPrefixSize(values[0], value));
  struct Key {
    uint64_t bytes;  // big-endian, zero-padded: ordered as the text, up to ties
    uint32_t id;
  };
  std::vector<Key> keys(values.size());
  for (uint32_t id = 0; id < values.size(); ++id) {
    uint64_t bytes = 0;
    const std::string_view rest = values[id].substr(shared, 8);
    for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
      bytes = bytes << 8 | (byte_idx < rest.size() ? static_cast<uint8_t>(rest[byte_idx]) : 0);
    }
    keys[id] = Key{bytes, id};
  }
  std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    return a.bytes != b.bytes ? a.bytes < b.bytes : values[a.id] < values[b.id];
  });
  std::vector<uint32_t> order(keys.size());
  for (size_t position = 0; position < keys.size(); ++position) order[position] = keys[position].id;
  return order;
}

// The input indexes of `unsorted` (users ranked) in the order (user, time, id, input index). A counting sort
// puts the users in order in one pass (a segment has far fewer users than rows); only the events of one user
// are then compared, by time and, when a user has two events in the same millisecond, by id. The input index
// last makes the order total (it only decides between events with the same user, time and id).
std::vector<uint32_t> SortedOrder(const RowSet& unsorted, const std::vector<const EventView*>& input,
                                  size_t user_count) {
  std::vector<uint32_t> user_start(user_count + 1, 0);  // by user rank: its first position in the order
  for (uint32_t user : unsorted.users) ++user_start[user + 1];
  for (size_t user = 0; user < user_count; ++user) user_start[user + 1] += user_start[user];
  struct Key {
    int64_t time_ms;
    uint32_t input_idx;
  };
  std::vector<Key> keys(input.size());
  {
    std::vector<uint32_t> next(user_start.begin(), user_start.end() - 1);
    for (size_t input_idx = 0; input_idx < input.size(); ++input_idx) {
      keys[next[unsorted.users[input_idx]]++] = {unsorted.times[input_idx], static_cast<uint32_t>(input_idx)};
    }
  }
  const auto before = [&](const Key& a, const Key& b) {
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    if (input[a.input_idx]->id != input[b.input_idx]->id) return input[a.input_idx]->id < input[b.input_idx]->id;
    return a.input_idx < b.input_idx;
  };
  for (size_t user = 0; user < user_count; ++user) {
    const auto first = keys.begin() + user_start[user], last = keys.begin() + user_start[user + 1];
    // Events mostly arrive in time order: check before sorting.
    if (last - first > 1 && !std::is_sorted(first, last, before)) std::sort(first, last, before);
  }
  std::vector<uint32_t> order(keys.size());
  for (size_t row_idx = 0; row_idx < keys.size(); ++row_idx) order[row_idx] = keys[row_idx].input_idx;
  return order;
}

// Sorts rows by (user, time, id), with their envelope as integers (RowSet). Users are ranked once (a segment
// holds far fewer users than rows), so the row sort (SortedOrder) compares integers and reads ids only when a
// user has two events in the same millisecond. The same pass splits every row's `data` (DataMembers).
RowSet SortRows(const std::vector<const EventView*>& input, SegmentStrings& strings) {
  RowSet unsorted;  // in input order, users by first-seen id until ranked
  unsorted.Reserve(input.size());
  unsorted.rows = input;
  std::vector<JsonMember> members;
  std::string scratch;
  for (size_t input_idx = 0; input_idx < input.size(); ++input_idx) {
    PrefetchAhead(input, input_idx, &EventView::user, &EventView::type, &EventView::source, &EventView::data,
                  &EventView::id, &EventView::session_id);
    const EventView& row = *input[input_idx];
    unsorted.inputs.push_back(static_cast<uint32_t>(input_idx));
    unsorted.users.push_back(strings.users.Insert(row.user).first);
    unsorted.types.push_back(strings.types.Insert(row.type).first);
    unsorted.sources.push_back(strings.sources.Insert(row.source).first);
    unsorted.times.push_back(row.time_ms);
    unsorted.received.push_back(row.received_ms);
    strings.data.Add(strings.copies.Add(row), unsorted.types.back(), members, scratch);
  }
  strings.data.start.push_back(strings.data.members.size());
  const std::vector<uint32_t> order = SortedUsers(strings.users);
  std::vector<uint32_t> rank(order.size());
  size_t user_bytes = 0;
  for (uint32_t user_idx = 0; user_idx < order.size(); ++user_idx) user_bytes += strings.users.value(user_idx).size();
  strings.user_text.reserve(user_bytes);  // never reallocated: users_by_rank points into it
  for (uint32_t position = 0; position < order.size(); ++position) {
    rank[order[position]] = position;
    strings.user_text.append(strings.users.value(order[position]));
  }
  size_t user_offset = 0;
  for (uint32_t position = 0; position < order.size(); ++position) {
    const size_t size = strings.users.value(order[position]).size();
    strings.users_by_rank.push_back(std::string_view(strings.user_text).substr(user_offset, size));
    user_offset += size;
  }
  for (uint32_t& user : unsorted.users) user = rank[user];
  const std::vector<uint32_t> row_order = SortedOrder(unsorted, input, strings.users_by_rank.size());
  RowSet sorted;
  sorted.Resize(input.size());
  for (size_t row_idx = 0; row_idx < row_order.size(); ++row_idx) sorted.Set(row_idx, unsorted, row_order[row_idx]);
  return sorted;
}

// Which rows go to which part. A segment smaller than kMinRowsForParts is one part. Otherwise a type with at
// most 1/kRareTypeShare of the rows is rare: it gets a part of its own when it has at least kMinPartRows rows
// (at most kMaxOwnParts such parts, the largest rare types), and the rarer ones share one last part; every
// other type stays in the first part. What a separate part costs is its users stored again (a rare event's
// user is seldom in a run with another rare event of the same type) and about 0.5 KB of column headers.
constexpr size_t kMinRowsForParts = 4096;
std::atomic<size_t> min_rows_for_parts{kMinRowsForParts};  // SetMinRowsForPartsForTest
constexpr uint64_t kRareTypeShare = 64;
constexpr uint64_t kMinPartRows = 32;
constexpr size_t kMaxOwnParts = 32;

struct PartPlan {
  std::vector<std::string> types;   // ascending
  RowSet rows;                      // in segment order
  std::vector<uint64_t> positions;  // their places in the segment
};

// `types`: the segment's type index, which rows.types refers to.
std::vector<PartPlan> PlanParts(RowSet rows, const std::map<std::string, uint64_t>& type_counts,
                                const StringIndex& types) {
  std::vector<PartPlan> parts(1);
  std::vector<size_t> part_of_type(types.size(), 0);  // by type id; the first part unless rare
  const size_t row_count = rows.rows.size();
  if (row_count >= min_rows_for_parts.load()) {
    std::vector<std::pair<uint64_t, std::string_view>> rare;  // (rows, type)
    for (const auto& [type, count] : type_counts) {
      if (count * kRareTypeShare <= row_count) rare.emplace_back(count, type);
    }
    std::stable_sort(rare.begin(), rare.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::string_view> own, shared;
    for (const auto& [count, type] : rare) {
      (count >= kMinPartRows && own.size() < kMaxOwnParts ? own : shared).push_back(type);
    }
    std::sort(own.begin(), own.end());
    std::sort(shared.begin(), shared.end());
    for (std::string_view type : own) {
      part_of_type[types.Find(type)] = parts.size();
      parts.emplace_back().types.emplace_back(type);
    }
    if (!shared.empty()) {
      for (std::string_view type : shared) part_of_type[types.Find(type)] = parts.size();
      parts.emplace_back().types.assign(shared.begin(), shared.end());
    }
  }
  for (const auto& [type, count] : type_counts) {
    if (part_of_type[types.Find(type)] == 0) parts.front().types.push_back(type);
  }
  if (parts.size() == 1) {  // no rare types: nothing to split
    parts.front().rows = std::move(rows);
    return parts;
  }
  for (size_t row_idx = 0; row_idx < row_count; ++row_idx) {
    PartPlan& part = parts[part_of_type[rows.types[row_idx]]];
    part.rows.Append(rows, row_idx);
    part.positions.push_back(row_idx);
  }
  return parts;
}

struct EncodedFile {
  std::string bytes;
  Footer footer;
};

// The footer's counts and times.
void DescribeRows(const RowSet& rows, const StringIndex& types, Footer& footer) {
  footer.rows = rows.rows.size();
  if (rows.rows.empty()) return;
  std::vector<uint64_t> type_rows(types.size(), 0);
  for (uint32_t type : rows.types) ++type_rows[type];
  for (uint32_t type = 0; type < types.size(); ++type) footer.type_counts.emplace(types.value(type), type_rows[type]);
  const auto [min_time, max_time] = std::minmax_element(rows.times.begin(), rows.times.end());
  footer.min_time_ms = *min_time;
  footer.max_time_ms = *max_time;
  footer.max_received_ms = *std::max_element(rows.received.begin(), rows.received.end());
}

// The whole file of the rows sorted by (user, time, id): magic, then per part its `position` block (after the
// first part) and its columns, then the footer and the trailer.
Result<EncodedFile> EncodeSegment(const std::vector<const EventView*>& input, int zstd_level) {
  EncodedFile out;
  Footer& footer = out.footer;
  footer.format = 4;
  SegmentStrings strings;
  RowSet rows = SortRows(input, strings);
  DescribeRows(rows, strings.types, footer);
  Compressor compressor(zstd_level);
  std::string& file = out.bytes;
  file.assign(kMagic, sizeof(kMagic));
  // `compressed`: the block's bytes when the encoder has compressed it already, else empty.
  auto append_block = [&](std::string name, std::string& raw, std::string_view compressed) -> Result<ColumnEntry> {
    if (compressed.empty()) {
      ANALYTICS_ASSIGN_OR_RETURN(compressed, compressor.Compress(raw));
    }
    ColumnEntry entry{std::move(name), file.size(), compressed.size(), raw.size(), Crc32(compressed)};
    file += compressed;
    std::string().swap(raw);
    return entry;
  };
  std::vector<PartPlan> plans = PlanParts(std::move(rows), footer.type_counts, strings.types);
  std::deque<SegmentEncoder> encoders;  // the first one's users are referred to by the others
  const std::vector<std::string_view>* base_users = nullptr;
  for (PartPlan& plan : plans) {
    Part& part = footer.parts.emplace_back();
    part.rows = plan.rows.rows.size();
    part.types = std::move(plan.types);
    if (!plan.rows.rows.empty()) {
      const auto [min_time, max_time] = std::minmax_element(plan.rows.times.begin(), plan.rows.times.end());
      part.min_time_ms = *min_time;
      part.max_time_ms = *max_time;
    }
    if (footer.parts.size() > 1) {
      std::string raw;
      uint64_t next = 0;
      for (uint64_t position : plan.positions) {
        PutVarint(raw, position - next);
        next = position + 1;
      }
      ANALYTICS_ASSIGN_OR_RETURN(part.positions, append_block(std::string(kPositionsColumnName), raw, {}));
    }
    SegmentEncoder& encoder = encoders.emplace_back(plan.rows, strings, compressor, base_users);
    ANALYTICS_ASSIGN_OR_RETURN(auto blocks, encoder.Encode());
    if (base_users == nullptr) base_users = &encoder.users();
    for (size_t block_idx = 0; block_idx < blocks.size(); ++block_idx) {
      auto& [name, raw] = blocks[block_idx];
      ANALYTICS_ASSIGN_OR_RETURN(ColumnEntry entry,
                                 append_block(std::move(name), raw, encoder.CompressedBlock(block_idx)));
      part.columns.push_back(std::move(entry));
    }
  }
  const std::string footer_bytes = EncodeFooter(footer);
  if (footer_bytes.size() > UINT32_MAX) return Status::Internal("segment footer too large");
  file += footer_bytes;
  PutFixed32(file, static_cast<uint32_t>(footer_bytes.size()));
  PutFixed32(file, Crc32(footer_bytes));
  file.append(kEndMagic, sizeof(kEndMagic));
  return out;
}

}  // namespace

void SetMinRowsForPartsForTest(size_t rows) { min_rows_for_parts = rows == 0 ? kMinRowsForParts : rows; }

Result<SegmentInfo> WriteSegment(const std::string& path, const std::vector<StoredEvent>& events, int zstd_level) {
  const events::EventViews views(events);
  return WriteSegment(path, views.pointers, zstd_level);
}

Result<SegmentInfo> WriteSegment(const std::string& path, std::vector<const EventView*> rows, int zstd_level) {
  auto file = EncodeSegment(rows, zstd_level);
  if (!file.ok()) return Status::Internal("segment " + path + ": " + file.status().message());
  ANALYTICS_RETURN_IF_ERROR(WriteFileAtomically(path, file->bytes));
  SegmentInfo info;
  info.path = path;
  info.rows = file->footer.rows;
  info.min_time_ms = file->footer.min_time_ms;
  info.max_time_ms = file->footer.max_time_ms;
  info.max_received_ms = file->footer.max_received_ms;
  info.file_bytes = file->bytes.size();
  info.type_counts = std::move(file->footer.type_counts);
  return info;
}

}  // namespace analytics::store::embedded
