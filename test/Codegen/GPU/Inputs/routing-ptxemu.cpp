// Runs the GPU routing kernels (top_k, dispatch) of a PTX module emitted by mixtral-compile in
// test/gpu-emu's PTX interpreter (dlopen'ed, like the runtime loads a CUDA driver) with NaN,
// ±inf, ±0, all-NaN and all--inf router rows, and dispatch with ids outside [0, E), and
// compares with plain C++ loops written from moe.top_k_gating's and moe.dispatch's
// descriptions. Prints "PASS <test>" or "FAIL <test>: ..." per test.
//
// Usage: routing-ptxemu MODULE.ptx LIBMOEC_PTXEMU.so
//
// Kernel parameters (moe-gpu-expand-kernel-memrefs): each memref<?x?> is its base pointer,
// offset, both sizes and the row stride; each memref<?> its pointer, offset and size; then the
// kernel's index operands.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

namespace {

using CUresult = int;
using CUdeviceptr = unsigned long long;
using Fn = void *;

struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(int *, int);
  CUresult (*cuDevicePrimaryCtxRetain)(void **, int);
  CUresult (*cuCtxSetCurrent)(void *);
  CUresult (*cuModuleLoadDataEx)(void **, const void *, unsigned, int *, void **);
  CUresult (*cuModuleGetFunction)(void **, void *, const char *);
  CUresult (*cuMemAlloc_v2)(CUdeviceptr *, std::size_t);
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void *, std::size_t);
  CUresult (*cuMemcpyDtoH_v2)(void *, CUdeviceptr, std::size_t);
  CUresult (*cuLaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, void *, void **, void **);
  const char *(*moec_ptxemu_last_error)();
};

Driver drv;
void *module_ = nullptr;
int failures = 0;

void check(CUresult r, const char *what) {
  if (r != 0) {
    std::printf("FAIL %s: error %d: %s\n", what, r, drv.moec_ptxemu_last_error());
    std::exit(1);
  }
}

template <typename T> CUdeviceptr upload(const std::vector<T> &v) {
  CUdeviceptr d;
  check(drv.cuMemAlloc_v2(&d, v.size() * sizeof(T)), "cuMemAlloc");
  check(drv.cuMemcpyHtoD_v2(d, v.data(), v.size() * sizeof(T)), "cuMemcpyHtoD");
  return d;
}
template <typename T> std::vector<T> download(CUdeviceptr d, std::size_t n) {
  std::vector<T> v(n);
  check(drv.cuMemcpyDtoH_v2(v.data(), d, n * sizeof(T)), "cuMemcpyDtoH");
  return v;
}

/// Launches `name` with 64-bit parameters (pointers and indices alike).
void launch(const char *name, unsigned grid, unsigned block, std::vector<std::uint64_t> params) {
  void *f;
  check(drv.cuModuleGetFunction(&f, module_, name), name);
  std::vector<void *> ptrs;
  for (std::uint64_t &p : params)
    ptrs.push_back(&p);
  check(drv.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, nullptr, ptrs.data(), nullptr), name);
}

/// moe.top_k_gating's order: by value descending, NaN below -inf (NaNs equal, -0 == +0), equal
/// values in id order (stable sort); weights: the softmax formula over the chosen logits.
void reference(const float *l, int E, int K, std::vector<int32_t> &ids, std::vector<double> &w) {
  std::vector<int32_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return !std::isnan(l[a]) && (std::isnan(l[b]) || l[a] > l[b]);
  });
  double sum = 0;
  for (int s = 0; s < K; ++s)
    sum += std::exp(double(l[order[s]]) - l[order[0]]);
  for (int s = 0; s < K; ++s) {
    ids.push_back(order[s]);
    w.push_back(std::exp(double(l[order[s]]) - l[order[0]]) / sum);
  }
}

