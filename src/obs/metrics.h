// Prometheus metrics of the process: one registry, rendered in the text exposition format for GET /metrics.
// Components get the registry through their constructors and register their own families.
// Thread-safety: prometheus-cpp metrics are thread-safe; HttpMetrics caches label children under a mutex.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace analytics::obs {

class MetricsRegistry {
 public:
  MetricsRegistry();
  prometheus::Registry& registry() { return *registry_; }
  // The Prometheus text format (version 0.0.4) of every registered metric. Runs the collect hooks first.
  std::string RenderText() const;
  // `hook` runs before every rendering, to refresh gauges that mirror another component's numbers (it must
  // be cheap and thread-safe; it must outlive the registry's use).
  void AddCollectHook(std::function<void()> hook);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex hooks_mu_;
  std::vector<std::function<void()>> hooks_;  // guarded by hooks_mu_
};

// Mirrors the numeric members of a component's stats JSON (e.g. EventStore::Stats) as gauges named
// `<prefix>_<member>`, refreshed at every scrape. Members that are not numbers are skipped.
void ExportStatsAsGauges(MetricsRegistry& metrics, const std::string& prefix, const std::string& help,
                         std::function<nlohmann::json()> stats);

// Request counters and latency histograms per route, method and status.
class HttpMetrics {
 public:
  explicit HttpMetrics(MetricsRegistry& metrics);
  void Observe(const std::string& method, const std::string& route, int status, double seconds);
  void SetInFlight(double value) { in_flight_.Set(value); }

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& in_flight_;
  std::mutex mu_;
  // Children by (method, route, status); guarded by mu_. Family::Add is itself thread-safe but slower.
  std::map<std::tuple<std::string, std::string, int>, std::pair<prometheus::Counter*, prometheus::Histogram*>>
      children_;
};

}  // namespace analytics::obs
