// PostgreSQL least privilege against a real server: the roles deploy/postgres/init-roles.sh
// creates, what the read-only role cannot do (write, create, take or block the writer's locks),
// the writer's maintenance next to a long read, passwords from files that never reach a log,
// a health check on a backend that stops answering, and the cap on a query's statement timeout.
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log/log.h"
#include "common/pg/pg.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "pqxx/pqxx"
#include "services/query/query_store.h"
#include "services/timestream-writer/aggregate_store.h"
#include "services/timestream-writer/incarnation.h"
#include "services/timestream-writer/partitions.h"
#include "services/timestream-writer/point_store.h"
#include "services/timestream-writer/schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tools/devbroker/dev_broker.h"

namespace tidemark {
namespace {

using testing::ChildProcess;
using testing::PgCluster;
using testing::WaitFor;

// Passwords with every character a DSN or psql could mangle.
constexpr char kWriterPassword[] = "w-canary 'quote' \\back\\ @:/?&=%+ \"dq\" end";
constexpr char kQueryPassword[] = "q-canary ' \" \\ #;$(x)`y` \xc3\xa4/?&=%20 end";

PgCluster* pg = nullptr;
devbroker::DevBroker* broker = nullptr;
std::string scratch;  // a private directory for password files and logs

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = absl::StrCat(scratch, "/", name);
  std::ofstream(path, std::ios::trunc | std::ios::binary) << content;
  return path;
}

std::string WriterPasswordFile() { return absl::StrCat(scratch, "/writer_password"); }
std::string QueryPasswordFile() { return absl::StrCat(scratch, "/query_password"); }

class Environment final : public ::testing::Environment {
 public:
  void SetUp() override {
    pg = &testing::SharedPgCluster();
    char tmpl[] = "/tmp/tidemark-pgsec-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    scratch = tmpl;
    // As a Docker secret written with `echo`: one trailing newline, not part of the password.
    WriteFile("writer_password", absl::StrCat(kWriterPassword, "\n"));
    WriteFile("query_password", absl::StrCat(kQueryPassword, "\n"));
    ASSERT_TRUE(pg->RequirePasswordFor({"tidemark_writer", "tidemark_query"}).ok());
    auto b = devbroker::DevBroker::Start(1, devbroker::DefaultTopics());
    ASSERT_TRUE(b.ok()) << b.status();
    broker_ = *std::move(b);
    broker = broker_.get();
  }
  void TearDown() override {
    broker_.reset();
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
  }

