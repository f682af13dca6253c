// Segment format 3 reader; see segment_reader.h. Every column is decoded with bounds checks against the
// counts the layout column implies (rows, values per property, rows per field mode), so a damaged file
// gives Corruption naming the column, never a crash or an allocation beyond what the file's bytes allow.
#include "store/embedded/segment_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <system_error>
#include <unordered_map>

#include "store/embedded/codec.h"
#include "store/embedded/column_codec.h"
#include "store/embedded/column_json.h"

namespace analytics::store::embedded {
namespace {

using common::Result;
using common::Status;
using events::EventView;
using events::StoredEvent;

constexpr uint32_t kNone = UINT32_MAX;

// ---- Values as queries see them (segment.h, PropertyColumn). ----

// Lets a map keyed by std::string be searched with a std::string_view.
struct TransparentHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>()(text); }
};

class PropertyColumnBuilder {
 public:
  PropertyColumnBuilder(PropertyColumn& column, uint64_t rows) : column_(column) {
    column_.kinds.assign(rows, ValueKind::kAbsent);
    column_.ints.assign(rows, 0);
    column_.doubles.assign(rows, 0);
  }
  // Typed values: the dictionary of a string column is copied up front (its indexes stay the slots).
  void UseDictionary(const std::vector<std::string_view>& dictionary) {
    dictionary_size_ = static_cast<uint32_t>(dictionary.size());
    column_.strings.assign(dictionary.begin(), dictionary.end());
  }
  void SetNull(size_t row) { column_.kinds[row] = ValueKind::kNull; }
  void SetBool(size_t row, bool value) {
    column_.kinds[row] = ValueKind::kBool;
    column_.ints[row] = value ? 1 : 0;
  }
  void SetInt(size_t row, int64_t value) {
    column_.kinds[row] = ValueKind::kInt;
    column_.ints[row] = value;
    column_.doubles[row] = static_cast<double>(value);
  }
  void SetDouble(size_t row, double value) {
    column_.kinds[row] = ValueKind::kDouble;
    column_.doubles[row] = value;
  }
  // A double read from a typed column: kInt when its text is an int64 literal, as SetText would decide.
  void SetTypedDouble(size_t row, double value) {
    if (std::isfinite(value) && std::trunc(value) == value && std::fabs(value) < 1e19) {
      scratch_.clear();
      AppendDoubleText(scratch_, value);
      const CanonicalNumber number = ClassifyNumber(scratch_);
      if (number.is_int) return SetInt(row, number.int_value);
    }
    SetDouble(row, value);
  }
  void SetDictionaryString(size_t row, uint32_t slot) {
    column_.kinds[row] = ValueKind::kString;
    column_.ints[row] = slot;
  }
  void SetString(size_t row, std::string_view value, ValueKind kind) {
    column_.kinds[row] = kind;
    column_.ints[row] = Intern(value);
  }
  // Any JSON value text (a raw value, or a member of a raw `data`).
  void SetText(size_t row, std::string_view text) {
    if (text == "null") return SetNull(row);
    if (text == "true" || text == "false") return SetBool(row, text == "true");
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
      if (UnescapeJsonString(text.substr(1, text.size() - 2), unescaped_)) {
        return SetString(row, unescaped_, ValueKind::kString);
      }
      return SetString(row, text, ValueKind::kJson);
    }
    if (!text.empty() && (text.front() == '-' || (text.front() >= '0' && text.front() <= '9'))) {
      const CanonicalNumber number = ClassifyNumber(text);
      if (number.is_int) return SetInt(row, number.int_value);
      double value = 0;
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ptr == text.data() + text.size()) {
        if (ec == std::errc()) return SetDouble(row, value);
        // Out of range: below the smallest double it is (signed) zero, as JSON parsers read it; above the
        // largest it stays text.
        if (ec == std::errc::result_out_of_range) {
          scratch_.assign(text);
          value = std::strtod(scratch_.c_str(), nullptr);
          if (std::isfinite(value)) return SetDouble(row, value);
        }
      }
    }
    SetString(row, text, ValueKind::kJson);
  }

 private:
  uint32_t Intern(std::string_view value) {
    if (index_.empty()) {
      for (uint32_t slot = 0; slot < dictionary_size_; ++slot) index_.emplace(column_.strings[slot], slot);
    }
    auto it = index_.find(value);
    if (it != index_.end()) return it->second;
    const auto slot = static_cast<uint32_t>(column_.strings.size());
    index_.emplace(std::string(value), slot);
    column_.strings.emplace_back(value);
    return slot;
  }

  PropertyColumn& column_;
  uint32_t dictionary_size_ = 0;
  std::unordered_map<std::string, uint32_t, TransparentHash, std::equal_to<>> index_;
  std::string scratch_, unescaped_;
};

// The requested properties of a read: one builder each (a name may be requested twice), and the matching
// of a `data` text's members against them (for rows kept as text, and for format 2 files).
class RequestedProperties {
 public:
  RequestedProperties(const std::vector<std::string>& names, uint64_t rows, std::vector<PropertyColumn>& columns)
      : last_row_(names.size(), UINT64_MAX) {
    columns.resize(names.size());
    builders_.reserve(names.size());
    for (size_t request_idx = 0; request_idx < names.size(); ++request_idx) {
      columns[request_idx].name = names[request_idx];
      builders_.emplace_back(columns[request_idx], rows);
      by_name_[names[request_idx]].push_back(request_idx);
    }
  }
  PropertyColumnBuilder& builder(size_t request_idx) { return builders_[request_idx]; }

  // Sets row `row_idx` of every requested property from the members of `data` (lenient about whitespace; the
  // first member of a repeated name wins). Nothing when `data` is not an object.
  void FillFromText(uint64_t row_idx, std::string_view data) {
    if (!SplitJsonObject(data, /*allow_whitespace=*/true, members_)) return;
    for (const JsonMember& member : members_) {
      std::string_view name = member.key;
      if (!IsPlainJsonString(name)) {
        if (!UnescapeJsonString(name, scratch_)) continue;
        name = scratch_;
      }
      auto it = by_name_.find(name);
      if (it == by_name_.end()) continue;
      for (size_t request_idx : it->second) {
        if (last_row_[request_idx] == row_idx) continue;
        last_row_[request_idx] = row_idx;
        builders_[request_idx].SetText(row_idx, member.value);
      }
    }
  }

 private:
  std::vector<PropertyColumnBuilder> builders_;
  std::unordered_map<std::string_view, std::vector<size_t>> by_name_;  // views into the request
  std::vector<uint64_t> last_row_;
  std::vector<JsonMember> members_;
  std::string scratch_;
};

}  // namespace

namespace v3 {
namespace {

// The typed string fields by WellKnownField (amount has none).
std::string StoredEvent::*const kStringFields[kWellKnownCount] = {
    &StoredEvent::game_id, &StoredEvent::session_id, nullptr, &StoredEvent::currency, &StoredEvent::country,
    &StoredEvent::platform};

struct Shape {
  uint64_t kind = kShapeNoData;
  uint32_t first = 0;  // into Decoder::shape_properties_
  uint32_t count = 0;
};

struct Layout {
  uint32_t type = 0, source = 0, shape = 0, flags = 0;
};

// Decodes columns of one file on demand; views point into blocks_.
class Decoder {
 public:
  explicit Decoder(const SegmentFile& file, size_t part_idx = 0)
      : file_(file), part_idx_(part_idx), rows_(file.part(part_idx).rows),
        blocks_(file.part(part_idx).columns.size()) {}

