// Transport-neutral request/response values passed between the HTTP server, the API pipeline and handlers.
// Thread-safety: plain values, owned by one request at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/principal.h"
#include "common/status.h"

namespace analytics::api {

struct HttpRequest {
  std::string method;                                 // upper case: GET, POST, ...
  std::string target;                                 // as received: path and query
  std::string path;                                   // without the query, not percent-decoded
  std::vector<std::pair<std::string, std::string>> query;  // percent-decoded, in order
  std::map<std::string, std::string> headers;         // names lower-cased
  std::string body;
  std::string remote_address;
  int64_t received_at_ns = 0;                         // steady clock, when the request head was read

  // Filled by the pipeline.
  std::string request_id;
  std::string route;                                  // the matched route template, e.g. /metrics/definitions/{metric_name}
  std::map<std::string, std::string> path_params;     // percent-decoded
  std::optional<auth::Principal> principal;

  // The first value of a query parameter.
  std::optional<std::string> QueryParam(std::string_view name) const;
  // A header value, or empty.
  std::string Header(std::string_view lower_case_name) const;
};

// A response body read piece by piece while it is sent (downloads of any size): Read fills up to `capacity`
// bytes (at most 64 KiB a call) and returns how many, 0 at the end; size() is sent as Content-Length and no more
// than size() bytes are read. An error or a short stream (fewer bytes than size()) mid-way closes the connection
// (the client sees a truncated body; the server logs it). Read runs on the server's handler threads (it may
// block on disk or network), one call at a time; it is never called for HEAD. The server lets go of the stream
// once the response is sent or has failed.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  virtual common::Result<size_t> Read(char* out, size_t capacity) = 0;
  virtual uint64_t size() const = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::shared_ptr<BodyStream> stream;  // when set, the body is read from it instead of `body`
  std::vector<std::pair<std::string, std::string>> headers;
  bool close_connection = false;

  static HttpResponse Json(int status, const nlohmann::json& body);
  static HttpResponse Text(int status, std::string content_type, std::string body);
};

// Splits "a/b?x=1&y=%20" into path and decoded query pairs.
void ParseTarget(std::string_view target, std::string& path, std::vector<std::pair<std::string, std::string>>& query);

// Percent-decodes `text`; '+' becomes a space when `plus_is_space`. Returns nullopt on a bad escape.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

}  // namespace analytics::api
