#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tidemark::testing {

/// Polls `done` every `period` until it holds (true) or 30 s pass (false): a loaded machine is
/// slow, never this slow. For unit tests of threads; no timing is asserted.
template <typename F>
bool Eventually(F done, absl::Duration period = absl::Milliseconds(5)) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(period);
  }
  return true;
}

}  // namespace tidemark::testing
