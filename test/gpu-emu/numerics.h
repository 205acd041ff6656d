// numerics.h — PTX's value types and number formats for the PTX interpreter: type widths,
// sign extension, f32/f64 bit casts, bf16/f16 rounding (to nearest even) and the FPU rounding
// modes that .rn/.rz/.rm/.rp name. Written from NVIDIA's PTX ISA manual.
#pragma once

#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>

namespace ptxemu {

// ---------------------------------------------------------------------------------------
// Types, values and number formats
// ---------------------------------------------------------------------------------------

enum class Ty : std::uint8_t {
  None, B8, B16, B32, B64, U8, U16, U32, U64, S8, S16, S32, S64,
  F16, F16x2, BF16, BF16x2, F32, F64, Pred
};

inline Ty parse_type(const std::string &s) {
  static const std::unordered_map<std::string, Ty> m = {
      {"b8", Ty::B8},     {"b16", Ty::B16},   {"b32", Ty::B32},       {"b64", Ty::B64},
      {"u8", Ty::U8},     {"u16", Ty::U16},   {"u32", Ty::U32},       {"u64", Ty::U64},
      {"s8", Ty::S8},     {"s16", Ty::S16},   {"s32", Ty::S32},       {"s64", Ty::S64},
      {"f16", Ty::F16},   {"f16x2", Ty::F16x2}, {"bf16", Ty::BF16},   {"bf16x2", Ty::BF16x2},
      {"f32", Ty::F32},   {"f64", Ty::F64},   {"pred", Ty::Pred}};
  auto it = m.find(s);
  return it == m.end() ? Ty::None : it->second;
}

inline int bits_of(Ty t) {
  switch (t) {
  case Ty::B8: case Ty::U8: case Ty::S8: return 8;
  case Ty::B16: case Ty::U16: case Ty::S16: case Ty::F16: case Ty::BF16: return 16;
  case Ty::B32: case Ty::U32: case Ty::S32: case Ty::F32: case Ty::F16x2: case Ty::BF16x2: return 32;
  case Ty::B64: case Ty::U64: case Ty::S64: case Ty::F64: return 64;
  case Ty::Pred: return 1;
  default: return 64;
  }
}
inline bool is_signed(Ty t) { return t == Ty::S8 || t == Ty::S16 || t == Ty::S32 || t == Ty::S64; }
inline bool is_float(Ty t) {
  return t == Ty::F16 || t == Ty::BF16 || t == Ty::F32 || t == Ty::F64 || t == Ty::F16x2 ||
         t == Ty::BF16x2;
}

inline std::uint64_t mask_bits(std::uint64_t v, int bits) {
  return bits >= 64 ? v : v & ((std::uint64_t(1) << bits) - 1);
}
inline std::int64_t sext(std::uint64_t v, int bits) {
  if (bits >= 64) return std::int64_t(v);
  std::uint64_t m = std::uint64_t(1) << (bits - 1);
  v = mask_bits(v, bits);
  return std::int64_t((v ^ m) - m);
}

inline float f32(std::uint64_t bits) {
  std::uint32_t b = std::uint32_t(bits);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline std::uint64_t bits32(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline double f64(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
inline std::uint64_t bits64(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
inline float bf16_to_f32(std::uint16_t h) { return f32(std::uint64_t(h) << 16); }
// Round to nearest, ties to even; NaN stays a (quiet) NaN.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t b = std::uint32_t(bits32(f));
  if (std::isnan(f)) return std::uint16_t((b >> 16) | 0x40);
  std::uint32_t lsb = (b >> 16) & 1;
  return std::uint16_t((b + 0x7fff + lsb) >> 16);
}
inline float f16_to_f32(std::uint16_t h) {
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return float(x);
}
inline std::uint16_t f32_to_f16(float f) {
  _Float16 x = _Float16(f); // round to nearest even
  std::uint16_t h;
  std::memcpy(&h, &x, 2);
  return h;
}
inline float ftz(float f) { return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0f, f) : f; }

// Runs `f` with the FPU rounding mode that a PTX rounding modifier names.
enum class Rnd : std::uint8_t { None, RN, RZ, RM, RP, RNI, RZI, RMI, RPI };
template <class F> inline auto with_rounding(Rnd r, F f) {
  int mode = FE_TONEAREST;
  if (r == Rnd::RZ || r == Rnd::RZI) mode = FE_TOWARDZERO;
  if (r == Rnd::RM || r == Rnd::RMI) mode = FE_DOWNWARD;
  if (r == Rnd::RP || r == Rnd::RPI) mode = FE_UPWARD;
  if (mode == FE_TONEAREST) return f();
  int old = std::fegetround();
  std::fesetround(mode);
  auto v = f();
  std::fesetround(old);
  return v;
}
inline double round_int(double x, Rnd r) {
  switch (r) {
  case Rnd::RZI: return std::trunc(x);
  case Rnd::RMI: return std::floor(x);
  case Rnd::RPI: return std::ceil(x);
  default: return std::nearbyint(x); // RNI: ties to even in the default FP environment
  }
}
} // namespace ptxemu
