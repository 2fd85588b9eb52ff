#pragma once

#include <cstdint>

#include "absl/container/btree_map.h"

namespace tidemark::aggregator {

/// A numeric point held in a window: its value and the version that put it there.
struct WindowPoint {
  double value = 0;
  int64_t version = 0;
};

/// The points of one window of one series, by time (µs). One value per instant: the version
/// rules of the store (DESIGN §3) are applied as points arrive. A B-tree: inserts are mostly
/// appends and every emission walks the whole window, both much cheaper than in std::map
/// (aggregator_bench: 3x the engine's events/s per core).
using WindowPoints = absl::btree_map<int64_t, WindowPoint>;

struct AggregateValues {
  int64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;
  double avg = 0;
  /// Values at the earliest and latest instant.
  double first = 0;
  double last = 0;
};

/// The aggregate of a non-empty window, summing in time order (so that a recomputation in
/// the same order gives the same bits).
AggregateValues Aggregate(const WindowPoints& points);

/// Applies a point to a window by the version rules. Returns whether the window changed:
/// a new instant, or a higher version. A lower version, or an equal version (the first
/// one stays, as the writer keeps the first of a conflicting pair), changes nothing.
bool ApplyPoint(WindowPoints& points, int64_t time_us, WindowPoint point);

}  // namespace tidemark::aggregator
