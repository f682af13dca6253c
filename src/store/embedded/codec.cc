// Varints and the row format.
#include "store/embedded/codec.h"

#include <cstring>

namespace analytics::store::embedded {
namespace {

constexpr uint8_t kRowFormatVersion = 1;
constexpr uint8_t kFlagTimeDefaulted = 1;
constexpr uint8_t kFlagUserInSubject = 2;
constexpr uint8_t kFlagHasAmount = 4;

}  // namespace

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

std::string EncodeEventBatch(const std::vector<events::StoredEvent>& batch) {
  std::string out;
  EncodeEventBatch(batch, out);
  return out;
}

namespace {

// Writes into a buffer sized in advance for the worst case: the WAL record of every append is built here, and
// out-of-line PutVarint/append calls with their capacity checks, 13 per event, were most of its cost.
class RawWriter {
 public:
  explicit RawWriter(char* cursor) : cursor_(cursor) {}
  char* cursor() const { return cursor_; }
  void Byte(uint8_t value) { *cursor_++ = static_cast<char>(value); }
  void Varint(uint64_t value) {
    while (value >= 0x80) {
      *cursor_++ = static_cast<char>((value & 0x7F) | 0x80);
      value >>= 7;
    }
    *cursor_++ = static_cast<char>(value);
  }
  void Zigzag(int64_t value) { Varint((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63)); }
  void Bytes(std::string_view bytes) {
    Varint(bytes.size());
    if (!bytes.empty()) std::memcpy(cursor_, bytes.data(), bytes.size());
    cursor_ += bytes.size();
  }
  void Fixed64(uint64_t value) {
    for (int byte_idx = 0; byte_idx < 8; ++byte_idx) *cursor_++ = static_cast<char>(value >> (8 * byte_idx));
  }

 private:
  char* cursor_;
};

// Per event at most: flags, 11 length varints and 2 zigzag varints (10 bytes each at most), the amount.
constexpr size_t kMaxEventOverhead = 1 + 13 * 10 + 8;

}  // namespace

void EncodeEventBatch(const std::vector<events::StoredEvent>& batch, std::string& out) {
  size_t bytes = 1 + 10;  // version, count
  for (const auto& event : batch) {
    bytes += kMaxEventOverhead + event.id.size() + event.source.size() + event.type.size() + event.user.size() +
             event.game_id.size() + event.session_id.size() + event.currency.size() + event.country.size() +
             event.platform.size() + event.data.size() + event.extensions.size();
  }
  // resize_and_overwrite would skip zeroing the buffer too; resize keeps this portable to older libraries.
  out.resize(bytes);
  RawWriter writer(out.data());
  writer.Byte(kRowFormatVersion);
  writer.Varint(batch.size());
  for (const auto& event : batch) {
    writer.Byte(static_cast<uint8_t>((event.time_defaulted ? kFlagTimeDefaulted : 0) |
                                     (event.user_in_subject ? kFlagUserInSubject : 0) |
                                     (event.amount ? kFlagHasAmount : 0)));
    writer.Bytes(event.id);
    writer.Bytes(event.source);
    writer.Bytes(event.type);
    writer.Zigzag(event.time_ms);
    writer.Zigzag(event.received_ms - event.time_ms);
    writer.Bytes(event.user);
    writer.Bytes(event.game_id);
    writer.Bytes(event.session_id);
    if (event.amount) {
      uint64_t bits;
      std::memcpy(&bits, &*event.amount, sizeof(bits));
      writer.Fixed64(bits);
    }
    writer.Bytes(event.currency);
    writer.Bytes(event.country);
    writer.Bytes(event.platform);
    writer.Bytes(event.data);
    writer.Bytes(event.extensions);
  }
  out.resize(static_cast<size_t>(writer.cursor() - out.data()));
}

common::Status DecodeEventBatch(std::string_view payload, std::vector<events::StoredEvent>& out) {
  Reader reader(payload);
  auto corrupt = [&](const char* what) {
    return common::Status::Corruption(std::string("event batch: ") + what + " at byte " +
                                      std::to_string(reader.position()));
  };
  uint8_t version;
  uint64_t count;
  if (!reader.GetByte(version) || version != kRowFormatVersion) return corrupt("unknown row format version");
  if (!reader.GetVarint(count) || count > payload.size()) return corrupt("bad event count");
  out.reserve(out.size() + count);
  for (uint64_t event_idx = 0; event_idx < count; ++event_idx) {
    events::StoredEvent event;
    uint8_t flags;
    std::string_view id, source, type, user, game, session, currency, country, platform, data, extensions;
    int64_t time_ms, received_delta;
    if (!reader.GetByte(flags) || !reader.GetBytes(id) || !reader.GetBytes(source) || !reader.GetBytes(type) ||
        !reader.GetZigzag(time_ms) || !reader.GetZigzag(received_delta) || !reader.GetBytes(user) ||
        !reader.GetBytes(game) || !reader.GetBytes(session)) {
      return corrupt("truncated event");
    }
    if (flags & kFlagHasAmount) {
      uint64_t bits;
      if (!reader.GetFixed64(bits)) return corrupt("truncated amount");
      double amount;
      std::memcpy(&amount, &bits, sizeof(amount));
      event.amount = amount;
    }
    if (!reader.GetBytes(currency) || !reader.GetBytes(country) || !reader.GetBytes(platform) ||
        !reader.GetBytes(data) || !reader.GetBytes(extensions)) {
      return corrupt("truncated event");
    }
    event.id = id;
    event.source = source;
    event.type = type;
    event.time_ms = time_ms;
    event.received_ms = time_ms + received_delta;
    event.time_defaulted = flags & kFlagTimeDefaulted;
    event.user_in_subject = flags & kFlagUserInSubject;
    event.user = user;
    event.game_id = game;
    event.session_id = session;
    event.currency = currency;
    event.country = country;
    event.platform = platform;
    event.data = data;
    event.extensions = extensions;
    out.push_back(std::move(event));
  }
  if (!reader.done()) return corrupt("trailing bytes");
  return common::Status::Ok();
}

}  // namespace analytics::store::embedded