  Status DecodeLayout();
  Status DecodeRuns();
  Status DecodeUsers();     // and the runs
  Status DecodeTimes();     // needs DecodeRuns
  Status DecodeReceived();  // needs DecodeTimes
  Status DecodeIds();
  Status DecodeExplicit(int field);
  Status DecodeExtensions();
  Status DecodeDataRaw();
  Status DecodeProperty(uint32_t property_idx);
  Status BuildEvents(std::vector<StoredEvent>& out);

  uint64_t rows() const { return rows_; }
  const Layout& LayoutOf(size_t row_idx) const { return layouts_[row_layout_[row_idx]]; }
  const Shape& ShapeOf(size_t row_idx) const { return shapes_[LayoutOf(row_idx).shape]; }
  bool ShapeHas(const Shape& shape, uint32_t property_idx) const {
    if (shape.kind != kShapeObject || shape.count == 0) return false;
    const auto begin = shape_properties_.begin() + shape.first;
    return std::find(begin, begin + shape.count, property_idx) != begin + shape.count;
  }
  // Per shape: 1 when it has the property.
  std::vector<uint8_t> ShapesWith(uint32_t property_idx) const {
    std::vector<uint8_t> has(shapes_.size(), 0);
    for (size_t shape_idx = 0; shape_idx < shapes_.size(); ++shape_idx) {
      has[shape_idx] = ShapeHas(shapes_[shape_idx], property_idx);
    }
    return has;
  }
  uint32_t PropertyNamed(std::string_view name) const {
    const size_t property_count = file_.property_count(part_idx_);
    if (property_count <= kScannedProperties) {  // a few names (a rare type's part): compared, not hashed
      for (uint32_t property_idx = 0; property_idx < property_count; ++property_idx) {
        if (file_.property_name(part_idx_, property_idx) == name) return property_idx;
      }
      return kNone;
    }
    auto it = property_by_name_.find(name);
    return it == property_by_name_.end() ? kNone : it->second;
  }
  static constexpr size_t kScannedProperties = 24;
  bool AnyLayoutWithMode(int field, uint32_t mode) const {
    return std::any_of(layouts_.begin(), layouts_.end(),
                       [&](const Layout& layout) { return FieldModeOf(layout.flags, field) == mode; });
  }
  uint32_t field_property(int field) const { return field_property_[field]; }
  size_t property_count() const { return file_.property_count(part_idx_); }
  Status Corrupt(size_t column_idx, const std::string& what) const {
    return file_.PartColumnCorrupt(part_idx_, column_idx, what);
  }

  // Decoded columns, filled by the Decode* methods (read directly by the functions below).
  std::vector<std::string_view> types_, sources_;
  std::vector<std::string_view> users_;
  std::vector<uint32_t> user_runs_;
  std::vector<uint8_t> run_start_;
  std::vector<int64_t> times_, received_;
  std::vector<std::string> ids_;
  std::string explicit_storage_[kWellKnownCount], extensions_storage_, users_storage_;
  std::vector<std::string_view> explicit_dictionary_[kWellKnownCount];
  std::vector<uint32_t> explicit_codes_[kWellKnownCount];
  std::vector<double> explicit_amounts_;
  std::vector<std::string_view> extensions_dictionary_;
  std::vector<uint32_t> extensions_codes_;
  std::vector<std::string_view> data_raw_;
  std::vector<PropertyValues> properties_;
  std::vector<uint8_t> property_decoded_;

  // For a part after the first: the first part's users, decoded by the caller (else read when needed). Must
  // outlive the decoded columns.
  void SetBaseUsers(const std::vector<std::string_view>* users) { base_users_ = users; }

 private:
  Result<std::string_view> Load(size_t column_idx) {
    if (blocks_[column_idx].empty()) {
      // A small part (a rare type's) is read with one pread on its first column read, the columns then taken
      // from memory: a query reads several of its columns, each only a few KB.
      if (!part_read_) {
        part_read_ = true;
        uint64_t begin = UINT64_MAX, end = 0;
        for (const ColumnEntry& column : file_.part(part_idx_).columns) {
          begin = std::min(begin, column.offset);
          end = std::max(end, column.offset + column.size);
        }
        if (begin < end && end - begin <= kSmallPartBytes) {
          ANALYTICS_RETURN_IF_ERROR(file_.ReadRange(begin, end - begin, part_bytes_));
          part_begin_ = begin;
        }
      }
      if (!part_bytes_.empty()) {
        ANALYTICS_ASSIGN_OR_RETURN(blocks_[column_idx],
                                   file_.PartColumn(part_idx_, column_idx, part_bytes_, part_begin_));
      } else {
        ANALYTICS_ASSIGN_OR_RETURN(blocks_[column_idx], file_.PartColumn(part_idx_, column_idx));
      }
    }
    return std::string_view(blocks_[column_idx]);
  }
  static constexpr uint64_t kSmallPartBytes = 256 << 10;
  bool part_read_ = false;
  std::string part_bytes_;  // the whole part's columns, when it is small
  uint64_t part_begin_ = 0;

  const SegmentFile& file_;
  const size_t part_idx_;
  const uint64_t rows_;
  std::vector<std::string> blocks_;
  std::unordered_map<std::string_view, uint32_t> property_by_name_;
  uint32_t field_property_[kWellKnownCount] = {};
  std::vector<Shape> shapes_;
  std::vector<uint32_t> shape_properties_;
  std::vector<Layout> layouts_;
  std::vector<uint32_t> row_layout_;
  std::vector<uint64_t> property_values_;  // rows whose shape has the property
  uint64_t explicit_rows_[kWellKnownCount] = {};
  uint64_t raw_rows_ = 0;
  bool users_decoded_ = false, runs_decoded_ = false;
  const std::vector<std::string_view>* base_users_ = nullptr;
  std::string base_block_, base_storage_;
  std::vector<std::string_view> own_base_users_;
};

Status Decoder::DecodeLayout() {
  const size_t property_count = file_.property_count(part_idx_);
  if (property_count > kScannedProperties) {
    for (uint32_t property_idx = 0; property_idx < property_count; ++property_idx) {
      property_by_name_.emplace(file_.property_name(part_idx_, property_idx), property_idx);
    }
  }
  for (int field = 0; field < kWellKnownCount; ++field) field_property_[field] = PropertyNamed(kWellKnownNames[field]);
  properties_.resize(property_count);
  property_decoded_.assign(property_count, 0);

  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kLayout));
  Reader reader(block);
  auto bad = [&](const char* what) { return Corrupt(kLayout, what); };
  uint64_t count = 0;
  for (auto* names : {&types_, &sources_}) {
    if (!reader.GetVarint(count) || count > reader.remaining()) return bad("bad dictionary");
    names->resize(count);
    for (auto& name : *names) {
      if (!reader.GetBytes(name)) return bad("bad dictionary");
    }
  }
  if (!reader.GetVarint(count) || count > reader.remaining()) return bad("bad shape count");
  shapes_.resize(count);
  std::vector<uint32_t> seen(property_count, 0);  // shape_idx + 1 of the last shape using the property
  for (uint32_t shape_idx = 0; shape_idx < shapes_.size(); ++shape_idx) {
    Shape& shape = shapes_[shape_idx];
    uint64_t kind = 0;
    if (!reader.GetVarint(kind)) return bad("truncated shape");
    shape.kind = std::min(kind, kShapeObject);
    shape.first = static_cast<uint32_t>(shape_properties_.size());
    if (kind < kShapeObject) continue;
    const uint64_t members = kind - kShapeObject;
    if (members > reader.remaining() || members > property_count) return bad("bad shape");
    shape.count = static_cast<uint32_t>(members);
    for (uint64_t member_idx = 0; member_idx < members; ++member_idx) {
      uint64_t property_idx = 0;
      if (!reader.GetVarint(property_idx) || property_idx >= property_count || seen[property_idx] == shape_idx + 1) {
        return bad("bad shape member");
      }
      seen[property_idx] = shape_idx + 1;
      shape_properties_.push_back(static_cast<uint32_t>(property_idx));
    }
  }
  if (!reader.GetVarint(count) || count > reader.remaining()) return bad("bad layout count");
  layouts_.resize(count);
  for (Layout& layout : layouts_) {
    uint64_t type = 0, source = 0, shape = 0, flags = 0;
    if (!reader.GetVarint(type) || !reader.GetVarint(source) || !reader.GetVarint(shape) || !reader.GetVarint(flags) ||
        type >= types_.size() || source >= sources_.size() || shape >= shapes_.size() ||
        (flags & ~uint64_t{kKnownFlags})) {
      return bad("bad layout");
    }
    layout = Layout{static_cast<uint32_t>(type), static_cast<uint32_t>(source), static_cast<uint32_t>(shape),
                    static_cast<uint32_t>(flags)};
    for (int field = 0; field < kWellKnownCount; ++field) {
      const uint32_t mode = FieldModeOf(layout.flags, field);
      if (mode > kModeExplicit) return bad("bad field mode");
      if (mode == kModeFromData &&
          (field_property_[field] == kNone || !ShapeHas(shapes_[layout.shape], field_property_[field]))) {
        return bad("typed field refers to a missing data member");
      }
    }
  }
  if (rows_ > reader.remaining()) return bad("fewer layout codes than rows");
  row_layout_.resize(rows_);
  std::vector<uint64_t> layout_rows(layouts_.size(), 0);
  for (auto& code : row_layout_) {
    uint64_t value = 0;
    if (!reader.GetVarint(value) || value >= layouts_.size()) return bad("bad layout code");
    code = static_cast<uint32_t>(value);
    ++layout_rows[value];
  }
  if (!reader.done()) return bad("trailing bytes");
  property_values_.assign(property_count, 0);
  for (size_t layout_idx = 0; layout_idx < layouts_.size(); ++layout_idx) {
    const Layout& layout = layouts_[layout_idx];
    const Shape& shape = shapes_[layout.shape];
    if (shape.kind == kShapeRaw) raw_rows_ += layout_rows[layout_idx];
    for (uint32_t member_idx = 0; member_idx < shape.count; ++member_idx) {
      property_values_[shape_properties_[shape.first + member_idx]] += layout_rows[layout_idx];
    }
    for (int field = 0; field < kWellKnownCount; ++field) {
      if (FieldModeOf(layout.flags, field) == kModeExplicit) explicit_rows_[field] += layout_rows[layout_idx];
    }
  }
  return Status::Ok();
}

