// The query service's reads against a real PostgreSQL with the writer's schema, on small data
// whose answers are worked out by hand: the rollup merge (count-weighted, first and last, group
// order), real-time partial windows, interpolation from an aggregate field, page and byte
// limits; and Subscribe over real gRPC: catch-up from a token, a pruned token, and a slow
// subscriber ended with RESOURCE_EXHAUSTED. The whole pipeline is in tests/e2e/query_test.cc.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/auth/authenticator.h"
#include "common/log/log.h"
#include "common/metrics/metrics.h"
#include "common/pg/pg.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pqxx/pqxx"
#include "services/query/query_service.h"
#include "services/query/query_store.h"
#include "services/timestream-writer/schema.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace tidemark::query {
namespace {

using testing::WaitFor;

constexpr int64_t kS = 1'000'000;
constexpr int64_t kMin = 60 * kS;
constexpr int64_t kHour = 60 * kMin;
// 2026-11-20T00:00:00Z.
constexpr int64_t kDay0 = 1'795'132'800 * kS;

std::string Ts(int64_t us) {
  return absl::StrCat("'epoch'::timestamptz + interval '1 microsecond' * ", us);
}

// What a paged read returned: every (series id, time) in order, and each page's row count.
struct Pages {
  std::vector<std::pair<int64_t, int64_t>> rows;
  std::vector<int> sizes;
};

// Every page of `req`, each counted as it comes.
Pages AllPages(QueryStore& store, v1::ReadPointsRequest req) {
  Pages out;
  do {
    auto r = store.ReadPoints(req, absl::Seconds(10));
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      break;
    }
    out.sizes.push_back(0);
    for (const auto& sp : r->series()) {
      for (const auto& pt : sp.points())
        out.rows.emplace_back(sp.series().series_id(), pt.time_us());
      out.sizes.back() += sp.points_size();
    }
    req.set_page_token(r->next_page_token());
  } while (!req.page_token().empty());
  return out;
}

Pages AllPages(QueryStore& store, v1::ReadAggregatesRequest req) {
  Pages out;
  do {
    auto r = store.ReadAggregates(req, absl::Seconds(10));
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      break;
    }
    out.sizes.push_back(0);
    for (const auto& sw : r->series()) {
      for (const auto& w : sw.windows())
        out.rows.emplace_back(sw.series().series_id(), w.start_us());
      out.sizes.back() += sw.windows_size();
    }
    req.set_page_token(r->next_page_token());
  } while (!req.page_token().empty());
  return out;
}

// A database with the writer's schema, the hand-made data below, and a login in the read-only
// role for the query service.
class QueryStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (dsn_ != nullptr) return;  // one database for every suite of the binary
    auto& pg = testing::SharedPgCluster();
    auto dsn = pg.CreateDatabase("query_store");
    ASSERT_TRUE(dsn.ok()) << dsn.status();
    auto conn = pg::Connect(*dsn);
    ASSERT_TRUE(conn.ok()) << conn.status();
    owner_ = conn->release();
    auto logger = log::MakeLogger("query-test");
    ASSERT_TRUE(pg::ApplyMigrations(*owner_, writer::SchemaMigrations(), *logger).ok());
    Sql("CREATE ROLE query_reader LOGIN IN ROLE tidemark_reader");
    Sql(absl::StrCat(
        "SELECT tidemark_ensure_daily_partitions('points', ", "'2026-11-19', '2026-11-21');",
        "SELECT tidemark_ensure_daily_partitions('aggregates', '2026-11-19', '2026-11-21')"));
    // Four series of `power`: 1 and 2 at site a, 3 at site b, 4 without a site; 5 is a string.
    // 1 and 5 have canonical keys as the writer makes them, which tell their kinds.
    Sql(R"(INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions) VALUES
      (1, 'power{device_id="d1",site="a"}', 'power', 'd1', '{"device_id":"d1","site":"a"}'),
      (2, 'k2', 'power', 'd2', '{"device_id":"d2","site":"a"}'),
      (3, 'k3', 'power', 'd3', '{"device_id":"d3","site":"b"}'),
      (4, 'k4', 'power', 'd4', '{"device_id":"d4"}'),
      (5, 'state{device_id="d1",site="a"}:string', 'state', 'd1',
       '{"device_id":"d1","site":"a"}'))");
    // 5-minute windows: (series, minute of the day, count, sum, min, max, first, last).
    const std::vector<std::tuple<int, int, int, double, double, double, double, double>> w = {
        {1, 0, 2, 4, 1, 3, 1, 3}, {1, 5, 1, 10, 10, 10, 10, 10}, {1, 60, 3, 6, 1, 3, 3, 1},
        {2, 0, 1, 5, 5, 5, 5, 5}, {2, 55, 2, -2, -3, 1, 1, -3},  {3, 30, 4, 8, 0, 4, 4, 0},
        {4, 65, 1, 7, 7, 7, 7, 7}};
    std::string values;
    for (const auto& [sid, minute, c, sum, mn, mx, f, l] : w) {
      absl::StrAppend(&values, values.empty() ? "" : ",", "(", sid, ", interval '5 minutes', ",
                      Ts(kDay0 + minute * kMin), ", ", c, ", ", sum, ", ", mn, ", ", mx, ", ",
                      sum / c, ", ", f, ", ", l, ", 1)");
    }
    Sql(
        absl::StrCat("INSERT INTO aggregates (series_id, window_size, window_start, count, sum,"
                     " min, max, avg, first, last, version) VALUES ",
                     values));
    // Raw points of series 1 after its last stored window (01:00): the still-open windows
    // 01:05 (2 and 4) and 01:10 (1); one of series 3 before its last stored window (00:30).
    Sql(
        absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                     " VALUES (1, ",
                     Ts(kDay0 + 65 * kMin + 10 * kS), ", 2, 1, now()), (1, ", Ts(kDay0 + 67 * kMin),
                     ", 4, 1, now()), (1, ", Ts(kDay0 + 71 * kMin), ", 1, 1, now()), (3, ",
                     Ts(kDay0 + 20 * kMin), ", 9, 1, now())"));
    dsn_ = new std::string(pg.Dsn("query_store", "query_reader"));
  }

  // Runs SQL as the schema owner, in its own transaction.
  static void Sql(const std::string& sql) {
    try {
      pqxx::nontransaction tx(*owner_);
      tx.exec(sql);
    } catch (const std::exception& e) {
      FAIL() << e.what() << "\n" << sql;
    }
  }

  QueryStore Store(QueryLimits limits = {}) { return QueryStore(*dsn_, limits); }

  static std::string* dsn_;
  static pqxx::connection* owner_;
};
std::string* QueryStoreTest::dsn_ = nullptr;
pqxx::connection* QueryStoreTest::owner_ = nullptr;

v1::RollupRequest Rollup(int64_t bucket, std::vector<std::string> group_by = {}) {
  v1::RollupRequest r;
  r.mutable_selector()->set_measure_name("power");
  r.mutable_range()->set_start_us(kDay0);
  r.mutable_range()->set_end_us(kDay0 + 24 * kHour);
  r.set_bucket_us(bucket);
  for (auto& g : group_by) r.add_group_by(g);
  return r;
}

struct Expected {
  int64_t start, count;
  double sum, min, max, first, last;
  int64_t windows, series;
};

void ExpectBucket(const v1::RollupBucket& b, const Expected& e) {
  EXPECT_EQ(b.start_us(), e.start);
  EXPECT_EQ(b.value().count(), e.count);
  EXPECT_DOUBLE_EQ(b.value().sum(), e.sum);
  EXPECT_DOUBLE_EQ(b.value().min(), e.min);
  EXPECT_DOUBLE_EQ(b.value().max(), e.max);
  EXPECT_DOUBLE_EQ(b.value().avg(), e.sum / static_cast<double>(e.count));
  EXPECT_DOUBLE_EQ(b.value().first(), e.first);
  EXPECT_DOUBLE_EQ(b.value().last(), e.last);
  EXPECT_EQ(b.windows(), e.windows);
  EXPECT_EQ(b.series_count(), e.series);
}

