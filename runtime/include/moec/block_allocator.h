// moec/block_allocator.h — the paged KV cache's pool of fixed-size blocks.
//
// The server's KV cache is one f32 arena [L][2][n_blocks][B][KVH][HD] (moec/abi.h); a
// sequence owns a block table, the ids of the blocks that hold its positions in order
// (position p lives in block table[p / B] at row p % B). Any free block serves any sequence,
// so the pool never fragments: a sequence needing k blocks gets them whenever k are free,
// wherever they are. Blocks are handed out all-or-none and come back when a sequence ends, is
// cancelled (its client went away) or is preempted. A block may be held by several sequences
// (a shared prompt prefix, see moec/scheduler.h): it is reference-counted and free again when
// its last holder releases it.
#pragma once

#include <cstdint>
#include <vector>

namespace moec {

/// Blocks needed for `positions` positions of `block_size` each.
inline std::int64_t blocks_for(std::int64_t positions, std::int64_t block_size) {
  return (positions + block_size - 1) / block_size;
}

class BlockAllocator {
public:
  explicit BlockAllocator(std::int64_t n_blocks);

  std::int64_t total() const { return static_cast<std::int64_t>(refs_.size()); }
  std::int64_t free_blocks() const { return static_cast<std::int64_t>(free_.size()); }
  std::int64_t used() const { return total() - free_blocks(); }

  /// Appends `n` free blocks to `table`, or none (and returns false) when fewer are free.
  bool allocate(std::int64_t n, std::vector<std::int32_t> &table);
  /// Adds a holder to block `b`, which must be in use (sharing it).
  void retain(std::int32_t b);
  /// Drops this holder of every block of `table` and clears it; a block whose last holder this
  /// was returns to the pool (and is appended to `freed`, when given). Throws moec::Error on a
  /// block that is not in use (a double free: a bug, caught before it corrupts another
  /// sequence).
  void release(std::vector<std::int32_t> &table, std::vector<std::int32_t> *freed = nullptr);
  /// Holders of block `b` (0 = free).
  std::int32_t holders(std::int32_t b) const { return refs_[static_cast<std::size_t>(b)]; }

private:
  std::vector<std::int32_t> free_; // free block ids; the last one is handed out first
  std::vector<std::int32_t> refs_; // [n_blocks] holders per block
};

} // namespace moec
