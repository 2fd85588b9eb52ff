#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log/log.h"
#include "librdkafka/rdkafka.h"

namespace tidemark::kafka {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  friend bool operator==(const TopicPartition&, const TopicPartition&) = default;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

/// One consumed record; owns librdkafka's message until destroyed.
class Message final {
 public:
  explicit Message(rd_kafka_message_t* m) : m_(m) {}
  absl::string_view topic() const { return rd_kafka_topic_name(m_->rkt); }
  int32_t partition() const { return m_->partition; }
  int64_t offset() const { return m_->offset; }
  absl::string_view key() const { return {static_cast<const char*>(m_->key), m_->key_len}; }
  absl::string_view value() const { return {static_cast<const char*>(m_->payload), m_->len}; }

 private:
  struct Destroy {
    void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
  };
  std::unique_ptr<rd_kafka_message_t, Destroy> m_;
};

/// Where a partition's consumption resumes, with what the committer stored beside it.
struct CommitPoint {
  int64_t offset = 0;
  /// Opaque to Kafka (commit metadata), e.g. a consumer's watermark.
  std::string metadata;
};

/// A partition gained in a rebalance and where it resumes.
struct AssignedPartition {
  TopicPartition partition;
  /// The committed offset, or -1 when the group never committed (consumption starts at the
  /// partition's beginning).
  int64_t committed_offset = -1;
  std::string committed_metadata;
};

/// Told about partitions gained and lost in a rebalance, on the thread calling Poll().
class PartitionListener {
 public:
  virtual ~PartitionListener() = default;
  virtual void OnAssigned(const std::vector<AssignedPartition>& partitions) = 0;
  /// Records of these partitions not yet committed will be consumed again by their next
  /// owner; the listener drops whatever it holds for them.
  virtual void OnRevoked(const std::vector<TopicPartition>& partitions) = 0;
};

struct ConsumerConfig {
  std::string brokers;
  std::string group_id;
  std::vector<std::string> topics;
  /// Any further librdkafka property.
  std::map<std::string, std::string> properties;
};

/// A group consumer (cooperative-sticky) that never commits on its own: offsets are
/// committed only through Commit(), once the caller's work is durable. A partition without
/// a committed offset starts at its beginning; a committed offset that the broker no
/// longer holds is data loss and makes Poll() fail with DATA_LOSS instead of skipping.
/// Not thread-safe: one thread polls, commits and pauses.
class Consumer final {
 public:
  static absl::StatusOr<std::unique_ptr<Consumer>> Create(const ConsumerConfig& config,
                                                          std::shared_ptr<spdlog::logger> logger,
                                                          PartitionListener* listener);
  /// Leaves the group (revoking partitions through the listener) and destroys the handle.
  ~Consumer();

  /// Up to `max_messages` records, waiting at most `timeout` for the first.
  absl::StatusOr<std::vector<Message>> Poll(size_t max_messages, absl::Duration timeout);
  /// Synchronously commits, for each partition, the offset of the next record to consume.
  absl::Status Commit(const std::map<TopicPartition, int64_t>& next_offsets);
  /// The same, storing metadata with each offset.
  absl::Status Commit(const std::map<TopicPartition, CommitPoint>& points);
  /// Stops or restarts fetching on every assigned partition (Poll still serves rebalances).
  absl::Status PauseAll();
  absl::Status ResumeAll();
  std::vector<TopicPartition> Assignment() const;
  /// Records behind the end of the assigned partitions (high watermark minus position),
  /// from the offsets librdkafka caches with each fetch: cheap, never blocks.
  int64_t Lag() const;

 private:
  Consumer() = default;
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque);
  void Assign(rd_kafka_topic_partition_list_t* partitions);
  void Revoke(rd_kafka_topic_partition_list_t* partitions);

  std::shared_ptr<spdlog::logger> logger_;
  PartitionListener* listener_ = nullptr;
  absl::Status fatal_;
  bool paused_ = false;
  rd_kafka_t* rk_ = nullptr;
};

}  // namespace tidemark::kafka
