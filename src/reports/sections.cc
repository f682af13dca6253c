// Report sections: checking a section of a definition, and running a resolved one through the API's own functions
// (metrics::MetricValues::Compute, analysis::RunFunnels, RunRetention, RunExperiments, the segment service's users
// count), turning each answer into a table.
#include "reports/sections.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "analysis/experiments.h"
#include "analysis/funnels.h"
#include "analysis/retention.h"
#include "common/utf8.h"
#include "query/filter_expr.h"
#include "query/metric_definition.h"
#include "query/time_grid.h"

namespace analytics::reports {

namespace {

using analysis::Index;
using analysis::Member;
using common::Result;
using common::Status;
using common::StatusCode;
using json = nlohmann::json;

constexpr size_t kMaxSectionNameLength = 31;
constexpr size_t kMaxSectionTitleLength = 256;
constexpr size_t kMaxMetrics = 20;
constexpr size_t kMaxDimensions = 3;
constexpr size_t kMaxSegments = 100;
constexpr double kSignificance = 0.05;

constexpr std::string_view kTypes[] = {"metrics", "funnel", "retention", "experiment", "segment_sizes"};

// ---- Checks -------------------------------------------------------------------------------------------------

// A string holding a placeholder: any value may be one; it is checked once resolved (RunSection).
bool IsPlaceholder(const json& value) {
  return value.is_string() && value.get_ref<const std::string&>().find("${") != std::string::npos;
}

// Whether `value` may stand for a value checked later: a placeholder of a section not resolved yet.
bool Open(bool templated, const json& value) { return templated && IsPlaceholder(value); }

bool HasPlaceholder(const json& value) {
  if (value.is_string()) return IsPlaceholder(value);
  if (value.is_array() || value.is_object()) {
    for (const auto& item : value) {
      if (HasPlaceholder(item)) return true;
    }
  }
  return false;
}

const json* Find(const json& object, std::string_view name) {
  auto it = object.find(std::string(name));
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

bool IsSectionName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxSectionNameLength &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

bool IsMetricName(std::string_view name) {
  return !name.empty() && name.size() <= 64 && name.front() >= 'a' && name.front() <= 'z' &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

// An optional string member (a date, a zone, a segment id); `check` validates a value without placeholders.
Status CheckText(bool templated, const json& section, std::string_view name, const std::string& path,
                 const std::function<Status(const std::string&, const std::string&)>& check = {}) {
  const json* value = Find(section, name);
  if (value == nullptr || Open(templated, *value)) return Status::Ok();
  if (!value->is_string()) return Status::InvalidArgument("must be a string", Member(path, name));
  return check ? check(value->get<std::string>(), Member(path, name)) : Status::Ok();
}

Status CheckMetricsSection(bool templated, const json& section, const std::string& path) {
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(section,
                                                  {"name", "title", "type", "metrics", "granularity", "dimensions",
                                                   "filters", "limit", "period_start", "period_end", "timezone",
                                                   "segment"},
                                                  path));
  const json* metrics = Find(section, "metrics");
  const std::string metrics_path = Member(path, "metrics");
  if (metrics == nullptr) return Status::InvalidArgument("is required (1 to 20 metric names)", metrics_path);
  if (!Open(templated, *metrics)) {
    if (!metrics->is_array() || metrics->empty() || metrics->size() > kMaxMetrics) {
      return Status::InvalidArgument("must be an array of 1 to 20 metric names", metrics_path);
    }
    std::set<std::string> seen;
    for (size_t metric_idx = 0; metric_idx < metrics->size(); ++metric_idx) {
      const json& metric = (*metrics)[metric_idx];
      const std::string where = Index(metrics_path, metric_idx);
      if (Open(templated, metric)) continue;
      if (!metric.is_string() || !IsMetricName(metric.get_ref<const std::string&>())) {
        return Status::InvalidArgument("must be a metric name (^[a-z][a-z0-9_]{0,63}$)", where);
      }
      if (!seen.insert(metric.get<std::string>()).second) return Status::InvalidArgument("is listed twice", where);
    }
  }
  ANALYTICS_RETURN_IF_ERROR(CheckText(templated, section, "granularity", path, [](const std::string& text, const std::string& where) {
    if (text == "hour" || text == "day" || text == "week" || text == "month") return Status::Ok();
    return Status::InvalidArgument("must be one of hour, day, week, month", where);
  }));
  const json* dimensions = Find(section, "dimensions");
  if (dimensions != nullptr && !Open(templated, *dimensions)) {
    const std::string where = Member(path, "dimensions");
    if (!dimensions->is_array() || dimensions->size() > kMaxDimensions) {
      return Status::InvalidArgument("must be an array of at most 3 property names", where);
    }
    std::set<std::string> seen;
    for (size_t dimension_idx = 0; dimension_idx < dimensions->size(); ++dimension_idx) {
      const json& dimension = (*dimensions)[dimension_idx];
      if (Open(templated, dimension)) continue;
      if (!dimension.is_string() || !query::IsValidPropertyPath(dimension.get_ref<const std::string&>())) {
        return Status::InvalidArgument("must be a property path (identifiers joined by dots)",
                                       Index(where, dimension_idx));
      }
      if (!seen.insert(dimension.get<std::string>()).second) {
        return Status::InvalidArgument("is listed twice", Index(where, dimension_idx));
      }
    }
  }
  // A filter expression with placeholders is checked once resolved (a "${list}" becomes an array then).
  if (const json* filters = Find(section, "filters"); filters != nullptr && !(templated && HasPlaceholder(*filters))) {
    auto parsed = query::ParseFilterExpr(*filters, Member(path, "filters"));
    if (!parsed.ok()) return Status::InvalidArgument(parsed.status().message(), parsed.status().field());
  }
  if (const json* limit = Find(section, "limit"); limit != nullptr && !Open(templated, *limit)) {
    ANALYTICS_RETURN_IF_ERROR(analysis::IntegerIn(section, "limit", path, 1, 1000, std::nullopt).status());
    if (Find(section, "dimensions") == nullptr) {
      return Status::InvalidArgument("needs dimensions to rank groups by", Member(path, "limit"));
    }
  }
  auto period = [](bool is_end) {
    return [is_end](const std::string& text, const std::string& where) {
      return query::ParsePeriodBound(text, is_end, query::TimeZone::Utc(), where.c_str()).status();
    };
  };
  ANALYTICS_RETURN_IF_ERROR(CheckText(templated, section, "period_start", path, period(false)));
  ANALYTICS_RETURN_IF_ERROR(CheckText(templated, section, "period_end", path, period(true)));
  ANALYTICS_RETURN_IF_ERROR(CheckText(templated, section, "timezone", path, [](const std::string& text, const std::string& where) {
    auto zone = query::TimeZone::Load(text);
    return zone.ok() ? Status::Ok() : Status::InvalidArgument(zone.status().message(), where);
  }));
  return CheckText(templated, section, "segment", path);
}

// The analysis types: {"request": a body of POST /analysis/<type>}. The request's own checks are the API's (run
// time); here only its top-level members are checked, so that a typo fails when the definition is saved. The lists
// are those of the API's parsers (src/analysis/*.cc).
Status CheckAnalysisSection(const json& section, const std::string& path, const std::string& type) {
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(section, {"name", "title", "type", "request"}, path));
  const std::string where = Member(path, "request");
  const json* request = Find(section, "request");
  if (request == nullptr) return Status::InvalidArgument("is required (the body of POST /analysis/" + type + "s)", where);
  if (!request->is_object()) return Status::InvalidArgument("must be a JSON object", where);
  Status fields;
  std::vector<std::string_view> required;
  if (type == "funnel") {
    fields = analysis::CheckRequestFields(
        *request, {"steps", "window_seconds", "order", "entry", "hold_constant", "exclusions", "breakdown"});
    required = {"steps"};
  } else if (type == "retention") {
    fields = analysis::CheckRequestFields(
        *request, {"start_event", "return_event", "cohort_granularity", "periods", "mode", "cohort_type"});
    required = {"start_event"};
  } else {
    fields = analysis::CheckRequestFields(*request, {"experiment", "exposure_event", "experiment_property",
                                                     "variant_property", "control", "goals", "split"});
    required = {"experiment", "control", "goals"};
  }
  ANALYTICS_RETURN_IF_ERROR(fields.WithFieldPrefix(where));
  for (std::string_view name : required) {
    if (Find(*request, name) == nullptr) return Status::InvalidArgument("is required", Member(where, name));
  }
  return Status::Ok();
}

Status CheckSegmentSizesSection(bool templated, const json& section, const std::string& path) {
  ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(section, {"name", "title", "type", "segments"}, path));
  const json* segments = Find(section, "segments");
  if (segments == nullptr || Open(templated, *segments) || *segments == "all") return Status::Ok();
  const std::string where = Member(path, "segments");
  if (!segments->is_array() || segments->empty() || segments->size() > kMaxSegments) {
    return Status::InvalidArgument("must be \"all\" or an array of 1 to 100 segment ids", where);
  }
  std::set<std::string> seen;
  for (size_t segment_idx = 0; segment_idx < segments->size(); ++segment_idx) {
    const json& segment = (*segments)[segment_idx];
    if (Open(templated, segment)) continue;
    if (!segment.is_string() || segment.get_ref<const std::string&>().empty()) {
      return Status::InvalidArgument("must be a segment id (a non-empty string)", Index(where, segment_idx));
    }
    if (!seen.insert(segment.get<std::string>()).second) {
      return Status::InvalidArgument("is listed twice", Index(where, segment_idx));
    }
  }
  return Status::Ok();
}

// ---- Tables -------------------------------------------------------------------------------------------------

// A column name from a property path: lower case, other characters than [a-z0-9_] as '_'.
std::string ColumnName(std::string_view property) {
  std::string name;
  for (char c : property) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    name.push_back((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ? c : '_');
  }
  return name.empty() ? "_" : name;
}

// Adds a column, its name made unique in the section ("country", then "country_2").
void AddColumn(SectionTable& table, std::string name, std::string title, ColumnType type) {
  auto taken = [&](const std::string& candidate) {
    return std::any_of(table.header.columns.begin(), table.header.columns.end(),
                       [&](const Column& column) { return column.name == candidate; });
  };
  std::string unique = name;
  for (int suffix = 2; taken(unique); ++suffix) unique = name + "_" + std::to_string(suffix);
  table.header.columns.push_back({std::move(unique), std::move(title), type});
}

// A JSON answer value as a cell of a column of `type`: null stays null, numbers become the column's kind.
Cell ToCell(const json& value, ColumnType type) {
  if (value.is_null()) return std::monostate();
  switch (type) {
    case ColumnType::kInteger:
      if (value.is_number_integer()) return value.get<int64_t>();
      if (value.is_number()) return static_cast<int64_t>(std::llround(value.get<double>()));
      break;
    case ColumnType::kNumber:
      if (value.is_number()) return value.get<double>();
      break;
    case ColumnType::kBoolean:
      if (value.is_boolean()) return value.get<bool>();
      break;
    case ColumnType::kString:
    case ColumnType::kDate:
    case ColumnType::kDateTime:
      if (value.is_string()) return value.get<std::string>();
      return value.dump();
  }
  return std::monostate();
}

const json& Field(const json& object, std::string_view name) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(std::string(name));
  return it == object.end() ? kNull : *it;
}

