#include "common/kafka/batch_loop.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/retry/backoff.h"

namespace tidemark::kafka {

BatchLoopMetrics::BatchLoopMetrics(metrics::Registry& r, const std::string& prefix,
                                   const std::string& loop)
    : records(r.AddCounter(absl::StrCat(prefix, "_records_total"), "Kafka records consumed",
                           absl::StrCat("loop=\"", loop, "\""))),
      rejected(r.AddCounter(absl::StrCat(prefix, "_rejected_total"),
                            "Records or points published to tidemark.rejected",
                            absl::StrCat("loop=\"", loop, "\""))),
      store_retries(r.AddCounter(absl::StrCat(prefix, "_store_retries_total"),
                                 "Batch writes retried after a failure",
                                 absl::StrCat("loop=\"", loop, "\""))),
      batch_latency(r.AddHistogram(absl::StrCat(prefix, "_batch_seconds"),
                                   "Time to store one batch and commit its offsets",
                                   absl::StrCat("loop=\"", loop, "\""))),
      consumer_lag(r.AddGauge(absl::StrCat(prefix, "_consumer_lag_records"),
                              "Records behind the end of the assigned partitions",
                              absl::StrCat("loop=\"", loop, "\""))) {}

BatchLoop::BatchLoop(const BatchLoopConfig& config, BatchSink& sink, Producer& rejected_producer,
                     BatchLoopMetrics& metrics, std::shared_ptr<spdlog::logger> logger)
    : config_(config),
      sink_(sink),
      rejected_producer_(rejected_producer),
      metrics_(metrics),
      logger_(std::move(logger)) {}

namespace {

std::vector<const Message*> Pointers(const std::vector<Message>& records, size_t n) {
  std::vector<const Message*> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(&records[i]);
  return out;
}

}  // namespace

void BatchLoop::AwaitStoresForRebalance() {
  // The sink hears of rebalances only while it stores nothing.
  if (in_flight_) in_flight_->stored.wait();
  if (flush_store_ != nullptr) flush_store_->wait();
}

void BatchLoop::OnAssigned(const std::vector<AssignedPartition>& partitions) {
  AwaitStoresForRebalance();
  sink_.OnAssigned(partitions);
}

void BatchLoop::OnRevoked(const std::vector<TopicPartition>& partitions) {
  AwaitStoresForRebalance();
  // Uncommitted records of a revoked partition are the next owner's to write.
  auto revoked = [&](const Message& m) {
    return std::any_of(partitions.begin(), partitions.end(), [&](const auto& tp) {
      return tp.partition == m.partition() && tp.topic == m.topic();
    });
  };
  const auto kept = std::remove_if(pending_.begin(), pending_.end(), revoked);
  // Only a batch that lost records is built again (a rebalance that revokes nothing held
  // leaves the sink's builder as it is).
  if (kept != pending_.end()) ++pending_revision_;
  pending_.erase(kept, pending_.end());
  pending_bytes_ = 0;
  for (const Message& m : pending_) pending_bytes_ += m.value().size();
  // A flush in progress must not commit them either: the next owner may already be redoing
  // them from the committed offset.
  revoked_.insert(partitions.begin(), partitions.end());
  sink_.OnRevoked(partitions);
}

absl::Status BatchLoop::Run(Consumer& consumer, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    absl::Duration wait = absl::Milliseconds(100);
    if (!pending_.empty()) {
      wait = std::max(absl::ZeroDuration(), batch_started_ + config_.batch_max_age - absl::Now());
    }
    // A stored batch in flight is committed soon after its store answers.
    if (in_flight_) wait = std::min(wait, absl::Milliseconds(5));
    // pending_ may already exceed the batch size with records polled while backing off.
    const size_t room = pending_.size() < config_.batch_max_records
                            ? config_.batch_max_records - pending_.size()
                            : 0;
    absl::StatusOr<std::vector<Message>> polled = consumer.Poll(room, wait);
    if (!polled.ok()) return polled.status();
    UpdateLag(consumer, /*ask_broker=*/false);
    Hold(*polled);
    BuildPending();
    if (in_flight_ &&
        in_flight_->stored.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      if (absl::Status s = FinishInFlight(consumer, stop).status(); !s.ok()) return s;
    }
    if (!pending_.empty() && (pending_.size() >= config_.batch_max_records ||
                              pending_bytes_ >= config_.batch_max_bytes ||
                              absl::Now() >= batch_started_ + config_.batch_max_age)) {
      absl::Status s =
          config_.overlap_store ? FlushOverlapped(consumer, stop) : Flush(consumer, stop);
      if (!s.ok()) return s;
    }
  }
  // Shutting down: write what is held, if the store lets us, and commit it.
  if (absl::Status s = FinishInFlight(consumer, stop).status(); !s.ok()) return s;
  if (!pending_.empty()) {
    if (absl::Status s = Flush(consumer, stop); !s.ok()) return s;
  }
  sink_.OnStopping();
  return absl::OkStatus();
}

