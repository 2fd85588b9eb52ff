#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tidemark/v1/query.grpc.pb.h"
#include "tools/cli/args.h"
#include "tools/cli/output.h"

namespace tidemark::cli {

/// The command line as given; main fills it from the flags, so that everything below is a
/// function of plain values.
struct Invocation {
  std::string command;
  std::string measure;
  std::string where;
  RangeArgs range;
  /// Unset: 100 rows; for a chart every row of the charted series, for subscribe no limit.
  std::optional<int64_t> limit;
  std::string format = "table";
  int width = 72;
  int height = 12;
  std::string window;
  bool real_time = false;
  // Empty where a flag was not given, so that a command that does not read it can refuse it;
  // the defaults (1h, 1m, linear) apply in Prepare.
  std::string bucket;
  std::string source_window;
  std::vector<std::string> group_by;
  std::string step;
  std::string method;
  std::string field;
  std::string max_lookback;
  std::optional<double> fill;
  std::string resume;
  /// Flags set only by their TIDEMARK_* variable, not on the command line: defaults for the
  /// commands that read them, so another command does not refuse them.
  std::set<std::string> from_environment;
};

/// A flag that only some commands read: any other command refuses it rather than ignore it.
struct CommandFlag {
  absl::string_view flag;
  /// The commands that read it, as a list for a person: "aggregates, interpolate".
  absl::string_view commands;
};

/// Every such flag, for Prepare and for the usage text.
std::span<const CommandFlag> CommandFlags();

/// A command ready to run: the request it sends and how it prints.
struct Command {
  std::variant<v1::ListSeriesRequest, v1::ReadPointsRequest, v1::ReadAggregatesRequest,
               v1::RollupRequest, v1::InterpolateRequest, v1::SubscribeRequest>
      request;
  Output output;
};

/// Checks the invocation and builds its request without touching the network. Every error is
/// InvalidArgument with a message that names the flag: the command could never succeed.
absl::StatusOr<Command> Prepare(const Invocation& invocation, absl::Time now);

/// Runs a command that is not a subscription: every page in turn, each call with its own
/// `timeout`, printing as the pages arrive. Returns the exit code (0, or 1 after printing the
/// failed call's status).
int RunQuery(const Command& command, v1::QueryService::StubInterface& stub, absl::Duration timeout);

}  // namespace tidemark::cli
