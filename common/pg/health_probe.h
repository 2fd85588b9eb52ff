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
  /// its connection is shut down, so the Check fails at once and the next one reconnects.
  /// Does not block; does nothing while no Check waits.
  void Interrupt();

 private:
  const std::string dsn_;
  // The checking thread's alone: Interrupt sees only socket_, which is set while a Check
  // waits on the server and is cleared before the connection can be closed.
  std::unique_ptr<pqxx::connection> conn_;
  bool session_set_ = false;  // statement_timeout set on conn_
  absl::Mutex mu_;
  int socket_ ABSL_GUARDED_BY(mu_) = -1;
  // conn_ was shut down by Interrupt: the Check waiting on it failed (or the next one must
  // reconnect, if the interrupt came just after an answer).
  bool interrupted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tidemark::pg
