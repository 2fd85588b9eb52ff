#include "services/archive/lake_factory.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tidemark::archive {

absl::StatusOr<std::unique_ptr<Lake>> OpenLake(const std::string& url, const S3Options& s3) {
  if (absl::StartsWith(url, "s3://")) {
    const std::string rest = url.substr(5);
    const size_t slash = rest.find('/');
    s3::S3Config config;
    config.bucket = rest.substr(0, slash);
    config.endpoint = s3.endpoint;
    config.region = s3.region;
    config.path_style = s3.path_style;
    if (config.bucket.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lake: \"", url, "\" names no bucket; use s3://bucket/prefix"));
    }
    absl::StatusOr<s3::S3Config> with_keys = s3::CredentialsFromEnvironment(config);
    if (!with_keys.ok()) return with_keys.status();
    absl::StatusOr<std::unique_ptr<s3::S3Client>> client = s3::S3Client::Create(*with_keys);
    if (!client.ok()) return client.status();
    return RetryingLake(
        S3Lake(*std::move(client), slash == std::string::npos ? "" : rest.substr(slash + 1)));
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