const json& Element(const json& array, size_t index) {
  static const json kNull;
  return array.is_array() && index < array.size() ? array[index] : kNull;
}

// An analysis function's error with its request path made relative to the section ("request.steps[1]").
Status InRequest(const Status& status) {
  if (status.code() != StatusCode::kInvalidArgument) return status;
  if (status.field().empty() || status.field() == "body") return Status::InvalidArgument(status.message(), "request");
  return Status::InvalidArgument(status.message(), "request." + status.field());
}

// ---- metrics ------------------------------------------------------------------------------------------------

// "2024-03-10T05:00:00+03:00" (a metric bucket label) as RFC 3339 with milliseconds.
std::string WithMillis(const std::string& label) {
  if (label.size() < 19 || (label.size() > 19 && label[19] == '.')) return label;
  return label.substr(0, 19) + ".000" + label.substr(19);
}

bool IsWhole(const json& value) {
  return value.is_null() || value.is_number_integer() ||
         (value.is_number() && std::isfinite(value.get<double>()) && std::trunc(value.get<double>()) == value.get<double>() &&
          std::fabs(value.get<double>()) < 9007199254740992.0);
}

std::optional<std::string> OptionalText(const json& section, std::string_view name) {
  const json* value = Find(section, name);
  if (value == nullptr) return std::nullopt;
  return value->is_string() ? value->get<std::string>() : value->dump();
}

