// Row format of a batch of events; see event_rows.h and docs/formats/events-row.md.
#include "events/event_rows.h"

#include <cstring>
#include <utility>

#include "common/byte_reader.h"

namespace analytics::events {
namespace {

constexpr uint8_t kRowFormatVersion = 1;
constexpr uint8_t kFlagTimeDefaulted = 1;
constexpr uint8_t kFlagUserInSubject = 2;
constexpr uint8_t kFlagHasAmount = 4;
constexpr size_t kHeaderRoom = 1 + 10;  // version byte, count varint

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  for (; value >= 0x80; value >>= 7) ++size;
  return size;
}

size_t ZigzagSize(int64_t value) {
  return VarintSize((static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
}

size_t BytesSize(std::string_view bytes) { return VarintSize(bytes.size()) + bytes.size(); }

size_t RowSize(const EventView& event) {
  return 1 + BytesSize(event.id) + BytesSize(event.source) + BytesSize(event.type) + ZigzagSize(event.time_ms) +
         ZigzagSize(event.received_ms - event.time_ms) + BytesSize(event.user) + BytesSize(event.game_id) +
         BytesSize(event.session_id) + (event.amount ? 8 : 0) + BytesSize(event.currency) +
         BytesSize(event.country) + BytesSize(event.platform) + BytesSize(event.data) + BytesSize(event.extensions);
}

// Writes into a buffer sized in advance: out-of-line append calls with their capacity checks, 13 per event,
// were most of the cost of building a WAL record.
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
  // Returns the written bytes in place.
  std::string_view Bytes(std::string_view bytes) {
    Varint(bytes.size());
    if (!bytes.empty()) std::memcpy(cursor_, bytes.data(), bytes.size());
    const std::string_view written(cursor_, bytes.size());
    cursor_ += bytes.size();
    return written;
  }
  void Fixed64(uint64_t value) {
    for (int byte_idx = 0; byte_idx < 8; ++byte_idx) *cursor_++ = static_cast<char>(value >> (8 * byte_idx));
  }

 private:
  char* cursor_;
};

}  // namespace

EventRows::EventRows() : bytes_(std::make_shared<std::string>(kHeaderRoom, '\0')) {}

EventRows::EventRows(const std::vector<StoredEvent>& events) : EventRows() {
  size_t bytes = 0;
  for (const StoredEvent& event : events) bytes += RowSize(EventView::Of(event));
  Reserve(bytes, events.size());
  for (const StoredEvent& event : events) Add(event);
  Seal();
}

void EventRows::Reserve(size_t bytes, size_t events) {
  bytes_->reserve(bytes_->size() + bytes);
  Rebase();
  views_.reserve(views_.size() + events);
}

void EventRows::Add(const EventView& event) {
  sealed_ = false;
  const size_t start = bytes_->size();
  // resize_and_overwrite would skip zeroing the row too; resize keeps this portable to older libraries.
  bytes_->resize(start + RowSize(event));
  Rebase();
  RawWriter writer(bytes_->data() + start);
  writer.Byte(static_cast<uint8_t>((event.time_defaulted ? kFlagTimeDefaulted : 0) |
                                   (event.user_in_subject ? kFlagUserInSubject : 0) |
                                   (event.amount ? kFlagHasAmount : 0)));
  EventView& view = views_.emplace_back();
  view.id = writer.Bytes(event.id);
  view.source = writer.Bytes(event.source);
  view.type = writer.Bytes(event.type);
  writer.Zigzag(event.time_ms);
  writer.Zigzag(event.received_ms - event.time_ms);
  view.time_ms = event.time_ms;
  view.received_ms = event.received_ms;
  view.time_defaulted = event.time_defaulted;
  view.user = writer.Bytes(event.user);
  view.game_id = writer.Bytes(event.game_id);
  view.session_id = writer.Bytes(event.session_id);
  if (event.amount) {
    uint64_t bits;
    std::memcpy(&bits, &*event.amount, sizeof(bits));
    writer.Fixed64(bits);
  }
  view.amount = event.amount;
  view.currency = writer.Bytes(event.currency);
  view.country = writer.Bytes(event.country);
  view.platform = writer.Bytes(event.platform);
  view.data = writer.Bytes(event.data);
  view.extensions = writer.Bytes(event.extensions);
  view.user_in_subject = event.user_in_subject;
  ++count_;
}

void EventRows::Rebase() {
  const auto base = reinterpret_cast<uintptr_t>(bytes_->data());
  if (base == views_base_) return;
  // The buffer moved: the views keep their offsets (address arithmetic on integers, the old buffer is gone).
  auto move = [&](std::string_view& field) {
    field = std::string_view(bytes_->data() + (reinterpret_cast<uintptr_t>(field.data()) - views_base_),
                             field.size());
  };
  for (EventView& view : views_) {
    for (std::string_view* field : {&view.id, &view.source, &view.type, &view.user, &view.game_id,
                                    &view.session_id, &view.currency, &view.country, &view.platform, &view.data,
                                    &view.extensions}) {
      move(*field);
    }
  }
  views_base_ = base;
}

void EventRows::Seal() {
  if (sealed_) return;
  header_start_ = kHeaderRoom - 1 - VarintSize(count_);  // the header ends where the rows start
  RawWriter writer(bytes_->data() + header_start_);
  writer.Byte(kRowFormatVersion);
  writer.Varint(count_);
  // A batch that grew past a reservation may hold twice what it uses: the memtable keeps this buffer.
  if (bytes_->capacity() > bytes_->size() + bytes_->size() / 4 + 4096) {
    bytes_->shrink_to_fit();
    Rebase();
  }
  sealed_ = true;
}

std::string_view EventRows::record() const {
  return std::string_view(*bytes_).substr(header_start_);
}

size_t EventRows::MemoryBytes() const {
  return bytes_->capacity() + views_.capacity() * sizeof(EventView);
}

EventRows::Released EventRows::Release() && {
  Released released{std::move(bytes_), std::move(views_)};
  views_.clear();
  count_ = 0;
  sealed_ = false;
  return released;
}

void EventRows::Replace(const std::vector<std::pair<size_t, EventView>>& replacements) {
  if (replacements.empty()) return;
  size_t bytes = bytes_->size();
  for (const auto& [index, event] : replacements) bytes += RowSize(event);
  EventRows rebuilt;
  rebuilt.Reserve(bytes, views_.size());
  auto next = replacements.begin();
  for (size_t event_idx = 0; event_idx < views_.size(); ++event_idx) {
    if (next != replacements.end() && next->first == event_idx) {
      rebuilt.Add(next->second);
      ++next;
    } else {
      rebuilt.Add(views_[event_idx]);
    }
  }
  rebuilt.Seal();
  *this = std::move(rebuilt);
}

EventRows EventRows::Subset(const std::vector<bool>& keep) const {
  EventRows subset;
  subset.Reserve(bytes_->size(), views_.size());
  for (size_t event_idx = 0; event_idx < views_.size(); ++event_idx) {
    if (event_idx < keep.size() && keep[event_idx]) subset.Add(views_[event_idx]);
  }
  subset.Seal();
  return subset;
}

common::Result<EventRows> EventRows::Decode(std::string_view record) {
  common::ByteReader header(record);
  uint8_t version;
  uint64_t count;
  if (!header.GetByte(version) || version != kRowFormatVersion) {
    return common::Status::Corruption("event batch: unknown row format version at byte 0");
  }
  if (!header.GetVarint(count) || count > record.size()) {
    return common::Status::Corruption("event batch: bad event count at byte 1");
  }
  EventRows rows;
  rows.bytes_->reserve(kHeaderRoom + record.size() - header.position());
  rows.bytes_->append(record.substr(header.position()));
  rows.count_ = count;
  rows.Seal();
  ANALYTICS_RETURN_IF_ERROR(DecodeViews(rows.record(), rows.views_));
  rows.views_base_ = reinterpret_cast<uintptr_t>(rows.bytes_->data());
  return rows;
}

common::Status EventRows::DecodeViews(std::string_view record, std::vector<EventView>& out) {
  common::ByteReader reader(record);
  auto corrupt = [&](const char* what) {
    return common::Status::Corruption(std::string("event batch: ") + what + " at byte " +
                                      std::to_string(reader.position()));
  };
  uint8_t version;
  uint64_t count;
  if (!reader.GetByte(version) || version != kRowFormatVersion) return corrupt("unknown row format version");
  if (!reader.GetVarint(count) || count > record.size()) return corrupt("bad event count");
  const size_t first = out.size();
  out.reserve(first + count);
  auto fail = [&](const char* what) {
    out.resize(first);
    return corrupt(what);
  };
  for (uint64_t event_idx = 0; event_idx < count; ++event_idx) {
    EventView& event = out.emplace_back();
    uint8_t flags;
    int64_t received_delta;
    if (!reader.GetByte(flags) || !reader.GetBytes(event.id) || !reader.GetBytes(event.source) ||
        !reader.GetBytes(event.type) || !reader.GetZigzag(event.time_ms) || !reader.GetZigzag(received_delta) ||
        !reader.GetBytes(event.user) || !reader.GetBytes(event.game_id) || !reader.GetBytes(event.session_id)) {
      return fail("truncated event");
    }
    if (flags & kFlagHasAmount) {
      uint64_t bits;
      if (!reader.GetFixed64(bits)) return fail("truncated amount");
      double amount;
      std::memcpy(&amount, &bits, sizeof(amount));
      event.amount = amount;
    }
    if (!reader.GetBytes(event.currency) || !reader.GetBytes(event.country) || !reader.GetBytes(event.platform) ||
        !reader.GetBytes(event.data) || !reader.GetBytes(event.extensions)) {
      return fail("truncated event");
    }
    event.received_ms = event.time_ms + received_delta;
    event.time_defaulted = flags & kFlagTimeDefaulted;
    event.user_in_subject = flags & kFlagUserInSubject;
  }
  if (!reader.done()) return fail("trailing bytes");
  return common::Status::Ok();
}

}  // namespace analytics::events
