#include "query/sessions.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "common/parallel.h"
#include "common/radix_sort.h"

namespace analytics::query {

namespace {

using Mark = SessionMarks::Mark;

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kNothingOpen = std::numeric_limits<int64_t>::min();

bool NameLess(const Mark& a, const Mark& b) {
  return std::tie(a.user, a.hash, a.hash_low) < std::tie(b.user, b.hash, b.hash_low);
}

bool SameName(const Mark& a, const Mark& b) { return a.user == b.user && a.hash == b.hash && a.hash_low == b.hash_low; }

// A day's order: by name, then time, ends before starts at equal times (read order is kept by a stable sort).
bool DayOrder(const Mark& a, const Mark& b) {
  if (!SameName(a, b)) return NameLess(a, b);
  if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
  return a.group == SessionMarks::kEnd && b.group != SessionMarks::kEnd;
}

// Pairs one name's marks [first, last) (in day order) from a session open since `carried_start` (kNothingOpen:
// none), by docs/metrics.md section 3: a start opens a session when none is open, an end closes the open one,
// and a session closes max_ms after its start at the latest. emit(start_ms, end_ms, start mark) per session,
// the carried one with a null mark.
template <typename Emit>
void PairRun(const Mark* first, const Mark* last, int64_t max_ms, int64_t carried_start, Emit&& emit) {
  const Mark* open = nullptr;
  bool is_open = carried_start != kNothingOpen;
  int64_t open_start = carried_start;
  auto close = [&](int64_t end_ms) {
    emit(open_start, end_ms, open);
    is_open = false;
    open = nullptr;
  };
  for (const Mark* mark = first; mark != last; ++mark) {
    if (is_open && mark->time_ms >= open_start + max_ms) close(open_start + max_ms);
    if (mark->group != SessionMarks::kEnd) {
      if (!is_open) {
        is_open = true;
        open = mark;
        open_start = mark->time_ms;
      }
    } else if (is_open) {
      close(mark->time_ms);
    }
  }
  if (is_open) close(open_start + max_ms);
}

struct Paired {
  int64_t start_ms, end_ms;
  const Mark* start;
  bool operator==(const Paired&) const = default;
};

std::vector<Paired> PairAll(const Mark* first, const Mark* last, int64_t max_ms, int64_t carried_start,
                            int64_t* carried_end = nullptr) {
  std::vector<Paired> out;
  PairRun(first, last, max_ms, carried_start, [&](int64_t start_ms, int64_t end_ms, const Mark* start) {
    if (start == nullptr) {
      *carried_end = end_ms;
    } else {
      out.push_back({start_ms, end_ms, start});
    }
  });
  return out;
}

}  // namespace

uint64_t SessionDay::MemoryBytes() const {
  uint64_t bytes = sizeof(SessionDay) + marks.capacity() * sizeof(Mark) +
                   (changes.capacity() + spill.capacity()) * sizeof(uint64_t) +
                   (open_at_end.capacity() + sessions.capacity()) * sizeof(uint32_t);
  for (const GroupKey& group : groups) {
    bytes += sizeof(GroupKey) + group.capacity() * sizeof(std::optional<std::string>);
    for (const auto& value : group) bytes += value ? value->capacity() : 0;
  }
  for (const Roaring& set : users) bytes += sizeof(set) + set.getSizeInBytes(false);
  return bytes;
}

common::Result<SessionDay> BuildSessionDay(const SessionQuery& query, int64_t start_ms, int64_t end_ms,
                                           const std::vector<const SessionMarks*>& sources) {
  if (end_ms < start_ms || end_ms - start_ms > 2 * kDayMs || query.max_session_ms <= 0 ||
      query.max_session_ms > 30 * kDayMs) {
    return common::Status::InvalidArgument("a session day spans at most 2 days and sessions at most 30 days");
  }
  SessionDay day;
  day.start_ms = start_ms;
  day.end_ms = end_ms;
  size_t count = 0;
  for (const SessionMarks* source : sources) {
    for (const Mark& mark : source->marks) count += mark.time_ms >= start_ms && mark.time_ms < end_ms;
  }
  day.marks.reserve(count);
  // The sources' marks in read order, their groups renumbered for the day.
  std::map<GroupKey, uint32_t> group_index;
  constexpr uint32_t kUnmapped = std::numeric_limits<uint32_t>::max();
  for (const SessionMarks* source : sources) {
    std::vector<uint32_t> to_day(source->groups.size(), kUnmapped);
    for (const Mark& mark : source->marks) {
      if (mark.time_ms < start_ms || mark.time_ms >= end_ms) continue;
      Mark& copy = day.marks.emplace_back(mark);
      if (mark.group == SessionMarks::kEnd) continue;
      day.newest_start_ms = std::max(day.newest_start_ms, mark.time_ms);
      uint32_t& local = to_day[mark.group];
      if (local == kUnmapped) {
        auto [it, inserted] = group_index.try_emplace(source->groups[mark.group], static_cast<uint32_t>(day.groups.size()));
        if (inserted) day.groups.push_back(it->first);
        local = it->second;
      }
      copy.group = local;
    }
  }
  std::stable_sort(day.marks.begin(), day.marks.end(), DayOrder);
  day.sessions.assign(day.groups.size(), 0);
  day.users.resize(day.groups.size());
  day.changes.reserve(day.marks.size());
  const Mark* marks = day.marks.data();
  for (size_t begin = 0; begin < day.marks.size();) {
    size_t end = begin + 1;
    while (end < day.marks.size() && SameName(marks[end], marks[begin])) ++end;
    PairRun(marks + begin, marks + end, query.max_session_ms, kNothingOpen,
            [&](int64_t session_start, int64_t session_end, const Mark* start) {
              const uint32_t group = start->group;
              day.changes.push_back(EncodeChange(session_start - start_ms, true, group));
              (session_end < end_ms ? day.changes : day.spill)
                  .push_back(EncodeChange(session_end - start_ms, false, group));
              if (session_end > end_ms) day.open_at_end.push_back(static_cast<uint32_t>(start - marks));
              ++day.sessions[group];
              if (start->user != kNoUser) day.users[group].add(start->user);  // ascending: marks are by user
            });
    begin = end;
  }
  common::RadixSort(day.changes);
  std::sort(day.spill.begin(), day.spill.end());
  day.changes.shrink_to_fit();
  for (Roaring& set : day.users) {
    set.runOptimize();
    set.shrinkToFit();
  }
  return day;
}

namespace {

// The first mark of `name` at or after `from` in [from, end) (marks in name order), or where it would be:
// galloping, since the names searched come in order too.
const Mark* FindName(const Mark* from, const Mark* end, const Mark& name) {
  const Mark* low = from;
  const Mark* high = from;
  for (size_t step = 1; high < end && NameLess(*high, name); step *= 2) {
    low = high + 1;
    high = end - high > static_cast<ptrdiff_t>(step) ? high + step : end;
  }
  return std::lower_bound(low, high, name, NameLess);
}

const Mark* NameEnd(const Mark* first, const Mark* end, const Mark& name) {
  while (first < end && SameName(*first, name)) ++first;
  return first;
}

}  // namespace

uint64_t SessionLink::MemoryBytes() const {
  return sizeof(SessionLink) + ends.capacity() * sizeof(int64_t) + closes.capacity() * sizeof(uint64_t);
}

SessionLink LinkSessionDays(const SessionQuery& query, const SessionDay& earlier, const SessionDay& later) {
  SessionLink link;
  link.ends.reserve(earlier.open_at_end.size());
  const Mark* marks = later.marks.data();
  const Mark* marks_end = marks + later.marks.size();
  const Mark* cursor = marks;
  for (uint32_t mark_idx : earlier.open_at_end) {
    const Mark& start = earlier.marks[mark_idx];
    if (start.time_ms + query.max_session_ms <= later.start_ms) {
      link.ends.push_back(start.time_ms + query.max_session_ms);
      continue;
    }
    const Mark* first = FindName(cursor, marks_end, start);
    const Mark* last = NameEnd(first, marks_end, start);
    cursor = last;
    int64_t carried_end = 0;
    const bool same = PairAll(first, last, query.max_session_ms, start.time_ms, &carried_end) ==
                      PairAll(first, last, query.max_session_ms, kNothingOpen);
    link.ends.push_back(same && carried_end <= later.end_ms ? carried_end : SessionLink::kPairAgain);
  }
  // The earlier day's spill with those closes moved.
  std::vector<uint64_t> moved_from, moved_to;
  for (size_t entry = 0; entry < link.ends.size(); ++entry) {
    const Mark& start = earlier.marks[earlier.open_at_end[entry]];
    const int64_t limit = start.time_ms + query.max_session_ms;
    if (link.ends[entry] == SessionLink::kPairAgain || link.ends[entry] == limit) continue;
    moved_from.push_back(EncodeChange(limit - earlier.start_ms, false, start.group));
    moved_to.push_back(EncodeChange(link.ends[entry] - earlier.start_ms, false, start.group));
  }
  std::sort(moved_from.begin(), moved_from.end());
  std::sort(moved_to.begin(), moved_to.end());
  std::vector<uint64_t> kept;
  std::set_difference(earlier.spill.begin(), earlier.spill.end(), moved_from.begin(), moved_from.end(),
                      std::back_inserter(kept));
  link.closes.reserve(kept.size() + moved_to.size());
  std::merge(kept.begin(), kept.end(), moved_to.begin(), moved_to.end(), std::back_inserter(link.closes));
  return link;
}

PairedSessions PairDays(const SessionQuery& query, std::vector<std::shared_ptr<const SessionDay>> days,
                        std::vector<std::shared_ptr<const SessionLink>>* links) {
  PairedSessions out;
  out.days = std::move(days);
  std::map<GroupKey, uint32_t> group_index;
  for (const auto& day : out.days) {
    for (const GroupKey& group : day->groups) group_index.emplace(group, 0);
  }
  for (auto& [group, id] : group_index) {
    id = static_cast<uint32_t>(out.groups.size());
    out.groups.push_back(group);
  }
  out.session_counts.assign(out.groups.size(), 0);
  if (query.collect_users) out.users.resize(out.groups.size());
  if (links != nullptr) links->resize(out.days.size());
  const int64_t max_ms = query.max_session_ms;

  // A session open at the end of a day, by name.
  struct Carry {
    Mark name;  // user, hash, hash_low
    int64_t start_ms = 0;
    uint32_t group = 0;  // index in out.groups
  };
  // Carried into the next day: the day's own open sessions but those of `corrected` names, and `carries`.
  std::vector<Carry> carries;
  std::vector<Mark> corrected;  // names whose sessions of the day changed, in name order
  std::vector<PairedSessions::Change> corrections;
  for (size_t day_idx = 0; day_idx < out.days.size(); ++day_idx) {
    const SessionDay& day = *out.days[day_idx];
    std::vector<uint32_t>& to_global = out.day_groups.emplace_back();
    for (const GroupKey& group : day.groups) to_global.push_back(group_index.at(group));
    for (size_t group = 0; group < day.groups.size(); ++group) out.session_counts[to_global[group]] += day.sessions[group];
    out.newest_start_ms = std::max(out.newest_start_ms, day.newest_start_ms);
    const Mark* marks = day.marks.data();
    const Mark* marks_end = marks + day.marks.size();

    // Each carried session: where the day's marks of its name close it, and whether they pair differently with
    // it open. A difference becomes corrections: the day's sessions of that name cancelled (a close at each
    // open, an open at each close), the new ones added; and a moved close of the carried session.
    std::vector<Carry> next;
    std::vector<Mark> day_corrected;
    std::map<uint32_t, std::vector<std::pair<Mark, std::vector<uint32_t>>>> fixes;  // user → (name, day groups)
    const Mark* cursor = marks;
    auto move_close = [&](const Carry& carry, int64_t end_ms) {
      if (end_ms == carry.start_ms + max_ms) return;
      corrections.push_back({carry.start_ms + max_ms, carry.group, true});
      corrections.push_back({end_ms, carry.group, false});
    };
    auto pair_again = [&](const Carry& carry) {
      if (carry.start_ms + max_ms <= day.start_ms) return;  // closed by its time limit before the day
      const Mark* first = FindName(cursor, marks_end, carry.name);
      const Mark* last = NameEnd(first, marks_end, carry.name);
      cursor = last;
      int64_t carried_end = 0;
      const std::vector<Paired> paired = PairAll(first, last, max_ms, carry.start_ms, &carried_end);
      if (carried_end > day.end_ms) {
        next.push_back(carry);  // still open: its close stays at the time limit
      } else {
        move_close(carry, carried_end);
      }
      const std::vector<Paired> own = PairAll(first, last, max_ms, kNothingOpen);
      if (own == paired) return;
      for (const Paired& session : own) {
        const uint32_t group = to_global[session.start->group];
        corrections.push_back({session.start_ms, group, false});
        corrections.push_back({session.end_ms, group, true});
        --out.session_counts[group];
      }
      std::vector<uint32_t> groups;
      for (const Paired& session : paired) {
        const uint32_t group = to_global[session.start->group];
        corrections.push_back({session.start_ms, group, true});
        corrections.push_back({session.end_ms, group, false});
        ++out.session_counts[group];
        groups.push_back(session.start->group);
        if (session.end_ms > day.end_ms) next.push_back({carry.name, session.start_ms, group});
      }
      day_corrected.push_back(carry.name);
      if (query.collect_users && carry.name.user != kNoUser) {
        fixes[carry.name.user].emplace_back(carry.name, std::move(groups));
      }
    };
    if (links != nullptr && day_idx + 1 < out.days.size() && !(*links)[day_idx + 1]) {
      (*links)[day_idx + 1] = std::make_shared<const SessionLink>(LinkSessionDays(query, day, *out.days[day_idx + 1]));
    }
    if (day_idx > 0) {
      // The previous day's own open sessions (most carries). Through the link of the two days, when there is one,
      // the closes it resolved are in the previous day's spill already (but for names corrected that day, whose
      // sessions were cancelled as they were: their moved close is moved back).
      const SessionDay& previous = *out.days[day_idx - 1];
      const std::vector<uint32_t>& previous_groups = out.day_groups[day_idx - 1];
      const SessionLink* link = links != nullptr ? (*links)[day_idx].get() : nullptr;
      size_t skip = 0;
      for (size_t entry = 0; entry < previous.open_at_end.size(); ++entry) {
        const Mark& start = previous.marks[previous.open_at_end[entry]];
        const Carry carry{start, start.time_ms, previous_groups[start.group]};
        const bool linked = link != nullptr && link->ends[entry] != SessionLink::kPairAgain;
        while (skip < corrected.size() && NameLess(corrected[skip], start)) ++skip;
        if (skip < corrected.size() && SameName(corrected[skip], start)) {
          if (linked && link->ends[entry] != carry.start_ms + max_ms) {
            corrections.push_back({link->ends[entry], carry.group, true});
            corrections.push_back({carry.start_ms + max_ms, carry.group, false});
          }
          continue;
        }
        if (!linked) pair_again(carry);
      }
      cursor = marks;
    }
    for (const Carry& carry : carries) pair_again(carry);
    std::sort(day_corrected.begin(), day_corrected.end(), NameLess);
    corrected = std::move(day_corrected);
    std::sort(next.begin(), next.end(), [](const Carry& a, const Carry& b) { return NameLess(a.name, b.name); });
    carries = std::move(next);
    const bool linked = links != nullptr && day_idx + 1 < out.days.size();
    for (uint64_t change : linked ? (*links)[day_idx + 1]->closes : day.spill) {
      out.extra.push_back({day.start_ms + static_cast<int64_t>(change >> kChangeTimeShift),
                           to_global[change & kChangeGroupMask], (change & kChangeOpenBit) != 0});
    }

    if (!query.collect_users) continue;
    // Users: the day's sets, less a corrected user in the groups they no longer have a session of that day (over
    // all their names), plus the groups they gained.
    std::map<uint32_t, std::vector<uint32_t>> removed, added;  // day group → users
    for (const auto& [user, names] : fixes) {
      Mark key;
      key.user = user;
      const auto [first, last] = std::equal_range(marks, marks_end, key, [](const Mark& a, const Mark& b) {
        return a.user < b.user;
      });
      std::vector<uint32_t> before, after;
      for (const Mark* run = first; run != last;) {
        const Mark* run_end = NameEnd(run, last, *run);
        const std::vector<Paired> own = PairAll(run, run_end, max_ms, kNothingOpen);
        for (const Paired& session : own) before.push_back(session.start->group);
        auto fix = std::find_if(names.begin(), names.end(), [&](const auto& name) { return SameName(name.first, *run); });
        if (fix != names.end()) {
          after.insert(after.end(), fix->second.begin(), fix->second.end());
        } else {
          for (const Paired& session : own) after.push_back(session.start->group);
        }
        run = run_end;
      }
      std::sort(before.begin(), before.end());
      before.erase(std::unique(before.begin(), before.end()), before.end());
      std::sort(after.begin(), after.end());
      after.erase(std::unique(after.begin(), after.end()), after.end());
      for (uint32_t group : before) {
        if (!std::binary_search(after.begin(), after.end(), group)) removed[group].push_back(user);
      }
      for (uint32_t group : after) {
        if (!std::binary_search(before.begin(), before.end(), group)) added[group].push_back(user);
      }
    }
    for (size_t group = 0; group < day.groups.size(); ++group) {
      Roaring& users = out.users[to_global[group]];
      auto gone = removed.find(static_cast<uint32_t>(group));
      if (gone == removed.end()) {
        users |= day.users[group];
      } else {
        Roaring kept = day.users[group];
        for (uint32_t user : gone->second) kept.remove(user);
        users |= kept;
      }
      auto gained = added.find(static_cast<uint32_t>(group));
      if (gained != added.end()) {
        for (uint32_t user : gained->second) users.add(user);
      }
    }
  }
  // The spills are in time order already when sessions are shorter than a day (each day's lie between the next
  // day's start and the time limit); the corrections are few.
  auto before = [](const PairedSessions::Change& a, const PairedSessions::Change& b) {
    if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
    return !a.open && b.open;
  };
  if (!std::is_sorted(out.extra.begin(), out.extra.end(), before)) std::sort(out.extra.begin(), out.extra.end(), before);
  std::sort(corrections.begin(), corrections.end(), before);
  const size_t spills = out.extra.size();
  out.extra.insert(out.extra.end(), corrections.begin(), corrections.end());
  std::inplace_merge(out.extra.begin(), out.extra.begin() + static_cast<ptrdiff_t>(spills), out.extra.end(), before);
  return out;
}

namespace {

// The peaks of the buckets of `bounds` from the changes of days [day_begin, day_end) and extras [extra_begin,
// extra_end) (all in time order), counting from `open` (per slot; left as the count after the last change read).
// Changes before the first bound only count; the first change at or after the last bound ends the sweep.
void SweepRange(const PairedSessions& sessions, size_t day_begin, size_t day_end, size_t extra_begin, size_t extra_end,
                const std::vector<int64_t>& bounds, const std::vector<int32_t>& slot_of,
                std::vector<std::vector<int64_t>>& peaks, std::vector<int64_t>& open) {
  const size_t slots = open.size();
  const int64_t last_bucket = static_cast<int64_t>(bounds.size()) - 1;
  struct SlotState {
    int64_t open = 0;
    int64_t touched = -1;      // the last bucket whose peak it set
    int64_t* peaks = nullptr;
  };
  // Groups counted nowhere go to a scratch slot (past the others): no branch on it per change.
  std::vector<int64_t> scratch(bounds.size());
  std::vector<SlotState> state(slots + 1);
  for (size_t s = 0; s < slots; ++s) state[s] = {open[s], -1, peaks[s].data()};
  state[slots] = {0, -1, scratch.data()};
  auto slot_index = [&](int32_t slot) { return slot < 0 ? slots : static_cast<size_t>(slot); };
  int64_t bucket = -1;  // the bucket of the current time; -1 before the first
  int64_t bucket_start = std::numeric_limits<int64_t>::min();
  int64_t next_bound = bounds.front();
  // Applies one change; false once past the last bucket.
  auto apply = [&](int64_t time_ms, bool is_open, size_t slot) {
    while (time_ms >= next_bound) {
      if (++bucket == last_bucket) return false;
      bucket_start = next_bound;
      next_bound = bounds[static_cast<size_t>(bucket + 1)];
    }
    SlotState& entry = state[slot];
    const int64_t delta = is_open ? 1 : -1;
    if (bucket < 0) {
      entry.open += delta;
      return true;
    }
    if (entry.touched != bucket) {
      for (int64_t idx = entry.touched + 1; idx <= bucket; ++idx) entry.peaks[idx] = entry.open;
      entry.touched = bucket;
    }
    entry.open += delta;
    int64_t& value = entry.peaks[bucket];
    // At the bucket's start its value is the count once that instant's changes are all applied.
    value = time_ms == bucket_start ? entry.open : std::max(value, entry.open);
    return true;
  };
  const auto& extra = sessions.extra;
  size_t next_extra = extra_begin;
  auto extra_time = [&] { return next_extra < extra_end ? extra[next_extra].time_ms : std::numeric_limits<int64_t>::max(); };
  int64_t next_extra_ms = extra_time();
  bool going = true;
  std::vector<size_t> local_slots;
  for (size_t day_idx = day_begin; day_idx < day_end && going; ++day_idx) {
    const SessionDay& day = *sessions.days[day_idx];
    local_slots.clear();
    for (uint32_t group : sessions.day_groups[day_idx]) local_slots.push_back(slot_index(slot_of[group]));
    const int64_t base = day.start_ms;
    for (uint64_t change : day.changes) {
      const int64_t time_ms = base + static_cast<int64_t>(change >> kChangeTimeShift);
      const bool is_open = (change & kChangeOpenBit) != 0;
      if (next_extra_ms <= time_ms) {
        while (next_extra < extra_end && (extra[next_extra].time_ms < time_ms ||
                                          (extra[next_extra].time_ms == time_ms && !extra[next_extra].open && is_open))) {
          const auto& other = extra[next_extra++];
          if (!apply(other.time_ms, other.open, slot_index(slot_of[other.group]))) {
            going = false;
            break;
          }
        }
        next_extra_ms = extra_time();
      }
      if (!going || !apply(time_ms, is_open, local_slots[change & kChangeGroupMask])) {
        going = false;
        break;
      }
    }
  }
  for (; going && next_extra < extra_end; ++next_extra) {
    going = apply(extra[next_extra].time_ms, extra[next_extra].open, slot_index(slot_of[extra[next_extra].group]));
  }
  for (size_t s = 0; s < slots; ++s) {
    for (int64_t idx = state[s].touched + 1; idx < last_bucket; ++idx) peaks[s][static_cast<size_t>(idx)] = state[s].open;
    open[s] = state[s].open;
  }
}

}  // namespace

std::vector<std::vector<int64_t>> SweepPeaks(const PairedSessions& sessions, const std::vector<int64_t>& bounds,
                                             const std::vector<int32_t>& slot_of, size_t slots, size_t threads,
                                             uint64_t run_changes) {
  const size_t buckets = bounds.size() < 2 ? 0 : bounds.size() - 1;
  std::vector<std::vector<int64_t>> peaks(slots, std::vector<int64_t>(buckets, 0));
  if (buckets == 0) return peaks;
  // The days in the period, cut into runs of about equal numbers of changes, one per thread. A run sweeps the
  // part of the buckets in its time range [lo, hi) (its first part starts at lo) counting from zero; the run's
  // peaks, raised by the count the runs before it leave, are the peaks of those parts. The first run also takes
  // what comes before the period, the last what comes after it.
  const auto& days = sessions.days;
  size_t day_end = 0;
  uint64_t total = 0;
  while (day_end < days.size() && days[day_end]->start_ms < bounds.back()) total += days[day_end++]->changes.size();
  const size_t runs = std::clamp<size_t>(std::min<uint64_t>(threads, total / std::max<uint64_t>(run_changes, 1)), 1, std::max<size_t>(day_end, 1));
  std::vector<size_t> run_days = {0};  // run r: days [run_days[r], run_days[r + 1])
  uint64_t seen = 0;
  for (size_t day_idx = 0; day_idx < day_end && run_days.size() < runs; ++day_idx) {
    seen += days[day_idx]->changes.size();
    // Runs after the first start inside the period (so each has a part of it).
    if (day_idx + 1 < day_end && days[day_idx + 1]->start_ms > bounds.front() && seen * runs >= total * run_days.size()) {
      run_days.push_back(day_idx + 1);
    }
  }
  run_days.push_back(day_end);
  const size_t run_count = run_days.size() - 1;
  struct Run {
    std::vector<int64_t> bounds;  // the parts of the buckets in [lo, hi)
    size_t first_bucket = 0;      // the bucket of the first part
    std::vector<std::vector<int64_t>> peaks;
    std::vector<int64_t> open;    // the count change over the run
  };
  std::vector<Run> out(run_count);
  auto extra_at = [&](int64_t time_ms) {
    return static_cast<size_t>(
        std::lower_bound(sessions.extra.begin(), sessions.extra.end(), time_ms,
                         [](const PairedSessions::Change& change, int64_t at) { return change.time_ms < at; }) -
        sessions.extra.begin());
  };
  common::ParallelFor(run_count, run_count, [&](size_t run_idx) {
    Run& run = out[run_idx];
    const bool first = run_idx == 0, last = run_idx + 1 == run_count;
    const int64_t lo = first ? bounds.front() : std::max(bounds.front(), days[run_days[run_idx]]->start_ms);
    const int64_t hi = last ? bounds.back() : std::min(bounds.back(), days[run_days[run_idx + 1]]->start_ms);
    const size_t extra_begin = first ? 0 : extra_at(days[run_days[run_idx]]->start_ms);
    const size_t extra_end = last ? sessions.extra.size() : extra_at(days[run_days[run_idx + 1]]->start_ms);
    run.first_bucket = static_cast<size_t>(std::upper_bound(bounds.begin(), bounds.end(), lo) - bounds.begin() - 1);
    run.bounds.push_back(lo);
    for (size_t idx = run.first_bucket + 1; idx < bounds.size() && bounds[idx] < hi; ++idx) run.bounds.push_back(bounds[idx]);
    run.bounds.push_back(hi);
    run.peaks.assign(slots, std::vector<int64_t>(run.bounds.size() - 1, 0));
    run.open.assign(slots, 0);
    if (lo < hi) {
      SweepRange(sessions, run_days[run_idx], run_days[run_idx + 1], extra_begin, extra_end, run.bounds, slot_of,
                 run.peaks, run.open);
    }
  });
  if (run_count == 1 && out[0].bounds == bounds) return std::move(out[0].peaks);
  std::vector<int64_t> offset(slots, 0);
  std::vector<uint8_t> set(buckets, 0);
  for (const Run& run : out) {
    if (run.bounds.front() < run.bounds.back()) {
      for (size_t s = 0; s < slots; ++s) {
        for (size_t part = 0; part < run.peaks[s].size(); ++part) {
          const size_t bucket = run.first_bucket + part;
          const int64_t value = offset[s] + run.peaks[s][part];
          peaks[s][bucket] = set[bucket] ? std::max(peaks[s][bucket], value) : value;
        }
      }
      for (size_t part = 0; part + 1 < run.bounds.size(); ++part) set[run.first_bucket + part] = 1;
    }
    for (size_t s = 0; s < slots; ++s) offset[s] += run.open[s];
  }
  return peaks;
}

}  // namespace analytics::query
