#include "tools/cli/token.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/auth/credentials.h"

namespace tidemark::cli {

int RunToken(const std::string& name, const std::string& scopes, const std::string& expires) {
  if (name.empty() || scopes.empty()) {
    std::fprintf(stderr,
                 "tidemark: token needs --name and --scopes (read, write, write:<device-id "
                 "prefix>, explicit_version; comma separated)\n");
    return 2;
  }
  // Checked here, by flag: the credentials line's parser would name fields the user never
  // wrote ("credentials line 1: unknown scope ..." for a name with a space).
  if (name.find_first_of(" \t\r\n#") != std::string::npos) {
    std::fprintf(stderr, "tidemark: --name: \"%s\" must be one word (no spaces or '#')\n",
                 name.c_str());
    return 2;
  }
  if (!expires.empty()) {
    absl::Time at;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, expires, &at, &err)) {
      std::fprintf(stderr, "tidemark: --expires: \"%s\" is not RFC 3339 (2027-01-01T00:00:00Z)\n",
                   expires.c_str());
      return 2;
    }
    if (at <= absl::Now()) {
      std::fprintf(stderr, "tidemark: --expires: %s is already past\n", expires.c_str());
      return 2;
    }
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
    // Name and expiry are checked above: what is left is a scope.
    std::fprintf(stderr, "tidemark: --scopes: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  std::printf("%s\n%s\n", token->c_str(), line.c_str());
  return 0;
}

}  // namespace tidemark::cli
