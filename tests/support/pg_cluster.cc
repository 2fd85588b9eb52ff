#include "tests/support/pg_cluster.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "tests/support/process.h"

namespace tidemark::testing {
namespace {

std::string FindPgBin() {
  std::string best;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
    const std::string bin = e.path().string() + "/bin";
    if (std::filesystem::exists(bin + "/initdb") && bin > best) best = bin;
  }
  return best;
}

absl::StatusOr<std::string> Capture(const std::string& command) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen failed");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int rc = pclose(p);
  if (rc != 0) return absl::InternalError(absl::StrCat("`", command, "` failed: ", out));
  return out;
}

// The clusters whose server runs (PgCluster::SetLive).
absl::Mutex& LiveMutex() {
  static absl::Mutex* mu = new absl::Mutex();
  return *mu;
}
std::set<PgCluster*>& Live() {
  static std::set<PgCluster*>* live = new std::set<PgCluster*>();
  return *live;
}

}  // namespace

void PgCluster::SetLive(bool live) {
  static const bool registered = [] { return std::atexit(&PgCluster::StopLiveAtExit) == 0; }();
  (void)registered;
  absl::MutexLock lock(&LiveMutex());
  if (live) {
    Live().insert(this);
  } else {
    Live().erase(this);
  }
}

void PgCluster::StopLiveAtExit() {
  std::vector<PgCluster*> live;
  {
    absl::MutexLock lock(&LiveMutex());
    live.assign(Live().begin(), Live().end());
  }
  for (PgCluster* c : live) {
    // A server that did not stop keeps its directory: it still runs on it.
    if (!c->StopImmediate().ok()) continue;
    std::error_code ec;
    std::filesystem::remove_all(c->dir_, ec);
  }
}

absl::Status PgCluster::RunAsOwner(const std::string& command) const {
  const std::string full =
      geteuid() == 0 ? absl::StrCat("runuser -u postgres -- ", command) : command;
  absl::StatusOr<std::string> out = Capture(absl::StrCat(full, " 2>&1"));
  return out.status();
}

absl::StatusOr<std::unique_ptr<PgCluster>> PgCluster::Start() {
  std::unique_ptr<PgCluster> c(new PgCluster());
  c->bin_ = FindPgBin();
  if (c->bin_.empty()) return absl::NotFoundError("no PostgreSQL under /usr/lib/postgresql");
  char tmpl[] = "/tmp/tidemark-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  c->dir_ = tmpl;
  if (geteuid() == 0) {
    if (absl::Status s = Capture(absl::StrCat("chown postgres:postgres ", c->dir_)).status();
        !s.ok()) {
      return s;
    }
  }
  c->port_ = FreePort();
  if (absl::Status s = c->RunAsOwner(absl::StrCat(c->bin_, "/initdb -D ", c->dir_,
                                                  "/data -A trust -U tidemark -E UTF8 --no-sync"));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = c->StartAgain(); !s.ok()) return s;
  return c;
}

absl::Status PgCluster::StartAgain() {
  // fsync=off is safe here: an immediate stop kills PostgreSQL, not the OS, whose page cache
  // keeps what was written. synchronous_commit must stay on, or a commit the writer saw
  // succeed could still be in WAL buffers when the server is killed.
  absl::Status s = RunAsOwner(absl::StrCat(
      bin_, "/pg_ctl -D ", dir_, "/data -l ", dir_, "/log -w -o \"-p ", port_, " -k ", dir_,
      " -c listen_addresses=127.0.0.1 -c fsync=off"
      " -c full_page_writes=off -c max_connections=200\" start"));
  if (s.ok()) {
    running_ = true;
    SetLive(true);
  }
  return s;
}

absl::Status PgCluster::StopImmediate() {
  absl::Status s =
      RunAsOwner(absl::StrCat(bin_, "/pg_ctl -D ", dir_, "/data -m immediate -w stop"));
  if (s.ok()) {
    running_ = false;
    SetLive(false);
  }
  return s;
}

absl::Status PgCluster::RequirePasswordFor(const std::vector<std::string>& users) {
  const std::string hba = absl::StrCat(dir_, "/data/pg_hba.conf");
  std::string lines;
  for (const std::string& user : users) {
    absl::StrAppend(&lines, "host all ", user, " 127.0.0.1/32 scram-sha-256\n", "local all ",
                    user, " scram-sha-256\n");
  }
  // pg_hba.conf is read top down: the first matching line wins over the trust lines below.
  std::string current;
  {
    std::ifstream in(hba);
    std::stringstream buf;
    buf << in.rdbuf();
    current = buf.str();
  }
  {
    std::ofstream out(hba, std::ios::trunc);
    out << lines << current;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", hba));
  }
  return Psql("postgres", "SELECT pg_reload_conf()").status();
}

PgCluster::~PgCluster() {
  if (running_) {
    (void)RunAsOwner(absl::StrCat(bin_, "/pg_ctl -D ", dir_, "/data -m immediate -w stop"));
  }
  SetLive(false);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PgCluster::Dsn(const std::string& database, const std::string& user) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " user=", user, " dbname=", database);
}

absl::StatusOr<std::string> PgCluster::CreateDatabase(const std::string& name) {
  absl::StatusOr<std::string> out = Psql("postgres", absl::StrCat("CREATE DATABASE ", name));
  if (!out.ok()) return out.status();
  return Dsn(name);
}

absl::StatusOr<std::string> PgCluster::Psql(const std::string& database,
                                            const std::string& sql) const {
  absl::StatusOr<std::string> out = Capture(absl::StrCat(
      bin_, "/psql -X -qAt -v ON_ERROR_STOP=1 \"", Dsn(database), "\" -c \"", sql, "\" 2>&1"));
  if (!out.ok()) return out.status();
  return std::string(absl::StripTrailingAsciiWhitespace(*out));
}

PgCluster& SharedPgCluster() {
  static const std::unique_ptr<PgCluster> cluster = [] {
    absl::StatusOr<std::unique_ptr<PgCluster>> c = PgCluster::Start();
    if (!c.ok()) {
      std::fprintf(stderr, "cannot start PostgreSQL for the tests: %s\n",
                   std::string(c.status().message()).c_str());
      std::abort();
    }
    return *std::move(c);
  }();
  return *cluster;
}

}  // namespace tidemark::testing
