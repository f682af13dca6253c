// ReportDefinition: what a report contains and which parameters it takes (docs/reports.md "Definitions").
//
// Document (POST /reports/definitions; PUT replaces it whole; unknown members are errors):
//   {"name": "daily_kpi_summary",                 // unique, 1..128 characters, [a-z0-9_.-]
//    "title": "Daily KPI summary", "description": "...",          // optional text (<= 256 / 4096 characters)
//    "parameters": [{"name": "period_start", "type": "date", "required": true, "description": "..."},
//                   {"name": "timezone", "type": "timezone", "default": "UTC"},
//                   {"name": "game_ids", "type": "string_list", "default": []},
//                   {"name": "top", "type": "integer", "default": 10, "min": 1, "max": 100},
//                   {"name": "granularity", "type": "enum", "values": ["day", "week"], "default": "day"}],
//    "sections": [{"name": "kpis", "title": "KPIs per day", "type": "metrics",
//                  "metrics": ["dau", "revenue_rub"], "granularity": "${granularity}", "dimensions": ["game_id"]}, ...],
//    "schedule": {"cron": "0 6 * * 1", "timezone": "Europe/Moscow", "output_format": "xlsx",
//                 "parameters": {"period_start": "today-7d", "period_end": "yesterday"},
//                 "recipients": ["growth-team@example.com"], "enabled": true}}
// Parameter types: date ("YYYY-MM-DD", or relative to the generation day in the report's time zone: "today",
//   "yesterday", "today-<N>d", "today+<N>d" (N from 0 to 3650), "start_of_week" (Monday), "start_of_month",
//   "start_of_last_month", "end_of_last_month"; bound to the absolute date), timezone (IANA name), string (<= 1024
//   characters), string_list (<= 1000 strings of <= 1024 characters), integer (optional integer min/max), number
//   (optional min/max), boolean, enum (one of "values": 1..100 distinct strings of 1..256 characters), segment (a
//   segment id of 1..256 bytes; it must exist when the report is requested). A parameter is required (no default)
//   or optional; an optional one without a default binds to null; a given null counts as not given. Names
//   [a-z][a-z0-9_]* (<= 64), unique; at most 32 parameters; "description" <= 1024 characters; "min", "max" only
//   for integer and number, "values" only for enum (and required there).
// Sections (1..20, names [a-z0-9_]+ unique, <= 31 characters; "title" optional, <= 256 characters; sections.h
//   describes each type's members and its table): "metrics", "funnel", "retention", "experiment", "segment_sizes".
//   Any string value inside a section may be "${param}" (replaced by the bound value with its JSON type: a list
//   stays a list, null stays null) or contain "${param}" inside text (replaced by its text: a string as it is, null
//   as "", a list as its items' texts joined with ", ", numbers and booleans as JSON); every placeholder must name
//   a declared parameter, and "${" always starts one ("${Name}" or an unclosed "${" is an error). Member names are
//   never placeholders.
// Common parameters: period_start and period_end must be declared as date, timezone as timezone, segment as
//   segment and game_ids as string_list. When the definition declares period_start, period_end, timezone or
//   segment, a section that does not set that member gets the bound value (when it is not null); a declared
//   game_ids adds the filter {"property": "game_id", "op": "in", "value": [...]} to every section's filters when it
//   is not empty (an object filter becomes [it, the condition]; a list gets the condition appended). The members
//   are those of a "metrics" section itself and of the "request" of "funnel", "retention" and "experiment"
//   sections; "segment_sizes" sections get none.
// Schedule: "cron" (required; jobs/cron.h), "timezone" (of the cron fields, default "UTC"), "output_format"
//   ("csv" default, "json", "xlsx"), "parameters" (default {}: checked as a request's would be, so the required
//   ones must be there, except that period_end >= period_start is not checked: relative dates are in order on
//   some days and not on others), "recipients", "enabled" (default true). null or absent: no schedule.
// Errors: InvalidArgument whose field() is the JSON path ("sections[1].metrics[0]", "parameters[2].default",
//   "schedule.cron", "schedule.parameters.period_start") and whose message says what is wrong.
// Thread-safety: plain values and reentrant functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "jobs/cron.h"
#include "query/time_grid.h"
#include "reports/formats/writer.h"

