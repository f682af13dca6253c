// Unit tests for auth::JwtVerifier and auth::IssueHs256Token.
//
// Every token here is built independently of the code under test: the test signs with OpenSSL EVP directly
// (HMAC-SHA256/512, RSA PKCS#1 v1.5 with SHA-256/512, ECDSA P-256 converted from DER to raw R||S), encodes with
// its own base64url, and derives the JWKS from freshly generated keys. Only the verifier is cpp-jwt based.
#include "auth/jwt_verifier.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_env.h"

namespace analytics::auth {
namespace {

using common::StatusCode;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------------------
// Independent JOSE helpers.

constexpr char kB64UrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string B64Url(std::string_view bytes) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kB64UrlAlphabet[(buffer >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kB64UrlAlphabet[(buffer << (6 - bits)) & 0x3F]);
  return out;  // unpadded, as JWS requires
}

std::string B64UrlDecode(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const char* pos = std::char_traits<char>::find(kB64UrlAlphabet, 64, c);
    if (pos == nullptr) throw std::runtime_error("test helper: not base64url");
    buffer = (buffer << 6) | static_cast<uint32_t>(pos - kB64UrlAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

std::vector<std::string> SplitToken(const std::string& token) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string HmacRaw(std::string_view digest, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  std::string digest_name(digest);
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, digest_name.c_str(), nullptr, key.data(), key.size(),
                reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof(out),
                &out_len) == nullptr) {
    throw std::runtime_error("test helper: HMAC failed");
  }
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string DigestSign(EVP_PKEY* key, const EVP_MD* md, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
          1) {
    throw std::runtime_error("test helper: DigestSign init failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    throw std::runtime_error("test helper: DigestSign failed");
  }
  sig.resize(len);
  return sig;
}

// ECDSA signatures come out of OpenSSL as DER SEQUENCE{r, s}; JWS (RFC 7518 3.4) wants raw R||S, 32 bytes each.
std::string DerToRawP256(const std::string& der) {
  const unsigned char* cursor = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())), &ECDSA_SIG_free);
  if (!sig) throw std::runtime_error("test helper: bad DER ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string raw(64, '\0');
  if (BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32) != 32 ||
      BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32) != 32) {
    throw std::runtime_error("test helper: R or S too large");
  }
  return raw;
}

std::string SigningInput(const json& header, const json& payload) {
  return B64Url(header.dump()) + "." + B64Url(payload.dump());
}

std::string SignHmac(const json& header, const json& payload, std::string_view key,
                     std::string_view digest = "SHA256") {
  std::string input = SigningInput(header, payload);
  return input + "." + B64Url(HmacRaw(digest, key, input));
}

std::string SignRsa(const json& header, const json& payload, EVP_PKEY* key, const EVP_MD* md = EVP_sha256()) {
  std::string input = SigningInput(header, payload);
  return input + "." + B64Url(DigestSign(key, md, input));
}

std::string SignEcRaw(const json& header, const json& payload, EVP_PKEY* key) {
  std::string input = SigningInput(header, payload);
  return input + "." + B64Url(DerToRawP256(DigestSign(key, EVP_sha256(), input)));
}

std::string SignEcDer(const json& header, const json& payload, EVP_PKEY* key) {
  std::string input = SigningInput(header, payload);
  return input + "." + B64Url(DigestSign(key, EVP_sha256(), input));
}

std::string BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) throw std::runtime_error("test helper: no BN param");
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
  BN_free(bn);
  return bytes;
}

json RsaJwk(EVP_PKEY* key, const std::string& kid) {
  json jwk = {{"kty", "RSA"},
              {"use", "sig"},
              {"n", B64Url(BnParam(key, OSSL_PKEY_PARAM_RSA_N))},
              {"e", B64Url(BnParam(key, OSSL_PKEY_PARAM_RSA_E))}};
  if (!kid.empty()) jwk["kid"] = kid;
  return jwk;
}

json EcJwk(EVP_PKEY* key, const std::string& kid, const std::string& crv = "P-256") {
  unsigned char point[256];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len) != 1 ||
      point[0] != 0x04 || len % 2 != 1) {
    throw std::runtime_error("test helper: no uncompressed EC point");
  }
  const size_t coord = (len - 1) / 2;
  json jwk = {{"kty", "EC"},
              {"crv", crv},
              {"x", B64Url(std::string_view(reinterpret_cast<const char*>(point) + 1, coord))},
              {"y", B64Url(std::string_view(reinterpret_cast<const char*>(point) + 1 + coord, coord))}};
  if (!kid.empty()) jwk["kid"] = kid;
  return jwk;
}

std::string PublicKeyPem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) throw std::runtime_error("test helper: PEM failed");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string Jwks(std::initializer_list<json> keys) { return json{{"keys", json::array_t(keys)}}.dump(); }

