// Lifecycle and stickiness requests: parsing, the buckets to read, per-bucket user bitmaps from the store, the
// counts (query/lifecycle.h), k-anonymity and the document.
#include "analysis/lifecycle.h"

#include <algorithm>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <absl/time/civil_time.h>

#include "query/lifecycle.h"
#include "query/time_grid.h"

namespace analytics::analysis {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;
using query::FilterExpr;
using query::Granularity;
using query::TimeGrid;

// The start of "everything before the period": earlier than any event time the store accepts, with room for
// arithmetic on bounds (bounds.back() - bounds.front() must not overflow).
constexpr int64_t kBeginningOfHistory = std::numeric_limits<int64_t>::min() / 2;
constexpr size_t kMaxEventTypes = 100;
constexpr size_t kMaxEvents = 20;
constexpr size_t kMaxLifecycleBuckets = 1000;
constexpr size_t kMaxStickinessDays = 1000;
constexpr size_t kLookbackDays = query::kMauDays - 1;

// The events that make a user active: any of `event_types` (empty: any type) where `filter` holds.
struct ActivitySelector {
  std::vector<std::string> event_types;
  FilterExpr filter;
};

// `event_types` (a list of types, no filters) or `events` (types with filters each); neither: every event.
Result<std::vector<ActivitySelector>> ParseEventSet(const json& body) {
  const auto types_it = body.find("event_types");
  const auto events_it = body.find("events");
  const bool has_types = types_it != body.end() && !types_it->is_null();
  const bool has_events = events_it != body.end() && !events_it->is_null();
  if (has_types && has_events) return Status::InvalidArgument("give event_types or events, not both", "events");
  std::vector<ActivitySelector> selectors;
  if (has_types) {
    const json& types = *types_it;
    if (!types.is_array() || types.empty() || types.size() > kMaxEventTypes) {
      return Status::InvalidArgument("must be a list of 1 to " + std::to_string(kMaxEventTypes) +
                                         " event types (omit it for every event)",
                                     "event_types");
    }
    ActivitySelector selector;
    for (size_t type_idx = 0; type_idx < types.size(); ++type_idx) {
      const json& type = types[type_idx];
      if (!type.is_string() || type.get_ref<const std::string&>().empty() ||
          type.get_ref<const std::string&>().size() > 256) {
        return Status::InvalidArgument("must be an event type of 1 to 256 characters", Index("event_types", type_idx));
      }
      selector.event_types.push_back(type.get<std::string>());
    }
    selectors.push_back(std::move(selector));
    return selectors;
  }
  if (has_events) {
    const json& events = *events_it;
    if (!events.is_array() || events.empty() || events.size() > kMaxEvents) {
      return Status::InvalidArgument("must be a list of 1 to " + std::to_string(kMaxEvents) +
                                         " events {\"event_type\", \"filters\"} (omit it for every event)",
                                     "events");
    }
    // Events with the same filters (none, most often) are read by one query together.
    std::map<std::string, size_t> by_filter;  // canonical filter text → index in selectors
    for (size_t event_idx = 0; event_idx < events.size(); ++event_idx) {
      const std::string path = Index("events", event_idx);
      ANALYTICS_RETURN_IF_ERROR(CheckFields(events[event_idx], {"event_type", "filters"}, path));
      ANALYTICS_ASSIGN_OR_RETURN(std::string type, EventType(events[event_idx], "event_type", path));
      ANALYTICS_ASSIGN_OR_RETURN(FilterExpr filter, Filters(events[event_idx], "filters", path));
      auto [it, inserted] = by_filter.emplace(filter.ToString(), selectors.size());
      if (inserted) selectors.push_back({{}, std::move(filter)});
      std::vector<std::string>& types = selectors[it->second].event_types;
      if (std::find(types.begin(), types.end(), type) == types.end()) types.push_back(std::move(type));
    }
    return selectors;
  }
  selectors.emplace_back();
  return selectors;
}

// The users active in each bucket [bounds[i], bounds[i+1]): one Aggregate per selector, united.
Result<std::vector<Roaring>> ActiveUsers(store::EventStore& store, const CommonRequest& request,
                                         const std::vector<ActivitySelector>& selectors,
                                         const std::vector<int64_t>& bounds) {
  std::vector<Roaring> active(bounds.size() - 1);
  for (const ActivitySelector& selector : selectors) {
    query::AggregateQuery aggregate;
    aggregate.event_types = selector.event_types;
    aggregate.filter = FilterExpr::And({request.filter, selector.filter});
    aggregate.bounds = bounds;
    aggregate.collect_users = true;
    aggregate.scope = request.scope;
    ANALYTICS_ASSIGN_OR_RETURN(auto result, store.Aggregate(aggregate));
    for (const auto& [key, cells] : result->groups) {
      for (size_t bucket_idx = 0; bucket_idx < active.size() && bucket_idx < cells.size(); ++bucket_idx) {
        cells[bucket_idx].users.AddTo(active[bucket_idx]);
      }
    }
  }
  return active;
}

// The local calendar date of an instant ("2024-03-31").
std::string LocalDate(int64_t unix_ms, const query::TimeZone& zone) {
  return absl::FormatCivilTime(absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone.zone()));
}

