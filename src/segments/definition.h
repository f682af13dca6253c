// SegmentDefinition: the document of POST/PUT /segments/definitions, validated, with its canonical JSON (what the
// MetadataStore keeps). docs/segments.md section 2.
// Errors are InvalidArgument whose field() is the JSON path of the offending value ("rule.and[0].performed.count").
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "query/time_grid.h"
#include "segments/rule.h"

namespace analytics::segments {

inline constexpr size_t kMaxNameLength = 128;
inline constexpr size_t kMaxDescriptionLength = 4096;
inline constexpr size_t kMaxUserIdLength = 1024;
inline constexpr int64_t kMinRefreshEverySeconds = 60;

struct SegmentDefinition {
  std::string name;
  std::string description;
  std::string type;                 // "dynamic" or "static"
  std::optional<int64_t> as_of_ms;  // dynamic: fixed evaluation time; unset = now at each refresh
  query::TimeZone zone = query::TimeZone::Utc();
  std::optional<Rule> rule;         // dynamic only
  std::optional<int64_t> refresh_every_s;  // scheduled refresh
  bool incremental = true;          // refresh as events arrive when the rule allows it
  // Static: a saved analysis result, {"funnel": <funnel request>, "step": k, "users": "reached|dropped|converted"}.
  nlohmann::json source;
  // Static: initial members as given (original ids or pseudonyms); not part of the stored document.
  std::vector<std::string> user_ids;
  bool user_ids_given = false;  // user_ids was in the body (an empty list empties the segment on PUT)

  bool dynamic() const { return type == "dynamic"; }
};

// Validates a request body.
common::Result<SegmentDefinition> ParseDefinition(const nlohmann::json& body);
// The canonical stored document (everything but user_ids); ParseDefinition(ToDocument(d)) gives d back.
nlohmann::json ToDocument(const SegmentDefinition& definition);

// The ids of a user list upload: a JSON array of strings (`field` names it in errors) or CSV text (one id per
// line, optional header "user_id", blank lines skipped, an id may be double-quoted).
common::Result<std::vector<std::string>> ParseUserIds(const nlohmann::json& array, const std::string& field);
common::Result<std::vector<std::string>> ParseUserIdsCsv(std::string_view text);


}  // namespace analytics::segments
