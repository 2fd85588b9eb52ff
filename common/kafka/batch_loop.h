#pragma once

#include <atomic>
#include <cstddef>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::kafka {

/// A record (or one point of a record) a sink refused, with its reason.
struct RecordRejection {
  /// Index of the record in the batch given to BatchSink::Write.
  size_t source = 0;
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
  std::string message;
  std::string measure_name;
  std::optional<int64_t> existing_version;
};

/// What a BatchSink works out from a batch's records before it needs the store.
class PreparedBatch {
 public:
  virtual ~PreparedBatch() = default;
};

/// Works out, record by record as the loop polls them, what BatchSink::Prepare would return
/// for a whole batch, so that a sink with long batches (the archive's last minutes) spreads
/// that work over the batch instead of doing it all when the batch is cut.
class BatchBuilder {
 public:
  virtual ~BatchBuilder() = default;
  /// The batch's next record: the records added so far are records[0..] of a Prepare call.
  virtual void Add(const Message& record) = 0;
  /// What Prepare would return for the records added, in their order.
  virtual std::unique_ptr<PreparedBatch> Finish() = 0;
};

/// Where a BatchLoop makes its records durable.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  /// With BatchLoopConfig::overlap_store: a builder for the next batch, given each record as
  /// it is polled, on the loop's thread (as Prepare). Its result replaces Prepare's. When a
  /// batch's records change other than by polling (a rebalance took some, a failed store put
  /// some back) its builder is dropped and a new one is given the batch's records again (or,
  /// if that happens while the previous batch is being stored, Prepare makes it whole). The
  /// default builds nothing: Prepare when the batch is cut.
  virtual std::unique_ptr<BatchBuilder> StartBatch() { return nullptr; }
  /// With BatchLoopConfig::overlap_store: the work on `records` that needs no store (decoding),
  /// done while the previous batch is still being stored. Runs on the loop's thread,
  /// possibly while WritePrepared of the previous batch runs on another, never beside Write (a
  /// sink's Write may call it, on the thread that stores), so that a sink may keep what it
  /// learns across batches (the writer's series names) without a lock, as long as it does not
  /// tie that to one thread. The default prepares nothing.
  virtual std::unique_ptr<PreparedBatch> Prepare(const std::vector<const Message*>& records) {
    return nullptr;
  }
  /// Write, given what Prepare returned for the same records. With overlap_store it runs on a
  /// thread of its own, alongside the loop's Prepare of the next batch and no other call.
  virtual absl::StatusOr<std::vector<RecordRejection>> WritePrepared(
      const std::vector<const Message*>& records, std::unique_ptr<PreparedBatch> prepared) {
    return Write(records);
  }
  /// Stores `records` in one transaction and returns the records (or points of records) it
  /// refused, by index into `records`. INVALID_ARGUMENT means the store refused some value:
  /// the loop then halves the batch until the refused records are alone and rejects only
  /// them. Any other error is retried whole, later, and never rejects a record. Runs on a
  /// thread of its own while the loop's thread polls, beside no other call of the sink.
  virtual absl::StatusOr<std::vector<RecordRejection>> Write(
      const std::vector<const Message*>& records) = 0;
  /// Told about partitions gained in a rebalance, before any of their records is written
  /// (e.g. to clean up after a predecessor that crashed between writing and committing).
  virtual void OnAssigned(const std::vector<AssignedPartition>& partitions) {}
  /// Told about partitions lost in a rebalance: whatever it keeps for them is the next owner's.
  virtual void OnRevoked(const std::vector<TopicPartition>& partitions) {}
  /// Told after the offsets of written batches were committed.
  virtual void OnCommitted(const std::map<TopicPartition, int64_t>& next_offsets) {}
  /// Told once the loop has stopped cleanly, its last batch stored and committed, while the
  /// partitions are still this consumer's.
  virtual void OnStopping() {}
};

struct BatchLoopConfig {
  /// Names this loop in logs and metrics (raw, aggregates, late).
  std::string name = "raw";
  /// The service named in the tidemark.rejected records it publishes.
  std::string service = "timestream-writer";
  std::string rejected_topic = "tidemark.rejected";
  /// A batch is written when it holds this many records or is this old.
  size_t batch_max_records = 5000;
  absl::Duration batch_max_age = absl::Milliseconds(200);
  /// ... or when its record values add up to this many bytes.
  size_t batch_max_bytes = SIZE_MAX;
  absl::Duration retry_initial_backoff = absl::Milliseconds(100);
  absl::Duration retry_max_backoff = absl::Seconds(5);
  /// Store each batch on a thread of its own while the loop polls and prepares the next one.
  /// The order is kept: a batch is stored only after the previous one is stored and its
  /// offsets committed, and its own offsets only after it is stored.
  bool overlap_store = false;
};

struct BatchLoopMetrics {
  /// Metrics named <prefix>_records_total etc., labelled loop="<loop>".
  BatchLoopMetrics(metrics::Registry& r, const std::string& prefix, const std::string& loop);
  metrics::Counter& records;
  metrics::Counter& rejected;
  metrics::Counter& store_retries;
  metrics::Histogram& batch_latency;
  metrics::Gauge& consumer_lag;
};

/// Moves records from Kafka into a sink: batches by size and age, writes each batch in one
/// transaction, publishes what the sink refuses to tidemark.rejected, and only then commits
/// the batch's offsets. While the sink fails it pauses consumption and retries the same batch
/// with backoff; it never skips a record.
class BatchLoop final : public PartitionListener {
 public:
  /// What storing a batch gives: the records (or points) refused, by index into the batch.
  using StoreResult = absl::StatusOr<std::vector<RecordRejection>>;

