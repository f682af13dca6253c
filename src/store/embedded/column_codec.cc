// Value encodings of segment format 3; see column_codec.h.
#include "store/embedded/column_codec.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

#define XXH_INLINE_ALL  // the hash of short strings is the whole cost of a lookup: let it inline
#include <xxhash.h>

namespace analytics::store::embedded {
namespace {

constexpr uint8_t kIntDelta = 1;      // each value minus the previous one
constexpr uint8_t kIntBitPacked = 2;  // PutBitPacked instead of varints
constexpr uint8_t kScaleBits = 0xFF;  // a double kept as its 8 IEEE bytes
constexpr uint32_t kBoolMask = (1u << kTagFalse) | (1u << kTagTrue);
constexpr size_t kMinIndexSlots = 16;  // a power of two

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

uint64_t Zigzag(int64_t value) {
  return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
}

// The difference in two's complement (wraps instead of overflowing).
int64_t WrappingDelta(int64_t value, int64_t previous) {
  return static_cast<int64_t>(static_cast<uint64_t>(value) - static_cast<uint64_t>(previous));
}

constexpr std::array<bool, 256> MakeLowerHexTable() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'f'; ++c) table[c] = true;
  return table;
}
constexpr std::array<bool, 256> kIsLowerHex = MakeLowerHexTable();

bool IsLowerHexDigit(char c) { return kIsLowerHex[static_cast<uint8_t>(c)]; }

// Where the longest run of lower-case hex digits that ends `text` starts (text.size() when it ends otherwise).
size_t HexSuffixStart(std::string_view text) {
  size_t start = text.size();
  while (start > 0 && IsLowerHexDigit(text[start - 1])) --start;
  return start;
}

// Whether text.substr(from) is lower-case hex of even length, given HexSuffixStart(text): such a rest is kept as
// bytes (half the size, and no chance matches of hex text for zstd). Front coding asks it of several rests of
// the same string; the users, 73 bytes each, are the longest list.
bool IsPackableHexFrom(std::string_view text, size_t hex_start, size_t from) {
  const size_t size = text.size() - from;
  return from >= hex_start && size >= 2 && size % 2 == 0;
}

int HexNibble(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

}  // namespace

size_t CommonPrefixSize(std::string_view a, std::string_view b) {
  const size_t limit = std::min(a.size(), b.size());
  size_t common = 0;
  if constexpr (std::endian::native == std::endian::little) {
    for (; common + 8 <= limit; common += 8) {
      uint64_t word_a, word_b;
      std::memcpy(&word_a, a.data() + common, 8);
      std::memcpy(&word_b, b.data() + common, 8);
      if (word_a != word_b) return common + static_cast<size_t>(std::countr_zero(word_a ^ word_b)) / 8;
    }
  }
  while (common < limit && a[common] == b[common]) ++common;
  return common;
}

std::pair<uint32_t, bool> StringIndex::Insert(std::string_view value) {
  if (2 * (entries_.size() + 1) > slots_.size()) Grow();
  const uint64_t hash = XXH3_64bits(value.data(), value.size());
  Slot& slot = slots_[Probe(value, hash)];
  if (slot.offset_plus_one != 0) {
    Header header;
    std::memcpy(&header, bytes_.data() + slot.offset_plus_one - 1, sizeof(header));
    return {header.id, false};
  }
  const auto id = static_cast<uint32_t>(entries_.size());
  const size_t offset = bytes_.size();
  slot = Slot{offset + 1, static_cast<uint32_t>(hash >> 32)};
  entries_.push_back(Entry{hash, offset, value.size()});
  const Header header{value.size(), id, 0};
  bytes_.append(reinterpret_cast<const char*>(&header), sizeof(header));
  bytes_.append(value);
  return {id, true};
}

uint32_t StringIndex::Find(std::string_view value) const {
  if (slots_.empty()) return kNotFound;
  const Slot& slot = slots_[Probe(value, XXH3_64bits(value.data(), value.size()))];
  if (slot.offset_plus_one == 0) return kNotFound;
  Header header;
  std::memcpy(&header, bytes_.data() + slot.offset_plus_one - 1, sizeof(header));
  return header.id;
}

