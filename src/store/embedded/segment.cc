// Columnar segment writer and reader.
#include "store/embedded/segment.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "store/embedded/codec.h"
#include "store/embedded/file_util.h"

namespace analytics::store::embedded {
namespace {

using common::Result;
using common::Status;
using events::StoredEvent;

constexpr char kMagic[8] = {'A', 'S', 'E', 'G', 'v', '0', '0', '2'};
constexpr char kEndMagic[8] = {'A', 'S', 'E', 'G', 'E', 'N', 'D', '1'};

// Column names in file order.
enum Column {
  kUser, kTime, kReceived, kType, kSource, kId, kGame, kSession, kAmount, kCurrency, kCountry, kPlatform, kFlags,
  kData, kExtensions, kColumnCount
};
constexpr const char* kColumnNames[kColumnCount] = {"user",   "time",     "received", "type",     "source",
                                                    "id",     "game_id",  "session_id", "amount", "currency",
                                                    "country", "platform", "flags",    "data",     "extensions"};

// A dictionary column: distinct values (in first-seen order), then one varint index per row.
std::string EncodeDictionary(const std::vector<StoredEvent>& rows, std::string StoredEvent::*field) {
  std::unordered_map<std::string_view, uint64_t> index;
  std::vector<std::string_view> values;
  std::string codes;
  for (const auto& row : rows) {
    std::string_view value = row.*field;
    auto [it, inserted] = index.emplace(value, values.size());
    if (inserted) values.push_back(value);
    PutVarint(codes, it->second);
  }
  std::string out;
  PutVarint(out, values.size());
  for (auto value : values) PutBytes(out, value);
  out += codes;
  return out;
}

std::string EncodeStrings(const std::vector<StoredEvent>& rows, std::string StoredEvent::*field) {
  std::string out;
  for (const auto& row : rows) PutBytes(out, row.*field);
  return out;
}

constexpr uint8_t kFlagTimeDefaulted = 1;
constexpr uint8_t kFlagUserInSubject = 2;
constexpr uint8_t kFlagHasAmount = 4;
constexpr uint8_t kFlagUuidId = 8;  // the id is a canonical lower-case UUID, stored as 16 bytes

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Canonical lower-case UUID text → 16 bytes; false for anything else (kept as text).
bool PackUuid(std::string_view text, char out[16]) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-') return false;
  int byte_idx = 0;
  for (size_t char_idx = 0; char_idx < 36;) {
    if (text[char_idx] == '-') {
      ++char_idx;
      continue;
    }
    int high = HexDigit(text[char_idx]), low = HexDigit(text[char_idx + 1]);
    if (high < 0 || low < 0) return false;
    out[byte_idx++] = static_cast<char>(high * 16 + low);
    char_idx += 2;
  }
  return byte_idx == 16;
}

std::string UnpackUuid(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(36);
  for (size_t byte_idx = 0; byte_idx < 16; ++byte_idx) {
    if (byte_idx == 4 || byte_idx == 6 || byte_idx == 8 || byte_idx == 10) text.push_back('-');
    const auto byte = static_cast<unsigned char>(bytes[byte_idx]);
    text.push_back(kHex[byte >> 4]);
    text.push_back(kHex[byte & 15]);
  }
  return text;
}

Status Corrupt(const std::string& path, const std::string& what) {
  return Status::Corruption("segment " + path + ": " + what);
}

Status DecodeDictionary(std::string_view data, std::vector<StoredEvent>& rows, std::string StoredEvent::*field,
                        const std::string& path, const char* column) {
  Reader reader(data);
  uint64_t count;
  if (!reader.GetVarint(count) || count > data.size()) return Corrupt(path, std::string("bad dictionary in ") + column);
  std::vector<std::string_view> values(count);
  for (auto& value : values) {
    if (!reader.GetBytes(value)) return Corrupt(path, std::string("bad dictionary in ") + column);
  }
  for (auto& row : rows) {
    uint64_t code;
    if (!reader.GetVarint(code) || code >= count) return Corrupt(path, std::string("bad code in ") + column);
    row.*field = values[code];
  }
  if (!reader.done()) return Corrupt(path, std::string("trailing bytes in ") + column);
  return Status::Ok();
}

Status DecodeStrings(std::string_view data, std::vector<StoredEvent>& rows, std::string StoredEvent::*field,
                     const std::string& path, const char* column) {
  Reader reader(data);
  for (auto& row : rows) {
    std::string_view value;
    if (!reader.GetBytes(value)) return Corrupt(path, std::string("truncated column ") + column);
    row.*field = value;
  }
  if (!reader.done()) return Corrupt(path, std::string("trailing bytes in ") + column);
  return Status::Ok();
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Status::IOError("cannot open segment " + path);
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

struct ParsedFile {
  nlohmann::json footer;
  std::string bytes;
};

Result<ParsedFile> ParseFile(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(path));
  if (bytes.size() < sizeof(kMagic) + 16 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return Corrupt(path, "not a segment file (bad magic)");
  }
  const char* tail = bytes.data() + bytes.size() - 16;
  if (std::memcmp(tail + 8, kEndMagic, sizeof(kEndMagic)) != 0) return Corrupt(path, "truncated (no end marker)");
  uint32_t footer_len = 0, footer_crc = 0;
  std::memcpy(&footer_len, tail, 4);
  std::memcpy(&footer_crc, tail + 4, 4);
  if (footer_len > bytes.size() - sizeof(kMagic) - 16) return Corrupt(path, "bad footer length");
  const char* footer_start = tail - footer_len;
  if (crc32(0, reinterpret_cast<const Bytef*>(footer_start), footer_len) != footer_crc) {
    return Corrupt(path, "footer checksum mismatch");
  }
  ParsedFile parsed;
  parsed.footer = nlohmann::json::parse(std::string_view(footer_start, footer_len), nullptr, false);
  if (parsed.footer.is_discarded() || !parsed.footer.is_object()) return Corrupt(path, "footer is not JSON");
  parsed.bytes = std::move(bytes);
  return parsed;
}

Result<std::string> ColumnBytes(const ParsedFile& file, const std::string& path, int column) {
  try {
    const auto& entry = file.footer.at("columns").at(column);
    if (entry.at("name").get<std::string>() != kColumnNames[column]) return Corrupt(path, "column order mismatch");
    const uint64_t offset = entry.at("offset").get<uint64_t>();
    const uint64_t size = entry.at("size").get<uint64_t>();
    const uint64_t raw = entry.at("raw_size").get<uint64_t>();
    const uint32_t crc = entry.at("crc").get<uint32_t>();
    if (offset > file.bytes.size() || size > file.bytes.size() - offset) {
      return Corrupt(path, std::string("column ") + kColumnNames[column] + " out of bounds");
    }
    const char* start = file.bytes.data() + offset;
    if (crc32(0, reinterpret_cast<const Bytef*>(start), static_cast<uInt>(size)) != crc) {
      return Corrupt(path, std::string("checksum mismatch in column ") + kColumnNames[column]);
    }
    if (raw > (uint64_t{1} << 34)) return Corrupt(path, std::string("absurd size of column ") + kColumnNames[column]);
    std::string out(raw, '\0');
    size_t got = ZSTD_decompress(out.data(), out.size(), start, size);
    if (ZSTD_isError(got) || got != raw) {
      return Corrupt(path, std::string("cannot decompress column ") + kColumnNames[column]);
    }
    return out;
  } catch (const nlohmann::json::exception&) {
    return Corrupt(path, "malformed footer");
  }
}

SegmentInfo InfoFromFooter(const nlohmann::json& footer, const std::string& path, uint64_t file_bytes) {
  SegmentInfo info;
  info.path = path;
  info.rows = footer.value("rows", uint64_t{0});
  info.min_time_ms = footer.value("min_time_ms", int64_t{0});
  info.max_time_ms = footer.value("max_time_ms", int64_t{0});
  info.max_received_ms = footer.value("max_received_ms", int64_t{0});
  info.file_bytes = file_bytes;
  if (footer.contains("type_counts") && footer["type_counts"].is_object()) {
    for (const auto& [type, count] : footer["type_counts"].items()) {
      if (count.is_number_unsigned()) info.type_counts[type] = count.get<uint64_t>();
    }
  }
  return info;
}

}  // namespace

