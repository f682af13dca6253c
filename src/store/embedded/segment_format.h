// Internals of segment formats 3 and 4 shared by the writer and the reader (docs/formats/segment.md): magic
// numbers, the fixed columns, the per-row flags, the binary footer, and SegmentFile, which reads a file's
// footer and then single columns (bounds, checksum, size caps, zstd) on demand.
// Format 4 is format 3 with parts: the rows of rare event types are stored apart, each part a complete set of
// format 3 columns, so a query on such a type reads a few small blocks instead of whole columns. A format 3
// file reads as one part.
// Thread-safety: SegmentFile's const methods may be called concurrently (pread on one descriptor).
#pragma once

#include <cstdint>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace analytics::store::embedded::v3 {

// Format 4 (written now) and format 3 (still read).
inline constexpr char kMagic[8] = {'A', 'S', 'E', 'G', 'v', '0', '0', '4'};
inline constexpr char kEndMagic[8] = {'A', 'S', 'E', 'G', 'E', 'N', 'D', '4'};
inline constexpr char kMagicV3[8] = {'A', 'S', 'E', 'G', 'v', '0', '0', '3'};
inline constexpr char kEndMagicV3[8] = {'A', 'S', 'E', 'G', 'E', 'N', 'D', '3'};
inline constexpr size_t kTrailerBytes = 16;  // u32 footer length, u32 footer crc32, end magic

// The fixed columns, in file order; `data` property columns ("data.<name>") follow them.
enum CoreColumn : uint8_t {
  kLayout, kUser, kUserRuns, kTime, kReceived, kId, kGameId, kSessionId, kAmount, kCurrency, kCountry, kPlatform,
  kExtensions, kDataRaw, kCoreColumnCount
};
inline constexpr const char* kCoreColumnNames[kCoreColumnCount] = {
    "layout", "user", "user_runs", "time", "received", "id", "game_id", "session_id", "amount", "currency", "country",
    "platform", "extensions", "data_raw"};
inline constexpr std::string_view kPropertyPrefix = "data.";
// The extra column of a part after the first (format 4), and its index in error messages.
inline constexpr std::string_view kPositionsColumnName = "position";
inline constexpr size_t kPositionsColumn = SIZE_MAX;

// The typed StoredEvent fields that intake extracts from `data` members of the same name.
enum WellKnownField : uint8_t { kFieldGame, kFieldSession, kFieldAmount, kFieldCurrency, kFieldCountry, kFieldPlatform,
                                kWellKnownCount };
inline constexpr const char* kWellKnownNames[kWellKnownCount] = {"game_id", "session_id", "amount",
                                                                 "currency", "country",    "platform"};
inline constexpr CoreColumn kWellKnownColumns[kWellKnownCount] = {kGameId, kSessionId, kAmount,
                                                                  kCurrency, kCountry,  kPlatform};

// Layout flags (per row, through its layout code).
inline constexpr uint32_t kFlagTimeDefaulted = 1;
inline constexpr uint32_t kFlagUserInSubject = 2;
inline constexpr uint32_t kFlagUuidId = 4;  // id stored as 16 bytes
// Then 2 bits per well-known field (field f at bit 3 + 2f): how its value is stored.
enum FieldMode : uint32_t {
  kModeEmpty = 0,     // "" (amount: none)
  kModeFromData = 1,  // equals the row's data member of the same name (a string, or a number for amount)
  kModeExplicit = 2,  // in the field's own column
};
inline constexpr int kModeShift = 3;
inline constexpr uint32_t kKnownFlags = (1u << (kModeShift + 2 * kWellKnownCount)) - 1;
inline uint32_t FieldModeOf(uint32_t flags, int field) { return (flags >> (kModeShift + 2 * field)) & 3; }

// Shape kinds in the layout column (a shape's first varint; an object shape stores 2 + member count).
inline constexpr uint64_t kShapeNoData = 0;  // data is ""
inline constexpr uint64_t kShapeRaw = 1;     // data kept whole in the data_raw column
inline constexpr uint64_t kShapeObject = 2;

// Writers never produce more property columns: rows using rarer names are kept whole (data_raw).
inline constexpr size_t kMaxPropertyColumns = 1024;
// zstd cannot expand a block by more than this (a 4-byte RLE block holds 128 KiB); larger declared sizes
// are corruption, so a hostile size field cannot make the reader allocate more than this times the file.
inline constexpr uint64_t kMaxCompressionRatio = 32768;

struct ColumnEntry {
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;      // compressed bytes
  uint64_t raw_size = 0;  // decoded bytes
  uint32_t crc = 0;       // zlib crc32 of the compressed bytes
};

