#include "bus/event_bus.h"

#include "common/ids.h"
#include "common/time_util.h"

namespace analytics::bus {

nlohmann::json MakeCloudEvent(const std::string& type, const std::string& subject, nlohmann::json data) {
  return {{"specversion", "1.0"},
          {"id", common::NewUuid()},
          {"source", kSource},
          {"type", type},
          {"subject", subject},
          {"time", common::FormatRfc3339Millis(common::NowMillis())},
          {"datacontenttype", "application/json"},
          {"data", std::move(data)}};
}

}  // namespace analytics::bus
