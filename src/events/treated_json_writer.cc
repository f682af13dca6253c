// Personal-data treatment while writing JSON; see treated_json_writer.h.
#include "events/treated_json_writer.h"

#include <array>
#include <span>
#include <vector>

#include "events/json_text.h"
#include "events/personal_data.h"
#include "events/value_formats.h"

namespace analytics::events {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

void AppendKey(JsonBuffer& out, std::string_view key, bool& first) {
  if (!first) out.Put(',');
  first = false;
  out.AppendString(key);
  out.Put(':');
}

// JSON text of a scalar number, for hashing or pseudonymizing numbers sent where strings belong.
std::string NumberText(element value) {
  JsonBuffer text;
  switch (value.type()) {
    case element_type::INT64: text.AppendInt(value.get_int64().value_unsafe()); break;
    case element_type::UINT64: text.AppendUint(value.get_uint64().value_unsafe()); break;
    case element_type::DOUBLE: text.AppendDouble(value.get_double().value_unsafe()); break;
    default: break;
  }
  return std::string(text.view());
}

bool IsNumber(element_type type) {
  return type == element_type::INT64 || type == element_type::UINT64 || type == element_type::DOUBLE;
}

// The fields of a catalogued type that have a treatment of their own (at most 4 are honoured), found once per
// type instead of by a walk over the type's field table for every event.
struct TreatedFields {
  std::array<const FieldSpec*, 4> fields{};
  size_t count = 0;
};

TreatedFields FindTreatedFields(const TypeSchema& schema) {
  TreatedFields treated;
  for (const FieldSpec& spec : schema.fields) {
    if (spec.treatment == FieldTreatment::kKeep || treated.count == treated.fields.size()) continue;
    treated.fields[treated.count++] = &spec;
  }
  return treated;
}

TreatedFields TreatedFieldsOf(const TypeSchema& schema) {
  static const std::vector<TreatedFields>* const catalog = [] {
    auto* built = new std::vector<TreatedFields>();
    for (const TypeSchema& catalogued : AllTypeSchemas()) built->push_back(FindTreatedFields(catalogued));
    return built;
  }();
  const std::span<const TypeSchema> all = AllTypeSchemas();
  if (&schema >= all.data() && &schema < all.data() + all.size()) {
    return (*catalog)[static_cast<size_t>(&schema - all.data())];
  }
  return FindTreatedFields(schema);  // not from the catalog table (no caller does this today)
}

// "text" -> "text_length" for kDropRecordLength fields.
bool IsLengthOf(std::string_view key, std::string_view name) {
  constexpr std::string_view kSuffix = "_length";
  return key.size() == name.size() + kSuffix.size() && key.substr(0, name.size()) == name &&
         key.substr(name.size()) == kSuffix;
}

}  // namespace

void TreatedJsonWriter::Fail(std::string message) {
  std::string field = "data";
  for (const PathSegment& segment : path_) {
    if (!segment.key.empty()) {
      field += '.';
      field += IsPlainName(segment.key) ? segment.key : "*";  // a name that could be personal data is not echoed
    } else {
      field += '[' + std::to_string(segment.index) + ']';
    }
  }
  violation_ = Violation{RejectionCode::kInvalidField, field, field + " " + message};
}

std::optional<Violation> TreatedJsonWriter::WriteData(object data, const TypeSchema* schema, JsonBuffer& out) {
  path_.clear();
  violation_.reset();
  WriteObject(data, schema, out);
  return std::move(violation_);
}

void TreatedJsonWriter::WriteAttributes(const std::vector<std::pair<std::string_view, element>>& attributes,
                                        JsonBuffer& out) {
  path_.clear();
  out.Put('{');
  bool first = true;
  for (const auto& [name, value] : attributes) WriteMember(name, value, first, out);
  out.Put('}');
}

