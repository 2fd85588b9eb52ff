#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/archive/lake.h"

namespace tidemark::archive {

/// The lake a --lake value names: "s3://bucket[/prefix]" (endpoint, region and addressing from
/// TIDEMARK_S3_* settings, credentials from the usual AWS variables or file), otherwise a local
/// directory, created if missing.
absl::StatusOr<std::unique_ptr<Lake>> OpenLake(const std::string& url);

}  // namespace tidemark::archive
