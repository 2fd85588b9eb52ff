#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/metrics/health.h"
#include "gtest/gtest.h"
#include "tests/unit/eventually.h"

namespace tidemark::metrics {
namespace {

using testing::Eventually;

TEST(HealthMonitor, FollowsTheCheck) {
  Registry registry;
  std::atomic<bool> healthy{false};
  HealthMonitor health(
      [&] { return healthy ? absl::OkStatus() : absl::UnavailableError("no broker"); }, registry,
      spdlog::default_logger(), absl::Milliseconds(10));
  ASSERT_TRUE(Eventually([&] { return health.Current().message() == "no broker"; }));
  healthy = true;
  ASSERT_TRUE(Eventually([&] { return health.Current().ok(); }));
  EXPECT_NE(registry.Render().find("tidemark_serving 1"), std::string::npos);
}

// A check that never returns (a server that accepts packets but never answers) must not leave
// the last answer, SERVING, standing: past the stall limit the service is NOT_SERVING, the
// gauge and the listener (the gRPC health service) say so, and the check's return restores it.
TEST(HealthMonitor, ACheckThatDoesNotAnswerTurnsNotServing) {
  Registry registry;
  std::atomic<int> calls{0};
  absl::Notification release;
  // Declared before the monitor, whose threads use them until it is destroyed.
  absl::Mutex mu;
  std::vector<bool> told;
  HealthMonitor health(
      [&] {
        if (++calls == 2) release.WaitForNotification();
        return absl::OkStatus();
      },
      registry, spdlog::default_logger(), absl::Milliseconds(10), absl::Seconds(1));
  // Runs before the monitor's destructor, which waits for the check, even on a failed assert.
  auto unblock = absl::MakeCleanup([&] {
    if (!release.HasBeenNotified()) release.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return calls >= 2; }));
  health.SetListener([&](bool serving) {
    absl::MutexLock lock(&mu);
    told.push_back(serving);
  });
  ASSERT_TRUE(Eventually([&] { return !health.Current().ok(); }));
  EXPECT_EQ(health.Current().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(health.Current().message().find("has not answered"), std::string::npos)
      << health.Current();
  EXPECT_NE(registry.Render().find("tidemark_serving 0"), std::string::npos);
  EXPECT_EQ(calls.load(), 2);  // still the same check
  release.Notify();
  ASSERT_TRUE(Eventually([&] { return health.Current().ok(); }));
  EXPECT_NE(registry.Render().find("tidemark_serving 1"), std::string::npos);
  health.SetListener(nullptr);
  absl::MutexLock lock(&mu);
  // Told at once of the current state (SERVING: the first check answered), then the stall,
  // then the return.
  EXPECT_EQ(told, (std::vector<bool>{true, false, true}));
}

// A stalled check that can be interrupted is: it fails at once, and the next check, started
// afresh, restores SERVING without waiting on the stuck one.
TEST(HealthMonitor, AStalledCheckIsInterruptedAndTheNextStartsAfresh) {
  Registry registry;
  std::atomic<int> calls{0};
  std::atomic<int> interrupts{0};
  absl::Notification interrupted;
  HealthMonitor health(
      [&] {
        if (++calls != 2) return absl::OkStatus();
        interrupted.WaitForNotification();
        return absl::UnavailableError("ended early");
      },
      [&] {
        ++interrupts;
        if (!interrupted.HasBeenNotified()) interrupted.Notify();
      },
      registry, spdlog::default_logger(), absl::Milliseconds(10), absl::Seconds(1));
  // Runs before the monitor's destructor, even on a failed assert.
  auto unblock = absl::MakeCleanup([&] {
    if (!interrupted.HasBeenNotified()) interrupted.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return calls >= 2; }));
  ASSERT_TRUE(Eventually([&] { return calls >= 3 && health.Current().ok(); }));
  EXPECT_EQ(interrupts.load(), 1);
}

// Destroying the monitor (at shutdown) interrupts a check in progress instead of waiting on it
// for ever, before any stall is reported.
TEST(HealthMonitor, StoppingInterruptsACheckInProgress) {
  Registry registry;
  std::atomic<int> calls{0};
  absl::Notification released;
  auto health = std::make_unique<HealthMonitor>(
      [&] {
        if (++calls == 2) released.WaitForNotification();
        return absl::OkStatus();
      },
      [&] {
        if (!released.HasBeenNotified()) released.Notify();
      },
      registry, spdlog::default_logger(), absl::Milliseconds(10), absl::Hours(1));
  ASSERT_TRUE(Eventually([&] { return calls >= 2; }));
  absl::Notification stopped;
  std::thread stopper([&] {
    health.reset();
    stopped.Notify();
  });
  // A generous bound, so that a regression fails the test instead of hanging it.
  const bool stopped_in_time = stopped.WaitForNotificationWithTimeout(absl::Seconds(60));
  if (!released.HasBeenNotified()) released.Notify();
  stopper.join();
  EXPECT_TRUE(stopped_in_time);
  EXPECT_EQ(calls.load(), 2);  // no check starts once stopping
}

// A slow check that answers within the limit is not a stall.
TEST(HealthMonitor, ASlowCheckWithinTheLimitIsNotAStall) {
  Registry registry;
  std::atomic<int> calls{0};
  std::atomic<bool> turned_down{false};
  HealthMonitor health(
      [&] {
        ++calls;
        absl::SleepFor(absl::Milliseconds(50));
        return absl::OkStatus();
      },
      registry, spdlog::default_logger(), absl::Milliseconds(1), absl::Seconds(5));
  ASSERT_TRUE(Eventually([&] { return health.Current().ok(); }));
  health.SetListener([&](bool serving) {
    if (!serving) turned_down = true;
  });
  ASSERT_TRUE(Eventually([&] { return calls >= 10; }));
  EXPECT_FALSE(turned_down);
  EXPECT_TRUE(health.Current().ok());
}

}  // namespace
}  // namespace tidemark::metrics

