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
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <deque>
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

// Interns strings in first-seen order.
class Interner {
 public:
  uint32_t Intern(std::string_view value) {
    auto it = index_.find(value);  // find first: emplace would build a node for every hit
    if (it != index_.end()) return it->second;
    index_.emplace(value, static_cast<uint32_t>(values_.size()));
    values_.push_back(value);
    return static_cast<uint32_t>(values_.size() - 1);
  }
  const std::vector<std::string_view>& values() const { return values_; }

 private:
  std::unordered_map<std::string_view, uint32_t> index_;
  std::vector<std::string_view> values_;
};

uint64_t Wrapping(int64_t value, int64_t base) { return static_cast<uint64_t>(value) - static_cast<uint64_t>(base); }

// Receive times, in one of three modes (the writer keeps the one that compresses best):
// 0: the distinct values (ascending, delta-coded), then per row the value's index: at a user run's start as
//    is, else as the zigzag difference from the previous row's index.
// 1: per row zigzag(received - time): live traffic, a small lag.
// 2: the distinct values ordered by the earliest event time among their rows, with those times; per row the
//    zigzag difference between the value's index and the index predicted from the row's time (the last value
//    whose earliest time is <= it): bulk loads, where each intake batch covers its own stretch of time.
std::string EncodeReceived(const std::vector<const StoredEvent*>& rows, const std::vector<uint8_t>& run_start, int mode) {
  std::string out(1, static_cast<char>(mode));
  if (mode == 1) {
    for (const StoredEvent* row : rows) PutZigzag(out, static_cast<int64_t>(Wrapping(row->received_ms, row->time_ms)));
    return out;
  }
  if (mode == 2) {
    std::unordered_map<int64_t, int64_t> earliest;  // received -> min time
    for (const StoredEvent* row : rows) {
      auto [it, inserted] = earliest.emplace(row->received_ms, row->time_ms);
      if (!inserted) it->second = std::min(it->second, row->time_ms);
    }
    std::vector<std::pair<int64_t, int64_t>> entries;  // (min time, received)
    entries.reserve(earliest.size());
    for (const auto& [received, time] : earliest) entries.emplace_back(time, received);
    std::sort(entries.begin(), entries.end());
    PutVarint(out, entries.size());
    std::unordered_map<int64_t, int64_t> index_of;
    for (size_t entry_idx = 0; entry_idx < entries.size(); ++entry_idx) {
      const auto [time, received] = entries[entry_idx];
      if (entry_idx == 0) {
        PutZigzag(out, received);
        PutZigzag(out, time);
      } else {
        PutZigzag(out, static_cast<int64_t>(Wrapping(received, entries[entry_idx - 1].second)));
        PutVarint(out, Wrapping(time, entries[entry_idx - 1].first));
      }
      index_of[received] = static_cast<int64_t>(entry_idx);
    }
    for (const StoredEvent* row : rows) {
      const auto after = std::upper_bound(entries.begin(), entries.end(), std::make_pair(row->time_ms, INT64_MAX));
      const int64_t predicted = std::max<int64_t>(0, (after - entries.begin()) - 1);
      PutZigzag(out, index_of[row->received_ms] - predicted);
    }
    return out;
  }
  std::vector<int64_t> distinct;
  distinct.reserve(rows.size());
  for (const StoredEvent* row : rows) distinct.push_back(row->received_ms);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  PutVarint(out, distinct.size());
  int64_t previous = 0;
  for (size_t value_idx = 0; value_idx < distinct.size(); ++value_idx) {
    if (value_idx == 0) {
      PutZigzag(out, distinct[0]);
    } else {
      PutVarint(out, Wrapping(distinct[value_idx], previous));
    }
    previous = distinct[value_idx];
  }
  int64_t previous_code = 0;
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    const auto code = static_cast<int64_t>(
        std::lower_bound(distinct.begin(), distinct.end(), rows[row_idx]->received_ms) - distinct.begin());
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
  Result<std::string> Compress(std::string_view raw) {
    std::string out(ZSTD_compressBound(raw.size()), '\0');
    const size_t size = ZSTD_compressCCtx(context_.get(), out.data(), out.size(), raw.data(), raw.size(), level_);
    if (ZSTD_isError(size)) return Status::Internal(std::string("zstd: ") + ZSTD_getErrorName(size));
    out.resize(size);
    return out;
  }

 private:
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> context_;
  int level_;
};