Result<SectionTable> RunMetrics(const json& section, SectionContext& context, SectionTable table) {
  std::vector<std::string> metrics;
  for (const json& metric : section.at("metrics")) metrics.push_back(metric.get<std::string>());
  metrics::MetricValuesRequest request;
  request.period_start = OptionalText(section, "period_start");
  request.period_end = OptionalText(section, "period_end");
  request.timezone = OptionalText(section, "timezone");
  request.segment = OptionalText(section, "segment");
  request.granularity = OptionalText(section, "granularity").value_or("day");
  std::vector<std::string> dimensions;
  if (const json* value = Find(section, "dimensions")) {
    request.dimensions = value->dump();
    for (const json& dimension : *value) dimensions.push_back(dimension.get<std::string>());
  }
  if (const json* value = Find(section, "filters")) request.filters = value->dump();
  if (const json* value = Find(section, "limit")) request.limit = std::to_string(value->get<int64_t>());

  std::vector<json> answers;
  for (size_t metric_idx = 0; metric_idx < metrics.size(); ++metric_idx) {
    auto answer = context.metric_values.Compute(metrics[metric_idx], request, context.viewer);
    if (!answer.ok()) {
      // An unknown metric is about the section's metrics[i]; the API's other errors name their parameter.
      if (answer.status().code() == StatusCode::kNotFound && answer.status().field().empty()) {
        return answer.status().WithFieldPrefix(Index("metrics", metric_idx));
      }
      return answer.status();
    }
    answers.push_back(std::move(answer).value());
  }

  // The buckets: the labels of any series (every series has every bucket), else the same grid the API made.
  std::vector<std::string> labels;
  for (const json& answer : answers) {
    const json& series = Element(Field(answer, "series"), 0);
    if (series.is_null()) continue;
    for (const json& point : Field(series, "points")) labels.push_back(point.at(0).get<std::string>());
    break;
  }
  if (labels.empty() && !answers.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(query::TimeZone zone, query::TimeZone::Load(answers[0].value("timezone", "UTC")));
    ANALYTICS_ASSIGN_OR_RETURN(int64_t start, query::ParsePeriodBound(*request.period_start, false, zone, "period_start"));
    ANALYTICS_ASSIGN_OR_RETURN(int64_t end, query::ParsePeriodBound(*request.period_end, true, zone, "period_end"));
    auto granularity = query::GranularityFromName(*request.granularity);
    ANALYTICS_ASSIGN_OR_RETURN(query::TimeGrid grid,
                               query::TimeGrid::Make(start, end, granularity.value_or(query::Granularity::kDay), zone));
    for (size_t bucket = 0; bucket < grid.size(); ++bucket) labels.push_back(zone.Format(grid.bounds()[bucket]));
  }
  std::map<std::string, size_t> bucket_of;
  for (size_t bucket = 0; bucket < labels.size(); ++bucket) bucket_of[labels[bucket]] = bucket;

  // Groups in the first metric's series order, then those only later metrics have; values[metric][group][bucket].
  std::vector<std::string> group_keys;
  std::vector<json> group_values;  // per group: its dimension values in `dimensions` order
  std::map<std::string, size_t> group_of;
  std::vector<std::map<size_t, std::vector<json>>> values(answers.size());
  for (size_t metric_idx = 0; metric_idx < answers.size(); ++metric_idx) {
    for (const json& series : Field(answers[metric_idx], "series")) {
      const json& group = Field(series, "dimensions");
      const std::string key = json{{"dimensions", group}, {"other", series.value("other", false)}}.dump();
      auto [it, added] = group_of.emplace(key, group_keys.size());
      if (added) {
        group_keys.push_back(key);
        json cells = json::array();
        for (const auto& dimension : dimensions) cells.push_back(Field(group, dimension));
        group_values.push_back(std::move(cells));
      }
      std::vector<json>& points = values[metric_idx][it->second];
      points.assign(labels.size(), json());
      for (const json& point : Field(series, "points")) {
        auto bucket = bucket_of.find(point.at(0).get<std::string>());
        if (bucket != bucket_of.end()) points[bucket->second] = point.at(1);
      }
    }
  }
  // Ungrouped: one row per bucket even when the series is left out (k-anonymity): its numbers are null then.
  if (dimensions.empty() && group_keys.empty()) {
    group_keys.push_back("{}");
    group_values.push_back(json::array());
  }

  const bool hourly = *request.granularity == "hour";
  AddColumn(table, hourly ? "hour" : "date", hourly ? "Hour" : "Date", hourly ? ColumnType::kDateTime : ColumnType::kDate);
  for (const auto& dimension : dimensions) AddColumn(table, ColumnName(dimension), dimension, ColumnType::kString);
  std::vector<ColumnType> metric_types;
  for (size_t metric_idx = 0; metric_idx < answers.size(); ++metric_idx) {
    const json& answer = answers[metric_idx];
    const std::string aggregation = answer.value("aggregation", std::string());
    bool integer = aggregation == "unique_users" || aggregation == "peak_concurrent";
    if (aggregation == "count") {
      // Counts are whole numbers unless the definition weighs its event types with fractions.
      integer = std::all_of(values[metric_idx].begin(), values[metric_idx].end(), [](const auto& group) {
        return std::all_of(group.second.begin(), group.second.end(), IsWhole);
      });
    }
    metric_types.push_back(integer ? ColumnType::kInteger : ColumnType::kNumber);
    const std::string unit = answer.value("unit", std::string());
    AddColumn(table, metrics[metric_idx], unit.empty() ? metrics[metric_idx] : metrics[metric_idx] + " (" + unit + ")",
              metric_types.back());
  }

  for (size_t bucket = 0; bucket < labels.size(); ++bucket) {
    for (size_t group = 0; group < group_keys.size(); ++group) {
      Row row;
      row.push_back(hourly ? WithMillis(labels[bucket]) : labels[bucket].substr(0, 10));
      for (const json& value : group_values[group]) row.push_back(ToCell(value, ColumnType::kString));
      for (size_t metric_idx = 0; metric_idx < answers.size(); ++metric_idx) {
        auto it = values[metric_idx].find(group);
        row.push_back(it == values[metric_idx].end() ? Cell() : ToCell(it->second[bucket], metric_types[metric_idx]));
      }
      table.rows.push_back(std::move(row));
    }
  }
  return table;
}

