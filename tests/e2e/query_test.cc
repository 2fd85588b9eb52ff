// The query read side end to end: the real binaries, PostgreSQL and the development broker.
// Simulator traffic (late within and beyond the allowed lateness) and a fleet of meters with a
// `site` dimension run through the pipeline once; then every read RPC is compared with a
// computation of the test's own from the stored tables: ReadAggregates with the `aggregates`
// rows, Rollup with a batch GROUP BY over `points`, Interpolate with the implementations in
// this file, Subscribe with the `aggregate_changes` log, and real-time windows with a
// recomputation from raw points while the aggregator is stopped.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/support/aggregate_oracle.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"
#include "tests/support/stack.h"
#include "tidemark/v1/ingest.grpc.pb.h"
#include "tidemark/v1/query.grpc.pb.h"

namespace tidemark::e2e {
namespace {

using testing::Stack;
using testing::WaitFor;

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kSize5s = 5 * kSecond;
constexpr int64_t kSize10s = 10 * kSecond;
constexpr int64_t kHour = 3600 * kSecond;
constexpr int64_t kDay = 24 * kHour;
constexpr int kMeters = 12;
// About as long as the simulators run (12 s), a round every 700 ms.
constexpr int kMeterRounds = 17;

// Small windows and lateness, as in aggregation_test, so that a run of seconds takes every
// path: on time, late within lateness (re-emitted) and beyond it (repaired by the writer).
const std::vector<std::string> kAggregatorFlags = {"--windows=5s,10s", "--max_out_of_orderness=1s",
                                                   "--allowed_lateness=5s", "--idle_timeout=2s",
                                                   "--commit_interval=500ms"};

// SQL fragments. Stack::Sql hands the text to a shell in double quotes, so none may contain
// a dollar sign, a double quote or a backslash.
constexpr const char* kValue = "coalesce(p.value_double, p.value_int::float8)";
std::string Micros(const std::string& expr) {
  return absl::StrCat("(extract(epoch from ", expr, ") * 1000000)::bigint");
}
std::string Interval(int64_t us) { return absl::StrCat("(interval '1 microsecond' * ", us, ")"); }
std::string Ts(int64_t us) {
  return absl::StrCat("('epoch'::timestamptz + interval '1 microsecond' * ", us, ")");
}

using Row = std::vector<std::string>;

// psql -At output: one row a line, columns separated by '|'.
std::vector<Row> Rows(Stack& stack, const std::string& sql) {
  std::vector<Row> rows;
  for (absl::string_view line : absl::StrSplit(stack.Sql(sql), '\n', absl::SkipEmpty())) {
    rows.push_back(absl::StrSplit(line, '|'));
  }
  return rows;
}

int64_t Int(const std::string& s) {
  int64_t v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << "not an integer: " << s;
  return v;
}

// psql prints float8 in the shortest form that reads back as the same double, so parsed
// values compare exactly with what the service read through libpqxx.
double Dbl(const std::string& s) {
  double v = 0;
  EXPECT_TRUE(absl::SimpleAtod(s, &v)) << "not a number: " << s;
  return v;
}

bool Near(double got, double want, double relative) {
  return std::abs(got - want) <= relative * std::max(1.0, std::abs(want));
}

std::chrono::system_clock::time_point Deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(60);
}

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(static_cast<int>(s.error_code()), " ", s.error_message());
}

// Waits until every window with points has its aggregate and every aggregate equals its batch
// recomputation: the pipeline has drained.
void WaitForDrain(Stack& stack) {
  testing::OracleResult r;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = testing::AggregateOracle(stack, "(interval '5 seconds'), (interval '10 seconds')");
        return r.Matches();
      },
      absl::Seconds(90)))
      << "windows " << r.windows << ", missing " << r.missing << ", wrong " << r.wrong
      << ", extra " << r.extra;
}

// An aggregate value with exact equality: stored values travel as float8 text both ways.
struct Agg {
  int64_t count = 0;
  double sum = 0, min = 0, max = 0, avg = 0, first = 0, last = 0;
  bool operator==(const Agg&) const = default;
};

Agg FromProto(const v1::AggregateValue& v) {
  return {v.count(), v.sum(), v.min(), v.max(), v.avg(), v.first(), v.last()};
}

std::ostream& operator<<(std::ostream& os, const Agg& a) {
  return os << "{count " << a.count << " sum " << a.sum << " min " << a.min << " max " << a.max
            << " avg " << a.avg << " first " << a.first << " last " << a.last << "}";
}

// One window as ReadAggregates returns it, or as the `aggregates` table holds it.
struct Window {
  int64_t series_id = 0, start_us = 0;
  Agg value;
  int64_t version = 0;
  bool partial = false;
  bool operator==(const Window&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Window& w) {
  return os << "series " << w.series_id << " start " << w.start_us << " " << w.value << " version "
            << w.version << (w.partial ? " partial" : "");
}

// One stored version of a window, as Subscribe delivers it and aggregate_changes logs it.
struct Change {
  int64_t series_id = 0, size_us = 0, start_us = 0, version = 0;
  Agg value;
  bool operator==(const Change&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Change& c) {
  return os << "series " << c.series_id << " size " << c.size_us << " start " << c.start_us
            << " version " << c.version << " " << c.value;
}

Change FromProto(const v1::WindowAggregate& a) {
  return {a.series().series_id(),
          a.window_size_us(),
          a.window_start_us(),
          a.version(),
          {a.count(), a.sum(), a.min(), a.max(), a.avg(), a.first(), a.last()}};
}

// Reports the first difference of two sequences rather than printing thousands of elements.
template <typename T>
void ExpectSameSequence(const std::vector<T>& got, const std::vector<T>& want,
                        const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what << ": lengths differ";
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (!(got[i] == want[i])) {
      ADD_FAILURE() << what << ": first difference at " << i << " of " << want.size() << "\n  got  "
                    << got[i] << "\n  want " << want[i];
      return;
    }
  }
}

// Every window of one size in the `aggregates` table, optionally narrowed by a SQL condition
// on `a` and `s`, in ReadAggregates' order.
std::vector<Window> StoredWindows(Stack& stack, int64_t size_us, const std::string& where = "") {
  std::vector<Window> out;
  for (const Row& r : Rows(stack, absl::StrCat("SELECT a.series_id, ", Micros("a.window_start"),
                                               ", a.count, a.sum, a.min, a.max, a.avg, a.first,"
                                               " a.last, a.version FROM aggregates a"
                                               " JOIN series s USING (series_id)"
                                               " WHERE a.window_size = ",
                                               Interval(size_us), where,
                                               " ORDER BY a.series_id, a.window_start"))) {
    out.push_back({Int(r[0]), Int(r[1]),
                   Agg{Int(r[2]), Dbl(r[3]), Dbl(r[4]), Dbl(r[5]), Dbl(r[6]), Dbl(r[7]), Dbl(r[8])},
                   Int(r[9]), false});
  }
  return out;
}

// All windows ReadAggregates returns for a request, following page tokens; the first error
// ends the listing and is returned.
grpc::Status ReadAllAggregates(Stack& stack, v1::ReadAggregatesRequest req,
                               std::vector<Window>* out, int* pages = nullptr) {
  int n = 0;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::ReadAggregatesResponse resp;
    const grpc::Status s = stack.query().ReadAggregates(&ctx, req, &resp);
    if (!s.ok()) return s;
    EXPECT_EQ(resp.window_size_us(), req.window_size_us());
    for (const v1::SeriesWindows& sw : resp.series()) {
      EXPECT_FALSE(sw.series().measure_name().empty()) << "series " << sw.series().series_id();
      for (const v1::AggregateWindow& w : sw.windows()) {
        out->push_back({sw.series().series_id(), w.start_us(), FromProto(w.value()), w.version(),
                        w.partial()});
      }
    }
    req.set_page_token(resp.next_page_token());
    if (pages != nullptr) *pages = ++n;
  } while (!req.page_token().empty());
  return grpc::Status::OK;
}

