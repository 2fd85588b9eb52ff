#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Expands a Grafana PostgreSQL panel or variable query the way Grafana does before the SQL
// reaches the database, so that tests can run a dashboard's queries against a real server:
// 1. the frontend (templateSrv.replace with the SQL data source's interpolateVariable)
//    replaces template variables;
// 2. the backend (sqleng.Interpolate) replaces $__interval_ms, $__interval,
//    $__unixEpochFrom() and $__unixEpochTo();
// 3. the backend's PostgreSQL macro engine
//    (pkg/tsdb/grafana-postgresql-datasource/macros.go, TimescaleDB off) replaces
//    $__name(args) macros.
namespace tidemark::test_support {

/// A template variable's current selection, as the SQL data source sees it.
struct TemplateVariable {
  std::vector<std::string> values;
  /// Multi-value or "Include All": Grafana then quotes every value as an SQL literal and
  /// joins them with commas ('a','b'), even a single one (as in a repeated panel). Otherwise
  /// the one value is inserted with its single quotes doubled but without quotes around it.
  bool multi = false;
};

using TemplateVariables = std::map<std::string, TemplateVariable>;

struct GrafanaQueryContext {
  absl::Time from;
  absl::Time to;
  /// The query interval ($__interval): range / max data points, at least the panel's and the
  /// data source's minimum interval.
  absl::Duration interval = absl::Minutes(1);
  TemplateVariables variables;
};

/// Step 1: `$name`, `${name}`, `${name:format}` (formats csv and sqlstring), `[[name]]` and
/// `[[name:format]]` for the variables in `variables`; references to unknown names (such as
/// the macros) are left as they are, as Grafana leaves them. Fails on an unsupported format.
absl::StatusOr<std::string> InterpolateTemplateVariables(absl::string_view sql,
                                                         const TemplateVariables& variables);

/// Steps 2 and 3. Fails as Grafana does on an unknown macro, a missing argument or an
/// interval it cannot parse.
absl::StatusOr<std::string> ExpandMacros(absl::string_view sql, absl::Time from, absl::Time to,
                                         absl::Duration interval);

/// All three steps, in Grafana's order.
absl::StatusOr<std::string> ExpandGrafanaSql(absl::string_view sql,
                                             const GrafanaQueryContext& context);

/// Parses an interval as Grafana's gtime.ParseInterval does: Go durations ("90s", "1h30m")
/// and whole days or weeks ("1d", "2w"). Months and years ("1M", "1y") depend on the current
/// date in Grafana and are refused here.
absl::StatusOr<absl::Duration> ParseGrafanaInterval(absl::string_view text);

/// Grafana's gtime.FormatInterval: the largest whole unit, e.g. "1m", "2h", "500ms".
std::string FormatGrafanaInterval(absl::Duration interval);

/// The first reference to a variable or macro left in `sql` (`$name`, `${`, `[[name`), or
/// nullopt when there is none. The panels use no dollar-quoted strings or positional
/// parameters, so any `$` followed by a name is a leftover.
std::optional<std::string> FindUnexpanded(absl::string_view sql);

}  // namespace tidemark::test_support