Result<SegmentInfo> WriteSegment(const std::string& path, std::vector<StoredEvent> rows, int zstd_level) {
  std::sort(rows.begin(), rows.end(), [](const StoredEvent& a, const StoredEvent& b) {
    if (a.user != b.user) return a.user < b.user;
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return a.id < b.id;
  });
  std::string columns[kColumnCount];
  columns[kUser] = EncodeDictionary(rows, &StoredEvent::user);
  int64_t previous = 0;
  int64_t min_time = INT64_MAX, max_time = INT64_MIN, max_received = INT64_MIN;
  std::map<std::string, uint64_t> type_counts;
  // Receive times repeat (one per intake batch): a dictionary of distinct values, then a code per row.
  std::unordered_map<int64_t, uint64_t> received_codes;
  std::string received_values, received_rows;
  int64_t previous_received = 0;
  for (const auto& row : rows) {
    PutZigzag(columns[kTime], row.time_ms - previous);
    previous = row.time_ms;
    auto [code, inserted] = received_codes.emplace(row.received_ms, received_codes.size());
    if (inserted) {
      PutZigzag(received_values, row.received_ms - previous_received);
      previous_received = row.received_ms;
    }
    PutVarint(received_rows, code->second);
    min_time = std::min(min_time, row.time_ms);
    max_time = std::max(max_time, row.time_ms);
    max_received = std::max(max_received, row.received_ms);
    ++type_counts[row.type];
    char uuid[16];
    const bool packed = PackUuid(row.id, uuid);
    if (packed) {
      columns[kId].append(uuid, 16);
    } else {
      PutBytes(columns[kId], row.id);
    }
    uint8_t flags = (row.time_defaulted ? kFlagTimeDefaulted : 0) | (row.user_in_subject ? kFlagUserInSubject : 0) |
                    (row.amount ? kFlagHasAmount : 0) | (packed ? kFlagUuidId : 0);
    columns[kFlags].push_back(static_cast<char>(flags));
    if (row.amount) {
      uint64_t bits;
      std::memcpy(&bits, &*row.amount, sizeof(bits));
      PutFixed64(columns[kAmount], bits);
    }
  }
  PutVarint(columns[kReceived], received_codes.size());
  columns[kReceived] += received_values;
  columns[kReceived] += received_rows;
  columns[kType] = EncodeDictionary(rows, &StoredEvent::type);
  columns[kSource] = EncodeDictionary(rows, &StoredEvent::source);
  columns[kGame] = EncodeDictionary(rows, &StoredEvent::game_id);
  columns[kSession] = EncodeStrings(rows, &StoredEvent::session_id);
  columns[kCurrency] = EncodeDictionary(rows, &StoredEvent::currency);
  columns[kCountry] = EncodeDictionary(rows, &StoredEvent::country);
  columns[kPlatform] = EncodeDictionary(rows, &StoredEvent::platform);
  columns[kData] = EncodeStrings(rows, &StoredEvent::data);
  columns[kExtensions] = EncodeStrings(rows, &StoredEvent::extensions);

  std::string file(kMagic, sizeof(kMagic));
  nlohmann::json footer = {{"format", 1},
                           {"rows", rows.size()},
                           {"min_time_ms", rows.empty() ? 0 : min_time},
                           {"max_time_ms", rows.empty() ? 0 : max_time},
                           {"max_received_ms", rows.empty() ? 0 : max_received},
                           {"type_counts", type_counts},
                           {"columns", nlohmann::json::array()}};
  for (int column = 0; column < kColumnCount; ++column) {
    std::string compressed(ZSTD_compressBound(columns[column].size()), '\0');
    size_t size = ZSTD_compress(compressed.data(), compressed.size(), columns[column].data(), columns[column].size(),
                                zstd_level);
    if (ZSTD_isError(size)) return Status::Internal(std::string("zstd: ") + ZSTD_getErrorName(size));
    compressed.resize(size);
    footer["columns"].push_back({{"name", kColumnNames[column]},
                                 {"offset", file.size()},
                                 {"size", size},
                                 {"raw_size", columns[column].size()},
                                 {"crc", crc32(0, reinterpret_cast<const Bytef*>(compressed.data()),
                                               static_cast<uInt>(size))}});
    file += compressed;
  }
  const std::string footer_text = footer.dump();
  file += footer_text;
  uint32_t footer_len = static_cast<uint32_t>(footer_text.size());
  uint32_t footer_crc = crc32(0, reinterpret_cast<const Bytef*>(footer_text.data()), footer_len);
  file.append(reinterpret_cast<const char*>(&footer_len), 4);
  file.append(reinterpret_cast<const char*>(&footer_crc), 4);
  file.append(kEndMagic, sizeof(kEndMagic));
  ANALYTICS_RETURN_IF_ERROR(WriteFileAtomically(path, file));
  return InfoFromFooter(footer, path, file.size());
}

