#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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

/// A development Kafka cluster: librdkafka's mock cluster, which serves the real Kafka
/// protocol over TCP on 127.0.0.1. In-memory only; each partition keeps at most 5 MiB.
class DevBroker final {
 public:
  static absl::StatusOr<std::unique_ptr<DevBroker>> Start(int broker_count,
                                                          const std::vector<TopicSpec>& topics);
  ~DevBroker();

  /// host:port,host:port of the brokers.
  const std::string& bootstrap_servers() const { return bootstrap_; }
  /// Creates a topic (tests use one per case).
  absl::Status CreateTopic(const std::string& name, int partitions);
  /// Takes every broker down or brings them back (fault tests).
  void SetBrokersUp(bool up);

 private:
  DevBroker() = default;
  rd_kafka_s* rk_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  int broker_count_ = 0;
  std::string bootstrap_;
};

}  // namespace tidemark::devbroker
