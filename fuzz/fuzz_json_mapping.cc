// WriteJson's mapping of one device JSON record to an event.
// Input: one byte choosing the mapping (the two reference formats, a configured mapping with
// listed measure keys, or measures by type), then the JSON text.
//
// Properties: only a JSON object maps; the mapping is deterministic; what it produces survives
// serialization (so consumers can decode the raw record); a mapped event has its time in
// microseconds, the arrival time when the mapping has no time key; an int64 measure holds
// exactly the integer the device sent, as a number or as quoted text (no silent wrap past the
// int64 range); an integer time gives the same microsecond as the same time sent through
// Write; and an event that validation accepts maps to one point per measure downstream.

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/series/event_points.h"
#include "common/time/time_units.h"
#include "fuzz/fuzz_support.h"
#include "nlohmann/json.hpp"
#include "services/ingest/ingest_core.h"
#include "services/ingest/json_mapping.h"

namespace tidemark::fuzz {
namespace {

using nlohmann::json;

constexpr int64_t kArrivalUs = kNowUs - 1'234'567;

v1::JsonMapping Mapping(uint8_t selector) {
  switch (selector % 4) {
    case 0:
      return ingest::MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
    case 1:
      return ingest::MappingForFormat(v1::JSON_FORMAT_TURBINE, {});
    case 2: {
      v1::JsonMapping m;
      m.set_time_key("ts");
      m.set_time_unit_key("unit");
      m.set_default_time_unit(v1::TIME_UNIT_NANOSECONDS);
      m.set_device_key("device");
      m.add_measure_keys("speed");
      m.add_measure_keys("temp");
      return m;
    }
    default: {
      v1::JsonMapping m;
      m.set_device_key("id");
      return m;
    }
  }
}

// The JSON values an event's measure `name` may have come from: the key itself, or the key
// with the measure suffix (matched case-insensitively).
std::vector<const json*> Sources(const json& doc, const std::string& name,
                                 const v1::JsonMapping& mapping) {
  std::vector<const json*> out;
  const std::string& suffix = mapping.measure_suffix();
  for (const auto& [key, value] : doc.items()) {
    const bool suffixed = !suffix.empty() && key.size() == name.size() + suffix.size() &&
                          absl::StartsWith(key, name) && absl::EndsWithIgnoreCase(key, suffix);
    if (key == name || suffixed) out.push_back(&value);
  }
  return out;
}

bool HoldsInteger(const json& v, int64_t expected) {
  if (v.is_string()) {
    // Quoted, under a measure key: text that reads as an integer is that integer (as the
    // reference mapper reads every value), and text past the int64 range does not read as one.
    int64_t sent = 0;
    return absl::SimpleAtoi(v.get_ref<const std::string&>(), &sent) && sent == expected;
  }
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u <= static_cast<uint64_t>(INT64_MAX) && static_cast<int64_t>(u) == expected;
  }
  return v.is_number_integer() && v.get<int64_t>() == expected;
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  using fuzz::json;
  if (size < 1) return -1;
  const v1::JsonMapping mapping = fuzz::Mapping(data[0]);
  const absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  absl::StatusOr<v1::Event> event = ingest::JsonToEvent(text, mapping, fuzz::kArrivalUs);
  absl::StatusOr<v1::Event> again = ingest::JsonToEvent(text, mapping, fuzz::kArrivalUs);
  TIDEMARK_FUZZ_CHECK(event.ok() == again.ok() &&
                          (!event.ok() || fuzz::SameMessage(*event, *again)),
                      "the mapping is deterministic");
  const json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!event.ok()) {
    // WriteJson rejects it per record with this message, whatever the code.
    TIDEMARK_FUZZ_CHECK(!event.status().message().empty(),
                        "a record that does not map says why");
    return 0;
  }
  TIDEMARK_FUZZ_CHECK(!doc.is_discarded() && doc.is_object(), "only a JSON object maps");

  std::string wire;
  TIDEMARK_FUZZ_CHECK(event->SerializeToString(&wire), "a mapped event serializes");
  v1::Event decoded;
  TIDEMARK_FUZZ_CHECK(decoded.ParseFromString(wire) && fuzz::SameMessage(decoded, *event),
                      "a mapped event decodes back as consumers decode it");

  if (event->time() != 0) {
    TIDEMARK_FUZZ_CHECK(event->time_unit() == v1::TIME_UNIT_MICROSECONDS,
                        "a mapped time is in microseconds");
  }
  if (mapping.time_key().empty()) {
    TIDEMARK_FUZZ_CHECK(event->time() == fuzz::kArrivalUs,
                        "without a time key the event time is the arrival time");
  }

  for (const auto& [name, value] : event->measures()) {
    if (value.value_case() != v1::MeasureValue::kInt64Value) continue;
    bool found = false;
    for (const json* source : fuzz::Sources(doc, name, mapping)) {
      found = found || fuzz::HoldsInteger(*source, value.int64_value());
    }
    TIDEMARK_FUZZ_CHECK(found, absl::StrCat("int64 measure \"", name, "\" = ",
                                            value.int64_value(), " is what the device sent"));
  }

  // An integer time, in the record's unit, lands on the microsecond Write would store for the
  // same time and unit.
  if (!mapping.time_key().empty()) {
    const json* time_value = nullptr;
    v1::TimeUnit unit = mapping.default_time_unit();
    for (const auto& [key, value] : doc.items()) {
      if (absl::EqualsIgnoreCase(key, mapping.time_key())) time_value = &value;
      if (absl::EqualsIgnoreCase(key, mapping.time_unit_key()) && value.is_string()) {
        if (auto u = time::ParseTimeUnit(value.get<std::string>()); u.ok()) unit = *u;
      }
    }
    std::optional<int64_t> time_int;
    if (time_value != nullptr && time_value->is_number_unsigned()) {
      if (time_value->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) {
        time_int = static_cast<int64_t>(time_value->get<uint64_t>());
      }
    } else if (time_value != nullptr && time_value->is_number_integer()) {
      time_int = time_value->get<int64_t>();
    }
    if (time_int.has_value()) {
      absl::StatusOr<int64_t> write_us = time::ToMicros(*time_int, unit);
      if (write_us.ok()) {
        TIDEMARK_FUZZ_CHECK(event->time() == *write_us,
                            absl::StrCat("time ", time_value->dump(), " maps to ", event->time(),
                                         " us through WriteJson but ", *write_us,
                                         " us through Write"));
      }
    }
  }

  if (!ingest::ValidateEvent(*event, fuzz::kNowUs, ingest::ValidationLimits{}).has_value()) {
    v1::Event stamped = *event;
    stamped.set_ingest_time_us(fuzz::kNowUs);
    absl::StatusOr<std::vector<series::MappedPoint>> points =
        series::EventToPoints(stamped, absl::Minutes(15));
    TIDEMARK_FUZZ_CHECK(points.ok() && points->size() == static_cast<size_t>(event->measures_size()),
                        "an accepted JSON record maps to one point per measure");
  }
  return 0;
}
