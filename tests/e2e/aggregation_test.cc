// Window aggregates end to end: the real binaries, PostgreSQL and the development broker.
// After draining, every stored aggregate must equal a SQL batch recomputation from the stored
// raw points of its window, and every window that has points must have an aggregate —
// whatever the lateness, duplication, clock skew, crashes and rebalances on the way.
#include <signal.h>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

// Small windows and lateness so that a run of seconds exercises every path: on time, late
// within lateness (3 s late), late beyond it (15 s late), and minutes late.
const std::vector<std::string> kAggregatorFlags = {"--windows=5s,10s", "--max_out_of_orderness=1s",
                                                   "--allowed_lateness=5s", "--idle_timeout=2s",
                                                   "--commit_interval=500ms"};

// Samples stored versions and fails if any ever decreases.
class VersionWatch {
 public:
  explicit VersionWatch(Stack& stack) : stack_(stack) {}
  void Sample() {
    const std::string rows = stack_.Sql(
        "SELECT series_id || '/' || extract(epoch from window_size) || '/' ||"
        " extract(epoch from window_start) || ' ' || version FROM aggregates");
    for (absl::string_view line : absl::StrSplit(rows, '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, ' ');
      const int64_t v = std::stoll(kv.second);
      int64_t& last = seen_[kv.first];
      EXPECT_GE(v, last) << "version went backwards for " << kv.first;
      last = std::max(last, v);
    }
  }
  size_t windows() const { return seen_.size(); }

 private:
  Stack& stack_;
  std::map<std::string, int64_t> seen_;
};

// Two simulators over the same devices: one sends 10% of records 15 s late (beyond the 5 s
// lateness), the other 20% 3 s late (within it); 10% of devices run 30 minutes ahead.
std::vector<std::unique_ptr<testing::ChildProcess>> StartTraffic(Stack& stack,
                                                                 const std::string& duration) {
  std::vector<std::unique_ptr<testing::ChildProcess>> sims;
  sims.push_back(stack.StartSimulator(
      {"--devices=30", "--rate=600", "--batch_size=50", "--duration=" + duration,
       "--percent_late=10", "--late_time=15s", "--percent_clock_ahead=10", "--seed=1"},
      "simulator-a"));
  sims.push_back(stack.StartSimulator(
      {"--devices=30", "--rate=400", "--batch_size=50", "--duration=" + duration,
       "--percent_late=20", "--late_time=3s", "--percent_clock_ahead=10", "--seed=2"},
      "simulator-b"));
  return sims;
}

// Points minutes late, for windows nobody else wrote to: repaired from nothing but them.
void SendMinutesLate(Stack& stack) {
  v1::WriteRequest req;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (int i = 0; i < 20; ++i) {
    v1::Event* e = req.add_events();
    e->set_device_id(absl::StrCat("turbine-000", 1 + i % 5));
    e->set_time(now_ms - 180'000 - i * 700);
    e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
    (*e->mutable_measures())["speed"].set_int64_value(i);
  }
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  ASSERT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.accepted(), 20);
}

void DrainAndCompare(Stack& stack, VersionWatch& watch,
                     const std::string& sizes = "(interval '5 seconds'), (interval '10 seconds')") {
  testing::OracleResult r;
  const bool matched = WaitFor(
      [&] {
        watch.Sample();
        r = testing::AggregateOracle(stack, sizes);
        return r.Matches();
      },
      absl::Seconds(90));
  EXPECT_TRUE(matched) << "windows " << r.windows << ", missing " << r.missing << ", wrong "
                       << r.wrong << ", extra " << r.extra;
  // Every path was taken.
  EXPECT_GT(std::stoll(stack.Sql("SELECT count(*) FROM aggregates")), 100);
  EXPECT_NE(stack.Sql("SELECT count(*) FROM aggregates WHERE version % 2 = 1"), "0")
      << "no window was repaired from stored points";
  EXPECT_NE(stack.Sql("SELECT count(*) FROM narrow WHERE measure_name = 'avg_temperature'"), "0");
}

TEST(Aggregation, StoredAggregatesEqualABatchRecomputation) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  VersionWatch watch(stack);
  auto sims = StartTraffic(stack, "12s");
  for (auto& s : sims) ASSERT_TRUE(s->Wait(absl::Seconds(60)).ok());
  SendMinutesLate(stack);
  DrainAndCompare(stack, watch);
}

