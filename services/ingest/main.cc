// ingest: accepts device readings over gRPC and makes them durable in tidemark.raw.
#include <cstdlib>

#include "absl/flags/flag.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/grpc/security_flags.h"
#include "common/grpc/serve.h"
#include "common/kafka/producer.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/process/shutdown_signal.h"
#include "services/ingest/ingest_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address host:port");
ABSL_FLAG(std::string, raw_topic, "tidemark.raw", "Kafka topic accepted events go to");
ABSL_FLAG(absl::Duration, delivery_timeout, absl::Seconds(10),
          "How long a write waits for Kafka before answering UNAVAILABLE");
ABSL_FLAG(std::string, kafka_compression, "lz4",
          "Compression of the batches produced to the raw topic: lz4, zstd, snappy, gzip or none");
ABSL_FLAG(int, max_queued_events, 200000,
          "Events waiting for Kafka beyond which writes answer RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, raw_retention, absl::Hours(24 * 7),
          "Events older than this are rejected (time before the retention horizon)");
ABSL_FLAG(absl::Duration, max_future, absl::Hours(24),
          "Events further ahead than this are rejected; nearer ones are clock-corrected");
ABSL_FLAG(int, max_events_per_request, 10000,
          "Most events one Write, WriteJson or WriteStream message may carry");
ABSL_FLAG(std::string, json_time_key, "Time", "WriteJson default mapping: time key");
ABSL_FLAG(std::string, json_time_unit_key, "TimeUnit", "WriteJson default mapping: unit key");
ABSL_FLAG(std::string, json_device_key, "DeviceID", "WriteJson default mapping: device key");
ABSL_FLAG(std::string, json_measure_suffix, "_measure",
          "WriteJson default mapping: keys with this suffix are measures");

namespace {

using namespace tidemark;

absl::StatusOr<ingest::IngestConfig> ConfigFromFlags() {
  ingest::IngestConfig c;
  c.raw_topic = absl::GetFlag(FLAGS_raw_topic);
  c.limits.retention = absl::GetFlag(FLAGS_raw_retention);
  c.limits.max_future = absl::GetFlag(FLAGS_max_future);
  c.limits.max_events_per_request = absl::GetFlag(FLAGS_max_events_per_request);
  for (absl::Status s :
       {config::RequireTopicName("raw_topic", c.raw_topic),
        // Without a time or device key every WriteJson event would be refused.
        config::RequireNonEmpty("json_time_key", absl::GetFlag(FLAGS_json_time_key)),
        config::RequireNonEmpty("json_device_key", absl::GetFlag(FLAGS_json_device_key)),
        config::RequirePositive("raw_retention", c.limits.retention),
        config::RequirePositive("max_future", c.limits.max_future),
        config::RequirePositive("max_events_per_request", c.limits.max_events_per_request),
        // librdkafka counts whole milliseconds, and takes 0 as "no timeout".
        config::RequireAtLeast("delivery_timeout", absl::GetFlag(FLAGS_delivery_timeout),
                               absl::Milliseconds(1)),
        // librdkafka takes 0 as "no bound", which would drop the RESOURCE_EXHAUSTED bound.
        config::RequirePositive("max_queued_events", absl::GetFlag(FLAGS_max_queued_events)),
        // A request is queued whole or not at all: a larger one could never be.
        config::RequireAtLeast("max_queued_events", absl::GetFlag(FLAGS_max_queued_events),
                               c.limits.max_events_per_request,
                               "--max_events_per_request: a request is queued whole or not at "
                               "all"),
        config::RequireOneOf("kafka_compression", absl::GetFlag(FLAGS_kafka_compression),
                             {"lz4", "zstd", "snappy", "gzip", "none"})}) {
    if (!s.ok()) return s;
  }
  c.default_json_mapping.set_time_key(absl::GetFlag(FLAGS_json_time_key));
  c.default_json_mapping.set_time_unit_key(absl::GetFlag(FLAGS_json_time_unit_key));
  c.default_json_mapping.set_default_time_unit(v1::TIME_UNIT_MILLISECONDS);
  c.default_json_mapping.set_device_key(absl::GetFlag(FLAGS_json_device_key));
  c.default_json_mapping.set_measure_suffix(absl::GetFlag(FLAGS_json_measure_suffix));
  return c;
}

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("ingest");
  if (auto args =
          config::ParseFlagsAndEnvironment(argc, argv, "tidemark ingest service", logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  absl::StatusOr<ingest::IngestConfig> cfg = ConfigFromFlags();
  if (!cfg.ok()) {
    logger->critical("msg=\"{}\"", cfg.status().message());
    return 2;
  }

  absl::StatusOr<grpcutil::ServerAccess> access = grpcutil::ServerAccessFromFlags(logger);
  if (!access.ok()) {
    logger->critical("msg=\"{}\"", access.status().message());
    return 2;
  }

  metrics::Registry registry;
  ingest::IngestMetrics metrics(registry);
  kafka::ProducerConfig producer_config;
  producer_config.brokers = absl::GetFlag(FLAGS_kafka_brokers);
  producer_config.delivery_timeout = absl::GetFlag(FLAGS_delivery_timeout);
  producer_config.max_queued_messages = absl::GetFlag(FLAGS_max_queued_events);
  // No linger: every Write waits for its records, and under load they batch anyway behind
  // the produce requests in flight (ingest_bench: one Write of 500 events p50 1.9 ms
  // against 3.1-3.7 ms at 1 ms, with Write and WriteStream no slower).
  producer_config.linger = absl::ZeroDuration();
  // lz4 rather than zstd: librdkafka compresses every partition's batch on its one thread
  // per broker, and a Write's 500 events fall into up to one small batch per partition,
  // where zstd pays its context set-up each time (ingest_bench: Write 1.24x the events/s,
  // WriteStream 1.18x); lz4 batches take about 1.6x the bytes (docs/decisions.md).
  producer_config.compression = absl::GetFlag(FLAGS_kafka_compression);
  auto producer = kafka::Producer::Create(producer_config, logger);
  if (!producer.ok()) {
    logger->critical("msg=\"{}\"", producer.status().message());
    return 2;
  }
  ingest::IngestServiceImpl service(*cfg, **producer, metrics, *access->authenticator, logger);
  logger->info("msg=\"producing\" brokers={} topic={}", producer_config.brokers, cfg->raw_topic);
  return grpcutil::ServeUntilShutdown(
      shutdown, registry, {&service},
      {.listen_address = absl::GetFlag(FLAGS_listen),
       .metrics_host = absl::GetFlag(FLAGS_metrics_host),
       .metrics_port = absl::GetFlag(FLAGS_metrics_port),
       .shutdown_grace = absl::GetFlag(FLAGS_delivery_timeout),
       // Ingest cannot acknowledge a write without Kafka.
       .health = [&producer = **producer] { return producer.Health(); },
       .health_service_names = {v1::IngestService::service_full_name()},
       .security = access->security,
       .before_shutdown = [&service] { service.BeginShutdown(); }},
      *logger);
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
