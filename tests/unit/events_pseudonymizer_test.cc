// Personal data (docs/events.md section 6): Pseudonymizer (AES-SIV pseudonyms, HMAC hashes), IP truncation,
// free-text masking, and the treatments the Normalizer applies at any depth of `data`, in extension
// attributes and in dead-letter payloads. Ends with a check that no raw personal value survives in any output.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "events/event_json.h"
#include "events/normalizer.h"
#include "events/personal_data.h"
#include "events/pseudonymizer.h"
#include "events/string_cache.h"
#include "support/test_env.h"

namespace analytics::events {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1748736000000;  // 2025-06-01T00:00:00Z

std::string Key(char fill, size_t size = 32) { return std::string(size, fill); }

std::unique_ptr<Pseudonymizer> Make(const std::string& key, PseudonymizerOptions options = {}) {
  auto created = Pseudonymizer::Create(key, options);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  return created.ok() ? std::move(created).value() : nullptr;
}

// Plain base64url decoding (no padding), written independently of the implementation under test.
std::string Base64UrlDecode(std::string_view text) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    buffer = (buffer << 6) | static_cast<uint32_t>(kAlphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

std::string Hex(const unsigned char* data, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t byte_idx = 0; byte_idx < size; ++byte_idx) {
    out.push_back(kHex[data[byte_idx] >> 4]);
    out.push_back(kHex[data[byte_idx] & 0xF]);
  }
  return out;
}

// ---- Pseudonymizer ----

TEST(PseudonymizerTest, RejectsKeysOfTheWrongSize) {
  EXPECT_EQ(Pseudonymizer::Create(Key('a', 16)).status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pseudonymizer::Create(Key('a', 33)).status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pseudonymizer::Create("").status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_OK(Pseudonymizer::Create(Key('a', 64)));
}

TEST(PseudonymizerTest, DeterministicAndStableAcrossInstances) {
  auto first = Make(Key('a'));
  auto second = Make(Key('a'), PseudonymizerOptions{0});  // another "process", no cache
  const std::string user = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
  const std::string pseudonym = first->Pseudonymize(user);
  EXPECT_EQ(first->Pseudonymize(user), pseudonym);
  EXPECT_EQ(second->Pseudonymize(user), pseudonym);
  EXPECT_EQ(pseudonym.substr(0, 2), "u_");
  EXPECT_EQ(pseudonym.size(), 73u);  // "u_" + base64url(16-byte tag + 1 version byte + 36 bytes)
  EXPECT_EQ(pseudonym.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(pseudonym.find(user), std::string::npos);
  EXPECT_NE(first->Pseudonymize("7c9e6679-7425-40de-944b-e07fc1f90ae8"), pseudonym);
}

TEST(PseudonymizerTest, IsAesSivOfTheVersionedIdWithNoNonce) {
  // Independent computation with OpenSSL's AES-128-SIV: tag || ciphertext of 0x01 || id.
  const std::string key = Key('\x2a');
  const std::string user = "user-123";
  const std::string message = std::string(1, '\x01') + user;
  EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-128-SIV", nullptr);
  ASSERT_NE(cipher, nullptr);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ASSERT_EQ(EVP_EncryptInit_ex2(ctx, cipher, reinterpret_cast<const unsigned char*>(key.data()), nullptr, nullptr), 1);
  unsigned char sealed[64];
  int length = 0;
  ASSERT_EQ(EVP_EncryptUpdate(ctx, sealed + 16, &length, reinterpret_cast<const unsigned char*>(message.data()),
                              static_cast<int>(message.size())),
            1);
  int final_length = 0;
  ASSERT_EQ(EVP_EncryptFinal_ex(ctx, sealed + 16 + length, &final_length), 1);
  ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, sealed), 1);
  EVP_CIPHER_CTX_free(ctx);
  EVP_CIPHER_free(cipher);

  const std::string pseudonym = Make(key)->Pseudonymize(user);
  const std::string decoded = Base64UrlDecode(std::string_view(pseudonym).substr(2));
  EXPECT_EQ(Hex(reinterpret_cast<const unsigned char*>(decoded.data()), decoded.size()),
            Hex(sealed, static_cast<size_t>(16 + length + final_length)));
}

TEST(PseudonymizerTest, RevealRoundTrips) {
  auto pseudonymizer = Make(Key('a'));
  const std::vector<std::string> users = {"7c9e6679-7425-40de-944b-e07fc1f90ae7", "a", "prefix:123",
                                          std::string(128, 'z'), "", "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd"};
  for (const std::string& user : users) {
    auto revealed = pseudonymizer->Reveal(pseudonymizer->Pseudonymize(user));
    ASSERT_OK(revealed);
    EXPECT_EQ(*revealed, user);
  }
}

TEST(PseudonymizerTest, KeysAreSeparate) {
  auto first = Make(Key('a'));
  auto second = Make(Key('b'));
  auto wide = Make(Key('a', 64));  // AES-256-SIV
  const std::string user = "user-42";
  EXPECT_NE(first->Pseudonymize(user), second->Pseudonymize(user));
  EXPECT_NE(first->Pseudonymize(user), wide->Pseudonymize(user));
  EXPECT_EQ(second->Reveal(first->Pseudonymize(user)).status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_EQ(first->Reveal(wide->Pseudonymize(user)).status().code(), common::StatusCode::kInvalidArgument);
  ASSERT_OK(wide->Reveal(wide->Pseudonymize(user)));
}

TEST(PseudonymizerTest, RevealRejectsAnythingElse) {
  auto pseudonymizer = Make(Key('a'));
  std::string pseudonym = pseudonymizer->Pseudonymize("user-42");
  std::string tampered = pseudonym;
  tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
  for (const std::string& bad : {std::string("user-42"), std::string("u_"), std::string("u_abc"), tampered,
                                 pseudonym.substr(2), "x_" + pseudonym.substr(2), pseudonym + "=",
                                 pseudonym.substr(0, pseudonym.size() - 1), pseudonym + "AA",
                                 std::string("u_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!")}) {
    auto revealed = pseudonymizer->Reveal(bad);
    EXPECT_FALSE(revealed.ok()) << bad;
    EXPECT_EQ(revealed.status().code(), common::StatusCode::kInvalidArgument);
  }
}

TEST(PseudonymizerTest, OwnPseudonymsPassThrough) {
  auto pseudonymizer = Make(Key('a'));
  auto other = Make(Key('b'));
  const std::string pseudonym = pseudonymizer->Pseudonymize("user-42");
  EXPECT_TRUE(pseudonymizer->IsOwnPseudonym(pseudonym));
  EXPECT_EQ(pseudonymizer->Pseudonymize(pseudonym), pseudonym);
  EXPECT_EQ(Make(Key('a'), PseudonymizerOptions{0})->Pseudonymize(pseudonym), pseudonym);  // without cache
  // Another key's pseudonym, or something that only looks like one, is an ordinary id.
  EXPECT_FALSE(other->IsOwnPseudonym(pseudonym));
  const std::string foreign = other->Pseudonymize(pseudonym);
  EXPECT_NE(foreign, pseudonym);
  ASSERT_OK_AND_ASSIGN(std::string revealed, other->Reveal(foreign));
  EXPECT_EQ(revealed, pseudonym);
  const std::string look_alike = "u_" + std::string(71, 'A');
  EXPECT_FALSE(pseudonymizer->IsOwnPseudonym(look_alike));
  EXPECT_NE(pseudonymizer->Pseudonymize(look_alike), look_alike);
  EXPECT_FALSE(pseudonymizer->IsOwnPseudonym("user-42"));
}

TEST(PseudonymizerTest, HashIsHmacSha256UnderTheDerivedSubKey) {
  const std::string secret = Key('s');
  const std::string label = "analytics-service/pd-hash/v1";
  unsigned char sub_key[32];
  unsigned int sub_key_length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(label.data()), label.size(), sub_key, &sub_key_length);
  const std::string value = "dev-4f1c9a";
  unsigned char digest[32];
  unsigned int digest_length = 0;
  HMAC(EVP_sha256(), sub_key, static_cast<int>(sub_key_length), reinterpret_cast<const unsigned char*>(value.data()),
       value.size(), digest, &digest_length);

  auto pseudonymizer = Make(secret);
  EXPECT_EQ(pseudonymizer->Hash(value), Hex(digest, digest_length));
  EXPECT_EQ(pseudonymizer->Hash(value), pseudonymizer->Hash(value));  // equal inputs stay equal (cached)
  EXPECT_EQ(Make(secret, PseudonymizerOptions{0})->Hash(value), Hex(digest, digest_length));
  EXPECT_NE(pseudonymizer->Hash(value), pseudonymizer->Hash("dev-4f1c9b"));
  EXPECT_NE(pseudonymizer->Hash(value), Make(Key('t'))->Hash(value));
  EXPECT_EQ(pseudonymizer->Hash("").size(), 64u);
}

TEST(PseudonymizerTest, CacheIsBoundedAndConcurrentUseAgrees) {
  auto reference = Make(Key('c'), PseudonymizerOptions{0});
  auto cached = Make(Key('c'), PseudonymizerOptions{64});  // tiny: constant eviction
  std::vector<std::string> users;
  for (int user_idx = 0; user_idx < 300; ++user_idx) users.push_back("user-" + std::to_string(user_idx));
  std::vector<std::string> expected;
  for (const std::string& user : users) expected.push_back(reference->Pseudonymize(user));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < 4; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int round = 0; round < 20; ++round) {
        for (size_t user_idx = 0; user_idx < users.size(); ++user_idx) {
          const size_t pick = (user_idx * 7 + static_cast<size_t>(thread_idx * 13 + round)) % users.size();
          if (cached->Pseudonymize(users[pick]) != expected[pick]) ++mismatches;
          if (cached->Hash(users[pick]) != reference->Hash(users[pick])) ++mismatches;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_LE(cached->CachedPseudonymsForTest(), 64u + 16u);  // per-shard rounding
  EXPECT_GT(cached->CachedPseudonymsForTest(), 0u);
}

TEST(PseudonymizerTest, InstancesSharingAThreadNeverMixResults) {
  // The per-thread cache is shared by every instance on a thread: alternate two keys over the same ids.
  auto first = Make(Key('f'));
  auto second = Make(Key('s'));
  auto first_reference = Make(Key('f'), PseudonymizerOptions{0});
  auto second_reference = Make(Key('s'), PseudonymizerOptions{0});
  for (int round = 0; round < 3; ++round) {
    for (int user_idx = 0; user_idx < 50; ++user_idx) {
      const std::string user = "3f6c1a52-0d1e-4c4b-9a8e-" + std::to_string(100000000000 + user_idx);
      EXPECT_EQ(first->Pseudonymize(user), first_reference->Pseudonymize(user));
      EXPECT_EQ(second->Pseudonymize(user), second_reference->Pseudonymize(user));
      EXPECT_EQ(first->Hash(user), first_reference->Hash(user));
      EXPECT_EQ(second->Hash(user), second_reference->Hash(user));
    }
  }
}

TEST(PseudonymizerTest, LongIdsAreServedWithoutThePerThreadCache) {
  auto cached = Make(Key('l'));
  auto reference = Make(Key('l'), PseudonymizerOptions{0});
  const std::string long_id(128, 'x');  // its pseudonym does not fit a per-thread slot
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(cached->Pseudonymize(long_id), reference->Pseudonymize(long_id));
    EXPECT_EQ(cached->Hash(long_id), reference->Hash(long_id));
  }
  EXPECT_EQ(cached->CachedPseudonymsForTest(), 1u);
}

// ---- String caches (string_cache.h) ----

TEST(StringCacheTest, ReturnsWhatWasPut) {
  StringCache cache(16);
  std::string value;
  EXPECT_FALSE(cache.Get("a", StringCacheHash("a"), value));
  cache.Put("a", StringCacheHash("a"), "alpha");
  ASSERT_TRUE(cache.Get("a", StringCacheHash("a"), value));
  EXPECT_EQ(value, "alpha");
  cache.Put("a", StringCacheHash("a"), "other");  // a cached key keeps its value
  ASSERT_TRUE(cache.Get("a", StringCacheHash("a"), value));
  EXPECT_EQ(value, "alpha");
  EXPECT_EQ(cache.Size(), 1u);
}

TEST(StringCacheTest, EqualHashesDoNotMakeEqualKeys) {
  StringCache cache(16);
  cache.Put("a", 42, "alpha");
  std::string value;
  EXPECT_FALSE(cache.Get("b", 42, value));
  cache.Put("b", 42, "beta");
  ASSERT_TRUE(cache.Get("a", 42, value));
  EXPECT_EQ(value, "alpha");
  ASSERT_TRUE(cache.Get("b", 42, value));
  EXPECT_EQ(value, "beta");
}

TEST(StringCacheTest, StaysBoundedAndDisabledCacheNeverHits) {
  StringCache cache(8);
  for (int key_idx = 0; key_idx < 1000; ++key_idx) {
    const std::string key = "key-" + std::to_string(key_idx);
    cache.Put(key, StringCacheHash(key), "value-" + std::to_string(key_idx));
  }
  EXPECT_LE(cache.Size(), 8u);
  std::string value;
  for (int key_idx = 0; key_idx < 1000; ++key_idx) {  // whatever survived is still right
    const std::string key = "key-" + std::to_string(key_idx);
    if (cache.Get(key, StringCacheHash(key), value)) {
      EXPECT_EQ(value, "value-" + std::to_string(key_idx));
    }
  }
  StringCache disabled(0);
  EXPECT_FALSE(disabled.enabled());
  disabled.Put("a", StringCacheHash("a"), "alpha");
  EXPECT_FALSE(disabled.Get("a", StringCacheHash("a"), value));
  EXPECT_EQ(disabled.Size(), 0u);
}

TEST(ThreadStringCacheTest, HitsOnlyForTheSameOwnerAndKey) {
  ThreadStringCache cache(64);
  const uint64_t owner = NewStringCacheOwner();
  const uint64_t other_owner = NewStringCacheOwner();
  EXPECT_NE(owner, other_owner);
  std::string value;
  EXPECT_FALSE(cache.Get(owner, "a", StringCacheHash("a"), value));
  cache.Put(owner, "a", StringCacheHash("a"), "alpha");
  ASSERT_TRUE(cache.Get(owner, "a", StringCacheHash("a"), value));
  EXPECT_EQ(value, "alpha");
  EXPECT_FALSE(cache.Get(other_owner, "a", StringCacheHash("a"), value));
  EXPECT_FALSE(cache.Get(owner, "b", StringCacheHash("a"), value));  // same slot and tag, another key
  EXPECT_FALSE(cache.Get(owner, "ab", StringCacheHash("a"), value));
}

TEST(ThreadStringCacheTest, ANewPairReplacesTheSlot) {
  ThreadStringCache cache(1);  // one slot: every key lands in it
  const uint64_t owner = NewStringCacheOwner();
  std::string value;
  cache.Put(owner, "a", StringCacheHash("a"), "alpha");
  cache.Put(owner, "b", StringCacheHash("b"), "beta");
  EXPECT_FALSE(cache.Get(owner, "a", StringCacheHash("a"), value));
  ASSERT_TRUE(cache.Get(owner, "b", StringCacheHash("b"), value));
  EXPECT_EQ(value, "beta");
}

TEST(ThreadStringCacheTest, PairsTooLargeForASlotAreNotCached) {
  ThreadStringCache cache(4);
  const uint64_t owner = NewStringCacheOwner();
  const std::string key(40, 'k');
  const std::string fits(ThreadStringCache::kMaxPairBytes - key.size(), 'v');
  const std::string other_key = "other";
  const std::string too_long(ThreadStringCache::kMaxPairBytes - other_key.size() + 1, 'v');
  std::string value;
  cache.Put(owner, key, StringCacheHash(key), fits);
  ASSERT_TRUE(cache.Get(owner, key, StringCacheHash(key), value));
  EXPECT_EQ(value, fits);
  cache.Put(owner, other_key, StringCacheHash(key), too_long);  // not stored: the old pair stays
  EXPECT_FALSE(cache.Get(owner, other_key, StringCacheHash(key), value));
  ASSERT_TRUE(cache.Get(owner, key, StringCacheHash(key), value));
  cache.Put(owner, "", StringCacheHash(""), "empty key");
  ASSERT_TRUE(cache.Get(owner, "", StringCacheHash(""), value));
  EXPECT_EQ(value, "empty key");
}

TEST(DecodeSecretKeyTest, HexAndBase64) {
  const std::string raw(32, '\xab');
  std::string hex(64, 'a');
  hex[1] = 'b';
  ASSERT_OK_AND_ASSIGN(std::string from_hex, DecodeSecretKey(hex));
  EXPECT_EQ(from_hex.size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(from_hex[0]), 0xab);
  ASSERT_OK_AND_ASSIGN(std::string from_base64, DecodeSecretKey("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="));
  EXPECT_EQ(from_base64, raw);
  ASSERT_OK_AND_ASSIGN(std::string unpadded, DecodeSecretKey("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s"));
  EXPECT_EQ(unpadded, raw);
  ASSERT_OK_AND_ASSIGN(std::string wide, DecodeSecretKey(std::string(128, 'F')));
  EXPECT_EQ(wide.size(), 64u);
  auto bad = DecodeSecretKey("too-short");
  EXPECT_EQ(bad.status().code(), common::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message().find("too-short"), std::string::npos);
}

// ---- Key-less treatments ----

TEST(TruncateIpTest, Ipv4KeepsThreeOctets) {
  EXPECT_EQ(TruncateIp("203.0.113.77"), "203.0.113.0");
  EXPECT_EQ(TruncateIp("10.0.0.255"), "10.0.0.0");
  EXPECT_EQ(TruncateIp("0.0.0.0"), "0.0.0.0");
}

TEST(TruncateIpTest, Ipv6Keeps48Bits) {
  EXPECT_EQ(TruncateIp("2001:db8:85a3::8a2e"), "2001:db8:85a3::");
  EXPECT_EQ(TruncateIp("2001:0db8:85a3:1234:5678:8a2e:0370:7334"), "2001:db8:85a3::");
  EXPECT_EQ(TruncateIp("fe80::1"), "fe80::");
  EXPECT_EQ(TruncateIp("::1"), "::");
  EXPECT_EQ(TruncateIp("2001:db8:85a3:ffff::"), "2001:db8:85a3::");
}

TEST(TruncateIpTest, NonAddressesAreNotIps) {
  for (const char* bad : {"", "localhost", "203.0.113", "203.0.113.256", "203.0.113.77:8080", "1.2.3.4 ",
                          "fe80::1%eth0", "2001:db8:::1", "[::1]", "01.2.3.4"}) {
    EXPECT_EQ(TruncateIp(bad), std::nullopt) << bad;
  }
}

TEST(MaskTextTest, EmailsAndPhonesBecomeStars) {
  EXPECT_EQ(MaskAndTruncateText("write to john.doe@example.com please"), "write to *** please");
  EXPECT_EQ(MaskAndTruncateText("a@b"), "***");
  EXPECT_EQ(MaskAndTruncateText("@handle and mail@"), "@handle and mail@");
  EXPECT_EQ(MaskAndTruncateText("call +7 (912) 345-67-89 now"), "call *** now");
  EXPECT_EQ(MaskAndTruncateText("call 89123456789"), "call ***");
  EXPECT_EQ(MaskAndTruncateText("(495) 123-4567"), "***");
  EXPECT_EQ(MaskAndTruncateText("+7-912-345-67-89, ok"), "***, ok");
  EXPECT_EQ(MaskAndTruncateText("top 100 games 2024"), "top 100 games 2024");  // short digit runs stay
  EXPECT_EQ(MaskAndTruncateText("123456 7"), "***");                            // 7 digits with a space
  EXPECT_EQ(MaskAndTruncateText("code 123456"), "code 123456");               // 6 digits stay
  EXPECT_EQ(MaskAndTruncateText("northern lights"), "northern lights");
}

TEST(MaskTextTest, CutsTo100CodePointsAfterMasking) {
  std::string cyrillic;
  for (int char_idx = 0; char_idx < 150; ++char_idx) cyrillic += "\xd0\xb9";  // U+0439, 2 bytes
  const std::string cut = MaskAndTruncateText(cyrillic);
  EXPECT_EQ(cut.size(), 200u);  // 100 code points
  const std::string masked = MaskAndTruncateText("me@x.org " + std::string(200, 'a'));
  EXPECT_EQ(masked, "*** " + std::string(96, 'a'));
}

TEST(GlobalTreatmentTest, Names) {
  EXPECT_EQ(GlobalTreatmentFor("user_id"), NameTreatment::kPseudonymize);
  EXPECT_EQ(GlobalTreatmentFor("referrer_user_id"), NameTreatment::kPseudonymize);
  EXPECT_EQ(GlobalTreatmentFor("_user_id"), NameTreatment::kPseudonymize);
  EXPECT_EQ(GlobalTreatmentFor("user_ids"), NameTreatment::kNone);
  EXPECT_EQ(GlobalTreatmentFor("userid"), NameTreatment::kNone);
  EXPECT_EQ(GlobalTreatmentFor("ip"), NameTreatment::kTruncateIp);
  EXPECT_EQ(GlobalTreatmentFor("ip_address"), NameTreatment::kTruncateIp);
  for (const char* name : {"email", "phone", "first_name", "last_name", "middle_name", "full_name", "display_name",
                           "real_name", "birth_date", "address", "password", "card_number"}) {
    EXPECT_EQ(GlobalTreatmentFor(name), NameTreatment::kDrop) << name;
  }
  EXPECT_EQ(GlobalTreatmentFor("device_id"), NameTreatment::kHash);
  EXPECT_EQ(GlobalTreatmentFor("anonymous_id"), NameTreatment::kHash);
  EXPECT_EQ(GlobalTreatmentFor("Email"), NameTreatment::kNone);  // names are case-sensitive
  EXPECT_EQ(GlobalTreatmentFor("game_id"), NameTreatment::kNone);
}

// ---- Through the Normalizer ----

class PersonalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pseudonymizer_ = Make(Key('p'));
    normalizer_ = std::make_unique<Normalizer>(NormalizerOptions{}, *pseudonymizer_);
  }

  BatchResult Process(const json& body, BodyFormat format = BodyFormat::kSingle) const {
    return normalizer_->Process(body.dump(), format, kNow);
  }

  json Event(const std::string& type, json data, const std::string& subject = "user-1") const {
    json event = {{"specversion", "1.0"}, {"id", "e-1"}, {"source", "/services/x"}, {"type", type},
                  {"time", "2025-05-01T00:00:00Z"}, {"data", std::move(data)}};
    if (!subject.empty()) event["subject"] = subject;
    return event;
  }

  json StoredData(const json& event) const {
    BatchResult result = Process(event);
    if (result.events.size() != 1) {
      ADD_FAILURE() << "not accepted: "
                    << (result.rejections.empty() ? "" : result.rejections[0].field + " " + result.rejections[0].message);
      return json();
    }
    return json::parse(result.events[0].data);
  }

  std::unique_ptr<Pseudonymizer> pseudonymizer_;
  std::unique_ptr<Normalizer> normalizer_;
};

