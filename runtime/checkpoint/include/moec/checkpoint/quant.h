// moec/checkpoint/quant.h — the quantized weight formats: names, sizes, bits per weight.
//
// A weight W[..., N, K] (K: the reduction axis, the input of y = x Wᵀ) is stored as a data
// array and a separate scale array, both in the weights arena at their own offsets:
//
//   q8      data int8 [..., N, K] row-major; scale f16 [..., N, K/32].
//           s = f16(f32(amax(group)) / 127.0f); q = clamp(rne(f32(w) / f32(s)), -127, 127)
//           (s == 0: q = 0); w ≈ q * s. 8.5 bits per weight.
//   q4      data uint8 [..., N, K/2]: in row n, group g (32 elements) is bytes [16g, 16g + 16);
//           byte j holds element 32g + j in its LOW nibble and 32g + 16 + j in its HIGH one.
//           s = f16(f32(m) / -8.0f), m the group's first element of largest |w| (a signed
//           scale: m is code -8, the whole [-8, 7] range is used; s == -0 for a zero group);
//           nibble = clamp(rne(f32(w) / f32(s)), -8, 7) + 8 (0 when s == 0);
//           w ≈ (nibble - 8) * s. 4.5 bits per weight. (Weights file version 1 had
//           s = f16(amax / 7).)
//   f8e4m3  data F8_E4M3FN [..., N, K], the bytes of a Hub FP8 checkpoint as they are;
//           scale f32 [..., N, 1] (per output row; a per-tensor scale is repeated for every
//           row); w ≈ f8_to_f32(q) * s. One group per row (group size K): 8 + 32/K bits.
//
// rne: round half to even. Groups run along K; K % 32 == 0 is required for q8 and q4 (a
// tensor whose K is not a multiple of 32 stays unquantized). Which tensors are quantized is
// the compiler's choice (expert w1/w2/w3 and attention wq/wk/wv/wo); the embedding, lm_head,
// norms and router keep the checkpoint's dtype.
#pragma once

#include "moec/checkpoint/dtype.h"

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace moec {

enum class QuantFormat { None, Q8, Q4, F8E4M3 };

/// Elements per scale of q8 and q4.
constexpr std::int64_t kQuantGroupSize = 32;

/// "q8", "q4", "f8e4m3" ("none" for None): the manifest's and --quantize's spelling.
const char *quant_format_name(QuantFormat f);
/// Parses "q8", "q4", "f8e4m3"; nullopt otherwise (also for "none").
std::optional<QuantFormat> parse_quant_format(std::string_view s);

/// Element type of the data array: I8 (q8), U8 (q4, two elements per byte), F8E4M3.
DType quant_data_dtype(QuantFormat f);
/// Element type of the scale array: F16 (q8, q4), F32 (f8e4m3).
DType quant_scale_dtype(QuantFormat f);
/// Elements per scale along K: 32, or K for f8e4m3.
std::int64_t quant_group_size(QuantFormat f, std::int64_t k);

/// Bytes of the data and scale arrays of one tensor of logical `shape` [..., N, K].
struct QuantBytes {
  std::uint64_t data = 0;
  std::uint64_t scale = 0;
};
/// nullopt when `f` cannot hold `shape` (rank < 2, K not a multiple of the group size for q8
/// and q4, K == 0) or the byte counts overflow 64 bits.
std::optional<QuantBytes> quant_bytes(QuantFormat f, const std::vector<std::int64_t> &shape);
/// Why `f` cannot hold `shape` ("K = 100 is not a multiple of 32"), or "" when it can.
const char *quant_shape_problem(QuantFormat f, const std::vector<std::int64_t> &shape);

/// Bits per weight including the scales: 8.5 (q8), 4.5 (q4), 8 + 32/K (f8e4m3).
double bits_per_weight(QuantFormat f, std::int64_t k);

} // namespace moec
