// The query engine's pieces: time grids in zones with DST, the filter language, and the aggregator's
// semantics (docs/metrics.md sections 2 and 3) on hand-made batches.
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include <gtest/gtest.h>

#include "common/time_util.h"
#include "query/aggregator.h"
#include "query/filter_expr.h"
#include "query/sessions.h"
#include "support/session_reference.h"
#include "query/time_grid.h"

namespace analytics::query {
namespace {

using nlohmann::json;

int64_t Ms(const std::string& text) { return common::ParseRfc3339Millis(text).value(); }

TEST(TimeGridTest, BerlinDaysHave23And25HoursAroundDst) {
  auto zone = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(zone.ok());
  auto grid = TimeGrid::Make(zone->StartOfDay(2024, 3, 30), zone->StartOfDay(2024, 4, 2), Granularity::kDay, *zone);
  ASSERT_TRUE(grid.ok());
  ASSERT_EQ(grid->size(), 3u);
  EXPECT_EQ(grid->bounds()[2] - grid->bounds()[1], 23 * 3600000LL);  // March 31
  EXPECT_EQ(zone->Format(grid->bounds()[1]), "2024-03-31T00:00:00+01:00");
  EXPECT_EQ(zone->Format(grid->bounds()[2]), "2024-04-01T00:00:00+02:00");
  auto autumn = TimeGrid::Make(zone->StartOfDay(2024, 10, 27), zone->StartOfDay(2024, 10, 28), Granularity::kHour, *zone);
  ASSERT_TRUE(autumn.ok());
  EXPECT_EQ(autumn->size(), 25u);
  EXPECT_EQ(autumn->Find(Ms("2024-10-27T00:30:00Z")) + 1, autumn->Find(Ms("2024-10-27T01:30:00Z")));
}

TEST(TimeGridTest, WeeksStartOnMondayAndMonthsOnTheFirst) {
  auto zone = TimeZone::Load("Europe/Moscow");
  ASSERT_TRUE(zone.ok());
  // 2024-01-03 is a Wednesday: its week starts Monday 2024-01-01 00:00 +03:00.
  auto weeks = TimeGrid::Make(Ms("2024-01-03T12:00:00Z"), Ms("2024-01-20T00:00:00Z"), Granularity::kWeek, *zone);
  ASSERT_TRUE(weeks.ok());
  EXPECT_EQ(zone->Format(weeks->bounds()[0]), "2024-01-01T00:00:00+03:00");
  EXPECT_EQ(weeks->size(), 3u);
  auto months = TimeGrid::Make(Ms("2024-01-31T22:00:00Z"), Ms("2024-03-01T00:00:00Z"), Granularity::kMonth, *zone);
  ASSERT_TRUE(months.ok());
  // 22:00Z on Jan 31 is already February 1 in Moscow.
  EXPECT_EQ(zone->Format(months->bounds()[0]), "2024-02-01T00:00:00+03:00");
}

TEST(TimeGridTest, HoursFollowHalfHourOffsetsAndBucketsAreBounded) {
  auto zone = TimeZone::Load("Asia/Kolkata");  // +05:30
  ASSERT_TRUE(zone.ok());
  auto hours = TimeGrid::Make(Ms("2024-01-01T00:10:00Z"), Ms("2024-01-01T03:00:00Z"), Granularity::kHour, *zone);
  ASSERT_TRUE(hours.ok());
  EXPECT_EQ(zone->Format(hours->bounds()[0]), "2024-01-01T05:00:00+05:30");
  EXPECT_EQ(hours->Find(Ms("2024-01-01T00:29:59.999Z")), 0);
  EXPECT_EQ(hours->Find(Ms("2024-01-01T00:30:00Z")), 1);
  EXPECT_EQ(hours->Find(Ms("2023-12-31T00:00:00Z")), -1);
  auto too_many = TimeGrid::Make(0, Ms("2024-01-01T00:00:00Z"), Granularity::kMinute, *zone, 1000);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().field(), "granularity");
  for (const char* bad : {"Mars/Olympus", "../etc/passwd", "/etc/localtime", "", "Europe/Berlin\n"}) {
    auto loaded = TimeZone::Load(bad);
    EXPECT_FALSE(loaded.ok()) << bad;
    if (!loaded.ok()) {
      EXPECT_EQ(loaded.status().field(), "timezone");
    }
  }
}

TEST(FilterExprTest, ParsesConditionsArraysAndNestedAndOrWithPreciseErrorPaths) {
  auto parsed = ParseFilterExpr(json::parse(R"({"or":[{"property":"country","op":"eq","value":"RU"},
      [{"property":"amount","op":"gt","value":100},{"property":"platform","op":"in","value":["ios","android"]}]]})"),
                                "filters");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->kind, FilterExpr::Kind::kOr);
  ASSERT_EQ(parsed->children.size(), 2u);
  EXPECT_EQ(parsed->children[1].kind, FilterExpr::Kind::kAnd);
  std::vector<std::string> properties;
  parsed->CollectProperties(properties);
  EXPECT_EQ(properties, (std::vector<std::string>{"country", "amount", "platform"}));
  auto bad_op = ParseFilterExpr(json::parse(R"({"and":[{"property":"a","op":"eq","value":1},{"property":"b","op":"like","value":"x"}]})"), "filters");
  ASSERT_FALSE(bad_op.ok());
  EXPECT_EQ(bad_op.status().field(), "filters.and[1].op");
  EXPECT_FALSE(ParseFilterExpr(json::parse(R"({"or":[]})"), "filters").ok());
  EXPECT_FALSE(ParseFilterExpr(json::parse(R"({"and":[],"or":[]})"), "filters").ok());
  EXPECT_FALSE(ParseFilterExpr(json::parse("42"), "filters").ok());
  json deep = json::parse(R"({"property":"a","op":"exists"})");
  for (int level = 0; level < 10; ++level) deep = json{{"and", json::array({deep})}};
  EXPECT_FALSE(ParseFilterExpr(deep, "filters").ok());
}