Status Decoder::DecodeUsers() {
  if (users_decoded_) return Status::Ok();
  ANALYTICS_RETURN_IF_ERROR(DecodeRuns());
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kUser));
  Reader reader(block);
  if (part_idx_ == 0) {
    if (!ReadStringList(reader, rows_, users_storage_, users_) || users_.size() != user_runs_.size() ||
        !reader.done()) {
      return Corrupt(kUser, "bad user list");
    }
  } else {
    // References into the first part's users (docs/formats/segment.md, format 4).
    if (base_users_ == nullptr) {
      ANALYTICS_ASSIGN_OR_RETURN(base_block_, file_.PartColumn(0, kUser));
      Reader base_reader(base_block_);
      if (!ReadStringList(base_reader, file_.part(0).rows, base_storage_, own_base_users_) || !base_reader.done()) {
        return file_.PartColumnCorrupt(0, kUser, "bad user list");
      }
      base_users_ = &own_base_users_;
    }
    UserRefs refs;
    if (!ReadUserRefs(reader, user_runs_.size(), base_users_->size(), users_storage_, refs)) {
      return Corrupt(kUser, "bad user references");
    }
    users_.resize(refs.codes.size());
    size_t extra_idx = 0;
    for (size_t user_idx = 0; user_idx < users_.size(); ++user_idx) {
      const uint32_t code = refs.codes[user_idx];
      users_[user_idx] = code == kExtraUser ? refs.extras[extra_idx++] : (*base_users_)[code];
    }
  }
  users_decoded_ = true;
  return Status::Ok();
}

Status Decoder::DecodeRuns() {
  if (runs_decoded_) return Status::Ok();
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kUserRuns));
  Reader reader(block);
  auto bad = [&](const char* what) { return Corrupt(kUserRuns, what); };
  run_start_.assign(rows_, 0);
  uint64_t row_idx = 0;
  while (row_idx < rows_) {
    uint64_t length = 0;
    if (!reader.GetVarint(length) || length == 0 || length > rows_ - row_idx) return bad("bad run length");
    run_start_[row_idx] = 1;
    user_runs_.push_back(static_cast<uint32_t>(length));
    row_idx += length;
  }
  if (!reader.done()) return bad("trailing bytes");
  runs_decoded_ = true;
  return Status::Ok();
}

Status Decoder::DecodeTimes() {
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kTime));
  Reader reader(block);
  std::vector<uint64_t> deltas;
  uint8_t form = 0;
  if (!reader.GetByte(form) || (form != 0 && form != 2) || !ReadUintValues(reader, rows_, form == 2, deltas)) {
    return Corrupt(kTime, "truncated");
  }
  times_.resize(rows_);
  const auto min_time = static_cast<uint64_t>(file_.part(part_idx_).min_time_ms);
  uint64_t previous = 0;
  for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
    previous = (run_start_[row_idx] ? min_time : previous) + deltas[row_idx];
    times_[row_idx] = static_cast<int64_t>(previous);
  }
  if (!reader.done()) return Corrupt(kTime, "trailing bytes");
  return Status::Ok();
}

Status Decoder::DecodeReceived() {
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kReceived));
  Reader reader(block);
  auto bad = [&](const char* what) { return Corrupt(kReceived, what); };
  uint8_t mode = 0;
  if (!reader.GetByte(mode) || mode > 2 || rows_ > reader.remaining()) return bad("bad header");
  received_.resize(rows_);
  if (mode == 1) {
    for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
      int64_t lag = 0;
      if (!reader.GetZigzag(lag)) return bad("truncated");
      received_[row_idx] = static_cast<int64_t>(static_cast<uint64_t>(times_[row_idx]) + static_cast<uint64_t>(lag));
    }
  } else if (mode == 2) {
    uint64_t count = 0;
    // Each entry takes at least two bytes.
    if (!reader.GetVarint(count) || count > reader.remaining() || (count == 0) != (rows_ == 0)) {
      return bad("bad dictionary");
    }
    std::vector<int64_t> values(count), earliest(count);
    uint64_t value = 0, time = 0;
    for (size_t entry_idx = 0; entry_idx < count; ++entry_idx) {
      int64_t value_delta = 0;
      uint64_t time_delta = 0;
      if (entry_idx == 0) {
        int64_t first_time = 0;
        if (!reader.GetZigzag(value_delta) || !reader.GetZigzag(first_time)) return bad("truncated dictionary");
        time = static_cast<uint64_t>(first_time);
      } else {
        if (!reader.GetZigzag(value_delta) || !reader.GetVarint(time_delta)) return bad("truncated dictionary");
        time += time_delta;
      }
      value += static_cast<uint64_t>(value_delta);
      values[entry_idx] = static_cast<int64_t>(value);
      earliest[entry_idx] = static_cast<int64_t>(time);
      if (entry_idx > 0 && earliest[entry_idx] < earliest[entry_idx - 1]) return bad("times out of order");
    }
    for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
      int64_t delta = 0;
      if (!reader.GetZigzag(delta)) return bad("truncated");
      const auto after = std::upper_bound(earliest.begin(), earliest.end(), times_[row_idx]);
      const int64_t predicted = std::max<int64_t>(0, (after - earliest.begin()) - 1);
      const uint64_t code = static_cast<uint64_t>(predicted) + static_cast<uint64_t>(delta);
      if (code >= count) return bad("bad code");
      received_[row_idx] = values[code];
    }
  } else {
    uint64_t count = 0;
    if (!reader.GetVarint(count) || count > reader.remaining() || (count == 0) != (rows_ == 0)) {
      return bad("bad dictionary");
    }
    std::vector<int64_t> values(count);
    uint64_t previous = 0;
    for (size_t value_idx = 0; value_idx < count; ++value_idx) {
      if (value_idx == 0) {
        int64_t first = 0;
        if (!reader.GetZigzag(first)) return bad("truncated dictionary");
        previous = static_cast<uint64_t>(first);
      } else {
        uint64_t delta = 0;
        if (!reader.GetVarint(delta)) return bad("truncated dictionary");
        previous += delta;
      }
      values[value_idx] = static_cast<int64_t>(previous);
    }
    uint64_t code = 0;
    for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
      if (run_start_[row_idx]) {
        if (!reader.GetVarint(code)) return bad("truncated");
      } else {
        int64_t delta = 0;
        if (!reader.GetZigzag(delta)) return bad("truncated");
        code += static_cast<uint64_t>(delta);
      }
      if (code >= count) return bad("bad code");
      received_[row_idx] = values[code];
    }
  }
  if (!reader.done()) return bad("trailing bytes");
  return Status::Ok();
}

