#include "common/time/time_units.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tidemark::time {
namespace {

// Microseconds per unit for units coarser than a microsecond; nanoseconds divide.
int64_t MicrosPerUnit(v1::TimeUnit unit) {
  switch (unit) {
    case v1::TIME_UNIT_SECONDS:
      return 1'000'000;
    case v1::TIME_UNIT_UNSPECIFIED:
    case v1::TIME_UNIT_MILLISECONDS:
      return 1'000;
    case v1::TIME_UNIT_MICROSECONDS:
      return 1;
    case v1::TIME_UNIT_NANOSECONDS:
    default:
      return 0;
  }
}

}  // namespace

absl::StatusOr<int64_t> ToMicros(int64_t value, v1::TimeUnit unit) {
  if (unit == v1::TIME_UNIT_NANOSECONDS) {
    int64_t q = value / 1000;
    if (value % 1000 < 0) --q;
    return q;
  }
  const int64_t factor = MicrosPerUnit(unit);
  if (factor == 0) return absl::InvalidArgumentError(absl::StrCat("unknown time unit ", unit));
  int64_t out = 0;
  if (__builtin_mul_overflow(value, factor, &out) || out > kMaxTimeMagnitudeUs ||
      out < -kMaxTimeMagnitudeUs) {
    return absl::OutOfRangeError(
        absl::StrCat("time ", value, " is more than 146,000 years from 1970"));
  }
  return out;
}

absl::StatusOr<int64_t> FractionalToMicros(double value, v1::TimeUnit unit) {
  if (!std::isfinite(value)) return absl::InvalidArgumentError("time is not a finite number");
  const double factor =
      unit == v1::TIME_UNIT_NANOSECONDS ? 1e-3 : static_cast<double>(MicrosPerUnit(unit));
  if (factor == 0) return absl::InvalidArgumentError(absl::StrCat("unknown time unit ", unit));
  const double micros = std::round(value * factor);
  if (!(std::abs(micros) <= static_cast<double>(kMaxTimeMagnitudeUs))) {
    return absl::OutOfRangeError("time is more than 146,000 years from 1970");
  }
  return static_cast<int64_t>(micros);
}

absl::StatusOr<v1::TimeUnit> ParseTimeUnit(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "s" || n == "seconds" || n == "second") return v1::TIME_UNIT_SECONDS;
  if (n == "ms" || n == "milliseconds" || n == "millisecond") return v1::TIME_UNIT_MILLISECONDS;
  if (n == "us" || n == "microseconds" || n == "microsecond") return v1::TIME_UNIT_MICROSECONDS;
  if (n == "ns" || n == "nanoseconds" || n == "nanosecond") return v1::TIME_UNIT_NANOSECONDS;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown time unit \"", name,
                   "\"; expected SECONDS, MILLISECONDS, MICROSECONDS or NANOSECONDS"));
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

CorrectedTime CorrectFutureClock(int64_t event_time_us, int64_t ingest_time_us,
                                 absl::Duration max_lead) {
  if (event_time_us - ingest_time_us > absl::ToInt64Microseconds(max_lead)) {
    return {ingest_time_us, true};
  }
  return {event_time_us, false};
}

}  // namespace tidemark::time
