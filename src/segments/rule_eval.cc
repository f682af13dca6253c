// Rule evaluation: a plan of timelines and per-condition slots, one walk per timeline, De Morgan on bitmaps.
#include "segments/rule_eval.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <absl/time/civil_time.h>
#include <absl/time/time.h>
#include <nlohmann/json.hpp>

#include "common/parallel.h"

namespace analytics::segments {

namespace {

using common::Result;
using common::Status;
using query::Roaring;

constexpr int64_t kMinTime = std::numeric_limits<int64_t>::min();
constexpr int64_t kMaxTime = std::numeric_limits<int64_t>::max();
constexpr size_t kUsersPerChunk = size_t{1} << 14;  // users per parallel work item of a walk
constexpr size_t kWorkPerThread = size_t{1} << 18;  // users or rows that make another walk thread worth starting

// A set of users as a bitmap, or (negated) the universe minus the bitmap.
struct Value {
  Roaring bits;
  bool negated = false;
};

// In the order Walk runs them for each row.
enum class SlotKind : uint8_t { kCount, kFirst, kLast, kAggregate, kProperty };

// What one condition of a timeline computes per user.
struct Slot {
  SlotKind kind = SlotKind::kCount;
  size_t leaf = 0;             // the condition's index (depth-first order of the rule's leaves)
  uint32_t mask = 0;           // its selector's bit (kProperty: the bit of the condition's selector)
  int64_t lo = kMinTime;       // events in [lo, hi) count (kCount, kAggregate), or the first/last one must lie there
  int64_t hi = kMaxTime;
  Comparison comparison = Comparison::kGte;
  int64_t count = 0;           // kCount: the bound
  bool zero_holds = false;     // kCount: the condition holds for 0 events (the slot then collects its complement)
  AggregateFunction function = AggregateFunction::kSum;
  double threshold = 0;        // kAggregate
  size_t key_idx = 0;          // kProperty: the property's key column
};

// Per user and slot, reset for each user.
struct SlotState {
  int64_t count = 0;
  double sum = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  int64_t time = kMinTime;  // kFirst, kLast: the event's time; kProperty: the latest value's
  uint32_t type = 0;        // kProperty: of the latest value (type code, key code)
  uint32_t code = 0;
  bool any = false;         // kFirst, kLast, kProperty: seen one
  bool holds = false;       // kProperty
};

// One timeline read and the conditions computed from it.
struct Group {
  query::TimelineQuery query;
  std::vector<Slot> events;      // every kind but kProperty
  std::vector<Slot> properties;  // kProperty
  std::vector<std::string> selector_keys;  // per selector: its canonical text (dedup)
};

template <typename T>
bool Compare(T value, Comparison comparison, T bound) {
  switch (comparison) {
    case Comparison::kGte: return value >= bound;
    case Comparison::kGt: return value > bound;
    case Comparison::kLte: return value <= bound;
    case Comparison::kLt: return value < bound;
    case Comparison::kEq: return value == bound;
  }
  return false;
}

// [lo, hi) of a window or range at as_of (events after as_of are cut off separately).
std::pair<int64_t, int64_t> Bounds(const TimeRange& range, const EvalContext& ctx) {
  switch (range.kind) {
    case TimeRange::Kind::kAllTime:
      return {kMinTime, kMaxTime};
    case TimeRange::Kind::kWithinDays: {
      const absl::CivilDay first =
          absl::ToCivilDay(absl::FromUnixMillis(ctx.as_of_ms), ctx.zone.zone()) - (range.within_days - 1);
      return {ctx.zone.StartOfDay(first.year(), first.month(), first.day()), kMaxTime};
    }
    case TimeRange::Kind::kBetween:
      return {range.from_ms, range.to_ms};
    case TimeRange::Kind::kBefore:
      return {kMinTime, range.to_ms};
    case TimeRange::Kind::kAfter:
      return {range.from_ms, kMaxTime};
  }
  return {kMinTime, kMaxTime};
}

query::FilterExpr Exists(const std::string& property) {
  query::PropertyFilter exists;
  exists.property = property;
  exists.op = query::FilterOp::kExists;
  exists.value = true;
  return query::FilterExpr::Condition(std::move(exists));
}

class Planner {
 public:
  explicit Planner(const EvalContext& ctx) : ctx_(ctx) {}

