// moec/checkpoint/quantize.h — encoders of the formats in quant.h, and element conversions.
//
// Plain loops over rows: the packer calls them on slices of a tensor from several threads.
// Every function is exact to the rules in quant.h (f32 arithmetic, round half to even), so an
// independent implementation (test/reference/quant_ref.py) gives the same bytes.
#pragma once

#include "moec/checkpoint/dtype.h"

#include <cstdint>

namespace moec::checkpoint {

/// IEEE binary16 <-> f32 (round to nearest even).
float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);
/// bfloat16 -> f32 (exact).
float bf16_to_f32(std::uint16_t b);
/// OCP FP8 E4M3FN -> f32 (exact; 0x7f / 0xff are NaN, there is no infinity).
float f8e4m3_to_f32(std::uint8_t v);

/// Widens `n` elements of `t` (F32, BF16, F16, F8E4M3) at `src` to f32.
void widen_to_f32(const unsigned char *src, DType t, std::int64_t n, float *out);

/// q8: `rows` rows of K (a multiple of 32) values -> int8 data [rows, K] and f16 scales
/// [rows, K/32]. Returns the index of the first scale that overflows f16 (amax / 127 above
/// 65504), or -1; the values must be finite.
std::int64_t quantize_q8(const float *w, std::int64_t rows, std::int64_t k, std::int8_t *q,
                         std::uint16_t *scales);
/// q4: the same into packed nibbles [rows, K/2] (quant.h's layout) and f16 scales.
std::int64_t quantize_q4(const float *w, std::int64_t rows, std::int64_t k, std::uint8_t *q,
                         std::uint16_t *scales);

} // namespace moec::checkpoint