Status Decoder::DecodeIds() {
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kId));
  Reader reader(block);
  if (rows_ > reader.remaining()) return Corrupt(kId, "truncated");
  ids_.resize(rows_);
  for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
    std::string_view bytes;
    if (LayoutOf(row_idx).flags & kFlagUuidId) {
      if (!reader.GetRaw(16, bytes)) return Corrupt(kId, "truncated");
      ids_[row_idx] = UnpackUuid(bytes);
    } else {
      if (!reader.GetBytes(bytes)) return Corrupt(kId, "truncated");
      ids_[row_idx] = bytes;
    }
  }
  if (!reader.done()) return Corrupt(kId, "trailing bytes");
  return Status::Ok();
}

Status Decoder::DecodeExplicit(int field) {
  const CoreColumn column = kWellKnownColumns[field];
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(column));
  Reader reader(block);
  if (field == kFieldAmount) {
    if (block.size() != explicit_rows_[field] * 8) return Corrupt(column, "size mismatch");
    explicit_amounts_.resize(explicit_rows_[field]);
    for (double& amount : explicit_amounts_) {
      uint64_t bits = 0;
      if (!reader.GetFixed64(bits)) return Corrupt(column, "truncated");
      std::memcpy(&amount, &bits, sizeof(amount));
    }
    return Status::Ok();
  }
  if (!ReadStringDict(reader, explicit_rows_[field], explicit_storage_[field], explicit_dictionary_[field],
                      explicit_codes_[field]) ||
      !reader.done()) {
    return Corrupt(column, "bad dictionary or codes");
  }
  return Status::Ok();
}

Status Decoder::DecodeExtensions() {
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kExtensions));
  Reader reader(block);
  if (!ReadStringDict(reader, rows_, extensions_storage_, extensions_dictionary_, extensions_codes_) ||
      !reader.done()) {
    return Corrupt(kExtensions, "bad dictionary or codes");
  }
  return Status::Ok();
}

Status Decoder::DecodeDataRaw() {
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(kDataRaw));
  Reader reader(block);
  if (raw_rows_ > reader.remaining()) return Corrupt(kDataRaw, "truncated");
  data_raw_.resize(raw_rows_);
  for (auto& data : data_raw_) {
    if (!reader.GetBytes(data)) return Corrupt(kDataRaw, "truncated");
  }
  if (!reader.done()) return Corrupt(kDataRaw, "trailing bytes");
  return Status::Ok();
}

Status Decoder::DecodeProperty(uint32_t property_idx) {
  if (property_decoded_[property_idx]) return Status::Ok();
  const size_t column = kCoreColumnCount + property_idx;
  ANALYTICS_ASSIGN_OR_RETURN(std::string_view block, Load(column));
  if (!DecodePropertyValues(block, property_values_[property_idx], properties_[property_idx])) {
    return Corrupt(column, "bad values");
  }
  property_decoded_[property_idx] = 1;
  return Status::Ok();
}

