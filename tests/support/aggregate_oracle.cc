#include "tests/support/aggregate_oracle.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace tidemark::testing {
namespace {

// Returns "windows missing wrong extra"; $SIZES is the list of window sizes. Windows ending
// more than a minute from now do not count: a device whose clock runs minutes ahead (below the
// correction) has points in windows that close only when real time reaches them. Windows
// ending sooner do, so that draining waits for the current ones.
constexpr const char* kOracle = R"sql(
WITH truth AS (
  SELECT p.series_id, sz.size, date_bin(sz.size, p.time, 'epoch') AS start,
         count(*) AS c, sum(x.v ORDER BY p.time) AS s, min(x.v) AS mn, max(x.v) AS mx,
         (array_agg(x.v ORDER BY p.time))[1] AS f, (array_agg(x.v ORDER BY p.time DESC))[1] AS l
  FROM points p
  CROSS JOIN (VALUES $SIZES) AS sz(size)
  CROSS JOIN LATERAL (SELECT coalesce(p.value_double, p.value_int::float8) AS v) x
  WHERE x.v IS NOT NULL AND date_bin(sz.size, p.time, 'epoch') + sz.size <= now() + interval '1 minute'
  GROUP BY 1, 2, 3)
SELECT (SELECT count(*) FROM truth) || ' ' ||
  (SELECT count(*) FROM truth t LEFT JOIN aggregates a ON a.series_id = t.series_id
     AND a.window_size = t.size AND a.window_start = t.start WHERE a.series_id IS NULL) || ' ' ||
  (SELECT count(*) FROM truth t JOIN aggregates a ON a.series_id = t.series_id
     AND a.window_size = t.size AND a.window_start = t.start
   WHERE a.count <> t.c OR abs(a.sum - t.s) > 1e-9 * greatest(1, abs(t.s)) OR a.min <> t.mn
      OR a.max <> t.mx OR a.first <> t.f OR a.last <> t.l
      OR abs(a.avg - t.s / t.c) > 1e-9 * greatest(1, abs(t.s / t.c))) || ' ' ||
  (SELECT count(*) FROM aggregates a LEFT JOIN truth t ON a.series_id = t.series_id
     AND a.window_size = t.size AND a.window_start = t.start
   WHERE t.series_id IS NULL AND a.window_start + a.window_size <= now() + interval '1 minute')
)sql";

}  // namespace

OracleResult AggregateOracle(Stack& stack, const std::string& sizes) {
  std::string sql = kOracle;
  sql.replace(sql.find("$SIZES"), 6, sizes);
  const std::vector<std::string> parts = absl::StrSplit(stack.Sql(sql), ' ');
  OracleResult r;
  if (parts.size() == 4) {
    (void)absl::SimpleAtoi(parts[0], &r.windows);
    (void)absl::SimpleAtoi(parts[1], &r.missing);
    (void)absl::SimpleAtoi(parts[2], &r.wrong);
    (void)absl::SimpleAtoi(parts[3], &r.extra);
  }
  return r;
}

}  // namespace tidemark::testing
