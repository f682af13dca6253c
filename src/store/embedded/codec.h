// Binary encodings of the embedded store: varints and helpers shared by the segment format. Byte layouts:
// docs/formats/segment.md. The row format of a batch of events (a WAL record's payload) is events::EventRows.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/byte_reader.h"
#include "common/status.h"

namespace analytics::store::embedded {

// Inline for the common one-byte value: the segment writer puts several varints per row.
void PutVarintSlow(std::string& out, uint64_t value);
inline void PutVarint(std::string& out, uint64_t value) {
  if (value < 0x80) {
    out.push_back(static_cast<char>(value));
  } else {
    PutVarintSlow(out, value);
  }
}
void PutZigzag(std::string& out, int64_t value);
void PutBytes(std::string& out, std::string_view bytes);  // varint length + bytes
void PutFixed64(std::string& out, uint64_t value);

// The bounds-checked reader of the store's binary encodings (common/byte_reader.h).
using Reader = common::ByteReader;

}  // namespace analytics::store::embedded