constexpr char kSecret[] = "an-hs256-secret-of-at-least-32-bytes!!";

// ---------------------------------------------------------------------------------------------------------

class JwtVerifierTest : public ::testing::Test {
 protected:
  // Keys are generated on first use (RSA-2048 generation is slow under the sanitizers) and live for the
  // whole process.
  static EVP_PKEY* Rsa() {
    static const PkeyPtr key = Generated(EVP_RSA_gen(2048));
    return key.get();
  }
  static EVP_PKEY* Rsa2() {
    static const PkeyPtr key = Generated(EVP_RSA_gen(2048));
    return key.get();
  }
  static EVP_PKEY* Ec() {
    static const PkeyPtr key = Generated(EVP_EC_gen("P-256"));
    return key.get();
  }

  // cpp-jwt (inside the verifier) also consults the wall clock, so "now" is the real time.
  void SetUp() override { now_ = static_cast<int64_t>(std::time(nullptr)); }

  json Claims() const {
    return json{{"sub", "user-42"}, {"exp", now_ + 600}, {"iat", now_}, {"roles", {"developer"}},
                {"game_ids", {"g-1"}}};
  }

  static json HsHeader() { return json{{"alg", "HS256"}, {"typ", "JWT"}}; }
  static json Header(const std::string& alg, const std::string& kid) {
    json header = {{"alg", alg}, {"typ", "JWT"}};
    if (!kid.empty()) header["kid"] = kid;
    return header;
  }

  static JwtVerifierOptions HsOptions() {
    JwtVerifierOptions options;
    options.hs256_secret = kSecret;
    return options;
  }
  static JwtVerifierOptions JwksOptions() {
    JwtVerifierOptions options;
    options.jwks_json = Jwks({RsaJwk(Rsa(), "rsa-1"), EcJwk(Ec(), "ec-1")});
    return options;
  }

  static void ExpectUnauthenticated(const JwtVerifier& verifier, const std::string& token, int64_t now,
                                    const std::string& what) {
    auto result = verifier.Verify(token, now);
    ASSERT_FALSE(result.ok()) << what << ": accepted";
    EXPECT_EQ(result.status().code(), StatusCode::kUnauthenticated) << what << ": " << result.status().ToString();
    EXPECT_FALSE(result.status().message().empty()) << what;
  }

  int64_t now_ = 0;

 private:
  static PkeyPtr Generated(EVP_PKEY* key) {
    if (key == nullptr) throw std::runtime_error("test setup: key generation failed");
    return PkeyPtr(key);
  }
};

// --- Valid tokens -----------------------------------------------------------------------------------------

TEST_F(JwtVerifierTest, ValidHs256TokenYieldsPrincipal) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  EXPECT_EQ(verifier->jwks_key_count(), 0u);
  json claims = Claims();
  claims["roles"] = {"developer", "service"};
  claims["game_ids"] = json::array({"g-1", 42});
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  EXPECT_EQ(principal.subject, "user-42");
  EXPECT_EQ(principal.roles, (std::set<Role>{Role::kDeveloper, Role::kService}));
  EXPECT_EQ(principal.game_ids, (std::set<std::string>{"g-1", "42"}));
  EXPECT_EQ(principal.expires_at, now_ + 600);
  EXPECT_TRUE(principal.MaySeeGame("anything"));  // service sees all games
}

TEST_F(JwtVerifierTest, ValidRs256TokenYieldsPrincipal) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  EXPECT_EQ(verifier->jwks_key_count(), 2u);
  json claims = Claims();
  claims["roles"] = {"platform_admin", "marketing_manager"};
  claims["game_ids"] = json::array({7, "game-b"});
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignRsa(Header("RS256", "rsa-1"), claims, Rsa()), now_));
  EXPECT_EQ(principal.subject, "user-42");
  EXPECT_EQ(principal.roles, (std::set<Role>{Role::kPlatformAdmin, Role::kMarketingManager}));
  EXPECT_EQ(principal.game_ids, (std::set<std::string>{"7", "game-b"}));
  EXPECT_EQ(principal.expires_at, now_ + 600);
}

TEST_F(JwtVerifierTest, ValidEs256TokenYieldsPrincipal) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  json claims = Claims();
  claims["game_ids"] = json::array({"g-1", "g-2"});
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignEcRaw(Header("ES256", "ec-1"), claims, Ec()), now_));
  EXPECT_EQ(principal.subject, "user-42");
  EXPECT_EQ(principal.roles, std::set<Role>{Role::kDeveloper});
  EXPECT_EQ(principal.game_ids, (std::set<std::string>{"g-1", "g-2"}));
  EXPECT_TRUE(principal.MaySeeGame("g-2"));
  EXPECT_FALSE(principal.MaySeeGame("g-3"));  // a developer only sees own games
}

