#include "common/config/common_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, kafka_brokers, "127.0.0.1:9092",
          "Kafka bootstrap servers, host:port[,host:port]");
ABSL_FLAG(std::string, kafka_config, "",
          "librdkafka properties for every Kafka client, comma separated key=value, e.g. "
          "security.protocol=ssl,ssl.ca.location=/run/secrets/kafka_ca.pem");
ABSL_FLAG(std::string, kafka_config_file, "",
          "A properties file (key=value lines) of librdkafka settings for every Kafka client, "
          "for secrets such as sasl.password; wins over --kafka_config");
ABSL_FLAG(std::string, pg_dsn, "postgresql:///tidemark",
          "PostgreSQL connection string (libpq keyword/value or URI; sslmode, sslrootcert and "
          "the other libpq settings go here)");
ABSL_FLAG(std::string, pg_password_file, "",
          "File whose content (one trailing newline stripped) is the password for --pg_dsn, "
          "e.g. a Docker secret; without it PGPASSWORD and libpq's passfile apply");
ABSL_FLAG(std::string, metrics_host, "127.0.0.1",
          "Address the Prometheus /metrics and /health endpoint binds (loopback by default: "
          "metrics are not for the devices' network)");
ABSL_FLAG(int, metrics_port, 0, "Port of the Prometheus /metrics endpoint (0 picks a free one)");
