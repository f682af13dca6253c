// ReportDefinition: parsing and normalizing the document, binding parameters (relative dates included), resolving
// a section's placeholders and common parameters, and the built-in definitions.
#include "reports/definition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>
#include <string_view>

#include <absl/time/civil_time.h>

#include "analysis/request.h"
#include "common/utf8.h"
#include "reports/sections.h"

namespace analytics::reports {

namespace {

using analysis::Index;
using analysis::Member;
using common::Result;
using common::Status;
using json = nlohmann::json;

constexpr size_t kMaxNameLength = 128;
constexpr size_t kMaxTitleLength = 256;
constexpr size_t kMaxDescriptionLength = 4096;
constexpr size_t kMaxParameters = 32;
constexpr size_t kMaxParameterNameLength = 64;
constexpr size_t kMaxParameterDescriptionLength = 1024;
constexpr size_t kMaxSections = 20;
constexpr size_t kMaxStringLength = 1024;    // string parameters and string_list items
constexpr size_t kMaxStringListItems = 1000;
constexpr size_t kMaxSegmentIdLength = 256;
constexpr size_t kMaxEnumValues = 100;
constexpr size_t kMaxEnumValueLength = 256;
constexpr size_t kMaxRecipients = 100;
constexpr size_t kMaxRecipientLength = 320;
constexpr int64_t kMaxRelativeDays = 3650;

// Parameters the sections get without naming them (definition.h "Common parameters"), with the type they must have.
struct CommonParameter {
  std::string_view name;
  ParameterType type;
};
constexpr CommonParameter kCommonParameters[] = {{"period_start", ParameterType::kDate},
                                                 {"period_end", ParameterType::kDate},
                                                 {"timezone", ParameterType::kTimezone},
                                                 {"segment", ParameterType::kSegment},
                                                 {"game_ids", ParameterType::kStringList}};
// The members the period, time zone and segment common parameters fill (game_ids adds a filter instead).
constexpr std::string_view kCommonMembers[] = {"period_start", "period_end", "timezone", "segment"};

constexpr std::pair<ParameterType, std::string_view> kTypeNames[] = {
    {ParameterType::kDate, "date"},       {ParameterType::kTimezone, "timezone"},
    {ParameterType::kString, "string"},   {ParameterType::kStringList, "string_list"},
    {ParameterType::kInteger, "integer"}, {ParameterType::kNumber, "number"},
    {ParameterType::kBoolean, "boolean"}, {ParameterType::kEnum, "enum"},
    {ParameterType::kSegment, "segment"}};

std::string_view TypeName(ParameterType type) {
  for (const auto& [value, name] : kTypeNames) {
    if (value == type) return name;
  }
  return "string";
}

bool IsParameterName(std::string_view name) {
  if (name.empty() || name.size() > kMaxParameterNameLength || name.front() < 'a' || name.front() > 'z') return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

bool IsDefinitionName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
  });
}

const json* Find(const json& object, std::string_view name) {
  auto it = object.find(std::string(name));
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// An optional text member of at most `max` characters ("" when absent).
Result<std::string> Text(const json& object, std::string_view name, const std::string& path, size_t max) {
  ANALYTICS_ASSIGN_OR_RETURN(auto text, analysis::OptionalString(object, name, path));
  if (text && common::CodePoints(*text) > max) {
    return Status::InvalidArgument("must have at most " + std::to_string(max) + " characters", Member(path, name));
  }
  return text.value_or("");
}

// ---- Placeholders -------------------------------------------------------------------------------------------

// The parameter names of the "${name}" placeholders in `text`, in order; InvalidArgument naming `path` for a "${"
// that does not start a well-formed placeholder.
Result<std::vector<std::string>> PlaceholdersIn(std::string_view text, const std::string& path) {
  std::vector<std::string> names;
  for (size_t at = text.find("${"); at != std::string_view::npos; at = text.find("${", at)) {
    const size_t close = text.find('}', at + 2);
    const std::string_view name = close == std::string_view::npos ? std::string_view() : text.substr(at + 2, close - at - 2);
    if (!IsParameterName(name)) {
      return Status::InvalidArgument("has a malformed placeholder: \"${\" must start \"${<parameter name>}\"", path);
    }
    names.emplace_back(name);
    at = close + 1;
  }
  return names;
}

// Calls `visit(name, path)` for every placeholder of every string value inside `value` (not member names).
Status ForEachPlaceholder(const json& value, const std::string& path,
                          const std::function<Status(const std::string&, const std::string&)>& visit) {
  if (value.is_string()) {
    ANALYTICS_ASSIGN_OR_RETURN(auto names, PlaceholdersIn(value.get_ref<const std::string&>(), path));
    for (const auto& name : names) ANALYTICS_RETURN_IF_ERROR(visit(name, path));
  } else if (value.is_array()) {
    for (size_t item_idx = 0; item_idx < value.size(); ++item_idx) {
      ANALYTICS_RETURN_IF_ERROR(ForEachPlaceholder(value[item_idx], Index(path, item_idx), visit));
    }
  } else if (value.is_object()) {
    for (const auto& [name, member] : value.items()) {
      ANALYTICS_RETURN_IF_ERROR(ForEachPlaceholder(member, Member(path, name), visit));
    }
  }
  return Status::Ok();
}

// A bound value as text inside a longer string: strings as they are, null as "", lists joined with ", ".
std::string AsText(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    std::string text;
    for (const json& item : value) text += (text.empty() ? "" : ", ") + AsText(item);
    return text;
  }
  return value.dump();
}

