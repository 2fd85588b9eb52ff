// The timestream-writer against a real PostgreSQL and the development broker: the upsert
// rules, replays, rejections, and a PostgreSQL crash mid-stream.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/kafka/batch_loop.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "common/series/series_key.h"
#include "gtest/gtest.h"
#include "services/timestream-writer/aggregate_store.h"
#include "services/timestream-writer/incarnation.h"
#include "services/timestream-writer/point_store.h"
#include "services/timestream-writer/writer_service.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tools/devbroker/dev_broker.h"

namespace tidemark::writer {
namespace {

using testing::PgCluster;
using testing::WaitFor;

// One PostgreSQL cluster and one broker for the whole binary.
PgCluster* pg = nullptr;
devbroker::DevBroker* broker = nullptr;

class Environment final : public ::testing::Environment {
 public:
  void SetUp() override {
    pg = &testing::SharedPgCluster();
    auto b = devbroker::DevBroker::Start(1, {});
    ASSERT_TRUE(b.ok()) << b.status();
    broker_ = *std::move(b);
    broker = broker_.get();
  }
  void TearDown() override { broker_.reset(); }

 private:
  std::unique_ptr<devbroker::DevBroker> broker_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Environment);

std::shared_ptr<spdlog::logger> Logger() {
  static auto logger = log::MakeLogger("writer-test");
  return logger;
}

std::string NewDatabase() {
  static int n = 0;
  const std::string name =
      absl::StrCat("t_", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "_", ++n);
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(c)));
  auto dsn = pg->CreateDatabase(lower);
  EXPECT_TRUE(dsn.ok()) << dsn.status();
  return lower;
}

int64_t NowUs() { return absl::ToUnixMicros(absl::Now()); }

v1::Event MakeEvent(const std::string& device, int64_t time_us, double value,
                    std::optional<int64_t> version = std::nullopt) {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(time_us);
  e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(value);
  (*e.mutable_measures())["ok"].set_bool_value(true);
  if (version) e.set_version(*version);
  e.set_ingest_time_us(NowUs());
  return e;
}

absl::StatusOr<WriteOutcome> WriteEvents(PointStore& store, const std::vector<v1::Event>& events) {
  BatchBuilder batch(absl::Minutes(15), NowUs() - absl::ToInt64Microseconds(absl::Hours(24)));
  for (size_t i = 0; i < events.size(); ++i) batch.Add(i, events[i].SerializeAsString());
  return store.Write(batch, {});
}

std::string Query(const std::string& db, const std::string& sql) {
  auto out = pg->Psql(db, sql);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

// pg::FromSqlState takes every check violation (23514) for a missing partition, which it
// retries: the message that would tell them apart is in the server's language. That holds
// while no table the writer writes has a CHECK constraint its rows could break: only the
// one-row table's key, which is never written but as true. A partition's bounds check exists
// only inside the transaction that attaches it.
TEST(Schema, NoCheckConstraintARowCouldBreak) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  ASSERT_TRUE(WriteEvents(store, {MakeEvent("d1", NowUs(), 1.0)}).ok());
  ASSERT_TRUE(store.MaintainPartitions(absl::Hours(24 * 7)).ok());
  EXPECT_EQ(Query(db,
                  "SELECT string_agg(conrelid::regclass || '.' || conname, ',' ORDER BY 1)"
                  " FROM pg_constraint WHERE contype = 'c'"
                  " AND connamespace = 'public'::regnamespace"),
            "aggregate_changes_pruned.aggregate_changes_pruned_only_row_check");
}

TEST(PointStore, VersionRules) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const int64_t t = NowUs();
  const std::string stored =
      "SELECT p.value_double || ':' || p.version FROM points p JOIN series s USING (series_id)"
      " WHERE s.measure_name = 'temperature'";

  auto first = WriteEvents(store, {MakeEvent("d1", t, 1.0, 2)});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->upserted, 2);  // temperature and ok
  EXPECT_EQ(Query(db, stored), "1:2");

  // Higher version wins.
  auto higher = WriteEvents(store, {MakeEvent("d1", t, 5.0, 3)});
  ASSERT_TRUE(higher.ok());
  EXPECT_EQ(higher->upserted, 2);
  EXPECT_EQ(Query(db, stored), "5:3");

  // Lower version is ignored and counted.
  auto lower = WriteEvents(store, {MakeEvent("d1", t, 9.0, 1)});
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ(lower->upserted, 0);
  EXPECT_EQ(lower->stale, 2);
  EXPECT_EQ(Query(db, stored), "5:3");

  // Same version, same value: a no-op.
  const std::string ingested_before = Query(db, "SELECT max(ingested_at) FROM points");
  auto same = WriteEvents(store, {MakeEvent("d1", t, 5.0, 3)});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->upserted, 0);
  EXPECT_EQ(same->unchanged, 2);
  EXPECT_EQ(Query(db, "SELECT max(ingested_at) FROM points"), ingested_before);

  // Same version, different value: rejected with the stored version; the batch's other
  // records still land.
  auto conflict = WriteEvents(store, {MakeEvent("d1", t, 6.0, 3), MakeEvent("d2", t, 7.0, 1)});
  ASSERT_TRUE(conflict.ok());
  ASSERT_EQ(conflict->conflicts.size(), 1u);
  EXPECT_EQ(conflict->conflicts[0].measure_name, "temperature");
  EXPECT_EQ(conflict->conflicts[0].existing_version, 3);
  EXPECT_EQ(conflict->conflicts[0].reason, v1::REJECT_REASON_VERSION_CONFLICT);
  EXPECT_EQ(conflict->upserted, 2);  // d2's two points
  EXPECT_EQ(Query(db, stored + " AND s.device_id = 'd1'"), "5:3");
  EXPECT_EQ(Query(db, "SELECT count(*) FROM points"), "4");
}

// New keys are copied straight into the table; a batch that meets a stored key is rolled back
// to its savepoint and goes through the versioned upsert, with every rule still applied, and
// the next few batches take the upsert directly.
TEST(PointStore, NewKeysAreCopiedInAndStoredKeysGoThroughTheUpsert) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const int64_t t = NowUs();

  auto fresh = WriteEvents(store, {MakeEvent("d1", t, 1.0, 2), MakeEvent("d2", t, 2.0, 2)});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_TRUE(fresh->direct_copy);
  EXPECT_EQ(fresh->upserted, 4);

  // d1 at t again with its version and another value (a conflict), d1 at t - 1 s new: the
  // copy meets the stored key, and the upsert stores the new point and reports the conflict.
  // The rows this transaction wrote after the rollback must count as its own, not unchanged.
  auto mixed =
      WriteEvents(store, {MakeEvent("d1", t, 9.0, 2), MakeEvent("d1", t - 1'000'000, 3.0)});
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_FALSE(mixed->direct_copy);
  EXPECT_EQ(mixed->upserted, 2);
  EXPECT_EQ(mixed->unchanged, 1);  // d1's `ok` at t: same version and value
  ASSERT_EQ(mixed->conflicts.size(), 1u);
  EXPECT_EQ(mixed->conflicts[0].existing_version, 2);
  EXPECT_EQ(Query(db,
                  "SELECT string_agg(s.device_id || '@' || p.value_double, ',' ORDER BY"
                  " s.device_id, p.time) FROM points p JOIN series s USING (series_id)"
                  " WHERE s.measure_name = 'temperature'"),
            "d1@3,d1@1,d2@2");

  // The next batches take the upsert without trying the copy; then the copy is tried again.
  int upserted_batches = 0;
  for (int i = 1; i <= 9; ++i) {
    auto next = WriteEvents(store, {MakeEvent("d3", t + i * 1'000'000, i)});
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(next->upserted, 2);
    if (next->direct_copy) break;
    ++upserted_batches;
  }
  EXPECT_EQ(upserted_batches, 8);
  EXPECT_EQ(Query(db, "SELECT count(*) FROM points"), "24");
  // The rolled-back copy left no row behind.
  EXPECT_EQ(Query(db,
                  "SELECT count(*) FROM (SELECT series_id, time FROM points"
                  " GROUP BY 1, 2 HAVING count(*) > 1) d"),
            "0");
}

