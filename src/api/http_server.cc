// Boost.Beast HTTP server.
//
// Responses with a BodyStream are sent with Beast's buffer_body and a serializer loop: the header (with
// Content-Length = stream->size()), then one chunk of at most kStreamChunkBytes at a time, each read on the
// handler pool (a Read may block on disk or network; the I/O threads never do) and written on the connection's
// strand before the next is read, so a download holds one chunk in memory whatever its size. A Read error or a
// stream ending early closes the connection; the client sees fewer bytes than Content-Length.
// Responses to HEAD carry the headers (Content-Length included) and no body; a stream is then never read.
#include "api/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "api/errors.h"
#include "common/ids.h"
#include "obs/logging.h"

namespace analytics::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr size_t kStreamChunkBytes = 64 * 1024;

// Status line and headers shared by every kind of response.
template <typename Body>
void SetHead(http::response<Body>& out, const HttpResponse& response, unsigned version, bool close) {
  out.version(version);
  out.result(static_cast<unsigned>(response.status));
  out.set(http::field::server, "analytics-service");
  out.set(http::field::content_type, response.content_type);
  for (const auto& [name, value] : response.headers) out.set(name, value);
  out.keep_alive(!close);
}

std::string RequestIdOf(const HttpResponse& response) {
  for (const auto& [name, value] : response.headers) {
    if (beast::iequals(name, "X-Request-Id")) return value;
  }
  return {};
}

// A response whose body is being read from a BodyStream. Not movable: the serializer points at the message.
struct StreamingResponse {
  StreamingResponse() : serializer(message) {}
  StreamingResponse(const StreamingResponse&) = delete;
  StreamingResponse& operator=(const StreamingResponse&) = delete;

  std::shared_ptr<BodyStream> body;
  http::response<http::buffer_body> message;
  http::response_serializer<http::buffer_body> serializer;
  std::vector<char> chunk;
  uint64_t size = 0;
  uint64_t sent = 0;  // bytes read from `body` and handed to the serializer
  bool close = false;
  std::string request_id;  // for the log line of a failed stream
};

}  // namespace

