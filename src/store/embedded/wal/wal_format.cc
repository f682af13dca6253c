#include "store/embedded/wal/wal_format.h"

#include <xxhash.h>
#include <zlib.h>

#include <cstring>

namespace analytics::store::wal {
namespace {

constexpr std::string_view kNamePrefix = "wal-";
constexpr std::string_view kNameSuffix = ".log";
constexpr size_t kNameDigits = 20;  // UINT64_MAX has 20 decimal digits

}  // namespace

std::string WalFileName(uint64_t first_sequence) {
  std::string digits = std::to_string(first_sequence);
  std::string name(kNamePrefix);
  name.append(kNameDigits - digits.size(), '0');
  name += digits;
  name += kNameSuffix;
  return name;
}

std::optional<uint64_t> ParseWalFileName(std::string_view name) {
  if (name.size() != kNamePrefix.size() + kNameDigits + kNameSuffix.size()) return std::nullopt;
  if (!name.starts_with(kNamePrefix) || !name.ends_with(kNameSuffix)) return std::nullopt;
  std::string_view digits = name.substr(kNamePrefix.size(), kNameDigits);
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;  // 20 digits can exceed UINT64_MAX
    value = value * 10 + digit;
  }
  return value;
}

void EncodeFixed32(char* out, uint32_t value) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) out[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
}

void EncodeFixed64(char* out, uint64_t value) {
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) out[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
}

uint32_t DecodeFixed32(const char* in) {
  uint32_t value = 0;
  for (int byte_idx = 3; byte_idx >= 0; --byte_idx) value = (value << 8) | static_cast<unsigned char>(in[byte_idx]);
  return value;
}

uint64_t DecodeFixed64(const char* in) {
  uint64_t value = 0;
  for (int byte_idx = 7; byte_idx >= 0; --byte_idx) value = (value << 8) | static_cast<unsigned char>(in[byte_idx]);
  return value;
}

uint32_t RecordChecksum(uint64_t sequence, std::string_view payload) {
  // XXH3 reads several bytes per cycle where zlib's crc32 (the format 1 checksum) took a few percent of the
  // intake's CPU; seeding it with the sequence covers the sequence too.
  return static_cast<uint32_t>(XXH3_64bits_withSeed(payload.data(), payload.size(), sequence));
}

uint32_t RecordChecksumOf(uint32_t version, std::string_view covered) {
  if (version == 1) {
    return static_cast<uint32_t>(
        crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(covered.data()), covered.size()));
  }
  return RecordChecksum(DecodeFixed64(covered.data()), covered.substr(8));
}

void EncodeFileHeader(char* out, uint64_t first_sequence) {
  std::memcpy(out, kFileMagic.data(), kFileMagic.size());
  EncodeFixed32(out + 4, kFormatVersion);
  EncodeFixed64(out + 8, first_sequence);
}

void EncodeRecordHeader(char* out, uint64_t sequence, uint32_t payload_size, uint32_t crc) {
  EncodeFixed32(out, payload_size);
  EncodeFixed32(out + 4, crc);
  EncodeFixed64(out + 8, sequence);
}

}  // namespace analytics::store::wal
