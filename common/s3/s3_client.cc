#include "common/s3/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>

#include "absl/base/call_once.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace tidemark::s3 {
namespace {

// ---------------------------------------------------------------------------------------
// Digests.

std::string Digest(const EVP_MD* md, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure; an empty digest then fails every check.
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) return "";
  return std::string(reinterpret_cast<const char*>(out), len);
}

// ---------------------------------------------------------------------------------------
// A minimal XML reader: enough of XML 1.0 for S3's answers (elements, attributes, text,
// entity and character references, CDATA, comments, processing instructions), without
// DTDs.

// Decodes `&...;` references and normalises line ends in character data.
absl::Status AppendText(absl::string_view raw, std::string& out) {
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '\r') {
      out.push_back('\n');
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      continue;
    }
    if (c != '&') {
      out.push_back(c);
      continue;
    }
    const size_t end = raw.find(';', i);
    if (end == absl::string_view::npos) {
      return absl::InternalError("XML: unterminated reference");
    }
    const absl::string_view ref = raw.substr(i + 1, end - i - 1);
    i = end;
    if (ref == "amp") {
      out.push_back('&');
    } else if (ref == "lt") {
      out.push_back('<');
    } else if (ref == "gt") {
      out.push_back('>');
    } else if (ref == "quot") {
      out.push_back('"');
    } else if (ref == "apos") {
      out.push_back('\'');
    } else if (absl::StartsWith(ref, "#")) {
      uint32_t cp = 0;
      const bool hex = absl::StartsWith(ref, "#x");
      const absl::string_view digits = ref.substr(hex ? 2 : 1);
      const bool parsed = !digits.empty() &&
                          (hex ? absl::SimpleHexAtoi(digits, &cp) : absl::SimpleAtoi(digits, &cp));
      if (!parsed || cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return absl::InternalError(absl::StrCat("XML: bad character reference &", ref, ";"));
      }
      if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
    } else {
      return absl::InternalError(absl::StrCat("XML: unknown entity &", ref, ";"));
    }
  }
  return absl::OkStatus();
}

// The element names from the root to the element that just ended (local names: a namespace
// prefix is dropped), and that element's own text.
using XmlEndElement =
    std::function<void(const std::vector<std::string>& path, const std::string& text)>;

