// Paths requests (analysis/paths.h) over a real embedded store, against a reference computed from the raw events
// appended: per user, the events read in the documented order, the anchor found by a loop, the whole step sequence
// built, collapsed and cut; paths counted in a map of type names, ranked, and the Sankey graph built from labels.
// A `segment` restricts the question to its members: the reference reads only their events.
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/paths.h"
#include "query/time_grid.h"
#include "store/embedded/embedded_event_store.h"
#include "support/analysis_run.h"
#include "support/test_env.h"
#include "support/test_store.h"

namespace analytics::testing {
namespace {

using analysis::AnalysisOptions;
using analysis::RunPaths;
using analysis::Viewer;
using events::StoredEvent;
using json = nlohmann::json;
using store::EmbeddedEventStore;

constexpr const char* kLoggedIn = "com.platform.account.user.logged_in.v1";
constexpr const char* kPageViewed = "com.platform.store.page.viewed.v1";
constexpr const char* kSearch = "com.platform.store.search.performed.v1";
constexpr const char* kCartAdded = "com.platform.cart.item.added.v1";
constexpr const char* kCheckout = "com.platform.cart.checkout.started.v1";
constexpr const char* kPurchase = "com.platform.payments.purchase.completed.v1";
constexpr const char* kSessionStarted = "com.platform.library.session.started.v1";
constexpr const char* kSessionEnded = "com.platform.library.session.ended.v1";

// One appended event as the reference sees it.
struct Raw {
  std::string user;
  int64_t time_ms = 0;
  std::string type;
  std::string game_id;
  std::string platform;
  std::string page_type;  // data.page_type, "" when absent
};
using Predicate = std::function<bool(const Raw&)>;

int64_t Bound(const std::string& text, bool is_end, const std::string& zone_name) {
  auto zone = query::TimeZone::Load(zone_name);
  EXPECT_TRUE(zone.ok());
  auto bound = query::ParsePeriodBound(text, is_end, *zone, "period");
  EXPECT_TRUE(bound.ok()) << text;
  return bound.ok() ? *bound : 0;
}

// --- The reference -------------------------------------------------------------------------------------------

// A question as the reference reads it (the same meaning as the request body it is sent with).
struct Question {
  bool after = true;  // start_event (true) or end_event
  bool last = false;  // occurrence "last"
  std::string anchor_type;
  Predicate anchor_filter = [](const Raw&) { return true; };
  std::set<std::string> event_types;  // empty: every type
  std::set<std::string> excluded;
  size_t steps = 5;
  bool collapse = false;
  std::optional<int64_t> window_ms;
  size_t max_paths = 20;
  uint64_t k = 1;  // paths of fewer users are suppressed
  int64_t from_ms = 0, to_ms = 0;
  Predicate filter = [](const Raw&) { return true; };  // request filters and scope
};

using Label = std::pair<int, std::string>;  // step, event type or "(end)" / "(start)" / "(other)"

struct Expected {
  uint64_t users = 0;
  json paths = json::array();
  uint64_t other_paths = 0, other_users = 0, suppressed = 0;
  std::map<Label, uint64_t> nodes;
  std::map<std::pair<Label, Label>, uint64_t> links;
};

Expected Reference(const std::vector<Raw>& raw, const Question& question) {
  // Events read: in the period, with a user, passing the filters, and an anchor or a step type.
  struct Row {
    int64_t time_ms;
    std::string type;
    int bits;  // 1: anchor, 2: step type
  };
  std::map<std::string, std::vector<Row>> by_user;
  for (const Raw& event : raw) {
    if (event.user.empty() || event.time_ms < question.from_ms || event.time_ms >= question.to_ms) continue;
    if (!question.filter(event)) continue;
    const bool anchor = event.type == question.anchor_type && question.anchor_filter(event);
    const bool step = question.event_types.empty() || question.event_types.count(event.type) > 0;
    if (!anchor && !step) continue;
    by_user[event.user].push_back({event.time_ms, event.type, (anchor ? 1 : 0) | (step ? 2 : 0)});
  }
  std::map<std::vector<std::string>, uint64_t> counts;
  uint64_t anchored = 0;
  for (auto& [user, rows] : by_user) {
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      return std::tie(a.time_ms, a.type, a.bits) < std::tie(b.time_ms, b.type, b.bits);
    });
    int anchor = -1;
    for (int idx = 0; idx < static_cast<int>(rows.size()); ++idx) {
      if ((rows[idx].bits & 1) && (anchor == -1 || question.last)) anchor = idx;
    }
    if (anchor == -1) continue;
    ++anchored;
    auto is_step = [&](const Row& row) {
      if (!(row.bits & 2) || question.excluded.count(row.type)) return false;
      const int64_t distance = std::abs(row.time_ms - rows[anchor].time_ms);
      if (distance == 0) return false;  // the anchor's millisecond is neither before nor after it
      return !question.window_ms || distance <= *question.window_ms;
    };
    std::vector<std::string> sequence;
    if (question.after) {
      sequence.push_back(rows[anchor].type);
      for (size_t idx = anchor + 1; idx < rows.size(); ++idx) {
        if (is_step(rows[idx])) sequence.push_back(rows[idx].type);
      }
    } else {
      for (int idx = 0; idx < anchor; ++idx) {
        if (is_step(rows[idx])) sequence.push_back(rows[idx].type);
      }
      sequence.push_back(rows[anchor].type);
    }
    if (question.collapse) sequence.erase(std::unique(sequence.begin(), sequence.end()), sequence.end());
    if (sequence.size() > question.steps + 1) {
      if (question.after) {
        sequence.resize(question.steps + 1);
      } else {
        sequence.erase(sequence.begin(), sequence.end() - static_cast<long>(question.steps + 1));
      }
    }
    ++counts[sequence];
  }
  Expected out;
  std::vector<std::pair<std::vector<std::string>, uint64_t>> ranked;
  uint64_t suppressed_users = 0;
  for (const auto& [path, users] : counts) {
    if (users < question.k) {
      ++out.suppressed;
      suppressed_users += users;
    } else {
      ranked.emplace_back(path, users);
    }
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  out.users = anchored - suppressed_users;
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const auto& [path, users] = ranked[rank];
    if (rank >= question.max_paths) {
      ++out.other_paths;
      out.other_users += users;
      continue;
    }
    out.paths.push_back({{"steps", path}, {"users", users}, {"share", static_cast<double>(users) / out.users}});
    std::vector<Label> chain;
    const int n = static_cast<int>(path.size());
    for (int idx = 0; idx < n; ++idx) chain.emplace_back(question.after ? idx : idx - (n - 1), path[idx]);
    if (path.size() < question.steps + 1) {
      if (question.after) {
        chain.emplace_back(n, "(end)");
      } else {
        chain.insert(chain.begin(), Label{-n, "(start)"});
      }
    }
    for (size_t idx = 0; idx < chain.size(); ++idx) {
      out.nodes[chain[idx]] += users;
      if (idx > 0) out.links[{chain[idx - 1], chain[idx]}] += users;
    }
  }
  if (out.other_users > 0) {
    const Label anchor{0, question.anchor_type}, other{question.after ? 1 : -1, "(other)"};
    out.nodes[anchor] += out.other_users;
    out.nodes[other] += out.other_users;
    out.links[question.after ? std::pair{anchor, other} : std::pair{other, anchor}] += out.other_users;
  }
  return out;
}