 private:
  std::unique_ptr<devbroker::DevBroker> broker_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new Environment);

std::shared_ptr<spdlog::logger> Logger() {
  static auto logger = log::MakeLogger("pg-security-test");
  return logger;
}

// A new database bootstrapped as compose does: deploy/postgres/init-roles.sh run by the
// superuser, with the passwords from files. Not yet migrated.
std::string BootstrappedDatabase() {
  static int n = 0;
  std::string name = absl::StrCat(
      "s_", ::testing::UnitTest::GetInstance()->current_test_info()->name(), "_", ++n);
  for (char& c : name) c = static_cast<char>(std::tolower(c));
  EXPECT_TRUE(pg->CreateDatabase(name).ok());
  const std::string log = absl::StrCat(scratch, "/init-", name, ".log");
  const std::string command = absl::StrCat(
      "env PATH=", pg->bin_dir(), ":/usr/bin:/bin PGHOST=127.0.0.1 PGPORT=", pg->port(),
      " POSTGRES_USER=tidemark TIDEMARK_DB=", name,
      " TIDEMARK_WRITER_PASSWORD_FILE=", WriterPasswordFile(),
      " TIDEMARK_QUERY_PASSWORD_FILE=", QueryPasswordFile(), " sh ", TIDEMARK_SOURCE_DIR,
      "/deploy/postgres/init-roles.sh >", log, " 2>&1");
  const int rc = std::system(command.c_str());
  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << output;
  return name;
}

std::string WriterDsn(const std::string& db) {
  auto dsn = pg::DsnWithPasswordFile(pg->Dsn(db, "tidemark_writer"), WriterPasswordFile());
  EXPECT_TRUE(dsn.ok()) << dsn.status();
  return dsn.ok() ? *dsn : "";
}

std::string ReaderDsn(const std::string& db) {
  auto dsn = pg::DsnWithPasswordFile(pg->Dsn(db, "tidemark_query"), QueryPasswordFile());
  EXPECT_TRUE(dsn.ok()) << dsn.status();
  return dsn.ok() ? *dsn : "";
}

std::unique_ptr<pqxx::connection> Connect(const std::string& dsn) {
  auto conn = pg::Connect(dsn);
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? *std::move(conn) : nullptr;
}

std::string Query(const std::string& db, const std::string& sql) {
  auto out = pg->Psql(db, sql);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

// Runs `sql` in a transaction of its own: "" when it succeeded, else its SQLSTATE.
std::string SqlState(pqxx::connection& conn, const std::string& sql) {
  try {
    pqxx::work tx(conn);
    tx.exec(sql);
    tx.commit();
    return "";
  } catch (const pqxx::insufficient_privilege& e) {
    return "42501";  // libpqxx 6 throws it without its SQLSTATE
  } catch (const pqxx::sql_error& e) {
    return e.sqlstate().empty() ? std::string("error: ") + e.what() : e.sqlstate();
  }
}

int64_t NowUs() { return absl::ToUnixMicros(absl::Now()); }

absl::StatusOr<writer::WriteOutcome> StoreBatch(writer::PointStore& store, double value) {
  v1::Event e;
  e.set_device_id("sec-device");
  e.set_time(NowUs());
  e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e.mutable_measures())["temperature"].set_double_value(value);
  e.set_ingest_time_us(NowUs());
  writer::BatchBuilder batch(absl::Minutes(15),
                             NowUs() - absl::ToInt64Microseconds(absl::Hours(24)));
  batch.Add(0, e.SerializeAsString());
  return store.Write(batch, {});
}

std::vector<writer::SourcedAggregate> OneAggregate(int64_t version) {
  writer::SourcedAggregate s;
  v1::WindowAggregate& a = s.aggregate;
  a.mutable_series()->set_series_id(7);
  a.mutable_series()->set_canonical_key("m{device_id=\"sec\"}");
  a.set_window_size_us(10'000'000);
  a.set_window_start_us((NowUs() / 10'000'000) * 10'000'000);
  a.set_count(1);
  a.set_sum(1.0);
  a.set_version(version);
  return {s};
}

// Runs `work` on another thread and waits for it: a generous bound, so that a regression
// (the writer blocked behind a reader) fails the test instead of hanging it. Not a timing
// assertion: on success the work takes milliseconds.
template <typename F>
auto Unblocked(F work) -> decltype(work()) {
  auto f = std::async(std::launch::async, work);
  if (f.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
    ADD_FAILURE() << "the writer is blocked";
  }
  return f.get();
}

// --- Passwords from files, and DSNs in logs -------------------------------------------------

TEST(PgDsn, APasswordFileIsQuotedForEitherFormAndOverridesTheDsn) {
  const std::string db = BootstrappedDatabase();
  // Keyword/value, and a URI whose userinfo names a wrong password: the file's wins.
  for (const std::string& base :
       {pg->Dsn(db, "tidemark_query"),
        absl::StrCat("postgresql://tidemark_query:wrong@127.0.0.1:", pg->port(), "/", db),
        absl::StrCat("postgresql://tidemark_query@127.0.0.1:", pg->port(), "/", db,
                     "?connect_timeout=10"),
        absl::StrCat(pg->Dsn(db, "tidemark_query"), " password=wrong")}) {
    auto dsn = pg::DsnWithPasswordFile(base, QueryPasswordFile());
    ASSERT_TRUE(dsn.ok()) << dsn.status();
    EXPECT_EQ(pg::DsnPassword(*dsn), kQueryPassword) << base;
    auto conn = pg::Connect(*dsn);
    EXPECT_TRUE(conn.ok()) << base << ": " << conn.status();
    EXPECT_FALSE(absl::StrContains(pg::RedactDsn(*dsn), "canary")) << pg::RedactDsn(*dsn);
  }
  // Without a file the DSN is used as it is (PGPASSWORD and the passfile apply in libpq).
  EXPECT_EQ(*pg::DsnWithPasswordFile("host=h", ""), "host=h");
  // A wrong password: refused, and the status (which callers log) does not repeat it.
  const std::string wrong = WriteFile("wrong", "wrong-canary-pw\n");
  auto refused = pg::Connect(*pg::DsnWithPasswordFile(pg->Dsn(db, "tidemark_query"), wrong));
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(absl::StrContains(refused.status().message(), "wrong-canary-pw"));
  // A malformed DSN that libpq quotes in its error: the password is scrubbed from the status.
  // (An unquoted password with a space: libpq reports `missing "=" after "canary-word"`.)
  auto malformed = pg::Connect("host=127.0.0.1 password=malformed canary-word");
  ASSERT_FALSE(malformed.ok());
  EXPECT_FALSE(absl::StrContains(malformed.status().message(), "canary-word"))
      << malformed.status();
  EXPECT_FALSE(absl::StrContains(malformed.status().message(), "malformed"))
      << malformed.status();
}

TEST(PgDsn, BadPasswordFilesAreRefusedNamingTheSetting) {
  auto missing = pg::DsnWithPasswordFile("host=h", absl::StrCat(scratch, "/no-such-file"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "pg_password_file"));
  auto empty = pg::DsnWithPasswordFile("host=h", WriteFile("empty", "\n"));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  // Only one trailing newline is stripped: the rest is the password.
  EXPECT_EQ(pg::DsnPassword(*pg::DsnWithPasswordFile("host=h", WriteFile("two", "pw\n\n"))),
            "pw\n");
}

TEST(PgDsn, RedactDsnHidesEveryPassword) {
  EXPECT_EQ(pg::RedactDsn("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d");
  EXPECT_EQ(pg::RedactDsn("host=h password = 'se cr\\'et' sslmode=verify-full"),
            "host=h password = *** sslmode=verify-full");
  EXPECT_EQ(pg::RedactDsn("password=a password='b'"), "password=*** password=***");
  EXPECT_EQ(pg::RedactDsn("postgresql://u:secret@h:5432/d?sslmode=require&password=x%20y"),
            "postgresql://u:***@h:5432/d?sslmode=require&password=***");
  EXPECT_EQ(pg::RedactDsn("postgres://u@h/d"), "postgres://u@h/d");
  EXPECT_EQ(pg::RedactDsn("postgresql:///tidemark"), "postgresql:///tidemark");
  // Malformed (an unquoted password with a space): everything from the bad part on is hidden.
  EXPECT_FALSE(absl::StrContains(pg::RedactDsn("host=h password=two words"), "words"));
  EXPECT_FALSE(absl::StrContains(pg::RedactDsn("host=h password=two words"), "two"));
}

// --- Roles ------------------------------------------------------------------------------------

TEST(Roles, TheWriterIsNoSuperuserYetMigratesAFreshDatabaseAndStores) {
  const std::string db = BootstrappedDatabase();
  EXPECT_EQ(Query(db, "SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text"
                      " FROM pg_roles WHERE rolname = 'tidemark_writer'"),
            "falsefalsefalse");
  EXPECT_EQ(Query(db, "SELECT rolcanlogin::text FROM pg_roles WHERE rolname = 'tidemark_reader'"),
            "false");
  writer::PointStore store(WriterDsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  auto stored = StoreBatch(store, 1.5);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->upserted, 1);
  writer::AggregateStore aggregates(WriterDsn(db), absl::Hours(48));
  auto agg = aggregates.Write(OneAggregate(1));
  ASSERT_TRUE(agg.ok()) << agg.status();
  ASSERT_TRUE(store.MaintainPartitions(absl::Hours(24 * 7)).ok());
  ASSERT_TRUE(aggregates.MaintainPartitions(absl::Hours(24 * 7)).ok());
  // It owns what it created.
  EXPECT_EQ(Query(db, "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables"
                      " WHERE schemaname = 'public'"),
            "tidemark_writer");
  EXPECT_EQ(Query(db, "SELECT max(version) FROM schema_migrations"),
            absl::StrCat(writer::SchemaMigrations().size()));
}

TEST(Roles, ConcurrentWritersOnAnEmptyDatabaseApplyEachMigrationOnce) {
  for (int round = 0; round < 3; ++round) {
    const std::string db = BootstrappedDatabase();
    std::vector<std::future<absl::Status>> replicas;
    for (int i = 0; i < 4; ++i) {
      // Each retries a failed Open as the writer's start-up does; a failure is printed, so
      // that a race that costs a retry stays visible.
      replicas.push_back(std::async(std::launch::async, [&db] {
        writer::PointStore store(WriterDsn(db), absl::Hours(48));
        absl::Status s;
        for (int attempt = 0; attempt < 5; ++attempt) {
          s = store.Open(*Logger());
          if (s.ok()) break;
          std::cerr << "Open failed, retrying as the writer does: " << s << "\n";
          absl::SleepFor(absl::Milliseconds(200));
        }
        return s;
      }));
    }
    for (auto& r : replicas) {
      const absl::Status s = r.get();
      EXPECT_TRUE(s.ok()) << s;
    }
    const size_t migrations = writer::SchemaMigrations().size();
    EXPECT_EQ(Query(db, "SELECT count(*) || ':' || count(DISTINCT version) FROM schema_migrations"),
              absl::StrCat(migrations, ":", migrations));
  }
}

TEST(Roles, AWriterThatLosesTheRaceToCreateTheLockTableTriesAgain) {
  const std::string db = BootstrappedDatabase();
  // Another replica is creating the lock table and has not committed yet.
  auto first = Connect(WriterDsn(db));
  ASSERT_NE(first, nullptr);
  auto creating = std::make_unique<pqxx::work>(*first);
  creating->exec("CREATE TABLE IF NOT EXISTS tidemark_locks (name text PRIMARY KEY)");
  auto open = std::async(std::launch::async, [&db] {
    writer::PointStore store(WriterDsn(db), absl::Hours(48));
    return store.Open(*Logger());
  });
  // This replica's creation waits on the catalog for the other's to commit...
  ASSERT_TRUE(WaitFor(
      [&] {
        return Query(db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                         " AND query LIKE 'CREATE TABLE IF NOT EXISTS tidemark_locks%'") == "1";
      },
      absl::Seconds(60)));
  creating->commit();
  // ... then fails on the duplicate, finds the table on its next attempt, and migrates.
  ASSERT_EQ(open.wait_for(std::chrono::seconds(120)), std::future_status::ready);
  EXPECT_TRUE(open.get().ok());
  EXPECT_EQ(Query(db, "SELECT count(*) FROM schema_migrations"),
            absl::StrCat(writer::SchemaMigrations().size()));
}

TEST(Roles, TheReaderReadsButCannotWriteOrCreate) {
  const std::string db = BootstrappedDatabase();
  writer::PointStore store(WriterDsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  ASSERT_TRUE(StoreBatch(store, 2.5).ok());
  auto reader = Connect(ReaderDsn(db));
  ASSERT_NE(reader, nullptr);
  for (const char* table : {"series", "points", "aggregates", "raw_progress", "narrow",
                            "aggregate_changes", "aggregate_changes_pruned", "window_sizes"}) {
    EXPECT_EQ(SqlState(*reader, absl::StrCat("SELECT count(*) FROM ", table)), "") << table;
  }
  EXPECT_EQ(SqlState(*reader, "SELECT count(*) FROM points p JOIN series s USING (series_id)"
                              " WHERE s.device_id = 'sec-device'"),
            "");
  constexpr char kDenied[] = "42501";  // insufficient_privilege
  for (const char* sql : {
           "INSERT INTO raw_progress VALUES ('t', 0, 1)",
           "INSERT INTO series VALUES (1, 'k', 'm', 'd', '{}')",
           "INSERT INTO points (series_id, time, version, ingested_at) VALUES (1, now(), 1, now())",
           "UPDATE points SET version = version + 1",
           "UPDATE stream_incarnation SET epoch = 9",
           "DELETE FROM series",
           "DELETE FROM aggregates",
           "TRUNCATE points",
           "CREATE TABLE intruder (x int)",
           "CREATE TABLE public.intruder (x int)",
           "CREATE VIEW intruder AS SELECT 1",
           "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
           "CREATE SCHEMA intruder",
           // Decided: no temporary tables either (the query service and Grafana need none).
           "CREATE TEMP TABLE intruder (x int)",
           "ALTER TABLE points ADD COLUMN intruder int",
           "DROP VIEW narrow",
           "SELECT * FROM schema_migrations",
       }) {
    EXPECT_EQ(SqlState(*reader, sql), kDenied) << sql;
  }
  EXPECT_EQ(Query(db, "SELECT count(*) FROM pg_class WHERE relname = 'intruder'"), "0");
  EXPECT_EQ(Query(db, "SELECT count(*) FROM raw_progress"), "0");
}

// --- Locks ------------------------------------------------------------------------------------

TEST(Locks, AReaderCanNeitherTakeNorBlockTheWritersLocks) {
  const std::string db = BootstrappedDatabase();
  auto reader = Connect(ReaderDsn(db));
  ASSERT_NE(reader, nullptr);
  // Every advisory lock the writer used to take: any role may take them, and the reader holds
  // them all through what follows. The writer takes none now.
  {
    pqxx::nontransaction tx(*reader);
    tx.exec(
        "SELECT pg_advisory_lock(7461646), pg_advisory_lock(7461647),"
        " pg_advisory_lock(hashtext('tidemark partitions points')),"
        " pg_advisory_lock(hashtext('tidemark partitions aggregates')),"
        " pg_advisory_lock(hashtext('tidemark aggregate changes'))");
  }
  // Migrations on the empty database, two replicas at once.
  std::vector<std::future<absl::Status>> replicas;
  for (int i = 0; i < 2; ++i) {
    replicas.push_back(std::async(std::launch::async, [&db] {
      writer::PointStore store(WriterDsn(db), absl::Hours(48));
      return store.Open(*Logger());
    }));
  }
  for (auto& r : replicas) {
    ASSERT_EQ(r.wait_for(std::chrono::seconds(120)), std::future_status::ready);
    const absl::Status opened = r.get();
    ASSERT_TRUE(opened.ok()) << opened;
  }
  // The reader now holds an open transaction that read everything it may.
  pqxx::work read(*reader);
  read.exec(
      "SELECT (SELECT count(*) FROM points), (SELECT count(*) FROM series),"
      " (SELECT count(*) FROM aggregates), (SELECT count(*) FROM narrow),"
      " (SELECT count(*) FROM aggregate_changes)");
  // ... and cannot lock the writer's lock rows, nor the rows or tables the writer writes.
  {
    auto other = Connect(ReaderDsn(db));
    ASSERT_NE(other, nullptr);
    for (const char* sql : {
             "SELECT * FROM tidemark_locks FOR UPDATE",
             "SELECT * FROM tidemark_locks FOR KEY SHARE",
             "SELECT * FROM tidemark_locks",
             "LOCK TABLE tidemark_locks IN ROW SHARE MODE",
             "SELECT 1 FROM points FOR SHARE",
             "SELECT 1 FROM series FOR KEY SHARE",
             "SELECT 1 FROM aggregates FOR UPDATE",
             "LOCK TABLE points IN SHARE MODE",
             "LOCK TABLE aggregates IN ACCESS EXCLUSIVE MODE",
             "LOCK TABLE stream_incarnation IN EXCLUSIVE MODE",
         }) {
      EXPECT_EQ(SqlState(*other, sql), "42501") << sql;
    }
  }
  // Every step of the writer that took one of those locks completes meanwhile.
  writer::PointStore store(WriterDsn(db), absl::Hours(48));
  EXPECT_TRUE(Unblocked([&] { return store.Open(*Logger()); }).ok());
  auto stored = Unblocked([&] { return StoreBatch(store, 3.5); });
  EXPECT_TRUE(stored.ok()) << stored.status();
  // A day with no partition yet: created and attached while the read is open.
  {
    v1::Event e;
    e.set_device_id("sec-device");
    e.set_time(NowUs() + absl::ToInt64Microseconds(absl::Hours(24 * 5)));
    e.set_time_unit(v1::TIME_UNIT_MICROSECONDS);
    (*e.mutable_measures())["temperature"].set_double_value(1);
    e.set_ingest_time_us(e.time());
    writer::BatchBuilder batch(absl::Hours(24 * 10), 0);
    batch.Add(0, e.SerializeAsString());
    auto future_day = Unblocked([&] { return store.Write(batch, {}); });
    EXPECT_TRUE(future_day.ok()) << future_day.status();
  }
  writer::AggregateStore aggregates(WriterDsn(db), absl::Hours(48));
  auto agg = Unblocked([&] { return aggregates.Write(OneAggregate(1)); });
  EXPECT_TRUE(agg.ok()) << agg.status();
  auto incarnation = Unblocked([&] {
    return writer::StartNewIncarnationIfKafkaLostHistory(WriterDsn(db), "sec_raw", {}, *Logger());
  });
  EXPECT_TRUE(incarnation.ok()) << incarnation.status();
  auto maintained = Unblocked([&] { return store.MaintainPartitions(absl::Hours(24 * 7)); });
  EXPECT_TRUE(maintained.ok()) << maintained.status();
  EXPECT_EQ(Query(db, "SELECT count(*) FROM aggregate_changes"), "1");
  read.commit();
}

// --- Maintenance next to a long read ------------------------------------------------------------

TEST(Maintenance, ALongReadDelaysRetentionButNeverStoring) {
  const std::string db = BootstrappedDatabase();
  writer::PointStore store(WriterDsn(db), absl::Hours(48));
  ASSERT_TRUE(store.Open(*Logger()).ok());
  ASSERT_TRUE(StoreBatch(store, 1).ok());
  auto writer_conn = Connect(WriterDsn(db));
  ASSERT_NE(writer_conn, nullptr);
  // Two expired daily partitions, a month old.
  {
    pqxx::work tx(*writer_conn);
    tx.exec("SELECT tidemark_ensure_daily_partitions('points', current_date - 30,"
            " current_date - 29)");
    tx.commit();
  }
  const std::string old1 = Query(db, "SELECT 'points_' || to_char(current_date - 30, 'YYYYMMDD')");
  const std::string old2 = Query(db, "SELECT 'points_' || to_char(current_date - 29, 'YYYYMMDD')");
  auto exists = [&](const std::string& table) {
    return Query(db, absl::StrCat("SELECT to_regclass('", table, "') IS NOT NULL")) == "t";
  };
  ASSERT_TRUE(exists(old1) && exists(old2));

  // The long read: an open transaction that read every partition of points.
  auto reader = Connect(ReaderDsn(db));
  ASSERT_NE(reader, nullptr);
  auto read = std::make_unique<pqxx::work>(*reader);
  read->exec("SELECT count(*) FROM points");

  // 1. A detach waiting for the read (as DETACH ... CONCURRENTLY does) leaves storing alone.
  auto detacher = Connect(WriterDsn(db));
  ASSERT_NE(detacher, nullptr);
  const std::string detacher_pid = [&] {
    pqxx::nontransaction tx(*detacher);
    return tx.exec1("SELECT pg_backend_pid()")[0].as<std::string>();
  }();
  // Outside a transaction block, as DETACH ... CONCURRENTLY requires.
  auto bare_detach = std::async(std::launch::async, [&]() -> std::string {
    try {
      pqxx::nontransaction tx(*detacher);
      tx.exec(absl::StrCat("ALTER TABLE points DETACH PARTITION ", old1, " CONCURRENTLY"));
      return "";
    } catch (const pqxx::sql_error& e) {
      return e.sqlstate();
    }
  });
  ASSERT_TRUE(WaitFor(
      [&] {
        return Query(db, absl::StrCat("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ",
                                      detacher_pid)) == "Lock";
      },
      absl::Seconds(60)));
  auto stored = Unblocked([&] { return StoreBatch(store, 2); });
  EXPECT_TRUE(stored.ok()) << stored.status();
  // Cancelled (as a statement timeout would): the partition is left "detach pending".
  Query(db, absl::StrCat("SELECT pg_cancel_backend(", detacher_pid, ")"));
  EXPECT_EQ(bare_detach.get(), "57014");
  EXPECT_EQ(Query(db, absl::StrCat("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = '",
                                   old1, "'::regclass")),
            "t");
  stored = Unblocked([&] { return StoreBatch(store, 3); });
  EXPECT_TRUE(stored.ok()) << stored.status();

  // 2. Retention while the read holds the partitions: nothing dropped, an error to log and
  //    retry, and storing goes on.
  writer::DailyPartitions partitions(
      "points", {.lock_timeout = absl::Milliseconds(500), .statement_timeout = absl::Seconds(5)});
  auto delayed = Unblocked(
      [&] { return partitions.Maintain(*writer_conn, absl::Hours(48), absl::Hours(24 * 7)); });
  EXPECT_EQ(delayed.status().code(), absl::StatusCode::kUnavailable) << delayed.status();
  EXPECT_TRUE(exists(old1) && exists(old2));
  stored = Unblocked([&] { return StoreBatch(store, 4); });
  EXPECT_TRUE(stored.ok()) << stored.status();

  // 3. Once the read ends, the next attempts finish the pending detach and drop both.
  read->commit();
  read.reset();
  writer_conn = Connect(WriterDsn(db));  // the store reconnects after a failure; so do we
  int dropped = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto d = partitions.Maintain(*writer_conn, absl::Hours(48), absl::Hours(24 * 7));
        if (d.ok()) dropped += *d;
        return d.ok() && !exists(old1) && !exists(old2);
      },
      absl::Seconds(60)));
  EXPECT_EQ(dropped, 2);
  EXPECT_FALSE(exists(old1));
  EXPECT_FALSE(exists(old2));
  EXPECT_EQ(Query(db, "SELECT count(*) FROM points"), "4");  // every batch stored
}