absl::Status WalkXml(absl::string_view xml, const XmlEndElement& on_end) {
  std::vector<std::string> path;
  std::vector<std::string> texts;
  bool seen_root = false;
  size_t i = 0;
  auto skip_past = [&](absl::string_view terminator) -> absl::Status {
    const size_t end = xml.find(terminator, i);
    if (end == absl::string_view::npos) {
      return absl::InternalError(absl::StrCat("XML: missing ", terminator));
    }
    i = end + terminator.size();
    return absl::OkStatus();
  };
  while (i < xml.size()) {
    if (xml[i] != '<') {
      const size_t end = std::min(xml.find('<', i), xml.size());
      const absl::string_view raw = xml.substr(i, end - i);
      i = end;
      if (!path.empty()) {
        if (absl::Status s = AppendText(raw, texts.back()); !s.ok()) return s;
      } else if (!absl::StripAsciiWhitespace(raw).empty()) {
        return absl::InternalError("XML: text outside the root element");
      }
      continue;
    }
    const absl::string_view rest = xml.substr(i);
    if (absl::StartsWith(rest, "<?")) {
      if (absl::Status s = skip_past("?>"); !s.ok()) return s;
    } else if (absl::StartsWith(rest, "<!--")) {
      if (absl::Status s = skip_past("-->"); !s.ok()) return s;
    } else if (absl::StartsWith(rest, "<![CDATA[")) {
      const size_t start = i + 9;
      if (absl::Status s = skip_past("]]>"); !s.ok()) return s;
      if (path.empty()) return absl::InternalError("XML: CDATA outside the root element");
      absl::StrAppend(&texts.back(), xml.substr(start, i - 3 - start));
    } else if (absl::StartsWith(rest, "<!")) {
      if (absl::StrContains(rest.substr(0, rest.find('>')), '[')) {
        return absl::InternalError("XML: document type declarations are not supported");
      }
      if (absl::Status s = skip_past(">"); !s.ok()) return s;
    } else if (absl::StartsWith(rest, "</")) {
      const size_t end = xml.find('>', i);
      if (end == absl::string_view::npos) return absl::InternalError("XML: unterminated tag");
      std::string name(absl::StripAsciiWhitespace(xml.substr(i + 2, end - i - 2)));
      if (const size_t colon = name.find(':'); colon != std::string::npos) {
        name.erase(0, colon + 1);
      }
      if (path.empty() || path.back() != name) {
        return absl::InternalError(absl::StrCat("XML: unexpected </", name, ">"));
      }
      on_end(path, texts.back());
      path.pop_back();
      texts.pop_back();
      i = end + 1;
    } else {
      // A start tag: the name, then attributes whose quoted values may hold '>' or '/'.
      size_t j = i + 1;
      while (j < xml.size() && !absl::ascii_isspace(static_cast<unsigned char>(xml[j])) &&
             xml[j] != '/' && xml[j] != '>') {
        ++j;
      }
      std::string name(xml.substr(i + 1, j - i - 1));
      if (name.empty()) return absl::InternalError("XML: empty tag name");
      if (const size_t colon = name.find(':'); colon != std::string::npos) {
        name.erase(0, colon + 1);
      }
      bool self_closing = false;
      while (true) {
        if (j >= xml.size()) return absl::InternalError("XML: unterminated tag");
        const char c = xml[j];
        if (c == '"' || c == '\'') {
          const size_t close = xml.find(c, j + 1);
          if (close == absl::string_view::npos) {
            return absl::InternalError("XML: unterminated attribute value");
          }
          j = close + 1;
        } else if (c == '>') {
          self_closing = xml[j - 1] == '/';
          break;
        } else {
          ++j;
        }
      }
      i = j + 1;
      if (path.empty() && seen_root) return absl::InternalError("XML: two root elements");
      seen_root = true;
      path.push_back(std::move(name));
      texts.emplace_back();
      if (self_closing) {
        on_end(path, texts.back());
        path.pop_back();
        texts.pop_back();
      }
    }
  }
  if (!path.empty()) {
    return absl::InternalError(absl::StrCat("XML: <", path.back(), "> not closed"));
  }
  if (!seen_root) return absl::InternalError("XML: no element");
  return absl::OkStatus();
}

bool PathIs(const std::vector<std::string>& path, std::initializer_list<absl::string_view> want) {
  return path.size() == want.size() && std::equal(path.begin(), path.end(), want.begin());
}

struct ErrorBody {
  std::string code;
  std::string message;
};

// S3's <Error><Code/><Message/></Error>; empty fields when the body is none (HEAD answers
// have no body, proxies answer HTML).
ErrorBody ParseErrorBody(absl::string_view body) {
  ErrorBody e;
  const absl::Status parsed =
      WalkXml(body, [&](const std::vector<std::string>& path, const std::string& text) {
        if (PathIs(path, {"Error", "Code"})) e.code = text;
        if (PathIs(path, {"Error", "Message"})) e.message = text;
      });
  if (!parsed.ok()) return {};
  return e;
}

// Undoes encoding-type=url: %XX only (S3 encodes a space as %20, never '+').
absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    uint32_t byte = 0;
    if (i + 2 >= s.size() || !absl::SimpleHexAtoi(s.substr(i + 1, 2), &byte)) {
      return absl::InternalError(absl::StrCat("bad percent-encoding in \"", s, "\""));
    }
    out.push_back(static_cast<char>(byte));
    i += 2;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// libcurl.

