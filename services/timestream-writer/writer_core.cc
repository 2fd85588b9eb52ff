#include "services/timestream-writer/writer_core.h"

#include "absl/strings/str_cat.h"
#include "common/series/series_key.h"
#include "common/series/storable.h"
#include "nlohmann/json.hpp"

namespace tidemark::writer {

bool SameValue(const v1::MeasureValue& a, const v1::MeasureValue& b) {
  if (a.value_case() != b.value_case()) return false;
  switch (a.value_case()) {
    case v1::MeasureValue::kDoubleValue:
      return a.double_value() == b.double_value();
    case v1::MeasureValue::kInt64Value:
      return a.int64_value() == b.int64_value();
    case v1::MeasureValue::kBoolValue:
      return a.bool_value() == b.bool_value();
    case v1::MeasureValue::kStringValue:
      return a.string_value() == b.string_value();
    case v1::MeasureValue::VALUE_NOT_SET:
      return true;
  }
  return false;
}

BatchBuilder::BatchBuilder(absl::Duration future_clock_lead, int64_t retention_horizon_us)
    : future_clock_lead_(future_clock_lead), retention_horizon_us_(retention_horizon_us) {}

void BatchBuilder::Add(size_t source, absl::string_view record_value) {
  v1::Event event;
  if (!event.ParseFromArray(record_value.data(), static_cast<int>(record_value.size()))) {
    rejections_.push_back({source, v1::REJECT_REASON_UNDECODABLE,
                           "record is not a tidemark.v1.Event", "", std::nullopt});
    return;
  }
  if (std::optional<series::Problem> problem = series::CheckStorable(event)) {
    rejections_.push_back({source, problem->reason, std::move(problem->message), "", std::nullopt});
    return;
  }
  absl::StatusOr<std::vector<series::MappedPoint>> points =
      series::EventToPoints(event, future_clock_lead_);
  if (!points.ok()) {
    rejections_.push_back({source, v1::REJECT_REASON_UNDECODABLE,
                           std::string(points.status().message()), "", std::nullopt});
    return;
  }
  for (series::MappedPoint& p : *points) AddPoint(source, std::move(p));
}

void BatchBuilder::AddPoint(size_t source, series::MappedPoint p) {
  if (p.time_us < retention_horizon_us_) {
    rejections_.push_back({source, v1::REJECT_REASON_TIME_BEFORE_RETENTION,
                           "point is older than the raw retention", p.measure_name, std::nullopt});
    return;
  }
  if (p.clock_corrected) ++counters_.clock_corrected;
  auto [series_it, new_series] = series_.try_emplace(p.series_id);
  if (new_series) {
    SeriesRow& row = series_it->second;
    row.series_id = p.series_id;
    row.canonical_key = p.canonical_key;
    row.measure_name = p.measure_name;
    row.device_id = p.dimensions[std::string(series::kDeviceIdDimension)];
    row.dimensions_json = nlohmann::json(p.dimensions).dump();
  } else if (series_it->second.canonical_key != p.canonical_key) {
    rejections_.push_back({source, v1::REJECT_REASON_SERIES_COLLISION,
                           absl::StrCat("series id ", p.series_id, " of ", p.canonical_key,
                                        " is already used by ", series_it->second.canonical_key),
                           p.measure_name, std::nullopt});
    return;
  }

  auto [it, inserted] = index_.try_emplace(Key{p.series_id, p.time_us}, points_.size());
  if (!inserted) {
    StagedPoint& existing = points_[it->second];
    if (p.version < existing.version) {
      ++counters_.stale;
      return;
    }
    if (p.version == existing.version) {
      if (SameValue(p.value, existing.value)) {
        ++counters_.duplicates;
      } else {
        rejections_.push_back({source, v1::REJECT_REASON_VERSION_CONFLICT,
                               "same series, time and version as an earlier record with a "
                               "different value",
                               p.measure_name, existing.version});
      }
      return;
    }
    ++counters_.stale;
    existing = StagedPoint{source,  p.series_id, std::move(p.measure_name), p.time_us,
                           p.value, p.version,   p.ingest_time_us};
    return;
  }
  points_.push_back(StagedPoint{source, p.series_id, std::move(p.measure_name), p.time_us,
                                std::move(p.value), p.version, p.ingest_time_us});
}

std::vector<SeriesRow> BatchBuilder::series() const {
  std::vector<SeriesRow> out;
  out.reserve(series_.size());
  for (const auto& [id, row] : series_) out.push_back(row);
  return out;
}

void BatchBuilder::DropSeries(const std::vector<int64_t>& series_ids, const std::string& message) {
  if (series_ids.empty()) return;
  absl::flat_hash_map<int64_t, bool> drop;
  for (int64_t id : series_ids) drop[id] = true;
  std::vector<StagedPoint> kept;
  kept.reserve(points_.size());
  for (StagedPoint& p : points_) {
    if (drop.contains(p.series_id)) {
      rejections_.push_back(
          {p.source, v1::REJECT_REASON_SERIES_COLLISION, message, p.measure_name, std::nullopt});
    } else {
      kept.push_back(std::move(p));
    }
  }
  points_ = std::move(kept);
  index_.clear();
}

}  // namespace tidemark::writer
