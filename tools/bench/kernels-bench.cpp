// Times the kernels of tools/bench/kernels.mlir (x · Wᵀ, W [14336, 4096] in bf16, bf16 in
// panel order ("bf16 panels", the layout a bf16 model runs), q8, q8 in panel order ("q8
// panels", the layout a q8 model runs on a CPU) and q4) as moe-cpu-pipeline
// compiles them (q8/q4 also with int8 activations, "i8x": the decode GEMV and GEMM on AVX2
// integer dot products; without it float q8/q4 GEMMs dequantise each panel once into the
// packed GEMM), and puts each next to the machine's read bandwidth measured in the same run:
// decode (T = 1) as the share of the bandwidth roofline over the bytes the kernel must read
// (the weight's data and scales), prefill (T = argv[1], default 128, at most 128: 32 is an
// expert's share of a 128-token prompt) in GFLOP/s and, per CPU-second, as a ratio to the
// same build's bf16 panels GEMM. With argv[2] = R (kernels.sh --alternate R), GEMMs only, in
// R alternating rounds, each case's ratio the median of its per-round ratios.
// Weights rotate over copies that together exceed the last-level cache many times, so every
// call reads from memory, as a decode step reads each expert once; the same GEMV on one copy
// again and again ("one matrix": a 33 MB q4 matrix is about an L3 of 32 MiB, which then
// serves part of it) is printed beside it. Weights and the probe's buffer sit on 2 MiB pages
// (MADV_HUGEPAGE), as a binary maps its packed file, and the roofline is the best of 7
// passes, as `OUT --bench` measures it: on 4 KiB pages the probe read ~20% less, which made
// the GEMVs look closer to their roofline than they are in the model. Built and run by
// tools/bench/kernels.sh; a benchmark, not a test.
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

extern "C" {
void linear_bf16(const float *x, const uint16_t *w, int64_t n, float *out);
void linear_bf16_panels(const float *x, const uint16_t *w, int64_t n, float *out);
void linear_q8(const float *x, const int8_t *w, const _Float16 *s, int64_t n, float *out);
void linear_q4(const float *x, const uint8_t *w, const _Float16 *s, int64_t n, float *out);
void linear_q8_panels(const float *x, const int8_t *w, const _Float16 *s, int64_t n, float *out);
// The same kernels compiled with int8-activations=true (kernels.sh renames them).
void int8_linear_q8(const float *x, const int8_t *w, const _Float16 *s, int64_t n, float *out);
void int8_linear_q4(const float *x, const uint8_t *w, const _Float16 *s, int64_t n, float *out);
// Row-major bf16 of the other shapes a decode token reads: an attention projection
// [4096, 4096] and the lm_head [32000, 4096] (decode rounds only).
void linear_bf16_attn(const float *x, const uint16_t *w, int64_t n, float *out);
void linear_bf16_lm_head(const float *x, const uint16_t *w, int64_t n, float *out);
// w2 in panel order, [256, 14336, 16] (x [1, 14336]).
void linear_bf16_panels_w2(const float *x, const uint16_t *w, int64_t n, float *out);
// With kernels.sh --baseline BUILD: all of the above compiled by that build's moe-opt
// ("base_" prefix); absent (null) otherwise.
#define MOEC_BASELINE(name, ...) __attribute__((weak)) void base_##name(__VA_ARGS__);
MOEC_BASELINE(linear_bf16, const float *, const uint16_t *, int64_t, float *)
MOEC_BASELINE(linear_bf16_panels, const float *, const uint16_t *, int64_t, float *)
MOEC_BASELINE(linear_q8, const float *, const int8_t *, const _Float16 *, int64_t, float *)
MOEC_BASELINE(linear_q4, const float *, const uint8_t *, const _Float16 *, int64_t, float *)
// (absent too where the baseline's moe-opt does not know q8 in panel order: kernels.sh)
MOEC_BASELINE(linear_q8_panels, const float *, const int8_t *, const _Float16 *, int64_t, float *)
MOEC_BASELINE(int8_linear_q8, const float *, const int8_t *, const _Float16 *, int64_t, float *)
MOEC_BASELINE(int8_linear_q4, const float *, const uint8_t *, const _Float16 *, int64_t, float *)
MOEC_BASELINE(linear_bf16_attn, const float *, const uint16_t *, int64_t, float *)
MOEC_BASELINE(linear_bf16_lm_head, const float *, const uint16_t *, int64_t, float *)
MOEC_BASELINE(linear_bf16_panels_w2, const float *, const uint16_t *, int64_t, float *)
}

