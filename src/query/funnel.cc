// Funnels: per-pair attempts over each user's time-ordered rows, combined per user, counted per step and group.
#include "query/funnel.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <limits>
#include <memory>

#include "common/parallel.h"
#include "common/radix_sort.h"

namespace analytics::query {

namespace {

constexpr uint32_t kNoIndex = std::numeric_limits<uint32_t>::max();

// One attempt of a pair: the steps it reached, in the pair's event buffer.
// Only the first reached + 1 entries of the arrays are meaningful (left uninitialized: one per pair and attempt).
struct Attempt {
  int reached = -1;  // the last step reached; -1: none
  std::array<int64_t, kMaxFunnelSteps> t;        // t[0] = t0
  std::array<uint32_t, kMaxFunnelSteps> event;   // the event that reached each step
};

// The best attempt of one pair, as the user-level combination reads it; its times t(0..reached) are kept apart
// (a flat vector of the user's outcomes) so that outcomes stay small.
struct PairOutcome {
  int reached = -1;
  uint32_t value = kMissingKey;  // breakdown code by the attribution
};

// The events of one pair (time-ordered: the Timeline's rows themselves, or gathered into reused buffers) and the
// attempts made from them.
class PairEvaluator {
 public:
  explicit PairEvaluator(const FunnelSpec& spec)
      : spec_(spec),
        steps_(static_cast<int>(spec.steps)),
        step_mask_(spec.steps >= 32 ? ~0u : (1u << spec.steps) - 1),
        exclusion_times_(spec.exclusions.size()) {
    for (const auto& exclusion : spec.exclusions) exclusion_mask_ |= 1u << exclusion.selector;
  }

  // The pair's events are `count` rows of these columns (`value` may be null: no breakdown); they must stay valid
  // until Evaluate returns.
  void Load(const int64_t* time, const uint32_t* bits, const uint32_t* value, size_t count) {
    time_ = time;
    bits_ = bits;
    value_ = value;
    size_ = count;
    if (exclusion_mask_ == 0) return;
    for (auto& times : exclusion_times_) times.clear();
    for (size_t pos = 0; pos < count; ++pos) {
      if ((bits[pos] & exclusion_mask_) == 0) continue;
      for (size_t exclusion_idx = 0; exclusion_idx < spec_.exclusions.size(); ++exclusion_idx) {
        if ((bits[pos] >> spec_.exclusions[exclusion_idx].selector) & 1u) {
          exclusion_times_[exclusion_idx].push_back(time[pos]);
        }
      }
    }
  }

  // Gathering a pair's rows: Clear, Add each, then LoadGathered.
  void Clear() {
    time_buffer_.clear();
    bits_buffer_.clear();
    value_buffer_.clear();
  }
  void Add(int64_t time, uint32_t bits, uint32_t value) {
    time_buffer_.push_back(time);
    bits_buffer_.push_back(bits);
    value_buffer_.push_back(value);
  }
  void LoadGathered() { Load(time_buffer_.data(), bits_buffer_.data(), value_buffer_.data(), time_buffer_.size()); }

  // The pair's best attempt (per the entry mode); false when the pair has no entry event.
  // Appends the attempt's times t(0..reached) to `times`.
  bool Evaluate(PairOutcome& out, std::vector<int64_t>& times) {
    Attempt best;
    if (spec_.order == FunnelOrder::kAnyOrder) {
      if (spec_.entry == FunnelEntry::kFirstTouch) {
        FirstTouchAnyOrder(best);
      } else {
        AnyTouchAnyOrder(best);
      }
    } else if (spec_.entry == FunnelEntry::kFirstTouch) {
      FirstTouchSequential(best);
    } else {
      AnyTouchSequential(best);
    }
    if (best.reached < 0) return false;
    out.reached = best.reached;
    times.insert(times.end(), best.t.begin(), best.t.begin() + best.reached + 1);
    const uint32_t event = best.event[spec_.attribution == FunnelAttribution::kFirstStep ? 0 : best.reached];
    out.value = value_ != nullptr ? value_[event] : kMissingKey;
    return true;
  }

 private:
  size_t size() const { return size_; }

  // Starts `attempt` at step 0 with the event `start`; returns its deadline (t0 + window), the latest time of a step.
  int64_t BeginAttempt(size_t start, Attempt& attempt) const {
    attempt.reached = 0;
    attempt.t[0] = time_[start];
    attempt.event[0] = static_cast<uint32_t>(start);
    return time_[start] + spec_.window_ms;
  }

