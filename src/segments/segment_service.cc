#include "segments/segment_service.h"

#include <absl/time/civil_time.h>
#include <absl/time/time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>

#include "analysis/request.h"
#include "common/ids.h"
#include "common/time_util.h"
#include "obs/logging.h"
#include "segments/rule_eval.h"

namespace analytics::segments {

using common::Result;
using common::Status;
using nlohmann::json;
using query::Roaring;

namespace {

json Time(int64_t ms) { return common::FormatRfc3339Millis(ms); }

absl::CivilDay LocalDay(int64_t unix_ms, const query::TimeZone& zone) {
  return absl::ToCivilDay(absl::FromUnixMillis(unix_ms), zone.zone());
}

// Segments updated as events arrive: a live as_of and a rule that reads only the user's own events.
bool Incremental(const SegmentDefinition& definition) {
  return definition.dynamic() && definition.incremental && !definition.as_of_ms && definition.rule &&
         DependsOnlyOnOwnEvents(*definition.rule);
}

std::string Serialize(const Roaring& bitmap) {
  std::string bytes(bitmap.getSizeInBytes(/*portable=*/true), '\0');
  bitmap.write(bytes.data(), /*portable=*/true);
  return bytes;
}

Status NotFound(const std::string& id) { return Status::NotFound("segment '" + id + "' not found"); }

Status NotMaterialized(const std::string& id) {
  return Status::FailedPrecondition("segment '" + id + "' has not been refreshed yet; its first refresh is queued or running");
}

}  // namespace

SegmentService::SegmentService(metadata::MetadataStore& metadata, store::EventStore& store,
                               const events::Pseudonymizer& pseudonymizer, bus::EventBus& bus,
                               jobs::PipelineRunner& runner, SegmentServiceOptions options)
    : metadata_(metadata),
      store_(store),
      pseudonymizer_(pseudonymizer),
      bus_(bus),
      runner_(runner),
      options_(options),
      index_(metadata) {}

SegmentService::~SegmentService() { Stop(); }

void SegmentService::RegisterJobs() {
  runner_.Register(kRefreshKind,
                   [this](const metadata::PipelineRun& run, jobs::RunContext& /*context*/) { return Refresh(run); });
}

Status SegmentService::Start() {
  ANALYTICS_RETURN_IF_ERROR(index_.Load());
  ANALYTICS_ASSIGN_OR_RETURN(auto records, metadata_.ListSegments({}));
  ANALYTICS_ASSIGN_OR_RETURN(auto materializations, metadata_.ListMaterializations());
  std::map<std::string, std::shared_ptr<Entry>> entries;
  for (auto& record : records) {
    auto definition = ParseDefinition(record.definition);
    if (!definition.ok()) {
      return Status::Corruption("stored segment '" + record.id + "' does not read back: " +
                                definition.status().ToString());
    }
    auto entry = std::make_shared<Entry>();
    entry->definition = std::move(definition).value();
    entry->record = std::move(record);
    entries[entry->record.id] = entry;
  }
  for (auto& row : materializations) {
    const auto it = entries.find(row.segment_id);
    if (it == entries.end()) continue;
    Roaring members;
    try {
      members = Roaring::readSafe(row.bitmap.data(), row.bitmap.size());
    } catch (const std::exception& e) {
      return Status::Corruption("stored members of segment '" + row.segment_id + "' do not read back: " + e.what());
    }
    row.bitmap.clear();
    auto materialized = std::make_shared<Materialized>();
    materialized->row = std::move(row);
    materialized->members = std::make_shared<const Roaring>(std::move(members));
    materialized->generation = next_generation_++;
    it->second->current = std::move(materialized);
  }
  {
    std::lock_guard lock(mu_);
    entries_ = std::move(entries);
  }
  CountIncremental();
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = false;
  }
  loop_ = std::thread([this] { ScheduleLoop(); });
  obs::LogInfo("segments loaded", {{"segments", records.size()}, {"member_index", index_.size()}});
  return Status::Ok();
}