// Compares a response document with the reference (and the graph's own consistency).
void ExpectDocument(const json& document, const Expected& expected) {
  EXPECT_EQ(document["users"], expected.users);
  EXPECT_EQ(document["paths"], expected.paths) << document["paths"].dump() << "\n" << expected.paths.dump();
  EXPECT_EQ(document["other_paths"], expected.other_paths);
  EXPECT_EQ(document["other_paths_users"], expected.other_users);
  std::map<Label, uint64_t> nodes;
  std::vector<Label> labels;
  const json& node_list = document["nodes"];
  for (size_t node_idx = 0; node_idx < node_list.size(); ++node_idx) {
    const json& node = node_list[node_idx];
    EXPECT_EQ(node["id"], node_idx);
    const std::string kind = node["kind"];
    if (kind == "event") {
      EXPECT_EQ(node["label"], node["event_type"]);
    } else {
      EXPECT_TRUE(node["event_type"].is_null());
      EXPECT_EQ(node["label"], "(" + kind + ")");
    }
    labels.emplace_back(node["step"].get<int>(), node["label"].get<std::string>());
    EXPECT_TRUE(nodes.emplace(labels.back(), node["users"].get<uint64_t>()).second) << "duplicate " << node.dump();
    if (node_idx > 0) {
      EXPECT_LE(node_list[node_idx - 1]["step"].get<int>(), node["step"].get<int>());
    }
  }
  EXPECT_EQ(nodes, expected.nodes);
  std::map<std::pair<Label, Label>, uint64_t> links;
  for (const json& link : document["links"]) {
    links[{labels.at(link["source"].get<size_t>()), labels.at(link["target"].get<size_t>())}] =
        link["users"].get<uint64_t>();
  }
  EXPECT_EQ(links.size(), document["links"].size());
  EXPECT_EQ(links, expected.links);
}

