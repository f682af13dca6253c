// Statistics of experiment analysis (docs/analysis.md, experiments): distribution functions and the tests and
// intervals an A/B report is made of.
//
// Rationale: the benchmark recomputes the same p-values in SQL and compares them to 1e-9, so every function
// here is the textbook formula evaluated with Boost.Math's accurate special functions (tails through the
// complement, never 1 - cdf, so small p-values keep their digits). Degenerate inputs (no users, zero variance)
// give std::nullopt rather than NaN: the report shows them as null.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>

namespace analytics::query {

struct Interval {
  double lo = 0;
  double hi = 0;
};

// The two-sided 95% quantile of the standard normal, Φ⁻¹(0.975).
double Z95();

// Standard normal: Φ(x), and the two-sided tail P(|Z| >= |z|) = erfc(|z| / √2).
double NormalCdf(double x);
double NormalTwoSidedP(double z);
// Φ⁻¹(p) for p in (0, 1).
double NormalQuantile(double p);

// Student's t with `df` > 0 degrees of freedom (not necessarily an integer): the two-sided tail
// P(|T| >= |t|), and the quantile for p in (0, 1).
double StudentTTwoSidedP(double t, double df);
double StudentTQuantile(double p, double df);

// P(X >= x) for X ~ chi-square with `df` > 0 degrees of freedom (the upper regularized gamma Q(df/2, x/2)).
double ChiSquareSurvival(double x, double df);

// Wilson score interval of a proportion `successes` / `trials` at normal quantile `z`; nullopt when trials is 0.
// center = (p + z²/2n) / (1 + z²/n), half width = z / (1 + z²/n) · √(p(1-p)/n + z²/4n²).
std::optional<Interval> WilsonInterval(uint64_t successes, uint64_t trials, double z);

struct TestResult {
  double statistic = 0;  // z or t, treatment minus control
  double df = 0;         // Welch: the Welch–Satterthwaite degrees of freedom; z-test: 0
  double p_value = 1;    // two-sided
};

// Pooled two-proportion z-test of treatment (x1 / n1) against control (x0 / n0):
// z = (p1 - p0) / √(p(1-p)(1/n1 + 1/n0)) with p = (x1 + x0) / (n1 + n0). nullopt when a group is empty; z 0 and
// p-value 1 when the pooled proportion is 0 or 1 (both rates equal, no variance).
std::optional<TestResult> TwoProportionZTest(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0);

// Summary of one group's values: its size, mean and sum of squared deviations from the mean.
struct Moments {
  uint64_t n = 0;
  double mean = 0;
  double m2 = 0;  // Σ (y - mean)²
  // The sample variance m2 / (n - 1); nullopt for fewer than 2 values.
  std::optional<double> Variance() const;
};

// Welch's t-test of treatment against control: t = (m1 - m0) / √(s1²/n1 + s0²/n0), df by Welch–Satterthwaite.
// nullopt when a group has fewer than 2 values, or both variances are 0 and the means differ; t 0, df 0 and
// p-value 1 when both variances are 0 and the means are equal.
std::optional<TestResult> WelchTTest(const Moments& treatment, const Moments& control);

// The two-sided 95% interval of a mean with Student's t (n - 1 df): mean ± t · s / √n; nullopt for n < 2.
std::optional<Interval> MeanInterval(const Moments& moments);

// Newcombe's hybrid score interval (method 10) of p1 - p0 from the two Wilson intervals; nullopt when a group
// is empty.
std::optional<Interval> NewcombeDifferenceInterval(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0, double z);

// 95% interval of the relative uplift p1/p0 - 1 of two proportions by the delta method on the log of the ratio:
// exp(ln(p1/p0) ± z·√(1/x1 - 1/n1 + 1/x0 - 1/n0)) - 1; nullopt when x1 or x0 is 0.
std::optional<Interval> RatioUpliftInterval(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0, double z);

// 95% interval of the relative uplift m1/m0 - 1 of two means by the delta method on the log of the ratio:
// exp(ln(m1/m0) ± z·√(s1²/(n1·m1²) + s0²/(n0·m0²))) - 1; nullopt when a mean is not positive or a group has fewer
// than 2 values.
std::optional<Interval> MeanUpliftInterval(const Moments& treatment, const Moments& control, double z);

// 95% interval of m1 - m0 with Welch's t (the test's df): d ± t · se; nullopt when the test is or se is 0.
std::optional<Interval> WelchDifferenceInterval(const Moments& treatment, const Moments& control);

}  // namespace analytics::query
