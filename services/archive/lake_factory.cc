#include "services/archive/lake_factory.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tidemark::archive {

absl::StatusOr<std::unique_ptr<Lake>> OpenLake(const std::string& url) {
  if (absl::StartsWith(url, "s3://")) {
    return absl::UnimplementedError("s3:// lakes are not built yet");
  }
  std::error_code ec;
  std::filesystem::create_directories(url, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("lake: cannot create directory ", url, ": ", ec.message()));
  }
  return LocalLake(url);
}

}  // namespace tidemark::archive