// --- The real binaries ------------------------------------------------------------------------

std::string Binary(const std::string& relative) {
  return absl::StrCat(TIDEMARK_BINARY_DIR, "/", relative);
}

void ExpectNoSecretIn(const std::string& log) {
  for (const char* secret : {kWriterPassword, kQueryPassword, "w-canary", "q-canary",
                             "dsn-canary", "uri-canary", "wrong-canary"}) {
    EXPECT_FALSE(absl::StrContains(log, secret)) << secret << " in:\n" << log;
  }
}

TEST(Binaries, APasswordFileWorksAndNoPasswordReachesTheLog) {
  const std::string db = BootstrappedDatabase();
  // The writer: a DSN naming a wrong password, which the file overrides.
  auto writer = ChildProcess::Start(
      Binary("services/timestream-writer/timestream-writer"), {"--metrics_port=0"},
      {{"TIDEMARK_PG_DSN", absl::StrCat(pg->Dsn(db, "tidemark_writer"), " password=dsn-canary")},
       {"TIDEMARK_PG_PASSWORD_FILE", WriterPasswordFile()},
       {"TIDEMARK_KAFKA_BROKERS", broker->bootstrap_servers()},
       {"TIDEMARK_METRICS_HOST", "127.0.0.1"}},
      absl::StrCat(scratch, "/writer.log"));
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains((*writer)->Log(), "msg=\"consuming\""); },
                      absl::Seconds(60)))
      << (*writer)->Log();
  EXPECT_TRUE(absl::StrContains((*writer)->Log(), "password=***")) << (*writer)->Log();
  EXPECT_EQ(Query(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'points'"),
            "tidemark_writer");

  // The query service: a URI whose userinfo names a wrong password.
  auto query = ChildProcess::Start(
      Binary("services/query/query"),
      {absl::StrCat("--listen=127.0.0.1:", testing::FreePort()), "--metrics_port=0"},
      {{"TIDEMARK_PG_DSN", absl::StrCat("postgresql://tidemark_query:uri-canary@127.0.0.1:",
                                        pg->port(), "/", db)},
       {"TIDEMARK_PG_PASSWORD_FILE", QueryPasswordFile()},
       {"TIDEMARK_METRICS_HOST", "127.0.0.1"},
       // This test is about PostgreSQL; the API's credentials are tested elsewhere.
       {"TIDEMARK_ALLOW_UNAUTHENTICATED", "true"}},
      absl::StrCat(scratch, "/query.log"));
  ASSERT_TRUE(query.ok()) << query.status();
  const int metrics_port = testing::MetricsPort(**query, absl::Seconds(60));
  ASSERT_GT(metrics_port, 0) << (*query)->Log();
  // Healthy means its probe connected to PostgreSQL with the password from the file.
  EXPECT_TRUE(WaitFor(
      [&] {
        httplib::Client client("127.0.0.1", metrics_port);
        auto res = client.Get("/health");
        return res && res->status == 200;
      },
      absl::Seconds(60)))
      << (*query)->Log();

  // A wrong password: the writer keeps retrying, and says why without the password.
  const std::string wrong = WriteFile("wrong_password", "wrong-canary\n");
  auto refused = ChildProcess::Start(
      Binary("services/timestream-writer/timestream-writer"), {"--metrics_port=0"},
      {{"TIDEMARK_PG_DSN", pg->Dsn(db, "tidemark_writer")},
       {"TIDEMARK_PG_PASSWORD_FILE", wrong},
       {"TIDEMARK_KAFKA_BROKERS", broker->bootstrap_servers()},
       {"TIDEMARK_METRICS_HOST", "127.0.0.1"}},
      absl::StrCat(scratch, "/refused.log"));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains((*refused)->Log(), "cannot open the store"); },
                      absl::Seconds(60)))
      << (*refused)->Log();
  EXPECT_TRUE(absl::StrContains((*refused)->Log(), "password authentication failed"))
      << (*refused)->Log();

  for (auto* p : {&*writer, &*query, &*refused}) {
    (**p).Signal(SIGTERM);
    EXPECT_TRUE((**p).Wait(absl::Seconds(60)).ok());
  }
  for (auto* p : {&*writer, &*query, &*refused}) ExpectNoSecretIn((**p).Log());
}

