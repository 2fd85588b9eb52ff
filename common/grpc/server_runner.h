#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"

namespace grpc {
class Service;
}

namespace tidemark::grpcutil {

struct ServerOptions {
  /// host:port; port 0 picks a free port, read back with GrpcServer::port().
  std::string listen_address = "0.0.0.0:0";
  int max_receive_message_bytes = 16 * 1024 * 1024;
};

/// A started gRPC server with grpc.health.v1 health checking and server reflection.
/// The services passed in must outlive it.
class GrpcServer final {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services);
  ~GrpcServer();

  int port() const { return port_; }
  /// Marks the server NOT_SERVING, stops taking calls and waits up to `grace` for calls in
  /// flight before cancelling them. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace tidemark::grpcutil
