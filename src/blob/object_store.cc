// Key rules shared by every ObjectStore adapter.
#include "blob/object_store.h"

namespace analytics::blob {
namespace {

constexpr size_t kMaxKeyBytes = 1024;

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '/';
}

common::Status BadKey(std::string message) { return common::Status::InvalidArgument(std::move(message), "key"); }

}  // namespace

common::Status CheckKey(std::string_view key) {
  // The key itself is not quoted in messages: it is untrusted text that may hold control characters.
  if (key.empty()) return BadKey("the key is empty");
  if (key.size() > kMaxKeyBytes) {
    return BadKey("the key is " + std::to_string(key.size()) + " bytes long; at most " +
                  std::to_string(kMaxKeyBytes) + " are allowed");
  }
  for (size_t char_idx = 0; char_idx < key.size(); ++char_idx) {
    if (!IsKeyChar(key[char_idx])) {
      return BadKey("the key has a character outside [A-Za-z0-9._/-] at offset " + std::to_string(char_idx));
    }
  }
  if (key.front() == '/') return BadKey("the key starts with '/'; keys are relative paths");
  size_t segment_start = 0;
  while (segment_start <= key.size()) {
    size_t slash = key.find('/', segment_start);
    if (slash == std::string_view::npos) slash = key.size();
    std::string_view segment = key.substr(segment_start, slash - segment_start);
    if (segment.empty()) return BadKey("the key has an empty path segment at offset " + std::to_string(segment_start));
    if (segment == "." || segment == "..") {
      return BadKey("the key has a '" + std::string(segment) + "' path segment at offset " +
                    std::to_string(segment_start));
    }
    segment_start = slash + 1;
  }
  return common::Status::Ok();
}

}  // namespace analytics::blob