TEST_F(QueryStoreTest, RollupPerSeriesMergesWindowsCountWeighted) {
  QueryStore store = Store();
  auto r = store.Rollup(Rollup(kHour), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->source_window_size_us(), 5 * kMin);
  ASSERT_EQ(r->groups_size(), 4);
  EXPECT_EQ(r->groups(0).series().series_id(), 1);
  EXPECT_EQ(r->groups(0).series().dimensions().at("site"), "a");
  ASSERT_EQ(r->groups(0).buckets_size(), 2);
  // 00:00 and 00:05: first of the earliest window, last of the latest.
  ExpectBucket(r->groups(0).buckets(0), {kDay0, 3, 14, 1, 10, 1, 10, 2, 1});
  ExpectBucket(r->groups(0).buckets(1), {kDay0 + kHour, 3, 6, 1, 3, 3, 1, 1, 1});
  ExpectBucket(r->groups(1).buckets(0), {kDay0, 3, 3, -3, 5, 5, -3, 2, 1});
  ExpectBucket(r->groups(2).buckets(0), {kDay0, 4, 8, 0, 4, 4, 0, 1, 1});
  ExpectBucket(r->groups(3).buckets(0), {kDay0 + kHour, 1, 7, 7, 7, 7, 7, 1, 1});
  EXPECT_TRUE(r->next_page_token().empty());
}

TEST_F(QueryStoreTest, RollupGroupedByADimensionPagesThroughGroups) {
  QueryStore store = Store();
  v1::RollupRequest req = Rollup(kHour, {"site"});
  req.set_page_size(2);
  std::vector<std::pair<std::string, v1::RollupBucket>> got;
  int pages = 0;
  do {
    auto r = store.Rollup(req, absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    ++pages;
    for (const v1::RollupGroup& g : r->groups()) {
      EXPECT_FALSE(g.has_series());
      for (const v1::RollupBucket& b : g.buckets()) got.emplace_back(g.group().at("site"), b);
    }
    req.set_page_token(r->next_page_token());
  } while (!req.page_token().empty());
  EXPECT_EQ(pages, 2);
  ASSERT_EQ(got.size(), 4u);
  // Groups in key order: no site (""), a, b.
  EXPECT_EQ(got[0].first, "");
  ExpectBucket(got[0].second, {kDay0 + kHour, 1, 7, 7, 7, 7, 7, 1, 1});
  // Site a at 00:00 merges series 1 (00:00, 00:05) and 2 (00:00, 00:55): two windows start at
  // 00:00, so first comes from the lower series id; last from the latest window, 00:55.
  EXPECT_EQ(got[1].first, "a");
  ExpectBucket(got[1].second, {kDay0, 6, 17, -3, 10, 1, -3, 4, 2});
  EXPECT_EQ(got[2].first, "a");
  ExpectBucket(got[2].second, {kDay0 + kHour, 3, 6, 1, 3, 3, 1, 1, 1});
  EXPECT_EQ(got[3].first, "b");
  ExpectBucket(got[3].second, {kDay0, 4, 8, 0, 4, 4, 0, 1, 1});
}

TEST_F(QueryStoreTest, RollupOfADayAndBucketsNoStoredSizeDivides) {
  QueryStore store = Store();
  auto day = store.Rollup(Rollup(24 * kHour, {"site"}), absl::Seconds(10));
  ASSERT_TRUE(day.ok()) << day.status();
  ASSERT_EQ(day->groups_size(), 3);
  ExpectBucket(day->groups(1).buckets(0), {kDay0, 9, 23, -3, 10, 1, 1, 5, 2});
  auto bad = store.Rollup(Rollup(7 * kMin), absl::Seconds(10));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("(5m)"), absl::string_view::npos) << bad.status();
}

TEST_F(QueryStoreTest, RollupBucketsAsWideAsTheWindowsCountEachSeriesOnce) {
  auto r = Store().Rollup(Rollup(5 * kMin, {"site"}), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->groups_size(), 3);  // "", a, b
  ASSERT_EQ(r->groups(1).group().at("site"), "a");
  ASSERT_EQ(r->groups(1).buckets_size(), 4);  // 00:00, 00:05, 00:55, 01:00
  // 00:00 holds a window of series 1 and one of series 2: first from the lower id, last from
  // the higher.
  ExpectBucket(r->groups(1).buckets(0), {kDay0, 3, 9, 1, 5, 1, 5, 2, 2});
  ExpectBucket(r->groups(1).buckets(1), {kDay0 + 5 * kMin, 1, 10, 10, 10, 10, 10, 1, 1});
  ExpectBucket(r->groups(2).buckets(0), {kDay0 + 30 * kMin, 4, 8, 0, 4, 4, 0, 1, 1});
}

TEST_F(QueryStoreTest, RollupGroupsTakeFirstAndLastByStartThenSeriesId) {
  // Three series of one site, ids on both sides of zero and beyond 2^53, inserted in no id
  // order: two windows start first (00:00) and two last (00:05).
  constexpr int64_t kLow = -4'000'000'000'000'000'001, kMid = 7, kHigh = 9'007'199'254'740'993;
  Sql(absl::StrCat(
      "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions) VALUES (",
      kMid, ", 'tm', 'tied', 'm', '{\"site\":\"t\"}'), (", kHigh,
      ", 'th', 'tied', 'h', '{\"site\":\"t\"}'), (", kLow,
      ", 'tl', 'tied', 'l', '{\"site\":\"t\"}')"));
  // (series, minute, first, last): count 2, sum first + last, min and max the two.
  const std::vector<std::tuple<int64_t, int, double, double>> w = {
      {kHigh, 0, 1, 2}, {kHigh, 5, 3, 4}, {kMid, 5, 5, 6}, {kLow, 0, 7, 8}};
  std::string values;
  for (const auto& [sid, minute, f, l] : w) {
    absl::StrAppend(&values, values.empty() ? "" : ",", "(", sid, ", interval '5 minutes', ",
                    Ts(kDay0 + minute * kMin), ", 2, ", f + l, ", ", f, ", ", l, ", ", (f + l) / 2,
                    ", ", f, ", ", l, ", 1)");
  }
  Sql(absl::StrCat(
      "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
      " first, last, version) VALUES ",
      values));
  auto cleanup = absl::MakeCleanup([=] {
    Sql(absl::StrCat("DELETE FROM aggregates WHERE series_id IN (", kLow, ", ", kMid, ", ", kHigh,
                     "); DELETE FROM series WHERE measure_name = 'tied'"));
  });
  v1::RollupRequest req = Rollup(kHour, {"site"});
  req.mutable_selector()->set_measure_name("tied");
  auto r = Store().Rollup(req, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->groups_size(), 1);
  ASSERT_EQ(r->groups(0).buckets_size(), 1);
  // First: of the 00:00 windows, the lower id's (kLow); last: of the 00:05 ones, the higher's.
  ExpectBucket(r->groups(0).buckets(0), {kDay0, 8, 36, 1, 8, 7, 4, 4, 3});
}

TEST_F(QueryStoreTest, RollupRefusesASelectorCoveringMoreSeriesThanItsLimit) {
  // `power` has 4 series. With group_by, max_rollup_series is the limit.
  QueryLimits limits;
  limits.max_rollup_series = 3;
  auto refused = Store(limits).Rollup(Rollup(kHour, {"site"}), absl::Seconds(10));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("more than 3 series"), absl::string_view::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("--max_rollup_series"), absl::string_view::npos)
      << refused.status();
  limits.max_rollup_series = 4;
  auto grouped = Store(limits).Rollup(Rollup(kHour, {"site"}), absl::Seconds(10));
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  EXPECT_EQ(grouped->groups_size(), 3);
  // Without group_by (a group per series), max_series is.
  limits.max_rollup_series = 1;
  limits.max_series = 3;
  auto per_series = Store(limits).Rollup(Rollup(kHour), absl::Seconds(10));
  EXPECT_EQ(per_series.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(per_series.status().message().find("without group_by"), absl::string_view::npos)
      << per_series.status();
  limits.max_series = 4;
  auto r = Store(limits).Rollup(Rollup(kHour), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->groups_size(), 4);
}

