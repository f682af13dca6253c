// JwtVerifier: checks Bearer tokens and turns them into a Principal.
//
// Accepted algorithms: HS256 with the configured secret; RS256 and ES256 (P-256) with public keys from a JSON
// Web Key Set. The key is chosen from the token's `alg`/`kid` *and* the key's own type, so an RS256 public
// key can never be used as an HMAC secret (algorithm confusion) and `alg: none` is always refused. `exp` is
// required; `nbf`, `iss` and `aud` (string or array) are checked when present/configured, with a leeway.
// Signatures are verified with OpenSSL directly (HMAC compared in constant time); every time check uses only
// the `now_seconds` argument, with overflow-safe arithmetic. Tokens are issued with cpp-jwt.
// Thread-safety: immutable after construction; Verify may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "auth/principal.h"

struct evp_pkey_st;  // OpenSSL's EVP_PKEY
#include "common/status.h"

namespace analytics::auth {

struct JwtVerifierOptions {
  std::string hs256_secret;  // empty: HS256 tokens are refused
  std::string jwks_json;     // contents of a JWKS document; empty: RS256/ES256 tokens are refused
  std::string issuer;        // required `iss` when non-empty
  std::string audience;      // required `aud` member when non-empty
  int leeway_seconds = 30;
};

class JwtVerifier {
 public:
  // InvalidArgument when the JWKS does not parse or holds an unusable key (naming its kid).
  static common::Result<std::unique_ptr<JwtVerifier>> Create(const JwtVerifierOptions& options);

  // Unauthenticated with a client-safe reason for every bad token (malformed, unsupported alg, unknown kid,
  // bad signature, expired, not yet valid, wrong issuer/audience, missing sub).
  common::Result<Principal> Verify(std::string_view token, int64_t now_seconds) const;

  size_t jwks_key_count() const { return public_keys_.size(); }
  int leeway_seconds() const { return options_.leeway_seconds; }

 private:
  struct PublicKey {
    std::string alg;                   // RS256 or ES256
    std::shared_ptr<evp_pkey_st> key;  // the parsed public key
  };
  explicit JwtVerifier(JwtVerifierOptions options) : options_(std::move(options)) {}

  JwtVerifierOptions options_;
  std::map<std::string, PublicKey> public_keys_;  // by kid ("" when the JWK has none)
};

struct TokenRequest {
  std::string subject;
  std::vector<std::string> roles;
  std::vector<std::string> game_ids;
  int64_t ttl_seconds = 3600;
  std::string issuer;
  std::string audience;
};

// Issues an HS256 token (for local use and tests: `analytics-service token`).
common::Result<std::string> IssueHs256Token(const TokenRequest& request, const std::string& secret,
                                            int64_t now_seconds);

}  // namespace analytics::auth
