// CloudEvent validation against the catalog; see event_validator.h.
#include "events/event_validator.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>

#include "events/json_text.h"
#include "events/value_formats.h"

namespace analytics::events {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr size_t kMaxIdChars = 256;
constexpr size_t kMaxSourceChars = 512;
constexpr double kMaxMoney = 1e9;

enum Attribute { kSpecversion, kId, kSource, kType, kTime, kSubject, kDataContentType, kDataSchema, kData,
                 kAttributeCount };
int AttributeIndex(std::string_view key) {
  // By length first: runs for every top-level member. Comparing with a literal of the case's length lets the
  // compiler inline the comparison (the table entry's length is not a constant: a call to memcmp each).
  switch (key.size()) {
    case 2: return key == "id" ? kId : -1;
    case 4:
      if (key == "type") return kType;
      if (key == "time") return kTime;
      return key == "data" ? kData : -1;
    case 6: return key == "source" ? kSource : -1;
    case 7: return key == "subject" ? kSubject : -1;
    case 10: return key == "dataschema" ? kDataSchema : -1;
    case 11: return key == "specversion" ? kSpecversion : -1;
    case 15: return key == "datacontenttype" ? kDataContentType : -1;
    default: return -1;
  }
}

Violation MakeViolation(RejectionCode code, std::string field, std::string message) {
  return Violation{code, std::move(field), std::move(message)};
}

std::string DataPath(std::string_view name) { return "data." + std::string(name); }

bool GetString(element value, std::string_view& out) { return value.get_string().get(out) == simdjson::SUCCESS; }

bool AsNumber(element value, double& out) {
  switch (value.type()) {
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return value.get_double().get(out) == simdjson::SUCCESS;
    default:
      return false;
  }
}

// Integral value in the signed 64-bit range; 120.0 counts.
bool AsInteger(element value, int64_t& out) {
  switch (value.type()) {
    case element_type::INT64:
      return value.get_int64().get(out) == simdjson::SUCCESS;
    case element_type::DOUBLE: {
      double number = 0;
      if (value.get_double().get(number) != simdjson::SUCCESS) return false;
      if (!(number >= -9223372036854775808.0 && number < 9223372036854775808.0) || std::trunc(number) != number) {
        return false;
      }
      out = static_cast<int64_t>(number);
      return true;
    }
    default:
      return false;  // UINT64 is above the signed range
  }
}

bool InRange(int64_t value, const FieldSpec& spec) { return value >= spec.min && value <= spec.max; }

bool StringLengthOk(std::string_view text, int64_t min, int64_t max) {
  // Byte length bounds the code point count from above: skip counting when it cannot matter.
  if (static_cast<int64_t>(text.size()) <= max && min <= 0) return true;
  const auto chars = static_cast<int64_t>(CodePointCount(text));
  return chars >= min && chars <= max;
}

bool AllUnique(std::vector<std::string_view>& items) {
  std::sort(items.begin(), items.end());
  return std::adjacent_find(items.begin(), items.end()) == items.end();
}

// Arrays of strings: every item passes `item_ok`; item count within the spec; unique when asked.
template <typename ItemOk>
bool CheckStringArray(element value, const FieldSpec& spec, ItemOk item_ok) {
  array items;
  if (value.get_array().get(items) != simdjson::SUCCESS) return false;
  std::vector<std::string_view> seen;
  for (element item : items) {
    std::string_view text;
    if (!GetString(item, text) || !item_ok(text)) return false;
    seen.push_back(text);
  }
  const auto count = static_cast<int64_t>(seen.size());
  if (count < std::max<int64_t>(spec.min, 0) || count > spec.max) return false;
  return !spec.unique_items || AllUnique(seen);
}

bool CheckField(const FieldSpec& spec, element value) {
  std::string_view text;
  switch (spec.kind) {
    case FieldKind::kIdString:
      return GetString(value, text) && IsIdString(text, static_cast<size_t>(spec.max));
    case FieldKind::kUserId:
      return GetString(value, text) && IsIdString(text);
    case FieldKind::kString:
    case FieldKind::kText:
      return GetString(value, text) && StringLengthOk(text, spec.min, spec.max);
    case FieldKind::kInteger:
    case FieldKind::kPercent: {
      int64_t number = 0;
      return AsInteger(value, number) && InRange(number, spec);
    }
    case FieldKind::kNumber: {
      double number = 0;
      return AsNumber(value, number) && number >= static_cast<double>(spec.min) &&
             number <= static_cast<double>(spec.max);
    }
    case FieldKind::kMoney:
    case FieldKind::kPrice: {
      double number = 0;
      return AsNumber(value, number) && number >= 0 && number <= kMaxMoney;
    }
    case FieldKind::kBoolean:
      return value.type() == element_type::BOOL;
    case FieldKind::kEnum:
      return GetString(value, text) && std::find(spec.values.begin(), spec.values.end(), text) != spec.values.end();
    case FieldKind::kCurrency:
      return GetString(value, text) && IsCurrencyCode(text);
    case FieldKind::kCountry:
      return GetString(value, text) && IsCountryCode(text);
    case FieldKind::kPlatform:
      return GetString(value, text) && IsPlatform(text);
    case FieldKind::kTimestamp:
      return GetString(value, text) && IsTimestamp(text);
    case FieldKind::kDate:
      return GetString(value, text) && IsDate(text);
    case FieldKind::kObject:
      return value.type() == element_type::OBJECT;
    case FieldKind::kIdStringArray:
      return CheckStringArray(value, spec, [](std::string_view item) { return IsIdString(item); });
    case FieldKind::kStringArray:
      return CheckStringArray(value, spec, [&](std::string_view item) {
        return StringLengthOk(item, spec.item_min, spec.item_max);
      });
    case FieldKind::kFieldNameArray:
      return CheckStringArray(value, spec, [](std::string_view item) { return IsFieldName(item); });
    case FieldKind::kPlatformArray:
      return CheckStringArray(value, spec, [](std::string_view item) { return IsPlatform(item); });
    case FieldKind::kIpAddress:
    case FieldKind::kDropped:
      return true;
  }
  return false;
}

std::string JoinValues(std::span<const std::string_view> values) {
  std::string joined;
  for (std::string_view value : values) {
    if (!joined.empty()) joined += ", ";
    joined += value;
  }
  return joined;
}

std::string RangeText(int64_t min, int64_t max) {
  if (max == kNoMax) return min == kNoMin ? "" : " >= " + std::to_string(min);
  if (min == kNoMin) return " <= " + std::to_string(max);
  return " between " + std::to_string(min) + " and " + std::to_string(max);
}

std::string LengthText(int64_t min, int64_t max) {
  if (max == kNoMax) return min > 0 ? " of at least " + std::to_string(min) + " characters" : "";
  if (min > 0) return " of " + std::to_string(min) + " to " + std::to_string(max) + " characters";
  return " of at most " + std::to_string(max) + " characters";
}

// Cuts to at most `max_bytes` without splitting a UTF-8 sequence.
std::string CutUtf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

}  // namespace

