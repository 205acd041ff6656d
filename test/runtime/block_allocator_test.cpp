// block_allocator_test.cpp — the paged KV pool: exhaustion, fragmentation, frees.
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

} // namespace
} // namespace moec
