// Ingest throughput and latency: the latency of one unary Write of 500 events (p50/p99), and
// events/s acknowledged over gRPC by 4 concurrent Write clients and by 4 WriteStream clients,
// by the real ingest binary into the development broker, with events per CPU-second of the
// ingest process. Baselines in the same run: the same events produced straight to the broker
// with librdkafka (no gRPC, no validation) from this process, both as a 500-record round
// (latency) and as one stream of records (throughput). Optionally a second ingest binary
// (usage: ingest_bench [--baseline_ingest=PATH]), e.g. a build before a change that takes the
// same flags, is measured in the same run, so the change is a ratio rather than a comparison
// across noisy runs: both run side by side and their passes alternate. Each pass also reports
// the CPU of the client threads and of the broker, which share the machine's cores, ingest's
// CPU by thread group, and how many cores the pass kept busy. The current binary also takes
// the same events as Writes from 8 clients and as Writes of 2,000 events, each as a ratio to
// its WriteStream figure. `--partitions=N` (default 12) sets the raw topic's partitions: each
// produce request carries one partition's records, so fewer partitions mean fewer, larger
// requests per Write (docs/decisions.md, "Unary Write with few callers").
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "bench/bench_util.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/process.h"
#include "tidemark/v1/ingest.grpc.pb.h"

namespace {

using namespace tidemark;

constexpr int kEventsPerRequest = 500;
constexpr int kRequests = 1000;  // 500,000 events per run
constexpr int kClients = 4;
// The same events as Write calls of other shapes, for the current binary only: how many events
// a caller keeps in flight decides how full librdkafka's produce requests get (see
// docs/decisions.md, "Unary Write with few callers").
constexpr int kManyClients = 8;
constexpr int kLargeRequestEvents = 2000;
// The direct baselines compress as ingest does by default (its --kafka_compression).
constexpr char kCompression[] = "lz4";

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

// The 1/5/15-minute load averages: figures from a busy machine say so.
std::string LoadAverage() {
  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  return load.substr(0, load.find(' ', load.find(' ', load.find(' ') + 1) + 1));
}

// Sequential rounds whose latency is measured, after a warm-up round.
constexpr int kLatencyRounds = 200;

struct Latency {
  double p50_ms = 0, p99_ms = 0;
};

Latency Percentiles(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  return {at(0.5), at(0.99)};
}

// Ingest's threads by what they do: librdkafka's own (named rdk:*, the broker thread sends
// and reads the produce requests), the producer's delivery-report thread (which finishes
// each Write), and the rest (gRPC's threads: calls, parsing, validation, producing).
std::string IngestThreadGroup(const std::string& name) {
  if (absl::StartsWith(name, "rdk:")) return "librdkafka";
  if (name == "kafka-delivery") return "delivery reports";
  return "gRPC";
}

std::map<std::string, bench::CpuSplit> Minus(std::map<std::string, bench::CpuSplit> after,
                                             const std::map<std::string, bench::CpuSplit>& before) {
  for (auto& [group, cpu] : after) {
    if (auto it = before.find(group); it != before.end()) {
      cpu.user -= it->second.user;
      cpu.system -= it->second.system;
    }
  }
  return after;
}

// The best of the passes of one load against one ingest binary.
struct Pass {
  int64_t acked = 0;
  double wall = 0, cpu = 0;
  // CPU of the client threads (this process) and of the broker in the same pass: on a shared
  // machine they compete with ingest for the same cores.
  double client_cpu = 0, broker_cpu = 0;
  // Ingest's CPU by thread group (IngestThreadGroup).
  std::map<std::string, bench::CpuSplit> ingest_threads;
  double Rate() const { return acked / wall; }
  // How many of the machine's cores the pass kept busy: ingest, clients and broker together.
  double CoresBusy() const { return (cpu + client_cpu + broker_cpu) / wall; }
};

struct IngestFigures {
  Latency write_latency;
  Pass write, stream;
  // Current binary only.
  Pass many_clients, large_requests;
  double WriteRate() const { return write.Rate(); }
  double StreamRate() const { return stream.Rate(); }
};

}  // namespace

