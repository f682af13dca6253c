// Unit tests for report definitions (reports/definition.h): parse errors with their JSON paths, the normalized
// document and its round trip, placeholders, parameter binding (types, ranges, defaults, relative dates at the day
// edges of non-UTC zones, the period's order), common parameters and the game_ids filter, and the built-ins.
#include "reports/definition.h"

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/time_util.h"
#include "reports/sections.h"
#include "support/test_env.h"

namespace analytics::reports {
namespace {

using common::StatusCode;
using json = nlohmann::json;

int64_t At(const std::string& rfc3339) {
  auto ms = common::ParseRfc3339Millis(rfc3339);
  EXPECT_TRUE(ms.ok()) << rfc3339;
  return ms.ok() ? *ms : 0;
}

// A valid definition using every parameter type, every section type and a schedule.
json Valid() {
  return json::parse(R"({
    "name": "growth.weekly-kpis_1", "title": "Weekly KPIs", "description": "For the growth team",
    "parameters": [
      {"name": "period_start", "type": "date", "required": true},
      {"name": "period_end", "type": "date", "default": "yesterday"},
      {"name": "timezone", "type": "timezone", "default": "Europe/Moscow"},
      {"name": "game_ids", "type": "string_list", "default": []},
      {"name": "segment", "type": "segment"},
      {"name": "top", "type": "integer", "default": 10, "min": 1, "max": 100},
      {"name": "share", "type": "number", "default": 0.5, "min": 0, "max": 1},
      {"name": "granularity", "type": "enum", "values": ["day", "week"], "default": "day"},
      {"name": "label", "type": "string", "default": "KPIs"},
      {"name": "strict", "type": "boolean", "default": false}
    ],
    "sections": [
      {"name": "kpis", "title": "${label} per ${granularity}", "type": "metrics", "metrics": ["dau", "revenue_rub"],
       "granularity": "${granularity}", "dimensions": ["game_id"], "limit": "${top}"},
      {"name": "checkout", "type": "funnel",
       "request": {"steps": [{"event_type": "com.platform.cart.item.added.v1"},
                             {"event_type": "com.platform.payments.purchase.completed.v1"}],
                   "filters": [{"property": "platform", "op": "eq", "value": "windows"}]}},
      {"name": "retention", "type": "retention",
       "request": {"start_event": {"event_type": "com.platform.account.user.registered.v1"}, "periods": [1, 7]}},
      {"name": "readout", "type": "experiment",
       "request": {"experiment": "checkout_v2", "control": "A",
                   "goals": [{"event_type": "com.platform.payments.purchase.completed.v1"}]}},
      {"name": "segments", "type": "segment_sizes", "segments": "all"}
    ],
    "schedule": {"cron": "0 6 * * 1", "timezone": "Europe/Moscow", "output_format": "xlsx",
                 "parameters": {"period_start": "today-7d", "period_end": "yesterday"},
                 "recipients": ["growth-team@example.com"], "enabled": true}
  })");
}

// The definition of `body`, which must parse.
ReportDefinition Parsed(const json& body) {
  auto parsed = ParseReportDefinition(body);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << body.dump();
  return parsed.ok() ? std::move(parsed).value() : ReportDefinition();
}

// ---- Parsing ------------------------------------------------------------------------------------------------

TEST(ReportDefinitionTest, ValidDocumentParses) {
  const ReportDefinition definition = Parsed(Valid());
  EXPECT_EQ(definition.name, "growth.weekly-kpis_1");
  ASSERT_EQ(definition.parameters.size(), 10u);
  EXPECT_EQ(definition.parameters[0].type, ParameterType::kDate);
  EXPECT_TRUE(definition.parameters[0].required);
  EXPECT_EQ(definition.parameters[5].min, 1);
  EXPECT_EQ(definition.parameters[5].max, 100);
  EXPECT_EQ(definition.parameters[7].values, (std::vector<std::string>{"day", "week"}));
  ASSERT_EQ(definition.sections.size(), 5u);
  EXPECT_EQ(definition.sections[0].title, "${label} per ${granularity}");
  EXPECT_EQ(definition.sections[1].type, "funnel");
  ASSERT_TRUE(definition.schedule.has_value());
  EXPECT_EQ(definition.schedule->cron.text(), "0 6 * * 1");
  EXPECT_EQ(definition.schedule->zone.name(), "Europe/Moscow");
  EXPECT_EQ(definition.schedule->output_format, OutputFormat::kXlsx);
  EXPECT_EQ(definition.schedule->recipients, std::vector<std::string>{"growth-team@example.com"});
}

TEST(ReportDefinitionTest, DocumentRoundTripsWithDefaultsExplicit) {
  const json document = ToDocument(Parsed(Valid()));
  EXPECT_EQ(ToDocument(Parsed(document)), document);
  EXPECT_EQ(document["parameters"][0],
            json::parse(R"({"name": "period_start", "type": "date", "required": true, "default": null,
                            "description": ""})"));
  EXPECT_EQ(document["parameters"][5]["min"], 1);
  EXPECT_TRUE(document["parameters"][5]["min"].is_number_integer());
  EXPECT_EQ(document["parameters"][6]["max"], 1.0);
  EXPECT_EQ(document["parameters"][7]["values"], json::array({"day", "week"}));
  EXPECT_FALSE(document["parameters"][8].contains("values"));
  EXPECT_EQ(document["sections"], Valid()["sections"]);  // as given, placeholders included

  const json minimal = {{"name", "m"}, {"sections", json::array({{{"name", "s"}, {"type", "segment_sizes"}}})},
                        {"schedule", {{"cron", "@daily"}}}};
  const json normalized = ToDocument(Parsed(minimal));
  EXPECT_EQ(normalized, json::parse(R"({
    "name": "m", "title": "", "description": "", "parameters": [],
    "sections": [{"name": "s", "type": "segment_sizes"}],
    "schedule": {"cron": "@daily", "timezone": "UTC", "output_format": "csv", "parameters": {}, "recipients": [],
                 "enabled": true}})"));
  EXPECT_EQ(ToDocument(Parsed(normalized)), normalized);
  json without_schedule = minimal;
  without_schedule.erase("schedule");
  EXPECT_TRUE(ToDocument(Parsed(without_schedule))["schedule"].is_null());
}

struct BadCase {
  std::string what;
  std::function<void(json&)> change;
  std::string field;
};

TEST(ReportDefinitionTest, BadDocumentsNameTheirPath) {
  auto parameter = [](size_t index) { return json::json_pointer("/parameters/" + std::to_string(index)); };
  const std::vector<BadCase> cases = {
      {"not an object", [](json& d) { d = json::array(); }, "body"},
      {"unknown member", [](json& d) { d["colour"] = "red"; }, "colour"},
      {"server-set member", [](json& d) { d["version"] = 1; }, "version"},
      {"no name", [](json& d) { d.erase("name"); }, "name"},
      {"name with capitals", [](json& d) { d["name"] = "Weekly"; }, "name"},
      {"name too long", [](json& d) { d["name"] = std::string(129, 'a'); }, "name"},
      {"title not text", [](json& d) { d["title"] = 5; }, "title"},
      {"title too long", [](json& d) { d["title"] = std::string(257, 'a'); }, "title"},
      {"description too long", [](json& d) { d["description"] = std::string(4097, 'a'); }, "description"},
      {"parameters not an array", [](json& d) { d["parameters"] = json::object(); }, "parameters"},
      {"33 parameters",
       [](json& d) {
         d["parameters"] = json::array();
         for (int idx = 0; idx < 33; ++idx) d["parameters"].push_back({{"name", "p" + std::to_string(idx)}, {"type", "string"}});
         d["sections"] = json::array({{{"name", "s"}, {"type", "segment_sizes"}}});
         d.erase("schedule");
       },
       "parameters"},
      {"parameter not an object", [&](json& d) { d[parameter(2)] = "timezone"; }, "parameters[2]"},
      {"unknown parameter member", [&](json& d) { d[parameter(2)]["kind"] = "x"; }, "parameters[2].kind"},
      {"parameter without name", [&](json& d) { d[parameter(8)].erase("name"); }, "parameters[8].name"},
      {"parameter name starting with a digit", [&](json& d) { d[parameter(8)]["name"] = "1label"; }, "parameters[8].name"},
      {"parameter name too long", [&](json& d) { d[parameter(8)]["name"] = std::string(65, 'a'); }, "parameters[8].name"},
      {"parameter declared twice", [&](json& d) { d[parameter(9)]["name"] = "label"; }, "parameters[9].name"},
      {"unknown type", [&](json& d) { d[parameter(8)]["type"] = "datetime"; }, "parameters[8].type"},
      {"common parameter of another type", [&](json& d) { d[parameter(0)]["type"] = "string"; }, "parameters[0].type"},
      {"game_ids not a list", [&](json& d) { d[parameter(3)] = {{"name", "game_ids"}, {"type", "string"}}; },
       "parameters[3].type"},
      {"required not boolean", [&](json& d) { d[parameter(0)]["required"] = "yes"; }, "parameters[0].required"},
      {"min of a string", [&](json& d) { d[parameter(8)]["min"] = 1; }, "parameters[8].min"},
      {"fractional min of an integer", [&](json& d) { d[parameter(5)]["min"] = 1.5; }, "parameters[5].min"},
      {"max below min", [&](json& d) { d[parameter(5)]["max"] = 0; }, "parameters[5].max"},
      {"enum without values", [&](json& d) { d[parameter(7)].erase("values"); }, "parameters[7].values"},
      {"enum value twice", [&](json& d) { d[parameter(7)]["values"] = {"day", "day"}; }, "parameters[7].values[1]"},
      {"empty enum value", [&](json& d) { d[parameter(7)]["values"] = {"day", ""}; }, "parameters[7].values[1]"},
      {"values of a string", [&](json& d) { d[parameter(8)]["values"] = {"a"}; }, "parameters[8].values"},
      {"required with a default", [&](json& d) { d[parameter(0)]["default"] = "today"; }, "parameters[0].default"},
      {"integer default as text", [&](json& d) { d[parameter(5)]["default"] = "10"; }, "parameters[5].default"},
      {"integer default above max", [&](json& d) { d[parameter(5)]["default"] = 101; }, "parameters[5].default"},
      {"fractional integer default", [&](json& d) { d[parameter(5)]["default"] = 2.5; }, "parameters[5].default"},
      {"number default below min", [&](json& d) { d[parameter(6)]["default"] = -0.1; }, "parameters[6].default"},
      {"enum default not a value", [&](json& d) { d[parameter(7)]["default"] = "month"; }, "parameters[7].default"},
      {"no such date", [&](json& d) { d[parameter(1)]["default"] = "2024-02-30"; }, "parameters[1].default"},
      {"malformed relative date", [&](json& d) { d[parameter(1)]["default"] = "today-7"; }, "parameters[1].default"},
      {"relative date too far", [&](json& d) { d[parameter(1)]["default"] = "today-3651d"; }, "parameters[1].default"},
      {"unknown time zone", [&](json& d) { d[parameter(2)]["default"] = "Mars/Olympus"; }, "parameters[2].default"},
      {"list default of numbers", [&](json& d) { d[parameter(3)]["default"] = {"a", 1}; }, "parameters[3].default[1]"},
      {"boolean default as text", [&](json& d) { d[parameter(9)]["default"] = "false"; }, "parameters[9].default"},
      {"empty segment default", [&](json& d) { d[parameter(4)]["default"] = ""; }, "parameters[4].default"},
      {"no sections", [](json& d) { d.erase("sections"); }, "sections"},
      {"empty sections", [](json& d) { d["sections"] = json::array(); }, "sections"},
      {"21 sections",
       [](json& d) {
         d["sections"] = json::array();
         for (int idx = 0; idx < 21; ++idx) {
           d["sections"].push_back({{"name", "s" + std::to_string(idx)}, {"type", "segment_sizes"}});
         }
       },
       "sections"},
      {"section not an object", [](json& d) { d["sections"][1] = "funnel"; }, "sections[1]"},
      {"section without type", [](json& d) { d["sections"][1].erase("type"); }, "sections[1].type"},
      {"unknown section type", [](json& d) { d["sections"][1]["type"] = "pie"; }, "sections[1].type"},
      {"section name with capitals", [](json& d) { d["sections"][1]["name"] = "Checkout"; }, "sections[1].name"},
      {"section name too long", [](json& d) { d["sections"][1]["name"] = std::string(32, 'a'); }, "sections[1].name"},
      {"section name twice", [](json& d) { d["sections"][2]["name"] = "checkout"; }, "sections[2].name"},
      {"section title too long", [](json& d) { d["sections"][1]["title"] = std::string(257, 'a'); }, "sections[1].title"},
      {"unknown section member", [](json& d) { d["sections"][0]["colour"] = "red"; }, "sections[0].colour"},
      {"metrics missing", [](json& d) { d["sections"][0].erase("metrics"); }, "sections[0].metrics"},
      {"no metrics", [](json& d) { d["sections"][0]["metrics"] = json::array(); }, "sections[0].metrics"},
      {"21 metrics", [](json& d) { d["sections"][0]["metrics"] = json::array(); for (int idx = 0; idx < 21; ++idx) d["sections"][0]["metrics"].push_back("m" + std::to_string(idx)); }, "sections[0].metrics"},
      {"bad metric name", [](json& d) { d["sections"][0]["metrics"][1] = "Revenue"; }, "sections[0].metrics[1]"},
      {"metric twice", [](json& d) { d["sections"][0]["metrics"][1] = "dau"; }, "sections[0].metrics[1]"},
      {"minute buckets", [](json& d) { d["sections"][0]["granularity"] = "minute"; }, "sections[0].granularity"},
      {"four dimensions", [](json& d) { d["sections"][0]["dimensions"] = {"a", "b", "c", "d"}; }, "sections[0].dimensions"},
      {"bad dimension", [](json& d) { d["sections"][0]["dimensions"] = {"game_id", "a..b"}; }, "sections[0].dimensions[1]"},
      {"dimension twice", [](json& d) { d["sections"][0]["dimensions"] = {"country", "country"}; }, "sections[0].dimensions[1]"},
      {"bad filter op",
       [](json& d) { d["sections"][0]["filters"] = {{"property", "country"}, {"op", "like"}, {"value", "RU"}}; },
       "sections[0].filters.op"},
      {"bad nested filter",
       [](json& d) {
         d["sections"][0]["filters"] = json::parse(
             R"({"and": [{"property": "country", "op": "eq", "value": "RU"}, {"property": "x", "op": "in", "value": 1}]})");
       },
       "sections[0].filters.and[1].value"},
      {"limit zero", [](json& d) { d["sections"][0]["limit"] = 0; }, "sections[0].limit"},
      {"limit without dimensions", [](json& d) { d["sections"][0]["limit"] = 5; d["sections"][0].erase("dimensions"); },
       "sections[0].limit"},
      {"bad literal period", [](json& d) { d["sections"][0]["period_start"] = "2024-13-01"; }, "sections[0].period_start"},
      {"period not text", [](json& d) { d["sections"][0]["period_end"] = 20240101; }, "sections[0].period_end"},
      {"bad literal zone", [](json& d) { d["sections"][0]["timezone"] = "Nowhere/City"; }, "sections[0].timezone"},
      {"funnel without request", [](json& d) { d["sections"][1].erase("request"); }, "sections[1].request"},
      {"request not an object", [](json& d) { d["sections"][1]["request"] = "steps"; }, "sections[1].request"},
      {"unknown request member", [](json& d) { d["sections"][1]["request"]["colour"] = 1; }, "sections[1].request.colour"},
      {"funnel without steps", [](json& d) { d["sections"][1]["request"].erase("steps"); }, "sections[1].request.steps"},
      {"retention without start event", [](json& d) { d["sections"][2]["request"].erase("start_event"); },
       "sections[2].request.start_event"},
      {"experiment without control", [](json& d) { d["sections"][3]["request"].erase("control"); },
       "sections[3].request.control"},
      {"segments neither all nor a list", [](json& d) { d["sections"][4]["segments"] = "some"; }, "sections[4].segments"},
      {"empty segment id", [](json& d) { d["sections"][4]["segments"] = {"seg_1", ""}; }, "sections[4].segments[1]"},
      {"undeclared placeholder", [](json& d) { d["sections"][0]["granularity"] = "${bucket}"; }, "sections[0].granularity"},
      {"undeclared placeholder in text", [](json& d) { d["sections"][0]["title"] = "KPIs of ${team}"; }, "sections[0].title"},
      {"undeclared placeholder deep in a request",
       [](json& d) { d["sections"][1]["request"]["steps"][1]["event_type"] = "${purchase_type}"; },
       "sections[1].request.steps[1].event_type"},
      {"malformed placeholder", [](json& d) { d["sections"][0]["metrics"][0] = "${Metric}"; }, "sections[0].metrics[0]"},
      {"unterminated placeholder", [](json& d) { d["sections"][0]["title"] = "KPIs ${label"; }, "sections[0].title"},
      {"schedule not an object", [](json& d) { d["schedule"] = "weekly"; }, "schedule"},
      {"unknown schedule member", [](json& d) { d["schedule"]["colour"] = 1; }, "schedule.colour"},
      {"schedule without cron", [](json& d) { d["schedule"].erase("cron"); }, "schedule.cron"},
      {"bad cron", [](json& d) { d["schedule"]["cron"] = "61 * * * *"; }, "schedule.cron"},
      {"bad schedule zone", [](json& d) { d["schedule"]["timezone"] = "Nowhere/City"; }, "schedule.timezone"},
      {"unknown output format", [](json& d) { d["schedule"]["output_format"] = "pdf"; }, "schedule.output_format"},
      {"schedule parameters not an object", [](json& d) { d["schedule"]["parameters"] = json::array(); },
       "schedule.parameters"},
      {"unknown schedule parameter", [](json& d) { d["schedule"]["parameters"]["week"] = 1; }, "schedule.parameters.week"},
      {"schedule without a required parameter", [](json& d) { d["schedule"]["parameters"].erase("period_start"); },
       "schedule.parameters.period_start"},
      {"schedule parameter of the wrong type", [](json& d) { d["schedule"]["parameters"]["top"] = "10"; },
       "schedule.parameters.top"},
      {"schedule parameter out of range", [](json& d) { d["schedule"]["parameters"]["top"] = 1000; },
       "schedule.parameters.top"},
      {"unknown relative date", [](json& d) { d["schedule"]["parameters"]["period_start"] = "tomorrow"; },
       "schedule.parameters.period_start"},
      {"recipients not a list", [](json& d) { d["schedule"]["recipients"] = "a@example.com"; }, "schedule.recipients"},
      {"empty recipient", [](json& d) { d["schedule"]["recipients"] = {"a@example.com", ""}; }, "schedule.recipients[1]"},
      {"recipient too long", [](json& d) { d["schedule"]["recipients"] = {std::string(321, 'a')}; }, "schedule.recipients[0]"},
      {"101 recipients", [](json& d) { d["schedule"]["recipients"] = std::vector<std::string>(101, "a@example.com"); },
       "schedule.recipients"},
      {"enabled not boolean", [](json& d) { d["schedule"]["enabled"] = "yes"; }, "schedule.enabled"},
  };
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.what);
    json document = Valid();
    bad.change(document);
    auto parsed = ParseReportDefinition(document);
    ASSERT_FALSE(parsed.ok()) << document.dump();
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().field(), bad.field) << parsed.status().ToString();
    EXPECT_FALSE(parsed.status().message().empty());
  }
}

