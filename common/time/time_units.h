#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::time {

/// No time Tidemark handles is further than this from 1970 (2^62 microseconds, about 146,000
/// years): within it, window ends, lateness and clock leads are sums that cannot overflow.
inline constexpr int64_t kMaxTimeMagnitudeUs = int64_t{1} << 62;

/// Converts `value` in `unit` to microseconds since the epoch. Unspecified means
/// milliseconds. Nanoseconds are truncated toward negative infinity.
/// Fails with OutOfRange when the result is further than kMaxTimeMagnitudeUs from 1970.
absl::StatusOr<int64_t> ToMicros(int64_t value, v1::TimeUnit unit);

/// Converts a fractional value in `unit` (as JSON devices send "1609757175225.499" ms)
/// to microseconds, rounding to the nearest microsecond.
absl::StatusOr<int64_t> FractionalToMicros(double value, v1::TimeUnit unit);

/// Parses a unit name as devices send it: "MILLISECONDS", "ms", "seconds", ...
absl::StatusOr<v1::TimeUnit> ParseTimeUnit(absl::string_view name);

/// Microseconds since the epoch of `t`.
int64_t ToMicros(absl::Time t);

/// The time a point is stored and windowed at (DESIGN §3): the event time, unless it is
/// more than `max_lead` ahead of the ingest time, in which case the device clock is out of
/// sync and the ingest time is used instead.
struct CorrectedTime {
  int64_t time_us;
  bool corrected;
};
CorrectedTime CorrectFutureClock(int64_t event_time_us, int64_t ingest_time_us,
                                 absl::Duration max_lead);

/// The default lead beyond which a clock is out of sync (the reference pipelines' 15 min).
inline constexpr absl::Duration kDefaultFutureClockLead = absl::Minutes(15);

}  // namespace tidemark::time
