#include "services/aggregator/aggregator_service.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/retry/backoff.h"
#include "common/series/series_key.h"
#include "common/time/time_units.h"

namespace tidemark::aggregator {

AggregatorMetrics::AggregatorMetrics(metrics::Registry& r)
    : registry(r),
      windows_open(r.AddGauge("tidemark_aggregator_windows_open", "Windows held in memory")),
      consumer_lag(r.AddGauge("tidemark_aggregator_consumer_lag_records",
                              "Raw records behind the end of the assigned partitions")),
      records(r.AddCounter("tidemark_aggregator_records_total", "Raw records processed")),
      emitted(r.AddCounter("tidemark_aggregator_windows_emitted_total",
                           "Windows emitted when the watermark passed their end")),
      re_emitted(r.AddCounter("tidemark_aggregator_windows_re_emitted_total",
                              "Window revisions emitted for late points within lateness")),
      late_within_lateness(r.AddCounter("tidemark_aggregator_late_within_lateness_total",
                                        "Points after their window closed, within lateness")),
      beyond_lateness(r.AddCounter("tidemark_aggregator_beyond_lateness_total",
                                   "Points beyond allowed lateness, sent for repair")),
      clock_corrected(r.AddCounter("tidemark_aggregator_clock_corrected_total",
                                   "Points windowed at their ingest time (clock ahead)")),
      undecodable(
          r.AddCounter("tidemark_aggregator_undecodable_total", "Raw records that are not events")),
      added_size_repairs(r.AddCounter(
          "tidemark_aggregator_added_size_repairs_total",
          "Revisions of windows of a size added since the checkpoint, sent for repair")) {}

// Counts outputs waiting for Kafka and remembers any failure.
class AggregatorLoop::Deliveries final : public kafka::DeliverySink {
 public:
  void OnDelivery(rd_kafka_resp_err_t err) override {
    if (err) failed_.store(err);
  }
  rd_kafka_resp_err_t failed() const { return failed_.load(); }

 private:
  std::atomic<rd_kafka_resp_err_t> failed_{RD_KAFKA_RESP_ERR_NO_ERROR};
};

AggregatorLoop::AggregatorLoop(const AggregatorConfig& config, kafka::Producer& producer,
                               AggregatorMetrics& metrics, std::shared_ptr<spdlog::logger> logger)
    : config_(config),
      producer_(producer),
      metrics_(metrics),
      logger_(std::move(logger)),
      deliveries_(std::make_unique<Deliveries>()) {}

AggregatorLoop::~AggregatorLoop() = default;

void AggregatorLoop::OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) {
  for (const kafka::AssignedPartition& a : partitions) {
    absl::StatusOr<Checkpoint> checkpoint =
        Checkpoint::Decode(std::max<int64_t>(0, a.committed_offset), a.committed_metadata);
    if (!checkpoint.ok()) {
      fatal_ = checkpoint.status();
      return;
    }
    partitions_[a.partition] = std::make_unique<PartitionWindows>(
        config_.windows, a.partition.topic, a.partition.partition, *checkpoint,
        time::ToMicros(absl::Now()));
    if (!metrics_.watermark_lag.contains(a.partition.partition)) {
      metrics_.watermark_lag[a.partition.partition] = &metrics_.registry.AddGauge(
          "tidemark_aggregator_watermark_lag_seconds", "Wall clock minus the watermark",
          absl::StrCat("partition=\"", a.partition.partition, "\""));
    }
    logger_->info("msg=\"rebuilding windows\" partition={} from_offset={} watermark_us={}",
                  a.partition.partition, checkpoint->offset, checkpoint->watermark_us);
  }
}

void AggregatorLoop::OnRevoked(const std::vector<kafka::TopicPartition>& partitions) {
  // Hand over with the latest checkpoint so the next owner replays as little as possible.
  if (absl::Status s = FlushAndCommit(partitions); !s.ok()) {
    logger_->warn("msg=\"commit on revoke failed; the next owner replays more\" error=\"{}\"",
                  s.message());
  }
  for (const kafka::TopicPartition& tp : partitions) {
    partitions_.erase(tp);
    // Another replica reports it now; a last value left here (high, if the partition moved
    // because this replica fell behind) would keep the lag alert firing.
    if (auto it = metrics_.watermark_lag.find(tp.partition); it != metrics_.watermark_lag.end()) {
      it->second->Set(0);
    }
  }
}

