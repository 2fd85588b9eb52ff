#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::series {

/// A MeasureValue read in place: the accessors of v1::MeasureValue, without the message.
class MeasureValueView {
 public:
  MeasureValueView() = default;
  explicit MeasureValueView(const v1::MeasureValue& value);

  v1::MeasureValue::ValueCase value_case() const { return case_; }
  double double_value() const { return case_ == v1::MeasureValue::kDoubleValue ? double_ : 0; }
  int64_t int64_value() const { return case_ == v1::MeasureValue::kInt64Value ? int64_ : 0; }
  bool bool_value() const { return case_ == v1::MeasureValue::kBoolValue && int64_ != 0; }
  absl::string_view string_value() const {
    return case_ == v1::MeasureValue::kStringValue ? string_ : absl::string_view();
  }
  void CopyTo(v1::MeasureValue& out) const;

 private:
  friend class EventView;
  /// The wire form of a MeasureValue in the common encoding (see EventView).
  bool ParseCommon(absl::string_view wire);

  v1::MeasureValue::ValueCase case_ = v1::MeasureValue::VALUE_NOT_SET;
  double double_ = 0;
  int64_t int64_ = 0;  // also the bool
  absl::string_view string_;
};

/// A v1::Event decoded from its wire form without allocating: the consumers of tidemark.raw
/// decode every record, and protobuf's parse of the two map fields (a node, a key and a
/// value message per entry) was a third of the window engine's time (aggregator_bench).
///
/// Decodes exactly what v1::Event::ParseFromArray accepts, into the same values: the common
/// encoding (known fields with their own wire types, storable text, each map key once) is
/// read in place, and anything else (unknown fields, another wire type, text protobuf may
/// refuse, a key sent twice, a malformed record) is handed to protobuf itself, so that an
/// unusual record is decoded, or refused, by the library. event_view_test checks the two
/// agree on mutated records.
///
/// The views point into the record (or the message) given, which must outlive their use.
/// One EventView is meant to be reused: after the first records it no longer allocates.
class EventView {
 public:
  using Dimension = std::pair<absl::string_view, absl::string_view>;
  using Measure = std::pair<absl::string_view, MeasureValueView>;

  /// Whether `wire` is an Event (v1::Event::ParseFromArray succeeds on it).
  bool Parse(absl::string_view wire);
  /// A view of `event`, for callers that hold a message.
  void Assign(const v1::Event& event);

  absl::string_view device_id() const { return device_id_; }
  int64_t time() const { return time_; }
  v1::TimeUnit time_unit() const { return time_unit_; }
  /// Sorted by name, each name once.
  const std::vector<Dimension>& dimensions() const { return dimensions_; }
  /// Sorted by name, each name once.
  const std::vector<Measure>& measures() const { return measures_; }
  bool has_version() const { return has_version_; }
  int64_t version() const { return version_; }
  int64_t ingest_time_us() const { return ingest_time_us_; }
  bool replayed() const { return replayed_; }

 private:
  /// The common encoding, in place; false means "ask protobuf", not "refused".
  bool ParseCommon(absl::string_view wire);
  void Clear();

  absl::string_view device_id_;
  int64_t time_ = 0;
  v1::TimeUnit time_unit_ = v1::TIME_UNIT_UNSPECIFIED;
  std::vector<Dimension> dimensions_;
  std::vector<Measure> measures_;
  bool has_version_ = false;
  int64_t version_ = 0;
  int64_t ingest_time_us_ = 0;
  bool replayed_ = false;
  /// Where an unusual record is decoded by protobuf; the views then point into it.
  v1::Event message_;
};

}  // namespace tidemark::series
