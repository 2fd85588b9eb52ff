#include "services/aggregator/window_engine.h"

#include <functional>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/series/event_points.h"
#include "common/time/time_units.h"
#include "gtest/gtest.h"
#include "services/timestream-writer/writer_core.h"

namespace tidemark::aggregator {
namespace {

constexpr int64_t kS = 1'000'000;                // one second in µs
constexpr int64_t kBase = 1'800'000'000LL * kS;  // window-aligned for 10 s and 60 s sizes

WindowConfig TestConfig() {
  WindowConfig c;
  c.sizes = {absl::Seconds(10)};
  c.out_of_orderness = absl::Seconds(2);
  c.allowed_lateness = absl::Seconds(30);
  c.idle_timeout = absl::Seconds(5);
  return c;
}

v1::Event At(int64_t time_us, double value, const std::string& device = "d1",
             std::optional<int64_t> version = std::nullopt, int64_t ingest_us = -1) {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(time_us);
  e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e.mutable_measures())["m"].set_double_value(value);
  if (version) e.set_version(*version);
  e.set_ingest_time_us(ingest_us >= 0 ? ingest_us : time_us + kS);
  return e;
}

class Driver {
 public:
  explicit Driver(WindowConfig config = TestConfig(), Checkpoint restored = {})
      : windows_(config, "raw", 0, restored), offset_(restored.offset) {}
  EngineOutput Send(const v1::Event& e) {
    EngineOutput out;
    windows_.Process(offset_++, e, e.ingest_time_us(), out);
    return out;
  }
  PartitionWindows& windows() { return windows_; }
  int64_t next_offset() const { return offset_; }

 private:
  PartitionWindows windows_;
  int64_t offset_;
};

TEST(WindowEngine, OnTimeWindowEmitsWhenTheWatermarkPassesItsEnd) {
  Driver d;
  EXPECT_TRUE(d.Send(At(kBase + 1 * kS, 1.0)).emissions.empty());
  EXPECT_TRUE(d.Send(At(kBase + 4 * kS, 3.0)).emissions.empty());
  // Watermark 11 s - 2 s = 9 s: not yet past the end (10 s).
  EXPECT_TRUE(d.Send(At(kBase + 11 * kS, 5.0)).emissions.empty());
  EngineOutput out = d.Send(At(kBase + 12 * kS, 7.0));  // offset 3, watermark 10 s
  ASSERT_EQ(out.emissions.size(), 1u);
  const Emission& a = out.emissions[0];
  EXPECT_EQ(a.window_start_us(), kBase);
  EXPECT_EQ(a.window_size_us(), 10 * kS);
  EXPECT_EQ(a.count(), 2);
  EXPECT_DOUBLE_EQ(a.sum(), 4.0);
  EXPECT_DOUBLE_EQ(a.min(), 1.0);
  EXPECT_DOUBLE_EQ(a.max(), 3.0);
  EXPECT_DOUBLE_EQ(a.avg(), 2.0);
  EXPECT_DOUBLE_EQ(a.first(), 1.0);
  EXPECT_DOUBLE_EQ(a.last(), 3.0);
  EXPECT_EQ(a.version(), 2 * 3);
  EXPECT_EQ(a.series().dimensions().at("device_id"), "d1");
}

TEST(WindowEngine, LateWithinLatenessReEmitsWithAHigherVersion) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));
  ASSERT_EQ(d.Send(At(kBase + 12 * kS, 0)).emissions.size(), 1u);  // closes [0,10)
  EngineOutput out = d.Send(At(kBase + 5 * kS, 9.0));              // offset 2: late, in lateness
  ASSERT_EQ(out.emissions.size(), 1u);
  EXPECT_EQ(out.emissions[0].count(), 2);
  EXPECT_DOUBLE_EQ(out.emissions[0].last(), 9.0);
  EXPECT_EQ(out.emissions[0].version(), 4);
  EXPECT_TRUE(out.late.empty());
  EXPECT_EQ(d.windows().counters().late_within_lateness, 1);
  EXPECT_EQ(d.windows().counters().re_emitted, 1);
  // A duplicate changes nothing and emits nothing.
  EXPECT_TRUE(d.Send(At(kBase + 5 * kS, 9.0)).emissions.empty());
}

TEST(WindowEngine, BeyondLatenessGoesToTheLateTopicForRepair) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));
  d.Send(At(kBase + 45 * kS, 2.0));                    // watermark 43 s >= 10 + 30: [0,10) evicted
  EngineOutput out = d.Send(At(kBase + 3 * kS, 5.0));  // offset 2
  EXPECT_TRUE(out.emissions.empty());
  ASSERT_EQ(out.late.size(), 1u);
  const v1::LatePoint& late = out.late[0];
  EXPECT_EQ(late.raw_offset(), 2);
  EXPECT_EQ(late.repair_version(), 5);
  EXPECT_EQ(late.time_us(), kBase + 3 * kS);
  ASSERT_EQ(late.windows_size(), 1);
  EXPECT_EQ(late.windows(0).window_start_us(), kBase);
  EXPECT_EQ(late.windows(0).window_size_us(), 10 * kS);
  EXPECT_EQ(d.windows().counters().beyond_lateness, 1);
}