// --- Segments ------------------------------------------------------------------------------------------------------



// --- Generated data, shared by the tests of the suite ------------------------------------------------------------

class AnalysisPathsTest : public GeneratedStoreSuite<Raw> {
 protected:
  static void SetUpTestSuite() {
    GeneratedStoreOptions options;
    options.generator.users = 700;
    options.generator.days = 35;
    options.generator.seed = 23;
    options.generator.start_date = "2024-02-20";
    options.pseudonymizer_key = 'p';
    options.flush_every_batches = 20;
    options.flush_while_fewer_than = 70000;
    Load(options, [](const events::EventView& event) {
      Raw raw{std::string(event.user), event.time_ms, std::string(event.type), std::string(event.game_id),
              std::string(event.platform), ""};
      if (!event.data.empty()) {
        const json data = json::parse(event.data);
        if (data.contains("page_type") && data["page_type"].is_string()) raw.page_type = data["page_type"];
      }
      return raw;
    });
  }

  static json Paths(const json& body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    return RunOnAnyThreadCount(RunPaths, *store_, body, viewer, options);
  }
};

TEST_F(AnalysisPathsTest, GeneratedDataIsLoaded) {
  EXPECT_GT(raw_->size(), 40000u);
  int64_t newest = INT64_MIN;
  for (const Raw& event : *raw_) newest = std::max(newest, event.time_ms);
  EXPECT_EQ(store_->NewestEventMs(), newest);
}

TEST_F(AnalysisPathsTest, AfterAFilteredStartEventMatchesTheReference) {
  const json body = {{"period_start", "2024-02-25"},
                     {"period_end", "2024-03-15"},
                     {"start_event", {{"event_type", kPageViewed},
                                      {"filters", {{"property", "page_type"}, {"op", "eq"}, {"value", "game"}}}}},
                     {"steps", 4}};
  Question question;
  question.anchor_type = kPageViewed;
  question.anchor_filter = [](const Raw& event) { return event.page_type == "game"; };
  question.steps = 4;
  question.from_ms = Bound("2024-02-25", false, "UTC");
  question.to_ms = Bound("2024-03-15", true, "UTC");
  const Expected expected = Reference(*raw_, question);
  const json document = Paths(body);
  ExpectDocument(document, expected);
  EXPECT_EQ(document["direction"], "after_start_event");
  EXPECT_EQ(document["anchor"], (json{{"event", "start_event"}, {"event_type", kPageViewed}, {"occurrence", "first"}}));
  EXPECT_EQ(document["steps"], 4);
  EXPECT_EQ(document["collapse_repeats"], false);
  EXPECT_TRUE(document["window_seconds"].is_null());
  EXPECT_EQ(document["period_start"], "2024-02-25");
  EXPECT_EQ(document["timezone"], "UTC");
  EXPECT_FALSE(document.contains("k_anonymity"));
  // Not vacuous: many users, a full top and an "other" remainder.
  EXPECT_GT(expected.users, 100u);
  EXPECT_EQ(expected.paths.size(), 20u);
  EXPECT_GT(expected.other_users, 0u);
}

