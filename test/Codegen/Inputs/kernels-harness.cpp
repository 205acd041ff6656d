// Checks the kernels of kernels.mlir (compiled by moe-cpu-pipeline) against plain C++ loops
// that follow each moe op's description literally, in double precision unless the op says
// f32. Inputs come from a fixed linear congruential generator, scaled so that every term of a
// kernel matters at the tolerance (RMSNorm's eps is comparable to some rows' mean square);
// every test runs with T = 1, 5 and 17 tokens. Prints one "PASS <test>" line per test, or "FAIL <test>: ..." with
// the first mismatch, and "ALL PASSED" at the end when nothing failed.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "harness-common.h"

extern "C" {
void router(const float *x, const uint16_t *gate, int64_t n, float *out);
void top_k(const float *logits, int64_t n, float *weights, int32_t *ids);
void dispatch(const int32_t *ids, int64_t n, int32_t *perm, int32_t *offsets);
void grouped_matmul(const float *rows, const uint16_t *w, const int32_t *offsets, int64_t n,
                    float *out);
void combine(const float *rows, const int32_t *perm, const float *w, int64_t n, float *out);
void sparse_block(const float *x, const uint16_t *gate, const uint16_t *w1, const uint16_t *w3,
                  const uint16_t *w2, int64_t n, float *out);
void sparse_block_decode(const float *x, const uint16_t *gate, const uint16_t *w1,
                         const uint16_t *w3, const uint16_t *w2, float *out);
void norm_linear(const float *x, const uint16_t *norm_w, const _Float16 *w, int64_t n,
                 float *normed, float *out);
void rope(const float *x, int64_t n, int64_t start, float *out);
void attention(const float *q, const float *kc, const float *vc, int64_t n, int64_t start,
               float *out, float *out_swa);
}

namespace {

using harness::fromBF16;
using harness::Rng;
using harness::toBF16;

int failures = 0;


/// Random bf16 weights and their exact f32 values.
struct BF16Tensor {
  std::vector<uint16_t> bits;
  std::vector<float> values;
  BF16Tensor(Rng &rng, size_t n, float scale = 1.0f) : bits(n), values(n) {
    for (size_t i = 0; i < n; ++i) {
      bits[i] = toBF16(rng.next() * scale);
      values[i] = fromBF16(bits[i]);
    }
  }
};

/// Tolerance of every comparison, relative to max(1, |want|): ~10x the worst error measured
/// over all tests (see test/e2e/README.md), which each PASS line reports.
constexpr double kTolerance = 4e-6;
double worstErr = 0; // over the close() calls since the last pass()

/// |got - want| <= kTolerance * max(1, |want|) everywhere in the first `count` elements.
bool close(const std::string &name, const float *got, const std::vector<double> &want,
           size_t count) {
  for (size_t i = 0; i < count; ++i) {
    double scale = std::max(1.0, std::fabs(want[i]));
    double tol = kTolerance * scale;
    if (std::fabs(got[i] - want[i]) / scale > worstErr)
      worstErr = std::fabs(got[i] - want[i]) / scale;
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", name.c_str(), i, got[i],
                  want[i]);
      ++failures;
      return false;
    }
  }
  return true;
}

/// close(), except that where `want` is NaN `got` must be NaN too.
bool closeOrNaN(const std::string &name, const float *got, const std::vector<double> &want,
                size_t count) {
  for (size_t i = 0; i < count; ++i) {
    bool ok = std::isnan(want[i]) ? std::isnan(got[i])
                                  : std::fabs(got[i] - want[i]) <= 1e-5 * std::max(1.0, std::fabs(want[i]));
    if (!ok) {
      std::printf("FAIL %s: element %zu is %.9g, expected %.9g\n", name.c_str(), i, got[i],
                  want[i]);
      ++failures;
      return false;
    }
  }
  return true;
}

