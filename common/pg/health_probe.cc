#include "common/pg/health_probe.h"

#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/nontransaction"

namespace tidemark::pg {

// Two seconds to connect, and five for "SELECT 1" to be acknowledged (a server that vanished
// without a reset) or answered (statement_timeout): NOT_SERVING within seconds, not the
// kernel's minutes (over a service file's settings too). A server that stops answering
// altogether blocks the check, which the HealthMonitor reports as NOT_SERVING after its stall
// limit.
HealthProbe::HealthProbe(std::string dsn)
    : dsn_(WithSettings(dsn, {{"connect_timeout", "2"}, {"tcp_user_timeout", "5000"}},
                        /*override=*/true)) {}

HealthProbe::~HealthProbe() = default;

absl::Status HealthProbe::Check() {
  if (conn_ == nullptr || !conn_->is_open()) {
    conn_.reset();
    // A server that still acknowledges packets but does not answer ends the check too.
    absl::StatusOr<std::unique_ptr<pqxx::connection>> conn =
        Connect(dsn_, {"SET statement_timeout = 5000"});
    if (!conn.ok()) {
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL unreachable: ", conn.status().message()));
    }
    conn_ = *std::move(conn);
  }
  try {
    pqxx::nontransaction tx(*conn_);
    tx.exec1("SELECT 1");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    conn_.reset();
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
}

}  // namespace tidemark::pg
