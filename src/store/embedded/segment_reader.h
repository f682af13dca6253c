// Segment format 3 reader (docs/formats/segment.md), and the conversion of decoded events to columns used for
// format 2 files. The public entry points (segment.h) dispatch here by the file's magic.
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

// Only the columns `request` names.
common::Result<SegmentColumns> ReadColumns(const SegmentFile& file, const SegmentColumnRequest& request);

}  // namespace v3

// The columns of already decoded events, in their order (format 2 files, which have no typed `data` columns,
// and events still in memory), with the same values ReadSegmentColumns gives for a segment of them: user runs
// are runs of equal consecutive users, properties are parsed from each row's `data` text.
SegmentColumns ColumnsFromEvents(const std::vector<events::StoredEvent>& rows, const SegmentColumnRequest& request);

// Removes the rows of `users` from decoded columns that include the user columns (request.user); dictionaries
// keep their values. Queries use it for erased users whose events are not purged from the segment yet.
void ExcludeUsers(SegmentColumns& columns, const std::set<std::string, std::less<>>& users);
SegmentColumns ColumnsFromEvents(const std::vector<const events::StoredEvent*>& rows,
                                 const SegmentColumnRequest& request);

}  // namespace analytics::store::embedded
