// Router: maps (method, path) to a route. Paths are templates relative to the server root, with `{name}`
// segments matching one non-empty path segment; a literal segment wins over a parameter.
// Thread-safety: built before the server starts, then read-only.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_types.h"
#include "auth/principal.h"

namespace analytics::api {

using Handler = std::function<HttpResponse(HttpRequest&)>;

struct Route {
  std::string method;                 // GET, POST, PUT, DELETE
  std::string path;                   // template, e.g. /api/v1/analytics/metrics/definitions/{metric_name}
  bool authenticated = true;          // false only for /healthz, /readyz, /metrics
  std::vector<auth::Role> roles;      // any of these may call; empty with authenticated = any role
  std::string summary;                // one line, for logs and docs
  Handler handler;
};

class Router {
 public:
  void Add(Route route);

  struct Match {
    const Route* route = nullptr;                   // null when nothing matched
    std::map<std::string, std::string> params;      // percent-decoded
    std::vector<std::string> allowed_methods;       // when the path matched but the method did not
    bool bad_escape = false;                        // a path segment had a malformed %-escape
  };
  Match Find(std::string_view method, std::string_view path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace analytics::api