void BatchLoop::UpdateLag(Consumer& consumer, bool ask_broker) {
  // Records polled and held for a batch are not counted: the archive holds minutes of them
  // by design, and a loop that keeps up must not look behind.
  metrics_.consumer_lag.Set(static_cast<double>(consumer.Lag(ask_broker)));
}

void BatchLoop::Hold(std::vector<Message>& polled) {
  // A batch is as old as its first record (records polled while a store runs or backs off
  // start the next batch then).
  if (pending_.empty() && !polled.empty()) batch_started_ = absl::Now();
  for (Message& m : polled) {
    pending_bytes_ += m.value().size();
    pending_.push_back(std::move(m));
  }
}

std::vector<Message> BatchLoop::TakePending() {
  std::vector<Message> batch;
  batch.swap(pending_);
  pending_bytes_ = 0;
  ++pending_revision_;
  // Revocations from now on are the ones this batch's commit must leave out.
  revoked_.clear();
  return batch;
}

void BatchLoop::PutBack(std::vector<Message>& batch) {
  std::vector<Message> records;
  for (Message& m : batch) {
    if (!revoked_.contains({std::string(m.topic()), m.partition()})) {
      records.push_back(std::move(m));
    }
  }
  batch.clear();
  for (Message& m : pending_) records.push_back(std::move(m));
  pending_ = std::move(records);
  ++pending_revision_;
  pending_bytes_ = 0;
  for (const Message& m : pending_) pending_bytes_ += m.value().size();
}

void BatchLoop::WaitPolling(Consumer& consumer, absl::Duration delay) {
  metrics_.store_retries.Add();
  // Polling paused partitions fetches nothing but keeps the group membership alive and
  // serves rebalances.
  const absl::Time until = absl::Now() + delay;
  // While the store is down the lag is what an operator watches grow; the paused partitions'
  // ends come from the broker, every few seconds.
  if (absl::Now() >= next_lag_query_) {
    UpdateLag(consumer, /*ask_broker=*/true);
    next_lag_query_ = absl::Now() + absl::Seconds(5);
  }
  while (absl::Now() < until) {
    absl::StatusOr<std::vector<Message>> none =
        consumer.Poll(1, std::min(absl::Milliseconds(100), until - absl::Now()));
    if (none.ok()) Hold(*none);
  }
}

void BatchLoop::BuildPending() {
  if (!config_.overlap_store || !sink_builds_ || pending_.empty()) return;
  if (builder_ == nullptr || builder_revision_ != pending_revision_) {
    builder_ = sink_.StartBatch();
    if (builder_ == nullptr) {
      sink_builds_ = false;
      return;
    }
    builder_revision_ = pending_revision_;
    built_ = 0;
  }
  for (; built_ < pending_.size(); ++built_) builder_->Add(pending_[built_]);
}

std::unique_ptr<PreparedBatch> BatchLoop::PreparePending(size_t n) {
  BuildPending();
  std::unique_ptr<BatchBuilder> builder = std::move(builder_);
  if (builder != nullptr && builder_revision_ == pending_revision_ && built_ == n) {
    return builder->Finish();
  }
  return sink_.Prepare(Pointers(pending_, n));
}

BatchLoop::StoreResult BatchLoop::StoreRecords(const std::vector<Message>& batch,
                                               const std::vector<size_t>& sources) {
  std::vector<const Message*> records;
  records.reserve(sources.size());
  for (size_t i : sources) records.push_back(&batch[i]);
  absl::StatusOr<std::vector<RecordRejection>> rejections = sink_.Write(records);
  if (!rejections.ok()) return rejections.status();
  metrics_.records.Add(sources.size());
  for (RecordRejection& r : *rejections) r.source = sources[r.source];
  return rejections;
}

