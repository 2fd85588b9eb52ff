// Writer throughput: rows/s through the timestream-writer's store path (BatchBuilder +
// PointStore: new keys copied straight into the table), through the same path with every
// batch sent through the upsert (COPY into staging, one versioned upsert: what a batch that
// meets stored keys costs), and through the whole BatchLoop from the development broker,
// against the baseline a user would script: psql `\copy` of the same rows into the same
// staging table plus the same upsert statement.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "services/timestream-writer/point_store.h"
#include "services/timestream-writer/writer_service.h"
#include "tests/support/pg_cluster.h"
#include "tools/devbroker/dev_broker.h"

namespace {

using namespace tidemark;

constexpr int kEvents = 100'000;
constexpr int kMeasures = 4;  // the Timestream sample's four measures
constexpr int kBatch = 5000;

std::vector<std::string> MakeEvents(int64_t base_us) {
  std::vector<std::string> out;
  out.reserve(kEvents);
  for (int i = 0; i < kEvents; ++i) {
    v1::Event e;
    e.set_device_id(absl::StrCat("device-", i % 500));
    e.set_time(base_us + i * 1000);
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    for (const char* m : {"temperature", "humidity", "voltage", "watt"}) {
      (*e.mutable_measures())[m].set_double_value(i * 0.25);
    }
    e.set_ingest_time_us(base_us + i * 1000 + 5000);
    out.push_back(e.SerializeAsString());
  }
  return out;
}

using bench::Must;

}  // namespace

