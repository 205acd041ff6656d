// checks.h — what the PTX interpreter checks that a GPU would not: the device allocations
// (every global access must lie inside one), and the racecheck shadows for shared and global
// memory. The interpreter resolves addresses and words the faults; the bookkeeping is here.
//
// Racecheck (on unless $PTXEMU_RACECHECK=0): between two barriers of a block, a shared byte
// written by one thread must not be read or written by another; within a launch, a global
// byte written by one thread must not be touched by another unless both are in one block with
// a barrier between. Atomics are exempt. Threads are named by their index in the block + 1
// (global racecheck: block index * threads per block + that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace ptxemu {

enum class Access : std::uint8_t { Read, Write, Atomic };

/// True unless $PTXEMU_RACECHECK=0.
bool racecheck_enabled();

// Per byte of a device allocation, for the global racecheck: the last launch that wrote it,
// the writing thread (its global index + 1) and that thread's barrier epoch.
struct GlobalShadow {
  std::uint32_t launch = 0, writer = 0, epoch = 0;
};

struct Allocation {
  std::size_t size = 0;
  std::vector<GlobalShadow> shadow; // [size] bytes; empty until a kernel writes the allocation
  std::uint32_t written_in = 0;     // the last launch that wrote it: reads in others are free
};

// Device memory is host memory: the allocations by base address, for bounds checks.
struct Memory {
  std::mutex mutex;
  std::map<std::uint64_t, Allocation> ranges; // by base address
  std::size_t allocated = 0;

  void add(const void *p, std::size_t n);
  bool remove(std::uint64_t p);
  /// The allocation holding [p, p+n) (its base in *lo), or null.
  Allocation *contains(std::uint64_t p, std::size_t n, std::uint64_t *lo);
};

/// The process's device memory. Never destroyed: the runtime frees device buffers from its
/// own static destructors.
Memory &memory();

/// Who a global access races with: 0 when none, else the writer's global index + 1.
struct GlobalAccess {
  std::uint32_t launch, me, block, per_block, epoch;
};
std::uint32_t global_race(Allocation &al, std::uint64_t off, std::size_t n, Access acc,
                          const GlobalAccess &who);

// Per shared-memory byte: who wrote it and who read it since which barrier.
struct ShadowByte {
  std::uint32_t writer = 0, write_epoch = 0; // writer: thread index + 1
  std::uint32_t reader = 0, read_epoch = 0;  // reader: thread index + 1, or kManyReaders
};
constexpr std::uint32_t kManyReaders = ~0u;

/// A shared-memory race: the byte, the other thread (index + 1, or kManyReaders) and whether
/// that thread wrote the byte (else it read it).
struct SharedRace {
  std::uint64_t byte = 0;
  std::uint32_t other = 0;
  bool other_wrote = false;
};

/// The shared-memory racecheck of one block; byte b is static shared memory, then dynamic.
class SharedShadow {
public:
  // A new block: epochs only grow, so the previous blocks' entries never match (no clearing).
  void reset(std::size_t bytes) {
    if (bytes_.size() < bytes) bytes_.resize(bytes);
    ++epoch_;
  }
  void barrier() { ++epoch_; } // accesses before and after a barrier are ordered
  std::uint32_t epoch() const { return epoch_; }
  /// Records thread `me`'s access of [b0, b0+n); false (and *race) on a race.
  bool access(std::uint64_t b0, std::size_t n, Access acc, std::uint32_t me, SharedRace *race) {
    if (acc == Access::Atomic) return true;
    for (std::uint64_t b = b0; b < b0 + n; ++b)
      if (!access_byte(bytes_[std::size_t(b)], acc, me)) {
        const ShadowByte &s = bytes_[std::size_t(b)];
        bool wrote = s.write_epoch == epoch_ && s.writer != me;
        *race = {b, wrote ? s.writer : s.reader, wrote};
        return false;
      }
    return true;
  }

private:
  bool access_byte(ShadowByte &s, Access acc, std::uint32_t me) {
    if (s.write_epoch == epoch_ && s.writer != me) return false;
    if (acc == Access::Write) {
      if (s.read_epoch == epoch_ && s.reader != me) return false;
      s.writer = me, s.write_epoch = epoch_;
    } else if (s.read_epoch != epoch_) {
      s.reader = me, s.read_epoch = epoch_;
    } else if (s.reader != me) {
      s.reader = kManyReaders;
    }
    return true;
  }

  std::vector<ShadowByte> bytes_;
  std::uint32_t epoch_ = 1;
};

} // namespace ptxemu