void SegmentService::Stop() {
  {
    std::lock_guard lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

std::shared_ptr<SegmentService::Entry> SegmentService::Find(const std::string& id) const {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second;
}

void SegmentService::CountIncremental() {
  int count = 0;
  std::lock_guard lock(mu_);
  for (const auto& [id, entry] : entries_) count += Incremental(entry->definition) ? 1 : 0;
  incremental_segments_.store(count, std::memory_order_relaxed);
}

json SegmentService::Document(const Entry& entry) const {
  json doc = entry.record.definition;
  doc["id"] = entry.record.id;
  doc["version"] = entry.record.version;
  doc["created_at"] = Time(entry.record.created_at_ms);
  doc["updated_at"] = Time(entry.record.updated_at_ms);
  doc["created_by"] = entry.record.created_by;
  doc["incremental_active"] = Incremental(entry.definition);
  if (entry.current) {
    const auto& row = entry.current->row;
    doc["materialization"] = {{"users_count", row.users_count},
                              {"as_of", Time(row.as_of_ms)},
                              {"refreshed_at", Time(row.refreshed_at_ms)},
                              {"refresh_duration_ms", row.duration_ms},
                              {"added", row.added},
                              {"removed", row.removed},
                              {"trigger", row.trigger},
                              {"run_id", row.run_id.empty() ? json() : json(row.run_id)},
                              {"definition_version", row.definition_version},
                              {"stale", row.definition_version != entry.record.version}};
  } else {
    doc["materialization"] = nullptr;
  }
  return doc;
}

Status SegmentService::CheckReferences(const std::string& id, const SegmentDefinition& definition) {
  if (!definition.rule) return Status::Ok();
  for (const auto& ref : ReferencedSegments(*definition.rule)) {
    if (ref == id) return Status::InvalidArgument("a segment cannot contain itself (in_segment '" + ref + "')", "rule");
    if (!Find(ref)) return Status::InvalidArgument("in_segment names segment '" + ref + "', which does not exist", "rule");
  }
  if (id.empty()) return Status::Ok();
  // A cycle through other segments: does any segment reachable from the new rule reference `id`?
  std::vector<std::string> stack = ReferencedSegments(*definition.rule);
  std::set<std::string> seen;
  while (!stack.empty()) {
    const std::string current = stack.back();
    stack.pop_back();
    if (!seen.insert(current).second) continue;
    const auto entry = Find(current);
    if (!entry || !entry->definition.rule) continue;
    for (const auto& next : ReferencedSegments(*entry->definition.rule)) {
      if (next == id) {
        return Status::InvalidArgument("in_segment would make a cycle: '" + current + "' contains this segment", "rule");
      }
      stack.push_back(next);
    }
  }
  return Status::Ok();
}

Result<Roaring> SegmentService::MembersFromUserIds(const std::vector<std::string>& user_ids) {
  std::vector<std::string> pseudonyms;
  pseudonyms.reserve(user_ids.size());
  for (const auto& id : user_ids) pseudonyms.push_back(pseudonymizer_.Pseudonymize(id));
  ANALYTICS_ASSIGN_OR_RETURN(auto indexes, index_.IndexesOf(pseudonyms));
  std::sort(indexes.begin(), indexes.end());
  Roaring members;
  members.addMany(indexes.size(), indexes.data());
  return members;
}

Result<Roaring> SegmentService::Translate(const Roaring& from, bool to_members, const Resolver& resolve) {
  std::vector<uint32_t>& forward = to_members ? store_to_member_ : member_to_store_;
  std::vector<uint32_t>& backward = to_members ? member_to_store_ : store_to_member_;
  std::vector<uint32_t> out;
  std::vector<uint32_t> unknown;
  out.reserve(from.cardinality());
  {
    std::lock_guard lock(ids_mu_);
    for (uint32_t id : from) {
      if (id < forward.size() && forward[id] != query::kNoUser) {
        out.push_back(forward[id]);
      } else {
        unknown.push_back(id);
      }
    }
  }
  if (!unknown.empty()) {
    ANALYTICS_ASSIGN_OR_RETURN(std::vector<uint32_t> resolved, resolve(unknown));
    std::lock_guard lock(ids_mu_);
    for (size_t i = 0; i < unknown.size(); ++i) {
      const uint32_t id = unknown[i], other = resolved[i];
      if (other == query::kNoUser) continue;  // erased, or unknown on the other side
      if (forward.size() <= id) forward.resize(size_t{id} + 1, query::kNoUser);
      forward[id] = other;
      if (backward.size() <= other) backward.resize(size_t{other} + 1, query::kNoUser);
      backward[other] = id;
      out.push_back(other);
    }
  }
  std::sort(out.begin(), out.end());
  Roaring to;
  to.addMany(out.size(), out.data());
  return to;
}

Result<Roaring> SegmentService::ToMemberIndexes(const Roaring& store_ids) {
  return Translate(store_ids, /*to_members=*/true, [this](const std::vector<uint32_t>& ids) -> Result<std::vector<uint32_t>> {
    ANALYTICS_ASSIGN_OR_RETURN(auto names, store_.UserNames(ids));
    std::vector<std::string> known;
    for (auto& name : names) {
      if (!name.empty()) known.push_back(name);
    }
    ANALYTICS_ASSIGN_OR_RETURN(auto indexes, index_.IndexesOf(known));
    std::vector<uint32_t> out(ids.size(), query::kNoUser);
    for (size_t i = 0, k = 0; i < names.size(); ++i) {
      if (!names[i].empty()) out[i] = indexes[k++];
    }
    return out;
  });
}

Result<Roaring> SegmentService::ToStoreIds(const Roaring& member_indexes) {
  return Translate(member_indexes, /*to_members=*/false,
                   [this](const std::vector<uint32_t>& indexes) -> Result<std::vector<uint32_t>> {
                     std::vector<std::string> names;
                     names.reserve(indexes.size());
                     for (uint32_t index : indexes) {
                       ANALYTICS_ASSIGN_OR_RETURN(std::string name, index_.NameOf(index));
                       names.push_back(std::move(name));  // "" (erased) → kNoUser from the store
                     }
                     return store_.UserIds(names);
                   });
}

Result<json> SegmentService::Commit(const std::string& id, Roaring members, int64_t as_of_ms,
                                    const std::string& trigger, const std::string& run_id, int64_t started_ms,
                                    int64_t definition_version) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  std::shared_ptr<const Materialized> previous;
  std::string name;
  {
    std::lock_guard lock(mu_);
    previous = entry->current;
    name = entry->record.name;
  }
  static const Roaring kEmpty;
  const Roaring& old = previous ? *previous->members : kEmpty;
  members.runOptimize();
  members.shrinkToFit();
  auto materialized = std::make_shared<Materialized>();
  metadata::SegmentMaterialization& row = materialized->row;
  row.segment_id = id;
  row.definition_version = definition_version;
  row.as_of_ms = as_of_ms;
  row.users_count = static_cast<int64_t>(members.cardinality());
  row.added = static_cast<int64_t>(members.andnot_cardinality(old));
  row.removed = static_cast<int64_t>(old.andnot_cardinality(members));
  row.run_id = run_id;
  row.trigger = trigger;
  row.bitmap = Serialize(members);
  row.refreshed_at_ms = common::NowMillis();
  row.duration_ms = std::max<int64_t>(0, row.refreshed_at_ms - started_ms);
  ANALYTICS_RETURN_IF_ERROR(metadata_.PutMaterialization(row));
  row.bitmap.clear();
  row.bitmap.shrink_to_fit();
  materialized->members = std::make_shared<const Roaring>(std::move(members));
  {
    std::lock_guard lock(mu_);
    materialized->generation = next_generation_++;
    entry->current = materialized;
  }
  json data = {{"segment_id", id},
               {"name", name},
               {"users_count", row.users_count},
               {"added", row.added},
               {"removed", row.removed},
               {"as_of", Time(row.as_of_ms)},
               {"refreshed_at", Time(row.refreshed_at_ms)},
               {"refresh_duration_ms", row.duration_ms},
               {"run_id", run_id.empty() ? json() : json(run_id)},
               {"trigger", trigger},
               {"definition_version", definition_version}};
  Status published = bus_.Publish(id, bus::MakeCloudEvent(kUpdatedType, id, data));
  if (!published.ok()) obs::LogWarn("segment.updated not published", {{"segment_id", id}, {"error", published.ToString()}});
  return json{{"users_count", row.users_count},   {"added", row.added},
              {"removed", row.removed},           {"as_of", Time(row.as_of_ms)},
              {"refreshed_at", Time(row.refreshed_at_ms)}, {"refresh_duration_ms", row.duration_ms}};
}

Result<json> SegmentService::Refresh(const metadata::PipelineRun& run) {
  const auto entry = Find(run.target);
  if (!entry) return Status::NotFound("segment '" + run.target + "' no longer exists");
  std::lock_guard write(*entry->write_mu);
  SegmentDefinition definition;
  int64_t version;
  {
    std::lock_guard lock(mu_);
    definition = entry->definition;
    version = entry->record.version;
  }
  const int64_t started_ms = common::NowMillis();
  int64_t as_of_ms = definition.as_of_ms.value_or(started_ms);
  if (run.parameters.is_object() && run.parameters.contains("as_of")) {
    ANALYTICS_ASSIGN_OR_RETURN(as_of_ms, common::ParseRfc3339Millis(run.parameters["as_of"].get<std::string>()));
  }
  const std::string trigger =
      run.parameters.is_object() ? run.parameters.value("trigger", std::string("manual")) : std::string("manual");
  Roaring members;
  json evaluation = json::object();
  if (definition.dynamic()) {
    EvalContext context;
    context.as_of_ms = as_of_ms;
    context.zone = definition.zone;
    context.threads = options_.query_threads;
    context.segment_members = [this](const std::string& other) -> Result<std::shared_ptr<const Roaring>> {
      ANALYTICS_ASSIGN_OR_RETURN(auto scope, ScopeOf(other));
      return scope.users;
    };
    EvalStats stats;
    ANALYTICS_ASSIGN_OR_RETURN(Roaring store_ids, EvaluateRule(*definition.rule, store_, context, &stats));
    auto ms = [](double value) { return std::round(value * 1000) / 1000; };
    evaluation = {{"timelines", stats.timelines},
                  {"rows", stats.rows},
                  {"users_scanned", stats.users_scanned},
                  {"counted_by_runs", stats.counted_by_runs},
                  {"read_ms", ms(stats.read_ms)},
                  {"walk_ms", ms(stats.walk_ms)},
                  {"combine_ms", ms(stats.combine_ms)}};
    ANALYTICS_ASSIGN_OR_RETURN(members, ToMemberIndexes(store_ids));
  } else if (!definition.source.is_null()) {
    if (!source_evaluator_) return Status::Internal("no evaluator for segment sources");
    ANALYTICS_ASSIGN_OR_RETURN(Roaring store_ids, source_evaluator_(definition.source));
    ANALYTICS_ASSIGN_OR_RETURN(members, ToMemberIndexes(store_ids));
  } else {
    // A static list: a refresh re-stamps it (and reports its size).
    std::lock_guard lock(mu_);
    if (entry->current) members = *entry->current->members;
  }
  ANALYTICS_ASSIGN_OR_RETURN(json result, Commit(run.target, std::move(members), as_of_ms, trigger, run.id, started_ms,
                                                 version));
  result["segment_id"] = run.target;
  result["evaluation"] = std::move(evaluation);
  return result;
}

Result<json> SegmentService::Create(const json& body, const std::string& actor) {
  ANALYTICS_ASSIGN_OR_RETURN(SegmentDefinition definition, ParseDefinition(body));
  ANALYTICS_RETURN_IF_ERROR(CheckReferences("", definition));
  const int64_t started_ms = common::NowMillis();
  std::optional<Roaring> members;
  if (!definition.dynamic()) {
    if (!definition.source.is_null()) {
      if (!source_evaluator_) return Status::Internal("no evaluator for segment sources");
      ANALYTICS_ASSIGN_OR_RETURN(Roaring store_ids, source_evaluator_(definition.source));
      ANALYTICS_ASSIGN_OR_RETURN(members, ToMemberIndexes(store_ids));
    } else {
      ANALYTICS_ASSIGN_OR_RETURN(members, MembersFromUserIds(definition.user_ids));
    }
  }
  auto entry = std::make_shared<Entry>();
  entry->record.id = common::NewUuid();
  entry->record.name = definition.name;
  entry->record.type = definition.type;
  entry->record.definition = ToDocument(definition);
  entry->record.version = 1;
  entry->record.created_at_ms = entry->record.updated_at_ms = common::NowMillis();
  entry->record.created_by = actor;
  definition.user_ids.clear();
  entry->definition = std::move(definition);
  ANALYTICS_RETURN_IF_ERROR(metadata_.CreateSegment(entry->record));
  const std::string id = entry->record.id;
  {
    std::lock_guard lock(mu_);
    entries_[id] = entry;
  }
  CountIncremental();
  json doc = json::object();  // update() refuses null: a static segment adds nothing
  Status started = Status::Ok();
  if (members) {
    std::lock_guard write(*entry->write_mu);
    started = Commit(id, std::move(*members), started_ms, "create", "", started_ms, 1).status();
  } else {
    auto run = runner_.Submit(kRefreshKind, id, {{"trigger", "create"}}, actor);
    if (run.ok()) doc["refresh_run_id"] = run->id;
    started = run.status();
  }
  if (!started.ok()) {
    // Nothing half-made stays behind: the definition goes with its failed first materialization.
    (void)metadata_.DeleteSegment(id);
    {
      std::lock_guard lock(mu_);
      entries_.erase(id);
    }
    CountIncremental();
    return started;
  }
  (void)metadata_.AppendAudit({0, 0, actor, "segment.create", "segments/" + id, {{"name", entry->record.name}}});
  std::lock_guard lock(mu_);
  json full = Document(*entry);
  full.update(doc);
  return full;
}

Result<json> SegmentService::Get(const std::string& id) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  std::lock_guard lock(mu_);
  return Document(*entry);
}

