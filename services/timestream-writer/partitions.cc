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
  try {
    pqxx::work tx(conn);
    tx.exec_params(
        "SELECT tidemark_ensure_daily_partitions($1, (now() AT TIME ZONE 'UTC')::date - 1,"
        " ((now() + $2::interval) AT TIME ZONE 'UTC')::date)",
        parent_, absl::StrCat(absl::ToInt64Seconds(ahead), " seconds"));
    pqxx::row dropped =
        tx.exec_params1("SELECT tidemark_drop_expired_partitions($1, $2::interval)", parent_,
                        absl::StrCat(absl::ToInt64Seconds(retention), " seconds"));
    tx.commit();
    known_days_.clear();
    return dropped[0].as<int>();
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
}

}  // namespace tidemark::writer
