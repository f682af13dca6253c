// Embedded query execution: column conversion, dense users, per-part segment reading, caches.
#include "store/embedded/query_exec.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "query/aggregator.h"
#include "store/embedded/column_codec.h"
#include "store/embedded/segment_format.h"
#include "store/embedded/segment_reader.h"

namespace analytics::store::embedded {

namespace {

using common::Result;
using common::Status;
using query::AggregateQuery;
using query::EventBatch;
using query::kNoUser;
using QueryColumn = query::PropertyColumn;
using QueryKind = query::ValueKind;

std::string_view TopLevel(std::string_view path) { return path.substr(0, path.find('.')); }

QueryColumn FromStrings(StringColumn& column, size_t rows) {
  QueryColumn out;
  out.Resize(rows);
  for (size_t row = 0; row < rows && row < column.codes.size(); ++row) {
    const uint32_t code = column.codes[row];
    if (code >= column.dictionary.size() || column.dictionary[code].empty()) continue;
    out.kinds[row] = QueryKind::kString;
    out.codes[row] = code;
  }
  out.strings = std::move(column.dictionary);
  return out;
}

QueryColumn FromProperty(PropertyColumn& column, size_t rows) {
  QueryColumn out;
  out.Resize(rows);
  bool any_json = false;
  for (size_t row = 0; row < rows && row < column.kinds.size(); ++row) {
    switch (column.kinds[row]) {
      case ValueKind::kAbsent:
        break;
      case ValueKind::kNull:
        out.kinds[row] = QueryKind::kNull;
        break;
      case ValueKind::kBool:
        out.kinds[row] = column.ints[row] != 0 ? QueryKind::kTrue : QueryKind::kFalse;
        break;
      case ValueKind::kInt:
      case ValueKind::kDouble:
        out.kinds[row] = QueryKind::kNumber;
        out.numbers[row] = column.doubles[row];
        break;
      case ValueKind::kString:
        out.kinds[row] = QueryKind::kString;
        out.codes[row] = static_cast<uint32_t>(column.ints[row]);
        break;
      case ValueKind::kJson:
        out.kinds[row] = QueryKind::kOther;
        out.codes[row] = static_cast<uint32_t>(column.ints[row]);
        any_json = true;
        break;
    }
  }
  if (any_json) out.others = column.strings;
  out.strings = std::move(column.strings);
  return out;
}

// A nested path (a.b.c) from the top-level column `a`: the member b.c of its JSON objects.
QueryColumn Descend(const QueryColumn& top, std::string_view rest, size_t rows) {
  QueryColumn out;
  out.Resize(rows);
  std::map<std::string, uint32_t, std::less<>> strings_index, others_index;
  std::vector<std::string> parts;
  for (size_t start = 0; start <= rest.size();) {
    size_t dot = rest.find('.', start);
    if (dot == std::string_view::npos) dot = rest.size();
    parts.emplace_back(rest.substr(start, dot - start));
    start = dot + 1;
  }
  // Decide once per distinct JSON text.
  struct Decoded {
    QueryKind kind = QueryKind::kMissing;
    double number = 0;
    uint32_t code = 0;
  };
  std::vector<std::optional<Decoded>> decoded(top.others.size());
  for (size_t row = 0; row < rows; ++row) {
    if (top.kinds[row] != QueryKind::kOther) continue;
    const uint32_t code = top.codes[row];
    if (code >= decoded.size()) continue;
    if (!decoded[code]) {
      Decoded value;
      nlohmann::json node = nlohmann::json::parse(top.others[code], nullptr, false);
      for (const auto& part : parts) {
        if (!node.is_object() || !node.contains(part)) {
          node = nlohmann::json::value_t::discarded;
          break;
        }
        node = node[part];
      }
      if (node.is_discarded()) {
        value.kind = QueryKind::kMissing;
      } else if (node.is_null()) {
        value.kind = QueryKind::kNull;
      } else if (node.is_boolean()) {
        value.kind = node.get<bool>() ? QueryKind::kTrue : QueryKind::kFalse;
      } else if (node.is_number()) {
        value.kind = QueryKind::kNumber;
        value.number = node.get<double>();
      } else if (node.is_string()) {
        value.kind = QueryKind::kString;
        value.code = out.Intern(node.get<std::string>(), strings_index);
      } else {
        value.kind = QueryKind::kOther;
        const std::string text = node.dump();
        auto it = others_index.find(text);
        if (it == others_index.end()) {
          it = others_index.emplace(text, static_cast<uint32_t>(out.others.size())).first;
          out.others.push_back(text);
        }
        value.code = it->second;
      }
      decoded[code] = value;
    }
    out.kinds[row] = decoded[code]->kind;
    out.numbers[row] = decoded[code]->number;
    out.codes[row] = decoded[code]->code;
  }
  return out;
}

uint64_t HashUser(std::string_view user) { return XXH3_64bits(user.data(), user.size()); }

// The bitmap of `ids` but kNoUser (distinct, any order): marked in a bit array, then added in order, which
// costs less than sorting them.
Roaring BitmapOf(const std::vector<uint32_t>& ids) {
  uint32_t max_id = 0;
  size_t count = 0;
  for (uint32_t id : ids) {
    if (id == kNoUser) continue;
    max_id = std::max(max_id, id);
    ++count;
  }
  Roaring bitmap;
  if (count == 0) return bitmap;
  std::vector<uint64_t> bits(max_id / 64 + 1, 0);
  for (uint32_t id : ids) {
    if (id != kNoUser) bits[id / 64] |= uint64_t{1} << (id % 64);
  }
  std::vector<uint32_t> sorted;
  sorted.reserve(count);
  for (size_t word_idx = 0; word_idx < bits.size(); ++word_idx) {
    for (uint64_t word = bits[word_idx]; word != 0; word &= word - 1) {
      sorted.push_back(static_cast<uint32_t>(word_idx * 64 + static_cast<size_t>(__builtin_ctzll(word))));
    }
  }
  bitmap.addMany(sorted.size(), sorted.data());
  return bitmap;
}

}  // namespace

// ---- UserDirectory ----------------------------------------------------------------------------------------

uint32_t UserDirectory::FindLocked(std::string_view user, uint64_t hash) const {
  if (slots_.empty()) return kNoUser;
  const uint64_t mask = slots_.size() - 1;
  const uint64_t tag = hash >> 32;
  for (uint64_t slot = hash & mask;; slot = (slot + 1) & mask) {
    const uint64_t entry = slots_[slot];
    if (entry == 0) return kNoUser;
    if ((entry >> 32) == tag) {
      const auto id = static_cast<uint32_t>(entry) - 1;
      if (NameLocked(id) == user) return id;
    }
  }
}

uint32_t UserDirectory::InsertLocked(std::string_view user, uint64_t hash) {
  const size_t count = offsets_.size() - 1;
  if ((count + 1) * 2 > slots_.size()) {
    std::vector<uint64_t> slots(std::max<size_t>(1024, slots_.size() * 2), 0);
    const uint64_t mask = slots.size() - 1;
    for (uint32_t id = 0; id < count; ++id) {
      const uint64_t rehash = HashUser(NameLocked(id));
      uint64_t slot = rehash & mask;
      while (slots[slot] != 0) slot = (slot + 1) & mask;
      slots[slot] = ((rehash >> 32) << 32) | (uint64_t{id} + 1);
    }
    slots_ = std::move(slots);
  }
  const auto id = static_cast<uint32_t>(count);
  arena_.insert(arena_.end(), user.begin(), user.end());
  offsets_.push_back(arena_.size());
  const uint64_t mask = slots_.size() - 1;
  uint64_t slot = hash & mask;
  while (slots_[slot] != 0) slot = (slot + 1) & mask;
  slots_[slot] = ((hash >> 32) << 32) | (uint64_t{id} + 1);
  bytes_ = slots_.capacity() * sizeof(uint64_t) + arena_.capacity() + offsets_.capacity() * sizeof(uint64_t);
  return id;
}

uint32_t UserDirectory::IdOf(std::string_view user) {
  std::vector<uint32_t> ids;
  IdsOf({user}, ids);
  return ids.front();
}

void UserDirectory::IdsOf(const std::vector<std::string_view>& users, std::vector<uint32_t>& ids, bool add_missing) {
  const size_t count = users.size();
  ids.assign(count, kNoUser);
  std::vector<uint64_t> hashes(count);
  for (size_t user_idx = 0; user_idx < count; ++user_idx) hashes[user_idx] = HashUser(users[user_idx]);
  std::vector<size_t> missing;
  {
    std::shared_lock lock(mu_);
    if (!slots_.empty()) {
      // Two passes with prefetches a few users ahead: the slot of each hash, then the name of each candidate,
      // so that the cache misses of a batch overlap instead of following one another.
      constexpr size_t kAhead = 8;
      const uint64_t mask = slots_.size() - 1;
      for (size_t user_idx = 0; user_idx < count; ++user_idx) {
        if (user_idx + kAhead < count) __builtin_prefetch(&slots_[hashes[user_idx + kAhead] & mask]);
        const uint64_t tag = hashes[user_idx] >> 32;
        for (uint64_t slot = hashes[user_idx] & mask;; slot = (slot + 1) & mask) {
          const uint64_t entry = slots_[slot];
          if (entry == 0) break;
          if ((entry >> 32) == tag) {
            ids[user_idx] = static_cast<uint32_t>(entry) - 1;  // a candidate, checked below
            break;
          }
        }
      }
      for (size_t user_idx = 0; user_idx < count; ++user_idx) {
        if (user_idx + kAhead < count && ids[user_idx + kAhead] != kNoUser) {
          __builtin_prefetch(arena_.data() + offsets_[ids[user_idx + kAhead]]);
        }
        if (users[user_idx].empty()) {
          ids[user_idx] = kNoUser;
          continue;
        }
        if (ids[user_idx] == kNoUser || NameLocked(ids[user_idx]) != users[user_idx]) {
          ids[user_idx] = FindLocked(users[user_idx], hashes[user_idx]);  // a tag collision: probe on
        }
        if (ids[user_idx] == kNoUser) missing.push_back(user_idx);
      }
    } else {
      for (size_t user_idx = 0; user_idx < count; ++user_idx) {
        if (!users[user_idx].empty()) missing.push_back(user_idx);
      }
    }
  }
  if (missing.empty() || !add_missing) return;
  std::unique_lock lock(mu_);
  for (size_t user_idx : missing) {
    ids[user_idx] = FindLocked(users[user_idx], hashes[user_idx]);  // another reader may have added it
    if (ids[user_idx] == kNoUser) ids[user_idx] = InsertLocked(users[user_idx], hashes[user_idx]);
  }
}

uint32_t UserDirectory::Find(std::string_view user) const {
  if (user.empty()) return kNoUser;
  const uint64_t hash = HashUser(user);
  std::shared_lock lock(mu_);
  return FindLocked(user, hash);
}

std::string UserDirectory::NameOf(uint32_t id) const {
  std::vector<std::string> names;
  NamesOf({id}, names);
  return std::move(names.front());
}

void UserDirectory::NamesOf(const std::vector<uint32_t>& ids, std::vector<std::string>& names) const {
  names.clear();
  names.resize(ids.size());
  std::shared_lock lock(mu_);
  const size_t count = offsets_.size() - 1;
  for (size_t id_idx = 0; id_idx < ids.size(); ++id_idx) {
    if (ids[id_idx] < count) names[id_idx] = NameLocked(ids[id_idx]);  // kNoUser is never < count
  }
}

size_t UserDirectory::size() const {
  std::shared_lock lock(mu_);
  return offsets_.size() - 1;
}

uint64_t UserDirectory::memory_bytes() const {
  std::shared_lock lock(mu_);
  return bytes_;
}

// ---- SegmentCache -----------------------------------------------------------------------------------------

uint64_t PartUsers::MemoryBytes() const {
  return sizeof(PartUsers) + ids.capacity() * sizeof(uint32_t) + all.getSizeInBytes();
}

Result<std::shared_ptr<SegmentState>> SegmentCache::Get(const std::string& path) {
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(path);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->state;
    }
  }
  auto state = std::make_shared<SegmentState>();
  ANALYTICS_ASSIGN_OR_RETURN(state->format, v3::SegmentFormatOf(path));
  uint64_t bytes = sizeof(SegmentState) + path.size() + 128;
  if (state->format != 2) {
    ANALYTICS_ASSIGN_OR_RETURN(auto file, v3::SegmentFile::Open(path));
    state->footer = file->shared_footer();
    state->file_bytes = file->file_bytes();
    state->users.resize(file->part_count());
    for (const v3::Part& part : state->footer->parts) {
      bytes += sizeof(v3::Part) + (part.columns.size() + 1) * (sizeof(v3::ColumnEntry) + 24);
    }
  }
  if (max_bytes_ == 0) return state;
  std::lock_guard lock(mu_);
  auto it = index_.find(path);
  if (it != index_.end()) return it->second->state;  // another query read it meanwhile
  lru_.push_front({path, state, bytes});
  index_[path] = lru_.begin();
  bytes_ += bytes;
  EvictLocked();
  return state;
}

