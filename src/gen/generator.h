// Deterministic synthetic event stream for a Steam-like game store: every event is a CloudEvents JSON object
// valid per docs/events.md. Feeds tests, the demo and benchmarks (10M-100M events). Model, distributions and
// known effect sizes: docs/generator.md.
// Thread-safety: Generate keeps all state on its own stack/heap; concurrent calls are independent.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace analytics::gen {

struct GeneratorOptions {
  int64_t users = 10000;                  // accounts in the simulation (pre-existing + registering), >= 1
  int days = 30;                          // simulated days, >= 1
  uint64_t seed = 1;                      // same options => byte-identical output on any machine
  std::string start_date = "2024-01-01";  // first day (UTC), YYYY-MM-DD
  int games = 0;                          // catalog size; 0: max(20, users / 500)
};

struct GeneratorStats {
  uint64_t events = 0;                        // events emitted
  uint64_t users = 0;                         // distinct users that appear in at least one event
  std::map<std::string, uint64_t> by_type;    // full type name -> events emitted
};

// Emits the event stream, one compact JSON object per call (no trailing newline), in non-decreasing `time`
// order over the whole stream (all times are UTC "YYYY-MM-DDTHH:MM:SS.mmmZ", so the order is also the
// byte order of the `time` strings). Every event time lies in [start_date, start_date + days). The same
// options give byte-identical output on any machine (own PRNG, own log/exp, integer money, no locale).
// Invalid options (users < 1, days < 1, bad start_date, games < 0) produce no events and empty stats;
// RunGenerateCommand validates before calling.
GeneratorStats Generate(const GeneratorOptions& options, const std::function<void(std::string_view)>& emit);

// `analytics-service generate --users N --days D --seed S [--start YYYY-MM-DD] [--games G] [--out FILE]`
// (args are the words after `generate`). Writes NDJSON to FILE (or stdout) and a one-line summary to
// stderr. Returns 0 on success, 1 when the output cannot be written, 2 on bad usage (message on stderr).
int RunGenerateCommand(const std::vector<std::string>& args);

// The usage text of the generate command (for the lead's --help wiring).
std::string_view GenerateUsage();

}  // namespace analytics::gen
