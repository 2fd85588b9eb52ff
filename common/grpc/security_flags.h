#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/grpc/security.h"

namespace tidemark::grpcutil {

/// The server settings (--tls_cert_file, --credentials_file, ...), validated. Linked into
/// the services only (server_security_flags.cc).
absl::StatusOr<ServerSecurity> ServerSecurityFromFlags();

/// A server's security settings from its flags, with the authenticator they imply
/// (AuthenticatorFor): what ingest and query each set up before serving.
struct ServerAccess {
  ServerSecurity security;
  std::unique_ptr<auth::Authenticator> authenticator;
};
absl::StatusOr<ServerAccess> ServerAccessFromFlags(std::shared_ptr<spdlog::logger> logger);

/// The client settings (--tls_ca_file, --token_file, ...). Linked into the simulator and
/// the CLI (client_security_flags.cc).
absl::StatusOr<ClientSecurity> ClientSecurityFromFlags();

}  // namespace tidemark::grpcutil
