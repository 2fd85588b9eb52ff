#include "common/pg/health_probe.h"

#include <sys/socket.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/nontransaction"

namespace tidemark::pg {

// Two seconds to connect, and five for "SELECT 1" to be acknowledged (a server that vanished
// without a reset) or answered (statement_timeout): NOT_SERVING within seconds, not the
// kernel's minutes (over a service file's settings too). A server that acknowledges packets
// but never answers blocks the check until the HealthMonitor interrupts it.
HealthProbe::HealthProbe(std::string dsn)
    : dsn_(WithSettings(dsn, {{"connect_timeout", "2"}, {"tcp_user_timeout", "5000"}},
                        /*override=*/true)) {}

HealthProbe::~HealthProbe() = default;

absl::Status HealthProbe::Check() {
  bool interrupted_before;
  {
    absl::MutexLock lock(&mu_);
    interrupted_before = interrupted_;
    interrupted_ = false;
  }
  if (interrupted_before || conn_ == nullptr || !conn_->is_open()) {
    conn_.reset();
    // Bounded by connect_timeout, so not interruptible: the session's settings come below.
    absl::StatusOr<std::unique_ptr<pqxx::connection>> conn = Connect(dsn_);
    if (!conn.ok()) {
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL unreachable: ", conn.status().message()));
    }
    conn_ = *std::move(conn);
    session_set_ = false;
  }
  {
    absl::MutexLock lock(&mu_);
    socket_ = conn_->sock();
  }
  auto done_waiting = absl::MakeCleanup([this] {
    absl::MutexLock lock(&mu_);
    socket_ = -1;
  });
  try {
    pqxx::nontransaction tx(*conn_);
    if (!session_set_) {
      // A server that acknowledges the query but takes longer to answer ends the check too.
      tx.exec0("SET statement_timeout = 5000");
      session_set_ = true;
    }
    tx.exec1("SELECT 1");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    std::move(done_waiting).Invoke();
    conn_.reset();  // after socket_ is cleared: Interrupt must not see a closed descriptor
    absl::MutexLock lock(&mu_);
    if (interrupted_) {
      interrupted_ = false;
      return absl::UnavailableError(
          "PostgreSQL has not answered SELECT 1 (the check was ended after running too long)");
    }
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
}

void HealthProbe::Interrupt() {
  absl::MutexLock lock(&mu_);
  if (socket_ < 0) return;
  // Wakes libpq's wait on the socket with end-of-file: the query fails as a lost connection.
  ::shutdown(socket_, SHUT_RDWR);
  interrupted_ = true;
}

}  // namespace tidemark::pg
