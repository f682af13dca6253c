// Report sections: each section type asks the same code the API's endpoints run (so a report's numbers are the
// API's numbers for the same question) and turns the answer into one table (docs/reports.md "Sections").
//
// Every table's columns are named [a-z0-9_]+ (unique in the section: a repeated name gets "_2", "_3", ...); the
// header's title is the section's "title", or its name when it has none.
// Types (members besides "name", "title", "type"; unknown members are errors; every value may be a placeholder):
// - "metrics": {"metrics": [names, 1..20, distinct], "granularity": "hour|day|week|month" (default "day"),
//   "dimensions": [properties, <= 3], "filters": filter expression, "limit": top-N groups (1..1000, needs
//   dimensions), plus period_start, period_end, timezone, segment}. Each metric as GET /metrics/values/{metric}
//   computes it (the same request for each); the table joins them on bucket and group: column "date" (kDate: the
//   bucket's first local day) or, hourly, "hour" (kDateTime: the bucket's start with the zone's offset), one per
//   dimension (kString, named by the property lower-cased with other characters than [a-z0-9_] as "_"; "other"
//   in the top-N's "other" row), one per metric (named by the metric, titled with its unit; kInteger for
//   unique_users, peak_concurrent and counts whose values are all whole, else kNumber). Rows by bucket, then
//   group in the first metric's series order, then the groups only later metrics have, in their order; a group
//   missing from a metric (it read none of its events, or k-anonymity left it out) is null there. Ungrouped, every
//   bucket has its row, with nulls when a developer's k-anonymity left the series out.
// - "funnel": {"request": the body of POST /analysis/funnels}. One row per step, or with a "breakdown" per group
//   (the API's order: most users first; the whole funnel is not repeated) and step: the group column (named by the
//   breakdown property like a dimension), "step" (1-based), "event_type", "users", "dropped_off",
//   "conversion_from_previous", "conversion_from_first", "median_seconds_to_convert" (from the previous step),
//   "median_seconds_from_first" (as the API reports them; a suppressed funnel's numbers are null).
// - "retention": {"request": the body of POST /analysis/retention}. One row per cohort: "cohort_start",
//   "cohort_end" (dates), "cohort_users", then per period N (ascending) "retained_<N>" (users) and "share_<N>"
//   (0..1); both null when the cell is not measurable yet, the share also when the cohort has no users. The API's
//   "total" row is not tabulated.
// - "experiment": {"request": the body of POST /analysis/experiments}. One row per variant (control first) and
//   goal (request order) as the API reports them: "experiment", "variant", "control" (boolean), "exposed_users",
//   "users_with_multiple_variants", "goal" (1-based), "goal_kind", "goal_event_type", "converters", "rate"
//   (conversion goals), "mean" (mean goals), "ci95_low", "ci95_high", "uplift", "uplift_ci95_low",
//   "uplift_ci95_high", "difference", "difference_ci95_low", "difference_ci95_high", "p_value", "significant"
//   (p_value < 0.05), "srm_p_value", "srm_ok" (the experiment's sample-ratio check, on every row); null where the
//   API has none (the control's comparisons, a variant without users).
// - "segment_sizes": {"segments": [segment ids, 1..100] or "all" (default "all": segment_ids())}. One row per
//   segment: "segment_id", "name", "type", "users_count", "as_of", "refreshed_at" (datetimes; a segment not
//   materialized yet: nulls). As GET /segments/{id}/users-count, not for developers (PermissionDenied).
// Errors: CheckSection's are InvalidArgument naming the path under the section ("sections[2].metrics[1]");
// placeholders are taken for valid values there. RunSection first checks the resolved section the same way with
// every value (field "metrics", "granularity", ...), then returns the API's errors: for "metrics" naming the
// query parameter ("dimensions", "segment"), an unknown metric NotFound with field "metrics[<i>]"; for the
// analysis types InvalidArgument naming the path under the section ("request.steps[1].event_type"), NotFound for
// an unknown segment, FailedPrecondition (DATA_NOT_YET_AVAILABLE) ...; "segment_sizes": the callback's NotFound
// with field "segments[<i>]" for a listed id. The report service reports them as REPORT_GENERATION_FAILED naming
// the section.
// Thread-safety: reentrant; the context's services are thread-safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/request.h"
#include "common/status.h"
#include "metrics/metric_values.h"
#include "reports/table.h"
#include "store/event_store.h"

namespace analytics::reports {

// One section's result.
struct SectionTable {
  SectionHeader header;
  std::vector<Row> rows;
};

struct SectionContext {
  store::EventStore& store;
  metrics::MetricValues& metric_values;
  const analysis::AnalysisOptions& analysis;
  query::Viewer viewer;  // who the report runs as (its requester; scheduled reports: the definition's owner)
  // The users-count document of a segment ({"segment_id", "name", "type", "users_count", "as_of",
  // "refreshed_at"}; counts null before the first refresh); NotFound for an unknown id. Unset: every id is unknown.
  std::function<common::Result<nlohmann::json>(const std::string& segment_id)> segment_size;
  // Every segment id, sorted by name. Unset: there are none.
  std::function<common::Result<std::vector<std::string>>()> segment_ids;
};

// Checks a section object of a definition (placeholders allowed anywhere a value goes; a filter expression holding
// one is checked once resolved); `path` is its JSON path ("sections[2]"). The analysis types' requests are checked
// for their top-level members only (names, required ones); the rest is the API's check at run time.
common::Status CheckSection(const nlohmann::json& section, const std::string& path);

// Runs a resolved section (definition.h ResolveSection) as `context.viewer` and tabulates the answer.
common::Result<SectionTable> RunSection(const nlohmann::json& resolved, SectionContext& context);

}  // namespace analytics::reports