// The reference documents' knobs: 5% of records 75 s late, 2% of clocks ahead, 2 minutes of
// allowed lateness; and points 3 minutes late, beyond it.
TEST(Aggregation, ReferenceKnobsWithDefaultLateness) {
  Stack stack(testing::SharedPgCluster(),
              {"--windows=10s", "--idle_timeout=2s", "--commit_interval=500ms"});
  stack.StartAggregator(0);
  VersionWatch watch(stack);
  const nlohmann::json summary =
      stack.RunSimulator({"--devices=50", "--rate=800", "--batch_size=50", "--max_records=9000",
                          "--duration=90s", "--percent_late=5", "--late_time=75s",
                          "--percent_clock_ahead=2"});
  // A fixed count, not a rate: a loaded machine sends slower, never fewer.
  EXPECT_EQ(summary["accepted"].get<int64_t>(), 9000);
  SendMinutesLate(stack);
  DrainAndCompare(stack, watch, "(interval '10 seconds')");
}

TEST(Aggregation, KilledThreeTimesMidStreamChangesNothing) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  VersionWatch watch(stack);
  auto sims = StartTraffic(stack, "20s");
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> ms(1500, 4000);
  for (int kill = 0; kill < 3; ++kill) {
    absl::SleepFor(absl::Milliseconds(ms(rng)));
    stack.aggregator(0).Signal(SIGKILL);
    ASSERT_TRUE(stack.aggregator(0).Wait(absl::Seconds(10)).ok());
    watch.Sample();
    stack.StartAggregator(0);
  }
  for (auto& s : sims) ASSERT_TRUE(s->Wait(absl::Seconds(60)).ok());
  SendMinutesLate(stack);
  DrainAndCompare(stack, watch);
}

TEST(Aggregation, TwoReplicasWithOneStoppedAndStartedMidStream) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  stack.StartAggregator(1);
  VersionWatch watch(stack);
  auto sims = StartTraffic(stack, "20s");
  absl::SleepFor(absl::Seconds(5));
  stack.aggregator(1).Signal(SIGTERM);  // its partitions move to replica 0
  ASSERT_TRUE(stack.aggregator(1).Wait(absl::Seconds(20)).ok());
  watch.Sample();
  absl::SleepFor(absl::Seconds(3));
  stack.StartAggregator(1);  // and some move back
  for (auto& s : sims) ASSERT_TRUE(s->Wait(absl::Seconds(60)).ok());
  SendMinutesLate(stack);
  DrainAndCompare(stack, watch);
}

// One device in 50 with a clock 10 minutes ahead, below the 15-minute correction: its points
// move its partition's watermark only up to their ingest time, so the other devices' on-time
// points are neither late nor repaired, and the oracle holds.
TEST(Aggregation, AClockMinutesAheadDoesNotSendOthersToRepair) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  VersionWatch watch(stack);
  const nlohmann::json summary = stack.RunSimulator(
      {"--devices=100", "--turbine_share=0.5", "--rate=600", "--batch_size=50",
       "--max_records=6000", "--duration=60s", "--percent_late=0", "--percent_clock_ahead=2",
       "--clock_ahead=10m", "--seed=3"});
  EXPECT_EQ(summary["accepted"].get<int64_t>(), 6000);
  testing::OracleResult r;
  EXPECT_TRUE(WaitFor(
      [&] {
        watch.Sample();
        r = testing::AggregateOracle(stack, "(interval '5 seconds'), (interval '10 seconds')");
        return r.Matches();
      },
      absl::Seconds(90)))
      << "windows " << r.windows << ", missing " << r.missing << ", wrong " << r.wrong
      << ", extra " << r.extra;
  const int64_t windows = std::stoll(stack.Sql("SELECT count(*) FROM aggregates"));
  const int64_t repaired =
      std::stoll(stack.Sql("SELECT count(*) FROM aggregates WHERE version % 2 = 1"));
  EXPECT_GT(windows, 100);
  EXPECT_LE(repaired * 100, windows) << repaired << " of " << windows << " windows repaired";
  // The device ahead did send: its points sit in windows that have not ended yet.
  EXPECT_NE(stack.Sql("SELECT count(*) FROM points WHERE time > now() + interval '5 minutes'"), "0");
}

}  // namespace
}  // namespace tidemark::e2e
