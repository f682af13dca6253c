// CountExperiment: one pass over the users in fixed ranges, then totals in user order; AnalyzeExperiment: the
// statistics of query/stats.h over those totals.
#include "query/experiment.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "common/parallel.h"

namespace analytics::query {

namespace {

// Users (slots of the exposure timeline's user_begin) per range of the pass. Fixed (not derived from the thread
// count) so the records, and the order the totals are added in, are the same on any machine.
constexpr size_t kUsersPerRange = size_t{1} << 15;

// The user of slot `slot` of a joined timeline's user_begin, for slots that have rows. A slot without rows gets
// the next user's id (or the largest id past the end), which keeps the ids of slots in order: user_begin may list
// every dense id (empty slots for users without rows) or only the users with rows.
uint32_t SlotUser(const Timeline& timeline, size_t slot) {
  const uint32_t row = timeline.user_begin[slot];
  return row < timeline.rows() ? timeline.users[row] : std::numeric_limits<uint32_t>::max();
}

// A goal as the pass reads it.
struct GoalReader {
  size_t goal_idx = 0;
  uint32_t bit = 0;
  bool mean = false;
  int64_t window_ms = std::numeric_limits<int64_t>::max();
};

// The goals of one timeline.
struct TimelineGoals {
  const Timeline* timeline = nullptr;
  uint32_t mask = 0;  // the union of the goals' selector bits
  std::vector<GoalReader> goals;
};

// What one range of users produced: a record per exposed user, in user order.
struct RangeRecords {
  std::vector<uint32_t> variant;        // variant code (timelines[0] key_values of the variant key)
  std::vector<uint8_t> multiple;        // also exposed to another variant
  std::vector<uint32_t> converted;      // bit g: goal g reached
  std::vector<double> values;           // mean goals: mean_goals values per record, in goal order
};

void CountRange(const ExperimentInput& input, const std::vector<TimelineGoals>& readers, size_t mean_goals,
                size_t slot_from, size_t slot_to, RangeRecords& out) {
  const Timeline& exposures = *input.timelines[0];
  const uint32_t exposure_bit = uint32_t{1} << input.exposure_selector;
  const std::vector<uint32_t>& codes = exposures.keys[input.variant_key];
  // An empty text is no variant either; sorted texts put it first.
  const std::vector<std::string>& texts = exposures.key_values[input.variant_key];
  const uint32_t empty_code = !texts.empty() && texts[0].empty() ? 0 : kMissingKey;
  // Per goal timeline, the slot where the range's users start (users come in id order in every timeline).
  std::vector<size_t> cursors(readers.size(), 0);
  if (slot_from < slot_to) {
    const uint32_t first_user = SlotUser(exposures, slot_from);
    for (size_t reader_idx = 0; reader_idx < readers.size(); ++reader_idx) {
      const Timeline& timeline = *readers[reader_idx].timeline;
      size_t low = 0, high = timeline.user_count();  // the first slot whose user is at least first_user
      while (low < high) {
        const size_t mid = low + (high - low) / 2;
        if (SlotUser(timeline, mid) < first_user) low = mid + 1; else high = mid;
      }
      cursors[reader_idx] = low;
    }
  }
  double sums[kMaxExperimentGoals];
  for (size_t slot = slot_from; slot < slot_to; ++slot) {
    const uint32_t begin = exposures.user_begin[slot], end = exposures.user_begin[slot + 1];
    if (begin == end) continue;
    const uint32_t user = exposures.users[begin];
    // The first exposure: earliest time, then smallest variant code (key_values are sorted: the smallest text).
    int64_t exposure_ms = 0;
    uint32_t variant = kMissingKey;
    uint32_t some_variant = kMissingKey;
    bool multiple = false;
    for (uint32_t row = begin; row < end; ++row) {
      if ((exposures.matches[row] & exposure_bit) == 0) continue;
      const uint32_t code = codes[row];
      const int64_t time = exposures.time_ms[row];
      if (code == kMissingKey || code == empty_code || time < input.start_ms || time >= input.end_ms) continue;
      if (variant == kMissingKey) {
        exposure_ms = time;
        variant = some_variant = code;
        continue;
      }
      multiple |= code != some_variant;
      if (time < exposure_ms || (time == exposure_ms && code < variant)) {
        exposure_ms = time;
        variant = code;
      }
    }
    if (variant == kMissingKey) continue;
    uint32_t converted = 0;
    for (size_t goal_idx = 0; goal_idx < mean_goals; ++goal_idx) sums[goal_idx] = 0;
    for (size_t reader_idx = 0; reader_idx < readers.size(); ++reader_idx) {
      const TimelineGoals& reader = readers[reader_idx];
      const Timeline& timeline = *reader.timeline;
      // This user's rows in the goal timeline, if any.
      size_t& cursor = cursors[reader_idx];
      const size_t slots = timeline.user_count();
      while (cursor < slots && (timeline.user_begin[cursor] == timeline.user_begin[cursor + 1] ||
                                SlotUser(timeline, cursor) < user)) {
        ++cursor;
      }
      if (cursor == slots || SlotUser(timeline, cursor) != user) continue;
      uint32_t row = timeline.user_begin[cursor];
      const uint32_t rows_end = timeline.user_begin[cursor + 1];
      while (row < rows_end && timeline.time_ms[row] <= exposure_ms) ++row;  // strictly after the exposure
      for (; row < rows_end; ++row) {
        const int64_t time = timeline.time_ms[row];
        if (time >= input.end_ms) break;
        const uint32_t hits = timeline.matches[row] & reader.mask;
        if (hits == 0) continue;
        const int64_t since_ms = time - exposure_ms;
        for (const GoalReader& goal : reader.goals) {
          if ((hits & goal.bit) == 0 || since_ms > goal.window_ms) continue;
          converted |= uint32_t{1} << goal.goal_idx;
          if (goal.mean) {
            const double number = timeline.numbers[row];
            if (!std::isnan(number)) sums[goal.goal_idx] += number;
          }
        }
      }
    }
    out.variant.push_back(variant);
    out.multiple.push_back(multiple ? 1 : 0);
    out.converted.push_back(converted);
    for (size_t goal_idx = 0; goal_idx < input.goals.size(); ++goal_idx) {
      if (input.goals[goal_idx].kind == GoalKind::kMean) out.values.push_back(sums[goal_idx]);
    }
  }
}

}  // namespace

std::vector<VariantCounts> CountExperiment(const ExperimentInput& input, size_t threads) {
  assert(!input.timelines.empty() && input.goals.size() <= kMaxExperimentGoals);
  const Timeline& exposures = *input.timelines[0];
  if (exposures.rows() == 0 || input.variant_key >= exposures.keys.size()) return {};
  const size_t goal_count = input.goals.size();
  std::vector<TimelineGoals> readers;
  size_t mean_goals = 0;
  for (size_t goal_idx = 0; goal_idx < goal_count; ++goal_idx) {
    const ExperimentGoal& goal = input.goals[goal_idx];
    const Timeline* timeline = input.timelines[goal.timeline];
    auto it = std::find_if(readers.begin(), readers.end(), [&](const auto& r) { return r.timeline == timeline; });
    if (it == readers.end()) it = readers.insert(readers.end(), TimelineGoals{timeline, 0, {}});
    GoalReader reader;
    reader.goal_idx = goal_idx;
    reader.bit = uint32_t{1} << goal.selector;
    reader.mean = goal.kind == GoalKind::kMean;
    if (goal.window_ms) reader.window_ms = *goal.window_ms;
    it->mask |= reader.bit;
    it->goals.push_back(reader);
    // The pass keeps a mean goal's sum at its goal index; `values` stores only the mean goals'.
    if (reader.mean) mean_goals = goal_idx + 1;
  }
  const size_t users = exposures.user_count();
  const size_t ranges = (users + kUsersPerRange - 1) / kUsersPerRange;
  std::vector<RangeRecords> records(ranges);
  common::ParallelFor(ranges, threads, [&](size_t range_idx) {
    const size_t from = range_idx * kUsersPerRange;
    CountRange(input, readers, mean_goals, from, std::min(users, from + kUsersPerRange), records[range_idx]);
  });

  // Variant codes in use, densely numbered in code order (= text order).
  const std::vector<std::string>& texts = exposures.key_values[input.variant_key];
  std::vector<uint32_t> dense(texts.size(), kMissingKey);
  for (const RangeRecords& range : records) {
    for (uint32_t code : range.variant) dense[code] = 0;
  }
  std::vector<VariantCounts> out;
  for (size_t code = 0; code < texts.size(); ++code) {
    if (dense[code] == kMissingKey) continue;
    dense[code] = static_cast<uint32_t>(out.size());
    VariantCounts& variant = out.emplace_back();
    variant.variant = texts[code];
    variant.goals.resize(goal_count);
  }
  std::vector<size_t> value_slot(goal_count, 0);  // a mean goal's place among a record's values
  size_t per_record = 0;
  for (size_t goal_idx = 0; goal_idx < goal_count; ++goal_idx) {
    if (input.goals[goal_idx].kind == GoalKind::kMean) value_slot[goal_idx] = per_record++;
  }
  // Counts and sums, in user order.
  for (const RangeRecords& range : records) {
    for (size_t record_idx = 0; record_idx < range.variant.size(); ++record_idx) {
      VariantCounts& variant = out[dense[range.variant[record_idx]]];
      ++variant.exposed_users;
      variant.users_with_multiple_variants += range.multiple[record_idx];
      for (size_t goal_idx = 0; goal_idx < goal_count; ++goal_idx) {
        GoalCounts& goal = variant.goals[goal_idx];
        goal.converters += (range.converted[record_idx] >> goal_idx) & 1;
        if (input.goals[goal_idx].kind == GoalKind::kMean) {
          goal.values.mean += range.values[record_idx * per_record + value_slot[goal_idx]];  // the sum, for now
        }
      }
    }
  }
  for (VariantCounts& variant : out) {
    for (size_t goal_idx = 0; goal_idx < goal_count; ++goal_idx) {
      GoalCounts& goal = variant.goals[goal_idx];
      if (input.goals[goal_idx].kind != GoalKind::kMean) continue;
      goal.values.n = variant.exposed_users;
      goal.values.mean /= static_cast<double>(variant.exposed_users);
    }
  }
  // Squared deviations from the means (two passes: no cancellation as in Σy² - n·mean²).
  if (per_record > 0) {
    for (const RangeRecords& range : records) {
      for (size_t record_idx = 0; record_idx < range.variant.size(); ++record_idx) {
        VariantCounts& variant = out[dense[range.variant[record_idx]]];
        for (size_t goal_idx = 0; goal_idx < goal_count; ++goal_idx) {
          if (input.goals[goal_idx].kind != GoalKind::kMean) continue;
          Moments& moments = variant.goals[goal_idx].values;
          const double deviation = range.values[record_idx * per_record + value_slot[goal_idx]] - moments.mean;
          moments.m2 += deviation * deviation;
        }
      }
    }
  }
  return out;
}

ExperimentReport AnalyzeExperiment(const std::vector<VariantCounts>& variants, std::optional<size_t> control,
                                   const std::vector<double>& shares, const std::vector<GoalKind>& kinds) {
  assert((!control || *control < variants.size()) && shares.size() == variants.size());
  const double z = Z95();
  ExperimentReport report;
  for (size_t variant_idx = 0; variant_idx < variants.size(); ++variant_idx) {
    const VariantCounts& counts = variants[variant_idx];
    VariantStats& stats = report.variants.emplace_back();
    stats.variant = counts.variant;
    stats.control = control == variant_idx;
    stats.exposed_users = counts.exposed_users;
    stats.users_with_multiple_variants = counts.users_with_multiple_variants;
    const uint64_t n = counts.exposed_users;
    const VariantCounts* base = control ? &variants[*control] : nullptr;
    const bool compare = base != nullptr && !stats.control && n > 0 && base->exposed_users > 0;
    for (size_t goal_idx = 0; goal_idx < kinds.size(); ++goal_idx) {
      const GoalCounts& goal = counts.goals[goal_idx];
      GoalStats& out = stats.goals.emplace_back();
      out.kind = kinds[goal_idx];
      out.converters = goal.converters;
      if (out.kind == GoalKind::kConversion) {
        const uint64_t x = goal.converters;
        if (n > 0) out.rate = static_cast<double>(x) / static_cast<double>(n);
        out.ci95 = WilsonInterval(x, n, z);
        if (!compare) continue;
        const uint64_t x0 = base->goals[goal_idx].converters;
        const uint64_t n0 = base->exposed_users;
        const double rate0 = static_cast<double>(x0) / static_cast<double>(n0);
        out.difference = *out.rate - rate0;
        out.difference_ci95 = NewcombeDifferenceInterval(x, n, x0, n0, z);
        if (x0 > 0) out.uplift = *out.rate / rate0 - 1;
        out.uplift_ci95 = RatioUpliftInterval(x, n, x0, n0, z);
        if (auto test = TwoProportionZTest(x, n, x0, n0)) {
          out.statistic = test->statistic;
          out.p_value = test->p_value;
        }
      } else {
        const Moments& values = goal.values;
        if (n > 0) out.mean = values.mean;
        if (auto variance = values.Variance()) out.std_dev = std::sqrt(*variance);
        out.ci95 = MeanInterval(values);
        if (!compare) continue;
        const Moments& base_values = base->goals[goal_idx].values;
        out.difference = values.mean - base_values.mean;
        out.difference_ci95 = WelchDifferenceInterval(values, base_values);
        if (base_values.mean != 0) out.uplift = values.mean / base_values.mean - 1;
        out.uplift_ci95 = MeanUpliftInterval(values, base_values, z);
        if (auto test = WelchTTest(values, base_values)) {
          out.statistic = test->statistic;
          if (test->df > 0) out.df = test->df;
          out.p_value = test->p_value;
        }
      }
    }
  }

  SrmResult& srm = report.srm;
  uint64_t total = 0;
  double share_sum = 0;
  for (size_t variant_idx = 0; variant_idx < variants.size(); ++variant_idx) {
    if (!(shares[variant_idx] > 0)) continue;
    srm.variants.push_back(variant_idx);
    total += variants[variant_idx].exposed_users;
    share_sum += shares[variant_idx];
  }
  double chi_square = 0;
  for (size_t variant_idx : srm.variants) {
    const double share = shares[variant_idx] / share_sum;
    const double expected = static_cast<double>(total) * share;
    const uint64_t observed = variants[variant_idx].exposed_users;
    srm.shares.push_back(share);
    srm.expected.push_back(expected);
    srm.observed.push_back(observed);
    if (expected > 0) {
      const double deviation = static_cast<double>(observed) - expected;
      chi_square += deviation * deviation / expected;
    }
  }
  if (srm.variants.size() >= 2 && total > 0) {
    srm.df = srm.variants.size() - 1;
    srm.chi_square = chi_square;
    srm.p_value = ChiSquareSurvival(chi_square, static_cast<double>(srm.df));
    srm.ok = *srm.p_value >= kSrmThreshold;
  }
  return report;
}

}  // namespace analytics::query
