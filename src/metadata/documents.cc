// JSON text codecs of the metadata adapters and the checks of what they store.
#include "metadata/documents.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/utf8.h"

namespace analytics::metadata {

using common::Result;
using common::Status;

namespace {

Result<std::string> Dump(const nlohmann::json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string(what) + " cannot be stored: " + e.what());
  }
}

// Dump, with the error naming `field`.
Result<std::string> DumpField(const nlohmann::json& value, std::string_view field) {
  try {
    return value.dump();
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("cannot be stored: ") + e.what(), std::string(field));
  }
}

Status RequireText(std::string_view text, const char* field) {
  if (!IsStorableText(text)) return Status::InvalidArgument("must be UTF-8 without NUL bytes to be stored", field);
  return Status::Ok();
}

// Caller-assigned ids (UUID text): 1..64 storable bytes.
Status RequireId(std::string_view id, const char* field) {
  if (id.empty() || id.size() > 64) return Status::InvalidArgument("must be 1..64 bytes", field);
  return RequireText(id, field);
}

Status RequireNotNegative(int64_t value, const char* field) {
  if (value < 0) return Status::InvalidArgument("must not be negative", field);
  return Status::Ok();
}

template <size_t N>
bool OneOf(std::string_view value, const std::array<std::string_view, N>& allowed) {
  for (std::string_view candidate : allowed) {
    if (value == candidate) return true;
  }
  return false;
}

constexpr std::array<std::string_view, 2> kSegmentTypes = {"static", "dynamic"};
constexpr std::array<std::string_view, 9> kTriggers = {"manual",  "schedule",           "incremental",
                                                       "upload",  "create",             "definition_changed",
                                                       "new_day", "incremental_overflow", "erasure"};
constexpr std::array<std::string_view, 5> kRunStatuses = {"queued", "running", "completed", "failed", "cancelled"};

}  // namespace

// Strict UTF-8 (RFC 3629, as PostgreSQL checks it): no overlong forms, no surrogates, nothing above
// U+10FFFF. NUL is refused too: PostgreSQL cannot store it in TEXT.
bool IsStorableText(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const auto lead = static_cast<unsigned char>(text[pos]);
    if (lead == 0) return false;
    if (lead < 0x80) {
      ++pos;
      continue;
    }
    size_t length = 0;
    unsigned char min_second = 0x80;
    unsigned char max_second = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead == 0xe0) min_second = 0xa0;  // overlong
      if (lead == 0xed) max_second = 0x9f;  // surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead == 0xf0) min_second = 0x90;  // overlong
      if (lead == 0xf4) max_second = 0x8f;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - pos < length) return false;
    const auto second = static_cast<unsigned char>(text[pos + 1]);
    if (second < min_second || second > max_second) return false;
    for (size_t continuation = 2; continuation < length; ++continuation) {
      if ((static_cast<unsigned char>(text[pos + continuation]) & 0xc0) != 0x80) return false;
    }
    pos += length;
  }
  return true;
}

Result<std::string> EncodeMetricDocument(const query::MetricDefinition& def) {
  try {
    return Dump(query::MetricDefinitionToJson(def), "metric definition '" + def.name + "'");
  } catch (const std::exception& e) {
    return Status::InvalidArgument("metric definition '" + def.name + "' cannot be stored: " + e.what());
  }
}

Result<query::MetricDefinition> DecodeMetricDocument(std::string_view name, std::string_view text) {
  const std::string prefix = "stored metric definition '" + std::string(name) + "' ";
  nlohmann::json parsed = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::Corruption(prefix + "is not valid JSON");
  try {
    auto def = query::MetricDefinitionFromStored(parsed);
    if (!def.ok()) {
      // MetricDefinitionFromStored already says Corruption; keep its message but make sure of the code.
      return def.status().code() == common::StatusCode::kCorruption
                 ? def.status()
                 : Status::Corruption(prefix + "is invalid: " + def.status().ToString());
    }
    if (def->name != name) {
      return Status::Corruption(prefix + "holds a document named '" + def->name + "'");
    }
    return def;
  } catch (const std::exception& e) {
    return Status::Corruption(prefix + "is invalid: " + e.what());
  }
}

Result<std::string> EncodeAuditDetails(const nlohmann::json& details) { return Dump(details, "audit details"); }

Result<nlohmann::json> DecodeAuditDetails(int64_t id, std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Status::Corruption("stored details of audit record " + std::to_string(id) + " are not valid JSON");
  }
  return parsed;
}

