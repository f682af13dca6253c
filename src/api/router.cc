// Path-template routing.
#include "api/router.h"

#include <algorithm>

namespace analytics::api {
namespace {

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> segments;
  size_t pos = 0;
  if (!path.empty() && path.front() == '/') pos = 1;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    segments.push_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return segments;
}

bool IsParam(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

void Router::Add(Route route) { routes_.push_back(std::move(route)); }

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  Match best;
  int best_literals = -1;
  const auto segments = Split(path);
  for (const Route& route : routes_) {
    const auto pattern = Split(route.path);
    if (pattern.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    int literals = 0;
    bool matched = true;
    bool bad_escape = false;
    for (size_t segment_idx = 0; segment_idx < pattern.size() && matched; ++segment_idx) {
      if (IsParam(pattern[segment_idx])) {
        if (segments[segment_idx].empty()) {
          matched = false;
          break;
        }
        auto decoded = PercentDecode(segments[segment_idx], false);
        if (!decoded) {
          bad_escape = true;
          decoded = std::string(segments[segment_idx]);
        }
        params[std::string(pattern[segment_idx].substr(1, pattern[segment_idx].size() - 2))] = *decoded;
      } else if (pattern[segment_idx] == segments[segment_idx]) {
        ++literals;
      } else {
        matched = false;
      }
    }
    if (!matched) continue;
    if (route.method != method) {
      if (std::find(best.allowed_methods.begin(), best.allowed_methods.end(), route.method) ==
          best.allowed_methods.end()) {
        best.allowed_methods.push_back(route.method);
      }
      continue;
    }
    if (literals > best_literals) {
      best_literals = literals;
      best.route = &route;
      best.params = std::move(params);
      best.bad_escape = bad_escape;
    }
  }
  if (best.route != nullptr) best.allowed_methods.clear();
  return best;
}

}  // namespace analytics::api