TEST(ReportDefinitionTest, PlaceholdersMayStandForAnyValue) {
  json document = Valid();
  document["parameters"].push_back({{"name", "metrics"}, {"type", "string_list"}, {"default", {"dau"}}});
  document["parameters"].push_back({{"name", "steps"}, {"type", "integer"}, {"default", 2}});
  document["sections"][0]["metrics"] = "${metrics}";
  document["sections"][0]["dimensions"] = "${game_ids}";
  document["sections"][0]["filters"] = {{"property", "game_id"}, {"op", "in"}, {"value", "${game_ids}"}};
  document["sections"][0]["period_start"] = "${period_start}";
  document["sections"][4]["segments"] = {"${segment}"};
  document["sections"][1]["request"]["window_seconds"] = "${steps}";
  EXPECT_OK(ParseReportDefinition(document));
  // CheckSection alone: the same with its own path.
  EXPECT_OK(CheckSection(document["sections"][0], "sections[0]"));
  const common::Status checked = CheckSection(json{{"name", "x"}, {"type", "metrics"}, {"metrics", {"dau"}}, {"limit", 0},
                                           {"dimensions", {"game_id"}}},
                                      "sections[7]");
  EXPECT_EQ(checked.field(), "sections[7].limit");
}

// ---- Binding ------------------------------------------------------------------------------------------------

