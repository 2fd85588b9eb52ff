// Aggregator throughput, events/s per core: the window engine in-process, and the whole
// aggregator loop consuming from the development broker. Baseline in the same run: PostgreSQL
// computing the same windows with GROUP BY over the same points (what a user would otherwise
// schedule), after the points are loaded by the writer's store path. Also the engine's memory:
// allocator bytes per open window, per point held and per tracked series.
// Usage: aggregator_bench [--engine_only] (the in-process engine and its memory only, e.g. to
// compare two builds back to back or to profile).
#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
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

// The 1/5/15-minute load averages: figures from a busy machine say so.
std::string LoadAverage() {
  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  return load.substr(0, load.find(' ', load.find(' ', load.find(' ') + 1) + 1));
}

struct EngineRun {
  double cpu = 0;
  int64_t emitted = 0;
  /// FNV-1a over every emission and late point in order: equal digests from two builds mean
  /// they produced the same output, byte for byte.
  uint64_t digest = 0xcbf29ce484222325ULL;
};

void Digest(uint64_t& h, const std::string& bytes) {
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
}

EngineRun RunEngine(const aggregator::WindowConfig& windows, const std::vector<v1::Event>& events,
                    const std::vector<std::string>& serialized, int64_t idle_at_us) {
  EngineRun run;
  aggregator::PartitionWindows engine(windows, "raw", 0, {});
  series::EventView parsed;
  // One output per poll of the aggregator's loop (AggregatorConfig::poll_batch records).
  const size_t batch = aggregator::AggregatorConfig{}.poll_batch;
  std::vector<aggregator::EngineOutput> outs(serialized.size() / batch + 2);
  const double cpu0 = ThreadCpuSeconds();
  for (size_t i = 0; i < serialized.size(); ++i) {
    parsed.Parse(serialized[i]);  // the loop decodes every record too, the same way
    engine.Process(static_cast<int64_t>(i), parsed, events[i].ingest_time_us(), outs[i / batch]);
  }
  engine.AdvanceIfIdle(idle_at_us, outs.back());
  run.cpu = ThreadCpuSeconds() - cpu0;
  std::string bytes;
  for (const aggregator::EngineOutput& out : outs) {
    run.emitted += static_cast<int64_t>(out.emissions.size());
    for (const aggregator::Emission& a : out.emissions) {
      a.ToProto().SerializeToString(&bytes);
      Digest(run.digest, bytes);
    }
    for (const v1::LatePoint& l : out.late) {
      l.SerializeToString(&bytes);
      Digest(run.digest, bytes);
    }
  }
  return run;
}

size_t HeapInUse() { return mallinfo2().uordblks; }

// Allocator bytes the engine holds after processing one event per `step_s` seconds of event
// time for `minutes` minutes from each of `devices` devices (4 measures each), with 1-minute
// windows and a lateness that keeps every window open.
size_t EngineHeap(int devices, int minutes, int step_s, size_t* open_windows,
                  size_t* tracked_series) {
  aggregator::WindowConfig config;
  config.sizes = {absl::Minutes(1)};
  config.allowed_lateness = absl::Hours(48);
  const int64_t base = absl::ToUnixMicros(absl::Now()) - absl::ToInt64Microseconds(absl::Hours(2));
  std::vector<v1::Event> events;
  for (int64_t t = 0; t < minutes * 60; t += step_s) {
    for (int d = 0; d < devices; ++d) {
      v1::Event& e = events.emplace_back();
      e.set_device_id(absl::StrCat("device-", d));
      e.set_time(base + t * 1'000'000);
      e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
      e.set_ingest_time_us(base + t * 1'000'000);
      for (const char* m : {"temperature", "humidity", "voltage", "watt"}) {
        (*e.mutable_measures())[m].set_double_value(static_cast<double>(t));
      }
    }
  }
  size_t held = 0;
  {
    const size_t before = HeapInUse();
    aggregator::PartitionWindows engine(config, "raw", 0, {});
    for (size_t i = 0; i < events.size(); ++i) {
      aggregator::EngineOutput out;
      engine.Process(static_cast<int64_t>(i), events[i], events[i].ingest_time_us(), out);
    }
    held = HeapInUse() - before;
    *open_windows = engine.open_windows();
    *tracked_series = engine.tracked_series();
  }
  return held;
}

}  // namespace

