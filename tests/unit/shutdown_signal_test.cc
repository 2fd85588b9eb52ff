#include "common/process/shutdown_signal.h"

#include <signal.h>
#include <unistd.h>

#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tidemark::process {
namespace {

// A shutdown that would take minutes (waiting on an unreachable Kafka or database) ends at
// once on a second SIGTERM, with 128 + the signal, saying why. The first signal only starts it.
TEST(ShutdownSignalDeathTest, ASecondSignalEndsALongShutdownAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ShutdownSignal signal;
        std::thread sender([] {
          kill(getpid(), SIGTERM);
          absl::SleepFor(absl::Milliseconds(300));
          kill(getpid(), SIGTERM);
        });
        sender.detach();
        if (signal.Wait() != SIGTERM) _exit(1);
        absl::SleepFor(absl::Seconds(30));  // the long shutdown
        _exit(0);
      },
      ::testing::ExitedWithCode(128 + SIGTERM), "second shutdown signal");
}

TEST(ShutdownSignalDeathTest, OneSignalLetsTheShutdownFinish) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ShutdownSignal signal;
        std::thread sender([] { kill(getpid(), SIGTERM); });
        sender.detach();
        if (signal.Wait() != SIGTERM) _exit(1);
        absl::SleepFor(absl::Milliseconds(500));
        _exit(7);
      },
      ::testing::ExitedWithCode(7), "");
}

}  // namespace
}  // namespace tidemark::process
