// The paths engine (query/paths.h) against a plain reference written here: per user, the raw events in the
// Timeline's documented order, the anchor found by a loop, the whole step sequence built, collapsed and cut, paths
// counted in a map of type names. Random data with fixed seeds plus hand-made edge cases.
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "query/paths.h"

namespace analytics::query {
namespace {

// One raw event as a test writes it.
struct RawEvent {
  uint32_t user = 0;
  int64_t time_ms = 0;
  std::string type;
  bool anchor = false;  // selector 0 holds (the anchor's type and filters)
  bool step = true;     // selector 1 holds (a step type)
};

// The joined Timeline of `events` as MergeTimelines documents it: users ascending, each user's rows by (time, type
// name, matches); type_names sorted.
Timeline MakeTimeline(std::vector<RawEvent> events) {
  std::set<std::string> names;
  for (const auto& event : events) names.insert(event.type);
  Timeline timeline;
  timeline.type_names.assign(names.begin(), names.end());
  auto bits = [](const RawEvent& event) { return (event.anchor ? 1u : 0u) | (event.step ? 2u : 0u); };
  std::sort(events.begin(), events.end(), [&](const RawEvent& a, const RawEvent& b) {
    return std::make_tuple(a.user, a.time_ms, a.type, bits(a)) < std::make_tuple(b.user, b.time_ms, b.type, bits(b));
  });
  for (size_t row = 0; row < events.size(); ++row) {
    const RawEvent& event = events[row];
    if (row == 0 || events[row - 1].user != event.user) timeline.user_begin.push_back(static_cast<uint32_t>(row));
    timeline.users.push_back(event.user);
    timeline.time_ms.push_back(event.time_ms);
    timeline.matches.push_back(bits(event));
    timeline.types.push_back(static_cast<uint32_t>(
        std::lower_bound(timeline.type_names.begin(), timeline.type_names.end(), event.type) -
        timeline.type_names.begin()));
    timeline.newest_event_ms = std::max(timeline.newest_event_ms, event.time_ms);
  }
  timeline.user_begin.push_back(static_cast<uint32_t>(events.size()));
  return timeline;
}

using NamedPath = std::vector<std::string>;

struct ReferencePaths {
  std::map<NamedPath, uint64_t> paths;  // every distinct path
  uint64_t users = 0;                   // anchored users
};

// The reference: plain loops over each user's events in the documented order.
ReferencePaths Reference(std::vector<RawEvent> events, const PathsSpec& spec) {
  std::map<uint32_t, std::vector<RawEvent>> by_user;
  for (auto& event : events) by_user[event.user].push_back(event);
  ReferencePaths out;
  for (auto& [user, list] : by_user) {
    std::sort(list.begin(), list.end(), [](const RawEvent& a, const RawEvent& b) {
      if (a.time_ms != b.time_ms) return a.time_ms < b.time_ms;
      if (a.type != b.type) return a.type < b.type;
      return std::make_pair(a.anchor, a.step) < std::make_pair(b.anchor, b.step);
    });
    int anchor = -1;
    for (int idx = 0; idx < static_cast<int>(list.size()); ++idx) {
      if (!list[idx].anchor) continue;
      if (anchor == -1 || spec.occurrence == AnchorOccurrence::kLast) anchor = idx;
    }
    if (anchor == -1) continue;
    ++out.users;
    auto counts = [&](const RawEvent& event) {
      if (!event.step) return false;
      if (std::find(spec.excluded_types.begin(), spec.excluded_types.end(), event.type) != spec.excluded_types.end()) {
        return false;
      }
      const int64_t distance = event.time_ms - list[anchor].time_ms;
      if (distance == 0) return false;  // neither before nor after the anchor
      return !spec.window_ms || (distance <= *spec.window_ms && -distance <= *spec.window_ms);
    };
    NamedPath sequence;  // time order, the anchor included
    if (spec.direction == PathDirection::kAfterAnchor) {
      sequence.push_back(list[anchor].type);
      for (size_t idx = anchor + 1; idx < list.size(); ++idx) {
        if (counts(list[idx])) sequence.push_back(list[idx].type);
      }
    } else {
      for (int idx = 0; idx < anchor; ++idx) {
        if (counts(list[idx])) sequence.push_back(list[idx].type);
      }
      sequence.push_back(list[anchor].type);
    }
    if (spec.collapse_repeats) sequence.erase(std::unique(sequence.begin(), sequence.end()), sequence.end());
    if (sequence.size() > spec.steps + 1) {
      if (spec.direction == PathDirection::kAfterAnchor) {
        sequence.resize(spec.steps + 1);
      } else {
        sequence.erase(sequence.begin(), sequence.end() - static_cast<long>(spec.steps + 1));
      }
    }
    ++out.paths[sequence];
  }
  return out;
}

NamedPath Names(const Timeline& timeline, const std::vector<uint32_t>& types) {
  NamedPath names;
  for (uint32_t type : types) names.push_back(timeline.type_names.at(type));
  return names;
}

// Checks every number of `result` against the reference.
void ExpectMatchesReference(const Timeline& timeline, const PathsResult& result, const ReferencePaths& reference,
                            const PathsSpec& spec) {
  std::vector<std::pair<NamedPath, uint64_t>> eligible;
  uint64_t suppressed_paths = 0, suppressed_users = 0;
  for (const auto& [path, users] : reference.paths) {
    if (users < spec.min_users) {
      ++suppressed_paths;
      suppressed_users += users;
    } else {
      eligible.emplace_back(path, users);
    }
  }
  std::sort(eligible.begin(), eligible.end(), [](const auto& a, const auto& b) {
    if (a.second != b.second) return a.second > b.second;
    return a.first < b.first;  // std::vector<std::string> compares lexicographically, prefixes first
  });
  EXPECT_EQ(result.anchored_users, reference.users);
  EXPECT_EQ(result.distinct_paths, reference.paths.size());
  EXPECT_EQ(result.suppressed_paths, suppressed_paths);
  EXPECT_EQ(result.suppressed_users, suppressed_users);
  const size_t top = std::min(spec.max_paths, eligible.size());
  ASSERT_EQ(result.top.size(), top);
  for (size_t rank = 0; rank < top; ++rank) {
    EXPECT_EQ(Names(timeline, result.top[rank].types), eligible[rank].first) << "rank " << rank;
    EXPECT_EQ(result.top[rank].users, eligible[rank].second) << "rank " << rank;
  }
  uint64_t other_users = 0;
  for (size_t rank = top; rank < eligible.size(); ++rank) other_users += eligible[rank].second;
  EXPECT_EQ(result.other_paths, eligible.size() - top);
  EXPECT_EQ(result.other_users, other_users);
  EXPECT_EQ(result.reported_users(), reference.users - suppressed_users);
}

std::vector<RawEvent> RandomEvents(std::mt19937_64& rng, size_t users, size_t max_events, int64_t time_span_ms,
                                   const std::vector<std::string>& types, const std::string& anchor_type) {
  std::vector<RawEvent> events;
  for (uint32_t user = 0; user < users; ++user) {
    const size_t count = std::uniform_int_distribution<size_t>(0, max_events)(rng);
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      RawEvent event;
      event.user = user * 3 + 1;  // sparse ids: the engine must not assume index == id
      // Coarse times: many equal timestamps within a user.
      event.time_ms = 1700000000000 + std::uniform_int_distribution<int64_t>(0, time_span_ms / 1000)(rng) * 1000;
      event.type = types[std::uniform_int_distribution<size_t>(0, types.size() - 1)(rng)];
      event.anchor = event.type == anchor_type && rng() % 4 != 0;  // the anchor's filter fails for a quarter
      event.step = event.type != types.back();                     // the last type is never a step type
      events.push_back(event);
    }
  }
  return events;
}

const std::vector<std::string> kTypes = {"app.open", "cart.add", "game.view", "purchase", "search", "zz.noise"};

TEST(PathsTest, RandomDataMatchesReferenceInEveryMode) {
  std::mt19937_64 rng(20240601);
  int cases = 0;
  for (int round = 0; round < 6; ++round) {
    const auto events = RandomEvents(rng, 400, 14, 60000, kTypes, round % 2 == 0 ? "game.view" : "purchase");
    const Timeline timeline = MakeTimeline(events);
    for (auto direction : {PathDirection::kAfterAnchor, PathDirection::kBeforeAnchor}) {
      for (auto occurrence : {AnchorOccurrence::kFirst, AnchorOccurrence::kLast}) {
        for (bool collapse : {false, true}) {
          for (size_t steps : {1u, 3u, 7u}) {
            PathsSpec spec;
            spec.direction = direction;
            spec.occurrence = occurrence;
            spec.collapse_repeats = collapse;
            spec.steps = steps;
            spec.max_paths = 1 + rng() % 30;
            spec.min_users = 1 + rng() % 3;
            if (rng() % 2) spec.window_ms = static_cast<int64_t>(rng() % 30) * 1000;
            if (rng() % 3 == 0) spec.excluded_types = {"search"};
            SCOPED_TRACE(::testing::Message() << "round " << round << " direction " << static_cast<int>(direction)
                                              << " occurrence " << static_cast<int>(occurrence) << " collapse "
                                              << collapse << " steps " << steps);
            const PathsResult result = CountPaths(timeline, spec, 1 + round % 3);
            ExpectMatchesReference(timeline, result, Reference(events, spec), spec);
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 6 * 2 * 2 * 2 * 3);
}

TEST(PathsTest, ResultDoesNotDependOnThreadCount) {
  std::mt19937_64 rng(7);
  // Enough rows for several parts (the engine splits at 65,536 rows per thread).
  const auto events = RandomEvents(rng, 30000, 20, 3600000, kTypes, "game.view");
  const Timeline timeline = MakeTimeline(events);
  ASSERT_GT(timeline.rows(), 4u * 65536u);
  PathsSpec spec;
  spec.steps = 4;
  spec.max_paths = 50;
  spec.min_users = 2;
  const PathsResult one = CountPaths(timeline, spec, 1);
  ExpectMatchesReference(timeline, one, Reference(events, spec), spec);
  for (size_t threads : {2u, 3u, 4u}) {
    const PathsResult many = CountPaths(timeline, spec, threads);
    ASSERT_EQ(many.top.size(), one.top.size());
    for (size_t rank = 0; rank < one.top.size(); ++rank) {
      EXPECT_EQ(many.top[rank].types, one.top[rank].types);
      EXPECT_EQ(many.top[rank].users, one.top[rank].users);
    }
    EXPECT_EQ(many.anchored_users, one.anchored_users);
    EXPECT_EQ(many.other_users, one.other_users);
    EXPECT_EQ(many.other_paths, one.other_paths);
    EXPECT_EQ(many.suppressed_paths, one.suppressed_paths);
  }
}

// Hand-made cases: one user each unless said otherwise.
PathsResult CountOne(const std::vector<RawEvent>& events, const PathsSpec& spec) {
  return CountPaths(MakeTimeline(events), spec, 1);
}

std::vector<NamedPath> TopNames(const std::vector<RawEvent>& events, const PathsSpec& spec) {
  const Timeline timeline = MakeTimeline(events);
  std::vector<NamedPath> out;
  for (const auto& path : CountPaths(timeline, spec, 1).top) out.push_back(Names(timeline, path.types));
  return out;
}

RawEvent Event(uint32_t user, int64_t time_ms, std::string type, bool anchor = false) {
  return RawEvent{user, time_ms, std::move(type), anchor, true};
}

TEST(PathsTest, EventsAtTheAnchorsMillisecondAreNeitherBeforeNorAfterIt) {
  // At t = 10: "a" sorts before the anchor "m" and "z" after it, yet neither is a step; at t = 20 and t = 5, the
  // steps of one millisecond follow type name order whatever order they were added in.
  const std::vector<RawEvent> events = {Event(1, 10, "z"), Event(1, 10, "m", true), Event(1, 10, "a"),
                                        Event(1, 20, "y"), Event(1, 20, "b"), Event(1, 5, "x"), Event(1, 5, "c")};
  PathsSpec spec;
  spec.steps = 3;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"m", "b", "y"}}));
  spec.direction = PathDirection::kBeforeAnchor;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"c", "x", "m"}}));
}