// Whatever the engine emits is what the writer stores: every aggregate and every late point
// passes the writer's checks (writer::CheckAggregate, CheckLatePoint), for several sizes,
// double and int64 values, on time and beyond the lateness, after and before 1970.
TEST(WindowEngine, EveryOutputPassesTheWritersChecks) {
  WindowConfig config = TestConfig();
  config.sizes = {absl::Minutes(1), absl::Minutes(5), absl::Hours(1)};
  for (const int64_t first : {kBase, -3 * 3600 * kS - 7 * kS}) {
    Driver d(config);
    int emitted = 0, late = 0;
    auto check = [&](const EngineOutput& out) {
      for (const Emission& e : out.emissions) {
        ++emitted;
        const std::optional<series::Problem> p = writer::CheckAggregate(e.ToProto());
        EXPECT_FALSE(p.has_value()) << p->message;
      }
      for (const v1::LatePoint& l : out.late) {
        ++late;
        const std::optional<series::Problem> p = writer::CheckLatePoint(l);
        EXPECT_FALSE(p.has_value()) << p->message;
      }
    };
    for (int i = 0; i < 600; ++i) {
      // Every tenth point 200 s late, beyond the 30 s lateness once its windows closed.
      const int64_t t = first + i * 7 * kS - (i % 10 == 9 ? 200 * kS : 0);
      // Ingest stamps its wall clock, 2027 here, whatever the event's time.
      v1::Event e = At(t, i * 0.25, absl::StrCat("d", i % 3), std::nullopt, kBase + i * 7 * kS);
      (*e.mutable_measures())["n"].set_int64_value(int64_t{1'000'003} * i - 250'000'000);
      check(d.Send(e));
    }
    EngineOutput out;
    d.windows().AdvanceIfIdle(kBase + 600 * 7 * kS + 3600 * kS, out);
    check(out);
    EXPECT_GT(emitted, 100) << first;
    EXPECT_GT(late, 10) << first;
  }
}

TEST(WindowEngine, IdlePartitionAdvancesWithTheWallClock) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));
  EngineOutput out;
  d.windows().AdvanceIfIdle(kBase + 4 * kS, out);  // 3 s after the record: not idle yet
  EXPECT_TRUE(out.emissions.empty());
  d.windows().AdvanceIfIdle(kBase + 13 * kS, out);  // idle; watermark 11 s
  ASSERT_EQ(out.emissions.size(), 1u);
  EXPECT_EQ(out.emissions[0].count(), 1);
  EXPECT_EQ(out.emissions[0].version(), 0) << "state after the last record, offset 0";
}

TEST(WindowEngine, FutureDatedPointIsCorrectedAndDoesNotMoveTheWatermark) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));
  // A clock 30 minutes ahead: stored and windowed at its ingest time (2 s).
  const v1::Event ahead = At(kBase + 1800 * kS, 8.0, "d2", std::nullopt, kBase + 2 * kS);
  EXPECT_TRUE(d.Send(ahead).emissions.empty());
  EXPECT_EQ(d.windows().counters().clock_corrected, 1);
  EXPECT_EQ(d.windows().watermark_us(), kBase - 1 * kS) << "still 1 s - 2 s";
  EngineOutput out = d.Send(At(kBase + 12 * kS, 0));
  ASSERT_EQ(out.emissions.size(), 2u);  // d1's and d2's [0,10)
  for (const auto& a : out.emissions) EXPECT_EQ(a.count(), 1);
}

TEST(WindowEngine, SeveralSizesAndBoundaries) {
  WindowConfig c = TestConfig();
  c.sizes = {absl::Seconds(10), absl::Seconds(60)};
  Driver d(c);
  d.Send(At(kBase + 9 * kS, 1.0));
  d.Send(At(kBase + 10 * kS, 2.0));                     // exactly at a boundary: belongs to [10,20)
  EngineOutput out = d.Send(At(kBase + 22 * kS, 3.0));  // watermark 20 s
  ASSERT_EQ(out.emissions.size(), 2u);
  EXPECT_EQ(out.emissions[0].window_start_us() + out.emissions[1].window_start_us(),
            2 * kBase + 10 * kS);
  for (const auto& a : out.emissions) {
    EXPECT_EQ(a.count(), 1);
    EXPECT_EQ(a.window_size_us(), 10 * kS);
  }
  out = d.Send(At(kBase + 63 * kS, 4.0));  // watermark 61 s: [0,60) and [20,30).. close
  int64_t minute_count = -1;
  for (const auto& a : out.emissions) {
    if (a.window_size_us() == 60 * kS) minute_count = a.count();
  }
  EXPECT_EQ(minute_count, 3);
}

