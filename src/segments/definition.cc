#include "segments/definition.h"

#include "analysis/request.h"
#include "common/time_util.h"
#include "common/utf8.h"

namespace analytics::segments {

using common::Result;
using common::Status;
using nlohmann::json;

namespace {

Status CheckUserId(const std::string& id, const std::string& field) {
  if (id.empty()) return Status::InvalidArgument("a user id must not be empty", field);
  if (id.size() > kMaxUserIdLength) {
    return Status::InvalidArgument("a user id has at most " + std::to_string(kMaxUserIdLength) + " bytes", field);
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return Status::InvalidArgument("a user id must not contain control characters", field);
  }
  return Status::Ok();
}

}  // namespace

Result<SegmentDefinition> ParseDefinition(const json& body) {
  if (!body.is_object()) return Status::InvalidArgument("the body must be a JSON object", "body");
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(body,
                                                  {"name", "description", "type", "as_of", "timezone", "rule",
                                                   "refresh_every", "incremental", "source", "user_ids"},
                                                  ""));
  SegmentDefinition def;
  ANALYTICS_ASSIGN_OR_RETURN(def.name, analysis::RequiredString(body, "name", ""));
  if (def.name.empty() || common::CodePoints(def.name) > kMaxNameLength) {
    return Status::InvalidArgument("must have 1 to " + std::to_string(kMaxNameLength) + " characters", "name");
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto description, analysis::OptionalString(body, "description", ""));
  def.description = description.value_or("");
  if (common::CodePoints(def.description) > kMaxDescriptionLength) {
    return Status::InvalidArgument("must have at most " + std::to_string(kMaxDescriptionLength) + " characters",
                                   "description");
  }
  ANALYTICS_ASSIGN_OR_RETURN(def.type, analysis::Choice(body, "type", "", {"dynamic", "static"}, ""));
  if (def.type.empty()) return Status::InvalidArgument("is required: dynamic or static", "type");
  ANALYTICS_ASSIGN_OR_RETURN(auto timezone, analysis::OptionalString(body, "timezone", ""));
  if (timezone) {
    auto zone = query::TimeZone::Load(*timezone);
    if (!zone.ok()) return Status::InvalidArgument(zone.status().message(), "timezone");
    def.zone = *zone;
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto as_of, analysis::OptionalString(body, "as_of", ""));
  if (as_of) {
    auto ms = common::ParseRfc3339Millis(*as_of);
    if (!ms.ok()) return Status::InvalidArgument("must be an RFC 3339 date-time: " + ms.status().message(), "as_of");
    def.as_of_ms = *ms;
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto every, analysis::OptionalString(body, "refresh_every", ""));
  if (every) {
    auto seconds = common::ParseDurationSeconds(*every);
    if (!seconds.ok()) return Status::InvalidArgument("must be a duration such as \"15m\" or \"1h\"", "refresh_every");
    if (*seconds < kMinRefreshEverySeconds) return Status::InvalidArgument("must be at least 1m", "refresh_every");
    def.refresh_every_s = *seconds;
  }
  ANALYTICS_ASSIGN_OR_RETURN(def.incremental, analysis::Boolean(body, "incremental", "", true));
  const auto rule = body.find("rule");
  const bool has_rule = rule != body.end() && !rule->is_null();
  const auto source = body.find("source");
  const bool has_source = source != body.end() && !source->is_null();
  const auto users = body.find("user_ids");
  const bool has_users = users != body.end() && !users->is_null();
  if (def.dynamic()) {
    if (!has_rule) return Status::InvalidArgument("a dynamic segment needs a rule", "rule");
    if (has_source) return Status::InvalidArgument("only static segments have a source", "source");
    if (has_users) return Status::InvalidArgument("only static segments take user_ids", "user_ids");
    ANALYTICS_ASSIGN_OR_RETURN(def.rule, ParseRule(*rule, "rule"));
  } else {
    if (has_rule) return Status::InvalidArgument("a static segment has no rule (use type dynamic)", "rule");
    if (def.as_of_ms) return Status::InvalidArgument("a static segment has no as_of", "as_of");
    if (has_source && has_users) {
      return Status::InvalidArgument("give either a source or user_ids, not both", "user_ids");
    }
    if (has_source) {
      if (!source->is_object()) return Status::InvalidArgument("must be an object", "source");
      ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(*source, {"funnel", "step", "users"}, "source"));
      const auto funnel = source->find("funnel");
      if (funnel == source->end() || !funnel->is_object()) {
        return Status::InvalidArgument("must be a funnel request (an object)", "source.funnel");
      }
      ANALYTICS_ASSIGN_OR_RETURN(int64_t step, analysis::IntegerIn(*source, "step", "source", 0, 31, std::nullopt));
      ANALYTICS_ASSIGN_OR_RETURN(std::string which, analysis::Choice(*source, "users", "source",
                                                                     {"reached", "dropped", "converted"}, "dropped"));
      def.source = {{"funnel", *funnel}, {"step", step}, {"users", which}};
    }
    if (has_users) {
      ANALYTICS_ASSIGN_OR_RETURN(def.user_ids, ParseUserIds(*users, "user_ids"));
      def.user_ids_given = true;
    }
  }
  return def;
}

json ToDocument(const SegmentDefinition& def) {
  json doc = {{"name", def.name},
              {"description", def.description},
              {"type", def.type},
              {"timezone", def.zone.name()},
              {"incremental", def.incremental}};
  doc["as_of"] = def.as_of_ms ? json(common::FormatRfc3339Millis(*def.as_of_ms)) : json();
  doc["rule"] = def.rule ? RuleToJson(*def.rule) : json();
  doc["refresh_every"] = def.refresh_every_s ? json(std::to_string(*def.refresh_every_s) + "s") : json();
  doc["source"] = def.source.is_null() ? json() : def.source;
  return doc;
}

Result<std::vector<std::string>> ParseUserIds(const json& array, const std::string& field) {
  if (!array.is_array()) return Status::InvalidArgument("must be an array of user ids (strings)", field);
  std::vector<std::string> ids;
  ids.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const std::string path = analysis::Index(field, i);
    if (!array[i].is_string()) return Status::InvalidArgument("must be a string", path);
    ids.push_back(array[i].get<std::string>());
    ANALYTICS_RETURN_IF_ERROR(CheckUserId(ids.back(), path));
  }
  return ids;
}

Result<std::vector<std::string>> ParseUserIdsCsv(std::string_view text) {
  std::vector<std::string> ids;
  size_t line_number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty()) continue;
    std::string id;
    if (line.front() == '"') {
      // RFC 4180 quoting: "" inside is one quote.
      size_t i = 1;
      bool closed = false;
      for (; i < line.size(); ++i) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            id.push_back('"');
            ++i;
          } else {
            closed = true;
            ++i;
            break;
          }
        } else {
          id.push_back(line[i]);
        }
      }
      if (!closed || i != line.size()) {
        return Status::InvalidArgument("line " + std::to_string(line_number) + ": malformed quoted id", "body");
      }
    } else {
      if (line.find(',') != std::string_view::npos) {
        return Status::InvalidArgument("line " + std::to_string(line_number) + ": one user id per line (one column)",
                                       "body");
      }
      id = std::string(line);
    }
    if (ids.empty() && line_number == 1 && id == "user_id") continue;  // header
    ANALYTICS_RETURN_IF_ERROR(CheckUserId(id, "line " + std::to_string(line_number)));
    ids.push_back(std::move(id));
  }
  return ids;
}

}  // namespace analytics::segments
