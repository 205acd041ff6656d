// cuda_fake_driver.cpp — TEST DOUBLE for libcuda.so.1, built as a shared library and loaded by
// the runtime through $MOEC_CUDA_DRIVER. "Device" memory is host memory (cuMemAlloc = malloc,
// copies = memcpy), so the runtime's GPU path can be exercised on a machine without a GPU.
// $MOEC_FAKE_CUDA_DEVICES: device count (default 0). $MOEC_FAKE_CUDA_BAD_PTX=1: module loads
// fail with CUDA_ERROR_INVALID_PTX and an error log. $MOEC_FAKE_CUDA_NO_POOLS=1: cuMemAllocAsync
// fails with CUDA_ERROR_NOT_SUPPORTED (no stream-ordered pool), as on some setups.
// moec_fake_* report the last launch, the flags of the last stream created, and how often the
// calls a test counts were made (moec_fake_count("cuCtxSetCurrent"), ...).
// The signatures use the runtime's own driver types (moec/cuda.h) exactly: UBSan checks that a
// function called through a pointer has the pointer's type.
#include "moec/cuda.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

using namespace moec::cuda;

namespace {
int g_grid[3], g_block[3], g_launches;
int g_ctx_set, g_module_loads, g_get_function, g_alloc_async, g_alloc, g_free_async, g_free;
unsigned g_stream_flags = ~0u;
int env_int(const char *name, int fallback) {
  const char *v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}
} // namespace

extern "C" {
int moec_fake_launches() { return g_launches; }
int moec_fake_grid(int i) { return g_grid[i]; }
int moec_fake_block(int i) { return g_block[i]; }
unsigned moec_fake_stream_flags() { return g_stream_flags; }
int moec_fake_count(const char *call) {
  const std::pair<const char *, int> counts[] = {
      {"cuCtxSetCurrent", g_ctx_set},   {"cuModuleLoadDataEx", g_module_loads},
      {"cuModuleGetFunction", g_get_function}, {"cuMemAllocAsync", g_alloc_async},
      {"cuMemAlloc", g_alloc},          {"cuMemFreeAsync", g_free_async},
      {"cuMemFree", g_free}};
  for (auto &[name, n] : counts)
    if (std::strcmp(name, call) == 0)
      return n;
  return -1;
}

CUresult cuInit(unsigned) { return 0; }
CUresult cuDeviceGetCount(int *n) { *n = env_int("MOEC_FAKE_CUDA_DEVICES", 0); return 0; }
CUresult cuDeviceGet(CUdevice *d, int i) { *d = i; return 0; }
CUresult cuDeviceGetName(char *name, int len, CUdevice) { std::strncpy(name, "Fake GPU", len); return 0; }
CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice) { *v = attr == 75 ? 9 : 0; return 0; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice) { static int c; *ctx = reinterpret_cast<CUcontext>(&c); return 0; }
CUresult cuCtxSetCurrent(CUcontext) { ++g_ctx_set; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) {
  *s = r == 218   ? "CUDA_ERROR_INVALID_PTX"
       : r == 2   ? "CUDA_ERROR_OUT_OF_MEMORY"
       : r == 801 ? "CUDA_ERROR_NOT_SUPPORTED"
                  : "CUDA_ERROR_UNKNOWN";
  return 0;
}
CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = r == 218 ? "a PTX JIT compilation failed" : "unknown error";
  return 0;
}
CUresult cuModuleLoadDataEx(CUmodule *m, const void *, unsigned n, int *opts, void **vals) {
  ++g_module_loads;
  if (env_int("MOEC_FAKE_CUDA_BAD_PTX", 0)) {
    for (unsigned i = 0; i < n; ++i)
      if (opts[i] == 5)
        std::strcpy(static_cast<char *>(vals[i]), "ptxas fatal : fake rejection");
    return 218;
  }
  static int mod;
  *m = reinterpret_cast<CUmodule>(&mod);
  return 0;
}
CUresult cuModuleUnload(CUmodule) { return 0; }
CUresult cuModuleGetFunction(CUfunction *f, CUmodule, const char *) {
  static int fn;
  *f = reinterpret_cast<CUfunction>(&fn);
  ++g_get_function;
  return 0;
}
CUresult cuLaunchKernel(CUfunction, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned, CUstream, void **, void **) {
  g_grid[0] = gx; g_grid[1] = gy; g_grid[2] = gz;
  g_block[0] = bx; g_block[1] = by; g_block[2] = bz;
  ++g_launches;
  return 0;
}
CUresult cuStreamCreate(CUstream *s, unsigned flags) {
  static int st;
  *s = reinterpret_cast<CUstream>(&st);
  g_stream_flags = flags;
  return 0;
}
CUresult cuStreamSynchronize(CUstream) { return 0; }
CUresult cuStreamDestroy_v2(CUstream) { return 0; }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return 0; }
CUresult cuEventCreate(CUevent *e, unsigned) { static int ev; *e = reinterpret_cast<CUevent>(&ev); return 0; }
CUresult cuEventDestroy_v2(CUevent) { return 0; }
CUresult cuEventRecord(CUevent, CUstream) { return 0; }
CUresult cuEventSynchronize(CUevent) { return 0; }
static CUresult fake_alloc(CUdeviceptr *p, std::size_t n) {
  *p = reinterpret_cast<CUdeviceptr>(std::calloc(1, n));
  return *p ? 0 : 2;
}
CUresult cuMemAlloc_v2(CUdeviceptr *p, std::size_t n) { ++g_alloc; return fake_alloc(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { ++g_free; std::free(reinterpret_cast<void *>(p)); return 0; }
CUresult cuMemAllocAsync(CUdeviceptr *p, std::size_t n, CUstream) {
  ++g_alloc_async;
  if (env_int("MOEC_FAKE_CUDA_NO_POOLS", 0))
    return 801; // CUDA_ERROR_NOT_SUPPORTED
  return fake_alloc(p, n);
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) {
  ++g_free_async;
  std::free(reinterpret_cast<void *>(p));
  return 0;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, std::size_t n) {
  std::memcpy(reinterpret_cast<void *>(d), s, n);
  return 0;
}
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, std::size_t n) {
  std::memcpy(d, reinterpret_cast<void *>(s), n);
  return 0;
}
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, std::size_t n, CUstream) {
  std::memcpy(reinterpret_cast<void *>(d), reinterpret_cast<void *>(s), n);
  return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, std::size_t n) {
  std::memset(reinterpret_cast<void *>(d), v, n);
  return 0;
}
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, std::size_t n, CUstream) {
  auto *p = reinterpret_cast<unsigned *>(d);
  for (std::size_t i = 0; i < n; ++i)
    p[i] = v;
  return 0;
}
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, std::size_t n, CUstream) {
  auto *p = reinterpret_cast<unsigned short *>(d);
  for (std::size_t i = 0; i < n; ++i)
    p[i] = v;
  return 0;
}
CUresult cuMemGetInfo_v2(std::size_t *f, std::size_t *t) { *f = *t = std::size_t(1) << 34; return 0; }
}
