// kafka_produce: the client side of bench/kafka (Kafka intake benchmark), on librdkafka's C API.
//
//   kafka_produce produce --brokers B --topic T --file F [--partitions 4] [--linger-ms 20] [--key subject|none]
//       Creates T with that many partitions (replication factor 1; an existing topic is kept as it is), produces
//       every non-empty line of the NDJSON file F as one structured-mode CloudEvents message (value = the line,
//       header content-type: application/cloudevents+json; charset=utf-8, key = the event's `subject` when it has
//       one, else no key), acks=all, lz4, and waits for every delivery report. Prints one JSON object: messages,
//       bytes, seconds (first produce call to the last acknowledgement), messages_per_second, failed,
//       cpu_seconds (this process).
//
//   kafka_produce watch --port P --pid PID --expect N [--started-at EPOCH_S] [--interval-ms 100]
//                       [--broker-pid PID] [--stall-s 60] [--timeout-s 3600]
//       Polls the service's GET /metrics every interval (one keep-alive connection, retried until the service
//       listens) until analytics_kafka_messages_total accepted + duplicate + dead_lettered reaches N. Prints one
//       JSON object: when the service first answered, when a count > 0 was first seen, when N was
//       reached (seconds since --started-at, the wall-clock time the caller launched the service), the rates
//       from the launch and from the first count, the service's CPU (/proc/PID/stat utime + stime) at those
//       moments, the broker's CPU over the same interval, and a per-second timeline of the count. Gives up with
//       "complete": false when the count stops moving for --stall-s seconds (a dropped message, e.g. an event
//       of an erased user, is counted in no outcome) or the service exits.
//
//   kafka_produce latency --brokers B --topic T --file F --port P --token TOKEN [--partitions 4] [--rate 20000]
//                         [--probes 200] [--interval-ms 50] [--poll-ms 3] [--warmup-s 3] [--timeout-s 30]
//                         [--linger-ms 5]
//       End-to-end latency from produce to queryable. A background thread produces the file's lines to T at
//       --rate messages/s (looping over the file; from the second pass on each id's first 8 hex digits are
//       replaced by the pass number, so the events are new, not duplicates). After --warmup-s and one warm-up
//       probe, --probes probes run one at a time, at most one per --interval-ms: a page-view event (the file's
//       first one with a subject, as a template) with a fresh UUID id, a unique subject and time = now is
//       produced on the same producer, and GET /api/v1/analytics/events?type=..&user_id=<subject>&from=<time>&
//       to=<time+1ms> (the token must be platform_admin's) is polled every --poll-ms until the answer holds the
//       id. Latency = produce call to the answer that holds it; also reported: produce call to the broker's
//       acknowledgement. Prints one JSON object.
//
//   kafka_produce create --brokers B --topic T [--partitions 4]
//       Only creates the topic (as produce does) and returns once every partition has a leader.
//
//   kafka_produce consume --brokers B --topic T --expect N [--batch 20000] [--hold-ms 0] [--commit 1|0]
//                         [--group G] [--properties name=value,...] [--poll-timeout-ms 100] [--timeout-s 300]
//       The ceiling without intake: a bare consumer configured like the service's drains the topic (a fresh group,
//       one poll per message, messages held in batches of --batch, a synchronous commit per batch). Prints
//       messages/s from the first message to the last, and the time spent in poll and in commits. --hold-ms
//       sleeps per batch in place of intake's work, --properties adds librdkafka properties: together they show
//       how librdkafka's prefetch limits pace a consumer that is slower than the broker (bench/README.md).
//
// Errors go to stderr; the exit status is 0 only when everything was delivered / seen.
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr char kContentType[] = "application/cloudevents+json; charset=utf-8";
constexpr char kProbeType[] = "com.platform.store.page.viewed.v1";

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "kafka_produce: " << message << std::endl;
  std::exit(1);
}

// --- arguments -------------------------------------------------------------------------------------------------

struct Args {
  std::map<std::string, std::string> values;
  std::string Get(const std::string& name, const std::string& fallback = {}) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
  std::string Required(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end() || it->second.empty()) Die("--" + name + " is required");
    return it->second;
  }
  double Number(const std::string& name, double fallback) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : std::stod(it->second);
  }
};

Args ParseArgs(int argc, char** argv, int first) {
  Args args;
  for (int i = first; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag.rfind("--", 0) != 0 || i + 1 >= argc) Die("bad argument '" + flag + "' (expected --name value)");
    args.values[flag.substr(2)] = argv[++i];
  }
  return args;
}