  // ordered, by scanning from the start event `start` (a step-0 event).
  void OrderedFrom(size_t start, Attempt& attempt) const {
    const size_t n = size();
    const int64_t deadline = BeginAttempt(start, attempt);
    size_t pos = start + 1;
    for (int step = 1; step < steps_; ++step) {
      const int64_t previous = attempt.t[step - 1];
      const uint32_t bit = 1u << step;
      while (pos < n && time_[pos] <= previous) ++pos;
      while (pos < n && time_[pos] <= deadline && (bits_[pos] & bit) == 0) ++pos;
      if (pos == n || time_[pos] > deadline) break;
      attempt.t[step] = time_[pos];
      attempt.event[step] = static_cast<uint32_t>(pos);
      attempt.reached = step;
      ++pos;
    }
  }

  // ordered, with the tables of BuildTables: O(steps) per attempt.
  void OrderedFromTables(size_t start, Attempt& attempt) const {
    const size_t n = size();
    const int64_t deadline = BeginAttempt(start, attempt);
    uint32_t pos = after_[start];
    for (int step = 1; step < steps_; ++step) {
      const uint32_t found = next_[static_cast<size_t>(step) * (n + 1) + pos];
      if (found == n || time_[found] > deadline) break;
      attempt.t[step] = time_[found];
      attempt.event[step] = found;
      attempt.reached = step;
      pos = after_[found];
    }
  }

  // strict: after each step, the first later event of any step decides: it must match the next step (an event
  // at the same time that matches it wins over the others at that time).
  void StrictFrom(size_t start, Attempt& attempt) const {
    const size_t n = size();
    const int64_t deadline = BeginAttempt(start, attempt);
    size_t pos = start + 1;
    while (pos < n && time_[pos] == attempt.t[0]) ++pos;
    for (int step = 1; step < steps_; ++step) {
      while (pos < n && (bits_[pos] & step_mask_) == 0) ++pos;
      if (pos == n || time_[pos] > deadline) break;
      const int64_t at = time_[pos];
      const uint32_t bit = 1u << step;
      uint32_t found = kNoIndex;
      for (; pos < n && time_[pos] == at; ++pos) {
        if (found == kNoIndex && (bits_[pos] & bit) != 0) found = static_cast<uint32_t>(pos);
      }
      if (found == kNoIndex) break;
      attempt.t[step] = at;
      attempt.event[step] = found;
      attempt.reached = step;
    }
  }

  // any_order from the first event at `group`'s time: distinct steps in [t0, t0 + window].
  void AnyOrderFrom(size_t group, Attempt& attempt) const {
    const size_t n = size();
    const int64_t t0 = time_[group];
    const int64_t deadline = t0 + spec_.window_ms;
    attempt.reached = -1;
    uint32_t covered = 0;
    for (size_t pos = group; pos < n && time_[pos] <= deadline; ++pos) {
      const uint32_t fresh = bits_[pos] & step_mask_ & ~covered;
      if (fresh == 0) continue;
      covered |= fresh;
      for (int count = std::popcount(fresh); count > 0; --count) {
        ++attempt.reached;
        attempt.t[attempt.reached] = time_[pos];
        attempt.event[attempt.reached] = static_cast<uint32_t>(pos);
      }
      if (covered == step_mask_) break;
    }
  }

  // Truncates the attempt at the exclusions (each judged on the attempt as its steps made it).
  void ApplyExclusions(Attempt& attempt) const {
    const int reached = attempt.reached;
    int final_step = reached;
    for (size_t exclusion_idx = 0; exclusion_idx < spec_.exclusions.size(); ++exclusion_idx) {
      const FunnelExclusion& exclusion = spec_.exclusions[exclusion_idx];
      const int from = static_cast<int>(exclusion.from_step);
      const int to = static_cast<int>(exclusion.to_step);
      if (from > reached || from >= final_step) continue;
      const auto& times = exclusion_times_[exclusion_idx];
      auto it = std::upper_bound(times.begin(), times.end(), attempt.t[from]);
      if (it == times.end()) continue;
      const bool inside = to <= reached ? *it < attempt.t[to] : *it <= attempt.t[0] + spec_.window_ms;
      if (inside) final_step = from;
    }
    attempt.reached = final_step;
  }

  void FirstTouchSequential(Attempt& best) const {
    const size_t n = size();
    size_t start = 0;
    while (start < n && (bits_[start] & 1u) == 0) ++start;
    if (start == n) return;
    if (spec_.order == FunnelOrder::kOrdered) {
      OrderedFrom(start, best);
    } else {
      StrictFrom(start, best);
    }
    ApplyExclusions(best);
  }