template <typename T>
bool equal(const std::string &name, const T *got, const std::vector<T> &want, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (got[i] != want[i]) {
      std::printf("FAIL %s: element %zu is %lld, expected %lld\n", name.c_str(), i,
                  static_cast<long long>(got[i]), static_cast<long long>(want[i]));
      ++failures;
      return false;
    }
  return true;
}

void pass(const std::string &name) {
  std::printf("PASS %s (max err %.1e, tol %.0e)\n", name.c_str(), worstErr, kTolerance);
  worstErr = 0;
}

std::string label(const char *test, int64_t n) { return std::string(test) + " T=" + std::to_string(n); }

//===--------------------------------------------------------------------===//
// Reference implementations
//===--------------------------------------------------------------------===//

/// y[t, n] = sum_k x[t, k] * w[n, k]
std::vector<double> matmulT(const std::vector<float> &x, const std::vector<float> &w, int64_t T,
                            int64_t N, int64_t K) {
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

/// Top-k ids (logit descending, ties to the lower id) and softmax over the chosen logits.
void refTopK(const float *logits, int64_t E, int64_t k, std::vector<int32_t> &ids,
             std::vector<double> &weights) {
  std::vector<int32_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  double maxL = logits[order[0]], sum = 0;
  for (int64_t s = 0; s < k; ++s)
    sum += std::exp(double(logits[order[s]]) - maxL);
  for (int64_t s = 0; s < k; ++s) {
    ids.push_back(order[s]);
    weights.push_back(std::exp(double(logits[order[s]]) - maxL) / sum);
  }
}

/// moe.top_k_gating's order for any floats, as its description states it: by value,
/// descending, NaN below -inf (NaNs equal, -0 == +0); std::stable_sort keeps equal values in
/// id order, so ties go to the lower id. Weights: the softmax formula over the chosen
/// logits in double, NaN wherever it is (a NaN chosen, an infinite maximum, all -inf).
void refTopKAnyFloat(const float *logits, int64_t E, int64_t k, std::vector<int32_t> &ids,
                     std::vector<double> &weights) {
  std::vector<int32_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    float x = logits[a], y = logits[b];
    return !std::isnan(x) && (std::isnan(y) || x > y);
  });
  double maxL = logits[order[0]], sum = 0;
  for (int64_t s = 0; s < k; ++s)
    sum += std::exp(double(logits[order[s]]) - maxL);
  for (int64_t s = 0; s < k; ++s) {
    ids.push_back(order[s]);
    weights.push_back(std::exp(double(logits[order[s]]) - maxL) / sum);
  }
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

//===--------------------------------------------------------------------===//
// Tests
//===--------------------------------------------------------------------===//

void testRouter(int64_t T) {
  Rng rng(1 + T);
  std::vector<float> x = rng.fill(32 * 40);
  BF16Tensor g(rng, 6 * 40);
  std::vector<float> out(32 * 6, -7.0f);
  router(x.data(), g.bits.data(), T, out.data());
  std::string name = label("router", T);
  std::vector<double> want = matmulT(x, g.values, T, 6, 40);
  if (close(name, out.data(), want, T * 6) && out[T * 6] == -7.0f)
    pass(name);
}

void testTopK(int64_t T) {
  Rng rng(2 + T);
  // Logits on a coarse grid, so most tokens have exact ties.
  std::vector<float> logits(32 * 6);
  for (float &l : logits)
    l = std::round(rng.next() * 2.0f) * 0.5f;
  std::vector<float> w(32 * 3);
  std::vector<int32_t> ids(32 * 3);
  top_k(logits.data(), T, w.data(), ids.data());
  std::vector<int32_t> wantIds;
  std::vector<double> wantW;
  for (int64_t t = 0; t < T; ++t)
    refTopK(&logits[t * 6], 6, 3, wantIds, wantW);
  std::string name = label("top_k_gating (ties)", T);
  if (equal(name, ids.data(), wantIds, T * 3) && close(name, w.data(), wantW, T * 3))
    pass(name);
}