TEST_F(JwtVerifierTest, TokenWithoutRolesOrGamesHasEmptySets) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = {{"sub", "svc"}, {"exp", now_ + 60}};
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  EXPECT_TRUE(principal.roles.empty());
  EXPECT_TRUE(principal.game_ids.empty());
}

TEST_F(JwtVerifierTest, UnknownRoleNamesAreIgnored) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["roles"] = {"superuser", "developer", "PLATFORM_ADMIN", "admin"};
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  EXPECT_EQ(principal.roles, std::set<Role>{Role::kDeveloper});
  EXPECT_FALSE(principal.SeesAllGames());
}

// --- Time claims ------------------------------------------------------------------------------------------

TEST_F(JwtVerifierTest, ExpiredBeyondLeewayIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));  // leeway 30 s
  json claims = Claims();
  claims["exp"] = now_ - 120;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "exp 120 s ago");
}

TEST_F(JwtVerifierTest, ExpiredWithinLeewayIsAccepted) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["exp"] = now_ - 10;
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  EXPECT_EQ(principal.expires_at, now_ - 10);
}

TEST_F(JwtVerifierTest, ZeroLeewayRejectsJustExpiredToken) {
  JwtVerifierOptions options = HsOptions();
  options.leeway_seconds = 0;
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  json claims = Claims();
  claims["exp"] = now_ - 10;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "exp 10 s ago, no leeway");
}

TEST_F(JwtVerifierTest, ExpiryIsCheckedAgainstTheGivenNow) {
  // Valid by the wall clock, expired at the `now_seconds` the caller passes.
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  std::string token = SignHmac(HsHeader(), Claims(), kSecret);  // exp = now + 600
  EXPECT_OK(verifier->Verify(token, now_ + 600 + 30));
  ExpectUnauthenticated(*verifier, token, now_ + 600 + 31, "now past exp + leeway");
}

TEST_F(JwtVerifierTest, NotBeforeInTheFutureIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["nbf"] = now_ + 300;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "nbf in 300 s");
}

TEST_F(JwtVerifierTest, NotBeforeWithinLeewayIsAccepted) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["nbf"] = now_ + 10;
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  claims["nbf"] = now_ - 3600;
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
}

TEST_F(JwtVerifierTest, NonNumericNotBeforeIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["nbf"] = "yesterday";
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "nbf is a string");
}

TEST_F(JwtVerifierTest, MissingOrNonNumericExpIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims.erase("exp");
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "no exp");
  claims["exp"] = std::to_string(now_ + 600);
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "exp is a string");
  claims["exp"] = nullptr;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "exp is null");
}

// BUG (src/auth/jwt_verifier.cc:221, in cpp-jwt's jwt_object::verify reached from there): the nbf check is
// done in unsigned arithmetic (`nbf - leeway` as uint64_t), so any nbf smaller than the leeway (e.g. nbf = 0)
// wraps around and the token is refused as "not yet valid".
TEST_F(JwtVerifierTest, NotBeforeSmallerThanLeewayIsAccepted) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["nbf"] = 0;
  auto result = verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_);
  EXPECT_TRUE(result.ok()) << "BUG: nbf=0 (long past) is refused: " << result.status().ToString();
}

// BUG (src/auth/jwt_verifier.cc:221): Verify takes `now_seconds`, and its own exp/nbf checks use it, but
// cpp-jwt's decode(verify(true)) checks exp and nbf a second time against the wall clock. A token valid at
// the given `now_seconds` is refused when the wall clock disagrees.
TEST_F(JwtVerifierTest, ExpiryIsJudgedOnlyAtTheGivenNow) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["exp"] = now_ - 7200;  // expired two hours ago by the wall clock
  auto result = verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_ - 7260);
  EXPECT_TRUE(result.ok()) << "BUG: token valid at now_seconds refused by the wall clock: "
                           << result.status().ToString();
}

TEST_F(JwtVerifierTest, NotBeforeIsJudgedOnlyAtTheGivenNow) {  // same BUG as above, for nbf
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["nbf"] = now_ + 3600;
  claims["exp"] = now_ + 7200;
  auto result = verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_ + 3700);
  EXPECT_TRUE(result.ok()) << "BUG: token valid at now_seconds refused by the wall clock: "
                           << result.status().ToString();
}

