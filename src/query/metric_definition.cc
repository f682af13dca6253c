// MetricDefinition validation and JSON mapping.
#include "query/metric_definition.h"

#include <cmath>
#include <algorithm>
#include <set>

#include "common/time_util.h"

namespace analytics::query {
namespace {

using common::Result;
using common::Status;
using nlohmann::json;

constexpr size_t kMaxTitle = 200;
constexpr size_t kMaxDescription = 4000;
constexpr size_t kMaxListItems = 100;
constexpr size_t kMaxDimensions = 10;
constexpr size_t kMaxFilters = 50;

struct NamedAggregation {
  Aggregation aggregation;
  std::string_view name;
};
constexpr NamedAggregation kAggregations[] = {
    {Aggregation::kCount, "count"},         {Aggregation::kUniqueUsers, "unique_users"},
    {Aggregation::kSum, "sum"},             {Aggregation::kAvg, "avg"},
    {Aggregation::kMin, "min"},             {Aggregation::kMax, "max"},
    {Aggregation::kPercentile, "percentile"}, {Aggregation::kRatio, "ratio"},
    {Aggregation::kPeakConcurrent, "peak_concurrent"},
};

struct NamedOp {
  FilterOp op;
  std::string_view name;
};
constexpr NamedOp kOps[] = {
    {FilterOp::kEq, "eq"},   {FilterOp::kNe, "ne"},   {FilterOp::kIn, "in"},         {FilterOp::kNin, "nin"},
    {FilterOp::kGt, "gt"},   {FilterOp::kGte, "gte"}, {FilterOp::kLt, "lt"},         {FilterOp::kLte, "lte"},
    {FilterOp::kContains, "contains"}, {FilterOp::kExists, "exists"},
};

bool IsIdentifierStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentifierChar(char c) { return IsIdentifierStart(c) || (c >= '0' && c <= '9'); }

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

bool IsValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 64) return false;
  for (char c : tag) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

std::string JsonTypeName(const json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "boolean";
  if (value.is_number()) return "number";
  if (value.is_string()) return "string";
  if (value.is_array()) return "array";
  return "object";
}

Status WrongType(const std::string& field, std::string_view expected, const json& value) {
  return Status::InvalidArgument(
      "must be " + std::string(expected) + ", got " + JsonTypeName(value), field);
}

// Field readers: each returns InvalidArgument naming `field` when the JSON type is wrong.
Status ReadString(const json& body, const char* field, std::string& out, size_t max_len, bool required) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) {
    if (required) return Status::InvalidArgument("is required", field);
    return Status::Ok();
  }
  if (!it->is_string()) return WrongType(field, "a string", *it);
  out = it->get<std::string>();
  if (required && out.empty()) return Status::InvalidArgument("must not be empty", field);
  if (out.size() > max_len) {
    return Status::InvalidArgument("must be at most " + std::to_string(max_len) + " characters", field);
  }
  return Status::Ok();
}

Status ReadStringList(const json& body, const char* field, std::vector<std::string>& out,
                      bool (*valid)(std::string_view), std::string_view what, size_t max_items) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_array()) return WrongType(field, "an array", *it);
  if (it->size() > max_items) {
    return Status::InvalidArgument("must have at most " + std::to_string(max_items) + " items", field);
  }
  std::set<std::string> seen;
  for (size_t item_idx = 0; item_idx < it->size(); ++item_idx) {
    const json& item = (*it)[item_idx];
    std::string item_field = std::string(field) + "[" + std::to_string(item_idx) + "]";
    if (!item.is_string()) return WrongType(item_field, "a string", item);
    std::string value = item.get<std::string>();
    if (!valid(value)) {
      return Status::InvalidArgument("'" + value + "' is not " + std::string(what), item_field);
    }
    if (!seen.insert(value).second) {
      return Status::InvalidArgument("'" + value + "' is listed twice", item_field);
    }
    out.push_back(std::move(value));
  }
  return Status::Ok();
}

bool IsScalar(const json& value) { return value.is_string() || value.is_number() || value.is_boolean(); }

