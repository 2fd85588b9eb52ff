#include "absl/flags/flag.h"
#include "common/grpc/security_flags.h"

ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain the gRPC server presents (with --tls_key_file: TLS); re-read "
          "every --tls_refresh_interval");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle that client certificates are verified against (mutual TLS)");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "Refuse TLS connections without a client certificate signed by --tls_client_ca_file");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Seconds(10),
          "How often the certificate, key and client CA files are re-read");
ABSL_FLAG(std::string, credentials_file, "",
          "Bearer tokens (stored as SHA-256) and client-certificate identities with their "
          "scopes, one per line; re-read when it changes (docs/security.md)");
ABSL_FLAG(bool, allow_unauthenticated, false,
          "Serve the API without checking credentials (only on a trusted network)");
ABSL_FLAG(bool, grpc_reflection, false, "Enable gRPC server reflection");

namespace tidemark::grpcutil {

absl::StatusOr<ServerSecurity> ServerSecurityFromFlags() {
  ServerSecurity s{.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file),
                   .tls_key_file = absl::GetFlag(FLAGS_tls_key_file),
                   .tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file),
                   .tls_require_client_cert = absl::GetFlag(FLAGS_tls_require_client_cert),
                   .tls_refresh_interval = absl::GetFlag(FLAGS_tls_refresh_interval),
                   .credentials_file = absl::GetFlag(FLAGS_credentials_file),
                   .allow_unauthenticated = absl::GetFlag(FLAGS_allow_unauthenticated),
                   .reflection = absl::GetFlag(FLAGS_grpc_reflection)};
  if (absl::Status status = Validate(s); !status.ok()) return status;
  return s;
}

absl::StatusOr<ServerAccess> ServerAccessFromFlags(std::shared_ptr<spdlog::logger> logger) {
  absl::StatusOr<ServerSecurity> security = ServerSecurityFromFlags();
  if (!security.ok()) return security.status();
  absl::StatusOr<std::unique_ptr<auth::Authenticator>> authenticator =
      AuthenticatorFor(*security, std::move(logger));
  if (!authenticator.ok()) return authenticator.status();
  return ServerAccess{*std::move(security), *std::move(authenticator)};
}

}  // namespace tidemark::grpcutil