void SegmentCache::Charge(const std::string& path, uint64_t bytes) {
  std::lock_guard lock(mu_);
  auto it = index_.find(path);
  if (it == index_.end()) return;
  it->second->bytes += bytes;
  bytes_ += bytes;
  EvictLocked();
}

void SegmentCache::EvictLocked() {
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().path);
    lru_.pop_back();
  }
}

uint64_t SegmentCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

// ---- Scopes -----------------------------------------------------------------------------------------------

const Roaring* ScopeUsers(const std::optional<query::UserScope>& scope) {
  static const Roaring kNobody;
  if (!scope) return nullptr;
  return scope->users ? scope->users.get() : &kNobody;
}

// ---- Columns and batches ----------------------------------------------------------------------------------

SegmentColumnRequest ColumnsFor(const std::vector<std::string>& paths, bool need_users) {
  SegmentColumnRequest request;
  request.user = need_users;
  request.time = request.type = true;
  for (const auto& path : paths) {
    if (path == "game_id") request.game_id = true;
    else if (path == "session_id") request.session_id = true;
    else if (path == "currency") request.currency = true;
    else if (path == "country") request.country = true;
    else if (path == "platform") request.platform = true;
    else if (path == "amount") request.amount = true;
    else if (path == "user_id") request.user = true;
    else {
      const std::string top(TopLevel(path));
      if (std::find(request.properties.begin(), request.properties.end(), top) == request.properties.end()) {
        request.properties.push_back(top);
      }
    }
  }
  return request;
}

