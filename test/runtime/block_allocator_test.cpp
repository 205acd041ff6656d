// block_allocator_test.cpp — the paged KV pool: exhaustion, fragmentation, frees, and the
// cache of released prefix blocks (revival, eviction order, exhaustion with cached blocks).
#include "moec/block_allocator.h"
#include "moec/error.h"

#include <gtest/gtest.h>

#include <set>

namespace moec {
namespace {

TEST(BlockAllocator, BlocksFor) {
  EXPECT_EQ(blocks_for(0, 16), 0);
  EXPECT_EQ(blocks_for(1, 16), 1);
  EXPECT_EQ(blocks_for(16, 16), 1);
  EXPECT_EQ(blocks_for(17, 16), 2);
}

TEST(BlockAllocator, ExhaustionIsAllOrNothing) {
  BlockAllocator a(5);
  std::vector<std::int32_t> x, y;
  EXPECT_TRUE(a.allocate(3, x));
  EXPECT_FALSE(a.allocate(3, y)); // 2 left: nothing is taken
  EXPECT_TRUE(y.empty());
  EXPECT_EQ(a.free_blocks(), 2);
  EXPECT_TRUE(a.allocate(2, y));
  EXPECT_EQ(a.free_blocks(), 0);
  EXPECT_FALSE(a.allocate(1, y));
  std::set<std::int32_t> all(x.begin(), x.end());
  all.insert(y.begin(), y.end());
  EXPECT_EQ(all, (std::set<std::int32_t>{0, 1, 2, 3, 4})); // every block once
}

// Freeing every other sequence leaves the free blocks scattered; a sequence that needs all of
// them still gets them (paging: no contiguous run is needed).
TEST(BlockAllocator, FragmentationDoesNotBlockALargeSequence) {
  BlockAllocator a(12);
  std::vector<std::vector<std::int32_t>> seqs(6);
  for (auto &t : seqs)
    ASSERT_TRUE(a.allocate(2, t));
  for (std::size_t i = 0; i < seqs.size(); i += 2)
    a.release(seqs[i]);
  EXPECT_EQ(a.free_blocks(), 6);
  std::vector<std::int32_t> big;
  EXPECT_TRUE(a.allocate(6, big));
  std::set<std::int32_t> held;
  for (std::size_t i = 1; i < seqs.size(); i += 2)
    held.insert(seqs[i].begin(), seqs[i].end());
  for (std::int32_t b : big)
    EXPECT_EQ(held.count(b), 0u) << "block " << b << " handed out twice";
}

// A client that disconnects: its sequence's table goes back whole, and is reusable at once.
TEST(BlockAllocator, ReleaseOnDisconnectReturnsEveryBlock) {
  BlockAllocator a(4);
  std::vector<std::int32_t> t;
  ASSERT_TRUE(a.allocate(4, t));
  a.release(t);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_EQ(a.used(), 0);
  std::vector<std::int32_t> u;
  EXPECT_TRUE(a.allocate(4, u));
}

// A shared block (a common prefix) returns to the pool with its last holder only.
TEST(BlockAllocator, SharedBlockIsFreedByItsLastHolder) {
  BlockAllocator a(3);
  std::vector<std::int32_t> x, y;
  ASSERT_TRUE(a.allocate(2, x));
  a.retain(x[0]);
  y.push_back(x[0]);
  EXPECT_EQ(a.holders(x[0]), 2);
  std::vector<std::int32_t> freed;
  a.release(x, &freed);
  EXPECT_EQ(freed.size(), 1u); // x's second block; its first is still y's
  EXPECT_EQ(a.free_blocks(), 2);
  const std::int32_t shared = y[0];
  a.release(y, &freed);
  EXPECT_EQ(freed.back(), shared);
  EXPECT_EQ(a.free_blocks(), 3);
  EXPECT_THROW(a.retain(shared), Error); // free now
}

TEST(BlockAllocator, DoubleFreeAndBadSizesAreErrors) {
  BlockAllocator a(2);
  std::vector<std::int32_t> t;
  ASSERT_TRUE(a.allocate(1, t));
  std::vector<std::int32_t> copy = t;
  a.release(t);
  EXPECT_THROW(a.release(copy), Error);
  std::vector<std::int32_t> bogus = {7};
  EXPECT_THROW(a.release(bogus), Error);
  EXPECT_THROW(BlockAllocator(0), Error);
}

// A cacheable block whose last holder releases it is kept (cached), not freed; retain()
// revives it with its contents, and it counts as available meanwhile.
TEST(BlockAllocator, ReleasedCacheableBlockIsCachedAndRevived) {
  BlockAllocator a(3);
  std::vector<std::int32_t> x;
  ASSERT_TRUE(a.allocate(2, x));
  a.set_cacheable(x[0]);
  const std::vector<std::int32_t> blocks = x;
  std::vector<std::int32_t> freed;
  a.release(x, &freed);
  EXPECT_EQ(freed, (std::vector<std::int32_t>{blocks[1]})); // not cacheable: freed
  EXPECT_TRUE(a.is_cached(blocks[0]));
  EXPECT_EQ(a.cached(), 1);
  EXPECT_EQ(a.free_blocks(), 2);
  EXPECT_EQ(a.available(), 3);
  EXPECT_EQ(a.used(), 0);
  a.retain(blocks[0]);
  EXPECT_FALSE(a.is_cached(blocks[0]));
  EXPECT_EQ(a.holders(blocks[0]), 1);
  EXPECT_EQ(a.cached(), 0);
  EXPECT_EQ(a.used(), 1);
  EXPECT_TRUE(a.cacheable(blocks[0])); // still worth keeping when released again
}

// Free blocks go first; then cached ones, least recently released first. A table is released
// from its last block, so each sequence's tail is evicted before its head.
TEST(BlockAllocator, EvictionIsLeastRecentlyReleasedAndFromATablesEnd) {
  BlockAllocator a(5);
  std::vector<std::int32_t> x, y, spare;
  ASSERT_TRUE(a.allocate(2, x));
  ASSERT_TRUE(a.allocate(2, y));
  for (std::int32_t b : x)
    a.set_cacheable(b);
  for (std::int32_t b : y)
    a.set_cacheable(b);
  const std::vector<std::int32_t> x0 = x, y0 = y;
  a.release(x); // cached: x[1], x[0]
  a.release(y); // then y[1], y[0]
  std::vector<std::int32_t> t, evicted;
  ASSERT_TRUE(a.allocate(2, t, &evicted));
  EXPECT_EQ(evicted, (std::vector<std::int32_t>{x0[1]})); // the one free block went first
  ASSERT_TRUE(a.allocate(3, t, &evicted));
  EXPECT_EQ(evicted, (std::vector<std::int32_t>{x0[1], x0[0], y0[1], y0[0]}));
  EXPECT_EQ(a.cached(), 0);
  for (std::int32_t b : evicted)
    EXPECT_FALSE(a.cacheable(b)) << b; // its contents are someone else's now
  EXPECT_FALSE(a.allocate(1, spare));
}

// Reviving a block moves it out of the eviction order; releasing it again makes it the newest.
TEST(BlockAllocator, RevivedBlockIsNewestAgain) {
  BlockAllocator a(2);
  std::vector<std::int32_t> x, y;
  ASSERT_TRUE(a.allocate(1, x));
  ASSERT_TRUE(a.allocate(1, y));
  const std::int32_t bx = x[0], by = y[0];
  a.set_cacheable(bx);
  a.set_cacheable(by);
  a.release(x);
  a.release(y); // order: bx, by
  std::vector<std::int32_t> again = {bx};
  a.retain(bx);
  a.release(again); // order: by, bx
  std::vector<std::int32_t> t, evicted;
  ASSERT_TRUE(a.allocate(1, t, &evicted));
  EXPECT_EQ(evicted, (std::vector<std::int32_t>{by}));
}

// With every block cached, an allocation of the whole pool succeeds, exactly as a pool
// without a cache would serve it; one block more fails and takes nothing (the cache stays).
TEST(BlockAllocator, CachedBlocksNeverMakeAnAllocationFail) {
  BlockAllocator a(6);
  std::vector<std::vector<std::int32_t>> seqs(3);
  for (auto &t : seqs) {
    ASSERT_TRUE(a.allocate(2, t));
    for (std::int32_t b : t)
      a.set_cacheable(b);
  }
  for (auto &t : seqs)
    a.release(t);
  EXPECT_EQ(a.cached(), 6);
  EXPECT_EQ(a.free_blocks(), 0);
  std::vector<std::int32_t> too_big, all, evicted;
  EXPECT_FALSE(a.allocate(7, too_big, &evicted));
  EXPECT_TRUE(too_big.empty());
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ(a.cached(), 6);
  ASSERT_TRUE(a.allocate(6, all, &evicted));
  EXPECT_EQ(std::set<std::int32_t>(all.begin(), all.end()),
            (std::set<std::int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(evicted.size(), 6u);
  EXPECT_EQ(a.used(), 6);
}

// A cacheable block that a sequence still holds, or that was revived, is never handed out:
// only blocks with no holder are evicted.
TEST(BlockAllocator, BlockInUseIsNeverEvicted) {
  BlockAllocator a(4);
  std::vector<std::int32_t> held, gone;
  ASSERT_TRUE(a.allocate(2, held));
  ASSERT_TRUE(a.allocate(2, gone));
  for (std::int32_t b : held)
    a.set_cacheable(b);
  for (std::int32_t b : gone)
    a.set_cacheable(b);
  const std::int32_t revived = gone[0];
  a.release(gone);
  a.retain(revived); // a new request shares it
  std::vector<std::int32_t> t, evicted;
  ASSERT_TRUE(a.allocate(1, t, &evicted));
  EXPECT_FALSE(a.allocate(1, t, &evicted)); // the rest are in use
  std::set<std::int32_t> in_use(held.begin(), held.end());
  in_use.insert(revived);
  EXPECT_EQ(in_use.count(t[0]), 0u);
  EXPECT_EQ(evicted.size(), 1u);
  EXPECT_EQ(a.holders(revived), 1);
}

TEST(BlockAllocator, CacheMisuseIsAnError) {
  BlockAllocator a(2);
  EXPECT_THROW(a.retain(0), Error);        // free, not cached
  EXPECT_THROW(a.set_cacheable(1), Error); // not in use
  std::vector<std::int32_t> t;
  ASSERT_TRUE(a.allocate(1, t));
  a.set_cacheable(t[0]);
  std::vector<std::int32_t> copy = t;
  a.release(t);
  EXPECT_THROW(a.release(copy), Error); // cached is not in use: a double free
}

} // namespace
} // namespace moec