// One part: a complete set of columns (the core columns in order, then `data.<name>` columns) over some rows.
struct Part {
  uint64_t rows = 0;
  int64_t min_time_ms = 0;  // of the part's rows (0 when it has none); the base of its `time` column
  int64_t max_time_ms = 0;
  std::vector<std::string> types;  // every row of these types is in this part (ascending)
  ColumnEntry positions;           // parts after the first: the rows' places in the segment's order
  std::vector<ColumnEntry> columns;
};

struct Footer {
  uint64_t format = 4;  // 3 or 4; a format 3 footer has exactly one part
  uint64_t rows = 0;
  int64_t min_time_ms = 0;
  int64_t max_time_ms = 0;
  int64_t max_received_ms = 0;
  std::map<std::string, uint64_t> type_counts;
  std::vector<Part> parts;  // at least one
};

// The footer bytes of footer.format (3: parts[0] only, its types and times are the file's).
std::string EncodeFooter(const Footer& footer);

// Byte order of every fixed-width integer in the format.
void PutFixed32(std::string& out, uint32_t value);

// A canonical lower-case UUID as 16 bytes (false for any other text, which is kept as text), and back.
bool PackUuid(std::string_view text, char out[16]);
std::string UnpackUuid(std::string_view bytes);

common::Status CorruptSegment(const std::string& path, const std::string& what);

// Which format a file is: 2 or 3 from its magic; Corruption for anything else (IOError if unreadable).
common::Result<int> SegmentFormatOf(const std::string& path);

class SegmentFile {
 public:
  // Opens a format 3 or 4 file and reads and checks its footer (magic, end marker, checksum, column bounds and
  // names, parts and their types). Corruption naming the path on any damage.
  static common::Result<std::unique_ptr<SegmentFile>> Open(const std::string& path);
  // The same with the footer a previous Open of this (immutable) file read: only opens the file and checks
  // its size.
  static common::Result<std::unique_ptr<SegmentFile>> Open(const std::string& path,
                                                           std::shared_ptr<const Footer> footer,
                                                           uint64_t file_bytes);
  ~SegmentFile();
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_bytes() const { return file_bytes_; }
  const Footer& footer() const { return *footer_; }
  const std::shared_ptr<const Footer>& shared_footer() const { return footer_; }
  size_t part_count() const { return footer_->parts.size(); }
  const Part& part(size_t part_idx) const { return footer_->parts[part_idx]; }
  size_t property_count(size_t part_idx = 0) const { return part(part_idx).columns.size() - kCoreColumnCount; }
  // The property name of property column `property_idx` of a part (without "data.").
  std::string_view property_name(size_t property_idx) const { return property_name(0, property_idx); }
  std::string_view property_name(size_t part_idx, size_t property_idx) const;

  // Reads, checks (checksum, size caps) and decompresses column `column_idx` of the first part.
  common::Result<std::string> Column(size_t column_idx) const { return PartColumn(0, column_idx); }
  common::Result<std::string> PartColumn(size_t part_idx, size_t column_idx) const;
  // The same from `range`, the file's bytes from `range_offset` on (ReadRange), when it holds the column.
  common::Result<std::string> PartColumn(size_t part_idx, size_t column_idx, const std::string& range,
                                         uint64_t range_offset) const;
  // The file's bytes [offset, offset + size) (checked against the file size).
  common::Status ReadRange(uint64_t offset, uint64_t size, std::string& out) const;
  // The `position` block of a part after the first.
  common::Result<std::string> Positions(size_t part_idx) const;
  // Corruption "segment <path>: column <name>: <what>" (first part), "segment <path>: part <k>: column <name>:
  // <what>" (the others).
  common::Status ColumnCorrupt(size_t column_idx, const std::string& what) const {
    return PartColumnCorrupt(0, column_idx, what);
  }
  common::Status PartColumnCorrupt(size_t part_idx, size_t column_idx, const std::string& what) const;

 private:
  SegmentFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  common::Status ReadAt(uint64_t offset, uint64_t size, std::string& out) const;
  common::Result<std::string> Block(const ColumnEntry& column, size_t part_idx, size_t column_idx) const;
  common::Result<std::string> Decompress(std::string_view compressed, const ColumnEntry& column, size_t part_idx,
                                         size_t column_idx) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_bytes_ = 0;
  std::shared_ptr<const Footer> footer_;
};

// zlib crc32 of `bytes` (any length): the checksum of segment columns and footers.
uint32_t Crc32(std::string_view bytes);

}  // namespace analytics::store::embedded::v3