TEST_F(QueryStoreTest, RealTimeAddsPartialWindowsAfterTheLastStoredOne) {
  QueryStore store = Store();
  v1::ReadAggregatesRequest req;
  req.mutable_selector()->set_measure_name("power");
  *req.mutable_selector()->add_matchers() = [] {
    v1::DimensionMatcher m;
    m.set_name("device_id");
    m.set_op(v1::DimensionMatcher::OP_REGEX);
    m.set_value("d[13]");
    return m;
  }();
  req.mutable_range()->set_start_us(kDay0);
  req.mutable_range()->set_end_us(kDay0 + 2 * kHour);
  req.set_window_size_us(5 * kMin);
  auto stored = store.ReadAggregates(req, absl::Seconds(10));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->series_size(), 2);
  EXPECT_EQ(stored->series(0).windows_size(), 3);
  EXPECT_EQ(stored->series(1).windows_size(), 1);

  req.set_real_time(true);
  req.set_page_size(2);
  std::vector<std::pair<int64_t, v1::AggregateWindow>> got;
  do {
    auto r = store.ReadAggregates(req, absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& sw : r->series()) {
      for (const auto& w : sw.windows()) got.emplace_back(sw.series().series_id(), w);
    }
    req.set_page_token(r->next_page_token());
  } while (!req.page_token().empty());
  ASSERT_EQ(got.size(), 6u);
  // Series 1: three stored windows, then 01:05 (2, 4) and 01:10 (1) from its raw points.
  EXPECT_FALSE(got[2].second.partial());
  const v1::AggregateWindow& w1 = got[3].second;
  EXPECT_EQ(got[3].first, 1);
  EXPECT_TRUE(w1.partial());
  EXPECT_EQ(w1.version(), 0);
  EXPECT_EQ(w1.start_us(), kDay0 + 65 * kMin);
  EXPECT_EQ(w1.value().count(), 2);
  EXPECT_DOUBLE_EQ(w1.value().sum(), 6);
  EXPECT_DOUBLE_EQ(w1.value().avg(), 3);
  EXPECT_DOUBLE_EQ(w1.value().first(), 2);
  EXPECT_DOUBLE_EQ(w1.value().last(), 4);
  EXPECT_TRUE(got[4].second.partial());
  EXPECT_EQ(got[4].second.start_us(), kDay0 + 70 * kMin);
  EXPECT_EQ(got[4].second.value().count(), 1);
  // Series 3's raw point lies before its last stored window: no partial window for it.
  EXPECT_EQ(got[5].first, 3);
  EXPECT_FALSE(got[5].second.partial());

  // Every measure of device d1: its string series (5) has no windows, stored or live.
  v1::ReadAggregatesRequest device;
  device.mutable_selector()->add_matchers()->set_name("device_id");
  device.mutable_selector()->mutable_matchers(0)->set_value("d1");
  *device.mutable_range() = req.range();
  device.set_window_size_us(5 * kMin);
  device.set_real_time(true);
  auto d1 = store.ReadAggregates(device, absl::Seconds(10));
  ASSERT_TRUE(d1.ok()) << d1.status();
  ASSERT_EQ(d1->series_size(), 1);
  EXPECT_EQ(d1->series(0).series().series_id(), 1);
  EXPECT_EQ(d1->series(0).windows_size(), 5);
}

TEST_F(QueryStoreTest, InterpolatesAnAggregateField) {
  QueryStore store = Store();
  v1::InterpolateRequest req;
  req.mutable_selector()->add_series_ids(1);
  req.mutable_range()->set_start_us(kDay0 - 5 * kMin);
  req.mutable_range()->set_end_us(kDay0 + 10 * kMin);
  req.set_step_us(150 * kS);
  req.set_method(v1::INTERPOLATION_METHOD_LINEAR);
  req.set_window_size_us(5 * kMin);
  req.set_field(v1::AGGREGATE_FIELD_AVG);
  auto r = store.Interpolate(req, absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->series_size(), 1);
  // avg 2 at 00:00 and 10 at 00:05; the next window, 01:00 (avg 2), lies past the range and is
  // the right neighbour of 00:07:30.
  const auto& v = r->series(0).values();
  ASSERT_EQ(v.size(), 4);
  EXPECT_EQ(v[0].time_us(), kDay0);
  EXPECT_DOUBLE_EQ(v[0].value(), 2);
  EXPECT_DOUBLE_EQ(v[1].value(), 6);
  EXPECT_DOUBLE_EQ(v[2].value(), 10);
  EXPECT_EQ(v[3].time_us(), kDay0 + 450 * kS);
  EXPECT_DOUBLE_EQ(v[3].value(), 10 - 8.0 * 150 / 3300);
}

// A look-back longer than the time since the int64 minimum reaches back without limit: the
// bound saturates instead of overflowing (it wrapped into the far future, so the observation
// before the range was not found and the first step had no value).
TEST_F(QueryStoreTest, LocfLookbackPastTheInt64MinimumSaturates) {
  // Its own series, removed again: a point a minute before the epoch and one on day 0.
  Sql("SELECT tidemark_ensure_daily_partitions('points', '1969-12-31', '1970-01-01')");
  Sql(R"(INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)
         VALUES (90, 'k90', 'lookback', 'd90', '{"device_id":"d90"}'))");
  Sql(
      absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                   " VALUES (90, ",
                   Ts(-60 * kS), ", 5, 1, now()), (90, ", Ts(kDay0 + 65 * kMin), ", 2, 1, now())"));
  QueryStore store = Store();
  v1::InterpolateRequest req;
  req.mutable_selector()->add_series_ids(90);
  req.mutable_range()->set_start_us(-10);
  req.mutable_range()->set_end_us(kDay0 + 70 * kMin);
  // Two steps: the epoch, and 01:06 of day 0.
  req.set_step_us(kDay0 + 66 * kMin);
  req.set_method(v1::INTERPOLATION_METHOD_LOCF);
  req.set_max_lookback_us(INT64_MAX);
  auto r = store.Interpolate(req, absl::Seconds(10));
  Sql("DELETE FROM points WHERE series_id = 90; DELETE FROM series WHERE series_id = 90");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->series_size(), 1);
  const auto& v = r->series(0).values();
  ASSERT_EQ(v.size(), 2) << "the point before the range carries into the first step";
  EXPECT_EQ(v[0].time_us(), 0);
  EXPECT_DOUBLE_EQ(v[0].value(), 5);
  EXPECT_EQ(v[1].time_us(), kDay0 + 66 * kMin);
  EXPECT_DOUBLE_EQ(v[1].value(), 2);
}

// Interpolate reads a page's observations through a cursor, a chunk of rows at a time: series
// whose observations span several chunks (25,000 points each, fetched 20,000 at a time) are
// interpolated from all of them, and a page that reads past max_observations is refused, also
// one that ends at its byte bound before reading them all.
TEST_F(QueryStoreTest, InterpolateReadsObservationsAcrossChunksAndCapsThem) {
  constexpr int kPoints = 25'000;
  Sql("SELECT tidemark_ensure_daily_partitions('points', '2026-11-22', '2026-11-22')");
  const int64_t day = kDay0 + 2 * 24 * kHour;  // 2026-11-22, a day no other test uses
  for (int id : {91, 92, 93}) {
    Sql(absl::StrCat(
        "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " VALUES (",
        id, ", 'k", id, "', 'chunked', 'd", id, "', '{\"device_id\":\"d", id, "\"}')"));
  }
  // Point i of series s: at day + i seconds, value s * 100000 + i.
  Sql(
      absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                   " SELECT s, ",
                   Ts(day),
                   " + i * interval '1 second', s * 100000 + i, 1, now()"
                   " FROM unnest(ARRAY[91, 92, 93]) AS s, generate_series(0, ",
                   kPoints - 1, ") AS i ORDER BY i, s"));
  v1::InterpolateRequest req;
  req.mutable_selector()->set_measure_name("chunked");
  req.mutable_range()->set_start_us(day);
  req.mutable_range()->set_end_us(day + kPoints * kS);
  req.set_step_us(10 * kS);  // on every 10th point: the answers are the points
  req.set_method(v1::INTERPOLATION_METHOD_LINEAR);
  auto r = Store().Interpolate(req, absl::Seconds(30));
  QueryLimits capped;
  capped.max_observations = 2 * kPoints;
  auto refused = Store(capped).Interpolate(req, absl::Seconds(30));
  // Also when the page ends early, at its byte bound, after its first series: the range's
  // observations were cut at the cap in no particular order (here the points are stored
  // interleaved), so that series may lack some of its own.
  capped.max_response_bytes = 1;
  auto refused_early = Store(capped).Interpolate(req, absl::Seconds(30));
  Sql("DELETE FROM points WHERE series_id IN (91, 92, 93);"
      " DELETE FROM series WHERE series_id IN (91, 92, 93)");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->series_size(), 3);
  for (const v1::InterpolatedSeries& series : r->series()) {
    const int64_t id = series.series().series_id();
    ASSERT_EQ(series.values_size(), kPoints / 10) << id;
    for (int k = 0; k < series.values_size(); ++k) {
      ASSERT_EQ(series.values(k).time_us(), day + k * 10 * kS) << id;
      ASSERT_DOUBLE_EQ(series.values(k).value(), id * 100000.0 + k * 10) << id << " step " << k;
    }
  }
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
  EXPECT_NE(refused.status().message().find("more than 50000 observations"), std::string::npos)
      << refused.status();
  EXPECT_EQ(refused_early.status().code(), absl::StatusCode::kInvalidArgument)
      << (refused_early.ok() ? absl::StrCat("answered with ", refused_early->series_size(),
                                            " series, the first with ",
                                            refused_early->series(0).values_size(), " values")
                             : refused_early.status().ToString());
}

