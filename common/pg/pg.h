#pragma once

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/log/log.h"
#include "pqxx/connection"
#include "pqxx/transaction_base"

namespace tidemark::pg {

/// `dsn` (keyword/value or URI) with the content of the file at `path` as its password: the
/// file's content minus one trailing newline, quoted for the DSN's form, overriding any password
/// the DSN names. An empty `path` returns `dsn` unchanged, so that PGPASSWORD and libpq's
/// passfile keep working. INVALID_ARGUMENT, naming pg_password_file, when the file cannot be
/// read or is empty.
absl::StatusOr<std::string> DsnWithPasswordFile(const std::string& dsn, const std::string& path);

/// `dsn` with every password in it (a `password` keyword or URI parameter, a URI's
/// user:password@) replaced by ***: what may be logged.
std::string RedactDsn(absl::string_view dsn);

/// The password `dsn` names (the last one, as libpq takes it), or "".
std::string DsnPassword(absl::string_view dsn);

/// `dsn` with `settings` (keyword, value) appended in its form (keyword/value or URI): those
/// `dsn` sets already are kept unless `override` (a later setting wins in libpq, over a
/// service file's too). Without `override`, `dsn` as it is when it names a service file or
/// PGSERVICE is set (the file's settings would lose); always when it is malformed or ends in
/// an escaping backslash (appending could change its meaning).
std::string WithSettings(const std::string& dsn,
                         const std::vector<std::pair<std::string, std::string>>& settings,
                         bool override);

/// `dsn` with the network timeouts libpq leaves to the kernel, unless `dsn` sets them (or
/// names a service file, or PGSERVICE is set, or is malformed: then `dsn` as it is):
/// connect_timeout=10 (unless PGCONNECT_TIMEOUT is set), TCP keepalives after 30 s idle, every
/// 10 s, 3 unanswered, and tcp_user_timeout=30000 (ms unacknowledged). Without them a
/// connection to a server that vanished without a reset (a partition, a crashed host, a
/// failover that moved its address) blocks its caller for the kernel's ~15 minutes of
/// retransmissions, while health still says SERVING. A long query is not cut short: the
/// server acknowledges it and answers keepalives while it runs.
std::string WithNetworkTimeouts(const std::string& dsn);

/// Opens a connection (with WithNetworkTimeouts) and runs `session_setup` on it (e.g.
/// creating temporary staging tables). Fails with UNAVAILABLE when the server cannot be
/// reached.
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

/// The writer's named locks: one row per lock in this table, taken with SELECT ... FOR UPDATE
/// and released at commit. Unlike advisory locks, which any role may take, only roles with
/// UPDATE on the table can take (or block) them, and the read-only role has no privilege on it.
inline constexpr const char* kLocksTable = "tidemark_locks";

/// Takes the named lock until `tx` ends; the row must exist (ApplyMigrations creates the
/// "migrations" row, migrations the others). INTERNAL when it does not.
void LockNamed(pqxx::transaction_base& tx, const std::string& name);

/// Applies the migrations newer than the database's schema version, in order, each in its
/// own transaction, holding the "migrations" lock so that concurrent replicas apply each once.
/// Creates the lock table first, safely when replicas start together on an empty database.
absl::Status ApplyMigrations(pqxx::connection& conn, const std::vector<Migration>& migrations,
                             spdlog::logger& logger);

}  // namespace tidemark::pg