Status CheckDeadLetter(const DeadLetter& letter) {
  const std::pair<const std::string*, const char*> texts[] = {
      {&letter.source, "source"},   {&letter.event_id, "event_id"}, {&letter.event_type, "event_type"},
      {&letter.code, "code"},       {&letter.field, "field"},       {&letter.message, "message"},
      {&letter.payload, "payload"}, {&letter.channel, "channel"},
  };
  for (const auto& [text, name] : texts) {
    if (!IsStorableText(*text)) {
      return Status::InvalidArgument("must be UTF-8 without NUL bytes to be stored", name);
    }
  }
  if (letter.received_at_ms < 0) return Status::InvalidArgument("must not be negative", "received_at_ms");
  if (letter.payload_bytes < 0) return Status::InvalidArgument("must not be negative", "payload_bytes");
  if (letter.replay_count < 0) return Status::InvalidArgument("must not be negative", "replay_count");
  return Status::Ok();
}

Status CheckDeadLetterPage(const DeadLetterFilter& filter) {
  if (filter.limit < 1 || filter.limit > 1000) return Status::InvalidArgument("must be 1..1000", "limit");
  return Status::Ok();
}

void AssignDeadLetterIds(std::vector<DeadLetter>& letters, const std::vector<int64_t>& ids, int64_t now_ms) {
  for (size_t letter_idx = 0; letter_idx < letters.size(); ++letter_idx) {
    letters[letter_idx].id = ids[letter_idx];
    if (letters[letter_idx].received_at_ms == 0) letters[letter_idx].received_at_ms = now_ms;
  }
}

Status CheckSegment(const SegmentRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(RequireId(record.id, "id"));
  ANALYTICS_RETURN_IF_ERROR(RequireText(record.name, "name"));
  const size_t name_length = common::CodePoints(record.name);
  if (name_length < 1 || name_length > 128) return Status::InvalidArgument("must be 1..128 characters", "name");
  if (!OneOf(record.type, kSegmentTypes)) return Status::InvalidArgument("must be static or dynamic", "type");
  if (!record.definition.is_object()) return Status::InvalidArgument("must be a JSON object", "definition");
  if (record.version < 1) return Status::InvalidArgument("must be at least 1", "version");
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(record.created_at_ms, "created_at_ms"));
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(record.updated_at_ms, "updated_at_ms"));
  return RequireText(record.created_by, "created_by");
}

Result<std::string> EncodeSegmentDefinition(const nlohmann::json& definition) {
  return DumpField(definition, "definition");
}

Result<nlohmann::json> DecodeSegmentDefinition(std::string_view id, std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Status::Corruption("stored definition of segment '" + std::string(id) + "' is not a JSON object");
  }
  return parsed;
}

Status CheckReportDefinition(const ReportDefinitionRecord& record) {
  ANALYTICS_RETURN_IF_ERROR(RequireId(record.id, "id"));
  ANALYTICS_RETURN_IF_ERROR(RequireText(record.name, "name"));
  const size_t name_length = common::CodePoints(record.name);
  if (name_length < 1 || name_length > 128) return Status::InvalidArgument("must be 1..128 characters", "name");
  if (!record.definition.is_object()) return Status::InvalidArgument("must be a JSON object", "definition");
  if (record.version < 1) return Status::InvalidArgument("must be at least 1", "version");
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(record.created_at_ms, "created_at_ms"));
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(record.updated_at_ms, "updated_at_ms"));
  return RequireText(record.created_by, "created_by");
}

Result<std::string> EncodeReportDefinition(const nlohmann::json& definition) {
  return DumpField(definition, "definition");
}

Result<nlohmann::json> DecodeReportDefinition(std::string_view id, std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Status::Corruption("stored definition of report definition '" + std::string(id) +
                              "' is not a JSON object");
  }
  return parsed;
}

Status CheckMaterialization(const SegmentMaterialization& m) {
  ANALYTICS_RETURN_IF_ERROR(RequireText(m.segment_id, "segment_id"));
  const std::pair<int64_t, const char*> numbers[] = {
      {m.definition_version, "definition_version"},
      {m.as_of_ms, "as_of_ms"},
      {m.refreshed_at_ms, "refreshed_at_ms"},
      {m.duration_ms, "duration_ms"},
      {m.users_count, "users_count"},
      {m.added, "added"},
      {m.removed, "removed"},
  };
  for (const auto& [value, field] : numbers) ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(value, field));
  ANALYTICS_RETURN_IF_ERROR(RequireText(m.run_id, "run_id"));
  if (!OneOf(m.trigger, kTriggers)) {
    return Status::InvalidArgument(
        "must be manual, schedule, incremental, upload, create, definition_changed, new_day, incremental_overflow or "
        "erasure",
        "trigger");
  }
  return Status::Ok();
}

Status CheckMember(std::string_view user, std::string_view field) {
  if (user.empty() || user.size() > kMaxMemberBytes) {
    return Status::InvalidArgument("must be 1.." + std::to_string(kMaxMemberBytes) + " bytes", std::string(field));
  }
  if (!IsStorableText(user)) {
    return Status::InvalidArgument("must be UTF-8 without NUL bytes to be stored", std::string(field));
  }
  return Status::Ok();
}