namespace {

constexpr int64_t N = 14336, K = 4096, kMaxRows = 128; // kernels.mlir's x and out
constexpr int64_t kLmHeadRows = 32000;                   // the widest output (lm_head)
constexpr size_t kCopyBytes = 512ull << 20; // per format: ~16x a 32 MiB L3

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// `bytes` of zeroed memory on 2 MiB pages where the kernel grants them (MADV_HUGEPAGE), as
/// a binary maps its packed weights; never freed (the benchmark's lifetime).
uint8_t *hugeAlloc(size_t bytes) {
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("kernels-bench: mmap");
    std::exit(1);
  }
  madvise(p, bytes, MADV_HUGEPAGE);
  return static_cast<uint8_t *>(p);
}

/// CPU seconds of the whole process (all threads): on a shared machine, where wall time
/// depends on what else runs, CPU time still measures the work a kernel needs.
double cpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Bandwidth {
  double best, median; // GB/s over the passes
  double perCpu;       // the best pass's bytes per CPU-second of all threads (GB)
};

/// Read bandwidth of an OpenMP sum over a `bytes` buffer on 2 MiB pages (allocated by the
/// first call): the best of `passes` passes (the roofline, as OUT --bench defines it) and their median.
Bandwidth readBandwidth(size_t bytes, int passes = 7) {
  size_t n = bytes / 8;
  static uint64_t *buf = nullptr; // one buffer for every probe of the run
  if (!buf) {
    buf = reinterpret_cast<uint64_t *>(hugeAlloc(bytes));
    for (size_t i = 0; i < n; ++i)
      buf[i] = 1;
  }
  std::vector<double> gbs, perCpu;
  volatile uint64_t sink = 0;
  for (int r = 0; r <= passes; ++r) { // pass 0: untimed, wakes the threads
    double t0 = now(), c0 = cpuNow();
    uint64_t sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < n; ++i)
      sum += buf[i];
    double secs = now() - t0, cpuSecs = cpuNow() - c0;
    sink = sink + sum;
    if (r > 0) {
      gbs.push_back(bytes / secs / 1e9);
      perCpu.push_back(bytes / cpuSecs / 1e9);
    }
  }
  std::sort(gbs.begin(), gbs.end());
  std::sort(perCpu.begin(), perCpu.end());
  return {gbs.back(), gbs[gbs.size() / 2], perCpu.back()};
}

/// Copies of one weight (data + scales) filling about kCopyBytes, on 2 MiB pages.
struct Weights {
  size_t dataBytes, scaleBytes;
  int copies;
  uint8_t *data, *scales;
  Weights(size_t dataBytes, size_t scaleBytes) : dataBytes(dataBytes), scaleBytes(scaleBytes) {
    copies = static_cast<int>(std::max<size_t>(2, kCopyBytes / (dataBytes + scaleBytes)));
    data = hugeAlloc(dataBytes * copies);
    scales = hugeAlloc(std::max<size_t>(scaleBytes * copies, 1));
    uint32_t state = 12345;
    for (size_t i = 0; i < dataBytes * copies; ++i)
      data[i] = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24) & 0x77;
    auto *s = reinterpret_cast<_Float16 *>(scales);
    for (size_t i = 0; i < scaleBytes * copies / 2; ++i)
      s[i] = static_cast<_Float16>(0.01f);
  }
  const uint8_t *dataAt(int i) const { return data + dataBytes * (i % copies); }
  const _Float16 *scalesAt(int i) const {
    return reinterpret_cast<const _Float16 *>(scales + scaleBytes * (i % copies));
  }
};

struct Timing {
  double wall, cpu; // medians, seconds per call
};

template <typename Fn> Timing median(int calls, Fn fn) {
  fn(0); // warm-up: threads, page tables
  std::vector<double> t, c;
  for (int i = 1; i <= calls; ++i) {
    double t0 = now(), c0 = cpuNow();
    fn(i);
    t.push_back(now() - t0);
    c.push_back(cpuNow() - c0);
  }
  std::sort(t.begin(), t.end());
  std::sort(c.begin(), c.end());
  return {t[t.size() / 2], c[c.size() / 2]};
}

} // namespace

