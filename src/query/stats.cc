// Distribution functions through Boost.Math (errors as NaN, never exceptions) and the experiment statistics.
#include "query/stats.h"

#include <algorithm>
#include <cmath>

#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/special_functions/erf.hpp>
#include <boost/math/special_functions/gamma.hpp>

namespace analytics::query {

namespace {

namespace bm = boost::math;
// Bad arguments give NaN instead of throwing: no exception may leave this file (callers check their inputs,
// this is the backstop).
using Policy = bm::policies::policy<bm::policies::domain_error<bm::policies::ignore_error>,
                                    bm::policies::pole_error<bm::policies::ignore_error>,
                                    bm::policies::overflow_error<bm::policies::ignore_error>,
                                    bm::policies::evaluation_error<bm::policies::ignore_error>>;

}  // namespace

double Z95() {
  static const double z = NormalQuantile(0.975);
  return z;
}

double NormalCdf(double x) { return 0.5 * bm::erfc(-x / std::sqrt(2.0), Policy()); }

double NormalTwoSidedP(double z) { return bm::erfc(std::fabs(z) / std::sqrt(2.0), Policy()); }

double NormalQuantile(double p) {
  if (!(p > 0 && p < 1)) return std::nan("");
  return bm::quantile(bm::normal_distribution<double, Policy>(0.0, 1.0), p);
}

double StudentTTwoSidedP(double t, double df) {
  if (!(df > 0) || std::isnan(t)) return std::nan("");
  const bm::students_t_distribution<double, Policy> dist(df);
  return 2 * bm::cdf(bm::complement(dist, std::fabs(t)));
}

double StudentTQuantile(double p, double df) {
  if (!(df > 0) || !(p > 0 && p < 1)) return std::nan("");
  return bm::quantile(bm::students_t_distribution<double, Policy>(df), p);
}

double ChiSquareSurvival(double x, double df) {
  if (!(df > 0) || std::isnan(x)) return std::nan("");
  if (x <= 0) return 1;
  return bm::gamma_q(df / 2, x / 2, Policy());
}

std::optional<Interval> WilsonInterval(uint64_t successes, uint64_t trials, double z) {
  if (trials == 0) return std::nullopt;
  const double n = static_cast<double>(trials);
  const double p = static_cast<double>(successes) / n;
  const double z2 = z * z;
  const double denominator = 1 + z2 / n;
  const double center = (p + z2 / (2 * n)) / denominator;
  const double half = z / denominator * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  return Interval{center - half, center + half};
}

std::optional<TestResult> TwoProportionZTest(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0) {
  if (n1 == 0 || n0 == 0) return std::nullopt;
  const double pooled = static_cast<double>(x1 + x0) / static_cast<double>(n1 + n0);
  if (pooled <= 0 || pooled >= 1) return TestResult{0, 0, 1};  // both rates 0 or both 1: no difference
  const double p1 = static_cast<double>(x1) / static_cast<double>(n1);
  const double p0 = static_cast<double>(x0) / static_cast<double>(n0);
  const double se = std::sqrt(pooled * (1 - pooled) * (1 / static_cast<double>(n1) + 1 / static_cast<double>(n0)));
  TestResult result;
  result.statistic = (p1 - p0) / se;
  result.p_value = NormalTwoSidedP(result.statistic);
  return result;
}

std::optional<double> Moments::Variance() const {
  if (n < 2) return std::nullopt;
  return m2 / static_cast<double>(n - 1);
}

std::optional<TestResult> WelchTTest(const Moments& treatment, const Moments& control) {
  const auto var1 = treatment.Variance();
  const auto var0 = control.Variance();
  if (!var1 || !var0) return std::nullopt;
  const double a = *var1 / static_cast<double>(treatment.n);
  const double b = *var0 / static_cast<double>(control.n);
  const double se2 = a + b;
  if (!(se2 > 0)) {
    if (treatment.mean == control.mean) return TestResult{0, 0, 1};  // two equal constants: no difference
    return std::nullopt;
  }
  TestResult result;
  result.statistic = (treatment.mean - control.mean) / std::sqrt(se2);
  result.df = se2 * se2 /
              (a * a / static_cast<double>(treatment.n - 1) + b * b / static_cast<double>(control.n - 1));
  result.p_value = StudentTTwoSidedP(result.statistic, result.df);
  return result;
}

std::optional<Interval> MeanInterval(const Moments& moments) {
  const auto variance = moments.Variance();
  if (!variance) return std::nullopt;
  const double n = static_cast<double>(moments.n);
  const double half = StudentTQuantile(0.975, n - 1) * std::sqrt(*variance / n);
  return Interval{moments.mean - half, moments.mean + half};
}

std::optional<Interval> NewcombeDifferenceInterval(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0, double z) {
  const auto w1 = WilsonInterval(x1, n1, z);
  const auto w0 = WilsonInterval(x0, n0, z);
  if (!w1 || !w0) return std::nullopt;
  const double p1 = static_cast<double>(x1) / static_cast<double>(n1);
  const double p0 = static_cast<double>(x0) / static_cast<double>(n0);
  const double d = p1 - p0;
  const double lower = std::sqrt((p1 - w1->lo) * (p1 - w1->lo) + (w0->hi - p0) * (w0->hi - p0));
  const double upper = std::sqrt((w1->hi - p1) * (w1->hi - p1) + (p0 - w0->lo) * (p0 - w0->lo));
  return Interval{d - lower, d + upper};
}

std::optional<Interval> RatioUpliftInterval(uint64_t x1, uint64_t n1, uint64_t x0, uint64_t n0, double z) {
  if (x1 == 0 || x0 == 0 || n1 == 0 || n0 == 0) return std::nullopt;
  const double p1 = static_cast<double>(x1) / static_cast<double>(n1);
  const double p0 = static_cast<double>(x0) / static_cast<double>(n0);
  const double log_ratio = std::log(p1 / p0);
  const double variance = 1 / static_cast<double>(x1) - 1 / static_cast<double>(n1) + 1 / static_cast<double>(x0) -
                          1 / static_cast<double>(n0);
  const double half = z * std::sqrt(std::max(0.0, variance));
  return Interval{std::exp(log_ratio - half) - 1, std::exp(log_ratio + half) - 1};
}

std::optional<Interval> MeanUpliftInterval(const Moments& treatment, const Moments& control, double z) {
  const auto var1 = treatment.Variance();
  const auto var0 = control.Variance();
  if (!var1 || !var0 || !(treatment.mean > 0) || !(control.mean > 0)) return std::nullopt;
  const double log_ratio = std::log(treatment.mean / control.mean);
  const double variance = *var1 / (static_cast<double>(treatment.n) * treatment.mean * treatment.mean) +
                          *var0 / (static_cast<double>(control.n) * control.mean * control.mean);
  const double half = z * std::sqrt(variance);
  return Interval{std::exp(log_ratio - half) - 1, std::exp(log_ratio + half) - 1};
}

std::optional<Interval> WelchDifferenceInterval(const Moments& treatment, const Moments& control) {
  const auto test = WelchTTest(treatment, control);
  if (!test || !(test->df > 0)) return std::nullopt;
  const double se = std::sqrt(*treatment.Variance() / static_cast<double>(treatment.n) +
                              *control.Variance() / static_cast<double>(control.n));
  const double half = StudentTQuantile(0.975, test->df) * se;
  const double d = treatment.mean - control.mean;
  return Interval{d - half, d + half};
}

}  // namespace analytics::query
