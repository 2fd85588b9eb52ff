#include "tools/devbroker/dev_broker.h"

#include <algorithm>

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
  // The mock brokers' sockets take their options from this handle. Kafka brokers send with
  // TCP_NODELAY; with Nagle, a response written while the previous one is unacknowledged
  // waits for the client's delayed ACK (40 ms on Linux), which made every produce round
  // with several requests in flight take ~45 ms.
  rd_kafka_conf_set(conf, "socket.nagle.disable", "true", err, sizeof(err));
  // The mock cluster needs a client handle to live in; it is never used to produce.
  b->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (b->rk_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create the broker's handle: ", err));
  }
  b->cluster_ = rd_kafka_mock_cluster_new(b->rk_, broker_count);
  if (b->cluster_ == nullptr) return absl::InternalError("cannot create the mock cluster");
  b->broker_count_ = broker_count;
  {
    absl::MutexLock lock(&b->mu_);
    for (int id = 1; id <= broker_count; ++id) b->up_[id] = true;
  }
  for (const TopicSpec& t : topics) {
    if (absl::Status s = b->CreateTopic(t.name, t.partitions); !s.ok()) return s;
  }
  b->bootstrap_ = rd_kafka_mock_cluster_bootstraps(b->cluster_);
  if (absl::Status s = b->LearnLeaders(); !s.ok()) return s;
  return b;
}

absl::Status DevBroker::CreateTopic(const std::string& name, int partitions) {
  // librdkafka 2.0.2's mock cluster places min(3, brokers) replicas of every partition
  // whatever is asked; ask for the same, so the request says what the cluster does.
  const int replication = std::min(3, broker_count_);
  if (rd_kafka_resp_err_t e =
          rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, replication);
      e) {
    return absl::InternalError(
        absl::StrCat("cannot create topic ", name, ": ", rd_kafka_err2str(e)));
  }
  absl::MutexLock lock(&mu_);
  leaders_[name].assign(partitions, broker_count_ == 1 ? 1 : -1);
  return absl::OkStatus();
}

absl::Status DevBroker::LearnLeaders() {
  if (broker_count_ == 1) return absl::OkStatus();
  // The mock picks each partition's leader at random and has no call to read it back; one
  // Metadata request does (a leader change per partition would cost a round trip each).
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  rd_kafka_t* client = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (client == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a metadata client: ", err));
  }
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t e = rd_kafka_metadata(client, 1, nullptr, &md, 10000);
  absl::Status status;
  if (e) {
    status = absl::UnavailableError(absl::StrCat("reading partition leaders: ", rd_kafka_err2str(e)));
  } else {
    absl::MutexLock lock(&mu_);
    for (int t = 0; t < md->topic_cnt; ++t) {
      auto it = leaders_.find(md->topics[t].topic);
      if (it == leaders_.end()) continue;
      for (int p = 0; p < md->topics[t].partition_cnt; ++p) {
        const rd_kafka_metadata_partition_t& part = md->topics[t].partitions[p];
        if (part.id >= 0 && part.id < static_cast<int>(it->second.size())) {
          it->second[part.id] = part.leader;
        }
      }
    }
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_destroy(client);
  return status;
}

void DevBroker::SetBrokersUp(bool up) {
  for (int id = 1; id <= broker_count_; ++id) (void)SetBrokerUp(id, up);
}

absl::Status DevBroker::SetBrokerUp(int id, bool up) {
  absl::MutexLock lock(&mu_);
  if (!up_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("no broker ", id, "; brokers are 1..", broker_count_));
  }
  const rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(cluster_, id)
                                   : rd_kafka_mock_broker_set_down(cluster_, id);
  if (e) return absl::InternalError(absl::StrCat("broker ", id, ": ", rd_kafka_err2str(e)));
  up_[id] = up;
  return absl::OkStatus();
}