// A batch of 6 rows with a property `p` of every kind.
EventBatch Batch() {
  EventBatch batch;
  batch.rows = 6;
  batch.time_ms = {1000, 2000, 3000, 4000, 5000, 6000};
  batch.types = {"t.a", "t.b"};
  batch.type_codes = {0, 0, 0, 1, 1, 1};
  batch.users = {1, 1, 2, 3, kNoUser, 2};
  batch.min_time_ms = 1000;
  batch.max_time_ms = 6000;
  PropertyColumn p;
  p.Resize(6);
  p.strings = {"RU", "KZ"};
  p.others = {R"(["x","y"])"};
  p.kinds = {ValueKind::kString, ValueKind::kString, ValueKind::kNumber, ValueKind::kMissing, ValueKind::kOther,
             ValueKind::kTrue};
  p.codes = {0, 1, 0, 0, 0, 0};
  p.numbers = {0, 0, 5, 0, 0, 0};
  batch.properties["p"] = p;
  PropertyColumn v;
  v.Resize(6);
  v.kinds = {ValueKind::kNumber, ValueKind::kNumber, ValueKind::kNumber, ValueKind::kNumber, ValueKind::kString,
             ValueKind::kNumber};
  v.numbers = {10, 20, 30, 40, 0, 60};
  v.strings = {"not a number"};
  batch.properties["v"] = v;
  return batch;
}

double Count(const std::string& filter_json) {
  AggregateQuery query;
  query.bounds = {0, 10000};
  query.filter = ParseFilterExpr(json::parse(filter_json), "filters").value();
  AggregateResult result;
  Aggregate(query, Batch(), result);
  return result.groups.empty() ? 0 : result.groups.begin()->second[0].weighted_count;
}

