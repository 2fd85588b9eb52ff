#include "common/log/log.h"

#include <cstdlib>

#include "spdlog/sinks/stdout_sinks.h"

namespace tidemark::log {

std::shared_ptr<spdlog::logger> MakeLogger(const std::string& name) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ level=%l service=%n %v",
                      spdlog::pattern_time_type::utc);
  const char* level = std::getenv("TIDEMARK_LOG_LEVEL");
  logger->set_level(level ? spdlog::level::from_str(level) : spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  return logger;
}

}  // namespace tidemark::log
