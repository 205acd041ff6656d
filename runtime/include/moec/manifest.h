// moec/manifest.h — the compiled model's description, parsed from `moec_manifest`.
//
// The generated object embeds a JSON manifest (schema in moec/abi.h). parse_manifest turns it
// into plain structs and validates it completely — magic, ABI version, every field's type and
// range, tensor placement inside the arena — so the rest of the runtime can trust it.
#pragma once

#include "moec/dtype.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moec {

/// The model hyper-parameters (Hugging Face config.json names).
struct ModelConfig {
  std::int64_t vocab_size = 0;              // V
  std::int64_t hidden_size = 0;             // D
  std::int64_t intermediate_size = 0;       // F, per expert
  std::int64_t num_hidden_layers = 0;       // L
  std::int64_t num_attention_heads = 0;     // H
  std::int64_t num_key_value_heads = 0;     // KVH, divides H
  std::int64_t head_dim = 0;                // HD
  std::int64_t num_local_experts = 0;       // E
  std::int64_t num_experts_per_tok = 0;     // k <= E
  double rms_norm_eps = 0;                  // > 0
  double rope_theta = 0;                    // > 0
  std::int64_t max_position_embeddings = 0; // trained context
  std::optional<std::int64_t> sliding_window; // null in the JSON = none
  std::int32_t bos_token_id = 1;            // in [0, V)
  std::int32_t eos_token_id = 2;            // in [0, V)
  DType weight_dtype = DType::BF16;         // f32 | bf16 | f16
};

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

struct Manifest {
  int abi_version = 0;
  std::string target;                  // "cpu"
  std::int64_t max_seq_len = 0;        // S: compiled context length
  ModelConfig config;
  std::uint64_t weights_bytes = 0;     // arena size
  std::uint64_t weights_alignment = 0; // MOEC_WEIGHT_ALIGNMENT
  std::vector<WeightTensor> tensors;
  std::uint64_t kv_bytes = 0;          // product(kv_shape) * 4
  std::vector<std::int64_t> kv_shape;  // [L, 2, S, KVH, HD], f32
  std::optional<std::string> model_dir; // checkpoint directory baked in at compile time
};

/// Parses and validates a manifest; throws moec::Error "manifest: <problem>".
Manifest parse_manifest(std::string_view json_text);

} // namespace moec
