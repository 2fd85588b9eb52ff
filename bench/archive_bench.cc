// Archive throughput: the real archive binary drains a backlog of tidemark.raw from the
// development broker into a local lake directory (decode, JSON lines, gzip -6, fsync, commit);
// events/s from its partition assignment to the last event durable, and events per CPU-second
// of the archive process. Baseline in the same run: `gzip -6` compressing the same JSON lines
// from one file. Also bytes per event in the lake, compressed and not. Each round's lake is
// read back before its figures count: every event exactly once (unique Kafka origins), byte for
// byte the line EventToJsonLine makes of it, under its event hour. Memory: the archive's peak
// resident memory with batches of two sizes (cut by count), whose difference per event is what
// a buffered event costs. With --baseline_archive=PATH (e.g. a build before a change) that
// binary drains the same backlog in every round too, and its CPU and memory are ratios.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "bench/bench_util.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "httplib.h"
#include "services/archive/archive_core.h"
#include "tests/support/process.h"

namespace {

using namespace tidemark;

constexpr int kEvents = 300'000;
constexpr int kDevices = 1000;  // each reports once a second: 300 s of a fleet
constexpr int kPartitions = 12;
constexpr int kRounds = 3;
constexpr char kTopic[] = "tidemark.raw";
constexpr char kBatchMaxAge[] = "1s";

std::string Bin(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Events shaped like the simulator's Timestream sample records after ingest: a device id, time
// in microseconds, four double measures at the sample's precision, two dimensions, the
// ingest time and a version. All fall in one hour; `version` is unique, so it names the event.
std::vector<v1::Event> MakeEvents(int64_t base_us) {
  static constexpr const char* kSites[] = {"north", "south", "east", "west"};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto round_to = [](double v, double step) { return std::round(v / step) * step; };
  std::vector<double> temperature(kDevices, 20.0);
  std::vector<v1::Event> out;
  out.reserve(kEvents);
  for (int i = 0; i < kEvents; ++i) {
    const int device = i % kDevices;
    const int64_t time_us = base_us + int64_t{i / kDevices} * 1'000'000 + device * 997;
    temperature[device] += unit(rng) - 0.5;
    v1::Event& e = out.emplace_back();
    e.set_device_id(absl::StrFormat("00000000-0000-4000-8000-%012d", device + 1));
    e.set_time(time_us);
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    (*e.mutable_dimensions())["site"] = kSites[device % 4];
    (*e.mutable_dimensions())["firmware"] = device % 3 == 0 ? "2.1.0" : "2.0.7";
    auto& m = *e.mutable_measures();
    m["temperature"].set_double_value(round_to(temperature[device], 0.01));
    m["humidity"].set_double_value(round_to(30 + 10 * unit(rng), 0.1));
    m["voltage"].set_double_value(round_to(220 + 20 * unit(rng), 0.1));
    m["watt"].set_double_value(round_to(500 + 500 * unit(rng), 0.01));
    e.set_ingest_time_us(time_us + 80'000);
    e.set_version(time_us + 80'000);
  }
  return out;
}

class DeliveryCounter final : public kafka::DeliverySink {
 public:
  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err) failed++;
    done++;
  }
  std::atomic<int64_t> done{0}, failed{0};
};

// The events, keyed by device id as ingest produces them, with ingest's producer settings.
absl::Status Produce(const std::string& brokers, const std::vector<v1::Event>& events,
                     std::shared_ptr<spdlog::logger> logger) {
  absl::StatusOr<std::unique_ptr<kafka::Producer>> producer =
      kafka::Producer::Create({.brokers = brokers, .delivery_timeout = absl::Seconds(60)}, logger);
  if (!producer.ok()) return producer.status();
  DeliveryCounter counter;
  for (const v1::Event& e : events) {
    const std::string value = e.SerializeAsString();
    absl::Status s;
    while (absl::IsResourceExhausted(
        s = (*producer)->Produce(kTopic, e.device_id(), value, &counter))) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (!s.ok()) return s;
  }
  if (absl::Status s = (*producer)->Flush(absl::Seconds(60)); !s.ok()) return s;
  if (counter.failed > 0 || counter.done != static_cast<int64_t>(events.size())) {
    return absl::UnavailableError(absl::StrCat("produced ", counter.done.load(), " of ",
                                               events.size(), ", ", counter.failed.load(),
                                               " failed"));
  }
  return absl::OkStatus();
}

// The integer after `"key":` in a JSON line, or -1.
int64_t IntAfter(absl::string_view line, absl::string_view key) {
  const size_t at = line.find(key);
  if (at == absl::string_view::npos) return -1;
  const char* begin = line.data() + at + key.size();
  int64_t v = -1;
  if (std::from_chars(begin, line.data() + line.size(), v).ec != std::errc()) return -1;
  return v;
}

// The value of an unlabelled counter in a Prometheus text page, or -1.
int64_t CounterValue(const std::string& page, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::StartsWith(line, name) && line.size() > name.size() && line[name.size()] == ' ') {
      return IntAfter(line, absl::StrCat(name, " "));
    }
  }
  return -1;
}