// ---- funnel -------------------------------------------------------------------------------------------------

Result<SectionTable> RunFunnel(const json& section, SectionContext& context, SectionTable table) {
  auto answer = analysis::RunFunnels(context.store, section.at("request"), context.viewer, context.analysis);
  if (!answer.ok()) return InRequest(answer.status());
  const json& document = *answer;
  const bool grouped = document.contains("breakdown_by");
  if (grouped) {
    const std::string property = Field(Field(document, "breakdown_by"), "property").get<std::string>();
    AddColumn(table, ColumnName(property), property, ColumnType::kString);
  }
  AddColumn(table, "step", "Step", ColumnType::kInteger);
  AddColumn(table, "event_type", "Event type", ColumnType::kString);
  AddColumn(table, "users", "Users", ColumnType::kInteger);
  AddColumn(table, "dropped_off", "Dropped off", ColumnType::kInteger);
  AddColumn(table, "conversion_from_previous", "Conversion from previous step", ColumnType::kNumber);
  AddColumn(table, "conversion_from_first", "Conversion from first step", ColumnType::kNumber);
  AddColumn(table, "median_seconds_to_convert", "Median seconds from previous step", ColumnType::kNumber);
  AddColumn(table, "median_seconds_from_first", "Median seconds from first step", ColumnType::kNumber);
  auto add_steps = [&](const json& steps, const json* group) {
    for (size_t step_idx = 0; step_idx < steps.size(); ++step_idx) {
      const json& step = steps[step_idx];
      Row row;
      if (group != nullptr) row.push_back(ToCell(*group, ColumnType::kString));
      row.push_back(static_cast<int64_t>(step_idx + 1));
      row.push_back(ToCell(Field(step, "event_type"), ColumnType::kString));
      row.push_back(ToCell(Field(step, "users"), ColumnType::kInteger));
      row.push_back(ToCell(Field(step, "dropped_off"), ColumnType::kInteger));
      row.push_back(ToCell(Field(step, "conversion_from_previous"), ColumnType::kNumber));
      row.push_back(ToCell(Field(step, "conversion_from_first"), ColumnType::kNumber));
      row.push_back(ToCell(Field(step, "median_seconds_to_convert"), ColumnType::kNumber));
      row.push_back(ToCell(Field(step, "median_seconds_from_first"), ColumnType::kNumber));
      table.rows.push_back(std::move(row));
    }
  };
  if (grouped) {
    for (const json& group : Field(document, "breakdown")) add_steps(Field(group, "steps"), &Field(group, "value"));
  } else {
    add_steps(Field(document, "steps"), nullptr);
  }
  return table;
}