// Encodes one segment (the rows sorted by WriteSegment). One instance per segment; single-threaded.
class SegmentEncoder {
 public:
  // `base_users`: for a part after the first, the first part's users, which its user column refers to.
  SegmentEncoder(const std::vector<const StoredEvent*>& rows, Compressor& compressor,
                 const std::vector<std::string_view>* base_users = nullptr)
      : rows_(rows), compressor_(compressor), base_users_(base_users),
        compressed_size_([this](std::string_view raw) -> size_t {
          auto compressed = compressor_.Compress(raw);
          return compressed.ok() ? compressed->size() : raw.size();
        }) {}

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
  // names they use, interned by their escaped text and counted.
  void ScanNames() {
    row_kind_.assign(rows_.size(), kShapeObject);
    member_start_.assign(rows_.size(), 0);
    std::vector<uint32_t> row_names;
    std::string escaped;
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
      const std::string& data = rows_[row_idx]->data;
      if (data.empty()) {
        row_kind_[row_idx] = kShapeNoData;
        continue;
      }
      bool shreddable = SplitJsonObject(data, /*allow_whitespace=*/false, members_);
      row_names.clear();
      for (size_t member_idx = 0; shreddable && member_idx < members_.size(); ++member_idx) {
        const std::string_view key = members_[member_idx].key;
        auto it = key_ids_.find(key);
        if (it == key_ids_.end()) {
          std::string name;
          if (IsPlainJsonString(key)) {
            name = key;
          } else {
            escaped.clear();
            if (!UnescapeJsonString(key, scratch_) || (AppendJsonEscaped(escaped, scratch_), escaped != key)) {
              shreddable = false;  // a name we could not write back exactly
              break;
            }
            name = scratch_;
          }
          it = key_ids_.emplace(key, static_cast<uint32_t>(names_.size())).first;
          names_.push_back(std::move(name));
          name_rows_.push_back(0);
          name_last_row_.push_back(0);
        }
        const uint32_t name_id = it->second;
        if (name_last_row_[name_id] == row_idx + 1) {
          shreddable = false;  // a repeated name: a column holds one value per row
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
      member_start_[row_idx] = member_names_.size();
      member_names_.insert(member_names_.end(), row_names.begin(), row_names.end());
    }
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
    for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
      const StoredEvent& row = *rows_[row_idx];
      if (row_idx > 0 && row.user == rows_[row_idx - 1]->user) continue;  // sorted: users come in runs
      if (!user_index_.count(row.user)) user_index_.emplace(row.user, static_cast<uint32_t>(user_index_.size()));
      user_length_[std::min<size_t>(row.user.size(), user_length_.size() - 1)] = 1;
    }
    row_layout_.resize(rows_.size());
    run_start_.assign(rows_.size(), 0);
    time_deltas_.reserve(rows_.size());
    for (const StoredEvent* row_ptr : rows_) {
      const StoredEvent& row = *row_ptr;
      min_time_ = std::min(min_time_, row.time_ms);
    }
  }

