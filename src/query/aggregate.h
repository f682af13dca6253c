// The aggregation primitive every metric is computed from, and the columnar batches it reads.
//
// Rationale: metrics (docs/metrics.md) compose a few primitives: weighted counts, sums, min/max, exact
// distinct users, exact percentiles, per bucket and group. An event store adapter answers an
// AggregateQuery; the embedded store runs Aggregator (aggregator.h) over EventBatches of its memtable and
// segments, ClickHouse would run SQL. MetricValues (src/metrics) builds ratios, rolling windows, top-N and
// k-anonymity on top.
// Users are dense ids (uint32) handed out by the store; `users` bitmaps are only comparable within one
// store instance and one process.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <roaring/roaring.hh>

#include "query/filter_expr.h"
#include "query/user_scope.h"

namespace analytics::query {

inline constexpr uint32_t kNoUser = std::numeric_limits<uint32_t>::max();

// What to read and how to bucket and group it.
struct AggregateQuery {
  std::vector<std::string> event_types;        // empty: every type
  std::map<std::string, double> weights;       // per type, default 1 (weighted_count, weighted_sum)
  FilterExpr filter;
  std::vector<std::string> group_by;           // property paths
  std::vector<int64_t> bounds;                 // bucket i = [bounds[i], bounds[i+1]); events outside: ignored
  std::string value_property;                  // sum/avg/min/max/percentile read it; "" = none
  bool collect_users = false;                  // distinct users per cell
  bool collect_values = false;                 // every value per cell (exact percentiles)
  std::optional<UserScope> scope;              // only these users' events (a segment); unset: every user
  // Canonical text of everything but `bounds` (cache keys).
  std::string Fingerprint() const;
};

// The distinct users of a cell: a sorted vector of ids while there are few, a roaring bitmap beyond.
// Most cells of most queries (counts, sums) have no users; most cells of a user-counting query have a few
// dozen users spread over the whole id range (a game's players of one day, out of millions of users), where a
// bitmap is one container of a handful of ids per 65,536 ids and every union pays per container. A sorted
// vector of those ids merges in one pass. Kept small_ or bits_, never both.
// The aggregator adds ids in any order (AppendUnsorted) and calls Normalize before anyone reads the set;
// every other operation keeps it sorted.
class UserSet {
 public:
  static constexpr size_t kSmallMax = 1024;  // ids in the vector at most; more go to a bitmap

  UserSet() = default;
  UserSet(const UserSet& other)
      : small_(other.small_), bits_(other.bits_ ? std::make_unique<Roaring>(*other.bits_) : nullptr) {}
  UserSet(UserSet&&) noexcept = default;
  UserSet& operator=(const UserSet& other) {
    if (this != &other) {
      small_ = other.small_;
      bits_ = other.bits_ ? std::make_unique<Roaring>(*other.bits_) : nullptr;
    }
    return *this;
  }
  UserSet& operator=(UserSet&&) noexcept = default;

  void add(uint32_t user);
  // Adds `user` without keeping the vector sorted. True when the set just became unsorted: the caller must call
  // Normalize before the set is read or merged.
  bool AppendUnsorted(uint32_t user) {
    if (bits_) {
      bits_->add(user);
      return false;
    }
    const bool was_sorted = unsorted_ == false;
    if (!small_.empty() && user <= small_.back()) {
      if (user == small_.back()) return false;
      unsorted_ = true;
    }
    small_.push_back(user);
    if (small_.size() > kSmallMax) Normalize();
    return was_sorted && unsorted_;
  }
  void Normalize();
  UserSet& operator|=(const UserSet& other);
  UserSet& operator|=(const Roaring& other);
  bool empty() const { return small_.empty() && (bits_ == nullptr || bits_->isEmpty()); }
  uint64_t cardinality() const { return bits_ ? bits_->cardinality() : small_.size(); }
  uint64_t getSizeInBytes() const {
    return small_.capacity() * sizeof(uint32_t) + (bits_ ? sizeof(Roaring) + bits_->getSizeInBytes() : 0);
  }
  // The users as a bitmap (a copy).
  Roaring ToRoaring() const;
  // |a ∪ b| without building the union when both are bitmaps.
  static uint64_t UnionCardinality(const UserSet& a, const UserSet& b);
  void AddTo(Roaring& target) const;
  bool operator==(const UserSet& other) const;
  // The union of `sets`.
  static UserSet UnionAll(std::span<const UserSet* const> sets);

 private:
  void Promote();  // small_ (sorted) into bits_
  std::vector<uint32_t> small_;   // sorted and unique unless unsorted_
  bool unsorted_ = false;
  std::unique_ptr<Roaring> bits_;
};

struct AggregateCell {
  double weighted_count = 0;   // Σ weight(type) over the events read
  double weighted_sum = 0;     // Σ weight(type) × value over events whose value is a number
  uint64_t value_count = 0;    // events whose value is a number
  double value_sum = 0;        // Σ value (unweighted: avg)
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  UserSet users;
  std::vector<double> values;