TEST(WindowEngine, VersionRulesInsideAWindow) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0, "d1", 5));
  d.Send(At(kBase + 1 * kS, 2.0, "d1", 4));  // lower version: ignored
  d.Send(At(kBase + 1 * kS, 3.0, "d1", 5));  // same version, other value: first stays
  d.Send(At(kBase + 2 * kS, 4.0, "d1", 1));
  d.Send(At(kBase + 2 * kS, 6.0, "d1", 2));  // higher version replaces
  EngineOutput out = d.Send(At(kBase + 20 * kS, 0));
  ASSERT_EQ(out.emissions.size(), 1u);
  EXPECT_EQ(out.emissions[0].count(), 2);
  EXPECT_DOUBLE_EQ(out.emissions[0].sum(), 7.0);
}

TEST(WindowEngine, NonNumericMeasuresAreNotAggregated) {
  Driver d;
  v1::Event e = At(kBase + 1 * kS, 1.0);
  (*e.mutable_measures())["state"].set_string_value("running");
  (*e.mutable_measures())["ok"].set_bool_value(true);
  d.Send(e);
  EXPECT_EQ(d.windows().counters().non_numeric, 2);
  EXPECT_EQ(d.Send(At(kBase + 20 * kS, 0)).emissions.size(), 1u);
}

TEST(WindowEngine, CheckpointNeedsTheOldestLiveWindow) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));   // offset 0: window [0,10)
  d.Send(At(kBase + 15 * kS, 1.0));  // offset 1: closes [0,10) (kept for lateness)
  Checkpoint c = d.windows().CurrentCheckpoint();
  EXPECT_EQ(c.offset, 0);
  EXPECT_EQ(c.watermark_us, kBase + 13 * kS);
  d.Send(At(kBase + 55 * kS, 1.0));  // offset 2: watermark 53 s evicts [0,10) and [10,20)
  EXPECT_EQ(d.windows().CurrentCheckpoint().offset, 2);
  absl::StatusOr<Checkpoint> back = Checkpoint::Decode(7, c.Encode());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->offset, 7);
  EXPECT_EQ(back->watermark_us, c.watermark_us);
  EXPECT_EQ(back->max_event_us, c.max_event_us);
  EXPECT_FALSE(Checkpoint::Decode(0, "garbage").ok());
  // Sizes, and the bound of an added size's incomplete windows, survive their metadata.
  c.sizes = {{10 * kS, INT64_MIN}, {60 * kS, kBase + 30 * kS}};
  back = Checkpoint::Decode(7, c.Encode());
  ASSERT_TRUE(back.ok()) << c.Encode();
  EXPECT_EQ(back->sizes, c.sizes);
  EXPECT_TRUE(back->after_records);
  // A checkpoint of the version before sizes were recorded: every size counts as new.
  back = Checkpoint::Decode(7, "v1 5 6");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->sizes.empty());
  EXPECT_TRUE(back->after_records);
  EXPECT_FALSE(Checkpoint::Decode(0, "v2 5 6 10@x").ok());
  // The lateness it was taken with survives too; a v2 checkpoint did not record it.
  c.lateness_us = 30 * kS;
  back = Checkpoint::Decode(7, c.Encode());
  ASSERT_TRUE(back.ok()) << c.Encode();
  EXPECT_EQ(back->lateness_us, 30 * kS);
  EXPECT_EQ(back->sizes, c.sizes);
  back = Checkpoint::Decode(7, "v2 5 6 10");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->lateness_us, -1);
  EXPECT_EQ(back->replay_end, -1);
  EXPECT_FALSE(Checkpoint::Decode(0, "v3 5 6 10 -4 7").ok());
  // And how far it had processed, which a restart replays as progress.
  c.replay_end = 42;
  back = Checkpoint::Decode(7, c.Encode());
  ASSERT_TRUE(back.ok()) << c.Encode();
  EXPECT_EQ(back->replay_end, 42);
  EXPECT_EQ(d.windows().CurrentCheckpoint().lateness_us, 30 * kS);
  EXPECT_EQ(d.windows().CurrentCheckpoint().replay_end, d.next_offset());
}

// Offsets moved by hand (the runbook's --reset-offsets past a gap) carry no metadata: windows
// that straddle the new offset hold points no replay reaches, so they are repaired from the
// stored points rather than emitted from the records after it.
TEST(WindowEngine, AnOffsetSetByHandRepairsRatherThanEmits) {
  const absl::StatusOr<Checkpoint> reset = Checkpoint::Decode(500, "");
  ASSERT_TRUE(reset.ok());
  EXPECT_TRUE(reset->after_records);
  Driver d(TestConfig(), *reset);
  d.Send(At(kBase + 1 * kS, 1.0));
  const EngineOutput out = d.Send(At(kBase + 12 * kS, 7.0));  // closes [0,10)
  EXPECT_TRUE(out.emissions.empty());
  ASSERT_EQ(out.late.size(), 1u);
  ASSERT_EQ(out.late[0].windows_size(), 1);
  EXPECT_EQ(out.late[0].windows(0).window_start_us(), kBase);
  // A group that never committed starts at the beginning: nothing before it to miss.
  const absl::StatusOr<Checkpoint> fresh = Checkpoint::Decode(0, "");
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->after_records);
}

