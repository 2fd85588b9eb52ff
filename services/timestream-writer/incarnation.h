#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "common/kafka/group_offsets.h"
#include "common/log/log.h"
#include "pqxx/connection"
#include "pqxx/transaction_base"

namespace tidemark::writer {

/// Aggregate versions come from raw offsets (2x, 2y + 1), and the repair gate compares raw
/// offsets with the raw progress the writer stored. When Kafka loses a topic's history (the
/// development broker restarted, a topic recreated) offsets start again at 0: new revisions
/// would look stale next to stored ones, and repairs would pass a gate set by the old offsets.
/// Each such loss starts a new incarnation: stored versions are the aggregator's version plus
/// incarnation << kIncarnationShift, and the raw progress starts empty.
inline constexpr int kIncarnationShift = 48;

/// Whether Kafka lost history the writer has stored: for some partition of the raw topic
/// the writer stored records up to `progress` while the group has no committed offset there,
/// or the partition now ends before the committed offset or the stored progress.
bool KafkaLostHistory(const std::map<int32_t, int64_t>& progress,
                      const std::map<int32_t, kafka::GroupPartitionOffsets>& kafka);

/// The base added to every aggregate version in the current incarnation, read in the
/// transaction that stores them.
int64_t VersionBase(pqxx::transaction_base& tx);

/// Compares the raw progress stored for `raw_topic` with Kafka's offsets and, when Kafka lost
/// history, starts a new incarnation (in one transaction: the incarnation goes up and the raw
/// progress of every topic is cleared). Run before the writer's loops start consuming.
/// Returns whether a new incarnation started.
absl::StatusOr<bool> StartNewIncarnationIfKafkaLostHistory(
    const std::string& dsn, const std::string& raw_topic,
    const std::map<int32_t, kafka::GroupPartitionOffsets>& kafka, spdlog::logger& logger);

/// Reads the raw group's offsets from Kafka (a missing topic has none) and starts a new
/// incarnation if Kafka lost history; what the writer runs at start-up.
absl::Status CheckKafkaIncarnation(const std::string& brokers, const std::string& raw_group,
                                   const std::string& raw_topic, const std::string& dsn,
                                   spdlog::logger& logger);

}  // namespace tidemark::writer
