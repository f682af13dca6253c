// Aggregator: compiled filters over dictionaries, one pass per batch.
#include "query/aggregator.h"
#include "query/timeline.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <map>
#include <span>
#include <cmath>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "common/parallel.h"

namespace analytics::query {

namespace {

using json = nlohmann::json;

// What a scope adds to a query's fingerprint; nothing without one (unscoped keys stay as they always were).
// Length-prefixed, so the fingerprint stays self-delimiting whatever the scope's text holds (cache keys append
// more fields after it). TimelineQuery::Fingerprint (timeline.cc) writes the same.
std::string ScopeFingerprint(const std::optional<UserScope>& scope) {
  if (!scope) return "";
  return "|scope=" + std::to_string(scope->fingerprint.size()) + ":" + scope->fingerprint;
}

// A condition compiled against one batch's column.
struct CompiledCondition {
  const PropertyColumn* column = nullptr;  // null: the property is absent from the batch (all missing)
  FilterOp op = FilterOp::kEq;
  bool negate = false;                   // ne, nin, exists:false are negations of eq, in, exists:true
  std::vector<uint8_t> string_holds;     // per column string
  std::vector<uint8_t> other_holds;      // per column array/object
  std::vector<double> numbers;           // eq/in: numeric operands; gt..lte: the bound
  bool true_holds = false;               // the row value true / false satisfies the positive condition
  bool false_holds = false;
  bool number_compare = false;           // gt..lte with a number operand

  bool Holds(size_t row) const {
    ValueKind kind = column ? column->kinds[row] : ValueKind::kMissing;
    bool positive = false;
    switch (kind) {
      case ValueKind::kMissing:
      case ValueKind::kNull:
        positive = false;
        break;
      case ValueKind::kFalse:
        positive = false_holds;
        break;
      case ValueKind::kTrue:
        positive = true_holds;
        break;
      case ValueKind::kString:
        positive = string_holds[column->codes[row]] != 0;
        break;
      case ValueKind::kOther:
        positive = other_holds[column->codes[row]] != 0;
        break;
      case ValueKind::kNumber: {
        const double x = column->numbers[row];
        if (op == FilterOp::kExists) {
          positive = true;
        } else if (number_compare) {
          const double bound = numbers.front();
          positive = op == FilterOp::kGt ? x > bound : op == FilterOp::kGte ? x >= bound : op == FilterOp::kLt ? x < bound : x <= bound;
        } else {
          positive = std::find(numbers.begin(), numbers.end(), x) != numbers.end();
        }
        break;
      }
    }
    if (op == FilterOp::kExists && kind != ValueKind::kMissing && kind != ValueKind::kNull) positive = true;
    return negate ? !positive : positive;
  }
};

bool CompareStrings(FilterOp op, const std::string& a, const std::string& b) {
  switch (op) {
    case FilterOp::kGt: return a > b;
    case FilterOp::kGte: return a >= b;
    case FilterOp::kLt: return a < b;
    case FilterOp::kLte: return a <= b;
    default: return false;
  }
}

CompiledCondition Compile(const PropertyFilter& filter, const EventBatch& batch) {
  CompiledCondition compiled;
  auto it = batch.properties.find(filter.property);
  compiled.column = it == batch.properties.end() ? nullptr : &it->second;
  FilterOp op = filter.op;
  json operands = filter.value;
  if (op == FilterOp::kNe) {
    op = FilterOp::kEq;
    compiled.negate = true;
  } else if (op == FilterOp::kNin) {
    op = FilterOp::kIn;
    compiled.negate = true;
  } else if (op == FilterOp::kExists && filter.value.is_boolean() && !filter.value.get<bool>()) {
    compiled.negate = true;
  }
  compiled.op = op;
  if (op == FilterOp::kEq) operands = json::array({filter.value});
  const PropertyColumn* column = compiled.column;
  const size_t strings = column ? column->strings.size() : 0;
  const size_t others = column ? column->others.size() : 0;
  compiled.string_holds.assign(strings, 0);
  compiled.other_holds.assign(others, 0);
  switch (op) {
    case FilterOp::kEq:
    case FilterOp::kIn:
      for (const json& operand : operands) {
        if (operand.is_number()) compiled.numbers.push_back(operand.get<double>());
        if (operand.is_boolean()) (operand.get<bool>() ? compiled.true_holds : compiled.false_holds) = true;
        if (operand.is_string()) {
          const std::string& text = operand.get_ref<const std::string&>();
          for (size_t idx = 0; idx < strings; ++idx) {
            if (column->strings[idx] == text) compiled.string_holds[idx] = 1;
          }
        }
      }
      break;
    case FilterOp::kGt:
    case FilterOp::kGte:
    case FilterOp::kLt:
    case FilterOp::kLte:
      if (filter.value.is_number()) {
        compiled.number_compare = true;
        compiled.numbers.push_back(filter.value.get<double>());
      } else if (filter.value.is_string()) {
        compiled.number_compare = false;
        compiled.numbers.clear();
        for (size_t idx = 0; idx < strings; ++idx) {
          compiled.string_holds[idx] = CompareStrings(op, column->strings[idx], filter.value.get<std::string>());
        }
        // Numbers never compare with a string operand: an empty list makes kNumber rows false.
      }
      break;
    case FilterOp::kContains: {
      const std::string needle = filter.value.is_string() ? filter.value.get<std::string>() : std::string();
      for (size_t idx = 0; idx < strings; ++idx) {
        compiled.string_holds[idx] = column->strings[idx].find(needle) != std::string::npos;
      }
      for (size_t idx = 0; idx < others; ++idx) {
        const json parsed = json::parse(column->others[idx], nullptr, false);
        if (!parsed.is_array()) continue;
        for (const json& element : parsed) {
          if (element == filter.value) {
            compiled.other_holds[idx] = 1;
            break;
          }
        }
      }
      break;
    }
    case FilterOp::kExists:
    case FilterOp::kNe:
    case FilterOp::kNin:
      break;
  }
  return compiled;
}

// The compiled tree of FilterExpr.
struct CompiledFilter {
  FilterExpr::Kind kind = FilterExpr::Kind::kTrue;
  CompiledCondition condition;
  std::vector<CompiledFilter> children;