// ---- Property: random streams against a batch computation over the stored points. ----

struct StoreModel {
  // Raw points by the writer's rules; aggregates by the versioned upsert.
  std::map<std::pair<int64_t, int64_t>, WindowPoint> raw;  // (series, time)
  struct Stored {
    v1::WindowAggregate agg;
  };
  std::map<std::tuple<int64_t, int64_t, int64_t>, v1::WindowAggregate> aggregates;

  void StoreRaw(const v1::Event& e, absl::Duration lead) {
    absl::StatusOr<std::vector<series::MappedPoint>> points = series::EventToPoints(e, lead);
    ASSERT_TRUE(points.ok());
    for (const series::MappedPoint& p : *points) {
      ApplyPointRaw({p.series_id, p.time_us}, {p.value.double_value(), p.version});
    }
  }
  void ApplyPointRaw(std::pair<int64_t, int64_t> key, WindowPoint p) {
    auto [it, inserted] = raw.try_emplace(key, p);
    if (!inserted && p.version > it->second.version) it->second = p;
  }
  void Upsert(const v1::WindowAggregate& a) {
    EXPECT_FALSE(writer::CheckAggregate(a).has_value()) << writer::CheckAggregate(a)->message;
    auto key = std::make_tuple(a.series().series_id(), a.window_size_us(), a.window_start_us());
    auto [it, inserted] = aggregates.try_emplace(key, a);
    if (!inserted && a.version() > it->second.version()) it->second = a;
  }
  WindowPoints Window(int64_t series_id, int64_t size, int64_t start) const {
    WindowPoints points;
    for (auto it = raw.lower_bound({series_id, start});
         it != raw.end() && it->first.first == series_id && it->first.second < start + size; ++it) {
      ApplyPoint(points, it->first.second, it->second);
    }
    return points;
  }
  // What the writer's repair does: recompute from the stored points.
  void Repair(const v1::LatePoint& late) {
    EXPECT_FALSE(writer::CheckLatePoint(late).has_value()) << writer::CheckLatePoint(late)->message;
    for (const v1::WindowRef& w : late.windows()) {
      WindowPoints points =
          Window(late.series().series_id(), w.window_size_us(), w.window_start_us());
      if (points.empty()) continue;
      const AggregateValues a = Aggregate(points);
      v1::WindowAggregate agg;
      *agg.mutable_series() = late.series();
      agg.set_window_size_us(w.window_size_us());
      agg.set_window_start_us(w.window_start_us());
      agg.set_count(a.count);
      agg.set_sum(a.sum);
      agg.set_min(a.min);
      agg.set_max(a.max);
      agg.set_first(a.first);
      agg.set_last(a.last);
      agg.set_version(late.repair_version());
      Upsert(agg);
    }
  }
};

std::vector<v1::Event> RandomStream(std::mt19937_64& rng, int n) {
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<v1::Event> events;
  int64_t now = kBase;
  for (int i = 0; i < n; ++i) {
    now += static_cast<int64_t>(u(rng) * 2 * kS);
    const std::string device = "d" + std::to_string(static_cast<int>(u(rng) * 3));
    const double r = u(rng);
    int64_t t = now - static_cast<int64_t>(u(rng) * 3 * kS);  // small disorder
    if (r < 0.15) {
      // Late by 5 s to 250 s: within allowed lateness, just beyond it, and far beyond.
      t = now - static_cast<int64_t>((5 + u(rng) * 245) * kS);
    } else if (r < 0.18) {
      t = now + 1800 * kS;  // a clock far ahead
    }
    std::optional<int64_t> version;
    if (u(rng) < 0.3) version = static_cast<int64_t>(u(rng) * 4);
    const double value = std::floor(u(rng) * 100) / 4;
    v1::Event e = At(t, value, device, version, now);
    events.push_back(e);
    if (u(rng) < 0.08) events.push_back(e);  // duplicate delivery
    if (u(rng) < 0.04) {                     // the same instant again, other value
      v1::Event again = e;
      (*again.mutable_measures())["m"].set_double_value(value + 1);
      events.push_back(again);
    }
  }
  return events;
}

// Every stored aggregate equals the batch over its window's stored points.
void ExpectStoredAggregatesMatchBatch(const StoreModel& store) {
  for (const auto& [key, got] : store.aggregates) {
    const auto& [series, size, start] = key;
    const AggregateValues want = Aggregate(store.Window(series, size, start));
    EXPECT_EQ(got.count(), want.count) << "window " << size << " " << start;
    EXPECT_DOUBLE_EQ(got.sum(), want.sum) << "window " << size << " " << start;
    EXPECT_DOUBLE_EQ(got.min(), want.min);
    EXPECT_DOUBLE_EQ(got.max(), want.max);
    EXPECT_DOUBLE_EQ(got.first(), want.first);
    EXPECT_DOUBLE_EQ(got.last(), want.last);
  }
}

