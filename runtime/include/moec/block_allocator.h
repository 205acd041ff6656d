// moec/block_allocator.h — the paged KV cache's pool of fixed-size blocks.
//
// The server's KV cache is one f32 arena [L][2][n_blocks][B][KVH][HD] (moec/abi.h); a
// sequence owns a block table, the ids of the blocks that hold its positions in order
// (position p lives in block table[p / B] at row p % B). Any available block serves any
// sequence, so the pool never fragments: a sequence needing k blocks gets them whenever k are
// available, wherever they are. Blocks are handed out all-or-none and come back when a
// sequence ends, is cancelled (its client went away) or is preempted. A block may be held by
// several sequences (a shared prompt prefix, see moec/scheduler.h): it is reference-counted.
//
// A block is in one of three states:
//   in use   held by >= 1 sequence (holders() > 0);
//   cached   held by none, but marked cacheable (its K/V are a registered prefix): kept, in
//            least-recently-released order, for a later request with the same prefix, which
//            revives it with retain();
//   free     on the free list.
// allocate() hands out free blocks first, then cached ones, least recently released first
// (evicting them: the caller forgets their contents), so keeping finished requests' blocks
// never makes an allocation fail that a pool without a cache would have served; and a block
// in use is never handed out.
#pragma once

#include <cstdint>
#include <list>
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
  std::int64_t cached() const { return static_cast<std::int64_t>(lru_.size()); }
  /// Blocks allocate() can hand out: free + cached.
  std::int64_t available() const { return free_blocks() + cached(); }
  /// Blocks held by a sequence.
  std::int64_t used() const { return total() - available(); }

  /// Appends `n` blocks to `table`: free ones first, then cached ones, least recently released
  /// first (their ids are appended to `evicted`, when given: their contents are gone). All or
  /// none: returns false, taking nothing, when fewer than `n` are available.
  bool allocate(std::int64_t n, std::vector<std::int32_t> &table,
                std::vector<std::int32_t> *evicted = nullptr);
  /// Adds a holder to block `b`, which must be in use or cached (a cached block leaves the
  /// cache: it is in use again, with its contents).
  void retain(std::int32_t b);
  /// Marks block `b`, in use, as worth keeping: when its last holder releases it, it is cached
  /// instead of freed (until allocate() evicts it).
  void set_cacheable(std::int32_t b);
  bool cacheable(std::int32_t b) const { return cacheable_[static_cast<std::size_t>(b)]; }
  /// Drops this holder of every block of `table`, last block first, and clears it. A block
  /// whose last holder this was is cached if cacheable, else freed (and appended to `freed`,
  /// when given). The reverse order makes a sequence's later blocks older in the cache than
  /// its earlier ones, so a prefix is evicted from its end, never cut at its start. Throws
  /// moec::Error on a block that is not in use (a double free: a bug, caught before it
  /// corrupts another sequence).
  void release(std::vector<std::int32_t> &table, std::vector<std::int32_t> *freed = nullptr);
  /// Holders of block `b` (0 = cached or free).
  std::int32_t holders(std::int32_t b) const { return refs_[static_cast<std::size_t>(b)]; }
  bool is_cached(std::int32_t b) const { return in_lru_[static_cast<std::size_t>(b)]; }

private:
  std::vector<std::int32_t> free_;     // free block ids; the last one is handed out first
  std::vector<std::int32_t> refs_;     // [n_blocks] holders per block
  std::vector<bool> cacheable_;        // [n_blocks] cached, not freed, when released
  std::list<std::int32_t> lru_;        // cached blocks, least recently released first
  std::vector<std::list<std::int32_t>::iterator> lru_pos_; // [n_blocks] valid when cached
  std::vector<bool> in_lru_;           // [n_blocks]
};

} // namespace moec