TEST_F(PersonalDataTest, GlobalRulesApplyAtAnyDepthAndInArraysOfObjects) {
  json data = {
      {"profile",
       {{"contact",
         {{"email", "ivan@example.com"},
          {"phone", "+79123456789"},
          {"owner_user_id", "owner-1"},
          {"ip_address", "10.1.2.3"},
          {"device_id", "dev-9"},
          {"kept", "yes"}}}}},
      {"items",
       {{{"seller_user_id", "seller-2"}, {"first_name", "Ivan"}, {"price", 5}},
        {{"nested", {{{"user_id", "deep-3"}, {"anonymous_id", "anon-4"}}}}},
        "plain",
        7}},
      {"card_number", "4111111111111111"},
  };
  json stored = StoredData(Event("com.platform.misc.thing.happened.v1", data));
  const json expected = {
      {"profile",
       {{"contact",
         {{"owner_user_id", pseudonymizer_->Pseudonymize("owner-1")},
          {"ip_address", "10.1.2.0"},
          {"device_id", pseudonymizer_->Hash("dev-9")},
          {"kept", "yes"}}}}},
      {"items",
       {{{"seller_user_id", pseudonymizer_->Pseudonymize("seller-2")}, {"price", 5}},
        {{"nested", {{{"user_id", pseudonymizer_->Pseudonymize("deep-3")}, {"anonymous_id", pseudonymizer_->Hash("anon-4")}}}}},
        "plain",
        7}},
  };
  EXPECT_EQ(stored, expected);
}