void ExpectStoreMatchesBatch(const StoreModel& store, const WindowConfig& config) {
  // Every window that has stored points has an aggregate equal to the batch over them.
  std::set<std::tuple<int64_t, int64_t, int64_t>> windows;
  for (const auto& [key, p] : store.raw) {
    for (absl::Duration d : config.sizes) {
      const int64_t size = absl::ToInt64Microseconds(d);
      const int64_t start = key.second - ((key.second % size) + size) % size;
      windows.insert({key.first, size, start});
    }
  }
  ASSERT_FALSE(windows.empty());
  for (const auto& [series, size, start] : windows) {
    auto it = store.aggregates.find({series, size, start});
    ASSERT_NE(it, store.aggregates.end()) << "missing window " << series << " " << start;
    const AggregateValues want = Aggregate(store.Window(series, size, start));
    const v1::WindowAggregate& got = it->second;
    EXPECT_EQ(got.count(), want.count) << "window " << start;
    EXPECT_DOUBLE_EQ(got.sum(), want.sum);
    EXPECT_DOUBLE_EQ(got.min(), want.min);
    EXPECT_DOUBLE_EQ(got.max(), want.max);
    EXPECT_DOUBLE_EQ(got.first(), want.first);
    EXPECT_DOUBLE_EQ(got.last(), want.last);
  }
  EXPECT_EQ(store.aggregates.size(), windows.size()) << "no aggregate without points";
}

// Drives the engine over a stream like the pipeline does: the writer stores each raw record,
// the engine's outputs are upserted, repairs run as soon as the store holds their record.
// With `restarts`, the engine is dropped at random moments and rebuilt from its last
// checkpoint, replaying from the checkpoint's offset.
// With `sizes_after_restart`, every restart runs with those sizes instead (a size added);
// with `lateness_after_restart`, with that allowed lateness.
StoreModel RunProperty(uint64_t seed, int restarts, std::vector<absl::Duration> sizes,
                       absl::Duration out_of_orderness = absl::Seconds(2),
                       std::vector<absl::Duration> sizes_after_restart = {},
                       std::optional<absl::Duration> lateness_after_restart = std::nullopt) {
  std::mt19937_64 rng(seed);
  WindowConfig config = TestConfig();
  config.sizes = std::move(sizes);
  config.out_of_orderness = out_of_orderness;
  const bool resize = !sizes_after_restart.empty();
  const std::vector<v1::Event> events = RandomStream(rng, 600);
  StoreModel store;
  Checkpoint committed;
  auto engine = std::make_unique<PartitionWindows>(config, "raw", 0, committed);
  int64_t stored_through = -1;
  std::uniform_real_distribution<double> u(0, 1);
  int64_t offset = 0;
  while (offset < static_cast<int64_t>(events.size())) {
    const v1::Event& e = events[offset];
    if (offset > stored_through) {
      store.StoreRaw(e, config.future_clock_lead);
      stored_through = offset;
    }
    EngineOutput out;
    engine->Process(offset, e, e.ingest_time_us(), out);
    for (const auto& a : out.emissions) store.Upsert(a.ToProto());
    for (const auto& l : out.late) store.Repair(l);
    ++offset;
    if (u(rng) < 0.3) {  // everything output is acked; the checkpoint goes through Kafka
      const Checkpoint c = engine->CurrentCheckpoint();
      committed = *Checkpoint::Decode(c.offset, c.Encode());
    }
    if (restarts > 0 && u(rng) < 0.02) {
      --restarts;
      if (resize) config.sizes = sizes_after_restart;
      if (lateness_after_restart) config.allowed_lateness = *lateness_after_restart;
      // The wall clock at the restart: after every record processed so far arrived.
      engine = std::make_unique<PartitionWindows>(config, "raw", 0, committed,
                                                  events[offset - 1].ingest_time_us() + 1);
      offset = committed.offset;
    }
  }
  EngineOutput out;
  engine->AdvanceIfIdle(events.back().ingest_time_us() + 3600 * kS, out);
  for (const auto& a : out.emissions) store.Upsert(a.ToProto());
  for (const auto& l : out.late) store.Repair(l);
  if (resize) {
    // Windows of the added size that ended before it was added have no aggregate.
    ExpectStoredAggregatesMatchBatch(store);
  } else {
    ExpectStoreMatchesBatch(store, config);
  }
  return store;
}

TEST(WindowEngineProperty, FinalAggregatesEqualBatchOverStoredPoints) {
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    SCOPED_TRACE(seed);
    RunProperty(seed, /*restarts=*/0, {absl::Seconds(10), absl::Seconds(60)});
  }
}

