// moec/checkpoint/manifest.h — the compiled model's description (schema in moec/abi.h).
//
// One struct, one writer (mixtral-compile embeds its text in the generated object) and one
// reader (the runtime parses it at start-up), with one validation: magic, ABI version, every
// field's type and range, the config (as config.json's own checks), tensor placement inside
// the arena, the KV-cache shape and size, quantized tensors' formats and scale arrays, and
// the packed weights file the binary reads (moec/checkpoint/weights_file.h).
#pragma once

#include "moec/checkpoint/config.h"
#include "moec/checkpoint/dtype.h"
#include "moec/checkpoint/quant.h"
#include "moec/checkpoint/result.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moec::checkpoint {

/// The scale array of a quantized tensor (moec/checkpoint/quant.h).
struct QuantScale {
  DType dtype = DType::F16;  // f16 (q8, q4) | f32 (f8e4m3)
  std::uint64_t offset = 0;  // bytes from the arena start, multiple of the alignment
  std::uint64_t nbytes = 0;  // quant_bytes(quant, shape)->scale
};

/// One tensor of the weights arena.
struct WeightTensor {
  std::string name;                 // e.g. "layers.0.moe.w1"
  DType dtype = DType::BF16;        // unquantized: arena dtype, each source has it on disk;
                                    // quantized: the data array's element (quant_data_dtype)
  QuantFormat quant = QuantFormat::None; // manifest "dtype" "q8" | "q4" | "f8e4m3"
  std::vector<std::int64_t> shape;  // row-major logical elements; [n, ...source shape] when stacked
  std::uint64_t offset = 0;         // bytes from the arena start, multiple of the alignment
  std::uint64_t nbytes = 0;         // unquantized: product(shape) * dtype_size(dtype);
                                    // quantized: the data array's bytes (quant_bytes)
  std::int64_t group_size = 0;      // quantized: 32 (q8, q4) or K (f8e4m3); else 0
  QuantScale scale;                 // quantized only
  std::vector<std::string> sources; // checkpoint tensor names
  std::vector<std::string> scale_sources; // f8e4m3 from an FP8 checkpoint: its weight_scale
                                          // tensors, one per source; else empty
  bool stacked = false;             // sources are slices [i] of axis 0 (experts), even when n == 1
  // Panel order (manifest "panels": [cols, lanes]; 0: row-major): an unquantized [..., N, K]
  // stored per panel of `panel_cols` rows as the packed GEMM's microkernel reads it. Panel p,
  // lane l < lanes, step j < K / lanes holds the panel's rows' W[p * cols + r, l + lanes * j]
  // for r < cols, contiguous: element offset ((p * lanes + l) * (K / lanes) + j) * cols + r.
  // The compiler asks for it on CPU targets: stored so in a packed file (--pack), else
  // permuted by the loader as it copies the checkpoint into the arena (weights.cpp).
  // q8 (f32 activations; weights file version 4): the int8 codes in that order (one byte
  // per element), and the scales per panel and group: scale g of row p * cols + r at
  // element (p * (K / 32) + g) * cols + r. Only in a packed file.
  std::int64_t panel_cols = 0, panel_lanes = 0;

  bool quantized() const { return quant != QuantFormat::None; }
  bool panels() const { return panel_cols > 0; }
};

/// The packed weights file the binary maps instead of reading the checkpoint
/// (moec/checkpoint/weights_file.h).
struct WeightsFile {
  std::string name;        // a plain file name, looked up beside the binary
  std::string fingerprint; // 32 lower-case hex digits, also in the file's header
  std::uint64_t bytes = 0; // the whole file: header page + arena, page-padded
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
  std::optional<WeightsFile> weights_file; // set: the arena is this file (zero-copy); required
                                           // when any tensor is quantized

  bool any_quantized() const;
};

/// Parses and validates; messages "manifest: <problem>".
Result<Manifest> parse_manifest(std::string_view json_text);
/// The JSON text of `m` (abi_version and magic from moec/abi.h). model_dir must be UTF-8.
std::string write_manifest(const Manifest &m);

} // namespace moec::checkpoint
