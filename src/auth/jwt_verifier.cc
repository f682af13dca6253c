// JWT verification (cpp-jwt + OpenSSL) and JWKS loading.
#include "auth/jwt_verifier.h"

#include <jwt/jwt.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

namespace analytics::auth {
namespace {

using common::Result;
using common::Status;
using nlohmann::json;

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
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

Result<std::string> PemFromParams(const char* key_type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, key_type, nullptr));
  EVP_PKEY* raw_key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw_key, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    return Status::InvalidArgument("OpenSSL rejected the key material");
  }
  std::unique_ptr<EVP_PKEY, PkeyFree> key(raw_key);
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) {
    return Status::Internal("cannot serialize a public key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> RsaJwkToPem(const json& jwk) {
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
  return PemFromParams("RSA", bld.get());
}

Result<std::string> EcJwkToPem(const json& jwk) {
  if (jwk.value("crv", std::string()) != "P-256") return Status::InvalidArgument("only EC curve P-256 is supported");
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
  return PemFromParams("EC", bld.get());
}

Status Unauthenticated(std::string reason) { return Status::Unauthenticated(std::move(reason)); }

// Reads an integer-valued NumericDate claim; fractional values are truncated.
bool ReadNumericDate(const json& payload, const char* name, int64_t& out) {
  auto it = payload.find(name);
  if (it == payload.end() || !it->is_number()) return false;
  out = it->is_number_float() ? static_cast<int64_t>(it->get<double>()) : it->get<int64_t>();
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
    std::string kid = jwk.value("kid", std::string());
    std::string kty = jwk.value("kty", std::string());
    std::string use = jwk.value("use", std::string("sig"));
    if (use != "sig") continue;  // encryption keys are not for us
    PublicKey key;
    Result<std::string> pem = Status::InvalidArgument("unsupported key type '" + kty + "'");
    if (kty == "RSA") {
      key.alg = "RS256";
      pem = RsaJwkToPem(jwk);
    } else if (kty == "EC") {
      key.alg = "ES256";
      pem = EcJwkToPem(jwk);
    }
    if (!pem.ok()) return Status::InvalidArgument(where + " (kid '" + kid + "'): " + pem.status().message());
    std::string declared_alg = jwk.value("alg", key.alg);
    if (declared_alg != key.alg) {
      return Status::InvalidArgument(where + " (kid '" + kid + "'): alg " + declared_alg + " does not fit kty " + kty);
    }
    key.pem = std::move(pem).value();
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
  const std::string alg = header["alg"].get<std::string>();
  const std::string kid = header.contains("kid") && header["kid"].is_string() ? header["kid"].get<std::string>() : "";
  if (second_dot + 1 == token.size()) return Unauthenticated("unsigned tokens are not accepted");

  std::string key;
  if (alg == "HS256") {
    if (options_.hs256_secret.empty()) return Unauthenticated("HS256 tokens are not accepted by this deployment");
    key = options_.hs256_secret;
  } else if (alg == "RS256" || alg == "ES256") {
    const PublicKey* found = nullptr;
    if (auto it = public_keys_.find(kid); it != public_keys_.end()) {
      found = &it->second;
    } else if (kid.empty()) {
      // No kid: usable only when exactly one key of this algorithm exists.
      for (const auto& [unused, candidate] : public_keys_) {
        if (candidate.alg == alg) {
          if (found != nullptr) return Unauthenticated("token has no kid and several keys could match");
          found = &candidate;
        }
      }
    }
    if (found == nullptr) return Unauthenticated("no key for this token (kid '" + kid + "')");
    if (found->alg != alg) return Unauthenticated("token alg " + alg + " does not match key " + kid);
    key = found->pem;
  } else {
    return Unauthenticated("unsupported token algorithm '" + alg + "'");
  }

  std::error_code ec;
  json payload;
  try {
    using namespace jwt::params;
    // exp is checked below (with our own leeway arithmetic); cpp-jwt checks the algorithm and the signature.
    auto decoded = jwt::decode(jwt::string_view(token.data(), token.size()), algorithms({alg}), ec, secret(key),
                               verify(true), leeway(static_cast<uint32_t>(options_.leeway_seconds)));
    if (ec) {
      if (ec == jwt::VerificationErrc::TokenExpired) return Unauthenticated("token expired");
      if (ec == jwt::VerificationErrc::ImmatureSignature) return Unauthenticated("token not yet valid (nbf)");
      if (ec == jwt::VerificationErrc::InvalidSignature) return Unauthenticated("invalid token signature");
      return Unauthenticated("invalid token: " + ec.message());
    }
    payload = decoded.payload().create_json_obj();
  } catch (const std::exception& e) {
    return Unauthenticated(std::string("invalid token: ") + e.what());
  } catch (...) {
    return Unauthenticated("invalid token");
  }
  if (!payload.is_object()) return Unauthenticated("token payload is not a JSON object");

  Principal principal;
  if (!ReadNumericDate(payload, "exp", principal.expires_at)) return Unauthenticated("token has no numeric exp");
  if (principal.expires_at + options_.leeway_seconds < now_seconds) return Unauthenticated("token expired");
  int64_t not_before = 0;
  if (payload.contains("nbf")) {
    if (!ReadNumericDate(payload, "nbf", not_before)) return Unauthenticated("token nbf is not a number");
    if (not_before - options_.leeway_seconds > now_seconds) return Unauthenticated("token not yet valid (nbf)");
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
