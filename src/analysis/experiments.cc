// Experiments: request parsing, the timeline plan, the reported variants (split, control, k-anonymity) and the
// response document.
#include "analysis/experiments.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "query/experiment.h"
#include "query/filter_expr.h"
#include "query/metric_definition.h"
#include "query/timeline.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;
using query::GoalKind;

constexpr const char* kDefaultExposureEvent = "com.platform.experiments.exposure.recorded.v1";
constexpr size_t kMaxTextBytes = 256;         // experiment key, control and split variant names
constexpr size_t kMaxSplitVariants = 100;
constexpr int64_t kMaxWindowSeconds = 365LL * 86400;

struct Goal {
  GoalKind kind = GoalKind::kConversion;
  std::string event_type;
  query::FilterExpr filter;
  json filters = nullptr;        // as given (echoed)
  std::string property;          // mean goals
  std::optional<int64_t> window_seconds;
};

struct ExperimentRequest {
  CommonRequest common;
  std::string experiment;
  std::string exposure_event;
  std::string experiment_property;
  std::string variant_property;
  std::string control;
  std::vector<Goal> goals;
  std::optional<std::map<std::string, double>> split;
};

Result<std::string> Text(const json& body, std::string_view name, const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string text, RequiredString(body, name, path));
  if (text.empty() || text.size() > kMaxTextBytes) {
    return Status::InvalidArgument("must be a string of 1 to 256 bytes", Member(path, name));
  }
  return text;
}

// A property path member (default `fallback` when absent).
Result<std::string> PropertyPath(const json& object, std::string_view name, const std::string& path,
                                 std::optional<std::string_view> fallback) {
  auto it = object.find(std::string(name));
  if (it == object.end() || it->is_null()) {
    if (fallback) return std::string(*fallback);
    return Status::InvalidArgument("is required (a property path)", Member(path, name));
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::string property, PropertyName(*it, Member(path, name)));
  if (!query::IsValidPropertyPath(property)) {
    return Status::InvalidArgument("must be a property path: identifiers joined by dots", Member(path, name));
  }
  return property;
}

Result<Goal> ParseGoal(const json& item, const std::string& path) {
  ANALYTICS_RETURN_IF_ERROR(CheckFields(item, {"kind", "event_type", "filters", "window_seconds", "property"}, path));
  Goal goal;
  ANALYTICS_ASSIGN_OR_RETURN(std::string kind, Choice(item, "kind", path, {"conversion", "mean"}, "conversion"));
  goal.kind = kind == "mean" ? GoalKind::kMean : GoalKind::kConversion;
  ANALYTICS_ASSIGN_OR_RETURN(goal.event_type, EventType(item, "event_type", path));
  ANALYTICS_ASSIGN_OR_RETURN(goal.filter, Filters(item, "filters", path));
  if (auto it = item.find("filters"); it != item.end()) goal.filters = *it;
  if (item.contains("window_seconds") && !item["window_seconds"].is_null()) {
    ANALYTICS_ASSIGN_OR_RETURN(goal.window_seconds, IntegerIn(item, "window_seconds", path, 1, kMaxWindowSeconds, 0));
  }
  if (goal.kind == GoalKind::kMean) {
    ANALYTICS_ASSIGN_OR_RETURN(goal.property, PropertyPath(item, "property", path, std::nullopt));
  } else if (item.contains("property") && !item["property"].is_null()) {
    return Status::InvalidArgument("is only read by mean goals (kind \"mean\")", Member(path, "property"));
  }
  return goal;
}