  bool Holds(size_t row) const {
    switch (kind) {
      case FilterExpr::Kind::kTrue:
        return true;
      case FilterExpr::Kind::kCondition:
        return condition.Holds(row);
      case FilterExpr::Kind::kAnd:
        for (const auto& child : children) {
          if (!child.Holds(row)) return false;
        }
        return true;
      case FilterExpr::Kind::kOr:
        for (const auto& child : children) {
          if (child.Holds(row)) return true;
        }
        return false;
    }
    return true;
  }
};

CompiledFilter CompileFilter(const FilterExpr& expr, const EventBatch& batch) {
  CompiledFilter compiled;
  compiled.kind = expr.kind;
  if (expr.kind == FilterExpr::Kind::kCondition) compiled.condition = Compile(expr.condition, batch);
  for (const auto& child : expr.children) compiled.children.push_back(CompileFilter(child, batch));
  return compiled;
}

std::optional<std::string> GroupValue(const PropertyColumn* column, size_t row) {
  if (column == nullptr) return std::nullopt;
  switch (column->kinds[row]) {
    case ValueKind::kMissing:
    case ValueKind::kNull:
      return std::nullopt;
    case ValueKind::kFalse:
      return "false";
    case ValueKind::kTrue:
      return "true";
    case ValueKind::kNumber:
      return FormatNumber(column->numbers[row]);
    case ValueKind::kString:
      return column->strings[column->codes[row]];
    case ValueKind::kOther:
      return column->others[column->codes[row]];
  }
  return std::nullopt;
}

}  // namespace

std::string FormatNumber(double value) {
  if (std::isfinite(value) && value == std::trunc(value) && std::fabs(value) < 9.007199254740992e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return ec == std::errc() ? std::string(buffer, end) : std::string("null");
}

std::optional<double> Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const double h = static_cast<double>(values.size() - 1) * p / 100.0;
  const size_t lower = static_cast<size_t>(std::floor(h));
  if (lower + 1 >= values.size()) return values.back();
  return values[lower] + (h - std::floor(h)) * (values[lower + 1] - values[lower]);
}

void AggregateCell::MergeUsersAndValues(const AggregateCell& other) {
  users |= other.users;
  values.insert(values.end(), other.values.begin(), other.values.end());
}

AggregateCell AggregateCell::MergeAll(std::span<const AggregateCell* const> cells) {
  AggregateCell out;
  std::vector<const UserSet*> users;
  for (const AggregateCell* cell : cells) {
    out.MergeNumbers(*cell);
    out.values.insert(out.values.end(), cell->values.begin(), cell->values.end());
    if (!cell->users.empty()) users.push_back(&cell->users);
  }
  if (users.size() == 1) out.users = *users.front();
  if (users.size() > 1) out.users = UserSet::UnionAll(users);
  return out;
}

void AggregateCell::MergeColumns(std::span<const std::vector<AggregateCell>* const> rows, size_t from, size_t to,
                                 std::span<AggregateCell> out) {
  for (auto& cell : out.first(to - from)) cell = AggregateCell();
  std::vector<std::vector<const UserSet*>> users;  // per column, when any row has users there
  for (const std::vector<AggregateCell>* row : rows) {
    for (size_t column = from; column < to && column < row->size(); ++column) {
      const AggregateCell& cell = (*row)[column];
      AggregateCell& target = out[column - from];
      target.MergeNumbers(cell);
      if (!cell.values.empty()) target.values.insert(target.values.end(), cell.values.begin(), cell.values.end());
      if (!cell.users.empty()) {
        if (users.empty()) users.resize(to - from);
        users[column - from].push_back(&cell.users);
      }
    }
  }
  for (size_t column = 0; column < users.size(); ++column) {
    if (users[column].size() == 1) out[column].users = *users[column].front();
    if (users[column].size() > 1) out[column].users = UserSet::UnionAll(users[column]);
  }
}

void UserSet::add(uint32_t user) {
  if (bits_) return bits_->add(user);
  Normalize();
  auto it = std::lower_bound(small_.begin(), small_.end(), user);
  if (it != small_.end() && *it == user) return;
  small_.insert(it, user);
  if (small_.size() > kSmallMax) Promote();
}

void UserSet::Normalize() {
  if (unsorted_) {
    std::sort(small_.begin(), small_.end());
    small_.erase(std::unique(small_.begin(), small_.end()), small_.end());
    unsorted_ = false;
  }
  if (small_.size() > kSmallMax) Promote();
}

void UserSet::Promote() {
  if (!bits_) bits_ = std::make_unique<Roaring>();
  bits_->addMany(small_.size(), small_.data());
  small_.clear();
  small_.shrink_to_fit();
}

UserSet& UserSet::operator|=(const UserSet& other) {
  if (other.empty()) return *this;
  if (other.bits_) {
    if (!bits_) {
      auto merged = std::make_unique<Roaring>(*other.bits_);
      merged->addMany(small_.size(), small_.data());
      small_.clear();
      bits_ = std::move(merged);
    } else {
      *bits_ |= *other.bits_;
    }
    return *this;
  }
  if (bits_) {
    bits_->addMany(other.small_.size(), other.small_.data());
    return *this;
  }
  std::vector<uint32_t> merged;
  merged.reserve(small_.size() + other.small_.size());
  std::set_union(small_.begin(), small_.end(), other.small_.begin(), other.small_.end(), std::back_inserter(merged));
  small_ = std::move(merged);
  if (small_.size() > kSmallMax) Promote();
  return *this;
}

UserSet& UserSet::operator|=(const Roaring& other) {
  if (other.isEmpty()) return *this;
  if (!bits_ && small_.size() + other.cardinality() <= kSmallMax) {
    std::vector<uint32_t> ids(other.cardinality());
    other.toUint32Array(ids.data());
    UserSet from;
    from.small_ = std::move(ids);
    return *this |= from;
  }
  if (!bits_) {
    bits_ = std::make_unique<Roaring>(other);
    bits_->addMany(small_.size(), small_.data());
    small_.clear();
  } else {
    *bits_ |= other;
  }
  return *this;
}

Roaring UserSet::ToRoaring() const {
  if (bits_) return *bits_;
  Roaring out;
  out.addMany(small_.size(), small_.data());
  return out;
}

uint64_t UserSet::UnionCardinality(const UserSet& a, const UserSet& b) {
  if (a.bits_ && b.bits_) return a.bits_->or_cardinality(*b.bits_);
  const UserSet* both[] = {&a, &b};
  return UnionAll(both).cardinality();
}

void UserSet::AddTo(Roaring& target) const {
  if (bits_) {
    target |= *bits_;
  } else {
    target.addMany(small_.size(), small_.data());
  }
}

bool UserSet::operator==(const UserSet& other) const {
  if (!bits_ && !other.bits_) return small_ == other.small_;
  return ToRoaring() == other.ToRoaring();
}

namespace {

// The sorted union of sorted runs of ids. Many ids over a small id range (the users of thousands of cells) go
// through a bitset of the range: one pass over the ids and one over the words. Otherwise the runs are merged
// pairwise, log2(runs) passes.
std::vector<uint32_t> UnionOfRuns(const std::vector<const std::vector<uint32_t>*>& runs, size_t total, uint32_t max_id) {
  std::vector<uint32_t> ids;
  ids.reserve(total);
  if (runs.size() > 8 && total >= max_id / 32) {
    std::vector<uint64_t> words(max_id / 64 + 1, 0);
    for (const auto* run : runs) {
      for (uint32_t id : *run) words[id / 64] |= uint64_t{1} << (id % 64);
    }
    for (size_t word_idx = 0; word_idx < words.size(); ++word_idx) {
      for (uint64_t word = words[word_idx]; word != 0; word &= word - 1) {
        ids.push_back(static_cast<uint32_t>(word_idx * 64 + static_cast<size_t>(__builtin_ctzll(word))));
      }
    }
    return ids;
  }
  std::vector<size_t> ends;  // run r is ids[r == 0 ? 0 : ends[r - 1], ends[r])
  for (const auto* run : runs) {
    ids.insert(ids.end(), run->begin(), run->end());
    ends.push_back(ids.size());
  }
  std::vector<uint32_t> spare(ids.size());
  while (ends.size() > 1) {
    std::vector<size_t> merged_ends;
    size_t begin = 0;
    for (size_t run = 0; run < ends.size(); run += 2) {
      const size_t middle = ends[run], end = run + 1 < ends.size() ? ends[run + 1] : middle;
      std::merge(ids.begin() + begin, ids.begin() + middle, ids.begin() + middle, ids.begin() + end,
                 spare.begin() + begin);
      merged_ends.push_back(end);
      begin = end;
    }
    ids.swap(spare);
    ends = std::move(merged_ends);
  }
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace

UserSet UserSet::UnionAll(std::span<const UserSet* const> sets) {
  std::vector<const Roaring*> bitmaps;
  std::vector<const std::vector<uint32_t>*> runs;
  size_t small_ids = 0;
  uint32_t max_id = 0;
  for (const UserSet* set : sets) {
    if (set->bits_) bitmaps.push_back(set->bits_.get());
    if (set->small_.empty()) continue;
    runs.push_back(&set->small_);
    small_ids += set->small_.size();
    max_id = std::max(max_id, set->small_.back());
  }
  UserSet out;
  if (!runs.empty()) out.small_ = runs.size() == 1 ? *runs.front() : UnionOfRuns(runs, small_ids, max_id);
  if (bitmaps.empty()) {
    out.Normalize();  // to a bitmap when it has grown past kSmallMax
    return out;
  }
  // The small sets' users as one more bitmap (built from sorted ids: container by container).
  Roaring from_small;
  if (!out.small_.empty()) {
    from_small.addMany(out.small_.size(), out.small_.data());
    bitmaps.push_back(&from_small);
    out.small_ = std::vector<uint32_t>();
  }
  // The multi-way union of bitmaps turns every container it meets into an 8 KiB bitset before it counts: a
  // win for dense containers (the users of a big game over a month), a loss of an order of magnitude for sparse
  // ones, which pairwise unions keep as small sorted arrays.
  if (bitmaps.size() == 1) {
    out.bits_ = std::make_unique<Roaring>(*bitmaps.front());
    return out;
  }
  uint64_t cardinality = 0;
  uint32_t containers = 1;
  for (const Roaring* bitmap : bitmaps) {
    cardinality += bitmap->cardinality();
    containers = std::max<uint32_t>(containers, bitmap->roaring.high_low_container.size);
  }
  if (cardinality >= uint64_t{containers} * 4096) {
    out.bits_ = std::make_unique<Roaring>(Roaring::fastunion(bitmaps.size(), bitmaps.data()));
  } else {
    out.bits_ = std::make_unique<Roaring>(*bitmaps.front());
    for (size_t bitmap_idx = 1; bitmap_idx < bitmaps.size(); ++bitmap_idx) *out.bits_ |= *bitmaps[bitmap_idx];
  }
  return out;
}

uint64_t AggregateCell::MemoryBytes() const {
  return sizeof(AggregateCell) + users.getSizeInBytes() + values.capacity() * sizeof(double);
}

void AggregateResult::Merge(const AggregateResult& other, size_t offset, size_t buckets) {
  // Both maps are ordered: when `other` is not much smaller, walking this one along it costs fewer key
  // comparisons than a search per key.
  const bool walk = other.groups.size() * 8 >= groups.size();
  auto hint = groups.begin();
  for (const auto& [key, cells] : other.groups) {
    decltype(groups)::iterator it;
    bool inserted = false;
    if (walk) {
      while (hint != groups.end() && hint->first < key) ++hint;
      inserted = hint == groups.end() || key < hint->first;
      it = inserted ? groups.emplace_hint(hint, key, std::vector<AggregateCell>()) : hint;
      hint = std::next(it);
    } else {
      std::tie(it, inserted) = groups.try_emplace(key);
    }
    if (inserted) {
      if (offset == 0 && (buckets == 0 || buckets == cells.size())) {
        it->second = cells;
        continue;
      }
      it->second.resize(buckets == 0 ? cells.size() : buckets);
    }
    for (size_t bucket = 0; bucket < cells.size() && offset + bucket < it->second.size(); ++bucket) {
      it->second[offset + bucket].Merge(cells[bucket]);
    }
  }
  newest_event_ms = std::max(newest_event_ms, other.newest_event_ms);
  rows_read += other.rows_read;
}

PackedResult Pack(AggregateResult result) {
  PackedResult packed;
  packed.newest_event_ms = result.newest_event_ms;
  packed.rows_read = result.rows_read;
  const bool single_strings = std::all_of(result.groups.begin(), result.groups.end(), [&](const auto& group) {
    return group.first.size() == 1 && group.first.front().has_value() &&
           group.second.size() == result.groups.begin()->second.size();
  });
  if (!single_strings || result.groups.empty()) {
    packed.generic = std::move(result);
    return packed;
  }
  packed.packed = true;
  packed.width = result.groups.begin()->second.size();
  packed.cells.reserve(result.groups.size() * packed.width);
  for (auto& [key, cells] : result.groups) {
    const std::string& value = *key.front();
    packed.keys += value;
    packed.key_ends.push_back(static_cast<uint32_t>(packed.keys.size()));
    for (auto& cell : cells) packed.cells.push_back(std::move(cell));
  }
  return packed;
}

uint64_t PackedResult::MemoryBytes() const {
  uint64_t bytes = sizeof(PackedResult) + keys.capacity() + key_ends.capacity() * sizeof(uint32_t);
  for (const auto& cell : cells) bytes += cell.MemoryBytes();
  for (const auto& [key, group_cells] : generic.groups) {
    bytes += 64;
    for (const auto& part : key) bytes += part ? part->size() + 32 : 32;
    for (const auto& cell : group_cells) bytes += cell.MemoryBytes();
  }
  return bytes;
}

namespace {

// Group ordinals by single-string key (MergeResults meets each group once per partial): open addressing over
// (hash, text). A text of up to 16 bytes (the short ids groups mostly are: "game_1042", "RU") is read as two
// words, which are its hash's input and compare in its slot without reading the text again. The words are
// loaded whole (overlapping when shorter than 16 bytes): a copy of n bytes into zeroed words stalls the loads
// that read them back.
class TextOrdinals {
 public:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
  struct Probe {
    std::string_view text;
    uint64_t words[2] = {0, 0};  // texts of up to 16 bytes: all their bytes (with the size, they name the text)
    uint64_t hash = 0;
  };
  static Probe ProbeOf(std::string_view text) {
    Probe probe{text};
    if (text.size() > kWordBytes) {
      probe.hash = std::hash<std::string_view>()(text);
    } else {
      GroupIndex::ShortTextWords(text, probe.words);
      probe.hash = GroupIndex::HashWords(probe.words, text.size());
    }
    return probe;
  }
  uint32_t Find(const Probe& probe) const {
    if (slots_.empty()) return kNone;
    for (size_t slot = probe.hash & (slots_.size() - 1);; slot = (slot + 1) & (slots_.size() - 1)) {
      const Slot& entry = slots_[slot];
      if (entry.ordinal == kNone) return kNone;
      if (entry.probe.hash == probe.hash && entry.probe.text.size() == probe.text.size() &&
          entry.probe.words[0] == probe.words[0] && entry.probe.words[1] == probe.words[1] &&
          (probe.text.size() <= kWordBytes || entry.probe.text == probe.text)) {
        return entry.ordinal;
      }
    }
  }
  // The probe's text must outlive the table; it must not be in it yet.
  void Insert(const Probe& probe, uint32_t ordinal) {
    if ((used_ + 1) * 2 > slots_.size()) {
      std::vector<Slot> old = std::move(slots_);
      slots_.assign(std::max<size_t>(256, old.size() * 2), Slot());
      used_ = 0;
      for (const Slot& entry : old) {
        if (entry.ordinal != kNone) Place(entry);
      }
    }
    Place({probe, ordinal});
  }

 private:
  static constexpr size_t kWordBytes = GroupIndex::kShortText;
  struct Slot {
    Probe probe;
    uint32_t ordinal = kNone;
  };
  void Place(const Slot& entry) {
    size_t slot = entry.probe.hash & (slots_.size() - 1);
    while (slots_[slot].ordinal != kNone) slot = (slot + 1) & (slots_.size() - 1);
    slots_[slot] = entry;
    ++used_;
  }
  std::vector<Slot> slots_;  // a power of two, at most half full
  size_t used_ = 0;
};

// Below this many source cells per thread, merging costs less than starting a thread.
constexpr size_t kSourcesPerMergeThread = 32768;

}  // namespace

void MergeResults(AggregateResult& out, const std::vector<PartialRef>& partials, size_t buckets, size_t threads) {
  // 1. The groups: numbered in the order first met; single-string keys found by their text (a TextOrdinals of
  // views of the partials' keys, which stay put), other keys through a map. Their cells are filled in step 3.
  TextOrdinals by_text;
  std::map<GroupKey, uint32_t> by_key;
  std::vector<std::vector<AggregateCell>*> groups;
  auto add_group = [&](GroupKey key) {
    // Only keys not met before come here, mostly ascending (a partial's keys ascend): the end is the usual hint.
    auto group = out.groups.emplace_hint(out.groups.end(), std::move(key), std::vector<AggregateCell>());
    groups.push_back(&group->second);
    return static_cast<uint32_t>(groups.size() - 1);
  };
  auto ordinal_of_text = [&](std::string_view value) {
    const TextOrdinals::Probe probe = TextOrdinals::ProbeOf(value);
    if (const uint32_t found = by_text.Find(probe); found != TextOrdinals::kNone) return found;
    const uint32_t ordinal = add_group(GroupKey{std::string(value)});
    by_text.Insert(probe, ordinal);
    return ordinal;
  };
  auto ordinal_of_key = [&](const GroupKey& key) {
    if (key.size() == 1 && key.front()) return ordinal_of_text(*key.front());
    if (auto it = by_key.find(key); it != by_key.end()) return it->second;
    const uint32_t ordinal = add_group(key);
    by_key.emplace(key, ordinal);
    return ordinal;
  };
  // Per partial: its cells as (group ordinal, first cell, width), in its order.
  struct Span {
    uint32_t group;
    const AggregateCell* cells;
    size_t width;
    size_t offset;
  };
  std::vector<Span> spans;
  size_t span_count = 0;
  for (const PartialRef& ref : partials) {
    span_count += ref.partial->packed ? ref.partial->key_ends.size() : ref.partial->generic.groups.size();
  }
  spans.reserve(span_count);
  for (const PartialRef& ref : partials) {
    const PackedResult& partial = *ref.partial;
    if (partial.packed) {
      for (size_t group_idx = 0; group_idx < partial.key_ends.size(); ++group_idx) {
        const uint32_t begin = group_idx == 0 ? 0 : partial.key_ends[group_idx - 1];
        const std::string_view value(partial.keys.data() + begin, partial.key_ends[group_idx] - begin);
        spans.push_back({ordinal_of_text(value), partial.cells.data() + group_idx * partial.width, partial.width,
                         ref.offset});
      }
    } else {
      for (const auto& [key, cells] : partial.generic.groups) {
        spans.push_back({ordinal_of_key(key), cells.data(), cells.size(), ref.offset});
      }
    }
    out.newest_event_ms = std::max(out.newest_event_ms, partial.newest_event_ms);
    out.rows_read += partial.rows_read;
  }
  if (buckets == 0) return;
  // 2. The cells each output cell merges, in partial order (a counting sort by output cell).
  const size_t cells = groups.size() * buckets;
  std::vector<uint32_t> starts(cells + 1, 0);
  auto each_source = [&](auto&& visit) {
    for (const Span& span : spans) {
      const size_t first = size_t{span.group} * buckets + span.offset;
      const size_t width = span.offset < buckets ? std::min(span.width, buckets - span.offset) : 0;
      for (size_t bucket = 0; bucket < width; ++bucket) visit(first + bucket, span.cells + bucket);
    }
  };
  each_source([&](size_t cell, const AggregateCell*) { ++starts[cell + 1]; });
  for (size_t cell = 0; cell < cells; ++cell) starts[cell + 1] += starts[cell];
  std::vector<const AggregateCell*> sources(starts[cells]);
  {
    std::vector<uint32_t> next(starts.begin(), starts.end() - 1);
    each_source([&](size_t cell, const AggregateCell* source) { sources[next[cell]++] = source; });
  }
  // 3. Each output cell from its sources, written once (not cleared first, then merged into); groups split
  // among the threads.
  auto merge_groups = [&](size_t first_group, size_t end_group) {
    for (size_t group = first_group; group < end_group; ++group) {
      std::vector<AggregateCell>& row = *groups[group];
      row.reserve(buckets);
      for (size_t bucket = 0; bucket < buckets; ++bucket) {
        const size_t cell = group * buckets + bucket;
        const std::span<const AggregateCell* const> from(sources.data() + starts[cell], starts[cell + 1] - starts[cell]);
        if (from.size() > 1) {
          row.push_back(AggregateCell::MergeAll(from));
        } else {
          row.emplace_back();
          if (from.size() == 1) row.back().Merge(*from.front());  // as MergeAll would: 0 + -0 is 0
        }
      }
    }
  };
  threads = std::clamp<size_t>(threads, 1, std::max<size_t>(1, sources.size() / kSourcesPerMergeThread));
  common::ParallelFor(threads, threads, [&](size_t part) {
    merge_groups(groups.size() * part / threads, groups.size() * (part + 1) / threads);
  });
}

void PropertyColumn::Resize(size_t rows) {
  kinds.assign(rows, ValueKind::kMissing);
  numbers.assign(rows, 0);
  codes.assign(rows, 0);
}

uint32_t PropertyColumn::Intern(std::string_view text, std::map<std::string, uint32_t, std::less<>>& index) {
  auto it = index.find(text);
  if (it != index.end()) return it->second;
  const auto code = static_cast<uint32_t>(strings.size());
  strings.emplace_back(text);
  index.emplace(std::string(text), code);
  return code;
}

std::string AggregateQuery::Fingerprint() const {
  json weights_json = json::object();
  for (const auto& [type, weight] : weights) weights_json[type] = weight;
  return json{{"types", event_types},        {"weights", weights_json},
              {"filter", filter.ToString()}, {"group_by", group_by},
              {"value", value_property},     {"users", collect_users},
              {"values", collect_values}}
             .dump() +
         ScopeFingerprint(scope);
}

void Aggregate(const AggregateQuery& query, const EventBatch& batch, AggregateResult& out, GroupIndex* index) {
  if (batch.rows == 0 || query.bounds.size() < 2) return;
  if (batch.max_time_ms < query.bounds.front() || batch.min_time_ms >= query.bounds.back()) return;
  const size_t buckets = query.bounds.size() - 1;
  // Types: which are read, with which weight.
  std::vector<uint8_t> type_read(batch.types.size(), query.event_types.empty() ? 1 : 0);
  std::vector<double> type_weight(batch.types.size(), 1.0);
  for (size_t type_idx = 0; type_idx < batch.types.size(); ++type_idx) {
    const std::string& type = batch.types[type_idx];
    if (!query.event_types.empty()) {
      type_read[type_idx] =
          std::find(query.event_types.begin(), query.event_types.end(), type) != query.event_types.end();
    }
    if (auto it = query.weights.find(type); it != query.weights.end()) type_weight[type_idx] = it->second;
  }
  if (std::none_of(type_read.begin(), type_read.end(), [](uint8_t read) { return read != 0; })) return;
  const CompiledFilter filter = CompileFilter(query.filter, batch);
  const bool filter_trivial = query.filter.IsTrue();
  std::vector<const PropertyColumn*> group_columns;
  for (const auto& path : query.group_by) {
    auto it = batch.properties.find(path);
    group_columns.push_back(it == batch.properties.end() ? nullptr : &it->second);
  }
  const PropertyColumn* value_column = nullptr;
  if (!query.value_property.empty()) {
    auto it = batch.properties.find(query.value_property);
    if (it != batch.properties.end()) value_column = &it->second;
  }
  // One bucket for the whole batch when it lies inside one (segments are day partitions).
  int64_t fixed_bucket = -1;
  {
    auto upper = std::upper_bound(query.bounds.begin(), query.bounds.end(), batch.min_time_ms);
    if (upper != query.bounds.begin() && upper != query.bounds.end() && batch.max_time_ms < *upper) {
      fixed_bucket = upper - query.bounds.begin() - 1;
    }
  }
  // Groups interned per batch: the row's group values → a local index → the result's cells. Grouping by one
  // string property (game_id, country), a row's dictionary code finds its cells directly.
  std::unordered_map<std::string, std::vector<AggregateCell>*> local_groups;
  const PropertyColumn* single_strings =
      group_columns.size() == 1 && group_columns.front() != nullptr ? group_columns.front() : nullptr;
  std::vector<std::vector<AggregateCell>*> string_groups(single_strings ? single_strings->strings.size() : 0, nullptr);
  std::vector<AggregateCell>* ungrouped = nullptr;
  if (query.group_by.empty()) {
    auto [it, inserted] = out.groups.try_emplace(GroupKey{});
    if (inserted) it->second.resize(buckets);
    ungrouped = &it->second;
  }
  // A batch without users (none were read) counts none.
  const bool collect_users = query.collect_users && batch.users.size() == batch.rows;
  std::string key_bytes;
  AggregateCell* last_user_cell = nullptr;
  uint32_t last_user = kNoUser;
  std::vector<AggregateCell*> unsorted;  // cells whose users were appended out of order: sorted at the end
  uint64_t rows_read = 0;
  // The cells of a batch's rows are scattered over the result (a group's buckets lie together, a bucket's
  // groups do not), so rows are resolved to their cells a chunk at a time, and the chunk is then added with
  // the cells of the rows a few ahead prefetched, in row order.
  constexpr size_t kChunkRows = 256, kAhead = 6;
  struct Resolved {
    uint32_t row;
    AggregateCell* cell;
  };
  Resolved chunk[kChunkRows];
  size_t filled = 0;
  auto add_chunk = [&] {
    for (size_t chunk_idx = 0; chunk_idx < filled; ++chunk_idx) {
      if (chunk_idx + kAhead < filled) {
        __builtin_prefetch(chunk[chunk_idx + kAhead].cell);
        __builtin_prefetch(reinterpret_cast<const char*>(chunk[chunk_idx + kAhead].cell) + 64);
      }
      const size_t row = chunk[chunk_idx].row;
      AggregateCell& cell = *chunk[chunk_idx].cell;
      const double weight = type_weight[batch.type_codes[row]];
      cell.weighted_count += weight;
      if (value_column != nullptr && value_column->kinds[row] == ValueKind::kNumber) {
        const double value = value_column->numbers[row];
        cell.weighted_sum += weight * value;
        cell.value_sum += value;
        ++cell.value_count;
        cell.min = std::min(cell.min, value);
        cell.max = std::max(cell.max, value);
        if (query.collect_values) cell.values.push_back(value);
      }
      if (collect_users) {
        const uint32_t user = batch.users[row];
        if (user != kNoUser && (user != last_user || &cell != last_user_cell)) {
          if (cell.users.AppendUnsorted(user)) unsorted.push_back(&cell);
          last_user = user;
          last_user_cell = &cell;
        }
      }
      out.newest_event_ms = std::max(out.newest_event_ms, batch.time_ms[row]);
    }
    rows_read += filled;
    filled = 0;
  };
  for (size_t row = 0; row < batch.rows; ++row) {
    const uint32_t type_code = batch.type_codes[row];
    if (!type_read[type_code]) continue;
    const int64_t time = batch.time_ms[row];
    int64_t bucket = fixed_bucket;
    if (bucket < 0) {
      if (time < query.bounds.front() || time >= query.bounds.back()) continue;
      bucket = std::upper_bound(query.bounds.begin(), query.bounds.end(), time) - query.bounds.begin() - 1;
    }
    if (!filter_trivial && !filter.Holds(row)) continue;
    std::vector<AggregateCell>* cells = ungrouped;
    if (cells == nullptr) {
      std::vector<AggregateCell>** by_code = nullptr;
      if (single_strings != nullptr && single_strings->kinds[row] == ValueKind::kString) {
        by_code = &string_groups[single_strings->codes[row]];
        cells = *by_code;
      }
      if (cells == nullptr && by_code != nullptr && index != nullptr) {
        cells = *by_code = index->Find(single_strings->strings[single_strings->codes[row]]);
      }
      if (cells == nullptr) {
        key_bytes.clear();
        for (const PropertyColumn* column : group_columns) {
          const ValueKind kind = column ? column->kinds[row] : ValueKind::kMissing;
          key_bytes.push_back(static_cast<char>(kind == ValueKind::kNull ? ValueKind::kMissing : kind));
          uint64_t payload = 0;
          if (kind == ValueKind::kString || kind == ValueKind::kOther) payload = column->codes[row];
          if (kind == ValueKind::kNumber) std::memcpy(&payload, &column->numbers[row], sizeof(payload));
          key_bytes.append(reinterpret_cast<const char*>(&payload), sizeof(payload));
        }
        auto it = local_groups.find(key_bytes);
        if (it == local_groups.end()) {
          GroupKey key;
          for (const PropertyColumn* column : group_columns) key.push_back(GroupValue(column, row));
          auto [group, inserted] = out.groups.try_emplace(std::move(key));
          if (inserted) group->second.resize(buckets);
          it = local_groups.emplace(key_bytes, &group->second).first;
          if (by_code != nullptr && index != nullptr && group->first.front().has_value()) {
            index->Insert(*group->first.front(), &group->second);  // the map's key: it stays put
          }
        }
        cells = it->second;
        if (by_code != nullptr) *by_code = cells;
      }
    }
    chunk[filled++] = {static_cast<uint32_t>(row), cells->data() + bucket};
    if (filled == kChunkRows) add_chunk();
  }
  add_chunk();
  for (AggregateCell* cell : unsorted) cell->users.Normalize();
  out.rows_read += rows_read;
}

}  // namespace analytics::query



namespace analytics::query {

std::string SessionQuery::Fingerprint() const {
  return json{{"start", start_type}, {"end", end_type}, {"key", key_property}, {"filter", filter.ToString()},
              {"group_by", group_by}}
             .dump() +
         ScopeFingerprint(scope);
}

uint64_t SessionMarks::MemoryBytes() const {
  uint64_t bytes = sizeof(SessionMarks) + marks.capacity() * sizeof(Mark);
  for (const GroupKey& group : groups) {
    bytes += sizeof(GroupKey) + group.capacity() * sizeof(std::optional<std::string>);
    for (const auto& value : group) bytes += value ? value->capacity() : 0;
  }
  return bytes;
}

namespace {

XXH128_hash_t KeyHash(std::string_view text) { return XXH3_128bits(text.data(), text.size()); }

void SetKeyHash(const XXH128_hash_t& hash, SessionMarks::Mark& mark) {
  mark.hash = hash.high64;
  mark.hash_low = hash.low64;
}

}  // namespace

void SessionMarksBuilder::Add(const EventBatch& batch) {
  enum Role : uint8_t { kOther, kStart, kEnd };
  std::vector<uint8_t> roles(batch.types.size(), kOther);
  bool any = false;
  for (size_t type_idx = 0; type_idx < batch.types.size(); ++type_idx) {
    if (batch.types[type_idx] == query_.start_type) roles[type_idx] = kStart;
    if (batch.types[type_idx] == query_.end_type) roles[type_idx] = kEnd;
    any = any || roles[type_idx] != kOther;
  }
  auto keys_it = batch.properties.find(query_.key_property);
  if (!any || batch.rows == 0 || keys_it == batch.properties.end()) return;
  const PropertyColumn& keys = keys_it->second;
  const CompiledFilter filter = CompileFilter(query_.filter, batch);
  std::vector<const PropertyColumn*> group_columns;
  for (const auto& path : query_.group_by) {
    auto it = batch.properties.find(path);
    group_columns.push_back(it == batch.properties.end() ? nullptr : &it->second);
  }
  // Key hashes and groups are computed once per dictionary code of the batch (session keys and game ids are
  // strings).
  constexpr uint32_t kUnknown = std::numeric_limits<uint32_t>::max();
  struct CodeHash {
    XXH128_hash_t hash{};
    bool known = false;
  };
  std::vector<CodeHash> string_hashes(keys.strings.size()), other_hashes(keys.others.size());
  const PropertyColumn* single = group_columns.size() == 1 ? group_columns.front() : nullptr;
  std::vector<uint32_t> string_groups(single != nullptr ? single->strings.size() : 0, kUnknown);
  auto group_of = [&](size_t row) -> uint32_t {
    const bool by_code = single != nullptr && single->kinds[row] == ValueKind::kString;
    if (by_code && string_groups[single->codes[row]] != kUnknown) return string_groups[single->codes[row]];
    GroupKey group;
    for (const PropertyColumn* column : group_columns) group.push_back(GroupValue(column, row));
    auto [it, inserted] = group_index_.try_emplace(std::move(group), static_cast<uint32_t>(out_.groups.size()));
    if (inserted) out_.groups.push_back(it->first);
    if (by_code) string_groups[single->codes[row]] = it->second;
    return it->second;
  };
  auto by_code = [&](const std::vector<std::string>& texts, std::vector<CodeHash>& hashes, uint32_t code,
                     SessionMarks::Mark& mark) {
    CodeHash& known = hashes[code];
    if (!known.known) known = {KeyHash(texts[code]), true};
    SetKeyHash(known.hash, mark);
  };
  for (size_t row = 0; row < batch.rows; ++row) {
    const uint8_t role = roles[batch.type_codes[row]];
    if (role == kOther) continue;
    SessionMarks::Mark mark;
    switch (keys.kinds[row]) {
      case ValueKind::kMissing:
      case ValueKind::kNull:
        continue;
      case ValueKind::kString:
        by_code(keys.strings, string_hashes, keys.codes[row], mark);
        break;
      case ValueKind::kOther:
        by_code(keys.others, other_hashes, keys.codes[row], mark);
        break;
      default:
        SetKeyHash(KeyHash(*GroupValue(&keys, row)), mark);
        break;
    }
    if (role == kStart) {
      if (!filter.Holds(row)) continue;
      mark.group = group_of(row);
    }
    mark.time_ms = batch.time_ms[row];
    mark.user = row < batch.users.size() ? batch.users[row] : kNoUser;
    out_.marks.push_back(mark);
  }
}

SessionMarks SessionMarksBuilder::Finish() {
  group_index_.clear();
  return std::move(out_);
}

// ---- TimelineBuilder ----------------------------------------------------------------------------------------

TimelineBuilder::TimelineBuilder(const TimelineQuery& query) : query_(query), key_index_(query.keys.size()) {
  out_.keys.resize(query.keys.size());
  out_.key_values.resize(query.keys.size());
}

void TimelineBuilder::Add(const EventBatch& batch) {
  if (batch.rows == 0 || batch.users.empty()) return;
  // Per batch type: the selectors its type satisfies, and the part's code of the type.
  const size_t selectors = query_.selectors.size();
  std::vector<uint32_t> type_selectors(batch.types.size(), 0);
  std::vector<uint32_t> type_codes(batch.types.size(), 0);
  bool any = false;
  for (size_t type_idx = 0; type_idx < batch.types.size(); ++type_idx) {
    const std::string& type = batch.types[type_idx];
    for (size_t selector_idx = 0; selector_idx < selectors; ++selector_idx) {
      const auto& types = query_.selectors[selector_idx].event_types;
      if (types.empty() || std::find(types.begin(), types.end(), type) != types.end()) {
        type_selectors[type_idx] |= uint32_t{1} << selector_idx;
      }
    }
    if (type_selectors[type_idx] == 0) continue;
    any = true;
    auto [it, inserted] = type_index_.try_emplace(type, static_cast<uint32_t>(out_.type_names.size()));
    if (inserted) out_.type_names.push_back(type);
    type_codes[type_idx] = it->second;
  }
  if (!any) return;
  const CompiledFilter filter = CompileFilter(query_.filter, batch);
  std::vector<CompiledFilter> selector_filters;
  uint32_t filtered_selectors = 0;  // bit set: the selector has a filter of its own
  for (size_t selector_idx = 0; selector_idx < selectors; ++selector_idx) {
    selector_filters.push_back(CompileFilter(query_.selectors[selector_idx].filter, batch));
    if (!query_.selectors[selector_idx].filter.IsTrue()) filtered_selectors |= uint32_t{1} << selector_idx;
  }
  // Keys: per batch dictionary code, the part's code (strings and others are decided once per code).
  constexpr uint32_t kUnknown = std::numeric_limits<uint32_t>::max() - 1;
  struct KeyColumn {
    const PropertyColumn* column = nullptr;
    std::vector<uint32_t> string_codes, other_codes;
  };
  std::vector<KeyColumn> key_columns(query_.keys.size());
  for (size_t key_idx = 0; key_idx < query_.keys.size(); ++key_idx) {
    auto it = batch.properties.find(query_.keys[key_idx]);
    if (it == batch.properties.end()) continue;
    key_columns[key_idx].column = &it->second;
    key_columns[key_idx].string_codes.assign(it->second.strings.size(), kUnknown);
    key_columns[key_idx].other_codes.assign(it->second.others.size(), kUnknown);
  }
  auto intern = [&](size_t key_idx, const std::string& text) {
    auto [it, inserted] =
        key_index_[key_idx].try_emplace(text, static_cast<uint32_t>(out_.key_values[key_idx].size()));
    if (inserted) out_.key_values[key_idx].push_back(text);
    return it->second;
  };
  auto key_code = [&](size_t key_idx, size_t row) -> uint32_t {
    KeyColumn& key = key_columns[key_idx];
    if (key.column == nullptr) return kMissingKey;
    const PropertyColumn& column = *key.column;
    switch (column.kinds[row]) {
      case ValueKind::kMissing:
      case ValueKind::kNull:
        return kMissingKey;
      case ValueKind::kString: {
        uint32_t& code = key.string_codes[column.codes[row]];
        if (code == kUnknown) code = intern(key_idx, column.strings[column.codes[row]]);
        return code;
      }
      case ValueKind::kOther: {
        uint32_t& code = key.other_codes[column.codes[row]];
        if (code == kUnknown) code = intern(key_idx, column.others[column.codes[row]]);
        return code;
      }
      default:
        return intern(key_idx, *GroupValue(&column, row));
    }
  };
  const PropertyColumn* number_column = nullptr;
  if (!query_.number_property.empty()) {
    auto it = batch.properties.find(query_.number_property);
    if (it != batch.properties.end()) number_column = &it->second;
  }
  for (size_t row = 0; row < batch.rows; ++row) {
    if (batch.users[row] == kNoUser) continue;
    uint32_t matches = type_selectors[batch.type_codes[row]];
    if (matches == 0 || !filter.Holds(row)) continue;
    for (uint32_t pending = matches & filtered_selectors; pending != 0; pending &= pending - 1) {
      const int selector_idx = __builtin_ctz(pending);
      if (!selector_filters[selector_idx].Holds(row)) matches &= ~(uint32_t{1} << selector_idx);
    }
    if (matches == 0) continue;
    out_.users.push_back(batch.users[row]);
    out_.time_ms.push_back(batch.time_ms[row]);
    out_.matches.push_back(matches);
    out_.types.push_back(type_codes[batch.type_codes[row]]);
    for (size_t key_idx = 0; key_idx < query_.keys.size(); ++key_idx) out_.keys[key_idx].push_back(key_code(key_idx, row));
    if (!query_.number_property.empty()) {
      const bool number = number_column != nullptr && number_column->kinds[row] == ValueKind::kNumber;
      out_.numbers.push_back(number ? number_column->numbers[row] : std::nan(""));
    }
    out_.newest_event_ms = std::max(out_.newest_event_ms, batch.time_ms[row]);
  }
}

Timeline TimelineBuilder::Finish() {
  type_index_.clear();
  key_index_.clear();
  return std::move(out_);
}

}  // namespace analytics::query