BatchLoop::StoreResult BatchLoop::StoreIsolating(const std::vector<Message>& batch,
                                                 const std::vector<size_t>& sources) {
  StoreResult stored = StoreRecords(batch, sources);
  if (stored.ok() || stored.status().code() != absl::StatusCode::kInvalidArgument) {
    return stored;
  }
  if (sources.size() == 1) {
    return std::vector<RecordRejection>{{sources[0], v1::REJECT_REASON_STORE_ERROR,
                                         std::string(stored.status().message()), "", std::nullopt}};
  }
  logger_->warn("msg=\"store refused part of a batch; halving it\" loop={} records={} error=\"{}\"",
                config_.name, sources.size(), stored.status().message());
  const auto middle = sources.begin() + static_cast<std::ptrdiff_t>(sources.size() / 2);
  std::vector<RecordRejection> rejections;
  for (std::vector<size_t> half :
       {std::vector<size_t>(sources.begin(), middle), std::vector<size_t>(middle, sources.end())}) {
    // In order, stopping at a retriable error, so the store never holds a later record of a
    // partition without the earlier ones.
    StoreResult part = StoreIsolating(batch, half);
    if (!part.ok()) return part.status();
    for (RecordRejection& r : *part) rejections.push_back(std::move(r));
  }
  return rejections;
}

absl::Status BatchLoop::Flush(Consumer& consumer, const std::atomic<bool>& stop) {
  const absl::Time start = absl::Now();
  retry::Backoff backoff(
      {.initial = config_.retry_initial_backoff, .max = config_.retry_max_backoff});
  bool paused = false;
  auto pause = [&] {
    if (paused) return;
    if (absl::Status s = consumer.PauseAll(); !s.ok()) {
      logger_->warn("msg=\"cannot pause\" error=\"{}\"", s.message());
    }
    paused = true;
  };

  // 1. Store the pending records. Records polled while the store runs wait in pending_ for the
  //    next batch; after a failure they join the batch's next attempt, as do those polled
  //    while backing off.
  std::vector<Message> batch;
  std::vector<RecordRejection> rejections;
  while (!pending_.empty()) {
    batch = TakePending();
    // Records the store refuses are isolated and rejected; only a retriable error fails.
    StoreResult stored = StoreWhilePolling(consumer, batch, paused);
    if (stored.ok()) {
      rejections = *std::move(stored);
      break;
    }
    PutBack(batch);
    const absl::Duration delay = backoff.Next();
    logger_->warn(
        "msg=\"store write failed; consumption paused, retrying\" loop={} error=\"{}\" "
        "retry_in={}",
        config_.name, stored.status().message(), absl::FormatDuration(delay));
    pause();
    if (stop.load()) {
      // Shutting down: the records stay uncommitted and are written after the restart.
      return absl::OkStatus();
    }
    WaitPolling(consumer, delay);
  }

  // 2. Publish what the store refused and commit the batch's offsets.
  absl::Status s = PublishAndCommit(consumer, stop, batch, rejections, paused);
  metrics_.batch_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  return s;
}

