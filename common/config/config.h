#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tidemark::config {

/// Parses the process's flags. Every flag `--some_name` may also be set by the
/// environment variable `TIDEMARK_SOME_NAME`; the command line wins over the environment.
/// Returns the positional arguments, or an InvalidArgument error naming the bad setting
/// and its source. On `--help` prints `usage` and every flag with its default, help and
/// environment variable, and exits 0; exits (through absl) on a malformed command line.
absl::StatusOr<std::vector<std::string>> ParseFlagsAndEnvironment(int argc, char** argv,
                                                                  absl::string_view usage);

/// The --help text: `usage`, then each flag (absl's own left out) with its environment name.
std::string HelpText(absl::string_view program, absl::string_view usage);

/// The environment variable that sets `flag_name`: TIDEMARK_ + upper case.
std::string EnvironmentName(absl::string_view flag_name);

/// Helpers for the per-service checks that run after parsing: each returns an
/// InvalidArgument error naming the setting when the value is out of range.
absl::Status RequirePositive(absl::string_view flag_name, int64_t value);
absl::Status RequirePositive(absl::string_view flag_name, absl::Duration value);
absl::Status RequireNonNegative(absl::string_view flag_name, absl::Duration value);
/// `value` >= `min`, e.g. for durations a library counts in whole milliseconds.
absl::Status RequireAtLeast(absl::string_view flag_name, absl::Duration value, absl::Duration min);
absl::Status RequireNonEmpty(absl::string_view flag_name, absl::string_view value);
absl::Status RequireOneOf(absl::string_view flag_name, absl::string_view value,
                          const std::vector<std::string>& allowed);

}  // namespace tidemark::config
