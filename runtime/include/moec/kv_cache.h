// moec/kv_cache.h — the one KV-cache allocation the generated code reads and writes.
//
// f32 [L][2][S][KVH][HD] (index 0 = keys, 1 = values), zeroed, behind moec_kv_offset from
// moec/abi.h — the single indexing rule shared with the generated code. The runtime only
// allocates it and tracks how many positions are filled; the generated code fills it.
#pragma once

#include "moec/arena.h"
#include "moec/manifest.h"

#include <cstdint>

namespace moec {

class KvCache {
public:
  explicit KvCache(const Manifest &manifest);

  void *data() const { return arena_.data(); }
  float *f32() const { return static_cast<float *>(arena_.data()); }
  std::uint64_t bytes() const { return arena_.bytes(); }

  /// Element offset of [layer][which][position][kv_head][0]; bounds-checked (moec::Error).
  std::int64_t offset(std::int64_t layer, std::int64_t which, std::int64_t position,
                      std::int64_t kv_head) const;

  /// Positions [0, filled()) hold keys/values.
  std::int64_t filled() const { return filled_; }
  std::int64_t capacity() const { return max_seq_len_; }
  /// Records that `n` more positions were written; throws if that passes capacity().
  void advance(std::int64_t n);
  /// Forgets all positions (the contents are overwritten by the next prefill).
  void reset() { filled_ = 0; }

private:
  Arena arena_;
  std::int64_t layers_;      // L
  std::int64_t max_seq_len_; // S
  std::int64_t n_kv_heads_;  // KVH
  std::int64_t head_dim_;    // HD
  std::int64_t filled_ = 0;  // positions written so far
};

} // namespace moec
