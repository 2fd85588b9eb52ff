#include "services/archive/lake.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace tidemark::archive {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const std::string& what, const fs::path& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path.string(), ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return Errno("cannot open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("cannot fsync", path);
  return absl::OkStatus();
}

class LocalDirectoryLake final : public Lake {
 public:
  explicit LocalDirectoryLake(std::string root) : root_(std::move(root)) {}

  absl::Status Put(const std::string& path, absl::string_view data) override {
    const fs::path target = root_ / path;
    if (absl::Status s = MakeDirectories(target.parent_path()); !s.ok()) return s;
    // Not matched by the lake's *.jsonl.gz globs while it is being written.
    const fs::path temp = fs::path(target).concat(".tmp");
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("cannot create", temp);
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        ::close(fd);
        return Errno("cannot write", temp);
      }
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
      ::close(fd);
      return Errno("cannot fsync", temp);
    }
    ::close(fd);
    if (::rename(temp.c_str(), target.c_str()) != 0) return Errno("cannot rename", temp);
    return FsyncPath(target.parent_path(), O_RDONLY | O_DIRECTORY);
  }

  absl::StatusOr<std::string> Get(const std::string& path) override {
    std::ifstream in(root_ / path, std::ios::binary);
    if (!in) {
      std::error_code ec;
      // Only a file that is not there is NOT_FOUND: a pending record that cannot be read must
      // not pass for an empty one.
      if (!fs::exists(root_ / path, ec) && !ec) {
        return absl::NotFoundError(absl::StrCat("no file ", (root_ / path).string()));
      }
      return Errno("cannot read", root_ / path);
    }
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

  absl::Status Delete(const std::string& path) override {
    const fs::path target = root_ / path;
    std::error_code ec;
    if (!fs::remove(target, ec) && ec) return Errno("cannot delete", target);
    if (!fs::is_directory(target.parent_path(), ec)) return absl::OkStatus();
    return FsyncPath(target.parent_path(), O_RDONLY | O_DIRECTORY);
  }

  absl::StatusOr<std::vector<std::string>> List(const std::string& prefix) override {
    std::vector<std::string> out;
    // Descend only into the directory the prefix names, not the whole lake.
    const size_t slash = prefix.rfind('/');
    const fs::path start = slash == std::string::npos ? root_ : root_ / prefix.substr(0, slash);
    std::error_code ec;
    if (!fs::exists(start, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(start, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file()) continue;
      std::string rel = fs::relative(it->path(), root_).generic_string();
      if (absl::StartsWith(rel, prefix) && !absl::EndsWith(rel, ".tmp")) {
        out.push_back(std::move(rel));
      }
    }
    if (ec)
      return absl::UnavailableError(
          absl::StrCat("cannot list ", start.string(), ": ", ec.message()));
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string Describe() const override { return absl::StrCat("file://", root_.string()); }

 private:
  // Creates missing directories and fsyncs each new one's parent, so a new hour directory
  // survives a crash together with the file in it.
  absl::Status MakeDirectories(const fs::path& dir) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return absl::OkStatus();
    if (absl::Status s = MakeDirectories(dir.parent_path()); !s.ok()) return s;
    if (!fs::create_directory(dir, ec) && ec) return Errno("cannot create directory", dir);
    return FsyncPath(dir.parent_path(), O_RDONLY | O_DIRECTORY);
  }

  fs::path root_;
};

class S3BucketLake final : public Lake {
 public:
  S3BucketLake(std::unique_ptr<s3::S3Client> client, std::string prefix)
      : client_(std::move(client)), prefix_(std::move(prefix)) {
    if (!prefix_.empty() && prefix_.back() != '/') prefix_ += '/';
  }

  absl::Status Put(const std::string& path, absl::string_view data) override {
    return client_->Put(prefix_ + path, data);
  }
  absl::StatusOr<std::string> Get(const std::string& path) override {
    return client_->Get(prefix_ + path);
  }
  absl::Status Delete(const std::string& path) override { return client_->Delete(prefix_ + path); }
  absl::StatusOr<std::vector<std::string>> List(const std::string& prefix) override {
    absl::StatusOr<std::vector<std::string>> keys = client_->List(prefix_ + prefix);
    if (!keys.ok()) return keys.status();
    for (std::string& k : *keys) k = k.substr(prefix_.size());
    return keys;
  }
  std::string Describe() const override {
    return absl::StrCat("s3://", client_->config().bucket, "/", prefix_, " at ",
                        client_->config().endpoint);
  }

 private:
  std::unique_ptr<s3::S3Client> client_;
  std::string prefix_;
};

class RetryingRequests final : public Lake {
 public:
  RetryingRequests(std::unique_ptr<Lake> lake, LakeRetryPolicy policy)
      : lake_(std::move(lake)), policy_(policy) {}

  absl::Status Put(const std::string& path, absl::string_view data) override {
    return Retry([&] { return lake_->Put(path, data); });
  }
  absl::StatusOr<std::string> Get(const std::string& path) override {
    return Retry([&] { return lake_->Get(path); });
  }
  absl::Status Delete(const std::string& path) override {
    return Retry([&] { return lake_->Delete(path); });
  }
  absl::StatusOr<std::vector<std::string>> List(const std::string& prefix) override {
    return Retry([&] { return lake_->List(prefix); });
  }
  std::string Describe() const override { return lake_->Describe(); }

 private:
  static const absl::Status& StatusOf(const absl::Status& s) { return s; }
  template <typename T>
  static const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
    return s.status();
  }

  template <typename Request>
  auto Retry(Request request) -> decltype(request()) {
    retry::Backoff backoff(policy_.backoff);
    for (int attempt = 1;; ++attempt) {
      auto result = request();
      if (attempt >= policy_.attempts || !s3::IsRetriable(StatusOf(result))) return result;
      absl::SleepFor(backoff.Next());
    }
  }

  std::unique_ptr<Lake> lake_;
  const LakeRetryPolicy policy_;
};

}  // namespace

std::unique_ptr<Lake> RetryingLake(std::unique_ptr<Lake> lake, LakeRetryPolicy policy) {
  return std::make_unique<RetryingRequests>(std::move(lake), policy);
}

std::unique_ptr<Lake> S3Lake(std::unique_ptr<s3::S3Client> client, std::string prefix) {
  return std::make_unique<S3BucketLake>(std::move(client), std::move(prefix));
}

std::unique_ptr<Lake> LocalLake(std::string root) {
  return std::make_unique<LocalDirectoryLake>(std::move(root));
}

}  // namespace tidemark::archive
