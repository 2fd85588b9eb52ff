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

absl::Status FromSqlState(absl::string_view state, absl::string_view what) {
  auto in_class = [&](absl::string_view c) { return absl::StartsWith(state, c); };
  // A row routed to a daily partition that another replica's retention just dropped, or that
  // this connection wrongly believes exists: the store recreates it on the retry. (23514 is
  // also a CHECK violation, but Tidemark's tables have no CHECK constraints.)
  if (state == "23514" && absl::StrContains(what, "no partition")) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL partition missing: ", what));
  }
  // 08 connection exception, 57P01-57P05 shutdown / cannot connect now, 53 insufficient
  // resources (disk full, out of memory, too many connections), 58 system error (I/O),
  // 55P03 lock not available and 57014 statement timeout: the server, not the data.
  if (in_class("08") || in_class("57P") || in_class("53") || in_class("58") ||
      state == "55P03" || state == "57014" || state == "55006") {
    return absl::UnavailableError(absl::StrCat("PostgreSQL unavailable: ", what));
  }
  // 40 transaction rollback: serialization failure, deadlock.
  if (in_class("40")) {
    return absl::AbortedError(absl::StrCat("PostgreSQL transaction aborted: ", what));
  }
  // 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (a value
  // too large for an index row, say): this data, whenever it is retried.
  if (in_class("22") || in_class("23") || in_class("54")) {
    return absl::InvalidArgumentError(absl::StrCat("PostgreSQL refused data: ", what));
  }
  // Everything else (42 missing privilege or table, XX internal error, 0A, 25, ...) is a
  // configuration or server problem no record causes: retried, never blamed on the data.
  return absl::InternalError(absl::StrCat("PostgreSQL error ", state, ": ", what));
}

absl::Status FromException(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    return absl::UnknownError(absl::StrCat("PostgreSQL commit in doubt: ", e.what()));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    return FromSqlState(sql->sqlstate(), e.what());
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