// BUG (src/auth/jwt_verifier.cc:239): `principal.expires_at + options_.leeway_seconds` overflows int64_t when a
// (validly signed) token carries exp near INT64_MAX: undefined behaviour; UBSan aborts the process, an
// unsanitized build wraps to a negative number and refuses the token as expired. Run in a child process so
// the abort cannot take the other tests down.
TEST_F(JwtVerifierTest, HugeExpDoesNotOverflow) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["exp"] = std::numeric_limits<int64_t>::max();
  const std::string token = SignHmac(HsHeader(), claims, kSecret);
  const int64_t now = now_;
  EXPECT_EXIT(
      {
        auto result = verifier->Verify(token, now);
        std::_Exit(result.ok() ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "BUG: exp = INT64_MAX overflows in the expiry check";
}

// --- Signatures and algorithms ----------------------------------------------------------------------------

TEST_F(JwtVerifierTest, WrongHsSecretIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), Claims(), "another-secret-of-at-least-32-bytes!!"), now_,
                        "wrong secret");
}

TEST_F(JwtVerifierTest, TamperedPayloadIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  for (bool use_ec : {false, true}) {
    std::string token = use_ec ? SignEcRaw(Header("ES256", "ec-1"), Claims(), Ec())
                               : SignRsa(Header("RS256", "rsa-1"), Claims(), Rsa());
    ASSERT_OK(verifier->Verify(token, now_));
    auto parts = SplitToken(token);
    json escalated = Claims();
    escalated["roles"] = {"platform_admin"};
    ExpectUnauthenticated(*verifier, parts[0] + "." + B64Url(escalated.dump()) + "." + parts[2], now_,
                          use_ec ? "ES256 payload swapped" : "RS256 payload swapped");
  }
  ASSERT_OK_AND_ASSIGN(auto hs_verifier, JwtVerifier::Create(HsOptions()));
  auto parts = SplitToken(SignHmac(HsHeader(), Claims(), kSecret));
  json escalated = Claims();
  escalated["sub"] = "someone-else";
  ExpectUnauthenticated(*hs_verifier, parts[0] + "." + B64Url(escalated.dump()) + "." + parts[2], now_,
                        "HS256 payload swapped");
}

TEST_F(JwtVerifierTest, TamperedSignatureIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  std::string token = SignRsa(Header("RS256", "rsa-1"), Claims(), Rsa());
  auto parts = SplitToken(token);
  std::string sig = B64UrlDecode(parts[2]);
  sig[10] = static_cast<char>(sig[10] ^ 0x01);
  ExpectUnauthenticated(*verifier, parts[0] + "." + parts[1] + "." + B64Url(sig), now_, "flipped RS256 bit");
}

TEST_F(JwtVerifierTest, AlgNoneIsAlwaysRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  for (const char* alg : {"none", "None", "NONE"}) {
    json header = {{"alg", alg}, {"typ", "JWT"}};
    std::string unsigned_token = SigningInput(header, Claims()) + ".";
    ExpectUnauthenticated(*verifier, unsigned_token, now_, std::string("alg ") + alg + ", empty signature");
    // A "signature" made with the real secret must not rescue an alg=none header.
    std::string with_sig = SignHmac(header, Claims(), kSecret);
    ExpectUnauthenticated(*verifier, with_sig, now_, std::string("alg ") + alg + ", with a signature");
  }
}

TEST_F(JwtVerifierTest, EmptySignatureWithRealAlgIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  ExpectUnauthenticated(*verifier, SigningInput(HsHeader(), Claims()) + ".", now_, "HS256, empty signature");
}

TEST_F(JwtVerifierTest, UnsupportedAlgorithmsAreRejected) {
  JwtVerifierOptions options = JwksOptions();
  options.hs256_secret = kSecret;
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  // Correctly signed, but with algorithms the verifier does not accept.
  ExpectUnauthenticated(*verifier, SignHmac(Header("HS512", ""), Claims(), kSecret, "SHA512"), now_, "HS512");
  ExpectUnauthenticated(*verifier, SignHmac(Header("HS384", ""), Claims(), kSecret, "SHA384"), now_, "HS384");
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS512", "rsa-1"), Claims(), Rsa(), EVP_sha512()), now_, "RS512");
  ExpectUnauthenticated(*verifier, SignRsa(Header("PS256", "rsa-1"), Claims(), Rsa()), now_, "PS256");
  ExpectUnauthenticated(*verifier, SignHmac(Header("hs256", ""), Claims(), kSecret), now_, "lower-case hs256");
}

TEST_F(JwtVerifierTest, HsTokensAreRefusedWithoutASecret) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), Claims(), kSecret), now_, "HS256 without a secret");
}

TEST_F(JwtVerifierTest, AsymmetricTokensAreRefusedWithoutAJwks) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", "rsa-1"), Claims(), Rsa()), now_, "RS256 without JWKS");
  ExpectUnauthenticated(*verifier, SignEcRaw(Header("ES256", ""), Claims(), Ec()), now_, "ES256 without JWKS");
}

