#pragma once

#include <cstdint>
#include <string>

#include "tests/support/stack.h"

namespace tidemark::testing {

/// The invariant of DESIGN §3, checked in SQL: windows recomputed in batch from the stored raw
/// points (sums in time order, first and last by time) against the stored aggregates.
struct OracleResult {
  int64_t windows = -1, missing = -1, wrong = -1, extra = -1;
  /// Some windows, and every one stored and equal, and nothing stored without points.
  bool Matches() const { return windows > 0 && missing == 0 && wrong == 0 && extra == 0; }
};

/// `sizes` is a SQL VALUES list of the window sizes, e.g. "(interval '5 seconds')".
OracleResult AggregateOracle(Stack& stack, const std::string& sizes);

}  // namespace tidemark::testing
