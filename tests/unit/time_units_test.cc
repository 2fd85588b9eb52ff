#include "common/time/time_units.h"

#include "gtest/gtest.h"

namespace tidemark::time {
namespace {

TEST(TimeUnits, ConvertsEveryUnitToMicros) {
  EXPECT_EQ(*ToMicros(1609757175, v1::TIME_UNIT_SECONDS), 1609757175000000);
  EXPECT_EQ(*ToMicros(1609757175225, v1::TIME_UNIT_MILLISECONDS), 1609757175225000);
  EXPECT_EQ(*ToMicros(1609757175225, v1::TIME_UNIT_UNSPECIFIED), 1609757175225000);
  EXPECT_EQ(*ToMicros(1609757175225499, v1::TIME_UNIT_MICROSECONDS), 1609757175225499);
  EXPECT_EQ(*ToMicros(1609757175225499123, v1::TIME_UNIT_NANOSECONDS), 1609757175225499);
}

TEST(TimeUnits, NegativeNanosecondsRoundTowardNegativeInfinity) {
  EXPECT_EQ(*ToMicros(-1, v1::TIME_UNIT_NANOSECONDS), -1);
  EXPECT_EQ(*ToMicros(-1000, v1::TIME_UNIT_NANOSECONDS), -1);
}

TEST(TimeUnits, OverflowIsAnError) {
  EXPECT_EQ(ToMicros(INT64_MAX / 10, v1::TIME_UNIT_SECONDS).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(TimeUnits, TimesFurtherThanTheBoundFromNineteenSeventyAreErrors) {
  EXPECT_EQ(*ToMicros(kMaxTimeMagnitudeUs, v1::TIME_UNIT_MICROSECONDS), kMaxTimeMagnitudeUs);
  EXPECT_EQ(*ToMicros(-kMaxTimeMagnitudeUs, v1::TIME_UNIT_MICROSECONDS), -kMaxTimeMagnitudeUs);
  EXPECT_EQ(ToMicros(kMaxTimeMagnitudeUs + 1, v1::TIME_UNIT_MICROSECONDS).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ToMicros(-kMaxTimeMagnitudeUs - 1, v1::TIME_UNIT_MICROSECONDS).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(ToMicros(INT64_MIN + 1, v1::TIME_UNIT_MICROSECONDS).ok());
  EXPECT_FALSE(FractionalToMicros(-1e18 * 5, v1::TIME_UNIT_MICROSECONDS).ok());
  EXPECT_TRUE(FractionalToMicros(-1e18 * 4, v1::TIME_UNIT_MICROSECONDS).ok());
}

TEST(TimeUnits, FractionalMillisecondsKeepMicrosecondPrecision) {
  // The reference simulator's "Time": 1609757175225.499
  EXPECT_EQ(*FractionalToMicros(1609757175225.499, v1::TIME_UNIT_MILLISECONDS), 1609757175225499);
  EXPECT_EQ(*FractionalToMicros(1.5, v1::TIME_UNIT_SECONDS), 1500000);
  EXPECT_FALSE(FractionalToMicros(std::nan(""), v1::TIME_UNIT_SECONDS).ok());
}

TEST(TimeUnits, ParsesUnitNamesAsDevicesSendThem) {
  EXPECT_EQ(*ParseTimeUnit("MILLISECONDS"), v1::TIME_UNIT_MILLISECONDS);
  EXPECT_EQ(*ParseTimeUnit("seconds"), v1::TIME_UNIT_SECONDS);
  EXPECT_EQ(*ParseTimeUnit("us"), v1::TIME_UNIT_MICROSECONDS);
  EXPECT_EQ(*ParseTimeUnit("NANOSECONDS"), v1::TIME_UNIT_NANOSECONDS);
  EXPECT_FALSE(ParseTimeUnit("fortnights").ok());
}

TEST(FutureClock, KeepsEventTimeUpToTheLead) {
  const int64_t ingest = 1'000'000'000'000;
  const int64_t lead = absl::ToInt64Microseconds(kDefaultFutureClockLead);
  CorrectedTime t = CorrectFutureClock(ingest + lead, ingest, kDefaultFutureClockLead);
  EXPECT_EQ(t.time_us, ingest + lead);
  EXPECT_FALSE(t.corrected);
  t = CorrectFutureClock(ingest - 75'000'000, ingest, kDefaultFutureClockLead);
  EXPECT_EQ(t.time_us, ingest - 75'000'000);
  EXPECT_FALSE(t.corrected);
}

TEST(FutureClock, UsesIngestTimeBeyondTheLead) {
  const int64_t ingest = 1'000'000'000'000;
  const int64_t lead = absl::ToInt64Microseconds(kDefaultFutureClockLead);
  CorrectedTime t = CorrectFutureClock(ingest + lead + 1, ingest, kDefaultFutureClockLead);
  EXPECT_EQ(t.time_us, ingest);
  EXPECT_TRUE(t.corrected);
}

}  // namespace
}  // namespace tidemark::time
