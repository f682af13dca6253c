// Varints and fixed-width values.
#include "store/embedded/codec.h"

namespace analytics::store::embedded {

void PutVarintSlow(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void PutZigzag(std::string& out, int64_t value) {
  PutVarint(out, (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
}

void PutBytes(std::string& out, std::string_view bytes) {
  PutVarint(out, bytes.size());
  out.append(bytes);
}

void PutFixed64(std::string& out, uint64_t value) {
  char buf[8];
  for (int byte_idx = 0; byte_idx < 8; ++byte_idx) buf[byte_idx] = static_cast<char>(value >> (8 * byte_idx));
  out.append(buf, 8);
}

}  // namespace analytics::store::embedded
