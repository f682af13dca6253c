// Checks for the value formats of docs/events.md (sections 1, 2 and 5): id strings, event types, codes,
// platforms, dates, URIs, media types. Hand-written matchers instead of std::regex: they run for every
// field of every event on the intake path.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace analytics::events {

inline constexpr size_t kMaxIdStringChars = 128;

// id string: 1..max_chars characters from [A-Za-z0-9._:-]. A user id is an id string.
bool IsIdString(std::string_view value, size_t max_chars = kMaxIdStringChars);

// `type`: ^com\.platform\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9][0-9]*$
bool IsEventType(std::string_view value);

// CloudEvents extension attribute name: [a-z0-9]{1,20}.
bool IsExtensionName(std::string_view name);

// ISO 4217 alphabetic format ^[A-Z]{3}$ / ISO 3166-1 alpha-2 format ^[A-Z]{2}$ (format only, not membership).
bool IsCurrencyCode(std::string_view value);
bool IsCountryCode(std::string_view value);

// One of windows, macos, linux, steamdeck, android, ios.
bool IsPlatform(std::string_view value);

// YYYY-MM-DD, a real calendar date.
bool IsDate(std::string_view value);

// RFC 3339 date-time with a zone offset: Unix millis exactly as common::ParseRfc3339Millis gives them,
// nullopt where it fails. Runs for every event's `time`: see value_formats.cc for its fast path.
std::optional<int64_t> ParseTimestampMillis(std::string_view value);
bool IsTimestamp(std::string_view value);

// RFC 3986 URI-reference character rules: only unreserved, reserved and %HH escapes; may be empty.
bool IsUriReference(std::string_view value);

// RFC 3986 absolute URI: a scheme ([A-Za-z][A-Za-z0-9+.-]*) and ':' then URI-reference characters.
bool IsAbsoluteUri(std::string_view value);

// "application/json", optionally followed by parameters ("; charset=utf-8"); case-insensitive.
bool IsJsonMediaType(std::string_view value);

// A name of profile.updated's changed_fields: ^[a-z][a-z0-9_]{0,63}$.
bool IsFieldName(std::string_view value);

// A member name safe to echo in a rejection's `field`: 1-64 characters from [A-Za-z0-9_-]. Other names
// (which could be personal data, e.g. an e-mail used as a key) are not echoed.
bool IsPlainName(std::string_view name);

}  // namespace analytics::events
