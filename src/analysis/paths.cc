// Paths requests: parsing, the Timeline to read, the count (query/paths.h), k-anonymity and the document.
#include "analysis/paths.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "query/paths.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;
using query::PathDirection;
using query::PathNodeKind;

constexpr size_t kMaxTypeList = 100;
constexpr int64_t kMaxPaths = 1000;
constexpr int64_t kMaxWindowSeconds = 3650LL * 86400;  // ten years

struct PathsRequest {
  CommonRequest common;
  std::string anchor_type;
  query::FilterExpr anchor_filter;
  std::string occurrence;  // "first" | "last"
  std::vector<std::string> event_types;  // empty: every type
  query::PathsSpec spec;
};

// An optional list of distinct event types (order kept, repeats dropped); absent or null: empty.
Result<std::vector<std::string>> TypeList(const json& body, const std::string& name) {
  const auto it = body.find(name);
  std::vector<std::string> types;
  if (it == body.end() || it->is_null()) return types;
  if (!it->is_array() || it->empty() || it->size() > kMaxTypeList) {
    return Status::InvalidArgument("must be a list of 1 to " + std::to_string(kMaxTypeList) + " event types", name);
  }
  for (size_t type_idx = 0; type_idx < it->size(); ++type_idx) {
    const json& type = (*it)[type_idx];
    if (!type.is_string() || type.get_ref<const std::string&>().empty() ||
        type.get_ref<const std::string&>().size() > 256) {
      return Status::InvalidArgument("must be an event type of 1 to 256 characters", Index(name, type_idx));
    }
    if (std::find(types.begin(), types.end(), type.get_ref<const std::string&>()) == types.end()) {
      types.push_back(type.get<std::string>());
    }
  }
  return types;
}

Result<PathsRequest> Parse(const json& body, const Viewer& viewer, const AnalysisOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(CheckRequestFields(body,
                                        {"start_event", "end_event", "steps", "collapse_repeats", "event_types",
                                         "exclude_event_types", "max_paths", "window_seconds"}));
  PathsRequest request;
  ANALYTICS_ASSIGN_OR_RETURN(request.common, ParseCommon(body, viewer, options));
  const auto start_it = body.find("start_event");
  const auto end_it = body.find("end_event");
  const bool has_start = start_it != body.end() && !start_it->is_null();
  const bool has_end = end_it != body.end() && !end_it->is_null();
  if (has_start == has_end) {
    return Status::InvalidArgument("give exactly one of start_event and end_event", has_end ? "end_event" : "start_event");
  }
  const std::string anchor_path = has_start ? "start_event" : "end_event";
  const json& anchor = has_start ? *start_it : *end_it;
  ANALYTICS_RETURN_IF_ERROR(CheckFields(anchor, {"event_type", "filters", "occurrence"}, anchor_path));
  ANALYTICS_ASSIGN_OR_RETURN(request.anchor_type, EventType(anchor, "event_type", anchor_path));
  ANALYTICS_ASSIGN_OR_RETURN(request.anchor_filter, Filters(anchor, "filters", anchor_path));
  ANALYTICS_ASSIGN_OR_RETURN(request.occurrence, Choice(anchor, "occurrence", anchor_path, {"first", "last"}, "first"));

  query::PathsSpec& spec = request.spec;
  spec.direction = has_start ? PathDirection::kAfterAnchor : PathDirection::kBeforeAnchor;
  spec.occurrence = request.occurrence == "first" ? query::AnchorOccurrence::kFirst : query::AnchorOccurrence::kLast;
  spec.anchor_mask = 1;
  spec.step_mask = 2;
  ANALYTICS_ASSIGN_OR_RETURN(const int64_t steps,
                             IntegerIn(body, "steps", "", 1, static_cast<int64_t>(query::kMaxPathSteps), 5));
  spec.steps = static_cast<size_t>(steps);
  ANALYTICS_ASSIGN_OR_RETURN(spec.collapse_repeats, Boolean(body, "collapse_repeats", "", false));
  ANALYTICS_ASSIGN_OR_RETURN(const int64_t max_paths, IntegerIn(body, "max_paths", "", 1, kMaxPaths, 20));
  spec.max_paths = static_cast<size_t>(max_paths);
  const auto window_it = body.find("window_seconds");
  if (window_it != body.end() && !window_it->is_null()) {
    ANALYTICS_ASSIGN_OR_RETURN(const int64_t window, IntegerIn(body, "window_seconds", "", 1, kMaxWindowSeconds, {}));
    spec.window_ms = window * 1000;
  }
  ANALYTICS_ASSIGN_OR_RETURN(request.event_types, TypeList(body, "event_types"));
  ANALYTICS_ASSIGN_OR_RETURN(spec.excluded_types, TypeList(body, "exclude_event_types"));
  if (!request.event_types.empty()) {
    // Excluded types are simply not read.
    std::erase_if(request.event_types, [&](const std::string& type) {
      return std::find(spec.excluded_types.begin(), spec.excluded_types.end(), type) != spec.excluded_types.end();
    });
    if (request.event_types.empty()) {
      return Status::InvalidArgument("excludes every type of event_types: no event could be a step",
                                     "exclude_event_types");
    }
  }
  spec.min_users = request.common.k_anonymity ? static_cast<uint64_t>(std::max(1, request.common.k)) : 1;
  return request;
}

