#include "common/kafka/client_properties.h"

#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/common_flags.h"

namespace tidemark::kafka {

absl::StatusOr<std::map<std::string, std::string>> ParseProperties(absl::string_view text,
                                                                  char separator,
                                                                  absl::string_view source) {
  std::map<std::string, std::string> out;
  int n = 0;
  for (absl::string_view entry : absl::StrSplit(text, separator)) {
    ++n;
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty() || entry[0] == '#') continue;
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bad setting ", source, ": entry ", n, " is not key=value"));
    }
    out[std::string(absl::StripAsciiWhitespace(entry.substr(0, eq)))] =
        std::string(absl::StripAsciiWhitespace(entry.substr(eq + 1)));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> DeploymentProperties() {
  static const absl::StatusOr<std::map<std::string, std::string>>* const properties = [] {
    auto* result = new absl::StatusOr<std::map<std::string, std::string>>(
        ParseProperties(absl::GetFlag(FLAGS_kafka_config), ',', "--kafka_config"));
    const std::string path = absl::GetFlag(FLAGS_kafka_config_file);
    if (!result->ok() || path.empty()) return result;
    std::ifstream in(path);
    if (!in) {
      *result = absl::InvalidArgumentError(
          absl::StrCat("bad setting --kafka_config_file: cannot read ", path));
      return result;
    }
    std::ostringstream text;
    text << in.rdbuf();
    auto from_file = ParseProperties(text.str(), '\n', "--kafka_config_file");
    if (!from_file.ok()) {
      *result = from_file.status();
      return result;
    }
    for (auto& [k, v] : *from_file) (**result)[k] = std::move(v);
    return result;
  }();
  return *properties;
}

absl::Status ApplyProperties(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& own,
                             absl::string_view client) {
  absl::StatusOr<std::map<std::string, std::string>> deployment = DeploymentProperties();
  if (!deployment.ok()) return deployment.status();
  char err[512];
  const std::map<std::string, std::string>* const in_order[] = {&*deployment, &own};
  for (const std::map<std::string, std::string>* props : in_order) {
    for (const auto& [k, v] : *props) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        return absl::InvalidArgumentError(
            absl::StrCat("Kafka ", client, " property ", k, ": ", err));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace tidemark::kafka