std::vector<Window> ReadAggregates(Stack& stack, const v1::ReadAggregatesRequest& req,
                                   int* pages = nullptr) {
  std::vector<Window> out;
  const grpc::Status s = ReadAllAggregates(stack, req, &out, pages);
  EXPECT_TRUE(s.ok()) << "ReadAggregates: " << Describe(s);
  return out;
}

// ---- The meter fleet: 12 meters over 3 sites, numeric measure `power`. ----

std::string MeterId(int d) { return absl::StrFormat("meter-%02d", d + 1); }
std::string SiteOf(int d) {
  return absl::StrCat("site-", std::string(1, static_cast<char>('a' + d % 3)));
}

void AddMeterEvent(v1::WriteRequest& req, int d, int64_t time_us, int salt) {
  v1::Event* e = req.add_events();
  e->set_device_id(MeterId(d));
  e->set_time(time_us);
  e->set_time_unit(v1::TIME_UNIT_MICROSECONDS);
  (*e->mutable_dimensions())["site"] = SiteOf(d);
  // Odd meters send integers, so that both value columns are read.
  if (d % 2 == 1) {
    (*e->mutable_measures())["power"].set_int64_value(100 * d + (salt * 7) % 13);
  } else {
    (*e->mutable_measures())["power"].set_double_value(50.0 + d + 10.0 * std::sin(0.7 * salt) +
                                                       0.001 * salt);
  }
}

