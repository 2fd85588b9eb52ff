#pragma once

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/log/log.h"
#include "pqxx/connection"

namespace tidemark::pg {

/// Opens a connection and runs `session_setup` on it (e.g. creating temporary staging
/// tables). Fails with UNAVAILABLE when the server cannot be reached.
absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect(
    const std::string& dsn, const std::vector<std::string>& session_setup = {});

/// Converts an exception thrown by libpqxx into a status callers can act on:
/// UNAVAILABLE - connection lost or server shutting down: reconnect and retry;
/// UNKNOWN     - in doubt: the commit may or may not have happened; only an idempotent
///               write (the versioned upsert) may be retried;
/// ABORTED     - serialization failure or deadlock: retry the transaction;
/// INVALID_ARGUMENT - the data was refused (constraint, bad value, size limit): retrying
///               cannot help, and the caller isolates the refused records;
/// INTERNAL    - configuration or server trouble no record causes: retried, never rejected.
absl::Status FromException(const std::exception& e);

/// The classification of FromException for one SQLSTATE and message; every class of
/// PostgreSQL's error codes (appendix A) falls in exactly one of the codes above.
absl::Status FromSqlState(absl::string_view state, absl::string_view what);

/// Whether a status from FromException may succeed when the same work is retried.
bool IsRetriable(const absl::Status& status);

/// One versioned schema change.
struct Migration {
  int version;
  std::string name;
  std::string sql;
};

/// Applies the migrations newer than the database's schema version, in order, each in its
/// own transaction, under an advisory lock so that concurrent replicas apply each once.
absl::Status ApplyMigrations(pqxx::connection& conn, const std::vector<Migration>& migrations,
                             spdlog::logger& logger);

}  // namespace tidemark::pg