EventBatch BatchFromColumns(SegmentColumns& columns, const std::vector<std::string>& paths, UserDirectory& users,
                            const std::vector<uint32_t>* run_ids) {
  EventBatch batch;
  const size_t rows = columns.rows;
  batch.rows = rows;
  batch.time_ms = std::move(columns.time_ms);
  batch.types = std::move(columns.type.dictionary);
  batch.type_codes = std::move(columns.type.codes);
  for (int64_t time : batch.time_ms) {
    batch.min_time_ms = std::min(batch.min_time_ms, time);
    batch.max_time_ms = std::max(batch.max_time_ms, time);
  }
  if (run_ids != nullptr && run_ids->size() == columns.user_runs.size()) {
    batch.users.reserve(rows);
    for (size_t run_idx = 0; run_idx < run_ids->size(); ++run_idx) {
      batch.users.insert(batch.users.end(), columns.user_runs[run_idx], (*run_ids)[run_idx]);
    }
    batch.users.resize(rows, kNoUser);
  } else if (!columns.user_codes.empty()) {
    std::vector<std::string_view> names(columns.users.begin(), columns.users.end());
    std::vector<uint32_t> dense;
    users.IdsOf(names, dense);
    batch.users.resize(rows, kNoUser);
    for (size_t row = 0; row < rows && row < columns.user_codes.size(); ++row) {
      const uint32_t code = columns.user_codes[row];
      if (code < dense.size()) batch.users[row] = dense[code];
    }
  }
  for (const auto& path : paths) {
    if (batch.properties.count(path)) continue;
    QueryColumn column;
    if (path == "game_id") column = FromStrings(columns.game_id, rows);
    else if (path == "session_id") column = FromStrings(columns.session_id, rows);
    else if (path == "currency") column = FromStrings(columns.currency, rows);
    else if (path == "country") column = FromStrings(columns.country, rows);
    else if (path == "platform") column = FromStrings(columns.platform, rows);
    else if (path == "user_id") {
      StringColumn user_column;
      user_column.dictionary = columns.users;
      user_column.codes = columns.user_codes;
      column = FromStrings(user_column, rows);
    } else if (path == "amount") {
      column.Resize(rows);
      for (size_t row = 0; row < rows && row < columns.amount.size(); ++row) {
        if (columns.amount[row]) {
          column.kinds[row] = QueryKind::kNumber;
          column.numbers[row] = *columns.amount[row];
        }
      }
    } else {
      const std::string_view top = TopLevel(path);
      auto it = std::find_if(columns.properties.begin(), columns.properties.end(),
                             [&](const PropertyColumn& property) { return property.name == top; });
      if (it == columns.properties.end()) {
        column.Resize(rows);
      } else if (top.size() == path.size()) {
        // Several paths may share a top-level column: convert a copy unless this is its only use.
        const bool shared = std::count_if(paths.begin(), paths.end(), [&](const std::string& other) {
                              return TopLevel(other) == top;
                            }) > 1;
        if (shared) {
          PropertyColumn copy = *it;
          column = FromProperty(copy, rows);
        } else {
          column = FromProperty(*it, rows);
        }
      } else {
        PropertyColumn copy = *it;
        column = Descend(FromProperty(copy, rows), std::string_view(path).substr(top.size() + 1), rows);
      }
    }
    batch.properties.emplace(path, std::move(column));
  }
  return batch;
}

