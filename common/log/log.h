#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

/// Debian's abseil has its own string_view (not std::string_view); let fmt print it, so
/// status.message() can be logged directly.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace tidemark::log {

/// Creates the service's named logger: UTC timestamps, `key=value` message fields, level
/// from TIDEMARK_LOG_LEVEL (default info). One per process, created in main and passed in.
/// A TIDEMARK_LOG_LEVEL that names no level logs at info and says so in its first line,
/// rather than silencing the service.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name);

/// A level's name, in any case: trace, debug, info, warn (warning), error (err), critical,
/// off; empty is info. nullopt for anything else (spdlog's own parser makes that `off`).
std::optional<spdlog::level::level_enum> ParseLevel(absl::string_view name);

}  // namespace tidemark::log
