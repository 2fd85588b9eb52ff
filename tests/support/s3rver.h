#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/s3/s3_client.h"
#include "tests/support/process.h"

namespace tidemark::testing {

/// s3rver (an S3-protocol server from the npm registry, installed by
/// scripts/install-test-servers.sh) behind tests/support/verifying-s3rver.js, a proxy that
/// checks SigV4 signatures, payload hashes and Content-MD5 as S3 does — s3rver itself only
/// checks that the access key exists. Data lives in a temporary directory that survives Stop()
/// and Restart(), so a test can take the store away mid-stream and bring it back.
class S3rver final {
 public:
  static constexpr char kAccessKey[] = "S3RVER";
  static constexpr char kSecretKey[] = "S3RVER";

  /// FAILED_PRECONDITION, saying how to install it, when node or s3rver is missing: tests
  /// then fail, never skip.
  static absl::StatusOr<std::unique_ptr<S3rver>> Start();
  ~S3rver();

  /// A client configuration for `bucket` on this server.
  s3::S3Config Config(const std::string& bucket) const;
  std::string endpoint() const;
  int port() const { return port_; }

  /// SIGKILL: requests fail with connection errors until Restart().
  void Stop();
  /// On the same port, with the same data.
  absl::Status Restart();
  std::string Log() const;

 private:
  S3rver() = default;
  absl::Status Launch(int port);

  std::string node_, modules_, dir_;
  std::unique_ptr<ChildProcess> process_;
  int port_ = 0;
  int launches_ = 0;
};

}  // namespace tidemark::testing
