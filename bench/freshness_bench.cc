// End-to-end freshness: time from ingest acknowledging an event to its window's aggregate
// being readable in PostgreSQL, p50/p99, with the real binaries under a steady background
// load. With 1 s windows and a 200 ms out-of-orderness bound, a window can close no earlier
// than 200 ms after its end; the report gives both the total and the part after that point.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/series/series_key.h"
#include "grpcpp/grpcpp.h"
#include "pqxx/pqxx"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tidemark/v1/ingest.grpc.pb.h"

namespace {

using namespace tidemark;

constexpr int kLoadRate = 2000;  // background events/s
constexpr int kProbePerSecond = 10;
constexpr absl::Duration kRun = absl::Seconds(30);
// Load only, before probing: consumer groups join and the pipeline reaches a steady state.
constexpr absl::Duration kWarmUp = absl::Seconds(5);

std::string Bin(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main() {
  auto cluster = testing::PgCluster::Start();
  if (!cluster.ok()) return 1;
  const std::string dsn = *(*cluster)->CreateDatabase("freshness");
  const std::string dir = absl::StrCat("/tmp/tidemark-freshness-", getpid());
  std::filesystem::create_directories(dir);
  auto broker = testing::ChildProcess::Start(Bin("tools/devbroker/devbroker"),
                                             {"--bootstrap_file=" + dir + "/bootstrap"}, {},
                                             dir + "/devbroker.log");
  testing::WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); }, absl::Seconds(10));
  std::string brokers;
  std::getline(std::ifstream(dir + "/bootstrap"), brokers);
  const std::map<std::string, std::string> env = {{"TIDEMARK_KAFKA_BROKERS", brokers},
                                                  {"TIDEMARK_PG_DSN", dsn},
                                                  {"TIDEMARK_LOG_LEVEL", "warn"}};
  auto writer = testing::ChildProcess::Start(Bin("services/timestream-writer/timestream-writer"),
                                             {"--batch_max_age=20ms"}, env, dir + "/writer.log");
  auto aggregator = testing::ChildProcess::Start(
      Bin("services/aggregator/aggregator"),
      {"--windows=1s", "--max_out_of_orderness=200ms", "--idle_timeout=1s"}, env,
      dir + "/aggregator.log");
  const int port = testing::FreePort();
  auto ingest = testing::ChildProcess::Start(Bin("services/ingest/ingest"),
                                             {absl::StrCat("--listen=127.0.0.1:", port),
                                              "--allow_unauthenticated"},
                                             env,
                                             dir + "/ingest.log");
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stub = v1::IngestService::NewStub(channel);
  pqxx::connection conn(dsn);
  testing::WaitFor(
      [&] {
        try {
          pqxx::work tx(conn);
          tx.exec("SELECT 1 FROM aggregates LIMIT 1");
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      absl::Seconds(30));

  auto event = [](const std::string& device, absl::Time t, double v) {
    v1::Event e;
    e.set_device_id(device);
    e.set_time(absl::ToUnixMicros(t));
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    (*e.mutable_measures())["load"].set_double_value(v);
    return e;
  };

  // Background load: 50 devices, batches every 25 ms.
  std::atomic<bool> stop{false};
  std::thread load([&] {
    int64_t n = 0;
    while (!stop.load()) {
      v1::WriteRequest req;
      for (int i = 0; i < kLoadRate / 40; ++i, ++n) {
        *req.add_events() = event(absl::StrCat("load-", n % 50), absl::Now(), n);
      }
      grpc::ClientContext ctx;
      v1::WriteResponse resp;
      stub->Write(&ctx, req, &resp);
      absl::SleepFor(absl::Milliseconds(25));
    }
  });

  // Probes: one device, one event per 100 ms; remember each one's ack time by window.
  const int64_t probe_series =
      series::SeriesId(series::CanonicalKey("load", {{"device_id", "probe"}}));
  std::map<int64_t, std::vector<absl::Time>> acked_by_window;  // window start (s) -> acks
  std::map<int64_t, absl::Time> readable;
  std::mutex mu;
  std::atomic<bool> stop_polling{false};
  std::thread poller([&] {
    pqxx::connection c(dsn);
    while (!stop_polling.load()) {
      pqxx::work tx(c);
      const pqxx::result r = tx.exec_params(
          "SELECT extract(epoch from window_start)::bigint, count FROM aggregates"
          " WHERE series_id = $1",
          probe_series);
      const absl::Time now = absl::Now();
      std::lock_guard<std::mutex> l(mu);
      for (const pqxx::row& row : r) {
        const int64_t w = row[0].as<int64_t>();
        auto it = acked_by_window.find(w);
        if (it != acked_by_window.end() && !readable.contains(w) &&
            row[1].as<int64_t>() == static_cast<int64_t>(it->second.size())) {
          readable[w] = now;
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  absl::SleepFor(kWarmUp);
  const absl::Time end = absl::Now() + kRun;
  int64_t probes = 0;
  while (absl::Now() < end) {
    v1::WriteRequest req;
    const absl::Time t = absl::Now();
    *req.add_events() = event("probe", t, static_cast<double>(probes++));
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    if (stub->Write(&ctx, req, &resp).ok()) {
      std::lock_guard<std::mutex> l(mu);
      acked_by_window[absl::ToUnixSeconds(t)].push_back(absl::Now());
    }
    absl::SleepFor(absl::Milliseconds(1000 / kProbePerSecond));
  }
  // Keep the probe's partition moving so its last window closes by watermark, not idleness.
  absl::SleepFor(absl::Seconds(3));
  stop = true;
  load.join();
  {
    std::lock_guard<std::mutex> l(mu);
    acked_by_window.erase(std::prev(acked_by_window.end()));  // may have closed by idleness
  }
  testing::WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        return readable.size() >= acked_by_window.size();
      },
      absl::Seconds(30));
  std::vector<double> total_ms, after_close_ms;
  {
    std::lock_guard<std::mutex> l(mu);
    for (const auto& [w, acks] : acked_by_window) {
      auto it = readable.find(w);
      if (it == readable.end()) continue;
      const absl::Time earliest_close = absl::FromUnixSeconds(w + 1) + absl::Milliseconds(200);
      for (absl::Time ack : acks) {
        total_ms.push_back(absl::ToDoubleMilliseconds(it->second - ack));
      }
      after_close_ms.push_back(absl::ToDoubleMilliseconds(it->second - earliest_close));
    }
  }
  stop_polling = true;
  poller.join();
  for (auto* p : {ingest->get(), aggregator->get(), writer->get(), broker->get()}) {
    p->Signal(SIGTERM);
    (void)p->Wait(absl::Seconds(15));
  }
  std::filesystem::remove_all(dir);
  if (total_ms.empty()) {
    std::fprintf(stderr, "no probe window became readable\n");
    return 1;
  }
  bench::Report("freshness.txt",
                absl::StrFormat("load: %d events/s background + up to %d probe events/s, 1 s "
                                "windows, 200 ms out-of-orderness, after %s warm-up; %d probes in "
                                "%d windows",
                                kLoadRate, kProbePerSecond, absl::FormatDuration(kWarmUp),
                                total_ms.size(), after_close_ms.size()));
  bench::Report("freshness.txt",
                absl::StrFormat("ingest ack -> window aggregate readable: p50 %.0f ms, p99 %.0f ms",
                                Percentile(total_ms, 0.5), Percentile(total_ms, 0.99)));
  bench::Report("freshness.txt",
                absl::StrFormat("of which after the earliest possible close (window end + 200 "
                                "ms): p50 %.0f ms, p99 %.0f ms",
                                Percentile(after_close_ms, 0.5), Percentile(after_close_ms, 0.99)));
  return 0;
}
