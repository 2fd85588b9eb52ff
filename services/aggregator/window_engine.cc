#include "services/aggregator/window_engine.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/series/event_points.h"

namespace tidemark::aggregator {
namespace {

int64_t FloorTo(int64_t t, int64_t size) {
  const int64_t q = t / size;
  return (t % size < 0 ? q - 1 : q) * size;
}

bool NumericValue(const v1::MeasureValue& v, double& out) {
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

int64_t SaturatingSub(int64_t a, int64_t b) {
  if (a == INT64_MIN) return INT64_MIN;
  return a - b;
}

}  // namespace

std::string Checkpoint::Encode() const {
  return absl::StrCat("v1 ", watermark_us, " ", max_event_us);
}

absl::StatusOr<Checkpoint> Checkpoint::Decode(int64_t offset, const std::string& metadata) {
  Checkpoint c;
  c.offset = offset;
  if (metadata.empty()) return c;
  std::vector<std::string> parts = absl::StrSplit(metadata, ' ');
  if (parts.size() != 3 || parts[0] != "v1" || !absl::SimpleAtoi(parts[1], &c.watermark_us) ||
      !absl::SimpleAtoi(parts[2], &c.max_event_us)) {
    return absl::DataLossError(
        absl::StrCat("committed aggregator checkpoint \"", metadata, "\" is not readable"));
  }
  return c;
}

PartitionWindows::PartitionWindows(const WindowConfig& config, std::string raw_topic,
                                   int32_t partition, const Checkpoint& restored)
    : config_(config),
      raw_topic_(std::move(raw_topic)),
      partition_(partition),
      watermark_us_(restored.watermark_us),
      max_event_us_(restored.max_event_us),
      next_offset_(restored.offset) {
  for (absl::Duration d : config_.sizes) sizes_us_.push_back(absl::ToInt64Microseconds(d));
}

void PartitionWindows::Skip(int64_t offset, int64_t now_us) {
  ++counters_.undecodable;
  next_offset_ = offset + 1;
  if (last_progress_wall_us_ == INT64_MIN) last_progress_wall_us_ = now_us;
}

void PartitionWindows::Process(int64_t offset, const v1::Event& event, int64_t now_us,
                               EngineOutput& out) {
  next_offset_ = offset + 1;
  absl::StatusOr<std::vector<series::MappedPoint>> points =
      series::EventToPoints(event, config_.future_clock_lead);
  if (!points.ok()) {
    ++counters_.undecodable;
    if (last_progress_wall_us_ == INT64_MIN) last_progress_wall_us_ = now_us;
    return;
  }
  int64_t newest_uncorrected = INT64_MIN;
  for (series::MappedPoint& p : *points) {
    // Every uncorrected point moves the watermark, whatever its type, but never beyond its
    // ingest time: an event cannot have happened after it arrived, so a clock that runs
    // ahead by less than the correction threshold cannot push the other devices' points
    // into lateness.
    if (p.clock_corrected) {
      ++counters_.clock_corrected;
    } else {
      newest_uncorrected = std::max(newest_uncorrected, std::min(p.time_us, p.ingest_time_us));
    }
    double value = 0;
    if (!NumericValue(p.value, value)) {
      ++counters_.non_numeric;
      continue;
    }
    std::shared_ptr<const v1::Series>& series = series_[p.series_id];
    if (!series) {
      auto s = std::make_shared<v1::Series>();
      s->set_series_id(p.series_id);
      s->set_measure_name(p.measure_name);
      s->set_canonical_key(p.canonical_key);
      for (const auto& [k, v] : p.dimensions) (*s->mutable_dimensions())[k] = v;
      series = std::move(s);
    } else if (series->canonical_key() != p.canonical_key) {
      // Another series with the same id: the writer refuses its points, so it is not counted.
      ++counters_.series_collisions;
      continue;
    }
    ++counters_.points;
    AddPoint(offset, series, p.time_us, {value, p.version}, p.value, out);
  }
  if (newest_uncorrected != INT64_MIN || last_progress_wall_us_ == INT64_MIN) {
    last_progress_wall_us_ = now_us;
  }
  // The watermark moves after the record's own points, and never for corrected points.
  if (newest_uncorrected != INT64_MIN && newest_uncorrected > max_event_us_) {
    max_event_us_ = newest_uncorrected;
  }
  const int64_t candidate =
      SaturatingSub(max_event_us_, absl::ToInt64Microseconds(config_.out_of_orderness));
  if (candidate > watermark_us_) AdvanceWatermark(candidate, offset, out);
}

void PartitionWindows::AddPoint(int64_t offset, const std::shared_ptr<const v1::Series>& series,
                                int64_t time_us, const WindowPoint& point,
                                const v1::MeasureValue& raw_value, EngineOutput& out) {
  const int64_t lateness = absl::ToInt64Microseconds(config_.allowed_lateness);
  v1::LatePoint* late = nullptr;
  for (int64_t size : sizes_us_) {
    const int64_t start = FloorTo(time_us, size);
    const int64_t end = start + size;
    if (watermark_us_ != INT64_MIN && end + lateness <= watermark_us_) {
      // Beyond allowed lateness: the window's state is gone; the writer repairs it from the
      // stored raw points.
      if (late == nullptr) {
        late = &out.late.emplace_back();
        *late->mutable_series() = *series;
        late->set_time_us(time_us);
        *late->mutable_value() = raw_value;
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
    auto [it, created] = windows_.try_emplace(key);
    Window& w = it->second;
    if (created) {
      w.series = series;
      w.first_offset = offset;
      ++counters_.windows_opened;
      by_eviction_.insert({end + lateness, key});
      if (watermark_us_ == INT64_MIN || end > watermark_us_) by_end_.insert({end, key});
    }
    const bool closed = watermark_us_ != INT64_MIN && end <= watermark_us_;
    if (closed) ++counters_.late_within_lateness;
    if (ApplyPoint(w.points, time_us, point) && closed) Emit(key, w, offset, out);
  }
}

void PartitionWindows::AdvanceWatermark(int64_t watermark_us, int64_t version_offset,
                                        EngineOutput& out) {
  watermark_us_ = watermark_us;
  while (!by_end_.empty() && by_end_.begin()->first <= watermark_us_) {
    const Key key = by_end_.begin()->second;
    by_end_.erase(by_end_.begin());
    Emit(key, windows_.at(key), version_offset, out);
  }
  while (!by_eviction_.empty() && by_eviction_.begin()->first <= watermark_us_) {
    const int64_t series_id = by_eviction_.begin()->second.series_id;
    windows_.erase(by_eviction_.begin()->second);
    by_eviction_.erase(by_eviction_.begin());
    // A series no live window refers to is forgotten, so quiet series cost no memory.
    if (auto it = series_.find(series_id); it != series_.end() && it->second.use_count() == 1) {
      series_.erase(it);
    }
  }
}

void PartitionWindows::Emit(const Key& key, Window& w, int64_t version_offset, EngineOutput& out) {
  const AggregateValues a = Aggregate(w.points);
  v1::WindowAggregate& agg = out.emissions.emplace_back();
  *agg.mutable_series() = *w.series;
  agg.set_window_size_us(key.size_us);
  agg.set_window_start_us(key.start_us);
  agg.set_count(a.count);
  agg.set_sum(a.sum);
  agg.set_min(a.min);
  agg.set_max(a.max);
  agg.set_avg(a.avg);
  agg.set_first(a.first);
  agg.set_last(a.last);
  agg.set_version(2 * version_offset);
  if (w.emitted) {
    ++counters_.re_emitted;
  } else {
    ++counters_.emitted;
  }
  w.emitted = true;
}

void PartitionWindows::AdvanceIfIdle(int64_t now_us, EngineOutput& out) {
  if (last_progress_wall_us_ == INT64_MIN) return;  // nothing processed: nothing to close
  // Idle means no record moved the watermark for the idle timeout, so that a partition of
  // clock-corrected or undecodable records still closes its windows.
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
  return c;
}

}  // namespace tidemark::aggregator