Status Decoder::BuildEvents(std::vector<StoredEvent>& out) {
  const size_t property_count = properties_.size();
  // Text pieces rendered once: member prefixes ("name":) and quoted dictionary strings.
  std::vector<std::string> member_prefix(property_count);
  std::vector<std::vector<std::string>> quoted(property_count);
  std::vector<int> field_of(property_count, -1);
  for (uint32_t property_idx = 0; property_idx < property_count; ++property_idx) {
    std::string& prefix = member_prefix[property_idx];
    prefix.push_back('"');
    AppendJsonEscaped(prefix, file_.property_name(part_idx_, property_idx));
    prefix += "\":";
    for (std::string_view value : properties_[property_idx].strings) {
      std::string& text = quoted[property_idx].emplace_back(1, '"');
      AppendJsonEscaped(text, value);
      text.push_back('"');
    }
  }
  for (int field = 0; field < kWellKnownCount; ++field) {
    if (field_property_[field] != kNone) field_of[field_property_[field]] = field;
  }
  std::vector<uint32_t> cursor(property_count, 0);
  size_t explicit_cursor[kWellKnownCount] = {};
  size_t raw_cursor = 0, user_idx = 0;
  std::string quoted_user;
  std::vector<std::string> quoted_users;  // built when a user reference is met
  std::vector<StoredEvent> rows(rows_);
  for (size_t row_idx = 0; row_idx < rows_; ++row_idx) {
    StoredEvent& row = rows[row_idx];
    const Layout& layout = LayoutOf(row_idx);
    if (run_start_[row_idx]) {
      if (row_idx > 0) ++user_idx;
      quoted_user.assign(1, '"');
      AppendJsonEscaped(quoted_user, users_[user_idx]);
      quoted_user.push_back('"');
    }
    row.user = users_[user_idx];
    row.id = std::move(ids_[row_idx]);
    row.type = types_[layout.type];
    row.source = sources_[layout.source];
    row.time_ms = times_[row_idx];
    row.received_ms = received_[row_idx];
    row.time_defaulted = layout.flags & kFlagTimeDefaulted;
    row.user_in_subject = layout.flags & kFlagUserInSubject;
    row.extensions = extensions_dictionary_[extensions_codes_[row_idx]];
    const Shape& shape = shapes_[layout.shape];
    if (shape.kind == kShapeRaw) {
      row.data = data_raw_[raw_cursor++];
    } else if (shape.kind == kShapeObject) {
      std::string& data = row.data;
      data.push_back('{');
      for (uint32_t member_idx = 0; member_idx < shape.count; ++member_idx) {
        const uint32_t property_idx = shape_properties_[shape.first + member_idx];
        const PropertyValues& values = properties_[property_idx];
        const uint32_t value_idx = cursor[property_idx]++;
        const uint8_t tag = values.tags[value_idx];
        const uint32_t slot = values.slots[value_idx];
        if (member_idx > 0) data.push_back(',');
        data += member_prefix[property_idx];
        switch (tag) {
          case kTagNull: data += "null"; break;
          case kTagFalse: data += "false"; break;
          case kTagTrue: data += "true"; break;
          case kTagInt: AppendInt64Text(data, values.ints[slot]); break;
          case kTagDouble: AppendDoubleText(data, values.doubles[slot]); break;
          case kTagString: data += quoted[property_idx][slot]; break;
          case kTagRaw: data += values.raws[slot]; break;
          case kTagUser: data += quoted_user; break;
          case kTagUserRef: {
            const auto ref = static_cast<uint64_t>(values.user_refs[slot]);
            if (ref >= users_.size()) return Corrupt(kCoreColumnCount + property_idx, "bad user reference");
            if (quoted_users.empty()) {
              for (std::string_view user : users_) {
                std::string& text = quoted_users.emplace_back(1, '"');
                AppendJsonEscaped(text, user);
                text.push_back('"');
              }
            }
            data += quoted_users[ref];
            break;
          }
          default: break;
        }
        const int field = field_of[property_idx];
        if (field < 0 || FieldModeOf(layout.flags, field) != kModeFromData) continue;
        if (field == kFieldAmount) {
          if (tag == kTagInt) {
            row.amount = static_cast<double>(values.ints[slot]);
          } else if (tag == kTagDouble) {
            row.amount = values.doubles[slot];
          } else {
            return Corrupt(kLayout, "amount refers to a data member that is not a number");
          }
        } else if (tag == kTagString) {
          row.*kStringFields[field] = values.strings[slot];
        } else {
          return Corrupt(kLayout,
                         std::string(kWellKnownNames[field]) + " refers to a data member that is not a string");
        }
      }
      data.push_back('}');
    }
    for (int field = 0; field < kWellKnownCount; ++field) {
      if (FieldModeOf(layout.flags, field) != kModeExplicit) continue;
      const size_t explicit_idx = explicit_cursor[field]++;
      if (field == kFieldAmount) {
        row.amount = explicit_amounts_[explicit_idx];
      } else {
        row.*kStringFields[field] = explicit_dictionary_[field][explicit_codes_[field][explicit_idx]];
      }
    }
  }
  out.insert(out.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
  return Status::Ok();
}

// A typed field (game_id, ...) of every row: from the data member, its own column, or empty.
Status TypedStringField(Decoder& decoder, int field, StringColumn& out) {
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeExplicit(field));
  const uint32_t property_idx = decoder.field_property(field);
  const bool from_data = decoder.AnyLayoutWithMode(field, kModeFromData);
  if (from_data) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeProperty(property_idx));
  // The data member's dictionary (distinct strings) becomes the column's as it is, its slots the codes; explicit
  // values and "" are added to it, each once (per entry, its code in `out`, kNone until met).
  const std::vector<uint8_t> shape_has = from_data ? decoder.ShapesWith(property_idx) : std::vector<uint8_t>();
  const PropertyValues* values = from_data ? &decoder.properties_[property_idx] : nullptr;
  std::vector<uint32_t> data_code(from_data ? values->strings.size() : 0, kNone);
  if (from_data) {
    out.dictionary.assign(values->strings.begin(), values->strings.end());
    for (uint32_t slot = 0; slot < values->strings.size(); ++slot) data_code[slot] = slot;
  }
  std::unordered_map<std::string_view, uint32_t> index;  // built when a value outside the data's is met
  bool indexed = false;
  uint32_t appended_empty = kNone;  // "" added after the data's strings (by intern_empty, before the index)
  auto intern = [&](std::string_view value) {
    if (!indexed) {
      indexed = true;
      // Views into the decoder's storage, which stays put while `out.dictionary` grows.
      for (uint32_t slot = 0; slot < data_code.size(); ++slot) index.emplace(values->strings[slot], slot);
      if (appended_empty != kNone) index.emplace(std::string_view(), appended_empty);
    }
    auto it = index.find(value);
    if (it != index.end()) return it->second;
    index.emplace(value, static_cast<uint32_t>(out.dictionary.size()));
    out.dictionary.emplace_back(value);
    return static_cast<uint32_t>(out.dictionary.size() - 1);
  };
  // "" (rows without the field) is looked for among the data's strings directly: indexing them all for it
  // cost more than the rest of the read when the data's strings are all distinct (session ids).
  auto intern_empty = [&]() -> uint32_t {
    if (indexed) return intern("");
    for (uint32_t slot = 0; slot < data_code.size(); ++slot) {
      if (values->strings[slot].empty()) return slot;
    }
    out.dictionary.emplace_back();
    appended_empty = static_cast<uint32_t>(out.dictionary.size() - 1);
    return appended_empty;
  };
  std::vector<uint32_t> explicit_code(decoder.explicit_dictionary_[field].size(), kNone);
  uint32_t empty_code = kNone;
  out.codes.resize(decoder.rows());
  uint32_t value_idx = 0;
  size_t explicit_idx = 0;
  for (size_t row_idx = 0; row_idx < decoder.rows(); ++row_idx) {
    const Layout& layout = decoder.LayoutOf(row_idx);
    const bool has_member = from_data && shape_has[layout.shape];
    const uint32_t this_value = has_member ? value_idx++ : 0;
    switch (FieldModeOf(layout.flags, field)) {
      case kModeFromData: {
        if (values->tags[this_value] != kTagString) {
          return decoder.Corrupt(kWellKnownColumns[field], "refers to a data member that is not a string");
        }
        out.codes[row_idx] = data_code[values->slots[this_value]];
        break;
      }
      case kModeExplicit: {
        const uint32_t entry = decoder.explicit_codes_[field][explicit_idx++];
        if (explicit_code[entry] == kNone) explicit_code[entry] = intern(decoder.explicit_dictionary_[field][entry]);
        out.codes[row_idx] = explicit_code[entry];
        break;
      }
      default:
        if (empty_code == kNone) empty_code = intern_empty();
        out.codes[row_idx] = empty_code;
    }
  }
  return Status::Ok();
}

// Every event of the decoder's part, in its order.
Status ReadPartEvents(Decoder& decoder, std::vector<StoredEvent>& out) {
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeLayout());
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeUsers());
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeTimes());
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeReceived());
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeIds());
  for (int field = 0; field < kWellKnownCount; ++field) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeExplicit(field));
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeExtensions());
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeDataRaw());
  for (uint32_t property_idx = 0; property_idx < decoder.property_count(); ++property_idx) {
    ANALYTICS_RETURN_IF_ERROR(decoder.DecodeProperty(property_idx));
  }
  return decoder.BuildEvents(out);
}

// Merges per-part columns (each in its part's order) into the segment's order.
class PartMerger {
 public:
  PartMerger(std::vector<SegmentColumns>& parts, const std::vector<uint32_t>& part_of_row)
      : parts_(parts), part_of_row_(part_of_row), cursor_(parts.size(), 0) {}

  SegmentColumns Merge(const SegmentColumnRequest& request) {
    SegmentColumns out;
    out.rows = part_of_row_.size();
    MergeStrings(request.type, &SegmentColumns::type, out);
    MergeStrings(request.source, &SegmentColumns::source, out);
    MergeStrings(request.game_id, &SegmentColumns::game_id, out);
    MergeStrings(request.session_id, &SegmentColumns::session_id, out);
    MergeStrings(request.currency, &SegmentColumns::currency, out);
    MergeStrings(request.country, &SegmentColumns::country, out);
    MergeStrings(request.platform, &SegmentColumns::platform, out);
    out.properties.resize(request.properties.size());
    for (size_t request_idx = 0; request_idx < request.properties.size(); ++request_idx) {
      MergeProperty(request_idx, out.properties[request_idx]);
    }
    std::fill(cursor_.begin(), cursor_.end(), 0);
    for (uint32_t part_idx : part_of_row_) {
      const SegmentColumns& part = parts_[part_idx];
      const size_t row_idx = cursor_[part_idx]++;
      if (request.user) {
        const std::string& user = part.users[part.user_codes[row_idx]];
        if (out.users.empty() || out.users.back() != user) {
          out.users.push_back(user);
          out.user_runs.push_back(0);
        }
        ++out.user_runs.back();
        out.user_codes.push_back(static_cast<uint32_t>(out.users.size() - 1));
      }
      if (request.time) out.time_ms.push_back(part.time_ms[row_idx]);
      if (request.received) out.received_ms.push_back(part.received_ms[row_idx]);
      if (request.id) out.id.push_back(std::move(parts_[part_idx].id[row_idx]));
      if (request.amount) out.amount.push_back(part.amount[row_idx]);
      if (request.flags) {
        out.time_defaulted.push_back(part.time_defaulted[row_idx]);
        out.user_in_subject.push_back(part.user_in_subject[row_idx]);
      }
    }
    return out;
  }

