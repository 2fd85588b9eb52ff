// aggregator: event-time tumbling windows over tidemark.raw, emitted to tidemark.aggregates.
#include <atomic>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/kafka/consumer.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/health.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "common/process/stop_flag.h"
#include "services/aggregator/aggregator_service.h"

ABSL_FLAG(std::string, raw_topic, "tidemark.raw", "Kafka topic of accepted events");
ABSL_FLAG(std::string, aggregates_topic, "tidemark.aggregates", "Where aggregates go");
ABSL_FLAG(std::string, late_topic, "tidemark.late", "Where points beyond lateness go");
ABSL_FLAG(std::string, group_id, "tidemark-aggregator", "Kafka consumer group");
ABSL_FLAG(std::string, windows, "5m", "Tumbling window sizes, comma separated (e.g. 1m,5m,1h)");
ABSL_FLAG(absl::Duration, max_out_of_orderness, absl::Seconds(5),
          "Watermark = max event time seen on a partition minus this");
ABSL_FLAG(absl::Duration, allowed_lateness, absl::Minutes(2),
          "Late points within this update and re-emit their window; later ones are repaired");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Seconds(30),
          "A partition without records a window could still take (on time, or late within the "
          "lateness) this long advances its watermark with the wall clock");
ABSL_FLAG(absl::Duration, future_clock_lead, absl::Minutes(15),
          "Points further ahead of their ingest time are windowed at the ingest time");
ABSL_FLAG(absl::Duration, commit_interval, absl::Seconds(1),
          "How often outputs are flushed and window checkpoints committed");

namespace {

using namespace tidemark;

absl::StatusOr<std::vector<absl::Duration>> ParseWindows(const std::string& spec) {
  std::vector<absl::Duration> sizes;
  for (absl::string_view s : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    absl::Duration d;
    // Whole microseconds: windows are aligned on the microsecond times points carry.
    if (!absl::ParseDuration(s, &d) || d < absl::Microseconds(1) ||
        d % absl::Microseconds(1) != absl::ZeroDuration() ||
        absl::Hours(24) % d != absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad setting --windows (TIDEMARK_WINDOWS): \"", s,
          "\" must be a positive whole number of microseconds that divides a day, such as 1m, "
          "5m or 1h"));
    }
    sizes.push_back(d);
  }
  if (sizes.empty()) return absl::InvalidArgumentError("--windows names no window size");
  return sizes;
}

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("aggregator");
  if (auto args = config::ParseFlagsAndEnvironment(argc, argv, "tidemark aggregator", logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  aggregator::AggregatorConfig cfg;
  auto sizes = ParseWindows(absl::GetFlag(FLAGS_windows));
  if (!sizes.ok()) {
    logger->critical("msg=\"{}\"", sizes.status().message());
    return 2;
  }
  cfg.windows.sizes = *sizes;
  cfg.windows.out_of_orderness = absl::GetFlag(FLAGS_max_out_of_orderness);
  cfg.windows.allowed_lateness = absl::GetFlag(FLAGS_allowed_lateness);
  cfg.windows.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  cfg.windows.future_clock_lead = absl::GetFlag(FLAGS_future_clock_lead);
  cfg.aggregates_topic = absl::GetFlag(FLAGS_aggregates_topic);
  cfg.late_topic = absl::GetFlag(FLAGS_late_topic);
  cfg.commit_interval = absl::GetFlag(FLAGS_commit_interval);
  for (absl::Status s :
       {config::RequireNonNegative("max_out_of_orderness", cfg.windows.out_of_orderness),
        config::RequireNonNegative("allowed_lateness", cfg.windows.allowed_lateness),
        config::RequirePositive("idle_timeout", cfg.windows.idle_timeout),
        config::RequirePositive("future_clock_lead", cfg.windows.future_clock_lead),
        config::RequirePositive("commit_interval", cfg.commit_interval),
        config::RequireTopicName("raw_topic", absl::GetFlag(FLAGS_raw_topic)),
        config::RequireTopicName("aggregates_topic", cfg.aggregates_topic),
        config::RequireTopicName("late_topic", cfg.late_topic),
        config::RequireNonEmpty("group_id", absl::GetFlag(FLAGS_group_id))}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }

  process::StopFlag stop(shutdown, *logger);

  metrics::Registry registry;
  aggregator::AggregatorMetrics metrics(registry);
  kafka::ProducerConfig producer_config;
  producer_config.brokers = absl::GetFlag(FLAGS_kafka_brokers);
  // Outputs wait out a Kafka outage rather than fail: a failed output stops the aggregator.
  producer_config.delivery_timeout = absl::Minutes(5);
  auto producer = kafka::Producer::Create(producer_config, logger);
  if (!producer.ok()) {
    logger->critical("msg=\"{}\"", producer.status().message());
    return 2;
  }
  aggregator::AggregatorLoop loop(cfg, **producer, metrics, logger);
  auto consumer = kafka::Consumer::Create({.brokers = absl::GetFlag(FLAGS_kafka_brokers),
                                           .group_id = absl::GetFlag(FLAGS_group_id),
                                           .topics = {absl::GetFlag(FLAGS_raw_topic)}},
                                          logger, &loop);
  if (!consumer.ok()) {
    logger->critical("msg=\"{}\"", consumer.status().message());
    return 2;
  }
  // Without Kafka the aggregator can neither read events nor emit windows.
  metrics::HealthMonitor health([&producer = **producer] { return producer.Health(); }, registry,
                                logger);
  auto metrics_server = metrics::MetricsServer::Start(registry, absl::GetFlag(FLAGS_metrics_host),
                                                      absl::GetFlag(FLAGS_metrics_port),
                                                      [&health] { return health.Current(); });
  if (!metrics_server.ok()) {
    logger->critical("msg=\"{}\"", metrics_server.status().message());
    return 1;
  }
  logger->info("msg=\"consuming\" topic={} group={} windows={} metrics_port={}",
               absl::GetFlag(FLAGS_raw_topic), absl::GetFlag(FLAGS_group_id),
               absl::GetFlag(FLAGS_windows), (*metrics_server)->port());
  const absl::Status result = loop.Run(**consumer, stop.flag());
  if (!result.ok()) {
    logger->critical("msg=\"stopped on a fatal error\" error=\"{}\"", result.message());
    return 1;
  }
  return process::ShutdownSignal::ExitCode();
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
