#pragma once

#include <string>

#include "absl/flags/declare.h"

// Settings every service shares; each may also come from TIDEMARK_<NAME>.
ABSL_DECLARE_FLAG(std::string, kafka_brokers);
ABSL_DECLARE_FLAG(std::string, kafka_config);
ABSL_DECLARE_FLAG(std::string, kafka_config_file);
ABSL_DECLARE_FLAG(std::string, pg_dsn);
ABSL_DECLARE_FLAG(std::string, pg_password_file);
ABSL_DECLARE_FLAG(std::string, metrics_host);
ABSL_DECLARE_FLAG(int, metrics_port);