 private:
  // Per part: its dictionary's entries in the merged dictionary.
  std::vector<std::vector<uint32_t>> MergeDictionaries(const std::vector<const std::vector<std::string>*>& dictionaries,
                                                       std::vector<std::string>& merged) {
    std::unordered_map<std::string_view, uint32_t> index;
    std::vector<std::vector<uint32_t>> remap(dictionaries.size());
    for (size_t part_idx = 0; part_idx < dictionaries.size(); ++part_idx) {
      for (const std::string& value : *dictionaries[part_idx]) {
        auto it = index.find(value);
        if (it == index.end()) {  // keyed by the parts' strings, which stay put while `merged` grows
          merged.push_back(value);
          it = index.emplace(value, static_cast<uint32_t>(merged.size() - 1)).first;
        }
        remap[part_idx].push_back(it->second);
      }
    }
    return remap;
  }

  void MergeStrings(bool requested, StringColumn SegmentColumns::*field, SegmentColumns& out) {
    if (!requested) return;
    std::vector<const std::vector<std::string>*> dictionaries;
    for (const SegmentColumns& part : parts_) dictionaries.push_back(&(part.*field).dictionary);
    StringColumn& column = out.*field;
    column.dictionary.reserve((parts_.front().*field).dictionary.size());
    const auto remap = MergeDictionaries(dictionaries, column.dictionary);
    std::fill(cursor_.begin(), cursor_.end(), 0);
    column.codes.reserve(part_of_row_.size());
    for (uint32_t part_idx : part_of_row_) {
      column.codes.push_back(remap[part_idx][(parts_[part_idx].*field).codes[cursor_[part_idx]++]]);
    }
  }

  void MergeProperty(size_t request_idx, PropertyColumn& column) {
    std::vector<const std::vector<std::string>*> dictionaries;
    for (const SegmentColumns& part : parts_) dictionaries.push_back(&part.properties[request_idx].strings);
    const auto remap = MergeDictionaries(dictionaries, column.strings);
    column.name = parts_.front().properties[request_idx].name;
    const size_t rows = part_of_row_.size();
    column.kinds.reserve(rows);
    column.ints.reserve(rows);
    column.doubles.reserve(rows);
    std::fill(cursor_.begin(), cursor_.end(), 0);
    for (uint32_t part_idx : part_of_row_) {
      const PropertyColumn& part = parts_[part_idx].properties[request_idx];
      const size_t row_idx = cursor_[part_idx]++;
      const ValueKind kind = part.kinds[row_idx];
      column.kinds.push_back(kind);
      const bool indexed = kind == ValueKind::kString || kind == ValueKind::kJson;
      column.ints.push_back(indexed ? remap[part_idx][static_cast<size_t>(part.ints[row_idx])] : part.ints[row_idx]);
      column.doubles.push_back(part.doubles[row_idx]);
    }
  }

  std::vector<SegmentColumns>& parts_;
  const std::vector<uint32_t>& part_of_row_;
  std::vector<size_t> cursor_;
};

}  // namespace

Result<std::vector<uint64_t>> ReadPositions(const SegmentFile& file, size_t part_idx) {
  const uint64_t rows = file.part(part_idx).rows;
  const uint64_t total = file.footer().rows;
  ANALYTICS_ASSIGN_OR_RETURN(std::string block, file.Positions(part_idx));
  Reader reader(block);
  auto bad = [&](const char* what) { return file.PartColumnCorrupt(part_idx, kPositionsColumn, what); };
  if (rows > reader.remaining()) return bad("fewer positions than rows");
  std::vector<uint64_t> positions(rows);
  uint64_t next = 0;  // the smallest position the next row may take
  for (uint64_t& position : positions) {
    uint64_t delta = 0;
    if (!reader.GetVarint(delta) || delta >= total - next) return bad("bad position");
    position = next + delta;
    next = position + 1;
  }
  if (!reader.done()) return bad("trailing bytes");
  return positions;
}

Result<std::vector<uint32_t>> PartOfRows(const SegmentFile& file) {
  const uint64_t rows = file.footer().rows;
  // Every row has a layout code (at least one byte), so rows are bounded by what the file decompresses to.
  for (size_t part_idx = 0; part_idx < file.part_count(); ++part_idx) {
    if (file.part(part_idx).rows > file.part(part_idx).columns[kLayout].raw_size) {
      return file.PartColumnCorrupt(part_idx, kLayout, "fewer bytes than rows");
    }
  }
  constexpr uint32_t kUnassigned = UINT32_MAX;
  std::vector<uint32_t> part_of_row(rows, kUnassigned);
  for (size_t part_idx = 1; part_idx < file.part_count(); ++part_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(std::vector<uint64_t> positions, ReadPositions(file, part_idx));
    for (uint64_t position : positions) {
      if (part_of_row[position] != kUnassigned) {
        return file.PartColumnCorrupt(part_idx, kPositionsColumn, "a position taken by another part");
      }
      part_of_row[position] = static_cast<uint32_t>(part_idx);
    }
  }
  // The first part takes the rest; the row counts (checked at open) make them exactly its rows.
  for (uint32_t& part_idx : part_of_row) {
    if (part_idx == kUnassigned) part_idx = 0;
  }
  return part_of_row;
}

Status ReadPartUsers(const SegmentFile& file, size_t part_idx, PartUserList& out, uint64_t first_user_count) {
  const uint64_t rows = file.part(part_idx).rows;
  ANALYTICS_ASSIGN_OR_RETURN(std::string runs_block, file.PartColumn(part_idx, kUserRuns));
  Reader runs_reader(runs_block);
  out.runs.clear();
  uint64_t row_idx = 0;
  while (row_idx < rows) {
    uint64_t length = 0;
    if (!runs_reader.GetVarint(length) || length == 0 || length > rows - row_idx) {
      return file.PartColumnCorrupt(part_idx, kUserRuns, "bad run length");
    }
    out.runs.push_back(static_cast<uint32_t>(length));
    row_idx += length;
  }
  if (!runs_reader.done()) return file.PartColumnCorrupt(part_idx, kUserRuns, "trailing bytes");
  ANALYTICS_ASSIGN_OR_RETURN(std::string users_block, file.PartColumn(part_idx, kUser));
  Reader reader(users_block);
  if (part_idx == 0) {
    out.base_refs.clear();
    if (!ReadStringList(reader, rows, out.storage, out.users) || out.users.size() != out.runs.size() ||
        !reader.done()) {
      return file.PartColumnCorrupt(part_idx, kUser, "bad user list");
    }
    return Status::Ok();
  }
  UserRefs refs;
  if (first_user_count == UINT64_MAX) {
    // The first part's user count: one run (one varint) per user.
    ANALYTICS_ASSIGN_OR_RETURN(std::string first_runs, file.PartColumn(0, kUserRuns));
    Reader first_reader(first_runs);
    for (first_user_count = 0; !first_reader.done(); ++first_user_count) {
      uint64_t length = 0;
      if (!first_reader.GetVarint(length)) return file.PartColumnCorrupt(0, kUserRuns, "bad run length");
    }
  }
  if (!ReadUserRefs(reader, out.runs.size(), first_user_count, out.storage, refs) || !reader.done()) {
    return file.PartColumnCorrupt(part_idx, kUser, "bad user references");
  }
  out.base_refs = std::move(refs.codes);
  out.users = std::move(refs.extras);
  return Status::Ok();
}

