// MetricValues: request parsing, cells → values, top-N + other, k-anonymity, the response document.
#include "metrics/metric_values.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <span>

#include <absl/time/civil_time.h>

#include "common/parallel.h"
#include "common/time_util.h"
#include "query/aggregator.h"
#include "query/filter_expr.h"
#include "query/sessions.h"
#include "query/time_grid.h"

namespace analytics::metrics {

namespace {

using common::Result;
using common::Status;
using json = nlohmann::json;
using query::Aggregation;
using query::AggregateCell;
using query::AggregateQuery;
using query::AggregateResult;
using query::FilterExpr;
using query::GroupKey;
using query::Granularity;
using query::MetricDefinition;
using query::TimeGrid;
using query::TimeZone;

constexpr int64_t kDayMs = 86400000;

struct Plan {
  TimeZone zone = TimeZone::Utc();
  Granularity granularity = Granularity::kDay;
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // exclusive
  std::string period_start_text, period_end_text;
  TimeGrid grid;
  std::vector<std::string> dimensions;
  FilterExpr filter;        // request filters and the viewer's scope
  std::optional<size_t> limit;
  bool k_anonymity = false;
  std::optional<query::UserScope> scope;  // a segment's members: the only users read
};

Result<Plan> MakePlan(const MetricDefinition& definition, const MetricValuesRequest& request, const Viewer& viewer,
                      const MetricValuesOptions& options) {
  Plan plan;
  if (request.timezone && !request.timezone->empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(plan.zone, TimeZone::Load(*request.timezone));
  }
  if (request.granularity && !request.granularity->empty()) {
    auto granularity = query::GranularityFromName(*request.granularity);
    if (!granularity) {
      return Status::InvalidArgument("must be one of minute, hour, day, week, month", "granularity");
    }
    plan.granularity = *granularity;
  }
  if (!request.period_start || request.period_start->empty()) {
    return Status::InvalidArgument("is required (a date YYYY-MM-DD or an RFC 3339 time)", "period_start");
  }
  if (!request.period_end || request.period_end->empty()) {
    return Status::InvalidArgument("is required (a date YYYY-MM-DD or an RFC 3339 time)", "period_end");
  }
  plan.period_start_text = *request.period_start;
  plan.period_end_text = *request.period_end;
  ANALYTICS_ASSIGN_OR_RETURN(plan.start_ms, query::ParsePeriodBound(*request.period_start, false, plan.zone, "period_start"));
  ANALYTICS_ASSIGN_OR_RETURN(plan.end_ms, query::ParsePeriodBound(*request.period_end, true, plan.zone, "period_end"));
  if (plan.end_ms <= plan.start_ms) {
    return Status::InvalidArgument("must not be before period_start", "period_end");
  }
  auto grid = TimeGrid::Make(plan.start_ms, plan.end_ms, plan.granularity, plan.zone, options.max_buckets);
  if (!grid.ok()) return grid.status();
  plan.grid = std::move(grid).value();
  if (request.dimensions && !request.dimensions->empty()) {
    json dimensions = json::parse(*request.dimensions, nullptr, false);
    if (dimensions.is_discarded() || !dimensions.is_array()) {
      return Status::InvalidArgument("must be a JSON array of property names, e.g. [\"game_id\"]", "dimensions");
    }
    for (const auto& dimension : dimensions) {
      if (!dimension.is_string()) return Status::InvalidArgument("must hold only strings", "dimensions");
      const std::string name = dimension.get<std::string>();
      if (std::find(definition.dimensions.begin(), definition.dimensions.end(), name) == definition.dimensions.end()) {
        std::string allowed;
        for (const auto& item : definition.dimensions) allowed += (allowed.empty() ? "" : ", ") + item;
        return Status::InvalidArgument("'" + name + "' is not a dimension of metric " + definition.name +
                                           " (allowed: " + (allowed.empty() ? "none" : allowed) + ")",
                                       "dimensions");
      }
      if (std::find(plan.dimensions.begin(), plan.dimensions.end(), name) != plan.dimensions.end()) {
        return Status::InvalidArgument("'" + name + "' is listed twice", "dimensions");
      }
      plan.dimensions.push_back(name);
    }
  }
  std::vector<FilterExpr> filters;
  if (request.filters && !request.filters->empty()) {
    json filters_json = json::parse(*request.filters, nullptr, false);
    if (filters_json.is_discarded()) return Status::InvalidArgument("is not valid JSON", "filters");
    auto parsed = query::ParseFilterExpr(filters_json, "filters");
    if (!parsed.ok()) {
      // Keep the parameter name for the error envelope, the path inside it in the message.
      return Status::InvalidArgument(parsed.status().field() + ": " + parsed.status().message(), "filters");
    }
    filters.push_back(std::move(parsed).value());
  }
  if (!viewer.all_games) {
    filters.push_back(query::GameScope(viewer.game_ids));
    plan.k_anonymity = options.k_anonymity > 1;
  }
  plan.filter = FilterExpr::And(std::move(filters));
  if (request.limit && !request.limit->empty()) {
    size_t limit = 0;
    const std::string& text = *request.limit;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || ptr != text.data() + text.size() || limit < 1 || limit > 1000) {
      return Status::InvalidArgument("must be an integer from 1 to 1000", "limit");
    }
    if (plan.dimensions.empty()) return Status::InvalidArgument("needs dimensions to rank groups by", "limit");
    plan.limit = limit;
  }
  if (request.segment && !request.segment->empty()) {
    if (!options.segment_scope) {
      return Status::NotFound("segment '" + *request.segment + "' does not exist").WithFieldPrefix("segment");
    }
    auto scope = options.segment_scope(*request.segment);
    if (!scope.ok()) {
      // The metric's own NotFound has no field: the handler tells the two apart by it.
      if (scope.status().code() == common::StatusCode::kNotFound) {
        return Status::NotFound(scope.status().message()).WithFieldPrefix("segment");
      }
      return scope.status();
    }
    plan.scope = std::move(scope).value();
  }
  return plan;
}

bool Additive(Aggregation aggregation) {
  return aggregation == Aggregation::kCount || aggregation == Aggregation::kSum ||
         aggregation == Aggregation::kUniqueUsers || aggregation == Aggregation::kPeakConcurrent;
}

std::optional<double> Evaluate(const MetricDefinition& definition, const AggregateCell& cell) {
  switch (definition.aggregation) {
    case Aggregation::kCount:
      return cell.weighted_count;
    case Aggregation::kUniqueUsers:
      return static_cast<double>(cell.users.cardinality());
    case Aggregation::kSum:
      return cell.weighted_sum;
    case Aggregation::kAvg:
      if (cell.value_count == 0) return std::nullopt;
      return cell.value_sum / static_cast<double>(cell.value_count);
    case Aggregation::kMin:
      if (cell.value_count == 0) return std::nullopt;
      return cell.min;
    case Aggregation::kMax:
      if (cell.value_count == 0) return std::nullopt;
      return cell.max;
    case Aggregation::kPercentile: {
      std::vector<double> values = cell.values;
      return query::Percentile(values, definition.percentile.value_or(50));
    }
    case Aggregation::kRatio:
    case Aggregation::kPeakConcurrent:
      break;
  }
  return std::nullopt;
}

// One metric's data over the plan: per group, values per output bucket and over the whole period.
class Series {
 public:
  virtual ~Series() = default;
  virtual std::vector<GroupKey> Keys() const = 0;
  // Values of the groups `keys` taken together (one group, or the "other" groups merged).
  virtual std::vector<std::optional<double>> Values(const std::vector<GroupKey>& keys) const = 0;
  virtual std::optional<double> Total(const std::vector<GroupKey>& keys) const = 0;
  // Total({key}) for each of `keys` (ascending), for ranking.
  virtual std::vector<std::optional<double>> EachTotal(const std::vector<GroupKey>& keys) const {
    std::vector<std::optional<double>> totals;
    totals.reserve(keys.size());
    for (const auto& key : keys) totals.push_back(Total({key}));
    return totals;
  }
  // For ranking without every exact total: per key (ascending), bounds {lower, upper} of Total({key}) when the
  // series can give them cheaply (distinct users: the largest bucket, the sum of the buckets), else nothing.
  virtual std::optional<std::vector<std::pair<double, double>>> TotalBounds(const std::vector<GroupKey>&) const {
    return std::nullopt;
  }
  // Distinct users behind the groups (k-anonymity).
  virtual Roaring Users(const std::vector<GroupKey>& keys) const = 0;
  virtual int64_t Newest() const = 0;
  // Whether merging its cells means unions of users (each merge is heavy: worth all cores from a few groups).
  virtual bool CountsUsers() const { return false; }
};

// How many threads merge `groups` groups per bucket (or total `groups` keys): all cores for many groups (the
// "other" row of thousands), or for a few when the merges are unions of users.
size_t MergeThreads(size_t groups, bool users) {
  return groups >= (users ? 16 : 512) ? common::QueryThreads(0) : 1;
}

// Calls `merge(bucket)` for buckets [0, buckets), on MergeThreads: buckets are independent.
template <typename Merge>
void ForEachBucket(size_t buckets, size_t groups, bool users, Merge&& merge) {
  common::ParallelFor(buckets, MergeThreads(groups, users), merge);
}

// Calls `merge(from, to)` for consecutive ranges of buckets covering [0, buckets), one range per MergeThreads
// thread: buckets are independent.
template <typename Merge>
void ForEachBucketRange(size_t buckets, size_t groups, bool users, Merge&& merge) {
  const size_t parts = std::min(buckets, MergeThreads(groups, users));
  common::ParallelFor(parts, parts, [&](size_t part) { merge(buckets * part / parts, buckets * (part + 1) / parts); });
}

// Per key (ascending, like the groups), bounds of the distinct users of its cells [from, to): at least the
// largest cell's, at most the sum of the cells'.
std::vector<std::pair<double, double>> UserCountBounds(const AggregateResult& result, const std::vector<GroupKey>& keys,
                                                       size_t from, size_t to) {
  std::vector<std::pair<double, double>> bounds;
  bounds.reserve(keys.size());
  auto it = result.groups.begin();
  for (const auto& key : keys) {
    while (it != result.groups.end() && it->first < key) ++it;
    double lower = 0, upper = 0;
    if (it != result.groups.end() && it->first == key) {
      for (size_t cell = from; cell < to && cell < it->second.size(); ++cell) {
        const auto users = static_cast<double>(it->second[cell].users.cardinality());
        lower = std::max(lower, users);
        upper += users;
      }
    }
    bounds.emplace_back(lower, upper);
  }
  return bounds;
}

// count, sum, avg, min, max, percentile, unique_users without a window: cells on the output grid.
class CellSeries : public Series {
 public:
  CellSeries(const MetricDefinition& definition, std::shared_ptr<const AggregateResult> result, size_t buckets)
      : definition_(definition), result_(std::move(result)), buckets_(buckets) {}
  bool CountsUsers() const override { return definition_.aggregation == Aggregation::kUniqueUsers; }

