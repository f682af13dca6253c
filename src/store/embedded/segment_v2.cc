// Reader of segment format 2; see segment_v2.h. The writer of this format was replaced by format 3
// (segment_writer.cc); this file is the format 2 reader as it was, unchanged in behaviour.
#include "store/embedded/segment_v2.h"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "store/embedded/codec.h"
#include "store/embedded/segment_format.h"

namespace analytics::store::embedded::v2 {
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

constexpr uint8_t kFlagTimeDefaulted = 1;
constexpr uint8_t kFlagUserInSubject = 2;
constexpr uint8_t kFlagHasAmount = 4;
constexpr uint8_t kFlagUuidId = 8;  // the id is a canonical lower-case UUID, stored as 16 bytes

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

Result<SegmentInfo> ReadInfo(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(ParsedFile file, ParseFile(path));
  return InfoFromFooter(file.footer, path, file.bytes.size());
}

Status ReadEvents(const std::string& path, std::vector<StoredEvent>& out) {
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
  ANALYTICS_RETURN_IF_ERROR(
      DecodeStrings(column_data[kExtensions], rows, &StoredEvent::extensions, path, "extensions"));
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
      row.id = v3::UnpackUuid(bytes);
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

Result<std::vector<SegmentColumnStats>> ReadColumnStats(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(ParsedFile file, ParseFile(path));
  std::vector<SegmentColumnStats> stats;
  try {
    for (const auto& entry : file.footer.at("columns")) {
      stats.push_back(SegmentColumnStats{entry.at("name").get<std::string>(), entry.at("size").get<uint64_t>(),
                                         entry.at("raw_size").get<uint64_t>()});
    }
  } catch (const nlohmann::json::exception&) {
    return Corrupt(path, "malformed footer");
  }
  return stats;
}

}  // namespace analytics::store::embedded::v2
