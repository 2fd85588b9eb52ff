#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tidemark::aggregator {

/// A numeric point held in a window: its value and the version that put it there.
struct WindowPoint {
  double value = 0;
  int64_t version = 0;
};

/// The points of one window of one series, by time (µs). One value per instant: the version
/// rules of the store (DESIGN §3) are applied as points arrive. A vector sorted by time:
/// points nearly always arrive in time order, so an insert is an append that touches one
/// cache line, and an emission walks contiguous memory (aggregator_bench: ApplyPoint was the
/// engine's largest cost with a B-tree, mostly misses on its nodes). A point out of order is
/// inserted in place, which moves the later points of its window.
class WindowPoints {
 public:
  struct Entry {
    int64_t time_us;
    WindowPoint point;
  };
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  const Entry& front() const { return entries_.front(); }
  const Entry& back() const { return entries_.back(); }
  /// Room for `n` points, so that a window filled as the one before it was grows no more.
  void reserve(size_t n) { entries_.reserve(n); }

 private:
  friend bool ApplyPoint(WindowPoints& points, int64_t time_us, WindowPoint point);
  std::vector<Entry> entries_;
};

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