TEST_F(PersonalDataTest, NestedUserIdsMustBeUserIds) {
  json data = {{"items", {{{"ok_user_id", "fine"}}, {{"seller_user_id", "not valid!"}}}}};
  BatchResult result = Process(Event("com.platform.misc.thing.happened.v1", data));
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kInvalidField);
  EXPECT_EQ(result.rejections[0].field, "data.items[1].seller_user_id");
  json numeric = {{"meta", {{"owner_user_id", 12345}}}};
  result = Process(Event("com.platform.misc.thing.happened.v1", numeric));
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].field, "data.meta.owner_user_id");
  // null carries nothing and is kept.
  EXPECT_EQ(StoredData(Event("com.platform.misc.thing.happened.v1", {{"x_user_id", nullptr}})),
            json({{"x_user_id", nullptr}}));
}

TEST_F(PersonalDataTest, TopLevelUserIdSuffixFieldsArePseudonymized) {
  json stored = StoredData(Event("com.platform.account.user.registered.v1",
                                 {{"referrer_user_id", "ref-1"}, {"email", "x@y.z"}, {"phone", "+70000000000"},
                                  {"display_name", "Ivan"}, {"auth_provider", "email"}}));
  EXPECT_EQ(stored, json({{"referrer_user_id", pseudonymizer_->Pseudonymize("ref-1")}, {"auth_provider", "email"}}));
}