// A page reads the selected series a chunk at a time, not all of them: across 40 series of
// which only every fourth has data in the range, every page but the last is full, and the
// pages together return every point and window (stored and real_time) once, in order, also
// when the selector names the series.
TEST_F(QueryStoreTest, PagesWalkTheSelectedSeriesInChunks) {
  QueryStore store = Store();
  const int64_t day = kDay0 + 24 * kHour;  // 2026-11-21
  std::vector<int64_t> with_data;
  for (int id = 201; id <= 240; ++id) {
    Sql(absl::StrCat(
        "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " VALUES (",
        id, ", 'walk{device_id=\"w", id, "\"}', 'walk', 'w", id, "', '{\"device_id\":\"w", id,
        "\"}')"));
    if (id % 4 != 0) {  // selected, but its one point and window lie before the range
      Sql(
          absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                       " VALUES (",
                       id, ", ", Ts(day - kHour), ", 1, 1, now())"));
      continue;
    }
    with_data.push_back(id);
    Sql(
        absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                     " SELECT ",
                     id, ", ", Ts(day), " + i * interval '1 minute', i, 1, now()",
                     " FROM generate_series(0, 6) AS i"));
    // After its last stored window: a partial window at 00:20 with real_time.
    Sql(
        absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                     " SELECT ",
                     id, ", ", Ts(day), " + i * interval '1 minute', i, 1, now()",
                     " FROM generate_series(20, 21) AS i"));
    Sql(
        absl::StrCat("INSERT INTO aggregates (series_id, window_size, window_start, count, sum,"
                     " min, max, avg, first, last, version)"
                     " SELECT ",
                     id, ", interval '5 minutes', ", Ts(day),
                     " + i * interval '5 minutes', 1, i, i, i, i, i, i, 1"
                     " FROM generate_series(0, 2) AS i"));
  }
  // A point of series 1 (another measure) in the range: naming it must not return it.
  Sql(
      absl::StrCat("INSERT INTO points (series_id, time, value_double, version, ingested_at)"
                   " VALUES (1, ",
                   Ts(day + kMin), ", 1, 1, now())"));
  auto cleanup = absl::MakeCleanup([day] {
    Sql("DELETE FROM points WHERE series_id BETWEEN 201 AND 240;"
        " DELETE FROM aggregates WHERE series_id BETWEEN 201 AND 240;"
        " DELETE FROM series WHERE series_id BETWEEN 201 AND 240");
    Sql(absl::StrCat("DELETE FROM points WHERE series_id = 1 AND time = ", Ts(day + kMin)));
  });

  v1::ReadPointsRequest points;
  points.mutable_selector()->set_measure_name("walk");
  points.mutable_range()->set_start_us(day);
  points.mutable_range()->set_end_us(day + kHour);
  points.set_page_size(4);
  const Pages by_measure = AllPages(store, points);
  std::vector<std::pair<int64_t, int64_t>> want;
  for (int64_t id : with_data) {
    for (int i : {0, 1, 2, 3, 4, 5, 6, 20, 21}) want.emplace_back(id, day + i * kMin);
  }
  EXPECT_EQ(by_measure.rows, want);
  ASSERT_EQ(by_measure.sizes.size(), 23u);  // 90 points in pages of 4
  for (size_t i = 0; i + 1 < by_measure.sizes.size(); ++i) {
    EXPECT_EQ(by_measure.sizes[i], 4) << "page " << i;
  }

  // The same series named by id (in any order, one twice, and one of another measure with a
  // point in the range, which the measure still excludes): the same pages.
  v1::ReadPointsRequest named = points;
  for (int id = 240; id >= 201; --id) named.mutable_selector()->add_series_ids(id);
  named.mutable_selector()->add_series_ids(204);
  named.mutable_selector()->add_series_ids(1);
  const Pages by_id = AllPages(store, named);
  EXPECT_EQ(by_id.rows, want);
  EXPECT_EQ(by_id.sizes, by_measure.sizes);

  // Pages of 40 points need 5 series with points, 20 selected: each page reads past the ids
  // fetched first (8) into the next fetch.
  v1::ReadPointsRequest larger = points;
  larger.set_page_size(40);
  const Pages by_measure_larger = AllPages(store, larger);
  EXPECT_EQ(by_measure_larger.rows, want);
  EXPECT_EQ(by_measure_larger.sizes, (std::vector<int>{40, 40, 10}));

  v1::ReadAggregatesRequest windows;
  windows.mutable_selector()->set_measure_name("walk");
  *windows.mutable_range() = points.range();
  windows.set_window_size_us(5 * kMin);
  windows.set_real_time(true);
  windows.set_page_size(5);
  const Pages stored_and_live = AllPages(store, windows);
  want.clear();
  for (int64_t id : with_data) {
    for (int minute : {0, 5, 10, 20}) want.emplace_back(id, day + minute * kMin);
  }
  EXPECT_EQ(stored_and_live.rows, want);
  // 30 stored and 10 partial windows in pages of 5
  EXPECT_EQ(stored_and_live.sizes, std::vector<int>(8, 5));
  v1::ReadAggregatesRequest windows_named = windows;
  *windows_named.mutable_selector() = named.selector();
  const Pages named_windows = AllPages(store, windows_named);
  EXPECT_EQ(named_windows.rows, want);
  EXPECT_EQ(named_windows.sizes, stored_and_live.sizes);
}

TEST_F(QueryStoreTest, PagesOfOnePointPerSeriesCrossEveryChunkAndFetchBoundary) {
  QueryStore store = Store();
  const int64_t day = kDay0 + 24 * kHour;  // 2026-11-21
  // 200 series in pairs of consecutive ids, the pairs far apart (the last series the largest
  // id there is), each with one point: every series a chunk or a fetch of ids ends at has a
  // point, so a series skipped or read twice at a boundary changes the rows, whether the
  // next fetch's start is found by id or by count; pages of 100 take several fetches each.
  Sql(absl::StrCat(
      "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
      " SELECT id, 'walk_dense{device_id=\"d' || id || '\"}', 'walk_dense', 'd' || id,"
      " jsonb_build_object('device_id', 'd' || id) FROM (SELECT CASE WHEN i = 200"
      " THEN 9223372036854775807 ELSE (1000 + i / 2) * 1000003 + i % 2 END AS id"
      " FROM generate_series(1, 200) i) x;"
      " INSERT INTO points (series_id, time, value_double, version, ingested_at)"
      " SELECT series_id, ",
      Ts(day), ", 1, 1, now() FROM series WHERE measure_name = 'walk_dense'"));
  auto cleanup = absl::MakeCleanup([] {
    Sql("DELETE FROM points WHERE series_id IN"
        " (SELECT series_id FROM series WHERE measure_name = 'walk_dense');"
        " DELETE FROM series WHERE measure_name = 'walk_dense'");
  });
  std::vector<std::pair<int64_t, int64_t>> want;
  for (int64_t i = 1; i < 200; ++i) want.emplace_back((1000 + i / 2) * 1000003 + i % 2, day);
  want.emplace_back(INT64_MAX, day);
  v1::ReadPointsRequest req;
  req.mutable_selector()->set_measure_name("walk_dense");
  req.mutable_range()->set_start_us(day);
  req.mutable_range()->set_end_us(day + kHour);
  for (int page_size : {1, 3, 7, 20, 100, 1000}) {
    req.set_page_size(page_size);
    const Pages pages = AllPages(store, req);
    EXPECT_EQ(pages.rows, want) << "pages of " << page_size;
    std::vector<int> sizes(200 / page_size, page_size);
    if (200 % page_size != 0) sizes.push_back(200 % page_size);
    EXPECT_EQ(pages.sizes, sizes) << "pages of " << page_size;
  }
}

