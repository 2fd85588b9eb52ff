#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/series/event_view.h"
#include "common/series/series_names.h"
#include "services/aggregator/window_aggregate.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::aggregator {

struct WindowConfig {
  /// Tumbling window sizes; every numeric series is windowed at each.
  std::vector<absl::Duration> sizes = {absl::Minutes(5)};
  /// Watermark = max event time seen on the partition minus this.
  absl::Duration out_of_orderness = absl::Seconds(5);
  /// A point for a window whose end is behind the watermark by less than this updates the
  /// window and re-emits it; later points go to tidemark.late for repair.
  absl::Duration allowed_lateness = absl::Minutes(2);
  /// A partition where no record brought an uncorrected point a window could still take for
  /// this long (a replay after a restart aside) advances its watermark with the wall clock.
  absl::Duration idle_timeout = absl::Seconds(30);
  absl::Duration future_clock_lead = absl::Minutes(15);
};

/// Where a partition's window state can be rebuilt from: replaying from `offset` with the
/// watermark restored reproduces every window that was open (DESIGN §3, delivery).
struct Checkpoint {
  int64_t offset = 0;
  int64_t watermark_us = INT64_MIN;
  int64_t max_event_us = INT64_MIN;
  /// A window size the checkpoint was taken with: its offset is where its live windows
  /// begin. Windows of a size added at an earlier restart that start before
  /// `incomplete_before_us` may hold points no replay reaches (INT64_MIN: none).
  struct Size {
    int64_t size_us = 0;
    int64_t incomplete_before_us = INT64_MIN;
    friend bool operator==(const Size&, const Size&) = default;
  };
  std::vector<Size> sizes;
  /// The allowed lateness it was taken with (-1: not recorded, as in "v1" and "v2"):
  /// windows it had evicted by `watermark_us` are not rebuilt by the replay.
  int64_t lateness_us = -1;
  /// The offset after the last record processed when it was taken (-1: not recorded): the
  /// records a restart replays are those from `offset` up to it.
  int64_t replay_end = -1;
  /// Whether records were processed before it (metadata was committed, or an offset was
  /// set without metadata, by hand): without sizes, every size is taken as new.
  bool after_records = false;
  /// Commit metadata form: "v3 <watermark_us> <max_event_us>
  /// <size_us>[@<incomplete_before_us>],... <lateness_us> <replay_end>" (v2 has neither).
  std::string Encode() const;
  static absl::StatusOr<Checkpoint> Decode(int64_t offset, const std::string& metadata);
};

struct EngineCounters {
  int64_t points = 0;
  int64_t non_numeric = 0;
  int64_t clock_corrected = 0;
  int64_t late_within_lateness = 0;
  int64_t beyond_lateness = 0;
  int64_t windows_opened = 0;
  int64_t emitted = 0;
  int64_t re_emitted = 0;
  int64_t undecodable = 0;
  /// Points of a series whose id another live series already has.
  int64_t series_collisions = 0;
  /// Revisions of windows of a size added since the checkpoint, which may hold points from
  /// before the replay, sent for repair instead of emitted.
  int64_t added_size_repairs = 0;
};

/// One revision of a window's aggregate, read with the accessors of the v1::WindowAggregate
/// it is produced as. The message, a copy of the series with its dimensions, is built only
/// for the revisions a caller produces (ToProto): most are replaced by a later revision of
/// the same window within the batch.
class Emission {
 public:
  Emission(std::shared_ptr<const v1::Series> series, int64_t window_size_us,
           int64_t window_start_us, const AggregateValues& values, int64_t version)
      : series_(std::move(series)),
        window_size_us_(window_size_us),
        window_start_us_(window_start_us),
        values_(values),
        version_(version) {}

  const v1::Series& series() const { return *series_; }
  int64_t window_size_us() const { return window_size_us_; }
  int64_t window_start_us() const { return window_start_us_; }
  int64_t count() const { return values_.count; }
  double sum() const { return values_.sum; }
  double min() const { return values_.min; }
  double max() const { return values_.max; }
  double avg() const { return values_.avg; }
  double first() const { return values_.first; }
  double last() const { return values_.last; }
  int64_t version() const { return version_; }
  v1::WindowAggregate ToProto() const;

 private:
  std::shared_ptr<const v1::Series> series_;
  int64_t window_size_us_;
  int64_t window_start_us_;
  AggregateValues values_;
  int64_t version_;
};

/// What processing produced. Emissions of the same window may repeat with increasing
/// versions; a caller may keep only the last of each before producing (coalescing).
struct EngineOutput {
  std::vector<Emission> emissions;
  std::vector<v1::LatePoint> late;
};

/// The windows of one Kafka partition of tidemark.raw. Pure: no I/O, no clock of its own
/// (wall time is passed in), so that it can be driven by scripted sequences.
///
/// Versions are derived from raw offsets, which order every revision of a window because a
/// series lives on one partition: the aggregate emitted after processing the record at
/// offset x has version 2x (it covers every in-lateness point of the window from records up
/// to x), and the repair of a point late beyond lateness at offset y has version 2y + 1
/// (computed by the writer once the store holds every raw record up to y). The highest
/// version of a window therefore always covers all of its points.
class PartitionWindows final {
 public:
  /// Resumes from `restored`, taken at wall time `restored_at_us`. A window size the
  /// checkpoint was not taken with may have windows holding points of records before its
  /// offset, which are not replayed: each revision of such a window (one starting before
  /// restored_at_us plus the future-clock lead, past which no earlier point can lie) goes to
  /// the late topic as a repair, so the writer computes it from every stored raw point. The
  /// checkpoint carries that bound on until no such window can be live, so that a later
  /// restart repairs the same windows.
  PartitionWindows(const WindowConfig& config, std::string raw_topic, int32_t partition,
                   const Checkpoint& restored, int64_t restored_at_us = INT64_MIN);

