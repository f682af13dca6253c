// segment_write_bench: CPU time per event of embedded::WriteSegment, the memtable flush's cost. Reads an NDJSON
// file of CloudEvents, normalizes it once (untimed) with the real Normalizer and Pseudonymizer, keeps each batch
// in the memtable's form (row-format bytes and views of the events in them), groups the events
// by UTC day of their time as the store's flush does, then writes one segment per day into a temporary
// directory, --passes times, and reports the median pass as thread CPU nanoseconds per event (the machine is
// shared: wall time would measure the neighbours, and the fdatasync of each file is wait, not work).
// Per pass it also splits the time: `write` is WriteFileAtomically of the finished bytes alone, `compress` the
// zstd compression of the final column blocks alone (decompressed back from the file, outside the timed
// call); `encode` is the rest (sorting, planning parts, encoding, the trial compressions the writer makes to
// choose encodings). The split is measured apart from WriteSegment, so the parts need not add up exactly.
// --check reads every segment back (ReadSegmentEvents) and verifies it holds exactly the day's events (as a
// multiset, every field). --dump DIR keeps the files of the first pass in DIR (day.seg), so two builds can be
// compared byte for byte with cmp. Receive times are deterministic: batch k of --batch lines is received at
// --now + k * --batch-interval-ms.
// Usage: segment_write_bench --file F [--passes 5] [--zstd 3] [--batch 1000] [--now MILLIS]
//                            [--batch-interval-ms 10] [--check true] [--dump DIR]
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "events/normalizer.h"
#include "events/pseudonymizer.h"
#include "store/embedded/codec.h"
#include "store/embedded/file_util.h"
#include "store/embedded/segment.h"
#include "store/embedded/segment_format.h"