void ValidatedEnvelope::Clear() {
  id = source = type = {};
  time_ms = 0;
  time_defaulted = false;
  schema = nullptr;
  subject.reset();
  data_user_id.reset();
  has_data = false;
  data = {};
  kept_attributes.clear();
  game_id = session_id = currency = country = platform = {};
  amount.reset();
}

std::string DescribeFieldRule(const FieldSpec& spec) {
  switch (spec.kind) {
    case FieldKind::kIdString:
      return "must be an id string (1-" + std::to_string(spec.max) + " characters from [A-Za-z0-9._:-])";
    case FieldKind::kUserId:
      return "must be a user id (an id string: 1-128 characters from [A-Za-z0-9._:-])";
    case FieldKind::kString:
    case FieldKind::kText:
      return "must be a string" + LengthText(spec.min, spec.max);
    case FieldKind::kInteger:
    case FieldKind::kPercent:
      return "must be an integer" + RangeText(spec.min, spec.max);
    case FieldKind::kNumber:
      return "must be a number" + RangeText(spec.min, spec.max);
    case FieldKind::kMoney:
    case FieldKind::kPrice:
      return "must be a number between 0 and 1000000000 (major currency units)";
    case FieldKind::kBoolean:
      return "must be true or false";
    case FieldKind::kEnum:
      return "must be one of: " + JoinValues(spec.values);
    case FieldKind::kCurrency:
      return "must be an ISO 4217 currency code (3 upper-case letters)";
    case FieldKind::kCountry:
      return "must be an ISO 3166-1 alpha-2 country code (2 upper-case letters)";
    case FieldKind::kPlatform:
      return "must be one of: windows, macos, linux, steamdeck, android, ios";
    case FieldKind::kTimestamp:
      return "must be an RFC 3339 date-time with a zone offset";
    case FieldKind::kDate:
      return "must be a date YYYY-MM-DD";
    case FieldKind::kObject:
      return "must be a JSON object";
    case FieldKind::kIdStringArray:
      return std::string("must be an array of ") + (spec.unique_items ? "unique " : "") + "id strings";
    case FieldKind::kStringArray:
      return "must be an array of at most " + std::to_string(spec.max) + (spec.unique_items ? " unique" : "") +
             " strings" + LengthText(spec.item_min, spec.item_max);
    case FieldKind::kFieldNameArray:
      return "must be an array of " + std::to_string(spec.min) + "-" + std::to_string(spec.max) +
             (spec.unique_items ? " unique" : "") + " field names matching ^[a-z][a-z0-9_]{0,63}$";
    case FieldKind::kPlatformArray:
      return "must be an array of unique platforms (windows, macos, linux, steamdeck, android, ios)";
    case FieldKind::kIpAddress:
    case FieldKind::kDropped:
      return "";
  }
  return "";
}

