// The query service's read side against the real `query` binary on a private PostgreSQL with
// the writer's schema, filled by SQL (generate_series) with 100 series x one point every 10 s
// for one UTC day and the 5 m windows computed from those points:
// 1. Rollup of the day into 1 h buckets from the stored windows, over gRPC, against the same
//    answer computed from the raw points by a PostgreSQL GROUP BY in the same run (medians and
//    ratio). Both answers are compared first, so a fast wrong answer is never reported.
//    Then real_time ReadAggregates of a device whose string measures sit beside its numbers,
//    against the same windows asked for by series id; and ReadAggregates of all 100 series,
//    every page, against the same windows read by one SQL SELECT.
// 2. ReadAggregates and Rollup latency p50/p99 with 16 concurrent clients.
// 3. Subscribe: time from an upsert's commit to its delivery, with 100 open streams.
// 4. ReadPoints of one site's devices among 1,000,000 series, by measure and site and by
//    measure alone, and ListSeries of one measure, each against one SQL SELECT; then a Rollup
//    of one measure's 250,000 series grouped by site, against one SQL GROUP BY.
// And first (0.) the peak memory of listing series with long descriptions and of one
// Interpolate page over the whole day, each against the same rows read whole through libpq.
#include <malloc.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "common/log/log.h"
#include "common/pg/pg.h"
#include "common/series/series_key.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "pqxx/pqxx"
#include "services/timestream-writer/schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace {

using namespace tidemark;

constexpr char kMeasure[] = "bench_load";
constexpr int kSeries = 100;
constexpr int64_t kPointStepUs = 10'000'000;  // one point every 10 s
constexpr int64_t kDayUs = 86'400'000'000;
constexpr int64_t kWindowUs = 300'000'000;    // stored windows: 5 m
constexpr int64_t kBucketUs = 3'600'000'000;  // rollup buckets: 1 h
constexpr int kRollupRounds = 15;             // after one warm-up round each
constexpr int kClients = 16;
constexpr int kReadAggregatesPerClient = 50;
constexpr int kRollupsPerClient = 10;
constexpr int kSubscribers = 100;
constexpr int kTransactions = 50;
constexpr int kWindowsPerTransaction = 20;
constexpr absl::Duration kTransactionSpacing = absl::Milliseconds(50);
constexpr absl::Duration kCallDeadline = absl::Seconds(60);

// Points of every series for the day: $1 day start, $2 step (both microseconds), $3 points per
// series. Values mix a slow wave with a deterministic jitter so that sums are not exact in binary.
constexpr const char* kInsertPoints =
    "WITH s AS (SELECT series_id, row_number() OVER (ORDER BY series_id) AS n FROM series)"
    " INSERT INTO points (series_id, time, value_double, version, ingested_at)"
    " SELECT s.series_id, 'epoch'::timestamptz + interval '1 microsecond' * ($1::bigint"
    "   + i * $2::bigint), 50 + 30 * sin(i / 360.0 + s.n) + ((i * 7919 + s.n * 104729) % 1000)"
    "   / 100.0, 1, now()"
    " FROM s CROSS JOIN generate_series(0, $3::bigint - 1) AS i";

// Windows of $1 microseconds computed from the points as the aggregator computes them: sums in
// time order, first and last by time. The statement trigger logs them as changes too.
constexpr const char* kInsertWindows =
    "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
    " first, last, version, updated_at)"
    " SELECT p.series_id, interval '1 microsecond' * $1::bigint,"
    " date_bin(interval '1 microsecond' * $1::bigint, p.time, 'epoch'), count(*),"
    " sum(x.v ORDER BY p.time), min(x.v), max(x.v), sum(x.v ORDER BY p.time) / count(*),"
    " (array_agg(x.v ORDER BY p.time))[1], (array_agg(x.v ORDER BY p.time DESC))[1], 1, now()"
    " FROM points p CROSS JOIN LATERAL"
    "   (SELECT coalesce(p.value_double, p.value_int::double precision) AS v) x"
    " WHERE x.v IS NOT NULL GROUP BY p.series_id, 3";

// The baseline: what a user without stored windows runs, the rollup's full answer (count, sum,
// min, max, first, last) from the raw points. $1 measure, $2 bucket, $3 and $4 the range.
constexpr const char* kBaselineRollup =
    "SELECT p.series_id, (EXTRACT(EPOCH FROM date_bin(interval '1 microsecond' * $2::bigint,"
    " p.time, 'epoch')) * 1000000)::bigint AS bucket, count(*), sum(x.v), min(x.v), max(x.v),"
    " (array_agg(x.v ORDER BY p.time))[1], (array_agg(x.v ORDER BY p.time DESC))[1]"
    " FROM points p JOIN series s USING (series_id) CROSS JOIN LATERAL"
    "   (SELECT coalesce(p.value_double, p.value_int::double precision) AS v) x"
    " WHERE s.measure_name = $1 AND x.v IS NOT NULL"
    " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $3::bigint"
    " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $4::bigint"
    " GROUP BY 1, 2 ORDER BY 1, 2";

// The same without first and last (which need a sort per group): the cheapest raw GROUP BY,
// reported so the ratio's dependence on those two fields is visible.
constexpr const char* kBaselineRollupNoFirstLast =
    "SELECT p.series_id, (EXTRACT(EPOCH FROM date_bin(interval '1 microsecond' * $2::bigint,"
    " p.time, 'epoch')) * 1000000)::bigint AS bucket, count(*), sum(x.v), min(x.v), max(x.v)"
    " FROM points p JOIN series s USING (series_id) CROSS JOIN LATERAL"
    "   (SELECT coalesce(p.value_double, p.value_int::double precision) AS v) x"
    " WHERE s.measure_name = $1 AND x.v IS NOT NULL"
    " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $3::bigint"
    " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $4::bigint"
    " GROUP BY 1, 2 ORDER BY 1, 2";

// A new version of stored windows, staged and upserted as services/timestream-writer's
// AggregateStore does (same conflict rule: the higher version wins).
constexpr const char* kCreateStaging =
    "CREATE TEMP TABLE IF NOT EXISTS staging_aggregates (series_id bigint, size_us bigint,"
    " start_us bigint, count bigint, sum double precision, min double precision,"
    " max double precision, avg double precision, first double precision,"
    " last double precision, version bigint) ON COMMIT DELETE ROWS";
constexpr const char* kUpsertStaged =
    "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
    " first, last, version, updated_at)"
    " SELECT series_id, interval '1 microsecond' * size_us,"
    " 'epoch'::timestamptz + interval '1 microsecond' * start_us, count, sum, min, max, avg,"
    " first, last, version, now() FROM staging_aggregates"
    " ON CONFLICT (series_id, window_size, window_start) DO UPDATE SET"
    " count = excluded.count, sum = excluded.sum, min = excluded.min, max = excluded.max,"
    " avg = excluded.avg, first = excluded.first, last = excluded.last,"
    " version = excluded.version, updated_at = excluded.updated_at"
    " WHERE excluded.version > aggregates.version";

// The shortest text that reads back as the same double, as AggregateStore writes them.
std::string Num(double d) {
  char buf[32];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), d);
  return std::string(buf, r.ptr);
}

std::string Bin(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + absl::ToChronoMicroseconds(kCallDeadline);
}

// Its own connection (not shared with other channels to the same address), as a separate
// client process would have.
std::shared_ptr<grpc::Channel> NewChannel(int port) {
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                           grpc::InsecureChannelCredentials(), args);
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return channel;
}

// One bucket of one series: what both the rollup and the baseline answer.
struct Bucket {
  int64_t count = 0;
  double sum = 0, min = 0, max = 0, first = 0, last = 0;
};
using Answer = std::map<std::pair<int64_t, int64_t>, Bucket>;  // (series_id, start_us)
// A bucket of a Rollup grouped by site: also the windows and the series it merged.
struct FleetBucket : Bucket {
  int64_t windows = 0, series = 0;
};
using FleetAnswer = std::map<std::pair<std::string, int64_t>, FleetBucket>;  // (site, start_us)

// The day of every series in 1 h buckets, one group per series.
v1::RollupRequest DayRollup(int64_t day_us) {
  v1::RollupRequest req;
  req.mutable_selector()->set_measure_name(kMeasure);
  req.mutable_range()->set_start_us(day_us);
  req.mutable_range()->set_end_us(day_us + kDayUs);
  req.set_bucket_us(kBucketUs);
  req.set_page_size(10'000);
  return req;
}

// Calls `take(group, bucket)` for every bucket of every page of a rollup of 5 m windows.
template <typename Take>
absl::Status ForEachRollupBucket(v1::QueryService::Stub& stub, v1::RollupRequest req, Take take) {
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::RollupResponse resp;
    const grpc::Status s = stub.Rollup(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          absl::StrCat("Rollup: ", s.error_message()));
    }
    if (resp.source_window_size_us() != kWindowUs) {
      return absl::InternalError(absl::StrCat(
          "Rollup merged windows of ", resp.source_window_size_us(), " us, not ", kWindowUs));
    }
    for (const v1::RollupGroup& g : resp.groups()) {
      for (const v1::RollupBucket& b : g.buckets()) take(g, b);
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return absl::OkStatus();
}

Bucket BucketOf(const v1::RollupBucket& b) {
  const v1::AggregateValue& v = b.value();
  return {v.count(), v.sum(), v.min(), v.max(), v.first(), v.last()};
}

// Every page of a rollup; `windows_seen` counts the stored windows the buckets merged.
absl::StatusOr<Answer> CallRollup(v1::QueryService::Stub& stub, v1::RollupRequest req,
                                  int64_t* windows_seen = nullptr) {
  Answer answer;
  absl::Status s = ForEachRollupBucket(
      stub, std::move(req), [&](const v1::RollupGroup& g, const v1::RollupBucket& b) {
        answer[{g.series().series_id(), b.start_us()}] = BucketOf(b);
        if (windows_seen != nullptr) *windows_seen += b.windows();
      });
  if (!s.ok()) return s;
  return answer;
}

Answer BaselineRollup(pqxx::connection& conn, const char* sql, int64_t day_us) {
  pqxx::read_transaction tx(conn);
  Answer answer;
  for (const pqxx::row& row : tx.exec_params(sql, kMeasure, kBucketUs, day_us, day_us + kDayUs)) {
    Bucket& b = answer[{row[0].as<int64_t>(), row[1].as<int64_t>()}];
    b.count = row[2].as<int64_t>();
    b.sum = row[3].as<double>();
    b.min = row[4].as<double>();
    b.max = row[5].as<double>();
    if (row.size() > 6) {
      b.first = row[6].as<double>();
      b.last = row[7].as<double>();
    }
  }
  return answer;
}

std::string KeyText(const std::pair<int64_t, int64_t>& key) {
  return absl::StrFormat("series %d, start %d us", key.first, key.second);
}
std::string KeyText(const std::pair<std::string, int64_t>& key) {
  return absl::StrFormat("%s, start %d us", key.first, key.second);
}
std::string BucketText(const Bucket& b) {
  return absl::StrFormat("count %d sum %.17g min %g max %g first %g last %g", b.count, b.sum, b.min,
                         b.max, b.first, b.last);
}
std::string BucketText(const FleetBucket& b) {
  return absl::StrFormat("%s windows %d series %d", BucketText(static_cast<const Bucket&>(b)),
                         b.windows, b.series);
}
// Sums within 1e-9 relative (windows are summed in another order), the rest exactly.
bool Agrees(const Bucket& got, const Bucket& want) {
  const double rel = std::abs(got.sum - want.sum) / std::max(1.0, std::abs(want.sum));
  return got.count == want.count && rel <= 1e-9 && got.min == want.min && got.max == want.max &&
         got.first == want.first && got.last == want.last;
}
bool Agrees(const FleetBucket& got, const FleetBucket& want) {
  return Agrees(static_cast<const Bucket&>(got), static_cast<const Bucket&>(want)) &&
         got.windows == want.windows && got.series == want.series;
}

// Empty when the service's answer is the baseline's: the same buckets, each agreeing.
template <typename Key, typename B>
std::string Disagreement(const std::map<Key, B>& service, const std::map<Key, B>& baseline) {
  if (service.size() != baseline.size()) {
    return absl::StrFormat("the service returned %d buckets, the baseline %d", service.size(),
                           baseline.size());
  }
  for (const auto& [key, want] : baseline) {
    auto it = service.find(key);
    if (it == service.end()) return absl::StrCat("bucket (", KeyText(key), ") is missing");
    if (!Agrees(it->second, want)) {
      return absl::StrCat("bucket (", KeyText(key), "): service ", BucketText(it->second),
                          "; baseline ", BucketText(want));
    }
  }
  return "";
}

// Starts the query binary on a port it picks and reads the port back from its log.
absl::StatusOr<std::pair<std::unique_ptr<testing::ChildProcess>, int>> StartQuery(
    const std::string& dsn, const std::string& log) {
  auto query = testing::ChildProcess::Start(
      Bin("services/query/query"),
      {"--listen=127.0.0.1:0", "--metrics_host=127.0.0.1", "--allow_unauthenticated"},
      {{"TIDEMARK_PG_DSN", dsn}, {"TIDEMARK_LOG_LEVEL", "info"}}, log);
  if (!query.ok()) return query.status();
  int port = 0;
  testing::WaitFor(
      [&] {
        const std::string text = (*query)->Log();
        const size_t at = text.find("grpc_port=");
        if (at != std::string::npos) port = std::atoi(text.c_str() + at + 10);
        return port > 0 || !(*query)->Running();
      },
      absl::Seconds(20));
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("the query service did not report its port; log:\n", (*query)->Log()));
  }
  return std::make_pair(*std::move(query), port);
}

