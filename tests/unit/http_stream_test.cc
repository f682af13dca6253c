// Streamed response bodies (HttpResponse::stream) through a real HttpServer and the ApiPipeline on a free port:
// byte-exact multi-megabyte bodies with their Content-Length, read in bounded chunks; HEAD; keep-alive; a stream
// failing or ending early closes the connection; shutdown in the middle of a download.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "api/api_pipeline.h"
#include "api/http_server.h"
#include "api/router.h"
#include "auth/jwt_verifier.h"
#include "obs/metrics.h"
#include "support/http_client.h"

namespace analytics::api {
namespace {

using testing::ConnectRaw;
using testing::HttpClient;
using testing::SendAll;

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string out(size, '\0');
  for (size_t byte_idx = 0; byte_idx < size; ++byte_idx) out[byte_idx] = static_cast<char>(random() & 0xff);
  return out;
}

struct StreamStats {
  std::atomic<int> reads{0};
  std::atomic<size_t> max_capacity{0};
  std::atomic<int> destroyed{0};
};

// Serves `bytes` while announcing `announced` bytes; fails (error or early end) once `fail_at` bytes were read.
// Reads return uneven amounts, sometimes less than asked, as a network-backed stream would.
class TestStream final : public BodyStream {
 public:
  TestStream(std::shared_ptr<const std::string> bytes, uint64_t announced, uint64_t fail_at, bool fail_with_error,
             std::shared_ptr<StreamStats> stats)
      : bytes_(std::move(bytes)),
        announced_(announced),
        fail_at_(fail_at),
        fail_with_error_(fail_with_error),
        stats_(std::move(stats)) {}
  ~TestStream() override { ++stats_->destroyed; }

  common::Result<size_t> Read(char* out, size_t capacity) override {
    const int read_idx = ++stats_->reads;
    size_t seen = stats_->max_capacity.load();
    while (capacity > seen && !stats_->max_capacity.compare_exchange_weak(seen, capacity)) {
    }
    if (offset_ >= fail_at_) {
      if (fail_with_error_) return common::Status::Unavailable("the disk went away");
      return size_t{0};
    }
    size_t take = std::min<uint64_t>({capacity, bytes_->size() - offset_, fail_at_ - offset_});
    if (read_idx % 3 == 0 && take > 1) take = take / 2 + 1;
    std::memcpy(out, bytes_->data() + offset_, take);
    offset_ += take;
    return take;
  }
  uint64_t size() const override { return announced_; }

 private:
  std::shared_ptr<const std::string> bytes_;
  uint64_t announced_;
  uint64_t fail_at_;
  bool fail_with_error_;
  std::shared_ptr<StreamStats> stats_;
  uint64_t offset_ = 0;
};

// A response head and body read off a raw socket.
struct RawResponse {
  std::string head;
  std::string body;
  uint64_t content_length = 0;
  bool closed = false;  // the server closed the connection
};

// Reads one response from `fd`: the head, then Content-Length body bytes (none for HEAD) or until the server
// closes. `pending` carries bytes read past the response into the next call.
RawResponse ReadResponse(int fd, bool head_request, std::string& pending, int timeout_ms = 10000) {
  RawResponse response;
  std::string data = std::move(pending);
  pending.clear();
  auto fill = [&]() {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, timeout_ms) <= 0) return false;
    char buffer[65536];
    ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got <= 0) {
      response.closed = true;
      return false;
    }
    data.append(buffer, static_cast<size_t>(got));
    return true;
  };
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return response;
  }
  response.head = data.substr(0, head_end + 4);
  data.erase(0, head_end + 4);
  std::string lower = response.head;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t length_at = lower.find("content-length: ");
  if (length_at != std::string::npos) response.content_length = std::stoull(lower.substr(length_at + 16));
  const uint64_t want = head_request ? 0 : response.content_length;
  while (data.size() < want) {
    if (!fill()) break;
  }
  const size_t body_bytes = static_cast<size_t>(std::min<uint64_t>(want, data.size()));
  response.body = data.substr(0, body_bytes);
  pending = data.substr(body_bytes);
  if (!response.closed && data.size() < want) {
    // Wait for the close (or the timeout) to tell a truncated body from a slow one.
    while (fill()) {
    }
  }
  return response;
}

// Waits up to two seconds for `counter` to reach `value` (the server lets go of a stream once its last write
// completed, which may be just after the client has every byte).
bool WaitFor(const std::atomic<int>& counter, int value) {
  for (int wait_idx = 0; wait_idx < 200 && counter.load() < value; ++wait_idx) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return counter.load() == value;
}

class HttpStreamTest : public ::testing::Test {
 protected:
  static constexpr size_t kBigBytes = 5 * 1024 * 1024 + 12'345;

