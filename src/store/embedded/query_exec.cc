// Embedded query execution: column conversion, dense users, partial cache.
#include "store/embedded/query_exec.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

namespace analytics::store::embedded {

namespace {

using query::EventBatch;
using QueryColumn = query::PropertyColumn;
using QueryKind = query::ValueKind;

std::string_view TopLevel(std::string_view path) { return path.substr(0, path.find('.')); }

QueryColumn FromStrings(const StringColumn& column, size_t rows) {
  QueryColumn out;
  out.Resize(rows);
  out.strings = column.dictionary;
  for (size_t row = 0; row < rows && row < column.codes.size(); ++row) {
    const uint32_t code = column.codes[row];
    if (code >= column.dictionary.size() || column.dictionary[code].empty()) continue;
    out.kinds[row] = QueryKind::kString;
    out.codes[row] = code;
  }
  return out;
}

QueryColumn FromProperty(const PropertyColumn& column, size_t rows) {
  QueryColumn out;
  out.Resize(rows);
  out.strings = column.strings;
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

}  // namespace

uint32_t UserDirectory::IdOf(std::string_view user) {
  {
    std::shared_lock lock(mu_);
    auto it = ids_.find(std::string(user));
    if (it != ids_.end()) return it->second;
  }
  std::unique_lock lock(mu_);
  auto [it, inserted] = ids_.try_emplace(std::string(user), static_cast<uint32_t>(ids_.size()));
  if (inserted) bytes_ += user.size() + 64;
  return it->second;
}

size_t UserDirectory::size() const {
  std::shared_lock lock(mu_);
  return ids_.size();
}

uint64_t UserDirectory::memory_bytes() const {
  std::shared_lock lock(mu_);
  return bytes_;
}

SegmentColumnRequest ColumnsFor(const std::vector<std::string>& paths) {
  SegmentColumnRequest request;
  request.user = request.time = request.type = true;
  for (const auto& path : paths) {
    if (path == "game_id") request.game_id = true;
    else if (path == "session_id") request.session_id = true;
    else if (path == "currency") request.currency = true;
    else if (path == "country") request.country = true;
    else if (path == "platform") request.platform = true;
    else if (path == "amount") request.amount = true;
    else if (path == "user_id") continue;
    else {
      const std::string top(TopLevel(path));
      if (std::find(request.properties.begin(), request.properties.end(), top) == request.properties.end()) {
        request.properties.push_back(top);
      }
    }
  }
  return request;
}

EventBatch BatchFromColumns(SegmentColumns& columns, const std::vector<std::string>& paths, UserDirectory& users) {
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
  std::vector<uint32_t> dense(columns.users.size(), query::kNoUser);
  for (size_t user_idx = 0; user_idx < columns.users.size(); ++user_idx) {
    if (!columns.users[user_idx].empty()) dense[user_idx] = users.IdOf(columns.users[user_idx]);
  }
  batch.users.resize(rows, query::kNoUser);
  for (size_t row = 0; row < rows && row < columns.user_codes.size(); ++row) {
    const uint32_t code = columns.user_codes[row];
    if (code < dense.size()) batch.users[row] = dense[code];
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
        column = FromProperty(*it, rows);
      } else {
        column = Descend(FromProperty(*it, rows), std::string_view(path).substr(top.size() + 1), rows);
      }
    }
    batch.properties.emplace(path, std::move(column));
  }
  return batch;
}

std::shared_ptr<const query::AggregateResult> PartialCache::Get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void PartialCache::Put(const std::string& key, std::shared_ptr<const query::AggregateResult> value) {
  const uint64_t bytes = ResultBytes(*value) + key.size() + 128;
  if (bytes > max_bytes_ / 4) return;  // never let one entry push out most of the cache
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

uint64_t ResultBytes(const query::AggregateResult& result) {
  uint64_t bytes = sizeof(result);
  for (const auto& [key, cells] : result.groups) {
    bytes += 64;
    for (const auto& part : key) bytes += part ? part->size() + 32 : 32;
    for (const auto& cell : cells) bytes += cell.MemoryBytes();
  }
  return bytes;
}

}  // namespace analytics::store::embedded