json Substitute(const json& value, const json& bound) {
  if (value.is_array()) {
    json out = json::array();
    for (const json& item : value) out.push_back(Substitute(item, bound));
    return out;
  }
  if (value.is_object()) {
    json out = json::object();
    for (const auto& [name, member] : value.items()) out[name] = Substitute(member, bound);
    return out;
  }
  if (!value.is_string()) return value;
  const std::string& text = value.get_ref<const std::string&>();
  auto lookup = [&](const std::string& name) {
    auto it = bound.find(name);
    return it == bound.end() ? json() : *it;
  };
  // A whole-value placeholder keeps the bound value's JSON type.
  if (text.size() > 3 && text.starts_with("${") && text.back() == '}' && text.find("${", 2) == std::string::npos &&
      IsParameterName(std::string_view(text).substr(2, text.size() - 3))) {
    return lookup(text.substr(2, text.size() - 3));
  }
  std::string out;
  size_t from = 0;
  for (size_t at = text.find("${"); at != std::string::npos; at = text.find("${", from)) {
    const size_t close = text.find('}', at + 2);
    if (close == std::string::npos) break;
    out.append(text, from, at - from);
    out += AsText(lookup(text.substr(at + 2, close - at - 2)));
    from = close + 1;
  }
  out.append(text, from, std::string::npos);
  return out;
}

// ---- Values of parameters -----------------------------------------------------------------------------------

absl::CivilDay StartOfMonth(absl::CivilDay day) { return absl::CivilDay(absl::CivilMonth(day)); }

