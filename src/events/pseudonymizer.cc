// AES-SIV pseudonyms and HMAC-SHA-256 hashes with OpenSSL 3; see pseudonymizer.h.
#include "events/pseudonymizer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <vector>

#include "events/string_cache.h"

namespace analytics::events {
namespace {

using common::Result;
using common::Status;

constexpr size_t kSivTagBytes = 16;
constexpr char kFormatVersion = '\x01';  // first plaintext byte of every pseudonym
constexpr std::string_view kHashSubKeyLabel = "analytics-service/pd-hash/v1";

[[noreturn]] void DieOpenSsl(const char* what) {
  std::fprintf(stderr, "analytics events: OpenSSL failure in %s\n", what);
  std::abort();
}

// ---- base64url without padding ----
constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void AppendBase64Url(std::string& out, const unsigned char* data, size_t size) {
  size_t byte_idx = 0;
  for (; byte_idx + 3 <= size; byte_idx += 3) {
    const uint32_t triple = (uint32_t{data[byte_idx]} << 16) | (uint32_t{data[byte_idx + 1]} << 8) |
                            data[byte_idx + 2];
    out.push_back(kBase64Url[(triple >> 18) & 63]);
    out.push_back(kBase64Url[(triple >> 12) & 63]);
    out.push_back(kBase64Url[(triple >> 6) & 63]);
    out.push_back(kBase64Url[triple & 63]);
  }
  const size_t rest = size - byte_idx;
  if (rest == 1) {
    const uint32_t triple = uint32_t{data[byte_idx]} << 16;
    out.push_back(kBase64Url[(triple >> 18) & 63]);
    out.push_back(kBase64Url[(triple >> 12) & 63]);
  } else if (rest == 2) {
    const uint32_t triple = (uint32_t{data[byte_idx]} << 16) | (uint32_t{data[byte_idx + 1]} << 8);
    out.push_back(kBase64Url[(triple >> 18) & 63]);
    out.push_back(kBase64Url[(triple >> 12) & 63]);
    out.push_back(kBase64Url[(triple >> 6) & 63]);
  }
}

int Base64Value(char c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

// Strict decoding: no padding, no stray characters, unused trailing bits zero (one text per value).
bool DecodeBase64(std::string_view text, bool url, std::string& out) {
  if (text.size() % 4 == 1) return false;
  out.clear();
  out.reserve(text.size() * 3 / 4);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    const int value = Base64Value(c, url);
    if (value < 0) return false;
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return (buffer & ((1u << bits) - 1)) == 0;
}

bool DecodeHex(std::string_view text, std::string& out) {
  if (text.size() % 2 != 0) return false;
  auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (size_t char_idx = 0; char_idx < text.size(); char_idx += 2) {
    const int high = nibble(text[char_idx]);
    const int low = nibble(text[char_idx + 1]);
    if (high < 0 || low < 0) return false;
    out.push_back(static_cast<char>(high * 16 + low));
  }
  return true;
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// Per-thread scratch contexts: a context is consumed by one SIV operation or one digest, so each call copies
// the keyed template into one of these.
EVP_CIPHER_CTX* ThreadCipherCtx() {
  thread_local CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) DieOpenSsl("EVP_CIPHER_CTX_new");
  return ctx.get();
}
EVP_MD_CTX* ThreadMdCtx() {
  thread_local MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) DieOpenSsl("EVP_MD_CTX_new");
  return ctx.get();
}

// The per-thread level in front of the shared caches (string_cache.h): 1024 slots each for pseudonyms and
// hashes, 256 KiB per thread that pseudonymizes, allocated on its first lookup.
constexpr size_t kThreadCacheSlots = 1024;
struct ThreadCaches {
  ThreadStringCache pseudonyms{kThreadCacheSlots};
  ThreadStringCache hashes{kThreadCacheSlots};
};
ThreadCaches& ThreadFront() {
  thread_local ThreadCaches caches;
  return caches;
}

}  // namespace

struct Pseudonymizer::Impl {
  explicit Impl(size_t cache_entries) : pseudonym_cache(cache_entries), hash_cache(cache_entries) {}
  ~Impl() {
    OPENSSL_cleanse(siv_key.data(), siv_key.size());
    if (cipher != nullptr) EVP_CIPHER_free(cipher);
  }

