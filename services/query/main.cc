// query: answers QueryService calls from the store, as a read-only database role.
#include "absl/flags/flag.h"
#include "common/config/common_flags.h"
#include "common/config/config.h"
#include "common/grpc/security_flags.h"
#include "common/grpc/serve.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pg/health_probe.h"
#include "common/pg/pg.h"
#include "common/process/shutdown_signal.h"
#include "services/query/query_service.h"
#include "tidemark/v1/query.grpc.pb.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "gRPC listen address host:port");
ABSL_FLAG(int, workers, 4, "Concurrent queries, each with its own database connection");
ABSL_FLAG(int, max_queued_calls, 256, "Calls waiting beyond which RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_rollup_series, 1000000,
          "Series a Rollup with group_by may cover beyond which the call is refused with "
          "INVALID_ARGUMENT (it merges every selected series' windows in its range); one "
          "without group_by may cover 10,000");
ABSL_FLAG(int, subscriber_buffer, 10000,
          "Undelivered updates beyond which a Subscribe stream ends with RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, subscriber_buffer_bytes, 16 << 20,
          "Memory those undelivered updates may hold (each carries its series' dimensions) "
          "beyond which a Subscribe stream ends with RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, subscription_progress_interval, absl::Seconds(30),
          "How often at most a Subscribe stream whose selector matched none of the latest "
          "changes is sent a response without updates, moving its resume_token past them so "
          "that it stays within the writer's --subscription_retention");
ABSL_FLAG(int, max_subscriptions, 1000,
          "Open Subscribe streams beyond which a new one is refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_subscriptions_per_client, 250,
          "Open Subscribe streams of one client (its token or certificate) beyond which its new "
          "one is refused with RESOURCE_EXHAUSTED; not applied with --allow_unauthenticated");

namespace {

using namespace tidemark;

int Run(int argc, char** argv) {
  process::ShutdownSignal shutdown;
  auto logger = log::MakeLogger("query");
  if (auto args = config::ParseFlagsAndEnvironment(
          argc, argv, "tidemark query service (connect with the read-only role's DSN)",
          logger.get());
      !args.ok()) {
    logger->critical("msg=\"{}\"", args.status().message());
    return 2;
  }
  query::QueryConfig cfg;
  // The password may come from a file (a Docker secret); it is never logged.
  absl::StatusOr<std::string> dsn =
      pg::DsnWithPasswordFile(absl::GetFlag(FLAGS_pg_dsn), absl::GetFlag(FLAGS_pg_password_file));
  if (!dsn.ok()) {
    logger->critical("msg=\"{}\"", dsn.status().message());
    return 2;
  }
  cfg.pg_dsn = *std::move(dsn);
  logger->info("msg=\"store\" dsn=\"{}\"", pg::RedactDsn(cfg.pg_dsn));
  cfg.workers = absl::GetFlag(FLAGS_workers);
  cfg.max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  cfg.limits.max_rollup_series = absl::GetFlag(FLAGS_max_rollup_series);
  const int subscriber_buffer = absl::GetFlag(FLAGS_subscriber_buffer);
  cfg.subscriptions.subscriber_buffer = static_cast<size_t>(std::max(1, subscriber_buffer));
  const int64_t subscriber_buffer_bytes = absl::GetFlag(FLAGS_subscriber_buffer_bytes);
  cfg.subscriptions.subscriber_buffer_bytes =
      static_cast<size_t>(std::max<int64_t>(1, subscriber_buffer_bytes));
  cfg.subscriptions.progress_interval = absl::GetFlag(FLAGS_subscription_progress_interval);
  const int max_subscriptions = absl::GetFlag(FLAGS_max_subscriptions);
  cfg.subscriptions.max_subscriptions = static_cast<size_t>(std::max(1, max_subscriptions));
  const int per_client = absl::GetFlag(FLAGS_max_subscriptions_per_client);
  cfg.subscriptions.max_subscriptions_per_client = static_cast<size_t>(std::max(1, per_client));
  for (absl::Status s :
       {config::RequireNonEmpty("pg_dsn", cfg.pg_dsn),
        config::RequirePositive("workers", cfg.workers),
        config::RequirePositive("max_queued_calls", cfg.max_queued_calls),
        config::RequirePositive("max_rollup_series", cfg.limits.max_rollup_series),
        config::RequirePositive("subscriber_buffer", subscriber_buffer),
        config::RequirePositive("subscriber_buffer_bytes", subscriber_buffer_bytes),
        config::RequirePositive("subscription_progress_interval",
                                cfg.subscriptions.progress_interval),
        config::RequirePositive("max_subscriptions", max_subscriptions),
        config::RequirePositive("max_subscriptions_per_client", per_client)}) {
    if (!s.ok()) {
      logger->critical("msg=\"{}\"", s.message());
      return 2;
    }
  }
  absl::StatusOr<grpcutil::ServerAccess> access = grpcutil::ServerAccessFromFlags(logger);
  if (!access.ok()) {
    logger->critical("msg=\"{}\"", access.status().message());
    return 2;
  }
  metrics::Registry registry;
  query::QueryMetrics metrics(registry);
  query::QueryServiceImpl service(cfg, metrics, *access->authenticator, logger);
  pg::HealthProbe probe(cfg.pg_dsn);
  return grpcutil::ServeUntilShutdown(
      shutdown, registry, {&service},
      {.listen_address = absl::GetFlag(FLAGS_listen),
       .metrics_host = absl::GetFlag(FLAGS_metrics_host),
       .metrics_port = absl::GetFlag(FLAGS_metrics_port),
       // Every query reads PostgreSQL.
       .health = [&probe] { return probe.Check(); },
       .health_interrupt = [&probe] { probe.Interrupt(); },
       .health_service_names = {v1::QueryService::service_full_name()},
       .security = access->security,
       .before_shutdown = [&service] { service.BeginShutdown(); }},
      *logger);
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
