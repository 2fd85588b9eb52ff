#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/metrics/metrics.h"
#include "services/timestream-writer/point_store.h"

namespace tidemark::writer {

struct WriterConfig {
  std::string rejected_topic = "tidemark.rejected";
  /// A batch is written when it holds this many records or is this old.
  size_t batch_max_records = 5000;
  absl::Duration batch_max_age = absl::Milliseconds(200);
  absl::Duration future_clock_lead = absl::Minutes(15);
  absl::Duration raw_retention = absl::Hours(24 * 7);
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(5);
  absl::Duration maintenance_interval = absl::Minutes(10);
};

struct WriterMetrics {
  explicit WriterMetrics(metrics::Registry& r);
  metrics::Counter& records;
  metrics::Counter& upserted;
  metrics::Counter& stale;
  metrics::Counter& unchanged;
  metrics::Counter& rejected;
  metrics::Counter& clock_corrected;
  metrics::Counter& store_retries;
  metrics::Histogram& batch_latency;
};

/// Moves raw events from Kafka into the point store: batches by size and age, writes each
/// batch in one transaction, publishes what the store refuses to tidemark.rejected, and only
/// then commits the batch's offsets. While PostgreSQL is down it pauses consumption and
/// retries the same batch with backoff; it never skips a record.
class WriterLoop final : public kafka::PartitionListener {
 public:
  WriterLoop(const WriterConfig& config, PointStore& store, kafka::Producer& rejected_producer,
             WriterMetrics& metrics, std::shared_ptr<spdlog::logger> logger);

  /// Runs until `stop` is set (then writes what it holds and returns OK) or a fatal error.
  absl::Status Run(kafka::Consumer& consumer, const std::atomic<bool>& stop);

  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override;
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override;

 private:
  /// Writes `pending_` durably and commits its offsets; retries until done or stopped.
  absl::Status Flush(kafka::Consumer& consumer, const std::atomic<bool>& stop);
  absl::StatusOr<std::vector<PointRejection>> StoreRecords(const std::vector<size_t>& sources);
  /// The tidemark.rejected record for a rejection of pending_[r.source].
  std::string RejectedRecord(const PointRejection& r) const;
  /// Produces (key, value) records and waits until Kafka acknowledged them.
  absl::Status PublishRejections(const std::vector<std::pair<std::string, std::string>>& records);
  void Backoff(kafka::Consumer& consumer, absl::Duration& delay);

  const WriterConfig config_;
  PointStore& store_;
  kafka::Producer& rejected_producer_;
  WriterMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  std::vector<kafka::Message> pending_;
  absl::Time batch_started_;
};

}  // namespace tidemark::writer
