#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spdlog/logger.h"

namespace tidemark::config {

/// Parses the process's flags. Every flag `--some_name` may also be set by the
/// environment variable `TIDEMARK_SOME_NAME`; the command line wins over the environment.
/// Returns the positional arguments, or an InvalidArgument error naming the bad setting
/// and its source. On `--help` prints `usage` and every flag with its default, help and
/// environment variable, and exits 0; exits (through absl) on a malformed command line.
/// A flag the program does not have (`--kafka_broker`) or a value its flag cannot take
/// (`--batch_max_records=many`, `--batch_max_records many`) is such an error too, naming the
/// nearest flag (flags in a --flagfile are absl's, which exits 1 on a bad one).
/// Each TIDEMARK_* variable that sets nothing here but is within two edits of one that
/// does (one edit for short names) is logged as a warning on `logger` (stderr when null): a typo is
/// not silently ignored.
absl::StatusOr<std::vector<std::string>> ParseFlagsAndEnvironment(int argc, char** argv,
                                                                  absl::string_view usage,
                                                                  spdlog::logger* logger = nullptr);

/// The command-line check above, without parsing: absl exits 1 on a flag it does not know
/// or a value it cannot parse, with no hint. Values of the program's own flags are parsed
/// (and set); absl's own flags, the names absl takes without their being flags (--version,
/// --helpon=...) and those --undefok allows are left to absl.
absl::Status CheckCommandLine(int argc, char** argv);

/// The warnings above, one per misspelled-looking TIDEMARK_* variable, naming the variable
/// it probably meant. A setting of another Tidemark program, or a variable far from every
/// name (another program's), is not warned about.
std::vector<std::string> MisspelledEnvironment();

/// Whether `flag_name` is a setting of some Tidemark program (services, simulator, devbroker,
/// CLI).
bool IsTidemarkSetting(absl::string_view flag_name);

/// The --help text: `usage`, then each flag (absl's own left out) with its environment name.
std::string HelpText(absl::string_view program, absl::string_view usage);

/// The environment variable that sets `flag_name`: TIDEMARK_ + upper case.
std::string EnvironmentName(absl::string_view flag_name);

/// Helpers for the per-service checks that run after parsing: each returns an
/// InvalidArgument error naming the setting when the value is out of range. Durations must
/// also be finite (at most 100 years): they are added to timestamps.
absl::Status RequirePositive(absl::string_view flag_name, int64_t value);
absl::Status RequirePositive(absl::string_view flag_name, absl::Duration value);
absl::Status RequireNonNegative(absl::string_view flag_name, absl::Duration value);
/// `value` >= `min`, e.g. for durations a library counts in whole milliseconds.
absl::Status RequireAtLeast(absl::string_view flag_name, absl::Duration value, absl::Duration min);
/// `value` >= `min`; `why` (e.g. "--max_events_per_request") ends the message.
absl::Status RequireAtLeast(absl::string_view flag_name, int64_t value, int64_t min,
                            absl::string_view why);
absl::Status RequireNonEmpty(absl::string_view flag_name, absl::string_view value);
/// A name Kafka accepts for a topic: 1 to 249 of a-z, A-Z, 0-9, '.', '_' and '-'.
absl::Status RequireTopicName(absl::string_view flag_name, absl::string_view value);
absl::Status RequireOneOf(absl::string_view flag_name, absl::string_view value,
                          const std::vector<std::string>& allowed);

}  // namespace tidemark::config
