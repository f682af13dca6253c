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

void PutVarint(std::string& out, uint64_t value) {
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

void EncodeEventBatch(const std::vector<events::StoredEvent>& batch, std::string& out) {
  out.clear();
  size_t bytes = 16;
  for (const auto& event : batch) {
    bytes += 64 + event.id.size() + event.source.size() + event.type.size() + event.user.size() +
             event.game_id.size() + event.session_id.size() + event.currency.size() + event.country.size() +
             event.platform.size() + event.data.size() + event.extensions.size();
  }
  out.reserve(bytes);
  out.push_back(static_cast<char>(kRowFormatVersion));
  PutVarint(out, batch.size());
  for (const auto& event : batch) {
    uint8_t flags = (event.time_defaulted ? kFlagTimeDefaulted : 0) | (event.user_in_subject ? kFlagUserInSubject : 0) |
                    (event.amount ? kFlagHasAmount : 0);
    out.push_back(static_cast<char>(flags));
    PutBytes(out, event.id);
    PutBytes(out, event.source);
    PutBytes(out, event.type);
    PutZigzag(out, event.time_ms);
    PutZigzag(out, event.received_ms - event.time_ms);
    PutBytes(out, event.user);
    PutBytes(out, event.game_id);
    PutBytes(out, event.session_id);
    if (event.amount) {
      uint64_t bits;
      std::memcpy(&bits, &*event.amount, sizeof(bits));
      PutFixed64(out, bits);
    }
    PutBytes(out, event.currency);
    PutBytes(out, event.country);
    PutBytes(out, event.platform);
    PutBytes(out, event.data);
    PutBytes(out, event.extensions);
  }
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