Result<json> SegmentService::List(const std::optional<std::string>& type) {
  if (type && *type != "static" && *type != "dynamic") {
    return Status::InvalidArgument("must be static or dynamic", "type");
  }
  json items = json::array();
  std::vector<std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, entry] : entries_) {
      if (!type || entry->record.type == *type) entries.push_back(entry);
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a->record.name < b->record.name; });
    for (const auto& entry : entries) items.push_back(Document(*entry));
  }
  return json{{"items", std::move(items)}, {"total", entries.size()}};
}

Result<json> SegmentService::Update(const std::string& id, const json& body, std::optional<int64_t> expected_version,
                                    const std::string& actor) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  ANALYTICS_ASSIGN_OR_RETURN(SegmentDefinition definition, ParseDefinition(body));
  metadata::SegmentRecord record;
  {
    std::lock_guard lock(mu_);
    record = entry->record;
  }
  if (definition.type != record.type) {
    return Status::InvalidArgument("the type of a segment cannot change (create a new segment)", "type");
  }
  ANALYTICS_RETURN_IF_ERROR(CheckReferences(id, definition));
  const int64_t started_ms = common::NowMillis();
  std::optional<Roaring> members;
  if (!definition.dynamic()) {
    if (!definition.source.is_null()) {
      if (!source_evaluator_) return Status::Internal("no evaluator for segment sources");
      ANALYTICS_ASSIGN_OR_RETURN(Roaring store_ids, source_evaluator_(definition.source));
      ANALYTICS_ASSIGN_OR_RETURN(members, ToMemberIndexes(store_ids));
    } else if (definition.user_ids_given) {
      ANALYTICS_ASSIGN_OR_RETURN(members, MembersFromUserIds(definition.user_ids));
    }
  }
  const int64_t expected = expected_version.value_or(record.version);
  record.name = definition.name;
  record.definition = ToDocument(definition);
  record.version = expected + 1;
  record.updated_at_ms = common::NowMillis();
  if (Status updated = metadata_.UpdateSegment(record, expected); !updated.ok()) {
    // A version conflict names the field "version" (412), unlike a source's missing data (409).
    if (updated.code() == common::StatusCode::kFailedPrecondition) {
      return Status::FailedPrecondition(updated.message(), "version");
    }
    return updated;
  }
  definition.user_ids.clear();
  {
    std::lock_guard lock(mu_);
    entry->record = record;
    entry->definition = std::move(definition);
  }
  CountIncremental();
  (void)metadata_.AppendAudit({0, 0, actor, "segment.update", "segments/" + id, {{"version", record.version}}});
  json extra = json::object();
  if (record.type == "dynamic") {
    ANALYTICS_ASSIGN_OR_RETURN(auto run, runner_.Submit(kRefreshKind, id, {{"trigger", "definition_changed"}}, actor));
    extra["refresh_run_id"] = run.id;
  } else {
    std::lock_guard write(*entry->write_mu);
    if (!members) {
      std::lock_guard lock(mu_);
      if (entry->current) members = *entry->current->members;
    }
    if (members) {
      ANALYTICS_ASSIGN_OR_RETURN(json committed, Commit(id, std::move(*members), started_ms, "definition_changed", "",
                                                        started_ms, record.version));
      (void)committed;
    }
  }
  std::lock_guard lock(mu_);
  json doc = Document(*entry);
  doc.update(extra);
  return doc;
}

