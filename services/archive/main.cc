// archive: every original event of tidemark.raw into a data lake partitioned by event hour,
// exactly once; and `archive replay`, which reads a range of the lake back into the raw topic.
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/kafka/batch_loop.h"
#include "common/log/log.h"
#include "common/metrics/health.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "common/process/stop_flag.h"
#include "services/archive/archive_sink.h"
#include "services/archive/lake_factory.h"
#include "services/archive/replay.h"

ABSL_FLAG(std::string, lake, "/var/lib/tidemark/lake",
          "Where files go: a local directory, or s3://bucket/prefix (see --s3_endpoint)");
ABSL_FLAG(std::string, s3_endpoint, "https://s3.us-east-1.amazonaws.com",
          "s3:// lakes: scheme, host and port of the S3-compatible service");
ABSL_FLAG(std::string, s3_region, "us-east-1", "s3:// lakes: region, for request signing");
ABSL_FLAG(bool, s3_path_style, false,
          "s3:// lakes: endpoint/bucket/key addressing (MinIO and most self-hosted stores)");
ABSL_FLAG(std::string, partition_by, "event",
          "event: hour of the event's own time; arrival: hour ingest accepted it (Firehose)");
ABSL_FLAG(std::string, raw_topic, "tidemark.raw", "Kafka topic of accepted events");
ABSL_FLAG(std::string, rejected_topic, "tidemark.rejected", "Where undecodable records go");
ABSL_FLAG(std::string, group_id, "tidemark-archive", "Consumer group");
ABSL_FLAG(absl::Duration, batch_max_age, absl::Minutes(5),
          "Files are cut at least this often (Firehose's buffering interval)");
ABSL_FLAG(int64_t, batch_max_bytes, 64 << 20,
          "... or when the batch's events reach this many bytes (Firehose's buffering size)");
ABSL_FLAG(int, batch_max_records, 1'000'000, "... or this many events");
ABSL_FLAG(int, gzip_level, 6, "gzip compression level, 1 (fast) to 9 (small)");
ABSL_FLAG(std::string, from, "", "replay: range start, RFC 3339");
ABSL_FLAG(std::string, to, "", "replay: range end (exclusive), RFC 3339");
ABSL_FLAG(std::string, device, "", "replay: only this device id");