TEST_F(AnalysisPathsTest, BeforeTheLastEndEventInBerlinCollapsedMatchesTheReference) {
  // Europe/Berlin: the period crosses the DST change of 2024-03-31.
  const json body = {{"period_start", "2024-03-10"},
                     {"period_end", "2024-04-02"},
                     {"timezone", "Europe/Berlin"},
                     {"end_event", {{"event_type", kSessionStarted}, {"occurrence", "last"}}},
                     {"steps", 3},
                     {"collapse_repeats", true},
                     {"max_paths", 5}};
  Question question;
  question.after = false;
  question.last = true;
  question.anchor_type = kSessionStarted;
  question.steps = 3;
  question.collapse = true;
  question.max_paths = 5;
  question.from_ms = Bound("2024-03-10", false, "Europe/Berlin");
  question.to_ms = Bound("2024-04-02", true, "Europe/Berlin");
  const Expected expected = Reference(*raw_, question);
  const json document = Paths(body);
  ExpectDocument(document, expected);
  EXPECT_EQ(document["direction"], "before_end_event");
  EXPECT_EQ(document["anchor"]["occurrence"], "last");
  EXPECT_GT(expected.users, 20u);
  EXPECT_TRUE(expected.nodes.count({-1, "(other)"}));
}

TEST_F(AnalysisPathsTest, ChosenTypesWithinAWindowMatchTheReference) {
  const json body = {
      {"period_start", "2024-02-20"},
      {"period_end", "2024-03-25"},
      {"start_event", {{"event_type", kSessionStarted}}},
      {"event_types", json::array({kCartAdded, kCheckout, kPurchase, kPageViewed, kSessionStarted})},
      {"steps", 5},
      {"collapse_repeats", true},
      {"window_seconds", 3600},
      {"max_paths", 5}};
  Question question;
  question.anchor_type = kSessionStarted;
  question.event_types = {kCartAdded, kCheckout, kPurchase, kPageViewed, kSessionStarted};
  question.steps = 5;
  question.collapse = true;
  question.window_ms = 3600 * 1000;
  question.max_paths = 5;
  question.from_ms = Bound("2024-02-20", false, "UTC");
  question.to_ms = Bound("2024-03-25", true, "UTC");
  const json document = Paths(body);
  ExpectDocument(document, Reference(*raw_, question));
  EXPECT_EQ(document["window_seconds"], 3600);
}

TEST_F(AnalysisPathsTest, ExcludedTypesAndRequestFiltersMatchTheReference) {
  const json body = {{"period_start", "2024-03-01"},
                     {"period_end", "2024-03-20"},
                     {"start_event", {{"event_type", kLoggedIn}, {"occurrence", "last"}}},
                     {"exclude_event_types", json::array({kPageViewed, kSessionEnded})},
                     {"filters", {{"property", "platform"}, {"op", "eq"}, {"value", "windows"}}},
                     {"steps", 6},
                     {"max_paths", 1000}};
  Question question;
  question.anchor_type = kLoggedIn;
  question.last = true;
  question.excluded = {kPageViewed, kSessionEnded};
  question.filter = [](const Raw& event) { return event.platform == "windows"; };
  question.steps = 6;
  question.max_paths = 1000;
  question.from_ms = Bound("2024-03-01", false, "UTC");
  question.to_ms = Bound("2024-03-20", true, "UTC");
  const Expected expected = Reference(*raw_, question);
  ExpectDocument(Paths(body), expected);
  EXPECT_GT(expected.users, 20u);
  EXPECT_EQ(expected.other_users, 0u);
}