TEST_F(QueryStoreTest, PagesEndAtTheByteBoundAndResumeExactly) {
  QueryLimits small;
  small.max_response_bytes = 100;
  QueryStore store = Store(small);
  v1::ReadAggregatesRequest req;
  req.set_window_size_us(5 * kMin);
  int pages = 0, windows = 0;
  do {
    auto r = store.ReadAggregates(req, absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    ++pages;
    for (const auto& sw : r->series()) windows += sw.windows_size();
    req.set_page_token(r->next_page_token());
  } while (!req.page_token().empty() && pages < 100);
  EXPECT_EQ(windows, 7);
  EXPECT_GT(pages, 2);
}

// "From the beginning" and "to the end" written as the extremes of int64 read what an
// unbounded range reads, in every read.
TEST_F(QueryStoreTest, ExtremeRangeEndsReadLikeAnOpenRange) {
  QueryStore store = Store();
  auto points = [&](int64_t start, int64_t end) {
    v1::ReadPointsRequest req;
    req.mutable_selector()->set_measure_name("power");
    req.mutable_range()->set_start_us(start);
    req.mutable_range()->set_end_us(end);
    auto r = store.ReadPoints(req, absl::Seconds(10));
    EXPECT_TRUE(r.ok()) << r.status();
    int n = 0;
    if (r.ok()) {
      for (const auto& s : r->series()) n += s.points_size();
    }
    return n;
  };
  EXPECT_EQ(points(0, 0), 4);
  EXPECT_EQ(points(INT64_MIN, 0), 4);
  EXPECT_EQ(points(INT64_MIN, INT64_MAX), 4);
  EXPECT_EQ(points(-8'000'000'000'000'000'000, 0), 4);
  EXPECT_EQ(points(INT64_MIN, kDay0 + 66 * kMin), 2);
}

// Series with wide descriptions (many long dimensions): every page of every read stays within
// the response byte bound counting the series it describes, and paging still reaches them all.
TEST(QueryStorePages, CountTheSeriesTheyDescribeAgainstTheByteBound) {
  auto& pg = testing::SharedPgCluster();
  static int run = 0;  // a database of its own each --gtest_repeat round
  auto dsn = pg.CreateDatabase(absl::StrCat("query_wide_", run++));
  ASSERT_TRUE(dsn.ok()) << dsn.status();
  auto conn = pg::Connect(*dsn);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto logger = log::MakeLogger("query-test");
  ASSERT_TRUE(pg::ApplyMigrations(**conn, writer::SchemaMigrations(), *logger).ok());
  constexpr int kSeries = 60;
  {
    pqxx::nontransaction tx(**conn);
    tx.exec(absl::StrCat(
        "SELECT tidemark_ensure_daily_partitions('points', '2026-11-19', '2026-11-21');"
        "SELECT tidemark_ensure_daily_partitions('aggregates', '2026-11-19', '2026-11-21');"
        // About 1.7 KB of dimensions each.
        "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " SELECT i, 'wide' || i, 'wide', 'dev-' || i, jsonb_build_object('device_id', 'dev-' || i,"
        " 'a', repeat('a', 200), 'b', repeat('b', 200), 'c', repeat('c', 200), 'd', repeat('d', "
        "200),"
        " 'e', repeat('e', 200), 'f', repeat('f', 200), 'g', repeat('g', 200), 'h', repeat('h', "
        "200))"
        " FROM generate_series(1, ",
        kSeries, ") i;",
        "INSERT INTO points (series_id, time, value_double, version, ingested_at) SELECT i, ",
        Ts(kDay0 + kMin), ", i, 1, now() FROM generate_series(1, ", kSeries, ") i;",
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
        " first, last, version) SELECT i, interval '5 minutes', ",
        Ts(kDay0), ", 1, i, i, i, i, i, i, 1 FROM generate_series(1, ", kSeries, ") i"));
  }
  QueryLimits limits;
  limits.max_response_bytes = 16 * 1024;
  QueryStore store(*dsn, limits);
  // A page may pass the bound by the row that crossed it (a series description and its value).
  const size_t bound = limits.max_response_bytes + 4 * 1024;
  v1::SeriesSelector selector;
  selector.set_measure_name("wide");
  auto read_all = [&](auto read, auto request, auto count_items) {
    int items = 0, pages = 0;
    do {
      auto r = (store.*read)(request, absl::Seconds(10));
      if (!r.ok()) {
        ADD_FAILURE() << r.status();
        return -1;
      }
      EXPECT_LE(r->ByteSizeLong(), bound) << "page " << pages;
      items += count_items(*r);
      request.set_page_token(r->next_page_token());
    } while (!request.page_token().empty() && ++pages < 100);
    return items;
  };
  v1::ListSeriesRequest list;
  *list.mutable_selector() = selector;
  EXPECT_EQ(read_all(&QueryStore::ListSeries, list,
                     [](const v1::ListSeriesResponse& r) { return r.series_size(); }),
            kSeries);
  // The rows of a page: what `rows_of` counts in each of its series.
  auto rows = [](auto rows_of) {
    return [rows_of](const auto& page) {
      int n = 0;
      for (const auto& s : page.series()) n += (s.*rows_of)();
      return n;
    };
  };
  v1::ReadPointsRequest points;
  *points.mutable_selector() = selector;
  EXPECT_EQ(read_all(&QueryStore::ReadPoints, points, rows(&v1::SeriesPoints::points_size)),
            kSeries);
  v1::ReadAggregatesRequest windows;
  *windows.mutable_selector() = selector;
  windows.set_window_size_us(5 * kMin);
  EXPECT_EQ(read_all(&QueryStore::ReadAggregates, windows, rows(&v1::SeriesWindows::windows_size)),
            kSeries);
  v1::RollupRequest rollup;
  *rollup.mutable_selector() = selector;
  rollup.mutable_range()->set_start_us(kDay0);
  rollup.mutable_range()->set_end_us(kDay0 + kHour);
  rollup.set_bucket_us(kHour);
  EXPECT_EQ(read_all(&QueryStore::Rollup, rollup,
                     [](const v1::RollupResponse& r) { return r.groups_size(); }),
            kSeries);
}

TEST_F(QueryStoreTest, BadRequestsAreInvalidArgumentWithAMessage) {
  QueryStore store = Store();
  v1::ReadAggregatesRequest unknown_size;
  unknown_size.set_window_size_us(7 * kMin);
  v1::ReadAggregatesRequest huge_page;
  huge_page.set_window_size_us(5 * kMin);
  huge_page.set_page_size(1'000'000);
  v1::ReadAggregatesRequest bad_token;
  bad_token.set_window_size_us(5 * kMin);
  bad_token.set_page_token("not a token");
  v1::ReadAggregatesRequest inverted;
  inverted.set_window_size_us(5 * kMin);
  inverted.mutable_range()->set_start_us(kDay0);
  inverted.mutable_range()->set_end_us(kDay0 - 1);
  for (const auto* req : {&unknown_size, &huge_page, &bad_token, &inverted}) {
    auto r = store.ReadAggregates(*req, absl::Seconds(10));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << req->DebugString();
    EXPECT_FALSE(r.status().message().empty());
  }
  v1::ListSeriesRequest bad_regex;
  v1::DimensionMatcher* m = bad_regex.mutable_selector()->add_matchers();
  m->set_name("site");
  m->set_op(v1::DimensionMatcher::OP_REGEX);
  m->set_value("a[");
  EXPECT_EQ(store.ListSeries(bad_regex, absl::Seconds(10)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The same pattern, valid, selects in SQL what the in-memory matcher selects.
  m->set_value("[ab]");
  auto listed = store.ListSeries(bad_regex, absl::Seconds(10));
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->series_size(), 4);  // 1, 2, 3 and the string series 5
  m->set_op(v1::DimensionMatcher::OP_NOT_REGEX);
  listed = store.ListSeries(bad_regex, absl::Seconds(10));
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->series_size(), 1);
  EXPECT_EQ(listed->series(0).series_id(), 4);
}

// Subscribe over real gRPC against the same database.
class SubscribeTest : public QueryStoreTest {
 protected:
  void StartServer(size_t buffer, int fetch_batch = 5000,
                   absl::Duration authorization_interval = absl::Seconds(1),
                   size_t max_subscriptions = 1000, size_t max_subscriptions_per_client = 250,
                   size_t buffer_bytes = 16 << 20) {
    QueryConfig config;
    config.subscriptions.subscriber_buffer_bytes = buffer_bytes;
    config.subscriptions.max_subscriptions = max_subscriptions;
    config.subscriptions.max_subscriptions_per_client = max_subscriptions_per_client;
    config.pg_dsn = *dsn_;
    config.workers = 1;
    config.subscriptions.subscriber_buffer = buffer;
    config.subscriptions.fetch_batch = fetch_batch;
    config.subscriptions.poll_interval = absl::Milliseconds(200);
    config.subscriptions.authorization_interval = authorization_interval;
    config.subscriptions.progress_interval = progress_interval_;
    metrics_ = std::make_unique<QueryMetrics>(registry_);
    service_ = std::make_unique<QueryServiceImpl>(config, *metrics_, *authenticator_,
                                                  log::MakeLogger("query"));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::QueryService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  // A series of its own for each test: StoreVersions' versions then start above nothing
  // another test (or an earlier --gtest_repeat round) stored, and QueryStoreTest's series keep
  // the windows their tests expect, in any order (--gtest_shuffle).
  void SetUp() override {
    static int64_t next_series = 1'000;
    series_ = next_series++;
    Sql(absl::StrCat(
        "INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " VALUES (",
        series_, ", 'k", series_, "', 'subscribed', 'd", series_, "', '{\"device_id\":\"d", series_,
        "\"}')"));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    service_.reset();
    // What the test stored, its own series and the wide ones (9, 11), goes: QueryStoreTest's
    // reads of every series expect the fixture's alone.
    Sql(absl::StrCat("DELETE FROM aggregates WHERE series_id IN (", series_,
                     ", 9, 11); DELETE FROM series WHERE series_id IN (", series_, ", 9, 11)"));
  }

  // Checks calls against a credentials file granting `read` to a token that expires at
  // `expires` (whole seconds); returns the token.
  std::string RequireTokenExpiringAt(absl::Time expires) {
    absl::StatusOr<std::string> token = auth::NewToken();
    EXPECT_TRUE(token.ok());
    const std::string path = absl::StrCat(::testing::TempDir(), "/query-credentials-", getpid());
    std::ofstream(path) << "token subscriber sha256:" << auth::TokenSha256(*token)
                        << " read expires="
                        << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", expires, absl::UTCTimeZone())
                        << "\n";
    absl::StatusOr<std::unique_ptr<auth::Authenticator>> a =
        auth::Authenticator::FromFile(path, log::MakeLogger("auth"));
    EXPECT_TRUE(a.ok()) << a.status();
    authenticator_ = *std::move(a);
    return *token;
  }

  // The resume token of a subscription opened now: its first response, which has no updates.
  std::string TokenOfNow(const v1::SubscribeRequest& req) {
    grpc::ClientContext ctx;
    auto reader = stub_->Subscribe(&ctx, req);
    v1::SubscribeResponse first;
    EXPECT_TRUE(reader->Read(&first));
    EXPECT_EQ(first.updates_size(), 0);
    ctx.TryCancel();
    reader->Finish();
    return first.resume_token();
  }

  // What a stream delivered, read until `n` updates or its end, then cancelled.
  struct ReadBack {
    int64_t received = 0, first_version = -1, last_version = 0;
    bool in_order = true;  // versions never went down
    grpc::Status status;
  };
  static ReadBack ReadUpTo(grpc::ClientContext& ctx,
                           grpc::ClientReader<v1::SubscribeResponse>& reader, int64_t n) {
    ReadBack read;
    v1::SubscribeResponse resp;
    while (read.received < n && reader.Read(&resp)) {
      for (const auto& u : resp.updates()) {
        if (read.first_version < 0) read.first_version = u.version();
        read.in_order = read.in_order && u.version() >= read.last_version;
        read.last_version = u.version();
        ++read.received;
      }
    }
    ctx.TryCancel();
    read.status = reader.Finish();
    return read;
  }

  // Waits until the hub has read the change log to its end, so that a stream resumed from an
  // earlier token catches up the whole gap from the log rather than becoming live part way.
  void WaitForHubAtLogEnd(const v1::SubscribeRequest& req) {
    int64_t end = 0;
    {
      pqxx::nontransaction tx(*owner_);
      end = tx.exec1("SELECT coalesce(max(change_id), 0) FROM aggregate_changes")[0].as<int64_t>();
    }
    v1::SubscribeRequest fresh = req;
    fresh.clear_resume_token();
    ASSERT_TRUE(WaitFor(
        [&] {
          absl::StatusOr<int64_t> at = DecodeResumeToken(TokenOfNow(fresh));
          return at.ok() && *at >= end;
        },
        absl::Seconds(10)));
  }

  // Stores `n` new versions of `windows` windows of the test's series, one transaction per
  // version.
  void StoreVersions(int first_version, int n, int windows = 1) {
    for (int v = first_version; v < first_version + n; ++v) {
      std::string rows;
      for (int w = 0; w < windows; ++w) {
        absl::StrAppend(&rows, w == 0 ? "" : ",", "(", series_, ", interval '5 minutes', ",
                        Ts(kDay0 + (120 + 5 * w) * kMin), ", 1, ", v, ", ", v, ", ", v, ", ", v,
                        ", ", v, ", ", v, ", ", v, ")");
      }
      Sql(
          absl::StrCat("INSERT INTO aggregates (series_id, window_size, window_start, count,"
                       " sum, min, max, avg, first, last, version) VALUES ",
                       rows,
                       " ON CONFLICT (series_id, window_size, window_start)"
                       " DO UPDATE SET sum = excluded.sum, version = excluded.version"
                       " WHERE excluded.version > aggregates.version"));
    }
  }

  // Series 11, with about 10 KB of dimensions, and `windows` of its windows stored, or given
  // their next version, in one transaction: one change each.
  void StoreWideWindows(int windows) {
    Sql("INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
        " SELECT 11, 'k11', 'wide_bounded', 'd11', jsonb_build_object('device_id', 'd11', 'a',"
        " repeat('a', 2500), 'b', repeat('b', 2500), 'c', repeat('c', 2500), 'd', repeat('d',"
        " 2500)) ON CONFLICT DO NOTHING");
    Sql(absl::StrCat(
        "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max,"
        " avg, first, last, version) SELECT 11, interval '5 minutes', ",
        Ts(kDay0), " + i * interval '1 minute', 1, 1, 1, 1, 1, 1, 1, 1 FROM generate_series(0, ",
        windows - 1,
        ") i ON CONFLICT (series_id, window_size, window_start)"
        " DO UPDATE SET version = aggregates.version + 1"));
  }

  metrics::Registry registry_;
  std::unique_ptr<QueryMetrics> metrics_;
  std::unique_ptr<auth::Authenticator> authenticator_ = auth::Authenticator::Open();
  std::unique_ptr<QueryServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::QueryService::Stub> stub_;
  int64_t series_ = 0;
  absl::Duration progress_interval_ = absl::Seconds(30);
};

TEST_F(SubscribeTest, ResumesFromATokenAndRefusesAPrunedOne) {
  StartServer(10'000);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  const std::string token = TokenOfNow(req);
  StoreVersions(100, 20);  // stored while nobody listens
  req.set_resume_token(token);
  grpc::ClientContext ctx;
  auto reader = stub_->Subscribe(&ctx, req);
  std::vector<int64_t> versions;
  v1::SubscribeResponse resp;
  while (versions.size() < 20 && reader->Read(&resp)) {
    for (const auto& u : resp.updates()) versions.push_back(u.version());
  }
  ctx.TryCancel();
  reader->Finish();
  ASSERT_EQ(versions.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(versions[i], 100 + i);

  Sql("SELECT tidemark_prune_aggregate_changes('0 seconds')");
  grpc::ClientContext old_ctx;
  auto old = stub_->Subscribe(&old_ctx, req);
  while (old->Read(&resp)) {
  }
  const grpc::Status status = old->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << status.error_message();
  EXPECT_NE(status.error_message().find("subscription_retention"), std::string::npos);
}

// A stream whose selector matches none of the changes still gets its token moved past them
// (a response without updates), so that resuming after the log was pruned loses nothing and
// is not refused.
TEST_F(SubscribeTest, AQuietSubscriptionsTokenFollowsTheLog) {
  progress_interval_ = absl::Milliseconds(200);
  StartServer(10'000);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);  // nothing is stored for it
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse first;
  ASSERT_TRUE(reader->Read(&first));
  const absl::StatusOr<int64_t> start = DecodeResumeToken(first.resume_token());
  ASSERT_TRUE(start.ok()) << start.status();
  // Another series: three changes, none matching, stored at once, within the interval of
  // the first response: the response that moves the token past them follows once the
  // interval is over, though the log does not move again.
  StoreWideWindows(3);
  int64_t log_end = 0;
  {
    pqxx::nontransaction tx(*owner_);
    log_end = tx.exec1("SELECT max(change_id) FROM aggregate_changes")[0].as<int64_t>();
  }
  ASSERT_GT(log_end, *start);
  v1::SubscribeResponse progress;
  ASSERT_TRUE(reader->Read(&progress)) << "no response followed the unmatched changes";
  EXPECT_EQ(progress.updates_size(), 0);
  const absl::StatusOr<int64_t> moved = DecodeResumeToken(progress.resume_token());
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, log_end);
  ctx.TryCancel();
  reader->Finish();

  // The log pruned past the first token: it is refused, the moved one resumes.
  Sql("SELECT tidemark_prune_aggregate_changes('0 seconds')");
  for (const auto& [token, code] :
       {std::pair{first.resume_token(), grpc::StatusCode::OUT_OF_RANGE},
        std::pair{progress.resume_token(), grpc::StatusCode::CANCELLED}}) {
    v1::SubscribeRequest resume = req;
    resume.set_resume_token(token);
    grpc::ClientContext resume_ctx;
    resume_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto resumed = stub_->Subscribe(&resume_ctx, resume);
    v1::SubscribeResponse resp;
    if (resumed->Read(&resp)) {
      EXPECT_EQ(resp.resume_token(), token);  // the confirmation
      resume_ctx.TryCancel();
    }
    const grpc::Status status = resumed->Finish();
    EXPECT_EQ(status.error_code(), code) << status.error_message();
  }
}

// A token past the end of the log (another deployment's, or from before the store was
// restored) would otherwise wait silently until the log caught up with it.
TEST_F(SubscribeTest, ATokenAheadOfTheLogIsOutOfRange) {
  StartServer(10'000);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  const absl::StatusOr<int64_t> now = DecodeResumeToken(TokenOfNow(req));
  ASSERT_TRUE(now.ok()) << now.status();
  req.set_resume_token(EncodeResumeToken(*now + 1'000'000));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  while (reader->Read(&resp)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << status.error_message();
  EXPECT_NE(status.error_message().find("ahead of the change log"), std::string::npos);

  // The log's own end is still a good place to resume from.
  req.set_resume_token(EncodeResumeToken(*now));
  grpc::ClientContext ok_ctx;
  auto ok = stub_->Subscribe(&ok_ctx, req);
  ASSERT_TRUE(ok->Read(&resp));
  EXPECT_EQ(resp.resume_token(), EncodeResumeToken(*now));
  ok_ctx.TryCancel();
  ok->Finish();
}

TEST_F(SubscribeTest, ASlowSubscriberIsEndedRatherThanBufferedWithoutBound) {
  StartServer(5'000, 500);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  // A subscriber that keeps reading, beside one that stops after its first response.
  grpc::ClientContext fast_ctx;
  auto fast = stub_->Subscribe(&fast_ctx, req);
  v1::SubscribeResponse resp;
  ASSERT_TRUE(fast->Read(&resp));
  std::atomic<int64_t> fast_received = 0;
  std::thread fast_reader([&] {
    v1::SubscribeResponse r;
    while (fast->Read(&r)) fast_received += r.updates_size();
  });
  grpc::ClientContext slow_ctx;
  auto slow = stub_->Subscribe(&slow_ctx, req);
  ASSERT_TRUE(slow->Read(&resp));
  // 60,000 versions: the slow stream's transport windows fill, its queue reaches the bound,
  // and it ends; the reading one receives everything.
  StoreVersions(1'000, 300, 200);
  ASSERT_TRUE(
      WaitFor([&] { return metrics_->subscriptions.ended_slow.Value() > 0; }, absl::Seconds(30)));
  int64_t received = 0;
  while (slow->Read(&resp)) received += resp.updates_size();
  const grpc::Status status = slow->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("resume_token"), std::string::npos);
  EXPECT_LT(received, 60'000);
  EXPECT_TRUE(WaitFor([&] { return fast_received.load() == 60'000; }, absl::Seconds(30)))
      << fast_received.load();
  EXPECT_EQ(metrics_->subscriptions.ended_slow.Value(), 1u);
  fast_ctx.TryCancel();
  fast_reader.join();
  fast->Finish();
}

// Every update carries its series' dimensions, so the updates a subscriber may fall behind
// are bounded in bytes too: 1,800 updates of about 10 KB each are far fewer than the 10,000
// the count allows, but about 18 MB, so a subscriber that stops reading is ended at 1 MiB.
TEST_F(SubscribeTest, ASlowSubscriberOfWideSeriesIsEndedAtTheByteBound) {
  StartServer(10'000, 5'000, absl::Seconds(1), 1000, 250, /*buffer_bytes=*/1 << 20);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(11);
  grpc::ClientContext ctx;
  auto slow = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  ASSERT_TRUE(slow->Read(&resp));
  for (int i = 0; i < 3; ++i) StoreWideWindows(600);
  ASSERT_TRUE(
      WaitFor([&] { return metrics_->subscriptions.ended_slow.Value() > 0; }, absl::Seconds(30)));
  int64_t received = 0;
  while (slow->Read(&resp)) received += resp.updates_size();
  const grpc::Status status = slow->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("1 MiB"), std::string::npos) << status.error_message();
  EXPECT_LT(received, 1'800);
}

// A resume across more bytes of missed updates than the byte bound is sent them as the client
// takes them, a part of the bound at a time, and is not ended.
TEST_F(SubscribeTest, AResumeAcrossMoreBytesThanTheBoundCatchesUp) {
  StartServer(10'000, 5'000, absl::Seconds(1), 1000, 250, /*buffer_bytes=*/1 << 20);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(11);
  const std::string token = TokenOfNow(req);
  for (int i = 0; i < 3; ++i) StoreWideWindows(600);  // about 18 MB while nobody listens
  WaitForHubAtLogEnd(req);
  req.set_resume_token(token);
  grpc::ClientContext ctx;
  auto reader = stub_->Subscribe(&ctx, req);
  absl::SleepFor(absl::Seconds(1));  // the transport's windows fill; the queue holds the rest
  const ReadBack read = ReadUpTo(ctx, *reader, 1'800);
  EXPECT_EQ(read.received, 1'800) << read.status.error_code() << " " << read.status.error_message();
  EXPECT_TRUE(read.in_order);
  EXPECT_EQ(read.last_version, read.first_version + 2);  // three transactions, one version each
  EXPECT_EQ(metrics_->subscriptions.ended_slow.Value(), 0u);
}

// A subscriber that resumes across more missed updates than its buffer holds is sent them as
// it takes them, instead of being ended for a backlog it never had the chance to read.
TEST_F(SubscribeTest, AResumeAcrossAGapLargerThanTheBufferCatchesUp) {
  StartServer(1'000, 5'000);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  const std::string token = TokenOfNow(req);
  StoreVersions(10'000, 300, 200);  // 60,000 updates while nobody listens
  WaitForHubAtLogEnd(req);
  req.set_resume_token(token);
  grpc::ClientContext ctx;
  auto reader = stub_->Subscribe(&ctx, req);
  // The client reads nothing for a second: the transport's windows fill and the stream's
  // queue is all that holds what the catch-up reads.
  absl::SleepFor(absl::Seconds(1));
  const ReadBack read = ReadUpTo(ctx, *reader, 60'000);
  EXPECT_EQ(read.received, 60'000)
      << read.status.error_code() << " " << read.status.error_message();
  EXPECT_TRUE(read.in_order);
  EXPECT_EQ(read.last_version, 10'299);
  EXPECT_EQ(metrics_->subscriptions.ended_slow.Value(), 0u);
}

// Every update carries its series' dimensions: 600 updates of a series with about 10 KB of
// them are some 6 MB, more than gRPC's 4 MiB message limit if sent as one response of 500.
// Responses end before 3 MiB, so the subscriber receives every update.
TEST_F(SubscribeTest, ResponsesStayWithinGrpcsMessageLimit) {
  StartServer(10'000);
  Sql("INSERT INTO series (series_id, canonical_key, measure_name, device_id, dimensions)"
      " SELECT 9, 'k9', 'wide_subscribed', 'd9', jsonb_build_object('device_id', 'd9', 'a',"
      " repeat('a', 2500), 'b', repeat('b', 2500), 'c', repeat('c', 2500), 'd', repeat('d',"
      " 2500)) ON CONFLICT DO NOTHING");
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(9);
  grpc::ClientContext ctx;
  auto reader = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  // 600 windows in one transaction: one change-log read offers them all at once.
  Sql(absl::StrCat(
      "INSERT INTO aggregates (series_id, window_size, window_start, count, sum, min, max, avg,"
      " first, last, version) SELECT 9, interval '5 minutes', ",
      Ts(kDay0), " + i * interval '1 minute', 1, 1, 1, 1, 1, 1, 1, 1",
      " FROM generate_series(0, 599) i ON CONFLICT (series_id, window_size, window_start)"
      " DO UPDATE SET version = aggregates.version + 1"));
  int64_t received = 0;
  size_t largest = 0;
  while (received < 600 && reader->Read(&resp)) {
    received += resp.updates_size();
    largest = std::max(largest, resp.ByteSizeLong());
  }
  ctx.TryCancel();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(received, 600) << status.error_code() << " " << status.error_message();
  EXPECT_GT(largest, 1u << 20) << "responses carry many updates";
  EXPECT_LE(largest, 3u << 20);
}

// Credentials expire (or are revoked) under open subscriptions. One to which no change comes
// ends within the check interval; one to which a change comes is not sent it, even when the
// periodic check is far off.
TEST_F(SubscribeTest, AnIdleSubscriptionEndsWhenItsTokenExpires) {
  const absl::Time expires = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) + 3);
  const std::string token = RequireTokenExpiringAt(expires);
  StartServer(100, 5000, absl::Milliseconds(200));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(987'654'321);  // no such series: no change comes
  auto reader = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  while (reader->Read(&resp)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_GE(absl::Now(), expires);
  EXPECT_LT(absl::Now(), expires + absl::Seconds(5)) << "within the interval, not at the deadline";
}

TEST_F(SubscribeTest, AChangeAfterTheTokenExpiredIsNotSent) {
  const absl::Time expires = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) + 2);
  const std::string token = RequireTokenExpiringAt(expires);
  StartServer(100, 5000, absl::Hours(1));  // only the check before each batch
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  auto reader = stub_->Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  absl::SleepFor(expires - absl::Now() + absl::Milliseconds(200));
  StoreVersions(50'000, 1);
  int updates = 0;
  while (reader->Read(&resp)) updates += resp.updates_size();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_EQ(updates, 0);
}

// One client cannot take every place of a replica: beyond its own limit its new stream is
// refused, while another client still subscribes.
TEST_F(SubscribeTest, OneClientCannotTakeEveryPlace) {
  absl::StatusOr<std::string> alice = auth::NewToken(), bob = auth::NewToken();
  ASSERT_TRUE(alice.ok() && bob.ok());
  const std::string path = absl::StrCat(::testing::TempDir(), "/query-two-clients-", getpid());
  std::ofstream(path) << "token alice sha256:" << auth::TokenSha256(*alice) << " read\n"
                      << "token bob sha256:" << auth::TokenSha256(*bob) << " read\n";
  absl::StatusOr<std::unique_ptr<auth::Authenticator>> a =
      auth::Authenticator::FromFile(path, log::MakeLogger("auth"));
  ASSERT_TRUE(a.ok()) << a.status();
  authenticator_ = *std::move(a);
  StartServer(100, 5000, absl::Seconds(1), /*max_subscriptions=*/10,
              /*max_subscriptions_per_client=*/2);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  v1::SubscribeResponse resp;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  auto subscribe = [&](const std::string& token) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->Subscribe(contexts.back().get(), req);
  };
  auto first = subscribe(*alice);
  ASSERT_TRUE(first->Read(&resp));
  auto second = subscribe(*alice);
  ASSERT_TRUE(second->Read(&resp));
  auto third = subscribe(*alice);
  EXPECT_FALSE(third->Read(&resp));
  const grpc::Status refused = third->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "alice has 2 subscriptions"))
      << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "--max_subscriptions_per_client"))
      << refused.error_message();
  EXPECT_EQ(metrics_->subscriptions.refused_client_full.Value(), 1u);
  EXPECT_EQ(metrics_->subscriptions.refused_full.Value(), 0u);
  auto bobs = subscribe(*bob);
  EXPECT_TRUE(bobs->Read(&resp)) << "another client still has places";
  for (auto& c : contexts) c->TryCancel();
  first->Finish();
  second->Finish();
  bobs->Finish();
}

// Each stream's queue is bounded, and so is their number: beyond it a new one is refused,
// and a place freed is taken again.
TEST_F(SubscribeTest, SubscriptionsBeyondTheLimitAreRefused) {
  StartServer(100, 5000, absl::Seconds(1), /*max_subscriptions=*/2);
  v1::SubscribeRequest req;
  req.mutable_selector()->add_series_ids(series_);
  v1::SubscribeResponse resp;
  grpc::ClientContext first_ctx, second_ctx, third_ctx;
  auto first = stub_->Subscribe(&first_ctx, req);
  ASSERT_TRUE(first->Read(&resp));
  auto second = stub_->Subscribe(&second_ctx, req);
  ASSERT_TRUE(second->Read(&resp));
  auto third = stub_->Subscribe(&third_ctx, req);
  EXPECT_FALSE(third->Read(&resp));
  const grpc::Status refused = third->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "--max_subscriptions"))
      << refused.error_message();
  EXPECT_EQ(metrics_->subscriptions.refused_full.Value(), 1u);

  first_ctx.TryCancel();
  first->Finish();
  // The freed place is taken again once the cancelled stream is done.
  EXPECT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        auto reader = stub_->Subscribe(&ctx, req);
        const bool opened = reader->Read(&resp);
        ctx.TryCancel();
        reader->Finish();
        return opened;
      },
      absl::Seconds(10)));
  second_ctx.TryCancel();
  second->Finish();
}

TEST_F(SubscribeTest, MalformedTokenAndBadRegexAreInvalidArgument) {
  StartServer(100);
  v1::SubscribeRequest bad_token;
  bad_token.set_resume_token("%%%");
  v1::SubscribeRequest bad_regex;
  v1::DimensionMatcher* m = bad_regex.mutable_selector()->add_matchers();
  m->set_name("site");
  m->set_op(v1::DimensionMatcher::OP_REGEX);
  m->set_value("(");
  for (const auto* req : {&bad_token, &bad_regex}) {
    grpc::ClientContext ctx;
    auto reader = stub_->Subscribe(&ctx, *req);
    v1::SubscribeResponse resp;
    EXPECT_FALSE(reader->Read(&resp));
    const grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_FALSE(s.error_message().empty());
  }
}

}  // namespace
}  // namespace tidemark::query
