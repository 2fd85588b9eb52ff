// Ingest throughput: events/s acknowledged over gRPC (batched Write with several calls in
// flight, and WriteStream) by the real ingest binary into the development broker, and events
// per CPU-second of the ingest process. Baseline in the same run: the same events produced
// straight to the broker with librdkafka (no gRPC, no validation) from this process.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/process.h"
#include "tidemark/v1/ingest.grpc.pb.h"

namespace {

using namespace tidemark;

constexpr int kEventsPerRequest = 500;
constexpr int kRequests = 400;  // 200,000 events per run
constexpr int kClients = 4;

v1::WriteRequest MakeRequest(int r) {
  v1::WriteRequest req;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (int i = 0; i < kEventsPerRequest; ++i) {
    v1::Event* e = req.add_events();
    e->set_device_id(absl::StrCat("device-", (r * kEventsPerRequest + i) % 1000));
    e->set_time(now_ms);
    e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
    for (const char* m : {"temperature", "humidity", "voltage", "watt"}) {
      (*e->mutable_measures())[m].set_double_value(i * 0.5);
    }
  }
  return req;
}

class Counter final : public kafka::DeliverySink {
 public:
  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err) failed++;
    done++;
  }
  std::atomic<int64_t> done{0}, failed{0};
};

}  // namespace

int main() {
  auto logger = log::MakeLogger("ingest-bench");
  const std::string dir = absl::StrCat("/tmp/tidemark-ingest-bench-", getpid());
  std::filesystem::create_directories(dir);
  auto broker =
      testing::ChildProcess::Start(absl::StrCat(TIDEMARK_BINARY_DIR, "/tools/devbroker/devbroker"),
                                   {absl::StrCat("--bootstrap_file=", dir, "/bootstrap"),
                                    "--topics=tidemark.raw:12,stream.raw:12,baseline.raw:12"},
                                   {}, dir + "/devbroker.log");
  testing::WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); }, absl::Seconds(10));
  std::string brokers;
  std::getline(std::ifstream(dir + "/bootstrap"), brokers);

  std::vector<v1::WriteRequest> requests;
  for (int r = 0; r < kRequests; ++r) requests.push_back(MakeRequest(r));
  const int64_t events = static_cast<int64_t>(kRequests) * kEventsPerRequest;

  auto run_ingest = [&](const std::string& topic, bool stream) {
    const int port = testing::FreePort();
    auto ingest = testing::ChildProcess::Start(
        absl::StrCat(TIDEMARK_BINARY_DIR, "/services/ingest/ingest"),
        {absl::StrCat("--listen=127.0.0.1:", port), absl::StrCat("--raw_topic=", topic),
         "--allow_unauthenticated"},
        {{"TIDEMARK_KAFKA_BROKERS", brokers}, {"TIDEMARK_LOG_LEVEL", "warn"}},
        dir + "/ingest-" + topic + ".log");
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stub = v1::IngestService::NewStub(channel);
    {  // Warm up: connections to the broker, topic metadata.
      grpc::ClientContext ctx;
      v1::WriteResponse resp;
      stub->Write(&ctx, requests[0], &resp);
    }
    const double cpu0 = bench::CpuSeconds((*ingest)->pid());
    std::atomic<int64_t> acked{0};
    std::atomic<int> next{0};
    const absl::Time start = absl::Now();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&] {
        if (stream) {
          grpc::ClientContext ctx;
          v1::WriteResponse resp;
          auto writer = stub->WriteStream(&ctx, &resp);
          for (int r; (r = next++) < kRequests;) writer->Write(requests[r]);
          writer->WritesDone();
          if (writer->Finish().ok()) acked += resp.accepted();
          return;
        }
        for (int r; (r = next++) < kRequests;) {
          grpc::ClientContext ctx;
          v1::WriteResponse resp;
          if (stub->Write(&ctx, requests[r], &resp).ok()) acked += resp.accepted();
        }
      });
    }
    for (std::thread& t : clients) t.join();
    const double wall = absl::ToDoubleSeconds(absl::Now() - start);
    const double cpu = bench::CpuSeconds((*ingest)->pid()) - cpu0;
    (*ingest)->Signal(SIGTERM);
    (void)(*ingest)->Wait(absl::Seconds(15));
    return std::tuple<int64_t, double, double>(acked.load(), wall, cpu);
  };

  const auto [w_acked, w_wall, w_cpu] = run_ingest("tidemark.raw", false);
  const auto [s_acked, s_wall, s_cpu] = run_ingest("stream.raw", true);

  // Baseline: the same events, serialized, produced directly with the same producer settings.
  double b_wall = 0, b_cpu = 0;
  int64_t b_done = 0;
  {
    auto producer = kafka::Producer::Create({.brokers = brokers}, logger);
    Counter counter;
    std::vector<std::pair<std::string, std::string>> records;
    for (const v1::WriteRequest& req : requests) {
      for (v1::Event e : req.events()) {
        e.set_ingest_time_us(absl::ToUnixMicros(absl::Now()));
        records.emplace_back(e.device_id(), e.SerializeAsString());
      }
    }
    const double cpu0 = bench::CpuSeconds(getpid());
    const absl::Time start = absl::Now();
    for (const auto& [k, v] : records) {
      while (!(*producer)->Produce("baseline.raw", k, v, &counter).ok()) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
    (void)(*producer)->Flush(absl::Seconds(60));
    b_wall = absl::ToDoubleSeconds(absl::Now() - start);
    b_cpu = bench::CpuSeconds(getpid()) - cpu0;
    b_done = counter.done - counter.failed;
  }
  std::filesystem::remove_all(dir);

  const std::string cfg = absl::StrFormat(
      "%d events, %d per request, %d concurrent clients, "
      "4 measures each, zstd, 12 partitions",
      events, kEventsPerRequest, kClients);
  bench::Report("ingest.txt", "setup: " + cfg);
  bench::Report(
      "ingest.txt",
      absl::StrFormat("ingest Write: %d acked in %.2f s = %.0f events/s; ingest CPU %.2f s "
                      "= %.0f events/s per core",
                      w_acked, w_wall, w_acked / w_wall, w_cpu, w_acked / w_cpu));
  bench::Report("ingest.txt",
                absl::StrFormat("ingest WriteStream: %d acked in %.2f s = %.0f events/s; ingest "
                                "CPU %.2f s = %.0f events/s per core",
                                s_acked, s_wall, s_acked / s_wall, s_cpu, s_acked / s_cpu));
  bench::Report("ingest.txt",
                absl::StrFormat("baseline direct librdkafka produce: %d acked in %.2f s = %.0f "
                                "events/s; producer CPU %.2f s = %.0f events/s per core",
                                b_done, b_wall, b_done / b_wall, b_cpu, b_done / b_cpu));
  bench::Report("ingest.txt",
                absl::StrFormat("ratio ingest/baseline events/s: Write %.2f, WriteStream %.2f",
                                (w_acked / w_wall) / (b_done / b_wall),
                                (s_acked / s_wall) / (b_done / b_wall)));
  return 0;
}
