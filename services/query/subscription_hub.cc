#include "services/query/subscription_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc/serve.h"
#include "common/pg/pg.h"
#include "common/retry/backoff.h"
#include "pqxx/pqxx"
#include "services/query/query_store.h"

namespace tidemark::query {
namespace {

constexpr const char* kChannel = "tidemark_aggregate_changes";
// Updates per response, at most: large enough to amortise a write.
constexpr size_t kUpdatesPerResponse = 500;
// A response also ends before this many bytes (every update carries its series' dimensions),
// the bound the query service's pages keep, well under gRPC's 4 MiB message limit.
constexpr size_t kResponseBytes = 3 * 1024 * 1024;

// Notes that a notification arrived; the hub reads the log after any wake-up anyway.
class Wakeup final : public pqxx::notification_receiver {
 public:
  using pqxx::notification_receiver::notification_receiver;
  void operator()(const std::string&, int) override {}
};

// A stream refused before it started.
class RefusedStream final : public grpc::ServerWriteReactor<v1::SubscribeResponse> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// Changes in (after, up_to], in log order, at most `limit`.
std::vector<std::shared_ptr<const Change>> ReadChanges(
    pqxx::connection& conn, int64_t after, int64_t up_to, int limit,
    std::vector<int64_t>* stored_at_us = nullptr) {
  pqxx::read_transaction tx(conn);
  const pqxx::result rows = tx.exec_params(
      "SELECT c.change_id, c.series_id, s.canonical_key, s.measure_name,"
      " s.dimensions::text, (EXTRACT(EPOCH FROM c.window_size) * 1000000)::bigint,"
      " (EXTRACT(EPOCH FROM c.window_start) * 1000000)::bigint, c.count, c.sum, c.min, c.max,"
      " c.avg, c.first, c.last, c.version, (EXTRACT(EPOCH FROM c.stored_at) * 1000000)::bigint"
      " FROM aggregate_changes c JOIN series s USING (series_id)"
      " WHERE c.change_id > $1 AND c.change_id <= $2 ORDER BY c.change_id LIMIT $3",
      after, up_to, limit);
  std::vector<std::shared_ptr<const Change>> changes;
  changes.reserve(rows.size());
  for (const pqxx::row& row : rows) {
    auto change = std::make_shared<Change>();
    Change& c = *change;
    c.change_id = row[0].as<int64_t>();
    v1::WindowAggregate& a = c.aggregate;
    FillSeriesFromRow(row[1].as<int64_t>(), row[2].as<std::string>(), row[3].as<std::string>(),
                      row[4].as<std::string>(), a.mutable_series());
    a.set_window_size_us(row[5].as<int64_t>());
    a.set_window_start_us(row[6].as<int64_t>());
    a.set_count(row[7].as<int64_t>());
    a.set_sum(row[8].as<double>());
    a.set_min(row[9].as<double>());
    a.set_max(row[10].as<double>());
    a.set_avg(row[11].as<double>());
    a.set_first(row[12].as<double>());
    a.set_last(row[13].as<double>());
    a.set_version(row[14].as<int64_t>());
    if (stored_at_us != nullptr) stored_at_us->push_back(row[15].as<int64_t>());
    c.bytes = sizeof(Change) + a.SpaceUsedLong() - sizeof(a);
    changes.push_back(std::move(change));
  }
  return changes;
}

// How many of `changes`, from the first, hold at most `room` bytes together. The first
// counts whatever its size when `first_always`: an empty queue takes one update, however large.
size_t FittingIn(const std::vector<std::shared_ptr<const Change>>& changes, size_t room,
                 bool first_always) {
  size_t kept = 0;
  for (size_t bytes = 0; kept < changes.size(); bytes += changes[kept++]->bytes) {
    if (bytes + changes[kept]->bytes > room && !(kept == 0 && first_always)) break;
  }
  return kept;
}

}  // namespace

SubscriptionMetrics::SubscriptionMetrics(metrics::Registry& r)
    : subscribers(r.AddGauge("tidemark_query_subscribers", "Open Subscribe streams")),
      delivered(r.AddCounter("tidemark_query_subscription_updates_total",
                             "Aggregate updates queued to subscribers")),
      ended_slow(r.AddCounter("tidemark_query_subscribers_ended_slow_total",
                              "Subscribers ended with RESOURCE_EXHAUSTED for falling behind")),
      refused_full(r.AddCounter("tidemark_query_subscriptions_refused_total",
                                "Subscribe streams refused at --max_subscriptions (replica) or "
                                "--max_subscriptions_per_client (client)",
                                "limit=\"replica\"")),
      refused_client_full(r.AddCounter("tidemark_query_subscriptions_refused_total",
                                       "Subscribe streams refused at --max_subscriptions (replica) "
                                       "or --max_subscriptions_per_client (client)",
                                       "limit=\"client\"")),
      delivery_lag(r.AddHistogram("tidemark_query_subscription_lag_seconds",
                                  "From a version's store transaction to the hub reading it")) {}

SubscribeReactor::SubscribeReactor(SubscriptionHub& hub, SeriesMatcher matcher,
                                   std::set<int64_t> window_sizes, int64_t start_after,
                                   Backlog buffer, absl::Duration progress_interval,
                                   SubscriptionMetrics& metrics,
                                   std::function<absl::Status()> authorize, std::string client)
    : hub_(hub),
      matcher_(std::move(matcher)),
      window_sizes_(std::move(window_sizes)),
      start_after_(start_after),
      buffer_(buffer),
      progress_interval_(progress_interval),
      metrics_(metrics),
      authorize_(std::move(authorize)),
      client_(std::move(client)) {}

Backlog SubscribeReactor::backlog() {
  absl::MutexLock lock(&mu_);
  return {.updates = pending_.size(), .bytes = pending_bytes_};
}

bool SubscribeReactor::ended() {
  absl::MutexLock lock(&mu_);
  return ended_;
}

bool SubscribeReactor::CheckAuthorized() {
  if (!authorize_) return true;
  if (ended()) return false;
  if (absl::Status s = authorize_(); !s.ok()) {
    End(grpcutil::ToGrpcStatus(s));
    return false;
  }
  return true;
}

bool SubscribeReactor::Offer(const std::vector<std::shared_ptr<const Change>>& changes,
                             int64_t position) {
  // A token revoked or expired while the stream is open stops it, as it stops new calls.
  if (!changes.empty() && !CheckAuthorized()) return false;
  absl::MutexLock lock(&mu_);
  if (ended_) return false;
  bool queued = false;
  for (const std::shared_ptr<const Change>& change : changes) {
    const Change& c = *change;
    // Everything up to the highest id already offered is queued or filtered out: a catch-up
    // repeated after a database error must not queue it twice.
    if (c.change_id <= std::max(start_after_, offered_up_to_)) continue;
    offered_up_to_ = c.change_id;
    if (!window_sizes_.empty() && !window_sizes_.contains(c.aggregate.window_size_us())) continue;
    if (!matcher_.Matches(c.aggregate.series())) continue;
    // One update is always queued, however large: the byte bound must not refuse a series
    // whose single update is larger than it.
    if (pending_.size() >= buffer_.updates ||
        (!pending_.empty() && pending_bytes_ + c.bytes > buffer_.bytes)) {
      metrics_.ended_slow.Add();
      EndLocked(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("the subscriber fell more than ", buffer_.updates, " updates or ",
                       buffer_.bytes % (1 << 20) == 0 ? absl::StrCat(buffer_.bytes >> 20, " MiB")
                                                      : absl::StrCat(buffer_.bytes, " bytes"),
                       " of them behind; reconnect with the last resume_token received")));
      return false;
    }
    pending_.push_back(change);
    pending_bytes_ += c.bytes;
    queued = true;
    metrics_.delivered.Add();
  }
  position_ = std::max({position_, position, start_after_});
  if (!writing_) WriteNextLocked();
  return queued;
}