TEST_F(AnalysisPathsTest, SegmentRestrictsThePathsToItsMembers) {
  const std::set<std::string> members = SomeUsers(*raw_, 5);
  AnalysisOptions options;
  options.segment_scope = TestSegments(*store_, members);
  json body = {{"period_start", "2024-02-25"},
               {"period_end", "2024-03-15"},
               {"start_event", {{"event_type", kPageViewed},
                                {"filters", {{"property", "page_type"}, {"op", "eq"}, {"value", "game"}}}}},
               {"steps", 4},
               {"max_paths", 1000},
               {"segment", "members"}};
  Question question;
  question.anchor_type = kPageViewed;
  question.anchor_filter = [](const Raw& event) { return event.page_type == "game"; };
  question.steps = 4;
  question.max_paths = 1000;
  question.from_ms = Bound("2024-02-25", false, "UTC");
  question.to_ms = Bound("2024-03-15", true, "UTC");
  question.filter = [&](const Raw& event) { return members.count(event.user) > 0; };
  const Expected expected = Reference(*raw_, question);
  const json document = Paths(body, {}, options);
  ExpectDocument(document, expected);
  EXPECT_EQ(document["segment"], "members");
  // Not vacuous: the members are some of the users, not all.
  question.filter = [](const Raw&) { return true; };
  EXPECT_GT(expected.users, 30u);
  EXPECT_LT(expected.users, Reference(*raw_, question).users);
  body["segment"] = "whales";
  EXPECT_EQ(RunPaths(*store_, body, {}, options).status().code(), common::StatusCode::kNotFound);
  body["segment"] = "pending";
  EXPECT_EQ(RunPaths(*store_, body, {}, options).status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(AnalysisPathsTest, TwentyStepsBeforeTheFirstEndEventInAWindowMatchTheReference) {
  const json body = {{"period_start", "2024-02-20"},
                     {"period_end", "2024-03-30"},
                     {"timezone", "America/New_York"},
                     {"end_event", {{"event_type", kCheckout}}},
                     {"steps", 20},
                     {"window_seconds", 86400},
                     {"max_paths", 40}};
  Question question;
  question.after = false;
  question.anchor_type = kCheckout;
  question.steps = 20;
  question.window_ms = 86400 * 1000LL;
  question.max_paths = 40;
  question.from_ms = Bound("2024-02-20", false, "America/New_York");
  question.to_ms = Bound("2024-03-30", true, "America/New_York");
  ExpectDocument(Paths(body), Reference(*raw_, question));
}

TEST_F(AnalysisPathsTest, DeveloperSeesOwnGamesWithSmallPathsSuppressed) {
  const auto games = GamesByEvents(*raw_);
  ASSERT_GT(games.size(), 3u);
  const std::set<std::string> own = {games[0], games[1], games[2]};
  Viewer viewer;
  viewer.all_games = false;
  viewer.game_ids = own;
  AnalysisOptions options;
  options.k_anonymity = 5;
  const json body = {{"period_start", "2024-02-20"},
                     {"period_end", "2024-03-25"},
                     {"start_event", {{"event_type", kPageViewed}}},
                     {"steps", 2},
                     {"max_paths", 6}};
  Question question;
  question.anchor_type = kPageViewed;
  question.steps = 2;
  question.max_paths = 6;
  question.k = 5;
  question.filter = [&](const Raw& event) { return own.count(event.game_id) > 0; };
  question.from_ms = Bound("2024-02-20", false, "UTC");
  question.to_ms = Bound("2024-03-25", true, "UTC");
  const Expected expected = Reference(*raw_, question);
  const json document = Paths(body, viewer, options);
  ExpectDocument(document, expected);
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 5}, {"suppressed_groups", expected.suppressed}}));
  EXPECT_GT(expected.suppressed, 0u);  // the case is exercised
  EXPECT_GT(expected.paths.size(), 0u);
  for (const json& path : document["paths"]) EXPECT_GE(path["users"].get<uint64_t>(), 5u);
  for (const json& node : document["nodes"]) EXPECT_GE(node["users"].get<uint64_t>(), 5u);
  for (const json& link : document["links"]) EXPECT_GE(link["users"].get<uint64_t>(), 5u);
}

// --- Hand-made events ------------------------------------------------------------------------------------------

StoredEvent Event(const std::string& id, const std::string& user, const std::string& utc_time, const std::string& type,
                  const std::string& game_id = "g1") {
  StoredEvent event = UserEventAt(id, user, utc_time, type);
  event.game_id = game_id;
  return event;
}