// The classic algorithm-confusion attack: the attacker HMACs the token with the RSA *public* key (PEM text,
// exactly as the verifier serializes it) and claims HS256.
TEST_F(JwtVerifierTest, AlgorithmConfusionWithRsaPublicKeyAsHmacSecretIsRejected) {
  const std::string pem = PublicKeyPem(Rsa());
  ASSERT_NE(pem.find("BEGIN PUBLIC KEY"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(auto jwks_only, JwtVerifier::Create(JwksOptions()));
  ExpectUnauthenticated(*jwks_only, SignHmac(Header("HS256", "rsa-1"), Claims(), pem), now_,
                        "HS256 keyed with the RSA PEM, kid rsa-1");
  ExpectUnauthenticated(*jwks_only, SignHmac(Header("HS256", ""), Claims(), pem), now_,
                        "HS256 keyed with the RSA PEM, no kid");
  // With both an HS secret and the JWKS configured, the PEM is still not an HMAC key.
  JwtVerifierOptions both = JwksOptions();
  both.hs256_secret = kSecret;
  ASSERT_OK_AND_ASSIGN(auto mixed, JwtVerifier::Create(both));
  ExpectUnauthenticated(*mixed, SignHmac(Header("HS256", "rsa-1"), Claims(), pem), now_,
                        "HS256 keyed with the RSA PEM, secret configured");
}

TEST_F(JwtVerifierTest, AlgorithmMustMatchTheKeyNamedByKid) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  ExpectUnauthenticated(*verifier, SignEcRaw(Header("ES256", "rsa-1"), Claims(), Ec()), now_, "ES256 with RSA kid");
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", "ec-1"), Claims(), Rsa()), now_, "RS256 with EC kid");
  // Right kid and alg, but signed with a different key of the right type.
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", "rsa-1"), Claims(), Rsa2()), now_, "RS256, other key");
}

TEST_F(JwtVerifierTest, Es256SignatureMustBeRawNotDer) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  ExpectUnauthenticated(*verifier, SignEcDer(Header("ES256", "ec-1"), Claims(), Ec()), now_, "DER ECDSA signature");
}

TEST_F(JwtVerifierTest, UnknownKidIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", "rsa-404"), Claims(), Rsa()), now_, "unknown kid");
}

TEST_F(JwtVerifierTest, TokenWithoutKidUsesTheOnlyKeyOfItsAlgorithm) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwksOptions()));  // one RSA, one EC key
  EXPECT_OK(verifier->Verify(SignRsa(Header("RS256", ""), Claims(), Rsa()), now_));
  EXPECT_OK(verifier->Verify(SignEcRaw(Header("ES256", ""), Claims(), Ec()), now_));
}

TEST_F(JwtVerifierTest, TokenWithoutKidIsRejectedWhenSeveralKeysMatch) {
  JwtVerifierOptions options;
  options.jwks_json = Jwks({RsaJwk(Rsa(), "rsa-1"), RsaJwk(Rsa2(), "rsa-2")});
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", ""), Claims(), Rsa()), now_, "no kid, two RSA keys");
  EXPECT_OK(verifier->Verify(SignRsa(Header("RS256", "rsa-2"), Claims(), Rsa2()), now_));
}

TEST_F(JwtVerifierTest, JwkWithoutKidMatchesTokenWithoutKid) {
  JwtVerifierOptions options;
  options.jwks_json = Jwks({EcJwk(Ec(), "")});
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  EXPECT_EQ(verifier->jwks_key_count(), 1u);
  EXPECT_OK(verifier->Verify(SignEcRaw(Header("ES256", ""), Claims(), Ec()), now_));
}

// --- Issuer, audience, subject, claim types ---------------------------------------------------------------

TEST_F(JwtVerifierTest, IssuerIsRequiredWhenConfigured) {
  JwtVerifierOptions options = HsOptions();
  options.issuer = "https://auth.platform";
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  json claims = Claims();
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "no iss");
  claims["iss"] = "https://evil";
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "wrong iss");
  claims["iss"] = json::array({"https://auth.platform"});
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "iss not a string");
  claims["iss"] = "https://auth.platform";
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
}

TEST_F(JwtVerifierTest, IssuerIsIgnoredWhenNotConfigured) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims["iss"] = "whoever";
  claims["aud"] = "whatever";
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
}

TEST_F(JwtVerifierTest, AudienceIsRequiredWhenConfigured) {
  JwtVerifierOptions options = HsOptions();
  options.audience = "analytics";
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  json claims = Claims();
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "no aud");
  claims["aud"] = "analytics";
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  claims["aud"] = json::array({"billing", "analytics"});
  EXPECT_OK(verifier->Verify(SignHmac(HsHeader(), claims, kSecret), now_));
  claims["aud"] = "billing";
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "wrong aud");
  claims["aud"] = json::array({"billing", "analytics-v2"});
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "aud array without it");
  claims["aud"] = json::array();
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "empty aud array");
  claims["aud"] = 5;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "aud is a number");
}

