// The aggregator's checkpoints: the commit metadata a partition's window state is rebuilt
// from, and the rebuild itself.
// Input: commit metadata as read back from Kafka, then a script of raw records (events of a
// few devices around one instant, undecodable records) and wall-clock steps.
//
// Properties: metadata that decodes re-encodes to the same checkpoint, and every checkpoint
// survives encode -> decode; while records are processed the watermark never moves back, the
// checkpoint offset stays between the restored offset and the next record, every emission is a
// well-formed aggregate of an aligned window, one version of a window is always the same
// aggregate, and repairs carry the odd version of their record; and an engine restarted from a
// checkpoint taken at any point, replaying from its offset, emits exactly what the engine that
// never stopped emits from there on (DESIGN §3: window state rebuilt from Kafka).

#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_support.h"
#include "services/aggregator/window_engine.h"

namespace tidemark::fuzz {
namespace {

using aggregator::Checkpoint;
using aggregator::EngineOutput;
using aggregator::PartitionWindows;
using aggregator::WindowConfig;

bool Same(const Checkpoint& a, const Checkpoint& b) {
  return a.offset == b.offset && a.watermark_us == b.watermark_us &&
         a.max_event_us == b.max_event_us && a.sizes == b.sizes && a.lateness_us == b.lateness_us &&
         a.replay_end == b.replay_end;
}

// One step of the script: a record at the next offset (an event, or bytes that are not one),
// or the wall clock moving on.
struct Step {
  enum Kind { kEvent, kUndecodable, kIdle } kind = kIdle;
  v1::Event event;
  int64_t now_us = 0;
};

std::vector<Step> ReadScript(FuzzedDataProvider& in) {
  std::vector<Step> steps;
  int64_t now_us = kNowUs;
  while (in.remaining_bytes() > 0 && steps.size() < 64) {
    Step& s = steps.emplace_back();
    const uint8_t op = in.ConsumeIntegral<uint8_t>();
    now_us += in.ConsumeIntegralInRange<int64_t>(0, 90'000'000);
    s.now_us = now_us;
    if (op % 8 == 0) {
      s.kind = Step::kIdle;
      continue;
    }
    if (op % 8 == 1) {
      s.kind = Step::kUndecodable;
      continue;
    }
    s.kind = Step::kEvent;
    v1::Event& e = s.event;
    e.set_device_id(absl::StrCat("d", op % 3));
    // Mostly around now; sometimes far ahead of the ingest time (corrected), sometimes hours
    // late.
    e.set_time(now_us + in.ConsumeIntegralInRange<int64_t>(-3 * 3600'000'000LL, 40 * 60'000'000LL));
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    e.set_ingest_time_us(now_us);
    if (op & 0x10) e.set_version(in.ConsumeIntegralInRange<int64_t>(0, 3));
    const int measures = 1 + (op >> 6);
    for (int m = 0; m < measures; ++m) {
      v1::MeasureValue& v = (*e.mutable_measures())[absl::StrCat("m", m)];
      const int32_t x = in.ConsumeIntegralInRange<int32_t>(-4000, 4000);
      if (op & 0x20) {
        v.set_double_value(x / 4.0);
      } else if (m == 2) {
        v.set_bool_value(x > 0);
      } else {
        v.set_int64_value(x);
      }
    }
  }
  return steps;
}

// Runs steps [from, to) with offsets starting at `first_offset`; records each step's output.
void Run(PartitionWindows& engine, const std::vector<Step>& steps, size_t from, size_t to,
         int64_t first_offset, bool idle, std::vector<EngineOutput>* outputs) {
  for (size_t i = from; i < to; ++i) {
    const Step& s = steps[i];
    const int64_t offset = first_offset + static_cast<int64_t>(i);
    EngineOutput out;
    switch (s.kind) {
      case Step::kEvent:
        engine.Process(offset, s.event, s.now_us, out);
        break;
      case Step::kUndecodable:
        engine.Skip(offset, s.now_us);
        break;
      case Step::kIdle:
        if (idle) engine.AdvanceIfIdle(s.now_us, out);
        break;
    }
    if (outputs != nullptr) outputs->push_back(std::move(out));
  }
}

void CheckAggregate(const v1::WindowAggregate& a) {
  const std::string what = Describe(a);
  TIDEMARK_FUZZ_CHECK(a.count() > 0, "an emitted window is not empty: " + what);
  TIDEMARK_FUZZ_CHECK(a.window_size_us() > 0 && a.window_start_us() % a.window_size_us() == 0,
                      "an emitted window is aligned to its size: " + what);
  TIDEMARK_FUZZ_CHECK(a.min() <= a.max() && a.min() <= a.first() && a.first() <= a.max() &&
                          a.min() <= a.last() && a.last() <= a.max() && a.min() <= a.avg() &&
                          a.avg() <= a.max(),
                      "min <= first, last, avg <= max: " + what);
  TIDEMARK_FUZZ_CHECK(std::isfinite(a.sum()), "finite inputs give a finite sum: " + what);
  TIDEMARK_FUZZ_CHECK(a.version() >= 0 && a.version() % 2 == 0,
                      "an emission's version is even: " + what);
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  using namespace tidemark::fuzz;
  FuzzedDataProvider in(data, size);

  // The commit metadata as stored; offsets are what Kafka commits (non-negative).
  const int64_t committed = in.ConsumeIntegralInRange<int64_t>(0, int64_t{1} << 40);
  const std::string metadata = in.ConsumeRandomLengthString(64);
  absl::StatusOr<Checkpoint> restored = Checkpoint::Decode(committed, metadata);
  if (restored.ok()) {
    TIDEMARK_FUZZ_CHECK(restored->offset == committed, "a checkpoint keeps its offset");
    absl::StatusOr<Checkpoint> again = Checkpoint::Decode(committed, restored->Encode());
    TIDEMARK_FUZZ_CHECK(again.ok() && Same(*again, *restored),
                        "decoded metadata re-encodes to the same checkpoint: " + metadata);
  } else {
    TIDEMARK_FUZZ_CHECK(!restored.status().message().empty(), "a bad checkpoint says why");
  }
  Checkpoint start = restored.ok() ? *restored : Checkpoint{committed};
  // A checkpoint the engine wrote has a watermark no later than its newest event; both come
  // from event times, so keep them within the range of times.
  if (in.ConsumeBool()) {
    start.watermark_us = INT64_MIN;
    start.max_event_us = INT64_MIN;
  }
  const std::vector<Step> steps = ReadScript(in);

  // One engine through the whole script, with idle advances.
  WindowConfig config;
  config.sizes = {absl::Minutes(5), absl::Hours(1)};
  {
    PartitionWindows engine(config, "tidemark.raw", 0, start, kNowUs);
    std::map<std::tuple<int64_t, int64_t, int64_t>, v1::WindowAggregate> last;
    int64_t watermark = engine.watermark_us();
    for (size_t i = 0; i < steps.size(); ++i) {
      std::vector<EngineOutput> outputs;
      Run(engine, steps, i, i + 1, start.offset, /*idle=*/true, &outputs);
      TIDEMARK_FUZZ_CHECK(engine.watermark_us() >= watermark, "the watermark never moves back");
      watermark = engine.watermark_us();
      const Checkpoint cp = engine.CurrentCheckpoint();
      TIDEMARK_FUZZ_CHECK(
          cp.offset >= start.offset && cp.offset <= start.offset + static_cast<int64_t>(i) + 1,
          "the checkpoint offset is between the restored one and the next");
      TIDEMARK_FUZZ_CHECK(cp.watermark_us == engine.watermark_us(),
                          "the checkpoint keeps the watermark");
      absl::StatusOr<Checkpoint> decoded = Checkpoint::Decode(cp.offset, cp.Encode());
      TIDEMARK_FUZZ_CHECK(decoded.ok() && Same(*decoded, cp),
                          "a checkpoint survives its commit metadata: " + cp.Encode());
      for (const aggregator::Emission& emission : outputs[0].emissions) {
        const v1::WindowAggregate a = emission.ToProto();
        CheckAggregate(a);
        const auto key =
            std::make_tuple(a.series().series_id(), a.window_size_us(), a.window_start_us());
        auto [it, first] = last.try_emplace(key, a);
        if (!first) {
          TIDEMARK_FUZZ_CHECK(a.version() >= it->second.version(),
                              "a window's versions never go back: " + Describe(a));
          if (a.version() == it->second.version()) {
            TIDEMARK_FUZZ_CHECK(SameMessage(a, it->second),
                                "one version of a window is one aggregate: " + Describe(a) +
                                    " vs " + Describe(it->second));
          }
          it->second = a;
        }
      }
      for (const v1::LatePoint& late : outputs[0].late) {
        TIDEMARK_FUZZ_CHECK(
            late.repair_version() == 2 * late.raw_offset() + 1 && late.windows_size() > 0,
            "a repair has its record's odd version and its windows");
      }
    }
  }

  // Restart: an engine that stops after step k and resumes from its checkpoint emits from
  // there on what the uninterrupted one emits. The wall clock plays no part (no idle
  // advances), since a restarted process starts its idle timers anew.
  if (steps.empty()) return 0;
  config.idle_timeout = absl::Hours(24 * 365);
  const size_t k = in.ConsumeIntegralInRange<size_t>(0, steps.size());
  PartitionWindows uninterrupted(config, "tidemark.raw", 0, start, kNowUs);
  std::vector<EngineOutput> expected;
  Run(uninterrupted, steps, 0, k, start.offset, false, nullptr);
  const Checkpoint cp = uninterrupted.CurrentCheckpoint();
  Run(uninterrupted, steps, k, steps.size(), start.offset, false, &expected);

  TIDEMARK_FUZZ_CHECK(
      cp.offset >= start.offset && cp.offset <= start.offset + static_cast<int64_t>(k),
      "the checkpoint offset is between the restored one and the next");
  absl::StatusOr<Checkpoint> resumed_from = Checkpoint::Decode(cp.offset, cp.Encode());
  TIDEMARK_FUZZ_CHECK(resumed_from.ok(), "a checkpoint decodes");
  // The wall clock at the restart: after every step before it. A size the first checkpoint
  // lacked is in the second with the bound the uninterrupted engine uses, so both repair the
  // same windows.
  PartitionWindows restarted(config, "tidemark.raw", 0, *resumed_from,
                             k == 0 ? kNowUs : steps[k - 1].now_us);
  const size_t replay_from = static_cast<size_t>(cp.offset - start.offset);
  Run(restarted, steps, replay_from, k, start.offset, false, nullptr);
  std::vector<EngineOutput> actual;
  Run(restarted, steps, k, steps.size(), start.offset, false, &actual);
  for (size_t i = 0; i < expected.size(); ++i) {
    TIDEMARK_FUZZ_CHECK(
        expected[i].late.size() == actual[i].late.size(),
        absl::StrCat("after a restart at step ", k, ", step ", k + i, " sends ",
                     actual[i].late.size(), " repairs, not ", expected[i].late.size()));
    const auto& e = expected[i].emissions;
    const auto& a = actual[i].emissions;
    TIDEMARK_FUZZ_CHECK(
        e.size() == a.size(),
        absl::StrCat("after a restart at step ", k, " from offset ", cp.offset, ", step ", k + i,
                     " emits ", a.size(), " aggregates, not ", e.size()));
    for (size_t j = 0; j < e.size(); ++j) {
      std::string diff;
      TIDEMARK_FUZZ_CHECK(SameMessage(a[j].ToProto(), e[j].ToProto(), &diff),
                          absl::StrCat("after a restart at step ", k, ", step ", k + i,
                                       " emits a different aggregate: ", diff));
    }
  }
  return 0;
}
