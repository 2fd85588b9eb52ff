// The archive end to end over the real binaries: every acknowledged event lands in the lake
// exactly once, under the hour of its own event time — with late and clock-skewed devices, and
// with the archive killed mid-stream; and a replay of the lake into a fresh store reproduces
// its points and aggregates, twice without changing anything.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/s3/s3_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/archive/archive_core.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/s3rver.h"
#include "tests/support/stack.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

struct LakeEvent {
  std::string file;  // relative to the lake
  nlohmann::json line;
};

// What one read of the lake found. A file that was listed but could not be read makes the
// whole read fail rather than leave its events out: a partial read would look like events lost.
using LakeRead = absl::StatusOr<std::vector<LakeEvent>>;

// Every line of every *.jsonl.gz file under `lake`, read with zlib and nlohmann alone.
LakeRead ReadLake(const std::string& lake) {
  std::vector<LakeEvent> out;
  std::error_code ec;
  if (!std::filesystem::exists(lake, ec)) return out;
  for (auto it = std::filesystem::recursive_directory_iterator(lake, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string path = it->path().string();
    std::error_code gone;  // deleted since it was listed: no longer in the lake
    if (!it->is_regular_file(gone) || !absl::EndsWith(path, ".jsonl.gz")) continue;
    std::ifstream in(path, std::ios::binary);
    std::stringstream gz;
    gz << in.rdbuf();
    absl::StatusOr<std::string> text = archive::Gunzip(gz.str());
    if (!text.ok())
      return absl::UnavailableError(absl::StrCat(path, ": ", text.status().message()));
    const std::string rel = std::filesystem::relative(it->path(), lake).generic_string();
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      out.push_back({rel, nlohmann::json::parse(line)});
    }
  }
  // An iterator that fails ends the loop.
  if (ec) return absl::UnavailableError(absl::StrCat("listing ", lake, ": ", ec.message()));
  return out;
}

int64_t EventTimeUs(const nlohmann::json& line) {
  const int64_t t = line.at("time").get<int64_t>();
  const std::string unit = line.at("time_unit").get<std::string>();
  if (unit == "SECONDS") return t * 1'000'000;
  if (unit == "MICROSECONDS") return t;
  if (unit == "NANOSECONDS") return t / 1000;
  return t * 1000;
}

std::string ExpectedHourDir(int64_t us) {
  const absl::CivilHour h = absl::ToCivilHour(absl::FromUnixMicros(us), absl::UTCTimeZone());
  char buf[64];
  std::snprintf(buf, sizeof(buf), "year=%04d/month=%02d/day=%02d/hour=%02d",
                static_cast<int>(h.year()), h.month(), h.day(), h.hour());
  return buf;
}

// Every line of every *.jsonl.gz object under `prefix` in an S3 bucket.
LakeRead ReadBucket(const s3::S3Config& config, const std::string& prefix) {
  std::vector<LakeEvent> out;
  absl::StatusOr<std::unique_ptr<s3::S3Client>> client = s3::S3Client::Create(config);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::vector<std::string>> keys = (*client)->List(prefix);
  if (!keys.ok()) return keys.status();
  for (const std::string& key : *keys) {
    if (!absl::EndsWith(key, ".jsonl.gz")) continue;
    absl::StatusOr<std::string> gz = (*client)->Get(key);
    if (!gz.ok()) return gz.status();
    absl::StatusOr<std::string> text = archive::Gunzip(*gz);
    if (!text.ok()) return absl::UnavailableError(absl::StrCat(key, ": ", text.status().message()));
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      out.push_back({key.substr(prefix.size()), nlohmann::json::parse(line)});
    }
  }
  return out;
}

// The lake as one read finds it, read again while a read fails (a store under load may fail a
// request, or a file may be deleted between listing and reading it).
std::vector<LakeEvent> ReadWhole(const std::function<LakeRead()>& read) {
  absl::Status last;
  for (int attempt = 0; attempt < 20; ++attempt) {
    LakeRead events = read();
    if (events.ok()) return *std::move(events);
    last = events.status();
    absl::SleepFor(absl::Milliseconds(250));
  }
  ADD_FAILURE() << "the lake could not be read whole: " << last;
  return {};
}

