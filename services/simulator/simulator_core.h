#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "tidemark/v1/ingest.pb.h"

namespace tidemark::simulator {

struct FleetConfig {
  int devices = 100;
  /// Share of devices that send the turbine format ({"turbineId", "speed"}); the rest send
  /// the Timestream sample format with four `_measure` keys.
  double turbine_share = 0.5;
  /// Share of Timestream-format records sent `late_time` late (the reference: 5%, 75 s).
  double percent_late = 5;
  absl::Duration late_time = absl::Seconds(75);
  /// Share of Timestream-format devices whose clock runs `clock_ahead` fast.
  double percent_clock_ahead = 2;
  absl::Duration clock_ahead = absl::Minutes(30);
  uint64_t seed = 1;
};

/// One request's worth of records for one format.
struct JsonBatch {
  v1::JsonFormat format = v1::JSON_FORMAT_UNSPECIFIED;
  std::vector<std::string> records;
  /// Points the records map to (measures per record summed).
  int64_t points = 0;
};

/// A fleet of simulated devices. Deterministic for a seed and a sequence of `now`s. Each
/// device's event times are unique, so every accepted record is one distinct point per
/// measure in the store.
class Fleet final {
 public:
  explicit Fleet(const FleetConfig& config);

  int timestream_devices() const { return timestream_devices_; }
  int turbine_devices() const { return config_.devices - timestream_devices_; }

  /// The next `count` Timestream-format records, devices in turn (a device recurs in a
  /// request larger than the fleet, at a later time).
  JsonBatch NextTimestreamBatch(int count, absl::Time now);
  /// The next `count` turbine records, turbines in turn. The format has no time: ingest gives
  /// each record its own arrival time, so a turbine may recur in a request.
  JsonBatch NextTurbineBatch(int count);

 private:
  FleetConfig config_;
  int timestream_devices_ = 0;
  std::mt19937_64 rng_;
  int next_timestream_ = 0;
  int next_turbine_ = 0;
  std::vector<double> temperature_;
  absl::flat_hash_set<std::pair<int, int64_t>> used_times_;
};

/// Device ids as the reference documents spell them.
std::string TimestreamDeviceId(int n);
std::string TurbineId(int n);

}  // namespace tidemark::simulator