Status ParseFilter(const json& item, const std::string& field, PropertyFilter& out) {
  if (!item.is_object()) return WrongType(field, "an object", item);
  for (const auto& [key, unused] : item.items()) {
    if (key != "property" && key != "op" && key != "value") {
      return Status::InvalidArgument("unknown field", field + "." + key);
    }
  }
  auto property = item.find("property");
  if (property == item.end()) return Status::InvalidArgument("is required", field + ".property");
  if (!property->is_string()) return WrongType(field + ".property", "a string", *property);
  out.property = property->get<std::string>();
  if (!IsValidPropertyPath(out.property)) {
    return Status::InvalidArgument("'" + out.property + "' is not a property path (identifiers joined by dots)",
                                   field + ".property");
  }
  auto op = item.find("op");
  if (op == item.end()) return Status::InvalidArgument("is required", field + ".op");
  if (!op->is_string()) return WrongType(field + ".op", "a string", *op);
  auto parsed_op = FilterOpFromName(op->get<std::string>());
  if (!parsed_op) {
    return Status::InvalidArgument(
        "'" + op->get<std::string>() + "' is not one of eq, ne, in, nin, gt, gte, lt, lte, contains, exists",
        field + ".op");
  }
  out.op = *parsed_op;
  auto value = item.find("value");
  const std::string value_field = field + ".value";
  switch (out.op) {
    case FilterOp::kExists:
      if (value == item.end()) {
        out.value = true;
      } else if (!value->is_boolean()) {
        return WrongType(value_field, "a boolean for op exists", *value);
      } else {
        out.value = *value;
      }
      break;
    case FilterOp::kIn:
    case FilterOp::kNin:
      if (value == item.end()) return Status::InvalidArgument("is required", value_field);
      if (!value->is_array() || value->empty()) {
        return Status::InvalidArgument("must be a non-empty array for op " + std::string(FilterOpName(out.op)),
                                       value_field);
      }
      if (value->size() > 10000) return Status::InvalidArgument("must have at most 10000 items", value_field);
      for (size_t value_idx = 0; value_idx < value->size(); ++value_idx) {
        if (!IsScalar((*value)[value_idx])) {
          return WrongType(value_field + "[" + std::to_string(value_idx) + "]", "a string, number or boolean",
                           (*value)[value_idx]);
        }
      }
      out.value = *value;
      break;
    case FilterOp::kGt:
    case FilterOp::kGte:
    case FilterOp::kLt:
    case FilterOp::kLte:
      if (value == item.end()) return Status::InvalidArgument("is required", value_field);
      if (!value->is_number() && !value->is_string()) {
        return WrongType(value_field, "a number or string for op " + std::string(FilterOpName(out.op)), *value);
      }
      out.value = *value;
      break;
    case FilterOp::kContains:
      if (value == item.end()) return Status::InvalidArgument("is required", value_field);
      if (!value->is_string()) return WrongType(value_field, "a string for op contains", *value);
      out.value = *value;
      break;
    case FilterOp::kEq:
    case FilterOp::kNe:
      if (value == item.end()) return Status::InvalidArgument("is required", value_field);
      if (!IsScalar(*value)) return WrongType(value_field, "a string, number or boolean", *value);
      out.value = *value;
      break;
  }
  return Status::Ok();
}

Status ParseConcurrency(const json& item, ConcurrencySpec& out) {
  const std::string field = "concurrency";
  if (!item.is_object()) return WrongType(field, "an object", item);
  for (const auto& [key, unused] : item.items()) {
    if (key != "start_event_type" && key != "end_event_type" && key != "key_property" &&
        key != "max_session_seconds") {
      return Status::InvalidArgument("unknown field", field + "." + key);
    }
  }
  ANALYTICS_RETURN_IF_ERROR(
      ReadString(item, "start_event_type", out.start_event_type, 256, true).WithFieldPrefix(field));
  ANALYTICS_RETURN_IF_ERROR(
      ReadString(item, "end_event_type", out.end_event_type, 256, true).WithFieldPrefix(field));
  if (!IsValidEventType(out.start_event_type)) {
    return Status::InvalidArgument("not an event type", field + ".start_event_type");
  }
  if (!IsValidEventType(out.end_event_type)) {
    return Status::InvalidArgument("not an event type", field + ".end_event_type");
  }
  if (out.start_event_type == out.end_event_type) {
    return Status::InvalidArgument("must differ from start_event_type", field + ".end_event_type");
  }
  ANALYTICS_RETURN_IF_ERROR(ReadString(item, "key_property", out.key_property, 256, false).WithFieldPrefix(field));
  if (!IsValidPropertyPath(out.key_property)) {
    return Status::InvalidArgument("not a property path", field + ".key_property");
  }
  if (auto it = item.find("max_session_seconds"); it != item.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 30 * 86400) {
      return Status::InvalidArgument("must be an integer from 1 to 2592000", field + ".max_session_seconds");
    }
    out.max_session_seconds = it->get<int64_t>();
  }
  return Status::Ok();
}