// Stores another series under the id of d1's temperature (an FNV collision); returns the id.
int64_t StoreSeriesOwningTheIdOfD1Temperature(const std::string& db) {
  const int64_t id = series::SeriesId(series::CanonicalKey("temperature", {{"device_id", "d1"}}));
  Query(db, absl::StrCat("INSERT INTO series (series_id, canonical_key, measure_name, device_id,"
                         " dimensions) VALUES (",
                         id,
                         ", 'temperature{device_id=\"owner\"}',"
                         " 'temperature', 'owner', '{}')"));
  return id;
}

TEST(PointStore, ASeriesIdStoredUnderAnotherKeyIsRefusedInEveryBatch) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const int64_t id = StoreSeriesOwningTheIdOfD1Temperature(db);
  const int64_t t = NowUs();
  for (int batch = 0; batch < 3; ++batch) {
    auto outcome = WriteEvents(store, {MakeEvent("d1", t + batch, 1.0 + batch)});
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->upserted, 1) << "only the bool series lands, batch " << batch;
  }
  EXPECT_EQ(Query(db, absl::StrCat("SELECT count(*) FROM points WHERE series_id = ", id)), "0");
}

// The memo of stored series ids is bounded (dimensions that churn make new series for ever),
// and starting it over changes nothing stored, a colliding id included.
TEST(PointStore, TheMemoOfStoredSeriesIsBounded) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48), true, /*known_series_limit=*/4);
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const int64_t id = StoreSeriesOwningTheIdOfD1Temperature(db);
  const int64_t t = NowUs();
  for (int i = 0; i < 10; ++i) {
    // Two series per device (temperature and ok), a new device each time, and d1 again.
    auto outcome = WriteEvents(
        store, {MakeEvent(absl::StrCat("churn-", i), t + i, 1.0), MakeEvent("d1", t + i, 2.0)});
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->upserted, 3) << "d1's temperature collides in every batch, batch " << i;
    EXPECT_LE(store.known_series(), 4u);
  }
  EXPECT_EQ(Query(db, "SELECT count(*) FROM points"), "30");
  EXPECT_EQ(Query(db, absl::StrCat("SELECT count(*) FROM points WHERE series_id = ", id)), "0");
}

TEST(PointStore, HostileTextIsStoredByteExact) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const std::string hostile =
      "'); DROP TABLE points; --\t\\N\\\n\"quoted\" {a=\"b\",c} \xf0\x9f\x8c\x8a \x01\x7f";
  v1::Event e = MakeEvent(hostile, NowUs(), 1.0);
  (*e.mutable_dimensions())[hostile + "k"] = hostile;
  (*e.mutable_measures())["note"].set_string_value(hostile);
  auto outcome = WriteEvents(store, {e});
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->upserted, 3);
  auto hex = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
    return out;
  };
  EXPECT_EQ(Query(db,
                  "SELECT encode(convert_to(value_string, 'UTF8'), 'hex') FROM points"
                  " WHERE value_string IS NOT NULL"),
            hex(hostile));
  EXPECT_EQ(Query(db, "SELECT DISTINCT encode(convert_to(device_id, 'UTF8'), 'hex') FROM series"),
            hex(hostile));
  EXPECT_EQ(Query(db, absl::StrCat("SELECT DISTINCT encode(convert_to(dimensions->>",
                                   "convert_from(decode('", hex(hostile + "k"),
                                   "', 'hex'), 'UTF8')", ", 'UTF8'), 'hex') FROM series")),
            hex(hostile));
}

TEST(PointStore, SchemaHasReadOnlyRoleAndPartitions) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  ASSERT_TRUE(store.MaintainPartitions(absl::Hours(24 * 7)).ok());
  EXPECT_GE(
      std::stoi(Query(db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'points'::regclass")),
      3);
  EXPECT_EQ(Query(db, "SELECT has_table_privilege('tidemark_reader', 'points', 'SELECT')"), "t");
  EXPECT_EQ(Query(db, "SELECT has_table_privilege('tidemark_reader', 'points', 'INSERT')"), "f");
  // Old partitions go with the retention policy.
  Query(db,
        "SELECT tidemark_ensure_daily_partitions('points', current_date - 30, current_date - 29)");
  auto dropped = store.MaintainPartitions(absl::Hours(24 * 7));
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 2);
}

// A BatchLoop over `sink`, consuming `topic` as a member of `group`, on its own thread until
// destroyed.
class RunningLoop {
 public:
  RunningLoop(kafka::BatchSink& sink, const std::string& topic, const std::string& group,
              kafka::BatchLoopConfig config,
              std::map<std::string, std::string> consumer_properties = {})
      : metrics_(registry_, "tidemark_writer", "raw") {
    auto producer = kafka::Producer::Create({.brokers = broker->bootstrap_servers()}, Logger());
    EXPECT_TRUE(producer.ok());
    producer_ = *std::move(producer);
    loop_ = std::make_unique<kafka::BatchLoop>(config, sink, *producer_, metrics_, Logger());
    auto consumer = kafka::Consumer::Create({.brokers = broker->bootstrap_servers(),
                                             .group_id = group,
                                             .topics = {topic},
                                             .properties = std::move(consumer_properties)},
                                            Logger(), loop_.get());
    EXPECT_TRUE(consumer.ok());
    consumer_ = *std::move(consumer);
    thread_ = std::thread([this] { result_ = loop_->Run(*consumer_, stop_); });
  }
  ~RunningLoop() {
    stop_ = true;
    thread_.join();
    EXPECT_TRUE(result_.ok()) << result_;
  }
  kafka::BatchLoopMetrics& metrics() { return metrics_; }

 private:
  metrics::Registry registry_;
  kafka::BatchLoopMetrics metrics_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::BatchLoop> loop_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::atomic<bool> stop_{false};
  absl::Status result_;
  std::thread thread_;
};

// The writer's raw loop (RawPointSink over a PointStore) on its own thread until destroyed.
class RunningWriter {
 public:
  static PointStore& Opened(PointStore& store) {
    EXPECT_TRUE(store.Open(*Logger()).ok());
    return store;
  }
  RunningWriter(const std::string& dsn, const std::string& topic, const std::string& group,
                const std::string& rejected_topic = "rejected")
      : store_(dsn, absl::Hours(48)),
        sink_(Opened(store_), absl::Minutes(15), absl::Hours(24 * 7), registry_),
        loop_(sink_, topic, group,
              {.rejected_topic = rejected_topic,
               .batch_max_records = 500,
               .batch_max_age = absl::Milliseconds(50),
               .retry_max_backoff = absl::Milliseconds(500),
               .overlap_store = true}) {}
  kafka::BatchLoopMetrics& metrics() { return loop_.metrics(); }
  const RawPointSink& sink() const { return sink_; }

 private:
  metrics::Registry registry_;
  PointStore store_;
  RawPointSink sink_;
  RunningLoop loop_;  // last: stopped before the sink and the store go
};

void Produce(const std::string& topic, const std::vector<v1::Event>& events) {
  auto producer = kafka::Producer::Create({.brokers = broker->bootstrap_servers()}, Logger());
  ASSERT_TRUE(producer.ok());
  for (const v1::Event& e : events) {
    ASSERT_TRUE((*producer)->Produce(topic, e.device_id(), e.SerializeAsString(), nullptr).ok());
  }
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
}

std::vector<v1::Event> Events(int count, int devices, int64_t base_us) {
  std::vector<v1::Event> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(MakeEvent(absl::StrCat("dev-", i % devices), base_us + i * 1000, i * 0.5));
  }
  return out;
}