void testTopK() {
  const float nan = std::nanf(""), inf = INFINITY;
  const int E = 6, K = 3;
  std::vector<float> logits = {
      nan,  1,    2,    3,    4,    5,    1,    nan,  1,    nan,  -inf, 0,
      nan,  nan,  nan,  nan,  nan,  nan,  -inf, -inf, -inf, -inf, -inf, -inf,
      -inf, nan,  -inf, nan,  nan,  nan,  inf,  0,    inf,  nan,  -inf, 1,
      nan,  nan,  nan,  nan,  2,    nan,  -0.f, 0.f,  -inf, nan,  -0.f, inf,
      inf,  inf,  inf,  inf,  inf,  inf,  nan,  inf,  -inf, nan,  -inf, nan,
  };
  const float pool[8] = {nan, inf, -inf, 0.f, -0.f, 1.f, -1.f, 0.5f};
  std::uint32_t state = 12345;
  while (logits.size() < 200 * E) { // 200 tokens: two blocks of 128 threads
    state = state * 1664525u + 1013904223u;
    logits.push_back(pool[state >> 29]);
  }
  const std::uint64_t T = logits.size() / E;
  CUdeviceptr dl = upload(logits), dw = upload(std::vector<float>(T * K, -7.f)),
              di = upload(std::vector<int32_t>(T * K, -7));
  launch("top_k", (T + 127) / 128, 128,
         {dl, 0, T, E, E, dw, 0, T, K, K, di, 0, T, K, K, T, E, K});
  std::vector<int32_t> ids = download<int32_t>(di, T * K), want;
  std::vector<float> w = download<float>(dw, T * K);
  std::vector<double> wantW;
  for (std::uint64_t t = 0; t < T; ++t)
    reference(&logits[t * E], E, K, want, wantW);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const bool wOk = std::isnan(wantW[i]) ? std::isnan(w[i])
                                          : std::fabs(w[i] - wantW[i]) <= 1e-5 * std::max(1.0, std::fabs(wantW[i]));
    if (ids[i] != want[i] || !wOk) {
      std::printf("FAIL top_k (NaN, inf): token %zu slot %zu: id %d weight %g, expected %d %g\n",
                  i / K, i % K, ids[i], w[i], want[i], wantW[i]);
      ++failures;
      return;
    }
  }
  std::printf("PASS top_k (NaN, inf) T=%llu\n", static_cast<unsigned long long>(T));
}

void testDispatch() {
  const int E = 5, K = 2;
  const int32_t pool[8] = {-1, 5, 7, INT32_MIN, INT32_MAX, 0, 2, 4};
  std::vector<int32_t> ids(2 * 17);
  for (std::size_t a = 0; a < ids.size(); ++a)
    ids[a] = pool[(a * 5 + 3) % 8];
  const std::uint64_t T = ids.size() / K, R = ids.size();
  CUdeviceptr di = upload(ids), dp = upload(std::vector<int32_t>(R, -1)),
              dinv = upload(std::vector<int32_t>(R, -1)), doff = upload(std::vector<int32_t>(E + 1, -1));
  launch("dispatch", 1, 256, {di, 0, T, K, K, dp, 0, R, dinv, 0, R, doff, 0, E + 1, R, E, K});
  std::vector<int32_t> perm = download<int32_t>(dp, R), off = download<int32_t>(doff, E + 1);
  std::vector<int32_t> wantPerm, wantOff(E + 1, 0);
  for (int e = 0; e < E; ++e) { // ids outside [0, E) count as E-1
    for (std::size_t a = 0; a < R; ++a)
      if ((ids[a] >= 0 && ids[a] < E ? ids[a] : E - 1) == e)
        wantPerm.push_back(static_cast<int32_t>(a));
    wantOff[e + 1] = static_cast<int32_t>(wantPerm.size());
  }
  if (perm != wantPerm || off != wantOff) {
    std::printf("FAIL dispatch (ids outside [0, E)): offsets [%d %d %d %d %d %d]\n", off[0], off[1],
                off[2], off[3], off[4], off[5]);
    ++failures;
    return;
  }
  std::printf("PASS dispatch (ids outside [0, E)) R=%llu\n", static_cast<unsigned long long>(R));
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODULE.ptx LIBMOEC_PTXEMU.so\n", argv[0]);
    return 2;
  }
  void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::printf("FAIL dlopen: %s\n", dlerror());
    return 1;
  }
#define BIND(f) drv.f = reinterpret_cast<decltype(drv.f)>(dlsym(lib, #f))
  BIND(cuInit); BIND(cuDeviceGet); BIND(cuDevicePrimaryCtxRetain); BIND(cuCtxSetCurrent);
  BIND(cuModuleLoadDataEx); BIND(cuModuleGetFunction); BIND(cuMemAlloc_v2);
  BIND(cuMemcpyHtoD_v2); BIND(cuMemcpyDtoH_v2); BIND(cuLaunchKernel); BIND(moec_ptxemu_last_error);
#undef BIND
  std::ifstream in(argv[1], std::ios::binary);
  const std::string ptx(std::istreambuf_iterator<char>(in), {});
  int dev;
  void *ctx;
  check(drv.cuInit(0), "cuInit");
  check(drv.cuDeviceGet(&dev, 0), "cuDeviceGet");
  check(drv.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  check(drv.cuModuleLoadDataEx(&module_, ptx.c_str(), 0, nullptr, nullptr), "cuModuleLoadDataEx");
  testTopK();
  testDispatch();
  if (failures == 0)
    std::printf("ALL PASSED\n");
  return failures == 0 ? 0 : 1;
}