  void AnyTouchSequential(Attempt& best) {
    const size_t n = size();
    const bool ordered = spec_.order == FunnelOrder::kOrdered;
    bool tables = false;
    Attempt attempt;
    int64_t last_start_time = 0;
    bool started = false;
    for (size_t start = 0; start < n; ++start) {
      if ((bits_[start] & 1u) == 0) continue;
      // Starts at the same time make the same attempt: the first (in row order) stands for them.
      if (started && time_[start] == last_start_time) continue;
      started = true;
      last_start_time = time_[start];
      if (ordered) {
        if (!tables) {
          BuildTables();
          tables = true;
        }
        OrderedFromTables(start, attempt);
      } else {
        StrictFrom(start, attempt);
      }
      ApplyExclusions(attempt);
      if (attempt.reached > best.reached) {
        best = attempt;
        if (best.reached == steps_ - 1) break;  // later starts can only tie
      }
    }
  }

  void FirstTouchAnyOrder(Attempt& best) const {
    const size_t n = size();
    size_t start = 0;
    while (start < n && (bits_[start] & step_mask_) == 0) ++start;
    if (start == n) return;  // (earlier rows at its time match no step: they are not part of the attempt)
    AnyOrderFrom(start, best);
    ApplyExclusions(best);
  }

  // Every time with a step event starts an attempt; a sliding window counts the distinct steps in
  // [t0, t0 + window], an upper bound of what the attempt reaches, so only attempts that could beat the best so
  // far are evaluated.
  void AnyTouchAnyOrder(Attempt& best) const {
    const size_t n = size();
    std::array<uint32_t, kMaxFunnelSteps> count{};
    int distinct = 0;
    size_t low = 0, high = 0;
    Attempt attempt;
    for (size_t group = 0; group < n;) {
      size_t group_end = group;
      uint32_t group_bits = 0;
      for (; group_end < n && time_[group_end] == time_[group]; ++group_end) group_bits |= bits_[group_end];
      if ((group_bits & step_mask_) != 0) {
        const int64_t deadline = time_[group] + spec_.window_ms;
        for (; high < n && time_[high] <= deadline; ++high) {
          for (uint32_t bits = bits_[high] & step_mask_; bits != 0; bits &= bits - 1) {
            if (count[std::countr_zero(bits)]++ == 0) ++distinct;
          }
        }
        for (; low < group; ++low) {
          for (uint32_t bits = bits_[low] & step_mask_; bits != 0; bits &= bits - 1) {
            if (--count[std::countr_zero(bits)] == 0) --distinct;
          }
        }
        if (distinct - 1 > best.reached) {
          AnyOrderFrom(group, attempt);
          ApplyExclusions(attempt);
          if (attempt.reached > best.reached) {
            best = attempt;
            if (best.reached == steps_ - 1) break;
          }
        }
      }
      group = group_end;
    }
  }

  // after_[i]: the first event after i at a later time; next_[step * (n + 1) + i]: the first event at or after i
  // that matches `step` (n: none).
  void BuildTables() {
    const size_t n = size();
    if (n == 0) return;
    after_.resize(n);
    after_[n - 1] = static_cast<uint32_t>(n);
    for (size_t pos = n - 1; pos-- > 0;) {
      after_[pos] = time_[pos + 1] > time_[pos] ? static_cast<uint32_t>(pos + 1) : after_[pos + 1];
    }
    next_.resize(static_cast<size_t>(steps_) * (n + 1));
    for (int step = 1; step < steps_; ++step) {
      uint32_t* table = next_.data() + static_cast<size_t>(step) * (n + 1);
      const uint32_t bit = 1u << step;
      table[n] = static_cast<uint32_t>(n);
      for (size_t pos = n; pos-- > 0;) table[pos] = (bits_[pos] & bit) != 0 ? static_cast<uint32_t>(pos) : table[pos + 1];
    }
  }

