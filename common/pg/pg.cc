#include "common/pg/pg.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "pqxx/except"
#include "pqxx/pqxx"

namespace tidemark::pg {

absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect(
    const std::string& dsn, const std::vector<std::string>& session_setup) {
  try {
    auto conn = std::make_unique<pqxx::connection>(dsn);
    if (!session_setup.empty()) {
      pqxx::nontransaction tx(*conn);
      for (const std::string& sql : session_setup) tx.exec0(sql);
    }
    return conn;
  } catch (const std::exception& e) {
    return FromException(e);
  }
}

absl::Status FromException(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    return absl::UnknownError(absl::StrCat("PostgreSQL commit in doubt: ", e.what()));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    // Class 08 connection exception, 57P01-57P03 admin shutdown / cannot connect now.
    if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P")) {
      return absl::UnavailableError(absl::StrCat("PostgreSQL unavailable: ", e.what()));
    }
    if (state == "40001" || state == "40P01") {
      return absl::AbortedError(absl::StrCat("PostgreSQL transaction aborted: ", e.what()));
    }
    // Class 22 data exception, 23 integrity constraint violation.
    if (absl::StartsWith(state, "22") || absl::StartsWith(state, "23")) {
      return absl::InvalidArgumentError(absl::StrCat("PostgreSQL refused data: ", e.what()));
    }
    return absl::InternalError(absl::StrCat("PostgreSQL error ", state, ": ", e.what()));
  }
  return absl::InternalError(absl::StrCat("PostgreSQL client error: ", e.what()));
}

bool IsRetriable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

absl::Status ApplyMigrations(pqxx::connection& conn, const std::vector<Migration>& migrations,
                             spdlog::logger& logger) {
  try {
    {
      pqxx::work tx(conn);
      tx.exec0(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " version integer PRIMARY KEY, name text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }
    for (const Migration& m : migrations) {
      pqxx::work tx(conn);
      // Serialises replicas starting together; released at commit.
      tx.exec("SELECT pg_advisory_xact_lock(7461646)");
      if (!tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version)
               .empty()) {
        continue;
      }
      tx.exec0(m.sql);
      tx.exec_params0("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                      m.name);
      tx.commit();
      logger.info("msg=\"schema migration applied\" version={} name={}", m.version, m.name);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return FromException(e);
  }
}

}  // namespace tidemark::pg