json Bound(const ReportDefinition& definition, const json& given, int64_t now_ms) {
  auto bound = BindParameters(definition, given, now_ms);
  EXPECT_TRUE(bound.ok()) << bound.status().ToString() << " for " << given.dump();
  return bound.ok() ? *bound : json();
}

std::string BindError(const ReportDefinition& definition, const json& given) {
  auto bound = BindParameters(definition, given, At("2024-06-15T12:00:00Z"));
  EXPECT_FALSE(bound.ok()) << given.dump() << " bound to " << (bound.ok() ? bound->dump() : "");
  if (bound.ok()) return "";
  EXPECT_EQ(bound.status().code(), StatusCode::kInvalidArgument);
  return bound.status().field();
}

TEST(ReportDefinitionTest, BindingFillsDefaultsAndNullsAndReturnsEveryParameter) {
  const ReportDefinition definition = Parsed(Valid());
  const json bound = Bound(definition, {{"period_start", "2024-06-01"}, {"segment", nullptr}},
                           At("2024-06-15T12:00:00Z"));
  EXPECT_EQ(bound, json::parse(R"({
    "period_start": "2024-06-01", "period_end": "2024-06-14", "timezone": "Europe/Moscow", "game_ids": [],
    "segment": null, "top": 10, "share": 0.5, "granularity": "day", "label": "KPIs", "strict": false})"));
  const json given = {{"period_start", "2024-06-01"}, {"period_end", "2024-06-10"}, {"timezone", "UTC"},
                      {"game_ids", {"g1", "g2"}}, {"segment", "seg_1"}, {"top", 100}, {"share", 1},
                      {"granularity", "week"}, {"label", ""}, {"strict", true}};
  EXPECT_EQ(Bound(definition, given, At("2024-06-15T12:00:00Z")), given);
}

