// Times the float GEMM that moe-cpu-pipeline generates (tools/bench/gemm.mlir: x[T, K] · W[N, K]ᵀ
// on Mixtral's expert shapes) against, in the same run: the machine's FMA peak (a loop of
// independent FMAs on registers only, one per thread, in the widest vectors the build has)
// and OpenBLAS's cblas_sgemm on the same shapes with f32 weights (row-major x, W transposed).
// Prints GFLOP/s by wall time and per CPU-second (the work a kernel needs, steadier on a
// shared machine), each as a fraction of the peak, and our ratio to OpenBLAS. Calls
// alternate between the kernels so that load from other processes hits them alike.
// Built and run by tools/bench/gemm.sh; a benchmark, not a test.
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

extern "C" {
void w1_bf16(const float *x, const uint16_t *w, int64_t n, float *out);
void w1_f32(const float *x, const float *w, int64_t n, float *out);
void w2_bf16(const float *x, const uint16_t *w, int64_t n, float *out);
void w2_f32(const float *x, const float *w, int64_t n, float *out);
void w1_bf16_panels(const float *x, const uint16_t *w, int64_t n, float *out);
void w2_bf16_panels(const float *x, const uint16_t *w, int64_t n, float *out);
void w13_swiglu_bf16_panels(const float *x, const uint16_t *w1, const uint16_t *w3, int64_t n,
                            float *out);
void w13_swiglu_bf16_panels_unfused(const float *x, const uint16_t *w1, const uint16_t *w3,
                                    int64_t n, float *gate, float *up, float *out);
void openblas_set_num_threads(int);
char *openblas_get_corename(void);
// gemm.sh --baseline: the fused kernel as another build compiles it (absent otherwise).
__attribute__((weak)) void base_w1_bf16_panels(const float *x, const uint16_t *w, int64_t n,
                                               float *out);
__attribute__((weak)) void base_w2_bf16_panels(const float *x, const uint16_t *w, int64_t n,
                                               float *out);
__attribute__((weak)) void base_w13_swiglu_bf16_panels(const float *x, const uint16_t *w1,
                                                       const uint16_t *w3, int64_t n,
                                                       float *out);
}

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double cpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec splat(float f) { return _mm512_set1_ps(f); }
inline float first(Vec v) { return _mm512_cvtss_f32(v); }
#else
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec splat(float f) { return _mm256_set1_ps(f); }
inline float first(Vec v) { return _mm256_cvtss_f32(v); }
#endif

struct Peak {
  double wall = 0, cpu = 0; // GFLOP/s by wall time; GFLOP per CPU-second x threads
};

/// `iters` rounds of 12 independent chains of `step` per thread on registers only (enough in
/// flight to cover the latency on two pipes), best of 5; `flopPerStep`: one step's FLOPs.
template <typename V, typename Init, typename Step, typename Sum>
Peak registerPeak(long iters, double flopPerStep, Init init, Step step, Sum sum) {
  Peak best;
  for (int r = 0; r < 5; ++r) {
    double t0 = now(), c0 = cpuNow();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      V a[12];
      for (int i = 0; i < 12; ++i)
        a[i] = init(i);
      for (long it = 0; it < iters; ++it) {
        for (int i = 0; i < 12; ++i)
          a[i] = step(a[i]);
        __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]),
                         "+x"(a[5]), "+x"(a[6]), "+x"(a[7]), "+x"(a[8]), "+x"(a[9]),
                         "+x"(a[10]), "+x"(a[11]));
      }
      for (int i = 0; i < 12; ++i)
        sink += sum(a[i]);
    }
    double secs = now() - t0, cpu = cpuNow() - c0;
    if (sink == 12345.0f)
      std::printf(" ");
    int threads = omp_get_max_threads();
    double flop = flopPerStep * 12 * iters * threads;
    best.wall = std::max(best.wall, flop / secs / 1e9);
    best.cpu = std::max(best.cpu, flop / cpu / 1e9 * threads);
  }
  return best;
}

/// The FMA peak: FMAs in the widest vectors the build has.
Peak fmaPeak(long iters) {
  const Vec m = splat(0.999999f), c = splat(1e-7f);
  return registerPeak<Vec>(
      iters, 2.0 * kLanes, [](int i) { return splat(1.0f + i * 1e-3f); },
      [=](Vec v) { return fma(v, m, c); }, [](Vec v) { return first(v); });
}