  // Collects the leaves of `rule` in depth-first order.
  void Collect(const Rule& rule) {
    if (!rule.IsLeaf()) {
      for (const Rule& child : rule.children) Collect(child);
      return;
    }
    leaves_.push_back(&rule);
  }

  // Assigns every event and property condition to a timeline: the aggregate conditions to one of their number
  // property's, the others to the first with room.
  std::vector<Group> Plan() {
    for (size_t leaf = 0; leaf < leaves_.size(); ++leaf) {
      if (leaves_[leaf]->kind == RuleKind::kAggregate) Place(leaf);
    }
    for (size_t leaf = 0; leaf < leaves_.size(); ++leaf) {
      const RuleKind kind = leaves_[leaf]->kind;
      if (kind != RuleKind::kAggregate && kind != RuleKind::kInSegment) Place(leaf);
    }
    const int64_t to = ctx_.as_of_ms == kMaxTime ? kMaxTime : ctx_.as_of_ms + 1;
    for (Group& group : groups_) group.query.to_ms = to;
    return std::move(groups_);
  }

  const std::vector<const Rule*>& leaves() const { return leaves_; }

 private:
  struct Selector {
    query::TimelineSelector selector;
    std::string key;
  };

  static Selector EventSelector(const Rule& rule) {
    Selector out;
    if (rule.event_type) out.selector.event_types = {*rule.event_type};
    out.selector.filter = rule.filter;
    out.key = nlohmann::json{{"types", out.selector.event_types}, {"filter", rule.filter.ToString()}}.dump();
    return out;
  }
  static Selector AnyEventWhere(query::FilterExpr filter) {
    Selector out;
    out.key = nlohmann::json{{"types", nlohmann::json::array()}, {"filter", filter.ToString()}}.dump();
    out.selector.filter = std::move(filter);
    return out;
  }

  // The selector's bit in `group`, adding it.
  static uint32_t Bit(Group& group, const Selector& selector) {
    auto it = std::find(group.selector_keys.begin(), group.selector_keys.end(), selector.key);
    size_t index = static_cast<size_t>(it - group.selector_keys.begin());
    if (it == group.selector_keys.end()) {
      group.selector_keys.push_back(selector.key);
      group.query.selectors.push_back(selector.selector);
    }
    return uint32_t{1} << index;
  }
  static size_t Missing(const Group& group, const std::vector<Selector>& selectors) {
    size_t missing = 0;
    const auto& keys = group.selector_keys;
    for (const Selector& selector : selectors) {
      missing += std::find(keys.begin(), keys.end(), selector.key) == keys.end();
    }
    return missing;
  }

