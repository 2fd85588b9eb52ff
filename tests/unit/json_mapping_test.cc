#include "services/ingest/json_mapping.h"

#include "absl/strings/str_cat.h"
#include "common/time/time_units.h"
#include "gtest/gtest.h"

namespace tidemark::ingest {
namespace {

constexpr int64_t kArrivalUs = 1'800'000'000'000'000;

TEST(JsonMapping, TimestreamSampleFormat) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  absl::StatusOr<v1::Event> e = JsonToEvent(
      R"({"Time": 1609757175225.499, "DeviceID": "12345678-9012-3456-7890-123456789012",
          "temperature_measure": 11.2, "humidity_measure": 33.4, "voltage_measure": 55.6,
          "watt_measure": 777.8, "building": "north"})",
      m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->device_id(), "12345678-9012-3456-7890-123456789012");
  EXPECT_EQ(e->time(), 1609757175225499);
  EXPECT_EQ(e->time_unit(), v1::TIME_UNIT_MICROSECONDS);
  ASSERT_EQ(e->measures_size(), 4);
  EXPECT_DOUBLE_EQ(e->measures().at("temperature").double_value(), 11.2);
  EXPECT_DOUBLE_EQ(e->measures().at("watt").double_value(), 777.8);
  EXPECT_EQ(e->dimensions().at("building"), "north");
  EXPECT_EQ(e->dimensions_size(), 1);
}

TEST(JsonMapping, TimeUnitKeyAndCaseInsensitiveKeys) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  absl::StatusOr<v1::Event> e = JsonToEvent(
      R"({"time": "1609757175", "timeunit": "SECONDS", "deviceid": "d", "x_MEASURE": 1})", m,
      kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->time(), 1609757175000000);
  EXPECT_EQ(e->device_id(), "d");
  EXPECT_EQ(e->measures().at("x").int64_value(), 1);
}

TEST(JsonMapping, TurbineFormatUsesArrivalTime) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TURBINE, {});
  absl::StatusOr<v1::Event> e =
      JsonToEvent(R"({"turbineId": "turbine-0001", "speed": 60})", m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->device_id(), "turbine-0001");
  EXPECT_EQ(e->time(), kArrivalUs);
  EXPECT_EQ(e->measures().at("speed").int64_value(), 60);
  EXPECT_EQ(e->dimensions_size(), 0);
}

TEST(JsonMapping, RequestOverridesTheFormatFieldByField) {
  v1::JsonMapping overrides;
  overrides.set_device_key("serial");
  overrides.add_measure_keys("rpm");
  const v1::JsonMapping m = MergeMapping(MappingForFormat(v1::JSON_FORMAT_TURBINE, {}), overrides);
  absl::StatusOr<v1::Event> e =
      JsonToEvent(R"({"serial": "s-9", "rpm": 1200, "model": "x1", "temp": 3})", m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->device_id(), "s-9");
  EXPECT_EQ(e->measures_size(), 1);
  EXPECT_EQ(e->dimensions().at("model"), "x1");
  EXPECT_EQ(e->dimensions().at("temp"), "3") << "not a listed measure: a dimension";
}

TEST(JsonMapping, ServerDefaultForUnspecifiedFormat) {
  v1::JsonMapping server;
  server.set_device_key("id");
  server.set_measure_suffix("_m");
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_UNSPECIFIED, server);
  absl::StatusOr<v1::Event> e = JsonToEvent(R"({"id": "a", "v_m": 2.5})", m, kArrivalUs);
  ASSERT_TRUE(e.ok());
  EXPECT_DOUBLE_EQ(e->measures().at("v").double_value(), 2.5);
}

TEST(JsonMapping, MalformedInputIsAnError) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  EXPECT_FALSE(JsonToEvent("{not json", m, kArrivalUs).ok());
  EXPECT_FALSE(JsonToEvent("[1,2]", m, kArrivalUs).ok());
  EXPECT_FALSE(JsonToEvent(R"({"Time": "soon", "DeviceID": "d"})", m, kArrivalUs).ok());
  EXPECT_FALSE(JsonToEvent(R"({"DeviceID": "d", "x_measure": {"a": 1}})", m, kArrivalUs).ok());
  EXPECT_FALSE(JsonToEvent(R"({"Time": 1, "TimeUnit": "weeks"})", m, kArrivalUs).ok());
}

// The reference mapper reads every value as text and writes every measure as a DOUBLE:
// firmware that quotes its numbers still sends numbers.
TEST(JsonMapping, QuotedNumbersUnderMeasureKeysAreNumbers) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  absl::StatusOr<v1::Event> e = JsonToEvent(
      R"({"Time": "1609757175225", "DeviceID": "d", "temperature_measure": "11.2",)"
      R"( "count_measure": "42", "state_measure": "OK", "odd_measure": "NaN", "site": "7"})",
      m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_DOUBLE_EQ(e->measures().at("temperature").double_value(), 11.2);
  EXPECT_EQ(e->measures().at("count").int64_value(), 42);
  EXPECT_EQ(e->measures().at("state").string_value(), "OK");
  EXPECT_EQ(e->measures().at("odd").string_value(), "NaN");
  // A key that is not a measure keeps its text as a dimension.
  EXPECT_EQ(e->dimensions().at("site"), "7");
}

TEST(JsonMapping, MissingTimeIsLeftToValidation) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  absl::StatusOr<v1::Event> e = JsonToEvent(R"({"DeviceID": "d", "x_measure": 1})", m, kArrivalUs);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->time(), 0);
  // null is missing too, for the time and the device: the reasons say so, not "malformed".
  e = JsonToEvent(R"({"Time": null, "DeviceID": null, "x_measure": 1})", m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->time(), 0);
  EXPECT_EQ(e->device_id(), "");
}