TEST(PathsTest, WindowBoundsAreInclusive) {
  PathsSpec spec;
  spec.steps = 5;
  spec.window_ms = 1000;
  const std::vector<RawEvent> after = {Event(1, 4999, "early"), Event(1, 5000, "start", true),
                                       Event(1, 6000, "edge"), Event(1, 6001, "late")};
  EXPECT_EQ(TopNames(after, spec), (std::vector<NamedPath>{{"start", "edge"}}));
  spec.direction = PathDirection::kBeforeAnchor;
  const std::vector<RawEvent> before = {Event(1, 3999, "late"), Event(1, 4000, "edge"), Event(1, 5000, "end", true),
                                        Event(1, 5001, "after")};
  EXPECT_EQ(TopNames(before, spec), (std::vector<NamedPath>{{"edge", "end"}}));
}

TEST(PathsTest, CollapseMergesConsecutiveRepeatsIncludingTheAnchor) {
  const std::vector<RawEvent> events = {Event(1, 1, "view", true), Event(1, 2, "view"), Event(1, 3, "cart"),
                                        Event(1, 4, "cart"), Event(1, 5, "view", true), Event(1, 6, "buy")};
  PathsSpec spec;
  spec.steps = 3;
  spec.collapse_repeats = true;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view", "cart", "view", "buy"}}));
  spec.collapse_repeats = false;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view", "view", "cart", "cart"}}));
  // Before the last anchor (t=5): view view cart cart | view, collapsed to the nearest distinct runs.
  spec.direction = PathDirection::kBeforeAnchor;
  spec.occurrence = AnchorOccurrence::kLast;
  spec.collapse_repeats = true;
  spec.steps = 2;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view", "cart", "view"}}));
  spec.steps = 5;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view", "cart", "view"}}));
  spec.collapse_repeats = false;
  spec.steps = 3;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view", "cart", "cart", "view"}}));
  // Before the first anchor (t=1): nothing.
  spec.occurrence = AnchorOccurrence::kFirst;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"view"}}));
}

