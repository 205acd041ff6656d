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

#include <algorithm>
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

// Per shared-memory byte: who wrote it and who read it since which barrier, packed in 64 bits
// (a warp's access reads half the shadow bytes of two 32-bit pairs): the low word is the
// writer, the high word the reader, each `epoch << 12 | thread` with the thread's index + 1
// (a block has at most 1024 threads) or kPackedMany for several readers. Packed epochs have 20
// bits: when they run out the shadow is cleared (only at a block's start or a barrier, where
// every older entry is ordered anyway) and counting restarts at 1; 0 never matches.
using ShadowByte = std::uint64_t;
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
  static constexpr std::uint32_t kThreadBits = 12, kPackedMany = (1u << kThreadBits) - 1;
  static constexpr std::uint32_t kEpochLimit = 1u << (32 - kThreadBits);

  // A new block: epochs only grow, so the previous blocks' entries never match (no clearing).
  void reset(std::size_t bytes) {
    if (bytes_.size() < bytes) bytes_.resize(bytes);
    next_epoch();
  }
  void barrier() { next_epoch(); } // accesses before and after a barrier are ordered
  /// The barrier epoch (never wraps: the global racecheck orders a block's accesses by it).
  std::uint32_t epoch() const { return epoch_; }
  /// Records thread `me`'s access of [b0, b0+n); false (and *race) on a race. First a check
  /// of every byte without branches, then (no race) the updates; on a race the byte-by-byte
  /// rules find the first racing byte.
  bool access(std::uint64_t b0, std::size_t n, Access acc, std::uint32_t me, SharedRace *race) {
    if (acc == Access::Atomic) return true;
    ShadowByte *s = bytes_.data() + b0;
    if (n % 4 == 0 && avx2_ && access_avx2(s, n, acc == Access::Write, packed_, me)) return true;
    const std::uint32_t mine = packed_ << kThreadBits | me;
    std::uint32_t bad = 0;
    if (acc == Access::Write) {
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t w = std::uint32_t(s[i]), r = std::uint32_t(s[i] >> 32);
        bad |= (w >> kThreadBits == packed_ && w != mine) | (r >> kThreadBits == packed_ && r != mine);
      }
      if (!bad) {
        for (std::size_t i = 0; i < n; ++i) s[i] = (s[i] & ~0xffffffffull) | mine;
        return true;
      }
    } else {
      const std::uint32_t many = packed_ << kThreadBits | kPackedMany;
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t w = std::uint32_t(s[i]);
        bad |= w >> kThreadBits == packed_ && w != mine;
      }
      if (!bad) {
        for (std::size_t i = 0; i < n; ++i) {
          const std::uint32_t r = std::uint32_t(s[i] >> 32);
          const std::uint32_t nr = r >> kThreadBits != packed_ ? mine : r != mine ? many : r;
          s[i] = std::uint32_t(s[i]) | std::uint64_t(nr) << 32;
        }
        return true;
      }
    }
    for (std::uint64_t b = b0; b < b0 + n; ++b)
      if (!access_byte(bytes_[std::size_t(b)], acc, me, race)) {
        race->byte = b;
        return false;
      }
    return true;
  }

  /// A warp's access: the thread `me0 + lanes[k]` accesses [byte[lanes[k]], +n) for k in
  /// [0, count), in that order, each as access() would, in one call (no race: count). On a
  /// race, the index k of the first racing lane, its access not recorded (the earlier ones
  /// are): access() is idempotent for a thread, so replaying lanes 0..k through it finds the
  /// same race and words it.
  int access_warp(const std::uint64_t *byte, const int *lanes, int count, std::size_t n,
                  Access acc, std::uint32_t me0) {
    if (acc == Access::Atomic) return count;
    if (n % 4 == 0 && avx2_)
      return access_warp_avx2(bytes_.data(), byte, lanes, count, n, acc == Access::Write,
                              packed_, me0);
    SharedRace race;
    for (int k = 0; k < count; ++k)
      if (!access(byte[lanes[k]], n, acc, me0 + std::uint32_t(lanes[k]), &race)) return k;
    return count;
  }

private:
  static int access_warp_avx2(ShadowByte *shadow, const std::uint64_t *byte, const int *lanes,
                              int count, std::size_t n, bool write, std::uint32_t epoch,
                              std::uint32_t me0);
  // The same check and update, 4 bytes a step with AVX2 (a race or a CPU without AVX2: false,
  // having changed nothing).
  static bool access_avx2(ShadowByte *s, std::size_t n, bool write, std::uint32_t epoch,
                          std::uint32_t me);
  static bool cpu_has_avx2();

  void next_epoch() {
    ++epoch_;
    if (++packed_ == kEpochLimit) {
      std::fill(bytes_.begin(), bytes_.end(), ShadowByte(0));
      packed_ = 1;
    }
  }
  // The rules for one byte (the fast path above computes the same, branch-free).
  bool access_byte(ShadowByte &s, Access acc, std::uint32_t me, SharedRace *race) {
    const std::uint32_t mine = packed_ << kThreadBits | me;
    std::uint32_t w = std::uint32_t(s), r = std::uint32_t(s >> 32);
    auto other = [](std::uint32_t x) {
      std::uint32_t t = x & kPackedMany;
      return t == kPackedMany ? kManyReaders : t;
    };
    if (w >> kThreadBits == packed_ && w != mine) {
      race->other = other(w), race->other_wrote = true;
      return false;
    }
    if (acc == Access::Write) {
      if (r >> kThreadBits == packed_ && r != mine) {
        race->other = other(r), race->other_wrote = false;
        return false;
      }
      w = mine;
    } else if (r >> kThreadBits != packed_) {
      r = mine;
    } else if (r != mine) {
      r = packed_ << kThreadBits | kPackedMany;
    }
    s = w | std::uint64_t(r) << 32;
    return true;
  }

  std::vector<ShadowByte> bytes_;
  const bool avx2_ = cpu_has_avx2();
  std::uint32_t epoch_ = 1;  // barriers and blocks so far
  std::uint32_t packed_ = 1; // the same, as the entries store it (wraps, see above)
};

} // namespace ptxemu
