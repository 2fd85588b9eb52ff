// The timestream-writer killed with SIGKILL in the middle of storing an aggregate batch and
// in the middle of a repair, while late data keeps repairs coming. To land the kill inside
// those transactions rather than between them, the test holds a SHARE lock on `aggregates`:
// the writer's aggregate upsert and its repair then wait on the lock with their staging rows
// copied and their transactions open, which pg_stat_activity shows; the writer is killed
// there. Afterwards every acknowledged event is stored once and the oracle holds (DESIGN §3).
#include <signal.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pqxx/pqxx"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/load_generator.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

const std::vector<std::string> kAggregatorFlags = {"--windows=5s,10s", "--max_out_of_orderness=1s",
                                                   "--allowed_lateness=5s", "--idle_timeout=2s",
                                                   "--commit_interval=500ms"};

// The writer's transactions waiting on the test's lock, by what they store.
struct Waiting {
  int64_t aggregate_batches = 0, repairs = 0;
};

Waiting WaitingOnLock(pqxx::connection& conn) {
  pqxx::nontransaction tx(conn);
  const pqxx::row r = tx.exec1(
      "SELECT count(*) FILTER (WHERE query LIKE '%FROM staging_aggregates%'),"
      " count(*) FILTER (WHERE query LIKE '%FROM staging_repairs%')"
      " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
      " AND state = 'active' AND wait_event_type = 'Lock' AND xact_start IS NOT NULL");
  return {r[0].as<int64_t>(), r[1].as<int64_t>()};
}

// "partitions assigned" lines in the writer's log (every run appends to it).
int64_t Assignments(Stack& stack) {
  const std::string log = stack.writer().Log();
  int64_t n = 0;
  for (size_t at = log.find("partitions assigned"); at != std::string::npos;
       at = log.find("partitions assigned", at + 1)) {
    ++n;
  }
  return n;
}

void KillWriter(Stack& stack) {
  stack.writer().Signal(SIGKILL);
  const absl::StatusOr<int> code = stack.writer().Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  ASSERT_EQ(*code, 128 + SIGKILL);
}

TEST(WriterCrash, KilledMidAggregateBatchAndMidRepairChangesNothing) {
  Stack stack(testing::SharedPgCluster(), kAggregatorFlags);
  stack.StartAggregator(0);
  // A quarter of the events 15 s late, beyond the 5 s lateness: a steady stream of repairs.
  testing::LoadGenerator load(stack.ingest(),
                              {.events_per_second = 600, .percent_beyond_lateness = 25,
                               .seed = 21});
  load.Start();
  pqxx::connection watch(stack.dsn());
  pqxx::connection locker(stack.dsn());
  ASSERT_TRUE(WaitFor([&] { return stack.Sql("SELECT count(*) FROM aggregates") != "0"; },
                      absl::Seconds(30)))
      << "no aggregate stored before the first kill";

  // Two rounds; each kill lands inside both kinds of transaction at once. A restarted writer
  // gets its partitions only once the killed one's group sessions expire (10 s), so each
  // round first waits for the new writer's three loops to be assigned.
  for (int round = 0; round < 2; ++round) {
    absl::SleepFor(absl::Seconds(1));
    Waiting w;
    {
      pqxx::work lock(locker);
      lock.exec("LOCK TABLE aggregates IN SHARE MODE");
      WaitFor(
          [&] {
            w = WaitingOnLock(watch);
            return w.aggregate_batches > 0 && w.repairs > 0;
          },
          absl::Seconds(15));
      KillWriter(stack);
      lock.abort();
    }
    EXPECT_GT(w.aggregate_batches, 0) << "round " << round << ": no aggregate batch was open";
    EXPECT_GT(w.repairs, 0) << "round " << round << ": no repair was open";
    // The killed transactions never committed: their sessions end and nothing waits.
    EXPECT_TRUE(WaitFor(
        [&] {
          const Waiting after = WaitingOnLock(watch);
          return after.aggregate_batches == 0 && after.repairs == 0;
        },
        absl::Seconds(10)));
    const int64_t assigned = Assignments(stack);
    stack.StartWriter();
    ASSERT_TRUE(WaitFor([&] { return Assignments(stack) >= assigned + 3; }, absl::Seconds(60)))
        << "the restarted writer's loops were not all assigned partitions";
  }
  absl::SleepFor(absl::Seconds(2));
  load.Stop();
  ASSERT_TRUE(load.SendMinutesLate());

  testing::OracleResult oracle;
  testing::StoreCheck store;
  const bool drained = WaitFor(
      [&] {
        store = load.Check(stack.dsn());
        if (!store.Exact()) return false;
        oracle =
            testing::AggregateOracle(stack, "(interval '5 seconds'), (interval '10 seconds')");
        return oracle.Matches();
      },
      absl::Seconds(90));
  EXPECT_TRUE(drained) << store.ToString() << "; oracle: windows " << oracle.windows
                       << ", missing " << oracle.missing << ", wrong " << oracle.wrong
                       << ", extra " << oracle.extra;
  std::cerr << "stored: " << store.ToString() << "\n";
  EXPECT_EQ(load.failed_requests(), 0);
  EXPECT_NE(stack.Sql("SELECT count(*) FROM aggregates WHERE version % 2 = 1"), "0")
      << "no window was repaired from stored points";
}

}  // namespace
}  // namespace tidemark::e2e