  std::vector<GroupKey> Keys() const override {
    std::vector<GroupKey> keys;
    for (const auto& [key, cells] : result_->groups) keys.push_back(key);
    return keys;
  }
  // Per bucket, the cells of `keys` merged in the keys' order.
  std::vector<AggregateCell> Merged(const std::vector<GroupKey>& keys) const {
    std::vector<const std::vector<AggregateCell>*> groups;
    for (const auto& key : keys) {
      auto it = result_->groups.find(key);
      if (it != result_->groups.end()) groups.push_back(&it->second);
    }
    std::vector<AggregateCell> merged(buckets_);
    ForEachBucketRange(buckets_, groups.size(), CountsUsers(), [&](size_t from, size_t to) {
      AggregateCell::MergeColumns(groups, from, to, std::span(merged).subspan(from, to - from));
    });
    return merged;
  }
  // The cells of one group over all buckets, merged in bucket order.
  AggregateCell GroupTotal(const std::vector<AggregateCell>& group) const {
    const size_t count = std::min(buckets_, group.size());
    // Cells without users or values (sums, counts: ranking by revenue merges hundreds of groups) are added in
    // place, in order: the same numbers as MergeAll, without its list of the cells.
    if (std::all_of(group.begin(), group.begin() + static_cast<ptrdiff_t>(count),
                    [](const AggregateCell& cell) { return cell.users.empty() && cell.values.empty(); })) {
      AggregateCell total;
      for (size_t bucket = 0; bucket < count; ++bucket) total.Merge(group[bucket]);
      return total;
    }
    std::vector<const AggregateCell*> cells;
    for (size_t bucket = 0; bucket < count; ++bucket) cells.push_back(&group[bucket]);
    return AggregateCell::MergeAll(cells);
  }
  std::vector<std::optional<double>> Values(const std::vector<GroupKey>& keys) const override {
    std::vector<std::optional<double>> values;
    values.reserve(buckets_);
    if (keys.size() == 1) {  // one group: its own cells, one lookup
      auto it = result_->groups.find(keys.front());
      for (size_t bucket = 0; bucket < buckets_; ++bucket) {
        AggregateCell cell;  // as Merged would give it (an empty cell plus the group's: 0 + -0 is 0)
        if (it != result_->groups.end() && bucket < it->second.size()) cell.Merge(it->second[bucket]);
        values.push_back(Evaluate(definition_, cell));
      }
      return values;
    }
    for (const auto& cell : Merged(keys)) values.push_back(Evaluate(definition_, cell));
    return values;
  }
  std::optional<double> Total(const std::vector<GroupKey>& keys) const override {
    // Bucket by bucket into one cell, in the same order as merging the buckets first (so the same sums).
    if (keys.size() == 1) {
      auto it = result_->groups.find(keys.front());
      return Evaluate(definition_, it != result_->groups.end() ? GroupTotal(it->second) : AggregateCell());
    }
    return Evaluate(definition_, GroupTotal(Merged(keys)));
  }
  std::vector<std::optional<double>> EachTotal(const std::vector<GroupKey>& keys) const override {
    // Keys ascend like the groups: one walk along both instead of a search per key.
    std::vector<std::optional<double>> totals;
    totals.reserve(keys.size());
    auto it = result_->groups.begin();
    for (const auto& key : keys) {
      while (it != result_->groups.end() && it->first < key) ++it;
      const bool found = it != result_->groups.end() && it->first == key;
      totals.push_back(Evaluate(definition_, found ? GroupTotal(it->second) : AggregateCell()));
    }
    return totals;
  }
  std::optional<std::vector<std::pair<double, double>>> TotalBounds(const std::vector<GroupKey>& keys) const override {
    if (definition_.aggregation != Aggregation::kUniqueUsers) return std::nullopt;
    return UserCountBounds(*result_, keys, 0, buckets_);
  }
  Roaring Users(const std::vector<GroupKey>& keys) const override {
    return GroupTotal(Merged(keys)).users.ToRoaring();
  }
  int64_t Newest() const override { return result_->newest_event_ms; }

