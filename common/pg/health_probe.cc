#include "common/pg/health_probe.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/nontransaction"

namespace tidemark::pg {

std::string WithConnectTimeout(const std::string& dsn, int seconds) {
  if (absl::StartsWith(dsn, "postgres://") || absl::StartsWith(dsn, "postgresql://")) {
    return absl::StrCat(dsn, absl::StrContains(dsn, "?") ? "&" : "?", "connect_timeout=", seconds);
  }
  return absl::StrCat(dsn, " connect_timeout=", seconds);
}

HealthProbe::HealthProbe(std::string dsn) : dsn_(WithConnectTimeout(dsn, 2)) {}

HealthProbe::~HealthProbe() = default;

absl::Status HealthProbe::Check() {
  if (conn_ == nullptr || !conn_->is_open()) {
    conn_.reset();
    absl::StatusOr<std::unique_ptr<pqxx::connection>> conn = Connect(dsn_);
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
