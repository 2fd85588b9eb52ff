#include "common/config/config.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace tidemark::config {

std::string EnvironmentName(absl::string_view flag_name) {
  return absl::StrCat("TIDEMARK_", absl::AsciiStrToUpper(flag_name));
}

namespace {

// Environment variables read outside the flags.
constexpr const char* kOtherVariables[] = {"TIDEMARK_LOG_LEVEL", "TIDEMARK_TOKEN"};

// Every setting of every Tidemark program: a variable meant for another program (a shared
// environment, TIDEMARK_GROUP_ID beside the CLI's --group_by) is no typo. The operations test
// checks each program's --help against this list.
// clang-format off
constexpr const char* kTidemarkSettings[] = {
    "aggregates_topic", "aggregate_retention", "allowed_lateness", "allow_unauthenticated",
    "batch_max_age", "batch_max_bytes", "batch_max_records", "batch_size", "bootstrap_file",
    "brokers", "bucket", "clock_ahead", "commit_interval", "control_file", "control_listen",
    "credentials_file", "delivery_timeout", "device", "devices", "duration", "end", "expires",
    "field", "fill", "format", "from", "future_clock_lead", "group_by", "group_id",
    "grpc_reflection", "gzip_level", "height", "idle_timeout", "ingest", "json_device_key",
    "json_measure_suffix", "json_time_key", "json_time_unit_key", "kafka_brokers",
    "kafka_compression", "kafka_config", "kafka_config_file", "lake", "late_time", "late_topic",
    "limit", "listen", "max_events_per_request", "max_future", "max_lookback",
    "max_out_of_orderness", "max_queued_calls", "max_queued_events", "max_records",
    "max_rollup_series", "max_subscriptions", "max_subscriptions_per_client", "measure", "method",
    "metrics_host", "metrics_port", "name", "partitions_ahead", "partition_by",
    "percent_clock_ahead", "percent_late", "pg_dsn", "pg_password_file", "query", "rate",
    "raw_retention", "raw_topic",
    "real_time", "rejected_topic", "resume", "s3_endpoint", "s3_path_style", "s3_region", "scopes",
    "seed", "service", "since", "source_window", "start", "step", "subscriber_buffer",
    "subscriber_buffer_bytes", "subscription_progress_interval", "subscription_retention", "timeout", "tls", "tls_ca_file",
    "tls_cert_file", "tls_client_ca_file", "tls_client_cert_file", "tls_client_key_file",
    "tls_key_file", "tls_refresh_interval", "tls_require_client_cert", "tls_server_name", "to",
    "token", "token_file", "topics", "turbine_share", "where", "width", "window", "windows",
    "workers"};
// clang-format on

// The program's own flags (absl's --flagfile, --fromenv, ... left out).
bool IsOwnFlag(const absl::CommandLineFlag& flag) {
  return !absl::StrContains(flag.Filename(), "absl/");
}

// Levenshtein distance, stopping early: anything above `limit` is reported as limit + 1.
size_t EditDistance(absl::string_view a, absl::string_view b, size_t limit) {
  if (a.size() > b.size() + limit || b.size() > a.size() + limit) return limit + 1;
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    size_t best = row[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
      best = std::min(best, row[j]);
    }
    if (best > limit) return limit + 1;
  }
  return std::min(row[b.size()], limit + 1);
}

// The candidate nearest to `name` within two edits (one for names of up to five letters
// after `prefix`, which are two edits from too many others), or empty.
std::string Nearest(absl::string_view name, const std::vector<std::string>& candidates,
                    absl::string_view prefix = "") {
  std::string nearest;
  const size_t limit = name.size() <= prefix.size() + 5 ? 1 : 2;
  size_t best = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = EditDistance(name, c, limit);
    if (d < best) best = d, nearest = c;
  }
  return nearest;
}

std::vector<std::string> OwnFlagNames() {
  std::vector<std::string> names;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsOwnFlag(*flag)) names.emplace_back(name);
  }
  return names;
}

}  // namespace

bool IsHelpFlag(absl::string_view arg) {
  return arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull" ||
         arg == "-helpfull" || arg == "--helpshort" || arg == "-helpshort";
}