 private:
  const MetricDefinition& definition_;
  std::shared_ptr<const AggregateResult> result_;
  size_t buckets_;
};

// unique_users with window_days: cells on a fine grid (days, or hours at hour/minute granularity); the value
// of an output bucket is the union of the fine cells in [bucket_end - N days, bucket_end).
class WindowSeries : public Series {
 public:
  WindowSeries(std::shared_ptr<const AggregateResult> result, std::vector<int64_t> fine_bounds, std::vector<std::pair<size_t, size_t>> windows,
               std::pair<size_t, size_t> period)
      : result_(std::move(result)), fine_bounds_(std::move(fine_bounds)), windows_(std::move(windows)), period_(period) {}
  bool CountsUsers() const override { return true; }

  std::vector<GroupKey> Keys() const override {
    std::vector<GroupKey> keys;
    for (const auto& [key, cells] : result_->groups) keys.push_back(key);
    return keys;
  }
  // Per fine cell, the users of `keys` together: the group's own cells for one key (no copy), else one union
  // per fine cell, so that overlapping windows reuse it instead of merging every group's cells per window.
  std::vector<const query::UserSet*> FineUsers(const std::vector<GroupKey>& keys,
                                               std::vector<query::UserSet>& merged) const {
    std::vector<const query::UserSet*> fine(fine_bounds_.size(), &kNoUsers);
    if (keys.size() == 1) {
      auto it = result_->groups.find(keys.front());
      if (it == result_->groups.end()) return fine;
      for (size_t cell = 0; cell < fine.size() && cell < it->second.size(); ++cell) fine[cell] = &it->second[cell].users;
      return fine;
    }
    std::vector<const std::vector<AggregateCell>*> groups;
    for (const auto& key : keys) {
      auto it = result_->groups.find(key);
      if (it != result_->groups.end()) groups.push_back(&it->second);
    }
    merged.assign(fine.size(), query::UserSet());
    ForEachBucket(fine.size(), groups.size(), true, [&](size_t cell) {
      std::vector<const query::UserSet*> sets;
      for (const auto* group : groups) {
        if (cell < group->size()) sets.push_back(&(*group)[cell].users);
      }
      merged[cell] = query::UserSet::UnionAll(sets);
      fine[cell] = &merged[cell];
    });
    return fine;
  }
  static query::UserSet Union(const std::vector<const query::UserSet*>& fine, size_t from, size_t to) {
    to = std::min(to, fine.size());
    if (from >= to) return query::UserSet();
    return query::UserSet::UnionAll(std::span<const query::UserSet* const>(fine.data() + from, to - from));
  }
  std::vector<std::optional<double>> Values(const std::vector<GroupKey>& keys) const override {
    std::vector<query::UserSet> merged;
    const std::vector<uint64_t> counts = WindowCounts(FineUsers(keys, merged));
    return std::vector<std::optional<double>>(counts.begin(), counts.end());
  }
  std::optional<double> Total(const std::vector<GroupKey>& keys) const override {
    std::vector<query::UserSet> merged;
    return static_cast<double>(Union(FineUsers(keys, merged), period_.first, period_.second).cardinality());
  }
  std::optional<std::vector<std::pair<double, double>>> TotalBounds(const std::vector<GroupKey>& keys) const override {
    return UserCountBounds(*result_, keys, period_.first, period_.second);
  }
  Roaring Users(const std::vector<GroupKey>& keys) const override {
    std::vector<query::UserSet> merged;
    return Union(FineUsers(keys, merged), 0, fine_bounds_.size()).ToRoaring();
  }
  int64_t Newest() const override { return result_->newest_event_ms; }

