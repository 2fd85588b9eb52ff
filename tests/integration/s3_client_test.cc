// The S3 client against s3rver, an S3-protocol server in Node.js, installed into .local/npm by
// scripts/install-test-servers.sh. s3rver 3.7 checks that a SigV4 request names a known access
// key but does not check its signature, Content-MD5 or x-amz-content-sha256; so the test runs
// it behind a small proxy (kVerifyingS3rver, same process) that checks all three as S3 does,
// independently of libcurl, and refuses with S3's error codes. Both bind port 0; the proxy
// prints the port it bound.
#include "common/s3/s3_client.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/support/process.h"
#include "tests/support/s3rver.h"

namespace tidemark::s3 {
namespace {

using tidemark::testing::ChildProcess;
using tidemark::testing::WaitFor;

std::unique_ptr<S3Client> NewClient(const S3Config& config) {
  absl::StatusOr<std::unique_ptr<S3Client>> client = S3Client::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

class S3ClientTest : public ::testing::Test {
 protected:
  // One server for the suite; a failure to start fails every test (SetUp), skipping none.
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::S3rver>> started = testing::S3rver::Start();
    if (started.ok()) {
      server_ = started->release();
    } else {
      start_error_ = new absl::Status(started.status());
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << *start_error_; }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) std::cerr << "s3rver log:\n" << server_->Log();
  }

  static testing::S3rver* server_;
  static absl::Status* start_error_;
};

testing::S3rver* S3ClientTest::server_ = nullptr;
absl::Status* S3ClientTest::start_error_ = nullptr;

std::string AllBytes(int repeat) {
  std::string s;
  for (int r = 0; r < repeat; ++r) {
    for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b));
  }
  return s;
}

TEST_F(S3ClientTest, PutGetListDelete) {
  auto client = NewClient(server_->Config("tidemark-archive"));
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());
  // A second time it exists already.
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());

  const std::map<std::string, std::string> objects = {
      {"year=2026/month=11/day=22/hour=02/tidemark.raw-3-100-199.jsonl.gz", AllBytes(3)},
      {"year=2026/month=11/day=22/hour=02/tidemark.raw-0-0-99.jsonl.gz", std::string(1, '\0')},
      {"year=2026/month=11/day=22/hour=03/tidemark.raw-3-200-299.jsonl.gz",
       AllBytes(4096)},  // 1 MiB: the upload goes through 100-continue
      {"year=2026/month=12/day=01/hour=00/tidemark.raw-1-5-5.jsonl.gz", ""},
      {"year=2026/month=11/odd key & <chars> 'quoted' \"double\" +plus ~tilde caf\xC3\xA9.gz", "x"},
  };
  for (const auto& [key, body] : objects) {
    const absl::Status put = client->Put(key, body);
    ASSERT_TRUE(put.ok()) << key << ": " << put;
  }
  for (const auto& [key, body] : objects) {
    absl::StatusOr<std::string> got = client->Get(key);
    ASSERT_TRUE(got.ok()) << key << ": " << got.status();
    EXPECT_EQ(*got, body) << key;
  }

  absl::StatusOr<std::vector<std::string>> november = client->List("year=2026/month=11/");
  ASSERT_TRUE(november.ok()) << november.status();
  std::vector<std::string> want;
  for (const auto& [key, body] : objects) {
    if (absl::StartsWith(key, "year=2026/month=11/")) want.push_back(key);
  }
  std::vector<std::string> got = *november;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  absl::StatusOr<std::vector<std::string>> all = client->List("");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), objects.size());
  absl::StatusOr<std::vector<std::string>> none = client->List("year=2027/");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());

  // Overwriting replaces.
  const std::string key = objects.begin()->first;
  ASSERT_TRUE(client->Put(key, "second").ok());
  EXPECT_EQ(client->Get(key).value_or(""), "second");

  ASSERT_TRUE(client->Delete(key).ok());
  EXPECT_EQ(client->Get(key).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(client->Delete(key).ok()) << "deleting a missing key is done";
  absl::StatusOr<std::vector<std::string>> after = client->List("year=2026/month=11/");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), want.size() - 1);
  EXPECT_EQ(std::count(after->begin(), after->end(), key), 0);
}

TEST_F(S3ClientTest, ListFollowsContinuationTokens) {
  auto client = NewClient(server_->Config("tidemark-many"));
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());
  // s3rver pages at 1000 keys.
  constexpr int kKeys = 1003;
  std::set<std::string> want;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = absl::StrCat("year=2026/month=11/day=22/hour=02/k-", i, ".jsonl.gz");
    ASSERT_TRUE(client->Put(key, absl::StrCat(i)).ok()) << key;
    want.insert(key);
  }
  ASSERT_TRUE(client->Put("year=2026/month=12/other", "x").ok());
  absl::StatusOr<std::vector<std::string>> keys = client->List("year=2026/month=11/");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), static_cast<size_t>(kKeys));
  EXPECT_EQ(std::set<std::string>(keys->begin(), keys->end()), want);
}

TEST_F(S3ClientTest, MissingObjectAndBucket) {
  auto client = NewClient(server_->Config("tidemark-missing-test"));
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());
  const absl::StatusOr<std::string> missing = client->Get("no/such/key");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "NoSuchKey")) << missing.status();

  auto elsewhere = NewClient(server_->Config("tidemark-never-created"));
  const absl::Status put = elsewhere->Put("k", "v");
  EXPECT_EQ(put.code(), absl::StatusCode::kNotFound) << put;
  EXPECT_TRUE(absl::StrContains(put.message(), "NoSuchBucket")) << put;
  EXPECT_FALSE(IsRetriable(put));
}

