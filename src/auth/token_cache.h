// CachingJwtVerifier: remembers successful verifications so a client that sends the same token on every
// request pays the signature check once. An entry is used only while the token itself would still verify:
// until its `exp` plus the leeway (its nbf has already passed when it is cached). Failed verifications are
// never cached. Bounded: each shard is cleared when it reaches its capacity.
// Thread-safety: thread-safe; sharded mutexes keep handler threads from contending.
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "auth/jwt_verifier.h"

namespace analytics::auth {

class CachingJwtVerifier {
 public:
  CachingJwtVerifier(const JwtVerifier& verifier, size_t capacity = 16384)
      : verifier_(verifier), shard_capacity_(std::max<size_t>(1, capacity / kShards)) {}

  common::Result<Principal> Verify(std::string_view token, int64_t now_seconds);

 private:
  static constexpr size_t kShards = 16;
  struct Entry {
    Principal principal;
    int64_t valid_until = 0;  // seconds since the epoch
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> entries;  // guarded by mu
  };

  const JwtVerifier& verifier_;
  const size_t shard_capacity_;
  std::array<Shard, kShards> shards_;
};

}  // namespace analytics::auth