  std::string siv_key;
  EVP_CIPHER* cipher = nullptr;
  CipherCtxPtr encrypt_template;  // keyed, never used directly: copied per message (read-only, thread-safe)
  CipherCtxPtr decrypt_template;  // likewise, for Reveal
  MdCtxPtr hmac_inner;            // SHA-256 state after (hash_key ^ ipad)
  MdCtxPtr hmac_outer;            // SHA-256 state after (hash_key ^ opad)
  StringCache pseudonym_cache;
  StringCache hash_cache;
  const uint64_t cache_owner = NewStringCacheOwner();  // this key's entries in the per-thread caches

  // `out` = the result for `key`: from this thread's cache, else the shared one, else `compute(out)` (the
  // result is then cached in both). Both levels are bypassed when caching is disabled.
  template <typename Compute>
  void CachedResult(StringCache& shared, ThreadStringCache ThreadCaches::*thread_level, std::string_view key,
                    std::string& out, Compute compute) {
    if (!shared.enabled()) {
      compute(out);
      return;
    }
    const uint64_t hash = StringCacheHash(key);
    ThreadStringCache& front = ThreadFront().*thread_level;
    if (front.Get(cache_owner, key, hash, out)) return;
    if (!shared.Get(key, hash, out)) {
      compute(out);
      shared.Put(key, hash, out);
    }
    front.Put(cache_owner, key, hash, out);
  }

  // Seals kFormatVersion || user_id. The version byte leaves room for a future format and keeps the message
  // non-empty (OpenSSL skips a zero-length update, and SIV then never runs).
  std::string Encrypt(std::string_view user_id) const {
    EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
    if (EVP_CIPHER_CTX_copy(ctx, encrypt_template.get()) != 1) DieOpenSsl("EVP_CIPHER_CTX_copy");
    std::string plaintext;
    plaintext.reserve(1 + user_id.size());
    plaintext.push_back(kFormatVersion);
    plaintext.append(user_id);
    std::vector<unsigned char> buffer(kSivTagBytes + plaintext.size() + 16);
    int out_len = 0;
    if (EVP_EncryptUpdate(ctx, buffer.data() + kSivTagBytes, &out_len,
                          reinterpret_cast<const unsigned char*>(plaintext.data()),
                          static_cast<int>(plaintext.size())) != 1) {
      DieOpenSsl("EVP_EncryptUpdate");
    }
    int final_len = 0;
    if (EVP_EncryptFinal_ex(ctx, buffer.data() + kSivTagBytes + out_len, &final_len) != 1) {
      DieOpenSsl("EVP_EncryptFinal_ex");
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kSivTagBytes, buffer.data()) != 1) {
      DieOpenSsl("EVP_CTRL_AEAD_GET_TAG");
    }
    std::string pseudonym(kPrefix);
    pseudonym.reserve(kPrefix.size() + (kSivTagBytes + out_len + final_len) * 4 / 3 + 4);
    AppendBase64Url(pseudonym, buffer.data(), kSivTagBytes + out_len + final_len);
    return pseudonym;
  }