/// Produces `per_batch` events every 100 ms to `topic` on a thread of its own, event n of
/// device dev-(n % devices) with value n, until stopped or `max_batches` are out, so that a
/// fault happens while records still arrive however long a consumer group takes to form.
class SteadyProducer {
 public:
  SteadyProducer(std::string topic, int per_batch, int max_batches, int devices, int64_t base_us)
      : thread_([=, this] {
          for (int b = 0; b < max_batches && !stop_.load(); ++b) {
            std::vector<v1::Event> events;
            for (int i = 0; i < per_batch; ++i) {
              const int n = b * per_batch + i;
              events.push_back(MakeEvent(absl::StrCat("dev-", n % devices), base_us + n * 1000, n));
            }
            Produce(topic, events);
            produced_ += per_batch;
            absl::SleepFor(absl::Milliseconds(100));
          }
        }) {}
  ~SteadyProducer() { Stop(); }
  /// Stops producing; returns how many events were produced (values 0 .. n-1).
  int Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return produced_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> produced_{0};
  std::thread thread_;
};

constexpr const char* kFingerprint =
    "SELECT count(*) || ':' || md5(string_agg(series_id || '/' || time || '/' ||"
    " coalesce(value_double::text, value_bool::text) || '/' || version || '/' || ingested_at,"
    " ',' ORDER BY series_id, time)) FROM points";

TEST(WriterLoop, ReplayingTheSameRecordsLeavesTheStoreUnchanged) {
  const std::string db = NewDatabase();
  ASSERT_TRUE(broker->CreateTopic("raw_replay", 4).ok());
  Produce("raw_replay", Events(2000, 20, NowUs() - 600'000'000));
  std::string before;
  {
    RunningWriter writer(pg->Dsn(db), "raw_replay", "group-a");
    ASSERT_TRUE(WaitFor([&] { return Query(db, "SELECT count(*) FROM points") == "4000"; },
                        absl::Seconds(60)));
    before = Query(db, kFingerprint);
  }
  {
    // A new group reads the topic again from the start.
    RunningWriter writer(pg->Dsn(db), "raw_replay", "group-b");
    ASSERT_TRUE(
        WaitFor([&] { return writer.metrics().records.Value() == 2000; }, absl::Seconds(60)));
    EXPECT_EQ(writer.sink().unchanged(), 4000u);
    EXPECT_EQ(writer.sink().upserted(), 0u);
  }
  EXPECT_EQ(Query(db, kFingerprint), before);
}

// The records of `topic` (tidemark.rejected's format), waiting up to 30 s for `count` of them,
// in offset order of its one partition.
std::vector<v1::RejectedEvent> ReadRejected(const std::string& topic, size_t count) {
  auto consumer = kafka::Consumer::Create(
      {.brokers = broker->bootstrap_servers(), .group_id = "reader", .topics = {topic}}, Logger(),
      nullptr);
  EXPECT_TRUE(consumer.ok());
  std::vector<v1::RejectedEvent> rejected;
  if (!consumer.ok()) return rejected;
  WaitFor(
      [&] {
        auto msgs = (*consumer)->Poll(10, absl::Milliseconds(200));
        if (msgs.ok()) {
          for (auto& m : *msgs) {
            v1::RejectedEvent r;
            r.ParseFromArray(m.value().data(), static_cast<int>(m.value().size()));
            rejected.push_back(r);
          }
        }
        return rejected.size() >= count;
      },
      absl::Seconds(30));
  return rejected;
}

TEST(WriterLoop, RejectionsArePublishedAndTheRestLands) {
  const std::string db = NewDatabase();
  ASSERT_TRUE(broker->CreateTopic("raw_reject", 1).ok());
  ASSERT_TRUE(broker->CreateTopic("rejected_reject", 1).ok());
  const int64_t t = NowUs();
  Produce("raw_reject",
          {MakeEvent("d1", t, 1.0, 7), MakeEvent("d1", t, 2.0, 7), MakeEvent("d2", t, 3.0, 7)});
  {
    RunningWriter writer(pg->Dsn(db), "raw_reject", "group", "rejected_reject");
    ASSERT_TRUE(WaitFor([&] { return writer.metrics().records.Value() == 3; }, absl::Seconds(30)));
  }
  EXPECT_EQ(Query(db, "SELECT count(*) FROM points"), "4");
  EXPECT_EQ(Query(db,
                  "SELECT p.value_double FROM points p JOIN series s USING (series_id)"
                  " WHERE s.device_id = 'd1' AND s.measure_name = 'temperature'"),
            "1");

  std::vector<v1::RejectedEvent> rejected = ReadRejected("rejected_reject", 1);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reason(), v1::REJECT_REASON_VERSION_CONFLICT);
  EXPECT_EQ(rejected[0].measure_name(), "temperature");
  EXPECT_EQ(rejected[0].existing_version(), 7);
  EXPECT_EQ(rejected[0].offset(), 1);
  v1::Event original;
  ASSERT_TRUE(original.ParseFromString(rejected[0].original()));
  EXPECT_EQ(original.measures().at("temperature").double_value(), 2.0);
}

