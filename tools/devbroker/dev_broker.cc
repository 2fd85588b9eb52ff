#include "tools/devbroker/dev_broker.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "librdkafka/rdkafka.h"
#include "librdkafka/rdkafka_mock.h"

namespace tidemark::devbroker {

absl::StatusOr<std::vector<TopicSpec>> ParseTopics(const std::string& spec) {
  std::vector<TopicSpec> topics;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    TopicSpec t;
    t.name = parts[0];
    if (parts.size() != 2 || t.name.empty() || !absl::SimpleAtoi(parts[1], &t.partitions) ||
        t.partitions <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad topic \"", item, "\": expected name:partitions, e.g. tidemark.raw:12"));
    }
    topics.push_back(t);
  }
  return topics;
}

std::vector<TopicSpec> DefaultTopics() {
  return {{"tidemark.raw", 12},
          {"tidemark.aggregates", 6},
          {"tidemark.late", 3},
          {"tidemark.rejected", 3}};
}

absl::StatusOr<std::unique_ptr<DevBroker>> DevBroker::Start(int broker_count,
                                                            const std::vector<TopicSpec>& topics) {
  std::unique_ptr<DevBroker> b(new DevBroker());
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  // The mock cluster needs a client handle to live in; it is never used to produce.
  b->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (b->rk_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create the broker's handle: ", err));
  }
  b->cluster_ = rd_kafka_mock_cluster_new(b->rk_, broker_count);
  if (b->cluster_ == nullptr) return absl::InternalError("cannot create the mock cluster");
  b->broker_count_ = broker_count;
  for (const TopicSpec& t : topics) {
    if (absl::Status s = b->CreateTopic(t.name, t.partitions); !s.ok()) return s;
  }
  b->bootstrap_ = rd_kafka_mock_cluster_bootstraps(b->cluster_);
  return b;
}

absl::Status DevBroker::CreateTopic(const std::string& name, int partitions) {
  if (rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
      e) {
    return absl::InternalError(
        absl::StrCat("cannot create topic ", name, ": ", rd_kafka_err2str(e)));
  }
  return absl::OkStatus();
}

void DevBroker::SetBrokersUp(bool up) {
  for (int id = 1; id <= broker_count_; ++id) {
    if (up) {
      rd_kafka_mock_broker_set_up(cluster_, id);
    } else {
      rd_kafka_mock_broker_set_down(cluster_, id);
    }
  }
}

DevBroker::~DevBroker() {
  if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
  if (rk_) rd_kafka_destroy(rk_);
}

}  // namespace tidemark::devbroker
