// harness-common.h — what the numeric kernel harnesses (gemm-, kernels-, quant-kernels-
// harness.cpp) share: a seeded generator, so each harness's inputs are reproducible without
// <random>'s implementation-defined distributions, and bf16 conversion with round-to-nearest-
// even, written independently of the compiler's widening code.
#ifndef MOEC_TEST_CODEGEN_HARNESS_COMMON_H
#define MOEC_TEST_CODEGEN_HARNESS_COMMON_H

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace harness {

/// A 64-bit linear congruential generator (Knuth's MMIX constants).
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  /// Uniform in [-1, 1).
  float next() {
    step();
    return static_cast<float>((state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
  }
  /// Uniform over 0..255.
  uint8_t byte() {
    step();
    return static_cast<uint8_t>(state >> 56);
  }
  /// n values of next() * scale.
  std::vector<float> fill(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float &x : v)
      x = next() * scale;
    return v;
  }

private:
  void step() { state = state * 6364136223846793005ull + 1442695040888963407ull; }
};

/// f32 -> bf16, rounding to nearest even (inputs here are finite).
inline uint16_t toBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline float fromBF16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

} // namespace harness

#endif // MOEC_TEST_CODEGEN_HARNESS_COMMON_H