TEST_F(S3ClientTest, SessionTokenIsSigned) {
  S3Config config = server_->Config("tidemark-token");
  config.session_token = "IQoJb3JpZ2luX2VjE/token+with=chars";
  auto client = NewClient(config);
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());
  EXPECT_TRUE(client->Put("a/b", "c").ok());
  EXPECT_EQ(client->Get("a/b").value_or(""), "c");
}

TEST_F(S3ClientTest, WrongCredentialsArePermissionDenied) {
  auto good = NewClient(server_->Config("tidemark-auth"));
  ASSERT_TRUE(good->CreateBucketIfMissing().ok());
  ASSERT_TRUE(good->Put("k", "v").ok());

  S3Config wrong_secret = server_->Config("tidemark-auth");
  wrong_secret.secret_key = "not-the-secret";
  auto client = NewClient(wrong_secret);
  for (const absl::Status& s : {client->Put("k", "other"), client->Get("k").status(),
                                client->List("").status(), client->Delete("k")}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "SignatureDoesNotMatch")) << s;
    EXPECT_FALSE(IsRetriable(s));
  }
  EXPECT_EQ(good->Get("k").value_or(""), "v") << "refused requests changed nothing";

  S3Config wrong_key = server_->Config("tidemark-auth");
  wrong_key.access_key = "NOSUCHKEY";
  const absl::Status unknown = NewClient(wrong_key)->Put("k", "v");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kPermissionDenied) << unknown;
  EXPECT_TRUE(absl::StrContains(unknown.message(), "InvalidAccessKeyId")) << unknown;
}

// Whether `key` reads as `value` within a few seconds. s3rver, the test store, rewrites an
// object put again in place and acknowledges the PUT before the write is done: a GET right
// after it can find the object empty (S3 itself reads its writes at once).
bool HoldsSoon(S3Client& client, const std::string& key, const std::string& value) {
  return WaitFor([&] { return client.Get(key).value_or("") == value; }, absl::Seconds(5));
}

// Keys from a shared credentials file follow the file: rotated keys (or renewed temporary ones)
// take effect at the next request, without a new client, and a file caught midway through a
// rewrite does not cost the keys that work.
TEST_F(S3ClientTest, CredentialsFileChangesTakeEffectWithoutANewClient) {
  const S3Config good = server_->Config("tidemark-rotate");
  ASSERT_TRUE(NewClient(good)->CreateBucketIfMissing().ok());
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/tidemark-rotate-credentials-", getpid());
  const auto write_file = [&path](const std::string& id, const std::string& secret) {
    const std::string next = path + ".next";
    std::ofstream(next) << "[default]\naws_access_key_id = other\naws_secret_access_key = x\n"
                        << "[archive]\naws_access_key_id = " << id << "\n"
                        << (secret.empty() ? "" : "aws_secret_access_key = " + secret + "\n");
    // As credential helpers and Kubernetes' secret volumes do: a rename over the old file.
    std::filesystem::rename(next, path);
  };
  write_file(good.access_key, "expired-secret");
  S3Config keyless = good;
  keyless.access_key.clear();
  keyless.secret_key.clear();
  absl::StatusOr<S3Config> from_file = CredentialsFromFile(keyless, path, "archive");
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  auto client = NewClient(*from_file);

  const absl::Status refused = client->Put("k", "v1");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;

  write_file(good.access_key, good.secret_key);
  EXPECT_TRUE(client->Put("k", "v2").ok()) << "the rotated keys are used at once";
  EXPECT_TRUE(HoldsSoon(*client, "k", "v2"));

  write_file(good.access_key, "");  // caught midway: no secret yet
  EXPECT_TRUE(client->Put("k", "v3").ok()) << "an incomplete file keeps the working keys";

  // Refused keys with a file that cannot be read: the error says both.
  write_file("NOSUCHKEY", "whatever");
  EXPECT_EQ(client->Put("k", "v4").code(), absl::StatusCode::kPermissionDenied);
  std::filesystem::remove(path);
  const absl::Status both = client->Put("k", "v5");
  EXPECT_EQ(both.code(), absl::StatusCode::kPermissionDenied) << both;
  EXPECT_TRUE(absl::StrContains(both.message(), "InvalidAccessKeyId")) << both;
  EXPECT_TRUE(absl::StrContains(both.message(), "reading the credentials again")) << both;
  EXPECT_TRUE(absl::StrContains(both.message(), path)) << both;

  write_file(good.access_key, good.secret_key);
  EXPECT_TRUE(client->Put("k", "v6").ok());
  EXPECT_TRUE(HoldsSoon(*NewClient(good), "k", "v6"));
  std::filesystem::remove(path);
}

// Its own server: this one is stopped.
TEST(S3ClientStopped, StoppedServerIsRetriableUnavailable) {
  absl::StatusOr<std::unique_ptr<testing::S3rver>> started = testing::S3rver::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<testing::S3rver> server = *std::move(started);
  auto client = NewClient(server->Config("tidemark-stop"));
  ASSERT_TRUE(client->CreateBucketIfMissing().ok());
  ASSERT_TRUE(client->Put("k", "v").ok());
  server->Stop();
  for (const absl::Status& s : {client->Put("k", "v"), client->Get("k").status(),
                                client->List("").status(), client->CreateBucketIfMissing()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_TRUE(IsRetriable(s)) << s;
  }
}

}  // namespace
}  // namespace tidemark::s3
