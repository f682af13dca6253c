// Shared analysis request parsing: period, zone, filters, scope, typed member reads with JSON-path errors.
#include "analysis/request.h"

#include <algorithm>
#include <span>

#include "common/time_util.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;

const json* Find(const json& object, std::string_view name) {
  auto it = object.find(std::string(name));
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::string Member(const std::string& path, std::string_view name) {
  return path.empty() ? std::string(name) : path + "." + std::string(name);
}

std::string Index(const std::string& path, size_t index) { return path + "[" + std::to_string(index) + "]"; }

namespace {

Status CheckFieldsIn(const json& object, std::initializer_list<std::string_view> known,
                     std::span<const std::string_view> also_known, const std::string& path) {
  if (!object.is_object()) return Status::InvalidArgument("must be a JSON object", path.empty() ? "body" : path);
  for (const auto& [name, value] : object.items()) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    if (std::find(also_known.begin(), also_known.end(), name) != also_known.end()) continue;
    return Status::InvalidArgument("is not a known field", Member(path, name));
  }
  return Status::Ok();
}

}  // namespace

Status CheckFields(const json& object, std::initializer_list<std::string_view> known, const std::string& path) {
  return CheckFieldsIn(object, known, {}, path);
}

Status CheckRequestFields(const json& body, std::initializer_list<std::string_view> known) {
  static constexpr std::string_view kCommon[] = {"period_start", "period_end", "timezone", "filters", "segment"};
  return CheckFieldsIn(body, known, kCommon, "");
}

Result<std::string> RequiredString(const json& object, std::string_view name, const std::string& path) {
  const json* value = Find(object, name);
  if (value == nullptr) return Status::InvalidArgument("is required", Member(path, name));
  if (!value->is_string()) return Status::InvalidArgument("must be a string", Member(path, name));
  return value->get<std::string>();
}

Result<std::optional<std::string>> OptionalString(const json& object, std::string_view name, const std::string& path) {
  const json* value = Find(object, name);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return Status::InvalidArgument("must be a string", Member(path, name));
  return std::optional<std::string>(value->get<std::string>());
}

Result<int64_t> IntegerIn(const json& object, std::string_view name, const std::string& path, int64_t min, int64_t max,
                          std::optional<int64_t> fallback) {
  const json* value = Find(object, name);
  const std::string where = Member(path, name);
  const std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  if (value == nullptr) {
    if (fallback) return *fallback;
    return Status::InvalidArgument("is required (" + range + ")", where);
  }
  if (!value->is_number_integer()) return Status::InvalidArgument("must be " + range, where);
  if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(max)) {
    return Status::InvalidArgument("must be " + range, where);
  }
  const int64_t number = value->get<int64_t>();
  if (number < min || number > max) return Status::InvalidArgument("must be " + range, where);
  return number;
}

Result<bool> Boolean(const json& object, std::string_view name, const std::string& path, bool fallback) {
  const json* value = Find(object, name);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) return Status::InvalidArgument("must be true or false", Member(path, name));
  return value->get<bool>();
}

Result<std::string> Choice(const json& object, std::string_view name, const std::string& path,
                           std::initializer_list<std::string_view> allowed, std::string_view fallback) {
  const json* value = Find(object, name);
  std::string list;
  for (std::string_view item : allowed) list += (list.empty() ? "" : ", ") + std::string(item);
  if (value == nullptr) return std::string(fallback);
  if (!value->is_string() ||
      std::find(allowed.begin(), allowed.end(), value->get_ref<const std::string&>()) == allowed.end()) {
    return Status::InvalidArgument("must be one of " + list, Member(path, name));
  }
  return value->get<std::string>();
}

Result<std::string> EventType(const json& object, std::string_view name, const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string type, RequiredString(object, name, path));
  if (type.empty() || type.size() > 256) {
    return Status::InvalidArgument("must be an event type of 1 to 256 characters", Member(path, name));
  }
  return type;
}

