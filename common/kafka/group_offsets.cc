#include "common/kafka/group_offsets.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/kafka/client_properties.h"
#include "common/kafka/kafka_errors.h"
#include "librdkafka/rdkafka.h"

namespace tidemark::kafka {

absl::StatusOr<std::map<int32_t, GroupPartitionOffsets>> ReadGroupOffsets(
    const std::string& brokers, const std::string& group, const std::string& topic,
    absl::Duration timeout) {
  const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (absl::Status s = ApplyProperties(
          conf, {{"bootstrap.servers", brokers}, {"group.id", group}, {"enable.auto.commit", "false"}},
          "offset reader");
      !s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  char err[512];
  std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)> rk(
      rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)), &rd_kafka_destroy);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("cannot create a Kafka consumer: ", err));
  }
  std::unique_ptr<rd_kafka_topic_t, decltype(&rd_kafka_topic_destroy)> rkt(
      rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr), &rd_kafka_topic_destroy);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_resp_err_t e = rd_kafka_metadata(rk.get(), 0, rkt.get(), &md, timeout_ms); e) {
    return ToStatus(e, absl::StrCat("reading the metadata of ", topic));
  }
  std::unique_ptr<const rd_kafka_metadata_t, decltype(&rd_kafka_metadata_destroy)> metadata(
      md, &rd_kafka_metadata_destroy);
  if (metadata->topic_cnt != 1 || metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
      metadata->topics[0].partition_cnt == 0) {
    return absl::NotFoundError(absl::StrCat("Kafka topic ", topic, " does not exist"));
  }
  const rd_kafka_metadata_topic_t& t = metadata->topics[0];
  std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>
      list(rd_kafka_topic_partition_list_new(t.partition_cnt),
           &rd_kafka_topic_partition_list_destroy);
  for (int i = 0; i < t.partition_cnt; ++i) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), t.partitions[i].id);
  }
  if (rd_kafka_resp_err_t e = rd_kafka_committed(rk.get(), list.get(), timeout_ms); e) {
    return ToStatus(e, absl::StrCat("reading the committed offsets of group ", group));
  }
  // Each partition's end, in one ListOffsets lookup (timestamp -1): librdkafka 2.0's
  // rd_kafka_query_watermark_offsets waits past its timeout while a leader is unreachable.
  std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>
      ends(rd_kafka_topic_partition_list_copy(list.get()), &rd_kafka_topic_partition_list_destroy);
  for (int i = 0; i < ends->cnt; ++i) ends->elems[i].offset = RD_KAFKA_OFFSET_END;
  if (rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk.get(), ends.get(), timeout_ms); e) {
    return ToStatus(e, absl::StrCat("reading the ends of ", topic));
  }
  std::map<int32_t, GroupPartitionOffsets> out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err) return ToStatus(tp.err, absl::StrCat("the committed offset of ", topic, "/", tp.partition));
    const rd_kafka_topic_partition_t* end =
        rd_kafka_topic_partition_list_find(ends.get(), topic.c_str(), tp.partition);
    if (end == nullptr || end->err) {
      return ToStatus(end == nullptr ? RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION : end->err,
                      absl::StrCat("reading the end of ", topic, "/", tp.partition));
    }
    GroupPartitionOffsets& o = out[tp.partition];
    o.committed = tp.offset < 0 ? -1 : tp.offset;
    o.high_watermark = end->offset;
  }
  return out;
}

}  // namespace tidemark::kafka