// --- Health on a server that stops answering -------------------------------------------------

// The query service's health check (SELECT 1 on a connection of its own) waiting on a backend
// that accepts packets but never answers (stopped with SIGSTOP): past the stall limit health
// turns NOT_SERVING and the stuck connection is given up, so the next check, on a new one,
// restores SERVING; and a SIGTERM while a check waits ends the process without waiting on it.
TEST(HealthProbe, AStuckCheckIsReplacedAndDoesNotHoldUpShutdown) {
  const std::string db = BootstrappedDatabase();
  auto query = ChildProcess::Start(
      Binary("services/query/query"),
      {absl::StrCat("--listen=127.0.0.1:", testing::FreePort()), "--metrics_port=0"},
      {{"TIDEMARK_PG_DSN", pg->Dsn(db, "tidemark_query")},
       {"TIDEMARK_PG_PASSWORD_FILE", QueryPasswordFile()},
       {"TIDEMARK_METRICS_HOST", "127.0.0.1"},
       {"TIDEMARK_ALLOW_UNAUTHENTICATED", "true"}},
      absl::StrCat(scratch, "/query-stuck.log"));
  ASSERT_TRUE(query.ok()) << query.status();
  const int metrics_port = testing::MetricsPort(**query, absl::Seconds(60));
  ASSERT_GT(metrics_port, 0) << (*query)->Log();
  auto health = [&] {
    httplib::Client client("127.0.0.1", metrics_port);
    auto res = client.Get("/health");
    return res ? res->status : 0;
  };
  ASSERT_TRUE(WaitFor([&] { return health() == 200; }, absl::Seconds(60))) << (*query)->Log();

  // The probe's backend: the only session of this database whose last statement is SELECT 1.
  std::vector<pid_t> stopped;
  auto resume = absl::MakeCleanup([&] {
    for (pid_t pid : stopped) kill(pid, SIGCONT);
  });
  auto stop_probe_backend = [&] {
    std::string pid;
    EXPECT_TRUE(WaitFor(
        [&] {
          pid = Query(db, absl::StrCat("SELECT pid FROM pg_stat_activity WHERE datname = '", db,
                                       "' AND query = 'SELECT 1' AND pid <> ALL('{",
                                       absl::StrJoin(stopped, ","), "}'::int[])"));
          return !pid.empty();
        },
        absl::Seconds(30)));
    if (pid.empty()) return false;
    stopped.push_back(std::stoi(pid));
    return kill(stopped.back(), SIGSTOP) == 0;
  };

  ASSERT_TRUE(stop_probe_backend());
  ASSERT_TRUE(WaitFor([&] { return health() == 503; }, absl::Seconds(60))) << (*query)->Log();
  EXPECT_TRUE(absl::StrContains((*query)->Log(), "has not answered")) << (*query)->Log();
  ASSERT_TRUE(WaitFor([&] { return health() == 200; }, absl::Seconds(60))) << (*query)->Log();

  // Stuck again; a check runs every second, so after three one is waiting.
  ASSERT_TRUE(stop_probe_backend());
  absl::SleepFor(absl::Seconds(3));
  (*query)->Signal(SIGTERM);
  // A generous bound: without the interrupt the process waits for the stopped backend for ever.
  const absl::StatusOr<int> exit_code = (*query)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status() << (*query)->Log();
  EXPECT_EQ(*exit_code, 0) << (*query)->Log();
}

