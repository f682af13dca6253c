// Immutable columnar segments: the on-disk form of events (docs/formats/segment.md).
//
// A segment holds the events of one day partition, sorted by (user, time, id). Format 3 keeps users as runs,
// times as deltas within a user run, type/source/`data` shape as one small per-row dictionary code, and shreds
// `data`: every top-level property becomes its own column of typed values (int, double, bool,
// dictionary-coded string, exact JSON text for the rest), from which the original text is rebuilt byte for
// byte. The typed well-known fields (game_id, amount, ...) are not stored again when they equal the `data`
// property they were extracted from. Each column is compressed with zstd on its own, so a query reads and
// decodes only the columns it needs (ReadSegmentColumns). Format 4 (written now) adds parts: the rows of rare
// event types (purchases, refunds: each at most 1/64 of the rows) are stored apart, each part a full set of
// format 3 columns, so a query on them reads a few small blocks. A footer records every column's offset, size
// and checksum, the row count, min/max time and per-type counts (for pruning), and per part its rows, types
// and times. Formats 3 and 2 are still read.
// Files are written to a temporary name, fsynced and renamed, so a reader never sees a partial segment; a
// damaged segment is reported as Corruption naming its path (and the column), never a crash.
// Thread-safety: SegmentInfo is immutable; the functions are reentrant.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "events/event.h"

namespace analytics::store::embedded {

struct SegmentInfo {
  std::string path;
  uint64_t rows = 0;
  int64_t min_time_ms = 0;
  int64_t max_time_ms = 0;
  int64_t max_received_ms = 0;  // for rebuilding the dedup window at start-up
  uint64_t file_bytes = 0;
  std::map<std::string, uint64_t> type_counts;
};

// Sorts `events` by (user, time, id) and writes them as one segment (format 4) at `path` (atomically), each
// column compressed with zstd at `level`. IOError when the file cannot be written.
common::Result<SegmentInfo> WriteSegment(const std::string& path, const std::vector<events::StoredEvent>& events,
                                         int zstd_level = 3);
// The same for events seen in place (the flush writes the memtable's events without copying them).
common::Result<SegmentInfo> WriteSegment(const std::string& path, std::vector<const events::EventView*> events,
                                         int zstd_level = 3);

// Test hook: segments of at least `rows` rows store their rare event types in parts of their own (the default,
// 0, is 4096 rows; docs/formats/segment.md).
void SetMinRowsForPartsForTest(size_t rows);

// Reads the footer only. Corruption (with the path) for a damaged or foreign file.
common::Result<SegmentInfo> ReadSegmentInfo(const std::string& path);

// Decodes every event of the segment and appends them to `out` in segment order; each equals, field by
// field and byte for byte, the event given to WriteSegment. Corruption (with the path and column) on any
// damage; `out` is then unchanged.
common::Status ReadSegmentEvents(const std::string& path, std::vector<events::StoredEvent>& out);

// ---- Column-selective reading (for queries) ----

// Which columns ReadSegmentColumns decodes. Unrequested vectors stay empty.
struct SegmentColumnRequest {
  bool user = false;      // users + user_runs + user_codes
  bool runs = false;      // user_runs only (the row counts of the users, without the users)
  bool time = false;      // time_ms
  bool received = false;  // received_ms
  bool type = false;      // type
  bool source = false;    // source
  bool id = false;        // id
  bool game_id = false, session_id = false, currency = false, country = false, platform = false;  // typed fields
  bool amount = false;                                                                           // typed field
  bool flags = false;  // time_defaulted, user_in_subject
  // Top-level `data` properties, by (unescaped) name; each gives one PropertyColumn, in this order.
  std::vector<std::string> properties;
};

// A dictionary-coded string column: row `row_idx` has the value dictionary[codes[row_idx]].
struct StringColumn {
  std::vector<std::string> dictionary;
  std::vector<uint32_t> codes;
};

enum class ValueKind : uint8_t { kAbsent, kNull, kBool, kInt, kDouble, kString, kJson };

// One `data` property over all rows. Numbers are kInt when the literal is an int64 (1, -7), else kDouble
// (1.5, 1e300, 1.50, -0, integers beyond int64 as their nearest double); kJson is an array or an object with
// its exact text (also any text that is no valid scalar: a number beyond the double range, a string with a bad
// escape, a malformed token). A row whose data is not an object, or that has no such property, is kAbsent;
// JSON null is kNull.
struct PropertyColumn {
  std::string name;
  std::vector<ValueKind> kinds;      // per row
  std::vector<int64_t> ints;         // per row: the value (kInt), 0/1 (kBool), index into `strings` (kString,
                                     // kJson); else 0
  std::vector<double> doubles;       // per row: the value (kDouble, and kInt converted); else 0
  std::vector<std::string> strings;  // distinct string values (unescaped) and JSON texts of this column
};

struct SegmentColumns {
  uint64_t rows = 0;
  // Rows are sorted by user: users[k] (ascending) holds the next user_runs[k] rows; user_codes[row_idx]
  // indexes `users`.
  std::vector<std::string> users;
  std::vector<uint32_t> user_runs;
  std::vector<uint32_t> user_codes;
  std::vector<int64_t> time_ms;
  std::vector<int64_t> received_ms;
  StringColumn type, source;
  std::vector<std::string> id;
  StringColumn game_id, session_id, currency, country, platform;  // "" where absent
  std::vector<std::optional<double>> amount;
  std::vector<uint8_t> time_defaulted, user_in_subject;  // 0/1 per row (flags)
  std::vector<PropertyColumn> properties;                // in request order
};

// Decodes only what `request` asks for (formats 3 and 4 read and decompress only those columns, of every part;
// a format 2 file is decoded whole and converted). Row order is the segment's (parts merged back by position).
// Rows equal ReadSegmentEvents' field by field; a property's value is the top-level member of that name in the
// row's `data` (the first one if a raw, non-compact `data` repeats a name). Corruption (with the path and
// column) on damage.
common::Result<SegmentColumns> ReadSegmentColumns(const std::string& path, const SegmentColumnRequest& request);

// Per-column sizes from the footer (for benchmarks and diagnostics): compressed bytes on disk and decoded
// bytes, in file order; `data` properties are named "data.<name>". A format 4 file lists the columns of each
// part under the same names (and "position" for the parts after the first), with the part's index.
struct SegmentColumnStats {
  std::string name;
  uint64_t compressed_bytes = 0;
  uint64_t raw_bytes = 0;
  size_t part = 0;
};
common::Result<std::vector<SegmentColumnStats>> ReadSegmentColumnStats(const std::string& path);

}  // namespace analytics::store::embedded