TEST_F(PersonalDataTest, IpAddressesAreTruncatedOrDropped) {
  EXPECT_EQ(StoredData(Event("com.platform.misc.a.b.v1", {{"ip", "2001:db8:85a3::8a2e"}}))["ip"], "2001:db8:85a3::");
  EXPECT_EQ(StoredData(Event("com.platform.misc.a.b.v1", {{"ip", "198.51.100.7"}}))["ip"], "198.51.100.0");
  EXPECT_EQ(StoredData(Event("com.platform.misc.a.b.v1", {{"ip", "not-an-ip"}, {"k", 1}})), json({{"k", 1}}));
  EXPECT_EQ(StoredData(Event("com.platform.misc.a.b.v1", {{"ip", 3232235777}, {"k", 1}})), json({{"k", 1}}));
}

TEST_F(PersonalDataTest, SearchQueryIsMaskedAndCut) {
  json stored = StoredData(Event("com.platform.store.search.performed.v1",
                                 {{"query", "mail me at john.doe@example.com or +7 (912) 345-67-89 northern lights"},
                                  {"results_count", 0},
                                  {"anonymous_id", "anon-1"}},
                                 ""));
  EXPECT_EQ(stored["query"], "mail me at *** or *** northern lights");
  EXPECT_EQ(stored["anonymous_id"], pseudonymizer_->Hash("anon-1"));
  json long_query = StoredData(Event("com.platform.store.search.performed.v1",
                                     {{"query", std::string(1024, 'q')}, {"results_count", 0}}));
  EXPECT_EQ(long_query["query"], std::string(100, 'q'));
}

