// End-to-end pipeline: the real ingest, aggregator, timestream-writer, archive (local lake)
// and query binaries against a private PostgreSQL cluster and the development broker, fed by
// the test load generator at stepped rates.
//
// 1. Throughput: each step runs on a fresh stack for --step_duration at one rate of --rates
//    (ascending; while every one is sustained, up to --extra_steps more by the last increment)
//    and samples every consumer's lag once a second. A step is sustained when the
//    generator was acknowledged at (nearly) the asked rate and no consumer's lag grows: it stays
//    under --max_lag of input and its trend over the second half is flat. The first step that
//    is not sustained ends the search, after one more step halfway between it and the highest
//    sustained one. Every sustained step is then drained and verified:
//    every acknowledged event stored exactly once with its values (LoadGenerator::Check) and
//    every stored aggregate equal to the batch recomputation (AggregateOracle). A step that
//    fails verification ends the benchmark with an error: a fast wrong answer is no figure.
// 2. Freshness at half the highest sustained rate: probe events, each acknowledged by ingest,
//    then polled through the query API until the raw point is readable (ReadPoints) and until
//    its window's aggregate counts every probe of the window (ReadAggregates).
// 3. Baseline in the same run: psql `\copy` of the very rows the best step stored into the
//    points table of a fresh database (the store's own write speed).
// Also the resident memory (VmRSS, VmHWM) and CPU of every service at the end of each step.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "services/timestream-writer/point_store.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/load_generator.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"

ABSL_FLAG(std::string, rates, "10000,15000,20000,25000,30000,35000,40000",
          "Events/s of the throughput steps, ascending; the first one not sustained ends them");
ABSL_FLAG(int, extra_steps, 4,
          "Steps beyond the last of --rates while each is sustained, so that the search ends "
          "at a step the pipeline does not sustain");
ABSL_FLAG(absl::Duration, step_duration, absl::Seconds(60), "Load time of each step");
ABSL_FLAG(int, freshness_rate, 0,
          "Events/s of load while freshness is probed; 0: half the highest sustained rate");
ABSL_FLAG(absl::Duration, freshness_duration, absl::Seconds(30),
          "Probe time of the freshness run at half the highest sustained rate");
ABSL_FLAG(int, devices, 1000, "Devices the load generator spreads events over");
ABSL_FLAG(int, measures_per_event, 4,
          "Measures per event (at least 2: seq and temperature, then m1, m2, ...); the "
          "capacity model's devices send 4");
ABSL_FLAG(int, senders, 4, "Load generator threads, each with one synchronous Write at a time");
ABSL_FLAG(double, max_lag, 2.0,
          "Seconds of input a consumer may have outstanding at a sustained rate");
ABSL_FLAG(int, percent_late, 1,
          "Percent of events sent 3 s late (inside the allowed lateness: windows re-emitted)");
ABSL_FLAG(int, percent_beyond_lateness, 0,
          "Percent of events sent 15 s late (beyond the allowed lateness: windows repaired)");

namespace {

using namespace tidemark;

// 1 s windows closed 200 ms after their end, as in freshness_bench, so that freshness says
// what the pipeline adds rather than how long a window is.
constexpr const char* kWindowSql = "(interval '1 second')";
const std::vector<std::string> kAggregatorFlags = {
    "--windows=1s", "--max_out_of_orderness=200ms", "--idle_timeout=1s", "--allowed_lateness=5s"};
// The services refuse to start unauthenticated once ingest and query have auth, unless told.
const std::map<std::string, std::string> kUnauthenticated = {
    {"TIDEMARK_ALLOW_UNAUTHENTICATED", "true"}};
constexpr int kProbesPerSecond = 10;

/// The pid of this process's child running `comm` (the stack keeps the query process to
/// itself), or -1.
int ChildPid(const std::string& comm) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close + 2, "%*c %d", &ppid) != 1) continue;
    if (ppid == getpid() && stat.substr(open + 1, close - open - 1) == comm) return pid;
  }
  return -1;
}

