// Identifier helpers: random UUIDs (v4) for entities and request ids.
// Thread-safety: thread-safe (uses OpenSSL's CSPRNG).
#pragma once

#include <string>
#include <string_view>

namespace analytics::common {

// A random RFC 4122 version 4 UUID in lower-case canonical form.
std::string NewUuid();

// True when `text` is safe to echo as a request id: 1..128 chars of [A-Za-z0-9._:-].
bool IsValidRequestId(std::string_view text);

}  // namespace analytics::common
