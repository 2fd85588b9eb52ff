#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tidemark::bench {

/// Seconds of CPU (user + system) a process has used, from /proc/<pid>/stat.
inline double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  long long utime = 0, stime = 0;
  std::sscanf(stat.c_str() + close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
              &utime, &stime);
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// CPU seconds of one thread (or process), user and system apart.
struct CpuSplit {
  double user = 0, system = 0;
  double Total() const { return user + system; }
};

/// The CPU of each of a process's threads so far, summed by `group(thread name)`, from
/// /proc/<pid>/task/*/stat. A thread that ended since an earlier reading drops out of it, so
/// take differences across readings of a process whose threads live on (a service's).
template <typename GroupFn>
std::map<std::string, CpuSplit> CpuByThreadGroup(int pid, GroupFn group) {
  std::map<std::string, CpuSplit> out;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    long long utime = 0, stime = 0;
    std::sscanf(stat.c_str() + close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
                &utime, &stime);
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    CpuSplit& sum = out[group(stat.substr(open + 1, close - open - 1))];
    sum.user += static_cast<double>(utime) / tick;
    sum.system += static_cast<double>(stime) / tick;
  }
  return out;
}

/// Resident memory of a process, now and at its peak (VmRSS, VmHWM).
struct Memory {
  int64_t rss_kb = 0, hwm_kb = 0;
};

/// VmRSS and VmHWM from /proc/<pid>/status.
inline Memory ReadMemory(int pid) {
  Memory m;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(in, line);) {
    int64_t* field = absl::StartsWith(line, "VmRSS:")   ? &m.rss_kb
                     : absl::StartsWith(line, "VmHWM:") ? &m.hwm_kb
                                                        : nullptr;
    if (field == nullptr) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (parts.size() >= 2) (void)absl::SimpleAtoi(parts[1], field);
  }
  return m;
}

/// Ends the benchmark on a failed step: a figure from a half-run setup would mislead.
inline void Must(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench failed: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

/// Appends a result line to bench/results (under the build directory) and prints it.
inline void Report(const std::string& file, const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::ofstream out(absl::StrCat(TIDEMARK_BINARY_DIR, "/bench/", file), std::ios::app);
  out << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ ", absl::Now(), absl::UTCTimeZone()) << line << "\n";
}

}  // namespace tidemark::bench
