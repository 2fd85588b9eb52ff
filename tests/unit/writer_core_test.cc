#include "services/timestream-writer/writer_core.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/timestream-writer/incarnation.h"

namespace tidemark::writer {
namespace {

std::string Record(const std::string& device, int64_t time_ms, double value,
                   std::optional<int64_t> version, int64_t ingest_us = 1'700'000'000'000'000) {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(time_ms);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_measures())["m"].set_double_value(value);
  if (version) e.set_version(*version);
  e.set_ingest_time_us(ingest_us);
  return e.SerializeAsString();
}

BatchBuilder Builder() { return BatchBuilder(absl::Minutes(15), 0); }

TEST(BatchBuilder, HigherVersionWinsInsideTheBatch) {
  BatchBuilder b = Builder();
  b.Add(0, Record("d", 1000, 1.0, 1));
  b.Add(1, Record("d", 1000, 2.0, 3));
  b.Add(2, Record("d", 1000, 9.0, 2));
  ASSERT_EQ(b.points().size(), 1u);
  EXPECT_EQ(b.points()[0].value.double_value(), 2.0);
  EXPECT_EQ(b.points()[0].version, 3);
  EXPECT_EQ(b.counters().stale, 2);
  EXPECT_TRUE(b.rejections().empty());
}

TEST(BatchBuilder, SameVersionSameValueIsADuplicate) {
  BatchBuilder b = Builder();
  b.Add(0, Record("d", 1000, 1.0, 5));
  b.Add(1, Record("d", 1000, 1.0, 5));
  EXPECT_EQ(b.points().size(), 1u);
  EXPECT_EQ(b.counters().duplicates, 1);
  EXPECT_TRUE(b.rejections().empty());
}

TEST(BatchBuilder, SameVersionDifferentValueIsAConflictAndTheFirstStays) {
  BatchBuilder b = Builder();
  b.Add(0, Record("d", 1000, 1.0, 5));
  b.Add(1, Record("d", 1000, 2.0, 5));
  ASSERT_EQ(b.points().size(), 1u);
  EXPECT_EQ(b.points()[0].value.double_value(), 1.0);
  ASSERT_EQ(b.rejections().size(), 1u);
  EXPECT_EQ(b.rejections()[0].source, 1u);
  EXPECT_EQ(b.rejections()[0].reason, v1::REJECT_REASON_VERSION_CONFLICT);
  EXPECT_EQ(b.rejections()[0].existing_version, 5);
}

TEST(BatchBuilder, UndecodableAndOldRecordsAreRejected) {
  BatchBuilder b(absl::Minutes(15), /*retention_horizon_us=*/2'000'000);
  b.Add(0, "not a protobuf \xff\xff");
  b.Add(1, Record("d", 1000, 1.0, 1));  // 1 s after the epoch: before the horizon
  ASSERT_EQ(b.rejections().size(), 2u);
  EXPECT_EQ(b.rejections()[0].reason, v1::REJECT_REASON_UNDECODABLE);
  EXPECT_EQ(b.rejections()[1].reason, v1::REJECT_REASON_TIME_BEFORE_RETENTION);
  EXPECT_TRUE(b.points().empty());
}

// An old event of many measures is one rejection (each carries the whole event), not one per
// measure.
TEST(BatchBuilder, AnOldEventIsRejectedOnceWhateverItsMeasures) {
  BatchBuilder b(absl::Minutes(15), /*retention_horizon_us=*/2'000'000);
  v1::Event e;
  e.set_device_id("d");
  e.set_time(1000);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  e.set_ingest_time_us(1'700'000'000'000'000);
  for (const char* m : {"a", "b", "c", "d"}) (*e.mutable_measures())[m].set_double_value(1);
  b.Add(0, e.SerializeAsString());
  ASSERT_EQ(b.rejections().size(), 1u);
  EXPECT_EQ(b.rejections()[0].reason, v1::REJECT_REASON_TIME_BEFORE_RETENTION);
  EXPECT_TRUE(b.points().empty());
}

TEST(BatchBuilder, FutureClockIsCorrectedToIngestTime) {
  BatchBuilder b = Builder();
  const int64_t ingest = 1'700'000'000'000'000;
  b.Add(0, Record("d", ingest / 1000 + 30 * 60 * 1000, 1.0, std::nullopt, ingest));
  ASSERT_EQ(b.points().size(), 1u);
  EXPECT_EQ(b.points()[0].time_us, ingest);
  EXPECT_EQ(b.points()[0].version, ingest);
  EXPECT_EQ(b.counters().clock_corrected, 1);
}

TEST(BatchBuilder, DropSeriesRejectsItsPoints) {
  BatchBuilder b = Builder();
  b.Add(0, Record("a", 1000, 1.0, 1));
  b.Add(1, Record("b", 1000, 1.0, 1));
  const int64_t a = b.points()[0].series_id;
  b.DropSeries({a}, "collision");
  ASSERT_EQ(b.points().size(), 1u);
  ASSERT_EQ(b.rejections().size(), 1u);
  EXPECT_EQ(b.rejections()[0].reason, v1::REJECT_REASON_SERIES_COLLISION);
  EXPECT_EQ(b.series().size(), 2u);
}

TEST(BatchBuilder, PointsAndSeriesAreThoseOfTheSharedMapping) {
  // Events whose names the memo must tell apart: a device that changes its dimensions and
  // back, a measure that changes kind, names and values that need escaping, a device_id
  // dimension, dimensions and measures in any order; built in two batches that share the
  // memo, as the writer's batches do.
  std::vector<v1::Event> events;
  auto add = [&](const std::string& device, std::map<std::string, std::string> dims,
                 std::map<std::string, v1::MeasureValue> measures, int64_t s) {
    v1::Event& e = events.emplace_back();
    e.set_device_id(device);
    e.set_time(1'700'000'000'000 + s * 1000);
    e.set_ingest_time_us(1'700'000'000'000'000 + s * 1'000'000 + (s % 2) * 3'600'000'000);
    if (s % 3 == 0) e.set_version(s);
    for (const auto& [k, v] : dims) (*e.mutable_dimensions())[k] = v;
    for (const auto& [k, v] : measures) (*e.mutable_measures())[k] = v;
  };
  v1::MeasureValue number, count, on, text;
  number.set_double_value(1.5);
  count.set_int64_value(-7);
  on.set_bool_value(true);
  text.set_string_value("ok");
  add("d1", {}, {{"temp", number}, {"hum", count}}, 1);
  add("d1", {{"site", "a"}}, {{"temp", number}}, 2);
  add("d1", {{"site", "b"}}, {{"temp", on}, {"state", text}}, 3);
  add("d1", {{"site", "a"}}, {{"temp", text}, {"m{x}=\\,\"", number}}, 4);
  add("d\"2", {{"k=\"{}", "v\\\""}, {"device_id", "override"}}, {{"a,b", count}}, 5);
  add("d1", {}, {{"temp", number}, {"hum", on}}, 6);
  add("d3", {{"z", "1"}, {"a", "2"}}, {{"x", number}, {"b", text}}, 7);
  add("d3", {{"a", "2"}, {"z", "1"}}, {{"b", number}}, 8);

  series::SeriesNames names;
  for (size_t half : {size_t{0}, events.size() / 2}) {
    BatchBuilder b(absl::Minutes(15), 0, &names);
    std::vector<std::string> records;
    for (size_t i = half; i < half + events.size() / 2; ++i) {
      records.push_back(events[i].SerializeAsString());
    }
    for (size_t i = 0; i < records.size(); ++i) b.Add(i, records[i]);
    ASSERT_TRUE(b.rejections().empty());
    std::map<int64_t, SeriesRow> rows;
    for (const SeriesRow& r : b.series()) rows[r.series_id] = r;
    size_t next = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      absl::StatusOr<std::vector<series::MappedPoint>> want =
          series::EventToPoints(events[half + i], absl::Minutes(15));
      ASSERT_TRUE(want.ok());
      for (const series::MappedPoint& p : *want) {
        ASSERT_LT(next, b.points().size());
        const StagedPoint& got = b.points()[next++];
        EXPECT_EQ(got.source, i);
        EXPECT_EQ(got.series_id, p.series_id) << p.canonical_key;
        EXPECT_EQ(got.measure_name, p.measure_name);
        EXPECT_EQ(got.time_us, p.time_us);
        EXPECT_TRUE(SameValue(got.value, p.value)) << p.canonical_key;
        EXPECT_EQ(got.version, p.version);
        EXPECT_EQ(got.ingest_time_us, p.ingest_time_us);
        const SeriesRow& row = rows[p.series_id];
        EXPECT_EQ(row.canonical_key, p.canonical_key);
        EXPECT_EQ(row.measure_name, p.measure_name);
        EXPECT_EQ(row.device_id, p.dimensions.at("device_id"));
        EXPECT_EQ(row.dimensions_json, nlohmann::json(p.dimensions).dump());
      }
    }
    EXPECT_EQ(next, b.points().size());
  }
}

TEST(SameValue, ComparesTypeAndValue) {
  v1::MeasureValue a, b;
  a.set_double_value(1);
  b.set_int64_value(1);
  EXPECT_FALSE(SameValue(a, b));
  b.set_double_value(1);
  EXPECT_TRUE(SameValue(a, b));
}

TEST(Incarnation, KafkaLostHistoryOnlyWhenItsOffsetsCannotCoverTheStore) {
  using kafka::GroupPartitionOffsets;
  // Normal: the group committed at or below what the store holds, and the partition goes on.
  EXPECT_FALSE(KafkaLostHistory({{0, 500}, {1, 20}}, {{0, {480, 700}}, {1, {20, 20}}}));
  // A fresh deployment: nothing stored yet.
  EXPECT_FALSE(KafkaLostHistory({}, {{0, {-1, 0}}}));
  EXPECT_FALSE(KafkaLostHistory({{0, 0}}, {{0, {-1, 0}}}));
  // The broker restarted empty: no committed offset, and the partition ends before the store.
  EXPECT_TRUE(KafkaLostHistory({{0, 500}}, {{0, {-1, 3}}}));
  // The group's offsets survived but the topic was recreated.
  EXPECT_TRUE(KafkaLostHistory({{0, 500}}, {{0, {480, 3}}}));
  // The topic is gone, or lost a partition.
  EXPECT_TRUE(KafkaLostHistory({{0, 500}}, {}));
  EXPECT_TRUE(KafkaLostHistory({{0, 5}, {3, 5}}, {{0, {5, 9}}}));
}

}  // namespace
}  // namespace tidemark::writer
