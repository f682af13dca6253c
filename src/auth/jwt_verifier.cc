// JWT verification (OpenSSL) and JWKS loading; token issuing (cpp-jwt).
#include "auth/jwt_verifier.h"

#include <jwt/jwt.hpp>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

#include <nlohmann/json.hpp>

namespace analytics::auth {
namespace {

using common::Result;
using common::Status;
using nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* bld) const { OSSL_PARAM_BLD_free(bld); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* params) const { OSSL_PARAM_free(params); }
};
struct BnFree {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};

Result<std::string> Base64UrlDecode(std::string_view text) {
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return Status::InvalidArgument("not base64url");
  }
  if (text.size() % 4 == 1) return Status::InvalidArgument("not base64url");
  try {
    return jwt::base64_uri_decode(text.data(), text.size());
  } catch (...) {
    return Status::InvalidArgument("not base64url");
  }
}

using KeyPtr = std::shared_ptr<EVP_PKEY>;

Result<KeyPtr> KeyFromParams(const char* key_type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, key_type, nullptr));
  EVP_PKEY* raw_key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    return Status::InvalidArgument("OpenSSL rejected the key material");
  }
  return KeyPtr(raw_key, PkeyFree());
}

// A JWK member that must be a string when present; `fallback` when absent.
Result<std::string> JwkString(const json& jwk, const char* name, const std::string& fallback = {}) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return fallback;
  if (!it->is_string()) return Status::InvalidArgument(std::string("member ") + name + " must be a string");
  return it->get<std::string>();
}

bool VerifyHs256(const std::string& secret, std::string_view signing_input, const std::string& signature) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &mac_len) ==
      nullptr) {
    return false;
  }
  return signature.size() == mac_len && CRYPTO_memcmp(mac, signature.data(), mac_len) == 0;
}

bool VerifyDigestSignature(EVP_PKEY* key, std::string_view signing_input, const unsigned char* signature,
                           size_t signature_len) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) return false;
  return EVP_DigestVerify(ctx.get(), signature, signature_len,
                          reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
}

// ES256 signatures are raw R||S (RFC 7518 3.4); OpenSSL wants DER.
bool VerifyEs256(EVP_PKEY* key, std::string_view signing_input, const std::string& signature) {
  if (signature.size() != 64) return false;
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 32, 32, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  if (der_len <= 0) return false;
  bool ok = VerifyDigestSignature(key, signing_input, der, static_cast<size_t>(der_len));
  OPENSSL_free(der);
  return ok;
}

Result<KeyPtr> RsaJwkToKey(const json& jwk) {
  if (!jwk.contains("n") || !jwk["n"].is_string() || !jwk.contains("e") || !jwk["e"].is_string()) {
    return Status::InvalidArgument("an RSA key needs string members n and e");
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::string n, Base64UrlDecode(jwk["n"].get<std::string>()));
  ANALYTICS_ASSIGN_OR_RETURN(std::string e, Base64UrlDecode(jwk["e"].get<std::string>()));
  if (n.size() < 256) return Status::InvalidArgument("RSA keys must have at least 2048 bits");
  std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                                 static_cast<int>(n.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                                 static_cast<int>(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get())) {
    return Status::InvalidArgument("bad RSA key material");
  }
  return KeyFromParams("RSA", bld.get());
}

Result<KeyPtr> EcJwkToKey(const json& jwk) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string crv, JwkString(jwk, "crv"));
  if (crv != "P-256") return Status::InvalidArgument("only EC curve P-256 is supported");
  if (!jwk.contains("x") || !jwk["x"].is_string() || !jwk.contains("y") || !jwk["y"].is_string()) {
    return Status::InvalidArgument("an EC key needs string members x and y");
  }
  ANALYTICS_ASSIGN_OR_RETURN(std::string x, Base64UrlDecode(jwk["x"].get<std::string>()));
  ANALYTICS_ASSIGN_OR_RETURN(std::string y, Base64UrlDecode(jwk["y"].get<std::string>()));
  if (x.size() != 32 || y.size() != 32) return Status::InvalidArgument("P-256 coordinates must be 32 bytes");
  std::string point = "\x04" + x + y;
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  static char kGroup[] = "prime256v1";
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, kGroup, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size())) {
    return Status::InvalidArgument("bad EC key material");
  }
  return KeyFromParams("EC", bld.get());
}

Status Unauthenticated(std::string reason) { return Status::Unauthenticated(std::move(reason)); }

