// Pseudonymizer: the keyed personal-data treatments of docs/events.md section 6.
//
// Pseudonymize(user_id) is deterministic authenticated encryption, AES-SIV (RFC 5297) without nonce or
// associated data, of the message 0x01 || user_id (a format version byte), written
// "u_" + base64url(SIV tag || ciphertext) without padding. The same id and key always give the same pseudonym
// (joins across events, types and restarts work); another key gives another pseudonym; Reveal() turns a
// pseudonym back into the id for authorized exports and rejects anything this key did not produce (the SIV
// tag authenticates it). A 36-character UUID becomes a 73-character pseudonym, itself a valid id string.
//
// Hash(value) is HMAC-SHA-256 in lower-case hex under a sub-key derived from the secret
// (HMAC-SHA-256(secret, "analytics-service/pd-hash/v1")), so hashes cannot be confused with, or help attack,
// the pseudonym key.
//
// Rationale: the secret is 32 bytes (AES-128-SIV, which takes a 256-bit key) or 64 bytes (AES-256-SIV). AES-SIV
// costs about 1 us per call in OpenSSL 3 (a context copy per message), and the same users come back all the
// time, so results are kept in a bounded shared cache, the hash results too, with a small per-thread cache in
// front of each (string_cache.h: a user's events come in bursts, and a per-thread hit takes no lock). Results
// never depend on the cache.
// Concurrency: all methods are const and thread-safe; the shared caches are guarded by 64 striped mutexes, the
// per-thread ones are thread_local (entries tagged with this instance's owner id).
// Limitations: key rotation is not handled here (a new key gives new pseudonyms; re-keying stored data is a
// migration). OpenSSL failures after a successful Create (out of memory) abort the process.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace analytics::events {

struct PseudonymizerOptions {
  // Entries in each of the two shared caches (pseudonyms, hashes), rounded up to a power of two; 0 disables
  // caching (the per-thread caches too). Default: 262144 entries, roughly 40 MB when full of UUID user ids.
  // Each thread that pseudonymizes adds 256 KiB of per-thread cache (1024 slots per kind), shared by all
  // instances.
  size_t cache_entries = 262144;
};

class Pseudonymizer {
 public:
  static constexpr std::string_view kPrefix = "u_";

  // `secret_key`: 32 or 64 raw bytes (see DecodeSecretKey for text forms). InvalidArgument for another
  // length; Internal when this OpenSSL has no AES-SIV.
  static common::Result<std::unique_ptr<Pseudonymizer>> Create(std::string_view secret_key,
                                                               PseudonymizerOptions options = {});
  ~Pseudonymizer();
  Pseudonymizer(const Pseudonymizer&) = delete;
  Pseudonymizer& operator=(const Pseudonymizer&) = delete;

  // "u_<base64url>": deterministic for (key, user_id). Any byte string is accepted. Idempotent: a pseudonym
  // made with this key comes back unchanged (the SIV tag proves it is one; nobody without the key can forge
  // one), so already-treated events (replayed dead letters, read-back events) can be processed again.
  std::string Pseudonymize(std::string_view user_id) const;
  // The same into `out` (reusing its memory: the intake's hot path).
  void Pseudonymize(std::string_view user_id, std::string& out) const;
  // Starts fetching the cache lines a later Pseudonymize(user_id) reads (the per-thread slot, the shared set):
  // they are cache misses, which the work done meanwhile then hides.
  void PrefetchPseudonym(std::string_view user_id) const;

  // True when `text` is a pseudonym made with this key.
  bool IsOwnPseudonym(std::string_view text) const;

  // The user id behind a pseudonym made with this key. InvalidArgument for anything else (wrong prefix,
  // not base64url, altered, or made with another key).
  common::Result<std::string> Reveal(std::string_view pseudonym) const;

  // Keyed one-way hash: HMAC-SHA-256 under the derived hash sub-key, 64 lower-case hex characters.
  std::string Hash(std::string_view value) const;
  void Hash(std::string_view value, std::string& out) const;

  size_t CachedPseudonymsForTest() const;

 private:
  struct Impl;
  explicit Pseudonymizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Decodes a secret key written as 64 or 128 hex characters, or base64/base64url (padding optional) of 32 or
// 64 bytes. InvalidArgument otherwise. The message never contains the key.
common::Result<std::string> DecodeSecretKey(std::string_view text);

}  // namespace analytics::events