size_t StringIndex::Probe(std::string_view text, uint64_t hash) const {
  const size_t mask = slots_.size() - 1;
  const auto tag = static_cast<uint32_t>(hash >> 32);
  for (size_t slot_idx = hash & mask;; slot_idx = (slot_idx + 1) & mask) {
    const Slot& slot = slots_[slot_idx];
    if (slot.offset_plus_one == 0) return slot_idx;
    if (slot.tag != tag) continue;
    const char* header_bytes = bytes_.data() + slot.offset_plus_one - 1;
    uint64_t length;
    std::memcpy(&length, header_bytes + offsetof(Header, length), sizeof(length));
    if (length == text.size() &&
        (length == 0 || std::memcmp(header_bytes + kHeaderBytes, text.data(), text.size()) == 0)) {
      return slot_idx;
    }
  }
}

void StringIndex::Grow() {
  slots_.assign(std::max<size_t>(kMinIndexSlots, 2 * slots_.size()), Slot{});
  const size_t mask = slots_.size() - 1;
  for (const Entry& entry : entries_) {
    size_t slot_idx = entry.hash & mask;
    while (slots_[slot_idx].offset_plus_one != 0) slot_idx = (slot_idx + 1) & mask;
    slots_[slot_idx] = Slot{entry.offset + 1, static_cast<uint32_t>(entry.hash >> 32)};
  }
}

std::vector<std::string_view> StringIndex::Values() const {
  std::vector<std::string_view> values(entries_.size());
  for (uint32_t id = 0; id < entries_.size(); ++id) values[id] = value(id);
  return values;
}

void StringDictWriter::Add(std::string_view value) {
  const auto distinct = static_cast<uint32_t>(index_.size());
  if (values_ > 0 && value == last_value_) {
    PutVarint(codes_, distinct - last_id_);
    ++values_;
    return;
  }
  const auto [id, inserted] = index_.Insert(value);
  PutVarint(codes_, inserted ? 0 : distinct - id);
  last_value_ = index_.value(id);
  last_id_ = id;
  ++values_;
}

void PutStringList(std::string& out, const std::vector<std::string_view>& values) {
  const size_t count = values.size();
  std::vector<uint64_t> shared(count, 0);
  uint64_t shared_total = 0, total = 0;
  for (size_t value_idx = 1; value_idx < count; ++value_idx) {
    const std::string_view value = values[value_idx], previous = values[value_idx - 1];
    const size_t common = CommonPrefixSize(previous, value);
    shared[value_idx] = common;
    shared_total += common;
  }
  // Sharing makes the rest lengths vary: worth it when strings share a byte or more on average.
  if (shared_total < count) std::fill(shared.begin(), shared.end(), 0);
  std::vector<uint8_t> hex(count, 0);
  uint64_t encoded = VarintSize(count);
  for (size_t value_idx = 0; value_idx < count; ++value_idx) {
    const std::string_view value = values[value_idx];
    const size_t hex_start = HexSuffixStart(value);
    // A shared prefix that ends inside a hex run would leave an odd-length rest: share one byte less.
    if (shared[value_idx] > 0 && !IsPackableHexFrom(value, hex_start, shared[value_idx]) &&
        IsPackableHexFrom(value, hex_start, shared[value_idx] - 1)) {
      --shared[value_idx];
    }
    const std::string_view rest = value.substr(shared[value_idx]);
    hex[value_idx] = IsPackableHexFrom(value, hex_start, shared[value_idx]);
    const uint64_t stored = hex[value_idx] ? rest.size() / 2 : rest.size();
    encoded += VarintSize(shared[value_idx]) + VarintSize(stored << 1) + stored;
    total += values[value_idx].size();
  }
  if (total > kMaxFrontCodingExpansion * encoded + kFrontCodingSlack) {  // then every string is stored whole
    std::fill(shared.begin(), shared.end(), 0);
    std::fill(hex.begin(), hex.end(), 0);
  }
  PutVarint(out, count);
  for (uint64_t length : shared) PutVarint(out, length);
  for (size_t value_idx = 0; value_idx < count; ++value_idx) {
    const uint64_t rest = values[value_idx].size() - shared[value_idx];
    PutVarint(out, hex[value_idx] ? (rest / 2) << 1 | 1 : rest << 1);
  }
  for (size_t value_idx = 0; value_idx < count; ++value_idx) {
    const std::string_view rest = values[value_idx].substr(shared[value_idx]);
    if (!hex[value_idx]) {
      out.append(rest);
      continue;
    }
    for (size_t char_idx = 0; char_idx < rest.size(); char_idx += 2) {
      out.push_back(static_cast<char>(HexNibble(rest[char_idx]) << 4 | HexNibble(rest[char_idx + 1])));
    }
  }
}