// Partitions move between two writers while batches are in flight (each stored on its own
// thread while the next is decoded): a second writer joins mid-stream, then the first leaves.
TEST(WriterLoop, RebalancesMidStreamLoseNothing) {
  const std::string db = NewDatabase();
  ASSERT_TRUE(broker->CreateTopic("raw_rebalance", 4).ok());
  constexpr int kPerBatch = 50;
  auto first = std::make_unique<RunningWriter>(pg->Dsn(db), "raw_rebalance", "group-rebalance");
  std::unique_ptr<RunningWriter> second;
  // 500 events/s for at most 4 minutes: within what the development broker keeps.
  SteadyProducer producer("raw_rebalance", kPerBatch, 2400, 40, NowUs() - 1'800'000'000);
  // The development broker takes about 9 s per rebalance round and a join needs two or three.
  ASSERT_TRUE(WaitFor([&] { return first->metrics().records.Value() > 0; }, absl::Seconds(90)));
  second = std::make_unique<RunningWriter>(pg->Dsn(db), "raw_rebalance", "group-rebalance");
  ASSERT_TRUE(WaitFor([&] { return second->metrics().records.Value() > 0; }, absl::Seconds(90)))
      << "the second writer got no partition";
  first.reset();  // its partitions go to the second writer
  const uint64_t before = second->metrics().records.Value();
  ASSERT_TRUE(WaitFor([&] { return second->metrics().records.Value() > before + 4 * kPerBatch; },
                      absl::Seconds(90)));
  const int n = producer.Stop();
  EXPECT_TRUE(
      WaitFor([&] { return Query(db, "SELECT count(*) FROM points") == absl::StrCat(2 * n); },
              absl::Seconds(60)))
      << Query(db, "SELECT count(*) FROM points") << " points of " << 2 * n;
  second.reset();
  EXPECT_EQ(
      Query(db, "SELECT sum(value_double)::bigint FROM points WHERE value_double IS NOT NULL"),
      absl::StrCat(static_cast<int64_t>(n) * (n - 1) / 2));
}

TEST(WriterLoop, PostgresStoppedMidStreamLosesNothing) {
  const std::string db = NewDatabase();
  ASSERT_TRUE(broker->CreateTopic("raw_crash", 4).ok());
  int n = 0;
  {
    RunningWriter writer(pg->Dsn(db), "raw_crash", "group");
    SteadyProducer producer("raw_crash", 250, 400, 25, NowUs() - 1'800'000'000);
    EXPECT_TRUE(WaitFor([&] { return writer.metrics().records.Value() > 0; }, absl::Seconds(30)));
    EXPECT_TRUE(pg->StopImmediate().ok());
    absl::SleepFor(absl::Seconds(2));
    EXPECT_TRUE(pg->StartAgain().ok());
    const uint64_t after_outage = writer.metrics().records.Value();
    EXPECT_TRUE(WaitFor([&] { return writer.metrics().records.Value() > after_outage; },
                        absl::Seconds(30)));
    n = producer.Stop();
    EXPECT_TRUE(
        WaitFor([&] { return Query(db, "SELECT count(*) FROM points") == absl::StrCat(2 * n); },
                absl::Seconds(90)))
        << Query(db, "SELECT count(*) FROM points") << " points of " << 2 * n;
    EXPECT_GT(writer.metrics().store_retries.Value(), 0u) << "the outage was not noticed";
  }
  EXPECT_EQ(Query(db, "SELECT count(DISTINCT series_id) FROM points"), "50");
  EXPECT_EQ(
      Query(db, "SELECT sum(value_double)::bigint FROM points WHERE value_double IS NOT NULL"),
      absl::StrCat(static_cast<int64_t>(n) * (n - 1) / 2));
}

// A sink that builds each batch as its records are polled (BatchSink::StartBatch) and checks,
// when it is asked to store a batch, that what it was handed was made from exactly that batch's
// records, in their order, whether by its builder or by Prepare. Its first stores fail, so
// that records go back to the loop; each stored event's value is kept.
class CheckingBuilderSink final : public kafka::BatchSink {
 public:
  explicit CheckingBuilderSink(int failing_stores) : failing_stores_(failing_stores) {}

  std::unique_ptr<kafka::BatchBuilder> StartBatch() override { return std::make_unique<Builder>(); }
  std::unique_ptr<kafka::PreparedBatch> Prepare(
      const std::vector<const kafka::Message*>& records) override {
    Builder whole;
    for (const kafka::Message* m : records) whole.Add(*m);
    auto built = whole.Finish();
    static_cast<Built&>(*built).by_builder = false;
    return built;
  }
  absl::StatusOr<std::vector<kafka::RecordRejection>> WritePrepared(
      const std::vector<const kafka::Message*>& records,
      std::unique_ptr<kafka::PreparedBatch> prepared) override {
    const Built& built = static_cast<const Built&>(*prepared);
    if (built.records != Positions(records)) mismatches_++;
    (built.by_builder ? built_batches_ : prepared_batches_)++;
    return Store(records);
  }
  absl::StatusOr<std::vector<kafka::RecordRejection>> Write(
      const std::vector<const kafka::Message*>& records) override {
    return Store(records);
  }
  // Called while nothing is being stored.
  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& p : partitions) owned_.insert(p.partition.partition);
  }
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& p : partitions) owned_.erase(p.partition);
  }

  int mismatches() const { return mismatches_; }
  // Records stored while their partition was not this sink's.
  int foreign_records() const { return foreign_records_; }
  int built_batches() const { return built_batches_; }
  int prepared_batches() const { return prepared_batches_; }
  std::set<int64_t> values() const {
    std::lock_guard<std::mutex> lock(mu_);
    return values_;
  }

 private:
  using Positions_t = std::vector<std::pair<int32_t, int64_t>>;
  struct Built final : kafka::PreparedBatch {
    Positions_t records;
    bool by_builder = true;
  };
  class Builder final : public kafka::BatchBuilder {
   public:
    void Add(const kafka::Message& m) override {
      built_->records.emplace_back(m.partition(), m.offset());
    }
    std::unique_ptr<kafka::PreparedBatch> Finish() override { return std::move(built_); }

   private:
    std::unique_ptr<Built> built_ = std::make_unique<Built>();
  };

  static Positions_t Positions(const std::vector<const kafka::Message*>& records) {
    Positions_t out;
    for (const kafka::Message* m : records) out.emplace_back(m->partition(), m->offset());
    return out;
  }
  absl::StatusOr<std::vector<kafka::RecordRejection>> Store(
      const std::vector<const kafka::Message*>& records) {
    if (failing_stores_.fetch_sub(1) > 0) return absl::UnavailableError("store down (test)");
    std::lock_guard<std::mutex> lock(mu_);
    for (const kafka::Message* m : records) {
      if (!owned_.contains(m->partition())) foreign_records_++;
      v1::Event e;
      EXPECT_TRUE(e.ParseFromArray(m->value().data(), static_cast<int>(m->value().size())));
      values_.insert(static_cast<int64_t>(e.measures().at("temperature").double_value()));
    }
    return std::vector<kafka::RecordRejection>{};
  }

  std::atomic<int> failing_stores_;
  std::atomic<int> mismatches_{0}, built_batches_{0}, prepared_batches_{0}, foreign_records_{0};
  mutable std::mutex mu_;
  std::set<int64_t> values_;
  std::set<int32_t> owned_;
};

// Batches held long enough that a rebalance finds records (already built) pending.
const kafka::BatchLoopConfig kBuilderLoop = {.batch_max_records = 2000,
                                             .batch_max_age = absl::Seconds(1),
                                             .retry_initial_backoff = absl::Milliseconds(20),
                                             .retry_max_backoff = absl::Milliseconds(100),
                                             .overlap_store = true};

// A sink's builder gets each batch's records as they are polled; when the batch's records
// change otherwise (stores that fail put records back, a rebalance takes some away) the loop
// prepares it whole instead. Either way the sink stores a batch with what was made of exactly
// its records, every record is stored, and none while its partition is another loop's.
TEST(BatchLoop, BuiltBatchesAreExactlyTheBatchesStored) {
  ASSERT_TRUE(broker->CreateTopic("raw_builder", 4).ok());
  CheckingBuilderSink first_sink(/*failing_stores=*/3), second_sink(/*failing_stores=*/0);
  auto first =
      std::make_unique<RunningLoop>(first_sink, "raw_builder", "group-builder", kBuilderLoop);
  std::unique_ptr<RunningLoop> second;
  // 500 events/s for at most 4 minutes: within what the development broker keeps.
  SteadyProducer producer("raw_builder", 50, 2400, 40, NowUs() - 1'800'000'000);
  ASSERT_TRUE(WaitFor([&] { return first->metrics().records.Value() > 0; }, absl::Seconds(90)));
  second = std::make_unique<RunningLoop>(second_sink, "raw_builder", "group-builder", kBuilderLoop);
  ASSERT_TRUE(WaitFor([&] { return second->metrics().records.Value() > 0; }, absl::Seconds(90)))
      << "the second loop got no partition";
  const uint64_t first_retries = first->metrics().store_retries.Value();
  first.reset();  // its partitions go to the second loop
  const uint64_t before = second->metrics().records.Value();
  ASSERT_TRUE(
      WaitFor([&] { return second->metrics().records.Value() > before + 200; }, absl::Seconds(90)));
  const int n = producer.Stop();
  auto all_stored = [&] {
    std::set<int64_t> stored = first_sink.values();
    for (int64_t v : second_sink.values()) stored.insert(v);
    return static_cast<int>(stored.size()) == n && *stored.begin() == 0 &&
           *stored.rbegin() == n - 1;
  };
  EXPECT_TRUE(WaitFor(all_stored, absl::Seconds(60)));
  second.reset();
  EXPECT_EQ(first_sink.mismatches() + second_sink.mismatches(), 0);
  EXPECT_EQ(first_sink.foreign_records() + second_sink.foreign_records(), 0);
  EXPECT_GT(first_sink.built_batches() + second_sink.built_batches(), 0);
  EXPECT_GT(first_retries, 0u) << "no store failed";
}

// A sink one of whose stores takes 15 s, longer than the consumer's max.poll.interval.ms: the
// first, or, with `fail_first`, the retry of a first store that failed.
class SlowStoreSink final : public kafka::BatchSink {
 public:
  explicit SlowStoreSink(bool fail_first) : fail_first_(fail_first) {}
  absl::StatusOr<std::vector<kafka::RecordRejection>> Write(
      const std::vector<const kafka::Message*>& records) override {
    const int store = stores_++;
    if (fail_first_ && store == 0) return absl::UnavailableError("store down");
    if (store == (fail_first_ ? 1 : 0)) absl::SleepFor(absl::Seconds(15));
    std::lock_guard<std::mutex> lock(mu_);
    for (const kafka::Message* m : records) stored_.push_back({m->partition(), m->offset()});
    return std::vector<kafka::RecordRejection>{};
  }
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override {
    revoked_ += static_cast<int>(partitions.size());
  }
  std::vector<std::pair<int32_t, int64_t>> stored() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stored_;
  }
  int revoked() const { return revoked_; }

 private:
  const bool fail_first_;
  std::atomic<int> stores_{0};
  std::atomic<int> revoked_{0};
  mutable std::mutex mu_;
  std::vector<std::pair<int32_t, int64_t>> stored_;
};