  /// Processes the raw record at `offset` (offsets increase), decoded. `now_us` is the wall
  /// clock, used only to notice idleness.
  void Process(int64_t offset, const series::EventView& event, int64_t now_us, EngineOutput& out);
  /// The same for an event held as a message.
  void Process(int64_t offset, const v1::Event& event, int64_t now_us, EngineOutput& out);
  /// A record that is not an event: skipped, but consumed.
  void Skip(int64_t offset, int64_t now_us);
  /// If no record brought a point a window could still take (nor was replayed) for the idle
  /// timeout, advances the watermark to the wall clock minus the out-of-orderness bound,
  /// closing and evicting windows.
  void AdvanceIfIdle(int64_t now_us, EngineOutput& out);

  /// Where to resume after a restart: the lowest offset a live window still needs, or the
  /// next offset when none does.
  Checkpoint CurrentCheckpoint() const;
  int64_t watermark_us() const { return watermark_us_; }
  size_t open_windows() const { return windows_.size(); }
  size_t tracked_series() const { return series_.size(); }
  const EngineCounters& counters() const { return counters_; }
  /// Whether a record was processed or skipped since the restore.
  bool consumed() const { return consumed_; }

 private:
  struct Key {
    int64_t series_id;
    int64_t size_us;
    int64_t start_us;
    friend bool operator==(const Key&, const Key&) = default;
    friend auto operator<=>(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.series_id, k.size_us, k.start_us);
    }
  };
  struct Window {
    std::shared_ptr<const v1::Series> series;
    WindowPoints points;
    int64_t first_offset = 0;
    bool emitted = false;
    /// Of a size added since the checkpoint, and may hold points not replayed.
    bool incomplete = false;
  };
  /// A tracked series, and per window size the window its last point went to: consecutive
  /// points of a series nearly always fall in the same windows, which are then updated
  /// without a lookup in windows_ (aggregator_bench: a third of the engine's time went to
  /// the cache misses of those lookups).
  struct SeriesState {
    std::shared_ptr<const v1::Series> series;
    struct Current {
      int64_t start_us = INT64_MIN;
      Window* window = nullptr;
    };
    absl::InlinedVector<Current, 2> current;  // by index into sizes_us_
    /// Live windows of the series: at zero it is forgotten (its Series may still be held by
    /// emissions not yet produced, so the pointer's use count cannot tell).
    int open_windows = 0;
  };
  /// Min-heap of windows by an instant (then key, so that ties pop in key order).
  using WindowQueue = std::priority_queue<std::pair<int64_t, Key>,
                                          std::vector<std::pair<int64_t, Key>>, std::greater<>>;

  /// Whether a point at `time_us` lands in a window of some size not yet beyond the
  /// lateness, so that its record counts as progress for the idle timeout.
  bool IsLive(int64_t time_us) const;
  void AddPoint(int64_t offset, SeriesState& state, int64_t time_us, const WindowPoint& point,
                const series::MeasureValueView& raw_value, EngineOutput& out);
  void AdvanceWatermark(int64_t watermark_us, int64_t version_offset, EngineOutput& out);
  void Emit(const Key& key, Window& w, int64_t version_offset, EngineOutput& out);

  WindowConfig config_;
  std::vector<int64_t> sizes_us_;
  std::string raw_topic_;
  int32_t partition_;
  /// Per size: windows starting before this may miss points of records before the restored
  /// offset (INT64_MIN: none, the checkpoint was taken with this size).
  std::vector<int64_t> incomplete_before_us_;
  int64_t watermark_us_;
  int64_t max_event_us_;
  int64_t next_offset_;
  /// Wall time of the last record with a point a window could still take (IsLive) or that
  /// was replayed, or of the first record.
  int64_t last_progress_wall_us_ = INT64_MIN;
  /// Records below this offset are a replay of what the checkpoint had processed: progress
  /// for the idle timeout, though behind the restored newest event time.
  int64_t replay_end_ = 0;
  /// So are records ingested before this wall time, when the checkpoint did not record its
  /// replay end (v1, v2): those are the ones it can have processed.
  int64_t replay_ingested_before_us_ = INT64_MIN;
  /// Nodes, so that SeriesState can point at a window until it is evicted.
  absl::node_hash_map<Key, Window> windows_;
  /// Windows not yet closed, by end; and every live window, by end + allowed lateness.
  WindowQueue by_end_;
  WindowQueue by_eviction_;
  absl::flat_hash_map<int64_t, SeriesState> series_;
  /// The canonical keys and ids of the series of recent devices, bounded by the series
  /// tracked.
  series::SeriesNames names_;
  /// The view Process(v1::Event) reads a message through, kept to reuse its allocations.
  series::EventView message_view_;
  EngineCounters counters_;
  bool consumed_ = false;
};

}  // namespace tidemark::aggregator