  void Place(size_t leaf) {
    const Rule& rule = *leaves_[leaf];
    const bool is_property = rule.kind == RuleKind::kUserProperty;
    std::vector<Selector> selectors;
    if (is_property) {
      selectors.push_back(AnyEventWhere(Exists(rule.condition.property)));  // every value, for "the latest"
      if (rule.condition.op != query::FilterOp::kExists) {
        selectors.push_back(AnyEventWhere(query::FilterExpr::And(
            {Exists(rule.condition.property), query::FilterExpr::Condition(rule.condition)})));
      }
    } else {
      selectors.push_back(EventSelector(rule));
    }
    const std::string number = rule.kind == RuleKind::kAggregate ? rule.property : std::string();
    // The earliest event the condition needs: conditions share a timeline only when they start at the same time,
    // so that a short window (no session in 7 days) does not walk the rows of a long one (30 days of sessions).
    const int64_t needed_from = rule.kind == RuleKind::kFirstPerformed || is_property
                                    ? kMinTime
                                    : Bounds(rule.range, ctx_).first;
    Group* group = nullptr;
    for (Group& candidate : groups_) {
      if (rule.kind == RuleKind::kAggregate && candidate.query.number_property != number) continue;
      if (candidate.query.from_ms != needed_from) continue;
      if (candidate.query.selectors.size() + Missing(candidate, selectors) > query::kMaxTimelineSelectors) continue;
      group = &candidate;
      break;
    }
    if (group == nullptr) {
      group = &groups_.emplace_back();
      group->query.number_property = number;
      group->query.scope = ctx_.scope;
      group->query.from_ms = needed_from;
    }
    Slot slot;
    slot.leaf = leaf;
    slot.mask = Bit(*group, selectors.back());
    std::tie(slot.lo, slot.hi) = Bounds(rule.range, ctx_);
    int64_t from = slot.lo;  // the earliest event the slot needs
    switch (rule.kind) {
      case RuleKind::kPerformed:
      case RuleKind::kNotPerformed:
        slot.kind = SlotKind::kCount;
        slot.comparison = rule.kind == RuleKind::kPerformed ? rule.comparison : Comparison::kEq;
        slot.count = rule.kind == RuleKind::kPerformed ? rule.count : 0;
        slot.zero_holds = Compare<int64_t>(0, slot.comparison, slot.count);
        break;
      case RuleKind::kFirstPerformed:
        slot.kind = SlotKind::kFirst;
        from = kMinTime;  // the first event ever
        break;
      case RuleKind::kLastPerformed:
        slot.kind = SlotKind::kLast;  // from lo: a user without events since lo has the last one before lo
        break;
      case RuleKind::kAggregate:
        slot.kind = SlotKind::kAggregate;
        slot.comparison = rule.comparison;
        slot.function = rule.function;
        slot.threshold = rule.threshold;
        break;
      default: {  // kUserProperty
        slot.kind = SlotKind::kProperty;
        from = kMinTime;
        auto& keys = group->query.keys;
        auto it = std::find(keys.begin(), keys.end(), rule.condition.property);
        slot.key_idx = static_cast<size_t>(it - keys.begin());
        if (it == keys.end()) keys.push_back(rule.condition.property);
        Bit(*group, selectors.front());
        break;
      }
    }
    assert(from == needed_from);
    (void)from;
    (is_property ? group->properties : group->events).push_back(slot);
  }

  const EvalContext& ctx_;
  std::vector<const Rule*> leaves_;
  std::vector<Group> groups_;
};

// Whether a slot's user goes into its bitmap, from the user's final state.
bool Emits(const Slot& slot, const SlotState& state) {
  switch (slot.kind) {
    case SlotKind::kCount:
      return Compare<int64_t>(state.count, slot.comparison, slot.count) != slot.zero_holds;
    case SlotKind::kFirst:
    case SlotKind::kLast:
      return state.any && state.time >= slot.lo && state.time < slot.hi;
    case SlotKind::kAggregate: {
      if (state.count == 0) return false;
      double value = 0;
      switch (slot.function) {
        case AggregateFunction::kSum: value = state.sum; break;
        case AggregateFunction::kAvg: value = state.sum / static_cast<double>(state.count); break;
        case AggregateFunction::kMin: value = state.min; break;
        case AggregateFunction::kMax: value = state.max; break;
        case AggregateFunction::kCount: value = static_cast<double>(state.count); break;
      }
      return Compare<double>(value, slot.comparison, slot.threshold);
    }
    case SlotKind::kProperty:
      return state.any && state.holds;
  }
  return false;
}

// Walks `timeline` once and sets the value of every condition of `group` in `values` (by leaf index).
// The event slots are grouped by kind so that each row runs a few tight loops without a switch; counts, the
// commonest, add without branching. A timeline of one selector whose conditions are all counts is not walked
// row by row: every row matches, and a user's rows are in time order, so a count is the length of the user's
// run (a window covering the whole timeline) or the distance between two binary searches in it.
// Returns whether it counted by runs.
bool Walk(const Group& group, const query::Timeline& timeline, const EvalContext& ctx, size_t threads,
          std::vector<Value>& values) {
  const int64_t as_of = ctx.as_of_ms;
  const size_t users_per_chunk = ctx.users_per_chunk > 0 ? ctx.users_per_chunk : kUsersPerChunk;
  const size_t work_per_thread = ctx.work_per_thread > 0 ? ctx.work_per_thread : kWorkPerThread;
  std::vector<Slot> slots = group.events;
  std::stable_sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) { return a.kind < b.kind; });
  auto end_of = [&](SlotKind kind) {
    return static_cast<size_t>(std::partition_point(slots.begin(), slots.end(),
                                                    [&](const Slot& slot) { return slot.kind <= kind; }) -
                               slots.begin());
  };
  const size_t count_end = end_of(SlotKind::kCount), first_end = end_of(SlotKind::kFirst),
               last_end = end_of(SlotKind::kLast), event_end = slots.size();
  slots.insert(slots.end(), group.properties.begin(), group.properties.end());
  const size_t slot_count = slots.size();
  const size_t users = timeline.user_count();
  const size_t chunks = (users + users_per_chunk - 1) / users_per_chunk;
  std::vector<std::vector<std::vector<uint32_t>>> emitted(chunks, std::vector<std::vector<uint32_t>>(slot_count));
  const int64_t* time = timeline.time_ms.data();
  const uint32_t* matches = timeline.matches.data();
  const uint32_t* types = timeline.types.data();
  const bool with_numbers = timeline.numbers.size() == timeline.rows() && !group.query.number_property.empty();
  const double* numbers = with_numbers ? timeline.numbers.data() : nullptr;
  // Counting by runs: rows lie in [from_ms, to_ms) and those after as_of are cut.
  const bool by_runs = count_end == slot_count && group.query.selectors.size() == 1;
  const int64_t cut = as_of == kMaxTime ? kMaxTime : as_of + 1;  // rows before it count
  const bool rows_after_cut = timeline.rows() > 0 && timeline.newest_event_ms >= cut;
  // A thread costs tens of microseconds to start: another one only for every kWorkPerThread users (by runs) or
  // rows (row by row), so that a small walk runs on the caller's alone.
  const size_t work = by_runs ? users : timeline.rows();
  threads = std::max<size_t>(1, std::min(threads, work / work_per_thread));

