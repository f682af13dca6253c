// Funnels: request → TimelineQuery + FunnelSpec → RunFunnel → document (docs/analysis.md, "Funnels").
#include "analysis/funnels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/parallel.h"
#include "query/funnel.h"
#include "query/timeline.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;

constexpr int64_t kMaxWindowSeconds = 366LL * 86400;
constexpr size_t kMaxHoldConstant = 3;
constexpr size_t kMaxExclusions = 10;
constexpr int64_t kDefaultBreakdownLimit = 100;
// Histogram edges of the time from the first to the last step, in seconds; those below the window are used and
// the window closes the last bin.
constexpr std::array<int64_t, 21> kHistogramEdges = {0,      10,      30,      60,      300,     600,     1800,
                                                     3600,   7200,    14400,   28800,   43200,   86400,   172800,
                                                     259200, 604800,  1209600, 2592000, 5184000, 7776000, 15552000};

struct FunnelStepRequest {
  std::string event_type;
  query::FilterExpr filter;
};

struct ExclusionRequest {
  std::string event_type;
  query::FilterExpr filter;
  size_t from_step = 0, to_step = 0;
};

struct FunnelRequest {
  CommonRequest common;
  std::vector<FunnelStepRequest> steps;
  int64_t window_seconds = 86400;
  std::string order = "ordered";
  std::string entry = "first_touch";
  std::vector<std::string> hold_constant;
  std::vector<ExclusionRequest> exclusions;
  std::optional<std::string> breakdown_property;
  std::string attribution = "first_step";
  int64_t breakdown_limit = kDefaultBreakdownLimit;
};