int64_t Write(Stack& stack, const v1::WriteRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::WriteResponse resp;
  const grpc::Status s = stack.ingest().Write(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << Describe(s);
  EXPECT_EQ(resp.accepted(), req.events_size()) << resp.DebugString();
  return resp.accepted();
}

// One round every 700 ms from t0 (a whole second), meter d at t0 + r * 700 ms + d * 37 ms, so
// that some points sit exactly on step multiples. Gaps: each meter skips one round in five,
// and meter 0 rounds 4 to 8 (3.5 s, for LOCF's max_lookback). Some points are sent 15 s late
// (beyond the 5 s lateness: repaired) and some 3 s late (within it: re-emitted).
int64_t SendMeterTraffic(Stack& stack, int64_t t0_us, int rounds) {
  int64_t accepted = 0;
  for (int r = 0; r < rounds; ++r) {
    const int64_t round_us = t0_us + r * 700'000;
    absl::SleepFor(absl::FromUnixMicros(round_us) - absl::Now());
    v1::WriteRequest req;
    for (int d = 0; d < kMeters; ++d) {
      if ((r + 2 * d) % 5 == 1 || (d == 0 && r >= 4 && r <= 8)) continue;
      const int64_t t = round_us + d * 37'000;
      AddMeterEvent(req, d, t, r);
      if (r % 4 == 3 && d < 6) AddMeterEvent(req, d, t - 15 * kSecond, r + 100);
      if (r % 4 == 1 && d >= 6) AddMeterEvent(req, d, t - 3 * kSecond + 1000, r + 200);
    }
    accepted += Write(stack, req);
  }
  return accepted;
}

// ---- Subscribe clients ----

// Reads one Subscribe stream on its own thread until it ends or is cancelled.
class Subscriber {
 public:
  Subscriber(Stack& stack, const v1::SubscribeRequest& req) {
    reader_ = stack.query().Subscribe(&ctx_, req);
    thread_ = std::thread([this] { Run(); });
  }
  ~Subscriber() { Stop(); }

  /// Cancels the stream and returns how it ended.
  grpc::Status Stop() {
    if (thread_.joinable()) {
      ctx_.TryCancel();
      thread_.join();
    }
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::vector<v1::SubscribeResponse> responses() {
    absl::MutexLock lock(&mu_);
    return responses_;
  }
  size_t response_count() {
    absl::MutexLock lock(&mu_);
    return responses_.size();
  }
  int64_t update_count() {
    absl::MutexLock lock(&mu_);
    return updates_;
  }
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

 private:
  void Run() {
    v1::SubscribeResponse resp;
    while (reader_->Read(&resp)) {
      absl::MutexLock lock(&mu_);
      updates_ += resp.updates_size();
      responses_.push_back(resp);
    }
    const grpc::Status s = reader_->Finish();
    absl::MutexLock lock(&mu_);
    status_ = s;
    done_ = true;
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::SubscribeResponse>> reader_;
  absl::Mutex mu_;
  std::vector<v1::SubscribeResponse> responses_ ABSL_GUARDED_BY(mu_);
  int64_t updates_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once everything it reads exists
};

std::vector<Change> Updates(const std::vector<v1::SubscribeResponse>& responses) {
  std::vector<Change> out;
  for (const v1::SubscribeResponse& r : responses) {
    for (const v1::WindowAggregate& a : r.updates()) out.push_back(FromProto(a));
  }
  return out;
}

// The first response of every stream confirms it: no updates, a token to resume from.
void ExpectConfirmation(const std::vector<v1::SubscribeResponse>& responses,
                        const std::string& what) {
  ASSERT_FALSE(responses.empty()) << what << ": no response";
  EXPECT_EQ(responses[0].updates_size(), 0)
      << what << ": the first response carries updates (query.proto: it only confirms the stream)";
  for (const v1::SubscribeResponse& r : responses) {
    EXPECT_FALSE(r.resume_token().empty()) << what << ": a response without a resume_token";
  }
}

// ---- The shared pipeline run ----

// One pipeline run shared by every test: the traffic runs once, the tests then read it.
struct World {
  std::unique_ptr<Stack> stack;
  int64_t meter_t0_us = 0;
  // Subscribe: the full stream, the stream cut and resumed, the filtered stream.
  std::vector<v1::SubscribeResponse> full, first_half, second_half, filtered;
  grpc::Status full_end, first_half_end, second_half_end, filtered_end;
  // aggregate_changes in change_id order, aggregates' versions, and each series' device,
  // read once every subscriber had everything.
  std::vector<Change> change_log;
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> stored_versions;
  std::map<int64_t, std::string> device_of;
  bool ready = false;
};

class QueryE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override { ASSERT_TRUE(world_ != nullptr && world_->ready) << "the run failed"; }
  void TearDown() override {
    if (HasFailure()) any_failed_ = true;
  }
  static Stack& stack() { return *world_->stack; }

  static World* world_;
  static bool any_failed_;
};

World* QueryE2e::world_ = nullptr;
bool QueryE2e::any_failed_ = false;

void QueryE2e::SetUpTestSuite() {
  world_ = new World;
  World& w = *world_;
  w.stack = std::make_unique<Stack>(testing::SharedPgCluster(), kAggregatorFlags);
  Stack& s = *w.stack;
  s.StartAggregator(0);

  // Subscribers open before any window is stored, and are confirmed before traffic starts:
  // a stream runs from the log position at which it is confirmed.
  v1::SubscribeRequest all;
  v1::SubscribeRequest filtered;
  filtered.add_window_sizes_us(kSize5s);
  v1::DimensionMatcher* m = filtered.mutable_selector()->add_matchers();
  m->set_name("device_id");
  m->set_op(v1::DimensionMatcher::OP_REGEX);
  m->set_value("turbine-000[1-3]");
  auto full = std::make_unique<Subscriber>(s, all);
  auto cut = std::make_unique<Subscriber>(s, all);
  auto narrow = std::make_unique<Subscriber>(s, filtered);
  ASSERT_TRUE(WaitFor(
      [&] {
        return full->response_count() > 0 && cut->response_count() > 0 &&
               narrow->response_count() > 0;
      },
      absl::Seconds(90)))
      << "a subscriber was not confirmed";
  ASSERT_EQ(s.Sql("SELECT count(*) FROM aggregate_changes"), "0");

  // Two simulators over the same devices: 10% of records 15 s late (beyond lateness), 20% 3 s
  // late (within it); 10% of devices run 30 minutes ahead. And the meters alongside.
  std::vector<std::unique_ptr<testing::ChildProcess>> sims;
  sims.push_back(s.StartSimulator(
      {"--devices=30", "--rate=600", "--batch_size=50", "--duration=12s", "--percent_late=10",
       "--late_time=15s", "--percent_clock_ahead=10", "--seed=1"},
      "simulator-a"));
  sims.push_back(s.StartSimulator(
      {"--devices=30", "--rate=400", "--batch_size=50", "--duration=12s", "--percent_late=20",
       "--late_time=3s", "--percent_clock_ahead=10", "--seed=2"},
      "simulator-b"));
  w.meter_t0_us = (absl::ToUnixMicros(absl::Now()) / kSecond + 1) * kSecond;
  int64_t meter_points = 0;
  std::thread meters([&] { meter_points = SendMeterTraffic(s, w.meter_t0_us, kMeterRounds); });

  // Cut the second subscriber once it has updates, and resume it only after more were
  // stored, so that the resumed stream has missed updates to catch up on. (No ASSERT while
  // the meters' thread runs: returning would destroy it joinable.)
  const bool flowing = WaitFor([&] { return cut->update_count() > 0; }, absl::Seconds(90));
  EXPECT_TRUE(flowing) << "no update arrived during the traffic";
  w.first_half_end = cut->Stop();
  w.first_half = cut->responses();
  const int64_t at_cut = full->update_count();
  EXPECT_TRUE(WaitFor([&] { return full->update_count() > at_cut; }, absl::Seconds(90)));
  v1::SubscribeRequest resume;
  if (!w.first_half.empty()) resume.set_resume_token(w.first_half.back().resume_token());
  auto resumed = std::make_unique<Subscriber>(s, resume);

  meters.join();
  for (auto& sim : sims) EXPECT_TRUE(sim->Wait(absl::Seconds(90)).ok());
  EXPECT_GT(meter_points, 150);
  WaitForDrain(s);

  // Every stored version reached every subscriber: the counts equal the log's.
  const auto logged = [&](const std::string& where) {
    return Int(
        s.Sql(absl::StrCat("SELECT count(*) FROM aggregate_changes c"
                           " JOIN series s USING (series_id) WHERE true",
                           where)));
  };
  const std::string narrow_where =
      absl::StrCat(" AND c.window_size = ", Interval(kSize5s),
                   " AND s.device_id IN ('turbine-0001', 'turbine-0002', 'turbine-0003')");
  int64_t want_all = 0, want_narrow = 0;
  const bool delivered = WaitFor(
      [&] {
        want_all = logged("");
        want_narrow = logged(narrow_where);
        return full->update_count() == want_all &&
               cut->update_count() + resumed->update_count() == want_all &&
               narrow->update_count() == want_narrow;
      },
      absl::Seconds(90));
  EXPECT_TRUE(delivered) << "logged " << want_all << " (filtered " << want_narrow
                         << "); received: full " << full->update_count() << ", cut+resumed "
                         << cut->update_count() << "+" << resumed->update_count() << ", filtered "
                         << narrow->update_count();
  absl::SleepFor(absl::Seconds(1));
  w.full_end = full->Stop();
  w.second_half_end = resumed->Stop();
  w.filtered_end = narrow->Stop();
  w.full = full->responses();
  w.second_half = resumed->responses();
  w.filtered = narrow->responses();

  for (const Row& r : Rows(s, absl::StrCat("SELECT series_id, ", Micros("window_size"), ", ",
                                           Micros("window_start"),
                                           ", version, count, sum, min, max, avg, first,"
                                           " last FROM aggregate_changes ORDER BY change_id"))) {
    w.change_log.push_back(
        {Int(r[0]), Int(r[1]), Int(r[2]), Int(r[3]),
         Agg{Int(r[4]), Dbl(r[5]), Dbl(r[6]), Dbl(r[7]), Dbl(r[8]), Dbl(r[9]), Dbl(r[10])}});
  }
  for (const Row& r : Rows(s, absl::StrCat("SELECT series_id, ", Micros("window_size"), ", ",
                                           Micros("window_start"), ", version FROM aggregates"))) {
    w.stored_versions[{Int(r[0]), Int(r[1]), Int(r[2])}] = Int(r[3]);
  }
  for (const Row& r : Rows(s, "SELECT series_id, device_id FROM series")) {
    w.device_of[Int(r[0])] = r[1];
  }
  // Every path of the pipeline was taken: repairs (odd versions) and re-emissions.
  EXPECT_NE(s.Sql("SELECT count(*) FROM aggregates WHERE version % 2 = 1"), "0");
  EXPECT_NE(s.Sql("SELECT count(*) FROM (SELECT 1 FROM aggregate_changes GROUP BY series_id,"
                  " window_size, window_start HAVING count(*) > 1) x"),
            "0");
  w.ready = !::testing::Test::HasFailure();
}

void QueryE2e::TearDownTestSuite() {
  if (world_ == nullptr) return;
  if (any_failed_ && world_->stack != nullptr) {
    // The Stack keeps its logs only when the suite-level result failed; keep a copy for the
    // failures of individual tests.
    const std::string dir = absl::StrCat("/tmp/tidemark-e2e-", getpid(), "-", world_->stack->db());
    const std::string kept = dir + "-kept";
    std::error_code ec;
    std::filesystem::copy(dir, kept, std::filesystem::copy_options::recursive, ec);
    std::cerr << "a test failed; the stack's logs are kept in " << kept << "\n";
  }
  delete world_;
  world_ = nullptr;
}

// ---- 1. ReadAggregates ----

TEST_F(QueryE2e, ReadAggregatesPagesEqualTheAggregatesTable) {
  for (int64_t size : {kSize5s, kSize10s}) {
    SCOPED_TRACE(absl::StrCat("window size ", size));
    v1::ReadAggregatesRequest req;
    req.set_window_size_us(size);
    req.set_page_size(37);
    int pages = 0;
    const std::vector<Window> got = ReadAggregates(stack(), req, &pages);
    const std::vector<Window> want = StoredWindows(stack(), size);
    ASSERT_GT(want.size(), 200u);
    EXPECT_GT(pages, 5) << "page tokens were not exercised";
    ExpectSameSequence(got, want, "ReadAggregates vs aggregates");
  }

  // A range selects windows by start (start inclusive, end exclusive, neither aligned), and
  // a regular-expression matcher selects the same series as SQL.
  const int64_t from = world_->meter_t0_us + 2'500'000, to = world_->meter_t0_us + 12'500'000;
  v1::ReadAggregatesRequest ranged;
  ranged.set_window_size_us(kSize5s);
  ranged.set_page_size(11);
  ranged.mutable_range()->set_start_us(from);
  ranged.mutable_range()->set_end_us(to);
  ExpectSameSequence(ReadAggregates(stack(), ranged),
                     StoredWindows(stack(), kSize5s,
                                   absl::StrCat(" AND a.window_start >= ", Ts(from),
                                                " AND a.window_start < ", Ts(to))),
                     "ReadAggregates over a range");
  v1::ReadAggregatesRequest matched;
  matched.set_window_size_us(kSize10s);
  matched.set_page_size(5);
  v1::DimensionMatcher* m = matched.mutable_selector()->add_matchers();
  m->set_name("device_id");
  m->set_op(v1::DimensionMatcher::OP_REGEX);
  m->set_value("turbine-000[1-3]");
  const std::vector<Window> subset = StoredWindows(
      stack(), kSize10s, " AND s.device_id IN ('turbine-0001', 'turbine-0002', 'turbine-0003')");
  EXPECT_FALSE(subset.empty());
  ExpectSameSequence(ReadAggregates(stack(), matched), subset, "ReadAggregates =~");

  // limit stops across pages.
  v1::ReadAggregatesRequest limited;
  limited.set_window_size_us(kSize5s);
  limited.set_page_size(4);
  limited.set_limit(10);
  const std::vector<Window> all = StoredWindows(stack(), kSize5s);
  ExpectSameSequence(ReadAggregates(stack(), limited),
                     std::vector<Window>(all.begin(), all.begin() + 10), "ReadAggregates limit");
}

// ---- 2. Rollup ----

// Bucket key: the group (a series id, or the site) and the bucket start.
using BucketKey = std::pair<std::string, int64_t>;
struct Bucket {
  Agg value;
  int64_t windows = 0, series_count = 0;
};

// Every bucket Rollup returns, following page tokens.
std::map<BucketKey, Bucket> ReadRollup(Stack& stack, v1::RollupRequest req) {
  std::map<BucketKey, Bucket> out;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::RollupResponse resp;
    const grpc::Status s = stack.query().Rollup(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (!s.ok()) break;
    // Both 5s and 10s divide an hour and a day; unless named, the largest is chosen.
    EXPECT_EQ(resp.source_window_size_us(),
              req.source_window_size_us() == 0 ? kSize10s : req.source_window_size_us());
    for (const v1::RollupGroup& g : resp.groups()) {
      std::string key;
      if (req.group_by_size() == 0) {
        EXPECT_TRUE(g.group().empty());
        EXPECT_FALSE(g.series().measure_name().empty()) << "series " << g.series().series_id();
        key = absl::StrCat(g.series().series_id());
      } else {
        EXPECT_EQ(g.group().size(), 1u);
        key = g.group().contains("site") ? g.group().at("site") : "<no site key>";
      }
      for (const v1::RollupBucket& b : g.buckets()) {
        EXPECT_FALSE(out.contains({key, b.start_us()})) << "bucket twice: " << key;
        out[{key, b.start_us()}] = {FromProto(b.value()), b.windows(), b.series_count()};
      }
    }
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 100'000);
  EXPECT_GT(pages, 1) << "page tokens were not exercised";
  return out;
}

// The same buckets computed in one batch from the raw points: count-weighted merging of the
// source windows is, after the drain, a GROUP BY of their points. First and last follow the
// window order (window start, then series id), then time within the window.
std::map<BucketKey, Bucket> BatchRollup(Stack& stack, int64_t bucket_us, bool by_site,
                                        const std::string& where, int64_t source = kSize10s) {
  const std::string window = absl::StrCat("date_bin(", Interval(source), ", p.time, 'epoch')");
  const std::string sql = absl::StrCat(
      "SELECT ", by_site ? "coalesce(s.dimensions->>'site', '')" : "p.series_id::text", ", ",
      Micros(absl::StrCat("date_bin(", Interval(bucket_us), ", p.time, 'epoch')")),
      ", count(*), sum(x.v), min(x.v), max(x.v),"
      " (array_agg(x.v ORDER BY ",
      window,
      ", p.series_id, p.time))[1],"
      " (array_agg(x.v ORDER BY ",
      window,
      " DESC, p.series_id DESC, p.time DESC))[1],"
      " count(DISTINCT (p.series_id, ",
      window,
      ")), count(DISTINCT p.series_id)"
      " FROM points p JOIN series s USING (series_id)"
      " CROSS JOIN LATERAL (SELECT ",
      kValue, " AS v) x WHERE x.v IS NOT NULL", where, " GROUP BY 1, 2");
  std::map<BucketKey, Bucket> out;
  for (const Row& r : Rows(stack, sql)) {
    Bucket b;
    b.value = {Int(r[2]), Dbl(r[3]), Dbl(r[4]), Dbl(r[5]), 0, Dbl(r[6]), Dbl(r[7])};
    b.value.avg = b.value.sum / static_cast<double>(b.value.count);
    b.windows = Int(r[8]);
    b.series_count = Int(r[9]);
    out[{r[0], Int(r[1])}] = b;
  }
  return out;
}

void ExpectSameBuckets(const std::map<BucketKey, Bucket>& got,
                       const std::map<BucketKey, Bucket>& want, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (const auto& [key, w] : want) {
    const auto it = got.find(key);
    if (it == got.end()) {
      if (++reported <= 5)
        ADD_FAILURE() << what << ": missing bucket " << key.first << " @ " << key.second;
      continue;
    }
    const Bucket& g = it->second;
    const bool same = g.value.count == w.value.count && Near(g.value.sum, w.value.sum, 1e-9) &&
                      g.value.min == w.value.min && g.value.max == w.value.max &&
                      Near(g.value.avg, w.value.avg, 1e-9) && g.value.first == w.value.first &&
                      g.value.last == w.value.last && g.windows == w.windows &&
                      g.series_count == w.series_count;
    if (!same && ++reported <= 5) {
      ADD_FAILURE() << what << ": bucket " << key.first << " @ " << key.second << "\n  got  "
                    << g.value << " windows " << g.windows << " series " << g.series_count
                    << "\n  want " << w.value << " windows " << w.windows << " series "
                    << w.series_count;
    }
  }
  for (const auto& [key, g] : got) {
    if (!want.contains(key) && ++reported <= 5) {
      ADD_FAILURE() << what << ": extra bucket " << key.first << " @ " << key.second;
    }
  }
}

TEST_F(QueryE2e, RollupEqualsABatchComputationFromPoints) {
  for (int64_t bucket : {kHour, kDay}) {
    SCOPED_TRACE(absl::StrCat("bucket ", bucket));
    v1::RollupRequest per_series;
    per_series.set_bucket_us(bucket);
    per_series.set_page_size(5);
    const std::map<BucketKey, Bucket> want = BatchRollup(stack(), bucket, false, "");
    ASSERT_GT(want.size(), 50u);
    ExpectSameBuckets(ReadRollup(stack(), per_series), want, "per series");

    v1::RollupRequest by_site;
    by_site.set_bucket_us(bucket);
    by_site.set_page_size(1);
    by_site.add_group_by("site");
    by_site.mutable_selector()->set_measure_name("power");
    const std::map<BucketKey, Bucket> sites =
        BatchRollup(stack(), bucket, true, " AND s.measure_name = 'power'");
    EXPECT_GE(sites.size(), 3u);
    ExpectSameBuckets(ReadRollup(stack(), by_site), sites, "power by site");

    // Without a selector the series without a site group under "".
    v1::RollupRequest everything;
    everything.set_bucket_us(bucket);
    everything.set_page_size(2);
    everything.add_group_by("site");
    const std::map<BucketKey, Bucket> all_sites = BatchRollup(stack(), bucket, true, "");
    EXPECT_TRUE(std::any_of(all_sites.begin(), all_sites.end(),
                            [](const auto& kv) { return kv.first.first.empty(); }));
    ExpectSameBuckets(ReadRollup(stack(), everything), all_sites, "everything by site");
  }

  // A named source size is merged instead: the same values from twice as many windows.
  v1::RollupRequest from_5s;
  from_5s.set_bucket_us(kHour);
  from_5s.set_source_window_size_us(kSize5s);
  from_5s.set_page_size(7);
  ExpectSameBuckets(ReadRollup(stack(), from_5s), BatchRollup(stack(), kHour, false, "", kSize5s),
                    "per series from 5s windows");
}

TEST_F(QueryE2e, RollupBucketNoStoredSizeDividesIsInvalid) {
  v1::RollupRequest req;
  req.set_bucket_us(7 * kSecond);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  v1::RollupResponse resp;
  const grpc::Status s = stack().query().Rollup(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "5s")) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "10s")) << s.error_message();
}

