#include "services/aggregator/window_aggregate.h"

#include <algorithm>

namespace tidemark::aggregator {

AggregateValues Aggregate(const WindowPoints& points) {
  AggregateValues a;
  if (points.empty()) return a;
  a.min = a.max = points.front().point.value;
  for (const WindowPoints::Entry& e : points) {
    ++a.count;
    a.sum += e.point.value;
    a.min = std::min(a.min, e.point.value);
    a.max = std::max(a.max, e.point.value);
  }
  a.avg = a.sum / static_cast<double>(a.count);
  a.first = points.front().point.value;
  a.last = points.back().point.value;
  return a;
}

bool ApplyPoint(WindowPoints& points, int64_t time_us, WindowPoint point) {
  std::vector<WindowPoints::Entry>& entries = points.entries_;
  if (entries.empty() || entries.back().time_us < time_us) {
    entries.push_back({time_us, point});
    return true;
  }
  auto it = std::lower_bound(entries.begin(), entries.end(), time_us,
                             [](const WindowPoints::Entry& e, int64_t t) { return e.time_us < t; });
  if (it == entries.end() || it->time_us != time_us) {
    entries.insert(it, {time_us, point});
    return true;
  }
  if (point.version <= it->point.version) return false;
  it->point = point;
  return true;
}

}  // namespace tidemark::aggregator