// --- small helpers ---------------------------------------------------------------------------------------------

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// utime + stime of a process (seconds), -1 when it is gone.
double PidCpuSeconds(long pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));  // field 3 (state) onwards
  std::string field;
  double utime = 0, stime = 0;
  for (int index = 3; index <= 15 && (fields >> field); ++index) {
    if (index == 14) utime = std::stod(field);
    if (index == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// False when the process is gone or a zombie (exited, not yet reaped by its parent).
bool PidAlive(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' && stat[close + 2] != 'X';
}

// A /proc/PID/status value in kB (VmHWM, VmRSS), -1 when absent.
long PidStatusKb(long pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

double EpochSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Rfc3339Millis(int64_t epoch_ms) {
  const time_t seconds = static_cast<time_t>(epoch_ms / 1000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char text[96];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(epoch_ms % 1000));
  return text;
}

double Percentile(std::vector<double> values, double p) {  // nearest rank
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// The whole file in memory and its non-empty lines (views into it).
struct Lines {
  std::string text;
  std::vector<std::string_view> lines;
};

Lines ReadLines(const std::string& path) {
  Lines out;
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  out.text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::string_view all(out.text);
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\n', start);
    if (end == std::string_view::npos) end = all.size();
    if (end > start) out.lines.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  if (out.lines.empty()) Die(path + " holds no lines");
  return out;
}

// The top-level "subject" of a generated event (the generator writes the attributes before "data"), or empty.
std::string_view SubjectOf(std::string_view line) {
  constexpr std::string_view kKey = "\"subject\":\"";
  const size_t data = line.find("\"data\":");
  const size_t at = line.find(kKey);
  if (at == std::string_view::npos || (data != std::string_view::npos && at > data)) return {};
  const size_t begin = at + kKey.size();
  const size_t end = line.find('"', begin);
  if (end == std::string_view::npos) return {};
  return line.substr(begin, end - begin);
}

// --- HTTP (one keep-alive connection, GET only) ----------------------------------------------------------------

class HttpGet {
 public:
  explicit HttpGet(int port) : port_(port) {}
  ~HttpGet() { Close(); }

  // Status and body; status 0 when the service cannot be reached.
  std::pair<int, std::string> Get(const std::string& target, const std::string& token = {}) {
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
    request += "\r\n";
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool reused = fd_ >= 0;
      if (!reused && !Connect()) return {0, {}};
      int status = 0;
      std::string body;
      if (SendAll(request) && Read(status, body)) return {status, std::move(body)};
      Close();
      if (!reused) break;
    }
    return {0, {}};
  }

 private:
  bool Connect() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      Close();
      return false;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    buffer_.clear();
    return true;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool SendAll(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  bool Fill() {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }
  bool Read(int& status, std::string& body) {
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    std::string head = buffer_.substr(0, head_end);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head.size() < 12 || head.compare(0, 5, "http/") != 0) return false;
    status = std::atoi(head.c_str() + 9);
    const bool close = head.find("\r\nconnection: close") != std::string::npos;
    size_t position = head_end + 4;
    if (head.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
      for (;;) {
        size_t line_end;
        while ((line_end = buffer_.find("\r\n", position)) == std::string::npos) {
          if (!Fill()) return false;
        }
        const size_t size = std::strtoull(buffer_.c_str() + position, nullptr, 16);
        position = line_end + 2;
        while (buffer_.size() < position + size + 2) {
          if (!Fill()) return false;
        }
        body.append(buffer_, position, size);
        position += size + 2;
        if (size == 0) break;
      }
    } else {
      size_t length = 0;
      if (const size_t at = head.find("\r\ncontent-length:"); at != std::string::npos) {
        length = std::strtoull(head.c_str() + at + 17, nullptr, 10);
      }
      while (buffer_.size() < position + length) {
        if (!Fill()) return false;
      }
      body = buffer_.substr(position, length);
      position += length;
    }
    buffer_.erase(0, position);
    if (close) Close();
    return true;
  }

  int port_;
  int fd_ = -1;
  std::string buffer_;
};

// --- Kafka -----------------------------------------------------------------------------------------------------

struct DeliveryState {
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<bool> error_logged{false};
};

// A probe's delivery report: when the broker acknowledged it (steady clock, ns), 0 until then, -1 on failure.
struct ProbeAck {
  std::atomic<int64_t> at_ns{0};
};

void OnDelivery(rd_kafka_t* /*handle*/, const rd_kafka_message_t* message, void* opaque) {
  auto* state = static_cast<DeliveryState*>(opaque);
  auto* probe = static_cast<ProbeAck*>(message->_private);
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++state->failed;
    if (!state->error_logged.exchange(true)) {
      std::cerr << "kafka_produce: delivery failed: " << rd_kafka_err2str(message->err) << std::endl;
    }
    if (probe) probe->at_ns = -1;
    return;
  }
  ++state->delivered;
  if (probe) probe->at_ns = Clock::now().time_since_epoch().count();
}

rd_kafka_t* MakeProducer(const std::string& brokers, const std::string& linger_ms, DeliveryState& state) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", brokers},
      {"client.id", "bench-kafka-produce"},
      {"acks", "all"},
      {"compression.type", "lz4"},
      {"linger.ms", linger_ms},
      {"batch.num.messages", "10000"},
      {"queue.buffering.max.messages", "1000000"},
      {"queue.buffering.max.kbytes", "1048576"},
      {"message.timeout.ms", "300000"},
  };
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof(error)) != RD_KAFKA_CONF_OK) {
      Die("librdkafka property " + name + ": " + error);
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, OnDelivery);
  rd_kafka_conf_set_opaque(conf, &state);
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
  if (handle == nullptr) Die(std::string("producer: ") + error);
  return handle;
}