struct LakeContent {
  int64_t files = 0;
  /// Files of the partition with the most: the batches, as every event is in one hour.
  int batches = 0;
  int64_t gzip_bytes = 0;
  int64_t json_bytes = 0;
  /// Kafka (partition, offset) of each event, by index.
  std::vector<std::pair<int32_t, int64_t>> origin;
};

// Reads every *.jsonl.gz file of the lake back and checks it holds each event exactly once,
// byte for byte as EventToJsonLine writes it, in the directory of its event hour.
absl::StatusOr<LakeContent> CheckLake(const std::string& lake, const std::vector<v1::Event>& events,
                                      const absl::flat_hash_map<int64_t, int>& by_version) {
  LakeContent c;
  c.origin.assign(events.size(), {-1, -1});
  absl::flat_hash_set<std::pair<int32_t, int64_t>> origins;
  absl::flat_hash_map<int32_t, int> files_by_partition;
  int64_t lines = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(lake)) {
    const std::string path = entry.path().string();
    if (!entry.is_regular_file() || !absl::EndsWith(path, ".jsonl.gz")) continue;
    const std::string rel = std::filesystem::relative(entry.path(), lake).generic_string();
    const std::string gz = ReadFile(path);
    absl::StatusOr<std::string> text = archive::Gunzip(gz);
    if (!text.ok()) return absl::DataLossError(absl::StrCat(rel, ": ", text.status().message()));
    ++c.files;
    bool first_line = true;
    c.gzip_bytes += static_cast<int64_t>(gz.size());
    c.json_bytes += static_cast<int64_t>(text->size());
    if (!text->empty() && text->back() != '\n') {
      return absl::DataLossError(absl::StrCat(rel, " does not end with a newline"));
    }
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      ++lines;
      auto it = by_version.find(IntAfter(line, "\"version\":"));
      if (it == by_version.end()) {
        return absl::DataLossError(absl::StrCat(rel, " holds a line of no produced event: ", line));
      }
      const int i = it->second;
      const std::pair<int32_t, int64_t> origin{
          static_cast<int32_t>(IntAfter(line, "\"partition\":")), IntAfter(line, "\"offset\":")};
      if (c.origin[i].first >= 0) {
        return absl::DataLossError(absl::StrCat("event ", i, " is in the lake twice (", rel, ")"));
      }
      if (!origins.insert(origin).second) {
        return absl::DataLossError(
            absl::StrCat("two lines name partition ", origin.first, " offset ", origin.second));
      }
      c.origin[i] = origin;
      if (first_line) {
        c.batches = std::max(c.batches, ++files_by_partition[origin.first]);
        first_line = false;
      }
      const std::string expected =
          archive::EventToJsonLine(events[i], {kTopic, origin.first, origin.second});
      if (line != expected) {
        return absl::DataLossError(
            absl::StrCat(rel, " line differs from the event:\n  ", line, "\n  ", expected));
      }
      if (!absl::StartsWith(rel, archive::HourPartition(events[i].time()) + "/")) {
        return absl::DataLossError(absl::StrCat("event ", i, " filed under ", rel));
      }
    }
  }
  if (lines != static_cast<int64_t>(events.size())) {
    return absl::DataLossError(
        absl::StrCat("the lake holds ", lines, " lines for ", events.size(), " events"));
  }
  return c;
}