// Checks the lake holds exactly `acknowledged` events, each once (by Kafka partition and
// offset), each in the directory of its event hour. Returns the per-hour counts.
std::map<std::string, int64_t> CheckLake(const std::function<LakeRead()>& read,
                                         int64_t acknowledged) {
  std::vector<LakeEvent> events;
  const bool complete = WaitFor(
      [&] {
        LakeRead found = read();
        if (!found.ok()) return false;
        events = *std::move(found);
        return static_cast<int64_t>(events.size()) >= acknowledged;
      },
      absl::Seconds(90));
  EXPECT_TRUE(complete) << events.size() << " of " << acknowledged << " events in the lake";
  absl::SleepFor(absl::Seconds(2));  // anything extra would show up now
  events = ReadWhole(read);
  EXPECT_EQ(static_cast<int64_t>(events.size()), acknowledged);
  std::set<std::pair<int, int64_t>> origins;
  std::map<std::string, int64_t> per_hour;
  for (const LakeEvent& e : events) {
    const nlohmann::json& k = e.line.at("kafka");
    EXPECT_TRUE(
        origins.insert({k.at("partition").get<int>(), k.at("offset").get<int64_t>()}).second)
        << "duplicated: " << e.line.dump();
    const std::string hour = ExpectedHourDir(EventTimeUs(e.line));
    EXPECT_TRUE(absl::StartsWith(e.file, hour + "/")) << e.file << " holds " << e.line.dump();
    ++per_hour[hour];
  }
  return per_hour;
}

std::map<std::string, int64_t> CheckLake(const std::string& lake, int64_t acknowledged) {
  return CheckLake([&] { return ReadLake(lake); }, acknowledged);
}

// Per-hour event counts of the lake as DuckDB reads it (read_json_auto with hive_partitioning
// over the documented glob), through @duckdb/node-api from scripts/install-test-servers.sh.
std::map<std::string, int64_t> DuckDbHourCounts(const std::string& lake) {
  const std::string source = TIDEMARK_SOURCE_DIR;
  const std::string command =
      absl::StrCat("NODE_PATH='", source, "/.local/npm/node_modules' node '", source,
                   "/tests/e2e/duckdb_hour_counts.js' '", lake, "' 2>&1");
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    ::pclose(pipe);
  }
  std::map<std::string, int64_t> counts;
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "DuckDB (run scripts/install-test-servers.sh?): " << out;
  if (j.is_object()) {
    for (const auto& [hour, n] : j.items()) counts[hour] = n.get<int64_t>();
  }
  return counts;
}

// Events with known hours: `count` events of `device` at each of `hours_ago` hours before now
// (and one device whose clock runs 3 h ahead), written through ingest.
int64_t WriteKnownHours(Stack& stack, std::map<std::string, int64_t>& expected) {
  v1::WriteRequest req;
  const absl::Time now = absl::Now();
  for (int hours_ago : {5, 2, 1, -3}) {
    const absl::Time at = now - absl::Hours(hours_ago);
    for (int i = 0; i < 7; ++i) {
      v1::Event* e = req.add_events();
      e->set_device_id(absl::StrCat("known-", hours_ago, "-", i));
      e->set_time(absl::ToUnixMillis(at) + i);
      e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
      (*e->mutable_dimensions())["site"] = "north";
      (*e->mutable_measures())["power"].set_double_value(i + 0.5);
      ++expected[ExpectedHourDir(absl::ToUnixMicros(at) + i * 1000)];
    }
  }
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  EXPECT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.accepted(), req.events_size());
  return resp.accepted();
}

