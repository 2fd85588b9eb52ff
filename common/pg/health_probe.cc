#include "common/pg/health_probe.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

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
  // An interrupt counts for the Check it reaches, or for the next one when it comes between
  // two (its caller may not know the last one just returned): never for two.
  auto forget_interrupt = absl::MakeCleanup([this] {
    absl::MutexLock lock(&mu_);
    interrupted_ = false;
  });
  bool reconnect;
  {
    absl::MutexLock lock(&mu_);
    reconnect = connection_shut_;
    connection_shut_ = false;
  }
  if (reconnect || conn_ == nullptr || !conn_->is_open()) {
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
    // Interrupted while connecting (or before): end now rather than wait on the server.
    if (interrupted_) return Interrupted();
    // A descriptor of our own for the same socket: libpq may close its descriptor (and the
    // number be reused) before this thread clears socket_, while ours stays this socket's.
    socket_ = fcntl(conn_->sock(), F_DUPFD_CLOEXEC, 0);
  }
  auto done_waiting = absl::MakeCleanup([this] {
    absl::MutexLock lock(&mu_);
    if (socket_ >= 0) close(socket_);
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
    conn_.reset();
    absl::MutexLock lock(&mu_);
    if (interrupted_) return Interrupted();
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
}

absl::Status HealthProbe::Interrupted() {
  return absl::UnavailableError(
      "PostgreSQL has not answered the health check (ended after running too long, or for "
      "shutdown)");
}

void HealthProbe::Interrupt() {
  absl::MutexLock lock(&mu_);
  interrupted_ = true;
  if (socket_ < 0) return;  // connecting (bounded), or not waiting at all
  // Wakes libpq's wait on the socket with end-of-file: the query fails as a lost connection.
  ::shutdown(socket_, SHUT_RDWR);
  connection_shut_ = true;
}

}  // namespace tidemark::pg
