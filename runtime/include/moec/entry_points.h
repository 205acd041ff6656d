// moec/entry_points.h — the generated object's exported functions, as the runtime holds them.
//
// run_main binds them to the object's symbols (moec_manifest, moec_prefill, moec_decode,
// moec_step; signatures in moec/abi.h); tests bind them to fakes. A Backend (moec/backend.h)
// calls them with pointers into its own memory: host memory for the cpu target, device memory
// for nvptx. Kept apart from run.h so that the backends do not depend on the run loop.
#pragma once

#include <cstdint>

namespace moec {

/// The generated object's exports (signatures from moec/abi.h).
struct EntryPoints {
  const char *manifest;
  void (*prefill)(void *weights, void *kv, const std::int32_t *tokens, std::int64_t n_tokens,
                  std::int64_t pos, float *logits);
  void (*decode)(void *weights, void *kv, const std::int32_t *token, std::int64_t pos,
                 float *logits);
  /// The batched step over the paged KV pool (abi.h, ABI 2); null when the object does not
  /// export it (test fakes) — then the manifest has no "step" section either.
  void (*step)(void *weights, void *kv_pool, std::int64_t n_blocks, const std::int32_t *tokens,
               const std::int32_t *positions, const std::int32_t *block_tables,
               std::int64_t n_rows, const std::int32_t *logit_rows, std::int64_t n_logits,
               float *logits) = nullptr;
};

} // namespace moec