int main() {
  auto logger = log::MakeLogger("writer-bench");
  logger->set_level(spdlog::level::warn);
  auto cluster = testing::PgCluster::Start();
  Must(cluster.status());
  testing::PgCluster& pg = **cluster;
  const int64_t base = absl::ToUnixMicros(absl::Now()) - absl::ToInt64Microseconds(absl::Hours(2));
  const std::vector<std::string> events = MakeEvents(base);
  const int64_t rows = static_cast<int64_t>(kEvents) * kMeasures;

  // 1. The writer's store path, batch by batch, into a fresh database. `decoding` adds up the
  //    time spent building batches (the client's share; the rest is PostgreSQL's).
  std::vector<double> decode_times;
  auto run_store_path = [&](const std::string& db, bool direct_copy) {
    Must(pg.CreateDatabase(db).status());
    writer::PointStore store(pg.Dsn(db), absl::Hours(48), direct_copy);
    Must(store.Open(*logger));
    const absl::Time start = absl::Now();
    absl::Duration decoding;
    series::SeriesNames names;  // kept across batches, as RawPointSink keeps it
    for (int b = 0; b < kEvents; b += kBatch) {
      const absl::Time build_start = absl::Now();
      writer::BatchBuilder batch(absl::Minutes(15), 0, &names);
      for (int i = b; i < std::min(kEvents, b + kBatch); ++i) batch.Add(i - b, events[i]);
      decoding += absl::Now() - build_start;
      Must(store.Write(batch, {}).status());
    }
    if (direct_copy) decode_times.push_back(absl::ToDoubleSeconds(decoding));
    return absl::ToDoubleSeconds(absl::Now() - start);
  };

  // 2. The same rows through psql: \copy into the same staging table and the same upsert,
  //    one transaction per batch of the same size.
  const std::string dir = absl::StrCat("/tmp/tidemark-writer-bench-", getpid());
  std::filesystem::create_directories(dir);
  const std::string script = dir + "/load.sql";
  // Generate the same rows the writer stored, in COPY text format, one file per batch.
  {
    std::ofstream series_csv(dir + "/series.tsv");
    writer::BatchBuilder all(absl::Minutes(15), 0);
    for (int i = 0; i < kEvents; ++i) all.Add(i, events[i]);
    for (const writer::SeriesRow& s : all.series()) {
      series_csv << s.series_id << '\t' << s.canonical_key << '\t' << s.measure_name << '\t'
                 << s.device_id << '\t' << s.dimensions_json << '\n';
    }
    std::ofstream sql(script);
    sql << "\\set ON_ERROR_STOP on\n"
           "CREATE TEMP TABLE staging_points (source integer, series_id bigint, time_us bigint,"
           " value_double double precision, value_int bigint, value_bool boolean,"
           " value_string text, version bigint, ingested_us bigint) ON COMMIT DELETE ROWS;\n"
           "\\copy series (series_id, canonical_key, measure_name, device_id, dimensions) FROM '"
        << dir << "/series.tsv'\n";
    // Rows per batch in the same order as the writer staged them.
    int file = 0;
    const auto& points = all.points();
    const size_t per_batch = static_cast<size_t>(kBatch) * kMeasures;
    for (size_t off = 0; off < points.size(); off += per_batch, ++file) {
      const std::string path = absl::StrCat(dir, "/batch", file, ".tsv");
      std::ofstream tsv(path);
      char num[32];
      for (size_t j = off; j < std::min(points.size(), off + per_batch); ++j) {
        const writer::StagedPoint& p = points[j];
        std::snprintf(num, sizeof(num), "%.17g", p.value.double_value());
        tsv << p.source << '\t' << p.series_id << '\t' << p.time_us << '\t' << num
            << "\t\\N\t\\N\t\\N\t" << p.version << '\t' << p.ingest_time_us << '\n';
      }
      sql << "BEGIN;\n\\copy staging_points FROM '" << path << "'\n"
          << "INSERT INTO points (series_id, time, value_double, value_int, value_bool,"
             " value_string, version, ingested_at) SELECT series_id,"
             " 'epoch'::timestamptz + interval '1 microsecond' * time_us, value_double,"
             " value_int, value_bool, value_string, version,"
             " 'epoch'::timestamptz + interval '1 microsecond' * ingested_us FROM staging_points"
             " ON CONFLICT (series_id, time) DO UPDATE SET value_double = excluded.value_double,"
             " value_int = excluded.value_int, value_bool = excluded.value_bool,"
             " value_string = excluded.value_string, version = excluded.version,"
             " ingested_at = excluded.ingested_at WHERE excluded.version > points.version;\n"
             "COMMIT;\n";
    }
  }
  const std::string pg_bin = [] {
    std::string best;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
      best = std::max(best, e.path().string() + "/bin");
    }
    return best;
  }();
  auto run_psql = [&](const std::string& db) {
    Must(pg.CreateDatabase(db).status());
    {
      writer::PointStore schema(pg.Dsn(db), absl::Hours(48));
      Must(schema.Open(*logger));
      Must(schema.MaintainPartitions(absl::Hours(24 * 7)).status());
    }
    const absl::Time start = absl::Now();
    const std::string cmd =
        absl::StrCat(pg_bin, "/psql -X -q \"", pg.Dsn(db), "\" -f ", script, " > /dev/null");
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "psql baseline failed\n");
      std::exit(1);
    }
    return absl::ToDoubleSeconds(absl::Now() - start);
  };

  // PostgreSQL's speed drifts within a run (checkpoints, caches): alternate the two over
  // three rounds on fresh databases and take the medians.
  constexpr int kRounds = 3;
  std::vector<double> store_times, upsert_times, psql_times, ratios, upsert_ratios;
  for (int r = 0; r < kRounds; ++r) {
    store_times.push_back(run_store_path(absl::StrCat("store_path_", r), true));
    upsert_times.push_back(run_store_path(absl::StrCat("upsert_path_", r), false));
    psql_times.push_back(run_psql(absl::StrCat("psql_baseline_", r)));
    ratios.push_back(psql_times.back() / store_times.back());
    upsert_ratios.push_back(psql_times.back() / upsert_times.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double store_s = median(store_times);
  const double psql_s = median(psql_times);
  const double upsert_s = median(upsert_times);
  auto stored = pg.Psql("psql_baseline_0", "SELECT count(*) FROM points");
  auto stored_writer = pg.Psql("store_path_0", "SELECT count(*) FROM points");

  // 3. The whole BatchLoop: records already in the broker, drained by the writer.
  auto broker = devbroker::DevBroker::Start(1, {{"raw", 6}, {"rejected", 1}});
  Must(broker.status());
  {
    auto producer = kafka::Producer::Create({.brokers = (*broker)->bootstrap_servers()}, logger);
    Must(producer.status());
    for (const std::string& e : events) {
      Must((*producer)->Produce("raw", "k", e, nullptr));
    }
    Must((*producer)->Flush(absl::Seconds(60)));
  }
  // The loop as the writer runs it (each batch decoded while the previous one is stored) and
  // strictly one batch after the other, each on a fresh database and consumer group.
  auto run_loop = [&](const std::string& name, bool overlap_store) {
    Must(pg.CreateDatabase(name).status());
    writer::PointStore loop_store(pg.Dsn(name), absl::Hours(48));
    Must(loop_store.Open(*logger));
    auto producer = kafka::Producer::Create({.brokers = (*broker)->bootstrap_servers()}, logger);
    metrics::Registry registry;
    writer::RawPointSink sink(loop_store, absl::Minutes(15), absl::Hours(24 * 7), registry);
    kafka::BatchLoopMetrics metrics(registry, "tidemark_writer", "raw");
    kafka::BatchLoopConfig config;
    config.rejected_topic = "rejected";
    config.batch_max_records = kBatch;
    config.overlap_store = overlap_store;
    kafka::BatchLoop loop(config, sink, **producer, metrics, logger);
    auto consumer = kafka::Consumer::Create(
        {.brokers = (*broker)->bootstrap_servers(), .group_id = name, .topics = {"raw"}}, logger,
        &loop);
    Must(consumer.status());
    std::atomic<bool> stop{false};
    std::thread t([&] { Must(loop.Run(**consumer, stop)); });
    while (metrics.records.Value() == 0) absl::SleepFor(absl::Milliseconds(1));
    const absl::Time first_record = absl::Now();
    while (metrics.records.Value() < static_cast<uint64_t>(kEvents)) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - first_record);
    stop = true;
    t.join();
    return seconds;
  };
  std::vector<double> loop_times, serial_loop_times;
  for (int r = 0; r < kRounds; ++r) {
    loop_times.push_back(run_loop(absl::StrCat("writer_loop_", r), true));
    serial_loop_times.push_back(run_loop(absl::StrCat("serial_loop_", r), false));
  }
  const double loop_s = median(loop_times);
  const double serial_loop_s = median(serial_loop_times);
  std::filesystem::remove_all(dir);

  bench::Report("writer.txt",
                absl::StrFormat("writer store path (median of 3): %d rows in %.2f s = %.0f rows/s "
                                "(stored %s; decoding batches %.2f s of it, median)",
                                rows, store_s, rows / store_s, stored_writer.value_or("?"),
                                median(decode_times)));
  bench::Report("writer.txt",
                absl::StrFormat("writer store path, every batch through the upsert (median of "
                                "3): %d rows in %.2f s = %.0f rows/s",
                                rows, upsert_s, rows / upsert_s));
  bench::Report("writer.txt",
                absl::StrFormat(
                    "psql \\copy + upsert baseline (median of 3): %d rows in %.2f s = %.0f rows/s "
                    "(stored %s)",
                    rows, psql_s, rows / psql_s, stored.value_or("?")));
  bench::Report("writer.txt",
                absl::StrFormat("writer loop from the broker (median of 3): %d rows in %.2f s = "
                                "%.0f rows/s; one batch strictly after the other %.2f s = %.0f "
                                "rows/s; overlapped / serial = %.2f",
                                rows, loop_s, rows / loop_s, serial_loop_s, rows / serial_loop_s,
                                serial_loop_s / loop_s));
  bench::Report("writer.txt",
                absl::StrFormat("ratio store path / psql baseline: median %.2f (rounds %.2f, "
                                "%.2f, %.2f); writer loop / median psql baseline = %.2f",
                                median(ratios), ratios[0], ratios[1], ratios[2], psql_s / loop_s));
  bench::Report("writer.txt",
                absl::StrFormat("ratio upsert path / psql baseline: median %.2f (rounds %.2f, "
                                "%.2f, %.2f)",
                                median(upsert_ratios), upsert_ratios[0], upsert_ratios[1],
                                upsert_ratios[2]));
  return 0;
}
