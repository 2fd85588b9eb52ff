#include "services/archive/replay.h"

#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

namespace tidemark::archive {
absl::StatusOr<ReplayOutcome> Replay(Lake& lake, kafka::Producer& producer,
                                     DeliveryFailures& failures, const ReplayRequest& request,
                                     const std::atomic<bool>* stop) {
  auto stopping = [stop] { return stop != nullptr && stop->load(); };
  if (request.to_us <= request.from_us) {
    return absl::InvalidArgumentError("--to must be after --from");
  }
  constexpr int64_t kHour = 3'600'000'000;
  ReplayOutcome outcome;
  const int64_t first_hour = request.from_us - ((request.from_us % kHour) + kHour) % kHour;
  for (int64_t hour = first_hour; hour < request.to_us && !outcome.stopped; hour += kHour) {
    if (stopping()) {
      outcome.stopped = true;
      break;
    }
    absl::StatusOr<std::vector<std::string>> files = lake.List(HourPartition(hour) + "/");
    if (!files.ok()) return files.status();
    for (const std::string& file : *files) {
      if (outcome.stopped || stopping()) {
        outcome.stopped = true;
        break;
      }
      if (!absl::EndsWith(file, ".jsonl.gz")) continue;
      absl::StatusOr<std::string> gz = lake.Get(file);
      if (!gz.ok()) return gz.status();
      absl::StatusOr<std::string> text = Gunzip(*gz);
      if (!text.ok()) return absl::DataLossError(absl::StrCat(file, ": ", text.status().message()));
      ++outcome.files;
      for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
        if (stopping()) {
          outcome.stopped = true;
          break;
        }
        absl::StatusOr<v1::Event> event = EventFromJsonLine(line);
        if (!event.ok()) {
          return absl::DataLossError(absl::StrCat(file, ": ", event.status().message()));
        }
        if (request.device_id && event->device_id() != *request.device_id) continue;
        absl::StatusOr<int64_t> at = PartitionInstant(*event, request.partition_by);
        if (!at.ok() || *at < request.from_us || *at >= request.to_us) continue;
        event->set_replayed(true);  // already in the lake: not to be archived again
        absl::Status s;
        // The local queue is bounded: wait for room rather than fail.
        while (absl::IsResourceExhausted(s = producer.Produce(request.topic, event->device_id(),
                                                              event->SerializeAsString(),
                                                              &failures))) {
          if (absl::Status f = producer.Flush(absl::Seconds(30)); !f.ok()) return f;
        }
        if (!s.ok()) return s;
        ++outcome.events;
      }
    }
  }
  if (absl::Status s = producer.Flush(absl::Minutes(5)); !s.ok()) return s;
  if (failures.failed() > 0) {
    return absl::UnavailableError(
        absl::StrCat(failures.failed(),
                     " events were not acknowledged by Kafka; replay again (a replay of "
                     "the same range changes nothing that is already stored)"));
  }
  return outcome;
}

}  // namespace tidemark::archive
