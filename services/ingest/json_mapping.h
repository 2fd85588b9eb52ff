#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tidemark/v1/event.pb.h"
#include "tidemark/v1/ingest.pb.h"

namespace tidemark::ingest {

/// The mapping of a reference format: JSON_FORMAT_TIMESTREAM_SAMPLE is
/// {"Time": 1609757175225.499, "TimeUnit": "MILLISECONDS", "DeviceID": "...",
///  "temperature_measure": 11.2}; JSON_FORMAT_TURBINE is {"turbineId": "...", "speed": 60}
/// (no time key: the ingest time is the event time, as the reference Flink job uses).
/// UNSPECIFIED returns `server_default`.
v1::JsonMapping MappingForFormat(v1::JsonFormat format, const v1::JsonMapping& server_default);

/// `base` with every non-empty field of `overrides` taking precedence.
v1::JsonMapping MergeMapping(v1::JsonMapping base, const v1::JsonMapping& overrides);

/// Maps one JSON object to an event. Keys are matched case-insensitively, as the
/// reference pipeline does. Measures: keys ending in `measure_suffix` (stripped from the
/// name), or listed in `measure_keys`, or with neither, every number or boolean key;
/// every other key is a dimension (numbers rendered as text). A measure key's text that reads
/// as a finite number ("11.2", as some firmware quotes numbers) is that number, as the
/// reference mapper takes it; other text is a string measure. A time given with a fraction
/// ("1609757175225.499" ms) keeps microsecond precision. When the mapping has no time key, the
/// time is `arrival_time_us`; a record that lacks the mapping's time key has none (validation
/// rejects it as MISSING_TIME), and one whose time is beyond what Tidemark handles gets the
/// int64 extreme on its side (rejected as too far ahead or back). Fails with INVALID_ARGUMENT
/// (malformed JSON) naming what is wrong; missing device ids are left for validation.
absl::StatusOr<v1::Event> JsonToEvent(absl::string_view json, const v1::JsonMapping& mapping,
                                      int64_t arrival_time_us);

}  // namespace tidemark::ingest
