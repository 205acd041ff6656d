// Checks the quantized-weight kernels of quant-kernels.mlir (compiled by moe-cpu-pipeline)
// against plain C++ loops in double precision. The dequantisation here is written from the
// format definitions (#moe.quant in MoeAttrs.td, moec/checkpoint/quant.h), independently of
// the compiler: q8 w = q * s; q4 byte 16g + j of a row holds element 32g + j (low nibble)
// and 32g + 16 + j (high nibble), w = (nibble - 8) * s; f8e4m3 decoded field by field with
// ldexp. Every test runs with T = 1, 5 and 17 tokens (17: the packed GEMM where N allows); prints "PASS <test>" lines, or
// "FAIL <test>: ..." with the first mismatch, and "ALL PASSED" when nothing failed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "harness-common.h"

extern "C" {
void linear_q8(const float *x, const int8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q4(const float *x, const uint8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q4_k256(const float *x, const uint8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q8_wide(const float *x, const int8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q4_wide(const float *x, const uint8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q8_long(const float *x, const int8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q4_long(const float *x, const uint8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q8_panels(const float *x, const int8_t *d, const _Float16 *s, int64_t n, float *out);
void linear_q8_panels_long(const float *x, const int8_t *d, const _Float16 *s, int64_t n,
                           float *out);
void linear_f8(const float *x, const uint8_t *d, const float *s, int64_t n, float *out);
void grouped_q4(const float *rows, const uint8_t *d, const _Float16 *s, const int32_t *offsets,
                int64_t n, float *out);
void sparse_block_q8(const float *x, const uint16_t *gate, const int8_t *d1, const int8_t *d3,
                     const int8_t *d2, const _Float16 *s1, const _Float16 *s3,
                     const _Float16 *s2, int64_t n, float *out);
void sparse_block_decode_q4(const float *x, const uint16_t *gate, const uint8_t *d1,
                            const uint8_t *d3, const uint8_t *d2, const _Float16 *s1,
                            const _Float16 *s3, const _Float16 *s2, float *out);
}

namespace {

using harness::Rng;

int failures = 0;

/// argv[1]: which kernels run with int8 activations: 0 none (float), 1 q8 and q4, 2 q4 only
/// (moe-cpu-pipeline's default). Every row of those formats then sees x as the kernel
/// quantizes it: per group of 32, s = amax / 127 and q = round-half-even(x * 127 / amax),
/// in f32, as the pass's description states.
bool int8Q8 = false, int8Q4 = false;
/// x[0..k) as the int8 path sees it (dequantised back to double), or as it is.
std::vector<double> activationRow(const float *x, int64_t k, bool quantized) {
  std::vector<double> v(x, x + k);
  if (!quantized)
    return v;
  for (int64_t g = 0; g < k / 32; ++g) {
    float amax = 0;
    for (int i = 0; i < 32; ++i)
      amax = std::max(amax, std::fabs(x[32 * g + i]));
    float inv = amax == 0 ? 0.0f : 127.0f / amax, s = amax / 127.0f;
    for (int i = 0; i < 32; ++i)
      v[32 * g + i] = std::nearbyint(x[32 * g + i] * inv) * double(s);
  }
  return v;
}

/// A quantized [rows, K] matrix (possibly several stacked) and its dequantised values.
struct QTensor {
  std::vector<uint8_t> data;    // q8: K bytes per row; q4: K/2; f8: K
  std::vector<_Float16> scale;  // q8, q4: K/32 per row
  std::vector<float> scaleF32;  // f8: 1 per row
  std::vector<double> values;   // [rows, K]
};

/// Scales chosen so that |w| stays around 1/sqrt(K): outputs of order 1.
double scaleFor(Rng &rng, int64_t k, double maxQ) {
  return (0.5 + 0.5 * std::fabs(rng.next())) / (maxQ * std::sqrt(double(k)));
}

QTensor makeQ8(Rng &rng, int64_t rows, int64_t k) {
  QTensor t;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < k / 32; ++g)
      t.scale.push_back(static_cast<_Float16>(scaleFor(rng, k, 127)));
    for (int64_t i = 0; i < k; ++i) {
      int8_t q = static_cast<int8_t>(std::max<int>(-127, static_cast<int8_t>(rng.byte())));
      t.data.push_back(static_cast<uint8_t>(q));
      t.values.push_back(q * static_cast<double>(t.scale[r * (k / 32) + i / 32]));
    }
  }
  return t;
}

QTensor makeQ4(Rng &rng, int64_t rows, int64_t k) {
  QTensor t;
  t.values.resize(rows * k);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < k / 32; ++g) // signed, as the packer writes them (m / -8)
      t.scale.push_back(static_cast<_Float16>((g % 2 ? -1 : 1) * scaleFor(rng, k, 8)));
    for (int64_t g = 0; g < k / 32; ++g)
      for (int64_t j = 0; j < 16; ++j) {
        uint8_t b = rng.byte();
        t.data.push_back(b);
        double s = static_cast<double>(t.scale[r * (k / 32) + g]);
        t.values[r * k + 32 * g + j] = ((b & 15) - 8) * s;
        t.values[r * k + 32 * g + 16 + j] = ((b >> 4) - 8) * s;
      }
  }
  return t;
}

/// F8_E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, S.1111.111 NaN.
double f8e4m3(uint8_t b) {
  int sign = b >> 7, exp = (b >> 3) & 15, mant = b & 7;
  double mag = exp == 0 ? std::ldexp(mant / 8.0, -6) : std::ldexp(1.0 + mant / 8.0, exp - 7);
  return sign ? -mag : mag;
}

QTensor makeF8(Rng &rng, int64_t rows, int64_t k) {
  QTensor t;
  for (int64_t r = 0; r < rows; ++r) {
    t.scaleF32.push_back(static_cast<float>(scaleFor(rng, k, 16)));
    for (int64_t i = 0; i < k; ++i) {
      uint8_t b = rng.byte();
      if ((b & 0x7f) == 0x7f) // not NaN
        b ^= 1;
      t.data.push_back(b);
      t.values.push_back(f8e4m3(b) * t.scaleF32[r]);
    }
  }
  return t;
}

constexpr double kTolerance = 4e-6; // relative to max(1, |want|), as kernels-harness.cpp

bool close(const std::string &name, const float *got, const std::vector<double> &want,
           double tolerance = kTolerance) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double scale = std::max(1.0, std::fabs(want[i]));
    double err = std::fabs(got[i] - want[i]) / scale;
    worst = std::max(worst, err);
    if (!(err <= tolerance)) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", name.c_str(), i, got[i],
                  want[i]);
      ++failures;
      return false;
    }
  }
  std::printf("PASS %s (worst relative error %.2g)\n", name.c_str(), worst);
  return true;
}