void testTopKNonFinite(int64_t T) {
  const float nan = std::nanf(""), inf = INFINITY;
  // Hand-picked rows first (expected ids in the comments), then random mixes of NaN, ±inf,
  // ±0 and a few values.
  std::vector<float> logits = {
      nan,  1,    2,    3,    4,    5,    // 5 4 3: a NaN never beats a number
      1,    nan,  1,    nan,  -inf, 0,    // 0 2 5: -inf above NaN
      nan,  nan,  nan,  nan,  nan,  nan,  // 0 1 2: all NaN, ties to the lower id
      -inf, -inf, -inf, -inf, -inf, -inf, // 0 1 2: all -inf
      -inf, nan,  -inf, nan,  nan,  nan,  // 0 2 1
      inf,  0,    inf,  nan,  -inf, 1,    // 0 2 5
      nan,  nan,  nan,  nan,  2,    nan,  // 4 0 1
      -0.f, 0.f,  -inf, nan,  -0.f, inf,  // 5 0 1: -0 == +0
      inf,  inf,  inf,  inf,  inf,  inf,  // 0 1 2
      nan,  inf,  -inf, nan,  -inf, nan,  // 1 2 4
  };
  Rng rng(12 + T);
  const float pool[8] = {nan, inf, -inf, 0.f, -0.f, 1.f, -1.f, 0.5f};
  while (logits.size() < 32 * 6)
    logits.push_back(pool[static_cast<int>((rng.next() + 1.0f) * 4.0f) & 7]);
  std::vector<float> w(32 * 3);
  std::vector<int32_t> ids(32 * 3, -7);
  top_k(logits.data(), T, w.data(), ids.data());
  std::vector<int32_t> wantIds;
  std::vector<double> wantW;
  for (int64_t t = 0; t < T; ++t)
    refTopKAnyFloat(&logits[t * 6], 6, 3, wantIds, wantW);
  std::string name = label("top_k_gating (NaN, inf)", T);
  if (equal(name, ids.data(), wantIds, T * 3) && closeOrNaN(name, w.data(), wantW, T * 3))
    pass(name);
}

/// Ids that moe.top_k_gating never makes (negative, >= E) count as expert E-1 = 4.
void testDispatchOutOfRange(int64_t T) {
  const int32_t pool[8] = {-1, 5, 7, INT32_MIN, INT32_MAX, 0, 2, 4};
  std::vector<int32_t> ids(32 * 2);
  for (size_t a = 0; a < ids.size(); ++a)
    ids[a] = pool[(a * 5 + 3) % 8];
  std::vector<int32_t> perm(64, -1), offsets(6, -1);
  dispatch(ids.data(), T, perm.data(), offsets.data());
  std::vector<int32_t> wantPerm, wantOff(6, 0);
  for (int32_t e = 0; e < 5; ++e) {
    for (int64_t a = 0; a < T * 2; ++a)
      if ((ids[a] >= 0 && ids[a] < 5 ? ids[a] : 4) == e)
        wantPerm.push_back(static_cast<int32_t>(a));
    wantOff[e + 1] = static_cast<int32_t>(wantPerm.size());
  }
  std::string name = label("dispatch (ids outside [0, E))", T);
  if (equal(name, offsets.data(), wantOff, 6) && equal(name, perm.data(), wantPerm, T * 2) &&
      perm[T * 2] == -1)
    pass(name);
}

void testDispatch(int64_t T) {
  Rng rng(3 + T);
  // Two distinct experts per token among 0, 1, 3, 4: expert 2 stays empty.
  std::vector<int32_t> ids(32 * 2);
  const int32_t used[4] = {0, 1, 3, 4};
  for (int64_t t = 0; t < 32; ++t) {
    int a = static_cast<int>((rng.next() + 1.0f) * 2.0f) & 3;
    int b = (a + 1 + (static_cast<int>((rng.next() + 1.0f) * 1.5f) % 3)) & 3;
    ids[t * 2] = used[a];
    ids[t * 2 + 1] = used[b];
  }
  std::vector<int32_t> perm(64, -1), offsets(6, -1);
  dispatch(ids.data(), T, perm.data(), offsets.data());
  std::vector<int32_t> wantPerm, wantOff(6, 0);
  for (int32_t e = 0; e < 5; ++e) {
    for (int64_t a = 0; a < T * 2; ++a)
      if (ids[a] == e)
        wantPerm.push_back(static_cast<int32_t>(a));
    wantOff[e + 1] = static_cast<int32_t>(wantPerm.size());
  }
  std::string name = label("dispatch", T);
  if (equal(name, offsets.data(), wantOff, 6) && equal(name, perm.data(), wantPerm, T * 2))
    pass(name);
}

