// Checks the float matmul kernels of gemm.mlir (compiled by moe-cpu-pipeline) at row counts
// on both sides of the packed GEMM's threshold: against x · wᵀ summed in double from the same
// rounded inputs (4e-6 relative, like kernels-harness.cpp), and for batch invariance: every
// row must come out bit for bit as when that row is computed alone (T = 1, the dot-product
// kernel), which is what the serving path promises. Prints "PASS <test>" / "FAIL <test>: ..."
// lines and "ALL PASSED" at the end when nothing failed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "harness-common.h"

extern "C" {
void linear_bf16(const float *x, const uint16_t *w, int64_t n, float *out);
void linear_f32(const float *x, const float *w, int64_t n, float *out);
void linear_f16(const float *x, const _Float16 *w, int64_t n, float *out);
void grouped_bf16(const float *rows, const uint16_t *w, const int32_t *offsets, int64_t n,
                  float *out);
void grouped_bf16_panels(const float *rows, const uint16_t *w, const int32_t *offsets, int64_t n,
                         float *out);
void grouped_swiglu_bf16(const float *x, const int32_t *perm, const uint16_t *w1,
                         const uint16_t *w3, const int32_t *offsets, int64_t n, float *out);
void grouped_swiglu_bf16_panels(const float *x, const int32_t *perm, const uint16_t *w1,
                                const uint16_t *w3, const int32_t *offsets, int64_t n,
                                float *out);
}

namespace {

using harness::fromBF16;
using harness::Rng;
using harness::toBF16;

constexpr double kTolerance = 4e-6;
constexpr int64_t kRows = 64;
int failures = 0;

/// Weights in their storage type with the f32 values the kernel sees.
template <typename T> struct Weights {
  std::vector<T> bits;
  std::vector<float> values;
};

Weights<uint16_t> bf16Weights(Rng &rng, size_t n) {
  Weights<uint16_t> w;
  for (size_t i = 0; i < n; ++i) {
    w.bits.push_back(toBF16(rng.next()));
    w.values.push_back(fromBF16(w.bits.back()));
  }
  return w;
}

std::vector<float> fill(Rng &rng, size_t n) {
  std::vector<float> v(n);
  for (float &x : v)
    x = rng.next();
  return v;
}

/// y[t, n] = sum_k x[t, k] w[n, k] in double.
std::vector<double> matmulT(const float *x, const float *w, int64_t T, int64_t N, int64_t K) {
  std::vector<double> y(T * N, 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += double(x[t * K + k]) * w[n * K + k];
      y[t * N + n] = s;
    }
  return y;
}

bool close(const std::string &name, const float *got, const std::vector<double> &want) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double err = std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i]));
    worst = std::max(worst, err);
    if (!(err <= kTolerance)) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", name.c_str(), i, got[i],
                  want[i]);
      ++failures;
      return false;
    }
  }
  std::printf("  %s: max err %.1e (tol %.0e)\n", name.c_str(), worst, kTolerance);
  return true;
}

/// Whether row r of `got` (T rows of N) has the bits of `alone(r)`, the row computed alone.
bool invariant(const std::string &name, const float *got, int64_t T, int64_t N,
               const std::function<std::vector<float>(int64_t)> &alone) {
  for (int64_t r = 0; r < T; ++r) {
    std::vector<float> want = alone(r);
    if (std::memcmp(got + r * N, want.data(), N * sizeof(float)) != 0) {
      std::printf("FAIL %s: row %lld differs from the same row computed alone\n", name.c_str(),
                  static_cast<long long>(r));
      ++failures;
      return false;
    }
  }
  return true;
}

/// A dense linear y = x wᵀ at T rows: accuracy, then batch invariance.
template <typename W, typename Fn>
void testLinear(const char *test, Fn fn, const W *w, const std::vector<float> &wv, int64_t N,
                int64_t K, int64_t T) {
  Rng rng(100 + T);
  std::vector<float> x = fill(rng, kRows * K), out(kRows * N);
  fn(x.data(), w, T, out.data());
  std::string name = std::string(test) + " T=" + std::to_string(T);
  if (!close(name, out.data(), matmulT(x.data(), wv.data(), T, N, K)))
    return;
  auto alone = [&](int64_t r) {
    std::vector<float> xr(kRows * K, 0.0f), yr(kRows * N);
    std::copy(x.begin() + r * K, x.begin() + (r + 1) * K, xr.begin());
    fn(xr.data(), w, 1, yr.data());
    return std::vector<float>(yr.begin(), yr.begin() + N);
  };
  if (invariant(name, out.data(), T, N, alone))
    std::printf("PASS %s\n", name.c_str());
}

