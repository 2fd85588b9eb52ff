#include "common/kafka/producer.h"

#include <pthread.h>

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/kafka/client_properties.h"
#include "common/kafka/kafka_errors.h"
#include "common/process/shutdown_signal.h"

namespace tidemark::kafka {
namespace {

// The hash librdkafka applies to a keyed record under partitioner `name` (the _random
// variants differ only for records without a key); null when keys do not decide.
using KeyHashFn = decltype(&rd_kafka_msg_partitioner_consistent);

KeyHashFn KeyHash(absl::string_view name) {
  if (name == "random") return nullptr;
  if (name == "murmur2" || name == "murmur2_random") return &rd_kafka_msg_partitioner_murmur2;
  if (name == "fnv1a" || name == "fnv1a_random") return &rd_kafka_msg_partitioner_fnv1a;
  return &rd_kafka_msg_partitioner_consistent;  // consistent, consistent_random (the default)
}

}  // namespace

absl::StatusOr<std::unique_ptr<Producer>> Producer::Create(const ProducerConfig& config,
                                                           std::shared_ptr<spdlog::logger> logger) {
  std::unique_ptr<Producer> p(new Producer());
  p->logger_ = std::move(logger);
  p->delivery_timeout_ = config.delivery_timeout;
  p->max_queued_ = static_cast<size_t>(std::max(0, config.max_queued_messages));
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::map<std::string, std::string> props = {
      {"bootstrap.servers", config.brokers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", config.compression},
      {"linger.ms", absl::StrCat(absl::ToInt64Milliseconds(config.linger))},
      {"message.timeout.ms", absl::StrCat(absl::ToInt64Milliseconds(config.delivery_timeout))},
      {"queue.buffering.max.messages", absl::StrCat(config.max_queued_messages)},
      {"batch.size", "1000000"},
      // librdkafka leaves Nagle on by default: a request written while the previous one to
      // the same broker is unacknowledged then waits for the broker's delayed ACK (40 ms on
      // Linux), a stall that a unary Write, waiting on every one of its records, pays whole.
      {"socket.nagle.disable", "true"},
      // librdkafka backs off up to 10 s between reconnects; a broker back after a short outage
      // should be used within a second.
      {"reconnect.backoff.max.ms", "1000"},
  };
  for (const auto& [k, v] : config.properties) props[k] = v;
  if (absl::Status s = ApplyProperties(conf, props, "producer"); !s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  char partitioner[64] = "consistent_random";
  size_t partitioner_size = sizeof(partitioner);
  (void)rd_kafka_conf_get(conf, "partitioner", partitioner, &partitioner_size);
  p->partitioner_ = KeyHash(partitioner);
  rd_kafka_conf_set_dr_msg_cb(conf, &Producer::OnDeliveryReport);
  rd_kafka_conf_set_error_cb(conf, &Producer::OnError);
  rd_kafka_conf_set_opaque(conf, p.get());
  char err[512];
  p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (p->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("cannot create Kafka producer: ", err));
  }
  p->poll_thread_ = std::thread([raw = p.get()] { raw->PollLoop(); });
  return p;
}

Producer::~Producer() {
  if (rk_ == nullptr) return;
  if (absl::Status s = Flush(delivery_timeout_); !s.ok()) {
    logger_->warn("msg=\"records still queued at shutdown\" error=\"{}\"", s.message());
  }
  stopping_ = true;
  if (poll_thread_.joinable()) poll_thread_.join();
  rd_kafka_destroy(rk_);
}

absl::Status Producer::Health() const {
  if (Fatal()) return absl::InternalError("the Kafka producer hit a fatal error");
  if (BrokersDown()) return absl::UnavailableError("no Kafka broker reachable");
  return absl::OkStatus();
}

void Producer::InjectFatalErrorForTesting() {
  rd_kafka_test_fatal_error(rk_, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                            "injected by a test");
}

absl::Status Producer::Produce(const std::string& topic, absl::string_view key,
                               absl::string_view value, DeliverySink* sink) {
  if (Fatal()) {
    return absl::InternalError("the Kafka producer hit a fatal error; the process is restarting");
  }
  if (BrokersDown()) {
    return absl::UnavailableError("Kafka is unreachable: all brokers are down");
  }
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_OPAQUE(sink),
      RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();  // no message to build
  return ToStatus(err, absl::StrCat("producing to ", topic));
}

std::vector<uint32_t> Producer::ProduceOrder(const std::string& topic, size_t count,
                                             absl::FunctionRef<absl::string_view(size_t)> key) {
  int32_t partitions = 0;
  {
    absl::MutexLock lock(&partitions_mu_);
    auto [it, inserted] = partitions_.try_emplace(topic, 0);
    if (inserted) partition_counts_wanted_ = true;  // the poll thread fetches it
    partitions = it->second;
  }
  std::vector<uint32_t> order(count);
  if (partitions <= 1 || partitioner_ == nullptr) {
    std::iota(order.begin(), order.end(), 0);
    return order;
  }
  // A counting sort by partition, stable; records without a key (partitioned at random by
  // librdkafka) go last.
  std::vector<int32_t> partition(count);
  std::vector<uint32_t> start(partitions + 2, 0);
  for (size_t i = 0; i < count; ++i) {
    const absl::string_view k = key(i);
    partition[i] = k.empty()
                       ? partitions
                       : partitioner_(nullptr, k.data(), k.size(), partitions, nullptr, nullptr);
    ++start[partition[i] + 1];
  }
  std::partial_sum(start.begin(), start.end(), start.begin());
  for (size_t i = 0; i < count; ++i) order[start[partition[i]]++] = static_cast<uint32_t>(i);
  return order;
}

bool Producer::RefreshPartitionCounts() {
  std::vector<std::string> topics;
  {
    absl::MutexLock lock(&partitions_mu_);
    for (const auto& [topic, count] : partitions_) topics.push_back(topic);
  }
  bool complete = true;
  for (const std::string& topic : topics) {
    int32_t count = 0;
    if (rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, topic.c_str(), nullptr)) {
      const rd_kafka_metadata_t* md = nullptr;
      if (rd_kafka_metadata(rk_, 0, rkt, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          count = md->topics[0].partition_cnt;
        }
        rd_kafka_metadata_destroy(md);
      }
      rd_kafka_topic_destroy(rkt);
    }
    if (count == 0) {
      complete = false;  // kept as it was: a count from before an outage is still the best guess
      continue;
    }
    absl::MutexLock lock(&partitions_mu_);
    partitions_[topic] = count;
  }
  return complete;
}

bool Producer::Reserve(size_t count) {
  // Records already produced under a reservation count twice until it is released: a little
  // room is refused early, none is given twice.
  const size_t queued = static_cast<size_t>(std::max(0, rd_kafka_outq_len(rk_)));
  size_t reserved = reserved_.load();
  do {
    if (queued + reserved + count > max_queued_) return false;
  } while (!reserved_.compare_exchange_weak(reserved, reserved + count));
  return true;
}

void Producer::Release(size_t count) { reserved_.fetch_sub(count); }

absl::Status Producer::Flush(absl::Duration timeout) {
  return ToStatus(rd_kafka_flush(rk_, static_cast<int>(absl::ToInt64Milliseconds(timeout))),
                  "flushing Kafka producer");
}

void Producer::PollLoop() {
  // Named as librdkafka names its own threads (rdk:*), so that `top -H` and per-thread CPU
  // figures tell delivery reports (which finish every Write) apart from the process's others.
  pthread_setname_np(pthread_self(), "kafka-delivery");
  absl::Time next_probe = absl::InfinitePast();
  absl::Time next_refresh = absl::InfinitePast();
  while (!stopping_.load()) {
    rd_kafka_poll(rk_, 50);
    // Partition counts for ProduceOrder: as soon as a topic is first asked about, then as
    // often as librdkafka refreshes its own metadata by default (topics may grow), or every
    // 5 s while one is missing. Not while the brokers are down: the request would hold up
    // this thread's delivery reports for its whole timeout, and arrival order is correct.
    if (!BrokersDown() &&
        (partition_counts_wanted_.exchange(false) || absl::Now() >= next_refresh)) {
      const bool complete = RefreshPartitionCounts();
      next_refresh = absl::Now() + (complete ? absl::Minutes(5) : absl::Seconds(5));
    }
    // librdkafka reports brokers going down but not coming back: probe with a metadata
    // request so that Produce() stops failing fast once a broker answers again.
    if (BrokersDown() && absl::Now() >= next_probe) {
      const rd_kafka_metadata_t* md = nullptr;
      if (rd_kafka_metadata(rk_, 0, nullptr, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        brokers_down_ = false;
        logger_->info("msg=\"Kafka reachable again\"");
      }
      next_probe = absl::Now() + absl::Seconds(1);
    }
  }
}

void Producer::OnDeliveryReport(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  if (auto* sink = static_cast<DeliverySink*>(msg->_private)) sink->OnDelivery(msg->err);
}

void Producer::OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<Producer*>(opaque);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->brokers_down_ = true;
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_fatal_error(rk, buf, sizeof(buf));
    self->logger_->critical("msg=\"fatal Kafka producer error; exiting\" error=\"{}\"", buf);
    self->fatal_ = true;
    process::ShutdownSignal::RequestStop(kFatalExitCode);
    return;
  }
  self->logger_->warn("msg=\"Kafka producer error\" error=\"{}\"", reason);
}

}  // namespace tidemark::kafka