// ---- Segment reading --------------------------------------------------------------------------------------

namespace {

// How the users of a segment part meet a query's scope.
enum class ScopeFit : uint8_t {
  kAll,   // every row is a user in scope (or the query has no scope): read as without one
  kSome,  // some rows are: the others are dropped, a user run at a time
  kNone,  // no row is: the part is not read
};

// Keeps the rows of `columns` whose user run's id (`run_ids`, one per run) is in `scope`, and the ids of the kept
// runs. Corruption when the runs do not describe the rows.
Status KeepScope(SegmentColumns& columns, std::vector<uint32_t>& run_ids, const Roaring& scope,
                 const std::string& path) {
  if (run_ids.size() != columns.user_runs.size()) return Status::Corruption(path + ": user runs do not match their ids");
  std::vector<uint8_t> keep(run_ids.size());
  size_t kept = 0;
  for (size_t run_idx = 0; run_idx < run_ids.size(); ++run_idx) {
    keep[run_idx] = run_ids[run_idx] != kNoUser && scope.contains(run_ids[run_idx]);
    kept += keep[run_idx];
  }
  if (kept == run_ids.size()) return Status::Ok();
  if (!KeepRuns(columns, keep)) return Status::Corruption(path + ": user runs do not add up to the rows");
  size_t out = 0;
  for (size_t run_idx = 0; run_idx < run_ids.size(); ++run_idx) {
    if (keep[run_idx] != 0) run_ids[out++] = run_ids[run_idx];
  }
  run_ids.resize(out);
  return Status::Ok();
}

bool ReadsType(const AggregateQuery& query, const std::string& type) {
  return query.event_types.empty() ||
         std::find(query.event_types.begin(), query.event_types.end(), type) != query.event_types.end();
}

// A segment as one query reads it: its cached state, the file opened on first need.
class SegmentReader {
 public:
  SegmentReader(const std::string& path, std::shared_ptr<SegmentState> state, SegmentReadContext& context)
      : path_(path), state_(std::move(state)), context_(context) {}

