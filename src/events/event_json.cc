// StoredEvent -> CloudEvent JSON; see event_json.h.
#include "events/event_json.h"

#include "common/time_util.h"

namespace analytics::events {

nlohmann::json ToCloudEvent(const StoredEvent& event) {
  nlohmann::json out = nlohmann::json::object();
  out["specversion"] = "1.0";
  out["id"] = event.id;
  out["source"] = event.source;
  out["type"] = event.type;
  out["time"] = common::FormatRfc3339Millis(event.time_ms);
  if (event.user_in_subject && !event.user.empty()) out["subject"] = event.user;
  if (!event.data.empty()) {
    nlohmann::json data = nlohmann::json::parse(event.data, nullptr, /*allow_exceptions=*/false);
    if (data.is_object()) out["data"] = std::move(data);
  }
  if (!event.extensions.empty()) {
    nlohmann::json attributes = nlohmann::json::parse(event.extensions, nullptr, /*allow_exceptions=*/false);
    if (attributes.is_object()) {
      for (auto& [name, value] : attributes.items()) {
        if (!out.contains(name)) out[name] = std::move(value);
      }
    }
  }
  if (event.time_defaulted) out[kTimeDefaultedAttribute] = true;
  return out;
}

}  // namespace analytics::events
