// Retention requests: parse, read the start events' timeline and the return events' users per local day, count
// (query/retention.h), apply k-anonymity, answer.
#include "analysis/retention.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <absl/time/civil_time.h>

#include "common/parallel.h"
#include "common/time_util.h"
#include "query/retention.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;
using query::FilterExpr;

constexpr size_t kMaxPeriods = 100;
constexpr size_t kMaxCells = 200000;  // cohorts x periods in one answer

struct EventSelector {
  std::optional<std::string> event_type;  // nullopt: any type
  FilterExpr filter;
};

struct RetentionRequest {
  CommonRequest common;
  EventSelector start;
  std::optional<std::string> cohort_property;  // cohorts by a date property instead of a start event
  std::vector<EventSelector> returns;          // empty: any event
  query::RetentionSpec spec;
};

const json* FindMember(const json& object, const char* name) {
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

Result<EventSelector> ParseSelector(const json& object, const std::string& path, bool type_required,
                                    std::initializer_list<std::string_view> known) {
  ANALYTICS_RETURN_IF_ERROR(CheckFields(object, known, path));
  EventSelector selector;
  if (type_required || FindMember(object, "event_type") != nullptr) {
    ANALYTICS_ASSIGN_OR_RETURN(selector.event_type, EventType(object, "event_type", path));
  }
  ANALYTICS_ASSIGN_OR_RETURN(selector.filter, Filters(object, "filters", path));
  return selector;
}

Result<std::vector<int>> ParsePeriods(const json& body, bool& triangle) {
  const json* periods = FindMember(body, "periods");
  triangle = false;
  if (periods == nullptr) return std::vector<int>{1, 7, 30};
  if (periods->is_string()) {
    if (periods->get_ref<const std::string&>() != "triangle") {
      return Status::InvalidArgument("must be \"triangle\" or an array of days", "periods");
    }
    triangle = true;
    return std::vector<int>();
  }
  if (!periods->is_array() || periods->empty() || periods->size() > kMaxPeriods) {
    return Status::InvalidArgument("must be \"triangle\" or an array of 1 to " + std::to_string(kMaxPeriods) +
                                       " days (integers from 0 to " + std::to_string(query::kMaxRetentionPeriod) + ")",
                                   "periods");
  }
  std::vector<int> out;
  std::set<int64_t> seen;
  for (size_t period_idx = 0; period_idx < periods->size(); ++period_idx) {
    const json& item = (*periods)[period_idx];
    const std::string where = Index("periods", period_idx);
    if (!item.is_number_integer() || (item.is_number_unsigned() && item.get<uint64_t>() > 3650) ||
        item.get<int64_t>() < 0 || item.get<int64_t>() > query::kMaxRetentionPeriod) {
      return Status::InvalidArgument("must be an integer from 0 to " + std::to_string(query::kMaxRetentionPeriod),
                                     where);
    }
    if (!seen.insert(item.get<int64_t>()).second) return Status::InvalidArgument("is listed twice", where);
    out.push_back(static_cast<int>(item.get<int64_t>()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<RetentionRequest> Parse(const json& body, const Viewer& viewer, const AnalysisOptions& options, int64_t now_ms) {
  ANALYTICS_RETURN_IF_ERROR(
      CheckRequestFields(body, {"start_event", "return_event", "cohort_granularity", "periods", "mode", "cohort_type"}));
  RetentionRequest request;
  ANALYTICS_ASSIGN_OR_RETURN(request.common, ParseCommon(body, viewer, options));

  const json* start = FindMember(body, "start_event");
  if (start == nullptr) return Status::InvalidArgument("is required", "start_event");
  if (!start->is_object()) return Status::InvalidArgument("must be a JSON object", "start_event");
  if (const json* property = FindMember(*start, "property")) {
    ANALYTICS_ASSIGN_OR_RETURN(request.cohort_property, PropertyName(*property, "start_event.property"));
    ANALYTICS_ASSIGN_OR_RETURN(request.start,
                               ParseSelector(*start, "start_event", false, {"event_type", "filters", "property"}));
  } else {
    ANALYTICS_ASSIGN_OR_RETURN(request.start,
                               ParseSelector(*start, "start_event", true, {"event_type", "filters", "property"}));
  }

  if (const json* returns = FindMember(body, "return_event")) {
    if (returns->is_object()) {
      ANALYTICS_ASSIGN_OR_RETURN(auto selector, ParseSelector(*returns, "return_event", false, {"event_type", "filters"}));
      request.returns.push_back(std::move(selector));
    } else if (returns->is_array() && !returns->empty() && returns->size() <= query::kMaxTimelineSelectors) {
      for (size_t return_idx = 0; return_idx < returns->size(); ++return_idx) {
        ANALYTICS_ASSIGN_OR_RETURN(auto selector, ParseSelector((*returns)[return_idx], Index("return_event", return_idx),
                                                                false, {"event_type", "filters"}));
        request.returns.push_back(std::move(selector));
      }
    } else {
      return Status::InvalidArgument("must be null (any event), an object {event_type, filters} or an array of 1 to " +
                                         std::to_string(query::kMaxTimelineSelectors) + " of them",
                                     "return_event");
    }
  }

  query::RetentionSpec& spec = request.spec;
  ANALYTICS_ASSIGN_OR_RETURN(std::string granularity,
                             Choice(body, "cohort_granularity", "", {"day", "week", "month"}, "week"));
  spec.cohort_granularity = *query::GranularityFromName(granularity);
  ANALYTICS_ASSIGN_OR_RETURN(spec.periods, ParsePeriods(body, spec.triangle));
  ANALYTICS_ASSIGN_OR_RETURN(std::string mode, Choice(body, "mode", "", {"on_day", "on_or_after"}, "on_day"));
  spec.mode = mode == "on_day" ? query::RetentionMode::kOnDay : query::RetentionMode::kOnOrAfter;
  ANALYTICS_ASSIGN_OR_RETURN(std::string type, Choice(body, "cohort_type", "", {"first_time", "recurring"}, "first_time"));
  spec.cohort_type = type == "first_time" ? query::CohortType::kFirstTime : query::CohortType::kRecurring;
  if (request.cohort_property && spec.cohort_type == query::CohortType::kRecurring) {
    return Status::InvalidArgument("must be first_time when start_event.property gives the cohort time",
                                   "cohort_type");
  }
  spec.zone = request.common.zone;
  spec.start_ms = request.common.start_ms;
  spec.end_ms = request.common.end_ms;
  spec.horizon_ms = std::min(request.common.end_ms, now_ms);
  return request;
}

FilterExpr And(const FilterExpr& a, const FilterExpr& b) { return FilterExpr::And({a, b}); }

// Per plan day, the users with a return event that day (in [period_start, H)): one AggregateQuery per selector
// with filters, one for all the selectors without (their types together), unions per day.
Result<std::vector<Roaring>> ReturnDays(store::EventStore& store, const RetentionRequest& request,
                                        const query::RetentionPlan& plan) {
  std::vector<Roaring> days(plan.days());
  if (plan.return_bounds().size() < 2) return days;
  std::vector<query::AggregateQuery> queries;
  auto make = [&](std::vector<std::string> types, const FilterExpr& filter) {
    query::AggregateQuery query;
    query.event_types = std::move(types);
    query.filter = And(request.common.filter, filter);
    query.bounds = plan.return_bounds();
    query.collect_users = true;
    query.scope = request.common.scope;
    queries.push_back(std::move(query));
  };
  bool any_type = request.returns.empty();
  std::set<std::string> plain_types;
  for (const EventSelector& selector : request.returns) {
    if (!selector.filter.IsTrue()) continue;
    if (!selector.event_type) any_type = true;
    else plain_types.insert(*selector.event_type);
  }
  if (any_type) {
    make({}, FilterExpr());  // every event: the other selectors add nothing
  } else {
    if (!plain_types.empty()) make({plain_types.begin(), plain_types.end()}, FilterExpr());
    for (const EventSelector& selector : request.returns) {
      if (selector.filter.IsTrue()) continue;
      make(selector.event_type ? std::vector<std::string>{*selector.event_type} : std::vector<std::string>(),
           selector.filter);
    }
  }
  for (const query::AggregateQuery& query : queries) {
    ANALYTICS_ASSIGN_OR_RETURN(auto result, store.Aggregate(query));
    for (const auto& [key, cells] : result->groups) {
      for (size_t bucket_idx = 0; bucket_idx < cells.size(); ++bucket_idx) {
        cells[bucket_idx].users.AddTo(days[plan.return_first_day() + bucket_idx]);
      }
    }
  }
  return days;
}

json Share(uint64_t part, uint64_t whole) {
  return whole == 0 ? json(nullptr) : json(static_cast<double>(part) / static_cast<double>(whole));
}

}  // namespace

Result<json> RunRetentionForTest(store::EventStore& store, const json& body, const Viewer& viewer,
                                 const AnalysisOptions& options, int64_t now_ms) {
  ANALYTICS_ASSIGN_OR_RETURN(RetentionRequest request, Parse(body, viewer, options, now_ms));
  const CommonRequest& common = request.common;
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, common));
  ANALYTICS_ASSIGN_OR_RETURN(query::RetentionPlan plan, query::RetentionPlan::Make(request.spec));
  if (plan.cohorts().size() * plan.periods().size() > kMaxCells) {
    return Status::InvalidArgument("asks for more than " + std::to_string(kMaxCells) +
                                       " cells (cohorts x periods): use a coarser cohort_granularity or fewer periods",
                                   "periods");
  }
  const size_t threads = common::QueryThreads(static_cast<int>(options.query_threads));

  // Cohort days: the start events from the beginning of the store (first_time, property) or of the period.
  query::TimelineQuery starts;
  query::TimelineSelector selector;
  if (request.start.event_type) selector.event_types = {*request.start.event_type};
  selector.filter = request.start.filter;
  if (request.cohort_property) {
    query::PropertyFilter carried;
    carried.property = *request.cohort_property;
    carried.op = query::FilterOp::kExists;
    carried.value = true;
    selector.filter = And(selector.filter, FilterExpr::Condition(std::move(carried)));
    starts.keys = {*request.cohort_property};
  }
  starts.selectors.push_back(std::move(selector));
  starts.filter = common.filter;
  starts.from_ms = request.spec.cohort_type == query::CohortType::kRecurring ? common.start_ms
                                                                              : std::numeric_limits<int64_t>::min();
  starts.to_ms = common.end_ms;
  starts.scope = common.scope;
  ANALYTICS_ASSIGN_OR_RETURN(auto timeline, store.ReadTimeline(starts));
  uint64_t unparsed_users = 0;
  const std::vector<Roaring> cohort_days =
      request.cohort_property ? query::CohortDaysFromProperty(plan, *timeline, 0, threads, unparsed_users)
                              : query::CohortDaysFromStarts(plan, *timeline, threads);
  ANALYTICS_ASSIGN_OR_RETURN(const std::vector<Roaring> return_days, ReturnDays(store, request, plan));
  const std::vector<query::RetentionRow> rows = query::ComputeRetention(plan, cohort_days, return_days, threads);

  const std::vector<int>& periods = plan.periods();
  json document = Echo(common);
  document["cohort_granularity"] = query::GranularityName(request.spec.cohort_granularity);
  document["mode"] = request.spec.mode == query::RetentionMode::kOnDay ? "on_day" : "on_or_after";
  document["cohort_type"] = request.spec.cohort_type == query::CohortType::kFirstTime ? "first_time" : "recurring";
  document["periods"] = periods;
  document["horizon"] = common::FormatRfc3339Millis(plan.spec().horizon_ms);
  uint64_t suppressed = 0;
  std::vector<uint64_t> total_cohorts(periods.size(), 0), total_users(periods.size(), 0),
      total_retained(periods.size(), 0);
  json cohorts = json::array();
  for (size_t cohort_idx = 0; cohort_idx < rows.size(); ++cohort_idx) {
    const query::RetentionRow& row = rows[cohort_idx];
    if (common.k_anonymity && row.users > 0 && row.users < static_cast<uint64_t>(common.k)) {
      ++suppressed;
      continue;
    }
    const query::RetentionPlan::Cohort& cohort = plan.cohorts()[cohort_idx];
    json retained = json::array();
    for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
      const query::RetentionCell& cell = row.cells[period_idx];
      if (!cell.measurable) {
        retained.push_back({{"period", periods[period_idx]}, {"users", nullptr}, {"share", nullptr}, {"measurable", false}});
        continue;
      }
      retained.push_back({{"period", periods[period_idx]},
                          {"users", cell.users},
                          {"share", Share(cell.users, row.users)},
                          {"measurable", true}});
      if (row.users > 0) {
        ++total_cohorts[period_idx];
        total_users[period_idx] += row.users;
        total_retained[period_idx] += cell.users;
      }
    }
    cohorts.push_back({{"cohort_start", absl::FormatCivilTime(cohort.start)},
                       {"cohort_end", absl::FormatCivilTime(cohort.last)},
                       {"users", row.users},
                       {"retained", std::move(retained)}});
  }
  document["cohorts"] = std::move(cohorts);
  json total = json::array();
  for (size_t period_idx = 0; period_idx < periods.size(); ++period_idx) {
    total.push_back({{"period", periods[period_idx]},
                     {"cohorts", total_cohorts[period_idx]},
                     {"cohort_users", total_users[period_idx]},
                     {"users", total_retained[period_idx]},
                     {"share", Share(total_retained[period_idx], total_users[period_idx])}});
  }
  document["total"] = {{"retained", std::move(total)}};
  // Users left out because their first value of the property is no date: a count of users, so k-anonymous too.
  if (request.cohort_property &&
      (!common.k_anonymity || unparsed_users == 0 || unparsed_users >= static_cast<uint64_t>(common.k))) {
    document["unparsed_users"] = unparsed_users;
  }
  AddKAnonymity(document, common, suppressed);
  return document;
}

Result<json> RunRetention(store::EventStore& store, const json& body, const Viewer& viewer,
                          const AnalysisOptions& options) {
  return RunRetentionForTest(store, body, viewer, options, common::NowMillis());
}

}  // namespace analytics::analysis
