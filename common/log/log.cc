#include "common/log/log.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace tidemark::log {

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ level=%l service=%n %v",
                      spdlog::pattern_time_type::utc);
  const char* level = std::getenv("TIDEMARK_LOG_LEVEL");
  const std::optional<spdlog::level::level_enum> parsed = ParseLevel(level == nullptr ? "" : level);
  logger->set_level(parsed.value_or(spdlog::level::info));
  logger->flush_on(spdlog::level::info);
  if (!parsed) {
    logger->error(
        "msg=\"TIDEMARK_LOG_LEVEL=\\\"{}\\\" is not a level (trace, debug, info, warn, error, "
        "critical, off); logging at info\"",
        level);
  }
  return logger;
}

std::optional<spdlog::level::level_enum> ParseLevel(absl::string_view name) {
  static constexpr std::pair<absl::string_view, spdlog::level::level_enum> kNames[] = {
      {"", spdlog::level::info},
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},
      {"error", spdlog::level::err},
      {"err", spdlog::level::err},
      {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  for (const auto& [known, level] : kNames) {
    if (lower == known) return level;
  }
  return std::nullopt;
}

}  // namespace tidemark::log