std::string label(const char *what, int64_t t) {
  return std::string(what) + " T=" + std::to_string(t);
}

/// y[t, n] = sum_k x[t, k] w[n, k]; `int8` when the kernel may quantize rows.
std::vector<double> matmulT(const std::vector<float> &x, const double *w, int64_t rows,
                            int64_t n, int64_t k, bool int8) {
  std::vector<double> y(rows * n, 0.0);
  for (int64_t t = 0; t < rows; ++t) {
    std::vector<double> xr = activationRow(&x[t * k], k, int8);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < k; ++i)
        y[t * n + j] += xr[i] * w[j * k + i];
  }
  return y;
}

/// Row invariance: each row of a T-row call equals, bit for bit, that row computed alone
/// (T = 1), so a row's result depends neither on the batch nor on the other rows.
template <typename Fn>
void checkRowsInvariant(const std::string &name, const std::vector<float> &x, int64_t k,
                        int64_t n, int64_t T, const float *out, Fn call) {
  std::vector<float> alone(n);
  for (int64_t r = 0; r < T; ++r) {
    call(&x[r * k], int64_t{1}, alone.data());
    if (std::memcmp(alone.data(), out + r * n, n * sizeof(float)) != 0) {
      std::printf("FAIL %s: row %lld differs from the row computed alone\n", name.c_str(),
                  static_cast<long long>(r));
      ++failures;
      return;
    }
  }
  std::printf("PASS %s\n", name.c_str());
}