Result<DistinctMembers> DistinctMemberList(const std::vector<std::string>& users) {
  DistinctMembers out;
  out.slot.reserve(users.size());
  std::unordered_map<std::string_view, uint32_t> positions;
  positions.reserve(users.size());
  for (size_t user_idx = 0; user_idx < users.size(); ++user_idx) {
    const std::string& user = users[user_idx];
    Status checked = CheckMember(user, /*field=*/"");
    if (!checked.ok()) return checked.WithFieldPrefix("users[" + std::to_string(user_idx) + "]");
    auto [it, inserted] = positions.try_emplace(user, static_cast<uint32_t>(out.distinct.size()));
    if (inserted) out.distinct.push_back(user);
    out.slot.push_back(it->second);
  }
  return out;
}

Status CheckMemberIndexPage(int limit) {
  if (limit < 1 || limit > 100000) return Status::InvalidArgument("must be 1..100000", "limit");
  return Status::Ok();
}

Status CheckMemberIndexRange(int64_t first, size_t count) {
  constexpr int64_t kMaxIndex = std::numeric_limits<uint32_t>::max();
  if (first < 0 || first > kMaxIndex || static_cast<uint64_t>(kMaxIndex - first) + 1 < count) {
    return Status::ResourceExhausted("the member index is full: indexes would pass " + std::to_string(kMaxIndex));
  }
  return Status::Ok();
}

Status CheckPipelineRun(const PipelineRun& run) {
  ANALYTICS_RETURN_IF_ERROR(RequireId(run.id, "id"));
  if (run.kind.empty()) return Status::InvalidArgument("must not be empty", "kind");
  ANALYTICS_RETURN_IF_ERROR(RequireText(run.kind, "kind"));
  ANALYTICS_RETURN_IF_ERROR(RequireText(run.target, "target"));
  if (!OneOf(run.status, kRunStatuses)) {
    return Status::InvalidArgument("must be queued, running, completed, failed or cancelled", "status");
  }
  // Written so that NaN fails too.
  if (!(run.progress >= 0 && run.progress <= 1)) return Status::InvalidArgument("must be 0..1", "progress");
  ANALYTICS_RETURN_IF_ERROR(RequireText(run.error, "error"));
  ANALYTICS_RETURN_IF_ERROR(RequireText(run.requested_by, "requested_by"));
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(run.created_at_ms, "created_at_ms"));
  ANALYTICS_RETURN_IF_ERROR(RequireNotNegative(run.started_at_ms, "started_at_ms"));
  return RequireNotNegative(run.finished_at_ms, "finished_at_ms");
}

Result<std::string> EncodeRunDocument(const nlohmann::json& document, std::string_view field) {
  return DumpField(document, field);
}

Result<nlohmann::json> DecodeRunDocument(std::string_view id, std::string_view column, std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Status::Corruption("stored " + std::string(column) + " of pipeline run '" + std::string(id) +
                              "' is not valid JSON");
  }
  return parsed;
}

std::string FormatProgress(double progress) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), progress);
  if (ec != std::errc()) return "0";  // cannot happen: 32 bytes hold any double
  return std::string(buffer, end);
}

Result<double> ParseProgress(std::string_view id, std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0 && value <= 1)) {
    return Status::Corruption("stored progress of pipeline run '" + std::string(id) + "' is '" + std::string(text) +
                              "', not a number in 0..1");
  }
  return value;
}

Status CheckPipelineRunPage(const PipelineRunFilter& filter) {
  if (filter.limit < 1 || filter.limit > 1000) return Status::InvalidArgument("must be 1..1000", "limit");
  return Status::Ok();
}

// Outbox ------------------------------------------------------------------------------------------------------

Status CheckOutboxAppend(std::string_view key, std::string_view type, std::string_view event_json, int64_t now_ms) {
  const std::pair<std::string_view, const char*> texts[] = {{key, "key"}, {type, "type"}, {event_json, "event_json"}};
  for (const auto& [text, name] : texts) {
    if (!IsStorableText(text)) return Status::InvalidArgument("must be UTF-8 without NUL bytes to be stored", name);
  }
  if (type.empty()) return Status::InvalidArgument("must not be empty", "type");
  if (event_json.empty()) return Status::InvalidArgument("must not be empty", "event_json");
  if (now_ms < 0) return Status::InvalidArgument("must not be negative", "created_at_ms");
  return Status::Ok();
}

int64_t OutboxLimit(size_t limit) {
  return limit > static_cast<size_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                           : static_cast<int64_t>(limit);
}

}  // namespace analytics::metadata
