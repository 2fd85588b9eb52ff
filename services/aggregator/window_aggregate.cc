#include "services/aggregator/window_aggregate.h"

#include <algorithm>

namespace tidemark::aggregator {

AggregateValues Aggregate(const WindowPoints& points) {
  AggregateValues a;
  if (points.empty()) return a;
  a.min = a.max = points.begin()->second.value;
  for (const auto& [time, p] : points) {
    ++a.count;
    a.sum += p.value;
    a.min = std::min(a.min, p.value);
    a.max = std::max(a.max, p.value);
  }
  a.avg = a.sum / static_cast<double>(a.count);
  a.first = points.begin()->second.value;
  a.last = points.rbegin()->second.value;
  return a;
}

bool ApplyPoint(WindowPoints& points, int64_t time_us, WindowPoint point) {
  auto [it, inserted] = points.try_emplace(time_us, point);
  if (inserted) return true;
  if (point.version <= it->second.version) return false;
  it->second = point;
  return true;
}

}  // namespace tidemark::aggregator