// A date parameter's value: "YYYY-MM-DD" or one of the relative forms of definition.h, relative to `today`.
Result<absl::CivilDay> ParseDate(const std::string& text, absl::CivilDay today, const std::string& field) {
  if (text == "today") return today;
  if (text == "yesterday") return today - 1;
  if (text == "start_of_week") {
    // absl::Weekday counts Monday as 0.
    return today - static_cast<int>(absl::GetWeekday(today));
  }
  if (text == "start_of_month") return StartOfMonth(today);
  if (text == "start_of_last_month") return absl::CivilDay(absl::CivilMonth(today) - 1);
  if (text == "end_of_last_month") return StartOfMonth(today) - 1;
  if (text.starts_with("today") && text.size() > 7 && (text[5] == '-' || text[5] == '+') && text.back() == 'd') {
    const std::string_view number = std::string_view(text).substr(6, text.size() - 7);
    int64_t days = -1;
    if (number.size() <= 4 && std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      std::from_chars(number.data(), number.data() + number.size(), days);
    }
    if (days < 0 || days > kMaxRelativeDays) {
      return Status::InvalidArgument(
          "must be today-<N>d or today+<N>d with N from 0 to " + std::to_string(kMaxRelativeDays), field);
    }
    return text[5] == '-' ? today - days : today + days;
  }
  const auto digits = [&](size_t from, size_t count) {
    return std::all_of(text.begin() + static_cast<ptrdiff_t>(from), text.begin() + static_cast<ptrdiff_t>(from + count),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  if (text.size() == 10 && text[4] == '-' && text[7] == '-' && digits(0, 4) && digits(5, 2) && digits(8, 2)) {
    const int64_t year = std::stoi(text.substr(0, 4));
    const int month = std::stoi(text.substr(5, 2));
    const int day = std::stoi(text.substr(8, 2));
    const absl::CivilDay date(year, month, day);
    if (year >= 1 && date.year() == year && date.month() == month && date.day() == day) return date;
  }
  return Status::InvalidArgument(
      "must be a date YYYY-MM-DD or one of today, yesterday, today-<N>d, today+<N>d, start_of_week, "
      "start_of_month, start_of_last_month, end_of_last_month",
      field);
}

std::string FormatDate(absl::CivilDay day) { return absl::FormatCivilTime(day); }

// Checks `value` (not null) for `spec` and returns it as bound: relative dates become absolute dates of `today`.
Result<json> BindValue(const ParameterSpec& spec, const json& value, absl::CivilDay today, const std::string& field) {
  switch (spec.type) {
    case ParameterType::kDate: {
      if (!value.is_string()) return Status::InvalidArgument("must be a date (a string YYYY-MM-DD)", field);
      ANALYTICS_ASSIGN_OR_RETURN(absl::CivilDay day, ParseDate(value.get<std::string>(), today, field));
      return json(FormatDate(day));
    }
    case ParameterType::kTimezone: {
      if (!value.is_string()) return Status::InvalidArgument("must be an IANA time zone name (a string)", field);
      auto zone = query::TimeZone::Load(value.get<std::string>());
      if (!zone.ok()) return Status::InvalidArgument(zone.status().message(), field);
      return value;
    }
    case ParameterType::kString:
      if (!value.is_string() || common::CodePoints(value.get_ref<const std::string&>()) > kMaxStringLength) {
        return Status::InvalidArgument("must be a string of at most " + std::to_string(kMaxStringLength) + " characters",
                                       field);
      }
      return value;
    case ParameterType::kStringList: {
      if (!value.is_array() || value.size() > kMaxStringListItems) {
        return Status::InvalidArgument("must be an array of at most " + std::to_string(kMaxStringListItems) + " strings",
                                       field);
      }
      for (size_t item_idx = 0; item_idx < value.size(); ++item_idx) {
        const json& item = value[item_idx];
        if (!item.is_string() || common::CodePoints(item.get_ref<const std::string&>()) > kMaxStringLength) {
          return Status::InvalidArgument(
              "must be a string of at most " + std::to_string(kMaxStringLength) + " characters", Index(field, item_idx));
        }
      }
      return value;
    }
    case ParameterType::kInteger:
    case ParameterType::kNumber: {
      const bool integer = spec.type == ParameterType::kInteger;
      if (integer ? !value.is_number_integer() || (value.is_number_unsigned() && value.get<uint64_t>() > INT64_MAX)
                  : !value.is_number() || !std::isfinite(value.get<double>())) {
        return Status::InvalidArgument(integer ? "must be an integer" : "must be a number", field);
      }
      const double number = value.get<double>();
      auto text = [&](double bound) {
        return integer ? std::to_string(static_cast<int64_t>(bound)) : json(bound).dump();
      };
      if (spec.min && number < *spec.min) return Status::InvalidArgument("must be at least " + text(*spec.min), field);
      if (spec.max && number > *spec.max) return Status::InvalidArgument("must be at most " + text(*spec.max), field);
      return value;
    }
    case ParameterType::kBoolean:
      if (!value.is_boolean()) return Status::InvalidArgument("must be true or false", field);
      return value;
    case ParameterType::kEnum: {
      if (!value.is_string() ||
          std::find(spec.values.begin(), spec.values.end(), value.get_ref<const std::string&>()) == spec.values.end()) {
        std::string list;
        for (const auto& item : spec.values) list += (list.empty() ? "" : ", ") + item;
        return Status::InvalidArgument("must be one of " + list, field);
      }
      return value;
    }
    case ParameterType::kSegment:
      if (!value.is_string() || value.get_ref<const std::string&>().empty() ||
          value.get_ref<const std::string&>().size() > kMaxSegmentIdLength) {
        return Status::InvalidArgument("must be a segment id (a non-empty string)", field);
      }
      return value;
  }
  return Status::Internal("unknown parameter type");
}

// BindParameters; `field_prefix` names where `given` is ("parameters", "schedule.parameters"); `check_order` checks
// period_end >= period_start (not for a schedule, whose relative dates are ordered or not depending on the day).
Result<json> Bind(const ReportDefinition& definition, const json& given, int64_t now_ms, const std::string& field_prefix,
                  bool check_order) {
  if (!given.is_object()) return Status::InvalidArgument("must be a JSON object of parameter values", field_prefix);
  auto spec_of = [&](std::string_view name) -> const ParameterSpec* {
    for (const auto& spec : definition.parameters) {
      if (spec.name == name) return &spec;
    }
    return nullptr;
  };
  for (const auto& [name, value] : given.items()) {
    if (spec_of(name) == nullptr) {
      return Status::InvalidArgument("is not a parameter of report '" + definition.name + "'",
                                     Member(field_prefix, name));
    }
  }
  json bound = json::object();
  auto bind = [&](const ParameterSpec& spec, absl::CivilDay today) -> Status {
    const std::string field = Member(field_prefix, spec.name);
    const json* value = Find(given, spec.name);
    if (value == nullptr) {
      if (spec.required) return Status::InvalidArgument("is required", field);
      if (spec.default_value.is_null()) {
        bound[spec.name] = nullptr;
        return Status::Ok();
      }
      value = &spec.default_value;
    }
    ANALYTICS_ASSIGN_OR_RETURN(bound[spec.name], BindValue(spec, *value, today, field));
    return Status::Ok();
  };
  // The time zone first: relative dates are days of the report's zone.
  query::TimeZone zone = query::TimeZone::Utc();
  if (const ParameterSpec* timezone = spec_of("timezone"); timezone != nullptr && timezone->type == ParameterType::kTimezone) {
    ANALYTICS_RETURN_IF_ERROR(bind(*timezone, absl::CivilDay()));
    if (bound["timezone"].is_string()) {
      ANALYTICS_ASSIGN_OR_RETURN(zone, query::TimeZone::Load(bound["timezone"].get<std::string>()));
    }
  }
  const absl::CivilDay today = absl::ToCivilDay(absl::FromUnixMillis(now_ms), zone.zone());
  for (const auto& spec : definition.parameters) {
    if (bound.contains(spec.name)) continue;
    ANALYTICS_RETURN_IF_ERROR(bind(spec, today));
  }
  if (check_order && spec_of("period_start") != nullptr && spec_of("period_end") != nullptr &&
      bound["period_start"].is_string() && bound["period_end"].is_string() &&
      bound["period_end"].get<std::string>() < bound["period_start"].get<std::string>()) {
    return Status::InvalidArgument("must not be before period_start (" + bound["period_start"].get<std::string>() + ")",
                                   Member(field_prefix, "period_end"));
  }
  return bound;
}

// ---- Parsing ------------------------------------------------------------------------------------------------

Result<ParameterSpec> ParseParameter(const json& item, const std::string& path) {
  ANALYTICS_RETURN_IF_ERROR(
      analysis::CheckFields(item, {"name", "type", "required", "default", "description", "min", "max", "values"}, path));
  ParameterSpec spec;
  ANALYTICS_ASSIGN_OR_RETURN(spec.name, analysis::RequiredString(item, "name", path));
  if (!IsParameterName(spec.name)) {
    return Status::InvalidArgument("must match ^[a-z][a-z0-9_]{0,63}$", Member(path, "name"));
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::string type, analysis::RequiredString(item, "type", path));
  bool known = false;
  for (const auto& [value, name] : kTypeNames) {
    if (name == type) {
      spec.type = value;
      known = true;
    }
  }
  if (!known) {
    return Status::InvalidArgument(
        "must be one of date, timezone, string, string_list, integer, number, boolean, enum, segment",
        Member(path, "type"));
  }
  for (const auto& common : kCommonParameters) {
    if (spec.name == common.name && spec.type != common.type) {
      return Status::InvalidArgument("must be " + std::string(TypeName(common.type)) + ": " + spec.name +
                                         " is a common parameter the sections receive",
                                     Member(path, "type"));
    }
  }
  ANALYTICS_ASSIGN_OR_RETURN(spec.required, analysis::Boolean(item, "required", path, false));
  ANALYTICS_ASSIGN_OR_RETURN(spec.description, Text(item, "description", path, kMaxParameterDescriptionLength));
  const bool numeric = spec.type == ParameterType::kInteger || spec.type == ParameterType::kNumber;
  for (const char* bound_name : {"min", "max"}) {
    const json* bound = Find(item, bound_name);
    if (bound == nullptr) continue;
    const std::string where = Member(path, bound_name);
    if (!numeric) return Status::InvalidArgument("is only for integer and number parameters", where);
    if (spec.type == ParameterType::kInteger
            ? !bound->is_number_integer() || (bound->is_number_unsigned() && bound->get<uint64_t>() > INT64_MAX)
            : !bound->is_number() || !std::isfinite(bound->get<double>())) {
      return Status::InvalidArgument(spec.type == ParameterType::kInteger ? "must be an integer" : "must be a number",
                                     where);
    }
    (std::string_view(bound_name) == "min" ? spec.min : spec.max) = bound->get<double>();
  }
  if (spec.min && spec.max && *spec.min > *spec.max) {
    return Status::InvalidArgument("must not be less than min", Member(path, "max"));
  }
  const json* values = Find(item, "values");
  if (spec.type == ParameterType::kEnum) {
    const std::string where = Member(path, "values");
    if (values == nullptr) return Status::InvalidArgument("is required for an enum parameter", where);
    if (!values->is_array() || values->empty() || values->size() > kMaxEnumValues) {
      return Status::InvalidArgument("must be an array of 1 to " + std::to_string(kMaxEnumValues) + " strings", where);
    }
    for (size_t value_idx = 0; value_idx < values->size(); ++value_idx) {
      const json& value = (*values)[value_idx];
      if (!value.is_string() || value.get_ref<const std::string&>().empty() ||
          common::CodePoints(value.get_ref<const std::string&>()) > kMaxEnumValueLength) {
        return Status::InvalidArgument("must be a string of 1 to " + std::to_string(kMaxEnumValueLength) + " characters",
                                       Index(where, value_idx));
      }
      if (std::find(spec.values.begin(), spec.values.end(), value.get<std::string>()) != spec.values.end()) {
        return Status::InvalidArgument("is listed twice", Index(where, value_idx));
      }
      spec.values.push_back(value.get<std::string>());
    }
  } else if (values != nullptr) {
    return Status::InvalidArgument("is only for enum parameters", Member(path, "values"));
  }
  if (const json* value = Find(item, "default")) {
    const std::string where = Member(path, "default");
    if (spec.required) return Status::InvalidArgument("a required parameter has no default", where);
    // Any day will do: a relative date is valid whatever the day.
    ANALYTICS_RETURN_IF_ERROR(BindValue(spec, *value, absl::CivilDay(2000, 1, 1), where).status());
    spec.default_value = *value;
  }
  return spec;
}

Result<ScheduleSpec> ParseSchedule(const json& item, const ReportDefinition& definition) {
  const std::string path = "schedule";
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(
      item, {"cron", "timezone", "output_format", "parameters", "recipients", "enabled"}, path));
  ScheduleSpec schedule;
  ANALYTICS_ASSIGN_OR_RETURN(std::string cron, analysis::RequiredString(item, "cron", path));
  auto parsed = jobs::CronSchedule::Parse(cron);
  if (!parsed.ok()) return Status::InvalidArgument(parsed.status().message(), "schedule.cron");
  schedule.cron = std::move(parsed).value();
  ANALYTICS_ASSIGN_OR_RETURN(auto timezone, analysis::OptionalString(item, "timezone", path));
  if (timezone) {
    auto zone = query::TimeZone::Load(*timezone);
    if (!zone.ok()) return Status::InvalidArgument(zone.status().message(), "schedule.timezone");
    schedule.zone = std::move(zone).value();
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto format, analysis::OptionalString(item, "output_format", path));
  if (format) {
    auto parsed_format = ParseOutputFormat(*format);
    if (!parsed_format.ok()) return Status::InvalidArgument(parsed_format.status().message(), "schedule.output_format");
    schedule.output_format = *parsed_format;
  }
  if (const json* parameters = Find(item, "parameters")) {
    // Checked as a request's would be on any day (the dates' order depends on the day: not checked).
    ANALYTICS_RETURN_IF_ERROR(Bind(definition, *parameters, 0, "schedule.parameters", false).status());
    schedule.parameters = *parameters;
  } else {
    ANALYTICS_RETURN_IF_ERROR(Bind(definition, json::object(), 0, "schedule.parameters", false).status());
  }
  if (const json* recipients = Find(item, "recipients")) {
    const std::string where = "schedule.recipients";
    if (!recipients->is_array() || recipients->size() > kMaxRecipients) {
      return Status::InvalidArgument("must be an array of at most " + std::to_string(kMaxRecipients) + " strings", where);
    }
    for (size_t recipient_idx = 0; recipient_idx < recipients->size(); ++recipient_idx) {
      const json& recipient = (*recipients)[recipient_idx];
      if (!recipient.is_string() || recipient.get_ref<const std::string&>().empty() ||
          common::CodePoints(recipient.get_ref<const std::string&>()) > kMaxRecipientLength) {
        return Status::InvalidArgument("must be a string of 1 to " + std::to_string(kMaxRecipientLength) + " characters",
                                       Index(where, recipient_idx));
      }
      schedule.recipients.push_back(recipient.get<std::string>());
    }
  }
  ANALYTICS_ASSIGN_OR_RETURN(schedule.enabled, analysis::Boolean(item, "enabled", path, true));
  return schedule;
}

json ParameterToDocument(const ParameterSpec& spec) {
  json doc = {{"name", spec.name},
              {"type", TypeName(spec.type)},
              {"required", spec.required},
              {"default", spec.default_value},
              {"description", spec.description}};
  auto number = [&](double value) {
    return spec.type == ParameterType::kInteger ? json(static_cast<int64_t>(value)) : json(value);
  };
  if (spec.min) doc["min"] = number(*spec.min);
  if (spec.max) doc["max"] = number(*spec.max);
  if (spec.type == ParameterType::kEnum) doc["values"] = spec.values;
  return doc;
}

// The sections' target object of the common parameters: the section itself (metrics) or its request (analysis
// types); nullptr for a type without them.
json* CommonTarget(json& section) {
  const std::string type = section.value("type", std::string());
  if (type == "metrics") return &section;
  if (type == "funnel" || type == "retention" || type == "experiment") {
    auto it = section.find("request");
    if (it != section.end() && it->is_object()) return &*it;
  }
  return nullptr;
}

}  // namespace