  void SetUp() override { StartServer({}); }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  void StartServer(HttpServerOptions options) {
    big_ = std::make_shared<const std::string>(RandomBytes(kBigBytes, 42));
    stats_ = std::make_shared<StreamStats>();
    router_.Add(Route{.method = "GET",
                      .path = "/download/{kind}",
                      .authenticated = false,
                      .roles = {},
                      .summary = "a streamed test body",
                      .handler = [this](HttpRequest& request) { return Download(request.path_params.at("kind")); }});
    // The router has no implicit HEAD: the test declares it, to see what the server sends for HEAD.
    router_.Add(Route{.method = "HEAD",
                      .path = "/download/{kind}",
                      .authenticated = false,
                      .roles = {},
                      .summary = "the head of a streamed test body",
                      .handler = [this](HttpRequest& request) { return Download(request.path_params.at("kind")); }});
    router_.Add(Route{.method = "HEAD",
                      .path = "/small",
                      .authenticated = false,
                      .roles = {},
                      .summary = "the head of a plain body",
                      .handler = [](HttpRequest&) { return HttpResponse::Text(200, "text/plain", "small body"); }});
    router_.Add(Route{.method = "GET",
                      .path = "/small",
                      .authenticated = false,
                      .roles = {},
                      .summary = "a plain body",
                      .handler = [](HttpRequest&) { return HttpResponse::Text(200, "text/plain", "small body"); }});
    auto verifier = auth::JwtVerifier::Create({.hs256_secret = "test-secret"});
    ASSERT_TRUE(verifier.ok()) << verifier.status().ToString();
    verifier_ = std::move(verifier).value();
    metrics_ = std::make_unique<obs::HttpMetrics>(registry_);
    pipeline_ = std::make_unique<ApiPipeline>(router_, *verifier_, *metrics_);
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = std::make_unique<HttpServer>(options, [this](HttpRequest& request) { return pipeline_->Handle(request); });
    auto started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
  }

  HttpResponse Download(const std::string& kind) {
    HttpResponse response;
    response.content_type = "application/octet-stream";
    response.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + kind + ".bin\"");
    const uint64_t size = big_->size();
    if (kind == "big") {
      response.stream = std::make_shared<TestStream>(big_, size, size, true, stats_);
    } else if (kind == "huge") {  // more than socket buffers hold, for the shutdown test
      auto huge = std::make_shared<const std::string>(std::string(64 << 20, 'h'));
      response.stream = std::make_shared<TestStream>(huge, huge->size(), huge->size(), true, stats_);
    } else if (kind == "empty") {
      response.stream = std::make_shared<TestStream>(big_, 0, 0, true, stats_);
    } else if (kind == "error") {
      response.stream = std::make_shared<TestStream>(big_, size, 1024 * 1024, true, stats_);
    } else if (kind == "short") {
      response.stream = std::make_shared<TestStream>(big_, size, 1024 * 1024 + 7, false, stats_);
    } else {
      response.status = 404;
    }
    return response;
  }

  std::shared_ptr<const std::string> big_;
  std::shared_ptr<StreamStats> stats_;
  Router router_;
  std::unique_ptr<auth::JwtVerifier> verifier_;
  obs::MetricsRegistry registry_;
  std::unique_ptr<obs::HttpMetrics> metrics_;
  std::unique_ptr<ApiPipeline> pipeline_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpStreamTest, MultiMegabyteBodyArrivesExactlyWithItsLength) {
  HttpClient client(server_->port());
  auto response = client.Get("/download/big");
  ASSERT_EQ(response.status, 200) << response.body.substr(0, 200);
  EXPECT_EQ(response.Header("content-length"), std::to_string(kBigBytes));
  EXPECT_EQ(response.Header("content-type"), "application/octet-stream");
  EXPECT_EQ(response.Header("content-disposition"), "attachment; filename=\"big.bin\"");
  EXPECT_FALSE(response.Header("x-request-id").empty());  // the pipeline's headers go out with a stream too
  EXPECT_EQ(response.Header("transfer-encoding"), "");
  ASSERT_EQ(response.body.size(), kBigBytes);
  EXPECT_TRUE(response.body == *big_);
  // Read in bounded chunks, never the whole body at once.
  EXPECT_GT(stats_->reads.load(), 80);
  EXPECT_LE(stats_->max_capacity.load(), 64u * 1024);
  EXPECT_TRUE(WaitFor(stats_->destroyed, 1));
}

TEST_F(HttpStreamTest, ConnectionStaysOpenAfterAStream) {
  HttpClient client(server_->port());
  for (int round = 0; round < 3; ++round) {
    auto streamed = client.Get("/download/big");
    ASSERT_EQ(streamed.status, 200);
    EXPECT_TRUE(streamed.body == *big_);
    auto plain = client.Get("/small");
    EXPECT_EQ(plain.status, 200);
    EXPECT_EQ(plain.body, "small body");
    EXPECT_TRUE(plain.connection_reused);
  }
  EXPECT_EQ(client.connections_opened(), 1);
}

TEST_F(HttpStreamTest, EmptyStreamSendsZeroLength) {
  HttpClient client(server_->port());
  auto response = client.Get("/download/empty");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("content-length"), "0");
  EXPECT_EQ(response.body, "");
  auto next = client.Get("/small");
  EXPECT_EQ(next.body, "small body");
  EXPECT_TRUE(next.connection_reused);
}

