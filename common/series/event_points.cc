#include "common/series/event_points.h"

#include "absl/status/statusor.h"
#include "common/series/series_key.h"
#include "common/series/storable.h"
#include "common/time/time_units.h"

namespace tidemark::series {

absl::StatusOr<std::vector<MappedPoint>> EventToPoints(const v1::Event& event,
                                                       absl::Duration future_clock_lead) {
  if (std::optional<Problem> problem = CheckStorable(event)) {
    return absl::InvalidArgumentError(problem->message);
  }
  absl::StatusOr<int64_t> event_us = time::ToMicros(event.time(), event.time_unit());
  if (!event_us.ok()) return event_us.status();
  const time::CorrectedTime t =
      time::CorrectFutureClock(*event_us, event.ingest_time_us(), future_clock_lead);

  std::map<std::string, std::string> dimensions(event.dimensions().begin(),
                                                event.dimensions().end());
  dimensions[std::string(kDeviceIdDimension)] = event.device_id();
  const int64_t version = event.has_version() ? event.version() : event.ingest_time_us();

  // Sorted by measure name so the output order does not depend on the map's iteration.
  std::map<std::string, const v1::MeasureValue*> measures;
  for (const auto& [name, value] : event.measures()) measures.emplace(name, &value);

  std::vector<MappedPoint> points;
  points.reserve(measures.size());
  for (const auto& [name, value] : measures) {
    MappedPoint& p = points.emplace_back();
    p.canonical_key = CanonicalKey(name, dimensions, KindOf(*value));
    p.series_id = SeriesId(p.canonical_key);
    p.measure_name = name;
    p.dimensions = dimensions;
    p.time_us = t.time_us;
    p.clock_corrected = t.corrected;
    p.value = *value;
    p.version = version;
    p.ingest_time_us = event.ingest_time_us();
  }
  return points;
}

}  // namespace tidemark::series