TEST(ReportDefinitionTest, BindingRejectsWrongTypesRangesAndNames) {
  const ReportDefinition definition = Parsed(Valid());
  const json base = {{"period_start", "2024-06-01"}};
  auto with = [&](const std::string& name, const json& value) {
    json given = base;
    given[name] = value;
    return given;
  };
  EXPECT_EQ(BindError(definition, json::array()), "parameters");
  EXPECT_EQ(BindError(definition, "period_start=2024-06-01"), "parameters");
  EXPECT_EQ(BindError(definition, with("colour", "red")), "parameters.colour");
  EXPECT_EQ(BindError(definition, json::object()), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", nullptr}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", 20240601}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", "2024-6-1"}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", "2023-02-29"}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", "today-d"}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, {{"period_start", "today--1d"}}), "parameters.period_start");
  EXPECT_EQ(BindError(definition, with("timezone", "Nowhere/City")), "parameters.timezone");
  EXPECT_EQ(BindError(definition, with("timezone", 3)), "parameters.timezone");
  EXPECT_EQ(BindError(definition, with("game_ids", "g1")), "parameters.game_ids");
  EXPECT_EQ(BindError(definition, with("game_ids", {"g1", 2})), "parameters.game_ids[1]");
  EXPECT_EQ(BindError(definition, with("game_ids", std::vector<std::string>(1001, "g"))), "parameters.game_ids");
  EXPECT_EQ(BindError(definition, with("segment", "")), "parameters.segment");
  EXPECT_EQ(BindError(definition, with("segment", 7)), "parameters.segment");
  EXPECT_EQ(BindError(definition, with("top", 0)), "parameters.top");
  EXPECT_EQ(BindError(definition, with("top", 101)), "parameters.top");
  EXPECT_EQ(BindError(definition, with("top", 5.5)), "parameters.top");
  EXPECT_EQ(BindError(definition, with("top", "5")), "parameters.top");
  EXPECT_EQ(BindError(definition, with("share", 1.01)), "parameters.share");
  EXPECT_EQ(BindError(definition, with("share", true)), "parameters.share");
  EXPECT_EQ(BindError(definition, with("granularity", "month")), "parameters.granularity");
  EXPECT_EQ(BindError(definition, with("label", std::string(1025, 'a'))), "parameters.label");
  EXPECT_EQ(BindError(definition, with("label", json::array())), "parameters.label");
  EXPECT_EQ(BindError(definition, with("strict", 1)), "parameters.strict");
  // Limits are inclusive.
  const int64_t now = At("2024-06-15T12:00:00Z");
  EXPECT_OK(BindParameters(definition, with("top", 1), now));
  EXPECT_OK(BindParameters(definition, with("top", 100), now));
  EXPECT_OK(BindParameters(definition, with("share", 0), now));
  EXPECT_OK(BindParameters(definition, with("label", std::string(1024, 'a')), now));
}

