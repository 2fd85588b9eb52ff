#include "common/retry/backoff.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace tidemark::retry {

Backoff::Backoff(const BackoffPolicy& policy)
    : policy_(policy),
      current_(policy.initial),
      rng_(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
           reinterpret_cast<uintptr_t>(this)) {}

absl::Duration Backoff::Next() {
  ++attempts_;
  // xorshift64: jitter needs spread, not quality.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const double fraction = static_cast<double>(rng_ >> 11) / static_cast<double>(uint64_t{1} << 53);
  const absl::Duration delay = current_ * (1.0 - policy_.jitter * fraction);
  current_ = std::min(current_ * policy_.multiplier, policy_.max);
  return delay;
}

void Backoff::Reset() {
  current_ = policy_.initial;
  attempts_ = 0;
}

bool SleepUnlessStopped(absl::Duration delay, const std::atomic<bool>& stop) {
  const absl::Time until = absl::Now() + delay;
  while (!stop.load()) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return true;
    absl::SleepFor(std::min(left, absl::Milliseconds(50)));
  }
  return false;
}

}  // namespace tidemark::retry
