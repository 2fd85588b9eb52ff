#include "services/archive/archive_core.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/archive/archive_sink.h"
#include "services/archive/lake.h"
#include "services/archive/replay.h"

namespace tidemark::archive {
namespace {

int64_t Us(int y, int mo, int d, int h, int mi = 0, int s = 0) {
  return absl::ToUnixMicros(
      absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone()));
}

TEST(HourPartition, HourBoundariesInUtc) {
  EXPECT_EQ(HourPartition(Us(2026, 11, 22, 2)), "year=2026/month=11/day=22/hour=02");
  EXPECT_EQ(HourPartition(Us(2026, 11, 22, 2, 59, 59) + 999'999),
            "year=2026/month=11/day=22/hour=02");
  EXPECT_EQ(HourPartition(Us(2026, 11, 22, 3)), "year=2026/month=11/day=22/hour=03");
  EXPECT_EQ(HourPartition(Us(2026, 12, 31, 23, 59, 59)), "year=2026/month=12/day=31/hour=23");
  EXPECT_EQ(HourPartition(Us(2027, 1, 1, 0)), "year=2027/month=01/day=01/hour=00");
}

TEST(HourPartition, LeapDaysAndYearsBefore2000AndTheEpoch) {
  EXPECT_EQ(HourPartition(Us(2024, 2, 29, 23, 30)), "year=2024/month=02/day=29/hour=23");
  EXPECT_EQ(HourPartition(Us(2024, 3, 1, 0)), "year=2024/month=03/day=01/hour=00");
  EXPECT_EQ(HourPartition(Us(1999, 12, 31, 23, 59)), "year=1999/month=12/day=31/hour=23");
  EXPECT_EQ(HourPartition(Us(1969, 12, 31, 23, 59)), "year=1969/month=12/day=31/hour=23");
  EXPECT_EQ(HourPartition(0), "year=1970/month=01/day=01/hour=00");
  EXPECT_EQ(HourPartition(-1), "year=1969/month=12/day=31/hour=23");
}

TEST(PartitionInstant, EventTimeIsUncorrectedAndArrivalIsTheIngestTime) {
  v1::Event e;
  // A device whose clock runs 3 h ahead of the ingest time: the writer stores it at the
  // ingest time, but the lake keeps the event in the hour its own clock says.
  e.set_time(Us(2026, 11, 22, 5) / 1000);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  e.set_ingest_time_us(Us(2026, 11, 22, 2, 10));
  EXPECT_EQ(HourPartition(*PartitionInstant(e, PartitionTime::kEvent)),
            "year=2026/month=11/day=22/hour=05");
  EXPECT_EQ(HourPartition(*PartitionInstant(e, PartitionTime::kArrival)),
            "year=2026/month=11/day=22/hour=02");
  e.set_time(INT64_MAX);
  e.set_time_unit(v1::TIME_UNIT_SECONDS);
  EXPECT_FALSE(PartitionInstant(e, PartitionTime::kEvent).ok());
}

TEST(FileName, SortsByOffset) {
  EXPECT_EQ(FileName("tidemark.raw", 3, 100, 199),
            "tidemark.raw-3-000000000100-000000000199.jsonl.gz");
  EXPECT_LT(FileName("tidemark.raw", 3, 99, 150), FileName("tidemark.raw", 3, 151, 160));
}

TEST(FileName, ParsesBackEvenWithDashesInTheTopic) {
  const std::optional<FileRange> r = ParseFileName(FileName("my-raw-topic", 11, 5, 1234567));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->topic, "my-raw-topic");
  EXPECT_EQ(r->partition, 11);
  EXPECT_EQ(r->first_offset, 5);
  EXPECT_EQ(r->last_offset, 1234567);
  EXPECT_FALSE(ParseFileName("tidemark.raw-3.json").has_value());
  EXPECT_FALSE(ParseFileName("x-1-2.jsonl.gz").has_value());
  EXPECT_FALSE(ParseFileName("t-a-1-2.jsonl.gz").has_value());
}

TEST(JsonLine, RoundTripsEveryFieldAndKeepsNumberTypes) {
  v1::Event e;
  e.set_device_id("turbine-0001");
  e.set_time(1'609'757'175'225);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_dimensions())["site"] = "north \"1\"";
  (*e.mutable_measures())["speed"].set_int64_value(60);
  (*e.mutable_measures())["temperature"].set_double_value(11.0);
  (*e.mutable_measures())["ok"].set_bool_value(true);
  (*e.mutable_measures())["state"].set_string_value("running");
  e.set_version(7);
  e.set_ingest_time_us(1'609'757'175'300'000);
  const std::string line = EventToJsonLine(e, {"tidemark.raw", 3, 42});
  EXPECT_NE(line.find("\"temperature\":11.0"), std::string::npos) << line;
  EXPECT_NE(line.find("\"speed\":60,"), std::string::npos) << line;
  EXPECT_NE(line.find("\"event_time\":\"2021-01-04T10:46:15.225000Z\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"offset\":42"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  absl::StatusOr<v1::Event> back = EventFromJsonLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString().size(), e.SerializeAsString().size());
  EXPECT_EQ(back->DebugString(), e.DebugString());
  EXPECT_FALSE(EventFromJsonLine("{\"device_id\": 1}").ok());
  EXPECT_FALSE(EventFromJsonLine("not json").ok());
}

// Found by fuzz_archive_json_line: a hand-edited or damaged lake line with a number beyond
// int64 used to wrap, or (a fraction beyond int64) convert with undefined behaviour.
// JSON has no NaN or infinity: such an event has no line (the archive rejects it), any other
// has one.
TEST(JsonLine, NoLineForANonFiniteMeasure) {
  v1::Event e;
  e.set_device_id("d");
  e.set_time(1);
  (*e.mutable_measures())["ok"].set_double_value(1.5);
  series::EventView view;
  view.Assign(e);
  EXPECT_FALSE(WhyNoJsonLine(view).has_value());
  for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    (*e.mutable_measures())["temperature"].set_double_value(bad);
    view.Assign(e);
    const std::optional<std::string> why = WhyNoJsonLine(view);
    ASSERT_TRUE(why.has_value()) << bad;
    EXPECT_NE(why->find("temperature"), std::string::npos) << *why;
  }
}

TEST(JsonLine, RefusesIntegersBeyondInt64AndFractionsWhereIntegersBelong) {
  const std::string head = R"({"device_id":"d","time_unit":"MILLISECONDS","dimensions":{},)";
  const auto line = [&](const std::string& time, const std::string& measure,
                        const std::string& ingest) {
    return head + R"("time":)" + time + R"(,"measures":{"m":)" + measure +
           R"(},"ingest_time_us":)" + ingest + "}";
  };
  ASSERT_TRUE(EventFromJsonLine(line("1", "-9223372036854775808", "9223372036854775807")).ok());
  EXPECT_FALSE(EventFromJsonLine(line("1.7953056e20", "1", "0")).ok());
  EXPECT_FALSE(EventFromJsonLine(line("1.5", "1", "0")).ok());
  EXPECT_FALSE(EventFromJsonLine(line("9223372036854775808", "1", "0")).ok());
  EXPECT_FALSE(EventFromJsonLine(line("1", "18446744073709551615", "0")).ok());
  EXPECT_FALSE(EventFromJsonLine(line("1", "1", "1e300")).ok());
}

TEST(JsonLine, EscapesControlCharactersAndReplacesBytesThatAreNotUtf8) {
  v1::Event e;
  // "\x01" "e": one literal "\x01e" would be the single byte 0x1e.
  e.set_device_id(
      std::string("a\"b\\c\nd\x01"
                  "e\0",
                  10));
  e.set_time(1);
  (*e.mutable_dimensions())["site"] = "M\xc3\xbcnchen \xe2\x82\xac \xf0\x9f\x98\x80";
  (*e.mutable_measures())["raw"].set_string_value("ok\xff\xed\xa0\x80!");
  (*e.mutable_measures())["big"].set_double_value(1e300);
  (*e.mutable_measures())["whole"].set_double_value(-3.0);
  const std::string line = EventToJsonLine(e, {"t", 0, 0});
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["device_id"], std::string("a\"b\\c\nd\x01"
                                        "e\0",
                                        10));
  EXPECT_EQ(j["dimensions"]["site"], "M\xc3\xbcnchen \xe2\x82\xac \xf0\x9f\x98\x80");
  // 0xFF, then a UTF-16 surrogate encoded in UTF-8 (3 bytes): each invalid byte is replaced.
  EXPECT_EQ(j["measures"]["raw"], "ok\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
  EXPECT_TRUE(j["measures"]["big"].is_number_float());
  EXPECT_EQ(j["measures"]["big"].get<double>(), 1e300);
  EXPECT_TRUE(j["measures"]["whole"].is_number_float());
  EXPECT_EQ(j["event_time"], "1970-01-01T00:00:00.001000Z");
}

TEST(Gzip, RoundTripsAndDetectsTruncation) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += "{\"device_id\":\"turbine-0001\",\"speed\":60}\n";
  const std::string gz = Gzip(text);
  EXPECT_LT(gz.size(), text.size() / 10);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic
  EXPECT_EQ(*Gunzip(gz), text);
  EXPECT_EQ(*Gunzip(gz + Gzip("more\n")), text + "more\n");  // concatenated members
  EXPECT_FALSE(Gunzip(gz.substr(0, gz.size() / 2)).ok());
}