Status SegmentService::Delete(const std::string& id, const std::string& actor) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  {
    std::lock_guard lock(mu_);
    for (const auto& [other_id, other] : entries_) {
      if (other_id == id || !other->definition.rule) continue;
      const auto refs = ReferencedSegments(*other->definition.rule);
      if (std::find(refs.begin(), refs.end(), id) != refs.end()) {
        return Status::FailedPrecondition("segment '" + other->record.name + "' (" + other_id +
                                          ") contains this segment (in_segment); change or delete it first");
      }
    }
  }
  std::lock_guard write(*entry->write_mu);
  Status deleted = metadata_.DeleteSegment(id);
  if (!deleted.ok() && deleted.code() != common::StatusCode::kNotFound) return deleted;
  {
    std::lock_guard lock(mu_);
    entries_.erase(id);
  }
  CountIncremental();
  (void)metadata_.AppendAudit({0, 0, actor, "segment.delete", "segments/" + id, {{"name", entry->record.name}}});
  return Status::Ok();
}

Result<metadata::PipelineRun> SegmentService::RequestRefresh(const std::string& id, const json& body,
                                                             const std::string& actor) {
  if (!Find(id)) return NotFound(id);
  json parameters = {{"trigger", "manual"}};
  if (!body.is_null()) {
    if (!body.is_object()) return Status::InvalidArgument("the body must be a JSON object", "body");
    ANALYTICS_RETURN_IF_ERROR(analysis::CheckFields(body, {"as_of"}, ""));
    ANALYTICS_ASSIGN_OR_RETURN(auto as_of, analysis::OptionalString(body, "as_of", ""));
    if (as_of) {
      auto ms = common::ParseRfc3339Millis(*as_of);
      if (!ms.ok()) return Status::InvalidArgument("must be an RFC 3339 date-time: " + ms.status().message(), "as_of");
      parameters["as_of"] = common::FormatRfc3339Millis(*ms);
    }
  }
  return runner_.Submit(kRefreshKind, id, std::move(parameters), actor);
}

