#include "common/grpc/serve.h"

#include "common/grpc/server_runner.h"

namespace tidemark::grpcutil {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

int ServeUntilShutdown(process::ShutdownSignal& shutdown, const metrics::Registry& registry,
                       const std::vector<grpc::Service*>& services, const ServeOptions& options,
                       spdlog::logger& logger) {
  auto metrics_server =
      metrics::MetricsServer::Start(registry, options.metrics_host, options.metrics_port);
  if (!metrics_server.ok()) {
    logger.critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  auto server = GrpcServer::Start({.listen_address = options.listen_address}, services);
  if (!server.ok()) {
    logger.critical("msg=\"{}\"", server.status().message());
    return 1;
  }
  logger.info("msg=\"serving\" grpc_port={} metrics_port={}", (*server)->port(),
              (*metrics_server)->port());
  const int sig = shutdown.Wait();
  logger.info("msg=\"shutting down\" signal={}", sig);
  (*server)->Shutdown(options.shutdown_grace);
  return process::ShutdownSignal::ExitCode();
}

}  // namespace tidemark::grpcutil