TEST(PathsTest, FirstAndLastOccurrenceAndExcludedTypes) {
  const std::vector<RawEvent> events = {Event(1, 1, "open"), Event(1, 2, "buy", true), Event(1, 3, "noise"),
                                        Event(1, 4, "view"), Event(1, 5, "buy", true), Event(1, 6, "exit")};
  PathsSpec spec;
  spec.steps = 2;
  spec.excluded_types = {"noise"};
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"buy", "view", "buy"}}));
  spec.occurrence = AnchorOccurrence::kLast;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"buy", "exit"}}));
  spec.direction = PathDirection::kBeforeAnchor;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"buy", "view", "buy"}}));
  spec.occurrence = AnchorOccurrence::kFirst;
  EXPECT_EQ(TopNames(events, spec), (std::vector<NamedPath>{{"open", "buy"}}));
}

TEST(PathsTest, NonStepEventsAreSkippedAndUsersWithoutAnchorDoNotCount) {
  std::vector<RawEvent> events = {Event(1, 1, "start", true), Event(1, 2, "hidden"), Event(1, 3, "next"),
                                  Event(2, 1, "next"), Event(2, 2, "start")};
  events[1].step = false;  // not a step type
  PathsSpec spec;
  spec.steps = 1;
  const PathsResult result = CountOne(events, spec);
  EXPECT_EQ(result.anchored_users, 1u);  // user 2's "start" fails the anchor's filter
  ASSERT_EQ(result.top.size(), 1u);
  EXPECT_EQ(result.top[0].users, 1u);
}