const json* Find(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

Result<FunnelRequest> Parse(const json& body, const Viewer& viewer, const AnalysisOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(
      CheckRequestFields(body, {"steps", "window_seconds", "order", "entry", "hold_constant", "exclusions", "breakdown"}));
  FunnelRequest request;
  ANALYTICS_ASSIGN_OR_RETURN(request.common, ParseCommon(body, viewer, options));

  const json* steps = Find(body, "steps");
  if (steps == nullptr) return Status::InvalidArgument("is required (2 to 20 steps)", "steps");
  if (!steps->is_array() || steps->size() < 2 || steps->size() > query::kMaxFunnelSteps) {
    return Status::InvalidArgument("must be an array of 2 to 20 steps", "steps");
  }
  for (size_t step_idx = 0; step_idx < steps->size(); ++step_idx) {
    const json& step = (*steps)[step_idx];
    const std::string path = Index("steps", step_idx);
    ANALYTICS_RETURN_IF_ERROR(CheckFields(step, {"event_type", "filters"}, path));
    FunnelStepRequest parsed;
    ANALYTICS_ASSIGN_OR_RETURN(parsed.event_type, EventType(step, "event_type", path));
    ANALYTICS_ASSIGN_OR_RETURN(parsed.filter, Filters(step, "filters", path));
    request.steps.push_back(std::move(parsed));
  }
  const size_t step_count = request.steps.size();

  ANALYTICS_ASSIGN_OR_RETURN(request.window_seconds, IntegerIn(body, "window_seconds", "", 1, kMaxWindowSeconds, 86400));
  ANALYTICS_ASSIGN_OR_RETURN(request.order, Choice(body, "order", "", {"ordered", "strict", "any_order"}, "ordered"));
  ANALYTICS_ASSIGN_OR_RETURN(request.entry, Choice(body, "entry", "", {"first_touch", "any_touch"}, "first_touch"));

  if (const json* hold = Find(body, "hold_constant")) {
    if (!hold->is_array() || hold->size() > kMaxHoldConstant) {
      return Status::InvalidArgument("must be an array of at most 3 property names", "hold_constant");
    }
    for (size_t hold_idx = 0; hold_idx < hold->size(); ++hold_idx) {
      const std::string path = Index("hold_constant", hold_idx);
      ANALYTICS_ASSIGN_OR_RETURN(std::string name, PropertyName((*hold)[hold_idx], path));
      if (std::find(request.hold_constant.begin(), request.hold_constant.end(), name) != request.hold_constant.end()) {
        return Status::InvalidArgument("'" + name + "' is listed twice", path);
      }
      request.hold_constant.push_back(std::move(name));
    }
  }

  if (const json* exclusions = Find(body, "exclusions")) {
    if (!exclusions->is_array() || exclusions->size() > kMaxExclusions) {
      return Status::InvalidArgument("must be an array of at most 10 exclusions", "exclusions");
    }
    for (size_t exclusion_idx = 0; exclusion_idx < exclusions->size(); ++exclusion_idx) {
      const json& exclusion = (*exclusions)[exclusion_idx];
      const std::string path = Index("exclusions", exclusion_idx);
      ANALYTICS_RETURN_IF_ERROR(CheckFields(exclusion, {"event_type", "filters", "between"}, path));
      ExclusionRequest parsed;
      ANALYTICS_ASSIGN_OR_RETURN(parsed.event_type, EventType(exclusion, "event_type", path));
      ANALYTICS_ASSIGN_OR_RETURN(parsed.filter, Filters(exclusion, "filters", path));
      parsed.from_step = 0;
      parsed.to_step = step_count - 1;
      if (const json* between = Find(exclusion, "between")) {
        const std::string where = Member(path, "between");
        const std::string message = "must be [a, b]: step indexes with 0 <= a < b <= " + std::to_string(step_count - 1);
        if (!between->is_array() || between->size() != 2 || !(*between)[0].is_number_integer() ||
            !(*between)[1].is_number_integer()) {
          return Status::InvalidArgument(message, where);
        }
        const int64_t from = (*between)[0].get<int64_t>(), to = (*between)[1].get<int64_t>();
        if (from < 0 || to <= from || to > static_cast<int64_t>(step_count - 1)) {
          return Status::InvalidArgument(message, where);
        }
        parsed.from_step = static_cast<size_t>(from);
        parsed.to_step = static_cast<size_t>(to);
      }
      request.exclusions.push_back(std::move(parsed));
    }
  }

  if (const json* breakdown = Find(body, "breakdown")) {
    ANALYTICS_RETURN_IF_ERROR(CheckFields(*breakdown, {"property", "attribution", "limit"}, "breakdown"));
    const json* property = Find(*breakdown, "property");
    if (property == nullptr) return Status::InvalidArgument("is required", "breakdown.property");
    ANALYTICS_ASSIGN_OR_RETURN(request.breakdown_property, PropertyName(*property, "breakdown.property"));
    ANALYTICS_ASSIGN_OR_RETURN(request.attribution,
                               Choice(*breakdown, "attribution", "breakdown", {"first_step", "last_step"}, "first_step"));
    ANALYTICS_ASSIGN_OR_RETURN(request.breakdown_limit,
                               IntegerIn(*breakdown, "limit", "breakdown", 1, 1000, kDefaultBreakdownLimit));
  }
  return request;
}

// Seconds of a duration in ms, as the document reports them.
double Seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

// The median of ascending durations (the mean of the two middle ones for an even count), null when empty.
json Median(const std::vector<int64_t>& sorted_ms) {
  if (sorted_ms.empty()) return nullptr;
  const size_t mid = sorted_ms.size() / 2;
  if (sorted_ms.size() % 2 == 1) return Seconds(sorted_ms[mid]);
  return (Seconds(sorted_ms[mid - 1]) + Seconds(sorted_ms[mid])) / 2.0;
}

// Percentile p (0..100) of ascending durations, Hyndman-Fan type 7 (linear between closest ranks).
double Percentile(const std::vector<int64_t>& sorted_ms, double p) {
  const double rank = (static_cast<double>(sorted_ms.size()) - 1.0) * p / 100.0;
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, sorted_ms.size() - 1);
  const double fraction = rank - static_cast<double>(low);
  return Seconds(sorted_ms[low]) + fraction * (Seconds(sorted_ms[high]) - Seconds(sorted_ms[low]));
}

json Rate(uint64_t numerator, uint64_t denominator) {
  if (denominator == 0) return nullptr;
  return static_cast<double>(numerator) / static_cast<double>(denominator);
}

json StepsJson(const FunnelRequest& request, const query::FunnelGroup& group, bool suppressed) {
  json steps = json::array();
  for (size_t step_idx = 0; step_idx < group.steps.size(); ++step_idx) {
    const query::FunnelStepOutcome& step = group.steps[step_idx];
    json out = {{"event_type", request.steps[step_idx].event_type}};
    if (suppressed) {
      for (const char* name : {"users", "dropped_off", "conversion_from_previous", "conversion_from_first",
                               "median_seconds_to_convert", "median_seconds_from_first"}) {
        out[name] = nullptr;
      }
      steps.push_back(std::move(out));
      continue;
    }
    const uint64_t first = group.steps[0].users;
    const uint64_t previous = step_idx == 0 ? first : group.steps[step_idx - 1].users;
    out["users"] = step.users;
    out["dropped_off"] = step_idx == 0 ? json(nullptr) : json(previous - step.users);
    out["conversion_from_previous"] = Rate(step.users, previous);
    out["conversion_from_first"] = Rate(step.users, first);
    out["median_seconds_to_convert"] = step_idx == 0 ? json(nullptr) : Median(step.ms_from_previous);
    out["median_seconds_from_first"] = step_idx == 0 ? json(nullptr) : Median(step.ms_from_first);
    steps.push_back(std::move(out));
  }
  return steps;
}

