// interp.h — runs one kernel launch of a decoded PTX program (program.h) on the host: every
// block of the grid in turn, checking bounds, alignment and races as it goes (checks.h).
#pragma once

#include "checks.h"
#include "program.h"

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace ptxemu {

struct LaunchConfig {
  std::uint32_t id = 0;                 // launch number (global racecheck generations)
  std::uint32_t grid[3] = {1, 1, 1};
  std::uint32_t block[3] = {1, 1, 1};
  std::size_t dynamic_shared = 0;       // bytes of `.extern .shared`
  const std::vector<std::uint8_t> *params = nullptr; // the kernel's parameter space
  bool count_reads = false;             // fill LaunchStats::reads ($PTXEMU_TRACE)
};

struct LaunchStats {
  // Bytes the launch loaded from each allocation (a GPU's global-memory traffic before caches:
  // a weight read twice shows up twice).
  std::unordered_map<const Allocation *, std::uint64_t> reads;
  // Bytes of the distinct 32-byte sectors those loads touched, per allocation: the traffic
  // if every byte were fetched once (the ideal a kernel's loads are measured against).
  std::unordered_map<const Allocation *, std::uint64_t> distinct;
};

/// Runs the launch; throws Fault (naming kernel, block, thread and PTX line) on the first
/// failed check, trap or deadlock.
void run_launch(const Kernel &k, const LaunchConfig &cfg, LaunchStats *stats);

} // namespace ptxemu
