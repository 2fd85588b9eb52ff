#pragma once

#include <string>

#include "absl/time/time.h"
#include "common/grpc/security.h"

namespace tidemark::cli {

/// `tidemark health ADDRESS`: asks a service whether it can do its job and prints the answer.
/// ADDRESS is host:port of a gRPC server (the grpc.health.v1 protocol, for `service`, "" for
/// the whole server) or an http:// URL of a /health endpoint (services without gRPC answer on
/// their metrics port). Prints SERVING and returns 0, or prints why not and returns 1: the
/// exit status a container HEALTHCHECK or a script needs.
/// A gRPC probe connects with `security` (TLS when the server has it; health needs no token).
int RunHealth(const std::string& address, const std::string& service, absl::Duration timeout,
              const grpcutil::ClientSecurity& security);

}  // namespace tidemark::cli