void TreatedJsonWriter::WriteEnvelope(object envelope, const TypeSchema* schema, JsonBuffer& out) {
  path_.clear();
  out.Put('{');
  bool first = true;
  for (auto [key, value] : envelope) {
    if (key == "data_base64") continue;
    if (key == "subject") {
      std::string_view text;
      if (value.get_string().get(text) == simdjson::SUCCESS) {
        AppendKey(out, key, first);
        pseudonymizer_.Pseudonymize(text, scratch_);
        out.AppendString(scratch_);
      } else if (IsNumber(value.type())) {
        AppendKey(out, key, first);
        out.AppendString(pseudonymizer_.Pseudonymize(NumberText(value)));
      } else if (value.type() == element_type::NULL_VALUE || value.type() == element_type::BOOL) {
        AppendKey(out, key, first);
        WriteValue(value, out);
      }
      continue;
    }
    if (key == "data") {
      object data;
      if (value.get_object().get(data) == simdjson::SUCCESS) {
        AppendKey(out, key, first);
        WriteObject(data, schema, out);
      } else if (value.type() != element_type::STRING) {  // a string data could be anything: dropped
        AppendKey(out, key, first);
        WriteValue(value, out);
      }
      continue;
    }
    WriteMember(key, value, first, out);
  }
  out.Put('}');
}

bool TreatedJsonWriter::WriteObject(object object, const TypeSchema* top_level_schema, JsonBuffer& out) {
  out.Put('{');
  bool first = true;
  // The type's own treatments (query, text, page_path) apply at the top level of `data` only.
  TreatedFields treated_fields;
  const FieldSpec* length_of = nullptr;
  if (top_level_schema != nullptr) {
    treated_fields = TreatedFieldsOf(*top_level_schema);
    for (size_t treated_idx = 0; treated_idx < treated_fields.count; ++treated_idx) {
      const FieldSpec& spec = *treated_fields.fields[treated_idx];
      // `<name>_length` is intake's to write when `<name>` is there; a replayed payload has only the length.
      if (spec.treatment == FieldTreatment::kDropRecordLength &&
          object.at_key(spec.name).error() == simdjson::SUCCESS) {
        length_of = &spec;
      }
    }
  }
  const size_t treated_count = treated_fields.count;
  for (auto [key, value] : object) {
    if (treated_count > 0) {
      const FieldSpec* treated = nullptr;
      for (size_t treated_idx = 0; treated_idx < treated_count; ++treated_idx) {
        if (treated_fields.fields[treated_idx]->name == key) treated = treated_fields.fields[treated_idx];
      }
      if (treated != nullptr) {
        WriteTypeTreatedMember(*treated, value, first, out);
        continue;
      }
      if (length_of != nullptr && IsLengthOf(key, length_of->name)) continue;  // intake computes it
    }
    if (!WriteMember(key, value, first, out)) return false;
  }
  out.Put('}');
  return true;
}

void TreatedJsonWriter::WriteTypeTreatedMember(const FieldSpec& spec, element value, bool& first,
                                               JsonBuffer& out) {
  std::string_view text;
  const bool is_string = value.get_string().get(text) == simdjson::SUCCESS;
  if (value.is_null()) {
    if (spec.treatment == FieldTreatment::kDropRecordLength) return;
    AppendKey(out, spec.name, first);
    out.Append("null");
    return;
  }
  if (!is_string) return;  // only possible in lenient mode: the validator checked the type
  switch (spec.treatment) {
    case FieldTreatment::kMaskAndTruncate:
      AppendKey(out, spec.name, first);
      out.AppendString(MaskAndTruncateText(text));
      return;
    case FieldTreatment::kDropRecordLength: {
      std::string length_key(spec.name);
      length_key += "_length";
      AppendKey(out, length_key, first);
      out.AppendUint(CodePointCount(text));
      return;
    }
    case FieldTreatment::kStripQueryAndFragment:
      AppendKey(out, spec.name, first);
      out.AppendString(StripQueryAndFragment(text));
      return;
    case FieldTreatment::kKeep:
      AppendKey(out, spec.name, first);
      out.AppendString(text);
      return;
  }
}

