#include "services/simulator/simulator_core.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace tidemark::simulator {

std::string TimestreamDeviceId(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

std::string TurbineId(int n) { return absl::StrFormat("turbine-%04d", n); }

Fleet::Fleet(const FleetConfig& config) : config_(config), rng_(config.seed) {
  timestream_devices_ = static_cast<int>(
      std::lround(config.devices * (1.0 - std::clamp(config.turbine_share, 0.0, 1.0))));
  temperature_.assign(timestream_devices_, 20.0);
}

JsonBatch Fleet::NextTimestreamBatch(int count, absl::Time now) {
  JsonBatch batch;
  batch.format = v1::JSON_FORMAT_TIMESTREAM_SAMPLE;
  if (timestream_devices_ == 0) return batch;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int clock_ahead_devices =
      static_cast<int>(std::lround(timestream_devices_ * config_.percent_clock_ahead / 100.0));
  for (int i = 0; i < count; ++i) {
    const int device = next_timestream_;
    next_timestream_ = (next_timestream_ + 1) % timestream_devices_;
    absl::Time t = now;
    // The last devices of the fleet are the ones whose clocks run fast.
    if (device >= timestream_devices_ - clock_ahead_devices) {
      t += config_.clock_ahead;
    } else if (unit(rng_) * 100.0 < config_.percent_late) {
      t -= config_.late_time;
    }
    int64_t us = absl::ToUnixMicros(t);
    while (!used_times_.insert({device, us}).second) ++us;
    temperature_[device] += (unit(rng_) - 0.5);
    batch.records.push_back(absl::StrFormat(
        "{\"Time\": %d.%03d, \"DeviceID\": \"%s\", \"temperature_measure\": %.2f, "
        "\"humidity_measure\": %.1f, \"voltage_measure\": %.1f, \"watt_measure\": %.2f}",
        us / 1000, us % 1000, TimestreamDeviceId(device + 1), temperature_[device],
        30 + 10 * unit(rng_), 220 + 20 * unit(rng_), 500 + 500 * unit(rng_)));
    batch.points += 4;
  }
  return batch;
}

JsonBatch Fleet::NextTurbineBatch(int count) {
  JsonBatch batch;
  batch.format = v1::JSON_FORMAT_TURBINE;
  const int turbines = turbine_devices();
  if (turbines == 0) return batch;
  std::uniform_int_distribution<int> speed(0, 100);
  for (int i = 0; i < count; ++i) {
    const int device = next_turbine_;
    next_turbine_ = (next_turbine_ + 1) % turbines;
    batch.records.push_back(absl::StrFormat("{\"turbineId\": \"%s\", \"speed\": %d}",
                                            TurbineId(device + 1), speed(rng_)));
    batch.points += 1;
  }
  return batch;
}

}  // namespace tidemark::simulator
