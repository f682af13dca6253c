// Paths: one pass over the users of a Timeline into a flat table of paths, then the ranking and the Sankey graph.
#include "query/paths.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <map>
#include <tuple>

#include <xxhash.h>

#include "common/parallel.h"

namespace analytics::query {

namespace {

constexpr uint32_t kPad = std::numeric_limits<uint32_t>::max();  // after a path's last code
constexpr size_t kRowsPerPart = 1 << 16;  // below this many rows per thread, fewer threads

// Distinct paths and their users: keys of `stride` codes (padded with kPad) in one array, open addressing with
// linear probing (load at most 1/2). A slot holds the path's index + 1 (low 32 bits; 0 = empty) and the high 32
// bits of its hash, so that a probe past other paths reads only the slot array: with hundreds of thousands of
// distinct paths the keys are tens of MB, and each key read is a cache miss.
class PathTable {
 public:
  explicit PathTable(size_t stride) : stride_(stride), slots_(1024, 0) {}

  void Add(const uint32_t* key, uint8_t length, uint64_t users) {
    const uint64_t hash = XXH3_64bits(key, stride_ * sizeof(uint32_t));
    const uint64_t tag = hash & ~uint64_t{0xffffffff};
    const size_t mask = slots_.size() - 1;
    for (size_t slot = hash & mask;; slot = (slot + 1) & mask) {
      const uint64_t held = slots_[slot];
      if (held == 0) {
        const size_t index = lengths_.size();
        keys_.insert(keys_.end(), key, key + stride_);
        lengths_.push_back(length);
        hashes_.push_back(hash);
        users_.push_back(users);
        slots_[slot] = tag | (index + 1);
        if (lengths_.size() * 2 > slots_.size()) Grow();
        return;
      }
      if ((held & ~uint64_t{0xffffffff}) != tag) continue;
      const size_t index = (held & 0xffffffff) - 1;
      if (std::equal(key, key + stride_, &keys_[index * stride_])) {
        users_[index] += users;
        return;
      }
    }
  }
  // Adds every path of `other` (same stride).
  void AddAll(const PathTable& other) {
    for (size_t index = 0; index < other.size(); ++index) Add(other.key(index), other.length(index), other.users(index));
  }

  size_t size() const { return lengths_.size(); }
  const uint32_t* key(size_t index) const { return &keys_[index * stride_]; }
  uint8_t length(size_t index) const { return lengths_[index]; }
  uint64_t users(size_t index) const { return users_[index]; }

 private:
  void Grow() {
    std::vector<uint64_t> slots(slots_.size() * 2, 0);
    const size_t mask = slots.size() - 1;
    for (size_t index = 0; index < hashes_.size(); ++index) {
      size_t slot = hashes_[index] & mask;
      while (slots[slot] != 0) slot = (slot + 1) & mask;
      slots[slot] = (hashes_[index] & ~uint64_t{0xffffffff}) | (index + 1);
    }
    slots_ = std::move(slots);
  }