void testGroupedMatmul(int64_t R) {
  Rng rng(4 + R);
  std::vector<float> rows = rng.fill(64 * 37);
  BF16Tensor w(rng, 5 * 13 * 37);
  // Offsets with empty experts: 0 and 3 get nothing; the rest split R unevenly.
  int32_t a = static_cast<int32_t>(R / 3), b = static_cast<int32_t>(R - R / 4);
  std::vector<int32_t> offsets = {0, 0, a, b, b, static_cast<int32_t>(R)};
  std::vector<float> out(64 * 13, 0.0f);
  grouped_matmul(rows.data(), w.bits.data(), offsets.data(), R, out.data());
  std::vector<double> want(R * 13);
  for (int32_t e = 0; e < 5; ++e)
    for (int32_t r = offsets[e]; r < offsets[e + 1]; ++r)
      for (int n = 0; n < 13; ++n) {
        double s = 0;
        for (int k = 0; k < 37; ++k)
          s += double(rows[r * 37 + k]) * w.values[(e * 13 + n) * 37 + k];
        want[r * 13 + n] = s;
      }
  std::string name = label("grouped_matmul (empty experts, N=13, K=37)", R);
  if (close(name, out.data(), want, R * 13))
    pass(name);
}

void testCombine(int64_t T) {
  Rng rng(5 + T);
  int64_t R = T * 2;
  std::vector<float> rows = rng.fill(64 * 24);
  std::vector<float> w = rng.fill(32 * 2);
  // A permutation of the assignments: reversed, then pairs swapped.
  std::vector<int32_t> perm(64);
  for (int64_t r = 0; r < R; ++r)
    perm[r] = static_cast<int32_t>(R - 1 - r);
  for (int64_t r = 0; r + 1 < R; r += 2)
    std::swap(perm[r], perm[r + 1]);
  std::vector<float> out(32 * 24);
  combine(rows.data(), perm.data(), w.data(), T, out.data());
  std::vector<double> want(T * 24, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    int64_t t = perm[r] / 2, s = perm[r] % 2;
    for (int d = 0; d < 24; ++d)
      want[t * 24 + d] += double(w[t * 2 + s]) * rows[r * 24 + d];
  }
  std::string name = label("combine", T);
  if (close(name, out.data(), want, T * 24))
    pass(name);
}

/// Reference MoE block: D = 32, F = 24, E = 4, k = 2.
std::vector<double> refSparseBlock(const std::vector<float> &x, const BF16Tensor &g,
                                   const BF16Tensor &w1, const BF16Tensor &w3,
                                   const BF16Tensor &w2, int64_t T) {
  const int D = 32, F = 24, E = 4, k = 2;
  std::vector<double> y(T * D, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    float logits[E];
    for (int e = 0; e < E; ++e) {
      double s = 0;
      for (int d = 0; d < D; ++d)
        s += double(x[t * D + d]) * g.values[e * D + d];
      logits[e] = static_cast<float>(s);
    }
    std::vector<int32_t> ids;
    std::vector<double> weights;
    refTopK(logits, E, k, ids, weights);
    for (int s = 0; s < k; ++s) {
      int e = ids[s];
      std::vector<double> h(F);
      for (int f = 0; f < F; ++f) {
        double a = 0, b = 0;
        for (int d = 0; d < D; ++d) {
          a += double(x[t * D + d]) * w1.values[(e * F + f) * D + d];
          b += double(x[t * D + d]) * w3.values[(e * F + f) * D + d];
        }
        h[f] = silu(a) * b;
      }
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (int f = 0; f < F; ++f)
          o += h[f] * w2.values[(e * D + d) * F + f];
        y[t * D + d] += weights[s] * o;
      }
    }
  }
  return y;
}

