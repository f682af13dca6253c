// Key-less personal-data treatments; see personal_data.h.
#include "events/personal_data.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "events/json_text.h"

namespace analytics::events {
namespace {

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsPhoneSeparator(char c) { return c == ' ' || c == '-' || c == '(' || c == ')'; }

constexpr size_t kMinPhoneDigits = 7;

// Replaces whitespace-delimited tokens matching \S+@\S+ (an '@' with at least one character on each side).
std::string MaskEmails(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (IsSpace(text[pos])) {
      out.push_back(text[pos++]);
      continue;
    }
    size_t end = pos;
    while (end < text.size() && !IsSpace(text[end])) ++end;
    std::string_view token = text.substr(pos, end - pos);
    // \S+@\S+ matches (the whole token, greedily) iff an '@' has a character on each side.
    if (token.size() >= 3 && token.substr(1, token.size() - 2).find('@') != std::string_view::npos) {
      out.append("***");
    } else {
      out.append(token);
    }
    pos = end;
  }
  return out;
}

// Replaces phone-like runs: [+][(]digit, then digits and separators, with at least 7 digits in total. The
// run ends at its last digit (a closing ')' right after it is included when the run opened one).
std::string MaskPhones(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (!IsDigit(text[pos])) {
      out.push_back(text[pos++]);
      continue;
    }
    // Start of a digit run; extend to the left over "(", "+", "+(" already copied.
    size_t start = pos;
    size_t prefix = 0;
    if (start > 0 && text[start - 1] == '(') ++prefix;
    if (start > prefix && text[start - 1 - prefix] == '+') ++prefix;
    size_t digits = 0;
    size_t last_digit = pos;
    size_t scan = pos;
    while (scan < text.size() && (IsDigit(text[scan]) || IsPhoneSeparator(text[scan]))) {
      if (IsDigit(text[scan])) {
        ++digits;
        last_digit = scan;
      }
      ++scan;
    }
    size_t end = last_digit + 1;
    if (digits >= kMinPhoneDigits) {
      const std::string_view run = text.substr(start - prefix, end - (start - prefix));
      const auto opens = static_cast<size_t>(std::count(run.begin(), run.end(), '('));
      const auto closes = static_cast<size_t>(std::count(run.begin(), run.end(), ')'));
      if (opens > closes && end < text.size() && text[end] == ')') ++end;
      out.resize(out.size() - prefix);
      out.append("***");
    } else {
      out.append(text.substr(start, end - start));
    }
    pos = end;
  }
  return out;
}

}  // namespace

NameTreatment GlobalTreatmentFor(std::string_view name) {
  if (name.empty()) return NameTreatment::kNone;
  if (name == "user_id" || EndsWith(name, "_user_id")) return NameTreatment::kPseudonymize;
  switch (name[0]) {  // cheap pre-filter: most names hit no rule
    case 'i':
      if (name == "ip" || name == "ip_address") return NameTreatment::kTruncateIp;
      break;
    case 'd':
      if (name == "device_id") return NameTreatment::kHash;
      if (name == "display_name") return NameTreatment::kDrop;
      break;
    case 'a':
      if (name == "anonymous_id") return NameTreatment::kHash;
      if (name == "address") return NameTreatment::kDrop;
      break;
    case 'e':
      if (name == "email") return NameTreatment::kDrop;
      break;
    case 'p':
      if (name == "phone" || name == "password") return NameTreatment::kDrop;
      break;
    case 'f':
      if (name == "first_name" || name == "full_name") return NameTreatment::kDrop;
      break;
    case 'l':
      if (name == "last_name") return NameTreatment::kDrop;
      break;
    case 'm':
      if (name == "middle_name") return NameTreatment::kDrop;
      break;
    case 'r':
      if (name == "real_name") return NameTreatment::kDrop;
      break;
    case 'b':
      if (name == "birth_date") return NameTreatment::kDrop;
      break;
    case 'c':
      if (name == "card_number") return NameTreatment::kDrop;
      break;
    default:
      break;
  }
  return NameTreatment::kNone;
}

std::optional<std::string> TruncateIp(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char input[INET6_ADDRSTRLEN];
  std::memcpy(input, text.data(), text.size());
  input[text.size()] = '\0';
  char output[INET6_ADDRSTRLEN];
  if (text.find(':') == std::string_view::npos) {
    // Dotted quad, parsed by hand (inet_pton/inet_ntop cost ~2k instructions, and this runs per event).
    std::string truncated;
    size_t pos = 0;
    for (int octet_idx = 0; octet_idx < 4; ++octet_idx) {
      const size_t start = pos;
      int octet = 0;
      while (pos < text.size() && IsDigit(text[pos]) && pos - start < 3) octet = octet * 10 + (text[pos++] - '0');
      const size_t digits = pos - start;
      if (digits == 0 || octet > 255 || (digits > 1 && text[start] == '0')) return std::nullopt;
      if (octet_idx < 3) {
        if (pos >= text.size() || text[pos] != '.') return std::nullopt;
        truncated.append(text.substr(start, digits + 1));
        ++pos;
      }
    }
    if (pos != text.size()) return std::nullopt;
    truncated.push_back('0');
    return truncated;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, input, &v6) != 1) return std::nullopt;
  std::memset(v6.s6_addr + 6, 0, 10);  // keep 48 bits
  if (inet_ntop(AF_INET6, &v6, output, sizeof(output)) == nullptr) return std::nullopt;
  return std::string(output);
}

std::string MaskAndTruncateText(std::string_view text, size_t max_chars) {
  std::string masked = MaskPhones(MaskEmails(text));
  masked.resize(TruncateCodePoints(masked, max_chars).size());
  return masked;
}

std::string_view StripQueryAndFragment(std::string_view path) {
  size_t end = 0;
  while (end < path.size() && path[end] != '?' && path[end] != '#') ++end;
  return path.substr(0, end);
}

}  // namespace analytics::events