namespace {

namespace embedded = analytics::store::embedded;
namespace fs = std::filesystem;
using analytics::events::EventView;
using analytics::events::StoredEvent;

constexpr int64_t kDayMs = 86400000;

struct Options {
  std::string file;
  std::string dump_dir;
  int passes = 5;
  int zstd_level = 3;
  size_t batch_size = 1000;
  int64_t now_ms = 1767225600000;  // 2026-01-01: fixed, so dumps of two runs compare
  int64_t batch_interval_ms = 10;
  bool check = false;
};

int64_t ThreadCpuNanos() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

int64_t DayOf(int64_t unix_ms) { return unix_ms >= 0 ? unix_ms / kDayMs : (unix_ms - kDayMs + 1) / kDayMs; }

bool ParseOptions(int argc, char** argv, Options& options) {
  for (int arg_idx = 1; arg_idx + 1 < argc; arg_idx += 2) {
    const std::string flag = argv[arg_idx];
    const std::string value = argv[arg_idx + 1];
    if (flag == "--file") options.file = value;
    else if (flag == "--passes") options.passes = std::stoi(value);
    else if (flag == "--zstd") options.zstd_level = std::stoi(value);
    else if (flag == "--batch") options.batch_size = std::stoul(value);
    else if (flag == "--now") options.now_ms = std::stoll(value);
    else if (flag == "--batch-interval-ms") options.batch_interval_ms = std::stoll(value);
    else if (flag == "--check") options.check = value == "true";
    else if (flag == "--dump") options.dump_dir = value;
    else return false;
  }
  return !options.file.empty() && options.passes >= 1 && options.batch_size > 0;
}

// The memtable's form of the accepted events: per batch, its rows (EventRows: the row-format bytes and a view
// of each event in them), as the store's append keeps them.
using Batches = std::vector<analytics::events::EventRows>;

// Every accepted event of the file, received batch by batch as the intake would.
bool NormalizeFile(const Options& options, Batches& out) {
  std::ifstream input(options.file, std::ios::binary);
  if (!input) return false;
  auto pseudonymizer = analytics::events::Pseudonymizer::Create(std::string(32, 'k'));
  if (!pseudonymizer.ok()) {
    std::cerr << pseudonymizer.status().ToString() << "\n";
    return false;
  }
  const analytics::events::Normalizer normalizer({}, **pseudonymizer);
  std::string line, body;
  size_t in_batch = 0, batch_idx = 0;
  auto cut = [&] {
    const int64_t received_ms = options.now_ms + static_cast<int64_t>(batch_idx++) * options.batch_interval_ms;
    auto result = normalizer.Process(body, analytics::events::BodyFormat::kNdjson, received_ms);
    if (!result.events.empty()) out.push_back(std::move(result.events));
    body.clear();
    in_batch = 0;
  };
  while (std::getline(input, line)) {
    body += line;
    body += '\n';
    if (++in_batch == options.batch_size) cut();
  }
  if (!body.empty()) cut();
  return true;
}

// One event's every field as bytes (the WAL row format), for comparing events as a multiset.
std::string EventKey(const StoredEvent& event) {
  return std::string(analytics::events::EventRows(std::vector<StoredEvent>{event}).record());
}

bool SameEvents(const std::vector<const EventView*>& expected, const std::vector<StoredEvent>& actual) {
  if (expected.size() != actual.size()) return false;
  std::vector<std::string> expected_keys, actual_keys;
  for (const EventView* event : expected) expected_keys.push_back(EventKey(event->ToStored()));
  for (const StoredEvent& event : actual) actual_keys.push_back(EventKey(event));
  std::sort(expected_keys.begin(), expected_keys.end());
  std::sort(actual_keys.begin(), actual_keys.end());
  return expected_keys == actual_keys;
}

struct PassTimes {
  int64_t total_ns = 0;     // WriteSegment
  int64_t write_ns = 0;     // WriteFileAtomically of the same bytes
  int64_t compress_ns = 0;  // zstd of the final column blocks
  uint64_t bytes = 0;
};

// Compresses every column block of the segment at `path` again, timed, as the writer's final compression does.
bool TimeFinalCompression(const std::string& path, int zstd_level, int64_t& elapsed_ns) {
  auto file = embedded::v3::SegmentFile::Open(path);
  if (!file.ok()) return false;
  std::vector<std::string> blocks;
  for (size_t part_idx = 0; part_idx < (*file)->part_count(); ++part_idx) {
    if (part_idx > 0) {
      auto positions = (*file)->Positions(part_idx);
      if (!positions.ok()) return false;
      blocks.push_back(std::move(*positions));
    }
    for (size_t column_idx = 0; column_idx < (*file)->part(part_idx).columns.size(); ++column_idx) {
      auto column = (*file)->PartColumn(part_idx, column_idx);
      if (!column.ok()) return false;
      blocks.push_back(std::move(*column));
    }
  }
  ZSTD_CCtx* context = ZSTD_createCCtx();
  const int64_t started = ThreadCpuNanos();
  for (const std::string& block : blocks) {
    std::string out(ZSTD_compressBound(block.size()), '\0');
    ZSTD_compressCCtx(context, out.data(), out.size(), block.data(), block.size(), zstd_level);
  }
  elapsed_ns += ThreadCpuNanos() - started;
  ZSTD_freeCCtx(context);
  return true;
}

bool TimeRewrite(const std::string& path, int64_t& elapsed_ns) {
  std::ifstream input(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(input)), std::istreambuf_iterator<char>());
  const int64_t started = ThreadCpuNanos();
  const bool ok = embedded::WriteFileAtomically(path, bytes).ok();
  elapsed_ns += ThreadCpuNanos() - started;
  return ok;
}

bool CheckSegment(const std::string& path, const std::vector<const EventView*>& expected) {
  std::vector<StoredEvent> actual;
  const auto status = embedded::ReadSegmentEvents(path, actual);
  if (!status.ok()) {
    std::cerr << status.ToString() << "\n";
    return false;
  }
  if (!SameEvents(expected, actual)) {
    std::cerr << "segment " << path << " does not hold its day's events\n";
    return false;
  }
  return true;
}