std::string KindName(PathNodeKind kind, PathDirection direction) {
  switch (kind) {
    case PathNodeKind::kEvent: return "event";
    case PathNodeKind::kOther: return "other";
    case PathNodeKind::kBoundary: return direction == PathDirection::kAfterAnchor ? "end" : "start";
  }
  return "event";
}

}  // namespace

Result<json> RunPaths(store::EventStore& store, const json& body, const Viewer& viewer, const AnalysisOptions& options) {
  ANALYTICS_ASSIGN_OR_RETURN(PathsRequest request, Parse(body, viewer, options));
  const CommonRequest& common = request.common;
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, common));
  const query::PathsSpec& spec = request.spec;

  query::TimelineQuery timeline_query;
  timeline_query.selectors.push_back({{request.anchor_type}, request.anchor_filter});  // bit 0: the anchor
  timeline_query.selectors.push_back({request.event_types, query::FilterExpr()});      // bit 1: steps
  timeline_query.filter = common.filter;
  timeline_query.from_ms = common.start_ms;
  timeline_query.to_ms = common.end_ms;
  timeline_query.scope = common.scope;
  ANALYTICS_ASSIGN_OR_RETURN(auto timeline, store.ReadTimeline(timeline_query));
  const size_t threads = common::QueryThreads(static_cast<int>(options.query_threads));
  const query::PathsResult result = query::CountPaths(*timeline, spec, threads);
  const query::PathGraph graph = query::MakePathGraph(result, spec);

  const std::vector<std::string>& names = timeline->type_names;
  const uint64_t users = result.reported_users();
  json paths = json::array();
  for (const query::PathCount& path : result.top) {
    json steps = json::array();
    for (uint32_t type : path.types) steps.push_back(names[type]);
    paths.push_back({{"steps", std::move(steps)},
                     {"users", path.users},
                     {"share", static_cast<double>(path.users) / static_cast<double>(users)}});
  }
  json nodes = json::array();
  for (size_t node_idx = 0; node_idx < graph.nodes.size(); ++node_idx) {
    const query::PathNode& node = graph.nodes[node_idx];
    const bool event = node.kind == PathNodeKind::kEvent;
    const std::string kind = KindName(node.kind, spec.direction);
    nodes.push_back({{"id", node_idx},
                     {"step", node.step},
                     {"kind", kind},
                     {"event_type", event ? json(names[node.type]) : json(nullptr)},
                     {"label", event ? names[node.type] : "(" + kind + ")"},
                     {"users", node.users}});
  }
  json links = json::array();
  for (const query::PathLink& link : graph.links) {
    links.push_back({{"source", link.source}, {"target", link.target}, {"users", link.users}});
  }

  json document = Echo(common);
  const bool after = spec.direction == PathDirection::kAfterAnchor;
  document["direction"] = after ? "after_start_event" : "before_end_event";
  document["anchor"] = {{"event", after ? "start_event" : "end_event"},
                        {"event_type", request.anchor_type},
                        {"occurrence", request.occurrence}};
  document["steps"] = spec.steps;
  document["collapse_repeats"] = spec.collapse_repeats;
  document["window_seconds"] = spec.window_ms ? json(*spec.window_ms / 1000) : json(nullptr);
  document["users"] = users;
  document["paths"] = std::move(paths);
  document["other_paths"] = result.other_paths;
  document["other_paths_users"] = result.other_users;
  document["nodes"] = std::move(nodes);
  document["links"] = std::move(links);
  AddKAnonymity(document, common, result.suppressed_paths);
  return document;
}

}  // namespace analytics::analysis
