#pragma once

#include <memory>
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
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name);

}  // namespace tidemark::log
