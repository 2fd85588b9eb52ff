#pragma once

#include "absl/status/statusor.h"
#include "common/grpc/security.h"

namespace tidemark::grpcutil {

/// The server settings (--tls_cert_file, --credentials_file, ...), validated. Linked into
/// the services only (server_security_flags.cc).
absl::StatusOr<ServerSecurity> ServerSecurityFromFlags();

/// The client settings (--tls_ca_file, --token_file, ...). Linked into the simulator and
/// the CLI (client_security_flags.cc).
absl::StatusOr<ClientSecurity> ClientSecurityFromFlags();

}  // namespace tidemark::grpcutil
