// Query execution of the embedded store: segments and memtable rows as query::EventBatch, dense user ids,
// and the cache of per-segment partial aggregates.
//
// Rationale: segments are immutable, so the partial aggregate of one segment for one query shape never
// changes: it is computed once (decoding only the needed columns) and kept in a byte-bounded LRU cache,
// keyed by the segment path, the query's fingerprint and the bucket bounds that cut the segment. Repeated
// and overlapping queries (dashboards, the same KPI per day) then only merge small partials and scan the
// memtable. Users become dense ids (UserDirectory) so that distinct counts are exact roaring bitmaps.
// Thread-safety: UserDirectory and PartialCache are thread-safe; the conversion functions are reentrant.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "query/aggregate.h"
#include "store/embedded/segment.h"

namespace analytics::store::embedded {

// Pseudonym → dense id (0, 1, 2, ... in first-seen order), for the life of the process.
class UserDirectory {
 public:
  uint32_t IdOf(std::string_view user);
  size_t size() const;
  uint64_t memory_bytes() const;

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, uint32_t> ids_;  // guarded by mu_
  uint64_t bytes_ = 0;                             // guarded by mu_
};

// The segment columns a query needs: time, type, user, and the property paths it reads. Well-known names
// (game_id, session_id, currency, country, platform, amount, user_id) read the typed columns; a dotted path
// reads its top-level property.
SegmentColumnRequest ColumnsFor(const std::vector<std::string>& paths);

// Converts decoded columns (a segment's, or ColumnsFromEvents' for memtable rows) to a batch holding
// `paths`.
query::EventBatch BatchFromColumns(SegmentColumns& columns, const std::vector<std::string>& paths,
                                   UserDirectory& users);

// A byte-bounded LRU of partial aggregates.
class PartialCache {
 public:
  explicit PartialCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const query::AggregateResult> Get(const std::string& key);
  void Put(const std::string& key, std::shared_ptr<const query::AggregateResult> value);
  uint64_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const query::AggregateResult> value;
    uint64_t bytes;
  };
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // guarded by mu_; front = most recent
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;  // guarded by mu_
  uint64_t bytes_ = 0, hits_ = 0, misses_ = 0;                         // guarded by mu_
};

uint64_t ResultBytes(const query::AggregateResult& result);

}  // namespace analytics::store::embedded
