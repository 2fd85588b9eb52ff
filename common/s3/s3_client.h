#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tidemark::s3 {

/// Where a bucket is and who signs the requests.
struct S3Config {
  /// Scheme, host and optional port, no path: `http://127.0.0.1:4569`,
  /// `https://s3.eu-west-1.amazonaws.com`.
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  /// `endpoint/bucket/key` (MinIO-like stores) rather than `bucket.endpoint-host/key` (AWS's
  /// virtual-hosted style).
  bool path_style = true;
  std::string access_key;
  std::string secret_key;
  /// Sent as x-amz-security-token when set (temporary credentials).
  std::string session_token;
  /// Where the keys came from when they came from a shared credentials file (set by
  /// CredentialsFromFile). S3Client reads the profile again before a request when the file
  /// has changed or S3 refused the keys of the last one, so rotated keys and renewed
  /// temporary credentials take effect without a restart. Empty: the keys are fixed.
  std::string credentials_file;
  std::string credentials_profile;
  /// For connecting, and for any stretch of a request in which nothing is sent or received
  /// (whole seconds); a request still moving bytes may take up to 20 times as long in all.
  absl::Duration timeout = absl::Seconds(30);
  /// `host:port` to connect to instead of the endpoint's address; the Host header and the
  /// signature keep the endpoint's name (CURLOPT_CONNECT_TO). For virtual-hosted buckets on a
  /// store whose bucket names have no DNS entries, and for tests.
  std::string connect_to;
};

/// Fills the keys of `config` when it has none: from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
/// and AWS_SESSION_TOKEN, else from the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
/// or ~/.aws/credentials) in profile AWS_PROFILE (or `default`). Keys already in `config` are
/// kept, so a flag beats the environment. FAILED_PRECONDITION naming every place looked at
/// when no source has both keys.
absl::StatusOr<S3Config> CredentialsFromEnvironment(S3Config config);

/// The keys of `profile` in the shared credentials file (INI) at `path`, and the file and
/// profile themselves, so that S3Client follows later changes. FAILED_PRECONDITION when the
/// file cannot be read or the profile lacks either key.
absl::StatusOr<S3Config> CredentialsFromFile(S3Config config, const std::string& path,
                                             const std::string& profile);

/// Whether S3 refused a request's credentials (wrong, unknown, expired or revoked keys or
/// session token), as opposed to refusing what the request asks for.
bool IsCredentialRefusal(int http_status, absl::string_view s3_error_code);

/// Whether the same request may succeed later: UNAVAILABLE (network errors, timeouts, 5xx,
/// throttling), DEADLINE_EXCEEDED and ABORTED. Everything else needs a change first.
bool IsRetriable(const absl::Status& status);

/// A request as S3Client sends it: libcurl signs it (CURLOPT_AWS_SIGV4), with every header
/// here signed.
struct S3Request {
  std::string method = "GET";  ///< GET, PUT, DELETE or HEAD.
  /// The object's key; empty for a request on the bucket itself.
  std::string key;
  /// Query parameters, in any order; Send() encodes and sorts them as SigV4 signs them.
  std::vector<std::pair<std::string, std::string>> query;
  /// Further headers (`Range`, `x-amz-storage-class`, ...), all signed. Send() adds
  /// x-amz-content-sha256 (of `body`) and x-amz-security-token itself; libcurl adds
  /// x-amz-date. A caller's own x-amz-date is signed instead of the clock, but libcurl before
  /// 8.3 then sends it twice (curl issue 11738), which S3 refuses: only to reproduce a fixed
  /// signature.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Sent as is for PUT; must stay valid until Send() returns.
  absl::string_view body;
};

struct S3Response {
  int http_status = 0;
  /// Lower-case names; the last value of a repeated header.
  std::map<std::string, std::string> headers;
  std::string body;
};

