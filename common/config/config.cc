#include "common/config/config.h"

#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tidemark::config {

std::string EnvironmentName(absl::string_view flag_name) {
  return absl::StrCat("TIDEMARK_", absl::AsciiStrToUpper(flag_name));
}

absl::StatusOr<std::vector<std::string>> ParseFlagsAndEnvironment(int argc, char** argv,
                                                                  absl::string_view usage) {
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
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  return std::vector<std::string>(positional.begin() + 1, positional.end());
}

absl::Status RequirePositive(absl::string_view flag_name, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("bad setting --", flag_name, " (",
                                                 EnvironmentName(flag_name), ")=", value,
                                                 ": must be greater than zero"));
}

absl::Status RequirePositive(absl::string_view flag_name, absl::Duration value) {
  if (value > absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be a positive duration such as 500ms or 2m"));
}

absl::Status RequireNonEmpty(absl::string_view flag_name, absl::string_view value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("missing setting --", flag_name, " (", EnvironmentName(flag_name), ")"));
}

}  // namespace tidemark::config
