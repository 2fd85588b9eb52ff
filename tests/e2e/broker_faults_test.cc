// Broker faults end to end: a three-broker development cluster whose partition leaders move
// and whose brokers go down and come back while the real ingest, aggregator and writer run.
// Afterwards every acknowledged event is stored exactly once as raw points, and every stored
// aggregate equals a batch recomputation from those points (DESIGN §3).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/load_generator.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

// Small windows and lateness so that seconds of traffic take every path: on time, late within
// the lateness (3 s), beyond it (15 s: repairs), and minutes late.
testing::StackOptions ThreeBrokers() {
  return {
      .aggregator_flags = {"--windows=5s,10s", "--max_out_of_orderness=1s", "--allowed_lateness=5s",
                           "--idle_timeout=2s", "--commit_interval=500ms"},
      .brokers = 3,
      // Longer than any outage below: ingest waits for the brokers instead of failing.
      .ingest_flags = {"--delivery_timeout=30s"}};
}

// Every consumer group of the pipeline, so that a failover moves their coordinators too.
const std::vector<std::string> kGroups = {"tidemark-aggregator", "tidemark-timestream-writer",
                                          "tidemark-timestream-writer-aggregates",
                                          "tidemark-timestream-writer-late"};

void Control(const absl::StatusOr<nlohmann::json>& r) { ASSERT_TRUE(r.ok()) << r.status(); }

int LeadersOn(const nlohmann::json& state, int broker) {
  int n = 0;
  for (const auto& [topic, leaders] : state["leaders"].items()) {
    for (const auto& l : leaders) n += l.get<int>() == broker;
  }
  return n;
}

// A process's Prometheus metrics (its log names the port), for a failure message.
std::string Metrics(testing::ChildProcess& process) {
  const std::string log = process.Log();
  const size_t at = log.find("metrics_port=");
  if (at == std::string::npos) return "(no metrics port in the log)";
  httplib::Client http("127.0.0.1", std::stoi(log.substr(at + 13)));
  http.set_read_timeout(5);
  auto res = http.Get("/metrics");
  if (!res) return "(no answer on the metrics port)";
  std::string out;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (!absl::StartsWith(line, "#") && !absl::StartsWith(line, "process_")) {
      absl::StrAppend(&out, line, "\n");
    }
  }
  return out;
}

// Waits until the store holds exactly what was acknowledged and the oracle holds.
void DrainAndCheck(Stack& stack, testing::LoadGenerator& load) {
  testing::OracleResult oracle;
  testing::StoreCheck store;
  const bool drained = WaitFor(
      [&] {
        store = load.Check(stack.dsn());
        if (!store.Exact()) return false;
        oracle = testing::AggregateOracle(stack, "(interval '5 seconds'), (interval '10 seconds')");
        return oracle.Matches();
      },
      absl::Seconds(90));
  EXPECT_TRUE(drained) << store.ToString() << "; oracle: windows " << oracle.windows << ", missing "
                       << oracle.missing << ", wrong " << oracle.wrong << ", extra " << oracle.extra
                       << "\naggregator:\n"
                       << Metrics(stack.aggregator(0)) << "writer:\n"
                       << Metrics(stack.writer());
  // Nothing more arrives later (a replay would not add rows, but a lost offset could).
  absl::SleepFor(absl::Seconds(1));
  store = load.Check(stack.dsn());
  EXPECT_TRUE(store.Exact()) << store.ToString();
  std::cerr << "stored: " << store.ToString() << "; slowest write " << load.slowest_write() << "\n";
  EXPECT_NE(stack.Sql("SELECT count(*) FROM aggregates WHERE version % 2 = 1"), "0")
      << "no window was repaired from stored points";
}

TEST(BrokerFaults, LeadersMoveAndBrokersFailOverMidStream) {
  Stack stack(testing::SharedPgCluster(), ThreeBrokers());
  testing::BrokerControl& control = stack.broker_control();
  for (size_t i = 0; i < kGroups.size(); ++i) {
    Control(control.SetGroupCoordinator(kGroups[i], static_cast<int>(i % 3) + 1));
  }
  // The mock places first leaders at random; make sure broker 2, which fails below, leads.
  absl::StatusOr<nlohmann::json> state = control.SetLeader("tidemark.raw", 0, 2);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ((*state)["brokers"].size(), 3u);
  EXPECT_EQ(LeadersOn(*state, -1), 0) << "every leader known: " << state->dump();
  EXPECT_GT(LeadersOn(*state, 2), 0);

  stack.StartAggregator(0);
  testing::LoadGenerator load(stack.ingest(), {.seed = 11});
  load.Start();
  absl::SleepFor(absl::Seconds(3));

  // A rolling leader change: every partition of every topic moves.
  Control(control.RotateLeaders());
  absl::SleepFor(absl::Seconds(3));

  // Broker 2 dies; a controller moves its leaders and coordinators away, then it returns.
  Control(control.Failover(2));
  state = control.Down(2);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(LeadersOn(*state, 2), 0);
  absl::SleepFor(absl::Seconds(4));
  Control(control.Up(2));
  absl::SleepFor(absl::Seconds(1));
  Control(control.RotateLeaders());  // broker 2 leads again
  absl::SleepFor(absl::Seconds(3));

  // The raw topic's leaders move one partition at a time, as a preferred-leader election does.
  state = control.State();
  ASSERT_TRUE(state.ok()) << state.status();
  const nlohmann::json raw_leaders = (*state)["leaders"]["tidemark.raw"];
  for (size_t p = 0; p < raw_leaders.size(); ++p) {
    Control(
        control.SetLeader("tidemark.raw", static_cast<int>(p), raw_leaders[p].get<int>() % 3 + 1));
  }
  absl::SleepFor(absl::Seconds(3));
  load.Stop();
  EXPECT_EQ(load.failed_requests(), 0) << "ingest failed writes it should have waited out";
  ASSERT_TRUE(load.SendMinutesLate());
  DrainAndCheck(stack, load);
}