absl::Status StatusFromCurl(CURLcode code, const char* detail, absl::string_view what) {
  std::string message = absl::StrCat("S3 ", what, ": ", curl_easy_strerror(code));
  if (detail != nullptr && detail[0] != '\0') absl::StrAppend(&message, " (", detail, ")");
  // Not an exhaustive switch: every libcurl release adds codes, and a distribution upgrade
  // should not stop the build. The codes a retry can cure are listed; the rest need a change.
  switch (code) {
    case CURLE_OK:
      return absl::OkStatus();
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PROXY:
    case CURLE_AGAIN:
      return absl::UnavailableError(message);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return absl::InvalidArgumentError(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_LOGIN_DENIED:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

void InitCurlOnce() {
  static absl::once_flag once;
  absl::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct UploadCursor {
  absl::string_view data;
  size_t offset = 0;
};

size_t ReadBody(char* buffer, size_t size, size_t count, void* user) {
  auto* cursor = static_cast<UploadCursor*>(user);
  const size_t n = std::min(size * count, cursor->data.size() - cursor->offset);
  std::copy_n(cursor->data.data() + cursor->offset, n, buffer);
  cursor->offset += n;
  return n;
}

// libcurl rewinds when it sends the body again on a fresh connection (the kept-alive one had
// been closed by the server).
int SeekBody(void* user, curl_off_t offset, int origin) {
  auto* cursor = static_cast<UploadCursor*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > cursor->data.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  cursor->offset = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t WriteHeader(char* data, size_t size, size_t count, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  const absl::string_view line(data, size * count);
  // A new response (after "100 Continue") starts over.
  if (absl::StartsWith(line, "HTTP/")) {
    headers->clear();
  } else if (const size_t colon = line.find(':'); colon != absl::string_view::npos) {
    (*headers)[absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * count;
}

struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistFree>;

absl::Status Append(Slist& list, const std::string& line) {
  curl_slist* appended = curl_slist_append(list.get(), line.c_str());
  if (appended == nullptr) return absl::ResourceExhaustedError("curl_slist_append failed");
  (void)list.release();
  list.reset(appended);
  return absl::OkStatus();
}

// What changes when a file is replaced or rewritten: device and inode (a rename over it, as
// Kubernetes' secret volumes do), size, and modification and change times. Empty when the
// file cannot be stat'ed, and when it changed less than two seconds ago: a rewrite of the
// same size within the file system's timestamp granularity would leave the stamp as it was,
// so a file that new is read again at the next request.
std::string FileStamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  const absl::Time changed =
      std::max(absl::TimeFromTimespec(st.st_mtim), absl::TimeFromTimespec(st.st_ctim));
  // A time in the future (another host's clock, on a shared volume) counts as settled.
  const absl::Duration age = absl::Now() - changed;
  if (age >= absl::ZeroDuration() && age < absl::Seconds(2)) return "";
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec, ":", st.st_ctim.tv_sec, ".", st.st_ctim.tv_nsec);
}

std::string Describe(const S3Config& config, absl::string_view method, absl::string_view key) {
  return absl::StrCat(method, " s3://", config.bucket, "/", key);
}

// "http://host:port/" -> {"http", "host:port"}; empty scheme when the endpoint is not one.
std::pair<std::string, std::string> SplitEndpoint(absl::string_view endpoint) {
  for (absl::string_view scheme : {"http", "https"}) {
    absl::string_view rest = endpoint;
    if (absl::ConsumePrefix(&rest, absl::StrCat(scheme, "://"))) {
      absl::ConsumeSuffix(&rest, "/");
      return {std::string(scheme), std::string(rest)};
    }
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Free functions.

std::string Md5Hex(absl::string_view data) {
  return absl::BytesToHexString(Digest(EVP_md5(), data));
}

std::string Md5Base64(absl::string_view data) {
  return absl::Base64Escape(Digest(EVP_md5(), data));
}

std::string Sha256Hex(absl::string_view data) {
  return absl::BytesToHexString(Digest(EVP_sha256(), data));
}

std::string UriEncode(absl::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::string RequestPath(const S3Config& config, absl::string_view key) {
  std::string path = config.path_style ? absl::StrCat("/", UriEncode(config.bucket, false)) : "";
  if (!key.empty() || !config.path_style) absl::StrAppend(&path, "/", UriEncode(key, true));
  return path;
}

std::string CanonicalQuery(std::vector<std::pair<std::string, std::string>> params) {
  for (auto& [name, value] : params) {
    name = UriEncode(name, false);
    value = UriEncode(value, false);
  }
  std::sort(params.begin(), params.end());
  return absl::StrJoin(params, "&", [](std::string* out, const auto& p) {
    absl::StrAppend(out, p.first, "=", p.second);
  });
}

absl::StatusOr<ListObjectsPage> ParseListObjectsV2(absl::string_view xml) {
  ListObjectsPage page;
  std::string encoding;
  bool is_list = false;
  const absl::Status parsed =
      WalkXml(xml, [&](const std::vector<std::string>& path, const std::string& text) {
        if (PathIs(path, {"ListBucketResult"})) is_list = true;
        if (PathIs(path, {"ListBucketResult", "Contents", "Key"})) page.keys.push_back(text);
        if (PathIs(path, {"ListBucketResult", "IsTruncated"})) page.truncated = text == "true";
        if (PathIs(path, {"ListBucketResult", "NextContinuationToken"})) {
          page.next_continuation_token = text;
        }
        if (PathIs(path, {"ListBucketResult", "EncodingType"})) encoding = text;
      });
  if (!parsed.ok()) return absl::InternalError(absl::StrCat("ListObjectsV2: ", parsed.message()));
  if (!is_list) return absl::InternalError("ListObjectsV2: no ListBucketResult");
  if (page.truncated && page.next_continuation_token.empty()) {
    return absl::InternalError("ListObjectsV2: truncated without NextContinuationToken");
  }
  // The server says whether it applied encoding-type=url (s3rver, for one, does not).
  if (encoding == "url") {
    for (std::string& key : page.keys) {
      absl::StatusOr<std::string> decoded = PercentDecode(key);
      if (!decoded.ok()) {
        return absl::InternalError(absl::StrCat("ListObjectsV2: ", decoded.status().message()));
      }
      key = *std::move(decoded);
    }
  } else if (!encoding.empty()) {
    return absl::InternalError(absl::StrCat("ListObjectsV2: unknown EncodingType ", encoding));
  }
  return page;
}

absl::Status StatusFromResponse(int http_status, absl::string_view body, absl::string_view what) {
  if (http_status >= 200 && http_status < 300) return absl::OkStatus();
  const ErrorBody e = ParseErrorBody(body);
  std::string message = absl::StrCat("S3 ", what, ": HTTP ", http_status);
  if (!e.code.empty()) absl::StrAppend(&message, " ", e.code);
  if (!e.message.empty()) absl::StrAppend(&message, ": ", e.message);
  // S3 codes that AWS's SDKs retry although their HTTP status is a 4xx.
  if (e.code == "RequestTimeout" || e.code == "OperationAborted" || e.code == "SlowDown") {
    return absl::UnavailableError(message);
  }
  if (http_status == 401 || http_status == 403 || IsCredentialRefusal(http_status, e.code)) {
    return absl::PermissionDeniedError(message);
  }
  if (http_status == 404) return absl::NotFoundError(message);
  if (http_status == 408 || http_status == 429) return absl::UnavailableError(message);
  if (http_status == 501) return absl::UnimplementedError(message);
  if (http_status >= 500 && http_status < 600) return absl::UnavailableError(message);
  // A redirect means another region or endpoint: following it would break the signature.
  if (http_status >= 300 && http_status < 400) return absl::FailedPreconditionError(message);
  if (http_status == 409 || http_status == 412 || http_status == 416) {
    return absl::FailedPreconditionError(message);
  }
  if (http_status >= 400 && http_status < 500) return absl::InvalidArgumentError(message);
  return absl::InternalError(absl::StrCat(message, " (unexpected HTTP status)"));
}

bool IsCredentialRefusal(int http_status, absl::string_view s3_error_code) {
  // AccessDenied is not among them: it refuses what the keys may do, not the keys.
  static constexpr absl::string_view kCodes[] = {"InvalidAccessKeyId",   "SignatureDoesNotMatch",
                                                 "ExpiredToken",         "InvalidToken",
                                                 "TokenRefreshRequired", "InvalidSecurity"};
  if (http_status != 400 && http_status != 403) return false;
  // HEAD answers carry no body, so no code.
  if (s3_error_code.empty()) return http_status == 403;
  return std::find(std::begin(kCodes), std::end(kCodes), s3_error_code) != std::end(kCodes);
}

bool IsRetriable(const absl::Status& status) {
  // Exhaustive: a new code must be classified here.
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      return true;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnauthenticated:
      return false;
    case absl::StatusCode::kDoNotUseReservedForFutureExpansionUseDefaultInSwitchInstead_:
      break;
  }
  return false;
}

absl::StatusOr<S3Config> CredentialsFromEnvironment(S3Config config) {
  if (!config.access_key.empty() && !config.secret_key.empty()) return config;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? "" : v;
  };
  const std::string id = env("AWS_ACCESS_KEY_ID");
  const std::string secret = env("AWS_SECRET_ACCESS_KEY");
  if (!id.empty() || !secret.empty()) {
    if (id.empty() || secret.empty()) {
      return absl::FailedPreconditionError(
          "S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together");
    }
    config.access_key = id;
    config.secret_key = secret;
    config.session_token = env("AWS_SESSION_TOKEN");
    return config;
  }
  std::string path = env("AWS_SHARED_CREDENTIALS_FILE");
  if (path.empty()) {
    const std::string home = env("HOME");
    if (home.empty()) {
      return absl::FailedPreconditionError(
          "no S3 credentials: AWS_ACCESS_KEY_ID, AWS_SHARED_CREDENTIALS_FILE and HOME are unset");
    }
    path = absl::StrCat(home, "/.aws/credentials");
  }
  std::string profile = env("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  return CredentialsFromFile(std::move(config), path, profile);
}

absl::StatusOr<S3Config> CredentialsFromFile(S3Config config, const std::string& path,
                                             const std::string& profile) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                     "write profile [",
                     profile, "] to ", path, " (AWS_SHARED_CREDENTIALS_FILE)"));
  }
  std::string line;
  std::string section;
  bool found = false;
  std::map<std::string, std::string> values;
  while (std::getline(in, line)) {
    const absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l[0] == '#' || l[0] == ';') continue;
    if (l.front() == '[' && l.back() == ']') {
      section = std::string(absl::StripAsciiWhitespace(l.substr(1, l.size() - 2)));
      found = found || section == profile;
      continue;
    }
    if (section != profile) continue;
    const size_t eq = l.find('=');
    if (eq == absl::string_view::npos) continue;
    values[absl::AsciiStrToLower(absl::StripAsciiWhitespace(l.substr(0, eq)))] =
        std::string(absl::StripAsciiWhitespace(l.substr(eq + 1)));
  }
  if (!found) {
    return absl::FailedPreconditionError(
        absl::StrCat("no S3 credentials: AWS_ACCESS_KEY_ID is not set and ", path,
                     " has no profile [", profile, "] (AWS_PROFILE)"));
  }
  config.access_key = values["aws_access_key_id"];
  config.secret_key = values["aws_secret_access_key"];
  config.session_token = values["aws_session_token"];
  if (config.access_key.empty() || config.secret_key.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no S3 credentials: profile [", profile, "] in ", path,
                     " lacks aws_access_key_id or aws_secret_access_key"));
  }
  config.credentials_file = path;
  config.credentials_profile = profile;
  return config;
}