  const v3::Footer& footer() const { return *state_->footer; }

  Result<const v3::SegmentFile*> File() {
    if (!file_) {
      ANALYTICS_ASSIGN_OR_RETURN(file_, v3::SegmentFile::Open(path_, state_->footer, state_->file_bytes));
    }
    return file_.get();
  }

  // The dense ids of a part's users, computed on first use and kept with the segment's state.
  Result<std::shared_ptr<const PartUsers>> Users(size_t part_idx) {
    // A later part's users are references to the first part's (format 4): their ids come from there.
    std::shared_ptr<const PartUsers> first;
    if (part_idx > 0 && footer().format >= 4) {
      ANALYTICS_ASSIGN_OR_RETURN(first, Users(0));
    }
    std::lock_guard lock(state_->mu);  // one reader decodes, the others wait for it
    if (state_->users[part_idx]) return state_->users[part_idx];
    ANALYTICS_ASSIGN_OR_RETURN(const v3::SegmentFile* file, File());
    v3::PartUserList list;
    ANALYTICS_RETURN_IF_ERROR(v3::ReadPartUsers(*file, part_idx, list, first ? first->ids.size() : UINT64_MAX));
    auto users = std::make_shared<PartUsers>();
    context_.users.IdsOf(list.users, users->ids);
    if (first) {
      std::vector<uint32_t> extras = std::move(users->ids);
      users->ids.resize(list.base_refs.size());
      size_t extra_idx = 0;
      for (size_t user_idx = 0; user_idx < list.base_refs.size(); ++user_idx) {
        const uint32_t ref = list.base_refs[user_idx];
        users->ids[user_idx] = ref == kExtraUser ? extras[extra_idx++] : first->ids[ref];
      }
    }
    users->all = BitmapOf(users->ids);
    users->has_empty = std::find(users->ids.begin(), users->ids.end(), kNoUser) != users->ids.end();
    users->all.runOptimize();
    users->all.shrinkToFit();
    state_->users[part_idx] = users;
    context_.segments.Charge(path_, users->MemoryBytes());
    return std::shared_ptr<const PartUsers>(users);
  }

  // Whether a part holds rows of one of `excluded` (users whose rows a query leaves out).
  Result<bool> HoldsAny(size_t part_idx, const std::set<std::string, std::less<>>& excluded) {
    if (excluded.empty()) return false;
    ANALYTICS_ASSIGN_OR_RETURN(auto users, Users(part_idx));
    for (const auto& user : excluded) {
      if (user.empty() && users->has_empty) return true;
      const uint32_t id = context_.users.Find(user);
      if (id != kNoUser && users->all.contains(id)) return true;
    }
    return false;
  }