void PutUserRefs(std::string& out, const std::vector<std::string_view>& users,
                 const std::vector<std::string_view>& base) {
  PutVarint(out, users.size());
  std::vector<std::string_view> extras;
  uint64_t next = 0;  // the first base index the next reference may take
  size_t base_idx = 0;
  for (std::string_view user : users) {
    base_idx = std::lower_bound(base.begin() + static_cast<ptrdiff_t>(base_idx), base.end(), user) - base.begin();
    if (base_idx < base.size() && base[base_idx] == user) {
      PutVarint(out, base_idx - next + 1);
      next = base_idx + 1;
    } else {
      PutVarint(out, 0);
      extras.push_back(user);
    }
  }
  PutStringList(out, extras);
}

bool ReadUserRefs(Reader& reader, uint64_t count, uint64_t base_count, std::string& storage, UserRefs& out) {
  uint64_t stored = 0;
  if (base_count >= kExtraUser || !reader.GetVarint(stored) || stored != count || count > reader.remaining()) {
    return false;
  }
  out.codes.resize(count);
  uint64_t next = 0, extras = 0;
  for (uint32_t& code : out.codes) {
    uint64_t value = 0;
    if (!reader.GetVarint(value)) return false;
    if (value == 0) {
      code = kExtraUser;
      ++extras;
      continue;
    }
    if (value - 1 >= base_count - next || next >= base_count) return false;
    code = static_cast<uint32_t>(next + value - 1);
    next = code + uint64_t{1};
  }
  return ReadStringList(reader, extras, storage, out.extras) && out.extras.size() == extras;
}

bool ReadStringList(Reader& reader, uint64_t max_count, std::string& storage,
                    std::vector<std::string_view>& values) {
  const size_t start = reader.position();
  uint64_t count = 0;
  // Each string costs at least two length bytes: the count cannot exceed the remaining bytes.
  if (!reader.GetVarint(count) || count > reader.remaining() || count > max_count) return false;
  std::vector<uint64_t> shared(count), stored(count);
  uint64_t total = 0, stored_total = 0, previous_size = 0;
  for (auto& length : shared) {
    if (!reader.GetVarint(length)) return false;
  }
  for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
    if (!reader.GetVarint(stored[value_idx]) || (stored[value_idx] >> 1) > reader.remaining() ||
        shared[value_idx] > previous_size) {
      return false;
    }
    const uint64_t bytes = stored[value_idx] >> 1;
    stored_total += bytes;
    if (stored_total > reader.remaining()) return false;
    previous_size = shared[value_idx] + (stored[value_idx] & 1 ? 2 * bytes : bytes);
    total += previous_size;
  }
  const uint64_t encoded = reader.position() - start + stored_total;
  if (total > kMaxFrontCodingExpansion * encoded + kFrontCodingSlack) return false;
  // Written through a pointer into a buffer of the final size (on the heap: views survive moving `storage`).
  storage.assign(std::max<uint64_t>(total, 32), '\0');
  char* const text = storage.data();
  std::vector<uint64_t> offsets(count + 1);
  size_t size = 0, previous_offset = 0;
  static constexpr char kHex[] = "0123456789abcdef";
  for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
    std::string_view rest;
    if (!reader.GetRaw(stored[value_idx] >> 1, rest)) return false;
    offsets[value_idx] = size;
    std::memcpy(text + size, text + previous_offset, shared[value_idx]);  // the previous value ends at `size`
    size += shared[value_idx];
    if (stored[value_idx] & 1) {
      for (char byte : rest) {
        text[size++] = kHex[static_cast<uint8_t>(byte) >> 4];
        text[size++] = kHex[static_cast<uint8_t>(byte) & 15];
      }
    } else {
      std::memcpy(text + size, rest.data(), rest.size());
      size += rest.size();
    }
    previous_offset = offsets[value_idx];
  }
  storage.resize(size);  // == total
  offsets[count] = storage.size();
  values.resize(count);
  for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
    values[value_idx] =
        std::string_view(storage).substr(offsets[value_idx], offsets[value_idx + 1] - offsets[value_idx]);
  }
  return true;
}

