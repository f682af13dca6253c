// ETags of versioned resources (metric, segment and report definitions): the version, quoted; If-Match asks for one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/http_types.h"

namespace analytics::api {

// "\"3\"" for version 3.
std::string VersionTag(int64_t version);

// `doc` as JSON with its integer "version" (when it has one) as the ETag.
HttpResponse VersionedDocument(int status, const nlohmann::json& doc);

// The version the request's If-Match header names: nullopt when there is none or it is "*". False (and `error`
// set to a 400) when it is not a version ETag.
bool IfMatchVersion(const HttpRequest& request, std::optional<int64_t>& version, HttpResponse& error);

}  // namespace analytics::api
