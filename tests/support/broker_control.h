#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace httplib {
class Client;
}

namespace tidemark::testing {

/// A client of the development broker's fault controls (tools/devbroker/README.md). Each call
/// returns the cluster's state after the change, or the broker's error.
class BrokerControl final {
 public:
  /// `address` is the host:port the devbroker wrote to its --control_file.
  explicit BrokerControl(const std::string& address);
  ~BrokerControl();

  absl::StatusOr<nlohmann::json> State();
  absl::StatusOr<nlohmann::json> Down(int broker);
  absl::StatusOr<nlohmann::json> Up(int broker);
  /// Moves the broker's leaders and pinned coordinators to the next broker that is up.
  absl::StatusOr<nlohmann::json> Failover(int broker);
  /// Every partition's leader to the next broker that is up.
  absl::StatusOr<nlohmann::json> RotateLeaders();
  absl::StatusOr<nlohmann::json> SetLeader(const std::string& topic, int partition, int broker);
  absl::StatusOr<nlohmann::json> SetGroupCoordinator(const std::string& group, int broker);

 private:
  absl::StatusOr<nlohmann::json> Call(const std::string& method, const std::string& path);
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace tidemark::testing
