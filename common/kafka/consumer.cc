#include "common/kafka/consumer.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/kafka/client_properties.h"
#include "common/kafka/kafka_errors.h"

namespace tidemark::kafka {
namespace {

std::vector<TopicPartition> ToVector(const rd_kafka_topic_partition_list_t* list) {
  std::vector<TopicPartition> out;
  for (int i = 0; i < list->cnt; ++i) {
    out.push_back({list->elems[i].topic, list->elems[i].partition});
  }
  return out;
}

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

bool IsCooperative(rd_kafka_t* rk) {
  const char* protocol = rd_kafka_rebalance_protocol(rk);
  return protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
}

// How long a commit may wait for the group coordinator's answer.
constexpr absl::Duration kCommitTimeout = absl::Seconds(10);
// How long the earliest offsets of newly assigned partitions may take to read: all of them
// at once, then each on its own when that fails.
constexpr int kOffsetLookupTimeoutMs = 10000;
constexpr int kPartitionOffsetLookupTimeoutMs = 2000;

}  // namespace

absl::StatusOr<std::unique_ptr<Consumer>> Consumer::Create(const ConsumerConfig& config,
                                                           std::shared_ptr<spdlog::logger> logger,
                                                           PartitionListener* listener) {
  std::unique_ptr<Consumer> c(new Consumer());
  c->logger_ = std::move(logger);
  c->listener_ = listener;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", config.brokers},
      {"group.id", config.group_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      // An out-of-range offset while consuming means the broker dropped records this
      // group has not processed: surface it instead of jumping.
      {"auto.offset.reset", "error"},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"fetch.wait.max.ms", "100"},
      // A replica killed with kill -9 holds its partitions until its session expires;
      // 10 s (librdkafka's default is 45 s) bounds how long they stay unconsumed.
      {"session.timeout.ms", "10000"},
      {"heartbeat.interval.ms", "1000"},
      // librdkafka backs off up to 10 s between reconnects; a broker back after a short outage
      // should be used within a second.
      {"reconnect.backoff.max.ms", "1000"},
  };
  for (const auto& [k, v] : config.properties) props[k] = v;
  if (absl::Status s = ApplyProperties(conf, props, "consumer"); !s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  char err[512];
  rd_kafka_conf_set_rebalance_cb(conf, &Consumer::OnRebalance);
  rd_kafka_conf_set_opaque(conf, c.get());
  c->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (c->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("cannot create Kafka consumer: ", err));
  }
  rd_kafka_poll_set_consumer(c->rk_);
  ListPtr topics(rd_kafka_topic_partition_list_new(static_cast<int>(config.topics.size())));
  for (const std::string& t : config.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk_, topics.get()); e) {
    return ToStatus(e, "subscribing");
  }
  return c;
}

Consumer::~Consumer() {
  if (rk_ == nullptr) return;
  rd_kafka_consumer_close(rk_);
  rd_kafka_destroy(rk_);
}

void Consumer::OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  auto* self = static_cast<Consumer*>(opaque);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    self->Assign(partitions);
  } else {
    self->Revoke(partitions);
  }
}

