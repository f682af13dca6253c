// ApiPipeline: what happens to every request between the HTTP server and a handler.
//   request id (X-Request-Id, accepted from the client when sane) → route match (404/405) → JWT auth (401)
//   → role check (403) → handler (exceptions become 500) → error envelope stamped with the request id →
//   one JSON log line and the Prometheus request metrics.
// Thread-safety: immutable after construction except for the metrics (thread-safe); Handle runs on many
// handler threads at once.
#pragma once

#include <memory>

#include "api/http_types.h"
#include "api/router.h"
#include "auth/jwt_verifier.h"
#include "auth/token_cache.h"
#include "obs/metrics.h"

namespace analytics::api {

class ApiPipeline {
 public:
  ApiPipeline(const Router& router, const auth::JwtVerifier& verifier, obs::HttpMetrics& metrics);

  HttpResponse Handle(HttpRequest& request);
  // Logs and counts a response the transport produced by itself (413, 400, ...).
  void Record(const HttpRequest& request, const HttpResponse& response);

 private:
  HttpResponse Dispatch(HttpRequest& request);

  const Router& router_;
  auth::CachingJwtVerifier verifier_;
  obs::HttpMetrics& metrics_;
};

}  // namespace analytics::api
