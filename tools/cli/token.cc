#include "tools/cli/token.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/auth/credentials.h"

namespace tidemark::cli {

int RunToken(const std::string& name, const std::string& scopes, const std::string& expires) {
  if (name.empty() || scopes.empty()) {
    std::fprintf(stderr,
                 "tidemark: token needs --name and --scopes (read, write, write:<device-id "
                 "prefix>, explicit_version; comma separated)\n");
    return 2;
  }
  absl::StatusOr<std::string> token = auth::NewToken();
  if (!token.ok()) {
    std::fprintf(stderr, "tidemark: %s\n", std::string(token.status().message()).c_str());
    return 1;
  }
  std::string line =
      absl::StrCat("token ", name, " sha256:", auth::TokenSha256(*token), " ", scopes);
  if (!expires.empty()) absl::StrAppend(&line, " expires=", expires);
  // The line must parse exactly as the services will parse it.
  if (absl::StatusOr<auth::Credentials> parsed = auth::ParseCredentials(line); !parsed.ok()) {
    std::fprintf(stderr, "tidemark: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  std::printf("%s\n%s\n", token->c_str(), line.c_str());
  return 0;
}

}  // namespace tidemark::cli
