// Aggregator: runs an AggregateQuery over EventBatches (the embedded store's engine).
//
// Per batch it compiles the filter once against the batch's dictionaries (a string condition is decided
// once per distinct string, not per row), then makes one pass over the rows: type mask and weight, filter,
// bucket (binary search in the bounds, skipped when the batch lies in one bucket), group (interned per
// batch), and the cell updates. Distinct users go into roaring bitmaps; consecutive rows of the same user
// (segments are sorted by user) add the user once.
// Semantics are docs/metrics.md sections 2 and 3 to the letter (no type coercion, missing/null rules).
// Thread-safety: Aggregate is reentrant; batches and results are not shared.
#pragma once

#include "common/status.h"
#include "query/aggregate.h"

namespace analytics::query {

// Adds the rows of `batch` that the query reads into `out` (which must have been made for the same
// query: out.groups cells sized bounds.size() - 1).
void Aggregate(const AggregateQuery& query, const EventBatch& batch, AggregateResult& out);

// Appends the rows of `batch` that the query reads (types, bounds as the time range, filter) to `out`, with
// their group (query.group_by) and the values of `properties`.
void SelectRows(const AggregateQuery& query, const EventBatch& batch, const std::vector<std::string>& properties,
                RowSet& out);

// The text form of a group value for numbers: integers without a fraction ("17"), others shortest
// round-trip ("0.5").
std::string FormatNumber(double value);

// Exact percentile (Hyndman-Fan type 7) of `values` (reordered); nullopt when empty.
std::optional<double> Percentile(std::vector<double>& values, double p);

}  // namespace analytics::query
