// The S3 client's requests as libcurl signs them (CURLOPT_AWS_SIGV4), against the example
// signatures AWS publishes for S3 ("Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk", Amazon S3 API Reference). Each request goes to a
// local HTTP server, with the example's Host kept through CURLOPT_CONNECT_TO, and the server
// captures what arrived. Also the wire format: key and query encoding, ListObjectsV2 parsing,
// HTTP statuses to codes, and where credentials come from.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/s3/s3_client.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace tidemark::s3 {
namespace {

// AWS's example credentials and the hash of an empty body.
constexpr char kAccessKey[] = "AKIAIOSFODNN7EXAMPLE";
constexpr char kSecretKey[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr char kExampleDate[] = "20130524T000000Z";
constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Captured {
  std::string method;
  std::string target;  // as sent: path and query, still percent-encoded
  std::multimap<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string Header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...
struct Authorization {
  std::string credential;
  std::string signed_headers;
  std::string signature;
};

Authorization ParseAuthorization(absl::string_view header) {
  Authorization a;
  EXPECT_TRUE(absl::ConsumePrefix(&header, "AWS4-HMAC-SHA256 ")) << header;
  for (absl::string_view part : absl::StrSplit(header, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, "Credential=")) a.credential = std::string(part);
    if (absl::ConsumePrefix(&part, "SignedHeaders=")) a.signed_headers = std::string(part);
    if (absl::ConsumePrefix(&part, "Signature=")) a.signature = std::string(part);
  }
  return a;
}

// A local HTTP server that records every request and answers with `reply`.
class FakeS3 {
 public:
  using Reply = std::function<void(const Captured&, httplib::Response&)>;

  FakeS3() {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Captured c{req.method, req.target, {}, req.body};
      for (const auto& [name, value] : req.headers) {
        c.headers.emplace(absl::AsciiStrToLower(name), value);
      }
      Reply reply;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(c);
        reply = reply_;
      }
      res.status = 200;
      if (reply) reply(c, res);
    };
    server_.Get(".*", handler);
    server_.Put(".*", handler);
    server_.Delete(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the loop runs would be lost.
    while (!server_.is_running()) absl::SleepFor(absl::Milliseconds(1));
  }
  ~FakeS3() {
    server_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  void SetReply(Reply reply) {
    std::lock_guard<std::mutex> lock(mu_);
    reply_ = std::move(reply);
  }
  std::vector<Captured> Requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  Captured Last() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_.empty() ? Captured{} : requests_.back();
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  Reply reply_;
  std::vector<Captured> requests_;
};

// The AWS examples' bucket, virtual-hosted: Host is examplebucket.s3.amazonaws.com.
S3Config ExampleConfig(int port) {
  S3Config config;
  config.endpoint = "http://s3.amazonaws.com";
  config.region = "us-east-1";
  config.bucket = "examplebucket";
  config.path_style = false;
  config.access_key = kAccessKey;
  config.secret_key = kSecretKey;
  config.timeout = absl::Seconds(10);
  config.connect_to = absl::StrCat("127.0.0.1:", port);
  return config;
}

std::unique_ptr<S3Client> NewClient(const S3Config& config) {
  absl::StatusOr<std::unique_ptr<S3Client>> client = S3Client::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

constexpr char kExampleCredential[] = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";

TEST(S3SigV4, AwsExampleGetObject) {
  FakeS3 server;
  auto client = NewClient(ExampleConfig(server.port()));
  S3Request request;
  request.key = "test.txt";
  request.headers = {{"Range", "bytes=0-9"}, {"x-amz-date", kExampleDate}};
  absl::StatusOr<S3Response> response = client->Send(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->http_status, 200);

  const Captured got = server.Last();
  EXPECT_EQ(got.method, "GET");
  EXPECT_EQ(got.target, "/test.txt");
  EXPECT_EQ(got.Header("host"), "examplebucket.s3.amazonaws.com");
  EXPECT_EQ(got.Header("x-amz-content-sha256"), kEmptySha256);
  const Authorization auth = ParseAuthorization(got.Header("authorization"));
  EXPECT_EQ(auth.credential, kExampleCredential);
  EXPECT_EQ(auth.signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(auth.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(S3SigV4, AwsExamplePutObject) {
  FakeS3 server;
  auto client = NewClient(ExampleConfig(server.port()));
  S3Request request;
  request.method = "PUT";
  request.key = "test$file.text";
  request.headers = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                     {"x-amz-date", kExampleDate},
                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
  request.body = "Welcome to Amazon S3.";
  absl::StatusOr<S3Response> response = client->Send(request);
  ASSERT_TRUE(response.ok()) << response.status();

  const Captured got = server.Last();
  EXPECT_EQ(got.method, "PUT");
  EXPECT_EQ(got.target, "/test%24file.text");
  EXPECT_EQ(got.body, "Welcome to Amazon S3.");
  EXPECT_EQ(got.Header("x-amz-content-sha256"),
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  const Authorization auth = ParseAuthorization(got.Header("authorization"));
  EXPECT_EQ(auth.credential, kExampleCredential);
  EXPECT_EQ(auth.signed_headers, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
  EXPECT_EQ(auth.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(S3SigV4, AwsExampleGetBucketLifecycle) {
  FakeS3 server;
  auto client = NewClient(ExampleConfig(server.port()));
  S3Request request;
  request.query = {{"lifecycle", ""}};
  request.headers = {{"x-amz-date", kExampleDate}};
  ASSERT_TRUE(client->Send(request).ok());

  const Captured got = server.Last();
  // A parameter without a value is signed, and so sent, as "name=".
  EXPECT_EQ(got.target, "/?lifecycle=");
  const Authorization auth = ParseAuthorization(got.Header("authorization"));
  EXPECT_EQ(auth.signed_headers, "host;x-amz-content-sha256;x-amz-date");
  EXPECT_EQ(auth.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(S3SigV4, AwsExampleListObjects) {
  FakeS3 server;
  auto client = NewClient(ExampleConfig(server.port()));
  S3Request request;
  // Out of order on purpose: libcurl 7.88 signs the query as sent, so the client sorts it.
  request.query = {{"prefix", "J"}, {"max-keys", "2"}};
  request.headers = {{"x-amz-date", kExampleDate}};
  ASSERT_TRUE(client->Send(request).ok());

  const Captured got = server.Last();
  EXPECT_EQ(got.target, "/?max-keys=2&prefix=J");
  const Authorization auth = ParseAuthorization(got.Header("authorization"));
  EXPECT_EQ(auth.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// The client's own requests carry libcurl's clock, once. Signed again with that same time
// given explicitly (the path the AWS examples check), the signature is the same: the clock
// path signs exactly as the checked one.
TEST(S3SigV4, ClockDatedRequestSignsLikeTheCheckedPath) {
  FakeS3 server;
  auto client = NewClient(ExampleConfig(server.port()));
  const absl::Time before = absl::Now();
  absl::StatusOr<std::string> body = client->Get("year=2026/month=11/x y.jsonl.gz");
  ASSERT_TRUE(body.ok()) << body.status();
  const Captured first = server.Last();
  EXPECT_EQ(first.target, "/year%3D2026/month%3D11/x%20y.jsonl.gz");
  ASSERT_EQ(first.headers.count("x-amz-date"), 1u);
  const std::string date = first.Header("x-amz-date");
  // yyyymmddThhmmssZ (absl::ParseTime's %Y would take all the digits).
  ASSERT_EQ(date.size(), 16u) << date;
  const absl::string_view d = date;
  int y = 0, mo = 0, day = 0, h = 0, mi = 0, sec = 0;
  ASSERT_TRUE(absl::SimpleAtoi(d.substr(0, 4), &y) && absl::SimpleAtoi(d.substr(4, 2), &mo) &&
              absl::SimpleAtoi(d.substr(6, 2), &day) && d[8] == 'T' &&
              absl::SimpleAtoi(d.substr(9, 2), &h) && absl::SimpleAtoi(d.substr(11, 2), &mi) &&
              absl::SimpleAtoi(d.substr(13, 2), &sec) && d[15] == 'Z')
      << date;
  const absl::Time sent =
      absl::FromCivil(absl::CivilSecond(y, mo, day, h, mi, sec), absl::UTCTimeZone());
  // libcurl dates the request with time(), which reads the kernel's coarse clock: up to a
  // tick behind absl::Now(), so just after a second begins it may still give the last one.
  EXPECT_GE(sent, absl::FromUnixSeconds(absl::ToUnixSeconds(before) - 1));
  EXPECT_LE(sent, absl::Now());
  const Authorization auth = ParseAuthorization(first.Header("authorization"));
  EXPECT_EQ(auth.credential,
            absl::StrCat(kAccessKey, "/", date.substr(0, 8), "/us-east-1/s3/aws4_request"));
  EXPECT_EQ(auth.signed_headers, "host;x-amz-content-sha256;x-amz-date");

  S3Request again;
  again.key = "year=2026/month=11/x y.jsonl.gz";
  again.headers = {{"x-amz-date", date}};
  ASSERT_TRUE(client->Send(again).ok());
  EXPECT_EQ(ParseAuthorization(server.Last().Header("authorization")).signature, auth.signature);
}

TEST(S3SigV4, SessionTokenIsSentAndSigned) {
  FakeS3 server;
  S3Config config = ExampleConfig(server.port());
  config.session_token = "FwoGZXIvYXdzE+token/with=chars";
  auto client = NewClient(config);
  ASSERT_TRUE(client->Get("k").ok());
  const Captured got = server.Last();
  EXPECT_EQ(got.Header("x-amz-security-token"), config.session_token);
  EXPECT_EQ(ParseAuthorization(got.Header("authorization")).signed_headers,
            "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
}

S3Config PathStyleConfig(int port) {
  S3Config config;
  config.endpoint = absl::StrCat("http://127.0.0.1:", port, "/");
  config.bucket = "archive";
  config.access_key = "id";
  config.secret_key = "secret";
  config.timeout = absl::Seconds(10);
  return config;
}

TEST(S3Client, PutSendsContentMd5AndChecksTheEtag) {
  FakeS3 server;
  auto client = NewClient(PathStyleConfig(server.port()));
  const std::string body = "The quick brown fox jumps over the lazy dog";
  server.SetReply([](const Captured& c, httplib::Response& res) {
    res.set_header("ETag", absl::StrCat("\"", Md5Hex(c.body), "\""));
  });
  const std::string key = "year=2026/month=11/day=22/hour=02/tidemark.raw-3-100-199.jsonl.gz";
  ASSERT_TRUE(client->Put(key, body).ok());
  const Captured got = server.Last();
  EXPECT_EQ(got.target,
            "/archive/year%3D2026/month%3D11/day%3D22/hour%3D02/tidemark.raw-3-100-199.jsonl.gz");
  EXPECT_EQ(got.body, body);
  EXPECT_EQ(got.Header("content-md5"), "nhB9nTcrtoJr2B01QqQZ1g==");
  EXPECT_EQ(got.Header("content-length"), absl::StrCat(body.size()));
  EXPECT_TRUE(absl::StrContains(got.Header("authorization"), "content-md5;host;"));

  // An ETag that is not the MD5 of what was sent: the store holds other bytes.
  server.SetReply([](const Captured&, httplib::Response& res) {
    res.set_header("ETag", "\"0123456789abcdef0123456789abcdef\"");
  });
  const absl::Status wrong = client->Put(key, body);
  EXPECT_EQ(wrong.code(), absl::StatusCode::kDataLoss) << wrong;
  EXPECT_FALSE(IsRetriable(wrong));

  // KMS-encrypted objects have ETags that are no MD5.
  server.SetReply([](const Captured&, httplib::Response& res) {
    res.set_header("ETag", "\"0123456789abcdef0123456789abcdef\"");
    res.set_header("x-amz-server-side-encryption", "aws:kms");
  });
  EXPECT_TRUE(client->Put(key, body).ok());
}

TEST(S3Client, PutsBinaryAndEmptyBodies) {
  FakeS3 server;
  server.SetReply([](const Captured& c, httplib::Response& res) {
    res.set_header("ETag", absl::StrCat("\"", Md5Hex(c.body), "\""));
  });
  auto client = NewClient(PathStyleConfig(server.port()));
  std::string binary;
  for (int i = 0; i < 3 * 65536 + 7; ++i) binary.push_back(static_cast<char>((i * 131) & 0xFF));
  ASSERT_TRUE(client->Put("bin", binary).ok());
  EXPECT_EQ(server.Last().body, binary);
  EXPECT_EQ(server.Last().Header("x-amz-content-sha256"), Sha256Hex(binary));
  ASSERT_TRUE(client->Put("empty", "").ok());
  EXPECT_EQ(server.Last().Header("content-md5"), "1B2M2Y8AsgTpgAmY7PhCfg==");
  EXPECT_EQ(server.Last().Header("x-amz-content-sha256"), kEmptySha256);
}

TEST(S3Client, ListFollowsContinuationTokens) {
  FakeS3 server;
  server.SetReply([](const Captured& c, httplib::Response& res) {
    if (!absl::StrContains(c.target, "continuation-token=")) {
      res.set_content(
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
          "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>archive</Name>"
          "<Prefix>year=2026/</Prefix><KeyCount>1</KeyCount><IsTruncated>true</IsTruncated>"
          "<NextContinuationToken>1/a+b==</NextContinuationToken>"
          "<Contents><Key>year=2026/a &amp; b</Key><Size>3</Size></Contents>"
          "</ListBucketResult>",
          "application/xml");
    } else {
      res.set_content(
          "<ListBucketResult><IsTruncated>false</IsTruncated>"
          "<Contents><Key>year=2026/c</Key></Contents></ListBucketResult>",
          "application/xml");
    }
  });
  auto client = NewClient(PathStyleConfig(server.port()));
  absl::StatusOr<std::vector<std::string>> keys = client->List("year=2026/");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(*keys, (std::vector<std::string>{"year=2026/a & b", "year=2026/c"}));
  const std::vector<Captured> requests = server.Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].target, "/archive?encoding-type=url&list-type=2&prefix=year%3D2026%2F");
  EXPECT_EQ(requests[1].target,
            "/archive?continuation-token=1%2Fa%2Bb%3D%3D&encoding-type=url&list-type=2"
            "&prefix=year%3D2026%2F");
}

TEST(S3Client, ErrorsCarryTheServersCodeAndMessage) {
  FakeS3 server;
  auto client = NewClient(PathStyleConfig(server.port()));
  auto answer = [&](int status, std::string body) {
    server.SetReply([status, body](const Captured&, httplib::Response& res) {
      res.status = status;
      res.set_content(body, "application/xml");
    });
  };
  answer(503,
         "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>");
  absl::StatusOr<std::string> got = client->Get("k");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_TRUE(IsRetriable(got.status()));
  EXPECT_TRUE(absl::StrContains(got.status().message(), "SlowDown: Please reduce")) << got.status();

  answer(403,
         "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
         "does not match</Message></Error>");
  const absl::Status denied = client->Put("k", "v");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied) << denied;
  EXPECT_TRUE(absl::StrContains(denied.message(), "SignatureDoesNotMatch: The request signature"))
      << denied;
  EXPECT_FALSE(IsRetriable(denied));

  answer(404,
         "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist."
         "</Message></Error>");
  EXPECT_EQ(client->Get("k").status().code(), absl::StatusCode::kNotFound);
  // Deleting what is not there is done.
  EXPECT_TRUE(client->Delete("k").ok());
  answer(404, "<Error><Code>NoSuchBucket</Code><Message>nope</Message></Error>");
  EXPECT_EQ(client->Delete("k").code(), absl::StatusCode::kNotFound);
}

TEST(S3Client, StoppedServerIsRetriable) {
  int port = 0;
  {
    FakeS3 server;
    port = server.port();
  }
  auto client = NewClient(PathStyleConfig(port));
  const absl::Status s = client->Put("k", "v");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(IsRetriable(s));
}

TEST(S3Client, CreateRefusesUnusableConfigs) {
  S3Config good = PathStyleConfig(1);
  EXPECT_TRUE(S3Client::Create(good).ok());
  for (const char* endpoint : {"127.0.0.1:9000", "ftp://host", "http://host/path", "http://"}) {
    S3Config bad = good;
    bad.endpoint = endpoint;
    EXPECT_EQ(S3Client::Create(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << endpoint;
  }
  S3Config no_key = good;
  no_key.secret_key.clear();
  EXPECT_EQ(S3Client::Create(no_key).status().code(), absl::StatusCode::kInvalidArgument);
  S3Config no_bucket = good;
  no_bucket.bucket.clear();
  EXPECT_EQ(S3Client::Create(no_bucket).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Wire format.

TEST(S3Wire, UriEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(UriEncode("AZaz09-._~", false), "AZaz09-._~");
  EXPECT_EQ(UriEncode("a b+c=d/e%f*g!h", false), "a%20b%2Bc%3Dd%2Fe%25f%2Ag%21h");
  EXPECT_EQ(UriEncode("a b/c=d", true), "a%20b/c%3Dd");
  EXPECT_EQ(UriEncode("caf\xC3\xA9", false), "caf%C3%A9");
  EXPECT_EQ(UriEncode(std::string("\0\xFF", 2), false), "%00%FF");
}

TEST(S3Wire, RequestPathPerStyle) {
  S3Config config;
  config.bucket = "archive";
  config.path_style = true;
  EXPECT_EQ(
      RequestPath(config, "year=2026/month=11/day=22/hour=02/tidemark.raw-3-100-199.jsonl.gz"),
      "/archive/year%3D2026/month%3D11/day%3D22/hour%3D02/tidemark.raw-3-100-199.jsonl.gz");
  EXPECT_EQ(RequestPath(config, ""), "/archive");
  // Empty and dot segments are part of a key and kept.
  EXPECT_EQ(RequestPath(config, "a//./b"), "/archive/a//./b");
  config.path_style = false;
  EXPECT_EQ(RequestPath(config, "test$file.text"), "/test%24file.text");
  EXPECT_EQ(RequestPath(config, ""), "/");
}

TEST(S3Wire, CanonicalQuerySortsEncodedPairs) {
  EXPECT_EQ(CanonicalQuery({}), "");
  EXPECT_EQ(CanonicalQuery({{"prefix", "a b/c"}, {"list-type", "2"}, {"acl", ""}}),
            "acl=&list-type=2&prefix=a%20b%2Fc");
  // Sorted by encoded name, then value.
  EXPECT_EQ(CanonicalQuery({{"b", "2"}, {"b", "1"}, {"a~", "x"}, {"a=", "y"}}),
            "a%3D=y&a~=x&b=1&b=2");
}

TEST(S3Wire, ListObjectsV2Parsing) {
  absl::StatusOr<ListObjectsPage> page = ParseListObjectsV2(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
      "<!-- a comment with <Key>not-a-key</Key> -->\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
      "  <Name>b</Name><Prefix/><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys>\n"
      "  <IsTruncated>true</IsTruncated>\n"
      "  <NextContinuationToken>tok&amp;en</NextContinuationToken>\n"
      "  <Contents><Key>a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#x27;f&#39;</Key>\n"
      "    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>1</Size></Contents>\n"
      "  <Contents><Key>caf&#233; &#x1F600;</Key><Owner><ID>x</ID></Owner></Contents>\n"
      "  <Contents><Key><![CDATA[raw <cdata> & stuff]]></Key></Contents>\n"
      "  <Contents><s3:Key a='1>2' b=\"/\">ns</s3:Key></Contents>\n"
      "  <Contents><Key>line\r\nend</Key></Contents>\n"
      "  <CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>\n"
      "</ListBucketResult>\n");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->keys,
            (std::vector<std::string>{"a&b <c> \"d\" 'e' 'f'", "caf\xC3\xA9 \xF0\x9F\x98\x80",
                                      "raw <cdata> & stuff", "ns", "line\nend"}));
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_continuation_token, "tok&en");

  // encoding-type=url applied by the server: keys are percent-decoded after entity decoding.
  page = ParseListObjectsV2(
      "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
      "<Contents><Key>a%20b%2Bc%0D%26</Key></Contents></ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->keys, (std::vector<std::string>{"a b+c\r&"}));
  EXPECT_FALSE(page->truncated);

  page =
      ParseListObjectsV2("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->keys.empty());
}

TEST(S3Wire, ListObjectsV2RefusesWhatItCannotRead) {
  for (const char* xml : {
           "",
           "<ListBucketResult><Contents><Key>a</Contents></ListBucketResult>",
           "<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>",
           "<ListBucketResult><Contents><Key>a&#0;</Key></Contents></ListBucketResult>",
           "<ListBucketResult><Contents><Key>a & b</Key></Contents></ListBucketResult>",
           "<ListBucketResult>",
           "<ListBucketResult/><ListBucketResult/>",
           "<Error><Code>x</Code></Error>",
           "<!DOCTYPE x [<!ENTITY e \"k\">]><ListBucketResult/>",
           // Truncated without a token would list the first page forever.
           "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
           "<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%G1</Key>"
           "</Contents></ListBucketResult>",
       }) {
    EXPECT_EQ(ParseListObjectsV2(xml).status().code(), absl::StatusCode::kInternal) << xml;
  }
}

// The timeout is for a stall, not for the whole request: an object that keeps arriving past
// it (a large file over a slow link) is read whole; a server that sends nothing for as long
// fails the request.
TEST(S3Timeout, ARequestStillMovingBytesOutlastsTheTimeoutAStalledOneDoesNot) {
  FakeS3 server;
  S3Config config = ExampleConfig(server.port());
  config.timeout = absl::Seconds(1);
  auto client = NewClient(config);
  server.SetReply([](const Captured&, httplib::Response& res) {
    // Six pieces of 100 bytes, 250 ms apart: 1.25 s in all.
    res.set_chunked_content_provider("application/octet-stream",
                                     [](size_t offset, httplib::DataSink& sink) {
                                       if (offset > 0) absl::SleepFor(absl::Milliseconds(250));
                                       if (offset >= 600) {
                                         sink.done();
                                         return true;
                                       }
                                       const std::string piece(100, 'x');
                                       return sink.write(piece.data(), piece.size());
                                     });
  });
  S3Request request;
  request.key = "slow.bin";
  const absl::Time start = absl::Now();
  absl::StatusOr<S3Response> response = client->Send(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->body.size(), 600u);
  EXPECT_GT(absl::Now() - start, absl::Seconds(1));

  server.SetReply([](const Captured&, httplib::Response& res) {
    absl::SleepFor(absl::Seconds(3));  // nothing at all meanwhile
    res.set_content("late", "text/plain");
  });
  response = client->Send(request);
  ASSERT_FALSE(response.ok());
  EXPECT_TRUE(IsRetriable(response.status())) << response.status();
}

TEST(S3Wire, HttpStatusToCode) {
  const auto xml = [](const char* code) {
    return absl::StrCat("<Error><Code>", code, "</Code><Message>m</Message></Error>");
  };
  for (const auto& [status, code_in_body, want] :
       std::vector<std::tuple<int, std::string, absl::StatusCode>>{
           {200, "", absl::StatusCode::kOk},
           {204, "", absl::StatusCode::kOk},
           {500, xml("InternalError"), absl::StatusCode::kUnavailable},
           {502, "<html>bad gateway</html>", absl::StatusCode::kUnavailable},
           {503, xml("SlowDown"), absl::StatusCode::kUnavailable},
           {429, "", absl::StatusCode::kUnavailable},
           {408, "", absl::StatusCode::kUnavailable},
           {400, xml("RequestTimeout"), absl::StatusCode::kUnavailable},
           {409, xml("OperationAborted"), absl::StatusCode::kUnavailable},
           {403, xml("AccessDenied"), absl::StatusCode::kPermissionDenied},
           {403, xml("InvalidAccessKeyId"), absl::StatusCode::kPermissionDenied},
           // Refused session tokens: S3 answers 400, but the request itself is fine.
           {400, xml("ExpiredToken"), absl::StatusCode::kPermissionDenied},
           {400, xml("InvalidToken"), absl::StatusCode::kPermissionDenied},
           {400, xml("TokenRefreshRequired"), absl::StatusCode::kPermissionDenied},
           {404, xml("NoSuchBucket"), absl::StatusCode::kNotFound},
           {404, "", absl::StatusCode::kNotFound},
           {400, xml("InvalidArgument"), absl::StatusCode::kInvalidArgument},
           {400, xml("BadDigest"), absl::StatusCode::kInvalidArgument},
           {411, xml("MissingContentLength"), absl::StatusCode::kInvalidArgument},
           {409, xml("BucketNotEmpty"), absl::StatusCode::kFailedPrecondition},
           {412, xml("PreconditionFailed"), absl::StatusCode::kFailedPrecondition},
           {301, xml("PermanentRedirect"), absl::StatusCode::kFailedPrecondition},
           {501, xml("NotImplemented"), absl::StatusCode::kUnimplemented},
       }) {
    const absl::Status s = StatusFromResponse(status, code_in_body, "GET s3://b/k");
    EXPECT_EQ(s.code(), want) << status << " " << code_in_body << " -> " << s;
    EXPECT_EQ(IsRetriable(s), want == absl::StatusCode::kUnavailable) << s;
  }
  const absl::Status s = StatusFromResponse(
      400,
      "<Error><Code>InvalidBucketName</Code><Message>The specified bucket is not valid."
      "</Message><BucketName>a_b</BucketName></Error>",
      "PUT s3://a_b/");
  EXPECT_EQ(s.message(),
            "S3 PUT s3://a_b/: HTTP 400 InvalidBucketName: The specified bucket is not valid.");
}

TEST(S3Wire, CredentialRefusals) {
  for (const char* code : {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                           "InvalidToken", "TokenRefreshRequired"}) {
    EXPECT_TRUE(IsCredentialRefusal(403, code)) << code;
    EXPECT_TRUE(IsCredentialRefusal(400, code)) << code;
    EXPECT_FALSE(IsCredentialRefusal(500, code)) << code;
  }
  EXPECT_TRUE(IsCredentialRefusal(403, "")) << "a HEAD answer has no body";
  EXPECT_FALSE(IsCredentialRefusal(400, ""));
  EXPECT_FALSE(IsCredentialRefusal(403, "AccessDenied")) << "the keys' rights, not the keys";
  EXPECT_FALSE(IsCredentialRefusal(400, "InvalidArgument"));
}

TEST(S3Wire, Digests) {
  EXPECT_EQ(Md5Hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(Md5Hex("The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(Md5Base64(""), "1B2M2Y8AsgTpgAmY7PhCfg==");
  EXPECT_EQ(Sha256Hex(""), kEmptySha256);
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---------------------------------------------------------------------------------------
// Credentials.

// Sets (or, with nullopt, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string WriteTempFile(const std::string& text) {
  char path[] = "/tmp/tidemark-s3-credentials-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << text;
  return path;
}

TEST(S3Credentials, EnvironmentVariables) {
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDENV");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "envsecret");
  ScopedEnv token("AWS_SESSION_TOKEN", "envtoken");
  absl::StatusOr<S3Config> c = CredentialsFromEnvironment(S3Config{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->access_key, "AKIDENV");
  EXPECT_EQ(c->secret_key, "envsecret");
  EXPECT_EQ(c->session_token, "envtoken");
  EXPECT_EQ(c->credentials_file, "") << "a process's environment does not change";

  // Keys given explicitly win.
  S3Config explicit_keys;
  explicit_keys.access_key = "flag-id";
  explicit_keys.secret_key = "flag-secret";
  c = CredentialsFromEnvironment(explicit_keys);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key, "flag-id");
  EXPECT_EQ(c->session_token, "");

  ScopedEnv no_secret("AWS_SECRET_ACCESS_KEY", std::nullopt);
  EXPECT_EQ(CredentialsFromEnvironment(S3Config{}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(S3Credentials, SharedCredentialsFile) {
  const std::string path = WriteTempFile(
      "# comment\n"
      "[default]\n"
      "aws_access_key_id = AKIDDEFAULT\n"
      "aws_secret_access_key=defaultsecret\n"
      "\n"
      "[archive]\r\n"
      "  aws_access_key_id = AKIDARCHIVE  \r\n"
      "; another comment\n"
      "aws_secret_access_key = archive/secret+key\r\n"
      "aws_session_token = archivetoken\n"
      "[broken]\n"
      "aws_access_key_id = only\n");
  ScopedEnv id("AWS_ACCESS_KEY_ID", std::nullopt);
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", std::nullopt);
  ScopedEnv file("AWS_SHARED_CREDENTIALS_FILE", path);
  {
    ScopedEnv profile("AWS_PROFILE", std::nullopt);
    absl::StatusOr<S3Config> c = CredentialsFromEnvironment(S3Config{});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->access_key, "AKIDDEFAULT");
    EXPECT_EQ(c->secret_key, "defaultsecret");
    EXPECT_EQ(c->session_token, "");
    // Remembered, so that the client follows the file.
    EXPECT_EQ(c->credentials_file, path);
    EXPECT_EQ(c->credentials_profile, "default");
  }
  {
    ScopedEnv profile("AWS_PROFILE", "archive");
    absl::StatusOr<S3Config> c = CredentialsFromEnvironment(S3Config{});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->access_key, "AKIDARCHIVE");
    EXPECT_EQ(c->secret_key, "archive/secret+key");
    EXPECT_EQ(c->session_token, "archivetoken");
  }
  for (const char* missing : {"broken", "absent"}) {
    ScopedEnv profile("AWS_PROFILE", missing);
    const absl::Status s = CredentialsFromEnvironment(S3Config{}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StrContains(s.message(), missing)) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), path)) << s;
  }
  std::remove(path.c_str());
  {
    const absl::Status s = CredentialsFromEnvironment(S3Config{}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(absl::StrContains(s.message(), "AWS_ACCESS_KEY_ID")) << s;
  }
}

}  // namespace
}  // namespace tidemark::s3