Result<std::string> PropertyName(const json& value, const std::string& path) {
  if (!value.is_string()) return Status::InvalidArgument("must be a property name (a string)", path);
  const std::string& name = value.get_ref<const std::string&>();
  if (name.empty() || name.size() > 256) {
    return Status::InvalidArgument("must be a property name of 1 to 256 characters", path);
  }
  return name;
}

Result<query::FilterExpr> Filters(const json& object, std::string_view name, const std::string& path) {
  const json* value = Find(object, name);
  if (value == nullptr) return query::FilterExpr();
  const std::string where = Member(path, name);
  auto parsed = query::ParseFilterExpr(*value, where);
  if (!parsed.ok()) return Status::InvalidArgument(parsed.status().message(), parsed.status().field());
  return parsed;
}

Result<CommonRequest> ParseCommon(const json& body, const Viewer& viewer, const AnalysisOptions& options) {
  if (!body.is_object()) return Status::InvalidArgument("must be a JSON object", "body");
  CommonRequest request;
  ANALYTICS_ASSIGN_OR_RETURN(auto zone, OptionalString(body, "timezone", ""));
  if (zone && !zone->empty()) {
    auto loaded = query::TimeZone::Load(*zone);
    if (!loaded.ok()) return Status::InvalidArgument(loaded.status().message(), "timezone");
    request.zone = std::move(loaded).value();
  }
  ANALYTICS_ASSIGN_OR_RETURN(request.period_start, RequiredString(body, "period_start", ""));
  ANALYTICS_ASSIGN_OR_RETURN(request.period_end, RequiredString(body, "period_end", ""));
  ANALYTICS_ASSIGN_OR_RETURN(request.start_ms,
                             query::ParsePeriodBound(request.period_start, false, request.zone, "period_start"));
  ANALYTICS_ASSIGN_OR_RETURN(request.end_ms,
                             query::ParsePeriodBound(request.period_end, true, request.zone, "period_end"));
  if (request.end_ms <= request.start_ms) return Status::InvalidArgument("must not be before period_start", "period_end");
  std::vector<query::FilterExpr> filters;
  ANALYTICS_ASSIGN_OR_RETURN(query::FilterExpr filter, Filters(body, "filters", ""));
  filters.push_back(std::move(filter));
  if (!viewer.all_games) {
    filters.push_back(query::GameScope(viewer.game_ids));
    request.k_anonymity = options.k_anonymity > 1;
  }
  request.k = options.k_anonymity;
  request.filter = query::FilterExpr::And(std::move(filters));
  ANALYTICS_ASSIGN_OR_RETURN(request.segment, OptionalString(body, "segment", ""));
  if (request.segment) {
    if (request.segment->empty()) return Status::InvalidArgument("must be a segment id", "segment");
    if (!options.segment_scope) return Status::NotFound("segment '" + *request.segment + "' does not exist");
    ANALYTICS_ASSIGN_OR_RETURN(request.scope, options.segment_scope(*request.segment));
  }
  return request;
}

Status CheckDataAvailable(store::EventStore& store, const CommonRequest& request) {
  const int64_t newest = store.NewestEventMs();
  if (newest < request.start_ms) {
    return Status::FailedPrecondition("the period starts after the newest stored event" +
                                      (newest == INT64_MIN ? std::string(" (none stored)")
                                                           : " (" + common::FormatRfc3339Millis(newest) + ")"));
  }
  return Status::Ok();
}

json Echo(const CommonRequest& request) {
  json echo = {{"period_start", request.period_start}, {"period_end", request.period_end},
               {"timezone", request.zone.name()}};
  if (request.segment) echo["segment"] = *request.segment;
  return echo;
}

void AddKAnonymity(json& document, const CommonRequest& request, uint64_t suppressed_groups) {
  if (request.k_anonymity) document["k_anonymity"] = {{"k", request.k}, {"suppressed_groups", suppressed_groups}};
}

}  // namespace analytics::analysis