  // Pass 3, one row: its run and time, its data (shape and values), typed fields, id, extensions, layout.
  void EncodeRow(size_t row_idx) {
    const StoredEvent& row = *rows_[row_idx];
    if (row_idx == 0 || row.user != rows_[row_idx - 1]->user) {
      run_start_[row_idx] = 1;
      users_.push_back(row.user);
      user_runs_.push_back(0);
      time_deltas_.push_back(Wrapping(row.time_ms, min_time_));
    } else {
      time_deltas_.push_back(Wrapping(row.time_ms, rows_[row_idx - 1]->time_ms));
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
    auto shape_it = shape_ids_.find(shape_key_);
    if (shape_it == shape_ids_.end()) {
      shape_it = shape_ids_.emplace(shape_key_, static_cast<uint32_t>(shape_ids_.size())).first;
      shapes_bytes_ += shape_key_;
    }
    const LayoutKey key{types_.Intern(row.type), sources_.Intern(row.source), shape_it->second, flags};
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
    SplitJsonObject(row.data, /*allow_whitespace=*/false, members_);  // succeeded in pass 1
    row_properties_.clear();
    for (size_t member_idx = 0; member_idx < members_.size(); ++member_idx) {
      const uint32_t property_idx = property_of_name_[member_names_[member_start_[row_idx] + member_idx]];
      if (property_idx == kDropped) {  // a rare name without a column: the row stays text
        PutBytes(data_raw_, row.data);
        return kShapeRaw;
      }
      row_properties_.push_back(property_idx);
    }
    shape_key_.clear();
    PutVarint(shape_key_, kShapeObject + row_properties_.size());
    row_values_.clear();
    row_values_.reserve(members_.size());  // field_value points into it
    for (size_t member_idx = 0; member_idx < members_.size(); ++member_idx) {
      const uint32_t property_idx = row_properties_[member_idx];
      PutVarint(shape_key_, property_idx);
      const Classified& value = row_values_.emplace_back(Classify(members_[member_idx].value, arena_, scratch_));
      AddValue(row, property_idx, value);
      if (field_of_property_[property_idx] >= 0) field_value[field_of_property_[property_idx]] = &value;
    }
    return kShapeObject;
  }

  void AddValue(const StoredEvent& row, uint32_t property_idx, const Classified& value) {
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
      if (value.text == row.user) return column.AddUser();
      if (user_length_[std::min<size_t>(value.text.size(), user_length_.size() - 1)]) {
        auto user = user_index_.find(value.text);
        if (user != user_index_.end()) return column.AddUserRef(user->second);
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
    size_t best_size = SIZE_MAX;
    for (int mode = 0; mode <= 2; ++mode) {
      std::string raw = EncodeReceived(rows_, run_start_, mode);
      ANALYTICS_ASSIGN_OR_RETURN(std::string compressed, compressor_.Compress(raw));
      if (compressed.size() < best_size) {
        best_size = compressed.size();
        out = std::move(raw);
      }
    }
    return Status::Ok();
  }

  const std::vector<const StoredEvent*>& rows_;  // sorted by (user, time, id)
  Compressor& compressor_;
  const std::vector<std::string_view>* base_users_;
  const CompressedSize compressed_size_;
  std::vector<JsonMember> members_;
  std::string scratch_;

  // Names (pass 1) and columns (pass 2).
  std::unordered_map<std::string_view, uint32_t> key_ids_;  // escaped key text -> name id
  std::vector<std::string> names_;                          // unescaped, by name id
  std::vector<uint64_t> name_rows_;                         // rows using each name
  std::vector<uint64_t> name_last_row_;                     // row_idx + 1 of its last use
  std::vector<uint64_t> row_kind_;                          // kShapeNoData / kShapeRaw / kShapeObject
  std::vector<uint32_t> member_names_;                      // name ids of shreddable rows' members, in order
  std::vector<uint64_t> member_start_;                      // per row: its first entry in member_names_
  std::vector<uint32_t> kept_;                              // name ids with a column, by property index
  std::vector<uint32_t> property_of_name_;                  // name id -> property index or kDropped
  uint32_t field_property_[kWellKnownCount] = {};           // typed field -> property index or kDropped
  std::vector<int> field_of_property_;                      // property index -> typed field or -1
  std::unordered_map<std::string_view, uint32_t> user_index_;  // the segment's users, in order
  std::array<uint8_t, 256> user_length_{};                     // user lengths: a filter before hashing a value

  // Pass 3 output.
  std::vector<PropertyColumnWriter> properties_;
  std::deque<std::string> arena_;  // unescaped strings the property columns point to
  std::vector<uint32_t> row_properties_;
  std::vector<Classified> row_values_;
  std::string shape_key_;
  Interner types_, sources_;
  std::unordered_map<std::string, uint32_t> shape_ids_;
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

// Sorts rows by (user, time, id). Users are ranked once (a segment holds far fewer users than rows), so the
// row sort compares integers and reads ids only when a user has two events in the same millisecond.
void SortRows(std::vector<const StoredEvent*>& rows) {
  std::unordered_map<std::string_view, uint32_t> first_seen;
  std::vector<std::string_view> users;
  std::vector<uint32_t> row_user(rows.size());
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    auto [it, inserted] = first_seen.emplace(rows[row_idx]->user, static_cast<uint32_t>(users.size()));
    if (inserted) users.push_back(rows[row_idx]->user);
    row_user[row_idx] = it->second;
  }
  std::vector<uint32_t> order(users.size());
  for (uint32_t user_idx = 0; user_idx < order.size(); ++user_idx) order[user_idx] = user_idx;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return users[a] < users[b]; });
  std::vector<uint32_t> rank(users.size());
  for (uint32_t position = 0; position < order.size(); ++position) rank[order[position]] = position;
  struct Key {
    uint32_t user;
    int64_t time_ms;
    const StoredEvent* row;
  };
  std::vector<Key> keys(rows.size());
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    keys[row_idx] = {rank[row_user[row_idx]], rows[row_idx]->time_ms, rows[row_idx]};
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    if (a.user != b.user) return a.user < b.user;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.row->id < b.row->id;
  });
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) rows[row_idx] = keys[row_idx].row;
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
  std::vector<std::string> types;                 // ascending
  std::vector<const StoredEvent*> rows;           // in segment order
  std::vector<uint64_t> positions;                // their places in the segment
};