namespace {

using namespace tidemark;

absl::StatusOr<archive::PartitionTime> PartitionBy() {
  const std::string by = absl::GetFlag(FLAGS_partition_by);
  if (by == "event") return archive::PartitionTime::kEvent;
  if (by == "arrival") return archive::PartitionTime::kArrival;
  return absl::InvalidArgumentError(
      absl::StrCat("partition_by: \"", by, "\" is neither event nor arrival"));
}

absl::StatusOr<int64_t> FlagTime(const char* name, const std::string& text) {
  absl::Time t;
  std::string err;
  if (text.empty() || !absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected an RFC 3339 time such as 2026-11-22T02:00:00Z"));
  }
  return absl::ToUnixMicros(t);
}

int RunReplay(process::ShutdownSignal& shutdown, archive::Lake& lake, archive::PartitionTime by,
              spdlog::logger& logger, std::shared_ptr<spdlog::logger> shared_logger) {
  archive::ReplayRequest req;
  absl::StatusOr<int64_t> from = FlagTime("from", absl::GetFlag(FLAGS_from));
  absl::StatusOr<int64_t> to = FlagTime("to", absl::GetFlag(FLAGS_to));
  for (const absl::Status& s : {from.status(), to.status()}) {
    if (!s.ok()) {
      logger.critical("msg=\"{}\"", s.message());
      return 2;
    }
  }
  req.from_us = *from;
  req.to_us = *to;
  if (!absl::GetFlag(FLAGS_device).empty()) req.device_id = absl::GetFlag(FLAGS_device);
  req.partition_by = by;
  req.topic = absl::GetFlag(FLAGS_raw_topic);
  archive::DeliveryFailures failures;  // outlives the producer and its queued records
  auto producer = kafka::Producer::Create(
      {.brokers = absl::GetFlag(FLAGS_kafka_brokers), .delivery_timeout = absl::Seconds(60)},
      shared_logger);
  if (!producer.ok()) {
    logger.critical("msg=\"{}\"", producer.status().message());
    return 2;
  }
  // SIGTERM or Ctrl-C stops the replay at the next event, once what was sent is acknowledged.
  process::StopFlag stop(shutdown, logger);
  absl::StatusOr<archive::ReplayOutcome> outcome =
      archive::Replay(lake, **producer, failures, req, &stop.flag());
  if (!outcome.ok()) {
    logger.critical("msg=\"replay failed\" error=\"{}\"", outcome.status().message());
    return 1;
  }
  if (outcome->stopped) {
    logger.warn(
        "msg=\"replay stopped before the end of the range; replay it again to finish (what is "
        "already stored does not change)\" files={} events={} topic={}",
        outcome->files, outcome->events, req.topic);
    std::printf("{\"files\": %ld, \"events\": %ld, \"stopped\": true}\n", outcome->files,
                outcome->events);
    return 1;
  }
  logger.info("msg=\"replayed\" files={} events={} topic={}", outcome->files, outcome->events,
              req.topic);
  std::printf("{\"files\": %ld, \"events\": %ld}\n", outcome->files, outcome->events);
  return 0;
}

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("archive");
  auto args = config::ParseFlagsAndEnvironment(
      argc, argv,
      "tidemark archive [replay --from=RFC3339 --to=RFC3339 [--device=ID]] [--lake=DIR|s3://...]",
      logger.get());
  if (!args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  absl::StatusOr<archive::PartitionTime> by = PartitionBy();
  const int gzip_level = absl::GetFlag(FLAGS_gzip_level);
  for (absl::Status s :
       {by.status(), config::RequireNonEmpty("lake", absl::GetFlag(FLAGS_lake)),
        config::RequirePositive("batch_max_age", absl::GetFlag(FLAGS_batch_max_age)),
        config::RequirePositive("batch_max_bytes", absl::GetFlag(FLAGS_batch_max_bytes)),
        config::RequirePositive("batch_max_records", absl::GetFlag(FLAGS_batch_max_records)),
        config::RequireTopicName("raw_topic", absl::GetFlag(FLAGS_raw_topic)),
        config::RequireTopicName("rejected_topic", absl::GetFlag(FLAGS_rejected_topic)),
        config::RequireNonEmpty("group_id", absl::GetFlag(FLAGS_group_id)),
        gzip_level >= 1 && gzip_level <= 9 ? absl::OkStatus()
                                           : absl::InvalidArgumentError(absl::StrCat(
                                                 "bad setting --gzip_level (TIDEMARK_GZIP_LEVEL)=",
                                                 gzip_level, ": must be 1 (fast) to 9 (small)"))}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }
  absl::StatusOr<std::unique_ptr<archive::Lake>> lake = archive::OpenLake(
      absl::GetFlag(FLAGS_lake), {.endpoint = absl::GetFlag(FLAGS_s3_endpoint),
                                  .region = absl::GetFlag(FLAGS_s3_region),
                                  .path_style = absl::GetFlag(FLAGS_s3_path_style)});
  if (!lake.ok()) {
    logger->critical("msg=\"{}\"", lake.status().message());
    return 2;
  }
  if (args->size() == 1 && (*args)[0] == "replay")
    return RunReplay(shutdown, **lake, *by, *logger, logger);
  if (!args->empty()) {
    logger->critical("msg=\"unknown command {}; the only command is replay\"", (*args)[0]);
    return 2;
  }

  metrics::Registry registry;
  archive::ArchiveMetrics archive_metrics(registry);
  archive::ArchiveSink sink(**lake, {.partition_by = *by, .gzip_level = gzip_level},
                            archive_metrics, logger);
  auto producer = kafka::Producer::Create({.brokers = absl::GetFlag(FLAGS_kafka_brokers)}, logger);
  if (!producer.ok()) {
    logger->critical("msg=\"{}\"", producer.status().message());
    return 2;
  }
  kafka::BatchLoopConfig cfg;
  cfg.name = "raw";
  cfg.service = "archive";
  cfg.rejected_topic = absl::GetFlag(FLAGS_rejected_topic);
  cfg.batch_max_records = static_cast<size_t>(absl::GetFlag(FLAGS_batch_max_records));
  cfg.batch_max_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_batch_max_bytes));
  cfg.batch_max_age = absl::GetFlag(FLAGS_batch_max_age);
  // Consumption goes on while a batch is compressed and uploaded (seconds for a large one),
  // instead of the lag jumping by that much input at every file; two batches are then held.
  cfg.overlap_store = true;
  kafka::BatchLoopMetrics loop_metrics(registry, "tidemark_archive", "raw");
  kafka::BatchLoop loop(cfg, sink, **producer, loop_metrics, logger);
  auto consumer = kafka::Consumer::Create({.brokers = absl::GetFlag(FLAGS_kafka_brokers),
                                           .group_id = absl::GetFlag(FLAGS_group_id),
                                           .topics = {absl::GetFlag(FLAGS_raw_topic)}},
                                          logger, &loop);
  if (!consumer.ok()) {
    logger->critical("msg=\"{}\"", consumer.status().message());
    return 2;
  }
  // Serving while Kafka answers and the lake takes writes.
  metrics::HealthMonitor health(
      [&producer = **producer, &sink]() -> absl::Status {
        if (absl::Status s = producer.Health(); !s.ok()) return s;
        return sink.Health();
      },
      registry, logger);
  auto metrics_server = metrics::MetricsServer::Start(registry, absl::GetFlag(FLAGS_metrics_host),
                                                      absl::GetFlag(FLAGS_metrics_port),
                                                      [&health] { return health.Current(); });
  if (!metrics_server.ok()) {
    logger->critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  process::StopFlag stop(shutdown, *logger);
  logger->info("msg=\"archiving\" topic={} lake={} partition_by={} group={} metrics_port={}",
               absl::GetFlag(FLAGS_raw_topic), (*lake)->Describe(),
               absl::GetFlag(FLAGS_partition_by), absl::GetFlag(FLAGS_group_id),
               (*metrics_server)->port());
  // On SIGTERM the loop writes what it holds and commits it before returning.
  const absl::Status result = loop.Run(**consumer, stop.flag());
  if (!result.ok()) {
    logger->critical("msg=\"stopped on a fatal error\" error=\"{}\"", result.message());
    return 1;
  }
  return process::ShutdownSignal::ExitCode();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
