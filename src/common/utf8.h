// UTF-8 helpers shared by the validators.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

namespace analytics::common {

// Characters as people count them: the code points of a valid UTF-8 text (every byte that is not a continuation
// byte starts one). Length limits of names and descriptions are in these.
inline size_t CodePoints(std::string_view text) {
  size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80 ? 1 : 0;
  return count;
}

}  // namespace analytics::common
