// Experiments (A/B tests): who was exposed to which variant, who reached each goal afterwards, and the report
// (rates and means with intervals, uplift and p-values against the control, the sample-ratio-mismatch check).
// Semantics: docs/analysis.md, experiments.
//
// Rationale: CountExperiment is one pass over the users' time-ordered rows (query/timeline.h): a user's first
// exposure (earliest time; at equal times the smallest variant text) fixes their variant and exposure time,
// then their goal rows strictly after it (and within a goal's window) are read once for every goal. Users are
// cut into fixed ranges that run on several threads; each range keeps one record per exposed user and the
// records are added up in user order afterwards, so the sums (and the floating-point result) do not depend on
// the thread count. AnalyzeExperiment then works on the few per-variant totals only.
// Thread-safety: pure functions over immutable inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "query/stats.h"
#include "query/timeline.h"

namespace analytics::query {

inline constexpr size_t kMaxExperimentGoals = 20;
inline constexpr double kSrmThreshold = 0.001;  // the SRM check passes when its p-value is at least this

enum class GoalKind { kConversion, kMean };

// Where a goal's events are read: selector `selector` of timeline `timeline` of the input.
struct ExperimentGoal {
  GoalKind kind = GoalKind::kConversion;
  size_t timeline = 0;
  size_t selector = 0;
  std::optional<int64_t> window_ms;  // a goal event counts when 0 < t - exposure <= window (none: unbounded)
};

struct ExperimentInput {
  // Joined timelines (user_begin set; it may list every dense id, users without rows having empty slots, or only
  // the users with rows: goal rows are matched to exposed users by id). timelines[0] holds the exposures: rows
  // matching `exposure_selector`,
  // whose `variant_key` key is the variant (missing or the empty text: not an exposure). A mean goal's timeline
  // has numbers.
  std::vector<const Timeline*> timelines;
  size_t exposure_selector = 0;
  size_t variant_key = 0;
  std::vector<ExperimentGoal> goals;  // at most kMaxExperimentGoals
  // The period: exposures count in [start_ms, end_ms), goal events before end_ms (rows outside are ignored).
  int64_t start_ms = std::numeric_limits<int64_t>::min();
  int64_t end_ms = std::numeric_limits<int64_t>::max();
};

struct GoalCounts {
  uint64_t converters = 0;  // exposed users with at least one goal event after exposure (within the window)
  Moments values;           // mean goals: the per-user sums of the number (0 without one); conversion: empty
};

struct VariantCounts {
  std::string variant;
  uint64_t exposed_users = 0;
  uint64_t users_with_multiple_variants = 0;  // of exposed_users: also exposed to another variant
  std::vector<GoalCounts> goals;              // per input goal
};

// The variants with at least one exposed user, in byte order of their text. Results do not depend on
// `threads`.
std::vector<VariantCounts> CountExperiment(const ExperimentInput& input, size_t threads);

// --- The report -----------------------------------------------------------------------------------------------

struct GoalStats {
  GoalKind kind = GoalKind::kConversion;
  uint64_t converters = 0;
  // Conversion: converters / exposed and its Wilson interval. Mean: the mean, sample standard deviation and the
  // Student t interval of the mean.
  std::optional<double> rate, mean, std_dev;
  std::optional<Interval> ci95;
  // Against the control (nullopt for the control itself and where undefined): relative uplift and its interval,
  // absolute difference and its interval, the test statistic (z or Welch t), its df (Welch) and p-value.
  std::optional<double> uplift, difference, statistic, df, p_value;
  std::optional<Interval> uplift_ci95, difference_ci95;
};

struct VariantStats {
  std::string variant;
  bool control = false;
  uint64_t exposed_users = 0;
  uint64_t users_with_multiple_variants = 0;
  std::vector<GoalStats> goals;
};

struct SrmResult {
  std::vector<size_t> variants;    // the variants checked (indexes into the report's): those with a share
  std::vector<double> shares;      // their shares, normalized to sum 1
  std::vector<double> expected;    // total × share
  std::vector<uint64_t> observed;  // their exposed users
  size_t df = 0;                   // variants checked - 1 (0 when fewer than 2)
  // nullopt when fewer than 2 variants are checked or they have no exposed user.
  std::optional<double> chi_square, p_value;
  std::optional<bool> ok;          // p_value >= kSrmThreshold
};

struct ExperimentReport {
  std::vector<VariantStats> variants;  // in the order given
  SrmResult srm;
};

// The report over `variants` (exposed users 0 allowed) compared with variants[*control] (no comparisons
// without a control). `shares` (same order) is the configured split: the SRM check covers the variants whose
// share is positive, with the shares normalized over them. `kinds`: the goals' kinds (each variant has one
// GoalCounts per goal).
ExperimentReport AnalyzeExperiment(const std::vector<VariantCounts>& variants, std::optional<size_t> control,
                                   const std::vector<double>& shares, const std::vector<GoalKind>& kinds);

}  // namespace analytics::query
