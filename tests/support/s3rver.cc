#include "tests/support/s3rver.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tidemark::testing {
namespace {

std::string FindOnPath(const std::string& name) {
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<S3rver>> S3rver::Start() {
  std::unique_ptr<S3rver> s(new S3rver());
  s->node_ = FindOnPath("node");
  s->modules_ = absl::StrCat(TIDEMARK_SOURCE_DIR, "/.local/npm/node_modules");
  if (s->node_.empty() || !std::filesystem::exists(s->modules_ + "/s3rver/package.json")) {
    return absl::FailedPreconditionError(
        absl::StrCat("node or s3rver is missing (node: \"", s->node_, "\", ", s->modules_,
                     "/s3rver): run scripts/install-test-servers.sh"));
  }
  char dir[] = "/tmp/tidemark-s3rver-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
  s->dir_ = dir;
  std::filesystem::create_directory(s->dir_ + "/data");
  if (absl::Status st = s->Launch(0); !st.ok()) return st;
  return s;
}

absl::Status S3rver::Launch(int port) {
  const std::string log = absl::StrCat(dir_, "/s3rver-", ++launches_, ".log");
  // s3rver's continuation tokens are DES-encrypted; OpenSSL 3 has DES only in its legacy
  // provider.
  absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Start(
      node_,
      {"--openssl-legacy-provider", absl::StrCat(TIDEMARK_SOURCE_DIR,
                                                 "/tests/support/verifying-s3rver.js"),
       dir_ + "/data", absl::StrCat(port)},
      {{"NODE_PATH", modules_}}, log);
  if (!child.ok()) return child.status();
  process_ = *std::move(child);
  int bound = 0;
  auto read_port = [&] {
    for (absl::string_view line : absl::StrSplit(process_->Log(), '\n')) {
      if (absl::ConsumePrefix(&line, "listening ") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &bound)) {
        return true;
      }
    }
    return false;
  };
  if (!WaitFor([&] { return read_port() || !process_->Running(); }, absl::Seconds(30)) ||
      bound == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "s3rver did not start (run scripts/install-test-servers.sh):\n", process_->Log()));
  }
  port_ = bound;
  return absl::OkStatus();
}

S3rver::~S3rver() {
  process_.reset();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

s3::S3Config S3rver::Config(const std::string& bucket) const {
  s3::S3Config config;
  config.endpoint = endpoint();
  config.bucket = bucket;
  config.access_key = kAccessKey;
  config.secret_key = kSecretKey;
  config.timeout = absl::Seconds(20);
  return config;
}

std::string S3rver::endpoint() const { return absl::StrCat("http://127.0.0.1:", port_); }

void S3rver::Stop() {
  process_->Signal(SIGKILL);
  (void)process_->Wait(absl::Seconds(10));
}

absl::Status S3rver::Restart() {
  // The port was just released; binding it again may take a moment.
  absl::Status last;
  for (int attempt = 0; attempt < 20; ++attempt) {
    last = Launch(port_);
    if (last.ok()) return last;
    absl::SleepFor(absl::Milliseconds(250));
  }
  return last;
}

std::string S3rver::Log() const { return process_ ? process_->Log() : ""; }

}  // namespace tidemark::testing