TEST(AggregatorTest, FilterRulesFollowTheDocumentedSemantics) {
  EXPECT_EQ(Count(R"({"property":"p","op":"eq","value":"RU"})"), 1);
  EXPECT_EQ(Count(R"({"property":"p","op":"ne","value":"RU"})"), 5);  // missing and other types count
  EXPECT_EQ(Count(R"({"property":"p","op":"eq","value":5.0})"), 1);   // 5 == 5.0
  EXPECT_EQ(Count(R"({"property":"p","op":"eq","value":"5"})"), 0);   // no coercion
  EXPECT_EQ(Count(R"({"property":"p","op":"eq","value":true})"), 1);
  EXPECT_EQ(Count(R"({"property":"p","op":"in","value":["KZ",5]})"), 2);
  EXPECT_EQ(Count(R"({"property":"p","op":"nin","value":["KZ",5]})"), 4);
  EXPECT_EQ(Count(R"({"property":"p","op":"gt","value":"L"})"), 1);   // "RU" > "L"; numbers never compare to strings
  EXPECT_EQ(Count(R"({"property":"p","op":"lte","value":5})"), 1);
  EXPECT_EQ(Count(R"({"property":"p","op":"contains","value":"U"})"), 1);
  EXPECT_EQ(Count(R"({"property":"p","op":"contains","value":"y"})"), 1);  // an array element
  EXPECT_EQ(Count(R"({"property":"p","op":"exists"})"), 5);
  EXPECT_EQ(Count(R"({"property":"p","op":"exists","value":false})"), 1);
  EXPECT_EQ(Count(R"({"property":"nowhere","op":"ne","value":1})"), 6);
  EXPECT_EQ(Count(R"({"or":[{"property":"p","op":"eq","value":"RU"},{"property":"v","op":"gte","value":40}]})"), 3);
}

TEST(AggregatorTest, CellsWeightSumDistinctUsersAndPercentiles) {
  AggregateQuery query;
  query.bounds = {0, 3500, 10000};
  query.weights = {{"t.b", -1}};
  query.value_property = "v";
  query.collect_users = true;
  query.collect_values = true;
  query.group_by = {"p"};
  AggregateResult result;
  Aggregate(query, Batch(), result);
  // Groups by p's text: "RU", "KZ", "5", null (missing), ["x","y"], "true".
  EXPECT_EQ(result.groups.size(), 6u);
  AggregateResult ungrouped;
  query.group_by.clear();
  Aggregate(query, Batch(), ungrouped);
  const auto& cells = ungrouped.groups.at(GroupKey{});
  EXPECT_EQ(cells[0].weighted_count, 3);
  EXPECT_EQ(cells[1].weighted_count, -3);
  EXPECT_EQ(cells[0].weighted_sum, 60);
  EXPECT_EQ(cells[1].weighted_sum, -100);  // the string value is skipped
  EXPECT_EQ(cells[1].value_count, 2u);
  EXPECT_EQ(cells[0].users.cardinality(), 2u);
  EXPECT_EQ(cells[1].users.cardinality(), 2u);  // users 3 and 2; the row without a user is ignored
  std::vector<double> values = {10, 20, 30, 40};
  EXPECT_DOUBLE_EQ(*Percentile(values, 90), 37);  // h = 2.7: 30 + 0.7 × 10
  std::vector<double> none;
  EXPECT_FALSE(Percentile(none, 50).has_value());
  EXPECT_EQ(FormatNumber(17), "17");
  EXPECT_EQ(FormatNumber(0.5), "0.5");
}

// Sessions (peak_concurrent, docs/metrics.md section 3) on random rows split over several sources, against a
// reference that pairs each name's events in time order (ends first at equal times, then read order).
struct SessionRow {
  int64_t time_ms;
  int type;  // 0 start, 1 end, 2 other
  uint32_t user;
  int key;   // -1 missing, 0..5 "s0".."s5", 6 the number 3, 7 the string "3"
  int game;  // -1 missing
  bool excluded;  // platform "x": fails the filter
};