  BatchLoop(const BatchLoopConfig& config, BatchSink& sink, Producer& rejected_producer,
            BatchLoopMetrics& metrics, std::shared_ptr<spdlog::logger> logger);

  /// Runs until `stop` is set (then writes what it holds and returns OK) or a fatal error.
  absl::Status Run(Consumer& consumer, const std::atomic<bool>& stop);

  void OnAssigned(const std::vector<AssignedPartition>& partitions) override;
  void OnRevoked(const std::vector<TopicPartition>& partitions) override;

 private:
  /// Writes `pending_` durably and commits its offsets; retries until done or stopped. Records
  /// polled while the store runs are the next batch's.
  absl::Status Flush(Consumer& consumer, const std::atomic<bool>& stop);
  /// overlap_store: prepares `pending_`, finishes the batch in flight, then starts storing
  /// `pending_` on a thread of its own.
  absl::Status FlushOverlapped(Consumer& consumer, const std::atomic<bool>& stop);
  /// Waits for the batch in flight, if any, and commits it; if its store failed, its records
  /// go back before `pending_` and Flush retries them all.
  /// Returns whether it did so (the store failed).
  absl::StatusOr<bool> FinishInFlight(Consumer& consumer, const std::atomic<bool>& stop);
  /// Stores `batch` on a thread of its own, isolating refused records (StoreIsolating), and
  /// waits for it (AwaitStore): records polled meanwhile join pending_.
  StoreResult StoreWhilePolling(Consumer& consumer, const std::vector<Message>& batch, bool paused);
  /// Waits for a store of `records` records started at `started`; one that takes long is waited
  /// for polling the paused consumer (records polled join pending_), so that this consumer
  /// keeps its group membership. `paused`: whether the consumer is paused already (it is then
  /// left paused; else it is resumed when the store is done).
  void AwaitStore(Consumer& consumer, const std::future<StoreResult>& store, size_t records,
                  absl::Time started, bool paused);
  /// Waits for any store running (a rebalance callback must not run beside one).
  void AwaitStoresForRebalance();
  /// Publishes the rejections of `records` (stored) and commits their offsets, leaving out
  /// partitions in `revoked_`. `paused`: whether the consumer is paused (resumed at the end).
  absl::Status PublishAndCommit(Consumer& consumer, const std::atomic<bool>& stop,
                                const std::vector<Message>& records,
                                const std::vector<RecordRejection>& rejections, bool& paused);
  /// Stores the records of `batch` at `sources`; rejections are by index into `batch`.
  StoreResult StoreRecords(const std::vector<Message>& batch, const std::vector<size_t>& sources);
  /// StoreRecords, isolating records the store refuses (INVALID_ARGUMENT) by halving; fails
  /// only with a retriable error.
  StoreResult StoreIsolating(const std::vector<Message>& batch, const std::vector<size_t>& sources);
  /// The tidemark.rejected record for a rejection of `m`.
  std::string RejectedRecord(const RecordRejection& r, const Message& m) const;
  /// Produces (key, value) records and waits until Kafka acknowledged them.
  absl::Status PublishRejections(const std::vector<std::pair<std::string, std::string>>& records);
  /// Moves polled records to the end of pending_.
  void Hold(std::vector<Message>& polled);
  /// Moves all of pending_ out, as the batch to store next.
  std::vector<Message> TakePending();
  /// Puts the records of a batch whose store failed back before pending_, except those of
  /// partitions revoked since it was taken (the next owner's).
  void PutBack(std::vector<Message>& batch);
  /// Waits `delay` (from a retry::Backoff) while polling the paused consumer.
  void WaitPolling(Consumer& consumer, absl::Duration delay);
  /// Sets the lag gauge: records behind the partitions' ends (see Consumer::Lag).
  void UpdateLag(Consumer& consumer, bool ask_broker);
  /// overlap_store: gives the sink's builder the records of pending_ it has not had, starting
  /// a builder for a new batch or one whose records changed other than by polling.
  void BuildPending();
  /// overlap_store: what the sink prepares for the first `n` records of pending_: its
  /// builder's result when the builder had exactly those, else Prepare's.
  std::unique_ptr<PreparedBatch> PreparePending(size_t n);

  const BatchLoopConfig config_;
  BatchSink& sink_;
  Producer& rejected_producer_;
  BatchLoopMetrics& metrics_;
  std::shared_ptr<spdlog::logger> logger_;
  std::vector<Message> pending_;
  size_t pending_bytes_ = 0;
  /// Changes whenever records leave pending_ other than by polling (a rebalance, a flush).
  uint64_t pending_revision_ = 0;
  /// Partitions revoked since the current flush snapshotted its offsets.
  std::set<TopicPartition> revoked_;
  absl::Time batch_started_;
  /// overlap_store: the sink's builder for pending_, the records of pending_ it had, and
  /// pending_revision_ when it started (a builder of an older revision is stale).
  std::unique_ptr<BatchBuilder> builder_;
  size_t built_ = 0;
  uint64_t builder_revision_ = 0;
  /// False once the sink returned no builder: it prepares batches whole.
  bool sink_builds_ = true;
  /// overlap_store: the batch being stored on its own thread.
  struct InFlight {
    std::vector<Message> records;
    std::future<StoreResult> stored;
    absl::Time started;
  };
  std::optional<InFlight> in_flight_;
  /// Flush: its store while it runs (a rebalance callback waits for it).
  const std::future<StoreResult>* flush_store_ = nullptr;
  absl::Time next_lag_query_ = absl::InfinitePast();
};

}  // namespace tidemark::kafka