constexpr const char* kA = "com.test.flow.a.v1";
constexpr const char* kB = "com.test.flow.b.v1";
constexpr const char* kZ = "com.test.flow.z.v1";
constexpr const char* kStart = "com.test.flow.start.v1";

class PathsHandMadeTest : public ::testing::Test {
 protected:
  // Europe/Berlin; 2024-03-31 is 23 hours long: from 2024-03-30T23:00Z to 2024-03-31T22:00Z.
  void SetUp() override {
    auto opened = EmbeddedEventStore::Open(UnsyncedTestStoreOptions(dir_));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    store_ = std::move(opened).value();
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{
        // U1: a start one ms before the period (not read), then the first start in the period at local midnight.
        Event("u1-0", "U1", "2024-03-30T22:59:59.999Z", kStart),
        Event("u1-1", "U1", "2024-03-30T23:00:00.000Z", kStart),
        Event("u1-2", "U1", "2024-03-31T00:00:00.000Z", kA),
        // U2: equal timestamps: "a" and "z" at the start's millisecond are neither before nor after it; "b" and "a"
        // of one later millisecond are steps in name order.
        Event("u2-1", "U2", "2024-03-31T05:00:00.000Z", kZ),
        Event("u2-2", "U2", "2024-03-31T05:00:00.000Z", kStart),
        Event("u2-3", "U2", "2024-03-31T05:00:00.000Z", kA),
        Event("u2-4", "U2", "2024-03-31T06:00:00.000Z", kB),
        Event("u2-5", "U2", "2024-03-31T06:00:00.000Z", kA),
        // U3: repeats (the second a one second beyond an hour after the start); the last event one ms before the
        // period's end (23:59:59.999 CEST), one at the end (not read).
        Event("u3-1", "U3", "2024-03-31T08:00:00.000Z", kStart),
        Event("u3-2", "U3", "2024-03-31T09:00:00.000Z", kA),
        Event("u3-3", "U3", "2024-03-31T09:00:01.000Z", kA),
        Event("u3-4", "U3", "2024-03-31T21:59:59.999Z", kB),
        Event("u3-5", "U3", "2024-03-31T22:00:00.000Z", kZ),
        // U5: no user → never read.
        Event("x-1", "", "2024-03-31T10:00:00.000Z", kStart),
    }));
    ASSERT_OK(store_->Flush());
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{
        // U4 (another game): a start and a step in another segment; the step between them comes late.
        Event("u4-1", "U4", "2024-03-31T12:00:00.000Z", kStart, "g2"),
        Event("u4-3", "U4", "2024-03-31T14:00:00.000Z", kB, "g2"),
    }));
    ASSERT_OK(store_->Flush());
    // Late events: stored after the days they belong to were flushed.
    ASSERT_OK(store_->Append(std::vector<StoredEvent>{Event("u4-2", "U4", "2024-03-31T13:00:00.000Z", kA, "g2"),
                                                      Event("u1-3", "U1", "2024-03-31T02:00:00.000Z", kB)}));
  }

  json Run(json body, const Viewer& viewer = {}, const AnalysisOptions& options = {}) {
    body["period_start"] = "2024-03-31";
    body["period_end"] = "2024-03-31";
    body["timezone"] = "Europe/Berlin";
    auto result = RunPaths(*store_, body, viewer, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << body.dump();
    return result.ok() ? *result : json();
  }

  TempDir dir_;
  std::unique_ptr<EmbeddedEventStore> store_;
};

json Path(std::vector<std::string> steps, uint64_t users, uint64_t total) {
  return {{"steps", steps}, {"users", users}, {"share", static_cast<double>(users) / static_cast<double>(total)}};
}

