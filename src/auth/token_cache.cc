// Verified-token cache.
#include "auth/token_cache.h"

#include <cstdint>
#include <functional>

namespace analytics::auth {

common::Result<Principal> CachingJwtVerifier::Verify(std::string_view token, int64_t now_seconds) {
  Shard& shard = shards_[std::hash<std::string_view>()(token) % kShards];
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.entries.find(std::string(token));
    if (it != shard.entries.end()) {
      if (now_seconds <= it->second.valid_until) return it->second.principal;
      shard.entries.erase(it);
    }
  }
  auto verified = verifier_.Verify(token, now_seconds);
  if (!verified.ok()) return verified;
  std::lock_guard lock(shard.mu);
  if (shard.entries.size() >= shard_capacity_) shard.entries.clear();
  const int64_t leeway = verifier_.leeway_seconds();
  const int64_t valid_until =
      verified->expires_at > INT64_MAX - leeway ? INT64_MAX : verified->expires_at + leeway;
  shard.entries[std::string(token)] = {*verified, valid_until};
  return verified;
}

}  // namespace analytics::auth
