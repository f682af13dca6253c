// Transport-neutral request/response values passed between the HTTP server, the API pipeline and handlers.
// Thread-safety: plain values, owned by one request at a time.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/principal.h"

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

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
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