  // The user id; false when the tag does not verify (not made with this key, or altered).
  bool Decrypt(std::string_view sealed, std::string& plaintext) const {
    if (sealed.size() <= kSivTagBytes) return false;  // the message holds at least the version byte
    EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
    if (EVP_CIPHER_CTX_copy(ctx, decrypt_template.get()) != 1) DieOpenSsl("EVP_CIPHER_CTX_copy");
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kSivTagBytes, const_cast<char*>(sealed.data())) != 1) {
      return false;
    }
    const std::string_view ciphertext = sealed.substr(kSivTagBytes);
    plaintext.assign(ciphertext.size() + 16, '\0');
    int out_len = 0;
    if (EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(plaintext.data()), &out_len,
                          reinterpret_cast<const unsigned char*>(ciphertext.data()),
                          static_cast<int>(ciphertext.size())) != 1) {
      return false;
    }
    int final_len = 0;
    if (EVP_DecryptFinal_ex(ctx, reinterpret_cast<unsigned char*>(plaintext.data()) + out_len, &final_len) != 1) {
      return false;
    }
    plaintext.resize(static_cast<size_t>(out_len + final_len));
    if (plaintext.empty() || plaintext[0] != kFormatVersion) return false;
    plaintext.erase(0, 1);
    return true;
  }

  std::string Hmac(std::string_view value) const {
    EVP_MD_CTX* ctx = ThreadMdCtx();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_MD_CTX_copy_ex(ctx, hmac_inner.get()) != 1 || EVP_DigestUpdate(ctx, value.data(), value.size()) != 1 ||
        EVP_DigestFinal_ex(ctx, digest, &digest_len) != 1 || EVP_MD_CTX_copy_ex(ctx, hmac_outer.get()) != 1 ||
        EVP_DigestUpdate(ctx, digest, digest_len) != 1 || EVP_DigestFinal_ex(ctx, digest, &digest_len) != 1) {
      DieOpenSsl("HMAC-SHA-256");
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex(digest_len * 2, '0');
    for (unsigned int byte_idx = 0; byte_idx < digest_len; ++byte_idx) {
      hex[2 * byte_idx] = kHex[digest[byte_idx] >> 4];
      hex[2 * byte_idx + 1] = kHex[digest[byte_idx] & 0xF];
    }
    return hex;
  }
};

Pseudonymizer::Pseudonymizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pseudonymizer::~Pseudonymizer() = default;

Result<std::unique_ptr<Pseudonymizer>> Pseudonymizer::Create(std::string_view secret_key,
                                                             PseudonymizerOptions options) {
  const char* cipher_name = nullptr;
  if (secret_key.size() == 32) {
    cipher_name = "AES-128-SIV";
  } else if (secret_key.size() == 64) {
    cipher_name = "AES-256-SIV";
  } else {
    return Status::InvalidArgument("pseudonymization key must be 32 or 64 bytes, got " +
                                   std::to_string(secret_key.size()));
  }
  auto impl = std::make_unique<Impl>(options.cache_entries);
  impl->siv_key = std::string(secret_key);
  impl->cipher = EVP_CIPHER_fetch(nullptr, cipher_name, nullptr);
  if (impl->cipher == nullptr) {
    return Status::Internal(std::string("OpenSSL provides no ") + cipher_name);
  }
  impl->encrypt_template.reset(EVP_CIPHER_CTX_new());
  impl->decrypt_template.reset(EVP_CIPHER_CTX_new());
  const auto* key_bytes = reinterpret_cast<const unsigned char*>(impl->siv_key.data());
  if (!impl->encrypt_template || !impl->decrypt_template ||
      EVP_EncryptInit_ex2(impl->encrypt_template.get(), impl->cipher, key_bytes, nullptr, nullptr) != 1 ||
      EVP_DecryptInit_ex2(impl->decrypt_template.get(), impl->cipher, key_bytes, nullptr, nullptr) != 1) {
    return Status::Internal(std::string("cannot initialize ") + cipher_name);
  }

  // Hash sub-key, then the two HMAC-SHA-256 half states (RFC 2104) so each hash is two digest copies.
  unsigned char hash_key[EVP_MAX_MD_SIZE];
  unsigned int hash_key_len = 0;
  if (HMAC(EVP_sha256(), secret_key.data(), static_cast<int>(secret_key.size()),
           reinterpret_cast<const unsigned char*>(kHashSubKeyLabel.data()), kHashSubKeyLabel.size(), hash_key,
           &hash_key_len) == nullptr) {
    return Status::Internal("cannot derive the hash sub-key");
  }
  unsigned char inner_pad[64];
  unsigned char outer_pad[64];
  for (size_t byte_idx = 0; byte_idx < 64; ++byte_idx) {
    const unsigned char key_byte = byte_idx < hash_key_len ? hash_key[byte_idx] : 0;
    inner_pad[byte_idx] = key_byte ^ 0x36;
    outer_pad[byte_idx] = key_byte ^ 0x5c;
  }
  OPENSSL_cleanse(hash_key, sizeof(hash_key));
  impl->hmac_inner.reset(EVP_MD_CTX_new());
  impl->hmac_outer.reset(EVP_MD_CTX_new());
  const bool hmac_ok = impl->hmac_inner && impl->hmac_outer &&
                       EVP_DigestInit_ex2(impl->hmac_inner.get(), EVP_sha256(), nullptr) == 1 &&
                       EVP_DigestUpdate(impl->hmac_inner.get(), inner_pad, sizeof(inner_pad)) == 1 &&
                       EVP_DigestInit_ex2(impl->hmac_outer.get(), EVP_sha256(), nullptr) == 1 &&
                       EVP_DigestUpdate(impl->hmac_outer.get(), outer_pad, sizeof(outer_pad)) == 1;
  OPENSSL_cleanse(inner_pad, sizeof(inner_pad));
  OPENSSL_cleanse(outer_pad, sizeof(outer_pad));
  if (!hmac_ok) return Status::Internal("cannot initialize HMAC-SHA-256");

  // Self-test: a round trip proves the cipher works before intake depends on it.
  std::string round_trip;
  const std::string sealed_probe = impl->Encrypt("self-test");
  std::string sealed;
  if (!DecodeBase64(std::string_view(sealed_probe).substr(kPrefix.size()), /*url=*/true, sealed) ||
      !impl->Decrypt(sealed, round_trip) || round_trip != "self-test") {
    return Status::Internal(std::string(cipher_name) + " self-test failed");
  }
  return std::unique_ptr<Pseudonymizer>(new Pseudonymizer(std::move(impl)));
}