EventBatch SessionBatch(const std::vector<SessionRow>& rows) {
  EventBatch batch;
  batch.rows = rows.size();
  batch.types = {"t.other", "t.end", "t.start"};
  PropertyColumn key, game, platform;
  key.Resize(rows.size());
  game.Resize(rows.size());
  platform.Resize(rows.size());
  key.strings = {"s0", "s1", "s2", "s3", "s4", "s5", "3"};
  game.strings = {"g0", "g1", "g2"};
  platform.strings = {"x", "y"};
  for (size_t row = 0; row < rows.size(); ++row) {
    const SessionRow& r = rows[row];
    batch.time_ms.push_back(r.time_ms);
    batch.type_codes.push_back(r.type == 0 ? 2 : r.type == 1 ? 1 : 0);
    batch.users.push_back(r.user);
    batch.min_time_ms = std::min(batch.min_time_ms, r.time_ms);
    batch.max_time_ms = std::max(batch.max_time_ms, r.time_ms);
    if (r.key == 6) {
      key.kinds[row] = ValueKind::kNumber;
      key.numbers[row] = 3;
    } else if (r.key >= 0) {
      key.kinds[row] = ValueKind::kString;
      key.codes[row] = static_cast<uint32_t>(r.key == 7 ? 6 : r.key);
    }
    if (r.game >= 0) {
      game.kinds[row] = ValueKind::kString;
      game.codes[row] = static_cast<uint32_t>(r.game);
    }
    platform.kinds[row] = ValueKind::kString;
    platform.codes[row] = r.excluded ? 0 : 1;
  }
  batch.properties["key"] = key;
  batch.properties["game"] = game;
  batch.properties["platform"] = platform;
  return batch;
}

using analytics::testing::NetChanges;
using analytics::testing::SessionTuple;

// Reference peaks: per bucket, the most of `sessions` covering one instant of it, found by checking the bucket's
// start and every session start inside it.
std::vector<int64_t> ReferencePeaks(const std::vector<SessionTuple>& sessions, const std::vector<int64_t>& bounds) {
  std::vector<int64_t> peaks;
  for (size_t bucket = 0; bucket + 1 < bounds.size(); ++bucket) {
    std::vector<int64_t> instants = {bounds[bucket]};
    for (const auto& [start, end, user] : sessions) {
      if (start > bounds[bucket] && start < bounds[bucket + 1]) instants.push_back(start);
    }
    int64_t peak = 0;
    for (int64_t instant : instants) {
      int64_t open = 0;
      for (const auto& [start, end, user] : sessions) open += start <= instant && instant < end;
      peak = std::max(peak, open);
    }
    peaks.push_back(peak);
  }
  return peaks;
}