// A size added at a restart: its windows holding points from before the replay are repaired
// from the stored points rather than emitted from the replayed ones, also after further
// restarts while such windows are open.
TEST(WindowEngineProperty, ASizeAddedAtARestartStoresOnlyWholeWindows) {
  int added_size_windows = 0;
  for (uint64_t seed = 300; seed <= 360; ++seed) {
    SCOPED_TRACE(seed);
    const StoreModel store = RunProperty(seed, /*restarts=*/4, {absl::Seconds(10)},
                                         absl::Seconds(2), {absl::Seconds(10), absl::Seconds(60)});
    for (const auto& [key, a] : store.aggregates) {
      if (std::get<1>(key) == 60 * kS) ++added_size_windows;
    }
  }
  EXPECT_GT(added_size_windows, 0);
}

// The allowed lateness changed at a restart. Raised, it would reopen windows the old one had
// evicted before the checkpoint, which no replay rebuilds, and store the part of them that
// arrives later as the whole window; those are repaired from the stored points instead.
// Lowered, more points are repaired. Either way every stored aggregate is the batch's.
TEST(WindowEngineProperty, ALatenessChangedAtARestartStoresOnlyWholeWindows) {
  for (uint64_t seed = 400; seed <= 460; ++seed) {
    SCOPED_TRACE(seed);
    RunProperty(seed, /*restarts=*/4, {absl::Seconds(10)}, absl::Seconds(2), {},
                absl::Seconds(200));
    RunProperty(seed, /*restarts=*/4, {absl::Seconds(10), absl::Seconds(60)}, absl::Seconds(2),
                {}, absl::Seconds(5));
  }
}

TEST(WindowEngineProperty, RestartsFromCheckpointsChangeNothing) {
  // One size makes partly replayed windows common (a larger live window would otherwise
  // hold the checkpoint before them); two sizes check that nesting changes nothing.
  for (uint64_t seed = 100; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    RunProperty(seed, /*restarts=*/6, {absl::Seconds(10)});
    RunProperty(seed, /*restarts=*/6, {absl::Seconds(10)}, absl::Seconds(8));
    RunProperty(seed, /*restarts=*/6, {absl::Seconds(10), absl::Seconds(60)});
  }
}

v1::Event Flag(int64_t time_us, bool value, const std::string& device = "d2") {
  v1::Event e;
  e.set_device_id(device);
  e.set_time(time_us);
  e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e.mutable_measures())["door_open"].set_bool_value(value);
  e.set_ingest_time_us(time_us + kS);
  return e;
}

TEST(WindowEngine, BoolAndStringEventsMoveTheWatermarkToo) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0));
  size_t emitted = 0;
  // Only bool readings follow, on time: the numeric window must still close.
  for (int s = 2; s <= 14; ++s)
    emitted += d.Send(Flag(kBase + s * kS, s % 2 == 0)).emissions.size();
  EXPECT_EQ(emitted, 1u);
  EXPECT_EQ(d.windows().watermark_us(), kBase + 12 * kS);
}

// Device d1 sends one reading, then only `other(now)` arrives, once a wall-clock second for
// 20 s (the idle timeout is 5 s): how often d1's window was emitted.
size_t QuietDeviceEmissionsWhileOnly(const std::function<v1::Event(int64_t now)>& other) {
  Driver d;
  const int64_t wall = kBase + 1 * kS;
  EngineOutput out;
  d.windows().Process(0, At(kBase + 1 * kS, 1.0, "d1", std::nullopt, wall), wall, out);
  for (int s = 1; s <= 20; ++s) {
    const int64_t now = wall + s * kS;
    d.windows().Process(s, other(now), now, out);
    d.windows().AdvanceIfIdle(now, out);
  }
  size_t emitted = 0;
  for (const auto& a : out.emissions) emitted += a.series().dimensions().at("device_id") == "d1";
  return emitted;
}

// No record brought a point a window could still take for the idle timeout: the wall clock
// moves the watermark. Records keep arriving, but
// - from a device whose clock is an hour ahead (every point corrected, none may move it);
// - from a device whose clock lags by hours (it must not hold the others' windows open until
//   its own clock reaches them).
TEST(WindowEngine, RecordsNoWindowCanTakeLetAQuietPartitionClose) {
  EXPECT_EQ(QuietDeviceEmissionsWhileOnly([](int64_t now) {
              return At(now + 3600 * kS, 2.0, "fast", std::nullopt, now);
            }),
            1u)
      << "clock-corrected points";
  EXPECT_EQ(QuietDeviceEmissionsWhileOnly([](int64_t now) {
              return At(now - 5 * 3600 * kS, 2.0, "slow", std::nullopt, now);
            }),
            1u)
      << "a clock hours behind";
}

// Readings stamped alike keep arriving for an open window (meters sending their interval's
// start, one after another): the partition is not idle, and the window waits for them,
// though none raises the newest event time.
TEST(WindowEngine, ReadingsStampedAlikeKeepTheirWindowOpen) {
  int meter = 0;
  EXPECT_EQ(QuietDeviceEmissionsWhileOnly([&meter](int64_t now) {
              return At(kBase + 1 * kS, 2.0, absl::StrCat("meter-", meter++), std::nullopt, now);
            }),
            0u);
}

