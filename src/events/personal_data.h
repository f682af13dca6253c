// Personal-data rules of docs/events.md section 6 that do not need a key: which treatment a property
// name gets (the global rules), IP truncation, free-text masking. Keyed treatments (pseudonymize, hash)
// live in Pseudonymizer.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace analytics::events {

// Treatment of a property by its name, at any depth of `data` (and for envelope extension attributes).
enum class NameTreatment {
  kNone,
  kPseudonymize,  // user_id and every name ending in _user_id
  kTruncateIp,    // ip, ip_address
  kDrop,          // email, phone, first_name, last_name, middle_name, full_name, display_name, real_name,
                  // birth_date, address, password, card_number
  kHash,          // device_id, anonymous_id
};

NameTreatment GlobalTreatmentFor(std::string_view property_name);

// IPv4 keeps its first 3 octets ("203.0.113.77" -> "203.0.113.0"); IPv6 its first 48 bits
// ("2001:db8:85a3::8a2e" -> "2001:db8:85a3::", canonical RFC 5952 text). nullopt when `text` is not an
// IPv4 dotted quad or IPv6 text form (the caller drops the value).
std::optional<std::string> TruncateIp(std::string_view text);

inline constexpr size_t kMaskedTextMaxChars = 100;

// "mask + truncate": whitespace-delimited tokens that look like e-mail addresses (\S+@\S+) and runs of 7 or
// more digits, optionally separated by spaces, '-', '(' or ')' with an optional leading '+', become "***";
// then the text is cut to `max_chars` code points.
std::string MaskAndTruncateText(std::string_view text, size_t max_chars = kMaskedTextMaxChars);

// page_path: everything from the first '?' or '#' removed.
std::string_view StripQueryAndFragment(std::string_view path);

}  // namespace analytics::events