// Creates the topic (an existing one is fine) and waits until every partition has a leader.
void CreateTopic(rd_kafka_t* handle, const std::string& topic, int partitions) {
  char error[512];
  rd_kafka_NewTopic_t* new_topic = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, error, sizeof(error));
  if (new_topic == nullptr) Die("topic " + topic + ": " + error);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(handle);
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(options, 30000, error, sizeof(error));
  rd_kafka_CreateTopics(handle, &new_topic, 1, options, queue);
  rd_kafka_NewTopic_destroy(new_topic);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 60000);
  if (event == nullptr) Die("no answer to CreateTopics within 60 s");
  if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(std::string("CreateTopics: ") + rd_kafka_event_error_string(event));
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      const char* text = rd_kafka_topic_result_error_string(results[i]);
      Die("creating " + topic + ": " + (text ? text : rd_kafka_err2str(err)));
    }
  }
  rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_topic_t* handle_topic = rd_kafka_topic_new(handle, topic.c_str(), nullptr);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (;;) {
    const rd_kafka_metadata_t* metadata = nullptr;
    bool ready = false;
    if (rd_kafka_metadata(handle, 0, handle_topic, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int t = 0; t < metadata->topic_cnt; ++t) {
        const auto& info = metadata->topics[t];
        if (topic != info.topic || info.err != RD_KAFKA_RESP_ERR_NO_ERROR || info.partition_cnt < 1) continue;
        ready = true;
        for (int p = 0; p < info.partition_cnt; ++p) ready = ready && info.partitions[p].leader >= 0;
      }
      rd_kafka_metadata_destroy(metadata);
    }
    if (ready) break;
    if (Clock::now() > deadline) Die("topic " + topic + " has no leader for every partition after 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rd_kafka_topic_destroy(handle_topic);
}

rd_kafka_headers_t* StructuredModeHeaders() {
  rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
  rd_kafka_header_add(headers, "content-type", -1, kContentType, -1);
  return headers;
}

// Produces one message, waiting while the local queue is full. `copy`: librdkafka copies the value (else the
// value must stay valid until delivered). Returns false on a non-retriable error.
bool Produce(rd_kafka_t* handle, const std::string& topic, std::string_view value, std::string_view key, bool copy,
             void* opaque, bool serve_reports) {
  for (;;) {
    rd_kafka_headers_t* headers = StructuredModeHeaders();
    const rd_kafka_resp_err_t err = rd_kafka_producev(
        handle, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(copy ? RD_KAFKA_MSG_F_COPY : 0),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_KEY(key.empty() ? nullptr : key.data(), key.size()), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return true;
    rd_kafka_headers_destroy(headers);  // not taken over on failure
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      std::cerr << "kafka_produce: produce failed: " << rd_kafka_err2str(err) << std::endl;
      return false;
    }
    if (serve_reports) {
      rd_kafka_poll(handle, 10);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

// --- produce ---------------------------------------------------------------------------------------------------

int RunProduce(const Args& args) {
  const std::string brokers = args.Required("brokers");
  const std::string topic = args.Required("topic");
  const Lines input = ReadLines(args.Required("file"));
  const bool keyed = args.Get("key", "subject") == "subject";
  DeliveryState state;
  rd_kafka_t* handle = MakeProducer(brokers, args.Get("linger-ms", "20"), state);
  CreateTopic(handle, topic, static_cast<int>(args.Number("partitions", 4)));

  uint64_t bytes = 0, with_key = 0;
  bool ok = true;
  const double cpu_started = ProcessCpuSeconds();
  const auto started = Clock::now();
  for (size_t i = 0; i < input.lines.size() && ok; ++i) {
    const std::string_view line = input.lines[i];
    const std::string_view key = keyed ? SubjectOf(line) : std::string_view();
    with_key += key.empty() ? 0 : 1;
    bytes += line.size();
    ok = Produce(handle, topic, line, key, /*copy=*/false, nullptr, /*serve_reports=*/true);
    if ((i & 1023) == 0) rd_kafka_poll(handle, 0);
  }
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(handle, 600000);
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const double cpu = ProcessCpuSeconds() - cpu_started;
  const uint64_t messages = input.lines.size();
  json out = {{"topic", topic},
              {"messages", messages},
              {"keyed_messages", with_key},
              {"bytes", bytes},
              {"seconds", seconds},
              {"messages_per_second", static_cast<double>(messages) / seconds},
              {"mb_per_second", static_cast<double>(bytes) / 1e6 / seconds},
              {"delivered", state.delivered.load()},
              {"failed", state.failed.load()},
              {"cpu_seconds", cpu}};
  std::cout << out.dump() << std::endl;
  rd_kafka_destroy(handle);
  const bool complete = ok && flushed == RD_KAFKA_RESP_ERR_NO_ERROR && state.failed == 0 && state.delivered == messages;
  return complete ? 0 : 1;
}

// --- create ----------------------------------------------------------------------------------------------------

int RunCreate(const Args& args) {
  DeliveryState state;
  rd_kafka_t* handle = MakeProducer(args.Required("brokers"), "5", state);
  CreateTopic(handle, args.Required("topic"), static_cast<int>(args.Number("partitions", 4)));
  rd_kafka_destroy(handle);
  return 0;
}

// --- consume ---------------------------------------------------------------------------------------------------

// How fast a bare librdkafka consumer, configured like the service's (src/ingest/kafka/kafka_source.cc: a group
// member, no auto commit, 32 MiB prefetch, one rd_kafka_consumer_poll per message, messages held in batches of
// --batch and then released, a synchronous commit per batch), drains the topic: the ceiling of the client and
// the broker on this machine, without intake.
int RunConsume(const Args& args) {
  const std::string topic = args.Required("topic");
  const uint64_t expect = static_cast<uint64_t>(args.Number("expect", 0));
  const size_t batch_size = static_cast<size_t>(args.Number("batch", 20000));
  const bool commit = args.Get("commit", "1") == "1";
  const int poll_timeout_ms = static_cast<int>(args.Number("poll-timeout-ms", 100));
  const auto hold = std::chrono::microseconds(static_cast<int64_t>(args.Number("hold-ms", 0) * 1000));
  if (expect == 0) Die("consume needs --expect");
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char error[512];
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", args.Required("brokers")},
      {"client.id", "bench-kafka-consume"},
      {"group.id", args.Get("group", "bench-consume-" + std::to_string(::getpid()))},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"queued.max.messages.kbytes", "32768"},
      {"enable.partition.eof", "false"},
  };
  // --properties name=value,name=value: further librdkafka properties (e.g. max.partition.fetch.bytes).
  std::stringstream extra(args.Get("properties"));
  for (std::string item; std::getline(extra, item, ',');) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) Die("--properties: expected name=value, got '" + item + "'");
    settings.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof(error)) != RD_KAFKA_CONF_OK) {
      Die("librdkafka property " + name + ": " + error);
    }
  }
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof(error));
  if (handle == nullptr) Die(std::string("consumer: ") + error);
  rd_kafka_poll_set_consumer(handle);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (rd_kafka_subscribe(handle, topics) != RD_KAFKA_RESP_ERR_NO_ERROR) Die("subscribe failed");
  rd_kafka_topic_partition_list_destroy(topics);

  std::vector<rd_kafka_message_t*> held;
  uint64_t received = 0, batches = 0;
  double wait_seconds = 0, commit_seconds = 0;
  Clock::time_point first{}, last{};
  const double cpu_started = ProcessCpuSeconds();
  const auto deadline = Clock::now() + std::chrono::seconds(static_cast<int64_t>(args.Number("timeout-s", 300)));
  auto release = [&] {
    if (held.empty()) return;
    if (hold.count() > 0) std::this_thread::sleep_for(hold);  // stands in for intake's work on the batch
    if (commit) {
      const auto started = Clock::now();
      rd_kafka_commit_message(handle, held.back(), /*async=*/0);  // one partition's offset: enough for the cost
      commit_seconds += std::chrono::duration<double>(Clock::now() - started).count();
    }
    for (rd_kafka_message_t* message : held) rd_kafka_message_destroy(message);
    held.clear();
    ++batches;
  };
  while (received < expect && Clock::now() < deadline) {
    const auto started = Clock::now();
    rd_kafka_message_t* message = rd_kafka_consumer_poll(handle, poll_timeout_ms);
    if (received > 0) wait_seconds += std::chrono::duration<double>(Clock::now() - started).count();
    if (message == nullptr) continue;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_message_destroy(message);
      continue;
    }
    if (received == 0) first = Clock::now();
    ++received;
    last = Clock::now();
    held.push_back(message);
    if (held.size() >= batch_size) release();
  }
  release();
  const double seconds = std::chrono::duration<double>(last - first).count();
  json out = {{"topic", topic},
              {"messages", received},
              {"seconds_first_to_last", seconds},
              {"messages_per_second", seconds > 0 ? static_cast<double>(received) / seconds : 0.0},
              {"batches", batches},
              {"poll_seconds", wait_seconds},
              {"commit_seconds", commit_seconds},
              {"cpu_seconds", ProcessCpuSeconds() - cpu_started}};
  std::cout << out.dump() << std::endl;
  rd_kafka_consumer_close(handle);
  rd_kafka_destroy(handle);
  return received >= expect ? 0 : 1;
}