void Consumer::Assign(rd_kafka_topic_partition_list_t* partitions) {
  // Start each partition at its committed offset, or at its earliest offset for a new group;
  // a committed offset below the earliest retained one is data loss.
  // Not knowing where a partition was committed must not mean starting it from its beginning:
  // that replays everything retained (and the archive would store it twice). Stop instead; a
  // restart asks again.
  rd_kafka_resp_err_t fetch = rd_kafka_committed(rk_, partitions, 10000);
  for (int i = 0; fetch == RD_KAFKA_RESP_ERR_NO_ERROR && i < partitions->cnt; ++i) {
    fetch = partitions->elems[i].err;
  }
  if (fetch != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fatal_ = absl::UnavailableError(absl::StrCat(
        "cannot read the committed offsets of assigned partitions: ", rd_kafka_err2str(fetch),
        "; stopping rather than starting them from their beginning"));
    logger_->error("msg=\"{}\"", fatal_.message());
    return;
  }
  const std::map<TopicPartition, int64_t> earliest = EarliestOffsets(partitions);
  std::vector<AssignedPartition> assigned;
  for (int i = 0; i < partitions->cnt; ++i) {
    rd_kafka_topic_partition_t& tp = partitions->elems[i];
    AssignedPartition& a = assigned.emplace_back();
    a.partition = {tp.topic, tp.partition};
    a.committed_offset = tp.offset < 0 ? -1 : tp.offset;
    if (tp.metadata != nullptr && tp.metadata_size > 0) {
      a.committed_metadata.assign(static_cast<const char*>(tp.metadata), tp.metadata_size);
    }
    const auto low = earliest.find(a.partition);
    if (tp.offset < 0) {
      // Started at the earliest offset just read, not at the logical beginning, which
      // librdkafka resolves again when it first fetches: records the broker drops in between
      // were there when the group started the partition (and the archive decided what to
      // resume from that offset), so fetching them fails with DATA_LOSS rather than starting
      // silently past them.
      if (low != earliest.end()) {
        tp.offset = low->second;
        a.earliest_offset = low->second;
        start_offsets_[{tp.topic, tp.partition}] = a.earliest_offset;
      } else {
        // Unknown when the broker did not say: then Lag skips the partition until it is fetched.
        tp.offset = RD_KAFKA_OFFSET_BEGINNING;
        start_offsets_.erase({tp.topic, tp.partition});
      }
      continue;
    }
    start_offsets_[{tp.topic, tp.partition}] = tp.offset;
    if (low != earliest.end() && tp.offset < low->second) {
      fatal_ = absl::DataLossError(
          absl::StrCat("committed offset ", tp.offset, " of ", tp.topic, "/", tp.partition,
                       " is before the earliest offset the broker still holds (", low->second,
                       "): records this consumer group never processed were dropped"));
    }
  }
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (IsCooperative(rk_)) {
    if (rd_kafka_error_t* ie = rd_kafka_incremental_assign(rk_, partitions)) {
      logger_->error("msg=\"incremental assign failed\" error=\"{}\"", rd_kafka_error_string(ie));
      rd_kafka_error_destroy(ie);
    }
  } else {
    e = rd_kafka_assign(rk_, partitions);
  }
  if (e) logger_->error("msg=\"assign failed\" error=\"{}\"", rd_kafka_err2str(e));
  // Partitions gained while paused stay paused until ResumeAll().
  if (paused_) rd_kafka_pause_partitions(rk_, partitions);
  logger_->info("msg=\"partitions assigned\" count={}", partitions->cnt);
  if (listener_) listener_->OnAssigned(assigned);
}

