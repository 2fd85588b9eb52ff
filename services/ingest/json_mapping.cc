#include "services/ingest/json_mapping.h"

#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/series/storable.h"
#include "common/time/time_units.h"
#include "nlohmann/json.hpp"

namespace tidemark::ingest {
namespace {

using nlohmann::json;

bool SameKey(absl::string_view a, absl::string_view b) {
  return !b.empty() && absl::EqualsIgnoreCase(a, b);
}

// A time as sent: an integer (exact, converted as Write converts Event.time) or a fraction.
struct TimeValue {
  std::optional<int64_t> integer;
  double fraction = 0;
};

absl::StatusOr<TimeValue> ParseTimeValue(const json& v, absl::string_view key) {
  TimeValue t;
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)) {
      t.integer = static_cast<int64_t>(v.get<uint64_t>());
      return t;
    }
  } else if (v.is_number_integer()) {
    t.integer = v.get<int64_t>();
    return t;
  }
  if (v.is_number()) {
    t.fraction = v.get<double>();
    return t;
  }
  if (v.is_string()) {
    const std::string& text = v.get_ref<const std::string&>();
    int64_t i = 0;
    if (absl::SimpleAtoi(text, &i)) {
      t.integer = i;
      return t;
    }
    if (absl::SimpleAtod(text, &t.fraction) && std::isfinite(t.fraction)) return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(series::QuotedName(key), " is not a number"));
}

}  // namespace

v1::JsonMapping MappingForFormat(v1::JsonFormat format, const v1::JsonMapping& server_default) {
  v1::JsonMapping m;
  switch (format) {
    case v1::JSON_FORMAT_TIMESTREAM_SAMPLE:
      m.set_time_key("Time");
      m.set_time_unit_key("TimeUnit");
      m.set_default_time_unit(v1::TIME_UNIT_MILLISECONDS);
      m.set_device_key("DeviceID");
      m.set_measure_suffix("_measure");
      return m;
    case v1::JSON_FORMAT_TURBINE:
      m.set_device_key("turbineId");
      m.set_default_time_unit(v1::TIME_UNIT_MILLISECONDS);
      return m;
    default:
      return server_default;
  }
}

v1::JsonMapping MergeMapping(v1::JsonMapping base, const v1::JsonMapping& overrides) {
  if (!overrides.time_key().empty()) base.set_time_key(overrides.time_key());
  if (!overrides.time_unit_key().empty()) base.set_time_unit_key(overrides.time_unit_key());
  if (overrides.default_time_unit() != v1::TIME_UNIT_UNSPECIFIED) {
    base.set_default_time_unit(overrides.default_time_unit());
  }
  if (!overrides.device_key().empty()) base.set_device_key(overrides.device_key());
  if (!overrides.measure_suffix().empty()) base.set_measure_suffix(overrides.measure_suffix());
  if (!overrides.measure_keys().empty()) *base.mutable_measure_keys() = overrides.measure_keys();
  return base;
}

