#include <atomic>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/timestream-writer/maintenance.h"
#include "tests/unit/eventually.h"

namespace tidemark::writer {
namespace {

using testing::Eventually;

// The calls one task received, and what it answers.
class FakeTask {
 public:
  explicit FakeTask(int failures_before_success) : failures_left_(failures_before_success) {}
  absl::Status Run() {
    absl::MutexLock lock(&mu_);
    calls_.push_back(absl::Now());
    if (failures_left_ == 0) return absl::OkStatus();
    if (failures_left_ > 0) --failures_left_;
    return absl::UnavailableError("a long read holds the detach");
  }
  std::vector<absl::Time> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int failures_left_;  // -1: fails for ever
  std::vector<absl::Time> calls_;
};

constexpr absl::Duration kFirstRetry = absl::Milliseconds(2);

TEST(WriterMaintenance, AFailingTaskIsRetriedEverLaterAndNeverHoldsTheOthers) {
  metrics::Registry registry;
  FakeTask failing(-1), fine(0);
  Maintenance maintenance(
      {{"points", [&] { return failing.Run(); }}, {"aggregates", [&] { return fine.Run(); }}},
      {.interval = absl::Hours(1), .first_retry = kFirstRetry}, registry, spdlog::default_logger());
  maintenance.Start();
  ASSERT_TRUE(Eventually([&] { return failing.calls().size() >= 6; }));
  maintenance.Stop();
  // The delays double from the first retry (2, 4, 8, 16, 32 ms ...) up to the interval, each
  // shortened by a random part of at most a fifth (retry::Backoff's jitter).
  const std::vector<absl::Time> calls = failing.calls();
  for (size_t i = 1; i < calls.size(); ++i) {
    EXPECT_GE(calls[i] - calls[i - 1], 0.8 * kFirstRetry * (1 << (i - 1))) << "retry " << i;
  }
  // The other table was kept once, and is not due again for an hour.
  EXPECT_EQ(fine.calls().size(), 1u);
  const std::string rendered = registry.Render();
  EXPECT_TRUE(absl::StrContains(
      rendered,
      absl::StrCat("tidemark_writer_maintenance_failures_total{table=\"points\"} ", calls.size())))
      << rendered;
  EXPECT_TRUE(absl::StrContains(
      rendered, "tidemark_writer_maintenance_failures_total{table=\"aggregates\"} 0"));
  EXPECT_TRUE(absl::StrContains(
      rendered, "tidemark_writer_maintenance_last_success_timestamp_seconds{table=\"points\"} 0"));
  EXPECT_FALSE(absl::StrContains(
      rendered,
      "tidemark_writer_maintenance_last_success_timestamp_seconds{table=\"aggregates\"} 0"));
}

TEST(WriterMaintenance, ATaskThatSucceedsWaitsTheIntervalAgain) {
  metrics::Registry registry;
  FakeTask task(2);
  Maintenance maintenance({{"points", [&] { return task.Run(); }}},
                          {.interval = absl::Hours(1), .first_retry = kFirstRetry}, registry,
                          spdlog::default_logger());
  maintenance.Start();
  ASSERT_TRUE(Eventually([&] { return task.calls().size() == 3; }));
  // Many first-retry delays later, still not run again.
  absl::SleepFor(kFirstRetry * 50);
  EXPECT_EQ(task.calls().size(), 3u);
}

TEST(WriterMaintenance, StopEndsTheWaitForTheNextRound) {
  metrics::Registry registry;
  FakeTask task(0);
  Maintenance maintenance({{"points", [&] { return task.Run(); }}}, {.interval = absl::Hours(1)},
                          registry, spdlog::default_logger());
  maintenance.Start();
  ASSERT_TRUE(Eventually([&] { return task.calls().size() == 1; }));
  maintenance.Stop();  // hangs for an hour if the wait ignores it
  Maintenance never_started({{"points", [&] { return task.Run(); }}}, {}, registry,
                            spdlog::default_logger());
  never_started.Stop();
  EXPECT_EQ(task.calls().size(), 1u);
}

}  // namespace
}  // namespace tidemark::writer