void testLinear(int64_t T) {
  Rng rng(100 + T);
  std::vector<float> x96 = rng.fill(32 * 96), x40 = rng.fill(32 * 40);
  std::vector<float> out(32 * 13);
  QTensor q8 = makeQ8(rng, 13, 96);
  linear_q8(x96.data(), reinterpret_cast<const int8_t *>(q8.data.data()), q8.scale.data(), T,
            out.data());
  std::vector<double> want = matmulT(x96, q8.values.data(), T, 13, 96, int8Q8);
  close(label("linear q8 (N=13, K=96)", T), out.data(), want);
  checkRowsInvariant(label("linear q8 rows invariant", T), x96, 96, 13, T, out.data(),
                     [&](const float *x, int64_t t, float *o) {
                       linear_q8(x, reinterpret_cast<const int8_t *>(q8.data.data()),
                                 q8.scale.data(), t, o);
                     });
  QTensor q4 = makeQ4(rng, 13, 96);
  linear_q4(x96.data(), q4.data.data(), q4.scale.data(), T, out.data());
  close(label("linear q4 (N=13, K=96)", T), out.data(), matmulT(x96, q4.values.data(), T, 13, 96, int8Q4));
  checkRowsInvariant(label("linear q4 rows invariant", T), x96, 96, 13, T, out.data(),
                     [&](const float *x, int64_t t, float *o) {
                       linear_q4(x, q4.data.data(), q4.scale.data(), t, o);
                     });
  QTensor f8 = makeF8(rng, 13, 40);
  linear_f8(x40.data(), f8.data.data(), f8.scaleF32.data(), T, out.data());
  close(label("linear f8e4m3 (N=13, K=40)", T), out.data(),
        matmulT(x40, f8.values.data(), T, 13, 40, false));
}

/// K = 256: the int8 kernel's pairs of groups (the path Mixtral's K take; K = 96's three
/// groups do not); T = 5 and 17 mix 4-row tiles with single rows, which row invariance
/// compares bit for bit with single-row calls.
void testLinearK256(int64_t T) {
  Rng rng(500 + T);
  std::vector<float> x = rng.fill(32 * 256), out(32 * 13);
  QTensor q4 = makeQ4(rng, 13, 256);
  auto call = [&](const float *xr, int64_t t, float *o) {
    linear_q4_k256(xr, q4.data.data(), q4.scale.data(), t, o);
  };
  call(x.data(), T, out.data());
  close(label("linear q4 (N=13, K=256)", T), out.data(), matmulT(x, q4.values.data(), T, 13, 256, int8Q4));
  checkRowsInvariant(label("linear q4 (K=256) rows invariant", T), x, 256, 13, T, out.data(), call);
}

/// N = 32: calls of 8 rows or more (T = 17) take the packed GEMM with panels dequantised
/// once per call; row invariance then compares its rows with the dequantising kernel's.
void testLinearWide(int64_t T) {
  Rng rng(400 + T);
  std::vector<float> x = rng.fill(32 * 96), out(32 * 32);
  QTensor q8 = makeQ8(rng, 32, 96), q4 = makeQ4(rng, 32, 96);
  auto q8Call = [&](const float *xr, int64_t t, float *o) {
    linear_q8_wide(xr, reinterpret_cast<const int8_t *>(q8.data.data()), q8.scale.data(), t, o);
  };
  auto q4Call = [&](const float *xr, int64_t t, float *o) {
    linear_q4_wide(xr, q4.data.data(), q4.scale.data(), t, o);
  };
  q8Call(x.data(), T, out.data());
  close(label("linear q8 (N=32, K=96)", T), out.data(), matmulT(x, q8.values.data(), T, 32, 96, int8Q8));
  checkRowsInvariant(label("linear q8 (N=32) rows invariant", T), x, 96, 32, T, out.data(), q8Call);
  q4Call(x.data(), T, out.data());
  close(label("linear q4 (N=32, K=96)", T), out.data(), matmulT(x, q4.values.data(), T, 32, 96, int8Q4));
  checkRowsInvariant(label("linear q4 (N=32) rows invariant", T), x, 96, 32, T, out.data(), q4Call);
}

/// N = 32, K = 544 (17 groups): the packed GEMM (T = 17) on a longer K, q4's panel
/// prefetches wrapping to the next panel; row invariance compares its rows with single-row
/// calls bit for bit.
void testLinearLong(int64_t T) {
  Rng rng(600 + T);
  std::vector<float> x = rng.fill(32 * 544), out(32 * 32);
  QTensor q8 = makeQ8(rng, 32, 544), q4 = makeQ4(rng, 32, 544);
  auto q8Call = [&](const float *xr, int64_t t, float *o) {
    linear_q8_long(xr, reinterpret_cast<const int8_t *>(q8.data.data()), q8.scale.data(), t, o);
  };
  auto q4Call = [&](const float *xr, int64_t t, float *o) {
    linear_q4_long(xr, q4.data.data(), q4.scale.data(), t, o);
  };
  q8Call(x.data(), T, out.data());
  close(label("linear q8 (N=32, K=544)", T), out.data(), matmulT(x, q8.values.data(), T, 32, 544, int8Q8));
  checkRowsInvariant(label("linear q8 (K=544) rows invariant", T), x, 544, 32, T, out.data(), q8Call);
  q4Call(x.data(), T, out.data());
  close(label("linear q4 (N=32, K=544)", T), out.data(), matmulT(x, q4.values.data(), T, 32, 544, int8Q4));
  checkRowsInvariant(label("linear q4 (K=544) rows invariant", T), x, 544, 32, T, out.data(), q4Call);
}

