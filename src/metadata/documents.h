// How the metadata adapters turn models into stored text and back, and what they require of what they store
// (so both adapters accept and refuse the same values).
// Internal to src/metadata/: the port (metadata_store.h) speaks models, the adapters store JSON text produced
// here.
//
// Writing never throws: a value nlohmann cannot serialize (a string that is not UTF-8) is InvalidArgument.
// Reading never throws: a stored value that does not read back is Corruption naming the row.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// Strict UTF-8 without NUL bytes: what a PostgreSQL TEXT column holds, so both adapters accept the same strings.
bool IsStorableText(std::string_view text);

// Segments ----------------------------------------------------------------------------------------------------

// What both adapters require of a segment before storing it (see MetadataStore::CreateSegment).
// InvalidArgument naming the field otherwise.
common::Status CheckSegment(const SegmentRecord& record);

// The stored form of SegmentRecord::definition (compact JSON). InvalidArgument (field "definition") when it
// cannot be serialized.
common::Result<std::string> EncodeSegmentDefinition(const nlohmann::json& definition);

// Reads the definition stored for segment `id`. Corruption naming the segment when the text is not a JSON
// object.
common::Result<nlohmann::json> DecodeSegmentDefinition(std::string_view id, std::string_view text);

// What both adapters require of a materialization (see MetadataStore::PutMaterialization).
common::Status CheckMaterialization(const SegmentMaterialization& m);

// Member index ------------------------------------------------------------------------------------------------

// Longest pseudonym the member index takes, in bytes.
inline constexpr size_t kMaxMemberBytes = 1024;

// InvalidArgument (field `field`) when `user` is empty, longer than kMaxMemberBytes or not storable text.
common::Status CheckMember(std::string_view user, std::string_view field);

// The distinct users of a MemberIndexes call. `distinct` lists each user once, in the order of its first
// occurrence; `slot[i]` is the position in `distinct` of users[i]. The views point into the input vector.
struct DistinctMembers {
  std::vector<std::string_view> distinct;
  std::vector<uint32_t> slot;
};

// Checks every user (InvalidArgument, field "users[i]") and removes duplicates.
common::Result<DistinctMembers> DistinctMemberList(const std::vector<std::string>& users);

// InvalidArgument (field "limit") when limit is outside 1..100000.
common::Status CheckMemberIndexPage(int limit);

// ResourceExhausted unless every index in [first, first + count) fits in a uint32 (indexes are uint32 in the
// port and in the bitmaps).
common::Status CheckMemberIndexRange(int64_t first, size_t count);

// Report definitions ------------------------------------------------------------------------------------------

// What both adapters require of a report definition (see MetadataStore::CreateReportDefinition).
// InvalidArgument naming the field otherwise.
common::Status CheckReportDefinition(const ReportDefinitionRecord& record);

// The stored form of ReportDefinitionRecord::definition (compact JSON). InvalidArgument (field "definition")
// when it cannot be serialized.
common::Result<std::string> EncodeReportDefinition(const nlohmann::json& definition);

// Reads the definition stored for report definition `id`. Corruption naming it when the text is not a JSON
// object.
common::Result<nlohmann::json> DecodeReportDefinition(std::string_view id, std::string_view text);

// Pipeline runs -----------------------------------------------------------------------------------------------

// What both adapters require of a run before storing it (see MetadataStore::CreatePipelineRun).
common::Status CheckPipelineRun(const PipelineRun& run);

// The stored form of PipelineRun::parameters / ::result. InvalidArgument (field `field`) when it cannot be
// serialized.
common::Result<std::string> EncodeRunDocument(const nlohmann::json& document, std::string_view field);

// Reads column `column` ("parameters" or "result") of run `id`. Corruption naming the run when it is not JSON.
common::Result<nlohmann::json> DecodeRunDocument(std::string_view id, std::string_view column,
                                                 std::string_view text);

// The stored text of PipelineRun::progress (PostgreSQL parameter): the shortest form that reads back exactly.
std::string FormatProgress(double progress);

// Reads progress text returned by PostgreSQL. Corruption naming the run when it is not a number in 0..1.
common::Result<double> ParseProgress(std::string_view id, std::string_view text);

// InvalidArgument (field "limit") when filter.limit is outside 1..1000.
common::Status CheckPipelineRunPage(const PipelineRunFilter& filter);

// Outbox ------------------------------------------------------------------------------------------------------

// What both adapters require of an appended outbox record (see MetadataStore::AppendOutbox). InvalidArgument
// naming the field ("key", "type", "event_json", "created_at_ms") otherwise.
common::Status CheckOutboxAppend(std::string_view key, std::string_view type, std::string_view event_json,
                                 int64_t now_ms);

// A page size of the outbox lists as an SQL LIMIT (size_t values past INT64_MAX are INT64_MAX).
int64_t OutboxLimit(size_t limit);

}  // namespace analytics::metadata
