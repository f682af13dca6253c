// Reference for peak_concurrent sessions (docs/metrics.md section 3), shared by the query-engine and store tests:
// pairing written the plain way (each name's events sorted, one at a time) and the net changes of open sessions,
// to compare with what query::PairDays joins.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "query/sessions.h"

namespace analytics::testing {

using SessionTuple = std::tuple<int64_t, int64_t, uint32_t>;  // start, end, user
using SessionsByGroup = std::map<query::GroupKey, std::vector<SessionTuple>>;

// One start or end event as the reference reads it.
struct SessionEvent {
  int64_t time_ms = 0;
  bool start = false;
  uint32_t user = query::kNoUser;
  std::string key;          // the key's text
  query::GroupKey group;    // a start's group
};

// Pairs `events` (in read order; the caller leaves out what the query does not read) per (user, key): in time
// order, ends first at equal times, then read order; a start opens a session when none is open, an end closes
// it, `max_session_ms` after its start at the latest.
inline SessionsByGroup ReferenceSessions(const std::vector<SessionEvent>& events, int64_t max_session_ms) {
  std::map<std::pair<uint32_t, std::string>, std::vector<size_t>> by_name;
  for (size_t idx = 0; idx < events.size(); ++idx) by_name[{events[idx].user, events[idx].key}].push_back(idx);
  SessionsByGroup out;
  for (auto& [name, indexes] : by_name) {
    std::stable_sort(indexes.begin(), indexes.end(), [&](size_t a, size_t b) {
      if (events[a].time_ms != events[b].time_ms) return events[a].time_ms < events[b].time_ms;
      return !events[a].start && events[b].start;
    });
    std::optional<size_t> open;
    auto close = [&](int64_t end) {
      out[events[*open].group].emplace_back(events[*open].time_ms, end, name.first);
      open.reset();
    };
    for (size_t idx : indexes) {
      if (open && events[idx].time_ms >= events[*open].time_ms + max_session_ms) {
        close(events[*open].time_ms + max_session_ms);
      }
      if (events[idx].start) {
        if (!open) open = idx;
      } else if (open) {
        close(events[idx].time_ms);
      }
    }
    if (open) close(events[*open].time_ms + max_session_ms);
  }
  return out;
}

using NetChangeMap = std::map<std::pair<query::GroupKey, int64_t>, int64_t>;

// The net change of open sessions per (group, time) that `sessions` describes: the days' lists, the closes the
// links moved and the extras (cancelling entries included) summed, zeros dropped.
inline NetChangeMap NetChanges(const query::PairedSessions& sessions) {
  NetChangeMap net;
  for (size_t day_idx = 0; day_idx < sessions.days.size(); ++day_idx) {
    const query::SessionDay& day = *sessions.days[day_idx];
    for (uint64_t change : day.changes) {
      net[{sessions.groups[sessions.day_groups[day_idx][change & query::kChangeGroupMask]],
           day.start_ms + static_cast<int64_t>(change >> query::kChangeTimeShift)}] +=
          (change & query::kChangeOpenBit) != 0 ? 1 : -1;
    }
  }
  for (const auto& change : sessions.extra) net[{sessions.groups[change.group], change.time_ms}] += change.open ? 1 : -1;
  std::erase_if(net, [](const auto& entry) { return entry.second == 0; });
  return net;
}

inline NetChangeMap NetChanges(const SessionsByGroup& expected) {
  NetChangeMap net;
  for (const auto& [group, sessions] : expected) {
    for (const auto& [start, end, user] : sessions) {
      ++net[{group, start}];
      --net[{group, end}];
    }
  }
  std::erase_if(net, [](const auto& entry) { return entry.second == 0; });
  return net;
}

}  // namespace analytics::testing