Result<ExperimentRequest> Parse(const json& body, const Viewer& viewer, const AnalysisOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(CheckRequestFields(body,
                                        {"experiment", "exposure_event", "experiment_property", "variant_property",
                                         "control", "goals", "split"}));
  ExperimentRequest request;
  ANALYTICS_ASSIGN_OR_RETURN(request.common, ParseCommon(body, viewer, options));
  ANALYTICS_ASSIGN_OR_RETURN(request.experiment, Text(body, "experiment", ""));
  request.exposure_event = kDefaultExposureEvent;
  if (body.contains("exposure_event") && !body["exposure_event"].is_null()) {
    ANALYTICS_ASSIGN_OR_RETURN(request.exposure_event, EventType(body, "exposure_event", ""));
  }
  ANALYTICS_ASSIGN_OR_RETURN(request.experiment_property,
                             PropertyPath(body, "experiment_property", "", std::string_view("experiment")));
  ANALYTICS_ASSIGN_OR_RETURN(request.variant_property,
                             PropertyPath(body, "variant_property", "", std::string_view("variant")));
  ANALYTICS_ASSIGN_OR_RETURN(request.control, Text(body, "control", ""));

  auto goals = body.find("goals");
  if (goals == body.end() || goals->is_null()) return Status::InvalidArgument("is required (1 to 20 goals)", "goals");
  if (!goals->is_array() || goals->empty() || goals->size() > query::kMaxExperimentGoals) {
    return Status::InvalidArgument("must be an array of 1 to 20 goals", "goals");
  }
  for (size_t goal_idx = 0; goal_idx < goals->size(); ++goal_idx) {
    ANALYTICS_ASSIGN_OR_RETURN(Goal goal, ParseGoal((*goals)[goal_idx], Index("goals", goal_idx)));
    request.goals.push_back(std::move(goal));
  }

  if (auto split = body.find("split"); split != body.end() && !split->is_null()) {
    if (!split->is_object() || split->empty() || split->size() > kMaxSplitVariants) {
      return Status::InvalidArgument("must be an object of 1 to 100 variants and their shares", "split");
    }
    std::map<std::string, double> shares;
    for (const auto& [variant, share] : split->items()) {
      if (variant.empty() || variant.size() > kMaxTextBytes) {
        return Status::InvalidArgument("variant names must have 1 to 256 bytes", "split");
      }
      if (!share.is_number() || !std::isfinite(share.get<double>()) || !(share.get<double>() > 0)) {
        return Status::InvalidArgument("must be a positive number (the variant's share)", Member("split", variant));
      }
      shares[variant] = share.get<double>();
    }
    if (!shares.contains(request.control)) {
      return Status::InvalidArgument("must give a share for the control variant '" + request.control + "'", "split");
    }
    request.split = std::move(shares);
  }
  return request;
}

// The timelines to read and where each goal's events are in them. Timeline 0 holds only the exposures
// (selector 0, key 0 the variant): it is the same for every question about the experiment, so the store's cached
// rows serve them all whatever their goals (reading the exposures' experiment and variant is most of a cold
// question's time). Timeline 1 holds the conversion goals and the mean goals of the first mean goal's property;
// each further property of mean goals has its own timeline (a timeline carries one number). Goals with the same
// event type and filters share a selector.
struct Plan {
  std::vector<query::TimelineQuery> queries;
  std::vector<query::ExperimentGoal> goals;
};