Result<json> SegmentService::Upload(const std::string& id, const std::vector<std::string>& user_ids,
                                    const std::string& mode, const std::string& actor) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  if (entry->record.type != "static") {
    return Status::InvalidArgument("members are uploaded to static segments only; this one is dynamic", "segment_id");
  }
  if (mode != "replace" && mode != "add" && mode != "remove") {
    return Status::InvalidArgument("must be replace, add or remove", "mode");
  }
  const int64_t started_ms = common::NowMillis();
  ANALYTICS_ASSIGN_OR_RETURN(Roaring uploaded, MembersFromUserIds(user_ids));
  std::lock_guard write(*entry->write_mu);
  Roaring members;
  int64_t version;
  {
    std::lock_guard lock(mu_);
    if (entry->current) members = *entry->current->members;
    version = entry->record.version;
  }
  if (mode == "replace") {
    members = std::move(uploaded);
  } else if (mode == "add") {
    members |= uploaded;
  } else {
    members -= uploaded;
  }
  ANALYTICS_ASSIGN_OR_RETURN(json result, Commit(id, std::move(members), started_ms, "upload", "", started_ms, version));
  (void)metadata_.AppendAudit({0, 0, actor, "segment.upload", "segments/" + id,
                               {{"mode", mode}, {"user_ids", user_ids.size()}}});
  result["segment_id"] = id;
  result["mode"] = mode;
  result["user_ids"] = user_ids.size();
  return result;
}