using GroupedFn = void (*)(const float *, const uint16_t *, const int32_t *, int64_t, float *);

/// Grouped rows: T rows split over 4 experts as [T/2, 0, T/4, rest]. `bits`: the weights as
/// `fn` reads them (w.bits, or in panel order); the reference uses w.values. Returns the
/// output rows (empty after a failure).
std::vector<float> testGrouped(const char *test, GroupedFn fn, const uint16_t *bits,
                               const Weights<uint16_t> &w, int64_t T) {
  const int64_t N = 32, K = 128;
  Rng rng(200 + T);
  std::vector<float> x = fill(rng, kRows * K), out(kRows * N);
  std::vector<int32_t> offsets = {0, int32_t(T / 2), int32_t(T / 2), int32_t(T / 2 + T / 4),
                                  int32_t(T)};
  fn(x.data(), bits, offsets.data(), T, out.data());
  std::vector<double> want(T * N);
  for (int e = 0; e < 4; ++e) {
    int64_t lo = offsets[e], len = offsets[e + 1] - offsets[e];
    std::vector<double> y = matmulT(x.data() + lo * K, w.values.data() + e * N * K, len, N, K);
    std::copy(y.begin(), y.end(), want.begin() + lo * N);
  }
  std::string name = std::string(test) + " T=" + std::to_string(T);
  if (!close(name, out.data(), want))
    return {};
  auto alone = [&](int64_t r) {
    int e = 0;
    while (r >= offsets[e + 1])
      ++e;
    std::vector<float> xr(kRows * K, 0.0f), yr(kRows * N);
    std::copy(x.begin() + r * K, x.begin() + (r + 1) * K, xr.begin());
    std::vector<int32_t> one(5, 0);
    for (int i = e + 1; i < 5; ++i)
      one[i] = 1;
    fn(xr.data(), bits, one.data(), 1, yr.data());
    return std::vector<float>(yr.begin(), yr.begin() + N);
  };
  if (!invariant(name, out.data(), T, N, alone))
    return {};
  std::printf("PASS %s\n", name.c_str());
  return std::vector<float>(out.begin(), out.begin() + T * N);
}

using SwiGLUFn = void (*)(const float *, const int32_t *, const uint16_t *, const uint16_t *,
                          const int32_t *, int64_t, float *);

/// moe.grouped_swiglu with k = 1 at T rows, grouped [T/2, 0, T/4, rest], rows[r] =
/// x[perm[r]] for a permutation that reverses the tokens: against silu(g) * u in double
/// (1e-5 relative: the gate's rounding passes through silu and the product), then each row
/// against the same row computed alone (below gemm-min-rows: two GEMVs and the elementwise
/// SwiGLU). Returns the output rows (empty after a failure).
std::vector<float> testSwiGLU(const char *test, SwiGLUFn fn, const uint16_t *w1,
                              const uint16_t *w3, const Weights<uint16_t> &w1v,
                              const Weights<uint16_t> &w3v, int64_t T) {
  const int64_t N = 32, K = 128;
  Rng rng(300 + T);
  std::vector<float> x = fill(rng, kRows * K), out(kRows * N);
  std::vector<int32_t> perm(kRows, 0);
  for (int64_t r = 0; r < T; ++r)
    perm[r] = int32_t(T - 1 - r);
  std::vector<int32_t> offsets = {0, int32_t(T / 2), int32_t(T / 2), int32_t(T / 2 + T / 4),
                                  int32_t(T)};
  fn(x.data(), perm.data(), w1, w3, offsets.data(), T, out.data());
  std::vector<double> want(T * N);
  for (int e = 0; e < 4; ++e)
    for (int64_t r = offsets[e]; r < offsets[e + 1]; ++r) {
      const float *xr = x.data() + perm[r] * K;
      std::vector<double> g = matmulT(xr, w1v.values.data() + e * N * K, 1, N, K);
      std::vector<double> u = matmulT(xr, w3v.values.data() + e * N * K, 1, N, K);
      for (int64_t c = 0; c < N; ++c)
        want[r * N + c] = g[c] / (1.0 + std::exp(-g[c])) * u[c];
    }
  std::string name = std::string(test) + " T=" + std::to_string(T);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double err = std::fabs(out[i] - want[i]) / std::max(1.0, std::fabs(want[i]));
    worst = std::max(worst, err);
    if (!(err <= 1e-5)) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", name.c_str(), i, out[i],
                  want[i]);
      ++failures;
      return {};
    }
  }
  std::printf("  %s: max err %.1e (tol 1e-05)\n", name.c_str(), worst);
  auto alone = [&](int64_t r) {
    int e = 0;
    while (r >= offsets[e + 1])
      ++e;
    std::vector<float> xr(kRows * K, 0.0f), yr(kRows * N);
    std::copy(x.begin() + perm[r] * K, x.begin() + (perm[r] + 1) * K, xr.begin());
    std::vector<int32_t> zero(kRows, 0), one(5, 0);
    for (int i = e + 1; i < 5; ++i)
      one[i] = 1;
    fn(xr.data(), zero.data(), w1, w3, one.data(), 1, yr.data());
    return std::vector<float>(yr.begin(), yr.begin() + N);
  };
  if (!invariant(name, out.data(), T, N, alone))
    return {};
  std::printf("PASS %s\n", name.c_str());
  return std::vector<float>(out.begin(), out.begin() + T * N);
}