BatchLoop::StoreResult BatchLoop::StoreWhilePolling(Consumer& consumer,
                                                    const std::vector<Message>& batch,
                                                    bool paused) {
  const absl::Time started = absl::Now();
  std::vector<size_t> all(batch.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::future<StoreResult> store =
      std::async(std::launch::async, [&] { return StoreIsolating(batch, all); });
  flush_store_ = &store;
  AwaitStore(consumer, store, batch.size(), started, paused);
  flush_store_ = nullptr;
  return store.get();
}

absl::Status BatchLoop::PublishAndCommit(Consumer& consumer, const std::atomic<bool>& stop,
                                         const std::vector<Message>& records,
                                         const std::vector<RecordRejection>& rejections,
                                         bool& paused) {
  std::vector<std::pair<std::string, std::string>> rejected_records;
  for (const RecordRejection& r : rejections) {
    const Message& m = records[r.source];
    rejected_records.emplace_back(std::string(m.key()), RejectedRecord(r, m));
  }
  std::map<TopicPartition, int64_t> next_offsets;
  for (const Message& m : records) {
    int64_t& next = next_offsets[{std::string(m.topic()), m.partition()}];
    next = std::max(next, m.offset() + 1);
  }

  // 3. Rejections are made durable before the offsets that produced them are committed.
  retry::Backoff publish_backoff(
      {.initial = config_.retry_initial_backoff, .max = config_.retry_max_backoff});
  while (true) {
    absl::Status published = PublishRejections(rejected_records);
    if (published.ok()) break;
    logger_->warn("msg=\"cannot publish rejections; retrying\" error=\"{}\"", published.message());
    if (!paused) {
      if (absl::Status s = consumer.PauseAll(); !s.ok()) {
        logger_->warn("msg=\"cannot pause\" error=\"{}\"", s.message());
      }
      paused = true;
    }
    if (stop.load()) return absl::OkStatus();
    WaitPolling(consumer, publish_backoff.Next());
  }
  metrics_.rejected.Add(rejected_records.size());

  // 4. Commit, leaving out partitions revoked since the batch was taken (their next owner may
  //    already be redoing them). A failure loses nothing: the records are replayed, and the
  //    versioned upsert makes the replay a no-op.
  for (const TopicPartition& tp : revoked_) next_offsets.erase(tp);
  if (absl::Status s = consumer.Commit(next_offsets); !s.ok()) {
    logger_->warn("msg=\"offset commit failed; records will be replayed\" error=\"{}\"",
                  s.message());
  } else {
    sink_.OnCommitted(next_offsets);
  }
  if (paused) {
    if (absl::Status s = consumer.ResumeAll(); !s.ok()) {
      logger_->warn("msg=\"cannot resume\" error=\"{}\"", s.message());
    }
    logger_->info("msg=\"store reachable again; consumption resumed\"");
    paused = false;
  }
  return absl::OkStatus();
}

absl::Status BatchLoop::FlushOverlapped(Consumer& consumer, const std::atomic<bool>& stop) {
  // 1. Prepare this batch (or finish what its builder made of it) while the previous one is
  //    being stored.
  size_t n = pending_.size();
  std::unique_ptr<PreparedBatch> prepared = PreparePending(n);
  const uint64_t revision = pending_revision_;
  // 2. Finish the previous one.
  absl::StatusOr<bool> retried = FinishInFlight(consumer, stop);
  if (!retried.ok()) return retried.status();
  if (*retried) return absl::OkStatus();  // its store failed, and Flush stored this batch too
  if (pending_revision_ != revision) {
    // A rebalance took records of revoked partitions out: prepare afresh, here, as Prepare
    // runs on this thread only.
    n = pending_.size();
    prepared = n == 0 ? nullptr : sink_.Prepare(Pointers(pending_, n));
  }
  if (n == 0) return absl::OkStatus();
  // 3. Store it on a thread of its own; records polled meanwhile form the next batch.
  InFlight& f = in_flight_.emplace();
  f.records.assign(std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(n)));
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
  ++pending_revision_;
  pending_bytes_ = 0;
  for (const Message& m : pending_) pending_bytes_ += m.value().size();
  if (!pending_.empty()) batch_started_ = absl::Now();
  revoked_.clear();
  f.started = absl::Now();
  f.stored = std::async(std::launch::async, [this, records = Pointers(f.records, n),
                                             prepared = std::move(prepared)]() mutable {
    return sink_.WritePrepared(records, std::move(prepared));
  });
  return absl::OkStatus();
}

void BatchLoop::AwaitStore(Consumer& consumer, const std::future<StoreResult>& store,
                           size_t records, absl::Time started, bool paused) {
  // Waiting here blocks the thread whose polling keeps this consumer in its group: past
  // max.poll.interval.ms (5 minutes by default) the group moves its partitions to another
  // replica while this one still writes them. A store that takes longer than a second (a lake
  // or database answering slowly, request after request) is waited for polling the paused
  // consumer, as a failing one is, and named in the log every 30 s.
  if (store.wait_for(std::chrono::seconds(1)) == std::future_status::ready) return;
  const bool paused_here = !paused && consumer.PauseAll().ok();
  absl::Time next_report = started + absl::Seconds(30);
  while (store.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    absl::StatusOr<std::vector<Message>> polled = consumer.Poll(1, absl::Milliseconds(100));
    if (polled.ok()) Hold(*polled);
    if (absl::Now() >= next_report) {
      logger_->warn("msg=\"batch store still running\" loop={} records={} running_for={}",
                    config_.name, records,
                    absl::FormatDuration(absl::Trunc(absl::Now() - started, absl::Seconds(1))));
      next_report += absl::Seconds(30);
    }
  }
  if (!paused_here) return;
  if (absl::Status s = consumer.ResumeAll(); !s.ok()) {
    logger_->warn("msg=\"cannot resume\" error=\"{}\"", s.message());
  }
}