// A restore that does not know its replay's end must not treat every later record as
// replayed: after an offset set by hand, a partition of clock-corrected points still closes
// their windows; after a v2 checkpoint, a replayed window still closes while only a device
// hours behind sends (records ingested after the restart are not a replay).
TEST(WindowEngine, ARestoreWithoutAReplayEndStillGoesIdle) {
  auto handled = [](const EngineOutput& out, const std::string& device) {
    size_t n = 0;
    for (const auto& a : out.emissions) n += a.series().dimensions().at("device_id") == device;
    for (const auto& l : out.late) n += l.series().dimensions().at("device_id") == device;
    return n;
  };
  const int64_t wall = kBase + 1 * kS;
  {
    const absl::StatusOr<Checkpoint> reset = Checkpoint::Decode(500, "");
    ASSERT_TRUE(reset.ok());
    PartitionWindows w(TestConfig(), "raw", 0, *reset, wall);
    EngineOutput out;
    for (int s = 0; s <= 20; ++s) {
      const int64_t now = wall + s * kS;
      w.Process(500 + s, At(now + 3600 * kS, 2.0, "fast", std::nullopt, now), now, out);
      w.AdvanceIfIdle(now, out);
    }
    EXPECT_GE(handled(out, "fast"), 1u) << "after an offset set by hand";
  }
  {
    const absl::StatusOr<Checkpoint> v2 = Checkpoint::Decode(
        7, absl::StrCat("v2 ", kBase - 1 * kS, " ", kBase + 1 * kS, " ", 10 * kS));
    ASSERT_TRUE(v2.ok());
    PartitionWindows w(TestConfig(), "raw", 0, *v2, wall);
    EngineOutput out;
    // Replayed: ingested before the restart, not beyond the restored newest time.
    w.Process(7, At(kBase + 1 * kS, 1.0, "d1", std::nullopt, kBase + 1 * kS), wall, out);
    for (int s = 1; s <= 20; ++s) {
      const int64_t now = wall + s * kS;
      w.Process(7 + s, At(now - 5 * 3600 * kS, 2.0, "slow", std::nullopt, now), now, out);
      w.AdvanceIfIdle(now, out);
    }
    EXPECT_EQ(handled(out, "d1"), 1u) << "after a v2 checkpoint";
  }
}

// A replay after a restart is behind the restored newest event time, but its points land in
// live windows: it is progress. A replay that takes longer than the idle timeout (minutes of
// records behind the checkpoint) must not jump the watermark to the wall clock half-way and
// emit windows from part of their points.
TEST(WindowEngine, AReplayLongerThanTheIdleTimeoutIsNotIdle) {
  Driver d;
  std::vector<v1::Event> records;
  for (int i = 0; i < 30; ++i) records.push_back(At(kBase + i * kS, i, absl::StrCat("d", i % 3)));
  Checkpoint c;
  for (int i = 0; i < 30; ++i) {
    d.Send(records[i]);
    if (i == 24) c = d.windows().CurrentCheckpoint();
  }
  ASSERT_LT(c.offset, 24) << "the checkpoint keeps live windows to replay";
  const absl::StatusOr<Checkpoint> restored = Checkpoint::Decode(c.offset, c.Encode());
  ASSERT_TRUE(restored.ok());
  // Restarted an hour later; each replayed record takes 10 s of wall time (the idle timeout
  // is 5 s), as a long replay would.
  const int64_t wall = kBase + 3600 * kS;
  PartitionWindows replay(TestConfig(), "raw", 0, *restored, wall);
  EngineOutput out;
  for (int64_t offset = c.offset; offset < 30; ++offset) {
    const int64_t now = wall + (offset - c.offset) * 10 * kS;
    replay.Process(offset, records[offset], now, out);
    replay.AdvanceIfIdle(now, out);
    EXPECT_LE(replay.watermark_us(), kBase + 29 * kS)
        << "offset " << offset << ": the watermark followed the wall clock";
  }
  EXPECT_TRUE(out.late.empty()) << "no replayed point went to repair";
}

TEST(WindowEngine, AClockAheadBelowTheCorrectionDoesNotMakeOthersLate) {
  Driver d;
  int64_t on_time_points = 0;
  for (int s = 0; s < 120; ++s) {
    const int64_t now = kBase + s * kS;
    // One device runs 10 minutes ahead (under the 15-minute correction); 49 are on time.
    d.Send(At(now + 600 * kS, 1.0, "ahead", std::nullopt, now));
    for (int dev = 0; dev < 49; ++dev) {
      d.Send(At(now - 1 * kS, 1.0, absl::StrCat("d", dev), std::nullopt, now));
      ++on_time_points;
    }
  }
  const EngineCounters& c = d.windows().counters();
  EXPECT_EQ(c.beyond_lateness, 0) << "of " << on_time_points << " on-time points";
  EXPECT_EQ(c.late_within_lateness, 0);
  EXPECT_EQ(c.clock_corrected, 0) << "10 minutes ahead is below the correction threshold";
}