// Lines of varied text, so that compression works and pieces end anywhere in a line.
std::string JsonLines(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) {
    text += absl::StrCat("{\"device_id\":\"turbine-", i % 997, "\",\"speed\":", i * 7 % 1013,
                         ",\"event_time\":\"2026-11-22T02:", i % 60, ":00Z\"}\n");
  }
  return text;
}

TEST(GzipFile, BelowTheCompressorThresholdIsGzipOfTheText) {
  const std::string text = JsonLines(100);
  ASSERT_LT(text.size(), GzipFile::kCompressFromBytes);
  GzipFile file(6);
  file.Append(text.substr(0, 17));
  file.Append(text.substr(17));
  EXPECT_EQ(file.Finish(), Gzip(text, 6));
  EXPECT_EQ(*Gunzip(GzipFile(6).Finish()), "");  // an empty file is still gzip
}

TEST(GzipFile, CompressedInPiecesIsGzipOfTheWholeText) {
  const std::string text = JsonLines(60'000);  // several MiB: the threshold, then many pieces
  ASSERT_GT(text.size(), GzipFile::kCompressFromBytes + 10 * GzipFile::kPieceBytes);
  for (int level : {1, 6, 9}) {
    GzipFile file(level);
    // Appends of every size from 1 byte to more than a piece.
    for (size_t at = 0, n = 1; at < text.size(); at += n, n = n * 3 % 100'003 + 1) {
      file.Append(absl::string_view(text).substr(at, n));
    }
    // Moved into a builder that was compressing: its compressor ends (LeakSanitizer checks).
    GzipFile moved(level);
    moved.Append(text);
    moved = std::move(file);
    const std::string gz = moved.Finish();
    EXPECT_EQ(*Gunzip(gz), text) << "level " << level;
    EXPECT_EQ(gz, Gzip(text, level)) << "level " << level;
  }
}

TEST(PendingBatches, EncodeDecode) {
  const std::vector<PendingBatch> batches = {
      {"tidemark.raw", 3, 100, 199, {"year=2026/month=11/day=22/hour=02/a.jsonl.gz"}},
      {"tidemark.raw", 3, 200, 250, {}}};
  absl::StatusOr<std::vector<PendingBatch>> back =
      DecodePendingBatches(EncodePendingBatches(batches));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].files, batches[0].files);
  EXPECT_EQ((*back)[1].first_offset, 200);
  EXPECT_FALSE((*back)[0].committed);
  PendingBatch committed = batches[0];
  committed.committed = true;
  back = DecodePendingBatches(EncodePendingBatches({committed}));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE((*back)[0].committed);
  EXPECT_FALSE(DecodePendingBatches("{}").ok());
  EXPECT_EQ(PendingPath("tidemark.raw", 3), "_pending/tidemark.raw-3.json");
}

