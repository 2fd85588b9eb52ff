#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::series {

/// One point of an event, as every consumer of tidemark.raw stores or windows it.
struct MappedPoint {
  int64_t series_id = 0;
  std::string canonical_key;
  std::string measure_name;
  /// Sorted; includes device_id.
  std::map<std::string, std::string> dimensions;
  /// After the future-clock correction.
  int64_t time_us = 0;
  bool clock_corrected = false;
  v1::MeasureValue value;
  int64_t version = 0;
  int64_t ingest_time_us = 0;
};

/// The one mapping from an accepted event to its points (DESIGN §2-3), shared by the
/// writer and the aggregator so both store and window the same (time, value, version):
/// one point per measure, time in microseconds with the future-clock correction applied,
/// version = the client version or else the ingest time. Deterministic: the same event
/// always gives the same points. Fails (INVALID_ARGUMENT) on an event that breaks the shared
/// storable rule (series/storable.h); CheckStorable gives the reason.
absl::StatusOr<std::vector<MappedPoint>> EventToPoints(const v1::Event& event,
                                                       absl::Duration future_clock_lead);

}  // namespace tidemark::series
