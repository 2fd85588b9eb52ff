// timestream-writer: stores raw points, window aggregates and late-point repairs in PostgreSQL.
#include <atomic>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/health.h"
#include "common/metrics/metrics.h"
#include "common/pg/health_probe.h"
#include "common/pg/pg.h"
#include "common/process/shutdown_signal.h"
#include "common/process/stop_flag.h"
#include "common/retry/backoff.h"
#include "services/timestream-writer/aggregate_store.h"
#include "services/timestream-writer/incarnation.h"
#include "services/timestream-writer/maintenance.h"
#include "services/timestream-writer/point_store.h"
#include "services/timestream-writer/writer_service.h"

ABSL_FLAG(std::string, raw_topic, "tidemark.raw", "Kafka topic of accepted events");
ABSL_FLAG(std::string, aggregates_topic, "tidemark.aggregates", "Kafka topic of aggregates");
ABSL_FLAG(std::string, late_topic, "tidemark.late", "Kafka topic of points beyond lateness");
ABSL_FLAG(std::string, rejected_topic, "tidemark.rejected",
          "Kafka topic records the store refuses go to");
ABSL_FLAG(std::string, group_id, "tidemark-timestream-writer",
          "Kafka consumer group (the aggregate and repair loops append -aggregates, -late)");
ABSL_FLAG(int, batch_max_records, 5000, "Records per store batch at most");
ABSL_FLAG(absl::Duration, batch_max_age, absl::Milliseconds(200),
          "A batch is written once its first record is this old");
ABSL_FLAG(absl::Duration, future_clock_lead, absl::Minutes(15),
          "Points further ahead of their ingest time are stored at the ingest time");
ABSL_FLAG(absl::Duration, raw_retention, absl::Hours(24 * 7),
          "Raw points older than this are dropped with their daily partition");
ABSL_FLAG(absl::Duration, aggregate_retention, absl::Hours(24 * 400),
          "Aggregates older than this are dropped with their daily partition");
ABSL_FLAG(absl::Duration, subscription_retention, absl::Hours(24),
          "How long stored aggregate versions stay in the change log subscriptions resume from");
ABSL_FLAG(absl::Duration, partitions_ahead, absl::Hours(72),
          "Daily partitions are created this far ahead of now");