// Reads an integer-valued NumericDate claim; fractional values are truncated.
bool ReadNumericDate(const json& payload, const char* name, int64_t& out) {
  auto it = payload.find(name);
  if (it == payload.end() || !it->is_number()) return false;
  if (it->is_number_float()) {
    double value = it->get<double>();
    if (!(value > -1e15 && value < 1e15)) return false;  // NaN, infinities and absurd dates
    out = static_cast<int64_t>(value);
  } else if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    out = INT64_MAX;
  } else {
    out = it->get<int64_t>();
  }
  return true;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPlatformAdmin: return "platform_admin";
    case Role::kDeveloper: return "developer";
    case Role::kMarketingManager: return "marketing_manager";
    case Role::kService: return "service";
  }
  return "unknown";
}

std::optional<Role> RoleFromName(std::string_view name) {
  for (Role role : {Role::kPlatformAdmin, Role::kDeveloper, Role::kMarketingManager, Role::kService}) {
    if (RoleName(role) == name) return role;
  }
  return std::nullopt;
}

Result<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(const JwtVerifierOptions& options) {
  std::unique_ptr<JwtVerifier> verifier(new JwtVerifier(options));
  if (options.jwks_json.empty()) return verifier;
  json jwks = json::parse(options.jwks_json, nullptr, false);
  if (jwks.is_discarded() || !jwks.is_object() || !jwks.contains("keys") || !jwks["keys"].is_array()) {
    return Status::InvalidArgument("the JWKS must be a JSON object with a \"keys\" array");
  }
  for (size_t key_idx = 0; key_idx < jwks["keys"].size(); ++key_idx) {
    const json& jwk = jwks["keys"][key_idx];
    const std::string where = "JWKS key #" + std::to_string(key_idx);
    if (!jwk.is_object()) return Status::InvalidArgument(where + " is not an object");
    auto kid_member = JwkString(jwk, "kid");
    auto kty_member = JwkString(jwk, "kty");
    auto use_member = JwkString(jwk, "use", "sig");
    for (const auto* member : {&kid_member, &kty_member, &use_member}) {
      if (!member->ok()) return Status::InvalidArgument(where + ": " + member->status().message());
    }
    const std::string kid = *kid_member;
    const std::string kty = *kty_member;
    if (*use_member != "sig") continue;  // encryption keys are not for us
    PublicKey key;
    Result<KeyPtr> parsed = Status::InvalidArgument("unsupported key type '" + kty + "'");
    if (kty == "RSA") {
      key.alg = "RS256";
      parsed = RsaJwkToKey(jwk);
    } else if (kty == "EC") {
      key.alg = "ES256";
      parsed = EcJwkToKey(jwk);
    }
    if (!parsed.ok()) return Status::InvalidArgument(where + " (kid '" + kid + "'): " + parsed.status().message());
    auto declared_alg = JwkString(jwk, "alg", key.alg);
    if (!declared_alg.ok()) return Status::InvalidArgument(where + ": " + declared_alg.status().message());
    if (*declared_alg != key.alg) {
      return Status::InvalidArgument(where + " (kid '" + kid + "'): alg " + *declared_alg + " does not fit kty " + kty);
    }
    key.key = std::move(parsed).value();
    if (!verifier->public_keys_.emplace(kid, std::move(key)).second) {
      return Status::InvalidArgument(where + ": duplicate kid '" + kid + "'");
    }
  }
  return verifier;
}