TEST(ReportDefinitionTest, PeriodEndMustNotPrecedePeriodStart) {
  const ReportDefinition definition = Parsed(Valid());
  EXPECT_EQ(BindError(definition, {{"period_start", "2024-06-02"}, {"period_end", "2024-06-01"}}),
            "parameters.period_end");
  // Defaults take part: period_end defaults to yesterday (2024-06-14 in Moscow).
  EXPECT_EQ(BindError(definition, {{"period_start", "today"}}), "parameters.period_end");
  EXPECT_OK(BindParameters(definition, {{"period_start", "2024-06-02"}, {"period_end", "2024-06-02"}}, 0));
}

// Relative dates are days of the bound time zone: just before and just after local midnight.
TEST(ReportDefinitionTest, RelativeDatesFollowTheReportsZoneAtDayEdges) {
  const json document = json::parse(R"({
    "name": "r", "sections": [{"name": "s", "type": "segment_sizes"}],
    "parameters": [{"name": "timezone", "type": "timezone", "default": "UTC"},
                   {"name": "today", "type": "date", "default": "today"},
                   {"name": "yesterday", "type": "date", "default": "yesterday"},
                   {"name": "week_ago", "type": "date", "default": "today-7d"},
                   {"name": "tomorrow", "type": "date", "default": "today+1d"},
                   {"name": "same_day", "type": "date", "default": "today-0d"},
                   {"name": "start_of_week", "type": "date", "default": "start_of_week"},
                   {"name": "start_of_month", "type": "date", "default": "start_of_month"},
                   {"name": "start_of_last_month", "type": "date", "default": "start_of_last_month"},
                   {"name": "end_of_last_month", "type": "date", "default": "end_of_last_month"},
                   {"name": "fixed", "type": "date", "default": "2024-01-31"}]})");
  const ReportDefinition definition = Parsed(document);
  auto dates = [](const std::string& today, const std::string& yesterday, const std::string& week_ago,
                  const std::string& tomorrow, const std::string& week, const std::string& month,
                  const std::string& last_month, const std::string& end_of_last_month) {
    return json{{"today", today},
                {"yesterday", yesterday},
                {"week_ago", week_ago},
                {"tomorrow", tomorrow},
                {"same_day", today},
                {"start_of_week", week},
                {"start_of_month", month},
                {"start_of_last_month", last_month},
                {"end_of_last_month", end_of_last_month},
                {"fixed", "2024-01-31"}};
  };
  // Sunday 2024-03-31 23:59:59.999 in Moscow (UTC+3), then Monday 2024-04-01 00:00 there.
  const json sunday = dates("2024-03-31", "2024-03-30", "2024-03-24", "2024-04-01", "2024-03-25", "2024-03-01",
                            "2024-02-01", "2024-02-29");
  const json monday = dates("2024-04-01", "2024-03-31", "2024-03-25", "2024-04-02", "2024-04-01", "2024-04-01",
                            "2024-03-01", "2024-03-31");
  auto expect = [&](const json& given, const std::string& now, json expected) {
    SCOPED_TRACE(given.dump() + " at " + now);
    json bound = Bound(definition, given, At(now));
    expected["timezone"] = given.value("timezone", "UTC");
    EXPECT_EQ(bound, expected);
  };
  expect({{"timezone", "Europe/Moscow"}}, "2024-03-31T20:59:59.999Z", sunday);
  expect({{"timezone", "Europe/Moscow"}}, "2024-03-31T21:00:00.000Z", monday);
  // The same instants in UTC are both still Sunday; in New York (UTC-4 in DST) Sunday until 04:00 UTC.
  expect(json::object(), "2024-03-31T21:00:00.000Z", sunday);
  expect({{"timezone", "America/New_York"}}, "2024-04-01T03:59:59.999Z", sunday);
  expect({{"timezone", "America/New_York"}}, "2024-04-01T04:00:00.000Z", monday);
  // A given relative value is bound like a default; years and month lengths roll over.
  const json given = {{"timezone", "Asia/Tokyo"}, {"today", "today+1d"}, {"week_ago", "today-366d"},
                      {"end_of_last_month", "end_of_last_month"}, {"start_of_last_month", "start_of_last_month"}};
  json bound = Bound(definition, given, At("2024-12-31T15:00:00Z"));  // 2025-01-01 00:00 in Tokyo
  EXPECT_EQ(bound["today"], "2025-01-02");
  EXPECT_EQ(bound["yesterday"], "2024-12-31");
  EXPECT_EQ(bound["week_ago"], "2024-01-01");
  EXPECT_EQ(bound["start_of_week"], "2024-12-30");
  EXPECT_EQ(bound["start_of_last_month"], "2024-12-01");
  EXPECT_EQ(bound["end_of_last_month"], "2024-12-31");
}

