// Identifier helpers: random UUIDs (v4) for entities and request ids, name-based UUIDs (v8) for stable ids.
// Thread-safety: thread-safe (uses OpenSSL's CSPRNG).
#pragma once

#include <string>
#include <string_view>

namespace analytics::common {

// A random RFC 4122 version 4 UUID in lower-case canonical form.
std::string NewUuid();

// A UUID determined by `name` (the first 16 bytes of its SHA-256, RFC 9562 version 8 and variant bits): the same
// name always gives the same id (built-in definitions, a schedule's instance for one fire time).
std::string NameUuid(std::string_view name);

// True when `text` is safe to echo as a request id: 1..128 chars of [A-Za-z0-9._:-].
bool IsValidRequestId(std::string_view text);

}  // namespace analytics::common
