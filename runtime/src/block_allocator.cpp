// block_allocator.cpp — BlockAllocator (see moec/block_allocator.h).
#include "moec/block_allocator.h"

#include "moec/error.h"

#include <string>

namespace moec {

BlockAllocator::BlockAllocator(std::int64_t n_blocks) {
  if (n_blocks < 1 || n_blocks > INT32_MAX)
    throw Error("the KV cache needs at least one block (got " + std::to_string(n_blocks) + ")");
  refs_.assign(static_cast<std::size_t>(n_blocks), 0);
  free_.reserve(static_cast<std::size_t>(n_blocks));
  for (std::int64_t b = n_blocks - 1; b >= 0; --b) // block 0 is handed out first
    free_.push_back(static_cast<std::int32_t>(b));
}

bool BlockAllocator::allocate(std::int64_t n, std::vector<std::int32_t> &table) {
  if (n < 0 || n > free_blocks())
    return false;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t b = free_.back();
    free_.pop_back();
    refs_[static_cast<std::size_t>(b)] = 1;
    table.push_back(b);
  }
  return true;
}

void BlockAllocator::retain(std::int32_t b) {
  if (b < 0 || b >= total() || refs_[static_cast<std::size_t>(b)] == 0)
    throw Error("KV block " + std::to_string(b) + " shared but not in use");
  ++refs_[static_cast<std::size_t>(b)];
}

void BlockAllocator::release(std::vector<std::int32_t> &table, std::vector<std::int32_t> *freed) {
  for (std::int32_t b : table) {
    if (b < 0 || b >= total() || refs_[static_cast<std::size_t>(b)] == 0)
      throw Error("KV block " + std::to_string(b) + " released but not in use");
    if (--refs_[static_cast<std::size_t>(b)] == 0) {
      free_.push_back(b);
      if (freed)
        freed->push_back(b);
    }
  }
  table.clear();
}

} // namespace moec