TEST_F(JwtVerifierTest, MissingOrEmptySubIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  json claims = Claims();
  claims.erase("sub");
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "no sub");
  claims["sub"] = "";
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "empty sub");
  claims["sub"] = 42;
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, "numeric sub");
}

TEST_F(JwtVerifierTest, MalformedRolesAndGameIdsAreRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  struct Case {
    const char* what;
    const char* claim;
    json value;
  };
  const Case cases[] = {
      {"roles is a string", "roles", "developer"},
      {"roles is an object", "roles", json{{"developer", true}}},
      {"roles item is a number", "roles", json::array({"developer", 1})},
      {"game_ids is a string", "game_ids", "g-1"},
      {"game_ids item is a float", "game_ids", json::array({1.5})},
      {"game_ids item is an object", "game_ids", json::array({json::object()})},
      {"game_ids item is a boolean", "game_ids", json::array({true})},
  };
  for (const Case& c : cases) {
    json claims = Claims();
    claims[c.claim] = c.value;
    ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), claims, kSecret), now_, c.what);
  }
}

// --- Malformed tokens ------------------------------------------------------------------------------------

TEST_F(JwtVerifierTest, MalformedTokensAreRejectedWithoutCrash) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  const std::string good = SignHmac(HsHeader(), Claims(), kSecret);
  const auto parts = SplitToken(good);
  ASSERT_EQ(parts.size(), 3u);
  const std::string not_json_header = B64Url("this is not json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"one part", parts[0]},
      {"two parts", parts[0] + "." + parts[1]},
      {"four parts", good + "." + parts[2]},
      {"only dots", ".."},
      {"empty header and payload", ".." + parts[2]},
      {"bad base64 header", "!!!." + parts[1] + "." + parts[2]},
      {"base64 with padding", parts[0] + "=." + parts[1] + "." + parts[2]},
      {"standard base64 alphabet", "ab+/." + parts[1] + "." + parts[2]},
      {"impossible base64 length", "abcde." + parts[1] + "." + parts[2]},
      {"header not JSON", not_json_header + "." + parts[1] + "." + parts[2]},
      {"header is an array", B64Url("[\"HS256\"]") + "." + parts[1] + "." + parts[2]},
      {"header without alg", B64Url("{\"typ\":\"JWT\"}") + "." + parts[1] + "." + parts[2]},
      {"header alg not a string", B64Url("{\"alg\":256}") + "." + parts[1] + "." + parts[2]},
      {"bad base64 payload", parts[0] + ".%%%." + parts[2]},
      {"bad base64 signature", parts[0] + "." + parts[1] + ".***"},
      {"too large", std::string(20000, 'a') + "." + parts[1] + "." + parts[2]},
  };
  for (const auto& [what, token] : cases) ExpectUnauthenticated(*verifier, token, now_, what);
}

TEST_F(JwtVerifierTest, ValidlySignedButMalformedPayloadsAreRejected) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  const std::string header = B64Url(HsHeader().dump());
  for (const std::string payload_text : {"not json", "[1,2,3]", "\"a string\"", "null", "42", "{\"sub\":"}) {
    std::string input = header + "." + B64Url(payload_text);
    std::string token = input + "." + B64Url(HmacRaw("SHA256", kSecret, input));
    ExpectUnauthenticated(*verifier, token, now_, "payload " + payload_text);
  }
  // A header that is JSON but with a non-string typ.
  json odd_header = {{"alg", "HS256"}, {"typ", 7}};
  ExpectUnauthenticated(*verifier, SignHmac(odd_header, Claims(), kSecret), now_, "typ is a number");
}

// --- JWKS loading -----------------------------------------------------------------------------------------

TEST_F(JwtVerifierTest, EmptyOptionsCreateAVerifierThatRefusesEverything) {
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(JwtVerifierOptions{}));
  EXPECT_EQ(verifier->jwks_key_count(), 0u);
  ExpectUnauthenticated(*verifier, SignHmac(HsHeader(), Claims(), kSecret), now_, "HS256, nothing configured");
}

TEST_F(JwtVerifierTest, EncryptionKeysInTheJwksAreSkipped) {
  json enc = RsaJwk(Rsa2(), "enc-1");
  enc["use"] = "enc";
  JwtVerifierOptions options;
  options.jwks_json = Jwks({RsaJwk(Rsa(), "rsa-1"), enc});
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  EXPECT_EQ(verifier->jwks_key_count(), 1u);
  ExpectUnauthenticated(*verifier, SignRsa(Header("RS256", "enc-1"), Claims(), Rsa2()), now_, "encryption key");
}

