// Prometheus registry and HTTP metrics.
#include "obs/metrics.h"

#include <prometheus/text_serializer.h>

namespace analytics::obs {

MetricsRegistry::MetricsRegistry() : registry_(std::make_shared<prometheus::Registry>()) {}

std::string MetricsRegistry::RenderText() const {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(hooks_mu_);
    hooks = hooks_;
  }
  for (const auto& hook : hooks) hook();
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void MetricsRegistry::AddCollectHook(std::function<void()> hook) {
  std::lock_guard lock(hooks_mu_);
  hooks_.push_back(std::move(hook));
}

void ExportStatsAsGauges(MetricsRegistry& metrics, const std::string& prefix, const std::string& help,
                         std::function<nlohmann::json()> stats) {
  struct State {
    std::mutex mu;
    std::map<std::string, prometheus::Gauge*> gauges;  // guarded by mu
  };
  auto state = std::make_shared<State>();
  prometheus::Registry& registry = metrics.registry();
  metrics.AddCollectHook([state, &registry, prefix, help, stats = std::move(stats)] {
    const nlohmann::json values = stats();
    if (!values.is_object()) return;
    std::lock_guard lock(state->mu);
    for (const auto& [name, value] : values.items()) {
      if (!value.is_number()) continue;
      auto it = state->gauges.find(name);
      if (it == state->gauges.end()) {
        auto& family = prometheus::BuildGauge().Name(prefix + "_" + name).Help(help + ": " + name).Register(registry);
        it = state->gauges.emplace(name, &family.Add({})).first;
      }
      it->second->Set(value.get<double>());
    }
  });
}

HttpMetrics::HttpMetrics(MetricsRegistry& metrics)
    : requests_(prometheus::BuildCounter()
                    .Name("analytics_http_requests_total")
                    .Help("HTTP requests answered, by method, route and status")
                    .Register(metrics.registry())),
      latency_(prometheus::BuildHistogram()
                   .Name("analytics_http_request_duration_seconds")
                   .Help("HTTP request latency from the first byte read to the response written")
                   .Register(metrics.registry())),
      in_flight_(prometheus::BuildGauge()
                     .Name("analytics_http_requests_in_flight")
                     .Help("HTTP requests being handled now")
                     .Register(metrics.registry())
                     .Add({})) {}

void HttpMetrics::Observe(const std::string& method, const std::string& route, int status, double seconds) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                   0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    std::lock_guard lock(mu_);
    auto key = std::make_tuple(method, route, status);
    auto it = children_.find(key);
    if (it == children_.end()) {
      const std::string status_text = std::to_string(status);
      auto* new_counter = &requests_.Add({{"method", method}, {"route", route}, {"status", status_text}});
      auto* new_histogram =
          &latency_.Add({{"method", method}, {"route", route}, {"status", status_text}}, kBuckets);
      it = children_.emplace(key, std::make_pair(new_counter, new_histogram)).first;
    }
    counter = it->second.first;
    histogram = it->second.second;
  }
  counter->Increment();
  histogram->Observe(seconds);
}

}  // namespace analytics::obs