struct Latencies {
  std::vector<double> ms;
  int64_t failures = 0;
  std::string first_failure;
};

// Runs `call` `per_client` times on each of kClients threads, each with its own channel; all
// threads start together.
template <typename Call>
Latencies Concurrent(int port, int per_client, Call call) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < kClients; ++c) channels.push_back(NewChannel(port));
  std::vector<Latencies> results(kClients);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::QueryService::NewStub(channels[c]);
      ready.fetch_add(1);
      while (ready.load() < kClients) std::this_thread::yield();
      for (int i = 0; i < per_client; ++i) {
        const absl::Time start = absl::Now();
        const absl::Status s = call(*stub, c * per_client + i);
        if (s.ok()) {
          results[c].ms.push_back(Ms(absl::Now() - start));
        } else if (results[c].failures++ == 0) {
          results[c].first_failure = s.ToString();
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Latencies all;
  for (Latencies& r : results) {
    all.ms.insert(all.ms.end(), r.ms.begin(), r.ms.end());
    all.failures += r.failures;
    if (all.first_failure.empty()) all.first_failure = r.first_failure;
  }
  return all;
}

// One Subscribe stream and what it received, with the receipt time of each update.
struct Subscriber {
  struct Receipt {
    int64_t series_id;
    int64_t window_start_us;
    int64_t version;
    int64_t count;
    absl::Time at;
  };
  grpc::ClientContext ctx;
  std::vector<Receipt> receipts;
  grpc::Status status;
  std::thread thread;
};

// Runs a step, turning a libpqxx exception into a status.
template <typename Step>
absl::Status Guarded(Step step) {
  try {
    return step();
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
}

// The writer's schema, a login for the query service in the read-only role, the series, their
// points for the day and the 5 m windows computed from them. Returns the series ids, sorted.
absl::StatusOr<std::vector<int64_t>> Load(const std::string& owner_dsn, int64_t day_us,
                                          spdlog::logger& logger) {
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  pqxx::connection& conn = **owner;
  if (absl::Status s = pg::ApplyMigrations(conn, writer::SchemaMigrations(), logger); !s.ok()) {
    return s;
  }
  std::vector<int64_t> ids;
  const absl::Status loaded = Guarded([&] {
    pqxx::work tx(conn);
    tx.exec0("CREATE ROLE tidemark_query LOGIN IN ROLE tidemark_reader");
    const std::string day =
        absl::FormatTime("%Y-%m-%d", absl::FromUnixMicros(day_us), absl::UTCTimeZone());
    for (const char* parent : {"points", "aggregates"}) {
      tx.exec_params("SELECT tidemark_ensure_daily_partitions($1, $2::date, $2::date)", parent,
                     day);
    }
    const char* regions[] = {"eu-west", "eu-north", "us-east", "ap-south"};
    for (int i = 0; i < kSeries; ++i) {
      const std::map<std::string, std::string> dims = {
          {"device_id", absl::StrFormat("device-%03d", i)}, {"region", regions[i % 4]}};
      const std::string key = series::CanonicalKey(kMeasure, dims);
      ids.push_back(series::SeriesId(key));
      tx.exec_params(
          "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
          " VALUES ($1, $2, $3, $4, $5::jsonb)",
          ids.back(), key, kMeasure, dims.at("device_id"), nlohmann::json(dims).dump());
    }
    tx.exec_params0(kInsertPoints, day_us, kPointStepUs, kDayUs / kPointStepUs);
    tx.exec_params0(kInsertWindows, kWindowUs);
    tx.commit();
    pqxx::nontransaction vacuum(conn);
    vacuum.exec0("VACUUM ANALYZE");
    return absl::OkStatus();
  });
  if (!loaded.ok()) return loaded;
  std::sort(ids.begin(), ids.end());
  return ids;
}

// 1. The day's rollup over gRPC, checked against and timed with the raw-point GROUP BY.
absl::Status MeasureRollup(v1::QueryService::Stub& stub, pqxx::connection& reader, int64_t day_us) {
  int64_t windows_merged = 0;
  const absl::StatusOr<Answer> service = CallRollup(stub, DayRollup(day_us), &windows_merged);
  if (!service.ok()) return service.status();
  const Answer baseline = BaselineRollup(reader, kBaselineRollup, day_us);
  std::string wrong = Disagreement(*service, baseline);
  if (wrong.empty() && baseline.size() != static_cast<size_t>(kSeries * kDayUs / kBucketUs)) {
    wrong = absl::StrFormat("the baseline has %d buckets, expected %d", baseline.size(),
                            kSeries * kDayUs / kBucketUs);
  }
  if (wrong.empty() && windows_merged != kSeries * kDayUs / kWindowUs) {
    wrong = absl::StrFormat("the buckets merged %d windows, %d are stored", windows_merged,
                            kSeries * kDayUs / kWindowUs);
  }
  if (!wrong.empty()) {
    return absl::InternalError(
        absl::StrCat("the rollup disagrees with the raw-point baseline: ", wrong));
  }
  (void)BaselineRollup(reader, kBaselineRollupNoFirstLast, day_us);  // warm-up
  std::vector<double> service_ms, baseline_ms, light_ms, ratios;
  for (int r = 0; r < kRollupRounds; ++r) {
    absl::Time t = absl::Now();
    const absl::StatusOr<Answer> a = CallRollup(stub, DayRollup(day_us));
    service_ms.push_back(Ms(absl::Now() - t));
    t = absl::Now();
    const Answer b = BaselineRollup(reader, kBaselineRollup, day_us);
    baseline_ms.push_back(Ms(absl::Now() - t));
    t = absl::Now();
    (void)BaselineRollup(reader, kBaselineRollupNoFirstLast, day_us);
    light_ms.push_back(Ms(absl::Now() - t));
    ratios.push_back(baseline_ms.back() / service_ms.back());
    if (!a.ok()) return a.status();
    if (wrong = Disagreement(*a, b); !wrong.empty()) {
      return absl::InternalError(absl::StrCat("rollup round ", r, " disagrees: ", wrong));
    }
  }
  const double service_p50 = Percentile(service_ms, 0.5);
  const double baseline_p50 = Percentile(baseline_ms, 0.5);
  const double light_p50 = Percentile(light_ms, 0.5);
  bench::Report(
      "query.txt",
      absl::StrFormat("rollup 1 day -> 1 h buckets, %d series (%d buckets; answers agree: counts "
                      "exact, sums within 1e-9): query service from 5 m windows over gRPC "
                      "median %.1f ms; raw points GROUP BY date_bin median %.1f ms; ratio %.1fx "
                      "(median of per-round ratios %.1fx, %d rounds; target >= 20x)",
                      kSeries, baseline.size(), service_p50, baseline_p50,
                      baseline_p50 / service_p50, Percentile(ratios, 0.5), kRollupRounds));
  bench::Report("query.txt",
                absl::StrFormat("  raw GROUP BY without first/last (no sort per group): median "
                                "%.1f ms, %.1fx the service",
                                light_p50, light_p50 / service_p50));
  return absl::OkStatus();
}

// Bytes this process's heap holds in use (glibc): what a result held in memory takes, however
// high the process's peak already was.
int64_t HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<int64_t>(m.uordblks + m.hblkhd);
}

// Runs one statement on `conn`, outside a transaction block.
void Sql(pqxx::connection& conn, const std::string& statement) {
  pqxx::nontransaction tx(conn);
  tx.exec0(statement);
}

// Every window of a real_time ReadAggregates, page after page, each as "series_id:window".
absl::StatusOr<std::vector<std::string>> ReadAllWindows(v1::QueryService::Stub& stub,
                                                        v1::ReadAggregatesRequest req) {
  std::vector<std::string> windows;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::ReadAggregatesResponse resp;
    const grpc::Status st = stub.ReadAggregates(&ctx, req, &resp);
    if (!st.ok()) return absl::InternalError(absl::StrCat("ReadAggregates: ", st.error_message()));
    for (const v1::SeriesWindows& sw : resp.series()) {
      for (const v1::AggregateWindow& w : sw.windows()) {
        windows.push_back(absl::StrCat(sw.series().series_id(), ":", w.SerializeAsString()));
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return windows;
}

// How many points a ReadPoints returns, page after page.
absl::StatusOr<size_t> ReadAllPoints(v1::QueryService::Stub& stub, v1::ReadPointsRequest req) {
  size_t got = 0;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::ReadPointsResponse resp;
    const grpc::Status st = stub.ReadPoints(&ctx, req, &resp);
    if (!st.ok()) return absl::InternalError(absl::StrCat("ReadPoints: ", st.error_message()));
    for (const v1::SeriesPoints& sp : resp.series()) got += sp.points_size();
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return got;
}

// 1b. real_time ReadAggregates of one device that sends string measures beside its numbers
//     (4 of each, a point every 10 s for the day; the numbers' 5 m windows stored up to an hour
//     before its end, so the last hour is computed from the raw points). Baseline in the same
//     run: the same request naming the 4 numeric series, which returns the same windows.
absl::Status MeasureRealTimeMixedKinds(v1::QueryService::Stub& stub, const std::string& owner_dsn,
                                       int64_t day_us) {
  constexpr int kEach = 4;
  constexpr int kRounds = 15;
  constexpr char kDevice[] = "mixed-kinds-000";
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  std::vector<int64_t> numeric_ids, string_ids;
  {
    pqxx::work tx(**owner);
    const std::map<std::string, std::string> dims = {{"device_id", kDevice}};
    for (int i = 0; i < 2 * kEach; ++i) {
      const bool numeric = i < kEach;
      const std::string measure = absl::StrCat(numeric ? "turbine_reading_" : "turbine_state_", i);
      const std::string key = series::CanonicalKey(
          measure, dims, numeric ? series::ValueKind::kNumeric : series::ValueKind::kString);
      (numeric ? numeric_ids : string_ids).push_back(series::SeriesId(key));
      tx.exec_params(
          "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
          " VALUES ($1, $2, $3, $4, $5::jsonb)",
          series::SeriesId(key), key, measure, kDevice, nlohmann::json(dims).dump());
    }
    const auto ids = [](const std::vector<int64_t>& v) {
      return absl::StrCat("{", absl::StrJoin(v, ","), "}");
    };
    const char* kPoints =
        "INSERT INTO points (series_id, time, value_double, value_string, version, ingested_at)"
        " SELECT s.id, 'epoch'::timestamptz + interval '1 microsecond' * ($2::bigint"
        "   + i * $3::bigint), CASE WHEN $5 THEN 20 + (i * 7919 % 1000) / 100.0 END,"
        "   CASE WHEN NOT $5 THEN (ARRAY['running', 'idle', 'curtailed'])[1 + i % 3] END, 1, now()"
        " FROM unnest($1::bigint[]) AS s(id) CROSS JOIN generate_series(0, $4::bigint - 1) AS i";
    tx.exec_params0(kPoints, ids(numeric_ids), day_us, kPointStepUs, kDayUs / kPointStepUs, true);
    tx.exec_params0(kPoints, ids(string_ids), day_us, kPointStepUs, kDayUs / kPointStepUs, false);
    tx.exec_params0(
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
        " first, last, version, updated_at)"
        " SELECT p.series_id, interval '1 microsecond' * $2::bigint,"
        " date_bin(interval '1 microsecond' * $2::bigint, p.time, 'epoch'), count(*),"
        " sum(p.value_double ORDER BY p.time), min(p.value_double), max(p.value_double),"
        " sum(p.value_double ORDER BY p.time) / count(*),"
        " (array_agg(p.value_double ORDER BY p.time))[1],"
        " (array_agg(p.value_double ORDER BY p.time DESC))[1], 1, now()"
        " FROM points p WHERE p.series_id = ANY($1::bigint[])"
        " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $3::bigint"
        " GROUP BY p.series_id, 3",
        ids(numeric_ids), kWindowUs, day_us + kDayUs - 3'600'000'000);
    tx.commit();
  }
  Sql(**owner, "ANALYZE");
  v1::ReadAggregatesRequest device;
  v1::DimensionMatcher* m = device.mutable_selector()->add_matchers();
  m->set_name("device_id");
  m->set_value(kDevice);
  device.mutable_range()->set_start_us(day_us);
  device.mutable_range()->set_end_us(day_us + kDayUs);
  device.set_window_size_us(kWindowUs);
  device.set_real_time(true);
  v1::ReadAggregatesRequest named = device;
  for (int64_t id : numeric_ids) named.mutable_selector()->add_series_ids(id);
  std::vector<double> device_ms, named_ms;
  for (int r = 0; r <= kRounds; ++r) {  // round 0 warms up
    absl::Time t = absl::Now();
    absl::StatusOr<std::vector<std::string>> a = ReadAllWindows(stub, device);
    const double a_ms = Ms(absl::Now() - t);
    t = absl::Now();
    absl::StatusOr<std::vector<std::string>> b = ReadAllWindows(stub, named);
    const double b_ms = Ms(absl::Now() - t);
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (*a != *b || b->size() != static_cast<size_t>(kEach * kDayUs / kWindowUs)) {
      return absl::InternalError(absl::StrFormat(
          "real_time ReadAggregates of the device returned %d windows, of its numeric series "
          "%d (expected %d, the same)",
          a->size(), b->size(), kEach * kDayUs / kWindowUs));
    }
    if (r == 0) continue;
    device_ms.push_back(a_ms);
    named_ms.push_back(b_ms);
  }
  const double device_p50 = Percentile(device_ms, 0.5);
  const double named_p50 = Percentile(named_ms, 0.5);
  bench::Report(
      "query.txt",
      absl::StrFormat("real_time ReadAggregates, 1 day of 5 m windows (the last hour from raw "
                      "points) of a device with %d numeric and %d string measures: by device "
                      "median %.1f ms; baseline, its %d numeric series by id, median %.1f ms "
                      "(the same %d windows); ratio %.2fx (%d rounds)",
                      kEach, kEach, device_p50, kEach, named_p50, kEach * kDayUs / kWindowUs,
                      device_p50 / named_p50, kRounds));
  return absl::OkStatus();
}

// How many rows one SQL statement returns, read whole through libpq: the baseline of a paged read.
template <typename... Params>
size_t RowsRead(pqxx::connection& conn, const char* sql, Params&&... params) {
  pqxx::read_transaction tx(conn);
  return tx.exec_params(sql, std::forward<Params>(params)...).size();
}

// 1c. ReadAggregates of every series of the measure (100 x 288 windows, all pages), stored
//     windows only and real_time, and ReadPoints of every series over an hour (100 x 360
//     points), each against the same rows read by one SQL statement through libpq in the same
//     run (the store's own speed).
absl::Status MeasureFleetReads(v1::QueryService::Stub& stub, pqxx::connection& reader,
                               int64_t day_us) {
  constexpr int kRounds = 5;
  const size_t expected = static_cast<size_t>(kSeries * kDayUs / kWindowUs);
  v1::ReadAggregatesRequest req;
  req.mutable_selector()->set_measure_name(kMeasure);
  req.mutable_range()->set_start_us(day_us);
  req.mutable_range()->set_end_us(day_us + kDayUs);
  req.set_window_size_us(kWindowUs);
  req.set_page_size(1000);
  v1::ReadAggregatesRequest live = req;
  live.set_real_time(true);
  std::vector<double> stored_ms, live_ms, sql_ms;
  for (int r = 0; r <= kRounds; ++r) {  // round 0 warms up
    absl::Time t = absl::Now();
    absl::StatusOr<std::vector<std::string>> a = ReadAllWindows(stub, req);
    const double a_ms = Ms(absl::Now() - t);
    t = absl::Now();
    absl::StatusOr<std::vector<std::string>> b = ReadAllWindows(stub, live);
    const double b_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t direct =
        RowsRead(reader,
                 "SELECT a.series_id, a.window_start, a.count, a.sum, a.min, a.max, a.avg, a.first,"
                 " a.last, a.version FROM aggregates a JOIN series s USING (series_id)"
                 " WHERE s.measure_name = $1 AND a.window_size = interval '1 microsecond' * $2"
                 " AND a.window_start >= 'epoch'::timestamptz + interval '1 microsecond' * $3"
                 " AND a.window_start < 'epoch'::timestamptz + interval '1 microsecond' * $4"
                 " ORDER BY a.series_id, a.window_start",
                 kMeasure, kWindowUs, day_us, day_us + kDayUs);
    const double c_ms = Ms(absl::Now() - t);
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (*a != *b || a->size() != expected || direct != expected) {
      return absl::InternalError(absl::StrFormat(
          "ReadAggregates of the measure returned %d windows (%d with real_time), SQL %d; "
          "expected %d",
          a->size(), b->size(), direct, expected));
    }
    if (r == 0) continue;
    stored_ms.push_back(a_ms);
    live_ms.push_back(b_ms);
    sql_ms.push_back(c_ms);
  }
  const double sql_p50 = Percentile(sql_ms, 0.5);
  bench::Report(
      "query.txt",
      absl::StrFormat("ReadAggregates of %d series x 1 day of 5 m windows (%d windows, pages of "
                      "1000) over gRPC: median %.1f ms, real_time %.1f ms; baseline, the same "
                      "windows by one SQL SELECT through libpq, median %.1f ms; ratio %.2fx and "
                      "%.2fx (%d rounds)",
                      kSeries, expected, Percentile(stored_ms, 0.5), Percentile(live_ms, 0.5),
                      sql_p50, Percentile(stored_ms, 0.5) / sql_p50,
                      Percentile(live_ms, 0.5) / sql_p50, kRounds));

  // Raw points of every series over the day's first hour, pages of 1000.
  v1::ReadPointsRequest points;
  points.mutable_selector()->set_measure_name(kMeasure);
  points.mutable_range()->set_start_us(day_us);
  points.mutable_range()->set_end_us(day_us + 3'600'000'000);
  points.set_page_size(1000);
  const size_t expected_points = static_cast<size_t>(kSeries * 3'600'000'000 / kPointStepUs);
  std::vector<double> points_ms, points_sql_ms;
  for (int r = 0; r <= kRounds; ++r) {
    absl::Time t = absl::Now();
    const absl::StatusOr<size_t> got = ReadAllPoints(stub, points);
    const double a_ms = Ms(absl::Now() - t);
    if (!got.ok()) return got.status();
    t = absl::Now();
    const size_t direct = RowsRead(
        reader,
        "SELECT p.series_id, p.time, p.value_double, p.value_int, p.value_bool, p.value_string,"
        " p.version FROM points p JOIN series s USING (series_id) WHERE s.measure_name = $1"
        " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $2"
        " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $3"
        " ORDER BY p.series_id, p.time",
        kMeasure, day_us, day_us + 3'600'000'000);
    const double b_ms = Ms(absl::Now() - t);
    if (*got != expected_points || direct != expected_points) {
      return absl::InternalError(
          absl::StrFormat("ReadPoints of the measure returned %d points, SQL %d; expected %d", *got,
                          direct, expected_points));
    }
    if (r == 0) continue;
    points_ms.push_back(a_ms);
    points_sql_ms.push_back(b_ms);
  }
  bench::Report(
      "query.txt",
      absl::StrFormat("ReadPoints of %d series x 1 hour (%d points, pages of 1000) over "
                      "gRPC: median %.1f ms; baseline, the same points by one SQL "
                      "SELECT through libpq, median %.1f ms; ratio %.2fx (%d rounds)",
                      kSeries, expected_points, Percentile(points_ms, 0.5),
                      Percentile(points_sql_ms, 0.5),
                      Percentile(points_ms, 0.5) / Percentile(points_sql_ms, 0.5), kRounds));
  return absl::OkStatus();
}

// 0. Memory of listing series with long descriptions (1,001 series of 30 dimensions, about
//    58 KB each): every page, through a query service of its own so that its peak is this
//    step's, each series listed once. Baseline in the same run: the same descriptions read by
//    one query through libpq in this process, the way a page read them before it read their
//    sizes first.
absl::Status MeasureWideListSeries(const std::string& owner_dsn, const std::string& reader_dsn,
                                   const std::string& dir) {
  constexpr int kWide = 1001;
  constexpr char kWideMeasure[] = "bench_wide_descriptions";
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  Sql(**owner,
      absl::StrCat(
          "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
          " SELECT i, 'wide-' || i, '",
          kWideMeasure,
          "', 'wide-' || i, (SELECT jsonb_object_agg('k' || j, repeat(md5((i * 100 + j)::text),"
          " 60)) FROM generate_series(1, 30) j) FROM generate_series(1, ",
          kWide, ") i"));
  auto started = StartQuery(reader_dsn, dir + "/query-wide.log");
  if (!started.ok()) return started.status();
  const std::unique_ptr<testing::ChildProcess> query = std::move(started->first);
  auto stub = v1::QueryService::NewStub(NewChannel(started->second));
  const bench::Memory before = bench::ReadMemory(query->pid());
  v1::ListSeriesRequest req;
  req.mutable_selector()->set_measure_name(kWideMeasure);
  req.set_page_size(1000);
  std::set<int64_t> listed;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ListSeriesResponse resp;
    if (grpc::Status s = stub->ListSeries(&ctx, req, &resp); !s.ok()) {
      return absl::InternalError(absl::StrCat("ListSeries: ", s.error_message()));
    }
    ++pages;
    for (const v1::Series& series : resp.series()) {
      if (series.canonical_key() != absl::StrCat("wide-", series.series_id()) ||
          series.dimensions_size() != 30 || !listed.insert(series.series_id()).second) {
        return absl::InternalError(
            absl::StrCat("ListSeries described series ", series.series_id(), " wrongly or twice"));
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  const bench::Memory after = bench::ReadMemory(query->pid());
  query->Signal(SIGTERM);
  (void)query->Wait(absl::Seconds(15));
  if (static_cast<int>(listed.size()) != kWide) {
    return absl::InternalError(absl::StrCat("ListSeries listed ", listed.size(), " of ", kWide));
  }
  int64_t baseline_kb = 0;
  {
    const int64_t heap_before = HeapInUse();
    pqxx::nontransaction tx(**owner);
    const pqxx::result all = tx.exec_params(
        "SELECT series_id, canonical_key, measure_name, dimensions::text FROM series"
        " WHERE measure_name = $1 ORDER BY series_id LIMIT 1001",
        kWideMeasure);
    baseline_kb = (HeapInUse() - heap_before) / 1024;
  }
  Sql(**owner, absl::StrCat("DELETE FROM series WHERE measure_name = '", kWideMeasure, "'"));
  const int64_t service_kb = after.hwm_kb - before.hwm_kb;
  bench::Report(
      "query.txt",
      absl::StrFormat("ListSeries, %d series of 30 dimensions (about 58 KB each), "
                      "page_size 1000: %d pages; query service peak resident memory "
                      "+%d KiB; baseline, the descriptions held in one libpq result: %d "
                      "KiB; ratio service/baseline %.3f",
                      kWide, pages, service_kb, baseline_kb,
                      static_cast<double>(service_kb) / std::max<int64_t>(1, baseline_kb)));
  return absl::OkStatus();
}

// 0. Memory of a grouped Rollup whose group keys are long: 10,000 series, each its own group
//    of 8 group_by dimensions of about 2 KB (a 16 KB key), one window each, page_size 10,000;
//    the first two pages, through a query service of its own so that its peak is this step's,
//    each answer checked against the window stored. Baseline in the same run: the group keys
//    of the 10,000 rows a page may read, held in one libpq result in this process, the way a
//    page read its rows before it read them through a cursor.
absl::Status MeasureWideGroupedRollup(const std::string& owner_dsn, const std::string& reader_dsn,
                                      const std::string& dir, int64_t day_us) {
  constexpr int kGroups = 10'000;
  constexpr char kWideMeasure[] = "bench_wide_groups";
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  // Series ids from 10^9 keep clear of the loaded series; each window's sum is its series'.
  Sql(**owner,
      absl::StrCat(
          "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
          " SELECT 1000000000 + i, 'group-' || i, '",
          kWideMeasure,
          "', 'group-' || i, (SELECT jsonb_object_agg('k' || j, repeat(md5((i * 10 + j)::text),"
          " 62)) FROM generate_series(1, 8) j) FROM generate_series(1, ",
          kGroups, ") i"));
  Sql(**owner,
      absl::StrCat("INSERT INTO aggregates (series_id, window_size, window_start, count, sum,"
                   " min, max, avg, first, last, version) SELECT 1000000000 + i, interval '",
                   kWindowUs, " microseconds', 'epoch'::timestamptz + interval '", day_us,
                   " microseconds', 1, i, i, i, i, i, i, 1 FROM generate_series(1, ", kGroups,
                   ") i"));
  auto started = StartQuery(reader_dsn, dir + "/query-groups.log");
  if (!started.ok()) return started.status();
  const std::unique_ptr<testing::ChildProcess> query = std::move(started->first);
  auto stub = v1::QueryService::NewStub(NewChannel(started->second));
  const bench::Memory before = bench::ReadMemory(query->pid());
  v1::RollupRequest req;
  req.mutable_selector()->set_measure_name(kWideMeasure);
  for (int j = 1; j <= 8; ++j) req.add_group_by(absl::StrCat("k", j));
  req.mutable_range()->set_start_us(day_us);
  req.mutable_range()->set_end_us(day_us + kDayUs);
  req.set_bucket_us(kDayUs);
  req.set_page_size(10'000);
  std::set<std::string> seen;
  int64_t groups = 0;
  const absl::Time start = absl::Now();
  for (int page = 0; page < 2; ++page) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::RollupResponse resp;
    if (grpc::Status s = stub->Rollup(&ctx, req, &resp); !s.ok()) {
      return absl::InternalError(absl::StrCat("Rollup: ", s.error_message()));
    }
    if (resp.next_page_token().empty()) {
      return absl::InternalError("a page of 16 KB group keys was not cut at the byte bound");
    }
    for (const v1::RollupGroup& g : resp.groups()) {
      // k1 is md5(i * 10 + 1) repeated: find i by the window's sum and check the key.
      if (g.buckets_size() != 1 || g.group().size() != 8) {
        return absl::InternalError("a wide group has not 1 bucket and 8 dimensions");
      }
      const int64_t i = static_cast<int64_t>(g.buckets(0).value().sum());
      pqxx::nontransaction tx(**owner);
      const std::string k1 =
          tx.exec_params1("SELECT repeat(md5(($1 * 10 + 1)::text), 62)", i)[0].as<std::string>();
      if (g.group().at("k1") != k1 || g.buckets(0).value().count() != 1 ||
          g.buckets(0).start_us() != day_us || !seen.insert(k1).second) {
        return absl::InternalError(absl::StrCat("group of series ", i, " answered wrongly"));
      }
      ++groups;
    }
    req.set_page_token(resp.next_page_token());
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const bench::Memory after = bench::ReadMemory(query->pid());
  query->Signal(SIGTERM);
  (void)query->Wait(absl::Seconds(15));
  int64_t baseline_kb = 0;
  {
    const int64_t heap_before = HeapInUse();
    pqxx::nontransaction tx(**owner);
    const pqxx::result keys = tx.exec_params(
        "SELECT jsonb_build_array(dimensions->>'k1', dimensions->>'k2', dimensions->>'k3',"
        " dimensions->>'k4', dimensions->>'k5', dimensions->>'k6', dimensions->>'k7',"
        " dimensions->>'k8')::text FROM series WHERE measure_name = $1 LIMIT $2",
        kWideMeasure, kGroups);
    baseline_kb = (HeapInUse() - heap_before) / 1024;
  }
  Sql(**owner,
      absl::StrCat("DELETE FROM aggregates WHERE series_id IN (SELECT series_id FROM series"
                   " WHERE measure_name = '",
                   kWideMeasure, "')"));
  Sql(**owner, absl::StrCat("DELETE FROM series WHERE measure_name = '", kWideMeasure, "'"));
  const int64_t service_kb = after.hwm_kb - before.hwm_kb;
  bench::Report(
      "query.txt",
      absl::StrFormat("Rollup grouped by 8 dimensions of about 2 KB, %d groups, page_size "
                      "10000: 2 pages of %d groups in %.2f s; query service peak resident "
                      "memory +%d KiB; baseline, the group keys of %d rows held in one libpq "
                      "result: %d KiB; ratio service/baseline %.3f",
                      kGroups, groups, seconds, service_kb, kGroups, baseline_kb,
                      static_cast<double>(service_kb) / std::max<int64_t>(1, baseline_kb)));
  return absl::OkStatus();
}

// 0. Memory of a Subscribe stream that stops reading, on a series with about 10 KB of
//    dimensions: 9,000 updates (15 transactions of 600 windows), fewer than the 10,000 the
//    update bound allows, through a query service of its own with default flags so that its
//    peak is this step's. Baseline in the same run: those 9,000 updates held as messages in
//    this process, what the stream's queue held before it was bounded in bytes too.
absl::Status MeasureStalledSubscriber(const std::string& owner_dsn, const std::string& reader_dsn,
                                      const std::string& dir, int64_t day_us) {
  constexpr int kWindows = 600, kTransactions = 15;
  constexpr int64_t kSeriesId = 2'000'000'001;
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  Sql(**owner, absl::StrCat("INSERT INTO series (series_id, canonical_key, measure_name, device_id,"
                            " dimensions) SELECT ",
                            kSeriesId,
                            ", 'stalled', 'bench_stalled_subscriber', 'd', jsonb_build_object("
                            "'device_id', 'd', 'a', repeat('a', 2500), 'b', repeat('b', 2500), 'c',"
                            " repeat('c', 2500), 'd', repeat('d', 2500))"));
  auto started = StartQuery(reader_dsn, dir + "/query-stalled.log");
  if (!started.ok()) return started.status();
  const std::unique_ptr<testing::ChildProcess> query = std::move(started->first);
  auto stub = v1::QueryService::NewStub(NewChannel(started->second));
  const bench::Memory before = bench::ReadMemory(query->pid());
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(kSeriesId);
  grpc::ClientContext ctx;
  auto stream = stub->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  if (!stream->Read(&resp)) return absl::InternalError("the Subscribe stream did not start");
  for (int t = 0; t < kTransactions; ++t) {
    Sql(**owner,
        absl::StrCat("INSERT INTO aggregates (series_id, window_size, window_start, count, sum,"
                     " min, max, avg, first, last, version) SELECT ",
                     kSeriesId, ", interval '", kWindowUs,
                     " microseconds', 'epoch'::timestamptz + interval '1 microsecond' * ", day_us,
                     " + i * interval '1 second', 1, 1, 1, 1, 1, 1, 1, 1"
                     " FROM generate_series(0, ",
                     kWindows - 1,
                     ") i ON CONFLICT (series_id, window_size, window_start)"
                     " DO UPDATE SET version = aggregates.version + 1"));
  }
  absl::SleepFor(absl::Seconds(3));  // the hub reads them all and queues what the stream takes
  const bench::Memory after = bench::ReadMemory(query->pid());
  // Now read: what the stream had queued, to its end or to the last update (a stream that
  // nothing bounded is still open then).
  int64_t received = 0;
  bool ended = false;
  while (received < kWindows * kTransactions) {
    if (!stream->Read(&resp)) {
      ended = true;
      break;
    }
    received += resp.updates_size();
  }
  if (!ended) ctx.TryCancel();
  const grpc::Status status = stream->Finish();
  query->Signal(SIGTERM);
  (void)query->Wait(absl::Seconds(15));
  int64_t baseline_kb = 0;
  {
    const int64_t heap_before = HeapInUse();
    std::vector<v1::WindowAggregate> held(kWindows * kTransactions);
    for (v1::WindowAggregate& a : held) {
      v1::Series* series = a.mutable_series();
      series->set_series_id(kSeriesId);
      series->set_measure_name("bench_stalled_subscriber");
      series->set_canonical_key("stalled");
      auto& dims = *series->mutable_dimensions();
      dims["device_id"] = "d";
      for (const char* k : {"a", "b", "c", "d"}) dims[k] = std::string(2500, k[0]);
      a.set_window_size_us(kWindowUs);
      a.set_count(1);
    }
    baseline_kb = (HeapInUse() - heap_before) / 1024;
  }
  Sql(**owner, absl::StrCat("DELETE FROM aggregates WHERE series_id = ", kSeriesId));
  Sql(**owner, absl::StrCat("DELETE FROM series WHERE series_id = ", kSeriesId));
  const int64_t service_kb = after.hwm_kb - before.hwm_kb;
  bench::Report(
      "query.txt",
      absl::StrFormat("Subscribe, a stream that stops reading, %d updates of a series with about "
                      "10 KB of dimensions: ended %s after %d updates; query service peak "
                      "resident memory +%d KiB; baseline, the %d updates held as messages: %d "
                      "KiB; ratio service/baseline %.3f",
                      kWindows * kTransactions,
                      !ended ? std::string("not (still open)")
                      : status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED
                          ? std::string("with RESOURCE_EXHAUSTED")
                          : absl::StrCat("with status ", status.error_code()),
                      received, service_kb, kWindows * kTransactions, baseline_kb,
                      static_cast<double>(service_kb) / std::max<int64_t>(1, baseline_kb)));
  return absl::OkStatus();
}

// 0. Memory of one Interpolate page over the whole day of every series from the raw points
//    (864,000 observations), run first so that the query service's peak is its own; its
//    answer checked value by value against the points at the steps. Baseline in the same run:
//    the same observations read by one query through libpq in this process, the way a call
//    read them before it fetched through a cursor.
absl::Status MeasureInterpolateMemory(v1::QueryService::Stub& stub, pqxx::connection& reader,
                                      int query_pid, int64_t day_us) {
  constexpr int64_t kStepUs = 120'000'000;  // every 12th point: the answers are the points
  v1::InterpolateRequest req;
  req.mutable_selector()->set_measure_name(kMeasure);
  req.mutable_range()->set_start_us(day_us);
  req.mutable_range()->set_end_us(day_us + kDayUs);
  req.set_step_us(kStepUs);
  req.set_method(v1::INTERPOLATION_METHOD_LINEAR);
  req.set_page_size(kSeries);
  const bench::Memory before = bench::ReadMemory(query_pid);
  std::map<std::pair<int64_t, int64_t>, double> got;
  const absl::Time start = absl::Now();
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::InterpolateResponse resp;
    if (grpc::Status s = stub.Interpolate(&ctx, req, &resp); !s.ok()) {
      return absl::InternalError(absl::StrCat("Interpolate: ", s.error_message()));
    }
    for (const v1::InterpolatedSeries& series : resp.series()) {
      for (const v1::InterpolatedValue& v : series.values()) {
        got[{series.series().series_id(), v.time_us()}] = v.value();
      }
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  const double service_s = absl::ToDoubleSeconds(absl::Now() - start);
  const bench::Memory after = bench::ReadMemory(query_pid);

  pqxx::read_transaction tx(reader);
  const pqxx::result want = tx.exec_params(
      "SELECT series_id, ((extract(epoch FROM time) * 1000000)::bigint) AS t, value_double"
      " FROM points WHERE time >= 'epoch'::timestamptz + interval '1 microsecond' * $1"
      " AND time < 'epoch'::timestamptz + interval '1 microsecond' * ($1 + $2)"
      " AND (extract(epoch FROM time) * 1000000)::bigint % $3 = 0",
      day_us, kDayUs, kStepUs);
  if (want.size() != got.size()) {
    return absl::InternalError(absl::StrCat("Interpolate returned ", got.size(),
                                            " values; the points at its steps are ", want.size()));
  }
  for (const pqxx::row& row : want) {
    const auto it = got.find({row[0].as<int64_t>(), row[1].as<int64_t>()});
    if (it == got.end() || std::abs(it->second - row[2].as<double>()) > 1e-9) {
      return absl::InternalError(absl::StrCat("Interpolate's value of series ", row[0].c_str(),
                                              " at ", row[1].c_str(), " is not the point's"));
    }
  }
  // Baseline: the page's observations, whole, in one libpq result.
  int64_t observations = 0;
  int64_t baseline_kb = 0;
  {
    const int64_t heap_before = HeapInUse();
    const pqxx::result all = tx.exec_params(
        "SELECT series_id, (extract(epoch FROM time) * 1000000)::bigint,"
        " coalesce(value_double, value_int::double precision) FROM points"
        " WHERE time >= 'epoch'::timestamptz + interval '1 microsecond' * $1"
        " AND time < 'epoch'::timestamptz + interval '1 microsecond' * ($1 + $2)"
        " ORDER BY series_id, time",
        day_us, kDayUs);
    observations = static_cast<int64_t>(all.size());
    baseline_kb = (HeapInUse() - heap_before) / 1024;
  }
  const int64_t service_kb = after.hwm_kb - before.hwm_kb;
  bench::Report(
      "query.txt",
      absl::StrFormat("Interpolate, raw points, %d series x 1 day, %d observations -> %d values "
                      "(checked against the points): %.2f s; query service peak resident "
                      "memory %d -> %d KiB (+%d KiB); baseline, the observations in one libpq "
                      "result: %d KiB held; ratio service/baseline %.3f",
                      kSeries, observations, got.size(), service_s, before.hwm_kb, after.hwm_kb,
                      service_kb, baseline_kb,
                      static_cast<double>(service_kb) / std::max<int64_t>(1, baseline_kb)));
  return absl::OkStatus();
}

// 2. ReadAggregates and Rollup latency with kClients concurrent clients.
absl::Status MeasureConcurrent(int port, const std::vector<int64_t>& series_ids, int64_t day_us) {
  const Latencies read = Concurrent(
      port, kReadAggregatesPerClient, [&](v1::QueryService::Stub& s, int n) -> absl::Status {
        v1::ReadAggregatesRequest req;
        req.mutable_selector()->add_series_ids(series_ids[n % kSeries]);
        req.mutable_range()->set_start_us(day_us);
        req.mutable_range()->set_end_us(day_us + kDayUs);
        req.set_window_size_us(kWindowUs);
        req.set_real_time(true);
        grpc::ClientContext ctx;
        ctx.set_deadline(Deadline());
        v1::ReadAggregatesResponse resp;
        const grpc::Status st = s.ReadAggregates(&ctx, req, &resp);
        if (!st.ok()) {
          return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                              absl::StrCat("ReadAggregates: ", st.error_message()));
        }
        const int windows = resp.series_size() == 1 ? resp.series(0).windows_size() : 0;
        if (resp.series_size() != 1 || windows != kDayUs / kWindowUs ||
            !resp.next_page_token().empty()) {
          return absl::InternalError(
              absl::StrCat("ReadAggregates returned ", resp.series_size(), " series, ", windows,
                           " windows; expected 1 series of ", kDayUs / kWindowUs));
        }
        return absl::OkStatus();
      });
  const Latencies rollup =
      Concurrent(port, kRollupsPerClient, [&](v1::QueryService::Stub& s, int) -> absl::Status {
        const absl::StatusOr<Answer> a = CallRollup(s, DayRollup(day_us));
        if (!a.ok()) return a.status();
        if (a->size() != static_cast<size_t>(kSeries * kDayUs / kBucketUs)) {
          return absl::InternalError(absl::StrCat("Rollup returned ", a->size(), " buckets"));
        }
        return absl::OkStatus();
      });
  std::vector<std::string> failures;
  for (const auto& [name, what, l] :
       {std::tuple("ReadAggregates", "1 series x 1 day of 5 m windows (288), real_time", &read),
        std::tuple("Rollup", "100 series x 1 day -> 1 h buckets (2400)", &rollup)}) {
    if (l->failures > 0) {
      failures.push_back(absl::StrFormat(
          "%s under %d clients: %d of %d calls failed, first: %s", name, kClients, l->failures,
          l->failures + static_cast<int64_t>(l->ms.size()), l->first_failure));
      continue;
    }
    bench::Report("query.txt",
                  absl::StrFormat("%s, %s, %d concurrent clients x %d calls: p50 %.1f ms, p99 "
                                  "%.1f ms",
                                  name, what, kClients, l->ms.size() / kClients,
                                  Percentile(l->ms, 0.5), Percentile(l->ms, 0.99)));
  }
  if (!failures.empty()) return absl::InternalError(absl::StrJoin(failures, "; "));
  return absl::OkStatus();
}

// The windows to update in the Subscribe part: distinct ones, spread over series and the day.
struct Target {
  int64_t series_id;
  int64_t start_us;
  int txn;
};

// When each transaction's COMMIT was sent, and how long it took to return.
struct Commits {
  std::vector<absl::Time> sent;
  std::vector<double> round_trip_ms;
};

// Upserts each transaction's windows again with version 2 (their values unchanged, as a repair
// that found nothing new would store them), kTransactionSpacing apart. `counts` receives the
// stored count of every window, to check what subscribers receive.
absl::StatusOr<Commits> WriteVersions(const std::string& owner_dsn,
                                      const std::vector<std::vector<Target>>& txns,
                                      std::map<std::pair<int64_t, int64_t>, int64_t>& counts) {
  absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(owner_dsn, {kCreateStaging});
  if (!c.ok()) return c.status();
  pqxx::connection& conn = **c;
  Commits commits;
  const absl::Status written = Guarded([&]() -> absl::Status {
    std::map<std::pair<int64_t, int64_t>, pqxx::row> current;
    pqxx::result rows;
    {
      pqxx::read_transaction tx(conn);
      rows = tx.exec_params(
          "SELECT series_id, (EXTRACT(EPOCH FROM window_start) * 1000000)::bigint, count, sum,"
          " min, max, avg, first, last FROM aggregates"
          " WHERE window_size = interval '1 microsecond' * $1::bigint",
          kWindowUs);
    }
    for (const pqxx::row& row : rows) {
      const std::pair key(row[0].as<int64_t>(), row[1].as<int64_t>());
      current.emplace(key, row);
      counts[key] = row[2].as<int64_t>();
    }
    const absl::Time start = absl::Now();
    for (size_t i = 0; i < txns.size(); ++i) {
      absl::SleepFor(start + static_cast<int64_t>(i) * kTransactionSpacing - absl::Now());
      pqxx::work tx(conn);
      {
        pqxx::stream_to copy(tx, "staging_aggregates");
        for (const Target& t : txns[i]) {
          const pqxx::row& r = current.at({t.series_id, t.start_us});
          copy << std::make_tuple(t.series_id, kWindowUs, t.start_us, r[2].as<int64_t>(),
                                  Num(r[3].as<double>()), Num(r[4].as<double>()),
                                  Num(r[5].as<double>()), Num(r[6].as<double>()),
                                  Num(r[7].as<double>()), Num(r[8].as<double>()), int64_t{2});
        }
        copy.complete();
      }
      const pqxx::result upserted = tx.exec0(kUpsertStaged);
      if (upserted.affected_rows() != txns[i].size()) {
        return absl::InternalError(absl::StrCat("transaction ", i, " upserted ",
                                                upserted.affected_rows(), " windows of ",
                                                txns[i].size()));
      }
      commits.sent.push_back(absl::Now());
      tx.commit();
      commits.round_trip_ms.push_back(Ms(absl::Now() - commits.sent.back()));
    }
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  return commits;
}

// 3. Subscribe: kSubscribers streams, then kTransactions transactions of
// kWindowsPerTransaction new window versions; every stream must receive every update once.
absl::Status MeasureSubscribe(int port, const std::string& owner_dsn,
                              const std::vector<int64_t>& series_ids, int64_t day_us) {
  std::map<std::pair<int64_t, int64_t>, Target> targets;
  std::vector<std::vector<Target>> txns(kTransactions);
  for (int k = 0; k < kTransactions * kWindowsPerTransaction; ++k) {
    const Target t = {series_ids[k % kSeries], day_us + (k / kSeries) * 28 * kWindowUs,
                      k / kWindowsPerTransaction};
    targets[{t.series_id, t.start_us}] = t;
    txns[t.txn].push_back(t);
  }

  std::vector<std::unique_ptr<Subscriber>> subscribers;
  std::atomic<int> confirmed{0};
  std::atomic<int64_t> delivered{0};
  for (int i = 0; i < kSubscribers; ++i) {
    auto sub = std::make_unique<Subscriber>();
    sub->thread = std::thread([&, s = sub.get(), channel = NewChannel(port)] {
      auto stub = v1::QueryService::NewStub(channel);
      v1::SubscribeRequest req;
      req.mutable_selector()->set_measure_name(kMeasure);
      req.add_window_sizes_us(kWindowUs);
      auto stream = stub->Subscribe(&s->ctx, req);
      v1::SubscribeResponse resp;
      bool first = true;
      while (stream->Read(&resp)) {
        const absl::Time at = absl::Now();
        if (first) {
          first = false;
          confirmed.fetch_add(1);
        }
        for (const v1::WindowAggregate& a : resp.updates()) {
          s->receipts.push_back(
              {a.series().series_id(), a.window_start_us(), a.version(), a.count(), at});
        }
        delivered.fetch_add(resp.updates_size());
      }
      s->status = stream->Finish();
    });
    subscribers.push_back(std::move(sub));
  }
  // The first response of a stream confirms it; updates stored after it are delivered.
  absl::Status status = absl::OkStatus();
  std::map<std::pair<int64_t, int64_t>, int64_t> counts;
  Commits commits;
  if (!testing::WaitFor([&] { return confirmed.load() == kSubscribers; }, absl::Seconds(30))) {
    status = absl::DeadlineExceededError(
        absl::StrCat(confirmed.load(), " of ", kSubscribers, " Subscribe streams confirmed"));
  } else if (absl::StatusOr<Commits> c = WriteVersions(owner_dsn, txns, counts); !c.ok()) {
    status = c.status();
  } else {
    commits = *std::move(c);
    const int64_t expected = int64_t{kSubscribers} * static_cast<int64_t>(targets.size());
    testing::WaitFor([&] { return delivered.load() >= expected; }, absl::Seconds(30));
    absl::SleepFor(absl::Milliseconds(300));  // so that repeated or stray updates show too
  }
  for (auto& s : subscribers) s->ctx.TryCancel();
  for (auto& s : subscribers) s->thread.join();
  if (!status.ok()) return status;

  std::vector<double> latency_ms;
  int64_t missing = 0, unexpected = 0, wrong = 0;
  std::string first_problem;
  auto problem = [&](int64_t& counter, const std::string& what) {
    if (counter++ == 0 && first_problem.empty()) first_problem = what;
  };
  for (size_t i = 0; i < subscribers.size(); ++i) {
    const Subscriber& s = *subscribers[i];
    std::map<std::pair<int64_t, int64_t>, int> seen;
    for (const Subscriber::Receipt& r : s.receipts) {
      const std::pair key(r.series_id, r.window_start_us);
      auto t = targets.find(key);
      if (t == targets.end() || ++seen[key] > 1) {
        problem(unexpected, absl::StrFormat("subscriber %d: unexpected or repeated update of "
                                            "series %d window %d version %d",
                                            i, r.series_id, r.window_start_us, r.version));
        continue;
      }
      if (r.version != 2 || r.count != counts[key]) {
        problem(wrong, absl::StrFormat("subscriber %d: series %d window %d arrived as version %d "
                                       "count %d; stored: version 2 count %d",
                                       i, r.series_id, r.window_start_us, r.version, r.count,
                                       counts[key]));
      }
      latency_ms.push_back(Ms(r.at - commits.sent[t->second.txn]));
    }
    if (seen.size() < targets.size()) {
      missing += static_cast<int64_t>(targets.size() - seen.size());
      if (first_problem.empty()) {
        first_problem = absl::StrFormat("subscriber %d received %d of %d updates", i, seen.size(),
                                        targets.size());
      }
    }
    if (s.status.error_code() != grpc::StatusCode::CANCELLED && first_problem.empty()) {
      first_problem = absl::StrFormat("subscriber %d ended with status %d \"%s\"", i,
                                      s.status.error_code(), s.status.error_message());
    }
  }
  if (!first_problem.empty()) {
    return absl::InternalError(
        absl::StrFormat("Subscribe: %d missing, %d unexpected or repeated, %d wrong deliveries; "
                        "first: %s",
                        missing, unexpected, wrong, first_problem));
  }
  bench::Report(
      "query.txt",
      absl::StrFormat("Subscribe, %d streams, %d transactions x %d window versions %s apart "
                      "(every stream got each of the %d updates once): COMMIT sent -> "
                      "delivered p50 %.1f ms, p99 %.1f ms, max %.1f ms (COMMIT round trip p50 "
                      "%.1f ms)",
                      kSubscribers, kTransactions, kWindowsPerTransaction,
                      absl::FormatDuration(kTransactionSpacing), targets.size(),
                      Percentile(latency_ms, 0.5), Percentile(latency_ms, 0.99),
                      Percentile(latency_ms, 1.0), Percentile(commits.round_trip_ms, 0.5)));
  return absl::OkStatus();
}

// Every page of a Rollup grouped by site.
absl::StatusOr<FleetAnswer> CallFleetRollup(v1::QueryService::Stub& stub, v1::RollupRequest req) {
  FleetAnswer answer;
  absl::Status s = ForEachRollupBucket(
      stub, std::move(req), [&](const v1::RollupGroup& g, const v1::RollupBucket& b) {
        FleetBucket& bucket = answer[{g.group().at("site"), b.start_us()}];
        static_cast<Bucket&>(bucket) = BucketOf(b);
        bucket.windows = b.windows();
        bucket.series = b.series_count();
      });
  if (!s.ok()) return s;
  return answer;
}

// The same buckets as one SQL GROUP BY over the stored windows: $1 measure, $2 bucket, $3 and
// $4 the range. `full` adds first and last (ordered aggregates, ties by series id) and the
// distinct series, as the Rollup answers them; without, it is the cheapest such GROUP BY.
FleetAnswer BaselineFleetRollup(pqxx::connection& conn, bool full, int64_t bucket_us,
                                int64_t from_us, int64_t to_us) {
  const std::string sql = absl::StrCat(
      "SELECT s.dimensions->>'site', (EXTRACT(EPOCH FROM date_bin(interval '1 microsecond' *"
      " $2::bigint, a.window_start, 'epoch')) * 1000000)::bigint, sum(a.count)::bigint,"
      " sum(a.sum), min(a.min), max(a.max), count(*)",
      full ? ", (array_agg(a.first ORDER BY a.window_start, a.series_id))[1],"
             " (array_agg(a.last ORDER BY a.window_start DESC, a.series_id DESC))[1],"
             " count(DISTINCT a.series_id)"
           : "",
      " FROM aggregates a JOIN series s USING (series_id) WHERE s.measure_name = $1"
      " AND a.window_size = interval '5 minutes'"
      " AND a.window_start >= 'epoch'::timestamptz + interval '1 microsecond' * $3::bigint"
      " AND a.window_start < 'epoch'::timestamptz + interval '1 microsecond' * $4::bigint"
      " GROUP BY 1, 2 ORDER BY 1, 2");
  pqxx::read_transaction tx(conn);
  tx.exec0("SET LOCAL work_mem = '32MB'; SET LOCAL jit = off");  // as the query service's reads
  FleetAnswer answer;
  for (const pqxx::row& row : tx.exec_params(sql, "fleet_cpu", bucket_us, from_us, to_us)) {
    FleetBucket& b = answer[{row[0].as<std::string>(), row[1].as<int64_t>()}];
    b.count = row[2].as<int64_t>();
    b.sum = row[3].as<double>();
    b.min = row[4].as<double>();
    b.max = row[5].as<double>();
    b.windows = row[6].as<int64_t>();
    if (full) {
      b.first = row[7].as<double>();
      b.last = row[8].as<double>();
      b.series = row[9].as<int64_t>();
    }
  }
  return answer;
}

// 4b. A fleet-wide Rollup: the 250,000 series of one measure, each with an hour of stored 5 m
//     windows (3,000,000), grouped by site (100 sites) into 1 h buckets and into 5 m ones (two
//     pages), against one SQL GROUP BY of the same windows with the same answer, and against
//     the cheapest GROUP BY (count, sum, min, max alone).
absl::Status MeasureFleetRollup(v1::QueryService::Stub& stub, pqxx::connection& reader,
                                pqxx::connection& owner, int64_t day_us) {
  constexpr int kRounds = 2;                    // after one round that checks the answers
  const int64_t from_us = day_us + kDayUs / 4;  // 06:00, away from the points read above
  const int64_t to_us = from_us + kBucketUs;
  const absl::Time load_start = absl::Now();
  {
    pqxx::work tx(owner);
    // Loaded without the change log's trigger, as no subscriber follows these windows: it
    // would log 3,000,000 changes.
    tx.exec0("ALTER TABLE aggregates DISABLE TRIGGER USER");
    // Values differ by series and window, so first and last tell which window they came from.
    tx.exec_params0(
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max,"
        " avg, first, last, version) SELECT s.series_id, interval '5 minutes',"
        " 'epoch'::timestamptz + interval '1 microsecond' * ($1::bigint + i * $2::bigint), 30,"
        " 30 * v.v, v.v - 1, v.v + 1, v.v, v.v + 0.5, v.v - 0.5, 1 FROM series s"
        " CROSS JOIN generate_series(0, 11) i CROSS JOIN LATERAL (SELECT"
        " (abs(s.series_id) % 997) + i * 0.25 AS v) v WHERE s.measure_name = 'fleet_cpu'",
        from_us, kWindowUs);
    tx.exec0("ALTER TABLE aggregates ENABLE TRIGGER USER");
    tx.commit();
  }
  Sql(owner, "VACUUM ANALYZE aggregates");
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);

  v1::RollupRequest hourly;
  hourly.mutable_selector()->set_measure_name("fleet_cpu");
  hourly.mutable_range()->set_start_us(from_us);
  hourly.mutable_range()->set_end_us(to_us);
  hourly.set_bucket_us(kBucketUs);
  hourly.add_group_by("site");
  v1::RollupRequest five_minutes = hourly;
  five_minutes.set_bucket_us(kWindowUs);
  struct Shape {
    const char* name;
    const v1::RollupRequest* req;
    int64_t bucket_us;
    std::vector<double> service_ms, sql_ms, plain_ms;
  };
  std::vector<Shape> shapes = {
      {"1 h buckets (100)", &hourly, kBucketUs, {}, {}, {}},
      {"5 m buckets (1200, 2 pages)", &five_minutes, kWindowUs, {}, {}, {}}};
  for (int r = 0; r <= kRounds; ++r) {
    for (Shape& shape : shapes) {
      absl::Time t = absl::Now();
      const absl::StatusOr<FleetAnswer> a = CallFleetRollup(stub, *shape.req);
      const double a_ms = Ms(absl::Now() - t);
      t = absl::Now();
      const FleetAnswer b = BaselineFleetRollup(reader, true, shape.bucket_us, from_us, to_us);
      const double b_ms = Ms(absl::Now() - t);
      t = absl::Now();
      const FleetAnswer c = BaselineFleetRollup(reader, false, shape.bucket_us, from_us, to_us);
      const double c_ms = Ms(absl::Now() - t);
      if (!a.ok()) return a.status();
      const size_t buckets = static_cast<size_t>(100 * kBucketUs / shape.bucket_us);
      std::string wrong = Disagreement(*a, b);
      // The cheapest GROUP BY has no first, last or series: compared on the rest.
      FleetAnswer b_plain = b;
      for (auto& [key, bucket] : b_plain) bucket.first = bucket.last = bucket.series = 0;
      if (wrong.empty()) wrong = Disagreement(c, b_plain);
      if (wrong.empty() && (b.size() != buckets || c.size() != buckets)) {
        wrong = absl::StrFormat("SQL returned %d and %d buckets, expected %d", b.size(), c.size(),
                                buckets);
      }
      if (!wrong.empty()) {
        return absl::InternalError(
            absl::StrCat("the fleet-wide Rollup (", shape.name, ") disagrees with SQL: ", wrong));
      }
      if (r == 0) continue;
      shape.service_ms.push_back(a_ms);
      shape.sql_ms.push_back(b_ms);
      shape.plain_ms.push_back(c_ms);
    }
  }
  for (const Shape& shape : shapes) {
    const double service = Percentile(shape.service_ms, 0.5);
    const double sql = Percentile(shape.sql_ms, 0.5);
    const double plain = Percentile(shape.plain_ms, 0.5);
    bench::Report(
        "query.txt",
        absl::StrFormat(
            "Rollup of one measure's %d series grouped by site (3,000,000 stored 5 m windows, "
            "loaded in %.1f s), %s: median %.1f ms; SQL GROUP BY with the same answer %.1f ms, "
            "ratio %.2fx; SQL of count, sum, min, max alone %.1f ms, ratio %.2fx (%d rounds)",
            250'000, load_s, shape.name, service, sql, service / sql, plain, service / plain,
            kRounds));
  }
  return absl::OkStatus();
}

// 4. ReadPoints in a large fleet: 1,000,000 series (250,000 devices x 4 measures, ids spread
//    over the whole range as the writer's hashes are), of which the 2,500 devices of one site
//    have a minute of points. Every page of that minute's points of one measure, selected by
//    measure and site (each selected series has points) and by measure alone (1 % of the
//    250,000 selected series have points), each against the same points read by one SQL
//    SELECT in the same run; the same minute's windows by real_time ReadAggregates, against
//    one SQL GROUP BY; and every page of ListSeries of that measure, against one SQL SELECT of
//    the same series. Runs last: the other steps keep their small series table.
absl::Status MeasureLargeFleet(v1::QueryService::Stub& stub, pqxx::connection& reader,
                               const std::string& owner_dsn, int64_t day_us) {
  constexpr int kDevices = 250'000;
  constexpr int kSites = 100;
  constexpr int kPointsEach = 6;
  constexpr int kRounds = 5;
  constexpr char kSite[] = "site-5";
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(owner_dsn);
  if (!owner.ok()) return owner.status();
  const int64_t minute_us = day_us + kDayUs / 2;
  const absl::Time load_start = absl::Now();
  {
    pqxx::work tx(**owner);
    tx.exec_params0(
        "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " SELECT hashtextextended(k.key, 0), k.key, k.measure, k.device,"
        " jsonb_build_object('device_id', k.device, 'site', k.site)"
        " FROM generate_series(0, $1::int - 1) d CROSS JOIN unnest(ARRAY['fleet_cpu',"
        " 'fleet_mem', 'fleet_disk', 'fleet_net']) m(measure) CROSS JOIN LATERAL (SELECT"
        " m.measure, 'dev-' || d AS device, 'site-' || d % $2::int AS site,"
        " m.measure || '{device_id=dev-' || d || ',site=site-' || d % $2::int || '}:double'"
        " AS key) k",
        kDevices, kSites);
    tx.exec_params0(
        "INSERT INTO points (series_id, time, value_double, version, ingested_at)"
        " SELECT s.series_id, 'epoch'::timestamptz + interval '1 microsecond' * ($1::bigint"
        " + i * $2::bigint), i, 1, now() FROM series s CROSS JOIN generate_series(0, $3::int - 1) i"
        " WHERE s.dimensions @> jsonb_build_object('site', $4::text)",
        minute_us, kPointStepUs, kPointsEach, kSite);
    tx.commit();
  }
  // As autovacuum leaves a table loaded once: its index-only scans need no heap.
  Sql(**owner, "VACUUM ANALYZE series");
  Sql(**owner, "ANALYZE points");
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);

  v1::ReadPointsRequest by_measure;
  by_measure.mutable_selector()->set_measure_name("fleet_cpu");
  by_measure.mutable_range()->set_start_us(minute_us);
  by_measure.mutable_range()->set_end_us(minute_us + 60'000'000);
  by_measure.set_page_size(1000);
  v1::ReadPointsRequest by_site = by_measure;
  v1::DimensionMatcher* m = by_site.mutable_selector()->add_matchers();
  m->set_name("site");
  m->set_value(kSite);
  const size_t expected = static_cast<size_t>(kDevices / kSites * kPointsEach);
  constexpr const char* kBaseline =
      "SELECT p.series_id, p.time, p.value_double, p.value_int, p.value_bool, p.value_string,"
      " p.version FROM points p JOIN series s USING (series_id) WHERE s.measure_name = $1"
      " AND s.dimensions @> $2::jsonb"
      " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $3"
      " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $4"
      " ORDER BY p.series_id, p.time";
  const std::string site_json = nlohmann::json({{"site", kSite}}).dump();
  std::vector<double> site_ms, measure_ms, site_sql_ms, measure_sql_ms;
  for (int r = 0; r <= kRounds; ++r) {  // round 0 warms up
    absl::Time t = absl::Now();
    const absl::StatusOr<size_t> a = ReadAllPoints(stub, by_site);
    const double a_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t a_sql =
        RowsRead(reader, kBaseline, "fleet_cpu", site_json, minute_us, minute_us + 60'000'000);
    const double a_sql_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const absl::StatusOr<size_t> b = ReadAllPoints(stub, by_measure);
    const double b_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t b_sql =
        RowsRead(reader, kBaseline, "fleet_cpu", "{}", minute_us, minute_us + 60'000'000);
    const double b_sql_ms = Ms(absl::Now() - t);
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (*a != expected || *b != expected || a_sql != expected || b_sql != expected) {
      return absl::InternalError(absl::StrFormat(
          "ReadPoints in the large fleet returned %d points by site, %d by measure; SQL %d and "
          "%d; expected %d",
          *a, *b, a_sql, b_sql, expected));
    }
    if (r == 0) continue;
    site_ms.push_back(a_ms);
    site_sql_ms.push_back(a_sql_ms);
    measure_ms.push_back(b_ms);
    measure_sql_ms.push_back(b_sql_ms);
  }
  const auto ratio = [](const std::vector<double>& a, const std::vector<double>& b) {
    return Percentile(a, 0.5) / Percentile(b, 0.5);
  };
  bench::Report(
      "query.txt",
      absl::StrFormat(
          "ReadPoints among %d series (loaded in %.1f s), 1 minute of one measure of the %d "
          "devices of one site (%d points, pages of 1000): by measure and site median %.1f ms, "
          "SQL %.1f ms, ratio %.2fx; by measure alone (%d selected series, 1 %% with points) "
          "median %.1f ms, SQL %.1f ms, ratio %.2fx (%d rounds)",
          4 * kDevices, load_s, kDevices / kSites, expected, Percentile(site_ms, 0.5),
          Percentile(site_sql_ms, 0.5), ratio(site_ms, site_sql_ms), kDevices,
          Percentile(measure_ms, 0.5), Percentile(measure_sql_ms, 0.5),
          ratio(measure_ms, measure_sql_ms), kRounds));

  // The minute's live windows (real_time, no window stored), by measure and site and by
  // measure alone, against the same windows computed by one SQL GROUP BY.
  constexpr const char* kBaselineWindows =
      "SELECT p.series_id, date_bin(interval '1 microsecond' * $5, p.time, 'epoch'), count(*),"
      " sum(p.value_double ORDER BY p.time), min(p.value_double), max(p.value_double),"
      " (array_agg(p.value_double ORDER BY p.time))[1],"
      " (array_agg(p.value_double ORDER BY p.time DESC))[1]"
      " FROM points p JOIN series s USING (series_id) WHERE s.measure_name = $1"
      " AND s.dimensions @> $2::jsonb"
      " AND p.time >= 'epoch'::timestamptz + interval '1 microsecond' * $3"
      " AND p.time < 'epoch'::timestamptz + interval '1 microsecond' * $4"
      " GROUP BY 1, 2 ORDER BY 1, 2";
  v1::ReadAggregatesRequest live_by_measure;
  *live_by_measure.mutable_selector() = by_measure.selector();
  live_by_measure.mutable_range()->set_start_us(minute_us);
  live_by_measure.mutable_range()->set_end_us(minute_us + kWindowUs);
  live_by_measure.set_window_size_us(kWindowUs);
  live_by_measure.set_real_time(true);
  live_by_measure.set_page_size(1000);
  v1::ReadAggregatesRequest live_by_site = live_by_measure;
  *live_by_site.mutable_selector() = by_site.selector();
  const size_t windows = static_cast<size_t>(kDevices / kSites);
  std::vector<double> live_site_ms, live_measure_ms, live_site_sql_ms, live_measure_sql_ms;
  for (int r = 0; r <= kRounds; ++r) {
    absl::Time t = absl::Now();
    const absl::StatusOr<std::vector<std::string>> a = ReadAllWindows(stub, live_by_site);
    const double a_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t a_sql = RowsRead(reader, kBaselineWindows, "fleet_cpu", site_json, minute_us,
                                  minute_us + kWindowUs, kWindowUs);
    const double a_sql_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const absl::StatusOr<std::vector<std::string>> b = ReadAllWindows(stub, live_by_measure);
    const double b_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t b_sql = RowsRead(reader, kBaselineWindows, "fleet_cpu", "{}", minute_us,
                                  minute_us + kWindowUs, kWindowUs);
    const double b_sql_ms = Ms(absl::Now() - t);
    if (!a.ok()) return a.status();
    if (!b.ok()) return b.status();
    if (a->size() != windows || *a != *b || a_sql != windows || b_sql != windows) {
      return absl::InternalError(absl::StrFormat(
          "real_time ReadAggregates in the large fleet returned %d windows by site, %d by "
          "measure; SQL %d and %d; expected %d",
          a->size(), b->size(), a_sql, b_sql, windows));
    }
    if (r == 0) continue;
    live_site_ms.push_back(a_ms);
    live_site_sql_ms.push_back(a_sql_ms);
    live_measure_ms.push_back(b_ms);
    live_measure_sql_ms.push_back(b_sql_ms);
  }
  bench::Report(
      "query.txt",
      absl::StrFormat(
          "real_time ReadAggregates among %d series, the minute's 5 m windows (%d, from the raw "
          "points, pages of 1000): by measure and site median %.1f ms, SQL GROUP BY %.1f ms, "
          "ratio %.2fx; by measure alone median %.1f ms, SQL %.1f ms, ratio %.2fx (%d rounds)",
          4 * kDevices, windows, Percentile(live_site_ms, 0.5), Percentile(live_site_sql_ms, 0.5),
          ratio(live_site_ms, live_site_sql_ms), Percentile(live_measure_ms, 0.5),
          Percentile(live_measure_sql_ms, 0.5), ratio(live_measure_ms, live_measure_sql_ms),
          kRounds));

  // Every series of the measure, listed page after page.
  constexpr int kListRounds = 3;
  std::vector<double> list_ms, list_sql_ms;
  for (int r = 0; r <= kListRounds; ++r) {
    absl::Time t = absl::Now();
    v1::ListSeriesRequest list;
    list.mutable_selector()->set_measure_name("fleet_cpu");
    list.set_page_size(1000);
    size_t listed = 0;
    do {
      grpc::ClientContext ctx;
      ctx.set_deadline(Deadline());
      v1::ListSeriesResponse resp;
      if (grpc::Status st = stub.ListSeries(&ctx, list, &resp); !st.ok()) {
        return absl::InternalError(absl::StrCat("ListSeries: ", st.error_message()));
      }
      listed += resp.series_size();
      list.set_page_token(resp.next_page_token());
    } while (!list.page_token().empty());
    const double a_ms = Ms(absl::Now() - t);
    t = absl::Now();
    const size_t direct = RowsRead(reader,
                                   "SELECT series_id, canonical_key, measure_name,"
                                   " dimensions::text FROM series WHERE measure_name = $1"
                                   " ORDER BY series_id",
                                   "fleet_cpu");
    const double b_ms = Ms(absl::Now() - t);
    if (listed != static_cast<size_t>(kDevices) || direct != listed) {
      return absl::InternalError(
          absl::StrFormat("ListSeries of the measure listed %d series, SQL %d; expected %d", listed,
                          direct, kDevices));
    }
    if (r == 0) continue;
    list_ms.push_back(a_ms);
    list_sql_ms.push_back(b_ms);
  }
  bench::Report(
      "query.txt",
      absl::StrFormat("ListSeries among %d series, the %d of one measure (pages of "
                      "1000): median %.1f ms; SQL %.1f ms; ratio %.2fx (%d rounds)",
                      4 * kDevices, kDevices, Percentile(list_ms, 0.5),
                      Percentile(list_sql_ms, 0.5), ratio(list_ms, list_sql_ms), kListRounds));
  return MeasureFleetRollup(stub, reader, **owner, day_us);
}

absl::Status Run() {
  auto logger = log::MakeLogger("query-bench");
  logger->set_level(spdlog::level::warn);
  absl::StatusOr<std::unique_ptr<testing::PgCluster>> cluster = testing::PgCluster::Start();
  if (!cluster.ok()) return cluster.status();
  testing::PgCluster& pg = **cluster;
  const absl::StatusOr<std::string> owner_dsn = pg.CreateDatabase("query_bench");
  if (!owner_dsn.ok()) return owner_dsn.status();

  // Yesterday (UTC): a complete day, inside any retention.
  const int64_t day_us = (absl::ToUnixMicros(absl::Now()) / kDayUs - 1) * kDayUs;
  const absl::Time load_start = absl::Now();
  const absl::StatusOr<std::vector<int64_t>> series_ids = Load(*owner_dsn, day_us, *logger);
  if (!series_ids.ok()) return series_ids.status();
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);
  const absl::StatusOr<std::string> stored =
      pg.Psql("query_bench",
              "SELECT (SELECT count(*) FROM points) || ' points, ' || (SELECT count(*) FROM"
              " aggregates) || ' windows'");
  if (!stored.ok()) return stored.status();

  const std::string dir = absl::StrCat("/tmp/tidemark-query-bench-", getpid());
  std::filesystem::create_directories(dir);
  auto started = StartQuery(pg.Dsn("query_bench", "tidemark_query"), dir + "/query.log");
  if (!started.ok()) return started.status();
  const std::unique_ptr<testing::ChildProcess> query = std::move(started->first);
  const int port = started->second;
  auto stub = v1::QueryService::NewStub(NewChannel(port));
  absl::StatusOr<std::unique_ptr<pqxx::connection>> reader =
      pg::Connect(pg.Dsn("query_bench", "tidemark_query"));
  if (!reader.ok()) return reader.status();

  bench::Report("query.txt",
                absl::StrFormat("data: %d series x 1 point / %d s for one day = %s (5 m, from "
                                "the points), loaded by SQL in %.1f s; query service with "
                                "default flags; %d CPUs",
                                kSeries, kPointStepUs / 1'000'000, *stored, load_s,
                                std::thread::hardware_concurrency()));
  std::vector<std::string> failures;
  for (absl::Status s :
       {Guarded([&] {
          return MeasureWideListSeries(*owner_dsn, pg.Dsn("query_bench", "tidemark_query"), dir);
        }),
        Guarded([&] {
          return MeasureWideGroupedRollup(*owner_dsn, pg.Dsn("query_bench", "tidemark_query"), dir,
                                          day_us);
        }),
        Guarded([&] {
          return MeasureStalledSubscriber(*owner_dsn, pg.Dsn("query_bench", "tidemark_query"), dir,
                                          day_us);
        }),
        Guarded([&] { return MeasureInterpolateMemory(*stub, **reader, query->pid(), day_us); }),
        Guarded([&] { return MeasureRollup(*stub, **reader, day_us); }),
        Guarded([&] { return MeasureRealTimeMixedKinds(*stub, *owner_dsn, day_us); }),
        Guarded([&] { return MeasureFleetReads(*stub, **reader, day_us); }),
        Guarded([&] { return MeasureConcurrent(port, *series_ids, day_us); }),
        Guarded([&] { return MeasureSubscribe(port, *owner_dsn, *series_ids, day_us); }),
        Guarded([&] { return MeasureLargeFleet(*stub, **reader, *owner_dsn, day_us); })}) {
    if (!s.ok()) failures.push_back(s.ToString());
  }
  query->Signal(SIGTERM);
  const absl::StatusOr<int> exit_code = query->Wait(absl::Seconds(15));
  if (!exit_code.ok() || *exit_code != 0) {
    failures.push_back(absl::StrCat(
        "the query service did not stop cleanly on SIGTERM: ",
        exit_code.ok() ? absl::StrCat("exit code ", *exit_code) : exit_code.status().ToString()));
  }
  if (!failures.empty()) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(failures, "\n"), "\nthe query service's log is kept in ", dir));
  }
  std::filesystem::remove_all(dir);
  return absl::OkStatus();
}

}  // namespace

int main() {
  const absl::Status s = Run();
  if (!s.ok()) {
    std::fprintf(stderr, "query bench failed: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
