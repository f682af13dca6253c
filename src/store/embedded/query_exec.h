// Query execution of the embedded store: segments and memtable rows as query::EventBatch, dense user ids,
// per-segment reading that touches only what a query needs, and the cache of per-segment partial aggregates.
//
// Rationale: a segment is immutable, so everything derived from it alone stays valid for its life. Two kinds
// are kept:
// - SegmentCache: per segment its footer (parts, types, times) and, per part, the dense ids of its users
//   (PartUsers). Users are the expensive column (a 73-byte pseudonym per user and day, random bytes); with
//   their ids at hand a query that counts users reads no user column, and one whose segment lies inside one
//   bucket with no filter, grouping or value reads no column at all: its cell is the part's users and
//   per-type counts (AggregateSegment's fast path). These are the dense-id directory's per-segment half: they
//   are kept whatever the partial cache's size, in a fixed byte budget.
// - PartialCache: the partial aggregate of one segment for one query shape, keyed by the segment path, the
//   query's fingerprint and the bucket bounds that cut the segment, and (EmbeddedEventStore::Aggregate) the
//   merges of a day's segments and of all the segments a query read. Repeated and overlapping queries
//   (dashboards, the same KPI per day) then only merge small partials and scan the memtable. The same cache
//   holds, for peak_concurrent, the paired sessions of a day partition (query::SessionDay, keyed by the session
//   query's fingerprint, the day's time range and its segments' paths) and, for a day the memtable also holds
//   events of, its segments' marks (query::SessionMarks, keyed by the segment path and the fingerprint).
// Rare event types are stored in parts of their own (docs/formats/segment.md, format 4), so a query on them
// reads a few small blocks per segment.
// A query restricted to a set of users (query::UserScope) is applied per part, then per user run, with the
// part's cached ids: a part none of whose users is in scope is not read at all (one bitmap intersection); a part
// all of whose rows are users in scope is read as without a scope (AggregateSegment's fast path included); in
// the others the runs of users outside the scope are dropped right after the columns are decoded (KeepRuns),
// before any column is converted, filtered or aggregated. Nothing of this runs without a scope. Users become dense ids (UserDirectory) so that distinct counts are
// exact roaring bitmaps.
// Thread-safety: UserDirectory, SegmentCache and PartialCache are thread-safe; the functions are reentrant.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/status.h"
#include "query/aggregate.h"
#include "query/aggregator.h"
#include "query/sessions.h"
#include "query/timeline.h"
#include "store/embedded/segment.h"

namespace analytics::store::embedded {

namespace v3 {
struct Footer;
}

// Pseudonym → dense id (0, 1, 2, ... in first-seen order), for the life of the process.
class UserDirectory {
 public:
  uint32_t IdOf(std::string_view user);
  // The ids of `users` ("" → kNoUser), in order, with one lock round for all of them (two when some are new).
  // Unknown users get new ids, or kNoUser when `add_missing` is false.
  void IdsOf(const std::vector<std::string_view>& users, std::vector<uint32_t>& ids, bool add_missing = true);
  // The id of a known user; kNoUser when it has none (yet).
  uint32_t Find(std::string_view user) const;
  // The pseudonym of `id`; "" when the directory never gave it out (kNoUser included).
  std::string NameOf(uint32_t id) const;
  // The pseudonyms of `ids` (as NameOf), in order, with one lock round for all of them.
  void NamesOf(const std::vector<uint32_t>& ids, std::vector<std::string>& names) const;
  size_t size() const;
  uint64_t memory_bytes() const;

 private:
  std::string_view NameLocked(uint32_t id) const {
    return std::string_view(arena_.data() + offsets_[id], offsets_[id + 1] - offsets_[id]);
  }
  uint32_t FindLocked(std::string_view user, uint64_t hash) const;
  uint32_t InsertLocked(std::string_view user, uint64_t hash);