absl::StatusOr<bool> BatchLoop::FinishInFlight(Consumer& consumer, const std::atomic<bool>& stop) {
  if (!in_flight_) return false;
  AwaitStore(consumer, in_flight_->stored, in_flight_->records.size(), in_flight_->started,
             /*paused=*/false);
  StoreResult stored = in_flight_->stored.get();
  InFlight done = std::move(*in_flight_);
  in_flight_.reset();
  if (!stored.ok()) {
    // Its transaction rolled back. It is stored again with the records after it, in order, the
    // way Flush retries and isolates refused records; records of partitions revoked meanwhile
    // are the next owner's.
    metrics_.store_retries.Add();
    PutBack(done.records);
    if (pending_.empty()) return true;
    if (stored.status().code() != absl::StatusCode::kInvalidArgument) {
      logger_->warn("msg=\"store write failed; retrying\" loop={} error=\"{}\"", config_.name,
                    stored.status().message());
    }
    if (absl::Status s = Flush(consumer, stop); !s.ok()) return s;
    return true;
  }
  metrics_.records.Add(done.records.size());
  bool paused = false;
  absl::Status s = PublishAndCommit(consumer, stop, done.records, *stored, paused);
  metrics_.batch_latency.Observe(absl::ToDoubleSeconds(absl::Now() - done.started));
  if (!s.ok()) return s;
  return false;
}

std::string BatchLoop::RejectedRecord(const RecordRejection& r, const Message& m) const {
  v1::RejectedEvent out;
  out.set_service(config_.service);
  out.set_reason(r.reason);
  out.set_message(r.message);
  out.set_topic(std::string(m.topic()));
  out.set_partition(m.partition());
  out.set_offset(m.offset());
  out.set_measure_name(r.measure_name);
  if (r.existing_version) out.set_existing_version(*r.existing_version);
  out.set_original(std::string(m.value()));
  logger_->info("msg=\"record rejected\" reason={} partition={} offset={} measure={} detail=\"{}\"",
                v1::RejectReason_Name(r.reason), m.partition(), m.offset(), r.measure_name,
                r.message);
  return out.SerializeAsString();
}

absl::Status BatchLoop::PublishRejections(
    const std::vector<std::pair<std::string, std::string>>& records) {
  if (records.empty()) return absl::OkStatus();
  // Flush returns once nothing is queued, delivered or not: each record's own delivery report
  // says whether Kafka has it.
  struct Deliveries final : DeliverySink {
    void OnDelivery(rd_kafka_resp_err_t err) override {
      if (err) failed.store(err);
    }
    std::atomic<rd_kafka_resp_err_t> failed{RD_KAFKA_RESP_ERR_NO_ERROR};
  } deliveries;
  for (const auto& [key, value] : records) {
    if (absl::Status s =
            rejected_producer_.Produce(config_.rejected_topic, key, value, &deliveries);
        !s.ok()) {
      // Records already queued still report to `deliveries`; wait for them before it goes.
      rejected_producer_.Flush(absl::Minutes(1)).IgnoreError();
      return s;
    }
  }
  if (absl::Status s = rejected_producer_.Flush(absl::Minutes(1)); !s.ok()) {
    // Not all reported yet: `deliveries` must outlive them, so wait until they are.
    while (!rejected_producer_.Flush(absl::Seconds(10)).ok()) {
    }
    return s;
  }
  if (rd_kafka_resp_err_t err = deliveries.failed.load(); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("rejections not acknowledged by Kafka: ", rd_kafka_err2str(err)));
  }
  return absl::OkStatus();
}

}  // namespace tidemark::kafka