TEST(PathsTest, RankingBreaksTiesByNamesWithPrefixesFirstAndSuppressesSmallPaths) {
  std::vector<RawEvent> events;
  auto user_path = [&](uint32_t user, std::vector<std::string> types) {
    for (size_t idx = 0; idx < types.size(); ++idx) events.push_back(Event(user, idx, types[idx], idx == 0));
  };
  for (uint32_t user = 0; user < 3; ++user) user_path(user, {"s", "b"});
  for (uint32_t user = 3; user < 6; ++user) user_path(user, {"s", "a", "x"});
  for (uint32_t user = 6; user < 9; ++user) user_path(user, {"s", "a"});
  for (uint32_t user = 9; user < 13; ++user) user_path(user, {"s", "c"});
  user_path(13, {"s", "d"});
  PathsSpec spec;
  spec.steps = 2;
  spec.max_paths = 3;
  spec.min_users = 2;
  const PathsResult result = CountOne(events, spec);
  const Timeline timeline = MakeTimeline(events);
  ASSERT_EQ(result.top.size(), 3u);
  EXPECT_EQ(Names(timeline, result.top[0].types), (NamedPath{"s", "c"}));
  EXPECT_EQ(Names(timeline, result.top[1].types), (NamedPath{"s", "a"}));
  EXPECT_EQ(Names(timeline, result.top[2].types), (NamedPath{"s", "a", "x"}));
  EXPECT_EQ(result.other_paths, 1u);  // s→b
  EXPECT_EQ(result.other_users, 3u);
  EXPECT_EQ(result.suppressed_paths, 1u);  // s→d, one user
  EXPECT_EQ(result.suppressed_users, 1u);
  EXPECT_EQ(result.anchored_users, 14u);
  EXPECT_EQ(result.reported_users(), 13u);
}

