#include "tests/support/grafana_macros.h"

#include <charconv>
#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace tidemark::test_support {
namespace {

// JavaScript's \w, which Grafana's variable pattern uses for names.
bool IsWordChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

size_t WordLength(absl::string_view s, size_t pos) {
  size_t n = 0;
  while (pos + n < s.size() && IsWordChar(s[pos + n])) ++n;
  return n;
}

// Go's strings.Trim: strips every leading and trailing character that is in `cutset`.
absl::string_view Trim(absl::string_view s, absl::string_view cutset) {
  const size_t first = s.find_first_not_of(cutset);
  if (first == absl::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(cutset) + 1 - first);
}

std::string QuoteLiteral(absl::string_view value) {
  return absl::StrCat("'", absl::StrReplaceAll(value, {{"'", "''"}}), "'");
}

// SqlDatasource.interpolateVariable: a single value only has its quotes doubled (the panel
// SQL writes '$var'); a multi-value or include-All variable becomes a list of literals.
absl::StatusOr<std::string> InterpolateVariable(absl::string_view name,
                                                const TemplateVariable& variable) {
  if (variable.multi) {
    return absl::StrJoin(variable.values, ",", [](std::string* out, const std::string& v) {
      out->append(QuoteLiteral(v));
    });
  }
  if (variable.values.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("single-value variable $", name, " has ", variable.values.size(), " values"));
  }
  return absl::StrReplaceAll(variable.values.front(), {{"'", "''"}});
}

// Grafana's formatRegistry, for the formats a SQL panel has a use for.
absl::StatusOr<std::string> FormatVariable(absl::string_view name, const TemplateVariable& variable,
                                           absl::string_view format) {
  if (format.empty()) return InterpolateVariable(name, variable);
  if (format == "csv") return absl::StrJoin(variable.values, ",");
  if (format == "sqlstring") {
    return absl::StrJoin(variable.values, ",", [](std::string* out, const std::string& v) {
      absl::StrAppend(out, "'", absl::StrReplaceAll(v, {{"'", "''"}, {"\"", "\\\""}}), "'");
    });
  }
  return absl::InvalidArgumentError(
      absl::StrCat("format ", format, " of $", name, " is not supported by this expander"));
}

// One match of Grafana's variable pattern
//   \$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\${(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?}
// at `pos`; `length` is 0 when there is none.
struct VariableReference {
  size_t length = 0;
  absl::string_view name;
  absl::string_view field_path;
  absl::string_view format;
};

VariableReference MatchVariable(absl::string_view s, size_t pos) {
  VariableReference ref;
  if (s[pos] == '$' && pos + 1 < s.size() && IsWordChar(s[pos + 1])) {
    ref.name = s.substr(pos + 1, WordLength(s, pos + 1));
    ref.length = 1 + ref.name.size();
    return ref;
  }
  const absl::string_view opener = s.substr(pos, 2);
  if (opener == "[[") {
    size_t i = pos + 2;
    const size_t n = WordLength(s, i);
    if (n == 0) return ref;
    absl::string_view format;
    i += n;
    if (i < s.size() && s[i] == ':' && WordLength(s, i + 1) > 0) {
      format = s.substr(i + 1, WordLength(s, i + 1));
      i += 1 + format.size();
    }
    if (s.substr(i, 2) != "]]") return ref;
    return {i + 2 - pos, s.substr(pos + 2, n), {}, format};
  }
  if (opener == "${") {
    size_t i = pos + 2;
    const size_t n = WordLength(s, i);
    if (n == 0) return ref;
    VariableReference candidate{0, s.substr(i, n), {}, {}};
    i += n;
    if (i < s.size() && s[i] == '.') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != ':' && s[j] != '^' && s[j] != '}') ++j;
      if (j > i + 1) {
        candidate.field_path = s.substr(i + 1, j - i - 1);
        i = j;
      }
    }
    if (i < s.size() && s[i] == ':') {
      size_t j = i + 1;
      while (j < s.size() && s[j] != '}') ++j;
      if (j > i + 1) {
        candidate.format = s.substr(i + 1, j - i - 1);
        i = j;
      }
    }
    if (i >= s.size() || s[i] != '}') return ref;
    candidate.length = i + 1 - pos;
    return candidate;
  }
  return ref;
}

