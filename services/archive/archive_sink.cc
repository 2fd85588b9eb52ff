#include "services/archive/archive_sink.h"

#include "absl/strings/str_cat.h"

namespace tidemark::archive {

ArchiveMetrics::ArchiveMetrics(metrics::Registry& r)
    : events(r.AddCounter("tidemark_archive_events_total", "Events written to the lake")),
      files(r.AddCounter("tidemark_archive_files_total", "Files written to the lake")),
      bytes(r.AddCounter("tidemark_archive_bytes_total", "Compressed bytes written to the lake")),
      errors(r.AddCounter("tidemark_archive_errors_total", "Lake operations that failed")),
      files_undone(r.AddCounter("tidemark_archive_files_undone_total",
                                "Files of uncommitted batches deleted on recovery")),
      upload_latency(r.AddHistogram("tidemark_archive_upload_seconds",
                                    "Time to make one file durable in the lake")) {}

ArchiveSink::ArchiveSink(Lake& lake, ArchiveConfig config, ArchiveMetrics& metrics,
                         std::shared_ptr<spdlog::logger> logger)
    : lake_(lake), config_(config), metrics_(metrics), logger_(std::move(logger)) {}

void ArchiveSink::OnAssigned(const std::vector<kafka::AssignedPartition>& partitions) {
  for (const kafka::AssignedPartition& p : partitions) {
    to_recover_[p.partition] = p;
  }
}

void ArchiveSink::OnRevoked(const std::vector<kafka::TopicPartition>& partitions) {
  // The next owner recovers them from the pending record; recovering them here later could
  // undo batches that owner has written and committed since.
  for (const kafka::TopicPartition& tp : partitions) {
    to_recover_.erase(tp);
    uncommitted_.erase(tp);
    last_committed_.erase(tp);
    marks_unrecorded_.erase(tp);
  }
}

namespace {

// Makes `batch`, marked committed, the partition's last committed batch if it is newer than
// `last`; whether it did.
bool KeepIfNewer(std::optional<PendingBatch>& last, const PendingBatch& batch) {
  if (last && batch.last_offset <= last->last_offset) return false;
  last = batch;
  last->committed = true;
  return true;
}

}  // namespace

void ArchiveSink::OnCommitted(const std::map<kafka::TopicPartition, int64_t>& next_offsets) {
  for (const auto& [tp, next] : next_offsets) {
    auto it = uncommitted_.find(tp);
    if (it == uncommitted_.end()) continue;
    // A named copy: clang 14 cannot capture a structured binding.
    const int64_t next_offset = next;
    std::vector<PendingBatch>& pending = it->second;
    std::optional<PendingBatch>& last = last_committed_[tp];
    for (const PendingBatch& b : pending) {
      if (b.last_offset < next_offset && KeepIfNewer(last, b)) marks_unrecorded_.insert(tp);
    }
    std::erase_if(pending,
                  [next_offset](const PendingBatch& b) { return b.last_offset < next_offset; });
  }
}

void ArchiveSink::OnStopping() {
  for (const kafka::TopicPartition& tp : marks_unrecorded_) {
    if (absl::Status s =
            Put(PendingPath(tp.topic, tp.partition), EncodePendingBatches(RecordOf(tp)));
        !s.ok()) {
      // Safe: the record then names the batch as uncommitted, and a successor without
      // offsets refuses rather than guess.
      logger_->warn("msg=\"cannot record the last commit\" partition={} error=\"{}\"", tp.partition,
                    s.message());
    }
  }
  marks_unrecorded_.clear();
}

std::vector<PendingBatch> ArchiveSink::RecordOf(const kafka::TopicPartition& tp) const {
  std::vector<PendingBatch> record;
  if (auto it = last_committed_.find(tp); it != last_committed_.end() && it->second) {
    record.push_back(*it->second);
  }
  if (auto it = uncommitted_.find(tp); it != uncommitted_.end()) {
    record.insert(record.end(), it->second.begin(), it->second.end());
  }
  return record;
}

namespace {

// The loop reads INVALID_ARGUMENT as "the store refused these records" and would reject them
// one by one; a lake that refuses a request refuses it for every record, so the batch waits.
absl::Status AsBatchFailure(const absl::Status& s) {
  if (s.code() != absl::StatusCode::kInvalidArgument) return s;
  return absl::FailedPreconditionError(absl::StrCat("the lake refused a request: ", s.message()));
}

}  // namespace

absl::Status ArchiveSink::Put(const std::string& path, absl::string_view data) {
  const absl::Time start = absl::Now();
  absl::Status s = AsBatchFailure(lake_.Put(path, data));
  if (!s.ok()) {
    metrics_.errors.Add();
    logger_->warn("msg=\"lake write failed; the batch will be retried\" path={} error=\"{}\"", path,
                  s.message());
    return s;
  }
  metrics_.upload_latency.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  return s;
}

absl::Status ArchiveSink::DeleteFiles(const PendingBatch& batch) {
  for (const std::string& file : batch.files) {
    if (absl::Status s = AsBatchFailure(lake_.Delete(file)); !s.ok()) {
      metrics_.errors.Add();
      return s;
    }
    metrics_.files_undone.Add();
  }
  return absl::OkStatus();
}

absl::Status ArchiveSink::Recover(const kafka::TopicPartition& tp,
                                  const kafka::AssignedPartition& assigned) {
  const int64_t committed_offset = assigned.committed_offset;
  absl::StatusOr<std::string> record = lake_.Get(PendingPath(tp.topic, tp.partition));
  uncommitted_[tp].clear();
  last_committed_.erase(tp);
  marks_unrecorded_.erase(tp);
  if (absl::IsNotFound(record.status())) return absl::OkStatus();
  if (!record.ok()) {
    metrics_.errors.Add();
    return AsBatchFailure(record.status());
  }
  absl::StatusOr<std::vector<PendingBatch>> batches = DecodePendingBatches(*record);
  if (!batches.ok()) {
    // A store that lost part of the record (S3 never does; a crashed test store or a damaged
    // disk may): find the batches by name instead. Every file of this partition from the
    // committed offset on is uncommitted, by the same rule; the newest batch wholly before it
    // is committed, and stays in the record as such, as it would have.
    logger_->warn(
        "msg=\"pending record unreadable; listing the lake instead\" partition={}"
        " error=\"{}\"",
        tp.partition, batches.status().message());
    absl::StatusOr<std::vector<std::string>> files = lake_.List("year=");
    if (!files.ok()) {
      metrics_.errors.Add();
      return AsBatchFailure(files.status());
    }
    PendingBatch listed{tp.topic, tp.partition, INT64_MAX, INT64_MAX, {}};
    PendingBatch newest_committed{tp.topic, tp.partition, -1, -1, {}, /*committed=*/true};
    for (const std::string& file : *files) {
      const std::optional<FileRange> range = ParseFileName(file.substr(file.rfind('/') + 1));
      if (!range || range->topic != tp.topic || range->partition != tp.partition) continue;
      if (range->first_offset >= committed_offset) {
        listed.files.push_back(file);
        listed.first_offset = std::min(listed.first_offset, range->first_offset);
      } else if (range->last_offset >= committed_offset) {
        // Committed inside a file's batch: refused as with a readable record, rather than
        // archiving the rest of the batch a second time.
        const PendingBatch straddling{
            tp.topic, tp.partition, range->first_offset, range->last_offset, {file}};
        if (absl::StatusOr<Resume> resume = DecideResume(straddling, committed_offset);
            !resume.ok()) {
          return resume.status();
        }
      } else if (range->last_offset < committed_offset &&
                 range->last_offset >= newest_committed.last_offset) {
        if (range->last_offset > newest_committed.last_offset) newest_committed.files.clear();
        newest_committed.first_offset = range->first_offset;
        newest_committed.last_offset = range->last_offset;
        newest_committed.files.push_back(file);  // one file per hour the batch held
      }
    }
    if (committed_offset >= 0) listed.first_offset = committed_offset;
    batches = std::vector<PendingBatch>{};
    if (!newest_committed.files.empty()) batches->push_back(std::move(newest_committed));
    if (!listed.files.empty()) batches->push_back(std::move(listed));
  }
  // Without a committed offset consumption starts at Kafka's earliest offset, which the check
  // made sure is where the record resumes.
  int64_t start_offset = committed_offset;
  if (committed_offset < 0) {
    if (absl::Status s = CheckStartWithoutCommit(tp.topic, tp.partition, ResumeOffsetOf(*batches),
                                                 assigned.earliest_offset);
        !s.ok()) {
      return s;
    }
    start_offset = assigned.earliest_offset;
  }
  // Committed batches stay in the record, as they would after a batch of this owner: they
  // are what tells a successor that finds no committed offset (the group's offsets expired
  // while the partition was quiet) that the records before them are archived already. An
  // empty record would let it start over from Kafka's earliest offset and archive them twice.
  std::optional<PendingBatch>& last_committed = last_committed_[tp];
  for (const PendingBatch& b : *batches) {
    absl::StatusOr<Resume> resume = DecideResume(b, start_offset);
    if (!resume.ok()) return resume.status();
    if (*resume == Resume::kKeepFiles) {
      KeepIfNewer(last_committed, b);
      continue;
    }
    logger_->info("msg=\"undoing an uncommitted batch\" partition={} first={} last={} files={}",
                  tp.partition, b.first_offset, b.last_offset, b.files.size());
    if (absl::Status s = DeleteFiles(b); !s.ok()) return s;
  }
  return Put(PendingPath(tp.topic, tp.partition), EncodePendingBatches(RecordOf(tp)));
}

absl::Status ArchiveSink::Health() const {
  absl::MutexLock lock(&health_mu_);
  return health_;
}

namespace {

// One partition's share of a batch: its offset range and a gzip file per hour.
struct PartitionBatch {
  int64_t first = INT64_MAX, last = INT64_MIN;
  // Compressed as the lines come: a batch's text is about ten times its files.
  std::map<std::string, GzipFile> file_by_hour;
  int64_t events = 0;
};

// A batch made ready for the lake: its files, and the records that cannot be archived.
struct LakeBatch final : kafka::PreparedBatch {
  std::map<kafka::TopicPartition, PartitionBatch> partitions;
  std::vector<kafka::RecordRejection> rejections;
};

class LakeBatchBuilder final : public kafka::BatchBuilder {
 public:
  explicit LakeBatchBuilder(const ArchiveConfig& config)
      : config_(config), batch_(std::make_unique<LakeBatch>()) {}