  common::ParallelFor(chunks, threads, [&](size_t chunk_idx) {
    auto& out = emitted[chunk_idx];
    const size_t end_user = std::min(users, (chunk_idx + 1) * users_per_chunk);
    if (by_runs) {
      for (size_t user_idx = chunk_idx * users_per_chunk; user_idx < end_user; ++user_idx) {
        const uint32_t begin = timeline.user_begin[user_idx], end = timeline.user_begin[user_idx + 1];
        const uint32_t user = timeline.users[begin];
        for (size_t slot_idx = 0; slot_idx < slot_count; ++slot_idx) {
          const Slot& slot = slots[slot_idx];
          const int64_t hi = std::min(slot.hi, cut);
          const int64_t* first = time + begin;
          const int64_t* last = time + end;
          const int64_t* from = slot.lo <= group.query.from_ms ? first : std::lower_bound(first, last, slot.lo);
          const int64_t* to = hi >= group.query.to_ms || (!rows_after_cut && hi == cut)
                                  ? last
                                  : std::lower_bound(from, last, hi);
          const int64_t count = to > from ? to - from : 0;
          if (Compare<int64_t>(count, slot.comparison, slot.count) != slot.zero_holds) out[slot_idx].push_back(user);
        }
      }
      return;
    }
    std::vector<SlotState> states(slot_count);
    for (size_t user_idx = chunk_idx * users_per_chunk; user_idx < end_user; ++user_idx) {
      const uint32_t begin = timeline.user_begin[user_idx], end = timeline.user_begin[user_idx + 1];
      if (begin == end) continue;
      std::fill(states.begin(), states.end(), SlotState());
      for (uint32_t row = begin; row < end; ++row) {
        const int64_t t = time[row];
        if (t > as_of) break;  // rows are in time order
        const uint32_t m = matches[row];
        for (size_t slot_idx = 0; slot_idx < count_end; ++slot_idx) {
          const Slot& slot = slots[slot_idx];
          states[slot_idx].count += ((m & slot.mask) != 0) & (t >= slot.lo) & (t < slot.hi);
        }
        for (size_t slot_idx = count_end; slot_idx < first_end; ++slot_idx) {
          SlotState& state = states[slot_idx];
          if ((m & slots[slot_idx].mask) != 0 && !state.any) {
            state.any = true;
            state.time = t;
          }
        }
        for (size_t slot_idx = first_end; slot_idx < last_end; ++slot_idx) {
          if ((m & slots[slot_idx].mask) != 0) {
            states[slot_idx].any = true;
            states[slot_idx].time = t;
          }
        }
        for (size_t slot_idx = last_end; slot_idx < event_end; ++slot_idx) {  // aggregates
          const Slot& slot = slots[slot_idx];
          if ((m & slot.mask) == 0 || t < slot.lo || t >= slot.hi || numbers == nullptr) continue;
          const double x = numbers[row];
          if (std::isnan(x)) continue;
          SlotState& state = states[slot_idx];
          ++state.count;
          state.sum += x;
          state.min = std::min(state.min, x);
          state.max = std::max(state.max, x);
        }
        for (size_t slot_idx = event_end; slot_idx < slot_count; ++slot_idx) {  // user properties
          const Slot& slot = slots[slot_idx];
          const uint32_t code = timeline.keys[slot.key_idx][row];
          if (code == query::kMissingKey) continue;
          SlotState& state = states[slot_idx];
          const bool holds = (m & slot.mask) != 0;
          // Rows come in time order: a later time is a later value; at equal times the greater (type, text) wins.
          if (!state.any || t > state.time || types[row] > state.type ||
              (types[row] == state.type && code > state.code)) {
            state.any = true;
            state.time = t;
            state.type = types[row];
            state.code = code;
            state.holds = holds;
          } else if (types[row] == state.type && code == state.code) {
            state.holds = state.holds || holds;
          }
        }
      }
      const uint32_t user = timeline.users[begin];
      for (size_t slot_idx = 0; slot_idx < slot_count; ++slot_idx) {
        if (Emits(slots[slot_idx], states[slot_idx])) out[slot_idx].push_back(user);
      }
    }
  });