TEST(PathsTest, EmptyTimelineHasNoPaths) {
  Timeline timeline;
  timeline.user_begin = {0};
  const PathsResult result = CountPaths(timeline, PathsSpec{}, 4);
  EXPECT_EQ(result.anchored_users, 0u);
  EXPECT_TRUE(result.top.empty());
  const PathGraph graph = MakePathGraph(result, PathsSpec{});
  EXPECT_TRUE(graph.nodes.empty());
  EXPECT_TRUE(graph.links.empty());
}

// The graph of top paths by a naive reference: nodes keyed by (step, label), links by label pairs.
using NodeLabel = std::pair<int, std::string>;
struct ReferenceGraph {
  std::map<NodeLabel, uint64_t> nodes;
  std::map<std::pair<NodeLabel, NodeLabel>, uint64_t> links;
};

ReferenceGraph GraphReference(const std::vector<std::pair<NamedPath, uint64_t>>& top, uint64_t other_users,
                              const PathsSpec& spec) {
  ReferenceGraph out;
  const bool after = spec.direction == PathDirection::kAfterAnchor;
  for (const auto& [path, users] : top) {
    std::vector<NodeLabel> chain;
    const int n = static_cast<int>(path.size());
    for (int idx = 0; idx < n; ++idx) chain.emplace_back(after ? idx : idx - (n - 1), path[idx]);
    if (path.size() < spec.steps + 1) {
      if (after) {
        chain.emplace_back(n, "(end)");
      } else {
        chain.insert(chain.begin(), NodeLabel{-n, "(start)"});
      }
    }
    for (size_t idx = 0; idx < chain.size(); ++idx) {
      out.nodes[chain[idx]] += users;
      if (idx > 0) out.links[{chain[idx - 1], chain[idx]}] += users;
    }
  }
  if (other_users > 0) {
    const NodeLabel anchor{0, after ? top.front().first.front() : top.front().first.back()};
    const NodeLabel other{after ? 1 : -1, "(other)"};
    out.nodes[anchor] += other_users;
    out.nodes[other] += other_users;
    out.links[after ? std::pair{anchor, other} : std::pair{other, anchor}] += other_users;
  }
  return out;
}

NodeLabel Label(const Timeline& timeline, const PathNode& node, const PathsSpec& spec) {
  switch (node.kind) {
    case PathNodeKind::kEvent: return {node.step, timeline.type_names.at(node.type)};
    case PathNodeKind::kOther: return {node.step, "(other)"};
    case PathNodeKind::kBoundary:
      return {node.step, spec.direction == PathDirection::kAfterAnchor ? "(end)" : "(start)"};
  }
  return {};
}

