#include "common/retry/backoff.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tidemark::retry {
namespace {

TEST(Backoff, GrowsToTheMaximumWithJitterBelowEachStep) {
  Backoff b({.initial = absl::Milliseconds(100), .max = absl::Seconds(1), .jitter = 0.2});
  absl::Duration step = absl::Milliseconds(100);
  for (int i = 0; i < 8; ++i) {
    const absl::Duration d = b.Next();
    EXPECT_LE(d, step) << i;
    EXPECT_GE(d, step * 0.8) << i;
    step = std::min(step * 2, absl::Seconds(1));
  }
  EXPECT_EQ(b.attempts(), 8);
  b.Reset();
  EXPECT_LE(b.Next(), absl::Milliseconds(100));
}

TEST(Backoff, SleepUnlessStoppedWakesOnStop) {
  std::atomic<bool> stop{true};
  const absl::Time start = absl::Now();
  EXPECT_FALSE(SleepUnlessStopped(absl::Seconds(30), stop));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  stop = false;
  EXPECT_TRUE(SleepUnlessStopped(absl::Milliseconds(1), stop));
}

}  // namespace
}  // namespace tidemark::retry