// A store that outlasts max.poll.interval.ms (10 s here, the least librdkafka allows beside a
// 10 s session; 5 minutes by default) does not cost the loop its group membership: it polls
// the paused consumer while it waits, so its partitions stay with it and nothing is stored
// twice. Without that the group takes the partitions away mid-store and the batch is redone.
void ExpectASlowStoreKeepsItsPartitions(const std::string& topic, bool overlap_store,
                                        bool fail_first) {
  ASSERT_TRUE(broker->CreateTopic(topic, 2).ok());
  Produce(topic, Events(300, 30, NowUs()));
  SlowStoreSink sink(fail_first);
  RunningLoop loop(sink, topic, topic + "-group",
                   {.batch_max_records = 100,
                    .batch_max_age = absl::Milliseconds(50),
                    .retry_initial_backoff = absl::Milliseconds(20),
                    .overlap_store = overlap_store},
                   {{"max.poll.interval.ms", "10000"}});
  ASSERT_TRUE(WaitFor([&] { return sink.stored().size() >= 300; }, absl::Seconds(60)));
  absl::SleepFor(absl::Seconds(2));  // a batch redone would show up now
  EXPECT_EQ(sink.revoked(), 0) << "the group took the partitions away during the store";
  const std::vector<std::pair<int32_t, int64_t>> stored = sink.stored();
  const std::set<std::pair<int32_t, int64_t>> distinct(stored.begin(), stored.end());
  EXPECT_EQ(stored.size(), 300u);
  EXPECT_EQ(distinct.size(), 300u);
}

// As the writer's raw loop and the archive store: on a thread of their own, overlapped with
// polling the next batch.
TEST(BatchLoop, AnOverlappedStoreLongerThanThePollIntervalKeepsItsPartitions) {
  ExpectASlowStoreKeepsItsPartitions("slow_overlapped_store", /*overlap_store=*/true,
                                     /*fail_first=*/false);
}

// As the writer's aggregates and late loops store: one batch at a time.
TEST(BatchLoop, ASynchronousStoreLongerThanThePollIntervalKeepsItsPartitions) {
  ExpectASlowStoreKeepsItsPartitions("slow_synchronous_store", /*overlap_store=*/false,
                                     /*fail_first=*/false);
}

// An overlapped store that fails is retried on the synchronous path; a slow retry keeps the
// partitions too.
TEST(BatchLoop, ASlowRetryOfAFailedStoreKeepsItsPartitions) {
  ExpectASlowStoreKeepsItsPartitions("slow_retried_store", /*overlap_store=*/true,
                                     /*fail_first=*/true);
}

// A request's records are queued partition by partition, in the order the configured
// partitioner will place them, so that librdkafka sends fuller batches.
TEST(Producer, ProduceOrderGroupsRecordsByTheirPartition) {
  ASSERT_TRUE(broker->CreateTopic("ordered", 12).ok());
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back(absl::StrCat("device-", (i * 37) % 100));
  keys.push_back("");  // no key: librdkafka picks a random partition
  auto key = [&](size_t i) -> absl::string_view { return keys[i]; };
  auto is_permutation = [&](const std::vector<uint32_t>& order) {
    std::vector<uint32_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i] != i) return false;
    }
    return sorted.size() == keys.size();
  };
  for (const auto& [partitioner, hash] :
       std::vector<std::pair<std::string, decltype(&rd_kafka_msg_partitioner_consistent)>>{
           {"consistent_random", &rd_kafka_msg_partitioner_consistent},
           {"murmur2_random", &rd_kafka_msg_partitioner_murmur2}}) {
    SCOPED_TRACE(partitioner);
    auto producer = kafka::Producer::Create(
        {.brokers = broker->bootstrap_servers(), .properties = {{"partitioner", partitioner}}},
        Logger());
    ASSERT_TRUE(producer.ok()) << producer.status();
    // Arrival order until the partition count is known.
    std::vector<uint32_t> order = (*producer)->ProduceOrder("ordered", keys.size(), key);
    ASSERT_TRUE(is_permutation(order));
    ASSERT_TRUE(WaitFor(
        [&] {
          order = (*producer)->ProduceOrder("ordered", keys.size(), key);
          return !std::is_sorted(order.begin(), order.end());
        },
        absl::Seconds(10)));
    ASSERT_TRUE(is_permutation(order));
    EXPECT_EQ(order.back(), keys.size() - 1) << "the record without a key goes last";
    order.pop_back();
    std::map<std::string, uint32_t> last_of_key;
    int32_t last_partition = -1;
    for (uint32_t i : order) {
      const int32_t p = hash(nullptr, keys[i].data(), keys[i].size(), 12, nullptr, nullptr);
      EXPECT_GE(p, last_partition) << "record " << i << " out of partition order";
      last_partition = p;
      auto [it, first] = last_of_key.try_emplace(keys[i], i);
      EXPECT_TRUE(first || it->second < i) << "records of " << keys[i] << " reordered";
      it->second = i;
    }
    EXPECT_EQ(last_partition, 11);
  }
  // Under the random partitioner, keys do not decide: arrival order.
  auto random = kafka::Producer::Create(
      {.brokers = broker->bootstrap_servers(), .properties = {{"partitioner", "random"}}},
      Logger());
  ASSERT_TRUE(random.ok());
  (void)(*random)->ProduceOrder("ordered", keys.size(), key);
  absl::SleepFor(absl::Milliseconds(500));
  const std::vector<uint32_t> order = (*random)->ProduceOrder("ordered", keys.size(), key);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

TEST(Producer, AFatalErrorStopsTheProcessWithANonZeroCode) {
  auto producer = kafka::Producer::Create({.brokers = broker->bootstrap_servers()}, Logger());
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->Produce("fatal", "k", "before", nullptr).ok());
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  EXPECT_TRUE((*producer)->Health().ok());
  (*producer)->InjectFatalErrorForTesting();
  ASSERT_TRUE(WaitFor([&] { return (*producer)->Fatal(); }, absl::Seconds(10)));
  EXPECT_FALSE((*producer)->Produce("fatal", "k", "after", nullptr).ok());
  EXPECT_EQ((*producer)->Health().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(process::ShutdownSignal::ExitCode(), kafka::kFatalExitCode)
      << "the service's main returns this code after its shutdown";
}

// The development broker keeps 5 MiB per partition and drops older batches silently. A
// consumer whose committed offset was dropped must stop with DATA_LOSS, never skip ahead.
TEST(Consumer, CommittedOffsetDroppedByTheBrokerIsDataLoss) {
  ASSERT_TRUE(broker->CreateTopic("vanishing", 1).ok());
  auto producer = kafka::Producer::Create(
      {.brokers = broker->bootstrap_servers(), .compression = "none"}, Logger());
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->Produce("vanishing", "k", "first", nullptr).ok());
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  {
    auto consumer = kafka::Consumer::Create(
        {.brokers = broker->bootstrap_servers(), .group_id = "slow-group", .topics = {"vanishing"}},
        Logger(), nullptr);
    ASSERT_TRUE(consumer.ok());
    std::vector<kafka::Message> got;
    ASSERT_TRUE(WaitFor(
        [&] {
          auto m = (*consumer)->Poll(10, absl::Milliseconds(200));
          if (m.ok())
            got.insert(got.end(), std::make_move_iterator(m->begin()),
                       std::make_move_iterator(m->end()));
          return !got.empty();
        },
        absl::Seconds(30)));
    ASSERT_TRUE(
        (*consumer)->Commit(std::map<kafka::TopicPartition, int64_t>{{{"vanishing", 0}, 1}}).ok());
  }
  // Over 5 MiB of incompressible data after the committed offset.
  std::mt19937_64 rng(1);
  std::string blob(600 * 1024, '\0');
  for (int i = 0; i < 12; ++i) {
    for (char& c : blob) c = static_cast<char>(rng());
    ASSERT_TRUE((*producer)->Produce("vanishing", "k", blob, nullptr).ok());
    ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  }
  auto consumer = kafka::Consumer::Create(
      {.brokers = broker->bootstrap_servers(), .group_id = "slow-group", .topics = {"vanishing"}},
      Logger(), nullptr);
  ASSERT_TRUE(consumer.ok());
  absl::Status status;
  WaitFor(
      [&] {
        auto m = (*consumer)->Poll(10, absl::Milliseconds(200));
        status = m.status();
        return !m.ok();
      },
      absl::Seconds(30));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_NE(status.message().find("never processed"), absl::string_view::npos) << status;
}

