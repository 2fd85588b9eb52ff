#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/series/event_view.h"
#include "tidemark/v1/event.pb.h"

namespace tidemark::archive {

/// Which time places an event in the lake's hour partitions.
enum class PartitionTime {
  /// The event's own time, uncorrected: late and clock-skewed data land in their true hour.
  kEvent,
  /// The time ingest accepted it, as Firehose partitions by arrival.
  kArrival,
};

/// "year=2026/month=11/day=22/hour=02": the hour of `time_us` in UTC, Hive-style.
std::string HourPartition(int64_t time_us);

/// The microsecond instant an event is partitioned by (of a decoded record, or a message).
absl::StatusOr<int64_t> PartitionInstant(const series::EventView& event, PartitionTime by);
absl::StatusOr<int64_t> PartitionInstant(const v1::Event& event, PartitionTime by);

/// A lake file holds the events of one Kafka partition's offsets [first, last] that fall in
/// one hour: "<topic>-<partition>-<first>-<last>.jsonl.gz", offsets zero-padded to 12 digits
/// so that names sort by offset.
std::string FileName(absl::string_view topic, int32_t partition, int64_t first, int64_t last);

/// What a file name says: the inverse of FileName (a topic may itself contain '-').
struct FileRange {
  std::string topic;
  int32_t partition = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
};
std::optional<FileRange> ParseFileName(absl::string_view name);

/// Where a record came from, archived beside the event so the lake can be traced to Kafka.
struct Origin {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
};

/// One JSON line for an event, with every field as sent (time in its unit, no clock
/// correction), an RFC 3339 `event_time` for queries, and its origin. Numbers keep their
/// type: int64 measures as JSON integers, doubles always with a fraction or exponent. A
/// decoded record and the message it decodes to give the same bytes.
std::string EventToJsonLine(const series::EventView& event, const Origin& origin);
/// Why `event` has no JSON line (a NaN or infinite measure: JSON has no such number), or
/// nothing. Ingest never accepts one; a record from another producer is rejected.
std::optional<std::string> WhyNoJsonLine(const series::EventView& event);
std::string EventToJsonLine(const v1::Event& event, const Origin& origin);

/// The event of a JSON line written by EventToJsonLine (for replay).
absl::StatusOr<v1::Event> EventFromJsonLine(absl::string_view line);

/// gzip (RFC 1952) at `level`, and back.
std::string Gzip(absl::string_view data, int level = 6);
absl::StatusOr<std::string> Gunzip(absl::string_view data);

/// One gzip file built a piece at a time, so that a batch holds its files compressed rather
/// than as text (JSON lines are about ten times their gzip). A compressor and the text waiting
/// for it hold about 0.4 MiB, so it starts only once there is kCompressFromBytes of text: a
/// batch spread over many hours keeps its small files as text, and a file holds at most its
/// gzip and 40 % of its text. The file is the same as Gzip of all the text at once.
class GzipFile {
 public:
  static constexpr size_t kCompressFromBytes = 1 << 20;
  /// Once compressing, text goes to the compressor in pieces of this much.
  static constexpr size_t kPieceBytes = 64 << 10;

  explicit GzipFile(int level = 6);
  GzipFile(GzipFile&&) noexcept;
  GzipFile& operator=(GzipFile&&) noexcept;
  ~GzipFile();

  void Append(absl::string_view text);
  /// The whole file; the builder is spent.
  std::string Finish();

 private:
  struct Compressor;
  void Compress(bool finish);

  int level_;
  std::string text_;  // not yet compressed
  std::string gzip_;  // compressed so far
  std::unique_ptr<Compressor> compressor_;
};

/// The files one batch writes for one Kafka partition. Recorded (durably) before any of the
/// files is written, so that a successor can undo a batch that was never committed.
struct PendingBatch {
  std::string topic;
  int32_t partition = 0;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  std::vector<std::string> files;
  /// Known to be committed when the record was written: the partition's last committed batch,
  /// kept so that a successor without committed offsets still learns where archiving stood.
  bool committed = false;
};
/// The batches of one partition not known to be committed, as one JSON document.
std::string EncodePendingBatches(const std::vector<PendingBatch>& batches);
absl::StatusOr<std::vector<PendingBatch>> DecodePendingBatches(absl::string_view json);
/// "_pending/<topic>-<partition>.json": one per partition, rewritten before each batch with
/// every batch of it whose commit has not been confirmed.
std::string PendingPath(absl::string_view topic, int32_t partition);

/// The resume rule, for each pending batch of a partition. Offsets are committed only after
/// every file of a batch is durable, and batches are contiguous, so the committed offset is
/// always a batch boundary:
/// - committed > last_offset: the batch is committed; its files stay.
/// - committed <= first_offset (or never committed): the batch will be consumed again, maybe
///   cut differently, so its files must go before anything is rewritten.
/// Anything else means the lake and the group disagree (e.g. offsets reset by hand): refused.
enum class Resume { kKeepFiles, kDeleteFiles };
absl::StatusOr<Resume> DecideResume(const PendingBatch& batch, int64_t committed_offset);

/// For a partition without a committed offset, where its record says archiving resumes: after
/// the last batch known committed if there is one, else at the first uncommitted batch (or, if
/// the record is unreadable, file), INT64_MAX when the record holds nothing.
int64_t ResumeOffsetOf(const std::vector<PendingBatch>& batches);

/// For a partition the group never committed, whose record says archiving resumes at
/// `resume_offset` (ResumeOffsetOf), and where consumption starts: Kafka's earliest offset
/// (-1: unknown). OK only when the two agree, as for a new group's first batches, or when the
/// record holds nothing. Resuming after it means the group archived what came before and its
/// offsets were lost (expired after offsets.retention.minutes, or deleted): starting over
/// would archive it all twice. Resuming before it means Kafka dropped records that were never
/// archived (or that undoing an uncommitted batch would lose). Both are refused, naming the
/// offset to set, as is not knowing.
absl::Status CheckStartWithoutCommit(absl::string_view topic, int32_t partition,
                                     int64_t resume_offset, int64_t earliest_offset);

}  // namespace tidemark::archive
