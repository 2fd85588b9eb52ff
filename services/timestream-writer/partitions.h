#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pqxx/connection"

namespace tidemark::writer {

/// The daily partitions of one time-partitioned table (`points`, `aggregates`), created
/// ahead of need and dropped by retention. Remembers which days exist on this connection.
class DailyPartitions final {
 public:
  explicit DailyPartitions(std::string parent) : parent_(std::move(parent)) {}

  /// Makes sure a partition exists for the day of every given time (µs since the epoch).
  absl::Status EnsureFor(pqxx::connection& conn, const std::vector<int64_t>& times_us);
  /// Creates partitions from yesterday to `ahead` from now and drops those that ended more
  /// than `retention` ago. Returns how many were dropped.
  absl::StatusOr<int> Maintain(pqxx::connection& conn, absl::Duration ahead,
                               absl::Duration retention);
  /// Forgets what exists (after a reconnect).
  void Forget() { known_days_.clear(); }

 private:
  std::string parent_;
  std::set<int64_t> known_days_;
};

}  // namespace tidemark::writer