Result<SegmentInfo> ReadSegmentInfo(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(ParsedFile file, ParseFile(path));
  return InfoFromFooter(file.footer, path, file.bytes.size());
}

Status ReadSegmentEvents(const std::string& path, std::vector<StoredEvent>& out) {
  ANALYTICS_ASSIGN_OR_RETURN(ParsedFile file, ParseFile(path));
  const uint64_t rows_count = file.footer.value("rows", uint64_t{0});
  if (!file.footer.contains("columns") || !file.footer["columns"].is_array() ||
      file.footer["columns"].size() != kColumnCount) {
    return Corrupt(path, "unexpected column list");
  }
  if (rows_count > file.bytes.size() * 8) return Corrupt(path, "absurd row count");
  std::vector<StoredEvent> rows(rows_count);
  std::string column_data[kColumnCount];
  for (int column = 0; column < kColumnCount; ++column) {
    ANALYTICS_ASSIGN_OR_RETURN(column_data[column], ColumnBytes(file, path, column));
  }
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kUser], rows, &StoredEvent::user, path, "user"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kType], rows, &StoredEvent::type, path, "type"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kSource], rows, &StoredEvent::source, path, "source"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kGame], rows, &StoredEvent::game_id, path, "game_id"));
  ANALYTICS_RETURN_IF_ERROR(DecodeStrings(column_data[kSession], rows, &StoredEvent::session_id, path, "session_id"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kCurrency], rows, &StoredEvent::currency, path, "currency"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kCountry], rows, &StoredEvent::country, path, "country"));
  ANALYTICS_RETURN_IF_ERROR(DecodeDictionary(column_data[kPlatform], rows, &StoredEvent::platform, path, "platform"));
  ANALYTICS_RETURN_IF_ERROR(DecodeStrings(column_data[kData], rows, &StoredEvent::data, path, "data"));
  ANALYTICS_RETURN_IF_ERROR(DecodeStrings(column_data[kExtensions], rows, &StoredEvent::extensions, path, "extensions"));
  if (column_data[kFlags].size() != rows_count) return Corrupt(path, "flags column size mismatch");
  Reader time_reader(column_data[kTime]);
  Reader received_reader(column_data[kReceived]);
  Reader amount_reader(column_data[kAmount]);
  Reader id_reader(column_data[kId]);
  uint64_t received_count = 0;
  if (!received_reader.GetVarint(received_count) || received_count > rows_count) {
    return Corrupt(path, "bad received dictionary");
  }
  std::vector<int64_t> received_values(received_count);
  int64_t previous_received = 0;
  for (auto& value : received_values) {
    int64_t delta;
    if (!received_reader.GetZigzag(delta)) return Corrupt(path, "truncated received dictionary");
    value = previous_received + delta;
    previous_received = value;
  }
  int64_t previous = 0;
  for (uint64_t row_idx = 0; row_idx < rows_count; ++row_idx) {
    auto& row = rows[row_idx];
    int64_t delta;
    uint64_t received_code;
    if (!time_reader.GetZigzag(delta) || !received_reader.GetVarint(received_code) ||
        received_code >= received_count) {
      return Corrupt(path, "truncated time columns");
    }
    row.time_ms = previous + delta;
    previous = row.time_ms;
    row.received_ms = received_values[received_code];
    uint8_t flags = static_cast<uint8_t>(column_data[kFlags][row_idx]);
    row.time_defaulted = flags & kFlagTimeDefaulted;
    row.user_in_subject = flags & kFlagUserInSubject;
    if (flags & kFlagUuidId) {
      std::string_view bytes;
      if (!id_reader.GetRaw(16, bytes)) return Corrupt(path, "truncated id column");
      row.id = UnpackUuid(bytes);
    } else {
      std::string_view id;
      if (!id_reader.GetBytes(id)) return Corrupt(path, "truncated id column");
      row.id = id;
    }
    if (flags & kFlagHasAmount) {
      uint64_t bits;
      if (!amount_reader.GetFixed64(bits)) return Corrupt(path, "truncated amount column");
      double amount;
      std::memcpy(&amount, &bits, sizeof(amount));
      row.amount = amount;
    }
  }
  if (!time_reader.done() || !received_reader.done() || !amount_reader.done() || !id_reader.done()) {
    return Corrupt(path, "trailing bytes in row columns");
  }
  out.insert(out.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
  return Status::Ok();
}

}  // namespace analytics::store::embedded
