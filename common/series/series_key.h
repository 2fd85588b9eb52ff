#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace tidemark::series {

/// Dimension name under which an event's device id is part of every series.
inline constexpr absl::string_view kDeviceIdDimension = "device_id";

/// The canonical key of a series: `measure{k1="v1",k2="v2"}` with keys sorted and
/// `\`, `"` escaped. Two series are the same series exactly when their keys are equal.
std::string CanonicalKey(absl::string_view measure_name,
                         const std::map<std::string, std::string>& sorted_dimensions);

/// Stable 64-bit hash of a canonical key (FNV-1a, 64 bit). Stable across builds, platforms
/// and releases: stored ids depend on it, so it must never change.
int64_t SeriesId(absl::string_view canonical_key);

}  // namespace tidemark::series