TEST(Archive, EveryAcknowledgedEventOnceUnderItsEventHour) {
  Stack stack(testing::SharedPgCluster());
  const std::string lake = stack.dir() + "/lake";
  stack.StartArchive({"--lake=" + lake, "--batch_max_age=500ms"});
  std::map<std::string, int64_t> known;
  int64_t acknowledged = WriteKnownHours(stack, known);
  const nlohmann::json summary = stack.RunSimulator(
      {"--devices=40", "--rate=500", "--batch_size=50", "--max_records=4000", "--duration=60s",
       "--percent_late=5", "--late_time=75s", "--percent_clock_ahead=5", "--clock_ahead=2h"});
  EXPECT_EQ(summary["failed"].get<int64_t>(), 0);
  acknowledged += summary["accepted"].get<int64_t>();
  const std::map<std::string, int64_t> per_hour = CheckLake(lake, acknowledged);
  // Clock-ahead devices' events sit two hours ahead of now: in their own hour, not arrival's.
  EXPECT_GE(per_hour.size(), 4u);
  for (const auto& [hour, n] : known) {
    ASSERT_TRUE(per_hour.contains(hour)) << hour;
    EXPECT_GE(per_hour.at(hour), n) << hour;
  }
  // DuckDB reads the lake as it is, and counts the same events in the same hours.
  EXPECT_EQ(DuckDbHourCounts(lake), per_hour);
  // SIGTERM flushes and commits: a restart writes nothing again.
  stack.archive().Signal(SIGTERM);
  ASSERT_TRUE(stack.archive().Wait(absl::Seconds(20)).ok());
  // Each partition's record names every batch in it, its last one too, as committed: with the
  // group's offsets gone (every replica stopped past Kafka's offset retention) it says where
  // archiving stopped.
  int records = 0;
  for (const auto& entry : std::filesystem::directory_iterator(lake + "/_pending")) {
    std::string record;
    std::getline(std::ifstream(entry.path()), record);
    const nlohmann::json batches = nlohmann::json::parse(record);
    ASSERT_FALSE(batches.empty()) << entry.path();
    for (const nlohmann::json& b : batches) {
      EXPECT_TRUE(b.value("committed", false)) << entry.path() << ": " << record;
    }
    ++records;
  }
  EXPECT_GT(records, 0);
  stack.StartArchive({"--lake=" + lake, "--batch_max_age=500ms"});
  absl::SleepFor(absl::Seconds(3));
  EXPECT_EQ(static_cast<int64_t>(ReadWhole([&] { return ReadLake(lake); }).size()), acknowledged);
}

TEST(Archive, KilledThreeTimesMidStreamLeavesEveryEventExactlyOnce) {
  Stack stack(testing::SharedPgCluster());
  const std::string lake = stack.dir() + "/lake";
  // Short batches, so that kills land between files, between files and the commit, and
  // mid-file.
  const std::vector<std::string> flags = {"--lake=" + lake, "--batch_max_age=200ms",
                                          "--batch_max_records=300"};
  stack.StartArchive(flags);
  auto sim = stack.StartSimulator({"--devices=40", "--rate=800", "--batch_size=40",
                                   "--max_records=12000", "--duration=60s", "--percent_late=5",
                                   "--late_time=75s", "--percent_clock_ahead=5"});
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> ms(1200, 3000);
  for (int kill = 0; kill < 3; ++kill) {
    absl::SleepFor(absl::Milliseconds(ms(rng)));
    stack.archive().Signal(SIGKILL);
    ASSERT_TRUE(stack.archive().Wait(absl::Seconds(10)).ok());
    stack.StartArchive(flags);
  }
  ASSERT_TRUE(sim->Wait(absl::Seconds(90)).ok());
  const nlohmann::json summary = testing::SimulatorSummary(sim->Log());
  ASSERT_FALSE(summary.is_null());
  EXPECT_EQ(summary["failed"].get<int64_t>(), 0);
  CheckLake(lake, summary["accepted"].get<int64_t>());
}