  void Add(const kafka::Message& m) override {
    const size_t index = next_index_++;
    const kafka::TopicPartition tp{std::string(m.topic()), m.partition()};
    PartitionBatch& b = batch_->partitions[tp];
    b.first = std::min(b.first, m.offset());
    b.last = std::max(b.last, m.offset());
    absl::StatusOr<int64_t> instant = absl::InvalidArgumentError("");
    if (event_.Parse(m.value())) {
      // A replay from the lake: its events are in the lake already.
      if (event_.replayed()) return;
      instant = PartitionInstant(event_, config_.partition_by);
    }
    if (!instant.ok()) {
      batch_->rejections.push_back({index, v1::REJECT_REASON_UNDECODABLE,
                                    "record is not a tidemark.v1.Event with a valid time", "",
                                    std::nullopt});
      return;
    }
    if (std::optional<std::string> why = WhyNoJsonLine(event_)) {
      batch_->rejections.push_back(
          {index, v1::REJECT_REASON_NON_FINITE_NUMBER, *std::move(why), "", std::nullopt});
      return;
    }
    std::string line = EventToJsonLine(event_, {tp.topic, tp.partition, m.offset()});
    line += '\n';
    b.file_by_hour.try_emplace(HourPartition(*instant), config_.gzip_level)
        .first->second.Append(line);
    ++b.events;
  }