// A group that starts a partition without a commit learns where the broker's records begin
// (the archive checks its uncommitted files against it): 0 for an untrimmed partition, the
// first retained offset for one the broker trimmed, and -1 (not asked) with a commit.
class AssignedRecorder final : public kafka::PartitionListener {
 public:
  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override {
    for (const auto& p : partitions) assigned[p.partition] = p;
  }
  void OnRevoked(const std::vector<kafka::TopicPartition>&) override {}
  std::map<kafka::TopicPartition, kafka::AssignedPartition> assigned;
};

TEST(Consumer, StartWithoutACommitReportsTheEarliestOffset) {
  // One topic keeps everything; the other gets over 5 MiB, so its first records go.
  const std::string whole_topic = "earliest_whole";
  const std::string trimmed_topic = "earliest_trimmed";
  ASSERT_TRUE(broker->CreateTopic(whole_topic, 1).ok());
  ASSERT_TRUE(broker->CreateTopic(trimmed_topic, 1).ok());
  auto producer = kafka::Producer::Create(
      {.brokers = broker->bootstrap_servers(), .compression = "none"}, Logger());
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->Produce(whole_topic, "k", "one", nullptr).ok());
  std::mt19937_64 rng(2);
  std::string blob(600 * 1024, '\0');
  for (int i = 0; i < 12; ++i) {
    for (char& c : blob) c = static_cast<char>(rng());
    ASSERT_TRUE((*producer)->Produce(trimmed_topic, "k", blob, nullptr).ok());
    ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  }
  const kafka::TopicPartition whole_tp{whole_topic, 0};
  const kafka::TopicPartition trimmed_tp{trimmed_topic, 0};
  const std::string group = "earliest-group";

  AssignedRecorder fresh;
  std::map<kafka::TopicPartition, int64_t> first;
  {
    auto consumer = kafka::Consumer::Create({.brokers = broker->bootstrap_servers(),
                                             .group_id = group,
                                             .topics = {whole_topic, trimmed_topic}},
                                            Logger(), &fresh);
    ASSERT_TRUE(consumer.ok());
    ASSERT_TRUE(WaitFor(
        [&] {
          auto m = (*consumer)->Poll(4, absl::Milliseconds(200));
          if (m.ok()) {
            for (const kafka::Message& r : *m) {
              first.emplace(kafka::TopicPartition{std::string(r.topic()), r.partition()},
                            r.offset());
            }
          }
          return first.size() == 2;
        },
        absl::Seconds(30)));
    std::map<kafka::TopicPartition, int64_t> next;
    for (const auto& [tp, offset] : first) next[tp] = offset + 1;
    ASSERT_TRUE((*consumer)->Commit(next).ok());
  }
  ASSERT_EQ(fresh.assigned.size(), 2u);
  EXPECT_EQ(fresh.assigned.at(trimmed_tp).committed_offset, -1);
  EXPECT_GT(fresh.assigned.at(trimmed_tp).earliest_offset, 0)
      << "the broker dropped the partition's first records";
  EXPECT_EQ(fresh.assigned.at(trimmed_tp).earliest_offset, first.at(trimmed_tp))
      << "consumption starts there";
  EXPECT_EQ(fresh.assigned.at(whole_tp).committed_offset, -1);
  EXPECT_EQ(fresh.assigned.at(whole_tp).earliest_offset, 0);
  EXPECT_EQ(first.at(whole_tp), 0);

  // The same group again: it committed, so the earliest offset is not asked for.
  AssignedRecorder resumed;
  auto consumer = kafka::Consumer::Create({.brokers = broker->bootstrap_servers(),
                                           .group_id = group,
                                           .topics = {whole_topic, trimmed_topic}},
                                          Logger(), &resumed);
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->Poll(4, absl::Milliseconds(100));
        return resumed.assigned.size() == 2;
      },
      absl::Seconds(30)));
  for (const auto& [tp, a] : resumed.assigned) {
    EXPECT_EQ(a.committed_offset, first.at(tp) + 1) << tp.topic;
    EXPECT_EQ(a.earliest_offset, -1) << tp.topic;
  }
}

// Records the broker drops between the earliest-offset lookup of a partition without a commit
// and its first fetch were there when the group started it and were never processed: the
// consumer stops with DATA_LOSS (the archive decided what to resume from that offset), never
// starts silently past them. The listener drops them while the partition is assigned, paused.
class TrimmingOnAssign final : public kafka::PartitionListener {
 public:
  explicit TrimmingOnAssign(kafka::Producer& producer) : producer_(producer) {}
  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override {
    for (const kafka::AssignedPartition& p : partitions) {
      earliest = p.earliest_offset;
      // Over 5 MiB of incompressible data: the development broker drops the first records.
      std::mt19937_64 rng(3);
      std::string blob(600 * 1024, '\0');
      for (int i = 0; i < 12; ++i) {
        for (char& c : blob) c = static_cast<char>(rng());
        trimmed = trimmed && producer_.Produce(p.partition.topic, "k", blob, nullptr).ok() &&
                  producer_.Flush(absl::Seconds(10)).ok();
      }
    }
  }
  void OnRevoked(const std::vector<kafka::TopicPartition>&) override {}
  int64_t earliest = -2;
  bool trimmed = true;

 private:
  kafka::Producer& producer_;
};

TEST(Consumer, RecordsDroppedAfterTheEarliestOffsetWasReadAreDataLoss) {
  const std::string topic = "trimmed_at_assignment";
  ASSERT_TRUE(broker->CreateTopic(topic, 1).ok());
  auto producer = kafka::Producer::Create(
      {.brokers = broker->bootstrap_servers(), .compression = "none"}, Logger());
  ASSERT_TRUE(producer.ok());
  ASSERT_TRUE((*producer)->Produce(topic, "k", "first", nullptr).ok());
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  TrimmingOnAssign listener(**producer);
  auto consumer = kafka::Consumer::Create(
      {.brokers = broker->bootstrap_servers(), .group_id = topic, .topics = {topic}}, Logger(),
      &listener);
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE((*consumer)->PauseAll().ok());  // partitions assigned from now on stay paused
  ASSERT_TRUE(WaitFor(
      [&] {
        (void)(*consumer)->Poll(1, absl::Milliseconds(100));
        return listener.earliest != -2;
      },
      absl::Seconds(30)));
  ASSERT_EQ(listener.earliest, 0);
  ASSERT_TRUE(listener.trimmed);
  ASSERT_TRUE((*consumer)->ResumeAll().ok());
  absl::Status status;
  std::vector<int64_t> offsets;
  WaitFor(
      [&] {
        auto m = (*consumer)->Poll(10, absl::Milliseconds(200));
        status = m.status();
        if (m.ok()) {
          for (const kafka::Message& r : *m) offsets.push_back(r.offset());
        }
        return !m.ok();
      },
      absl::Seconds(20));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_TRUE(offsets.empty()) << "consumed from offset " << offsets.front()
                               << ", past records dropped after the lookup";
}