bool AggregatorLoop::Publish(EngineOutput& out, const std::atomic<bool>& stop) {
  // A full queue drains as Kafka acknowledges, and a broker outage ends; either way the
  // record is retried, since an output that was not produced must never be committed past.
  auto produce = [&](const std::string& topic, const std::string& key, const std::string& value) {
    absl::Time next_log = absl::Now() + absl::Seconds(5);
    retry::Backoff backoff({.initial = absl::Milliseconds(5), .max = absl::Milliseconds(500)});
    while (true) {
      absl::Status s = producer_.Produce(topic, key, value, deliveries_.get());
      if (s.ok()) return true;
      if (stop.load() || producer_.Fatal()) return false;
      if (absl::Now() >= next_log) {
        logger_->warn("msg=\"cannot produce; retrying\" topic={} error=\"{}\"", topic, s.message());
        next_log = absl::Now() + absl::Seconds(30);
      }
      absl::SleepFor(backoff.Next());
    }
  };
  // Keep only the last revision of each window from this round.
  absl::flat_hash_map<std::tuple<int64_t, int64_t, int64_t>, size_t> last;
  for (size_t i = 0; i < out.emissions.size(); ++i) {
    const Emission& a = out.emissions[i];
    last[{a.series().series_id(), a.window_size_us(), a.window_start_us()}] = i;
  }
  std::string value;
  for (const auto& [key, i] : last) {
    const Emission& a = out.emissions[i];
    a.ToProto().SerializeToString(&value);
    const std::string& device = a.series().dimensions().at(std::string(series::kDeviceIdDimension));
    if (!produce(config_.aggregates_topic, device, value)) return false;
  }
  for (const v1::LatePoint& l : out.late) {
    l.SerializeToString(&value);
    const std::string& device = l.series().dimensions().at(std::string(series::kDeviceIdDimension));
    if (!produce(config_.late_topic, device, value)) return false;
  }
  return true;
}

absl::Status AggregatorLoop::FlushAndCommit(const std::vector<kafka::TopicPartition>& partitions) {
  if (unpublished_) {
    return absl::FailedPreconditionError("outputs were left unpublished; not committing");
  }
  if (absl::Status s = producer_.Flush(absl::Minutes(5)); !s.ok()) return s;
  if (rd_kafka_resp_err_t err = deliveries_->failed(); err) {
    // An output was lost: committing now would skip it for good. Stop; a restart replays
    // from the last good checkpoint.
    return absl::UnavailableError(
        absl::StrCat("an aggregator output was not delivered: ", rd_kafka_err2str(err)));
  }
  std::map<kafka::TopicPartition, kafka::CommitPoint> points;
  for (const kafka::TopicPartition& tp : partitions) {
    auto it = partitions_.find(tp);
    if (it == partitions_.end()) continue;
    const Checkpoint c = it->second->CurrentCheckpoint();
    // Nothing consumed of a partition the group never committed: its checkpoint is offset 0,
    // which is no better than no commit (consumption starts at the beginning either way) but,
    // once the broker no longer holds offset 0, would read as records dropped unprocessed
    // and stop every later owner with DATA_LOSS. (Once records were consumed, offset 0 is
    // committed: a window still holding it must fail loudly if the broker drops it.)
    if (c.offset <= 0 && !it->second->consumed()) continue;
    points[tp] = {c.offset, c.Encode()};
  }
  if (consumer_ == nullptr) return absl::OkStatus();
  return consumer_->Commit(points);
}