std::vector<PartPlan> PlanParts(const std::vector<const StoredEvent*>& rows,
                                const std::map<std::string, uint64_t>& type_counts) {
  std::vector<PartPlan> parts(1);
  std::map<std::string_view, size_t> part_of_type;  // absent: the first part
  if (rows.size() >= min_rows_for_parts.load()) {
    std::vector<std::pair<uint64_t, std::string_view>> rare;  // (rows, type)
    for (const auto& [type, count] : type_counts) {
      if (count * kRareTypeShare <= rows.size()) rare.emplace_back(count, type);
    }
    std::stable_sort(rare.begin(), rare.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<std::string_view> own, shared;
    for (const auto& [count, type] : rare) {
      (count >= kMinPartRows && own.size() < kMaxOwnParts ? own : shared).push_back(type);
    }
    std::sort(own.begin(), own.end());
    std::sort(shared.begin(), shared.end());
    for (std::string_view type : own) {
      part_of_type[type] = parts.size();
      parts.emplace_back().types.emplace_back(type);
    }
    if (!shared.empty()) {
      for (std::string_view type : shared) {
        part_of_type[type] = parts.size();
      }
      PartPlan& part = parts.emplace_back();
      part.types.assign(shared.begin(), shared.end());
    }
  }
  for (const auto& [type, count] : type_counts) {
    if (!part_of_type.count(type)) parts.front().types.push_back(type);
  }
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    auto it = part_of_type.find(rows[row_idx]->type);
    PartPlan& part = parts[it == part_of_type.end() ? 0 : it->second];
    part.rows.push_back(rows[row_idx]);
    part.positions.push_back(row_idx);
  }
  return parts;
}

struct EncodedFile {
  std::string bytes;
  Footer footer;
};

// The whole file of rows sorted by (user, time, id): magic, then per part its `position` block (after the
// first part) and its columns, then the footer and the trailer.
Result<EncodedFile> EncodeSegment(const std::vector<const StoredEvent*>& rows, int zstd_level) {
  EncodedFile out;
  Footer& footer = out.footer;
  footer.format = 4;
  footer.rows = rows.size();
  int64_t min_time = INT64_MAX, max_time = INT64_MIN, max_received = INT64_MIN;
  for (const StoredEvent* row : rows) {
    min_time = std::min(min_time, row->time_ms);
    max_time = std::max(max_time, row->time_ms);
    max_received = std::max(max_received, row->received_ms);
    ++footer.type_counts[row->type];
  }
  if (!rows.empty()) {
    footer.min_time_ms = min_time;
    footer.max_time_ms = max_time;
    footer.max_received_ms = max_received;
  }
  Compressor compressor(zstd_level);
  std::string& file = out.bytes;
  file.assign(kMagic, sizeof(kMagic));
  auto append_block = [&](std::string name, std::string& raw) -> Result<ColumnEntry> {
    ANALYTICS_ASSIGN_OR_RETURN(std::string compressed, compressor.Compress(raw));
    ColumnEntry entry{std::move(name), file.size(), compressed.size(), raw.size(), Crc32(compressed)};
    file += compressed;
    std::string().swap(raw);
    return entry;
  };
  std::vector<PartPlan> plans = PlanParts(rows, footer.type_counts);
  std::deque<SegmentEncoder> encoders;  // the first one's users are referred to by the others
  const std::vector<std::string_view>* base_users = nullptr;
  for (PartPlan& plan : plans) {
    Part& part = footer.parts.emplace_back();
    part.rows = plan.rows.size();
    part.types = std::move(plan.types);
    if (!plan.rows.empty()) {
      part.min_time_ms = INT64_MAX;
      part.max_time_ms = INT64_MIN;
      for (const StoredEvent* row : plan.rows) {
        part.min_time_ms = std::min(part.min_time_ms, row->time_ms);
        part.max_time_ms = std::max(part.max_time_ms, row->time_ms);
      }
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
    SegmentEncoder& encoder = encoders.emplace_back(plan.rows, compressor, base_users);
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
  SortRows(rows);
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