Result<ReportDefinition> ParseReportDefinition(const json& body) {
  if (!body.is_object()) return Status::InvalidArgument("must be a JSON object", "body");
  ANALYTICS_RETURN_IF_ERROR(
      analysis::CheckFields(body, {"name", "title", "description", "parameters", "sections", "schedule"}, ""));
  ReportDefinition definition;
  ANALYTICS_ASSIGN_OR_RETURN(definition.name, analysis::RequiredString(body, "name", ""));
  if (!IsDefinitionName(definition.name)) {
    return Status::InvalidArgument("must be 1 to 128 characters of a-z, 0-9, '_', '.', '-'", "name");
  }
  ANALYTICS_ASSIGN_OR_RETURN(definition.title, Text(body, "title", "", kMaxTitleLength));
  ANALYTICS_ASSIGN_OR_RETURN(definition.description, Text(body, "description", "", kMaxDescriptionLength));

  if (const json* parameters = Find(body, "parameters")) {
    if (!parameters->is_array() || parameters->size() > kMaxParameters) {
      return Status::InvalidArgument("must be an array of at most " + std::to_string(kMaxParameters) + " parameters",
                                     "parameters");
    }
    for (size_t parameter_idx = 0; parameter_idx < parameters->size(); ++parameter_idx) {
      const std::string path = Index("parameters", parameter_idx);
      ANALYTICS_ASSIGN_OR_RETURN(ParameterSpec spec, ParseParameter((*parameters)[parameter_idx], path));
      for (const auto& other : definition.parameters) {
        if (other.name == spec.name) {
          return Status::InvalidArgument("'" + spec.name + "' is declared twice", Member(path, "name"));
        }
      }
      definition.parameters.push_back(std::move(spec));
    }
  }

  const json* sections = Find(body, "sections");
  if (sections == nullptr) return Status::InvalidArgument("is required (1 to 20 sections)", "sections");
  if (!sections->is_array() || sections->empty() || sections->size() > kMaxSections) {
    return Status::InvalidArgument("must be an array of 1 to " + std::to_string(kMaxSections) + " sections", "sections");
  }
  std::set<std::string> declared;
  for (const auto& spec : definition.parameters) declared.insert(spec.name);
  for (size_t section_idx = 0; section_idx < sections->size(); ++section_idx) {
    const std::string path = Index("sections", section_idx);
    const json& item = (*sections)[section_idx];
    ANALYTICS_RETURN_IF_ERROR(CheckSection(item, path));
    ANALYTICS_RETURN_IF_ERROR(ForEachPlaceholder(item, path, [&](const std::string& name, const std::string& where) {
      if (declared.contains(name)) return Status::Ok();
      return Status::InvalidArgument("names '" + name + "', which is not a declared parameter", where);
    }));
    SectionSpec section;
    section.name = item.at("name").get<std::string>();
    section.type = item.at("type").get<std::string>();
    if (const json* title = Find(item, "title")) section.title = title->get<std::string>();
    section.spec = item;
    for (const auto& other : definition.sections) {
      if (other.name == section.name) {
        return Status::InvalidArgument("'" + section.name + "' is the name of another section", Member(path, "name"));
      }
    }
    definition.sections.push_back(std::move(section));
  }

  if (const json* schedule = Find(body, "schedule")) {
    ANALYTICS_ASSIGN_OR_RETURN(definition.schedule, ParseSchedule(*schedule, definition));
  }
  return definition;
}