TEST(ReportDefinitionTest, ScheduleParametersKeepRelativeDatesAndIgnoreTheirOrder) {
  json document = Valid();
  document["schedule"]["parameters"] = {{"period_start", "start_of_month"}, {"period_end", "yesterday"}};
  const ReportDefinition definition = Parsed(document);
  EXPECT_EQ(definition.schedule->parameters["period_start"], "start_of_month");
  EXPECT_EQ(ToDocument(definition)["schedule"]["parameters"], document["schedule"]["parameters"]);
  // On the first of a month "yesterday" precedes "start_of_month": the scheduled request is refused that day.
  EXPECT_FALSE(BindParameters(definition, definition.schedule->parameters, At("2024-06-01T12:00:00Z")).ok());
  EXPECT_OK(BindParameters(definition, definition.schedule->parameters, At("2024-06-02T12:00:00Z")));
}

// ---- Resolving sections ---------------------------------------------------------------------------------------

TEST(ReportDefinitionTest, PlaceholdersKeepTheBoundTypeOrBecomeText) {
  json document = Valid();
  document["parameters"].push_back({{"name", "games"}, {"type", "string_list"}, {"default", {"g1", "g2"}}});
  document["sections"][0] = {{"name", "kpis"},
                             {"title", "${label}: ${games}, top ${top}, share ${share}, ${strict}, [${segment}]"},
                             {"type", "metrics"},
                             {"metrics", {"dau"}},
                             {"granularity", "${granularity}"},
                             {"dimensions", "${games}"},
                             {"limit", "${top}"},
                             {"segment", "${segment}"},
                             {"filters", {{"property", "is_gift"}, {"op", "eq"}, {"value", "${strict}"}}}};
  const ReportDefinition definition = Parsed(document);
  const json bound = Bound(definition, {{"period_start", "2024-06-01"}, {"granularity", "week"}},
                           At("2024-06-15T12:00:00Z"));
  const json resolved = ResolveSection(definition, definition.sections[0], bound);
  EXPECT_EQ(resolved["title"], "KPIs: g1, g2, top 10, share 0.5, false, []");
  EXPECT_EQ(resolved["granularity"], "week");
  EXPECT_EQ(resolved["dimensions"], json::array({"g1", "g2"}));
  EXPECT_EQ(resolved["limit"], 10);
  EXPECT_TRUE(resolved["segment"].is_null());  // set by the section: null, not left out
  EXPECT_EQ(resolved["filters"]["value"], false);
  // The definition's own section keeps its placeholders.
  EXPECT_EQ(definition.sections[0].spec["limit"], "${top}");
}

