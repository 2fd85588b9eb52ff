// Aggregator throughput, events/s per core: the window engine in-process, and the whole
// aggregator loop consuming from the development broker. Baseline in the same run: PostgreSQL
// computing the same windows with GROUP BY over the same points (what a user would otherwise
// schedule), after the points are loaded by the writer's store path.
#include <time.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "services/aggregator/aggregator_service.h"
#include "services/aggregator/window_engine.h"
#include "services/timestream-writer/point_store.h"
#include "tests/support/pg_cluster.h"
#include "tools/devbroker/dev_broker.h"

namespace {

using namespace tidemark;

constexpr int kEvents = 250'000;
constexpr int kDevices = 200;
constexpr int kMeasures = 4;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

using bench::Must;

}  // namespace

int main() {
  auto logger = log::MakeLogger("aggregator-bench");
  logger->set_level(spdlog::level::warn);
  aggregator::WindowConfig windows;
  windows.sizes = {absl::Minutes(1), absl::Minutes(5)};
  // Events every 10 ms of event time across the fleet: ~42 minutes of data, 5% 75 s late.
  const int64_t base = absl::ToUnixMicros(absl::Now()) - absl::ToInt64Microseconds(absl::Hours(1));
  std::vector<v1::Event> events;
  std::vector<std::string> serialized;
  events.reserve(kEvents);
  for (int i = 0; i < kEvents; ++i) {
    v1::Event& e = events.emplace_back();
    e.set_device_id(absl::StrCat("device-", i % kDevices));
    const int64_t now = base + static_cast<int64_t>(i) * 10'000;
    e.set_time(i % 20 == 0 ? now - 75'000'000 : now);
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    for (const char* m : {"temperature", "humidity", "voltage", "watt"}) {
      (*e.mutable_measures())[m].set_double_value((i % 1000) * 0.25);
    }
    e.set_ingest_time_us(now + 1000);
    serialized.push_back(e.SerializeAsString());
  }

  // 1. The engine in-process, one partition, one thread.
  int64_t emitted = 0;
  double engine_cpu = 0;
  {
    aggregator::PartitionWindows engine(windows, "raw", 0, {});
    v1::Event parsed;
    const double cpu0 = ThreadCpuSeconds();
    for (int i = 0; i < kEvents; ++i) {
      aggregator::EngineOutput out;
      parsed.ParseFromString(serialized[i]);  // the loop decodes every record too
      engine.Process(i, parsed, events[i].ingest_time_us(), out);
      emitted += static_cast<int64_t>(out.emissions.size());
    }
    aggregator::EngineOutput out;
    engine.AdvanceIfIdle(base + absl::ToInt64Microseconds(absl::Hours(3)), out);
    emitted += static_cast<int64_t>(out.emissions.size());
    engine_cpu = ThreadCpuSeconds() - cpu0;
  }

  // 2. The aggregator loop through the development broker: records already in the topic.
  double loop_wall = 0, loop_cpu = 0;
  {
    auto broker = devbroker::DevBroker::Start(1, {{"raw", 12}, {"aggregates", 6}, {"late", 3}});
    Must(broker.status());
    {
      auto producer = kafka::Producer::Create({.brokers = (*broker)->bootstrap_servers()}, logger);
      Must(producer.status());
      for (int i = 0; i < kEvents; ++i) {
        while (!(*producer)->Produce("raw", events[i].device_id(), serialized[i], nullptr).ok()) {
          absl::SleepFor(absl::Milliseconds(1));
        }
      }
      Must((*producer)->Flush(absl::Seconds(60)));
    }
    kafka::ProducerConfig out_config;
    out_config.brokers = (*broker)->bootstrap_servers();
    auto producer = kafka::Producer::Create(out_config, logger);
    Must(producer.status());
    metrics::Registry registry;
    aggregator::AggregatorMetrics metrics(registry);
    aggregator::AggregatorConfig config;
    config.windows = windows;
    config.aggregates_topic = "aggregates";
    config.late_topic = "late";
    aggregator::AggregatorLoop loop(config, **producer, metrics, logger);
    auto consumer = kafka::Consumer::Create(
        {.brokers = (*broker)->bootstrap_servers(), .group_id = "bench", .topics = {"raw"}}, logger,
        &loop);
    Must(consumer.status());
    std::atomic<bool> stop{false};
    std::thread t([&] { Must(loop.Run(**consumer, stop)); });
    while (metrics.records.Value() == 0) absl::SleepFor(absl::Milliseconds(1));
    const absl::Time start = absl::Now();
    const double cpu0 = bench::CpuSeconds(getpid());
    while (metrics.records.Value() < static_cast<uint64_t>(kEvents)) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    loop_wall = absl::ToDoubleSeconds(absl::Now() - start);
    loop_cpu = bench::CpuSeconds(getpid()) - cpu0;
    stop = true;
    t.join();
  }

  // 3. Baseline: PostgreSQL computes the same windows from the same points.
  auto cluster = testing::PgCluster::Start();
  Must(cluster.status());
  Must((*cluster)->CreateDatabase("baseline").status());
  {
    writer::PointStore store((*cluster)->Dsn("baseline"), absl::Hours(48));
    Must(store.Open(*logger));
    for (int b = 0; b < kEvents; b += 5000) {
      writer::BatchBuilder batch(absl::Minutes(15), 0);
      for (int i = b; i < std::min(kEvents, b + 5000); ++i) batch.Add(i - b, serialized[i]);
      Must(store.Write(batch, {}).status());
    }
    Must((*cluster)->Psql("baseline", "VACUUM ANALYZE points").status());
  }
  const absl::Time pg_start = absl::Now();
  auto windows_out = (*cluster)->Psql("baseline", R"(
    CREATE TABLE baseline_windows AS
    SELECT p.series_id, sz.size, date_bin(sz.size, p.time, 'epoch') AS start, count(*) AS c,
           sum(v ORDER BY p.time) AS s, min(v) AS mn, max(v) AS mx, avg(v) AS a,
           (array_agg(v ORDER BY p.time))[1] AS f, (array_agg(v ORDER BY p.time DESC))[1] AS l
    FROM points p
    CROSS JOIN (VALUES (interval '1 minute'), (interval '5 minutes')) AS sz(size)
    CROSS JOIN LATERAL (SELECT coalesce(p.value_double, p.value_int::float8) AS v) x
    GROUP BY 1, 2, 3;
    SELECT count(*) FROM baseline_windows)");
  Must(windows_out.status());
  const double pg_wall = absl::ToDoubleSeconds(absl::Now() - pg_start);

  const double engine_rate = kEvents / engine_cpu;
  const double loop_rate_core = kEvents / loop_cpu;
  const double pg_rate = kEvents / pg_wall;
  bench::Report("aggregator.txt",
                absl::StrFormat("setup: %d events x %d measures, %d devices, windows 1m and 5m, "
                                "5%% of events 75 s late",
                                kEvents, kMeasures, kDevices));
  bench::Report("aggregator.txt",
                absl::StrFormat("window engine in-process: %.2f s CPU = %.0f events/s per core "
                                "(%d window revisions emitted)",
                                engine_cpu, engine_rate, emitted));
  bench::Report("aggregator.txt",
                absl::StrFormat("aggregator loop via devbroker: %.2f s wall, %.2f s CPU = %.0f "
                                "events/s, %.0f events/s per core",
                                loop_wall, loop_cpu, kEvents / loop_wall, loop_rate_core));
  bench::Report("aggregator.txt",
                absl::StrFormat("baseline PostgreSQL GROUP BY over the stored points: %.2f s = "
                                "%.0f events/s (%s windows)",
                                pg_wall, pg_rate, *windows_out));
  bench::Report("aggregator.txt",
                absl::StrFormat("ratio engine/PostgreSQL %.1f; loop per core/PostgreSQL %.1f",
                                engine_rate / pg_rate, loop_rate_core / pg_rate));
  return 0;
}