// --- The query service's statement timeout ----------------------------------------------------

TEST(QueryTimeout, NoClientDeadlineBecomesALongerStatementTimeoutThanTheMaximum) {
  const absl::Duration def = absl::Seconds(30);
  const absl::Duration max = absl::Minutes(5);
  // Just under the "no deadline" threshold: capped, not a 24-hour statement timeout.
  EXPECT_EQ(query::CallTimeout(absl::Hours(24) - absl::Seconds(1), def, max), max);
  EXPECT_EQ(query::CallTimeout(absl::Hours(24), def, max), max);
  EXPECT_EQ(query::CallTimeout(absl::Minutes(6), def, max), max);
  // No deadline (gRPC reports one centuries away), or an absurd one: the default.
  EXPECT_EQ(query::CallTimeout(absl::Hours(24 * 365 * 200), def, max), def);
  EXPECT_EQ(query::CallTimeout(absl::InfiniteDuration(), def, max), def);
  // A default above the maximum is capped too.
  EXPECT_EQ(query::CallTimeout(absl::InfiniteDuration(), absl::Hours(1), max), max);
  // Shorter deadlines are honoured; a passed one stays passed.
  EXPECT_EQ(query::CallTimeout(absl::Seconds(2), def, max), absl::Seconds(2));
  EXPECT_LE(query::CallTimeout(-absl::Seconds(1), def, max), absl::ZeroDuration());
}

}  // namespace
}  // namespace tidemark