// ---------------------------------------------------------------------------------------
// S3Client.

struct S3Client::Curl {
  CURL* handle = nullptr;
  // Scheme and authority of every request, fixed at creation.
  std::string base_url;
  std::string sigv4;
  ~Curl() {
    if (handle != nullptr) curl_easy_cleanup(handle);
  }
};

absl::StatusOr<std::unique_ptr<S3Client>> S3Client::Create(S3Config config) {
  const auto [scheme, authority] = SplitEndpoint(config.endpoint);
  if (scheme.empty() || authority.empty() || authority.find_first_of("/?#@") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3 endpoint \"", config.endpoint, "\" is not http[s]://host[:port]"));
  }
  if (config.bucket.empty() || absl::StrContains(config.bucket, '/')) {
    return absl::InvalidArgumentError(absl::StrCat("S3 bucket \"", config.bucket, "\" is invalid"));
  }
  if (config.region.empty() || absl::StrContains(config.region, ':')) {
    return absl::InvalidArgumentError(absl::StrCat("S3 region \"", config.region, "\" is invalid"));
  }
  if (config.access_key.empty() || config.secret_key.empty()) {
    return absl::InvalidArgumentError("S3 access key or secret key is empty");
  }
  if (config.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("S3 timeout must be positive");
  }
  InitCurlOnce();
  auto curl = std::make_unique<Curl>();
  curl->handle = curl_easy_init();
  if (curl->handle == nullptr) return absl::InternalError("curl_easy_init failed");
  curl->base_url = config.path_style ? absl::StrCat(scheme, "://", authority)
                                     : absl::StrCat(scheme, "://", config.bucket, ".", authority);
  curl->sigv4 = absl::StrCat("aws:amz:", config.region, ":s3");
  return std::unique_ptr<S3Client>(new S3Client(std::move(config), std::move(curl)));
}

