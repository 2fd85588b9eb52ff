#include "common/series/series_key.h"

#include "common/series/event_points.h"
#include "gtest/gtest.h"

namespace tidemark::series {
namespace {

TEST(SeriesKey, IsSortedAndEscaped) {
  EXPECT_EQ(CanonicalKey("temperature", {{"device_id", "d1"}, {"building", "b\"2"}}),
            "temperature{building=\"b\\\"2\",device_id=\"d1\"}");
  EXPECT_EQ(CanonicalKey("x", {}), "x{}");
}

TEST(SeriesKey, EscapingKeepsDistinctSeriesDistinct) {
  EXPECT_NE(CanonicalKey("m", {{"a", "1\",b=\"2"}}), CanonicalKey("m", {{"a", "1"}, {"b", "2"}}));
}

TEST(SeriesId, IsStableAcrossReleases) {
  // Stored ids depend on these values: they must never change.
  EXPECT_EQ(SeriesId(""), static_cast<int64_t>(0xcbf29ce484222325ULL));
  EXPECT_EQ(SeriesId("temperature{device_id=\"d1\"}"), SeriesId("temperature{device_id=\"d1\"}"));
  EXPECT_EQ(SeriesId("a"), static_cast<int64_t>(0xaf63dc4c8601ec8cULL));
  EXPECT_NE(SeriesId("temperature{device_id=\"d1\"}"), SeriesId("temperature{device_id=\"d2\"}"));
}

TEST(EventToPoints, OnePointPerMeasureWithDeviceDimensionAndCorrection) {
  v1::Event e;
  e.set_device_id("d1");
  e.set_time(2'000'000'000'000);  // ms: far ahead of the ingest time below
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_dimensions())["site"] = "north";
  (*e.mutable_measures())["b"].set_double_value(1.5);
  (*e.mutable_measures())["a"].set_int64_value(7);
  e.set_ingest_time_us(1'000'000'000'000'000);
  absl::StatusOr<std::vector<MappedPoint>> points = EventToPoints(e, absl::Minutes(15));
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 2u);
  EXPECT_EQ((*points)[0].measure_name, "a");
  EXPECT_EQ((*points)[0].canonical_key, "a{device_id=\"d1\",site=\"north\"}");
  EXPECT_EQ((*points)[0].series_id, SeriesId((*points)[0].canonical_key));
  EXPECT_EQ((*points)[0].time_us, 1'000'000'000'000'000);
  EXPECT_TRUE((*points)[0].clock_corrected);
  EXPECT_EQ((*points)[0].version, 1'000'000'000'000'000) << "no client version: ingest time";
}

TEST(EventToPoints, ClientVersionWins) {
  v1::Event e;
  e.set_device_id("d1");
  e.set_time(1000);
  (*e.mutable_measures())["m"].set_double_value(1);
  e.set_version(42);
  e.set_ingest_time_us(2'000'000);
  EXPECT_EQ(EventToPoints(e, absl::Minutes(15))->front().version, 42);
  EXPECT_EQ(EventToPoints(e, absl::Minutes(15))->front().time_us, 1'000'000);
}

}  // namespace
}  // namespace tidemark::series
