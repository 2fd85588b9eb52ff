#include "services/timestream-writer/writer_core.h"

#include "services/timestream-writer/incarnation.h"

#include "gtest/gtest.h"

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
