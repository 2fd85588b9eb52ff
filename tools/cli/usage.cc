#include "tools/cli/usage.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "tools/cli/commands.h"

namespace tidemark::cli {
namespace {

struct CommandHelp {
  absl::string_view name;
  absl::string_view what;
  absl::string_view example;
};

constexpr CommandHelp kCommands[] = {
    {"series", "List the series that match --measure and --where.",
     "tidemark series --measure=temperature --where='site=~north-.*' --limit=10"},
    {"points", "Raw points of the matching series in a time range.",
     "tidemark points --measure=speed --where=device_id=turbine-0001 --since=15m"},
    {"aggregates", "Stored windows of one size: count, avg, min, max, sum, first, last.",
     "tidemark aggregates --measure=temperature --window=5m --since=6h --real_time"},
    {"rollup", "Epoch-aligned buckets merged from stored windows, per series or per group.",
     "tidemark rollup --measure=power --bucket=1d --since=7d --group_by=site,region"},
    {"interpolate", "Values at a fixed step, from raw points or one field of stored windows.",
     "tidemark interpolate --measure=temperature --step=1m --method=spline --since=2h"},
    {"subscribe", "Each new version of each matching window as it is stored, until Ctrl-C.",
     "tidemark subscribe --measure=temperature --window=5m,1h"},
    {"health",
     "Whether a service can do its job (gRPC health, or an http:// /health URL);\n"
     "               exits 0 when SERVING, 1 otherwise, 2 for a usage mistake.",
     "tidemark health 127.0.0.1:50051 --service=tidemark.v1.IngestService"},
    {"token",
     "A new bearer token (first line) and its credentials-file line (second line),\n"
     "               which stores only the token's SHA-256.",
     "tidemark token --name=fleet-north --scopes=write:turbine-north-"},
    {"help", "This text.", "tidemark help"},
};

constexpr absl::string_view kNotes = R"(Selecting series
  --measure=NAME        one measure (empty: every measure)
  --where=MATCHERS      comma separated, all must hold; a series without the dimension has
                        the empty value:  name=value  name!=value  name=~regex  name!~regex
                        regexes are RE2 and match the whole value; \, is a literal comma;
                        spaces around names and values are ignored
                        e.g. --where='site=~north-.*,device_id!=turbine-0007'

Time ranges
  --since=1h (default), or --start and --end in RFC 3339 (2024-05-01T10:00:00Z; --end
  defaults to now); both ends are included. aggregates and rollup also include the window or
  bucket already open at the start. Durations: 250ms, 90s, 15m, 2h, 1h30m, 7d (d = 24h).

Output (--format)
  table (default), csv, json (one object a line), or chart: the first matching series drawn
  as a line chart of --height rows by --width columns (points, aggregates and rollup draw the
  mean with the min..max range behind it as ':'). --limit caps rows (default 100; a chart
  reads its whole series, subscribe runs on).

Errors print the gRPC status name and message; a bad command line exits 2, a failed call 1.
subscribe resumes by itself when the service is unavailable; after Ctrl-C it prints the
token for --resume. Every flag can also be set as TIDEMARK_<NAME> (TIDEMARK_QUERY=host:port).

Credentials
  --token_file=FILE or TIDEMARK_TOKEN sends a bearer token; --tls_ca_file=CA.pem connects with
  TLS; --tls_client_cert_file and --tls_client_key_file add a client certificate (and
  imply TLS, as --tls and --tls_server_name do).
)";

constexpr size_t kHelpColumn = 24;
constexpr size_t kLineWidth = 100;

// The flag with its default, then its help in a column of its own, wrapped at word
// boundaries; a long default pushes the help to the next line.
std::string FlagLine(const FlagInfo& f) {
  std::string out;
  std::string line = absl::StrCat("  --", f.name);
  if (!f.default_value.empty()) absl::StrAppend(&line, "=", f.default_value);
  const std::string help = absl::StrCat(f.help, " (", config::EnvironmentName(f.name), ")");
  if (line.size() >= kHelpColumn) {
    absl::StrAppend(&out, line, "\n");
    line.clear();
  }
  line.resize(kHelpColumn, ' ');
  bool line_empty = true;
  for (absl::string_view word : absl::StrSplit(help, ' ', absl::SkipEmpty())) {
    if (!line_empty && line.size() + 1 + word.size() > kLineWidth) {
      absl::StrAppend(&out, line, "\n");
      line.assign(kHelpColumn, ' ');
      line_empty = true;
    }
    absl::StrAppend(&line, line_empty ? "" : " ", word);
    line_empty = false;
  }
  return absl::StrCat(out, line, "\n");
}

}  // namespace

bool WantsHelp(std::span<const char* const> args) {
  bool first_positional = true;
  for (absl::string_view arg : args) {
    if (arg == "--") return false;
    if (arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpshort" ||
        arg == "-helpshort") {
      return true;
    }
    if (!absl::StartsWith(arg, "-")) {
      if (first_positional && arg == "help") return true;
      first_positional = false;
    }
  }
  return false;
}

std::string UsageText(std::span<const FlagInfo> flags) {
  std::string out =
      "tidemark: read what Tidemark stored, through its query service "
      "(tidemark.v1.QueryService).\n\n"
      "Usage: tidemark <command> [flags]\n\nCommands\n";
  for (const CommandHelp& c : kCommands) {
    absl::StrAppend(&out,
                    absl::StrFormat("  %-12s %s\n  %-12s   %s\n", c.name, c.what, "", c.example));
  }
  absl::StrAppend(&out, "\n", kNotes);

  std::vector<FlagInfo> common;
  std::vector<std::pair<FlagInfo, std::string>> per_command;
  for (const FlagInfo& f : flags) {
    const std::span<const CommandFlag> command_flags = CommandFlags();
    const auto it = std::find_if(command_flags.begin(), command_flags.end(),
                                 [&](const CommandFlag& c) { return c.flag == f.name; });
    if (it == command_flags.end()) {
      common.push_back(f);
    } else {
      per_command.emplace_back(f, std::string(it->commands));
    }
  }
  auto by_name = [](const FlagInfo& a, const FlagInfo& b) { return a.name < b.name; };
  std::sort(common.begin(), common.end(), by_name);
  std::sort(per_command.begin(), per_command.end(),
            [&](const auto& a, const auto& b) { return by_name(a.first, b.first); });
  absl::StrAppend(&out, "\nCommon flags\n");
  for (const FlagInfo& f : common) absl::StrAppend(&out, FlagLine(f));
  absl::StrAppend(&out, "\nCommand flags [the commands that read them]\n");
  for (auto& [f, commands] : per_command) {
    FlagInfo annotated = f;
    absl::StrAppend(&annotated.help, " [", commands, "]");
    absl::StrAppend(&out, FlagLine(annotated));
  }
  return out;
}

}  // namespace tidemark::cli