  const FunnelSpec& spec_;
  const int steps_;
  const uint32_t step_mask_;
  uint32_t exclusion_mask_ = 0;
  const int64_t* time_ = nullptr;
  const uint32_t* bits_ = nullptr;
  const uint32_t* value_ = nullptr;
  size_t size_ = 0;
  std::vector<int64_t> time_buffer_;
  std::vector<uint32_t> bits_buffer_;
  std::vector<uint32_t> value_buffer_;
  std::vector<std::vector<int64_t>> exclusion_times_;  // per exclusion, ascending
  std::vector<uint32_t> after_;
  std::vector<uint32_t> next_;
};

// What one worker's users add to one group.
struct GroupAccumulator {
  GroupAccumulator(size_t steps, bool collect_users)
      : users(steps, 0), from_previous(steps), from_first(steps), user_ids(collect_users ? steps : 0) {}
  std::vector<uint64_t> users;
  std::vector<std::vector<int64_t>> from_previous, from_first;
  std::vector<Roaring> user_ids;  // per step with spec.collect_users, else empty
};

// A row's held codes (unused ones 0).
struct Codes {
  uint32_t code[3] = {0, 0, 0};
};
bool Same(const Codes& a, const Codes& b) {
  return a.code[0] == b.code[0] && a.code[1] == b.code[1] && a.code[2] == b.code[2];
}
// Codes compare as their texts (each key's dictionary is sorted).
bool Less(const Codes& a, const Codes& b) {
  if (a.code[0] != b.code[0]) return a.code[0] < b.code[0];
  if (a.code[1] != b.code[1]) return a.code[1] < b.code[1];
  return a.code[2] < b.code[2];
}

// A pair's best attempt with the pair's held codes (the tie rule of the user-level combination).
struct UserOutcome {
  PairOutcome outcome;
  uint32_t times = 0;  // where t(0..reached) start in the user's outcome times
  Codes codes;
};

// One thread's share of the users: each user's rows split into pairs, each pair's best attempt, combined per user
// and added to the worker's groups. Buffers live as long as the worker.
class Worker {
 public:
  Worker(const Timeline& timeline, const FunnelSpec& spec)
      : timeline_(timeline),
        spec_(spec),
        evaluator_(spec),
        total_(spec.steps, spec.collect_users),
        // ordered + first_touch without exclusions: every pair's attempt advances row by row, in one pass.
        streaming_(spec.order == FunnelOrder::kOrdered && spec.entry == FunnelEntry::kFirstTouch &&
                   spec.exclusions.empty()) {
    if (spec.breakdown_key) {
      value_count_ = timeline.key_values[*spec.breakdown_key].size();
      group_slot_.assign(value_count_ + 1, kNoIndex);
    }
    if (spec.hold_keys == 1) {  // one slot per code, and one for missing values
      pair_slot_.assign(timeline.key_values[0].size() + 1, 0);
      pair_stamp_.assign(timeline.key_values[0].size() + 1, 0);
    }
  }

  void Run(size_t user_from, size_t user_to) {
    for (size_t user_idx = user_from; user_idx < user_to; ++user_idx) {
      const size_t begin = timeline_.user_begin[user_idx];
      const size_t end = timeline_.user_begin[user_idx + 1];
      if (begin == end) continue;
      outcomes_.clear();
      outcome_times_.clear();
      EvaluateUser(begin, end);
      if (outcomes_.empty()) continue;
      pairs_ += outcomes_.size();
      const uint32_t user = timeline_.users[begin];
      Commit(total_, std::nullopt, user);
      if (spec_.breakdown_key) {
        values_.clear();
        for (const auto& item : outcomes_) {
          const uint32_t value = item.outcome.value;
          if (std::find(values_.begin(), values_.end(), value) == values_.end()) values_.push_back(value);
        }
        for (uint32_t value : values_) Commit(Group(value), value, user);
      }
    }
  }

  GroupAccumulator& total() { return total_; }
  std::vector<std::pair<uint32_t, GroupAccumulator>>& groups() { return groups_; }
  uint64_t pairs() const { return pairs_; }

 private:
  static constexpr size_t kMaxLinearPairs = 16;  // held tuples of 2-3 keys found by a linear search, at most

  // Per pair, the state of its one attempt while the user's rows stream by (ordered, first_touch).
  // Its times are stream_times_[pair * steps ...].
  struct Stream {
    int reached = -1;  // -1: no step-0 row yet
    uint32_t first_value = kMissingKey;
    uint32_t last_value = kMissingKey;
  };

  void EvaluatePair(const Codes& codes) {
    UserOutcome item;
    item.times = static_cast<uint32_t>(outcome_times_.size());
    if (!evaluator_.Evaluate(item.outcome, outcome_times_)) return;
    item.codes = codes;
    outcomes_.push_back(item);
  }