void SubscribeReactor::WriteNextLocked() {
  in_flight_.Clear();
  if (written_position_ < 0) {
    // The first response confirms the subscription: no updates, and the position it runs
    // from, even when a resumed stream already has missed updates queued.
    StartWriteLocked(start_after_);
    return;
  }
  if (pending_.empty()) {
    // Only changes that matched nothing since the last response: a response without updates
    // moves the token past them, at most every progress_interval_.
    if (position_ > written_position_ && absl::Now() - last_write_ >= progress_interval_) {
      StartWriteLocked(position_);
    }
    return;
  }
  int64_t token = position_;
  size_t bytes = 0;
  while (!pending_.empty() &&
         static_cast<size_t>(in_flight_.updates_size()) < kUpdatesPerResponse) {
    const Change& next = *pending_.front();
    const size_t update_bytes = next.aggregate.ByteSizeLong() + 4;
    if (in_flight_.updates_size() > 0 && bytes + update_bytes > kResponseBytes) break;
    bytes += update_bytes;
    *in_flight_.add_updates() = next.aggregate;
    token = next.change_id;
    pending_bytes_ -= next.bytes;
    pending_.pop_front();
  }
  if (pending_.empty()) token = position_;
  StartWriteLocked(token);
}

void SubscribeReactor::StartWriteLocked(int64_t token) {
  in_flight_.set_resume_token(EncodeResumeToken(token));
  written_position_ = token;
  writing_ = true;
  last_write_ = absl::Now();
  StartWrite(&in_flight_);
}

void SubscribeReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  if (!ok) {
    EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed"));
    return;
  }
  if (!ended_) WriteNextLocked();
}

void SubscribeReactor::End(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  EndLocked(status);
}

void SubscribeReactor::EndLocked(const grpc::Status& status) {
  if (ended_) return;
  ended_ = true;
  pending_.clear();
  pending_bytes_ = 0;
  Finish(status);
}

void SubscribeReactor::OnCancel() { End(grpc::Status::CANCELLED); }

void SubscribeReactor::OnDone() { hub_.Remove(this); }

SubscriptionHub::SubscriptionHub(SubscriptionOptions options, SubscriptionMetrics& metrics,
                                 std::shared_ptr<spdlog::logger> logger)
    : options_(std::move(options)),
      metrics_(metrics),
      logger_(std::move(logger)),
      live_limit_(options_.fetch_batch) {
  thread_ = std::thread([this] { Run(); });
  authorization_thread_ = std::thread([this] { CheckAuthorizations(); });
}

SubscriptionHub::~SubscriptionHub() {
  std::vector<std::shared_ptr<SubscribeReactor>> all;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    all = joining_;
    all.insert(all.end(), active_.begin(), active_.end());
  }
  thread_.join();
  authorization_thread_.join();
  for (auto& r : all) {
    r->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the query service is shutting down"));
  }
  // gRPC calls OnDone (and so Remove) for each before the server finishes shutting down.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](SubscriptionHub* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
        return self->joining_.empty() && self->active_.empty();
      },
      this));
}

grpc::ServerWriteReactor<v1::SubscribeResponse>* SubscriptionHub::Subscribe(
    const v1::SubscribeRequest& req, const QueryLimits& limits,
    std::function<absl::Status()> authorize, const std::string& client) {
  absl::StatusOr<SeriesMatcher> matcher = SeriesMatcher::Compile(req.selector(), limits);
  if (!matcher.ok()) {
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(matcher.status().message())));
  }
  int64_t start_after = -1;
  if (!req.resume_token().empty()) {
    absl::StatusOr<int64_t> id = DecodeResumeToken(req.resume_token());
    if (!id.ok()) {
      return new RefusedStream(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(id.status().message())));
    }
    start_after = *id;
  }
  std::set<int64_t> sizes;
  for (int64_t s : req.window_sizes_us()) {
    if (s <= 0) {
      return new RefusedStream(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "window_sizes_us must be positive"));
    }
    sizes.insert(s);
  }
  absl::MutexLock lock(&mu_);
  if (stopping_ || ending_) {
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "the query service is shutting down"));
  }
  if (joining_.size() + active_.size() >= options_.max_subscriptions) {
    metrics_.refused_full.Add();
    return new RefusedStream(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("this query replica serves ", options_.max_subscriptions,
                     " subscriptions already (--max_subscriptions); retry later or elsewhere")));
  }
  size_t of_client = 0;
  for (const auto* list : {&joining_, &active_}) {
    for (const auto& r : *list) of_client += r->client() == client;
  }
  if (!client.empty() && of_client >= options_.max_subscriptions_per_client) {
    metrics_.refused_client_full.Add();
    return new RefusedStream(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(client, " has ", of_client,
                     " subscriptions open on this query replica already "
                     "(--max_subscriptions_per_client); end one first, or select more series "
                     "with one subscription")));
  }
  auto reactor = std::make_shared<SubscribeReactor>(
      *this, *std::move(matcher), std::move(sizes), start_after,
      Backlog{.updates = options_.subscriber_buffer, .bytes = options_.subscriber_buffer_bytes},
      options_.progress_interval, metrics_, std::move(authorize), client);
  joining_.push_back(reactor);
  metrics_.subscribers.Set(static_cast<double>(joining_.size() + active_.size()));
  return reactor.get();
}

void SubscriptionHub::EndAll() {
  std::vector<std::shared_ptr<SubscribeReactor>> all;
  {
    absl::MutexLock lock(&mu_);
    ending_ = true;
    all = joining_;
    all.insert(all.end(), active_.begin(), active_.end());
  }
  for (auto& r : all) {
    r->End(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the query service is shutting down; subscribe again with the last "
                        "resume_token received"));
  }
}