// No stamp yet: the first request reads the file again, so a change between the read that
// made `config` and now is not missed.
S3Client::S3Client(S3Config config, std::unique_ptr<Curl> curl)
    : config_(std::move(config)), curl_(std::move(curl)) {}

void S3Client::RefreshCredentials() {
  if (config_.credentials_file.empty()) return;
  std::string stamp = FileStamp(config_.credentials_file);
  if (!credentials_refused_ && !stamp.empty() && stamp == credentials_stamp_) return;
  absl::StatusOr<S3Config> reread =
      CredentialsFromFile(config_, config_.credentials_file, config_.credentials_profile);
  if (!reread.ok()) {
    reload_error_ = reread.status();
    return;
  }
  config_.access_key = std::move(reread->access_key);
  config_.secret_key = std::move(reread->secret_key);
  config_.session_token = std::move(reread->session_token);
  credentials_stamp_ = std::move(stamp);
  reload_error_ = absl::OkStatus();
}

S3Client::~S3Client() = default;

absl::StatusOr<S3Response> S3Client::Send(const S3Request& request) {
  const std::string what = Describe(config_, request.method, request.key);
  if (request.method != "GET" && request.method != "HEAD" && request.method != "PUT" &&
      request.method != "DELETE") {
    return absl::InvalidArgumentError(absl::StrCat("S3 ", what, ": unsupported method"));
  }
  RefreshCredentials();
  CURL* h = curl_->handle;
  // Options start from scratch for every request; the connection cache survives the reset.
  curl_easy_reset(h);

  std::string url = absl::StrCat(curl_->base_url, RequestPath(config_, request.key));
  if (!request.query.empty()) absl::StrAppend(&url, "?", CanonicalQuery(request.query));

  Slist headers;
  for (const auto& [name, value] : request.headers) {
    if (absl::Status s = Append(headers, absl::StrCat(name, ": ", value)); !s.ok()) return s;
  }
  // libcurl 7.88 signs this header's value as the payload hash but does not add it itself
  // (8.0 does, as UNSIGNED-PAYLOAD); S3 requires it with SigV4.
  if (absl::Status s =
          Append(headers, absl::StrCat("x-amz-content-sha256: ", Sha256Hex(request.body)));
      !s.ok()) {
    return s;
  }
  if (!config_.session_token.empty()) {
    if (absl::Status s =
            Append(headers, absl::StrCat("x-amz-security-token: ", config_.session_token));
        !s.ok()) {
      return s;
    }
  }
  Slist connect_to;
  if (!config_.connect_to.empty()) {
    if (absl::Status s = Append(connect_to, absl::StrCat("::", config_.connect_to)); !s.ok()) {
      return s;
    }
  }

  S3Response response;
  UploadCursor upload{request.body, 0};
  char error[CURL_ERROR_SIZE] = {0};
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(config_.timeout));
  CURLcode rc = CURLE_OK;
  auto set = [&rc](CURLcode r) {
    if (rc == CURLE_OK) rc = r;
  };
  set(curl_easy_setopt(h, CURLOPT_URL, url.c_str()));
  set(curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https"));
  // The path is encoded per segment already; "." segments are part of a key.
  set(curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L));
  set(curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L));
  // The timeout bounds connecting and any stretch with nothing sent or received, not the
  // whole request: a large file over a slow link takes longer and is still making progress.
  // A server that trickles a byte now and then is cut off at 20 times the timeout.
  set(curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L));
  set(curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, std::max(1L, (timeout_ms + 999) / 1000)));
  set(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20 * timeout_ms));
  set(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error));
  set(curl_easy_setopt(h, CURLOPT_USERAGENT, "tidemark-s3"));
  set(curl_easy_setopt(h, CURLOPT_AWS_SIGV4, curl_->sigv4.c_str()));
  // Separate options rather than CURLOPT_USERPWD: a ':' in a key cannot split them wrongly.
  set(curl_easy_setopt(h, CURLOPT_USERNAME, config_.access_key.c_str()));
  set(curl_easy_setopt(h, CURLOPT_PASSWORD, config_.secret_key.c_str()));
  set(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get()));
  if (connect_to) set(curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to.get()));
  set(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody));
  set(curl_easy_setopt(h, CURLOPT_WRITEDATA, &response.body));
  set(curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &WriteHeader));
  set(curl_easy_setopt(h, CURLOPT_HEADERDATA, &response.headers));
  if (request.method == "GET") {
    set(curl_easy_setopt(h, CURLOPT_HTTPGET, 1L));
  } else if (request.method == "HEAD") {
    set(curl_easy_setopt(h, CURLOPT_NOBODY, 1L));
  } else if (request.method == "PUT") {
    set(curl_easy_setopt(h, CURLOPT_UPLOAD, 1L));
    set(curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadBody));
    set(curl_easy_setopt(h, CURLOPT_READDATA, &upload));
    set(curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &SeekBody));
    set(curl_easy_setopt(h, CURLOPT_SEEKDATA, &upload));
    set(curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                         static_cast<curl_off_t>(request.body.size())));
  } else {
    set(curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE"));
  }
  if (rc == CURLE_OK) rc = curl_easy_perform(h);
  long status = 0;
  if (rc == CURLE_OK) rc = curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  const absl::Status transport = StatusFromCurl(rc, error, what);
  // The options point into this frame; none may outlive it.
  curl_easy_reset(h);
  if (!transport.ok()) return transport;
  response.http_status = static_cast<int>(status);
  credentials_refused_ =
      (status == 400 || status == 403) &&
      IsCredentialRefusal(response.http_status, ParseErrorBody(response.body).code);
  return response;
}

