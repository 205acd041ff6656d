// moec/checkpoint/fp8.h — FP8 checkpoints as the Hub publishes them: config.json's
// "quantization_config".
//
// Two layouts carry F8_E4M3 linear weights with a "<name>.weight_scale" beside each
// "<name>.weight" (a per-tensor scalar, [] or [1], or per output channel, [N] or [N, 1]):
//   * "quant_method": "fp8" (vLLM / AutoFP8): "activation_scheme" "dynamic" | "static",
//     "ignored_layers"; "weight_block_size" (DeepSeek-style block scales) is refused;
//   * "quant_method": "compressed-tensors" (llm-compressor), "format" "float-quantized" or
//     "naive-quantized": every config group's "weights" must be {num_bits 8, type float,
//     strategy tensor | channel, symmetric}.
// The weights are used exactly (w = f8_to_f32(q) * s, quant.h's f8e4m3). Activation
// quantization ("input_scale" tensors, "input_activations", "activation_scheme") and a
// "kv_cache_scheme" are NOT applied: activations and the KV cache stay f32, which is more
// precise than what the publisher calibrated for; `note` says so. Anything else (int or 4-bit
// weights, group or block scales, zero points, another quant_method) is refused with one line.
#pragma once

#include "moec/checkpoint/result.h"

#include <optional>
#include <string>
#include <string_view>

namespace moec::checkpoint {

struct Fp8Config {
  std::string method;              // "fp8" | "compressed-tensors"
  bool static_activations = false; // input_scale tensors are expected (and ignored)
  std::string note;                // what is not applied, for --inspect ("" when nothing)
};

/// nullopt when config.json (`text`, named `name` in messages) has no "quantization_config".
Result<std::optional<Fp8Config>> parse_quantization_config(std::string_view text,
                                                           const std::string &name);
/// read_small_file + parse_quantization_config.
Result<std::optional<Fp8Config>> load_quantization_config(const std::string &path);

/// "X.weight" -> "X.weight_scale" (and "X.input_scale"): the tensors beside an FP8 weight.
std::string fp8_scale_name(const std::string &weight);
std::string fp8_input_scale_name(const std::string &weight);

} // namespace moec::checkpoint