bool TreatedJsonWriter::WriteMember(std::string_view key, element value, bool& first, JsonBuffer& out) {
  const NameTreatment treatment = GlobalTreatmentFor(key);
  if (treatment == NameTreatment::kNone) {
    AppendKey(out, key, first);
    const element_type type = value.type();
    if (type != element_type::OBJECT && type != element_type::ARRAY) return WriteValue(value, out);
    path_.push_back(PathSegment{key, 0});
    const bool ok = WriteValue(value, out);
    path_.pop_back();
    return ok;
  }
  const element_type type = value.type();
  std::string_view text;
  const bool is_string = value.get_string().get(text) == simdjson::SUCCESS;
  switch (treatment) {
    case NameTreatment::kDrop:
      return true;
    case NameTreatment::kTruncateIp: {
      if (!is_string) return true;
      std::optional<std::string> truncated = TruncateIp(text);
      if (truncated) {
        AppendKey(out, key, first);
        out.AppendString(*truncated);
      }
      return true;
    }
    case NameTreatment::kPseudonymize: {
      if (type == element_type::NULL_VALUE) {
        AppendKey(out, key, first);
        out.Append("null");
        return true;
      }
      if (mode_ == Mode::kStrict && !(is_string && IsIdString(text))) {
        path_.push_back(PathSegment{key, 0});
        Fail("must be a user id (an id string: 1-128 characters from [A-Za-z0-9._:-])");
        path_.pop_back();
        return false;
      }
      if (is_string) {
        AppendKey(out, key, first);
        pseudonymizer_.Pseudonymize(text, scratch_);
        out.AppendString(scratch_);
      } else if (IsNumber(type)) {
        AppendKey(out, key, first);
        out.AppendString(pseudonymizer_.Pseudonymize(NumberText(value)));
      } else if (type == element_type::BOOL) {
        AppendKey(out, key, first);
        WriteValue(value, out);
      }
      return true;
    }
    case NameTreatment::kHash: {
      if (input_already_treated_) {
        AppendKey(out, key, first);
        return WriteValue(value, out);
      }
      if (is_string) {
        AppendKey(out, key, first);
        pseudonymizer_.Hash(text, scratch_);
        out.AppendString(scratch_);
      } else if (IsNumber(type)) {
        AppendKey(out, key, first);
        out.AppendString(pseudonymizer_.Hash(NumberText(value)));
      } else if (type == element_type::NULL_VALUE || type == element_type::BOOL) {
        AppendKey(out, key, first);
        WriteValue(value, out);
      }
      return true;
    }
    case NameTreatment::kNone:
      break;
  }
  return true;
}

bool TreatedJsonWriter::WriteArray(array array, JsonBuffer& out) {
  out.Put('[');
  size_t item_idx = 0;
  for (element item : array) {
    if (item_idx > 0) out.Put(',');
    path_.push_back(PathSegment{{}, item_idx});
    const bool ok = WriteValue(item, out);
    path_.pop_back();
    if (!ok) return false;
    ++item_idx;
  }
  out.Put(']');
  return true;
}

bool TreatedJsonWriter::WriteValue(element value, JsonBuffer& out) {
  switch (value.type()) {
    case element_type::OBJECT:
      return WriteObject(value.get_object().value_unsafe(), nullptr, out);
    case element_type::ARRAY:
      return WriteArray(value.get_array().value_unsafe(), out);
    case element_type::STRING:
      out.AppendString(value.get_string().value_unsafe());
      return true;
    case element_type::INT64:
      out.AppendInt(value.get_int64().value_unsafe());
      return true;
    case element_type::UINT64:
      out.AppendUint(value.get_uint64().value_unsafe());
      return true;
    case element_type::DOUBLE:
      out.AppendDouble(value.get_double().value_unsafe());
      return true;
    case element_type::BOOL:
      out.Append(value.get_bool().value_unsafe() ? "true" : "false");
      return true;
    case element_type::NULL_VALUE:
      out.Append("null");
      return true;
  }
  return true;
}

}  // namespace analytics::events
