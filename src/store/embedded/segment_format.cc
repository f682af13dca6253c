// Segment format 3: footer and column access; see segment_format.h.
#include "store/embedded/segment_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "store/embedded/codec.h"
#include "store/embedded/column_codec.h"

namespace analytics::store::embedded::v3 {
namespace {

using common::Result;
using common::Status;

constexpr uint64_t kFormatVersion = 3;
constexpr char kMagicV2[8] = {'A', 'S', 'E', 'G', 'v', '0', '0', '2'};


uint32_t GetFixed32(const char* bytes) {
  uint32_t value = 0;
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    value |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[byte_idx])) << (8 * byte_idx);
  }
  return value;
}

bool DecodeColumnEntry(Reader& reader, ColumnEntry& column) {
  std::string_view name, crc;
  if (!reader.GetBytes(name) || !reader.GetVarint(column.offset) || !reader.GetVarint(column.size) ||
      !reader.GetVarint(column.raw_size) || !reader.GetRaw(4, crc)) {
    return false;
  }
  column.name = name;
  column.crc = GetFixed32(crc.data());
  return true;
}

bool DecodeColumnList(Reader& reader, std::vector<ColumnEntry>& columns) {
  uint64_t column_count = 0;
  // Every entry takes at least 8 bytes.
  if (!reader.GetVarint(column_count) || column_count > reader.remaining()) return false;
  columns.resize(column_count);
  for (auto& column : columns) {
    if (!DecodeColumnEntry(reader, column)) return false;
  }
  return true;
}

// Structure only; SegmentFile::Open checks the columns against the file and the parts against each other.
bool DecodeFooter(std::string_view bytes, uint64_t format, Footer& footer) {
  Reader reader(bytes);
  uint64_t version = 0, type_count = 0;
  if (!reader.GetVarint(version) || version != format || !reader.GetVarint(footer.rows) ||
      !reader.GetZigzag(footer.min_time_ms) || !reader.GetZigzag(footer.max_time_ms) ||
      !reader.GetZigzag(footer.max_received_ms) || !reader.GetVarint(type_count) ||
      type_count > reader.remaining()) {
    return false;
  }
  footer.format = version;
  std::vector<std::string> types;
  for (uint64_t type_idx = 0; type_idx < type_count; ++type_idx) {
    std::string_view type;
    uint64_t count = 0;
    if (!reader.GetBytes(type) || !reader.GetVarint(count)) return false;
    if (!types.empty() && !(types.back() < type)) return false;  // ascending, unique
    types.emplace_back(type);
    footer.type_counts[std::string(type)] = count;
  }
  if (version == 3) {
    Part& part = footer.parts.emplace_back();
    part.rows = footer.rows;
    part.min_time_ms = footer.min_time_ms;
    part.max_time_ms = footer.max_time_ms;
    part.types = std::move(types);
    return DecodeColumnList(reader, part.columns) && reader.done();
  }
  uint64_t part_count = 0;
  if (!reader.GetVarint(part_count) || part_count == 0 || part_count > reader.remaining()) return false;
  footer.parts.resize(part_count);
  for (size_t part_idx = 0; part_idx < part_count; ++part_idx) {
    Part& part = footer.parts[part_idx];
    uint64_t part_types = 0;
    if (!reader.GetVarint(part.rows) || !reader.GetZigzag(part.min_time_ms) || !reader.GetZigzag(part.max_time_ms) ||
        !reader.GetVarint(part_types) || part_types > types.size()) {
      return false;
    }
    uint64_t previous = 0;
    for (uint64_t entry_idx = 0; entry_idx < part_types; ++entry_idx) {
      uint64_t type_idx = 0;
      if (!reader.GetVarint(type_idx) || type_idx >= types.size() || (entry_idx > 0 && type_idx <= previous)) {
        return false;
      }
      previous = type_idx;
      part.types.push_back(types[type_idx]);
    }
    if (part_idx > 0 && !DecodeColumnEntry(reader, part.positions)) return false;
    if (!DecodeColumnList(reader, part.columns)) return false;
  }
  return reader.done();
}

void PutColumnEntry(std::string& out, const ColumnEntry& column) {
  PutBytes(out, column.name);
  PutVarint(out, column.offset);
  PutVarint(out, column.size);
  PutVarint(out, column.raw_size);
  PutFixed32(out, column.crc);
}

}  // namespace

