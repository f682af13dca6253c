// Segment format 3 and 4 reader (docs/formats/segment.md), and the conversion of decoded events to columns used
// for format 2 files. The public entry points (segment.h) dispatch here by the file's magic.
// Thread-safety: reentrant.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "events/event.h"
#include "store/embedded/segment.h"
#include "store/embedded/segment_format.h"

namespace analytics::store::embedded {

namespace v3 {

// Every event of the file, appended to `out` only when the whole file decoded.
common::Status ReadEvents(const SegmentFile& file, std::vector<events::StoredEvent>& out);

// Only the columns `request` names, in the segment's order (the parts' rows merged by their positions).
common::Result<SegmentColumns> ReadColumns(const SegmentFile& file, const SegmentColumnRequest& request);

// The same for the rows of one part only, in the part's order (sorted by user, time, id): what a query reads
// when it needs no row order across parts.
// `first_users`: the first part's users (PartUserList::users of part 0), which later parts refer to; read
// from the file when needed and not given.
common::Result<SegmentColumns> ReadPartColumns(const SegmentFile& file, size_t part_idx,
                                               const SegmentColumnRequest& request,
                                               const std::vector<std::string_view>* first_users = nullptr);

// The users of one part (ascending, one per run) and their rows. The first part (and a format 3 file) lists
// every user in `users`; a later part refers to the first part's users: per user `base_refs` holds its index
// there, or kExtraUser for the next of `users` (the users the first part does not have). Views point into
// `storage`, which may be moved.
struct PartUserList {
  std::string storage;
  std::vector<std::string_view> users;
  std::vector<uint32_t> base_refs;  // later parts only
  std::vector<uint32_t> runs;
};
// `first_user_count`: how many users the first part has, when the caller knows (a later part's references
// are checked against it); else read from the file.
common::Status ReadPartUsers(const SegmentFile& file, size_t part_idx, PartUserList& out,
                             uint64_t first_user_count = UINT64_MAX);

// The positions (in the segment's order, ascending) of the rows of part `part_idx` >= 1.
common::Result<std::vector<uint64_t>> ReadPositions(const SegmentFile& file, size_t part_idx);
// Per row of the segment, the part that holds it.
common::Result<std::vector<uint32_t>> PartOfRows(const SegmentFile& file);

}  // namespace v3

// The columns of already decoded events, in their order (format 2 files, which have no typed `data` columns,
// and events still in memory), with the same values ReadSegmentColumns gives for a segment of them: user runs
// are runs of equal consecutive users, properties are parsed from each row's `data` text.
SegmentColumns ColumnsFromEvents(const std::vector<events::StoredEvent>& rows, const SegmentColumnRequest& request);

// Removes the rows of `users` from decoded columns that include the user columns (request.user); dictionaries
// keep their values. Queries use it for erased users whose events are not purged from the segment yet.
void ExcludeUsers(SegmentColumns& columns, const std::set<std::string, std::less<>>& users);
// Keeps only the rows of the user runs `keep` marks (one flag per entry of columns.user_runs), in order, in every
// per-row column the request filled; users, runs and user codes follow. Whole runs are moved at a time (a query
// restricted to a set of users drops the others' rows before they are converted, filtered or aggregated).
// False (and the columns left as they are) when the runs do not add up to the rows.
bool KeepRuns(SegmentColumns& columns, const std::vector<uint8_t>& keep);
SegmentColumns ColumnsFromEvents(const std::vector<const events::EventView*>& rows,
                                 const SegmentColumnRequest& request);

}  // namespace analytics::store::embedded