// Parses the client-settable fields. `allow_server_fields` accepts (and reads) version, timestamps etc.
Result<MetricDefinition> ParseBody(const json& body, bool allow_server_fields) {
  if (!body.is_object()) return Status::InvalidArgument("the body must be a JSON object", "");
  static const std::set<std::string> kClientFields = {
      "name",        "title",      "description", "event_types", "event_weights", "aggregation",
      "property",    "percentile", "numerator",   "denominator", "window_days",   "concurrency",
      "filters",     "dimensions", "unit",        "tags",        "owner_service", "is_realtime"};
  static const std::set<std::string> kServerFields = {"version", "created_at", "updated_at", "builtin",
                                                      "created_by"};
  for (const auto& [key, unused] : body.items()) {
    if (kClientFields.count(key)) continue;
    if (kServerFields.count(key)) {
      if (allow_server_fields) continue;
      return Status::InvalidArgument("is set by the server and must not be sent", key);
    }
    return Status::InvalidArgument("unknown field", key);
  }

  MetricDefinition def;
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "name", def.name, 64, true));
  if (!IsValidName(def.name)) {
    return Status::InvalidArgument("must match ^[a-z][a-z0-9_]{0,63}$", "name");
  }
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "title", def.title, kMaxTitle, true));
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "description", def.description, kMaxDescription, false));
  ANALYTICS_RETURN_IF_ERROR(
      ReadStringList(body, "event_types", def.event_types, IsValidEventType, "an event type", kMaxListItems));

  std::string aggregation_name;
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "aggregation", aggregation_name, 64, true));
  auto aggregation = AggregationFromName(aggregation_name);
  if (!aggregation) {
    return Status::InvalidArgument("'" + aggregation_name +
                                       "' is not one of count, unique_users, sum, avg, min, max, percentile, "
                                       "ratio, peak_concurrent",
                                   "aggregation");
  }
  def.aggregation = *aggregation;

  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "property", def.property, 256, false));
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "numerator", def.numerator, 64, false));
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "denominator", def.denominator, 64, false));
  if (auto it = body.find("percentile"); it != body.end() && !it->is_null()) {
    if (!it->is_number()) return WrongType("percentile", "a number", *it);
    double p = it->get<double>();
    if (!(p > 0.0 && p < 100.0)) return Status::InvalidArgument("must be greater than 0 and less than 100", "percentile");
    def.percentile = p;
  }
  if (auto it = body.find("window_days"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 365) {
      return Status::InvalidArgument("must be an integer from 1 to 365", "window_days");
    }
    def.window_days = static_cast<int>(it->get<int64_t>());
  }
  if (auto it = body.find("concurrency"); it != body.end() && !it->is_null()) {
    ConcurrencySpec spec;
    ANALYTICS_RETURN_IF_ERROR(ParseConcurrency(*it, spec));
    def.concurrency = spec;
  }
  if (auto it = body.find("event_weights"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return WrongType("event_weights", "an object", *it);
    for (const auto& [type, weight] : it->items()) {
      std::string field = "event_weights." + type;
      if (!weight.is_number() || !std::isfinite(weight.get<double>())) return WrongType(field, "a number", weight);
      if (std::find(def.event_types.begin(), def.event_types.end(), type) == def.event_types.end()) {
        return Status::InvalidArgument("'" + type + "' is not listed in event_types", field);
      }
      def.event_weights[type] = weight.get<double>();
    }
  }
  if (auto it = body.find("filters"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return WrongType("filters", "an array", *it);
    if (it->size() > kMaxFilters) return Status::InvalidArgument("must have at most 50 items", "filters");
    for (size_t filter_idx = 0; filter_idx < it->size(); ++filter_idx) {
      PropertyFilter filter;
      ANALYTICS_RETURN_IF_ERROR(ParseFilter((*it)[filter_idx], "filters[" + std::to_string(filter_idx) + "]", filter));
      def.filters.push_back(std::move(filter));
    }
  }
  ANALYTICS_RETURN_IF_ERROR(ReadStringList(body, "dimensions", def.dimensions, IsValidPropertyPath,
                                           "a property path", kMaxDimensions));
  ANALYTICS_RETURN_IF_ERROR(ReadString(body, "unit", def.unit, 32, false));
  ANALYTICS_RETURN_IF_ERROR(ReadStringList(body, "tags", def.tags, IsValidTag,
                                           "a tag (1-64 chars of a-z, 0-9, _ and -)", kMaxListItems));
  if (body.contains("owner_service") && !body["owner_service"].is_null()) {
    ANALYTICS_RETURN_IF_ERROR(ReadString(body, "owner_service", def.owner_service, 64, true));
    if (!IsValidTag(def.owner_service)) {
      return Status::InvalidArgument("must be 1-64 chars of a-z, 0-9, _ and -", "owner_service");
    }
  }
  if (auto it = body.find("is_realtime"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return WrongType("is_realtime", "a boolean", *it);
    def.is_realtime = it->get<bool>();
  }

  // Cross-field rules: what each aggregation requires and forbids.
  const bool needs_property = def.aggregation == Aggregation::kSum || def.aggregation == Aggregation::kAvg ||
                              def.aggregation == Aggregation::kMin || def.aggregation == Aggregation::kMax ||
                              def.aggregation == Aggregation::kPercentile;
  const std::string agg(AggregationName(def.aggregation));
  if (needs_property) {
    if (def.property.empty()) return Status::InvalidArgument("is required for aggregation " + agg, "property");
    if (!IsValidPropertyPath(def.property)) {
      return Status::InvalidArgument("'" + def.property + "' is not a property path", "property");
    }
  } else if (!def.property.empty()) {
    return Status::InvalidArgument("is not allowed for aggregation " + agg, "property");
  }
  if (def.aggregation == Aggregation::kPercentile) {
    if (!def.percentile) return Status::InvalidArgument("is required for aggregation percentile", "percentile");
  } else if (def.percentile) {
    return Status::InvalidArgument("is only allowed for aggregation percentile", "percentile");
  }
  if (def.aggregation == Aggregation::kRatio) {
    if (def.numerator.empty()) return Status::InvalidArgument("is required for aggregation ratio", "numerator");
    if (def.denominator.empty()) return Status::InvalidArgument("is required for aggregation ratio", "denominator");
    if (!IsValidName(def.numerator)) return Status::InvalidArgument("is not a metric name", "numerator");
    if (!IsValidName(def.denominator)) return Status::InvalidArgument("is not a metric name", "denominator");
    if (def.numerator == def.name) return Status::InvalidArgument("must not be the metric itself", "numerator");
    if (def.denominator == def.name) return Status::InvalidArgument("must not be the metric itself", "denominator");
    if (!def.event_types.empty()) {
      return Status::InvalidArgument("is not allowed for aggregation ratio (the operands choose events)",
                                     "event_types");
    }
    if (!def.filters.empty()) {
      return Status::InvalidArgument("is not allowed for aggregation ratio (the operands filter events)",
                                     "filters");
    }
  } else {
    if (!def.numerator.empty()) return Status::InvalidArgument("is only allowed for aggregation ratio", "numerator");
    if (!def.denominator.empty()) {
      return Status::InvalidArgument("is only allowed for aggregation ratio", "denominator");
    }
  }
  if (def.window_days && def.aggregation != Aggregation::kUniqueUsers) {
    return Status::InvalidArgument("is only allowed for aggregation unique_users", "window_days");
  }
  if (def.aggregation == Aggregation::kPeakConcurrent) {
    if (!def.concurrency) {
      return Status::InvalidArgument("is required for aggregation peak_concurrent", "concurrency");
    }
    if (!def.event_types.empty()) {
      return Status::InvalidArgument("is not allowed for aggregation peak_concurrent (concurrency names the events)",
                                     "event_types");
    }
  } else if (def.concurrency) {
    return Status::InvalidArgument("is only allowed for aggregation peak_concurrent", "concurrency");
  }
  if (!def.event_weights.empty() && def.aggregation != Aggregation::kCount &&
      def.aggregation != Aggregation::kSum) {
    return Status::InvalidArgument("is only allowed for aggregations count and sum", "event_weights");
  }

  if (allow_server_fields) {
    if (auto it = body.find("builtin"); it != body.end()) {
      if (!it->is_boolean()) return WrongType("builtin", "a boolean", *it);
      def.builtin = it->get<bool>();
    }
    if (auto it = body.find("version"); it != body.end()) {
      if (!it->is_number_integer()) return WrongType("version", "an integer", *it);
      def.version = it->get<int64_t>();
    }
    if (auto it = body.find("created_by"); it != body.end()) {
      if (!it->is_string()) return WrongType("created_by", "a string", *it);
      def.created_by = it->get<std::string>();
    }
    for (auto [field, target] : {std::pair{"created_at", &def.created_at_ms}, std::pair{"updated_at", &def.updated_at_ms}}) {
      auto it = body.find(field);
      if (it == body.end()) continue;
      if (!it->is_string()) return WrongType(field, "an RFC 3339 string", *it);
      auto parsed = common::ParseRfc3339Millis(it->get<std::string>());
      if (!parsed.ok()) return Status::InvalidArgument(parsed.status().message(), field);
      *target = *parsed;
    }
  }
  return def;
}

}  // namespace

Status ParsePropertyFilter(const json& item, const std::string& field, PropertyFilter& out) {
  return ParseFilter(item, field, out);
}

std::string_view AggregationName(Aggregation aggregation) {
  for (const auto& entry : kAggregations) {
    if (entry.aggregation == aggregation) return entry.name;
  }
  return "unknown";
}

std::optional<Aggregation> AggregationFromName(std::string_view name) {
  for (const auto& entry : kAggregations) {
    if (entry.name == name) return entry.aggregation;
  }
  return std::nullopt;
}

std::string_view FilterOpName(FilterOp op) {
  for (const auto& entry : kOps) {
    if (entry.op == op) return entry.name;
  }
  return "unknown";
}

std::optional<FilterOp> FilterOpFromName(std::string_view name) {
  for (const auto& entry : kOps) {
    if (entry.name == name) return entry.op;
  }
  return std::nullopt;
}

bool IsValidPropertyPath(std::string_view path) {
  if (path.empty() || path.size() > 256) return false;
  bool at_segment_start = true;
  for (char c : path) {
    if (at_segment_start) {
      if (!IsIdentifierStart(c)) return false;
      at_segment_start = false;
    } else if (c == '.') {
      at_segment_start = true;
    } else if (!IsIdentifierChar(c)) {
      return false;
    }
  }
  return !at_segment_start;
}

bool IsValidEventType(std::string_view type) {
  // Dot-separated segments of [a-z0-9_], at least three segments, starting with a letter.
  if (type.empty() || type.size() > 256 || !(type[0] >= 'a' && type[0] <= 'z')) return false;
  int segments = 1;
  char previous = '\0';
  for (char c : type) {
    if (c == '.') {
      if (previous == '.' || previous == '\0') return false;
      ++segments;
    } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
    previous = c;
  }
  return previous != '.' && segments >= 3;
}

Result<MetricDefinition> ParseMetricDefinition(const json& body) { return ParseBody(body, false); }

json MetricDefinitionToJson(const MetricDefinition& def) {
  json out = json::object();
  out["name"] = def.name;
  out["title"] = def.title;
  out["description"] = def.description;
  out["event_types"] = def.event_types;
  if (!def.event_weights.empty()) out["event_weights"] = def.event_weights;
  out["aggregation"] = AggregationName(def.aggregation);
  if (!def.property.empty()) out["property"] = def.property;
  if (def.percentile) out["percentile"] = *def.percentile;
  if (!def.numerator.empty()) out["numerator"] = def.numerator;
  if (!def.denominator.empty()) out["denominator"] = def.denominator;
  if (def.window_days) out["window_days"] = *def.window_days;
  if (def.concurrency) {
    out["concurrency"] = {{"start_event_type", def.concurrency->start_event_type},
                          {"end_event_type", def.concurrency->end_event_type},
                          {"key_property", def.concurrency->key_property},
                          {"max_session_seconds", def.concurrency->max_session_seconds}};
  }
  json filters = json::array();
  for (const auto& filter : def.filters) {
    json item = {{"property", filter.property}, {"op", FilterOpName(filter.op)}};
    if (!filter.value.is_null()) item["value"] = filter.value;
    filters.push_back(std::move(item));
  }
  out["filters"] = std::move(filters);
  out["dimensions"] = def.dimensions;
  out["unit"] = def.unit;
  out["tags"] = def.tags;
  out["owner_service"] = def.owner_service;
  out["is_realtime"] = def.is_realtime;
  out["builtin"] = def.builtin;
  out["version"] = def.version;
  out["created_at"] = common::FormatRfc3339Millis(def.created_at_ms);
  out["updated_at"] = common::FormatRfc3339Millis(def.updated_at_ms);
  if (!def.created_by.empty()) out["created_by"] = def.created_by;
  return out;
}

Result<MetricDefinition> MetricDefinitionFromStored(const json& stored) {
  auto parsed = ParseBody(stored, true);
  if (!parsed.ok()) {
    std::string name = "?";
    if (stored.is_object() && stored.contains("name") && stored["name"].is_string()) name = stored["name"];
    return Status::Corruption("stored metric definition '" + name + "' is invalid: " + parsed.status().ToString());
  }
  return parsed;
}

}  // namespace analytics::query
