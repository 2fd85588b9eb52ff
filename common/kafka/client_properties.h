#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "librdkafka/rdkafka.h"

namespace tidemark::kafka {

/// The deployment's own librdkafka properties, for every Kafka client of the process: TLS
/// (security.protocol=ssl, ssl.ca.location, ssl.certificate.location, ssl.key.location, ...)
/// and SASL (sasl.mechanisms, sasl.username, sasl.password, ...), from --kafka_config
/// (comma-separated key=value) and --kafka_config_file (a Java-style properties file: one
/// key=value a line, # comments; the place for secrets). The file wins over the flag.
/// Read once per process; INVALID_ARGUMENT naming the setting on a malformed entry.
absl::StatusOr<std::map<std::string, std::string>> DeploymentProperties();

/// Parses properties text (lines or, with `separator` ',', one comma-separated line).
absl::StatusOr<std::map<std::string, std::string>> ParseProperties(absl::string_view text,
                                                                  char separator,
                                                                  absl::string_view source);

/// Sets, in order, the deployment's properties, then `own` (the client's settings that its
/// guarantees rest on, such as idempotence and manual commits, which the deployment cannot
/// override). An error names the property but never its value, which may be a password.
absl::Status ApplyProperties(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& own,
                             absl::string_view client);

}  // namespace tidemark::kafka