 private:
  // The windows' distinct users. The windows of a rolling metric overlap (MAU per day: 30 days
  // each, one day apart), so each is cut where it crosses a multiple of the longest window's length: its left
  // piece is a suffix of one block of cells, its right piece a prefix of the next, both built once per block (a
  // union each), and the window is one union of the two instead of one of all its cells.
  std::vector<uint64_t> WindowCounts(const std::vector<const query::UserSet*>& fine) const {
    std::vector<uint64_t> counts;
    size_t block = 1;
    for (const auto& [from, to] : windows_) block = std::max(block, to - std::min(from, to));
    const size_t cells = fine.size();
    std::vector<query::UserSet> suffix(cells), prefix(cells);  // within each block
    std::vector<uint8_t> built(cells, 0);
    auto build_block = [&](size_t first) {
      if (built[first]) return;
      built[first] = 1;
      const size_t last = std::min(cells, first + block);
      for (size_t cell = first; cell < last; ++cell) {
        prefix[cell] = cell == first ? *fine[cell] : prefix[cell - 1];
        if (cell != first) prefix[cell] |= *fine[cell];
      }
      for (size_t cell = last; cell-- > first;) {
        suffix[cell] = cell + 1 == last ? *fine[cell] : suffix[cell + 1];
        if (cell + 1 != last) suffix[cell] |= *fine[cell];
      }
    };
    for (const auto& [from_cell, to_cell] : windows_) {
      const size_t from = std::min(from_cell, cells), to = std::min(to_cell, cells);
      if (from >= to) {
        counts.push_back(0);
        continue;
      }
      const size_t left_block = from / block * block, right_block = (to - 1) / block * block;
      if (left_block == right_block) {
        counts.push_back(Union(fine, from, to).cardinality());
        continue;
      }
      build_block(left_block);
      build_block(right_block);
      counts.push_back(query::UserSet::UnionCardinality(suffix[from], prefix[to - 1]));
    }
    return counts;
  }