void StringDictWriter::Finish(std::string& out) const {
  PutStringList(out, index_.Values());
  out.append(codes_);
}

bool ReadStringDict(Reader& reader, uint64_t count, std::string& storage,
                    std::vector<std::string_view>& dictionary, std::vector<uint32_t>& codes) {
  if (!ReadStringList(reader, count, storage, dictionary)) return false;
  const uint64_t size = dictionary.size();
  if (count > reader.remaining()) return false;
  codes.resize(count);
  uint64_t seen = 0;  // distinct values met so far
  for (auto& code : codes) {
    uint64_t back = 0;
    if (!reader.GetVarint(back)) return false;
    if (back == 0) {
      if (seen == size) return false;
      code = static_cast<uint32_t>(seen++);
    } else {
      if (back > seen) return false;
      code = static_cast<uint32_t>(seen - back);
    }
  }
  return seen == size;  // every entry is used (the writer never stores an unused one)
}

void PutBitPacked(std::string& out, const std::vector<uint64_t>& values) {
  for (uint64_t value : values) out.push_back(static_cast<char>(std::bit_width(value)));
  uint64_t pending = 0;  // bits not yet written, LSB first
  int pending_bits = 0;
  auto put = [&](uint64_t bits, int count) {  // count <= 32
    pending |= bits << pending_bits;
    pending_bits += count;
    while (pending_bits >= 8) {
      out.push_back(static_cast<char>(pending & 0xFF));
      pending >>= 8;
      pending_bits -= 8;
    }
  };
  for (uint64_t value : values) {
    const int width = std::bit_width(value);
    if (width < 2) continue;
    uint64_t low = value & ((uint64_t{1} << (width - 1)) - 1);  // the top bit is implied by the width
    int count = width - 1;
    while (count > 0) {
      const int piece = std::min(count, 32);
      put(low & ((uint64_t{1} << piece) - 1), piece);
      low >>= piece;
      count -= piece;
    }
  }
  if (pending_bits > 0) out.push_back(static_cast<char>(pending & 0xFF));
}

bool ReadBitPacked(Reader& reader, uint64_t count, std::vector<uint64_t>& values) {
  std::string_view widths;
  if (!reader.GetRaw(count, widths)) return false;
  uint64_t total_bits = 0;
  for (char width : widths) {
    if (static_cast<uint8_t>(width) > 64) return false;
    total_bits += std::max(static_cast<uint8_t>(width), uint8_t{1}) - 1;
  }
  std::string_view bits;
  if (!reader.GetRaw((total_bits + 7) / 8, bits)) return false;
  values.resize(count);
  uint64_t bit_pos = 0;
  for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
    const int width = static_cast<uint8_t>(widths[value_idx]);
    if (width < 2) {
      values[value_idx] = static_cast<uint64_t>(width);
      continue;
    }
    uint64_t value = 0;
    const size_t byte_pos = static_cast<size_t>(bit_pos / 8);
    if (width - 1 <= 56 && byte_pos + 8 <= bits.size()) {
      // Eight bytes at once hold the value's bits (at most 56 plus an offset below 8), little-endian.
      uint64_t word = 0;
      for (int byte_idx = 0; byte_idx < 8; ++byte_idx) {
        word |= static_cast<uint64_t>(static_cast<uint8_t>(bits[byte_pos + byte_idx])) << (8 * byte_idx);
      }
      value = (word >> (bit_pos % 8)) & ((uint64_t{1} << (width - 1)) - 1);
      bit_pos += static_cast<uint64_t>(width - 1);
      values[value_idx] = value | (uint64_t{1} << (width - 1));
      continue;
    }
    for (int bit_idx = 0; bit_idx < width - 1;) {
      // Up to 8 bits from the current byte.
      const uint64_t byte = static_cast<uint8_t>(bits[bit_pos / 8]);
      const int offset = static_cast<int>(bit_pos % 8);
      const int take = std::min(8 - offset, width - 1 - bit_idx);
      value |= ((byte >> offset) & ((1u << take) - 1)) << bit_idx;
      bit_idx += take;
      bit_pos += static_cast<uint64_t>(take);
    }
    values[value_idx] = value | (uint64_t{1} << (width - 1));
  }
  return true;
}

void PutUintValues(std::string& out, const std::vector<uint64_t>& values, bool bit_packed) {
  if (bit_packed) {
    PutBitPacked(out, values);
  } else {
    for (uint64_t value : values) PutVarint(out, value);
  }
}