/// The pid of the PostgreSQL server (postmaster) of `pg`, from its data directory.
int PostmasterPid(testing::PgCluster& pg) {
  absl::StatusOr<std::string> dir = pg.Psql("postgres", "SHOW data_directory");
  if (!dir.ok()) return -1;
  std::ifstream in(*dir + "/postmaster.pid");
  int pid = -1;
  in >> pid;
  return pid;
}

/// CPU seconds of the PostgreSQL server: the postmaster and the processes it runs now (the
/// connections of the services and its own workers).
double PostgresCpuSeconds(int postmaster) {
  double total = bench::CpuSeconds(postmaster);
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid)) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');
    int ppid = 0;
    if (close == std::string::npos || std::sscanf(stat.c_str() + close + 2, "%*c %d", &ppid) != 1) {
      continue;
    }
    if (ppid == postmaster) total += bench::CpuSeconds(pid);
  }
  return total;
}

/// The sum of the samples of `name` (any labels containing `label`) on a /metrics page.
std::optional<double> Metric(const std::string& page, const std::string& name,
                             const std::string& label = "") {
  std::optional<double> total;
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (!absl::StartsWith(line, name)) continue;
    const absl::string_view rest = line.substr(name.size());
    if (rest.empty() || (rest[0] != ' ' && rest[0] != '{')) continue;
    if (!label.empty() && !absl::StrContains(rest, label)) continue;
    double v = 0;
    if (absl::SimpleAtod(rest.substr(rest.rfind(' ') + 1), &v)) total = total.value_or(0) + v;
  }
  return total;
}

std::string Scrape(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/metrics");
  return res && res->status == 200 ? res->body : "";
}

/// The services of one stack, by name, with their pids and metrics ports.
struct Services {
  std::vector<std::pair<std::string, int>> pids;
  int ingest_metrics = 0, writer_metrics = 0, aggregator_metrics = 0, archive_metrics = 0;
};

/// A stack with every service running, and the archive writing to a lake in its directory.
std::unique_ptr<testing::Stack> StartStack(testing::PgCluster& pg, Services& services) {
  auto stack = std::make_unique<testing::Stack>(
      pg, testing::StackOptions{.aggregator_flags = kAggregatorFlags});
  stack->StartAggregator(0);
  stack->StartArchive({absl::StrCat("--lake=", stack->dir(), "/lake")}, kUnauthenticated);
  services.pids = {{"ingest", stack->ingest_process().pid()},
                   {"aggregator", stack->aggregator(0).pid()},
                   {"timestream-writer", stack->writer().pid()},
                   {"archive", stack->archive().pid()},
                   {"query", ChildPid("query")},
                   {"devbroker", stack->broker().pid()}};
  services.ingest_metrics = testing::MetricsPort(stack->ingest_process());
  services.writer_metrics = testing::MetricsPort(stack->writer());
  services.aggregator_metrics = testing::MetricsPort(stack->aggregator(0));
  services.archive_metrics = testing::MetricsPort(stack->archive());
  for (const auto& [name, pid] : services.pids) {
    if (pid <= 0) bench::Must(absl::InternalError(absl::StrCat(name, " is not running")));
  }
  if (!services.ingest_metrics || !services.writer_metrics || !services.aggregator_metrics ||
      !services.archive_metrics) {
    bench::Must(absl::InternalError("a service did not log its metrics port"));
  }
  return stack;
}

/// Records each consumer is behind ingest's acknowledged events.
struct LagSample {
  double at_s = 0;
  double accepted = 0;
  double writer = 0, aggregator = 0, archive = 0;
  double Max() const { return std::max({writer, aggregator, archive}); }
};