// ---- retention ----------------------------------------------------------------------------------------------

Result<SectionTable> RunRetentionSection(const json& section, SectionContext& context, SectionTable table) {
  auto answer = analysis::RunRetention(context.store, section.at("request"), context.viewer, context.analysis);
  if (!answer.ok()) return InRequest(answer.status());
  const json& document = *answer;
  AddColumn(table, "cohort_start", "Cohort start", ColumnType::kDate);
  AddColumn(table, "cohort_end", "Cohort end", ColumnType::kDate);
  AddColumn(table, "cohort_users", "Cohort users", ColumnType::kInteger);
  const json& periods = Field(document, "periods");
  for (const json& period : periods) {
    const std::string n = std::to_string(period.get<int64_t>());
    AddColumn(table, "retained_" + n, "Retained on day " + n, ColumnType::kInteger);
    AddColumn(table, "share_" + n, "Share retained on day " + n, ColumnType::kNumber);
  }
  for (const json& cohort : Field(document, "cohorts")) {
    Row row = {ToCell(Field(cohort, "cohort_start"), ColumnType::kDate),
               ToCell(Field(cohort, "cohort_end"), ColumnType::kDate),
               ToCell(Field(cohort, "users"), ColumnType::kInteger)};
    const json& retained = Field(cohort, "retained");
    for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
      row.push_back(ToCell(Field(Element(retained, period_idx), "users"), ColumnType::kInteger));
      row.push_back(ToCell(Field(Element(retained, period_idx), "share"), ColumnType::kNumber));
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

// ---- experiment ---------------------------------------------------------------------------------------------

Result<SectionTable> RunExperiment(const json& section, SectionContext& context, SectionTable table) {
  auto answer = analysis::RunExperiments(context.store, section.at("request"), context.viewer, context.analysis);
  if (!answer.ok()) return InRequest(answer.status());
  const json& document = *answer;
  struct Spec {
    const char* name;
    const char* title;
    ColumnType type;
  };
  static constexpr Spec kColumns[] = {
      {"experiment", "Experiment", ColumnType::kString},
      {"variant", "Variant", ColumnType::kString},
      {"control", "Control", ColumnType::kBoolean},
      {"exposed_users", "Exposed users", ColumnType::kInteger},
      {"users_with_multiple_variants", "Users with several variants", ColumnType::kInteger},
      {"goal", "Goal", ColumnType::kInteger},
      {"goal_kind", "Goal kind", ColumnType::kString},
      {"goal_event_type", "Goal event type", ColumnType::kString},
      {"converters", "Converters", ColumnType::kInteger},
      {"rate", "Conversion rate", ColumnType::kNumber},
      {"mean", "Mean per user", ColumnType::kNumber},
      {"ci95_low", "95% CI low", ColumnType::kNumber},
      {"ci95_high", "95% CI high", ColumnType::kNumber},
      {"uplift", "Uplift", ColumnType::kNumber},
      {"uplift_ci95_low", "Uplift 95% CI low", ColumnType::kNumber},
      {"uplift_ci95_high", "Uplift 95% CI high", ColumnType::kNumber},
      {"difference", "Difference", ColumnType::kNumber},
      {"difference_ci95_low", "Difference 95% CI low", ColumnType::kNumber},
      {"difference_ci95_high", "Difference 95% CI high", ColumnType::kNumber},
      {"p_value", "p-value", ColumnType::kNumber},
      {"significant", "Significant (p < 0.05)", ColumnType::kBoolean},
      {"srm_p_value", "SRM p-value", ColumnType::kNumber},
      {"srm_ok", "SRM ok", ColumnType::kBoolean},
  };
  for (const Spec& column : kColumns) AddColumn(table, column.name, column.title, column.type);
  const json& goals = Field(document, "goals");
  const json& srm = Field(document, "srm");
  for (const json& variant : Field(document, "variants")) {
    const json& variant_goals = Field(variant, "goals");
    for (size_t goal_idx = 0; goal_idx < variant_goals.size(); ++goal_idx) {
      const json& goal = variant_goals[goal_idx];
      const json& p_value = Field(goal, "p_value");
      table.rows.push_back({
          ToCell(Field(document, "experiment"), ColumnType::kString),
          ToCell(Field(variant, "variant"), ColumnType::kString),
          ToCell(Field(variant, "control"), ColumnType::kBoolean),
          ToCell(Field(variant, "exposed_users"), ColumnType::kInteger),
          ToCell(Field(variant, "users_with_multiple_variants"), ColumnType::kInteger),
          static_cast<int64_t>(goal_idx + 1),
          ToCell(Field(goal, "kind"), ColumnType::kString),
          ToCell(Field(Element(goals, goal_idx), "event_type"), ColumnType::kString),
          ToCell(Field(goal, "converters"), ColumnType::kInteger),
          ToCell(Field(goal, "rate"), ColumnType::kNumber),
          ToCell(Field(goal, "mean"), ColumnType::kNumber),
          ToCell(Element(Field(goal, "ci95"), 0), ColumnType::kNumber),
          ToCell(Element(Field(goal, "ci95"), 1), ColumnType::kNumber),
          ToCell(Field(goal, "uplift"), ColumnType::kNumber),
          ToCell(Element(Field(goal, "uplift_ci95"), 0), ColumnType::kNumber),
          ToCell(Element(Field(goal, "uplift_ci95"), 1), ColumnType::kNumber),
          ToCell(Field(goal, "difference"), ColumnType::kNumber),
          ToCell(Element(Field(goal, "difference_ci95"), 0), ColumnType::kNumber),
          ToCell(Element(Field(goal, "difference_ci95"), 1), ColumnType::kNumber),
          ToCell(p_value, ColumnType::kNumber),
          p_value.is_number() ? Cell(p_value.get<double>() < kSignificance) : Cell(),
          ToCell(Field(srm, "p_value"), ColumnType::kNumber),
          ToCell(Field(srm, "ok"), ColumnType::kBoolean),
      });
    }
  }
  return table;
}

// ---- segment_sizes ------------------------------------------------------------------------------------------

Result<SectionTable> RunSegmentSizes(const json& section, SectionContext& context, SectionTable table) {
  if (!context.viewer.all_games) {
    // As GET /segments/{id}/users-count: platform_admin and marketing_manager only.
    return Status::PermissionDenied("segment sizes are not available to developers");
  }
  std::vector<std::string> ids;
  const json* segments = Find(section, "segments");
  const bool all = segments == nullptr || *segments == "all";
  if (all) {
    if (context.segment_ids) {
      ANALYTICS_ASSIGN_OR_RETURN(ids, context.segment_ids());
    }
  } else {
    for (const json& id : *segments) ids.push_back(id.get<std::string>());
  }
  AddColumn(table, "segment_id", "Segment id", ColumnType::kString);
  AddColumn(table, "name", "Name", ColumnType::kString);
  AddColumn(table, "type", "Type", ColumnType::kString);
  AddColumn(table, "users_count", "Users", ColumnType::kInteger);
  AddColumn(table, "as_of", "As of", ColumnType::kDateTime);
  AddColumn(table, "refreshed_at", "Refreshed at", ColumnType::kDateTime);
  for (size_t segment_idx = 0; segment_idx < ids.size(); ++segment_idx) {
    Result<json> size = context.segment_size
                            ? context.segment_size(ids[segment_idx])
                            : Result<json>(Status::NotFound("segment '" + ids[segment_idx] + "' does not exist"));
    if (!size.ok()) {
      return all || size.status().code() != StatusCode::kNotFound
                 ? size.status()
                 : size.status().WithFieldPrefix(Index("segments", segment_idx));
    }
    table.rows.push_back({ids[segment_idx], ToCell(Field(*size, "name"), ColumnType::kString),
                          ToCell(Field(*size, "type"), ColumnType::kString),
                          ToCell(Field(*size, "users_count"), ColumnType::kInteger),
                          ToCell(Field(*size, "as_of"), ColumnType::kDateTime),
                          ToCell(Field(*size, "refreshed_at"), ColumnType::kDateTime)});
  }
  return table;
}

// CheckSection; `templated`: the section may hold placeholders (a definition's), else it is resolved and every value
// is checked.
Status CheckSectionImpl(const json& section, const std::string& path, bool templated) {
  if (!section.is_object()) return Status::InvalidArgument("must be a JSON object", path.empty() ? "section" : path);
  ANALYTICS_ASSIGN_OR_RETURN(std::string type, analysis::RequiredString(section, "type", path));
  if (std::find(std::begin(kTypes), std::end(kTypes), type) == std::end(kTypes)) {
    return Status::InvalidArgument("must be one of metrics, funnel, retention, experiment, segment_sizes",
                                   Member(path, "type"));
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::string name, analysis::RequiredString(section, "name", path));
  if (!IsSectionName(name)) {
    return Status::InvalidArgument("must be 1 to 31 characters of a-z, 0-9, '_'", Member(path, "name"));
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto title, analysis::OptionalString(section, "title", path));
  if (title && common::CodePoints(*title) > kMaxSectionTitleLength) {
    return Status::InvalidArgument("must have at most 256 characters", Member(path, "title"));
  }
  if (type == "metrics") return CheckMetricsSection(templated, section, path);
  if (type == "segment_sizes") return CheckSegmentSizesSection(templated, section, path);
  return CheckAnalysisSection(section, path, type);
}

}  // namespace

Status CheckSection(const json& section, const std::string& path) { return CheckSectionImpl(section, path, true); }

Result<SectionTable> RunSection(const json& resolved, SectionContext& context) {
  ANALYTICS_RETURN_IF_ERROR(CheckSectionImpl(resolved, "", false));
  SectionTable table;
  table.header.name = resolved.at("name").get<std::string>();
  table.header.type = resolved.at("type").get<std::string>();
  const json* title = Find(resolved, "title");
  table.header.title = title != nullptr && !title->get_ref<const std::string&>().empty() ? title->get<std::string>()
                                                                                          : table.header.name;
  const std::string& type = table.header.type;
  if (type == "metrics") return RunMetrics(resolved, context, std::move(table));
  if (type == "funnel") return RunFunnel(resolved, context, std::move(table));
  if (type == "retention") return RunRetentionSection(resolved, context, std::move(table));
  if (type == "experiment") return RunExperiment(resolved, context, std::move(table));
  return RunSegmentSizes(resolved, context, std::move(table));
}

}  // namespace analytics::reports