// A partition whose leader is down when the group assigns it: the assignment still finishes
// within its lookup timeouts, that partition's earliest offset unknown and the other's known
// (librdkafka's watermark query would wait, inside the rebalance callback, until the leader
// came back), and the partition is consumed once its leader is back.
TEST(Consumer, AssignmentFinishesWhileAPartitionLeaderIsDown) {
  auto started = devbroker::DevBroker::Start(2, {});
  ASSERT_TRUE(started.ok()) << started.status();
  devbroker::DevBroker& cluster = **started;
  const std::string topic = "leader_down_at_assignment";
  const std::string group = "leader-down-at-assignment";
  ASSERT_TRUE(cluster.CreateTopic(topic, 2).ok());
  ASSERT_TRUE(cluster.SetLeader(topic, 0, 1).ok());
  ASSERT_TRUE(cluster.SetLeader(topic, 1, 2).ok());
  ASSERT_TRUE(cluster.SetGroupCoordinator(group, 1).ok());
  {
    auto producer = kafka::Producer::Create({.brokers = cluster.bootstrap_servers()}, Logger());
    ASSERT_TRUE(producer.ok());
    for (int i = 0; i < 20; ++i) {
      // Keys "k0".."k19" land on both partitions.
      ASSERT_TRUE((*producer)->Produce(topic, absl::StrCat("k", i), "v", nullptr).ok());
    }
    ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  }
  ASSERT_TRUE(cluster.SetBrokerUp(2, false).ok());

  AssignedRecorder recorder;
  auto consumer = kafka::Consumer::Create(
      {.brokers = cluster.bootstrap_servers(), .group_id = group, .topics = {topic}}, Logger(),
      &recorder);
  ASSERT_TRUE(consumer.ok());
  std::map<int32_t, int> consumed;
  auto poll = [&] {
    absl::StatusOr<std::vector<kafka::Message>> got =
        (*consumer)->Poll(100, absl::Milliseconds(100));
    ASSERT_TRUE(got.ok()) << got.status();
    for (const kafka::Message& m : *got) ++consumed[m.partition()];
  };
  ASSERT_TRUE(WaitFor(
      [&] {
        poll();
        return recorder.assigned.size() == 2;
      },
      absl::Seconds(40)))
      << "the assignment did not finish while a leader was down";
  // Only the partition whose leader is down is unknown.
  EXPECT_EQ(recorder.assigned.at({topic, 0}).earliest_offset, 0);
  EXPECT_EQ(recorder.assigned.at({topic, 1}).earliest_offset, -1);

  ASSERT_TRUE(cluster.SetBrokerUp(2, true).ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        poll();
        return consumed[0] + consumed[1] == 20;
      },
      absl::Seconds(40)))
      << consumed[0] << " + " << consumed[1] << " of 20 records consumed";
  EXPECT_GT(consumed[1], 0);
}

// What a consumer took of a partition it then lost is the next owner's. librdkafka serves a
// rebalance inside its poll, after records Poll() has already taken in the same call: Poll()
// must not return those.
class AssignmentTracker final : public kafka::PartitionListener {
 public:
  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override {
    for (const auto& p : partitions) assigned.insert(p.partition);
  }
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override {
    for (const auto& p : partitions) assigned.erase(p);
  }
  std::set<kafka::TopicPartition> assigned;
};

TEST(Consumer, PollReturnsNoRecordOfAPartitionRevokedWhileItCollected) {
  const std::string topic = "revoked_mid_poll";
  ASSERT_TRUE(broker->CreateTopic(topic, 4).ok());
  std::vector<v1::Event> events = Events(4000, 40, NowUs());
  Produce(topic, events);
  AssignmentTracker tracker;
  auto consumer = kafka::Consumer::Create(
      {.brokers = broker->bootstrap_servers(), .group_id = "revoked-mid-poll", .topics = {topic}},
      Logger(), &tracker);
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto got = (*consumer)->Poll(1, absl::Milliseconds(200));
        return got.ok() && !got->empty();
      },
      absl::Seconds(30)));
  ASSERT_EQ(tracker.assigned.size(), 4u);
  // Every partition is taken away in the middle of a Poll, after it took records: at its tenth
  // call to librdkafka's poll (each call before it returned a record). A Poll that finds the
  // queue empty sooner ends before that; the next one tries again.
  std::vector<kafka::TopicPartition> lost;
  for (int32_t p = 0; p < 4; ++p) lost.push_back({topic, p});
  int calls = 0;
  bool revoked = false;
  (*consumer)->SetPollHookForTesting([&] {
    if (++calls == 10 && !revoked) {
      (*consumer)->RevokeForTesting(lost);
      revoked = true;
    }
  });
  absl::StatusOr<std::vector<kafka::Message>> got;
  for (int attempt = 0; attempt < 100 && !revoked; ++attempt) {
    calls = 0;
    got = (*consumer)->Poll(1'000'000, absl::Seconds(1));
    ASSERT_TRUE(got.ok()) << got.status();
  }
  (*consumer)->SetPollHookForTesting(nullptr);
  ASSERT_TRUE(revoked) << "no Poll took ten records";
  EXPECT_TRUE(tracker.assigned.empty());
  EXPECT_EQ(got->size(), 0u) << "records of partitions revoked during the Poll that returned them";
}

// A revision of series 42's 10-second window at `start`, of one point of `value`.
std::vector<SourcedAggregate> WindowOfOnePoint(int64_t start, int64_t version, double value) {
  SourcedAggregate s;
  v1::WindowAggregate& a = s.aggregate;
  a.mutable_series()->set_series_id(42);
  a.mutable_series()->set_canonical_key("m{device_id=\"d\"}");
  a.set_window_size_us(10'000'000);
  a.set_window_start_us(start);
  a.set_count(1);
  for (auto set : {&v1::WindowAggregate::set_sum, &v1::WindowAggregate::set_min,
                   &v1::WindowAggregate::set_max, &v1::WindowAggregate::set_avg,
                   &v1::WindowAggregate::set_first, &v1::WindowAggregate::set_last}) {
    (a.*set)(value);
  }
  a.set_version(version);
  return {s};
}

// A request to repair that window, for a late point at `raw_offset` of `raw_topic`/0.
SourcedLatePoint RepairOfTheWindow(int64_t start, const std::string& raw_topic, int64_t raw_offset,
                                   int64_t repair_version) {
  SourcedLatePoint late;
  late.late.mutable_series()->set_series_id(42);
  late.late.set_raw_topic(raw_topic);
  late.late.set_raw_partition(0);
  late.late.set_raw_offset(raw_offset);
  late.late.set_repair_version(repair_version);
  v1::WindowRef* w = late.late.add_windows();
  w->set_window_size_us(10'000'000);
  w->set_window_start_us(start);
  return late;
}

TEST(AggregateStore, VersionsAndRepairsSurviveKafkaLosingItsHistory) {
  const std::string db = NewDatabase();
  PointStore points(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(points.Open(*Logger()).ok());
  const int64_t start = (NowUs() / 10'000'000) * 10'000'000;
  auto aggregate = [&](int64_t version, double sum) {
    return WindowOfOnePoint(start, version, sum);
  };
  // Before: the store holds raw records up to offset 500 and a revision at version 1000.
  Query(db, "INSERT INTO raw_progress (topic, partition, next_offset) VALUES ('inc_raw', 0, 500)");
  {
    AggregateStore before(pg->Dsn(db), absl::Hours(48), absl::Hours(1));
    ASSERT_EQ(before.Write(aggregate(1000, 1.0))->upserted, 1);
  }
  // Kafka restarted empty: the topic holds 3 records and the group committed nothing.
  ASSERT_TRUE(broker->CreateTopic("inc_raw", 1).ok());
  Produce("inc_raw",
          {MakeEvent("d", NowUs(), 1), MakeEvent("d", NowUs(), 2), MakeEvent("d", NowUs(), 3)});
  ASSERT_TRUE(CheckKafkaIncarnation(broker->bootstrap_servers(), "inc-group", "inc_raw",
                                    pg->Dsn(db), *Logger())
                  .ok());
  EXPECT_EQ(Query(db, "SELECT epoch FROM stream_incarnation"), "1");
  EXPECT_EQ(Query(db, "SELECT count(*) FROM raw_progress"), "0");

  AggregateStore after(pg->Dsn(db), absl::Hours(48), absl::Hours(1));
  // A revision of the new incarnation (offset-derived version 10) is not stale.
  auto stored = after.Write(aggregate(10, 2.0));
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->upserted, 1);
  EXPECT_EQ(Query(db, "SELECT sum || ':' || version FROM aggregates"),
            absl::StrCat("2:", (int64_t{1} << kIncarnationShift) + 10));
  // A repair of a point at new offset 2 waits for the raw loop instead of trusting offset 500.
  EXPECT_EQ(after.Repair({RepairOfTheWindow(start, "inc_raw", 2, 5)}).status().code(),
            absl::StatusCode::kUnavailable);
  // Checking again changes nothing: the store no longer holds offsets Kafka lacks.
  ASSERT_TRUE(CheckKafkaIncarnation(broker->bootstrap_servers(), "inc-group", "inc_raw",
                                    pg->Dsn(db), *Logger())
                  .ok());
  EXPECT_EQ(Query(db, "SELECT epoch FROM stream_incarnation"), "1");
}

