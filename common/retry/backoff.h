#pragma once

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace tidemark::retry {

/// How a retry loop spaces its attempts: exponential growth from `initial` to `max`, each
/// delay shortened by a random part of up to `jitter` of it, so that replicas that failed
/// together do not retry in lockstep.
struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.2;
};

/// The delays of one retry loop. Every loop that waits for a dependency to recover (Kafka,
/// PostgreSQL, the lake) takes its delays from here; which errors are worth retrying is each
/// dependency's own classification (kafka::IsRetriable, pg::FromException, s3::IsRetriable).
class Backoff final {
 public:
  explicit Backoff(const BackoffPolicy& policy = {});
  /// The delay to wait before the next attempt; the one after grows.
  absl::Duration Next();
  /// Back to the initial delay, after a success.
  void Reset();
  int64_t attempts() const { return attempts_; }

 private:
  BackoffPolicy policy_;
  absl::Duration current_;
  int64_t attempts_ = 0;
  uint64_t rng_;
};

/// Sleeps for `delay`, waking early when `stop` is set. Returns false when stopped.
bool SleepUnlessStopped(absl::Duration delay, const std::atomic<bool>& stop);

}  // namespace tidemark::retry