TEST(BrokerFaults, BrokerDownWithoutFailoverIsWaitedOut) {
  Stack stack(testing::SharedPgCluster(), ThreeBrokers());
  testing::BrokerControl& control = stack.broker_control();
  // Broker 1 coordinates every group and leads a third of the raw topic: while it is down,
  // nobody can commit offsets and a third of the partitions cannot be produced or fetched.
  // The development cluster picks each partition's leader at random, so broker 1 led none of
  // the 12 about once in 130 clusters (then no write waited): the leaders are set here.
  for (const std::string& g : kGroups) Control(control.SetGroupCoordinator(g, 1));
  for (int p = 0; p < 12; p += 3) Control(control.SetLeader("tidemark.raw", p, 1));
  stack.StartAggregator(0);
  testing::LoadGenerator load(stack.ingest(), {.seed = 12});
  load.Start();
  absl::SleepFor(absl::Seconds(4));
  Control(control.Down(1));
  absl::SleepFor(absl::Seconds(6));
  Control(control.Up(1));
  absl::SleepFor(absl::Seconds(3));
  // And the whole cluster at once, briefly: ingest answers UNAVAILABLE meanwhile (the client
  // may retry), and none of what it refused may be stored.
  const absl::Time all_down = absl::Now();
  for (int b = 1; b <= 3; ++b) Control(control.Down(b));
  absl::SleepFor(absl::Seconds(3));
  for (int b = 1; b <= 3; ++b) Control(control.Up(b));
  absl::SleepFor(absl::Seconds(4));
  load.Stop();
  // One broker down is waited out; the outage was real: ingest held writes for its partitions.
  EXPECT_EQ(load.FailedRequestsSentBefore(all_down), 0);
  EXPECT_GE(load.slowest_write(), absl::Seconds(3));
  ASSERT_TRUE(load.SendMinutesLate());
  DrainAndCheck(stack, load);
}

// A stream whose events Kafka does not acknowledge in time ends with UNAVAILABLE then, even
// while its client sends nothing (it used to wait for the client's next message or close),
// and carries what it answered so far (the first rejections, within 2 KiB) in a trailer. The leader
// of every raw partition is down while the other brokers are up, so ingest queues the events and
// their delivery times out.
TEST(BrokerFaults, AStreamThatKafkaFailsEndsWhileItsClientWaits) {
  Stack stack(testing::SharedPgCluster(),
              testing::StackOptions{.brokers = 3, .ingest_flags = {"--delivery_timeout=2s"}});
  testing::BrokerControl& control = stack.broker_control();
  for (int p = 0; p < 12; ++p) Control(control.SetLeader("tidemark.raw", p, 2));
  Control(control.Down(2));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::WriteResponse resp;
  auto stream = stack.ingest().WriteStream(&ctx, &resp);
  // One event Kafka will not acknowledge, and 1,000 rejected (no device id): more than a
  // trailer may carry.
  v1::WriteRequest req;
  for (int i = 0; i <= 1000; ++i) {
    v1::Event& e = *req.add_events();
    e.set_device_id(i == 0 ? "stream-waits" : "");
    e.set_time(absl::ToUnixMillis(absl::Now()));
    e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
    (*e.mutable_measures())["temperature"].set_double_value(1.5);
  }
  ASSERT_TRUE(stream->Write(req));
  const absl::Time sent = absl::Now();
  const grpc::Status status = stream->Finish();  // waits for the status; the stream stays open
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "Kafka did not acknowledge"))
      << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "0 events of this stream"))
      << status.error_message();
  EXPECT_LT(absl::Now() - sent, absl::Seconds(30)) << "ended by the client's deadline";
  const std::optional<std::string> answer_bytes = testing::StreamAnswerBytes(ctx);
  ASSERT_TRUE(answer_bytes.has_value());
  v1::WriteResponse answer;
  ASSERT_TRUE(answer.ParseFromString(*answer_bytes));
  EXPECT_EQ(answer.accepted(), 0);
  ASSERT_GT(answer.rejected_size(), 0);
  EXPECT_LT(answer.rejected_size(), 1000) << "the trailer is bounded";
  EXPECT_EQ(answer.rejected_size() + answer.rejected_unlisted(), 1000);
  EXPECT_EQ(answer.rejected(0).index(), 1);
  EXPECT_LE(answer_bytes->size(), 2048u);
  Control(control.Up(2));
}

