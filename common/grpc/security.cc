#include "common/grpc/security.h"

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/client_interceptor.h"

namespace tidemark::grpcutil {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad setting --", setting, ": cannot read ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad setting --", setting, ": ", path, " holds no PEM block"));
  }
  return text.str();
}

// Adds "authorization: Bearer <token>" to every call of the channel. An interceptor rather
// than call credentials, because gRPC refuses call credentials on a plaintext channel and a
// deployment may terminate TLS in front of Tidemark.
class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(absl::string_view token) : header_(absl::StrCat("Bearer ", token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerToken(&header_);
  }

 private:
  const std::string header_;
};

}  // namespace

absl::Status Validate(const ServerSecurity& s) {
  if (s.tls_cert_file.empty() != s.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "bad settings --tls_cert_file and --tls_key_file: set both (TLS) or neither");
  }
  if (!s.tls() && (!s.tls_client_ca_file.empty() || s.tls_require_client_cert)) {
    return absl::InvalidArgumentError(
        "bad settings: client certificates (--tls_client_ca_file, --tls_require_client_cert) "
        "need TLS (--tls_cert_file and --tls_key_file)");
  }
  if (s.tls_require_client_cert && s.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "bad setting --tls_require_client_cert: needs --tls_client_ca_file to verify them");
  }
  if (s.tls_refresh_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("bad setting --tls_refresh_interval: at least 1s");
  }
  for (const auto& [setting, path] :
       std::map<std::string, std::string>{{"tls_cert_file", s.tls_cert_file},
                                          {"tls_key_file", s.tls_key_file},
                                          {"tls_client_ca_file", s.tls_client_ca_file}}) {
    if (path.empty()) continue;
    if (absl::StatusOr<std::string> pem = ReadPem(setting, path); !pem.ok()) return pem.status();
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const ServerSecurity& s) {
  if (!s.tls()) return grpc::InsecureServerCredentials();
  const auto refresh = static_cast<unsigned>(absl::ToInt64Seconds(s.tls_refresh_interval));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      s.tls_key_file, s.tls_cert_file, s.tls_client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!s.tls_client_ca_file.empty()) {
    options.watch_root_certs();
    // Verified when presented; required only when asked, so that token clients without a
    // certificate still connect.
    options.set_cert_request_type(s.tls_require_client_cert
                                      ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::unique_ptr<auth::Authenticator>> AuthenticatorFor(
    const ServerSecurity& s, std::shared_ptr<spdlog::logger> logger) {
  if (!s.credentials_file.empty()) {
    return auth::Authenticator::FromFile(s.credentials_file, std::move(logger));
  }
  if (s.allow_unauthenticated) return auth::Authenticator::Open();
  return absl::InvalidArgumentError(
      "no credentials file: set --credentials_file (TIDEMARK_CREDENTIALS_FILE) to check "
      "bearer tokens and client certificates, or --allow_unauthenticated "
      "(TIDEMARK_ALLOW_UNAUTHENTICATED=true) to serve without checking");
}

std::string Describe(const ServerSecurity& s) {
  return absl::StrCat(
      "tls=", s.tls() ? "on" : "off", " client_certificates=",
      s.tls_client_ca_file.empty() ? "off" : (s.tls_require_client_cert ? "required" : "verified"),
      " auth=",
      !s.credentials_file.empty() ? "credentials_file"
                                  : (s.allow_unauthenticated ? "none" : "unset"),
      " reflection=", s.reflection ? "on" : "off");
}

CallCredentials CredentialsOf(const grpc::ServerContextBase& ctx) {
  CallCredentials c;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    c.authorization.assign(it->second.data(), it->second.size());
  }
  const std::shared_ptr<const grpc::AuthContext> auth_context = ctx.auth_context();
  if (auth_context && auth_context->IsPeerAuthenticated()) {
    for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
      for (const grpc::string_ref& value : auth_context->FindPropertyValues(property)) {
        c.certificate_identities.emplace_back(value.data(), value.size());
      }
    }
  }
  return c;
}

absl::StatusOr<auth::Principal> CallPrincipal(auth::Authenticator& authenticator,
                                              const grpc::ServerContextBase& ctx) {
  if (authenticator.open()) return auth::Unrestricted();
  const CallCredentials c = CredentialsOf(ctx);
  return authenticator.Authenticate(c.authorization, c.certificate_identities);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientSecurity& s,
                                                           grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (s.uses_tls()) {
    grpc::SslCredentialsOptions ssl;
    if (!s.ca_file.empty()) {
      absl::StatusOr<std::string> roots = ReadPem("tls_ca_file", s.ca_file);
      if (!roots.ok()) return roots.status();
      ssl.pem_root_certs = *std::move(roots);
    }
    if (s.cert_file.empty() != s.key_file.empty()) {
      return absl::InvalidArgumentError(
          "bad settings --tls_client_cert_file and --tls_client_key_file: set both or neither");
    }
    if (!s.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadPem("tls_client_cert_file", s.cert_file);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadPem("tls_client_key_file", s.key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    if (!s.server_name.empty()) args.SetSslTargetNameOverride(s.server_name);
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!s.token.empty()) interceptors.push_back(std::make_unique<BearerTokenFactory>(s.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(address, credentials, args,
                                                                 std::move(interceptors));
}

}  // namespace tidemark::grpcutil
