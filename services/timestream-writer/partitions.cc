#include "services/timestream-writer/partitions.h"

#include "absl/strings/str_cat.h"
#include "common/pg/pg.h"
#include "pqxx/pqxx"

namespace tidemark::writer {
namespace {

constexpr int64_t kMicrosPerDay = 86'400'000'000;

int64_t DayOf(int64_t time_us) {
  return time_us >= 0 ? time_us / kMicrosPerDay : (time_us + 1) / kMicrosPerDay - 1;
}

std::string TimeoutSettings(const PartitionTimeouts& t, bool local) {
  const char* set = local ? "SET LOCAL " : "SET ";
  return absl::StrCat(set, "lock_timeout = ",
                      std::max<int64_t>(1, absl::ToInt64Milliseconds(t.lock_timeout)), "; ", set,
                      "statement_timeout = ",
                      std::max<int64_t>(1, absl::ToInt64Milliseconds(t.statement_timeout)));
}

}  // namespace

absl::Status DailyPartitions::EnsureFor(pqxx::connection& conn,
                                        const std::vector<int64_t>& times_us) {
  // Only the days that hold points: a range from the earliest to the latest would let one
  // far-future record create a partition for every day up to its date.
  std::set<int64_t> missing;
  for (int64_t t : times_us) {
    const int64_t day = DayOf(t);
    if (!known_days_.contains(day)) missing.insert(day);
  }
  if (missing.empty()) return absl::OkStatus();
  try {
    pqxx::work tx(conn);
    tx.exec0(TimeoutSettings(timeouts_, true));
    for (int64_t day : missing) {
      tx.exec_params(
          "SELECT tidemark_ensure_daily_partitions($1, 'epoch'::date + $2::integer,"
          " 'epoch'::date + $2::integer)",
          parent_, day);
    }
    tx.commit();
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
  known_days_.insert(missing.begin(), missing.end());
  return absl::OkStatus();
}

absl::StatusOr<int> DailyPartitions::Maintain(pqxx::connection& conn, absl::Duration ahead,
                                              absl::Duration retention) {
  int dropped = 0;
  try {
    {
      pqxx::work tx(conn);
      tx.exec0(TimeoutSettings(timeouts_, true));
      tx.exec_params(
          "SELECT tidemark_ensure_daily_partitions($1, (now() AT TIME ZONE 'UTC')::date - 1,"
          " ((now() + $2::interval) AT TIME ZONE 'UTC')::date)",
          parent_, absl::StrCat(absl::ToInt64Seconds(ahead), " seconds"));
      tx.commit();
      known_days_.clear();
    }
    // DETACH ... CONCURRENTLY cannot run in a transaction block: each statement commits on
    // its own, under session-level timeouts that are reset afterwards.
    pqxx::nontransaction tx(conn);
    tx.exec0(TimeoutSettings(timeouts_, false));
    struct ResetTimeouts {
      pqxx::nontransaction& tx;
      ~ResetTimeouts() {
        try {
          tx.exec0("RESET lock_timeout; RESET statement_timeout");
        } catch (const std::exception&) {
          // The connection is broken; the store reopens it.
        }
      }
    } reset{tx};
    // The expired partitions: attached, detach pending, or detached and not yet dropped.
    const pqxx::result expired = tx.exec_params(
        "SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false),"
        "       EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'relation'"
        "               AND l.database = (SELECT oid FROM pg_database"
        "                                 WHERE datname = current_database())"
        "               AND l.relation = c.oid AND l.pid <> pg_backend_pid())"
        " FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid"
        " WHERE c.relkind = 'r'"
        "   AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = $1::regclass)"
        "   AND c.relname ~ ('^' || $2 || '_[0-9]{8}$')"
        "   AND (i.inhparent IS NULL OR i.inhparent = $1::regclass)"
        "   AND (to_date(right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'"
        "       <= now() - $3::interval"
        " ORDER BY c.relname",
        parent_, parent_, absl::StrCat(absl::ToInt64Seconds(retention), " seconds"));
    std::vector<std::string> in_use;
    for (const pqxx::row& row : expired) {
      const std::string part = row[0].as<std::string>();
      const bool attached = row[1].as<bool>();
      const bool detach_pending = row[2].as<bool>();
      // Detaching a partition a long read holds would wait for the read; spare the loop that
      // wait (it shares its thread with ingestion) and try again on the next call. A read that
      // starts after this check costs at most lock_timeout.
      if (row[3].as<bool>()) {
        in_use.push_back(part);
        continue;
      }
      const std::string parent_name = tx.quote_name(parent_);
      const std::string part_name = tx.quote_name(part);
      if (detach_pending) {
        // A detach a timeout interrupted: it must be finished before any other can start.
        tx.exec0(absl::StrCat("ALTER TABLE ", parent_name, " DETACH PARTITION ", part_name,
                              " FINALIZE"));
      } else if (attached) {
        // SHARE UPDATE EXCLUSIVE on the parent, where a plain DETACH or DROP would take ACCESS
        // EXCLUSIVE and queue every insert behind the reads before it.
        tx.exec0(absl::StrCat("ALTER TABLE ", parent_name, " DETACH PARTITION ", part_name,
                              " CONCURRENTLY"));
      }
      // Detached: nobody reads or writes it through the parent any more.
      tx.exec0(absl::StrCat("DROP TABLE ", part_name));
      ++dropped;
    }
    if (!in_use.empty()) {
      return absl::UnavailableError(
          absl::StrCat("expired partition ", in_use.front(), " of ", parent_,
                       " is in use by another session (", in_use.size(),
                       " in all); retrying on the next maintenance, ", dropped, " dropped now"));
    }
    return dropped;
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
}

}  // namespace tidemark::writer
