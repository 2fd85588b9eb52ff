#include "common/series/event_view.h"

#include <algorithm>
#include <cstring>

#include "common/series/storable.h"

namespace tidemark::series {
namespace {

/// Reads the wire form of the common encoding. Every method returns false on anything it
/// does not read in place, which sends the record to protobuf.
class WireReader {
 public:
  explicit WireReader(absl::string_view bytes)
      : p_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(p_ + bytes.size()) {}

  bool done() const { return p_ == end_; }

  /// A one-byte tag (field numbers 1..15); longer tags are not part of the common encoding.
  bool Tag(uint8_t& tag) {
    if (p_ == end_ || *p_ >= 0x80) return false;
    tag = *p_++;
    return true;
  }

  /// A varint of at most 10 bytes whose value fits 64 bits, as protobuf reads it.
  bool Varint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      const uint8_t b = *p_++;
      if (shift == 63 && b > 1) return false;
      value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (b < 0x80) return true;
    }
    return false;
  }

  bool Fixed64(uint64_t& value) {
    if (end_ - p_ < 8) return false;
    std::memcpy(&value, p_, 8);  // little-endian, as the wire is on every supported target
    p_ += 8;
    return true;
  }

  /// A length-delimited field's bytes. Its length is a varint of at most 5 bytes, as protobuf
  /// reads a size: a longer (overlong) encoding of a small length fails its parse, so it must
  /// not be read here either.
  bool Bytes(absl::string_view& bytes) {
    uint64_t n = 0;
    const uint8_t* start = p_;
    if (!Varint(n) || p_ - start > 5 || n > static_cast<uint64_t>(end_ - p_) || n > INT32_MAX) {
      return false;
    }
    bytes = absl::string_view(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return true;
  }

  /// Text protobuf accepts: storable text always is valid UTF-8.
  bool Text(absl::string_view& text) { return Bytes(text) && IsStorableText(text); }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// Wire tags: field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited).
constexpr uint8_t kEntryKey = 1 << 3 | 2;
constexpr uint8_t kEntryValue = 2 << 3 | 2;

/// A map entry: its key and value once each (either may be absent, meaning empty).
bool Entry(absl::string_view bytes, absl::string_view& key, absl::string_view& value) {
  WireReader r(bytes);
  bool has_key = false, has_value = false;
  while (!r.done()) {
    uint8_t tag = 0;
    if (!r.Tag(tag)) return false;
    if (tag == kEntryKey && !has_key) {
      if (!r.Text(key)) return false;
      has_key = true;
    } else if (tag == kEntryValue && !has_value) {
      if (!r.Bytes(value)) return false;
      has_value = true;
    } else {
      return false;
    }
  }
  return true;
}

template <typename Pair>
bool SortedUnique(std::vector<Pair>& entries) {
  std::sort(entries.begin(), entries.end(),
            [](const Pair& a, const Pair& b) { return a.first < b.first; });
  return std::adjacent_find(entries.begin(), entries.end(), [](const Pair& a, const Pair& b) {
           return a.first == b.first;
         }) == entries.end();
}

}  // namespace

bool MeasureValueView::ParseCommon(absl::string_view wire) {
  // Setting a member of the oneof replaces the one set before, so the last one sent wins.
  WireReader r(wire);
  while (!r.done()) {
    uint8_t tag = 0;
    uint64_t raw = 0;
    if (!r.Tag(tag)) return false;
    switch (tag) {
      case 1 << 3 | 1:  // double double_value = 1
        if (!r.Fixed64(raw)) return false;
        std::memcpy(&double_, &raw, sizeof double_);
        case_ = v1::MeasureValue::kDoubleValue;
        break;
      case 2 << 3 | 0:  // int64 int64_value = 2
        if (!r.Varint(raw)) return false;
        int64_ = static_cast<int64_t>(raw);
        case_ = v1::MeasureValue::kInt64Value;
        break;
      case 3 << 3 | 0:  // bool bool_value = 3
        if (!r.Varint(raw)) return false;
        int64_ = raw != 0;
        case_ = v1::MeasureValue::kBoolValue;
        break;
      case 4 << 3 | 2:  // string string_value = 4
        if (!r.Text(string_)) return false;
        case_ = v1::MeasureValue::kStringValue;
        break;
      default:
        return false;
    }
  }
  return true;
}

MeasureValueView::MeasureValueView(const v1::MeasureValue& value) : case_(value.value_case()) {
  switch (case_) {
    case v1::MeasureValue::kDoubleValue:
      double_ = value.double_value();
      break;
    case v1::MeasureValue::kInt64Value:
      int64_ = value.int64_value();
      break;
    case v1::MeasureValue::kBoolValue:
      int64_ = value.bool_value();
      break;
    case v1::MeasureValue::kStringValue:
      string_ = value.string_value();
      break;
    case v1::MeasureValue::VALUE_NOT_SET:
      break;
  }
}

void MeasureValueView::CopyTo(v1::MeasureValue& out) const {
  switch (case_) {
    case v1::MeasureValue::kDoubleValue:
      out.set_double_value(double_);
      break;
    case v1::MeasureValue::kInt64Value:
      out.set_int64_value(int64_);
      break;
    case v1::MeasureValue::kBoolValue:
      out.set_bool_value(int64_ != 0);
      break;
    case v1::MeasureValue::kStringValue:
      out.set_string_value(std::string(string_));
      break;
    case v1::MeasureValue::VALUE_NOT_SET:
      out.clear_value();
      break;
  }
}

void EventView::Clear() {
  device_id_ = {};
  time_ = 0;
  time_unit_ = v1::TIME_UNIT_UNSPECIFIED;
  dimensions_.clear();
  measures_.clear();
  has_version_ = false;
  version_ = 0;
  ingest_time_us_ = 0;
  replayed_ = false;
}

bool EventView::Parse(absl::string_view wire) {
  if (ParseCommon(wire)) return true;
  if (!message_.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    Clear();
    return false;
  }
  Assign(message_);
  return true;
}

bool EventView::ParseCommon(absl::string_view wire) {
  Clear();
  WireReader r(wire);
  while (!r.done()) {
    uint8_t tag = 0;
    uint64_t raw = 0;
    absl::string_view bytes;
    if (!r.Tag(tag)) return false;
    switch (tag) {
      case 1 << 3 | 2:  // string device_id = 1
        if (!r.Text(device_id_)) return false;
        break;
      case 2 << 3 | 0:  // int64 time = 2
        if (!r.Varint(raw)) return false;
        time_ = static_cast<int64_t>(raw);
        break;
      case 3 << 3 | 0:  // TimeUnit time_unit = 3 (an open enum: any int32 is kept)
        if (!r.Varint(raw)) return false;
        time_unit_ = static_cast<v1::TimeUnit>(static_cast<int32_t>(raw));
        break;
      case 4 << 3 | 2: {  // map<string, string> dimensions = 4
        Dimension& d = dimensions_.emplace_back();
        absl::string_view value;
        if (!r.Bytes(bytes) || !Entry(bytes, d.first, value)) return false;
        if (!IsStorableText(value)) return false;
        d.second = value;
        break;
      }
      case 5 << 3 | 2: {  // map<string, MeasureValue> measures = 5
        Measure& m = measures_.emplace_back();
        absl::string_view value;
        if (!r.Bytes(bytes) || !Entry(bytes, m.first, value)) return false;
        if (!m.second.ParseCommon(value)) return false;
        break;
      }
      case 6 << 3 | 0:  // optional int64 version = 6
        if (!r.Varint(raw)) return false;
        version_ = static_cast<int64_t>(raw);
        has_version_ = true;
        break;
      case 7 << 3 | 0:  // int64 ingest_time_us = 7
        if (!r.Varint(raw)) return false;
        ingest_time_us_ = static_cast<int64_t>(raw);
        break;
      case 8 << 3 | 0:  // bool replayed = 8
        if (!r.Varint(raw)) return false;
        replayed_ = raw != 0;
        break;
      default:
        return false;
    }
  }
  // A map keeps the last entry of a key sent twice; protobuf decides such a record.
  return SortedUnique(dimensions_) && SortedUnique(measures_);
}

void EventView::Assign(const v1::Event& event) {
  Clear();
  device_id_ = event.device_id();
  time_ = event.time();
  time_unit_ = event.time_unit();
  for (const auto& [name, value] : event.dimensions()) dimensions_.emplace_back(name, value);
  for (const auto& [name, value] : event.measures()) {
    measures_.emplace_back(name, MeasureValueView(value));
  }
  SortedUnique(dimensions_);
  SortedUnique(measures_);
  has_version_ = event.has_version();
  version_ = event.version();
  ingest_time_us_ = event.ingest_time_us();
  replayed_ = event.replayed();
}

}  // namespace tidemark::series