Result<Principal> JwtVerifier::Verify(std::string_view token, int64_t now_seconds) const {
  if (token.empty()) return Unauthenticated("empty bearer token");
  if (token.size() > 16384) return Unauthenticated("token too large");
  size_t first_dot = token.find('.');
  size_t second_dot = first_dot == std::string_view::npos ? first_dot : token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != std::string_view::npos) {
    return Unauthenticated("malformed token: expected three dot-separated parts");
  }
  auto header_text = Base64UrlDecode(token.substr(0, first_dot));
  if (!header_text.ok()) return Unauthenticated("malformed token header");
  json header = json::parse(*header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    return Unauthenticated("malformed token header");
  }
  if (header.contains("typ") && !header["typ"].is_string()) return Unauthenticated("malformed token header (typ)");
  // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
  if (header.contains("crit")) return Unauthenticated("token header lists critical extensions we do not support");
  const std::string alg = header["alg"].get<std::string>();
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"].get<std::string>() : "";
  if (second_dot + 1 == token.size()) return Unauthenticated("unsigned tokens are not accepted");

  const PublicKey* public_key = nullptr;
  if (alg == "HS256") {
    if (options_.hs256_secret.empty()) return Unauthenticated("HS256 tokens are not accepted by this deployment");
  } else if (alg == "RS256" || alg == "ES256") {
    if (auto it = public_keys_.find(kid); it != public_keys_.end()) {
      public_key = &it->second;
    } else if (kid.empty()) {
      // No kid: usable only when exactly one key of this algorithm exists.
      for (const auto& [unused, candidate] : public_keys_) {
        if (candidate.alg == alg) {
          if (public_key != nullptr) return Unauthenticated("token has no kid and several keys could match");
          public_key = &candidate;
        }
      }
    }
    if (public_key == nullptr) return Unauthenticated("no key for this token (kid '" + kid + "')");
    if (public_key->alg != alg) return Unauthenticated("token alg " + alg + " does not match key " + kid);
  } else {
    return Unauthenticated("unsupported token algorithm '" + alg + "'");
  }

  const std::string_view signing_input = token.substr(0, second_dot);
  auto signature = Base64UrlDecode(token.substr(second_dot + 1));
  if (!signature.ok()) return Unauthenticated("malformed token signature");
  bool valid = false;
  if (alg == "HS256") {
    valid = VerifyHs256(options_.hs256_secret, signing_input, *signature);
  } else if (alg == "RS256") {
    valid = VerifyDigestSignature(public_key->key.get(), signing_input,
                                  reinterpret_cast<const unsigned char*>(signature->data()), signature->size());
  } else {
    valid = VerifyEs256(public_key->key.get(), signing_input, *signature);
  }
  if (!valid) return Unauthenticated("invalid token signature");

  auto payload_text = Base64UrlDecode(token.substr(first_dot + 1, second_dot - first_dot - 1));
  if (!payload_text.ok()) return Unauthenticated("malformed token payload");
  json payload = json::parse(*payload_text, nullptr, false);
  if (!payload.is_object()) return Unauthenticated("token payload is not a JSON object");

  Principal principal;
  if (!ReadNumericDate(payload, "exp", principal.expires_at)) return Unauthenticated("token has no numeric exp");
  // Overflow-safe: compare against now shifted by the (small) leeway, never exp + leeway.
  if (principal.expires_at < now_seconds - options_.leeway_seconds) return Unauthenticated("token expired");
  int64_t not_before = 0;
  if (payload.contains("nbf")) {
    if (!ReadNumericDate(payload, "nbf", not_before)) return Unauthenticated("token nbf is not a number");
    if (not_before > now_seconds + options_.leeway_seconds) return Unauthenticated("token not yet valid (nbf)");
  }
  if (!options_.issuer.empty()) {
    if (!payload.contains("iss") || !payload["iss"].is_string() || payload["iss"].get<std::string>() != options_.issuer) {
      return Unauthenticated("token issuer is not accepted");
    }
  }
  if (!options_.audience.empty()) {
    bool matches = false;
    if (payload.contains("aud") && payload["aud"].is_string()) {
      matches = payload["aud"].get<std::string>() == options_.audience;
    } else if (payload.contains("aud") && payload["aud"].is_array()) {
      for (const auto& aud : payload["aud"]) matches = matches || (aud.is_string() && aud.get<std::string>() == options_.audience);
    }
    if (!matches) return Unauthenticated("token audience is not accepted");
  }
  if (!payload.contains("sub") || !payload["sub"].is_string() || payload["sub"].get<std::string>().empty()) {
    return Unauthenticated("token has no sub");
  }
  principal.subject = payload["sub"].get<std::string>();
  if (payload.contains("roles")) {
    if (!payload["roles"].is_array()) return Unauthenticated("token roles must be an array");
    for (const auto& role : payload["roles"]) {
      if (!role.is_string()) return Unauthenticated("token roles must be strings");
      if (auto parsed = RoleFromName(role.get<std::string>())) principal.roles.insert(*parsed);
    }
  }
  if (payload.contains("game_ids")) {
    if (!payload["game_ids"].is_array()) return Unauthenticated("token game_ids must be an array");
    for (const auto& game : payload["game_ids"]) {
      if (game.is_string()) {
        principal.game_ids.insert(game.get<std::string>());
      } else if (game.is_number_integer()) {
        principal.game_ids.insert(std::to_string(game.get<int64_t>()));
      } else {
        return Unauthenticated("token game_ids must be strings or integers");
      }
    }
  }
  return principal;
}

Result<std::string> IssueHs256Token(const TokenRequest& request, const std::string& hs256_secret,
                                    int64_t now_seconds) {
  if (hs256_secret.empty()) return Status::FailedPrecondition("no HS256 secret configured");
  try {
    using namespace jwt::params;
    jwt::jwt_object object{algorithm("HS256"), secret(hs256_secret)};
    object.add_claim("sub", request.subject);
    object.add_claim("roles", json(request.roles));
    object.add_claim("game_ids", json(request.game_ids));
    object.add_claim("iat", now_seconds);
    object.add_claim("exp", now_seconds + request.ttl_seconds);
    if (!request.issuer.empty()) object.add_claim("iss", request.issuer);
    if (!request.audience.empty()) object.add_claim("aud", request.audience);
    return object.signature();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("cannot sign token: ") + e.what());
  }
}

}  // namespace analytics::auth
