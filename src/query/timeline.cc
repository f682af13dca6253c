// Timeline: query fingerprints and the join of per-source parts into per-user, time-ordered rows.
// (TimelineBuilder::Add lives in aggregator.cc, beside the compiled filters it uses.)
#include "query/timeline.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/parallel.h"

namespace analytics::query {

namespace {

using json = nlohmann::json;

// What a scope adds to the fingerprint, as AggregateQuery's (aggregator.cc): nothing without one.
std::string ScopeFingerprint(const std::optional<UserScope>& scope) {
  if (!scope) return "";
  return "|scope=" + std::to_string(scope->fingerprint.size()) + ":" + scope->fingerprint;
}

// For each part, its dictionary codes → codes of the sorted union of all parts' dictionaries.
std::vector<std::string> UnionDictionary(const std::vector<const std::vector<std::string>*>& dictionaries,
                                         std::vector<std::vector<uint32_t>>& remaps) {
  std::vector<std::string> all;
  for (const auto* dictionary : dictionaries) all.insert(all.end(), dictionary->begin(), dictionary->end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  remaps.clear();
  for (const auto* dictionary : dictionaries) {
    std::vector<uint32_t>& remap = remaps.emplace_back(dictionary->size());
    for (size_t code = 0; code < dictionary->size(); ++code) {
      remap[code] = static_cast<uint32_t>(std::lower_bound(all.begin(), all.end(), (*dictionary)[code]) - all.begin());
    }
  }
  return all;
}

}  // namespace

std::string TimelineQuery::Fingerprint() const {
  json selectors_json = json::array();
  for (const auto& selector : selectors) {
    selectors_json.push_back({{"types", selector.event_types}, {"filter", selector.filter.ToString()}});
  }
  return json{{"selectors", selectors_json}, {"filter", filter.ToString()}, {"keys", keys}, {"number", number_property}}
             .dump() +
         ScopeFingerprint(scope);
}

std::vector<std::string> TimelineQuery::Paths() const {
  std::vector<std::string> paths = keys;
  filter.CollectProperties(paths);
  for (const auto& selector : selectors) selector.filter.CollectProperties(paths);
  if (!number_property.empty()) paths.push_back(number_property);
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return paths;
}

std::vector<std::string> TimelineQuery::EventTypes() const {
  std::vector<std::string> types;
  for (const auto& selector : selectors) {
    if (selector.event_types.empty()) return {};
    types.insert(types.end(), selector.event_types.begin(), selector.event_types.end());
  }
  std::sort(types.begin(), types.end());
  types.erase(std::unique(types.begin(), types.end()), types.end());
  return types;
}

uint64_t Timeline::MemoryBytes() const {
  uint64_t bytes = sizeof(Timeline) + users.capacity() * sizeof(uint32_t) + time_ms.capacity() * sizeof(int64_t) +
                   matches.capacity() * sizeof(uint32_t) + types.capacity() * sizeof(uint32_t) +
                   numbers.capacity() * sizeof(double) + user_begin.capacity() * sizeof(uint32_t);
  for (const auto& name : type_names) bytes += sizeof(std::string) + name.capacity();
  for (const auto& column : keys) bytes += sizeof(column) + column.capacity() * sizeof(uint32_t);
  for (const auto& values : key_values) {
    for (const auto& value : values) bytes += sizeof(std::string) + value.capacity();
  }
  return bytes;
}

Timeline MergeTimelines(const std::vector<const Timeline*>& parts, int64_t from_ms, int64_t to_ms, size_t threads) {
  Timeline out;
  if (parts.empty()) {
    out.user_begin = {0};
    return out;
  }
  const size_t key_count = parts.front()->keys.size();
  const bool with_numbers = std::any_of(parts.begin(), parts.end(), [](const Timeline* part) {
    return !part->numbers.empty();
  });
  // Dictionaries: sorted unions, so that code order is text order.
  std::vector<std::vector<uint32_t>> type_remap;
  {
    std::vector<const std::vector<std::string>*> dictionaries;
    for (const Timeline* part : parts) dictionaries.push_back(&part->type_names);
    out.type_names = UnionDictionary(dictionaries, type_remap);
  }
  std::vector<std::vector<std::vector<uint32_t>>> key_remap(key_count);  // [key][part][code]
  out.key_values.resize(key_count);
  for (size_t key_idx = 0; key_idx < key_count; ++key_idx) {
    std::vector<const std::vector<std::string>*> dictionaries;
    for (const Timeline* part : parts) dictionaries.push_back(&part->key_values[key_idx]);
    out.key_values[key_idx] = UnionDictionary(dictionaries, key_remap[key_idx]);
  }
  // Rows per user (users are dense ids): counts, then each user's first row, then the rows scattered in part
  // order (a user's rows of one part keep their order, and parts usually come in time order).
  std::vector<uint32_t> cursor;  // per user id: its rows in range, then its next write position
  size_t total = 0;
  for (const Timeline* part : parts) {
    for (size_t row = 0; row < part->rows(); ++row) {
      if (part->time_ms[row] < from_ms || part->time_ms[row] >= to_ms) continue;
      const uint32_t user = part->users[row];
      if (user >= cursor.size()) cursor.resize(std::max<size_t>(size_t{user} + 1, cursor.size() * 2));
      ++cursor[user];
      ++total;
    }
  }
  if (total == 0) {
    out.keys.assign(key_count, {});
    out.user_begin = {0};
    return out;
  }
  out.user_begin.reserve(cursor.size() + 1);
  uint32_t next = 0;
  for (uint32_t& count : cursor) {
    if (count == 0) continue;
    out.user_begin.push_back(next);
    const uint32_t rows = count;
    count = next;  // becomes the user's write position
    next += rows;
  }
  out.user_begin.push_back(next);
  out.users.resize(total);
  out.time_ms.resize(total);
  out.matches.resize(total);
  out.types.resize(total);
  out.keys.assign(key_count, std::vector<uint32_t>(total));
  if (with_numbers) out.numbers.resize(total);
  for (size_t part_idx = 0; part_idx < parts.size(); ++part_idx) {
    const Timeline& part = *parts[part_idx];
    for (size_t row = 0; row < part.rows(); ++row) {
      const int64_t time = part.time_ms[row];
      if (time < from_ms || time >= to_ms) continue;
      const uint32_t at = cursor[part.users[row]]++;
      out.users[at] = part.users[row];
      out.time_ms[at] = time;
      out.matches[at] = part.matches[row];
      out.types[at] = type_remap[part_idx][part.types[row]];
      for (size_t key_idx = 0; key_idx < key_count; ++key_idx) {
        const uint32_t code = part.keys[key_idx][row];
        out.keys[key_idx][at] = code == kMissingKey ? kMissingKey : key_remap[key_idx][part_idx][code];
      }
      if (with_numbers) out.numbers[at] = part.numbers.empty() ? std::nan("") : part.numbers[row];
      out.newest_event_ms = std::max(out.newest_event_ms, time);
    }
  }
  // Each user's rows in (time, type, keys, matches, number) order; most users' rows already are.
  auto less = [&](uint32_t a, uint32_t b) {
    if (out.time_ms[a] != out.time_ms[b]) return out.time_ms[a] < out.time_ms[b];
    if (out.types[a] != out.types[b]) return out.types[a] < out.types[b];
    for (size_t key_idx = 0; key_idx < key_count; ++key_idx) {
      if (out.keys[key_idx][a] != out.keys[key_idx][b]) return out.keys[key_idx][a] < out.keys[key_idx][b];
    }
    if (out.matches[a] != out.matches[b]) return out.matches[a] < out.matches[b];
    if (with_numbers) {
      const double x = out.numbers[a], y = out.numbers[b];
      if (std::isnan(x) != std::isnan(y)) return std::isnan(y);  // numbers before NaN
      if (x != y && !std::isnan(x)) return x < y;
    }
    return false;
  };
  const size_t users = out.user_count();
  const size_t chunk = 4096;
  common::ParallelFor((users + chunk - 1) / chunk, std::max<size_t>(1, threads), [&](size_t chunk_idx) {
    std::vector<uint32_t> order;
    std::vector<uint32_t> scratch32;
    std::vector<int64_t> scratch64;
    std::vector<double> scratch_double;
    for (size_t user_idx = chunk_idx * chunk; user_idx < std::min(users, (chunk_idx + 1) * chunk); ++user_idx) {
      const uint32_t begin = out.user_begin[user_idx], end = out.user_begin[user_idx + 1];
      // Sorted when times rise strictly (the common case, one comparison per row); ties need the whole order.
      bool sorted = true;
      for (uint32_t row = begin + 1; row < end && sorted; ++row) {
        const int64_t previous = out.time_ms[row - 1], time = out.time_ms[row];
        sorted = time > previous || (time == previous && !less(row, row - 1));
      }
      if (sorted) continue;
      order.resize(end - begin);
      std::iota(order.begin(), order.end(), begin);
      std::stable_sort(order.begin(), order.end(), less);
      auto permute = [&](auto& column, auto& scratch) {
        scratch.resize(order.size());
        for (size_t idx = 0; idx < order.size(); ++idx) scratch[idx] = column[order[idx]];
        std::copy(scratch.begin(), scratch.end(), column.begin() + begin);
      };
      permute(out.time_ms, scratch64);
      permute(out.matches, scratch32);
      permute(out.types, scratch32);
      for (auto& column : out.keys) permute(column, scratch32);
      if (with_numbers) permute(out.numbers, scratch_double);
    }
  });
  return out;
}

}  // namespace analytics::query