namespace tidemark::metrics {
namespace {

// A service that fails to start right after its metrics server (its gRPC port in use) stops
// that server at once: httplib ignored a stop before its loop ran, and the join hung for ever.
// Each stop here comes within microseconds of the start.
// A Unix timestamp keeps its seconds (printf's %g would print 1.79657e+09, 83 minutes wide).
TEST(Registry, GaugesKeepEveryDigit) {
  Registry registry;
  registry.AddGauge("t_seconds", "a time").Set(1796567890.25);
  registry.AddGauge("small", "a fraction").Set(0.1);
  registry.AddGauge("zero", "nothing");
  registry.AddGauge("unbounded", "infinite").Set(std::numeric_limits<double>::infinity());
  const std::string page = registry.Render();
  EXPECT_NE(page.find("\nt_seconds 1796567890.25\n"), std::string::npos) << page;
  EXPECT_NE(page.find("\nsmall 0.1\n"), std::string::npos) << page;
  EXPECT_NE(page.find("\nzero 0\n"), std::string::npos) << page;
  EXPECT_NE(page.find("\nunbounded +Inf\n"), std::string::npos) << page;
  EXPECT_EQ(SampleValue(std::nan("")), "NaN");
  const std::string process = ProcessMetricsText();
  const std::string name = "\nprocess_start_time_seconds ";
  const size_t at = process.find(name);
  ASSERT_NE(at, std::string::npos) << process;
  const size_t from = at + name.size();
  const std::string start = process.substr(from, process.find('\n', from) - from);
  EXPECT_EQ(start.find('e'), std::string::npos) << start;
  EXPECT_GT(std::stod(start), 1.7e9) << start;
}

TEST(MetricsServer, StopsWhenStoppedRightAfterStarting) {
  Registry registry;
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start(registry, "127.0.0.1", 0);
    ASSERT_TRUE(server.ok()) << server.status();
  }
  // One that never started (its port is in use) stops too.
  absl::StatusOr<std::unique_ptr<MetricsServer>> first =
      MetricsServer::Start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(MetricsServer::Start(registry, "127.0.0.1", (*first)->port()).ok());
}

}  // namespace
}  // namespace tidemark::metrics
