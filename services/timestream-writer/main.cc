// timestream-writer: stores raw points from tidemark.raw in PostgreSQL.
#include <atomic>
#include <thread>

#include "absl/flags/flag.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "services/timestream-writer/point_store.h"
#include "services/timestream-writer/writer_service.h"

ABSL_FLAG(std::string, raw_topic, "tidemark.raw", "Kafka topic of accepted events");
ABSL_FLAG(std::string, rejected_topic, "tidemark.rejected",
          "Kafka topic records the store refuses go to");
ABSL_FLAG(std::string, group_id, "tidemark-timestream-writer", "Kafka consumer group");
ABSL_FLAG(int, batch_max_records, 5000, "Records per store batch at most");
ABSL_FLAG(absl::Duration, batch_max_age, absl::Milliseconds(200),
          "A batch is written once its first record is this old");
ABSL_FLAG(absl::Duration, future_clock_lead, absl::Minutes(15),
          "Points further ahead of their ingest time are stored at the ingest time");
ABSL_FLAG(absl::Duration, raw_retention, absl::Hours(24 * 7),
          "Raw points older than this are dropped with their daily partition");
ABSL_FLAG(absl::Duration, partitions_ahead, absl::Hours(72),
          "Daily partitions are created this far ahead of now");

namespace {

using namespace tidemark;

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("timestream-writer");
  if (auto args = config::ParseFlagsAndEnvironment(argc, argv, "tidemark timestream-writer");
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  writer::WriterConfig cfg;
  cfg.rejected_topic = absl::GetFlag(FLAGS_rejected_topic);
  cfg.batch_max_records = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_batch_max_records)));
  cfg.batch_max_age = absl::GetFlag(FLAGS_batch_max_age);
  cfg.future_clock_lead = absl::GetFlag(FLAGS_future_clock_lead);
  cfg.raw_retention = absl::GetFlag(FLAGS_raw_retention);
  for (absl::Status s :
       {config::RequirePositive("batch_max_records", absl::GetFlag(FLAGS_batch_max_records)),
        config::RequirePositive("batch_max_age", cfg.batch_max_age),
        config::RequirePositive("future_clock_lead", cfg.future_clock_lead),
        config::RequirePositive("raw_retention", cfg.raw_retention),
        config::RequireNonEmpty("pg_dsn", absl::GetFlag(FLAGS_pg_dsn))}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }

  // Watch for SIGTERM from the start: opening the store may wait for PostgreSQL.
  std::atomic<bool> stop{false};
  std::thread signal_watcher([&] {
    const int sig = shutdown.Wait();
    logger->info("msg=\"shutting down\" signal={}", sig);
    stop = true;
  });
  struct JoinOnExit {
    std::thread& t;
    ~JoinOnExit() {
      process::ShutdownSignal::RequestStop();
      t.join();
    }
  } join_watcher{signal_watcher};

  metrics::Registry registry;
  writer::WriterMetrics metrics(registry);
  writer::PointStore store(absl::GetFlag(FLAGS_pg_dsn), absl::GetFlag(FLAGS_partitions_ahead));
  // The schema must exist before consuming; wait for PostgreSQL rather than exit.
  for (absl::Duration delay = absl::Milliseconds(200);;
       delay = std::min(delay * 2, absl::Seconds(5))) {
    absl::Status s = store.Open(*logger);
    if (s.ok()) break;
    logger->warn("msg=\"cannot open the store; retrying\" error=\"{}\"", s.message());
    for (absl::Time until = absl::Now() + delay; absl::Now() < until && !stop.load();) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    if (stop.load()) return 0;
  }

  kafka::ProducerConfig producer_config;
  producer_config.brokers = absl::GetFlag(FLAGS_kafka_brokers);
  auto producer = kafka::Producer::Create(producer_config, logger);
  if (!producer.ok()) {
    logger->critical("msg=\"{}\"", producer.status().message());
    return 2;
  }
  writer::WriterLoop loop(cfg, store, **producer, metrics, logger);
  auto consumer = kafka::Consumer::Create({.brokers = absl::GetFlag(FLAGS_kafka_brokers),
                                           .group_id = absl::GetFlag(FLAGS_group_id),
                                           .topics = {absl::GetFlag(FLAGS_raw_topic)}},
                                          logger, &loop);
  if (!consumer.ok()) {
    logger->critical("msg=\"{}\"", consumer.status().message());
    return 2;
  }
  auto metrics_server = metrics::MetricsServer::Start(
      registry, absl::GetFlag(FLAGS_metrics_host), absl::GetFlag(FLAGS_metrics_port));
  if (!metrics_server.ok()) {
    logger->critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  logger->info("msg=\"consuming\" topic={} group={} metrics_port={}",
               absl::GetFlag(FLAGS_raw_topic), absl::GetFlag(FLAGS_group_id),
               (*metrics_server)->port());

  const absl::Status result = loop.Run(**consumer, stop);
  if (!result.ok()) {
    logger->critical("msg=\"stopped on a fatal error\" error=\"{}\"", result.message());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
