// Immutable columnar segments: the on-disk form of events (docs/formats/segment.md).
//
// A segment holds the events of one day partition, sorted by (user, time, id). Each column is encoded
// (dictionaries for low-cardinality strings, zigzag-varint deltas for times, a presence bitmap for amounts)
// and compressed with zstd on its own, so a query decodes only the columns it needs. A footer records every
// column's offset, size and checksum, the row count, min/max time and per-type counts (for pruning).
// Files are written to a temporary name, fsynced and renamed, so a reader never sees a partial segment; a
// damaged segment is reported as Corruption naming its path, never a crash.
// Thread-safety: SegmentInfo is immutable; reading functions are reentrant.
#pragma once

#include <cstdint>
#include <map>
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

// Sorts `events` by (user, time, id) and writes them as one segment at `path` (atomically). zstd `level`.
common::Result<SegmentInfo> WriteSegment(const std::string& path, std::vector<events::StoredEvent> events,
                                         int zstd_level = 3);

// Reads the footer only. Corruption (with the path) for a damaged or foreign file.
common::Result<SegmentInfo> ReadSegmentInfo(const std::string& path);

// Decodes every event of the segment. Corruption (with the path and column) on any damage.
common::Status ReadSegmentEvents(const std::string& path, std::vector<events::StoredEvent>& out);

}  // namespace analytics::store::embedded