/// An S3 client for one bucket. Thread-compatible: one call at a time (it reuses one libcurl
/// handle, so connections are kept alive between calls).
///
/// Failures carry codes a caller can act on (see IsRetriable): UNAVAILABLE for network
/// errors, timeouts, 5xx and throttling (429, 503 SlowDown); PERMISSION_DENIED for 403 with
/// the server's code and message, and for refused session tokens (ExpiredToken and the like,
/// which S3 answers with 400); NOT_FOUND for 404; FAILED_PRECONDITION for conflicts (409,
/// 412, 416) and redirects (wrong region or endpoint); INVALID_ARGUMENT for other 4xx;
/// UNIMPLEMENTED for 501; DATA_LOSS when a put's ETag does not match the bytes sent.
class S3Client final {
 public:
  /// INVALID_ARGUMENT for a config that cannot form a request (endpoint, bucket, keys).
  static absl::StatusOr<std::unique_ptr<S3Client>> Create(S3Config config);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  /// Stores `body` under `key`. Sends Content-MD5 so the server refuses bytes damaged on the
  /// way, and checks that the returned ETag is their MD5 (unless the bucket encrypts with
  /// KMS or customer keys, whose ETags are not).
  absl::Status Put(absl::string_view key, absl::string_view body);
  absl::StatusOr<std::string> Get(absl::string_view key);
  /// Every key starting with `prefix`, in S3's (byte) order; follows continuation tokens.
  absl::StatusOr<std::vector<std::string>> List(absl::string_view prefix);
  /// OK also when the key does not exist (S3 answers 204 either way).
  absl::Status Delete(absl::string_view key);
  /// Creates the bucket unless it exists and this account can use it.
  absl::Status CreateBucketIfMissing();

  /// One signed request; an HTTP error status is a response, not an error (see
  /// StatusFromResponse). UNAVAILABLE for transport failures. For operations the typed calls
  /// do not cover.
  absl::StatusOr<S3Response> Send(const S3Request& request);

  /// Its keys change when they are read again (see S3Config::credentials_file): not to be
  /// read during a call on another thread.
  const S3Config& config() const { return config_; }

 private:
  struct Curl;
  S3Client(S3Config config, std::unique_ptr<Curl> curl);
  /// Send() and then StatusFromResponse() for non-2xx answers.
  absl::StatusOr<S3Response> Call(const S3Request& request);
  absl::StatusOr<std::string> ListPage(absl::string_view prefix,
                                       absl::string_view continuation_token,
                                       std::vector<std::string>& keys);
  /// Reads config_.credentials_file again if it changed since it was last read, or if S3
  /// refused the last request's keys. Keeps the keys it has when the file cannot be read
  /// (a rotation midway) and remembers why in reload_error_.
  void RefreshCredentials();
  /// When S3 refused the keys: `status`, saying where they come from and whether they are
  /// read again (or why reading them failed).
  absl::Status ExplainRefusal(absl::Status status) const;

  S3Config config_;
  std::unique_ptr<Curl> curl_;
  /// The credentials file's identity, size and times when it was last read.
  std::string credentials_stamp_;
  bool credentials_refused_ = false;
  absl::Status reload_error_;
};

// The wire format, exposed for tests.

/// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9 - . _ ~)
/// stay, every other byte becomes %XX (upper-case hex); `/` stays too when `keep_slash`.
std::string UriEncode(absl::string_view s, bool keep_slash);

/// The request path (and, as S3 signs no path twice-encoded, the canonical URI): `/key` for
/// virtual-hosted style, `/bucket/key` for path style, each segment URI-encoded.
std::string RequestPath(const S3Config& config, absl::string_view key);

/// The query string as SigV4's canonical query string: names and values URI-encoded, sorted
/// by name then value, `name=` for an empty value. libcurl 7.88 signs the query as given, so
/// the request carries exactly this.
std::string CanonicalQuery(std::vector<std::pair<std::string, std::string>> params);

/// One page of a ListObjectsV2 answer.
struct ListObjectsPage {
  std::vector<std::string> keys;
  bool truncated = false;
  std::string next_continuation_token;
};

/// Parses a ListObjectsV2 result (keys with XML entities decoded). INTERNAL for a body that is
/// not one.
absl::StatusOr<ListObjectsPage> ParseListObjectsV2(absl::string_view xml);

/// The code for an answer: OK for 2xx, else as listed on S3Client, with `what` (e.g. "GET
/// key"), the HTTP status and the S3 error Code and Message from the XML body in the message.
absl::Status StatusFromResponse(int http_status, absl::string_view body, absl::string_view what);

/// Hex MD5 and SHA-256, and base64 MD5 (Content-MD5), through OpenSSL's EVP.
std::string Md5Hex(absl::string_view data);
std::string Md5Base64(absl::string_view data);
std::string Sha256Hex(absl::string_view data);

}  // namespace tidemark::s3
