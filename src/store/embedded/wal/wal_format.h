// The on-disk layout of WAL files: constants, file names, little-endian coding and the record checksum.
// docs/formats/wal.md describes the format byte by byte; keep the two in step (the format version is
// kFormatVersion and changes whenever the layout does).
// Thread-safety: pure functions and constants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace analytics::store::wal {

// File header: magic "AWAL" | format version (u32 LE) | first sequence of the file (u64 LE).
inline constexpr std::string_view kFileMagic = "AWAL";
// Version 2 (written): record checksum = low 32 bits of XXH3-64 of the payload seeded with the sequence.
// Version 1 (still read, so that a WAL left by an older build replays): zlib crc32 of sequence + payload.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestReadableVersion = 1;
inline constexpr size_t kFileHeaderSize = 16;

// Record header: payload length (u32 LE) | checksum (u32 LE) of sequence + payload | sequence (u64 LE).
inline constexpr size_t kRecordHeaderSize = 16;
// Largest payload Append accepts and Replay believes; a length above it marks a damaged record.
inline constexpr uint32_t kMaxPayloadBytes = 64u << 20;

// "wal-00000000000000000042.log" for 42: zero-padded so that names sort like their sequences.
std::string WalFileName(uint64_t first_sequence);
// The first sequence encoded in a WAL file name, or nullopt when `name` is not exactly such a name.
std::optional<uint64_t> ParseWalFileName(std::string_view name);

void EncodeFixed32(char* out, uint32_t value);
void EncodeFixed64(char* out, uint64_t value);
uint32_t DecodeFixed32(const char* in);
uint64_t DecodeFixed64(const char* in);

// The checksum of a record of the current format.
uint32_t RecordChecksum(uint64_t sequence, std::string_view payload);
// The checksum of a record of file format `version`; `covered` is the 8 sequence bytes followed by the
// payload, as they lie on disk.
uint32_t RecordChecksumOf(uint32_t version, std::string_view covered);

// Writes the 16-byte file header / record header into `out`.
void EncodeFileHeader(char* out, uint64_t first_sequence);
void EncodeRecordHeader(char* out, uint64_t sequence, uint32_t payload_size, uint32_t crc);

}  // namespace analytics::store::wal
