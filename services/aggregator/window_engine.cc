#include "services/aggregator/window_engine.h"

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/series/series_key.h"
#include "common/series/storable.h"
#include "common/time/time_units.h"

namespace tidemark::aggregator {
namespace {

int64_t FloorTo(int64_t t, int64_t size) {
  const int64_t q = t / size;
  return (t % size < 0 ? q - 1 : q) * size;
}

bool NumericValue(const series::MeasureValueView& v, double& out) {
  switch (v.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      out = v.double_value();
      return true;
    case v1::MeasureValue::kInt64Value:
      out = static_cast<double>(v.int64_value());
      return true;
    default:
      return false;
  }
}

// a - b for b >= 0, held at INT64_MIN ("no time yet") instead of overflowing: a checkpoint
// may carry any instant.
int64_t SaturatingSub(int64_t a, int64_t b) { return a < INT64_MIN + b ? INT64_MIN : a - b; }

}  // namespace

std::string Checkpoint::Encode() const {
  std::string out = absl::StrCat("v3 ", watermark_us, " ", max_event_us, " ");
  for (size_t i = 0; i < sizes.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", sizes[i].size_us);
    if (sizes[i].incomplete_before_us != INT64_MIN) {
      absl::StrAppend(&out, "@", sizes[i].incomplete_before_us);
    }
  }
  absl::StrAppend(&out, " ", lateness_us, " ", replay_end);
  return out;
}

absl::StatusOr<Checkpoint> Checkpoint::Decode(int64_t offset, const std::string& metadata) {
  Checkpoint c;
  c.offset = offset;
  // An offset committed without metadata was set by hand (kafka-consumer-groups
  // --reset-offsets, the runbook's way past a gap): records before it were processed, and
  // windows that straddle it hold points no replay reaches. Offset 0 skips nothing.
  if (metadata.empty()) {
    c.after_records = offset > 0;
    return c;
  }
  c.after_records = true;
  std::vector<std::string> parts = absl::StrSplit(metadata, ' ');
  const bool v1 = parts.size() == 3 && parts[0] == "v1";
  const bool v2 = parts.size() == 4 && parts[0] == "v2";
  const bool v3 = parts.size() == 6 && parts[0] == "v3";
  bool readable = (v1 || v2 || v3) && absl::SimpleAtoi(parts[1], &c.watermark_us) &&
                  absl::SimpleAtoi(parts[2], &c.max_event_us);
  if (readable && v3) {
    readable = absl::SimpleAtoi(parts[4], &c.lateness_us) && c.lateness_us >= -1 &&
               absl::SimpleAtoi(parts[5], &c.replay_end) && c.replay_end >= -1;
  }
  if (readable && (v2 || v3)) {
    for (absl::string_view item : absl::StrSplit(parts[3], ',', absl::SkipEmpty())) {
      std::vector<absl::string_view> fields = absl::StrSplit(item, '@');
      Checkpoint::Size& size = c.sizes.emplace_back();
      readable = readable && fields.size() <= 2 && absl::SimpleAtoi(fields[0], &size.size_us) &&
                 size.size_us > 0 &&
                 (fields.size() == 1 || absl::SimpleAtoi(fields[1], &size.incomplete_before_us));
    }
  }
  if (!readable) {
    return absl::DataLossError(
        absl::StrCat("committed aggregator checkpoint \"", metadata, "\" is not readable"));
  }
  return c;
}

PartitionWindows::PartitionWindows(const WindowConfig& config, std::string raw_topic,
                                   int32_t partition, const Checkpoint& restored,
                                   int64_t restored_at_us)
    : config_(config),
      raw_topic_(std::move(raw_topic)),
      partition_(partition),
      watermark_us_(restored.watermark_us),
      max_event_us_(restored.max_event_us),
      next_offset_(restored.offset) {
  for (absl::Duration d : config_.sizes) sizes_us_.push_back(absl::ToInt64Microseconds(d));
  for (int64_t size : sizes_us_) {
    auto known = std::find_if(restored.sizes.begin(), restored.sizes.end(),
                              [size](const Checkpoint::Size& s) { return s.size_us == size; });
    if (known != restored.sizes.end()) {
      incomplete_before_us_.push_back(known->incomplete_before_us);
    } else if (!restored.after_records) {
      incomplete_before_us_.push_back(INT64_MIN);  // nothing was processed before
    } else if (restored_at_us == INT64_MIN) {
      incomplete_before_us_.push_back(INT64_MAX);
    } else {
      incomplete_before_us_.push_back(restored_at_us +
                                      absl::ToInt64Microseconds(config_.future_clock_lead));
    }
  }
  // The records a restart replays are progress (see Process). A checkpoint that did not record
  // how far it had processed (v1, v2) replays the records ingested before this restart; an
  // offset set by hand (no metadata, no watermark) replays nothing.
  if (restored.replay_end >= 0) {
    replay_end_ = restored.replay_end;
  } else if (restored.after_records && restored.watermark_us != INT64_MIN) {
    replay_ingested_before_us_ = restored_at_us;
  }
  // Windows the checkpoint's lateness had evicted by its watermark are not rebuilt by the
  // replay. A larger lateness now would reopen one from its later points alone and emit that
  // part as the whole window (with a higher version than the whole), so they are repaired
  // from the stored points instead, as an added size's are. A checkpoint that did not record
  // its lateness is taken as having evicted every window that had closed.
  const int64_t lateness = absl::ToInt64Microseconds(config_.allowed_lateness);
  const int64_t evicted_with = std::max<int64_t>(0, restored.lateness_us);
  if (restored.after_records && restored.watermark_us != INT64_MIN && lateness > evicted_with) {
    for (size_t i = 0; i < sizes_us_.size(); ++i) {
      // Evicted: start + size + lateness <= watermark.
      const int64_t last_evicted =
          SaturatingSub(SaturatingSub(restored.watermark_us, evicted_with), sizes_us_[i]);
      incomplete_before_us_[i] = std::max(incomplete_before_us_[i], last_evicted + 1);
    }
  }
}

void PartitionWindows::Skip(int64_t offset, int64_t now_us) {
  consumed_ = true;
  ++counters_.undecodable;
  next_offset_ = offset + 1;
  if (last_progress_wall_us_ == INT64_MIN || offset < replay_end_) last_progress_wall_us_ = now_us;
}

v1::WindowAggregate Emission::ToProto() const {
  v1::WindowAggregate agg;
  *agg.mutable_series() = *series_;
  agg.set_window_size_us(window_size_us_);
  agg.set_window_start_us(window_start_us_);
  agg.set_count(values_.count);
  agg.set_sum(values_.sum);
  agg.set_min(values_.min);
  agg.set_max(values_.max);
  agg.set_avg(values_.avg);
  agg.set_first(values_.first);
  agg.set_last(values_.last);
  agg.set_version(version_);
  return agg;
}

void PartitionWindows::Process(int64_t offset, const v1::Event& event, int64_t now_us,
                               EngineOutput& out) {
  message_view_.Assign(event);
  Process(offset, message_view_, now_us, out);
}

void PartitionWindows::Process(int64_t offset, const series::EventView& event, int64_t now_us,
                               EngineOutput& out) {
  consumed_ = true;
  next_offset_ = offset + 1;
  // The mapping of series::EventToPoints (one point per measure in name order, the shared
  // storable rule, the future-clock correction, version = client version or ingest time),
  // without building a MappedPoint (a copy of the dimensions, its key and its value) per
  // measure: every point of an event shares its time, version and dimensions, and the keys
  // of a device's series are remembered (names_). window_engine_test checks that the series
  // are those of EventToPoints.
  absl::StatusOr<int64_t> event_us = time::ToMicros(event.time(), event.time_unit());
  if (series::CheckStorable(event).has_value() || !event_us.ok()) {
    ++counters_.undecodable;
    if (last_progress_wall_us_ == INT64_MIN || offset < replay_end_) {
      last_progress_wall_us_ = now_us;
    }
    return;
  }
  const time::CorrectedTime t =
      time::CorrectFutureClock(*event_us, event.ingest_time_us(), config_.future_clock_lead);
  const int64_t version = event.has_version() ? event.version() : event.ingest_time_us();

  series::SeriesNames::Device* names = nullptr;
  size_t next_named = 0;
  int64_t newest_uncorrected = INT64_MIN;
  for (const auto& [name, value] : event.measures()) {  // sorted by name
    // Every uncorrected point moves the watermark, whatever its type, but never beyond its
    // ingest time: an event cannot have happened after it arrived, so a clock that runs
    // ahead by less than the correction threshold cannot push the other devices' points
    // into lateness.
    if (t.corrected) {
      ++counters_.clock_corrected;
    } else {
      newest_uncorrected =
          std::max(newest_uncorrected, std::min(t.time_us, event.ingest_time_us()));
    }
    double numeric = 0;
    if (!NumericValue(value, numeric)) {
      ++counters_.non_numeric;
      continue;
    }
    // Bounded by the series tracked.
    if (names == nullptr) names = &names_.Of(event, 2 * series_.size() + 1024);
    const series::SeriesNames::Named& named =
        names->Find(name, series::ValueKind::kNumeric, next_named);
    const std::string& key = named.canonical_key;
    const int64_t series_id = named.series_id;
    auto [it, created] = series_.try_emplace(series_id);
    SeriesState& state = it->second;
    if (created) {
      auto s = std::make_shared<v1::Series>();
      s->set_series_id(series_id);
      s->set_measure_name(std::string(name));
      s->set_canonical_key(key);
      for (const auto& [k, v] : names->dimensions()) (*s->mutable_dimensions())[k] = v;
      state.series = std::move(s);
      state.current.resize(sizes_us_.size());
    } else if (state.series->canonical_key() != key) {
      // Another series with the same id: the writer refuses its points, so it is not counted.
      ++counters_.series_collisions;
      continue;
    }
    ++counters_.points;
    AddPoint(offset, state, t.time_us, {numeric, version}, value, out);
    // A series whose points all went beyond the lateness opened no window to keep it.
    if (state.open_windows == 0) series_.erase(it);
  }
  // Progress, which holds off the idle advance, is a record with an uncorrected point some
  // window can still take (readings stamped alike, as meters send their interval's start,
  // keep arriving for an open window), or one of a replay after a restart. A device whose
  // clock lags hours behind, every point beyond the lateness, is not: counting it would keep
  // a quiet device's last window open until the lagging clock reached it.
  const bool raises = newest_uncorrected != INT64_MIN && newest_uncorrected > max_event_us_;
  const bool replayed = offset < replay_end_ || event.ingest_time_us() < replay_ingested_before_us_;
  if (last_progress_wall_us_ == INT64_MIN || replayed || IsLive(newest_uncorrected)) {
    last_progress_wall_us_ = now_us;
  }
  // The watermark moves after the record's own points, and never for corrected points.
  if (raises) max_event_us_ = newest_uncorrected;
  const int64_t candidate =
      SaturatingSub(max_event_us_, absl::ToInt64Microseconds(config_.out_of_orderness));
  if (candidate > watermark_us_) AdvanceWatermark(candidate, offset, out);
}

bool PartitionWindows::IsLive(int64_t time_us) const {
  if (time_us == INT64_MIN) return false;
  if (watermark_us_ == INT64_MIN) return true;
  const int64_t lateness = absl::ToInt64Microseconds(config_.allowed_lateness);
  for (const int64_t size : sizes_us_) {
    if (FloorTo(time_us, size) + size + lateness > watermark_us_) return true;
  }
  return false;
}

void PartitionWindows::AddPoint(int64_t offset, SeriesState& state, int64_t time_us,
                                const WindowPoint& point, const series::MeasureValueView& raw_value,
                                EngineOutput& out) {
  const std::shared_ptr<const v1::Series>& series = state.series;
  const int64_t lateness = absl::ToInt64Microseconds(config_.allowed_lateness);
  v1::LatePoint* late = nullptr;
  for (size_t i = 0; i < sizes_us_.size(); ++i) {
    const int64_t size = sizes_us_[i];
    const int64_t start = FloorTo(time_us, size);
    const int64_t end = start + size;
    if (watermark_us_ != INT64_MIN && end + lateness <= watermark_us_) {
      // Beyond allowed lateness: the window's state is gone; the writer repairs it from the
      // stored raw points.
      if (late == nullptr) {
        late = &out.late.emplace_back();
        *late->mutable_series() = *series;
        late->set_time_us(time_us);
        raw_value.CopyTo(*late->mutable_value());
        late->set_version(point.version);
        late->set_raw_topic(raw_topic_);
        late->set_raw_partition(partition_);
        late->set_raw_offset(offset);
        late->set_repair_version(2 * offset + 1);
        ++counters_.beyond_lateness;
      }
      v1::WindowRef* ref = late->add_windows();
      ref->set_window_size_us(size);
      ref->set_window_start_us(start);
      continue;
    }
    const Key key{series->series_id(), size, start};
    SeriesState::Current& current = state.current[i];
    if (current.start_us != start || current.window == nullptr) {
      auto [it, created] = windows_.try_emplace(key);
      Window& w = it->second;
      if (created) {
        w.series = series;
        w.first_offset = offset;
        w.incomplete = start < incomplete_before_us_[i];
        // A series sends at a steady rate, so its next window holds about as many points as
        // the one its last point went to; growing a vector one doubling at a time was most
        // of ApplyPoint's time (aggregator_bench).
        if (current.window != nullptr) w.points.reserve(current.window->points.size());
        ++counters_.windows_opened;
        ++state.open_windows;
        by_eviction_.push({end + lateness, key});
        if (watermark_us_ == INT64_MIN || end > watermark_us_) by_end_.push({end, key});
      }
      current = {start, &w};
    }
    Window& w = *current.window;
    const bool closed = watermark_us_ != INT64_MIN && end <= watermark_us_;
    if (closed) ++counters_.late_within_lateness;
    if (ApplyPoint(w.points, time_us, point) && closed) Emit(key, w, offset, out);
  }
}

void PartitionWindows::AdvanceWatermark(int64_t watermark_us, int64_t version_offset,
                                        EngineOutput& out) {
  watermark_us_ = watermark_us;
  while (!by_end_.empty() && by_end_.top().first <= watermark_us_) {
    const Key key = by_end_.top().second;
    by_end_.pop();
    Emit(key, windows_.at(key), version_offset, out);
  }
  while (!by_eviction_.empty() && by_eviction_.top().first <= watermark_us_) {
    const Key key = by_eviction_.top().second;
    by_eviction_.pop();
    auto window = windows_.find(key);
    auto it = series_.find(key.series_id);
    if (it != series_.end()) {
      for (SeriesState::Current& c : it->second.current) {
        if (c.window == &window->second) c = {};
      }
    }
    windows_.erase(window);
    // A series no live window refers to is forgotten, so quiet series cost no memory.
    if (it != series_.end() && --it->second.open_windows == 0) series_.erase(it);
  }
}

void PartitionWindows::Emit(const Key& key, Window& w, int64_t version_offset, EngineOutput& out) {
  if (w.incomplete) {
    // The writer recomputes it from the stored raw points, which hold what this replica did
    // not replay, once the store holds every record up to version_offset.
    v1::LatePoint& repair = out.late.emplace_back();
    *repair.mutable_series() = *w.series;
    repair.set_raw_topic(raw_topic_);
    repair.set_raw_partition(partition_);
    repair.set_raw_offset(version_offset);
    repair.set_repair_version(2 * version_offset + 1);
    v1::WindowRef* ref = repair.add_windows();
    ref->set_window_size_us(key.size_us);
    ref->set_window_start_us(key.start_us);
    ++counters_.added_size_repairs;
    w.emitted = true;
    return;
  }
  out.emissions.emplace_back(w.series, key.size_us, key.start_us, Aggregate(w.points),
                             2 * version_offset);
  if (w.emitted) {
    ++counters_.re_emitted;
  } else {
    ++counters_.emitted;
  }
  w.emitted = true;
}

void PartitionWindows::AdvanceIfIdle(int64_t now_us, EngineOutput& out) {
  if (last_progress_wall_us_ == INT64_MIN) return;  // nothing processed: nothing to close
  // Idle means no record brought a point a window could still take (nor was replayed) for
  // the idle timeout, so that a partition of clock-corrected, undecodable or hours-late
  // records still closes its windows.
  if (now_us - last_progress_wall_us_ < absl::ToInt64Microseconds(config_.idle_timeout)) return;
  const int64_t candidate = now_us - absl::ToInt64Microseconds(config_.out_of_orderness);
  if (candidate > watermark_us_) AdvanceWatermark(candidate, next_offset_ - 1, out);
}

Checkpoint PartitionWindows::CurrentCheckpoint() const {
  Checkpoint c;
  c.offset = next_offset_;
  for (const auto& [key, w] : windows_) c.offset = std::min(c.offset, w.first_offset);
  c.watermark_us = watermark_us_;
  c.max_event_us = max_event_us_;
  const int64_t lateness = absl::ToInt64Microseconds(config_.allowed_lateness);
  c.lateness_us = lateness;
  // A checkpoint taken during a replay keeps its end: the records up to it are still behind
  // the newest event time when a second restart replays them.
  c.replay_end = std::max(next_offset_, replay_end_);
  for (size_t i = 0; i < sizes_us_.size(); ++i) {
    Checkpoint::Size& size = c.sizes.emplace_back();
    size.size_us = sizes_us_[i];
    // Kept while a window starting before the bound can still be live (not beyond lateness).
    const int64_t bound = incomplete_before_us_[i];
    if (bound != INT64_MIN &&
        (watermark_us_ == INT64_MIN || bound > INT64_MAX - sizes_us_[i] - lateness ||
         watermark_us_ < bound + sizes_us_[i] + lateness)) {
      size.incomplete_before_us = bound;
    }
  }
  return c;
}

}  // namespace tidemark::aggregator