Result<json> SegmentService::UsersCount(const std::string& id) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  std::lock_guard lock(mu_);
  if (!entry->current) return NotMaterialized(id);
  const auto& row = entry->current->row;
  return json{{"segment_id", id},
              {"users_count", row.users_count},
              {"as_of", Time(row.as_of_ms)},
              {"refreshed_at", Time(row.refreshed_at_ms)},
              {"refresh_duration_ms", row.duration_ms},
              {"stale", row.definition_version != entry->record.version}};
}

Result<json> SegmentService::Contains(const std::string& id, const std::string& user_id) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  std::shared_ptr<const Materialized> current;
  {
    std::lock_guard lock(mu_);
    current = entry->current;
  }
  if (!current) return NotMaterialized(id);
  const auto index = index_.Find(pseudonymizer_.Pseudonymize(user_id));
  const bool contains = index && current->members->contains(*index);
  return json{{"segment_id", id},
              {"user_id", user_id},
              {"contains", contains},
              {"as_of", Time(current->row.as_of_ms)},
              {"refreshed_at", Time(current->row.refreshed_at_ms)}};
}

Result<json> SegmentService::Members(const std::string& id, const std::string& cursor, int64_t limit,
                                     const std::string& actor) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  if (limit < 1 || limit > options_.max_members_page) {
    return Status::InvalidArgument("must be 1.." + std::to_string(options_.max_members_page), "limit");
  }
  int64_t after = -1;
  if (!cursor.empty()) {
    auto [ptr, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), after);
    if (ec != std::errc() || ptr != cursor.data() + cursor.size() || after < 0 || after > UINT32_MAX) {
      return Status::InvalidArgument("not a cursor of this endpoint", "cursor");
    }
  }
  std::shared_ptr<const Materialized> current;
  {
    std::lock_guard lock(mu_);
    current = entry->current;
  }
  if (!current) return NotMaterialized(id);
  json users = json::array();
  int64_t last = after;
  bool more = false;
  uint64_t unrevealable = 0;
  if (after < UINT32_MAX) {
    auto it = current->members->begin();
    it.equalorlarger(static_cast<uint32_t>(after + 1));
    for (; it != current->members->end(); ++it) {
      if (static_cast<int64_t>(users.size()) >= limit) {
        more = true;
        break;
      }
      last = *it;
      ANALYTICS_ASSIGN_OR_RETURN(std::string pseudonym, index_.NameOf(*it));
      if (pseudonym.empty()) continue;  // erased meanwhile
      auto revealed = pseudonymizer_.Reveal(pseudonym);
      if (!revealed.ok()) {
        ++unrevealable;
        continue;
      }
      users.push_back(std::move(revealed).value());
    }
  }
  ANALYTICS_RETURN_IF_ERROR(metadata_.AppendAudit({0, 0, actor, "segment.members.read", "segments/" + id,
                                                   {{"users", users.size()}, {"cursor", cursor}}}));
  json out = {{"segment_id", id},
              {"users", std::move(users)},
              {"next_cursor", more ? json(std::to_string(last)) : json()},
              {"users_count", current->row.users_count},
              {"as_of", Time(current->row.as_of_ms)},
              {"refreshed_at", Time(current->row.refreshed_at_ms)}};
  if (unrevealable > 0) out["unrevealable"] = unrevealable;
  return out;
}

