// `analytics-service generate`: argument parsing, buffered NDJSON output, the summary line.
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "gen/calendar.h"
#include "gen/generator.h"

namespace analytics::gen {
namespace {

constexpr char kUsage[] =
    R"(Usage: analytics-service generate --users N --days D --seed S [--start YYYY-MM-DD] [--games G] [--out FILE]
  Writes a deterministic synthetic event stream (CloudEvents JSON, one per line, in time order) for a game
  store: N accounts over D days from --start (UTC, default 2024-01-01). The same arguments give
  byte-identical output. --games: catalog size (default max(20, N/500)). --out: file (default stdout).
  A summary (events, users, speed, bytes) goes to stderr. Model and effect sizes: docs/generator.md.
)";

template <typename T>
std::optional<T> ParseNumber(const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  auto result = std::from_chars(text.data(), end, value);
  if (text.empty() || result.ec != std::errc() || result.ptr != end) return std::nullopt;
  return value;
}

int Usage(const std::string& message) {
  std::cerr << "analytics-service generate: " << message << "\nRun 'analytics-service generate --help' for usage.\n";
  return 2;
}

// Buffered writer over a FILE*; remembers the first error.
class Output {
 public:
  explicit Output(std::FILE* file) : file_(file) { buffer_.reserve(kCapacity + 4096); }
  void Line(std::string_view line) {
    buffer_.append(line);
    buffer_.push_back('\n');
    bytes_ += line.size() + 1;
    if (buffer_.size() >= kCapacity) Drain();
  }
  bool Finish() {
    Drain();
    if (std::fflush(file_) != 0) ok_ = false;
    return ok_ && std::ferror(file_) == 0;
  }
  uint64_t bytes() const { return bytes_; }

 private:
  static constexpr size_t kCapacity = 1 << 20;
  void Drain() {
    if (!buffer_.empty() && ok_ && std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) ok_ = false;
    buffer_.clear();
  }
  std::FILE* file_;
  std::string buffer_;
  uint64_t bytes_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string_view GenerateUsage() { return kUsage; }

int RunGenerateCommand(const std::vector<std::string>& args) {
  GeneratorOptions options;
  std::optional<std::string> out_path;
  bool have_users = false;
  bool have_days = false;
  bool have_seed = false;
  for (size_t arg_idx = 0; arg_idx < args.size(); ++arg_idx) {
    const std::string& arg = args[arg_idx];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg_idx + 1 >= args.size()) {
      if (arg == "--users" || arg == "--days" || arg == "--seed" || arg == "--start" || arg == "--games" ||
          arg == "--out") {
        return Usage(arg + " needs a value");
      }
      return Usage("unknown option '" + arg + "'");
    }
    const std::string& value = args[++arg_idx];
    if (arg == "--users") {
      auto users = ParseNumber<int64_t>(value);
      if (!users || *users < 1 || *users > 100000000) {
        return Usage("--users must be an integer from 1 to 100000000, got '" + value + "'");
      }
      options.users = *users;
      have_users = true;
    } else if (arg == "--days") {
      auto days = ParseNumber<int>(value);
      if (!days || *days < 1 || *days > 3660) {
        return Usage("--days must be an integer from 1 to 3660, got '" + value + "'");
      }
      options.days = *days;
      have_days = true;
    } else if (arg == "--seed") {
      auto seed = ParseNumber<uint64_t>(value);
      if (!seed) return Usage("--seed must be an unsigned 64-bit integer, got '" + value + "'");
      options.seed = *seed;
      have_seed = true;
    } else if (arg == "--start") {
      if (!ParseIsoDate(value)) return Usage("--start must be a date YYYY-MM-DD (1970 or later), got '" + value + "'");
      options.start_date = value;
    } else if (arg == "--games") {
      auto games = ParseNumber<int>(value);
      if (!games || *games < 1 || *games > 1000000) {
        return Usage("--games must be an integer from 1 to 1000000, got '" + value + "'");
      }
      options.games = *games;
    } else if (arg == "--out") {
      if (value.empty()) return Usage("--out needs a file name");
      out_path = value;
    } else {
      return Usage("unknown option '" + arg + "'");
    }
  }
  if (!have_users) return Usage("--users is required");
  if (!have_days) return Usage("--days is required");
  if (!have_seed) return Usage("--seed is required");

  std::FILE* file = stdout;
  if (out_path) {
    file = std::fopen(out_path->c_str(), "wb");
    if (file == nullptr) {
      std::cerr << "analytics-service generate: cannot open '" << *out_path << "': " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  Output output(file);
  const auto started = std::chrono::steady_clock::now();
  const GeneratorStats stats = Generate(options, [&output](std::string_view line) { output.Line(line); });
  bool ok = output.Finish();
  if (out_path && std::fclose(file) != 0) ok = false;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!ok) {
    std::cerr << "analytics-service generate: writing " << (out_path ? "'" + *out_path + "'" : std::string("stdout"))
              << " failed: " << std::strerror(errno) << "\n";
    return 1;
  }
  char summary[256];
  std::snprintf(summary, sizeof(summary),
                "generated %llu events (%llu users, %d days, seed %llu) in %.2f s: %.0f events/s, %.1f MB, "
                "%.0f bytes/event\n",
                static_cast<unsigned long long>(stats.events), static_cast<unsigned long long>(stats.users),
                options.days,
                static_cast<unsigned long long>(options.seed), seconds,
                seconds > 0 ? static_cast<double>(stats.events) / seconds : 0.0,
                static_cast<double>(output.bytes()) / 1e6,
                stats.events > 0 ? static_cast<double>(output.bytes()) / static_cast<double>(stats.events) : 0.0);
  std::cerr << summary;
  return 0;
}

}  // namespace analytics::gen
