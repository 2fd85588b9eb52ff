#include "common/process/stop_flag.h"

namespace tidemark::process {

StopFlag::StopFlag(ShutdownSignal& signal, spdlog::logger& logger)
    : watcher_([this, &signal, &logger] {
        const int sig = signal.Wait();
        logger.info("msg=\"shutting down\" signal={}", sig);
        stop_ = true;
      }) {}

StopFlag::~StopFlag() {
  // Wakes the watcher if no signal came (the loop ended on its own).
  ShutdownSignal::RequestStop();
  watcher_.join();
}

}  // namespace tidemark::process