// ---- 3. Interpolate ----

struct Obs {
  int64_t t;
  double v;
};
// Observations by series, in time order.
using SeriesObs = std::map<int64_t, std::vector<Obs>>;
using Steps = std::vector<std::pair<int64_t, double>>;

SeriesObs PowerObservations(Stack& stack, int64_t window_size_us, const std::string& field) {
  const std::string sql =
      window_size_us == 0
          ? absl::StrCat("SELECT p.series_id, ", Micros("p.time"), ", ", kValue,
                         " FROM points p JOIN series s USING (series_id)"
                         " WHERE s.measure_name = 'power' AND ",
                         kValue, " IS NOT NULL ORDER BY 1, 2")
          : absl::StrCat("SELECT a.series_id, ", Micros("a.window_start"), ", a.", field,
                         "::float8 FROM aggregates a JOIN series s USING (series_id)"
                         " WHERE s.measure_name = 'power' AND a.window_size = ",
                         Interval(window_size_us), " ORDER BY 1, 2");
  SeriesObs out;
  for (const Row& r : Rows(stack, sql)) out[Int(r[0])].push_back({Int(r[1]), Dbl(r[2])});
  return out;
}

// What a call over [start, end) sees of a series: the observations inside, the last one
// before and the first one at or after the end. (LOCF's max_lookback needs no narrowing: an
// older observation is too old for every step anyway.)
std::vector<Obs> Visible(const std::vector<Obs>& all, int64_t start, int64_t end) {
  std::vector<Obs> out;
  std::optional<Obs> before, after;
  for (const Obs& o : all) {
    if (o.t < start) {
      before = o;
    } else if (o.t < end) {
      out.push_back(o);
    } else if (!after) {
      after = o;
    }
  }
  if (before) out.insert(out.begin(), *before);
  if (after) out.push_back(*after);
  return out;
}