std::string HelpText(absl::string_view program, absl::string_view usage) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // absl's own (--flagfile, --fromenv, ...) are not settings of the service.
    if (!IsOwnFlag(*flag)) continue;
    flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string out = absl::StrCat(usage, "\n\nUsage: ", program,
                                 " [--flag=value ...]\n"
                                 "Every flag can also be set by its environment variable, shown "
                                 "beside it; the command line wins.\n\nFlags:\n");
  for (const absl::CommandLineFlag* f : flags) {
    absl::StrAppend(&out, "  --", f->Name(), "=", f->DefaultValue(), "  (",
                    EnvironmentName(f->Name()), ")\n      ", f->Help(), "\n");
  }
  return out;
}

absl::Status CheckCommandLine(int argc, char** argv) {
  // Names absl takes without their being flags (--version, --helpon=...), and those the
  // command line or environment allows to be unknown (--undefok=a,b).
  std::vector<std::string> allowed = {"help",      "helpfull",    "helpshort", "helpon",
                                      "helpmatch", "helppackage", "version",   "only_check_args"};
  if (const absl::CommandLineFlag* undefok = absl::FindCommandLineFlag("undefok")) {
    for (absl::string_view n : absl::StrSplit(undefok->CurrentValue(), ',', absl::SkipEmpty())) {
      allowed.emplace_back(n);
    }
  }
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    if (!absl::ConsumePrefix(&arg, "undefok")) continue;
    if (!absl::ConsumePrefix(&arg, "=")) {
      if (!arg.empty() || i + 1 >= argc) continue;
      arg = argv[i + 1];
    }
    for (absl::string_view n : absl::StrSplit(arg, ',', absl::SkipEmpty())) allowed.emplace_back(n);
  }
  auto is_allowed = [&allowed](absl::string_view name) {
    return std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  };
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;  // positional
    absl::ConsumePrefix(&arg, "-");
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    if (name.empty()) continue;  // "-" is a positional argument
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && is_allowed(name)) continue;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      if (flag != nullptr && flag->TryGet<bool>().has_value()) continue;
      flag = nullptr;
    }
    if (flag == nullptr) {
      const std::string nearest = Nearest(name, OwnFlagNames());
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name,
                       nearest.empty() ? " (--help lists the flags)"
                                       : absl::StrCat(" (did you mean --", nearest, "?)")));
    }
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->TryGet<bool>().has_value() || i + 1 >= argc) {
      continue;  // `--bool`, or a value missing (absl says so)
    } else {
      value = argv[++i];  // `--name value`
    }
    if (!IsOwnFlag(*flag)) continue;
    std::string error;
    // Sets the flag; absl's parse below sets it again to the same value.
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("bad setting --", name, "=\"", value, "\" (",
                                                     EnvironmentName(name), "): ", error));
    }
  }
  return absl::OkStatus();
}

bool IsTidemarkSetting(absl::string_view flag_name) {
  return std::find(std::begin(kTidemarkSettings), std::end(kTidemarkSettings), flag_name) !=
         std::end(kTidemarkSettings);
}

std::vector<std::string> MisspelledEnvironment() {
  std::vector<std::string> known;
  for (const std::string& name : OwnFlagNames()) known.push_back(EnvironmentName(name));
  known.insert(known.end(), std::begin(kOtherVariables), std::end(kOtherVariables));
  std::vector<std::string> everyones = known;
  for (const char* name : kTidemarkSettings) everyones.push_back(EnvironmentName(name));
  std::vector<std::string> warnings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const absl::string_view entry = *e;
    const absl::string_view name = entry.substr(0, entry.find('='));
    if (!absl::StartsWith(name, "TIDEMARK_")) continue;
    if (std::find(everyones.begin(), everyones.end(), name) != everyones.end()) continue;
    const std::string nearest = Nearest(name, known, "TIDEMARK_");
    if (nearest.empty()) continue;
    warnings.push_back(
        absl::StrCat("environment variable ", name, " sets nothing; did you mean ", nearest, "?"));
  }
  std::sort(warnings.begin(), warnings.end());
  return warnings;
}

