#include "services/timestream-writer/writer_core.h"

#include <cmath>

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

namespace {

series::Problem InvalidAggregate(std::string message) {
  return {v1::REJECT_REASON_INVALID_AGGREGATE, std::move(message)};
}

std::optional<series::Problem> CheckSeries(const v1::Series& s) {
  if (s.canonical_key().empty()) return InvalidAggregate("the series has no canonical_key");
  if (!series::IsStorableText(s.canonical_key())) {
    return series::Problem{v1::REJECT_REASON_INVALID_TEXT,
                           "canonical_key is not valid UTF-8 or contains a NUL character"};
  }
  // The id is what the store keys windows by; one that is not the key's would file the window
  // under another series.
  if (series::SeriesId(s.canonical_key()) != s.series_id()) {
    return InvalidAggregate(absl::StrCat("series_id ", s.series_id(),
                                         " is not the id of canonical_key ", s.canonical_key()));
  }
  return std::nullopt;
}

std::optional<series::Problem> CheckWindow(int64_t size_us, int64_t start_us) {
  if (size_us <= 0) {
    return InvalidAggregate(
        absl::StrCat("window_size_us is ", size_us, ": a window has a positive size"));
  }
  // The store turns a window's start and size into times as an interval times the microseconds
  // (aggregate_store.cc), which PostgreSQL computes in float8: exact to 2^53 us, about 285
  // years either side of 1970. Beyond, two windows could share a key (the upsert then fails
  // for ever) or one be stored off its size's multiples. Ingest's retention and future bound
  // keep every event far inside.
  constexpr int64_t kMaxExactUs = int64_t{1} << 53;
  if (size_us > kMaxExactUs || start_us < -kMaxExactUs || start_us > kMaxExactUs - size_us) {
    return InvalidAggregate(absl::StrCat("window of ", size_us, " us at ", start_us,
                                         " us is beyond the times Tidemark stores windows at "
                                         "(2^53 us from 1970)"));
  }
  if (start_us % size_us != 0) {
    return InvalidAggregate(absl::StrCat("window_start_us ", start_us,
                                         " is not a multiple of window_size_us ", size_us,
                                         ": tumbling windows start at multiples of their size"));
  }
  return std::nullopt;
}

}  // namespace

std::optional<series::Problem> CheckAggregate(const v1::WindowAggregate& a) {
  if (auto p = CheckSeries(a.series())) return p;
  if (auto p = CheckWindow(a.window_size_us(), a.window_start_us())) return p;
  if (a.count() <= 0) {
    return InvalidAggregate(
        absl::StrCat("count is ", a.count(), ": a window holds at least one point"));
  }
  for (const auto& [name, value] : {std::pair{"sum", a.sum()},
                                    {"min", a.min()},
                                    {"max", a.max()},
                                    {"avg", a.avg()},
                                    {"first", a.first()},
                                    {"last", a.last()}}) {
    if (!std::isfinite(value)) {
      return series::Problem{v1::REJECT_REASON_NON_FINITE_NUMBER,
                             absl::StrCat(name, " is not a finite number")};
    }
  }
  if (a.min() > a.max()) {
    return InvalidAggregate(absl::StrCat("min ", a.min(), " is above max ", a.max()));
  }
  return std::nullopt;
}

std::optional<series::Problem> CheckLatePoint(const v1::LatePoint& late) {
  if (auto p = CheckSeries(late.series())) return p;
  for (const v1::WindowRef& w : late.windows()) {
    if (auto p = CheckWindow(w.window_size_us(), w.window_start_us())) return p;
  }
  return std::nullopt;
}

BatchBuilder::BatchBuilder(absl::Duration future_clock_lead, int64_t retention_horizon_us,
                           series::SeriesNames* names)
    : future_clock_lead_(future_clock_lead),
      retention_horizon_us_(retention_horizon_us),
      names_(names != nullptr ? *names : own_names_) {}

void BatchBuilder::Add(size_t source, absl::string_view record_value) {
  // The mapping of series::EventToPoints (one point per measure in name order, the shared
  // storable rule, the future-clock correction, version = client version or ingest time),
  // reading the record in place and the series' names from the memo. writer_core_test checks
  // that the points are those of EventToPoints.
  if (!event_.Parse(record_value)) {
    rejections_.push_back({source, v1::REJECT_REASON_UNDECODABLE,
                           "record is not a tidemark.v1.Event", "", std::nullopt});
    return;
  }
  if (std::optional<series::Problem> problem = series::CheckStorable(event_)) {
    rejections_.push_back({source, problem->reason, std::move(problem->message), "", std::nullopt});
    return;
  }
  absl::StatusOr<int64_t> event_us = time::ToMicros(event_.time(), event_.time_unit());
  if (!event_us.ok()) {
    rejections_.push_back({source, v1::REJECT_REASON_UNDECODABLE,
                           std::string(event_us.status().message()), "", std::nullopt});
    return;
  }
  const time::CorrectedTime t =
      time::CorrectFutureClock(*event_us, event_.ingest_time_us(), future_clock_lead_);
  // Every measure of an event has its time: one rejection for the record, not one per
  // measure (each carries the whole event to tidemark.rejected).
  if (t.time_us < retention_horizon_us_) {
    rejections_.push_back({source, v1::REJECT_REASON_TIME_BEFORE_RETENTION,
                           "event is older than the raw retention", "", std::nullopt});
    return;
  }
  const int64_t version = event_.has_version() ? event_.version() : event_.ingest_time_us();
  // Bounded well above any batch's devices, so that a fleet's names are built once.
  series::SeriesNames::Device& device = names_.Of(event_, 1 << 20);
  size_t next = 0;
  for (const auto& [name, value] : event_.measures()) {  // sorted by name
    AddPoint(source, device, device.Find(name, series::KindOf(value.value_case()), next), value, t,
             version);
  }
}

void BatchBuilder::AddPoint(size_t source, const series::SeriesNames::Device& device,
                            const series::SeriesNames::Named& named,
                            const series::MeasureValueView& value, const time::CorrectedTime& t,
                            int64_t version) {
  if (t.corrected) ++counters_.clock_corrected;
  auto [series_it, new_series] = series_.try_emplace(named.series_id);
  if (new_series) {
    SeriesRow& row = series_it->second;
    row.series_id = named.series_id;
    row.canonical_key = named.canonical_key;
    row.measure_name = named.measure_name;
    row.device_id = std::string(event_.device_id());
    row.dimensions_json = nlohmann::json(device.dimensions()).dump();
  } else if (series_it->second.canonical_key != named.canonical_key) {
    rejections_.push_back({source, v1::REJECT_REASON_SERIES_COLLISION,
                           absl::StrCat("series id ", named.series_id, " of ", named.canonical_key,
                                        " is already used by ", series_it->second.canonical_key),
                           named.measure_name, std::nullopt});
    return;
  }

  StagedPoint p{source, named.series_id, named.measure_name,     t.time_us,
                {},     version,         event_.ingest_time_us()};
  value.CopyTo(p.value);
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
    existing = std::move(p);
    return;
  }
  points_.push_back(std::move(p));
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