void SubscriptionHub::Remove(SubscribeReactor* reactor) {
  std::shared_ptr<SubscribeReactor> last;  // destroyed after the lock is released
  absl::MutexLock lock(&mu_);
  for (auto* list : {&joining_, &active_}) {
    auto it = std::find_if(list->begin(), list->end(),
                           [reactor](const auto& r) { return r.get() == reactor; });
    if (it != list->end()) {
      last = std::move(*it);
      list->erase(it);
    }
  }
  metrics_.subscribers.Set(static_cast<double>(joining_.size() + active_.size()));
}

void SubscriptionHub::Run() {
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<Wakeup> wakeup;
  retry::Backoff reconnect({.initial = absl::Milliseconds(200), .max = absl::Seconds(5)});
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    try {
      if (!conn || !conn->is_open()) {
        wakeup.reset();
        absl::StatusOr<std::unique_ptr<pqxx::connection>> c = pg::Connect(options_.pg_dsn);
        if (!c.ok()) throw std::runtime_error(std::string(c.status().message()));
        conn = *std::move(c);
        wakeup = std::make_unique<Wakeup>(*conn, kChannel);
      }
      const Next next = Step(*conn);
      reconnect.Reset();
      // Wakes on a notification, or after a short wait to admit new subscribers; soon, when a
      // catch-up waits for its client to read (its queue drains at the client's pace).
      if (next == Next::kWait) conn->await_notification(0, 100'000);
      if (next == Next::kWaitOnClient) conn->await_notification(0, 20'000);
    } catch (const std::exception& e) {
      logger_->warn("msg=\"subscription hub cannot read the change log; retrying\" error=\"{}\"",
                    e.what());
      wakeup.reset();
      conn.reset();
      absl::SleepFor(reconnect.Next());
    }
  }
}

void SubscriptionHub::CheckAuthorizations() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.authorization_interval)) {
    std::vector<std::shared_ptr<SubscribeReactor>> all = joining_;
    all.insert(all.end(), active_.begin(), active_.end());
    mu_.Unlock();
    for (auto& r : all) r->CheckAuthorized();
    all.clear();  // a reactor removed meanwhile is deleted here, outside the lock
    mu_.Lock();
  }
}

