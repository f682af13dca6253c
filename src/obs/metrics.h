// Prometheus metrics of the process: one registry, rendered in the text exposition format for GET /metrics.
// Components get the registry through their constructors and register their own families.
// Thread-safety: prometheus-cpp metrics are thread-safe; HttpMetrics caches label children under a mutex.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

namespace analytics::obs {

class MetricsRegistry {
 public:
  MetricsRegistry();
  prometheus::Registry& registry() { return *registry_; }
  // The Prometheus text format (version 0.0.4) of every registered metric.
  std::string RenderText() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
};

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