TEST(ResumeRule, KeepsCommittedBatchesAndUndoesTheRest) {
  const PendingBatch b{"tidemark.raw", 0, 100, 199, {}};
  EXPECT_EQ(*DecideResume(b, 200), Resume::kKeepFiles);
  EXPECT_EQ(*DecideResume(b, 5000), Resume::kKeepFiles);
  // Crashed after the files, before the commit: consumed again from 100, maybe cut elsewhere.
  EXPECT_EQ(*DecideResume(b, 100), Resume::kDeleteFiles);
  // The commit of an earlier batch failed too: everything from 50 is consumed again.
  EXPECT_EQ(*DecideResume(b, 50), Resume::kDeleteFiles);
  // Never committed.
  EXPECT_EQ(*DecideResume(b, -1), Resume::kDeleteFiles);
  // A commit inside a batch cannot come from the archive.
  const absl::StatusOr<Resume> inside = DecideResume(b, 150);
  EXPECT_EQ(inside.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(inside.status().message().find("100 or 200"), absl::string_view::npos);
}

// A partition the group never committed starts at Kafka's earliest offset: its uncommitted
// batches may be undone only if they begin there.
TEST(ResumeRule, WithoutACommitBatchesMustBeginWhereConsumptionStarts) {
  // A new group's first batches (a commit that failed, then another batch): undone and redone.
  EXPECT_TRUE(CheckStartWithoutCommit("raw", 0, 100, 100).ok());
  EXPECT_TRUE(CheckStartWithoutCommit("raw", 0, INT64_MAX, 100).ok());  // nothing pending
  // The group archived everything before 100: its offsets were lost.
  absl::Status lost = CheckStartWithoutCommit("raw", 0, 100, 20);
  EXPECT_EQ(lost.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(lost.message().find("lost"), absl::string_view::npos) << lost;
  EXPECT_NE(lost.message().find("to 100 to resume"), absl::string_view::npos) << lost;
  // Kafka dropped records of an uncommitted batch: undoing it would lose them.
  absl::Status dropped = CheckStartWithoutCommit("raw", 0, 100, 150);
  EXPECT_EQ(dropped.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(dropped.message().find("no longer holds offsets 100 to 149"), absl::string_view::npos)
      << dropped;
  // Not knowing where consumption starts.
  EXPECT_EQ(CheckStartWithoutCommit("raw", 0, 100, -1).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Where the record says archiving resumes: after the last batch known committed, else at the
// first uncommitted batch.
TEST(ResumeRule, TheRecordResumesAfterItsCommittedBatch) {
  PendingBatch committed{"raw", 0, 100, 199, {}, /*committed=*/true};
  PendingBatch uncommitted{"raw", 0, 200, 299, {}};
  EXPECT_EQ(ResumeOffsetOf({committed, uncommitted}), 200);
  EXPECT_EQ(ResumeOffsetOf({uncommitted, committed}), 200);
  EXPECT_EQ(ResumeOffsetOf({committed}), 200);
  EXPECT_EQ(ResumeOffsetOf({uncommitted}), 200);
  uncommitted.first_offset = 150;
  EXPECT_EQ(ResumeOffsetOf({uncommitted}), 150);
  EXPECT_EQ(ResumeOffsetOf({}), INT64_MAX);
}

// Recovers partition raw/0 as an owner assigned it with `committed` (and Kafka's `earliest`)
// does before its first batch; the status of that batch (an empty one).
absl::Status RecoverRaw0(Lake& lake, ArchiveMetrics& metrics, int64_t committed,
                         int64_t earliest = -1) {
  ArchiveSink sink(lake, {}, metrics, spdlog::default_logger());
  sink.OnAssigned(
      {{.partition = {"raw", 0}, .committed_offset = committed, .earliest_offset = earliest}});
  return sink.Write({}).status();
}

// The pending record of partition raw/0.
absl::StatusOr<std::vector<PendingBatch>> RecordOfRaw0(Lake& lake) {
  absl::StatusOr<std::string> record = lake.Get(PendingPath("raw", 0));
  if (!record.ok()) return record.status();
  return DecodePendingBatches(*record);
}

// Recovering a partition keeps its committed batches in the pending record: if the group's
// offsets then expire while the partition is quiet, the next owner must still learn that the
// records before them are archived, rather than archive everything Kafka holds a second time.
TEST(ArchiveSink, RecoveryKeepsWhatTellsASuccessorThatOffsetsWereLost) {
  const std::string root = ::testing::TempDir() + "/recovery-lake-" + std::to_string(getpid());
  std::filesystem::remove_all(root);
  std::unique_ptr<Lake> lake = LocalLake(root);
  const std::string file = "year=2026/month=12/day=06/hour=10/" + FileName("raw", 0, 100, 199);
  ASSERT_TRUE(lake->Put(file, "archived").ok());
  ASSERT_TRUE(
      lake->Put(PendingPath("raw", 0), EncodePendingBatches({{"raw", 0, 100, 199, {file}}})).ok());
  metrics::Registry registry;
  ArchiveMetrics metrics(registry);

  // An owner that finds the batch committed keeps its file, and the record.
  ASSERT_TRUE(RecoverRaw0(*lake, metrics, /*committed=*/200).ok());
  EXPECT_TRUE(lake->Get(file).ok());
  absl::StatusOr<std::vector<PendingBatch>> pending = RecordOfRaw0(*lake);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].first_offset, 100);

  // The group's offsets expired; Kafka still holds the partition from offset 0.
  const absl::Status refused = RecoverRaw0(*lake, metrics, /*committed=*/-1, /*earliest=*/0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find("offsets were lost"), absl::string_view::npos) << refused;
  EXPECT_NE(refused.message().find("to 200 to resume"), absl::string_view::npos) << refused;
  EXPECT_TRUE(lake->Get(file).ok());

  // Kafka has since dropped everything the batch held: consumption from its earliest offset,
  // 200, is exactly where archiving stopped, and the batch's file stays.
  const absl::Status resumed = RecoverRaw0(*lake, metrics, /*committed=*/-1, /*earliest=*/200);
  EXPECT_TRUE(resumed.ok()) << resumed;
  EXPECT_TRUE(lake->Get(file).ok());
  std::filesystem::remove_all(root);
}

// A pending record that cannot be read is rebuilt from the lake's file names: the files from
// the committed offset on are undone, and the newest batch before it is kept in the record as
// committed, so that a successor without offsets still learns where archiving stood.
TEST(ArchiveSink, RecoveryFromAnUnreadableRecordKeepsTheNewestCommittedBatch) {
  const std::string root = ::testing::TempDir() + "/unreadable-lake-" + std::to_string(getpid());
  std::filesystem::remove_all(root);
  std::unique_ptr<Lake> lake = LocalLake(root);
  const std::string hour = "year=2026/month=12/day=06/hour=10/";
  const std::string older = hour + FileName("raw", 0, 0, 99);
  const std::string newest = hour + FileName("raw", 0, 100, 199);
  const std::string newest_next_hour =
      "year=2026/month=12/day=06/hour=11/" + FileName("raw", 0, 100, 199);
  const std::string uncommitted = hour + FileName("raw", 0, 200, 249);
  const std::string other_partition = hour + FileName("raw", 1, 0, 300);
  for (const std::string& f : {older, newest, newest_next_hour, uncommitted, other_partition}) {
    ASSERT_TRUE(lake->Put(f, "archived").ok());
  }
  ASSERT_TRUE(lake->Put(PendingPath("raw", 0), "[{\"topic\":\"raw\",\"partit").ok());
  metrics::Registry registry;
  ArchiveMetrics metrics(registry);

  ASSERT_TRUE(RecoverRaw0(*lake, metrics, /*committed=*/200).ok());
  EXPECT_FALSE(lake->Get(uncommitted).ok()) << "an uncommitted batch's file stayed";
  for (const std::string& f : {older, newest, newest_next_hour, other_partition}) {
    EXPECT_TRUE(lake->Get(f).ok()) << f;
  }
  absl::StatusOr<std::vector<PendingBatch>> pending = RecordOfRaw0(*lake);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_TRUE((*pending)[0].committed);
  EXPECT_EQ((*pending)[0].first_offset, 100);
  EXPECT_EQ((*pending)[0].last_offset, 199);
  EXPECT_EQ((*pending)[0].files.size(), 2u);

  // The group's offsets expired: the successor refuses to start over, naming where to resume.
  const absl::Status refused = RecoverRaw0(*lake, metrics, /*committed=*/-1, /*earliest=*/0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find("to 200 to resume"), absl::string_view::npos) << refused;

  // Offsets moved by hand into the newest batch, the record unreadable again: refused, as
  // with a readable record, and its files stay.
  ASSERT_TRUE(lake->Put(PendingPath("raw", 0), "[{\"topic\":\"raw\",\"partit").ok());
  const absl::Status inside = RecoverRaw0(*lake, metrics, /*committed=*/150);
  EXPECT_EQ(inside.code(), absl::StatusCode::kFailedPrecondition) << inside;
  EXPECT_NE(inside.message().find("moved by hand"), absl::string_view::npos) << inside;
  EXPECT_TRUE(lake->Get(newest).ok());
  std::filesystem::remove_all(root);
}

// A replay stopped by a shutdown signal (Ctrl-C on the runbook's command) sends nothing more and
// says it stopped, instead of running to the end of its range.
TEST(Replay, StopsWhenAskedAndSaysSo) {
  const std::string root = absl::StrCat(::testing::TempDir(), "/replay-stop-", getpid());
  std::unique_ptr<Lake> lake = LocalLake(root);
  v1::Event e;
  e.set_device_id("turbine-0001");
  e.set_time(1'609'757'175'225);
  e.set_time_unit(v1::TIME_UNIT_MILLISECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(11.0);
  e.set_ingest_time_us(1'609'757'175'300'000);
  const int64_t hour = 1'609'754'400'000'000;  // 2021-01-04T10:00Z
  ASSERT_TRUE(lake->Put(absl::StrCat(HourPartition(hour), "/", FileName("tidemark.raw", 0, 0, 0)),
                        Gzip(EventToJsonLine(e, {"tidemark.raw", 0, 0})))
                  .ok());
  // No broker: nothing may be produced, or the final flush would wait for minutes.
  auto producer = kafka::Producer::Create({.brokers = "127.0.0.1:1"}, spdlog::default_logger());
  ASSERT_TRUE(producer.ok()) << producer.status();
  DeliveryFailures failures;
  const std::atomic<bool> stop{true};
  ReplayRequest request;
  request.from_us = hour;
  request.to_us = hour + 3'600'000'000;
  request.topic = "tidemark.raw";
  absl::StatusOr<ReplayOutcome> outcome = Replay(*lake, **producer, failures, request, &stop);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->stopped);
  EXPECT_EQ(outcome->events, 0);
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace tidemark::archive