TEST(SessionsTest, DaysJoinedMatchAReferenceOverSourcesDaysAndCarries) {
  std::mt19937 random(7);
  for (const size_t row_count : {size_t{300}, size_t{3000}, size_t{30000}}) {
    for (const int64_t max_session_ms : {int64_t{3000}, int64_t{20000}}) {
      std::vector<SessionRow> rows;
      for (size_t row = 0; row < row_count; ++row) {
        SessionRow r;
        r.time_ms = static_cast<int64_t>(random() % 500) * 100;  // many equal times
        const uint32_t kind = random() % 5;
        r.type = kind < 2 ? 0 : kind < 4 ? 1 : 2;
        r.user = random() % 10 == 0 ? kNoUser : static_cast<uint32_t>(random() % (row_count / 20 + 3));
        r.key = static_cast<int>(random() % 9) - 1;
        r.game = static_cast<int>(random() % 4) - 1;
        r.excluded = random() % 6 == 0;
        rows.push_back(r);
      }
      SessionQuery query;
      query.start_type = "t.start";
      query.end_type = "t.end";
      query.key_property = "key";
      query.filter = ParseFilterExpr(json::parse(R"({"property":"platform","op":"ne","value":"x"})"), "filters").value();
      query.group_by = {"game"};
      query.max_session_ms = max_session_ms;
      query.collect_users = true;
      // Sources of a few batches each, in read order.
      std::vector<SessionMarks> sources;
      for (size_t begin = 0; begin < rows.size();) {
        SessionMarksBuilder builder(query);
        for (int batch_idx = 0; batch_idx < 3 && begin < rows.size(); ++batch_idx) {
          const size_t end = std::min(rows.size(), begin + 1 + random() % (row_count / 4));
          builder.Add(SessionBatch(std::vector<SessionRow>(rows.begin() + static_cast<ptrdiff_t>(begin),
                                                           rows.begin() + static_cast<ptrdiff_t>(end))));
          begin = end;
        }
        sources.push_back(builder.Finish());
      }
      std::vector<const SessionMarks*> pointers;
      for (const auto& source : sources) pointers.push_back(&source);
      for (const auto& [from, to] : std::vector<std::pair<int64_t, int64_t>>{{0, 50000}, {12345, 30000}}) {
        query.from_ms = from;
        query.to_ms = to;
        // Reference: per (user, key text), events in time order, ends first, then read order.
        std::vector<analytics::testing::SessionEvent> read;
        int64_t newest = std::numeric_limits<int64_t>::min();
        for (const SessionRow& r : rows) {
          if (r.type == 2 || r.key < 0 || r.time_ms < from || r.time_ms >= to) continue;
          if (r.type == 0 && r.excluded) continue;
          read.push_back({r.time_ms, r.type == 0, r.user, r.key >= 6 ? "3" : "s" + std::to_string(r.key),
                          {r.game < 0 ? std::nullopt : std::optional<std::string>("g" + std::to_string(r.game))}});
          if (r.type == 0) newest = std::max(newest, r.time_ms);
        }
        auto expected = analytics::testing::ReferenceSessions(read, max_session_ms);
        // Days of random lengths (some shorter than a session, some longer), those without marks left out as the
        // store leaves out days without data.
        for (int split = 0; split < 3; ++split) {
          std::vector<std::shared_ptr<const SessionDay>> days;
          for (int64_t start = from; start < to;) {
            const int64_t end = std::min(to, start + 100 + static_cast<int64_t>(random() % (split == 0 ? 50000 : 6000)));
            auto day = BuildSessionDay(query, start, end, pointers);
            ASSERT_TRUE(day.ok()) << day.status().message();
            if (!day.value().marks.empty() || random() % 2 == 0) {
              days.push_back(std::make_shared<const SessionDay>(std::move(day).value()));
            }
            start = end;
          }
          SCOPED_TRACE(std::to_string(row_count) + " rows, max " + std::to_string(max_session_ms) + ", from " +
                       std::to_string(from) + ", " + std::to_string(days.size()) + " days");
          // Joined without links, with links made on the way, and with those links given.
          std::vector<std::shared_ptr<const SessionLink>> links;
          for (int variant = 0; variant < 3; ++variant) {
            SCOPED_TRACE("variant " + std::to_string(variant));
            const PairedSessions paired = PairDays(query, days, variant == 0 ? nullptr : &links);
            EXPECT_EQ(NetChanges(paired), NetChanges(expected));
            EXPECT_EQ(paired.newest_start_ms, newest);
            std::map<GroupKey, uint64_t> counts;
            std::map<GroupKey, std::set<uint32_t>> users;
            for (size_t group = 0; group < paired.groups.size(); ++group) {
              if (paired.session_counts[group] > 0) counts[paired.groups[group]] = paired.session_counts[group];
              for (uint32_t user : paired.users[group]) users[paired.groups[group]].insert(user);
            }
            std::map<GroupKey, uint64_t> expected_counts;
            std::map<GroupKey, std::set<uint32_t>> expected_users;
            for (const auto& [group, sessions] : expected) {
              expected_counts[group] = sessions.size();
              for (const auto& [start, end, user] : sessions) {
                if (user != kNoUser) expected_users[group].insert(user);
              }
            }
            std::erase_if(users, [](const auto& entry) { return entry.second.empty(); });
            EXPECT_EQ(counts, expected_counts);
            EXPECT_EQ(users, expected_users);
            // Peaks per group and for two groups as one slot, over buckets that start before the period, cut it
            // unevenly and end after it.
            std::vector<int64_t> bounds = {from - 1000};
            while (bounds.back() < to + 2000) bounds.push_back(bounds.back() + 1 + static_cast<int64_t>(random() % 7000));
            if (row_count > 3000) bounds = {from - 1000, from + 100, to / 2, to + 5000};
            std::vector<int32_t> each(paired.groups.size()), pair(paired.groups.size(), -1);
            for (size_t group = 0; group < paired.groups.size(); ++group) {
              each[group] = static_cast<int32_t>(group);
              if (paired.groups[group] == GroupKey{"g1"} || paired.groups[group] == GroupKey{std::nullopt}) pair[group] = 0;
            }
            const auto peaks = SweepPeaks(paired, bounds, each, each.size(), 1 + split, 50);
            for (size_t group = 0; group < paired.groups.size(); ++group) {
              EXPECT_EQ(peaks[group], ReferencePeaks(expected[paired.groups[group]], bounds));
            }
            std::vector<SessionTuple> both = expected[GroupKey{"g1"}];
            both.insert(both.end(), expected[GroupKey{std::nullopt}].begin(), expected[GroupKey{std::nullopt}].end());
            EXPECT_EQ(SweepPeaks(paired, bounds, pair, 1, 3, 10).front(), ReferencePeaks(both, bounds));
          }
        }
      }
    }
  }
}