Plan MakePlan(const ExperimentRequest& request) {
  Plan plan;
  auto add_query = [&]() -> query::TimelineQuery& {
    query::TimelineQuery& query = plan.queries.emplace_back();
    query.filter = request.common.filter;
    query.from_ms = request.common.start_ms;
    query.to_ms = request.common.end_ms;
    query.scope = request.common.scope;
    return query;
  };
  query::TimelineQuery& exposures = add_query();
  query::PropertyFilter is_experiment;
  is_experiment.property = request.experiment_property;
  is_experiment.op = query::FilterOp::kEq;
  is_experiment.value = request.experiment;
  exposures.selectors.push_back({{request.exposure_event}, query::FilterExpr::Condition(std::move(is_experiment))});
  exposures.keys = {request.variant_property};
  query::TimelineQuery& first_goals = add_query();
  for (const Goal& goal : request.goals) {
    if (goal.kind == GoalKind::kMean) {
      first_goals.number_property = goal.property;
      break;
    }
  }
  for (const Goal& goal : request.goals) {
    size_t timeline = 1;
    if (goal.kind == GoalKind::kMean) {
      while (timeline < plan.queries.size() && plan.queries[timeline].number_property != goal.property) ++timeline;
      if (timeline == plan.queries.size()) add_query().number_property = goal.property;
    }
    auto& selectors = plan.queries[timeline].selectors;
    const std::string filter_text = goal.filter.ToString();
    size_t selector = 0;
    while (selector < selectors.size() && !(selectors[selector].event_types == std::vector{goal.event_type} &&
                                           selectors[selector].filter.ToString() == filter_text)) {
      ++selector;
    }
    if (selector == selectors.size()) selectors.push_back({{goal.event_type}, goal.filter});
    std::optional<int64_t> window_ms;
    if (goal.window_seconds) window_ms = *goal.window_seconds * 1000;
    plan.goals.push_back({goal.kind, timeline, selector, window_ms});
  }
  return plan;
}

json Number(const std::optional<double>& value) {
  if (!value || !std::isfinite(*value)) return nullptr;
  return *value;
}

json Pair(const std::optional<query::Interval>& interval) {
  if (!interval || !std::isfinite(interval->lo) || !std::isfinite(interval->hi)) return nullptr;
  return json::array({interval->lo, interval->hi});
}

json GoalJson(const query::GoalStats& goal) {
  json out = {{"converters", goal.converters},
              {"ci95", Pair(goal.ci95)},
              {"uplift", Number(goal.uplift)},
              {"uplift_ci95", Pair(goal.uplift_ci95)},
              {"difference", Number(goal.difference)},
              {"difference_ci95", Pair(goal.difference_ci95)},
              {"p_value", Number(goal.p_value)}};
  if (goal.kind == GoalKind::kConversion) {
    out["kind"] = "conversion";
    out["rate"] = Number(goal.rate);
    out["z"] = Number(goal.statistic);
  } else {
    out["kind"] = "mean";
    out["mean"] = Number(goal.mean);
    out["std_dev"] = Number(goal.std_dev);
    out["t"] = Number(goal.statistic);
    out["df"] = Number(goal.df);
  }
  return out;
}

}  // namespace

