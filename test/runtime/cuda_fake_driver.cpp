// cuda_fake_driver.cpp — TEST DOUBLE for libcuda.so.1, built as a shared library and loaded by
// the runtime through $MOEC_CUDA_DRIVER. "Device" memory is host memory (cuMemAlloc = malloc,
// copies = memcpy), so the runtime's GPU path can be exercised on a machine without a GPU.
// $MOEC_FAKE_CUDA_DEVICES: device count (default 0). $MOEC_FAKE_CUDA_BAD_PTX=1: module loads
// fail with CUDA_ERROR_INVALID_PTX and an error log. $MOEC_FAKE_CUDA_NO_POOLS=1: cuMemAllocAsync
// fails with CUDA_ERROR_NOT_SUPPORTED (no stream-ordered pool), as on some setups.
// Graphs: launches on a capturing stream are counted as recorded, not run; cuGraphLaunch "runs"
// them (moec_fake_count("kernels run")). $MOEC_FAKE_CUDA_BAD_CAPTURE=1: cuStreamEndCapture
// fails (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED); $MOEC_FAKE_CUDA_BAD_UPDATE=1:
// cuGraphExecUpdate_v2 fails (CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE). Built a second time with
// MOEC_FAKE_NO_GRAPHS defined: a driver without the graph entry points (before CUDA 12).
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
int g_launch_calls, g_kernels_run, g_captures, g_instantiates, g_updates, g_graph_launches;
struct FakeStream {
  bool capturing = false;
  int recorded = 0; // launches recorded by the capture in progress
};
struct FakeGraph {
  int launches = 0;
};
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
      {"cuMemFree", g_free},            {"cuLaunchKernel", g_launch_calls},
      {"kernels run", g_kernels_run},   {"cuStreamBeginCapture", g_captures},
      {"cuGraphInstantiateWithFlags", g_instantiates}, {"cuGraphExecUpdate", g_updates},
      {"cuGraphLaunch", g_graph_launches}};
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
       : r == 901 ? "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"
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
                        unsigned bz, unsigned, CUstream s, void **, void **) {
  g_grid[0] = gx; g_grid[1] = gy; g_grid[2] = gz;
  g_block[0] = bx; g_block[1] = by; g_block[2] = bz;
  ++g_launches;
  ++g_launch_calls;
  auto *st = reinterpret_cast<FakeStream *>(s);
  if (st && st->capturing)
    ++st->recorded;
  else
    ++g_kernels_run;
  return 0;
}
CUresult cuStreamCreate(CUstream *s, unsigned flags) {
  *s = reinterpret_cast<CUstream>(new FakeStream);
  g_stream_flags = flags;
  return 0;
}
CUresult cuStreamSynchronize(CUstream s) {
  auto *st = reinterpret_cast<FakeStream *>(s);
  return st && st->capturing ? 900 : 0; // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
}
CUresult cuStreamDestroy_v2(CUstream s) {
  delete reinterpret_cast<FakeStream *>(s);
  return 0;
}
#ifndef MOEC_FAKE_NO_GRAPHS
CUresult cuStreamBeginCapture_v2(CUstream s, int) {
  auto *st = reinterpret_cast<FakeStream *>(s);
  if (!st || st->capturing)
    return 1;
  ++g_captures;
  st->capturing = true;
  st->recorded = 0;
  return 0;
}
CUresult cuStreamEndCapture(CUstream s, CUgraph *graph) {
  auto *st = reinterpret_cast<FakeStream *>(s);
  *graph = nullptr;
  if (!st || !st->capturing)
    return 1;
  st->capturing = false;
  if (env_int("MOEC_FAKE_CUDA_BAD_CAPTURE", 0))
    return 901; // CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
  auto *g = new FakeGraph;
  g->launches = st->recorded;
  *graph = reinterpret_cast<CUgraph>(g);
  return 0;
}
CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long) {
  ++g_instantiates;
  *exec = reinterpret_cast<CUgraphExec>(new FakeGraph(*reinterpret_cast<FakeGraph *>(graph)));
  return 0;
}
CUresult cuGraphExecUpdate_v2(CUgraphExec exec, CUgraph graph, CUgraphExecUpdateResultInfo *info) {
  ++g_updates;
  *info = {};
  auto *to = reinterpret_cast<FakeGraph *>(exec);
  const auto *from = reinterpret_cast<FakeGraph *>(graph);
  if (env_int("MOEC_FAKE_CUDA_BAD_UPDATE", 0) || to->launches != from->launches) {
    info->result = 2; // CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED
    return 910;       // CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE
  }
  return 0;
}
CUresult cuGraphLaunch(CUgraphExec exec, CUstream) {
  ++g_graph_launches;
  g_kernels_run += reinterpret_cast<FakeGraph *>(exec)->launches;
  return 0;
}
CUresult cuGraphExecDestroy(CUgraphExec exec) {
  delete reinterpret_cast<FakeGraph *>(exec);
  return 0;
}
CUresult cuGraphDestroy(CUgraph graph) {
  delete reinterpret_cast<FakeGraph *>(graph);
  return 0;
}
#endif
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