  // Adds `other` (inline: results merge cells by the tens of thousands; most have no users and no values, whose
  // merge stays out of line so that the rest inlines).
  void Merge(const AggregateCell& other) {
    MergeNumbers(other);
    if (!other.users.empty() || !other.values.empty()) MergeUsersAndValues(other);
  }
  // The merge of `cells`, in their order (so the same sums as merging them one by one into an empty cell), with
  // the users of all of them in one multi-way union: merging hundreds of large bitmaps pairwise re-copies the
  // growing result each time.
  static AggregateCell MergeAll(std::span<const AggregateCell* const> cells);
  // For each column c in [from, to): out[c - from] = MergeAll of rows[r][c] over the rows that have column c, in
  // the rows' order. The same cells as a MergeAll per column, but read row by row: each row's cells lie
  // together, while a column's are scattered over every row.
  static void MergeColumns(std::span<const std::vector<AggregateCell>* const> rows, size_t from, size_t to,
                           std::span<AggregateCell> out);
  uint64_t MemoryBytes() const;

 private:
  void MergeNumbers(const AggregateCell& other) {
    weighted_count += other.weighted_count;
    weighted_sum += other.weighted_sum;
    value_count += other.value_count;
    value_sum += other.value_sum;
    min = other.min < min ? other.min : min;
    max = other.max > max ? other.max : max;
  }
  void MergeUsersAndValues(const AggregateCell& other);
};

// A group: one value per group_by property, rendered as text ("17", "RU", "true", "1.5", raw JSON for
// arrays/objects); nullopt = missing or null.
using GroupKey = std::vector<std::optional<std::string>>;

struct AggregateResult {
  // Per group, one cell per bucket (dense, bounds.size() - 1 cells).
  std::map<GroupKey, std::vector<AggregateCell>> groups;
  int64_t newest_event_ms = std::numeric_limits<int64_t>::min();  // among the events read
  uint64_t rows_read = 0;
  // Adds `other`, whose cells are buckets [offset, offset + k) of this result's `buckets` buckets (a partial
  // computed over a slice of the bounds). offset 0 and buckets 0: same bounds.
  void Merge(const AggregateResult& other, size_t offset = 0, size_t buckets = 0);
};

// Sessions of peak_concurrent (docs/metrics.md section 3): a start event opens the session named by (its user,
// its key_property value), the first later end event of the same name closes it, max_session_ms after the start
// at the latest. Only events in [from_ms, to_ms) are read; `filter` and `group_by` apply to start events, ends
// only close sessions. Pairing: query/sessions.h.
struct SessionQuery {
  std::string start_type, end_type;
  std::string key_property;
  FilterExpr filter;
  std::vector<std::string> group_by;
  int64_t from_ms = 0, to_ms = 0;
  int64_t max_session_ms = 0;
  bool collect_users = false;  // the users of each group's sessions (k-anonymity)
  std::optional<UserScope> scope;  // only these users' events (a segment); unset: every user
  // Canonical text of what decides the events read and their marks, all but the time range and
  // collect_users (cache keys).
  std::string Fingerprint() const;
};

// The start and end events of some rows (a segment, the memtable) as a SessionQuery reads them, whatever its
// time range, in the order the rows were read. A session's name is (user, key text); the text is kept as its
// 128-bit XXH3 hash (as the dedup index keeps event ids), so two keys of one user are told apart unless their
// 128-bit hashes collide.
struct SessionMarks {
  static constexpr uint32_t kEnd = std::numeric_limits<uint32_t>::max();
  struct Mark {
    uint64_t hash = 0;      // of the key text: high 64 bits
    uint64_t hash_low = 0;  // low 64 bits
    int64_t time_ms = 0;
    uint32_t user = kNoUser;
    uint32_t group = kEnd;  // a start: index into `groups`; an end: kEnd
  };
  std::vector<Mark> marks;
  std::vector<GroupKey> groups;  // distinct groups of the starts
  uint64_t MemoryBytes() const;
};

// --- Columnar input ------------------------------------------------------------------------------------

enum class ValueKind : uint8_t { kMissing, kNull, kFalse, kTrue, kNumber, kString, kOther };

// The values of one property path over the rows of a batch.
struct PropertyColumn {
  std::vector<ValueKind> kinds;      // per row
  std::vector<double> numbers;       // per row; meaningful for kNumber
  std::vector<uint32_t> codes;       // per row; kString: index into `strings`, kOther: into `others`
  std::vector<std::string> strings;  // distinct string values (unescaped)
  std::vector<std::string> others;   // arrays and objects as compact JSON

  void Resize(size_t rows);
  // Appends helpers for builders.
  uint32_t Intern(std::string_view text, std::map<std::string, uint32_t, std::less<>>& index);
};

struct EventBatch {
  size_t rows = 0;
  std::vector<int64_t> time_ms;
  std::vector<uint32_t> type_codes;  // index into `types`
  std::vector<std::string> types;
  std::vector<uint32_t> users;       // dense user ids, kNoUser when the event has none
  std::map<std::string, PropertyColumn, std::less<>> properties;  // the paths the query needs
  int64_t min_time_ms = std::numeric_limits<int64_t>::max();
  int64_t max_time_ms = std::numeric_limits<int64_t>::min();
};

}  // namespace analytics::query