// The same against an S3-protocol server that is killed and restarted mid-stream (and the
// archive killed once after it): uploads fail, the archive pauses and retries, and nothing is
// lost or written twice.
TEST(Archive, S3LakeThroughAStoreRestartAndAKillHoldsEveryEventOnce) {
  absl::StatusOr<std::unique_ptr<testing::S3rver>> started = testing::S3rver::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  testing::S3rver& store = **started;
  const s3::S3Config bucket = store.Config("tidemark-lake");
  {
    absl::StatusOr<std::unique_ptr<s3::S3Client>> client = s3::S3Client::Create(bucket);
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->CreateBucketIfMissing().ok());
  }
  Stack stack(testing::SharedPgCluster());
  const std::vector<std::string> flags = {"--lake=s3://tidemark-lake/events",
                                          "--s3_endpoint=" + store.endpoint(),
                                          "--s3_path_style=true", "--batch_max_age=300ms"};
  const std::map<std::string, std::string> env = {
      {"AWS_ACCESS_KEY_ID", testing::S3rver::kAccessKey},
      {"AWS_SECRET_ACCESS_KEY", testing::S3rver::kSecretKey}};
  stack.StartArchive(flags, env);
  auto sim = stack.StartSimulator({"--devices=30", "--rate=600", "--batch_size=30",
                                   "--max_records=8000", "--duration=60s", "--percent_late=5",
                                   "--late_time=75s", "--percent_clock_ahead=5"});
  absl::SleepFor(absl::Seconds(5));  // joined the group and writing
  store.Stop();
  absl::SleepFor(absl::Seconds(3));
  ASSERT_TRUE(store.Restart().ok()) << store.Log();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_NE(stack.archive().Log().find("consumption paused, retrying"), std::string::npos)
      << "the archive never saw the store go away";
  stack.archive().Signal(SIGKILL);
  ASSERT_TRUE(stack.archive().Wait(absl::Seconds(10)).ok());
  stack.StartArchive(flags, env);
  ASSERT_TRUE(sim->Wait(absl::Seconds(90)).ok());
  const nlohmann::json summary = testing::SimulatorSummary(sim->Log());
  ASSERT_FALSE(summary.is_null());
  EXPECT_EQ(summary["failed"].get<int64_t>(), 0);
  CheckLake([&] { return ReadBucket(bucket, "events/"); }, summary["accepted"].get<int64_t>());
}

// Points as text rows, for comparing two stores.
std::string PointsDump(Stack& stack) {
  return stack.Sql(
      "SELECT string_agg(s.canonical_key || ' ' || p.time || ' ' ||"
      " coalesce(p.value_double::text, p.value_int::text, p.value_bool::text, p.value_string)"
      " || ' ' || p.version, E'\\n' ORDER BY s.canonical_key, p.time)"
      " FROM points p JOIN series s USING (series_id) WHERE s.device_id NOT LIKE 'marker-%'");
}

// Waits until the writer has consumed everything produced so far to every partition: a marker
// event per device id bucket, written after the replay, must be stored.
void WaitForWriter(Stack& stack, int round) {
  v1::WriteRequest req;
  for (int i = 0; i < 64; ++i) {
    v1::Event* e = req.add_events();
    e->set_device_id(absl::StrCat("marker-", round, "-", i));
    e->set_time(absl::ToUnixMillis(absl::Now()));
    (*e->mutable_measures())["m"].set_int64_value(i);
  }
  grpc::ClientContext ctx;
  v1::WriteResponse resp;
  ASSERT_TRUE(stack.ingest().Write(&ctx, req, &resp).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        return stack.Sql(absl::StrCat("SELECT count(*) FROM series WHERE device_id LIKE 'marker-",
                                      round, "-%'")) == "64";
      },
      absl::Seconds(60)));
}

int RunReplay(Stack& into, const std::string& lake, const std::string& from,
              const std::string& to) {
  auto replay = into.Start("replay", Stack::Binary("services/archive/archive"),
                           {"replay", "--lake=" + lake, "--from=" + from, "--to=" + to},
                           {{"TIDEMARK_KAFKA_BROKERS", into.brokers()}});
  absl::StatusOr<int> code = replay->Wait(absl::Seconds(120));
  EXPECT_TRUE(code.ok()) << replay->Log();
  return code.ok() ? *code : -1;
}

