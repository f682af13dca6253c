// Segment format 4 writer: WriteSegment (docs/formats/segment.md).
//
// The sorted rows are first split into parts (PlanParts): the rows of rare event types are stored apart, so
// that a query on such a type (purchases, refunds: well under 1% of the events) reads a few small blocks
// instead of whole columns. Each part is encoded like a whole format 3 segment by SegmentEncoder, which makes
// three passes over the part's rows: (1) split every `data` object into members and intern the property
// names, (2) keep the kMaxPropertyColumns most used names, (3) encode: per row one layout code (type, source,
// shape, flags), per present property one typed value, the envelope columns. Every typed value is checked to
// render back to its exact text; what would not goes to the exact-text forms (a raw value, or the whole `data`
// in data_raw), so the round trip is exact by construction.
// Speed: the flush thread runs this for every stored event, so the per-row work avoids what dominated it.
// SortRows reads the envelope once, in the order the events were appended, and numbers users, types and
// sources, so later passes compare integers; `data` is split once (pass 1 keeps the members' values); the
// passes in segment order, which is random in memory, prefetch the events ahead (PrefetchAhead); and the
// dictionaries are StringIndex tables, filled while the value is in cache.
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
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
using events::StoredEvent;
using namespace v3;  // NOLINT: the format's constants

constexpr uint32_t kDropped = UINT32_MAX;

std::string StoredEvent::*const kStringFields[kWellKnownCount] = {
    &StoredEvent::game_id, &StoredEvent::session_id, nullptr, &StoredEvent::currency, &StoredEvent::country,
    &StoredEvent::platform};

// A member value sorted into what the property column can hold.
struct Classified {
  enum Kind : uint8_t { kNull, kFalse, kTrue, kNumber, kString, kRaw } kind = kRaw;
  CanonicalNumber number;
  std::string_view text;  // kString: the unescaped value; kNumber, kRaw: the literal
};

