#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pqxx/connection"
#include "services/timestream-writer/partitions.h"
#include "services/timestream-writer/writer_core.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::writer {

/// An aggregate to store, with its position in the batch of Kafka records.
struct SourcedAggregate {
  size_t source = 0;
  v1::WindowAggregate aggregate;
};

/// A late point to repair, with its position in the batch.
struct SourcedLatePoint {
  size_t source = 0;
  v1::LatePoint late;
};

struct AggregateOutcome {
  int64_t upserted = 0;
  /// Revisions older than the stored one (a replay, or a repair already applied).
  int64_t stale = 0;
  std::vector<PointRejection> conflicts;
};

/// The `aggregates` table: the aggregator's windows by versioned upsert, and repairs of
/// windows from the stored raw points. Not thread-safe: one writer loop owns each.
class AggregateStore final {
 public:
  /// `change_retention`: how long the change log that subscriptions resume from keeps each
  /// stored version (pruned with the partitions).
  AggregateStore(std::string dsn, absl::Duration partitions_ahead,
                 absl::Duration change_retention = absl::Hours(24));

  /// One transaction: COPY into staging and one versioned upsert. The same version with a
  /// different value is a conflict; the stored revision stays.
  absl::StatusOr<AggregateOutcome> Write(const std::vector<SourcedAggregate>& aggregates);

  /// Recomputes the windows of late points from the stored raw points and upserts them with
  /// each point's repair version. Fails with UNAVAILABLE, changing nothing, while the raw
  /// writer has not yet stored every raw record up to a point's offset: the point itself and
  /// every earlier point of its windows must be in the store first.
  absl::StatusOr<int64_t> Repair(const std::vector<SourcedLatePoint>& late);

  /// Creates and drops partitions and prunes the change log.
  absl::StatusOr<int> MaintainPartitions(absl::Duration retention);

 private:
  absl::Status EnsureConnected();
  void Reset();

  std::string dsn_;
  absl::Duration partitions_ahead_;
  absl::Duration change_retention_;
  std::unique_ptr<pqxx::connection> conn_;
  DailyPartitions partitions_{"aggregates"};
};

}  // namespace tidemark::writer
