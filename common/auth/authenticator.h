#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/auth/credentials.h"
#include "common/log/log.h"

namespace tidemark::auth {

/// Answers who a call comes from. Either open (every call is Unrestricted()) or backed by a
/// credentials file that is read again when it changes, so that tokens and certificate
/// identities are added, revoked and rotated without a restart. A file that fails to parse
/// on reload is logged and the last good one stays in force.
class Authenticator {
 public:
  static std::unique_ptr<Authenticator> Open();
  /// Loads `path`; fails when it cannot be read or parsed.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(
      std::string path, std::shared_ptr<spdlog::logger> logger);

  /// The principal of a call that sent `authorization` (its "authorization" header, empty
  /// when none) over a connection whose verified client certificate has
  /// `certificate_identities` (common name and DNS names; empty without one). A bearer token,
  /// when sent, decides alone. UNAUTHENTICATED when no valid, unexpired credential is found;
  /// the message never repeats the token.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization,
                                         const std::vector<std::string>& certificate_identities,
                                         absl::Time now = absl::Now());

  bool open() const { return path_.empty(); }

 private:
  Authenticator() = default;
  /// Reads the file again when its size, inode or modification time changed; at most once
  /// per second.
  void MaybeReload(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  std::string path_;
  std::shared_ptr<spdlog::logger> logger_;
  absl::Mutex mu_;
  std::shared_ptr<const Credentials> current_ ABSL_GUARDED_BY(mu_);
  std::string file_signature_ ABSL_GUARDED_BY(mu_);
  absl::Time last_check_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

/// PERMISSION_DENIED unless `p` may read (the query API).
absl::Status RequireRead(const Principal& p);
/// PERMISSION_DENIED unless `p` may write some devices (the ingest API).
absl::Status RequireWrite(const Principal& p);

}  // namespace tidemark::auth