  std::unique_ptr<kafka::PreparedBatch> Finish() override { return std::move(batch_); }

 private:
  const ArchiveConfig config_;
  std::unique_ptr<LakeBatch> batch_;
  size_t next_index_ = 0;
  series::EventView event_;  // each record decoded in place, reusing its space
};

}  // namespace

std::unique_ptr<kafka::BatchBuilder> ArchiveSink::StartBatch() {
  return std::make_unique<LakeBatchBuilder>(config_);
}

std::unique_ptr<kafka::PreparedBatch> ArchiveSink::Prepare(
    const std::vector<const kafka::Message*>& records) {
  LakeBatchBuilder builder(config_);
  for (const kafka::Message* m : records) builder.Add(*m);
  return builder.Finish();
}

absl::StatusOr<std::vector<kafka::RecordRejection>> ArchiveSink::Write(
    const std::vector<const kafka::Message*>& records) {
  return WritePrepared(records, Prepare(records));
}

absl::StatusOr<std::vector<kafka::RecordRejection>> ArchiveSink::WritePrepared(
    const std::vector<const kafka::Message*>& records,
    std::unique_ptr<kafka::PreparedBatch> prepared) {
  if (prepared == nullptr) prepared = Prepare(records);
  absl::StatusOr<std::vector<kafka::RecordRejection>> result = WriteBatch(*prepared);
  absl::MutexLock lock(&health_mu_);
  health_ = result.ok() ? absl::OkStatus()
                        : absl::Status(result.status().code(),
                                       absl::StrCat("cannot write to the lake (retrying): ",
                                                    result.status().message()));
  return result;
}

absl::StatusOr<std::vector<kafka::RecordRejection>> ArchiveSink::WriteBatch(
    kafka::PreparedBatch& prepared) {
  LakeBatch& batch = static_cast<LakeBatch&>(prepared);
  // A partition is written only once what a predecessor left uncommitted is undone. Until
  // then the error makes the loop pause and retry the batch.
  for (auto it = to_recover_.begin(); it != to_recover_.end();) {
    if (absl::Status s = Recover(it->first, it->second); !s.ok()) return s;
    it = to_recover_.erase(it);
  }

  for (auto& [tp, b] : batch.partitions) {
    // Attempts of this very batch that failed midway left files named by other ranges.
    std::vector<PendingBatch>& pending = uncommitted_[tp];
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->first_offset < b.first) {
        ++it;
        continue;
      }
      if (absl::Status s = DeleteFiles(*it); !s.ok()) return s;
      it = pending.erase(it);
    }
    PendingBatch record{tp.topic, tp.partition, b.first, b.last, {}};
    for (const auto& [hour, file] : b.file_by_hour) {
      record.files.push_back(
          absl::StrCat(hour, "/", FileName(tp.topic, tp.partition, b.first, b.last)));
    }
    pending.push_back(record);
    if (absl::Status s =
            Put(PendingPath(tp.topic, tp.partition), EncodePendingBatches(RecordOf(tp)));
        !s.ok()) {
      return s;
    }
    marks_unrecorded_.erase(tp);
    size_t f = 0;
    for (auto& [hour, file] : b.file_by_hour) {
      const std::string gz = file.Finish();
      if (absl::Status s = Put(record.files[f++], gz); !s.ok()) return s;
      metrics_.files.Add();
      metrics_.bytes.Add(gz.size());
    }
    metrics_.events.Add(b.events);
  }
  return std::move(batch.rejections);
}

}  // namespace tidemark::archive