int main(int argc, char **argv) {
  int64_t M = argc > 1 ? std::atoll(argv[1]) : kMaxRows;
  if (M < 2 || M > kMaxRows) {
    std::fprintf(stderr, "kernels-bench: rows must be in [2, %lld]\n", (long long)kMaxRows);
    return 2;
  }
  std::vector<float> x(kMaxRows * N), out(kMaxRows * kLmHeadRows); // x: up to w2's K = N
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  Bandwidth probe = readBandwidth(kCopyBytes);
  double bw = probe.best;
  std::printf("threads %d, read bandwidth %.1f GB/s (OpenMP sum over %zu MiB on 2 MiB pages, "
              "best of 7; median %.1f; %.1f GB per CPU-second at best)\n",
              omp_get_max_threads(), bw, kCopyBytes >> 20, probe.median, probe.perCpu);
  std::printf("GEMV: weights rotating over %zu MiB (from memory, as in a decode step); "
              "\"one matrix\": the same copy each call (partly from the L3)\n",
              kCopyBytes >> 20);
  std::printf("%-17s %8s %9s %9s %9s %9s %12s %9s   GEMM T=%lld: %s\n", "weight", "bytes/w",
              "GEMV us", "GB/s", "roofline", "cpu us", "one matrix", "roofline", (long long)M,
              "wall GFLOP/s, GFLOP per CPU-second (ms), per CPU-second vs bf16 panels");
  // One set of weight copies per format, shared by that format's kernels.
  Weights bf16(N * K * 2, 0), q8(N * K, N * K / 32 * 2), q4(N * K / 2, N * K / 32 * 2);
  using Q8Fn = void (*)(const float *, const int8_t *, const _Float16 *, int64_t, float *);
  using Q4Fn = void (*)(const float *, const uint8_t *, const _Float16 *, int64_t, float *);
  using Bf16Fn = void (*)(const float *, const uint16_t *, int64_t, float *);
  struct Case {
    std::string name;
    const Weights *w;
    std::function<void(int, int64_t, const float *, float *)> run;
  };
  std::vector<Case> cases;
  auto add = [&](const std::string &prefix, Bf16Fn b, Bf16Fn bp, Q8Fn f8, Q8Fn f8p, Q4Fn f4,
                 Q8Fn i8, Q4Fn i4) {
    if (!b) // a baseline that was not linked
      return;
    // (the panels case reads the same random bytes: their order does not change the time)
    for (auto [name, fn] : {std::pair{"bf16 panels", bp}, std::pair{"bf16", b}})
      cases.push_back({prefix + name, &bf16, [&, fn](int i, int64_t n, const float *x, float *o) {
                         fn(x, reinterpret_cast<const uint16_t *>(bf16.dataAt(i)), n, o);
                       }});
    // (q8 panels reads the same random codes and scales as q8: the order does not change
    // the time)
    for (auto [name, fn] :
         {std::pair{"q8", f8}, std::pair{"q8 panels", f8p}, std::pair{"q8 i8x", i8}})
      if (fn)
        cases.push_back({prefix + name, &q8, [&, fn](int i, int64_t n, const float *x, float *o) {
                         fn(x, reinterpret_cast<const int8_t *>(q8.dataAt(i)), q8.scalesAt(i), n, o);
                       }});
    for (auto [name, fn] : {std::pair{"q4", f4}, std::pair{"q4 i8x", i4}})
      cases.push_back({prefix + name, &q4, [&, fn](int i, int64_t n, const float *x, float *o) {
                         fn(x, q4.dataAt(i), q4.scalesAt(i), n, o);
                       }});
  };
  add("base ", base_linear_bf16, base_linear_bf16_panels, base_linear_q8,
      base_linear_q8_panels, base_linear_q4, base_int8_linear_q8, base_int8_linear_q4);
  add("", linear_bf16, linear_bf16_panels, linear_q8, linear_q8_panels, linear_q4,
      int8_linear_q8, int8_linear_q4);
  // argv[3] = R > 0 (kernels.sh --decode R): decode GEMVs only, R rounds; each round probes
  // the read bandwidth (best of 3 passes) and then calls every GEMV 8 times (weights
  // rotating), the baseline's and this build's of each kernel one after the other, so a load
  // change hits both alike. Per kernel: the median over rounds of its GB/s (wall), of that as
  // a share of the same round's probe, of GB per CPU-second, and of the per-round ratio of
  // the baseline's median call time to this build's.
  int decodeRounds = argc > 3 ? std::atoi(argv[3]) : 0;
  if (decodeRounds > 0) {
    Weights attn(4096 * K * 2, 0), lmHead(kLmHeadRows * K * 2, 0);
    struct Gemv {
      std::string name;
      const Weights *w;
      Bf16Fn base, now;
    };
    std::vector<Gemv> gemvs = {
        {"bf16 panels", &bf16, base_linear_bf16_panels, linear_bf16_panels},
        {"bf16 panels w2", &bf16, base_linear_bf16_panels_w2, linear_bf16_panels_w2},
        {"bf16", &bf16, base_linear_bf16, linear_bf16},
        {"bf16 attn", &attn, base_linear_bf16_attn, linear_bf16_attn},
        {"bf16 lm_head", &lmHead, base_linear_bf16_lm_head, linear_bf16_lm_head}};
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    // [gemv][0 base, 1 now]: per round, median wall and CPU seconds per call; probe per round.
    std::vector<std::array<std::vector<double>, 2>> wall(gemvs.size()), cpu(gemvs.size());
    std::vector<double> probes;
    for (int r = 0; r <= decodeRounds; ++r) { // round 0: warm-up, not counted
      double roundProbe = readBandwidth(kCopyBytes, 3).best;
      for (size_t g = 0; g < gemvs.size(); ++g)
        for (int v = 0; v < 2; ++v) {
          Bf16Fn fn = v ? gemvs[g].now : gemvs[g].base;
          if (!fn)
            continue;
          std::vector<double> t, c;
          for (int i = 0; i < 8; ++i) {
            const auto *w = reinterpret_cast<const uint16_t *>(gemvs[g].w->dataAt(8 * r + i));
            double t0 = now(), c0 = cpuNow();
            fn(x.data(), w, 1, out.data());
            t.push_back(now() - t0);
            c.push_back(cpuNow() - c0);
          }
          if (r > 0) {
            wall[g][v].push_back(median(t));
            cpu[g][v].push_back(median(c));
          }
        }
      if (r > 0)
        probes.push_back(roundProbe);
    }
    std::printf("decode GEMVs, %d alternating rounds (medians over rounds; probe per round "
                "%.1f GB/s median, %.1f - %.1f)\n",
                decodeRounds, median(probes), *std::min_element(probes.begin(), probes.end()),
                *std::max_element(probes.begin(), probes.end()));
    std::printf("%-19s %9s %8s %12s %10s   %s\n", "weight", "GEMV us", "GB/s", "of probe",
                "GB/cpu-s", "base time / this time (min - max)");
    for (size_t g = 0; g < gemvs.size(); ++g) {
      double bytes = static_cast<double>(gemvs[g].w->dataBytes);
      for (int v = 0; v < 2; ++v) {
        if (wall[g][v].empty())
          continue;
        std::vector<double> share, cpuRate;
        for (int r = 0; r < decodeRounds; ++r) {
          share.push_back(bytes / wall[g][v][r] / 1e9 / probes[r]);
          cpuRate.push_back(bytes / cpu[g][v][r] / 1e9);
        }
        std::printf("%-19s %9.0f %8.1f %11.0f%% %10.1f", ((v ? "" : "base ") + gemvs[g].name).c_str(),
                    median(wall[g][v]) * 1e6, bytes / median(wall[g][v]) / 1e9,
                    100 * median(share), median(cpuRate));
        if (v == 1 && !wall[g][0].empty()) {
          std::vector<double> ratio;
          for (int r = 0; r < decodeRounds; ++r)
            ratio.push_back(wall[g][0][r] / wall[g][1][r]);
          std::printf("   %.2fx (%.2f - %.2f)", median(ratio),
                      *std::min_element(ratio.begin(), ratio.end()),
                      *std::max_element(ratio.begin(), ratio.end()));
        }
        std::printf("\n");
      }
    }
    return 0;
  }
  // argv[2] = R > 0: GEMMs only, R rounds each calling every case once in turn (a load
  // spike then hits every case of its round alike): per case the median over the rounds of
  // its CPU time's ratio to the same round's bf16 panels (the build's own, or the baseline's).
  int rounds = argc > 2 ? std::atoi(argv[2]) : 0;
  // argv[3] = "gemv" (kernels.sh --gemv R): the rounds call the decode GEMVs only.
  bool gemvOnly = argc > 3 && std::strcmp(argv[3], "gemv") == 0;
  if (rounds > 0) {
    std::vector<std::vector<double>> cpu(cases.size()), gemvCpu(cases.size()),
        gemvWall(cases.size());
    for (size_t i = 0; i < cases.size(); ++i) // warm-up
      cases[i].run(0, M, x.data(), out.data());
    for (int r = 1; r <= rounds; ++r)
      for (size_t i = 0; i < cases.size(); ++i) {
        double c0 = cpuNow();
        if (!gemvOnly)
          cases[i].run(r, M, x.data(), out.data());
        cpu[i].push_back(cpuNow() - c0);
        for (int g = 0; g < 8; ++g) { // the decode GEMV, weights rotating (from memory)
          double t0 = now(), c1 = cpuNow();
          cases[i].run(8 * r + g, 1, x.data(), out.data());
          gemvCpu[i].push_back(cpuNow() - c1);
          gemvWall[i].push_back(now() - t0);
        }
      }
    std::printf("GEMV (T=1), 8 calls per round: median GB/s of the bytes it must read, per "
                "wall second (of the probe's %.1f) and per CPU-second (of the probe's %.1f)\n",
                bw, probe.perCpu);
    for (size_t i = 0; i < cases.size(); ++i) {
      std::sort(gemvCpu[i].begin(), gemvCpu[i].end());
      std::sort(gemvWall[i].begin(), gemvWall[i].end());
      double bytes = static_cast<double>(cases[i].w->dataBytes + cases[i].w->scaleBytes);
      double wall = gemvWall[i][gemvWall[i].size() / 2], c = gemvCpu[i][gemvCpu[i].size() / 2];
      std::printf("%-17s %6.1f GB/s (%3.0f%% of the probe)  %6.1f GB per CPU-second (%3.0f%%)\n",
                  cases[i].name.c_str(), bytes / wall / 1e9, 100 * bytes / wall / 1e9 / bw,
                  bytes / c / 1e9, 100 * bytes / c / 1e9 / probe.perCpu);
    }
    if (gemvOnly)
      return 0;
    std::printf("GEMM T=%lld, %d alternating rounds: GFLOP per CPU-second (median), and the "
                "median over rounds of the ratio to that round's bf16 panels (min - max)\n",
                (long long)M, rounds);
    size_t panels = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string &name = cases[i].name;
      if (name.size() >= 11 && name.compare(name.size() - 11, 11, "bf16 panels") == 0)
        panels = i;
      std::vector<double> ratio, c = cpu[i];
      for (int r = 0; r < rounds; ++r)
        ratio.push_back(cpu[panels][r] / cpu[i][r]);
      std::sort(ratio.begin(), ratio.end());
      std::sort(c.begin(), c.end());
      std::printf("%-17s %6.1f   %5.2fx (%.2f - %.2f)\n", name.c_str(),
                  2.0 * M * N * K / c[c.size() / 2] / 1e9, ratio[ratio.size() / 2], ratio.front(),
                  ratio.back());
    }
    return 0;
  }
  double panelsCpu = 0; // this build's (or the baseline's) bf16 panels GEMM, CPU s per call
  for (Case &c : cases) {
    Timing gemv = median(40, [&](int i) { c.run(i, 1, x.data(), out.data()); });
    Timing one = median(40, [&](int) { c.run(0, 1, x.data(), out.data()); });
    Timing gemm = median(5, [&](int i) { c.run(i, M, x.data(), out.data()); });
    double bytes = static_cast<double>(c.w->dataBytes + c.w->scaleBytes);
    double gbs = bytes / gemv.wall / 1e9, flop = 2.0 * M * N * K;
    if (c.name.size() >= 11 && c.name.compare(c.name.size() - 11, 11, "bf16 panels") == 0)
      panelsCpu = gemm.cpu;
    std::printf("%-17s %8.3f %9.0f %9.1f %8.0f%% %9.0f %9.0f us %8.0f%%   %6.1f %6.1f (%.0f ms) "
                "%5.2fx\n",
                c.name.c_str(), bytes / (N * K), gemv.wall * 1e6, gbs, 100 * gbs / bw,
                gemv.cpu * 1e6, one.wall * 1e6, 100 * bytes / one.wall / 1e9 / bw,
                flop / gemm.wall / 1e9, flop / gemm.cpu / 1e9, gemm.wall * 1e3,
                panelsCpu / gemm.cpu);
  }
  return 0;
}