// Go's RFC3339Nano in UTC: fractional seconds without trailing zeros, none when whole.
std::string Rfc3339Nano(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

// Go's %v of a float64: the shortest digits that round-trip, in %e form when the decimal
// exponent is below -4 or at least 6 (so an interval of 2 weeks prints as 1.2096e+06).
std::string GoFloat(double v) {
  char buf[64];
  const auto sci = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  const std::string scientific(buf, sci.ptr);
  const int exponent = std::atoi(scientific.c_str() + scientific.find('e') + 1);
  if (exponent < -4 || exponent >= 6) return scientific;
  const auto fixed = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  return std::string(buf, fixed.ptr);
}

// sqleng.SetupFillmode: the fill argument changes how results are post-processed, not the
// SQL, but a bad one fails the query.
absl::Status CheckFill(absl::string_view fill) {
  double value;
  if (fill == "NULL" || fill == "previous" || absl::SimpleAtod(fill, &value)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("error parsing fill value ", fill));
}

absl::StatusOr<std::string> EvaluateMacro(absl::string_view name,
                                          const std::vector<std::string>& args, absl::Time from,
                                          absl::Time to) {
  auto missing_column = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("missing time column argument for macro ", name));
  };
  if (name == "__time") {
    if (args.empty()) return missing_column();
    return absl::StrCat(args[0], " AS \"time\"");
  }
  if (name == "__timeEpoch") {
    if (args.empty()) return missing_column();
    return absl::StrCat("extract(epoch from ", args[0], ") as \"time\"");
  }
  if (name == "__timeFilter") {
    if (args.empty()) return missing_column();
    return absl::StrCat(args[0], " BETWEEN '", Rfc3339Nano(from), "' AND '", Rfc3339Nano(to), "'");
  }
  if (name == "__timeFrom") return absl::StrCat("'", Rfc3339Nano(from), "'");
  if (name == "__timeTo") return absl::StrCat("'", Rfc3339Nano(to), "'");
  if (name == "__timeGroup" || name == "__unixEpochGroup") {
    if (args.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("macro ", name, " needs time column and interval and optional fill value"));
    }
    absl::StatusOr<absl::Duration> interval = ParseGrafanaInterval(Trim(args[1], "'"));
    if (!interval.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("error parsing interval ", args[1]));
    }
    if (args.size() == 3) {
      if (absl::Status s = CheckFill(args[2]); !s.ok()) return s;
    }
    const std::string seconds = GoFloat(absl::ToDoubleSeconds(*interval));
    if (name == "__timeGroup") {
      return absl::StrCat("floor(extract(epoch from ", args[0], ")/", seconds, ")*", seconds);
    }
    return absl::StrCat("floor((", args[0], ")/", seconds, ")*", seconds);
  }
  if (name == "__timeGroupAlias" || name == "__unixEpochGroupAlias") {
    absl::StatusOr<std::string> group =
        EvaluateMacro(absl::StripSuffix(name, "Alias"), args, from, to);
    if (!group.ok()) return group.status();
    return absl::StrCat(*group, " AS \"time\"");
  }
  if (name == "__unixEpochFilter") {
    if (args.empty()) return missing_column();
    return absl::StrCat(args[0], " >= ", absl::ToUnixSeconds(from), " AND ", args[0],
                        " <= ", absl::ToUnixSeconds(to));
  }
  if (name == "__unixEpochNanoFilter") {
    if (args.empty()) return missing_column();
    return absl::StrCat(args[0], " >= ", absl::ToUnixNanos(from), " AND ", args[0],
                        " <= ", absl::ToUnixNanos(to));
  }
  if (name == "__unixEpochNanoFrom") return absl::StrCat(absl::ToUnixNanos(from));
  if (name == "__unixEpochNanoTo") return absl::StrCat(absl::ToUnixNanos(to));
  return absl::InvalidArgumentError(absl::StrCat("unknown macro \"", name, "\""));
}

}  // namespace

absl::StatusOr<std::string> InterpolateTemplateVariables(absl::string_view sql,
                                                         const TemplateVariables& variables) {
  std::string out;
  size_t pos = 0;
  while (pos < sql.size()) {
    const VariableReference ref = MatchVariable(sql, pos);
    if (ref.length == 0) {
      out.push_back(sql[pos++]);
      continue;
    }
    const auto it = variables.find(std::string(ref.name));
    if (it == variables.end()) {
      // Not a variable (a macro such as $__timeFilter, or a typo): Grafana leaves it.
      out.append(sql.data() + pos, ref.length);
    } else {
      if (!ref.field_path.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("field path ${", ref.name, ".", ref.field_path, "} is not supported"));
      }
      absl::StatusOr<std::string> value = FormatVariable(ref.name, it->second, ref.format);
      if (!value.ok()) return value.status();
      out.append(*value);
    }
    pos += ref.length;
  }
  return out;
}