  static inline const query::UserSet kNoUsers;
  std::shared_ptr<const AggregateResult> result_;
  std::vector<int64_t> fine_bounds_;
  std::vector<std::pair<size_t, size_t>> windows_;  // per output bucket: fine cells [first, second)
  std::pair<size_t, size_t> period_;               // fine cells of the period itself
};

class RatioSeries : public Series {
 public:
  RatioSeries(std::unique_ptr<Series> numerator, std::unique_ptr<Series> denominator)
      : numerator_(std::move(numerator)), denominator_(std::move(denominator)) {}
  bool CountsUsers() const override { return numerator_->CountsUsers() || denominator_->CountsUsers(); }

  std::vector<GroupKey> Keys() const override {
    std::vector<GroupKey> keys = numerator_->Keys();
    for (auto& key : denominator_->Keys()) keys.push_back(std::move(key));
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
  }
  static std::optional<double> Divide(std::optional<double> numerator, std::optional<double> denominator) {
    if (!numerator || !denominator || *denominator == 0) return std::nullopt;
    return *numerator / *denominator;
  }
  std::vector<std::optional<double>> Values(const std::vector<GroupKey>& keys) const override {
    auto numerator = numerator_->Values(keys);
    auto denominator = denominator_->Values(keys);
    std::vector<std::optional<double>> values;
    for (size_t bucket = 0; bucket < numerator.size(); ++bucket) values.push_back(Divide(numerator[bucket], denominator[bucket]));
    return values;
  }
  std::optional<double> Total(const std::vector<GroupKey>& keys) const override {
    return Divide(numerator_->Total(keys), denominator_->Total(keys));
  }
  Roaring Users(const std::vector<GroupKey>& keys) const override {
    Roaring users = numerator_->Users(keys);
    users |= denominator_->Users(keys);
    return users;
  }
  int64_t Newest() const override { return std::max(numerator_->Newest(), denominator_->Newest()); }

 private:
  std::unique_ptr<Series> numerator_, denominator_;
};

// peak_concurrent: the sessions as the store pairs them (query/sessions.h); the value of a bucket is the most
// sessions open at one instant in it (closes before opens at equal times), read by query::SweepPeaks. One sweep
// gives the peaks of every group (or, with very many groups, their whole-period peaks, and each group's buckets
// on demand); a set of groups ("other") is swept as one.
class PeakSeries : public Series {
 public:
  PeakSeries(query::PairedSessions sessions, std::vector<int64_t> bounds)
      : sessions_(std::move(sessions)), bounds_(std::move(bounds)) {
    for (size_t group = 0; group < sessions_.groups.size(); ++group) {
      if (sessions_.session_counts[group] > 0) index_.emplace(sessions_.groups[group], group);
    }
  }

  std::vector<GroupKey> Keys() const override {
    std::vector<GroupKey> keys;
    for (const auto& [key, group] : index_) keys.push_back(key);
    return keys;
  }
  std::vector<std::optional<double>> Values(const std::vector<GroupKey>& keys) const override {
    std::lock_guard lock(mu_);
    if (keys.size() == 1) {
      auto it = index_.find(keys.front());
      if (it == index_.end()) return std::vector<std::optional<double>>(bounds_.size() - 1, 0.0);
      if (AllFit()) return ToValues(All()[it->second]);
    }
    return ToValues(Merged(keys));
  }
  std::optional<double> Total(const std::vector<GroupKey>& keys) const override {
    std::lock_guard lock(mu_);
    std::vector<int64_t> peaks;  // the period's peak is its busiest bucket's
    if (keys.size() == 1) {
      auto it = index_.find(keys.front());
      if (it == index_.end()) return 0.0;
      if (!AllFit()) {
        if (totals_.empty()) totals_ = Sweep({bounds_.front(), bounds_.back()}, Identity());
        return static_cast<double>(totals_[it->second].front());
      }
      peaks = All()[it->second];
    } else {
      peaks = Merged(keys);
    }
    return static_cast<double>(peaks.empty() ? 0 : *std::max_element(peaks.begin(), peaks.end()));
  }
  Roaring Users(const std::vector<GroupKey>& keys) const override {
    Roaring users;
    for (const auto& key : keys) {
      auto it = index_.find(key);
      if (it != index_.end() && it->second < sessions_.users.size()) users |= sessions_.users[it->second];
    }
    return users;
  }
  int64_t Newest() const override { return sessions_.newest_start_ms; }

