// Unit tests for api::Router (path templates) and the http_types helpers (ParseTarget, PercentDecode).
#include "api/router.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/http_types.h"

namespace analytics::api {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Each handler answers with its own status so a test can tell which route was chosen by calling it.
Route MakeRoute(std::string method, std::string path, int marker) {
  Route route;
  route.method = std::move(method);
  route.path = std::move(path);
  route.summary = route.method + " " + route.path;
  route.handler = [marker](HttpRequest&) {
    HttpResponse response;
    response.status = marker;
    return response;
  };
  return route;
}

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add(MakeRoute("GET", "/healthz", 1));
    router_.Add(MakeRoute("GET", "/api/v1/analytics/metrics/definitions", 2));
    router_.Add(MakeRoute("POST", "/api/v1/analytics/metrics/definitions", 3));
    router_.Add(MakeRoute("GET", "/api/v1/analytics/metrics/definitions/{metric_name}", 4));
    router_.Add(MakeRoute("PUT", "/api/v1/analytics/metrics/definitions/{metric_name}", 5));
    router_.Add(MakeRoute("DELETE", "/api/v1/analytics/metrics/definitions/{metric_name}", 6));
    router_.Add(MakeRoute("GET", "/api/v1/analytics/metrics/definitions/builtin", 7));
    router_.Add(MakeRoute("GET", "/api/v1/analytics/games/{game_id}/metrics/{metric_name}", 8));
  }

  static int Marker(const Router::Match& match) {
    HttpRequest request;
    return match.route->handler(request).status;
  }

  Router router_;
};

TEST_F(RouterTest, ExactLiteralPathMatches) {
  auto match = router_.Find("GET", "/healthz");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(Marker(match), 1);
  EXPECT_TRUE(match.params.empty());
  EXPECT_TRUE(match.allowed_methods.empty());
  EXPECT_FALSE(match.bad_escape);
}

TEST_F(RouterTest, MethodSelectsAmongRoutesWithTheSamePath) {
  auto get = router_.Find("GET", "/api/v1/analytics/metrics/definitions");
  auto post = router_.Find("POST", "/api/v1/analytics/metrics/definitions");
  ASSERT_NE(get.route, nullptr);
  ASSERT_NE(post.route, nullptr);
  EXPECT_EQ(Marker(get), 2);
  EXPECT_EQ(Marker(post), 3);
}

TEST_F(RouterTest, TemplateParametersAreCaptured) {
  auto match = router_.Find("GET", "/api/v1/analytics/games/g-17/metrics/dau");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(Marker(match), 8);
  EXPECT_EQ(match.route->path, "/api/v1/analytics/games/{game_id}/metrics/{metric_name}");
  EXPECT_EQ(match.params, (std::map<std::string, std::string>{{"game_id", "g-17"}, {"metric_name", "dau"}}));
}

TEST_F(RouterTest, LiteralSegmentBeatsParameter) {
  auto literal = router_.Find("GET", "/api/v1/analytics/metrics/definitions/builtin");
  ASSERT_NE(literal.route, nullptr);
  EXPECT_EQ(Marker(literal), 7);
  EXPECT_TRUE(literal.params.empty());
  // Registration order does not matter: a router with the literal added first chooses it too.
  Router reversed;
  reversed.Add(MakeRoute("GET", "/x/literal", 1));
  reversed.Add(MakeRoute("GET", "/x/{param}", 2));
  auto match = reversed.Find("GET", "/x/literal");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(Marker(match), 1);
  auto other = reversed.Find("GET", "/x/other");
  ASSERT_NE(other.route, nullptr);
  EXPECT_EQ(Marker(other), 2);
  EXPECT_EQ(other.params.at("param"), "other");
}

TEST_F(RouterTest, ParametersArePercentDecodedWithoutPlusAsSpace) {
  auto match = router_.Find("GET", "/api/v1/analytics/metrics/definitions/a%2Fb%20c+d%41");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(Marker(match), 4);
  EXPECT_EQ(match.params.at("metric_name"), "a/b c+dA");  // %2F does not split the segment
  EXPECT_FALSE(match.bad_escape);
}

