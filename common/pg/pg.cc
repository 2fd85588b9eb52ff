#include "common/pg/pg.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "pqxx/except"
#include "pqxx/pqxx"

namespace tidemark::pg {
namespace {

constexpr absl::string_view kRedacted = "***";

bool IsUri(absl::string_view dsn) {
  return absl::StartsWith(dsn, "postgresql://") || absl::StartsWith(dsn, "postgres://");
}

// One `keyword = value` of a keyword/value DSN, as positions in it: the value spans
// [value_begin, value_end) including its quotes, `value` is the value unquoted.
struct Setting {
  std::string keyword;
  size_t value_begin = 0;
  size_t value_end = 0;
  std::string value;
};

// Parses a keyword/value DSN as libpq does (values unquoted without spaces, or in single quotes;
// a backslash escapes the next character in both). Stops at the first malformed setting (libpq
// refuses such a DSN anyway) and sets `*stopped_at` there, or to the size when all parsed.
std::vector<Setting> ParseKeywordValue(absl::string_view dsn, size_t* stopped_at = nullptr) {
  std::vector<Setting> out;
  size_t i = 0;
  size_t setting_begin = 0;
  auto skip_space = [&] {
    while (i < dsn.size() && absl::ascii_isspace(static_cast<unsigned char>(dsn[i]))) ++i;
  };
  while (true) {
    skip_space();
    setting_begin = i;
    if (i >= dsn.size()) break;
    Setting s;
    while (i < dsn.size() && dsn[i] != '=' &&
           !absl::ascii_isspace(static_cast<unsigned char>(dsn[i]))) {
      s.keyword.push_back(dsn[i++]);
    }
    skip_space();
    if (i >= dsn.size() || dsn[i] != '=') break;
    ++i;
    skip_space();
    s.value_begin = i;
    if (i < dsn.size() && dsn[i] == '\'') {
      ++i;
      while (i < dsn.size() && dsn[i] != '\'') {
        if (dsn[i] == '\\' && i + 1 < dsn.size()) ++i;
        s.value.push_back(dsn[i++]);
      }
      if (i < dsn.size()) ++i;  // the closing quote
    } else {
      while (i < dsn.size() && !absl::ascii_isspace(static_cast<unsigned char>(dsn[i]))) {
        if (dsn[i] == '\\' && i + 1 < dsn.size()) ++i;
        s.value.push_back(dsn[i++]);
      }
    }
    s.value_end = i;
    out.push_back(std::move(s));
  }
  if (stopped_at != nullptr) *stopped_at = std::min(setting_begin, dsn.size());
  return out;
}

// The parts of a URI: [0, authority_end) holds scheme and userinfo@hosts; the query string,
// if any, starts after `query_begin` ('?').
struct UriParts {
  size_t userinfo_begin = 0;
  size_t at = std::string::npos;  // the '@' ending userinfo
  size_t query_begin = std::string::npos;
};

UriParts SplitUri(absl::string_view dsn) {
  UriParts p;
  p.userinfo_begin = dsn.find("://") + 3;
  p.query_begin = dsn.find('?', p.userinfo_begin);
  size_t authority_end = dsn.find_first_of("/?", p.userinfo_begin);
  if (authority_end == absl::string_view::npos) authority_end = dsn.size();
  const size_t at = dsn.substr(0, authority_end).rfind('@');
  if (at != absl::string_view::npos && at >= p.userinfo_begin) p.at = at;
  return p;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        absl::ascii_isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::StrFormat("%02X", c));
    }
  }
  return out;
}

// Calls f(begin, end) for the value of every `password=` parameter of a URI's query string.
template <typename F>
void ForEachUriPasswordParam(absl::string_view dsn, size_t query_begin, F f) {
  if (query_begin == absl::string_view::npos) return;
  size_t i = query_begin + 1;
  while (i <= dsn.size()) {
    size_t end = dsn.find('&', i);
    if (end == absl::string_view::npos) end = dsn.size();
    const absl::string_view param = dsn.substr(i, end - i);
    if (absl::StartsWith(param, "password=")) f(i + 9, end);
    i = end + 1;
  }
}