// A request that does not fit in ingest's queue to Kafka is refused whole, so that retrying
// it cannot store part of it twice: turbine readings carry no time and are stamped when they
// arrive, so a retried reading is a new point. With the raw partitions' leader down, 700
// readings wait in a queue of 1,000; 600 more are refused, and once the broker is back exactly
// the 700 are stored.
TEST(BrokerFaults, ARequestThatDoesNotFitTheQueueIsRefusedWhole) {
  Stack stack(
      testing::SharedPgCluster(),
      testing::StackOptions{.brokers = 3,
                            .ingest_flags = {"--delivery_timeout=60s", "--max_queued_events=1000",
                                             "--max_events_per_request=1000"}});
  testing::BrokerControl& control = stack.broker_control();
  for (int p = 0; p < 12; ++p) Control(control.SetLeader("tidemark.raw", p, 2));
  Control(control.Down(2));
  auto readings = [](int n, const std::string& prefix) {
    v1::WriteJsonRequest req;
    req.set_format(v1::JSON_FORMAT_TURBINE);
    for (int i = 0; i < n; ++i) {
      req.add_records(
          absl::StrCat(R"({"turbineId": ")", prefix, i % 50, R"(", "speed": )", i, "}"));
    }
    return req;
  };
  grpc::Status first_status;
  v1::WriteResponse first_resp;
  std::thread first([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
    first_status = stack.ingest().WriteJson(&ctx, readings(700, "queued-"), &first_resp);
  });
  absl::SleepFor(absl::Seconds(2));  // the 700 wait in the queue for the broker
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  const grpc::Status refused = stack.ingest().WriteJson(&ctx, readings(600, "refused-"), &resp);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "none of this request was queued"))
      << refused.error_message();
  Control(control.Up(2));
  first.join();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  EXPECT_EQ(first_resp.accepted(), 700);
  const std::string count =
      "SELECT count(*) FROM points JOIN series USING (series_id) WHERE measure_name = 'speed'";
  EXPECT_TRUE(WaitFor([&] { return stack.Sql(count) == "700"; }, absl::Seconds(60)))
      << stack.Sql(count);
  absl::SleepFor(absl::Seconds(2));  // nothing of the refused request follows
  EXPECT_EQ(stack.Sql(count), "700");
  EXPECT_EQ(stack.Sql("SELECT count(*) FROM series WHERE device_id LIKE 'refused-%'"), "0");
}

TEST(BrokerFaults, ControlInterfaceRejectsWhatDoesNotExist) {
  const std::string dir = absl::StrCat("/tmp/tidemark-devbroker-", getpid());
  std::filesystem::create_directories(dir);
  auto broker = testing::ChildProcess::Start(
      Stack::Binary("tools/devbroker/devbroker"),
      {"--brokers=3", "--control_listen=127.0.0.1:0", "--control_file=" + dir + "/control",
       "--bootstrap_file=" + dir + "/bootstrap"},
      {}, dir + "/devbroker.log");
  ASSERT_TRUE(broker.ok()) << broker.status();
  ASSERT_TRUE(
      WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); }, absl::Seconds(10)))
      << (*broker)->Log();
  std::ifstream in(dir + "/control");
  std::string address;
  std::getline(in, address);
  testing::BrokerControl control(address);
  EXPECT_FALSE(control.Down(4).ok());
  EXPECT_FALSE(control.SetLeader("tidemark.raw", 12, 1).ok());
  EXPECT_FALSE(control.SetLeader("no.such.topic", 0, 1).ok());
  EXPECT_FALSE(control.SetGroupCoordinator("g", 0).ok());
  Control(control.SetLeader("tidemark.raw", 0, 3));
  Control(control.Down(2));
  absl::StatusOr<nlohmann::json> state = control.Failover(2);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ((*state)["leaders"]["tidemark.raw"].size(), 12u);
  EXPECT_EQ((*state)["leaders"]["tidemark.raw"][0], 3);
  EXPECT_EQ(LeadersOn(*state, 2), 0);
  EXPECT_EQ((*state)["brokers"][1]["up"], false);

  // Without authentication, the controls listen on loopback only.
  auto open =
      testing::ChildProcess::Start(Stack::Binary("tools/devbroker/devbroker"),
                                   {"--control_listen=0.0.0.0:0"}, {}, dir + "/refused.log");
  ASSERT_TRUE(open.ok()) << open.status();
  const absl::StatusOr<int> code = (*open)->Wait(absl::Seconds(10));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 2) << (*open)->Log();
  broker->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tidemark::e2e