absl::Status S3Client::ExplainRefusal(absl::Status status) const {
  if (!credentials_refused_ || status.ok()) return status;
  std::string source;
  if (config_.credentials_file.empty()) {
    source = "the keys were given at start (flags or environment) and are not read again";
  } else if (!reload_error_.ok()) {
    source = absl::StrCat("reading the credentials again: ", reload_error_.message());
  } else {
    source = absl::StrCat("the keys are profile [", config_.credentials_profile, "] of ",
                          config_.credentials_file, ", read again before the next request");
  }
  return absl::Status(status.code(), absl::StrCat(status.message(), "; ", source));
}

absl::StatusOr<S3Response> S3Client::Call(const S3Request& request) {
  absl::StatusOr<S3Response> response = Send(request);
  if (!response.ok()) return response.status();
  if (absl::Status s = StatusFromResponse(response->http_status, response->body,
                                          Describe(config_, request.method, request.key));
      !s.ok()) {
    // Refused keys while the file that should hold new ones cannot be read: say both.
    if (credentials_refused_ && !reload_error_.ok()) {
      return absl::Status(
          s.code(),
          absl::StrCat(s.message(), "; reading the credentials again: ", reload_error_.message()));
    }
    return s;
  }
  return response;
}

absl::Status S3Client::Put(absl::string_view key, absl::string_view body) {
  if (key.empty()) return absl::InvalidArgumentError("S3 PUT: empty key");
  S3Request request;
  request.method = "PUT";
  request.key = std::string(key);
  request.headers = {{"Content-MD5", Md5Base64(body)}};
  request.body = body;
  absl::StatusOr<S3Response> response = Call(request);
  if (!response.ok()) return response.status();
  // With KMS or customer-provided keys the ETag is no MD5 (S3 says which it used).
  const auto sse = response->headers.find("x-amz-server-side-encryption");
  if ((sse != response->headers.end() && absl::StartsWith(sse->second, "aws:kms")) ||
      response->headers.contains("x-amz-server-side-encryption-customer-algorithm")) {
    return absl::OkStatus();
  }
  const auto etag = response->headers.find("etag");
  const std::string want = Md5Hex(body);
  absl::string_view got;
  if (etag != response->headers.end()) got = etag->second;
  absl::ConsumePrefix(&got, "\"");
  absl::ConsumeSuffix(&got, "\"");
  if (!absl::EqualsIgnoreCase(got, want)) {
    return absl::DataLossError(absl::StrCat("S3 ", Describe(config_, "PUT", key), ": ETag \"", got,
                                            "\" is not the MD5 ", want, " of the bytes sent"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> S3Client::Get(absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("S3 GET: empty key");
  S3Request request;
  request.key = std::string(key);
  absl::StatusOr<S3Response> response = Call(request);
  if (!response.ok()) return response.status();
  return std::move(response->body);
}

absl::StatusOr<std::string> S3Client::ListPage(absl::string_view prefix,
                                               absl::string_view continuation_token,
                                               std::vector<std::string>& keys) {
  S3Request request;
  request.query = {{"list-type", "2"}, {"encoding-type", "url"}};
  if (!prefix.empty()) request.query.emplace_back("prefix", std::string(prefix));
  if (!continuation_token.empty()) {
    request.query.emplace_back("continuation-token", std::string(continuation_token));
  }
  absl::StatusOr<S3Response> response = Call(request);
  if (!response.ok()) return response.status();
  absl::StatusOr<ListObjectsPage> page = ParseListObjectsV2(response->body);
  if (!page.ok()) {
    return absl::InternalError(
        absl::StrCat("S3 ", Describe(config_, "LIST", prefix), ": ", page.status().message()));
  }
  keys.insert(keys.end(), std::make_move_iterator(page->keys.begin()),
              std::make_move_iterator(page->keys.end()));
  return page->truncated ? page->next_continuation_token : "";
}

absl::StatusOr<std::vector<std::string>> S3Client::List(absl::string_view prefix) {
  std::vector<std::string> keys;
  std::string token;
  do {
    absl::StatusOr<std::string> next = ListPage(prefix, token, keys);
    if (!next.ok()) return next.status();
    if (!next->empty() && *next == token) {
      return absl::InternalError(absl::StrCat("S3 ", Describe(config_, "LIST", prefix),
                                              ": the same continuation token twice"));
    }
    token = *std::move(next);
  } while (!token.empty());
  return keys;
}

absl::Status S3Client::Delete(absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("S3 DELETE: empty key");
  S3Request request;
  request.method = "DELETE";
  request.key = std::string(key);
  absl::StatusOr<S3Response> response = Send(request);
  if (!response.ok()) return response.status();
  // S3 answers 204 for a missing key; stores that answer NoSuchKey mean the same.
  if (response->http_status == 404 && ParseErrorBody(response->body).code == "NoSuchKey") {
    return absl::OkStatus();
  }
  return ExplainRefusal(
      StatusFromResponse(response->http_status, response->body, Describe(config_, "DELETE", key)));
}

absl::Status S3Client::CreateBucketIfMissing() {
  S3Request head;
  head.method = "HEAD";
  absl::StatusOr<S3Response> exists = Send(head);
  if (!exists.ok()) return exists.status();
  if (exists->http_status != 404) {
    return ExplainRefusal(
        StatusFromResponse(exists->http_status, exists->body, Describe(config_, "HEAD", "")));
  }
  S3Request create;
  create.method = "PUT";
  // us-east-1 is the default location; elsewhere S3 wants it named.
  std::string location;
  if (config_.region != "us-east-1") {
    location = absl::StrCat(
        "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<LocationConstraint>",
        config_.region, "</LocationConstraint></CreateBucketConfiguration>");
  }
  create.body = location;
  absl::StatusOr<S3Response> created = Send(create);
  if (!created.ok()) return created.status();
  const absl::Status status = ExplainRefusal(
      StatusFromResponse(created->http_status, created->body, Describe(config_, "PUT", "")));
  if (created->http_status != 409) return status;
  // Created meanwhile by another writer (S3 says BucketAlreadyOwnedByYou; some stores say
  // BucketAlreadyExists for one's own bucket too): fine if this account can use it.
  if (ParseErrorBody(created->body).code == "BucketAlreadyOwnedByYou") return absl::OkStatus();
  absl::StatusOr<S3Response> again = Send(head);
  if (again.ok() && again->http_status >= 200 && again->http_status < 300) {
    return absl::OkStatus();
  }
  return status;
}

}  // namespace tidemark::s3
