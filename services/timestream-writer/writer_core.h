#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/kafka/batch_loop.h"
#include "common/series/event_points.h"
#include "common/series/event_view.h"
#include "common/series/series_names.h"
#include "common/series/storable.h"
#include "common/time/time_units.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::writer {

/// A point ready for the store, after the future-clock correction and in-batch dedup.
struct StagedPoint {
  /// Index of the Kafka record it came from in the batch.
  size_t source = 0;
  int64_t series_id = 0;
  std::string measure_name;
  int64_t time_us = 0;
  v1::MeasureValue value;
  int64_t version = 0;
  int64_t ingest_time_us = 0;
};

/// A series the batch refers to, for the `series` table.
struct SeriesRow {
  int64_t series_id = 0;
  std::string canonical_key;
  std::string measure_name;
  std::string device_id;
  /// JSON object of every dimension, device_id included.
  std::string dimensions_json;
};

/// A record, or one point of it, that the writer will not store, with the reason that
/// goes to tidemark.rejected.
using PointRejection = kafka::RecordRejection;

struct BatchCounters {
  int64_t clock_corrected = 0;
  /// Same series, time, version and value more than once in the batch.
  int64_t duplicates = 0;
  /// Lower version than another point of the same series and time in the batch.
  int64_t stale = 0;
};

/// Whether two values are the same value (same type and same bits for numbers).
bool SameValue(const v1::MeasureValue& a, const v1::MeasureValue& b);

/// Why a record of tidemark.aggregates is not a window the aggregator can emit, or nothing:
/// a series named by its canonical key and that key's id, a tumbling window (a positive size,
/// a start at a multiple of it since 1970, within the times Tidemark handles), at least one
/// point, finite values and min <= max. Rollup relies on the alignment: a bucket as wide as
/// the windows holds at most one window of each series.
std::optional<series::Problem> CheckAggregate(const v1::WindowAggregate& aggregate);

/// The same window rule for the windows a tidemark.late record asks to repair (a repair
/// stores the window it recomputes), and the series rule for its series.
std::optional<series::Problem> CheckLatePoint(const v1::LatePoint& late);

/// Builds one store batch from raw records: decodes each event, maps it to points with the
/// shared mapping, and applies the upsert rules inside the batch (DESIGN §3) so that each
/// (series, time) appears once: higher version wins, lower is stale, the same version and
/// value is a duplicate, the same version with a different value is a conflict. The first
/// record in offset order wins a conflict, so replays decide the same way.
class BatchBuilder final {
 public:
  /// `names` remembers series names across the batches of one caller (one batch is built
  /// at a time with it); a builder given none keeps its own.
  BatchBuilder(absl::Duration future_clock_lead, int64_t retention_horizon_us,
               series::SeriesNames* names = nullptr);

  /// Adds the record at batch position `source`.
  void Add(size_t source, absl::string_view record_value);

  const std::vector<StagedPoint>& points() const { return points_; }
  /// Series referred to by the batch, once each.
  std::vector<SeriesRow> series() const;
  std::vector<PointRejection>& rejections() { return rejections_; }
  const BatchCounters& counters() const { return counters_; }
  /// Drops the points of the given series (found colliding in the store).
  void DropSeries(const std::vector<int64_t>& series_ids, const std::string& message);

 private:
  struct Key {
    int64_t series_id;
    int64_t time_us;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.series_id, k.time_us);
    }
  };
  /// One point of the event in event_, which has passed the storable check.
  void AddPoint(size_t source, const series::SeriesNames::Device& device,
                const series::SeriesNames::Named& named, const series::MeasureValueView& value,
                const time::CorrectedTime& t, int64_t version);

  absl::Duration future_clock_lead_;
  int64_t retention_horizon_us_;
  series::SeriesNames own_names_;
  series::SeriesNames& names_;
  /// The record being added, decoded in place.
  series::EventView event_;
  std::vector<StagedPoint> points_;
  absl::flat_hash_map<Key, size_t> index_;
  absl::flat_hash_map<int64_t, SeriesRow> series_;
  std::vector<PointRejection> rejections_;
  BatchCounters counters_;
};

}  // namespace tidemark::writer
