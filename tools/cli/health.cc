#include "tools/cli/health.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "tools/cli/rpc_status.h"

namespace tidemark::cli {
namespace {

using grpc::health::v1::HealthCheckResponse;

int Report(bool serving, const std::string& detail) {
  if (serving) {
    std::puts("SERVING");
    return 0;
  }
  std::printf("NOT_SERVING%s%s\n", detail.empty() ? "" : ": ", detail.c_str());
  return 1;
}

int HttpHealth(const std::string& url, absl::Duration timeout) {
  const std::string rest = url.substr(std::string("http://").size());
  const size_t slash = rest.find('/');
  const std::string host_port = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/health" : rest.substr(slash);
  httplib::Client client(absl::StrCat("http://", host_port));
  // Whole seconds would make --timeout=500ms no time at all.
  const int64_t micros = absl::ToInt64Microseconds(timeout);
  client.set_connection_timeout(micros / 1'000'000, micros % 1'000'000);
  client.set_read_timeout(micros / 1'000'000, micros % 1'000'000);
  httplib::Result res = client.Get(path);
  if (!res) {
    std::fprintf(stderr, "tidemark: UNAVAILABLE: %s: %s\n", url.c_str(),
                 httplib::to_string(res.error()).c_str());
    return 1;
  }
  if (res->status == 200) return Report(true, "");
  std::string body = res->body;
  while (!body.empty() && body.back() == '\n') body.pop_back();
  if (absl::StartsWith(body, "NOT_SERVING")) {
    std::printf("%s\n", body.c_str());
    return 1;
  }
  return Report(false, absl::StrCat("HTTP ", res->status, " ", body));
}

}  // namespace

int RunHealth(const std::string& address, const std::string& service, absl::Duration timeout,
              const grpcutil::ClientSecurity& security) {
  if (absl::StartsWith(address, "http://")) return HttpHealth(address, timeout);
  // Mistakes of the command line are not the service's health: exit 2, not NOT_SERVING.
  // gRPC takes its own schemes (dns:///, unix:///); https:// would be taken for a host name.
  if (absl::StartsWith(address, "https://")) {
    std::fprintf(stderr,
                 "tidemark: health takes a gRPC target (HOST:PORT, dns:///HOST:PORT) or an "
                 "http:// URL (the metrics port serves plain HTTP), not %s\n",
                 address.c_str());
    return 2;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = grpcutil::MakeChannel(address, security);
  if (!channel.ok()) {
    std::fprintf(stderr, "tidemark: %s\n", std::string(channel.status().message()).c_str());
    return 2;
  }
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  const grpc::Status status = stub->Check(&ctx, req, &resp);
  if (!status.ok()) return Fail(status);
  switch (resp.status()) {
    case HealthCheckResponse::SERVING:
      return Report(true, "");
    case HealthCheckResponse::NOT_SERVING:
      return Report(false, "");
    case HealthCheckResponse::SERVICE_UNKNOWN:
    case HealthCheckResponse::UNKNOWN:
    default:
      std::printf("%s\n", HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
      return 1;
  }
}

}  // namespace tidemark::cli
