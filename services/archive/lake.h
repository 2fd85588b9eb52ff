#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/retry/backoff.h"
#include "common/s3/s3_client.h"

namespace tidemark::archive {

/// Where the archive keeps its files: paths are relative, '/'-separated
/// ("year=2026/month=11/day=22/hour=02/tidemark.raw-3-...jsonl.gz").
class Lake {
 public:
  virtual ~Lake() = default;
  /// Stores `data` at `path`, replacing what is there. On success it is durable, and readers
  /// never see a partial file. Retriable failures are UNAVAILABLE.
  virtual absl::Status Put(const std::string& path, absl::string_view data) = 0;
  /// NOT_FOUND when there is no such file.
  virtual absl::StatusOr<std::string> Get(const std::string& path) = 0;
  /// Succeeds when the file does not exist.
  virtual absl::Status Delete(const std::string& path) = 0;
  /// Every file whose path starts with `prefix`, sorted.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& prefix) = 0;
  /// For logs: "file:///var/lib/tidemark/lake" or "s3://bucket/prefix".
  virtual std::string Describe() const = 0;
};

/// A local directory. Put writes a temporary file beside the target, fsyncs it, renames it
/// over the target and fsyncs the directory (and every directory it had to create), so a crash
/// leaves either the old file or the new one.
std::unique_ptr<Lake> LocalLake(std::string root);

/// Objects under `prefix` (may be empty) in an S3 bucket. Put succeeds only once the server
/// acknowledged the object with the MD5 of the bytes sent (the client checks the ETag too);
/// objects appear whole or not at all.
std::unique_ptr<Lake> S3Lake(std::unique_ptr<s3::S3Client> client, std::string prefix);

/// `lake`, with each request that fails in a way worth retrying (s3::IsRetriable: a timeout,
/// a 5xx, 503 SlowDown throttling) tried again, up to `attempts` in all, `backoff` apart; other
/// failures and the last one are returned. Every request of a Lake may be repeated: a Put
/// stores the same bytes at the same path, a Delete of a missing file succeeds. So a
/// transient error costs one request, not the archive's whole batch (rebuilt and re-sent) or
/// a replay's run.
struct LakeRetryPolicy {
  int attempts = 3;
  retry::BackoffPolicy backoff = {.initial = absl::Milliseconds(200), .max = absl::Seconds(2)};
};
std::unique_ptr<Lake> RetryingLake(std::unique_ptr<Lake> lake, LakeRetryPolicy policy = {});

}  // namespace tidemark::archive
