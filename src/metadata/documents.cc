// JSON text codecs of the metadata adapters.
#include "metadata/documents.h"

#include <exception>

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

}  // namespace analytics::metadata