TEST_F(PathsHandMadeTest, AfterTheStartInBerlinOnTheDstDay) {
  const json document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}});
  // U1: start (local 00:00) → a → b (b appended late); U2: start → a → b (a and z at the start's millisecond are
  // not steps; a before b at 06:00 by name); U3: start a a b (z at the period's end is not read); U4: start a b
  // (a appended late).
  EXPECT_EQ(document["users"], 4);
  EXPECT_EQ(document["paths"], json::array({Path({kStart, kA, kB}, 3, 4), Path({kStart, kA, kA, kB}, 1, 4)}));
  EXPECT_EQ(document["other_paths"], 0);
  EXPECT_EQ(document["other_paths_users"], 0);
  // Nodes: step 0 start(4); step 1 a(4); step 2 b(3), a(1); step 3 b(1), (end)(3).
  auto node = [](int id, int step, const char* kind, const char* type, uint64_t users) {
    const std::string label = type != nullptr ? std::string(type) : "(" + std::string(kind) + ")";
    return json{{"id", id},       {"step", step},   {"kind", kind}, {"event_type", type ? json(type) : json(nullptr)},
                {"label", label}, {"users", users}};
  };
  EXPECT_EQ(document["nodes"], json::array({node(0, 0, "event", kStart, 4), node(1, 1, "event", kA, 4),
                                            node(2, 2, "event", kB, 3), node(3, 2, "event", kA, 1),
                                            node(4, 3, "event", kB, 1), node(5, 3, "end", nullptr, 3)}))
      << document["nodes"].dump();
  auto link = [](int source, int target, uint64_t users) {
    return json{{"source", source}, {"target", target}, {"users", users}};
  };
  EXPECT_EQ(document["links"],
            json::array({link(0, 1, 4), link(1, 2, 3), link(1, 3, 1), link(2, 5, 3), link(3, 4, 1)}))
      << document["links"].dump();
}

TEST_F(PathsHandMadeTest, CollapsedWindowAndBeforeModes) {
  // Collapsed: U3 becomes start → a → b like the others.
  json document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}, {"collapse_repeats", true}});
  EXPECT_EQ(document["paths"], json::array({Path({kStart, kA, kB}, 4, 4)}));
  // A one-hour window, bounds included: the a exactly an hour after each start counts (and U2's b of the same
  // millisecond); U3's second a (an hour and a second) and the other b do not.
  document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}, {"window_seconds", 3600}});
  EXPECT_EQ(document["paths"], json::array({Path({kStart, kA}, 3, 4), Path({kStart, kA, kB}, 1, 4)}));
  // Before the first b: U1 start a | b; U2 a start z | b (its a at 06:00 shares b's millisecond: not before it);
  // U3 start a a | b; U4 start a | b. Ties by name: a < start.
  document = Run({{"end_event", {{"event_type", kB}}}, {"steps", 2}});
  EXPECT_EQ(document["paths"], json::array({Path({kStart, kA, kB}, 2, 4), Path({kA, kA, kB}, 1, 4),
                                            Path({kStart, kZ, kB}, 1, 4)}));
  // Before the first z: only U2's (U3's is at the period's end), and nothing is strictly before it: a "(start)"
  // node one step before the anchor.
  document = Run({{"end_event", {{"event_type", kZ}}}, {"steps", 2}});
  EXPECT_EQ(document["paths"], json::array({Path({kZ}, 1, 1)}));
  ASSERT_EQ(document["nodes"].size(), 2u);
  EXPECT_EQ(document["nodes"][0]["kind"], "start");
  EXPECT_EQ(document["nodes"][0]["step"], -1);
  EXPECT_EQ(document["nodes"][1]["step"], 0);
  EXPECT_EQ(document["links"], json::array({json{{"source", 0}, {"target", 1}, {"users", 1}}}));
  EXPECT_EQ(document["direction"], "before_end_event");
}

