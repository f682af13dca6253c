// Segment reading entry points: dispatch by the file's magic to the format 3/4 reader (segment_reader.cc) or
// the format 2 reader (segment_v2.cc). The writer is segment_writer.cc.
#include "store/embedded/segment.h"

#include "store/embedded/segment_format.h"
#include "store/embedded/segment_reader.h"
#include "store/embedded/segment_v2.h"

namespace analytics::store::embedded {

using common::Result;
using common::Status;

Result<SegmentInfo> ReadSegmentInfo(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(int format, v3::SegmentFormatOf(path));
  if (format == 2) return v2::ReadInfo(path);
  ANALYTICS_ASSIGN_OR_RETURN(auto file, v3::SegmentFile::Open(path));
  const v3::Footer& footer = file->footer();
  SegmentInfo info;
  info.path = path;
  info.rows = footer.rows;
  info.min_time_ms = footer.min_time_ms;
  info.max_time_ms = footer.max_time_ms;
  info.max_received_ms = footer.max_received_ms;
  info.file_bytes = file->file_bytes();
  info.type_counts = footer.type_counts;
  return info;
}

Status ReadSegmentEvents(const std::string& path, std::vector<events::StoredEvent>& out) {
  ANALYTICS_ASSIGN_OR_RETURN(int format, v3::SegmentFormatOf(path));
  if (format == 2) return v2::ReadEvents(path, out);
  ANALYTICS_ASSIGN_OR_RETURN(auto file, v3::SegmentFile::Open(path));
  return v3::ReadEvents(*file, out);
}

Result<SegmentColumns> ReadSegmentColumns(const std::string& path, const SegmentColumnRequest& request) {
  ANALYTICS_ASSIGN_OR_RETURN(int format, v3::SegmentFormatOf(path));
  if (format == 2) {
    std::vector<events::StoredEvent> rows;
    ANALYTICS_RETURN_IF_ERROR(v2::ReadEvents(path, rows));
    return ColumnsFromEvents(rows, request);
  }
  ANALYTICS_ASSIGN_OR_RETURN(auto file, v3::SegmentFile::Open(path));
  return v3::ReadColumns(*file, request);
}

Result<std::vector<SegmentColumnStats>> ReadSegmentColumnStats(const std::string& path) {
  ANALYTICS_ASSIGN_OR_RETURN(int format, v3::SegmentFormatOf(path));
  if (format == 2) return v2::ReadColumnStats(path);
  ANALYTICS_ASSIGN_OR_RETURN(auto file, v3::SegmentFile::Open(path));
  std::vector<SegmentColumnStats> stats;
  for (size_t part_idx = 0; part_idx < file->part_count(); ++part_idx) {
    const v3::Part& part = file->part(part_idx);
    for (const auto& column : part.columns) {
      stats.push_back(SegmentColumnStats{column.name, column.size, column.raw_size, part_idx});
    }
    if (part_idx > 0) {
      stats.push_back(SegmentColumnStats{part.positions.name, part.positions.size, part.positions.raw_size, part_idx});
    }
  }
  return stats;
}

}  // namespace analytics::store::embedded