void testSparseBlock(int64_t T) {
  Rng rng(6 + T);
  std::vector<float> x = rng.fill(32 * 32);
  BF16Tensor g(rng, 4 * 32), w1(rng, 4 * 24 * 32, 0.5f), w3(rng, 4 * 24 * 32, 0.5f),
      w2(rng, 4 * 32 * 24, 0.5f);
  std::vector<float> out(32 * 32);
  sparse_block(x.data(), g.bits.data(), w1.bits.data(), w3.bits.data(), w2.bits.data(), T,
               out.data());
  std::string name = label("sparse_block (bf16)", T);
  if (close(name, out.data(), refSparseBlock(x, g, w1, w3, w2, T), T * 32))
    pass(name);
  if (T == 1) {
    std::vector<float> one(32);
    sparse_block_decode(x.data(), g.bits.data(), w1.bits.data(), w3.bits.data(),
                        w2.bits.data(), one.data());
    std::string decodeName = "sparse_block decode (static T=1)";
    if (close(decodeName, one.data(), refSparseBlock(x, g, w1, w3, w2, 1), 32))
      pass(decodeName);
  }
}

void testNormLinear(int64_t T) {
  Rng rng(7 + T);
  // Even tokens tiny (mean square ~8e-6, comparable to eps = 1e-5: dropping eps moves them by
  // ~50%), odd ones large (|x| < 3).
  std::vector<float> x = rng.fill(32 * 48, 3.0f);
  for (int64_t t = 0; t < 32; t += 2)
    for (int d = 0; d < 48; ++d)
      x[t * 48 + d] *= 5e-3f / 3.0f;
  BF16Tensor nw(rng, 48);
  std::vector<_Float16> w(20 * 48);
  std::vector<float> wv(20 * 48);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = static_cast<_Float16>(rng.next());
    wv[i] = static_cast<float>(w[i]);
  }
  std::vector<float> normed(32 * 48), out(32 * 20);
  norm_linear(x.data(), nw.bits.data(), w.data(), T, normed.data(), out.data());
  std::vector<double> wantNorm(T * 48);
  std::vector<float> normF(T * 48);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int d = 0; d < 48; ++d)
      ss += double(x[t * 48 + d]) * x[t * 48 + d];
    double r = std::sqrt(ss / 48 + 1e-5);
    for (int d = 0; d < 48; ++d) {
      wantNorm[t * 48 + d] = x[t * 48 + d] / r * nw.values[d];
      normF[t * 48 + d] = normed[t * 48 + d];
    }
  }
  std::string name = label("rms_norm (bf16 weight)", T);
  if (close(name, normed.data(), wantNorm, T * 48))
    pass(name);
  // The projection is checked against the kernel's own normalised rows.
  std::string lname = label("linear (f16 weight)", T);
  if (close(lname, out.data(), matmulT(normF, wv, T, 20, 48), T * 20))
    pass(lname);
}

void testRope(int64_t T) {
  Rng rng(8 + T);
  std::vector<float> x = rng.fill(32 * 3 * 8);
  std::vector<float> out(32 * 3 * 8);
  const int64_t start = 11;
  rope(x.data(), T, start, out.data());
  std::vector<double> want(T * 24);
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < 3; ++h)
      for (int d = 0; d < 8; ++d) {
        int i = d % 4;
        // As Hugging Face: inv_freq and the angle in f32.
        float invFreq = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / 8.0f);
        float angle = static_cast<float>(start + t) * invFreq;
        double c = std::cos(double(angle)), s = std::sin(double(angle));
        const float *row = &x[(t * 3 + h) * 8];
        double rotated = d < 4 ? -double(row[d + 4]) : double(row[d - 4]);
        want[(t * 3 + h) * 8 + d] = row[d] * c + rotated * s;
      }
  std::string name = label("rope (start=11)", T);
  if (close(name, out.data(), want, T * 24))
    pass(name);
}