  // How the part's users meet `scope` (nullptr: no scope). Rows without a user never match a scope. One
  // bitmap intersection (and inclusion) test over the part's cached ids.
  Result<ScopeFit> Fit(size_t part_idx, const Roaring* scope) {
    if (scope == nullptr) return ScopeFit::kAll;
    ANALYTICS_ASSIGN_OR_RETURN(auto users, Users(part_idx));
    if (!users->all.intersect(*scope)) return ScopeFit::kNone;
    return !users->has_empty && users->all.isSubset(*scope) ? ScopeFit::kAll : ScopeFit::kSome;
  }

  // One part as a batch holding `paths` (users when `need_users`), without the rows of `excluded` and, with
  // `scope`, only the rows of its users: the other users' runs are dropped right after decoding, before any
  // column is converted, filtered or aggregated.
  Result<EventBatch> Batch(size_t part_idx, const std::vector<std::string>& paths, bool need_users,
                           const std::set<std::string, std::less<>>& excluded, const Roaring* scope = nullptr) {
    ANALYTICS_ASSIGN_OR_RETURN(const bool exclude, HoldsAny(part_idx, excluded));
    ANALYTICS_ASSIGN_OR_RETURN(const v3::SegmentFile* file, File());
    SegmentColumnRequest request = ColumnsFor(paths, /*need_users=*/exclude);
    if (exclude) {
      // Rare (between an erasure and the purge that rewrites the segment): the user strings decide.
      ANALYTICS_ASSIGN_OR_RETURN(SegmentColumns columns, v3::ReadPartColumns(*file, part_idx, request));
      ExcludeUsers(columns, excluded);
      if (scope == nullptr) return BatchFromColumns(columns, paths, context_.users);
      std::vector<uint32_t> ids;
      context_.users.IdsOf(std::vector<std::string_view>(columns.users.begin(), columns.users.end()), ids);
      ANALYTICS_RETURN_IF_ERROR(KeepScope(columns, ids, *scope, path_));
      return BatchFromColumns(columns, paths, context_.users, &ids);
    }
    std::shared_ptr<const PartUsers> users;
    if (need_users || scope != nullptr) {
      request.runs = true;
      ANALYTICS_ASSIGN_OR_RETURN(users, Users(part_idx));
    }
    ANALYTICS_ASSIGN_OR_RETURN(SegmentColumns columns, v3::ReadPartColumns(*file, part_idx, request));
    if (scope == nullptr) return BatchFromColumns(columns, paths, context_.users, users ? &users->ids : nullptr);
    std::vector<uint32_t> ids = users->ids;
    ANALYTICS_RETURN_IF_ERROR(KeepScope(columns, ids, *scope, path_));
    return BatchFromColumns(columns, paths, context_.users, &ids);
  }

 private:
  const std::string& path_;
  std::shared_ptr<SegmentState> state_;
  SegmentReadContext& context_;
  std::unique_ptr<v3::SegmentFile> file_;
};

// Format 2 files hold no parts: decoded whole, as before (with `scope`, only its users' rows).
Result<EventBatch> WholeSegmentBatch(const std::string& path, const std::vector<std::string>& paths,
                                     const std::set<std::string, std::less<>>& excluded, UserDirectory& users,
                                     const Roaring* scope) {
  ANALYTICS_ASSIGN_OR_RETURN(SegmentColumns columns, ReadSegmentColumns(path, ColumnsFor(paths)));
  ExcludeUsers(columns, excluded);
  if (scope == nullptr) return BatchFromColumns(columns, paths, users);
  std::vector<uint32_t> ids;
  users.IdsOf(std::vector<std::string_view>(columns.users.begin(), columns.users.end()), ids);
  ANALYTICS_RETURN_IF_ERROR(KeepScope(columns, ids, *scope, path));
  return BatchFromColumns(columns, paths, users, &ids);
}

// The bucket of `query` that holds all of [min_ms, max_ms], or -1.
int64_t OneBucket(const AggregateQuery& query, int64_t min_ms, int64_t max_ms) {
  const auto& bounds = query.bounds;
  const auto upper = std::upper_bound(bounds.begin(), bounds.end(), min_ms);
  if (upper == bounds.begin() || upper == bounds.end() || max_ms >= *upper) return -1;
  return upper - bounds.begin() - 1;
}

// A weight whose products with row counts, and their sums, are exact in a double (so the fast path's
// count × weight equals the row-by-row sum bit for bit).
bool SmallInteger(double weight) { return std::trunc(weight) == weight && std::fabs(weight) <= 1048576.0; }

}  // namespace