TEST_F(JwtVerifierTest, JwksWithMatchingDeclaredAlgIsAccepted) {
  json rsa = RsaJwk(Rsa(), "rsa-1");
  rsa["alg"] = "RS256";
  json ec = EcJwk(Ec(), "ec-1");
  ec["alg"] = "ES256";
  JwtVerifierOptions options;
  options.jwks_json = Jwks({rsa, ec});
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  EXPECT_EQ(verifier->jwks_key_count(), 2u);
}

TEST_F(JwtVerifierTest, BadJwksFailsCreate) {
  PkeyPtr small_rsa(EVP_RSA_gen(1024));
  PkeyPtr p384(EVP_EC_gen("P-384"));
  ASSERT_TRUE(small_rsa && p384);
  json rsa_as_es = RsaJwk(Rsa(), "k");
  rsa_as_es["alg"] = "ES256";
  json ec_as_rs = EcJwk(Ec(), "k");
  ec_as_rs["alg"] = "RS256";
  json rsa_rs512 = RsaJwk(Rsa(), "k");
  rsa_rs512["alg"] = "RS512";
  json ec_p384_claimed_p256 = EcJwk(p384.get(), "k", "P-256");
  json rsa_no_n = RsaJwk(Rsa(), "k");
  rsa_no_n.erase("n");
  json ec_bad_x = EcJwk(Ec(), "k");
  ec_bad_x["x"] = "AAAA";
  json ec_off_curve = EcJwk(Ec(), "k");
  ec_off_curve["y"] = B64Url(std::string(32, '\x01'));
  json rsa_bad_b64 = RsaJwk(Rsa(), "k");
  rsa_bad_b64["n"] = "***";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not JSON", "{keys: ["},
      {"JSON array", "[]"},
      {"no keys member", "{}"},
      {"keys not an array", "{\"keys\": {}}"},
      {"key not an object", "{\"keys\": [\"RSA\"]}"},
      {"RSA 1024 bits", Jwks({RsaJwk(small_rsa.get(), "small")})},
      {"EC on P-384", Jwks({EcJwk(p384.get(), "p384", "P-384")})},
      {"P-384 coordinates claiming P-256", Jwks({ec_p384_claimed_p256})},
      {"duplicate kid", Jwks({RsaJwk(Rsa(), "same"), EcJwk(Ec(), "same")})},
      {"duplicate missing kid", Jwks({RsaJwk(Rsa(), ""), RsaJwk(Rsa2(), "")})},
      {"RSA key declaring ES256", Jwks({rsa_as_es})},
      {"EC key declaring RS256", Jwks({ec_as_rs})},
      {"RSA key declaring RS512", Jwks({rsa_rs512})},
      {"symmetric key", Jwks({json{{"kty", "oct"}, {"kid", "k"}, {"k", B64Url(kSecret)}}})},
      {"no kty", Jwks({json{{"kid", "k"}, {"n", "AQAB"}, {"e", "AQAB"}}})},
      {"RSA without n", Jwks({rsa_no_n})},
      {"RSA n not base64url", Jwks({rsa_bad_b64})},
      {"EC x too short", Jwks({ec_bad_x})},
      {"EC point not on the curve", Jwks({ec_off_curve})},
  };
  for (const auto& [what, jwks] : cases) {
    JwtVerifierOptions options;
    options.jwks_json = jwks;
    auto result = JwtVerifier::Create(options);
    ASSERT_FALSE(result.ok()) << what << ": accepted";
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << what << ": " << result.status().ToString();
  }
}

TEST_F(JwtVerifierTest, BadKeyErrorNamesTheKid) {
  PkeyPtr small_rsa(EVP_RSA_gen(1024));
  JwtVerifierOptions options;
  options.jwks_json = Jwks({RsaJwk(Rsa(), "good"), RsaJwk(small_rsa.get(), "legacy-2019")});
  auto result = JwtVerifier::Create(options);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("legacy-2019"), std::string::npos) << result.status().ToString();
}

// BUG (src/auth/jwt_verifier.cc:148-150, 162 and 91): JWK members are read with nlohmann's
// `json::value(key, std::string())`, which throws type_error when the member exists with another type. A JWKS
// with e.g. `"kid": 5` makes Create throw instead of returning InvalidArgument (the exception crosses the
// component's public header and, at start-up, terminates the service with an unhelpful message).
TEST_F(JwtVerifierTest, NonStringJwkMembersAreInvalidArgumentNotExceptions) {
  const char* members[] = {"kid", "kty", "use", "alg", "crv"};
  for (const char* member : members) {
    json jwk = EcJwk(Ec(), "ec-1");
    jwk[member] = 5;
    JwtVerifierOptions options;
    options.jwks_json = Jwks({jwk});
    std::optional<common::Result<std::unique_ptr<JwtVerifier>>> result;
    EXPECT_NO_THROW(result.emplace(JwtVerifier::Create(options)))
        << "BUG: Create throws for a JWK whose " << member << " is a number";
    if (result.has_value()) {
      EXPECT_FALSE(result->ok()) << member;
      EXPECT_EQ(result->status().code(), StatusCode::kInvalidArgument) << member;
    }
  }
}

