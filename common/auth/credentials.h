#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tidemark::auth {

/// Who a call comes from and what it may do (docs/security.md).
struct Principal {
  std::string name;
  bool read = false;
  /// Device-id prefixes it may write; "" is every device. Empty: no write at all.
  std::vector<std::string> write_prefixes;
  /// Whether its events may carry a client version (one that no later reading replaces).
  bool explicit_versions = false;
  /// After this the credential is refused; InfiniteFuture when it does not expire.
  absl::Time expires = absl::InfiniteFuture();

  bool can_write() const { return !write_prefixes.empty(); }
  /// Whether it may write events of `device_id`.
  bool MayWriteDevice(absl::string_view device_id) const;
};

/// The principal of a server that checks no credentials (--allow_unauthenticated).
Principal Unrestricted();

/// The parsed credentials file: principals by SHA-256 of their bearer token and by the
/// identity (common name or DNS name) of their client certificate. The file is one
/// principal per line, `#` comments and blank lines ignored:
///   token <name> sha256:<hex digest of the token> <scopes> [expires=<RFC 3339>]
///   cert  <name> <certificate common name or DNS name> <scopes> [expires=<RFC 3339>]
/// where <scopes> is a comma-separated list of read, write (any device),
/// write:<device-id prefix> (repeatable) and explicit_version.
struct Credentials {
  absl::flat_hash_map<std::string, Principal> by_token_sha256;
  absl::flat_hash_map<std::string, Principal> by_certificate;
};

/// Parses a credentials file's text; INVALID_ARGUMENT naming the line on any mistake, so that
/// a typo never silently drops or widens a grant.
absl::StatusOr<Credentials> ParseCredentials(absl::string_view text);

/// Lowercase hex SHA-256 of `token`: what the credentials file stores instead of the token.
std::string TokenSha256(absl::string_view token);

/// A new random bearer token: "tdm_" and 43 base64url characters (256 bits).
absl::StatusOr<std::string> NewToken();

}  // namespace tidemark::auth