Status ReadSegmentRows(const std::string& path, const AggregateQuery& query, const std::vector<std::string>& paths,
                       const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                       SegmentRows& out) {
  if (query.bounds.size() < 2) return Status::Ok();
  const Roaring* scope = ScopeUsers(query.scope);
  ANALYTICS_ASSIGN_OR_RETURN(auto state, context.segments.Get(path));
  if (state->format == 2) {
    ANALYTICS_ASSIGN_OR_RETURN(EventBatch batch, WholeSegmentBatch(path, paths, excluded, context.users, scope));
    out.batches.push_back(std::move(batch));
    out.order.push_back(SegmentRows::kBatch);
    return Status::Ok();
  }
  SegmentReader reader(path, state, context);
  const v3::Footer& footer = reader.footer();
  if (footer.rows == 0 || footer.max_time_ms < query.bounds.front() || footer.min_time_ms >= query.bounds.back()) {
    return Status::Ok();
  }
  // As one batch of the whole segment would: the ungrouped cells exist once the segment's time range meets
  // the bounds and one of its types is read, whichever part holds the rows.
  if (query.group_by.empty()) {
    out.ungrouped = std::any_of(footer.type_counts.begin(), footer.type_counts.end(),
                                [&](const auto& entry) { return ReadsType(query, entry.first); });
    if (!out.ungrouped) return Status::Ok();
  }
  const bool counts_only =
      query.filter.IsTrue() && query.group_by.empty() && query.value_property.empty() && !query.collect_values;
  for (size_t part_idx = 0; part_idx < footer.parts.size(); ++part_idx) {
    const v3::Part& part = footer.parts[part_idx];
    if (part.rows == 0 || part.max_time_ms < query.bounds.front() || part.min_time_ms >= query.bounds.back()) continue;
    bool all_read = true, any_read = false, exact_weights = true;
    double weighted_count = 0;
    for (const auto& type : part.types) {
      if (!ReadsType(query, type)) {
        all_read = false;
        continue;
      }
      any_read = true;
      auto weight = query.weights.find(type);
      const double type_weight = weight == query.weights.end() ? 1.0 : weight->second;
      exact_weights = exact_weights && SmallInteger(type_weight);
      weighted_count += type_weight * static_cast<double>(footer.type_counts.at(type));
    }
    if (!any_read) continue;
    // A scope: parts without its users are skipped; the fast path only serves parts all of whose rows it reads.
    ANALYTICS_ASSIGN_OR_RETURN(const ScopeFit fit, reader.Fit(part_idx, scope));
    if (fit == ScopeFit::kNone) continue;
    const int64_t bucket = counts_only && all_read && exact_weights && fit == ScopeFit::kAll
                               ? OneBucket(query, part.min_time_ms, part.max_time_ms)
                               : -1;
    if (bucket >= 0) {
      // Every row of the part is read, into one cell: its counts come from the footer, its users from the
      // part's cached ids. Unless an excluded user has rows here.
      ANALYTICS_ASSIGN_OR_RETURN(const bool exclude, reader.HoldsAny(part_idx, excluded));
      if (!exclude) {
        SegmentRows::PartCell& cell = out.cells.emplace_back();
        cell.bucket = static_cast<size_t>(bucket);
        cell.weighted_count = weighted_count;
        cell.rows = part.rows;
        cell.newest_ms = part.max_time_ms;
        if (query.collect_users) {
          ANALYTICS_ASSIGN_OR_RETURN(cell.users, reader.Users(part_idx));
        }
        out.order.push_back(SegmentRows::kCell);
        continue;
      }
    }
    ANALYTICS_ASSIGN_OR_RETURN(EventBatch batch, reader.Batch(part_idx, paths, query.collect_users, excluded,
                                                              fit == ScopeFit::kSome ? scope : nullptr));
    out.batches.push_back(std::move(batch));
    out.order.push_back(SegmentRows::kBatch);
  }
  return Status::Ok();
}

void AddSegmentRows(const AggregateQuery& query, const SegmentRows& rows, query::AggregateResult& out,
                    query::GroupIndex* index) {
  if (query.bounds.size() < 2) return;
  const size_t buckets = query.bounds.size() - 1;
  if (rows.ungrouped) {
    auto [it, inserted] = out.groups.try_emplace(query::GroupKey{});
    if (inserted) it->second.resize(buckets);
  }
  // In the parts' order, as the rows of one batch of the segment would be added.
  size_t cell_idx = 0, batch_idx = 0;
  for (const int8_t source : rows.order) {
    if (source == SegmentRows::kCell) {
      const SegmentRows::PartCell& part = rows.cells[cell_idx++];
      query::AggregateCell& cell = out.groups[query::GroupKey{}][part.bucket];
      cell.weighted_count += part.weighted_count;
      if (part.users) cell.users |= part.users->all;
      out.rows_read += part.rows;
      out.newest_event_ms = std::max(out.newest_event_ms, part.newest_ms);
    } else {
      query::Aggregate(query, rows.batches[batch_idx++], out, index);
    }
  }
}