Result<json> RunExperiments(store::EventStore& store, const json& body, const Viewer& viewer,
                            const AnalysisOptions& options) {
  ANALYTICS_ASSIGN_OR_RETURN(ExperimentRequest request, Parse(body, viewer, options));
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, request.common));
  const Plan plan = MakePlan(request);
  std::vector<std::shared_ptr<const query::Timeline>> timelines;
  query::ExperimentInput input;
  for (const auto& query : plan.queries) {
    ANALYTICS_ASSIGN_OR_RETURN(auto timeline, store.ReadTimeline(query));
    input.timelines.push_back(timeline.get());
    timelines.push_back(std::move(timeline));
  }
  input.exposure_selector = 0;
  input.variant_key = 0;
  input.goals = plan.goals;
  input.start_ms = request.common.start_ms;
  input.end_ms = request.common.end_ms;
  const size_t threads = common::QueryThreads(static_cast<int>(options.query_threads));
  std::vector<query::VariantCounts> counts = query::CountExperiment(input, threads);

  // The reported variants: those seen (less those a developer may not see), those of the split, and the
  // control, each once.
  std::map<std::string, query::VariantCounts> by_name;
  std::set<std::string> suppressed;  // left out, and not to be reported empty either
  for (auto& variant : counts) {
    if (request.common.k_anonymity && variant.exposed_users < static_cast<uint64_t>(request.common.k)) {
      suppressed.insert(variant.variant);  // seen variants have at least one user
      continue;
    }
    std::string name = variant.variant;
    by_name.emplace(std::move(name), std::move(variant));
  }
  if (request.split) {
    for (const auto& [name, variant] : by_name) {
      if (!request.split->contains(name)) {
        return Status::InvalidArgument("has no share for variant '" + name +
                                           "', which has exposed users: give every variant a share",
                                       "split");
      }
    }
  }
  auto add_empty = [&](const std::string& name) {
    if (by_name.contains(name) || suppressed.contains(name)) return;
    query::VariantCounts& variant = by_name[name];
    variant.variant = name;
    variant.goals.resize(request.goals.size());
  };
  if (request.split) {
    for (const auto& [name, share] : *request.split) add_empty(name);
  }
  add_empty(request.control);
  std::vector<query::VariantCounts> reported;
  std::vector<double> shares;
  std::optional<size_t> control;
  auto report_variant = [&](query::VariantCounts& variant) {
    shares.push_back(request.split ? request.split->at(variant.variant) : (variant.exposed_users > 0 ? 1.0 : 0.0));
    reported.push_back(std::move(variant));
  };
  if (auto it = by_name.find(request.control); it != by_name.end()) {
    control = 0;
    report_variant(it->second);
    by_name.erase(it);
  }
  for (auto& [name, variant] : by_name) report_variant(variant);
  std::vector<GoalKind> kinds;
  for (const Goal& goal : request.goals) kinds.push_back(goal.kind);
  const query::ExperimentReport report = query::AnalyzeExperiment(reported, control, shares, kinds);

  json document = Echo(request.common);
  document["experiment"] = request.experiment;
  document["exposure_event"] = request.exposure_event;
  document["experiment_property"] = request.experiment_property;
  document["variant_property"] = request.variant_property;
  document["control"] = request.control;
  json goals = json::array();
  for (const Goal& goal : request.goals) {
    json item = {{"kind", goal.kind == GoalKind::kMean ? "mean" : "conversion"},
                 {"event_type", goal.event_type},
                 {"window_seconds", goal.window_seconds ? json(*goal.window_seconds) : json(nullptr)}};
    if (goal.kind == GoalKind::kMean) item["property"] = goal.property;
    if (!goal.filters.is_null()) item["filters"] = goal.filters;
    goals.push_back(std::move(item));
  }
  document["goals"] = std::move(goals);
  json variants = json::array();
  uint64_t multiple = 0;
  for (const query::VariantStats& variant : report.variants) {
    json goal_items = json::array();
    for (const query::GoalStats& goal : variant.goals) goal_items.push_back(GoalJson(goal));
    variants.push_back({{"variant", variant.variant},
                        {"control", variant.control},
                        {"exposed_users", variant.exposed_users},
                        {"users_with_multiple_variants", variant.users_with_multiple_variants},
                        {"goals", std::move(goal_items)}});
    multiple += variant.users_with_multiple_variants;
  }
  document["variants"] = std::move(variants);
  document["users_with_multiple_variants"] = multiple;
  json srm = {{"chi_square", Number(report.srm.chi_square)},
              {"df", report.srm.df},
              {"p_value", Number(report.srm.p_value)},
              {"ok", report.srm.ok ? json(*report.srm.ok) : json(nullptr)},
              {"threshold", query::kSrmThreshold},
              {"split", json::object()},
              {"expected", json::object()},
              {"observed", json::object()}};
  for (size_t item_idx = 0; item_idx < report.srm.variants.size(); ++item_idx) {
    const std::string& name = report.variants[report.srm.variants[item_idx]].variant;
    srm["split"][name] = report.srm.shares[item_idx];
    srm["expected"][name] = report.srm.expected[item_idx];
    srm["observed"][name] = report.srm.observed[item_idx];
  }
  document["srm"] = std::move(srm);
  AddKAnonymity(document, request.common, suppressed.size());
  return document;
}

}  // namespace analytics::analysis