 private:
  static constexpr size_t kAllGroupsCells = size_t{1} << 22;  // 32 MB of peaks
  // Whether one sweep keeps every group's bucket peaks.
  bool AllFit() const { return sessions_.groups.size() * (bounds_.size() - 1) <= kAllGroupsCells; }
  const std::vector<std::vector<int64_t>>& All() const {
    if (all_.empty()) all_ = Sweep(bounds_, Identity());
    return all_;
  }
  // The bucket peaks of `keys` as one group.
  const std::vector<int64_t>& Merged(const std::vector<GroupKey>& keys) const {
    if (keys != last_keys_ || last_.empty()) {
      std::vector<int32_t> slot_of(sessions_.groups.size(), -1);
      for (const GroupKey& key : keys) {
        auto it = index_.find(key);
        if (it != index_.end()) slot_of[it->second] = 0;
      }
      last_ = Sweep(bounds_, slot_of, 1).front();
      last_keys_ = keys;
    }
    return last_;
  }
  std::vector<int32_t> Identity() const {
    std::vector<int32_t> slot_of(sessions_.groups.size());
    for (size_t group = 0; group < slot_of.size(); ++group) slot_of[group] = static_cast<int32_t>(group);
    return slot_of;
  }
  std::vector<std::vector<int64_t>> Sweep(const std::vector<int64_t>& bounds, const std::vector<int32_t>& slot_of,
                                          size_t slots = 0) const {
    return query::SweepPeaks(sessions_, bounds, slot_of, slots == 0 ? slot_of.size() : slots, common::QueryThreads(0));
  }
  static std::vector<std::optional<double>> ToValues(const std::vector<int64_t>& peaks) {
    return std::vector<std::optional<double>>(peaks.begin(), peaks.end());
  }

  query::PairedSessions sessions_;
  std::vector<int64_t> bounds_;
  std::map<GroupKey, size_t> index_;  // groups with sessions → index in sessions_.groups
  mutable std::mutex mu_;
  mutable std::vector<std::vector<int64_t>> all_, totals_;  // per group: bucket peaks, whole-period peak
  mutable std::vector<GroupKey> last_keys_;                 // the last set of groups swept as one
  mutable std::vector<int64_t> last_;
};

AggregateQuery BaseQuery(const MetricDefinition& definition, const Plan& plan) {
  AggregateQuery aggregate;
  aggregate.event_types = definition.event_types;
  aggregate.weights = definition.event_weights;
  std::vector<FilterExpr> filters;
  for (const auto& filter : definition.filters) filters.push_back(FilterExpr::Condition(filter));
  filters.push_back(plan.filter);
  aggregate.filter = FilterExpr::And(std::move(filters));
  aggregate.group_by = plan.dimensions;
  aggregate.bounds = plan.grid.bounds();
  aggregate.value_property = definition.property;
  aggregate.collect_users = definition.aggregation == Aggregation::kUniqueUsers || plan.k_anonymity;
  aggregate.collect_values = definition.aggregation == Aggregation::kPercentile;
  aggregate.scope = plan.scope;
  return aggregate;
}

}  // namespace

class SeriesBuilder {
 public:
  SeriesBuilder(MetricCatalog& catalog, store::EventStore& store, const std::shared_ptr<const MetricSnapshot>& snapshot)
      : catalog_(catalog), store_(store), snapshot_(snapshot) {}

  Result<std::unique_ptr<Series>> Build(const MetricDefinition& definition, const Plan& plan, int depth) {
    if (depth > 4) return Status::InvalidArgument("ratio operands nest too deeply", "metric_name");
    const size_t buckets = plan.grid.size();
    switch (definition.aggregation) {
      case Aggregation::kRatio: {
        ANALYTICS_ASSIGN_OR_RETURN(auto numerator, Operand(definition.numerator, plan, depth));
        ANALYTICS_ASSIGN_OR_RETURN(auto denominator, Operand(definition.denominator, plan, depth));
        return std::unique_ptr<Series>(new RatioSeries(std::move(numerator), std::move(denominator)));
      }
      case Aggregation::kPeakConcurrent:
        return Peak(definition, plan);
      case Aggregation::kUniqueUsers:
        if (definition.window_days) return Window(definition, plan);
        break;
      default:
        break;
    }
    ANALYTICS_ASSIGN_OR_RETURN(auto result, store_.Aggregate(BaseQuery(definition, plan)));
    return std::unique_ptr<Series>(new CellSeries(definition, std::move(result), buckets));
  }

 private:
  Result<std::unique_ptr<Series>> Operand(const std::string& name, const Plan& plan, int depth) {
    const MetricSnapshot::Entry* entry = snapshot_->Find(name);
    if (entry == nullptr) {
      return Status::Internal("ratio operand metric '" + name + "' does not exist");
    }
    return Build(entry->definition, plan, depth + 1);
  }

  // Sessions per docs/metrics.md, paired by the store: starts are filtered and grouped; ends only close. Events
  // up to max_session_seconds before the period are read (sessions open when it begins).
  Result<std::unique_ptr<Series>> Peak(const MetricDefinition& definition, const Plan& plan) {
    if (!definition.concurrency) return Status::Internal("peak_concurrent metric without concurrency");
    const query::ConcurrencySpec& spec = *definition.concurrency;
    const std::vector<int64_t>& bounds = plan.grid.bounds();
    const AggregateQuery base = BaseQuery(definition, plan);
    query::SessionQuery sessions;
    sessions.start_type = spec.start_event_type;
    sessions.end_type = spec.end_event_type;
    sessions.key_property = spec.key_property;
    sessions.filter = base.filter;
    sessions.group_by = base.group_by;
    sessions.max_session_ms = spec.max_session_seconds * 1000;
    sessions.from_ms = bounds.front() - sessions.max_session_ms;
    sessions.to_ms = bounds.back();
    sessions.collect_users = plan.k_anonymity;
    sessions.scope = base.scope;
    ANALYTICS_ASSIGN_OR_RETURN(auto result, store_.Sessions(sessions));
    return std::unique_ptr<Series>(new PeakSeries(std::move(result), bounds));
  }