std::string Pseudonymizer::Pseudonymize(std::string_view user_id) const {
  std::string pseudonym;
  Pseudonymize(user_id, pseudonym);
  return pseudonym;
}

void Pseudonymizer::Pseudonymize(std::string_view user_id, std::string& out) const {
  impl_->CachedResult(impl_->pseudonym_cache, &ThreadCaches::pseudonyms, user_id, out, [&](std::string& result) {
    if (IsOwnPseudonym(user_id)) {
      result.assign(user_id);  // already treated (a replayed dead letter, a read-back event)
    } else {
      result = impl_->Encrypt(user_id);
    }
  });
}

void Pseudonymizer::PrefetchPseudonym(std::string_view user_id) const {
  if (!impl_->pseudonym_cache.enabled()) return;
  const uint64_t hash = StringCacheHash(user_id);
  ThreadFront().pseudonyms.Prefetch(hash);
  impl_->pseudonym_cache.Prefetch(hash);
}

bool Pseudonymizer::IsOwnPseudonym(std::string_view text) const {
  if (text.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string sealed;
  std::string user_id;
  return DecodeBase64(text.substr(kPrefix.size()), /*url=*/true, sealed) && impl_->Decrypt(sealed, user_id);
}

Result<std::string> Pseudonymizer::Reveal(std::string_view pseudonym) const {
  const Status not_ours = Status::InvalidArgument("not a pseudonym made with this key");
  if (pseudonym.substr(0, kPrefix.size()) != kPrefix) return not_ours;
  std::string sealed;
  std::string user_id;
  if (!DecodeBase64(pseudonym.substr(kPrefix.size()), /*url=*/true, sealed) || !impl_->Decrypt(sealed, user_id)) {
    return not_ours;
  }
  return user_id;
}

std::string Pseudonymizer::Hash(std::string_view value) const {
  std::string hash;
  Hash(value, hash);
  return hash;
}

void Pseudonymizer::Hash(std::string_view value, std::string& out) const {
  impl_->CachedResult(impl_->hash_cache, &ThreadCaches::hashes, value, out,
                      [&](std::string& result) { result = impl_->Hmac(value); });
}

size_t Pseudonymizer::CachedPseudonymsForTest() const { return impl_->pseudonym_cache.Size(); }

Result<std::string> DecodeSecretKey(std::string_view text) {
  std::string key;
  if ((text.size() == 64 || text.size() == 128) && DecodeHex(text, key)) return key;
  std::string_view unpadded = text;
  while (!unpadded.empty() && unpadded.back() == '=') unpadded.remove_suffix(1);
  for (bool url : {false, true}) {
    if (DecodeBase64(unpadded, url, key) && (key.size() == 32 || key.size() == 64)) return key;
  }
  return Status::InvalidArgument(
      "pseudonymization key must be 32 or 64 bytes, written as hex or base64 (" + std::to_string(text.size()) +
      " characters given)");
}

}  // namespace analytics::events
