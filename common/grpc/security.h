#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/auth/authenticator.h"
#include "common/log/log.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/channel_arguments.h"

namespace tidemark::grpcutil {

/// How a gRPC server protects itself (docs/security.md).
struct ServerSecurity {
  /// PEM certificate chain and private key. Both empty: plaintext. They are read again every
  /// `tls_refresh_interval`, so that a renewed certificate is served without a restart.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// PEM CA bundle client certificates are verified against (mutual TLS). A client that
  /// presents a certificate this CA did not sign fails the handshake.
  std::string tls_client_ca_file;
  /// Refuse connections without a client certificate.
  bool tls_require_client_cert = false;
  absl::Duration tls_refresh_interval = absl::Seconds(10);
  /// The credentials file of auth::Authenticator (tokens and certificate identities).
  std::string credentials_file;
  /// Serve the API without checking credentials (trusted networks, tests).
  bool allow_unauthenticated = false;
  /// gRPC server reflection (lists the services and their messages to any caller).
  bool reflection = false;

  bool tls() const { return !tls_cert_file.empty(); }
};

/// Checks the settings (both or neither of cert and key; files readable; client-certificate
/// settings need TLS). INVALID_ARGUMENT naming the setting.
absl::Status Validate(const ServerSecurity& security);

/// The server's transport credentials: TLS (with client certificates when configured) that
/// follows changes to the files, or plaintext.
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const ServerSecurity& security);

/// The authenticator of a server with an API: backed by the credentials file, or open when
/// allow_unauthenticated. Refuses a server with neither, so that no API is served open by
/// accident.
absl::StatusOr<std::unique_ptr<auth::Authenticator>> AuthenticatorFor(
    const ServerSecurity& security, std::shared_ptr<spdlog::logger> logger);

/// A one-line description for the start-up log, e.g. "tls=on client_certificates=verified
/// auth=credentials_file reflection=off".
std::string Describe(const ServerSecurity& security);

/// What a call presents to be authenticated: its authorization header and the identities of
/// its verified client certificate. A copy, so that a long call can be authenticated again
/// (credentials are revoked and expire) without its context.
struct CallCredentials {
  std::string authorization;
  std::vector<std::string> certificate_identities;
};
CallCredentials CredentialsOf(const grpc::ServerContextBase& ctx);

/// The principal of a call, from its bearer token or verified client certificate.
absl::StatusOr<auth::Principal> CallPrincipal(auth::Authenticator& authenticator,
                                              const grpc::ServerContextBase& ctx);

/// How a client reaches a server.
struct ClientSecurity {
  /// TLS, trusting the system's CAs unless `ca_file` is set. Setting any of the TLS files or
  /// `server_name` turns TLS on too: a client certificate given for a plaintext connection
  /// would be ignored without a word.
  bool tls = false;
  std::string ca_file;
  /// Client certificate and key for mutual TLS.
  std::string cert_file;
  std::string key_file;
  /// The name the server's certificate must carry, when it differs from the address's host
  /// (e.g. connecting to 127.0.0.1 with a certificate for "localhost").
  std::string server_name;
  /// Bearer token sent with every call ("authorization: Bearer <token>").
  std::string token;

  bool uses_tls() const {
    return tls || !ca_file.empty() || !cert_file.empty() || !key_file.empty() ||
           !server_name.empty();
  }
};

/// A channel to `address` with `security`; fails when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    const std::string& address, const ClientSecurity& security,
    grpc::ChannelArguments args = grpc::ChannelArguments());

}  // namespace tidemark::grpcutil