#if defined(__AVX512BF16__)
/// The same on AVX512-BF16's `vdpbf16ps` (16 lanes, each two bf16 products added to an f32:
/// 64 FLOP per instruction), the unit a bf16 GEMM could use instead of widening its weights
/// for FMAs.
Peak bf16DotPeak(long iters) {
  const __m512bh w = (__m512bh)_mm512_set1_epi32(0x3f803f80),
                 x = (__m512bh)_mm512_set1_epi32(0x33003300);
  return registerPeak<__m512>(
      iters, 64.0, [](int i) { return _mm512_set1_ps(1.0f + i * 1e-3f); },
      [=](__m512 v) { return _mm512_dpbf16_ps(v, w, x); },
      [](__m512 v) { return _mm512_cvtss_f32(v); });
}
#endif

struct Sample {
  std::vector<double> wall, cpu;
  double flop = 0;
  void add(double w, double c) {
    wall.push_back(w);
    cpu.push_back(c);
  }
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  double gflops() const { return flop / median(wall) / 1e9; }
  double gflopsCpu() const { return flop / median(cpu) / 1e9 * omp_get_max_threads(); }
};

struct Kernel {
  std::string name;
  double flop;
  std::function<void()> run;
  Sample sample;
};

uint16_t toBF16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

/// W[N, K] in this build's panel order (#moe.panels<cols = 2 lanes, lanes>: 16 and 8 on AVX2,
/// 32 and 16 on AVX-512, as gemm.sh rewrites gemm.mlir): [N / cols, K, cols] with element
/// [p, l * (K / lanes) + j, r] = W[cols p + r, l + lanes j], as `mixtral-compile --pack`
/// stores it.
std::vector<uint16_t> toPanels(const std::vector<uint16_t> &w, int64_t n, int64_t k) {
  constexpr int64_t cols = 2 * kLanes;
  std::vector<uint16_t> out(w.size());
  size_t at = 0;
  for (int64_t p = 0; p < n / cols; ++p)
    for (int64_t l = 0; l < kLanes; ++l)
      for (int64_t j = 0; j < k / kLanes; ++j)
        for (int64_t r = 0; r < cols; ++r)
          out[at++] = w[(cols * p + r) * k + l + kLanes * j];
  return out;
}

} // namespace