// The [begin, end) spans of `dsn` that hold a password, in order: a `password` keyword's value
// (quotes included), the rest of a keyword/value DSN from where it stops parsing (it may hold a
// password libpq would split, an unquoted one with spaces), a URI's user:password@ and
// password= parameters.
std::vector<std::pair<size_t, size_t>> HiddenSpans(absl::string_view dsn) {
  std::vector<std::pair<size_t, size_t>> spans;
  if (IsUri(dsn)) {
    const UriParts p = SplitUri(dsn);
    if (p.at != std::string::npos) {
      const size_t colon = dsn.substr(0, p.at).find(':', p.userinfo_begin);
      if (colon != absl::string_view::npos) spans.push_back({colon + 1, p.at});
    }
    ForEachUriPasswordParam(dsn, p.query_begin, [&](size_t b, size_t e) {
      spans.push_back({b, e});
    });
  } else {
    size_t stopped_at = 0;
    for (const Setting& s : ParseKeywordValue(dsn, &stopped_at)) {
      if (s.keyword == "password") spans.push_back({s.value_begin, s.value_end});
    }
    if (stopped_at < dsn.size()) spans.push_back({stopped_at, dsn.size()});
  }
  return spans;
}

}  // namespace

absl::StatusOr<std::string> DsnWithPasswordFile(const std::string& dsn, const std::string& path) {
  if (path.empty()) return dsn;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("pg_password_file: cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream content;
  content << in.rdbuf();
  std::string password = content.str();
  // Files written by `echo` or an editor end in a newline that is not part of the password.
  // (One, as psql's backquotes strip it: deploy/postgres/init-roles.sh reads the same files.)
  if (absl::EndsWith(password, "\n")) password.pop_back();
  if (password.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("pg_password_file: ", path, " is empty"));
  }
  // A later setting overrides an earlier one in libpq, a URI parameter its userinfo.
  if (IsUri(dsn)) {
    const bool has_query = dsn.find('?', dsn.find("://") + 3) != std::string::npos;
    return absl::StrCat(dsn, has_query ? "&" : "?", "password=", PercentEncode(password));
  }
  const std::string quoted = absl::StrReplaceAll(password, {{"\\", "\\\\"}, {"'", "\\'"}});
  return absl::StrCat(dsn, dsn.empty() ? "" : " ", "password='", quoted, "'");
}

std::string RedactDsn(absl::string_view dsn) {
  std::string out(dsn);
  const std::vector<std::pair<size_t, size_t>> spans = HiddenSpans(dsn);
  // Replaced from the end, so that earlier positions stay valid.
  for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
    out.replace(it->first, it->second - it->first, kRedacted.data(), kRedacted.size());
  }
  return out;
}

std::string DsnPassword(absl::string_view dsn) {
  std::string password;
  if (IsUri(dsn)) {
    const UriParts p = SplitUri(dsn);
    if (p.at != std::string::npos) {
      const size_t colon = dsn.substr(0, p.at).find(':', p.userinfo_begin);
      if (colon != absl::string_view::npos) {
        password = PercentDecode(dsn.substr(colon + 1, p.at - colon - 1));
      }
    }
    ForEachUriPasswordParam(dsn, p.query_begin, [&](size_t b, size_t e) {
      password = PercentDecode(dsn.substr(b, e - b));
    });
  } else {
    for (const Setting& s : ParseKeywordValue(dsn)) {
      if (s.keyword == "password") password = s.value;
    }
  }
  return password;
}

std::string WithSettings(const std::string& dsn,
                         const std::vector<std::pair<std::string, std::string>>& settings,
                         bool override) {
  std::vector<std::string> present;
  const bool uri = IsUri(dsn);
  // A service file's settings would be overridden by the DSN's: leave them to it, unless
  // overriding is the point.
  if (!override && std::getenv("PGSERVICE") != nullptr) return dsn;
  if (uri) {
    const UriParts p = SplitUri(dsn);
    if (p.query_begin != std::string::npos) {
      for (absl::string_view param :
           absl::StrSplit(absl::string_view(dsn).substr(p.query_begin + 1), '&')) {
        present.emplace_back(param.substr(0, param.find('=')));
      }
    }
  } else {
    size_t stopped_at = 0;
    for (const Setting& s : ParseKeywordValue(dsn, &stopped_at)) present.push_back(s.keyword);
    // Appending to what libpq reads differently (a malformed DSN, or one whose last value
    // ends in a backslash, which would escape the separator) could change its meaning.
    size_t backslashes = 0;
    while (backslashes < dsn.size() && dsn[dsn.size() - 1 - backslashes] == '\\') ++backslashes;
    if (stopped_at != dsn.size() || backslashes % 2 == 1) return dsn;
  }
  if (!override && std::find(present.begin(), present.end(), "service") != present.end()) {
    return dsn;
  }
  std::string out = dsn;
  bool has_query = uri && SplitUri(dsn).query_begin != std::string::npos;
  // "...?" or "...&" already ends in a separator.
  const bool ends_in_separator = uri && (absl::EndsWith(dsn, "?") || absl::EndsWith(dsn, "&"));
  for (const auto& [keyword, value] : settings) {
    // A later setting wins in libpq, so an override is appended like a default.
    if (!override && std::find(present.begin(), present.end(), keyword) != present.end()) {
      continue;
    }
    if (uri) {
      const bool first = out.size() == dsn.size();
      absl::StrAppend(&out, first && ends_in_separator ? "" : (has_query ? "&" : "?"), keyword, "=",
                      value);
      has_query = true;
    } else {
      absl::StrAppend(&out, out.empty() ? "" : " ", keyword, "=", value);
    }
  }
  return out;
}

