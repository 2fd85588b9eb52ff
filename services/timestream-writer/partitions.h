#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pqxx/connection"

namespace tidemark::writer {

/// Bounds on the partition DDL, so that a long read delays it but never wedges ingestion: a
/// statement waiting for a lock behind a read would otherwise queue every insert behind it.
struct PartitionTimeouts {
  /// How long a statement waits for one lock (lock_timeout).
  absl::Duration lock_timeout = absl::Seconds(1);
  /// How long a statement runs in all (statement_timeout); DETACH ... CONCURRENTLY waits for
  /// the reads that began before it.
  absl::Duration statement_timeout = absl::Seconds(10);
};

/// The daily partitions of one time-partitioned table (`points`, `aggregates`), created
/// ahead of need and dropped by retention. Remembers which days exist on this connection.
/// Every step runs under `timeouts`; one that times out fails with UNAVAILABLE and is taken
/// up again by the next call, where it left off.
class DailyPartitions final {
 public:
  explicit DailyPartitions(std::string parent, PartitionTimeouts timeouts = {})
      : parent_(std::move(parent)), timeouts_(timeouts) {}

  /// Makes sure a partition exists for the day of every given time (µs since the epoch).
  /// Each is created as a table of its own and attached (SHARE UPDATE EXCLUSIVE on the parent,
  /// which neither reads nor inserts conflict with).
  absl::Status EnsureFor(pqxx::connection& conn, const std::vector<int64_t>& times_us);
  /// Creates partitions from yesterday to `ahead` from now and drops those that ended more
  /// than `retention` ago: finishes a detach an earlier call left pending, detaches expired
  /// partitions CONCURRENTLY (outside any transaction) and drops the detached tables. A
  /// partition another session has locked (a long read) is left for a later call. Returns
  /// how many were dropped.
  absl::StatusOr<int> Maintain(pqxx::connection& conn, absl::Duration ahead,
                               absl::Duration retention);
  /// Forgets what exists (after a reconnect).
  void Forget() { known_days_.clear(); }

 private:
  std::string parent_;
  PartitionTimeouts timeouts_;
  std::set<int64_t> known_days_;
};

}  // namespace tidemark::writer