  // Each chunk's users ascend and chunks follow each other: the concatenation is sorted.
  common::ParallelFor(slot_count, threads, [&](size_t slot_idx) {
    size_t total = 0;
    for (const auto& chunk : emitted) total += chunk[slot_idx].size();
    std::vector<uint32_t> ids;
    ids.reserve(total);
    for (const auto& chunk : emitted) ids.insert(ids.end(), chunk[slot_idx].begin(), chunk[slot_idx].end());
    const Slot& slot = slots[slot_idx];
    Value& value = values[slot.leaf];
    value.bits = Roaring();
    value.bits.addMany(ids.size(), ids.data());
    value.bits.runOptimize();
    value.negated = slot.kind == SlotKind::kCount && slot.zero_holds;  // the slot collected the complement
  });
  return by_runs;
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

Roaring Union(std::vector<const Roaring*> sets) {
  if (sets.empty()) return Roaring();
  if (sets.size() == 1) return *sets.front();
  return Roaring::fastunion(sets.size(), sets.data());
}

Roaring Intersection(std::vector<const Roaring*> sets) {
  std::sort(sets.begin(), sets.end(),
            [](const Roaring* a, const Roaring* b) { return a->cardinality() < b->cardinality(); });
  Roaring out = *sets.front();
  for (size_t set_idx = 1; set_idx < sets.size() && !out.isEmpty(); ++set_idx) out &= *sets[set_idx];
  return out;
}

// The value of `rule`, taking its leaves' values from `leaves` in depth-first order.
Value Combine(const Rule& rule, std::vector<Value>& leaves, size_t& next_leaf) {
  if (rule.IsLeaf()) return std::move(leaves[next_leaf++]);
  if (rule.kind == RuleKind::kNot) {
    Value value = Combine(rule.children.front(), leaves, next_leaf);
    value.negated = !value.negated;
    return value;
  }
  std::vector<Value> values;
  values.reserve(rule.children.size());
  for (const Rule& child : rule.children) values.push_back(Combine(child, leaves, next_leaf));
  std::vector<const Roaring*> positive, negative;
  for (const Value& value : values) (value.negated ? negative : positive).push_back(&value.bits);
  Value out;
  if (rule.kind == RuleKind::kAnd) {
    // ∩P \ ∪N; without positives, U \ ∪N.
    if (positive.empty()) {
      out.bits = Union(negative);
      out.negated = true;
    } else {
      out.bits = Intersection(positive);
      for (size_t set_idx = 0; set_idx < negative.size() && !out.bits.isEmpty(); ++set_idx) {
        out.bits -= *negative[set_idx];
      }
    }
  } else {
    // ∪P ∪ ∪(U \ N_j) = U \ (∩N \ ∪P); without negatives, ∪P.
    if (negative.empty()) {
      out.bits = Union(positive);
    } else {
      out.bits = Intersection(negative);
      for (size_t set_idx = 0; set_idx < positive.size() && !out.bits.isEmpty(); ++set_idx) {
        out.bits -= *positive[set_idx];
      }
      out.negated = true;
    }
  }
  return out;
}

// A rule built by hand rather than by ParseRule may lack children.
Status CheckShape(const Rule& rule) {
  const bool shaped = rule.kind == RuleKind::kNot ? rule.children.size() == 1
                                                  : rule.IsLeaf() == rule.children.empty();
  if (!shaped) return Status::InvalidArgument("malformed rule: a " + std::string(RuleKindName(rule.kind)) +
                                              " node with " + std::to_string(rule.children.size()) + " children");
  for (const Rule& child : rule.children) ANALYTICS_RETURN_IF_ERROR(CheckShape(child));
  return Status::Ok();
}

}  // namespace