std::string WithNetworkTimeouts(const std::string& dsn) {
  std::vector<std::pair<std::string, std::string>> defaults = {{"keepalives_idle", "30"},
                                                               {"keepalives_interval", "10"},
                                                               {"keepalives_count", "3"},
                                                               {"tcp_user_timeout", "30000"}};
  if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) defaults.push_back({"connect_timeout", "10"});
  return WithSettings(dsn, defaults, /*override=*/false);
}

absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect(
    const std::string& dsn, const std::vector<std::string>& session_setup) {
  try {
    auto conn = std::make_unique<pqxx::connection>(WithNetworkTimeouts(dsn));
    if (!session_setup.empty()) {
      pqxx::nontransaction tx(*conn);
      for (const std::string& sql : session_setup) tx.exec0(sql);
    }
    return conn;
  } catch (const std::exception& e) {
    absl::Status status = FromException(e);
    // libpq quotes pieces of a DSN it cannot parse (`missing "=" after "..."`), and callers
    // log this status: remove every piece RedactDsn would hide, as written and as meant.
    std::string message(status.message());
    std::vector<std::string> secrets = {DsnPassword(dsn)};
    for (const auto& [b, e] : HiddenSpans(dsn)) {
      const std::string hidden = dsn.substr(b, e - b);
      secrets.push_back(hidden);
      for (absl::string_view word :
           absl::StrSplit(hidden, absl::ByAnyChar(" \t\n'\\"), absl::SkipEmpty())) {
        secrets.emplace_back(word);
      }
    }
    // Longest first, so that a piece's words do not break up the whole.
    std::sort(secrets.begin(), secrets.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const std::string& secret : secrets) {
      if (!secret.empty()) absl::StrReplaceAll({{secret, std::string(kRedacted)}}, &message);
    }
    return absl::Status(status.code(), message);
  }
}

absl::Status FromSqlState(absl::string_view state, absl::string_view what) {
  auto in_class = [&](absl::string_view c) { return absl::StartsWith(state, c); };
  // A row routed to a daily partition that another replica's retention just dropped, or that
  // this connection wrongly believes exists: the store recreates it on the retry. 23514 is
  // also a CHECK violation, but Tidemark's tables have no CHECK constraints, so the code alone
  // decides: the message is in the server's lc_messages language (a German server says "keine
  // Partition"), which the writer's role may not change, and matching English words there
  // refused good records as bad data.
  if (state == "23514") {
    return absl::UnavailableError(absl::StrCat("PostgreSQL partition missing: ", what));
  }
  // 08 connection exception, 57P01-57P05 shutdown / cannot connect now, 53 insufficient
  // resources (disk full, out of memory, too many connections), 58 system error (I/O),
  // 55P03 lock not available and 57014 statement timeout: the server, not the data.
  if (in_class("08") || in_class("57P") || in_class("53") || in_class("58") || state == "55P03" ||
      state == "57014" || state == "55006") {
    return absl::UnavailableError(absl::StrCat("PostgreSQL unavailable: ", what));
  }
  // 40 transaction rollback: serialization failure, deadlock.
  if (in_class("40")) {
    return absl::AbortedError(absl::StrCat("PostgreSQL transaction aborted: ", what));
  }
  // 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (a value
  // too large for an index row, say): this data, whenever it is retried.
  if (in_class("22") || in_class("23") || in_class("54")) {
    return absl::InvalidArgumentError(absl::StrCat("PostgreSQL refused data: ", what));
  }
  // Everything else (42 missing privilege or table, XX internal error, 0A, 25, ...) is a
  // configuration or server problem no record causes: retried, never blamed on the data.
  return absl::InternalError(absl::StrCat("PostgreSQL error ", state, ": ", what));
}