  mutable std::shared_mutex mu_;
  // Open addressing: per slot the id + 1 (0 = empty) in the low half and the hash's top bits in the high half.
  std::vector<uint64_t> slots_;     // guarded by mu_; a power of two, at most half full
  std::vector<char> arena_;         // guarded by mu_; the names, by id, back to back
  std::vector<uint64_t> offsets_{0};  // guarded by mu_; name `id` is arena_[offsets_[id], offsets_[id + 1])
  uint64_t bytes_ = 0;              // guarded by mu_
};

// The dense ids of one segment part's users.
struct PartUsers {
  std::vector<uint32_t> ids;  // per user run, in the part's order; kNoUser for the empty user
  Roaring all;                // every id but kNoUser
  bool has_empty = false;     // a run of the empty user
  uint64_t MemoryBytes() const;
};

// What the store keeps of one segment across queries (see the file comment).
struct SegmentState {
  int format = 0;                            // 2, 3 or 4
  std::shared_ptr<const v3::Footer> footer;  // formats 3 and 4
  uint64_t file_bytes = 0;
  std::mutex mu;
  std::vector<std::shared_ptr<const PartUsers>> users;  // guarded by mu; per part, null until needed
};

// Byte-bounded LRU of SegmentState by path (paths name immutable files and are never reused by the store).
class SegmentCache {
 public:
  explicit SegmentCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  // The state of the segment at `path`, reading its footer on first use. Corruption / IOError as
  // SegmentFile::Open.
  common::Result<std::shared_ptr<SegmentState>> Get(const std::string& path);
  // Accounts `bytes` more to the entry of `path` (what PartUsers added), evicting others beyond the budget.
  void Charge(const std::string& path, uint64_t bytes);
  uint64_t bytes() const;