  // outcomes_ of the user's rows [begin, end).
  void EvaluateUser(size_t begin, size_t end) {
    const int64_t* time = timeline_.time_ms.data() + begin;
    const uint32_t* matches = timeline_.matches.data() + begin;
    const uint32_t* values = spec_.breakdown_key ? timeline_.keys[*spec_.breakdown_key].data() + begin : nullptr;
    const size_t count = end - begin;
    if (spec_.hold_keys == 0 && !streaming_) {  // one pair: the rows as they are
      evaluator_.Load(time, matches, values, count);
      EvaluatePair(Codes{});
      return;
    }
    if (streaming_ && spec_.hold_keys == 1) {  // the benchmark's question: pairs found as the rows stream by
      StreamOneHeldKey(begin, time, matches, values, count);
      return;
    }
    if (!AssignPairs(begin, end)) {
      EvaluateSortedPairs(begin, end);
      return;
    }
    if (streaming_) {
      StreamPairs(time, matches, values, count);
      return;
    }
    const size_t pairs = tuples_.size();
    if (pairs == 1) {
      if (!Missing(tuples_[0])) {
        evaluator_.Load(time, matches, values, count);
        EvaluatePair(tuples_[0]);
      }
      return;
    }
    // The pairs' rows gathered pair after pair, each in time order: a counting sort.
    pair_start_.assign(pairs + 1, 0);
    for (size_t idx = 0; idx < count; ++idx) ++pair_start_[row_pair_[idx] + 1];
    for (size_t pair_idx = 0; pair_idx < pairs; ++pair_idx) pair_start_[pair_idx + 1] += pair_start_[pair_idx];
    cursor_.assign(pair_start_.begin(), pair_start_.end() - 1);
    Reserve(gathered_time_, count);
    Reserve(gathered_bits_, count);
    Reserve(gathered_values_, count);
    for (size_t idx = 0; idx < count; ++idx) {
      const uint32_t at = cursor_[row_pair_[idx]]++;
      gathered_time_[at] = time[idx];
      gathered_bits_[at] = matches[idx];
      gathered_values_[at] = values ? values[idx] : kMissingKey;
    }
    for (size_t pair_idx = 0; pair_idx < pairs; ++pair_idx) {
      if (Missing(tuples_[pair_idx])) continue;
      const uint32_t from = pair_start_[pair_idx];
      evaluator_.Load(gathered_time_.data() + from, gathered_bits_.data() + from,
                      values ? gathered_values_.data() + from : nullptr, pair_start_[pair_idx + 1] - from);
      EvaluatePair(tuples_[pair_idx]);
    }
  }

  // Grows `buffer` to at least `size` elements, never shrinks it (no re-initialization per user).
  template <typename T>
  static void Reserve(std::vector<T>& buffer, size_t size) {
    if (buffer.size() < size) buffer.resize(std::max(size, buffer.size() * 2));
  }

  // The rows whose held values are missing make one pseudo-pair of codes kMissingKey, never evaluated.
  static bool Missing(const Codes& codes) { return codes.code[0] == kMissingKey; }

  // One held key: the pair of a row whose held value has dictionary code `code`, through the per-worker slot of
  // the code (the last slot for missing values) stamped with the current user (stamp_). A code not seen yet for
  // the user opens pair number `pairs` (counted, and `fresh` set). Written without branches on the data.
  uint32_t SlotPair(uint32_t code, uint32_t& pairs, bool& fresh) {
    const uint32_t slot = code == kMissingKey ? static_cast<uint32_t>(pair_slot_.size() - 1) : code;
    fresh = pair_stamp_[slot] != stamp_;
    const uint32_t pair_idx = fresh ? pairs : pair_slot_[slot];
    pair_stamp_[slot] = stamp_;
    pair_slot_[slot] = pair_idx;
    pair_codes_[pair_idx] = code;
    pairs += fresh;
    return pair_idx;
  }

  // Appends to tuples_ the held codes of SlotPair's first `pairs` pairs, in order of appearance.
  void SlotTuples(uint32_t pairs) {
    for (uint32_t pair_idx = 0; pair_idx < pairs; ++pair_idx) {
      Codes codes;
      codes.code[0] = pair_codes_[pair_idx];
      tuples_.push_back(codes);
    }
  }

  // row_pair_ (per row of the user: its pair) and tuples_ (per pair: its held codes, in order of appearance;
  // Missing() for the rows that belong to no pair). One held key: a per-worker slot per dictionary code (the
  // last slot for missing values), stamped with the user, without branches on the data; more keys: a linear
  // search from the last row's pair, false beyond kMaxLinearPairs pairs.
  bool AssignPairs(size_t begin, size_t end) {
    const size_t count = end - begin;
    tuples_.clear();
    Reserve(row_pair_, count);
    const size_t hold = spec_.hold_keys;
    if (hold == 0) {
      std::fill(row_pair_.begin(), row_pair_.begin() + count, 0);
      tuples_.push_back(Codes{});
      return true;
    }
    if (hold == 1) {
      ++stamp_;
      const uint32_t* key = timeline_.keys[0].data() + begin;
      Reserve(pair_codes_, count);
      uint32_t pairs = 0;
      for (size_t idx = 0; idx < count; ++idx) {
        bool fresh = false;
        row_pair_[idx] = SlotPair(key[idx], pairs, fresh);
      }
      SlotTuples(pairs);
      return true;
    }
    uint32_t last = kNoIndex;
    for (size_t idx = 0; idx < count; ++idx) {
      Codes codes;
      bool missing = false;
      for (size_t key_idx = 0; key_idx < hold; ++key_idx) {
        codes.code[key_idx] = timeline_.keys[key_idx][begin + idx];
        missing |= codes.code[key_idx] == kMissingKey;
      }
      if (missing) codes.code[0] = codes.code[1] = codes.code[2] = kMissingKey;
      if (last == kNoIndex || !Same(tuples_[last], codes)) {
        last = kNoIndex;
        for (uint32_t pair_idx = 0; pair_idx < tuples_.size(); ++pair_idx) {
          if (Same(tuples_[pair_idx], codes)) {
            last = pair_idx;
            break;
          }
        }
        if (last == kNoIndex) {
          if (tuples_.size() == kMaxLinearPairs) return false;
          last = static_cast<uint32_t>(tuples_.size());
          tuples_.push_back(codes);
        }
      }
      row_pair_[idx] = last;
    }
    return true;
  }

