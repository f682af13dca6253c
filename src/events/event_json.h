// Read-back: a StoredEvent as a CloudEvent (JSON structured mode), the shape the raw-events API returns.
// Thread-safety: pure function.
#pragma once

#include <nlohmann/json.hpp>

#include "events/event.h"

namespace analytics::events {

// Name of the extension attribute flagging an event whose `time` was filled in at intake. Longer than a
// CloudEvents extension name may be on input ([a-z0-9]{1,20}), so a producer cannot send it.
inline constexpr const char* kTimeDefaultedAttribute = "analyticstimedefaulted";

// {"specversion":"1.0","id","source","type","time" (RFC 3339, milliseconds, UTC), "subject" (the pseudonym,
// when the user came in `subject`), "data" (the treated object, when the event had data), the kept
// attributes (datacontenttype, dataschema, extensions), "analyticstimedefaulted": true when time was absent}.
// Unparsable stored `data`/`extensions` text (never written by the Normalizer) is left out.
nlohmann::json ToCloudEvent(const StoredEvent& event);

}  // namespace analytics::events