void testAttention(int64_t T) {
  Rng rng(9 + T);
  const int H = 4, KVH = 2, HD = 8, S = 64;
  const int64_t start = 7;
  std::vector<float> q = rng.fill(32 * H * HD), kc = rng.fill(S * KVH * HD),
                     vc = rng.fill(S * KVH * HD);
  // Positions past start + T hold garbage that must never be read.
  for (int64_t j = start + T; j < S; ++j)
    for (int i = 0; i < KVH * HD; ++i)
      kc[j * KVH * HD + i] = vc[j * KVH * HD + i] = NAN;
  std::vector<float> out(32 * H * HD), outSwa(32 * H * HD);
  attention(q.data(), kc.data(), vc.data(), T, start, out.data(), outSwa.data());
  for (int64_t window : {int64_t(0), int64_t(6)}) {
    std::vector<double> want(T * H * HD, 0.0);
    for (int64_t t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        int kvh = h / (H / KVH);
        int64_t p = start + t;
        std::vector<double> score(p + 1, -INFINITY);
        double maxS = -INFINITY;
        for (int64_t j = 0; j <= p; ++j) {
          if (window && j <= p - window)
            continue;
          double s = 0;
          for (int d = 0; d < HD; ++d)
            s += double(q[(t * H + h) * HD + d]) * kc[(j * KVH + kvh) * HD + d];
          score[j] = s * 0.35355339059327373;
          maxS = std::max(maxS, score[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= p; ++j)
          sum += std::exp(score[j] - maxS);
        for (int64_t j = 0; j <= p; ++j) {
          double pj = std::exp(score[j] - maxS) / sum;
          if (pj == 0)
            continue;
          for (int d = 0; d < HD; ++d)
            want[(t * H + h) * HD + d] += pj * vc[(j * KVH + kvh) * HD + d];
        }
      }
    std::string name = label(window ? "attention (GQA 2:1, window 6, start=7)"
                                    : "attention (GQA 2:1, start=7)",
                             T);
    if (close(name, window ? outSwa.data() : out.data(), want, T * H * HD))
      pass(name);
  }
  // Each row again as a decode step computes it (alone, at start + t): the same bits, as the
  // step invariance needs (a row's key tiles and their order depend on its position only,
  // never on where the call's rows start).
  std::vector<float> q1(32 * H * HD), one(32 * H * HD), oneSwa(32 * H * HD);
  std::string name = label("attention rows = one-row calls at their positions, bit for bit", T);
  bool same = true;
  for (int64_t t = 0; t < T && same; ++t) {
    std::copy(&q[t * H * HD], &q[(t + 1) * H * HD], q1.begin());
    attention(q1.data(), kc.data(), vc.data(), 1, start + t, one.data(), oneSwa.data());
    size_t bytes = H * HD * sizeof(float);
    same = std::memcmp(one.data(), &out[t * H * HD], bytes) == 0 &&
           std::memcmp(oneSwa.data(), &outSwa[t * H * HD], bytes) == 0;
    if (!same) {
      std::printf("FAIL %s: row %lld differs\n", name.c_str(), static_cast<long long>(t));
      ++failures;
    }
  }
  if (same)
    pass(name);
}

} // namespace

int main() {
  for (int64_t T : {1, 5, 17}) {
    testRouter(T);
    testTopK(T);
    testTopKNonFinite(T);
    testDispatch(T);
    testDispatchOutOfRange(T);
    testGroupedMatmul(T);
    testGroupedMatmul(2 * T);
    testCombine(T);
    testSparseBlock(T);
    testNormLinear(T);
    testRope(T);
    testAttention(T);
  }
  if (failures == 0)
    std::printf("ALL PASSED\n");
  return failures == 0 ? 0 : 1;
}