// `arena` keeps unescaped strings alive until the columns are encoded.
Classified Classify(std::string_view value, std::deque<std::string>& arena, std::string& scratch) {
  Classified out;
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
  return out;
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

// The distinct users, types and sources of a segment, which RowSet's ids refer to.
struct SegmentStrings {
  StringIndex users, types, sources;
  std::vector<std::string_view> users_by_rank;  // ascending
};

// Rows in segment order, with their envelope as integers, so that the encoder compares and hashes no strings
// of these columns and reads less of each event: SortRows gathers them in the order the events were appended
// (close to their order in memory), while the segment's order is random in memory, a cache miss per access.
struct RowSet {
  std::vector<const StoredEvent*> rows;
  std::vector<uint32_t> users;    // per row: its user's rank in SegmentStrings::users_by_rank
  std::vector<uint32_t> types;    // per row: its type's id in SegmentStrings::types
  std::vector<uint32_t> sources;  // per row: its source's id in SegmentStrings::sources
  std::vector<int64_t> times;     // per row: time_ms
  std::vector<int64_t> received;  // per row: received_ms

  void Reserve(size_t count) {
    rows.reserve(count);
    users.reserve(count);
    types.reserve(count);
    sources.reserve(count);
    times.reserve(count);
    received.reserve(count);
  }
  void Append(const RowSet& from, size_t row_idx) {
    rows.push_back(from.rows[row_idx]);
    users.push_back(from.users[row_idx]);
    types.push_back(from.types[row_idx]);
    sources.push_back(from.sources[row_idx]);
    times.push_back(from.times[row_idx]);
    received.push_back(from.received[row_idx]);
  }
};

// The passes over the rows in segment order read each event at a random place in memory (a segment's events
// outgrow the caches): without prefetching, every row costs several cache misses in every pass. Before row
// `row_idx` is visited, the event kPrefetchRows rows ahead is fetched, and the `strings` of the one half as far
// ahead (their addresses are in that event, which has arrived by then).
// Both helpers must be inlined: GCC finds a function that only prefetches free of side effects and drops
// its calls.
constexpr size_t kPrefetchRows = 16;

[[gnu::always_inline]] inline void PrefetchBytes(const void* address, size_t size) {
  const char* bytes = static_cast<const char*>(address);
  for (size_t offset = 0; offset < size; offset += 64) __builtin_prefetch(bytes + offset);
}

template <typename... Strings>
[[gnu::always_inline]] inline void PrefetchAhead(const std::vector<const StoredEvent*>& rows, size_t row_idx,
                                                 Strings... strings) {
  if (row_idx + kPrefetchRows < rows.size()) PrefetchBytes(rows[row_idx + kPrefetchRows], sizeof(StoredEvent));
  if (row_idx + kPrefetchRows / 2 < rows.size()) {
    const StoredEvent& row = *rows[row_idx + kPrefetchRows / 2];
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

ReceivedIndex IndexReceived(const std::vector<int64_t>& received) {
  ReceivedIndex index;
  index.distinct = received;
  std::sort(index.distinct.begin(), index.distinct.end());
  index.distinct.erase(std::unique(index.distinct.begin(), index.distinct.end()), index.distinct.end());
  index.value_of_row.resize(received.size());
  for (size_t row_idx = 0; row_idx < received.size(); ++row_idx) {
    index.value_of_row[row_idx] = static_cast<uint32_t>(
        std::lower_bound(index.distinct.begin(), index.distinct.end(), received[row_idx]) - index.distinct.begin());
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
    ANALYTICS_RETURN_IF_ERROR(ChooseReceived(blocks[kReceived].second));
    return blocks;
  }

 private:
  // Pass 1: which rows are shreddable objects (compact, names escaped canonically, no name twice), and the
  // names they use, interned by their escaped text and counted. The members' names and values are kept for
  // pass 3, which so does not split `data` again.
  void ScanNames() {
    row_kind_.assign(rows_.size(), kShapeObject);
    member_start_.assign(rows_.size() + 1, 0);
    std::vector<uint32_t> row_names;
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
      PrefetchAhead(rows_, row_idx, &StoredEvent::data);
      member_start_[row_idx] = member_names_.size();
      const std::string& data = rows_[row_idx]->data;
      if (data.empty()) {
        row_kind_[row_idx] = kShapeNoData;
        continue;
      }
      bool shreddable = SplitJsonObject(data, /*allow_whitespace=*/false, members_);
      row_names.clear();
      for (size_t member_idx = 0; shreddable && member_idx < members_.size(); ++member_idx) {
        const uint32_t name_id = NameId(members_[member_idx].key);
        // A name we could not write back exactly, or a repeated name (a column holds one value per row).
        if (name_id == kDropped || name_last_row_[name_id] == row_idx + 1) {
          shreddable = false;
          break;
        }
        name_last_row_[name_id] = row_idx + 1;
        row_names.push_back(name_id);
      }
      if (!shreddable) {
        row_kind_[row_idx] = kShapeRaw;
        continue;
      }
      for (uint32_t name_id : row_names) ++name_rows_[name_id];
      member_names_.insert(member_names_.end(), row_names.begin(), row_names.end());
      for (const JsonMember& member : members_) member_values_.push_back(member.value);
    }
    member_start_[rows_.size()] = member_names_.size();
  }

  // The name id of a member's escaped key (new names numbered in first-seen order), or kDropped when the name
  // cannot be written back exactly.
  uint32_t NameId(std::string_view key) {
    const auto [name_id, inserted] = key_ids_.Insert(key);
    if (inserted) {
      std::string name;
      bool writable = true;
      if (IsPlainJsonString(key)) {
        name = key;
      } else {
        std::string escaped;
        writable = UnescapeJsonString(key, scratch_) && (AppendJsonEscaped(escaped, scratch_), escaped == key);
        name = scratch_;
      }
      names_.push_back(std::move(name));
      name_writable_.push_back(writable);
      name_rows_.push_back(0);
      name_last_row_.push_back(0);
    }
    return name_writable_[name_id] ? name_id : kDropped;
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
    PrefetchAhead(rows_, row_idx, &StoredEvent::data, &StoredEvent::id, &StoredEvent::session_id);
    const StoredEvent& row = *rows_[row_idx];
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
    const uint64_t kind = EncodeData(row_idx, field_value);
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
  uint64_t EncodeData(size_t row_idx, const Classified* field_value[kWellKnownCount]) {
    const StoredEvent& row = *rows_[row_idx];
    if (row_kind_[row_idx] != kShapeObject) {
      if (row_kind_[row_idx] == kShapeRaw) PutBytes(data_raw_, row.data);
      return row_kind_[row_idx];
    }
    const size_t first_member = member_start_[row_idx];
    const size_t member_count = member_start_[row_idx + 1] - first_member;
    row_properties_.clear();
    for (size_t member_idx = 0; member_idx < member_count; ++member_idx) {
      const uint32_t property_idx = property_of_name_[member_names_[first_member + member_idx]];
      if (property_idx == kDropped) {  // a rare name without a column: the row stays text
        PutBytes(data_raw_, row.data);
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
      const Classified& value =
          row_values_.emplace_back(Classify(member_values_[first_member + member_idx], arena_, scratch_));
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
  uint32_t EncodeField(const StoredEvent& row, int field, const Classified* value) {
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
    const std::string& text = row.*kStringFields[field];
    if (text.empty()) return kModeEmpty;
    if (value != nullptr && value->kind == Classified::kString && value->text == text) return kModeFromData;
    explicit_strings_[field].Add(text);
    return kModeExplicit;
  }

  // The uncompressed column blocks (name, bytes) in file order; `received` is left to ChooseReceived.
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
    {
      // Times: varints, or bit-packed (random milliseconds), whichever compresses smaller.
      std::string varints(1, '\0'), packed(1, '\2');
      PutUintValues(varints, time_deltas_, false);
      PutUintValues(packed, time_deltas_, true);
      blocks[kTime].second =
          compressed_size_(packed) < compressed_size_(varints) ? std::move(packed) : std::move(varints);
    }
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
      blocks.emplace_back(std::string(kPropertyPrefix) + names_[kept_[property_idx]], std::move(bytes));
    }
    return blocks;
  }

  // Receive times: whichever of the three modes compresses smallest.
  Status ChooseReceived(std::string& out) {
    const ReceivedIndex received_index = IndexReceived(row_set_.received);
    size_t best_size = SIZE_MAX;
    for (int mode = 0; mode <= 2; ++mode) {
      std::string raw = EncodeReceived(row_set_, received_index, run_start_, mode);
      ANALYTICS_ASSIGN_OR_RETURN(std::string_view compressed, compressor_.Compress(raw));
      if (compressed.size() < best_size) {
        best_size = compressed.size();
        out = std::move(raw);
      }
    }
    return Status::Ok();
  }

  const std::vector<const StoredEvent*>& rows_;  // sorted by (user, time, id)
  const RowSet& row_set_;                        // rows_ and what is known of them
  const SegmentStrings& strings_;
  Compressor& compressor_;
  const std::vector<std::string_view>* base_users_;
  const CompressedSize compressed_size_;
  std::vector<JsonMember> members_;
  std::string scratch_;

  // Names (pass 1) and columns (pass 2).
  StringIndex key_ids_;                                     // escaped key text -> name id
  std::vector<std::string> names_;                          // unescaped, by name id
  std::vector<uint8_t> name_writable_;                      // by name id: the name is written back exactly
  std::vector<uint64_t> name_rows_;                         // rows using each name
  std::vector<uint64_t> name_last_row_;                     // row_idx + 1 of its last use
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
  std::vector<uint64_t> time_deltas_;
  std::vector<uint8_t> run_start_;
  std::vector<std::string_view> users_;
  std::vector<uint64_t> user_runs_;
  int64_t min_time_ = INT64_MAX;  // the base of the time column
};

// Sorts rows by (user, time, id), with their envelope as integers (RowSet). Users are ranked once (a segment
// holds far fewer users than rows), so the row sort compares integers and reads ids only when a user has two
// events in the same millisecond.
RowSet SortRows(const std::vector<const StoredEvent*>& input, SegmentStrings& strings) {
  RowSet unsorted;  // in input order, users by first-seen id until ranked
  unsorted.Reserve(input.size());
  unsorted.rows = input;
  for (size_t input_idx = 0; input_idx < input.size(); ++input_idx) {
    PrefetchAhead(input, input_idx, &StoredEvent::user, &StoredEvent::type, &StoredEvent::source);
    const StoredEvent& row = *input[input_idx];
    unsorted.users.push_back(strings.users.Insert(row.user).first);
    unsorted.types.push_back(strings.types.Insert(row.type).first);
    unsorted.sources.push_back(strings.sources.Insert(row.source).first);
    unsorted.times.push_back(row.time_ms);
    unsorted.received.push_back(row.received_ms);
  }
  std::vector<uint32_t> order(strings.users.size());
  for (uint32_t user_idx = 0; user_idx < order.size(); ++user_idx) order[user_idx] = user_idx;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return strings.users.value(a) < strings.users.value(b); });
  std::vector<uint32_t> rank(order.size());
  for (uint32_t position = 0; position < order.size(); ++position) {
    rank[order[position]] = position;
    strings.users_by_rank.push_back(strings.users.value(order[position]));
  }
  for (uint32_t& user : unsorted.users) user = rank[user];
  struct Key {
    uint32_t user;
    uint32_t input_idx;
    int64_t time_ms;
  };
  std::vector<Key> keys(input.size());
  for (size_t input_idx = 0; input_idx < input.size(); ++input_idx) {
    keys[input_idx] = {unsorted.users[input_idx], static_cast<uint32_t>(input_idx), unsorted.times[input_idx]};
  }
  std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    if (a.user != b.user) return a.user < b.user;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return input[a.input_idx]->id < input[b.input_idx]->id;
  });
  RowSet sorted;
  sorted.Reserve(input.size());
  for (const Key& key : keys) sorted.Append(unsorted, key.input_idx);
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
Result<EncodedFile> EncodeSegment(const std::vector<const StoredEvent*>& input, int zstd_level) {
  EncodedFile out;
  Footer& footer = out.footer;
  footer.format = 4;
  SegmentStrings strings;
  RowSet rows = SortRows(input, strings);
  DescribeRows(rows, strings.types, footer);
  Compressor compressor(zstd_level);
  std::string& file = out.bytes;
  file.assign(kMagic, sizeof(kMagic));
  auto append_block = [&](std::string name, std::string& raw) -> Result<ColumnEntry> {
    ANALYTICS_ASSIGN_OR_RETURN(std::string_view compressed, compressor.Compress(raw));
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
      ANALYTICS_ASSIGN_OR_RETURN(part.positions, append_block(std::string(kPositionsColumnName), raw));
    }
    SegmentEncoder& encoder = encoders.emplace_back(plan.rows, strings, compressor, base_users);
    ANALYTICS_ASSIGN_OR_RETURN(auto blocks, encoder.Encode());
    if (base_users == nullptr) base_users = &encoder.users();
    for (auto& [name, raw] : blocks) {
      ANALYTICS_ASSIGN_OR_RETURN(ColumnEntry entry, append_block(std::move(name), raw));
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
  std::vector<const StoredEvent*> rows;
  rows.reserve(events.size());
  for (const StoredEvent& event : events) rows.push_back(&event);
  return WriteSegment(path, std::move(rows), zstd_level);
}

Result<SegmentInfo> WriteSegment(const std::string& path, std::vector<const StoredEvent*> rows, int zstd_level) {
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