// --- watch -----------------------------------------------------------------------------------------------------

struct KafkaCounts {
  double accepted = 0, duplicate = 0, dead_lettered = 0, skipped = 0, lag = 0;
  bool seen = false;  // the metric family exists (the consumer started)
  double Processed() const { return accepted + duplicate + dead_lettered; }
};

KafkaCounts ParseMetrics(const std::string& text) {
  KafkaCounts counts;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const double value = std::strtod(line.c_str() + space + 1, nullptr);
    if (line.rfind("analytics_kafka_messages_total{", 0) == 0) {
      counts.seen = true;
      if (line.find("outcome=\"accepted\"") != std::string::npos) counts.accepted = value;
      if (line.find("outcome=\"duplicate\"") != std::string::npos) counts.duplicate = value;
      if (line.find("outcome=\"dead_lettered\"") != std::string::npos) counts.dead_lettered = value;
      if (line.find("outcome=\"skipped\"") != std::string::npos) counts.skipped = value;
    } else if (line.rfind("analytics_kafka_consumer_lag{", 0) == 0) {
      counts.lag += value;
    }
  }
  return counts;
}

int RunWatch(const Args& args) {
  const int port = static_cast<int>(args.Number("port", 0));
  const long pid = static_cast<long>(args.Number("pid", 0));
  const long broker_pid = static_cast<long>(args.Number("broker-pid", 0));
  const double expect = args.Number("expect", 0);
  const double started_at = args.Number("started-at", EpochSeconds());
  const auto interval = std::chrono::milliseconds(static_cast<int>(args.Number("interval-ms", 100)));
  const double stall_s = args.Number("stall-s", 60);
  const double timeout_s = args.Number("timeout-s", 3600);
  if (port == 0 || pid == 0 || expect <= 0) Die("watch needs --port, --pid and --expect");

  const double broker_cpu_start = PidCpuSeconds(broker_pid);
  HttpGet http(port);
  double healthy_at = -1, first_at = -1, done_at = -1, first_count = 0;
  double cpu_healthy = -1, cpu_first = -1, cpu_done = -1, broker_cpu_done = -1;
  double last_change_at = EpochSeconds(), last_processed = -1;
  KafkaCounts counts;
  json timeline = json::array();  // [seconds since launch, processed], about once a second
  double next_timeline = 0;
  std::string end_reason;
  auto next = Clock::now();
  for (;;) {
    next += interval;
    auto [status, body] = http.Get("/metrics");
    const double now = EpochSeconds();
    if (status == 200) {
      if (healthy_at < 0) {
        healthy_at = now;
        cpu_healthy = PidCpuSeconds(pid);
      }
      counts = ParseMetrics(body);
      const double processed = counts.Processed();
      if (processed > 0 && first_at < 0) {
        first_at = now;
        first_count = processed;
        cpu_first = PidCpuSeconds(pid);
      }
      if (processed != last_processed) {
        last_processed = processed;
        last_change_at = now;
      }
      if (now - started_at >= next_timeline) {
        timeline.push_back({std::round((now - started_at) * 100) / 100, processed});
        next_timeline = std::floor(now - started_at) + 1;
      }
      if (processed >= expect) {
        done_at = now;
        cpu_done = PidCpuSeconds(pid);
        broker_cpu_done = PidCpuSeconds(broker_pid);
        end_reason = "complete";
        break;
      }
      if (processed > 0 && now - last_change_at > stall_s) {
        end_reason = "stalled";
        break;
      }
    }
    if (!PidAlive(pid)) {
      end_reason = "service exited";
      break;
    }
    if (now - started_at > timeout_s) {
      end_reason = "timeout";
      break;
    }
    std::this_thread::sleep_until(next);
  }
  const double processed = counts.Processed();
  json out = {{"complete", end_reason == "complete"},
              {"end", end_reason},
              {"expect", expect},
              {"processed", processed},
              {"accepted", counts.accepted},
              {"duplicate", counts.duplicate},
              {"dead_lettered", counts.dead_lettered},
              {"skipped", counts.skipped},
              {"lag_at_end", counts.lag},
              {"healthy_seconds", healthy_at < 0 ? json(nullptr) : json(healthy_at - started_at)},
              {"first_count_seconds", first_at < 0 ? json(nullptr) : json(first_at - started_at)},
              {"first_count", first_count},
              {"timeline", timeline}};
  if (done_at > 0) {
    out["done_seconds"] = done_at - started_at;
    out["events_per_second_from_start"] = expect / (done_at - started_at);
    out["events_per_second_from_first"] =
        done_at > first_at ? (expect - first_count) / (done_at - first_at) : 0.0;
    out["server_cpu_seconds"] = cpu_done;
    out["server_cpu_seconds_at_healthy"] = cpu_healthy;
    out["server_cpu_seconds_at_first"] = cpu_first;
    // From the first answer to /metrics (start-up done, the consumer joining) to the last message processed.
    out["server_cpu_us_per_event"] = (cpu_done - cpu_healthy) / expect * 1e6;
    out["server_cpu_us_per_event_with_startup"] = cpu_done / expect * 1e6;
    if (broker_pid > 0) {
      out["broker_cpu_seconds"] = broker_cpu_done - broker_cpu_start;
      out["broker_cpu_us_per_event"] = (broker_cpu_done - broker_cpu_start) / expect * 1e6;
    }
  }
  out["vmhwm_kb"] = PidStatusKb(pid, "VmHWM");
  std::cout << out.dump() << std::endl;
  return end_reason == "complete" ? 0 : 1;
}