TEST(ReportDefinitionTest, CommonParametersFillTheSectionsThatDoNotSetThem) {
  json document = Valid();
  document["sections"][0]["period_end"] = "2024-06-05";  // its own: kept
  const ReportDefinition definition = Parsed(document);
  const json bound = Bound(definition, {{"period_start", "2024-06-01"}, {"segment", "seg_7"}},
                           At("2024-06-15T12:00:00Z"));
  const json metrics = ResolveSection(definition, definition.sections[0], bound);
  EXPECT_EQ(metrics["period_start"], "2024-06-01");
  EXPECT_EQ(metrics["period_end"], "2024-06-05");
  EXPECT_EQ(metrics["timezone"], "Europe/Moscow");
  EXPECT_EQ(metrics["segment"], "seg_7");
  EXPECT_FALSE(metrics.contains("filters"));  // game_ids is empty
  for (size_t section_idx : {1, 2, 3}) {
    const json resolved = ResolveSection(definition, definition.sections[section_idx], bound);
    EXPECT_EQ(resolved["request"]["period_start"], "2024-06-01");
    EXPECT_EQ(resolved["request"]["period_end"], "2024-06-14");
    EXPECT_EQ(resolved["request"]["timezone"], "Europe/Moscow");
    EXPECT_EQ(resolved["request"]["segment"], "seg_7");
    EXPECT_FALSE(resolved.contains("period_start"));
  }
  EXPECT_EQ(ResolveSection(definition, definition.sections[4], bound), definition.sections[4].spec);
  // A null segment is left out (the API's default: no segment).
  const json unsegmented = Bound(definition, {{"period_start", "2024-06-01"}}, At("2024-06-15T12:00:00Z"));
  EXPECT_FALSE(ResolveSection(definition, definition.sections[0], unsegmented).contains("segment"));
  EXPECT_FALSE(ResolveSection(definition, definition.sections[1], unsegmented)["request"].contains("segment"));
  // Undeclared common parameters add nothing.
  const ReportDefinition plain = Parsed(json::parse(R"({"name": "p", "sections": [
      {"name": "s", "type": "metrics", "metrics": ["dau"], "period_start": "2024-01-01", "period_end": "2024-01-02"}]})"));
  EXPECT_EQ(ResolveSection(plain, plain.sections[0], Bound(plain, json::object(), 0)), plain.sections[0].spec);
}

