#pragma once

#include <string>

namespace tidemark::cli {

/// `tidemark token`: prints a new bearer token on the first line and, on the second, the line
/// that grants it `scopes` in a credentials file (which stores only the token's SHA-256).
/// `expires` is empty or an RFC 3339 time. Returns the exit code (2 on a bad argument).
int RunToken(const std::string& name, const std::string& scopes, const std::string& expires);

}  // namespace tidemark::cli
