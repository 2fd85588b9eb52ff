#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/archive/lake.h"

namespace tidemark::archive {

/// Where an s3:// lake's bucket is served.
struct S3Options {
  std::string endpoint = "https://s3.us-east-1.amazonaws.com";
  std::string region = "us-east-1";
  /// endpoint/bucket/key (MinIO and most self-hosted stores) rather than bucket.endpoint/key.
  bool path_style = false;
};

/// The lake a --lake value names: "s3://bucket[/prefix]" (credentials from the usual AWS
/// variables or file), otherwise a local directory, created if missing.
absl::StatusOr<std::unique_ptr<Lake>> OpenLake(const std::string& url, const S3Options& s3 = {});

}  // namespace tidemark::archive