TEST(PathsTest, GraphMatchesReferenceOnRandomData) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 8; ++round) {
    const auto events = RandomEvents(rng, 300, 10, 40000, kTypes, "game.view");
    const Timeline timeline = MakeTimeline(events);
    PathsSpec spec;
    spec.direction = round % 2 ? PathDirection::kBeforeAnchor : PathDirection::kAfterAnchor;
    spec.steps = 1 + round % 4;
    spec.max_paths = 1 + rng() % 12;
    spec.collapse_repeats = round % 3 == 0;
    SCOPED_TRACE(::testing::Message() << "round " << round);
    const PathsResult result = CountPaths(timeline, spec, 2);
    const PathGraph graph = MakePathGraph(result, spec);
    std::vector<std::pair<NamedPath, uint64_t>> top;
    for (const auto& path : result.top) top.emplace_back(Names(timeline, path.types), path.users);
    const ReferenceGraph reference = GraphReference(top, result.other_users, spec);
    std::map<NodeLabel, uint64_t> nodes;
    for (size_t node_idx = 0; node_idx < graph.nodes.size(); ++node_idx) {
      const NodeLabel label = Label(timeline, graph.nodes[node_idx], spec);
      EXPECT_TRUE(nodes.emplace(label, graph.nodes[node_idx].users).second) << "duplicate node " << label.second;
      if (node_idx > 0) {  // ordered by step, kind, users descending
        const PathNode& prev = graph.nodes[node_idx - 1];
        const PathNode& node = graph.nodes[node_idx];
        EXPECT_TRUE(prev.step < node.step ||
                    (prev.step == node.step && (prev.kind < node.kind ||
                                                (prev.kind == node.kind && prev.users >= node.users))));
      }
    }
    EXPECT_EQ(nodes, reference.nodes);
    std::map<std::pair<NodeLabel, NodeLabel>, uint64_t> links;
    for (const PathLink& link : graph.links) {
      links[{Label(timeline, graph.nodes.at(link.source), spec), Label(timeline, graph.nodes.at(link.target), spec)}] =
          link.users;
    }
    EXPECT_EQ(links, reference.links);
    EXPECT_EQ(links.size(), graph.links.size());
    // The anchor node carries every reported user.
    uint64_t anchor_users = 0;
    for (const PathNode& node : graph.nodes) anchor_users += node.step == 0 ? node.users : 0;
    EXPECT_EQ(anchor_users, result.reported_users());
  }
}

TEST(PathsTest, GraphOfHandMadePaths) {
  // Two users s→a→b, one s→a (stops: "(end)" at step 2), one s→c→b.
  std::vector<RawEvent> events;
  auto user_path = [&](uint32_t user, std::vector<std::string> types) {
    for (size_t idx = 0; idx < types.size(); ++idx) events.push_back(Event(user, idx, types[idx], idx == 0));
  };
  user_path(1, {"s", "a", "b"});
  user_path(2, {"s", "a", "b"});
  user_path(3, {"s", "a"});
  user_path(4, {"s", "c", "b"});
  PathsSpec spec;
  spec.steps = 2;
  const Timeline timeline = MakeTimeline(events);
  const PathGraph graph = MakePathGraph(CountPaths(timeline, spec, 1), spec);
  ASSERT_EQ(graph.nodes.size(), 5u);
  // Step 0: s(4); step 1: a(3), c(1); step 2: b(3), (end)(1).
  EXPECT_EQ(Label(timeline, graph.nodes[0], spec), (NodeLabel{0, "s"}));
  EXPECT_EQ(graph.nodes[0].users, 4u);
  EXPECT_EQ(Label(timeline, graph.nodes[1], spec), (NodeLabel{1, "a"}));
  EXPECT_EQ(graph.nodes[1].users, 3u);
  EXPECT_EQ(Label(timeline, graph.nodes[2], spec), (NodeLabel{1, "c"}));
  EXPECT_EQ(Label(timeline, graph.nodes[3], spec), (NodeLabel{2, "b"}));
  EXPECT_EQ(graph.nodes[3].users, 3u);
  EXPECT_EQ(Label(timeline, graph.nodes[4], spec), (NodeLabel{2, "(end)"}));
  ASSERT_EQ(graph.links.size(), 5u);
  EXPECT_EQ(std::make_tuple(graph.links[0].source, graph.links[0].target, graph.links[0].users),
            std::make_tuple(0u, 1u, 3u));
  EXPECT_EQ(std::make_tuple(graph.links[1].source, graph.links[1].target, graph.links[1].users),
            std::make_tuple(0u, 2u, 1u));
  EXPECT_EQ(std::make_tuple(graph.links[2].source, graph.links[2].target, graph.links[2].users),
            std::make_tuple(1u, 3u, 2u));
  EXPECT_EQ(std::make_tuple(graph.links[3].source, graph.links[3].target, graph.links[3].users),
            std::make_tuple(1u, 4u, 1u));
  EXPECT_EQ(std::make_tuple(graph.links[4].source, graph.links[4].target, graph.links[4].users),
            std::make_tuple(2u, 3u, 1u));
}

}  // namespace
}  // namespace analytics::query
