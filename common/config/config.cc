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

namespace tidemark::config {

std::string EnvironmentName(absl::string_view flag_name) {
  return absl::StrCat("TIDEMARK_", absl::AsciiStrToUpper(flag_name));
}

bool IsHelpFlag(absl::string_view arg) {
  return arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull" ||
         arg == "-helpfull" || arg == "--helpshort" || arg == "-helpshort";
}

std::string HelpText(absl::string_view program, absl::string_view usage) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // absl's own (--flagfile, --fromenv, ...) are not settings of the service.
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
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

absl::StatusOr<std::vector<std::string>> ParseFlagsAndEnvironment(int argc, char** argv,
                                                                  absl::string_view usage) {
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

absl::Status RequirePositive(absl::string_view flag_name, absl::Duration value) {
  if (value > absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be a positive duration such as 500ms or 2m"));
}

absl::Status RequireNonNegative(absl::string_view flag_name, absl::Duration value) {
  if (value >= absl::ZeroDuration()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be zero or a positive duration such as 2m"));
}

absl::Status RequireAtLeast(absl::string_view flag_name, absl::Duration value, absl::Duration min) {
  if (value >= min) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "bad setting --", flag_name, " (", EnvironmentName(flag_name),
      ")=", absl::FormatDuration(value), ": must be at least ", absl::FormatDuration(min)));
}

absl::Status RequireNonEmpty(absl::string_view flag_name, absl::string_view value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("missing setting --", flag_name, " (", EnvironmentName(flag_name), ")"));
}

absl::Status RequireOneOf(absl::string_view flag_name, absl::string_view value,
                          const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("bad setting --", flag_name, " (", EnvironmentName(flag_name), ")=", value,
                   ": expected one of ", absl::StrJoin(allowed, ", ")));
}

}  // namespace tidemark::config