bool ReadUintValues(Reader& reader, uint64_t count, bool bit_packed, std::vector<uint64_t>& values) {
  if (bit_packed) return ReadBitPacked(reader, count, values);
  if (count > reader.remaining()) return false;  // a byte per varint at least
  values.resize(count);
  for (auto& value : values) {
    if (!reader.GetVarint(value)) return false;
  }
  return true;
}

void PutIntStream(std::string& out, const std::vector<int64_t>& values, const CompressedSize& compressed_size) {
  std::vector<uint64_t> plain(values.size()), delta(values.size());
  int64_t previous = 0;
  for (size_t value_idx = 0; value_idx < values.size(); ++value_idx) {
    plain[value_idx] = Zigzag(values[value_idx]);
    delta[value_idx] = Zigzag(WrappingDelta(values[value_idx], previous));
    previous = values[value_idx];
  }
  std::string best;
  size_t best_size = SIZE_MAX;
  for (uint8_t mode = 0; mode <= (kIntDelta | kIntBitPacked); ++mode) {
    std::string candidate(1, static_cast<char>(mode));
    PutUintValues(candidate, mode & kIntDelta ? delta : plain, mode & kIntBitPacked);
    const size_t size = compressed_size ? compressed_size(candidate) : candidate.size();
    if (size < best_size) {
      best_size = size;
      best = std::move(candidate);
    }
  }
  out += best;
}

bool ReadIntStream(Reader& reader, uint64_t count, std::vector<int64_t>& values) {
  uint8_t mode = 0;
  std::vector<uint64_t> stored;
  if (!reader.GetByte(mode) || mode > (kIntDelta | kIntBitPacked) ||
      !ReadUintValues(reader, count, mode & kIntBitPacked, stored)) {
    return false;
  }
  values.resize(count);
  uint64_t previous = 0;
  for (size_t value_idx = 0; value_idx < count; ++value_idx) {
    const uint64_t zigzag = stored[value_idx];
    const uint64_t value = (zigzag >> 1) ^ (~(zigzag & 1) + 1);
    previous = (mode & kIntDelta ? previous : 0) + value;
    values[value_idx] = static_cast<int64_t>(previous);
  }
  return true;
}

void PropertyColumnWriter::AddNumber(const CanonicalNumber& number, std::string_view text) {
  tags_.push_back(kTagNumber);
  numbers_.push_back(Number{number, text});
}

void PropertyColumnWriter::AddString(std::string_view value) {
  tags_.push_back(kTagString);
  strings_.Add(value);
}

void PropertyColumnWriter::AddRaw(std::string_view text) {
  tags_.push_back(kTagRaw);
  raws_.Add(text);
}

void PropertyColumnWriter::Finish(std::string& out, const CompressedSize& compressed_size) {
  // Numbers: one int column when every number is an int64 literal, else doubles (ints that are also
  // canonical doubles, such as 499, join them); what is left stays int.
  bool all_int = true;
  for (const Number& number : numbers_) all_int = all_int && number.value.is_int;
  std::vector<int64_t> ints;
  std::string scales, mantissas, bits;
  size_t number_idx = 0;
  uint32_t mask = 0;
  for (uint8_t& tag : tags_) {
    if (tag == kTagNumber) {
      const Number& number = numbers_[number_idx++];
      if (all_int || !number.value.is_double) {
        tag = kTagInt;
        ints.push_back(number.value.int_value);
      } else {
        tag = kTagDouble;
        int64_t mantissa = 0;
        int exponent = 0;
        if (DoubleToDecimal(number.value.double_value, number.text, mantissa, exponent)) {
          scales.push_back(static_cast<char>(exponent + kMaxDecimalExponent));
          PutZigzag(mantissas, mantissa);
        } else {
          scales.push_back(static_cast<char>(kScaleBits));
          uint64_t raw_bits;
          std::memcpy(&raw_bits, &number.value.double_value, sizeof(raw_bits));
          PutFixed64(bits, raw_bits);
        }
      }
    }
    mask |= 1u << tag;
  }
  PutVarint(out, mask);
  if (std::popcount(mask) > 1) {
    if (mask == kBoolMask) {
      std::string bitmap((tags_.size() + 7) / 8, '\0');
      for (size_t value_idx = 0; value_idx < tags_.size(); ++value_idx) {
        if (tags_[value_idx] == kTagTrue) bitmap[value_idx / 8] |= static_cast<char>(1 << (value_idx % 8));
      }
      out += bitmap;
    } else {
      out.append(reinterpret_cast<const char*>(tags_.data()), tags_.size());
    }
  }
  if (mask & (1u << kTagInt)) PutIntStream(out, ints, compressed_size);
  if (mask & (1u << kTagDouble)) {
    out += scales;
    out += mantissas;
    out += bits;
  }
  if (mask & (1u << kTagString)) strings_.Finish(out);
  if (mask & (1u << kTagRaw)) raws_.Finish(out);
  if (mask & (1u << kTagUserRef)) PutIntStream(out, user_refs_, compressed_size);
}

