// The event-type catalog of docs/events.md (sections 4, 7, 8 and 9) as C++ tables: one TypeSchema per
// catalogued type listing its own `data` fields, plus the fields every type may carry. The validator reads
// these tables; nothing here touches JSON. When docs/events.md changes, change the matching table entry in
// event_catalog.cc (each entry names its doc section).
// Thread-safety: immutable static data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string_view>

namespace analytics::events {

// Who the event is about (docs/events.md section 3).
enum class UserRule {
  kRequired,  // subject or data.user_id must be present
  kOptional,  // anonymous events allowed
  kNone,      // subject and data.user_id must be absent
};

// JSON type and format of a `data` field (docs/events.md section 5).
enum class FieldKind {
  kIdString,       // id string; `max` = maximum characters (default 128)
  kUserId,         // user id (an id string); pseudonymized
  kString,         // any string; `min`..`max` code points
  kText,           // free text; `min`..`max` code points; its treatment says what intake does with it
  kInteger,        // integral number, `min`..`max`
  kNumber,         // any number, `min`..`max`
  kMoney,          // 0..1e9
  kPrice,          // 0..1e9 (list prices)
  kPercent,        // integer 0..100
  kBoolean,
  kEnum,           // one of `values`
  kCurrency,       // ^[A-Z]{3}$
  kCountry,        // ^[A-Z]{2}$
  kPlatform,       // windows, macos, linux, steamdeck, android, ios
  kTimestamp,      // RFC 3339 with offset
  kDate,           // YYYY-MM-DD
  kObject,         // any JSON object, kept as is (global personal-data rules still apply inside)
  kIdStringArray,  // array of id strings; `unique_items`
  kStringArray,    // array of strings of `item_min`..`item_max` code points; `min`..`max` items; `unique_items`
  kFieldNameArray, // array of ^[a-z][a-z0-9_]{0,63}$; `min`..`max` items; `unique_items`
  kPlatformArray,  // array of platform; `unique_items`
  kIpAddress,      // any value: an IP address is truncated, anything else dropped (never invalid)
  kDropped,        // personal data that should not be sent: dropped whatever its value (never invalid)
};

// Per-type treatment of a field, on top of the global personal-data rules (docs/events.md section 6).
enum class FieldTreatment {
  kKeep,
  kMaskAndTruncate,        // mask e-mails/phones, cut to 100 code points (search `query`)
  kDropRecordLength,       // drop, record `<name>_length` in code points (review `text`)
  kStripQueryAndFragment,  // cut at the first '?' or '#' (page `page_path`)
};

inline constexpr int64_t kNoMin = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

struct FieldSpec {
  std::string_view name;
  FieldKind kind = FieldKind::kString;
  bool required = false;
  int64_t min = kNoMin;  // by kind: value range, length in code points, or item count
  int64_t max = kNoMax;
  std::span<const std::string_view> values = {};  // kEnum
  bool unique_items = false;                      // arrays
  int64_t item_min = 0;                           // kStringArray item length
  int64_t item_max = kNoMax;
  // Conditional requirement: required when the field `required_if_field` is present and, if
  // `required_if_value` is not empty, equal to it ("true" for the boolean, else the string).
  std::string_view required_if_field = {};
  std::string_view required_if_value = {};
  bool must_differ_from_user = false;  // friend_user_id
  FieldTreatment treatment = FieldTreatment::kKeep;
};

struct TypeSchema {
  std::string_view type;
  UserRule user = UserRule::kRequired;
  std::span<const FieldSpec> fields;
  // When not empty, at least one of these two fields is required (review: rating or recommended).
  std::string_view at_least_one_of[2] = {};
  bool data_required() const;
};

// The catalogued schema of `type`, or nullptr for a type not in the catalog.
const TypeSchema* FindTypeSchema(std::string_view type);

// Every catalogued type, in the order of docs/events.md section 8.
std::span<const TypeSchema> AllTypeSchemas();

// Fields every type may carry (sections 4 and 7): user_id, country, platform, ip, device_id, app_version,
// locale, and the well-known game_id, session_id, amount, currency. A type's own table entry, when it
// lists the same name, wins (it may make the field required).
std::span<const FieldSpec> CommonFields();

// The spec of `name` at the top level of `data` for `schema` (nullable): the type's own entry, else the
// common one, else nullptr.
const FieldSpec* FindFieldSpec(const TypeSchema* schema, std::string_view name);

// The same lookup as a number, for bitmaps: [0, schema->fields.size()) are the type's own fields, then
// the common fields; -1 when `name` is neither. Constant time (a small hash table per type): it runs for
// every `data` member of every event.
int FindFieldIndex(const TypeSchema* schema, std::string_view name);
const FieldSpec& FieldAt(const TypeSchema* schema, int field_idx);
// Number of field indexes of `schema` (own + common), at most 64.
size_t FieldCount(const TypeSchema* schema);

// The typed column a top-level `data` field feeds (docs/events.md section 4), by name.
enum class WellKnownColumn : uint8_t { kNone, kUserId, kGameId, kSessionId, kAmount, kCurrency, kCountry, kPlatform };
WellKnownColumn ColumnOf(const TypeSchema* schema, int field_idx);

// The field lookups of one schema (FindFieldIndex, FieldAt, ColumnOf) in one object, fetched once per event
// with FieldLookupOf: the validator looks up every `data` member of every event, and the free functions
// above find the schema's table again on each call. Open addressing over a small power-of-two table; the
// hash reads the length and three characters, enough to spread the few dozen names of one type.
class FieldLookup {
 public:
  explicit FieldLookup(const TypeSchema* schema);