TEST(SessionsTest, NamesSharingTheHighHashHalfArePairedByTheWholeName) {
  // Hand-made marks whose high hash halves collide: "a" and "b" (different low halves) of one user must not
  // close each other's sessions, nor "a" of another user.
  SessionQuery query;
  query.max_session_ms = 1000;
  query.from_ms = 0;
  query.to_ms = 100000;
  using Mark = SessionMarks::Mark;
  constexpr uint64_t kA = 1, kB = 2;
  SessionMarks first, second;
  first.groups = {GroupKey{}};
  first.marks = {Mark{0, kA, 100, 1, 0}, Mark{0, kB, 200, 1, 0}, Mark{0, kA, 150, 2, 0}};
  second.marks = {Mark{0, kB, 300, 1, SessionMarks::kEnd}, Mark{0, kA, 500, 1, SessionMarks::kEnd},
                  Mark{0, kA, 900, 2, SessionMarks::kEnd}};
  auto day = BuildSessionDay(query, 0, 100000, {&first, &second});
  ASSERT_TRUE(day.ok());
  const PairedSessions paired = PairDays(query, {std::make_shared<const SessionDay>(std::move(day).value())});
  const analytics::testing::SessionsByGroup expected = {{GroupKey{}, {{100, 500, 1}, {150, 900, 2}, {200, 300, 1}}}};
  EXPECT_EQ(NetChanges(paired), NetChanges(expected));
}

TEST(SessionsTest, ADayLongerThanTwoDaysIsRefused) {
  SessionQuery query;
  query.max_session_ms = 1000;
  EXPECT_FALSE(BuildSessionDay(query, 0, 3 * 86'400'000LL, {}).ok());
  query.max_session_ms = 31 * 86'400'000LL;
  EXPECT_FALSE(BuildSessionDay(query, 0, 1000, {}).ok());
}

}  // namespace
}  // namespace analytics::query

TEST(GroupIndexTest, HashesOfIdsDifferingInTheirLastCharactersSpreadOverTheLowBits) {
  // The table uses the low bits: 1,000 ids like "game_1042" over 2,048 slots must not pile up (they did when
  // the hash was a plain multiply: the varying last characters only reached the high bits).
  for (const std::string prefix : {"game_", "g", "country_", "x"}) {
    std::vector<int> slots(2048, 0);
    for (int id = 1000; id < 2000; ++id) ++slots[analytics::query::GroupIndex::Hash(prefix + std::to_string(id)) & 2047];
    EXPECT_LE(*std::max_element(slots.begin(), slots.end()), 6) << prefix;
    EXPECT_GE(std::count(slots.begin(), slots.end(), 0), 1024) << prefix;  // about 2048 * e^(-1000/2048) = 1259
  }
  // Equal values hash equally whatever their storage; lengths are part of the hash.
  EXPECT_EQ(analytics::query::GroupIndex::Hash(std::string("game_1")), analytics::query::GroupIndex::Hash("game_1"));
  EXPECT_NE(analytics::query::GroupIndex::Hash(std::string_view("a\0", 2)), analytics::query::GroupIndex::Hash("a"));
}