 private:
  struct Entry {
    std::string path;
    std::shared_ptr<SegmentState> state;
    uint64_t bytes;
  };
  void EvictLocked();
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;                                                // guarded by mu_; front = recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;  // guarded by mu_
  uint64_t bytes_ = 0;                                                  // guarded by mu_
};

// What reading a segment for a query uses besides the file.
struct SegmentReadContext {
  UserDirectory& users;
  SegmentCache& segments;
};

// The users a query's scope admits: nullptr without a scope (every user), an empty set for a scope without
// users (UserScope::users is never null; a null one admits nobody).
const Roaring* ScopeUsers(const std::optional<query::UserScope>& scope);

// The segment columns a query needs: time, type, and the property paths it reads (users only when
// `need_users`). Well-known names (game_id, session_id, currency, country, platform, amount, user_id) read the
// typed columns; a dotted path reads its top-level property.
SegmentColumnRequest ColumnsFor(const std::vector<std::string>& paths, bool need_users = true);

// Converts decoded columns (a segment's, or ColumnsFromEvents' for memtable rows) to a batch holding
// `paths`, moving what it can out of `columns`. Users: from `run_ids` (per user run, with columns.user_runs)
// when given, else from columns.users through the directory, else none (batch.users empty).
query::EventBatch BatchFromColumns(SegmentColumns& columns, const std::vector<std::string>& paths,
                                   UserDirectory& users, const std::vector<uint32_t>* run_ids = nullptr);

// What a query reads of one segment, decoded and ready to add to a result: reading (the expensive part) can
// then run on several threads while one thread adds the segments to one result, in a fixed order.
struct SegmentRows {
  // A part answered from its footer and its cached users: every row read, into one bucket.
  struct PartCell {
    size_t bucket = 0;
    double weighted_count = 0;
    uint64_t rows = 0;
    int64_t newest_ms = 0;
    std::shared_ptr<const PartUsers> users;  // when the query collects users
  };
  static constexpr int8_t kBatch = 0, kCell = 1;
  std::vector<query::EventBatch> batches;  // parts read row by row
  std::vector<PartCell> cells;
  std::vector<int8_t> order;               // per part read: kBatch or kCell, in the segment's part order
  bool ungrouped = false;                  // an ungrouped query's cells exist (as one batch of it would make)
};

// Reads the segment at `path` for `query` (whose bounds may be a slice of the request's: the buckets the
// segment overlaps), leaving out the rows of `excluded` users and, with query.scope, those of users outside it. Reads only the parts holding the query's types,
// only the columns the query needs, and nothing but cached state when a part lies inside one bucket and the
// query only counts rows and users. `paths` = the properties the query reads (group_by, filter, value).
// Corruption / IOError naming the file on damage.
common::Status ReadSegmentRows(const std::string& path, const query::AggregateQuery& query,
                               const std::vector<std::string>& paths,
                               const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                               SegmentRows& out);
// Adds what ReadSegmentRows read to `out` (query::Aggregate over its batches). `index`: Aggregate's memory of
// `out`'s groups, when one result collects several segments.
void AddSegmentRows(const query::AggregateQuery& query, const SegmentRows& rows, query::AggregateResult& out,
                    query::GroupIndex* index = nullptr);
// Both, for one segment.
common::Status AggregateSegment(const std::string& path, const query::AggregateQuery& query,
                                const std::vector<std::string>& paths,
                                const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                                query::AggregateResult& out, query::GroupIndex* index = nullptr);

// The start and end events of the segment at `path` that `query` reads, whatever its time range (so the marks of
// a segment serve every period: query::BuildSessionDay applies the range). Reads only the parts holding the query's two
// types (and, with query.scope, users in it). Corruption / IOError naming the file on damage.
common::Status ReadSegmentSessionMarks(const std::string& path, const query::SessionQuery& query,
                                       const std::vector<std::string>& paths,
                                       const std::set<std::string, std::less<>>& excluded,
                                       SegmentReadContext& context, query::SessionMarks& out);

// The events of the segment at `path` that `query` reads (query::TimelineBuilder), whatever its time range (so the
// part serves every period: query::MergeTimelines applies the range). Reads only the parts holding the query's
// types (and, with query.scope, users in it). Corruption / IOError naming the file on damage.
common::Status ReadSegmentTimeline(const std::string& path, const query::TimelineQuery& query,
                                   const std::vector<std::string>& paths,
                                   const std::set<std::string, std::less<>>& excluded, SegmentReadContext& context,
                                   query::Timeline& out);

// A byte-bounded LRU of what queries derive from one segment: partial aggregates (packed: query::PackedResult,
// merged by the thousand), session marks (query::SessionMarks), session days (query::SessionDay) and the links
// between consecutive days (query::SessionLink). The kinds share the budget; a key names one kind (callers
// prefix session keys).
class PartialCache {
 public:
  explicit PartialCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  // The entry of `key` if it holds a T (query::PackedResult, SessionMarks, SessionDay, SessionLink or Timeline).
  template <typename T>
  std::shared_ptr<const T> Get(const std::string& key) {
    Value value = Find(key);
    auto* entry = std::get_if<std::shared_ptr<const T>>(&value);
    return entry != nullptr ? *entry : nullptr;
  }
  template <typename T>
  void Put(const std::string& key, std::shared_ptr<const T> value) {
    const uint64_t bytes = value->MemoryBytes();
    Insert(key, std::move(value), bytes);
  }
  bool enabled() const { return max_bytes_ > 0; }
  uint64_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  using Value = std::variant<std::shared_ptr<const query::PackedResult>, std::shared_ptr<const query::SessionMarks>,
                             std::shared_ptr<const query::SessionDay>, std::shared_ptr<const query::SessionLink>,
                             std::shared_ptr<const query::Timeline>>;
  struct Entry {
    std::string key;
    Value value;
    uint64_t bytes;
  };
  Value Find(const std::string& key);
  void Insert(const std::string& key, Value value, uint64_t bytes);
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // guarded by mu_; front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;  // guarded by mu_
  uint64_t bytes_ = 0, hits_ = 0, misses_ = 0;                         // guarded by mu_
};


}  // namespace analytics::store::embedded
