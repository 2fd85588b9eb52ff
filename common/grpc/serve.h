#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/grpc/security.h"
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
  /// Whether the service can do its job now (e.g. its broker or database is reachable); run
  /// every second off the RPC path. Health (gRPC and HTTP /health) is SERVING only while it
  /// returns OK. Empty: always OK.
  metrics::HealthCheck health;
  /// Ends a health check in progress early (see metrics::HealthMonitor); empty when the check
  /// cannot be ended.
  std::function<void()> health_interrupt;
  /// Full service names health checking answers for besides "", e.g.
  /// "tidemark.v1.IngestService", so that a probe naming the service gets an answer.
  std::vector<std::string> health_service_names;
  /// TLS, client certificates and reflection (credentials are checked by the services).
  ServerSecurity security;
  /// Runs when the shutdown signal arrives, before the server stops taking calls: for
  /// streams that would otherwise run until the grace period ends and be cancelled (a
  /// subscription ends with UNAVAILABLE instead, which tells its client to resume).
  std::function<void()> before_shutdown;
};

/// Serves `services` over gRPC, and the registry over HTTP /metrics with /health, until
/// `shutdown` fires, then shuts the server down gracefully. Returns the process's exit code:
/// 0 after a shutdown, 1 when a port cannot be bound (in use, for example).
int ServeUntilShutdown(process::ShutdownSignal& shutdown, metrics::Registry& registry,
                       const std::vector<grpc::Service*>& services, const ServeOptions& options,
                       spdlog::logger& logger);

}  // namespace tidemark::grpcutil
