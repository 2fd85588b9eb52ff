#include "common/auth/credentials.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tidemark::auth {
namespace {

constexpr absl::string_view kSha256Prefix = "sha256:";

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("credentials line ", line, ": ", what));
}

absl::Status ParseScopes(absl::string_view scopes, int line, Principal& p) {
  for (absl::string_view scope : absl::StrSplit(scopes, ',')) {
    if (scope == "read") {
      p.read = true;
    } else if (scope == "write") {
      p.write_prefixes.emplace_back();
    } else if (absl::ConsumePrefix(&scope, "write:")) {
      if (scope.empty()) return LineError(line, "write: needs a device-id prefix");
      p.write_prefixes.emplace_back(scope);
    } else if (scope == "explicit_version") {
      p.explicit_versions = true;
    } else {
      return LineError(line, absl::StrCat("unknown scope \"", scope,
                                          "\" (read, write, write:<prefix>, explicit_version)"));
    }
  }
  return absl::OkStatus();
}

bool IsHexDigest(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

}  // namespace

bool Principal::MayWriteDevice(absl::string_view device_id) const {
  for (const std::string& prefix : write_prefixes) {
    if (absl::StartsWith(device_id, prefix)) return true;
  }
  return false;
}

Principal Unrestricted() {
  return {.name = "unauthenticated", .read = true, .write_prefixes = {""},
          .explicit_versions = true};
}

absl::StatusOr<Credentials> ParseCredentials(absl::string_view text) {
  Credentials out;
  absl::flat_hash_map<std::string, int> names;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (f.size() < 4 || f.size() > 5 || (f[0] != "token" && f[0] != "cert")) {
      return LineError(line_no,
                       "expected `token <name> sha256:<hex> <scopes> [expires=<RFC 3339>]` or "
                       "`cert <name> <identity> <scopes> [expires=<RFC 3339>]`");
    }
    Principal p;
    p.name = std::string(f[1]);
    if (!names.emplace(p.name, line_no).second) {
      return LineError(line_no, absl::StrCat("name \"", p.name, "\" is used twice"));
    }
    if (absl::Status s = ParseScopes(f[3], line_no, p); !s.ok()) return s;
    if (f.size() == 5) {
      absl::string_view when = f[4];
      std::string error;
      if (!absl::ConsumePrefix(&when, "expires=") ||
          !absl::ParseTime(absl::RFC3339_full, when, &p.expires, &error)) {
        return LineError(line_no, "the fifth field must be expires=<RFC 3339 time>");
      }
    }
    if (f[0] == "token") {
      absl::string_view digest = f[2];
      if (!absl::ConsumePrefix(&digest, kSha256Prefix) || !IsHexDigest(digest)) {
        return LineError(line_no,
                         "a token is stored as sha256:<64 lowercase hex digits> (see "
                         "`tidemark token`), never in clear");
      }
      if (!out.by_token_sha256.emplace(std::string(digest), std::move(p)).second) {
        return LineError(line_no, "the same token is listed twice");
      }
    } else if (!out.by_certificate.emplace(std::string(f[2]), std::move(p)).second) {
      return LineError(line_no, "the same certificate identity is listed twice");
    }
  }
  return out;
}

std::string TokenSha256(absl::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return "";  // allocation failure: an empty digest matches no credential
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return absl::InternalError("the system's random source failed");
  }
  return absl::StrCat("tdm_", absl::WebSafeBase64Escape(absl::string_view(
                                  reinterpret_cast<const char*>(bytes), sizeof bytes)));
}

}  // namespace tidemark::auth