// A natural cubic spline's second derivatives by the Numerical Recipes decomposition (a
// different formulation from the service's), x in seconds from the first observation.
struct Spline {
  std::vector<double> x, y, y2;
  explicit Spline(const std::vector<Obs>& obs) {
    for (const Obs& o : obs) {
      x.push_back(static_cast<double>(o.t - obs.front().t) / 1e6);
      y.push_back(o.v);
    }
    const size_t n = x.size();
    y2.assign(n, 0.0);
    std::vector<double> u(n, 0.0);
    for (size_t i = 1; i + 1 < n; ++i) {
      const double sig = (x[i] - x[i - 1]) / (x[i + 1] - x[i - 1]);
      const double p = sig * y2[i - 1] + 2.0;
      y2[i] = (sig - 1.0) / p;
      u[i] = (y[i + 1] - y[i]) / (x[i + 1] - x[i]) - (y[i] - y[i - 1]) / (x[i] - x[i - 1]);
      u[i] = (6.0 * u[i] / (x[i + 1] - x[i - 1]) - sig * u[i - 1]) / p;
    }
    if (n >= 1) y2[n - 1] = 0.0;
    for (size_t k = n - 1; k-- > 0;) y2[k] = y2[k] * y2[k + 1] + u[k];
  }
  // Between observations lo and lo + 1.
  double At(size_t lo, double xv) const {
    const double h = x[lo + 1] - x[lo];
    const double a = (x[lo + 1] - xv) / h, b = (xv - x[lo]) / h;
    return a * y[lo] + b * y[lo + 1] +
           ((a * a * a - a) * y2[lo] + (b * b * b - b) * y2[lo + 1]) * (h * h) / 6.0;
  }
};

// The steps of query.proto's rules, computed here from the visible observations.
Steps Expected(const std::vector<Obs>& obs, const v1::InterpolateRequest& req, int* on_obs) {
  Steps out;
  const int64_t step = req.step_us();
  const Spline spline(obs);
  const int64_t first = (req.range().start_us() + step - 1) / step * step;  // start > 0
  for (int64_t t = first; t < req.range().end_us(); t += step) {
    // prev: last observation at or before t; next: first after t.
    int prev = -1;
    for (int i = 0; i < static_cast<int>(obs.size()) && obs[i].t <= t; ++i) prev = i;
    const int next = prev + 1 < static_cast<int>(obs.size()) ? prev + 1 : -1;
    const bool exact = prev >= 0 && obs[prev].t == t;
    if (exact) ++*on_obs;
    switch (req.method()) {
      case v1::INTERPOLATION_METHOD_CONSTANT:
        out.emplace_back(t, exact ? obs[prev].v : req.fill_value());
        break;
      case v1::INTERPOLATION_METHOD_LOCF:
        if (prev >= 0 && (req.max_lookback_us() == 0 || t - obs[prev].t <= req.max_lookback_us())) {
          out.emplace_back(t, obs[prev].v);
        }
        break;
      case v1::INTERPOLATION_METHOD_LINEAR:
        if (exact) {
          out.emplace_back(t, obs[prev].v);
        } else if (prev >= 0 && next >= 0) {
          const double w =
              static_cast<double>(t - obs[prev].t) / static_cast<double>(obs[next].t - obs[prev].t);
          out.emplace_back(t, obs[prev].v * (1.0 - w) + obs[next].v * w);
        }
        break;
      case v1::INTERPOLATION_METHOD_CUBIC_SPLINE:
        if (exact) {
          out.emplace_back(t, obs[prev].v);
        } else if (prev >= 0 && next >= 0) {
          out.emplace_back(t, spline.At(prev, static_cast<double>(t - obs.front().t) / 1e6));
        }
        break;
      default:
        break;
    }
  }
  return out;
}

std::map<int64_t, Steps> ReadInterpolation(Stack& stack, v1::InterpolateRequest req) {
  std::map<int64_t, Steps> out;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline());
    v1::InterpolateResponse resp;
    const grpc::Status s = stack.query().Interpolate(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (!s.ok()) break;
    for (const v1::InterpolatedSeries& is : resp.series()) {
      EXPECT_FALSE(out.contains(is.series().series_id())) << "series twice";
      Steps& steps = out[is.series().series_id()];
      for (const v1::InterpolatedValue& v : is.values()) steps.emplace_back(v.time_us(), v.value());
    }
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 10'000);
  return out;
}