Result<query::UserScope> SegmentService::ScopeOf(const std::string& id) {
  const auto entry = Find(id);
  if (!entry) return NotFound(id);
  std::shared_ptr<const Materialized> current;
  {
    std::lock_guard lock(mu_);
    current = entry->current;
    if (!current) return NotMaterialized(id);
    if (entry->scope && entry->scope_generation == current->generation) return *entry->scope;
  }
  ANALYTICS_ASSIGN_OR_RETURN(Roaring ids, ToStoreIds(*current->members));
  ids.runOptimize();
  query::UserScope scope{"segment:" + id + "#" + std::to_string(current->generation),
                         std::make_shared<const Roaring>(std::move(ids))};
  std::lock_guard lock(mu_);
  if (entry->current == current) {
    entry->scope = scope;
    entry->scope_generation = current->generation;
  }
  return scope;
}

void SegmentService::OnEventsStored(std::vector<std::string> users) {
  if (!WantsStoredUsers() || users.empty()) return;
  std::lock_guard lock(pending_mu_);
  if (pending_overflow_) return;
  for (auto& user : users) pending_users_.insert(std::move(user));
  if (pending_users_.size() > options_.max_pending_users) {
    pending_overflow_ = true;
    pending_users_.clear();
  }
}

void SegmentService::OnUserErased(const std::string& user) {
  {
    std::lock_guard lock(pending_mu_);
    pending_users_.erase(user);
  }
  auto forgotten = index_.Forget(user);
  if (!forgotten.ok()) {
    obs::LogWarn("segment member index: erasure failed", {{"error", forgotten.status().ToString()}});
    return;
  }
  if (!*forgotten) return;
  const uint32_t index = **forgotten;
  {
    std::lock_guard lock(ids_mu_);
    if (index < member_to_store_.size()) {
      const uint32_t store_id = member_to_store_[index];
      if (store_id != query::kNoUser && store_id < store_to_member_.size()) store_to_member_[store_id] = query::kNoUser;
      member_to_store_[index] = query::kNoUser;
    }
  }
  std::vector<std::shared_ptr<Entry>> holding;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, entry] : entries_) {
      if (entry->current && entry->current->members->contains(index)) holding.push_back(entry);
    }
  }
  for (const auto& entry : holding) {
    std::lock_guard write(*entry->write_mu);
    Roaring members;
    int64_t as_of_ms, version;
    {
      std::lock_guard lock(mu_);
      if (!entry->current) continue;
      members = *entry->current->members;
      as_of_ms = entry->current->row.as_of_ms;
      version = entry->current->row.definition_version;
    }
    members.remove(index);
    auto committed = Commit(entry->record.id, std::move(members), as_of_ms, "erasure", "", common::NowMillis(), version);
    if (!committed.ok()) {
      obs::LogWarn("segment: erased user not removed", {{"segment_id", entry->record.id},
                                                         {"error", committed.status().ToString()}});
    }
  }
}

void SegmentService::ScheduleLoop() {
  const int64_t tick_ms = std::max<int64_t>(10, std::min(options_.incremental_interval_ms, options_.schedule_check_ms));
  std::unique_lock lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, std::chrono::milliseconds(tick_ms));
    if (stopping_) return;
    lock.unlock();
    // Schedules: refresh_every elapsed since the last refresh, or a new local day for incremental segments.
    const int64_t now = common::NowMillis();
    std::vector<std::pair<std::string, std::string>> due;  // id, trigger
    {
      std::lock_guard entries_lock(mu_);
      for (const auto& [id, entry] : entries_) {
        const auto& definition = entry->definition;
        // Before the first materialization the create's refresh is queued: the schedule counts from creation.
        const int64_t last = entry->current ? entry->current->row.refreshed_at_ms : entry->record.created_at_ms;
        if (definition.refresh_every_s && now - std::max(last, entry->last_scheduled_ms) >=
                                              *definition.refresh_every_s * 1000) {
          due.emplace_back(id, "schedule");
          entry->last_scheduled_ms = now;
        } else if (Incremental(definition) && entry->current &&
                   LocalDay(now, definition.zone) != LocalDay(entry->current->row.refreshed_at_ms, definition.zone) &&
                   now - entry->last_scheduled_ms >= 60000) {
          due.emplace_back(id, "new_day");
          entry->last_scheduled_ms = now;
        }
      }
    }
    for (const auto& [id, trigger] : due) {
      auto run = runner_.Submit(kRefreshKind, id, {{"trigger", trigger}}, "system");
      if (!run.ok()) obs::LogWarn("scheduled segment refresh not queued", {{"segment_id", id}, {"error", run.status().ToString()}});
    }
    IncrementalPass();
    lock.lock();
  }
}