int main(int argc, char** argv) {
  bool engine_only = false;
  for (int i = 1; i < argc; ++i) engine_only |= std::string(argv[i]) == "--engine_only";
  auto logger = log::MakeLogger("aggregator-bench");
  logger->set_level(spdlog::level::warn);
  aggregator::WindowConfig windows;
  windows.sizes = {absl::Minutes(1), absl::Minutes(5)};
  // Events every 10 ms of event time across the fleet: ~42 minutes of data, 5% 75 s late.
  std::vector<v1::Event> events;
  std::vector<std::string> serialized;
  auto make_events = [&](int64_t base) {
    events.clear();
    serialized.clear();
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
  };

  // 1. The engine in-process, one partition, one thread; best of five runs, which must all
  // produce the same output. The engine has no clock of its own, so events at fixed instants
  // (2026-01-01) make its output, and so the digest, the same from one build to the next.
  int64_t base = 1'767'225'600'000'000;
  make_events(base);
  const int64_t idle_at = base + absl::ToInt64Microseconds(absl::Hours(3));
  EngineRun engine = RunEngine(windows, events, serialized, idle_at);
  for (int rep = 0; rep < 4; ++rep) {
    EngineRun again = RunEngine(windows, events, serialized, idle_at);
    if (again.digest != engine.digest) {
      std::fprintf(stderr, "bench failed: the engine's output differs between runs\n");
      return 1;
    }
    engine.cpu = std::min(engine.cpu, again.cpu);
  }
  const int64_t emitted = engine.emitted;
  const double engine_cpu = engine.cpu;
  const double engine_rate = kEvents / engine_cpu;
  bench::Report("aggregator.txt",
                absl::StrFormat("setup: %d events x %d measures, %d devices, windows 1m and 5m, "
                                "5%% of events 75 s late; load %s",
                                kEvents, kMeasures, kDevices, LoadAverage()));
  bench::Report("aggregator.txt",
                absl::StrFormat("window engine in-process: %.2f s CPU = %.0f events/s per core "
                                "(%d window revisions emitted, output digest %016x)",
                                engine_cpu, engine_rate, emitted, engine.digest));

  // Memory: the difference between two states isolates each cost. 1,000 series (250
  // devices x 4 measures) with 30 or 60 one-point windows each, and with 30 windows of 10
  // points each.
  {
    size_t w1 = 0, s1 = 0, w2 = 0, s2 = 0, w3 = 0, s3 = 0;
    const size_t h1 = EngineHeap(250, 30, 60, &w1, &s1);
    const size_t h2 = EngineHeap(250, 60, 60, &w2, &s2);
    const size_t h3 = EngineHeap(250, 30, 6, &w3, &s3);
    const double per_window = static_cast<double>(h2 - h1) / static_cast<double>(w2 - w1);
    const double per_series =
        (static_cast<double>(h1) - per_window * static_cast<double>(w1)) / static_cast<double>(s1);
    const double per_point = static_cast<double>(h3 - h1) / static_cast<double>(w3 * 9);
    bench::Report(
        "aggregator.txt",
        absl::StrFormat("window engine memory (allocator in use): %zu series x %zu windows of 1 "
                        "point = %zu bytes; x %zu windows = %zu bytes; %zu windows of 10 points = "
                        "%zu bytes -> %.0f bytes per open window, %.0f per further point held, "
                        "%.0f per tracked series",
                        s1, w1 / s1, h1, w2 / s2, h2, w3, h3, per_window, per_point, per_series));
  }
  if (engine_only) return 0;
  // The loop and the store below keep points for a retention counted from now.
  base = absl::ToUnixMicros(absl::Now()) - absl::ToInt64Microseconds(absl::Hours(1));
  make_events(base);

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

  const double loop_rate_core = kEvents / loop_cpu;
  const double pg_rate = kEvents / pg_wall;
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
