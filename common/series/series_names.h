#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "common/series/event_view.h"
#include "common/series/series_key.h"

namespace tidemark::series {

/// The series of recent devices, remembered: a memo of the pure function from (device id,
/// dimensions, measure name, kind) to the canonical key and id of EventToPoints, so that an
/// event of a known device builds no dimension map or key and hashes none. Building them was
/// a quarter of the window engine's time (aggregator_bench) and most of the writer's decoding.
/// Shared by the aggregator and the writer so that both name every series the same way;
/// window_engine_test and writer_core_test check the names are those of EventToPoints.
class SeriesNames {
 public:
  struct Named {
    std::string measure_name;
    ValueKind kind = ValueKind::kNumeric;
    std::string canonical_key;
    int64_t series_id = 0;
  };

  /// The series of one device id with one set of dimensions.
  class Device {
   public:
    /// The series' dimensions: the event's, with device_id added.
    const std::map<std::string, std::string>& dimensions() const { return dimensions_; }
    /// The series of `measure_name` of `kind`. An event's measures are sorted by name and a
    /// device sends the same ones each time, so each is found by walking both in step:
    /// `from` is where to look first, and moves past the series returned. The reference
    /// stays valid until the next call.
    const Named& Find(absl::string_view measure_name, ValueKind kind, size_t& from);
    /// Series remembered for the device (at most about kMaxNamesPerDevice).
    size_t remembered() const { return series_.size(); }

   private:
    friend class SeriesNames;
    std::vector<std::pair<std::string, std::string>> event_dimensions_;  // sorted
    std::map<std::string, std::string> dimensions_;
    /// `{k1="v1",...}`: CanonicalKey with an empty measure name.
    std::string dimensions_key_;
    std::vector<Named> series_;  // sorted by (measure name, kind)
  };

  /// The names of `event`'s device with the event's dimensions. Forgets every device first
  /// when more than `max_devices` are remembered (a memo: forgetting changes no result), and a
  /// device's series when it has more than kMaxNamesPerDevice (a gateway that sends a new
  /// measure name with every event would otherwise grow its list, and each insert, for ever).
  Device& Of(const EventView& event, size_t max_devices);
  static constexpr size_t kMaxNamesPerDevice = 1024;

 private:
  absl::flat_hash_map<std::string, Device> devices_;
};

}  // namespace tidemark::series