std::map<TopicPartition, int64_t> Consumer::EarliestOffsets(
    const rd_kafka_topic_partition_list_t* partitions) {
  // ListOffsets lookups asking for the earliest offset (timestamp -2), each bounded. Not
  // rd_kafka_query_watermark_offsets: librdkafka 2.0 waits on its requests past the timeout
  // it is given (a minute per attempt, for as long as the leader is unreachable), and this
  // runs in the rebalance callback, where the loop can neither log nor serve the group.
  std::map<TopicPartition, int64_t> earliest;
  auto lookup = [&](int from, int to, int timeout_ms) {
    ListPtr asked(rd_kafka_topic_partition_list_new(to - from));
    for (int i = from; i < to; ++i) {
      rd_kafka_topic_partition_list_add(asked.get(), partitions->elems[i].topic,
                                        partitions->elems[i].partition)
          ->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    const rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk_, asked.get(), timeout_ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return err;
    for (int i = 0; i < asked->cnt; ++i) {
      const rd_kafka_topic_partition_t& e = asked->elems[i];
      if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0) {
        earliest[{e.topic, e.partition}] = e.offset;
      }
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  };
  if (partitions->cnt == 0 ||
      lookup(0, partitions->cnt, kOffsetLookupTimeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    return earliest;
  }
  // One partition that cannot be read (its leader down) fails the whole lookup: ask for each
  // on its own, so that only the unreachable ones stay unknown.
  for (int i = 0; i < partitions->cnt; ++i) {
    if (const rd_kafka_resp_err_t err = lookup(i, i + 1, kPartitionOffsetLookupTimeoutMs);
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      logger_->warn(
          "msg=\"cannot read the earliest offset of an assigned partition\" topic={} "
          "partition={} error=\"{}\"",
          partitions->elems[i].topic, partitions->elems[i].partition, rd_kafka_err2str(err));
    }
  }
  return earliest;
}

void Consumer::Revoke(rd_kafka_topic_partition_list_t* partitions) {
  std::vector<TopicPartition> revoked = ToVector(partitions);
  revoked_in_poll_.insert(revoked_in_poll_.end(), revoked.begin(), revoked.end());
  if (listener_) listener_->OnRevoked(revoked);
  if (IsCooperative(rk_)) {
    if (rd_kafka_error_t* ie = rd_kafka_incremental_unassign(rk_, partitions)) {
      rd_kafka_error_destroy(ie);
    }
  } else {
    rd_kafka_assign(rk_, nullptr);
  }
  logger_->info("msg=\"partitions revoked\" count={}", partitions->cnt);
}

void Consumer::RevokeForTesting(const std::vector<TopicPartition>& partitions) {
  ListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (const TopicPartition& tp : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
  }
  Revoke(list.get());
}

Message::Message(absl::string_view topic, const rd_kafka_message_t& m)
    : topic_(topic),
      partition_(m.partition),
      key_size_(static_cast<uint32_t>(m.key_len)),
      offset_(m.offset),
      value_size_(m.len),
      bytes_(new char[m.key_len + m.len]) {
  if (m.key_len > 0) std::memcpy(bytes_.get(), m.key, m.key_len);
  if (m.len > 0) std::memcpy(bytes_.get() + m.key_len, m.payload, m.len);
}

absl::StatusOr<std::vector<Message>> Consumer::Poll(size_t max_messages, absl::Duration timeout) {
  std::vector<Message> out;
  int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  revoked_in_poll_.clear();
  while (out.size() < max_messages) {
    if (poll_hook_) poll_hook_();
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, wait_ms);
    if (!revoked_in_poll_.empty()) {
      // A rebalance took partitions inside that call: what was taken of them before it is the
      // next owner's to process (and this consumer's listener already dropped the rest). A
      // record the call returned is from after the rebalance: librdkafka discards those
      // fetched before it.
      std::erase_if(out, [&](const Message& r) {
        return std::any_of(revoked_in_poll_.begin(), revoked_in_poll_.end(),
                           [&](const TopicPartition& tp) {
                             return tp.partition == r.partition() && tp.topic == r.topic();
                           });
      });
      revoked_in_poll_.clear();
    }
    if (!fatal_.ok()) {
      if (m) rd_kafka_message_destroy(m);
      return fatal_;
    }
    if (m == nullptr) break;
    wait_ms = 0;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (const absl::string_view name = rd_kafka_topic_name(m->rkt); name != last_topic_name_) {
        last_topic_name_ = *topic_names_.emplace(name).first;
      }
      out.push_back(Message(last_topic_name_, *m));
      rd_kafka_message_destroy(m);
      continue;
    }
    const rd_kafka_resp_err_t err = m->err;
    const std::string what = rd_kafka_message_errstr(m);
    rd_kafka_message_destroy(m);
    switch (err) {
      case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        break;
      case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
        fatal_ = absl::DataLossError(absl::StrCat(
            "consumer offset out of range (the broker dropped unprocessed records): ", what));
        return fatal_;
      default:
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
          fatal_ = absl::InternalError(absl::StrCat("fatal Kafka consumer error: ", what));
          return fatal_;
        }
        logger_->warn("msg=\"Kafka consumer error\" error=\"{}\"", what);
    }
  }
  return out;
}

absl::Status Consumer::Commit(const std::map<TopicPartition, int64_t>& next_offsets) {
  if (next_offsets.empty()) return absl::OkStatus();
  std::map<TopicPartition, CommitPoint> points;
  for (const auto& [tp, offset] : next_offsets) points[tp].offset = offset;
  return Commit(points);
}

