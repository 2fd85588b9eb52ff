// The query service's opaque tokens: page tokens (cursors) and Subscribe resume tokens.
// Input: fields of a cursor and a change id, then the rest as a token a client sent back.
//
// Properties: every cursor survives encode -> decode unchanged and its token is web-safe;
// a token that decodes re-encodes to a token decoding to the same cursor; StartCursor starts
// from the token when there is one and from the limit otherwise; resume tokens round-trip every
// change id and never decode to a negative one.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_support.h"
#include "services/query/query_core.h"

namespace tidemark::fuzz {
namespace {

bool Same(const query::Cursor& a, const query::Cursor& b) {
  return a.series_id == b.series_id && a.time_us == b.time_us && a.remaining == b.remaining &&
         a.key == b.key;
}

std::string Show(const query::Cursor& c) {
  return absl::StrCat("{", c.series_id, ", ", c.time_us, ", ", c.remaining, ", \"",
                      absl::CHexEscape(c.key), "\"}");
}

bool WebSafe(const std::string& token) {
  for (char ch : token) {
    const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace
}  // namespace tidemark::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tidemark;
  FuzzedDataProvider in(data, size);

  query::Cursor cursor;
  cursor.series_id = in.ConsumeIntegral<int64_t>();
  cursor.time_us = in.ConsumeIntegral<int64_t>();
  cursor.remaining = in.ConsumeIntegral<int64_t>();
  cursor.key = in.ConsumeRandomLengthString(64);
  const int64_t change_id = in.ConsumeIntegral<int64_t>();
  const int64_t limit = in.ConsumeIntegral<int64_t>();
  const std::string token = in.ConsumeRemainingBytesAsString();

  const std::string encoded = query::EncodeCursor(cursor);
  TIDEMARK_FUZZ_CHECK(fuzz::WebSafe(encoded), "a page token is web-safe text");
  absl::StatusOr<query::Cursor> decoded = query::DecodeCursor(encoded);
  TIDEMARK_FUZZ_CHECK(decoded.ok() && fuzz::Same(*decoded, cursor),
                      absl::StrCat("cursor ", fuzz::Show(cursor), " survives its token"));

  absl::StatusOr<query::Cursor> sent = query::DecodeCursor(token);
  if (sent.ok()) {
    absl::StatusOr<query::Cursor> re = query::DecodeCursor(query::EncodeCursor(*sent));
    TIDEMARK_FUZZ_CHECK(re.ok() && fuzz::Same(*re, *sent),
                        absl::StrCat("decoded cursor ", fuzz::Show(*sent), " re-encodes"));
  } else {
    TIDEMARK_FUZZ_CHECK(sent.status().code() == absl::StatusCode::kInvalidArgument,
                        "a foreign page token is INVALID_ARGUMENT");
  }

  absl::StatusOr<query::Cursor> start = query::StartCursor(token, limit);
  if (limit < 0) {
    TIDEMARK_FUZZ_CHECK(!start.ok(), "a negative limit is refused");
  } else if (token.empty()) {
    TIDEMARK_FUZZ_CHECK(start.ok() && start->remaining == (limit > 0 ? limit : -1) &&
                            start->key.empty() && start->series_id == INT64_MIN &&
                            start->time_us == INT64_MIN,
                        "the first page starts before everything with the limit left");
  } else {
    TIDEMARK_FUZZ_CHECK(start.ok() == sent.ok() && (!sent.ok() || fuzz::Same(*start, *sent)),
                        "a later page starts where its token says");
  }

  const std::string resume = query::EncodeResumeToken(change_id);
  TIDEMARK_FUZZ_CHECK(fuzz::WebSafe(resume), "a resume token is web-safe text");
  absl::StatusOr<int64_t> id = query::DecodeResumeToken(resume);
  if (change_id >= 0) {
    TIDEMARK_FUZZ_CHECK(id.ok() && *id == change_id, "a resume token keeps its change id");
  } else {
    TIDEMARK_FUZZ_CHECK(!id.ok(), "no token resumes from a negative change id");
  }
  absl::StatusOr<int64_t> sent_id = query::DecodeResumeToken(token);
  if (sent_id.ok()) {
    TIDEMARK_FUZZ_CHECK(*sent_id >= 0, "a resume token never names a negative change id");
    absl::StatusOr<int64_t> re = query::DecodeResumeToken(query::EncodeResumeToken(*sent_id));
    TIDEMARK_FUZZ_CHECK(re.ok() && *re == *sent_id, "a decoded resume token re-encodes");
  }
  return 0;
}
