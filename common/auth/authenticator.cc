#include "common/auth/authenticator.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tidemark::auth {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read credentials file ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What changes when the file is replaced or rewritten.
std::string Signature(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
}

absl::Status Expired(const Principal& p, absl::Time now) {
  if (now < p.expires) return absl::OkStatus();
  return absl::UnauthenticatedError(
      absl::StrCat("the credential of \"", p.name, "\" expired at ", absl::FormatTime(p.expires)));
}

}  // namespace

std::unique_ptr<Authenticator> Authenticator::Open() {
  return std::unique_ptr<Authenticator>(new Authenticator());
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::FromFile(
    std::string path, std::shared_ptr<spdlog::logger> logger) {
  std::unique_ptr<Authenticator> a(new Authenticator());
  const std::string signature = Signature(path);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Credentials> parsed = ParseCredentials(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  a->path_ = std::move(path);
  a->logger_ = std::move(logger);
  absl::MutexLock lock(&a->mu_);
  a->current_ = std::make_shared<const Credentials>(*std::move(parsed));
  a->file_signature_ = signature;
  a->last_check_ = absl::Now();
  return a;
}

void Authenticator::MaybeReload(absl::Time now) {
  {
    absl::MutexLock lock(&mu_);
    if (now - last_check_ < absl::Seconds(1)) return;
    last_check_ = now;
  }
  const std::string signature = Signature(path_);
  {
    absl::MutexLock lock(&mu_);
    if (signature == file_signature_) return;
    file_signature_ = signature;
  }
  absl::StatusOr<std::string> text = ReadFile(path_);
  absl::StatusOr<Credentials> parsed =
      text.ok() ? ParseCredentials(*text) : absl::StatusOr<Credentials>(text.status());
  if (!parsed.ok()) {
    logger_->error(
        "msg=\"credentials file not reloaded; the previous one stays in force\" "
        "file={} error=\"{}\"",
        path_, parsed.status().message());
    return;
  }
  logger_->info("msg=\"credentials reloaded\" file={} tokens={} certificates={}", path_,
                parsed->by_token_sha256.size(), parsed->by_certificate.size());
  auto fresh = std::make_shared<const Credentials>(*std::move(parsed));
  absl::MutexLock lock(&mu_);
  // A later reload (this one stalled past the 1 s check interval) saw a newer file and may
  // have installed it already: an older file must not replace it.
  if (file_signature_ != signature) return;
  current_ = std::move(fresh);
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    absl::string_view authorization, const std::vector<std::string>& certificate_identities,
    absl::Time now) {
  if (open()) return Unrestricted();
  MaybeReload(now);
  std::shared_ptr<const Credentials> creds;
  {
    absl::MutexLock lock(&mu_);
    creds = current_;
  }
  if (!authorization.empty()) {
    absl::string_view token = absl::StripAsciiWhitespace(authorization);
    constexpr absl::string_view kScheme = "bearer ";
    if (token.size() <= kScheme.size() ||
        !absl::EqualsIgnoreCase(token.substr(0, kScheme.size()), kScheme)) {
      return absl::UnauthenticatedError("the authorization header must be \"Bearer <token>\"");
    }
    token = absl::StripLeadingAsciiWhitespace(token.substr(kScheme.size()));
    auto it = creds->by_token_sha256.find(TokenSha256(token));
    if (it == creds->by_token_sha256.end()) {
      return absl::UnauthenticatedError("unknown or revoked token");
    }
    if (absl::Status s = Expired(it->second, now); !s.ok()) return s;
    return it->second;
  }
  for (const std::string& identity : certificate_identities) {
    auto it = creds->by_certificate.find(identity);
    if (it == creds->by_certificate.end()) continue;
    if (absl::Status s = Expired(it->second, now); !s.ok()) return s;
    return it->second;
  }
  if (!certificate_identities.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the client certificate (", certificate_identities.front(),
                     ") is not listed in the credentials file, and no bearer token was sent"));
  }
  return absl::UnauthenticatedError(
      "no credentials: send the header \"authorization: Bearer <token>\" or a client "
      "certificate listed in the credentials file");
}

absl::Status RequireRead(const Principal& p) {
  if (p.read) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("\"", p.name, "\" has no read scope, which the query API needs"));
}

absl::Status RequireWrite(const Principal& p) {
  if (p.can_write()) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("\"", p.name, "\" has no write scope, which the ingest API needs"));
}

}  // namespace tidemark::auth
