#include "services/simulator/simulator_core.h"

#include <set>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tidemark::simulator {
namespace {

TEST(Fleet, SplitsDevicesBetweenFormats) {
  Fleet f({.devices = 10, .turbine_share = 0.3});
  EXPECT_EQ(f.turbine_devices(), 3);
  EXPECT_EQ(f.timestream_devices(), 7);
}

// A request holds several records of a device (ingest stamps each event apart), each at its
// own time.
TEST(Fleet, DevicesRecurWithinARequestAtUniqueTimes) {
  Fleet f({.devices = 4, .turbine_share = 0.5, .percent_late = 50, .seed = 3});
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  std::set<std::pair<std::string, double>> seen;
  for (int round = 0; round < 50; ++round) {
    JsonBatch b = f.NextTimestreamBatch(10, now);
    EXPECT_EQ(b.records.size(), 10u);
    EXPECT_EQ(b.points, 40);
    for (const std::string& r : b.records) {
      const nlohmann::json j = nlohmann::json::parse(r);
      EXPECT_TRUE(seen.insert({j["DeviceID"], j["Time"].get<double>()}).second) << r;
    }
    EXPECT_EQ(f.NextTurbineBatch(10).records.size(), 10u);
  }
}

TEST(Fleet, ClockAheadDevicesSendFutureTimes) {
  Fleet f({.devices = 10,
           .turbine_share = 0,
           .percent_late = 0,
           .percent_clock_ahead = 10,
           .clock_ahead = absl::Minutes(30)});
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  JsonBatch b = f.NextTimestreamBatch(10, now);
  const double last_ms = nlohmann::json::parse(b.records.back())["Time"].get<double>();
  EXPECT_NEAR(last_ms, absl::ToUnixMillis(now + absl::Minutes(30)), 1);
  const double first_ms = nlohmann::json::parse(b.records.front())["Time"].get<double>();
  EXPECT_NEAR(first_ms, absl::ToUnixMillis(now), 1);
}

}  // namespace
}  // namespace tidemark::simulator