TEST_F(RouterTest, BadEscapeInParameterIsFlaggedAndKeepsRawText) {
  for (const char* raw : {"bad%zz", "bad%2", "bad%"}) {
    auto match = router_.Find("DELETE", std::string("/api/v1/analytics/metrics/definitions/") + raw);
    ASSERT_NE(match.route, nullptr) << raw;
    EXPECT_EQ(Marker(match), 6) << raw;
    EXPECT_TRUE(match.bad_escape) << raw;
    EXPECT_EQ(match.params.at("metric_name"), raw);
  }
}

TEST_F(RouterTest, MethodMismatchListsAllowedMethods) {
  auto match = router_.Find("PATCH", "/api/v1/analytics/metrics/definitions/dau");
  EXPECT_EQ(match.route, nullptr);
  EXPECT_THAT(match.allowed_methods, UnorderedElementsAre("GET", "PUT", "DELETE"));
  auto collection = router_.Find("DELETE", "/api/v1/analytics/metrics/definitions");
  EXPECT_EQ(collection.route, nullptr);
  EXPECT_THAT(collection.allowed_methods, UnorderedElementsAre("GET", "POST"));
  auto health = router_.Find("POST", "/healthz");
  EXPECT_EQ(health.route, nullptr);
  EXPECT_THAT(health.allowed_methods, ElementsAre("GET"));
}

TEST_F(RouterTest, AllowedMethodsAreEmptyWhenTheMethodMatches) {
  // PUT only exists on the parameter route; the literal "builtin" route is GET-only. PUT .../builtin still
  // matches the parameter route, and no allowed_methods are reported.
  auto match = router_.Find("PUT", "/api/v1/analytics/metrics/definitions/builtin");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(Marker(match), 5);
  EXPECT_TRUE(match.allowed_methods.empty());
}

TEST_F(RouterTest, UnknownPathsDoNotMatch) {
  for (const char* path : {"/", "", "/nope", "/healthz/extra", "/api/v1/analytics/metrics",
                           "/api/v1/analytics/games/g/metrics", "/API/v1/analytics/metrics/definitions",
                           "/api/v1/analytics/metrics/definitions/a/b"}) {
    auto match = router_.Find("GET", path);
    EXPECT_EQ(match.route, nullptr) << path;
    EXPECT_TRUE(match.allowed_methods.empty()) << path;
  }
}

TEST_F(RouterTest, TrailingSlashIsNotMatched) {
  EXPECT_EQ(router_.Find("GET", "/healthz/").route, nullptr);
  EXPECT_EQ(router_.Find("GET", "/api/v1/analytics/metrics/definitions/").route, nullptr);
  EXPECT_EQ(router_.Find("GET", "/api/v1/analytics/metrics/definitions/dau/").route, nullptr);
}

TEST_F(RouterTest, EmptySegmentDoesNotMatchAParameter) {
  EXPECT_EQ(router_.Find("GET", "/api/v1/analytics/games//metrics/dau").route, nullptr);
}

TEST_F(RouterTest, LiteralSegmentsAreComparedWithoutDecoding) {
  EXPECT_EQ(router_.Find("GET", "/%68ealthz").route, nullptr);
}

TEST(RouterEmptyTest, EmptyRouterMatchesNothing) {
  Router router;
  auto match = router.Find("GET", "/healthz");
  EXPECT_EQ(match.route, nullptr);
  EXPECT_TRUE(match.allowed_methods.empty());
  EXPECT_TRUE(router.routes().empty());
}

// --- PercentDecode and ParseTarget -----------------------------------------------------------------------

TEST(PercentDecodeTest, DecodesEscapesInBothCases) {
  EXPECT_EQ(PercentDecode("a%20b%2f%2F%7e", false), "a b//~");
  EXPECT_EQ(PercentDecode("%E2%82%AC", false), "\xE2\x82\xAC");  // UTF-8 euro sign
  EXPECT_EQ(PercentDecode("%00x", false), std::string("\0x", 2));
  EXPECT_EQ(PercentDecode("", false), "");
}