// Compares a call with the expectation for every power series; returns the steps that fell
// exactly on observations. Series without any step may be left out of the response.
int ExpectInterpolation(Stack& stack, const SeriesObs& observations,
                        const v1::InterpolateRequest& req, double tolerance,
                        const std::string& what) {
  SCOPED_TRACE(what);
  int on_obs = 0;
  std::map<int64_t, Steps> want;
  for (const auto& [sid, all] : observations) {
    Steps steps =
        Expected(Visible(all, req.range().start_us(), req.range().end_us()), req, &on_obs);
    if (!steps.empty()) want[sid] = std::move(steps);
  }
  EXPECT_FALSE(want.empty());
  std::map<int64_t, Steps> got = ReadInterpolation(stack, req);
  std::erase_if(got, [](const auto& kv) { return kv.second.empty(); });
  EXPECT_EQ(got.size(), want.size());
  int reported = 0;
  for (const auto& [sid, w] : want) {
    const Steps& g = got[sid];
    if (g.size() != w.size()) {
      if (++reported <= 3) {
        ADD_FAILURE() << "series " << sid << ": " << g.size() << " steps, want " << w.size()
                      << (g.empty() ? "" : absl::StrCat(" (first at ", g.front().first, ")"))
                      << (w.empty() ? "" : absl::StrCat(" (want first at ", w.front().first, ")"));
      }
      continue;
    }
    for (size_t i = 0; i < w.size(); ++i) {
      if (g[i].first != w[i].first || !Near(g[i].second, w[i].second, tolerance)) {
        if (++reported <= 3) {
          ADD_FAILURE() << "series " << sid << " step " << i << ": got (" << g[i].first << ", "
                        << g[i].second << "), want (" << w[i].first << ", " << w[i].second << ")";
        }
        break;
      }
    }
  }
  return on_obs;
}

v1::InterpolateRequest Interpolation(int64_t start, int64_t end, int64_t step,
                                     v1::InterpolationMethod method) {
  v1::InterpolateRequest req;
  req.mutable_selector()->set_measure_name("power");
  req.mutable_range()->set_start_us(start);
  req.mutable_range()->set_end_us(end);
  req.set_step_us(step);
  req.set_method(method);
  req.set_page_size(5);
  return req;
}