TEST_F(PathsHandMadeTest, DeveloperViewSuppressesPathsOfFewerThanKUsers) {
  Viewer viewer;
  viewer.all_games = false;
  viewer.game_ids = {"g1"};
  AnalysisOptions options;
  options.k_anonymity = 2;
  // g1 only: U4 (g2) is not read. U1 and U2 start a b (reported), U3 start a a b (1 user: suppressed).
  json document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}}, viewer, options);
  EXPECT_EQ(document["users"], 2);
  EXPECT_EQ(document["paths"], json::array({Path({kStart, kA, kB}, 2, 2)}));
  EXPECT_EQ(document["nodes"][0]["users"], 2);
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 2}, {"suppressed_groups", 1}}));
  // k = 4: the one collapsed path has 3 users: nothing is left.
  options.k_anonymity = 4;
  document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}, {"collapse_repeats", true}}, viewer, options);
  EXPECT_EQ(document["users"], 0);
  EXPECT_EQ(document["paths"], json::array());
  EXPECT_EQ(document["nodes"], json::array());
  EXPECT_EQ(document["links"], json::array());
  EXPECT_EQ(document["k_anonymity"], (json{{"k", 4}, {"suppressed_groups", 1}}));
  // The same without the developer role: no k-anonymity, every game.
  document = Run({{"start_event", {{"event_type", kStart}}}, {"steps", 3}, {"collapse_repeats", true}});
  EXPECT_EQ(document["users"], 4);
  EXPECT_FALSE(document.contains("k_anonymity"));
}

TEST_F(PathsHandMadeTest, PeriodAfterTheNewestEventIsNotYetAvailable) {
  auto result = RunPaths(*store_,
                         {{"period_start", "2024-04-02"}, {"period_end", "2024-04-03"},
                          {"start_event", {{"event_type", kStart}}}},
                         {}, {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), common::StatusCode::kFailedPrecondition);
}

TEST_F(PathsHandMadeTest, UnknownSegmentIsNotFound) {
  auto result = RunPaths(*store_,
                         {{"period_start", "2024-03-31"}, {"period_end", "2024-03-31"}, {"segment", "whales"},
                          {"start_event", {{"event_type", kStart}}}},
                         {}, {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), common::StatusCode::kNotFound);
}

TEST_F(PathsHandMadeTest, InvalidRequestsNameTheField) {
  const json start = {{"event_type", kStart}};
  struct Case {
    json body;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"steps", 3}}, "start_event"},
      {{{"start_event", start}, {"end_event", start}}, "end_event"},
      {{{"start_event", "x"}}, "start_event"},
      {{{"start_event", json::object()}}, "start_event.event_type"},
      {{{"start_event", {{"event_type", ""}}}}, "start_event.event_type"},
      {{{"start_event", {{"event_type", kStart}, {"occurence", "first"}}}}, "start_event.occurence"},
      {{{"end_event", {{"event_type", kStart}, {"occurrence", "any"}}}}, "end_event.occurrence"},
      {{{"start_event", {{"event_type", kStart}, {"filters", {{"property", "x"}, {"op", "bogus"}}}}}},
       "start_event.filters.op"},
      {{{"start_event", start}, {"steps", 0}}, "steps"},
      {{{"start_event", start}, {"steps", 21}}, "steps"},
      {{{"start_event", start}, {"steps", "5"}}, "steps"},
      {{{"start_event", start}, {"max_paths", 1001}}, "max_paths"},
      {{{"start_event", start}, {"window_seconds", 0}}, "window_seconds"},
      {{{"start_event", start}, {"collapse_repeats", "yes"}}, "collapse_repeats"},
      {{{"start_event", start}, {"event_types", json::array()}}, "event_types"},
      {{{"start_event", start}, {"event_types", json::array({kA, 7})}}, "event_types[1]"},
      {{{"start_event", start}, {"exclude_event_types", "x"}}, "exclude_event_types"},
      {{{"start_event", start}, {"event_types", json::array({kA})}, {"exclude_event_types", json::array({kA})}},
       "exclude_event_types"},
      {{{"start_event", start}, {"stepz", 3}}, "stepz"},
      {{{"start_event", start}, {"timezone", "Mars/Olympus"}}, "timezone"},
  };
  for (const Case& test : cases) {
    json body = test.body;
    body["period_start"] = "2024-03-31";
    body["period_end"] = "2024-03-31";
    auto result = RunPaths(*store_, body, {}, {});
    ASSERT_FALSE(result.ok()) << body.dump();
    EXPECT_EQ(result.status().code(), common::StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(result.status().field(), test.field) << body.dump() << ": " << result.status().ToString();
  }
}

}  // namespace
}  // namespace analytics::testing
