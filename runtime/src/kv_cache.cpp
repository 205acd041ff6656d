// kv_cache.cpp — KvCache.
#include "moec/kv_cache.h"

#include "moec/abi.h"
#include "moec/error.h"

#include <string>

namespace moec {

KvCache::KvCache(const Manifest &m)
    : arena_(m.kv_bytes, "KV cache"), layers_(m.config.num_hidden_layers),
      max_seq_len_(m.max_seq_len), n_kv_heads_(m.config.num_key_value_heads),
      head_dim_(m.config.head_dim) {
  const std::uint64_t want = static_cast<std::uint64_t>(layers_) * 2 * max_seq_len_ *
                             n_kv_heads_ * head_dim_ * sizeof(float);
  if (want != m.kv_bytes)
    throw Error("KV cache: manifest says " + std::to_string(m.kv_bytes) +
                " bytes but [L, 2, S, KVH, HD] of f32 is " + std::to_string(want));
}

std::int64_t KvCache::offset(std::int64_t layer, std::int64_t which, std::int64_t position,
                             std::int64_t kv_head) const {
  if (layer < 0 || layer >= layers_ || which < 0 || which > 1 || position < 0 ||
      position >= max_seq_len_ || kv_head < 0 || kv_head >= n_kv_heads_)
    throw Error("KV cache: index [" + std::to_string(layer) + "][" + std::to_string(which) +
                "][" + std::to_string(position) + "][" + std::to_string(kv_head) +
                "] out of range");
  return moec_kv_offset(layer, which, position, kv_head, max_seq_len_, n_kv_heads_, head_dim_);
}

void KvCache::advance(std::int64_t n) {
  if (n < 0 || filled_ + n > max_seq_len_)
    throw Error("KV cache: " + std::to_string(filled_) + " + " + std::to_string(n) +
                " positions exceed the compiled context of " + std::to_string(max_seq_len_));
  filled_ += n;
}

} // namespace moec