absl::Status DevBroker::SetLeader(const std::string& topic, int partition, int id) {
  absl::MutexLock lock(&mu_);
  return SetLeaderLocked(topic, partition, id);
}

absl::Status DevBroker::SetLeaderLocked(const std::string& topic, int partition, int id) {
  auto it = leaders_.find(topic);
  if (it == leaders_.end()) return absl::NotFoundError(absl::StrCat("no topic ", topic));
  if (partition < 0 || partition >= static_cast<int>(it->second.size())) {
    return absl::NotFoundError(absl::StrCat("no partition ", partition, " in ", topic,
                                            "; partitions are 0..", it->second.size() - 1));
  }
  if (id != -1 && !up_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("no broker ", id, "; brokers are 1..", broker_count_));
  }
  if (rd_kafka_resp_err_t e =
          rd_kafka_mock_partition_set_leader(cluster_, topic.c_str(), partition, id);
      e) {
    return absl::InternalError(
        absl::StrCat("leader of ", topic, "/", partition, ": ", rd_kafka_err2str(e)));
  }
  it->second[partition] = id;
  return absl::OkStatus();
}

absl::Status DevBroker::SetGroupCoordinator(const std::string& group, int id) {
  absl::MutexLock lock(&mu_);
  if (!up_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("no broker ", id, "; brokers are 1..", broker_count_));
  }
  if (rd_kafka_resp_err_t e = rd_kafka_mock_coordinator_set(cluster_, "group", group.c_str(), id);
      e) {
    return absl::InternalError(
        absl::StrCat("coordinator of ", group, ": ", rd_kafka_err2str(e)));
  }
  coordinators_[group] = id;
  return absl::OkStatus();
}

int DevBroker::NextUpLocked(int id) const {
  for (int step = 1; step < broker_count_; ++step) {
    const int candidate = (id - 1 + step) % broker_count_ + 1;
    if (up_.at(candidate)) return candidate;
  }
  return -1;
}

absl::StatusOr<int> DevBroker::MoveAwayFrom(int id) {
  absl::MutexLock lock(&mu_);
  if (!up_.contains(id)) {
    return absl::NotFoundError(absl::StrCat("no broker ", id, "; brokers are 1..", broker_count_));
  }
  const int to = NextUpLocked(id);
  if (to == -1) return absl::FailedPreconditionError("no other broker is up");
  int moved = 0;
  for (auto& [topic, leaders] : leaders_) {
    for (int p = 0; p < static_cast<int>(leaders.size()); ++p) {
      if (leaders[p] != id) continue;
      if (absl::Status s = SetLeaderLocked(topic, p, to); !s.ok()) return s;
      ++moved;
    }
  }
  for (auto& [group, broker] : coordinators_) {
    if (broker != id) continue;
    if (rd_kafka_resp_err_t e = rd_kafka_mock_coordinator_set(cluster_, "group", group.c_str(), to);
        e) {
      return absl::InternalError(
          absl::StrCat("coordinator of ", group, ": ", rd_kafka_err2str(e)));
    }
    broker = to;
    ++moved;
  }
  return moved;
}

absl::StatusOr<int> DevBroker::RotateLeaders() {
  absl::MutexLock lock(&mu_);
  int moved = 0;
  for (auto& [topic, leaders] : leaders_) {
    for (int p = 0; p < static_cast<int>(leaders.size()); ++p) {
      const int to = NextUpLocked(leaders[p] == -1 ? 1 : leaders[p]);
      if (to == -1 || to == leaders[p]) continue;
      if (absl::Status s = SetLeaderLocked(topic, p, to); !s.ok()) return s;
      ++moved;
    }
  }
  return moved;
}

ClusterState DevBroker::State() const {
  absl::MutexLock lock(&mu_);
  return {bootstrap_, up_, leaders_, coordinators_};
}

DevBroker::~DevBroker() {
  if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
  if (rk_) rd_kafka_destroy(rk_);
}

}  // namespace tidemark::devbroker
