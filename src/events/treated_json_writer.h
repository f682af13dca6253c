// TreatedJsonWriter: writes parsed event JSON back out as compact text with the personal-data treatments of
// docs/events.md section 6 applied: the global rules by property name at any depth (objects inside objects
// and inside arrays), and the catalogued type's own rules at the top level of `data`. Internal to the events
// component (simdjson DOM in, text out).
//
// Two modes:
//  - strict (accepted events): user ids under pseudonymized names must be id strings (or null); anything
//    else is a violation (INVALID_FIELD with its JSON path) and nothing is written.
//  - lenient (dead-letter payloads of rejected events): never fails; whatever cannot be treated safely is
//    dropped (a non-string under a pseudonymized or hashed name is pseudonymized/hashed as its JSON text
//    when a number, dropped when an object or array).
// Thread-safety: one writer per call; the Pseudonymizer it uses is thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "events/event_catalog.h"
#include "events/event_validator.h"
#include "events/json_text.h"
#include "events/pseudonymizer.h"

namespace analytics::events {

class TreatedJsonWriter {
 public:
  enum class Mode { kStrict, kLenient };

  // `input_already_treated`: the input is a payload this component wrote (a dead letter being replayed):
  // values under hashed names are kept as they are instead of being hashed a second time. Pseudonyms need no
  // flag (Pseudonymize passes its own pseudonyms through) and the other treatments are idempotent.
  TreatedJsonWriter(const Pseudonymizer& pseudonymizer, Mode mode, bool input_already_treated = false)
      : pseudonymizer_(pseudonymizer), mode_(mode), input_already_treated_(input_already_treated) {}

  // Appends the treated `data` object. `schema` (nullable) adds the type's own treatments. Strict mode:
  // returns the first violation (and what was appended to `out` is then unspecified).
  std::optional<Violation> WriteData(simdjson::dom::object data, const TypeSchema* schema, JsonBuffer& out);

  // Appends the kept envelope attributes as one object, global rules applied by name ("ip", "email", ...).
  void WriteAttributes(const std::vector<std::pair<std::string_view, simdjson::dom::element>>& attributes,
                       JsonBuffer& out);

  // Appends the whole event after treatment, for a dead letter (lenient mode): `subject` pseudonymized,
  // `data` as WriteData, other members by the global rules, data_base64 dropped.
  void WriteEnvelope(simdjson::dom::object envelope, const TypeSchema* schema, JsonBuffer& out);

 private:
  struct PathSegment {
    std::string_view key;  // empty: array index
    size_t index = 0;
  };

  bool WriteObject(simdjson::dom::object object, const TypeSchema* top_level_schema, JsonBuffer& out);
  bool WriteArray(simdjson::dom::array array, JsonBuffer& out);
  bool WriteValue(simdjson::dom::element value, JsonBuffer& out);
  // Writes `"key":value` with the name's global treatment; returns false on a strict violation.
  bool WriteMember(std::string_view key, simdjson::dom::element value, bool& first, JsonBuffer& out);
  // Top-level `data` member with a per-type treatment.
  void WriteTypeTreatedMember(const FieldSpec& spec, simdjson::dom::element value, bool& first, JsonBuffer& out);
  void Fail(std::string message);

  const Pseudonymizer& pseudonymizer_;
  const Mode mode_;
  const bool input_already_treated_;
  std::vector<PathSegment> path_;  // below `data`, for violation paths
  std::string scratch_;            // pseudonyms and hashes on their way to the output
  std::optional<Violation> violation_;
};

}  // namespace analytics::events