uint32_t Crc32(std::string_view bytes) {
  uLong crc = crc32(0, nullptr, 0);
  // zlib's length is a uInt: feed very large inputs in pieces.
  while (!bytes.empty()) {
    const size_t piece = std::min<size_t>(bytes.size(), 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(piece));
    bytes.remove_prefix(piece);
  }
  return static_cast<uint32_t>(crc);
}

void PutFixed32(std::string& out, uint32_t value) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) out.push_back(static_cast<char>(value >> (8 * byte_idx)));
}

std::string EncodeFooter(const Footer& footer) {
  std::string out;
  PutVarint(out, footer.format);
  PutVarint(out, footer.rows);
  PutZigzag(out, footer.min_time_ms);
  PutZigzag(out, footer.max_time_ms);
  PutZigzag(out, footer.max_received_ms);
  PutVarint(out, footer.type_counts.size());
  std::map<std::string_view, uint64_t> type_index;
  for (const auto& [type, count] : footer.type_counts) {
    type_index.emplace(type, type_index.size());
    PutBytes(out, type);
    PutVarint(out, count);
  }
  auto put_columns = [&](const std::vector<ColumnEntry>& columns) {
    PutVarint(out, columns.size());
    for (const auto& column : columns) PutColumnEntry(out, column);
  };
  if (footer.format == 3) {
    put_columns(footer.parts.empty() ? std::vector<ColumnEntry>() : footer.parts.front().columns);
    return out;
  }
  PutVarint(out, footer.parts.size());
  for (size_t part_idx = 0; part_idx < footer.parts.size(); ++part_idx) {
    const Part& part = footer.parts[part_idx];
    PutVarint(out, part.rows);
    PutZigzag(out, part.min_time_ms);
    PutZigzag(out, part.max_time_ms);
    PutVarint(out, part.types.size());
    for (const auto& type : part.types) {
      auto it = type_index.find(type);
      PutVarint(out, it == type_index.end() ? footer.type_counts.size() : it->second);
    }
    if (part_idx > 0) PutColumnEntry(out, part.positions);
    put_columns(part.columns);
  }
  return out;
}

namespace {

// Lower-case hex digit values; -1 for every other byte.
constexpr std::array<int8_t, 256> MakeHexTable() {
  std::array<int8_t, 256> table{};
  table.fill(-1);
  for (int digit = 0; digit < 10; ++digit) table['0' + digit] = static_cast<int8_t>(digit);
  for (int digit = 0; digit < 6; ++digit) table['a' + digit] = static_cast<int8_t>(10 + digit);
  return table;
}
constexpr std::array<int8_t, 256> kHexValue = MakeHexTable();

}  // namespace