TEST(WindowEngine, QuietSeriesAreForgottenWithTheirWindows) {
  Driver d;
  for (int dev = 0; dev < 100; ++dev) d.Send(At(kBase + 1 * kS, 1.0, absl::StrCat("d", dev)));
  EXPECT_EQ(d.windows().tracked_series(), 100u);
  // Only d0 goes on; the other 99 series' windows close and are evicted after the lateness.
  for (int s = 2; s < 60; ++s) d.Send(At(kBase + s * kS, 1.0, "d0"));
  EXPECT_EQ(d.windows().tracked_series(), 1u);
}

// A window closed and evicted by one record (a partition that was quiet for longer than the
// lateness) is emitted in that record's output, which still holds its series then: the series
// is forgotten all the same. So is one whose only point was beyond the lateness.
TEST(WindowEngine, SeriesEvictedWhileTheirLastEmissionIsPendingAreForgotten) {
  Driver d;
  d.Send(At(kBase + 1 * kS, 1.0, "d1"));
  EngineOutput out = d.Send(At(kBase + 1000 * kS, 1.0, "d0"));
  ASSERT_EQ(out.emissions.size(), 1u);
  EXPECT_EQ(out.emissions[0].series().dimensions().at("device_id"), "d1");
  EXPECT_EQ(d.windows().tracked_series(), 1u) << "d1 is gone; d0's window is open";
  out = d.Send(At(kBase + 2 * kS, 1.0, "late"));
  ASSERT_EQ(out.late.size(), 1u);
  EXPECT_EQ(d.windows().tracked_series(), 1u) << "a late-only series opens no window";
}

// The engine maps events to series itself, remembering each device's keys; its series must
// be exactly those of the shared mapping, whatever the names hold and however a device's
// dimensions change from one event to the next.
TEST(WindowEngine, SeriesAreThoseOfTheSharedMapping) {
  std::vector<v1::Event> events;
  auto add = [&](const std::string& device, std::map<std::string, std::string> dims,
                 std::map<std::string, double> measures, int64_t s) {
    v1::Event& e = events.emplace_back(At(kBase + s * kS, 0, device));
    e.clear_measures();
    for (const auto& [k, v] : dims) (*e.mutable_dimensions())[k] = v;
    for (const auto& [k, v] : measures) (*e.mutable_measures())[k].set_double_value(v);
    (*e.mutable_measures())["flag"].set_bool_value(true);  // not windowed
  };
  add("d1", {}, {{"temp", 1}, {"hum", 2}}, 1);
  add("d1", {{"site", "a"}}, {{"temp", 3}}, 2);  // same device, new dimensions
  add("d1", {{"site", "b"}}, {{"temp", 4}}, 3);
  add("d1", {{"site", "a"}}, {{"temp", 5}, {"m{x}=\\,\"", 6}}, 4);
  add("d\"2", {{"k=\"{}", "v\\\""}, {"device_id", "override"}}, {{"a,b", 7}}, 5);
  add("d1", {}, {{"temp", 8}}, 6);
  add("d3", {{"z", "1"}, {"a", "2"}}, {{"x", 9}, {"b", 10}}, 7);
  add("d3", {{"a", "2"}, {"z", "1"}}, {{"b", 11}}, 8);

  std::map<int64_t, v1::Series> want;
  for (const v1::Event& e : events) {
    absl::StatusOr<std::vector<series::MappedPoint>> points =
        series::EventToPoints(e, time::kDefaultFutureClockLead);
    ASSERT_TRUE(points.ok());
    for (const series::MappedPoint& p : *points) {
      if (p.value.value_case() != v1::MeasureValue::kDoubleValue) continue;
      v1::Series& s = want[p.series_id];
      s.set_series_id(p.series_id);
      s.set_measure_name(p.measure_name);
      s.set_canonical_key(p.canonical_key);
      for (const auto& [k, v] : p.dimensions) (*s.mutable_dimensions())[k] = v;
    }
  }
  Driver d;
  for (const v1::Event& e : events) d.Send(e);
  EngineOutput out;
  d.windows().AdvanceIfIdle(kBase + 3600 * kS, out);
  std::map<int64_t, v1::Series> got;
  for (const Emission& a : out.emissions) got[a.series().series_id()] = a.series();
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, s] : want) {
    ASSERT_TRUE(got.count(id)) << s.canonical_key();
    const v1::Series& g = got[id];
    EXPECT_EQ(g.measure_name(), s.measure_name()) << s.canonical_key();
    EXPECT_EQ(g.canonical_key(), s.canonical_key());
    using Dims = std::map<std::string, std::string>;
    EXPECT_EQ(Dims(g.dimensions().begin(), g.dimensions().end()),
              Dims(s.dimensions().begin(), s.dimensions().end()))
        << s.canonical_key();
  }
  EXPECT_EQ(d.windows().counters().points, 11);
  EXPECT_EQ(d.windows().counters().non_numeric, 8);
}

}  // namespace
}  // namespace tidemark::aggregator
