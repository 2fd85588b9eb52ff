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

namespace tidemark::s3 {
namespace {

using tidemark::testing::ChildProcess;
using tidemark::testing::WaitFor;

// s3rver's built-in account.
constexpr char kAccessKey[] = "S3RVER";
constexpr char kSecretKey[] = "S3RVER";

constexpr char kVerifyingS3rver[] = R"js('use strict';
// s3rver behind a proxy that checks SigV4 signatures, payload hashes and Content-MD5 as S3
// does. Usage: node verifying-s3rver.js DATA_DIR. Prints "listening PORT".
const crypto = require('crypto');
const http = require('http');
const S3rver = require('s3rver');

const secrets = { S3RVER: 'S3RVER' };
const region = 'us-east-1';

const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = data => crypto.createHash('sha256').update(data).digest('hex');
const md5 = data => crypto.createHash('md5').update(data).digest('base64');
// RFC 3986: encodeURIComponent leaves !'()* alone, SigV4 does not.
const encode = s =>
  encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// [status, code, message] of the refusal, or null.
function verify(req, body) {
  const auth = req.headers['authorization'];
  if (!auth) return [403, 'AccessDenied', 'Anonymous access is refused'];
  const m = new RegExp('^AWS4-HMAC-SHA256 Credential=([^/]+)/(\\d{8})/([^/]+)/s3/aws4_request, ?' +
                       'SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$').exec(auth);
  if (!m) return [400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed'];
  const [, accessKey, day, scopeRegion, signedHeaders, signature] = m;
  const secret = secrets[accessKey];
  if (secret === undefined) {
    return [403, 'InvalidAccessKeyId',
            'The AWS Access Key Id you provided does not exist in our records.'];
  }
  if (scopeRegion !== region) {
    return [400, 'AuthorizationHeaderMalformed', `the region ${scopeRegion} is wrong`];
  }
  const date = req.headers['x-amz-date'];
  if (!/^\d{8}T\d{6}Z$/.test(date || '') || !date.startsWith(day)) {
    return [403, 'AccessDenied', `x-amz-date "${date}" does not match the credential scope`];
  }
  const signed = signedHeaders.split(';');
  if (!signed.includes('host')) return [403, 'AccessDenied', 'host is not signed'];
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith('x-amz-') && !signed.includes(name)) {
      return [403, 'AccessDenied', `${name} is not signed`];
    }
  }
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (payloadHash !== 'UNSIGNED-PAYLOAD' && payloadHash !== sha256(body)) {
    return [400, 'XAmzContentSHA256Mismatch',
            "The provided 'x-amz-content-sha256' header does not match what was computed."];
  }
  if ('content-md5' in req.headers && req.headers['content-md5'] !== md5(body)) {
    return [400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.'];
  }
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? '' : req.url.slice(q + 1);
  const canonicalUri = path.split('/').map(s => encode(decodeURIComponent(s))).join('/');
  const canonicalQuery = query.split('&').filter(p => p)
    .map(p => {
      const i = p.indexOf('=');
      return i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
    })
    .map(([k, v]) => [encode(decodeURIComponent(k)), encode(decodeURIComponent(v))])
    .sort((a, b) => compare(a[0], b[0]) || compare(a[1], b[1]))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const canonicalHeaders = signed
    .map(h => `${h}:${String(req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalRequest = [req.method, canonicalUri, canonicalQuery, canonicalHeaders,
                            signedHeaders, payloadHash].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', date, `${day}/${region}/s3/aws4_request`,
                        sha256(canonicalRequest)].join('\n');
  let key = hmac('AWS4' + secret, day);
  for (const part of [region, 's3', 'aws4_request']) key = hmac(key, part);
  if (hmac(key, stringToSign).toString('hex') !== signature) {
    return [403, 'SignatureDoesNotMatch',
            'The request signature we calculated does not match the signature you provided. ' +
            'Check your key and signing method.'];
  }
  return null;
}

function refuse(res, [status, code, message]) {
  const escape = s => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${code}</Code><Message>${escape(message)}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml',
                          'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory: process.argv[2] });
s3rver.run().then(({ port: s3rverPort }) => {
  const proxy = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', chunk => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const refusal = verify(req, body);
      if (refusal) {
        console.log(`refused ${req.method} ${req.url}: ${refusal[1]}`);
        return refuse(res, refusal);
      }
      const headers = { ...req.headers };
      delete headers['expect'];
      const upstream = http.request(
        { host: '127.0.0.1', port: s3rverPort, method: req.method, path: req.url, headers },
        answer => { res.writeHead(answer.statusCode, answer.headers); answer.pipe(res); });
      upstream.on('error', err => refuse(res, [502, 'BadGateway', err.message]));
      upstream.end(body);
    });
  });
  proxy.listen(0, '127.0.0.1', () => console.log(`listening ${proxy.address().port}`));
}, err => { console.error(err); process.exit(1); });
)js";

std::string FindOnPath(const std::string& name) {
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':')) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// A verifying s3rver with its data in a fresh temporary directory.
class S3rverServer {
 public:
  // FAILED_PRECONDITION, saying how to install it, when node or s3rver is missing: the tests
  // then fail, never skip.
  static absl::StatusOr<std::unique_ptr<S3rverServer>> Start() {
    const std::string node = FindOnPath("node");
    const std::string modules = absl::StrCat(TIDEMARK_SOURCE_DIR, "/.local/npm/node_modules");
    if (node.empty() || !std::filesystem::exists(modules + "/s3rver/package.json")) {
      return absl::FailedPreconditionError(
          absl::StrCat("node or s3rver is missing (node: \"", node, "\", ", modules,
                       "/s3rver): run scripts/install-test-servers.sh"));
    }
    std::unique_ptr<S3rverServer> s(new S3rverServer());
    char dir[] = "/tmp/tidemark-s3rver-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      return absl::InternalError("mkdtemp failed");
    }
    s->dir_ = dir;
    const std::string script = s->dir_ + "/verifying-s3rver.js";
    std::ofstream(script) << kVerifyingS3rver;
    std::filesystem::create_directory(s->dir_ + "/data");
    // s3rver's continuation tokens are DES-encrypted; OpenSSL 3 has DES only in its legacy
    // provider.
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Start(node, {"--openssl-legacy-provider", script, s->dir_ + "/data"},
                            {{"NODE_PATH", modules}}, s->dir_ + "/s3rver.log");
    if (!child.ok()) return child.status();
    s->process_ = *std::move(child);
    const bool up =
        WaitFor([&] { return s->ReadPort() || !s->process_->Running(); }, absl::Seconds(30));
    if (!up || s->port_ == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "s3rver did not start (run scripts/install-test-servers.sh):\n", s->process_->Log()));
    }
    return s;
  }

  ~S3rverServer() {
    process_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  S3Config Config(const std::string& bucket) const {
    S3Config config;
    config.endpoint = absl::StrCat("http://127.0.0.1:", port_);
    config.bucket = bucket;
    config.access_key = kAccessKey;
    config.secret_key = kSecretKey;
    config.timeout = absl::Seconds(20);
    return config;
  }

  void Stop() {
    process_->Signal(SIGKILL);
    ASSERT_TRUE(process_->Wait(absl::Seconds(10)).ok());
  }
  std::string Log() const { return process_->Log(); }

 private:
  S3rverServer() = default;

  bool ReadPort() {
    for (absl::string_view line : absl::StrSplit(process_->Log(), '\n')) {
      if (absl::ConsumePrefix(&line, "listening ") &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &port_)) {
        return true;
      }
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<ChildProcess> process_;
  int port_ = 0;
};

std::unique_ptr<S3Client> NewClient(const S3Config& config) {
  absl::StatusOr<std::unique_ptr<S3Client>> client = S3Client::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

class S3ClientTest : public ::testing::Test {
 protected:
  // One server for the suite; a failure to start fails every test (SetUp), skipping none.
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<S3rverServer>> started = S3rverServer::Start();
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

  static S3rverServer* server_;
  static absl::Status* start_error_;
};

S3rverServer* S3ClientTest::server_ = nullptr;
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

// Its own server: this one is stopped.
TEST(S3ClientStopped, StoppedServerIsRetriableUnavailable) {
  absl::StatusOr<std::unique_ptr<S3rverServer>> started = S3rverServer::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<S3rverServer> server = *std::move(started);
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