SubscriptionHub::Next SubscriptionHub::Step(pqxx::connection& conn) {
  int64_t position;
  std::vector<std::shared_ptr<SubscribeReactor>> joining;
  {
    absl::MutexLock lock(&mu_);
    position = position_;
    joining = joining_;
  }
  auto pruned_up_to = [&conn] {
    pqxx::read_transaction tx(conn);
    return tx.exec1("SELECT up_to FROM aggregate_changes_pruned")[0].as<int64_t>();
  };
  // Where the log ends now: every token a replica handed out is at or before it.
  auto log_end = [&conn] {
    pqxx::read_transaction tx(conn);
    return tx
        .exec1(
            "SELECT greatest((SELECT coalesce(max(change_id), 0) FROM aggregate_changes),"
            " (SELECT up_to FROM aggregate_changes_pruned))")[0]
        .as<int64_t>();
  };
  if (position < 0) position = log_end();
  Next next = Next::kWait;
  std::vector<std::shared_ptr<SubscribeReactor>> caught_up;
  for (auto& r : joining) {
    if (r->start_after() < 0) r->set_start_after(position);
    if (r->caught_up_to() < 0) {
      r->set_caught_up_to(r->start_after());
      if (r->start_after() < pruned_up_to()) {
        r->End(grpc::Status(
            grpc::StatusCode::OUT_OF_RANGE,
            "the resume_token is older than the retained change log (the writer's "
            "--subscription_retention); read the gap with ReadAggregates and subscribe anew"));
      } else if (r->start_after() > position && r->start_after() > log_end()) {
        // Not from this store (another deployment, or a store restored from a backup since):
        // waiting for the log to reach it would drop every change until then without a word.
        r->End(grpc::Status(
            grpc::StatusCode::OUT_OF_RANGE,
            "the resume_token is ahead of the change log (from another deployment, or the "
            "store was restored since); read the gap with ReadAggregates and subscribe anew"));
      }
    }
    if (r->ended()) continue;  // Remove takes it off the list
    // Catch up from the token to where the active subscribers are: one batch per pass, and
    // only while the subscriber has room for it, so that the gap goes as fast as the client
    // takes it and the others are served between batches.
    const int64_t from = r->caught_up_to();
    if (from < position) {
      const Backlog backlog = r->backlog();
      const size_t buffer = options_.subscriber_buffer;
      const size_t buffer_bytes = options_.subscriber_buffer_bytes;
      if (backlog.updates > buffer / 2 || backlog.bytes > buffer_bytes / 2) {
        // Its client is still reading; a pass soon goes on.
        if (next == Next::kWait) next = Next::kWaitOnClient;
        continue;
      }
      // Log rows, of which at most as many match: within half the subscriber's bounds, in
      // updates and in bytes (the rows past them are read again in a later pass), so that once
      // it is caught up a live batch (at most the other half) fits too.
      const int batch = static_cast<int>(std::max<size_t>(
          1, std::min<size_t>(options_.fetch_batch, buffer / 2 - backlog.updates)));
      std::vector<std::shared_ptr<const Change>> missed = ReadChanges(conn, from, position, batch);
      const size_t kept = FittingIn(missed, buffer_bytes / 2 - backlog.bytes,
                                    /*first_always=*/backlog.updates == 0);
      if (kept == 0 && !missed.empty()) {
        if (next == Next::kWait) next = Next::kWaitOnClient;
        continue;
      }
      missed.resize(kept);
      // The pruner may have deleted part of the range before it was read: then what the read
      // did not find may be missing rather than absent.
      if (from < pruned_up_to()) {
        r->End(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                            "the change log was pruned while the subscription caught up; read "
                            "the gap with ReadAggregates and subscribe anew"));
        continue;
      }
      if (missed.empty()) {
        r->set_caught_up_to(position);
      } else {
        r->set_caught_up_to(missed.back()->change_id);
        r->Offer(missed, missed.back()->change_id);
      }
    }
    if (r->caught_up_to() >= position) {
      r->Offer({}, position);
      caught_up.push_back(r);
    } else {
      next = Next::kContinue;
    }
  }
  if (!caught_up.empty()) {
    absl::MutexLock lock(&mu_);
    for (auto& r : caught_up) {
      auto it = std::find(joining_.begin(), joining_.end(), r);
      if (it == joining_.end()) continue;  // finished meanwhile
      joining_.erase(it);
      active_.push_back(r);
    }
  }
  // New changes, for everyone; a full batch is followed by the next one at once, unless it
  // left a subscriber more than half full: then its client is given a moment to read first.
  // A batch holds at most half a subscriber's byte bound, so that one that keeps up is not
  // ended for the size of a transaction (wide series stored many windows at a time). A
  // subscriber that read nothing since the last such moment is given no other: it meets its
  // bound and is ended, and holds the others up no longer.
  int& limit = live_limit_;
  while (true) {
    std::vector<int64_t> stored_at;
    std::vector<std::shared_ptr<const Change>> changes =
        ReadChanges(conn, position, INT64_MAX, limit, &stored_at);
    const size_t fitting =
        FittingIn(changes, options_.subscriber_buffer_bytes / 2, /*first_always=*/true);
    const bool full = static_cast<int>(changes.size()) == limit || fitting < changes.size();
    // Rows past the bound are read again next; reading about as many as fitted keeps that
    // from reading a whole batch of wide rows for every few it keeps, and the limit grows
    // back as batches fit.
    if (fitting < changes.size()) {
      limit = std::min(options_.fetch_batch, static_cast<int>(2 * fitting));
    } else {
      limit = full ? std::min(options_.fetch_batch, 2 * limit) : options_.fetch_batch;
    }
    changes.resize(fitting);
    stored_at.resize(fitting);
    std::vector<std::shared_ptr<SubscribeReactor>> active;
    {
      absl::MutexLock lock(&mu_);
      if (!changes.empty()) position = changes.back()->change_id;
      position_ = position;
      active = active_;
    }
    if (changes.empty()) {
      // Nothing new. A stream whose last changes all went unmatched within the progress
      // interval of its last response is owed the response that moves its token past them
      // once the interval is over, whether or not the log moves again.
      for (auto& r : active) r->Offer({}, position);
      return next;
    }
    const int64_t now_us = absl::ToUnixMicros(absl::Now());
    for (int64_t t : stored_at)
      metrics_.delivery_lag.Observe(static_cast<double>(now_us - t) / 1e6);
    bool crowded = false;
    for (auto& r : active) {
      const Backlog before = r->backlog();
      if (!r->Offer(changes, position)) continue;
      const Backlog after = r->backlog();
      if (after.updates <= options_.subscriber_buffer / 2 &&
          after.bytes <= options_.subscriber_buffer_bytes / 2) {
        continue;
      }
      const std::optional<Backlog>& paced = r->paced_at();
      if (paced && before.updates >= paced->updates && before.bytes >= paced->bytes) continue;
      r->set_paced_at(after);
      crowded = true;
    }
    if (!full) return next;
    if (crowded) return Next::kWaitOnClient;
  }
}

}  // namespace tidemark::query