namespace analytics::reports {

enum class ParameterType { kDate, kTimezone, kString, kStringList, kInteger, kNumber, kBoolean, kEnum, kSegment };

struct ParameterSpec {
  std::string name;
  ParameterType type = ParameterType::kString;
  bool required = false;
  nlohmann::json default_value;        // null: none; else valid for the type (a date default may be relative)
  std::string description;
  std::optional<double> min, max;      // integer, number
  std::vector<std::string> values;     // enum
};

struct SectionSpec {
  std::string name, title, type;  // title "" when not given (the tables then use the name)
  nlohmann::json spec;  // the section object as given (with placeholders), validated for its type (CheckSection)
};

struct ScheduleSpec {
  jobs::CronSchedule cron;
  query::TimeZone zone = query::TimeZone::Utc();
  OutputFormat output_format = OutputFormat::kCsv;
  nlohmann::json parameters = nlohmann::json::object();  // checked like a request's (relative dates are the point)
  std::vector<std::string> recipients;                    // <= 100 strings of 1..320 characters
  bool enabled = true;
};

struct ReportDefinition {
  std::string name, title, description;
  std::vector<ParameterSpec> parameters;
  std::vector<SectionSpec> sections;
  std::optional<ScheduleSpec> schedule;
};

// Validates and normalizes a definition document.
common::Result<ReportDefinition> ParseReportDefinition(const nlohmann::json& body);
// The normalized document (defaults explicit): "name", "title", "description", "parameters" (each with "name",
// "type", "required", "default" (null: none), "description", plus "min"/"max" when set and "values" for enums),
// "sections" (as given) and "schedule" (null, or every member). ParseReportDefinition(ToDocument(d)) gives d back.
nlohmann::json ToDocument(const ReportDefinition& definition);

// Binds request parameters: `given` must be an object (else InvalidArgument field "parameters"); unknown names,
// missing required ones, wrong types and out-of-range values are InvalidArgument with field
// "parameters.<name>" ("parameters.game_ids[3]" for a bad item); defaults fill the rest; relative dates (given or
// defaults) become absolute dates of `now_ms`'s day in the report's time zone (the bound "timezone" parameter
// when declared, else UTC). Also checks period_end >= period_start when both are declared and bound (field
// "parameters.period_end"). Segment existence is the caller's check. Returns an object with every declared
// parameter (null for an optional one without a value).
common::Result<nlohmann::json> BindParameters(const ReportDefinition& definition, const nlohmann::json& given,
                                              int64_t now_ms);

// A section's spec with the placeholders replaced by `bound` values (BindParameters' answer; a missing one counts as
// null) and the common parameters applied. RunSection checks the result.
nlohmann::json ResolveSection(const ReportDefinition& definition, const SectionSpec& section,
                              const nlohmann::json& bound);

// The built-in definitions the service seeds (docs/reports.md "Built-in reports"), none scheduled:
// - daily_kpi_summary (period_start, period_end, timezone, game_ids, segment): one metrics section, per day: dau,
//   new_users, sessions, revenue_rub, purchases_count, paying_users, arpu, payer_conversion.
// - game_sales_by_country (the same and granularity day|week|month, default day): revenue_rub, purchases_count,
//   paying_users per bucket, game_id and country (the typed columns purchases carry).
// - weekly_retention (period_start, period_end, timezone, mode on_day|on_or_after, segment): weekly first-time
//   cohorts of account.user.registered, returning by a login, a store page view or a game session on day 1, 7,
//   14 and 30.
// - experiment_readout (experiment_key required, control default "A", conversion_event default
//   payments.purchase.completed, conversion_window_seconds optional, period_start, period_end, timezone,
//   segment): a conversion goal on conversion_event and a mean goal of the RUB purchase amount.
// Each passes ParseReportDefinition.
std::vector<nlohmann::json> BuiltinDefinitions();

}  // namespace analytics::reports