  // Same results as FindFieldIndex(schema, name).
  int Find(std::string_view name) const {
    if (name.empty()) return -1;
    for (size_t slot = Hash(name);; slot = (slot + 1) & (kSlots - 1)) {
      const int field_idx = slots_[slot];
      if (field_idx < 0) return -1;
      if (SameName(specs_[static_cast<size_t>(field_idx)]->name, name)) return field_idx;
    }
  }
  const FieldSpec& At(int field_idx) const { return *specs_[static_cast<size_t>(field_idx)]; }
  WellKnownColumn Column(int field_idx) const { return columns_[static_cast<size_t>(field_idx)]; }
  size_t size() const { return count_; }

 private:
  static constexpr size_t kSlots = 128;  // > 2x the largest field count: short probe sequences
  static constexpr size_t kMaxFields = 64;
  // `a == b` without a call to memcmp (names are short; this runs for every `data` member): two overlapping
  // words cover 8-16 bytes, two overlapping half-words 4-7.
  static bool SameName(std::string_view a, std::string_view b) {
    const size_t size = a.size();
    if (size != b.size()) return false;
    if (size >= 8 && size <= 16) {
      return Load<uint64_t>(a.data()) == Load<uint64_t>(b.data()) &&
             Load<uint64_t>(a.data() + size - 8) == Load<uint64_t>(b.data() + size - 8);
    }
    if (size >= 4 && size < 8) {
      return Load<uint32_t>(a.data()) == Load<uint32_t>(b.data()) &&
             Load<uint32_t>(a.data() + size - 4) == Load<uint32_t>(b.data() + size - 4);
    }
    return a == b;
  }
  template <typename Word>
  static Word Load(const char* bytes) {
    Word word;
    std::memcpy(&word, bytes, sizeof(word));
    return word;
  }

  static size_t Hash(std::string_view name) {
    const auto first = static_cast<unsigned char>(name.front());
    const auto middle = static_cast<unsigned char>(name[name.size() / 2]);
    const auto last = static_cast<unsigned char>(name.back());
    return (name.size() * 131 + first * 31 + middle * 7 + last) & (kSlots - 1);
  }

  std::array<int8_t, kSlots> slots_;
  std::array<const FieldSpec*, kMaxFields> specs_{};
  std::array<WellKnownColumn, kMaxFields> columns_{};
  size_t count_ = 0;
};

// The lookup of `schema` (nullable: the common fields of generic types). Built once, immutable.
const FieldLookup& FieldLookupOf(const TypeSchema* schema);

}  // namespace analytics::events
