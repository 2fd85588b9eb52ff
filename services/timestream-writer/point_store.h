#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "pqxx/connection"
#include "services/timestream-writer/partitions.h"
#include "services/timestream-writer/writer_core.h"

namespace tidemark::writer {

/// What one stored batch did.
struct WriteOutcome {
  /// Points inserted or replaced by a higher version.
  int64_t upserted = 0;
  /// Points with a lower version than the stored one: ignored.
  int64_t stale = 0;
  /// Points identical to the stored one (same version and value): no-ops.
  int64_t unchanged = 0;
  /// Points with the stored version but a different value: rejected.
  std::vector<PointRejection> conflicts;
  /// The batch met no stored key and was copied straight into the table.
  bool direct_copy = false;
};

/// The raw-point store in PostgreSQL. Not thread-safe: one writer loop owns it.
class PointStore final {
 public:
  /// `try_direct_copy` false sends every batch through the upsert (benchmarks compare both).
  /// `known_series_limit`: series ids remembered as stored before the memo starts over.
  PointStore(std::string dsn, absl::Duration partitions_ahead, bool try_direct_copy = true,
             size_t known_series_limit = kKnownSeriesLimit);
  /// About 4 million ids (some 100-200 MiB): more than a replica's share of a large fleet, and
  /// a bound when dimensions churn (a session id in a dimension makes new series for ever).
  static constexpr size_t kKnownSeriesLimit = size_t{1} << 22;
  /// Series ids remembered as stored (for tests).
  size_t known_series() const { return known_series_.size(); }

  /// Connects if needed and applies the schema migrations.
  absl::Status Open(spdlog::logger& logger);

  /// Writes a batch in one transaction: series first (dropping colliding series from the
  /// batch), then the points by COPY straight into the table when none of their keys is
  /// stored, else by COPY into a staging table and one versioned upsert. Any
  /// failure rolls back everything and leaves the connection to be reopened; the call is
  /// idempotent, so the same batch may be written again after any error.
  /// `progress` (topic, partition) -> next offset is recorded in the same transaction, so
  /// that late-point repairs know which raw records are stored.
  absl::StatusOr<WriteOutcome> Write(
      BatchBuilder& batch, const std::map<std::pair<std::string, int32_t>, int64_t>& progress);

  /// Creates partitions from yesterday to `partitions_ahead` ahead and drops the ones that
  /// ended more than `retention` ago. Returns the number dropped.
  absl::StatusOr<int> MaintainPartitions(absl::Duration retention);

 private:
  absl::Status EnsureConnected();
  void Reset();

  std::string dsn_;
  absl::Duration partitions_ahead_;
  std::unique_ptr<pqxx::connection> conn_;
  /// Series whose canonical key is known to be stored (cleared on reconnect).
  /// Series this connection has seen stored: id -> a process-local hash of the canonical key,
  /// so that a different key with a known id is caught in every batch, not only the first.
  absl::flat_hash_map<int64_t, size_t> known_series_;
  size_t known_series_limit_;
  DailyPartitions partitions_{"points"};
  /// Batches still to go through the upsert, without trying the direct COPY, after one met
  /// stored keys.
  int upsert_batches_left_ = 0;
  bool try_direct_copy_;
};

}  // namespace tidemark::writer