// The distribution of the time from the first to the last step of the users who reach the last step.
json TimeToConvert(const FunnelRequest& request, const query::FunnelGroup& group, bool suppressed) {
  if (suppressed) return nullptr;
  const std::vector<int64_t>& sorted_ms = group.steps.back().ms_from_first;
  json out = {{"users", sorted_ms.size()}};
  if (sorted_ms.empty()) {
    out["mean_seconds"] = nullptr;
    out["median_seconds"] = nullptr;
    out["percentiles"] = nullptr;
  } else {
    double sum = 0;
    for (int64_t ms : sorted_ms) sum += Seconds(ms);
    out["mean_seconds"] = sum / static_cast<double>(sorted_ms.size());
    out["median_seconds"] = Median(sorted_ms);
    json percentiles = json::object();
    static constexpr std::pair<const char*, double> kPercentiles[] = {{"p10", 10}, {"p25", 25}, {"p50", 50}, {"p75", 75},
                                                                      {"p90", 90}, {"p95", 95}, {"p99", 99}};
    for (const auto& [name, p] : kPercentiles) percentiles[name] = Percentile(sorted_ms, p);
    out["percentiles"] = std::move(percentiles);
  }
  std::vector<int64_t> edges;
  for (int64_t edge : kHistogramEdges) {
    if (edge < request.window_seconds) edges.push_back(edge);
  }
  edges.push_back(request.window_seconds);
  json histogram = json::array();
  auto it = sorted_ms.begin();
  for (size_t bin = 0; bin + 1 < edges.size(); ++bin) {
    const bool last = bin + 2 == edges.size();
    // [from, to) seconds; the last bin also holds `to` (the window is inclusive).
    auto end = last ? sorted_ms.end() : std::lower_bound(it, sorted_ms.end(), edges[bin + 1] * 1000);
    histogram.push_back({{"from_seconds", edges[bin]}, {"to_seconds", edges[bin + 1]}, {"users", end - it}});
    it = end;
  }
  out["histogram"] = std::move(histogram);
  return out;
}

// The funnel of `request` over the store: the one Timeline read (the segment's users only, when it names one) and
// the engine. `breakdown`: by the request's breakdown property, if any; `collect_users`: each step's users too.
// The Timeline read is the same either way (its breakdown key included), so that asking for the users of a funnel
// just shown finds its rows in the store's cache.
Result<query::FunnelResult> ComputeFunnel(store::EventStore& store, const FunnelRequest& request,
                                          const AnalysisOptions& options, bool breakdown, bool collect_users) {
  query::TimelineQuery timeline_query;
  for (const auto& step : request.steps) timeline_query.selectors.push_back({{step.event_type}, step.filter});
  for (const auto& exclusion : request.exclusions) {
    timeline_query.selectors.push_back({{exclusion.event_type}, exclusion.filter});
  }
  timeline_query.filter = request.common.filter;
  timeline_query.keys = request.hold_constant;
  if (request.breakdown_property) timeline_query.keys.push_back(*request.breakdown_property);
  timeline_query.from_ms = request.common.start_ms;
  timeline_query.to_ms = request.common.end_ms;
  timeline_query.scope = request.common.scope;
  ANALYTICS_ASSIGN_OR_RETURN(auto timeline, store.ReadTimeline(timeline_query));

  query::FunnelSpec spec;
  spec.steps = request.steps.size();
  for (size_t exclusion_idx = 0; exclusion_idx < request.exclusions.size(); ++exclusion_idx) {
    spec.exclusions.push_back({spec.steps + exclusion_idx, request.exclusions[exclusion_idx].from_step,
                               request.exclusions[exclusion_idx].to_step});
  }
  spec.window_ms = request.window_seconds * 1000;
  spec.order = request.order == "strict"      ? query::FunnelOrder::kStrict
               : request.order == "any_order" ? query::FunnelOrder::kAnyOrder
                                              : query::FunnelOrder::kOrdered;
  spec.entry = request.entry == "any_touch" ? query::FunnelEntry::kAnyTouch : query::FunnelEntry::kFirstTouch;
  spec.hold_keys = request.hold_constant.size();
  if (breakdown && request.breakdown_property) spec.breakdown_key = request.hold_constant.size();
  spec.attribution =
      request.attribution == "last_step" ? query::FunnelAttribution::kLastStep : query::FunnelAttribution::kFirstStep;
  spec.threads = common::QueryThreads(static_cast<int>(options.query_threads));
  spec.collect_users = collect_users;
  return query::RunFunnel(*timeline, spec);
}

}  // namespace

