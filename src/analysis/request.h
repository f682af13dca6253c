// What every analysis request shares (docs/analysis.md section 1): the period, the time zone, the `filters`,
// the optional `segment`, the viewer's scope and k-anonymity, and strict JSON field checks with error paths.
//
// Errors are InvalidArgument whose field() is the JSON path of the offending value inside the request body
// ("steps[1].event_type", "filters.and[0].op"); the API answers them 400 INVALID_QUERY_PARAMETERS with that
// path as details.parameter.
// Thread-safety: plain values and reentrant functions.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "query/filter_expr.h"
#include "query/time_grid.h"
#include "query/user_scope.h"
#include "store/event_store.h"

namespace analytics::analysis {

using Viewer = query::Viewer;  // who asks (developers: own games, k-anonymity)

// The current members of a segment as a scope of store ids (the segment service supplies it). NotFound: no
// segment has that id; FailedPrecondition: the segment has not been materialized yet; other errors as they are.
using SegmentScopeResolver = query::UserScopeResolver;

struct AnalysisOptions {
  int k_anonymity = 5;     // privacy.k_anonymity
  size_t query_threads = 0;  // 0: the machine's cores
  SegmentScopeResolver segment_scope;  // resolves `segment`; unset: every segment id is NotFound
};

struct CommonRequest {
  query::TimeZone zone = query::TimeZone::Utc();
  int64_t start_ms = 0, end_ms = 0;  // the period, [start_ms, end_ms)
  std::string period_start, period_end;  // as given
  query::FilterExpr filter;           // the request's `filters` and the viewer's scope: must hold for every event read
  bool k_anonymity = false;           // a developer asks: groups of fewer than k users are left out
  int k = 5;
  std::optional<std::string> segment;  // restrict to this segment's users ...
  std::optional<query::UserScope> scope;  // ... its current members: every store query of the request reads only them
};

// Reads period_start, period_end (required), timezone (default UTC), filters, segment from `body` (an object).
// A `segment` is resolved through options.segment_scope: NotFound when no segment has that id (or no resolver is
// set), FailedPrecondition when it has no members yet (not materialized), the resolver's other errors as they are.
common::Result<CommonRequest> ParseCommon(const nlohmann::json& body, const Viewer& viewer,
                                          const AnalysisOptions& options);

// InvalidArgument naming `path + "." + name` for the first member of `object` not in `known` (typos must not be
// ignored silently); `object` must be an object (else InvalidArgument naming `path`, "body" when it is "").
common::Status CheckFields(const nlohmann::json& object, std::initializer_list<std::string_view> known,
                           const std::string& path);
// CheckFields of an analysis request body: `known` and the members of CommonRequest.
common::Status CheckRequestFields(const nlohmann::json& body, std::initializer_list<std::string_view> known);

// "a.b" from a path and a member name ("" + "steps" = "steps"); "steps" + 2 = "steps[2]".
std::string Member(const std::string& path, std::string_view name);
std::string Index(const std::string& path, size_t index);

// Typed reads of object members with precise errors. Absent (or null, for optional ones) = the default.
common::Result<std::string> RequiredString(const nlohmann::json& object, std::string_view name, const std::string& path);
common::Result<std::optional<std::string>> OptionalString(const nlohmann::json& object, std::string_view name,
                                                          const std::string& path);
// An integer in [min, max].
common::Result<int64_t> IntegerIn(const nlohmann::json& object, std::string_view name, const std::string& path,
                                  int64_t min, int64_t max, std::optional<int64_t> fallback);
common::Result<bool> Boolean(const nlohmann::json& object, std::string_view name, const std::string& path, bool fallback);
// One of `allowed` (the message lists them).
common::Result<std::string> Choice(const nlohmann::json& object, std::string_view name, const std::string& path,
                                   std::initializer_list<std::string_view> allowed, std::string_view fallback);
// An event type: a non-empty string of at most 256 characters.
common::Result<std::string> EventType(const nlohmann::json& object, std::string_view name, const std::string& path);
// A property path as the filters language names it (non-empty, at most 256 characters).
common::Result<std::string> PropertyName(const nlohmann::json& value, const std::string& path);
// `filters` of a step/event object (the filters language, query/filter_expr.h), errors under `path`.
common::Result<query::FilterExpr> Filters(const nlohmann::json& object, std::string_view name, const std::string& path);

// FailedPrecondition (409 DATA_NOT_YET_AVAILABLE) when the period starts after the newest stored event.
common::Status CheckDataAvailable(store::EventStore& store, const CommonRequest& request);

// The period, time zone and segment echoed back in every answer: {"period_start", "period_end", "timezone"}, and
// "segment" (its id) when the request names one.
nlohmann::json Echo(const CommonRequest& request);
// {"k": k, "suppressed_groups": n} in document["k_anonymity"] when the request is k-anonymous.
void AddKAnonymity(nlohmann::json& document, const CommonRequest& request, uint64_t suppressed_groups);

}  // namespace analytics::analysis
