#include "common/pg/pg.h"
#include "gtest/gtest.h"
#include "pqxx/except"

namespace tidemark::pg {
namespace {

absl::StatusCode CodeOf(const char* state, const char* what = "error") {
  return FromSqlState(state, what).code();
}

// libpqxx 6.4 throws its specific classes without the SQLSTATE, and its rollbacks outside
// sql_error: the type must classify them as the code would.
TEST(PgErrors, ExceptionsWithoutTheirSqlStateAreClassifiedByType) {
  EXPECT_EQ(FromException(pqxx::unique_violation("duplicate key")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromException(pqxx::data_exception("bad value")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromException(
                pqxx::check_violation("ERROR:  no partition of relation \"points\" found for row"))
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromException(pqxx::serialization_failure("could not serialize")).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(FromException(pqxx::deadlock_detected("deadlock")).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(FromException(pqxx::statement_completion_unknown("lost")).code(),
            absl::StatusCode::kUnknown);
  EXPECT_EQ(FromException(pqxx::insufficient_privilege("permission denied")).code(),
            FromSqlState("42501", "permission denied").code());
  EXPECT_EQ(FromException(pqxx::out_of_memory("oom")).code(), absl::StatusCode::kUnavailable);
  // A code, when present, decides.
  EXPECT_EQ(FromException(pqxx::sql_error("x", "", "40001")).code(), absl::StatusCode::kAborted);
}

TEST(PgErrors, AMissingPartitionIsRetriedNeverBlamedOnTheData) {
  EXPECT_EQ(CodeOf("23514", "ERROR:  no partition of relation \"points\" found for row"),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsRetriable(FromSqlState("23514", "no partition of relation \"points\"")));
  // The message is in the server's language (lc_messages), the code is not.
  EXPECT_EQ(CodeOf("23514",
                   "FEHLER:  keine Partition von Relation \u00bbpoints\u00ab f\u00fcr Zeile "
                   "gefunden"),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromException(pqxx::check_violation("ERREUR:  aucune partition de la relation")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(PgErrors, DataDependentErrorsOfEveryClassRefuseTheData) {
  EXPECT_EQ(CodeOf("22P05"), absl::StatusCode::kInvalidArgument);  // untranslatable character
  EXPECT_EQ(CodeOf("22003"), absl::StatusCode::kInvalidArgument);  // numeric value out of range
  EXPECT_EQ(CodeOf("23505"), absl::StatusCode::kInvalidArgument);  // unique violation
  EXPECT_EQ(CodeOf("54000"), absl::StatusCode::kInvalidArgument);  // index row too large
  EXPECT_EQ(CodeOf("54001"), absl::StatusCode::kInvalidArgument);  // statement too complex
}

TEST(PgErrors, ServerTroubleIsRetried) {
  for (const char* state : {"08006", "57P01", "57P03", "53100", "53200", "53300", "58030", "55P03",
                            "57014", "40001", "40P01"}) {
    EXPECT_TRUE(IsRetriable(FromSqlState(state, "x"))) << state;
  }
}

TEST(PgErrors, ConfigurationTroubleIsNeitherRetriableNorData) {
  // The batch loop retries it whole with backoff; it never rejects a record for it.
  for (const char* state : {"42501", "42P01", "XX000", "0A000", "25006"}) {
    EXPECT_EQ(CodeOf(state), absl::StatusCode::kInternal) << state;
  }
}

// Network timeouts go into every connection's DSN, in its own form, without overriding what
// the operator set.
TEST(PgDsn, NetworkTimeoutsAreAddedUnlessSet) {
  unsetenv("PGCONNECT_TIMEOUT");
  EXPECT_EQ(WithNetworkTimeouts("dbname=tidemark host=db"),
            "dbname=tidemark host=db keepalives_idle=30 keepalives_interval=10 keepalives_count=3"
            " tcp_user_timeout=30000 connect_timeout=10");
  EXPECT_EQ(WithNetworkTimeouts("host=db connect_timeout=3 tcp_user_timeout = 0"),
            "host=db connect_timeout=3 tcp_user_timeout = 0 keepalives_idle=30"
            " keepalives_interval=10 keepalives_count=3");
  EXPECT_EQ(WithNetworkTimeouts("postgresql:///tidemark"),
            "postgresql:///tidemark?keepalives_idle=30&keepalives_interval=10&keepalives_count=3"
            "&tcp_user_timeout=30000&connect_timeout=10");
  EXPECT_EQ(WithNetworkTimeouts("postgres://u@db/t?sslmode=require&keepalives_idle=5"),
            "postgres://u@db/t?sslmode=require&keepalives_idle=5&keepalives_interval=10"
            "&keepalives_count=3&tcp_user_timeout=30000&connect_timeout=10");
  EXPECT_EQ(WithNetworkTimeouts("postgresql://db/t?"),
            "postgresql://db/t?keepalives_idle=30&keepalives_interval=10&keepalives_count=3"
            "&tcp_user_timeout=30000&connect_timeout=10");
  // Left as they are: a service file's settings, a value whose trailing backslash would
  // escape the separator, a DSN libpq would not parse either.
  EXPECT_EQ(WithNetworkTimeouts("service=tidemark"), "service=tidemark");
  EXPECT_EQ(WithNetworkTimeouts("host=db password=abc\\"), "host=db password=abc\\");
  EXPECT_EQ(WithNetworkTimeouts("host=db password"), "host=db password");
  // The health probe's shorter timeouts win over the DSN's; an escaping backslash is still
  // left alone (an appended setting would become part of the password).
  EXPECT_EQ(WithSettings("host=db connect_timeout=30", {{"connect_timeout", "2"}}, true),
            "host=db connect_timeout=30 connect_timeout=2");
  EXPECT_EQ(WithSettings("postgresql://db/t?", {{"connect_timeout", "2"}}, true),
            "postgresql://db/t?connect_timeout=2");
  EXPECT_EQ(WithSettings("host=db password=abc\\", {{"connect_timeout", "2"}}, true),
            "host=db password=abc\\");
  EXPECT_EQ(WithSettings("service=tidemark", {{"connect_timeout", "2"}}, true),
            "service=tidemark connect_timeout=2");
  setenv("PGCONNECT_TIMEOUT", "4", 1);
  EXPECT_EQ(WithNetworkTimeouts(""),
            "keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=30000")
      << "libpq's own variable is left to apply";
  unsetenv("PGCONNECT_TIMEOUT");
}

}  // namespace
}  // namespace tidemark::pg