  Result<std::unique_ptr<Series>> Window(const MetricDefinition& definition, const Plan& plan) {
    if (plan.granularity == Granularity::kMinute) {
      return Status::InvalidArgument("minute buckets are not available for rolling-window metrics (use hour or coarser)",
                                     "granularity");
    }
    const int64_t days = *definition.window_days;
    const std::vector<int64_t>& bounds = plan.grid.bounds();
    // Fine grid: local days (hours at hour granularity) from the first window's start to the period end.
    const bool hourly = plan.granularity == Granularity::kHour;
    int64_t fine_start;
    if (hourly) {
      fine_start = bounds[1] - days * kDayMs;
    } else {
      const absl::CivilDay first_end = absl::ToCivilDay(absl::FromUnixMillis(bounds[1]), plan.zone.zone());
      const absl::CivilDay start_day = first_end - days;
      fine_start = plan.zone.StartOfDay(start_day.year(), start_day.month(), start_day.day());
    }
    fine_start = std::min(fine_start, bounds.front());
    ANALYTICS_ASSIGN_OR_RETURN(auto fine, TimeGrid::Make(fine_start, bounds.back(), hourly ? Granularity::kHour : Granularity::kDay,
                                                         plan.zone, 1000000));
    AggregateQuery aggregate = BaseQuery(definition, plan);
    aggregate.bounds = fine.bounds();
    aggregate.collect_users = true;
    ANALYTICS_ASSIGN_OR_RETURN(auto result, store_.Aggregate(aggregate));
    const std::vector<int64_t>& fine_bounds = fine.bounds();
    auto fine_index = [&](int64_t instant) {
      return static_cast<size_t>(std::lower_bound(fine_bounds.begin(), fine_bounds.end(), instant) - fine_bounds.begin());
    };
    std::vector<std::pair<size_t, size_t>> windows;
    for (size_t bucket = 0; bucket + 1 < bounds.size(); ++bucket) {
      const int64_t end = bounds[bucket + 1];
      int64_t begin;
      if (hourly) {
        begin = end - days * kDayMs;
      } else {
        const absl::CivilDay end_day = absl::ToCivilDay(absl::FromUnixMillis(end), plan.zone.zone());
        const absl::CivilDay begin_day = end_day - days;
        begin = plan.zone.StartOfDay(begin_day.year(), begin_day.month(), begin_day.day());
      }
      windows.emplace_back(fine_index(begin), fine_index(end));
    }
    const std::pair<size_t, size_t> period{fine_index(bounds.front()), fine_index(bounds.back())};
    return std::unique_ptr<Series>(new WindowSeries(std::move(result), fine_bounds, std::move(windows), period));
  }

  MetricCatalog& catalog_;
  store::EventStore& store_;
  std::shared_ptr<const MetricSnapshot> snapshot_;
};

