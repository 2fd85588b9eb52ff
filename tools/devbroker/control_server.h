#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "tools/devbroker/dev_broker.h"

namespace httplib {
class Server;
}

namespace tidemark::devbroker {

/// The broker's fault controls over HTTP on a loopback address, for tests and operators
/// (curl). Every answer is JSON: the cluster's state after the change, or {"error": "..."}
/// with status 400 (bad request) or 404 (no such broker, topic or partition).
///
///   GET  /state                                    brokers (up?), leaders, coordinators
///   POST /brokers/{id}/down | /brokers/{id}/up     stop or restart a broker's listener
///   POST /brokers/{id}/failover                    move its leaders and pinned coordinators
///                                                  to the next broker that is up
///   POST /leaders/rotate                           every leader to the next broker that is up
///   POST /partitions/{topic}/{partition}/leader/{id}   one leader (-1: none)
///   POST /groups/{group}/coordinator/{id}          pin a consumer group's coordinator
class ControlServer final {
 public:
  /// Listens on `host`:`port` (0: any free port) until destroyed. `host` must be a loopback
  /// address: the interface has no authentication.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(DevBroker& broker,
                                                              const std::string& host, int port);
  ~ControlServer();
  int port() const { return port_; }

 private:
  ControlServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

/// Whether `host` is a loopback address the control interface may listen on.
bool IsLoopback(const std::string& host);

/// The state as the control interface reports it.
std::string StateJson(const ClusterState& state);

}  // namespace tidemark::devbroker