  // ordered + first_touch: each pair's attempt starts at its first step-0 row and takes step k at the first later
  // row (strictly later time) that matches step k within the window: what PairEvaluator's scan finds, in one pass.
  // The update is written without branches on the data (whether a row advances its pair is unpredictable).
  // Rows match no selector beyond the steps here (no exclusions), so bits >> steps is 0.
  void Advance(Stream& stream, int64_t* t, int64_t at, uint32_t bits, uint32_t value) const {
    const int steps = static_cast<int>(spec_.steps);
    const int next = stream.reached + 1;  // 0 .. steps
    const int slot = next < steps ? next : steps - 1;
    const int64_t previous = t[next > 0 ? next - 1 : 0];
    const bool match = ((bits >> next) & 1u) != 0;
    const bool in_time = next == 0 || (at > previous && at <= t[0] + spec_.window_ms);
    const bool advance = match && in_time;
    t[slot] = advance ? at : t[slot];
    stream.reached += advance;
    stream.first_value = advance && next == 0 ? value : stream.first_value;
    stream.last_value = advance ? value : stream.last_value;
  }

  // The pairs' streams (codes: tuples_) into outcomes_.
  void StreamOutcomes(size_t pairs) {
    const bool last_step_value = spec_.attribution == FunnelAttribution::kLastStep;
    for (size_t pair_idx = 0; pair_idx < pairs; ++pair_idx) {
      const Stream& stream = streams_[pair_idx];
      if (stream.reached < 0 || Missing(tuples_[pair_idx])) continue;
      const int64_t* t = stream_times_.data() + pair_idx * spec_.steps;
      UserOutcome item;
      item.outcome.reached = stream.reached;
      item.outcome.value = last_step_value ? stream.last_value : stream.first_value;
      item.times = static_cast<uint32_t>(outcome_times_.size());
      item.codes = tuples_[pair_idx];
      outcomes_.push_back(item);
      outcome_times_.insert(outcome_times_.end(), t, t + stream.reached + 1);
    }
  }

  // Streaming over the pairs of AssignPairs.
  void StreamPairs(const int64_t* time, const uint32_t* matches, const uint32_t* values, size_t count) {
    const size_t pairs = tuples_.size();
    Reserve(streams_, pairs);
    Reserve(stream_times_, pairs * spec_.steps);
    for (size_t pair_idx = 0; pair_idx < pairs; ++pair_idx) streams_[pair_idx] = Stream{};
    for (size_t idx = 0; idx < count; ++idx) {
      const uint32_t pair_idx = row_pair_[idx];
      Advance(streams_[pair_idx], stream_times_.data() + pair_idx * spec_.steps, time[idx], matches[idx],
              values ? values[idx] : kMissingKey);
    }
    StreamOutcomes(pairs);
  }

  // Streaming with one held key: each row's pair is found (AssignPairs' slots) and advanced in the same pass.
  void StreamOneHeldKey(size_t begin, const int64_t* time, const uint32_t* matches, const uint32_t* values,
                        size_t count) {
    ++stamp_;
    const uint32_t* key = timeline_.keys[0].data() + begin;
    Reserve(pair_codes_, count);
    Reserve(streams_, count);
    Reserve(stream_times_, count * spec_.steps);
    uint32_t pairs = 0;
    for (size_t idx = 0; idx < count; ++idx) {
      bool fresh = false;
      const uint32_t pair_idx = SlotPair(key[idx], pairs, fresh);
      Stream& stream = streams_[pair_idx];
      stream.reached = fresh ? -1 : stream.reached;
      Advance(stream, stream_times_.data() + pair_idx * spec_.steps, time[idx], matches[idx],
              values ? values[idx] : kMissingKey);
    }
    tuples_.clear();
    SlotTuples(pairs);
    StreamOutcomes(pairs);
  }