TEST_F(PersonalDataTest, QueryOfOtherTypesIsNotMasked) {
  // The mask rule is per type (search only); other types keep a property named `query`.
  json stored = StoredData(Event("com.platform.misc.a.b.v1", {{"query", "call 89123456789"}}));
  EXPECT_EQ(stored["query"], "call 89123456789");
}

TEST_F(PersonalDataTest, ReviewTextIsDroppedAndItsLengthRecorded) {
  std::string text = "\xd0\x9e\xd1\x82\xd0\xbb\xd0\xb8\xd1\x87\xd0\xbd\xd0\xbe!";  // "Отлично!": 8 code points
  json stored = StoredData(Event("com.platform.reviews.review.posted.v1",
                                 {{"game_id", "g"}, {"review_id", "r"}, {"recommended", true}, {"text", text},
                                  {"text_length", 999}}));
  EXPECT_FALSE(stored.contains("text"));
  EXPECT_EQ(stored["text_length"], 8);
}

TEST_F(PersonalDataTest, ProducerTextLengthIsKeptWhenThereIsNoText) {
  json stored = StoredData(Event("com.platform.reviews.review.posted.v1",
                                 {{"game_id", "g"}, {"review_id", "r"}, {"rating", 2}, {"text_length", 12}}));
  EXPECT_EQ(stored["text_length"], 12);
}

