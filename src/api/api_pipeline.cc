// Request pipeline: ids, routing, auth, RBAC, logging, metrics.
#include "api/api_pipeline.h"

#include <chrono>

#include "api/errors.h"
#include "common/ids.h"
#include "common/time_util.h"
#include "obs/logging.h"

namespace analytics::api {
namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string JoinRoles(const std::vector<auth::Role>& roles) {
  std::string out;
  for (auth::Role role : roles) {
    if (!out.empty()) out += ", ";
    out += auth::RoleName(role);
  }
  return out;
}

}  // namespace

ApiPipeline::ApiPipeline(const Router& router, const auth::JwtVerifier& verifier, obs::HttpMetrics& metrics)
    : router_(router), verifier_(verifier), metrics_(metrics) {}

HttpResponse ApiPipeline::Handle(HttpRequest& request) {
  std::string client_id = request.Header("x-request-id");
  request.request_id = common::IsValidRequestId(client_id) ? client_id : common::NewUuid();
  HttpResponse response;
  try {
    response = Dispatch(request);
  } catch (const std::exception& e) {
    obs::LogError("handler threw", {{"request_id", request.request_id}, {"error", e.what()}});
    response = ErrorResponse(500, error_code::kInternalError, "internal error");
  } catch (...) {
    obs::LogError("handler threw", {{"request_id", request.request_id}});
    response = ErrorResponse(500, error_code::kInternalError, "internal error");
  }
  StampRequestId(response, request.request_id);
  response.headers.emplace_back("X-Request-Id", request.request_id);
  Record(request, response);
  return response;
}

HttpResponse ApiPipeline::Dispatch(HttpRequest& request) {
  Router::Match match = router_.Find(request.method, request.path);
  if (match.route == nullptr) {
    request.route = "unmatched";
    if (!match.allowed_methods.empty()) {
      std::string allow;
      for (const auto& method : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + method;
      HttpResponse response = ErrorResponse(405, error_code::kMethodNotAllowed,
                                            request.method + " is not allowed here; allowed: " + allow);
      response.headers.emplace_back("Allow", allow);
      return response;
    }
    return ErrorResponse(404, error_code::kNotFound, "no such endpoint: " + request.method + " " + request.path);
  }
  const Route& route = *match.route;
  request.route = route.path;
  if (match.bad_escape) {
    return ErrorResponse(400, error_code::kBadRequest, "malformed percent-escape in the path");
  }
  request.path_params = std::move(match.params);

  if (route.authenticated) {
    const std::string authorization = request.Header("authorization");
    auto unauthenticated = [](const std::string& message) {
      HttpResponse response = ErrorResponse(401, error_code::kUnauthenticated, message);
      response.headers.emplace_back("WWW-Authenticate", "Bearer");
      return response;
    };
    if (authorization.empty()) return unauthenticated("missing Authorization: Bearer token");
    constexpr std::string_view kBearer = "bearer ";
    if (authorization.size() <= kBearer.size() ||
        !std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                    [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
      return unauthenticated("the Authorization header must be 'Bearer <token>'");
    }
    std::string_view token = std::string_view(authorization).substr(kBearer.size());
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    auto principal = verifier_.Verify(token, common::NowMillis() / 1000);
    if (!principal.ok()) return unauthenticated(principal.status().message());
    request.principal = std::move(principal).value();
    if (!route.roles.empty() && !request.principal->HasAny(route.roles)) {
      return ErrorResponse(403, error_code::kAccessDenied,
                           "this endpoint requires one of the roles: " + JoinRoles(route.roles),
                           {{"required_roles", JoinRoles(route.roles)}});
    }
  }
  return route.handler(request);
}

void ApiPipeline::Record(const HttpRequest& request, const HttpResponse& response) {
  const double seconds =
      request.received_at_ns > 0 ? static_cast<double>(SteadyNowNs() - request.received_at_ns) / 1e9 : 0.0;
  const std::string& route = request.route.empty() ? std::string("unmatched") : request.route;
  metrics_.Observe(request.method, route, response.status, seconds);
  const obs::LogLevel level = response.status >= 500 ? obs::LogLevel::kError : obs::LogLevel::kInfo;
  if (!obs::LogEnabled(level)) return;
  // A path naming a user (contains-checks, erasure) is logged as its route: original user ids stay out of logs.
  const bool names_user = request.path_params.count("user_id") > 0;
  nlohmann::json fields = {{"method", request.method},
                           {"path", names_user ? route : request.path},
                           {"route", route},
                           {"status", response.status},
                           {"latency_ms", seconds * 1000.0},
                           {"request_id", request.request_id},
                           {"remote", request.remote_address},
                           {"bytes_in", request.body.size()},
                           // A streamed body is logged at its announced size (a stream failing mid-way is logged
                           // again by the server, with the bytes actually sent).
                           {"bytes_out", response.stream ? response.stream->size() : response.body.size()}};
  if (request.principal) fields["subject"] = request.principal->subject;
  obs::Log(level, "request", fields);
}

}  // namespace analytics::api