namespace {

// The SQLSTATE class an error stands for when libpqxx 6.4 left sqlstate() empty: it throws
// its specific classes (unique_violation, insufficient_privilege, ...) without the code, so
// the exception's type is all that is left of it. Empty when the type says nothing.
std::string SqlStateOfType(const std::exception& e) {
  auto is = [&e](auto* type) { return dynamic_cast<decltype(type)>(&e) != nullptr; };
  if (is(static_cast<const pqxx::feature_not_supported*>(nullptr))) return "0A000";
  if (is(static_cast<const pqxx::data_exception*>(nullptr))) return "22000";
  // "no partition of relation" is a check violation, which FromSqlState retries.
  if (is(static_cast<const pqxx::check_violation*>(nullptr))) return "23514";
  if (is(static_cast<const pqxx::integrity_constraint_violation*>(nullptr))) return "23000";
  if (is(static_cast<const pqxx::insufficient_privilege*>(nullptr))) return "42501";
  if (is(static_cast<const pqxx::syntax_error*>(nullptr))) return "42601";
  if (is(static_cast<const pqxx::insufficient_resources*>(nullptr))) return "53000";
  if (is(static_cast<const pqxx::plpgsql_error*>(nullptr))) return "P0000";
  return "";
}

}  // namespace

absl::Status FromException(const std::exception& e) {
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) ||
      dynamic_cast<const pqxx::statement_completion_unknown*>(&e)) {
    return absl::UnknownError(absl::StrCat("PostgreSQL commit in doubt: ", e.what()));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", e.what()));
  }
  // In libpqxx 6.4 these derive from failure, not sql_error, and carry no SQLSTATE.
  if (dynamic_cast<const pqxx::transaction_rollback*>(&e)) {
    return FromSqlState("40000", e.what());
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string state = sql->sqlstate().empty() ? SqlStateOfType(e) : sql->sqlstate();
    return FromSqlState(state, e.what());
  }
  return absl::InternalError(absl::StrCat("PostgreSQL client error: ", e.what()));
}

bool IsRetriable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

void LockNamed(pqxx::transaction_base& tx, const std::string& name) {
  if (tx.exec_params(absl::StrCat("SELECT 1 FROM ", kLocksTable, " WHERE name = $1 FOR UPDATE"),
                     name)
          .empty()) {
    throw std::runtime_error(absl::StrCat("no lock named '", name, "' in ", kLocksTable));
  }
}

namespace {

// Creates the lock table and its "migrations" row. Replicas starting together on an empty
// database race to create the table: CREATE TABLE IF NOT EXISTS is not atomic, and the loser
// fails once the winner commits, with a unique violation on the catalog, a duplicate table,
// or a duplicate object (the table's row type, "type ... already exists"); it then finds the
// table on its next attempt. No lock is needed, so there is none a reader
// could take.
void CreateLockTable(pqxx::connection& conn) {
  for (int attempt = 1;; ++attempt) {
    try {
      pqxx::work tx(conn);
      tx.exec0(
          absl::StrCat("CREATE TABLE IF NOT EXISTS ", kLocksTable, " (name text PRIMARY KEY)"));
      tx.exec0(absl::StrCat("INSERT INTO ", kLocksTable,
                            " (name) VALUES ('migrations') ON CONFLICT DO NOTHING"));
      tx.commit();
      return;
    } catch (const pqxx::sql_error& e) {
      // libpqxx 6 throws unique_violation without its SQLSTATE.
      const bool lost_race = dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr ||
                             e.sqlstate() == "23505" || e.sqlstate() == "42P07" ||
                             e.sqlstate() == "42710";
      if (attempt >= 5 || !lost_race) throw;
    }
  }
}

}  // namespace

absl::Status ApplyMigrations(pqxx::connection& conn, const std::vector<Migration>& migrations,
                             spdlog::logger& logger) {
  try {
    CreateLockTable(conn);
    {
      pqxx::work tx(conn);
      LockNamed(tx, "migrations");
      tx.exec0(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " version integer PRIMARY KEY, name text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      tx.commit();
    }
    for (const Migration& m : migrations) {
      pqxx::work tx(conn);
      // Serialises replicas starting together; released at commit.
      LockNamed(tx, "migrations");
      if (!tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version)
               .empty()) {
        continue;
      }
      tx.exec0(m.sql);
      tx.exec_params0("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                      m.name);
      tx.commit();
      logger.info("msg=\"schema migration applied\" version={} name={}", m.version, m.name);
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return FromException(e);
  }
}

}  // namespace tidemark::pg
