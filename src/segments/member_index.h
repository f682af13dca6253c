// MemberIndex: the persistent dense index of the users segments hold (pseudonym ↔ 0, 1, 2, ...), which the
// stored member bitmaps are written over. The MetadataStore owns it (MemberIndexes, ListMemberIndex,
// ForgetMember); this class keeps it in memory for lookups that must not touch the database (contains-checks).
//
// Rationale: bitmaps over the event store's own dense ids would be cheaper to build but those ids last one
// process; member indexes last as long as the metadata, and every segment shares one copy of each pseudonym.
// An erased user's entry loses its pseudonym; its index is never reused.
// Thread-safety: thread-safe (reads share a lock).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "metadata/metadata_store.h"

namespace analytics::segments {

class MemberIndex {
 public:
  explicit MemberIndex(metadata::MetadataStore& metadata) : metadata_(metadata) {}

  // Reads the entries the store has and this object has not (at start, and to catch up with other replicas).
  common::Status Load();
  // The index of `user` when this process knows it (no database access).
  std::optional<uint32_t> Find(std::string_view user) const;
  // The indexes of `users`, registering the unknown ones in the store.
  common::Result<std::vector<uint32_t>> IndexesOf(const std::vector<std::string>& users);
  // The pseudonym of `index` ("" when unknown or erased), catching up with the store once when unknown.
  common::Result<std::string> NameOf(uint32_t index);
  // Erasure: forgets `user`; its former index (nullopt when it had none).
  common::Result<std::optional<uint32_t>> Forget(const std::string& user);
  size_t size() const;

 private:
  void InsertLocked(uint32_t index, std::string name);
  metadata::MetadataStore& metadata_;
  mutable std::shared_mutex mu_;
  // Transparent hash: Find looks a string_view up without copying it (contains-checks).
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>()(text); }
  };
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> index_;  // guarded by mu_
  std::vector<const std::string*> names_;            // guarded by mu_; by index, nullptr when unknown or erased
  int64_t loaded_up_to_ = -1;                        // guarded by mu_; highest index read by Load
};

}  // namespace analytics::segments
