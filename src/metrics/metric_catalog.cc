// Metric definitions: application rules.
#include "metrics/metric_catalog.h"

#include <algorithm>
#include <set>

#include "common/time_util.h"

#include "obs/logging.h"
#include "query/builtin_metrics.h"

namespace analytics::metrics {

using common::Result;
using common::Status;
using query::Aggregation;
using query::MetricDefinition;

Result<int> MetricCatalog::SeedBuiltins(int64_t now_ms) {
  int created = 0;
  // Operands first: a ratio may only be created once its operands exist, so retry until a fixpoint.
  std::vector<MetricDefinition> pending;
  for (const auto& body : query::BuiltinMetricDefinitionBodies()) {
    auto parsed = query::ParseMetricDefinition(body);
    if (!parsed.ok()) return Status::Internal("built-in metric is invalid: " + parsed.status().ToString());
    pending.push_back(std::move(parsed).value());
  }
  while (!pending.empty()) {
    std::vector<MetricDefinition> retry;
    for (auto& definition : pending) {
      auto existing = store_.GetMetricDefinition(definition.name);
      if (existing.ok()) continue;
      if (existing.status().code() != common::StatusCode::kNotFound) return existing.status();
      if (!CheckOperands(definition).ok()) {
        retry.push_back(std::move(definition));
        continue;
      }
      definition.builtin = true;
      definition.version = 1;
      definition.created_at_ms = definition.updated_at_ms = now_ms;
      definition.created_by = "system";
      Status status = store_.CreateMetricDefinition(definition);
      if (!status.ok() && status.code() != common::StatusCode::kAlreadyExists) return status;
      if (status.ok()) ++created;
    }
    Invalidate();
    if (retry.size() == pending.size()) {
      return Status::Internal("built-in ratio metric '" + retry.front().name + "' has a missing operand");
    }
    pending = std::move(retry);
  }
  return created;
}

const MetricSnapshot::Entry* MetricSnapshot::Find(std::string_view name) const {
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : &entries[it->second];
}

bool MetricSnapshot::Matches(const MetricDefinition& definition, const metadata::MetricDefinitionFilter& filter) {
  if (filter.owner_service && definition.owner_service != *filter.owner_service) return false;
  if (filter.is_realtime && definition.is_realtime != *filter.is_realtime) return false;
  if (filter.tag && std::find(definition.tags.begin(), definition.tags.end(), *filter.tag) == definition.tags.end()) {
    return false;
  }
  return true;
}

Result<std::shared_ptr<const MetricSnapshot>> MetricCatalog::Snapshot() {
  const int64_t now_ms = common::NowMillis();
  auto fresh = [&](const std::shared_ptr<const MetricSnapshot>& snapshot) {
    return snapshot && now_ms - snapshot->loaded_at_ms < options_.cache_ttl_ms;
  };
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    if (fresh(snapshot_)) return snapshot_;
  }
  std::lock_guard reload_lock(reload_mu_);
  {
    std::lock_guard lock(mu_);
    if (fresh(snapshot_)) return snapshot_;  // another thread reloaded while we waited
    generation = generation_;
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto definitions, store_.ListMetricDefinitions({}));
  auto snapshot = std::make_shared<MetricSnapshot>();
  snapshot->loaded_at_ms = now_ms;
  snapshot->entries.reserve(definitions.size());
  for (auto& definition : definitions) {
    std::string json = query::MetricDefinitionToJson(definition).dump();
    snapshot->by_name.emplace(definition.name, snapshot->entries.size());
    snapshot->entries.push_back({std::move(definition), std::move(json)});
  }
  std::lock_guard lock(mu_);
  // A write that happened while loading may not be in what we read: serve it, but do not keep it.
  if (generation == generation_) snapshot_ = snapshot;
  return std::shared_ptr<const MetricSnapshot>(std::move(snapshot));
}

void MetricCatalog::Invalidate() {
  std::lock_guard lock(mu_);
  ++generation_;
  snapshot_.reset();
}