Result<json> MetricValues::Compute(const std::string& metric_name, const MetricValuesRequest& request,
                                   const Viewer& viewer) {
  ANALYTICS_ASSIGN_OR_RETURN(auto snapshot, catalog_.Snapshot());
  const MetricSnapshot::Entry* entry = snapshot->Find(metric_name);
  if (entry == nullptr) return Status::NotFound("no metric definition named '" + metric_name + "'");
  const MetricDefinition& definition = entry->definition;
  ANALYTICS_ASSIGN_OR_RETURN(Plan plan, MakePlan(definition, request, viewer, options_));
  const int64_t newest = store_.NewestEventMs();
  if (newest == INT64_MIN || plan.start_ms > newest) {
    return Status::FailedPrecondition("the period starts after the newest stored event" +
                                      (newest == INT64_MIN ? std::string(" (no events yet)")
                                                           : " (" + common::FormatRfc3339Millis(newest) + ")"));
  }
  SeriesBuilder builder(catalog_, store_, snapshot);
  ANALYTICS_ASSIGN_OR_RETURN(auto series, builder.Build(definition, plan, 0));

  std::vector<GroupKey> keys = series->Keys();
  uint64_t suppressed = 0;
  if (plan.k_anonymity) {
    std::erase_if(keys, [&](const GroupKey& key) {
      const bool small = series->Users({key}).cardinality() < static_cast<uint64_t>(options_.k_anonymity);
      suppressed += small;
      return small;
    });
  }
  if (keys.size() > options_.max_groups && !plan.limit) {
    return Status::InvalidArgument("the dimensions give " + std::to_string(keys.size()) + " groups, more than " +
                                       std::to_string(options_.max_groups) + "; set limit for the top groups and 'other'",
                                   "dimensions");
  }
  // Top-N by the value over the whole period (nulls last, ties by key), the rest as one "other" series.
  std::vector<GroupKey> others;
  if (plan.limit && keys.size() > *plan.limit) {
    std::vector<std::pair<std::optional<double>, GroupKey>> ranked;
    if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());
    // A key whose total is surely below the limit-th largest lower bound cannot be in the top: its exact
    // total (a union over the whole period) is not computed, it goes to "other" (unranked: after the rest).
    std::vector<GroupKey> unranked;
    if (auto bounds = series->TotalBounds(keys)) {
      std::vector<double> lowers;
      for (const auto& bound : *bounds) lowers.push_back(bound.first);
      std::nth_element(lowers.begin(), lowers.begin() + (*plan.limit - 1), lowers.end(), std::greater<>());
      const double threshold = lowers[*plan.limit - 1];
      std::vector<GroupKey> candidates;
      for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
        ((*bounds)[key_idx].second < threshold ? unranked : candidates).push_back(std::move(keys[key_idx]));
      }
      keys = std::move(candidates);
    }
    // Totals of thousands of groups (a union over the whole period each, for distinct users) by all cores:
    // consecutive slices of the ascending keys, each one EachTotal. Fewer keys: one EachTotal of them all, on this
    // thread and without copying them into a slice.
    const size_t slices = MergeThreads(keys.size(), series->CountsUsers());
    std::vector<std::optional<double>> totals;
    if (slices == 1) {
      totals = series->EachTotal(keys);
    } else {
      totals.resize(keys.size());
      common::ParallelFor(slices, slices, [&](size_t part) {
        const size_t begin = keys.size() * part / slices, end = keys.size() * (part + 1) / slices;
        const auto part_totals = series->EachTotal(std::vector<GroupKey>(keys.begin() + begin, keys.begin() + end));
        std::copy(part_totals.begin(), part_totals.end(), totals.begin() + begin);
      });
    }
    for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
      ranked.emplace_back(totals[key_idx], std::move(keys[key_idx]));
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      if (a.first.has_value() != b.first.has_value()) return a.first.has_value();
      if (a.first && *a.first != *b.first) return *a.first > *b.first;
      return a.second < b.second;
    });
    keys.clear();
    for (size_t rank = 0; rank < ranked.size(); ++rank) {
      (rank < *plan.limit ? keys : others).push_back(std::move(ranked[rank].second));
    }
    for (auto& key : unranked) others.push_back(std::move(key));
  }
  const bool additive = Additive(definition.aggregation);
  const std::vector<int64_t>& bounds = plan.grid.bounds();
  std::vector<std::string> labels;
  for (size_t bucket = 0; bucket + 1 < bounds.size(); ++bucket) labels.push_back(plan.zone.Format(bounds[bucket]));
  auto points = [&](const std::vector<GroupKey>& group) {
    json out = json::array();
    const auto values = series->Values(group);
    for (size_t bucket = 0; bucket < labels.size(); ++bucket) {
      const bool present = bucket < values.size() && values[bucket].has_value();
      const json value = present ? json(*values[bucket]) : additive ? json(0.0) : json(nullptr);
      out.push_back(json::array({labels[bucket], value}));
    }
    return out;
  };
  json series_json = json::array();
  if (plan.dimensions.empty()) {
    // The ungrouped series is always present (explicit zeros when nothing happened), unless suppressed.
    if (keys.empty() && suppressed == 0) keys.push_back(GroupKey{});
    for (const auto& key : keys) series_json.push_back({{"dimensions", json::object()}, {"points", points({key})}});
  } else {
    if (!plan.limit) std::sort(keys.begin(), keys.end());
    for (const auto& key : keys) {
      json dimensions = json::object();
      for (size_t dimension = 0; dimension < plan.dimensions.size(); ++dimension) {
        dimensions[plan.dimensions[dimension]] = key[dimension] ? json(*key[dimension]) : json(nullptr);
      }
      series_json.push_back({{"dimensions", std::move(dimensions)}, {"points", points({key})}});
    }
    if (!others.empty()) {
      json dimensions = json::object();
      for (const auto& name : plan.dimensions) dimensions[name] = "other";
      series_json.push_back({{"dimensions", std::move(dimensions)}, {"other", true}, {"groups", others.size()},
                             {"points", points(others)}});
    }
  }
  const int64_t freshness = series->Newest();
  json document = {{"metric", definition.name},
                   {"unit", definition.unit},
                   {"aggregation", query::AggregationName(definition.aggregation)},
                   {"period_start", plan.period_start_text},
                   {"period_end", plan.period_end_text},
                   {"granularity", query::GranularityName(plan.granularity)},
                   {"timezone", plan.zone.name()},
                   {"freshness", freshness == INT64_MIN ? json(nullptr) : json(common::FormatRfc3339Millis(freshness))},
                   {"series", std::move(series_json)}};
  if (plan.scope) document["segment"] = *request.segment;
  if (plan.k_anonymity) {
    document["k_anonymity"] = {{"k", options_.k_anonymity}, {"suppressed_groups", suppressed}};
  }
  return document;
}

}  // namespace analytics::metrics