TEST(PercentDecodeTest, PlusIsSpaceOnlyWhenAsked) {
  EXPECT_EQ(PercentDecode("a+b", true), "a b");
  EXPECT_EQ(PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(PercentDecode("a%2Bb", true), "a+b");  // an encoded plus stays a plus
}

TEST(PercentDecodeTest, MalformedEscapesAreRejected) {
  for (const char* bad : {"%", "%2", "a%", "a%g0", "%0g", "%%", "abc%2"}) {
    EXPECT_EQ(PercentDecode(bad, false), std::nullopt) << bad;
    EXPECT_EQ(PercentDecode(bad, true), std::nullopt) << bad;
  }
}

using QueryPairs = std::vector<std::pair<std::string, std::string>>;

TEST(ParseTargetTest, SplitsPathAndDecodesQuery) {
  std::string path;
  QueryPairs query;
  ParseTarget("/api/v1/x%2Fy?from=2024-01-01T00%3A00%3A00Z&q=a+b&tag=%2B1&empty=&flag", path, query);
  EXPECT_EQ(path, "/api/v1/x%2Fy");  // the path is not decoded
  EXPECT_EQ(query, (QueryPairs{{"from", "2024-01-01T00:00:00Z"},
                               {"q", "a b"},
                               {"tag", "+1"},
                               {"empty", ""},
                               {"flag", ""}}));
}

TEST(ParseTargetTest, NoQuery) {
  std::string path = "stale";
  QueryPairs query = {{"stale", "1"}};
  ParseTarget("/healthz", path, query);
  EXPECT_EQ(path, "/healthz");
  EXPECT_TRUE(query.empty());  // cleared
  ParseTarget("/healthz?", path, query);
  EXPECT_EQ(path, "/healthz");
  EXPECT_TRUE(query.empty());
}

TEST(ParseTargetTest, KeepsOrderAndRepeatedKeysAndSkipsEmptyPairs) {
  std::string path;
  QueryPairs query;
  ParseTarget("/m?dim=a&&dim=b&=v&dim=c", path, query);
  EXPECT_EQ(query, (QueryPairs{{"dim", "a"}, {"dim", "b"}, {"", "v"}, {"dim", "c"}}));
  HttpRequest request;
  request.query = query;
  EXPECT_EQ(request.QueryParam("dim"), "a");  // the first value
  EXPECT_EQ(request.QueryParam("missing"), std::nullopt);
}

TEST(ParseTargetTest, ValueMayContainEqualsSigns) {
  std::string path;
  QueryPairs query;
  ParseTarget("/p?filter=a%3Db=c", path, query);
  EXPECT_EQ(query, (QueryPairs{{"filter", "a=b=c"}}));
}

TEST(ParseTargetTest, MalformedEscapeKeepsTheRawText) {
  std::string path;
  QueryPairs query;
  ParseTarget("/p?name=50%&k%zz=v", path, query);
  EXPECT_EQ(query, (QueryPairs{{"name", "50%"}, {"k%zz", "v"}}));
}

TEST(HttpTypesTest, HeaderLookupAndResponses) {
  HttpRequest request;
  request.headers["authorization"] = "Bearer x";
  EXPECT_EQ(request.Header("authorization"), "Bearer x");
  EXPECT_EQ(request.Header("x-missing"), "");
  auto json_response = HttpResponse::Json(201, nlohmann::json{{"ok", true}});
  EXPECT_EQ(json_response.status, 201);
  EXPECT_EQ(json_response.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(json_response.body), (nlohmann::json{{"ok", true}}));
  // Invalid UTF-8 in a JSON body is replaced rather than throwing.
  auto replaced = HttpResponse::Json(200, nlohmann::json{{"s", std::string("\xff")}});
  nlohmann::json reparsed;
  EXPECT_NO_THROW(reparsed = nlohmann::json::parse(replaced.body));
  EXPECT_TRUE(reparsed.contains("s"));
  auto text = HttpResponse::Text(200, "text/plain", "hi");
  EXPECT_EQ(text.content_type, "text/plain");
  EXPECT_EQ(text.body, "hi");
}

}  // namespace
}  // namespace analytics::api
