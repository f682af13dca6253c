// Who asks, for the data endpoints: the scope of the request's principal (developers: their games only).
#pragma once

#include "api/http_types.h"
#include "query/filter_expr.h"

namespace analytics::api {

inline query::Viewer ViewerOf(const HttpRequest& request) {
  query::Viewer viewer;
  if (request.principal && !request.principal->SeesAllGames()) {
    viewer.all_games = false;
    viewer.game_ids = request.principal->game_ids;
  }
  return viewer;
}

}  // namespace analytics::api
