#include "services/timestream-writer/writer_core.h"

#include <cmath>
#include <functional>

#include "common/series/series_key.h"
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

// A 5-minute window the aggregator could emit: series m{device_id="d"}, 00:05 on day one.
v1::WindowAggregate GoodAggregate() {
  v1::WindowAggregate a;
  const std::string key = series::CanonicalKey("m", {{"device_id", "d"}});
  a.mutable_series()->set_series_id(series::SeriesId(key));
  a.mutable_series()->set_measure_name("m");
  a.mutable_series()->set_canonical_key(key);
  a.set_window_size_us(300'000'000);
  a.set_window_start_us(86'400'000'000 + 300'000'000);
  a.set_count(2);
  a.set_sum(3);
  a.set_min(1);
  a.set_max(2);
  a.set_avg(1.5);
  a.set_first(1);
  a.set_last(2);
  a.set_version(7);
  return a;
}

TEST(CheckAggregate, AcceptsWhatTheAggregatorEmits) {
  EXPECT_FALSE(CheckAggregate(GoodAggregate()).has_value());
  v1::WindowAggregate before_1970 = GoodAggregate();
  before_1970.set_window_start_us(-300'000'000);
  EXPECT_FALSE(CheckAggregate(before_1970).has_value());
  // The last aligned 5 m windows within 2^53 us of 1970, either side.
  for (const int64_t start : {9'006'600'000'000'000, -9'006'900'000'000'000}) {
    v1::WindowAggregate far = GoodAggregate();
    far.set_window_start_us(start);
    EXPECT_FALSE(CheckAggregate(far).has_value()) << start;
  }
  v1::WindowAggregate one_point = GoodAggregate();
  one_point.set_count(1);
  one_point.set_min(2);
  EXPECT_FALSE(CheckAggregate(one_point).has_value());
}

TEST(CheckAggregate, RefusesWhatNoTumblingWindowOfASeriesCanBe) {
  const std::vector<std::pair<std::string, std::function<void(v1::WindowAggregate&)>>> cases = {
      {"is not a multiple of window_size_us",
       [](v1::WindowAggregate& a) { a.set_window_start_us(a.window_start_us() + 60'000'000); }},
      {"is not a multiple of window_size_us",
       [](v1::WindowAggregate& a) { a.set_window_start_us(-60'000'000); }},
      {"a window has a positive size", [](v1::WindowAggregate& a) { a.set_window_size_us(0); }},
      {"a window has a positive size",
       [](v1::WindowAggregate& a) { a.set_window_size_us(-300'000'000); }},
      {"beyond the times Tidemark stores windows at",
       [](v1::WindowAggregate& a) { a.set_window_start_us(INT64_MIN); }},
      {"beyond the times Tidemark stores windows at",
       [](v1::WindowAggregate& a) { a.set_window_size_us(INT64_MAX); }},
      // Aligned, but past 2^53 us, where the store's float8 arithmetic is no longer exact.
      {"beyond the times Tidemark stores windows at",
       [](v1::WindowAggregate& a) { a.set_window_start_us(9'007'200'000'000'000); }},
      {"beyond the times Tidemark stores windows at",
       [](v1::WindowAggregate& a) { a.set_window_start_us(-9'007'200'000'000'000); }},
      {"at least one point", [](v1::WindowAggregate& a) { a.set_count(0); }},
      {"at least one point", [](v1::WindowAggregate& a) { a.set_count(-1); }},
      {"is above max", [](v1::WindowAggregate& a) { a.set_min(3); }},
      {"is not the id of canonical_key",
       [](v1::WindowAggregate& a) { a.mutable_series()->set_series_id(42); }},
      {"has no canonical_key", [](v1::WindowAggregate& a) { a.clear_series(); }},
  };
  for (const auto& [expected, change] : cases) {
    v1::WindowAggregate a = GoodAggregate();
    change(a);
    std::optional<series::Problem> p = CheckAggregate(a);
    ASSERT_NE(p, std::nullopt) << expected;
    EXPECT_EQ(p->reason, v1::REJECT_REASON_INVALID_AGGREGATE) << p->message;
    EXPECT_NE(p->message.find(expected), std::string::npos) << p->message;
  }
  for (auto set : {&v1::WindowAggregate::set_sum, &v1::WindowAggregate::set_min,
                   &v1::WindowAggregate::set_max, &v1::WindowAggregate::set_avg,
                   &v1::WindowAggregate::set_first, &v1::WindowAggregate::set_last}) {
    for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
      v1::WindowAggregate a = GoodAggregate();
      (a.*set)(bad);
      std::optional<series::Problem> p = CheckAggregate(a);
      ASSERT_NE(p, std::nullopt);
      EXPECT_EQ(p->reason, v1::REJECT_REASON_NON_FINITE_NUMBER) << p->message;
    }
  }
  v1::WindowAggregate bad_text = GoodAggregate();
  std::string key = bad_text.series().canonical_key();
  key[2] = '\0';  // a NUL inside the key
  bad_text.mutable_series()->set_canonical_key(key);
  ASSERT_NE(CheckAggregate(bad_text), std::nullopt);
  EXPECT_EQ(CheckAggregate(bad_text)->reason, v1::REJECT_REASON_INVALID_TEXT);
}

TEST(CheckLatePoint, RefusesARepairOfAWindowNoAggregateCanBe) {
  v1::LatePoint late;
  *late.mutable_series() = GoodAggregate().series();
  v1::WindowRef* w = late.add_windows();
  w->set_window_size_us(300'000'000);
  w->set_window_start_us(600'000'000);
  EXPECT_FALSE(CheckLatePoint(late).has_value());
  v1::WindowRef* misaligned = late.add_windows();
  misaligned->set_window_size_us(3'600'000'000);
  misaligned->set_window_start_us(600'000'000);
  ASSERT_NE(CheckLatePoint(late), std::nullopt);
  EXPECT_EQ(CheckLatePoint(late)->reason, v1::REJECT_REASON_INVALID_AGGREGATE);
  late.mutable_windows()->RemoveLast();
  late.mutable_series()->set_series_id(late.series().series_id() + 1);
  ASSERT_NE(CheckLatePoint(late), std::nullopt);
  EXPECT_NE(CheckLatePoint(late)->message.find("is not the id"), std::string::npos);
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
