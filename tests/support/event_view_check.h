#pragma once

// How an EventView differs from the message protobuf decodes from the same record: the
// property event_view_test and fuzz_raw_record check on every record they try.

#include <algorithm>
#include <map>
#include <string>

#include "absl/base/casts.h"
#include "common/series/event_view.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::testing {

inline bool SameValue(const series::MeasureValueView& view, const v1::MeasureValue& message) {
  if (view.value_case() != message.value_case()) return false;
  switch (message.value_case()) {
    case v1::MeasureValue::kDoubleValue:  // bit for bit, NaN included
      return absl::bit_cast<uint64_t>(view.double_value()) ==
             absl::bit_cast<uint64_t>(message.double_value());
    case v1::MeasureValue::kInt64Value:
      return view.int64_value() == message.int64_value();
    case v1::MeasureValue::kBoolValue:
      return view.bool_value() == message.bool_value();
    case v1::MeasureValue::kStringValue:
      return view.string_value() == message.string_value();
    case v1::MeasureValue::VALUE_NOT_SET:
      return true;
  }
  return false;
}

/// Empty when `view` holds what `message` holds; otherwise the first difference.
inline std::string EventViewDifference(const series::EventView& view, const v1::Event& message) {
  if (view.device_id() != message.device_id()) return "device_id";
  if (view.time() != message.time()) return "time";
  if (view.time_unit() != message.time_unit()) return "time_unit";
  if (view.has_version() != message.has_version() || view.version() != message.version()) {
    return "version";
  }
  if (view.ingest_time_us() != message.ingest_time_us()) return "ingest_time_us";
  if (view.replayed() != message.replayed()) return "replayed";
  const std::map<std::string, std::string> dimensions(message.dimensions().begin(),
                                                      message.dimensions().end());
  if (view.dimensions().size() != dimensions.size() ||
      !std::equal(dimensions.begin(), dimensions.end(), view.dimensions().begin(),
                  [](const auto& m, const auto& v) {
                    return m.first == v.first && m.second == v.second;
                  })) {
    return "dimensions";
  }
  const std::map<std::string, v1::MeasureValue> measures(message.measures().begin(),
                                                         message.measures().end());
  if (view.measures().size() != measures.size() ||
      !std::equal(measures.begin(), measures.end(), view.measures().begin(),
                  [](const auto& m, const auto& v) {
                    return m.first == v.first && SameValue(v.second, m.second);
                  })) {
    return "measures";
  }
  return "";
}

}  // namespace tidemark::testing
