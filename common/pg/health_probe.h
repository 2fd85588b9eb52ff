#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "pqxx/connection"

namespace tidemark::pg {

/// Whether PostgreSQL answers: keeps one connection of its own and runs `SELECT 1` on it,
/// reconnecting (with a short connect timeout) after a failure. For health checks; not
/// thread-safe (one monitor thread calls it).
class HealthProbe final {
 public:
  explicit HealthProbe(std::string dsn);
  ~HealthProbe();
  /// OK when PostgreSQL answered now; UNAVAILABLE with the reason otherwise.
  absl::Status Check();

 private:
  std::string dsn_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace tidemark::pg