// Counts as reported: with k-anonymity, a count of 1 .. k-1 users is null and counted as a suppressed group.
class Reporter {
 public:
  explicit Reporter(const CommonRequest& request) : request_(request) {}
  bool Suppressed(uint64_t users) const {
    return request_.k_anonymity && users > 0 && users < static_cast<uint64_t>(request_.k);
  }
  json Count(uint64_t users) {
    if (!Suppressed(users)) return users;
    ++suppressed_;
    return nullptr;
  }
  // numerator / denominator; null when the denominator is 0 or either count is suppressed (a ratio must not
  // reveal a suppressed count).
  json Ratio(uint64_t numerator, uint64_t denominator) const {
    if (denominator == 0 || Suppressed(numerator) || Suppressed(denominator)) return nullptr;
    return static_cast<double>(numerator) / static_cast<double>(denominator);
  }
  uint64_t suppressed() const { return suppressed_; }

 private:
  const CommonRequest& request_;
  uint64_t suppressed_ = 0;
};

}  // namespace

Result<json> RunLifecycle(store::EventStore& store, const json& body, const Viewer& viewer,
                          const AnalysisOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(CheckRequestFields(body, {"event_types", "events", "granularity"}));
  ANALYTICS_ASSIGN_OR_RETURN(CommonRequest request, ParseCommon(body, viewer, options));
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<ActivitySelector> selectors, ParseEventSet(body));
  ANALYTICS_ASSIGN_OR_RETURN(std::string granularity_name,
                             Choice(body, "granularity", "", {"day", "week", "month"}, "week"));
  const Granularity granularity = *query::GranularityFromName(granularity_name);
  // The buckets holding the period (whole calendar buckets, as metric values), and the one before the first.
  ANALYTICS_ASSIGN_OR_RETURN(TimeGrid grid, TimeGrid::Make(request.start_ms, request.end_ms, granularity,
                                                           request.zone, kMaxLifecycleBuckets));
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, request));
  ANALYTICS_ASSIGN_OR_RETURN(TimeGrid with_previous, TimeGrid::Make(grid.bounds().front() - 1, request.end_ms,
                                                                    granularity, request.zone, kMaxLifecycleBuckets + 1));
  // Bucket 0: everything stored before the previous bucket (the users seen before); 1: the previous bucket.
  std::vector<int64_t> bounds = {kBeginningOfHistory};
  bounds.insert(bounds.end(), with_previous.bounds().begin(), with_previous.bounds().end());
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<Roaring> active, ActiveUsers(store, request, selectors, bounds));
  const std::vector<query::LifecycleCounts> counts =
      query::ComputeLifecycle(active[0], std::span<const Roaring>(active).subspan(1));

  const int64_t newest = store.NewestEventMs();
  Reporter reporter(request);
  json buckets = json::array();
  for (size_t bucket_idx = 0; bucket_idx < counts.size(); ++bucket_idx) {
    const query::LifecycleCounts& bucket = counts[bucket_idx];
    const int64_t end_ms = grid.bounds()[bucket_idx + 1];
    json entry = {{"start", LocalDate(grid.bounds()[bucket_idx], request.zone)},
                  {"end", LocalDate(end_ms, request.zone)},
                  {"in_progress", newest < end_ms}};
    entry["active"] = reporter.Count(bucket.active);
    entry["new"] = reporter.Count(bucket.new_users);
    entry["returning"] = reporter.Count(bucket.returning);
    entry["resurrecting"] = reporter.Count(bucket.resurrecting);
    entry["dormant"] = reporter.Count(bucket.dormant);
    // (new + resurrecting) / dormant: growth against loss; null without dormant users or with a suppressed term.
    const bool hidden =
        reporter.Suppressed(bucket.new_users) || reporter.Suppressed(bucket.resurrecting) ||
        reporter.Suppressed(bucket.dormant);
    entry["quick_ratio"] = hidden ? json(nullptr) : reporter.Ratio(bucket.new_users + bucket.resurrecting, bucket.dormant);
    buckets.push_back(std::move(entry));
  }
  json document = Echo(request);
  document["granularity"] = granularity_name;
  document["buckets"] = std::move(buckets);
  AddKAnonymity(document, request, reporter.suppressed());
  return document;
}

