#include "services/timestream-writer/incarnation.h"

#include "common/pg/pg.h"
#include "pqxx/pqxx"

namespace tidemark::writer {

bool KafkaLostHistory(const std::map<int32_t, int64_t>& progress,
                      const std::map<int32_t, kafka::GroupPartitionOffsets>& kafka) {
  for (const auto& [partition, stored_up_to] : progress) {
    if (stored_up_to <= 0) continue;
    auto it = kafka.find(partition);
    // A partition that no longer exists lost its records too.
    if (it == kafka.end()) return true;
    const kafka::GroupPartitionOffsets& k = it->second;
    if (k.committed < 0 || k.high_watermark < k.committed || k.high_watermark < stored_up_to) {
      return true;
    }
  }
  return false;
}

int64_t VersionBase(pqxx::transaction_base& tx) {
  return tx.exec1("SELECT epoch FROM stream_incarnation")[0].as<int64_t>() << kIncarnationShift;
}

absl::StatusOr<bool> StartNewIncarnationIfKafkaLostHistory(
    const std::string& dsn, const std::string& raw_topic,
    const std::map<int32_t, kafka::GroupPartitionOffsets>& kafka, spdlog::logger& logger) {
  absl::StatusOr<std::unique_ptr<pqxx::connection>> conn = pg::Connect(dsn);
  if (!conn.ok()) return conn.status();
  try {
    pqxx::work tx(**conn);
    // One replica at a time decides; the others then see the cleared progress.
    pg::LockNamed(tx, "incarnation");
    std::map<int32_t, int64_t> progress;
    for (const pqxx::row& row : tx.exec_params(
             "SELECT partition, next_offset FROM raw_progress WHERE topic = $1", raw_topic)) {
      progress[row[0].as<int32_t>()] = row[1].as<int64_t>();
    }
    if (!KafkaLostHistory(progress, kafka)) return false;
    const int64_t epoch = tx.exec1(
        "UPDATE stream_incarnation SET epoch = epoch + 1, started_at = now()"
        " RETURNING epoch")[0].as<int64_t>();
    tx.exec0("DELETE FROM raw_progress");
    tx.commit();
    logger.warn(
        "msg=\"Kafka lost history the store holds (topics recreated or the broker restarted "
        "empty); aggregate versions continue in a new incarnation and repairs wait for the new "
        "raw offsets\" topic={} incarnation={}",
        raw_topic, epoch);
    return true;
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
}

absl::Status CheckKafkaIncarnation(const std::string& brokers, const std::string& raw_group,
                                   const std::string& raw_topic, const std::string& dsn,
                                   spdlog::logger& logger) {
  absl::StatusOr<std::map<int32_t, kafka::GroupPartitionOffsets>> offsets =
      kafka::ReadGroupOffsets(brokers, raw_group, raw_topic);
  if (!offsets.ok() && offsets.status().code() != absl::StatusCode::kNotFound) {
    return offsets.status();
  }
  return StartNewIncarnationIfKafkaLostHistory(
             dsn, raw_topic, offsets.ok() ? *offsets : std::map<int32_t, kafka::GroupPartitionOffsets>{},
             logger)
      .status();
}

}  // namespace tidemark::writer