// Writes every day's segment into `dir`; false on any error or failed check.
bool RunPass(const Options& options, const std::map<int64_t, std::vector<const EventView*>>& by_day,
             const std::string& dir, bool check, PassTimes& times) {
  for (const auto& [day, rows] : by_day) {
    const std::string path = dir + "/" + std::to_string(day) + ".seg";
    std::vector<const EventView*> input = rows;  // WriteSegment sorts its own copy, as the flush hands it over
    const int64_t started = ThreadCpuNanos();
    auto info = embedded::WriteSegment(path, std::move(input), options.zstd_level);
    times.total_ns += ThreadCpuNanos() - started;
    if (!info.ok()) {
      std::cerr << info.status().ToString() << "\n";
      return false;
    }
    times.bytes += info->file_bytes;
    if (!TimeRewrite(path, times.write_ns) || !TimeFinalCompression(path, options.zstd_level, times.compress_ns)) {
      std::cerr << "cannot time the phases of " << path << "\n";
      return false;
    }
    if (check && !CheckSegment(path, rows)) return false;
  }
  return true;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void PrintSeries(const char* name, const std::vector<double>& values) {
  std::printf(",\"%s\":[", name);
  for (size_t value_idx = 0; value_idx < values.size(); ++value_idx) {
    std::printf("%s%.1f", value_idx > 0 ? "," : "", values[value_idx]);
  }
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, options)) {
    std::cerr << "usage: segment_write_bench --file F [--passes 5] [--zstd 3] [--batch 1000] [--now MILLIS]"
                 " [--batch-interval-ms 10] [--check true] [--dump DIR]\n";
    return 2;
  }
  Batches batches;
  if (!NormalizeFile(options, batches) || batches.empty()) {
    std::cerr << "no events from " << options.file << "\n";
    return 1;
  }
  std::map<int64_t, std::vector<const EventView*>> by_day;
  size_t event_count = 0;
  for (const auto& rows : batches) {
    event_count += rows.size();
    for (const EventView& event : rows) by_day[DayOf(event.time_ms)].push_back(&event);
  }

  const std::string dir = fs::temp_directory_path() / ("segment_write_bench." + std::to_string(::getpid()));
  fs::create_directories(dir);
  if (!options.dump_dir.empty()) fs::create_directories(options.dump_dir);
  std::vector<double> total, encode, compress, write;
  uint64_t bytes = 0;
  bool ok = true;
  for (int pass_idx = 0; ok && pass_idx < options.passes; ++pass_idx) {
    const bool dumping = pass_idx == 0 && !options.dump_dir.empty();
    PassTimes times;
    ok = RunPass(options, by_day, dumping ? options.dump_dir : dir, options.check && pass_idx == 0, times);
    const auto per_event = [&](int64_t nanos) { return static_cast<double>(nanos) / static_cast<double>(event_count); };
    total.push_back(per_event(times.total_ns));
    write.push_back(per_event(times.write_ns));
    compress.push_back(per_event(times.compress_ns));
    encode.push_back(per_event(times.total_ns - times.write_ns - times.compress_ns));
    bytes = times.bytes;
  }
  fs::remove_all(dir);
  if (!ok) return 1;
  std::printf("{\"events\":%zu,\"segments\":%zu,\"bytes_per_event\":%.2f,\"median_ns_per_event\":%.1f,"
              "\"median_encode_ns\":%.1f,\"median_compress_ns\":%.1f,\"median_write_ns\":%.1f",
              event_count, by_day.size(), static_cast<double>(bytes) / static_cast<double>(event_count),
              Median(total), Median(encode), Median(compress), Median(write));
  if (options.check) std::printf(",\"check\":\"ok\"");
  PrintSeries("passes_ns_per_event", total);
  std::printf("}\n");
  return 0;
}