TEST_F(QueryE2e, InterpolateEqualsAnIndependentComputation) {
  const SeriesObs raw = PowerObservations(stack(), 0, "");
  ASSERT_EQ(raw.size(), static_cast<size_t>(kMeters));
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (const auto& [sid, obs] : raw) {
    lo = std::min(lo, obs.front().t);
    hi = std::max(hi, obs.back().t);
  }
  const int64_t t0 = world_->meter_t0_us;
  // The whole data and beyond both ends (steps before the first observation are omitted, or
  // filled), and a stretch inside whose ends are interpolated between points outside it.
  struct Range {
    int64_t start, end, step;
    std::string name;
  };
  const std::vector<Range> ranges = {
      {lo - 2'200'000, hi + 2'200'000, 500'000, "whole"},
      {t0 + 2'350'000, t0 + 6'050'000, 250'000, "inside"},
  };
  for (const Range& r : ranges) {
    int on_obs = 0;
    on_obs += ExpectInterpolation(
        stack(), raw, Interpolation(r.start, r.end, r.step, v1::INTERPOLATION_METHOD_LINEAR), 1e-9,
        r.name + " linear");
    v1::InterpolateRequest locf =
        Interpolation(r.start, r.end, r.step, v1::INTERPOLATION_METHOD_LOCF);
    ExpectInterpolation(stack(), raw, locf, 0, r.name + " locf");
    locf.set_max_lookback_us(1'000'000);
    ExpectInterpolation(stack(), raw, locf, 0, r.name + " locf max_lookback 1s");
    v1::InterpolateRequest fill =
        Interpolation(r.start, r.end, r.step, v1::INTERPOLATION_METHOD_CONSTANT);
    fill.set_fill_value(-1.5);
    ExpectInterpolation(stack(), raw, fill, 0, r.name + " constant");
    ExpectInterpolation(
        stack(), raw, Interpolation(r.start, r.end, r.step, v1::INTERPOLATION_METHOD_CUBIC_SPLINE),
        1e-7, r.name + " cubic spline");
    if (r.name == "whole") {
      EXPECT_GT(on_obs, 0) << "no step fell on an observation";
    }
  }

  // The lookback bound cuts meter 0's 3.5 s gap: fewer steps than without it.
  v1::InterpolateRequest bounded =
      Interpolation(lo - 2'200'000, hi + 2'200'000, 500'000, v1::INTERPOLATION_METHOD_LOCF);
  const auto unbounded_steps = ReadInterpolation(stack(), bounded);
  bounded.set_max_lookback_us(1'000'000);
  const auto bounded_steps = ReadInterpolation(stack(), bounded);
  size_t a = 0, b = 0;
  for (const auto& [sid, s] : unbounded_steps) a += s.size();
  for (const auto& [sid, s] : bounded_steps) b += s.size();
  EXPECT_LT(b, a);

  // From a stored aggregate field, placed at window starts.
  const SeriesObs avg = PowerObservations(stack(), kSize5s, "avg");
  v1::InterpolateRequest from_avg =
      Interpolation(lo - 2'200'000, hi + 2'200'000, kSecond, v1::INTERPOLATION_METHOD_LINEAR);
  from_avg.set_window_size_us(kSize5s);
  from_avg.set_field(v1::AGGREGATE_FIELD_AVG);
  EXPECT_GT(ExpectInterpolation(stack(), avg, from_avg, 1e-9, "5s avg linear"), 0);
  const SeriesObs max = PowerObservations(stack(), kSize10s, "max");
  v1::InterpolateRequest from_max =
      Interpolation(lo - 2'200'000, hi + 2'200'000, kSecond, v1::INTERPOLATION_METHOD_LOCF);
  from_max.set_window_size_us(kSize10s);
  from_max.set_field(v1::AGGREGATE_FIELD_MAX);
  ExpectInterpolation(stack(), max, from_max, 0, "10s max locf");
}

// ---- 5. Subscribe ----

TEST_F(QueryE2e, SubscribeDeliversTheChangeLogInOrder) {
  const World& w = *world_;
  ExpectConfirmation(w.full, "full stream");
  EXPECT_EQ(w.full_end.error_code(), grpc::StatusCode::CANCELLED) << Describe(w.full_end);
  const std::vector<Change> got = Updates(w.full);
  ASSERT_GT(w.change_log.size(), 200u);
  ExpectSameSequence(got, w.change_log, "updates vs aggregate_changes");

  // Per window: versions strictly increase, and the last one is the stored one.
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> last;
  for (const Change& c : got) {
    auto [it, inserted] = last.try_emplace({c.series_id, c.size_us, c.start_us}, c.version);
    if (!inserted) {
      EXPECT_GT(c.version, it->second) << c;
      it->second = c.version;
    }
  }
  EXPECT_EQ(last, w.stored_versions);
}

TEST_F(QueryE2e, SubscribeResumedFromATokenMissesAndRepeatsNothing) {
  const World& w = *world_;
  ExpectConfirmation(w.first_half, "stream before the cut");
  ExpectConfirmation(w.second_half, "resumed stream");
  EXPECT_EQ(w.first_half_end.error_code(), grpc::StatusCode::CANCELLED)
      << Describe(w.first_half_end);
  EXPECT_EQ(w.second_half_end.error_code(), grpc::StatusCode::CANCELLED)
      << Describe(w.second_half_end);
  std::vector<Change> combined = Updates(w.first_half);
  const std::vector<Change> after = Updates(w.second_half);
  EXPECT_FALSE(combined.empty()) << "cut before any update";
  EXPECT_FALSE(after.empty()) << "nothing after the resume";
  combined.insert(combined.end(), after.begin(), after.end());
  ExpectSameSequence(combined, Updates(w.full), "cut and resumed vs uninterrupted");
}

TEST_F(QueryE2e, SubscribeFilteredBySizeAndRegexSeesExactlyTheMatchingSubset) {
  const World& w = *world_;
  ExpectConfirmation(w.filtered, "filtered stream");
  EXPECT_EQ(w.filtered_end.error_code(), grpc::StatusCode::CANCELLED) << Describe(w.filtered_end);
  const std::set<std::string> devices = {"turbine-0001", "turbine-0002", "turbine-0003"};
  std::vector<Change> want;
  for (const Change& c : w.change_log) {
    const auto it = w.device_of.find(c.series_id);
    if (c.size_us == kSize5s && it != w.device_of.end() && devices.contains(it->second)) {
      want.push_back(c);
    }
  }
  EXPECT_FALSE(want.empty());
  ExpectSameSequence(Updates(w.filtered), want, "filtered updates");
}

// ---- 6. Bad requests ----

void ExpectInvalid(const grpc::Status& s, const std::string& what) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << what << ": " << Describe(s);
  EXPECT_FALSE(s.error_message().empty()) << what;
}

template <typename Req, typename Resp>
grpc::Status Call(grpc::Status (v1::QueryService::Stub::*rpc)(grpc::ClientContext*, const Req&,
                                                              Resp*),
                  Stack& stack, const Req& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  Resp resp;
  return (stack.query().*rpc)(&ctx, req, &resp);
}

grpc::Status SubscribeStatus(Stack& stack, const v1::SubscribeRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline());
  auto reader = stack.query().Subscribe(&ctx, req);
  v1::SubscribeResponse resp;
  while (reader->Read(&resp)) {
  }
  return reader->Finish();
}

void SetBadRegex(v1::SeriesSelector* selector) {
  v1::DimensionMatcher* m = selector->add_matchers();
  m->set_name("device_id");
  m->set_op(v1::DimensionMatcher::OP_REGEX);
  m->set_value("(");
}

TEST_F(QueryE2e, BadRequestsAreInvalidArgumentWithAMessage) {
  using S = v1::QueryService::Stub;
  Stack& s = stack();
  const std::string bad_token = "not a token!";

  // Unknown window size: the message names the stored sizes.
  v1::ReadAggregatesRequest unknown;
  unknown.set_window_size_us(7 * kSecond);
  const grpc::Status unknown_status = Call(&S::ReadAggregates, s, unknown);
  ExpectInvalid(unknown_status, "ReadAggregates unknown window size");
  EXPECT_TRUE(absl::StrContains(unknown_status.error_message(), "5s") &&
              absl::StrContains(unknown_status.error_message(), "10s"))
      << unknown_status.error_message();

  // Inverted ranges.
  v1::TimeRange inverted;
  inverted.set_start_us(2'000'000'000'000'000);
  inverted.set_end_us(1'000'000'000'000'000);
  {
    v1::ReadPointsRequest r;
    *r.mutable_range() = inverted;
    ExpectInvalid(Call(&S::ReadPoints, s, r), "ReadPoints inverted range");
    v1::ReadAggregatesRequest a;
    a.set_window_size_us(kSize5s);
    *a.mutable_range() = inverted;
    ExpectInvalid(Call(&S::ReadAggregates, s, a), "ReadAggregates inverted range");
    v1::RollupRequest u;
    u.set_bucket_us(kHour);
    *u.mutable_range() = inverted;
    ExpectInvalid(Call(&S::Rollup, s, u), "Rollup inverted range");
    v1::InterpolateRequest i = Interpolation(inverted.start_us(), inverted.end_us(), kSecond,
                                             v1::INTERPOLATION_METHOD_LINEAR);
    ExpectInvalid(Call(&S::Interpolate, s, i), "Interpolate inverted range");
  }

  // Interpolate with step 0.
  const int64_t now = absl::ToUnixMicros(absl::Now());
  ExpectInvalid(
      Call(&S::Interpolate, s, Interpolation(now - kHour, now, 0, v1::INTERPOLATION_METHOD_LINEAR)),
      "Interpolate step 0");

  // page_size far above every maximum, and a page_token no response produced.
  for (const auto& [page_size, token] :
       std::vector<std::pair<int, std::string>>{{1'000'000, ""}, {0, bad_token}}) {
    const std::string what = page_size != 0 ? " page_size 1000000" : " malformed page_token";
    v1::ListSeriesRequest l;
    l.set_page_size(page_size);
    l.set_page_token(token);
    ExpectInvalid(Call(&S::ListSeries, s, l), "ListSeries" + what);
    v1::ReadPointsRequest p;
    p.set_page_size(page_size);
    p.set_page_token(token);
    ExpectInvalid(Call(&S::ReadPoints, s, p), "ReadPoints" + what);
    v1::ReadAggregatesRequest a;
    a.set_window_size_us(kSize5s);
    a.set_page_size(page_size);
    a.set_page_token(token);
    ExpectInvalid(Call(&S::ReadAggregates, s, a), "ReadAggregates" + what);
    v1::RollupRequest u;
    u.set_bucket_us(kHour);
    u.set_page_size(page_size);
    u.set_page_token(token);
    ExpectInvalid(Call(&S::Rollup, s, u), "Rollup" + what);
    v1::InterpolateRequest i =
        Interpolation(now - kHour, now, kSecond, v1::INTERPOLATION_METHOD_LINEAR);
    i.set_page_size(page_size);
    i.set_page_token(token);
    ExpectInvalid(Call(&S::Interpolate, s, i), "Interpolate" + what);
  }

  // A regular expression that does not compile.
  {
    v1::ListSeriesRequest l;
    SetBadRegex(l.mutable_selector());
    ExpectInvalid(Call(&S::ListSeries, s, l), "ListSeries bad regex");
    v1::ReadPointsRequest p;
    SetBadRegex(p.mutable_selector());
    ExpectInvalid(Call(&S::ReadPoints, s, p), "ReadPoints bad regex");
    v1::ReadAggregatesRequest a;
    a.set_window_size_us(kSize5s);
    SetBadRegex(a.mutable_selector());
    ExpectInvalid(Call(&S::ReadAggregates, s, a), "ReadAggregates bad regex");
    v1::RollupRequest u;
    u.set_bucket_us(kHour);
    SetBadRegex(u.mutable_selector());
    ExpectInvalid(Call(&S::Rollup, s, u), "Rollup bad regex");
    v1::InterpolateRequest i =
        Interpolation(now - kHour, now, kSecond, v1::INTERPOLATION_METHOD_LINEAR);
    SetBadRegex(i.mutable_selector());
    ExpectInvalid(Call(&S::Interpolate, s, i), "Interpolate bad regex");
    v1::SubscribeRequest sub;
    SetBadRegex(sub.mutable_selector());
    ExpectInvalid(SubscribeStatus(s, sub), "Subscribe bad regex");
  }

  v1::SubscribeRequest bad_resume;
  bad_resume.set_resume_token(bad_token);
  ExpectInvalid(SubscribeStatus(s, bad_resume), "Subscribe malformed resume_token");
}

// ---- 4. Real-time windows (last: it stops and restarts the aggregator, and drains again) ----

// The windows after each series' last stored window of `size`, recomputed from raw points.
std::vector<Window> OpenWindowsFromPoints(Stack& stack, int64_t size) {
  const std::string start = absl::StrCat("date_bin(", Interval(size), ", p.time, 'epoch')");
  std::vector<Window> out;
  for (const Row& r :
       Rows(stack,
            absl::StrCat("WITH last AS (SELECT series_id, max(window_start) AS ls FROM aggregates"
                         " WHERE window_size = ",
                         Interval(size),
                         " GROUP BY 1)"
                         " SELECT p.series_id, ",
                         Micros(start),
                         ", count(*), sum(x.v ORDER BY p.time),"
                         " min(x.v), max(x.v), (array_agg(x.v ORDER BY p.time))[1],"
                         " (array_agg(x.v ORDER BY p.time DESC))[1]"
                         " FROM points p LEFT JOIN last USING (series_id)"
                         " CROSS JOIN LATERAL (SELECT ",
                         kValue,
                         " AS v) x"
                         " WHERE x.v IS NOT NULL AND (last.ls IS NULL OR p.time >= last.ls + ",
                         Interval(size), ") GROUP BY 1, 2 ORDER BY 1, 2"))) {
    Agg v{Int(r[2]), Dbl(r[3]), Dbl(r[4]), Dbl(r[5]), 0, Dbl(r[6]), Dbl(r[7])};
    v.avg = v.sum / static_cast<double>(v.count);
    out.push_back({Int(r[0]), Int(r[1]), v, 0, true});
  }
  return out;
}

// Compares ReadAggregates(real_time) over windows starting at or after `from` with the stored
// windows followed, per series, by the open ones; sums and averages within 1e-9 relative.
// Returns a description of the first difference, empty when equal.
std::string CompareRealTime(Stack& stack, int64_t size, int64_t from, int64_t* partial_series) {
  v1::ReadAggregatesRequest req;
  req.set_window_size_us(size);
  req.set_real_time(true);
  req.set_page_size(23);
  req.mutable_range()->set_start_us(from);
  std::vector<Window> got;
  if (const grpc::Status s = ReadAllAggregates(stack, req, &got); !s.ok()) {
    return absl::StrCat("ReadAggregates: ", Describe(s));
  }
  std::vector<Window> want = StoredWindows(stack, size, " AND a.window_start >= " + Ts(from));
  for (const Window& w : OpenWindowsFromPoints(stack, size)) {
    if (w.start_us >= from) want.push_back(w);
  }
  std::stable_sort(want.begin(), want.end(), [](const Window& a, const Window& b) {
    return std::tie(a.series_id, a.start_us) < std::tie(b.series_id, b.start_us);
  });
  std::set<int64_t> with_partial;
  for (const Window& w : got) {
    if (w.partial) with_partial.insert(w.series_id);
  }
  *partial_series = static_cast<int64_t>(with_partial.size());
  if (got.size() != want.size()) {
    return absl::StrCat(got.size(), " windows, want ", want.size());
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const Window& g = got[i];
    const Window& w = want[i];
    const bool same = g.series_id == w.series_id && g.start_us == w.start_us &&
                      g.partial == w.partial && g.version == w.version &&
                      g.value.count == w.value.count && Near(g.value.sum, w.value.sum, 1e-9) &&
                      g.value.min == w.value.min && g.value.max == w.value.max &&
                      Near(g.value.avg, w.value.avg, 1e-9) && g.value.first == w.value.first &&
                      g.value.last == w.value.last;
    if (!same) {
      std::ostringstream os;
      os << "window " << i << ": got " << g << ", want " << w;
      return os.str();
    }
  }
  return "";
}

// Waits until no aggregate version has been logged for a while.
void WaitForQuietChangeLog(Stack& stack) {
  std::string before = stack.Sql("SELECT count(*) FROM aggregate_changes");
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::SleepFor(absl::Milliseconds(1500));
        const std::string now = stack.Sql("SELECT count(*) FROM aggregate_changes");
        const bool quiet = now == before;
        before = now;
        return quiet;
      },
      absl::Seconds(90)));
}

