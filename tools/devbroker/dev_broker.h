#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace tidemark::devbroker {

struct TopicSpec {
  std::string name;
  int partitions = 1;
};

/// Parses "name:partitions,name:partitions".
absl::StatusOr<std::vector<TopicSpec>> ParseTopics(const std::string& spec);

/// The topics Tidemark uses, with partition counts that keep the development broker's
/// 5 MiB-per-partition limit out of reach of the local stack and the tests.
std::vector<TopicSpec> DefaultTopics();

/// What the control interface reports: brokers, partition leaders, pinned coordinators.
struct ClusterState {
  std::string bootstrap;
  std::map<int, bool> brokers_up;                      // broker id -> up
  std::map<std::string, std::vector<int>> leaders;     // topic -> leader id per partition
  std::map<std::string, int> group_coordinators;       // group -> broker id (pinned only)
};

/// A development Kafka cluster: librdkafka's mock cluster, which serves the real Kafka
/// protocol over TCP on 127.0.0.1. In-memory only; each partition keeps at most 5 MiB.
///
/// The partition log lives in the cluster, not in a broker, and every partition has every
/// broker (up to three) as a replica, so a broker that is down loses nothing: its partitions
/// are served again once it is back or once their leader moves elsewhere. The mock picks each
/// partition's first leader at random.
///
/// Thread-safe: the fault controls may be called from any thread (the control server's).
class DevBroker final {
 public:
  static absl::StatusOr<std::unique_ptr<DevBroker>> Start(int broker_count,
                                                          const std::vector<TopicSpec>& topics);
  ~DevBroker();

  /// host:port,host:port of the brokers.
  const std::string& bootstrap_servers() const { return bootstrap_; }
  int broker_count() const { return broker_count_; }
  /// Creates a topic (tests use one per case). Its leaders show in State() once the cluster
  /// has started (topics created afterwards: -1, unknown, until a leader is set).
  absl::Status CreateTopic(const std::string& name, int partitions);
  /// Takes every broker down or brings them back (fault tests).
  void SetBrokersUp(bool up);

  /// Takes broker `id` (1..broker_count) down: its listener closes and its connections drop,
  /// as when a broker process dies. Leaders and coordinators stay where they are.
  absl::Status SetBrokerUp(int id, bool up);
  /// Moves the leader of one partition to broker `id` (-1: no leader).
  absl::Status SetLeader(const std::string& topic, int partition, int id);
  /// Pins the coordinator of consumer group `group` to broker `id`.
  absl::Status SetGroupCoordinator(const std::string& group, int id);
  /// What a controller does when a broker dies: every partition it leads and every group
  /// coordinator pinned on it moves to the next broker that is up. Returns how many moved.
  absl::StatusOr<int> MoveAwayFrom(int id);
  /// Moves every partition's leader to the next broker that is up (a rolling leader change).
  absl::StatusOr<int> RotateLeaders();
  ClusterState State() const;

 private:
  DevBroker() = default;
  /// Reads the leaders the mock chose from a Metadata request.
  absl::Status LearnLeaders();
  absl::Status SetLeaderLocked(const std::string& topic, int partition, int id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  /// The first broker after `id` (cyclically) that is up and is not `id`, or -1.
  int NextUpLocked(int id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  rd_kafka_s* rk_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  int broker_count_ = 0;
  std::string bootstrap_;
  mutable absl::Mutex mu_;
  std::map<int, bool> up_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<int>> leaders_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> coordinators_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidemark::devbroker