Result<json> RunFunnels(store::EventStore& store, const json& body, const Viewer& viewer,
                        const AnalysisOptions& options) {
  ANALYTICS_ASSIGN_OR_RETURN(FunnelRequest request, Parse(body, viewer, options));
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, request.common));
  ANALYTICS_ASSIGN_OR_RETURN(query::FunnelResult result, ComputeFunnel(store, request, options, true, false));

  const CommonRequest& common = request.common;
  auto small = [&](const query::FunnelGroup& group) {
    const uint64_t users = group.steps[0].users;
    return common.k_anonymity && users > 0 && users < static_cast<uint64_t>(common.k);
  };
  uint64_t suppressed_groups = 0;
  json document = Echo(common);
  document["order"] = request.order;
  document["entry"] = request.entry;
  document["window_seconds"] = request.window_seconds;
  document["hold_constant"] = request.hold_constant;
  const bool total_suppressed = small(result.total);
  suppressed_groups += total_suppressed;
  document["steps"] = StepsJson(request, result.total, total_suppressed);
  document["time_to_convert"] = TimeToConvert(request, result.total, total_suppressed);
  if (request.breakdown_property) {
    std::vector<const query::FunnelGroup*> groups;
    for (const auto& group : result.breakdown) {
      if (small(group)) {
        ++suppressed_groups;
      } else {
        groups.push_back(&group);
      }
    }
    // Most users at step 0 first; ties in value order (the engine's order: text order, null last).
    std::stable_sort(groups.begin(), groups.end(), [](const query::FunnelGroup* a, const query::FunnelGroup* b) {
      return a->steps[0].users > b->steps[0].users;
    });
    const size_t shown = std::min(groups.size(), static_cast<size_t>(request.breakdown_limit));
    json breakdown = json::array();
    for (size_t group_idx = 0; group_idx < shown; ++group_idx) {
      const query::FunnelGroup& group = *groups[group_idx];
      breakdown.push_back({{"value", group.value ? json(*group.value) : json(nullptr)},
                           {"steps", StepsJson(request, group, false)},
                           {"time_to_convert", TimeToConvert(request, group, false)}});
    }
    document["breakdown_by"] = {{"property", *request.breakdown_property},
                                {"attribution", request.attribution},
                                {"limit", request.breakdown_limit},
                                {"omitted_groups", groups.size() - shown}};
    document["breakdown"] = std::move(breakdown);
  }
  AddKAnonymity(document, common, suppressed_groups);
  return document;
}

Result<query::Roaring> FunnelUsers(store::EventStore& store, const json& body, const Viewer& viewer,
                                   const AnalysisOptions& options, int64_t step, const std::string& which) {
  ANALYTICS_ASSIGN_OR_RETURN(FunnelRequest request, Parse(body, viewer, options));
  const int64_t last = static_cast<int64_t>(request.steps.size()) - 1;
  if (which != "reached" && which != "dropped" && which != "converted") {
    return Status::InvalidArgument("must be one of reached, dropped, converted", "which");
  }
  if (step < 0 || step > last || (which == "dropped" && step == last)) {
    return Status::InvalidArgument(
        "must be a step index from 0 to " + std::to_string(which == "dropped" ? last - 1 : last) +
            (which == "dropped" ? " (no one drops off after the last step)" : ""),
        "step");
  }
  // User lists are individual data: a k-anonymous viewer (a developer) may only see groups of k users or more,
  // which a list of ids does not respect.
  if (request.common.k_anonymity) {
    return Status::PermissionDenied("the users of a funnel step are not available to k-anonymous viewers");
  }
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, request.common));
  ANALYTICS_ASSIGN_OR_RETURN(query::FunnelResult result, ComputeFunnel(store, request, options, false, true));
  std::vector<query::FunnelStepOutcome>& steps = result.total.steps;
  if (which == "converted") return std::move(steps.back().user_ids);
  const size_t index = static_cast<size_t>(step);
  if (which == "reached") return std::move(steps[index].user_ids);
  return steps[index].user_ids - steps[index + 1].user_ids;
}

}  // namespace analytics::analysis