TEST_F(QueryE2e, RealTimeWindowsEqualARecomputationFromRawPoints) {
  Stack& s = stack();
  // With the aggregator stopped, windows of new points stay open; their points are stored.
  s.aggregator(0).Signal(SIGTERM);
  ASSERT_TRUE(s.aggregator(0).Wait(absl::Seconds(60)).ok());
  WaitForQuietChangeLog(s);
  const int64_t before = s.CountPoints();
  ASSERT_GT(before, 0);
  // After the end of every stored window of the meters, so that each has open windows of both
  // sizes however long the tests before took.
  const int64_t stored_end = Int(s.Sql(absl::StrCat(
      "SELECT coalesce(max(", Micros("a.window_start + a.window_size"),
      "), 0) FROM aggregates a JOIN series s USING (series_id) WHERE s.measure_name = 'power'")));
  const int64_t base = std::max(absl::ToUnixMicros(absl::Now()) - 3 * kSecond, stored_end);
  v1::WriteRequest req;
  for (int r = 0; r < 4; ++r) {
    for (int d = 0; d < kMeters; ++d) {
      AddMeterEvent(req, d, base + r * 900'000 + d * 37'000, 300 + r);
    }
  }
  const int64_t written = Write(s, req);
  ASSERT_TRUE(WaitFor([&] { return s.CountPoints() == before + written; }, absl::Seconds(90)))
      << "stored " << s.CountPoints() - before << " of " << written;

  // All windows, and those from a start that is not aligned and falls among stored ones.
  for (const auto& [size, from] : std::vector<std::pair<int64_t, int64_t>>{
           {kSize5s, 0}, {kSize10s, 0}, {kSize5s, base - 7'300'000}}) {
    SCOPED_TRACE(absl::StrCat("window size ", size, " from ", from));
    int64_t partial_series = 0;
    std::string diff;
    // The comparison is exact once nothing moves; a retry absorbs a straggling write.
    WaitFor(
        [&] {
          diff = CompareRealTime(s, size, from, &partial_series);
          return diff.empty() || absl::StartsWith(diff, "ReadAggregates: ");
        },
        absl::Seconds(30));
    EXPECT_TRUE(diff.empty()) << diff;
    EXPECT_GE(partial_series, kMeters) << "every meter has an open window";
  }

  // Restarted, the aggregator emits those windows; the stored versions replace the partial
  // ones and nothing is left open.
  s.StartAggregator(0);
  WaitForDrain(s);
  v1::ReadAggregatesRequest after;
  after.set_window_size_us(kSize5s);
  after.set_real_time(true);
  after.set_page_size(500);
  ExpectSameSequence(ReadAggregates(s, after), StoredWindows(s, kSize5s),
                     "real_time after the aggregator emitted");
}

}  // namespace
}  // namespace tidemark::e2e