void AggregatorLoop::UpdateGauges() {
  int64_t open = 0;
  const int64_t now_us = time::ToMicros(absl::Now());
  for (const auto& [tp, w] : partitions_) {
    open += static_cast<int64_t>(w->open_windows());
    if (w->watermark_us() != INT64_MIN) {
      metrics_.watermark_lag[tp.partition]->Set(static_cast<double>(now_us - w->watermark_us()) /
                                                1e6);
    }
  }
  metrics_.windows_open.Set(static_cast<double>(open));
}

absl::Status AggregatorLoop::Run(kafka::Consumer& consumer, const std::atomic<bool>& stop) {
  consumer_ = &consumer;
  absl::Time next_commit = absl::Now() + config_.commit_interval;
  while (!stop.load()) {
    absl::StatusOr<std::vector<kafka::Message>> polled =
        consumer.Poll(config_.poll_batch, absl::Milliseconds(100));
    if (!polled.ok()) return polled.status();
    if (!fatal_.ok()) return fatal_;
    const int64_t now_us = time::ToMicros(absl::Now());
    EngineOutput out;
    std::map<PartitionWindows*, EngineCounters> before;
    for (auto& [tp, w] : partitions_) before[w.get()] = w->counters();
    int64_t undecodable = 0;
    const kafka::Message* first_undecodable = nullptr;
    for (const kafka::Message& m : *polled) {
      auto it = partitions_.find({std::string(m.topic()), m.partition()});
      if (it == partitions_.end()) continue;  // revoked while the batch was in flight
      if (event_.Parse(m.value())) {
        it->second->Process(m.offset(), event_, now_us, out);
      } else {
        it->second->Skip(m.offset(), now_us);
        if (undecodable++ == 0) first_undecodable = &m;
      }
    }
    if (undecodable > 0) {
      // Once per poll, not per record: a foreign producer may write many. The writer publishes
      // them to the rejected topic; publishing here too would list each twice.
      logger_->warn(
          "msg=\"raw records that are not events skipped (the writer publishes them to the "
          "rejected topic)\" count={} first_topic={} first_partition={} first_offset={}",
          undecodable, first_undecodable->topic(), first_undecodable->partition(),
          first_undecodable->offset());
    }
    for (auto& [tp, w] : partitions_) w->AdvanceIfIdle(now_us, out);
    metrics_.records.Add(polled->size());
    for (auto& [tp, w] : partitions_) {
      const EngineCounters& a = before[w.get()];
      const EngineCounters& b = w->counters();
      metrics_.emitted.Add(b.emitted - a.emitted);
      metrics_.re_emitted.Add(b.re_emitted - a.re_emitted);
      metrics_.late_within_lateness.Add(b.late_within_lateness - a.late_within_lateness);
      metrics_.beyond_lateness.Add(b.beyond_lateness - a.beyond_lateness);
      metrics_.clock_corrected.Add(b.clock_corrected - a.clock_corrected);
      metrics_.undecodable.Add(b.undecodable - a.undecodable);
      metrics_.added_size_repairs.Add(b.added_size_repairs - a.added_size_repairs);
    }
    if (!Publish(out, stop)) {
      unpublished_ = true;
      // Stopping while Kafka refuses outputs: commit nothing more; the next start replays
      // from the last checkpoint and produces them then.
      logger_->warn("msg=\"stopping with unpublished outputs; they are replayed on restart\"");
      return absl::OkStatus();
    }
    if (absl::Now() >= next_commit) {
      std::vector<kafka::TopicPartition> all;
      for (const auto& [tp, w] : partitions_) all.push_back(tp);
      if (absl::Status s = FlushAndCommit(all); !s.ok()) {
        if (s.code() == absl::StatusCode::kUnavailable &&
            deliveries_->failed() != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return s;
        }
        logger_->warn("msg=\"checkpoint commit failed; will retry\" error=\"{}\"", s.message());
      }
      UpdateGauges();
      metrics_.consumer_lag.Set(static_cast<double>(consumer.Lag()));
      next_commit = absl::Now() + config_.commit_interval;
    }
  }
  std::vector<kafka::TopicPartition> all;
  for (const auto& [tp, w] : partitions_) all.push_back(tp);
  return FlushAndCommit(all);
}

}  // namespace tidemark::aggregator
