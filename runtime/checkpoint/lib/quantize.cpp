// quantize.cpp — the q8/q4 encoders and element conversions of moec/checkpoint/quantize.h.
#include "moec/checkpoint/quantize.h"

#include "moec/checkpoint/quant.h"

#include <cmath>
#include <cstring>

namespace moec::checkpoint {

float f16_to_f32(std::uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

std::uint16_t f32_to_f16(float f) {
  _Float16 v = static_cast<_Float16>(f); // round to nearest even
  std::uint16_t h;
  std::memcpy(&h, &v, 2);
  return h;
}

float bf16_to_f32(std::uint16_t b) {
  std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f8e4m3_to_f32(std::uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 15, man = v & 7;
  float mag;
  if (exp == 15 && man == 7)
    return NAN;
  if (exp == 0)
    mag = std::ldexp(static_cast<float>(man), -9); // subnormal: man/8 * 2^-6
  else
    mag = std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return sign ? -mag : mag;
}

void widen_to_f32(const unsigned char *src, DType t, std::int64_t n, float *out) {
  switch (t) {
  case DType::F32:
    std::memcpy(out, src, static_cast<std::size_t>(n) * 4);
    return;
  case DType::BF16:
  case DType::F16:
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
    return;
  case DType::F8E4M3: {
    static float table[256];
    static bool ready = [] {
      for (int v = 0; v < 256; ++v)
        table[v] = f8e4m3_to_f32(static_cast<std::uint8_t>(v));
      return true;
    }();
    (void)ready;
    for (std::int64_t i = 0; i < n; ++i)
      out[i] = table[src[i]];
    return;
  }
  default:
    for (std::int64_t i = 0; i < n; ++i)
      out[i] = NAN; // not a weight type: the packer refuses these before converting
  }
}

namespace {
/// f16(amax / qmax) for one group, as the f16 bits and its f32 value.
std::uint16_t group_scale(const float *w, float qmax, float &s) {
  float amax = 0.0f;
  for (std::int64_t i = 0; i < kQuantGroupSize; ++i)
    amax = std::fmax(amax, std::fabs(w[i]));
  const std::uint16_t bits = f32_to_f16(amax / qmax);
  s = f16_to_f32(bits);
  return bits;
}

/// q4's signed scale: f16(m / -8) where m is the group's first element of largest |w|, so
/// that m itself is code -8 and the whole [-8, 7] range is used (llama.cpp's q4_0 choice):
/// steps of amax/8 instead of amax/7.
std::uint16_t group_scale_signed(const float *w, float &s) {
  float amax = 0.0f, m = 0.0f;
  for (std::int64_t i = 0; i < kQuantGroupSize; ++i)
    if (std::fabs(w[i]) > amax) {
      amax = std::fabs(w[i]);
      m = w[i];
    }
  const std::uint16_t bits = f32_to_f16(m / -8.0f);
  s = f16_to_f32(bits);
  return bits;
}

/// rne(w / s) clamped to [lo, hi]; 0 when s == 0.
int quantize_one(float w, float s, int lo, int hi) {
  if (s == 0.0f)
    return 0;
  const float r = std::nearbyint(w / s); // the default rounding mode: half to even
  return r < lo ? lo : r > hi ? hi : static_cast<int>(r);
}
} // namespace

std::int64_t quantize_q8(const float *w, std::int64_t rows, std::int64_t k, std::int8_t *q,
                         std::uint16_t *scales) {
  const std::int64_t groups = k / kQuantGroupSize;
  for (std::int64_t g = 0; g < rows * groups; ++g) {
    const float *x = w + g * kQuantGroupSize;
    float s;
    scales[g] = group_scale(x, 127.0f, s);
    if (std::isinf(s))
      return g;
    for (std::int64_t i = 0; i < kQuantGroupSize; ++i)
      q[g * kQuantGroupSize + i] = static_cast<std::int8_t>(quantize_one(x[i], s, -127, 127));
  }
  return -1;
}

std::int64_t quantize_q4(const float *w, std::int64_t rows, std::int64_t k, std::uint8_t *q,
                         std::uint16_t *scales) {
  const std::int64_t groups = k / kQuantGroupSize, half = kQuantGroupSize / 2;
  for (std::int64_t g = 0; g < rows * groups; ++g) {
    const float *x = w + g * kQuantGroupSize;
    float s;
    scales[g] = group_scale_signed(x, s);
    if (std::isinf(s))
      return g;
    for (std::int64_t j = 0; j < half; ++j) {
      const int lo = quantize_one(x[j], s, -8, 7) + 8, hi = quantize_one(x[half + j], s, -8, 7) + 8;
      q[g * half + j] = static_cast<std::uint8_t>(lo | hi << 4);
    }
  }
  return -1;
}

} // namespace moec::checkpoint
