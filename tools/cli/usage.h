#pragma once

#include <span>
#include <string>

#include "absl/strings/string_view.h"

namespace tidemark::cli {

/// One flag as the usage text lists it.
struct FlagInfo {
  std::string name;
  std::string default_value;
  std::string help;
};

/// Whether the command line asks for the usage text: `help` as the command, or `-h`,
/// `--help`, `-help` or `--helpshort` before a `--`. Checked before absl parses the flags,
/// because absl's own --help lists only flags defined in a file named like the program, and
/// the CLI's live in tools/cli/main.cc.
bool WantsHelp(std::span<const char* const> args);

/// The usage text: every command with what it does and an example, how selections, ranges,
/// durations and formats are written, and `flags` (sorted by name) with their defaults.
std::string UsageText(std::span<const FlagInfo> flags);

}  // namespace tidemark::cli
