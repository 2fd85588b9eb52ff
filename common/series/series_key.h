#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::series {

/// Dimension name under which an event's device id is part of every series.
inline constexpr absl::string_view kDeviceIdDimension = "device_id";

/// What a series holds. A series has one kind, so that the writer's last-writer-wins upsert
/// and the aggregator agree on every point: int64 and double are both numeric (aggregated as
/// doubles, and may replace each other), while a bool or string value of the same measure
/// and dimensions is a different series and can never replace a number.
enum class ValueKind { kNumeric, kBool, kString };
ValueKind KindOf(v1::MeasureValue::ValueCase value_case);
inline ValueKind KindOf(const v1::MeasureValue& value) { return KindOf(value.value_case()); }

/// The canonical key of a series: `measure{k1="v1",k2="v2"}` with keys sorted, followed by
/// `:bool` or `:string` for those kinds. Names escape `\ " { } = ,` with a backslash and
/// values escape `\ "`, so the key parses back one way only: two series are the same series
/// exactly when their keys are equal.
std::string CanonicalKey(absl::string_view measure_name,
                         const std::map<std::string, std::string>& sorted_dimensions,
                         ValueKind kind = ValueKind::kNumeric);

/// Stable 64-bit hash of a canonical key (FNV-1a, 64 bit). Stable across builds, platforms
/// and releases: stored ids depend on it, so it must never change.
int64_t SeriesId(absl::string_view canonical_key);

}  // namespace tidemark::series
