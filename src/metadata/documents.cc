// JSON text codecs of the metadata adapters and the checks of dead letters.
#include "metadata/documents.h"

#include <exception>
#include <string>
#include <utility>

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

}  // namespace

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

}  // namespace analytics::metadata
