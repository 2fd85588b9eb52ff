#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidemark::kafka {

/// Where a consumer group stands on one partition, and how far the partition goes.
struct GroupPartitionOffsets {
  /// The group's committed offset, or -1 when the group has none for the partition.
  int64_t committed = -1;
  /// The partition's end (the offset the next record will get).
  int64_t high_watermark = 0;
};

/// Reads, without joining the group, the committed offsets of `group` and the high
/// watermarks of every partition of `topic`. NOT_FOUND when the topic does not exist.
absl::StatusOr<std::map<int32_t, GroupPartitionOffsets>> ReadGroupOffsets(
    const std::string& brokers, const std::string& group, const std::string& topic,
    absl::Duration timeout = absl::Seconds(10));

}  // namespace tidemark::kafka