// Inside one batch as against the store: the same window and version again is a replay when
// the values agree and a conflict when they do not (the later record refused, the earlier one
// stored); a lower version is stale.
TEST(AggregateStore, TheSameVersionTwiceInABatchIsAReplayOrAConflict) {
  const std::string db = NewDatabase();
  PointStore points(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(points.Open(*Logger()).ok());
  const int64_t start = (NowUs() / 10'000'000) * 10'000'000;
  std::vector<SourcedAggregate> batch = WindowOfOnePoint(start, 7, 1.0);
  for (const auto& [version, value] : {std::pair{7, 1.0}, {7, 2.0}, {6, 3.0}}) {
    SourcedAggregate s = WindowOfOnePoint(start, version, value)[0];
    s.source = batch.size();
    batch.push_back(s);
  }
  AggregateStore store(pg->Dsn(db), absl::Hours(48), absl::Hours(1));
  auto stored = store.Write(batch);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->upserted, 1);
  EXPECT_EQ(stored->stale, 1);  // version 6; the replay of version 7 is not counted
  ASSERT_EQ(stored->conflicts.size(), 1u);
  EXPECT_EQ(stored->conflicts[0].source, 2u);
  EXPECT_EQ(stored->conflicts[0].reason, v1::REJECT_REASON_VERSION_CONFLICT);
  EXPECT_EQ(stored->conflicts[0].existing_version, 7);
  EXPECT_EQ(Query(db, "SELECT sum || ':' || version FROM aggregates"), "1:7");
}

// The aggregates loop refuses, each with its reason, the records no window of a series can be,
// among them a window not aligned to its size (which Rollup relies on), and stores the rest.
TEST(AggregateSink, RecordsNoWindowCanBeArePublishedAndTheRestLands) {
  const std::string db = NewDatabase();
  PointStore points(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(points.Open(*Logger()).ok());
  ASSERT_TRUE(broker->CreateTopic("agg_reject", 1).ok());
  ASSERT_TRUE(broker->CreateTopic("rejected_agg", 1).ok());
  const int64_t start = (NowUs() / 10'000'000) * 10'000'000;
  const std::string key = "m{device_id=\"d\"}";
  auto window = [&](int64_t at, double value) {
    v1::WindowAggregate a = WindowOfOnePoint(at, 1, value)[0].aggregate;
    a.mutable_series()->set_series_id(series::SeriesId(key));
    a.mutable_series()->set_canonical_key(key);
    a.mutable_series()->set_measure_name("m");
    return a;
  };
  std::vector<v1::WindowAggregate> records = {window(start, 1), window(start + 5'000'000, 2),
                                              window(start + 10'000'000, 3), window(start, 4),
                                              window(start + 20'000'000, 5)};
  records[1].set_window_size_us(0);
  records[1].set_window_start_us(start + 10'000'000);
  records[3].set_window_start_us(start + 1);
  records[4].set_sum(std::nan(""));
  {
    auto producer = kafka::Producer::Create({.brokers = broker->bootstrap_servers()}, Logger());
    ASSERT_TRUE(producer.ok());
    for (const v1::WindowAggregate& a : records) {
      ASSERT_TRUE((*producer)->Produce("agg_reject", key, a.SerializeAsString(), nullptr).ok());
    }
    ASSERT_TRUE((*producer)->Flush(absl::Seconds(10)).ok());
  }
  {
    metrics::Registry registry;
    AggregateStore store(pg->Dsn(db), absl::Hours(48), absl::Hours(1));
    AggregateSink sink(store, registry);
    RunningLoop loop(sink, "agg_reject", "group", {.rejected_topic = "rejected_agg"});
    ASSERT_TRUE(WaitFor([&] { return loop.metrics().records.Value() == 5; }, absl::Seconds(30)));
  }
  EXPECT_EQ(Query(db, "SELECT string_agg(sum::text, ',' ORDER BY window_start) FROM aggregates"),
            "1,3");
  std::vector<v1::RejectedEvent> rejected = ReadRejected("rejected_agg", 3);
  ASSERT_EQ(rejected.size(), 3u);
  std::vector<std::pair<int64_t, v1::RejectReason>> got;
  for (const v1::RejectedEvent& r : rejected) got.emplace_back(r.offset(), r.reason());
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, v1::RejectReason>>{
                     {1, v1::REJECT_REASON_INVALID_AGGREGATE},
                     {3, v1::REJECT_REASON_INVALID_AGGREGATE},
                     {4, v1::REJECT_REASON_NON_FINITE_NUMBER}}));
  EXPECT_NE(rejected[1].message().find("not a multiple of window_size_us 10000000"),
            std::string::npos)
      << rejected[1].message();
  EXPECT_EQ(rejected[1].measure_name(), "m");
}

// A repair outranks every revision emitted before the late point it repairs, even when it finds
// the stored values right: a revision still on its way (the aggregates loop behind the late
// one) must not overwrite it afterwards.
TEST(AggregateStore, ARepairThatFindsTheValuesRightStillOutranksOlderRevisions) {
  const std::string db = NewDatabase();
  PointStore points(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(points.Open(*Logger()).ok());
  const int64_t start = (NowUs() / 10'000'000) * 10'000'000;
  auto aggregate = [&](int64_t version, double value) {
    return WindowOfOnePoint(start, version, value);
  };
  AggregateStore store(pg->Dsn(db), absl::Hours(48), absl::Hours(1));
  // Revision 40 holds the point's first value (1.0). Later the point became 2.0 (revision 60,
  // not stored yet) and then 1.0 again, beyond lateness: the repair (version 101) recomputes
  // 1.0 from the raw point.
  ASSERT_EQ(store.Write(aggregate(40, 1.0))->upserted, 1);
  // The point store makes the day's partition with another device's point.
  ASSERT_TRUE(WriteEvents(points, {MakeEvent("other", start + 1'000'000, 0.0)}).ok());
  Query(db, absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                         " VALUES (42, 'epoch'::timestamptz + interval '1 microsecond' * ",
                         start + 1'000'000, ", 1.0, 300, now())"));
  Query(db, "INSERT INTO raw_progress (topic, partition, next_offset) VALUES ('rep_raw', 0, 100)");
  auto repaired = store.Repair({RepairOfTheWindow(start, "rep_raw", 50, 101)});
  ASSERT_TRUE(repaired.ok()) << repaired.status();
  // Revision 60 arrives after the repair: older, so it changes nothing.
  ASSERT_TRUE(store.Write(aggregate(60, 2.0)).ok());
  EXPECT_EQ(Query(db, "SELECT sum || ':' || (version & ((1::bigint << 48) - 1)) FROM aggregates"),
            "1:101");
}

TEST(PointStore, AFarFutureRecordCreatesOnePartitionNotOnePerDayUpToIt) {
  const std::string db = NewDatabase();
  PointStore store(pg->Dsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  const std::string count = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'points'::regclass";
  ASSERT_TRUE(WriteEvents(store, {MakeEvent("d1", NowUs(), 1.0)}).ok());
  const int before = std::stoi(Query(db, count));
  // Written straight to Kafka with a forged ingest stamp a year ahead, so not clock-corrected.
  v1::Event far = MakeEvent("d1", NowUs() + 365LL * 86'400'000'000, 2.0);
  far.set_ingest_time_us(far.time());
  auto outcome = WriteEvents(store, {MakeEvent("d2", NowUs(), 1.0), far});
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_LE(std::stoi(Query(db, count)), before + 1);
}

}  // namespace
}  // namespace tidemark::writer
