#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tidemark/v1/query.pb.h"

// Parsers for the values of the command line. Each error is InvalidArgument and names the flag,
// so that the caller can print it as it is.
namespace tidemark::cli {

/// absl::ParseDuration ("90s", "1h30m", "250ms") plus `d` for 24 hours ("7d", "1.5d",
/// "1d12h"): absl leaves days out because a civil day is not always 24 hours, but the stored
/// windows and rollup buckets are fixed UTC durations.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view flag, absl::string_view text);

/// A positive duration in whole microseconds (a window, bucket or step size), as the API
/// wants it.
absl::StatusOr<int64_t> ParsePositiveMicros(absl::string_view flag, absl::string_view text);

/// A comma-separated list of positive durations ("1m,5m,1h"); empty text is an empty list.
absl::StatusOr<std::vector<int64_t>> ParseMicrosList(absl::string_view flag,
                                                     absl::string_view text);

/// `--where`: comma-separated `name=value`, `name!=value`, `name=~regex` and `name!~regex`.
/// The operator is the first `=`, `!=`, `=~` or `!~` after the name (names hold none of these
/// characters); the rest, `=` included, is the value. `\,` is a comma inside a value, and a
/// piece without an operator after a regex continues it, so `x=~a{1,3}` needs no escape.
absl::StatusOr<std::vector<v1::DimensionMatcher>> ParseMatchers(absl::string_view where);

/// `--method`: linear, locf, constant or spline.
absl::StatusOr<v1::InterpolationMethod> ParseMethod(absl::string_view text);

/// `--field`: avg, min, max, sum, count, first or last.
absl::StatusOr<v1::AggregateField> ParseField(absl::string_view text);

/// `--since`, `--start` and `--end` as given on the command line (empty when not given).
struct RangeArgs {
  std::string since;
  std::string start;
  std::string end;
};

/// The range [start, end] as the API's half-open TimeRange (end_us one past `end`, so that
/// a row exactly at the end is included): `end` is RFC 3339 (default: now), `start` is RFC
/// 3339 or `since` (default 1h) before the end; `start` and `since` together are an error.
absl::StatusOr<v1::TimeRange> ResolveRange(const RangeArgs& args, absl::Time now);

/// The largest multiple of `unit` at or below `us` (the start of the epoch-aligned window or
/// bucket holding `us`, negative times included). `unit` > 0.
int64_t AlignDown(int64_t us, int64_t unit);

}  // namespace tidemark::cli