/// The writer and aggregator count records once processed, so accepted minus processed is
/// their whole backlog. The archive buffers minutes of events by design (Firehose's knobs) and
/// counts them only when a file is written: its consumer position lag says whether it keeps up.
std::optional<LagSample> SampleLag(const Services& s, absl::Time start) {
  const std::string ingest = Scrape(s.ingest_metrics), writer = Scrape(s.writer_metrics),
                    aggregator = Scrape(s.aggregator_metrics), archive = Scrape(s.archive_metrics);
  auto accepted = Metric(ingest, "tidemark_ingest_events_accepted_total");
  auto written = Metric(writer, "tidemark_writer_records_total", "loop=\"raw\"");
  auto aggregated = Metric(aggregator, "tidemark_aggregator_records_total");
  auto archive_lag = Metric(archive, "tidemark_archive_consumer_lag_records");
  if (!accepted || !written || !aggregated || !archive_lag) return std::nullopt;
  return LagSample{absl::ToDoubleSeconds(absl::Now() - start), *accepted, *accepted - *written,
                   *accepted - *aggregated, *archive_lag};
}

/// Least-squares slope (records/s) of `f` over the samples.
double Slope(const std::vector<LagSample>& v, double (*f)(const LagSample&)) {
  if (v.size() < 2) return 0;
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const LagSample& s : v) {
    sx += s.at_s, sy += f(s), sxx += s.at_s * s.at_s, sxy += s.at_s * f(s);
  }
  const double n = static_cast<double>(v.size());
  const double den = n * sxx - sx * sx;
  return den == 0 ? 0 : (n * sxy - sx * sy) / den;
}

struct StepResult {
  int rate = 0;
  double achieved = 0;  // events/s ingest acknowledged in the second half
  bool sustained = false;
  std::string why;  // why not sustained
  double final_max_lag = 0;
  double windows_open = 0;  // the aggregator's, at the end of the load
  double generator_cores = 0;  // this process: the load generator and the sampling
  double wal_bytes = 0;        // PostgreSQL WAL written during the load
  int64_t acknowledged = 0;    // events acknowledged during the load
  std::string db;
  std::vector<std::pair<std::string, bench::Memory>> memory;
  std::vector<std::pair<std::string, double>> cpu_s;
};

testing::LoadOptions Load(int rate) {
  testing::LoadOptions o;
  o.devices = absl::GetFlag(FLAGS_devices);
  o.events_per_second = rate;
  o.senders = absl::GetFlag(FLAGS_senders);
  o.extra_measures = absl::GetFlag(FLAGS_measures_per_event) - 2;
  // About ten Writes a second per sender: each waits for its answer.
  o.batch_size = std::clamp(rate / 10 / std::max(1, o.senders), 25, 5000);
  o.percent_within_lateness = absl::GetFlag(FLAGS_percent_late);
  o.percent_beyond_lateness = absl::GetFlag(FLAGS_percent_beyond_lateness);
  return o;
}

/// Waits until the pipeline has drained, then checks the store against the generator and the
/// aggregates against the oracle; ends the benchmark on any difference.
void DrainAndVerify(testing::Stack& stack, const Services& services,
                    const testing::LoadGenerator& gen, const std::string& what) {
  const absl::Time start = absl::Now();
  const bool drained = testing::WaitFor(
      [&] {
        auto lag = SampleLag(services, start);
        return lag && lag->writer <= 0 && lag->aggregator <= 0;
      },
      absl::Minutes(3));
  const testing::StoreCheck check = gen.Check(stack.dsn());
  testing::OracleResult oracle;
  testing::WaitFor(
      [&] {
        oracle = testing::AggregateOracle(stack, kWindowSql);
        return oracle.Matches();
      },
      absl::Seconds(60));
  const std::string detail = absl::StrFormat(
      "%s: drained %s in %.1f s; store: %s; oracle: %d windows, %d missing, %d wrong, %d extra",
      what, drained ? "yes" : "NO", absl::ToDoubleSeconds(absl::Now() - start), check.ToString(),
      oracle.windows, oracle.missing, oracle.wrong, oracle.extra);
  if (!drained || !check.Exact() || check.uncertain != 0 || !oracle.Matches()) {
    bench::Must(absl::DataLossError(absl::StrCat("verification failed: ", detail)));
  }
  bench::Report("pipeline.txt", absl::StrCat("verified ", detail));
}

