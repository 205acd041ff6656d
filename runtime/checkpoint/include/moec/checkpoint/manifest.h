// moec/checkpoint/manifest.h — the compiled model's description (schema in moec/abi.h).
//
// One struct, one writer (mixtral-compile embeds its text in the generated object) and one
// reader (the runtime parses it at start-up), with one validation: magic, ABI version, every
// field's type and range, the config (as config.json's own checks), tensor placement inside
// the arena, the KV-cache shape and size.
#pragma once

#include "moec/checkpoint/config.h"
#include "moec/checkpoint/dtype.h"
#include "moec/checkpoint/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moec::checkpoint {

/// One tensor of the weights arena.
struct WeightTensor {
  std::string name;                 // e.g. "layers.0.moe.w1"
  DType dtype = DType::BF16;        // arena dtype; each source must have it on disk
  std::vector<std::int64_t> shape;  // row-major; [n, ...source shape] when stacked
  std::uint64_t offset = 0;         // bytes from the arena start, multiple of the alignment
  std::uint64_t nbytes = 0;         // product(shape) * dtype_size(dtype)
  std::vector<std::string> sources; // checkpoint tensor names
  bool stacked = false;             // sources are slices [i] of axis 0 (experts), even when n == 1
};

/// The batched step's paged KV pool (moec_step; present when the object exports it).
struct StepInfo {
  std::int64_t kv_block_size = 0;      // B: positions per block, >= 1
  std::int64_t max_blocks_per_seq = 0; // ceil(max_seq_len / B): the row length of block_tables
};

struct Manifest {
  int abi_version = 0;
  std::string target;                  // "cpu" | "nvptx"
  std::int64_t max_seq_len = 0;        // S: compiled context length, <= 2^31 - 1
  ModelConfig config;                  // config.weight_dtype: the arena's dtype
  std::uint64_t weights_bytes = 0;     // arena size
  std::uint64_t weights_alignment = 0; // MOEC_WEIGHT_ALIGNMENT
  std::vector<WeightTensor> tensors;
  std::uint64_t kv_bytes = 0;          // product(kv_shape) * 4
  std::vector<std::int64_t> kv_shape;  // [L, 2, S, KVH, HD], f32
  std::optional<StepInfo> step;        // "step": the object exports moec_step
  std::optional<std::string> model_dir; // checkpoint directory baked in at compile time
};

/// Parses and validates; messages "manifest: <problem>".
Result<Manifest> parse_manifest(std::string_view json_text);
/// The JSON text of `m` (abi_version and magic from moec/abi.h). model_dir must be UTF-8.
std::string write_manifest(const Manifest &m);

} // namespace moec::checkpoint
