#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "grpcpp/support/status.h"

namespace grpc {
class Service;
}

namespace tidemark::grpcutil {

/// An absl::Status as the gRPC status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

struct ServeOptions {
  std::string listen_address;
  std::string metrics_host;
  int metrics_port = 0;
  /// How long calls in flight may finish after SIGTERM before they are cancelled.
  absl::Duration shutdown_grace = absl::Seconds(5);
};

/// Serves `services` over gRPC and the registry over HTTP /metrics until `shutdown` fires,
/// then shuts the server down gracefully. Returns the process's exit code.
int ServeUntilShutdown(process::ShutdownSignal& shutdown, const metrics::Registry& registry,
                       const std::vector<grpc::Service*>& services, const ServeOptions& options,
                       spdlog::logger& logger);

}  // namespace tidemark::grpcutil