// Keys match without case and lose their suffix: two keys of one record naming one measure
// are refused, rather than one value silently replacing the other.
TEST(JsonMapping, TwoKeysOfOneMeasureAreMalformed) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  const absl::StatusOr<v1::Event> e = JsonToEvent(
      R"({"Time": 1609757175225, "DeviceID": "d", "temperature_measure": 1,)"
      R"( "temperature_MEASURE": 2})",
      m, kArrivalUs);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("both give measure \"temperature\""), std::string::npos)
      << e.status();
  // The same for the device id and the time: the later key does not silently win.
  const absl::StatusOr<v1::Event> device = JsonToEvent(
      R"({"Time": 1609757175225, "DeviceID": "a", "deviceId": "b", "x_measure": 1})", m,
      kArrivalUs);
  ASSERT_FALSE(device.ok());
  EXPECT_NE(device.status().message().find("both give the device id"), std::string::npos)
      << device.status();
  EXPECT_FALSE(JsonToEvent(R"({"Time": 1, "TIME": 2, "DeviceID": "d", "x_measure": 1})", m,
                           kArrivalUs)
                   .ok());
  // Two long names that share the start their messages quote are two measures.
  const std::string stem(70, 'x');
  const absl::StatusOr<v1::Event> long_names = JsonToEvent(
      absl::StrCat(R"({"Time": 1609757175225, "DeviceID": "d", ")", stem, R"(a_measure": 1, ")",
                   stem, R"(b_measure": 2})"),
      m, kArrivalUs);
  ASSERT_TRUE(long_names.ok()) << long_names.status();
  EXPECT_EQ(long_names->measures_size(), 2);
  // A null time unit is absent: the format's default unit (milliseconds here).
  const absl::StatusOr<v1::Event> unit = JsonToEvent(
      R"({"Time": 1609757175225, "TimeUnit": null, "DeviceID": "d", "x_measure": 1})", m,
      kArrivalUs);
  ASSERT_TRUE(unit.ok()) << unit.status();
  EXPECT_EQ(unit->time(), 1609757175225000);
  // An unknown unit is quoted in part, however long.
  const absl::StatusOr<v1::Event> long_unit = JsonToEvent(
      absl::StrCat(R"({"Time": 1, "TimeUnit": ")", std::string(5000, 'w'),
                   R"(", "DeviceID": "d", "x_measure": 1})"),
      m, kArrivalUs);
  ASSERT_FALSE(long_unit.ok());
  EXPECT_LT(long_unit.status().message().size(), 200u);
}

// A nanosecond stamp sent as milliseconds is beyond what Tidemark handles: not malformed JSON
// but a time too far ahead (or back), as the same event sent through Write is rejected.
TEST(JsonMapping, TimesBeyondTheSupportedRangeAreLeftToValidation) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  const struct {
    const char* text;
    int64_t want;
  } cases[] = {
      {R"({"Time": 1700000000123456789, "DeviceID": "d", "v_measure": 1})", INT64_MAX},
      {R"({"Time": -1700000000123456789, "DeviceID": "d", "v_measure": 1})", INT64_MIN},
      {R"({"Time": "1700000000123456789.5", "DeviceID": "d", "v_measure": 1})", INT64_MAX},
  };
  for (const auto& c : cases) {
    absl::StatusOr<v1::Event> e = JsonToEvent(c.text, m, kArrivalUs);
    ASSERT_TRUE(e.ok()) << c.text << ": " << e.status();
    EXPECT_EQ(e->time(), c.want) << c.text;
    EXPECT_EQ(e->time_unit(), v1::TIME_UNIT_MICROSECONDS);
  }
}

TEST(JsonMapping, IntegerTimesConvertExactlyAsWriteConvertsThem) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  // 2^53 + 1 microseconds' worth of nanoseconds: a double cannot hold it.
  const struct {
    const char* text;
    int64_t ns;
  } cases[] = {
      {R"({"Time": 1700000000123456789, "TimeUnit": "NANOSECONDS", "DeviceID": "d", "v_measure": 1})",
       1700000000123456789},
      {R"({"Time": "1700000000123456789", "TimeUnit": "NANOSECONDS", "DeviceID": "d", "v_measure": 1})",
       1700000000123456789},
      {R"({"Time": -1700000000123456789, "TimeUnit": "NANOSECONDS", "DeviceID": "d", "v_measure": 1})",
       -1700000000123456789},
  };
  for (const auto& c : cases) {
    absl::StatusOr<v1::Event> e = JsonToEvent(c.text, m, kArrivalUs);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->time(), *time::ToMicros(c.ns, v1::TIME_UNIT_NANOSECONDS)) << c.text;
  }
}

TEST(JsonMapping, IntegersBeyondInt64BecomeDoublesInsteadOfWrapping) {
  const v1::JsonMapping m = MappingForFormat(v1::JSON_FORMAT_TIMESTREAM_SAMPLE, {});
  absl::StatusOr<v1::Event> e = JsonToEvent(
      R"({"Time": 1, "DeviceID": "d", "a_measure": 9223372036854775807,
          "b_measure": 9223372036854775808, "c_measure": 18446744073709551615,
          "d_measure": -9223372036854775808})",
      m, kArrivalUs);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->measures().at("a").int64_value(), INT64_MAX);
  EXPECT_DOUBLE_EQ(e->measures().at("b").double_value(), 9223372036854775808.0);
  EXPECT_DOUBLE_EQ(e->measures().at("c").double_value(), 18446744073709551615.0);
  EXPECT_EQ(e->measures().at("d").int64_value(), INT64_MIN);
}

}  // namespace
}  // namespace tidemark::ingest
