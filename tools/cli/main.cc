// tidemark: the query API from the command line. `tidemark help` describes the commands; the
// logic lives in commands.cc, subscribe.cc and chart.cc, and this file only wires flags to it.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/config/config.h"
#include "common/grpc/security_flags.h"
#include "common/process/shutdown_signal.h"
#include "grpcpp/grpcpp.h"
#include "tidemark/v1/query.grpc.pb.h"
#include "tools/cli/commands.h"
#include "tools/cli/health.h"
#include "tools/cli/subscribe.h"
#include "tools/cli/token.h"
#include "tools/cli/usage.h"

ABSL_FLAG(std::string, query, "127.0.0.1:50052", "Query service address");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10), "Deadline of each call (page)");
ABSL_FLAG(std::string, measure, "", "Measure name (empty: every measure)");
ABSL_FLAG(std::string, where, "",
          "Dimension matchers, comma separated: name=value name!=value name=~regex name!~regex");
ABSL_FLAG(std::string, since, "", "Range from this long before --end (default 1h)");
ABSL_FLAG(std::string, start, "", "Range start, RFC 3339 (instead of --since)");
ABSL_FLAG(std::string, end, "", "Range end, RFC 3339 (default: now)");
ABSL_FLAG(std::optional<int64_t>, limit, std::nullopt,
          "Most rows to print, 0 for all (default 100; a chart its whole series)");
ABSL_FLAG(std::string, format, "table", "table, csv, json or chart");
ABSL_FLAG(int, width, 72, "Chart columns");
ABSL_FLAG(int, height, 12, "Chart rows");
ABSL_FLAG(std::string, window, "",
          "Window size: aggregates (default 5m), interpolate an aggregate field instead of "
          "points, subscribe a list (default: every size)");
ABSL_FLAG(bool, real_time, false, "Also the still-open windows, computed from raw points");
ABSL_FLAG(std::string, bucket, "", "Rollup bucket width, aligned to the Unix epoch (default 1h)");
ABSL_FLAG(std::string, source_window, "",
          "Stored window size to merge (default: the largest that divides --bucket)");
ABSL_FLAG(std::vector<std::string>, group_by, {},
          "Dimension names to group by, comma separated (default: one group per series)");
ABSL_FLAG(std::string, step, "", "Interpolation step (default 1m)");
ABSL_FLAG(std::string, method, "", "linear (default), locf, constant or spline");
ABSL_FLAG(std::string, field, "",
          "With --window: avg (default), min, max, sum, count, first, last");
ABSL_FLAG(std::string, max_lookback, "",
          "locf: carry a value at most this far forward (default: no bound)");
ABSL_FLAG(std::optional<double>, fill, std::nullopt,
          "constant: the value of steps without an observation (default 0)");
ABSL_FLAG(std::string, resume, "", "Continue a subscription after this resume token");
ABSL_FLAG(std::string, name, "", "token: the name the credentials file gives the token");
ABSL_FLAG(std::string, scopes, "",
          "token: read, write, write:<device-id prefix>, explicit_version (comma separated)");
ABSL_FLAG(std::string, expires, "", "token: when it stops working, RFC 3339 (default: never)");
ABSL_FLAG(std::string, service, "",
          "The service name health asks about, e.g. tidemark.v1.IngestService (default: the "
          "whole server)");

namespace {

using namespace tidemark;

// Only the flags defined here: the process also links flags of libraries it does not use.
std::vector<cli::FlagInfo> OwnFlags() {
  std::vector<cli::FlagInfo> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!absl::StrContains(flag->Filename(), "tools/cli/") &&
        !absl::StrContains(flag->Filename(), "client_security_flags")) {
      continue;
    }
    flags.push_back({std::string(name), flag->DefaultValue(), flag->Help()});
  }
  return flags;
}

// The names of the flags on the command line (`--name`, `--name=value`, `--noname`).
std::set<std::string> OnCommandLine(int argc, char** argv) {
  std::set<std::string> names;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    const absl::string_view name = arg.substr(0, arg.find('='));
    names.emplace(name);
    if (absl::StartsWith(name, "no")) names.emplace(name.substr(2));
  }
  return names;
}