int main(int argc, char** argv) {
  std::string baseline_ingest;
  int partitions = 12;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--baseline_ingest=")) baseline_ingest = std::string(arg);
    if (absl::ConsumePrefix(&arg, "--partitions=") && !absl::SimpleAtoi(arg, &partitions)) {
      std::fprintf(stderr, "--partitions takes a number\n");
      return 2;
    }
  }
  auto logger = log::MakeLogger("ingest-bench");
  const std::string dir = absl::StrCat("/tmp/tidemark-ingest-bench-", getpid());
  std::filesystem::create_directories(dir);
  auto broker = testing::ChildProcess::Start(
      absl::StrCat(TIDEMARK_BINARY_DIR, "/tools/devbroker/devbroker"),
      {absl::StrCat("--bootstrap_file=", dir, "/bootstrap"),
       absl::StrCat("--topics=tidemark.raw:", partitions, ",baseline.raw:", partitions)},
      {}, dir + "/devbroker.log");
  testing::WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); }, absl::Seconds(10));
  std::string brokers;
  std::getline(std::ifstream(dir + "/bootstrap"), brokers);

  std::vector<v1::WriteRequest> requests;
  for (int r = 0; r < kRequests; ++r) requests.push_back(MakeRequest(r));
  const int64_t events = static_cast<int64_t>(kRequests) * kEventsPerRequest;
  // The same events, kLargeRequestEvents to a request.
  std::vector<v1::WriteRequest> large_requests(kRequests * kEventsPerRequest / kLargeRequestEvents);
  for (int r = 0; r < kRequests; ++r) {
    large_requests[r * kEventsPerRequest / kLargeRequestEvents].mutable_events()->MergeFrom(
        requests[r].events());
  }

  // How the clients send: `clients` concurrent callers, `stream` over WriteStream.
  struct Load {
    int clients = kClients;
    const std::vector<v1::WriteRequest>* requests = nullptr;
    bool stream = false;
  };
  const Load write_load{.requests = &requests};
  const Load stream_load{.requests = &requests, .stream = true};
  const Load many_clients_load{.clients = kManyClients, .requests = &requests};
  const Load large_requests_load{.requests = &large_requests};

  // One client thread per concurrent caller, taking the next request until none is left.
  auto throughput = [&](v1::IngestService::Stub& stub, const Load& load) {
    std::atomic<int64_t> acked{0};
    std::atomic<int> next{0};
    const std::vector<v1::WriteRequest>& reqs = *load.requests;
    const int count = static_cast<int>(reqs.size());
    std::vector<std::thread> clients;
    for (int c = 0; c < load.clients; ++c) {
      clients.emplace_back([&] {
        if (load.stream) {
          grpc::ClientContext ctx;
          v1::WriteResponse resp;
          auto writer = stub.WriteStream(&ctx, &resp);
          for (int r; (r = next++) < count;) writer->Write(reqs[r]);
          writer->WritesDone();
          if (writer->Finish().ok()) acked += resp.accepted();
          return;
        }
        for (int r; (r = next++) < count;) {
          grpc::ClientContext ctx;
          v1::WriteResponse resp;
          if (stub.Write(&ctx, reqs[r], &resp).ok()) acked += resp.accepted();
        }
      });
    }
    for (std::thread& t : clients) t.join();
    return acked.load();
  };

  // An ingest process under test, with its figures.
  struct Subject {
    std::unique_ptr<testing::ChildProcess> process;
    std::unique_ptr<v1::IngestService::Stub> stub;
    IngestFigures figures;
  };
  auto start_ingest = [&](const std::string& binary, const std::string& name) {
    Subject subject;
    const int port = testing::FreePort();
    auto ingest = testing::ChildProcess::Start(
        binary,
        {absl::StrCat("--listen=127.0.0.1:", port), "--raw_topic=tidemark.raw",
         "--allow_unauthenticated"},
        {{"TIDEMARK_KAFKA_BROKERS", brokers}, {"TIDEMARK_LOG_LEVEL", "warn"}},
        dir + "/ingest-" + name + ".log");
    bench::Must(ingest.status());
    subject.process = *std::move(ingest);
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
    subject.stub = v1::IngestService::NewStub(channel);
    return subject;
  };
  auto measure_latency = [&](Subject& subject) {
    std::vector<double> ms;
    for (int r = 0; r <= kLatencyRounds; ++r) {  // round 0 warms up: broker connections, metadata
      grpc::ClientContext ctx;
      v1::WriteResponse resp;
      const absl::Time t0 = absl::Now();
      const grpc::Status s = subject.stub->Write(&ctx, requests[r % kRequests], &resp);
      if (!s.ok() || resp.accepted() != kEventsPerRequest) {
        std::fprintf(stderr, "bench failed: Write: %s\n", s.error_message().c_str());
        std::exit(1);
      }
      if (r > 0) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    }
    subject.figures.write_latency = Percentiles(std::move(ms));
  };
  // One pass of `load` against `subject`, kept in `best` if its best so far.
  auto measure_throughput = [&](Subject& subject, const Load& load, Pass& best) {
    const int pid = subject.process->pid();
    const double cpu0 = bench::CpuSeconds(pid);
    const double client0 = bench::CpuSeconds(getpid());
    const double broker0 = bench::CpuSeconds((*broker)->pid());
    const auto threads0 = bench::CpuByThreadGroup(pid, IngestThreadGroup);
    const absl::Time start = absl::Now();
    const int64_t acked = throughput(*subject.stub, load);
    const double wall = absl::ToDoubleSeconds(absl::Now() - start);
    const double cpu = bench::CpuSeconds(pid) - cpu0;
    const double client_cpu = bench::CpuSeconds(getpid()) - client0;
    const double broker_cpu = bench::CpuSeconds((*broker)->pid()) - broker0;
    auto threads = Minus(bench::CpuByThreadGroup(pid, IngestThreadGroup), threads0);
    if (best.wall == 0 || acked / wall > best.Rate()) {
      best = {.acked = acked,
              .wall = wall,
              .cpu = cpu,
              .client_cpu = client_cpu,
              .broker_cpu = broker_cpu,
              .ingest_threads = std::move(threads)};
    }
  };

  // Baseline latency: rounds of 500 of the same records produced directly, each round timed
  // until Kafka acknowledged all of them (what a Write cannot be faster than).
  Latency direct_latency;
  {
    auto producer =
        kafka::Producer::Create({.brokers = brokers, .compression = kCompression}, logger);
    std::vector<std::pair<std::string, std::string>> round;
    for (const v1::Event& e : requests[0].events()) {
      round.emplace_back(e.device_id(), e.SerializeAsString());
    }
    std::vector<double> ms;
    for (int r = 0; r <= kLatencyRounds; ++r) {
      Counter counter;
      const absl::Time t0 = absl::Now();
      for (const auto& [k, v] : round) {
        bench::Must((*producer)->Produce("baseline.raw", k, v, &counter));
      }
      while (counter.done < kEventsPerRequest) std::this_thread::yield();
      if (r > 0) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    }
    direct_latency = Percentiles(std::move(ms));
  }

  // Both binaries run side by side and their passes alternate, Write and WriteStream (and
  // the current binary's other Write shapes), best of three each: on a shared machine,
  // passes minutes apart measure whatever else ran then.
  std::vector<Subject> subjects;
  subjects.push_back(
      start_ingest(absl::StrCat(TIDEMARK_BINARY_DIR, "/services/ingest/ingest"), "current"));
  if (!baseline_ingest.empty()) subjects.push_back(start_ingest(baseline_ingest, "baseline"));
  for (Subject& subject : subjects) measure_latency(subject);
  for (int pass = 0; pass < 3; ++pass) {
    for (Subject& subject : subjects) {
      IngestFigures& f = subject.figures;
      measure_throughput(subject, write_load, f.write);
      measure_throughput(subject, stream_load, f.stream);
    }
    IngestFigures& f = subjects[0].figures;
    measure_throughput(subjects[0], many_clients_load, f.many_clients);
    measure_throughput(subjects[0], large_requests_load, f.large_requests);
  }
  for (Subject& subject : subjects) {
    subject.process->Signal(SIGTERM);
    (void)subject.process->Wait(absl::Seconds(15));
  }
  const IngestFigures& current = subjects[0].figures;
  std::optional<IngestFigures> before;
  if (subjects.size() > 1) before = subjects[1].figures;

  // Baseline: the same events, serialized, produced directly with the same producer settings.
  double b_wall = 0, b_cpu = 0;
  int64_t b_done = 0;
  {
    auto producer =
        kafka::Producer::Create({.brokers = brokers, .compression = kCompression}, logger);
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
      "4 measures each, %s, %d partitions; load %s",
      events, kEventsPerRequest, kClients, kCompression, partitions, LoadAverage());
  bench::Report("ingest.txt", "setup: " + cfg);
  auto report_pass = [&](const std::string& name, const Pass& p) {
    std::string threads;
    for (const auto& [group, cpu] : p.ingest_threads) {
      absl::StrAppendFormat(&threads, "%s%s %.2f s (system %.2f s)", threads.empty() ? "" : ", ",
                            group, cpu.Total(), cpu.system);
    }
    bench::Report("ingest.txt",
                  absl::StrFormat("%s: %d acked in %.2f s = %.0f events/s; ingest CPU %.2f s "
                                  "= %.0f events/s per core [%s]; clients CPU %.2f s, broker CPU "
                                  "%.2f s; cores busy %.2f of %d",
                                  name, p.acked, p.wall, p.Rate(), p.cpu, p.acked / p.cpu, threads,
                                  p.client_cpu, p.broker_cpu, p.CoresBusy(),
                                  static_cast<int>(std::thread::hardware_concurrency())));
  };
  auto report = [&](const std::string& name, const IngestFigures& f) {
    bench::Report(
        "ingest.txt",
        absl::StrFormat("%s: one Write of %d events: p50 %.2f ms, p99 %.2f ms", name,
                        kEventsPerRequest, f.write_latency.p50_ms, f.write_latency.p99_ms));
    report_pass(name + " Write", f.write);
    report_pass(name + " WriteStream", f.stream);
    bench::Report(
        "ingest.txt",
        absl::StrFormat("%s ratio Write/WriteStream events/s: %.2f; ratio "
                        "ingest/baseline events/s: Write %.2f, WriteStream %.2f",
                        name, f.WriteRate() / f.StreamRate(), f.WriteRate() / (b_done / b_wall),
                        f.StreamRate() / (b_done / b_wall)));
  };
  report("ingest", current);
  // Where Write reaches WriteStream: more events in flight per caller or more callers.
  report_pass(
      absl::StrFormat("ingest Write, %d clients x %d events", kManyClients, kEventsPerRequest),
      current.many_clients);
  report_pass(
      absl::StrFormat("ingest Write, %d clients x %d events", kClients, kLargeRequestEvents),
      current.large_requests);
  bench::Report(
      "ingest.txt",
      absl::StrFormat("ingest ratio Write/WriteStream events/s by Write shape: "
                      "%d x %d %.2f, %d x %d %.2f, %d x %d %.2f",
                      kClients, kEventsPerRequest, current.WriteRate() / current.StreamRate(),
                      kManyClients, kEventsPerRequest,
                      current.many_clients.Rate() / current.StreamRate(), kClients,
                      kLargeRequestEvents, current.large_requests.Rate() / current.StreamRate()));
  if (before) {
    report("baseline ingest binary", *before);
    bench::Report("ingest.txt",
                  absl::StrFormat("ratio ingest/baseline binary: Write p50 latency %.2f, p99 %.2f; "
                                  "Write events/s %.2f; WriteStream events/s %.2f",
                                  current.write_latency.p50_ms / before->write_latency.p50_ms,
                                  current.write_latency.p99_ms / before->write_latency.p99_ms,
                                  current.WriteRate() / before->WriteRate(),
                                  current.StreamRate() / before->StreamRate()));
  }
  bench::Report("ingest.txt",
                absl::StrFormat("baseline direct librdkafka round of %d records acknowledged: "
                                "p50 %.2f ms, p99 %.2f ms",
                                kEventsPerRequest, direct_latency.p50_ms, direct_latency.p99_ms));
  bench::Report("ingest.txt",
                absl::StrFormat("baseline direct librdkafka produce: %d acked in %.2f s = %.0f "
                                "events/s; producer CPU %.2f s = %.0f events/s per core",
                                b_done, b_wall, b_done / b_wall, b_cpu, b_done / b_cpu));
  return 0;
}