Status AggregateSegment(const std::string& path, const AggregateQuery& query, const std::vector<std::string>& paths,
                        const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                        query::AggregateResult& out, query::GroupIndex* index) {
  SegmentRows rows;
  ANALYTICS_RETURN_IF_ERROR(ReadSegmentRows(path, query, paths, excluded, context, rows));
  AddSegmentRows(query, rows, out, index);
  return Status::Ok();
}

namespace {

// Adds to `builder` (SessionMarksBuilder, TimelineBuilder) the batches of the segment at `path` whose parts hold an
// event type `reads` accepts (format 2: the whole segment), with `paths` and users, without `excluded` users and,
// with `scope`, only the rows of its users (parts without any of them are not read).
template <typename Builder, typename Reads>
Status AddSegmentBatches(const std::string& path, const std::vector<std::string>& paths,
                         const std::set<std::string, std::less<>>& excluded, const Roaring* scope,
                         SegmentReadContext& context, const Reads& reads, Builder& builder) {
  ANALYTICS_ASSIGN_OR_RETURN(auto state, context.segments.Get(path));
  if (state->format == 2) {
    ANALYTICS_ASSIGN_OR_RETURN(EventBatch batch, WholeSegmentBatch(path, paths, excluded, context.users, scope));
    builder.Add(batch);
    return Status::Ok();
  }
  SegmentReader reader(path, state, context);
  const v3::Footer& footer = reader.footer();
  for (size_t part_idx = 0; part_idx < footer.parts.size(); ++part_idx) {
    const v3::Part& part = footer.parts[part_idx];
    if (part.rows == 0 || std::none_of(part.types.begin(), part.types.end(), reads)) continue;
    ANALYTICS_ASSIGN_OR_RETURN(const ScopeFit fit, reader.Fit(part_idx, scope));
    if (fit == ScopeFit::kNone) continue;
    ANALYTICS_ASSIGN_OR_RETURN(EventBatch batch, reader.Batch(part_idx, paths, /*need_users=*/true, excluded,
                                                              fit == ScopeFit::kSome ? scope : nullptr));
    builder.Add(batch);
  }
  return Status::Ok();
}

}  // namespace

Status ReadSegmentSessionMarks(const std::string& path, const query::SessionQuery& query,
                               const std::vector<std::string>& paths,
                               const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                               query::SessionMarks& out) {
  query::SessionMarksBuilder builder(query);
  auto reads = [&](const std::string& type) { return type == query.start_type || type == query.end_type; };
  ANALYTICS_RETURN_IF_ERROR(AddSegmentBatches(path, paths, excluded, ScopeUsers(query.scope), context, reads, builder));
  out = builder.Finish();
  return Status::Ok();
}

Status ReadSegmentTimeline(const std::string& path, const query::TimelineQuery& query,
                           const std::vector<std::string>& paths, const std::set<std::string, std::less<>>& excluded,
                           SegmentReadContext& context, query::Timeline& out) {
  query::TimelineBuilder builder(query);
  const std::vector<std::string> types = query.EventTypes();  // sorted; empty: every type
  auto reads = [&](const std::string& type) {
    return types.empty() || std::binary_search(types.begin(), types.end(), type);
  };
  ANALYTICS_RETURN_IF_ERROR(AddSegmentBatches(path, paths, excluded, ScopeUsers(query.scope), context, reads, builder));
  out = builder.Finish();
  return Status::Ok();
}

// ---- PartialCache -----------------------------------------------------------------------------------------

PartialCache::Value PartialCache::Find(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return {};
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void PartialCache::Insert(const std::string& key, Value value, uint64_t value_bytes) {
  if (max_bytes_ == 0) return;
  const uint64_t bytes = value_bytes + key.size() + 128;
  // Never let one entry push out more than half of the cache (a timeline join of a month at 100M events is ~0.8 GB).
  if (bytes > max_bytes_ / 2) return;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front({key, std::move(value), bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

uint64_t PartialCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}
uint64_t PartialCache::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}
uint64_t PartialCache::misses() const {
  std::lock_guard lock(mu_);
  return misses_;
}

}  // namespace analytics::store::embedded