absl::Status Consumer::Commit(const std::map<TopicPartition, CommitPoint>& points) {
  if (points.empty()) return absl::OkStatus();
  ListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(points.size())));
  for (const auto& [tp, point] : points) {
    rd_kafka_topic_partition_t* e =
        rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    e->offset = point.offset;
    if (!point.metadata.empty()) {
      // Freed with the list.
      e->metadata = malloc(point.metadata.size());
      std::memcpy(e->metadata, point.metadata.data(), point.metadata.size());
      e->metadata_size = point.metadata.size();
    }
  }
  // A bounded wait on the commit's own result: a synchronous commit can wait on an
  // unresponsive coordinator far longer than the loop may stall. A commit that answers late
  // still lands; committing offsets of durable work is safe whenever it happens.
  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> queue(
      rd_kafka_queue_new(rk_), &rd_kafka_queue_destroy);
  if (absl::Status s =
          ToStatus(rd_kafka_commit_queue(rk_, list.get(), queue.get(), nullptr, nullptr),
                   "committing offsets");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)> result(
      rd_kafka_queue_poll(queue.get(), static_cast<int>(absl::ToInt64Milliseconds(kCommitTimeout))),
      &rd_kafka_event_destroy);
  if (!result) {
    return absl::UnavailableError(absl::StrCat("committing offsets: no answer within ",
                                               absl::FormatDuration(kCommitTimeout)));
  }
  if (absl::Status s = ToStatus(rd_kafka_event_error(result.get()), "committing offsets");
      !s.ok()) {
    return s;
  }
  // librdkafka reports a commit failed as a whole only when every partition failed.
  if (const rd_kafka_topic_partition_list_t* done =
          rd_kafka_event_topic_partition_list(result.get())) {
    for (int i = 0; i < done->cnt; ++i) {
      if (done->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return ToStatus(done->elems[i].err,
                        absl::StrCat("committing the offset of ", done->elems[i].topic, "/",
                                     done->elems[i].partition));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Consumer::PauseAll() {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_resp_err_t e = rd_kafka_assignment(rk_, &list); e) return ToStatus(e, "pause");
  ListPtr owned(list);
  paused_ = true;
  return ToStatus(rd_kafka_pause_partitions(rk_, list), "pausing partitions");
}

absl::Status Consumer::ResumeAll() {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_resp_err_t e = rd_kafka_assignment(rk_, &list); e) return ToStatus(e, "resume");
  ListPtr owned(list);
  paused_ = false;
  return ToStatus(rd_kafka_resume_partitions(rk_, list), "resuming partitions");
}

std::vector<TopicPartition> Consumer::Assignment() const {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_assignment(rk_, &list) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  ListPtr owned(list);
  return ToVector(list);
}

}  // namespace tidemark::kafka

namespace tidemark::kafka {

int64_t Consumer::Lag(bool ask_broker) const {
  rd_kafka_topic_partition_list_t* list = nullptr;
  if (rd_kafka_assignment(rk_, &list) != RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
  ListPtr owned(list);
  if (rd_kafka_position(rk_, list) != RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
  // The partitions' ends from the broker: a ListOffsets for "latest" (timestamp -1).
  std::map<std::pair<std::string, int32_t>, int64_t> asked;
  if (ask_broker && list->cnt > 0) {
    ListPtr ends(rd_kafka_topic_partition_list_new(list->cnt));
    for (int i = 0; i < list->cnt; ++i) {
      rd_kafka_topic_partition_list_add(ends.get(), list->elems[i].topic, list->elems[i].partition)
          ->offset = RD_KAFKA_OFFSET_END;
    }
    if (rd_kafka_offsets_for_times(rk_, ends.get(), 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < ends->cnt; ++i) {
        const rd_kafka_topic_partition_t& e = ends->elems[i];
        if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0) {
          asked[{e.topic, e.partition}] = e.offset;
        }
      }
    }
  }
  int64_t lag = 0;
  for (int i = 0; i < list->cnt; ++i) {
    int64_t low = 0, high = 0;
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    // A partition nothing was consumed from yet (paused before its first fetch, for one)
    // starts where it was assigned to start.
    int64_t position = tp.offset;
    if (position < 0) {
      const auto start = start_offsets_.find({tp.topic, tp.partition});
      if (start == start_offsets_.end()) continue;
      position = start->second;
    }
    if (auto it = asked.find({tp.topic, tp.partition}); it != asked.end()) {
      high = it->second;
    } else if (rd_kafka_get_watermark_offsets(rk_, tp.topic, tp.partition, &low, &high) !=
                   RD_KAFKA_RESP_ERR_NO_ERROR ||
               high < 0) {
      continue;
    }
    lag += std::max<int64_t>(0, high - position);
  }
  return lag;
}

}  // namespace tidemark::kafka
