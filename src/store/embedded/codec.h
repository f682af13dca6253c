// Binary encodings of the embedded store: varints, the row format of a batch of events (the payload of a WAL
// record), and helpers shared by the segment format. Byte layouts: docs/formats/events-row.md and
// docs/formats/segment.md.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "events/event.h"

namespace analytics::store::embedded {

void PutVarint(std::string& out, uint64_t value);
void PutZigzag(std::string& out, int64_t value);
void PutBytes(std::string& out, std::string_view bytes);  // varint length + bytes
void PutFixed64(std::string& out, uint64_t value);

// A bounds-checked reader; every Get returns false on truncated or malformed input.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool GetVarint(uint64_t& value);
  bool GetZigzag(int64_t& value);
  bool GetBytes(std::string_view& bytes);
  bool GetFixed64(uint64_t& value);
  bool GetByte(uint8_t& value);
  bool GetRaw(size_t length, std::string_view& bytes);  // exactly `length` bytes
  bool done() const { return pos_ == data_.size(); }
  size_t position() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// Row format of a batch (WAL payload): version byte, count, then each event's fields.
std::string EncodeEventBatch(const std::vector<events::StoredEvent>& batch);
// The same into `out` (cleared first, its capacity reused).
void EncodeEventBatch(const std::vector<events::StoredEvent>& batch, std::string& out);
// Corruption when the payload does not decode exactly.
common::Status DecodeEventBatch(std::string_view payload, std::vector<events::StoredEvent>& out);

}  // namespace analytics::store::embedded