TEST_F(HttpStreamTest, ParallelDownloadsAreEachExact) {
  std::vector<std::thread> threads;
  std::atomic<int> exact{0};
  for (int client_idx = 0; client_idx < 4; ++client_idx) {
    threads.emplace_back([&] {
      HttpClient client(server_->port());
      for (int round = 0; round < 2; ++round) {
        auto response = client.Get("/download/big");
        if (response.status == 200 && response.body == *big_) ++exact;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(exact.load(), 8);
}

TEST_F(HttpStreamTest, HeadSendsTheLengthButNoBodyAndKeepsTheConnection) {
  int fd = ConnectRaw(server_->port());
  ASSERT_GE(fd, 0);
  std::string pending;
  ASSERT_TRUE(SendAll(fd, "HEAD /download/big HTTP/1.1\r\nHost: test\r\n\r\n"));
  RawResponse head = ReadResponse(fd, /*head_request=*/true, pending);
  EXPECT_NE(head.head.find("HTTP/1.1 200"), std::string::npos) << head.head;
  EXPECT_EQ(head.content_length, kBigBytes) << head.head;
  EXPECT_FALSE(head.closed);
  // A plain body answered to HEAD: its length, not its bytes.
  ASSERT_TRUE(SendAll(fd, "HEAD /small HTTP/1.1\r\nHost: test\r\n\r\n"));
  RawResponse small_head = ReadResponse(fd, true, pending);
  EXPECT_EQ(small_head.content_length, std::string("small body").size()) << small_head.head;
  // An error answered to HEAD: no envelope follows its head either.
  ASSERT_TRUE(SendAll(fd, "HEAD /nowhere HTTP/1.1\r\nHost: test\r\n\r\n"));
  RawResponse missing_head = ReadResponse(fd, true, pending);
  EXPECT_NE(missing_head.head.find("HTTP/1.1 404"), std::string::npos) << missing_head.head;
  EXPECT_GT(missing_head.content_length, 0u);
  // Had a body followed any head, it would be parsed as the next response's start here.
  ASSERT_TRUE(SendAll(fd, "GET /small HTTP/1.1\r\nHost: test\r\n\r\n"));
  RawResponse get = ReadResponse(fd, false, pending);
  EXPECT_NE(get.head.find("HTTP/1.1 200"), std::string::npos) << get.head;
  EXPECT_EQ(get.body, "small body");
  EXPECT_TRUE(pending.empty());
  ::close(fd);
  EXPECT_EQ(stats_->reads.load(), 0);  // HEAD never reads the stream
  EXPECT_TRUE(WaitFor(stats_->destroyed, 1));
}

class HttpStreamFailureTest : public HttpStreamTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(HttpStreamFailureTest, FailingStreamClosesTheConnection) {
  int fd = ConnectRaw(server_->port());
  ASSERT_GE(fd, 0);
  std::string pending;
  ASSERT_TRUE(SendAll(fd, "GET /download/" + GetParam() + " HTTP/1.1\r\nHost: test\r\n\r\n"));
  const auto start = std::chrono::steady_clock::now();
  RawResponse response = ReadResponse(fd, false, pending);
  const auto waited = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_NE(response.head.find("HTTP/1.1 200"), std::string::npos) << response.head;
  EXPECT_EQ(response.content_length, kBigBytes);
  EXPECT_TRUE(response.closed);
  EXPECT_LT(waited, std::chrono::seconds(5));  // closed by the server, not a timeout
  EXPECT_GE(response.body.size(), 1024u * 1024 - 64 * 1024);
  EXPECT_LT(response.body.size(), kBigBytes);
  EXPECT_TRUE(big_->compare(0, response.body.size(), response.body) == 0);

  // The client sees an error, not a short body taken for the whole one; a new connection works.
  HttpClient client(server_->port());
  EXPECT_THROW(client.Get("/download/" + GetParam()), std::runtime_error);
  HttpClient fresh(server_->port());
  auto next = fresh.Get("/download/big");
  EXPECT_EQ(next.status, 200);
  EXPECT_TRUE(next.body == *big_);
  // Every stream was released, the failed ones included.
  EXPECT_TRUE(WaitFor(stats_->destroyed, 3));
}

INSTANTIATE_TEST_SUITE_P(ErrorAndEarlyEnd, HttpStreamFailureTest, ::testing::Values("error", "short"));

class HttpStreamShutdownTest : public HttpStreamTest {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.shutdown_grace_seconds = 1;
    StartServer(options);
  }
};

TEST_F(HttpStreamShutdownTest, ShutdownDuringADownloadThatStalls) {
  // The client asks for 64 MiB and reads nothing: the server's writes block on a full socket buffer.
  int fd = ConnectRaw(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /download/huge HTTP/1.1\r\nHost: test\r\n\r\n"));
  for (int wait_idx = 0; wait_idx < 200 && stats_->reads.load() < 5; ++wait_idx) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(stats_->reads.load(), 5);
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  server_.reset();
  EXPECT_EQ(stats_->destroyed.load(), 1);
  ::close(fd);
}

}  // namespace
}  // namespace analytics::api
