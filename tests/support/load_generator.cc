#include "tests/support/load_generator.h"

#include <algorithm>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "pqxx/pqxx"

namespace tidemark::testing {

std::string StoreCheck::ToString() const {
  return absl::StrCat("acknowledged ", acknowledged, ", uncertain ", uncertain, ", stored ",
                      stored, ", missing ", missing, ", unexpected ", unexpected,
                      ", wrong value ", wrong_value, ", temperature points ", temperature_stored,
                      ", extra measure points ", extra_stored, " of ", extra_expected);
}

LoadGenerator::LoadGenerator(v1::IngestService::Stub& ingest, LoadOptions options)
    : ingest_(ingest), options_(std::move(options)) {
  const int n = std::max(1, options_.senders);
  senders_.resize(n);
  for (int i = 0; i < n; ++i) {
    senders_[i].index = i;
    senders_[i].next_seq = i + 1;
  }
}

LoadGenerator::~LoadGenerator() { Stop(); }

void LoadGenerator::Start() {
  stop_ = false;
  for (Sender& sender : senders_) threads_.emplace_back([this, &sender] { Run(sender); });
}

void LoadGenerator::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

int64_t LoadGenerator::UniqueTimeMs(Sender& sender, const std::string& device, int64_t ms) {
  absl::flat_hash_set<int64_t>& used = sender.used_ms[device];
  while (!used.insert(ms).second) --ms;
  return ms;
}

// m<k> = seq + k/8: exact in a double, and different for every measure of every event.
void LoadGenerator::SetMeasures(v1::Event& e, int64_t seq, double temperature) const {
  auto& measures = *e.mutable_measures();
  measures["seq"].set_int64_value(seq);
  measures["temperature"].set_double_value(temperature);
  for (int k = 1; k <= options_.extra_measures; ++k) {
    measures[absl::StrCat("m", k)].set_double_value(static_cast<double>(seq) + k / 8.0);
  }
}

void LoadGenerator::Send(const v1::WriteRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.deadline)));
  v1::WriteResponse resp;
  const absl::Time start = absl::Now();
  const grpc::Status s = ingest_.Write(&ctx, req, &resp);
  absl::MutexLock lock(&mu_);
  slowest_write_ = std::max(slowest_write_, absl::Now() - start);
  // Every event here is valid: OK means all of them were acknowledged.
  const bool acked = s.ok() && resp.rejected_size() == 0 && resp.accepted() == req.events_size();
  if (!acked) {
    failed_sent_at_.push_back(start);
    std::cerr << "load generator: write failed: " << s.error_code() << " " << s.error_message()
              << " accepted " << resp.accepted() << " of " << req.events_size() << "\n";
  }
  for (const v1::Event& e : req.events()) {
    (acked ? acked_ : uncertain_)[{e.device_id(), e.time() * 1000}] =
        e.measures().at("seq").int64_value();
  }
}

void LoadGenerator::Run(Sender& sender) {
  const int n = static_cast<int>(senders_.size());
  std::mt19937_64 rng(options_.seed + static_cast<uint64_t>(sender.index) * 1'000'003);
  std::uniform_int_distribution<int> percent(0, 99);
  // This sender's devices: index, index + n, ... below options_.devices.
  const int own_devices = std::max(1, (options_.devices - sender.index + n - 1) / n);
  std::uniform_int_distribution<int> device(0, own_devices - 1);
  std::normal_distribution<double> temperature(20, 5);
  const absl::Duration period =
      absl::Seconds(1) * options_.batch_size * n / std::max(1, options_.events_per_second);
  // Senders start spread over one period rather than all at once.
  absl::Time next = absl::Now() + period * sender.index / n;
  while (!stop_ && absl::Now() < next) absl::SleepFor(absl::Milliseconds(5));
  while (!stop_) {
    v1::WriteRequest req;
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    for (int i = 0; i < options_.batch_size; ++i) {
      const int p = percent(rng);
      absl::Duration late = absl::ZeroDuration();
      if (p < options_.percent_beyond_lateness) {
        late = options_.beyond_by;
      } else if (p < options_.percent_beyond_lateness + options_.percent_within_lateness) {
        late = options_.within_by;
      }
      v1::Event* e = req.add_events();
      e->set_device_id(absl::StrCat("dev-", sender.index + device(rng) * n));
      e->set_time(UniqueTimeMs(sender, e->device_id(), now_ms - absl::ToInt64Milliseconds(late)));
      e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
      SetMeasures(*e, sender.next_seq, temperature(rng));
      sender.next_seq += n;
    }
    Send(req);
    // A steady rate; after a slow request, carry on from now rather than burst to catch up.
    next = std::max(next + period, absl::Now());
    while (!stop_ && absl::Now() < next) absl::SleepFor(absl::Milliseconds(5));
  }
}