TEST(ReportDefinitionTest, GameIdsAddAFilterToEverySectionWithFilters) {
  json document = Valid();
  document["sections"][0]["filters"] = {{"property", "country"}, {"op", "eq"}, {"value", "RU"}};
  const ReportDefinition definition = Parsed(document);
  const json bound = Bound(definition, {{"period_start", "2024-06-01"}, {"game_ids", {"g1", "g2"}}},
                           At("2024-06-15T12:00:00Z"));
  const json games = {{"property", "game_id"}, {"op", "in"}, {"value", {"g1", "g2"}}};
  // An object filter becomes a list of both; a list gets one more; no filters: the condition alone.
  EXPECT_EQ(ResolveSection(definition, definition.sections[0], bound)["filters"],
            json::array({document["sections"][0]["filters"], games}));
  EXPECT_EQ(ResolveSection(definition, definition.sections[1], bound)["request"]["filters"],
            json::array({document["sections"][1]["request"]["filters"][0], games}));
  EXPECT_EQ(ResolveSection(definition, definition.sections[2], bound)["request"]["filters"], games);
  EXPECT_EQ(ResolveSection(definition, definition.sections[3], bound)["request"]["filters"], games);
  EXPECT_FALSE(ResolveSection(definition, definition.sections[4], bound).contains("filters"));
  // A resolved section passes the section checks (the filter is a valid expression).
  for (const SectionSpec& section : definition.sections) {
    EXPECT_OK(CheckSection(ResolveSection(definition, section, bound), section.name));
  }
}

// ---- Built-ins ----------------------------------------------------------------------------------------------

TEST(ReportDefinitionTest, BuiltinsParseRoundTripAndBind) {
  const std::vector<json> builtins = BuiltinDefinitions();
  std::vector<std::string> names;
  for (const json& body : builtins) {
    SCOPED_TRACE(body.value("name", ""));
    const ReportDefinition definition = Parsed(body);
    names.push_back(definition.name);
    EXPECT_FALSE(definition.title.empty());
    EXPECT_FALSE(definition.description.empty());
    const json document = ToDocument(definition);
    EXPECT_EQ(ToDocument(Parsed(document)), document);
    json given = {{"period_start", "today-14d"}, {"period_end", "yesterday"}, {"timezone", "Europe/Moscow"}};
    if (definition.name == "experiment_readout") given["experiment_key"] = "checkout_v2";
    const json bound = Bound(definition, given, At("2024-03-20T10:00:00Z"));
    EXPECT_EQ(bound["period_start"], "2024-03-06");
    EXPECT_EQ(bound["period_end"], "2024-03-19");
    for (const SectionSpec& section : definition.sections) {
      const json resolved = ResolveSection(definition, section, bound);
      EXPECT_OK(CheckSection(resolved, section.name));
      EXPECT_EQ(resolved.dump().find("${"), std::string::npos) << resolved.dump();
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"daily_kpi_summary", "game_sales_by_country", "weekly_retention",
                                             "experiment_readout"}));
}

}  // namespace
}  // namespace analytics::reports
