// The gRPC load balancer of the local stack and of compose (deploy/nginx, Debian's nginx):
// two ingest and two query replicas behind it, the simulator, a writing client and the CLI
// going through it, and one ingest replica killed mid-stream. Every write that was
// acknowledged must be stored; a write that failed may or may not have been.
#include <signal.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/support/nginx.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"
#include "tidemark/v1/ingest.grpc.pb.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::e2e {
namespace {

using testing::ChildProcess;
using testing::FreePort;
using testing::Stack;
using testing::MetricsPort;
using testing::WaitFor;

constexpr char kMeasure[] = "lb_check";
constexpr int kDevices = 5;
constexpr int kEventsPerWrite = 10;

// The value of an unlabelled counter on a service's /metrics page; -1 if absent.
double MetricValue(int port, const std::string& name) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      double v = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
    }
  }
  return -1;
}

// Runs the CLI to completion; returns its exit code and output.
std::pair<int, std::string> RunCli(Stack& stack, const std::string& name,
                                   const std::vector<std::string>& args) {
  auto cli = stack.Start(name, Stack::Binary("tools/cli/tidemark"), args, {});
  auto code = cli->Wait(absl::Seconds(60));
  return {code.ok() ? *code : -1, cli->Log()};
}

// The (device, time) of every stored point of kMeasure, read through `query`.
std::set<std::pair<std::string, int64_t>> StoredKeys(v1::QueryService::Stub& query, bool* ok) {
  std::set<std::pair<std::string, int64_t>> keys;
  v1::ReadPointsRequest req;
  req.mutable_selector()->set_measure_name(kMeasure);
  req.mutable_range()->set_start_us(0);
  req.set_page_size(10000);
  *ok = true;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ReadPointsResponse resp;
    if (!query.ReadPoints(&ctx, req, &resp).ok()) {
      *ok = false;
      return keys;
    }
    for (const auto& sp : resp.series()) {
      const std::string device = sp.series().dimensions().at("device_id");
      for (const auto& p : sp.points()) keys.insert({device, p.time_us()});
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return keys;
}

TEST(LoadBalancer, ReplicasBehindNginxLoseNoAcknowledgedEventWhenOneIsKilled) {
  testing::PgCluster& pg = testing::SharedPgCluster();
  Stack stack(pg);
  // The stack's ingest is replica A; B, and two query replicas, are started here.
  const int ingest_b_port = FreePort();
  auto ingest_b = stack.Start(
      "ingest-b", Stack::Binary("services/ingest/ingest"),
      {absl::StrCat("--listen=127.0.0.1:", ingest_b_port), "--delivery_timeout=3s"},
      {{"TIDEMARK_KAFKA_BROKERS", stack.brokers()}});
  std::vector<int> query_ports = {FreePort(), FreePort()};
  std::vector<std::unique_ptr<ChildProcess>> queries;
  for (int i = 0; i < 2; ++i) {
    queries.push_back(stack.Start(absl::StrCat("query-", i), Stack::Binary("services/query/query"),
                                  {absl::StrCat("--listen=127.0.0.1:", query_ports[i])},
                                  {{"TIDEMARK_PG_DSN", pg.Dsn(stack.db(), "tidemark_query")}}));
  }
  auto lb = testing::GrpcLoadBalancer::Start(stack.dir() + "/nginx",
                                             {stack.ingest_port(), ingest_b_port}, query_ports);
  ASSERT_NE(lb, nullptr);
  const std::string ingest_lb = absl::StrCat("127.0.0.1:", lb->ingest_port());
  const std::string query_lb = absl::StrCat("127.0.0.1:", lb->query_port());

  // The probe answers through nginx for the whole server and for each service by name.
  ASSERT_TRUE(WaitFor(
      [&] {
        return RunCli(stack, "health-ingest",
                      {"health", ingest_lb, "--service=tidemark.v1.IngestService"})
                       .first == 0 &&
               RunCli(stack, "health-query", {"health", query_lb, "--service=tidemark.v1.QueryService"})
                       .first == 0;
      },
      absl::Seconds(30)))
      << lb->Log();
  const int metrics_a = MetricsPort(stack.ingest_process());
  const int metrics_b = MetricsPort(*ingest_b);
  ASSERT_GT(metrics_a, 0);
  ASSERT_GT(metrics_b, 0);

  auto simulator = stack.StartSimulator({absl::StrCat("--ingest=", ingest_lb), "--devices=20",
                                         "--rate=1000", "--duration=8s", "--batch_size=50"});

  // A client writing unique events through nginx, remembering which were acknowledged.
  auto channel = grpc::CreateChannel(ingest_lb, grpc::InsecureChannelCredentials());
  auto ingest = v1::IngestService::NewStub(channel);
  absl::Mutex mu;
  std::set<std::pair<std::string, int64_t>> acked;
  std::atomic<int> failed_writes{0}, acked_after_kill{0};
  std::atomic<bool> killed{false};
  const int64_t base_ms = absl::ToUnixMillis(absl::Now()) - 60'000;
  std::thread writer([&] {
    const absl::Time until = absl::Now() + absl::Seconds(8);
    for (int64_t seq = 0; absl::Now() < until; seq += kEventsPerWrite) {
      v1::WriteRequest req;
      for (int i = 0; i < kEventsPerWrite; ++i) {
        v1::Event* e = req.add_events();
        e->set_device_id(absl::StrCat("lb-device-", (seq + i) % kDevices));
        e->set_time(base_ms + seq + i);
        e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
        (*e->mutable_measures())[kMeasure].set_double_value(static_cast<double>(seq + i));
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::WriteResponse resp;
      const bool was_killed = killed.load();
      const grpc::Status s = ingest->Write(&ctx, req, &resp);
      if (!s.ok() || resp.accepted() != kEventsPerWrite) {
        ++failed_writes;
        continue;
      }
      if (was_killed) ++acked_after_kill;
      absl::MutexLock lock(&mu);
      for (const v1::Event& e : req.events()) acked.insert({e.device_id(), e.time() * 1000});
      absl::SleepFor(absl::Milliseconds(5));
    }
  });

  // Both replicas take traffic before one of them dies.
  ASSERT_TRUE(WaitFor(
      [&] {
        return MetricValue(metrics_a, "tidemark_ingest_requests_total") > 0 &&
               MetricValue(metrics_b, "tidemark_ingest_requests_total") > 0;
      },
      absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(2));
  stack.ingest_process().Signal(SIGKILL);
  killed = true;
  writer.join();
  auto sim_code = simulator->Wait(absl::Seconds(60));
  ASSERT_TRUE(sim_code.ok());
  const nlohmann::json summary = testing::SimulatorSummary(simulator->Log());
  ASSERT_FALSE(summary.is_null()) << simulator->Log();

  // nginx moved every later call to the surviving replica.
  EXPECT_GT(acked_after_kill.load(), 10) << "failed writes: " << failed_writes.load();
  EXPECT_GT(static_cast<int64_t>(summary["accepted"]), 1000) << summary.dump();
  ASSERT_GT(acked.size(), 100u);

  // Every acknowledged event is stored and readable through nginx's query replicas.
  auto query_channel = grpc::CreateChannel(query_lb, grpc::InsecureChannelCredentials());
  auto query = v1::QueryService::NewStub(query_channel);
  std::vector<std::pair<std::string, int64_t>> missing;
  const bool all_stored = WaitFor(
      [&] {
        bool ok = false;
        const auto stored = StoredKeys(*query, &ok);
        if (!ok) return false;
        missing.clear();
        for (const auto& k : acked) {
          if (!stored.contains(k)) missing.push_back(k);
        }
        return missing.empty();
      },
      absl::Seconds(60));
  EXPECT_TRUE(all_stored) << missing.size() << " of " << acked.size()
                          << " acknowledged events missing, e.g. "
                          << (missing.empty() ? "" : missing[0].first) << " "
                          << (missing.empty() ? 0 : missing[0].second);
  // The simulator's acknowledged points are all there too (failed calls may add more).
  EXPECT_TRUE(WaitFor(
      [&] {
        return stack.CountPoints() >= static_cast<int64_t>(summary["points_accepted"]) +
                                          static_cast<int64_t>(acked.size());
      },
      absl::Seconds(60)))
      << stack.CountPoints() << " stored; simulator " << summary.dump();

  // The CLI reads through nginx too, and a probe of a killed replica's port fails.
  const auto [cli_code, cli_out] =
      RunCli(stack, "cli-points",
             {"points", absl::StrCat("--query=", query_lb), absl::StrCat("--measure=", kMeasure),
              "--since=1h", "--format=csv", "--limit=0"});
  EXPECT_EQ(cli_code, 0) << cli_out;
  EXPECT_GE(static_cast<size_t>(std::count(cli_out.begin(), cli_out.end(), '\n')), acked.size())
      << cli_out.substr(0, 2000);
  const auto [dead_code, dead_out] =
      RunCli(stack, "health-dead",
             {"health", absl::StrCat("127.0.0.1:", stack.ingest_port()), "--timeout=2s"});
  EXPECT_EQ(dead_code, 1) << dead_out;
  EXPECT_NE(dead_out.find("UNAVAILABLE"), std::string::npos) << dead_out;
}

}  // namespace
}  // namespace tidemark::e2e
