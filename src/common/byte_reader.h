// ByteReader: reads the binary encodings of the event rows (events/event_rows.h) and of the embedded store's
// segments (store/embedded/codec.h).
// Thread-safety: a plain value over bytes it does not own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace analytics::common {

// A bounds-checked reader of binary encodings (LEB128 varints, zigzag, length-prefixed bytes, little-endian
// fixed64); every Get returns false on truncated or malformed input. Inline: decoding a WAL record or a column
// block is mostly varints. `remaining` caps counts read from the data before allocating.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool done() const { return pos_ == data_.size(); }

  // Unsigned LEB128, at most 10 bytes.
  bool GetVarint(uint64_t& value) {
    if (pos_ < data_.size() && static_cast<uint8_t>(data_[pos_]) < 0x80) {  // the common one-byte value
      value = static_cast<uint8_t>(data_[pos_++]);
      return true;
    }
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return false;
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  bool GetZigzag(int64_t& value) {
    uint64_t raw = 0;
    if (!GetVarint(raw)) return false;
    value = static_cast<int64_t>(raw >> 1) ^ -static_cast<int64_t>(raw & 1);
    return true;
  }
  bool GetBytes(std::string_view& bytes) {
    uint64_t length = 0;
    if (!GetVarint(length) || length > data_.size() - pos_) return false;
    bytes = data_.substr(pos_, length);
    pos_ += length;
    return true;
  }
  bool GetFixed64(uint64_t& value) {
    if (data_.size() - pos_ < 8) return false;
    value = 0;
    for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
      value |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + byte_idx])) << (8 * byte_idx);
    }
    pos_ += 8;
    return true;
  }
  bool GetByte(uint8_t& value) {
    if (pos_ >= data_.size()) return false;
    value = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool GetRaw(size_t length, std::string_view& bytes) {
    if (data_.size() - pos_ < length) return false;
    bytes = data_.substr(pos_, length);
    pos_ += length;
    return true;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace analytics::common