json ToDocument(const ReportDefinition& definition) {
  json parameters = json::array();
  for (const auto& spec : definition.parameters) parameters.push_back(ParameterToDocument(spec));
  json sections = json::array();
  for (const auto& section : definition.sections) sections.push_back(section.spec);
  json doc = {{"name", definition.name},
              {"title", definition.title},
              {"description", definition.description},
              {"parameters", std::move(parameters)},
              {"sections", std::move(sections)},
              {"schedule", nullptr}};
  if (definition.schedule) {
    const ScheduleSpec& schedule = *definition.schedule;
    doc["schedule"] = {{"cron", schedule.cron.text()},
                       {"timezone", schedule.zone.name()},
                       {"output_format", OutputFormatName(schedule.output_format)},
                       {"parameters", schedule.parameters},
                       {"recipients", schedule.recipients},
                       {"enabled", schedule.enabled}};
  }
  return doc;
}

Result<json> BindParameters(const ReportDefinition& definition, const json& given, int64_t now_ms) {
  return Bind(definition, given, now_ms, "parameters", true);
}

json ResolveSection(const ReportDefinition& definition, const SectionSpec& section, const json& bound) {
  json resolved = Substitute(section.spec, bound);
  json* target = CommonTarget(resolved);
  if (target == nullptr) return resolved;
  auto declared = [&](std::string_view name) {
    return std::any_of(definition.parameters.begin(), definition.parameters.end(),
                       [&](const ParameterSpec& spec) { return spec.name == name; });
  };
  for (std::string_view name : kCommonMembers) {
    const std::string key(name);
    if (!declared(name) || target->contains(key)) continue;
    auto value = bound.find(key);
    if (value != bound.end() && !value->is_null()) (*target)[key] = *value;
  }
  auto games = bound.find("game_ids");
  if (declared("game_ids") && games != bound.end() && games->is_array() && !games->empty()) {
    const json condition = {{"property", "game_id"}, {"op", "in"}, {"value", *games}};
    auto filters = target->find("filters");
    if (filters == target->end() || filters->is_null()) {
      (*target)["filters"] = condition;
    } else if (filters->is_array()) {
      filters->push_back(condition);
    } else {
      *filters = json::array({*filters, condition});
    }
  }
  return resolved;
}

