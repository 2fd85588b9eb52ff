#include "common/config/common_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, kafka_brokers, "127.0.0.1:9092",
          "Kafka bootstrap servers, host:port[,host:port]");
ABSL_FLAG(std::string, pg_dsn, "postgresql:///tidemark",
          "PostgreSQL connection string (libpq keyword/value or URI)");
ABSL_FLAG(std::string, metrics_host, "0.0.0.0", "Address the Prometheus /metrics endpoint binds");
ABSL_FLAG(int, metrics_port, 0, "Port of the Prometheus /metrics endpoint (0 picks a free one)");