Status ReadEvents(const SegmentFile& file, std::vector<StoredEvent>& out) {
  Decoder first(file, 0);
  if (file.part_count() == 1) return ReadPartEvents(first, out);
  ANALYTICS_ASSIGN_OR_RETURN(const std::vector<uint32_t> part_of_row, PartOfRows(file));
  std::vector<std::vector<StoredEvent>> parts(file.part_count());
  ANALYTICS_RETURN_IF_ERROR(ReadPartEvents(first, parts[0]));
  for (size_t part_idx = 1; part_idx < parts.size(); ++part_idx) {
    Decoder decoder(file, part_idx);
    decoder.SetBaseUsers(&first.users_);
    ANALYTICS_RETURN_IF_ERROR(ReadPartEvents(decoder, parts[part_idx]));
  }
  std::vector<size_t> cursor(parts.size(), 0);
  out.reserve(out.size() + part_of_row.size());
  for (uint32_t part_idx : part_of_row) out.push_back(std::move(parts[part_idx][cursor[part_idx]++]));
  return Status::Ok();
}

Result<SegmentColumns> ReadColumns(const SegmentFile& file, const SegmentColumnRequest& request) {
  if (file.part_count() == 1) return ReadPartColumns(file, 0, request);
  ANALYTICS_ASSIGN_OR_RETURN(const std::vector<uint32_t> part_of_row, PartOfRows(file));
  // The first part's users once, for the parts that refer to them.
  PartUserList first_users;
  if (request.user || !request.properties.empty()) ANALYTICS_RETURN_IF_ERROR(ReadPartUsers(file, 0, first_users));
  std::vector<SegmentColumns> parts;
  for (size_t part_idx = 0; part_idx < file.part_count(); ++part_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(SegmentColumns part, ReadPartColumns(file, part_idx, request, &first_users.users));
    parts.push_back(std::move(part));
  }
  return PartMerger(parts, part_of_row).Merge(request);
}

Result<SegmentColumns> ReadPartColumns(const SegmentFile& file, size_t part_idx, const SegmentColumnRequest& request,
                                       const std::vector<std::string_view>* first_users) {
  Decoder decoder(file, part_idx);
  if (part_idx > 0 && first_users != nullptr && !first_users->empty()) decoder.SetBaseUsers(first_users);
  ANALYTICS_RETURN_IF_ERROR(decoder.DecodeLayout());
  SegmentColumns out;
  const uint64_t rows = decoder.rows();
  out.rows = rows;
  if (request.user) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeUsers());
  if (request.time || request.received || request.runs) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeRuns());
  if (request.runs && !request.user) out.user_runs = decoder.user_runs_;
  if (request.user) {
    out.users.assign(decoder.users_.begin(), decoder.users_.end());
    out.user_runs = decoder.user_runs_;
    out.user_codes.reserve(rows);
    for (uint32_t user_idx = 0; user_idx < out.user_runs.size(); ++user_idx) {
      out.user_codes.insert(out.user_codes.end(), out.user_runs[user_idx], user_idx);
    }
  }
  if (request.time || request.received) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeTimes());
  if (request.received) {
    ANALYTICS_RETURN_IF_ERROR(decoder.DecodeReceived());
    out.received_ms = std::move(decoder.received_);
  }
  if (request.time) out.time_ms = std::move(decoder.times_);
  if (request.type || request.source) {
    if (request.type) out.type.dictionary.assign(decoder.types_.begin(), decoder.types_.end());
    if (request.source) out.source.dictionary.assign(decoder.sources_.begin(), decoder.sources_.end());
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (request.type) out.type.codes.push_back(decoder.LayoutOf(row_idx).type);
      if (request.source) out.source.codes.push_back(decoder.LayoutOf(row_idx).source);
    }
  }
  if (request.id) {
    ANALYTICS_RETURN_IF_ERROR(decoder.DecodeIds());
    out.id = std::move(decoder.ids_);
  }
  if (request.flags) {
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      out.time_defaulted.push_back(decoder.LayoutOf(row_idx).flags & kFlagTimeDefaulted ? 1 : 0);
      out.user_in_subject.push_back(decoder.LayoutOf(row_idx).flags & kFlagUserInSubject ? 1 : 0);
    }
  }
  const std::pair<bool, StringColumn*> string_fields[] = {
      {request.game_id, &out.game_id},   {request.session_id, &out.session_id}, {false, nullptr},
      {request.currency, &out.currency}, {request.country, &out.country},       {request.platform, &out.platform}};
  for (int field = 0; field < kWellKnownCount; ++field) {
    if (field == kFieldAmount || !string_fields[field].first) continue;
    ANALYTICS_RETURN_IF_ERROR(TypedStringField(decoder, field, *string_fields[field].second));
  }
  if (request.amount) {
    ANALYTICS_RETURN_IF_ERROR(decoder.DecodeExplicit(kFieldAmount));
    const uint32_t property_idx = decoder.field_property(kFieldAmount);
    const bool from_data = decoder.AnyLayoutWithMode(kFieldAmount, kModeFromData);
    if (from_data) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeProperty(property_idx));
    out.amount.resize(rows);
    const std::vector<uint8_t> shape_has = from_data ? decoder.ShapesWith(property_idx) : std::vector<uint8_t>();
    uint32_t value_idx = 0;
    size_t explicit_idx = 0;
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      const bool has_member = from_data && shape_has[decoder.LayoutOf(row_idx).shape];
      const uint32_t this_value = has_member ? value_idx++ : 0;
      const uint32_t mode = FieldModeOf(decoder.LayoutOf(row_idx).flags, kFieldAmount);
      if (mode == kModeExplicit) {
        out.amount[row_idx] = decoder.explicit_amounts_[explicit_idx++];
      } else if (mode == kModeFromData) {
        const PropertyValues& values = decoder.properties_[property_idx];
        const uint32_t slot = values.slots[this_value];
        if (values.tags[this_value] == kTagInt) {
          out.amount[row_idx] = static_cast<double>(values.ints[slot]);
        } else if (values.tags[this_value] == kTagDouble) {
          out.amount[row_idx] = values.doubles[slot];
        } else {
          return decoder.Corrupt(kAmount, "refers to a data member that is not a number");
        }
      }
    }
  }
  if (!request.properties.empty()) {
    RequestedProperties requested(request.properties, rows, out.properties);
    std::vector<size_t> raw_rows;
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (decoder.ShapeOf(row_idx).kind == kShapeRaw) raw_rows.push_back(row_idx);
    }
    for (size_t request_idx = 0; request_idx < request.properties.size(); ++request_idx) {
      const uint32_t property_idx = decoder.PropertyNamed(request.properties[request_idx]);
      if (property_idx == kNone) continue;
      ANALYTICS_RETURN_IF_ERROR(decoder.DecodeProperty(property_idx));
      const PropertyValues& values = decoder.properties_[property_idx];
      PropertyColumnBuilder& builder = requested.builder(request_idx);
      builder.UseDictionary(values.strings);
      // Users are stored as references: to the row's user (data.user_id) or into the user list.
      const bool has_user_values =
          std::find(values.tags.begin(), values.tags.end(), kTagUser) != values.tags.end() || !values.user_refs.empty();
      if (has_user_values) ANALYTICS_RETURN_IF_ERROR(decoder.DecodeUsers());
      const std::vector<uint8_t> shape_has = decoder.ShapesWith(property_idx);
      uint32_t value_idx = 0;
      size_t user_idx = 0;
      for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
        if (has_user_values && row_idx > 0 && decoder.run_start_[row_idx]) ++user_idx;
        if (!shape_has[decoder.LayoutOf(row_idx).shape]) continue;
        const uint32_t this_value = value_idx++;
        const uint32_t slot = values.slots[this_value];
        switch (values.tags[this_value]) {
          case kTagNull: builder.SetNull(row_idx); break;
          case kTagFalse: builder.SetBool(row_idx, false); break;
          case kTagTrue: builder.SetBool(row_idx, true); break;
          case kTagInt: builder.SetInt(row_idx, values.ints[slot]); break;
          case kTagDouble: builder.SetTypedDouble(row_idx, values.doubles[slot]); break;
          case kTagString: builder.SetDictionaryString(row_idx, slot); break;
          case kTagRaw: builder.SetText(row_idx, values.raws[slot]); break;
          case kTagUser: builder.SetString(row_idx, decoder.users_[user_idx], ValueKind::kString); break;
          case kTagUserRef: {
            const auto ref = static_cast<uint64_t>(values.user_refs[slot]);
            if (ref >= decoder.users_.size()) {
              return decoder.Corrupt(kCoreColumnCount + property_idx, "bad user reference");
            }
            builder.SetString(row_idx, decoder.users_[ref], ValueKind::kString);
            break;
          }
          default: break;
        }
      }
    }
    // Rows whose data is kept whole: each parsed once, its members matched against the requested names.
    if (!raw_rows.empty()) {
      ANALYTICS_RETURN_IF_ERROR(decoder.DecodeDataRaw());
      for (size_t raw_idx = 0; raw_idx < raw_rows.size(); ++raw_idx) {
        requested.FillFromText(raw_rows[raw_idx], decoder.data_raw_[raw_idx]);
      }
    }
  }
  return out;
}

}  // namespace v3