bool PackUuid(std::string_view text, char out[16]) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-') return false;
  static constexpr uint8_t kDigitPositions[32] = {0,  1,  2,  3,  4,  5,  6,  7,  9,  10, 11, 12, 14, 15, 16, 17,
                                                  19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
  int invalid = 0;
  for (int byte_idx = 0; byte_idx < 16; ++byte_idx) {
    const int high = kHexValue[static_cast<uint8_t>(text[kDigitPositions[2 * byte_idx]])];
    const int low = kHexValue[static_cast<uint8_t>(text[kDigitPositions[2 * byte_idx + 1]])];
    invalid |= high | low;  // negative when either is not a digit
    out[byte_idx] = static_cast<char>(((high & 15) << 4) | (low & 15));
  }
  return invalid >= 0;
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

Status CorruptSegment(const std::string& path, const std::string& what) {
  return Status::Corruption("segment " + path + ": " + what);
}

Result<int> SegmentFormatOf(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open segment " + path + ": " + std::strerror(errno));
  char magic[8];
  const ssize_t got = ::pread(fd, magic, sizeof(magic), 0);
  ::close(fd);
  if (got != static_cast<ssize_t>(sizeof(magic))) return CorruptSegment(path, "not a segment file (bad magic)");
  if (std::memcmp(magic, kMagic, sizeof(magic)) == 0) return 4;
  if (std::memcmp(magic, kMagicV3, sizeof(magic)) == 0) return 3;
  if (std::memcmp(magic, kMagicV2, sizeof(magic)) == 0) return 2;
  return CorruptSegment(path, "not a segment file (bad magic)");
}

SegmentFile::~SegmentFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status SegmentFile::ReadAt(uint64_t offset, uint64_t size, std::string& out) const {
  out.resize(size);  // callers check offset + size against the file size first
  uint64_t done = 0;
  while (done < size) {
    const ssize_t got = ::pread(fd_, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::IOError("cannot read segment " + path_ + ": " + std::strerror(errno));
    if (got == 0) return CorruptSegment(path_, "truncated while reading");
    done += static_cast<uint64_t>(got);
  }
  return Status::Ok();
}

Result<std::unique_ptr<SegmentFile>> SegmentFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open segment " + path + ": " + std::strerror(errno));
  std::unique_ptr<SegmentFile> file(new SegmentFile(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::IOError("cannot stat segment " + path + ": " + std::strerror(errno));
  file->file_bytes_ = static_cast<uint64_t>(st.st_size);
  const uint64_t size = file->file_bytes_;
  if (size < sizeof(kMagic) + kTrailerBytes) return CorruptSegment(path, "truncated (shorter than magic and trailer)");
  std::string head, trailer, footer_bytes;
  ANALYTICS_RETURN_IF_ERROR(file->ReadAt(0, sizeof(kMagic), head));
  uint64_t format = 0;
  if (std::memcmp(head.data(), kMagic, sizeof(kMagic)) == 0) {
    format = 4;
  } else if (std::memcmp(head.data(), kMagicV3, sizeof(kMagicV3)) == 0) {
    format = 3;
  } else {
    return CorruptSegment(path, "not a segment file (bad magic)");
  }
  ANALYTICS_RETURN_IF_ERROR(file->ReadAt(size - kTrailerBytes, kTrailerBytes, trailer));
  if (std::memcmp(trailer.data() + 8, format == 4 ? kEndMagic : kEndMagicV3, sizeof(kEndMagic)) != 0) {
    return CorruptSegment(path, "truncated (no end marker)");
  }
  const uint32_t footer_len = GetFixed32(trailer.data());
  const uint32_t footer_crc = GetFixed32(trailer.data() + 4);
  if (footer_len > size - sizeof(kMagic) - kTrailerBytes) return CorruptSegment(path, "bad footer length");
  const uint64_t footer_start = size - kTrailerBytes - footer_len;
  ANALYTICS_RETURN_IF_ERROR(file->ReadAt(footer_start, footer_len, footer_bytes));
  if (Crc32(footer_bytes) != footer_crc) return CorruptSegment(path, "footer checksum mismatch");
  auto footer = std::make_shared<Footer>();
  if (!DecodeFooter(footer_bytes, format, *footer)) return CorruptSegment(path, "malformed footer");
  file->footer_ = footer;
  // The parts: rows and types add up, every type in exactly one part, times inside the file's.
  uint64_t rows = 0;
  std::set<std::string_view> part_types;
  for (size_t part_idx = 0; part_idx < footer->parts.size(); ++part_idx) {
    const Part& part = footer->parts[part_idx];
    uint64_t type_rows = 0;
    for (const auto& type : part.types) {
      if (!part_types.insert(type).second) return CorruptSegment(path, "a type in two parts");
      type_rows += footer->type_counts.at(type);
    }
    if (type_rows != part.rows || (part_idx > 0 && part.rows == 0)) return CorruptSegment(path, "bad part rows");
    if (part.rows > 0 && (part.min_time_ms > part.max_time_ms || part.min_time_ms < footer->min_time_ms ||
                          part.max_time_ms > footer->max_time_ms)) {
      return CorruptSegment(path, "bad part times");
    }
    rows += part.rows;
  }
  if (rows != footer->rows || part_types.size() != footer->type_counts.size()) {
    return CorruptSegment(path, "parts do not cover the rows");
  }
  auto check_bounds = [&](const ColumnEntry& column, size_t part_idx, size_t column_idx) -> Status {
    if (column.offset < sizeof(kMagic) || column.offset > footer_start || column.size > footer_start - column.offset) {
      return file->PartColumnCorrupt(part_idx, column_idx, "out of bounds");
    }
    if (column.raw_size / kMaxCompressionRatio > column.size) {
      return file->PartColumnCorrupt(part_idx, column_idx, "absurd size");
    }
    return Status::Ok();
  };
  for (size_t part_idx = 0; part_idx < footer->parts.size(); ++part_idx) {
    const Part& part = footer->parts[part_idx];
    if (part.columns.size() < kCoreColumnCount) return CorruptSegment(path, "unexpected column list");
    std::set<std::string_view> property_names;
    for (size_t column_idx = 0; column_idx < part.columns.size(); ++column_idx) {
      const ColumnEntry& column = part.columns[column_idx];
      if (column_idx < kCoreColumnCount) {
        if (column.name != kCoreColumnNames[column_idx]) return CorruptSegment(path, "column order mismatch");
      } else if (column.name.compare(0, kPropertyPrefix.size(), kPropertyPrefix) != 0 ||
                 !property_names.insert(column.name).second) {
        return CorruptSegment(path, "bad property column name");
      }
      ANALYTICS_RETURN_IF_ERROR(check_bounds(column, part_idx, column_idx));
    }
    if (part_idx > 0) {
      if (part.positions.name != kPositionsColumnName) return CorruptSegment(path, "bad position column name");
      ANALYTICS_RETURN_IF_ERROR(check_bounds(part.positions, part_idx, kPositionsColumn));
    }
  }
  return file;
}

Result<std::unique_ptr<SegmentFile>> SegmentFile::Open(const std::string& path, std::shared_ptr<const Footer> footer,
                                                       uint64_t file_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open segment " + path + ": " + std::strerror(errno));
  std::unique_ptr<SegmentFile> file(new SegmentFile(path, fd));
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::IOError("cannot stat segment " + path + ": " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != file_bytes) return CorruptSegment(path, "changed size since it was opened");
  file->file_bytes_ = file_bytes;
  file->footer_ = std::move(footer);
  return file;
}

std::string_view SegmentFile::property_name(size_t part_idx, size_t property_idx) const {
  return std::string_view(part(part_idx).columns[kCoreColumnCount + property_idx].name).substr(kPropertyPrefix.size());
}

Status SegmentFile::PartColumnCorrupt(size_t part_idx, size_t column_idx, const std::string& what) const {
  const Part& part = footer_->parts[part_idx];
  const std::string& name = column_idx == kPositionsColumn ? part.positions.name : part.columns[column_idx].name;
  return CorruptSegment(path_, (part_idx > 0 ? "part " + std::to_string(part_idx) + ": " : std::string()) + "column " +
                                   name + ": " + what);
}

Result<std::string> SegmentFile::PartColumn(size_t part_idx, size_t column_idx) const {
  return Block(part(part_idx).columns[column_idx], part_idx, column_idx);
}

Result<std::string> SegmentFile::Positions(size_t part_idx) const {
  return Block(part(part_idx).positions, part_idx, kPositionsColumn);
}

Result<std::string> SegmentFile::PartColumn(size_t part_idx, size_t column_idx, const std::string& range,
                                            uint64_t range_offset) const {
  const ColumnEntry& column = part(part_idx).columns[column_idx];
  if (column.offset < range_offset || column.offset - range_offset > range.size() ||
      column.size > range.size() - (column.offset - range_offset)) {
    return PartColumn(part_idx, column_idx);
  }
  return Decompress(std::string_view(range).substr(column.offset - range_offset, column.size), column, part_idx,
                    column_idx);
}

Status SegmentFile::ReadRange(uint64_t offset, uint64_t size, std::string& out) const {
  if (offset > file_bytes_ || size > file_bytes_ - offset) return CorruptSegment(path_, "read out of bounds");
  return ReadAt(offset, size, out);
}

Result<std::string> SegmentFile::Block(const ColumnEntry& column, size_t part_idx, size_t column_idx) const {
  std::string compressed;
  ANALYTICS_RETURN_IF_ERROR(ReadAt(column.offset, column.size, compressed));
  return Decompress(compressed, column, part_idx, column_idx);
}

Result<std::string> SegmentFile::Decompress(std::string_view compressed, const ColumnEntry& column, size_t part_idx,
                                            size_t column_idx) const {
  if (Crc32(compressed) != column.crc) return PartColumnCorrupt(part_idx, column_idx, "checksum mismatch");
  const unsigned long long declared = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (declared != column.raw_size) return PartColumnCorrupt(part_idx, column_idx, "size mismatch");
  std::string raw(column.raw_size, '\0');
  // One decompression context per thread: creating one per column costs more than small columns do.
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> context(ZSTD_createDCtx(), ZSTD_freeDCtx);
  const size_t got = ZSTD_decompressDCtx(context.get(), raw.data(), raw.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(got) || got != column.raw_size) return PartColumnCorrupt(part_idx, column_idx, "cannot decompress");
  return raw;
}

}  // namespace analytics::store::embedded::v3