std::vector<json> BuiltinDefinitions() {
  const json period_start = {{"name", "period_start"},
                             {"type", "date"},
                             {"required", true},
                             {"description", "First day of the period (a date or e.g. today-7d)"}};
  const json period_end = {{"name", "period_end"},
                           {"type", "date"},
                           {"required", true},
                           {"description", "Last day of the period, included (a date or e.g. yesterday)"}};
  const json timezone = {{"name", "timezone"},
                         {"type", "timezone"},
                         {"default", "UTC"},
                         {"description", "Time zone of the days (IANA name)"}};
  const json game_ids = {{"name", "game_ids"},
                         {"type", "string_list"},
                         {"default", json::array()},
                         {"description", "Only events of these games (empty: all games)"}};
  const json segment = {{"name", "segment"},
                        {"type", "segment"},
                        {"description", "Only the events of this segment's current members"}};
  const std::string purchase = "com.platform.payments.purchase.completed.v1";
  std::vector<json> definitions;

  definitions.push_back(
      {{"name", "daily_kpi_summary"},
       {"title", "Daily KPI summary"},
       {"description",
        "The platform's key numbers per day: active and new users, sessions, net revenue (RUB), purchases, paying "
        "users, ARPU and payer conversion (docs/metrics.md, built-in KPIs). With game_ids, only events of those "
        "games count (registrations and logins carry no game, so new_users is 0 then)."},
       {"parameters", json::array({period_start, period_end, timezone, game_ids, segment})},
       {"sections", json::array({{{"name", "kpis"},
                                  {"title", "KPIs per day"},
                                  {"type", "metrics"},
                                  {"metrics", json::array({"dau", "new_users", "sessions", "revenue_rub",
                                                           "purchases_count", "paying_users", "arpu",
                                                           "payer_conversion"})},
                                  {"granularity", "day"}}})}});

  definitions.push_back(
      {{"name", "game_sales_by_country"},
       {"title", "Game sales by country"},
       {"description",
        "Net revenue (RUB), purchases (any currency) and paying users per game and buyer country, per day, week or "
        "month."},
       {"parameters",
        json::array({period_start, period_end, timezone, game_ids,
                     {{"name", "granularity"},
                      {"type", "enum"},
                      {"values", json::array({"day", "week", "month"})},
                      {"default", "day"},
                      {"description", "Bucket of the rows"}},
                     segment})},
       {"sections", json::array({{{"name", "sales"},
                                  {"title", "Sales per ${granularity}, game and country"},
                                  {"type", "metrics"},
                                  {"metrics", json::array({"revenue_rub", "purchases_count", "paying_users"})},
                                  {"granularity", "${granularity}"},
                                  {"dimensions", json::array({"game_id", "country"})}}})}});

  definitions.push_back(
      {{"name", "weekly_retention"},
       {"title", "Weekly retention of new users"},
       {"description",
        "Users by the week they registered; how many came back (logged in, viewed the store or started a game) on "
        "day 1, 7, 14 and 30 after their registration day (docs/analysis.md, retention)."},
       {"parameters", json::array({period_start, period_end, timezone,
                                   {{"name", "mode"},
                                    {"type", "enum"},
                                    {"values", json::array({"on_day", "on_or_after"})},
                                    {"default", "on_day"},
                                    {"description", "Back exactly on day N, or on day N or later"}},
                                   segment})},
       {"sections",
        json::array({{{"name", "retention"},
                      {"title", "Retention by registration week"},
                      {"type", "retention"},
                      {"request",
                       {{"start_event", {{"event_type", "com.platform.account.user.registered.v1"}}},
                        {"return_event", json::array({{{"event_type", "com.platform.account.user.logged_in.v1"}},
                                                      {{"event_type", "com.platform.store.page.viewed.v1"}},
                                                      {{"event_type", "com.platform.library.session.started.v1"}}})},
                        {"cohort_granularity", "week"},
                        {"cohort_type", "first_time"},
                        {"periods", json::array({1, 7, 14, 30})},
                        {"mode", "${mode}"}}}}})}});

  definitions.push_back(
      {{"name", "experiment_readout"},
       {"title", "Experiment readout"},
       {"description",
        "An A/B test's variants against the control: conversion to the chosen event after exposure and net purchase "
        "amount (RUB) per exposed user, with intervals, uplift, p-values and the sample-ratio check "
        "(docs/analysis.md, experiments)."},
       {"parameters",
        json::array({{{"name", "experiment_key"},
                      {"type", "string"},
                      {"required", true},
                      {"description", "The experiment key of the exposure events (e.g. checkout_v2)"}},
                     {{"name", "control"},
                      {"type", "string"},
                      {"default", "A"},
                      {"description", "The control variant"}},
                     {{"name", "conversion_event"},
                      {"type", "string"},
                      {"default", purchase},
                      {"description", "The event type a user converts with"}},
                     {{"name", "conversion_window_seconds"},
                      {"type", "integer"},
                      {"min", 1},
                      {"max", 31536000},
                      {"description", "At most this long after the exposure (none: until the period's end)"}},
                     period_start, period_end, timezone, segment})},
       {"sections",
        json::array({{{"name", "readout"},
                      {"title", "${experiment_key}: variants against ${control}"},
                      {"type", "experiment"},
                      {"request",
                       {{"experiment", "${experiment_key}"},
                        {"control", "${control}"},
                        {"goals", json::array({{{"kind", "conversion"},
                                                {"event_type", "${conversion_event}"},
                                                {"window_seconds", "${conversion_window_seconds}"}},
                                               {{"kind", "mean"},
                                                {"event_type", purchase},
                                                {"property", "amount"},
                                                {"filters", {{"property", "currency"}, {"op", "eq"}, {"value", "RUB"}}},
                                                {"window_seconds", "${conversion_window_seconds}"}}})}}}}})}});
  return definitions;
}

}  // namespace analytics::reports