/// `experts` stacked [N, K] bf16 matrices in panel order (#moe.panels<cols, lanes>): element
/// [e, p, l * (K / lanes) + j, r] = w[e, cols * p + r, l + lanes * j]. Written here from the
/// attribute's definition, independently of the packer.
std::vector<uint16_t> toPanels(const std::vector<uint16_t> &w, int64_t experts, int64_t N,
                               int64_t K, int64_t cols, int64_t lanes) {
  std::vector<uint16_t> out;
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t p = 0; p < N / cols; ++p)
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t j = 0; j < K / lanes; ++j)
          for (int64_t r = 0; r < cols; ++r)
            out.push_back(w[(e * N + cols * p + r) * K + l + lanes * j]);
  return out;
}

} // namespace

int main() {
  Rng rng(7);
  Weights<uint16_t> wb = bf16Weights(rng, 96 * 256);
  std::vector<float> wf = fill(rng, 64 * 80);
  std::vector<_Float16> wh(32 * 48);
  std::vector<float> whv(32 * 48);
  for (size_t i = 0; i < wh.size(); ++i) {
    wh[i] = static_cast<_Float16>(rng.next());
    whv[i] = static_cast<float>(wh[i]);
  }
  Weights<uint16_t> wg = bf16Weights(rng, 4 * 32 * 128);
  // Below, at and above gemm-min-rows (8), and row remainders of the 6- and 12-row tiles.
  for (int64_t T : {1, 5, 8, 13, 31, 64}) {
    testLinear("linear (bf16, N=96, K=256)", linear_bf16, wb.bits.data(), wb.values, 96, 256, T);
    testLinear("linear (f32, N=64, K=80)", linear_f32, wf.data(), wf, 64, 80, T);
    testLinear("linear (f16, N=32, K=48)", linear_f16, wh.data(), whv, 32, 48, T);
  }
  std::vector<uint16_t> panels = toPanels(wg.bits, 4, 32, 128, 16, 8);
  for (int64_t T : {4, 16, 41, 64}) {
    std::vector<float> rowMajor = testGrouped("grouped_matmul (bf16, experts of T/2, 0, T/4, rest)",
                                              grouped_bf16, wg.bits.data(), wg, T);
    std::vector<float> inPanels = testGrouped("grouped_matmul (bf16 in panel order)",
                                              grouped_bf16_panels, panels.data(), wg, T);
    // Where the kernel's panel is the weights' (AVX2: 16 x 8), the same chains and tree.
    if (!rowMajor.empty() && rowMajor == inPanels)
      std::printf("SAME BITS panel order and row-major T=%lld\n", static_cast<long long>(T));
  }
  Weights<uint16_t> w3 = bf16Weights(rng, 4 * 32 * 128);
  std::vector<uint16_t> w3Panels = toPanels(w3.bits, 4, 32, 128, 16, 8);
  for (int64_t T : {4, 16, 32, 41, 64}) {
    std::vector<float> rowMajor =
        testSwiGLU("grouped_swiglu (bf16, experts of T/2, 0, T/4, rest)", grouped_swiglu_bf16,
                   wg.bits.data(), w3.bits.data(), wg, w3, T);
    std::vector<float> inPanels =
        testSwiGLU("grouped_swiglu (bf16 in panel order)", grouped_swiglu_bf16_panels,
                   panels.data(), w3Panels.data(), wg, w3, T);
    // Where the kernel's panel is the weights' (AVX2: 16 x 8): one GEMM with SwiGLU in its
    // epilogue from 8 rows, the bits of two GEMMs and the elementwise SwiGLU.
    if (!rowMajor.empty() && rowMajor == inPanels)
      std::printf("SAME BITS swiglu panel order and row-major T=%lld\n",
                  static_cast<long long>(T));
  }
  if (failures == 0)
    std::printf("ALL PASSED\n");
  return failures == 0 ? 0 : 1;
}