  // For a user with many pairs of several held keys: rows sorted by (held codes, row).
  void EvaluateSortedPairs(size_t begin, size_t end) {
    entries_.clear();
    const uint32_t* values = spec_.breakdown_key ? timeline_.keys[*spec_.breakdown_key].data() : nullptr;
    for (size_t row = begin; row < end; ++row) {
      Entry entry;
      entry.row = static_cast<uint32_t>(row);
      bool missing = false;
      for (size_t key_idx = 0; key_idx < spec_.hold_keys; ++key_idx) {
        entry.codes.code[key_idx] = timeline_.keys[key_idx][row];
        missing |= entry.codes.code[key_idx] == kMissingKey;
      }
      if (!missing) entries_.push_back(entry);
    }
    std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
      return !Same(a.codes, b.codes) ? Less(a.codes, b.codes) : a.row < b.row;
    });
    for (size_t first = 0; first < entries_.size();) {
      size_t last = first;
      evaluator_.Clear();
      for (; last < entries_.size() && Same(entries_[last].codes, entries_[first].codes); ++last) {
        const size_t row = entries_[last].row;
        evaluator_.Add(timeline_.time_ms[row], timeline_.matches[row], values ? values[row] : kMissingKey);
      }
      evaluator_.LoadGathered();
      EvaluatePair(entries_[first].codes);
      first = last;
    }
  }

  GroupAccumulator& Group(uint32_t value) {
    const size_t index = value == kMissingKey ? value_count_ : value;
    if (group_slot_[index] == kNoIndex) {
      group_slot_[index] = static_cast<uint32_t>(groups_.size());
      groups_.emplace_back(value, GroupAccumulator(spec_.steps, spec_.collect_users));
    }
    return groups_[group_slot_[index]].second;
  }

  // Adds `user` to `group` at every step one of their outcomes (those of `value`, nullopt: all) reaches; the
  // durations are those of the outcome with the earliest t0, ties to the first held values in text order.
  void Commit(GroupAccumulator& group, std::optional<uint32_t> value, uint32_t user) {
    for (size_t step = 0; step < spec_.steps; ++step) {
      const UserOutcome* chosen = nullptr;
      for (const auto& item : outcomes_) {
        const PairOutcome& outcome = item.outcome;
        if (value && outcome.value != *value) continue;
        if (outcome.reached < static_cast<int>(step)) continue;
        const int64_t t0 = outcome_times_[item.times];
        const int64_t chosen_t0 = chosen ? outcome_times_[chosen->times] : 0;
        if (chosen == nullptr || t0 < chosen_t0 || (t0 == chosen_t0 && Less(item.codes, chosen->codes))) {
          chosen = &item;
        }
      }
      if (chosen == nullptr) break;
      ++group.users[step];
      if (!group.user_ids.empty()) group.user_ids[step].add(user);
      if (step > 0) {
        const int64_t* t = outcome_times_.data() + chosen->times;
        group.from_previous[step].push_back(t[step] - t[step - 1]);
        group.from_first[step].push_back(t[step] - t[0]);
      }
    }
  }

  struct Entry {
    Codes codes;
    uint32_t row = 0;
  };

  const Timeline& timeline_;
  const FunnelSpec& spec_;
  PairEvaluator evaluator_;
  GroupAccumulator total_;
  const bool streaming_;
  std::vector<UserOutcome> outcomes_;  // the current user's pairs with an attempt
  std::vector<int64_t> outcome_times_;  // their times
  std::vector<uint32_t> values_;
  // Pairs of the current user.
  std::vector<Codes> tuples_;
  std::vector<uint32_t> row_pair_;    // per row of the user (sized to at least its rows)
  std::vector<uint32_t> pair_codes_;  // one held key: per pair, its code
  std::vector<uint32_t> pair_slot_;   // one held key: dictionary code → pair of the current user
  std::vector<uint32_t> pair_stamp_;  // ... valid when pair_stamp_[code] == stamp_
  uint32_t stamp_ = 0;
  std::vector<Stream> streams_;
  std::vector<int64_t> stream_times_;  // per pair of the current user, spec.steps times
  std::vector<uint32_t> pair_start_;  // per pair: its first gathered row; then the total
  std::vector<uint32_t> cursor_;
  std::vector<int64_t> gathered_time_;
  std::vector<uint32_t> gathered_bits_;
  std::vector<uint32_t> gathered_values_;
  std::vector<Entry> entries_;
  // Breakdown groups.
  size_t value_count_ = 0;
  std::vector<uint32_t> group_slot_;  // breakdown code (missing: value_count_) → index in groups_
  std::vector<std::pair<uint32_t, GroupAccumulator>> groups_;
  uint64_t pairs_ = 0;
};

void MergeInto(GroupAccumulator& into, GroupAccumulator& from) {
  for (size_t step = 0; step < into.users.size(); ++step) {
    into.users[step] += from.users[step];
    // Workers take disjoint runs of users: the union is each step's users.
    if (!into.user_ids.empty()) into.user_ids[step] |= from.user_ids[step];
    into.from_previous[step].insert(into.from_previous[step].end(), from.from_previous[step].begin(),
                                    from.from_previous[step].end());
    into.from_first[step].insert(into.from_first[step].end(), from.from_first[step].begin(),
                                 from.from_first[step].end());
  }
}