// A dead letter replayed once its problem is gone gives the event the original would have given.
TEST_F(PersonalDataTest, ReplayedDeadLetterEqualsTheDirectResult) {
  json original = Event("com.platform.account.user.logged_in.v1",
                        {{"auth_method", "password"}, {"ip", "203.0.113.77"}, {"device_id", "dev-4f1c9a"},
                         {"user_id", "user-1"}, {"session", {{"helper_user_id", "helper-7"}}}});
  original["time"] = "2025-06-01T02:00:00Z";  // more than an hour ahead of kNow: a dead letter
  original["traceparent"] = "00-ab-01";
  BatchResult first = Process(original);
  ASSERT_EQ(first.rejections.size(), 1u);
  ASSERT_EQ(first.rejections[0].code, RejectionCode::kEventInFuture);
  const std::string payload = first.rejections[0].payload;

  const int64_t later = kNow + 7200000;  // the time is no longer in the future
  BatchResult direct = normalizer_->Process(original.dump(), BodyFormat::kSingle, later);
  BatchResult replayed = normalizer_->ProcessTreated(payload, later);
  ASSERT_EQ(direct.events.size(), 1u);
  ASSERT_EQ(replayed.events.size(), 1u) << (replayed.rejections.empty() ? "" : replayed.rejections[0].message);
  const EventView& expected = direct.events[0];
  const EventView& actual = replayed.events[0];
  EXPECT_EQ(actual.user, expected.user);
  EXPECT_EQ(actual.user, pseudonymizer_->Pseudonymize("user-1"));
  EXPECT_EQ(actual.user_in_subject, expected.user_in_subject);
  EXPECT_EQ(json::parse(actual.data), json::parse(expected.data));
  EXPECT_EQ(json::parse(actual.data)["device_id"], pseudonymizer_->Hash("dev-4f1c9a"));
  EXPECT_EQ(actual.extensions, expected.extensions);
  EXPECT_EQ(actual.time_ms, expected.time_ms);
  EXPECT_EQ(actual.id, expected.id);

  // Through Process instead, the hashed device id would be hashed again (why ProcessTreated exists).
  BatchResult reprocessed = normalizer_->Process(payload, BodyFormat::kSingle, later);
  ASSERT_EQ(reprocessed.events.size(), 1u);
  EXPECT_EQ(reprocessed.events[0].user, expected.user);  // pseudonyms pass through either way
  EXPECT_NE(json::parse(reprocessed.events[0].data)["device_id"], pseudonymizer_->Hash("dev-4f1c9a"));
}