bool DecodePropertyValues(std::string_view block, uint64_t count, PropertyValues& out) {
  Reader reader(block);
  uint64_t mask = 0;
  if (!reader.GetVarint(mask) || mask >= (1u << kTagCount) || (mask == 0) != (count == 0)) return false;
  out.tags.resize(count);
  if (std::popcount(mask) == 1) {
    std::fill(out.tags.begin(), out.tags.end(), static_cast<uint8_t>(std::countr_zero(mask)));
  } else if (mask == kBoolMask) {
    std::string_view bitmap;
    if (!reader.GetRaw((count + 7) / 8, bitmap)) return false;
    for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
      out.tags[value_idx] = (bitmap[value_idx / 8] >> (value_idx % 8)) & 1 ? kTagTrue : kTagFalse;
    }
  } else {
    std::string_view tags;
    if (!reader.GetRaw(count, tags)) return false;
    for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
      const auto tag = static_cast<uint8_t>(tags[value_idx]);
      if (tag >= kTagCount || !(mask & (1u << tag))) return false;
      out.tags[value_idx] = tag;
    }
  }
  uint64_t per_tag[kTagCount] = {};
  for (uint8_t tag : out.tags) ++per_tag[tag];
  out.slots.assign(count, 0);
  if ((mask & (1u << kTagInt)) && !ReadIntStream(reader, per_tag[kTagInt], out.ints)) return false;
  if (mask & (1u << kTagDouble)) {
    std::string_view scales;
    if (!reader.GetRaw(per_tag[kTagDouble], scales)) return false;
    out.doubles.resize(per_tag[kTagDouble]);
    for (size_t double_idx = 0; double_idx < scales.size(); ++double_idx) {
      const auto scale = static_cast<uint8_t>(scales[double_idx]);
      if (scale == kScaleBits) continue;
      int64_t mantissa = 0;
      if (scale > 2 * kMaxDecimalExponent || !reader.GetZigzag(mantissa)) return false;
      out.doubles[double_idx] = DecimalToDouble(mantissa, static_cast<int>(scale) - kMaxDecimalExponent);
    }
    for (size_t double_idx = 0; double_idx < scales.size(); ++double_idx) {
      if (static_cast<uint8_t>(scales[double_idx]) != kScaleBits) continue;
      uint64_t raw_bits = 0;
      if (!reader.GetFixed64(raw_bits)) return false;
      std::memcpy(&out.doubles[double_idx], &raw_bits, sizeof(raw_bits));
    }
  }
  std::vector<uint32_t> string_codes, raw_codes;
  if ((mask & (1u << kTagString)) &&
      !ReadStringDict(reader, per_tag[kTagString], out.string_storage, out.strings, string_codes)) {
    return false;
  }
  if ((mask & (1u << kTagRaw)) && !ReadStringDict(reader, per_tag[kTagRaw], out.raw_storage, out.raws, raw_codes)) {
    return false;
  }
  if ((mask & (1u << kTagUserRef)) && !ReadIntStream(reader, per_tag[kTagUserRef], out.user_refs)) return false;
  if (!reader.done()) return false;
  size_t next[kTagCount] = {};
  for (uint64_t value_idx = 0; value_idx < count; ++value_idx) {
    const uint8_t tag = out.tags[value_idx];
    const size_t slot = next[tag]++;
    if (tag == kTagString) {
      out.slots[value_idx] = string_codes[slot];
    } else if (tag == kTagRaw) {
      out.slots[value_idx] = raw_codes[slot];
    } else {
      out.slots[value_idx] = static_cast<uint32_t>(slot);
    }
  }
  return true;
}

}  // namespace analytics::store::embedded