std::vector<std::pair<std::string, bench::Memory>> MemoryOf(const Services& s) {
  std::vector<std::pair<std::string, bench::Memory>> out;
  for (const auto& [name, pid] : s.pids) out.emplace_back(name, bench::ReadMemory(pid));
  return out;
}

std::vector<std::pair<std::string, double>> CpuOf(const Services& s, int postmaster) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [name, pid] : s.pids) out.emplace_back(name, bench::CpuSeconds(pid));
  out.emplace_back("postgresql", PostgresCpuSeconds(postmaster));
  return out;
}

StepResult RunStep(testing::PgCluster& pg, int rate) {
  StepResult r;
  r.rate = rate;
  Services services;
  auto stack = StartStack(pg, services);
  r.db = stack->db();
  testing::LoadGenerator gen(stack->ingest(), Load(rate));
  const absl::Duration duration = absl::GetFlag(FLAGS_step_duration);
  const int postmaster = PostmasterPid(pg);
  const std::vector<std::pair<std::string, double>> cpu_before = CpuOf(services, postmaster);
  // WAL written by the whole cluster during the step (points, aggregates, progress, repairs).
  const absl::StatusOr<std::string> wal_before = pg.Psql("postgres", "SELECT pg_current_wal_lsn()");
  const double self_before = bench::CpuSeconds(getpid());
  const absl::Time start = absl::Now();
  gen.Start();
  std::vector<LagSample> samples;
  while (absl::Now() < start + duration) {
    absl::SleepFor(absl::Seconds(1));
    if (auto s = SampleLag(services, start)) samples.push_back(*s);
  }
  r.achieved = static_cast<double>(gen.acknowledged()) / absl::ToDoubleSeconds(duration);
  r.memory = MemoryOf(services);
  r.acknowledged = gen.acknowledged();
  r.generator_cores =
      (bench::CpuSeconds(getpid()) - self_before) / absl::ToDoubleSeconds(absl::Now() - start);
  r.windows_open =
      Metric(Scrape(services.aggregator_metrics), "tidemark_aggregator_windows_open").value_or(-1);
  const std::vector<std::pair<std::string, double>> cpu_after = CpuOf(services, postmaster);
  for (size_t i = 0; i < cpu_after.size(); ++i) {
    r.cpu_s.emplace_back(cpu_after[i].first, cpu_after[i].second - cpu_before[i].second);
  }
  gen.Stop();
  if (wal_before.ok()) {
    auto wal = pg.Psql("postgres", absl::StrCat("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '",
                                                *wal_before, "')::bigint"));
    if (wal.ok()) (void)absl::SimpleAtod(*wal, &r.wal_bytes);
  }

  // Sustained: the generator got (nearly) its rate acknowledged, and in the second half no
  // consumer's backlog exceeds --max_lag seconds of input or grows by more than 2% of it.
  const double bound = absl::GetFlag(FLAGS_max_lag) * rate;
  std::vector<LagSample> second_half;
  for (const LagSample& s : samples) {
    if (s.at_s >= absl::ToDoubleSeconds(duration) / 2) second_half.push_back(s);
  }
  r.final_max_lag = samples.empty() ? -1 : samples.back().Max();
  // The rate ingest acknowledged once running (the first Writes also wait for connections).
  if (second_half.size() >= 2) {
    r.achieved = (second_half.back().accepted - second_half.front().accepted) /
                 (second_half.back().at_s - second_half.front().at_s);
  }
  double worst = 0;
  LagSample worst_each;  // the worst of each consumer, to say which one fell behind
  for (const LagSample& s : second_half) {
    worst = std::max(worst, s.Max());
    worst_each.writer = std::max(worst_each.writer, s.writer);
    worst_each.aggregator = std::max(worst_each.aggregator, s.aggregator);
    worst_each.archive = std::max(worst_each.archive, s.archive);
  }
  const double slope = std::max({Slope(second_half, [](const LagSample& s) { return s.writer; }),
                                 Slope(second_half, [](const LagSample& s) { return s.aggregator; }),
                                 Slope(second_half, [](const LagSample& s) { return s.archive; })});
  if (gen.failed_requests() > 0) {
    r.why = absl::StrCat(gen.failed_requests(), " Writes failed");
  } else if (r.achieved < 0.95 * rate) {
    r.why = absl::StrFormat("ingest acknowledged only %.0f events/s", r.achieved);
  } else if (second_half.size() < 5) {
    r.why = "too few lag samples";
  } else if (worst > bound) {
    r.why = absl::StrFormat("lag reached %.0f records (bound %.0f)", worst, bound);
  } else if (slope > 0.02 * rate) {
    r.why = absl::StrFormat("lag grows by %.0f records/s", slope);
  } else {
    r.sustained = true;
  }
  bench::Report("pipeline.txt",
                absl::StrFormat("step %d events/s for %s: acknowledged %.0f/s, lag at end (writer "
                                "%.0f, aggregator %.0f, archive %.0f), worst in 2nd half (writer "
                                "%.0f, aggregator %.0f, archive %.0f), trend %.0f records/s: %s",
                                rate, absl::FormatDuration(duration), r.achieved,
                                samples.empty() ? -1 : samples.back().writer,
                                samples.empty() ? -1 : samples.back().aggregator,
                                samples.empty() ? -1 : samples.back().archive, worst_each.writer,
                                worst_each.aggregator, worst_each.archive, slope,
                                r.sustained ? "sustained" : "NOT sustained: " + r.why));
  if (r.sustained) DrainAndVerify(*stack, services, gen, absl::StrCat("step ", rate, "/s"));
  return r;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Freshness {
  std::vector<double> raw_ms, aggregate_ms;
  int64_t probes = 0;
};

/// Probes a stack under the load of `gen`: one event every 100 ms from device "probe", each
/// timed from ingest's acknowledgement to its point, and to its window's complete aggregate,
/// being readable through the query API.
Freshness ProbeFreshness(testing::Stack& stack, absl::Duration duration) {
  Freshness f;
  std::mutex mu;
  std::map<int64_t, absl::Time> acked;                        // time_us -> ack
  std::map<int64_t, std::vector<absl::Time>> acked_by_window;  // window start (s) -> acks
  std::map<int64_t, absl::Time> raw_readable, window_readable;
  std::atomic<bool> stop_polling{false};
  const int64_t start_us = absl::ToUnixMicros(absl::Now());
  std::thread poller([&] {
    while (!stop_polling.load()) {
      v1::ReadPointsRequest points;
      points.mutable_selector()->set_measure_name("probe");
      points.mutable_range()->set_start_us(start_us);
      points.set_page_size(10000);
      v1::ReadAggregatesRequest windows;
      windows.mutable_selector()->set_measure_name("probe");
      windows.mutable_range()->set_start_us(start_us - 1'000'000);
      windows.set_window_size_us(1'000'000);
      windows.set_page_size(10000);
      v1::ReadPointsResponse points_resp;
      v1::ReadAggregatesResponse windows_resp;
      grpc::ClientContext c1, c2;
      const bool points_ok = stack.query().ReadPoints(&c1, points, &points_resp).ok();
      const absl::Time points_at = absl::Now();
      const bool windows_ok = stack.query().ReadAggregates(&c2, windows, &windows_resp).ok();
      const absl::Time windows_at = absl::Now();
      {
        std::lock_guard<std::mutex> l(mu);
        if (!points_ok) points_resp.Clear();
        if (!windows_ok) windows_resp.Clear();
        for (const auto& sp : points_resp.series()) {
          for (const auto& p : sp.points()) raw_readable.try_emplace(p.time_us(), points_at);
        }
        for (const auto& sw : windows_resp.series()) {
          for (const auto& w : sw.windows()) {
            const int64_t key = w.start_us() / 1'000'000;
            auto it = acked_by_window.find(key);
            if (it != acked_by_window.end() && !w.partial() &&
                w.value().count() == static_cast<int64_t>(it->second.size())) {
              window_readable.try_emplace(key, windows_at);
            }
          }
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  const absl::Time end = absl::Now() + duration;
  while (absl::Now() < end) {
    v1::WriteRequest req;
    const absl::Time t = absl::Now();
    v1::Event* e = req.add_events();
    e->set_device_id("probe");
    e->set_time(absl::ToUnixMicros(t));
    e->set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    (*e->mutable_measures())["probe"].set_double_value(static_cast<double>(f.probes++));
    grpc::ClientContext ctx;
    v1::WriteResponse resp;
    if (stack.ingest().Write(&ctx, req, &resp).ok() && resp.accepted() == 1) {
      std::lock_guard<std::mutex> l(mu);
      acked[absl::ToUnixMicros(t)] = absl::Now();
      acked_by_window[absl::ToUnixSeconds(t)].push_back(absl::Now());
    }
    absl::SleepFor(absl::Milliseconds(1000 / kProbesPerSecond));
  }
  // The last window may close by idleness rather than by the watermark; wait for the rest.
  {
    std::lock_guard<std::mutex> l(mu);
    acked_by_window.erase(std::prev(acked_by_window.end()));
  }
  testing::WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(mu);
        return raw_readable.size() >= acked.size() &&
               window_readable.size() >= acked_by_window.size();
      },
      absl::Seconds(30));
  stop_polling = true;
  poller.join();
  for (const auto& [t, ack] : acked) {
    auto it = raw_readable.find(t);
    if (it != raw_readable.end()) f.raw_ms.push_back(absl::ToDoubleMilliseconds(it->second - ack));
  }
  for (const auto& [w, acks] : acked_by_window) {
    auto it = window_readable.find(w);
    if (it == window_readable.end()) continue;
    for (absl::Time ack : acks) f.aggregate_ms.push_back(absl::ToDoubleMilliseconds(it->second - ack));
  }
  if (f.raw_ms.size() != acked.size()) {
    bench::Must(absl::DataLossError(absl::StrFormat(
        "only %d of %d acknowledged probes became readable", f.raw_ms.size(), acked.size())));
  }
  return f;
}

/// psql `\copy` of the rows stored in `db` into the points table of a fresh database; rows/s.
double CopyBaseline(testing::PgCluster& pg, const std::string& db, int64_t& rows) {
  const std::string dir = absl::StrCat("/tmp/tidemark-pipeline-bench-", getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::all);
  const std::string series = dir + "/series.copy", points = dir + "/points.copy";
  const std::string cols =
      "series_id, time, value_double, value_int, value_bool, value_string, version, ingested_at";
  bench::Must(pg.Psql(db, absl::StrCat("\\copy series TO '", series, "'")).status());
  bench::Must(pg.Psql(db, absl::StrCat("\\copy (SELECT ", cols, " FROM points) TO '", points, "'"))
                  .status());
  const std::string target = "copy_baseline";
  bench::Must(pg.CreateDatabase(target).status());
  {
    auto logger = log::MakeLogger("pipeline-bench");
    logger->set_level(spdlog::level::warn);
    writer::PointStore schema(pg.Dsn(target), absl::Hours(48));
    bench::Must(schema.Open(*logger));
    bench::Must(schema.MaintainPartitions(absl::Hours(24 * 7)).status());
  }
  bench::Must(pg.Psql(target, absl::StrCat("\\copy series FROM '", series, "'")).status());
  const absl::Time start = absl::Now();
  bench::Must(
      pg.Psql(target, absl::StrCat("\\copy points (", cols, ") FROM '", points, "'")).status());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  auto count = pg.Psql(target, "SELECT count(*) FROM points");
  bench::Must(count.status());
  (void)absl::SimpleAtoi(*count, &rows);
  // Disk per stored point (table and primary key), for sizing.
  auto bytes = pg.Psql(target,
                       "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                       " WHERE inhparent = 'points'::regclass");
  int64_t total_bytes = 0;
  if (bytes.ok() && absl::SimpleAtoi(*bytes, &total_bytes) && rows > 0) {
    bench::Report("pipeline.txt", absl::StrFormat("points on disk: %d bytes for %d rows = %.0f "
                                                  "bytes per point",
                                                  total_bytes, rows,
                                                  static_cast<double>(total_bytes) / rows));
  }
  std::filesystem::remove_all(dir);
  return static_cast<double>(rows) / seconds;
}

std::string MemoryLine(const std::vector<std::pair<std::string, bench::Memory>>& memory) {
  std::vector<std::string> parts;
  for (const auto& [name, m] : memory) {
    parts.push_back(absl::StrFormat("%s %.0f MiB (peak %.0f)", name, m.rss_kb / 1024.0,
                                    m.hwm_kb / 1024.0));
  }
  return absl::StrJoin(parts, ", ");
}

std::string CpuLine(const std::vector<std::pair<std::string, double>>& cpu, double seconds) {
  std::vector<std::string> parts;
  for (const auto& [name, s] : cpu) parts.push_back(absl::StrFormat("%s %.2f", name, s / seconds));
  return absl::StrJoin(parts, ", ");
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_measures_per_event) < 2) {
    bench::Must(absl::InvalidArgumentError("--measures_per_event: at least 2"));
  }
  std::vector<int> rates;
  for (absl::string_view r : absl::StrSplit(absl::GetFlag(FLAGS_rates), ',')) {
    int rate = 0;
    if (!absl::SimpleAtoi(r, &rate) || rate <= 0) {
      bench::Must(absl::InvalidArgumentError(absl::StrCat("--rates: not a rate: ", r)));
    }
    rates.push_back(rate);
  }
  auto cluster = testing::PgCluster::Start();
  bench::Must(cluster.status());
  testing::PgCluster& pg = **cluster;
  const double step_s = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_step_duration));
  bench::Report("pipeline.txt",
                absl::StrCat("start; ", absl::GetFlag(FLAGS_measures_per_event),
                             " measures per event, ", absl::GetFlag(FLAGS_devices), " devices, ",
                             absl::GetFlag(FLAGS_senders), " senders; load average ",
                             LoadAverage()));

  // 1. Throughput steps.
  std::optional<StepResult> best;
  auto run_step = [&](int rate) {
    StepResult r = RunStep(pg, rate);
    bench::Report("pipeline.txt", absl::StrCat("  resident memory at ", rate, "/s: ",
                                               MemoryLine(r.memory), "; aggregator windows open ",
                                               r.windows_open));
    bench::Report("pipeline.txt", absl::StrCat("  cores used at ", rate, "/s: ",
                                               CpuLine(r.cpu_s, step_s), " (load generator ",
                                               absl::StrFormat("%.2f", r.generator_cores), ")"));
    bench::Report("pipeline.txt",
                  absl::StrFormat("  WAL at %d/s: %.1f MB/s, %.0f bytes per acknowledged measure",
                                  rate, r.wal_bytes / step_s / 1e6,
                                  r.wal_bytes / (absl::GetFlag(FLAGS_measures_per_event) *
                                                 std::max<double>(1, r.acknowledged))));
    return r;
  };
  std::optional<int> first_failed;
  for (int rate : rates) {
    StepResult r = run_step(rate);
    if (!r.sustained) {
      first_failed = rate;
      break;
    }
    best = std::move(r);
  }
  // Every listed rate sustained: the limit lies above them. Go on by the last step's increment
  // (a tenth of the rate with one rate listed), at most --extra_steps times, so that the
  // figure reported is the pipeline's limit rather than the top of the list.
  const int increment = rates.size() > 1 ? std::max(500, rates.back() - rates[rates.size() - 2])
                                         : std::max(500, rates.back() / 10);
  for (int extra = 0; !first_failed && extra < absl::GetFlag(FLAGS_extra_steps); ++extra) {
    const int rate = best->rate + increment;
    StepResult r = run_step(rate);
    if (!r.sustained) {
      first_failed = rate;
      break;
    }
    best = std::move(r);
  }
  // One step halfway between the highest sustained rate and the first that was not, so that
  // the figure depends less on where the steps happen to fall.
  if (best && first_failed) {
    const int middle = (best->rate + *first_failed) / 2 / 500 * 500;
    if (middle > best->rate) {
      StepResult r = run_step(middle);
      if (r.sustained) best = std::move(r);
    }
  }
  if (!best) bench::Must(absl::ResourceExhaustedError("not even the lowest rate was sustained"));
  const double events_s = best->achieved;
  const double measures_s = absl::GetFlag(FLAGS_measures_per_event) * events_s;

  // 2. Freshness at half that rate (or --freshness_rate), on a fresh stack.
  const int freshness_rate = absl::GetFlag(FLAGS_freshness_rate) > 0
                                 ? absl::GetFlag(FLAGS_freshness_rate)
                                 : best->rate / 2;
  Freshness fresh;
  {
    Services services;
    auto stack = StartStack(pg, services);
    testing::LoadGenerator gen(stack->ingest(), Load(freshness_rate));
    gen.Start();
    absl::SleepFor(absl::Seconds(5));  // consumer groups join, a steady state
    fresh = ProbeFreshness(*stack, absl::GetFlag(FLAGS_freshness_duration));
    gen.Stop();
    DrainAndVerify(*stack, services, gen, absl::StrCat("freshness run ", freshness_rate, "/s"));
  }

  // 3. The database's own write speed for the same rows.
  int64_t copy_rows = 0;
  const double copy_rows_s = CopyBaseline(pg, best->db, copy_rows);

  bench::Report("pipeline.txt",
                absl::StrFormat("highest sustained rate for %.0f s: %.0f events/s = %.0f measures/s "
                                "(step %d/s; next step: %s)",
                                step_s, events_s, measures_s, best->rate,
                                first_failed ? "not sustained"
                                             : "none (raise --rates or --extra_steps)"));
  bench::Report("pipeline.txt",
                absl::StrFormat("psql \\copy baseline: %d rows into points in %.2f s = %.0f rows/s; "
                                "ratio pipeline measures/s / copy rows/s = %.3f",
                                copy_rows, static_cast<double>(copy_rows) / copy_rows_s,
                                copy_rows_s, measures_s / copy_rows_s));
  bench::Report("pipeline.txt",
                absl::StrFormat("freshness at %d events/s, %d probes: ack -> raw point readable "
                                "p50 %.0f ms, p99 %.0f ms; ack -> 1 s window aggregate readable "
                                "p50 %.0f ms, p99 %.0f ms",
                                freshness_rate, fresh.probes, Percentile(fresh.raw_ms, 0.5),
                                Percentile(fresh.raw_ms, 0.99), Percentile(fresh.aggregate_ms, 0.5),
                                Percentile(fresh.aggregate_ms, 0.99)));
  bench::Report("pipeline.txt",
                absl::StrCat("resident memory at the sustained rate: ", MemoryLine(best->memory)));
  bench::Report("pipeline.txt", absl::StrCat("done; load average ", LoadAverage()));
  return 0;
}