// --- IssueHs256Token --------------------------------------------------------------------------------------

TEST_F(JwtVerifierTest, IssuedTokenVerifiesAndCarriesTheRequestedClaims) {
  TokenRequest request;
  request.subject = "dev-7";
  request.roles = {"developer", "marketing_manager"};
  request.game_ids = {"g-1", "g-2"};
  request.ttl_seconds = 900;
  request.issuer = "https://auth.platform";
  request.audience = "analytics";
  ASSERT_OK_AND_ASSIGN(std::string token, IssueHs256Token(request, kSecret, now_));

  // Decode with our own base64url and check the claims and the signature independently.
  auto parts = SplitToken(token);
  ASSERT_EQ(parts.size(), 3u) << token;
  json header = json::parse(B64UrlDecode(parts[0]));
  json payload = json::parse(B64UrlDecode(parts[1]));
  EXPECT_EQ(header["alg"], "HS256");
  EXPECT_EQ(payload["sub"], "dev-7");
  EXPECT_EQ(payload["roles"], json::array({"developer", "marketing_manager"}));
  EXPECT_EQ(payload["game_ids"], json::array({"g-1", "g-2"}));
  EXPECT_EQ(payload["iat"], now_);
  EXPECT_EQ(payload["exp"], now_ + 900);
  EXPECT_EQ(payload["iss"], "https://auth.platform");
  EXPECT_EQ(payload["aud"], "analytics");
  EXPECT_EQ(parts[2], B64Url(HmacRaw("SHA256", kSecret, parts[0] + "." + parts[1])));

  JwtVerifierOptions options = HsOptions();
  options.issuer = "https://auth.platform";
  options.audience = "analytics";
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(options));
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(token, now_));
  EXPECT_EQ(principal.subject, "dev-7");
  EXPECT_EQ(principal.roles, (std::set<Role>{Role::kDeveloper, Role::kMarketingManager}));
  EXPECT_EQ(principal.game_ids, (std::set<std::string>{"g-1", "g-2"}));
  EXPECT_EQ(principal.expires_at, now_ + 900);

  // A different secret does not verify it.
  JwtVerifierOptions other;
  other.hs256_secret = "another-secret-of-at-least-32-bytes!!";
  ASSERT_OK_AND_ASSIGN(auto other_verifier, JwtVerifier::Create(other));
  ExpectUnauthenticated(*other_verifier, token, now_, "issued token, other secret");
}

TEST_F(JwtVerifierTest, IssuedTokenOmitsIssuerAndAudienceWhenNotRequested) {
  TokenRequest request;
  request.subject = "svc";
  request.roles = {"service"};
  ASSERT_OK_AND_ASSIGN(std::string token, IssueHs256Token(request, kSecret, now_));
  auto parts = SplitToken(token);
  ASSERT_EQ(parts.size(), 3u);
  json payload = json::parse(B64UrlDecode(parts[1]));
  EXPECT_FALSE(payload.contains("iss"));
  EXPECT_FALSE(payload.contains("aud"));
  EXPECT_EQ(payload["exp"], now_ + 3600);  // default ttl
  EXPECT_EQ(payload["game_ids"], json::array());
  ASSERT_OK_AND_ASSIGN(auto verifier, JwtVerifier::Create(HsOptions()));
  ASSERT_OK_AND_ASSIGN(Principal principal, verifier->Verify(token, now_));
  EXPECT_TRUE(principal.Has(Role::kService));
}

TEST_F(JwtVerifierTest, IssuingWithoutSecretFails) {
  TokenRequest request;
  request.subject = "svc";
  auto result = IssueHs256Token(request, "", now_);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kFailedPrecondition);
}

TEST(RoleNamesTest, RoundTripAndUnknownNames) {
  for (Role role : {Role::kPlatformAdmin, Role::kDeveloper, Role::kMarketingManager, Role::kService}) {
    EXPECT_EQ(RoleFromName(RoleName(role)), role);
  }
  EXPECT_EQ(RoleName(Role::kMarketingManager), "marketing_manager");
  EXPECT_EQ(RoleFromName("Developer"), std::nullopt);
  EXPECT_EQ(RoleFromName(""), std::nullopt);
}

}  // namespace
}  // namespace analytics::auth
