#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "pqxx/connection"

namespace tidemark::pg {

/// Whether PostgreSQL answers: keeps one connection of its own and runs `SELECT 1` on it,
/// reconnecting (with a short connect timeout) after a failure. For health checks: one thread
/// calls Check; any thread may call Interrupt.
class HealthProbe final {
 public:
  explicit HealthProbe(std::string dsn);
  ~HealthProbe();
  /// OK when PostgreSQL answered now; UNAVAILABLE with the reason otherwise.
  absl::Status Check();
  /// Ends a Check waiting on PostgreSQL (a server that accepts packets but never answers):
  /// its connection is shut down, so the Check fails at once and the next one reconnects. A
  /// Check still connecting (bounded by its connect timeout) ends once connected; one that
  /// comes between two Checks ends the next. Does not block.
  void Interrupt();

 private:
  static absl::Status Interrupted();

  const std::string dsn_;
  // The checking thread's alone: Interrupt sees only socket_.
  std::unique_ptr<pqxx::connection> conn_;
  bool session_set_ = false;  // statement_timeout set on conn_
  absl::Mutex mu_;
  // A duplicate of conn_'s socket while a Check waits on the server; else -1.
  int socket_ ABSL_GUARDED_BY(mu_) = -1;
  // Interrupt was called since the last Check returned.
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
  // Interrupt shut conn_'s socket down: the next Check reconnects.
  bool connection_shut_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tidemark::pg