struct Measured {
  double wall_s = 0;
  double cpu_s = 0;
  int64_t peak_kb = 0;  // the archive's peak resident memory (VmHWM)
};

// One archive process with its own consumer group and lake directory, from partition
// assignment until its metrics count every event; then SIGTERM, which must exit cleanly.
// `batching` are the archive's batch flags; `binary` the archive to run.
absl::StatusOr<Measured> RunArchive(const std::string& dir, const std::string& lake,
                                    const std::string& brokers, const std::string& name,
                                    std::vector<std::string> batching = {absl::StrCat(
                                        "--batch_max_age=", kBatchMaxAge)},
                                    const std::string& binary = Bin("services/archive/archive")) {
  const std::string log = absl::StrCat(dir, "/archive-", name, ".log");
  std::vector<std::string> args = {"--lake=" + lake, absl::StrCat("--group_id=archive-bench-", name),
                                   "--metrics_host=127.0.0.1", "--metrics_port=0"};
  args.insert(args.end(), batching.begin(), batching.end());
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> archive = testing::ChildProcess::Start(
      binary, args, {{"TIDEMARK_KAFKA_BROKERS", brokers}, {"TIDEMARK_LOG_LEVEL", "info"}}, log);
  if (!archive.ok()) return archive.status();
  testing::ChildProcess& p = **archive;
  auto failed = [&](absl::string_view what) {
    return absl::InternalError(absl::StrCat(what, "; archive log ", log, ":\n", p.Log()));
  };
  // The group join (the broker delays a new group's first rebalance) is not the archive's
  // work: the clock starts at the assignment, watched closely so little work precedes it.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!absl::StrContains(p.Log(), "partitions assigned")) {
    if (!p.Running()) return failed("the archive exited before its partitions were assigned");
    if (absl::Now() > deadline) return failed("no partitions assigned within 30 s");
    absl::SleepFor(absl::Milliseconds(2));
  }
  const absl::Time start = absl::Now();
  const double cpu0 = bench::CpuSeconds(p.pid());
  const std::string text = p.Log();
  const int64_t port = IntAfter(text, "metrics_port=");
  if (port <= 0) return failed("no metrics_port in the log");
  httplib::Client http("127.0.0.1", static_cast<int>(port));
  int64_t archived = 0;
  double cpu1 = 0;
  int64_t peak_kb = 0;
  absl::Time end;
  while (true) {
    if (!p.Running()) return failed("the archive exited");
    if (absl::Now() - start > absl::Seconds(90)) {
      return failed(absl::StrCat(archived, " of ", kEvents, " events archived after 90 s"));
    }
    if (httplib::Result res = http.Get("/metrics"); res && res->status == 200) {
      archived = CounterValue(res->body, "tidemark_archive_events_total");
      if (archived >= kEvents) {
        end = absl::Now();
        cpu1 = bench::CpuSeconds(p.pid());
        peak_kb = bench::ReadMemory(p.pid()).hwm_kb;
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (archived != kEvents) {
    return failed(
        absl::StrCat("tidemark_archive_events_total is ", archived, " for ", kEvents, " events"));
  }
  p.Signal(SIGTERM);
  absl::StatusOr<int> code = p.Wait(absl::Seconds(30));
  if (!code.ok() || *code != 0) {
    return failed(code.ok() ? absl::StrCat("exit code ", *code) : "no exit within 30 s of SIGTERM");
  }
  return Measured{absl::ToDoubleSeconds(end - start), cpu1 - cpu0, peak_kb};
}

double Seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6; }

// `command` through the shell: wall time and the CPU time of the children it ran.
absl::StatusOr<Measured> TimeCommand(const std::string& command) {
  rusage before, after;
  getrusage(RUSAGE_CHILDREN, &before);
  const absl::Time start = absl::Now();
  if (const int rc = std::system(command.c_str()); rc != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` returned ", rc));
  }
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  getrusage(RUSAGE_CHILDREN, &after);
  return Measured{wall, Seconds(after.ru_utime) + Seconds(after.ru_stime) -
                            Seconds(before.ru_utime) - Seconds(before.ru_stime)};
}

// Memory rounds: batches cut by count alone, at two sizes, so the difference in peak resident
// memory divided by the difference in batch size is what each buffered event costs.
constexpr int kSmallBatch = 30'000;
constexpr int kLargeBatch = 150'000;

absl::Status Run(const std::string& dir, const std::string& baseline_archive) {
  auto logger = log::MakeLogger("archive-bench");
  logger->set_level(spdlog::level::warn);
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> broker = testing::ChildProcess::Start(
      Bin("tools/devbroker/devbroker"),
      {"--bootstrap_file=" + dir + "/bootstrap",
       absl::StrCat("--topics=", kTopic, ":", kPartitions, ",tidemark.rejected:3")},
      {}, dir + "/devbroker.log");
  if (!broker.ok()) return broker.status();
  if (!testing::WaitFor([&] { return std::filesystem::exists(dir + "/bootstrap"); },
                        absl::Seconds(10))) {
    return absl::UnavailableError("the development broker did not start");
  }
  std::string brokers;
  std::getline(std::ifstream(dir + "/bootstrap"), brokers);

  // Ten minutes into the hour before last: every event in one hour, none in the future.
  const absl::CivilHour hour = absl::ToCivilHour(absl::Now() - absl::Hours(2), absl::UTCTimeZone());
  const int64_t base_us =
      absl::ToUnixMicros(absl::FromCivil(hour, absl::UTCTimeZone()) + absl::Minutes(10));
  const std::vector<v1::Event> events = MakeEvents(base_us);
  absl::flat_hash_map<int64_t, int> by_version;
  for (int i = 0; i < kEvents; ++i) by_version[events[i].version()] = i;
  int64_t record_bytes = 0;
  for (const v1::Event& e : events) record_bytes += static_cast<int64_t>(e.ByteSizeLong());
  if (absl::Status s = Produce(brokers, events, logger); !s.ok()) return s;

  // Rounds alternate the archive and the baseline, so drift in the machine hits both.
  const std::string json_file = dir + "/events.jsonl";
  std::vector<double> a_wall, a_cpu, g_wall, g_cpu, b_cpu, a_peak_mib, b_peak_mib;
  LakeContent first;
  for (int round = 0; round < kRounds; ++round) {
    const std::string lake = absl::StrCat(dir, "/lake-", round);
    std::filesystem::create_directories(lake);
    absl::StatusOr<Measured> a = RunArchive(dir, lake, brokers, absl::StrCat(round));
    if (!a.ok()) return a.status();
    absl::StatusOr<LakeContent> content = CheckLake(lake, events, by_version);
    if (!content.ok()) return content.status();
    std::filesystem::remove_all(lake);
    if (round == 0) {
      first = *std::move(content);
      // The baseline's input: the lines the archive wrote, in the order they were produced.
      std::ofstream out(json_file, std::ios::binary);
      for (int i = 0; i < kEvents; ++i) {
        out << archive::EventToJsonLine(events[i],
                                        {kTopic, first.origin[i].first, first.origin[i].second})
            << '\n';
      }
      out.close();
      if (static_cast<int64_t>(std::filesystem::file_size(json_file)) != first.json_bytes) {
        return absl::InternalError("the baseline's JSON lines differ in size from the lake's");
      }
    } else if (content->origin != first.origin) {
      return absl::InternalError(
          absl::StrCat("round ", round, " read other Kafka offsets for the same events"));
    } else if (content->files != first.files) {
      bench::Report("archive.txt", absl::StrFormat("note: round %d cut %d files (round 0: %d)",
                                                   round, content->files, first.files));
    }
    absl::StatusOr<Measured> g =
        TimeCommand(absl::StrCat("gzip -6 -c ", json_file, " > /dev/null"));
    if (!g.ok()) return g.status();
    a_wall.push_back(a->wall_s);
    a_cpu.push_back(a->cpu_s);
    a_peak_mib.push_back(a->peak_kb / 1024.0);
    if (!baseline_archive.empty()) {
      const std::string baseline_lake = absl::StrCat(dir, "/lake-baseline-", round);
      std::filesystem::create_directories(baseline_lake);
      absl::StatusOr<Measured> b =
          RunArchive(dir, baseline_lake, brokers, absl::StrCat("baseline-", round),
                     {absl::StrCat("--batch_max_age=", kBatchMaxAge)}, baseline_archive);
      if (!b.ok()) return b.status();
      if (absl::Status s = CheckLake(baseline_lake, events, by_version).status(); !s.ok()) {
        return s;
      }
      std::filesystem::remove_all(baseline_lake);
      b_cpu.push_back(b->cpu_s);
      b_peak_mib.push_back(b->peak_kb / 1024.0);
    }
    g_wall.push_back(g->wall_s);
    g_cpu.push_back(g->cpu_s);
    bench::Report("archive.txt",
                  absl::StrFormat("round %d: archive %.2f s wall, %.2f s CPU; gzip -6 %.2f s "
                                  "wall, %.2f s CPU",
                                  round, a->wall_s, a->cpu_s, g->wall_s, g->cpu_s));
  }
  // Size of one gzip -6 stream over all the lines, for comparison with the lake's files.
  if (absl::StatusOr<Measured> s =
          TimeCommand(absl::StrCat("gzip -6 -c ", json_file, " > ", json_file, ".gz"));
      !s.ok()) {
    return s.status();
  }
  const double one_stream = static_cast<double>(std::filesystem::file_size(json_file + ".gz"));

  // Bytes per buffered event of an archive binary, from its peak memory at two batch sizes.
  struct MemoryFigures {
    int64_t small_kb = 0, large_kb = 0;
    double BytesPerEvent() const {
      return (large_kb - small_kb) * 1024.0 / (kLargeBatch - kSmallBatch);
    }
  };
  auto measure_memory = [&](const std::string& binary,
                            const std::string& name) -> absl::StatusOr<MemoryFigures> {
    MemoryFigures m;
    for (int batch : {kSmallBatch, kLargeBatch}) {
      const std::string lake = absl::StrCat(dir, "/lake-", name, "-", batch);
      std::filesystem::create_directories(lake);
      absl::StatusOr<Measured> a =
          RunArchive(dir, lake, brokers, absl::StrCat(name, "-", batch),
                     {"--batch_max_age=10m", absl::StrCat("--batch_max_records=", batch),
                      // librdkafka would otherwise fetch the whole backlog ahead (64 MiB by
                      // default), records that only move from its queue to the batch. Not
                      // less: librdkafka 2.0.2 decides to fetch again when a fetch returns,
                      // and a queue still above the limit then (the archive busy with what it
                      // polled) waits for its next wake-up, a second later.
                      "--kafka_config=queued.max.messages.kbytes=4096,queued.min.messages=10000"},
                     binary);
      if (!a.ok()) return a.status();
      if (absl::Status s = CheckLake(lake, events, by_version).status(); !s.ok()) return s;
      std::filesystem::remove_all(lake);
      (batch == kSmallBatch ? m.small_kb : m.large_kb) = a->peak_kb;
    }
    return m;
  };
  absl::StatusOr<MemoryFigures> memory =
      measure_memory(Bin("services/archive/archive"), "memory");
  if (!memory.ok()) return memory.status();
  std::optional<MemoryFigures> baseline_memory;
  if (!baseline_archive.empty()) {
    absl::StatusOr<MemoryFigures> m = measure_memory(baseline_archive, "baseline-memory");
    if (!m.ok()) return m.status();
    baseline_memory = *m;
  }
  (*broker)->Signal(SIGTERM);
  (void)(*broker)->Wait(absl::Seconds(15));

  const double n = kEvents;
  const double aw = Median(a_wall), ac = Median(a_cpu), gw = Median(g_wall), gc = Median(g_cpu);
  bench::Report(
      "archive.txt",
      absl::StrFormat("setup: %d events (%d devices, 4 double measures, 2 dimensions, %.0f B "
                      "protobuf each) keyed by device id on %s:%d of the development broker "
                      "(zstd); archive --batch_max_age=%s, gzip level 6, lake on local disk "
                      "(fsync); median of %d rounds, each a fresh consumer group draining the "
                      "whole backlog",
                      kEvents, kDevices, record_bytes / n, kTopic, kPartitions, kBatchMaxAge,
                      kRounds));
  bench::Report("archive.txt",
                absl::StrFormat("archive: partitions assigned -> all %d events durable in %.2f s "
                                "= %.0f events/s; archive CPU %.2f s = %.0f events/s per core; "
                                "%d files in %d batch(es); peak resident memory %.0f MiB; "
                                "verified: each event once, byte-exact, in its hour",
                                kEvents, aw, n / aw, ac, n / ac, first.files, first.batches,
                                Median(a_peak_mib)));
  bench::Report("archive.txt",
                absl::StrFormat("baseline gzip -6 -c of the same JSON lines (%.1f MB, one file): "
                                "%.2f s = %.0f events/s; CPU %.2f s = %.0f events/s per core",
                                first.json_bytes / 1e6, gw, n / gw, gc, n / gc));
  bench::Report("archive.txt",
                absl::StrFormat("ratio archive/gzip: events/s %.2f, events per CPU-second %.2f",
                                gw / aw, gc / ac));
  bench::Report(
      "archive.txt",
      absl::StrFormat("bytes per event: JSON line %.1f; lake gzip files %.1f (%.1fx); "
                      "one gzip -6 stream of all lines %.1f",
                      first.json_bytes / n, first.gzip_bytes / n,
                      static_cast<double>(first.json_bytes) / first.gzip_bytes, one_stream / n));
  auto report_memory = [&](const std::string& name, const MemoryFigures& m) {
    bench::Report(
        "archive.txt",
        absl::StrFormat("%s: peak resident memory %.0f MiB with batches of %d events, %.0f MiB "
                        "with %d: %.0f bytes per buffered event",
                        name, m.small_kb / 1024.0, kSmallBatch, m.large_kb / 1024.0, kLargeBatch,
                        m.BytesPerEvent()));
  };
  report_memory("archive memory", *memory);
  if (!b_cpu.empty()) {
    bench::Report("archive.txt",
                  absl::StrFormat("baseline archive binary: CPU %.2f s = %.0f events/s per core, "
                                  "peak resident memory %.0f MiB; ratio archive/baseline binary: "
                                  "events per CPU-second %.2f, peak memory %.2f",
                                  Median(b_cpu), n / Median(b_cpu), Median(b_peak_mib),
                                  Median(b_cpu) / ac, Median(a_peak_mib) / Median(b_peak_mib)));
  }
  if (baseline_memory) {
    report_memory("baseline archive binary memory", *baseline_memory);
    bench::Report("archive.txt",
                  absl::StrFormat("ratio archive/baseline binary: bytes per buffered event %.2f",
                                  memory->BytesPerEvent() / baseline_memory->BytesPerEvent()));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  // --baseline_archive=PATH: a second archive binary (e.g. a build before a change) whose
  // memory per buffered event is measured in the same run.
  std::string baseline_archive;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--baseline_archive=")) baseline_archive = std::string(arg);
  }
  const std::string dir = absl::StrCat("/tmp/tidemark-archive-bench-", getpid());
  std::filesystem::create_directories(dir);
  if (absl::Status s = Run(dir, baseline_archive); !s.ok()) {
    std::fprintf(stderr, "bench failed: %s\n(logs kept in %s)\n", std::string(s.message()).c_str(),
                 dir.c_str());
    return 1;
  }
  std::filesystem::remove_all(dir);
  return 0;
}