TEST_F(PersonalDataTest, ReadBackEventCanBeProcessedAgainWithTheSameUser) {
  json event = Event("com.platform.social.friend.added.v1", {{"friend_user_id", "friend-2"}}, "user-1");
  BatchResult first = Process(event);
  ASSERT_EQ(first.events.size(), 1u);
  BatchResult again = normalizer_->Process(ToCloudEvent(first.events[0].ToStored()).dump(), BodyFormat::kSingle, kNow);
  ASSERT_EQ(again.events.size(), 1u) << (again.rejections.empty() ? "" : again.rejections[0].message);
  EXPECT_EQ(again.events[0].user, first.events[0].user);
  EXPECT_EQ(again.events[0].data, first.events[0].data);
}

TEST_F(PersonalDataTest, PagePathLosesQueryAndFragment) {
  json stored = StoredData(Event("com.platform.store.page.viewed.v1",
                                 {{"page_type", "game"}, {"game_id", "g"},
                                  {"page_path", "/app/g/northern-lights?email=a@b.c&ref=1#reviews"}}));
  EXPECT_EQ(stored["page_path"], "/app/g/northern-lights");
}

TEST_F(PersonalDataTest, ExtensionAttributesFollowTheGlobalRules) {
  json event = Event("com.platform.misc.a.b.v1", json::object());
  event["ip"] = "203.0.113.77";
  event["email"] = "x@y.z";
  event["traceparent"] = "00-aa-01";
  BatchResult result = Process(event);
  ASSERT_EQ(result.events.size(), 1u);
  EXPECT_EQ(json::parse(result.events[0].extensions), json({{"ip", "203.0.113.0"}, {"traceparent", "00-aa-01"}}));
}

TEST_F(PersonalDataTest, RejectedEventPayloadIsTreatedToo) {
  json event = Event("com.platform.store.wishlist_item.added.v1",
                     {{"game_id", 1042},  // invalid: a number
                      {"email", "ivan@example.com"},
                      {"user_id", "user-1"},
                      {"buyer", {{"phone", "+79123456789"}, {"friend_user_id", "bad id with spaces"}}}});
  event["password"] = "hunter2";  // not a valid member either way
  BatchResult result = Process(event);
  ASSERT_EQ(result.rejections.size(), 1u);
  const json payload = json::parse(result.rejections[0].payload);
  EXPECT_EQ(payload["subject"], pseudonymizer_->Pseudonymize("user-1"));
  EXPECT_EQ(payload["data"]["user_id"], pseudonymizer_->Pseudonymize("user-1"));
  EXPECT_EQ(payload["data"]["buyer"]["friend_user_id"], pseudonymizer_->Pseudonymize("bad id with spaces"));
  EXPECT_FALSE(payload["data"].contains("email"));
  EXPECT_FALSE(payload["data"]["buyer"].contains("phone"));
  EXPECT_FALSE(payload.contains("password"));
  EXPECT_EQ(payload["data"]["game_id"], 1042);
}

TEST_F(PersonalDataTest, MemberNamesThatLookLikePersonalDataAreNotEchoed) {
  json event = Event("com.platform.misc.a.b.v1", {{"by_email", {{"ivan@mail.example", {{"x_user_id", "not valid!"}}}}}});
  BatchResult result = Process(event);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].field, "data.by_email.*.x_user_id");
  EXPECT_EQ(result.rejections[0].message.find("ivan@"), std::string::npos);

  json unknown = Event("com.platform.misc.a.b.v1", json::object());
  unknown["ivan@mail.example"] = 1;
  result = Process(unknown);
  ASSERT_EQ(result.rejections.size(), 1u);
  EXPECT_EQ(result.rejections[0].code, RejectionCode::kInvalidAttribute);
  EXPECT_EQ(result.rejections[0].field, "");
  unknown.erase("ivan@mail.example");
  unknown["Trace_Id"] = 1;
  EXPECT_EQ(Process(unknown).rejections[0].field, "Trace_Id");
}