Result<json> RunStickiness(store::EventStore& store, const json& body, const Viewer& viewer,
                           const AnalysisOptions& options) {
  ANALYTICS_RETURN_IF_ERROR(CheckRequestFields(body, {"event_types", "events"}));
  ANALYTICS_ASSIGN_OR_RETURN(CommonRequest request, ParseCommon(body, viewer, options));
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<ActivitySelector> selectors, ParseEventSet(body));
  // The local days holding the period, and the kLookbackDays days before the first (its MAU window).
  auto period = TimeGrid::Make(request.start_ms, request.end_ms, Granularity::kDay, request.zone, kMaxStickinessDays);
  if (!period.ok()) {
    return Status::InvalidArgument("the period has more than " + std::to_string(kMaxStickinessDays) + " days",
                                   "period_end");
  }
  const TimeGrid& days = *period;
  ANALYTICS_RETURN_IF_ERROR(CheckDataAvailable(store, request));
  const absl::TimeZone& zone = request.zone.zone();
  const absl::CivilDay first_day = absl::ToCivilDay(absl::FromUnixMillis(days.bounds().front()), zone);
  const absl::CivilDay lookback = first_day - static_cast<int>(kLookbackDays);
  ANALYTICS_ASSIGN_OR_RETURN(TimeGrid all_days,
                             TimeGrid::Make(request.zone.StartOfDay(lookback.year(), lookback.month(), lookback.day()),
                                            request.end_ms, Granularity::kDay, request.zone,
                                            kMaxStickinessDays + kLookbackDays));
  if (all_days.size() != days.size() + kLookbackDays) return Status::Internal("stickiness: inconsistent day grid");
  ANALYTICS_ASSIGN_OR_RETURN(std::vector<Roaring> active, ActiveUsers(store, request, selectors, all_days.bounds()));
  const std::vector<query::StickinessDay> daily = query::ComputeStickiness(active, kLookbackDays);

  const int64_t newest = store.NewestEventMs();
  Reporter reporter(request);
  json day_list = json::array();
  for (size_t day_idx = 0; day_idx < daily.size(); ++day_idx) {
    const query::StickinessDay& day = daily[day_idx];
    json entry = {{"date", absl::FormatCivilTime(first_day + static_cast<int>(day_idx))},
                  {"in_progress", newest < days.bounds()[day_idx + 1]}};
    entry["dau"] = reporter.Count(day.dau);
    entry["wau"] = reporter.Count(day.wau);
    entry["mau"] = reporter.Count(day.mau);
    entry["dau_wau"] = reporter.Ratio(day.dau, day.wau);
    entry["dau_mau"] = reporter.Ratio(day.dau, day.mau);
    day_list.push_back(std::move(entry));
  }
  // ISO weeks (Monday) holding the period's days; only the period's days of a week are counted.
  json weeks = json::array();
  for (size_t day_idx = 0; day_idx < daily.size();) {
    const absl::CivilDay day = first_day + static_cast<int>(day_idx);
    const absl::CivilDay monday =
        day - (static_cast<int>(absl::GetWeekday(day)) - static_cast<int>(absl::Weekday::monday) + 7) % 7;
    size_t end_idx = day_idx;
    while (end_idx < daily.size() && first_day + static_cast<int>(end_idx) < monday + 7) ++end_idx;
    const size_t count = end_idx - day_idx;
    const std::vector<uint64_t> distribution = query::ActiveDaysDistribution(
        std::span<const Roaring>(active).subspan(kLookbackDays + day_idx, count));
    uint64_t users = 0;
    json active_days = json::array();
    for (size_t days_active = 1; days_active <= count; ++days_active) {
      users += distribution[days_active];
      active_days.push_back({{"days", days_active}, {"users", reporter.Count(distribution[days_active])}});
    }
    json entry = {{"week_start", absl::FormatCivilTime(monday)}, {"complete", count == 7}, {"days_in_period", count}};
    entry["users"] = reporter.Count(users);
    entry["active_days"] = std::move(active_days);
    weeks.push_back(std::move(entry));
    day_idx = end_idx;
  }
  json document = Echo(request);
  document["days"] = std::move(day_list);
  document["weeks"] = std::move(weeks);
  AddKAnonymity(document, request, reporter.suppressed());
  return document;
}

}  // namespace analytics::analysis
