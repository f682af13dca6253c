// Validation of one parsed CloudEvent against docs/events.md: the envelope (section 2), the user
// (section 3), the well-known fields (section 4), the value formats (section 5) and the per-type schema of
// the catalog (sections 8-9, tables in event_catalog.cc). Internal to the events component: it works on
// simdjson DOM values; the public entry point is Normalizer.
//
// The first violation found is reported, checking in this order: specversion, id, source, type, unknown or
// duplicate top-level members, catalog membership (strict_types), time, datacontenttype, dataschema,
// extension values, data's JSON type, subject, the data fields one by one (in body order), the user rules,
// required fields (in catalog order), conditional requirements, amount without currency.
// Nested user ids (`*_user_id` below the top level of `data`) are checked while the data is written out
// (TreatedJsonWriter, strict mode), which walks nested values anyway.
// Thread-safety: pure functions over the caller's values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <simdjson.h>

#include "events/event_catalog.h"
#include "events/rejection.h"

namespace analytics::events {

struct Violation {
  RejectionCode code = RejectionCode::kInvalidAttribute;
  std::string field;    // JSON path: "time", "data.amount"
  std::string message;  // never contains a value
};

struct ValidatorOptions {
  int64_t max_future_ms = 3600000;
  bool strict_types = false;
};

// What validation extracted from a valid event. Views point into the parsed document: valid until the next
// parse on the same simdjson parser. Reused across events (Clear keeps capacity).
struct ValidatedEnvelope {
  std::string_view id;
  std::string_view source;
  std::string_view type;
  int64_t time_ms = 0;
  bool time_defaulted = false;
  const TypeSchema* schema = nullptr;  // nullptr: a generic (uncatalogued) type
  std::optional<std::string_view> subject;
  std::optional<std::string_view> data_user_id;
  bool has_data = false;
  simdjson::dom::object data;
  // datacontenttype, dataschema and extension attributes with a non-null value, in body order.
  std::vector<std::pair<std::string_view, simdjson::dom::element>> kept_attributes;
  // Well-known fields (empty / nullopt when absent).
  std::string_view game_id;
  std::string_view session_id;
  std::optional<double> amount;
  std::string_view currency;
  std::string_view country;
  std::string_view platform;

  void Clear();
};

// Validates `root` (any JSON value). On success fills `out` and returns nullopt.
std::optional<Violation> ValidateEvent(simdjson::dom::element root, const ValidatorOptions& options,
                                       int64_t now_ms, ValidatedEnvelope& out);

// Reads id, type and source for a rejection when they are strings (cut to 256/256/512 bytes).
void ReadRejectionIdentity(simdjson::dom::element root, Rejection& rejection);

// "must be ..." text for a field spec, used in violation messages.
std::string DescribeFieldRule(const FieldSpec& spec);

}  // namespace analytics::events