SegmentColumns ColumnsFromEvents(const std::vector<const EventView*>& rows, const SegmentColumnRequest& request) {
  SegmentColumns out;
  out.rows = rows.size();
  auto string_column = [&](std::string_view EventView::*field, StringColumn& column) {
    std::unordered_map<std::string_view, uint32_t> index;
    for (const EventView* row : rows) {
      auto it = index.find(row->*field);
      if (it == index.end()) {
        it = index.emplace(row->*field, static_cast<uint32_t>(column.dictionary.size())).first;
        column.dictionary.emplace_back(row->*field);
      }
      column.codes.push_back(it->second);
    }
  };
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    const EventView& row = *rows[row_idx];
    if (request.user || request.runs) {
      if (row_idx == 0 || row.user != rows[row_idx - 1]->user) {
        if (request.user) out.users.emplace_back(row.user);
        out.user_runs.push_back(0);
      }
      ++out.user_runs.back();
      if (request.user) out.user_codes.push_back(static_cast<uint32_t>(out.users.size() - 1));
    }
    if (request.time) out.time_ms.push_back(row.time_ms);
    if (request.received) out.received_ms.push_back(row.received_ms);
    if (request.id) out.id.emplace_back(row.id);
    if (request.amount) out.amount.push_back(row.amount);
    if (request.flags) {
      out.time_defaulted.push_back(row.time_defaulted ? 1 : 0);
      out.user_in_subject.push_back(row.user_in_subject ? 1 : 0);
    }
  }
  if (request.type) string_column(&EventView::type, out.type);
  if (request.source) string_column(&EventView::source, out.source);
  if (request.game_id) string_column(&EventView::game_id, out.game_id);
  if (request.session_id) string_column(&EventView::session_id, out.session_id);
  if (request.currency) string_column(&EventView::currency, out.currency);
  if (request.country) string_column(&EventView::country, out.country);
  if (request.platform) string_column(&EventView::platform, out.platform);
  if (!request.properties.empty()) {
    RequestedProperties requested(request.properties, rows.size(), out.properties);
    for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) requested.FillFromText(row_idx, rows[row_idx]->data);
  }
  return out;
}

void ExcludeUsers(SegmentColumns& columns, const std::set<std::string, std::less<>>& users) {
  if (users.empty() || columns.users.empty() || columns.user_codes.size() != columns.rows ||
      columns.users.size() != columns.user_runs.size()) {
    return;
  }
  std::vector<uint8_t> keep(columns.users.size());
  for (size_t user_idx = 0; user_idx < columns.users.size(); ++user_idx) {
    keep[user_idx] = users.count(columns.users[user_idx]) == 0;
  }
  (void)KeepRuns(columns, keep);  // checked above: one user per run
}

bool KeepRuns(SegmentColumns& columns, const std::vector<uint8_t>& keep) {
  const size_t runs = columns.user_runs.size();
  if (keep.size() != runs) return false;
  const size_t rows = columns.rows;
  // The kept rows as ranges [begin, end) of the columns, adjacent kept runs joined.
  std::vector<std::pair<size_t, size_t>> ranges;
  size_t row = 0, kept = 0;
  for (size_t run_idx = 0; run_idx < runs; ++run_idx) {
    const size_t run_rows = columns.user_runs[run_idx];
    if (keep[run_idx] != 0 && run_rows > 0) {
      if (!ranges.empty() && ranges.back().second == row) {
        ranges.back().second += run_rows;
      } else {
        ranges.emplace_back(row, row + run_rows);
      }
      kept += run_rows;
    }
    row += run_rows;
  }
  if (row != rows) return false;  // runs that do not describe the rows: nothing is dropped
  if (kept == rows) return true;
  // Every per-row vector the request filled (the others are empty) keeps the ranges' rows.
  auto compact = [&](auto& values) {
    if (values.size() != rows) return;
    size_t out = 0;
    for (const auto& [begin, end] : ranges) {
      if (begin != out) std::move(values.begin() + static_cast<ptrdiff_t>(begin),
                                  values.begin() + static_cast<ptrdiff_t>(end), values.begin() + static_cast<ptrdiff_t>(out));
      out += end - begin;
    }
    values.resize(out);
  };
  compact(columns.time_ms);
  compact(columns.received_ms);
  compact(columns.type.codes);
  compact(columns.source.codes);
  compact(columns.id);
  for (StringColumn* column : {&columns.game_id, &columns.session_id, &columns.currency, &columns.country,
                               &columns.platform}) {
    compact(column->codes);
  }
  compact(columns.amount);
  compact(columns.time_defaulted);
  compact(columns.user_in_subject);
  for (PropertyColumn& property : columns.properties) {
    compact(property.kinds);
    compact(property.ints);
    compact(property.doubles);
  }
  // Users: the kept runs, renumbered (a run's code is its index).
  const bool with_users = columns.users.size() == runs;
  const bool with_codes = columns.user_codes.size() == rows;
  size_t out_run = 0;
  for (size_t run_idx = 0; run_idx < runs; ++run_idx) {
    if (keep[run_idx] == 0) continue;
    if (out_run != run_idx) {  // (a string moved onto itself may come out empty)
      columns.user_runs[out_run] = columns.user_runs[run_idx];
      if (with_users) columns.users[out_run] = std::move(columns.users[run_idx]);
    }
    ++out_run;
  }
  columns.user_runs.resize(out_run);
  if (with_users) columns.users.resize(out_run);
  if (with_codes) {
    columns.user_codes.clear();
    for (size_t run_idx = 0; run_idx < out_run; ++run_idx) {
      columns.user_codes.insert(columns.user_codes.end(), columns.user_runs[run_idx], static_cast<uint32_t>(run_idx));
    }
  } else {
    columns.user_codes.clear();
  }
  columns.rows = kept;
  return true;
}

SegmentColumns ColumnsFromEvents(const std::vector<StoredEvent>& rows, const SegmentColumnRequest& request) {
  const events::EventViews views(rows);
  return ColumnsFromEvents(views.pointers, request);
}

}  // namespace analytics::store::embedded