int main(int argc, char **argv) {
  const int64_t T = argc > 1 ? std::atoi(argv[1]) : 128;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const bool onlySwiglu = argc > 3 && std::strcmp(argv[3], "swiglu") == 0;
  if (T < 1 || T > 128 || rounds < 1 || (argc > 3 && !onlySwiglu)) {
    std::fprintf(stderr, "usage: gemm-bench [ROWS 1..128] [ROUNDS] [swiglu]\n");
    return 2;
  }
  const int threads = omp_get_max_threads();
  openblas_set_num_threads(threads);
  const int64_t big = 14336, small = 4096;
  std::vector<float> x(128 * big), out(128 * big), wf(big * small);
  std::vector<uint16_t> wb(big * small);
  uint32_t state = 12345;
  for (size_t i = 0; i < wf.size(); ++i) {
    wf[i] = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    wb[i] = toBF16(wf[i]);
  }
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;

  const std::vector<uint16_t> wp1 = toPanels(wb, big, small), wp2 = toPanels(wb, small, big);
  double flop = 2.0 * T * big * small;
  auto sgemm = [&](int64_t N, int64_t K) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, x.data(), K, wf.data(),
                K, 0.0f, out.data(), N);
  };
  // Per shape: bf16 row-major (packed per call), bf16 in panel order (read in place), f32,
  // then OpenBLAS (kGroup kernels, OpenBLAS last).
  constexpr size_t kGroup = 4;
  std::vector<Kernel> kernels = {
      {"w1 moec bf16", flop, [&] { w1_bf16(x.data(), wb.data(), T, out.data()); }, {}},
      {"w1 moec bf16 pan", flop, [&] { w1_bf16_panels(x.data(), wp1.data(), T, out.data()); }, {}},
      {"w1 moec f32", flop, [&] { w1_f32(x.data(), wf.data(), T, out.data()); }, {}},
      {"w1 OpenBLAS f32", flop, [&] { sgemm(big, small); }, {}},
      {"w2 moec bf16", flop, [&] { w2_bf16(x.data(), wb.data(), T, out.data()); }, {}},
      {"w2 moec bf16 pan", flop, [&] { w2_bf16_panels(x.data(), wp2.data(), T, out.data()); }, {}},
      {"w2 moec f32", flop, [&] { w2_f32(x.data(), wf.data(), T, out.data()); }, {}},
      {"w2 OpenBLAS f32", flop, [&] { sgemm(small, big); }, {}},
  };
  // Same chains, same tree: the panel-order kernels give the row-major ones' bits.
  for (int s = 0; s < 2; ++s) {
    const int64_t n = s ? small : big;
    std::vector<float> a(T * n), b(T * n);
    std::fill(out.begin(), out.end(), 0.0f);
    (s ? w2_bf16 : w1_bf16)(x.data(), wb.data(), T, out.data());
    std::copy(out.begin(), out.begin() + T * n, a.begin());
    std::fill(out.begin(), out.end(), 0.0f);
    (s ? w2_bf16_panels : w1_bf16_panels)(x.data(), s ? wp2.data() : wp1.data(), T, out.data());
    std::copy(out.begin(), out.begin() + T * n, b.begin());
    std::printf("w%d bf16: panel order %s row-major's bits\n", s ? 2 : 1,
                std::memcmp(a.data(), b.data(), a.size() * 4) == 0 ? "gives" : "DIFFERS FROM");
  }
  // Gate/up + SwiGLU over w1 and w3 in panel order (w3: w1's panels from the other end of
  // the data): one GEMM with SwiGLU in its epilogue, and the two GEMMs and SwiGLU pass through
  // memory it replaces. Same chains, same tree, same SwiGLU: the same bits.
  const std::vector<uint16_t> wp3(wp1.rbegin(), wp1.rend());
  std::vector<float> gate(128 * big), up(128 * big), fusedOut(128 * big);
  std::vector<Kernel> epilogues = {
      {"w1+w3 SwiGLU fused", 2 * flop,
       [&] { w13_swiglu_bf16_panels(x.data(), wp1.data(), wp3.data(), T, fusedOut.data()); }, {}},
      {"w1+w3 SwiGLU unfused", 2 * flop,
       [&] {
         w13_swiglu_bf16_panels_unfused(x.data(), wp1.data(), wp3.data(), T, gate.data(),
                                        up.data(), out.data());
       },
       {}},
  };
  std::vector<float> baseOut(base_w13_swiglu_bf16_panels ? 128 * big : 0);
  if (base_w13_swiglu_bf16_panels)
    epilogues.push_back({"w1+w3 SwiGLU fused base", 2 * flop,
                         [&] {
                           base_w13_swiglu_bf16_panels(x.data(), wp1.data(), wp3.data(), T,
                                                       baseOut.data());
                         },
                         {}});
  for (Kernel &k : epilogues)
    k.run();
  std::printf("w1+w3 SwiGLU: the fused GEMM %s the unfused GEMMs' and SwiGLU's bits\n",
              std::memcmp(fusedOut.data(), out.data(), T * big * 4) == 0 ? "gives"
                                                                          : "DIFFERS FROM");
  if (base_w13_swiglu_bf16_panels)
    std::printf("w1+w3 SwiGLU: the baseline's fused GEMM %s the unfused GEMMs' bits\n",
                std::memcmp(baseOut.data(), out.data(), T * big * 4) == 0 ? "gives"
                                                                           : "DIFFERS FROM");
  if (onlySwiglu) // (the gate/up kernels alone, for quicker comparisons)
    kernels.clear();
  else if (base_w1_bf16_panels) // the baseline's panel-order GEMMs, after the fused ones
    epilogues.insert(
        epilogues.end(),
        {Kernel{"w1 moec bf16 pan base", flop,
                [&] { base_w1_bf16_panels(x.data(), wp1.data(), T, out.data()); }, {}},
         Kernel{"w2 moec bf16 pan base", flop,
                [&] { base_w2_bf16_panels(x.data(), wp2.data(), T, out.data()); }, {}}});
  kernels.insert(kernels.end(), epilogues.begin(), epilogues.end());
  Peak peak = fmaPeak(20000000);
  for (Kernel &k : kernels) {
    k.sample.flop = k.flop;
    k.run(); // warm-up: threads, page tables
  }
  for (int r = 0; r < rounds; ++r)
    for (Kernel &k : kernels) {
      double t0 = now(), c0 = cpuNow();
      k.run();
      k.sample.add(now() - t0, cpuNow() - c0);
    }
  Peak after = fmaPeak(20000000);
  peak.wall = std::max(peak.wall, after.wall);
  peak.cpu = std::max(peak.cpu, after.cpu);
  double load[3] = {0, 0, 0};
  if (FILE *f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
      load[0] = -1;
    std::fclose(f);
  }
  std::printf("threads %d, %d-lane FMA peak %.1f GFLOP/s wall, %.1f per CPU-second x threads "
              "(best of 10 register-only runs); load average %.1f %.1f %.1f\n",
              threads, kLanes, peak.wall, peak.cpu, load[0], load[1], load[2]);
