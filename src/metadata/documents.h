// How the metadata adapters turn models into stored text and back, and what they require of stored text.
// Internal to src/metadata/: the port (metadata_store.h) speaks models, the adapters store JSON text produced
// here.
//
// Writing never throws: a value nlohmann cannot serialize (a string that is not UTF-8) is InvalidArgument.
// Reading never throws: a stored value that does not read back is Corruption naming the row.
// Thread-safety: pure functions.
#pragma once

#include <vector>

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "metadata/metadata_store.h"
#include "query/metric_definition.h"

namespace analytics::metadata {

// The stored form of a definition: MetricDefinitionToJson, compact.
common::Result<std::string> EncodeMetricDocument(const query::MetricDefinition& def);

// Reads the document stored in the row keyed `name`. Corruption naming the definition when the text is not
// JSON, is not a valid stored definition, or names a different definition.
common::Result<query::MetricDefinition> DecodeMetricDocument(std::string_view name, std::string_view text);

// The stored form of AuditRecord::details.
common::Result<std::string> EncodeAuditDetails(const nlohmann::json& details);

// Reads the details stored in audit record `id`. Corruption when the text is not JSON.
common::Result<nlohmann::json> DecodeAuditDetails(int64_t id, std::string_view text);

// What both adapters require of a dead letter before storing it, so they accept and refuse the same ones:
// every string UTF-8 without NUL bytes (PostgreSQL TEXT holds nothing else), no negative counts or time.
// InvalidArgument naming the field (e.g. "payload") otherwise.
common::Status CheckDeadLetter(const DeadLetter& letter);

// InvalidArgument (field "limit") when filter.limit is outside 1..1000.
common::Status CheckDeadLetterPage(const DeadLetterFilter& filter);

// After a committed append: gives letters[i] the id ids[i], and `now_ms` where received_at_ms was 0.
void AssignDeadLetterIds(std::vector<DeadLetter>& letters, const std::vector<int64_t>& ids, int64_t now_ms);

}  // namespace analytics::metadata