void ReadRejectionIdentity(element root, Rejection& rejection) {
  object envelope;
  if (root.get_object().get(envelope) != simdjson::SUCCESS) return;
  std::string_view text;
  if (envelope["id"].get_string().get(text) == simdjson::SUCCESS) rejection.id = CutUtf8(text, 256);
  if (envelope["type"].get_string().get(text) == simdjson::SUCCESS) rejection.type = CutUtf8(text, 256);
  if (envelope["source"].get_string().get(text) == simdjson::SUCCESS) rejection.source = CutUtf8(text, 512);
}

std::optional<Violation> ValidateEvent(element root, const ValidatorOptions& options, int64_t now_ms,
                                       ValidatedEnvelope& out) {
  out.Clear();
  object envelope;
  if (root.get_object().get(envelope) != simdjson::SUCCESS) {
    return MakeViolation(RejectionCode::kMalformedEvent, "", "an event must be a JSON object");
  }

  // ---- One pass over the top-level members. ----
  std::array<element, kAttributeCount> attributes{};
  std::array<bool, kAttributeCount> seen{};
  std::optional<Violation> member_violation;  // first unknown / duplicate member, reported after the basics
  for (auto [key, value] : envelope) {
    const int attribute_idx = AttributeIndex(key);
    if (attribute_idx >= 0) {
      if (seen[attribute_idx] && !member_violation) {
        member_violation = MakeViolation(RejectionCode::kInvalidAttribute, std::string(key), "duplicate attribute");
      }
      seen[attribute_idx] = true;
      attributes[attribute_idx] = value;
      if ((attribute_idx == kDataContentType || attribute_idx == kDataSchema) && !value.is_null()) {
        out.kept_attributes.emplace_back(key, value);  // kept for read-back, in body order
      }
      continue;
    }
    if (key == "data_base64") {
      if (!member_violation) {
        member_violation = MakeViolation(RejectionCode::kInvalidAttribute, "data_base64",
                                         "data_base64 (binary data) is not accepted: send `data` as a JSON object");
      }
      continue;
    }
    if (!IsExtensionName(key)) {
      if (!member_violation) {
        // A member name is producer text too: echoed only when it looks like a name.
        member_violation = MakeViolation(RejectionCode::kInvalidAttribute, IsPlainName(key) ? std::string(key) : "",
                                         "unknown attribute: extension attribute names are [a-z0-9]{1,20}");
      }
      continue;
    }
    for (const auto& [kept_name, kept_value] : out.kept_attributes) {
      if (kept_name == key && !member_violation) {
        member_violation = MakeViolation(RejectionCode::kInvalidAttribute, std::string(key), "duplicate attribute");
      }
    }
    if (!value.is_null()) out.kept_attributes.emplace_back(key, value);
  }
  auto present = [&](Attribute attribute) { return seen[attribute] && !attributes[attribute].is_null(); };

  // ---- Required attributes. ----
  std::string_view text;
  if (!present(kSpecversion)) {
    return MakeViolation(RejectionCode::kMissingAttribute, "specversion", "specversion is required");
  }
  if (!GetString(attributes[kSpecversion], text) || text != "1.0") {
    return MakeViolation(RejectionCode::kInvalidAttribute, "specversion", "specversion must be the string \"1.0\"");
  }
  if (!present(kId)) return MakeViolation(RejectionCode::kMissingAttribute, "id", "id is required");
  if (!GetString(attributes[kId], out.id) || out.id.empty() ||
      (out.id.size() > kMaxIdChars && CodePointCount(out.id) > kMaxIdChars)) {
    return MakeViolation(RejectionCode::kInvalidAttribute, "id",
                         "id must be a non-empty string of at most 256 characters");
  }
  if (!present(kSource)) return MakeViolation(RejectionCode::kMissingAttribute, "source", "source is required");
  if (!GetString(attributes[kSource], out.source) || out.source.empty() ||
      out.source.size() > kMaxSourceChars || !IsUriReference(out.source)) {
    return MakeViolation(RejectionCode::kInvalidAttribute, "source",
                         "source must be a non-empty URI-reference of at most 512 characters (/services/<service>)");
  }
  if (!present(kType)) return MakeViolation(RejectionCode::kMissingAttribute, "type", "type is required");
  // The catalog lookup comes first: every catalogued type matches the pattern (a unit test holds the catalog
  // to it), so the character-by-character pattern check is left for the rare uncatalogued type.
  bool type_ok = GetString(attributes[kType], out.type);
  if (type_ok) {
    out.schema = FindTypeSchema(out.type);
    type_ok = out.schema != nullptr || IsEventType(out.type);
  }
  if (!type_ok) {
    return MakeViolation(RejectionCode::kInvalidAttribute, "type",
                         "type must match com.platform.<service>.<entity>.<action>.v<N>");
  }
  if (member_violation) return member_violation;
  if (out.schema == nullptr && options.strict_types) {
    return MakeViolation(RejectionCode::kUnknownEventType, "type", "the type is not in the event catalog");
  }

  // ---- Optional attributes. ----
  if (present(kTime)) {
    const std::optional<int64_t> time =
        GetString(attributes[kTime], text) ? ParseTimestampMillis(text) : std::nullopt;
    if (!time) {
      return MakeViolation(RejectionCode::kInvalidAttribute, "time",
                           "time must be an RFC 3339 date-time with a zone offset");
    }
    if (*time > now_ms + options.max_future_ms) {
      return MakeViolation(RejectionCode::kEventInFuture, "time",
                           "time is more than " + std::to_string(options.max_future_ms / 1000) +
                               " s ahead of the intake clock");
    }
    out.time_ms = *time;
  } else {
    out.time_ms = now_ms;
    out.time_defaulted = true;
  }
  if (present(kDataContentType) && (!GetString(attributes[kDataContentType], text) || !IsJsonMediaType(text))) {
    return MakeViolation(RejectionCode::kInvalidAttribute, "datacontenttype",
                         "datacontenttype must be application/json (parameters allowed)");
  }
  if (present(kDataSchema) &&
      (!GetString(attributes[kDataSchema], text) || text.empty() || !IsAbsoluteUri(text))) {
    return MakeViolation(RejectionCode::kInvalidAttribute, "dataschema", "dataschema must be an absolute URI");
  }
  for (const auto& [name, value] : out.kept_attributes) {
    const element_type type = value.type();
    if (type == element_type::OBJECT || type == element_type::ARRAY) {
      return MakeViolation(RejectionCode::kInvalidAttribute, std::string(name),
                           "an extension attribute must be a string, number or boolean");
    }
  }
  if (present(kData)) {
    if (attributes[kData].get_object().get(out.data) != simdjson::SUCCESS) {
      return MakeViolation(RejectionCode::kInvalidAttribute, "data", "data must be a JSON object");
    }
    out.has_data = true;
  }
  if (present(kSubject)) {
    if (!GetString(attributes[kSubject], text) || !IsIdString(text)) {
      return MakeViolation(RejectionCode::kInvalidAttribute, "subject",
                           "subject must be a user id (an id string: 1-128 characters from [A-Za-z0-9._:-])");
    }
    out.subject = text;
  }

  // ---- data fields. ----
  const std::span<const FieldSpec> type_fields =
      out.schema != nullptr ? out.schema->fields : std::span<const FieldSpec>();
  const FieldLookup& lookup = FieldLookupOf(out.schema);  // resolved once: used for every data member
  assert(lookup.size() <= 64);
  uint64_t seen_fields = 0;     // member names met (null included): duplicate detection
  uint64_t present_fields = 0;  // members with a non-null value
  if (out.has_data) {
    for (auto [key, value] : out.data) {
      const int field_idx = lookup.Find(key);
      if (field_idx < 0) continue;  // other properties: kept, global rules applied by the writer
      const FieldSpec& spec = lookup.At(field_idx);
      if (spec.kind == FieldKind::kDropped || spec.kind == FieldKind::kIpAddress) continue;
      const uint64_t bit = uint64_t{1} << field_idx;
      if (seen_fields & bit) {
        return MakeViolation(RejectionCode::kInvalidField, DataPath(key), "duplicate member");
      }
      seen_fields |= bit;
      if (value.is_null()) continue;
      if (!CheckField(spec, value)) {
        return MakeViolation(RejectionCode::kInvalidField, DataPath(key),
                             DataPath(key) + " " + DescribeFieldRule(spec));
      }
      present_fields |= bit;
      // Well-known columns (formats already checked).
      switch (lookup.Column(field_idx)) {
        case WellKnownColumn::kNone: break;
        case WellKnownColumn::kUserId: out.data_user_id = value.get_string().value_unsafe(); break;
        case WellKnownColumn::kGameId: out.game_id = value.get_string().value_unsafe(); break;
        case WellKnownColumn::kSessionId: out.session_id = value.get_string().value_unsafe(); break;
        case WellKnownColumn::kAmount: out.amount = value.get_double().value_unsafe(); break;
        case WellKnownColumn::kCurrency: out.currency = value.get_string().value_unsafe(); break;
        case WellKnownColumn::kCountry: out.country = value.get_string().value_unsafe(); break;
        case WellKnownColumn::kPlatform: out.platform = value.get_string().value_unsafe(); break;
      }
    }
  }
  // Conditions are rare: values are looked up again instead of being kept for every field.
  auto is_present = [&](std::string_view name, element* value = nullptr) {
    const int field_idx = lookup.Find(name);
    if (field_idx < 0 || !(present_fields & (uint64_t{1} << field_idx))) return false;
    if (value != nullptr) *value = out.data.at_key(name).value_unsafe();
    return true;
  };

  // ---- The user (section 3). ----
  const UserRule user_rule = out.schema != nullptr ? out.schema->user : UserRule::kOptional;
  if (user_rule == UserRule::kNone) {
    if (out.subject) {
      return MakeViolation(RejectionCode::kInvalidAttribute, "subject",
                           "subject must be absent: this type has no user");
    }
    if (out.data_user_id) {
      return MakeViolation(RejectionCode::kInvalidField, "data.user_id",
                           "data.user_id must be absent: this type has no user");
    }
  }
  if (out.subject && out.data_user_id && *out.subject != *out.data_user_id) {
    return MakeViolation(RejectionCode::kInvalidField, "data.user_id", "data.user_id must equal subject");
  }
  const std::optional<std::string_view> user = out.subject ? out.subject : out.data_user_id;
  if (user_rule == UserRule::kRequired && !user) {
    return MakeViolation(RejectionCode::kMissingAttribute, "subject",
                         "this type requires a user: subject or data.user_id");
  }

  // ---- Required and conditional fields. ----
  if (out.schema != nullptr) {
    if (!out.has_data && out.schema->data_required()) {
      return MakeViolation(RejectionCode::kMissingAttribute, "data", "this type requires data");
    }
    for (size_t field_idx = 0; field_idx < type_fields.size(); ++field_idx) {
      const FieldSpec& spec = type_fields[field_idx];
      const bool here = present_fields & (uint64_t{1} << field_idx);
      if (spec.required && !here) {
        return MakeViolation(RejectionCode::kMissingField, DataPath(spec.name), DataPath(spec.name) + " is required");
      }
      if (!spec.required_if_field.empty() && !here) {
        element condition;
        if (is_present(spec.required_if_field, &condition)) {
          bool met = spec.required_if_value.empty();
          if (!met && spec.required_if_value == "true") {
            bool flag = false;
            met = condition.get_bool().get(flag) == simdjson::SUCCESS && flag;
          } else if (!met) {
            met = GetString(condition, text) && text == spec.required_if_value;
          }
          if (met) {
            std::string when = DataPath(spec.required_if_field) +
                               (spec.required_if_value.empty() ? " is present"
                                                               : " is " + std::string(spec.required_if_value));
            return MakeViolation(RejectionCode::kMissingField, DataPath(spec.name),
                                 DataPath(spec.name) + " is required when " + when);
          }
        }
      }
      if (spec.must_differ_from_user && here && user) {
        std::string_view other;
        if (GetString(out.data.at_key(spec.name).value_unsafe(), other) && other == *user) {
          return MakeViolation(RejectionCode::kInvalidField, DataPath(spec.name),
                               DataPath(spec.name) + " must differ from the event's user");
        }
      }
    }
    const auto& either = out.schema->at_least_one_of;
    if (!either[0].empty() && !is_present(either[0]) && !is_present(either[1])) {
      return MakeViolation(RejectionCode::kMissingField, DataPath(either[0]),
                           "at least one of " + DataPath(either[0]) + " and " + DataPath(either[1]) +
                               " is required");
    }
  }
  if (out.amount && out.currency.empty()) {
    return MakeViolation(RejectionCode::kMissingField, "data.currency",
                         "data.currency is required when data.amount is present");
  }
  return std::nullopt;
}

}  // namespace analytics::events
