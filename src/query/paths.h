// Paths: the top sequences of event types users follow after a start event (or before an end event), counted
// in users, and their Sankey graph (nodes and links). docs/analysis.md "Paths" states the semantics.
//
// Rationale: one pass over the Timeline's users (query/timeline.h). Each user contributes at most one path: the
// anchor (their first, or last, anchor event) and the next (previous) `steps` step events, optionally with
// consecutive repeats of a type collapsed. A path is a fixed array of type codes; paths are counted in a flat
// open-addressing table keyed by that array (no per-row allocation, no map lookups per row). Users are split
// into contiguous ranges of about equal rows, one table per range, and the tables are summed: the counts, and so
// the ranked result, do not depend on the thread count.
// Type codes index the Timeline's type_names, which a joined Timeline keeps sorted: comparing codes compares
// names, which the ranking's tie rule relies on.
// Thread-safety: plain values; CountPaths is reentrant (it reads the Timeline only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "query/timeline.h"

namespace analytics::query {

inline constexpr size_t kMaxPathSteps = 20;

// kAfterAnchor: the anchor is a start event, the steps follow it. kBeforeAnchor: the anchor is an end event, the
// steps precede it.
enum class PathDirection : uint8_t { kAfterAnchor, kBeforeAnchor };
// Which of a user's anchor events (in Timeline order) anchors their path.
enum class AnchorOccurrence : uint8_t { kFirst, kLast };

struct PathsSpec {
  PathDirection direction = PathDirection::kAfterAnchor;
  AnchorOccurrence occurrence = AnchorOccurrence::kFirst;
  uint32_t anchor_mask = 1;   // a row may anchor when (matches & anchor_mask) != 0
  // A row is a step when (matches & step_mask) != 0, its type is none of excluded_types, and its time is strictly
  // later (kAfterAnchor) or earlier (kBeforeAnchor) than the anchor's: rows at the anchor's millisecond are neither.
  // Steps at equal times among themselves follow the Timeline's order (type name).
  uint32_t step_mask = 2;
  std::vector<std::string> excluded_types;
  size_t steps = 5;           // 1 .. kMaxPathSteps: steps besides the anchor
  bool collapse_repeats = false;  // a step of the same type as the path's previous element (anchor included) is skipped
  // Steps lie within this many ms of the anchor's time, bounds included (|t - t_anchor| <= window_ms).
  std::optional<int64_t> window_ms;
  size_t max_paths = 20;      // >= 1: paths reported one by one; the rest are "other"
  uint64_t min_users = 1;     // paths of fewer users are suppressed (k-anonymity; 1: none)
};

struct PathCount {
  // Time order: the anchor's type first (kAfterAnchor) or last (kBeforeAnchor); 1 .. steps + 1 codes (index into
  // the Timeline's type_names). Fewer than steps + 1: the user had no further step event (in the Timeline, within
  // the window).
  std::vector<uint32_t> types;
  uint64_t users = 0;
};

struct PathsResult {
  // The paths of at least min_users users, ranked: users descending, then `types` in lexicographic order (a path
  // that is a prefix of another comes first); at most max_paths.
  std::vector<PathCount> top;
  uint64_t anchored_users = 0;    // users with an anchor event (every path, suppressed ones included)
  uint64_t distinct_paths = 0;    // distinct paths, suppressed ones included
  uint64_t other_paths = 0;       // distinct paths of at least min_users users beyond the top
  uint64_t other_users = 0;       // their users
  uint64_t suppressed_paths = 0;  // distinct paths of fewer than min_users users
  uint64_t suppressed_users = 0;  // their users (never to be shown to a k-anonymous viewer)
  // The users of the reported paths: top and other.
  uint64_t reported_users() const { return anchored_users - suppressed_users; }
};

// Counts the paths of `timeline` (joined: user_begin set). `threads`: up to that many; the result does not depend
// on it. Preconditions: 1 <= spec.steps <= kMaxPathSteps, spec.max_paths >= 1, spec.min_users >= 1.
PathsResult CountPaths(const Timeline& timeline, const PathsSpec& spec, size_t threads = 1);

// The Sankey graph of a result's top paths (docs/analysis.md "Paths"): one node per (step, event type) the top
// paths pass through, step 0 being the anchor and negative steps preceding it; an "(end)" node (kAfterAnchor) or
// "(start)" node (kBeforeAnchor) per step where top paths shorter than spec.steps stop; one "(other)" node at step
// +1 (-1) joined to the anchor node with other_users when there are any (and the top paths have one anchor type).
enum class PathNodeKind : uint8_t { kEvent, kOther, kBoundary };

struct PathNode {
  int step = 0;
  PathNodeKind kind = PathNodeKind::kEvent;
  uint32_t type = 0;  // kEvent: index into type_names
  uint64_t users = 0;
};

struct PathLink {
  uint32_t source = 0, target = 0;  // indexes into nodes; source precedes target in time
  uint64_t users = 0;
};

struct PathGraph {
  // Ordered by step; within a step event nodes by users descending then type, then "(other)", then the boundary.
  std::vector<PathNode> nodes;
  std::vector<PathLink> links;  // ordered by (source, target)
};

PathGraph MakePathGraph(const PathsResult& result, const PathsSpec& spec);

}  // namespace analytics::query
