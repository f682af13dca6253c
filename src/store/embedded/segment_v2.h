// Reader of segment format 2 ("ASEGv002", docs/formats/segment.md): files written before format 3 stay
// readable. Nothing writes format 2 any more.
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "events/event.h"
#include "store/embedded/segment.h"

namespace analytics::store::embedded::v2 {

common::Result<SegmentInfo> ReadInfo(const std::string& path);
common::Status ReadEvents(const std::string& path, std::vector<events::StoredEvent>& out);
common::Result<std::vector<SegmentColumnStats>> ReadColumnStats(const std::string& path);

}  // namespace analytics::store::embedded::v2