bool LoadGenerator::SendMinutesLate() {
  if (!threads_.empty()) return false;  // the sender threads own the sequences
  const int n = static_cast<int>(senders_.size());
  v1::WriteRequest req;
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (int i = 0; i < 20; ++i) {
    v1::Event* e = req.add_events();
    e->set_device_id(absl::StrCat("dev-", i % 5));
    e->set_time(UniqueTimeMs(senders_[(i % 5) % n], e->device_id(), now_ms - 180'000 - i * 700));
    e->set_time_unit(v1::TIME_UNIT_MILLISECONDS);
    SetMeasures(*e, senders_[0].next_seq, i * 0.5);
    senders_[0].next_seq += n;
  }
  const int64_t before = failed_requests();
  Send(req);
  return failed_requests() == before;
}

int64_t LoadGenerator::acknowledged() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(acked_.size());
}

int64_t LoadGenerator::failed_requests() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(failed_sent_at_.size());
}

int64_t LoadGenerator::FailedRequestsSentBefore(absl::Time t) const {
  absl::MutexLock lock(&mu_);
  return std::count_if(failed_sent_at_.begin(), failed_sent_at_.end(),
                       [t](absl::Time at) { return at < t; });
}

absl::Duration LoadGenerator::slowest_write() const {
  absl::MutexLock lock(&mu_);
  return slowest_write_;
}

StoreCheck LoadGenerator::Check(const std::string& dsn) const {
  StoreCheck c;
  absl::flat_hash_map<std::pair<std::string, int64_t>, int64_t> stored;
  try {
    pqxx::connection conn(dsn);
    pqxx::read_transaction tx(conn);
    for (const pqxx::row& row : tx.exec(
             "SELECT s.device_id, (extract(epoch FROM p.time) * 1000000)::bigint, p.value_int"
             " FROM points p JOIN series s USING (series_id) WHERE s.measure_name = 'seq'")) {
      stored[{row[0].as<std::string>(), row[1].as<int64_t>()}] = row[2].as<int64_t>();
    }
    c.temperature_stored = tx.exec1(
        "SELECT count(*) FROM points p JOIN series s USING (series_id)"
        " WHERE s.measure_name = 'temperature' AND p.value_double IS NOT NULL")[0].as<int64_t>();
    if (options_.extra_measures > 0) {
      // Each m<k> point must sit at the time of its event's seq point, with seq + k/8.
      const pqxx::row extra = tx.exec1(
          "SELECT count(*), count(*) FILTER (WHERE q.value_int IS NULL),"
          " count(*) FILTER (WHERE p.value_double IS DISTINCT FROM"
          "   q.value_int + substr(s.measure_name, 2)::int / 8.0)"
          " FROM points p JOIN series s USING (series_id)"
          " LEFT JOIN (SELECT qs.device_id, qp.time, qp.value_int FROM points qp"
          "   JOIN series qs USING (series_id) WHERE qs.measure_name = 'seq') q"
          "   ON q.device_id = s.device_id AND q.time = p.time"
          " WHERE s.measure_name ~ '^m[0-9]+$'");
      c.extra_stored = extra[0].as<int64_t>();
      c.unexpected += extra[1].as<int64_t>();
      c.wrong_value += extra[2].as<int64_t>() - extra[1].as<int64_t>();
    }
  } catch (const std::exception& e) {
    std::cerr << "load generator: cannot read the store: " << e.what() << "\n";
    c.missing = -1;
    return c;
  }
  absl::MutexLock lock(&mu_);
  c.acknowledged = static_cast<int64_t>(acked_.size());
  c.uncertain = static_cast<int64_t>(uncertain_.size());
  c.stored = static_cast<int64_t>(stored.size());
  c.extra_expected = c.stored * options_.extra_measures;
  for (const auto& [key, seq] : acked_) {
    auto it = stored.find(key);
    if (it == stored.end()) {
      ++c.missing;
    } else if (it->second != seq) {
      ++c.wrong_value;
    }
  }
  for (const auto& [key, seq] : stored) {
    if (acked_.contains(key)) continue;
    auto it = uncertain_.find(key);
    if (it == uncertain_.end()) {
      ++c.unexpected;
    } else if (it->second != seq) {
      ++c.wrong_value;
    }
  }
  return c;
}

}  // namespace tidemark::testing
