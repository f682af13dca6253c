// Sessions of peak_concurrent (docs/metrics.md section 3), paired a day at a time.
//
// Pairing is sequential per session name (user, key), but few names have a session open across midnight: a
// day paired on its own, as if nothing were open when it began, is right for every other name. The embedded
// store keeps one SessionDay per day partition and session shape: the day's marks sorted by name, the opens
// and closes of its sessions as sorted lists, and the sessions still open at its end. A query joins its days
// in time order (PairDays): a session left open by one day is carried into the next, the names it touches
// there are paired again from that state, and where the result differs the difference is written as a few
// extra changes (cancelling ones included). SweepPeaks then reads the days' lists and the extras as one
// time-ordered stream: no per-query sort or copy of millions of sessions.
// Thread-safety: plain values; the functions are reentrant.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include <roaring/roaring.hh>

#include "common/status.h"
#include "query/aggregate.h"

namespace analytics::query {

// One day of a SessionQuery: the marks in [start_ms, end_ms), paired with nothing open at start_ms.
struct SessionDay {
  int64_t start_ms = 0, end_ms = 0;
  // The marks sorted by name (user, hash, hash_low), then time, ends first, then read order. A start's `group`
  // indexes `groups`.
  std::vector<SessionMarks::Mark> marks;
  std::vector<GroupKey> groups;
  // Opens and closes of the sessions that start in the day, as changes (EncodeChange, times relative to
  // start_ms): those before end_ms in `changes`, the closes at or after it in `spill`; both sorted.
  std::vector<uint64_t> changes, spill;
  // Sessions still open at end_ms (their time limit is later): the index in `marks` of each one's start, in
  // name order.
  std::vector<uint32_t> open_at_end;
  std::vector<uint32_t> sessions;       // per group: sessions starting in the day
  std::vector<Roaring> users;  // per group: their users
  int64_t newest_start_ms = std::numeric_limits<int64_t>::min();  // among the start marks
  uint64_t MemoryBytes() const;
};

// A change: bits 31.. the time relative to a base, bit 30 set for an open (closes sort first at equal times),
// bits 0..29 the group.
inline constexpr int kChangeTimeShift = 31;
inline constexpr uint64_t kChangeOpenBit = uint64_t{1} << 30;
inline constexpr uint64_t kChangeGroupMask = kChangeOpenBit - 1;
inline uint64_t EncodeChange(int64_t relative_ms, bool open, uint32_t group) {
  return (static_cast<uint64_t>(relative_ms) << kChangeTimeShift) | (open ? kChangeOpenBit : 0) | group;
}

// Pairs the marks of `sources` (in read order; SessionMarksBuilder) that lie in [start_ms, end_ms). The day may
// be at most 2 days long and the query's max_session_ms at most 30 days (the changes' time field);
// InvalidArgument otherwise.
common::Result<SessionDay> BuildSessionDay(const SessionQuery& query, int64_t start_ms, int64_t end_ms,
                                           const std::vector<const SessionMarks*>& sources);

// The sessions of a query: its days joined.
struct PairedSessions {
  std::vector<GroupKey> groups;               // every group of the days, sorted
  std::vector<uint64_t> session_counts;       // per group: its sessions (a group with none is not a result)
  std::vector<Roaring> users;        // per group: users of its sessions (query.collect_users only)
  std::vector<std::shared_ptr<const SessionDay>> days;  // in time order
  std::vector<std::vector<uint32_t>> day_groups;        // per day: its group index → index in `groups`
  struct Change {
    int64_t time_ms = 0;
    uint32_t group = 0;  // index in `groups`
    bool open = false;
  };
  // The days' spills and the corrections of carried sessions, sorted by time, closes first.
  std::vector<Change> extra;
  int64_t newest_start_ms = std::numeric_limits<int64_t>::min();
};

// What the sessions open at the end of one day become in the next day a query reads: per entry of the earlier
// day's open_at_end, the time the session closes, or kPairAgain when the later day's marks of its name pair
// differently with it open (or it stays open through the later day). Depends on the two days only (cacheable).
struct SessionLink {
  static constexpr int64_t kPairAgain = std::numeric_limits<int64_t>::min();
  std::vector<int64_t> ends;
  // The earlier day's spill with the closes of `ends` moved there (as SessionDay::spill: sorted, relative to the
  // earlier day's start, its groups).
  std::vector<uint64_t> closes;
  uint64_t MemoryBytes() const;
};
SessionLink LinkSessionDays(const SessionQuery& query, const SessionDay& earlier, const SessionDay& later);

// Joins `days` (in time order, not overlapping, all built for `query`): the sessions are exactly those of
// pairing every name's marks of all the days in one sequence. With `links`, (*links)[d] joins days d - 1 and d
// (entry 0 unused): those given are used, the missing ones made and stored there (the caller may keep them);
// without, the carried sessions are looked up in each day.
PairedSessions PairDays(const SessionQuery& query, std::vector<std::shared_ptr<const SessionDay>> days,
                        std::vector<std::shared_ptr<const SessionLink>>* links = nullptr);

// The peak of each bucket of `bounds` (bucket i = [bounds[i], bounds[i+1])) per slot: group g counts in slot
// slot_of[g] (-1: nowhere). A bucket's peak is the most sessions of the slot open at one instant of it
// ([start, end) intervals; the changes at one instant all apply before it is read). Up to `threads` threads
// sweep runs of days, each of at least `run_changes` changes; the result does not depend on either.
std::vector<std::vector<int64_t>> SweepPeaks(const PairedSessions& sessions, const std::vector<int64_t>& bounds,
                                             const std::vector<int32_t>& slot_of, size_t slots, size_t threads = 1,
                                             uint64_t run_changes = 1'000'000);

}  // namespace analytics::query