// Every raw personal value sent in a batch (accepted and rejected events, envelope and data, nested) is
// searched for in everything the Normalizer returns.
TEST_F(PersonalDataTest, NoRawPersonalDataAnywhereInTheOutput) {
  const std::vector<std::string> raw_values = {
      "subject-raw-7731",   "datauser-raw-8842",  "friend-raw-9953",     "referrer-raw-1064",
      "deep-raw-2175",      "ivan.raw@mail.example", "+7 (916) 555-12-34", "Ivanov-Raw",
      "dev-raw-3286",       "anon-raw-4397",      "203.0.113.77",        "2001:db8:85a3::8a2e",
      "hunter2-raw",        "Raw Street 5",       "4111-1111-1111-1111", "1990-01-02-raw",
      "reviewtext-raw",     "querymail@raw.example", "9161234567",       "RawDisplayName"};
  json batch = json::array();
  // Accepted: search with masked query, review with dropped text, friend, registered, generic nested.
  batch.push_back(Event("com.platform.store.search.performed.v1",
                        {{"query", "find querymail@raw.example or 9161234567"}, {"results_count", 1},
                         {"anonymous_id", "anon-raw-4397"}, {"ip", "203.0.113.77"}},
                        ""));
  batch.push_back(Event("com.platform.reviews.review.posted.v1",
                        {{"game_id", "g"}, {"review_id", "r"}, {"rating", 3}, {"text", "reviewtext-raw"}},
                        "subject-raw-7731"));
  batch.push_back(Event("com.platform.social.friend.added.v1", {{"friend_user_id", "friend-raw-9953"}},
                        "subject-raw-7731"));
  batch.push_back(Event("com.platform.account.user.registered.v1",
                        {{"referrer_user_id", "referrer-raw-1064"}, {"email", "ivan.raw@mail.example"},
                         {"phone", "+7 (916) 555-12-34"}, {"display_name", "RawDisplayName"},
                         {"ip", "2001:db8:85a3::8a2e"}, {"device_id", "dev-raw-3286"}},
                        "subject-raw-7731"));
  json generic = Event("com.platform.misc.thing.happened.v1",
                       {{"user_id", "datauser-raw-8842"},
                        {"people", {{{"last_name", "Ivanov-Raw"}, {"x", {{"deep_user_id", "deep-raw-2175"}}}}}},
                        {"address", "Raw Street 5"}, {"card_number", "4111-1111-1111-1111"},
                        {"birth_date", "1990-01-02-raw"}, {"password", "hunter2-raw"}},
                       "");
  batch.push_back(generic);
  // Rejected: the same values in events that fail validation at various stages.
  json future = generic;
  future["time"] = "2030-01-01T00:00:00Z";
  batch.push_back(future);
  json bad_subject = Event("com.platform.misc.thing.happened.v1",
                           {{"email", "ivan.raw@mail.example"}, {"ip_address", "203.0.113.77"}},
                           "subject-raw-7731 with spaces");
  batch.push_back(bad_subject);
  json unknown_member = Event("com.platform.store.search.performed.v1",
                              {{"query", "querymail@raw.example 9161234567"}, {"device_id", "dev-raw-3286"}}, "");
  unknown_member["Email_Address"] = json::object({{"email", "ivan.raw@mail.example"}});
  batch.push_back(unknown_member);
  json mismatch = Event("com.platform.store.wishlist_item.added.v1",
                        {{"game_id", "g"}, {"user_id", "datauser-raw-8842"}}, "subject-raw-7731");
  batch.push_back(mismatch);
  json bad_nested = Event("com.platform.misc.thing.happened.v1",
                          {{"a", {{"friend_user_id", "friend-raw-9953"}, {"b_user_id", "x y"}}},
                           {"display_name", "RawDisplayName"}},
                          "subject-raw-7731");
  batch.push_back(bad_nested);

  const std::string input = batch.dump();
  for (const std::string& raw : raw_values) ASSERT_NE(input.find(raw), std::string::npos) << raw;

  BatchResult result = Process(batch, BodyFormat::kBatch);
  ASSERT_FALSE(result.body_error.has_value());
  ASSERT_EQ(result.events.size(), 5u);
  ASSERT_EQ(result.rejections.size(), 5u);

  std::string everything;
  for (const EventView& view : result.events) {
    const StoredEvent event = view.ToStored();
    everything += event.id + "|" + event.source + "|" + event.type + "|" + event.user + "|" + event.game_id + "|" +
                  event.session_id + "|" + event.currency + "|" + event.country + "|" + event.platform + "|" +
                  event.data + "|" + event.extensions + "|" + ToCloudEvent(event).dump() + "\n";
  }
  for (const Rejection& rejection : result.rejections) {
    EXPECT_FALSE(rejection.payload.empty()) << rejection.message;
    everything += rejection.id + "|" + rejection.type + "|" + rejection.source + "|" + rejection.field + "|" +
                  rejection.message + "|" + rejection.payload + "\n";
  }
  for (const std::string& raw : raw_values) {
    EXPECT_EQ(everything.find(raw), std::string::npos) << "raw value survived: " << raw;
  }
  // Sanity: the treated forms are there.
  EXPECT_NE(everything.find(pseudonymizer_->Pseudonymize("subject-raw-7731")), std::string::npos);
  EXPECT_NE(everything.find(pseudonymizer_->Hash("dev-raw-3286")), std::string::npos);
  EXPECT_NE(everything.find("203.0.113.0"), std::string::npos);
}

}  // namespace
}  // namespace analytics::events
