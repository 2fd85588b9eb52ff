#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
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

/// One consumed record, its key and value copied out of librdkafka's message: a message
/// holds on to the buffer of every record fetched with it (about twice the record), which a
/// batch held for minutes (the archive's) would pay per record. Valid while its Consumer is.
class Message final {
 public:
  absl::string_view topic() const { return topic_; }
  int32_t partition() const { return partition_; }
  int64_t offset() const { return offset_; }
  absl::string_view key() const { return {bytes_.get(), key_size_}; }
  absl::string_view value() const { return {bytes_.get() + key_size_, value_size_}; }

 private:
  friend class Consumer;
  Message(absl::string_view topic, const rd_kafka_message_t& m);

  absl::string_view topic_;  // interned by the Consumer
  int32_t partition_ = 0;
  uint32_t key_size_ = 0;
  int64_t offset_ = 0;
  size_t value_size_ = 0;
  std::unique_ptr<char[]> bytes_;  // key, then value
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
  /// The committed offset, or -1 when the group never committed (consumption starts at
  /// earliest_offset).
  int64_t committed_offset = -1;
  std::string committed_metadata;
  /// Without a committed offset: the earliest offset the broker holds, where consumption
  /// starts (-1 when it could not be read, or with a committed offset).
  int64_t earliest_offset = -1;
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
/// a committed offset starts at the earliest offset the broker holds when it is assigned; a
/// start offset that the broker no longer holds is data loss and makes Poll() fail with
/// DATA_LOSS instead of skipping.
/// Not thread-safe: one thread polls, commits and pauses.
class Consumer final {
 public:
  static absl::StatusOr<std::unique_ptr<Consumer>> Create(const ConsumerConfig& config,
                                                          std::shared_ptr<spdlog::logger> logger,
                                                          PartitionListener* listener);
  /// Leaves the group (revoking partitions through the listener) and destroys the handle.
  ~Consumer();

  /// Up to `max_messages` records, waiting at most `timeout` for the first. None of them is of
  /// a partition revoked while they were collected (the listener has been told to drop what
  /// it holds of it).
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
  /// from the offsets librdkafka caches with each fetch: cheap, never blocks. Paused
  /// partitions are not fetched, so their cached ends stand still: with `ask_broker` the ends
  /// come from the broker instead (one request per leader, up to a second), and the cached
  /// ones when it does not answer.
  int64_t Lag(bool ask_broker = false) const;

  /// For tests of what a rebalance inside Poll() does: `hook` runs inside Poll() before each
  /// call to librdkafka's poll (where librdkafka serves rebalances), and RevokeForTesting
  /// takes partitions away as a rebalance does (listener told, partitions unassigned).
  void SetPollHookForTesting(std::function<void()> hook) { poll_hook_ = std::move(hook); }
  void RevokeForTesting(const std::vector<TopicPartition>& partitions);

 private:
  Consumer() = default;
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque);
  void Assign(rd_kafka_topic_partition_list_t* partitions);
  /// The earliest offset Kafka holds of each of `partitions`, read within a bounded time;
  /// partitions it did not tell are missing.
  std::map<TopicPartition, int64_t> EarliestOffsets(
      const rd_kafka_topic_partition_list_t* partitions);
  void Revoke(rd_kafka_topic_partition_list_t* partitions);

  std::shared_ptr<spdlog::logger> logger_;
  PartitionListener* listener_ = nullptr;
  absl::Status fatal_;
  bool paused_ = false;
  rd_kafka_t* rk_ = nullptr;
  /// Names of the topics consumed, for Message::topic(); a node set, so views stay valid.
  std::set<std::string, std::less<>> topic_names_;
  absl::string_view last_topic_name_;  // of the last record, in topic_names_
  // Partitions revoked during the current Poll(): librdkafka serves the rebalance inside its
  // poll, after the records that call already took, which are the next owner's now.
  std::vector<TopicPartition> revoked_in_poll_;
  std::function<void()> poll_hook_;
  // Where each partition assigned so far starts (its committed offset, else the earliest the
  // broker held): Lag's position for a partition nothing was consumed from yet.
  std::map<std::pair<std::string, int32_t>, int64_t> start_offsets_;
};

}  // namespace tidemark::kafka
