#include "common/grpc/serve.h"

#include "common/grpc/server_runner.h"
#include "common/metrics/health.h"

namespace tidemark::grpcutil {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

int ServeUntilShutdown(process::ShutdownSignal& shutdown, metrics::Registry& registry,
                       const std::vector<grpc::Service*>& services, const ServeOptions& options,
                       spdlog::logger& logger) {
  // The logger is shared with the caller, which owns it for the whole run.
  std::shared_ptr<spdlog::logger> shared_logger(&logger, [](spdlog::logger*) {});
  metrics::HealthMonitor health(
      options.health ? options.health : [] { return absl::OkStatus(); }, options.health_interrupt,
      registry, shared_logger);
  auto metrics_server = metrics::MetricsServer::Start(
      registry, options.metrics_host, options.metrics_port, [&health] { return health.Current(); });
  if (!metrics_server.ok()) {
    logger.critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  auto server = GrpcServer::Start({.listen_address = options.listen_address,
                                   .health_service_names = options.health_service_names,
                                   .credentials = ServerCredentialsFor(options.security),
                                   .reflection = options.security.reflection},
                                  services);
  if (!server.ok()) {
    logger.critical("msg=\"{}\"", server.status().message());
    return 1;
  }
  GrpcServer* grpc_server = server->get();
  health.SetListener([grpc_server](bool serving) { grpc_server->SetServing(serving); });
  logger.info("msg=\"serving\" grpc_port={} metrics_port={} {}", (*server)->port(),
              (*metrics_server)->port(), Describe(options.security));
  if (!options.security.tls()) {
    logger.warn(
        "msg=\"gRPC is plaintext: set --tls_cert_file and --tls_key_file unless TLS "
        "ends in front of this service\"");
  }
  const int sig = shutdown.Wait();
  logger.info("msg=\"shutting down\" signal={}", sig);
  // No health change may reach the server once it is shut down (it answers NOT_SERVING then).
  health.SetListener(nullptr);
  if (options.before_shutdown) options.before_shutdown();
  (*server)->Shutdown(options.shutdown_grace);
  return process::ShutdownSignal::ExitCode();
}

}  // namespace tidemark::grpcutil