class Session;

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, RequestHandler handler, TransportErrorObserver observer)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        observer_(std::move(observer)),
        acceptor_(io_),
        handler_pool_(static_cast<size_t>(std::max(1, options_.handler_threads))) {}

  common::Status Start();
  void Shutdown();
  void Accept();

  void SessionStarted() {
    std::lock_guard lock(mu_);
    ++open_sessions_;
  }
  void SessionEnded() {
    std::lock_guard lock(mu_);
    --open_sessions_;
    cv_.notify_all();
  }

  HttpServerOptions options_;
  RequestHandler handler_;
  TransportErrorObserver observer_;
  // Declared before io_: sessions destroyed with io_'s pending handlers still report to them.
  std::mutex mu_;
  std::condition_variable cv_;
  int open_sessions_ = 0;                       // guarded by mu_
  std::list<std::weak_ptr<Session>> sessions_;  // guarded by mu_; pruned as sessions end
  asio::io_context io_;
  // Keeps io_.run() going while a request is on the handler pool and nothing else is pending (e.g. after the
  // acceptor closed during shutdown), so its response can still be written.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_guard_;
  tcp::acceptor acceptor_;
  asio::thread_pool handler_pool_;
  std::vector<std::thread> io_threads_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  int bound_port_ = 0;
  bool stopped_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server) : stream_(std::move(socket)), server_(server) {
    buffer_.reserve(64 * 1024);
    server_.SessionStarted();
    beast::error_code ec;
    auto endpoint = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }
  ~Session() { server_.SessionEnded(); }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

  // Closes the connection if it is waiting for a new request; called on shutdown (from any thread).
  void CloseIfIdle() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) {
        beast::error_code ec;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        self->stream_.close();
      }
    });
  }

 private:
  void ReadHeader() {
    if (server_.draining_) return Close();
    idle_ = true;
    parser_.emplace();
    parser_->body_limit(server_.options_.max_body_bytes);
    parser_->header_limit(static_cast<uint32_t>(server_.options_.max_header_bytes));
    stream_.expires_after(std::chrono::seconds(server_.options_.keep_alive_timeout_seconds));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    idle_ = false;
    received_at_ns_ = SteadyNowNs();
    head_request_ = !ec && parser_->get().method() == http::verb::head;
    if (ec) return OnReadError(ec);
    stream_.expires_after(std::chrono::seconds(server_.options_.request_timeout_seconds));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == beast::error::timeout ||
        ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::bad_descriptor) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return SendTransportError(413, error_code::kPayloadTooLarge,
                                "request body exceeds the limit of " +
                                    std::to_string(server_.options_.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return SendTransportError(431, error_code::kHeadersTooLarge, "request headers are too large");
    }
    return SendTransportError(400, error_code::kBadRequest, "malformed HTTP request: " + ec.message());
  }

  void SendTransportError(int status, std::string_view code, const std::string& message) {
    HttpRequest request;
    request.method = parser_ && parser_->is_header_done() ? std::string(parser_->get().method_string()) : "-";
    request.target = parser_ && parser_->is_header_done() ? std::string(parser_->get().target()) : "-";
    request.remote_address = remote_;
    request.received_at_ns = received_at_ns_ ? received_at_ns_ : SteadyNowNs();
    request.request_id = common::NewUuid();
    HttpResponse response = ErrorResponse(status, code, message, nlohmann::json::object(), request.request_id);
    response.headers.emplace_back("X-Request-Id", request.request_id);
    response.close_connection = true;
    if (server_.observer_) server_.observer_(request, response);
    Write(std::move(response), 11);
  }

  void OnRead(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    stream_.expires_never();
    auto message = parser_->release();
    auto request = std::make_shared<HttpRequest>();
    request->method = std::string(message.method_string());
    request->target = std::string(message.target());
    ParseTarget(request->target, request->path, request->query);
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto [it, inserted] = request->headers.emplace(name, std::string(field.value()));
      if (!inserted) it->second += ", " + std::string(field.value());
    }
    request->body = std::move(message.body());
    request->remote_address = remote_;
    request->received_at_ns = received_at_ns_;
    keep_alive_ = message.keep_alive();
    version_ = message.version();

    ++server_.in_flight_;
    asio::post(server_.handler_pool_, [self = shared_from_this(), request] {
      HttpResponse response;
      try {
        response = self->server_.handler_(*request);
      } catch (...) {
        response = ErrorResponse(500, error_code::kInternalError, "internal error", nlohmann::json::object(),
                                 request->request_id);
      }
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        --self->server_.in_flight_;
        self->Write(std::move(response), self->version_);
      });
    });
  }

  void Write(HttpResponse response, unsigned version) {
    const bool close = response.close_connection || !keep_alive_ || server_.draining_;
    stream_.expires_after(std::chrono::seconds(server_.options_.request_timeout_seconds));
    if (head_request_ || (response.stream && response.stream->size() == 0)) {
      return WriteHeadOnly(std::move(response), version, close);
    }
    if (response.stream) return WriteStreamed(std::move(response), version, close);
    auto out = std::make_shared<http::response<http::string_body>>();
    SetHead(*out, response, version, close);
    out->body() = std::move(response.body);
    out->prepare_payload();
    http::async_write(stream_, *out, [self = shared_from_this(), out, close](beast::error_code ec, size_t) {
      self->AfterResponse(ec, close);
    });
  }

  // The headers alone: for HEAD (Content-Length as a GET would have it) and for empty streams.
  void WriteHeadOnly(HttpResponse response, unsigned version, bool close) {
    auto out = std::make_shared<http::response<http::empty_body>>();
    SetHead(*out, response, version, close);
    out->content_length(response.stream ? response.stream->size() : response.body.size());
    http::async_write(stream_, *out, [self = shared_from_this(), out, close](beast::error_code ec, size_t) {
      self->AfterResponse(ec, close);
    });
  }

  void WriteStreamed(HttpResponse response, unsigned version, bool close) {
    streaming_ = std::make_unique<StreamingResponse>();
    StreamingResponse& out = *streaming_;
    out.body = std::move(response.stream);
    out.size = out.body->size();
    out.close = close;
    out.request_id = RequestIdOf(response);
    out.chunk.resize(static_cast<size_t>(std::min<uint64_t>(kStreamChunkBytes, out.size)));
    SetHead(out.message, response, version, close);
    out.message.content_length(out.size);
    out.message.body().data = nullptr;
    out.message.body().more = true;
    http::async_write_header(stream_, out.serializer, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->AfterResponse(ec, true);
      self->ReadChunk();
    });
  }

  // Reads the next chunk on the handler pool, then writes it on the strand.
  void ReadChunk() {
    asio::post(server_.handler_pool_, [self = shared_from_this()] {
      StreamingResponse& out = *self->streaming_;
      const size_t want = static_cast<size_t>(std::min<uint64_t>(out.chunk.size(), out.size - out.sent));
      common::Result<size_t> got = common::Status::Internal("the body stream threw");
      try {
        got = out.body->Read(out.chunk.data(), want);
      } catch (...) {
      }
      asio::post(self->stream_.get_executor(),
                 [self, got = std::move(got), want]() mutable { self->WriteChunk(std::move(got), want); });
    });
  }

  void WriteChunk(common::Result<size_t> got, size_t want) {
    StreamingResponse& out = *streaming_;
    if (!got.ok() || *got == 0 || *got > want) {
      obs::LogWarn("response body stream failed; closing the connection",
                   {{"request_id", out.request_id},
                    {"error", !got.ok() ? got.status().ToString()
                                        : *got == 0 ? "the stream ended early" : "the stream overfilled its buffer"},
                    {"sent_bytes", out.sent},
                    {"content_length", out.size}});
      return AfterResponse(beast::error_code(), true);
    }
    out.sent += *got;
    out.message.body().data = out.chunk.data();
    out.message.body().size = *got;
    out.message.body().more = out.sent < out.size;
    stream_.expires_after(std::chrono::seconds(server_.options_.request_timeout_seconds));
    http::async_write(stream_, out.serializer, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == http::error::need_buffer) ec = {};  // the chunk is out; the serializer wants the next one
      if (ec) return self->AfterResponse(ec, true);
      if (self->streaming_->serializer.is_done()) return self->AfterResponse(ec, self->streaming_->close);
      self->ReadChunk();
    });
  }

  // A response was written (or failed): the next request, or the end of the connection.
  void AfterResponse(beast::error_code ec, bool close) {
    streaming_.reset();  // lets go of the body stream (an open file, ...) at once
    if (ec || close) return Close();
    ReadHeader();
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string remote_;
  int64_t received_at_ns_ = 0;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  bool idle_ = false;  // waiting for the first byte of a new request; touched only on the strand
  bool head_request_ = false;  // the request being answered is a HEAD; touched only on the strand
  // The streamed response being sent; between a chunk's read on the handler pool and its write on the strand,
  // only one of them touches it at a time.
  std::unique_ptr<StreamingResponse> streaming_;
};