Status MetricCatalog::CheckOperands(const MetricDefinition& definition) {
  if (definition.aggregation != Aggregation::kRatio) return Status::Ok();
  // Walk the operand graph: every operand must exist and none may lead back to this definition.
  std::vector<std::pair<std::string, std::string>> stack = {{definition.numerator, "numerator"},
                                                            {definition.denominator, "denominator"}};
  std::set<std::string> seen;
  while (!stack.empty()) {
    auto [name, field] = stack.back();
    stack.pop_back();
    if (name == definition.name) {
      return Status::InvalidArgument("ratio operands must not refer back to '" + definition.name + "'", field);
    }
    if (!seen.insert(name).second) continue;
    auto operand = store_.GetMetricDefinition(name);
    if (!operand.ok()) {
      if (operand.status().code() == common::StatusCode::kNotFound) {
        return Status::InvalidArgument("metric '" + name + "' does not exist", field);
      }
      return operand.status();
    }
    if (operand->aggregation == Aggregation::kRatio) {
      stack.emplace_back(operand->numerator, field);
      stack.emplace_back(operand->denominator, field);
    }
  }
  return Status::Ok();
}

void MetricCatalog::Audit(const std::string& actor, const std::string& action, const std::string& name,
                          int64_t now_ms) {
  metadata::AuditRecord record;
  record.at_ms = now_ms;
  record.actor = actor;
  record.action = action;
  record.resource = "metric_definition/" + name;
  record.details = nlohmann::json::object();
  Status status = store_.AppendAudit(record);
  if (!status.ok()) obs::LogWarn("audit record not written", {{"error", status.ToString()}});
}

Result<MetricDefinition> MetricCatalog::Create(MetricDefinition definition, const std::string& actor,
                                               int64_t now_ms) {
  ANALYTICS_RETURN_IF_ERROR(CheckOperands(definition));
  definition.builtin = false;
  definition.version = 1;
  definition.created_at_ms = definition.updated_at_ms = now_ms;
  definition.created_by = actor;
  Status status = store_.CreateMetricDefinition(definition);
  if (status.code() == common::StatusCode::kAlreadyExists) {
    return Status::AlreadyExists("metric definition '" + definition.name + "' already exists");
  }
  ANALYTICS_RETURN_IF_ERROR(status);
  Invalidate();
  Audit(actor, "create", definition.name, now_ms);
  return definition;
}

Result<MetricDefinition> MetricCatalog::Update(const std::string& name, MetricDefinition definition,
                                               std::optional<int64_t> expected_version, const std::string& actor,
                                               int64_t now_ms) {
  if (definition.name != name) {
    return Status::InvalidArgument("must equal the name in the path ('" + name + "'); renaming is not supported",
                                   "name");
  }
  ANALYTICS_ASSIGN_OR_RETURN(MetricDefinition stored, store_.GetMetricDefinition(name));
  if (expected_version && *expected_version != stored.version) {
    return Status::FailedPrecondition("metric definition '" + name + "' is at version " +
                                      std::to_string(stored.version) + ", not " + std::to_string(*expected_version));
  }
  ANALYTICS_RETURN_IF_ERROR(CheckOperands(definition));
  definition.builtin = stored.builtin;
  definition.created_at_ms = stored.created_at_ms;
  definition.created_by = stored.created_by;
  definition.version = stored.version + 1;
  definition.updated_at_ms = now_ms;
  Status status = store_.UpdateMetricDefinition(definition, stored.version);
  if (status.code() == common::StatusCode::kFailedPrecondition) {
    return Status::FailedPrecondition("metric definition '" + name + "' was changed concurrently; retry");
  }
  ANALYTICS_RETURN_IF_ERROR(status);
  Invalidate();
  Audit(actor, "update", name, now_ms);
  return definition;
}

Status MetricCatalog::Delete(const std::string& name, const std::string& actor, int64_t now_ms) {
  ANALYTICS_ASSIGN_OR_RETURN(MetricDefinition stored, store_.GetMetricDefinition(name));
  ANALYTICS_ASSIGN_OR_RETURN(auto all, store_.ListMetricDefinitions({}));
  for (const auto& other : all) {
    if (other.aggregation == Aggregation::kRatio && (other.numerator == name || other.denominator == name)) {
      return Status::FailedPrecondition("metric '" + name + "' is used by ratio metric '" + other.name + "'");
    }
  }
  ANALYTICS_RETURN_IF_ERROR(store_.DeleteMetricDefinition(name));
  Invalidate();
  Audit(actor, "delete", name, now_ms);
  return Status::Ok();
}

}  // namespace analytics::metrics