namespace analytics::query {
namespace {

std::set<uint32_t> Reference(const UserSet& set) {
  std::set<uint32_t> ids;
  for (uint32_t id : set.ToRoaring()) ids.insert(id);
  return ids;
}

// Random sets on both sides of the vector/bitmap boundary (UserSet::kSmallMax), over a small and a large id
// range, built by add, AppendUnsorted + Normalize and unions, checked against std::set after every step.
TEST(UserSetTest, EveryOperationMatchesAReferenceSetAcrossTheVectorBitmapBoundary) {
  std::mt19937 random(7);
  for (uint32_t range : {3000u, 2000000u}) {
    for (int round = 0; round < 40; ++round) {
      const size_t sizes[] = {0, 1, 5, 100, UserSet::kSmallMax - 1, UserSet::kSmallMax, UserSet::kSmallMax + 1, 3000};
      std::vector<UserSet> sets(6);
      std::vector<std::set<uint32_t>> expected(6);
      for (size_t set_idx = 0; set_idx < sets.size(); ++set_idx) {
        const size_t size = sizes[random() % std::size(sizes)];
        std::vector<UserSet*> unsorted;
        for (size_t added = 0; added < size; ++added) {
          const uint32_t id = random() % range;
          expected[set_idx].insert(id);
          if (set_idx % 2 == 0) {
            sets[set_idx].add(id);
          } else if (sets[set_idx].AppendUnsorted(id)) {
            unsorted.push_back(&sets[set_idx]);
          }
        }
        for (UserSet* set : unsorted) set->Normalize();
        ASSERT_EQ(Reference(sets[set_idx]), expected[set_idx]) << range << " " << round << " " << set_idx;
        ASSERT_EQ(sets[set_idx].cardinality(), expected[set_idx].size());
        ASSERT_EQ(sets[set_idx].empty(), expected[set_idx].empty());
      }
      // Pairwise unions, with sets and with bitmaps.
      UserSet left = sets[0];
      left |= sets[1];
      std::set<uint32_t> left_expected = expected[0];
      left_expected.insert(expected[1].begin(), expected[1].end());
      ASSERT_EQ(Reference(left), left_expected);
      left |= sets[2].ToRoaring();
      left_expected.insert(expected[2].begin(), expected[2].end());
      ASSERT_EQ(Reference(left), left_expected);
      // The union of all of them, and of many copies (the bitset path of UnionAll).
      std::vector<const UserSet*> all;
      std::set<uint32_t> all_expected;
      for (size_t set_idx = 0; set_idx < sets.size(); ++set_idx) {
        for (int copy = 0; copy < 3; ++copy) all.push_back(&sets[set_idx]);
        all_expected.insert(expected[set_idx].begin(), expected[set_idx].end());
      }
      const UserSet merged = UserSet::UnionAll(all);
      ASSERT_EQ(Reference(merged), all_expected) << range << " " << round;
      ASSERT_EQ(merged.cardinality(), all_expected.size());
      // Equality does not depend on the representation.
      UserSet same;
      for (uint32_t id : all_expected) same.add(id);
      EXPECT_TRUE(same == merged);
      Roaring into;
      merged.AddTo(into);
      EXPECT_EQ(into.cardinality(), all_expected.size());
    }
  }
}

TEST(UserSetTest, MergeAllGivesTheCellsOfPairwiseMerges) {
  std::mt19937 random(11);
  std::vector<AggregateCell> cells(40);
  for (auto& cell : cells) {
    const size_t users = random() % 3 == 0 ? 2000 : random() % 50;
    for (size_t added = 0; added < users; ++added) cell.users.add(random() % 100000);
    cell.weighted_count = random() % 10;
  }
  AggregateCell pairwise;
  std::vector<const AggregateCell*> pointers;
  for (const auto& cell : cells) {
    pairwise.Merge(cell);
    pointers.push_back(&cell);
  }
  const AggregateCell all = AggregateCell::MergeAll(pointers);
  EXPECT_TRUE(all.users == pairwise.users);
  EXPECT_EQ(all.users.cardinality(), pairwise.users.cardinality());
  EXPECT_EQ(all.weighted_count, pairwise.weighted_count);
}

// MergeColumns over rows of different lengths equals one MergeAll per column, in the rows' order (sums to the
// bit, users, values).
TEST(UserSetTest, MergeColumnsEqualsMergeAllPerColumn) {
  std::mt19937 random(13);
  std::vector<std::vector<AggregateCell>> rows(30);
  for (auto& row : rows) {
    row.resize(4 + random() % 5);
    for (auto& cell : row) {
      const size_t users = random() % 4 == 0 ? 1500 : random() % 20;
      for (size_t added = 0; added < users; ++added) cell.users.add(random() % 50000);
      cell.weighted_count = random() % 10;
      cell.weighted_sum = 0.1 * static_cast<double>(random() % 9);
      if (random() % 3 == 0) cell.values.push_back(static_cast<double>(random() % 100));
    }
  }
  std::vector<const std::vector<AggregateCell>*> pointers;
  for (const auto& row : rows) pointers.push_back(&row);
  const size_t from = 1, to = 8;
  std::vector<AggregateCell> out(to - from);
  AggregateCell::MergeColumns(pointers, from, to, out);
  for (size_t column = from; column < to; ++column) {
    std::vector<const AggregateCell*> cells;
    for (const auto& row : rows) {
      if (column < row.size()) cells.push_back(&row[column]);
    }
    const AggregateCell expected = AggregateCell::MergeAll(cells);
    const AggregateCell& got = out[column - from];
    EXPECT_TRUE(got.users == expected.users) << column;
    EXPECT_EQ(got.weighted_count, expected.weighted_count) << column;
    EXPECT_EQ(std::memcmp(&got.weighted_sum, &expected.weighted_sum, sizeof(double)), 0) << column;
    EXPECT_EQ(got.values, expected.values) << column;
  }
}

// MergeResults of partials over slices of the bounds equals merging them one by one.
TEST(MergeResultsTest, CellsEqualPairwiseMergesInPartialOrder) {
  std::mt19937 random(5);
  const size_t buckets = 6;
  std::vector<PackedResult> packed;
  std::vector<size_t> offsets;
  AggregateResult expected;
  for (int partial_idx = 0; partial_idx < 12; ++partial_idx) {
    const size_t offset = random() % buckets;
    const size_t width = 1 + random() % (buckets - offset);
    AggregateResult partial;
    for (int group = 0; group < 30; ++group) {
      if (random() % 3 == 0) continue;
      auto& cells = partial.groups[GroupKey{group % 7 == 0 ? std::nullopt : std::optional<std::string>("g" + std::to_string(group))}];
      cells.resize(width);
      for (auto& cell : cells) {
        cell.weighted_count = static_cast<double>(random() % 100) / 7;
        for (size_t added = random() % 40; added > 0; --added) cell.users.add(random() % 5000);
      }
    }
    partial.rows_read = 10;
    expected.Merge(partial, offset, buckets);
    packed.push_back(Pack(std::move(partial)));
    offsets.push_back(offset);
  }
  std::vector<PartialRef> refs;
  for (size_t idx = 0; idx < packed.size(); ++idx) refs.push_back({&packed[idx], offsets[idx]});
  for (size_t threads : {1, 2, 3}) {
    AggregateResult merged;
    MergeResults(merged, refs, buckets, threads);
    ASSERT_EQ(merged.groups.size(), expected.groups.size());
    EXPECT_EQ(merged.rows_read, expected.rows_read);
    for (const auto& [key, cells] : expected.groups) {
      const auto& got = merged.groups.at(key);
      ASSERT_EQ(got.size(), cells.size());
      for (size_t bucket = 0; bucket < cells.size(); ++bucket) {
        EXPECT_EQ(got[bucket].weighted_count, cells[bucket].weighted_count);
        EXPECT_TRUE(got[bucket].users == cells[bucket].users);
      }
    }
  }
}

}  // namespace
}  // namespace analytics::query
