// UserScope: a restriction of a query to a set of users (a segment's members), as the store's dense user ids.
//
// Rationale: segments (src/segments/) restrict metric and analysis queries to their members. The members are
// handed to the store as a bitmap of its own dense ids (EventStore::UserIds), so restricting costs one bitmap
// lookup per user run, and the fingerprint names the set in cache keys (a segment id, its version and when it
// was materialized), so that cached answers of one membership are never served for another.
// Semantics (every EventStore adapter): only events whose user's id is in `users` are read; events without a user
// never are (kNoUser in the bitmap matches nothing). An empty bitmap reads nothing. Query fingerprints (cache keys)
// append "|scope=<length>:<fingerprint>" when a scope is set and are unchanged without one.
// Thread-safety: plain values; the bitmap is shared and immutable.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <roaring/roaring.hh>

#include "common/status.h"

namespace analytics::query {

using Roaring = ::Roaring;  // CRoaring (this version declares it globally)

struct UserScope {
  std::string fingerprint;               // identifies the set; equal fingerprints mean equal sets
  std::shared_ptr<const Roaring> users;  // the store's dense user ids; never null
  // False for a one-off set (the users of an incremental segment update): the store keeps no cache entry keyed
  // by it, since nobody will ask with it again.
  bool cache = true;
};

// Resolves a segment id (the `segment` parameter of metric and analysis requests) into its members: NotFound when
// there is no such segment, FailedPrecondition when it has not been materialized yet.
using UserScopeResolver = std::function<common::Result<UserScope>(const std::string& segment_id)>;

}  // namespace analytics::query