absl::StatusOr<std::vector<std::string>> ParseFlagsAndEnvironment(int argc, char** argv,
                                                                  absl::string_view usage,
                                                                  spdlog::logger* logger) {
  for (int i = 1; i < argc; ++i) {
    if (absl::string_view(argv[i]) == "--") break;
    if (IsHelpFlag(argv[i])) {
      const absl::string_view path = argv[0];
      std::fputs(HelpText(path.substr(path.rfind('/') + 1), usage).c_str(), stdout);
      std::exit(0);
    }
  }
  // The environment first, so that ParseCommandLine below overrides it.
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    const std::string env = EnvironmentName(name);
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad setting ", env, "=\"", value, "\" (flag --", name, "): ", error));
    }
  }
  for (const std::string& warning : MisspelledEnvironment()) {
    if (logger != nullptr) {
      logger->warn("msg=\"{}\"", warning);
    } else {
      std::fprintf(stderr, "warning: %s\n", warning.c_str());
    }
  }
  if (absl::Status s = CheckCommandLine(argc, argv); !s.ok()) return s;
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  // Every service has a metrics port; one out of range would fail later as "cannot bind".
  if (const absl::CommandLineFlag* port = absl::FindCommandLineFlag("metrics_port")) {
    const auto value = port->TryGet<int>();
    if (value && (*value < 0 || *value > 65535)) {
      return absl::InvalidArgumentError(absl::StrCat("bad setting --metrics_port (",
                                                     EnvironmentName("metrics_port"), ")=", *value,
                                                     ": must be a port, 0 to 65535 (0 picks one)"));
    }
  }
  return std::vector<std::string>(positional.begin() + 1, positional.end());
}

absl::Status RequirePositive(absl::string_view flag_name, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bad setting --", flag_name, " (",
                                                 EnvironmentName(flag_name), ")=", value,
                                                 ": must be greater than zero"));
}

// Durations become microseconds added to timestamps: "inf" or centuries would overflow them
// (an --allowed_lateness=inf made every point late, a --max_future=inf every event future).
constexpr absl::Duration kLongestSetting = absl::Hours(24 * 365 * 100);

absl::Status RequireFinite(absl::string_view flag_name, absl::Duration value) {
  if (value <= kLongestSetting) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad setting --", flag_name, " (", EnvironmentName(flag_name),
                   ")=", absl::FormatDuration(value), ": must be finite, at most 100 years"));
}

absl::Status RequirePositive(absl::string_view flag_name, absl::Duration value) {
  if (value > absl::ZeroDuration()) return RequireFinite(flag_name, value);
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be a positive duration such as 500ms or 2m"));
}

absl::Status RequireNonNegative(absl::string_view flag_name, absl::Duration value) {
  if (value >= absl::ZeroDuration()) return RequireFinite(flag_name, value);
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be zero or a positive duration such as 2m"));
}

absl::Status RequireAtLeast(absl::string_view flag_name, absl::Duration value, absl::Duration min) {
  if (value >= min) return RequireFinite(flag_name, value);
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be at least ", absl::FormatDuration(min)));
}

absl::Status RequireAtLeast(absl::string_view flag_name, int64_t value, int64_t min,
                            absl::string_view why) {
  if (value >= min) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bad setting --", flag_name, " (",
                                                 EnvironmentName(flag_name), ")=", value,
                                                 ": must be at least ", min, " (", why, ")"));
}

absl::Status RequireNonEmpty(absl::string_view flag_name, absl::string_view value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("missing setting --", flag_name, " (", EnvironmentName(flag_name), ")"));
}

absl::Status RequireTopicName(absl::string_view flag_name, absl::string_view value) {
  if (value.empty()) return RequireNonEmpty(flag_name, value);
  // The broker refuses anything else, and librdkafka only says so once the first record fails.
  const bool legal = value.size() <= 249 && value != "." && value != ".." &&
                     std::all_of(value.begin(), value.end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                              c == '_' || c == '-';
                     });
  if (legal) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad setting --", flag_name, " (", EnvironmentName(flag_name), ")=\"", value,
                   "\": a Kafka topic name is 1 to 249 letters, digits, '.', '_' or '-'"));
}

absl::Status RequireOneOf(absl::string_view flag_name, absl::string_view value,
                          const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad setting --", flag_name, " (", EnvironmentName(flag_name), ")=", value,
                   ": expected one of ", absl::StrJoin(allowed, ", ")));
}

}  // namespace tidemark::config
