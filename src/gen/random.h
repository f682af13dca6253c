// Portable, deterministic randomness for the generator: splitmix64 / xoshiro256** and log/exp built from
// IEEE-754 basic operations only (+ - * /, frexp, ldexp, floor are exact or correctly rounded everywhere), so
// the same seed yields the same numbers on any compiler, standard library and CPU. std::random distributions
// and libm transcendental functions are deliberately not used (their results are implementation-defined).
// Thread-safety: plain values.
#pragma once

#include <cmath>
#include <cstdint>

namespace analytics::gen {

// splitmix64 finalizer: a bijection on 64-bit values (distinct inputs give distinct outputs).
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Natural logarithm of x > 0 (finite), to ~1 ulp, deterministic.
inline double DetLog(double x) {
  int exponent = 0;
  double mantissa = std::frexp(x, &exponent);  // [0.5, 1)
  if (mantissa < 0.70710678118654752440) {
    mantissa *= 2.0;
    --exponent;
  }
  const double s = (mantissa - 1.0) / (mantissa + 1.0);  // |s| <= 0.1716
  const double s2 = s * s;
  double term = s;
  double sum = 0.0;
  for (int k = 0; k < 12; ++k) {
    sum += term / static_cast<double>(2 * k + 1);
    term *= s2;
  }
  return 2.0 * sum + static_cast<double>(exponent) * 0.69314718055994530942;
}

// e^x for |x| <= 700, deterministic.
inline double DetExp(double x) {
  if (x > 700.0) x = 700.0;
  if (x < -700.0) x = -700.0;
  const double k = std::floor(x * 1.44269504088896340736 + 0.5);
  const double r = x - k * 0.69314718055994530942;  // |r| <= ~0.35
  double term = 1.0;
  double sum = 1.0;
  for (int i = 1; i <= 18; ++i) {
    term *= r / static_cast<double>(i);
    sum += term;
  }
  return std::ldexp(sum, static_cast<int>(k));
}

// x^y for x > 0.
inline double DetPow(double x, double y) { return DetExp(y * DetLog(x)); }

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t sm = seed;
    for (uint64_t& word : s_) {
      sm += 0x9e3779b97f4a7c15ULL;
      word = Mix64(sm);
    }
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1].
  double UniformPositive() { return 1.0 - Uniform(); }
  // Uniform integer in [0, n), n <= 2^32 (Lemire's multiply-shift on 32 bits).
  uint32_t Below(uint64_t n) { return static_cast<uint32_t>(((Next() >> 32) * n) >> 32); }
  // Uniform integer in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo + 1))); }
  bool Chance(double p) { return Uniform() < p; }

  // Exponential with the given mean.
  double Exponential(double mean) { return -mean * DetLog(UniformPositive()); }
  // Approximately standard normal: Irwin-Hall of 4 uniforms, scaled to variance 1 (tails cut at +-3.46).
  double Normalish() {
    const double sum = Uniform() + Uniform() + Uniform() + Uniform();
    return (sum - 2.0) * 1.7320508075688772;
  }
  // Poisson (Knuth), for small means (< 20).
  int Poisson(double mean) {
    if (mean <= 0.0) return 0;
    const double limit = DetExp(-mean);
    double product = Uniform();
    int count = 0;
    while (product > limit && count < 100) {
      product *= Uniform();
      ++count;
    }
    return count;
  }
  // Pareto with minimum xm and shape alpha.
  double Pareto(double xm, double alpha) { return xm * DetPow(UniformPositive(), -1.0 / alpha); }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// A cheap splitmix64 stream for cosmetic, per-event choices (seeded from the event's sequence number).
class QuickRng {
 public:
  explicit QuickRng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return Mix64(state_);
  }
  uint32_t Below(uint64_t n) { return static_cast<uint32_t>(((Next() >> 32) * n) >> 32); }
  bool Chance(double p) { return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t state_;
};

}  // namespace analytics::gen
