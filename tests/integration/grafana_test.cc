// The provisioned Grafana dashboard against a real PostgreSQL: every template variable query
// and every panel query, expanded as Grafana's PostgreSQL data source expands them, runs as a
// login in the read-only role tidemark_reader (as Grafana connects) and returns rows over
// sample data. Also the macro expander itself, on hand-written inputs.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/log/log.h"
#include "common/pg/pg.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pqxx/pqxx"
#include "services/timestream-writer/schema.h"
#include "tests/support/grafana_macros.h"
#include "tests/support/pg_cluster.h"

namespace tidemark::test_support {
namespace {

using Json = nlohmann::json;

// The dashboard's time range in the tests; the sample data extends an hour beyond both ends,
// so a panel that ignores the range returns rows outside it.
const absl::Time kFrom =
    absl::FromCivil(absl::CivilSecond(2024, 5, 1, 10, 0, 0), absl::UTCTimeZone());
const absl::Time kTo = kFrom + absl::Hours(1);
// The SQL data sources' default minimum interval (jsonData.timeInterval unset); over an hour
// Grafana's computed interval is below it, so $__interval is this unless a panel asks more.
const absl::Duration kDataSourceMinInterval = absl::Minutes(1);
// The role every query runs as: a login in tidemark_reader, like Grafana's tidemark_query.
constexpr char kReaderLogin[] = "tidemark_query";

// ---------------------------------------------------------------------------------------
// The expander on hand-written inputs, against what Grafana produces for them.

absl::StatusOr<std::string> Expand(absl::string_view sql,
                                   absl::Duration interval = absl::Minutes(1)) {
  return ExpandMacros(sql, kFrom, kTo + absl::Milliseconds(500), interval);
}

TEST(GrafanaMacros, TimeRangeMacros) {
  EXPECT_EQ(Expand("WHERE $__timeFilter(p.time)").value(),
            "WHERE p.time BETWEEN '2024-05-01T10:00:00Z' AND '2024-05-01T11:00:00.5Z'");
  EXPECT_EQ(Expand("SELECT $__time(t), x WHERE t >= $__timeFrom() AND t <= $__timeTo()").value(),
            "SELECT t AS \"time\", x WHERE t >= '2024-05-01T10:00:00Z'"
            " AND t <= '2024-05-01T11:00:00.5Z'");
  EXPECT_EQ(
      Expand("$__unixEpochFilter( ts ) OR ts IN ($__unixEpochFrom(), $__unixEpochTo())").value(),
      "ts >= 1714557600 AND ts <= 1714561200 OR ts IN (1714557600, 1714561200)");
  EXPECT_EQ(Expand("$__timeEpoch(t)").value(), "extract(epoch from t) as \"time\"");
}

TEST(GrafanaMacros, TimeGroupAndInterval) {
  EXPECT_EQ(Expand("SELECT $__timeGroupAlias(a.window_start, $__interval), avg(x)").value(),
            "SELECT floor(extract(epoch from a.window_start)/60)*60 AS \"time\", avg(x)");
  // Grafana before 5.3 let $__timeGroup add the alias; it still does when a comma follows.
  EXPECT_EQ(Expand("SELECT $__timeGroup(t, '1h'), avg(x) GROUP BY 1").value(),
            "SELECT floor(extract(epoch from t)/3600)*3600 AS \"time\", avg(x) GROUP BY 1");
  EXPECT_EQ(Expand("GROUP BY $__timeGroup(t, 5m, NULL) ORDER BY 1").value(),
            "GROUP BY floor(extract(epoch from t)/300)*300 ORDER BY 1");
  // Seconds are printed as Go's %v prints a float64.
  EXPECT_EQ(Expand("$__timeGroup(t, 500ms)").value(), "floor(extract(epoch from t)/0.5)*0.5");
  EXPECT_EQ(Expand("$__timeGroup(t, 2w)").value(),
            "floor(extract(epoch from t)/1.2096e+06)*1.2096e+06");
  EXPECT_EQ(Expand("$__unixEpochGroupAlias(ts, 1d)").value(),
            "floor((ts)/86400)*86400 AS \"time\"");
  // $__interval is the largest whole unit, $__interval_ms exact.
  EXPECT_EQ(Expand("$__interval $__interval_ms", absl::Seconds(90)).value(), "1m 90000");
  EXPECT_EQ(FormatGrafanaInterval(absl::Milliseconds(250)), "250ms");
  EXPECT_EQ(FormatGrafanaInterval(absl::Hours(49)), "2d");
}

TEST(GrafanaMacros, MacroErrorsFailTheQuery) {
  EXPECT_FALSE(Expand("$__timeGroupp(t, 1m)").ok());            // unknown macro
  EXPECT_FALSE(Expand("$__timeGroup(t)").ok());                 // no interval
  EXPECT_FALSE(Expand("$__timeGroup(t, fortnight)").ok());      // unparsable interval
  EXPECT_FALSE(Expand("$__timeGroup(t, 1m, sometimes)").ok());  // bad fill
  EXPECT_FALSE(Expand("$__timeGroup(t, 1M)").ok());             // calendar unit, not supported here
  // Not a macro call: left alone, for FindUnexpanded to report.
  EXPECT_EQ(Expand("$__timeFilter").value(), "$__timeFilter");
}

TEST(GrafanaMacros, TemplateVariables) {
  const TemplateVariables variables = {
      {"measure", {{"o'k"}, false}},
      {"window", {{"1 minute", "5 minutes"}, true}},
      {"repeated", {{"5 minutes"}, true}},  // one copy of a panel repeated over a multi value
  };
  auto interpolate = [&](absl::string_view sql) {
    return InterpolateTemplateVariables(sql, variables).value();
  };
  EXPECT_EQ(interpolate("m = '$measure'"), "m = 'o''k'");
  EXPECT_EQ(interpolate("w IN ($window)"), "w IN ('1 minute','5 minutes')");
  EXPECT_EQ(interpolate("w IN ($repeated)"), "w IN ('5 minutes')");
  EXPECT_EQ(interpolate("${window:csv}|${window:sqlstring}|${measure:sqlstring}"),
            "1 minute,5 minutes|'1 minute','5 minutes'|'o''k'");
  EXPECT_EQ(interpolate("${measure}|[[measure]]|[[window:csv]]"), "o''k|o''k|1 minute,5 minutes");
  // Longer names that start with a variable's name, unknown names and macros stay.
  EXPECT_EQ(interpolate("$measure_x $nope ${nope} $__timeFilter(t)"),
            "$measure_x $nope ${nope} $__timeFilter(t)");
  EXPECT_FALSE(InterpolateTemplateVariables("${measure:percentencode}", variables).ok());
  EXPECT_FALSE(InterpolateTemplateVariables("$x", {{"x", {{"a", "b"}, false}}}).ok());
}

TEST(GrafanaMacros, FindUnexpanded) {
  EXPECT_EQ(FindUnexpanded("SELECT 1 WHERE price = 'US$'"), std::nullopt);
  EXPECT_EQ(FindUnexpanded("WHERE m = '$nope'").value_or(""), "$nope'");
  EXPECT_TRUE(FindUnexpanded("${nope}").has_value());
  EXPECT_TRUE(FindUnexpanded("[[nope]]").has_value());
  EXPECT_TRUE(FindUnexpanded("WHERE $__timeFilter(t)").has_value());
}

// ---------------------------------------------------------------------------------------
// The dashboard against PostgreSQL.

// The provisioned dashboard's panels, including those inside rows.
void CollectPanels(const Json& panels, std::vector<Json>& out) {
  for (const Json& panel : panels) {
    if (panel.contains("panels")) CollectPanels(panel["panels"], out);
    if (panel.value("type", "") != "row") out.push_back(panel);
  }
}

// A custom variable's options: its query, split at commas.
std::vector<std::string> CustomOptions(const Json& variable) {
  std::vector<std::string> options;
  for (absl::string_view o : absl::StrSplit(variable.value("query", ""), ',')) {
    options.emplace_back(absl::StripAsciiWhitespace(o));
  }
  return options;
}

// A query variable's SQL: a string, or in newer dashboards an object holding it.
std::string VariableSql(const Json& variable) {
  const Json& query = variable["query"];
  if (query.is_string()) return query;
  return query.value("rawSql", query.value("query", ""));
}

std::string Describe(const TemplateVariables& variables) {
  std::vector<std::string> parts;
  for (const auto& [name, v] : variables) {
    parts.push_back(absl::StrCat(name, "=", v.multi ? "[" : "", absl::StrJoin(v.values, "|"),
                                 v.multi ? "]" : ""));
  }
  return absl::StrJoin(parts, " ");
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

// One database for the binary: the writer's schema, sample data, and a reader login.
struct Environment {
  absl::Status status;
  Json dashboard;
  std::vector<Json> panels;
  /// The options of the dashboard's `window` variable: sample aggregates exist for each.
  std::vector<std::string> windows;
  std::unique_ptr<pqxx::connection> owner;
  std::unique_ptr<pqxx::connection> reader;
};

void LoadSample(pqxx::connection& conn, const std::vector<std::string>& windows) {
  pqxx::work tx(conn);
  tx.exec(
      "SELECT tidemark_ensure_daily_partitions('points', date '2024-05-01', date '2024-05-01')");
  tx.exec(
      "SELECT tidemark_ensure_daily_partitions('aggregates', date '2024-05-01',"
      " date '2024-05-01')");
  // Periods differ between series of the same site, so windows hold different counts and an
  // average of averages would differ from the count-weighted average. turbine-0003 has no
  // model, so a rollup by model must leave it out rather than draw a nameless line.
  tx.exec0(R"sql(
CREATE TEMPORARY TABLE sample (series_id bigint, measure_name text, device_id text,
                               dimensions jsonb, period_s integer) ON COMMIT DROP;
INSERT INTO sample VALUES
  (1, 'temperature', 'turbine-0001', '{"site": "north", "model": "T1"}', 7),
  (2, 'temperature', 'turbine-0002', '{"site": "north", "model": "T2"}', 11),
  (3, 'temperature', 'turbine-0003', '{"site": "south"}', 13),
  (4, 'speed', 'turbine-0001', '{"site": "north", "model": "T1"}', 10),
  (5, 'speed', 'turbine-0003', '{"site": "south"}', 17);
INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)
SELECT series_id, measure_name || dimensions::text, measure_name, device_id,
       dimensions || jsonb_build_object('device_id', device_id)
FROM sample;
)sql");
  tx.exec0(absl::StrCat(R"sql(
INSERT INTO points (series_id, time, value_double, value_int, version, ingested_at)
SELECT series_id, t,
       CASE WHEN measure_name = 'temperature'
            THEN 15 + 2 * series_id + 3 * sin(extract(epoch FROM t) / 300) END,
       CASE WHEN measure_name = 'speed' THEN (extract(epoch FROM t)::bigint / period_s) % 40 END,
       1, t
FROM sample, generate_series(timestamptz ')sql",
                        Rfc3339(kFrom - absl::Hours(1)), "', timestamptz '",
                        Rfc3339(kTo + absl::Hours(1)), R"sql(',
                             make_interval(secs => period_s)) AS t
)sql"));
  // Aggregates as the aggregator computes them, for every window size the dashboard offers.
  std::vector<std::string> quoted;
  for (const std::string& w : windows) quoted.push_back(tx.quote(w));
  tx.exec0(absl::StrCat(R"sql(
INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg, first,
                        last, version)
SELECT series_id, w, date_bin(w, time, timestamptz 'epoch'), count(*), sum(v), min(v), max(v),
       avg(v), (array_agg(v ORDER BY time))[1], (array_agg(v ORDER BY time DESC))[1], 1
FROM (SELECT series_id, time, coalesce(value_double, value_int) AS v FROM points) AS p
CROSS JOIN unnest(ARRAY[)sql",
                        absl::StrJoin(quoted, ","), R"sql(]::interval[]) AS w
GROUP BY series_id, w, 3
)sql"));
  tx.exec0(absl::StrCat("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '",
                        kReaderLogin, "') THEN CREATE ROLE ", kReaderLogin, " LOGIN IN ROLE ",
                        writer::kReaderRole, "; END IF; END $$"));
  tx.commit();
}

absl::Status Prepare(Environment& env) {
  std::ifstream in(TIDEMARK_SOURCE_DIR "/deploy/grafana/provisioning/dashboards/devices.json");
  if (!in) return absl::NotFoundError("cannot open deploy/grafana/.../devices.json");
  env.dashboard = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (env.dashboard.is_discarded()) return absl::InvalidArgumentError("devices.json is not JSON");
  CollectPanels(env.dashboard.value("panels", Json::array()), env.panels);
  for (const Json& variable : env.dashboard["templating"]["list"]) {
    if (variable.value("name", "") == "window") env.windows = CustomOptions(variable);
  }
  if (env.windows.empty()) return absl::NotFoundError("the dashboard has no window variable");

  testing::PgCluster& pg = testing::SharedPgCluster();
  const std::string db = "grafana_dashboard";
  if (absl::StatusOr<std::string> dsn = pg.CreateDatabase(db); !dsn.ok()) return dsn.status();
  absl::StatusOr<std::unique_ptr<pqxx::connection>> owner = pg::Connect(pg.Dsn(db));
  if (!owner.ok()) return owner.status();
  env.owner = *std::move(owner);
  static const auto logger = log::MakeLogger("grafana-test");
  if (absl::Status s = pg::ApplyMigrations(*env.owner, writer::SchemaMigrations(), *logger);
      !s.ok()) {
    return s;
  }
  try {
    LoadSample(*env.owner, env.windows);
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
  absl::StatusOr<std::unique_ptr<pqxx::connection>> reader = pg::Connect(pg.Dsn(db, kReaderLogin));
  if (!reader.ok()) return reader.status();
  env.reader = *std::move(reader);
  return absl::OkStatus();
}

// Constructed after the shared cluster, so destroyed (connections closed) before it stops.
Environment& Env() {
  static Environment env = [] {
    Environment e;
    e.status = Prepare(e);
    return e;
  }();
  return env;
}

// Runs SQL as the reader outside any explicit transaction, as Grafana's data source does.
absl::StatusOr<pqxx::result> RunAsReader(const std::string& sql) {
  try {
    pqxx::nontransaction tx(*Env().reader);
    return tx.exec(sql);
  } catch (const std::exception& e) {
    return pg::FromException(e);
  }
}

class GrafanaDashboard : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Env().status.ok()) << Env().status; }
};

TEST_F(GrafanaDashboard, ReaderLoginCannotWrite) {
  absl::StatusOr<pqxx::result> super =
      RunAsReader("SELECT rolsuper FROM pg_roles WHERE rolname = current_user");
  ASSERT_TRUE(super.ok()) << super.status();
  EXPECT_EQ((*super)[0][0].as<std::string>(), "f");
  const absl::StatusOr<pqxx::result> write = RunAsReader("DELETE FROM aggregates");
  EXPECT_FALSE(write.ok());
  EXPECT_TRUE(absl::StrContains(write.status().message(), "permission denied")) << write.status();
}

// Expands a target's rawSql for `variables` and runs it as the reader; records a failure
// (and returns nullopt) if anything is left unexpanded or the query fails.
std::optional<pqxx::result> RunTarget(const Json& panel, const Json& target,
                                      const TemplateVariables& variables,
                                      const std::string& where) {
  GrafanaQueryContext context{kFrom, kTo, kDataSourceMinInterval, variables};
  if (panel.contains("interval")) {
    absl::StatusOr<absl::Duration> min = ParseGrafanaInterval(panel.value("interval", ""));
    if (!min.ok()) {
      ADD_FAILURE() << where << ": " << min.status();
      return std::nullopt;
    }
    context.interval = std::max(context.interval, *min);
  }
  absl::StatusOr<std::string> sql = ExpandGrafanaSql(target.value("rawSql", ""), context);
  if (!sql.ok()) {
    ADD_FAILURE() << where << ": Grafana would refuse the query: " << sql.status();
    return std::nullopt;
  }
  if (std::optional<std::string> left = FindUnexpanded(*sql)) {
    ADD_FAILURE() << where << ": left unexpanded at `" << *left << "` in\n" << *sql;
    return std::nullopt;
  }
  absl::StatusOr<pqxx::result> rows = RunAsReader(*sql);
  if (!rows.ok()) {
    ADD_FAILURE() << where << ": " << rows.status() << "\n" << *sql;
    return std::nullopt;
  }
  if (rows->empty()) {
    ADD_FAILURE() << where << ": no rows over the sample data from\n" << *sql;
    return std::nullopt;
  }
  if (target.value("format", "time_series") != "time_series") return *std::move(rows);

  // Grafana needs a column named time for a time series, and the range must hold. A column
  // named metric names the series; a NULL there draws a line nobody can identify.
  std::optional<pqxx::oid> time_type;
  for (pqxx::row::size_type i = 0; i < rows->columns(); ++i) {
    const std::string name = rows->column_name(i);
    if (name == "time") time_type = rows->column_type(i);
    if (name != "metric") continue;
    for (const pqxx::row& row : *rows) {
      if (row[i].is_null()) {
        ADD_FAILURE() << where << ": a row without a series name (metric is NULL)\n" << *sql;
        return std::nullopt;
      }
    }
  }
  if (!time_type) {
    ADD_FAILURE() << where << ": a time series without a column named time\n" << *sql;
    return std::nullopt;
  }
  constexpr pqxx::oid kTimestamp = 1114, kTimestamptz = 1184;
  const std::string bounds =
      *time_type == kTimestamp || *time_type == kTimestamptz
          ? absl::StrCat("'", Rfc3339(kFrom), "' AND '", Rfc3339(kTo), "'")
          : absl::StrCat(absl::ToUnixSeconds(kFrom), " AND ", absl::ToUnixSeconds(kTo));
  absl::StatusOr<pqxx::result> outside = RunAsReader(
      absl::StrCat("SELECT count(*) FROM (", *sql, ") AS q WHERE q.\"time\" NOT BETWEEN ", bounds));
  if (!outside.ok() || (*outside)[0][0].as<int64_t>() != 0) {
    ADD_FAILURE() << where << ": rows outside the dashboard's time range ("
                  << (outside.ok() ? (*outside)[0][0].as<std::string>()
                                   : std::string(outside.status().message()))
                  << ")\n"
                  << *sql;
  }
  return *std::move(rows);
}

TEST_F(GrafanaDashboard, EveryQueryRunsAsReaderAndReturnsRows) {
  const Environment& env = Env();
  const Json& variables = env.dashboard.at("templating").at("list");
  // How often each variable query and each panel target ran, so that a panel the
  // enumeration never reached fails the test rather than passing unseen.
  std::map<std::string, int> runs;
  // Column names each panel's queries returned, for its field overrides.
  std::map<size_t, std::set<std::string>> columns;

  auto run_panels = [&](const TemplateVariables& selection) {
    for (size_t p = 0; p < env.panels.size(); ++p) {
      const Json& panel = env.panels[p];
      std::vector<TemplateVariables> copies = {selection};
      if (const std::string repeat = panel.value("repeat", ""); !repeat.empty()) {
        // One copy per selected value; the variable stays multi-valued in each copy.
        copies.clear();
        const auto it = selection.find(repeat);
        ASSERT_TRUE(it != selection.end()) << "panel repeats over unknown $" << repeat;
        for (const std::string& value : it->second.values) {
          TemplateVariables copy = selection;
          copy[repeat].values = {value};
          copies.push_back(std::move(copy));
        }
      }
      for (const TemplateVariables& copy : copies) {
        for (const Json& target : panel.value("targets", Json::array())) {
          const std::string key = absl::StrCat("panel \"", panel.value("title", ""), "\" target ",
                                               target.value("refId", "?"));
          ++runs[key];
          std::optional<pqxx::result> rows =
              RunTarget(panel, target, copy, absl::StrCat(key, " with ", Describe(copy)));
          if (!rows) continue;
          for (pqxx::row::size_type i = 0; i < rows->columns(); ++i) {
            columns[p].insert(rows->column_name(i));
          }
        }
      }
    }
  };

  // Every combination of the single-value variables' options; multi-value variables select
  // all their options, as a user comparing window sizes would.
  TemplateVariables selection;
  std::function<void(size_t)> visit = [&](size_t index) {
    if (index == variables.size()) return run_panels(selection);
    const Json& variable = variables[index];
    const std::string name = variable.value("name", "");
    const std::string type = variable.value("type", "");
    std::vector<std::string> options;
    if (type == "custom") {
      options = CustomOptions(variable);
    } else if (type == "query") {
      const std::string where = absl::StrCat("variable $", name, " with ", Describe(selection));
      ++runs[absl::StrCat("variable $", name)];
      absl::StatusOr<std::string> sql =
          ExpandGrafanaSql(VariableSql(variable), {kFrom, kTo, kDataSourceMinInterval, selection});
      ASSERT_TRUE(sql.ok()) << where << ": " << sql.status();
      ASSERT_EQ(FindUnexpanded(*sql), std::nullopt) << where << ": " << *sql;
      absl::StatusOr<pqxx::result> rows = RunAsReader(*sql);
      ASSERT_TRUE(rows.ok()) << where << ": " << rows.status() << "\n" << *sql;
      ASSERT_FALSE(rows->empty()) << where << ": no options from\n" << *sql;
      for (const pqxx::row& row : *rows) {
        ASSERT_FALSE(row[0].is_null()) << where << ": a NULL option from\n" << *sql;
        options.push_back(row[0].as<std::string>());
      }
    } else {
      FAIL() << "variable $" << name << " is of type " << type << ", which this test cannot "
             << "expand; teach it, so that the panels using it are checked";
    }
    if (variable.value("multi", false) || variable.value("includeAll", false)) {
      selection[name] = {options, true};
      visit(index + 1);
    } else {
      for (const std::string& option : options) {
        selection[name] = {{option}, false};
        visit(index + 1);
      }
    }
    selection.erase(name);
  };
  visit(0);

  for (const Json& variable : variables) {
    if (variable.value("type", "") != "query") continue;
    EXPECT_GT(runs[absl::StrCat("variable $", variable.value("name", ""))], 0) << variable.dump();
  }
  for (size_t p = 0; p < env.panels.size(); ++p) {
    const Json& panel = env.panels[p];
    for (const Json& target : panel.value("targets", Json::array())) {
      EXPECT_GT(runs[absl::StrCat("panel \"", panel.value("title", ""), "\" target ",
                                  target.value("refId", "?"))],
                0)
          << "never ran: " << target.dump();
    }
    // An override naming a series the queries do not return silently does nothing; the
    // min..max band would vanish if a column were renamed.
    const Json overrides =
        panel.value("fieldConfig", Json::object()).value("overrides", Json::array());
    for (const Json& override : overrides) {
      const Json& matcher = override["matcher"];
      if (matcher.value("id", "") == "byName") {
        EXPECT_TRUE(columns[p].count(matcher.value("options", "")))
            << "override for a column no query returns: " << override.dump();
      }
      for (const Json& property : override.value("properties", Json::array())) {
        if (property.value("id", "") == "custom.fillBelowTo") {
          EXPECT_TRUE(columns[p].count(property.value("value", "")))
              << "fillBelowTo a column no query returns: " << override.dump();
        }
      }
    }
  }
}

// The rollup's value is the count-weighted average of the windows, which equals the average
// of the raw points in the interval; an average of the window averages would not.
TEST_F(GrafanaDashboard, RollupIsTheAverageOfRawPoints) {
  const Environment& env = Env();
  const Json* rollup = nullptr;
  for (const Json& panel : env.panels) {
    for (const Json& target : panel.value("targets", Json::array())) {
      if (absl::StrContains(target.value("rawSql", ""), "'$dimension'")) rollup = &panel;
    }
  }
  ASSERT_NE(rollup, nullptr) << "no panel rolls up by $dimension";
  const TemplateVariables variables = {{"measure", {{"temperature"}, false}},
                                       {"device_id", {{"turbine-0001"}, false}},
                                       {"window", {env.windows, true}},
                                       {"dimension", {{"site"}, false}}};
  std::optional<pqxx::result> rows =
      RunTarget(*rollup, (*rollup)["targets"][0], variables, "rollup by site");
  ASSERT_TRUE(rows.has_value());
  std::map<std::pair<int64_t, std::string>, double> got;
  for (const pqxx::row& row : *rows) {
    got[{std::llround(row["time"].as<double>()), row["metric"].as<std::string>()}] =
        row["value"].as<double>();
  }

  // The oracle reads raw points; the panel's interval is one minute, as is the finest window.
  auto by_minute = [&](const std::string& value, const std::string& time, const std::string& table,
                       const std::string& condition) {
    const std::string minute = absl::StrCat("floor(extract(epoch FROM ", time, ") / 60) * 60");
    pqxx::nontransaction tx(*Env().owner);
    std::map<std::pair<int64_t, std::string>, double> out;
    for (const pqxx::row& row : tx.exec(absl::StrCat(
             "SELECT ", minute, ", s.dimensions ->> 'site', ", value, " FROM ", table,
             " JOIN series s USING (series_id) WHERE s.measure_name = 'temperature' AND ",
             condition, minute, " BETWEEN ", absl::ToUnixSeconds(kFrom), " AND ",
             absl::ToUnixSeconds(kTo), " GROUP BY 1, 2"))) {
      out[{std::llround(row[0].as<double>()), row[1].as<std::string>()}] = row[2].as<double>();
    }
    return out;
  };
  const auto expected =
      by_minute("avg(coalesce(p.value_double, p.value_int))", "p.time", "points p", "");
  const auto average_of_averages =
      by_minute("avg(a.avg)", "a.window_start", "aggregates a", "a.window_size = '1 minute' AND ");
  ASSERT_EQ(got.size(), expected.size());
  int differs_from_naive = 0;
  for (const auto& [key, value] : expected) {
    ASSERT_TRUE(got.count(key)) << key.first << " " << key.second;
    EXPECT_NEAR(got[key], value, 1e-9 * std::abs(value)) << key.first << " " << key.second;
    if (std::abs(average_of_averages.at(key) - value) > 1e-6) ++differs_from_naive;
  }
  // Otherwise the sample data could not tell a wrong weighting from the right one.
  EXPECT_GT(differs_from_naive, 0);
}

}  // namespace
}  // namespace tidemark::test_support