#if defined(__AVX512BF16__)
  Peak dot = bf16DotPeak(5000000);
  std::printf("threads %d, AVX512-BF16 vdpbf16ps peak %.1f GFLOP/s wall, %.1f per CPU-second x "
              "threads: %.2fx the FMA peak\n",
              threads, dot.wall, dot.cpu, dot.cpu / peak.cpu);
#endif
  std::printf("OpenBLAS %s kernels (OPENBLAS_CORETYPE=%s)\n", openblas_get_corename(),
              std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset");
  std::printf("T = %lld rows, w1: K 4096 N 14336, w2: K 14336 N 4096; median of %d rounds\n",
              static_cast<long long>(T), rounds);
  std::printf("%-17s %8s %8s %8s %9s %8s %12s\n", "kernel", "ms", "GFLOP/s", "of peak",
              "CPU-s*", "of peak", "vs OpenBLAS");
  const size_t blasGroups = kernels.size() - epilogues.size();
  for (size_t i = 0; i < blasGroups; ++i) {
    const Kernel &k = kernels[i];
    const Kernel &blas = kernels[i / kGroup * kGroup + kGroup - 1];
    std::printf("%-17s %8.1f %8.1f %7.0f%% %9.1f %7.0f%% %6.2fx %5.2fx\n", k.name.c_str(),
                1e3 * Sample::median(k.sample.wall), k.sample.gflops(),
                100 * k.sample.gflops() / peak.wall, k.sample.gflopsCpu(),
                100 * k.sample.gflopsCpu() / peak.cpu, k.sample.gflops() / blas.sample.gflops(),
                k.sample.gflopsCpu() / blas.sample.gflopsCpu());
  }
  std::printf("* GFLOP per CPU-second x threads: the rate with the machine to itself (the\n"
              "  last two columns: ours / OpenBLAS by wall time, then by CPU time)\n");
  // The fused kernel against the unfused pair, alternating in the same rounds.
  const Kernel &fused = kernels[blasGroups], &unfused = kernels[blasGroups + 1];
  for (size_t i = blasGroups; i < kernels.size(); ++i) {
    const Kernel *k = &kernels[i];
    std::printf("%-20s %8.1f ms %8.1f GFLOP/s %7.0f%% %9.1f CPU-s* %7.0f%%\n", k->name.c_str(),
                1e3 * Sample::median(k->sample.wall), k->sample.gflops(),
                100 * k->sample.gflops() / peak.wall, k->sample.gflopsCpu(),
                100 * k->sample.gflopsCpu() / peak.cpu);
  }
  std::printf("w1+w3 SwiGLU fused / unfused: %.2fx by wall time, %.2fx by CPU time\n",
              fused.sample.gflops() / unfused.sample.gflops(),
              fused.sample.gflopsCpu() / unfused.sample.gflopsCpu());
  if (base_w13_swiglu_bf16_panels) {
    const Kernel &base = kernels[blasGroups + 2];
    std::printf("w1+w3 SwiGLU fused base / unfused: %.2fx by wall time, %.2fx by CPU time\n",
                base.sample.gflops() / unfused.sample.gflops(),
                base.sample.gflopsCpu() / unfused.sample.gflopsCpu());
    std::printf("w1+w3 SwiGLU fused / fused base: %.2fx by wall time, %.2fx by CPU time\n",
                fused.sample.gflops() / base.sample.gflops(),
                fused.sample.gflopsCpu() / base.sample.gflopsCpu());
  }
  // This build's panel-order GEMMs against the baseline's (kernels 1 and 5 of the groups).
  for (size_t i = blasGroups + 3; i < kernels.size() && !onlySwiglu; ++i) {
    const Kernel &base = kernels[i], &ours = kernels[i == blasGroups + 3 ? 1 : 5];
    std::printf("%s / base: %.2fx by wall time, %.2fx by CPU time\n", ours.name.c_str(),
                ours.sample.gflops() / base.sample.gflops(),
                ours.sample.gflopsCpu() / base.sample.gflopsCpu());
  }
  return 0;
}