  size_t stride_;
  std::vector<uint32_t> keys_;
  std::vector<uint8_t> lengths_;
  std::vector<uint64_t> hashes_;  // read only when growing
  std::vector<uint64_t> users_;
  std::vector<uint64_t> slots_;   // a power of two
};

// The paths of users [user_from, user_to) into `table`; returns how many users had an anchor.
uint64_t CountRange(const Timeline& timeline, const PathsSpec& spec, const std::vector<uint8_t>& excluded,
                    size_t user_from, size_t user_to, PathTable& table) {
  const uint32_t* matches = timeline.matches.data();
  const uint32_t* types = timeline.types.data();
  const int64_t* times = timeline.time_ms.data();
  const size_t stride = spec.steps + 1;
  const bool after = spec.direction == PathDirection::kAfterAnchor;
  const bool first = spec.occurrence == AnchorOccurrence::kFirst;
  const bool windowed = spec.window_ms.has_value();
  const int64_t window = spec.window_ms.value_or(0);
  uint32_t path[kMaxPathSteps + 1];
  uint64_t anchored = 0;
  for (size_t user_idx = user_from; user_idx < user_to; ++user_idx) {
    const size_t begin = timeline.user_begin[user_idx], end = timeline.user_begin[user_idx + 1];
    size_t anchor = end;
    if (first) {
      for (size_t row = begin; row < end; ++row) {
        if (matches[row] & spec.anchor_mask) {
          anchor = row;
          break;
        }
      }
    } else {
      for (size_t row = end; row > begin; --row) {
        if (matches[row - 1] & spec.anchor_mask) {
          anchor = row - 1;
          break;
        }
      }
    }
    if (anchor == end) continue;
    ++anchored;
    const int64_t anchor_time = times[anchor];
    size_t length = 1;
    path[0] = types[anchor];
    if (after) {
      for (size_t row = anchor + 1; row < end && length < stride; ++row) {
        if (windowed && times[row] - anchor_time > window) break;
        if ((matches[row] & spec.step_mask) == 0 || times[row] == anchor_time) continue;
        const uint32_t type = types[row];
        if (excluded[type] || (spec.collapse_repeats && type == path[length - 1])) continue;
        path[length++] = type;
      }
    } else {
      // Nearest first, reversed below into time order.
      for (size_t row = anchor; row > begin && length < stride; --row) {
        if (windowed && anchor_time - times[row - 1] > window) break;
        if ((matches[row - 1] & spec.step_mask) == 0 || times[row - 1] == anchor_time) continue;
        const uint32_t type = types[row - 1];
        if (excluded[type] || (spec.collapse_repeats && type == path[length - 1])) continue;
        path[length++] = type;
      }
      std::reverse(path, path + length);
    }
    std::fill(path + length, path + stride, kPad);
    table.Add(path, static_cast<uint8_t>(length), 1);
  }
  return anchored;
}

}  // namespace

PathsResult CountPaths(const Timeline& timeline, const PathsSpec& spec, size_t threads) {
  assert(spec.steps >= 1 && spec.steps <= kMaxPathSteps && spec.max_paths >= 1 && spec.min_users >= 1);
  PathsResult result;
  const size_t stride = spec.steps + 1;
  std::vector<uint8_t> excluded(timeline.type_names.size(), 0);
  for (size_t code = 0; code < timeline.type_names.size(); ++code) {
    excluded[code] = std::find(spec.excluded_types.begin(), spec.excluded_types.end(), timeline.type_names[code]) !=
                     spec.excluded_types.end();
  }
  // Contiguous ranges of users of about equal rows, one table each.
  const size_t users = timeline.user_count();
  const size_t rows = users == 0 ? 0 : timeline.user_begin[users];
  const size_t parts = std::max<size_t>(1, std::min(std::max<size_t>(threads, 1), rows / kRowsPerPart));
  std::vector<size_t> user_bounds(parts + 1, users);
  user_bounds[0] = 0;
  for (size_t part = 1; part < parts; ++part) {
    const uint64_t row = static_cast<uint64_t>(rows) * part / parts;
    user_bounds[part] = static_cast<size_t>(
        std::lower_bound(timeline.user_begin.begin(), timeline.user_begin.begin() + users, row) -
        timeline.user_begin.begin());
  }
  std::vector<PathTable> tables(parts, PathTable(stride));
  std::vector<uint64_t> anchored(parts, 0);
  common::ParallelFor(parts, parts, [&](size_t part) {
    anchored[part] = CountRange(timeline, spec, excluded, user_bounds[part], user_bounds[part + 1], tables[part]);
  });
  PathTable& table = tables[0];
  for (size_t part = 1; part < parts; ++part) table.AddAll(tables[part]);
  for (uint64_t count : anchored) result.anchored_users += count;
  result.distinct_paths = table.size();

  std::vector<uint32_t> eligible;
  for (size_t index = 0; index < table.size(); ++index) {
    if (table.users(index) < spec.min_users) {
      ++result.suppressed_paths;
      result.suppressed_users += table.users(index);
    } else {
      eligible.push_back(static_cast<uint32_t>(index));
    }
  }
  auto ranks_before = [&](uint32_t a, uint32_t b) {
    if (table.users(a) != table.users(b)) return table.users(a) > table.users(b);
    return std::lexicographical_compare(table.key(a), table.key(a) + table.length(a), table.key(b),
                                        table.key(b) + table.length(b));
  };
  const size_t top = std::min(spec.max_paths, eligible.size());
  if (top < eligible.size()) {
    std::nth_element(eligible.begin(), eligible.begin() + top, eligible.end(), ranks_before);
    result.other_paths = eligible.size() - top;
    for (size_t rank = top; rank < eligible.size(); ++rank) result.other_users += table.users(eligible[rank]);
  }
  std::sort(eligible.begin(), eligible.begin() + top, ranks_before);
  result.top.reserve(top);
  for (size_t rank = 0; rank < top; ++rank) {
    const uint32_t index = eligible[rank];
    result.top.push_back(PathCount{std::vector<uint32_t>(table.key(index), table.key(index) + table.length(index)),
                                   table.users(index)});
  }
  return result;
}

PathGraph MakePathGraph(const PathsResult& result, const PathsSpec& spec) {
  const bool after = spec.direction == PathDirection::kAfterAnchor;
  using NodeKey = std::tuple<int, PathNodeKind, uint32_t>;  // step, kind, type
  std::map<NodeKey, uint64_t> node_users;
  std::map<std::pair<NodeKey, NodeKey>, uint64_t> link_users;
  bool one_anchor_type = true;
  for (const PathCount& path : result.top) {
    const size_t length = path.types.size();
    const int first_step = after ? 0 : -static_cast<int>(length - 1);
    std::vector<NodeKey> chain;
    const bool stopped = length - 1 < spec.steps;
    if (stopped && !after) chain.emplace_back(first_step - 1, PathNodeKind::kBoundary, 0);
    for (size_t position = 0; position < length; ++position) {
      chain.emplace_back(first_step + static_cast<int>(position), PathNodeKind::kEvent, path.types[position]);
    }
    if (stopped && after) chain.emplace_back(static_cast<int>(length), PathNodeKind::kBoundary, 0);
    for (size_t link = 0; link < chain.size(); ++link) {
      node_users[chain[link]] += path.users;
      if (link + 1 < chain.size()) link_users[{chain[link], chain[link + 1]}] += path.users;
    }
    const uint32_t anchor_type = after ? path.types.front() : path.types.back();
    one_anchor_type = one_anchor_type && anchor_type == (after ? result.top.front().types.front()
                                                                : result.top.front().types.back());
  }
  if (result.other_users > 0 && !result.top.empty() && one_anchor_type) {
    const NodeKey anchor{0, PathNodeKind::kEvent,
                         after ? result.top.front().types.front() : result.top.front().types.back()};
    const NodeKey other{after ? 1 : -1, PathNodeKind::kOther, 0};
    node_users[anchor] += result.other_users;
    node_users[other] += result.other_users;
    link_users[after ? std::pair{anchor, other} : std::pair{other, anchor}] += result.other_users;
  }
  std::vector<std::pair<NodeKey, uint64_t>> ordered(node_users.begin(), node_users.end());
  std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
    const auto& [step_a, kind_a, type_a] = a.first;
    const auto& [step_b, kind_b, type_b] = b.first;
    if (step_a != step_b) return step_a < step_b;
    if (kind_a != kind_b) return kind_a < kind_b;
    if (a.second != b.second) return a.second > b.second;
    return type_a < type_b;
  });
  PathGraph graph;
  std::map<NodeKey, uint32_t> ids;
  for (const auto& [key, users] : ordered) {
    ids[key] = static_cast<uint32_t>(graph.nodes.size());
    graph.nodes.push_back(PathNode{std::get<0>(key), std::get<1>(key), std::get<2>(key), users});
  }
  for (const auto& [ends, users] : link_users) graph.links.push_back(PathLink{ids[ends.first], ids[ends.second], users});
  std::sort(graph.links.begin(), graph.links.end(), [](const PathLink& a, const PathLink& b) {
    return std::tie(a.source, a.target) < std::tie(b.source, b.target);
  });
  return graph;
}

}  // namespace analytics::query