namespace {

using namespace tidemark;

// One consumer loop on its own thread: raw points, aggregates, or repairs.
struct LoopRunner {
  std::unique_ptr<kafka::BatchLoopMetrics> metrics;
  std::unique_ptr<kafka::BatchLoop> loop;
  std::unique_ptr<kafka::Consumer> consumer;
  absl::Status result;
  std::thread thread;
};

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("timestream-writer");
  if (auto args =
          config::ParseFlagsAndEnvironment(argc, argv, "tidemark timestream-writer", logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  for (absl::Status s :
       {config::RequirePositive("batch_max_records", absl::GetFlag(FLAGS_batch_max_records)),
        config::RequirePositive("batch_max_age", absl::GetFlag(FLAGS_batch_max_age)),
        config::RequirePositive("future_clock_lead", absl::GetFlag(FLAGS_future_clock_lead)),
        config::RequirePositive("raw_retention", absl::GetFlag(FLAGS_raw_retention)),
        config::RequirePositive("aggregate_retention", absl::GetFlag(FLAGS_aggregate_retention)),
        config::RequirePositive("subscription_retention",
                                absl::GetFlag(FLAGS_subscription_retention)),
        config::RequirePositive("partitions_ahead", absl::GetFlag(FLAGS_partitions_ahead)),
        config::RequireTopicName("raw_topic", absl::GetFlag(FLAGS_raw_topic)),
        config::RequireTopicName("aggregates_topic", absl::GetFlag(FLAGS_aggregates_topic)),
        config::RequireTopicName("late_topic", absl::GetFlag(FLAGS_late_topic)),
        config::RequireTopicName("rejected_topic", absl::GetFlag(FLAGS_rejected_topic)),
        config::RequireNonEmpty("group_id", absl::GetFlag(FLAGS_group_id)),
        config::RequireNonEmpty("pg_dsn", absl::GetFlag(FLAGS_pg_dsn))}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }

  // Watch for SIGTERM from the start: opening the store may wait for PostgreSQL.
  process::StopFlag stop(shutdown, *logger);

  // The password may come from a file (a Docker secret); it is never logged.
  const absl::StatusOr<std::string> dsn_or =
      pg::DsnWithPasswordFile(absl::GetFlag(FLAGS_pg_dsn), absl::GetFlag(FLAGS_pg_password_file));
  if (!dsn_or.ok()) {
    logger->critical("msg=\"{}\"", dsn_or.status().message());
    return 2;
  }
  const std::string& dsn = *dsn_or;
  logger->info("msg=\"store\" dsn=\"{}\"", pg::RedactDsn(dsn));

  // Metrics and health from the start: a writer waiting for PostgreSQL or Kafka is up and
  // NOT_SERVING (saying what it waits for), not a replica that looks down. The writer does
  // its job once started, while Kafka and PostgreSQL answer and every loop runs.
  metrics::Registry registry;
  absl::Mutex start_mu;
  std::string waiting_for = "starting: opening the store";  // guarded by start_mu
  kafka::Producer* started_producer = nullptr;              // guarded by start_mu; set once running
  std::atomic<int> loops_stopped{0};
  pg::HealthProbe pg_probe(dsn);
  metrics::HealthMonitor health(
      [&]() -> absl::Status {
        {
          // Held while the producer is used: it is destroyed after the pointer is cleared.
          absl::MutexLock lock(&start_mu);
          if (started_producer == nullptr) return absl::UnavailableError(waiting_for);
          if (loops_stopped.load() > 0) return absl::UnavailableError("a consumer loop stopped");
          if (absl::Status s = started_producer->Health(); !s.ok()) return s;
        }
        return pg_probe.Check();
      },
      [&pg_probe] { pg_probe.Interrupt(); }, registry, logger);
  auto metrics_server = metrics::MetricsServer::Start(registry, absl::GetFlag(FLAGS_metrics_host),
                                                      absl::GetFlag(FLAGS_metrics_port),
                                                      [&health] { return health.Current(); });
  if (!metrics_server.ok()) {
    logger->critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  logger->info("msg=\"starting\" metrics_port={}", (*metrics_server)->port());

  const absl::Duration ahead = absl::GetFlag(FLAGS_partitions_ahead);
  writer::PointStore points(dsn, ahead);
  // The schema must exist before consuming; wait for PostgreSQL rather than exit.
  for (retry::Backoff backoff({.initial = absl::Milliseconds(200)});;) {
    absl::Status s = points.Open(*logger);
    if (s.ok()) break;
    logger->warn("msg=\"cannot open the store; retrying\" error=\"{}\"", s.message());
    {
      absl::MutexLock lock(&start_mu);
      waiting_for = absl::StrCat("starting: opening the store: ", s.message());
    }
    if (!retry::SleepUnlessStopped(backoff.Next(), stop.flag())) return 0;
  }
  // Kafka may have lost history the store holds (the development broker restarted empty);
  // aggregate versions then continue in a new incarnation. Before any loop consumes.
  for (retry::Backoff backoff({.initial = absl::Milliseconds(200)});;) {
    absl::Status s = writer::CheckKafkaIncarnation(absl::GetFlag(FLAGS_kafka_brokers),
                                                   absl::GetFlag(FLAGS_group_id),
                                                   absl::GetFlag(FLAGS_raw_topic), dsn, *logger);
    if (s.ok()) break;
    logger->warn("msg=\"cannot compare the store with Kafka; retrying\" error=\"{}\"", s.message());
    {
      absl::MutexLock lock(&start_mu);
      waiting_for = absl::StrCat("starting: comparing the store with Kafka: ", s.message());
    }
    if (!retry::SleepUnlessStopped(backoff.Next(), stop.flag())) return 0;
  }
  const absl::Duration change_retention = absl::GetFlag(FLAGS_subscription_retention);
  writer::AggregateStore aggregates(dsn, ahead, change_retention);
  writer::AggregateStore repairs(dsn, ahead, change_retention);

  writer::RawPointSink raw_sink(points, absl::GetFlag(FLAGS_future_clock_lead),
                                absl::GetFlag(FLAGS_raw_retention), registry);
  writer::AggregateSink aggregate_sink(aggregates, registry);
  writer::RepairSink repair_sink(repairs, registry);

  // Partition upkeep on connections of its own, so that storing never waits behind a detach.
  writer::PointStore points_upkeep(dsn, ahead);
  writer::AggregateStore aggregates_upkeep(dsn, ahead, change_retention);
  const absl::Duration raw_retention = absl::GetFlag(FLAGS_raw_retention);
  const absl::Duration aggregate_retention = absl::GetFlag(FLAGS_aggregate_retention);
  writer::Maintenance maintenance(
      {{"points", [&] { return points_upkeep.MaintainPartitions(raw_retention).status(); }},
       {"aggregates",
        [&] { return aggregates_upkeep.MaintainPartitions(aggregate_retention).status(); }}},
      {}, registry, logger);

  kafka::ProducerConfig producer_config;
  producer_config.brokers = absl::GetFlag(FLAGS_kafka_brokers);
  auto producer = kafka::Producer::Create(producer_config, logger);
  if (!producer.ok()) {
    logger->critical("msg=\"{}\"", producer.status().message());
    return 2;
  }

  const std::string group = absl::GetFlag(FLAGS_group_id);
  struct LoopSpec {
    std::string name, topic, group;
    kafka::BatchSink* sink;
  };
  const std::vector<LoopSpec> specs = {
      {"raw", absl::GetFlag(FLAGS_raw_topic), group, &raw_sink},
      {"aggregates", absl::GetFlag(FLAGS_aggregates_topic), group + "-aggregates", &aggregate_sink},
      {"late", absl::GetFlag(FLAGS_late_topic), group + "-late", &repair_sink},
  };
  std::vector<std::unique_ptr<LoopRunner>> runners;
  for (const LoopSpec& spec : specs) {
    auto r = std::make_unique<LoopRunner>();
    kafka::BatchLoopConfig cfg;
    cfg.name = spec.name;
    cfg.rejected_topic = absl::GetFlag(FLAGS_rejected_topic);
    cfg.batch_max_records = static_cast<size_t>(absl::GetFlag(FLAGS_batch_max_records));
    cfg.batch_max_age = absl::GetFlag(FLAGS_batch_max_age);
    // Raw batches are decoded while the previous one is stored.
    cfg.overlap_store = spec.sink == &raw_sink;
    r->metrics = std::make_unique<kafka::BatchLoopMetrics>(registry, "tidemark_writer", spec.name);
    r->loop = std::make_unique<kafka::BatchLoop>(cfg, *spec.sink, **producer, *r->metrics, logger);
    auto consumer = kafka::Consumer::Create({.brokers = absl::GetFlag(FLAGS_kafka_brokers),
                                             .group_id = spec.group,
                                             .topics = {spec.topic}},
                                            logger, r->loop.get());
    if (!consumer.ok()) {
      logger->critical("msg=\"{}\"", consumer.status().message());
      return 2;
    }
    r->consumer = *std::move(consumer);
    runners.push_back(std::move(r));
  }
  {
    absl::MutexLock lock(&start_mu);
    started_producer = producer->get();
  }
  logger->info("msg=\"consuming\" raw={} aggregates={} late={} group={} metrics_port={}",
               specs[0].topic, specs[1].topic, specs[2].topic, group, (*metrics_server)->port());
  maintenance.Start();
  for (auto& r : runners) {
    LoopRunner* raw = r.get();
    raw->thread = std::thread([raw, &stop, &loops_stopped] {
      raw->result = raw->loop->Run(*raw->consumer, stop.flag());
      ++loops_stopped;
      // One loop failing stops the process: a restart resumes every loop from its commits.
      if (!raw->result.ok()) process::ShutdownSignal::RequestStop();
    });
  }
  for (auto& r : runners) r->thread.join();
  maintenance.Stop();
  {
    // The producer goes before the health monitor does.
    absl::MutexLock lock(&start_mu);
    started_producer = nullptr;
    waiting_for = "shutting down";
  }
  int code = process::ShutdownSignal::ExitCode();
  for (auto& r : runners) {
    if (!r->result.ok()) {
      logger->critical("msg=\"stopped on a fatal error\" error=\"{}\"", r->result.message());
      code = 1;
    }
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