absl::StatusOr<v1::Event> JsonToEvent(absl::string_view text, const v1::JsonMapping& mapping,
                                      int64_t arrival_time_us) {
  const json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("not a JSON object");

  v1::Event event;
  std::optional<TimeValue> time_value;
  v1::TimeUnit unit = mapping.default_time_unit();
  const bool measures_by_type = mapping.measure_suffix().empty() && mapping.measure_keys().empty();

  // What each key gave (the time, its unit, the device id, a measure): keys match without
  // case and measure keys lose their suffix, so two keys of a record can give one thing, and
  // one value must not silently replace the other. (A key repeated exactly is JSON's own
  // duplicate: the parser keeps the last, as most do.)
  // Keyed by what was given, in full ("measure " and the whole name: two long names may share
  // the start their messages quote).
  std::map<std::string, std::string> given;
  auto give = [&given](const std::string& what, const std::string& key) -> absl::Status {
    auto [it, added] = given.try_emplace(what, key);
    if (added) return absl::OkStatus();
    const std::string described = absl::StartsWith(what, "measure ")
                                      ? absl::StrCat("measure ", series::QuotedName(what.substr(8)))
                                      : what;
    return absl::InvalidArgumentError(absl::StrCat(series::QuotedName(it->second), " and ",
                                                   series::QuotedName(key), " both give ",
                                                   described));
  };
  for (const auto& [key, value] : doc.items()) {
    if (SameKey(key, mapping.time_key())) {
      if (value.is_null()) continue;  // as if absent: validation says the time is missing
      if (absl::Status s = give("the time", key); !s.ok()) return s;
      absl::StatusOr<TimeValue> t = ParseTimeValue(value, key);
      if (!t.ok()) return t.status();
      time_value = *t;
      continue;
    }
    if (SameKey(key, mapping.time_unit_key())) {
      if (value.is_null()) continue;  // as if absent: the mapping's default unit
      if (absl::Status s = give("the time unit", key); !s.ok()) return s;
      if (!value.is_string()) return absl::InvalidArgumentError("time unit is not a string");
      absl::StatusOr<v1::TimeUnit> u = time::ParseTimeUnit(value.get<std::string>());
      if (!u.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("time unit ", series::QuotedName(value.get<std::string>()),
                         " is not SECONDS, MILLISECONDS, MICROSECONDS or NANOSECONDS"));
      }
      unit = *u;
      continue;
    }
    if (SameKey(key, mapping.device_key())) {
      if (!value.is_null()) {
        if (absl::Status s = give("the device id", key); !s.ok()) return s;
      }
      if (value.is_string()) {
        event.set_device_id(value.get<std::string>());
      } else if (value.is_number()) {
        event.set_device_id(value.dump());
      } else if (value.is_null()) {
        // As if absent: validation says the device id is missing.
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("device key ", series::QuotedName(key), " is not a string"));
      }
      continue;
    }
    std::string measure_name;
    bool is_measure = false;
    if (!mapping.measure_suffix().empty() &&
        absl::EndsWithIgnoreCase(key, mapping.measure_suffix()) &&
        key.size() > mapping.measure_suffix().size()) {
      measure_name = key.substr(0, key.size() - mapping.measure_suffix().size());
      is_measure = true;
    }
    for (const std::string& k : mapping.measure_keys()) {
      if (SameKey(key, k)) {
        measure_name = key;
        is_measure = true;
      }
    }
    if (measures_by_type && (value.is_number() || value.is_boolean())) {
      measure_name = key;
      is_measure = true;
    }
    if (value.is_object() || value.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(series::QuotedName(key), " holds a nested value"));
    }
    if (is_measure) {
      if (absl::Status s = give(absl::StrCat("measure ", measure_name), key); !s.ok()) {
        return s;
      }
      v1::MeasureValue& m = (*event.mutable_measures())[measure_name];
      if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        // Beyond int64: a double, as JSON integers beyond uint64 already parse, never wrapped.
        m.set_double_value(static_cast<double>(value.get<uint64_t>()));
      } else if (value.is_number_integer()) {
        m.set_int64_value(value.get<int64_t>());
      } else if (value.is_number()) {
        m.set_double_value(value.get<double>());
      } else if (value.is_boolean()) {
        m.set_bool_value(value.get<bool>());
      } else if (value.is_string()) {
        // Firmware that quotes its numbers ("11.2") sends numbers: the reference mapper reads
        // every value as text and writes each measure as a DOUBLE. Other text stays text.
        const std::string& text = value.get_ref<const std::string&>();
        int64_t integer = 0;
        double number = 0;
        if (absl::SimpleAtoi(text, &integer)) {
          m.set_int64_value(integer);
        } else if (absl::SimpleAtod(text, &number) && std::isfinite(number)) {
          m.set_double_value(number);
        } else {
          m.set_string_value(text);
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("measure ", series::QuotedName(key), " is null"));
      }
      continue;
    }
    if (value.is_null()) continue;
    (*event.mutable_dimensions())[key] =
        value.is_string() ? value.get<std::string>() : value.dump();
  }

  if (time_value.has_value()) {
    absl::StatusOr<int64_t> us = time_value->integer
                                     ? time::ToMicros(*time_value->integer, unit)
                                     : time::FractionalToMicros(time_value->fraction, unit);
    if (absl::IsOutOfRange(us.status())) {
      // A time beyond what Tidemark handles (a nanosecond stamp sent as milliseconds) is left
      // to validation, which rejects it as too far ahead or back, as it does through Write.
      const bool negative =
          time_value->integer ? *time_value->integer < 0 : time_value->fraction < 0;
      us = negative ? INT64_MIN : INT64_MAX;
    }
    if (!us.ok()) return us.status();
    event.set_time(*us);
    event.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  } else if (mapping.time_key().empty()) {
    event.set_time(arrival_time_us);
    event.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  }
  return event;
}

}  // namespace tidemark::ingest
