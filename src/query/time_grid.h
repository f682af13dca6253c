// Time buckets of a metric query: granularity, IANA time zones, DST-correct boundaries.
//
// Rationale: "per day" means the requested time zone's calendar day, which is 23 or 25 hours long on DST
// changes, and "per week" means ISO weeks (Monday) in that zone. A TimeGrid is the list of bucket boundaries
// as UTC instants, computed once per query with the zone database (Abseil's, reading /usr/share/zoneinfo);
// the engine then only compares integers.
// Boundaries: day, week and month buckets start at local midnight (the first instant at or after it when
// midnight is skipped by a DST change); minute and hour buckets are fixed 60 s / 3600 s steps aligned to the
// zone's local minute/hour, so a repeated local hour (DST end) is two buckets, never one of two hours.
// Thread-safety: TimeZone and TimeGrid are immutable values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <absl/time/time.h>

#include "common/status.h"

namespace analytics::query {

enum class Granularity { kMinute, kHour, kDay, kWeek, kMonth };

std::string_view GranularityName(Granularity granularity);
std::optional<Granularity> GranularityFromName(std::string_view name);

class TimeZone {
 public:
  // InvalidArgument (field "timezone") for a name the zone database does not know. "UTC" always works.
  static common::Result<TimeZone> Load(const std::string& name);
  static TimeZone Utc();
  const std::string& name() const { return name_; }
  const absl::TimeZone& zone() const { return zone_; }

  // The first instant (Unix ms) at or after local midnight starting the civil day y-m-d.
  int64_t StartOfDay(int64_t year, int month, int day) const;
  // RFC 3339 with the zone's offset at that instant, seconds precision ("2024-01-01T00:00:00+03:00"; "Z" for
  // UTC).
  std::string Format(int64_t unix_ms) const;

 private:
  std::string name_;
  absl::TimeZone zone_;
};

class TimeGrid {
 public:
  // Buckets of `granularity` covering [start_ms, end_ms) (end exclusive): the first bucket is the one
  // holding start_ms, the last the one holding end_ms - 1. InvalidArgument when end <= start or when the
  // grid would exceed `max_buckets` (field "granularity").
  static common::Result<TimeGrid> Make(int64_t start_ms, int64_t end_ms, Granularity granularity,
                                       const TimeZone& zone, size_t max_buckets = 100000);

  size_t size() const { return bounds_.size() - 1; }
  // Bucket i is [bounds()[i], bounds()[i + 1]).
  const std::vector<int64_t>& bounds() const { return bounds_; }
  // The bucket holding `unix_ms`, or -1 outside the grid.
  int64_t Find(int64_t unix_ms) const;

 private:
  std::vector<int64_t> bounds_;
};

// A period bound of a request: a date YYYY-MM-DD (the zone's local midnight starting that day, or for an end the
// one after it: a date end includes its day) or an RFC 3339 time (an end includes its millisecond). Returns the
// bound as a half-open Unix ms: start inclusive, end exclusive. InvalidArgument naming `parameter`.
common::Result<int64_t> ParsePeriodBound(const std::string& text, bool is_end, const TimeZone& zone,
                                         const char* parameter);

}  // namespace analytics::query