// --- latency ---------------------------------------------------------------------------------------------------

std::string RandomUuid(std::mt19937_64& random) {
  const uint64_t high = random(), low = random();
  char text[40];
  std::snprintf(text, sizeof(text), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(high >> 32),
                static_cast<unsigned>((high >> 16) & 0xffff), static_cast<unsigned>(high & 0xfff),
                static_cast<unsigned>(0x8000 | ((low >> 48) & 0x3fff)),
                static_cast<unsigned long long>(low & 0xffffffffffffULL));
  return text;
}

int RunLatency(const Args& args) {
  const std::string brokers = args.Required("brokers");
  const std::string topic = args.Required("topic");
  const std::string token = args.Required("token");
  const int port = static_cast<int>(args.Number("port", 0));
  const Lines input = ReadLines(args.Required("file"));
  const double rate = args.Number("rate", 20000);
  const int probes = static_cast<int>(args.Number("probes", 200));
  const auto interval = std::chrono::milliseconds(static_cast<int>(args.Number("interval-ms", 50)));
  const auto poll = std::chrono::microseconds(static_cast<int64_t>(args.Number("poll-ms", 3) * 1000));
  const double warmup_s = args.Number("warmup-s", 3);
  const auto probe_timeout = std::chrono::milliseconds(static_cast<int64_t>(args.Number("timeout-s", 30) * 1000));
  if (port == 0) Die("latency needs --port");

  // The probe template: the file's first page view with a subject.
  nlohmann::ordered_json probe_template;
  for (std::string_view line : input.lines) {
    if (line.find(kProbeType) == std::string_view::npos || SubjectOf(line).empty()) continue;
    probe_template = nlohmann::ordered_json::parse(line);
    if (probe_template.value("type", "") == kProbeType) break;
    probe_template = nullptr;
  }
  if (!probe_template.is_object()) Die(std::string("the file has no ") + kProbeType + " event with a subject");

  DeliveryState state;
  rd_kafka_t* handle = MakeProducer(brokers, args.Get("linger-ms", "5"), state);
  CreateTopic(handle, topic, static_cast<int>(args.Number("partitions", 4)));

  std::atomic<bool> stop{false}, stop_poller{false};
  std::thread poller([&] {
    while (!stop_poller) rd_kafka_poll(handle, 5);
  });
  // Background stream, paced in 2 ms steps.
  std::atomic<uint64_t> background_sent{0};
  std::atomic<bool> background_failed{false};
  const auto background_started = Clock::now();
  std::atomic<int64_t> background_stopped_ns{0};
  std::thread background([&] {
    uint64_t sent = 0;
    std::string rewritten;
    while (!stop && !background_failed) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - background_started).count();
      const uint64_t target = static_cast<uint64_t>(elapsed * rate);
      while (sent < target && !stop) {
        const size_t index = sent % input.lines.size();
        const uint64_t pass = sent / input.lines.size();
        std::string_view line = input.lines[index];
        bool copy = false;
        if (pass > 0) {
          const size_t at = line.find("\"id\":\"");
          if (at != std::string_view::npos && at + 6 + 8 <= line.size()) {
            rewritten.assign(line);
            char prefix[16];
            std::snprintf(prefix, sizeof(prefix), "%08llx", static_cast<unsigned long long>(pass & 0xffffffffULL));
            rewritten.replace(at + 6, 8, prefix, 8);
            line = rewritten;
            copy = true;
          }
        }
        if (!Produce(handle, topic, line, SubjectOf(line), copy, nullptr, /*serve_reports=*/false)) {
          background_failed = true;
          break;
        }
        ++sent;
        background_sent = sent;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    background_stopped_ns = (Clock::now() - background_started).count();
  });

  std::mt19937_64 random(std::random_device{}());
  const std::string run_tag = RandomUuid(random).substr(0, 8);
  HttpGet http(port);
  struct ProbeResult {
    double visible_ms = -1;  // -1: not seen within the timeout
    double ack_ms = -1;
    int polls = 0;
  };
  uint64_t http_errors = 0;
  std::deque<ProbeAck> acks;
  auto run_probe = [&](int number) {
    ProbeResult result;
    nlohmann::ordered_json event = probe_template;
    const std::string id = RandomUuid(random);
    const std::string subject = "bench-probe-" + run_tag + "-" + std::to_string(number);
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    const std::string time = Rfc3339Millis(now_ms);
    event["id"] = id;
    event["subject"] = subject;
    event["time"] = time;
    const std::string value = event.dump();
    const std::string target = std::string("/api/v1/analytics/events?type=") + kProbeType + "&user_id=" + subject +
                               "&from=" + time + "&to=" + Rfc3339Millis(now_ms + 1) + "&limit=10";
    ProbeAck& ack = acks.emplace_back();  // kept until the producer is gone: a late report may still come
    const auto sent = Clock::now();
    if (!Produce(handle, topic, value, subject, /*copy=*/true, &ack, /*serve_reports=*/false)) return result;
    const std::string needle = "\"" + id + "\"";
    auto next_poll = sent + poll;
    while (Clock::now() - sent < probe_timeout) {
      std::this_thread::sleep_until(next_poll);
      next_poll += poll;
      auto [status, body] = http.Get(target, token);
      ++result.polls;
      if (status != 200) {
        if (++http_errors <= 3) {
          std::cerr << "kafka_produce: probe query answered " << status << ": " << body << std::endl;
        }
        continue;
      }
      if (body.find(needle) != std::string::npos) {
        result.visible_ms = std::chrono::duration<double, std::milli>(Clock::now() - sent).count();
        break;
      }
      if (Clock::now() > next_poll) next_poll = Clock::now();  // a slow answer: poll again at once, no burst
    }
    const int64_t acked = ack.at_ns.load();
    if (acked > 0) result.ack_ms = static_cast<double>(acked - sent.time_since_epoch().count()) / 1e6;
    return result;
  };

  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(warmup_s * 1000)));
  // Warm-up probes (not counted) until one is seen: the consumer has joined and the query path works.
  ProbeResult warm;
  int warm_attempts = 0;
  while (warm.visible_ms < 0 && warm_attempts < 5 && !background_failed) {
    warm = run_probe(-1 - warm_attempts);
    ++warm_attempts;
  }
  if (warm.visible_ms < 0) {
    stop = true;
    background.join();
    stop_poller = true;
    poller.join();
    Die("no warm-up probe became visible (" + std::to_string(warm_attempts) + " attempts)");
  }
  const uint64_t sent_at_measure_start = background_sent.load();
  const auto measure_started = Clock::now();
  std::vector<ProbeResult> results;
  for (int number = 0; number < probes && !background_failed; ++number) {
    const auto probe_started = Clock::now();
    results.push_back(run_probe(number));
    std::this_thread::sleep_until(probe_started + interval);
  }
  const double measure_seconds = std::chrono::duration<double>(Clock::now() - measure_started).count();
  const uint64_t sent_in_measure = background_sent.load() - sent_at_measure_start;
  stop = true;
  background.join();
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(handle, 120000);
  stop_poller = true;
  poller.join();

  std::vector<double> visible, acked;
  uint64_t lost = 0, polls = 0;
  for (const ProbeResult& result : results) {
    polls += static_cast<uint64_t>(result.polls);
    if (result.visible_ms < 0) {
      ++lost;
    } else {
      visible.push_back(result.visible_ms);
    }
    if (result.ack_ms >= 0) acked.push_back(result.ack_ms);
  }
  const double background_seconds = static_cast<double>(background_stopped_ns.load()) / 1e9;
  json out = {{"topic", topic},
              {"probes", results.size()},
              {"seen", visible.size()},
              {"lost", lost},
              {"latency_ms_p50", Percentile(visible, 0.50)},
              {"latency_ms_p95", Percentile(visible, 0.95)},
              {"latency_ms_p99", Percentile(visible, 0.99)},
              {"latency_ms_max", visible.empty() ? 0.0 : *std::max_element(visible.begin(), visible.end())},
              {"latency_ms_min", visible.empty() ? 0.0 : *std::min_element(visible.begin(), visible.end())},
              {"ack_ms_p50", Percentile(acked, 0.50)},
              {"ack_ms_p99", Percentile(acked, 0.99)},
              {"polls_per_probe", results.empty() ? 0.0 : static_cast<double>(polls) / results.size()},
              {"poll_ms", static_cast<double>(poll.count()) / 1000},
              {"warmup_probe_ms", warm.visible_ms},
              {"background_target_rate", rate},
              {"background_rate_during_probes", static_cast<double>(sent_in_measure) / measure_seconds},
              {"background_messages", background_sent.load()},
              {"background_seconds", background_seconds},
              {"measure_seconds", measure_seconds},
              {"delivered", state.delivered.load()},
              {"failed_deliveries", state.failed.load()},
              {"http_errors", http_errors}};
  std::cout << out.dump() << std::endl;
  rd_kafka_destroy(handle);
  const bool ok = !background_failed && flushed == RD_KAFKA_RESP_ERR_NO_ERROR && state.failed == 0 && lost == 0;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage =
      "usage: kafka_produce produce --brokers B --topic T --file F [--partitions 4] [--linger-ms 20]\n"
      "                             [--key subject|none]\n"
      "       kafka_produce create --brokers B --topic T [--partitions 4]\n"
      "       kafka_produce consume --brokers B --topic T --expect N [--batch 20000] [--hold-ms 0] [--commit 1|0]\n"
      "                             [--group G] [--properties name=value,...] [--poll-timeout-ms 100]\n"
      "                             [--timeout-s 300]\n"
      "       kafka_produce watch --port P --pid PID --expect N [--started-at EPOCH_S] [--interval-ms 100]\n"
      "                           [--broker-pid PID] [--stall-s 60] [--timeout-s 3600]\n"
      "       kafka_produce latency --brokers B --topic T --file F --port P --token TOKEN [--partitions 4]\n"
      "                             [--rate 20000] [--probes 200] [--interval-ms 50] [--poll-ms 3] [--warmup-s 3]\n"
      "                             [--timeout-s 30] [--linger-ms 5]\n";
  if (argc < 2) {
    std::cerr << usage;
    return 2;
  }
  const std::string mode = argv[1];
  try {
    const Args args = ParseArgs(argc, argv, 2);
    if (mode == "produce") return RunProduce(args);
    if (mode == "create") return RunCreate(args);
    if (mode == "consume") return RunConsume(args);
    if (mode == "watch") return RunWatch(args);
    if (mode == "latency") return RunLatency(args);
  } catch (const std::exception& error) {
    Die(error.what());
  }
  std::cerr << usage;
  return 2;
}
