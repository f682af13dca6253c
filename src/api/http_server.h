// HttpServer: HTTP/1.1 over Boost.Beast with keep-alive, size limits, timeouts and graceful shutdown.
//
// Rationale: the server knows nothing of routes or auth; it turns bytes into HttpRequest values, runs the
// request handler on a separate handler pool (so slow handlers never block socket I/O), and writes the
// HttpResponse back. Transport-level failures (body too large, malformed request) are answered here in the
// API's error envelope. A response with a `stream` (downloads) is sent with its Content-Length and then in 64 KiB
// pieces read from the stream on the handler pool, one piece in flight at a time, never whole in memory; a read
// error or a short stream closes the connection. HEAD answers carry the headers only.
// Concurrency: `io_threads` run the sockets (one strand per connection); `handler_threads` run handlers.
// Shutdown() stops accepting, closes idle keep-alive connections, lets in-flight requests finish (their
// responses carry `Connection: close`) for up to `shutdown_grace_seconds`, then stops.
// Limitations: HTTP/1.1 only (TLS and HTTP/2 terminate at the gateway); no pipelining beyond one request at a
// time per connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "api/http_types.h"
#include "common/status.h"

namespace analytics::api {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8081;                    // 0: any free port (see HttpServer::port())
  int io_threads = 1;
  int handler_threads = 2;
  uint64_t max_body_bytes = 10 << 20; // larger bodies get 413
  uint64_t max_header_bytes = 16384;  // larger heads get 431
  int request_timeout_seconds = 30;   // to receive a whole request once its first byte arrived
  int keep_alive_timeout_seconds = 75;
  int shutdown_grace_seconds = 20;
};

class HttpServer {
 public:
  using RequestHandler = std::function<HttpResponse(HttpRequest&)>;
  // Called for responses the server produces itself (413, 400, ...), so they are logged and counted.
  using TransportErrorObserver = std::function<void(const HttpRequest&, const HttpResponse&)>;

  HttpServer(HttpServerOptions options, RequestHandler handler, TransportErrorObserver observer = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the threads. Unavailable when the address cannot be bound.
  common::Status Start();
  // The bound port (after Start).
  int port() const;
  // Graceful stop; returns when every connection is closed or the grace period ran out. Idempotent.
  void Shutdown();
  // Requests being handled now.
  int64_t in_flight() const;

  class Impl;  // defined in http_server.cc; public so the connection class there can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace analytics::api