void SegmentService::IncrementalPass() {
  std::unordered_set<std::string> pending;
  bool overflow;
  {
    std::lock_guard lock(pending_mu_);
    pending.swap(pending_users_);
    overflow = pending_overflow_;
    pending_overflow_ = false;
    if (pending.empty() && !overflow) return;
    incremental_busy_ = true;
  }
  std::vector<std::shared_ptr<Entry>> targets;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, entry] : entries_) {
      if (Incremental(entry->definition)) targets.push_back(entry);
    }
  }
  std::optional<query::UserScope> scope;
  std::vector<uint32_t> touched_members;
  for (const auto& entry : targets) {
    const std::string id = entry->record.id;
    std::unique_lock write(*entry->write_mu);
    SegmentDefinition definition;
    std::shared_ptr<const Materialized> current;
    int64_t version;
    {
      std::lock_guard lock(mu_);
      definition = entry->definition;
      current = entry->current;
      version = entry->record.version;
    }
    const int64_t now = common::NowMillis();
    // Before the first materialization, and after a definition change, a full refresh is queued already.
    if (!current || current->row.definition_version != version) continue;
    if (!overflow && LocalDay(now, definition.zone) != LocalDay(current->row.as_of_ms, definition.zone) &&
        LocalDay(now, definition.zone) == LocalDay(current->row.refreshed_at_ms, definition.zone)) {
      continue;  // refreshed today with an earlier as_of (a backdated count): kept as asked until the next day
    }
    if (overflow || LocalDay(now, definition.zone) != LocalDay(current->row.as_of_ms, definition.zone)) {
      write.unlock();
      bool submit = false;
      {
        std::lock_guard lock(mu_);
        if (now - entry->last_scheduled_ms >= 60000 || overflow) {
          entry->last_scheduled_ms = now;
          submit = true;
        }
      }
      if (submit) {
        auto run = runner_.Submit(kRefreshKind, id, {{"trigger", overflow ? "incremental_overflow" : "new_day"}}, "system");
        if (!run.ok()) obs::LogWarn("segment refresh not queued", {{"segment_id", id}, {"error", run.status().ToString()}});
      }
      continue;
    }
    if (!scope) {
      std::vector<std::string> users(pending.begin(), pending.end());
      auto ids = store_.UserIds(users);
      if (!ids.ok()) {
        obs::LogWarn("incremental segment update failed", {{"error", ids.status().ToString()}});
        break;
      }
      std::sort(ids->begin(), ids->end());
      Roaring bitmap;
      bitmap.addMany(ids->size(), ids->data());
      bitmap.remove(query::kNoUser);
      scope = query::UserScope{"incremental:" + common::NewUuid(), std::make_shared<const Roaring>(std::move(bitmap))};
      scope->cache = false;
      for (const auto& user : users) {
        if (auto index = index_.Find(user)) touched_members.push_back(*index);
      }
      std::sort(touched_members.begin(), touched_members.end());
    }
    EvalContext context;
    context.as_of_ms = now;
    context.zone = definition.zone;
    context.threads = options_.query_threads;
    context.scope = scope;
    context.segment_members = [](const std::string& other) -> Result<std::shared_ptr<const Roaring>> {
      return Status::FailedPrecondition("incremental rules do not read other segments ('" + other + "')");
    };
    auto store_ids = EvaluateRule(*definition.rule, store_, context);
    Result<Roaring> now_members = store_ids.ok() ? ToMemberIndexes(*store_ids) : Result<Roaring>(store_ids.status());
    if (!now_members.ok()) {
      obs::LogWarn("incremental segment update failed", {{"segment_id", id}, {"error", now_members.status().ToString()}});
      continue;
    }
    Roaring touched;
    touched.addMany(touched_members.size(), touched_members.data());
    Roaring members = *current->members - touched;
    members |= *now_members;
    if (members == *current->members) {
      // Nothing changed: the members are exact as of now (nobody else's rows can move within the day).
      auto advanced = std::make_shared<Materialized>(*current);
      advanced->row.as_of_ms = now;
      advanced->row.refreshed_at_ms = now;
      std::lock_guard lock(mu_);
      if (entry->current == current) entry->current = advanced;  // same members: the cached scope stays valid
      continue;
    }
    auto committed = Commit(id, std::move(members), now, "incremental", "", now, version);
    if (!committed.ok()) {
      obs::LogWarn("incremental segment update failed", {{"segment_id", id}, {"error", committed.status().ToString()}});
    }
  }
  std::lock_guard lock(pending_mu_);
  incremental_busy_ = false;
  pending_cv_.notify_all();
}

void SegmentService::FlushIncrementalForTest() {
  while (true) {
    {
      std::unique_lock lock(pending_mu_);
      if (pending_users_.empty() && !pending_overflow_ && !incremental_busy_) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace analytics::segments