absl::StatusOr<std::string> ExpandMacros(absl::string_view input, absl::Time from, absl::Time to,
                                         absl::Duration interval) {
  // sqleng.Interpolate, in its order: $__interval_ms before its prefix $__interval.
  const std::string sql = absl::StrReplaceAll(
      input, {{"$__interval_ms", absl::StrCat(absl::ToInt64Milliseconds(interval))}});
  const std::string global =
      absl::StrReplaceAll(sql, {{"$__interval", FormatGrafanaInterval(interval)},
                                {"$__unixEpochFrom()", absl::StrCat(absl::ToUnixSeconds(from))},
                                {"$__unixEpochTo()", absl::StrCat(absl::ToUnixSeconds(to))}});

  // The macro engine: every match of \$([_a-zA-Z0-9]+)\(([^\)]*)\), left to right.
  std::string out;
  size_t pos = 0;
  while (pos < global.size()) {
    const size_t dollar = global.find('$', pos);
    if (dollar == std::string::npos) break;
    out.append(global, pos, dollar - pos);
    const size_t name_length = WordLength(global, dollar + 1);
    const size_t open = dollar + 1 + name_length;
    const size_t close =
        open < global.size() && global[open] == '(' ? global.find(')', open) : std::string::npos;
    if (name_length == 0 || close == std::string::npos) {
      out.push_back('$');
      pos = dollar + 1;
      continue;
    }
    const absl::string_view match(global.data() + dollar, close + 1 - dollar);
    std::string name = global.substr(dollar + 1, name_length);
    // Grafana before 5.3 let $__timeGroup add the alias; it still does so when the first
    // occurrence of the same call is directly followed by a comma.
    if (name == "__timeGroup") {
      const size_t first = global.find(match.data(), 0, match.size());
      if (first + match.size() < global.size() && global[first + match.size()] == ',') {
        name = "__timeGroupAlias";
      }
    }
    std::vector<std::string> args = absl::StrSplit(global.substr(open + 1, close - open - 1), ',');
    for (std::string& arg : args) arg = std::string(Trim(arg, " "));
    absl::StatusOr<std::string> expanded = EvaluateMacro(name, args, from, to);
    if (!expanded.ok()) return expanded.status();
    out.append(*expanded);
    pos = close + 1;
  }
  out.append(global, pos, std::string::npos);
  return out;
}

absl::StatusOr<std::string> ExpandGrafanaSql(absl::string_view sql,
                                             const GrafanaQueryContext& context) {
  absl::StatusOr<std::string> interpolated = InterpolateTemplateVariables(sql, context.variables);
  if (!interpolated.ok()) return interpolated.status();
  return ExpandMacros(*interpolated, context.from, context.to, context.interval);
}

absl::StatusOr<absl::Duration> ParseGrafanaInterval(absl::string_view text) {
  if (text.size() >= 2) {
    const char unit = text.back();
    const absl::string_view number = text.substr(0, text.size() - 1);
    int64_t count;
    if ((unit == 'd' || unit == 'w' || unit == 'M' || unit == 'y') &&
        number.find_first_not_of("0123456789") == absl::string_view::npos &&
        absl::SimpleAtoi(number, &count)) {
      if (unit == 'd') return absl::Hours(24) * count;
      if (unit == 'w') return absl::Hours(24 * 7) * count;
      return absl::UnimplementedError(
          absl::StrCat("interval ", text, " depends on the calendar; not supported here"));
    }
  }
  // absl's grammar is Go's time.ParseDuration, plus "inf", which Go refuses.
  absl::Duration d;
  if (text.find("inf") != absl::string_view::npos || !absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", text, "\""));
  }
  return d;
}

std::string FormatGrafanaInterval(absl::Duration interval) {
  struct Unit {
    absl::Duration size;
    const char* suffix;
  };
  const Unit kUnits[] = {{absl::Hours(24 * 365), "y"}, {absl::Hours(24), "d"},
                         {absl::Hours(1), "h"},        {absl::Minutes(1), "m"},
                         {absl::Seconds(1), "s"},      {absl::Milliseconds(1), "ms"}};
  for (const Unit& unit : kUnits) {
    if (interval >= unit.size) {
      absl::Duration remainder;
      return absl::StrCat(absl::IDivDuration(interval, unit.size, &remainder), unit.suffix);
    }
  }
  return "1ms";
}

std::optional<std::string> FindUnexpanded(absl::string_view sql) {
  for (size_t i = 0; i + 1 < sql.size(); ++i) {
    const bool variable_or_macro = sql[i] == '$' && (IsWordChar(sql[i + 1]) || sql[i + 1] == '{');
    const bool bracket_variable =
        sql[i] == '[' && sql[i + 1] == '[' && i + 2 < sql.size() && IsWordChar(sql[i + 2]);
    if (variable_or_macro || bracket_variable) return std::string(sql.substr(i, 40));
  }
  return std::nullopt;
}

}  // namespace tidemark::test_support