/// q8 `t` ([n, k], row-major) in panel order (#moe.panels<cols = 16, lanes = 8>, MoeAttrs.td):
/// codes [n / 16, k, 16] with [p, l * (k / 8) + j, r] = q[16 p + r, l + 8 j], scales
/// [n / 16, k / 32, 16] with [p, g, r] = s[16 p + r, g].
QTensor toPanels(const QTensor &t, int64_t n, int64_t k) {
  QTensor out;
  out.data.resize(t.data.size());
  out.scale.resize(t.scale.size());
  for (int64_t p = 0; p < n / 16; ++p)
    for (int64_t r = 0; r < 16; ++r) {
      int64_t row = 16 * p + r;
      for (int64_t kk = 0; kk < k; ++kk)
        out.data[(p * k + (kk % 8) * (k / 8) + kk / 8) * 16 + r] = t.data[row * k + kk];
      for (int64_t g = 0; g < k / 32; ++g)
        out.scale[(p * (k / 32) + g) * 16 + r] = t.scale[row * (k / 32) + g];
    }
  return out;
}

/// q8 in panel order (N = 32; K = 96 and 544): against the reference; rows of a T-row call
/// (T = 17: the GEMM) against the same rows alone (the panel GEMV), and, where argv[2] says
/// the build's panel shape is this one (vector-width=8, gemm-cols=16), every output against
/// the row-major q8 kernel's on the same weights, bit for bit: one order of operations for
/// every kernel and layout.
bool panelsExact = false;
void testLinearPanels(int64_t T) {
  Rng rng(700 + T);
  using Fn = void (*)(const float *, const int8_t *, const _Float16 *, int64_t, float *);
  struct Case { int64_t k; Fn panels, rowMajor; const char *name; };
  for (Case c : {Case{96, linear_q8_panels, linear_q8_wide, "K=96"},
                 Case{544, linear_q8_panels_long, linear_q8_long, "K=544"}}) {
    std::vector<float> x = rng.fill(32 * c.k), out(32 * 32), ref(32 * 32);
    QTensor q8 = makeQ8(rng, 32, c.k), p8 = toPanels(q8, 32, c.k);
    auto call = [&](const float *xr, int64_t t, float *o) {
      c.panels(xr, reinterpret_cast<const int8_t *>(p8.data.data()), p8.scale.data(), t, o);
    };
    call(x.data(), T, out.data());
    std::string name = std::string("linear q8 panels (N=32, ") + c.name + ")";
    close(label(name.c_str(), T), out.data(), matmulT(x, q8.values.data(), T, 32, c.k, false));
    checkRowsInvariant(label((name + " rows invariant").c_str(), T), x, c.k, 32, T, out.data(),
                       call);
    if (!panelsExact)
      continue;
    c.rowMajor(x.data(), reinterpret_cast<const int8_t *>(q8.data.data()), q8.scale.data(), T,
               ref.data());
    bool same = std::memcmp(out.data(), ref.data(), T * 32 * sizeof(float)) == 0;
    std::printf("%s %s\n", same ? "PASS" : "FAIL",
                label((name + " bits as row-major q8").c_str(), T).c_str());
    failures += !same;
  }
}

void testGrouped(int64_t T) {
  Rng rng(200 + T);
  int64_t R = 2 * T;
  std::vector<float> rows = rng.fill(64 * 64);
  QTensor w = makeQ4(rng, 5 * 13, 64);
  // Experts 0 and 3 empty; the rest split R unevenly.
  int32_t a = static_cast<int32_t>(R / 3), b = static_cast<int32_t>(R - R / 4);
  std::vector<int32_t> offsets = {0, 0, a, b, b, static_cast<int32_t>(R)};
  std::vector<float> out(64 * 13);
  grouped_q4(rows.data(), w.data.data(), w.scale.data(), offsets.data(), R, out.data());
  std::vector<double> want(R * 13, 0.0);
  for (int e = 0; e < 5; ++e)
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      std::vector<double> xr =
          activationRow(&rows[r * 64], 64, int8Q4);
      for (int64_t j = 0; j < 13; ++j)
        for (int64_t i = 0; i < 64; ++i)
          want[r * 13 + j] += xr[i] * w.values[(e * 13 + j) * 64 + i];
    }
  close(label("grouped_matmul q4 (empty experts, N=13, K=64)", R), out.data(), want);
}

float bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Mixtral's block: softmax over the top-2 router logits (ties to the lower id), then
/// sum_e g_e * w2_e(silu(w1_e x) * w3_e x). D = 32, F = 64, E = 4.
std::vector<double> refBlock(const std::vector<float> &x, const std::vector<uint16_t> &gate,
                             const QTensor &w1, const QTensor &w3, const QTensor &w2,
                             int64_t T) {
  const int D = 32, F = 64, E = 4;
  std::vector<double> y(T * D, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double logit[E];
    for (int e = 0; e < E; ++e) {
      logit[e] = 0;
      for (int i = 0; i < D; ++i)
        logit[e] += double(x[t * D + i]) * bf16(gate[e * D + i]);
    }
    int first = 0;
    for (int e = 1; e < E; ++e)
      if (logit[e] > logit[first])
        first = e;
    int second = first == 0 ? 1 : 0;
    for (int e = 0; e < E; ++e)
      if (e != first && logit[e] > logit[second])
        second = e;
    double p = 1.0 / (1.0 + std::exp(logit[second] - logit[first]));
    int chosen[2] = {first, second};
    double weight[2] = {p, 1.0 - p};
    for (int s = 0; s < 2; ++s) {
      int e = chosen[s];
      std::vector<double> h(F);
      for (int f = 0; f < F; ++f) {
        double g = 0, u = 0;
        for (int i = 0; i < D; ++i) {
          g += double(x[t * D + i]) * w1.values[(e * F + f) * D + i];
          u += double(x[t * D + i]) * w3.values[(e * F + f) * D + i];
        }
        h[f] = g / (1.0 + std::exp(-g)) * u;
      }
      for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (int f = 0; f < F; ++f)
          acc += float(h[f]) * w2.values[(e * D + d) * F + f];
        y[t * D + d] += weight[s] * acc;
      }
    }
  }
  return y;
}

void testSparseBlock(int64_t T) {
  Rng rng(300 + T);
  std::vector<float> x = rng.fill(32 * 32);
  std::vector<uint16_t> gate(4 * 32);
  for (uint16_t &g : gate) {
    float f = rng.next();
    uint32_t u;
    std::memcpy(&u, &f, 4);
    g = static_cast<uint16_t>(u >> 16);
  }
  QTensor w1 = makeQ8(rng, 4 * 64, 32), w3 = makeQ8(rng, 4 * 64, 32), w2 = makeQ8(rng, 4 * 32, 64);
  std::vector<float> out(32 * 32);
  auto i8 = [](const QTensor &t) { return reinterpret_cast<const int8_t *>(t.data.data()); };
  sparse_block_q8(x.data(), gate.data(), i8(w1), i8(w3), i8(w2), w1.scale.data(),
                  w3.scale.data(), w2.scale.data(), T, out.data());
  // With int8 activations the block is compared with the float reference: the activation
  // rounding (at most 1/254 of a group's largest |x| per element) bounds the difference.
  double tol = int8Q8 ? 2e-3 : kTolerance; // measured: 3e-4
  close(label("sparse_block q8", T), out.data(), refBlock(x, gate, w1, w3, w2, T), tol);
  if (T == 1) {
    QTensor v1 = makeQ4(rng, 4 * 64, 32), v3 = makeQ4(rng, 4 * 64, 32), v2 = makeQ4(rng, 4 * 32, 64);
    sparse_block_decode_q4(x.data(), gate.data(), v1.data.data(), v3.data.data(), v2.data.data(),
                           v1.scale.data(), v3.scale.data(), v2.scale.data(), out.data());
    close("sparse_block decode q4 (static T=1)", out.data(), refBlock(x, gate, v1, v3, v2, 1),
          int8Q4 ? 2e-3 : kTolerance);
  }
}

} // namespace

int main(int argc, char **argv) {
  int mode = argc > 1 ? std::atoi(argv[1]) : 0;
  int8Q8 = mode == 1;
  int8Q4 = mode == 1 || mode == 2;
  panelsExact = argc > 2 && std::strcmp(argv[2], "panels") == 0;
  for (int64_t T : {1, 5, 17}) {
    if (!int8Q8) // (q8 in panel order is for f32 activations: int8 ones leave it as loops)
      testLinearPanels(T);
    testLinear(T);
    testLinearK256(T);
    testLinearWide(T);
    testLinearLong(T);
    testGrouped(T);
    testSparseBlock(T);
  }
  if (failures == 0)
    std::printf("ALL PASSED\n");
  return failures == 0 ? 0 : 1;
}