cli::Invocation FromFlags(std::string command, const std::set<std::string>& on_command_line) {
  cli::Invocation in;
  in.command = std::move(command);
  in.measure = absl::GetFlag(FLAGS_measure);
  in.where = absl::GetFlag(FLAGS_where);
  in.range = {.since = absl::GetFlag(FLAGS_since),
              .start = absl::GetFlag(FLAGS_start),
              .end = absl::GetFlag(FLAGS_end)};
  in.limit = absl::GetFlag(FLAGS_limit);
  in.format = absl::GetFlag(FLAGS_format);
  in.width = absl::GetFlag(FLAGS_width);
  in.height = absl::GetFlag(FLAGS_height);
  in.window = absl::GetFlag(FLAGS_window);
  in.real_time = absl::GetFlag(FLAGS_real_time);
  in.bucket = absl::GetFlag(FLAGS_bucket);
  in.source_window = absl::GetFlag(FLAGS_source_window);
  in.group_by = absl::GetFlag(FLAGS_group_by);
  in.step = absl::GetFlag(FLAGS_step);
  in.method = absl::GetFlag(FLAGS_method);
  in.field = absl::GetFlag(FLAGS_field);
  in.max_lookback = absl::GetFlag(FLAGS_max_lookback);
  in.fill = absl::GetFlag(FLAGS_fill);
  in.resume = absl::GetFlag(FLAGS_resume);
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!on_command_line.contains(std::string(name)) &&
        std::getenv(config::EnvironmentName(name).c_str()) != nullptr) {
      in.from_environment.emplace(name);
    }
  }
  // The command line wins over the environment for where the range starts, too.
  if (in.from_environment.contains("since") && on_command_line.contains("start")) {
    in.range.since.clear();
  }
  if (in.from_environment.contains("start") && on_command_line.contains("since")) {
    in.range.start.clear();
  }
  return in;
}

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "tidemark: %s\n", std::string(message).c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (cli::WantsHelp({argv + 1, argv + argc})) {
    std::fputs(cli::UsageText(OwnFlags()).c_str(), stdout);
    return 0;
  }
  absl::StatusOr<std::vector<std::string>> args = config::ParseFlagsAndEnvironment(
      argc, argv, "tidemark <command> [flags]; `tidemark help` describes the commands");
  if (!args.ok()) return UsageError(args.status().message());
  if (args->empty()) {
    std::fputs(cli::UsageText(OwnFlags()).c_str(), stderr);
    return 2;
  }
  if (absl::Status s = config::RequirePositive("timeout", absl::GetFlag(FLAGS_timeout)); !s.ok()) {
    return UsageError(s.message());
  }
  if ((*args)[0] == "token") {
    if (args->size() > 1) {
      return UsageError(absl::StrCat("token takes flags only; left over: ",
                                     absl::StrJoin(args->begin() + 1, args->end(), " ")));
    }
    return cli::RunToken(absl::GetFlag(FLAGS_name), absl::GetFlag(FLAGS_scopes),
                         absl::GetFlag(FLAGS_expires));
  }
  absl::StatusOr<grpcutil::ClientSecurity> security = grpcutil::ClientSecurityFromFlags();
  if (!security.ok()) return UsageError(security.status().message());
  if ((*args)[0] == "health") {
    if (args->size() != 2) {
      return UsageError(
          "health takes one address: tidemark health HOST:PORT or http://HOST:PORT/health");
    }
    return cli::RunHealth((*args)[1], absl::GetFlag(FLAGS_service), absl::GetFlag(FLAGS_timeout),
                          *security);
  }
  if (!absl::GetFlag(FLAGS_service).empty()) return UsageError("--service applies to health only");
  if (args->size() > 1) {
    return UsageError(absl::StrCat("one command at a time; left over: ",
                                   absl::StrJoin(args->begin() + 1, args->end(), " ")));
  }
  absl::StatusOr<cli::Command> command =
      cli::Prepare(FromFlags((*args)[0], OnCommandLine(argc, argv)), absl::Now());
  if (!command.ok()) return UsageError(command.status().message());

  const auto* subscribe = std::get_if<v1::SubscribeRequest>(&command->request);
  // Before the channel starts gRPC's threads, so that they inherit the blocked signals and
  // Ctrl-C reaches the subscription, which then ends cleanly with its resume token.
  std::optional<process::ShutdownSignal> signal;
  if (subscribe != nullptr) signal.emplace();

  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      grpcutil::MakeChannel(absl::GetFlag(FLAGS_query), *security);
  if (!channel.ok()) return UsageError(channel.status().message());
  auto stub = v1::QueryService::NewStub(*channel);
  if (subscribe != nullptr) return cli::RunSubscribe(*stub, *subscribe, command->output, *signal);
  const int code = cli::RunQuery(*command, *stub, absl::GetFlag(FLAGS_timeout));
  // Output that could not be written (a full disk) is a failure, not rows.
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "tidemark: cannot write to stdout: %s\n",
                 errno != 0 ? std::strerror(errno) : "write error");
    return 1;
  }
  return code;
}
