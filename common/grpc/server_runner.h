#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace grpc {
class Service;
}

namespace tidemark::grpcutil {

struct ServerOptions {
  /// host:port; port 0 picks a free port, read back with GrpcServer::port(). A port that is
  /// already in use is an error (SO_REUSEPORT is off).
  std::string listen_address = "0.0.0.0:0";
  int max_receive_message_bytes = 16 * 1024 * 1024;
  /// Memory all calls together may hold (requests being read and parsed, answers being
  /// written); beyond it gRPC refuses new calls with RESOURCE_EXHAUSTED instead of growing, so
  /// that many concurrent large calls cannot exhaust the process.
  int64_t memory_quota_bytes = int64_t{1} << 30;
  /// Calls one client connection may have open at once.
  int max_concurrent_streams = 256;
  /// Full names of the services health checking answers for besides "" (the whole server),
  /// e.g. "tidemark.v1.IngestService"; each follows SetServing.
  std::vector<std::string> health_service_names;
  /// Transport credentials (TLS); null is plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  /// gRPC server reflection, which lists every service and message to any caller.
  bool reflection = false;
};

/// A started gRPC server with grpc.health.v1 health checking (never behind credentials, so
/// that probes work) and, when enabled, server reflection.
/// Health starts NOT_SERVING; the owner sets it with SetServing.
/// The services passed in must outlive it.
class GrpcServer final {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const ServerOptions& options, const std::vector<grpc::Service*>& services);
  ~GrpcServer();

  int port() const { return port_; }
  /// Sets the health of "" and of every name in health_service_names. Thread-safe.
  void SetServing(bool serving);
  /// Marks the server NOT_SERVING, stops taking calls and waits up to `grace` for calls in
  /// flight before cancelling them. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer() = default;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::string> health_names_;
  int port_ = 0;
  bool shut_down_ = false;
};

/// The port of a host:port (or [v6]:port) address; -1 when it has none or it is malformed.
int PortOf(const std::string& address);

}  // namespace tidemark::grpcutil
