#include "common/series/series_key.h"

#include "absl/strings/str_cat.h"
#include "common/series/event_points.h"
#include "common/series/event_view.h"
#include "common/series/series_names.h"
#include "common/series/storable.h"
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

TEST(SeriesKey, NamesEscapeEveryDelimiterSoTheKeyParsesOneWay) {
  EXPECT_EQ(CanonicalKey("m{x}", {{"a=b,c", "1"}}), "m\\{x\\}{a\\=b\\,c=\"1\"}");
  EXPECT_NE(CanonicalKey("m", {{"a", "1"}, {"b", "2"}}), CanonicalKey("m", {{"a=\"1\",b", "2"}}));
}

TEST(SeriesKey, EachValueKindIsItsOwnSeries) {
  const std::map<std::string, std::string> dims = {{"device_id", "d1"}};
  EXPECT_EQ(CanonicalKey("m", dims, ValueKind::kNumeric), "m{device_id=\"d1\"}");
  EXPECT_EQ(CanonicalKey("m", dims, ValueKind::kBool), "m{device_id=\"d1\"}:bool");
  EXPECT_EQ(CanonicalKey("m", dims, ValueKind::kString), "m{device_id=\"d1\"}:string");
  v1::MeasureValue v;
  v.set_int64_value(1);
  EXPECT_EQ(KindOf(v), ValueKind::kNumeric);
  v.set_double_value(1);
  EXPECT_EQ(KindOf(v), ValueKind::kNumeric);
  v.set_string_value("1");
  EXPECT_EQ(KindOf(v), ValueKind::kString);
}

TEST(EventToPoints, ANumberAndAStringOfTheSameMeasureAreDifferentSeries) {
  v1::Event e;
  e.set_device_id("d1");
  e.set_time(1000);
  e.set_ingest_time_us(2'000'000);
  (*e.mutable_measures())["m"].set_double_value(1);
  const int64_t numeric = EventToPoints(e, absl::Minutes(15))->front().series_id;
  (*e.mutable_measures())["m"].set_int64_value(1);
  EXPECT_EQ(EventToPoints(e, absl::Minutes(15))->front().series_id, numeric);
  (*e.mutable_measures())["m"].set_string_value("high");
  EXPECT_NE(EventToPoints(e, absl::Minutes(15))->front().series_id, numeric)
      << "a string must never replace a number the aggregator counted";
}

TEST(Storable, Utf8WithoutNul) {
  EXPECT_TRUE(IsStorableText(""));
  EXPECT_TRUE(IsStorableText("plain ascii \t\n\x7f"));
  EXPECT_TRUE(IsStorableText("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8c\x8a \xf4\x8f\xbf\xbf"));
  EXPECT_FALSE(IsStorableText(std::string("a\0b", 3)));
  EXPECT_FALSE(IsStorableText("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsStorableText("\xe0\x80\xaf"));      // overlong '/'
  EXPECT_FALSE(IsStorableText("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsStorableText("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(IsStorableText("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsStorableText("\x80"));              // continuation first
  EXPECT_FALSE(IsStorableText("\xff"));
}

TEST(Storable, DownstreamRefusesWhatIngestWouldNotHaveAccepted) {
  v1::Event e;
  e.set_device_id("d1");
  e.set_time(1000);
  (*e.mutable_measures())["m"].set_double_value(1);
  EXPECT_EQ(CheckStorable(e)->reason, v1::REJECT_REASON_UNDECODABLE) << "no ingest stamp";
  e.set_ingest_time_us(INT64_MAX);
  EXPECT_EQ(CheckStorable(e)->reason, v1::REJECT_REASON_UNDECODABLE) << "stamp not a time";
  e.set_ingest_time_us(2'000'000);
  EXPECT_FALSE(CheckStorable(e).has_value());
  EXPECT_TRUE(EventToPoints(e, absl::Minutes(15)).ok());
  (*e.mutable_measures())["m"].set_double_value(-1e295);
  EXPECT_EQ(CheckStorable(e)->reason, v1::REJECT_REASON_NUMBER_OUT_OF_RANGE);
  EXPECT_FALSE(EventToPoints(e, absl::Minutes(15)).ok());
  (*e.mutable_measures())["m"].set_string_value(std::string("\0", 1));
  EXPECT_EQ(CheckStorable(e)->reason, v1::REJECT_REASON_INVALID_TEXT);
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

namespace tidemark::series {
namespace {

// A gateway that sends a new measure name with every event: the memo of its names stays
// bounded, and the series it names are still those of the shared mapping.
TEST(SeriesNames, ADevicesNamesAreBounded) {
  SeriesNames names;
  for (int i = 0; i < 3000; ++i) {
    v1::Event e;
    e.set_device_id("gateway");
    e.set_time(1);
    e.set_ingest_time_us(1000);
    e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
    (*e.mutable_measures())[absl::StrCat("s", i, "_temp")].set_double_value(1);
    const std::string bytes = e.SerializeAsString();
    EventView view;
    ASSERT_TRUE(view.Parse(bytes));
    SeriesNames::Device& device = names.Of(view, 1 << 20);
    size_t from = 0;
    const SeriesNames::Named& named =
        device.Find(absl::StrCat("s", i, "_temp"), ValueKind::kNumeric, from);
    absl::StatusOr<std::vector<MappedPoint>> want = EventToPoints(e, absl::Minutes(15));
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(want->size(), 1u);
    EXPECT_EQ(named.series_id, (*want)[0].series_id);
    EXPECT_LE(device.remembered(), SeriesNames::kMaxNamesPerDevice + 1);
  }
}

}  // namespace
}  // namespace tidemark::series
