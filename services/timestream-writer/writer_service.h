#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/kafka/batch_loop.h"
#include "common/metrics/metrics.h"
#include "services/timestream-writer/aggregate_store.h"
#include "services/timestream-writer/point_store.h"

namespace tidemark::writer {

/// Raw events -> series and points (and raw_progress).
class RawPointSink final : public kafka::BatchSink {
 public:
  RawPointSink(PointStore& store, absl::Duration future_clock_lead, absl::Duration retention,
               metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;
  /// Decodes the records into a batch of series and points (no store needed).
  std::unique_ptr<kafka::PreparedBatch> Prepare(
      const std::vector<const kafka::Message*>& records) override;
  absl::StatusOr<std::vector<PointRejection>> WritePrepared(
      const std::vector<const kafka::Message*>& records,
      std::unique_ptr<kafka::PreparedBatch> prepared) override;
  uint64_t upserted() const { return upserted_.Value(); }
  uint64_t unchanged() const { return unchanged_.Value(); }

 private:
  PointStore& store_;
  absl::Duration future_clock_lead_;
  absl::Duration retention_;
  metrics::Counter& upserted_;
  metrics::Counter& stale_;
  metrics::Counter& unchanged_;
  metrics::Counter& clock_corrected_;
  metrics::Counter& direct_batches_;
  metrics::Counter& upsert_batches_;
  /// Used by Prepare only, which never runs beside itself or Write (BatchSink::Prepare).
  series::SeriesNames names_;
};

/// Window aggregates from the aggregator -> aggregates.
class AggregateSink final : public kafka::BatchSink {
 public:
  AggregateSink(AggregateStore& store, metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;

 private:
  AggregateStore& store_;
  metrics::Counter& upserted_;
  metrics::Counter& stale_;
};

/// Points late beyond allowed lateness -> their windows recomputed from stored raw points.
/// The repair runs in the writer because it is a database operation that must wait for the
/// raw points it reads: the writer records how far it has stored each raw partition in the
/// same transaction as the points, and a repair waits (backing off) until that covers the
/// late point's offset.
class RepairSink final : public kafka::BatchSink {
 public:
  RepairSink(AggregateStore& store, metrics::Registry& registry);
  absl::StatusOr<std::vector<PointRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;

 private:
  AggregateStore& store_;
  metrics::Counter& repaired_;
};

}  // namespace tidemark::writer
