#include "common/series/series_names.h"

#include <algorithm>
#include <tuple>

namespace tidemark::series {

const SeriesNames::Named& SeriesNames::Device::Find(absl::string_view measure_name, ValueKind kind,
                                                    size_t& from) {
  auto before = [&](const Named& n) {
    return std::tie(n.measure_name, n.kind) < std::make_tuple(measure_name, kind);
  };
  while (from < series_.size() && before(series_[from])) ++from;
  if (from < series_.size() && series_[from].measure_name == measure_name &&
      series_[from].kind == kind) {
    return series_[from++];
  }
  Named& named = *series_.emplace(series_.begin() + static_cast<ptrdiff_t>(from++));
  named.measure_name = std::string(measure_name);
  named.kind = kind;
  // CanonicalKey(name, {}, kind) is the escaped name, "{}" and the kind's suffix; the
  // dimensions go between the braces.
  const std::string alone = CanonicalKey(measure_name, {}, kind);
  const size_t braces = alone.rfind("{}");
  named.canonical_key = alone.substr(0, braces) + dimensions_key_ + alone.substr(braces + 2);
  named.series_id = SeriesId(named.canonical_key);
  return named;
}

SeriesNames::Device& SeriesNames::Of(const EventView& event, size_t max_devices) {
  auto it = devices_.find(event.device_id());
  if (it != devices_.end()) {
    Device& known = it->second;
    // Both sorted by name, each name once.
    if (std::equal(known.event_dimensions_.begin(), known.event_dimensions_.end(),
                   event.dimensions().begin(), event.dimensions().end(),
                   [](const auto& a, const auto& b) {
                     return a.first == b.first && a.second == b.second;
                   })) {
      if (known.series_.size() > kMaxNamesPerDevice) known.series_.clear();
      return known;
    }
    devices_.erase(it);
  }
  if (devices_.size() > max_devices) devices_.clear();
  Device& d = devices_[std::string(event.device_id())];
  for (const auto& [name, value] : event.dimensions())
    d.event_dimensions_.emplace_back(name, value);
  d.dimensions_.insert(d.event_dimensions_.begin(), d.event_dimensions_.end());
  d.dimensions_[std::string(kDeviceIdDimension)] = std::string(event.device_id());
  d.dimensions_key_ = CanonicalKey("", d.dimensions_);
  return d;
}

}  // namespace tidemark::series