Result<Roaring> EvaluateRule(const Rule& rule, store::EventStore& store, const EvalContext& ctx, EvalStats* stats) {
  ANALYTICS_RETURN_IF_ERROR(CheckShape(rule));
  const size_t threads = common::QueryThreads(static_cast<int>(ctx.threads));
  Planner planner(ctx);
  planner.Collect(rule);
  const std::vector<const Rule*>& leaves = planner.leaves();
  std::vector<Group> groups = planner.Plan();
  std::vector<Value> values(leaves.size());
  EvalStats counted;

  // Segment members, once per id.
  std::map<std::string, std::shared_ptr<const Roaring>> segments;
  for (size_t leaf = 0; leaf < leaves.size(); ++leaf) {
    if (leaves[leaf]->kind != RuleKind::kInSegment) continue;
    const std::string& id = leaves[leaf]->segment_id;
    auto it = segments.find(id);
    if (it == segments.end()) {
      if (!ctx.segment_members) {
        return Status::FailedPrecondition("the rule uses in_segment but no segment members were provided");
      }
      ANALYTICS_ASSIGN_OR_RETURN(std::shared_ptr<const Roaring> members, ctx.segment_members(id));
      if (members == nullptr) return Status::Internal("no members for segment '" + id + "'");
      it = segments.emplace(id, std::move(members)).first;
    }
    values[leaf].bits = *it->second;
  }

  // A live evaluation (as_of at or after the newest event) reads to the end, so that its time range, and with it
  // the store's cached timeline join, stays the same from one refresh to the next; Walk cuts rows after as_of.
  const bool open_end = store.NewestEventMs() <= ctx.as_of_ms;
  for (Group& group : groups) {
    if (open_end) group.query.to_ms = kMaxTime;
    auto started = std::chrono::steady_clock::now();
    ANALYTICS_ASSIGN_OR_RETURN(std::shared_ptr<const query::Timeline> timeline, store.ReadTimeline(group.query));
    counted.read_ms += MillisSince(started);
    ++counted.timelines;
    counted.rows += timeline->rows();
    counted.users_scanned += timeline->user_count();
    started = std::chrono::steady_clock::now();
    counted.counted_by_runs += Walk(group, *timeline, ctx, threads, values);
    counted.walk_ms += MillisSince(started);
  }

  const auto combine_started = std::chrono::steady_clock::now();
  size_t next_leaf = 0;
  Value result = Combine(rule, values, next_leaf);
  Roaring users;
  if (result.negated) {
    // The universe: every user with an event up to as_of, and the members of the segments named.
    query::AggregateQuery all;
    all.bounds = {kMinTime, ctx.as_of_ms == kMaxTime ? kMaxTime : ctx.as_of_ms + 1};
    all.collect_users = true;
    all.scope = ctx.scope;
    ANALYTICS_ASSIGN_OR_RETURN(std::shared_ptr<const query::AggregateResult> answer, store.Aggregate(all));
    for (const auto& [key, cells] : answer->groups) {
      for (const query::AggregateCell& cell : cells) cell.users.AddTo(users);
    }
    for (const auto& [id, members] : segments) users |= *members;
    users -= result.bits;
  } else {
    users = std::move(result.bits);
  }
  // The store reads only the scope's users; segment members may lie outside it.
  if (ctx.scope) users &= *ctx.scope->users;
  users.runOptimize();
  counted.combine_ms = MillisSince(combine_started);
  if (stats != nullptr) *stats = counted;
  return users;
}

}  // namespace analytics::segments