common::Status HttpServer::Impl::Start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec) return common::Status::InvalidArgument("bad listen address '" + options_.host + "'", "api_server.host");
  tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return common::Status::Unavailable("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                                       ": " + ec.message());
  }
  bound_port_ = acceptor_.local_endpoint().port();
  work_guard_.emplace(io_.get_executor());
  Accept();
  for (int thread_idx = 0; thread_idx < std::max(1, options_.io_threads); ++thread_idx) {
    io_threads_.emplace_back([this] { io_.run(); });
  }
  return common::Status::Ok();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) return;
      // Transient accept errors (e.g. too many open files): keep accepting.
      return Accept();
    }
    if (draining_) return;
    socket.set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(std::move(socket), *this);
    {
      std::lock_guard lock(mu_);
      sessions_.remove_if([](const std::weak_ptr<Session>& weak) { return weak.expired(); });
      sessions_.push_back(session);
    }
    session->Start();
    Accept();
  });
}

void HttpServer::Impl::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  if (!io_threads_.empty()) {
    draining_ = true;
    asio::post(io_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard lock(mu_);
      for (auto& weak : sessions_) {
        if (auto session = weak.lock()) live.push_back(std::move(session));
      }
    }
    for (auto& session : live) session->CloseIfIdle();
    live.clear();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(options_.shutdown_grace_seconds), [this] { return open_sessions_ == 0; });
    lock.unlock();
    work_guard_.reset();
    io_.stop();
    for (auto& thread : io_threads_) thread.join();
    io_threads_.clear();
  }
  handler_pool_.join();
}

HttpServer::HttpServer(HttpServerOptions options, RequestHandler handler, TransportErrorObserver observer)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(observer))) {}

HttpServer::~HttpServer() { Shutdown(); }

common::Status HttpServer::Start() { return impl_->Start(); }
int HttpServer::port() const { return impl_->bound_port_; }
void HttpServer::Shutdown() { impl_->Shutdown(); }
int64_t HttpServer::in_flight() const { return impl_->in_flight_; }

}  // namespace analytics::api