TEST(Archive, ReplayIntoAFreshStoreReproducesItAndTwiceChangesNothing) {
  std::string lake, original;
  absl::Time first, last;
  {
    Stack source(testing::SharedPgCluster());
    lake = source.dir() + "-lake";  // outlives the stack's directory
    source.StartArchive({"--lake=" + lake, "--batch_max_age=300ms"});
    const absl::Time start = absl::Now();
    const nlohmann::json summary = source.RunSimulator(
        {"--devices=20", "--rate=400", "--batch_size=20", "--max_records=2000", "--duration=60s",
         "--percent_late=5", "--late_time=75s", "--percent_clock_ahead=0"});
    CheckLake(lake, summary["accepted"].get<int64_t>());
    ASSERT_TRUE(WaitFor([&] { return source.CountPoints() >= summary["points_accepted"]; },
                        absl::Seconds(60)));
    original = PointsDump(source);
    first = start - absl::Minutes(5);
    last = absl::Now() + absl::Minutes(1);
  }
  Stack target(testing::SharedPgCluster(),
               {"--windows=10s", "--idle_timeout=2s", "--commit_interval=500ms"});
  target.StartAggregator(0);
  // The target's own archive must not store the replayed events a second time.
  const std::string target_lake = target.dir() + "/lake";
  target.StartArchive({"--lake=" + target_lake, "--batch_max_age=300ms"});
  const std::string from = absl::FormatTime(absl::RFC3339_sec, first, absl::UTCTimeZone());
  const std::string to = absl::FormatTime(absl::RFC3339_sec, last, absl::UTCTimeZone());
  ASSERT_EQ(RunReplay(target, lake, from, to), 0);
  WaitForWriter(target, 1);
  EXPECT_EQ(PointsDump(target), original);
  // Aggregates from the replayed stream equal a batch recomputation from the points.
  testing::OracleResult r;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = testing::AggregateOracle(target, "(interval '10 seconds')");
        return r.Matches();
      },
      absl::Seconds(90)))
      << "windows " << r.windows << ", missing " << r.missing << ", wrong " << r.wrong << ", extra "
      << r.extra;
  const std::string versions = target.Sql(
      "SELECT string_agg(series_id || ' ' || window_start || ' ' || version, ',' ORDER BY 1)"
      " FROM aggregates a JOIN series s USING (series_id) WHERE s.device_id NOT LIKE 'marker-%'");
  const std::string points_versions = PointsDump(target);

  ASSERT_EQ(RunReplay(target, lake, from, to), 0);
  WaitForWriter(target, 2);
  absl::SleepFor(absl::Seconds(3));  // windows the aggregator would re-emit
  EXPECT_EQ(PointsDump(target), points_versions);
  EXPECT_EQ(target.Sql("SELECT string_agg(series_id || ' ' || window_start || ' ' || version,"
                       " ',' ORDER BY 1) FROM aggregates a JOIN series s USING (series_id)"
                       " WHERE s.device_id NOT LIKE 'marker-%'"),
            versions);
  // Only the 128 marker events, written through ingest, reach the target's lake.
  EXPECT_TRUE(WaitFor(
      [&] {
        LakeRead found = ReadLake(target_lake);
        return found.ok() && found->size() >= 128;
      },
      absl::Seconds(30)));
  absl::SleepFor(absl::Seconds(1));
  const std::vector<LakeEvent> target_events = ReadWhole([&] { return ReadLake(target_lake); });
  EXPECT_EQ(target_events.size(), 128u);
  for (const LakeEvent& e : target_events) {
    EXPECT_TRUE(absl::StartsWith(e.line.at("device_id").get<std::string>(), "marker-"))
        << e.line.dump();
  }
  std::error_code ec;
  std::filesystem::remove_all(lake, ec);
}

}  // namespace
}  // namespace tidemark::e2e
