#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc/security_flags.h"

ABSL_FLAG(bool, tls, false, "Connect with TLS, trusting the system's CAs");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect with TLS, trusting the CAs in this PEM file (implies --tls)");
ABSL_FLAG(std::string, tls_client_cert_file, "",
          "PEM client certificate for mutual TLS (with --tls_client_key_file; implies --tls)");
ABSL_FLAG(std::string, tls_client_key_file, "", "PEM private key of --tls_client_cert_file");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the server certificate must carry when it is not the address's host (implies "
          "--tls)");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token to send (the environment's TIDEMARK_TOKEN also works; "
          "avoid --token on a shared machine, where command lines are visible)");
ABSL_FLAG(std::string, token, "", "Bearer token to send; prefer --token_file or TIDEMARK_TOKEN");

namespace tidemark::grpcutil {

absl::StatusOr<ClientSecurity> ClientSecurityFromFlags() {
  ClientSecurity s{.tls = absl::GetFlag(FLAGS_tls),
                   .ca_file = absl::GetFlag(FLAGS_tls_ca_file),
                   .cert_file = absl::GetFlag(FLAGS_tls_client_cert_file),
                   .key_file = absl::GetFlag(FLAGS_tls_client_key_file),
                   .server_name = absl::GetFlag(FLAGS_tls_server_name),
                   .token = absl::GetFlag(FLAGS_token)};
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    std::ifstream in(path);
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad setting --token_file: cannot read ", path));
    }
    std::ostringstream text;
    text << in.rdbuf();
    s.token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (s.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad setting --token_file: ", path, " is empty"));
    }
  }
  return s;
}

}  // namespace tidemark::grpcutil
