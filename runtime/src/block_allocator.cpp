// block_allocator.cpp — BlockAllocator (see moec/block_allocator.h).
#include "moec/block_allocator.h"

#include "moec/error.h"

#include <string>

namespace moec {

BlockAllocator::BlockAllocator(std::int64_t n_blocks) {
  if (n_blocks < 1 || n_blocks > INT32_MAX)
    throw Error("the KV cache needs at least one block (got " + std::to_string(n_blocks) + ")");
  const auto n = static_cast<std::size_t>(n_blocks);
  refs_.assign(n, 0);
  cacheable_.assign(n, false);
  lru_pos_.resize(n);
  in_lru_.assign(n, false);
  free_.reserve(n);
  for (std::int64_t b = n_blocks - 1; b >= 0; --b) // block 0 is handed out first
    free_.push_back(static_cast<std::int32_t>(b));
}

bool BlockAllocator::allocate(std::int64_t n, std::vector<std::int32_t> &table,
                              std::vector<std::int32_t> *evicted) {
  if (n < 0 || n > available())
    return false;
  for (std::int64_t i = 0; i < n; ++i) {
    std::int32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else { // evict the least recently released cached block
      b = lru_.front();
      lru_.pop_front();
      in_lru_[static_cast<std::size_t>(b)] = false;
      cacheable_[static_cast<std::size_t>(b)] = false;
      if (evicted)
        evicted->push_back(b);
    }
    refs_[static_cast<std::size_t>(b)] = 1;
    table.push_back(b);
  }
  return true;
}

void BlockAllocator::retain(std::int32_t b) {
  if (b < 0 || b >= total() ||
      (refs_[static_cast<std::size_t>(b)] == 0 && !in_lru_[static_cast<std::size_t>(b)]))
    throw Error("KV block " + std::to_string(b) + " shared but neither in use nor cached");
  const auto i = static_cast<std::size_t>(b);
  if (in_lru_[i]) { // revived: its contents are still the prefix it was cached for
    lru_.erase(lru_pos_[i]);
    in_lru_[i] = false;
  }
  ++refs_[i];
}

void BlockAllocator::set_cacheable(std::int32_t b) {
  if (b < 0 || b >= total() || refs_[static_cast<std::size_t>(b)] == 0)
    throw Error("KV block " + std::to_string(b) + " marked cacheable but not in use");
  cacheable_[static_cast<std::size_t>(b)] = true;
}

void BlockAllocator::release(std::vector<std::int32_t> &table, std::vector<std::int32_t> *freed) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    const std::int32_t b = *it;
    if (b < 0 || b >= total() || refs_[static_cast<std::size_t>(b)] == 0)
      throw Error("KV block " + std::to_string(b) + " released but not in use");
    const auto i = static_cast<std::size_t>(b);
    if (--refs_[i] > 0)
      continue;
    if (cacheable_[i]) {
      lru_pos_[i] = lru_.insert(lru_.end(), b);
      in_lru_[i] = true;
    } else {
      free_.push_back(b);
      if (freed)
        freed->push_back(b);
    }
  }
  table.clear();
}

} // namespace moec
