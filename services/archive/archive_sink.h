#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/kafka/batch_loop.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "services/archive/archive_core.h"
#include "services/archive/lake.h"

namespace tidemark::archive {

struct ArchiveConfig {
  PartitionTime partition_by = PartitionTime::kEvent;
  int gzip_level = 6;
};

struct ArchiveMetrics {
  explicit ArchiveMetrics(metrics::Registry& r);
  metrics::Counter& events;
  metrics::Counter& files;
  metrics::Counter& bytes;
  metrics::Counter& errors;
  metrics::Counter& files_undone;
  metrics::Histogram& upload_latency;
};

/// Raw events -> the lake. Each batch writes, per Kafka partition, one gzip JSON-lines file
/// per hour its events fall in, all named by the batch's offset range of that partition.
/// Before any file, it records the batch in the partition's pending record; when a partition
/// is assigned, batches recorded there that were never committed are undone (their files
/// deleted) before the partition is consumed again. So every event lands in exactly one file
/// however often the archive crashes, and however differently the replay cuts batches.
class ArchiveSink final : public kafka::BatchSink {
 public:
  ArchiveSink(Lake& lake, ArchiveConfig config, ArchiveMetrics& metrics,
              std::shared_ptr<spdlog::logger> logger);

  /// A batch's files are made as its records are polled: each record's JSON line goes to its
  /// hour's gzip file then, so that converting and compressing minutes of events is spread
  /// over those minutes rather than done when the batch is cut (a burst of a whole core for
  /// seconds, which co-located services feel as latency).
  std::unique_ptr<kafka::BatchBuilder> StartBatch() override;
  std::unique_ptr<kafka::PreparedBatch> Prepare(
      const std::vector<const kafka::Message*>& records) override;
  absl::StatusOr<std::vector<kafka::RecordRejection>> WritePrepared(
      const std::vector<const kafka::Message*>& records,
      std::unique_ptr<kafka::PreparedBatch> prepared) override;
  absl::StatusOr<std::vector<kafka::RecordRejection>> Write(
      const std::vector<const kafka::Message*>& records) override;
  void OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) override;
  void OnRevoked(const std::vector<kafka::TopicPartition>& partitions) override;
  void OnCommitted(const std::map<kafka::TopicPartition, int64_t>& next_offsets) override;
  /// Records the commits confirmed since each partition's record was last written: a group
  /// whose replicas all stay stopped past Kafka's offset retention loses its offsets, and the
  /// record is then all that says where archiving stopped.
  void OnStopping() override;

  /// NOT OK while the last batch could not be written (the lake is unreachable or refuses);
  /// any thread.
  absl::Status Health() const;

 private:
  /// Writes the files of a prepared batch (a LakeBatch) and records them as pending.
  absl::StatusOr<std::vector<kafka::RecordRejection>> WriteBatch(kafka::PreparedBatch& prepared);
  /// Undoes the uncommitted batches a predecessor recorded for the partition.
  absl::Status Recover(const kafka::TopicPartition& tp, const kafka::AssignedPartition& assigned);
  /// What the partition's pending record holds: its last batch known committed, marked so,
  /// and every batch written since whose commit is not confirmed.
  std::vector<PendingBatch> RecordOf(const kafka::TopicPartition& tp) const;
  absl::Status Put(const std::string& path, absl::string_view data);
  absl::Status DeleteFiles(const PendingBatch& batch);

  Lake& lake_;
  const ArchiveConfig config_;
  ArchiveMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  /// Assigned partitions not yet recovered, with their committed offsets.
  std::map<kafka::TopicPartition, kafka::AssignedPartition> to_recover_;
  /// Per partition, the batches written whose commit has not been confirmed.
  std::map<kafka::TopicPartition, std::vector<PendingBatch>> uncommitted_;
  /// Per partition, the last batch whose commit is known (from the committed offset found at
  /// recovery, or a confirmed commit): kept in the record.
  std::map<kafka::TopicPartition, std::optional<PendingBatch>> last_committed_;
  /// Partitions whose record in the lake does not show their last committed batch yet.
  std::set<kafka::TopicPartition> marks_unrecorded_;
  mutable absl::Mutex health_mu_;
  absl::Status health_ ABSL_GUARDED_BY(health_mu_);
};

}  // namespace tidemark::archive