// Durations are never negative (steps are reached in time order): sorted as unsigned keys.
void SortDurations(std::vector<int64_t>& durations) {
  uint64_t largest = 0;
  for (int64_t ms : durations) largest |= static_cast<uint64_t>(ms);
  std::vector<uint64_t> scratch(durations.size());
  common::RadixSortRange(reinterpret_cast<uint64_t*>(durations.data()), scratch.data(), durations.size(), largest);
}

FunnelGroup Finish(GroupAccumulator& accumulator, std::optional<std::string> value) {
  FunnelGroup group;
  group.value = std::move(value);
  group.steps.resize(accumulator.users.size());
  for (size_t step = 0; step < accumulator.users.size(); ++step) {
    FunnelStepOutcome& out = group.steps[step];
    out.users = accumulator.users[step];
    if (!accumulator.user_ids.empty()) out.user_ids = std::move(accumulator.user_ids[step]);
    out.ms_from_previous = std::move(accumulator.from_previous[step]);
    out.ms_from_first = std::move(accumulator.from_first[step]);
    SortDurations(out.ms_from_previous);
    SortDurations(out.ms_from_first);
  }
  return group;
}

}  // namespace

FunnelResult RunFunnel(const Timeline& timeline, const FunnelSpec& spec) {
  assert(spec.steps >= 2 && spec.steps <= kMaxFunnelSteps);
  assert(spec.steps + spec.exclusions.size() <= kMaxTimelineSelectors);
  assert(spec.hold_keys <= 3 && spec.hold_keys <= timeline.keys.size());
  assert(!spec.breakdown_key || *spec.breakdown_key < timeline.keys.size());
  assert(spec.window_ms > 0);
  const size_t users = timeline.user_count();
  // Chunks of about equal rows; more chunks than threads so that uneven chunks balance.
  const size_t threads = std::max<size_t>(1, spec.threads);
  const size_t chunks = users == 0 ? 0 : std::min(users, threads == 1 ? size_t{1} : threads * 8);
  std::vector<size_t> bounds(chunks + 1, users);
  if (chunks > 0) {
    bounds[0] = 0;
    const uint64_t rows = timeline.user_begin[users];
    for (size_t chunk_idx = 1; chunk_idx < chunks; ++chunk_idx) {
      const uint64_t target = rows * chunk_idx / chunks;
      const auto it = std::lower_bound(timeline.user_begin.begin(), timeline.user_begin.begin() + users, target);
      bounds[chunk_idx] = std::max(bounds[chunk_idx - 1], static_cast<size_t>(it - timeline.user_begin.begin()));
    }
  }
  // One worker per thread, taking chunks in turn; what a worker adds does not depend on which chunks it took
  // (counts add up, durations are sorted, groups merge by value).
  const size_t worker_count = std::min(threads, chunks);
  std::vector<std::unique_ptr<Worker>> workers(worker_count);
  std::atomic<size_t> next_chunk{0};
  common::ParallelFor(worker_count, worker_count, [&](size_t worker_idx) {
    workers[worker_idx] = std::make_unique<Worker>(timeline, spec);
    for (size_t chunk_idx = next_chunk++; chunk_idx < chunks; chunk_idx = next_chunk++) {
      workers[worker_idx]->Run(bounds[chunk_idx], bounds[chunk_idx + 1]);
    }
  });

  FunnelResult result;
  GroupAccumulator total(spec.steps, spec.collect_users);
  const size_t value_count = spec.breakdown_key ? timeline.key_values[*spec.breakdown_key].size() : 0;
  std::vector<std::unique_ptr<GroupAccumulator>> groups(spec.breakdown_key ? value_count + 1 : 0);
  for (auto& worker : workers) {
    MergeInto(total, worker->total());
    result.pairs += worker->pairs();
    for (auto& [value, accumulator] : worker->groups()) {
      auto& slot = groups[value == kMissingKey ? value_count : value];
      if (!slot) slot = std::make_unique<GroupAccumulator>(spec.steps, spec.collect_users);
      MergeInto(*slot, accumulator);
    }
    worker.reset();
  }
  result.total = Finish(total, std::nullopt);
  for (size_t index = 0; index < groups.size(); ++index) {
    if (!groups[index]) continue;
    std::optional<std::string> value;
    if (index < value_count) value = timeline.key_values[*spec.breakdown_key][index];
    result.breakdown.push_back(Finish(*groups[index], std::move(value)));
  }
  return result;
}

}  // namespace analytics::query
